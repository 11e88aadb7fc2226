//! The kernel data path: dm-crypt through `cryptsetup`, used when the kernel has
//! device-mapper. The keyslot secret goes to cryptsetup on stdin (`--key-file=-`), never in
//! argv, env or a file.
//!
//! This machine's kernel has no device-mapper, so this module is detected as unavailable and
//! is not exercised by the tests here; the userspace path (FUSE + loop) is used instead.

use super::run;
use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Device-mapper is in the kernel (`/proc/misc` lists `device-mapper`) and cryptsetup exists.
pub fn available() -> bool {
    missing().is_none()
}

/// What this node lacks for the kernel data path, and how to get it; `None` when nothing.
pub fn missing() -> Option<&'static str> {
    let dm = std::fs::read_to_string("/proc/misc")
        .map(|s| s.lines().any(|l| l.trim().ends_with("device-mapper")))
        .unwrap_or(false);
    if !dm {
        Some(
            "the kernel has no device-mapper: load it (`modprobe dm_crypt`), or run on a kernel \
             built with CONFIG_DM_CRYPT (every distribution kernel is)",
        )
    } else if !which("cryptsetup") {
        Some(
            "cryptsetup is not on PATH: install it (Debian/Ubuntu: apt-get install cryptsetup-bin)",
        )
    } else {
        None
    }
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

pub fn mapper_name(volume_id: &str) -> String {
    format!("strongroom-{volume_id}")
}

/// `cryptsetup open --type luks2 <device> <name> --key-file=-` with the secret on stdin. The
/// volume key reaches dm-crypt through the kernel keyring (a `logon` key the table names), so
/// the table never holds it in hex (`dmsetup table --showkeys` shows only the reference).
pub fn open(device: &Path, name: &str, secret: &[u8]) -> Result<String> {
    let dev = device.to_string_lossy();
    with_key(
        &["open", "--type", "luks2", "--key-file=-", &dev, name],
        secret,
    )?;
    Ok(format!("/dev/mapper/{name}"))
}

/// `cryptsetup ARGS...` with the keyslot secret on its stdin.
fn with_key(args: &[&str], secret: &[u8]) -> Result<()> {
    let mut child = Command::new("cryptsetup")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("spawn cryptsetup", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(secret)
            .map_err(|e| Error::io("key to cryptsetup", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("cryptsetup", e))?;
    if !out.status.success() {
        return Err(Error::Command(format!(
            "cryptsetup {} failed: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

pub fn close(name: &str) -> Result<()> {
    if !Path::new(&format!("/dev/mapper/{name}")).exists() {
        return Ok(());
    }
    run("cryptsetup", &["close", name]).map(|_| ())
}

/// Grow the mapping to the (already grown) backing device. The table names its key in the
/// kernel keyring, where it no longer is after activation, so cryptsetup needs the keyslot
/// secret again (on stdin) to load the resized table.
pub fn resize(name: &str, secret: &[u8]) -> Result<()> {
    with_key(&["resize", "--key-file=-", name], secret)
}
