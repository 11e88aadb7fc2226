//! What the built-in backends (`sys/`, `auth/token/`) may do to the server beyond the
//! unsealed state: seal it, read its metrics, know its policy on API-created audit devices.
//! They get this instead of the core, so no backend depends on the core.

use crate::metrics::Metrics;
use std::sync::Arc;

pub struct System {
    pub metrics: Arc<Metrics>,
    /// OpenBao's `unsafe_allow_api_audit_creation`.
    pub allow_api_audit_creation: bool,
    /// The raft node behind `storage "raft"` (the HA endpoints).
    pub raft: Option<Arc<crate::storage::raft::RaftStorage>>,
    pub ha: Arc<crate::ha::join::HaState>,
    sealer: Box<dyn Fn() + Send + Sync>,
}

impl System {
    pub fn new(
        metrics: Arc<Metrics>,
        allow_api_audit_creation: bool,
        raft: Option<Arc<crate::storage::raft::RaftStorage>>,
        ha: Arc<crate::ha::join::HaState>,
        sealer: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            metrics,
            allow_api_audit_creation,
            raft,
            ha,
            sealer,
        }
    }

    /// Seal the server now (`sys/seal`).
    pub fn seal_now(&self) {
        (self.sealer)()
    }
}
