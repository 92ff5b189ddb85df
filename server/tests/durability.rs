//! Durability as a user sees it (issue 12): the real binary, killed with SIGKILL at random
//! moments under load and started again each time, shows every delivery it acknowledged, once,
//! in the order the answers' `seq` promised; a second server on the same database is refused
//! without touching it; and `hookscope backup`, run while deliveries keep coming, copies every
//! delivery acknowledged before it began into a file another server can serve.

mod common;

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::Duration,
};

use common::binary::{
    Server, database_url, hookscope,
    load::{Ack, Load, Outcome},
    run_to_end, serve,
};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How many senders post side by side.
const SENDERS: usize = 8;
/// How many times the crash test kills the server.
const KILLS: usize = 10;
/// How long after a start the kill comes, at random: long enough for batches to be in flight.
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 150..=700;
/// How long a command that should end quickly may run.
const QUICKLY: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_under_load_loses_no_acknowledged_delivery_and_lists_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("h.db");
    let mut rounds: Vec<Vec<Ack>> = Vec::new();
    let mut sent = HashSet::new();
    for round in 0..KILLS {
        let outcome = kill_under_load(&database, round).await;
        rounds.push(outcome.acknowledged);
        sent.extend(outcome.sent);
    }
    assert_seqs_follow_the_kills(&rounds);

    let server = tokio::task::block_in_place(|| Server::start(&database));
    let listed = server.listed_events().await;
    let acknowledged: Vec<&Ack> = rounds.iter().flatten().collect();
    assert_each_listed_once(&listed, &acknowledged, &sent);
    // The deliveries answered last before each kill, in full, and the raw bytes of a sample.
    let keys: HashMap<&str, i64> = listed
        .iter()
        .map(|e| (e["eventId"].as_str().unwrap(), e["key"].as_i64().unwrap()))
        .collect();
    for ack in rounds.iter().flat_map(|round| round.iter().rev().take(3)) {
        assert_shown_as_acknowledged(&server, keys[ack.event_id.as_str()], ack).await;
    }
    for ack in acknowledged.iter().step_by(50) {
        assert_eq!(server.raw(&ack.delivery_id).await.as_ref(), Ok(&ack.body));
    }
}

/// Starts the server on `database`, puts it under load, and kills it at a random moment;
/// returns what the senders sent and what was acknowledged.
async fn kill_under_load(database: &Path, round: usize) -> Outcome {
    let mut server = tokio::task::block_in_place(|| Server::start(database));
    let url = server.url("/hooks/keldair");
    let load = Load::start(&url, SENDERS, &format!("crash-{round}"));
    let delay = rand::rng().random_range(KILL_AFTER_MS);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    server.kill();
    tokio::task::block_in_place(|| server.wait());
    let outcome = load.finish().await;
    eprintln!(
        "round {round}: killed {delay} ms after start, {} of {} acknowledged",
        outcome.acknowledged.len(),
        outcome.sent.len()
    );
    assert!(
        !outcome.acknowledged.is_empty(),
        "round {round}: nothing was acknowledged in {delay} ms"
    );
    outcome
}

/// The event `key` shows one delivery: the one `ack` answered, with its id, `seq` and bytes.
async fn assert_shown_as_acknowledged(server: &Server, key: i64, ack: &Ack) {
    let detail: Value = server
        .api_get(&format!("/api/events/{key}"))
        .await
        .json()
        .await
        .unwrap();
    let deliveries = detail["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{}", ack.event_id);
    assert_eq!(deliveries[0]["id"], ack.delivery_id.as_str());
    assert_eq!(deliveries[0]["seq"], ack.seq, "the seq the answer gave");
    assert_eq!(server.raw(&ack.delivery_id).await.as_ref(), Ok(&ack.body));
}

/// Every acknowledged `seq` is distinct, and each start numbers after every `seq` acknowledged
/// before the kill that ended the run before it. (Within a run, senders side by side see their
/// answers in any order.)
fn assert_seqs_follow_the_kills(rounds: &[Vec<Ack>]) {
    let all: Vec<i64> = rounds.iter().flatten().map(|ack| ack.seq).collect();
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "an acknowledged seq was given twice"
    );
    let mut highest_before = 0;
    for (round, acks) in rounds.iter().enumerate() {
        let lowest = acks.iter().map(|ack| ack.seq).min().unwrap();
        assert!(
            lowest > highest_before,
            "round {round} acknowledged seq {lowest}, not after {highest_before} acknowledged \
             before the kill"
        );
        highest_before = highest_before.max(acks.iter().map(|ack| ack.seq).max().unwrap());
    }
}

/// Every acknowledged event is listed exactly once, with one delivery; nothing listed was
/// never sent (what is listed but was not acknowledged was committed before a kill, and the
/// answer never left).
fn assert_each_listed_once(listed: &[Value], acknowledged: &[&Ack], sent: &HashSet<String>) {
    let mut by_event_id: HashMap<&str, &Value> = HashMap::new();
    for event in listed {
        let event_id = event["eventId"].as_str().expect("an event id");
        assert!(
            sent.contains(event_id),
            "{event_id} is listed but was never sent"
        );
        let twice = by_event_id.insert(event_id, event);
        assert!(twice.is_none(), "{event_id} is listed twice");
    }
    for ack in acknowledged {
        let event = by_event_id
            .get(ack.event_id.as_str())
            .unwrap_or_else(|| panic!("acknowledged event {} is not listed", ack.event_id));
        assert_eq!(event["deliveryCount"], 1, "{}", ack.event_id);
    }
    eprintln!(
        "{} acknowledged, {} listed (committed but not answered before a kill: {}), {} sent",
        acknowledged.len(),
        listed.len(),
        listed.len() - acknowledged.len(),
        sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_database_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("h.db");
    let first = tokio::task::block_in_place(|| Server::start(&database));
    let client = reqwest::Client::new();
    let before_id = post_event(&client, &first, "evt-before-second").await;
    assert_eq!(first.listed_events().await.len(), 1);

    let files_before = fingerprint(&database);
    let command = serve(&database, None);
    let second = tokio::task::spawn_blocking(move || run_to_end(command, QUICKLY));
    let second = second.await.unwrap();
    let files_after = fingerprint(&database);

    assert!(!second.status.success(), "the second server must not run");
    assert!(second.took < QUICKLY, "refused in {:?}", second.took);
    let lines: Vec<&str> = second.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {:?}", second.stderr);
    assert!(
        lines[0].starts_with("hookscope: ")
            && lines[0].contains("is in use by another Hookscope server"),
        "{}",
        lines[0]
    );
    assert!(
        !second.stdout.contains("Hookscope is listening"),
        "the second server said it listens: {}",
        second.stdout
    );
    assert_eq!(files_before, files_after, "the database files changed");

    // The first one serves as before.
    let after_id = post_event(&client, &first, "evt-after-second").await;
    let listed = event_ids(&first.listed_events().await);
    assert_eq!(
        listed,
        HashSet::from(["evt-before-second".into(), "evt-after-second".into()])
    );
    assert!(first.raw(&before_id).await.is_ok() && first.raw(&after_id).await.is_ok());
}

/// The event ids of `events`.
fn event_ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .map(|e| e["eventId"].as_str().expect("an event id").to_owned())
        .collect()
}

/// Posts a KeldairHR event to `server`, asserts it is acknowledged, returns its delivery id.
async fn post_event(client: &reqwest::Client, server: &Server, event_id: &str) -> String {
    let body = common::envelope(event_id, "applicant.hired").to_string();
    let response = client
        .post(server.url("/hooks/keldair"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    common::delivery_id_of(response).await
}

/// The SHA-256 of the database file and of its write-ahead log (`None` where there is none).
fn fingerprint(database: &Path) -> Vec<(String, Option<String>)> {
    ["", "-wal"]
        .into_iter()
        .map(|suffix| {
            let path = format!("{}{suffix}", database.display());
            let hash = std::fs::read(&path)
                .ok()
                .map(|bytes| hex::encode(Sha256::digest(bytes)));
            (path, hash)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_holds_every_delivery_acknowledged_before_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("h.db");
    let copy = dir.path().join("copy.db");
    let server = tokio::task::block_in_place(|| Server::start(&database));
    let load = Load::start(&server.url("/hooks/keldair"), SENDERS, "backup");
    load.wait_for(500).await;

    let before = load.acknowledged();
    let mut command = hookscope(["backup", "--database-url", &database_url(&database)]);
    command.arg(&copy);
    let backup = tokio::task::spawn_blocking(move || run_to_end(command, QUICKLY));
    let backup = backup.await.unwrap();
    let during = load.acknowledged().len() - before.len();
    let all = load.stop().await.acknowledged;
    assert!(backup.status.success(), "backup failed: {}", backup.stderr);
    assert!(
        backup.stdout.starts_with("Copied ") && backup.stdout.contains(" bytes)."),
        "{}",
        backup.stdout
    );
    eprintln!(
        "{} acknowledged before the backup, {during} while it ran ({:?}), {} in all",
        before.len(),
        backup.took,
        all.len()
    );

    let restored = tokio::task::block_in_place(|| Server::start(&copy));
    let listed = event_ids(&restored.listed_events().await);
    for ack in &before {
        assert!(
            listed.contains(&ack.event_id),
            "{} is not in the copy",
            ack.event_id
        );
        assert_eq!(restored.raw(&ack.delivery_id).await.as_ref(), Ok(&ack.body));
    }
    // One moment: the copy holds the first N deliveries in commit order and nothing after.
    let in_copy: HashSet<String> = all
        .iter()
        .filter(|ack| ack.seq <= listed.len() as i64)
        .map(|ack| ack.event_id.clone())
        .collect();
    assert_eq!(in_copy, listed, "the copy is not one consistent snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_never_overwrites_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("h.db");
    let server = tokio::task::block_in_place(|| Server::start(&database));
    post_event(&reqwest::Client::new(), &server, "evt-kept").await;
    let existing = dir.path().join("precious.db");
    std::fs::write(&existing, "yesterday's backup\n").unwrap();

    let mut command = hookscope(["backup", "--database-url", &database_url(&database)]);
    command.arg(&existing);
    let backup = tokio::task::spawn_blocking(move || run_to_end(command, QUICKLY));
    let backup = backup.await.unwrap();
    assert!(
        !backup.status.success(),
        "the backup overwrote {}",
        existing.display()
    );
    assert!(
        backup
            .stderr
            .contains("already exists; a backup goes to a new file"),
        "{}",
        backup.stderr
    );
    assert!(!backup.stdout.contains("Copied"), "{}", backup.stdout);
    assert_eq!(
        std::fs::read_to_string(&existing).unwrap(),
        "yesterday's backup\n"
    );
}
