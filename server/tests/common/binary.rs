//! The `hookscope` binary as a user runs it: a server process on port 0 that a test can stop
//! with SIGTERM or kill with SIGKILL, a command run to its end (`hookscope backup`, a second
//! server), and the API reads that tests of a real process share.
//!
//! The binary is `HOOKSCOPE_BIN` when set (CI points it at `target/release/hookscope`; a relative
//! path is taken from the workspace root), else the one cargo built for these tests.

pub mod load;

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::Value;

use super::TOKEN;

/// How long a server may take to print its address, or to exit once told to.
const START_OR_EXIT: Duration = Duration::from_secs(120);
/// How long indexing may trail the acknowledgements before a test gives up waiting.
const LISTED_WITHIN: Duration = Duration::from_secs(30);

/// The binary under test: `HOOKSCOPE_BIN`, or the debug build cargo made for the tests.
pub fn binary() -> PathBuf {
    let Some(path) = std::env::var_os("HOOKSCOPE_BIN") else {
        return PathBuf::from(env!("CARGO_BIN_EXE_hookscope"));
    };
    // Tests run in server/; a path such as target/release/hookscope is the workspace's.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    assert!(
        path.is_file(),
        "HOOKSCOPE_BIN: no file at {}",
        path.display()
    );
    path
}

/// `sqlite://PATH`, as `--database-url` takes it.
pub fn database_url(database: &Path) -> String {
    format!("sqlite://{}", database.display())
}

/// `hookscope ARGS`, with warnings only in the log and none of the user's settings.
pub fn hookscope<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for setting in [
        "DATABASE_URL",
        "HOOKSCOPE_LISTEN",
        "HOOKSCOPE_TOKEN",
        "HOOKSCOPE_CONFIG",
        "HOOKSCOPE_MAX_BODY",
    ] {
        command.env_remove(setting);
    }
    command
}

/// `hookscope serve` on port 0 with the test token, on `database`, with `config` if given.
pub fn serve(database: &Path, config: Option<&Path>) -> Command {
    let url = database_url(database);
    let mut command = hookscope(["serve", "--listen", "127.0.0.1:0", "--token", TOKEN]);
    command.arg("--database-url").arg(url);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
}

/// What a command that ran to its end printed, and how it ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs `command` to its end, killing it (and failing the test) if it takes longer than `limit`.
/// Blocking: call it from `spawn_blocking` while a load goes on.
pub fn run_to_end(mut command: Command, limit: Duration) -> Finished {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hookscope binary starts");
    let stdout = read_all_behind(child.stdout.take().unwrap());
    let stderr = read_all_behind(child.stderr.take().unwrap());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Finished {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        took: started.elapsed(),
    }
}

/// Reads `pipe` to its end on a thread of its own, so the child never blocks on a full pipe.
fn read_all_behind(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The `hookscope` binary, serving; killed if a test fails before it exits.
pub struct Server {
    child: Child,
    address: SocketAddr,
    api: reqwest::Client,
}

impl Server {
    /// Starts the binary on `database` and waits for its "listening" line. Blocking.
    pub fn start(database: &Path) -> Self {
        Self::start_command(serve(database, None))
    }

    /// Starts the binary on `database` with the sources file `config`. Blocking.
    pub fn start_with_config(database: &Path, config: &Path) -> Self {
        Self::start_command(serve(database, Some(config)))
    }

    fn start_command(mut command: Command) -> Self {
        let mut child = command
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
        let Ok(address) = address_rx.recv_timeout(START_OR_EXIT) else {
            let _ = child.kill();
            panic!("the server never printed its address");
        };
        Self {
            child,
            address: address.parse().expect("a socket address"),
            api: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Sends SIGTERM, as a service manager or `docker stop` does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGKILL: the process gets no chance to finish anything.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL is delivered");
    }

    /// Waits for the process to end (a generous bound only guards against a hung test).
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + START_OR_EXIT;
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

    /// `GET path` with the token.
    pub async fn api_get(&self, path: &str) -> reqwest::Response {
        self.api
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("the API request reaches the server")
    }

    /// The bytes of delivery `id` as received, or the status when they cannot be read.
    pub async fn raw(&self, id: &str) -> Result<String, StatusCode> {
        let response = self.api_get(&format!("/api/deliveries/{id}/raw")).await;
        match response.status() {
            StatusCode::OK => Ok(response.text().await.unwrap()),
            status => Err(status),
        }
    }

    /// Asserts that each `(delivery id, body)` comes back byte for byte from the raw endpoint.
    pub async fn assert_stored<B: AsRef<str>>(&self, acknowledged: &[(B, B)]) {
        for (id, body) in acknowledged {
            let id = id.as_ref();
            let raw = self.raw(id).await.unwrap_or_else(|status| {
                panic!(
                    "acknowledged delivery {id} was lost ({status}; {} acknowledged)",
                    acknowledged.len()
                )
            });
            assert_eq!(raw, body.as_ref(), "the bytes of delivery {id}");
        }
    }

    /// Every event, newest first, once every acknowledged delivery is listed: waits until the
    /// list has nothing `pending`, then reads every page of it.
    pub async fn listed_events(&self) -> Vec<Value> {
        let deadline = Instant::now() + LISTED_WITHIN;
        loop {
            let pending = self.events_page(None).await["pending"].as_u64().unwrap();
            if pending == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{pending} acknowledged deliveries still not listed after {LISTED_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut events = Vec::new();
        let mut cursor = None;
        loop {
            let mut page = self.events_page(cursor.as_deref()).await;
            events.append(page["items"].as_array_mut().unwrap());
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return events,
            }
        }
    }

    /// One page of 500 events from `cursor` (the first page without one).
    async fn events_page(&self, cursor: Option<&str>) -> Value {
        let mut query = vec![("limit", "500")];
        query.extend(cursor.map(|cursor| ("cursor", cursor)));
        let response = self
            .api
            .get(self.url("/api/events"))
            .query(&query)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("the API request reaches the server");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "GET /api/events {query:?}"
        );
        response.json().await.expect("a JSON page")
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
