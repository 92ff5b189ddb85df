//! A viewer of the live stream (`/api/stream`) over tokio-tungstenite, as the terminal client
//! and the browser use it.

use std::time::Duration;

use app::model::{LiveDelivery, StreamMessage, StreamRequest};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{
        self, Message,
        client::IntoClientRequest,
        http::{HeaderName, HeaderValue},
    },
};

use super::{TOKEN, TestApp};

/// How long a test waits for the next message before it fails.
const WAIT: Duration = Duration::from_secs(15);

pub struct Viewer {
    socket: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

/// The upgrade request for `/api/stream?{query}` with the given headers.
pub fn stream_request(
    app: &TestApp,
    query: &str,
    headers: &[(&str, &str)],
) -> tungstenite::handshake::client::Request {
    let url = format!("ws://{}/api/stream?{query}", app.address);
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(value).unwrap());
    }
    request
}

/// The handshake's outcome: a viewer, or the HTTP status the server answered instead.
pub async fn try_connect(
    app: &TestApp,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<Viewer, u16> {
    match tokio_tungstenite::connect_async(stream_request(app, query, headers)).await {
        Ok((socket, _)) => Ok(Viewer { socket }),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("the upgrade failed: {e}"),
    }
}

impl Viewer {
    /// Connects with the token, and reads up to the `ready` marker: the backlog (with `since`
    /// in `query`) and the cursor.
    pub async fn connect(app: &TestApp, query: &str) -> (Self, Vec<LiveDelivery>, String) {
        let bearer = format!("Bearer {TOKEN}");
        let mut viewer = try_connect(app, query, &[("authorization", &bearer)])
            .await
            .expect("the stream opens");
        let (backlog, cursor) = viewer.until_ready().await;
        (viewer, backlog, cursor)
    }

    /// As [`Viewer::connect`], over a socket whose receive buffer is as small as the kernel
    /// allows: a viewer that stops reading is noticed at once, not after megabytes.
    pub async fn connect_small_buffer(app: &TestApp, query: &str) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(app.address).await.unwrap();
        let bearer = format!("Bearer {TOKEN}");
        let request = stream_request(app, query, &[("authorization", &bearer)]);
        let (socket, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
            .await
            .expect("the stream opens");
        let mut viewer = Viewer { socket };
        viewer.until_ready().await;
        viewer
    }

    /// The next message (pings and pongs aside).
    pub async fn next(&mut self) -> StreamMessage {
        self.next_within(WAIT)
            .await
            .expect("a message within the wait")
    }

    /// The next message within `wait`, or `None` when none came.
    pub async fn next_within(&mut self, wait: Duration) -> Option<StreamMessage> {
        loop {
            let message = tokio::time::timeout(wait, self.socket.next()).await.ok()?;
            match message.expect("the stream is open").expect("a frame") {
                Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
                Message::Close(_) => panic!("the server closed the stream"),
                _ => continue,
            }
        }
    }

    /// The next message, which must be a delivery.
    pub async fn delivery(&mut self) -> LiveDelivery {
        match self.next().await {
            StreamMessage::Delivery(d) => d,
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    /// Deliveries until `ready`; returns them and its cursor.
    pub async fn until_ready(&mut self) -> (Vec<LiveDelivery>, String) {
        let mut deliveries = Vec::new();
        loop {
            match self.next().await {
                StreamMessage::Delivery(d) => deliveries.push(d),
                StreamMessage::Ready { cursor } => return (deliveries, cursor),
                other => panic!("expected the backlog or ready, got {other:?}"),
            }
        }
    }

    /// Asserts that nothing arrives for a moment.
    pub async fn assert_quiet(&mut self) {
        if let Some(message) = self.next_within(Duration::from_millis(500)).await {
            panic!("expected nothing, got {message:?}");
        }
    }

    pub async fn send(&mut self, request: &StreamRequest) {
        let text = serde_json::to_string(request).unwrap();
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// Reads every message until the server closes the stream or `wait` passes quietly.
    pub async fn drain(&mut self, wait: Duration) -> Vec<StreamMessage> {
        let mut messages = Vec::new();
        while let Ok(Some(Ok(message))) = tokio::time::timeout(wait, self.socket.next()).await {
            match message {
                Message::Text(text) => messages.push(serde_json::from_str(&text).unwrap()),
                Message::Close(_) => break,
                _ => {}
            }
        }
        messages
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
