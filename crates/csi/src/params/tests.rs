use super::*;
use std::path::Path;
use ProtectionRequest as Protection;

fn files() -> SecretFiles {
    SecretFiles {
        dir: PathBuf::from("/etc/strongroom/kms-secrets"),
    }
}

fn m(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A ceph-csi `csi-kms-connection-details` entry as ODF writes it.
const ODF_ENTRY: &str = r#"{
  "vault-tokens": {
    "KMS_PROVIDER": "vaulttokens",
    "KMS_SERVICE_NAME": "vault",
    "VAULT_ADDR": "https://vault.hc-vault.svc:8200",
    "VAULT_BACKEND_PATH": "ocs",
    "VAULT_BACKEND": "kv-v2",
    "VAULT_TLS_SERVER_NAME": "vault.hc-vault.svc",
    "VAULT_CACERT": "vault-ca",
    "VAULT_DESTROY_KEYS": "true"
  },
  "camel": {
    "encryptionKMSType": "vaulttokens",
    "vaultAddress": "http://vault.default.svc.cluster.local:8200",
    "vaultBackend": "kv",
    "vaultBackendPath": "secret/",
    "vaultCAVerify": "false",
    "tenantTokenName": "storage-encryption-token"
  }
}"#;

fn catalog() -> KmsCatalog {
    KmsCatalog::from_json(ODF_ENTRY, &files()).unwrap()
}

fn base() -> Vec<(&'static str, &'static str)> {
    vec![
        ("encrypted", "true"),
        ("encryptionKMSID", "vault-tokens"),
        (PVC_NAMESPACE, "hc-vault"),
        (PVC_NAME, "pvc-cephrbd1"),
        (PV_NAME, "pvc-91948955-afb6-481e-a013-bd7ee628169a"),
    ]
}

fn parse(pairs: &[(&str, &str)]) -> Result<VolumeParams, CsiError> {
    VolumeParams::parse(&m(pairs), &catalog(), &files(), &ClusterMap::default())
}

fn err_of(pairs: &[(&str, &str)]) -> String {
    match parse(pairs) {
        Err(CsiError::Invalid(s)) => s,
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

#[test]
fn ceph_csi_storage_class_with_odf_entry() {
    let p = parse(&base()).unwrap();
    assert_eq!(p.tenant, "hc-vault");
    assert_eq!(p.pvc.name.as_deref(), Some("pvc-cephrbd1"));
    assert_eq!(p.kms_id.as_deref(), Some("vault-tokens"));
    assert_eq!(p.kms.addresses, ["https://vault.hc-vault.svc:8200"]);
    assert_eq!(p.kms.tls_server_name.as_deref(), Some("vault.hc-vault.svc"));
    assert_eq!(
        p.kms.ca_cert.as_deref(),
        Some(Path::new("/etc/strongroom/kms-secrets/vault-ca/cert"))
    );
    assert_eq!(p.kms.kv_version, Some(KvVersion::V2));
    assert!(!p.kms.skip_verify);
    assert_eq!(p.kms.tenant_token_name, DEFAULT_TENANT_TOKEN_NAME);
    // Envelope is the default protection; the transit key is the tenant's.
    assert_eq!(
        p.protection,
        Protection::Envelope {
            mount: "transit".into(),
            key: "tenant-hc-vault".into()
        }
    );
    assert_eq!(p.fs_type, None);
}

#[test]
fn camel_case_entry_and_kv_protection() {
    let mut kv = base();
    kv[1] = ("encryptionKMSID", "camel");
    kv.push(("protection", "kv"));
    let p = parse(&kv).unwrap();
    assert_eq!(
        p.kms.addresses,
        ["http://vault.default.svc.cluster.local:8200"]
    );
    assert!(
        p.kms.skip_verify,
        "vaultCAVerify=false means skip verification"
    );
    assert_eq!(p.kms.kv_version, Some(KvVersion::V1));
    assert_eq!(p.kms.tenant_token_name, "storage-encryption-token");
    assert_eq!(
        p.protection,
        Protection::Kv {
            backend: "secret".into()
        }
    );
}

#[test]
fn inline_connection_with_templated_backend_path() {
    let p = parse(&[
        (PVC_NAMESPACE, "team-a"),
        (PVC_NAME, "data"),
        ("kmsAddress", "https://strongroom.kms.svc:8200/"),
        ("kmsBackendPath", "tenants/${pvc.namespace}/volumes"),
        ("kmsCACertSecret", "kms-ca"),
        ("protection", "kv"),
        ("fsType", "xfs"),
    ])
    .unwrap();
    assert_eq!(p.kms_id, None);
    assert_eq!(p.kms.addresses, ["https://strongroom.kms.svc:8200"]);
    assert_eq!(
        p.protection,
        Protection::Kv {
            backend: "tenants/team-a/volumes".into()
        }
    );
    assert_eq!(p.fs_type, Some(FsType::Xfs));
}

#[test]
fn transit_key_template() {
    let mut kv = base();
    kv.push(("transitMount", "kek/"));
    kv.push(("transitKey", "${pvc.namespace}-${pvc.name}"));
    let p = parse(&kv).unwrap();
    assert_eq!(
        p.protection,
        Protection::Envelope {
            mount: "kek".into(),
            key: "hc-vault-pvc-cephrbd1".into()
        }
    );
}

#[test]
fn unknown_key_is_named() {
    let mut kv = base();
    kv.push(("kmsAdress", "http://x"));
    let e = err_of(&kv);
    assert!(e.contains("\"kmsAdress\""), "{e}");
    assert!(e.contains("unknown"), "{e}");
}

#[test]
fn ceph_rbd_specific_keys_are_rejected_not_dropped() {
    for k in [
        "clusterID",
        "pool",
        "imageFeatures",
        "csi.storage.k8s.io/unknown",
    ] {
        let mut kv = base();
        kv.push((k, "x"));
        let e = err_of(&kv);
        assert!(e.contains(&format!("{k:?}")), "{k}: {e}");
    }
}

#[test]
fn ill_typed_values_are_named() {
    for (k, v) in [
        ("encrypted", "yes"),
        ("protection", "plain"),
        ("fsType", "btrfs"),
        ("encryptionType", "file"),
        ("kmsBackend", "kv-v3"),
    ] {
        let mut kv: Vec<(&str, &str)> =
            vec![(PVC_NAMESPACE, "ns"), ("kmsAddress", "http://kms:8200")];
        kv.push((k, v));
        let e = err_of(&kv);
        assert!(e.contains(&format!("{k:?}")), "{k}={v}: {e}");
    }
}

#[test]
fn encrypted_false_is_refused() {
    let mut kv = base();
    kv[0] = ("encrypted", "false");
    assert!(err_of(&kv).contains("encrypted"));
    // Go ParseBool spellings are accepted.
    kv[0] = ("encrypted", "True");
    parse(&kv).unwrap();
}

#[test]
fn tenant_namespace_is_required_and_checked() {
    let e = err_of(&[("encryptionKMSID", "vault-tokens")]);
    assert!(
        e.contains(PVC_NAMESPACE) && e.contains("--extra-create-metadata"),
        "{e}"
    );
    let e = err_of(&[
        (PVC_NAMESPACE, "Bad_NS"),
        ("encryptionKMSID", "vault-tokens"),
    ]);
    assert!(e.contains(PVC_NAMESPACE), "{e}");
}

#[test]
fn kms_id_and_inline_conflict() {
    let mut kv = base();
    kv.push(("kmsAddress", "http://other:8200"));
    let e = err_of(&kv);
    assert!(
        e.contains("kmsAddress") && e.contains("encryptionKMSID"),
        "{e}"
    );
}

#[test]
fn unknown_kms_id_lists_known_ones() {
    let mut kv = base();
    kv[1] = ("encryptionKMSID", "nope");
    let e = err_of(&kv);
    assert!(e.contains("\"nope\"") && e.contains("vault-tokens"), "{e}");
}

#[test]
fn no_connection_without_default_is_an_error_and_default_applies() {
    let e = err_of(&[(PVC_NAMESPACE, "ns")]);
    assert!(e.contains("encryptionKMSID"), "{e}");
    let cat = catalog().with_default(Some("camel".into())).unwrap();
    let p = VolumeParams::parse(
        &m(&[(PVC_NAMESPACE, "ns")]),
        &cat,
        &files(),
        &ClusterMap::default(),
    )
    .unwrap();
    assert_eq!(p.kms_id.as_deref(), Some("camel"));
    assert!(catalog().with_default(Some("missing".into())).is_err());
}

#[test]
fn template_errors() {
    let mut kv = base();
    kv.push(("transitKey", "k-${pvc.uid}"));
    let e = err_of(&kv);
    assert!(e.contains("transitKey") && e.contains("pvc.uid"), "{e}");

    let mut kv = base();
    kv.push(("transitKey", "k-${pvc.namespace"));
    assert!(err_of(&kv).contains("unterminated"));

    // ${pvc.name} without the metadata.
    let kv = vec![
        (PVC_NAMESPACE, "ns"),
        ("encryptionKMSID", "vault-tokens"),
        ("transitKey", "${pvc.name}"),
    ];
    let e = err_of(&kv);
    assert!(e.contains("--extra-create-metadata"), "{e}");
}

#[test]
fn envelope_only_keys_with_kv_are_rejected() {
    let mut kv = base();
    kv.push(("protection", "kv"));
    kv.push(("transitKey", "x"));
    assert!(err_of(&kv).contains("transitKey"));
}

#[test]
fn path_traversal_in_templates_is_rejected() {
    let kv = vec![
        (PVC_NAMESPACE, "ns"),
        ("kmsAddress", "http://kms:8200"),
        ("kmsBackendPath", "secret/../sys"),
        ("protection", "kv"),
    ];
    assert!(err_of(&kv).contains("kmsBackendPath"));
}

#[test]
fn a_cluster_is_a_list_of_addresses() {
    let p = parse(&[
        (PVC_NAMESPACE, "ns"),
        (
            "kmsAddress",
            "http://kms-0.kms:8200, http://kms-1.kms:8200/,http://kms-2.kms:8200",
        ),
    ])
    .unwrap();
    assert_eq!(
        p.kms.addresses,
        [
            "http://kms-0.kms:8200",
            "http://kms-1.kms:8200",
            "http://kms-2.kms:8200"
        ]
    );
}

#[test]
fn bad_addresses() {
    for a in [
        "kms:8200",
        "ftp://kms",
        "http://",
        "http://kms:8200/v1/secret",
        "http://u@kms",
        "http://kms:8200,",
        "http://kms:8200,kms2:8200",
    ] {
        let e = err_of(&[(PVC_NAMESPACE, "ns"), ("kmsAddress", a)]);
        assert!(e.contains("kmsAddress"), "{a}: {e}");
    }
}

fn section_err(json: &str) -> String {
    match KmsCatalog::from_json(json, &files()) {
        Err(CsiError::Invalid(s)) => s,
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

#[test]
fn connection_section_errors_name_kms_id_and_key() {
    let e = section_err(r#"{"x": {"VAULT_ADDR": "http://v:8200", "VAULT_ADRR": "y"}}"#);
    assert!(
        e.contains("kmsID \"x\"") && e.contains("\"VAULT_ADRR\""),
        "{e}"
    );
    // Numbers are not strings (ceph-csi's own docs: "a map of string values only").
    let e = section_err(r#"{"x": {"VAULT_ADDR": "http://v:8200", "VAULT_SKIP_VERIFY": true}}"#);
    assert!(
        e.contains("VAULT_SKIP_VERIFY") && e.contains("string"),
        "{e}"
    );
    let e = section_err(r#"{"x": {"KMS_PROVIDER": "vaulttenantsa", "VAULT_ADDR": "http://v"}}"#);
    assert!(e.contains("vaulttenantsa"), "{e}");
    let e = section_err(r#"{"x": {"KMS_PROVIDER": "vaulttokens"}}"#);
    assert!(e.contains("VAULT_ADDR"), "{e}");
    let e = section_err(r#"{"x": {"VAULT_ADDR": "http://v", "vaultAddress": "http://w"}}"#);
    assert!(e.contains("duplicates"), "{e}");
    let e = section_err(r#"{"x": {"VAULT_ADDR": "http://v", "VAULT_DESTROY_KEYS": "false"}}"#);
    assert!(e.contains("VAULT_DESTROY_KEYS"), "{e}");
    let e = section_err(r#"{"x": {"VAULT_ADDR": "http://v", "VAULT_NAMESPACE": "team"}}"#);
    assert!(e.contains("VAULT_NAMESPACE"), "{e}");
    let e = section_err(r#"{"x": {"VAULT_ADDR": "http://v", "VAULT_CLIENT_CERT": "c"}}"#);
    assert!(e.contains("VAULT_CLIENT_CERT"), "{e}");
    let e = section_err(r#"{"x": {"vaultAddress": "http://v", "tenants": {"a": {}}}}"#);
    assert!(e.contains("tenants") && e.contains("not supported"), "{e}");
    let e = section_err(
        r#"{"x": {"VAULT_ADDR": "http://v", "VAULT_SKIP_VERIFY": "true", "vaultCAVerify": "true"}}"#,
    );
    assert!(e.contains("not both"), "{e}");
    let e = section_err(r#"{"x": {"VAULT_ADDR": "http://v", "VAULT_CACERT": "../etc"}}"#);
    assert!(e.contains("VAULT_CACERT"), "{e}");
    assert!(section_err("[1]").contains("JSON object"));
}

#[test]
fn mutual_tls_files() {
    let cat = KmsCatalog::from_json(
        r#"{"m": {"VAULT_ADDR": "https://v:8200", "VAULT_CLIENT_CERT": "kms-client", "VAULT_CLIENT_KEY": "kms-client"}}"#,
        &files(),
    )
    .unwrap();
    let c = cat.get("m").unwrap();
    let (cert, key) = c.client_cert.clone().unwrap();
    assert!(cert.ends_with("kms-client/cert") && key.ends_with("kms-client/key"));
}

#[test]
fn load_dir_reads_configmap_files_and_skips_dot_entries() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("vault-tokens"),
        r#"{"KMS_PROVIDER": "vaulttokens", "VAULT_ADDR": "http://v:8200"}"#,
    )
    .unwrap();
    std::fs::create_dir(d.path().join("..data")).unwrap();
    std::fs::write(d.path().join(".hidden"), "not json").unwrap();
    let cat = KmsCatalog::load_dir(d.path(), &files()).unwrap();
    assert_eq!(cat.ids().collect::<Vec<_>>(), vec!["vault-tokens"]);

    // config.json (ceph-csi file form) wins when present.
    std::fs::write(d.path().join("config.json"), ODF_ENTRY).unwrap();
    let cat = KmsCatalog::load_dir(d.path(), &files()).unwrap();
    assert_eq!(cat.ids().collect::<Vec<_>>(), vec!["camel", "vault-tokens"]);

    std::fs::remove_file(d.path().join("config.json")).unwrap();
    std::fs::write(d.path().join("broken"), "{").unwrap();
    let e = KmsCatalog::load_dir(d.path(), &files()).unwrap_err();
    assert!(e.to_string().contains("\"broken\""), "{e}");
}

#[test]
fn template_render_and_uses() {
    let t = Template::parse("k", "${pvc.namespace}/${pv.name}").unwrap();
    assert!(t.uses("pv.name") && !t.uses("pvc.name"));
    let pvc = PvcMeta {
        namespace: "a".into(),
        name: None,
        pv_name: Some("pv-1".into()),
    };
    assert_eq!(t.render(&pvc).unwrap(), "a/pv-1");
    assert_eq!(
        Template::parse("k", "plain").unwrap().render(&pvc).unwrap(),
        "plain"
    );
}
