//! Storage: one SQLite database in WAL mode. Reads go through a pool ([`Store`]); every write
//! goes through the single batching [`writer`], which owns its own connection, so SQLite never
//! sees two writers and many deliveries share one transaction and one fsync. A background task
//! checkpoints the WAL on another connection, keeping that work off the acknowledgement path.

mod events;
mod inbox;
pub mod writer;

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    ConnectOptions, SqliteConnection, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio_util::sync::CancellationToken;

pub use events::{EventQuery, QueryError, RawBody};
pub use writer::{NewDelivery, WriteError, Writer};

/// The read side of the database, cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// An opened database: the read side and the writer's own connection.
pub struct Opened {
    pub store: Store,
    pub writer_connection: SqliteConnection,
}

/// The write-ahead log may keep this much disk after a burst; beyond it, SQLite truncates the
/// file the next time the log starts over.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Opens (creating if missing) the database at `url` and brings its schema up to date.
pub async fn open(url: &str) -> anyhow::Result<Opened> {
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| {
            format!("{url:?} is not a SQLite database URL such as sqlite://hookscope.db")
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit is on disk (the WAL is fsynced) before any sender is acknowledged.
        .synchronous(SqliteSynchronous::Full)
        .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone())
        .await
        .with_context(|| format!("opening the database {url}"))?;
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .with_context(|| format!("reading the journal mode of {url}"))?;
    if !journal.eq_ignore_ascii_case("wal") {
        // An in-memory database, for one: nothing would be kept, and each connection would
        // see a database of its own.
        anyhow::bail!(
            "{url} cannot keep a write-ahead log (its journal mode is {journal}); \
             Hookscope needs a database file on disk, such as sqlite://hookscope.db"
        );
    }
    sqlx::migrate!("../migrations/sqlite")
        .run(&pool)
        .await
        .context("bringing the database schema up to date")?;
    let writer_connection = options
        // The writer never checkpoints itself: see `run_checkpoints`.
        .pragma("wal_autocheckpoint", "0")
        .statement_cache_capacity(inbox::STATEMENT_CACHE_CAPACITY)
        .connect()
        .await
        .context("opening the writer's database connection")?;
    Ok(Opened {
        store: Store { pool },
        writer_connection,
    })
}

impl Store {
    /// True when the database answers a trivial query.
    pub async fn is_reachable(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Copies the WAL into the database file now and then, on a pool connection, until
    /// `stop` is cancelled. PASSIVE never waits for the writer, so a slow disk delays the
    /// checkpoint, not an acknowledgement.
    pub async fn run_checkpoints(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&self.pool).await {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            }
        }
        // A last full checkpoint leaves a compact database file behind.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What the storage tests share: a delivery to store and a fresh database.
#[cfg(test)]
pub(crate) mod testing {
    use app::model::SignatureVerdict;
    use bytes::Bytes;
    use sqlx::SqliteConnection;

    use super::NewDelivery;
    use crate::{envelope::ParsedBody, sources::SourceSlug};

    /// The `n`th delivery of a test: a KeldairHR envelope with the id `evt_n`.
    pub fn delivery(n: usize) -> NewDelivery {
        let body = Bytes::from(format!(
            r#"{{"id":"evt_{n}","type":"t","version":"1","dateOccurred":"2026-11-29T00:00:00Z","data":{{}}}}"#
        ));
        NewDelivery {
            id: format!("delivery-{n}"),
            source: SourceSlug::parse("keldair").unwrap(),
            method: "POST".into(),
            path: "/hooks/keldair".into(),
            query: None,
            headers_json: "[]".into(),
            remote_addr: None,
            received_at: n as i64,
            size: body.len() as i64,
            content_type: Some("application/json".into()),
            parsed: ParsedBody::parse(&body),
            body,
            body_sha256: [0; 32],
            signature: SignatureVerdict::Unchecked,
            signature_reason: None,
            rejected: false,
            too_large: false,
            response_status: 200,
        }
    }

    /// The writer's connection to a new database in `dir`.
    pub async fn writer_connection(dir: &tempfile::TempDir) -> SqliteConnection {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        super::open(&url).await.unwrap().writer_connection
    }
}
