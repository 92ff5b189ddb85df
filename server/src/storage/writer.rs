//! The batching writer: the only task that writes. Ingestion hands it a delivery and waits;
//! the writer takes everything queued (up to [`MAX_BATCH`]), appends it to the inbox in one
//! transaction, and only after the commit answers every waiting sender. Under load, batches
//! grow by themselves, so one fsync covers many deliveries.
//!
//! Moving inbox rows into `events` and `deliveries` costs far more than the append (a random
//! page of the dedupe index per event). When nobody else is waiting and the inbox holds little,
//! the writer does it in the same transaction, so what was acknowledged is already listed.
//! Under sustained load it only appends, and moves the backlog in small chunks once the queue
//! has been quiet for `IDLE`, and at the next start for whatever a shutdown left there.
//! A reader's flush moves up to `READ_INDEX_LIMIT` rows first and is told how many remain.

use std::time::Duration;

use app::model::SignatureVerdict;
use bytes::Bytes;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::inbox;
use crate::{envelope::ParsedBody, sources::SourceSlug};

/// The most deliveries written in one transaction.
pub const MAX_BATCH: usize = 512;
/// How many deliveries may wait for the writer before ingestion waits for room.
const QUEUE_DEPTH: usize = 4096;
/// The largest inbox that is moved into the tables inside an acknowledging transaction.
const INLINE_INDEX_LIMIT: u64 = 512;
/// The largest batch that is moved into the tables before it is acknowledged: a bigger batch
/// means senders are queueing, and then the append alone goes first.
const INLINE_BATCH_LIMIT: u64 = 8;
/// The most inbox rows moved into the tables before a reader is answered (about 75 ms of work
/// here). A read after a long burst sees what is moved by then and how many are still waiting,
/// rather than holding up every sender behind it until the whole backlog is indexed.
const READ_INDEX_LIMIT: u64 = 2048;
/// How long the queue must stay empty before the writer works on the backlog.
const IDLE: Duration = Duration::from_millis(5);
/// Inbox rows moved per transaction while idle (small, so a new request waits little).
const IDLE_CHUNK: u64 = 256;

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
    pub(super) fn dedupe_key(&self) -> &str {
        self.parsed.event_id.as_deref().unwrap_or(&self.id)
    }
}

/// Why a delivery could not be stored; it was not acknowledged, so the sender will retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the database refused the write: {0}")]
    Database(String),
    #[error("the writer has stopped")]
    Stopped,
}

/// Answers a sender once their delivery is stored.
type Done = oneshot::Sender<Result<(), WriteError>>;
/// Answers a reader once the inbox has been moved, with how many deliveries are still in it.
type Flushed = oneshot::Sender<Result<u64, WriteError>>;

/// What the writer is asked to do.
#[expect(
    clippy::large_enum_variant,
    reason = "Store is nearly every job; boxing it would cost an allocation per delivery"
)]
enum Job {
    /// Store a delivery, then answer.
    Store(NewDelivery, Done),
    /// Move the inbox into the tables (up to [`READ_INDEX_LIMIT`] rows), then answer with what
    /// is left: a reader wants to see everything stored.
    Flush(Flushed),
}

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
    pub async fn store(&self, delivery: NewDelivery) -> Result<(), WriteError> {
        let (done, stored) = oneshot::channel();
        self.send(Job::Store(delivery, done), stored).await
    }

    /// Moves what was acknowledged so far into the tables readers query, and returns how many
    /// deliveries are still waiting (none, unless a burst left more than a read moves).
    pub async fn flush(&self) -> Result<u64, WriteError> {
        let (done, flushed) = oneshot::channel();
        self.send(Job::Flush(done), flushed).await
    }

    async fn send<T>(
        &self,
        job: Job,
        answer: oneshot::Receiver<Result<T, WriteError>>,
    ) -> Result<T, WriteError> {
        self.jobs.send(job).await.map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }
}

async fn run_until_stopped(mut connection: SqliteConnection, mut queue: mpsc::Receiver<Job>) {
    let mut backlog = inbox::backlog(&mut connection).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "could not read the inbox backlog");
        0
    });
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = if backlog > 0 {
            match tokio::time::timeout(IDLE, queue.recv_many(&mut batch, MAX_BATCH)).await {
                Ok(received) => received,
                Err(_quiet) => {
                    backlog = index_while_idle(&mut connection, &queue, backlog).await;
                    continue;
                }
            }
        } else {
            queue.recv_many(&mut batch, MAX_BATCH).await
        };
        if received == 0 {
            break; // every handle is gone and the queue is drained
        }
        let (mut deliveries, mut senders, mut readers) = (Vec::new(), Vec::new(), Vec::new());
        for job in batch.drain(..) {
            match job {
                Job::Store(delivery, done) => {
                    deliveries.push(delivery);
                    senders.push(done);
                }
                Job::Flush(flushed) => readers.push(flushed),
            }
        }
        let appended = deliveries.len() as u64;
        let index_now = !readers.is_empty()
            || (appended <= INLINE_BATCH_LIMIT
                && queue.is_empty()
                && backlog + appended <= INLINE_INDEX_LIMIT);
        let outcome = match appended + backlog {
            0 => Ok(0),
            _ => write_batch(&mut connection, &deliveries, index_now).await,
        };
        let outcome = match outcome {
            Ok(moved) => {
                backlog = (backlog + appended).saturating_sub(moved);
                Ok(backlog)
            }
            Err(e) => {
                tracing::error!(error = %e, deliveries = deliveries.len(), "a batch could not be stored");
                Err(WriteError::Database(e.to_string()))
            }
        };
        for sender in senders {
            let _ = sender.send(outcome.clone().map(|_| ()));
        }
        for reader in readers {
            let _ = reader.send(outcome.clone());
        }
    }
    if backlog > 0 {
        // Durable already; moving it now would hold up the exit. The next start does it.
        tracing::info!(
            backlog,
            "deliveries left in the inbox; they are indexed at the next start"
        );
    }
    let _ = connection.close().await;
    tracing::debug!("the writer has stored everything it was given");
}

/// Appends a batch, and when `index_now` also moves the oldest inbox rows (up to
/// [`READ_INDEX_LIMIT`]) into the tables, in one transaction; returns how many rows moved.
#[tracing::instrument(skip_all, fields(deliveries = deliveries.len(), index_now))]
async fn write_batch(
    connection: &mut SqliteConnection,
    deliveries: &[NewDelivery],
    index_now: bool,
) -> sqlx::Result<u64> {
    if !index_now {
        inbox::append_and_commit(connection, deliveries).await?;
        return Ok(0);
    }
    let mut tx = connection.begin().await?;
    inbox::append(&mut tx, deliveries).await?;
    let moved = inbox::index(&mut tx, READ_INDEX_LIMIT).await?;
    tx.commit().await?;
    Ok(moved)
}

/// Moves the backlog in small transactions while nothing is queued; returns what is left.
/// Stops when the server is stopping (every handle dropped): the next start does the rest.
async fn index_while_idle(
    connection: &mut SqliteConnection,
    queue: &mpsc::Receiver<Job>,
    mut backlog: u64,
) -> u64 {
    while backlog > 0 && queue.is_empty() && !queue.is_closed() {
        match index_chunk(connection, IDLE_CHUNK).await {
            Ok(0) => return 0,
            Ok(moved) => backlog = backlog.saturating_sub(moved),
            Err(e) => {
                tracing::error!(error = %e, "the inbox could not be moved into the tables");
                break;
            }
        }
    }
    backlog
}

async fn index_chunk(connection: &mut SqliteConnection, limit: u64) -> sqlx::Result<u64> {
    let mut tx = connection.begin().await?;
    let moved = inbox::index(&mut tx, limit).await?;
    tx.commit().await?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::{delivery, writer_connection};

    async fn count(conn: &mut SqliteConnection, table: &str) -> u64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let n: i64 = sqlx::query_scalar(&sql).fetch_one(conn).await.unwrap();
        n as u64
    }

    #[tokio::test]
    async fn a_read_after_a_long_burst_moves_part_of_the_backlog_and_says_how_much_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = writer_connection(&dir).await;
        // What a long burst leaves: more acknowledged deliveries in the inbox than a read moves.
        let burst = READ_INDEX_LIMIT + 700;
        let deliveries: Vec<NewDelivery> = (0..burst as usize).map(delivery).collect();
        inbox::append_and_commit(&mut conn, &deliveries)
            .await
            .unwrap();

        let (writer, task) = Writer::spawn(conn);
        let pending = writer.flush().await.unwrap();
        // The first read moves READ_INDEX_LIMIT rows; idle indexing may have moved a chunk
        // before it.
        assert!(pending > 0, "a read moves at most {READ_INDEX_LIMIT} rows");
        assert!(pending <= burst - READ_INDEX_LIMIT, "{pending}");
        let mut reads = 1;
        while writer.flush().await.unwrap() > 0 {
            reads += 1;
            assert!(reads < 10, "the backlog shrinks with every read");
        }
        drop(writer);
        task.await.unwrap();

        let mut conn = writer_connection(&dir).await;
        assert_eq!(inbox::backlog(&mut conn).await.unwrap(), 0);
        assert_eq!(count(&mut conn, "deliveries").await, burst);
        assert_eq!(count(&mut conn, "events").await, burst);
    }
}
