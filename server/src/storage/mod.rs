//! Storage: one SQLite database in WAL mode, with a [`delivery_log`] in front of it. Reads go
//! through a pool ([`Store`]); every write goes through the single batching [`writer`], which
//! makes each batch durable in the log, acknowledges it, then applies it to SQLite on its own
//! connection, so SQLite never sees two writers.

mod delivery_log;
mod direct_io;
mod events;
mod inbox;
pub mod writer;

use std::{
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use sqlx::{
    ConnectOptions, SqliteConnection, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub use delivery_log::DeliveryLog;
use delivery_log::EncodedBatch;
pub use events::{EventQuery, QueryError, RawBody};
pub use writer::{NewDelivery, WriteError, Writer};

/// The read side of the database, cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// An opened database: the read side, and what the writer needs: its own connection and the
/// delivery log, with whatever an earlier run left in the log already recovered.
pub struct Opened {
    pub store: Store,
    pub writer_connection: SqliteConnection,
    pub log: DeliveryLog,
}

/// The write-ahead log may keep this much disk after a burst; beyond it, SQLite truncates the
/// file the next time the log starts over.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Recovered log batches appended to the inbox per transaction.
const RECOVERED_PER_COMMIT: usize = 64;

/// The writer connection's page cache: 16 MiB (a negative `cache_size` counts KiB).
const WRITER_CACHE_KIB: i64 = -16 * 1024;

/// Opens (creating if missing) the database at `url`, brings its schema up to date, and
/// recovers into it what its delivery log holds beyond what it has. `max_body` sizes the log.
pub async fn open(url: &str, max_body: usize) -> anyhow::Result<Opened> {
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| {
            format!("{url:?} is not a SQLite database URL such as sqlite://hookscope.db")
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL for the pool (migrations): a commit is on disk when it returns. The writer's
        // connection, below, commits with NORMAL behind the delivery log.
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
    let log_path = log_path(options.get_filename());
    let mut writer_connection = options
        // The delivery log makes each delivery durable before it is acknowledged; see
        // `inbox::make_durable` for when SQLite syncs.
        .synchronous(SqliteSynchronous::Normal)
        // The writer copies the WAL back into the database itself (SQLite's automatic
        // checkpoint, every 1,000 pages), so the WAL starts over and is overwritten rather than
        // grown. That stalls only the applying side: acknowledgements wait on the log alone.
        .pragma("wal_autocheckpoint", "1000")
        // Moving the inbox into the tables reads a random page of the dedupe index per event;
        // with SQLite's default 2 MiB cache most of those were reads from the OS (31 KB read
        // per delivery moved), with 16 MiB about a quarter of that.
        .pragma("cache_size", WRITER_CACHE_KIB.to_string())
        // Deliveries being indexed are staged in a temporary table: in memory, never on disk.
        .pragma("temp_store", "MEMORY")
        .statement_cache_capacity(inbox::STATEMENT_CACHE_CAPACITY)
        .connect()
        .await
        .context("opening the writer's database connection")?;
    inbox::create_staging(&mut writer_connection)
        .await
        .context("preparing the writer's database connection")?;
    let log = recover_log(&mut writer_connection, &log_path, max_body)
        .await
        .with_context(|| format!("recovering the delivery log {}", log_path.display()))?;
    Ok(Opened {
        store: Store { pool },
        writer_connection,
        log,
    })
}

/// The delivery log of the database at `database`: `hookscope.db-log` beside `hookscope.db`.
fn log_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-log");
    PathBuf::from(name)
}

/// Appends to the inbox whatever the log holds past what the database recorded as applied,
/// makes it durable, and opens the log for appending.
async fn recover_log(
    connection: &mut SqliteConnection,
    path: &Path,
    max_body: usize,
) -> anyhow::Result<DeliveryLog> {
    let (id, applied) = inbox::log_state(connection).await?;
    let id: delivery_log::LogId = id
        .try_into()
        .map_err(|_| anyhow::anyhow!("the database's delivery log id is not 16 bytes"))?;
    let read_path = path.to_owned();
    let recovered =
        tokio::task::spawn_blocking(move || delivery_log::recover(&read_path, &id, applied))
            .await??;
    let last_seq = recovered.last_seq;
    if !recovered.batches.is_empty() {
        let recovered = Arc::new(recovered);
        let mut count = 0;
        for n in (0..recovered.batches.len()).step_by(RECOVERED_PER_COMMIT) {
            let reading = Arc::clone(&recovered);
            let chunk = tokio::task::spawn_blocking(move || {
                let end = (n + RECOVERED_PER_COMMIT).min(reading.batches.len());
                reading.read(&reading.batches[n..end])
            })
            .await??;
            let chunk_last = chunk.last().map_or(applied, EncodedBatch::last_seq);
            inbox::append_and_commit(connection, &chunk, chunk_last).await?;
            count += chunk.iter().map(|b| b.count as usize).sum::<usize>();
        }
        tracing::info!(
            deliveries = count,
            "recovered the deliveries an earlier run acknowledged but had not yet stored in the database"
        );
    }
    // Appends start over at the beginning of the ring, so what the database has must be on
    // disk first, even when nothing was recovered: an earlier run may have committed its last
    // appends with synchronous=NORMAL only and then been killed.
    inbox::make_durable(connection, last_seq).await?;
    let path = path.to_owned();
    let segment = delivery_log::segment_size(max_body);
    let segments = delivery_log::segments(segment);
    let log = tokio::task::spawn_blocking(move || {
        DeliveryLog::open(&path, segment, segments, id, last_seq)
    })
    .await??;
    Ok(log)
}

impl Store {
    /// True when the database answers a trivial query.
    pub async fn is_reachable(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes every pooled connection. Once the writer's connection is closed too, the last
    /// one to close copies the WAL into the database file and removes it (SQLite does this by
    /// itself), leaving one compact database file and its delivery log behind.
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

    use super::{EncodedBatch, NewDelivery, delivery_log::Record};
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

    /// The `n`th delivery of a test as the log thread gets it.
    pub fn record(n: usize) -> Record {
        Record::encode(&delivery(n))
    }

    pub fn records(deliveries: &[NewDelivery]) -> Vec<Record> {
        deliveries.iter().map(Record::encode).collect()
    }

    /// `deliveries` as the log would hand them on: batches of `per_batch`, numbered from
    /// `first_seq`.
    pub fn batches(
        first_seq: i64,
        deliveries: impl Iterator<Item = NewDelivery>,
        per_batch: usize,
    ) -> Vec<EncodedBatch> {
        let all: Vec<NewDelivery> = deliveries.collect();
        all.chunks(per_batch)
            .enumerate()
            .map(|(i, chunk)| EncodedBatch::encode(first_seq + (i * per_batch) as i64, chunk))
            .collect()
    }

    /// A new database in `dir` (or the one already there), opened.
    pub async fn open(dir: &tempfile::TempDir) -> super::Opened {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        super::open(&url, 1024 * 1024).await.unwrap()
    }

    /// The writer's connection to a new database in `dir`.
    pub async fn writer_connection(dir: &tempfile::TempDir) -> SqliteConnection {
        open(dir).await.writer_connection
    }
}

#[cfg(test)]
mod tests {
    use super::{
        EncodedBatch,
        delivery_log::Gate,
        inbox,
        testing::{delivery, open, record, records},
    };

    #[tokio::test]
    async fn what_the_log_acknowledged_and_the_database_never_got_is_recovered_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut opened = open(&dir).await;
        // The log thread made 700 deliveries durable and acknowledged them; then the process
        // died before the apply task wrote any of them to SQLite.
        let acknowledged: Vec<_> = (0..700).map(delivery).collect();
        let gate = Gate::default();
        for batch in acknowledged.chunks(100) {
            opened.log.append(&records(batch), &gate).unwrap();
        }
        drop(opened);

        let mut reopened = open(&dir).await;
        let conn = &mut reopened.writer_connection;
        assert_eq!(inbox::backlog(conn).await.unwrap(), 700);
        let inbox: Vec<EncodedBatch> =
            sqlx::query_as("SELECT first_seq, count, records FROM inbox ORDER BY first_seq")
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        let ids: Vec<String> = inbox
            .iter()
            .flat_map(|batch| inbox::unpack(batch).unwrap())
            .map(|d| d.id)
            .collect();
        let sent: Vec<&str> = acknowledged.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, sent, "in the order they were acknowledged");
        assert_eq!(inbox::log_state(conn).await.unwrap().1, 700);

        // New deliveries continue the sequence; a second start recovers nothing again.
        reopened.log.append(&[record(700)], &gate).unwrap();
        drop(reopened);
        let mut again = open(&dir).await;
        assert_eq!(
            inbox::backlog(&mut again.writer_connection).await.unwrap(),
            701
        );
        drop(again);
        let mut third = open(&dir).await;
        assert_eq!(
            inbox::backlog(&mut third.writer_connection).await.unwrap(),
            701
        );
    }

    #[tokio::test]
    async fn deliveries_an_earlier_version_left_in_its_inbox_are_indexed_by_the_upgrade() {
        use std::{borrow::Cow, str::FromStr};

        use sqlx::{Connection, sqlite::SqliteConnectOptions};

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let mut old = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        // The schema before the inbox kept batches, with two deliveries of one event and one
        // of another waiting in its inbox.
        let mut earlier = sqlx::migrate!("../migrations/sqlite");
        earlier.migrations = Cow::Owned(earlier.migrations[..3].to_vec());
        earlier.run(&mut old).await.unwrap();
        for (seq, id, event, sha) in [
            (1, "d1", "evt_a", "x'01'"),
            (2, "d2", "evt_b", "x'02'"),
            (3, "d3", "evt_a", "x'03'"),
        ] {
            sqlx::query(&format!(
                "INSERT INTO inbox (seq, id, source, dedupe_key, event_id, type, body_kind, method, \
                 path, headers, received_at, size, body, body_sha256, signature, rejected, \
                 too_large, response_status) VALUES ({seq}, '{id}', 'keldair', '{event}', \
                 '{event}', 't', 'envelope', 'POST', '/hooks/keldair', '[]', {seq}, 2, x'7b7d', \
                 {sha}, 'unchecked', 0, 0, 200)"
            ))
            .execute(&mut old)
            .await
            .unwrap();
        }
        old.close().await.unwrap();

        let mut opened = open(&dir).await;
        let conn = &mut opened.writer_connection;
        assert_eq!(inbox::backlog(conn).await.unwrap(), 0);
        let events: Vec<(String, i64, bool)> = sqlx::query_as(
            "SELECT dedupe_key, delivery_count, body_differs FROM events ORDER BY key",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        assert_eq!(
            events,
            [("evt_a".into(), 2, true), ("evt_b".into(), 1, false)]
        );
        let deliveries: Vec<String> = sqlx::query_scalar("SELECT id FROM deliveries ORDER BY seq")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(deliveries, ["d1", "d2", "d3"]);
    }
}
