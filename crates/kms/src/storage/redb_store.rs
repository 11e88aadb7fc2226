//! `storage "raft"` / `storage "file"` on one node: an embedded redb database, durable on
//! every commit. Keys are storage paths, values are barrier ciphertext.
//!
//! Group commit with deferred durability (see [`super::durability`]): a commit is applied at
//! once to an in-memory overlay of not-yet-durable changes (reads see it) and queued for the
//! committer thread, which writes everything queued into one redb transaction — one fsync
//! for many requests — while the next batch queues up. A caller inside a durability scope
//! returns at once with a ticket and its request awaits [`Storage::wait_durable`] before
//! answering; any other caller blocks until its own batch is durable. Each caller's batch is
//! atomic: it enters the overlay and the transaction whole. A failed transaction fails every
//! request waiting on it and the store then refuses all writes (fail-stop: a store whose
//! fsync failed cannot say what is on disk).

use super::durability;
use super::{fold_listing, Storage, StorageError, TxOp};
use parking_lot::{Condvar, Mutex};
use redb::{Database, TableDefinition};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

/// A commit slower than this is logged.
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(100);

/// A change not yet durable: its sequence number and the new value (`None`: deleted).
type Pending = (u64, Option<Arc<[u8]>>);

#[derive(Default)]
struct State {
    /// Latest not-yet-durable change per key.
    overlay: HashMap<String, Pending>,
    /// Batches queued for the committer, in commit order.
    queue: Vec<(u64, Vec<TxOp>)>,
    next_seq: u64,
    /// Highest sequence number on disk.
    durable: u64,
    /// Set when a transaction failed: every later write fails too.
    failed: Option<String>,
    shutdown: bool,
}

struct Inner {
    db: Database,
    state: Mutex<State>,
    /// Wakes the committer (work queued) and blocking waiters (durable moved).
    work: Condvar,
    done: Condvar,
    /// (durable, failed) for async waiters.
    watch: tokio::sync::watch::Sender<(u64, bool)>,
}

pub struct RedbStorage {
    inner: Arc<Inner>,
    kind: &'static str,
    committer: Option<std::thread::JoinHandle<()>>,
}

fn io<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Io(e.to_string())
}

impl RedbStorage {
    /// Open (or create) the database file `strongroom.db` in directory `dir`.
    /// Directories it creates are 0700 and the file is 0600 (tightened if it exists).
    pub fn open(dir: &Path, kind: &'static str) -> Result<Self, StorageError> {
        private_dir(dir)?;
        let file = dir.join("strongroom.db");
        private_file(&file)?;
        // redb's default page cache is 1 GiB; the key manager's working set is small (the
        // OS page cache still holds the file): 4 MiB keeps RSS low under token storms
        let db = redb::Builder::new()
            .set_cache_size(4 << 20)
            .create(&file)
            .map_err(|e| StorageError::Io(format!("opening {}: {e}", file.display())))?;
        // Make sure the table exists so readers never see "table does not exist".
        let tx = db.begin_write().map_err(io)?;
        tx.open_table(TABLE).map_err(io)?;
        tx.commit().map_err(io)?;
        let inner = Arc::new(Inner {
            db,
            state: Mutex::new(State {
                next_seq: 1,
                ..State::default()
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            watch: tokio::sync::watch::Sender::new((0, false)),
        });
        let i = inner.clone();
        let committer = std::thread::Builder::new()
            .name("storage-commit".into())
            .spawn(move || i.run_committer())
            .map_err(|e| StorageError::Io(format!("starting the committer thread: {e}")))?;
        Ok(Self {
            inner,
            kind,
            committer: Some(committer),
        })
    }
}

/// Every key under `prefix` in the entries table as of `tx` (this store's, and the raft
/// state machine's, which is the same table).
pub(crate) fn keys_under(
    tx: &redb::ReadTransaction,
    prefix: &str,
) -> Result<BTreeSet<String>, StorageError> {
    let t = tx.open_table(TABLE).map_err(io)?;
    let mut keys = BTreeSet::new();
    for item in t.range(prefix..).map_err(io)? {
        let (k, _) = item.map_err(io)?;
        let k = k.value();
        if !k.starts_with(prefix) {
            break;
        }
        keys.insert(k.to_string());
    }
    Ok(keys)
}

/// Create `dir` (and missing parents) as 0700. An existing directory is left as it is (it
/// may be shared, like `/var/lib`), with a warning when others can enter it.
pub(crate) fn private_dir(dir: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() && mode & 0o077 != 0 {
            tracing::warn!(
                path = %dir.display(),
                mode = format!("{mode:o}"),
                "the storage directory is open to other users; 0700 is recommended"
            );
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StorageError::Io(format!("creating {}: {e}", dir.display())))
}

/// Create `file` as 0600, or make an existing one 0600.
pub(crate) fn private_file(file: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e: std::io::Error| StorageError::Io(format!("opening {}: {e}", file.display()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)
        .map_err(err)?;
    let mode = f.metadata().map_err(err)?.permissions().mode() & 0o777;
    if mode != 0o600 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    Ok(())
}

impl Inner {
    /// The committer: take everything queued, make it durable in one transaction, publish.
    /// Drains the queue before honouring a shutdown.
    fn run_committer(&self) {
        loop {
            let batch = {
                let mut st = self.state.lock();
                while st.queue.is_empty() && !st.shutdown {
                    self.work.wait(&mut st);
                }
                if st.queue.is_empty() {
                    return;
                }
                std::mem::take(&mut st.queue)
            };
            let last = batch.last().map_or(0, |(seq, _)| *seq);
            let t0 = std::time::Instant::now();
            let result = self.apply(&batch);
            let took = t0.elapsed();
            if took > SLOW_COMMIT {
                // Every request in the batch waited this long: worth an operator's attention
                // (a saturated or failing disk shows here first).
                tracing::warn!(
                    took_ms = took.as_millis() as u64,
                    batches = batch.len(),
                    "slow storage commit"
                );
            }
            let mut st = self.state.lock();
            match result {
                Ok(()) => {
                    st.durable = last;
                    // Changes now on disk leave the overlay (unless overwritten since).
                    st.overlay.retain(|_, (seq, _)| *seq > last);
                }
                Err(e) => {
                    tracing::error!("storage commit failed; refusing all further writes: {e}");
                    st.failed = Some(e.to_string());
                }
            }
            let failed = st.failed.is_some();
            drop(st);
            self.done.notify_all();
            self.watch.send_replace((last, failed));
        }
    }

    fn apply(&self, batch: &[(u64, Vec<TxOp>)]) -> Result<(), StorageError> {
        let tx = self.db.begin_write().map_err(io)?;
        {
            let mut t = tx.open_table(TABLE).map_err(io)?;
            for (_, ops) in batch {
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

impl Drop for RedbStorage {
    fn drop(&mut self) {
        self.inner.state.lock().shutdown = true;
        self.inner.work.notify_all();
        if let Some(t) = self.committer.take() {
            let _ = t.join();
        }
    }
}

impl Storage for RedbStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        {
            let st = self.inner.state.lock();
            if let Some((seq, v)) = st.overlay.get(key) {
                durability::depend_on(*seq);
                return Ok(v.as_ref().map(|v| v.to_vec()));
            }
        }
        // Not pending: the database holds the latest value (a change is only dropped from
        // the overlay after its transaction committed).
        let tx = self.inner.db.begin_read().map_err(io)?;
        let t = tx.open_table(TABLE).map_err(io)?;
        Ok(t.get(key).map_err(io)?.map(|v| v.value().to_vec()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        // The database's read transaction and the overlay's entries are taken under one
        // lock: one moment's view, so a change the committer moves from the overlay to the
        // database is in exactly one of the two. (A transaction begun before the lock could
        // predate a commit whose changes then left the overlay before it was read.) The
        // overlay (newer or equal) wins.
        let (tx, pending) = {
            let st = self.inner.state.lock();
            let tx = self.inner.db.begin_read().map_err(io)?;
            let pending: Vec<(String, bool)> = st
                .overlay
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, (seq, v))| {
                    durability::depend_on(*seq);
                    (k.clone(), v.is_some())
                })
                .collect();
            (tx, pending)
        };
        let mut keys = keys_under(&tx, prefix)?;
        for (k, present) in pending {
            if present {
                keys.insert(k);
            } else {
                keys.remove(&k);
            }
        }
        Ok(fold_listing(prefix, keys.iter().map(|s| s.as_str())))
    }

    fn commit(&self, ops: Vec<TxOp>) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut st = self.inner.state.lock();
        if let Some(e) = &st.failed {
            return Err(StorageError::Io(format!(
                "storage failed earlier, writes refused: {e}"
            )));
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        for op in &ops {
            match op {
                TxOp::Put(k, v) => {
                    st.overlay
                        .insert(k.clone(), (seq, Some(Arc::from(v.as_slice()))));
                }
                TxOp::Delete(k) => {
                    st.overlay.insert(k.clone(), (seq, None));
                }
            }
        }
        st.queue.push((seq, ops));
        self.inner.work.notify_one();
        if durability::deferring() {
            durability::depend_on(seq);
            return Ok(());
        }
        while st.durable < seq && st.failed.is_none() {
            self.inner.done.wait(&mut st);
        }
        match &st.failed {
            Some(e) if st.durable < seq => Err(StorageError::Io(e.clone())),
            _ => Ok(()),
        }
    }

    fn watermark(&self) -> u64 {
        self.inner.state.lock().next_seq - 1
    }

    fn wait_durable(
        &self,
        ticket: u64,
    ) -> Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send + '_>> {
        if ticket == 0 || self.inner.watch.borrow().0 >= ticket {
            return Box::pin(super::ReadyOk);
        }
        Box::pin(async move {
            let mut rx = self.inner.watch.subscribe();
            let (durable, failed) = *rx
                .wait_for(|(d, f)| *f || *d >= ticket)
                .await
                .map_err(|_| StorageError::Io("storage closed".into()))?;
            if durable >= ticket {
                Ok(())
            } else {
                debug_assert!(failed);
                Err(StorageError::Io(
                    "storage commit failed; the change is not durable".into(),
                ))
            }
        })
    }

    fn kind(&self) -> &'static str {
        self.kind
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
    fn a_listing_never_misses_a_key_that_was_written_before_it_began() {
        // A writer adds keys (visible at once, made durable later) while the committer moves
        // them from the overlay to the database; a listing that starts after a write
        // returned must hold that key, whichever side of a commit it reads.
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(RedbStorage::open(dir.path(), "raft").unwrap());
        // many keys already there: each listing's scan of the database takes a while
        let old: Vec<TxOp> = (0..20_000)
            .map(|i| TxOp::Put(format!("l/old{i:05}"), vec![0]))
            .collect();
        s.commit(old).unwrap();
        let (written, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let writer = {
            let (s, written, stop) = (s.clone(), written.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(SeqCst) && i < 5000 {
                    let (r, _ticket) = durability::scope(|| s.put(&format!("l/{i:07}"), vec![1]));
                    r.unwrap();
                    i += 1;
                    written.store(i, SeqCst);
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            })
        };
        let mut listing = 0;
        while !writer.is_finished() || listing < 20 {
            listing += 1;
            let n = written.load(SeqCst);
            let have = s.list("l/").unwrap().len() - 20_000;
            assert!(
                have >= n,
                "listing {listing} holds {have} new keys, {n} were written before it"
            );
        }
        stop.store(true, SeqCst);
        writer.join().unwrap();
        let n = written.load(SeqCst);
        assert_eq!(s.list("l/").unwrap().len(), n + 20_000);
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

    #[test]
    fn deferred_commits_are_visible_at_once_and_durable_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStorage::open(dir.path(), "raft").unwrap();
        s.put("a/x", b"old".to_vec()).unwrap();
        let ((), ticket) = durability::scope(|| {
            s.put("a/x", b"new".to_vec()).unwrap();
            s.delete("a/gone").unwrap();
            s.put("a/y", b"1".to_vec()).unwrap();
            assert_eq!(s.get("a/x").unwrap().as_deref(), Some(&b"new"[..]));
            assert_eq!(s.list("a/").unwrap(), vec!["x", "y"]);
        });
        assert!(ticket > 0);
        // Another request reading the pending value depends on the same ticket — or on
        // nothing, if the committer (its own thread) has made it durable already.
        let (v, t2) = durability::scope(|| s.get("a/y").unwrap());
        assert_eq!(v.as_deref(), Some(&b"1"[..]));
        assert!(t2 <= ticket, "{t2} > {ticket}");
        if t2 == 0 {
            assert!(
                s.inner.state.lock().durable >= ticket,
                "read as durable before it was"
            );
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(s.wait_durable(ticket)).unwrap();
        drop(s);
        let s = RedbStorage::open(dir.path(), "raft").unwrap();
        assert_eq!(s.get("a/x").unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(s.list("a/").unwrap(), vec!["x", "y"]);
    }

    #[test]
    fn dropping_the_store_flushes_what_was_queued() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RedbStorage::open(dir.path(), "raft").unwrap();
            let ((), t) = durability::scope(|| {
                for i in 0..100 {
                    s.put(&format!("k{i:03}"), vec![i as u8]).unwrap();
                }
            });
            assert!(t >= 100);
        }
        let s = RedbStorage::open(dir.path(), "raft").unwrap();
        assert_eq!(s.list("").unwrap().len(), 100);
        assert_eq!(s.get("k099").unwrap(), Some(vec![99]));
    }

    #[test]
    fn storage_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        drop(RedbStorage::open(&dir, "raft").unwrap());
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("strongroom.db")), 0o600);
        // An existing database file is tightened; an existing directory is left alone.
        let old = tempfile::tempdir().unwrap();
        std::fs::set_permissions(old.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = old.path().join("strongroom.db");
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(RedbStorage::open(old.path(), "raft").unwrap());
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(old.path()), 0o755);
    }

    #[test]
    fn a_reader_that_saw_nothing_pending_has_no_ticket() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStorage::open(dir.path(), "raft").unwrap();
        s.put("k", b"v".to_vec()).unwrap();
        let (v, t) = durability::scope(|| s.get("k").unwrap());
        assert_eq!(v.as_deref(), Some(&b"v"[..]));
        assert_eq!(t, 0, "durable data needs no wait");
    }
}
