//! Batch tokens, response wrapping and the identity mount as real clients see them: the same
//! hvac + `bao` CLI script (tests/clients/hvac_features.py) against the real OpenBao and
//! against `strongroom server`, outputs normalized (random ids and times by their shape) and
//! required to be equal.

mod common;

use common::{Server, ServerKind};
use std::path::Path;
use std::process::Command;

fn features(server: &Server) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/hvac_features.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([server.addr(), "root"])
        .env("STRONGROOM_BAO_BIN", common::bao_bin())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "hvac_features against {:?} failed:\n{}\n{}\n--- server log\n{}",
        server.kind,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn hvac_and_the_bao_cli_see_no_difference() {
    let bao = Server::start_dev(ServerKind::OpenBao, "root");
    let ours = Server::start_dev(ServerKind::Strongroom, "root");
    let (theirs, mine) = (features(&bao), features(&ours));
    let a: serde_json::Value = serde_json::from_str(&theirs).unwrap();
    let b: serde_json::Value = serde_json::from_str(&mine).unwrap();
    let keys = a.as_object().unwrap().keys();
    let differing: Vec<String> = keys
        .filter(|k| a[k.as_str()] != b[k.as_str()])
        .map(|k| {
            format!(
                "{k}:\n  openbao:    {}\n  strongroom: {}",
                a[k.as_str()],
                b[k.as_str()]
            )
        })
        .collect();
    assert!(differing.is_empty(), "{}", differing.join("\n"));
    assert_eq!(a.as_object().unwrap().len(), b.as_object().unwrap().len());
    assert!(
        a.as_object().unwrap().len() >= 30,
        "the script ran every step"
    );
}
