//! Applied changes not yet written to the state machine's database.
//!
//! An apply lands here, in memory, and a flusher thread writes everything gathered into one
//! redb transaction every [`FLUSH_EVERY`] (sooner past [`FLUSH_AT`] keys). Writing each apply
//! as its own transaction cost a follower about six 4 KiB page writes per token create
//! (copy-on-write leaves and branches of a tree keyed by random hashes); a flush writes each
//! touched page once for a hundred milliseconds of applies.
//!
//! Nothing here is durable, and nothing needs to be: the raft log is, on a quorum, and the
//! database records the log index its entries stand at, in the transaction that writes them. After a crash openraft re-applies the
//! log from that index (the log is purged only behind a snapshot, and a snapshot flushes
//! first).

use super::types::{LogId, StoredMembership};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long an applied change may wait in memory before it is written to the database.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Flush early when this many keys are waiting (bounds memory under a burst).
pub const FLUSH_AT: usize = 16_384;

/// A waiting change: the log index that made it and the new value (`None`: deleted).
type Change = (u64, Option<Arc<[u8]>>);

/// What a flush writes: every waiting change, the applied point and, if it changed, the
/// membership.
pub struct Batch {
    pub changes: Vec<(String, Option<Arc<[u8]>>)>,
    pub applied: LogId,
    pub membership: Option<StoredMembership>,
}

#[derive(Default)]
pub struct Unflushed {
    changes: HashMap<String, Change>,
    /// The last log id applied (in memory; `None`: nothing applied since the node started).
    applied: Option<LogId>,
    /// A membership applied and not yet written.
    membership: Option<StoredMembership>,
    /// The applied point the database holds.
    flushed: Option<LogId>,
}

impl Unflushed {
    /// Record `key` set to `value` (`None`: deleted) by the entry at `index`.
    pub fn set(&mut self, key: String, value: Option<Arc<[u8]>>, index: u64) {
        self.changes.insert(key, (index, value));
    }

    pub fn set_membership(&mut self, m: StoredMembership) {
        self.membership = Some(m);
    }

    /// Everything up to `last` is applied.
    pub fn applied_to(&mut self, last: LogId) {
        self.applied = Some(last);
    }

    pub fn applied(&self) -> Option<LogId> {
        self.applied
    }

    pub fn membership(&self) -> Option<&StoredMembership> {
        self.membership.as_ref()
    }

    /// Whether a flush should not wait for the timer.
    pub fn is_large(&self) -> bool {
        self.changes.len() >= FLUSH_AT
    }

    /// The waiting value of `key`: `None` when the database holds the latest.
    pub fn get(&self, key: &str) -> Option<Option<&[u8]>> {
        self.changes.get(key).map(|(_, v)| v.as_deref())
    }

    /// The waiting changes under `prefix`, values included.
    pub fn under(&self, prefix: &str) -> Vec<(String, Option<Arc<[u8]>>)> {
        self.changes
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect()
    }

    /// What a flush must write now; `None`: the database is up to date.
    pub fn batch(&self) -> Option<Batch> {
        let applied = self.applied?;
        if self.flushed == Some(applied) {
            return None;
        }
        Some(Batch {
            changes: self.under(""),
            applied,
            membership: self.membership.clone(),
        })
    }

    /// `batch` is in the database: drop what it wrote (unless changed again since).
    pub fn written(&mut self, batch: &Batch) {
        let upto = batch.applied.index;
        self.changes.retain(|_, (index, _)| *index > upto);
        if let (Some(now), Some(wrote)) = (&self.membership, &batch.membership) {
            if now.log_id() == wrote.log_id() {
                self.membership = None;
            }
        }
        self.flushed = Some(batch.applied);
    }

    /// The database was replaced wholesale (a snapshot installed) at `applied`.
    pub fn reset(&mut self, applied: Option<LogId>) {
        self.changes.clear();
        self.membership = None;
        self.applied = applied;
        self.flushed = applied;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn val(s: &str) -> Option<Arc<[u8]>> {
        Some(Arc::from(s.as_bytes()))
    }

    #[test]
    fn a_flush_drops_only_what_it_wrote() {
        let mut u = Unflushed::default();
        assert!(u.batch().is_none(), "nothing applied: nothing to write");
        u.set("a".into(), val("1"), 1);
        u.set("b".into(), val("2"), 2);
        u.applied_to(log_id(2));
        let batch = u.batch().expect("two changes wait");
        assert_eq!(batch.changes.len(), 2);
        // applied while the flush runs: must survive it
        u.set("a".into(), val("3"), 3);
        u.set("c".into(), None, 3);
        u.applied_to(log_id(3));
        u.written(&batch);
        assert_eq!(u.get("a"), Some(Some(&b"3"[..])));
        assert_eq!(u.get("b"), None, "written: the database holds it");
        assert_eq!(
            u.get("c"),
            Some(None),
            "a waiting delete hides the database's value"
        );
        let next = u.batch().expect("the newer changes wait");
        assert_eq!(next.applied.index, 3);
        u.written(&next);
        assert!(u.batch().is_none());
        assert_eq!(
            u.applied(),
            Some(log_id(3)),
            "the applied point stays known"
        );
    }

    #[test]
    fn a_listing_sees_waiting_puts_and_deletes_under_its_prefix() {
        let mut u = Unflushed::default();
        u.set("p/new".into(), val("x"), 1);
        u.set("p/gone".into(), None, 1);
        u.set("q/other".into(), val("y"), 1);
        let mut under = u.under("p/");
        under.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            under,
            [
                ("p/gone".to_string(), None),
                ("p/new".to_string(), val("x"))
            ]
        );
    }

    #[test]
    fn an_installed_snapshot_clears_what_waits() {
        let mut u = Unflushed::default();
        u.set("a".into(), val("1"), 5);
        u.applied_to(log_id(5));
        u.reset(Some(log_id(9)));
        assert_eq!(u.get("a"), None);
        assert!(u.batch().is_none(), "the snapshot is the database's state");
        assert_eq!(u.applied(), Some(log_id(9)));
    }
}
