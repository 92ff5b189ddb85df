//! Signature checking as a user sees it: sources configured in the TOML file, requests signed
//! here the way each sender signs them (at the current time), and the verdict the API shows.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use common::{
    TestApp, assert_error, delivery_id_header, delivery_id_of, envelope, samples_dir, serve_args,
    spawn_app_with,
};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Sha256;

const STRIPE_SECRET: &str = "whsec_stripe_test_secret_0123456789";
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const CUSTOM_SECRET: &str = "custom-shared-secret";

/// The standard-webhooks secret of the project's signature vectors.
fn standard_webhooks_secret() -> String {
    let text = std::fs::read_to_string(samples_dir().join("signatures/vectors.json")).unwrap();
    let vectors: Vec<Value> = serde_json::from_str(&text).unwrap();
    let vector = vectors
        .iter()
        .find(|v| v["scheme"] == "standard-webhooks")
        .unwrap();
    vector["secret"].as_str().unwrap().to_owned()
}

fn config() -> String {
    format!(
        r#"
[[source]]
name = "sw"
scheme = "standard-webhooks"
secrets = ["{sw}"]

[[source]]
name = "stripe"
scheme = "stripe"
secrets = ["{STRIPE_SECRET}"]

[[source]]
name = "gh"
scheme = "github"
secrets = ["{GITHUB_SECRET}"]

[[source]]
name = "custom-hex"
scheme = "hmac-sha256"
header = "X-Signature"
prefix = "sha256="
encoding = "hex"
signed = "{{timestamp}}.{{body}}"
timestamp_header = "X-Timestamp"
secrets = ["{CUSTOM_SECRET}"]

[[source]]
name = "custom-b64"
scheme = "hmac-sha256"
header = "X-Sig-B64"
encoding = "base64"
signed = "{{timestamp}}:{{body}}"
timestamp_header = "X-Request-Time"
secrets = ["{CUSTOM_SECRET}"]

[[source]]
name = "rotating"
scheme = "stripe"
secrets = ["the-old-secret", "the-new-secret"]

[[source]]
name = "no-secrets"
scheme = "github"

[[source]]
name = "guarded"
scheme = "github"
secrets = ["{GITHUB_SECRET}"]
enforce = true
"#,
        sw = standard_webhooks_secret()
    )
}

async fn spawn() -> TestApp {
    spawn_app_with(&config(), None).await
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// How each configured source signs.
#[derive(Clone, Copy, Debug)]
enum Scheme {
    StandardWebhooks,
    Stripe,
    Github,
    CustomHex,
    CustomBase64,
}

impl Scheme {
    const ALL: [Scheme; 5] = [
        Self::StandardWebhooks,
        Self::Stripe,
        Self::Github,
        Self::CustomHex,
        Self::CustomBase64,
    ];
    const TIMESTAMPED: [Scheme; 4] = [
        Self::StandardWebhooks,
        Self::Stripe,
        Self::CustomHex,
        Self::CustomBase64,
    ];

    fn source(self) -> &'static str {
        match self {
            Self::StandardWebhooks => "sw",
            Self::Stripe => "stripe",
            Self::Github => "gh",
            Self::CustomHex => "custom-hex",
            Self::CustomBase64 => "custom-b64",
        }
    }

    /// The secret the source is configured with, as the sender holds it.
    fn secret(self) -> Vec<u8> {
        match self {
            Self::StandardWebhooks => {
                let secret = standard_webhooks_secret();
                BASE64
                    .decode(secret.strip_prefix("whsec_").unwrap())
                    .unwrap()
            }
            Self::Stripe => STRIPE_SECRET.into(),
            Self::Github => GITHUB_SECRET.into(),
            Self::CustomHex | Self::CustomBase64 => CUSTOM_SECRET.into(),
        }
    }

    /// The headers a sender holding `secret` adds to `body` at unix time `timestamp`.
    fn sign(self, secret: &[u8], body: &[u8], timestamp: i64) -> Vec<(String, String)> {
        let signed = |prefix: String| hmac_sha256(secret, &[prefix.as_bytes(), body].concat());
        let pairs: Vec<(&str, String)> = match self {
            Self::StandardWebhooks => {
                let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
                let signature = BASE64.encode(signed(format!("{id}.{timestamp}.")));
                vec![
                    ("webhook-id", id.to_owned()),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", format!("v1,{signature}")),
                ]
            }
            Self::Stripe => {
                let signature = hex::encode(signed(format!("{timestamp}.")));
                vec![("stripe-signature", format!("t={timestamp},v1={signature}"))]
            }
            Self::Github => vec![(
                "x-hub-signature-256",
                format!("sha256={}", hex::encode(signed(String::new()))),
            )],
            Self::CustomHex => vec![
                ("x-timestamp", timestamp.to_string()),
                (
                    "x-signature",
                    format!("sha256={}", hex::encode(signed(format!("{timestamp}.")))),
                ),
            ],
            Self::CustomBase64 => vec![
                ("x-request-time", timestamp.to_string()),
                ("x-sig-b64", BASE64.encode(signed(format!("{timestamp}:")))),
            ],
        };
        pairs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect()
    }
}

/// POSTs `body` to `source` with `headers`; returns the status and the stored delivery.
async fn deliver(
    app: &TestApp,
    source: &str,
    body: &[u8],
    headers: &[(String, String)],
) -> (StatusCode, Value) {
    let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    all.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let response = app.post_hook(source, body.to_vec(), &all).await;
    let status = response.status();
    let id = delivery_id_header(response.headers()).expect("a hookscope-delivery-id header");
    let (_, delivery) = app.find_delivery(&id).await;
    (status, delivery)
}

fn body(id: &str) -> Vec<u8> {
    envelope(id, "applicant.hired").to_string().into_bytes()
}

async fn assert_correctly_signed_is_valid(scheme: Scheme) {
    let app = spawn().await;
    let body = body(&format!("evt-{scheme:?}"));
    let headers = scheme.sign(&scheme.secret(), &body, now());
    let (status, delivery) = deliver(&app, scheme.source(), &body, &headers).await;
    assert_eq!(status, StatusCode::OK, "{scheme:?}");
    assert_eq!(delivery["signature"], "valid", "{scheme:?}: {delivery}");
    assert_eq!(delivery["signatureReason"], Value::Null, "{scheme:?}");
    let events = app.events(&[("source", scheme.source())]).await;
    assert_eq!(events[0]["signature"], "valid");
}

#[tokio::test]
async fn a_standard_webhooks_signature_made_now_is_valid() {
    assert_correctly_signed_is_valid(Scheme::StandardWebhooks).await;
}

#[tokio::test]
async fn a_stripe_signature_made_now_is_valid() {
    assert_correctly_signed_is_valid(Scheme::Stripe).await;
}

#[tokio::test]
async fn a_github_signature_is_valid() {
    assert_correctly_signed_is_valid(Scheme::Github).await;
}

#[tokio::test]
async fn a_custom_hex_hmac_with_a_timestamp_header_is_valid() {
    assert_correctly_signed_is_valid(Scheme::CustomHex).await;
}

#[tokio::test]
async fn a_custom_base64_hmac_with_a_timestamp_header_is_valid() {
    assert_correctly_signed_is_valid(Scheme::CustomBase64).await;
}

#[tokio::test]
async fn a_wrong_signature_is_invalid_with_a_mismatch_reason() {
    let app = spawn().await;
    for scheme in Scheme::ALL {
        let body = body(&format!("evt-wrong-{scheme:?}"));
        let headers = scheme.sign(b"not-the-configured-secret", &body, now());
        let (status, delivery) = deliver(&app, scheme.source(), &body, &headers).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{scheme:?}: not enforced, so still acknowledged"
        );
        assert_eq!(delivery["signature"], "invalid", "{scheme:?}");
        let reason = delivery["signatureReason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("mismatch"), "{scheme:?}: {reason}");
        assert_eq!(delivery["rejected"], false);
    }
}

#[tokio::test]
async fn a_body_changed_after_signing_is_invalid() {
    let app = spawn().await;
    for scheme in Scheme::ALL {
        let signed_body = body(&format!("evt-tampered-{scheme:?}"));
        let headers = scheme.sign(&scheme.secret(), &signed_body, now());
        let sent_body = body(&format!("evt-tampered-{scheme:?}-changed"));
        let (_, delivery) = deliver(&app, scheme.source(), &sent_body, &headers).await;
        assert_eq!(delivery["signature"], "invalid", "{scheme:?}");
        assert!(
            delivery["signatureReason"]
                .as_str()
                .unwrap()
                .starts_with("mismatch"),
            "{scheme:?}"
        );
    }
}

#[tokio::test]
async fn an_old_timestamp_is_invalid_outside_the_tolerance() {
    let app = spawn().await;
    for scheme in Scheme::TIMESTAMPED {
        let body = body(&format!("evt-old-{scheme:?}"));
        let headers = scheme.sign(&scheme.secret(), &body, now() - 3600);
        let (_, delivery) = deliver(&app, scheme.source(), &body, &headers).await;
        assert_eq!(delivery["signature"], "invalid", "{scheme:?}");
        let reason = delivery["signatureReason"].as_str().unwrap_or_default();
        assert!(reason.contains("tolerance"), "{scheme:?}: {reason}");
    }
}

#[tokio::test]
async fn no_signature_header_is_missing() {
    let app = spawn().await;
    for scheme in Scheme::ALL {
        let body = body(&format!("evt-unsigned-{scheme:?}"));
        let (status, delivery) = deliver(&app, scheme.source(), &body, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(delivery["signature"], "missing", "{scheme:?}");
        assert!(
            delivery["signatureReason"]
                .as_str()
                .is_some_and(|r| r.starts_with("no ")),
            "{delivery}"
        );
    }
}

#[tokio::test]
async fn a_source_without_secrets_is_unchecked() {
    let app = spawn().await;
    let signed = body("evt-no-secrets");
    let headers = Scheme::Github.sign(GITHUB_SECRET.as_bytes(), &signed, now());
    let (status, delivery) = deliver(&app, "no-secrets", &signed, &headers).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(delivery["signature"], "unchecked");
    // A source that is not in the file at all is not checked either.
    let (_, delivery) = deliver(&app, "not-configured", &body("evt-unconfigured"), &headers).await;
    assert_eq!(delivery["signature"], "unchecked");
}

#[tokio::test]
async fn during_a_rotation_a_signature_with_the_second_secret_is_valid() {
    let app = spawn().await;
    let body = body("evt-rotation");
    let headers = Scheme::Stripe.sign(b"the-new-secret", &body, now());
    let (_, delivery) = deliver(&app, "rotating", &body, &headers).await;
    assert_eq!(delivery["signature"], "valid");
    let headers = Scheme::Stripe.sign(b"the-old-secret", &body, now());
    let (_, delivery) = deliver(&app, "rotating", &body, &headers).await;
    assert_eq!(
        delivery["signature"], "valid",
        "the first secret still works too"
    );
    let headers = Scheme::Stripe.sign(b"a-third-secret", &body, now());
    let (_, delivery) = deliver(&app, "rotating", &body, &headers).await;
    assert_eq!(delivery["signature"], "invalid");
}

#[tokio::test]
async fn an_enforced_source_answers_401_to_a_bad_signature_and_still_keeps_it() {
    let app = spawn().await;
    let body = body("evt-enforced-bad");
    let headers = Scheme::Github.sign(b"forged", &body, now());
    let mut all = vec![("content-type", "application/json")];
    all.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let response = app.post_hook("guarded", body.clone(), &all).await;
    let id = delivery_id_header(response.headers()).expect("a 401 names the delivery it kept");
    let message = assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("mismatch"), "{message}");

    let (event, delivery) = app.find_delivery(&id).await;
    assert_eq!(delivery["rejected"], true);
    assert_eq!(delivery["signature"], "invalid");
    assert_eq!(delivery["responseStatus"], 401);
    let listed = app.events(&[("source", "guarded")]).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["key"], event["key"]);
    assert_eq!(listed[0]["eventId"], "evt-enforced-bad");

    // No signature at all is refused the same way.
    let response = app.post_hook("guarded", b"{}".to_vec(), &[]).await;
    assert_error(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn an_enforced_source_answers_200_to_a_good_signature() {
    let app = spawn().await;
    let body = body("evt-enforced-good");
    let headers = Scheme::Github.sign(GITHUB_SECRET.as_bytes(), &body, now());
    let mut all = vec![("content-type", "application/json")];
    all.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let response = app.post_hook("guarded", body, &all).await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = delivery_id_of(response).await;
    let (_, delivery) = app.find_delivery(&id).await;
    assert_eq!(delivery["signature"], "valid");
    assert_eq!(delivery["rejected"], false);
}

#[tokio::test]
async fn a_bad_config_file_stops_start_up_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[[source]]\nname = \"keldair\"\nscheme = \"rot13\"\n";
    let args = serve_args(dir.path(), Some(config), None);
    let path = args.config.clone().unwrap();
    let error = match hookscope::Application::build(args).await {
        Ok(_) => panic!("a config with an unknown scheme must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains(&format!("{}:3:", path.display())), "{error}");
    assert!(
        error.contains("unknown signature scheme \"rot13\""),
        "{error}"
    );
}

#[tokio::test]
async fn a_forged_first_delivery_keeps_its_verdict_beside_its_body_and_the_list_says_the_deliveries_disagree()
 {
    let app = spawn().await;
    // Someone forges the first delivery of an event; the genuine sender's retry follows, with
    // another body and a good signature, and a third, forged again.
    let forged = body("evt-forged-first");
    let headers = Scheme::Github.sign(b"forged", &forged, now());
    let (_, first) = deliver(&app, "gh", &forged, &headers).await;
    let mut genuine: Value = serde_json::from_slice(&forged).unwrap();
    genuine["data"]["applicant"]["firstName"] = "Amara (genuine)".into();
    let genuine = genuine.to_string().into_bytes();
    let headers = Scheme::Github.sign(GITHUB_SECRET.as_bytes(), &genuine, now());
    let (_, retry) = deliver(&app, "gh", &genuine, &headers).await;
    assert_eq!(first["signature"], "invalid");
    assert_eq!(
        retry["signature"], "valid",
        "each delivery keeps its own verdict"
    );

    let listed = app.events(&[("source", "gh")]).await;
    assert_eq!(listed.len(), 1);
    let event = &listed[0];
    assert_eq!(
        event["signature"], "invalid",
        "the verdict is the first delivery's, whose body the event shows"
    );
    assert_eq!(event["deliveryCount"], 2);
    assert_eq!(event["validDeliveries"], 1);
    assert_eq!(event["verdictsDiffer"], true);
    let detail = app.event_detail(event["key"].as_i64().unwrap()).await;
    assert_eq!(
        detail["payload"]["data"]["applicant"]["firstName"], "Amara",
        "the payload shown is the first delivery's"
    );

    let headers = Scheme::Github.sign(GITHUB_SECRET.as_bytes(), &genuine, now());
    deliver(&app, "gh", &genuine, &headers).await;
    app.log_in().await;
    let key = event["key"].as_i64().unwrap();
    for path in ["/".to_owned(), format!("/events/{key}")] {
        let page = app
            .client
            .get(app.url(&path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("2 of 3 deliveries valid"), "GET {path}");
    }

    // An event whose deliveries agree says nothing more.
    let agreeing = body("evt-agreeing");
    let headers = Scheme::Github.sign(GITHUB_SECRET.as_bytes(), &agreeing, now());
    deliver(&app, "gh", &agreeing, &headers).await;
    deliver(&app, "gh", &agreeing, &headers).await;
    let listed = app.events(&[("source", "gh")]).await;
    assert_eq!(listed[0]["eventId"], "evt-agreeing");
    assert_eq!(listed[0]["signature"], "valid");
    assert_eq!(listed[0]["verdictsDiffer"], false);
}
