//! Backends ("mounts"): each owns the paths below its mount point and a private view of the
//! barrier. The router hands a backend a [`Request`] whose `rel` is the path inside the
//! mount; ACL checks and auditing have already happened.

use crate::request::{ApiError, Request, Response};

pub mod kv;
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
}
