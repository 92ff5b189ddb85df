//! Hookscope's server: receives webhooks at `/hooks/{source}`, keeps every delivery exactly as
//! it arrived, and serves the dashboard (Leptos, server-rendered then hydrated) and the JSON
//! API from one binary.
//!
//! - [`config`]: the command line and its environment variables.
//! - [`sources`]: per-source settings from the `--config` file.
//! - [`ingest`]: the `/hooks` handler; [`envelope`] and [`signature`] read what arrived.
//! - [`delivery`]: what a delivery is, as ingestion makes it and storage keeps it.
//! - [`storage`]: SQLite, the group-committing writer, indexing and the queries.
//! - [`stream`]: the live websocket stream of acknowledged deliveries.
//! - [`auth`], [`api`], [`ui`]: who may look, and the two ways to look (JSON and pages).

pub mod api;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod envelope;
pub mod error;
pub mod ingest;
pub mod signature;
pub mod sources;
pub mod storage;
pub mod stream;
pub mod tail;
pub mod timestamp;
pub mod ui;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRef, State},
    http::StatusCode,
    middleware,
    routing::{any, get, post},
};
use leptos::config::LeptosOptions;
use tokio::net::TcpListener;

use crate::{
    auth::Auth,
    config::{ServeArgs, Token},
    ingest::MemoryBudget,
    sources::Sources,
    storage::{DatabaseLock, Store, Writer},
    stream::Hub,
};

/// What every handler shares. axum clones it for every request, so it is one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
pub struct Shared {
    pub store: Store,
    pub writer: Writer,
    /// The live stream's fan-out.
    pub hub: Hub,
    pub sources: Sources,
    pub auth: Auth,
    pub max_body: usize,
    /// What the requests being received may hold in memory at once.
    pub memory: MemoryBudget,
    pub leptos_options: LeptosOptions,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// The whole HTTP surface: ingestion and health (open), the API and the pages (behind login).
pub fn router(state: AppState) -> Router {
    let hooks = Router::new()
        .route("/hooks/{source}", any(ingest::receive))
        .route("/hooks/{source}/{*rest}", any(ingest::receive))
        .route("/hooks", any(ingest::no_source))
        .route("/hooks/", any(ingest::no_source))
        .layer(DefaultBodyLimit::disable());
    let dashboard = Router::new()
        .route("/healthz", get(healthz))
        .route("/auth/login", get(auth::login_link).post(auth::login_form))
        .route("/auth/logout", post(auth::logout))
        .route("/api/events", get(api::list_events))
        .route("/api/types", get(api::type_counts))
        .route("/api/events/{key}", get(api::event_detail))
        .route("/api/deliveries/{id}/raw", get(api::raw_delivery))
        .route("/api/stream", get(stream::viewer::open))
        .route("/deliveries/{id}", get(ui::open_delivery))
        .route("/api/{*rest}", any(api::no_such_route))
        .merge(ui::routes(&state))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_login,
        ));
    hooks.merge(dashboard).with_state(state)
}

/// `GET /healthz`: 200 once the server is up, the database answers and takes writes; 503 with
/// the reason otherwise (a full disk, say, while senders get 503 too).
async fn healthz(State(state): State<AppState>) -> (StatusCode, String) {
    if let Some(failure) = state.writer.failure() {
        return (StatusCode::SERVICE_UNAVAILABLE, failure);
    }
    if state.store.is_reachable().await {
        (StatusCode::OK, "ok".to_owned())
    } else {
        let reason = "the database does not answer".to_owned();
        (StatusCode::SERVICE_UNAVAILABLE, reason)
    }
}

/// A server that is bound and ready, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    writer_task: tokio::task::JoinHandle<()>,
    hub_task: tokio::task::JoinHandle<()>,
    /// Keeps other servers off the database file until this one has closed it.
    lock: DatabaseLock,
    /// The token, when it was generated rather than given.
    generated_token: Option<Token>,
}

impl Application {
    /// Loads the sources, opens the database and binds the address.
    pub async fn build(args: ServeArgs) -> anyhow::Result<Self> {
        let sources = match args.config.clone() {
            // A file read: off the runtime's workers.
            Some(path) => tokio::task::spawn_blocking(move || Sources::load(&path))
                .await?
                .map_err(anyhow::Error::msg)?,
            None => Sources::default(),
        };
        let (token, generated_token) = match args.token {
            Some(token) => (token, None),
            None => {
                let token = Token::generate();
                (token.clone(), Some(token))
            }
        };
        let opened = storage::open(&args.database_url).await?;
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let address = listener.local_addr()?;
        let (feed, feed_reader) = storage::feed();
        let (hub, hub_task) = Hub::spawn(
            opened.store.clone(),
            feed_reader,
            args.stream_queue as usize,
        )
        .await
        .context("starting the live stream")?;
        let (writer, writer_task) = Writer::spawn_with_feed(opened.writer, Some(feed))
            .await
            .context("starting the writer")?;
        let leptos_options = LeptosOptions::builder()
            .output_name("hookscope")
            .site_root(args.site_root.as_str())
            .site_pkg_dir("pkg")
            .site_addr(address)
            .build();
        let state = AppState(Arc::new(Shared {
            store: opened.store,
            writer,
            hub,
            sources,
            auth: Auth::new(token),
            max_body: args.max_body.0,
            memory: MemoryBudget::new(args.max_body.0),
            leptos_options,
        }));
        Ok(Self {
            listener,
            state,
            writer_task,
            hub_task,
            lock: opened.lock,
            generated_token,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The URL that logs a browser in, when the token was generated.
    pub fn login_url(&self) -> Option<String> {
        let token = self.generated_token.as_ref()?;
        Some(format!(
            "http://{}/auth/login?token={}",
            self.local_addr(),
            token.expose()
        ))
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight
    /// finish (each waits for its batch to commit), drains the writer and checkpoints.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            writer_task,
            hub_task,
            lock,
            ..
        } = self;
        let store = state.store.clone();
        let hub = state.hub.clone();
        // The live viewers' sockets are closed as soon as the server starts stopping.
        let shutdown = async move {
            shutdown.await;
            hub.close();
        };
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")?;
        // Every handle to the writer lived in the router, now dropped: the writer drains its
        // queue, commits and ends.
        writer_task.await.context("the writer task failed")?;
        hub_task.await.context("the live stream's task failed")?;
        store.close().await;
        drop(lock);
        Ok(())
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing the deliveries in flight");
}
