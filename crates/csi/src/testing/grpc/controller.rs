//! Controller RPCs: create/delete/validate/list/capacity/expand and what is unimplemented.

use super::*;

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
