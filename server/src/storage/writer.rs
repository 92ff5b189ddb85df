//! The batching writer: the only task that writes deliveries. Ingestion hands it a delivery and
//! waits; the writer takes everything queued (up to [`MAX_BATCH`]), writes it in one
//! transaction, and only after the commit answers every waiting sender. Under load, batches
//! grow by themselves, so one fsync covers many deliveries.

use std::collections::{HashMap, HashSet};

use app::model::SignatureVerdict;
use bytes::Bytes;
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::{envelope::ParsedBody, sources::SourceSlug};

/// The most deliveries written in one transaction.
pub const MAX_BATCH: usize = 512;
/// How many deliveries may wait for the writer before ingestion waits for room.
const QUEUE_DEPTH: usize = 4096;
/// Statement sizes a batch is cut into, so the prepared-statement cache stays small.
const CHUNK_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// A delivery as ingestion captured it, ready to store.
#[derive(Debug)]
pub struct NewDelivery {
    pub id: String,
    pub source: SourceSlug,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The headers in arrival order, as a JSON array of `{name, value}`.
    pub headers_json: String,
    pub remote_addr: Option<String>,
    pub received_at: i64,
    pub size: i64,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub body_sha256: [u8; 32],
    pub parsed: ParsedBody,
    pub signature: SignatureVerdict,
    pub signature_reason: Option<String>,
    pub rejected: bool,
    pub too_large: bool,
    pub response_status: u16,
}

impl NewDelivery {
    /// What groups deliveries into one event: the envelope id, or this delivery alone.
    fn dedupe_key(&self) -> &str {
        self.parsed.event_id.as_deref().unwrap_or(&self.id)
    }
}

/// Where a delivery landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub event_key: i64,
    /// True when this body differs from the first delivery of the same event.
    pub body_differs: bool,
}

/// Why a delivery could not be stored; it was not acknowledged, so the sender will retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the database refused the write: {0}")]
    Database(String),
    #[error("the writer has stopped")]
    Stopped,
}

type Job = (NewDelivery, oneshot::Sender<Result<Stored, WriteError>>);

/// The handle ingestion uses to store a delivery. Cloning it is cheap; the writer stops once
/// every handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on `connection`; it finishes when every handle is dropped.
    pub fn spawn(connection: SqliteConnection) -> (Self, tokio::task::JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let task = tokio::spawn(run_until_stopped(connection, queue));
        (Self { jobs }, task)
    }

    /// Stores `delivery` and returns once it is committed to disk.
    pub async fn store(&self, delivery: NewDelivery) -> Result<Stored, WriteError> {
        let (done, stored) = oneshot::channel();
        self.jobs
            .send((delivery, done))
            .await
            .map_err(|_| WriteError::Stopped)?;
        stored.await.map_err(|_| WriteError::Stopped)?
    }
}

async fn run_until_stopped(mut connection: SqliteConnection, mut queue: mpsc::Receiver<Job>) {
    let mut known_sources = HashSet::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (deliveries, waiters): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let outcome = write_batch(&mut connection, &deliveries, &mut known_sources).await;
        match outcome {
            Ok(stored) => {
                for (waiter, stored) in waiters.into_iter().zip(stored) {
                    let _ = waiter.send(Ok(stored));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, deliveries = deliveries.len(), "a batch could not be stored");
                let error = WriteError::Database(e.to_string());
                for waiter in waiters {
                    let _ = waiter.send(Err(error.clone()));
                }
            }
        }
    }
    let _ = connection.close().await;
    tracing::debug!("the writer has stored everything it was given");
}

#[tracing::instrument(skip_all, fields(deliveries = deliveries.len()))]
async fn write_batch(
    connection: &mut SqliteConnection,
    deliveries: &[NewDelivery],
    known_sources: &mut HashSet<String>,
) -> sqlx::Result<Vec<Stored>> {
    let mut tx = connection.begin().await?;
    let new_sources = insert_new_sources(&mut tx, deliveries, known_sources).await?;
    let mut events = HashMap::with_capacity(deliveries.len());
    for chunk in chunks(deliveries) {
        upsert_events(&mut tx, chunk, &mut events).await?;
    }
    let stored: Vec<Stored> = deliveries
        .iter()
        .map(|d| {
            let (event_key, first_sha256) = &events[&(d.source.as_str(), d.dedupe_key())];
            Stored {
                event_key: *event_key,
                body_differs: first_sha256.as_slice() != d.body_sha256,
            }
        })
        .collect();
    let mut offset = 0;
    for chunk in chunks(deliveries) {
        insert_deliveries(&mut tx, chunk, &stored[offset..offset + chunk.len()]).await?;
        offset += chunk.len();
    }
    tx.commit().await?;
    known_sources.extend(new_sources);
    Ok(stored)
}

/// Cuts `items` into runs whose lengths come from [`CHUNK_SIZES`].
fn chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = CHUNK_SIZES.into_iter().find(|s| *s <= items.len())?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

async fn insert_new_sources(
    tx: &mut Transaction<'_, Sqlite>,
    deliveries: &[NewDelivery],
    known: &HashSet<String>,
) -> sqlx::Result<Vec<String>> {
    let mut new: Vec<String> = Vec::new();
    for d in deliveries {
        let name = d.source.as_str();
        if !known.contains(name) && !new.iter().any(|n| n == name) {
            sqlx::query(
                "INSERT INTO sources (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(d.received_at)
            .execute(&mut **tx)
            .await?;
            new.push(name.to_owned());
        }
    }
    Ok(new)
}

/// Inserts each delivery's event, or counts the delivery against the event already there,
/// and records `(source, dedupe_key) -> (event key, first body's SHA-256)`.
async fn upsert_events<'a>(
    tx: &mut Transaction<'_, Sqlite>,
    chunk: &'a [NewDelivery],
    events: &mut HashMap<(&'a str, &'a str), (i64, Vec<u8>)>,
) -> sqlx::Result<()> {
    let mut query = QueryBuilder::<Sqlite>::new(
        "INSERT INTO events (source, dedupe_key, event_id, type, version, date_occurred, \
         occurred_at, body_kind, parse_error, body_sha256, received_at, last_received_at, signature) ",
    );
    query.push_values(chunk, |mut row, d| {
        let p = &d.parsed;
        row.push_bind(d.source.as_str())
            .push_bind(d.dedupe_key())
            .push_bind(p.event_id.as_deref())
            .push_bind(p.event_type.as_deref())
            .push_bind(p.version.as_deref())
            .push_bind(p.date_occurred.as_deref())
            .push_bind(p.occurred_at)
            .push_bind(p.kind.as_str())
            .push_bind(p.parse_error.as_deref())
            .push_bind(d.body_sha256.as_slice())
            .push_bind(d.received_at)
            .push_bind(d.received_at)
            .push_bind(d.signature.as_str());
    });
    query.push(
        " ON CONFLICT (source, dedupe_key) DO UPDATE SET \
           delivery_count = events.delivery_count + 1, \
           last_received_at = excluded.received_at, \
           signature = excluded.signature, \
           body_differs = events.body_differs OR events.body_sha256 <> excluded.body_sha256 \
         RETURNING key, source, dedupe_key, body_sha256",
    );
    // RETURNING comes back in no promised order: match rows to deliveries by name, borrowing
    // the names from the chunk so the map's keys live as long as the batch.
    let names: HashMap<(&str, &str), &'a NewDelivery> = chunk
        .iter()
        .map(|d| ((d.source.as_str(), d.dedupe_key()), d))
        .collect();
    for row in query.build().fetch_all(&mut **tx).await? {
        let (source, dedupe_key): (&str, &str) = (row.try_get(1)?, row.try_get(2)?);
        let d = names[&(source, dedupe_key)];
        events.insert(
            (d.source.as_str(), d.dedupe_key()),
            (row.try_get(0)?, row.try_get(3)?),
        );
    }
    Ok(())
}

async fn insert_deliveries(
    tx: &mut Transaction<'_, Sqlite>,
    chunk: &[NewDelivery],
    stored: &[Stored],
) -> sqlx::Result<()> {
    let mut query = QueryBuilder::<Sqlite>::new(
        "INSERT INTO deliveries (id, event_key, source, method, path, query, headers, remote_addr, \
         received_at, size, content_type, body, signature, signature_reason, rejected, too_large, \
         body_differs, response_status) ",
    );
    query.push_values(chunk.iter().zip(stored), |mut row, (d, s)| {
        row.push_bind(d.id.as_str())
            .push_bind(s.event_key)
            .push_bind(d.source.as_str())
            .push_bind(d.method.as_str())
            .push_bind(d.path.as_str())
            .push_bind(d.query.as_deref())
            .push_bind(d.headers_json.as_str())
            .push_bind(d.remote_addr.as_deref())
            .push_bind(d.received_at)
            .push_bind(d.size)
            .push_bind(d.content_type.as_deref())
            .push_bind(d.body.as_ref())
            .push_bind(d.signature.as_str())
            .push_bind(d.signature_reason.as_deref())
            .push_bind(d.rejected)
            .push_bind(d.too_large)
            .push_bind(s.body_differs)
            .push_bind(i32::from(d.response_status));
    });
    query.build().execute(&mut **tx).await?;
    Ok(())
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
