//! A full disk as a user sees it (issue 12): the real binary on a small tmpfs that fills up
//! answers 503 at once and says why on `/healthz`, keeps showing every delivery it acknowledged
//! before, and takes deliveries again by itself once there is room, without a restart.
//!
//! Mounting needs root (or the right to mount); where that is not allowed, the test says
//! "skipped: ..." and passes.

mod common;

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::{binary::Server, delivery_id_of};
use reqwest::{Response, StatusCode};
use serde_json::json;

/// The size of the disk the server writes to.
const DISK: &str = "24m";
/// The room left beside the filler: a few deliveries' worth, so the first refusals come from
/// appending to the write-ahead log (it stays under SQLite's 1000-page checkpoint by then).
const ROOM: u64 = 1 << 20;
/// The size of each delivery's padding: 256 KiB, a quarter of the default body limit.
const PADDING: usize = 256 << 10;
/// How many deliveries are acknowledged before the disk is filled.
const BEFORE_FULL: usize = 4;
/// The most deliveries sent into the full disk before it must refuse one (64 of them would
/// need 16 MiB of the little room left).
const MOST_UNTIL_REFUSED: usize = 64;
/// How long a refusal may take: the server must not wait on a disk that has no room.
const AT_ONCE: Duration = Duration::from_secs(2);

/// A tmpfs mounted on a folder of its own; unmounted (lazily, so a server still holding files
/// on it cannot stop that) when dropped, even when the test fails.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` on `path`, or says why it could not.
    fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir(path).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("mount could not run: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// Fills the disk with a file, then gives back `room` bytes of it; returns the file's path.
    fn fill_leaving(&self, room: u64) -> PathBuf {
        let path = self.path.join("filler");
        let mut file = File::create(&path).unwrap();
        let chunk = vec![0xA5u8; 64 << 10];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        file.set_len(written.saturating_sub(room)).unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A KeldairHR event `n` with `PADDING` bytes of data, unlike any other's.
fn large_event(n: usize) -> String {
    let padding: String = (0..PADDING)
        .map(|i| char::from(b'a' + ((i * 7 + n) % 26) as u8))
        .collect();
    json!({
        "id": format!("full-evt-{n}"),
        "type": "document.uploaded",
        "version": "2022-02-23",
        "dateOccurred": "2022-02-23T18:46:43+00:00",
        "data": { "padding": padding },
    })
    .to_string()
}

/// Posts event `n` to `url`; returns the answer, how long it took, and the body.
async fn post(client: &reqwest::Client, url: &str, n: usize) -> (Response, Duration, String) {
    let body = large_event(n);
    let started = Instant::now();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("the server answers");
    (response, started.elapsed(), body)
}

/// `GET /healthz`: the status and the text.
async fn health(client: &reqwest::Client, server: &Server) -> (StatusCode, String) {
    let response = client.get(server.url("/healthz")).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_at_once_keeps_what_was_acknowledged_and_recovers_by_itself() {
    let root = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(&root.path().join("disk"), DISK) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("skipped: a tmpfs could not be mounted to fill up ({why})");
            return;
        }
    };
    let server = tokio::task::block_in_place(|| Server::start(&disk.path.join("h.db")));
    let (client, url) = (reqwest::Client::new(), server.url("/hooks/keldair"));
    let mut acknowledged = Vec::new();
    for n in 0..BEFORE_FULL {
        let (response, _, body) = post(&client, &url, n).await;
        assert_eq!(response.status(), StatusCode::OK, "while there is room");
        acknowledged.push((delivery_id_of(response).await, body));
    }

    let filler = disk.fill_leaving(ROOM);
    let (refusal, took) = fill_until_refused(&client, &url, &mut acknowledged).await;
    assert!(took < AT_ONCE, "the first refusal took {took:?}");
    let message = common::assert_error(refusal, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        message.contains("retry"),
        "the sender is told to retry: {message}"
    );
    assert_refused_at_once_side_by_side(&client, &url).await;
    let (status, reason) = health(&client, &server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reason}");
    assert!(
        reason.contains("full"),
        "the reason says the disk is full: {reason}"
    );

    // What was acknowledged is all there, while the disk is still full.
    server.assert_stored(&acknowledged).await;
    assert_eq!(server.listed_events().await.len(), acknowledged.len());

    // With room again, /healthz turns healthy by itself (a load balancer trusting it would send
    // nothing until then), and the next delivery is taken.
    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, reason) = health(&client, &server).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "still unhealthy: {reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (response, took, body) = post(&client, &url, 2000).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "with room again ({took:?})"
    );
    acknowledged.push((delivery_id_of(response).await, body));
    let (status, reason) = health(&client, &server).await;
    assert_eq!((status, reason.as_str()), (StatusCode::OK, "ok"));
    server.assert_stored(&acknowledged).await;
    assert_eq!(server.listed_events().await.len(), acknowledged.len());
}

/// Posts large deliveries into the nearly full disk until one is refused; keeps those
/// acknowledged on the way; returns the refusal and how long it took.
async fn fill_until_refused(
    client: &reqwest::Client,
    url: &str,
    acknowledged: &mut Vec<(String, String)>,
) -> (Response, Duration) {
    for n in BEFORE_FULL..BEFORE_FULL + MOST_UNTIL_REFUSED {
        let (response, took, body) = post(client, url, n).await;
        match response.status() {
            StatusCode::OK => acknowledged.push((delivery_id_of(response).await, body)),
            StatusCode::SERVICE_UNAVAILABLE => {
                eprintln!(
                    "refused after {} acknowledged, in {took:?}",
                    acknowledged.len()
                );
                return (response, took);
            }
            other => panic!(
                "delivery {n} got {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    panic!("{MOST_UNTIL_REFUSED} deliveries of {PADDING} bytes went into a full disk");
}

/// Eight senders at once into the full disk (one group commit or two, refused together): each
/// is answered 503, at once.
async fn assert_refused_at_once_side_by_side(client: &reqwest::Client, url: &str) {
    let senders: Vec<_> = (0..8)
        .map(|n| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let (response, took, _) = post(&client, &url, 1000 + n).await;
                (response.status(), took)
            })
        })
        .collect();
    for sender in senders {
        let (status, took) = sender.await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "into a full disk");
        assert!(took < AT_ONCE, "a refusal took {took:?}");
    }
}
