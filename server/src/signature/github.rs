//! GitHub: X-Hub-Signature-256 `sha256=<hex HMAC-SHA256 of the body>`; nothing else is signed and
//! there is no timestamp. The older SHA-1 X-Hub-Signature is deliberately not checked.

use std::borrow::Cow;

use axum::http::HeaderMap;

use super::{Encoding, Signed, Verification, header};

const SIGNATURE: &str = "x-hub-signature-256";
const SHA1_SIGNATURE: &str = "x-hub-signature";
const PREFIX: &str = "sha256=";

/// Reads X-Hub-Signature-256 into what the request claims.
pub(super) fn extract(headers: &HeaderMap) -> Result<Signed, Verification> {
    let value = header(headers, SIGNATURE)?.ok_or_else(|| missing(headers))?;
    let encoded = value.strip_prefix(PREFIX).ok_or_else(|| {
        Verification::malformed(format!("{SIGNATURE} does not start with \"{PREFIX}\""))
    })?;
    let signature = Encoding::Hex
        .decode(encoded)
        .map_err(|e| Verification::malformed(format!("{SIGNATURE}: {e}")))?;
    Ok(Signed {
        prefix: Vec::new(),
        suffix: Vec::new(),
        timestamp: None,
        signatures: vec![signature],
        template: Cow::Borrowed("{body}"),
        encoding: Encoding::Hex,
    })
}

// A request carrying only the SHA-1 header looks signed at a glance; say why it counts as missing.
fn missing(headers: &HeaderMap) -> Verification {
    let reason = if headers.contains_key(SHA1_SIGNATURE) {
        format!("no {SIGNATURE} header (only the SHA-1 {SHA1_SIGNATURE}, which is not checked)")
    } else {
        format!("no {SIGNATURE} header")
    };
    Verification::missing(reason)
}
