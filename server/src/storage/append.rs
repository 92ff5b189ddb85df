//! Appending deliveries to `deliveries`, inside the writer's transaction: one multi-row INSERT
//! per [`ROWS_PER_STATEMENT`] deliveries, each row numbered with its `seq`.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::delivery::NewDelivery;

/// The most rows one INSERT carries (26 values each: far below SQLite's limit on bound values);
/// more are cut into statements of this many rows.
const ROWS_PER_STATEMENT: usize = 64;

/// How many statement texts the writer's connection may keep prepared: per row count up to
/// [`ROWS_PER_STATEMENT`], an INSERT alone, with BEGIN, with COMMIT or with both; and a few for
/// indexing and transactions.
pub const STATEMENT_CACHE_CAPACITY: usize = 4 * ROWS_PER_STATEMENT + 16;

/// Whether an append runs inside the caller's transaction or is one of its own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Inside,
    /// `BEGIN IMMEDIATE` travels with the first INSERT and `COMMIT` with the last: each text
    /// handed to sqlx is a round trip to its worker thread, and in a burst the writer commits
    /// small batches back to back.
    OwnTransaction,
}

/// Appends `deliveries`, numbered from `first_seq` on, framed as `framing` says.
pub async fn append(
    conn: &mut SqliteConnection,
    deliveries: &[NewDelivery],
    first_seq: i64,
    framing: Framing,
) -> sqlx::Result<()> {
    let own = framing == Framing::OwnTransaction;
    let last = deliveries
        .len()
        .div_ceil(ROWS_PER_STATEMENT)
        .saturating_sub(1);
    for (i, chunk) in deliveries.chunks(ROWS_PER_STATEMENT).enumerate() {
        let chunk_first = first_seq + (i * ROWS_PER_STATEMENT) as i64;
        let begin = if own && i == 0 {
            "BEGIN IMMEDIATE; "
        } else {
            ""
        };
        let mut statement = insert_statement(begin, chunk, chunk_first);
        if own && i == last {
            statement.push("; COMMIT");
        }
        statement.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// `INSERT INTO deliveries ... VALUES (...), ...` for `chunk`, numbered from `first_seq`, after
/// `before`.
fn insert_statement<'a>(
    before: &str,
    chunk: &'a [NewDelivery],
    first_seq: i64,
) -> QueryBuilder<'a, Sqlite> {
    let mut sql = QueryBuilder::<Sqlite>::new(before);
    sql.push(
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
