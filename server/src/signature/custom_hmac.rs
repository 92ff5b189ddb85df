//! Operator-configured HMAC-SHA256 signatures ("hmac-sha256"): which header carries the signature,
//! the prefix before it, its encoding, and the template of what is signed ([`SignedPayload`]),
//! optionally with a timestamp from another header.

use std::borrow::Cow;

use axum::http::HeaderMap;
use axum::http::header::HeaderName;

use super::{Encoding, Signed, Verification, companion_header, parse_timestamp, signature_header};

const BODY: &str = "{body}";
const TIMESTAMP: &str = "{timestamp}";

/// The settings of an "hmac-sha256" source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomHmac {
    /// Header carrying the signature, lowercase, e.g. "x-signature".
    pub header: String,
    /// Stripped before decoding, e.g. "sha256=" (may be empty); matched ignoring ASCII case.
    pub prefix: String,
    /// How the signature is written.
    pub encoding: Encoding,
    /// What is signed.
    pub signed: SignedPayload,
    /// Header holding a unix timestamp, if the template uses {timestamp}; when set, the verifier's
    /// tolerance applies.
    pub timestamp_header: Option<String>,
}

impl CustomHmac {
    /// Checks and normalises settings read from config: header names valid (stored lowercase), the
    /// template well formed, and a timestamp header given when the template uses {timestamp}.
    pub fn new(
        header: &str,
        prefix: &str,
        encoding: Encoding,
        template: &str,
        timestamp_header: Option<&str>,
    ) -> Result<Self, String> {
        let signed = SignedPayload::parse(template)?;
        if signed.uses_timestamp() && timestamp_header.is_none() {
            return Err(format!(
                "the signed template {template:?} uses {TIMESTAMP} \
                 but no timestamp header is configured"
            ));
        }
        Ok(Self {
            header: header_name(header)?,
            prefix: prefix.to_owned(),
            encoding,
            signed,
            timestamp_header: timestamp_header.map(header_name).transpose()?,
        })
    }

    /// Reads the configured headers into what the request claims.
    pub(super) fn extract(&self, headers: &HeaderMap) -> Result<Signed, Verification> {
        let value = signature_header(headers, &self.header)?;
        let encoded = strip_prefix_ignore_case(value, &self.prefix).ok_or_else(|| {
            Verification::malformed(format!(
                "{} does not start with {:?}",
                self.header, self.prefix
            ))
        })?;
        let signature = self
            .encoding
            .decode(encoded.trim())
            .map_err(|e| Verification::malformed(format!("{}: {e}", self.header)))?;
        let timestamp = self.timestamp(headers)?;
        if self.signed.uses_timestamp() && timestamp.is_none() {
            // Only reachable when the struct was built by hand rather than through new().
            return Err(Verification::invalid(format!(
                "misconfigured: the signed template uses {TIMESTAMP} \
                 but no timestamp header is configured"
            )));
        }
        let (prefix, suffix) = self
            .signed
            .around_body(timestamp.map_or("", |(text, _)| text));
        Ok(Signed {
            prefix,
            suffix,
            timestamp: timestamp.map(|(_, seconds)| seconds),
            signatures: vec![signature],
            template: Cow::Owned(self.signed.as_str().to_owned()),
            encoding: self.encoding,
        })
    }

    /// The raw text and value of the timestamp header, when one is configured.
    fn timestamp<'h>(
        &self,
        headers: &'h HeaderMap,
    ) -> Result<Option<(&'h str, i64)>, Verification> {
        let Some(name) = &self.timestamp_header else {
            return Ok(None);
        };
        let text = companion_header(headers, name)?;
        Ok(Some((text, parse_timestamp(name, text)?)))
    }
}

/// A template such as "{body}" or "{timestamp}.{body}"; parse() rejects a template without exactly
/// one {body}. A template using {timestamp} needs a timestamp header, which [`CustomHmac::new`]
/// checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPayload {
    template: String,
}

impl SignedPayload {
    /// Parses a template made of literal text, exactly one {body} and any number of {timestamp}.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut bodies = 0;
        // Every piece after a '{' must open with a known placeholder; a literal '{' is not allowed,
        // which keeps a typo such as "{bdy}" from being signed as text.
        for piece in template.split('{').skip(1) {
            if piece.starts_with("body}") {
                bodies += 1;
            } else if !piece.starts_with("timestamp}") {
                return Err(format!(
                    "the signed template {template:?} has an unknown placeholder or a stray '{{'; \
                     only {BODY} and {TIMESTAMP} are allowed"
                ));
            }
        }
        if bodies != 1 {
            return Err(format!(
                "the signed template {template:?} must contain {BODY} exactly once (found {bodies})"
            ));
        }
        Ok(Self {
            template: template.to_owned(),
        })
    }

    /// Whether the template contains {timestamp}.
    pub fn uses_timestamp(&self) -> bool {
        self.template.contains(TIMESTAMP)
    }

    /// The template as configured.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// The signed bytes before and after the body, with `timestamp` filled in.
    fn around_body(&self, timestamp: &str) -> (Vec<u8>, Vec<u8>) {
        let (before, after) = self
            .template
            .split_once(BODY)
            .unwrap_or((&self.template, ""));
        (
            before.replace(TIMESTAMP, timestamp).into_bytes(),
            after.replace(TIMESTAMP, timestamp).into_bytes(),
        )
    }
}

/// A configured header name, lowercased; an error when it is not a valid HTTP header name.
fn header_name(name: &str) -> Result<String, String> {
    let lower = name.trim().to_ascii_lowercase();
    HeaderName::from_bytes(lower.as_bytes())
        .map(|valid| valid.as_str().to_owned())
        .map_err(|_| format!("{name:?} is not a valid header name"))
}

fn strip_prefix_ignore_case<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let (head, rest) = value.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}
