//! `storage "raft"`: the barrier's entries replicated by openraft.
//!
//! The log ([`log_store`]) and the state machine ([`state_machine`]) live in redb files in
//! the storage path; members talk over the cluster transport ([`network`]).
//!
//! Writes keep the request-scoped durability contract of [`super::durability`]: a commit on
//! the active node enters an in-memory overlay at once (later reads on this node see it and
//! record their dependency on it) and is queued for the proposer task, which hands every
//! queued batch to raft as one log entry without waiting for the previous one. A response
//! waits until what it depends on is committed by a quorum and applied here
//! ([`Storage::wait_durable`]); if a proposal fails (leadership lost), every pending change
//! is dropped from the overlay and every request that depends on one fails. A node that
//! is in no cluster bootstraps a one-node cluster on its first write (`sys/init`), as
//! OpenBao does.

// openraft's StorageError/RPCError are large, and they are the error types of its traits.
#![allow(clippy::result_large_err)]

pub mod autopilot;
mod codec;
pub mod export;
mod lease;
mod log_store;
mod membership;
pub mod migrate;
pub mod network;
mod proposer;
mod state_machine;
pub mod tls;
pub mod types;
mod unflushed;

pub use membership::Peer;
pub use types::{ClusterNode, Command, Op};

use super::{fold_listing, Storage, StorageError, TxOp};
use proposer::Shared;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use types::{raft_id, NodeId, Raft};

/// Timers: failover in about a second (OpenBao's defaults take 5-15 s).
///
/// In openraft 0.9 a follower that has seen a leader stands for election only after
/// `election_max_ms` (the leader lease it granted) plus its own election timeout (drawn once
/// from `election_min_ms..election_max_ms`) without hearing from the leader, checked every
/// 1.5 heartbeats: 900-1200 ms of silence with these values. The heartbeat is also
/// openraft's timeout for every AppendEntries: at 50 ms (tried) a link losing 10 % of its
/// packets stalled replication, since one retransmission (TCP's minimum RTO is 200 ms)
/// outlasts it; 100 ms passes the lossy-link test. (Before: heartbeat 150 ms and election
/// 750-1500 ms, 2.25-3 s of silence and 2.5 s failovers.)
#[derive(Debug, Clone)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot (and purge the log behind it) after this many entries.
    pub snapshot_every: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_min_ms: 300,
            election_max_ms: 600,
            snapshot_every: 10_000,
        }
    }
}

pub struct RaftOptions {
    pub dir: PathBuf,
    /// The operator-facing node id.
    pub name: String,
    /// `host:port` this node's cluster listener is reachable at.
    pub cluster_addr: String,
    pub api_addr: String,
    /// The cluster keyring from config; `None`: from the barrier at unseal.
    pub tls: Option<Arc<tls::ClusterTls>>,
    /// Plain TCP between members (tests of the consensus layer only).
    pub insecure_plain_transport: bool,
    pub timing: Timing,
}

pub struct RaftStorage {
    raft: Raft,
    id: NodeId,
    me: ClusterNode,
    sm: state_machine::StateMachine,
    shared: Arc<Shared>,
    lease: lease::Lease,
    /// Set by `sys/step-down` until another node leads: this node serves nothing as the
    /// active node and confirms no lease (each confirmation is a heartbeat to a quorum,
    /// which under load kept the followers from ever electing another leader).
    stepping_down: Arc<std::sync::atomic::AtomicBool>,
    transport: Arc<network::Transport>,
    autopilot: autopilot::Tracker,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn io<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Io(e.to_string())
}

impl RaftStorage {
    /// Open the log and state machine in `opts.dir`, start raft and serve the cluster
    /// transport on `listener`. Must run inside a tokio runtime.
    pub async fn start(
        opts: RaftOptions,
        listener: tokio::net::TcpListener,
    ) -> Result<Arc<Self>, StorageError> {
        super::redb_store::private_dir(&opts.dir)?;
        let log = log_store::LogStore::open(&opts.dir)?;
        let sm = state_machine::StateMachine::open(&opts.dir)?;
        let config = openraft::Config {
            cluster_name: "strongroom".into(),
            heartbeat_interval: opts.timing.heartbeat_ms,
            election_timeout_min: opts.timing.election_min_ms,
            election_timeout_max: opts.timing.election_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(opts.timing.snapshot_every),
            max_in_snapshot_log_to_keep: opts.timing.snapshot_every / 10,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(io)?);
        let id = raft_id(&opts.name);
        let transport = Arc::new(network::Transport::new(
            opts.tls.clone(),
            opts.insecure_plain_transport,
        ));
        let net = network::Network {
            transport: transport.clone(),
        };
        let raft = Raft::new(id, config, net, log, sm.clone())
            .await
            .map_err(io)?;
        let me = ClusterNode {
            name: opts.name,
            cluster_addr: opts.cluster_addr,
            api_addr: opts.api_addr,
            non_voter: false,
        };
        let shared = Arc::new(Shared::default());
        let mut tasks = vec![tokio::spawn(network::serve(
            listener,
            raft.clone(),
            transport.clone(),
        ))];
        tasks.extend(proposer::spawn(
            shared.clone(),
            raft.clone(),
            id,
            me.clone(),
        ));
        let s = Arc::new(Self {
            raft,
            id,
            me,
            sm,
            shared,
            lease: lease::Lease::new(opts.timing.election_min_ms),
            stepping_down: Default::default(),
            transport,
            autopilot: Default::default(),
            tasks: parking_lot::Mutex::new(tasks),
        });
        let ap = autopilot::spawn(&s);
        s.tasks.lock().push(ap);
        Ok(s)
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn node_id(&self) -> NodeId {
        self.id
    }

    pub fn node(&self) -> &ClusterNode {
        &self.me
    }

    /// Give the transport the cluster keyring (at unseal): from now on the node talks to
    /// its peers.
    pub fn set_cluster_tls(&self, tls: Arc<tls::ClusterTls>) {
        self.transport.set_tls(tls);
    }

    pub fn has_cluster_tls(&self) -> bool {
        self.transport.has_tls()
    }

    /// What this node does with requests its standbys forward (set once the HTTP layer
    /// exists).
    pub fn set_forward_handler(&self, h: network::ForwardHandler) {
        self.transport.set_forward_handler(h);
    }

    /// Hand a client request to the active node; `None`: no active node known.
    pub async fn forward_to_leader(
        &self,
        req: network::Forwarded,
    ) -> Option<std::io::Result<network::Forwarded>> {
        let (id, leader) = self.leader()?;
        if id == self.id {
            return None;
        }
        Some(self.transport.forward(&leader.cluster_addr, req).await)
    }

    /// This node is joining a cluster: it must never bootstrap its own.
    pub fn forbid_bootstrap(&self) {
        self.shared
            .no_bootstrap
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Write entries into this node's local state only (see [`state_machine::StateMachine::seed`]).
    pub fn seed_local(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), StorageError> {
        self.sm.seed(entries).map_err(io)
    }

    /// Whether this node is the raft leader right now (as far as it knows).
    pub fn is_leader(&self) -> bool {
        if self.stepping_down() {
            return false;
        }
        let m = self.raft.metrics();
        let m = m.borrow();
        // a restarted node's stored vote may still name it: only the server state says
        m.state == openraft::ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// The leader this node knows of, with its addresses.
    pub fn leader(&self) -> Option<(NodeId, ClusterNode)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m
            .current_leader
            .filter(|&l| l != self.id || !self.stepping_down())?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// `sys/step-down` begins (`true`) or ends: see `stepping_down`.
    pub fn set_stepping_down(&self, on: bool) {
        self.stepping_down
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn stepping_down(&self) -> bool {
        self.stepping_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether `m` shows an active node this node may send requests to or serve them as:
    /// another node known to lead (not `not`, the one a request just failed at), or this
    /// one leading and not stepping down. For waiting on the metrics (a predicate that
    /// outlives `self`): while this node steps down it still leads in openraft's view, and
    /// a wait that took that for an active node returned at once, forever.
    pub fn active_node_known(
        &self,
        not: Option<NodeId>,
    ) -> impl Fn(&openraft::RaftMetrics<NodeId, types::ClusterNode>) -> bool + Send + 'static {
        let (me, stepping) = (self.id, self.stepping_down.clone());
        move |m| {
            let stepping = stepping.load(std::sync::atomic::Ordering::SeqCst);
            let leading = m.state == openraft::ServerState::Leader && !stepping;
            let other = m
                .current_leader
                .is_some_and(|l| Some(l) != not && (l != me || !stepping));
            leading || other
        }
    }

    /// The highest log index applied on this node.
    pub fn applied_index(&self) -> u64 {
        *self.sm.inner.applied.borrow()
    }

    /// Stop raft and the tasks (a graceful shutdown; a crash needs none).
    /// The cluster listener is closed when this returns.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl std::fmt::Debug for RaftStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStorage")
            .field("node", &self.me)
            .finish()
    }
}

/// Create the storage directory (0700) before anything is written into it.
pub fn prepare_dir(dir: &std::path::Path) -> Result<(), StorageError> {
    super::redb_store::private_dir(dir)
}

impl Drop for RaftStorage {
    fn drop(&mut self) {
        for t in self.tasks.lock().iter() {
            t.abort();
        }
    }
}

impl Storage for RaftStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(v) = self.shared.overlay_get(key) {
            return Ok(v);
        }
        // Not pending: the state machine holds the latest value this node knows (a change
        // leaves the overlay only once applied here).
        self.sm.get(key)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = self.sm.keys(prefix)?;
        self.shared.overlay_fold(prefix, &mut keys);
        Ok(fold_listing(prefix, keys.iter().map(|s| s.as_str())))
    }

    fn commit(&self, ops: Vec<TxOp>) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        {
            let m = self.raft.metrics();
            let m = m.borrow();
            if matches!(m.current_leader, Some(l) if l != self.id) {
                return Err(StorageError::Io(
                    "this node is a standby; writes go to the active node".into(),
                ));
            }
        }
        self.shared.commit(ops)
    }

    fn watermark(&self) -> u64 {
        self.shared.watermark()
    }

    fn wait_durable(
        &self,
        ticket: u64,
    ) -> Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send + '_>> {
        Box::pin(self.shared.wait(ticket))
    }

    fn read_barrier(&self) -> Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send + '_>> {
        if self.stepping_down() {
            return Box::pin(std::future::ready(Err(StorageError::NotActive)));
        }
        Box::pin(self.lease.confirm(&self.raft, self.id))
    }

    fn kind(&self) -> &'static str {
        "raft"
    }
}

#[cfg(test)]
mod tests;
