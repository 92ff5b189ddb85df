//! Ingestion as a webhook sender and then a user see it: what `/hooks/{source}` answers, and
//! what the API shows was kept.

mod common;

use common::{
    TOKEN, assert_error, delivery_id_header, delivery_id_of, envelope, keldair_sample, spawn_app,
    spawn_app_with,
};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_keldairhr_sample_is_acknowledged_and_listed_with_its_envelope_fields() {
    let app = spawn_app().await;
    let sample = keldair_sample("applicant_created");
    let expected: Value = serde_json::from_slice(&sample).unwrap();

    let response = app
        .post_hook(
            "keldair",
            sample.clone(),
            &[
                ("content-type", "application/json"),
                ("x-first", "one"),
                ("x-custom", "hello"),
                ("x-last", "two"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let delivery_id = delivery_id_of(response).await;

    let events = app.all_events().await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert!(event["key"].is_i64());
    assert_eq!(event["source"], "keldair");
    assert_eq!(event["eventId"], expected["id"]);
    assert_eq!(event["type"], "applicant.created");
    assert_eq!(event["version"], expected["version"]);
    assert_eq!(event["dateOccurred"], expected["dateOccurred"]);
    assert!(
        event["receivedAt"]
            .as_str()
            .is_some_and(|t| t.starts_with("20") && t.ends_with('Z')),
        "{event}"
    );
    assert_eq!(event["deliveryCount"], 1);
    assert_eq!(event["signature"], "unchecked");
    assert_eq!(event["bodyKind"], "envelope");
    assert_eq!(event["bodyDiffers"], false);

    let detail = app.event_detail(event["key"].as_i64().unwrap()).await;
    assert_eq!(detail["payload"], expected);
    assert_eq!(detail["eventId"], expected["id"]);
    let deliveries = detail["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert_eq!(delivery["id"], delivery_id.as_str());
    assert_eq!(delivery["method"], "POST");
    assert_eq!(delivery["path"], "/hooks/keldair");
    assert_eq!(delivery["query"], Value::Null);
    assert_eq!(delivery["size"], sample.len());
    assert_eq!(delivery["signature"], "unchecked");
    assert_eq!(delivery["responseStatus"], 200);
    assert_eq!(delivery["contentType"], "application/json");
    let remote = delivery["remoteAddr"].as_str().unwrap();
    assert!(remote.starts_with("127.0.0.1:"), "{remote}");

    let headers: Vec<(&str, &str)> = delivery["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["name"].as_str().unwrap(), h["value"].as_str().unwrap()))
        .collect();
    assert!(
        headers.contains(&("content-type", "application/json")),
        "{headers:?}"
    );
    let position = |name: &str| headers.iter().position(|(n, _)| *n == name).unwrap();
    assert_eq!(headers[position("x-custom")], ("x-custom", "hello"));
    assert!(
        position("x-first") < position("x-custom") && position("x-custom") < position("x-last"),
        "{headers:?}"
    );
}

#[tokio::test]
async fn a_binary_body_comes_back_byte_for_byte_with_its_content_type() {
    let app = spawn_app().await;
    let body: Vec<u8> = [
        0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x0d, 0x0a, 0x00, 0xf0, 0x9f,
    ]
    .repeat(3);
    let content_type = "application/x-keldair-blob; charset=weird";

    let response = app
        .post_hook("keldair", body.clone(), &[("content-type", content_type)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = delivery_id_of(response).await;

    let raw = app.api_get(&format!("/api/deliveries/{id}/raw")).await;
    assert_eq!(raw.status(), StatusCode::OK);
    assert_eq!(raw.headers()["content-type"], content_type);
    assert_eq!(raw.bytes().await.unwrap().as_ref(), body.as_slice());

    let (event, delivery) = app.find_delivery(&id).await;
    assert_eq!(event["bodyKind"], "notJson");
    assert_eq!(delivery["size"], body.len());
}

#[tokio::test]
async fn any_method_sub_path_and_query_are_kept() {
    let app = spawn_app().await;
    let cases = [
        (
            Method::PUT,
            "keldair/a/b?x=1&y=2",
            "/hooks/keldair/a/b",
            Some("x=1&y=2"),
        ),
        (
            Method::PATCH,
            "keldair/patched",
            "/hooks/keldair/patched",
            None,
        ),
        (
            Method::DELETE,
            "keldair?gone=yes",
            "/hooks/keldair",
            Some("gone=yes"),
        ),
        (
            Method::GET,
            "keldair/ping/deep/er?q=%20s",
            "/hooks/keldair/ping/deep/er",
            Some("q=%20s"),
        ),
    ];
    for (method, target, path, query) in cases {
        let response = app.send_hook(method.clone(), target, "", &[]).await;
        assert_eq!(response.status(), StatusCode::OK, "{method} {target}");
        let id = delivery_id_of(response).await;
        let (event, delivery) = app.find_delivery(&id).await;
        assert_eq!(event["source"], "keldair");
        assert_eq!(delivery["method"], method.as_str());
        assert_eq!(delivery["path"], path);
        assert_eq!(delivery["query"], query.map_or(Value::Null, Value::from));
    }
    assert_eq!(app.all_events().await.len(), 4);
}

#[tokio::test]
async fn non_json_bodies_are_each_their_own_event_with_a_parse_error() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = app
            .post_hook(
                "keldair",
                "name=Amara&stage=hired",
                &[("content-type", "text/plain")],
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        ids.push(delivery_id_of(response).await);
    }
    assert_ne!(ids[0], ids[1]);

    let events = app.all_events().await;
    assert_eq!(
        events.len(),
        2,
        "two identical non-JSON posts make two events"
    );
    for event in &events {
        assert_eq!(event["bodyKind"], "notJson");
        assert!(
            event["parseError"].as_str().is_some_and(|e| !e.is_empty()),
            "{event}"
        );
        assert_eq!(event["deliveryCount"], 1);
        assert_eq!(event["eventId"], Value::Null);
        assert_eq!(event["type"], Value::Null);
        let detail = app.event_detail(event["key"].as_i64().unwrap()).await;
        assert_eq!(detail["payload"], Value::Null);
        assert_eq!(detail["rawText"], "name=Amara&stage=hired");
    }
}

#[tokio::test]
async fn json_that_is_not_an_envelope_is_kept_as_plain_json() {
    let app = spawn_app().await;
    let body = json!({ "hello": "world", "items": [1, 2, 3] });
    app.post_json("keldair", &body).await;

    let events = app.all_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["bodyKind"], "json");
    assert!(events[0]["parseError"].is_string());
    let detail = app.event_detail(events[0]["key"].as_i64().unwrap()).await;
    assert_eq!(detail["payload"], body);
}

#[tokio::test]
async fn the_same_event_id_twice_is_one_event_with_two_deliveries() {
    let app = spawn_app().await;
    let sample = keldair_sample("applicant_hired");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = app
            .post_hook(
                "keldair",
                sample.clone(),
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        ids.push(delivery_id_of(response).await);
    }

    let events = app.all_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["deliveryCount"], 2);
    assert_eq!(events[0]["bodyDiffers"], false);
    let detail = app.event_detail(events[0]["key"].as_i64().unwrap()).await;
    let deliveries = detail["deliveries"].as_array().unwrap();
    let delivery_ids: Vec<&str> = deliveries
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(delivery_ids, ids, "both deliveries, oldest first");
    assert!(deliveries.iter().all(|d| d["bodyDiffers"] == false));
}

#[tokio::test]
async fn a_duplicate_with_a_different_body_is_flagged() {
    let app = spawn_app().await;
    let first = envelope("evt-differs", "applicant.hired");
    let mut second = first.clone();
    second["data"]["applicant"]["firstName"] = json!("Chidi");
    app.post_json("keldair", &first).await;
    let second_id = app.post_json("keldair", &second).await;

    let events = app.all_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["deliveryCount"], 2);
    assert_eq!(events[0]["bodyDiffers"], true);
    let detail = app.event_detail(events[0]["key"].as_i64().unwrap()).await;
    let deliveries = detail["deliveries"].as_array().unwrap();
    assert_eq!(deliveries[0]["bodyDiffers"], false);
    assert_eq!(deliveries[1]["id"], second_id.as_str());
    assert_eq!(deliveries[1]["bodyDiffers"], true);
    assert_eq!(
        detail["payload"], first,
        "the payload is the first delivery's"
    );
}

#[tokio::test]
async fn the_same_event_id_from_two_sources_is_two_events() {
    let app = spawn_app().await;
    let body = envelope("evt-shared", "offer.accepted");
    app.post_json("keldair", &body).await;
    app.post_json("keldair-staging", &body).await;

    let events = app.all_events().await;
    assert_eq!(events.len(), 2);
    let mut sources: Vec<&str> = events
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    sources.sort_unstable();
    assert_eq!(sources, ["keldair", "keldair-staging"]);
    assert!(
        events
            .iter()
            .all(|e| e["eventId"] == "evt-shared" && e["deliveryCount"] == 1)
    );
}

#[tokio::test]
async fn an_unknown_source_is_created_on_first_use() {
    let app = spawn_app().await;
    assert!(
        app.events(&[("source", "brand-new_source.2")])
            .await
            .is_empty()
    );
    app.post_json("brand-new_source.2", &envelope("evt-new", "job.published"))
        .await;

    let events = app.events(&[("source", "brand-new_source.2")]).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["source"], "brand-new_source.2");
    assert_eq!(events[0]["signature"], "unchecked");
}

#[tokio::test]
async fn an_invalid_source_name_is_refused_with_400() {
    let app = spawn_app().await;
    let response = app
        .post_hook("a%20b", "{}", &[("content-type", "application/json")])
        .await;
    let message = assert_error(response, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("source name"), "{message}");
    assert!(app.all_events().await.is_empty(), "nothing is stored");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413_and_its_delivery_is_kept() {
    let app = spawn_app_with("", Some("1KiB")).await;
    let body = vec![b'x'; 2048];
    let response = app
        .post_hook(
            "keldair",
            body,
            &[("content-type", "application/json"), ("x-custom", "big")],
        )
        .await;
    let id = delivery_id_header(response.headers()).expect("a 413 names the delivery it kept");
    let message = assert_error(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(message.contains("1024"), "{message}");

    let (event, delivery) = app.find_delivery(&id).await;
    assert_eq!(event["bodyKind"], "tooLarge");
    assert!(event["parseError"].is_string());
    assert_eq!(delivery["size"], 2048);
    assert_eq!(delivery["tooLarge"], true);
    assert_eq!(delivery["responseStatus"], 413);
    let headers = delivery["headers"].as_array().unwrap();
    assert!(
        headers.contains(&json!({ "name": "x-custom", "value": "big" })),
        "{headers:?}"
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_with_413() {
    let app = spawn_app_with("", Some("1KiB")).await;
    let mut request = format!(
        "POST /hooks/keldair HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/octet-stream\r\nX-Custom: chunked\r\nConnection: close\r\n\r\n",
        app.address
    )
    .into_bytes();
    for _ in 0..4 {
        request.extend_from_slice(b"200\r\n");
        request.extend_from_slice(&[b'y'; 0x200]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    let id = answer
        .lines()
        .find_map(|line| line.strip_prefix("hookscope-delivery-id: "))
        .expect("a 413 names the delivery it kept")
        .trim()
        .to_owned();

    let (event, delivery) = app.find_delivery(&id).await;
    assert_eq!(event["bodyKind"], "tooLarge");
    assert_eq!(delivery["tooLarge"], true);
    assert!(delivery["size"].as_i64().unwrap() > 1024, "{delivery}");
    let headers = delivery["headers"].as_array().unwrap();
    assert!(
        headers.contains(&json!({ "name": "x-custom", "value": "chunked" })),
        "{headers:?}"
    );
}

#[tokio::test]
async fn a_configured_response_is_what_the_sender_gets() {
    let config = r#"
[[source]]
name = "keldair"
response = { status = 202, body = "accepted", delay_ms = 0 }
"#;
    let app = spawn_app_with(config, None).await;
    let response = app
        .post_hook("keldair", keldair_sample("job_published"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = delivery_id_header(response.headers()).expect("a hookscope-delivery-id header");
    assert_eq!(response.text().await.unwrap(), "accepted");

    let (_, delivery) = app.find_delivery(&id).await;
    assert_eq!(delivery["responseStatus"], 202);

    // Another source keeps the default answer.
    let other = app.post_hook("other", "{}", &[]).await;
    assert_eq!(other.status(), StatusCode::OK);
    delivery_id_of(other).await;
}

#[tokio::test]
async fn healthz_answers_200_without_a_token() {
    let app = spawn_app().await;
    let response = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "ok");
    // With a token too, of course.
    let response = app
        .client
        .get(app.url("/healthz"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_configured_error_status_is_answered_with_the_configured_body() {
    let config = r#"
[[source]]
name = "teapot"
response = { status = 413, body = "configured refusal" }

[[source]]
name = "locked"
scheme = "github"
secrets = ["s3cret"]
enforce = true
response = { status = 401, body = "configured 401" }
"#;
    let app = spawn_app_with(config, None).await;
    let response = app.post_hook("teapot", "{}", &[]).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(delivery_id_header(response.headers()).is_some());
    assert_eq!(response.text().await.unwrap(), "configured refusal");

    // A delivery that passes the enforced check gets the configured answer, even a 401...
    let body = envelope("evt-locked", "applicant.hired").to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let response = app
        .post_hook(
            "locked",
            body.clone(),
            &[("x-hub-signature-256", &signature)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let id = delivery_id_header(response.headers()).unwrap();
    assert_eq!(response.text().await.unwrap(), "configured 401");
    let (_, delivery) = app.find_delivery(&id).await;
    assert_eq!(
        (
            delivery["signature"].as_str(),
            delivery["rejected"].as_bool()
        ),
        (Some("valid"), Some(false))
    );

    // ...while one that fails it gets the error that says why.
    let response = app
        .post_hook("locked", body, &[("x-hub-signature-256", "sha256=00")])
        .await;
    let message = assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert!(message.starts_with("signature not valid"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_are_counted_against_one_event() {
    let app = std::sync::Arc::new(spawn_app().await);
    let body = envelope("evt-burst", "applicant.hired").to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (app, body) = (app.clone(), body.clone());
        // Every fourth one is a fresh event, so batches mix new events and duplicates.
        let body = if i % 4 == 3 {
            envelope(&format!("evt-single-{i}"), "offer.accepted").to_string()
        } else {
            body
        };
        tasks.spawn(async move {
            let response = app.post_hook("keldair", body, &[]).await;
            assert_eq!(response.status(), StatusCode::OK);
            delivery_id_of(response).await
        });
    }
    let ids: Vec<String> = tasks.join_all().await;
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        40
    );

    let events = app.all_events().await;
    assert_eq!(events.len(), 11);
    let burst = events.iter().find(|e| e["eventId"] == "evt-burst").unwrap();
    assert_eq!(burst["deliveryCount"], 30);
    assert_eq!(burst["bodyDiffers"], false);
    let detail = app.event_detail(burst["key"].as_i64().unwrap()).await;
    assert_eq!(detail["deliveries"].as_array().unwrap().len(), 30);
    let total: i64 = events
        .iter()
        .map(|e| e["deliveryCount"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 40);
}

#[tokio::test]
async fn hooks_without_a_source_name_say_how_the_url_goes() {
    let app = spawn_app().await;
    for path in ["/hooks", "/hooks/"] {
        let response = reqwest::Client::new()
            .post(app.url(path))
            .body("{}")
            .send()
            .await
            .unwrap();
        let message = assert_error(response, StatusCode::NOT_FOUND).await;
        assert!(message.contains("/hooks/{source}"), "{message}");
    }
    assert!(app.all_events().await.is_empty());
}

#[tokio::test]
async fn an_in_memory_database_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = common::serve_args(dir.path(), None, None);
    args.database_url = "sqlite::memory:".to_owned();
    let error = match hookscope::Application::build(args).await {
        Ok(_) => panic!("an in-memory database must not start: nothing would be kept"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("needs a database file on disk"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_steady_rate_a_delivery_is_listed_within_a_second_of_its_acknowledgement() {
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
        time::{Duration, Instant},
    };

    const SENDERS: usize = 4;
    const PER_SENDER: usize = 100;
    let app = Arc::new(spawn_app().await);
    let acknowledged: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut senders = tokio::task::JoinSet::new();
    for s in 0..SENDERS {
        let (app, acknowledged) = (app.clone(), acknowledged.clone());
        senders.spawn(async move {
            // 100 a second per sender, 400 in all, for a second.
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for n in 0..PER_SENDER {
                tick.tick().await;
                let id = format!("evt-steady-{s}-{n}");
                let body = envelope(&id, "applicant.hired").to_string();
                let response = app.post_hook("keldair", body, &[]).await;
                assert_eq!(response.status(), StatusCode::OK);
                acknowledged.lock().unwrap().insert(id, Instant::now());
            }
        });
    }
    // A viewer reads the newest page every 50 ms and notes when each event first shows.
    let mut listed: HashMap<String, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while listed.len() < SENDERS * PER_SENDER {
        assert!(Instant::now() < deadline, "only {} listed", listed.len());
        let page = app.events_page(&[("limit", "500")]).await;
        let now = Instant::now();
        for event in page["items"].as_array().unwrap() {
            let id = event["eventId"].as_str().unwrap().to_owned();
            listed.entry(id).or_insert(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    senders.join_all().await;
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert_eq!(acknowledged.len(), SENDERS * PER_SENDER);
    let mut slowest = Duration::ZERO;
    for (id, acked_at) in acknowledged.iter() {
        let shown = listed[id].saturating_duration_since(*acked_at);
        slowest = slowest.max(shown);
    }
    assert!(
        slowest < Duration::from_secs(1),
        "the slowest delivery was listed {slowest:?} after its acknowledgement"
    );
    assert_eq!(app.events_page(&[("limit", "1")]).await["pending"], 0);
}

#[tokio::test]
async fn each_acknowledgement_carries_the_seq_the_api_shows_increasing_in_commit_order() {
    let app = spawn_app().await;
    let mut seqs = Vec::new();
    for n in 0..3 {
        let body = envelope("evt-seq", "applicant.hired").to_string();
        let response = app.post_hook("keldair", body, &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let answer: Value = response.json().await.unwrap();
        let seq = answer["seq"].as_i64().expect("a seq in the answer");
        let (_, delivery) = app
            .find_delivery(answer["deliveryId"].as_str().unwrap())
            .await;
        assert_eq!(delivery["seq"], seq, "delivery {n}");
        seqs.push(seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}
