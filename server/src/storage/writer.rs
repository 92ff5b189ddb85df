//! The writer: the only path that writes to the database, and the one place that keeps the
//! storage contract every backend shares: **a delivery is acknowledged only once the transaction
//! that appends it has committed durably, and that commit gives it its `seq`**, increasing in
//! commit order.
//!
//! One task owns the writer's connection (sqlx runs each SQLite connection on a thread of its
//! own, so no database work runs on the async runtime's workers). It takes everything queued, up
//! to [`MAX_BATCH`] deliveries or [`MAX_BATCH_BYTES`] (a group commit), appends it in one
//! transaction, commits with `synchronous=FULL` (one sync of the WAL for the whole batch), and
//! only then answers every sender with its delivery's `seq`. If the commit fails (a full disk,
//! an I/O error), nothing in the batch was acknowledged: every sender gets the error (and a 503:
//! they retry), [`Health`] says why, and the next batch simply tries again, so ingestion resumes
//! by itself once the disk has room.
//!
//! Indexing (grouping deliveries into events, see `index`) follows the appends, in chunks, when
//! the writer's reading of its load says so (`pace`).
//!
//! Once a batch is acknowledged, what was committed (without the bodies) goes to the [`Feed`],
//! if there is one: the live stream. It never waits for it: a feed that is full misses the
//! batch, and its reader sees the gap in `seq`.

use std::{path::PathBuf, sync::Arc, time::Duration};

use sqlx::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use super::{
    WriterParts,
    append::{self, Framing},
    checkpoint,
    health::{Health, has_room},
    index,
    pace::{INDEX_CHUNK, Pace, Seqs},
};
use crate::delivery::{Committed, NewDelivery};

/// The most deliveries one transaction appends.
pub const MAX_BATCH: usize = 512;
/// The most bytes of deliveries one transaction appends (one delivery larger than this still
/// goes alone).
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// How many deliveries may wait for the writer before ingestion waits for room.
const QUEUE_DEPTH: usize = 2048;
/// How long the queue must stay empty before the writer indexes a backlog on its own.
const IDLE: Duration = Duration::from_millis(5);
/// How long the writer waits before trying to write again after a failed write, with nothing
/// queued.
const RETRY: Duration = Duration::from_secs(1);
/// How many committed batches may wait for the feed's reader before the writer drops them.
const FEED_DEPTH: usize = 1024;

/// What one commit acknowledged, as the feed gets it.
#[derive(Debug)]
pub struct CommittedBatch {
    /// The deliveries, in `seq` order.
    pub deliveries: Vec<Committed>,
    /// Every delivery up to this `seq` was listed once the commit returned.
    pub indexed_seq: i64,
}

/// Where the writer sends what each commit acknowledged, in commit order.
pub type Feed = mpsc::Sender<CommittedBatch>;

/// The reading end of a [`Feed`].
pub type FeedReader = mpsc::Receiver<CommittedBatch>;

/// A feed and its reader.
pub fn feed() -> (Feed, FeedReader) {
    mpsc::channel(FEED_DEPTH)
}

/// Why a delivery could not be stored; it was not acknowledged, so the sender will retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the database refused the write: {0}")]
    Database(String),
    #[error("the writer has stopped")]
    Stopped,
}

/// Answers a sender with its delivery's `seq` once committed.
type Stored = oneshot::Sender<Result<i64, WriteError>>;

/// What the writer is asked to do.
enum Job {
    /// Append a delivery; answer once it is durable. (Boxed: a queue slot is a pointer.)
    Store(Box<NewDelivery>, Stored),
    /// A reader wants what is acknowledged listed: index a chunk now, then answer with how many
    /// deliveries are still not indexed.
    CatchUp(oneshot::Sender<u64>),
}

/// The handle ingestion and readers use. Cloning it is cheap; the writer stops once every
/// handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    health: Arc<Health>,
}

impl Writer {
    /// Starts the writer task on `connection`; it finishes once every handle is dropped and
    /// every queued delivery is answered.
    /// `parts` come from `storage::open`.
    pub async fn spawn(parts: WriterParts) -> sqlx::Result<(Self, tokio::task::JoinHandle<()>)> {
        Self::spawn_with_feed(parts, None).await
    }

    /// As [`Writer::spawn`], sending what each commit acknowledged to `feed`.
    pub async fn spawn_with_feed(
        parts: WriterParts,
        feed: Option<Feed>,
    ) -> sqlx::Result<(Self, tokio::task::JoinHandle<()>)> {
        let WriterParts {
            mut connection,
            checkpoint_connection,
            path: database,
        } = parts;
        let seqs = Seqs {
            last: append::last_seq(&mut connection).await?,
            indexed: index::indexed_seq(&mut connection).await?,
        };
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let health = Arc::new(Health::default());
        let checkpointer = checkpoint::spawn(checkpoint_connection);
        let task = tokio::spawn(write_until_stopped(
            Output {
                connection,
                database,
                health: Arc::clone(&health),
                feed,
            },
            queue,
            seqs,
            checkpointer,
        ));
        Ok((Self { jobs, health }, task))
    }

    /// Stores `delivery` and returns its `seq` once it is committed durably.
    pub async fn store(&self, delivery: NewDelivery) -> Result<i64, WriteError> {
        let (stored, answer) = oneshot::channel();
        self.jobs
            .send(Job::Store(Box::new(delivery), stored))
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Asks the writer to index what is acknowledged (a chunk of it, after a long burst) and
    /// waits up to `wait` for it; returns how many deliveries are still not indexed, or `None`
    /// when the wait ran out (the writer is busy with a burst).
    pub async fn catch_up(&self, wait: Duration) -> Option<u64> {
        let (done, answer) = oneshot::channel();
        let asked = async {
            self.jobs.send(Job::CatchUp(done)).await.ok()?;
            answer.await.ok()
        };
        tokio::time::timeout(wait, asked).await.ok().flatten()
    }

    /// Why the writer cannot store deliveries right now (the database refused the last write,
    /// or the writer has stopped), or `None` when it can.
    pub fn failure(&self) -> Option<String> {
        if self.jobs.is_closed() {
            return Some(WriteError::Stopped.to_string());
        }
        self.health.failure()
    }
}

/// One transaction's work: the deliveries to append (with their senders) and the readers
/// waiting for indexing.
#[derive(Default)]
struct Batch {
    deliveries: Vec<NewDelivery>,
    senders: Vec<Stored>,
    readers: Vec<oneshot::Sender<u64>>,
    bytes: usize,
    /// Write even when there is nothing to append or index: a probe of whether the database
    /// takes writes again.
    probe: bool,
}

impl Batch {
    fn push(&mut self, job: Job) {
        match job {
            Job::Store(delivery, stored) => {
                self.bytes += delivery.weight();
                self.deliveries.push(*delivery);
                self.senders.push(stored);
            }
            Job::CatchUp(reader) => self.readers.push(reader),
        }
    }

    fn has_room(&self) -> bool {
        self.deliveries.len() < MAX_BATCH && self.bytes < MAX_BATCH_BYTES
    }

    /// `first`, and whatever else is queued, while there is room.
    fn gather(first: Job, queue: &mut mpsc::Receiver<Job>) -> Self {
        let mut batch = Self::default();
        batch.push(first);
        while batch.has_room() {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        batch
    }
}

/// Where the writer's work goes: the database, its health, and the feed.
struct Output {
    connection: SqliteConnection,
    database: PathBuf,
    health: Arc<Health>,
    feed: Option<Feed>,
}

/// The writer task: gather, commit, answer; until every handle is gone.
async fn write_until_stopped(
    mut out: Output,
    mut queue: mpsc::Receiver<Job>,
    mut seqs: Seqs,
    (nudge, checkpointer): (checkpoint::Nudge, tokio::task::JoinHandle<()>),
) {
    let mut pace = Pace::new(seqs);
    loop {
        // A write that failed is tried again on a timer, even with nothing queued, so that
        // /healthz turns healthy by itself once the disk has room (a load balancer that trusts
        // it would otherwise send nothing that could clear it). A backlog is indexed once the
        // queue is quiet.
        let failing = out.health.is_failing();
        let quiet = if failing {
            Some(RETRY)
        } else if seqs.backlog() > 0 {
            Some(IDLE)
        } else {
            None
        };
        let next = queue.recv();
        let received = match quiet {
            None => next.await,
            Some(quiet) => match tokio::time::timeout(quiet, next).await {
                Ok(received) => received,
                Err(_quiet) => {
                    if failing && !has_room(&out.database).await {
                        continue;
                    }
                    let batch = Batch {
                        probe: failing,
                        ..Batch::default()
                    };
                    let before = seqs;
                    seqs = commit(&mut out, batch, seqs, INDEX_CHUNK).await;
                    pace.committed(before, seqs, 0);
                    continue;
                }
            },
        };
        let Some(first) = received else {
            break; // every handle is gone, and everything queued is answered
        };
        let batch = Batch::gather(first, &mut queue);
        let appended = batch.deliveries.len();
        let index_limit = pace.index_limit(appended, !batch.readers.is_empty(), seqs);
        let before = seqs;
        seqs = commit(&mut out, batch, seqs, index_limit).await;
        pace.committed(before, seqs, appended);
        nudge.committed();
    }
    drop(nudge);
    let _ = checkpointer.await;
    // What is not indexed yet stays for the next start: the deliveries are committed. Closed
    // here, before the server lets go of the database's lock.
    if let Err(e) = sqlx::Connection::close(out.connection).await {
        tracing::warn!(error = %e, "closing the writer's database connection");
    }
}

/// Appends `batch`'s deliveries and indexes up to `index_limit` of the oldest not indexed, in
/// one transaction; answers its senders and readers, then feeds what it committed; returns
/// where the sequence stands.
async fn commit(out: &mut Output, batch: Batch, seqs: Seqs, index_limit: i64) -> Seqs {
    let Output {
        connection: conn,
        health,
        feed,
        ..
    } = out;
    let first = seqs.last + 1;
    let last = seqs.last + batch.deliveries.len() as i64;
    let index_to = last.min(seqs.indexed + index_limit);
    let written = transaction(
        conn,
        &batch.deliveries,
        first,
        (seqs.indexed, index_to),
        batch.probe,
    )
    .await;
    let now = match written {
        Ok(()) => {
            health.set(None);
            for (seq, sender) in (first..).zip(batch.senders) {
                let _ = sender.send(Ok(seq));
            }
            let now = Seqs {
                last,
                indexed: index_to.max(seqs.indexed),
            };
            if let Some(feed) = feed.as_ref().filter(|_| !batch.deliveries.is_empty()) {
                let committed = (first..).zip(batch.deliveries);
                let deliveries = committed.map(|(seq, d)| d.into_committed(seq)).collect();
                // Full: the reader is behind, and will see the gap in `seq`.
                let _ = feed.try_send(CommittedBatch {
                    deliveries,
                    indexed_seq: now.indexed,
                });
            }
            now
        }
        Err(e) => {
            tracing::error!(error = %e, deliveries = batch.senders.len(), "the database refused a write");
            let error = WriteError::Database(e.to_string());
            health.set(Some(error.to_string()));
            for sender in batch.senders {
                let _ = sender.send(Err(error.clone()));
            }
            seqs
        }
    };
    for reader in batch.readers {
        let _ = reader.send(now.backlog());
    }
    now
}

/// `BEGIN`, the appends, the indexing of `after < seq <= index_to`, `COMMIT`; on any failure a
/// `ROLLBACK`, so the connection is never left inside a transaction. (The writer issues these
/// itself rather than through sqlx's `Transaction`: a COMMIT that fails on a full disk has already
/// been rolled back by SQLite, and sqlx would then count a transaction that is not there.) With
/// nothing to append or index, it writes nothing, unless `probe` asks for a write of one page.
async fn transaction(
    conn: &mut SqliteConnection,
    deliveries: &[NewDelivery],
    first_seq: i64,
    (after, index_to): (i64, i64),
    probe: bool,
) -> sqlx::Result<()> {
    let indexing = index_to > after;
    if deliveries.is_empty() && !indexing && !probe {
        return Ok(());
    }
    let written = if !indexing && !deliveries.is_empty() {
        // A burst's commits: appends only, BEGIN and COMMIT in the same texts.
        append::append(conn, deliveries, first_seq, Framing::OwnTransaction).await
    } else {
        indexing_transaction(conn, deliveries, first_seq, (after, index_to)).await
    };
    if written.is_err() {
        // Fails quietly when SQLite has rolled back already, or never began.
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    written
}

/// The appends, then the indexing of `after < seq <= index_to` (or, with nothing to index, a
/// write of one page), in one transaction.
async fn indexing_transaction(
    conn: &mut SqliteConnection,
    deliveries: &[NewDelivery],
    first_seq: i64,
    (after, index_to): (i64, i64),
) -> sqlx::Result<()> {
    let indexing = index_to > after;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    append::append(conn, deliveries, first_seq, Framing::Inside).await?;
    if indexing {
        index::index(conn, after, index_to).await?;
    } else if deliveries.is_empty() {
        index::touch(conn).await?;
    }
    sqlx::query("COMMIT").execute(&mut *conn).await.map(drop)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::storage::testing::{delivery, open};

    async fn count(store: &super::super::Store, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn each_sender_gets_its_seq_once_committed_in_commit_order() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(&dir).await;
        let (writer, _task) = Writer::spawn(opened.writer).await.unwrap();
        for n in 1..=3 {
            assert_eq!(writer.store(delivery(n)).await.unwrap(), n as i64);
        }
        let stores = (4..104).map(|n| {
            let writer = writer.clone();
            tokio::spawn(async move { (n, writer.store(delivery(n)).await.unwrap()) })
        });
        let mut seqs = Vec::new();
        for store in stores {
            let (n, seq) = store.await.unwrap();
            let stored: i64 = sqlx::query_scalar("SELECT seq FROM deliveries WHERE id = $1")
                .bind(format!("delivery-{n}"))
                .fetch_one(&opened.store.pool)
                .await
                .unwrap();
            assert_eq!(stored, seq, "the answer names the seq that was stored");
            seqs.push(seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (4..104).collect::<Vec<i64>>(), "no gap, no repeat");
    }

    #[tokio::test]
    async fn a_delivery_nobody_waits_behind_is_listed_when_it_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(&dir).await;
        let (writer, _task) = Writer::spawn(opened.writer).await.unwrap();
        writer.store(delivery(1)).await.unwrap();
        assert_eq!(count(&opened.store, "SELECT COUNT(*) FROM events").await, 1);
        assert_eq!(opened.store.catch_up(&writer).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_backlog_left_by_a_burst_is_indexed_in_chunks_a_reader_can_ask_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut opened = open(&dir).await;
        // 3,000 deliveries appended without indexing, as during a burst, then a restart.
        let burst: Vec<NewDelivery> = (1..=3000).map(delivery).collect();
        transaction(&mut opened.writer.connection, &burst, 1, (0, 0), false)
            .await
            .unwrap();
        let (writer, _task) = Writer::spawn(opened.writer).await.unwrap();
        let left = writer.catch_up(Duration::from_secs(30)).await.unwrap();
        assert!(
            left < 3000,
            "a reader's catch-up indexes a chunk ({left} left)"
        );
        let pending = crate::storage::index::pending(&opened.store.pool)
            .await
            .unwrap();
        assert_eq!(pending, left, "the answer is what is still pending");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while writer.catch_up(Duration::from_secs(5)).await != Some(0) {
            assert!(
                std::time::Instant::now() < deadline,
                "the backlog never emptied"
            );
        }
        let listed = count(&opened.store, "SELECT COUNT(*) FROM event_deliveries").await;
        assert_eq!(listed, 3000);
        // New deliveries follow the burst's numbering.
        assert_eq!(writer.store(delivery(3001)).await.unwrap(), 3001);
    }

    #[tokio::test]
    async fn after_a_refused_write_the_writer_probes_and_turns_healthy_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(&dir).await;
        for refusal in [
            "CREATE TRIGGER refuse BEFORE INSERT ON deliveries BEGIN SELECT RAISE(ABORT, 'no room'); END",
            "CREATE TRIGGER refuse_probe BEFORE UPDATE ON indexing BEGIN SELECT RAISE(ABORT, 'no room'); END",
        ] {
            sqlx::query(refusal)
                .execute(&opened.store.pool)
                .await
                .unwrap();
        }
        let (writer, _task) = Writer::spawn(opened.writer).await.unwrap();
        writer.store(delivery(1)).await.unwrap_err();
        tokio::time::sleep(RETRY * 2).await;
        assert!(writer.failure().is_some(), "the probe was refused too");

        // The database takes writes again; nobody sends anything.
        sqlx::query("DROP TRIGGER refuse_probe")
            .execute(&opened.store.pool)
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + RETRY * 10;
        while writer.failure().is_some() {
            assert!(std::time::Instant::now() < deadline, "still failing");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_refused_commit_acknowledges_nothing_and_the_next_one_goes_through() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(&dir).await;
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON deliveries WHEN NEW.id = 'delivery-1' \
             BEGIN SELECT RAISE(ABORT, 'no room'); END",
        )
        .execute(&opened.store.pool)
        .await
        .unwrap();
        let (writer, _task) = Writer::spawn(opened.writer).await.unwrap();
        let error = writer.store(delivery(1)).await.unwrap_err();
        assert!(error.to_string().contains("no room"), "{error}");
        let failure = writer.failure().expect("the writer says why");
        assert!(failure.contains("no room"), "{failure}");
        assert_eq!(
            count(&opened.store, "SELECT COUNT(*) FROM deliveries").await,
            0
        );

        assert_eq!(
            writer.store(delivery(2)).await.unwrap(),
            1,
            "seq 1 was never given"
        );
        assert_eq!(writer.failure(), None);
        assert_eq!(count(&opened.store, "SELECT COUNT(*) FROM events").await, 1);
    }
}
