//! OpenBao's autopilot, on the leader: it tracks each member's health (last contact,
//! trailing logs), promotes a joined non-voter once it has been healthy for
//! `server_stabilization_time` (never a permanent non-voter), and with
//! `cleanup_dead_servers` removes a member silent for `dead_server_last_contact_threshold`
//! when the voters left still number `min_quorum`. Its configuration is replicated (plain
//! JSON under [`CONFIG_KEY`]: nothing secret), so a new leader applies the same settings.

use super::types::NodeId;
use super::RaftStorage;
use crate::storage::{Storage, StorageError, TxOp};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Where the configuration is kept (outside the barrier's paths).
pub const CONFIG_KEY: &str = "raft/autopilot/configuration";
const TICK: Duration = Duration::from_millis(500);

/// `sys/storage/raft/autopilot/configuration`; durations in seconds (OpenBao keeps whole
/// seconds too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub cleanup_dead_servers: bool,
    pub dead_server_last_contact_threshold: u64,
    pub last_contact_threshold: u64,
    pub max_trailing_logs: u64,
    pub min_quorum: u64,
    pub server_stabilization_time: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cleanup_dead_servers: false,
            dead_server_last_contact_threshold: 24 * 3600,
            last_contact_threshold: 10,
            max_trailing_logs: 1000,
            min_quorum: 0,
            server_stabilization_time: 10,
        }
    }
}

/// One member as autopilot sees it.
#[derive(Debug, Clone)]
pub struct ServerState {
    pub id: NodeId,
    pub name: String,
    pub address: String,
    pub voter: bool,
    pub leader: bool,
    /// A permanent non-voter.
    pub non_voter: bool,
    pub last_contact: Duration,
    pub last_term: u64,
    pub last_index: u64,
    pub healthy: bool,
    pub stable_since: chrono::DateTime<chrono::Utc>,
}

/// The cluster as autopilot sees it (only meaningful on the leader).
#[derive(Debug, Clone)]
pub struct State {
    pub healthy: bool,
    pub failure_tolerance: u64,
    pub leader: String,
    pub servers: Vec<ServerState>,
}

/// Health history kept by the leader's autopilot.
#[derive(Default)]
pub struct Tracker {
    inner: Mutex<TrackerInner>,
}

#[derive(Default)]
struct TrackerInner {
    /// The term this node has led since, and when it took over.
    led: Option<(u64, Instant)>,
    /// Per member: healthy or not, since when.
    since: HashMap<NodeId, (bool, Instant, chrono::DateTime<chrono::Utc>)>,
}

fn io(e: impl std::fmt::Display) -> StorageError {
    StorageError::Io(e.to_string())
}

impl RaftStorage {
    /// The autopilot configuration in force (the defaults until one is written).
    pub fn autopilot_config(&self) -> Result<Config, StorageError> {
        match self.get(CONFIG_KEY)? {
            Some(raw) => serde_json::from_slice(&raw).map_err(io),
            None => Ok(Config::default()),
        }
    }

    /// Replicate a new autopilot configuration (on the leader).
    pub fn set_autopilot_config(&self, c: &Config) -> Result<(), StorageError> {
        let raw = serde_json::to_vec(c).map_err(io)?;
        self.commit(vec![TxOp::Put(CONFIG_KEY.into(), raw)])
    }

    /// Autopilot's view of the cluster now.
    pub fn autopilot_state(&self) -> Result<State, StorageError> {
        let cfg = self.autopilot_config()?;
        Ok(self.observe(&cfg))
    }

    /// Measure every member and update the health history.
    fn observe(&self, cfg: &Config) -> State {
        let m = self.raft.metrics().borrow().clone();
        let now = Instant::now();
        let mut t = self.autopilot.inner.lock();
        if m.current_leader != Some(self.id) {
            t.led = None;
        } else if t.led.is_none_or(|(term, _)| term != m.current_term) {
            *t = TrackerInner {
                led: Some((m.current_term, now)),
                since: HashMap::new(),
            };
        }
        let led_since = t.led.map_or(now, |(_, at)| at);
        let mem = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = mem.voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let mut servers = vec![];
        for (id, node) in mem.nodes() {
            let leader = *id == self.id;
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten());
            let (last_term, last_index) = if leader {
                (m.current_term, last)
            } else {
                matched.map_or((0, 0), |l| (l.leader_id.term, l.index))
            };
            let last_contact = if leader {
                Duration::ZERO
            } else {
                let seen = self
                    .transport
                    .last_contact(*id)
                    .filter(|at| *at >= led_since);
                now.duration_since(seen.unwrap_or(led_since))
            };
            let healthy = leader
                || (last_contact < Duration::from_secs(cfg.last_contact_threshold)
                    && last.saturating_sub(last_index) <= cfg.max_trailing_logs
                    && matched.is_some());
            let entry = t
                .since
                .entry(*id)
                .or_insert((healthy, now, chrono::Utc::now()));
            if entry.0 != healthy {
                *entry = (healthy, now, chrono::Utc::now());
            }
            servers.push(ServerState {
                id: *id,
                name: node.name.clone(),
                address: node.cluster_addr.clone(),
                voter: voters.contains(id),
                leader,
                non_voter: node.non_voter,
                last_contact,
                last_term,
                last_index,
                healthy,
                stable_since: entry.2,
            });
        }
        let healthy_voters = servers.iter().filter(|s| s.voter && s.healthy).count() as u64;
        let quorum = voters.len() as u64 / 2 + 1;
        State {
            healthy: servers.iter().all(|s| s.healthy),
            failure_tolerance: healthy_voters.saturating_sub(quorum),
            leader: servers
                .iter()
                .find(|s| s.leader)
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            servers,
        }
    }

    /// How long member `id` has been healthy (`None`: it is not).
    fn healthy_for(&self, id: NodeId) -> Option<Duration> {
        let t = self.autopilot.inner.lock();
        t.since
            .get(&id)
            .filter(|(healthy, _, _)| *healthy)
            .map(|(_, at, _)| at.elapsed())
    }
}

/// Run autopilot on `r` until it is dropped.
pub fn spawn(r: &Arc<RaftStorage>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(r);
    tokio::spawn(run(weak))
}

async fn run(weak: Weak<RaftStorage>) {
    loop {
        tokio::time::sleep(TICK).await;
        let Some(r) = weak.upgrade() else { return };
        if !r.is_leader() {
            continue;
        }
        let cfg = match r.autopilot_config() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("autopilot: reading its configuration: {e}");
                Config::default()
            }
        };
        let state = r.observe(&cfg);
        promote(&r, &cfg, &state).await;
        if cfg.cleanup_dead_servers {
            cleanup(&r, &cfg, &state).await;
        }
    }
}

/// Make every non-voter (not a permanent one) that has been healthy long enough a voter.
async fn promote(r: &RaftStorage, cfg: &Config, state: &State) {
    let stable = Duration::from_secs(cfg.server_stabilization_time);
    let ready: BTreeSet<NodeId> = state
        .servers
        .iter()
        .filter(|s| !s.voter && !s.non_voter)
        .filter(|s| r.healthy_for(s.id).is_some_and(|d| d >= stable))
        .map(|s| s.id)
        .collect();
    if ready.is_empty() {
        return;
    }
    tracing::info!(?ready, "autopilot: promoting non-voters");
    if let Err(e) = r
        .raft
        .change_membership(openraft::ChangeMembers::AddVoterIds(ready), false)
        .await
    {
        tracing::warn!("autopilot: promotion failed: {e}");
    }
}

/// Remove members silent past the dead-server threshold; voters only while `min_quorum`
/// voters remain and a majority of the rest is healthy.
async fn cleanup(r: &RaftStorage, cfg: &Config, state: &State) {
    let dead_after = Duration::from_secs(cfg.dead_server_last_contact_threshold);
    let mut voters = state.servers.iter().filter(|s| s.voter).count() as u64;
    let healthy_voters = state
        .servers
        .iter()
        .filter(|s| s.voter && s.healthy)
        .count() as u64;
    for s in state
        .servers
        .iter()
        .filter(|s| !s.leader && s.last_contact >= dead_after)
    {
        if s.voter {
            if voters <= cfg.min_quorum.max(1) || healthy_voters < (voters - 1) / 2 + 1 {
                continue;
            }
            voters -= 1;
        }
        tracing::info!(server = %s.name, last_contact = ?s.last_contact, "autopilot: removing dead server");
        if let Err(e) = r.remove_member(&s.name).await {
            tracing::warn!(server = %s.name, "autopilot: removing dead server failed: {e}");
        }
    }
}
