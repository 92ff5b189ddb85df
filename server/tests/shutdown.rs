//! Stopping as a user sees it: the real binary, stopped with SIGTERM while deliveries are in
//! flight, has stored every delivery it acknowledged, and stops accepting; killed with SIGKILL
//! in the middle of a burst, it still shows every delivery it acknowledged when started again.

mod common;

use common::{
    binary::{Server, load::Load},
    envelope, spawn_app, spawn_app_in,
};

/// How many deliveries are fired at the server when it is told to stop.
const DELIVERIES: usize = 200;
/// How many of them come back before the server is told to stop.
const ANSWERED_BEFORE_SIGTERM: usize = 20;
/// How many more are sent just after the server was told to stop.
const LATE_DELIVERIES: usize = 50;
/// A source that answers only after 300 ms, so that deliveries are in flight when told to stop.
const SLOW_SOURCE: &str = "[[source]]\nname = \"slow\"\nresponse = { status = 202, body = \"accepted\", delay_ms = 300 }\n";

/// The outcome of one delivery: its body and, when acknowledged with 2xx, its delivery id.
struct Outcome {
    body: String,
    acknowledged: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_deliveries_in_flight_keeps_every_acknowledged_one() {
    let dir = tempfile::tempdir().unwrap();
    let (database, config) = (dir.path().join("h.db"), dir.path().join("hookscope.toml"));
    std::fs::write(&config, SLOW_SOURCE).unwrap();
    let start = || tokio::task::block_in_place(|| Server::start_with_config(&database, &config));
    let mut server = start();
    let client = reqwest::Client::new();

    let (outcomes_tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    // Half the deliveries go to a source that answers only after 300 ms, so some are
    // certainly still in flight when the signal comes.
    let send = |i: usize, source: &str| {
        let (client, outcomes_tx) = (client.clone(), outcomes_tx.clone());
        let url = server.url(&format!("/hooks/{source}"));
        tokio::spawn(async move {
            let body = envelope(&format!("shutdown-evt-{i}"), "applicant.hired").to_string();
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let acknowledged = match response {
                Ok(response) if response.status().is_success() => response
                    .headers()
                    .get("hookscope-delivery-id")
                    .map(|id| id.to_str().unwrap().to_owned()),
                _ => None,
            };
            let _ = outcomes_tx.send(Outcome { body, acknowledged });
        });
    };
    for i in 0..DELIVERIES {
        send(i, if i % 2 == 0 { "keldair" } else { "slow" });
    }

    let mut results = Vec::with_capacity(DELIVERIES + LATE_DELIVERIES);
    while results.len() < ANSWERED_BEFORE_SIGTERM {
        results.push(outcomes.recv().await.expect("every delivery reports"));
    }
    server.terminate();
    // Deliveries that arrive while the server stops are either refused or kept.
    for i in DELIVERIES..DELIVERIES + LATE_DELIVERIES {
        send(i, "keldair");
    }
    drop(outcomes_tx);
    while let Some(outcome) = outcomes.recv().await {
        results.push(outcome);
    }
    assert_eq!(results.len(), DELIVERIES + LATE_DELIVERIES);
    let status = tokio::task::block_in_place(|| server.wait());
    assert!(
        status.success(),
        "the server exits cleanly on SIGTERM: {status}"
    );

    // It no longer accepts anything.
    let after = reqwest::Client::new()
        .get(server.url("/healthz"))
        .send()
        .await;
    assert!(
        after.is_err(),
        "a request after exit must not connect: {after:?}"
    );

    let acknowledged: Vec<(&str, &str)> = results
        .iter()
        .filter_map(|o| o.acknowledged.as_deref().map(|id| (id, o.body.as_str())))
        .collect();
    assert!(
        acknowledged.len() >= ANSWERED_BEFORE_SIGTERM,
        "{} acknowledged",
        acknowledged.len()
    );

    // Started again on the same database, it shows every acknowledged delivery.
    let mut restarted = start();
    restarted.assert_stored(&acknowledged).await;
    let stored: i64 = restarted
        .listed_events()
        .await
        .iter()
        .map(|e| e["deliveryCount"].as_i64().unwrap())
        .sum();
    assert!(
        stored as usize >= acknowledged.len(),
        "{stored} stored, {} acknowledged",
        acknowledged.len()
    );
    assert!(stored as usize <= DELIVERIES + LATE_DELIVERIES);
    restarted.terminate();
    assert!(tokio::task::block_in_place(|| restarted.wait()).success());
}

#[tokio::test]
async fn a_stopped_application_keeps_its_deliveries_for_the_next_start() {
    let app = spawn_app().await;
    let id = app
        .post_json("keldair", &envelope("evt-before-stop", "applicant.hired"))
        .await;
    let address = app.address;
    let tempdir = app.stop().await.expect("a clean stop");
    assert!(
        reqwest::get(format!("http://{address}/healthz"))
            .await
            .is_err(),
        "no longer accepting"
    );

    let app = spawn_app_in(tempdir, None, None).await;
    let (event, delivery) = app.find_delivery(&id).await;
    assert_eq!(event["eventId"], "evt-before-stop");
    assert_eq!(delivery["responseStatus"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_burst_loses_no_acknowledged_delivery() {
    const SENDERS: usize = 32;
    const ACKNOWLEDGED_BEFORE_KILL: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("h.db");
    let mut server = tokio::task::block_in_place(|| Server::start(&database));

    // Each sender posts one event after another until its connection fails.
    let load = Load::start(&server.url("/hooks/keldair"), SENDERS, "kill-evt");
    load.wait_for(ACKNOWLEDGED_BEFORE_KILL).await;
    server.kill();
    // Whatever was acknowledged before the process died counts too.
    let acknowledged = load.finish().await.acknowledged;
    tokio::task::block_in_place(|| server.wait());

    let restarted = tokio::task::block_in_place(|| Server::start(&database));
    let stored: Vec<(&str, &str)> = acknowledged
        .iter()
        .map(|ack| (ack.delivery_id.as_str(), ack.body.as_str()))
        .collect();
    restarted.assert_stored(&stored).await;
}
