//! Advisory locks on RADOS objects (the `lock` object class): a lock by name on one object,
//! held by (client, cookie) until released or broken, whoever breaks it. librbd's own
//! exclusive lock is one of these (named `rbd_lock`, on the image header); a caller may keep
//! its own beside it under another name.

use crate::cluster::IoCtx;
use crate::error::Result;
use crate::ffi::cstr;

/// One holder of an object lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locker {
    /// `client.<id>` of the client that took it.
    pub client: String,
    pub cookie: String,
    /// That client's address (`ip:port/nonce`, maybe prefixed `v1:`, `v2:` or `any:`).
    pub address: String,
}

impl IoCtx {
    /// Take the exclusive lock `name` on object `oid` (in this pool and namespace) as
    /// `cookie`, without expiry. [`ErrorKind::Busy`](crate::ErrorKind): someone else holds
    /// it; [`ErrorKind::AlreadyExists`](crate::ErrorKind): this client holds it as `cookie`.
    pub fn lock_exclusive(&self, oid: &str, name: &str, cookie: &str, desc: &str) -> Result<()> {
        let op = "rados_lock_exclusive";
        self.raw().lock_exclusive(
            &cstr(op, oid)?,
            &cstr(op, name)?,
            &cstr(op, cookie)?,
            &cstr(op, desc)?,
        )
    }

    /// The holders of the lock `name` on `oid` (none if the object does not exist).
    pub fn lockers(&self, oid: &str, name: &str) -> Result<Vec<Locker>> {
        let op = "rados_list_lockers";
        Ok(self
            .raw()
            .lockers(&cstr(op, oid)?, &cstr(op, name)?)?
            .into_iter()
            .map(|l| Locker {
                client: l.client,
                cookie: l.cookie,
                address: l.addr,
            })
            .collect())
    }

    /// Remove `client`'s hold `cookie` of the lock `name` on `oid`.
    pub fn break_lock(&self, oid: &str, name: &str, client: &str, cookie: &str) -> Result<()> {
        let op = "rados_break_lock";
        self.raw().break_lock(
            &cstr(op, oid)?,
            &cstr(op, name)?,
            &cstr(op, client)?,
            &cstr(op, cookie)?,
        )
    }
}
