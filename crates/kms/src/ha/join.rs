//! Joining a raft cluster, OpenBao's way.
//!
//! 1. `sys/storage/raft/join` on the new node: it asks the leader for a challenge
//!    (`sys/storage/raft/bootstrap/challenge`): a random nonce sealed with the barrier, plus
//!    the sealed entries an unseal needs (seal config, sealed root key, sealed keyring), which
//!    the new node keeps locally: it now reports initialized and sealed.
//! 2. The operator unseals the new node with the cluster's shares. Only then can it open
//!    the challenge; it answers (`sys/storage/raft/bootstrap/answer`) and the leader, seeing
//!    the node holds the keys, adds it as a non-voter and hands it the cluster TLS keyring.
//! 3. The node replicates everything; the leader's autopilot makes it a voter once caught up
//!    (unless it joined as a permanent non-voter).
//!
//! With `retry` (or `retry_join` stanzas in the config) step 1 runs in the background until
//! it succeeds ([`super::retry_join`]).

use super::client::{self, LeaderTls};
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

/// A leader to join and how to reach it.
#[derive(Clone)]
pub struct JoinTarget {
    pub leader_api_addr: String,
    pub tls: LeaderTls,
}

/// A join in progress on this node (between `raft join` and the unseal).
pub struct PendingJoin {
    target: JoinTarget,
    challenge: Vec<u8>,
    non_voter: bool,
}

/// A challenge handed out: the nonce and when.
type Challenge = (Zeroizing<Vec<u8>>, Instant);

/// HA state of a node that outlives seal/unseal.
#[derive(Default)]
pub struct HaState {
    pending: Mutex<Option<PendingJoin>>,
    /// Challenges handed out by this (active) node: server id → nonce, when.
    challenges: Mutex<HashMap<String, Challenge>>,
    /// A background join ([`super::retry_join`]) is running.
    pub(super) retrying: std::sync::atomic::AtomicBool,
}

impl HaState {
    /// Whether this node holds a challenge and waits for its unseal to answer it.
    pub fn join_pending(&self) -> bool {
        self.pending.lock().is_some()
    }
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
        non_voter: d.get("non_voter").and_then(Value::as_bool).unwrap_or(false),
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

/// OpenBao's answer when no challenge could be had (the cause goes to the log).
const NO_CHALLENGE: &str = "failed to join raft cluster: failed to get raft challenge";

fn pem_field(d: &Map<String, Value>, k: &str) -> Option<String> {
    Some(field(d, k).to_string()).filter(|c| !c.is_empty())
}

/// Joiner: `sys/storage/raft/join`. With `retry` the join goes on in the background and
/// the answer is `joined: false`, as OpenBao's.
pub async fn join(
    ha: &Arc<HaState>,
    raft: &Arc<RaftStorage>,
    initialized: bool,
    d: &Map<String, Value>,
) -> Result<Value, ApiError> {
    if initialized {
        return Err(ApiError::bad_request(
            "join can't be invoked on an initialized cluster",
        ));
    }
    let target = JoinTarget {
        leader_api_addr: field(d, "leader_api_addr")
            .trim_end_matches('/')
            .to_string(),
        tls: LeaderTls {
            ca_cert: pem_field(d, "leader_ca_cert"),
            client_cert: pem_field(d, "leader_client_cert"),
            client_key: pem_field(d, "leader_client_key").map(Zeroizing::new),
            server_name: None,
        },
    };
    let non_voter = d.get("non_voter").and_then(Value::as_bool).unwrap_or(false);
    let retry = d.get("retry").and_then(Value::as_bool).unwrap_or(false);
    if retry && !target.leader_api_addr.is_empty() {
        super::retry_join::spawn(ha.clone(), raft, vec![target], non_voter);
        return Ok(json!({"joined": false}));
    }
    if let Err(e) = fetch_challenge(ha, raft, &target, non_voter).await {
        tracing::warn!(leader = %target.leader_api_addr, "raft join: {e}");
        return Err(ApiError::internal(NO_CHALLENGE));
    }
    Ok(json!({"joined": true}))
}

/// Ask `target` for a challenge; keep it and the unseal entries it came with: this node is
/// now initialized, sealed, and answers at its unseal.
pub(super) async fn fetch_challenge(
    ha: &HaState,
    raft: &RaftStorage,
    target: &JoinTarget,
    non_voter: bool,
) -> Result<(), String> {
    if target.leader_api_addr.is_empty() {
        return Err("no leader_api_addr".into());
    }
    let url = format!(
        "{}/v1/sys/storage/raft/bootstrap/challenge",
        target.leader_api_addr
    );
    let body = json!({"server_id": raft.node().name});
    let (status, v) = client::put_json(&url, &target.tls, &body)
        .await
        .map_err(|e| format!("error during raft bootstrap init call: {e}"))?;
    if status != 200 {
        return Err(format!(
            "error during raft bootstrap init call: {url}: status {status}: {v}"
        ));
    }
    let data = &v["data"];
    let challenge = b64()
        .decode(data["challenge"].as_str().unwrap_or(""))
        .map_err(|_| "the leader sent no challenge".to_string())?;
    let mut entries = vec![];
    for path in UNSEAL_ENTRIES {
        let raw = b64()
            .decode(data["unseal_entries"][path].as_str().unwrap_or(""))
            .ok()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| format!("the leader sent no {path}"))?;
        entries.push((path.to_string(), raw));
    }
    raft.forbid_bootstrap();
    raft.seed_local(entries).map_err(|e| e.to_string())?;
    *ha.pending.lock() = Some(PendingJoin {
        target: target.clone(),
        challenge,
        non_voter,
    });
    Ok(())
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
        "non_voter": p.non_voter,
    });
    let url = format!(
        "{}/v1/sys/storage/raft/bootstrap/answer",
        p.target.leader_api_addr
    );
    let tls = p.target.tls.clone();
    let (status, v) =
        super::endpoints::block_on(async move { client::put_json(&url, &tls, &body).await })?
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
