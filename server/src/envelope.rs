//! The KeldairHR envelope: `{"id", "type", "version", "dateOccurred", "data"}`. Parsing reads
//! only the top-level fields it indexes (the rest is validated and skipped, never copied); a
//! body that is not JSON, or JSON that is not an envelope, is still kept and says why.

use std::borrow::Cow;

use app::model::BodyKind;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::{delivery::EnvelopeFields, timestamp::parse_rfc3339};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "type")]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    date_occurred: Option<Cow<'a, str>>,
    #[allow(dead_code)] // read so that serde checks it is there, never kept
    data: Option<IgnoredAny>,
}

/// Classifies `body` and pulls out the envelope fields.
pub fn parse(body: &[u8]) -> EnvelopeFields {
    match serde_json::from_slice::<RawEnvelope>(body) {
        Ok(raw) => from_raw(raw),
        // A type error can come before a syntax error further on: only a body that is
        // valid JSON throughout counts as JSON.
        Err(e) if e.is_data() && serde_json::from_slice::<IgnoredAny>(body).is_ok() => {
            EnvelopeFields::not_an_envelope(
                BodyKind::Json,
                format!("JSON, but not an envelope: {e}"),
            )
        }
        Err(e) if e.is_data() => {
            let syntax = serde_json::from_slice::<IgnoredAny>(body)
                .err()
                .unwrap_or(e);
            EnvelopeFields::not_an_envelope(BodyKind::NotJson, format!("not JSON: {syntax}"))
        }
        Err(e) => EnvelopeFields::not_an_envelope(BodyKind::NotJson, format!("not JSON: {e}")),
    }
}

fn from_raw(raw: RawEnvelope<'_>) -> EnvelopeFields {
    let (Some(id), Some(event_type)) = (raw.id, raw.event_type) else {
        let missing = "JSON, but not an envelope: it needs a string `id` and `type`";
        return EnvelopeFields::not_an_envelope(BodyKind::Json, missing.to_owned());
    };
    let date_occurred = raw.date_occurred.map(Cow::into_owned);
    EnvelopeFields {
        kind: BodyKind::Envelope,
        event_id: Some(id.into_owned()),
        event_type: Some(event_type.into_owned()),
        version: raw.version.map(Cow::into_owned),
        occurred_at: date_occurred.as_deref().and_then(parse_rfc3339),
        date_occurred,
        parse_error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_envelope_fields() {
        let body = br#"{"id":"e1","type":"applicant.hired","version":"2022-02-23","dateOccurred":"2022-02-23T18:46:43+00:00","data":{"a":[1,2]}}"#;
        let parsed = parse(body);
        assert_eq!(parsed.kind, BodyKind::Envelope);
        assert_eq!(parsed.event_id.as_deref(), Some("e1"));
        assert_eq!(parsed.event_type.as_deref(), Some("applicant.hired"));
        assert_eq!(parsed.occurred_at, Some(1_645_642_003_000_000));
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let parsed = parse(br#"{"id":"a\"b","type":"x\u002ey"}"#);
        assert_eq!(parsed.event_id.as_deref(), Some("a\"b"));
        assert_eq!(parsed.event_type.as_deref(), Some("x.y"));
    }

    #[test]
    fn other_bodies_are_flagged() {
        assert_eq!(parse(b"hello").kind, BodyKind::NotJson);
        assert_eq!(parse(br#"{"id": 1"#).kind, BodyKind::NotJson);
        assert_eq!(parse(b"[1,2]").kind, BodyKind::Json);
        assert_eq!(parse(br#"{"id": 7, "type": "x"}"#).kind, BodyKind::Json);
        let no_type = parse(br#"{"id": "7"}"#);
        assert_eq!(no_type.kind, BodyKind::Json);
        assert!(no_type.parse_error.unwrap().contains("`type`"));
    }
}
