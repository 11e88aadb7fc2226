//! `storage "raft"` / `storage "file"` on one node: an embedded redb database, fsynced on
//! every commit. Keys are storage paths, values are barrier ciphertext.

use super::{fold_listing, Storage, StorageError, TxOp};
use redb::{Database, TableDefinition};
use std::path::Path;

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

pub struct RedbStorage {
    db: Database,
    kind: &'static str,
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
        let db = Database::create(&file)
            .map_err(|e| StorageError::Io(format!("opening {}: {e}", file.display())))?;
        // Make sure the table exists so readers never see "table does not exist".
        let tx = db.begin_write().map_err(io)?;
        tx.open_table(TABLE).map_err(io)?;
        tx.commit().map_err(io)?;
        Ok(Self { db, kind })
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
        let tx = self.db.begin_write().map_err(io)?;
        {
            let mut t = tx.open_table(TABLE).map_err(io)?;
            for op in &ops {
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
        tx.commit().map_err(io)
    }

    fn kind(&self) -> &'static str {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
