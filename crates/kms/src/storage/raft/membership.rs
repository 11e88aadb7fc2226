//! Cluster membership operations on the leader: add a node (as a learner that catches up,
//! then a voter), remove one, list them. Promotion of joined nodes: [`super::autopilot`].

use super::types::{raft_id, ClusterNode, NodeId};
use super::RaftStorage;
use crate::storage::StorageError;
use openraft::ChangeMembers;
use std::collections::BTreeSet;

/// One server as `operator raft list-peers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node_id: String,
    pub address: String,
    pub leader: bool,
    pub voter: bool,
}

fn err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Io(e.to_string())
}

impl RaftStorage {
    /// The members of the newest membership config this node knows.
    pub fn peers(&self) -> Vec<Peer> {
        let m = self.raft.metrics().borrow().clone();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = mem.voter_ids().collect();
        let mut out: Vec<Peer> = mem
            .nodes()
            .map(|(id, n)| Peer {
                node_id: n.name.clone(),
                address: n.cluster_addr.clone(),
                leader: m.current_leader == Some(*id),
                voter: voters.contains(id),
            })
            .collect();
        // the leader first, then by name (OpenBao lists in configuration order)
        out.sort_by(|a, b| b.leader.cmp(&a.leader).then(a.node_id.cmp(&b.node_id)));
        out
    }

    /// The raft id of `node`, refused when another member's name hashes to it.
    fn free_id_for(&self, node: &ClusterNode) -> Result<NodeId, StorageError> {
        let id = raft_id(&node.name);
        match self.member(id) {
            Some(existing) if existing.name != node.name => Err(StorageError::Io(format!(
                "node id {:?} collides with member {:?}",
                node.name, existing.name
            ))),
            _ => Ok(id),
        }
    }

    /// Add `node` as a learner, wait until it has caught up, then make it a voter.
    /// Adding a node that is already a member only updates its addresses.
    pub async fn add_member(&self, node: ClusterNode) -> Result<(), StorageError> {
        let id = self.free_id_for(&node)?;
        self.raft.add_learner(id, node, true).await.map_err(err)?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Add `node` as a non-voter without waiting for it (the joining node only starts
    /// talking once it has the answer); [`autopilot`] makes it a voter once caught up.
    pub async fn add_learner(&self, node: ClusterNode) -> Result<(), StorageError> {
        let id = self.free_id_for(&node)?;
        self.raft.add_learner(id, node, false).await.map_err(err)?;
        Ok(())
    }

    /// Resolves once this node is a member and has applied the entry that made it one (so
    /// it holds everything written before it joined).
    pub async fn wait_joined(&self, timeout: std::time::Duration) -> Result<(), StorageError> {
        let id = self.id;
        let applied = self.sm.inner.applied.subscribe();
        self.raft
            .wait(Some(timeout))
            .metrics(
                move |m| {
                    let mem = &m.membership_config;
                    mem.membership().get_node(&id).is_some()
                        && m.current_leader.is_some()
                        && mem.log_id().map_or(0, |l| l.index) <= *applied.borrow()
                },
                "joined and caught up",
            )
            .await
            .map(|_| ())
            .map_err(err)
    }

    /// Remove the member called `name` (voter or not) from the cluster.
    pub async fn remove_member(&self, name: &str) -> Result<(), StorageError> {
        let id = raft_id(name);
        if self.member(id).is_none() {
            return Err(StorageError::Io(format!("no raft peer named {name:?}")));
        }
        let ids = BTreeSet::from([id]);
        let voter = {
            let m = self.raft.metrics().borrow().clone();
            let is_voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == id);
            is_voter
        };
        let change = if voter {
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(err)?;
        Ok(())
    }

    fn member(&self, id: NodeId) -> Option<ClusterNode> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config.membership().get_node(&id).cloned()
    }
}
