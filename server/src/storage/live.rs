//! The reads the live stream makes: which events a batch of deliveries belongs to (those
//! already listed), the deliveries after a cursor (straight from `deliveries`, so a resume never
//! waits for indexing), and what is acknowledged but not listed yet.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Row, Sqlite, sqlite::SqliteRow};

use super::{
    Store,
    events::{body_kind, verdict},
};
use crate::delivery::{Committed, EnvelopeFields, SourceName};

/// An event already listed, as the stream needs it to tell a retry from a new event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedEvent {
    pub key: i64,
    /// The `seq` of the event's first delivery.
    pub first_seq: i64,
    pub body_sha256: [u8; 32],
}

/// The events of some deliveries that are listed already, by `(source, dedupe key)`, and how far
/// indexing had got when they were read (every delivery up to it is in an event).
#[derive(Debug, Default)]
pub struct Listed {
    pub indexed_seq: i64,
    pub events: HashMap<(String, String), ListedEvent>,
}

/// The most deliveries one lookup names (two bound values each).
const LOOKUP_ROWS: usize = 500;

impl Store {
    /// The listed events of `deliveries`, read in one snapshot with the indexing position.
    pub async fn listed_events(&self, deliveries: &[Committed]) -> sqlx::Result<Listed> {
        let mut tx = self.pool.begin().await?;
        let indexed_seq: i64 = sqlx::query_scalar("SELECT indexed_seq FROM indexing")
            .fetch_one(&mut *tx)
            .await?;
        let mut events = HashMap::new();
        for chunk in deliveries.chunks(LOOKUP_ROWS) {
            let mut sql = QueryBuilder::<Sqlite>::new(
                "SELECT e.key, e.source, e.dedupe_key, e.first_seq, e.body_sha256 AS first_sha256 FROM (",
            );
            sql.push_values(chunk, |mut row, d| {
                row.push_bind(d.source.as_str()).push_bind(d.dedupe_key());
            });
            sql.push(
                ") AS wanted JOIN events e ON e.source = wanted.column1 \
                 AND e.dedupe_key = wanted.column2",
            );
            for row in sql.build().fetch_all(&mut *tx).await? {
                let key = (row.try_get("source")?, row.try_get("dedupe_key")?);
                events.insert(key, listed_event(&row)?);
            }
        }
        tx.commit().await?;
        Ok(Listed {
            indexed_seq,
            events,
        })
    }

    /// Up to `limit` deliveries with `seq > after`, in `seq` order, each with its event when
    /// that is listed.
    pub async fn deliveries_after(
        &self,
        after: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<(Committed, Option<ListedEvent>)>> {
        let rows = sqlx::query(DELIVERIES_AFTER)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let listed = match row.try_get::<Option<i64>, _>("key")? {
                    Some(_) => Some(listed_event(row)?),
                    None => None,
                };
                Ok((committed_from_row(row)?, listed))
            })
            .collect()
    }

    /// The deliveries acknowledged but not listed yet, oldest first: where the stream starts
    /// telling retries from new events.
    pub async fn unlisted_deliveries(&self) -> sqlx::Result<Vec<Committed>> {
        let rows = self
            .deliveries_after(self.indexed_seq().await?, i64::MAX)
            .await?;
        Ok(rows.into_iter().map(|(d, _)| d).collect())
    }

    /// The key of the event holding delivery `id`, once listed.
    pub async fn event_of_delivery(&self, id: &str) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT ed.event_key FROM deliveries d JOIN event_deliveries ed ON ed.seq = d.seq \
             WHERE d.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    /// The `seq` up to which every delivery is listed.
    pub async fn indexed_seq(&self) -> sqlx::Result<i64> {
        sqlx::query_scalar("SELECT indexed_seq FROM indexing")
            .fetch_one(&self.pool)
            .await
    }

    /// The `seq` of the last delivery committed (0 when there is none).
    pub async fn last_seq(&self) -> sqlx::Result<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM deliveries")
            .fetch_one(&self.pool)
            .await
    }
}

const DELIVERIES_AFTER: &str = "\
SELECT d.seq, d.id, d.source, d.event_id, d.type, d.version, d.date_occurred, d.occurred_at,
       d.body_kind, d.parse_error, d.received_at, d.size, d.body_sha256, d.signature,
       d.response_status, e.key, e.first_seq, e.body_sha256 AS first_sha256
FROM deliveries d
LEFT JOIN events e ON e.source = d.source AND e.dedupe_key = d.dedupe_key
WHERE d.seq > $1
ORDER BY d.seq
LIMIT $2";

fn sha256(row: &SqliteRow, column: &str) -> Result<[u8; 32], sqlx::Error> {
    let bytes: Vec<u8> = row.try_get(column)?;
    bytes
        .try_into()
        .map_err(|_| sqlx::Error::Decode(format!("{column} is not 32 bytes").into()))
}

fn listed_event(row: &SqliteRow) -> Result<ListedEvent, sqlx::Error> {
    Ok(ListedEvent {
        key: row.try_get("key")?,
        first_seq: row.try_get("first_seq")?,
        body_sha256: sha256(row, "first_sha256")?,
    })
}

fn committed_from_row(row: &SqliteRow) -> Result<Committed, sqlx::Error> {
    let source: String = row.try_get("source")?;
    let status: i32 = row.try_get("response_status")?;
    Ok(Committed {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        source: SourceName::parse(&source).map_err(|e| sqlx::Error::Decode(e.into()))?,
        envelope: EnvelopeFields {
            kind: body_kind(row)?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("type")?,
            version: row.try_get("version")?,
            date_occurred: row.try_get("date_occurred")?,
            occurred_at: row.try_get("occurred_at")?,
            parse_error: row.try_get("parse_error")?,
        },
        received_at: row.try_get("received_at")?,
        size: row.try_get("size")?,
        body_sha256: sha256(row, "body_sha256")?,
        signature: verdict(row, "signature")?,
        response_status: u16::try_from(status).unwrap_or_default(),
    })
}
