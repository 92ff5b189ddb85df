//! The live stream's messages (`GET /api/stream`, a websocket of JSON text frames), shared by
//! the browser, `hookscope tail` and the tests.
//!
//! Every message carries a **cursor**: the `seq` of the last delivery the stream has gone past
//! (given at the commit that acknowledged it, in commit order). Reconnecting with
//! `since=<cursor>` sends everything that matches after it, then [`StreamMessage::Ready`], then
//! live messages, with no gap and no duplicate at the seam.

use serde::{Deserialize, Serialize};

use super::{BodyKind, EventFilter, SignatureVerdict};

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum StreamMessage {
    /// One acknowledged delivery that matches the filter.
    Delivery(LiveDelivery),
    /// The backlog asked for with `since` has been sent (or, without `since`, the stream has
    /// started): live messages follow.
    #[serde(rename_all = "camelCase")]
    Ready { cursor: String },
    /// The filter sent on the open socket now applies, from `cursor` on.
    #[serde(rename_all = "camelCase")]
    FilterSet { cursor: String },
    /// This viewer fell behind the live stream and is disconnected; reconnect with
    /// `since=<cursor>` to get what it missed.
    #[serde(rename_all = "camelCase")]
    Lagged { cursor: String },
    /// Sent every 30 s with the server's pings: a viewer that has heard nothing for much
    /// longer (a laptop that slept) knows its connection is stale and reconnects.
    #[serde(rename_all = "camelCase")]
    Heartbeat { cursor: String },
    /// A message from the viewer could not be understood; the stream goes on unchanged.
    #[serde(rename_all = "camelCase")]
    Error { cursor: String, message: String },
}

impl StreamMessage {
    /// The cursor every message carries.
    pub fn cursor(&self) -> &str {
        match self {
            Self::Delivery(d) => &d.cursor,
            Self::Ready { cursor }
            | Self::FilterSet { cursor }
            | Self::Lagged { cursor }
            | Self::Heartbeat { cursor }
            | Self::Error { cursor, .. } => cursor,
        }
    }
}

/// Whether a delivery opened a new event or repeated a known one (a sender's retry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryRole {
    /// The first delivery of an event.
    New,
    /// A later delivery of an event already received.
    Retry,
}

/// One delivery as the live stream shows it: what the list needs to add a row or update one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveDelivery {
    /// Resume from here to get what came after this delivery.
    pub cursor: String,
    /// The delivery's place in commit order.
    pub seq: i64,
    pub delivery_id: String,
    pub role: DeliveryRole,
    /// The event's key, when the event was already listed as the delivery arrived (a brand-new
    /// event is listed within a moment, after the message has gone out).
    pub event_key: Option<i64>,
    pub source: String,
    /// The envelope `id`; absent when the body is not an envelope.
    pub event_id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// What the body turned out to be.
    pub body_kind: BodyKind,
    /// `dateOccurred` exactly as the sender wrote it.
    pub date_occurred: Option<String>,
    /// When this delivery arrived (RFC 3339, UTC).
    pub received_at: String,
    /// This delivery's own signature verdict.
    pub signature: SignatureVerdict,
    /// For a retry: true when its body differs from the event's first delivery.
    pub body_differs: bool,
    /// Body size in bytes.
    pub size: i64,
    /// The status Hookscope answered with.
    pub response_status: u16,
}

/// What a viewer may send on the open socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum StreamRequest {
    /// Replace the filter (the list's, as in `GET /api/events`; `limit` and `cursor` are
    /// ignored).
    SetFilter { filter: EventFilter },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_by_kind_and_carry_their_cursor() {
        let ready = serde_json::to_string(&StreamMessage::Ready { cursor: "7".into() }).unwrap();
        assert_eq!(ready, r#"{"kind":"ready","cursor":"7"}"#);
        let back: StreamMessage = serde_json::from_str(&ready).unwrap();
        assert_eq!(back.cursor(), "7");
        let request: StreamRequest = serde_json::from_str(
            r#"{"kind":"setFilter","filter":{"types":["applicant.hired"],"source":null}}"#,
        )
        .unwrap();
        let StreamRequest::SetFilter { filter } = request;
        assert_eq!(filter.types, ["applicant.hired"]);
    }
}
