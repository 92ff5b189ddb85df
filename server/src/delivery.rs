//! What a delivery is, as ingestion captures it and storage keeps it: plain values with no HTTP
//! and no parser in them, shared by [`crate::ingest`] (which makes them) and [`crate::storage`]
//! (which keeps them).

use std::fmt;

use app::model::{BodyKind, SignatureVerdict};
use bytes::Bytes;

/// A source name that is safe in a URL path segment and a database column:
/// 1 to 64 characters from `A-Z a-z 0-9 . _ -`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceName(String);

impl SourceName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) {
            return Err(format!(
                "source name {name:?} must be 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-'"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a body says of itself: its kind and, for a KeldairHR envelope
/// (`{"id", "type", "version", "dateOccurred", "data"}`), the fields that are indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeFields {
    pub kind: BodyKind,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub version: Option<String>,
    /// `dateOccurred` as written.
    pub date_occurred: Option<String>,
    /// `dateOccurred` in microseconds since the epoch, when it is RFC 3339.
    pub occurred_at: Option<i64>,
    /// Why the body is not an envelope, when it is not.
    pub parse_error: Option<String>,
}

impl EnvelopeFields {
    /// A body that is not an envelope, of `kind`, and why.
    pub fn not_an_envelope(kind: BodyKind, why: String) -> Self {
        Self {
            kind,
            event_id: None,
            event_type: None,
            version: None,
            date_occurred: None,
            occurred_at: None,
            parse_error: Some(why),
        }
    }

    /// A body refused for its size: nothing was read.
    pub fn too_large(size: u64, limit: usize) -> Self {
        Self::not_an_envelope(
            BodyKind::TooLarge,
            format!("body of {size} bytes is over the {limit} byte limit"),
        )
    }
}

/// A delivery as ingestion captured it, ready to store.
#[derive(Debug)]
pub struct NewDelivery {
    pub id: String,
    pub source: SourceName,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The headers in arrival order, as a JSON array of `{name, value}`.
    pub headers_json: String,
    pub remote_addr: Option<String>,
    pub received_at: i64,
    pub size: i64,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub body_sha256: [u8; 32],
    pub envelope: EnvelopeFields,
    pub signature: SignatureVerdict,
    pub signature_reason: Option<String>,
    pub rejected: bool,
    pub too_large: bool,
    pub response_status: u16,
}

impl NewDelivery {
    /// What groups deliveries into one event: the envelope id, or this delivery alone.
    pub fn dedupe_key(&self) -> &str {
        self.envelope.event_id.as_deref().unwrap_or(&self.id)
    }

    /// About how many bytes of memory this delivery holds: what the writer's batches are
    /// bounded by.
    pub fn weight(&self) -> usize {
        const FIXED: usize = 512;
        FIXED + self.body.len() + self.headers_json.len() + self.path.len()
    }
}

/// A delivery once committed: what the live stream tells viewers of it, without its body.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Given by the commit that acknowledged it.
    pub seq: i64,
    pub id: String,
    pub source: SourceName,
    pub envelope: EnvelopeFields,
    pub received_at: i64,
    pub size: i64,
    pub body_sha256: [u8; 32],
    pub signature: SignatureVerdict,
    pub response_status: u16,
}

impl Committed {
    /// What groups deliveries into one event (see [`NewDelivery::dedupe_key`]).
    pub fn dedupe_key(&self) -> &str {
        self.envelope.event_id.as_deref().unwrap_or(&self.id)
    }
}

impl NewDelivery {
    /// What is left of this delivery once it is committed as `seq` (the body is let go).
    pub fn into_committed(self, seq: i64) -> Committed {
        Committed {
            seq,
            id: self.id,
            source: self.source,
            envelope: self.envelope,
            received_at: self.received_at,
            size: self.size,
            body_sha256: self.body_sha256,
            signature: self.signature,
            response_status: self.response_status,
        }
    }
}
