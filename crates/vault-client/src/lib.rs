//! A small, blocking client for the HashiCorp Vault / OpenBao HTTP API.
//!
//! Used by the `strongroom` operator CLI and by the volume manager (which wraps per-volume
//! secrets with transit and may keep them in KV). It talks to `strongroom server`, OpenBao
//! or Vault alike.
//!
//! * [`ClientConfig`] reads the usual environment (`VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_CACERT`,
//!   `VAULT_CLIENT_CERT`/`VAULT_CLIENT_KEY`, `VAULT_SKIP_VERIFY`, with `BAO_*` fallbacks).
//! * [`Client`] has the generic logical operations ([`Client::read`], [`Client::write`],
//!   [`Client::list`], [`Client::delete`], [`Client::patch`]) and typed helpers for `sys/`,
//!   tokens, userpass, mounts, policies, KV v1/v2 and transit.
//! * Several addresses (a cluster's nodes: [`ClientConfig::with_addresses`], or `VAULT_ADDR`
//!   with commas) make the client move to a node that answers, as `failover` describes:
//!   down, sealed or without an active node → the next one; a write whose outcome is
//!   unknown is never repeated by the client.
//! * Every failure is an [`Error`] a caller can act on: [`Error::Unreachable`] is retryable,
//!   [`Error::Sealed`], [`Error::PermissionDenied`], [`Error::NotFound`], ... carry the
//!   server's messages.
//!
//! Tokens and secret values are held in zeroizing types ([`SecretString`], [`SecretMap`],
//! `Zeroizing<Vec<u8>>`) whose `Debug` output is redacted; they never appear in errors or logs.
//!
//! The client is blocking on purpose: async callers use `spawn_blocking`.

#![forbid(unsafe_code)]

mod client;
mod config;
mod error;
mod failover;
mod kv;
mod secret;
mod sys;
mod transit;
mod types;

pub use client::{retry, Client, Method};
pub use config::{split_addresses, ClientConfig, DEFAULT_ADDRESS};
pub use error::{ApiError, Error, Result};
pub use kv::{Kv2Secret, Kv2VersionMetadata, KvLocation, KvVersion, MountInfo};
pub use secret::{zeroize_value, SecretMap, SecretString};
pub use sys::{
    AuthMountInput, Health, InitRequest, InitResponse, MountConfigInput, MountInput, SealStatus,
    TokenCreateRequest,
};
pub use transit::{DataKey, DataKeyKind, TransitCiphertext, TransitKeyOptions};
pub use types::{Secret, SecretAuth};

#[cfg(test)]
mod tests {
    #[test]
    fn client_is_send_and_sync() {
        // The CSI driver calls the client from `spawn_blocking` and shares it across tasks.
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<crate::Client>();
        assert_send_sync::<crate::Error>();
        assert_send_sync::<crate::SecretString>();
    }
}
