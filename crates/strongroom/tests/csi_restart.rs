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
    // Nothing of the plugin's leaks into it (e.g. the CSI socket): its sockets are its own,
    // holder.sock and the link to its keeper (open twice).
    let sockets = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert_eq!(
        sockets, 2,
        "the holder's sockets: holder.sock and its keeper link only"
    );
    // The keeper is guarded the same way.
    let (_, keeper) = wait_holder(&v.volume_id, &[]);
    let kstatus = std::fs::read_to_string(format!("/proc/{keeper}/status")).unwrap();
    assert!(
        kstatus.contains("VmLck:") && !kstatus.contains("VmLck:\t       0 kB"),
        "{kstatus}"
    );
    let kstat = std::fs::read_to_string(format!("/proc/{keeper}/stat")).unwrap();
    let kfields: Vec<&str> = kstat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        kfields[3],
        keeper.to_string(),
        "keeper leads its session: {kstat}"
    );
    c.unstage(&v.volume_id, &staging).unwrap();
    assert!(
        all_gone(&[pid, keeper]),
        "the holder outlived NodeUnstage: {}",
        states(&[pid, keeper])
    );
}

/// The staged volume's holder itself is SIGKILLed under fio: first its server, then (once
/// the keeper has started a new one) its keeper, then the plugin too. fio sees no error,
/// each half was replaced by the other, the restarted plugin re-adopts the holder that runs
/// now (it proves the recorded nonce; its pids are new), the data verifies, and unstage
/// leaves nothing behind.
#[test]
fn the_holder_itself_sigkilled_while_fio_writes() {
    if !volume_common::can_mount() || expected_path() != "userspace" {
        return;
    }
    let mut c = Csi::start();
    let v = c.create_for("pvc-holder", 0, 64 * MIB);
    let id = v.volume_id.clone();
    let (staging, mnt) = c.paths("holder");
    let target = mnt.join("target");
    c.stage(&v, &staging, snw(), Some(&c.token(0)))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", c.tail()));
    c.publish(&v, &staging, &target, snw(), false).unwrap();
    let (server, keeper) = wait_holder(&id, &[]);
    let file = target.join("fio.dat");
    let log = c.dir.join("fio-holder.log");
    let mut w = fio(&file, false)
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("fio");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(w.try_wait().unwrap().is_none(), "fio ended before the kill");
    kill9(server);
    let (server2, keeper2) = wait_holder(&id, &[server]);
    assert_eq!(keeper2, keeper, "the keeper started the new server");
    std::thread::sleep(std::time::Duration::from_millis(1000));
    kill9(keeper);
    let (server3, keeper3) = wait_holder(&id, &[server, keeper]);
    assert_eq!(server3, server2, "the server started a new keeper");
    c.kill();
    c.spawn(&[]);
    let st = w.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let holder_log = || std::fs::read_to_string(c.root().join(&id).join("holder.log"));
    assert!(
        st.success() && text.contains("err= 0"),
        "fio saw an error:\n{text}\n{:?}",
        holder_log()
    );
    assert_eq!(
        code(c.stage(&v, &staging, snw(), Some(&c.token(0)))),
        tonic::Code::Ok
    );
    assert_eq!(
        wait_holder(&id, &[]),
        (server3, keeper3),
        "re-adopted, not replaced"
    );
    let verify = fio(&file, true).output().unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    c.unpublish(&id, &target).unwrap();
    c.unstage(&id, &staging).unwrap();
    assert!(
        all_gone(&[server3, keeper3]),
        "{}: {:?}",
        states(&[server3, keeper3]),
        holder_log()
    );
    assert!(
        leftovers(&c.root()).is_empty(),
        "{:?}",
        leftovers(&c.root())
    );
}

/// A holder host outside the plugin's PID namespace (as its own DaemonSet is): the plugin
/// runs in `unshare --pid --fork --kill-child` (a PID namespace of its own, as in a container)
/// and asks the host to start its holders. Killing that whole namespace under fio, as a
/// container restart does, leaves the holders running: fio sees no I/O error, the restarted
/// plugin re-adopts the volume (verifying a holder it sees as pid 0, by its proof of the
/// nonce), the data verifies, and unstage leaves nothing behind.
#[test]
fn a_container_restart_of_the_plugin_keeps_hosted_holders() {
    if !volume_common::can_mount() || expected_path() != "userspace" {
        return;
    }
    const UNSHARE: [&str; 4] = ["unshare", "--pid", "--fork", "--kill-child"];
    let mut c = Csi::start();
    let host_sock = c.dir.join("holder-host/host.sock");
    let host_log = c.dir.join("holder-host.log");
    let mut host = std::process::Command::new(common::strongroom_bin())
        .arg("volume")
        .arg("--root")
        .arg(c.root())
        .arg("holder-host")
        .arg("--socket")
        .arg(&host_sock)
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(&host_log).unwrap())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !host_sock.exists() {
        assert!(t0.elapsed().as_secs() < 20, "no holder host socket");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sock = host_sock.to_str().unwrap().to_owned();
    c.kill();
    c.spawn_in(&UNSHARE, &["--holder-host", &sock], &[]);
    let v = c.create_for("pvc-hosted", 0, 64 * MIB);
    let id = v.volume_id.clone();
    let (staging, mnt) = c.paths("hosted");
    let target = mnt.join("target");
    c.stage(&v, &staging, snw(), Some(&c.token(0)))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", c.tail()));
    c.publish(&v, &staging, &target, snw(), false).unwrap();
    let holder = wait_holder(&id, &[]);
    let file = target.join("fio.dat");
    let log = c.dir.join("fio-hosted.log");
    let mut w = fio(&file, false)
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("fio");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(w.try_wait().unwrap().is_none(), "fio ended before the kill");
    c.kill();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    c.spawn_in(&UNSHARE, &["--holder-host", &sock], &[]);
    let st = w.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        st.success() && text.contains("err= 0"),
        "fio saw an error:\n{text}"
    );
    assert_eq!(
        code(c.stage(&v, &staging, snw(), Some(&c.token(0)))),
        tonic::Code::Ok,
        "{}",
        c.tail()
    );
    assert_eq!(wait_holder(&id, &[]), holder, "re-adopted, not replaced");
    let verify = fio(&file, true).output().unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    c.unpublish(&id, &target).unwrap();
    c.unstage(&id, &staging).unwrap();
    assert!(
        all_gone(&[holder.0, holder.1]),
        "the holder outlived NodeUnstage: {}\n{}",
        states(&[holder.0, holder.1]),
        std::fs::read_to_string(c.root().join(&id).join("holder.log")).unwrap_or_default()
    );
    assert!(
        leftovers(&c.root()).is_empty(),
        "{:?}",
        leftovers(&c.root())
    );
    let _ = host.kill();
    let _ = host.wait();
}
