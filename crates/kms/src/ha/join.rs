//! Joining a raft cluster, OpenBao's way.
//!
//! 1. `sys/storage/raft/join` on the new node: it asks the leader for a challenge
//!    (`sys/storage/raft/bootstrap/challenge`): a random nonce sealed with the barrier, plus
//!    the sealed entries an unseal needs (seal config, sealed root key, sealed keyring), which
//!    the new node keeps locally: it now reports initialized and sealed.
//! 2. The operator unseals the new node with the cluster's shares. Only then can it open
//!    the challenge; it answers (`sys/storage/raft/bootstrap/answer`) and the leader, seeing
//!    the node holds the keys, adds it as a non-voter and hands it the cluster TLS keyring.
//! 3. The node replicates everything; the leader's autopilot makes it a voter once caught up.

use super::client;
use crate::barrier::{Barrier, UNSEAL_ENTRIES};
use crate::request::ApiError;
use crate::storage::raft::tls::{ClusterCerts, ClusterTls};
use crate::storage::raft::{ClusterNode, RaftStorage};
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const CHALLENGE_PATH: &str = "core/raft/challenge";
/// Where the cluster's TLS keyring is kept (in the barrier, replicated).
pub const TLS_PATH: &str = "core/raft/tls";
const CHALLENGE_TTL: Duration = Duration::from_secs(600);
const CATCH_UP: Duration = Duration::from_secs(60);

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A join in progress on this node (between `raft join` and the unseal).
pub struct PendingJoin {
    leader_api_addr: String,
    leader_ca_cert: Option<String>,
    challenge: Vec<u8>,
}

/// A challenge handed out: the nonce and when.
type Challenge = (Zeroizing<Vec<u8>>, Instant);

/// HA state of a node that outlives seal/unseal.
#[derive(Default)]
pub struct HaState {
    pending: Mutex<Option<PendingJoin>>,
    /// Challenges handed out by this (active) node: server id → nonce, when.
    challenges: Mutex<HashMap<String, Challenge>>,
}

fn st(e: crate::storage::StorageError) -> ApiError {
    ApiError::internal(e.to_string())
}

fn field<'a>(d: &'a Map<String, Value>, k: &str) -> &'a str {
    d.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Leader: `sys/storage/raft/bootstrap/challenge`.
pub fn challenge(
    ha: &HaState,
    barrier: &Barrier,
    d: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let id = field(d, "server_id");
    if id.is_empty() {
        return Err(ApiError::bad_request("no server id provided"));
    }
    let nonce = Zeroizing::new(crate::crypto::random_bytes::<32>().to_vec());
    let sealed = barrier
        .seal_value(CHALLENGE_PATH, &nonce)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut entries = Map::new();
    for path in UNSEAL_ENTRIES {
        let raw = barrier.storage().get(path).map_err(st)?.unwrap_or_default();
        entries.insert(path.to_string(), json!(b64().encode(raw)));
    }
    let seal_config = barrier
        .storage()
        .get(crate::barrier::SEAL_CONFIG_PATH)
        .map_err(st)?;
    let seal_config: Value = seal_config
        .and_then(|c| serde_json::from_slice(&c).ok())
        .unwrap_or(Value::Null);
    {
        let mut ch = ha.challenges.lock();
        ch.retain(|_, (_, t)| t.elapsed() < CHALLENGE_TTL);
        ch.insert(id.to_string(), (nonce, Instant::now()));
    }
    Ok(json!({
        "challenge": b64().encode(sealed),
        "seal_config": seal_config,
        "unseal_entries": entries,
    }))
}

/// Leader: `sys/storage/raft/bootstrap/answer`: check the answer, add the node as a
/// non-voter, hand it the peers and the TLS keyring.
pub fn answer(
    ha: &HaState,
    barrier: &Barrier,
    raft: &RaftStorage,
    d: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let id = field(d, "server_id");
    let answer = b64()
        .decode(field(d, "answer"))
        .map_err(|_| ApiError::bad_request("invalid answer"))?;
    let expected = ha.challenges.lock().remove(id);
    let ok = matches!(&expected, Some((n, t)) if t.elapsed() < CHALLENGE_TTL && crate::crypto::ct_eq(n, &answer));
    if !ok {
        return Err(ApiError::bad_request("invalid answer given"));
    }
    let cluster_addr = field(d, "cluster_addr");
    if cluster_addr.is_empty() {
        return Err(ApiError::bad_request("no cluster_addr provided"));
    }
    let node = ClusterNode {
        name: id.to_string(),
        cluster_addr: cluster_addr.to_string(),
        api_addr: field(d, "api_addr").to_string(),
    };
    super::endpoints::block_on(raft.add_learner(node))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let certs = keyring(barrier)?.ok_or_else(|| ApiError::internal("no cluster TLS keyring"))?;
    let peers: Vec<Value> = raft
        .peers()
        .into_iter()
        .map(|p| json!({"id": p.node_id, "address": p.address, "suffrage": if p.voter { 0 } else { 1 }}))
        .collect();
    Ok(json!({
        "peers": peers,
        "tls_keyring": certs,
        "autoloaded_unseal": false,
    }))
}

fn keyring(barrier: &Barrier) -> Result<Option<ClusterCerts>, ApiError> {
    match barrier
        .get(TLS_PATH)
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        Some(raw) => {
            Ok(Some(serde_json::from_slice(&raw).map_err(|e| {
                ApiError::internal(format!("cluster TLS keyring: {e}"))
            })?))
        }
        None => Ok(None),
    }
}

/// Joiner: `sys/storage/raft/join`.
pub async fn join(
    ha: &HaState,
    raft: &RaftStorage,
    initialized: bool,
    d: &Map<String, Value>,
) -> Result<Value, ApiError> {
    if initialized {
        return Err(ApiError::bad_request(
            "join can't be invoked on an initialized cluster",
        ));
    }
    let leader = field(d, "leader_api_addr")
        .trim_end_matches('/')
        .to_string();
    if leader.is_empty() {
        return Err(ApiError::bad_request("leader_api_addr is required"));
    }
    let ca = Some(field(d, "leader_ca_cert").to_string()).filter(|c| !c.is_empty());
    let url = format!("{leader}/v1/sys/storage/raft/bootstrap/challenge");
    let body = json!({"server_id": raft.node().name});
    let (status, v) = client::put_json(&url, ca.as_deref(), &body)
        .await
        .map_err(|e| ApiError::internal(format!("error during raft bootstrap init call: {e}")))?;
    if status != 200 {
        return Err(ApiError::internal(format!(
            "error during raft bootstrap init call: {url}: status {status}: {v}"
        )));
    }
    let data = &v["data"];
    let challenge = b64()
        .decode(data["challenge"].as_str().unwrap_or(""))
        .map_err(|_| ApiError::internal("the leader sent no challenge"))?;
    let mut entries = vec![];
    for path in UNSEAL_ENTRIES {
        let raw = b64()
            .decode(data["unseal_entries"][path].as_str().unwrap_or(""))
            .ok()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ApiError::internal(format!("the leader sent no {path}")))?;
        entries.push((path.to_string(), raw));
    }
    raft.forbid_bootstrap();
    raft.seed_local(entries).map_err(st)?;
    *ha.pending.lock() = Some(PendingJoin {
        leader_api_addr: leader,
        leader_ca_cert: ca,
        challenge,
    });
    Ok(json!({"joined": true}))
}

/// After the barrier opened on a raft node (blocking pool): finish a pending join, then
/// give the transport the cluster's TLS keyring (made here on first unseal of a new
/// cluster).
pub fn after_unseal(ha: &HaState, barrier: &Barrier, raft: &RaftStorage) -> Result<(), ApiError> {
    let pending = ha.pending.lock().take();
    if let Some(p) = pending {
        if let Err(e) = finish_join(barrier, raft, &p) {
            *ha.pending.lock() = Some(p);
            return Err(e);
        }
        return Ok(());
    }
    let certs = match keyring(barrier)? {
        Some(c) => c,
        None => {
            let c = ClusterCerts::generate().map_err(|e| ApiError::internal(e.to_string()))?;
            let bytes = Zeroizing::new(serde_json::to_vec(&c).expect("certs serialize"));
            barrier
                .put(TLS_PATH, &bytes)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            c
        }
    };
    install(raft, &certs)
}

fn install(raft: &RaftStorage, certs: &ClusterCerts) -> Result<(), ApiError> {
    let tls = ClusterTls::new(certs).map_err(|e| ApiError::internal(e.to_string()))?;
    raft.set_cluster_tls(Arc::new(tls));
    Ok(())
}

fn finish_join(barrier: &Barrier, raft: &RaftStorage, p: &PendingJoin) -> Result<(), ApiError> {
    if raft.has_cluster_tls() {
        // answered before (an earlier unseal timed out catching up): only wait again
        return super::endpoints::block_on(raft.wait_joined(CATCH_UP))?
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    let nonce = barrier
        .open_value(CHALLENGE_PATH, &p.challenge)
        .map_err(|_| ApiError::bad_request("the join challenge could not be opened"))?;
    let me = raft.node().clone();
    let body = json!({
        "server_id": me.name,
        "answer": b64().encode(&nonce[..]),
        "cluster_addr": me.cluster_addr,
        "api_addr": me.api_addr,
        "non_voter": false,
    });
    let url = format!("{}/v1/sys/storage/raft/bootstrap/answer", p.leader_api_addr);
    let ca = p.leader_ca_cert.clone();
    let (status, v) =
        super::endpoints::block_on(
            async move { client::put_json(&url, ca.as_deref(), &body).await },
        )?
        .map_err(|e| ApiError::internal(format!("error answering the raft challenge: {e}")))?;
    if status != 200 {
        return Err(ApiError::internal(format!(
            "error answering the raft challenge: status {status}: {v}"
        )));
    }
    let certs: ClusterCerts = serde_json::from_value(v["data"]["tls_keyring"].clone())
        .map_err(|e| ApiError::internal(format!("the leader sent no TLS keyring: {e}")))?;
    install(raft, &certs)?;
    // the post-unseal setup reads the cluster's tables: wait until they arrived
    super::endpoints::block_on(raft.wait_joined(CATCH_UP))?
        .map_err(|e| ApiError::internal(e.to_string()))
}
