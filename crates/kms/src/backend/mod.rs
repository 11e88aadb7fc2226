//! Backends ("mounts"): each owns the paths below its mount point and a private view of the
//! barrier. The router hands a backend a [`Request`] whose `rel` is the path inside the
//! mount; ACL checks and auditing have already happened.

use crate::request::{ApiError, Operation, Request, Response};

pub mod identity;
pub mod kv;
pub mod lockout;
pub mod password;
pub mod table;
pub mod transit;
pub mod userpass;

pub trait Backend: Send + Sync + 'static {
    fn handle(&self, req: &Request) -> Result<Response, ApiError>;

    /// Whether the target of a write exists, so the router can tell `create` from `update`
    /// for the ACL check. `None`: the backend does not distinguish (treated as update).
    fn exists(&self, _req: &Request) -> Result<Option<bool>, ApiError> {
        Ok(None)
    }

    /// Paths (relative to the mount) that need no token, e.g. `login/*`.
    fn unauthenticated(&self, _rel: &str) -> bool {
        false
    }

    /// Paths where a valid token is enough and the handler decides what the token may see
    /// (the UI mounts preflight); the path's own ACL is not consulted.
    fn decides_own_access(&self, _rel: &str, _op: Operation) -> bool {
        false
    }

    /// Paths (relative to the mount) that need `sudo` besides the operation's capability.
    fn needs_sudo(&self, _rel: &str, _op: Operation) -> bool {
        false
    }

    /// The canonical form of a path inside the mount when it differs from `rel`: names the
    /// backend compares case-insensitively are lower-cased here, before the ACL sees them
    /// (see [`crate::paths::fold_names`]).
    fn canonical_rel(&self, _rel: &str) -> Option<String> {
        None
    }

    /// For `sys/metrics`: the key and operation a successful request at `rel` used, when
    /// the backend counts per-key operations (transit's encrypt, decrypt, ...).
    fn key_operation<'a>(&self, _rel: &'a str) -> Option<(&'a str, &'static str)> {
        None
    }

    /// Login names locked out after failed logins (see [`lockout`]).
    fn locked_users(&self) -> Vec<String> {
        vec![]
    }

    /// An operator unlocks a login name.
    fn unlock_user(&self, _name: &str) {}

    /// These tokens (by hash) were revoked: drop anything kept per token.
    fn tokens_revoked(&self, _hashes: &[String]) -> Result<(), ApiError> {
        Ok(())
    }
}
