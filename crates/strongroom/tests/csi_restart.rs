//! Issue 17: staged volumes survive a restart of the node plugin. The plugin (`strongroom
//! csi`) is SIGKILLed while fio writes to a published volume and started again: fio sees no
//! I/O error, the restarted plugin re-adopts the volume after verifying its holder, the data
//! verifies, and NodeUnpublish + NodeUnstage leave nothing behind. On this host the volume
//! takes the userspace path (FUSE served by a volume holder); the kernel path's twin runs in
//! the VM tier (`vm_dmcrypt.rs`).

mod common;
mod csi_common;
mod volume_common;

use csi_common::*;
use strongroom_csi::pb::volume_capability::access_mode::Mode as PbMode;
use strongroom_volume::DataPathKind;

fn expected_path() -> &'static str {
    match DataPathKind::detect() {
        DataPathKind::Kernel => "kernel",
        DataPathKind::Userspace => "userspace",
    }
}

#[test]
fn node_plugin_sigkilled_while_fio_writes_filesystem() {
    if !volume_common::can_mount() {
        return;
    }
    let mut c = Csi::start();
    let e = sigkill_plugin_while_fio_writes(&mut c, snw());
    assert_survived_restart(&e, expected_path());
}

/// The same with block access: fio writes to the published device itself.
#[test]
fn node_plugin_sigkilled_while_fio_writes_block() {
    if !volume_common::can_mount() {
        return;
    }
    let mut c = Csi::start();
    let e = sigkill_plugin_while_fio_writes(&mut c, block_cap(PbMode::SingleNodeWriter));
    assert_survived_restart(&e, expected_path());
}

/// A holder is adopted only when it proves to be the recorded one: with the nonce in the
/// runtime record changed (as if the pid had been reused by another process), the restarted
/// plugin does not trust it; NodeStage tears the old set-up down and serves the volume anew.
#[test]
fn a_holder_that_fails_verification_is_replaced() {
    if !volume_common::can_mount() || expected_path() != "userspace" {
        return;
    }
    let mut c = Csi::start();
    let v = c.create_for("pvc-verify", 0, 64 * MIB);
    let (staging, _) = c.paths("verify");
    c.stage(&v, &staging, snw(), Some(&c.token(0))).unwrap();
    std::fs::write(staging.join("kept"), "data").unwrap();
    let rt_path = c.root().join(&v.volume_id).join("runtime.json");
    let mut rt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rt_path).unwrap()).unwrap();
    let old_pid = rt["pid"].as_u64().unwrap();
    rt["holder_nonce"] = "00".into();
    std::fs::write(&rt_path, rt.to_string()).unwrap();
    c.kill();
    c.spawn(&[]);
    c.stage(&v, &staging, snw(), Some(&c.token(0)))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", c.tail()));
    let rt: serde_json::Value = serde_json::from_slice(&std::fs::read(&rt_path).unwrap()).unwrap();
    assert_ne!(
        rt["pid"].as_u64().unwrap(),
        old_pid,
        "an unverified holder was adopted"
    );
    assert!(process_gone(old_pid), "the unverified holder still runs");
    assert_eq!(
        std::fs::read_to_string(staging.join("kept")).unwrap(),
        "data"
    );
    c.unstage(&v.volume_id, &staging).unwrap();
    assert!(
        leftovers(&c.root()).is_empty(),
        "{:?}",
        leftovers(&c.root())
    );
}

/// The holder is guarded as the plugin is: memory locked (VmLck covers its resident memory),
/// a session of its own (so no signal to the plugin's session or group reaches it), and
/// neither the tenant's token nor the keyslot secret in its argv or environment.
#[test]
fn the_holder_is_locked_in_memory_and_in_its_own_session() {
    if !volume_common::can_mount() || expected_path() != "userspace" {
        return;
    }
    let c = Csi::start();
    let v = c.create_for("pvc-guard", 0, 64 * MIB);
    let (staging, _) = c.paths("guard");
    c.stage(&v, &staging, snw(), Some(&c.token(0))).unwrap();
    let rt: serde_json::Value = serde_json::from_slice(
        &std::fs::read(c.root().join(&v.volume_id).join("runtime.json")).unwrap(),
    )
    .unwrap();
    let pid = rt["pid"].as_u64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{field} in {status}"))
    };
    assert!(
        kib("VmLck:") > 0 && kib("VmLck:") >= kib("VmRSS:") / 2,
        "{status}"
    );
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        fields[3],
        pid.to_string(),
        "holder is its session's leader: {stat}"
    );
    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let token = c.token(0);
    for (what, b) in [("argv", &argv), ("environ", &env)] {
        assert!(
            !String::from_utf8_lossy(b).contains(&token),
            "the tenant's token is in the holder's {what}"
        );
    }
    assert!(String::from_utf8_lossy(&argv).contains("hold"));
    // Nothing of the plugin's leaks into it (e.g. the CSI socket): its one socket is its own.
    let sockets = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count();
    assert_eq!(sockets, 1, "the holder's sockets: its own holder.sock only");
    c.unstage(&v.volume_id, &staging).unwrap();
    assert!(process_gone(pid), "the holder outlived NodeUnstage");
}
