//! The whole replicated state at once: read out for `sys/storage/raft/snapshot`, and
//! replaced through the log by a restore (so every member applies the same replacement).

use super::RaftStorage;
use crate::storage::{Storage, StorageError, TxOp};
use std::collections::{BTreeMap, BTreeSet};

/// A member as a snapshot records it.
#[derive(Debug, Clone)]
pub struct SnapshotServer {
    pub name: String,
    pub address: String,
    pub voter: bool,
}

/// Everything applied on this node, with where in the log it stands.
pub struct Export {
    pub entries: BTreeMap<String, Vec<u8>>,
    pub index: u64,
    pub term: u64,
    pub config_index: u64,
    pub servers: Vec<SnapshotServer>,
}

impl RaftStorage {
    /// Read every applied entry in one read transaction.
    pub fn export(&self) -> Result<Export, StorageError> {
        let m = self.raft.metrics().borrow().clone();
        let entries = self.sm.entries()?;
        let mem = m.membership_config.membership();
        let voters: BTreeSet<_> = mem.voter_ids().collect();
        let servers = mem
            .nodes()
            .map(|(id, n)| SnapshotServer {
                name: n.name.clone(),
                address: n.cluster_addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        Ok(Export {
            entries,
            index: m.last_applied.map_or(0, |l| l.index),
            term: m.last_applied.map_or(0, |l| l.leader_id.term),
            config_index: m.membership_config.log_id().map_or(0, |l| l.index),
            servers,
        })
    }

    /// Replace every entry with `entries` in one replicated change; blocks until it is
    /// committed and applied here.
    pub fn replace_all(&self, entries: BTreeMap<String, Vec<u8>>) -> Result<(), StorageError> {
        let mut current = self.sm.keys("")?;
        self.shared.overlay_fold("", &mut current);
        let mut ops: Vec<TxOp> = current
            .into_iter()
            .filter(|k| !entries.contains_key(k))
            .map(TxOp::Delete)
            .collect();
        ops.extend(entries.into_iter().map(|(k, v)| TxOp::Put(k, v)));
        self.commit(ops)
    }
}
