//! The live stream: every acknowledged delivery, told to the websocket viewers of
//! `GET /api/stream` as soon as its commit returns, never waiting for indexing.
//!
//! - [`Hub`]: reads the writer's feed in commit order, tells retries from new events
//!   (`roles`), serializes each message **once**, and fans it out on one `broadcast` channel. The
//!   channel's ring is every viewer's bounded queue: a viewer that falls behind it is told it
//!   lagged, with the cursor to resume from, and never holds anything up.
//! - `viewer`: one websocket: auth and `Origin`, the resume backlog (read from `deliveries`,
//!   so the cursor is the delivery's `seq`), the filter, ping/pong.

mod roles;
pub mod viewer;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicI64, Ordering},
};

use app::model::{LiveDelivery, StreamMessage};
use axum::extract::ws::Utf8Bytes;
use tokio::sync::{broadcast, watch};

pub use self::roles::Role;
use self::roles::Unlisted;
use crate::{
    delivery::Committed,
    storage::{CommittedBatch, FeedReader, Listed, Store},
    timestamp::format_rfc3339,
};

/// What the hub fans out. (Each frame lives in an `Arc` on the ring: its size does not matter.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Frame {
    /// A delivery and its message, serialized once for every viewer.
    Delivery {
        delivery: Committed,
        text: Utf8Bytes,
    },
    /// The hub missed deliveries after `after` (it fell behind the writer): live viewers must
    /// resume from the database.
    Gap { after: i64 },
}

/// The live stream's fan-out, cheap to clone.
#[derive(Clone)]
pub struct Hub(Arc<Inner>);

struct Inner {
    frames: broadcast::Sender<Arc<Frame>>,
    /// The `seq` of the last delivery fanned out (or skipped over by a gap).
    last_seq: AtomicI64,
    unlisted: Mutex<Unlisted>,
    store: Store,
    closing: watch::Sender<bool>,
}

impl Hub {
    /// Starts the hub on the writer's feed; it ends when the writer does. `queue` is how many
    /// messages the fan-out ring holds: how far a viewer may fall behind before it is told it
    /// lagged.
    pub async fn spawn(
        store: Store,
        feed: FeedReader,
        queue: usize,
    ) -> sqlx::Result<(Self, tokio::task::JoinHandle<()>)> {
        let last_seq = store.last_seq().await?;
        let mut unlisted = Unlisted::default();
        for d in store.unlisted_deliveries().await? {
            unlisted.role_of(&d, None);
        }
        let (frames, _) = broadcast::channel(queue);
        let hub = Self(Arc::new(Inner {
            frames,
            last_seq: AtomicI64::new(last_seq),
            unlisted: Mutex::new(unlisted),
            store,
            closing: watch::Sender::new(false),
        }));
        let task = tokio::spawn(hub.clone().fan_out_until_stopped(feed));
        Ok((hub, task))
    }

    /// A new viewer's place on the ring: everything fanned out from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.0.frames.subscribe()
    }

    /// The `seq` of the last delivery fanned out.
    pub fn last_seq(&self) -> i64 {
        self.0.last_seq.load(Ordering::Acquire)
    }

    /// The role a backlog delivery not listed yet has, from what the hub remembers.
    pub fn unlisted_role(&self, d: &Committed) -> Option<Role> {
        self.0.unlisted.lock().expect("not poisoned").peek(d)
    }

    /// Tells every viewer that the server is stopping.
    pub fn close(&self) {
        self.0.closing.send_replace(true);
    }

    /// Completes once [`Hub::close`] has been called.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.0.closing.subscribe()
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    async fn fan_out_until_stopped(self, mut feed: FeedReader) {
        let mut batches = Vec::new();
        // Whatever is queued is taken at once: one lookup for many commits in a burst.
        while feed.recv_many(&mut batches, 256).await > 0 {
            let indexed_seq = batches.last().map_or(0, |b: &CommittedBatch| b.indexed_seq);
            let deliveries: Vec<Committed> = batches.drain(..).flat_map(|b| b.deliveries).collect();
            self.fan_out(deliveries, indexed_seq).await;
        }
    }

    /// Tells the viewers of `deliveries` (in commit order), first of any gap before them;
    /// indexing had listed everything up to `indexed_seq` when the last of them committed.
    async fn fan_out(&self, deliveries: Vec<Committed>, indexed_seq: i64) {
        let Some(first) = deliveries.first() else {
            return;
        };
        let last = self.last_seq();
        if first.seq > last + 1 {
            tracing::warn!(after = last, "the live stream fell behind the writer");
            let _ = self.0.frames.send(Arc::new(Frame::Gap { after: last }));
        }
        // With nobody watching, only what the roles need later is kept: no lookup, no message.
        let watched = self.0.frames.receiver_count() > 0;
        let listed = if watched {
            self.0
                .store
                .listed_events(&deliveries)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "reading the events of live deliveries");
                    Listed::default()
                })
        } else {
            Listed::default()
        };
        let last = deliveries.last().map_or(last, |d| d.seq);
        let roles: Vec<Role> = {
            let mut unlisted = self.0.unlisted.lock().expect("not poisoned");
            let roles = deliveries.iter().map(|d| {
                let key = (d.source.as_str().to_owned(), d.dedupe_key().to_owned());
                unlisted.role_of(d, listed.events.get(&key))
            });
            let roles = roles.collect();
            unlisted.forget_listed(listed.indexed_seq.max(indexed_seq));
            roles
        };
        let frames: Vec<Frame> = if watched {
            deliveries
                .into_iter()
                .zip(roles)
                .map(|(d, role)| frame(d, role))
                .collect()
        } else {
            Vec::new()
        };
        for frame in frames {
            let _ = self.0.frames.send(Arc::new(frame));
        }
        self.0.last_seq.store(last, Ordering::Release);
    }
}

/// The frame of `delivery` in its `role`.
fn frame(delivery: Committed, role: Role) -> Frame {
    let text = message_text(&delivery, role);
    Frame::Delivery { delivery, text }
}

/// The message of `d` in its `role`, serialized.
pub fn message_text(d: &Committed, role: Role) -> Utf8Bytes {
    let message = StreamMessage::Delivery(live_delivery(d, role));
    serde_json::to_string(&message)
        .expect("a message serializes")
        .into()
}

fn live_delivery(d: &Committed, role: Role) -> LiveDelivery {
    LiveDelivery {
        cursor: d.seq.to_string(),
        seq: d.seq,
        delivery_id: d.id.clone(),
        role: role.role,
        event_key: role.event_key,
        source: d.source.as_str().to_owned(),
        event_id: d.envelope.event_id.clone(),
        event_type: d.envelope.event_type.clone(),
        body_kind: d.envelope.kind,
        date_occurred: d.envelope.date_occurred.clone(),
        received_at: format_rfc3339(d.received_at),
        signature: d.signature,
        body_differs: role.body_differs,
        size: d.size,
        response_status: d.response_status,
    }
}
