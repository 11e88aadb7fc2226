//! The raft log, vote and commit index on redb (`raft-log.db` beside the state machine).
//!
//! Every append is one durable redb transaction; openraft is told the entries are flushed
//! only after it committed, so a node never votes or acknowledges on a log it could lose.
//! Entries are stored in the binary encoding of [`super::codec`] (JSON entries written by
//! earlier versions still read). The committed index is kept in memory and written by the
//! next append's transaction: no transaction of its own per commit.

use super::codec;
use super::types::{io_err, Entry, LogId, RaftError, TypeConfig, Vote};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// The latest committed index openraft reported, not yet written (`None`: nothing new).
    committed: Arc<parking_lot::Mutex<Option<Option<LogId>>>>,
}

fn rd(e: impl std::fmt::Display) -> RaftError {
    io_err(StorageIOError::read_logs, e)
}
fn wr(e: impl std::fmt::Display) -> RaftError {
    io_err(StorageIOError::write_logs, e)
}

impl LogStore {
    pub fn open(dir: &Path) -> Result<Self, crate::storage::StorageError> {
        let file = dir.join("raft-log.db");
        let err = |e: &dyn std::fmt::Display| {
            crate::storage::StorageError::Io(format!("opening {}: {e}", file.display()))
        };
        super::super::redb_store::private_file(&file)?;
        let db = redb::Builder::new()
            .set_cache_size(16 << 20)
            .create(&file)
            .map_err(|e| err(&e))?;
        let tx = db.begin_write().map_err(|e| err(&e))?;
        tx.open_table(LOG).map_err(|e| err(&e))?;
        tx.open_table(META).map_err(|e| err(&e))?;
        tx.commit().map_err(|e| err(&e))?;
        Ok(Self {
            db: Arc::new(db),
            committed: Default::default(),
        })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, RaftError> {
        let tx = self.db.begin_read().map_err(rd)?;
        let t = tx.open_table(META).map_err(rd)?;
        match t.get(key).map_err(rd)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(rd)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &str,
        v: &T,
        durability: Durability,
    ) -> Result<(), RaftError> {
        let bytes = serde_json::to_vec(v).map_err(wr)?;
        let mut tx = self.db.begin_write().map_err(wr)?;
        tx.set_durability(durability);
        tx.open_table(META)
            .map_err(wr)?
            .insert(key, bytes.as_slice())
            .map_err(wr)?;
        tx.commit().map_err(wr)
    }

    fn last_entry(&self) -> Result<Option<LogId>, RaftError> {
        let tx = self.db.begin_read().map_err(rd)?;
        let t = tx.open_table(LOG).map_err(rd)?;
        let last = t.last().map_err(rd)?;
        match last {
            Some((_, v)) => {
                let e = codec::decode_entry(v.value()).map_err(rd)?;
                Ok(Some(e.log_id))
            }
            None => Ok(None),
        }
    }

    /// Delete the entries in `range` in one durable transaction.
    fn remove(&self, range: impl RangeBounds<u64>) -> Result<(), RaftError> {
        let tx = self.db.begin_write().map_err(wr)?;
        {
            let mut t = tx.open_table(LOG).map_err(wr)?;
            t.retain_in(range, |_, _| false).map_err(wr)?;
        }
        tx.commit().map_err(wr)
    }

    /// Write `entries` and the committed index reported since the last write, durably.
    fn write_entries(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), RaftError> {
        let tx = self.db.begin_write().map_err(wr)?;
        {
            let mut t = tx.open_table(LOG).map_err(wr)?;
            for (i, bytes) in &entries {
                t.insert(*i, bytes.as_slice()).map_err(wr)?;
            }
            if let Some(c) = *self.committed.lock() {
                let bytes = serde_json::to_vec(&c).map_err(wr)?;
                let mut m = tx.open_table(META).map_err(wr)?;
                m.insert(COMMITTED, bytes.as_slice()).map_err(wr)?;
            }
        }
        tx.commit().map_err(wr)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftError> {
        let tx = self.db.begin_read().map_err(rd)?;
        let t = tx.open_table(LOG).map_err(rd)?;
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        let mut out = Vec::new();
        for item in t.range(bounds).map_err(rd)? {
            let (_, v) = item.map_err(rd)?;
            out.push(codec::decode_entry(v.value()).map_err(rd)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftError> {
        let last_purged_log_id: Option<LogId> = self.get_meta(PURGED)?;
        let last_log_id = self.last_entry()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), RaftError> {
        self.put_meta(VOTE, vote, Durability::Immediate)
            .map_err(|e| io_err(StorageIOError::write_vote, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, RaftError> {
        self.get_meta(VOTE)
            .map_err(|e| io_err(StorageIOError::read_vote, e))
    }

    /// Kept in memory: the committed index is a hint (openraft re-applies up to it at
    /// start-up) and the next append's durable transaction carries it to disk. Losing it
    /// loses nothing: the entries themselves are durable on a quorum. An fsync here doubled
    /// the cost of every proposal, and a transaction of its own cost one more per commit.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftError> {
        *self.committed.lock() = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftError> {
        if let Some(c) = *self.committed.lock() {
            return Ok(c);
        }
        Ok(self.get_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut rows = Vec::new();
        for e in entries {
            rows.push((e.log_id.index, codec::encode_entry(&e).map_err(wr)?));
        }
        let me = self.clone();
        // the fsync runs off the async workers
        let r = tokio::task::spawn_blocking(move || me.write_entries(rows))
            .await
            .map_err(wr)?;
        match &r {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        r
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftError> {
        self.remove(log_id.index..)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftError> {
        // record the purge point first: a crash in between leaves extra entries, never a gap
        self.put_meta(PURGED, &log_id, Durability::Immediate)?;
        self.remove(..=log_id.index)
    }
}
