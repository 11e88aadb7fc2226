//! The key manager driven by independent clients — hvac (Python) and vaultrs (Rust) — with
//! the same scenario against real OpenBao and against `strongroom server`: init, unseal,
//! KV v1/v2, policies and denial, token lifecycle, userpass, seal, restart.

mod common;

use common::{Server, ServerKind, Storage};
use std::path::Path;
use std::process::Command;

fn hvac(server: &Server, state: &Path, phase: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/hvac_kms.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([server.addr(), state.to_str().unwrap(), phase])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "hvac {phase} against {:?} failed:\n{}\n{}\n--- server log\n{}",
        server.kind,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
}

fn hvac_scenario(kind: ServerKind) {
    let mut server = Server::start(kind, Storage::Raft);
    let state = tempfile::NamedTempFile::new().unwrap();
    hvac(&server, state.path(), "before-restart");
    server.restart();
    hvac(&server, state.path(), "after-restart");
}

#[test]
fn hvac_against_openbao() {
    hvac_scenario(ServerKind::OpenBao);
}

#[test]
fn hvac_against_strongroom() {
    hvac_scenario(ServerKind::Strongroom);
}
