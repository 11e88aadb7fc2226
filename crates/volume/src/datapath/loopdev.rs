//! Loop devices, driven through util-linux `losetup` (no ioctl code of our own).

use super::run;
use crate::error::Result;
use std::path::Path;

/// Attach `file` to a free loop device; returns `/dev/loopN`. With `direct_io` the loop device
/// bypasses the page cache of `file` (for the FUSE file: no second cached copy of the
/// plaintext, no double caching); the kernel falls back to buffered I/O where unsupported.
/// `sector_size` (e.g. 4096, the LUKS2 sector) makes the kernel send whole sectors only.
pub fn attach(file: &Path, direct_io: bool, sector_size: Option<u32>) -> Result<String> {
    let f = file.to_string_lossy();
    let dio = if direct_io {
        "--direct-io=on"
    } else {
        "--direct-io=off"
    };
    let ss = sector_size.map(|s| s.to_string());
    let mut args = vec!["--find", "--show", dio];
    if let Some(s) = &ss {
        args.extend_from_slice(&["--sector-size", s]);
    }
    args.push(&f);
    let out = run("losetup", &args)?;
    Ok(out.trim().to_owned())
}

/// Loop devices currently backed by `file`.
pub fn attached_to(file: &Path) -> Vec<String> {
    let f = file.to_string_lossy();
    run("losetup", &["-j", &f])
        .map(|out| {
            out.lines()
                .filter_map(|l| l.split(':').next())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `dev` is an attached loop device.
pub fn is_attached(dev: &str) -> bool {
    run("losetup", &[dev]).is_ok()
}

pub fn detach(dev: &str) -> Result<()> {
    if !is_attached(dev) {
        return Ok(());
    }
    run("losetup", &["-d", dev]).map(|_| ())
}

/// Re-read the size of the backing file (online resize).
pub fn refresh_capacity(dev: &str) -> Result<()> {
    run("losetup", &["-c", dev]).map(|_| ())
}
