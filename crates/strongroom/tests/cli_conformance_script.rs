//! Runs the shared seed-flow conformance script (`../shared/conformance/conformance_cli.sh`,
//! written for the real `bao` CLI) with OUR CLI as `BAO_BIN`, against a real OpenBao and
//! against `strongroom server`. The script is reference material outside the project: when
//! it (or `jq`/`curl`) is absent the test prints why and passes without running.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{strongroom_bin, Server, ServerKind, Storage};

fn script() -> Option<PathBuf> {
    let shared = std::env::var_os("STRONGROOM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let s = shared.join("conformance/conformance_cli.sh");
    if !s.is_file() {
        eprintln!("skip: {} not present (set STRONGROOM_SHARED)", s.display());
        return None;
    }
    for tool in ["jq", "curl", "bash"] {
        if !Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            eprintln!("skip: `{tool}` is not installed (scripts/test.sh installs it)");
            return None;
        }
    }
    Some(s)
}

fn run_script(kind: ServerKind) {
    let Some(script) = script() else { return };
    let server = Server::start(kind, Storage::Inmem);
    let out = Command::new("bash")
        .arg(&script)
        .arg(server.addr())
        .env("BAO_BIN", strongroom_bin())
        .env("SKIP_RAFT", "1")
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_TOKEN")
        .output()
        .expect("run conformance script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().last().unwrap_or("").to_owned();
    eprintln!("conformance script, our CLI against {kind:?}: {summary}");
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("not ok") || l.starts_with("#   "))
        .collect();
    assert!(
        out.status.success(),
        "conformance script with our CLI against {kind:?} failed:\n{}\n--- summary\n{}\n--- stderr\n{}\n--- server log (tail)\n{}",
        failed.join("\n"),
        summary,
        String::from_utf8_lossy(&out.stderr),
        server.logs().lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(
        summary.ends_with("passed, 0 failed") && !summary.starts_with("0 passed"),
        "unexpected summary: {summary}"
    );
}

#[test]
fn conformance_script_with_our_cli_against_openbao() {
    run_script(ServerKind::OpenBao);
}

#[test]
fn conformance_script_with_our_cli_against_strongroom() {
    run_script(ServerKind::Strongroom);
}
