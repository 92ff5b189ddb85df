//! The types the browser and the server share: event summaries and details, deliveries,
//! filters and pages. They serialise to the JSON API's camelCase and pull in no server-only
//! crate, so the same definitions travel through the JSON API, server functions and hydration.

use serde::{Deserialize, Serialize};

mod stream;
pub use stream::{DeliveryRole, LiveDelivery, StreamMessage, StreamRequest};

/// The outcome of checking a delivery's signature against its source's secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureVerdict {
    /// A signature matched one of the source's secrets.
    Valid,
    /// A signature was present but wrong, expired or unreadable; the reason says which.
    Invalid,
    /// The source has a secret but the delivery carried no signature header.
    Missing,
    /// The source has no secret, so nothing was checked.
    Unchecked,
}

impl SignatureVerdict {
    /// Every verdict, in the order the UI lists them.
    pub const ALL: [SignatureVerdict; 4] =
        [Self::Valid, Self::Invalid, Self::Missing, Self::Unchecked];

    /// The wire name, as stored and as used in the `signature` filter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Missing => "missing",
            Self::Unchecked => "unchecked",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == name)
    }
}

/// What the body of an event's first delivery turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BodyKind {
    /// A JSON object with at least a string `id` and `type`: a KeldairHR envelope.
    Envelope,
    /// Valid JSON that is not an envelope.
    Json,
    /// Not JSON at all (or broken JSON).
    NotJson,
    /// Over the size limit: refused with 413, only headers and size kept.
    TooLarge,
}

impl BodyKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Envelope => "envelope",
            Self::Json => "json",
            Self::NotJson => "notJson",
            Self::TooLarge => "tooLarge",
        }
    }

    /// Parses a stored name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Envelope, Self::Json, Self::NotJson, Self::TooLarge]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

/// One row of the event list: an event and what its deliveries add up to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    /// Hookscope's own key for the event, used in URLs.
    pub key: i64,
    pub source: String,
    /// The envelope `id`; absent when the body is not an envelope.
    pub event_id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub version: Option<String>,
    /// `dateOccurred` exactly as the sender wrote it.
    pub date_occurred: Option<String>,
    /// When the first delivery arrived (RFC 3339, UTC).
    pub received_at: String,
    /// When the latest delivery arrived (RFC 3339, UTC).
    pub last_received_at: String,
    pub delivery_count: i64,
    /// The signature verdict of the first delivery: the one whose body the event shows.
    pub signature: SignatureVerdict,
    /// How many of the deliveries carried a valid signature.
    pub valid_deliveries: i64,
    /// True when the deliveries' verdicts disagree (say, a forged first delivery and a genuine
    /// retry): then the list says how many were valid.
    pub verdicts_differ: bool,
    pub body_kind: BodyKind,
    /// Why the body is not an envelope, when it is not.
    pub parse_error: Option<String>,
    /// True when a later delivery's body differs from the first one's.
    pub body_differs: bool,
}

impl EventSummary {
    /// When the deliveries' verdicts disagree, how many were valid: "2 of 3 deliveries valid".
    pub fn verdicts_note(&self) -> Option<String> {
        self.verdicts_differ.then(|| {
            format!(
                "{} of {} deliveries valid",
                self.valid_deliveries, self.delivery_count
            )
        })
    }
}

/// A header as received: name and value, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// One HTTP request that reached `/hooks/{source}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The delivery's place in commit order: given by the commit that acknowledged it.
    pub seq: i64,
    pub id: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<Header>,
    pub remote_addr: Option<String>,
    pub received_at: String,
    /// Body size in bytes as received (for a refused body, as declared or as far as read).
    pub size: i64,
    pub content_type: Option<String>,
    pub signature: SignatureVerdict,
    pub signature_reason: Option<String>,
    /// True when the signature was enforced and this delivery got 401.
    pub rejected: bool,
    /// True when this body differs from the event's first delivery.
    pub body_differs: bool,
    /// True when the body was over the size limit and refused with 413.
    pub too_large: bool,
    /// The status Hookscope answered with.
    pub response_status: u16,
}

/// An event with its payload and every delivery, oldest delivery first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDetail {
    #[serde(flatten)]
    pub summary: EventSummary,
    /// The first delivery's body as JSON, when it is JSON.
    pub payload: Option<serde_json::Value>,
    /// The first delivery's body as text, when it is not JSON but is UTF-8.
    pub raw_text: Option<String>,
    pub deliveries: Vec<Delivery>,
    /// Follow the live stream from here to hear of this event's later deliveries.
    #[serde(default)]
    pub stream_cursor: String,
}

/// One page of the event list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub items: Vec<EventSummary>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Deliveries acknowledged but not listed yet: right after a long burst, grouping them
    /// into events trails the acknowledgements for a moment. Usually 0.
    #[serde(default)]
    pub pending: u64,
    /// Follow the live stream from here (`/api/stream?since=...`) to get, exactly once, every
    /// delivery this page does not show yet.
    #[serde(default)]
    pub stream_cursor: String,
}

/// How many events of one type match the rest of a filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeCount {
    #[serde(rename = "type")]
    pub event_type: String,
    pub count: i64,
}

/// The counts beside the list: every type with its count under the rest of the filter, and how
/// many events match the whole filter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeCounts {
    pub matching: u64,
    pub types: Vec<TypeCount>,
}

/// The event list's filters, as the query string of `GET /api/events` and of the UI's list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EventFilter {
    /// Event types to keep (any of them); empty keeps all.
    pub types: Vec<String>,
    pub source: Option<String>,
    /// Received at or after (RFC 3339).
    pub from: Option<String>,
    /// Received before (RFC 3339).
    pub to: Option<String>,
    /// Received within this long before now: `15m`, `1h`, `24h` or `7d` (a preset that stays
    /// relative in a bookmark).
    pub within: Option<String>,
    /// `dateOccurred` at or after (RFC 3339).
    pub occurred_from: Option<String>,
    /// `dateOccurred` before (RFC 3339).
    pub occurred_to: Option<String>,
    pub signature: Option<SignatureVerdict>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl EventFilter {
    /// The default page size, and the largest one a caller may ask for.
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 500;

    /// Parses a query string (`type` may repeat). Unknown keys are an error, so a typo in a
    /// filter is reported instead of silently returning everything.
    pub fn from_query_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut filter = Self::default();
        for (key, value) in pairs {
            // An empty field of a submitted form filters nothing.
            if value.is_empty() {
                continue;
            }
            let value = value.to_owned();
            match key {
                "type" => filter.types.push(value),
                "source" => filter.source = Some(value),
                "from" => filter.from = Some(value),
                "to" => filter.to = Some(value),
                "within" => {
                    if Self::within_seconds(&value).is_none() {
                        return Err(format!("within must be 15m, 1h, 24h or 7d, not {value:?}"));
                    }
                    filter.within = Some(value);
                }
                "occurredFrom" => filter.occurred_from = Some(value),
                "occurredTo" => filter.occurred_to = Some(value),
                "signature" => {
                    let verdict = SignatureVerdict::parse(&value).ok_or_else(|| {
                        format!(
                            "signature must be valid, invalid, missing or unchecked, not {value:?}"
                        )
                    })?;
                    filter.signature = Some(verdict);
                }
                "limit" => {
                    let limit = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=Self::MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            format!(
                                "limit must be a number from 1 to {}, not {value:?}",
                                Self::MAX_LIMIT
                            )
                        })?;
                    filter.limit = Some(limit);
                }
                "cursor" => filter.cursor = Some(value),
                other => return Err(format!("unknown query parameter {other:?}")),
            }
        }
        Ok(filter)
    }

    /// The query parameters that reproduce this filter, `type` repeated; the inverse of
    /// [`EventFilter::from_query_pairs`].
    pub fn to_query_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs: Vec<(&'static str, String)> =
            self.types.iter().map(|t| ("type", t.clone())).collect();
        let optional = [
            ("source", &self.source),
            ("from", &self.from),
            ("to", &self.to),
            ("within", &self.within),
            ("occurredFrom", &self.occurred_from),
            ("occurredTo", &self.occurred_to),
            ("cursor", &self.cursor),
        ];
        pairs.extend(
            optional
                .into_iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k, v))),
        );
        if let Some(verdict) = self.signature {
            pairs.push(("signature", verdict.as_str().to_owned()));
        }
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.to_string()));
        }
        pairs
    }

    /// True when nothing narrows the list (the cursor and limit do not count).
    pub fn is_unfiltered(&self) -> bool {
        self.types.is_empty()
            && self.source.is_none()
            && self.from.is_none()
            && self.to.is_none()
            && self.within.is_none()
            && self.occurred_from.is_none()
            && self.occurred_to.is_none()
            && self.signature.is_none()
    }

    /// The presets of `within`, with their labels.
    pub const WITHIN: [(&'static str, &'static str); 4] = [
        ("15m", "last 15 minutes"),
        ("1h", "last hour"),
        ("24h", "last 24 hours"),
        ("7d", "last 7 days"),
    ];

    /// How many seconds a `within` preset spans; `None` for anything else.
    pub fn within_seconds(preset: &str) -> Option<i64> {
        match preset {
            "15m" => Some(15 * 60),
            "1h" => Some(3600),
            "24h" => Some(24 * 3600),
            "7d" => Some(7 * 24 * 3600),
            _ => None,
        }
    }

    /// The page size to use.
    pub fn page_size(&self) -> u32 {
        self.limit.unwrap_or(Self::DEFAULT_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_round_trip_with_repeated_types() {
        let pairs = [
            ("type", "applicant.hired"),
            ("type", "offer.accepted"),
            ("signature", "valid"),
            ("limit", "10"),
        ];
        let filter = EventFilter::from_query_pairs(pairs).unwrap();
        assert_eq!(filter.types, ["applicant.hired", "offer.accepted"]);
        let back = filter.to_query_pairs();
        let back: Vec<(&str, &str)> = back.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(EventFilter::from_query_pairs(back).unwrap(), filter);
    }

    #[test]
    fn bad_filters_are_named() {
        assert!(
            EventFilter::from_query_pairs([("limit", "0")])
                .unwrap_err()
                .contains("limit")
        );
        assert!(
            EventFilter::from_query_pairs([("signature", "ok")])
                .unwrap_err()
                .contains("signature")
        );
        assert!(
            EventFilter::from_query_pairs([("tpye", "x")])
                .unwrap_err()
                .contains("tpye")
        );
    }
}
