//! `hookscope tail`: the live stream of a running Hookscope in the terminal, one line per
//! delivery (or one JSON message per line). It connects with tokio-tungstenite, and after a
//! lost connection reconnects with backoff and jitter, resuming from the last cursor, so every
//! delivery is printed once.

use std::{future::Future, time::Duration};

use anyhow::{Context, bail};
use app::model::{DeliveryRole, EventFilter, LiveDelivery, StreamMessage};
use clap::Args;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue};

use crate::config::Token;

#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// The Hookscope to follow (its dashboard's address).
    #[arg(long, env = "HOOKSCOPE_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,

    /// The dashboard's token.
    #[arg(long, env = "HOOKSCOPE_TOKEN", hide_env_values = true)]
    pub token: Token,

    /// Only these event types (repeat for several).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,

    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,

    /// Only this signature verdict: valid, invalid, missing or unchecked.
    #[arg(long)]
    pub signature: Option<String>,

    /// Only deliveries received at or after this time (RFC 3339).
    #[arg(long)]
    pub from: Option<String>,

    /// Only deliveries received before this time (RFC 3339).
    #[arg(long)]
    pub to: Option<String>,

    /// Only events whose dateOccurred is at or after this time (RFC 3339).
    #[arg(long)]
    pub occurred_from: Option<String>,

    /// Only events whose dateOccurred is before this time (RFC 3339).
    #[arg(long)]
    pub occurred_to: Option<String>,

    /// First print what arrived after this cursor (as printed with --json), then follow.
    #[arg(long)]
    pub since: Option<String>,

    /// Print every stream message as one line of JSON instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Follows the stream until `stop` completes (Ctrl-C) or the first connection fails.
pub async fn run(args: TailArgs, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let base = stream_url(&args.url)?;
    let filter = EventFilter {
        types: args.types.clone(),
        source: args.source.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
        occurred_from: args.occurred_from.clone(),
        occurred_to: args.occurred_to.clone(),
        signature: match &args.signature {
            Some(v) => Some(app::model::SignatureVerdict::parse(v).with_context(|| {
                format!("--signature must be valid, invalid, missing or unchecked, not {v:?}")
            })?),
            None => None,
        },
        ..EventFilter::default()
    };
    let mut cursor = args.since.clone();
    let mut connected_once = false;
    let mut backoff = Duration::from_millis(250);
    tokio::pin!(stop);
    loop {
        let url = with_query(&base, &filter, cursor.as_deref());
        let socket = tokio::select! {
            socket = connect(&url, &args.token) => socket,
            () = &mut stop => return Ok(()),
        };
        let mut socket = match socket {
            Ok(socket) => socket,
            Err(e) if !connected_once || e.is_refusal() => return Err(e.into_error(&args.url)),
            Err(_) => {
                eprintln!("hookscope tail: cannot reach {}; retrying", args.url);
                tokio::select! {
                    () = tokio::time::sleep(jitter(backoff)) => {},
                    () = &mut stop => return Ok(()),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        connected_once = true;
        backoff = Duration::from_millis(250);
        loop {
            let message = tokio::select! {
                message = socket.next() => message,
                () = &mut stop => {
                    let _ = socket.close(None).await;
                    return Ok(());
                }
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue, // pings are answered by tungstenite itself
                Some(Err(_)) | None => break,
            };
            let message: StreamMessage = serde_json::from_str(&text)
                .context("the server sent a message tail cannot read")?;
            cursor = Some(message.cursor().to_owned());
            if args.json {
                println!("{text}");
            }
            match message {
                StreamMessage::Delivery(d) if !args.json => println!("{}", line(&d)),
                StreamMessage::Lagged { .. } => break, // resume from the cursor
                StreamMessage::Error { message, .. } => eprintln!("hookscope tail: {message}"),
                _ => {}
            }
        }
        eprintln!("hookscope tail: connection lost; reconnecting");
    }
}

/// One line for a delivery: time, source, type, event id, verdict, and whether it is a retry.
pub fn line(d: &LiveDelivery) -> String {
    let role = match d.role {
        DeliveryRole::New => "new",
        DeliveryRole::Retry if d.body_differs => "retry (body differs)",
        DeliveryRole::Retry => "retry",
    };
    format!(
        "{}  {}  {}  {}  {}  {}",
        d.received_at,
        d.source,
        d.event_type.as_deref().unwrap_or("-"),
        d.event_id.as_deref().unwrap_or("-"),
        d.signature.as_str(),
        role
    )
}

/// `ws://host:port/api/stream` from the dashboard's `http://host:port`.
fn stream_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim().trim_end_matches('/');
    let ws = if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        bail!(
            "--url must start with http:// or https://, as in http://127.0.0.1:3000, not {url:?}"
        );
    };
    let stream = format!("{ws}/api/stream");
    stream
        .parse::<tungstenite::http::Uri>()
        .with_context(|| format!("--url {url:?} is not a URL"))?;
    Ok(stream)
}

fn with_query(base: &str, filter: &EventFilter, since: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in filter.to_query_pairs() {
        query.append_pair(key, &value);
    }
    if let Some(since) = since {
        query.append_pair("since", since);
    }
    let query = query.finish();
    if query.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{query}")
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a connection attempt failed.
enum ConnectError {
    /// The server answered, and said no (a wrong token, a bad filter).
    Refused(String),
    /// The server could not be reached, or the handshake broke.
    Unreachable(String),
}

impl ConnectError {
    fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused(_))
    }

    fn into_error(self, url: &str) -> anyhow::Error {
        match self {
            Self::Refused(why) => anyhow::anyhow!("{url} refused the stream: {why}"),
            Self::Unreachable(why) => anyhow::anyhow!("cannot reach {url}: {why}"),
        }
    }
}

async fn connect(url: &str, token: &Token) -> Result<Socket, ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::Refused(e.to_string()))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| ConnectError::Refused("the token cannot go in a header".into()))?;
    request.headers_mut().insert("authorization", bearer);
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
            let why = match (status.as_u16(), body) {
                (401, _) => "the token is wrong (401)".to_owned(),
                (_, Some(error)) => format!("{error} ({status})"),
                (_, None) => format!("it answered {status}"),
            };
            Err(ConnectError::Refused(why))
        }
        Err(e) => Err(ConnectError::Unreachable(e.to_string())),
    }
}

/// `wait` give or take a quarter, so that many clients do not reconnect in step.
fn jitter(wait: Duration) -> Duration {
    wait.mul_f64(rand::random_range(0.75..1.25))
}
