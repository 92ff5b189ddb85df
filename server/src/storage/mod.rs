//! Storage: one SQLite database file in WAL mode, the only durable store (SQLite's own `-wal`
//! and `-shm` files beside it, nothing else).
//!
//! - [`writer`]: the one path that writes, and the one place that keeps the storage contract: a
//!   delivery is acknowledged only once the transaction appending it has committed durably, and
//!   that commit gives it its `seq`.
//! - `append` and `index`: the writer's SQL (append deliveries; group them into events);
//!   `pace`: how much each commit indexes; `health`: whether the database takes writes.
//! - `events`: the reads, through [`Store`], a pool of read connections (WAL lets them run beside
//!   the writer).
//! - `live`: the reads of the live stream (which events deliveries belong to, deliveries after
//!   a cursor).
//! - `checkpoint`: copies the WAL into the database file beside the writer.
//! - `lock`: one server per database file.
//! - [`backup`]: a consistent copy of a live database.

mod append;
mod checkpoint;
mod events;
mod health;
mod index;
mod live;
mod lock;
mod pace;
pub mod writer;

use std::{
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use anyhow::Context;
use sqlx::{
    ConnectOptions, Connection, SqliteConnection, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub use events::{EventQuery, QueryError, RawBody};
pub use live::{Listed, ListedEvent};
pub use lock::DatabaseLock;
pub use writer::{CommittedBatch, Feed, FeedReader, WriteError, Writer, feed};

/// The read side of the database, cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// An opened database: the read side, what the writer starts from, and the lock that keeps any
/// other server off the file (held until the server has closed every connection).
pub struct Opened {
    pub store: Store,
    pub writer: WriterParts,
    pub lock: DatabaseLock,
}

/// What [`Writer::spawn`] starts from.
pub struct WriterParts {
    /// The writer's own connection.
    pub connection: SqliteConnection,
    /// The checkpointer's connection (see `checkpoint`).
    pub checkpoint_connection: SqliteConnection,
    /// The database file.
    pub path: PathBuf,
}

/// The longest a read waits for indexing; past it, the read answers with what is listed and
/// says how many deliveries are still pending.
pub const READ_WAIT: Duration = Duration::from_millis(100);

/// The write-ahead log may keep this much disk after a burst; beyond it, SQLite truncates the
/// file the next time the log starts over.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// The writer connection's page cache: 16 MiB (a negative `cache_size` counts KiB). Indexing
/// reads a random page of the events' dedupe index per event; a larger cache keeps more of it.
const WRITER_CACHE_KIB: i64 = -16 * 1024;

/// Opens (creating if missing) the database at `url` for a server: takes the file's lock first,
/// so that a second server refuses to start before it has touched anything, then brings the
/// schema up to date.
pub async fn open(url: &str) -> anyhow::Result<Opened> {
    let options = connect_options(url)?;
    let path = options.get_filename().to_owned();
    let lock = DatabaseLock::acquire(path.clone()).await?;
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
        anyhow::bail!(
            "{url} cannot keep a write-ahead log (its journal mode is {journal}); {NEEDS_A_FILE}"
        );
    }
    sqlx::migrate!("../migrations/sqlite")
        .run(&pool)
        .await
        .context(
            "bringing the database schema up to date (a database made by a development build \
             from before the single-store schema cannot be opened: start on a new file)",
        )?;
    let checkpoint_connection = options
        .clone()
        .connect()
        .await
        .context("opening the checkpointer's database connection")?;
    let writer_connection = options
        .pragma("cache_size", WRITER_CACHE_KIB.to_string())
        .statement_cache_capacity(append::STATEMENT_CACHE_CAPACITY)
        .connect()
        .await
        .context("opening the writer's database connection")?;
    Ok(Opened {
        store: Store { pool },
        writer: WriterParts {
            connection: writer_connection,
            checkpoint_connection,
            path,
        },
        lock,
    })
}

const NEEDS_A_FILE: &str = "Hookscope needs a database file on disk, such as sqlite://hookscope.db";

/// The options every connection of a server shares: WAL, and `synchronous=FULL`, so that a
/// commit is on disk when it returns (the writer acknowledges on it).
fn connect_options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        // Nothing would be kept, and each connection would see a database of its own.
        anyhow::bail!("{url} is an in-memory database; {NEEDS_A_FILE}");
    }
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| {
            format!("{url:?} is not a SQLite database URL such as sqlite://hookscope.db")
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
        .busy_timeout(Duration::from_secs(10));
    Ok(options)
}

/// Copies the database at `url` into a new file `to` while a server may be writing to it, with
/// SQLite's `VACUUM INTO`: the copy is one consistent snapshot, taken when the copy starts, so
/// it holds every delivery acknowledged before then. Returns the copy's size in bytes.
pub async fn backup(url: &str, to: &Path) -> anyhow::Result<u64> {
    let options = connect_options(url)?.create_if_missing(false);
    let from = options.get_filename().to_owned();
    if !tokio::fs::try_exists(&from).await? {
        anyhow::bail!("there is no database at {}", from.display());
    }
    if tokio::fs::try_exists(to).await? {
        anyhow::bail!(
            "{} already exists; a backup goes to a new file",
            to.display()
        );
    }
    let target = to
        .to_str()
        .with_context(|| format!("{} is not a UTF-8 path", to.display()))?;
    let mut connection = options
        .connect()
        .await
        .with_context(|| format!("opening the database {url}"))?;
    sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&mut connection)
        .await
        .with_context(|| format!("copying {} into {}", from.display(), to.display()))?;
    connection.close().await?;
    let to = to.to_owned();
    // VACUUM INTO does not sync what it wrote.
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&to)?;
        file.sync_all()?;
        Ok::<_, std::io::Error>(file.metadata()?.len())
    })
    .await?
    .context("syncing the backup to disk")
}

impl Store {
    /// True when the database answers a trivial query.
    pub async fn is_reachable(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Before a read: lets `writer` list what is acknowledged but not listed yet (indexing
    /// trails a burst), waiting at most [`READ_WAIT`] for it, and returns how many deliveries are
    /// still not listed. With nothing pending, the writer is not asked at all.
    pub async fn catch_up(&self, writer: &Writer) -> sqlx::Result<u64> {
        let pending = index::pending(&self.pool).await?;
        if pending == 0 {
            return Ok(0);
        }
        match writer.catch_up(READ_WAIT).await {
            Some(left) => Ok(left),
            None => index::pending(&self.pool).await,
        }
    }

    /// Closes every pooled connection. Once the writer's connection is closed too, the last
    /// one to close copies the WAL into the database file and removes it (SQLite does this by
    /// itself), leaving one compact database file behind.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What the storage tests share: a delivery to store and a fresh database.
#[cfg(test)]
pub(crate) mod testing {
    use app::model::{BodyKind, SignatureVerdict};
    use bytes::Bytes;

    use crate::delivery::{EnvelopeFields, NewDelivery, SourceName};

    /// The `n`th delivery of a test: a KeldairHR envelope with the id `evt_n`.
    pub fn delivery(n: usize) -> NewDelivery {
        let body = Bytes::from(format!(
            r#"{{"id":"evt_{n}","type":"t","version":"1","dateOccurred":"2026-11-29T00:00:00Z","data":{{}}}}"#
        ));
        NewDelivery {
            id: format!("delivery-{n}"),
            source: SourceName::parse("keldair").unwrap(),
            method: "POST".into(),
            path: "/hooks/keldair".into(),
            query: None,
            headers_json: "[]".into(),
            remote_addr: None,
            received_at: n as i64,
            size: body.len() as i64,
            content_type: Some("application/json".into()),
            envelope: EnvelopeFields {
                kind: BodyKind::Envelope,
                event_id: Some(format!("evt_{n}")),
                event_type: Some("t".into()),
                version: Some("1".into()),
                date_occurred: Some("2026-11-29T00:00:00Z".into()),
                occurred_at: Some(1_795_910_400_000_000),
                parse_error: None,
            },
            body,
            body_sha256: [0; 32],
            signature: SignatureVerdict::Unchecked,
            signature_reason: None,
            rejected: false,
            too_large: false,
            response_status: 200,
        }
    }

    /// A new database in `dir` (or the one already there), opened.
    pub async fn open(dir: &tempfile::TempDir) -> super::Opened {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        super::open(&url).await.unwrap()
    }
}
