//! OpenBao's HA endpoints over the raft node: `sys/leader`, the standby side of
//! `sys/health`, `sys/ha-status`, `sys/storage/raft/configuration`, `remove-peer`,
//! `sys/step-down`.

use crate::request::ApiError;
use crate::storage::raft::RaftStorage;
use serde_json::{json, Value};
use std::time::Duration;

/// `https://host:port` as OpenBao reports cluster addresses.
fn cluster_url(hp: &str) -> String {
    format!("https://{hp}")
}

/// `sys/leader` on a raft node (`active_time` only known on the active node).
pub fn leader(r: &RaftStorage, active_since: Option<String>) -> Value {
    let m = r.raft().metrics().borrow().clone();
    let is_self = r.is_leader();
    let (addr, cluster) = match r.leader() {
        Some((_, n)) => (n.api_addr, cluster_url(&n.cluster_addr)),
        None => (String::new(), String::new()),
    };
    let committed = m.last_applied.map_or(0, |l| l.index).max(r.applied_index());
    json!({
        "ha_enabled": true,
        "is_self": is_self,
        "active_time": if is_self { active_since.unwrap_or_default() } else { "0001-01-01T00:00:00Z".into() },
        "leader_address": addr,
        "leader_cluster_address": cluster,
        "raft_committed_index": committed,
        "raft_applied_index": r.applied_index(),
    })
}

/// `sys/ha-status`: every member, the active one marked.
pub fn ha_status(r: &RaftStorage) -> Value {
    let m = r.raft().metrics().borrow().clone();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let nodes: Vec<Value> = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, n)| {
            let active = m.current_leader == Some(*id);
            json!({
                "hostname": host,
                "api_address": n.api_addr,
                "cluster_address": cluster_url(&n.cluster_addr),
                "active_node": active,
                "last_echo": if active { Value::Null } else { json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)) },
                "version": crate::core::VERSION,
                "upgrade_version": crate::core::VERSION,
            })
        })
        .collect();
    json!({ "nodes": nodes })
}

/// `sys/storage/raft/configuration`.
pub fn configuration(r: &RaftStorage) -> Value {
    let servers: Vec<Value> = r
        .peers()
        .into_iter()
        .map(|p| {
            json!({
                "node_id": p.node_id,
                "address": p.address,
                "leader": p.leader,
                "protocol_version": "3",
                "voter": p.voter,
            })
        })
        .collect();
    json!({ "config": { "servers": servers, "index": 0 } })
}

pub(crate) fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, ApiError> {
    // sys/ requests run on the blocking pool, where waiting on the runtime is allowed
    let h = tokio::runtime::Handle::try_current()
        .map_err(|_| ApiError::internal("no async runtime"))?;
    Ok(tokio::task::block_in_place(|| h.block_on(f)))
}

/// `sys/storage/raft/remove-peer`.
pub fn remove_peer(r: &RaftStorage, server_id: &str) -> Result<(), ApiError> {
    if server_id.is_empty() {
        return Err(ApiError::bad_request("no server id provided"));
    }
    block_on(r.remove_member(server_id))?.map_err(|e| ApiError::bad_request(e.to_string()))
}

/// How long `sys/seal` on the active node waits for another node to take over.
const HANDOVER: Duration = Duration::from_secs(5);

/// This node is sealed: it serves nothing, so it must not lead. It stands for no election
/// while sealed and, if it leads, stops its heartbeats: the others' leader lease runs out
/// and they elect one of them (openraft 0.9 has no leadership transfer). It still
/// replicates and votes. Returns at once (see [`await_handover`]).
///
/// OpenBao 2.7 (three `bao server` raft nodes, `bao operator seal` on the active one):
/// the seal call returns after 1.7-2 s, when another node is active; the sealed node
/// answers `sys/health` 503 (`sealed`, `standby`), `sys/leader`, `sys/ha-status` and
/// `sys/step-down` 503 "Vault is sealed"; it stays a voter in `list-peers` (autopilot:
/// unhealthy); unsealed, it is a standby at once. `sys/seal` on a standby seals that
/// standby.
pub fn sealed(r: &RaftStorage) {
    let rc = r.raft().runtime_config();
    rc.elect(false);
    rc.heartbeat(false);
}

/// This node is unsealed: it takes part in elections again (and heartbeats if it leads,
/// which it can only do if nobody took over while it was sealed).
pub fn unsealed(r: &RaftStorage) {
    let rc = r.raft().runtime_config();
    rc.heartbeat(true);
    rc.elect(true);
}

/// After sealing the leader: wait until another node leads, or [`HANDOVER`] passed (no
/// other node could be elected: the others are down or sealed), so that `sys/seal` answers
/// once there is a new active node, as OpenBao's does.
pub fn await_handover(r: &RaftStorage) -> Result<(), ApiError> {
    let (raft, me) = (r.raft().clone(), r.node_id());
    block_on(async move {
        let _ = raft
            .wait(Some(HANDOVER))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "another leader",
            )
            .await;
    })
}

/// `sys/step-down`: stop sending heartbeats, serve nothing as the active node (requests wait
/// for the next one and go there) and stand for no election until another member leads (or
/// 5 s pass), then take part again.
pub fn step_down(r: &RaftStorage) -> Result<(), ApiError> {
    if !r.is_leader() {
        return Ok(());
    }
    let raft = r.raft().clone();
    let me = r.node_id();
    r.set_stepping_down(true);
    let stepped = block_on(async move {
        raft.runtime_config().heartbeat(false);
        raft.runtime_config().elect(false);
        let _ = raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "another leader",
            )
            .await;
        raft.runtime_config().heartbeat(true);
        raft.runtime_config().elect(true);
    });
    r.set_stepping_down(false);
    stepped
}
