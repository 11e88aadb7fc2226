//! `storage "inmem"`: a sorted map, for `-dev` and tests. Nothing survives a restart.

use super::{fold_listing, Storage, StorageError, TxOp};
use parking_lot::RwLock;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct InmemStorage {
    map: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl InmemStorage {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Storage for InmemStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.map.read().get(key).cloned())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let map = self.map.read();
        let keys = map
            .range(prefix.to_string()..)
            .map(|(k, _)| k.as_str())
            .take_while(|k| k.starts_with(prefix));
        Ok(fold_listing(prefix, keys))
    }

    fn commit(&self, ops: Vec<TxOp>) -> Result<(), StorageError> {
        let mut map = self.map.write();
        for op in ops {
            match op {
                TxOp::Put(k, v) => {
                    map.insert(k, v);
                }
                TxOp::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "inmem"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn meets_contract() {
        super::super::tests::contract(&super::InmemStorage::new());
    }
}
