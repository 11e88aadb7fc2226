//! The CSI driver (the real `strongroom csi`, over its gRPC socket) with a three-node
//! key-manager cluster (processes on loopback). The KMS connection lists all three nodes,
//! the active one first: `VAULT_ADDR` with commas in the KMS connection ConfigMap, and a
//! StorageClass's inline `kmsAddress`. After the active node is killed, CreateVolume,
//! NodeStageVolume (a real mount) and DeleteVolume go on through the survivors within the
//! documented bounded retry (6 tries, 500 ms apart: what external-provisioner and the kubelet
//! do anyway).

mod common;
mod csi_common;
mod kms_ha_common;
mod volume_common;

use csi_common::{connect, mount_cap, range, sc_params, secrets, KMS_ID, MIB, NODE_ID};
use kms_ha_common::Cluster;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strongroom_csi::pb::controller_client::ControllerClient;
use strongroom_csi::pb::node_client::NodeClient;
use strongroom_csi::pb::volume_capability::access_mode::Mode as PbMode;
use strongroom_csi::pb::*;
use strongroom_volume::tenant;
use tonic::transport::Channel;

const NS: &str = "tenant-a";

/// `strongroom csi` serving `dir/csi.sock` with the KMS connection `kms_addr`.
fn start_driver(dir: &Path, kms_addr: &str, admin_token: &str) -> Child {
    let conf = dir.join("kms-config");
    std::fs::create_dir_all(&conf).unwrap();
    let kms = serde_json::json!({
        KMS_ID: {
            "KMS_PROVIDER": "vaulttokens",
            "VAULT_ADDR": kms_addr,
            "VAULT_BACKEND_PATH": "secret/strongroom/${pvc.namespace}",
            "VAULT_BACKEND": "kv-v2",
        }
    });
    std::fs::write(conf.join("config.json"), kms.to_string()).unwrap();
    std::fs::write(dir.join("admin.token"), admin_token).unwrap();
    let log = std::fs::File::create(dir.join("driver.log")).unwrap();
    Command::new(common::strongroom_bin())
        .arg("csi")
        .arg(format!(
            "--endpoint=unix://{}",
            dir.join("csi.sock").display()
        ))
        .args(["--node-id", NODE_ID, "--mode", "all", "--root"])
        .arg(dir.join("volumes"))
        .arg("--kms-config-dir")
        .arg(&conf)
        .arg("--kms-secrets-dir")
        .arg(dir.join("kms-secrets"))
        .args(["--default-kms-id", KMS_ID, "--cluster-id", "ha-cluster"])
        .arg("--admin-token-file")
        .arg(dir.join("admin.token"))
        .args(["--log-level", "debug"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start strongroom csi")
}

/// Run `call` up to 6 times, 500 ms apart, until it succeeds.
fn bounded<T>(what: &str, log: &Path, mut call: impl FnMut() -> Result<T, tonic::Status>) -> T {
    let mut last = None;
    for _ in 0..6 {
        match call() {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(30).collect();
    panic!("{what}: {:?}\n{}", last.unwrap(), tail.join("\n"));
}

fn create_req(name: &str, token: &str, inline: Option<&str>) -> CreateVolumeRequest {
    let extra = match inline {
        Some(a) => vec![
            ("kmsAddress", a),
            ("kmsBackendPath", "secret/strongroom/${pvc.namespace}"),
            ("kmsBackend", "kv-v2"),
        ],
        None => vec![],
    };
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: range(16 * MIB),
        volume_capabilities: vec![mount_cap(PbMode::SingleNodeWriter)],
        parameters: sc_params(NS, &extra),
        secrets: secrets(token),
        ..Default::default()
    }
}

struct Rpc {
    rt: tokio::runtime::Runtime,
    ch: Channel,
}

impl Rpc {
    fn create(&self, req: CreateVolumeRequest) -> Result<Volume, tonic::Status> {
        let mut c = ControllerClient::new(self.ch.clone());
        let r = self.rt.block_on(c.create_volume(req))?;
        Ok(r.into_inner().volume.expect("a volume"))
    }

    fn stage(&self, v: &Volume, staging: &Path, token: &str) -> Result<(), tonic::Status> {
        let mut n = NodeClient::new(self.ch.clone());
        let req = NodeStageVolumeRequest {
            volume_id: v.volume_id.clone(),
            staging_target_path: staging.to_string_lossy().into_owned(),
            volume_capability: Some(mount_cap(PbMode::SingleNodeWriter)),
            secrets: secrets(token),
            volume_context: v.volume_context.clone(),
            ..Default::default()
        };
        self.rt.block_on(n.node_stage_volume(req)).map(|_| ())
    }

    fn unstage(&self, v: &Volume, staging: &Path) -> Result<(), tonic::Status> {
        let mut n = NodeClient::new(self.ch.clone());
        let req = NodeUnstageVolumeRequest {
            volume_id: v.volume_id.clone(),
            staging_target_path: staging.to_string_lossy().into_owned(),
        };
        self.rt.block_on(n.node_unstage_volume(req)).map(|_| ())
    }

    fn delete(&self, v: &Volume, token: &str) -> Result<(), tonic::Status> {
        let mut c = ControllerClient::new(self.ch.clone());
        let req = DeleteVolumeRequest {
            volume_id: v.volume_id.clone(),
            secrets: secrets(token),
        };
        self.rt.block_on(c.delete_volume(req)).map(|_| ())
    }
}

#[test]
fn the_csi_driver_given_every_kms_address_serves_through_the_survivors_when_the_leader_dies() {
    let mut c = Cluster::start();
    let admin = c.admin();
    let policy = tenant::setup_tenant(&admin, NS, &volume_common::layout()).unwrap();
    let token = tenant::create_token(&admin, &[policy.as_str()], "1h").unwrap();
    let token = token.expose().to_owned();
    let admin_token = tenant::create_token(&admin, &[tenant::ADMIN_POLICY], "1h").unwrap();
    let leader = c.wait_leader();
    let first = c.nodes[leader].addr();
    let mut addrs = vec![first.clone()];
    addrs.extend(c.addrs().into_iter().filter(|a| *a != first));
    let list = addrs.join(",");

    let dir = tempfile::Builder::new()
        .prefix("sr-ha-csi-")
        .tempdir()
        .unwrap();
    let _cleanup = volume_common::Cleanup(dir.path().to_path_buf());
    let log = dir.path().join("driver.log");
    let mut driver = start_driver(dir.path(), &list, admin_token.expose());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ch = connect(&rt, &dir.path().join("csi.sock"), &mut driver, &log);
    let rpc = Rpc { rt, ch };
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();

    // before: through the catalog's VAULT_ADDR list and a StorageClass's kmsAddress list
    let v1 = rpc.create(create_req("pvc-1", &token, None)).unwrap();
    let v2 = rpc
        .create(create_req("pvc-2", &token, Some(&list)))
        .unwrap();

    c.nodes[leader].kill();
    let killed = Instant::now();
    let v3 = bounded("CreateVolume after the kill", &log, || {
        rpc.create(create_req("pvc-3", &token, None))
    });
    let create_ms = killed.elapsed().as_millis();
    let v4 = bounded("CreateVolume (kmsAddress) after the kill", &log, || {
        rpc.create(create_req("pvc-4", &token, Some(&list)))
    });
    // a volume made before the kill opens (its key unwrapped by a survivor) and mounts
    for v in [&v1, &v2, &v4] {
        bounded("NodeStageVolume after the kill", &log, || {
            rpc.stage(v, &staging, &token)
        });
        let probe = staging.join("probe");
        std::fs::write(&probe, v.volume_id.as_bytes()).unwrap();
        assert_eq!(std::fs::read(&probe).unwrap(), v.volume_id.as_bytes());
        bounded("NodeUnstageVolume", &log, || rpc.unstage(v, &staging));
    }
    for v in [&v1, &v2, &v3, &v4] {
        bounded("DeleteVolume after the kill", &log, || {
            rpc.delete(v, &token)
        });
    }
    let _ = driver.kill();
    let _ = driver.wait();
    eprintln!(
        "kms ha csi: create_after_leader_kill_ms={create_ms} volumes=4 staged=3 deleted=4 \
         addresses={}",
        addrs.len()
    );
}
