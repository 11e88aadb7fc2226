//! The raft type configuration: what a log entry carries and how a node is addressed.

use crate::storage::TxOp;
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// One storage change inside a replicated command. Values are barrier ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put(String, #[serde(with = "b64")] Vec<u8>),
    Delete(String),
}

impl From<TxOp> for Op {
    fn from(op: TxOp) -> Self {
        match op {
            TxOp::Put(k, v) => Op::Put(k, v),
            TxOp::Delete(k) => Op::Delete(k),
        }
    }
}

/// The application data of one log entry: the batches of one or more requests, applied
/// atomically (each request's batch stays whole; a group is never split).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub ops: Vec<Op>,
}

/// A cluster member as the membership config records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// The operator-facing node id (`node_id` in the config, or a generated UUID).
    pub name: String,
    /// `host:port` of the cluster listener.
    pub cluster_addr: String,
    /// The node's `api_addr` (clients are sent there by `sys/leader`).
    pub api_addr: String,
    /// Joined as a permanent non-voter: autopilot never promotes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_voter: bool,
}

impl std::fmt::Display for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.cluster_addr)
    }
}

openraft::declare_raft_types!(
    /// Strongroom's raft types.
    pub TypeConfig:
        D = Command,
        R = (),
        NodeId = u64,
        Node = ClusterNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, ClusterNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, ClusterNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type RaftError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;

/// The raft id of a node name: the first 8 bytes of its SHA-256 (stable across restarts
/// and computable by every member from the name alone).
pub fn raft_id(name: &str) -> NodeId {
    use sha2::Digest;
    let d = sha2::Sha256::digest(name.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Base64 for byte values inside JSON-encoded log entries and snapshots.
pub(crate) mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// A storage error in openraft's terms.
pub(crate) fn io_err(
    kind: fn(openraft::AnyError) -> openraft::StorageIOError<NodeId>,
    e: impl std::fmt::Display,
) -> RaftError {
    RaftError::IO {
        source: kind(openraft::AnyError::error(e.to_string())),
    }
}
