//! Webhook signature verification: the scheme a source signs with, its signing secrets and the
//! verdict on one received request. Each wire format lives in its own file and only turns headers
//! into a `Signed` claim; this file owns the shared types, the timestamp tolerance and the
//! constant-time comparison.

mod custom_hmac;
mod github;
mod standard_webhooks;
mod stripe;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use custom_hmac::{CustomHmac, SignedPayload};

type HmacSha256 = Hmac<Sha256>;

/// Standard base64 that accepts input with or without `=` padding and always pads its output.
// Senders disagree on padding; refusing either form would only produce false "malformed" verdicts.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How many characters of the expected digest a mismatch reason shows.
const EXPECTED_DIGEST_CHARS: usize = 12;

/// Which wire format a source signs with. Parsed from config strings
/// "standard-webhooks" | "stripe" | "github" | "hmac-sha256" | "none".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// webhook-id / webhook-timestamp / webhook-signature (standardwebhooks.com, Svix).
    StandardWebhooks,
    /// Stripe-Signature: `t=…,v1=…`.
    Stripe,
    /// X-Hub-Signature-256: `sha256=…`.
    Github,
    /// An HMAC-SHA256 in a header of the operator's choosing.
    CustomHmac(CustomHmac),
    /// The source does not sign; nothing is checked.
    None,
}

impl Scheme {
    /// Every config name, in the order a help text lists them.
    pub const NAMES: [&'static str; 5] = [
        "standard-webhooks",
        "stripe",
        "github",
        "hmac-sha256",
        "none",
    ];

    /// Parses a config name. "hmac-sha256" takes its settings from `custom` (an error when absent);
    /// the other names ignore `custom`.
    pub fn parse(name: &str, custom: Option<CustomHmac>) -> Result<Self, String> {
        match name {
            "standard-webhooks" => Ok(Self::StandardWebhooks),
            "stripe" => Ok(Self::Stripe),
            "github" => Ok(Self::Github),
            "hmac-sha256" => custom.map(Self::CustomHmac).ok_or_else(|| {
                "scheme \"hmac-sha256\" needs its signature header, encoding and signed template"
                    .to_owned()
            }),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown signature scheme {other:?}; expected one of {}",
                Self::NAMES.join(", ")
            )),
        }
    }

    /// The config name of this scheme.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard-webhooks",
            Self::Stripe => "stripe",
            Self::Github => "github",
            Self::CustomHmac(_) => "hmac-sha256",
            Self::None => "none",
        }
    }
}

/// How a signature is written as text in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Lowercase or uppercase hexadecimal.
    Hex,
    /// Standard base64, padded or not.
    Base64,
}

impl Encoding {
    /// Parses a config name: "hex" or "base64".
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "hex" => Ok(Self::Hex),
            "base64" => Ok(Self::Base64),
            other => Err(format!(
                "unknown signature encoding {other:?}; expected \"hex\" or \"base64\""
            )),
        }
    }

    /// The config name of this encoding.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hex => "hex",
            Self::Base64 => "base64",
        }
    }

    /// Decodes a signature; the error says why without echoing the input.
    fn decode(self, text: &str) -> Result<Vec<u8>, String> {
        if text.is_empty() {
            return Err("the signature is empty".to_owned());
        }
        let decoded = match self {
            Self::Hex => hex::decode(text).map_err(|e| e.to_string()),
            Self::Base64 => BASE64.decode(text).map_err(|e| e.to_string()),
        };
        decoded.map_err(|e| format!("not valid {} ({e})", self.name()))
    }

    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Self::Hex => hex::encode(bytes),
            Self::Base64 => BASE64.encode(bytes),
        }
    }
}

/// A signing secret; Debug prints `SigningSecret([redacted])`. Never logged whole.
#[derive(Clone)]
pub struct SigningSecret {
    // Kept as the keyed HMAC state rather than the raw key: it is all verification needs.
    keyed: HmacSha256,
}

impl SigningSecret {
    /// standard-webhooks: `"whsec_<base64>"` (the `whsec_` prefix optional), key = base64-decoded
    /// bytes; stripe, github, custom: the string's bytes as they are.
    pub fn parse(scheme: &Scheme, secret: &str) -> Result<Self, String> {
        let key = match scheme {
            Scheme::StandardWebhooks => standard_webhooks::decode_secret(secret)?,
            _ => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err("the signing secret is empty".to_owned());
        }
        let keyed = HmacSha256::new_from_slice(&key)
            .map_err(|_| "the signing secret cannot key an HMAC-SHA256".to_owned())?;
        Ok(Self { keyed })
    }

    /// The HMAC-SHA256 of `message` under this secret, as a sender computes it before encoding.
    pub fn sign(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

/// Checks received webhooks against a source's scheme and secrets.
#[derive(Clone, Debug)]
pub struct Verifier {
    /// The wire format the source signs with.
    pub scheme: Scheme,
    /// Every secret currently accepted; more than one during a rotation.
    pub secrets: Vec<SigningSecret>,
    /// How far, in seconds and in either direction, a signed timestamp may be from now.
    pub tolerance_secs: u64,
}

/// The outcome of checking one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// What the check concluded.
    pub verdict: Verdict,
    /// Why, for Missing and Invalid; None for Valid and Unchecked.
    pub reason: Option<String>,
}

/// What a signature check concluded: the verdict type the API and the UI show.
pub use app::model::SignatureVerdict as Verdict;

impl Verification {
    fn valid() -> Self {
        Self {
            verdict: Verdict::Valid,
            reason: None,
        }
    }

    fn unchecked() -> Self {
        Self {
            verdict: Verdict::Unchecked,
            reason: None,
        }
    }

    fn missing(reason: String) -> Self {
        Self {
            verdict: Verdict::Missing,
            reason: Some(reason),
        }
    }

    fn invalid(reason: String) -> Self {
        Self {
            verdict: Verdict::Invalid,
            reason: Some(reason),
        }
    }

    fn malformed(detail: impl fmt::Display) -> Self {
        Self::invalid(format!("malformed header: {detail}"))
    }
}

/// What a request claims, read from its headers: the signed message is `prefix`, the raw body,
/// then `suffix`.
// Prefix and suffix around a borrowed body avoid copying bodies that may be megabytes.
struct Signed {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    timestamp: Option<i64>,
    signatures: Vec<Vec<u8>>,
    /// What is signed, for the mismatch reason, e.g. "{timestamp}.{body}".
    template: Cow<'static, str>,
    /// How the scheme writes digests, for the expected digest in the mismatch reason.
    encoding: Encoding,
}

impl Signed {
    fn mac(&self, secret: &SigningSecret, body: &[u8]) -> HmacSha256 {
        let mut mac = secret.keyed.clone();
        mac.update(&self.prefix);
        mac.update(body);
        mac.update(&self.suffix);
        mac
    }

    /// Whether any claimed signature is the HMAC under `secret`, compared in constant time.
    fn matches(&self, secret: &SigningSecret, body: &[u8]) -> bool {
        let mac = self.mac(secret, body);
        self.signatures
            .iter()
            .any(|signature| mac.clone().verify_slice(signature).is_ok())
    }

    /// The start of the digest `secret` gives, encoded as the scheme writes it.
    fn expected_prefix(&self, secret: &SigningSecret, body: &[u8]) -> String {
        let digest = self.mac(secret, body).finalize().into_bytes();
        self.encoding
            .encode(&digest)
            .chars()
            .take(EXPECTED_DIGEST_CHARS)
            .collect()
    }
}

impl Verifier {
    /// The tolerance the reference libraries of Stripe and Standard Webhooks use.
    pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

    /// Check `body` (the raw bytes received) against `headers` at unix time `now`.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Verification {
        if self.secrets.is_empty() {
            return Verification::unchecked();
        }
        let claim = match &self.scheme {
            Scheme::None => return Verification::unchecked(),
            Scheme::StandardWebhooks => standard_webhooks::extract(headers),
            Scheme::Stripe => stripe::extract(headers),
            Scheme::Github => github::extract(headers),
            Scheme::CustomHmac(custom) => custom.extract(headers),
        };
        match claim.and_then(|signed| self.check(&signed, body, now)) {
            Ok(()) => Verification::valid(),
            Err(failure) => failure,
        }
    }

    fn check(&self, signed: &Signed, body: &[u8], now: i64) -> Result<(), Verification> {
        if let Some(timestamp) = signed.timestamp {
            self.check_tolerance(timestamp, now)?;
        }
        if self
            .secrets
            .iter()
            .any(|secret| signed.matches(secret, body))
        {
            Ok(())
        } else {
            Err(self.mismatch(signed, body))
        }
    }

    fn check_tolerance(&self, timestamp: i64, now: i64) -> Result<(), Verification> {
        let skew = now.abs_diff(timestamp);
        if skew <= self.tolerance_secs {
            return Ok(());
        }
        Err(Verification::invalid(format!(
            "timestamp outside the {} s tolerance (clock skew {skew} s)",
            self.tolerance_secs
        )))
    }

    fn mismatch(&self, signed: &Signed, body: &[u8]) -> Verification {
        let mut reason = format!(
            "mismatch: {}; signed \"{}\"",
            mismatch_summary(signed.signatures.len(), self.secrets.len()),
            signed.template
        );
        if let Some(first) = self.secrets.first() {
            let expected = signed.expected_prefix(first, body);
            reason.push_str(&format!(", expected {expected}… with the first secret"));
        }
        Verification::invalid(reason)
    }
}

/// "none of the 2 signatures matches any of the 3 secrets", in singular where it reads better.
fn mismatch_summary(signatures: usize, secrets: usize) -> String {
    match (signatures, secrets) {
        (1, 1) => "the signature does not match the secret".to_owned(),
        (1, m) => format!("the signature matches none of the {m} secrets"),
        (n, 1) => format!("none of the {n} signatures matches the secret"),
        (n, m) => format!("none of the {n} signatures matches any of the {m} secrets"),
    }
}

/// The value of header `name`; None when absent.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Verification> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| Verification::malformed(format!("{name} is not visible ASCII")))
        })
        .transpose()
}

/// The header carrying the signature: its absence makes the request Missing.
fn signature_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, Verification> {
    header(headers, name)?.ok_or_else(|| Verification::missing(format!("no {name} header")))
}

/// A header that must come with the signature: its absence makes the signature malformed.
fn companion_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, Verification> {
    header(headers, name)?.ok_or_else(|| Verification::malformed(format!("{name} is absent")))
}

/// A unix timestamp in seconds, digits only.
fn parse_timestamp(name: &str, text: &str) -> Result<i64, Verification> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits_only
        .then(|| text.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| {
            Verification::malformed(format!("{name} is not a unix timestamp in seconds"))
        })
}
