//! Strongroom's key manager: a Vault/OpenBao-compatible HTTP API.
//!
//! Layering, bottom up (as in Vault):
//! - [`storage`]: a small transactional key/value contract (in memory, or redb on disk).
//! - [`barrier`]: AES-256-GCM encryption of every entry under a keyring sealed by Shamir.
//! - [`core`]: seal state and the request pipeline over the [`unsealed`] state: router
//!   ([`mounts`], canonical [`paths`]), token store ([`token`]), ACL ([`policy`]), audit
//!   ([`audit`]). Backends declare their paths in tables ([`backend::table`]); [`sys`] and
//!   [`token_api`] are the built-in ones, reaching the server through [`system`]; the
//!   mountable engines live in [`backend`]. No module depends on one that depends on it.
//! - [`http`]: the wire format (envelopes, status codes, headers) and [`server`]: listeners;
//!   [`ui`]: the web UI's embedded pages, served beside the API when enabled.
#![forbid(unsafe_code)]

pub mod audit;
pub mod backend;
pub mod barrier;
pub mod cidr;
pub mod config;
pub mod core;
pub mod crypto;
pub mod duration;
pub mod fields;
pub mod ha;
pub mod http;
pub mod metrics;
pub mod mounts;
pub mod paths;
pub mod policy;
pub mod policy_store;
pub mod request;
pub mod server;
pub mod shamir;
pub mod storage;
pub mod sys;
pub mod system;
pub mod token;
pub mod token_api;
pub mod ui;
pub mod unsealed;
pub mod wrapping;
