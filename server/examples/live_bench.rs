//! The live stream's benchmark client (run by `bench/live.sh`): `VIEWERS` websocket viewers of
//! a running Hookscope, plus `SLOW` that never read, while senders post `RATE` fresh KeldairHR
//! events a second for `SECONDS`. Prints acknowledgement-to-frame latency (p50, p99, max) over
//! every (delivery, reading viewer) pair, and the frames lost: deliveries acknowledged that a
//! reading viewer never got (must be 0).
//!
//! Usage: live_bench BASE_URL TOKEN VIEWERS SLOW RATE SECONDS

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use app::model::StreamMessage;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

/// Sender tasks sharing the rate.
const SENDERS: u64 = 16;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, token, viewers, slow, rate, seconds] = args.as_slice() else {
        eprintln!("usage: live_bench BASE_URL TOKEN VIEWERS SLOW RATE SECONDS");
        std::process::exit(2);
    };
    let number = |s: &str| s.parse::<u64>().expect("a whole number");
    let (viewers, slow, rate, seconds) =
        (number(viewers), number(slow), number(rate), number(seconds));
    let start = Instant::now();
    let ws_url = format!("{}/api/stream", base.replacen("http://", "ws://", 1));

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut readers = Vec::new();
    for _ in 0..viewers {
        let socket = connect(&ws_url, token).await;
        readers.push(tokio::spawn(read_frames(socket, start, stopped.clone())));
    }
    // Slow viewers: connected, never read; kept open until the end.
    let mut sleepers = Vec::new();
    for _ in 0..slow {
        sleepers.push(connect(&ws_url, token).await);
    }

    let acks: Arc<Mutex<HashMap<i64, Duration>>> = Arc::default();
    let client = reqwest::Client::new();
    let deadline = start + Duration::from_secs(seconds + 1);
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (client, acks, url) = (client.clone(), acks.clone(), format!("{base}/hooks/bench"));
            let every = Duration::from_secs_f64(SENDERS as f64 / rate as f64);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::now() + Duration::from_secs(1),
                    every,
                );
                let mut n = 0u64;
                while Instant::now() < deadline {
                    tick.tick().await;
                    n += 1;
                    let body = format!(
                        r#"{{"id":"bench-{s}-{n}-{}","type":"applicant.hired","version":"2022-02-23","dateOccurred":"2022-02-23T18:46:43+00:00","data":{{"applicant":{{"id":"apl_{n}"}}}}}}"#,
                        start.elapsed().as_nanos()
                    );
                    let Ok(response) = client.post(&url).body(body).send().await else {
                        continue;
                    };
                    let Ok(answer) = response.json::<serde_json::Value>().await else {
                        continue;
                    };
                    if let Some(seq) = answer["seq"].as_i64() {
                        acks.lock().unwrap().insert(seq, start.elapsed());
                    }
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // the last frames
    let acks = acks.lock().unwrap().clone();
    let mut latencies = Vec::new();
    let mut lost = 0usize;
    stop.send_replace(true);
    let mut frames = Vec::new();
    for reader in readers {
        frames.push(reader.await.unwrap());
    }
    for viewer in &frames {
        for (seq, acked) in &acks {
            match viewer.get(seq) {
                Some(framed) => latencies.push(framed.saturating_sub(*acked)),
                None => lost += 1,
            }
        }
    }
    drop(sleepers);
    latencies.sort_unstable();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "LIVERESULT viewers={viewers} slow={slow} acknowledged={} sent_rate={:.0} p50_ms={:.2} \
         p99_ms={:.2} max_ms={:.2} lost={lost}",
        acks.len(),
        acks.len() as f64 / seconds as f64,
        ms(pct(50)),
        ms(pct(99)),
        ms(*latencies.last().unwrap()),
    );
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, token: &str) -> Socket {
    let mut request = url.into_client_request().unwrap();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    request.headers_mut().insert("authorization", bearer);
    tokio_tungstenite::connect_async(request)
        .await
        .expect("the stream opens")
        .0
}

/// A reading viewer: `seq` to when its frame arrived, until told to stop.
async fn read_frames(
    mut socket: Socket,
    start: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> HashMap<i64, Duration> {
    let mut frames = HashMap::new();
    loop {
        let message = tokio::select! {
            message = socket.next() => message,
            _ = stop.wait_for(|stop| *stop) => return frames,
        };
        let Some(Ok(Message::Text(text))) = message else {
            if message.is_none() {
                return frames;
            }
            continue;
        };
        let at = start.elapsed();
        match serde_json::from_str::<StreamMessage>(&text) {
            Ok(StreamMessage::Delivery(d)) => {
                frames.insert(d.seq, at);
            }
            Ok(StreamMessage::Lagged { cursor }) => {
                eprintln!("a reading viewer lagged at {cursor}");
                return frames;
            }
            _ => {}
        }
    }
}
