//! Stopping as a user sees it: the real binary, stopped with SIGTERM while deliveries are in
//! flight, has stored every delivery it acknowledged, and stops accepting; killed with SIGKILL
//! in the middle of a burst, it still shows every delivery it acknowledged when started again.

mod common;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{TOKEN, envelope, spawn_app, spawn_app_in};
use reqwest::StatusCode;
use serde_json::Value;

/// How many deliveries are fired at the server when it is told to stop.
const DELIVERIES: usize = 200;
/// How many of them come back before the server is told to stop.
const ANSWERED_BEFORE_SIGTERM: usize = 20;
/// How many more are sent just after the server was told to stop.
const LATE_DELIVERIES: usize = 50;

/// The `hookscope` binary, running; killed if a test fails before it exits.
struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    /// Starts the binary on the database in `dir` and waits for its "listening" line.
    fn start(dir: &Path) -> Self {
        let config = dir.join("hookscope.toml");
        let slow = "[[source]]\nname = \"slow\"\nresponse = { status = 202, body = \"accepted\", delay_ms = 300 }\n";
        std::fs::write(&config, slow).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookscope"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--database-url")
            .arg(format!("sqlite://{}", dir.join("h.db").display()))
            .arg("--token")
            .arg(TOKEN)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .env_remove("HOOKSCOPE_MAX_BODY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the hookscope binary starts");
        let stdout = child.stdout.take().unwrap();
        let (address_tx, address_rx) = mpsc::channel();
        // Reads the address, then keeps draining stdout so the server never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.strip_prefix("Hookscope is listening on http://") {
                    let _ = address_tx.send(address.trim().to_owned());
                }
            }
        });
        let Ok(address) = address_rx.recv_timeout(Duration::from_secs(120)) else {
            let _ = child.kill();
            panic!("the server never printed its address");
        };
        Self {
            child,
            address: address.parse().expect("a socket address"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Sends SIGTERM, as a service manager or `docker stop` does.
    fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Asserts that each `(delivery id, body)` comes back byte for byte from the raw endpoint.
    async fn assert_stored<B: AsRef<str>>(&self, acknowledged: &[(B, B)]) {
        let api = reqwest::Client::new();
        for (id, body) in acknowledged {
            let id = id.as_ref();
            let response = api
                .get(self.url(&format!("/api/deliveries/{id}/raw")))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "acknowledged delivery {id} was lost ({} acknowledged)",
                acknowledged.len()
            );
            assert_eq!(response.text().await.unwrap(), body.as_ref());
        }
    }

    /// Sends SIGKILL: the process gets no chance to finish anything.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL is delivered");
    }

    /// Waits for the process to end (a generous bound only guards against a hung test).
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit after being told to"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The outcome of one delivery: its body and, when acknowledged with 2xx, its delivery id.
struct Outcome {
    body: String,
    acknowledged: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_deliveries_in_flight_keeps_every_acknowledged_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = tokio::task::block_in_place(|| Server::start(dir.path()));
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
    let mut restarted = tokio::task::block_in_place(|| Server::start(dir.path()));
    restarted.assert_stored(&acknowledged).await;
    let api = reqwest::Client::new();
    let page: Value = api
        .get(restarted.url("/api/events"))
        .query(&[("limit", "500")])
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: i64 = page["items"]
        .as_array()
        .unwrap()
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
    let mut server = tokio::task::block_in_place(|| Server::start(dir.path()));
    let client = reqwest::Client::new();
    let url = server.url("/hooks/keldair");

    // Each sender posts one event after another until its connection fails.
    let (outcomes_tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    for sender in 0..SENDERS {
        let (client, url, outcomes_tx) = (client.clone(), url.clone(), outcomes_tx.clone());
        tokio::spawn(async move {
            for n in 0.. {
                let body =
                    envelope(&format!("kill-evt-{sender}-{n}"), "applicant.hired").to_string();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let Ok(response) = response else { break };
                if !response.status().is_success() {
                    continue; // not acknowledged: a sender would try again
                }
                let id = response.headers()["hookscope-delivery-id"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                if outcomes_tx.send((id, body)).is_err() {
                    break;
                }
            }
        });
    }
    drop(outcomes_tx);
    let mut acknowledged = Vec::new();
    while acknowledged.len() < ACKNOWLEDGED_BEFORE_KILL {
        acknowledged.push(outcomes.recv().await.expect("the senders keep going"));
    }
    server.kill();
    // Whatever was acknowledged before the process died counts too.
    while let Some(outcome) = outcomes.recv().await {
        acknowledged.push(outcome);
    }
    tokio::task::block_in_place(|| server.wait());

    let restarted = tokio::task::block_in_place(|| Server::start(dir.path()));
    restarted.assert_stored(&acknowledged).await;
}
