//! The VM tier's harness: `scripts/vm/run-vm.sh` (Debian's kernel + busybox initramfs under
//! QEMU) runs a guest script as root, with the target directory shared at the same path (the
//! host-built `strongroom` binary and this test binary run from it), beside a dev key manager
//! on the host. Guest scripts only collect evidence into the test's shared directory; the
//! assertions are made on the host.
//!
//! When the runner cannot work (no apt, no qemu, ...), [`Vm::start`] prints a loud
//! `SKIP VM TIER` naming the missing piece, unless `STRONGROOM_VM_REQUIRED=1` (set by
//! scripts/test.sh), which turns that into a failure.
#![allow(dead_code)]

use super::common::{self, Server, ServerKind};
use super::volume_common;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const CLUSTER: &str = "vm-test";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Prepare the VM (cached after the first run). `None` (with a loud message) when it cannot.
pub fn runner() -> Option<PathBuf> {
    let script = workspace_root().join("scripts/vm/run-vm.sh");
    let why = if !script.is_file() {
        format!("{} is missing", script.display())
    } else {
        match Command::new(&script).arg("--build").output() {
            Ok(o) if o.status.success() => return Some(script),
            Ok(o) => format!(
                "run-vm.sh --build failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("cannot run {}: {e}", script.display()),
        }
    };
    if std::env::var("STRONGROOM_VM_REQUIRED").as_deref() == Ok("1") {
        panic!("VM tier required (STRONGROOM_VM_REQUIRED=1) but unavailable: {why}");
    }
    eprintln!("\n*** SKIP VM TIER (dm-crypt tests not run): {why} ***\n");
    None
}

/// One test's world: a host dev key manager, a tenant `a` with a token, and a directory under
/// the target dir that the guest sees at the same path.
pub struct Vm {
    runner: PathBuf,
    server: Server,
    dir: tempfile::TempDir,
}

impl Vm {
    pub fn start() -> Option<Vm> {
        let runner = runner()?;
        let server = Server::start_dev(ServerKind::Strongroom, "root");
        let dir = tempfile::Builder::new()
            .prefix("vm-dmcrypt-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir in the target dir");
        let vm = Vm {
            runner,
            server,
            dir,
        };
        std::fs::write(vm.path("root.token"), "root").unwrap();
        let o = vm.host_cli(&[
            "setup-tenant",
            "a",
            "--token-out",
            &vm.p("a.token"),
            "--token-file",
            &vm.p("root.token"),
        ]);
        assert!(o.status.success(), "{}", volume_common::out_text(&o));
        Some(vm)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn p(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
    pub fn port(&self) -> &str {
        self.server.addr().rsplit(':').next().unwrap()
    }
    /// `strongroom volume ...` on the host (userspace path here).
    pub fn host_cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(common::strongroom_bin())
            .args(["volume", "--root", &self.p("vols"), "--address"])
            .arg(self.server.addr())
            .args(["--cluster-id", CLUSTER])
            .args(args)
            .output()
            .expect("run strongroom")
    }
    /// Run `script` (sh) in a fresh VM as root; `$S` is the volume CLI against the host's
    /// key manager, `$D` this test's shared directory, `$T` this test binary (for a guest
    /// half written in Rust). Returns the console on success.
    pub fn guest(&self, script: &str) -> String {
        self.guest_with(&[], script)
    }
    /// [`Self::guest`] with more runner options (`-f /usr/bin/fio`, `-N`, ...).
    pub fn guest_with(&self, runner_args: &[&str], script: &str) -> String {
        let body = format!(
            "set -e\nD={d}\nB={b}\nT={t}\nexport VAULT_ADDR=http://10.0.2.2:{port}\n\
             S=\"$B volume --root $D/vols --address $VAULT_ADDR --cluster-id {CLUSTER}\"\n{script}",
            d = self.dir.path().display(),
            b = common::strongroom_bin().display(),
            t = std::env::current_exe().unwrap().display(),
            port = self.port(),
        );
        std::fs::write(self.path("guest.sh"), body).unwrap();
        let share = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
        assert!(
            common::strongroom_bin().starts_with(share),
            "the strongroom binary must be under the shared target dir {}",
            share.display()
        );
        let o = Command::new(&self.runner)
            .args(["-n", "-t", "400"])
            // after -n: `-N` (the host's loopback) overrides it
            .args(runner_args)
            // the binaries run from the share; their libraries (librbd, ...) go into the guest
            .arg("-l")
            .arg(common::strongroom_bin())
            .arg("-l")
            .arg(std::env::current_exe().unwrap())
            .arg("-d")
            .arg(share)
            .args(["--", "sh"])
            .arg(self.path("guest.sh"))
            .env("VM_QUIET", "1")
            .env("VM_LOG", self.path("console.log"))
            .output()
            .expect("run-vm.sh");
        let console = std::fs::read_to_string(self.path("console.log")).unwrap_or_default();
        assert!(
            o.status.success(),
            "guest script failed ({}): {}\nconsole:\n{console}\nevidence:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            self.evidence()
        );
        console
    }
    /// The guest's small evidence files (`.json`, `.txt`, `.log`), for failure messages.
    pub fn evidence(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = e.path();
            let small = e.metadata().is_ok_and(|m| m.len() < 64 << 10);
            let kind = p.extension().and_then(|x| x.to_str());
            if small && matches!(kind, Some("json" | "txt" | "log")) && !p.ends_with("console.log")
            {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                out.push_str(&format!("--- {}\n{text}\n", p.display()));
            }
        }
        out
    }
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_else(|e| panic!("guest evidence {name}: {e}"))
    }
    pub fn json(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}
