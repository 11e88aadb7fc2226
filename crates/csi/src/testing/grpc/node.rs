//! Node RPCs: validation, NOT_FOUND before path form, unpublish, the lifecycle with tenant errors, single-writer.

use super::*;

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
