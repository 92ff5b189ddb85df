//! Telling a retry from a new event as deliveries are acknowledged, before indexing has grouped
//! them: an event already listed says so itself (its first delivery's `seq`); for the rest, the
//! first deliveries not listed yet are remembered here until indexing has caught up with them.

use std::{
    collections::{HashMap, VecDeque},
    hash::BuildHasher,
};

use app::model::DeliveryRole;

use crate::{delivery::Committed, storage::ListedEvent};

/// What the stream says of a delivery's place in its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub role: DeliveryRole,
    /// The event's key, when it is listed.
    pub event_key: Option<i64>,
    /// For a retry: its body differs from the first delivery's.
    pub body_differs: bool,
}

/// A first delivery not listed yet: its `seq` and the first 8 bytes of its body's digest
/// (enough to tell a differing retry; a burst leaves many of these).
#[derive(Debug, Clone, Copy)]
struct First {
    seq: i64,
    body_digest: u64,
}

fn digest(sha256: &[u8; 32]) -> u64 {
    u64::from_le_bytes(sha256[..8].try_into().expect("8 bytes"))
}

/// The first deliveries of events not listed yet, by a keyed hash of `(source, dedupe key)`
/// (8 bytes a key, whatever its length: a burst leaves many unlisted).
#[derive(Default)]
pub struct Unlisted {
    hasher: std::hash::RandomState,
    firsts: HashMap<u64, First>,
    /// The same keys in `seq` order, so that forgetting what indexing has listed is cheap.
    order: VecDeque<(i64, u64)>,
}

impl Unlisted {
    fn key(&self, d: &Committed) -> u64 {
        self.hasher.hash_one((d.source.as_str(), d.dedupe_key()))
    }

    /// The role of `d`, given its event if listed, remembering it when it opens an event that
    /// is not listed yet.
    pub fn role_of(&mut self, d: &Committed, listed: Option<&ListedEvent>) -> Role {
        if let Some(event) = listed.filter(|e| e.first_seq <= d.seq) {
            return Role {
                role: role(event.first_seq == d.seq),
                event_key: Some(event.key),
                body_differs: event.first_seq != d.seq && event.body_sha256 != d.body_sha256,
            };
        }
        let key = self.key(d);
        match self.firsts.get(&key) {
            Some(first) if first.seq < d.seq => Role {
                role: DeliveryRole::Retry,
                event_key: None,
                body_differs: first.body_digest != digest(&d.body_sha256),
            },
            Some(_) => Role::new_event(),
            None => {
                self.firsts.insert(
                    key,
                    First {
                        seq: d.seq,
                        body_digest: digest(&d.body_sha256),
                    },
                );
                self.order.push_back((d.seq, key));
                Role::new_event()
            }
        }
    }

    /// Forgets the first deliveries up to `indexed_seq`: their events are listed now.
    pub fn forget_listed(&mut self, indexed_seq: i64) {
        while let Some(&(seq, key)) = self.order.front() {
            if seq > indexed_seq {
                break;
            }
            self.order.pop_front();
            if self.firsts.get(&key).is_some_and(|f| f.seq == seq) {
                self.firsts.remove(&key);
            }
        }
    }

    /// The role `d` would have, without remembering anything (for a resume's backlog).
    pub fn peek(&self, d: &Committed) -> Option<Role> {
        let first = self.firsts.get(&self.key(d))?;
        (first.seq < d.seq).then(|| Role {
            role: DeliveryRole::Retry,
            event_key: None,
            body_differs: first.body_digest != digest(&d.body_sha256),
        })
    }
}

impl Role {
    fn new_event() -> Self {
        Self {
            role: DeliveryRole::New,
            event_key: None,
            body_differs: false,
        }
    }
}

fn role(first: bool) -> DeliveryRole {
    if first {
        DeliveryRole::New
    } else {
        DeliveryRole::Retry
    }
}
