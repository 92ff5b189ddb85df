//! The writer: the only path that writes, in two stages.
//!
//! 1. **The log thread** takes everything queued (up to [`MAX_BATCH`], each delivery already
//!    encoded by its sender as a [`Record`]), appends it to the
//!    [delivery log](super::delivery_log) with one write and one `fdatasync`, and only then
//!    answers every waiting sender. Under load, batches grow by themselves, so one sync covers
//!    many deliveries. It tells the apply task where in the log each batch is.
//! 2. **The apply task** reads the batches back from the log and appends them to the inbox
//!    table, one row per log batch holding the log's own encoding of its deliveries, with
//!    `synchronous=NORMAL`: the log has made them durable already. Under a light load it does so
//!    at once; during a burst the batches wait in the log ([`Deferred`]), and SQLite takes them
//!    once the queue is quiet for `IDLE`, when a reader asks, or when the burst has filled half
//!    the log (then it catches up while the burst goes on). Every quarter of the log's size it
//!    commits once with `synchronous=FULL` and opens the log's [`Gate`] that far, so the ring
//!    may overwrite what SQLite now keeps for good.
//!
//! Moving the inbox into `events` and `deliveries` costs far more than the append (decoding, and a
//! random page of the dedupe index per event). When nobody else is waiting and the inbox holds
//! little, the apply task does it in the same transaction, so what was acknowledged is listed at
//! once. Under load it only appends, and moves the backlog in chunks once the queue has been quiet
//! for `IDLE`, at least one chunk every `CATCH_UP_EVERY` while deliveries keep coming, and at the
//! next start whatever a shutdown left there. A reader's flush travels through both stages behind
//! every delivery acknowledged before it, takes everything waiting in the log into the inbox,
//! moves about `READ_INDEX_LIMIT` deliveries, and is told how many remain.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use app::model::SignatureVerdict;
use bytes::Bytes;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::{
    delivery_log::{
        DeliveryLog, EncodedBatch, Gate, LoggedBatch, Record, RecordBuffers, read_batches,
    },
    direct_io::AlignedBuffer,
    inbox,
};
use crate::{envelope::ParsedBody, sources::SourceSlug};

/// The most deliveries the log thread takes at once.
pub const MAX_BATCH: usize = 512;
/// How many deliveries may wait for the writer before ingestion waits for room.
const QUEUE_DEPTH: usize = 4096;
/// The largest inbox that is moved into the tables in the same transaction as an append.
const INLINE_INDEX_LIMIT: u64 = 512;
/// The largest append that is moved into the tables at once: a bigger one means senders are
/// queueing, and then the append alone goes first.
const INLINE_BATCH_LIMIT: u64 = 8;
/// About how many deliveries are moved into the tables before a reader is answered (about 75 ms of
/// work here). A read after a long burst sees what is moved by then and how many are still waiting,
/// rather than holding up every sender behind it until the whole backlog is indexed.
const READ_INDEX_LIMIT: u64 = 2048;
/// How long the queue must stay empty before the apply task works on the backlog. (Never, in
/// unit tests: a stall of the test machine's disk must not move what a test checks is moved
/// by a read or by `CATCH_UP_EVERY`.)
const IDLE: Duration = if cfg!(test) {
    Duration::from_secs(3600)
} else {
    Duration::from_millis(5)
};
/// Deliveries moved per transaction while idle (whole log batches: a few more). Larger chunks share
/// more of the dedupe index's random pages between deliveries: measured here after a burst, with
/// the earlier inbox of one row per delivery, moving a delivery cost 60 to 75 µs of CPU and 28 KB
/// written in chunks of 256, 44 to 48 µs and 18 KB in chunks of 1,024, 31 to 37 µs and 13 KB in
/// chunks of 2,048, but that took the peak resident size to 80 to 99 MiB (the target is under
/// 100). Decoding the inbox's batches now adds about 20 µs. A chunk takes about 70 ms; only readers
/// wait for it (senders wait on the log alone).
const IDLE_CHUNK: u64 = 1024;
/// The longest the inbox goes without a chunk moved while deliveries keep coming (a steady
/// load never leaves the queue quiet for `IDLE`): at least `IDLE_CHUNK` a second get indexed,
/// and about as many taken from the log into the inbox, at about 5% of one core.
const CATCH_UP_EVERY: Duration = Duration::from_secs(1);
/// About how much of the log the apply task takes into the inbox every `CATCH_UP_EVERY` while
/// a burst goes on: about as many deliveries as `IDLE_CHUNK`.
const TICK_BYTES: u64 = 2 * 1024 * 1024;
/// How long the apply task waits before trying a failed append or sync again.
const RETRY: Duration = Duration::from_secs(1);
/// The most log bytes read back and appended to the inbox in one transaction when catching up.
const CATCH_UP_BYTES: u64 = 8 * 1024 * 1024;
/// How long a reader waits for the writer before it gets an error instead.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

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
    #[error("the delivery log could not be written: {0}")]
    Log(String),
    #[error("the database did not take the deliveries waiting for it within {} s", FLUSH_TIMEOUT.as_secs())]
    Slow,
    #[error("the writer has stopped")]
    Stopped,
}

/// Answers a sender once their delivery is stored.
type Done = oneshot::Sender<Result<(), WriteError>>;
/// Answers a reader once the inbox has been moved, with how many deliveries are still in it.
type Flushed = oneshot::Sender<Result<u64, WriteError>>;

/// What the writer is asked to do.
enum Job {
    /// Store a delivery (encoded by the sender, see [`Record`]), then answer.
    Store(Record, Done),
    /// Move the inbox into the tables (about [`READ_INDEX_LIMIT`] deliveries), then answer
    /// with what is left: a reader wants to see everything stored.
    Flush(Flushed),
}

/// What the log thread passes to the apply task, in the order it was asked.
enum Logged {
    /// Deliveries durable in the log and acknowledged, not yet in SQLite: where the log holds
    /// them (the deliveries themselves are dropped once logged).
    Deliveries(Vec<LoggedBatch>),
    /// A reader's flush, behind every delivery acknowledged before it was asked.
    Flush(Flushed),
}

/// The handle ingestion uses to store a delivery. Cloning it is cheap; the writer stops once
/// every handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    buffers: Arc<RecordBuffers>,
}

impl Writer {
    /// Starts the log thread on `log` and the apply task on `connection`; the task finishes
    /// once every handle is dropped and everything logged is in SQLite.
    pub fn spawn(
        connection: SqliteConnection,
        log: DeliveryLog,
    ) -> std::io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let (logged, to_apply) = mpsc::unbounded_channel();
        let gate = Arc::new(Gate::default());
        let applied = Applied {
            seq: log.last_seq(),
            end: 0,
            durable_end: 0,
            barrier_every: log.size() / 4,
            defer_limit: log.size() / 2,
        };
        let log_gate = Arc::clone(&gate);
        let buffers = Arc::new(RecordBuffers::default());
        let log_buffers = Arc::clone(&buffers);
        std::thread::Builder::new()
            .name("delivery-log".into())
            .spawn(move || log_until_stopped(log, queue, logged, &log_gate, &log_buffers))?;
        let task = tokio::spawn(apply_until_stopped(connection, to_apply, gate, applied));
        Ok((Self { jobs, buffers }, task))
    }

    /// Stores `delivery` and returns once it is on disk.
    pub async fn store(&self, delivery: NewDelivery) -> Result<(), WriteError> {
        let record = Record::encode_into(self.buffers.take(), &delivery);
        drop(delivery); // here, on the thread that made it
        let (done, stored) = oneshot::channel();
        self.send(Job::Store(record, done), stored).await
    }

    /// Moves what was acknowledged so far into the tables readers query, and returns how many
    /// deliveries are still waiting (none, unless a burst left more than a read moves).
    /// Gives up after `FLUSH_TIMEOUT` (a database refusing writes, a full disk) with an error.
    pub async fn flush(&self) -> Result<u64, WriteError> {
        let (done, flushed) = oneshot::channel();
        tokio::time::timeout(FLUSH_TIMEOUT, self.send(Job::Flush(done), flushed))
            .await
            .map_err(|_| WriteError::Slow)?
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

/// The log thread: append, sync, pass on, answer; until every handle is gone.
fn log_until_stopped(
    mut log: DeliveryLog,
    mut queue: mpsc::Receiver<Job>,
    to_apply: mpsc::UnboundedSender<Logged>,
    gate: &Gate,
    buffers: &RecordBuffers,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.blocking_recv_many(&mut jobs, MAX_BATCH) > 0 {
        let mut records = Vec::with_capacity(jobs.len());
        let mut senders = Vec::with_capacity(jobs.len());
        let mut readers = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Store(record, done) => {
                    records.push(record);
                    senders.push(done);
                }
                Job::Flush(flushed) => readers.push(flushed),
            }
        }
        if !records.is_empty() {
            let answer = match log.append(&records, gate) {
                Ok(appended) => {
                    // Passed on before anyone is answered, so that a sender's next read
                    // comes after it. Should the apply task be gone, the log keeps these
                    // for the next start.
                    let _ = to_apply.send(Logged::Deliveries(appended));
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(error = %e, deliveries = senders.len(), "the delivery log could not be written");
                    Err(WriteError::Log(e.to_string()))
                }
            };
            for sender in senders {
                let _ = sender.send(answer.clone());
            }
            buffers.give_back(records.into_iter());
        }
        for reader in readers {
            if let Err(mpsc::error::SendError(Logged::Flush(reader))) =
                to_apply.send(Logged::Flush(reader))
            {
                let _ = reader.send(Err(WriteError::Stopped));
            }
        }
    }
}

/// Where the apply task is: the last delivery applied to SQLite (from the log's start: what
/// the database had), and how much of the log SQLite has made durable.
struct Applied {
    seq: i64,
    end: u64,
    durable_end: u64,
    /// A FULL commit is due each time this much more of the log is applied.
    barrier_every: u64,
    /// How far behind the log the apply task may fall during a burst before it catches up
    /// while the burst goes on (half the ring: the log waits at the gate a whole ring behind).
    defer_limit: u64,
}

impl Applied {
    /// A quarter ring or more is applied and not yet durable: time for a FULL commit.
    fn sync_due(&self) -> bool {
        self.end - self.durable_end >= self.barrier_every
    }

    fn took(&mut self, batch: &LoggedBatch) {
        self.seq = batch.last_seq();
        self.end = batch.end;
    }
}

/// Batches the log holds that SQLite does not have yet, oldest first. During a burst they wait
/// here, as places in the log rather than bytes, and SQLite takes them once the queue is quiet
/// (or a reader asks, or the log is half full): every delivery of a burst is then written once
/// while the senders wait, to the log, instead of also to SQLite's WAL and database file.
#[derive(Default)]
struct Deferred {
    batches: VecDeque<LoggedBatch>,
    /// Where batches are read back into, kept from one read to the next.
    buffer: AlignedBuffer,
}

impl Deferred {
    fn deliveries(&self) -> u64 {
        self.batches.iter().map(|b| u64::from(b.count)).sum()
    }

    /// How far the newest batch waiting is ahead of what is applied.
    fn behind(&self, applied: &Applied) -> u64 {
        self.batches.back().map_or(0, |b| b.end - applied.end)
    }

    /// The oldest batches, read back from the log: at least one, and then more while they add
    /// up to less than `bytes` and what would be left is more than `keep` bytes of the log.
    /// An error means the log could not be read back; the batches stay where they are.
    fn read_front(&mut self, bytes: u64, keep: u64) -> std::io::Result<Vec<EncodedBatch>> {
        let newest = self.batches.back().map_or(0, |b| b.end);
        let (mut taken, mut count) = (0, 0);
        for (i, batch) in self.batches.iter().enumerate() {
            if i > 0 && (taken >= bytes || newest - self.batches[i - 1].end <= keep) {
                break;
            }
            taken += u64::from(batch.payload_len());
            count += 1;
        }
        read_batches(&self.batches.make_contiguous()[..count], &mut self.buffer)
    }
}

/// Closes the gate when the apply task ends, however it ends, so the log never waits for it.
struct CloseOnDrop(Arc<Gate>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The apply task: everything logged into the inbox, and the inbox into the tables.
async fn apply_until_stopped(
    mut connection: SqliteConnection,
    mut to_apply: mpsc::UnboundedReceiver<Logged>,
    gate: Arc<Gate>,
    mut applied: Applied,
) {
    let _close = CloseOnDrop(Arc::clone(&gate));
    let mut backlog = inbox::backlog(&mut connection).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "could not read the inbox backlog");
        0
    });
    let mut deferred = Deferred::default();
    let mut batch = Vec::new();
    let mut caught_up_at = Instant::now();
    loop {
        // A FULL commit that failed is tried again on a timer: the log may be waiting at the
        // gate for it, and then nothing else would come to trigger a turn.
        let sync_due = applied.sync_due();
        let quiet = if sync_due {
            Some(RETRY)
        } else if backlog > 0 || !deferred.batches.is_empty() {
            Some(IDLE)
        } else {
            None
        };
        let next = to_apply.recv_many(&mut batch, MAX_BATCH);
        let received = match quiet {
            None => next.await,
            Some(quiet) => match tokio::time::timeout(quiet, next).await {
                Ok(received) => received,
                Err(_quiet) if sync_due => {
                    make_durable(&mut connection, &mut applied, &gate).await;
                    continue;
                }
                Err(_quiet) => {
                    let Some((taken, _)) = catch_up(
                        &mut connection,
                        &mut deferred,
                        &mut applied,
                        Until::Busy,
                        &mut Vec::new(),
                        &to_apply,
                    )
                    .await
                    else {
                        break;
                    };
                    backlog += taken;
                    if deferred.batches.is_empty() {
                        backlog = index_while_idle(&mut connection, &to_apply, backlog).await;
                    }
                    caught_up_at = Instant::now();
                    continue;
                }
            },
        };
        if received == 0 {
            break; // the log thread is gone and everything it passed on is applied
        }
        let mut readers = Vec::new();
        let mut arrived = 0;
        let nothing_waited = deferred.batches.is_empty();
        for item in batch.drain(..) {
            match item {
                Logged::Deliveries(appended) => {
                    arrived += appended.iter().map(|b| u64::from(b.count)).sum::<u64>();
                    deferred.batches.extend(appended);
                }
                Logged::Flush(flushed) => readers.push(flushed),
            }
        }
        // A light load is applied and indexed at once, so what was acknowledged is listed at
        // once; a reader gets everything acknowledged before it. A burst waits in the log.
        let index_now = !readers.is_empty()
            || (nothing_waited
                && arrived <= INLINE_BATCH_LIMIT
                && to_apply.is_empty()
                && backlog + arrived <= INLINE_INDEX_LIMIT);
        let until = if index_now {
            Until::Indexed
        } else if deferred.behind(&applied) > applied.defer_limit {
            // Half the ring behind: catch up to a quarter while the burst goes on.
            Until::Behind(applied.defer_limit / 2)
        } else {
            Until::Behind(u64::MAX)
        };
        let Some((taken, moved)) = catch_up(
            &mut connection,
            &mut deferred,
            &mut applied,
            until,
            &mut readers,
            &to_apply,
        )
        .await
        else {
            break;
        };
        backlog = (backlog + taken).saturating_sub(moved);
        for reader in readers {
            let _ = reader.send(Ok(backlog));
        }
        if moved > 0 || (backlog == 0 && deferred.batches.is_empty()) {
            caught_up_at = Instant::now();
        } else if caught_up_at.elapsed() >= CATCH_UP_EVERY {
            // A steady load may never leave the queue quiet for IDLE: take a chunk from the
            // log and move one into the tables anyway, so the tables trail by seconds, not by
            // half the log.
            let behind = deferred.behind(&applied);
            let tick = Until::Behind(behind.saturating_sub(TICK_BYTES));
            let no_readers = &mut Vec::new();
            let Some((taken, _)) = catch_up(
                &mut connection,
                &mut deferred,
                &mut applied,
                tick,
                no_readers,
                &to_apply,
            )
            .await
            else {
                break;
            };
            backlog += taken;
            backlog = move_chunk(&mut connection, backlog)
                .await
                .unwrap_or(backlog);
            caught_up_at = Instant::now();
        }
        if applied.sync_due() {
            make_durable(&mut connection, &mut applied, &gate).await;
        }
    }
    if !deferred.batches.is_empty() {
        // The log thread is gone: whatever is still deferred goes to SQLite now, so a stopped
        // server leaves everything acknowledged in its database.
        let everything = Until::Behind(0);
        if let Some((taken, _)) = catch_up(
            &mut connection,
            &mut deferred,
            &mut applied,
            everything,
            &mut Vec::new(),
            &to_apply,
        )
        .await
        {
            backlog += taken;
        }
    }
    if applied.end > applied.durable_end {
        make_durable(&mut connection, &mut applied, &gate).await;
    }
    if !deferred.batches.is_empty() {
        tracing::warn!(
            deliveries = deferred.deliveries(),
            "stopping with deliveries not yet applied; the next start recovers them from the log"
        );
    } else if backlog > 0 {
        // Durable already; moving it now would hold up the exit. The next start does it.
        tracing::info!(
            backlog,
            "deliveries left in the inbox; they are indexed at the next start"
        );
    }
    let _ = connection.close().await;
    tracing::debug!("the writer has stored everything it was given");
}

/// How far [`catch_up`] goes.
#[derive(Clone, Copy, PartialEq)]
enum Until {
    /// Until the log is at most this many bytes ahead of what is applied.
    Behind(u64),
    /// Everything, unless something arrives for the apply task meanwhile (the queue was quiet:
    /// a burst that starts again waits in the log again).
    Busy,
    /// Everything, and then about [`READ_INDEX_LIMIT`] deliveries moved into the tables, in
    /// the same transaction as the last append: a reader waits, or the load is light.
    Indexed,
}

/// Appends the oldest deferred batches to the inbox, [`CATCH_UP_BYTES`] or so per transaction,
/// as far as `until` says. Returns how many deliveries went into the inbox and how many moved
/// on into the tables, or `None` when the server stops before the database takes them (the
/// next start recovers them from the log).
async fn catch_up(
    connection: &mut SqliteConnection,
    deferred: &mut Deferred,
    applied: &mut Applied,
    until: Until,
    readers: &mut Vec<Flushed>,
    to_apply: &mpsc::UnboundedReceiver<Logged>,
) -> Option<(u64, u64)> {
    let (mut taken, mut moved) = (0, 0);
    let keep = match until {
        Until::Behind(keep) => keep,
        Until::Busy | Until::Indexed => 0,
    };
    let mut indexed = false;
    while !deferred.batches.is_empty() && deferred.behind(applied) > keep {
        if until == Until::Busy && !to_apply.is_empty() {
            break;
        }
        let batches = match deferred.read_front(CATCH_UP_BYTES, keep) {
            Ok(batches) => batches,
            Err(e) => {
                tracing::error!(error = %e, "the delivery log could not be read back; trying again in {} s", RETRY.as_secs());
                if to_apply.is_closed() {
                    return None;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let last_seq = batches.last().map_or(applied.seq, EncodedBatch::last_seq);
        let index_now = until == Until::Indexed && batches.len() == deferred.batches.len();
        moved += apply(connection, &batches, last_seq, index_now, readers, to_apply).await?;
        indexed |= index_now;
        for batch in deferred.batches.drain(..batches.len()) {
            applied.took(&batch);
        }
        taken += batches.iter().map(|b| u64::from(b.count)).sum::<u64>();
    }
    if until == Until::Indexed && !indexed {
        moved += apply(connection, &[], applied.seq, true, readers, to_apply).await?;
    }
    Some((taken, moved))
}

/// Applies `batches` (see [`write_batch`]), trying again while the database refuses:
/// they are acknowledged, and the gate keeps the log from overwriting them meanwhile (so
/// ingestion fails with timeouts once the ring is full). Readers are told of a failure at
/// once. Returns how many deliveries moved into the tables, or `None` when the server stops
/// before the database takes them (the next start does).
async fn apply(
    connection: &mut SqliteConnection,
    batches: &[EncodedBatch],
    last_seq: i64,
    mut index_now: bool,
    readers: &mut Vec<Flushed>,
    to_apply: &mpsc::UnboundedReceiver<Logged>,
) -> Option<u64> {
    loop {
        if batches.is_empty() && !index_now {
            return Some(0);
        }
        match write_batch(connection, batches, last_seq, index_now).await {
            Ok(moved) => return Some(moved),
            Err(e) => {
                tracing::error!(error = %e, batches = batches.len(), "the database refused a batch; trying again in {} s", RETRY.as_secs());
                for reader in readers.drain(..) {
                    let _ = reader.send(Err(WriteError::Database(e.to_string())));
                }
                index_now = false;
                if to_apply.is_closed() {
                    return None;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Commits once with `synchronous=FULL`, making everything applied so far durable in SQLite,
/// and lets the log overwrite it. On failure the gate stays put, and the apply loop tries again.
async fn make_durable(connection: &mut SqliteConnection, applied: &mut Applied, gate: &Gate) {
    match inbox::make_durable(connection, applied.seq).await {
        Ok(()) => {
            applied.durable_end = applied.end;
            gate.advance(applied.end);
        }
        Err(e) => tracing::error!(error = %e, "could not make the applied deliveries durable"),
    }
}

/// Appends a batch (if any) and records `last_seq` as applied, and when `index_now` also moves
/// the oldest deliveries in the inbox (about [`READ_INDEX_LIMIT`]) into the tables, in one
/// transaction; returns how many deliveries moved.
#[tracing::instrument(skip_all, fields(batches = batches.len(), index_now))]
async fn write_batch(
    connection: &mut SqliteConnection,
    batches: &[EncodedBatch],
    last_seq: i64,
    index_now: bool,
) -> sqlx::Result<u64> {
    if !index_now {
        inbox::append_and_commit(connection, batches, last_seq).await?;
        return Ok(0);
    }
    let mut tx = connection.begin().await?;
    if !batches.is_empty() {
        inbox::append(&mut tx, batches, last_seq).await?;
    }
    let moved = inbox::index(&mut tx, READ_INDEX_LIMIT).await?;
    tx.commit().await?;
    Ok(moved)
}

/// Moves the backlog in small transactions while nothing is queued; returns what is left.
/// Stops when the server is stopping (the log thread gone): the next start does the rest.
async fn index_while_idle(
    connection: &mut SqliteConnection,
    to_apply: &mpsc::UnboundedReceiver<Logged>,
    mut backlog: u64,
) -> u64 {
    while backlog > 0 && to_apply.is_empty() && !to_apply.is_closed() {
        match move_chunk(connection, backlog).await {
            Some(left) => backlog = left,
            None => break,
        }
    }
    backlog
}

/// Moves about [`IDLE_CHUNK`] deliveries from the inbox into the tables in a transaction of its own
/// and returns how many of `backlog` are left; `None` when the database refused (logged; the rows
/// stay in the inbox for a later try).
async fn move_chunk(connection: &mut SqliteConnection, backlog: u64) -> Option<u64> {
    match index_chunk(connection).await {
        // None moved: the inbox is empty, whatever the count said.
        Ok(0) => Some(0),
        Ok(moved) => Some(backlog.saturating_sub(moved)),
        Err(e) => {
            tracing::error!(error = %e, "the inbox could not be moved into the tables");
            None
        }
    }
}

async fn index_chunk(connection: &mut SqliteConnection) -> sqlx::Result<u64> {
    let mut tx = connection.begin().await?;
    let moved = inbox::index(&mut tx, IDLE_CHUNK).await?;
    tx.commit().await?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{
        Store,
        delivery_log::Gate,
        testing::{self, delivery, open, writer_connection},
    };

    async fn count(conn: &mut SqliteConnection, table: &str) -> u64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let n: i64 = sqlx::query_scalar(&sql).fetch_one(conn).await.unwrap();
        n as u64
    }

    /// Stores `n` deliveries through a writer on the database in `dir`, then stops it.
    async fn store_and_stop(
        dir: &tempfile::TempDir,
        deliveries: impl Iterator<Item = NewDelivery>,
    ) {
        let opened = open(dir).await;
        let (writer, task) = Writer::spawn(opened.writer_connection, opened.log).unwrap();
        for d in deliveries {
            writer.store(d).await.unwrap();
        }
        drop(writer);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_read_right_after_a_start_keeps_what_the_database_had_applied() {
        let dir = tempfile::tempdir().unwrap();
        store_and_stop(&dir, (0..3).map(delivery)).await;

        // The next run is only read from before it stops.
        let opened = open(&dir).await;
        let (writer, task) = Writer::spawn(opened.writer_connection, opened.log).unwrap();
        assert_eq!(writer.flush().await.unwrap(), 0);
        drop(writer);
        task.await.unwrap();

        // So the run after recovers nothing: the three are stored once.
        let mut conn = writer_connection(&dir).await;
        assert_eq!(inbox::log_state(&mut conn).await.unwrap().1, 3);
        let stored =
            count(&mut conn, "deliveries").await + inbox::backlog(&mut conn).await.unwrap();
        assert_eq!(stored, 3);
    }

    /// A writer on a database in `dir` whose inbox already holds `backlog` acknowledged
    /// deliveries, as a long burst leaves it; the deliveries and the read side come with it.
    async fn writer_with_backlog(
        dir: &tempfile::TempDir,
        backlog: u64,
    ) -> (Writer, tokio::task::JoinHandle<()>, Store, Vec<NewDelivery>) {
        let mut opened = open(dir).await;
        let burst = testing::batches(1, (0..backlog as usize).map(delivery), 64);
        inbox::append_and_commit(&mut opened.writer_connection, &burst, backlog as i64)
            .await
            .unwrap();
        drop(opened);
        // Opened again, so that the log continues after what the inbox holds.
        let opened = open(dir).await;
        let (writer, task) = Writer::spawn(opened.writer_connection, opened.log).unwrap();
        let deliveries = (0..backlog as usize).map(delivery).collect();
        (writer, task, opened.store, deliveries)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_steady_load_that_never_pauses_still_gets_the_backlog_moved() {
        let dir = tempfile::tempdir().unwrap();
        let backlog = IDLE_CHUNK + 500;
        let (writer, task, store, _) = writer_with_backlog(&dir, backlog).await;

        // Four senders that never stop (the queue is never quiet for long); nobody reads.
        let until = Instant::now() + CATCH_UP_EVERY + Duration::from_millis(500);
        let senders: Vec<_> = (0..4)
            .map(|s| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    let mut n = backlog as usize + s * 1_000_000;
                    while Instant::now() < until {
                        writer.store(delivery(n)).await.unwrap();
                        n += 1;
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.await.unwrap();
        }
        let moved: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert!(
            moved >= IDLE_CHUNK as i64,
            "only {moved} moved out of the inbox"
        );
        drop(writer);
        task.await.unwrap();
    }

    /// Where the first delivery of a burst starts, before anything is applied.
    fn applied_from_the_start(log: &DeliveryLog) -> Applied {
        Applied {
            seq: 0,
            end: 0,
            durable_end: 0,
            barrier_every: log.size() / 4,
            defer_limit: log.size() / 2,
        }
    }

    #[tokio::test]
    async fn a_burst_waits_in_the_log_and_is_taken_into_the_database_as_far_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut opened = open(&dir).await;
        // A burst: three batches of 100 acknowledged, waiting in the log.
        let gate = Gate::default();
        let mut deferred = Deferred::default();
        for first in [0, 100, 200] {
            let burst: Vec<_> = (first..first + 100).map(delivery).collect();
            let appended = opened.log.append(&testing::records(&burst), &gate).unwrap();
            deferred.batches.extend(appended);
        }
        let mut applied = applied_from_the_start(&opened.log);
        let conn = &mut opened.writer_connection;
        let (sender, to_apply) = mpsc::unbounded_channel();

        // Up to one batch behind: the two oldest go into the inbox, the newest stays.
        let last_end = deferred.batches[2].end;
        let first_len = deferred.batches[0].end;
        let until = Until::Behind(last_end - deferred.batches[1].end);
        let taken = catch_up(
            conn,
            &mut deferred,
            &mut applied,
            until,
            &mut Vec::new(),
            &to_apply,
        )
        .await
        .unwrap();
        assert_eq!(taken, (200, 0));
        assert_eq!((applied.seq, deferred.batches.len()), (200, 1));
        assert_eq!(inbox::backlog(conn).await.unwrap(), 200);
        assert_eq!(inbox::log_state(conn).await.unwrap().1, 200);
        assert!(applied.end > first_len && applied.end < last_end);

        // Taking everything on the idle timer stops as soon as something arrives.
        let (flushed, _answer) = oneshot::channel();
        let _ = sender.send(Logged::Flush(flushed));
        let busy = catch_up(
            conn,
            &mut deferred,
            &mut applied,
            Until::Busy,
            &mut Vec::new(),
            &to_apply,
        )
        .await
        .unwrap();
        assert_eq!(busy, (0, 0));

        // A reader: everything goes in, and on into the tables.
        let read = catch_up(
            conn,
            &mut deferred,
            &mut applied,
            Until::Indexed,
            &mut Vec::new(),
            &to_apply,
        )
        .await
        .unwrap();
        assert_eq!(read, (100, 300));
        assert!(deferred.batches.is_empty());
        assert_eq!((applied.seq, applied.end), (300, last_end));
        assert_eq!(inbox::backlog(conn).await.unwrap(), 0);
        assert_eq!(count(conn, "deliveries").await, 300);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn everything_sixty_four_senders_were_told_is_stored_is_read_back_and_kept_at_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(&dir).await;
        let (writer, task) = Writer::spawn(opened.writer_connection, opened.log).unwrap();
        let senders: Vec<_> = (0..64)
            .map(|s| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    for n in 0..20 {
                        writer.store(delivery(s * 100 + n)).await.unwrap();
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.await.unwrap();
        }
        // A read sees every delivery acknowledged before it, wherever it waited.
        assert_eq!(writer.flush().await.unwrap(), 0);
        let listed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries")
            .fetch_one(&opened.store.pool)
            .await
            .unwrap();
        assert_eq!(listed, 64 * 20);
        // More of them, and a stop: the stopped writer leaves them all in the database.
        for n in 0..300 {
            let writer = writer.clone();
            tokio::spawn(async move { writer.store(delivery(10_000 + n)).await.unwrap() });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(writer);
        task.await.unwrap();
        let mut conn = writer_connection(&dir).await;
        let stored =
            count(&mut conn, "deliveries").await + inbox::backlog(&mut conn).await.unwrap();
        assert_eq!(stored, 64 * 20 + 300);
    }

    #[tokio::test]
    async fn a_read_after_a_long_burst_moves_part_of_the_backlog_and_says_how_much_is_left() {
        let dir = tempfile::tempdir().unwrap();
        // More acknowledged deliveries in the inbox than a read moves.
        let burst = READ_INDEX_LIMIT + 700;
        let (writer, task, store, deliveries) = writer_with_backlog(&dir, burst).await;
        let pending = writer.flush().await.unwrap();
        // The first read moves READ_INDEX_LIMIT deliveries (32 whole batches of 64).
        assert_eq!(
            pending,
            burst - READ_INDEX_LIMIT,
            "a read moves {READ_INDEX_LIMIT} deliveries"
        );
        // The newest delivery is still in the inbox, and its bytes can be read already.
        let newest = &deliveries[burst as usize - 1];
        let raw = store
            .raw_body(&newest.id)
            .await
            .unwrap()
            .expect("found in the inbox");
        assert_eq!(raw.body, newest.body.as_ref());
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
