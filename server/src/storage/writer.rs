//! The batching writer: the only task that writes. Ingestion hands it a delivery and waits;
//! the writer takes everything queued (up to [`MAX_BATCH`]), appends it to the inbox in one
//! transaction, and only after the commit answers every waiting sender. Under load, batches
//! grow by themselves, so one fsync covers many deliveries.
//!
//! Moving inbox rows into `events` and `deliveries` costs far more than the append (a random
//! page of the dedupe index per event). When nobody else is waiting and the inbox holds little,
//! the writer does it in the same transaction, so what was acknowledged is already listed.
//! Under sustained load it only appends, and moves the backlog in small chunks once the queue
//! has been quiet for [`IDLE`], and at the next start for whatever a shutdown left there.

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

type Done = oneshot::Sender<Result<(), WriteError>>;

/// What the writer is asked to do.
#[expect(
    clippy::large_enum_variant,
    reason = "Store is nearly every job; boxing it would cost an allocation per delivery"
)]
enum Job {
    /// Store a delivery, then answer.
    Store(NewDelivery, Done),
    /// Move the inbox into the tables, then answer: a reader wants to see everything stored.
    Flush(Done),
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

    /// Returns once every delivery acknowledged so far is in the tables readers query.
    pub async fn flush(&self) -> Result<(), WriteError> {
        let (done, flushed) = oneshot::channel();
        self.send(Job::Flush(done), flushed).await
    }

    async fn send(
        &self,
        job: Job,
        answer: oneshot::Receiver<Result<(), WriteError>>,
    ) -> Result<(), WriteError> {
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
        let (mut deliveries, mut waiters, mut flush) = (Vec::new(), Vec::new(), false);
        for job in batch.drain(..) {
            match job {
                Job::Store(delivery, done) => {
                    deliveries.push(delivery);
                    waiters.push(done);
                }
                Job::Flush(done) => {
                    flush = true;
                    waiters.push(done);
                }
            }
        }
        let appended = deliveries.len() as u64;
        let index_now = flush
            || (appended <= INLINE_BATCH_LIMIT
                && queue.is_empty()
                && backlog + appended <= INLINE_INDEX_LIMIT);
        let outcome = match appended + backlog {
            0 => Ok(()),
            _ => write_batch(&mut connection, &deliveries, index_now).await,
        };
        let answer = match outcome {
            Ok(()) => {
                backlog = if index_now { 0 } else { backlog + appended };
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, deliveries = deliveries.len(), "a batch could not be stored");
                Err(WriteError::Database(e.to_string()))
            }
        };
        for waiter in waiters {
            let _ = waiter.send(answer.clone());
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

/// Appends a batch, and moves the inbox into the tables too when `index_now`, in one transaction.
#[tracing::instrument(skip_all, fields(deliveries = deliveries.len(), index_now))]
async fn write_batch(
    connection: &mut SqliteConnection,
    deliveries: &[NewDelivery],
    index_now: bool,
) -> sqlx::Result<()> {
    if !index_now {
        return inbox::append_and_commit(connection, deliveries).await;
    }
    let mut tx = connection.begin().await?;
    inbox::append(&mut tx, deliveries).await?;
    inbox::index(&mut tx, None).await?;
    tx.commit().await
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
    let moved = inbox::index(&mut tx, Some(limit)).await?;
    tx.commit().await?;
    Ok(moved)
}
