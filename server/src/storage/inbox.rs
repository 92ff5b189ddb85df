//! The inbox table: the writer's cheap, durable append, and the SQL that moves inbox rows into
//! `events` and `deliveries` (grouping duplicates, indexing) entirely inside SQLite.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::writer::NewDelivery;

/// The most rows one INSERT carries; a batch is cut into statements of this many rows.
const ROWS_PER_STATEMENT: usize = 64;

/// Records that the delivery log's batches up to sequence number `$1` are in the inbox.
const RECORD_APPLIED: &str = "UPDATE delivery_log SET applied_seq = ";

/// Appends `deliveries` to the inbox inside the caller's transaction (no secondary index: the
/// cheapest write), and records `last_seq` as the last one applied from the delivery log.
pub async fn append(
    conn: &mut SqliteConnection,
    deliveries: &[NewDelivery],
    last_seq: i64,
) -> sqlx::Result<()> {
    for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
        insert_statement("", chunk, "")
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

/// Appends `deliveries` to the inbox in a transaction of its own, records `last_seq` as the
/// last one applied from the delivery log, and commits.
///
/// Each statement handed to sqlx is a round trip to its worker thread, and on this kind of
/// machine (a VM with 2 cores) a round trip costs about a tenth of a batch's time. So BEGIN and
/// COMMIT travel with the INSERTs: a batch of up to [`ROWS_PER_STATEMENT`] deliveries is one
/// round trip. Every text sent is one of a few shapes per row count, so each is prepared once
/// and then found in the writer connection's statement cache.
pub async fn append_and_commit(
    conn: &mut SqliteConnection,
    deliveries: &[NewDelivery],
    last_seq: i64,
) -> sqlx::Result<()> {
    let last = deliveries
        .len()
        .div_ceil(ROWS_PER_STATEMENT)
        .saturating_sub(1);
    for (i, chunk) in deliveries.chunks(ROWS_PER_STATEMENT).enumerate() {
        let begin = if i == 0 { "BEGIN; " } else { "" };
        let mut statement = insert_statement(begin, chunk, "");
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

/// How many statement texts [`append_and_commit`] and [`append`] may prepare: per row count
/// up to [`ROWS_PER_STATEMENT`], with and without BEGIN or COMMIT, and a few more for `index`.
pub const STATEMENT_CACHE_CAPACITY: usize = 4 * ROWS_PER_STATEMENT + 16;

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
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox")
        .fetch_one(conn)
        .await?;
    Ok(count.max(0) as u64)
}

/// Moves the `limit` oldest inbox rows (or all, when fewer) into `sources`, `events` and
/// `deliveries`, oldest first so an event's first delivery defines it, and returns how many
/// moved. Runs inside the caller's transaction.
pub async fn index(conn: &mut SqliteConnection, limit: u64) -> sqlx::Result<u64> {
    // The last row to move: the limit-th oldest, or the newest when there are fewer.
    let last_seq: Option<i64> = sqlx::query_scalar(
        "SELECT COALESCE(
             (SELECT seq FROM inbox ORDER BY seq LIMIT 1 OFFSET $1),
             (SELECT MAX(seq) FROM inbox))",
    )
    .bind(limit.saturating_sub(1) as i64)
    .fetch_one(&mut *conn)
    .await?;
    let Some(last_seq) = last_seq else {
        return Ok(0);
    };
    sqlx::query(MOVE_TO_TABLES)
        .bind(last_seq)
        .execute(&mut *conn)
        .await?;
    let moved = sqlx::query("DELETE FROM inbox WHERE seq <= $1")
        .bind(last_seq)
        .execute(&mut *conn)
        .await?;
    Ok(moved.rows_affected())
}

/// Inbox rows up to `$1` into their tables. A duplicate (same source and dedupe key) counts
/// against the event already there; a delivery whose body differs from its event's first body
/// is flagged, on itself and on the event.
const MOVE_TO_TABLES: &str = "\
INSERT INTO sources (name, created_at)
    SELECT source, MIN(received_at) FROM inbox WHERE seq <= $1 GROUP BY source
    ON CONFLICT DO NOTHING;
INSERT INTO events (source, dedupe_key, event_id, type, version, date_occurred, occurred_at,
                    body_kind, parse_error, body_sha256, received_at, last_received_at, signature)
    SELECT source, dedupe_key, event_id, type, version, date_occurred, occurred_at,
           body_kind, parse_error, body_sha256, received_at, received_at, signature
    FROM inbox WHERE seq <= $1 ORDER BY seq
    ON CONFLICT (source, dedupe_key) DO UPDATE SET
        delivery_count = events.delivery_count + 1,
        last_received_at = excluded.received_at,
        signature = excluded.signature,
        body_differs = events.body_differs OR events.body_sha256 <> excluded.body_sha256;
INSERT INTO deliveries (id, event_key, source, method, path, query, headers, remote_addr,
                        received_at, size, content_type, body, signature, signature_reason,
                        rejected, too_large, body_differs, response_status)
    SELECT i.id, e.key, i.source, i.method, i.path, i.query, i.headers, i.remote_addr,
           i.received_at, i.size, i.content_type, i.body, i.signature, i.signature_reason,
           i.rejected, i.too_large, e.body_sha256 <> i.body_sha256, i.response_status
    FROM inbox i JOIN events e ON e.source = i.source AND e.dedupe_key = i.dedupe_key
    WHERE i.seq <= $1 ORDER BY i.seq;";

/// `INSERT INTO inbox ... VALUES (...), ...` for `chunk`, between `before` and `after`.
fn insert_statement<'a>(
    before: &str,
    chunk: &'a [NewDelivery],
    after: &str,
) -> QueryBuilder<'a, Sqlite> {
    let mut sql = QueryBuilder::<Sqlite>::new(before);
    sql.push(
        "INSERT INTO inbox (id, source, dedupe_key, event_id, type, version, date_occurred, \
         occurred_at, body_kind, parse_error, method, path, query, headers, remote_addr, \
         received_at, size, content_type, body, body_sha256, signature, signature_reason, \
         rejected, too_large, response_status) ",
    );
    sql.push_values(chunk, |mut row, d| {
        let p = &d.parsed;
        row.push_bind(d.id.as_str())
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
    sql.push(after);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::{delivery, writer_connection};

    #[tokio::test]
    async fn a_batch_of_several_statements_commits_as_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = writer_connection(&dir).await;
        // 150 rows: three statements, BEGIN on the first and COMMIT on the last.
        let batch: Vec<NewDelivery> = (0..150).map(delivery).collect();
        append_and_commit(&mut conn, &batch, 150).await.unwrap();
        assert_eq!(backlog(&mut conn).await.unwrap(), 150);
        append_and_commit(&mut conn, &batch[..1], 151)
            .await
            .unwrap();
        assert_eq!(backlog(&mut conn).await.unwrap(), 151);
    }

    #[tokio::test]
    async fn a_failed_batch_stores_nothing_and_leaves_no_transaction_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = writer_connection(&dir).await;
        let batch: Vec<NewDelivery> = (0..100).map(delivery).collect();
        // The 81st row, in the second statement, is refused.
        sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON inbox WHEN NEW.received_at = 80 BEGIN SELECT RAISE(ABORT, 'refused'); END")
            .execute(&mut conn)
            .await
            .unwrap();
        let error = append_and_commit(&mut conn, &batch, 100).await.unwrap_err();
        assert!(error.to_string().contains("refused"), "{error}");
        assert_eq!(
            backlog(&mut conn).await.unwrap(),
            0,
            "the first 64 rows were rolled back"
        );
        sqlx::query("DROP TRIGGER refuse")
            .execute(&mut conn)
            .await
            .unwrap();
        append_and_commit(&mut conn, &batch, 100).await.unwrap();
        assert_eq!(backlog(&mut conn).await.unwrap(), 100);
    }
}
