//! The read lease of the active node: one quorum confirmation serves every request for a
//! short while, instead of a heartbeat round (and a wait for the state machine) per request.
//!
//! Why it is safe: a lease is granted only after [`openraft::Raft::ensure_linearizable`]
//! succeeded in the current term, started at `t0`. That call confirmed the leadership with a
//! quorum by heartbeats sent after `t0`, and waited until everything committed before it
//! (the previous terms' entries included) was applied here. A voter that acknowledged such a
//! heartbeat refuses to vote for anyone else for openraft's leader lease
//! (`election_timeout_max`) from then on, and does not stand for election itself before its
//! election timeout (`election_timeout_min`); so no other node can lead before
//! `t0 + election_timeout_min`. Our lease is half of that, which leaves a wide margin for
//! clock-rate drift between nodes. While it lasts, every write acknowledged in this term was
//! applied here before it was acknowledged (see [`super::proposer`]), so a local read sees
//! every acknowledged write. On a one-voter membership the confirmation is immediate.
//!
//! A lease is tied to the term it was granted in and is dropped when the term changes, this
//! node stops leading or the membership changes.

use super::types::{NodeId, Raft};
use crate::storage::StorageError;
use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// What a lease was granted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    term: u64,
    /// The index of the log entry that set the effective membership.
    membership: Option<u64>,
}

pub struct Lease {
    length: Duration,
    held: Mutex<Option<(Stamp, Instant)>>,
    /// One confirmation in flight: the requests that arrive meanwhile wait for it.
    renewing: tokio::sync::Mutex<()>,
}

impl Lease {
    pub fn new(election_min_ms: u64) -> Self {
        Self {
            length: Duration::from_millis(election_min_ms / 2),
            held: Mutex::new(None),
            renewing: tokio::sync::Mutex::new(()),
        }
    }

    /// The current term and membership if this node leads (as far as it knows).
    fn leading(raft: &Raft, id: NodeId) -> Option<Stamp> {
        let m = raft.metrics();
        let m = m.borrow();
        let leads = m.state == openraft::ServerState::Leader && m.current_leader == Some(id);
        leads.then(|| Stamp {
            term: m.current_term,
            membership: m.membership_config.log_id().as_ref().map(|l| l.index),
        })
    }

    fn valid(&self, stamp: Stamp) -> bool {
        matches!(*self.held.lock(), Some((s, until)) if s == stamp && Instant::now() < until)
    }

    /// Whether this node belongs to no cluster yet (it forms its own at its first write,
    /// see `proposer::bootstrap`): its own copy is the only one.
    fn alone(raft: &Raft) -> bool {
        let m = raft.metrics();
        let m = m.borrow();
        let none = m
            .membership_config
            .membership()
            .voter_ids()
            .next()
            .is_none();
        none
    }

    /// Resolves once reads on this node are linearizable (see the module doc). A member
    /// that does not lead gets [`StorageError::NotActive`]: its copy may lag behind changes
    /// the active node acknowledged, so it serves nothing from it (requests that reach it
    /// are forwarded; one forwarded to it by a node with a stale view is refused, unrun,
    /// and sent again by that node). A node in no cluster yet serves its own copy.
    pub async fn confirm(&self, raft: &Raft, id: NodeId) -> Result<(), StorageError> {
        let Some(stamp) = Self::leading(raft, id) else {
            return if Self::alone(raft) {
                Ok(())
            } else {
                Err(StorageError::NotActive)
            };
        };
        if self.valid(stamp) {
            return Ok(());
        }
        let _one = self.renewing.lock().await;
        if self.valid(stamp) {
            return Ok(());
        }
        let t0 = Instant::now();
        raft.ensure_linearizable().await.map_err(|e| match e {
            // lost the lead while confirming: the request did not run; it goes to the new one
            openraft::error::RaftError::APIError(
                openraft::error::CheckIsLeaderError::ForwardToLeader(_),
            ) => StorageError::NotActive,
            e => StorageError::Io(format!("not confirmed as the active node: {e}")),
        })?;
        // granted only if nothing changed while confirming
        if Self::leading(raft, id) == Some(stamp) {
            *self.held.lock() = Some((stamp, t0 + self.length));
        }
        Ok(())
    }
}
