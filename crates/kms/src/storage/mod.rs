//! Physical storage: a small transactional key/value contract.
//!
//! Everything above this layer (the barrier) encrypts values before they arrive here, so a
//! backend only ever sees opaque bytes under path-like keys. The trait is deliberately tiny
//! — get, list, and an atomic batch of puts/deletes — so that an integrated raft log can
//! replace the single-node store: a `commit` becomes one log entry applied on every node.

pub mod durability;
mod inmem;
pub mod raft;
mod redb_store;

pub use inmem::InmemStorage;
pub use redb_store::RedbStorage;

/// One change inside an atomic batch.
#[derive(Debug, Clone)]
pub enum TxOp {
    Put(String, Vec<u8>),
    Delete(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O error: {0}")]
    Io(String),
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    /// A replicated store on a node that is not the active one: it must not serve from its
    /// own copy (which may lag behind acknowledged changes). Nothing was read or written.
    #[error("this node is not the active node")]
    NotActive,
}

/// A wait that is over: zero-sized, so boxing it (as [`Storage::wait_durable`] and
/// [`Storage::read_barrier`] answer) allocates nothing — the common case of every request.
pub(crate) struct ReadyOk;

impl std::future::Future for ReadyOk {
    type Output = Result<(), StorageError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::task::Poll::Ready(Ok(()))
    }
}

pub trait Storage: Send + Sync + 'static {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Keys directly below `prefix` (which ends in `/` or is empty), sorted; deeper keys are
    /// folded into their first path segment with a trailing `/`, as Vault lists them.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// Apply every op or none; durable when this returns — except inside a
    /// [`durability::scope`], where a store may return before the disk write and report
    /// the wait in the scope's ticket (see [`Storage::wait_durable`]).
    fn commit(&self, ops: Vec<TxOp>) -> Result<(), StorageError>;
    /// The sequence number of the newest commit accepted so far (0 for stores without
    /// deferred durability). A response awaits this watermark, not only its own ticket:
    /// in-memory caches (transit keys, tokens, policies) can expose a change before it is
    /// durable without any storage read to record the dependency.
    fn watermark(&self) -> u64 {
        0
    }
    /// Resolves once everything up to `ticket` (from [`durability::scope`]) is durable.
    /// Stores that are durable (or volatile) on return from `commit` resolve at once.
    fn wait_durable(
        &self,
        _ticket: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StorageError>> + Send + '_>>
    {
        Box::pin(ReadyOk)
    }
    /// Resolves once reads on this node are linearizable: on a replicated store's active
    /// node, once it has confirmed with a quorum that it still leads and has applied
    /// everything committed before the call. Single-node stores resolve at once.
    fn read_barrier(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StorageError>> + Send + '_>>
    {
        Box::pin(ReadyOk)
    }
    /// A short name for `sys/seal-status` (`storage_type`).
    fn kind(&self) -> &'static str;

    fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.commit(vec![TxOp::Put(key.to_string(), value)])
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.commit(vec![TxOp::Delete(key.to_string())])
    }
}

/// Fold a sorted iterator of full keys under `prefix` into one listing level.
pub(crate) fn fold_listing<'a>(prefix: &str, keys: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in keys {
        let Some(rest) = k.strip_prefix(prefix) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let item = match rest.find('/') {
            Some(i) => &rest[..=i],
            None => rest,
        };
        if out.last().map(|l| l.as_str()) != Some(item) {
            out.push(item.to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The contract every backend must meet; run against each implementation.
    pub fn contract(s: &dyn Storage) {
        assert_eq!(s.get("a").unwrap(), None);
        s.put("a", b"1".to_vec()).unwrap();
        s.put("dir/x", b"2".to_vec()).unwrap();
        s.put("dir/sub/y", b"3".to_vec()).unwrap();
        s.put("dir/sub/z", b"4".to_vec()).unwrap();
        s.put("dirz", b"5".to_vec()).unwrap();
        assert_eq!(s.get("a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(s.list("").unwrap(), vec!["a", "dir/", "dirz"]);
        assert_eq!(s.list("dir/").unwrap(), vec!["sub/", "x"]);
        assert_eq!(s.list("dir/sub/").unwrap(), vec!["y", "z"]);
        assert!(s.list("nothing/").unwrap().is_empty());
        s.commit(vec![
            TxOp::Delete("a".into()),
            TxOp::Put("b".into(), b"6".to_vec()),
        ])
        .unwrap();
        assert_eq!(s.get("a").unwrap(), None);
        assert_eq!(s.get("b").unwrap().as_deref(), Some(&b"6"[..]));
        s.delete("missing").unwrap();
    }
}
