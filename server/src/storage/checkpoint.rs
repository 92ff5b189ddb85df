//! The checkpointer: copies the WAL's committed pages back into the database file on a
//! connection of its own, beside the writer, so that the writer's commits (and the senders
//! waiting on them) do not stall while megabytes are copied. The writer's own automatic
//! checkpoint then finds the pages copied already and only starts the WAL over, which keeps the
//! file small.

use std::time::Duration;

use sqlx::{Connection, SqliteConnection};
use tokio::sync::mpsc;

/// The shortest time between two checkpoints while the writer commits.
const EVERY: Duration = Duration::from_millis(20);

/// Tells the checkpointer that the writer committed; dropping it stops the checkpointer.
pub struct Nudge(mpsc::Sender<()>);

impl Nudge {
    /// Never waits: a nudge already pending covers this commit too.
    pub fn committed(&self) {
        let _ = self.0.try_send(());
    }
}

/// Starts the checkpointer on `connection`; it closes the connection and ends once the
/// [`Nudge`] is dropped.
pub fn spawn(mut connection: SqliteConnection) -> (Nudge, tokio::task::JoinHandle<()>) {
    let (nudge, mut nudged) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        while nudged.recv().await.is_some() {
            // PASSIVE: copies what it can without waiting for readers or blocking the writer.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut connection)
                .await
            {
                tracing::warn!(error = %e, "checkpointing the WAL");
            }
            tokio::time::sleep(EVERY).await;
        }
        if let Err(e) = connection.close().await {
            tracing::warn!(error = %e, "closing the checkpointer's database connection");
        }
    });
    (Nudge(nudge), task)
}
