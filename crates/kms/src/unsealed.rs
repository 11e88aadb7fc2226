//! Everything that exists only while the barrier is open: the router and its mounts, the
//! token, policy and identity stores, and the audit broker. The core builds it at unseal
//! and drops it at seal; the built-in backends reach it through a weak reference.

use crate::audit::AuditBroker;
use crate::backend::identity::Identity;
use crate::barrier::{Barrier, View};
use crate::mounts::{self, MountEntry, Router};
use crate::policy::Acl;
use crate::policy_store::PolicyStore;
use crate::request::ApiError;
use crate::token::{TokenEntry, TokenStore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub id: String,
}

pub struct Unsealed {
    pub barrier: Arc<Barrier>,
    /// The identity store (also mounted at `identity/`): logins find their entity here.
    pub identity: Arc<Identity>,
    pub router: Router,
    pub tokens: TokenStore,
    pub policies: PolicyStore,
    pub audit: AuditBroker,
    pub cluster: ClusterInfo,
    pub active_since: chrono::DateTime<chrono::Utc>,
}

impl Unsealed {
    /// The ACL of a token's policies.
    pub fn acl(&self, token: &TokenEntry) -> Result<Arc<Acl>, ApiError> {
        self.policies.acl(&token.policies)
    }

    /// Persist the mount table (`auth`: the auth methods') as the router holds it.
    pub fn save_mounts(&self, auth: bool) -> Result<(), ApiError> {
        let entries: Vec<MountEntry> = self
            .router
            .all()
            .iter()
            .filter(|m| m.is_auth == auth)
            .map(|m| m.entry.clone())
            .collect();
        let path = if auth {
            mounts::AUTH_PATH
        } else {
            mounts::MOUNTS_PATH
        };
        View::new(self.barrier.clone(), "").put_json(path, &entries)?;
        Ok(())
    }

    /// The storage view of a mount.
    pub fn mount_view(&self, entry: &MountEntry, auth: bool) -> View {
        View::new(self.barrier.clone(), mounts::view_prefix(entry, auth))
    }
}
