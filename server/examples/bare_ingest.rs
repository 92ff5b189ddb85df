//! Baseline for `bench/ingest.sh`: the cheapest possible webhook receiver.
//!
//! `POST /hooks/{source}` reads the whole body, stores nothing and answers
//! `200 {"deliveryId":"<uuid v7>"}`, on a multi-thread tokio runtime with axum 0.8,
//! the same stack Hookscope uses. Whatever Hookscope does beyond this (parsing,
//! signature checks, durable storage) is what the benchmark's ratio measures.
//!
//! Usage: `cargo run --release -p hookscope --example bare_ingest [ADDR]`
//! ADDR comes from the first argument, else `BARE_INGEST_ADDR`, else 127.0.0.1:3999.

use axum::{Json, Router, body::Bytes, extract::Path, http::StatusCode, routing::post};
use serde_json::{Value, json};

async fn ingest(Path(source): Path<String>, body: Bytes) -> (StatusCode, Json<Value>) {
    // The body has been read in full by the `Bytes` extractor; keep the compiler
    // from reasoning it away, then drop it.
    std::hint::black_box((&source, &body));
    (
        StatusCode::OK,
        Json(json!({ "deliveryId": uuid::Uuid::now_v7().to_string() })),
    )
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("BARE_INGEST_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:3999".to_owned());

    let app = Router::new().route("/hooks/{source}", post(ingest));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare_ingest listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}
