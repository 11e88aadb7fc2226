//! Joining in the background: `retry_join` stanzas in the config, or `raft join` with
//! `retry`. Every two seconds, until this node is in a cluster, ask each leader in turn for
//! a challenge; once one answers, wait for the unseal (which answers the challenge) — as
//! OpenBao's loop does ("waiting for unseal keys to be supplied").

use super::join::{fetch_challenge, HaState, JoinTarget};
use crate::storage::raft::RaftStorage;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

const EVERY: Duration = Duration::from_secs(2);

/// Start the loop unless one runs already. It stops once this node is in a cluster (its
/// raft state holds a membership), or when the node shuts down.
pub fn spawn(ha: Arc<HaState>, raft: &Arc<RaftStorage>, targets: Vec<JoinTarget>, non_voter: bool) {
    if targets.is_empty() || ha.retrying.swap(true, Ordering::SeqCst) {
        return;
    }
    let weak = Arc::downgrade(raft);
    tokio::spawn(async move {
        run(&ha, weak, &targets, non_voter).await;
        ha.retrying.store(false, Ordering::SeqCst);
    });
}

async fn run(ha: &HaState, raft: Weak<RaftStorage>, targets: &[JoinTarget], non_voter: bool) {
    tracing::info!("raft retry join initiated");
    loop {
        let Some(r) = raft.upgrade() else { return };
        if r.raft().is_initialized().await.unwrap_or(false) {
            tracing::info!("raft retry join: this node is in a cluster");
            return;
        }
        if ha.join_pending() {
            tracing::debug!("raft retry join: waiting for unseal keys to be supplied");
        } else {
            attempt(ha, &r, targets, non_voter).await;
        }
        drop(r);
        tokio::time::sleep(EVERY).await;
    }
}

/// One round over the leaders; stops at the first that hands out a challenge.
async fn attempt(ha: &HaState, r: &RaftStorage, targets: &[JoinTarget], non_voter: bool) {
    let own = r.node().api_addr.trim_end_matches('/');
    for t in targets.iter().filter(|t| t.leader_api_addr != own) {
        tracing::info!(leader_addr = %t.leader_api_addr, "attempting to join possible raft leader node");
        match fetch_challenge(ha, r, t, non_voter).await {
            Ok(()) => {
                tracing::info!(leader_addr = %t.leader_api_addr, "raft challenge received; waiting for unseal keys to be supplied");
                return;
            }
            Err(e) => {
                tracing::warn!(leader_addr = %t.leader_api_addr, "failed to get raft challenge: {e}")
            }
        }
    }
}

/// The loop of a config's `retry_join` stanzas.
pub fn from_config(cfg: &crate::config::ServerConfig) -> (Vec<JoinTarget>, bool) {
    let crate::config::StorageConfig::Raft {
        retry_join,
        retry_join_as_non_voter,
        ..
    } = &cfg.storage
    else {
        return (vec![], false);
    };
    let targets = retry_join
        .iter()
        .map(|j| JoinTarget {
            leader_api_addr: j.leader_api_addr.trim_end_matches('/').to_string(),
            tls: j.into(),
        })
        .collect();
    (targets, *retry_join_as_non_voter)
}
