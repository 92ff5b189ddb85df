//! One viewer of `GET /api/stream`: the upgrade (behind the login like the rest of `/api`, and
//! refused with 403 when a browser's `Origin` is not the dashboard's own), then the resume
//! backlog, the `ready` marker, and live messages with the viewer's filter, until either side
//! stops. Each socket is split in two: a task reads the viewer's messages (a new filter,
//! pongs), the other sends; when one ends, the other is aborted.

use std::time::Duration;

use app::model::{EventFilter, StreamMessage, StreamRequest};
use axum::{
    extract::{
        RawQuery, State,
        ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use tokio::{
    sync::{broadcast::error::RecvError, mpsc},
    time::Instant,
};

use super::{Frame, Hub, roles::Unlisted};
use crate::{AppState, error::ApiError, storage::EventQuery};

/// How often the server pings a quiet viewer.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A viewer not heard from (a pong or anything else) for this long is gone.
const SILENT_LIMIT: Duration = Duration::from_secs(75);
/// A message the viewer's connection has not taken within this long ends the stream.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries read from the database per page of a resume's backlog.
const BACKLOG_PAGE: i64 = 500;

/// `GET /api/stream`: the filter and `since` from the query string, then the upgrade.
pub async fn open(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !same_origin(&headers) {
        return ApiError::Forbidden("the stream is only open to the dashboard's own pages")
            .into_response();
    }
    let (query, since) = match parse_query(query.as_deref().unwrap_or_default()) {
        Ok(parsed) => parsed,
        Err(e) => return e.into_response(),
    };
    let hub = state.hub.clone();
    upgrade
        .on_upgrade(move |socket| serve(socket, hub, query, since))
        .into_response()
}

/// True unless the request names an `Origin` (browsers always do) other than its own `Host`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true; // not a browser: the token or cookie alone decides
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority.trim_end_matches('/'));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// The list's filter and the resume cursor.
fn parse_query(query: &str) -> Result<(EventQuery, Option<i64>), ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let mut since = None;
    let mut filter_pairs = Vec::new();
    for (key, value) in &pairs {
        if key == "since" {
            let cursor = value.parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!("since {value:?} is not a cursor this server gave"))
            })?;
            since = Some(cursor);
        } else {
            filter_pairs.push((key.as_str(), value.as_str()));
        }
    }
    let filter = EventFilter::from_query_pairs(filter_pairs).map_err(ApiError::BadRequest)?;
    Ok((EventQuery::parse(&filter)?, since))
}

/// What the reading half tells the sending half.
enum Heard {
    Request(Box<Result<StreamRequest, String>>),
    /// Anything else from the viewer (a pong, a ping): it is alive.
    Alive,
}

type Sink = SplitSink<WebSocket, Message>;

/// Why a stream ended early; the socket is closed either way.
struct Ended;

async fn serve(socket: WebSocket, hub: Hub, query: EventQuery, since: Option<i64>) {
    let (mut sink, mut incoming) = socket.split();
    let (heard_tx, heard) = mpsc::channel(16);
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = incoming.next().await {
            let heard = match message {
                Message::Text(text) => Heard::Request(Box::new(
                    serde_json::from_str(text.as_str()).map_err(|e| e.to_string()),
                )),
                Message::Close(_) => break,
                _ => Heard::Alive,
            };
            if heard_tx.send(heard).await.is_err() {
                break;
            }
        }
    });
    let _ = stream(&mut sink, heard, &hub, query, since).await;
    reader.abort();
    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.close()).await;
}

/// The backlog after `since` (if any), `ready`, then live messages until the viewer goes, lags,
/// or the server stops.
async fn stream(
    sink: &mut Sink,
    mut heard: mpsc::Receiver<Heard>,
    hub: &Hub,
    mut query: EventQuery,
    since: Option<i64>,
) -> Result<(), Ended> {
    // Subscribed before the backlog is read: whatever commits meanwhile is on the ring, and
    // what is on both is skipped by its `seq`.
    let mut live = hub.subscribe();
    let closing = hub.closing();
    let stopping = async move {
        let mut closing = closing;
        let _ = closing.wait_for(|closing| *closing).await.map(drop);
    };
    tokio::pin!(stopping);
    let mut cursor = match since {
        Some(since) => send_backlog(sink, hub, &query, since).await?,
        None => hub.last_seq(),
    };
    send(
        sink,
        &StreamMessage::Ready {
            cursor: cursor.to_string(),
        },
    )
    .await?;
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut heard_at = Instant::now();
    loop {
        tokio::select! {
            frame = live.recv() => match frame {
                Ok(frame) => match &*frame {
                    Frame::Delivery { delivery, text } => {
                        if delivery.seq <= cursor {
                            continue;
                        }
                        cursor = delivery.seq;
                        if query.matches(delivery) {
                            send_text(sink, text.clone()).await?;
                        }
                    }
                    Frame::Gap { .. } => return lagged(sink, cursor).await,
                },
                Err(RecvError::Lagged(_)) => return lagged(sink, cursor).await,
                Err(RecvError::Closed) => return Ok(()),
            },
            message = heard.recv() => {
                heard_at = Instant::now();
                match message {
                    None => return Ok(()), // the viewer went
                    Some(Heard::Alive) => {}
                    Some(Heard::Request(request)) => {
                        let answer = match (*request).map_err(|e| format!("not a stream request: {e}"))
                            .and_then(|StreamRequest::SetFilter { filter }| {
                                EventQuery::parse(&filter).map_err(|e| e.to_string())
                            }) {
                            Ok(new_query) => {
                                query = new_query;
                                StreamMessage::FilterSet { cursor: cursor.to_string() }
                            }
                            Err(message) => StreamMessage::Error { cursor: cursor.to_string(), message },
                        };
                        send(sink, &answer).await?;
                    }
                }
            },
            _ = ping.tick() => {
                if heard_at.elapsed() > SILENT_LIMIT {
                    return Ok(()); // a connection that went dead (a laptop that slept)
                }
                timed(sink.send(Message::Ping(Default::default()))).await?;
                // Pings are invisible to a page's script: this tells it the stream is alive.
                send(sink, &StreamMessage::Heartbeat { cursor: cursor.to_string() }).await?;
            },
            () = &mut stopping => return Ok(()),
        }
    }
}

/// Sends every delivery after `since` that matches, in order, page by page from the database;
/// returns the cursor it got to.
async fn send_backlog(
    sink: &mut Sink,
    hub: &Hub,
    query: &EventQuery,
    since: i64,
) -> Result<i64, Ended> {
    let mut cursor = since;
    // First deliveries of events not listed yet, met in this backlog.
    let mut unlisted = Unlisted::default();
    loop {
        let page = hub
            .store()
            .deliveries_after(cursor, BACKLOG_PAGE)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "reading a stream's backlog");
                Ended
            })?;
        let full = page.len() as i64 == BACKLOG_PAGE;
        for (delivery, listed) in page {
            cursor = delivery.seq;
            let role = match &listed {
                Some(_) => unlisted.role_of(&delivery, listed.as_ref()),
                None => match hub.unlisted_role(&delivery) {
                    Some(role) => role,
                    None => unlisted.role_of(&delivery, None),
                },
            };
            if query.matches(&delivery) {
                send_text(sink, super::message_text(&delivery, role)).await?;
            }
        }
        if !full {
            return Ok(cursor);
        }
    }
}

async fn lagged(sink: &mut Sink, cursor: i64) -> Result<(), Ended> {
    send(
        sink,
        &StreamMessage::Lagged {
            cursor: cursor.to_string(),
        },
    )
    .await
}

async fn send(sink: &mut Sink, message: &StreamMessage) -> Result<(), Ended> {
    let text = serde_json::to_string(message).expect("a message serializes");
    send_text(sink, text.into()).await
}

async fn send_text(sink: &mut Sink, text: Utf8Bytes) -> Result<(), Ended> {
    timed(sink.send(Message::Text(text))).await
}

async fn timed<E>(sending: impl Future<Output = Result<(), E>>) -> Result<(), Ended> {
    match tokio::time::timeout(SEND_TIMEOUT, sending).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Ended),
    }
}
