//! `hookscope tail`: the live stream in a terminal, run as a user runs it, against the real
//! server: one line per delivery (or JSON), a resume after the server restarts, a clean stop on
//! Ctrl-C, and one clear line when it cannot start.

mod common;

use std::{
    process::{ExitStatus, Stdio},
    time::Duration,
};

use app::model::StreamMessage;
use common::{TOKEN, TestApp, binary::hookscope, envelope, serve_args, spawn_app};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout},
};

/// How long a test waits for tail's next line.
const WAIT: Duration = Duration::from_secs(20);

struct Tail {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Tail {
    fn start(url: &str, extra: &[&str]) -> Self {
        let mut command = tokio::process::Command::from(hookscope(["tail", "--url", url]));
        command
            .args(["--token", TOKEN])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("hookscope tail starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("a line within the wait")
            .unwrap()
            .expect("tail is still running")
    }

    /// Ctrl-C, then how it ended.
    async fn interrupt(mut self) -> ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("tail stops on Ctrl-C")
            .unwrap()
    }
}

async fn post(app: &TestApp, id: &str, event_type: &str) {
    app.post_json("keldair", &envelope(id, event_type)).await;
}

#[tokio::test]
async fn tail_prints_a_line_per_matching_delivery_and_stops_cleanly_on_ctrl_c() {
    let app = spawn_app().await;
    let mut tail = Tail::start(&app.base_url, &["--type", "applicant.hired"]);
    // Until tail has connected, what is posted is not live for it: post until it prints.
    let mut n = 0;
    loop {
        n += 1;
        post(&app, &format!("evt_t0_{n}"), "applicant.hired").await;
        let next = tokio::time::timeout(Duration::from_millis(200), tail.lines.next_line());
        if let Ok(line) = next.await {
            assert!(line.unwrap().unwrap().contains("evt_t0_"));
            break;
        }
    }
    post(&app, "evt_t1", "offer.accepted").await;
    post(&app, "evt_t2", "applicant.hired").await;
    post(&app, "evt_t2", "applicant.hired").await;
    // (Skipping what was posted while tail connected.)
    let mut lines = Vec::new();
    while lines.len() < 2 {
        let line = tail.line().await;
        if !line.contains("evt_t0_") {
            lines.push(line);
        }
    }
    let (first, retry) = (&lines[0], &lines[1]);
    for line in [first, retry] {
        assert!(
            line.contains("keldair  applicant.hired  evt_t2  unchecked"),
            "{line}"
        );
    }
    assert!(first.ends_with("new"), "{first}");
    assert!(retry.ends_with("retry"), "{retry}");
    assert!(tail.interrupt().await.success());
}

#[tokio::test]
async fn tail_resumes_after_the_server_restarts_and_prints_each_delivery_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let start = |dir| async move {
        let mut args = serve_args(std::path::Path::new(&dir), None, None);
        args.listen = format!("127.0.0.1:{port}").parse().unwrap();
        common::spawn_app_from_args(args).await
    };
    let path = dir.path().to_owned();
    let app = start(path.clone()).await;
    let mut tail = Tail::start(&app.base_url, &["--json"]);
    assert!(matches!(
        message(tail.line().await),
        StreamMessage::Ready { .. }
    ));
    post(&app, "evt_before", "applicant.hired").await;
    assert_eq!(event_id(message(tail.line().await)), "evt_before");

    app.stop().await.unwrap();
    let app = start(path).await;
    post(&app, "evt_after_1", "applicant.hired").await;
    post(&app, "evt_after_2", "applicant.hired").await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let StreamMessage::Delivery(d) = message(tail.line().await) {
            seen.push(d.event_id.unwrap());
        }
    }
    assert_eq!(seen, ["evt_after_1", "evt_after_2"], "resumed, each once");
    assert!(tail.interrupt().await.success());
    drop(dir);
}

fn message(line: String) -> StreamMessage {
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?} is not a message: {e}"))
}

fn event_id(message: StreamMessage) -> String {
    match message {
        StreamMessage::Delivery(d) => d.event_id.unwrap(),
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn tail_says_in_one_line_why_it_cannot_start() {
    let app = spawn_app().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{address}")
    };
    let cases = [
        (
            vec!["--url", "ftp://example", "--token", TOKEN],
            "must start with http://",
        ),
        (
            vec!["--url", &app.base_url, "--token", "wrong-token-1"],
            "token is wrong",
        ),
        (vec!["--url", &closed, "--token", TOKEN], "cannot reach"),
        (
            vec![
                "--url",
                &app.base_url,
                "--token",
                TOKEN,
                "--occurred-from",
                "yesterday",
            ],
            "occurredFrom",
        ),
    ];
    for (args, expected) in cases {
        let mut command = hookscope(["tail"]);
        command.args(&args);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}
