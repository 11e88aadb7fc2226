//! The write path of [`super::RaftStorage`]: the overlay of proposed-but-not-applied changes,
//! the proposer task that turns queued batches into raft entries, and the completer task
//! that publishes each entry's outcome in proposal order.

use super::types::{ClusterNode, Command, NodeId, Op, Raft};
use crate::storage::{durability, StorageError, TxOp};
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// A change not yet applied: its sequence number and the new value (`None`: deleted).
type Pending = (u64, Option<Arc<[u8]>>);

/// Failure ranges kept for late waiters (a failure is a lost leadership: rare).
const MAX_FAILURES: usize = 1024;

#[derive(Default)]
struct State {
    overlay: HashMap<String, Pending>,
    queue: Vec<(u64, Vec<TxOp>)>,
    /// Last sequence number handed out.
    last_seq: u64,
    /// Every sequence number up to this one has an outcome.
    resolved: u64,
    /// Ranges `(lo, hi]` of sequence numbers whose changes failed.
    failed: Vec<(u64, u64)>,
}

impl State {
    fn outcome(&self, ticket: u64) -> Option<Result<(), StorageError>> {
        if ticket > self.resolved {
            return None;
        }
        if self
            .failed
            .iter()
            .any(|&(lo, hi)| ticket > lo && ticket <= hi)
        {
            return Some(Err(StorageError::Io(
                "the change was not committed (the active node lost its leadership)".into(),
            )));
        }
        Some(Ok(()))
    }
}

#[derive(Default)]
pub struct Shared {
    /// Set on a node that is joining a cluster: it must never form its own.
    pub no_bootstrap: std::sync::atomic::AtomicBool,
    st: Mutex<State>,
    work: tokio::sync::Notify,
    done: Condvar,
    resolved: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// The overlay's value for `key`, recording the dependency; `None`: not pending.
    pub fn overlay_get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        let st = self.st.lock();
        let (seq, v) = st.overlay.get(key)?;
        durability::depend_on(*seq);
        Some(v.as_ref().map(|v| v.to_vec()))
    }

    /// Merge the pending changes under `prefix` into `keys`.
    pub fn overlay_fold(&self, prefix: &str, keys: &mut BTreeSet<String>) {
        let st = self.st.lock();
        for (k, (seq, v)) in st.overlay.iter().filter(|(k, _)| k.starts_with(prefix)) {
            durability::depend_on(*seq);
            if v.is_some() {
                keys.insert(k.clone());
            } else {
                keys.remove(k);
            }
        }
    }

    pub fn watermark(&self) -> u64 {
        self.st.lock().last_seq
    }

    /// Queue `ops`; inside a durability scope return at once with the dependency recorded,
    /// else block until the change is committed and applied (or failed).
    pub fn commit(&self, ops: Vec<TxOp>) -> Result<(), StorageError> {
        let mut st = self.st.lock();
        st.last_seq += 1;
        let seq = st.last_seq;
        for op in &ops {
            let v = match op {
                TxOp::Put(k, v) => (k, Some(Arc::from(v.as_slice()))),
                TxOp::Delete(k) => (k, None),
            };
            st.overlay.insert(v.0.clone(), (seq, v.1));
        }
        st.queue.push((seq, ops));
        self.work.notify_one();
        if durability::deferring() {
            durability::depend_on(seq);
            return Ok(());
        }
        loop {
            if let Some(r) = st.outcome(seq) {
                return r;
            }
            self.done.wait(&mut st);
        }
    }

    pub async fn wait(&self, ticket: u64) -> Result<(), StorageError> {
        if ticket == 0 {
            return Ok(());
        }
        let mut rx = self.resolved.subscribe();
        rx.wait_for(|r| *r >= ticket)
            .await
            .map_err(|_| StorageError::Io("storage closed".into()))?;
        self.st
            .lock()
            .outcome(ticket)
            .unwrap_or(Err(StorageError::Io("storage closed".into())))
    }

    fn take_queue(&self) -> Option<(u64, Vec<Op>)> {
        let mut st = self.st.lock();
        let hi = st.queue.last()?.0;
        let ops = std::mem::take(&mut st.queue)
            .into_iter()
            .flat_map(|(_, ops)| ops.into_iter().map(Op::from))
            .collect();
        Some((hi, ops))
    }

    /// Everything up to `hi` is committed and applied here.
    fn resolve(&self, hi: u64) {
        let mut st = self.st.lock();
        st.resolved = st.resolved.max(hi);
        st.overlay.retain(|_, (seq, _)| *seq > hi);
        let r = st.resolved;
        drop(st);
        self.publish(r);
    }

    /// A proposal failed: every change handed out so far that is not known to be applied
    /// fails, and leaves the overlay.
    fn fail(&self, why: &str) {
        let mut st = self.st.lock();
        tracing::warn!("raft proposal failed, pending changes dropped: {why}");
        let (lo, hi) = (st.resolved, st.last_seq);
        if hi > lo {
            st.failed.push((lo, hi));
            if st.failed.len() > MAX_FAILURES {
                st.failed.remove(0);
            }
        }
        st.overlay.clear();
        st.queue.clear();
        st.resolved = hi;
        drop(st);
        self.publish(hi);
    }

    fn publish(&self, resolved: u64) {
        self.done.notify_all();
        self.resolved.send_replace(resolved);
    }
}

type Receiver = <openraft::impls::OneshotResponder<super::types::TypeConfig> as openraft::raft::responder::Responder<super::types::TypeConfig>>::Receiver;

/// Start the proposer and the completer.
pub fn spawn(
    shared: Arc<Shared>,
    raft: Raft,
    id: NodeId,
    me: ClusterNode,
) -> Vec<tokio::task::JoinHandle<()>> {
    // Group commit: one proposal in flight at a time. While it is being made durable, the
    // requests that arrive queue up and go out together as the next entry (one log fsync for
    // all of them). Proposing each small queue at once made one entry, and one fsync, per
    // few requests: single-node KV writes ran at 2,236 rps instead of ~30,000.
    let proposer = tokio::spawn(async move {
        let mut bootstrapped = false;
        loop {
            shared.work.notified().await;
            let Some((hi, ops)) = shared.take_queue() else {
                continue;
            };
            if !bootstrapped {
                let allowed = !shared
                    .no_bootstrap
                    .load(std::sync::atomic::Ordering::SeqCst);
                match bootstrap(&raft, id, &me, allowed).await {
                    Ok(()) => bootstrapped = true,
                    Err(e) => {
                        shared.fail(&e);
                        continue;
                    }
                }
            }
            match raft.client_write_ff(Command { ops }).await {
                Ok(r) => complete(&shared, hi, r).await,
                Err(e) => shared.fail(&e.to_string()),
            }
        }
    });
    vec![proposer]
}

/// Waits for a proposal to be committed and applied, and resolves (or fails) what it held.
async fn complete(shared: &Shared, hi: u64, r: Receiver) {
    match r.await {
        Ok(Ok(_)) => shared.resolve(hi),
        Ok(Err(e)) => shared.fail(&e.to_string()),
        Err(e) => shared.fail(&e.to_string()),
    }
}

/// A node in no cluster forms a one-node cluster and waits to lead it.
async fn bootstrap(raft: &Raft, id: NodeId, me: &ClusterNode, allowed: bool) -> Result<(), String> {
    if raft.is_initialized().await.map_err(|e| e.to_string())? {
        return Ok(());
    }
    if !allowed {
        return Err("this node is joining a cluster and is not a member yet".into());
    }
    tracing::info!(node = %me, "bootstrapping a one-node raft cluster");
    raft.initialize(BTreeMap::from([(id, me.clone())]))
        .await
        .map_err(|e| e.to_string())?;
    raft.wait(Some(Duration::from_secs(30)))
        .current_leader(id, "bootstrap")
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
