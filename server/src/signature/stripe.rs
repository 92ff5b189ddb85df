//! Stripe: one Stripe-Signature header `t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]` whose v1 entries are
//! hex HMAC-SHA256 digests over "{t}.{body}"; entries of other schemes (v0) are skipped.

use std::borrow::Cow;

use axum::http::HeaderMap;

use super::{Encoding, Signed, Verification, parse_timestamp, signature_header};

const SIGNATURE: &str = "stripe-signature";

/// The raw timestamp and decoded v1 signatures of one Stripe-Signature value.
struct Items<'v> {
    timestamp: Option<&'v str>,
    signatures: Vec<Vec<u8>>,
}

/// Reads Stripe-Signature into what the request claims.
pub(super) fn extract(headers: &HeaderMap) -> Result<Signed, Verification> {
    let items = parse_items(signature_header(headers, SIGNATURE)?)?;
    let timestamp_text = items
        .timestamp
        .ok_or_else(|| Verification::malformed(format!("{SIGNATURE} has no t= timestamp")))?;
    let timestamp = parse_timestamp(SIGNATURE, timestamp_text)?;
    if items.signatures.is_empty() {
        return Err(Verification::malformed(format!(
            "{SIGNATURE} has no v1= signature"
        )));
    }
    Ok(Signed {
        prefix: format!("{timestamp_text}.").into_bytes(),
        suffix: Vec::new(),
        timestamp: Some(timestamp),
        signatures: items.signatures,
        template: Cow::Borrowed("{t}.{body}"),
        encoding: Encoding::Hex,
    })
}

fn parse_items(value: &str) -> Result<Items<'_>, Verification> {
    let mut items = Items {
        timestamp: None,
        signatures: Vec::new(),
    };
    for (index, item) in value.split(',').enumerate() {
        let position = index + 1;
        let (key, text) = item.trim().split_once('=').ok_or_else(|| {
            Verification::malformed(format!("{SIGNATURE} item {position} is not key=value"))
        })?;
        match key {
            "t" if items.timestamp.is_some() => {
                return Err(Verification::malformed(format!(
                    "{SIGNATURE} has more than one t= timestamp"
                )));
            }
            "t" => items.timestamp = Some(text),
            "v1" => items
                .signatures
                .push(Encoding::Hex.decode(text).map_err(|e| {
                    Verification::malformed(format!("{SIGNATURE} item {position}: {e}"))
                })?),
            _ => {}
        }
    }
    Ok(items)
}
