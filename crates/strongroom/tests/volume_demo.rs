//! `strongroom demo` runs its whole story (embedded key manager, two tenants, isolation,
//! rotation, shred) and every check passes: with real mounts when root, and through the
//! library's read/write API with `--no-mount`; on RBD images with `--backend rbd`.

mod common;

fn run_demo(args: &[&str]) -> String {
    let o = std::process::Command::new(common::strongroom_bin())
        .arg("demo")
        .args(args)
        .output()
        .expect("run strongroom demo");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "demo failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains(", 0 failed"), "{out}");
    assert!(!out.contains("[FAILED]"), "{out}");
    out
}

#[test]
fn demo_library_mode() {
    let out = run_demo(&["--no-mount"]);
    assert!(out.contains("library"), "{out}");
    assert!(out.contains("refused with PERMISSION_DENIED"), "{out}");
}

#[test]
fn demo_with_mounts_when_root() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        eprintln!("SKIP: the mounting demo needs root");
        return;
    }
    let out = run_demo(&[]);
    assert!(out.contains("through the mounted ext4"), "{out}");
    // Issue 17: which data path each volume used; where only userspace was possible, how to
    // get the kernel one.
    let used = |kind: strongroom_volume::DataPathKind| {
        out.contains(&format!("mounted on the {} data path", kind.describe()))
    };
    match strongroom_volume::DataPathKind::kernel_missing() {
        Some(why) => {
            assert!(used(strongroom_volume::DataPathKind::Userspace), "{out}");
            assert!(
                out.contains(&format!("for the kernel one (dm-crypt): {why}")),
                "{out}"
            );
        }
        None => assert!(used(strongroom_volume::DataPathKind::Kernel), "{out}"),
    }
}

/// `--backend rbd`: the same story on a throwaway Ceph the demo starts (library mode, so it
/// also runs without root); the plaintext search reads the RADOS objects of each image.
#[test]
fn demo_on_rbd() {
    use strongroom_rbd::dev::{DevCluster, REQUIRED_ENV};
    if let Err(why) = DevCluster::available() {
        assert_ne!(std::env::var(REQUIRED_ENV).as_deref(), Ok("1"), "{why}");
        eprintln!("SKIP: no Ceph for the RBD demo: {why}");
        return;
    }
    let out = run_demo(&["--backend", "rbd", "--no-mount"]);
    assert!(out.contains("throwaway Ceph cluster"), "{out}");
    assert!(out.contains("RADOS objects of csi-vol-"), "{out}");
    assert!(out.contains("none of the markers"), "{out}");
}
