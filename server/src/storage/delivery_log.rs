//! The delivery log: where a delivery becomes durable before it is acknowledged.
//!
//! Fixed-size segment files beside the database (`hookscope.db-log`, `hookscope.db-log.1`, ...,
//! 64 MiB each, 2 GiB in all), used in turn as one ring. The writer appends each batch with one
//! `pwrite` and one `fdatasync`, and answers the senders; SQLite gets the same deliveries later,
//! read back from the log, with `synchronous=NORMAL`, off the acknowledgement path: at once
//! under a light load, and after a burst (when the queue is quiet, when a reader asks, or when
//! the burst has filled half the ring) otherwise, so a burst is written once while its senders
//! wait. Overwriting blocks that are already there is the cheapest durable write this kind of
//! disk offers (no file growth, so no filesystem journal commit): about 0.15 ms where a commit
//! of SQLite's growing WAL takes 0.5 to 0.9 ms. So every segment is written with zeros before
//! the log first writes into it: the first when the log is opened, each next one on a thread
//! of its own while the log fills the one before, and all are overwritten from then on.
//!
//! The ring never overwrites a delivery that SQLite could still lose: the applying side
//! advances a [`Gate`] each time it has made what it applied durable (a commit with
//! `synchronous=FULL`), and the log waits at the gate before writing over older batches. At
//! start-up, [`recover`] reads every batch newer than the last one SQLite recorded as applied,
//! so a crash anywhere between the acknowledgement and SQLite's own sync loses nothing.
//!
//! On disk, each batch starts on a 4 KiB boundary and lies within one segment: a header (magic,
//! the log's id, the first sequence number, the count, the payload's length and CRC-32, and the
//! header's own CRC-32), then the deliveries, encoded field by field. A batch whose header or
//! payload does not check out (torn by a crash) is skipped: it was never acknowledged. So is
//! every delivery at or below the sequence number SQLite recorded as applied (batches left from
//! an earlier lap or an earlier run): it is in SQLite already. The log's id is random per
//! database, so the log of another database is never recovered into this one.
//!
//! A failed write or sync makes the log refuse every later append (its senders get errors
//! and retry) until a restart recovers it: after a failed `fdatasync`, what the kernel holds
//! for the file can no longer be trusted. Batches of a failed append that did reach the disk
//! may be recovered although their senders were told to retry: a duplicate delivery, never a
//! lost one.

use std::{
    fs::File,
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use app::model::{BodyKind, SignatureVerdict};
use bytes::Bytes;

use super::{
    direct_io::{self, AlignedBuffer},
    writer::NewDelivery,
};
use crate::{envelope::ParsedBody, sources::SourceSlug};

/// Batches start on this boundary, and the file's size is a multiple of it: whole blocks, as
/// direct I/O reads and writes them.
const BLOCK: u64 = direct_io::ALIGN as u64;
const MAGIC: [u8; 4] = *b"HSL1";
/// magic 4, log id 16, first sequence number 8, count 4, payload length 4, payload CRC 4,
/// header CRC 4 (of everything before it).
const HEADER_LEN: usize = 44;
/// The smallest segment; a larger `--max-body` makes segments larger (see [`segment_size`]).
const MIN_SEGMENT: u64 = 64 * 1024 * 1024;
/// How far the log may run ahead of what SQLite has made durable, in all its segments: room for
/// a burst of about a million deliveries of 1 KB, taken without SQLite in the way.
const MAX_SIZE: u64 = 2 * 1024 * 1024 * 1024;
/// How long an append may wait for SQLite to catch up before its senders get an error.
const ROOM_TIMEOUT: Duration = Duration::from_secs(10);

/// A segment's size for a body limit: room for at least four of the largest deliveries (their
/// headers included), so a batch always fits in a quarter of a segment.
pub fn segment_size(max_body: usize) -> u64 {
    let largest = max_body as u64 + 1024 * 1024;
    (4 * largest).max(MIN_SEGMENT).next_multiple_of(BLOCK)
}

/// How many segments the ring has for segments of `segment` bytes: [`MAX_SIZE`] in all, and
/// never fewer than two.
pub fn segments(segment: u64) -> u64 {
    (MAX_SIZE / segment).max(2)
}

/// Where segment `n` of the log at `path` lives: the first at `path` itself (`hookscope.db-log`,
/// as before the log had segments), the others beside it (`hookscope.db-log.1`, ...).
fn segment_path(path: &Path, n: u64) -> PathBuf {
    if n == 0 {
        return path.to_owned();
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// A random id, one per database, stamped on every batch.
pub type LogId = [u8; 16];

/// The log, open for appending.
pub struct DeliveryLog {
    path: PathBuf,
    /// The segment files, opened (and created) as the head first reaches them.
    files: Vec<Option<Arc<File>>>,
    /// The segment after the newest one open, being made ready while the log writes.
    next: Option<(usize, std::thread::JoinHandle<io::Result<File>>)>,
    segment: u64,
    /// The whole ring: every segment.
    size: u64,
    id: LogId,
    next_seq: i64,
    /// Bytes written since the log was opened, padding and skipped segment ends included; a
    /// position is in segment `position / segment % segments`, at `position % segment`.
    /// Everything before the head was made durable in SQLite by the time the log was opened,
    /// so positions start at zero.
    head: u64,
    /// The largest batch written at once; a bigger one is cut.
    max_batch_bytes: usize,
    /// Why an earlier write or sync failed; the log takes nothing more once it has.
    failed: Option<String>,
    room_timeout: Duration,
    /// The batch being written, aligned for direct I/O.
    buffer: AlignedBuffer,
}

/// Where a batch the log holds is, so that it can be read back: the applying side is handed
/// this, not the bytes, and reads the batch when it takes it into SQLite (at once when the
/// load is light, after a burst otherwise). The gate keeps the ring from overwriting it until
/// then.
#[derive(Debug, Clone)]
pub struct LoggedBatch {
    file: Arc<File>,
    /// Where the payload starts in `file`.
    offset: u64,
    len: u32,
    crc: u32,
    pub first_seq: i64,
    pub count: u32,
    /// The log position right after this batch (see [`DeliveryLog`]'s head).
    pub end: u64,
}

impl LoggedBatch {
    /// The batch's deliveries as the log encoded them, read back from the log.
    #[cfg(test)]
    pub fn read(&self) -> io::Result<EncodedBatch> {
        let mut read = read_batches(std::slice::from_ref(self), &mut AlignedBuffer::default())?;
        Ok(read.remove(0))
    }

    /// The size of the batch's deliveries as the log encoded them.
    pub fn payload_len(&self) -> u32 {
        self.len
    }

    /// Where the batch starts (its header) in its segment: on a block boundary.
    fn start(&self) -> u64 {
        self.offset - HEADER_LEN as u64
    }

    /// Where the batch's last block ends in its segment.
    fn blocks_end(&self) -> u64 {
        (self.offset + u64::from(self.len)).next_multiple_of(BLOCK)
    }

    pub fn last_seq(&self) -> i64 {
        self.first_seq + i64::from(self.count) - 1
    }
}

/// The most one read back from the log takes at once (unless one batch is larger): enough to
/// make each read cheap, small enough that the buffer kept for reads stays small.
const READ_SPAN: u64 = 1024 * 1024;

/// Reads `batches` back from the log, in order, with one read for each run of them that lie
/// one after the other in a segment (a burst's batches do) up to [`READ_SPAN`], into `buffer`,
/// which is kept for the next call (direct I/O reads whole blocks into aligned memory).
pub fn read_batches(
    batches: &[LoggedBatch],
    buffer: &mut AlignedBuffer,
) -> io::Result<Vec<EncodedBatch>> {
    let mut read = Vec::with_capacity(batches.len());
    let mut rest = batches;
    while let Some(first) = rest.first() {
        let run = 1 + rest
            .windows(2)
            .take_while(|w| {
                Arc::ptr_eq(&w[0].file, &w[1].file)
                    && w[0].blocks_end() == w[1].start()
                    && w[1].blocks_end() - first.start() <= READ_SPAN
            })
            .count();
        let (run, after) = rest.split_at(run);
        rest = after;
        let start = first.start();
        let end = run.last().map_or(start, LoggedBatch::blocks_end);
        buffer.read_exact_at(&first.file, start, (end - start) as usize)?;
        for batch in run {
            let at = (batch.offset - start) as usize;
            let records = &buffer[at..at + batch.len as usize];
            if crc32fast::hash(records) != batch.crc {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the delivery log's batch from #{} no longer reads back as written",
                        batch.first_seq
                    ),
                ));
            }
            read.push(EncodedBatch {
                first_seq: batch.first_seq,
                count: batch.count,
                records: records.to_vec(),
            });
        }
    }
    Ok(read)
}

/// One delivery as the log encodes it. The handler encodes its delivery on its own thread and
/// drops it there, so the log thread only copies bytes (its batch is written sooner), and the
/// dozen allocations a delivery holds are freed by the thread that made them rather than by the
/// log thread. Measured under load: malloc and free fell from 10.5% to 8.6% of the machine and
/// the log thread from 9.5% to 8%; the rate moved by less than the noise.
#[derive(Debug)]
pub struct Record(Vec<u8>);

impl Record {
    #[cfg(test)]
    pub fn encode(delivery: &NewDelivery) -> Self {
        Self::encode_into(Vec::new(), delivery)
    }

    /// Encodes `delivery` into `bytes` (emptied first), a buffer a [`Record`] had before.
    pub fn encode_into(mut bytes: Vec<u8>, delivery: &NewDelivery) -> Self {
        bytes.clear();
        // Room for the body and headers and the short fields, so the buffer grows at most once.
        bytes.reserve(delivery.body.len() + delivery.headers_json.len() + 512);
        encode(&mut bytes, delivery);
        Self(bytes)
    }

    /// The buffer, for the next record.
    pub fn into_buffer(self) -> Vec<u8> {
        self.0
    }
}

/// Buffers of records the log has written, for the next ones: with records made on the HTTP
/// threads and dropped on the log thread, a fresh allocation per delivery was a trip through
/// glibc's shared arena and its consolidation of freed chunks.
#[derive(Default)]
pub struct RecordBuffers(Mutex<Vec<Vec<u8>>>);

impl RecordBuffers {
    /// At most this many buffers are kept: a batch's worth.
    const KEPT: usize = 1024;
    /// A buffer larger than this (a large body went through it) is freed rather than kept.
    const LARGEST_KEPT: usize = 64 * 1024;

    pub fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    pub fn give_back(&self, records: impl Iterator<Item = Record>) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for Record(bytes) in records {
            if kept.len() >= Self::KEPT {
                break;
            }
            if bytes.capacity() <= Self::LARGEST_KEPT {
                kept.push(bytes);
            }
        }
    }
}

/// Consecutive deliveries as the log encodes them: what the inbox keeps until they are
/// indexed, so the log's encoding is done once and SQLite gets one value per batch.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EncodedBatch {
    pub first_seq: i64,
    pub count: u32,
    pub records: Vec<u8>,
}

impl EncodedBatch {
    /// Encodes `deliveries`, numbered from `first_seq`.
    pub fn encode(first_seq: i64, deliveries: &[NewDelivery]) -> Self {
        let mut records = Vec::new();
        for delivery in deliveries {
            encode(&mut records, delivery);
        }
        Self {
            first_seq,
            count: deliveries.len() as u32,
            records,
        }
    }

    /// The deliveries again, oldest first; `None` when the bytes do not decode.
    pub fn decode(&self) -> Option<Vec<NewDelivery>> {
        decode_batch(&self.records, self.count)
    }

    pub fn last_seq(&self) -> i64 {
        self.first_seq + i64::from(self.count) - 1
    }

    /// This batch without its deliveries at or below `applied` (`None` when that is all).
    fn after(self, applied: i64) -> Option<Self> {
        if self.last_seq() <= applied {
            return None;
        }
        if self.first_seq > applied {
            return Some(self);
        }
        // Batches are applied whole, so a batch that straddles `applied` is not expected; if
        // one does, its older deliveries are dropped rather than indexed twice.
        let skip = (applied - self.first_seq + 1) as usize;
        let rest = self.decode()?.split_off(skip);
        Some(Self::encode(applied + 1, &rest))
    }
}

/// What start-up found in the log beyond what SQLite has applied: where it is, not the bytes
/// (a crash during a long burst can leave most of the ring to recover).
pub struct Recovered {
    /// Every intact batch with deliveries newer than `applied`, oldest first.
    pub batches: Vec<LoggedBatch>,
    /// The last delivery SQLite had applied.
    pub applied: i64,
    /// The highest sequence number the log holds (or `applied`); new batches continue after it.
    pub last_seq: i64,
}

impl Recovered {
    /// Reads `batches` (some of [`Recovered::batches`]) back from the log, without the
    /// deliveries SQLite already has.
    pub fn read(&self, batches: &[LoggedBatch]) -> io::Result<Vec<EncodedBatch>> {
        let read = read_batches(batches, &mut AlignedBuffer::default())?;
        Ok(read
            .into_iter()
            .filter_map(|b| b.after(self.applied))
            .collect())
    }
}

/// Reads the log at `path` (none yet is fine), every segment of it, for the batches of log `id`
/// past `applied`.
pub fn recover(path: &Path, id: &LogId, applied: i64) -> io::Result<Recovered> {
    let mut recovered = Recovered {
        batches: Vec::new(),
        applied,
        last_seq: applied,
    };
    let mut buffer = AlignedBuffer::default();
    // Segments are created in order, so the first one missing ends the log.
    for n in 0.. {
        match File::open(segment_path(path, n)) {
            Ok(file) => recover_segment(Arc::new(file), id, &mut recovered, &mut buffer)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(e),
        }
    }
    recovered.batches.sort_by_key(|b| b.first_seq);
    Ok(recovered)
}

/// Adds what one segment holds past what SQLite has applied to `recovered`.
fn recover_segment(
    file: Arc<File>,
    id: &LogId,
    recovered: &mut Recovered,
    buffer: &mut AlignedBuffer,
) -> io::Result<()> {
    let size = file.metadata()?.len();
    let mut header = [0; HEADER_LEN];
    let mut offset = 0;
    while offset + HEADER_LEN as u64 <= size {
        file.read_exact_at(&mut header, offset)?;
        let Some(batch) = BatchHeader::parse(&header, id) else {
            offset += BLOCK;
            continue;
        };
        let end = offset + HEADER_LEN as u64 + u64::from(batch.payload_len);
        if end > size {
            offset += BLOCK;
            continue;
        }
        let logged = LoggedBatch {
            file: Arc::clone(&file),
            offset: offset + HEADER_LEN as u64,
            len: batch.payload_len,
            crc: batch.payload_crc,
            first_seq: batch.first_seq,
            count: batch.count,
            end,
        };
        if logged.last_seq() > recovered.applied
            // Read once here to know it is intact (a batch torn by a crash was never
            // acknowledged), and again when it is taken into SQLite, a chunk at a time.
            && read_batches(std::slice::from_ref(&logged), buffer)
                .is_ok_and(|read| read[0].decode().is_some())
        {
            recovered.last_seq = recovered.last_seq.max(logged.last_seq());
            recovered.batches.push(logged);
        }
        offset = end.next_multiple_of(BLOCK);
    }
    Ok(())
}

impl DeliveryLog {
    /// Opens the log at `path` for appending, with `segments` segments of `segment` bytes,
    /// creating the first one (or remaking it at a new size) when needed; the others are made
    /// when the head first reaches them. Call it only once whatever [`recover`] found is durable
    /// in SQLite: appends start at the beginning of the ring.
    pub fn open(
        path: &Path,
        segment: u64,
        segments: u64,
        id: LogId,
        last_seq: i64,
    ) -> io::Result<Self> {
        let mut log = Self {
            path: path.to_owned(),
            files: vec![None; segments as usize],
            next: None,
            segment,
            size: segment * segments,
            id,
            next_seq: last_seq + 1,
            head: 0,
            max_batch_bytes: (segment / 4) as usize,
            failed: None,
            room_timeout: ROOM_TIMEOUT,
            buffer: AlignedBuffer::default(),
        };
        // Every segment is written with zeros when it is made (the next one on a thread of its
        // own once the log has written an eighth of the one before), so appends only overwrite
        // blocks the file has.
        log.file(0)?;
        Ok(log)
    }

    /// Segment `n`'s file, opened (and made, when missing or of another size) on first use.
    fn file(&mut self, n: usize) -> io::Result<Arc<File>> {
        if let Some(file) = &self.files[n] {
            return Ok(Arc::clone(file));
        }
        let file = match self.next.take() {
            Some((next, preparing)) if next == n => preparing
                .join()
                .map_err(|_| io::Error::other("the thread preparing a log segment panicked"))??,
            other => {
                self.next = other;
                prepare_segment(&segment_path(&self.path, n as u64), self.segment)?
            }
        };
        let file = Arc::new(file);
        self.files[n] = Some(Arc::clone(&file));
        Ok(file)
    }

    /// Starts making segment `n` ready, unless it is open already (a later lap) or past the end.
    fn prepare_next(&mut self, n: usize) {
        if n >= self.files.len() || self.files[n].is_some() || self.next.is_some() {
            return;
        }
        let (path, size) = (segment_path(&self.path, n as u64), self.segment);
        let preparing = std::thread::Builder::new()
            .name("delivery-log-prepare".into())
            .spawn(move || prepare_segment(&path, size));
        // Without the thread, the segment is made when it is reached.
        if let Ok(preparing) = preparing {
            self.next = Some((n, preparing));
        }
    }

    /// The ring's size in bytes: how far the log may run ahead of SQLite.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The sequence number of the last delivery appended (or recovered).
    pub fn last_seq(&self) -> i64 {
        self.next_seq - 1
    }

    /// Writes `records` and syncs them to disk; once this returns they survive a crash.
    /// Waits at `gate` while SQLite has not yet made durable what this would overwrite.
    /// Returns where the batches it wrote are (usually one).
    pub fn append(&mut self, records: &[Record], gate: &Gate) -> io::Result<Vec<LoggedBatch>> {
        if let Some(why) = &self.failed {
            return Err(io::Error::other(format!(
                "the delivery log failed earlier ({why}); restart Hookscope to recover it"
            )));
        }
        let mut rest = records;
        let mut batches: Vec<LoggedBatch> = Vec::with_capacity(1);
        while !rest.is_empty() {
            let taken = self.fill_batch(rest);
            rest = &rest[taken..];
            let first_seq = self.next_seq;
            // Sequence numbers are never reused, even after a failure.
            self.next_seq += taken as i64;
            batches.push(self.write_batch(first_seq, taken as u32, gate)?);
        }
        // Each segment written once (an append that crossed into the next segment wrote two).
        for (i, batch) in batches.iter().enumerate() {
            if i == 0 || !Arc::ptr_eq(&batch.file, &batches[i - 1].file) {
                batch
                    .file
                    .sync_data()
                    .inspect_err(|e| self.failed = Some(e.to_string()))?;
            }
        }
        Ok(batches)
    }

    /// Copies as many of `records` as fit in one batch (at least one) after a blank header.
    fn fill_batch(&mut self, records: &[Record]) -> usize {
        self.buffer.clear();
        self.buffer.resize(HEADER_LEN);
        let mut taken = 0;
        for Record(bytes) in records {
            if taken > 0 && self.buffer.len() + bytes.len() > self.max_batch_bytes {
                break;
            }
            self.buffer.extend_from_slice(bytes);
            taken += 1;
        }
        taken
    }

    /// Writes the batch in the buffer at the head (in the next segment when it does not fit
    /// in this one's rest) and says where it is.
    fn write_batch(&mut self, first_seq: i64, count: u32, gate: &Gate) -> io::Result<LoggedBatch> {
        let payload = &self.buffer[HEADER_LEN..];
        let header = BatchHeader {
            first_seq,
            count,
            payload_len: payload.len() as u32,
            payload_crc: crc32fast::hash(payload),
        };
        self.buffer[..HEADER_LEN].copy_from_slice(&header.encode(&self.id));
        let len = (self.buffer.len() as u64).next_multiple_of(BLOCK);
        self.buffer.resize(len as usize);
        if self.head % self.segment + len > self.segment {
            self.head = self.head.next_multiple_of(self.segment);
        }
        // Everything this overwrites was written one ring earlier.
        gate.wait_until_durable(
            (self.head + len).saturating_sub(self.size),
            self.room_timeout,
        )?;
        let n = (self.head / self.segment % (self.size / self.segment)) as usize;
        // A segment that cannot be made leaves nothing written: senders may retry.
        let file = self.file(n)?;
        let offset = self.head % self.segment;
        file.write_all_at(&self.buffer, offset)
            .inspect_err(|e| self.failed = Some(e.to_string()))?;
        if offset + len > self.segment / 8 {
            // An eighth of this segment written (more than a light load writes in a while):
            // make the next ready while the rest is written. Started any later, a burst could
            // reach the next segment before it is ready, and wait for it.
            self.prepare_next(n + 1);
        }
        self.head += len;
        Ok(LoggedBatch {
            file,
            offset: offset + HEADER_LEN as u64,
            len: header.payload_len,
            crc: header.payload_crc,
            first_seq,
            count,
            end: self.head,
        })
    }
}

/// Opens the segment file at `path`, and when it is missing or of another size makes it `size`
/// bytes of zeros, durably, its name included.
fn prepare_segment(path: &Path, size: u64) -> io::Result<File> {
    let (file, direct) = direct_io::open(path)?;
    if !direct {
        tracing::debug!(segment = %path.display(), "no direct I/O here: the log goes through the page cache");
    }
    if file.metadata()?.len() != size {
        zero_fill(&file, size)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
    }
    Ok(file)
}

/// Writes `size` zero bytes over the whole file and syncs it, so later writes only overwrite.
fn zero_fill(file: &File, size: u64) -> io::Result<()> {
    file.set_len(0)?;
    let zeros = AlignedBuffer::zeroed(1 << 20);
    let mut offset = 0;
    while offset < size {
        let n = zeros.len().min((size - offset) as usize);
        file.write_all_at(&zeros[..n], offset)?;
        // A mebibyte at a time to the disk: a segment made while the log writes must not hold
        // up the log's own syncs behind a long writeback.
        file.sync_data()?;
        offset += n as u64;
    }
    file.sync_all()
}

/// How far the log may overwrite itself: SQLite has made durable everything written before
/// `durable`. The applying side advances it; the log waits on it.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    durable: u64,
    closed: bool,
}

impl Gate {
    /// Everything written before `position` is durable in SQLite.
    pub fn advance(&self, position: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.durable = state.durable.max(position);
        self.changed.notify_all();
    }

    /// Nothing will advance the gate any more (the applying side has stopped).
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.changed.notify_all();
    }

    fn wait_until_durable(&self, position: u64, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.durable < position {
            if state.closed {
                return Err(io::Error::other(
                    "the database stopped taking deliveries from the log",
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the database is more than the log's size behind and did not catch up \
                         within {} s",
                        timeout.as_secs()
                    ),
                ));
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }
}

struct BatchHeader {
    first_seq: i64,
    count: u32,
    payload_len: u32,
    payload_crc: u32,
}

impl BatchHeader {
    fn encode(&self, id: &LogId) -> [u8; HEADER_LEN] {
        let mut header = [0; HEADER_LEN];
        header[0..4].copy_from_slice(&MAGIC);
        header[4..20].copy_from_slice(id);
        header[20..28].copy_from_slice(&self.first_seq.to_le_bytes());
        header[28..32].copy_from_slice(&self.count.to_le_bytes());
        header[32..36].copy_from_slice(&self.payload_len.to_le_bytes());
        header[36..40].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32fast::hash(&header[..40]);
        header[40..44].copy_from_slice(&crc.to_le_bytes());
        header
    }

    /// The header at the start of `bytes`, if it is one of log `id`'s and intact.
    fn parse(bytes: &[u8; HEADER_LEN], id: &LogId) -> Option<Self> {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        if bytes[0..4] != MAGIC
            || bytes[4..20] != id[..]
            || crc32fast::hash(&bytes[..40]) != u32_at(40)
        {
            return None;
        }
        Some(Self {
            first_seq: i64::from_le_bytes(bytes[20..28].try_into().unwrap()),
            count: u32_at(28),
            payload_len: u32_at(32),
            payload_crc: u32_at(36),
        })
    }
}

// --- The encoding of one delivery: its fields in order, each length-prefixed or fixed-size.

fn encode(out: &mut Vec<u8>, d: &NewDelivery) {
    let mut e = Encoder(out);
    let p = &d.parsed;
    e.str(&d.id);
    e.str(d.source.as_str());
    e.str(&d.method);
    e.str(&d.path);
    e.opt_str(d.query.as_deref());
    e.str(&d.headers_json);
    e.opt_str(d.remote_addr.as_deref());
    e.i64(d.received_at);
    e.i64(d.size);
    e.opt_str(d.content_type.as_deref());
    e.bytes(&d.body);
    e.0.extend_from_slice(&d.body_sha256);
    e.str(p.kind.as_str());
    e.opt_str(p.event_id.as_deref());
    e.opt_str(p.event_type.as_deref());
    e.opt_str(p.version.as_deref());
    e.opt_str(p.date_occurred.as_deref());
    match p.occurred_at {
        Some(at) => {
            e.0.push(1);
            e.i64(at);
        }
        None => e.0.push(0),
    }
    e.opt_str(p.parse_error.as_deref());
    e.str(d.signature.as_str());
    e.opt_str(d.signature_reason.as_deref());
    e.0.push(u8::from(d.rejected) | u8::from(d.too_large) << 1);
    e.0.extend_from_slice(&d.response_status.to_le_bytes());
}

fn decode_batch(payload: &[u8], count: u32) -> Option<Vec<NewDelivery>> {
    let mut d = Decoder(payload);
    let deliveries = (0..count)
        .map(|_| decode(&mut d))
        .collect::<Option<Vec<_>>>()?;
    d.0.is_empty().then_some(deliveries)
}

fn decode(d: &mut Decoder) -> Option<NewDelivery> {
    let id = d.string()?;
    let source = SourceSlug::parse(d.str()?).ok()?;
    let method = d.string()?;
    let path = d.string()?;
    let query = d.opt_string()?;
    let headers_json = d.string()?;
    let remote_addr = d.opt_string()?;
    let received_at = d.i64()?;
    let size = d.i64()?;
    let content_type = d.opt_string()?;
    let body = Bytes::copy_from_slice(d.bytes()?);
    let body_sha256 = d.take(32)?.try_into().ok()?;
    let parsed = ParsedBody {
        kind: BodyKind::parse(d.str()?)?,
        event_id: d.opt_string()?,
        event_type: d.opt_string()?,
        version: d.opt_string()?,
        date_occurred: d.opt_string()?,
        occurred_at: match d.take(1)?[0] {
            0 => None,
            _ => Some(d.i64()?),
        },
        parse_error: d.opt_string()?,
    };
    let signature = SignatureVerdict::parse(d.str()?)?;
    let signature_reason = d.opt_string()?;
    let flags = d.take(1)?[0];
    let response_status = u16::from_le_bytes(d.take(2)?.try_into().ok()?);
    Some(NewDelivery {
        id,
        source,
        method,
        path,
        query,
        headers_json,
        remote_addr,
        received_at,
        size,
        content_type,
        body,
        body_sha256,
        parsed,
        signature,
        signature_reason,
        rejected: flags & 1 != 0,
        too_large: flags & 2 != 0,
        response_status,
    })
}

struct Encoder<'a>(&'a mut Vec<u8>);

impl Encoder<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.0.extend_from_slice(bytes);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
            None => self.0.push(0),
        }
    }

    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads what [`Encoder`] wrote; `None` when the bytes end early or do not decode.
struct Decoder<'a>(&'a [u8]);

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        self.take(len as usize)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }

    fn opt_string(&mut self) -> Option<Option<String>> {
        match self.take(1)?[0] {
            0 => Some(None),
            _ => self.string().map(Some),
        }
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use std::{fs::OpenOptions, os::unix::fs::MetadataExt};

    use super::*;
    use crate::storage::testing::{delivery, record, records};

    const ID: LogId = *b"0123456789abcdef";

    /// What recovery gives back, read.
    fn read_all(recovered: &Recovered) -> Vec<EncodedBatch> {
        recovered.read(&recovered.batches).unwrap()
    }

    fn seqs(recovered: &Recovered) -> Vec<i64> {
        read_all(recovered)
            .iter()
            .flat_map(|b| b.first_seq..=b.last_seq())
            .collect()
    }

    fn deliveries(recovered: &Recovered) -> usize {
        seqs(recovered).len()
    }

    /// The last delivery an append wrote, and where in the ring it ended.
    fn ended(appended: &[LoggedBatch]) -> (i64, u64) {
        let last = appended.last().unwrap();
        (last.last_seq(), last.end)
    }

    /// A new log of `segments` segments of `segment` bytes in a temporary directory (kept while
    /// the first value lives).
    fn new_log(
        segment: u64,
        segments: u64,
    ) -> (tempfile::TempDir, std::path::PathBuf, Gate, DeliveryLog) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db-log");
        let log = DeliveryLog::open(&path, segment, segments, ID, 0).unwrap();
        (dir, path, Gate::default(), log)
    }

    /// A delivery whose batch takes three blocks of the log.
    fn large(n: usize) -> Record {
        let mut d = delivery(n);
        d.body = Bytes::from(vec![b'x'; 10_000]);
        Record::encode(&d)
    }

    #[test]
    fn what_was_appended_comes_back_after_the_last_applied_delivery() {
        let (_dir, path, gate, mut log) = new_log(1 << 20, 2);
        let mut first: Vec<NewDelivery> = (0..3).map(delivery).collect();
        first[1].query = Some("a=1".into());
        first[1].remote_addr = Some("127.0.0.1:4000".into());
        first[1].body = Bytes::from_static(b"\xff\x00 not utf-8");
        first[1].parsed = crate::envelope::ParsedBody::parse(&first[1].body);
        first[2].signature = SignatureVerdict::Invalid;
        first[2].signature_reason = Some("mismatch".into());
        first[2].rejected = true;
        first[2].response_status = 401;
        let appended = log.append(&records(&first), &gate).unwrap();
        assert_eq!(ended(&appended), (3, BLOCK));
        let second: Vec<NewDelivery> = (3..5).map(delivery).collect();
        let appended_too = log.append(&records(&second), &gate).unwrap();
        assert_eq!(ended(&appended_too).0, 5);

        let all = recover(&path, &ID, 0).unwrap();
        assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
        assert_eq!(all.last_seq, 5);
        let handed_on: Vec<EncodedBatch> = [appended, appended_too]
            .concat()
            .iter()
            .map(|b| b.read().unwrap())
            .collect();
        assert_eq!(
            read_all(&all),
            handed_on,
            "what an append hands on reads back as what recovery reads"
        );
        let decoded: Vec<NewDelivery> = read_all(&all)
            .iter()
            .flat_map(|b| b.decode().unwrap())
            .collect();
        for (got, sent) in decoded.iter().zip(first.iter().chain(&second)) {
            assert_eq!(
                format!("{got:?}"),
                format!("{sent:?}"),
                "every field survives"
            );
        }
        let after_three = recover(&path, &ID, 3).unwrap();
        assert_eq!(seqs(&after_three), [4, 5]);
        // A batch that straddles the last delivery applied keeps only what is newer.
        let after_four = recover(&path, &ID, 4).unwrap();
        assert_eq!(seqs(&after_four), [5]);
        assert_eq!(
            read_all(&after_four)[0].decode().unwrap()[0].id,
            second[1].id
        );
        assert_eq!(deliveries(&recover(&path, &ID, 5).unwrap()), 0);
    }

    #[test]
    fn batches_side_by_side_are_read_back_together_and_each_is_checked() {
        // Two segments of 8 blocks: batches of three blocks, two in each segment.
        let (_dir, path, gate, mut log) = new_log(8 * BLOCK, 2);
        let appended: Vec<LoggedBatch> = (0..4)
            .flat_map(|n| log.append(&[large(n)], &gate).unwrap())
            .collect();
        let mut buffer = AlignedBuffer::default();
        let read = read_batches(&appended, &mut buffer).unwrap();
        let ids: Vec<String> = read
            .iter()
            .map(|b| b.decode().unwrap().remove(0).id)
            .collect();
        assert_eq!(
            ids,
            ["delivery-0", "delivery-1", "delivery-2", "delivery-3"]
        );
        let one_by_one: Vec<EncodedBatch> = appended.iter().map(|b| b.read().unwrap()).collect();
        assert_eq!(read, one_by_one);

        // The second batch no longer reads back as written: its run fails, naming it.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"bad", 3 * BLOCK + HEADER_LEN as u64 + 20)
            .unwrap();
        let failed = read_batches(&appended, &mut buffer).unwrap_err();
        assert!(failed.to_string().contains("#2"), "{failed}");
        assert_eq!(
            read_batches(&appended[2..], &mut buffer).unwrap(),
            read[2..]
        );
    }

    #[test]
    fn a_torn_batch_and_another_databases_log_are_skipped() {
        let (dir, path, gate, mut log) = new_log(1 << 20, 2);
        log.append(&[record(0), record(1)], &gate).unwrap();
        log.append(&[record(2), record(3)], &gate).unwrap();
        log.append(&[record(4)], &gate).unwrap();
        // A crash in the middle of writing the second batch: part of its payload is not there.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"torn", BLOCK + HEADER_LEN as u64 + 20)
            .unwrap();

        let recovered = recover(&path, &ID, 0).unwrap();
        assert_eq!(seqs(&recovered), [1, 2, 5]);
        let other = recover(&path, b"another database", 0).unwrap();
        assert_eq!(deliveries(&other), 0);
        assert_eq!(other.last_seq, 0);
        let missing = recover(&dir.path().join("none"), &ID, 7).unwrap();
        assert_eq!((deliveries(&missing), missing.last_seq), (0, 7));
    }

    #[test]
    fn the_ring_runs_through_its_segments_and_overwrites_only_what_the_database_has_made_durable() {
        // Two segments of 8 blocks: two batches of three blocks fit in each (a batch never
        // crosses into the next segment), the fifth starts the next lap in the first segment.
        let (_dir, path, gate, mut log) = new_log(8 * BLOCK, 2);
        log.room_timeout = Duration::from_millis(50);
        let ends: Vec<u64> = (0..4)
            .map(|n| ended(&log.append(&[large(n)], &gate).unwrap()).1)
            .collect();
        assert_eq!(ends, [3, 6, 11, 14].map(|blocks| blocks * BLOCK));
        // The second segment was made before the log reached it, written with zeros: every
        // block is there, so appends overwrite and never allocate.
        let second = std::fs::metadata(segment_path(&path, 1)).unwrap();
        assert_eq!(second.len(), 8 * BLOCK);
        assert!(second.blocks() * 512 >= 8 * BLOCK, "not sparse");
        assert!(!segment_path(&path, 2).exists());

        let refused = log.append(&[large(4)], &gate).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::TimedOut, "{refused}");
        assert_eq!(seqs(&recover(&path, &ID, 0).unwrap()), [1, 2, 3, 4]);

        // The database has made the first batch durable: the next lap may overwrite it.
        gate.advance(ends[0]);
        let appended = log.append(&[large(5)], &gate).unwrap();
        assert_eq!(ended(&appended), (6, 16 * BLOCK + 3 * BLOCK));
        assert_eq!(seqs(&recover(&path, &ID, 1).unwrap()), [2, 3, 4, 6]);
        assert_eq!(
            appended[0].read().unwrap().decode().unwrap()[0].id,
            "delivery-5"
        );

        gate.close();
        let closed = log.append(&[large(7)], &gate).unwrap_err();
        assert!(closed.to_string().contains("stopped"), "{closed}");
    }

    #[test]
    fn after_a_failed_write_the_log_takes_nothing_more() {
        let (_dir, path, gate, mut log) = new_log(1 << 20, 2);
        log.append(&[record(0)], &gate).unwrap();
        // The disk refuses the next write (here: the file is open read-only).
        log.files[0] = Some(Arc::new(File::open(&path).unwrap()));
        assert!(log.append(&[record(1)], &gate).is_err());
        log.files[0] = Some(Arc::new(
            OpenOptions::new().write(true).open(&path).unwrap(),
        ));
        let refused = log.append(&[record(2)], &gate).unwrap_err();
        assert!(
            refused.to_string().contains("restart Hookscope"),
            "{refused}"
        );
        assert_eq!(seqs(&recover(&path, &ID, 0).unwrap()), [1]);
    }

    #[test]
    fn a_segment_holds_four_of_the_largest_deliveries_and_the_ring_two_gib() {
        assert_eq!(segment_size(1024 * 1024), MIN_SEGMENT);
        assert_eq!(segments(MIN_SEGMENT), 32);
        let segment = segment_size(100 * 1024 * 1024);
        assert_eq!(segment, 4 * 101 * 1024 * 1024);
        assert_eq!(segments(segment), 5);
        assert_eq!(segments(segment_size(1024 * 1024 * 1024)), 2);
    }
}
