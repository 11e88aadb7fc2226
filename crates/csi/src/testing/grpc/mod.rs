//! The CSI services over a real unix socket with the test-only in-memory backend:
//! validation codes (as csi-sanity expects them), idempotency, pagination, tenant errors,
//! concurrency and shutdown. This file holds the harness and request builders; the tests are
//! in `controller`, `node` and `behaviour`.

use super::mem::MemBackend;
use crate::driver::{DriverConfig, Mode, DRIVER_NAME};
use crate::params::{KmsCatalog, SecretFiles, PVC_NAME, PVC_NAMESPACE};
use crate::pb::controller_client::ControllerClient;
use crate::pb::identity_client::IdentityClient;
use crate::pb::node_client::NodeClient;
use crate::pb::volume_capability::{
    access_mode::Mode as PbMode, AccessMode, AccessType, BlockVolume, MountVolume,
};
use crate::pb::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Code;

const TOKEN_A: &str = "s.tenant-a-secret-token";
const TOKEN_B: &str = "s.tenant-b-secret-token";
const GIB: i64 = 1 << 30;

struct Harness {
    dir: tempfile::TempDir,
    sock: PathBuf,
    backend: Arc<MemBackend>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), crate::server::ServeError>>,
    ch: Channel,
}

impl Harness {
    async fn start(backend: MemBackend, patience: Duration) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("plugin/csi.sock");
        let backend = Arc::new(backend);
        let mut cfg = DriverConfig::new("node-1", Mode::All);
        cfg.lock_patience = patience;
        cfg.max_volumes_per_node = 16;
        cfg.catalog = KmsCatalog::from_json(
            r#"{"vault-tokens": {"KMS_PROVIDER": "vaulttokens", "VAULT_ADDR": "http://127.0.0.1:8200"}}"#,
            &SecretFiles { dir: dir.path().into() },
        )
        .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let endpoint = format!("unix://{}", sock.display());
        let b: Arc<dyn crate::VolumeBackend> = backend.clone();
        let task = tokio::spawn(async move {
            crate::server::serve(&endpoint, 0o600, cfg, b, async {
                let _ = rx.await;
            })
            .await
        });
        for _ in 0..200 {
            if sock.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let p = sock.clone();
        let ch = Endpoint::try_from("http://[::]:50051")
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
            .unwrap();
        Harness {
            dir,
            sock,
            backend,
            stop: Some(tx),
            task,
            ch,
        }
    }

    async fn default() -> Harness {
        Self::start(
            MemBackend::default()
                .with_tenant(TOKEN_A, "tenant-a")
                .with_tenant(TOKEN_B, "tenant-b"),
            Duration::from_secs(2),
        )
        .await
    }

    fn id(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.ch.clone())
    }
    fn ctl(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.ch.clone())
    }
    fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.ch.clone())
    }
    fn path(&self, p: &str) -> String {
        self.dir.path().join(p).to_string_lossy().into_owned()
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
        assert!(!self.sock.exists(), "socket removed on shutdown");
    }
}

fn mount_cap(mode: PbMode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

fn block_cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: PbMode::SingleNodeWriter as i32,
        }),
    }
}

fn params(ns: &str) -> HashMap<String, String> {
    HashMap::from([
        ("encrypted".into(), "true".into()),
        ("encryptionKMSID".into(), "vault-tokens".into()),
        (PVC_NAMESPACE.into(), ns.into()),
        (PVC_NAME.into(), "data".into()),
    ])
}

fn secrets(token: &str) -> HashMap<String, String> {
    HashMap::from([("token".into(), token.into())])
}

fn create_req(name: &str, size: i64) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: size,
            limit_bytes: size,
        }),
        volume_capabilities: vec![mount_cap(PbMode::SingleNodeWriter)],
        parameters: params("tenant-a"),
        secrets: secrets(TOKEN_A),
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s.code(),
    }
}

fn status<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
    r.expect_err("expected an error")
}

mod behaviour;
mod controller;
mod node;
