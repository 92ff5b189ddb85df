//! Standard Webhooks (standardwebhooks.com, also sent by Svix): headers webhook-id,
//! webhook-timestamp and webhook-signature, the last a space-separated list of
//! `v1,<base64 HMAC-SHA256>` entries over "{id}.{timestamp}.{body}". Also owns the
//! `whsec_<base64>` secret format.

use std::borrow::Cow;

use axum::http::HeaderMap;

use super::{Encoding, Signed, Verification, companion_header, parse_timestamp, signature_header};

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";
const SECRET_PREFIX: &str = "whsec_";

/// The key bytes of a "whsec_<base64>" secret (the prefix optional).
pub(super) fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    // The decoder's message names the offending character, which would leak part of the secret.
    Encoding::Base64.decode(encoded).map_err(|_| {
        "a standard-webhooks secret must be base64, optionally after \"whsec_\"".to_owned()
    })
}

/// Reads the three headers into what the request claims.
pub(super) fn extract(headers: &HeaderMap) -> Result<Signed, Verification> {
    let signature = signature_header(headers, SIGNATURE)?;
    let id = companion_header(headers, ID)?;
    let timestamp_text = companion_header(headers, TIMESTAMP)?;
    let timestamp = parse_timestamp(TIMESTAMP, timestamp_text)?;
    let signatures = parse_signatures(signature)?;
    Ok(Signed {
        prefix: format!("{id}.{timestamp_text}.").into_bytes(),
        suffix: Vec::new(),
        timestamp: Some(timestamp),
        signatures,
        template: Cow::Borrowed("{id}.{timestamp}.{body}"),
        encoding: Encoding::Base64,
    })
}

/// The decoded v1 signatures; entries of other versions (v1a, …) are skipped.
fn parse_signatures(value: &str) -> Result<Vec<Vec<u8>>, Verification> {
    let mut signatures = Vec::new();
    for (index, entry) in value.split_whitespace().enumerate() {
        let position = index + 1;
        let (version, encoded) = entry.split_once(',').ok_or_else(|| {
            Verification::malformed(format!(
                "{SIGNATURE} entry {position} is not \"<version>,<signature>\""
            ))
        })?;
        if version == "v1" {
            let signature = Encoding::Base64.decode(encoded).map_err(|e| {
                Verification::malformed(format!("{SIGNATURE} entry {position}: {e}"))
            })?;
            signatures.push(signature);
        }
    }
    if signatures.is_empty() {
        return Err(Verification::malformed(format!(
            "{SIGNATURE} has no v1 entry"
        )));
    }
    Ok(signatures)
}
