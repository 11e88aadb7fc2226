//! Harness of the CSI driver tests: a real key manager (`strongroom server -dev`) with
//! tenants set up by the admin, the real `strongroom csi` binary serving a unix socket over
//! a temporary volumes root, and gRPC clients generated from the CSI proto. Like csi-sanity,
//! everything goes over the socket; mounts are real (FUSE, loop, ext4/xfs).
#![allow(dead_code)]

use super::common::{strongroom_bin, ServerKind};
use super::volume_common::{self, Cleanup, Env};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strongroom_csi::pb::controller_client::ControllerClient;
use strongroom_csi::pb::identity_client::IdentityClient;
use strongroom_csi::pb::node_client::NodeClient;
use strongroom_csi::pb::volume_capability::{
    access_mode::Mode as PbMode, AccessMode, AccessType, BlockVolume, MountVolume,
};
use strongroom_csi::pb::*;
use tonic::transport::{Channel, Endpoint, Uri};

pub const NODE_ID: &str = "node-1";
pub const KMS_ID: &str = "strongroom-kms";
pub const MIB: i64 = 1 << 20;
/// The volume size of most cases (csi-sanity's `testvolumesize`, small: sparse files).
pub const SIZE: i64 = 64 * MIB;

pub struct Csi {
    /// First field: dropped first, so mounts are gone before the temp dir is removed.
    _cleanup: Cleanup,
    pub env: Env,
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    pub rt: tokio::runtime::Runtime,
    ch: Option<Channel>,
    /// `--mode` and further arguments of the driver (default: all, none).
    mode: &'static str,
    extra_args: Vec<String>,
    /// A command the driver runs under (e.g. `unshare ...`), set by [`Csi::spawn_in`].
    wrapper: Vec<String>,
}

/// A StorageClass's parameters as external-provisioner sends them for a PVC.
pub fn sc_params(namespace: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m = HashMap::from([
        (
            "csi.storage.k8s.io/pvc/namespace".to_owned(),
            namespace.to_owned(),
        ),
        ("csi.storage.k8s.io/pvc/name".to_owned(), "data".to_owned()),
        ("encrypted".to_owned(), "true".to_owned()),
    ]);
    for (k, v) in extra {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

pub fn secrets(token: &str) -> HashMap<String, String> {
    HashMap::from([("token".to_owned(), token.to_owned())])
}

pub fn mount_cap(mode: PbMode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: String::new(),
            mount_flags: vec![],
            volume_mount_group: String::new(),
        })),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

pub fn block_cap(mode: PbMode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

pub fn snw() -> VolumeCapability {
    mount_cap(PbMode::SingleNodeWriter)
}

pub fn range(bytes: i64) -> Option<CapacityRange> {
    Some(CapacityRange {
        required_bytes: bytes,
        limit_bytes: 0,
    })
}

impl Csi {
    /// A key manager with tenants `tenant-a` and `tenant-b`, and the driver serving.
    pub fn start() -> Csi {
        Self::start_with(&[])
    }

    pub fn start_with(env_vars: &[(&str, &str)]) -> Csi {
        Self::start_as("all", &[], env_vars)
    }

    /// The driver in `mode` with `extra_args` (e.g. `--ceph-cluster-map`).
    pub fn start_as(mode: &'static str, extra_args: &[&str], env_vars: &[(&str, &str)]) -> Csi {
        let env = volume_common::env(ServerKind::Strongroom, &["tenant-a", "tenant-b"]);
        let dir = env.dir.path().to_path_buf();
        let kms = dir.join("kms-config");
        std::fs::create_dir_all(&kms).unwrap();
        let conf = serde_json::json!({
            KMS_ID: {
                "KMS_PROVIDER": "vaulttokens",
                "VAULT_ADDR": env.server.addr(),
                "VAULT_BACKEND_PATH": "secret/strongroom/${pvc.namespace}",
                "VAULT_BACKEND": "kv-v2",
            }
        });
        std::fs::write(kms.join("config.json"), conf.to_string()).unwrap();
        std::fs::write(dir.join("admin.token"), env.admin.expose()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut c = Csi {
            sock: dir.join("plugin/csi.sock"),
            log: dir.join("driver.log"),
            _cleanup: Cleanup(dir.clone()),
            env,
            dir,
            child: None,
            rt,
            ch: None,
            mode,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            wrapper: Vec::new(),
        };
        c.spawn(env_vars);
        c
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("volumes")
    }

    pub fn token(&self, i: usize) -> String {
        self.env.tenants[i].1.expose().to_owned()
    }

    /// Start (or restart) the driver process; its log is appended to `self.log`.
    pub fn spawn(&mut self, env_vars: &[(&str, &str)]) {
        self.spawn_in(&[], &[], env_vars)
    }

    /// [`Self::spawn`] under `wrapper` (e.g. `unshare --pid --fork --kill-child`: killing the
    /// driver then kills its whole PID namespace) with `extra` arguments.
    pub fn spawn_in(&mut self, wrapper: &[&str], extra: &[&str], env_vars: &[(&str, &str)]) {
        let _ = std::fs::remove_file(&self.sock);
        let (sock, root, log) = (self.sock.clone(), self.root(), self.log.clone());
        self.wrapper = wrapper.iter().map(|a| a.to_string()).collect();
        let mut cmd = self.command(&sock, self.mode, NODE_ID, &root, &log);
        cmd.args(extra);
        for (k, v) in env_vars {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start strongroom csi"));
        let ch = connect(
            &self.rt,
            &self.sock,
            self.child.as_mut().unwrap(),
            &self.log,
        );
        self.ch = Some(ch);
    }

    /// `strongroom csi` serving `sock` as `node_id` over volumes `root`, logging to `log`,
    /// with this harness's KMS configuration and extra arguments.
    pub fn command(
        &self,
        sock: &Path,
        mode: &str,
        node_id: &str,
        root: &Path,
        log: &Path,
    ) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = match self.wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(strongroom_bin());
                c
            }
            None => Command::new(strongroom_bin()),
        };
        cmd.arg("csi")
            .arg("--endpoint")
            .arg(format!("unix://{}", sock.display()))
            .args(["--node-id", node_id, "--mode", mode])
            .args(&self.extra_args)
            .arg("--root")
            .arg(root)
            .arg("--kms-config-dir")
            .arg(self.dir.join("kms-config"))
            .arg("--kms-secrets-dir")
            .arg(self.dir.join("kms-secrets"))
            .args(["--default-kms-id", KMS_ID, "--cluster-id", "test-cluster"])
            .arg("--admin-token-file")
            .arg(self.dir.join("admin.token"))
            .args(["--lock-patience-ms", "1500", "--log-level", "debug"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        cmd
    }

    /// SIGKILL the driver (as a node reboot or OOM kill would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.ch = None;
    }

    /// Wait for the driver to exit on its own (a fault-injected abort); its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        let c = self.child.as_mut()?;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                self.child = None;
                self.ch = None;
                return Some(st);
            }
            if t0.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn ch(&self) -> Channel {
        self.ch.clone().expect("driver not running")
    }
    pub fn ident(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.ch())
    }
    pub fn ctrl(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.ch())
    }
    pub fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.ch())
    }
    pub fn run<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    // ------------------------------------------------------------ RPC shorthands

    pub fn create_req(
        &self,
        name: &str,
        ns: &str,
        token: Option<&str>,
        bytes: i64,
    ) -> CreateVolumeRequest {
        CreateVolumeRequest {
            name: name.into(),
            capacity_range: range(bytes),
            volume_capabilities: vec![snw()],
            parameters: sc_params(ns, &[]),
            secrets: token.map(secrets).unwrap_or_default(),
            ..Default::default()
        }
    }

    pub fn create(&self, req: CreateVolumeRequest) -> Result<Volume, tonic::Status> {
        self.run(self.ctrl().create_volume(req)).map(|r| {
            r.into_inner()
                .volume
                .expect("volume in CreateVolume response")
        })
    }

    /// Create a volume of tenant `i` (namespace `tenant-a`/`tenant-b`).
    pub fn create_for(&self, name: &str, i: usize, bytes: i64) -> Volume {
        let ns = &self.env.tenants[i].0;
        self.create(self.create_req(name, ns, Some(&self.token(i)), bytes))
            .unwrap_or_else(|e| panic!("create {name}: {e:?}\n{}", self.tail()))
    }

    pub fn delete(&self, id: &str, token: Option<&str>) -> Result<(), tonic::Status> {
        self.run(self.ctrl().delete_volume(DeleteVolumeRequest {
            volume_id: id.into(),
            secrets: token.map(secrets).unwrap_or_default(),
        }))
        .map(|_| ())
    }

    pub fn stage(
        &self,
        v: &Volume,
        staging: &Path,
        cap: VolumeCapability,
        token: Option<&str>,
    ) -> Result<(), tonic::Status> {
        self.run(self.node().node_stage_volume(NodeStageVolumeRequest {
            volume_id: v.volume_id.clone(),
            publish_context: HashMap::new(),
            staging_target_path: staging.to_string_lossy().into_owned(),
            volume_capability: Some(cap),
            secrets: token.map(secrets).unwrap_or_default(),
            volume_context: v.volume_context.clone(),
        }))
        .map(|_| ())
    }

    pub fn unstage(&self, id: &str, staging: &Path) -> Result<(), tonic::Status> {
        self.run(self.node().node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging.to_string_lossy().into_owned(),
        }))
        .map(|_| ())
    }

    pub fn publish(
        &self,
        v: &Volume,
        staging: &Path,
        target: &Path,
        cap: VolumeCapability,
        readonly: bool,
    ) -> Result<(), tonic::Status> {
        self.run(self.node().node_publish_volume(NodePublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            publish_context: HashMap::new(),
            staging_target_path: staging.to_string_lossy().into_owned(),
            target_path: target.to_string_lossy().into_owned(),
            volume_capability: Some(cap),
            readonly,
            secrets: HashMap::new(),
            volume_context: v.volume_context.clone(),
        }))
        .map(|_| ())
    }

    pub fn unpublish(&self, id: &str, target: &Path) -> Result<(), tonic::Status> {
        self.run(
            self.node()
                .node_unpublish_volume(NodeUnpublishVolumeRequest {
                    volume_id: id.into(),
                    target_path: target.to_string_lossy().into_owned(),
                }),
        )
        .map(|_| ())
    }

    pub fn stats(
        &self,
        id: &str,
        path: &Path,
    ) -> Result<NodeGetVolumeStatsResponse, tonic::Status> {
        self.run(
            self.node()
                .node_get_volume_stats(NodeGetVolumeStatsRequest {
                    volume_id: id.into(),
                    volume_path: path.to_string_lossy().into_owned(),
                    staging_target_path: String::new(),
                }),
        )
        .map(|r| r.into_inner())
    }

    /// csi-sanity's layout: staging dir and the publish target's parent.
    pub fn paths(&self, tag: &str) -> (PathBuf, PathBuf) {
        let base = self.dir.join("kubelet").join(tag);
        let staging = base.join("staging");
        let mount = base.join("mount");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::create_dir_all(&mount).unwrap();
        (staging, mount)
    }

    /// The last lines of the driver log (for assertion messages).
    pub fn tail(&self) -> String {
        let l = self.logs();
        let lines: Vec<&str> = l.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Csi {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A channel to the driver's socket once it listens (panics with the log if it exits).
pub fn connect(
    rt: &tokio::runtime::Runtime,
    sock: &Path,
    child: &mut Child,
    log: &Path,
) -> Channel {
    let logs = || std::fs::read_to_string(log).unwrap_or_default();
    let t0 = Instant::now();
    while !sock.exists() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("strongroom csi exited with {st}:\n{}", logs());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "socket never appeared:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The socket file appears at bind(), a moment before listen(): retry a refusal.
    loop {
        let p = sock.to_path_buf();
        let r = rt.block_on(async move {
            Endpoint::try_from("http://[::]:50051")
                .unwrap()
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let p = p.clone();
                    async move {
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                            tokio::net::UnixStream::connect(p).await?,
                        ))
                    }
                }))
                .await
        });
        match r {
            Ok(ch) => return ch,
            Err(e) if t0.elapsed() < Duration::from_secs(20) => {
                eprintln!("driver socket not ready yet: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("connect to the driver socket: {e:?}\n{}", logs()),
        }
    }
}

pub fn code(r: Result<impl Sized, tonic::Status>) -> tonic::Code {
    match r {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

/// Every mount and loop device left under `root`.
pub fn leftovers(root: &Path) -> Vec<String> {
    volume_common::leftovers(root)
}

/// fio on `file`: a paced sequential write with crc32c verify headers (`verify_only`: read it
/// back and check every block instead). `--rate` keeps it running long enough to be killed
/// under.
pub fn fio(file: &Path, verify_only: bool) -> Command {
    let mut c = Command::new("fio");
    c.args([
        "--name=restart",
        "--rw=write",
        "--bs=128k",
        "--size=24M",
        "--ioengine=psync",
        "--direct=1",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--verify_state_save=0",
    ])
    .arg(format!("--filename={}", file.display()));
    if verify_only {
        c.arg("--verify_only");
    } else {
        c.args(["--do_verify=0", "--rate=4m", "--end_fsync=1"]);
    }
    c
}

/// Issue 17: the node plugin is SIGKILLed while fio writes to a published volume; fio must
/// finish without an I/O error; the restarted plugin re-adopts the volume (NodeStage again
/// is idempotent, the same holder serves it), fio's verify pass reads every block back, and
/// NodeUnpublish + NodeUnstage leave nothing behind. Evidence for the caller's assertions.
pub fn sigkill_plugin_while_fio_writes(c: &mut Csi, cap: VolumeCapability) -> serde_json::Value {
    let v = c.create_for("pvc-restart", 0, 64 * MIB);
    let id = v.volume_id.clone();
    let (staging, mnt) = c.paths("restart");
    let block = matches!(cap.access_type, Some(AccessType::Block(_)));
    let target = mnt.join("target");
    c.stage(&v, &staging, cap.clone(), Some(&c.token(0)))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", c.tail()));
    c.publish(&v, &staging, &target, cap.clone(), false)
        .unwrap();
    let rt_path = c.root().join(&id).join("runtime.json");
    let runtime = || -> serde_json::Value {
        std::fs::read(&rt_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    };
    let before = runtime();
    // Block access: fio on the published device itself.
    let file = if block {
        target.clone()
    } else {
        target.join("fio.dat")
    };
    let fio_out = c.dir.join("fio-write.log");
    let mut writer = fio(&file, false)
        .stdout(std::fs::File::create(&fio_out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("fio (apt-get install fio)");
    std::thread::sleep(Duration::from_millis(1500));
    let writing_when_killed = writer.try_wait().unwrap().is_none();
    c.kill();
    std::thread::sleep(Duration::from_millis(1500));
    c.spawn(&[]);
    let st = writer.wait().unwrap();
    let restage = code(c.stage(&v, &staging, cap.clone(), Some(&c.token(0))));
    let after = runtime();
    let verify = fio(&file, true).output().unwrap();
    c.unpublish(&id, &target).unwrap();
    c.unstage(&id, &staging).unwrap();
    let holder_gone = before["pid"].as_u64().is_none_or(process_gone);
    serde_json::json!({
        "datapath": before["datapath"],
        "writing_when_killed": writing_when_killed,
        "fio_write_ok": st.success(),
        "fio_write_log": std::fs::read_to_string(&fio_out).unwrap_or_default(),
        "restage": format!("{restage:?}"),
        "pid_before": before["pid"], "pid_after_restart": after["pid"],
        "fio_verify_ok": verify.status.success(),
        "fio_verify_log": String::from_utf8_lossy(&verify.stdout),
        "leftovers": leftovers(&c.root()),
        "holder_gone": holder_gone,
        "driver_log": c.logs(),
    })
}

/// The assertions on [`sigkill_plugin_while_fio_writes`]'s evidence, on either data path.
pub fn assert_survived_restart(e: &serde_json::Value, datapath: &str) {
    let show = || {
        format!(
            "write log:\n{}\nverify log:\n{}\ndriver log tail:\n{}",
            e["fio_write_log"].as_str().unwrap_or(""),
            e["fio_verify_log"].as_str().unwrap_or(""),
            e["driver_log"]
                .as_str()
                .unwrap_or("")
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    assert_eq!(e["datapath"], datapath, "{}", show());
    assert_eq!(
        e["writing_when_killed"],
        true,
        "fio ended before the kill: {}",
        show()
    );
    assert_eq!(e["fio_write_ok"], true, "fio saw an error: {}", show());
    assert!(
        e["fio_write_log"].as_str().unwrap().contains("err= 0"),
        "{}",
        show()
    );
    assert_eq!(e["restage"], "Ok", "{}", show());
    assert_eq!(
        e["pid_before"], e["pid_after_restart"],
        "re-adopted, not replaced"
    );
    assert_eq!(e["fio_verify_ok"], true, "data did not verify: {}", show());
    assert_eq!(e["leftovers"], serde_json::json!([]), "{}", show());
    assert_eq!(e["holder_gone"], true, "the holder outlived NodeUnstage");
    let log = strip_ansi(e["driver_log"].as_str().unwrap());
    assert!(
        log.lines()
            .any(|l| l.contains("volume staged") && l.contains(&format!("datapath={datapath}"))),
        "the driver logs each staged volume's data path: {log}"
    );
}

/// Gone, or a zombie (exited; its reaper has not collected it yet).
pub fn process_gone(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// The text of a colored log without its ANSI escape sequences.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The holder's processes for the volume whose id is `id`: (server, keeper), by their argv.
pub fn holder_pids(id: &str) -> (Vec<u64>, Vec<u64>) {
    let (mut servers, mut keepers) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = argv.split(|b| *b == 0).collect();
        let is = |w: &str| args.contains(&w.as_bytes());
        if !is("hold") || !is(id) || process_gone(pid) {
            continue;
        }
        if is("keeper") {
            keepers.push(pid)
        } else {
            servers.push(pid)
        }
    }
    (servers, keepers)
}

/// Wait until exactly one server and one keeper run, other than `not` (replaced ones).
pub fn wait_holder(id: &str, not: &[u64]) -> (u64, u64) {
    let t0 = Instant::now();
    loop {
        let (s, k) = holder_pids(id);
        let fresh = |v: &[u64]| v.iter().all(|p| !not.contains(p));
        if s.len() == 1 && k.len() == 1 && fresh(&s) && fresh(&k) {
            return (s[0], k[0]);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "holder of {id}: servers {s:?}, keepers {k:?} (not {not:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn kill9(pid: u64) {
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -9 {pid}");
}

/// Wait (up to 10 s) until every process in `pids` is gone; false if one still runs.
pub fn all_gone(pids: &[u64]) -> bool {
    let t0 = Instant::now();
    while !pids.iter().all(|p| process_gone(*p)) {
        if t0.elapsed() > Duration::from_secs(10) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// The state line of each process in `pids` (for assertion messages).
pub fn states(pids: &[u64]) -> String {
    pids.iter()
        .map(|p| {
            let st = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            let state = st
                .lines()
                .find(|l| l.starts_with("State:"))
                .unwrap_or("gone");
            format!("{p}: {state}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}
