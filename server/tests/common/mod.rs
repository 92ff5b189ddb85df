//! What every integration test shares: a real Hookscope on 127.0.0.1, port 0, with a fresh
//! SQLite file in its own temporary folder, and a client that talks to it over HTTP.
// Each test file uses its own share of these helpers.
#![allow(dead_code)]

pub mod binary;
pub mod viewer;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use hookscope::config::{ServeArgs, Token};
use reqwest::{Response, StatusCode, header::HeaderMap, redirect::Policy};
use serde_json::Value;
use tempfile::TempDir;
use tokio::{sync::oneshot, task::JoinHandle};

/// The token every test server accepts.
pub const TOKEN: &str = "test-token-123";

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub address: SocketAddr,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base_url: String,
    /// Keeps cookies and does not follow redirects, so a test sees each answer as sent.
    pub client: reqwest::Client,
    pub token: String,
    /// Holds the database (and the config file, when there is one).
    pub tempdir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The arguments `hookscope serve` would get: listen on port 0, a database in `dir`, the test
/// token, the config file (written to `dir`) when given, and the body limit when given.
pub fn serve_args(dir: &Path, config_toml: Option<&str>, max_body: Option<&str>) -> ServeArgs {
    let config = config_toml.map(|text| {
        let path = dir.join("hookscope.toml");
        std::fs::write(&path, text).expect("writing the config file");
        path
    });
    ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.join("hookscope.db").display()),
        token: Some(TOKEN.parse::<Token>().unwrap()),
        config,
        max_body: max_body
            .unwrap_or("1MiB")
            .parse()
            .expect("a valid --max-body"),
        site_root: "target/site".to_owned(),
        stream_queue: 8192,
    }
}

/// A server with no config file and the default body limit.
pub async fn spawn_app() -> TestApp {
    spawn_app_inner(None, None).await
}

/// A server with `config_toml` as its sources file and `max_body` as its limit (when given).
pub async fn spawn_app_with(config_toml: &str, max_body: Option<&str>) -> TestApp {
    spawn_app_inner(Some(config_toml), max_body).await
}

/// A server whose live viewers may fall only `stream_queue` messages behind.
pub async fn spawn_app_with_stream_queue(stream_queue: u32) -> TestApp {
    let tempdir = tempfile::tempdir().expect("a temporary folder");
    let mut args = serve_args(tempdir.path(), None, None);
    args.stream_queue = stream_queue;
    spawn_app_from(tempdir, args).await
}

async fn spawn_app_inner(config_toml: Option<&str>, max_body: Option<&str>) -> TestApp {
    let tempdir = tempfile::tempdir().expect("a temporary folder");
    spawn_app_in(tempdir, config_toml, max_body).await
}

/// A server on the database (and config file) in `tempdir`, e.g. one a stopped server left.
pub async fn spawn_app_in(
    tempdir: TempDir,
    config_toml: Option<&str>,
    max_body: Option<&str>,
) -> TestApp {
    let args = serve_args(tempdir.path(), config_toml, max_body);
    spawn_app_from(tempdir, args).await
}

/// A server started with `args` as they are (its database is the caller's to keep).
pub async fn spawn_app_from_args(args: ServeArgs) -> TestApp {
    let tempdir = tempfile::tempdir().expect("a temporary folder");
    spawn_app_from(tempdir, args).await
}

async fn spawn_app_from(tempdir: TempDir, args: ServeArgs) -> TestApp {
    let app = hookscope::Application::build(args)
        .await
        .expect("the server builds");
    let address = app.local_addr();
    let (shutdown, stop) = oneshot::channel::<()>();
    // Dropping the sender (the TestApp going away) also stops the server.
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop.await;
    }));
    // A request that hangs fails the test with a message instead of holding CI up.
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    TestApp {
        address,
        base_url: format!("http://{address}"),
        client,
        token: TOKEN.to_owned(),
        tempdir,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// POSTs `body` to `/hooks/{source}` (`source` may carry a sub-path and a query).
    pub async fn post_hook(
        &self,
        source: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Response {
        self.send_hook(reqwest::Method::POST, source, body, headers)
            .await
    }

    /// Sends `body` to `/hooks/{source}` with any method.
    pub async fn send_hook(
        &self,
        method: reqwest::Method,
        source: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self
            .client
            .request(method, self.url(&format!("/hooks/{source}")))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .send()
            .await
            .expect("the hook request reaches the server")
    }

    /// POSTs a JSON body and returns the delivery id of the 200 answer.
    pub async fn post_json(&self, source: &str, body: &Value) -> String {
        let response = self
            .post_hook(
                source,
                body.to_string(),
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        delivery_id_of(response).await
    }

    /// GETs `path` with the Bearer token.
    pub async fn api_get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the API request reaches the server")
    }

    /// GETs `path` with the Bearer token and the query `pairs` (encoded).
    pub async fn api_get_query(&self, path: &str, pairs: &[(&str, &str)]) -> Response {
        self.client
            .get(self.url(path))
            .query(pairs)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the API request reaches the server")
    }

    /// The JSON of a 200 answer to `GET path`.
    pub async fn api_json(&self, path: &str) -> Value {
        let response = self.api_get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("a JSON answer")
    }

    /// One page of `GET /api/events` with the query `pairs`; the answer must be 200.
    pub async fn events_page(&self, pairs: &[(&str, &str)]) -> Value {
        let response = self.api_get_query("/api/events", pairs).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "GET /api/events {pairs:?}"
        );
        response.json().await.expect("a JSON answer")
    }

    /// The items of `GET /api/events` with the query `pairs`.
    pub async fn events(&self, pairs: &[(&str, &str)]) -> Vec<Value> {
        let page = self.events_page(pairs).await;
        page["items"].as_array().expect("items is an array").clone()
    }

    /// Every event (up to 500), newest first.
    pub async fn all_events(&self) -> Vec<Value> {
        self.events(&[("limit", "500")]).await
    }

    /// `GET /api/events/{key}`.
    pub async fn event_detail(&self, key: i64) -> Value {
        self.api_json(&format!("/api/events/{key}")).await
    }

    /// The event holding delivery `id`, and that delivery.
    pub async fn find_delivery(&self, id: &str) -> (Value, Value) {
        for event in self.all_events().await {
            let detail = self.event_detail(event["key"].as_i64().unwrap()).await;
            let found = detail["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["id"] == id)
                .cloned();
            if let Some(delivery) = found {
                return (detail, delivery);
            }
        }
        panic!("no stored delivery has the id {id}");
    }

    /// Logs the client in through the ready-to-click login link.
    pub async fn log_in(&self) {
        self.session_cookie().await;
    }

    /// Logs in through the login link and returns the session cookie it set, as a `Cookie`
    /// header value (for a client that keeps no cookies, such as a websocket's).
    pub async fn session_cookie(&self) -> String {
        let response = self
            .client
            .get(self.url("/auth/login"))
            .query(&[("token", &self.token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
        set_cookie.split(';').next().unwrap().to_owned()
    }

    /// Stops the server gracefully, waits for it to finish, and hands back its folder.
    pub async fn stop(mut self) -> anyhow::Result<TempDir> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task does not panic")?;
        }
        Ok(self.tempdir)
    }
}

/// The `deliveryId` of an ingestion answer's JSON body, checked against its header.
pub async fn delivery_id_of(response: Response) -> String {
    let header = delivery_id_header(response.headers()).expect("a hookscope-delivery-id header");
    let body: Value = response.json().await.expect("a JSON answer");
    let id = body["deliveryId"]
        .as_str()
        .expect("a deliveryId")
        .to_owned();
    assert_eq!(header, id);
    id
}

/// The `hookscope-delivery-id` header, when there is one.
pub fn delivery_id_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("hookscope-delivery-id")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// The folder of sample payloads shipped with the project.
pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

/// The bytes of `samples/keldairhr/{name}.json`.
pub fn keldair_sample(name: &str) -> Vec<u8> {
    std::fs::read(samples_dir().join("keldairhr").join(format!("{name}.json")))
        .expect("a sample file")
}

/// Every KeldairHR sample as `(file stem, bytes)`, sorted by name.
pub fn keldair_samples() -> Vec<(String, Vec<u8>)> {
    let mut samples: Vec<(String, Vec<u8>)> = std::fs::read_dir(samples_dir().join("keldairhr"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            (stem, std::fs::read(&path).unwrap())
        })
        .collect();
    samples.sort();
    samples
}

/// A small KeldairHR envelope with the given id and type.
pub fn envelope(id: &str, event_type: &str) -> Value {
    envelope_at(id, event_type, "2022-02-23T18:46:43+00:00")
}

/// A small KeldairHR envelope with the given id, type and `dateOccurred`.
pub fn envelope_at(id: &str, event_type: &str, date_occurred: &str) -> Value {
    serde_json::json!({
        "id": id,
        "type": event_type,
        "version": "2022-02-23",
        "dateOccurred": date_occurred,
        "data": { "applicant": { "id": "apl_7Qm2xK", "firstName": "Amara" } },
    })
}

/// Asserts that `response` has `status` and an `{"error": "..."}` body, and returns the message.
pub async fn assert_error(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("an error answer is JSON");
    let message = body["error"]
        .as_str()
        .expect("an `error` message")
        .to_owned();
    assert!(!message.is_empty());
    message
}
