//! `storage "raft"` / `storage "file"` on one node: an embedded redb database, durable on
//! every commit. Keys are storage paths, values are barrier ciphertext.
//!
//! Group commit: concurrent writers do not each pay an fsync. The first writer to arrive
//! becomes the leader and commits everything queued so far in one redb transaction; writers
//! that arrive meanwhile wait for the next batch. Each caller still returns only once its own
//! changes are durable, and each caller's batch stays atomic (a failed transaction fails
//! every caller in it, and none of its changes are visible).

use super::{fold_listing, Storage, StorageError, TxOp};
use parking_lot::{Condvar, Mutex};
use redb::{Database, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

/// Run blocking work; inside a multi-threaded tokio runtime, via `block_in_place`.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

enum SlotState {
    Waiting,
    /// This waiter now leads: it commits everything queued.
    Lead,
    Done(Result<(), String>),
}

type Slot = Arc<(Mutex<SlotState>, Condvar)>;

#[derive(Default)]
struct Queue {
    pending: Vec<(Vec<TxOp>, Slot)>,
    leader: bool,
}

pub struct RedbStorage {
    db: Database,
    kind: &'static str,
    queue: Mutex<Queue>,
}

fn io<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Io(e.to_string())
}

impl RedbStorage {
    /// Open (or create) the database file `strongroom.db` in directory `dir`.
    pub fn open(dir: &Path, kind: &'static str) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Io(format!("creating {}: {e}", dir.display())))?;
        let file = dir.join("strongroom.db");
        // redb's default page cache is 1 GiB; the key manager's working set is small
        let db = redb::Builder::new()
            .set_cache_size(16 << 20)
            .create(&file)
            .map_err(|e| StorageError::Io(format!("opening {}: {e}", file.display())))?;
        // Make sure the table exists so readers never see "table does not exist".
        let tx = db.begin_write().map_err(io)?;
        tx.open_table(TABLE).map_err(io)?;
        tx.commit().map_err(io)?;
        Ok(Self {
            db,
            kind,
            queue: Mutex::new(Queue::default()),
        })
    }
}

impl RedbStorage {
    /// One transaction for a whole group of callers' batches, in arrival order.
    fn apply(&self, batch: &[(Vec<TxOp>, Slot)]) -> Result<(), StorageError> {
        let tx = self.db.begin_write().map_err(io)?;
        {
            let mut t = tx.open_table(TABLE).map_err(io)?;
            for (ops, _) in batch {
                for op in ops {
                    match op {
                        TxOp::Put(k, v) => {
                            t.insert(k.as_str(), v.as_slice()).map_err(io)?;
                        }
                        TxOp::Delete(k) => {
                            t.remove(k.as_str()).map_err(io)?;
                        }
                    }
                }
            }
        }
        tx.commit().map_err(io)
    }
}

impl Storage for RedbStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(TABLE).map_err(io)?;
        Ok(t.get(key).map_err(io)?.map(|v| v.value().to_vec()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(TABLE).map_err(io)?;
        let mut keys = Vec::new();
        for item in t.range(prefix..).map_err(io)? {
            let (k, _) = item.map_err(io)?;
            let k = k.value();
            if !k.starts_with(prefix) {
                break;
            }
            keys.push(k.to_string());
        }
        Ok(fold_listing(prefix, keys.iter().map(|s| s.as_str())))
    }

    fn commit(&self, ops: Vec<TxOp>) -> Result<(), StorageError> {
        self.commit_grouped(ops)
    }

    fn kind(&self) -> &'static str {
        self.kind
    }
}

impl RedbStorage {
    fn commit_grouped(&self, ops: Vec<TxOp>) -> Result<(), StorageError> {
        let slot: Slot = Arc::new((Mutex::new(SlotState::Waiting), Condvar::new()));
        let mut q = self.queue.lock();
        q.pending.push((ops, slot.clone()));
        let lead = !q.leader;
        q.leader = true;
        drop(q);
        if !lead {
            let mut st = slot.0.lock();
            while matches!(*st, SlotState::Waiting) {
                slot.1.wait(&mut st);
            }
            if let SlotState::Done(r) = &*st {
                return r.clone().map_err(StorageError::Io);
            }
            // handed the lead: commit the queue, which holds our own batch
        }
        // Only the leader waits for the disk; on an async worker it first lets the runtime
        // move other tasks elsewhere. Followers just wait for the leader's commit (about one
        // fsync), which costs far fewer thread hand-offs than stepping aside for every write.
        let batch = std::mem::take(&mut self.queue.lock().pending);
        let result = off_worker(|| self.apply(&batch)).map_err(|e| e.to_string());
        for (_, s) in &batch {
            *s.0.lock() = SlotState::Done(result.clone());
            s.1.notify_one();
        }
        // Pass the lead to the oldest waiter instead of looping: a leader that kept
        // committing other writers' batches would make its own caller wait without bound.
        let mut q = self.queue.lock();
        match q.pending.first() {
            None => q.leader = false,
            Some((_, next)) => {
                *next.0.lock() = SlotState::Lead;
                next.1.notify_one();
            }
        }
        drop(q);
        result.map_err(StorageError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(RedbStorage::open(dir.path(), "raft").unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        s.commit(vec![
                            TxOp::Put(format!("t{t}/k{i}"), vec![t as u8, i as u8]),
                            TxOp::Put(format!("t{t}/last"), vec![i as u8]),
                        ])
                        .unwrap();
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        for t in 0..8u8 {
            assert_eq!(s.list(&format!("t{t}/")).unwrap().len(), 51);
            assert_eq!(s.get(&format!("t{t}/last")).unwrap(), Some(vec![49]));
            assert_eq!(s.get(&format!("t{t}/k7")).unwrap(), Some(vec![t, 7]));
        }
    }

    #[test]
    fn meets_contract_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RedbStorage::open(dir.path(), "raft").unwrap();
            super::super::tests::contract(&s);
        }
        let s = RedbStorage::open(dir.path(), "raft").unwrap();
        assert_eq!(s.get("b").unwrap().as_deref(), Some(&b"6"[..]));
    }
}
