//! Whether the database takes writes, and when to try again after it did not.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use super::writer::MAX_BATCH_BYTES;

/// The free space a failed database must have again before the writer probes it with a write:
/// room for a whole batch and its WAL frames, so that a disk with room for one page but not for a
/// delivery does not pass for healthy.
const ROOM_TO_RETRY: u64 = 2 * MAX_BATCH_BYTES as u64;

/// Whether the database takes writes: `None` while it does, the reason while it does not (set
/// by a failed commit, cleared by the next one that succeeds).
#[derive(Debug, Default)]
pub struct Health {
    failure: Mutex<Option<String>>,
}

impl Health {
    /// Why the last write failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the last write failed (without copying the reason).
    pub fn is_failing(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    pub(super) fn set(&self, failure: Option<String>) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = failure;
    }
}

/// True when the filesystem holding `database` has [`ROOM_TO_RETRY`] free, or cannot say.
pub async fn has_room(database: &Path) -> bool {
    let folder = match database.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    tokio::task::spawn_blocking(move || {
        free_space(&folder).is_none_or(|free| free >= ROOM_TO_RETRY)
    })
    .await
    .unwrap_or(true)
}

#[cfg(unix)]
fn free_space(folder: &Path) -> Option<u64> {
    let stats = rustix::fs::statvfs(folder).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

#[cfg(not(unix))]
fn free_space(_folder: &Path) -> Option<u64> {
    None
}
