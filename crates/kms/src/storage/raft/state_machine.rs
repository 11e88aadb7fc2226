//! The replicated state machine: the barrier's entries in `strongroom.db` (the same table the
//! single-node store used, so its data is adopted), with the last applied log id and the
//! membership beside them, written in the same transaction as the entries they describe.
//!
//! Applies are not fsynced (the log is durable on a quorum; after a crash openraft re-applies
//! from the durable applied point). A snapshot first makes the state machine durable, so the
//! log it lets openraft purge is never needed again.

use super::types::{
    b64, io_err, Entry, LogId, RaftError, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use parking_lot::Mutex;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
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
    pub(crate) db: Database,
    dir: PathBuf,
    current: Mutex<Option<Current>>,
    /// Highest log index applied (for waiters outside openraft).
    pub(crate) applied: tokio::sync::watch::Sender<u64>,
}

#[derive(Clone)]
pub struct StateMachine {
    pub(crate) inner: Arc<SmInner>,
}

fn rd(e: impl std::fmt::Display) -> RaftError {
    io_err(StorageIOError::read_state_machine, e)
}
fn wr(e: impl std::fmt::Display) -> RaftError {
    io_err(StorageIOError::write_state_machine, e)
}

impl StateMachine {
    pub fn open(dir: &Path) -> Result<Self, crate::storage::StorageError> {
        let file = dir.join("strongroom.db");
        let err = |e: &dyn std::fmt::Display| {
            crate::storage::StorageError::Io(format!("opening {}: {e}", file.display()))
        };
        super::super::redb_store::private_file(&file)?;
        let db = redb::Builder::new()
            .set_cache_size(4 << 20)
            .create(&file)
            .map_err(|e| err(&e))?;
        let tx = db.begin_write().map_err(|e| err(&e))?;
        tx.open_table(ENTRIES).map_err(|e| err(&e))?;
        tx.open_table(SM_META).map_err(|e| err(&e))?;
        tx.commit().map_err(|e| err(&e))?;
        let current = load_snapshot(&dir.join("snapshot.json"))?;
        let sm = Self {
            inner: Arc::new(SmInner {
                db,
                dir: dir.to_path_buf(),
                current: Mutex::new(current),
                applied: tokio::sync::watch::Sender::new(0),
            }),
        };
        let (applied, _) = sm.read_applied().map_err(|e| err(&e))?;
        sm.inner
            .applied
            .send_replace(applied.map_or(0, |l| l.index));
        Ok(sm)
    }

    fn read_applied(&self) -> Result<(Option<LogId>, StoredMembership), RaftError> {
        let tx = self.inner.db.begin_read().map_err(rd)?;
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

    /// Apply `entries` in one transaction (not fsynced; see the module doc).
    fn apply_all(&self, entries: Vec<Entry>) -> Result<usize, RaftError> {
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(0);
        };
        let mut tx = self.inner.db.begin_write().map_err(wr)?;
        tx.set_durability(Durability::None);
        let mut membership = None;
        {
            let mut t = tx.open_table(ENTRIES).map_err(wr)?;
            for e in &entries {
                match &e.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(cmd) => {
                        for op in &cmd.ops {
                            match op {
                                super::Op::Put(k, v) => {
                                    t.insert(k.as_str(), v.as_slice()).map_err(wr)?;
                                }
                                super::Op::Delete(k) => {
                                    t.remove(k.as_str()).map_err(wr)?;
                                }
                            }
                        }
                    }
                    EntryPayload::Membership(m) => {
                        membership = Some(StoredMembership::new(Some(e.log_id), m.clone()));
                    }
                }
            }
            let mut m = tx.open_table(SM_META).map_err(wr)?;
            let applied = serde_json::to_vec(&Some(last)).map_err(wr)?;
            m.insert(APPLIED, applied.as_slice()).map_err(wr)?;
            if let Some(mem) = &membership {
                let v = serde_json::to_vec(mem).map_err(wr)?;
                m.insert(MEMBERSHIP, v.as_slice()).map_err(wr)?;
            }
        }
        tx.commit().map_err(wr)?;
        self.inner.applied.send_replace(last.index);
        Ok(entries.len())
    }

    /// Write `entries` into the local state only (not replicated): what a joining node needs
    /// to be unsealed before it is a member; replication later writes the same values.
    pub fn seed(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), RaftError> {
        let tx = self.inner.db.begin_write().map_err(wr)?;
        {
            let mut t = tx.open_table(ENTRIES).map_err(wr)?;
            for (k, v) in &entries {
                t.insert(k.as_str(), v.as_slice()).map_err(wr)?;
            }
        }
        tx.commit().map_err(wr)
    }

    /// Make everything applied so far durable (an empty fsynced transaction).
    fn sync(&self) -> Result<(), RaftError> {
        let mut tx = self.inner.db.begin_write().map_err(wr)?;
        tx.set_durability(Durability::Immediate);
        tx.commit().map_err(wr)
    }

    fn dump(&self) -> Result<(Option<LogId>, StoredMembership, Vec<u8>), RaftError> {
        self.sync()?;
        let tx = self.inner.db.begin_read().map_err(rd)?;
        let (applied, membership) = self.read_applied()?;
        let t = tx.open_table(ENTRIES).map_err(rd)?;
        let mut entries = Vec::new();
        for item in t.iter().map_err(rd)? {
            let (k, v) = item.map_err(rd)?;
            entries.push(SnapshotEntry(k.value().to_string(), v.value().to_vec()));
        }
        let data = serde_json::to_vec(&SnapshotData { entries }).map_err(rd)?;
        Ok((applied, membership, data))
    }

    /// Replace the whole state with a snapshot's, durably.
    fn restore(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), RaftError> {
        let snap: SnapshotData = serde_json::from_slice(data).map_err(wr)?;
        let mut tx = self.inner.db.begin_write().map_err(wr)?;
        tx.set_durability(Durability::Immediate);
        {
            let mut t = tx.open_table(ENTRIES).map_err(wr)?;
            t.retain(|_, _| false).map_err(wr)?;
            for SnapshotEntry(k, v) in &snap.entries {
                t.insert(k.as_str(), v.as_slice()).map_err(wr)?;
            }
            let mut m = tx.open_table(SM_META).map_err(wr)?;
            let applied = serde_json::to_vec(&meta.last_log_id).map_err(wr)?;
            m.insert(APPLIED, applied.as_slice()).map_err(wr)?;
            let mem = serde_json::to_vec(&meta.last_membership).map_err(wr)?;
            m.insert(MEMBERSHIP, mem.as_slice()).map_err(wr)?;
        }
        tx.commit().map_err(wr)?;
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
        self.read_applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, RaftError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        // Right here, not on the blocking pool: an apply is not fsynced, so it is CPU work
        // (a few tens of microseconds per batch) with nothing to wait for, and the hop to
        // another thread and back cost more than the work.
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
