//! The replicated state machine: the barrier's entries in `strongroom.db` (the same table the
//! single-node store used, so its data is adopted), with the last applied log id and the
//! membership beside them, written in the same transaction as the entries they describe.
//!
//! Applies land in memory ([`super::unflushed`]) and a flusher thread writes them to the
//! database in batches, one fsynced transaction per flush (redb frees the pages a commit
//! replaces only at a durable commit: unsynced commits made the file grow, every page a
//! newly allocated one). Nothing waits for a flush: the log is durable on a quorum, and
//! after a crash openraft re-applies from the applied point the database holds. A snapshot
//! first flushes, so the log it lets openraft purge is never needed again.

use super::types::{
    b64, io_err, Entry, LogId, RaftError, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
};
use super::unflushed::{Batch, Unflushed, FLUSH_EVERY};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use parking_lot::{Condvar, Mutex};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_sm");
const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";

/// A snapshot's payload: every entry (the metadata travels beside it).
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    entries: Vec<SnapshotEntry>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotEntry(String, #[serde(with = "b64")] Vec<u8>);

/// The snapshot file: the current snapshot, kept across restarts.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    #[serde(with = "b64")]
    data: Vec<u8>,
}

/// The current snapshot: its metadata and data.
type Current = (SnapshotMeta, Arc<Vec<u8>>);

pub struct SmInner {
    db: Database,
    dir: PathBuf,
    current: Mutex<Option<Current>>,
    /// Applied and not yet in `db`. Lock order: `writer`, then `unflushed`.
    unflushed: Mutex<Unflushed>,
    /// Held by whatever writes `db` (flush, seed, restore), so flushes never interleave.
    writer: Mutex<()>,
    /// Wakes the flusher early (a large backlog) or for good (the state machine is gone).
    wake: Arc<Wake>,
    /// Highest log index applied (for waiters outside openraft).
    pub(crate) applied: tokio::sync::watch::Sender<u64>,
}

/// The flusher's alarm clock: `true` once the state machine is dropped.
#[derive(Default)]
struct Wake {
    stop: Mutex<bool>,
    bell: Condvar,
}

#[derive(Clone)]
pub struct StateMachine {
    /// Declared first, so dropped first: the last handle stops and joins the flusher (which
    /// holds `inner` too) before `inner` goes, and the database is closed when the last
    /// handle's drop returns.
    _flusher: Arc<Flusher>,
    pub(crate) inner: Arc<SmInner>,
}

/// The flusher thread, stopped and joined when dropped.
struct Flusher {
    wake: Arc<Wake>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        *self.wake.stop.lock() = true;
        self.wake.bell.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn rd(e: impl std::fmt::Display) -> RaftError {
    io_err(StorageIOError::read_state_machine, e)
}
fn wr(e: impl std::fmt::Display) -> RaftError {
    io_err(StorageIOError::write_state_machine, e)
}
fn io(e: impl std::fmt::Display) -> crate::storage::StorageError {
    crate::storage::StorageError::Io(e.to_string())
}

impl StateMachine {
    pub fn open(dir: &Path) -> Result<Self, crate::storage::StorageError> {
        let file = dir.join("strongroom.db");
        let err = |e: &dyn std::fmt::Display| {
            crate::storage::StorageError::Io(format!("opening {}: {e}", file.display()))
        };
        super::super::redb_store::private_file(&file)?;
        // As the single-node store's: 4 MiB keeps RSS low. (64 MiB was tried: under token
        // creates, whose random keys touch leaves all over the tree, it halved the flusher's
        // kernel time, 6 % of a token's CPU on three nodes, for 60 MiB more RSS per node.)
        let db = redb::Builder::new()
            .set_cache_size(4 << 20)
            .create(&file)
            .map_err(|e| err(&e))?;
        let tx = db.begin_write().map_err(|e| err(&e))?;
        tx.open_table(ENTRIES).map_err(|e| err(&e))?;
        tx.open_table(SM_META).map_err(|e| err(&e))?;
        tx.commit().map_err(|e| err(&e))?;
        let current = load_snapshot(&dir.join("snapshot.json"))?;
        let inner = Arc::new(SmInner {
            db,
            dir: dir.to_path_buf(),
            current: Mutex::new(current),
            unflushed: Mutex::default(),
            writer: Mutex::default(),
            wake: Arc::default(),
            applied: tokio::sync::watch::Sender::new(0),
        });
        let (applied, _) = inner.read_applied().map_err(|e| err(&e))?;
        inner.unflushed.lock().reset(applied);
        inner.applied.send_replace(applied.map_or(0, |l| l.index));
        let flusher = spawn_flusher(inner.clone()).map_err(|e| err(&e))?;
        Ok(Self {
            _flusher: Arc::new(flusher),
            inner,
        })
    }

    /// The latest value of `key` applied here.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, crate::storage::StorageError> {
        if let Some(v) = self.inner.unflushed.lock().get(key) {
            return Ok(v.map(<[u8]>::to_vec));
        }
        // Not waiting: the database holds the latest (a change leaves `unflushed` only
        // after the transaction that wrote it committed).
        let tx = self.inner.db.begin_read().map_err(io)?;
        let t = tx.open_table(ENTRIES).map_err(io)?;
        Ok(t.get(key).map_err(io)?.map(|v| v.value().to_vec()))
    }

    /// Every key under `prefix` applied here.
    pub fn keys(&self, prefix: &str) -> Result<BTreeSet<String>, crate::storage::StorageError> {
        // The read transaction starts under the lock, so it and the copy of what waits
        // describe the same moment (a flush cannot drop a change in between).
        let (tx, waiting) = {
            let u = self.inner.unflushed.lock();
            (self.inner.db.begin_read().map_err(io)?, u.under(prefix))
        };
        let mut keys = super::super::redb_store::keys_under(&tx, prefix)?;
        for (k, v) in waiting {
            match v {
                Some(_) => keys.insert(k),
                None => keys.remove(&k),
            };
        }
        Ok(keys)
    }

    /// Every entry applied here, values included.
    pub fn entries(&self) -> Result<BTreeMap<String, Vec<u8>>, crate::storage::StorageError> {
        let (tx, waiting) = {
            let u = self.inner.unflushed.lock();
            (self.inner.db.begin_read().map_err(io)?, u.under(""))
        };
        let t = tx.open_table(ENTRIES).map_err(io)?;
        let mut entries = BTreeMap::new();
        for item in t.iter().map_err(io)? {
            let (k, v) = item.map_err(io)?;
            entries.insert(k.value().to_string(), v.value().to_vec());
        }
        for (k, v) in waiting {
            match v {
                Some(v) => entries.insert(k, v.to_vec()),
                None => entries.remove(&k),
            };
        }
        Ok(entries)
    }

    /// How many entries are applied here.
    pub fn len(&self) -> Result<u64, crate::storage::StorageError> {
        self.inner.flush().map_err(io)?;
        let tx = self.inner.db.begin_read().map_err(io)?;
        tx.open_table(ENTRIES).map_err(io)?.len().map_err(io)
    }

    /// Apply `entries` in memory; the flusher writes them (see the module doc).
    fn apply_all(&self, entries: Vec<Entry>) -> Result<usize, RaftError> {
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(0);
        };
        let n = entries.len();
        let mut u = self.inner.unflushed.lock();
        for e in entries {
            let index = e.log_id.index;
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(cmd) => {
                    for op in cmd.ops {
                        match op {
                            super::Op::Put(k, v) => u.set(k, Some(Arc::from(v)), index),
                            super::Op::Delete(k) => u.set(k, None, index),
                        }
                    }
                }
                EntryPayload::Membership(m) => {
                    u.set_membership(StoredMembership::new(Some(e.log_id), m));
                }
            }
        }
        u.applied_to(last);
        let large = u.is_large();
        drop(u);
        self.inner.applied.send_replace(last.index);
        if large {
            self.inner.wake.bell.notify_one();
        }
        Ok(n)
    }

    /// Write `entries` into the local state only (not replicated): what a joining node needs
    /// to be unsealed before it is a member; replication later writes the same values.
    pub fn seed(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), RaftError> {
        let _w = self.inner.writer.lock();
        let tx = self.inner.db.begin_write().map_err(wr)?;
        {
            let mut t = tx.open_table(ENTRIES).map_err(wr)?;
            for (k, v) in &entries {
                t.insert(k.as_str(), v.as_slice()).map_err(wr)?;
            }
        }
        tx.commit().map_err(wr)
    }

    fn dump(&self) -> Result<(Option<LogId>, StoredMembership, Vec<u8>), RaftError> {
        self.inner.flush()?; // durable: everything applied so far
                             // No flush while reading: the entries and the applied point stand at the same index
                             // (applies go on meanwhile, in memory).
        let _w = self.inner.writer.lock();
        let tx = self.inner.db.begin_read().map_err(rd)?;
        let (applied, membership) = self.inner.read_applied()?;
        let t = tx.open_table(ENTRIES).map_err(rd)?;
        let mut entries = Vec::new();
        for item in t.iter().map_err(rd)? {
            let (k, v) = item.map_err(rd)?;
            entries.push(SnapshotEntry(k.value().to_string(), v.value().to_vec()));
        }
        let data = serde_json::to_vec(&SnapshotData { entries }).map_err(rd)?;
        Ok((applied, membership, data))
    }

    /// Replace the whole state with a snapshot's, durably. Readers wait meanwhile: they see
    /// the state before or after, never a mix.
    fn restore(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), RaftError> {
        let snap: SnapshotData = serde_json::from_slice(data).map_err(wr)?;
        let _w = self.inner.writer.lock();
        let mut u = self.inner.unflushed.lock();
        let mut tx = self.inner.db.begin_write().map_err(wr)?;
        tx.set_durability(Durability::Immediate);
        {
            let mut t = tx.open_table(ENTRIES).map_err(wr)?;
            t.retain(|_, _| false).map_err(wr)?;
            for SnapshotEntry(k, v) in &snap.entries {
                t.insert(k.as_str(), v.as_slice()).map_err(wr)?;
            }
            let mut m = tx.open_table(SM_META).map_err(wr)?;
            put_json(&mut m, APPLIED, &meta.last_log_id)?;
            put_json(&mut m, MEMBERSHIP, &meta.last_membership)?;
        }
        tx.commit().map_err(wr)?;
        u.reset(meta.last_log_id);
        drop(u);
        self.inner
            .applied
            .send_replace(meta.last_log_id.map_or(0, |l| l.index));
        Ok(())
    }

    /// Keep `meta`/`data` as the current snapshot, on disk (atomically) and in memory.
    fn keep_snapshot(&self, meta: SnapshotMeta, data: Vec<u8>) -> Result<(), RaftError> {
        let sig = Some(meta.signature());
        let werr = |e: &dyn std::fmt::Display| RaftError::IO {
            source: StorageIOError::write_snapshot(
                sig.clone(),
                openraft::AnyError::error(e.to_string()),
            ),
        };
        let file = SnapshotFile { meta, data };
        let bytes = serde_json::to_vec(&file).map_err(|e| werr(&e))?;
        let path = self.inner.dir.join("snapshot.json");
        let tmp = self.inner.dir.join("snapshot.json.tmp");
        write_synced(&tmp, &bytes).map_err(|e| werr(&e))?;
        std::fs::rename(&tmp, &path).map_err(|e| werr(&e))?;
        *self.inner.current.lock() = Some((file.meta, Arc::new(file.data)));
        Ok(())
    }
}

impl SmInner {
    /// The applied point and membership the database holds.
    fn read_applied(&self) -> Result<(Option<LogId>, StoredMembership), RaftError> {
        let tx = self.db.begin_read().map_err(rd)?;
        let t = tx.open_table(SM_META).map_err(rd)?;
        let get = |k: &str| -> Result<Option<Vec<u8>>, RaftError> {
            Ok(t.get(k).map_err(rd)?.map(|v| v.value().to_vec()))
        };
        let applied = match get(APPLIED)? {
            Some(v) => serde_json::from_slice(&v).map_err(rd)?,
            None => None,
        };
        let membership = match get(MEMBERSHIP)? {
            Some(v) => serde_json::from_slice(&v).map_err(rd)?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// Write everything applied and waiting into one transaction.
    fn flush(&self) -> Result<(), RaftError> {
        let _w = self.writer.lock();
        let Some(batch) = self.unflushed.lock().batch() else {
            return Ok(());
        };
        self.write(&batch)?;
        self.unflushed.lock().written(&batch);
        Ok(())
    }

    fn write(&self, batch: &Batch) -> Result<(), RaftError> {
        let mut tx = self.db.begin_write().map_err(wr)?;
        tx.set_durability(Durability::Immediate);
        {
            let mut t = tx.open_table(ENTRIES).map_err(wr)?;
            for (k, v) in &batch.changes {
                match v {
                    Some(v) => t.insert(k.as_str(), &v[..]).map(drop),
                    None => t.remove(k.as_str()).map(drop),
                }
                .map_err(wr)?;
            }
            let mut m = tx.open_table(SM_META).map_err(wr)?;
            put_json(&mut m, APPLIED, &Some(batch.applied))?;
            if let Some(mem) = &batch.membership {
                put_json(&mut m, MEMBERSHIP, mem)?;
            }
        }
        tx.commit().map_err(wr)
    }
}

impl Drop for SmInner {
    fn drop(&mut self) {
        // A clean stop leaves the database current (a crash is covered by the log).
        if let Err(e) = self.flush() {
            tracing::warn!("writing the state machine at shutdown: {e}");
        }
    }
}

/// The flusher thread: every `FLUSH_EVERY` (or when woken), write what waits; stops when
/// its [`Flusher`] is dropped.
fn spawn_flusher(sm: Arc<SmInner>) -> std::io::Result<Flusher> {
    let wake = sm.wake.clone();
    let thread = std::thread::Builder::new()
        .name("raft-sm-flush".into())
        .spawn(move || loop {
            {
                let mut stop = sm.wake.stop.lock();
                if !*stop {
                    sm.wake.bell.wait_for(&mut stop, FLUSH_EVERY);
                }
                if *stop {
                    return;
                }
            }
            if let Err(e) = sm.flush() {
                // The applies stay in memory and the next flush retries them.
                tracing::error!("writing the raft state machine: {e}");
            }
        })?;
    Ok(Flusher {
        wake,
        thread: Some(thread),
    })
}

fn put_json<T: Serialize>(
    t: &mut redb::Table<&str, &[u8]>,
    key: &str,
    value: &T,
) -> Result<(), RaftError> {
    let v = serde_json::to_vec(value).map_err(wr)?;
    t.insert(key, v.as_slice()).map(drop).map_err(wr)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn load_snapshot(path: &Path) -> Result<Option<Current>, crate::storage::StorageError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(crate::storage::StorageError::Io(format!(
                "reading {}: {e}",
                path.display()
            )))
        }
    };
    let f: SnapshotFile = serde_json::from_slice(&bytes)
        .map_err(|e| crate::storage::StorageError::Corrupt(format!("{}: {e}", path.display())))?;
    Ok(Some((f.meta, Arc::new(f.data))))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, RaftError> {
        let me = self.clone();
        let (applied, membership, data) = tokio::task::spawn_blocking(move || me.dump())
            .await
            .map_err(rd)??;
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, uuid::Uuid::new_v4()),
            None => format!("empty-{}", uuid::Uuid::new_v4()),
        };
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id,
        };
        self.keep_snapshot(meta.clone(), data.clone())?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), RaftError> {
        let _w = self.inner.writer.lock(); // no flush between the two reads
        let (stored, membership) = self.inner.read_applied()?;
        let u = self.inner.unflushed.lock();
        Ok((
            u.applied().or(stored),
            u.membership().cloned().unwrap_or(membership),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, RaftError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        // Right here, not on the blocking pool: an apply is a few map inserts in memory.
        let n = self.apply_all(entries.into_iter().collect())?;
        Ok(vec![(); n])
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftError> {
        let data = snapshot.into_inner();
        let me = self.clone();
        let m = meta.clone();
        let d = data.clone();
        tokio::task::spawn_blocking(move || me.restore(&m, &d))
            .await
            .map_err(wr)??;
        self.keep_snapshot(meta.clone(), data)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, RaftError> {
        Ok(self
            .inner
            .current
            .lock()
            .as_ref()
            .map(|(meta, data)| Snapshot {
                meta: meta.clone(),
                snapshot: Box::new(Cursor::new(data.to_vec())),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::raft::{Command, Op};
    use openraft::CommittedLeaderId;

    fn entry(index: u64, ops: Vec<Op>) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command { ops }),
        }
    }

    fn stored(sm: &StateMachine, key: &str) -> Option<Vec<u8>> {
        let tx = sm.inner.db.begin_read().unwrap();
        let t = tx.open_table(ENTRIES).unwrap();
        t.get(key).unwrap().map(|v| v.value().to_vec())
    }

    #[test]
    fn applies_are_read_at_once_and_reach_the_database_within_a_flush_period() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        sm.apply_all(vec![
            entry(1, vec![Op::Put("a/1".into(), b"one".to_vec())]),
            entry(2, vec![Op::Put("a/2".into(), b"two".to_vec())]),
            entry(3, vec![Op::Delete("a/1".into())]),
        ])
        .unwrap();
        assert_eq!(sm.get("a/2").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(sm.get("a/1").unwrap(), None);
        assert_eq!(
            sm.keys("a/").unwrap().into_iter().collect::<Vec<_>>(),
            ["a/2"]
        );
        assert_eq!(*sm.inner.applied.borrow(), 3);

        let deadline = std::time::Instant::now() + FLUSH_EVERY * 20;
        while stored(&sm, "a/2").is_none() {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(FLUSH_EVERY / 4);
        }
        assert_eq!(stored(&sm, "a/1"), None);
        let (applied, _) = sm.inner.read_applied().unwrap();
        assert_eq!(
            applied.map(|l| l.index),
            Some(3),
            "the applied point moves with them"
        );
        assert_eq!(sm.entries().unwrap().len(), 1);
    }

    #[test]
    fn a_reopened_state_machine_holds_what_was_applied_before_a_clean_stop() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        sm.apply_all(vec![entry(7, vec![Op::Put("k".into(), b"v".to_vec())])])
            .unwrap();
        drop(sm); // at once: well inside the flush period
        let sm = StateMachine::open(dir.path()).unwrap();
        assert_eq!(stored(&sm, "k").as_deref(), Some(&b"v"[..]));
        assert_eq!(*sm.inner.applied.borrow(), 7);
    }
}
