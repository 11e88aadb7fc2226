//! A node started with `storage "raft"` on the database of the single-node store (the
//! same `strongroom.db`, no raft log yet) adopts its entries as its state machine. Joiners
//! would replay the log from its first entry and never see those entries, so the node
//! forms its one-node cluster at once, snapshots the adopted state and purges the log
//! behind it: a joiner then starts from the snapshot, which holds everything.

use super::RaftStorage;
use crate::storage::StorageError;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Whether `dir` holds a single-node database and no raft log (checked before the raft
/// node opens it, which creates the log).
pub fn is_pre_raft(dir: &Path) -> bool {
    dir.join("strongroom.db").exists() && !dir.join("raft-log.db").exists()
}

fn io(e: impl std::fmt::Display) -> StorageError {
    StorageError::Io(format!("migrating the single-node database to raft: {e}"))
}

impl RaftStorage {
    fn entry_count(&self) -> Result<u64, StorageError> {
        self.sm.len().map_err(io)
    }

    /// Form the one-node cluster over the adopted entries and leave them in a snapshot with
    /// no log before it (nothing to do when there are none).
    pub async fn migrate_pre_raft(&self) -> Result<(), StorageError> {
        let n = self.entry_count()?;
        if n == 0 || self.raft.is_initialized().await.map_err(io)? {
            return Ok(());
        }
        tracing::info!(
            entries = n,
            "adopting a single-node database: forming a one-node raft cluster over it"
        );
        self.raft
            .initialize(BTreeMap::from([(self.id, self.me.clone())]))
            .await
            .map_err(io)?;
        let applied = self
            .raft
            .wait(Some(WAIT))
            .metrics(
                |m| m.state == openraft::ServerState::Leader && m.last_applied.is_some(),
                "leading the new cluster",
            )
            .await
            .map_err(io)?
            .last_applied
            .map_or(0, |l| l.index);
        self.raft.trigger().snapshot().await.map_err(io)?;
        self.raft
            .wait(Some(WAIT))
            .metrics(
                move |m| m.snapshot.is_some_and(|s| s.index >= applied),
                "snapshot of the adopted entries",
            )
            .await
            .map_err(io)?;
        self.raft.trigger().purge_log(applied).await.map_err(io)?;
        tracing::info!(
            index = applied,
            "single-node database adopted; joiners start from its snapshot"
        );
        Ok(())
    }
}
