//! The CSI services over a real unix socket with the test-only in-memory backend:
//! validation codes (as csi-sanity expects them), idempotency, pagination, tenant errors,
//! concurrency and shutdown.

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

#[tokio::test]
async fn identity() {
    let h = Harness::default().await;
    let info = h
        .id()
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, DRIVER_NAME);
    assert!(info.name.len() <= 63);
    assert!(!info.vendor_version.is_empty());
    assert_eq!(info.manifest["csi-spec"], "1.12.0");

    let caps = h
        .id()
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    use crate::pb::plugin_capability::Type;
    assert!(caps.iter().any(|c| matches!(&c.r#type,
        Some(Type::Service(s)) if s.r#type == plugin_capability::service::Type::ControllerService as i32)));
    assert!(caps.iter().any(|c| matches!(&c.r#type,
        Some(Type::VolumeExpansion(e)) if e.r#type == plugin_capability::volume_expansion::Type::Online as i32)));

    let p = h.id().probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(p.ready, Some(true));
    h.stop().await;
}

#[tokio::test]
async fn capabilities_and_node_info() {
    let h = Harness::default().await;
    let c = h
        .ctl()
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let types: Vec<i32> = c
        .capabilities
        .iter()
        .filter_map(|c| {
            c.r#type
                .as_ref()
                .map(|controller_service_capability::Type::Rpc(r)| r.r#type)
        })
        .collect();
    use controller_service_capability::rpc::Type as C;
    for t in [
        C::CreateDeleteVolume,
        C::ExpandVolume,
        C::ListVolumes,
        C::GetCapacity,
    ] {
        assert!(types.contains(&(t as i32)), "{t:?}");
    }
    assert!(!types.contains(&(C::PublishUnpublishVolume as i32)));

    let n = h
        .node()
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    use node_service_capability::rpc::Type as N;
    let types: Vec<i32> = n
        .capabilities
        .iter()
        .filter_map(|c| {
            c.r#type
                .as_ref()
                .map(|node_service_capability::Type::Rpc(r)| r.r#type)
        })
        .collect();
    for t in [N::StageUnstageVolume, N::GetVolumeStats, N::ExpandVolume] {
        assert!(types.contains(&(t as i32)), "{t:?}");
    }
    let info = h
        .node()
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, "node-1");
    assert_eq!(info.max_volumes_per_node, 16);
    h.stop().await;
}

#[tokio::test]
async fn create_volume_validation() {
    let h = Harness::default().await;
    let mut c = h.ctl();
    let mut r = create_req("", GIB);
    assert_eq!(
        code(c.create_volume(r.clone()).await),
        Code::InvalidArgument
    );
    r.name = "v".into();
    r.volume_capabilities.clear();
    assert_eq!(code(c.create_volume(r).await), Code::InvalidArgument);

    let mut r = create_req("v", GIB);
    r.volume_capabilities = vec![VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: None,
    }];
    assert_eq!(code(c.create_volume(r).await), Code::InvalidArgument);

    let mut r = create_req("v", GIB);
    r.volume_capabilities = vec![mount_cap(PbMode::MultiNodeMultiWriter)];
    assert_eq!(code(c.create_volume(r).await), Code::InvalidArgument);

    let mut r = create_req("v", GIB);
    r.parameters.insert("pool".into(), "rbd".into());
    let s = status(c.create_volume(r).await);
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("\"pool\""), "{}", s.message());

    let mut r = create_req("v", GIB);
    r.parameters.remove(PVC_NAMESPACE);
    assert_eq!(code(c.create_volume(r).await), Code::InvalidArgument);

    let mut r = create_req("v", GIB);
    r.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Volume(
            volume_content_source::VolumeSource {
                volume_id: "x".into(),
            },
        )),
    });
    assert_eq!(code(c.create_volume(r).await), Code::InvalidArgument);

    let mut r = create_req("v", GIB);
    r.secrets.clear();
    assert_eq!(code(c.create_volume(r).await), Code::Unauthenticated);

    let mut r = create_req("v", GIB);
    r.secrets = secrets("s.expired");
    assert_eq!(code(c.create_volume(r).await), Code::Unauthenticated);

    // Tenant B's token for a PVC in tenant A's namespace.
    let mut r = create_req("v", GIB);
    r.secrets = secrets(TOKEN_B);
    assert_eq!(code(c.create_volume(r).await), Code::PermissionDenied);

    h.backend
        .kms_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        code(c.create_volume(create_req("v", GIB)).await),
        Code::Unavailable
    );
    h.backend
        .kms_down
        .store(false, std::sync::atomic::Ordering::SeqCst);

    let mut r = create_req("v", GIB);
    r.capacity_range = Some(CapacityRange {
        required_bytes: 5000,
        limit_bytes: 6000,
    });
    assert_eq!(code(c.create_volume(r).await), Code::OutOfRange);
    h.stop().await;
}

#[tokio::test]
async fn create_volume_is_idempotent_by_name() {
    let h = Harness::default().await;
    let mut c = h.ctl();
    let v1 = c
        .create_volume(create_req("pvc-1", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        v1.capacity_bytes, GIB,
        "reported capacity equals the request"
    );
    assert_eq!(v1.volume_id, "pvc-1");
    assert_eq!(v1.volume_context["strongroom.io/tenant"], "tenant-a");
    assert_eq!(v1.volume_context["strongroom.io/kms-id"], "vault-tokens");
    assert!(v1.volume_context.values().all(|v| !v.contains(TOKEN_A)));

    let v2 = c
        .create_volume(create_req("pvc-1", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v1, v2);

    // Same name, other capacity / tenant / protection / filesystem.
    assert_eq!(
        code(c.create_volume(create_req("pvc-1", 2 * GIB)).await),
        Code::AlreadyExists
    );
    let mut r = create_req("pvc-1", GIB);
    r.parameters = params("tenant-b");
    r.secrets = secrets(TOKEN_B);
    assert_eq!(code(c.create_volume(r).await), Code::AlreadyExists);
    let mut r = create_req("pvc-1", GIB);
    r.parameters.insert("protection".into(), "kv".into());
    assert_eq!(code(c.create_volume(r).await), Code::AlreadyExists);
    let mut r = create_req("pvc-1", GIB);
    r.parameters.insert("fsType".into(), "xfs".into());
    assert_eq!(code(c.create_volume(r).await), Code::AlreadyExists);

    // Maximum-length name; no capacity (the default); block-only volume.
    let long = "a".repeat(128);
    let v = c
        .create_volume(create_req(&long, GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.volume_id, long);
    let mut r = create_req("pvc-default-size", 0);
    r.capacity_range = None;
    let v = c
        .create_volume(r)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.capacity_bytes, GIB);
    let mut r = create_req("pvc-block", GIB);
    r.volume_capabilities = vec![block_cap()];
    c.create_volume(r).await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn delete_volume() {
    let h = Harness::default().await;
    let mut c = h.ctl();
    assert_eq!(
        code(c.delete_volume(DeleteVolumeRequest::default()).await),
        Code::InvalidArgument
    );
    let s = status(
        c.delete_volume(DeleteVolumeRequest {
            volume_id: "x".repeat(129),
            secrets: HashMap::new(),
        })
        .await,
    );
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("128"), "{}", s.message());
    // Unknown id: OK (idempotent).
    c.delete_volume(DeleteVolumeRequest {
        volume_id: "fake-vol-id".into(),
        secrets: HashMap::new(),
    })
    .await
    .unwrap();
    // Works with empty secrets (namespace and its Secret already gone).
    c.create_volume(create_req("pvc-del", GIB)).await.unwrap();
    c.delete_volume(DeleteVolumeRequest {
        volume_id: "pvc-del".into(),
        secrets: HashMap::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        h.backend
            .admin_deletes
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert!(h.backend.list_ids().is_empty());
    // A revoked or blank token does not block deletion either.
    for bad in ["s.revoked", "  "] {
        c.create_volume(create_req("pvc-del", GIB)).await.unwrap();
        c.delete_volume(DeleteVolumeRequest {
            volume_id: "pvc-del".into(),
            secrets: secrets(bad),
        })
        .await
        .unwrap();
        assert!(h.backend.list_ids().is_empty(), "{bad:?}");
    }
    assert_eq!(
        h.backend
            .admin_deletes
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    // With the tenant's token; twice.
    c.create_volume(create_req("pvc-del", GIB)).await.unwrap();
    for _ in 0..2 {
        c.delete_volume(DeleteVolumeRequest {
            volume_id: "pvc-del".into(),
            secrets: secrets(TOKEN_A),
        })
        .await
        .unwrap();
    }
    h.stop().await;
}

#[tokio::test]
async fn validate_volume_capabilities() {
    let h = Harness::default().await;
    let mut c = h.ctl();
    let req = |id: &str, caps: Vec<VolumeCapability>| ValidateVolumeCapabilitiesRequest {
        volume_id: id.into(),
        volume_capabilities: caps,
        ..Default::default()
    };
    assert_eq!(
        code(
            c.validate_volume_capabilities(req("", vec![mount_cap(PbMode::SingleNodeWriter)]))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.validate_volume_capabilities(req("x", vec![])).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.validate_volume_capabilities(req("nope", vec![mount_cap(PbMode::SingleNodeWriter)]))
                .await
        ),
        Code::NotFound
    );
    c.create_volume(create_req("pvc-v", GIB)).await.unwrap();
    let ok = c
        .validate_volume_capabilities(req("pvc-v", vec![mount_cap(PbMode::SingleNodeWriter)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.confirmed.unwrap().volume_capabilities.len(), 1);
    let no = c
        .validate_volume_capabilities(req("pvc-v", vec![mount_cap(PbMode::MultiNodeMultiWriter)]))
        .await
        .unwrap()
        .into_inner();
    assert!(no.confirmed.is_none() && !no.message.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn list_volumes_paginates() {
    let h = Harness::default().await;
    let mut c = h.ctl();
    let s = status(
        c.list_volumes(ListVolumesRequest {
            max_entries: 0,
            starting_token: "invalid-token".into(),
        })
        .await,
    );
    assert_eq!(s.code(), Code::Aborted);
    for i in 0..5 {
        c.create_volume(create_req(&format!("pvc-{i}"), GIB))
            .await
            .unwrap();
    }
    let all = c
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.entries.len(), 5);
    assert!(all.next_token.is_empty());

    let p1 = c
        .list_volumes(ListVolumesRequest {
            max_entries: 2,
            starting_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p1.entries.len(), 2);
    assert!(!p1.next_token.is_empty());
    // The last volume of the page is deleted before the next page is asked for.
    let last = p1.entries[1].volume.as_ref().unwrap().volume_id.clone();
    c.delete_volume(DeleteVolumeRequest {
        volume_id: last,
        secrets: HashMap::new(),
    })
    .await
    .unwrap();
    let p2 = c
        .list_volumes(ListVolumesRequest {
            max_entries: 2,
            starting_token: p1.next_token,
        })
        .await
        .unwrap()
        .into_inner();
    let p3 = c
        .list_volumes(ListVolumesRequest {
            max_entries: 2,
            starting_token: p2.next_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(p3.next_token.is_empty());
    let ids: Vec<String> = p1
        .entries
        .iter()
        .take(1)
        .chain(&p2.entries)
        .chain(&p3.entries)
        .map(|e| e.volume.as_ref().unwrap().volume_id.clone())
        .collect();
    assert_eq!(ids, vec!["pvc-0", "pvc-2", "pvc-3", "pvc-4"]);
    assert_eq!(
        code(
            c.list_volumes(ListVolumesRequest {
                max_entries: -1,
                starting_token: String::new()
            })
            .await
        ),
        Code::InvalidArgument
    );
    h.stop().await;
}

#[tokio::test]
async fn capacity_and_expand() {
    let h = Harness::default().await;
    let mut c = h.ctl();
    let cap = c
        .get_capacity(GetCapacityRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(cap.available_capacity > 0);

    assert_eq!(
        code(
            c.controller_expand_volume(ControllerExpandVolumeRequest {
                capacity_range: Some(CapacityRange {
                    required_bytes: GIB,
                    limit_bytes: 0
                }),
                ..Default::default()
            })
            .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: "x".into(),
                ..Default::default()
            })
            .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: "nope".into(),
                capacity_range: Some(CapacityRange {
                    required_bytes: GIB,
                    limit_bytes: 0
                }),
                ..Default::default()
            })
            .await
        ),
        Code::NotFound
    );
    c.create_volume(create_req("pvc-x", GIB)).await.unwrap();
    let r = c
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: "pvc-x".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 2 * GIB,
                limit_bytes: 0,
            }),
            secrets: secrets(TOKEN_A),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 2 * GIB);
    assert!(r.node_expansion_required);
    // Already that big: OK, nothing to do on the node.
    let r = c
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: "pvc-x".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: GIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 2 * GIB);
    assert!(!r.node_expansion_required);
    h.stop().await;
}

#[tokio::test]
async fn unsupported_rpcs_are_unimplemented() {
    let h = Harness::default().await;
    let mut c = h.ctl();
    assert_eq!(
        code(
            c.controller_publish_volume(ControllerPublishVolumeRequest::default())
                .await
        ),
        Code::Unimplemented
    );
    assert_eq!(
        code(c.create_snapshot(CreateSnapshotRequest::default()).await),
        Code::Unimplemented
    );
    assert_eq!(
        code(c.list_snapshots(ListSnapshotsRequest::default()).await),
        Code::Unimplemented
    );
    assert_eq!(
        code(
            c.controller_modify_volume(ControllerModifyVolumeRequest::default())
                .await
        ),
        Code::Unimplemented
    );
    h.stop().await;
}

#[tokio::test]
async fn node_validation() {
    let h = Harness::default().await;
    let mut n = h.node();
    let staging = h.path("staging/pvc-n");
    let stage = |id: &str, path: &str, cap: Option<VolumeCapability>| NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: path.into(),
        volume_capability: cap,
        secrets: secrets(TOKEN_A),
        ..Default::default()
    };
    let cap = Some(mount_cap(PbMode::SingleNodeWriter));
    assert_eq!(
        code(n.node_stage_volume(stage("", &staging, cap.clone())).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(n.node_stage_volume(stage("v", "", cap.clone())).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(n.node_stage_volume(stage("v", &staging, None)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            n.node_stage_volume(stage(
                "v",
                &staging,
                Some(mount_cap(PbMode::MultiNodeReaderOnly))
            ))
            .await
        ),
        Code::FailedPrecondition
    );
    let mut no_token = stage("v", &staging, cap.clone());
    no_token.secrets.clear();
    assert_eq!(
        code(n.node_stage_volume(no_token).await),
        Code::Unauthenticated
    );

    let target = h.path("pods/target");
    let publish = |id: &str, staging: &str, target: &str, cap: Option<VolumeCapability>| {
        NodePublishVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging.into(),
            target_path: target.into(),
            volume_capability: cap,
            ..Default::default()
        }
    };
    assert_eq!(
        code(
            n.node_publish_volume(publish("", &staging, &target, cap.clone()))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            n.node_publish_volume(publish("v", &staging, "", cap.clone()))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            n.node_publish_volume(publish("v", &staging, &target, None))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            n.node_publish_volume(publish("v", "", &target, cap.clone()))
                .await
        ),
        Code::FailedPrecondition
    );

    let unpub = |id: &str, t: &str| NodeUnpublishVolumeRequest {
        volume_id: id.into(),
        target_path: t.into(),
    };
    assert_eq!(
        code(n.node_unpublish_volume(unpub("", &target)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(n.node_unpublish_volume(unpub("v", "")).await),
        Code::InvalidArgument
    );
    let unstage = |id: &str, p: &str| NodeUnstageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: p.into(),
    };
    assert_eq!(
        code(n.node_unstage_volume(unstage("", &staging)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(n.node_unstage_volume(unstage("v", "")).await),
        Code::InvalidArgument
    );
    // Not staged / not published: OK.
    n.node_unstage_volume(unstage("fake-vol-id", &staging))
        .await
        .unwrap();
    n.node_unpublish_volume(unpub("fake-vol-id", &target))
        .await
        .unwrap();

    let stats = |id: &str, p: &str| NodeGetVolumeStatsRequest {
        volume_id: id.into(),
        volume_path: p.into(),
        ..Default::default()
    };
    assert_eq!(
        code(n.node_get_volume_stats(stats("", &target)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(n.node_get_volume_stats(stats("v", "")).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(n.node_get_volume_stats(stats("fake-vol-id", &target)).await),
        Code::NotFound
    );

    let expand = |id: &str, p: &str| NodeExpandVolumeRequest {
        volume_id: id.into(),
        volume_path: p.into(),
        ..Default::default()
    };
    assert_eq!(
        code(n.node_expand_volume(expand("", &target)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(n.node_expand_volume(expand("v", "")).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(n.node_expand_volume(expand("fake-vol-id", &target)).await),
        Code::NotFound
    );
    h.stop().await;
}

/// An unknown volume is NOT_FOUND whatever its paths look like (csi-sanity's NodeExpand
/// sends `some/path`): existence is checked before the form of a path. A known volume with
/// a relative path is INVALID_ARGUMENT.
#[tokio::test]
async fn unknown_volume_is_not_found_before_path_form() {
    let h = Harness::default().await;
    let mut n = h.node();
    let expand = |id: &str, p: &str| NodeExpandVolumeRequest {
        volume_id: id.into(),
        volume_path: p.into(),
        ..Default::default()
    };
    assert_eq!(
        code(
            n.node_expand_volume(expand("fake-vol-id", "some/path"))
                .await
        ),
        Code::NotFound
    );
    let cap = Some(mount_cap(PbMode::SingleNodeWriter));
    let stage = NodeStageVolumeRequest {
        volume_id: "fake-vol-id".into(),
        staging_target_path: "some/staging".into(),
        volume_capability: cap.clone(),
        secrets: secrets(TOKEN_A),
        ..Default::default()
    };
    assert_eq!(code(n.node_stage_volume(stage).await), Code::NotFound);
    let publish = NodePublishVolumeRequest {
        volume_id: "fake-vol-id".into(),
        staging_target_path: "some/staging".into(),
        target_path: "some/target".into(),
        volume_capability: cap,
        ..Default::default()
    };
    assert_eq!(code(n.node_publish_volume(publish).await), Code::NotFound);
    // Unstage/unpublish of an unknown volume: OK, whatever the path.
    n.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: "fake-vol-id".into(),
        staging_target_path: "some/staging".into(),
    })
    .await
    .unwrap();
    n.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: "fake-vol-id".into(),
        target_path: "some/target".into(),
    })
    .await
    .unwrap();
    h.ctl()
        .create_volume(create_req("pvc-rel", GIB))
        .await
        .unwrap();
    assert_eq!(
        code(n.node_expand_volume(expand("pvc-rel", "some/path")).await),
        Code::InvalidArgument
    );
    h.stop().await;
}

/// NodeUnpublish removes only what the driver published: a directory at the target of an
/// unknown volume, or of a known volume never published there, stays.
#[tokio::test]
async fn unpublish_removes_nothing_it_did_not_create() {
    let h = Harness::default().await;
    let mut n = h.node();
    let target = h.path("pods/someone-elses");
    std::fs::create_dir_all(&target).unwrap();
    for id in ["fake-vol-id", "pvc-u"] {
        if id == "pvc-u" {
            h.ctl().create_volume(create_req(id, GIB)).await.unwrap();
        }
        n.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: target.clone(),
        })
        .await
        .unwrap();
        assert!(
            std::path::Path::new(&target).is_dir(),
            "{id}: unpublish removed a target it never published"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn node_lifecycle_and_tenant_errors() {
    let h = Harness::default().await;
    let mut n = h.node();
    h.ctl()
        .create_volume(create_req("pvc-n", GIB))
        .await
        .unwrap();
    let staging = h.path("staging/pvc-n");
    let cap = mount_cap(PbMode::SingleNodeWriter);
    let stage = |token: &str, cap: VolumeCapability| NodeStageVolumeRequest {
        volume_id: "pvc-n".into(),
        staging_target_path: staging.clone(),
        volume_capability: Some(cap),
        secrets: secrets(token),
        ..Default::default()
    };
    assert_eq!(
        code(n.node_stage_volume(stage(TOKEN_B, cap.clone())).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(n.node_stage_volume(stage("s.revoked", cap.clone())).await),
        Code::Unauthenticated
    );
    for _ in 0..3 {
        n.node_stage_volume(stage(TOKEN_A, cap.clone()))
            .await
            .unwrap();
    }
    assert!(h.backend.is_staged("pvc-n"));
    assert_eq!(
        code(n.node_stage_volume(stage(TOKEN_A, block_cap())).await),
        Code::AlreadyExists
    );

    let target = h.path("pods/uid/volumes/pvc-n/mount");
    let publish = |target: &str, cap: VolumeCapability, ro: bool| NodePublishVolumeRequest {
        volume_id: "pvc-n".into(),
        staging_target_path: staging.clone(),
        target_path: target.into(),
        volume_capability: Some(cap),
        readonly: ro,
        ..Default::default()
    };
    for _ in 0..3 {
        n.node_publish_volume(publish(&target, cap.clone(), false))
            .await
            .unwrap();
    }
    assert!(std::path::Path::new(&target).is_dir());
    assert_eq!(
        code(
            n.node_publish_volume(publish(&target, cap.clone(), true))
                .await
        ),
        Code::AlreadyExists
    );

    let stats = n
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "pvc-n".into(),
            volume_path: target.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage[0].total, GIB);
    assert_eq!(stats.usage[0].unit, volume_usage::Unit::Bytes as i32);
    assert_eq!(
        code(
            n.node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: "pvc-n".into(),
                volume_path: "some/path".into(),
                ..Default::default()
            })
            .await
        ),
        Code::NotFound
    );
    let e = n
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: "pvc-n".into(),
            volume_path: target.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.capacity_bytes, GIB);

    for _ in 0..2 {
        n.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: "pvc-n".into(),
            target_path: target.clone(),
        })
        .await
        .unwrap();
    }
    assert!(
        !std::path::Path::new(&target).exists(),
        "unpublish removes the target path"
    );
    // NodeUnstage needs no secrets.
    for _ in 0..2 {
        n.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: "pvc-n".into(),
            staging_target_path: staging.clone(),
        })
        .await
        .unwrap();
    }
    assert!(!h.backend.is_staged("pvc-n"));
    h.stop().await;
}

#[tokio::test]
async fn single_writer_second_target_is_failed_precondition() {
    let h = Harness::default().await;
    let mut n = h.node();
    h.ctl()
        .create_volume(create_req("pvc-s", GIB))
        .await
        .unwrap();
    let staging = h.path("staging/pvc-s");
    let cap = mount_cap(PbMode::SingleNodeSingleWriter);
    n.node_stage_volume(NodeStageVolumeRequest {
        volume_id: "pvc-s".into(),
        staging_target_path: staging.clone(),
        volume_capability: Some(cap.clone()),
        secrets: secrets(TOKEN_A),
        ..Default::default()
    })
    .await
    .unwrap();
    let publish = |t: &str| NodePublishVolumeRequest {
        volume_id: "pvc-s".into(),
        staging_target_path: staging.clone(),
        target_path: t.into(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    };
    n.node_publish_volume(publish(&h.path("target")))
        .await
        .unwrap();
    assert_eq!(
        code(
            n.node_publish_volume(publish(&h.path("other_target")))
                .await
        ),
        Code::FailedPrecondition
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_on_one_volume_get_aborted() {
    let backend = MemBackend::default().with_tenant(TOKEN_A, "tenant-a");
    *backend.delay.lock().unwrap() = Duration::from_millis(300);
    let h = Harness::start(backend, Duration::ZERO).await;
    let mut c1 = h.ctl();
    let mut c2 = h.ctl();
    let (a, b) = tokio::join!(c1.create_volume(create_req("pvc-c", GIB)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c2.create_volume(create_req("pvc-c", GIB)).await
    });
    // Exactly one call wins; the other is ABORTED (whichever reached the lock second).
    let codes = [a.map(|_| Code::Ok), b.map(|_| Code::Ok)].map(|r| r.unwrap_or_else(|s| s.code()));
    let mut sorted = codes;
    sorted.sort_by_key(|c| *c as i32);
    assert_eq!(sorted, [Code::Ok, Code::Aborted], "{codes:?}");
    // Other volumes are not blocked, and the first volume is free again afterwards.
    h.ctl()
        .create_volume(create_req("pvc-d", GIB))
        .await
        .unwrap();
    h.ctl()
        .create_volume(create_req("pvc-c", GIB))
        .await
        .unwrap();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_are_serialised_within_patience() {
    let backend = MemBackend::default().with_tenant(TOKEN_A, "tenant-a");
    *backend.delay.lock().unwrap() = Duration::from_millis(100);
    let h = Harness::start(backend, Duration::from_secs(5)).await;
    let mut c1 = h.ctl();
    let mut c2 = h.ctl();
    let (a, b) = tokio::join!(
        c1.create_volume(create_req("pvc-c", GIB)),
        c2.create_volume(create_req("pvc-c", GIB))
    );
    assert_eq!(a.unwrap().into_inner(), b.unwrap().into_inner());
    h.stop().await;
}

/// A `Write` sink for the log capture.
#[derive(Clone, Default)]
struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_reach_logs_or_error_messages() {
    let sink = Sink::default();
    let w = sink.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || w.clone())
        .finish();
    let _g = tracing::subscriber::set_default(sub);

    let h = Harness::default().await;
    let mut c = h.ctl();
    let mut n = h.node();
    c.create_volume(create_req("pvc-log", GIB)).await.unwrap();
    let mut msgs = Vec::new();
    let mut bad = create_req("pvc-log", GIB);
    bad.secrets = secrets(TOKEN_B);
    msgs.push(status(c.create_volume(bad).await).message().to_owned());
    let mut weird = create_req("pvc-log2", GIB);
    weird.secrets = secrets("s.has a space");
    msgs.push(status(c.create_volume(weird).await).message().to_owned());
    let staging = h.path("staging");
    n.node_stage_volume(NodeStageVolumeRequest {
        volume_id: "pvc-log".into(),
        staging_target_path: staging.clone(),
        volume_capability: Some(mount_cap(PbMode::SingleNodeWriter)),
        secrets: secrets(TOKEN_A),
        ..Default::default()
    })
    .await
    .unwrap();
    msgs.push(
        status(
            n.node_stage_volume(NodeStageVolumeRequest {
                volume_id: "pvc-log".into(),
                staging_target_path: staging,
                volume_capability: Some(mount_cap(PbMode::SingleNodeWriter)),
                secrets: secrets(TOKEN_B),
                ..Default::default()
            })
            .await,
        )
        .message()
        .to_owned(),
    );
    c.delete_volume(DeleteVolumeRequest {
        volume_id: "pvc-log".into(),
        secrets: secrets(TOKEN_A),
    })
    .await
    .unwrap();
    h.stop().await;

    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("CreateVolume") && logs.contains("NodeStageVolume"),
        "captured: {logs}"
    );
    for secret in [
        TOKEN_A,
        TOKEN_B,
        "has a space",
        "tenant-a-secret",
        "tenant-b-secret",
    ] {
        assert!(!logs.contains(secret), "token in logs: {logs}");
        for m in &msgs {
            assert!(!m.contains(secret), "token in error message: {m}");
        }
    }
}

#[tokio::test]
async fn controller_only_mode_serves_no_node_service() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("c.sock");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let ep = format!("unix:{}", sock.display());
    let b: Arc<dyn crate::VolumeBackend> = Arc::new(MemBackend::default());
    let task = tokio::spawn(async move {
        crate::server::serve(
            &ep,
            0o660,
            DriverConfig::new("n", Mode::Controller),
            b,
            async {
                let _ = rx.await;
            },
        )
        .await
    });
    while !sock.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );
    let p = sock.clone();
    let ch = Endpoint::try_from("http://[::]:1")
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
    let r = NodeClient::new(ch.clone())
        .node_get_info(NodeGetInfoRequest {})
        .await;
    assert_eq!(code(r), Code::Unimplemented);
    ControllerClient::new(ch)
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap();
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!sock.exists());
}
