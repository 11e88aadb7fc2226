//! The kill -9 promise, with fault injection: `STRONGROOM_FAULT=<step>` makes the CLI process
//! abort (SIGABRT: no destructors, no cleanup, like kill -9) at that step of create, rotate
//! (keyslot secret and KEK), resize, shred and mount. After each crash the volume is usable
//! (its data intact) or cleanly re-runnable: re-running the same command completes it.

mod common;
mod volume_common;

use common::ServerKind;
use strongroom_volume::{Credential, ProtectionRequest, State};
use volume_common::*;

fn aborted(o: &std::process::Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    o.status.signal() == Some(6)
}

fn slots(e: &Env, id: &str) -> usize {
    let img = e.vol_root().join(id).join("volume.img");
    strongroom_luks::Volume::open(strongroom_luks::FileDevice::open(&img, false).unwrap())
        .unwrap()
        .keyslots()
        .len()
}

fn write_marker(e: &Env, id: &str, cred: &Credential) -> String {
    let mk = marker(id);
    let v = e.manager().open(id, cred).expect("open");
    v.write(20_000, mk.as_bytes()).unwrap();
    v.flush().unwrap();
    mk
}

fn check_marker(e: &Env, id: &str, cred: &Credential, mk: &str) {
    let v = e
        .manager()
        .open(id, cred)
        .expect("open after crash + re-run");
    let mut b = vec![0u8; mk.len()];
    v.read(20_000, &mut b).unwrap();
    assert_eq!(b, mk.as_bytes(), "{id}: data intact");
}

#[test]
fn crash_anywhere_in_create_then_rerun() {
    let e = env(ServerKind::Strongroom, &["a"]);
    let tok = e.token_file("a", &e.tenants[0].1);
    let a = e.tenant(0);
    for (mode, _) in [("envelope", 0), ("kv", 1)] {
        for step in [
            "create:provisioned",
            "create:store-ready",
            "create:protected-unrecorded",
            "create:key-protected",
            "create:formatted",
        ] {
            let id = format!("c-{mode}-{}", step.replace(':', "-"));
            let args = [
                "create",
                &id,
                "--tenant",
                "a",
                "--size",
                "32M",
                "--protection",
                mode,
                "--token-file",
                tok.to_str().unwrap(),
            ];
            let o = e.cli(&args, &[("STRONGROOM_FAULT", step)]);
            assert!(aborted(&o), "{step}: {}", out_text(&o));
            // Not usable yet, and says so (no format from a probe, no guessing).
            if let Ok(st) = e.manager().status(&id) {
                if st.state != State::Formatted {
                    let err = e.manager().open(&id, &a).err().unwrap();
                    assert_eq!(err.code(), "FAILED_PRECONDITION", "{step}: {err}");
                    assert!(err.to_string().contains("re-run create"), "{err}");
                }
            }
            let o = e.cli(&args, &[]);
            assert!(o.status.success(), "{step} re-run: {}", out_text(&o));
            let mk = write_marker(&e, &id, &a);
            check_marker(&e, &id, &a, &mk);
            assert_eq!(slots(&e, &id), 1);
            assert_eq!(e.manager().status(&id).unwrap().state, State::Formatted);
        }
    }
}

#[test]
fn crash_anywhere_in_rotation_resize_and_shred_then_rerun() {
    let e = env(ServerKind::Strongroom, &["a"]);
    let tok = e.token_file("a", &e.tenants[0].1);
    let admin_tok = e.token_file("admin", &e.admin);
    let tok = tok.to_str().unwrap();
    let a = e.tenant(0);
    for (mode, prot) in [
        ("envelope", ProtectionRequest::envelope_for("a")),
        (
            "kv",
            ProtectionRequest::Kv {
                backend: strongroom_volume::tenant::kv_backend("secret", "a"),
            },
        ),
    ] {
        let mut steps: Vec<(&str, Vec<&str>)> = vec![
            ("rotate:new-protected", vec!["rotate", "--kind", "slot"]),
            ("rotate:slot-added", vec!["rotate", "--kind", "slot"]),
            ("rotate:promoted", vec!["rotate", "--kind", "slot"]),
            ("rotate:dropped-one", vec!["rotate", "--kind", "slot"]),
            ("resize:recorded", vec!["resize", "--size", "40M"]),
            ("resize:grown", vec!["resize", "--size", "48M"]),
        ];
        if mode == "envelope" {
            steps.push(("kek:rewrapped", vec!["rotate", "--kind", "kek"]));
        } else {
            steps.push(("rotate:kv-promoted", vec!["rotate", "--kind", "slot"]));
        }
        let id = format!("r-{mode}");
        e.manager()
            .create(&req(&id, "a", prot.clone()), &a)
            .unwrap();
        let mk = write_marker(&e, &id, &a);
        for (step, cmd) in &steps {
            let mut args = vec![cmd[0], id.as_str()];
            args.extend_from_slice(&cmd[1..]);
            args.extend_from_slice(&["--token-file", tok]);
            let o = e.cli(&args, &[("STRONGROOM_FAULT", step)]);
            assert!(aborted(&o), "{mode} {step}: {}", out_text(&o));
            // Usable right after the crash (an open finishes the interrupted step) ...
            check_marker(&e, &id, &a, &mk);
            // ... and the command re-runs cleanly.
            let o = e.cli(&args, &[]);
            assert!(o.status.success(), "{mode} {step} re-run: {}", out_text(&o));
            check_marker(&e, &id, &a, &mk);
            let st = e.manager().status(&id).unwrap();
            assert!(st.pending.is_none(), "{mode} {step}: {st:?}");
            assert_eq!(slots(&e, &id), 1, "{mode} {step}: exactly one keyslot");
        }
        assert_eq!(e.manager().status(&id).unwrap().size, 48 << 20);
        // Shred: crash at each step, re-run with the admin credential.
        for (k, step) in ["shred:marked", "shred:key-destroyed", "shred:wiped"]
            .iter()
            .enumerate()
        {
            let sid = format!("s-{mode}-{k}");
            e.manager()
                .create(&req(&sid, "a", prot.clone()), &a)
                .unwrap();
            write_marker(&e, &sid, &a);
            let args = [
                "shred",
                sid.as_str(),
                "--admin-token-file",
                admin_tok.to_str().unwrap(),
            ];
            let o = e.cli(&args, &[("STRONGROOM_FAULT", step)]);
            assert!(aborted(&o), "{step}: {}", out_text(&o));
            // Once a shred started, the volume is never opened again.
            assert!(e.manager().open(&sid, &a).is_err());
            let o = e.cli(&args, &[]);
            assert!(o.status.success(), "{step} re-run: {}", out_text(&o));
            assert_eq!(e.manager().status(&sid).unwrap().state, State::Shredded);
            assert!(e
                .manager()
                .open(&sid, &Credential::Tenant(e.root.clone()))
                .is_err());
            let img = e.vol_root().join(&sid).join("volume.img");
            assert!(strongroom_luks::Volume::open(
                strongroom_luks::FileDevice::open(&img, false).unwrap()
            )
            .is_err());
        }
    }
}

#[test]
fn crash_during_mount_is_cleaned_by_unmount() {
    if !can_mount() {
        return;
    }
    let e = env(ServerKind::Strongroom, &["a"]);
    let _cleanup = Cleanup(e.dir.path().to_path_buf());
    let tok = e.token_file("a", &e.tenants[0].1);
    let tok = tok.to_str().unwrap();
    e.manager()
        .create(
            &req("m", "a", ProtectionRequest::envelope_for("a")),
            &e.tenant(0),
        )
        .unwrap();
    let target = e.dir.path().join("mnt");
    let t = target.to_str().unwrap();
    for step in ["mount:fuse", "mount:loop"] {
        let o = e.cli(
            &["mount", "m", t, "--token-file", tok],
            &[("STRONGROOM_FAULT", step)],
        );
        assert!(!o.status.success(), "{step}: {}", out_text(&o));
        // The daemon died mid-way: a dead FUSE mount and maybe a loop device are left ...
        let o = e.cli(&["unmount", "m", "--token-file", tok], &[]);
        assert!(o.status.success(), "{}", out_text(&o));
        // ... and unmount removed them all.
        assert!(
            leftovers(e.dir.path()).is_empty(),
            "{step}: {:?}",
            leftovers(e.dir.path())
        );
        let o = e.cli(&["mount", "m", t, "--token-file", tok], &[]);
        assert!(o.status.success(), "{}", out_text(&o));
        std::fs::write(target.join("x"), step).unwrap();
        let o = e.cli(&["unmount", "m", "--token-file", tok], &[]);
        assert!(o.status.success(), "{}", out_text(&o));
        assert!(leftovers(e.dir.path()).is_empty());
    }
}

/// kill -9 of the mount daemon while the filesystem is mounted: `unmount` still removes the
/// mount, the loop device and the dead FUSE mount; the next mount works and synced data is there.
#[test]
fn kill_9_of_the_mount_daemon_then_unmount_and_remount() {
    if !can_mount() {
        return;
    }
    let e = env(ServerKind::Strongroom, &["a"]);
    let _cleanup = Cleanup(e.dir.path().to_path_buf());
    let tok = e.token_file("a", &e.tenants[0].1);
    let tok = tok.to_str().unwrap();
    e.manager()
        .create(
            &req("k", "a", ProtectionRequest::envelope_for("a")),
            &e.tenant(0),
        )
        .unwrap();
    let target = e.dir.path().join("mnt");
    let t = target.to_str().unwrap();
    let o = e.cli(&["mount", "k", t, "--token-file", tok], &[]);
    assert!(o.status.success(), "{}", out_text(&o));
    std::fs::write(target.join("synced"), marker("k")).unwrap();
    std::process::Command::new("sync").status().unwrap();
    let rt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.vol_root().join("k/runtime.json")).unwrap())
            .unwrap();
    let pid = rt["pid"].as_u64().expect("daemon pid") as u32;
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = e.cli(&["unmount", "k", "--token-file", tok], &[]);
    assert!(o.status.success(), "{}", out_text(&o));
    assert!(
        leftovers(e.dir.path()).is_empty(),
        "{:?}",
        leftovers(e.dir.path())
    );
    let o = e.cli(&["mount", "k", t, "--token-file", tok], &[]);
    assert!(o.status.success(), "{}", out_text(&o));
    assert_eq!(
        std::fs::read_to_string(target.join("synced")).unwrap(),
        marker("k")
    );
    let o = e.cli(&["unmount", "k", "--token-file", tok], &[]);
    assert!(o.status.success(), "{}", out_text(&o));
    assert!(leftovers(e.dir.path()).is_empty());
}
