//! The only `unsafe` in this crate: hand-written declarations of the librados/librbd calls we
//! use (Ceph 16.2 headers `rados/librados.h`, `rbd/librbd.h`), and the owned handles that make
//! them safe to call. Everything above this module is safe Rust.
//!
//! Invariants (each `unsafe` block below relies only on these):
//! 1. A [`Rados`] owns a `rados_t` from `rados_create2` (non-null), shut down exactly once in
//!    its `Drop`. An [`Io`] owns a `rados_ioctx_t` from `rados_ioctx_create` and holds an
//!    `Arc<Rados>`; an [`Img`] owns an `rbd_image_t` from `rbd_open` and holds an `Arc<Io>`:
//!    a handle is always closed before the handle it was made from.
//! 2. Every string passed in is a `&CStr` (NUL-terminated, no interior NUL) that lives across
//!    the call; librados/librbd copy what they keep. Secrets are passed the same way from a
//!    [`zeroize`]d buffer that outlives the call.
//! 3. Buffers passed in with a length are Rust slices of at least that length; a buffer the
//!    library fills (`rbd_read`, out-arrays of structs) is sized by us and its count checked
//!    against that size before it is read. Arrays the library allocates inside (`name`
//!    strings of snapshot, watcher, trash and image lists) are copied out, then released with
//!    the matching `*_cleanup`/`*_end` call exactly once.
//! 4. librados and librbd are thread-safe for the calls used here (their handles lock
//!    internally; concurrent I/O on one `rbd_image_t` is how librbd is used by QEMU and by
//!    the python binding, which releases the GIL): hence `Send + Sync` on the handles. The
//!    one exception, `rados_ioctx_set_namespace`, is called only before an [`Io`] is shared.
//! 5. An asynchronous request ([`Aio`]) owns its buffer and its completion; the buffer is not
//!    touched by Rust and not freed until the completion reported done
//!    (`rbd_aio_wait_for_complete`), also when the `Aio` is dropped unfinished; the completion
//!    is released exactly once, after that.
//! 6. Return codes are checked: negative is `-errno`; non-negative counts are checked against
//!    the buffer they describe.
//! 7. The libraries are loaded at run time ([`load`], by their Debian sonames
//!    `librados.so.2`/`librbd.so.1`) and never unloaded; each entry point is resolved with
//!    the signature declared here, from Ceph 16.2's headers. Every call goes through a
//!    handle, and the first handle ([`Rados::create`]) is made only after `load` succeeded.
#![allow(unsafe_code)]

mod cls_lock;
mod list;

use crate::error::{Error, Result};
use list::{list_retry, Zeroed};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::{self, NonNull};
use std::sync::Arc;

type RadosT = *mut c_void;
type IoctxT = *mut c_void;
type ImageT = *mut c_void;
type CompletionT = *mut c_void;
type OptsT = *mut c_void;

#[repr(C)]
struct SnapInfo {
    id: u64,
    size: u64,
    name: *const c_char,
}

#[repr(C)]
struct ImageSpec {
    id: *mut c_char,
    name: *mut c_char,
}

#[repr(C)]
struct Watcher {
    addr: *mut c_char,
    id: i64,
    cookie: u64,
}

#[repr(C)]
struct TrashInfo {
    id: *mut c_char,
    name: *mut c_char,
    source: c_int,
    deletion_time: libc::time_t,
    deferment_end_time: libc::time_t,
}

/// `rbd_encryption_luks2_format_options_t` (same layout as the LUKS1 one).
#[repr(C)]
struct LuksOptions {
    alg: c_int,
    passphrase: *const c_char,
    passphrase_size: usize,
}

/// Declares the library calls used, resolved at run time from Debian's `librados.so.2` and
/// `librbd.so.1` (invariant 7): a binary without Ceph's client libraries still runs, and only
/// an RBD operation fails, with [`ErrorKind::LibraryMissing`](crate::ErrorKind). Each call
/// keeps its C name as a function of this module, so the call sites read as plain FFI.
macro_rules! ceph_api {
    ($( $lib:ident { $( fn $name:ident ( $( $arg:ident : $ty:ty ),* $(,)? ) $( -> $ret:ty )? ; )* } )*) => {
        /// The resolved entry points.
        struct Api {
            $( $( $name: unsafe extern "C" fn($($ty),*) $(-> $ret)?, )* )*
        }

        impl Api {
            /// Looks every entry point up in `libs`.
            ///
            /// # Safety
            /// The signatures declared above must be those of Ceph 16.2's headers.
            unsafe fn resolve(libs: &Libs) -> std::result::Result<Api, String> {
                Ok(Api {
                    $( $( $name: *libs.$lib
                        .get::<unsafe extern "C" fn($($ty),*) $(-> $ret)?>(
                            concat!(stringify!($name), "\0").as_bytes(),
                        )
                        .map_err(|e| format!("{}: {e}", stringify!($name)))?, )* )*
                })
            }
        }

        $( $(
            #[allow(clippy::too_many_arguments)]
            unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
                // SAFETY: the caller upholds the call's contract (invariants 1-6); the
                // pointer was resolved from the loaded library (invariant 7).
                unsafe { (api().$name)($($arg),*) }
            }
        )* )*
    };
}

ceph_api! {
    rados {
    fn rados_create2(c: *mut RadosT, cluster: *const c_char, name: *const c_char, f: u64) -> c_int;
    fn rados_conf_read_file(c: RadosT, path: *const c_char) -> c_int;
    fn rados_conf_set(c: RadosT, opt: *const c_char, val: *const c_char) -> c_int;
    fn rados_connect(c: RadosT) -> c_int;
    fn rados_shutdown(c: RadosT);
    fn rados_get_instance_id(c: RadosT) -> u64;
    fn rados_blocklist_add(c: RadosT, addr: *mut c_char, expire: u32) -> c_int;
    fn rados_lock_exclusive(io: IoctxT, oid: *const c_char, name: *const c_char,
        cookie: *const c_char, desc: *const c_char, duration: *mut libc::timeval, flags: u8)
        -> c_int;
    fn rados_list_lockers(io: IoctxT, oid: *const c_char, name: *const c_char,
        exclusive: *mut c_int, tag: *mut c_char, tag_len: *mut usize, clients: *mut c_char,
        clients_len: *mut usize, cookies: *mut c_char, cookies_len: *mut usize,
        addrs: *mut c_char, addrs_len: *mut usize) -> isize;
    fn rados_break_lock(io: IoctxT, oid: *const c_char, name: *const c_char,
        client: *const c_char, cookie: *const c_char) -> c_int;
    fn rados_ioctx_create(c: RadosT, pool: *const c_char, io: *mut IoctxT) -> c_int;
    fn rados_ioctx_destroy(io: IoctxT);
    fn rados_ioctx_set_namespace(io: IoctxT, ns: *const c_char);
    }
    rbd {
    fn rbd_create4(io: IoctxT, name: *const c_char, size: u64, opts: OptsT) -> c_int;
    fn rbd_image_options_create(opts: *mut OptsT);
    fn rbd_image_options_destroy(opts: OptsT);
    fn rbd_image_options_set_string(opts: OptsT, opt: c_int, val: *const c_char) -> c_int;
    fn rbd_image_options_set_uint64(opts: OptsT, opt: c_int, val: u64) -> c_int;
    fn rbd_clone2(
        pio: IoctxT,
        pname: *const c_char,
        psnap: *const c_char,
        cio: IoctxT,
        cname: *const c_char,
        feat: u64,
        order: *mut c_int,
        stripe_unit: u64,
        stripe_count: c_int,
    ) -> c_int;
    fn rbd_remove(io: IoctxT, name: *const c_char) -> c_int;
    fn rbd_trash_move(io: IoctxT, name: *const c_char, delay: u64) -> c_int;
    fn rbd_trash_list(io: IoctxT, e: *mut TrashInfo, n: *mut usize) -> c_int;
    fn rbd_trash_list_cleanup(e: *mut TrashInfo, n: usize);
    fn rbd_trash_remove(io: IoctxT, id: *const c_char, force: bool) -> c_int;
    fn rbd_list2(io: IoctxT, specs: *mut ImageSpec, n: *mut usize) -> c_int;
    fn rbd_image_spec_list_cleanup(specs: *mut ImageSpec, n: usize);
    fn rbd_namespace_create(io: IoctxT, ns: *const c_char) -> c_int;
    fn rbd_namespace_exists(io: IoctxT, ns: *const c_char, exists: *mut bool) -> c_int;
    fn rbd_open(io: IoctxT, name: *const c_char, img: *mut ImageT, snap: *const c_char) -> c_int;
    fn rbd_open_read_only(
        io: IoctxT,
        name: *const c_char,
        img: *mut ImageT,
        snap: *const c_char,
    ) -> c_int;
    fn rbd_close(img: ImageT) -> c_int;
    fn rbd_get_size(img: ImageT, size: *mut u64) -> c_int;
    fn rbd_resize(img: ImageT, size: u64) -> c_int;
    fn rbd_read(img: ImageT, ofs: u64, len: usize, buf: *mut c_char) -> isize;
    fn rbd_write(img: ImageT, ofs: u64, len: usize, buf: *const c_char) -> isize;
    fn rbd_discard(img: ImageT, ofs: u64, len: u64) -> c_int;
    fn rbd_flush(img: ImageT) -> c_int;
    fn rbd_aio_create_completion(arg: *mut c_void, cb: *const c_void, c: *mut CompletionT)
        -> c_int;
    fn rbd_aio_read(img: ImageT, off: u64, len: usize, buf: *mut c_char, c: CompletionT) -> c_int;
    fn rbd_aio_write(
        img: ImageT,
        off: u64,
        len: usize,
        buf: *const c_char,
        c: CompletionT,
    ) -> c_int;
    fn rbd_aio_wait_for_complete(c: CompletionT) -> c_int;
    fn rbd_aio_get_return_value(c: CompletionT) -> isize;
    fn rbd_aio_release(c: CompletionT);
    fn rbd_metadata_get(
        img: ImageT,
        key: *const c_char,
        val: *mut c_char,
        len: *mut usize,
    ) -> c_int;
    fn rbd_metadata_set(img: ImageT, key: *const c_char, val: *const c_char) -> c_int;
    fn rbd_metadata_remove(img: ImageT, key: *const c_char) -> c_int;
    fn rbd_metadata_list(
        img: ImageT,
        start: *const c_char,
        max: u64,
        keys: *mut c_char,
        keys_len: *mut usize,
        vals: *mut c_char,
        vals_len: *mut usize,
    ) -> c_int;
    fn rbd_snap_create(img: ImageT, name: *const c_char) -> c_int;
    fn rbd_snap_remove(img: ImageT, name: *const c_char) -> c_int;
    fn rbd_snap_protect(img: ImageT, name: *const c_char) -> c_int;
    fn rbd_snap_unprotect(img: ImageT, name: *const c_char) -> c_int;
    fn rbd_snap_list(img: ImageT, snaps: *mut SnapInfo, max: *mut c_int) -> c_int;
    fn rbd_snap_list_end(snaps: *mut SnapInfo);
    fn rbd_flatten(img: ImageT) -> c_int;
    fn rbd_lock_acquire(img: ImageT, mode: c_int) -> c_int;
    fn rbd_lock_release(img: ImageT) -> c_int;
    fn rbd_is_exclusive_lock_owner(img: ImageT, owner: *mut c_int) -> c_int;
    fn rbd_lock_get_owners(
        img: ImageT,
        mode: *mut c_int,
        o: *mut *mut c_char,
        n: *mut usize,
    ) -> c_int;
    fn rbd_lock_get_owners_cleanup(o: *mut *mut c_char, n: usize);
    fn rbd_lock_break(img: ImageT, mode: c_int, owner: *const c_char) -> c_int;
    fn rbd_watchers_list(img: ImageT, w: *mut Watcher, n: *mut usize) -> c_int;
    fn rbd_watchers_list_cleanup(w: *mut Watcher, n: usize);
    fn rbd_encryption_format(img: ImageT, fmt: c_int, opts: *mut c_void, size: usize) -> c_int;
    fn rbd_encryption_load(img: ImageT, fmt: c_int, opts: *mut c_void, size: usize) -> c_int;
    }
}

/// The loaded libraries; never unloaded (the resolved pointers point into them).
struct Libs {
    rados: libloading::Library,
    rbd: libloading::Library,
}

static API: std::sync::OnceLock<std::result::Result<(Libs, Api), String>> =
    std::sync::OnceLock::new();

/// Loads librados and librbd once; the error says what to install.
pub(crate) fn load() -> Result<()> {
    match API.get_or_init(|| open("librados.so.2", "librbd.so.1")) {
        Ok(_) => Ok(()),
        Err(reason) => Err(Error::library_missing(reason)),
    }
}

/// Opens the two libraries by name and resolves every entry point.
fn open(rados: &str, rbd: &str) -> std::result::Result<(Libs, Api), String> {
    // SAFETY: invariant 7: loading Debian's Ceph client libraries runs their initialisers
    // only, which have no preconditions; the signatures resolved are the headers' (checked
    // by the tests on a real cluster).
    unsafe {
        let rados = libloading::Library::new(rados).map_err(|e| e.to_string())?;
        let rbd = libloading::Library::new(rbd).map_err(|e| e.to_string())?;
        let libs = Libs { rados, rbd };
        let api = Api::resolve(&libs)?;
        Ok((libs, api))
    }
}

/// The entry points; only called through a handle, which exists only after [`load`]
/// succeeded (invariant 7).
fn api() -> &'static Api {
    match API.get() {
        Some(Ok((_, api))) => api,
        _ => unreachable!("invariant 7: no Ceph call before load() succeeded"),
    }
}

const RBD_LOCK_MODE_EXCLUSIVE: c_int = 0;
const RBD_IMAGE_OPTION_FEATURES: c_int = 1;
const RBD_IMAGE_OPTION_DATA_POOL: c_int = 10;
const RBD_ENCRYPTION_FORMAT_LUKS2: c_int = 1;
const RBD_ENCRYPTION_ALGORITHM_AES256: c_int = 1;

/// `Ok(r)` for `r >= 0`, else the errno as an [`Error`].
fn check(r: c_int, op: &'static str, what: &dyn Fn() -> String) -> Result<c_int> {
    if r < 0 {
        Err(Error::errno(op, what(), -r))
    } else {
        Ok(r)
    }
}

fn copy_str(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: invariant 3, a NUL-terminated string the library allocated, still alive (the
    // caller releases it only after copying).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------- rados

pub(crate) struct Rados(NonNull<c_void>);

// SAFETY: invariant 4.
unsafe impl Send for Rados {}
// SAFETY: invariant 4.
unsafe impl Sync for Rados {}

impl Drop for Rados {
    fn drop(&mut self) {
        // SAFETY: invariant 1: created by rados_create2, shut down once, after every Io.
        unsafe { rados_shutdown(self.0.as_ptr()) }
    }
}

impl Rados {
    /// A cluster handle for `client.<id>`, not connected, no configuration read yet.
    pub fn create(id: &CStr) -> Result<Rados> {
        load()?;
        let mut h: RadosT = ptr::null_mut();
        // SAFETY: invariant 2 (strings); `h` is our out-pointer.
        let r = unsafe { rados_create2(&mut h, c"ceph".as_ptr(), id.as_ptr(), 0) };
        check(r, "rados_create2", &|| format!("{id:?}"))?;
        NonNull::new(h)
            .map(Rados)
            .ok_or_else(|| Error::errno("rados_create2", "null handle", libc::EIO))
    }
    /// Read a ceph.conf (`None`: Ceph's own search, `$CEPH_CONF` first).
    pub fn read_conf(&self, path: Option<&CStr>) -> Result<()> {
        let p = path.map_or(ptr::null(), CStr::as_ptr);
        // SAFETY: invariants 1 and 2 (null means "search").
        let r = unsafe { rados_conf_read_file(self.0.as_ptr(), p) };
        check(r, "rados_conf_read_file", &|| format!("{path:?}")).map(drop)
    }
    /// Set a configuration option. `value` may be a secret (the cephx key): it is never put in
    /// an error; the caller zeroizes its buffer.
    pub fn conf_set(&self, opt: &CStr, value: &CStr) -> Result<()> {
        // SAFETY: invariants 1 and 2.
        let r = unsafe { rados_conf_set(self.0.as_ptr(), opt.as_ptr(), value.as_ptr()) };
        check(r, "rados_conf_set", &|| format!("{opt:?}")).map(drop)
    }
    pub fn connect(&self) -> Result<()> {
        // SAFETY: invariant 1.
        let r = unsafe { rados_connect(self.0.as_ptr()) };
        check(r, "rados_connect", &String::new).map(drop)
    }
    pub fn instance_id(&self) -> u64 {
        // SAFETY: invariant 1 (connected: callers hold a connected Cluster only).
        unsafe { rados_get_instance_id(self.0.as_ptr()) }
    }
    /// Blocklist a client address (`ip:port/nonce`) for `secs` seconds.
    pub fn blocklist_add(&self, addr: &CStr, secs: u32) -> Result<()> {
        let mut owned = addr.to_bytes_with_nul().to_vec();
        // SAFETY: invariants 1 and 2 (the library takes a non-const pointer but only reads it;
        // we pass our own copy anyway).
        let r = unsafe { rados_blocklist_add(self.0.as_ptr(), owned.as_mut_ptr().cast(), secs) };
        check(r, "rados_blocklist_add", &|| format!("{addr:?}")).map(drop)
    }
}

pub(crate) struct Io {
    h: NonNull<c_void>,
    _cluster: Arc<Rados>,
}

// SAFETY: invariant 4.
unsafe impl Send for Io {}
// SAFETY: invariant 4 (the namespace is set in `create`, before the Io can be shared).
unsafe impl Sync for Io {}

impl Drop for Io {
    fn drop(&mut self) {
        // SAFETY: invariant 1: destroyed once, after every image opened through it.
        unsafe { rados_ioctx_destroy(self.h.as_ptr()) }
    }
}

impl Io {
    pub fn create(cluster: Arc<Rados>, pool: &CStr, ns: &CStr) -> Result<Io> {
        let mut h: IoctxT = ptr::null_mut();
        // SAFETY: invariants 1 and 2.
        let r = unsafe { rados_ioctx_create(cluster.0.as_ptr(), pool.as_ptr(), &mut h) };
        check(r, "rados_ioctx_create", &|| format!("pool {pool:?}"))?;
        let h = NonNull::new(h).ok_or_else(|| Error::errno("rados_ioctx_create", "", libc::EIO))?;
        // SAFETY: invariants 2 and 4: not shared yet.
        unsafe { rados_ioctx_set_namespace(h.as_ptr(), ns.as_ptr()) };
        Ok(Io {
            h,
            _cluster: cluster,
        })
    }
    fn p(&self) -> IoctxT {
        self.h.as_ptr()
    }
    pub fn namespace_exists(&self, ns: &CStr) -> Result<bool> {
        let mut e = false;
        // SAFETY: invariants 1 and 2.
        let r = unsafe { rbd_namespace_exists(self.p(), ns.as_ptr(), &mut e) };
        check(r, "rbd_namespace_exists", &|| format!("{ns:?}"))?;
        Ok(e)
    }
    pub fn namespace_create(&self, ns: &CStr) -> Result<()> {
        // SAFETY: invariants 1 and 2.
        let r = unsafe { rbd_namespace_create(self.p(), ns.as_ptr()) };
        check(r, "rbd_namespace_create", &|| format!("{ns:?}")).map(drop)
    }
    /// An image with `features`, its data objects in `data_pool` when given (`rbd_create4`).
    pub fn create_image(
        &self,
        name: &CStr,
        size: u64,
        features: u64,
        data_pool: Option<&CStr>,
    ) -> Result<()> {
        let mut opts: OptsT = ptr::null_mut();
        // SAFETY: invariants 1 and 2; the options are created, used and destroyed here, once
        // (librbd copies the strings set into them).
        let r = unsafe {
            rbd_image_options_create(&mut opts);
            let mut r = rbd_image_options_set_uint64(opts, RBD_IMAGE_OPTION_FEATURES, features);
            if let (0, Some(p)) = (r, data_pool) {
                r = rbd_image_options_set_string(opts, RBD_IMAGE_OPTION_DATA_POOL, p.as_ptr());
            }
            if r == 0 {
                r = rbd_create4(self.p(), name.as_ptr(), size, opts);
            }
            rbd_image_options_destroy(opts);
            r
        };
        check(r, "rbd_create", &|| format!("{name:?}")).map(drop)
    }
    pub fn clone_image(
        &self,
        parent: &CStr,
        snap: &CStr,
        child_io: &Io,
        child: &CStr,
        features: u64,
    ) -> Result<()> {
        let mut order: c_int = 0;
        // SAFETY: invariants 1 and 2; both ioctxs are alive for the call.
        let r = unsafe {
            rbd_clone2(
                self.p(),
                parent.as_ptr(),
                snap.as_ptr(),
                child_io.p(),
                child.as_ptr(),
                features,
                &mut order,
                0,
                0,
            )
        };
        check(r, "rbd_clone", &|| {
            format!("{parent:?}@{snap:?} -> {child:?}")
        })
        .map(drop)
    }
    pub fn remove_image(&self, name: &CStr) -> Result<()> {
        // SAFETY: invariants 1 and 2.
        let r = unsafe { rbd_remove(self.p(), name.as_ptr()) };
        check(r, "rbd_remove", &|| format!("{name:?}")).map(drop)
    }
    pub fn trash_move(&self, name: &CStr) -> Result<()> {
        // SAFETY: invariants 1 and 2.
        let r = unsafe { rbd_trash_move(self.p(), name.as_ptr(), 0) };
        check(r, "rbd_trash_move", &|| format!("{name:?}")).map(drop)
    }
    pub fn trash_remove(&self, id: &CStr) -> Result<()> {
        // SAFETY: invariants 1 and 2.
        let r = unsafe { rbd_trash_remove(self.p(), id.as_ptr(), false) };
        check(r, "rbd_trash_remove", &|| format!("{id:?}")).map(drop)
    }
    /// (id, name) of every image in the trash.
    pub fn trash_list(&self) -> Result<Vec<(String, String)>> {
        list_retry(
            "rbd_trash_list",
            // SAFETY: invariant 3: the buffer has room for `*n` entries.
            |b, n| unsafe { rbd_trash_list(self.p(), b, n) },
            |t: &TrashInfo| (copy_str(t.id), copy_str(t.name)),
            // SAFETY: invariant 3: the k entries the library filled, released once.
            |b, k| unsafe { rbd_trash_list_cleanup(b, k) },
        )
    }
    pub fn list_images(&self) -> Result<Vec<String>> {
        list_retry(
            "rbd_list",
            // SAFETY: invariant 3: the buffer has room for `*n` entries.
            |b, n| unsafe { rbd_list2(self.p(), b, n) },
            |s: &ImageSpec| copy_str(s.name),
            // SAFETY: invariant 3: the k entries the library filled, released once.
            |b, k| unsafe { rbd_image_spec_list_cleanup(b, k) },
        )
    }
}

// ---------------------------------------------------------------------------------- images

pub(crate) struct Img {
    h: NonNull<c_void>,
    _io: Arc<Io>,
}

// SAFETY: invariant 4.
unsafe impl Send for Img {}
// SAFETY: invariant 4.
unsafe impl Sync for Img {}

impl Drop for Img {
    fn drop(&mut self) {
        // SAFETY: invariant 1: closed once; no Aio outlives the image (they borrow it).
        unsafe { rbd_close(self.h.as_ptr()) };
    }
}

impl Img {
    /// Open `name` (at snapshot `snap`, read-only, when given).
    pub fn open(io: Arc<Io>, name: &CStr, snap: Option<&CStr>, read_only: bool) -> Result<Img> {
        let mut h: ImageT = ptr::null_mut();
        let s = snap.map_or(ptr::null(), CStr::as_ptr);
        // SAFETY: invariants 1 and 2 (a null snapshot name means the head).
        let r = unsafe {
            if read_only {
                rbd_open_read_only(io.p(), name.as_ptr(), &mut h, s)
            } else {
                rbd_open(io.p(), name.as_ptr(), &mut h, s)
            }
        };
        check(r, "rbd_open", &|| format!("{name:?}"))?;
        let h = NonNull::new(h).ok_or_else(|| Error::errno("rbd_open", "", libc::EIO))?;
        Ok(Img { h, _io: io })
    }
    fn p(&self) -> ImageT {
        self.h.as_ptr()
    }
    pub fn size(&self) -> Result<u64> {
        let mut s = 0u64;
        // SAFETY: invariant 1.
        check(
            unsafe { rbd_get_size(self.p(), &mut s) },
            "rbd_get_size",
            &String::new,
        )?;
        Ok(s)
    }
    pub fn resize(&self, size: u64) -> Result<()> {
        // SAFETY: invariant 1.
        check(
            unsafe { rbd_resize(self.p(), size) },
            "rbd_resize",
            &String::new,
        )
        .map(drop)
    }
    /// Fill `buf` from `ofs`; a short read (past the end) is an error.
    pub fn read(&self, ofs: u64, buf: &mut [u8]) -> Result<()> {
        // SAFETY: invariant 3: `buf` is writable for its length.
        let r = unsafe { rbd_read(self.p(), ofs, buf.len(), buf.as_mut_ptr().cast()) };
        full(r, buf.len(), "rbd_read")
    }
    pub fn write(&self, ofs: u64, buf: &[u8]) -> Result<()> {
        // SAFETY: invariant 3: `buf` is readable for its length.
        let r = unsafe { rbd_write(self.p(), ofs, buf.len(), buf.as_ptr().cast()) };
        full(r, buf.len(), "rbd_write")
    }
    pub fn discard(&self, ofs: u64, len: u64) -> Result<()> {
        // SAFETY: invariant 1.
        check(
            unsafe { rbd_discard(self.p(), ofs, len) },
            "rbd_discard",
            &String::new,
        )
        .map(drop)
    }
    pub fn flush(&self) -> Result<()> {
        // SAFETY: invariant 1.
        check(unsafe { rbd_flush(self.p()) }, "rbd_flush", &String::new).map(drop)
    }
    /// Start a read of `buf.len()` bytes at `ofs` into `buf` (owned by the request).
    pub fn aio_read(&self, ofs: u64, buf: Vec<u8>) -> Result<Aio<'_>> {
        self.aio(ofs, buf, true)
    }
    /// Start a write of `buf` at `ofs` (the buffer is owned by the request until it is done).
    pub fn aio_write(&self, ofs: u64, buf: Vec<u8>) -> Result<Aio<'_>> {
        self.aio(ofs, buf, false)
    }
    fn aio(&self, ofs: u64, mut buf: Vec<u8>, read: bool) -> Result<Aio<'_>> {
        let mut c: CompletionT = ptr::null_mut();
        // SAFETY: no callback (null), our out-pointer.
        let r = unsafe { rbd_aio_create_completion(ptr::null_mut(), ptr::null(), &mut c) };
        check(r, "rbd_aio_create_completion", &String::new)?;
        let c = NonNull::new(c).ok_or_else(|| Error::errno("rbd_aio", "", libc::ENOMEM))?;
        // SAFETY: invariant 5: the Vec's heap buffer does not move while the Aio owns it, and
        // it is neither read nor freed before the completion reports done.
        let r = unsafe {
            if read {
                rbd_aio_read(
                    self.p(),
                    ofs,
                    buf.len(),
                    buf.as_mut_ptr().cast(),
                    c.as_ptr(),
                )
            } else {
                rbd_aio_write(self.p(), ofs, buf.len(), buf.as_ptr().cast(), c.as_ptr())
            }
        };
        if r < 0 {
            // SAFETY: invariant 5: never submitted, so released here, once.
            unsafe { rbd_aio_release(c.as_ptr()) };
            return Err(Error::errno(
                if read {
                    "rbd_aio_read"
                } else {
                    "rbd_aio_write"
                },
                "",
                -r,
            ));
        }
        Ok(Aio {
            c: Some(c),
            buf,
            read,
            _img: std::marker::PhantomData,
        })
    }
    pub fn metadata_get(&self, key: &CStr) -> Result<Option<String>> {
        let mut len = 256usize;
        for _ in 0..4 {
            let mut buf = vec![0u8; len];
            // SAFETY: invariants 2 and 3: `buf` has `len` bytes.
            let r = unsafe {
                rbd_metadata_get(self.p(), key.as_ptr(), buf.as_mut_ptr().cast(), &mut len)
            };
            match r {
                r if r == -libc::ENOENT => return Ok(None),
                r if r == -libc::ERANGE && len > buf.len() => continue,
                r => check(r, "rbd_metadata_get", &|| format!("{key:?}"))?,
            };
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            buf.truncate(end);
            return String::from_utf8(buf).map(Some).map_err(|_| {
                Error::errno(
                    "rbd_metadata_get",
                    format!("{key:?}: not UTF-8"),
                    libc::EILSEQ,
                )
            });
        }
        Err(Error::errno(
            "rbd_metadata_get",
            format!("{key:?}"),
            libc::EAGAIN,
        ))
    }
    pub fn metadata_set(&self, key: &CStr, val: &CStr) -> Result<()> {
        // SAFETY: invariants 1 and 2.
        let r = unsafe { rbd_metadata_set(self.p(), key.as_ptr(), val.as_ptr()) };
        check(r, "rbd_metadata_set", &|| format!("{key:?}")).map(drop)
    }
    pub fn metadata_remove(&self, key: &CStr) -> Result<()> {
        // SAFETY: invariants 1 and 2.
        let r = unsafe { rbd_metadata_remove(self.p(), key.as_ptr()) };
        check(r, "rbd_metadata_remove", &|| format!("{key:?}")).map(drop)
    }
    /// Every (key, value) pair, in key order.
    pub fn metadata_list(&self) -> Result<Vec<(String, String)>> {
        let (mut klen, mut vlen) = (4096usize, 16384usize);
        for _ in 0..6 {
            let (mut keys, mut vals) = (vec![0u8; klen], vec![0u8; vlen]);
            // SAFETY: invariants 2 and 3: both buffers have the lengths passed; no limit (0).
            let r = unsafe {
                rbd_metadata_list(
                    self.p(),
                    c"".as_ptr(),
                    0,
                    keys.as_mut_ptr().cast(),
                    &mut klen,
                    vals.as_mut_ptr().cast(),
                    &mut vlen,
                )
            };
            if r == -libc::ERANGE {
                (klen, vlen) = (klen.max(keys.len() * 2), vlen.max(vals.len() * 2));
                continue;
            }
            check(r, "rbd_metadata_list", &String::new)?;
            let split = |b: &[u8], n: usize| -> Vec<String> {
                b[..n.min(b.len())]
                    .split(|&c| c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            };
            let (k, v) = (split(&keys, klen), split(&vals, vlen));
            if k.len() != v.len() {
                return Err(Error::errno(
                    "rbd_metadata_list",
                    "keys and values differ",
                    libc::EIO,
                ));
            }
            return Ok(k.into_iter().zip(v).collect());
        }
        Err(Error::errno("rbd_metadata_list", "", libc::EAGAIN))
    }
    pub fn snap_op(&self, op: SnapOp, name: &CStr) -> Result<()> {
        // SAFETY: invariants 1 and 2.
        let r = unsafe {
            match op {
                SnapOp::Create => rbd_snap_create(self.p(), name.as_ptr()),
                SnapOp::Remove => rbd_snap_remove(self.p(), name.as_ptr()),
                SnapOp::Protect => rbd_snap_protect(self.p(), name.as_ptr()),
                SnapOp::Unprotect => rbd_snap_unprotect(self.p(), name.as_ptr()),
            }
        };
        check(r, op.name(), &|| format!("{name:?}")).map(drop)
    }
    /// (id, size, name) of each snapshot.
    pub fn snap_list(&self) -> Result<Vec<(u64, u64, String)>> {
        let mut room: c_int = 16;
        for _ in 0..8 {
            // one spare entry: librbd ends the array with a zeroed one
            let mut buf: Vec<SnapInfo> = (0..=room).map(|_| SnapInfo::zeroed()).collect();
            let mut max = room;
            // SAFETY: invariant 3: room + 1 entries.
            let r = unsafe { rbd_snap_list(self.p(), buf.as_mut_ptr(), &mut max) };
            if r == -libc::ERANGE && max > room {
                room = max;
                continue;
            }
            let n = check(r, "rbd_snap_list", &String::new)? as usize;
            if n > room as usize {
                return Err(Error::errno(
                    "rbd_snap_list",
                    "count beyond the buffer",
                    libc::EIO,
                ));
            }
            let out = buf[..n]
                .iter()
                .map(|s| (s.id, s.size, copy_str(s.name)))
                .collect();
            // SAFETY: invariant 3: releases the names of the filled entries, once.
            unsafe { rbd_snap_list_end(buf.as_mut_ptr()) };
            return Ok(out);
        }
        Err(Error::errno("rbd_snap_list", "", libc::EAGAIN))
    }
    pub fn flatten(&self) -> Result<()> {
        // SAFETY: invariant 1.
        check(
            unsafe { rbd_flatten(self.p()) },
            "rbd_flatten",
            &String::new,
        )
        .map(drop)
    }
    pub fn lock_acquire(&self) -> Result<()> {
        // SAFETY: invariant 1.
        let r = unsafe { rbd_lock_acquire(self.p(), RBD_LOCK_MODE_EXCLUSIVE) };
        check(r, "rbd_lock_acquire", &String::new).map(drop)
    }
    pub fn lock_release(&self) -> Result<()> {
        // SAFETY: invariant 1.
        check(
            unsafe { rbd_lock_release(self.p()) },
            "rbd_lock_release",
            &String::new,
        )
        .map(drop)
    }
    pub fn is_lock_owner(&self) -> Result<bool> {
        let mut o: c_int = 0;
        // SAFETY: invariant 1.
        let r = unsafe { rbd_is_exclusive_lock_owner(self.p(), &mut o) };
        check(r, "rbd_is_exclusive_lock_owner", &String::new)?;
        Ok(o != 0)
    }
    /// The exclusive lock's owners (client names like `client.4123`); empty if unlocked.
    pub fn lock_owners(&self) -> Result<Vec<String>> {
        let mut room = 8usize;
        for _ in 0..4 {
            let mut buf: Vec<*mut c_char> = vec![ptr::null_mut(); room];
            let (mut n, mut mode) = (room, 0 as c_int);
            // SAFETY: invariant 3: `room` pointer slots.
            let r = unsafe { rbd_lock_get_owners(self.p(), &mut mode, buf.as_mut_ptr(), &mut n) };
            match r {
                r if r == -libc::ENOENT => return Ok(Vec::new()),
                r if r == -libc::ERANGE && n > room => {
                    room = n;
                    continue;
                }
                r => check(r, "rbd_lock_get_owners", &String::new)?,
            };
            let n = n.min(room);
            let out = buf[..n].iter().map(|&p| copy_str(p)).collect();
            // SAFETY: invariant 3: the n strings the library allocated, released once.
            unsafe { rbd_lock_get_owners_cleanup(buf.as_mut_ptr(), n) };
            return Ok(out);
        }
        Err(Error::errno("rbd_lock_get_owners", "", libc::EAGAIN))
    }
    pub fn lock_break(&self, owner: &CStr) -> Result<()> {
        // SAFETY: invariants 1 and 2.
        let r = unsafe { rbd_lock_break(self.p(), RBD_LOCK_MODE_EXCLUSIVE, owner.as_ptr()) };
        check(r, "rbd_lock_break", &|| format!("{owner:?}")).map(drop)
    }
    /// (address, client id) of each watcher.
    pub fn watchers(&self) -> Result<Vec<(String, i64)>> {
        list_retry(
            "rbd_watchers_list",
            // SAFETY: invariant 3: the buffer has room for `*n` entries.
            |b, n| unsafe { rbd_watchers_list(self.p(), b, n) },
            |w: &Watcher| (copy_str(w.addr), w.id),
            // SAFETY: invariant 3: the k entries the library filled, released once.
            |b, k| unsafe { rbd_watchers_list_cleanup(b, k) },
        )
    }
    /// librbd's own LUKS2 (AES-256): format (`load == false`) or load with `passphrase`.
    pub fn encryption(&self, load: bool, passphrase: &[u8]) -> Result<()> {
        let mut o = LuksOptions {
            alg: RBD_ENCRYPTION_ALGORITHM_AES256,
            passphrase: passphrase.as_ptr().cast(),
            passphrase_size: passphrase.len(),
        };
        let size = std::mem::size_of::<LuksOptions>();
        let opts = (&mut o as *mut LuksOptions).cast::<c_void>();
        // SAFETY: invariants 1 and 3: `o` and the passphrase outlive the call.
        let r = unsafe {
            if load {
                rbd_encryption_load(self.p(), RBD_ENCRYPTION_FORMAT_LUKS2, opts, size)
            } else {
                rbd_encryption_format(self.p(), RBD_ENCRYPTION_FORMAT_LUKS2, opts, size)
            }
        };
        let op = if load {
            "rbd_encryption_load"
        } else {
            "rbd_encryption_format"
        };
        check(r, op, &String::new).map(drop)
    }
}

fn full(r: isize, want: usize, op: &'static str) -> Result<()> {
    if r < 0 {
        return Err(Error::errno(op, "", -(r as i32)));
    }
    if r as usize != want {
        return Err(Error::errno(op, format!("{r} of {want} bytes"), libc::EIO));
    }
    Ok(())
}

#[derive(Clone, Copy)]
pub(crate) enum SnapOp {
    Create,
    Remove,
    Protect,
    Unprotect,
}

impl SnapOp {
    fn name(self) -> &'static str {
        match self {
            SnapOp::Create => "rbd_snap_create",
            SnapOp::Remove => "rbd_snap_remove",
            SnapOp::Protect => "rbd_snap_protect",
            SnapOp::Unprotect => "rbd_snap_unprotect",
        }
    }
}

/// One asynchronous read or write in flight (invariant 5). [`Aio::wait`] gives the buffer back.
pub struct Aio<'a> {
    c: Option<NonNull<c_void>>,
    buf: Vec<u8>,
    read: bool,
    _img: std::marker::PhantomData<&'a Img>,
}

// SAFETY: the completion is a heap object of librbd, usable from any thread (invariant 4).
unsafe impl Send for Aio<'_> {}

impl Aio<'_> {
    /// Wait until done; the buffer (filled, for a read) or the request's error.
    pub fn wait(mut self) -> Result<Vec<u8>> {
        let r = self.finish();
        let op = if self.read {
            "rbd_aio_read"
        } else {
            "rbd_aio_write"
        };
        // a finished write answers 0, a read the byte count
        let r = if !self.read && r == 0 {
            self.buf.len() as isize
        } else {
            r
        };
        full(r, self.buf.len(), op)?;
        Ok(std::mem::take(&mut self.buf))
    }
    fn finish(&mut self) -> isize {
        let Some(c) = self.c.take() else {
            return -(libc::EINVAL as isize);
        };
        // SAFETY: invariant 5: wait first, then read the result, then release once.
        unsafe {
            rbd_aio_wait_for_complete(c.as_ptr());
            let r = rbd_aio_get_return_value(c.as_ptr());
            rbd_aio_release(c.as_ptr());
            r
        }
    }
}

impl Drop for Aio<'_> {
    fn drop(&mut self) {
        // invariant 5: the buffer outlives the request even when nobody waits for it
        if self.c.is_some() {
            self.finish();
        }
    }
}

/// A C string from Rust text; an interior NUL is an invalid argument (never a panic).
pub(crate) fn cstr(op: &'static str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(op, format!("{s:?} contains a NUL byte")))
}

#[cfg(test)]
mod tests;
