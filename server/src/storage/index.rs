//! Indexing: grouping acknowledged deliveries into the events the list shows, in `seq` order,
//! all in SQL inside the writer's transaction. Delivery rows themselves are never changed.

use sqlx::{SqliteConnection, SqliteExecutor};

/// Indexes the deliveries with `after < seq <= up_to`, oldest first, so that an event's first
/// delivery defines it (its body, its verdict); and records `up_to` as indexed.
///
/// A later delivery of a known event (same source and dedupe key) counts against it: the
/// delivery count, the last receipt, how many deliveries carried a valid signature, whether the
/// verdicts disagree, and whether a body differs from the first.
pub async fn index(conn: &mut SqliteConnection, after: i64, up_to: i64) -> sqlx::Result<()> {
    sqlx::query(INDEX_RANGE)
        .bind(after)
        .bind(up_to)
        .execute(conn)
        .await
        .map(drop)
}

const INDEX_RANGE: &str = "\
INSERT INTO sources (name, created_at)
    SELECT source, MIN(received_at) FROM deliveries WHERE seq > $1 AND seq <= $2 GROUP BY source
    ON CONFLICT DO NOTHING;
INSERT INTO events (source, dedupe_key, event_id, type, version, date_occurred, occurred_at,
                    body_kind, parse_error, first_seq, body_sha256, received_at, last_received_at,
                    signature, valid_deliveries)
    SELECT source, dedupe_key, event_id, type, version, date_occurred, occurred_at,
           body_kind, parse_error, seq, body_sha256, received_at, received_at,
           signature, signature = 'valid'
    FROM deliveries WHERE seq > $1 AND seq <= $2 ORDER BY seq
    ON CONFLICT (source, dedupe_key) DO UPDATE SET
        delivery_count = events.delivery_count + 1,
        last_received_at = MAX(events.last_received_at, excluded.received_at),
        valid_deliveries = events.valid_deliveries + excluded.valid_deliveries,
        verdicts_differ = events.verdicts_differ OR events.signature <> excluded.signature,
        body_differs = events.body_differs OR events.body_sha256 <> excluded.body_sha256;
INSERT INTO event_deliveries (event_key, seq)
    SELECT e.key, d.seq
    FROM deliveries d JOIN events e ON e.source = d.source AND e.dedupe_key = d.dedupe_key
    WHERE d.seq > $1 AND d.seq <= $2;
UPDATE indexing SET indexed_seq = $2;";

/// Rewrites the indexing state as it is: a write of one page, to learn whether the database
/// takes writes again after a failure.
pub async fn touch(conn: &mut SqliteConnection) -> sqlx::Result<()> {
    sqlx::query("UPDATE indexing SET indexed_seq = indexed_seq")
        .execute(conn)
        .await
        .map(drop)
}

/// The `seq` up to which every delivery is indexed.
pub async fn indexed_seq(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT indexed_seq FROM indexing")
        .fetch_one(conn)
        .await
}

/// How many acknowledged deliveries are not indexed yet.
pub async fn pending<'e>(db: impl SqliteExecutor<'e>) -> sqlx::Result<u64> {
    let pending: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(seq), 0) - (SELECT indexed_seq FROM indexing) FROM deliveries",
    )
    .fetch_one(db)
    .await?;
    Ok(pending.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use app::model::SignatureVerdict;
    use sqlx::Connection;

    use super::*;
    use crate::storage::{
        append::{Framing, append},
        testing,
    };

    #[tokio::test]
    async fn an_event_keeps_its_first_deliverys_verdict_and_counts_the_valid_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = testing::open(&dir).await.writer.connection;
        // evt_1: a forged first delivery, then a genuine retry with another body; evt_2: alone.
        let mut forged = testing::delivery(1);
        forged.signature = SignatureVerdict::Invalid;
        let mut genuine = testing::delivery(1);
        genuine.id = "delivery-1-retry".into();
        genuine.signature = SignatureVerdict::Valid;
        genuine.body_sha256 = [7; 32];
        let mut other = testing::delivery(2);
        other.signature = SignatureVerdict::Valid;
        let mut tx = conn.begin().await.unwrap();
        append(&mut tx, &[forged, genuine, other], 1, Framing::Inside)
            .await
            .unwrap();
        index(&mut tx, 0, 3).await.unwrap();
        tx.commit().await.unwrap();

        let events: Vec<(String, i64, String, i64, bool, bool, i64)> = sqlx::query_as(
            "SELECT dedupe_key, delivery_count, signature, valid_deliveries, verdicts_differ, \
                    body_differs, first_seq FROM events ORDER BY key",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            events,
            [
                ("evt_1".into(), 2, "invalid".into(), 1, true, true, 1),
                ("evt_2".into(), 1, "valid".into(), 1, false, false, 3),
            ]
        );
        let links: Vec<(i64, i64)> =
            sqlx::query_as("SELECT event_key, seq FROM event_deliveries ORDER BY seq")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(links, [(1, 1), (1, 2), (2, 3)]);
        assert_eq!(indexed_seq(&mut conn).await.unwrap(), 3);
        assert_eq!(pending(&mut conn).await.unwrap(), 0);
    }
}
