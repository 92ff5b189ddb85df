//! Appending deliveries to `deliveries`, inside the writer's transaction: one multi-row INSERT
//! per [`ROWS_PER_STATEMENT`] deliveries, each row numbered with its `seq`.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::delivery::NewDelivery;

/// The most rows one INSERT carries (26 values each: far below SQLite's limit on bound values);
/// more are cut into statements of this many rows.
const ROWS_PER_STATEMENT: usize = 64;

/// How many statement texts the writer's connection may keep prepared: one per row count up to
/// [`ROWS_PER_STATEMENT`], and a few for indexing and transactions.
pub const STATEMENT_CACHE_CAPACITY: usize = ROWS_PER_STATEMENT + 16;

/// Appends `deliveries`, numbered from `first_seq` on, in the caller's transaction.
pub async fn append(
    conn: &mut SqliteConnection,
    deliveries: &[NewDelivery],
    first_seq: i64,
) -> sqlx::Result<()> {
    for (i, chunk) in deliveries.chunks(ROWS_PER_STATEMENT).enumerate() {
        let chunk_first = first_seq + (i * ROWS_PER_STATEMENT) as i64;
        insert_statement(chunk, chunk_first)
            .build()
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// `INSERT INTO deliveries ... VALUES (...), ...` for `chunk`, numbered from `first_seq`.
fn insert_statement(chunk: &[NewDelivery], first_seq: i64) -> QueryBuilder<'_, Sqlite> {
    let mut sql = QueryBuilder::<Sqlite>::new(
        "INSERT INTO deliveries (seq, id, source, dedupe_key, event_id, type, version, \
         date_occurred, occurred_at, body_kind, parse_error, method, path, query, headers, \
         remote_addr, received_at, size, content_type, body_sha256, signature, \
         signature_reason, rejected, too_large, response_status, body) ",
    );
    let numbered = (first_seq..).zip(chunk);
    sql.push_values(numbered, |mut row, (seq, d)| {
        let e = &d.envelope;
        row.push_bind(seq)
            .push_bind(d.id.as_str())
            .push_bind(d.source.as_str())
            .push_bind(d.dedupe_key())
            .push_bind(e.event_id.as_deref())
            .push_bind(e.event_type.as_deref())
            .push_bind(e.version.as_deref())
            .push_bind(e.date_occurred.as_deref())
            .push_bind(e.occurred_at)
            .push_bind(e.kind.as_str())
            .push_bind(e.parse_error.as_deref())
            .push_bind(d.method.as_str())
            .push_bind(d.path.as_str())
            .push_bind(d.query.as_deref())
            .push_bind(d.headers_json.as_str())
            .push_bind(d.remote_addr.as_deref())
            .push_bind(d.received_at)
            .push_bind(d.size)
            .push_bind(d.content_type.as_deref())
            .push_bind(d.body_sha256.as_slice())
            .push_bind(d.signature.as_str())
            .push_bind(d.signature_reason.as_deref())
            .push_bind(d.rejected)
            .push_bind(d.too_large)
            .push_bind(i32::from(d.response_status))
            .push_bind(d.body.as_ref());
    });
    sql
}

/// The `seq` of the last delivery appended: the writer numbers the next ones after it. (With
/// AUTOINCREMENT, `sqlite_sequence` remembers it even once that delivery is gone.)
pub async fn last_seq(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'), 0), \
                    COALESCE((SELECT MAX(seq) FROM deliveries), 0))",
    )
    .fetch_one(conn)
    .await
}
