//! The inbox: the writer's cheap, durable append, and the moves from it into `events` and
//! `deliveries` (grouping duplicates, indexing).
//!
//! An inbox row is one batch of the delivery log, kept as the log encoded it (`records`), so an
//! append under load binds three values per batch, not 25 per delivery. Indexing decodes the
//! oldest batches, stages their deliveries in a temporary table of the writer's connection
//! (`staged`, in memory: no WAL), and moves them from there in SQL.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqliteExecutor, SqlitePool};

use super::{delivery_log::EncodedBatch, writer::NewDelivery};

/// The most rows one INSERT carries; more are cut into statements of this many rows.
const ROWS_PER_STATEMENT: usize = 64;

/// Records that the delivery log's batches up to sequence number `$1` are in the inbox.
const RECORD_APPLIED: &str = "UPDATE delivery_log SET applied_seq = ";

/// Creates the writer connection's table for deliveries being indexed (temporary: each
/// connection has its own, and it is gone when the connection closes).
pub async fn create_staging(conn: &mut SqliteConnection) -> sqlx::Result<()> {
    sqlx::query(CREATE_STAGED).execute(conn).await.map(drop)
}

const CREATE_STAGED: &str = "\
CREATE TEMP TABLE staged (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL,
    source           TEXT NOT NULL,
    dedupe_key       TEXT NOT NULL,
    event_id         TEXT,
    type             TEXT,
    version          TEXT,
    date_occurred    TEXT,
    occurred_at      INTEGER,
    body_kind        TEXT NOT NULL,
    parse_error      TEXT,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    query            TEXT,
    headers          TEXT NOT NULL,
    remote_addr      TEXT,
    received_at      INTEGER NOT NULL,
    size             INTEGER NOT NULL,
    content_type     TEXT,
    body             BLOB NOT NULL,
    body_sha256      BLOB NOT NULL,
    signature        TEXT NOT NULL,
    signature_reason TEXT,
    rejected         INTEGER NOT NULL,
    too_large        INTEGER NOT NULL,
    response_status  INTEGER NOT NULL
)";

/// Appends `batches` to the inbox inside the caller's transaction, and records `last_seq` as
/// the last one applied from the delivery log.
pub async fn append(
    conn: &mut SqliteConnection,
    batches: &[EncodedBatch],
    last_seq: i64,
) -> sqlx::Result<()> {
    for chunk in batches.chunks(ROWS_PER_STATEMENT) {
        append_statement("", chunk)
            .build()
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(&format!("{RECORD_APPLIED}$1"))
        .bind(last_seq)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Appends `batches` to the inbox in a transaction of its own, records `last_seq` as the last
/// one applied from the delivery log, and commits.
///
/// Each statement handed to sqlx is a round trip to its worker thread, and on this kind of
/// machine (a VM with 2 cores) a round trip costs about a tenth of a batch's time. So BEGIN and
/// COMMIT travel with the INSERTs: up to [`ROWS_PER_STATEMENT`] batches are one round trip.
/// Every text sent is one of a few shapes per row count, so each is prepared once and then
/// found in the writer connection's statement cache.
pub async fn append_and_commit(
    conn: &mut SqliteConnection,
    batches: &[EncodedBatch],
    last_seq: i64,
) -> sqlx::Result<()> {
    let last = batches.len().div_ceil(ROWS_PER_STATEMENT).saturating_sub(1);
    for (i, chunk) in batches.chunks(ROWS_PER_STATEMENT).enumerate() {
        let begin = if i == 0 { "BEGIN; " } else { "" };
        let mut statement = append_statement(begin, chunk);
        if i == last {
            statement
                .push("; ")
                .push(RECORD_APPLIED)
                .push_bind(last_seq)
                .push("; COMMIT");
        }
        let written = statement.build().execute(&mut *conn).await;
        if let Err(e) = written {
            // Whatever failed, leave no transaction open on the writer's connection. (When the
            // failure came before BEGIN or after COMMIT there is none, and this fails quietly.)
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(e);
        }
    }
    Ok(())
}

/// `INSERT INTO inbox ... VALUES (...), ...` for `chunk`, after `before`.
fn append_statement<'a>(before: &str, chunk: &'a [EncodedBatch]) -> QueryBuilder<'a, Sqlite> {
    let mut sql = QueryBuilder::<Sqlite>::new(before);
    sql.push("INSERT INTO inbox (first_seq, count, records) ");
    sql.push_values(chunk, |mut row, batch| {
        row.push_bind(batch.first_seq)
            .push_bind(i64::from(batch.count))
            .push_bind(batch.records.as_slice());
    });
    sql
}

/// How many statement texts the writer's connection may keep prepared: per row count up to
/// [`ROWS_PER_STATEMENT`], appends with and without BEGIN or COMMIT and staging inserts, and
/// a few more for indexing.
pub const STATEMENT_CACHE_CAPACITY: usize = 5 * ROWS_PER_STATEMENT + 16;

/// Commits `applied_seq` once with `synchronous=FULL`: everything committed before is then on
/// disk too (the WAL is written in order), and the delivery log may overwrite it. The writer's
/// connection otherwise commits with `synchronous=NORMAL`.
pub async fn make_durable(conn: &mut SqliteConnection, applied_seq: i64) -> sqlx::Result<()> {
    let synced = sqlx::query(&format!(
        "PRAGMA synchronous = FULL; {RECORD_APPLIED}$1; PRAGMA synchronous = NORMAL"
    ))
    .bind(applied_seq)
    .execute(&mut *conn)
    .await;
    if synced.is_err() {
        // Never leave the connection syncing every commit.
        let _ = sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await;
    }
    synced.map(drop)
}

/// The delivery log's id, and the last sequence number applied to the inbox.
pub async fn log_state(conn: &mut SqliteConnection) -> sqlx::Result<(Vec<u8>, i64)> {
    sqlx::query_as("SELECT log_id, applied_seq FROM delivery_log")
        .fetch_one(conn)
        .await
}

/// How many deliveries wait in the inbox.
pub async fn backlog(conn: &mut SqliteConnection) -> sqlx::Result<u64> {
    let count: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(count), 0) FROM inbox")
        .fetch_one(conn)
        .await?;
    Ok(count.max(0) as u64)
}

/// Inbox batches read per query.
const BATCHES_PER_READ: i64 = 16;

/// Up to [`BATCHES_PER_READ`] inbox batches next to `from`: the oldest after it, or with
/// `newest_first` the newest before it.
async fn read_batches<'e>(
    db: impl SqliteExecutor<'e>,
    from: i64,
    newest_first: bool,
) -> sqlx::Result<Vec<EncodedBatch>> {
    let sql = if newest_first {
        "SELECT first_seq, count, records FROM inbox WHERE first_seq < $1 \
         ORDER BY first_seq DESC LIMIT $2"
    } else {
        "SELECT first_seq, count, records FROM inbox WHERE first_seq > $1 \
         ORDER BY first_seq LIMIT $2"
    };
    sqlx::query_as(sql)
        .bind(from)
        .bind(BATCHES_PER_READ)
        .fetch_all(db)
        .await
}

/// The deliveries of an inbox batch, or an error naming it.
pub fn unpack(batch: &EncodedBatch) -> sqlx::Result<Vec<NewDelivery>> {
    batch.decode().ok_or_else(|| {
        sqlx::Error::Decode(
            format!("the inbox batch at {} does not decode", batch.first_seq).into(),
        )
    })
}

/// The delivery `id` if it is still in the inbox (a read indexes only part of a long burst's
/// backlog): the batches are decoded, newest first, until it is found.
pub async fn find(pool: &SqlitePool, id: &str) -> sqlx::Result<Option<NewDelivery>> {
    let mut before = i64::MAX;
    loop {
        let newest = read_batches(pool, before, true).await?;
        let Some(oldest) = newest.last() else {
            return Ok(None);
        };
        before = oldest.first_seq;
        for batch in &newest {
            if let Some(found) = unpack(batch)?.into_iter().find(|d| d.id == id) {
                return Ok(Some(found));
            }
        }
    }
}

/// Moves the oldest inbox batches, about `limit` deliveries (whole batches: at least `limit`,
/// unless the inbox holds fewer), into `sources`, `events` and `deliveries`, oldest first so an
/// event's first delivery defines it, and returns how many moved. Runs inside the caller's
/// transaction.
pub async fn index(conn: &mut SqliteConnection, limit: u64) -> sqlx::Result<u64> {
    let mut batches: Vec<EncodedBatch> = Vec::new();
    let mut gathered = 0u64;
    let mut after = i64::MIN;
    while gathered < limit {
        let read = read_batches(&mut *conn, after, false).await?;
        let Some(last) = read.last() else {
            break;
        };
        after = last.first_seq;
        for batch in read {
            gathered += u64::from(batch.count);
            batches.push(batch);
            if gathered >= limit {
                break;
            }
        }
    }
    let Some(last_first_seq) = batches.last().map(|b| b.first_seq) else {
        return Ok(0);
    };
    let mut moved = 0;
    for batch in &batches {
        let deliveries = unpack(batch)?;
        let seqs = batch.first_seq..;
        let numbered: Vec<(i64, &NewDelivery)> = seqs.zip(&deliveries).collect();
        for chunk in numbered.chunks(ROWS_PER_STATEMENT) {
            stage_statement(chunk).build().execute(&mut *conn).await?;
        }
        moved += deliveries.len() as u64;
    }
    sqlx::query(MOVE_TO_TABLES).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM inbox WHERE first_seq <= $1")
        .bind(last_first_seq)
        .execute(&mut *conn)
        .await?;
    Ok(moved)
}

/// The staged deliveries into their tables, then out of `staged`. A duplicate (same source and
/// dedupe key) counts against the event already there; a delivery whose body differs from its
/// event's first body is flagged, on itself and on the event.
const MOVE_TO_TABLES: &str = "\
INSERT INTO sources (name, created_at)
    SELECT source, MIN(received_at) FROM staged GROUP BY source
    ON CONFLICT DO NOTHING;
INSERT INTO events (source, dedupe_key, event_id, type, version, date_occurred, occurred_at,
                    body_kind, parse_error, body_sha256, received_at, last_received_at, signature)
    SELECT source, dedupe_key, event_id, type, version, date_occurred, occurred_at,
           body_kind, parse_error, body_sha256, received_at, received_at, signature
    FROM staged ORDER BY seq
    ON CONFLICT (source, dedupe_key) DO UPDATE SET
        delivery_count = events.delivery_count + 1,
        last_received_at = excluded.received_at,
        signature = excluded.signature,
        body_differs = events.body_differs OR events.body_sha256 <> excluded.body_sha256;
INSERT INTO deliveries (id, event_key, source, method, path, query, headers, remote_addr,
                        received_at, size, content_type, body, signature, signature_reason,
                        rejected, too_large, body_differs, response_status)
    SELECT s.id, e.key, s.source, s.method, s.path, s.query, s.headers, s.remote_addr,
           s.received_at, s.size, s.content_type, s.body, s.signature, s.signature_reason,
           s.rejected, s.too_large, e.body_sha256 <> s.body_sha256, s.response_status
    FROM staged s JOIN events e ON e.source = s.source AND e.dedupe_key = s.dedupe_key
    ORDER BY s.seq;
DELETE FROM staged;";

/// `INSERT INTO staged ... VALUES (...), ...` for `chunk`, each delivery with its sequence
/// number.
fn stage_statement<'a>(chunk: &[(i64, &'a NewDelivery)]) -> QueryBuilder<'a, Sqlite> {
    let mut sql = QueryBuilder::<Sqlite>::new(
        "INSERT INTO staged (seq, id, source, dedupe_key, event_id, type, version, \
         date_occurred, occurred_at, body_kind, parse_error, method, path, query, headers, \
         remote_addr, received_at, size, content_type, body, body_sha256, signature, \
         signature_reason, rejected, too_large, response_status) ",
    );
    sql.push_values(chunk, |mut row, &(seq, d)| {
        let p = &d.parsed;
        row.push_bind(seq)
            .push_bind(d.id.as_str())
            .push_bind(d.source.as_str())
            .push_bind(d.dedupe_key())
            .push_bind(p.event_id.as_deref())
            .push_bind(p.event_type.as_deref())
            .push_bind(p.version.as_deref())
            .push_bind(p.date_occurred.as_deref())
            .push_bind(p.occurred_at)
            .push_bind(p.kind.as_str())
            .push_bind(p.parse_error.as_deref())
            .push_bind(d.method.as_str())
            .push_bind(d.path.as_str())
            .push_bind(d.query.as_deref())
            .push_bind(d.headers_json.as_str())
            .push_bind(d.remote_addr.as_deref())
            .push_bind(d.received_at)
            .push_bind(d.size)
            .push_bind(d.content_type.as_deref())
            .push_bind(d.body.as_ref())
            .push_bind(d.body_sha256.as_slice())
            .push_bind(d.signature.as_str())
            .push_bind(d.signature_reason.as_deref())
            .push_bind(d.rejected)
            .push_bind(d.too_large)
            .push_bind(i32::from(d.response_status));
    });
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::{batches, delivery, writer_connection};

    #[tokio::test]
    async fn an_append_of_several_statements_commits_as_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = writer_connection(&dir).await;
        // 150 batches: three statements, BEGIN on the first and COMMIT on the last.
        let appended = batches(1, (0..150).map(delivery), 1);
        append_and_commit(&mut conn, &appended, 150).await.unwrap();
        assert_eq!(backlog(&mut conn).await.unwrap(), 150);
        assert_eq!(log_state(&mut conn).await.unwrap().1, 150);
        let more = batches(151, (150..160).map(delivery), 10);
        append_and_commit(&mut conn, &more, 160).await.unwrap();
        assert_eq!(backlog(&mut conn).await.unwrap(), 160);
    }

    #[tokio::test]
    async fn a_failed_append_stores_nothing_and_leaves_no_transaction_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = writer_connection(&dir).await;
        let appended = batches(1, (0..100).map(delivery), 1);
        // The 81st batch, in the second statement, is refused.
        sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON inbox WHEN NEW.first_seq = 81 BEGIN SELECT RAISE(ABORT, 'refused'); END")
            .execute(&mut conn)
            .await
            .unwrap();
        let error = append_and_commit(&mut conn, &appended, 100)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("refused"), "{error}");
        assert_eq!(
            backlog(&mut conn).await.unwrap(),
            0,
            "the first 64 batches were rolled back"
        );
        assert_eq!(log_state(&mut conn).await.unwrap().1, 0);
        sqlx::query("DROP TRIGGER refuse")
            .execute(&mut conn)
            .await
            .unwrap();
        append_and_commit(&mut conn, &appended, 100).await.unwrap();
        assert_eq!(backlog(&mut conn).await.unwrap(), 100);
    }

    #[tokio::test]
    async fn indexing_moves_whole_batches_oldest_first_and_groups_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = writer_connection(&dir).await;
        // Three batches of 400; the last delivery retries the first event with another body.
        let mut deliveries: Vec<NewDelivery> = (0..1200).map(delivery).collect();
        let retry = &mut deliveries[1199];
        retry.parsed = delivery(0).parsed;
        retry.body_sha256 = [1; 32];
        append_and_commit(&mut conn, &batches(1, deliveries.into_iter(), 400), 1200)
            .await
            .unwrap();

        // 500 asked: the first two batches move, whole.
        assert_eq!(index(&mut conn, 500).await.unwrap(), 800);
        assert_eq!(backlog(&mut conn).await.unwrap(), 400);
        let (events, deliveries): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM deliveries)",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!((events, deliveries), (800, 800));

        assert_eq!(index(&mut conn, 500).await.unwrap(), 400);
        assert_eq!(index(&mut conn, 500).await.unwrap(), 0, "nothing left");
        let first: (i64, bool, String) = sqlx::query_as(
            "SELECT delivery_count, body_differs, \
                    (SELECT id FROM deliveries WHERE event_key = e.key ORDER BY seq LIMIT 1) \
             FROM events e WHERE dedupe_key = 'evt_0'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(first, (2, true, "delivery-0".to_owned()));
        let staged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM staged")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(staged, 0);
    }
}
