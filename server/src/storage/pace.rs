//! The pace of indexing: how much each of the writer's commits indexes, from its reading of the
//! load. A chunk of a thousand deliveries costs about a third of what the same deliveries cost
//! indexed a few at a time in every commit (the pages every commit rewrites are shared, and the
//! random pages of the dedupe index are written once per chunk), so indexing goes in chunks:
//! - while deliveries trickle in (about one per commit), each commit indexes what it appends: a
//!   delivery is listed the moment it is acknowledged;
//! - while commits are light (fewer than [`LIGHT`] deliveries each, smoothed), the senders are
//!   not queueing on the writer: a chunk of up to [`LIGHT_CHUNK`] goes into the next commit once
//!   [`MIN_CHUNK`] deliveries wait or the oldest has waited [`MAX_LAG`], so a steady load is
//!   listed well within a second;
//! - while commits are heavy (a burst: senders queue behind the writer), it appends only, and the
//!   backlog is counted, never hidden (`pending`); it is indexed once the queue has been quiet
//!   for the writer's `IDLE`, when a reader asks (`Writer::catch_up`), and by [`BUSY_CHUNK`] at least every
//!   [`CATCH_UP_EVERY`] while the burst goes on.

use std::time::{Duration, Instant};

/// Commits smaller than this on average (smoothed) mean a light load: the writer has room to
/// index as it goes. Commits grow with the rate (a commit takes about a millisecond, most of it
/// the sync): here a steady 10,000 a second makes commits of about 15, a burst of 64 senders
/// commits of about 30 (half of them wait while the other half commit).
const LIGHT: f64 = 22.0;
/// Commits of about one delivery mean a trickle (up to several hundred a second here): each is
/// indexed in its own commit, listed the moment it is acknowledged.
const TRICKLE: f64 = 2.0;
/// Under a light load, a chunk is indexed once this many deliveries wait...
const MIN_CHUNK: u64 = 1024;
/// ...or once the oldest of them has waited this long.
const MAX_LAG: Duration = Duration::from_millis(200);
/// The most deliveries one transaction indexes for a reader, or once the queue is quiet: 20 to
/// 45 ms of work here, so a reader's wait stays under 100 ms.
pub const INDEX_CHUNK: i64 = 1024;
/// The most deliveries one transaction indexes under a light load: larger chunks cost less per
/// delivery, and nobody waits on them but the senders of the next commit.
const LIGHT_CHUNK: i64 = 2048;
/// The most deliveries indexed every [`CATCH_UP_EVERY`] during a burst: the backlog moves on
/// while the burst goes on, at the cost of a few ms for one commit.
const BUSY_CHUNK: i64 = 128;
/// The longest a backlog goes without being indexed while deliveries keep coming.
const CATCH_UP_EVERY: Duration = Duration::from_secs(1);
/// The last `seq` committed and the last one indexed.
#[derive(Clone, Copy, Debug)]
pub struct Seqs {
    pub last: i64,
    pub indexed: i64,
}

impl Seqs {
    pub fn backlog(self) -> u64 {
        (self.last - self.indexed).max(0) as u64
    }
}

/// The writer's reading of its load, which decides how much each commit indexes.
pub struct Pace {
    /// Deliveries per commit, smoothed over about a hundred commits (a commit right after a chunk
    /// is left out: the chunk held its senders back).
    per_commit: f64,
    /// Commits since the last one that indexed more than it appended (a chunk).
    since_chunk: u32,
    /// Since when deliveries have waited to be indexed (`None` when none wait).
    pending_since: Option<Instant>,
    /// When a chunk was last indexed, or nothing was left to index.
    caught_up_at: Instant,
}

impl Pace {
    pub fn new(seqs: Seqs) -> Self {
        let now = Instant::now();
        Self {
            per_commit: 0.0,
            since_chunk: 2,
            pending_since: (seqs.backlog() > 0).then_some(now),
            caught_up_at: now,
        }
    }

    /// How many deliveries a commit indexes that appends `appending` deliveries, with a reader
    /// waiting or not.
    pub fn index_limit(&self, appending: usize, reader_waiting: bool, seqs: Seqs) -> i64 {
        if reader_waiting {
            return INDEX_CHUNK;
        }
        let waiting = seqs.backlog() + appending as u64;
        let lagging = self
            .pending_since
            .is_some_and(|since| since.elapsed() >= MAX_LAG);
        // Never two chunks in a row: the commit after a chunk is inflated by the senders it held
        // back, and only the one after that says what the load is.
        let settled = self.since_chunk >= 2;
        if self.per_commit < TRICKLE
            || (settled && self.per_commit < LIGHT && (waiting >= MIN_CHUNK || lagging))
        {
            LIGHT_CHUNK
        } else if seqs.backlog() > 0 && self.caught_up_at.elapsed() >= CATCH_UP_EVERY {
            BUSY_CHUNK
        } else {
            0
        }
    }

    /// Notes a commit that appended `appended` deliveries and moved the sequence from `before`
    /// to `seqs`.
    pub fn committed(&mut self, before: Seqs, seqs: Seqs, appended: usize) {
        let now = Instant::now();
        let indexed = (seqs.indexed - before.indexed).max(0) as usize;
        if appended > 0 && self.since_chunk > 0 {
            self.per_commit = 0.98 * self.per_commit + 0.02 * appended as f64;
        }
        self.since_chunk = if indexed > appended {
            0
        } else {
            self.since_chunk.saturating_add(1)
        };
        let indexed = indexed > 0;
        if indexed || seqs.backlog() == 0 {
            self.caught_up_at = now;
        }
        self.pending_since = match (seqs.backlog(), self.pending_since) {
            (0, _) => None,
            // A chunk moved the oldest on: what waits now came after it.
            (_, Some(_)) if indexed => Some(now),
            (_, since) => since.or(Some(now)),
        };
    }
}
