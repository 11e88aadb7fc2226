//! Strongroom's key manager: a Vault/OpenBao-compatible HTTP API.
//!
//! Layering, bottom up (as in Vault):
//! - [`storage`]: a small transactional key/value contract (in memory, or redb on disk).
//! - [`barrier`]: AES-256-GCM encryption of every entry under a keyring sealed by Shamir.
//! - [`core`]: seal state, router ([`mounts`]), token store ([`token`]), ACL ([`policy`]),
//!   audit ([`audit`]); [`sys`] and [`token_api`] are the built-in mounts; other engines
//!   live in [`backend`].
//! - [`http`]: the wire format (envelopes, status codes, headers) and [`server`]: listeners.
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
pub mod http;
pub mod metrics;
pub mod mounts;
pub mod paths;
pub mod policy;
pub mod policy_store;
pub mod request;
pub mod seal;
pub mod server;
pub mod shamir;
pub mod storage;
pub mod sys;
pub mod token;
pub mod token_api;
pub mod wrapping;
