use super::*;

#[test]
fn kms_ref_rejects_a_server_name_other_than_the_host() {
    let r = KmsRef {
        address: "https://10.0.0.1:8200".into(),
        more_addresses: vec![],
        tls_server_name: Some("kms.example".into()),
        ca_cert: None,
        client_cert: None,
        skip_verify: false,
    };
    assert!(matches!(
        r.config(Duration::from_secs(1)),
        Err(CsiError::Invalid(_))
    ));
    let ok = KmsRef {
        address: "https://kms.example:8200".into(),
        ..r
    };
    assert_eq!(
        ok.config(Duration::from_secs(1)).unwrap().addresses,
        ["https://kms.example:8200"]
    );
    let cluster = KmsRef {
        more_addresses: vec!["https://kms2.example:8200".into()],
        ..ok.clone()
    };
    // every node's host must be the certificate's name
    assert!(matches!(
        cluster.config(Duration::from_secs(1)),
        Err(CsiError::Invalid(_))
    ));
    let cluster = KmsRef {
        tls_server_name: None,
        ..cluster
    };
    assert_eq!(
        cluster.config(Duration::from_secs(1)).unwrap().addresses,
        ["https://kms.example:8200", "https://kms2.example:8200"]
    );
}

#[test]
fn corrupt_records_are_errors_not_panics() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.json");
    std::fs::write(&p, b"{not json").unwrap();
    assert!(matches!(
        read_json::<NodeState>(&p),
        Err(CsiError::Internal(_))
    ));
    assert!(read_json::<NodeState>(&d.path().join("absent"))
        .unwrap()
        .is_none());
    write_json(&p, &NodeState::default()).unwrap();
    assert!(read_json::<NodeState>(&p).unwrap().is_some());
}

/// A recorded filesystem type is read as the volume manager's `FsType`: an unknown one is
/// a corrupt record, never a silent ext4.
#[test]
fn recorded_fs_type_has_no_fallback() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(CSI_RECORD);
    let rec = |fs: &str| {
        serde_json::json!({
            "name": "pvc-1", "kms_id": null, "fs_type": fs, "pvc_namespace": "a",
            "pvc_name": null, "pv_name": null,
            "kms": {"address": "http://127.0.0.1:8200", "tls_server_name": null,
                    "ca_cert": null, "client_cert": null, "skip_verify": false},
        })
    };
    std::fs::write(&p, rec("xfs").to_string()).unwrap();
    let r: CsiRecord = read_json(&p).unwrap().unwrap();
    assert_eq!(r.fs_type, FsType::Xfs);
    std::fs::write(&p, rec("btrfs").to_string()).unwrap();
    assert!(matches!(
        read_json::<CsiRecord>(&p),
        Err(CsiError::Internal(m)) if m.contains("btrfs")
    ));
}

#[test]
fn unknown_and_invalid_ids_do_not_exist() {
    let d = tempfile::tempdir().unwrap();
    let b = ManagerBackend::new(ManagerBackendConfig {
        root: d.path().join("vols"),
        cluster_id: "c".into(),
        node_id: "n".into(),
        admin_token: None,
        probe_kms: None,
        cache_ttl: Duration::from_secs(1),
        kms_timeout: Duration::from_secs(1),
        max_volume_size: None,
        holder: None,
        ceph_clusters: ClusterMap::default(),
    })
    .unwrap();
    assert!(b.get("absent").unwrap().is_none());
    assert!(b.get("../etc").unwrap().is_none());
    assert!(matches!(
        b.delete("absent", None),
        Err(CsiError::NotFound(_))
    ));
    b.unstage("absent", Path::new("/nowhere")).unwrap();
    assert!(b.list().unwrap().is_empty());
    assert!(b.capacity().unwrap().available > 0);
}
