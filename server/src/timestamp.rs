//! Times as Hookscope stores them (microseconds since the Unix epoch, UTC) and as it shows
//! them (RFC 3339).

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    micros_of(OffsetDateTime::now_utc())
}

fn micros_of(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000) as i64
}

/// Parses an RFC 3339 time (any offset) into microseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(micros_of)
}

/// Formats microseconds since the epoch as RFC 3339 in UTC, with microseconds.
pub fn format_rfc3339(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| micros.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rfc3339() {
        let micros = parse_rfc3339("2022-02-23T18:46:43+00:00").unwrap();
        assert_eq!(micros, 1_645_642_003_000_000);
        assert_eq!(format_rfc3339(micros), "2022-02-23T18:46:43Z");
        assert_eq!(
            parse_rfc3339("2022-02-23T20:46:43.5+02:00").unwrap(),
            micros + 500_000
        );
        assert!(parse_rfc3339("yesterday").is_none());
    }
}
