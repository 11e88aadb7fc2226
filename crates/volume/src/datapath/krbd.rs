//! The kernel RBD driver (krbd) through its sysfs ABI (Documentation/ABI/testing/
//! sysfs-bus-rbd): an image is mapped by writing
//! `<mon addrs> <options> <pool> <image> <snap>` to `/sys/bus/rbd/add_single_major` and
//! unmapped by writing its device id to `remove_single_major`. No Ceph userspace (`rbd` CLI)
//! is needed.
//!
//! The cephx key never appears in the map string: the kernel copies `config_info` (the whole
//! string) into `/sys/bus/rbd/devices/N/config_info`, so the key goes into the process keyring
//! as a `ceph` key under a one-off description, the string names it (`key=<description>`), and
//! the key is invalidated as soon as the write returns (libceph keeps its own copy).
//!
//! Exclusive access is not the kernel's: a map does not carry `exclusive` (with it the kernel
//! holds librbd's exclusive lock for as long as the image is mapped and hands it to nobody,
//! so not even the controller could grow the image). The kernel takes the lock at its first
//! write, hands it over when another client asks (a resize, a snapshot) and takes it back at
//! its next write. Who is attached is recorded by [`crate::rbd_claim`], which names this
//! mapping's client by its address ([`client_addr`]): `noshare` gives every mapping a client
//! of its own, so that fencing a dead mapping's client fences that mapping alone.
//!
//! `unsafe` only in [`KernelKey`]: two system calls (`add_key`, `keyctl`) whose pointer
//! arguments are NUL-terminated strings and a byte slice that outlive the call.
#![allow(unsafe_code)]

use crate::ceph_conf::KernelMonitors;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strongroom_vault_client::SecretString;
use zeroize::Zeroizing;

const BUS: &str = "/sys/bus/rbd";

/// An RBD image as the kernel driver names it (pool, RADOS namespace, image; the head, not a
/// snapshot). Recorded in a volume's runtime record before it is mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KrbdImage {
    pub pool: String,
    #[serde(default)]
    pub namespace: String,
    pub image: String,
}

/// How to reach the cluster: the monitors (in the protocol their `ms_mode` selects), the
/// cephx user and key.
pub struct KrbdCredentials {
    pub monitors: KernelMonitors,
    pub user: String,
    pub key: SecretString,
}

/// A device the kernel driver made: `/dev/rbd<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RbdDev(pub u32);

impl RbdDev {
    pub fn path(self) -> PathBuf {
        PathBuf::from(format!("/dev/rbd{}", self.0))
    }
}

/// What this node lacks to map RBD images in the kernel, and how to get it; `None` when
/// nothing. Loads the `rbd` module when it is not loaded yet.
pub fn missing() -> Option<&'static str> {
    if control("add").is_some() {
        return None;
    }
    if !Path::new("/sys/module/rbd").exists() {
        let _ = std::process::Command::new("modprobe")
            .args(["-q", "rbd"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if control("add").is_some() {
            return None;
        }
    }
    Some(
        "the kernel has no rbd driver: load it (`modprobe rbd`), or run on a kernel built with \
         CONFIG_BLK_DEV_RBD (every distribution kernel is)",
    )
}

/// The control file `add` or `remove`: the `_single_major` one when the module has it (the
/// default since Linux 4.15; writing the plain one is then EINVAL).
fn control(op: &str) -> Option<PathBuf> {
    [format!("{BUS}/{op}_single_major"), format!("{BUS}/{op}")]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Map `img` read-write (a client of its own, `noshare`; librbd's exclusive lock taken at
/// the first write and handed over on request); returns its device once the device node
/// exists. Who may attach is decided by the caller ([`crate::rbd_claim`]).
pub fn map(img: &KrbdImage, cred: &KrbdCredentials, attach: &str) -> Result<RbdDev> {
    if let Some(why) = missing() {
        return Err(Error::FailedPrecondition(why.into()));
    }
    let add = control("add").ok_or_else(|| Error::Internal("no rbd add control".into()))?;
    plain("attach token", attach, false)?;
    let key = KernelKey::add(&cred.key, attach)?;
    let spec = map_spec(img, cred, key.description())?;
    let before = devices();
    let written = write_control(&add, &spec);
    drop(key);
    written.map_err(|e| map_error(img, e))?;
    let dev = find(img)
        .into_iter()
        .find(|d| !before.contains(d))
        .ok_or_else(|| Error::Internal(format!("{} mapped, but no device shows it", img.image)))?;
    wait_for_node(dev)?;
    Ok(dev)
}

/// The line written to `add`: `<mons> name=<user>,key=<desc>[,_pool_ns=<ns>][,ms_mode=<m>],
/// noshare <pool> <image> -`. Names that could smuggle in more options or fields
/// (whitespace, `,`, `=`) are refused.
fn map_spec(img: &KrbdImage, cred: &KrbdCredentials, key_desc: &str) -> Result<String> {
    let fields = [
        ("pool", img.pool.as_str()),
        ("image", img.image.as_str()),
        ("Ceph user", cred.user.as_str()),
    ];
    for (what, v) in fields {
        plain(what, v, false)?;
    }
    plain("RADOS namespace", &img.namespace, true)?;
    let mons = &cred.monitors.addrs;
    if mons.is_empty() {
        return Err(Error::InvalidArgument("no monitor addresses".into()));
    }
    for m in mons {
        plain("monitor address", m, false)?;
    }
    let mut opts = format!("name={},key={key_desc}", cred.user);
    if !img.namespace.is_empty() {
        opts.push_str(&format!(",_pool_ns={}", img.namespace));
    }
    if let Some(m) = cred.monitors.ms_mode {
        opts.push_str(&format!(",ms_mode={}", m.as_str()));
    }
    opts.push_str(",noshare");
    Ok(format!(
        "{} {opts} {} {} -",
        mons.join(","),
        img.pool,
        img.image
    ))
}

fn plain(what: &str, v: &str, may_be_empty: bool) -> Result<()> {
    let bad = v.chars().any(|c| c.is_whitespace() || c == ',' || c == '=');
    if bad || (v.is_empty() && !may_be_empty) {
        return Err(Error::InvalidArgument(format!(
            "{what} {v:?} cannot be mapped by the kernel rbd driver (empty, or holds \
             whitespace, ',' or '=')"
        )));
    }
    Ok(())
}

/// One `write(2)` of the whole line (sysfs takes a store as one write).
fn write_control(path: &Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let n = f.write(line.as_bytes())?;
    if n != line.len() {
        return Err(std::io::Error::other(format!(
            "short write to {}",
            path.display()
        )));
    }
    Ok(())
}

/// The kernel's answer to a map as an error class (details are in the kernel log).
fn map_error(img: &KrbdImage, e: std::io::Error) -> Error {
    let what = format!(
        "kernel rbd map of {}/{}{}",
        img.pool,
        if img.namespace.is_empty() {
            String::new()
        } else {
            format!("{}/", img.namespace)
        },
        img.image
    );
    match e.raw_os_error() {
        Some(libc::EROFS) | Some(libc::EBUSY) => Error::FailedPrecondition(format!(
            "RBD image {} is attached read-write elsewhere (its exclusive lock is held): {what}",
            img.image
        )),
        Some(libc::ENOENT) => Error::NotFound(format!("{what}: no such pool or image")),
        Some(libc::ENXIO) => Error::FailedPrecondition(format!(
            "{what}: the image uses features this kernel's rbd driver does not support"
        )),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EKEYREJECTED) => {
            Error::PermissionDenied(format!("{what}: refused (cephx or root privileges)"))
        }
        Some(libc::ETIMEDOUT) => Error::Unavailable(format!("{what}: timed out")),
        Some(libc::EINVAL) => Error::InvalidArgument(format!(
            "{what}: the kernel refused the map request (see the kernel log)"
        )),
        _ => Error::io(what, e),
    }
}

/// The address of the client a mapping uses (`ip:port/nonce`, as watcher lists show it).
pub fn client_addr(dev: RbdDev) -> Result<String> {
    let p = format!("{BUS}/devices/{}/client_addr", dev.0);
    let a = std::fs::read_to_string(&p).map_err(|e| Error::io(format!("read {p}"), e))?;
    let a = a.trim();
    if a.is_empty() || a.contains(char::is_whitespace) {
        return Err(Error::Internal(format!("{p} holds no client address")));
    }
    Ok(a.to_owned())
}

/// Every mapped device.
fn devices() -> Vec<RbdDev> {
    std::fs::read_dir(format!("{BUS}/devices"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .map(RbdDev)
        .collect()
}

/// The devices mapping the head of `img` (normally at most one).
pub fn find(img: &KrbdImage) -> Vec<RbdDev> {
    let attr = |d: RbdDev, a: &str| {
        std::fs::read_to_string(format!("{BUS}/devices/{}/{a}", d.0))
            .map(|s| s.trim_end_matches('\n').to_owned())
    };
    devices()
        .into_iter()
        .filter(|&d| {
            attr(d, "pool").is_ok_and(|p| p == img.pool)
                && attr(d, "name").is_ok_and(|n| n == img.image)
                // absent before Linux 4.19 (no namespaces then)
                && attr(d, "pool_ns").unwrap_or_default() == img.namespace
                && attr(d, "current_snap").is_ok_and(|s| s == "-")
        })
        .collect()
}

/// Whether the mapping `dev` was made for the attach `attach` (the token given to [`map`]):
/// its map line names the key that attach made (`key=strongroom-krbd-<token>`), so a mapping
/// made just before a crash, before its number was recorded, is known too, and a mapping of
/// the same image by another attach (another state directory, another program) is not.
pub fn made_by(dev: RbdDev, attach: &str) -> bool {
    std::fs::read_to_string(format!("{BUS}/devices/{}/config_info", dev.0))
        .is_ok_and(|c| names_attach(&c, attach))
}

/// Whether a map line (`config_info`) names the key of the attach `attach`.
fn names_attach(config_info: &str, attach: &str) -> bool {
    let named = format!("key={}", key_description(attach));
    config_info.split([' ', ',', '\n']).any(|opt| opt == named)
}

/// The kernel key's description for an attach: also how [`made_by`] knows its mappings.
fn key_description(attach: &str) -> String {
    format!("strongroom-krbd-{attach}")
}

/// Remove the mapping (after everything on it is closed). Gone already is fine.
pub fn unmap(dev: RbdDev) -> Result<()> {
    let Some(remove) = control("remove") else {
        return Ok(()); // no driver: nothing mapped
    };
    match write_control(&remove, &dev.0.to_string()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(Error::FailedPrecondition(format!(
            "{} is still open; close what uses it first",
            dev.path().display()
        ))),
        Err(e) => Err(Error::io(format!("unmap {}", dev.path().display()), e)),
    }
}

/// devtmpfs makes the node when the disk is added; wait for it briefly.
fn wait_for_node(dev: RbdDev) -> Result<()> {
    for _ in 0..200 {
        if dev.path().exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(Error::Command(format!(
        "{} did not appear",
        dev.path().display()
    )))
}

/// A cephx key in this process's keyring, as libceph's `key=` option looks it up; invalidated
/// (gone from every keyring) when dropped.
struct KernelKey {
    serial: i64,
    description: String,
}

impl KernelKey {
    /// Add the base64 cephx `key` (decoded: the encoded `CryptoKey` libceph parses) under
    /// the description of the attach `attach`.
    fn add(key: &SecretString, attach: &str) -> Result<KernelKey> {
        use base64::Engine;
        let payload = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(key.expose().trim())
                .map_err(|_| Error::InvalidArgument("the Ceph key is not base64".into()))?,
        );
        let description = key_description(attach);
        let ty = CString::new("ceph").expect("no NUL");
        let desc = CString::new(description.as_str())
            .map_err(|_| Error::InvalidArgument("attach token holds a NUL".into()))?;
        // SAFETY: `ty` and `desc` are NUL-terminated and `payload` is `payload.len()` readable
        // bytes, all alive across the call; the kernel copies them and keeps no pointer.
        let serial = unsafe {
            libc::syscall(
                libc::SYS_add_key,
                ty.as_ptr(),
                desc.as_ptr(),
                payload.as_ptr(),
                payload.len(),
                libc::KEY_SPEC_PROCESS_KEYRING,
            )
        };
        if serial < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EINVAL) => {
                    Error::InvalidArgument("the kernel refused the Ceph key's encoding".into())
                }
                _ => Error::io("add the Ceph key to the kernel keyring", e),
            });
        }
        Ok(KernelKey {
            serial,
            description,
        })
    }
    fn description(&self) -> &str {
        &self.description
    }
}

impl Drop for KernelKey {
    fn drop(&mut self) {
        // SAFETY: integer arguments only.
        unsafe {
            libc::syscall(libc::SYS_keyctl, libc::KEYCTL_INVALIDATE, self.serial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred() -> KrbdCredentials {
        KrbdCredentials {
            monitors: KernelMonitors {
                addrs: vec!["10.0.0.1:6789".into(), "10.0.0.2:6789".into()],
                ms_mode: None,
            },
            user: "csi".into(),
            key: SecretString::new("AQBa"),
        }
    }
    fn img(ns: &str) -> KrbdImage {
        KrbdImage {
            pool: "rbd".into(),
            namespace: ns.into(),
            image: "csi-vol-1".into(),
        }
    }

    #[test]
    fn map_line_names_the_key_never_holds_it() {
        let s = map_spec(&img(""), &cred(), "strongroom-krbd-00").unwrap();
        assert_eq!(
            s,
            "10.0.0.1:6789,10.0.0.2:6789 name=csi,key=strongroom-krbd-00,noshare rbd csi-vol-1 -"
        );
        assert!(!s.contains("AQBa"));
        let s = map_spec(&img("tenant-a"), &cred(), "k").unwrap();
        assert!(s.contains(",_pool_ns=tenant-a,"), "{s}");
    }

    #[test]
    fn msgr2_monitors_are_mapped_with_their_mode() {
        let mut c = cred();
        c.monitors = KernelMonitors {
            addrs: vec!["10.0.0.1:3300".into()],
            ms_mode: Some(crate::ceph_conf::MsMode::PreferCrc),
        };
        let s = map_spec(&img(""), &c, "k").unwrap();
        assert!(
            s.starts_with("10.0.0.1:3300 name=csi,key=k,ms_mode=prefer-crc,noshare "),
            "{s}"
        );
        c.monitors.ms_mode = Some(crate::ceph_conf::MsMode::Secure);
        let s = map_spec(&img("ns"), &c, "k").unwrap();
        assert!(s.contains(",_pool_ns=ns,ms_mode=secure,"), "{s}");
    }

    #[test]
    fn names_that_would_add_options_or_fields_are_refused() {
        for (pool, ns, image) in [
            ("rbd x", "", "i"),
            ("rbd", "a,exclusive", "i"),
            ("rbd", "", "i j"),
            ("rbd", "n=1", "i"),
            ("", "", "i"),
        ] {
            let i = KrbdImage {
                pool: pool.into(),
                namespace: ns.into(),
                image: image.into(),
            };
            let e = map_spec(&i, &cred(), "k").unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{e}");
        }
        let mut c = cred();
        c.user = "admin,secret=x".into();
        assert!(map_spec(&img(""), &c, "k").is_err());
        c.user = "admin".into();
        c.monitors.addrs = vec!["10.0.0.1:6789,10.0.0.2:6789 name=x".into()];
        assert!(map_spec(&img(""), &c, "k").is_err());
        c.monitors.addrs.clear();
        assert!(map_spec(&img(""), &c, "k").is_err());
    }

    #[test]
    fn kernel_answers_become_error_classes() {
        use crate::ErrorKind::*;
        let e = |errno| map_error(&img("ns"), std::io::Error::from_raw_os_error(errno)).kind();
        assert_eq!(e(libc::EROFS), FailedPrecondition);
        assert_eq!(e(libc::EBUSY), FailedPrecondition);
        assert_eq!(e(libc::ENOENT), NotFound);
        assert_eq!(e(libc::ETIMEDOUT), Unavailable);
        assert_eq!(e(libc::EACCES), PermissionDenied);
        assert_eq!(e(libc::EINVAL), InvalidArgument);
    }

    #[test]
    fn an_attach_knows_its_mappings_by_the_key_its_map_line_names() {
        let line =
            "10.0.0.1:6789 name=admin,key=strongroom-krbd-abc12,_pool_ns=t,noshare rbd img -\n";
        assert!(names_attach(line, "abc12"));
        assert!(!names_attach(line, "abc1"), "a prefix is another attach");
        assert!(!names_attach(line, "abc123"));
        let old = "10.0.0.1:6789 name=admin,key=strongroom-krbd-9f00aa,noshare rbd img -";
        assert!(!names_attach(old, "abc12"));
        let hand = "10.0.0.1:6789 name=admin,secret=AQB==,exclusive rbd img -";
        assert!(!names_attach(hand, "abc12"));
    }
}
