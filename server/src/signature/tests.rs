//! Tests of signature verification: the shared vectors in samples/signatures/vectors.json, then
//! each rule of the verdict (missing, malformed, stale, mismatch, rotation) per scheme.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::{
    BASE64, CustomHmac, Encoding, Scheme, SignedPayload, SigningSecret, Verdict, Verification,
    Verifier,
};
use base64::Engine as _;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../samples/signatures/vectors.json"
);
const SW_SECRET: &str = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const NOW: i64 = 1_645_642_003;
const BODY: &[u8] = br#"{"type":"applicant.hired"}"#;

/// One case of vectors.json.
#[derive(Deserialize)]
struct Case {
    scheme: String,
    secret: String,
    body_file: Option<String>,
    body_text: Option<String>,
    headers: BTreeMap<String, String>,
    #[serde(default)]
    now: i64,
    expect: Verdict,
    reason: Option<String>,
}

impl Case {
    fn body(&self, dir: &Path) -> Vec<u8> {
        match (&self.body_file, &self.body_text) {
            (Some(file), _) => std::fs::read(dir.join(file)).expect("body_file readable"),
            (None, Some(text)) => text.as_bytes().to_vec(),
            (None, None) => panic!("a case needs body_file or body_text"),
        }
    }
}

fn load_vectors() -> (PathBuf, Vec<Case>) {
    let path = PathBuf::from(VECTORS);
    let text = std::fs::read_to_string(&path).expect("samples/signatures/vectors.json readable");
    let cases = serde_json::from_str(&text).expect("vectors.json well formed");
    let dir = path
        .parent()
        .expect("vectors.json has a folder")
        .to_path_buf();
    (dir, cases)
}

fn headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}

fn secret(scheme: &Scheme, text: &str) -> SigningSecret {
    SigningSecret::parse(scheme, text).expect("test secret parses")
}

fn verifier(scheme: Scheme, secrets: &[&str]) -> Verifier {
    let secrets = secrets.iter().map(|text| secret(&scheme, text)).collect();
    Verifier {
        scheme,
        secrets,
        tolerance_secs: Verifier::DEFAULT_TOLERANCE_SECS,
    }
}

fn reason(verification: &Verification) -> &str {
    verification.reason.as_deref().unwrap_or("")
}

fn assert_invalid_starting(verification: &Verification, start: &str) {
    assert_eq!(verification.verdict, Verdict::Invalid, "{verification:?}");
    assert!(
        reason(verification).starts_with(start),
        "{verification:?} should start with {start:?}"
    );
}

/// A Standard Webhooks request for `BODY`, signed with each of `secrets` at `timestamp`.
fn standard_request(secrets: &[&str], timestamp: i64) -> HeaderMap {
    let timestamp = timestamp.to_string();
    let message = [format!("msg_1.{timestamp}.").as_bytes(), BODY].concat();
    let entries: Vec<String> = secrets
        .iter()
        .map(|text| {
            let digest = secret(&Scheme::StandardWebhooks, text).sign(&message);
            format!("v1,{}", BASE64.encode(digest))
        })
        .collect();
    headers([
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", entries.join(" ").as_str()),
    ])
}

fn stripe_signature(secret_text: &str, timestamp: i64) -> String {
    let message = [format!("{timestamp}.").as_bytes(), BODY].concat();
    hex::encode(secret(&Scheme::Stripe, secret_text).sign(&message))
}

fn github_signature(secret_text: &str) -> String {
    format!(
        "sha256={}",
        hex::encode(secret(&Scheme::Github, secret_text).sign(BODY))
    )
}

#[test]
fn every_vector_reaches_its_verdict() {
    let (dir, cases) = load_vectors();
    assert!(!cases.is_empty());
    for (index, case) in cases.iter().enumerate() {
        let scheme = Scheme::parse(&case.scheme, None).expect("vector scheme");
        let verifier = Verifier {
            secrets: vec![secret(&scheme, &case.secret)],
            scheme,
            tolerance_secs: Verifier::DEFAULT_TOLERANCE_SECS,
        };
        let pairs = case.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let got = verifier.verify(&headers(pairs), &case.body(&dir), case.now);
        assert_eq!(
            got.verdict, case.expect,
            "case {index} ({:?}): {got:?}",
            case.reason
        );
        assert_eq!(
            got.verdict == Verdict::Valid,
            got.reason.is_none(),
            "case {index}: {got:?}"
        );
    }
}

#[test]
fn stale_vector_reports_tolerance_and_skew() {
    let (dir, cases) = load_vectors();
    let stale = cases
        .iter()
        .find(|case| {
            case.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("timestamp outside"))
        })
        .expect("vectors.json has a stale case");
    let verifier = verifier(Scheme::StandardWebhooks, &[&stale.secret]);
    let pairs = stale.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let got = verifier.verify(&headers(pairs), &stale.body(&dir), stale.now);
    assert_eq!(
        got.reason.as_deref(),
        Some("timestamp outside the 300 s tolerance (clock skew 301 s)")
    );
}

#[test]
fn scheme_none_or_no_secret_is_unchecked() {
    let request = standard_request(&[SW_SECRET], NOW);
    let none = Verifier {
        scheme: Scheme::None,
        secrets: vec![],
        tolerance_secs: 300,
    };
    let no_secret = Verifier {
        scheme: Scheme::StandardWebhooks,
        secrets: vec![],
        tolerance_secs: 300,
    };
    for verifier in [none, no_secret] {
        let got = verifier.verify(&request, BODY, NOW);
        assert_eq!(
            got,
            Verification {
                verdict: Verdict::Unchecked,
                reason: None
            }
        );
    }
}

#[test]
fn absent_signature_header_is_missing_and_named() {
    let custom = CustomHmac::new("X-Signature", "", Encoding::Hex, "{body}", None).expect("custom");
    let cases = [
        (Scheme::StandardWebhooks, "webhook-signature"),
        (Scheme::Stripe, "stripe-signature"),
        (Scheme::Github, "x-hub-signature-256"),
        (Scheme::CustomHmac(custom), "x-signature"),
    ];
    let unrelated = headers([
        ("content-type", "application/json"),
        ("webhook-id", "msg_1"),
    ]);
    for (scheme, header) in cases {
        let got = verifier(scheme, &["whsec_c2VjcmV0"]).verify(&unrelated, BODY, NOW);
        assert_eq!(got.verdict, Verdict::Missing, "{got:?}");
        assert!(
            reason(&got).contains(header),
            "{got:?} should name {header}"
        );
    }
}

#[test]
fn github_sha1_only_is_missing_with_a_hint() {
    let request = headers([("x-hub-signature", "sha1=0123")]);
    let got = verifier(Scheme::Github, &["s"]).verify(&request, BODY, NOW);
    assert_eq!(got.verdict, Verdict::Missing);
    assert!(reason(&got).contains("SHA-1"), "{got:?}");
}

#[test]
fn malformed_standard_webhooks_headers() {
    let good = standard_request(&[SW_SECRET], NOW);
    let signature = good["webhook-signature"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[
                ("webhook-timestamp", "1645642003"),
                ("webhook-signature", &signature),
            ],
            "webhook-id",
        ),
        (
            &[("webhook-id", "msg_1"), ("webhook-signature", &signature)],
            "webhook-timestamp",
        ),
        (
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", "soon"),
                ("webhook-signature", &signature),
            ],
            "webhook-timestamp is not a unix timestamp",
        ),
        (
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", "1645642003"),
                ("webhook-signature", "v1a,AAAA"),
            ],
            "webhook-signature has no v1 entry",
        ),
        (
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", "1645642003"),
                ("webhook-signature", "v1,!!!"),
            ],
            "not valid base64",
        ),
        (
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", "1645642003"),
                ("webhook-signature", "AAAA"),
            ],
            "entry 1",
        ),
    ];
    let verifier = verifier(Scheme::StandardWebhooks, &[SW_SECRET]);
    for (pairs, detail) in cases {
        let got = verifier.verify(&headers(pairs.iter().copied()), BODY, NOW);
        assert_invalid_starting(&got, "malformed header: ");
        assert!(
            reason(&got).contains(detail),
            "{got:?} should mention {detail:?}"
        );
    }
}

#[test]
fn malformed_stripe_headers() {
    let good = stripe_signature("sk", NOW);
    let cases = [
        (format!("v1={good}"), "no t= timestamp"),
        (format!("t={NOW},v0={good}"), "no v1= signature"),
        (format!("t=yesterday,v1={good}"), "not a unix timestamp"),
        (format!("t={NOW},v1=xyz"), "not valid hex"),
        (format!("t={NOW},t={NOW},v1={good}"), "more than one t="),
        (format!("t={NOW},{good}"), "item 2 is not key=value"),
    ];
    let verifier = verifier(Scheme::Stripe, &["sk"]);
    for (value, detail) in cases {
        let got = verifier.verify(&headers([("stripe-signature", value.as_str())]), BODY, NOW);
        assert_invalid_starting(&got, "malformed header: ");
        assert!(
            reason(&got).contains(detail),
            "{got:?} should mention {detail:?}"
        );
    }
}

#[test]
fn malformed_github_headers() {
    let verifier = verifier(Scheme::Github, &["gh"]);
    let cases = [
        ("757107ea", "does not start with \"sha256=\""),
        ("sha256=zz", "not valid hex"),
        ("sha256=", "empty"),
    ];
    for (value, detail) in cases {
        let got = verifier.verify(&headers([("x-hub-signature-256", value)]), BODY, NOW);
        assert_invalid_starting(&got, "malformed header: ");
        assert!(
            reason(&got).contains(detail),
            "{got:?} should mention {detail:?}"
        );
    }
}

#[test]
fn non_ascii_header_is_malformed() {
    let mut request = HeaderMap::new();
    request.insert(
        "x-hub-signature-256",
        HeaderValue::from_bytes(b"sha256=\xff").expect("opaque bytes allowed"),
    );
    let got = verifier(Scheme::Github, &["gh"]).verify(&request, BODY, NOW);
    assert_invalid_starting(
        &got,
        "malformed header: x-hub-signature-256 is not visible ASCII",
    );
}

#[test]
fn tolerance_applies_in_both_directions_and_includes_its_bound() {
    let verifier = verifier(Scheme::StandardWebhooks, &[SW_SECRET]);
    for (sent, now) in [(NOW, NOW + 300), (NOW, NOW - 300)] {
        let got = verifier.verify(&standard_request(&[SW_SECRET], sent), BODY, now);
        assert_eq!(got.verdict, Verdict::Valid, "{got:?}");
    }
    let future = verifier.verify(&standard_request(&[SW_SECRET], NOW + 301), BODY, NOW);
    assert_eq!(
        future.reason.as_deref(),
        Some("timestamp outside the 300 s tolerance (clock skew 301 s)")
    );
}

#[test]
fn stripe_tolerance_uses_t() {
    let value = format!("t={NOW},v1={}", stripe_signature("sk", NOW));
    let request = headers([("stripe-signature", value.as_str())]);
    let verifier = Verifier {
        tolerance_secs: 60,
        ..verifier(Scheme::Stripe, &["sk"])
    };
    assert_eq!(
        verifier.verify(&request, BODY, NOW + 60).verdict,
        Verdict::Valid
    );
    let stale = verifier.verify(&request, BODY, NOW + 1000);
    assert_eq!(
        stale.reason.as_deref(),
        Some("timestamp outside the 60 s tolerance (clock skew 1000 s)")
    );
}

#[test]
fn extreme_timestamps_do_not_overflow() {
    let request = standard_request(&[SW_SECRET], i64::MAX);
    let got = verifier(Scheme::StandardWebhooks, &[SW_SECRET]).verify(&request, BODY, i64::MIN);
    assert_invalid_starting(&got, "timestamp outside the 300 s tolerance (clock skew ");
}

#[test]
fn wrong_secret_is_a_mismatch_that_helps_without_leaking() {
    let other = "whsec_MDEyMzQ1Njc4OWFiY2RlZg==";
    let got = verifier(Scheme::StandardWebhooks, &[other]).verify(
        &standard_request(&[SW_SECRET], NOW),
        BODY,
        NOW,
    );
    let message = [format!("msg_1.{NOW}.").as_bytes(), BODY].concat();
    let expected = BASE64.encode(secret(&Scheme::StandardWebhooks, other).sign(&message));
    assert_eq!(
        got.reason.as_deref(),
        Some(
            format!(
                "mismatch: the signature does not match the secret; \
                 signed \"{{id}}.{{timestamp}}.{{body}}\", expected {}… with the first secret",
                &expected[..12]
            )
            .as_str()
        )
    );
    assert!(!reason(&got).contains("MDEyMzQ1Njc4OWFiY2RlZg"));
}

#[test]
fn mismatch_counts_signatures_and_secrets() {
    let value = format!(
        "t={NOW},v1={},v1={}",
        stripe_signature("a", NOW),
        stripe_signature("b", NOW)
    );
    let request = headers([("stripe-signature", value.as_str())]);
    let got = verifier(Scheme::Stripe, &["c", "d", "e"]).verify(&request, BODY, NOW);
    assert_invalid_starting(
        &got,
        "mismatch: none of the 2 signatures matches any of the 3 secrets; \
         signed \"{t}.{body}\", expected ",
    );
    let expected = &stripe_signature("c", NOW)[..12];
    assert!(
        reason(&got).contains(&format!("expected {expected}…")),
        "{got:?}"
    );
}

#[test]
fn tampered_body_is_a_mismatch() {
    let request = headers([("x-hub-signature-256", github_signature("gh").as_str())]);
    let got = verifier(Scheme::Github, &["gh"]).verify(&request, b"{}", NOW);
    assert_invalid_starting(
        &got,
        "mismatch: the signature does not match the secret; signed \"{body}\"",
    );
}

#[test]
fn rotation_any_secret_any_signature() {
    let old = "whsec_b2xkIHNlY3JldCBvbGQgc2VjcmV0";
    let new = "whsec_bmV3IHNlY3JldCBuZXcgc2VjcmV0";
    let unrelated = "whsec_dW5yZWxhdGVkIHNlY3JldA==";
    let sw = verifier(Scheme::StandardWebhooks, &[unrelated, old, new]);
    for signers in [&[old][..], &[new], &[unrelated, new], &[old, new]] {
        assert_eq!(
            sw.verify(&standard_request(signers, NOW), BODY, NOW)
                .verdict,
            Verdict::Valid
        );
    }

    let value = format!(
        "t={NOW},v1={},v1={}",
        stripe_signature("gone", NOW),
        stripe_signature("next", NOW)
    );
    let request = headers([("stripe-signature", value.as_str())]);
    let stripe = verifier(Scheme::Stripe, &["current", "next"]);
    assert_eq!(stripe.verify(&request, BODY, NOW).verdict, Verdict::Valid);

    let request = headers([("x-hub-signature-256", github_signature("second").as_str())]);
    let github = verifier(Scheme::Github, &["first", "second"]);
    assert_eq!(github.verify(&request, BODY, NOW).verdict, Verdict::Valid);
}

#[test]
fn custom_hex_with_prefix_and_timestamp() {
    let custom = CustomHmac::new(
        "X-Signature",
        "sha256=",
        Encoding::Hex,
        "{timestamp}.{body}",
        Some("X-Timestamp"),
    )
    .expect("custom");
    assert_eq!(custom.header, "x-signature");
    assert_eq!(custom.timestamp_header.as_deref(), Some("x-timestamp"));
    let verifier = verifier(Scheme::CustomHmac(custom), &["hush"]);
    let digest = hex::encode(
        secret(&verifier.scheme, "hush").sign(&[format!("{NOW}.").as_bytes(), BODY].concat()),
    );
    let now = NOW.to_string();

    let signed = format!("sha256={digest}");
    let request = headers([
        ("x-signature", signed.as_str()),
        ("x-timestamp", now.as_str()),
    ]);
    assert_eq!(verifier.verify(&request, BODY, NOW).verdict, Verdict::Valid);
    assert_eq!(
        verifier.verify(&request, BODY, NOW + 299).verdict,
        Verdict::Valid
    );

    let upper = format!("SHA256={}", digest.to_uppercase());
    let request_upper = headers([
        ("x-signature", upper.as_str()),
        ("x-timestamp", now.as_str()),
    ]);
    assert_eq!(
        verifier.verify(&request_upper, BODY, NOW).verdict,
        Verdict::Valid
    );

    let stale = verifier.verify(&request, BODY, NOW + 301);
    assert_eq!(
        stale.reason.as_deref(),
        Some("timestamp outside the 300 s tolerance (clock skew 301 s)")
    );

    let later = (NOW + 1).to_string();
    let moved = headers([
        ("x-signature", signed.as_str()),
        ("x-timestamp", later.as_str()),
    ]);
    assert_invalid_starting(&verifier.verify(&moved, BODY, NOW), "mismatch: ");

    let no_timestamp = headers([("x-signature", signed.as_str())]);
    assert_invalid_starting(
        &verifier.verify(&no_timestamp, BODY, NOW),
        "malformed header: x-timestamp is absent",
    );

    let no_prefix = headers([
        ("x-signature", digest.as_str()),
        ("x-timestamp", now.as_str()),
    ]);
    assert_invalid_starting(
        &verifier.verify(&no_prefix, BODY, NOW),
        "malformed header: x-signature does not start with \"sha256=\"",
    );
}

#[test]
fn custom_base64_with_prefix_and_suffix_template() {
    let custom = CustomHmac::new(
        "x-sig",
        "v1=",
        Encoding::Base64,
        "ts:{timestamp}|{body}|{timestamp}",
        Some("x-ts"),
    )
    .expect("custom");
    let verifier = verifier(Scheme::CustomHmac(custom), &["old", "new"]);
    let message = [
        format!("ts:{NOW}|").as_bytes(),
        BODY,
        format!("|{NOW}").as_bytes(),
    ]
    .concat();
    let digest = BASE64.encode(secret(&verifier.scheme, "new").sign(&message));
    let now = NOW.to_string();

    for encoded in [digest.clone(), digest.trim_end_matches('=').to_owned()] {
        let value = format!("v1={encoded}");
        let request = headers([("x-sig", value.as_str()), ("x-ts", now.as_str())]);
        assert_eq!(
            verifier.verify(&request, BODY, NOW).verdict,
            Verdict::Valid,
            "{value}"
        );
    }

    let wrong = format!(
        "v1={}",
        BASE64.encode(secret(&verifier.scheme, "other").sign(&message))
    );
    let request = headers([("x-sig", wrong.as_str()), ("x-ts", now.as_str())]);
    let got = verifier.verify(&request, BODY, NOW);
    assert_invalid_starting(
        &got,
        "mismatch: the signature matches none of the 2 secrets; \
         signed \"ts:{timestamp}|{body}|{timestamp}\", expected ",
    );
    let expected_old = BASE64.encode(secret(&verifier.scheme, "old").sign(&message));
    assert!(
        reason(&got).contains(&format!("expected {}…", &expected_old[..12])),
        "{got:?}"
    );

    let garbage = headers([("x-sig", "v1=@@@"), ("x-ts", now.as_str())]);
    assert_invalid_starting(
        &verifier.verify(&garbage, BODY, NOW),
        "malformed header: x-sig: not valid base64",
    );
}

#[test]
fn custom_without_timestamp_header_ignores_clock() {
    let custom = CustomHmac::new("x-sig", "", Encoding::Hex, "{body}", None).expect("custom");
    let verifier = verifier(Scheme::CustomHmac(custom), &["k"]);
    let value = hex::encode(secret(&verifier.scheme, "k").sign(BODY));
    let request = headers([("x-sig", value.as_str())]);
    assert_eq!(verifier.verify(&request, BODY, 0).verdict, Verdict::Valid);
    assert_eq!(
        verifier.verify(&request, BODY, i64::MAX).verdict,
        Verdict::Valid
    );
}

#[test]
fn custom_built_by_hand_without_timestamp_header_is_reported() {
    let custom = CustomHmac {
        header: "x-sig".to_owned(),
        prefix: String::new(),
        encoding: Encoding::Hex,
        signed: SignedPayload::parse("{timestamp}.{body}").expect("template"),
        timestamp_header: None,
    };
    let request = headers([("x-sig", "00ff")]);
    let got = verifier(Scheme::CustomHmac(custom), &["k"]).verify(&request, BODY, NOW);
    assert_invalid_starting(&got, "misconfigured: ");
}

#[test]
fn signed_payload_parse_errors() {
    for template in [
        "{body}",
        "{timestamp}.{body}",
        "v0:{timestamp}:{body}:{timestamp}",
        "}{body}",
    ] {
        let parsed = SignedPayload::parse(template).expect("valid template");
        assert_eq!(parsed.as_str(), template);
    }
    let errors = [
        ("", "must contain {body} exactly once (found 0)"),
        ("{timestamp}", "must contain {body} exactly once (found 0)"),
        (
            "{body}.{body}",
            "must contain {body} exactly once (found 2)",
        ),
        ("{bdy}", "unknown placeholder"),
        ("{id}.{body}", "unknown placeholder"),
        ("{body", "unknown placeholder or a stray '{'"),
    ];
    for (template, message) in errors {
        let error = SignedPayload::parse(template).expect_err(template);
        assert!(error.contains(message), "{template:?}: {error}");
    }
}

#[test]
fn custom_config_errors() {
    let error = CustomHmac::new("x-sig", "", Encoding::Hex, "{timestamp}.{body}", None)
        .expect_err("timestamp without header");
    assert!(
        error.contains("no timestamp header is configured"),
        "{error}"
    );
    let error =
        CustomHmac::new("x sig", "", Encoding::Hex, "{body}", None).expect_err("bad header");
    assert!(error.contains("not a valid header name"), "{error}");
    assert!(Encoding::parse("base32").is_err());
    assert_eq!(Encoding::parse("base64"), Ok(Encoding::Base64));
}

#[test]
fn scheme_names_round_trip() {
    let custom = CustomHmac::new("x-sig", "", Encoding::Hex, "{body}", None).expect("custom");
    for name in Scheme::NAMES {
        let scheme = Scheme::parse(name, Some(custom.clone())).expect(name);
        assert_eq!(scheme.name(), name);
    }
    assert!(Scheme::parse("hmac-sha256", None).is_err());
    let error = Scheme::parse("svix", None).expect_err("unknown");
    assert!(
        error.contains("standard-webhooks, stripe, github, hmac-sha256, none"),
        "{error}"
    );
}

#[test]
fn standard_webhooks_secret_prefix_is_optional() {
    let bare = SW_SECRET.trim_start_matches("whsec_");
    let with = secret(&Scheme::StandardWebhooks, SW_SECRET);
    let without = secret(&Scheme::StandardWebhooks, bare);
    assert_eq!(with.sign(BODY), without.sign(BODY));
}

#[test]
fn secret_errors_do_not_echo_the_secret() {
    let error =
        SigningSecret::parse(&Scheme::StandardWebhooks, "whsec_not*base64").expect_err("bad");
    assert!(error.contains("must be base64"), "{error}");
    assert!(
        !error.contains("not*base64") && !error.contains('*'),
        "{error}"
    );
    for scheme in [Scheme::StandardWebhooks, Scheme::Stripe, Scheme::Github] {
        assert!(SigningSecret::parse(&scheme, "").is_err());
    }
    assert!(SigningSecret::parse(&Scheme::StandardWebhooks, "whsec_").is_err());
}

#[test]
fn signing_secret_debug_is_redacted() {
    let secret = secret(&Scheme::Stripe, "sk_live_very_secret");
    assert_eq!(format!("{secret:?}"), "SigningSecret([redacted])");
    let verifier = Verifier {
        scheme: Scheme::Stripe,
        secrets: vec![secret],
        tolerance_secs: 300,
    };
    let shown = format!("{verifier:?} {verifier:#?}");
    assert!(!shown.contains("very_secret"), "{shown}");
    assert!(shown.contains("SigningSecret([redacted])"), "{shown}");
}

#[test]
fn verdict_names() {
    for (verdict, name) in [
        (Verdict::Valid, "valid"),
        (Verdict::Invalid, "invalid"),
        (Verdict::Missing, "missing"),
        (Verdict::Unchecked, "unchecked"),
    ] {
        assert_eq!(verdict.as_str(), name);
        assert_eq!(
            serde_json::to_string(&verdict).expect("serialize"),
            format!("\"{name}\"")
        );
    }
}
