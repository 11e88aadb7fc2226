//! RADOS object locks (the `lock` object class, librados' `rados_lock_*`): an advisory lock
//! by name on one object, held by (client, cookie) until broken or released; see the
//! invariants of [`super`] (1, 2, 3 and 6 are relied on here).

use super::{check, rados_break_lock, rados_list_lockers, rados_lock_exclusive, Io};
use crate::error::{Error, Result};
use std::ffi::{c_int, CStr};
use std::ptr;

/// One holder of an object lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locker {
    /// `client.<id>` of the client that took it.
    pub client: String,
    pub cookie: String,
    /// That client's address (`ip:port/nonce`, maybe with a `v1:`/`any:` prefix).
    pub addr: String,
}

impl Io {
    /// Take the exclusive lock `name` on `oid` as `cookie`, without expiry. `EBUSY`: another
    /// (client, cookie) holds it; `EEXIST`: this client holds it as `cookie` already.
    pub fn lock_exclusive(
        &self,
        oid: &CStr,
        name: &CStr,
        cookie: &CStr,
        desc: &CStr,
    ) -> Result<()> {
        // SAFETY: invariants 1 and 2; a null duration means "no expiry".
        let r = unsafe {
            rados_lock_exclusive(
                self.p(),
                oid.as_ptr(),
                name.as_ptr(),
                cookie.as_ptr(),
                desc.as_ptr(),
                ptr::null_mut(),
                0,
            )
        };
        check(r, "rados_lock_exclusive", &|| format!("{oid:?} {name:?}")).map(drop)
    }

    /// Who holds the lock `name` on `oid` (none when the object does not exist).
    pub fn lockers(&self, oid: &CStr, name: &CStr) -> Result<Vec<Locker>> {
        let mut room = [256usize; 4]; // tag, clients, cookies, addresses
        for _ in 0..6 {
            let mut bufs = room.map(|n| vec![0u8; n]);
            let [tag, clients, cookies, addrs] = &mut bufs;
            let [mut tl, mut cl, mut kl, mut al] = room;
            let mut exclusive: c_int = 0;
            // SAFETY: invariants 1 and 2; invariant 3: each buffer has the room its length
            // says, and the lengths the library answers are checked against that below.
            let r = unsafe {
                rados_list_lockers(
                    self.p(),
                    oid.as_ptr(),
                    name.as_ptr(),
                    &mut exclusive,
                    tag.as_mut_ptr().cast(),
                    &mut tl,
                    clients.as_mut_ptr().cast(),
                    &mut cl,
                    cookies.as_mut_ptr().cast(),
                    &mut kl,
                    addrs.as_mut_ptr().cast(),
                    &mut al,
                )
            };
            let lens = [tl, cl, kl, al];
            if r == -(libc::ERANGE as isize) {
                room = std::array::from_fn(|i| lens[i].max(room[i] * 2));
                continue;
            }
            if r == -(libc::ENOENT as isize) {
                return Ok(Vec::new());
            }
            if r < 0 {
                return Err(Error::errno("rados_list_lockers", "", -(r as i32)));
            }
            if (0..4).any(|i| lens[i] > room[i]) {
                return Err(Error::errno(
                    "rados_list_lockers",
                    "length beyond the buffer",
                    libc::EIO,
                ));
            }
            let n = r as usize;
            let field = |b: &[u8], len: usize| -> Vec<String> {
                b[..len]
                    .split(|&c| c == 0)
                    .take(n)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            };
            let (c, k, a) = (field(clients, cl), field(cookies, kl), field(addrs, al));
            if c.len() != n || k.len() != n || a.len() != n {
                return Err(Error::errno("rados_list_lockers", "short list", libc::EIO));
            }
            return Ok(c
                .into_iter()
                .zip(k)
                .zip(a)
                .map(|((client, cookie), addr)| Locker {
                    client,
                    cookie,
                    addr,
                })
                .collect());
        }
        Err(Error::errno(
            "rados_list_lockers",
            "list kept growing",
            libc::EAGAIN,
        ))
    }

    /// Remove `client`'s hold `cookie` of the lock `name` on `oid` (any client may).
    pub fn break_lock(&self, oid: &CStr, name: &CStr, client: &CStr, cookie: &CStr) -> Result<()> {
        // SAFETY: invariants 1 and 2.
        let r = unsafe {
            rados_break_lock(
                self.p(),
                oid.as_ptr(),
                name.as_ptr(),
                client.as_ptr(),
                cookie.as_ptr(),
            )
        };
        check(r, "rados_break_lock", &|| format!("{oid:?} {name:?}")).map(drop)
    }
}
