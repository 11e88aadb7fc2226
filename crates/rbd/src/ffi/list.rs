//! librbd's list calls (out-arrays of structs the library fills): see invariant 3 of
//! [`super`].

use super::{check, ImageSpec, SnapInfo, TrashInfo, Watcher};
use crate::error::{Error, Result};
use std::ffi::c_int;
use std::ptr;

/// Out-array entries start zeroed (null pointers), so an entry the library did not fill is
/// still a valid value.
pub(super) trait Zeroed {
    fn zeroed() -> Self;
}
impl Zeroed for TrashInfo {
    fn zeroed() -> Self {
        TrashInfo {
            id: ptr::null_mut(),
            name: ptr::null_mut(),
            source: 0,
            deletion_time: 0,
            deferment_end_time: 0,
        }
    }
}
impl Zeroed for ImageSpec {
    fn zeroed() -> Self {
        ImageSpec {
            id: ptr::null_mut(),
            name: ptr::null_mut(),
        }
    }
}
impl Zeroed for Watcher {
    fn zeroed() -> Self {
        Watcher {
            addr: ptr::null_mut(),
            id: 0,
            cookie: 0,
        }
    }
}
impl Zeroed for SnapInfo {
    fn zeroed() -> Self {
        SnapInfo {
            id: 0,
            size: 0,
            name: ptr::null(),
        }
    }
}

/// librbd's list protocol: `call(buf, &mut n)` with room for `n` entries answers `-ERANGE`
/// and the count needed when that is too few; on success `n` is the count filled. The filled
/// entries are copied out with `copy`, then released with `cleanup` (invariant 3).
pub(super) fn list_retry<T: Zeroed, R>(
    op: &'static str,
    call: impl Fn(*mut T, &mut usize) -> c_int,
    copy: impl Fn(&T) -> R,
    cleanup: impl Fn(*mut T, usize),
) -> Result<Vec<R>> {
    let mut room = 16usize;
    for _ in 0..8 {
        let mut buf: Vec<T> = (0..room).map(|_| T::zeroed()).collect();
        let mut n = room;
        let r = call(buf.as_mut_ptr(), &mut n);
        if r == -libc::ERANGE && n > room {
            room = n;
            continue;
        }
        check(r, op, &String::new)?;
        if n > room {
            return Err(Error::errno(op, "count beyond the buffer", libc::EIO));
        }
        let out = buf[..n].iter().map(&copy).collect();
        cleanup(buf.as_mut_ptr(), n);
        return Ok(out);
    }
    Err(Error::errno(op, "list kept growing", libc::EAGAIN))
}
