//! A steady load: concurrent senders posting KeldairHR events, each with an id of its own, one
//! after another, and the record of every delivery the server acknowledged.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::task::JoinHandle;

use crate::common::envelope;

/// One delivery the server acknowledged with a 2xx, as the sender saw it.
#[derive(Clone, Debug)]
pub struct Ack {
    pub event_id: String,
    pub delivery_id: String,
    /// The `seq` of the answer.
    pub seq: i64,
    pub body: String,
}

/// Senders at work; each stops at its first failed connection (the server is gone) or when
/// told to.
pub struct Load {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<Ack>>>,
    senders: Vec<JoinHandle<Vec<String>>>,
}

/// What a load sent and what of it was acknowledged.
pub struct Outcome {
    /// In the order the answers came back (not commit order: senders run side by side).
    pub acknowledged: Vec<Ack>,
    /// The event id of every delivery sent, acknowledged or not.
    pub sent: HashSet<String>,
}

impl Load {
    /// Starts `senders` senders posting to `url`; event ids are `{prefix}-{sender}-{n}`.
    pub fn start(url: &str, senders: usize, prefix: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let senders = (0..senders)
            .map(|sender| {
                let prefix = format!("{prefix}-{sender}");
                let (client, url) = (client.clone(), url.to_owned());
                let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
                tokio::spawn(send_until_stopped(client, url, prefix, stop, acknowledged))
            })
            .collect();
        Self {
            stop,
            acknowledged,
            senders,
        }
    }

    /// The deliveries acknowledged so far.
    pub fn acknowledged(&self) -> Vec<Ack> {
        self.acknowledged.lock().unwrap().clone()
    }

    /// Waits until at least `count` deliveries are acknowledged.
    pub async fn wait_for(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acknowledged.lock().unwrap().len() < count {
            assert!(
                Instant::now() < deadline,
                "fewer than {count} deliveries acknowledged in a minute"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Tells the senders to stop after the delivery each is sending, and waits for them.
    pub async fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        self.finish().await
    }

    /// Waits for the senders to stop by themselves (the server is gone).
    pub async fn finish(self) -> Outcome {
        let mut sent = HashSet::new();
        for sender in self.senders {
            sent.extend(sender.await.expect("a sender does not panic"));
        }
        let acknowledged = std::mem::take(&mut *self.acknowledged.lock().unwrap());
        Outcome { acknowledged, sent }
    }
}

/// One sender: posts one event after another until told to stop or a connection fails;
/// returns the event ids it sent.
async fn send_until_stopped(
    client: reqwest::Client,
    url: String,
    prefix: String,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<Ack>>>,
) -> Vec<String> {
    let mut sent = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let event_id = format!("{prefix}-{}", sent.len());
        let body = envelope(&event_id, "applicant.hired").to_string();
        sent.push(event_id.clone());
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let Ok(response) = response else { break };
        if !response.status().is_success() {
            continue; // not acknowledged: a sender would try again later
        }
        let Ok(answer) = response.json::<Value>().await else {
            break; // the answer was cut off: not acknowledged either
        };
        acknowledged.lock().unwrap().push(Ack {
            event_id,
            delivery_id: answer["deliveryId"].as_str().unwrap().to_owned(),
            seq: answer["seq"].as_i64().expect("a seq in the answer"),
            body,
        });
    }
    sent
}
