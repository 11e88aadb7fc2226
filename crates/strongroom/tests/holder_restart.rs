//! Issue 17: the process that `strongroom volume mount` leaves serving a userspace mount can
//! be killed or upgraded without the mounted filesystem seeing an I/O error. A holder is two
//! processes (a server and its keeper, which keeps the /dev/fuse descriptor and the key):
//! SIGKILL either under a paced, verified fio write and fio finishes with `err= 0`, the other
//! half has started a successor, and every block verifies; an upgrade re-executes both from
//! the binary now at the program's path, under fio as well. Userspace path only (this host
//! has no device-mapper; on the kernel path there is no holder).

mod common;
mod csi_common;
mod volume_common;

use csi_common::{all_gone, fio, kill9, states, wait_holder};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use volume_common::*;

/// A volume mounted by `strongroom volume mount` run from `bin`.
struct Mounted {
    /// The volume's id (unique per test: the holder's processes are found by it).
    id: &'static str,
    e: Env,
    bin: PathBuf,
    target: PathBuf,
    token: PathBuf,
}

impl Mounted {
    fn new(bin: PathBuf, id: &'static str) -> Mounted {
        let e = env(common::ServerKind::Strongroom, &[]);
        let root_file = e.token_file("root", &e.root);
        let token = e.dir.path().join("a.token");
        let m = Mounted {
            id,
            target: e.dir.path().join("mnt/v1"),
            e,
            bin,
            token,
        };
        let t = m.token.to_str().unwrap().to_owned();
        let root = root_file.to_str().unwrap();
        m.ok(&["setup-tenant", "a", "--token-out", &t, "--token-file", root]);
        m.ok(&[
            "create",
            id,
            "--tenant",
            "a",
            "--size",
            "64M",
            "--token-file",
            &t,
        ]);
        let target = m.target.to_str().unwrap().to_owned();
        m.ok(&["mount", id, &target, "--token-file", &t]);
        m
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .arg("volume")
            .arg("--root")
            .arg(self.e.vol_root())
            .args([
                "--address",
                self.e.server.addr(),
                "--cluster-id",
                "test-cluster",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) {
        let o = self.cli(args);
        assert!(o.status.success(), "{args:?}: {}", out_text(&o));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.e.vol_root().join(self.id).join("holder.log"))
            .unwrap_or_default()
    }
}

/// fio's paced write in the background on `file`.
fn start_fio(file: &Path, log: &Path) -> Child {
    fio(file, false)
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("fio (apt-get install fio)")
}

/// fio ended well, with no error, and its verify pass reads every block back.
fn assert_fio_ok(mut w: Child, file: &Path, log: &Path, holder_log: impl Fn() -> String) {
    let st = w.wait().unwrap();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        st.success() && text.contains("err= 0"),
        "fio saw an error:\n{text}\nholder log:\n{}",
        holder_log()
    );
    let v = fio(file, true).output().unwrap();
    assert!(
        v.status.success(),
        "data did not verify:\n{}",
        String::from_utf8_lossy(&v.stdout)
    );
}

/// A reader that keeps requests in flight (random 4 KiB direct reads at queue depth 32) on a
/// file of its own, for `secs` seconds: a server killed under it dies with requests read and
/// unanswered, which the kernel must resend to its successor.
fn start_busy_reader(dir: &Path, secs: u32) -> Child {
    let f = dir.join("busy.dat");
    std::fs::write(&f, vec![7u8; 8 << 20]).unwrap();
    Command::new("fio")
        .args([
            "--name=busy",
            "--rw=randread",
            "--bs=4k",
            "--iodepth=32",
            "--ioengine=libaio",
            "--direct=1",
            "--time_based",
            &format!("--runtime={secs}"),
        ])
        .arg(format!("--filename={}", f.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn assert_reader_ok(r: Child, holder_log: &str) {
    let o = r.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("err= 0"),
        "the busy reader saw an error:\n{text}\nholder log:\n{holder_log}"
    );
}

/// SIGKILL the server 1.5 s into fio's write (with a reader keeping requests in flight),
/// then (once a new server serves) the keeper: no I/O error, both were replaced, the kernel
/// resent what the dead server had read, the data verifies; unmount leaves no process.
#[test]
fn killing_either_half_of_a_mounts_holder_is_no_io_error() {
    if !can_mount() {
        return;
    }
    let m = Mounted::new(common::strongroom_bin(), "v-kill");
    let _cleanup = Cleanup(m.e.dir.path().to_path_buf());
    let (server, keeper) = wait_holder(m.id, &[]);
    let file = m.target.join("fio.dat");
    let log = m.e.dir.path().join("fio.log");
    let reader = start_busy_reader(&m.target, 6);
    let mut w = start_fio(&file, &log);
    std::thread::sleep(Duration::from_millis(1500));
    // Kill servers until one dies with requests in flight (the kernel resends them to its
    // successor, which logs it): the reader keeps 32 in flight, so almost always the first.
    let (mut server, mut replaced) = (server, vec![]);
    for _ in 0..4 {
        assert!(w.try_wait().unwrap().is_none(), "fio ended before the kill");
        kill9(server);
        replaced.push(server);
        let (next, k) = wait_holder(m.id, &replaced);
        assert_eq!(k, keeper, "the keeper started the new server");
        server = next;
        if m.log().contains("requests the kernel resent") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let server2 = server;
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        w.try_wait().unwrap().is_none(),
        "fio ended before the keeper's kill"
    );
    kill9(keeper);
    replaced.push(keeper);
    let (server3, keeper3) = wait_holder(m.id, &replaced);
    assert_eq!(server3, server2, "the server started a new keeper");
    assert_fio_ok(w, &file, &log, || m.log());
    assert_reader_ok(reader, &m.log());
    assert!(m.log().contains("a new server took over"), "{}", m.log());
    assert!(
        m.log().contains("requests the kernel resent"),
        "{}",
        m.log()
    );
    m.ok(&["unmount", m.id]);
    assert!(
        all_gone(&[server3, keeper3]),
        "the holder outlived unmount: {}\n{}",
        states(&[server3, keeper3]),
        m.log()
    );
    assert!(
        leftovers(m.e.dir.path()).is_empty(),
        "{:?}",
        leftovers(m.e.dir.path())
    );
}

/// An upgrade: the binary at the holder's path is replaced, `volume upgrade-holder` makes the
/// keeper and then the server re-execute it (same pids, the new executable), under fio.
#[test]
fn a_holder_upgrades_to_the_new_binary_without_an_io_error() {
    if !can_mount() {
        return;
    }
    let bin_dir = tempfile::tempdir().unwrap();
    let bin = bin_dir.path().join("strongroom");
    std::fs::copy(common::strongroom_bin(), &bin).unwrap();
    let m = Mounted::new(bin.clone(), "v-upgrade");
    let _cleanup = Cleanup(m.e.dir.path().to_path_buf());
    let (server, keeper) = wait_holder(m.id, &[]);
    let exe = |pid: u64| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    // A new binary at the same path (the old one's inode lives on in the running holder).
    let new = bin_dir.path().join("strongroom.new");
    std::fs::copy(common::strongroom_bin(), &new).unwrap();
    std::fs::rename(&new, &bin).unwrap();
    assert!(exe(server).to_string_lossy().ends_with("(deleted)"));
    let file = m.target.join("fio.dat");
    let log = m.e.dir.path().join("fio.log");
    let mut w = start_fio(&file, &log);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        w.try_wait().unwrap().is_none(),
        "fio ended before the upgrade"
    );
    m.ok(&["upgrade-holder", m.id]);
    let t0 = Instant::now();
    while [server, keeper]
        .iter()
        .any(|p| exe(*p).to_string_lossy().ends_with("(deleted)"))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "not upgraded: {}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        wait_holder(m.id, &[]),
        (server, keeper),
        "re-executed in place"
    );
    assert_eq!(exe(server), bin);
    assert_fio_ok(w, &file, &log, || m.log());
    m.ok(&["unmount", m.id]);
    assert!(
        leftovers(m.e.dir.path()).is_empty(),
        "{:?}",
        leftovers(m.e.dir.path())
    );
}
