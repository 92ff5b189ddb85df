//! One server per database file. A second `hookscope serve` on the same file would interleave
//! its writes and its `seq` numbers with the first one's, so the server takes an exclusive
//! `flock` on the database file itself before it reads or changes anything, and refuses to start
//! when another process holds it.
//!
//! `flock` locks are separate from the POSIX record locks SQLite takes on the same file, so the
//! two never interfere. The lock's file descriptor must stay open while SQLite has the file
//! open: closing any descriptor of a file drops every POSIX lock the process holds on it, which
//! is why the server keeps the [`DatabaseLock`] until its connections are closed.

use std::{fs::File, path::PathBuf};

use anyhow::Context;

/// The held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
}

impl DatabaseLock {
    /// Opens the database file at `path` (creating it empty if missing: SQLite reads an empty
    /// file as an empty database) and locks it, or says who holds it.
    pub async fn acquire(path: PathBuf) -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(move || Self::acquire_blocking(&path)).await?
    }

    fn acquire_blocking(path: &std::path::Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening the database file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "{} is in use by another Hookscope server; stop that one first, or give this one \
                 another --database-url",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking the database file {}", path.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_lock_on_the_same_file_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let first = DatabaseLock::acquire(path.clone()).await.unwrap();
        let error = DatabaseLock::acquire(path.clone()).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("in use by another Hookscope server"),
            "{error}"
        );
        drop(first);
        DatabaseLock::acquire(path).await.unwrap();
    }
}
