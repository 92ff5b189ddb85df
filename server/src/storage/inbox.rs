//! The inbox table: the writer's cheap, durable append, and the SQL that moves inbox rows into
//! `events` and `deliveries` (grouping duplicates, indexing) entirely inside SQLite.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::writer::NewDelivery;

/// Statement sizes a batch is cut into, so the prepared-statement cache stays small.
const CHUNK_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// Appends `deliveries` to the inbox (no secondary index: the cheapest durable write).
pub async fn append(conn: &mut SqliteConnection, deliveries: &[NewDelivery]) -> sqlx::Result<()> {
    for chunk in chunks(deliveries) {
        insert_statement(chunk).build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// How many deliveries wait in the inbox.
pub async fn backlog(conn: &mut SqliteConnection) -> sqlx::Result<u64> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox")
        .fetch_one(conn)
        .await?;
    Ok(count.max(0) as u64)
}

/// Moves the `limit` oldest inbox rows (all of them with `None`) into `sources`, `events` and
/// `deliveries`, oldest first so an event's first delivery defines it, and returns how many
/// moved. Runs inside the caller's transaction.
pub async fn index(conn: &mut SqliteConnection, limit: Option<u64>) -> sqlx::Result<u64> {
    let nth_seq: Option<i64> = match limit {
        None => None,
        Some(n) => {
            sqlx::query_scalar("SELECT seq FROM inbox ORDER BY seq LIMIT 1 OFFSET $1")
                .bind(n.saturating_sub(1) as i64)
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    let last_seq = match nth_seq {
        Some(seq) => Some(seq),
        None => {
            sqlx::query_scalar("SELECT MAX(seq) FROM inbox")
                .fetch_one(&mut *conn)
                .await?
        }
    };
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

/// Cuts `items` into runs whose lengths come from [`CHUNK_SIZES`].
fn chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = CHUNK_SIZES.into_iter().find(|s| *s <= items.len())?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

fn insert_statement(chunk: &[NewDelivery]) -> QueryBuilder<'_, Sqlite> {
    let mut sql = QueryBuilder::<Sqlite>::new(
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
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_into_cacheable_sizes() {
        let items: Vec<u32> = (0..343).collect();
        let sizes: Vec<usize> = chunks(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, [256, 64, 16, 4, 1, 1, 1]);
        assert_eq!(chunks::<u32>(&[]).count(), 0);
    }
}
