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
        let _ = std::fs::remove_file(&self.sock);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(strongroom_bin());
        cmd.arg("csi")
            .arg("--endpoint")
            .arg(format!("unix://{}", self.sock.display()))
            .args(["--node-id", NODE_ID, "--mode", "all"])
            .arg("--root")
            .arg(self.root())
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
        for (k, v) in env_vars {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start strongroom csi"));
        let t0 = Instant::now();
        while !self.sock.exists() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("strongroom csi exited with {st}:\n{}", self.logs());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "socket never appeared:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let p = self.sock.clone();
        let ch = self.rt.block_on(async move {
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
                .expect("connect to the driver socket")
        });
        self.ch = Some(ch);
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
