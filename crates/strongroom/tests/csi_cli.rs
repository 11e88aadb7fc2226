//! `strongroom csi`: configuration errors are reported before anything is served.

use std::process::Command;

fn csi(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .arg("csi")
        .args(args)
        .env_remove("NODE_ID")
        .env_remove("CSI_ENDPOINT")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn configuration_errors_are_reported() {
    let (code, err) = csi(&["--mode", "node"]);
    assert_eq!(code, 1);
    assert!(err.contains("--node-id"), "{err}");

    let (code, err) = csi(&["--endpoint", "tcp://0.0.0.0:9000", "--mode", "controller"]);
    assert_eq!(code, 1);
    assert!(err.contains("unix"), "{err}");

    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("vault-tokens"),
        r#"{"KMS_PROVIDER": "vaulttokens", "VAULT_ADDR": "http://kms:8200", "VAULT_BAKEND": "kv"}"#,
    )
    .unwrap();
    let dir = d.path().to_str().unwrap();
    let (code, err) = csi(&["--mode", "controller", "--kms-config-dir", dir]);
    assert_eq!(code, 1);
    assert!(
        err.contains("\"VAULT_BAKEND\"") && err.contains("vault-tokens"),
        "{err}"
    );

    let (code, err) = csi(&["--mode", "controller", "--socket-mode", "0666"]);
    assert_ne!(code, 0);
    assert!(err.contains("0666"), "{err}");
}
