//! The typed, validated StorageClass parameters and KMS connection config.
//!
//! Two sources, both administrator-owned (tenants cannot point the driver anywhere):
//!
//! * StorageClass `parameters` (reaching CreateVolume): our keys, ceph-csi's `encrypted`,
//!   `encryptionKMSID` and `encryptionType`, and the PVC metadata that external-provisioner
//!   adds with `--extra-create-metadata` (`csi.storage.k8s.io/pvc/namespace` is the tenant).
//! * A KMS connection catalog ([`KmsCatalog`]): ceph-csi's `csi-kms-connection-details`
//!   ConfigMap (one JSON object per kmsID, upper-case `KMS_PROVIDER`/`VAULT_ADDR`/... form or
//!   the camelCase `encryptionKMSType`/`vaultAddress`/... form) mounted into the plugin, so a
//!   ceph-csi user's existing entries and StorageClasses switch over as they are.
//!
//! Every key is known: an unknown key, a value of the wrong type or a setting we do not
//! support is INVALID_ARGUMENT naming the key — nothing is silently dropped. Names and paths
//! may use `${pvc.namespace}`, `${pvc.name}` and `${pv.name}` ([`Template`]).

use crate::errors::CsiError;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- keys

/// Keys external-provisioner adds with `--extra-create-metadata`.
pub const PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
pub const PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
pub const PV_NAME: &str = "csi.storage.k8s.io/pv/name";

/// StorageClass keys this driver understands.
pub mod sc {
    pub const ENCRYPTED: &str = "encrypted";
    pub const KMS_ID: &str = "encryptionKMSID";
    pub const ENCRYPTION_TYPE: &str = "encryptionType";
    pub const KMS_ADDRESS: &str = "kmsAddress";
    pub const KMS_TLS_SERVER_NAME: &str = "kmsTLSServerName";
    pub const KMS_CA_CERT_SECRET: &str = "kmsCACertSecret";
    pub const KMS_BACKEND_PATH: &str = "kmsBackendPath";
    pub const KMS_BACKEND: &str = "kmsBackend";
    pub const PROTECTION: &str = "protection";
    pub const TRANSIT_MOUNT: &str = "transitMount";
    pub const TRANSIT_KEY: &str = "transitKey";
    pub const FS_TYPE: &str = "fsType";
    /// Inline connection keys (conflict with `encryptionKMSID`).
    pub const INLINE_KMS: &[&str] = &[
        KMS_ADDRESS,
        KMS_TLS_SERVER_NAME,
        KMS_CA_CERT_SECRET,
        KMS_BACKEND_PATH,
        KMS_BACKEND,
    ];
    pub const ALL: &[&str] = &[
        ENCRYPTED,
        KMS_ID,
        ENCRYPTION_TYPE,
        KMS_ADDRESS,
        KMS_TLS_SERVER_NAME,
        KMS_CA_CERT_SECRET,
        KMS_BACKEND_PATH,
        KMS_BACKEND,
        PROTECTION,
        TRANSIT_MOUNT,
        TRANSIT_KEY,
        FS_TYPE,
        super::PVC_NAMESPACE,
        super::PVC_NAME,
        super::PV_NAME,
    ];
}

/// Default transit key of a tenant (the volume manager's `tenant-<tenant>` convention).
pub const DEFAULT_TRANSIT_KEY: &str = "tenant-${pvc.namespace}";
pub const DEFAULT_TRANSIT_MOUNT: &str = "transit";
/// ceph-csi's default `vaultBackendPath`.
pub const DEFAULT_BACKEND_PATH: &str = "secret/";
/// ceph-csi's default `tenantTokenName`.
pub const DEFAULT_TENANT_TOKEN_NAME: &str = "ceph-csi-kms-token";

fn invalid(key: &str, why: impl std::fmt::Display) -> CsiError {
    CsiError::Invalid(format!("parameter {key:?}: {why}"))
}

/// Go's `strconv.ParseBool` set, which ceph-csi uses for its boolean settings.
fn parse_bool(key: &str, v: &str) -> Result<bool, CsiError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(invalid(
            key,
            format!("{v:?} is not a boolean (\"true\" or \"false\")"),
        )),
    }
}

/// A DNS-1123 label (a Kubernetes namespace).
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (a Kubernetes object name such as a Secret's).
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A KMS path (mount, key name, KV backend path): `[A-Za-z0-9._-]` segments joined by `/`.
fn check_kms_path(key: &str, v: &str) -> Result<(), CsiError> {
    let t = v.trim_matches('/');
    let ok = !t.is_empty()
        && t.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{v:?} is not a KMS path (segments of [A-Za-z0-9._-] separated by '/')"),
        ))
    }
}

// ---------------------------------------------------------------- templates

/// What a template may refer to: the PVC being provisioned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PvcMeta {
    pub namespace: String,
    pub name: Option<String>,
    pub pv_name: Option<String>,
}

/// A string with `${pvc.namespace}`, `${pvc.name}` or `${pv.name}` placeholders, checked when
/// parsed (unknown variables and unterminated `${` are errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    key: String,
    raw: String,
}

pub const TEMPLATE_VARS: &[&str] = &["pvc.namespace", "pvc.name", "pv.name"];

impl Template {
    pub fn parse(key: &str, raw: &str) -> Result<Self, CsiError> {
        let mut rest = raw;
        while let Some(i) = rest.find("${") {
            let after = &rest[i + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| invalid(key, format!("unterminated \"${{\" in {raw:?}")))?;
            let var = &after[..end];
            if !TEMPLATE_VARS.contains(&var) {
                return Err(invalid(
                    key,
                    format!(
                        "unknown variable ${{{var}}} in {raw:?} (known: ${{pvc.namespace}}, \
                         ${{pvc.name}}, ${{pv.name}})"
                    ),
                ));
            }
            rest = &after[end + 1..];
        }
        Ok(Template {
            key: key.to_owned(),
            raw: raw.to_owned(),
        })
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn uses(&self, var: &str) -> bool {
        self.raw.contains(&format!("${{{var}}}"))
    }

    pub fn render(&self, pvc: &PvcMeta) -> Result<String, CsiError> {
        let mut out = self.raw.clone();
        for (var, val) in [
            ("pvc.namespace", Some(pvc.namespace.as_str())),
            ("pvc.name", pvc.name.as_deref()),
            ("pv.name", pvc.pv_name.as_deref()),
        ] {
            let ph = format!("${{{var}}}");
            if out.contains(&ph) {
                let val = val.ok_or_else(|| {
                    invalid(
                        &self.key,
                        format!(
                            "uses ${{{var}}} but the request has no {}; run \
                             external-provisioner with --extra-create-metadata",
                            if var == "pv.name" { PV_NAME } else { PVC_NAME }
                        ),
                    )
                })?;
                out = out.replace(&ph, val);
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------- typed values

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    pub fn parse(key: &str, v: &str) -> Result<Self, CsiError> {
        match v {
            "ext4" => Ok(FsType::Ext4),
            "xfs" => Ok(FsType::Xfs),
            _ => Err(invalid(
                key,
                format!("filesystem {v:?} is not supported (ext4 or xfs)"),
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
}

/// KV engine version of the backend path; `None` = detect via `sys/mounts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvVersion {
    V1,
    V2,
}

impl KvVersion {
    fn parse(key: &str, v: &str) -> Result<Option<Self>, CsiError> {
        match v {
            "kv" | "kv-v1" => Ok(Some(KvVersion::V1)),
            "kv-v2" => Ok(Some(KvVersion::V2)),
            "" => Ok(None),
            _ => Err(invalid(key, format!("{v:?}: use \"kv\" or \"kv-v2\""))),
        }
    }
}

/// How the KMS protects a new volume's keyslot secret, with templates rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// Wrapped by the tenant's transit key (default).
    Envelope { mount: String, key: String },
    /// Stored at `<backend>/<volume id>` in KV (ceph-csi `vaulttokens` layout).
    Kv { backend: String },
}

impl Protection {
    pub fn mode(&self) -> &'static str {
        match self {
            Protection::Envelope { .. } => "envelope",
            Protection::Kv { .. } => "kv",
        }
    }
}

/// Where the key manager is and how to reach it. Holds no credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsConnection {
    /// `http(s)://host[:port]`.
    pub address: String,
    pub tls_server_name: Option<String>,
    /// CA bundle file (from a Secret mounted into the plugin).
    pub ca_cert: Option<PathBuf>,
    /// Client certificate and key files for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub skip_verify: bool,
    /// KV backend path template (KV protection).
    pub backend_path: Template,
    pub kv_version: Option<KvVersion>,
    /// Name of the tenant token Secret (ceph-csi `tenantTokenName`); informational — the
    /// StorageClass's `csi.storage.k8s.io/*-secret-name` decides what the CO sends.
    pub tenant_token_name: String,
}

fn check_address(key: &str, v: &str) -> Result<String, CsiError> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or_else(|| invalid(key, format!("{v:?} is not an http:// or https:// address")))?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains(['/', ' ', '?', '#', '@']) {
        return Err(invalid(
            key,
            format!("{v:?}: expected scheme://host[:port] without a path"),
        ));
    }
    Ok(v.trim_end_matches('/').to_owned())
}

/// Where Secrets named by the KMS config (CA, client certificate) are mounted:
/// `<dir>/<secret name>/<key>` (keys `cert` and `key`, as in ceph-csi).
#[derive(Debug, Clone)]
pub struct SecretFiles {
    pub dir: PathBuf,
}

impl SecretFiles {
    fn file(&self, key: &str, secret: &str, item: &str) -> Result<PathBuf, CsiError> {
        if !is_dns_subdomain(secret) {
            return Err(invalid(key, format!("{secret:?} is not a Secret name")));
        }
        Ok(self.dir.join(secret).join(item))
    }
}

// ---------------------------------------------------------------- KMS catalog

/// The canonical settings of a connection section, with their two spellings
/// (ceph-csi's `csi-kms-connection-details` upper-case form and its camelCase form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Setting {
    Provider,
    ServiceName,
    Address,
    BackendPath,
    Backend,
    DestroyKeys,
    CaCert,
    TlsServerName,
    ClientCert,
    ClientKey,
    Namespace,
    AuthNamespace,
    SkipVerify,
    CaVerify,
    TenantTokenName,
    TenantConfigName,
    Tenants,
}

const SETTINGS: &[(&str, Setting)] = &[
    ("KMS_PROVIDER", Setting::Provider),
    ("encryptionKMSType", Setting::Provider),
    ("KMS_SERVICE_NAME", Setting::ServiceName),
    ("VAULT_ADDR", Setting::Address),
    ("vaultAddress", Setting::Address),
    ("VAULT_BACKEND_PATH", Setting::BackendPath),
    ("vaultBackendPath", Setting::BackendPath),
    ("VAULT_BACKEND", Setting::Backend),
    ("vaultBackend", Setting::Backend),
    ("VAULT_DESTROY_KEYS", Setting::DestroyKeys),
    ("vaultDestroyKeys", Setting::DestroyKeys),
    ("VAULT_CACERT", Setting::CaCert),
    ("vaultCAFromSecret", Setting::CaCert),
    ("VAULT_TLS_SERVER_NAME", Setting::TlsServerName),
    ("vaultTLSServerName", Setting::TlsServerName),
    ("VAULT_CLIENT_CERT", Setting::ClientCert),
    ("vaultClientCertFromSecret", Setting::ClientCert),
    ("VAULT_CLIENT_KEY", Setting::ClientKey),
    ("vaultClientCertKeyFromSecret", Setting::ClientKey),
    ("VAULT_NAMESPACE", Setting::Namespace),
    ("vaultNamespace", Setting::Namespace),
    ("VAULT_AUTH_NAMESPACE", Setting::AuthNamespace),
    ("vaultAuthNamespace", Setting::AuthNamespace),
    ("VAULT_SKIP_VERIFY", Setting::SkipVerify),
    ("vaultCAVerify", Setting::CaVerify),
    ("tenantTokenName", Setting::TenantTokenName),
    ("tenantConfigName", Setting::TenantConfigName),
    ("tenants", Setting::Tenants),
];

/// The KMS providers accepted in `KMS_PROVIDER`/`encryptionKMSType`.
pub const PROVIDERS: &[&str] = &["vaulttokens", "strongroom"];

/// Parse one connection section (`what` names it in errors, e.g. `kmsID "vault-tokens"`).
pub fn parse_connection(
    what: &str,
    section: &serde_json::Map<String, serde_json::Value>,
    files: &SecretFiles,
) -> Result<KmsConnection, CsiError> {
    let bad = |key: &str, why: String| CsiError::Invalid(format!("{what}: key {key:?}: {why}"));
    let mut vals: BTreeMap<Setting, (&str, String)> = BTreeMap::new();
    for (k, v) in section {
        let Some((_, setting)) = SETTINGS.iter().find(|(name, _)| name == k) else {
            return Err(bad(
                k,
                format!(
                    "unknown setting (known: {})",
                    SETTINGS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if *setting == Setting::Tenants || *setting == Setting::TenantConfigName {
            return Err(bad(
                k,
                "per-tenant KMS overrides are not supported: the KMS connection is \
                 administrator-only (a tenant must not redirect the driver); remove this key"
                    .into(),
            ));
        }
        let serde_json::Value::String(s) = v else {
            return Err(bad(k, format!("must be a string, got {v}")));
        };
        if let Some((prev, _)) = vals.insert(*setting, (k.as_str(), s.clone())) {
            return Err(bad(k, format!("duplicates {prev:?}")));
        }
    }
    let get = |s: Setting| vals.get(&s).map(|(k, v)| (*k, v.as_str()));

    if let Some((k, p)) = get(Setting::Provider) {
        if !PROVIDERS.contains(&p) {
            return Err(bad(
                k,
                format!("provider {p:?} is not supported (supported: vaulttokens, strongroom)"),
            ));
        }
    }
    let address = match get(Setting::Address) {
        Some((k, v)) => check_address(k, v).map_err(|e| bad(k, e.to_string()))?,
        None => return Err(bad("VAULT_ADDR", "the KMS address is required".into())),
    };
    let backend_path = match get(Setting::BackendPath) {
        Some((k, v)) => {
            let t = Template::parse(k, v).map_err(|e| bad(k, e.to_string()))?;
            check_kms_path(k, &t.render(&sample_pvc()).unwrap_or_default())
                .map_err(|e| bad(k, e.to_string()))?;
            t
        }
        None => Template::parse("VAULT_BACKEND_PATH", DEFAULT_BACKEND_PATH)?,
    };
    let kv_version = match get(Setting::Backend) {
        Some((k, v)) => KvVersion::parse(k, v).map_err(|e| bad(k, e.to_string()))?,
        None => None,
    };
    if let Some((k, v)) = get(Setting::DestroyKeys) {
        if !parse_bool(k, v).map_err(|e| bad(k, e.to_string()))? {
            return Err(bad(
                k,
                "keys are always destroyed (crypto-shred) when a volume is deleted; \
                 soft deletion is not supported"
                    .into(),
            ));
        }
    }
    for s in [Setting::Namespace, Setting::AuthNamespace] {
        if let Some((k, v)) = get(s) {
            if !v.is_empty() {
                return Err(bad(
                    k,
                    "Vault Enterprise namespaces are not supported".into(),
                ));
            }
        }
    }
    let skip_verify = match (get(Setting::SkipVerify), get(Setting::CaVerify)) {
        (Some((k, _)), Some(_)) => {
            return Err(bad(
                k,
                "set VAULT_SKIP_VERIFY or vaultCAVerify, not both".into(),
            ))
        }
        (Some((k, v)), None) => parse_bool(k, v).map_err(|e| bad(k, e.to_string()))?,
        (None, Some((k, v))) => !parse_bool(k, v).map_err(|e| bad(k, e.to_string()))?,
        (None, None) => false,
    };
    let tls_server_name = match get(Setting::TlsServerName) {
        Some((k, v)) if !is_dns_subdomain(v) => {
            return Err(bad(k, format!("{v:?} is not a host name")))
        }
        Some((_, v)) => Some(v.to_owned()),
        None => None,
    };
    let ca_cert = match get(Setting::CaCert) {
        Some((k, v)) => Some(
            files
                .file(k, v, "cert")
                .map_err(|e| bad(k, e.to_string()))?,
        ),
        None => None,
    };
    let client_cert = match (get(Setting::ClientCert), get(Setting::ClientKey)) {
        (Some((kc, c)), Some((kk, key))) => Some((
            files
                .file(kc, c, "cert")
                .map_err(|e| bad(kc, e.to_string()))?,
            files
                .file(kk, key, "key")
                .map_err(|e| bad(kk, e.to_string()))?,
        )),
        (None, None) => None,
        (Some((k, _)), None) | (None, Some((k, _))) => return Err(bad(
            k,
            "a client certificate and its key go together (VAULT_CLIENT_CERT and VAULT_CLIENT_KEY)"
                .into(),
        )),
    };
    let tenant_token_name = match get(Setting::TenantTokenName) {
        Some((k, v)) if !is_dns_subdomain(v) => {
            return Err(bad(k, format!("{v:?} is not a Secret name")))
        }
        Some((_, v)) => v.to_owned(),
        None => DEFAULT_TENANT_TOKEN_NAME.to_owned(),
    };
    Ok(KmsConnection {
        address,
        tls_server_name,
        ca_cert,
        client_cert,
        skip_verify,
        backend_path,
        kv_version,
        tenant_token_name,
    })
}

fn sample_pvc() -> PvcMeta {
    PvcMeta {
        namespace: "ns".into(),
        name: Some("pvc".into()),
        pv_name: Some("pv".into()),
    }
}

/// The KMS connections by kmsID, loaded once at start-up (a bad entry stops the driver with
/// a message naming the kmsID and key, rather than failing volume by volume).
#[derive(Debug, Clone, Default)]
pub struct KmsCatalog {
    entries: BTreeMap<String, KmsConnection>,
    /// Used when a StorageClass names no connection.
    default_id: Option<String>,
}

impl KmsCatalog {
    /// From a JSON object `{kmsID: {settings...}}` (ceph-csi's `config.json`).
    pub fn from_json(text: &str, files: &SecretFiles) -> Result<Self, CsiError> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| CsiError::Invalid(format!("KMS config is not JSON: {e}")))?;
        let serde_json::Value::Object(map) = v else {
            return Err(CsiError::Invalid(
                "KMS config must be a JSON object keyed by kmsID".into(),
            ));
        };
        let mut cat = KmsCatalog::default();
        for (id, section) in map {
            cat.insert_value(&id, section, files)?;
        }
        Ok(cat)
    }

    /// From a mounted ConfigMap directory: `config.json` (ceph-csi file form) if present,
    /// otherwise one file per kmsID holding that entry's JSON (the `csi-kms-connection-details`
    /// ConfigMap mounted as a volume). Dot-files (the kubelet's `..data` links) are skipped.
    pub fn load_dir(dir: &Path, files: &SecretFiles) -> Result<Self, CsiError> {
        let cfg = dir.join("config.json");
        if cfg.is_file() {
            let text = std::fs::read_to_string(&cfg)
                .map_err(|e| CsiError::Invalid(format!("read {}: {e}", cfg.display())))?;
            return Self::from_json(&text, files);
        }
        let rd = std::fs::read_dir(dir)
            .map_err(|e| CsiError::Invalid(format!("read {}: {e}", dir.display())))?;
        let mut cat = KmsCatalog::default();
        for ent in rd {
            let ent = ent.map_err(|e| CsiError::Invalid(format!("read {}: {e}", dir.display())))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !ent.path().is_file() {
                continue;
            }
            let text = std::fs::read_to_string(ent.path())
                .map_err(|e| CsiError::Invalid(format!("read {}: {e}", ent.path().display())))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                CsiError::Invalid(format!("kmsID {name:?}: not a JSON object: {e}"))
            })?;
            cat.insert_value(&name, v, files)?;
        }
        Ok(cat)
    }

    fn insert_value(
        &mut self,
        id: &str,
        v: serde_json::Value,
        files: &SecretFiles,
    ) -> Result<(), CsiError> {
        let what = format!("kmsID {id:?}");
        let serde_json::Value::Object(section) = v else {
            return Err(CsiError::Invalid(format!("{what}: must be a JSON object")));
        };
        let conn = parse_connection(&what, &section, files)?;
        self.entries.insert(id.to_owned(), conn);
        Ok(())
    }

    pub fn with_default(mut self, id: Option<String>) -> Result<Self, CsiError> {
        if let Some(id) = &id {
            if !self.entries.contains_key(id) {
                return Err(CsiError::Invalid(format!(
                    "default kmsID {id:?} is not in the KMS config"
                )));
            }
        }
        self.default_id = id;
        Ok(self)
    }

    pub fn insert(&mut self, id: &str, conn: KmsConnection) {
        self.entries.insert(id.to_owned(), conn);
    }

    pub fn get(&self, id: &str) -> Option<&KmsConnection> {
        self.entries.get(id)
    }

    /// The connection used by StorageClasses that name none, if configured.
    pub fn default_connection(&self) -> Option<&KmsConnection> {
        self.default_id
            .as_deref()
            .and_then(|id| self.entries.get(id))
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

// ---------------------------------------------------------------- StorageClass

/// Everything CreateVolume needs from the StorageClass, validated and rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeParams {
    pub pvc: PvcMeta,
    /// The tenant (the PVC's namespace).
    pub tenant: String,
    /// The catalog entry used, if any (recorded in the volume context).
    pub kms_id: Option<String>,
    pub kms: KmsConnection,
    pub protection: Protection,
    pub fs_type: Option<FsType>,
}

impl VolumeParams {
    /// Parse and validate a CreateVolume `parameters` map against the KMS catalog.
    pub fn parse(
        params: &HashMap<String, String>,
        catalog: &KmsCatalog,
        files: &SecretFiles,
    ) -> Result<Self, CsiError> {
        // 1. Every key must be known.
        let mut keys: Vec<&String> = params.keys().collect();
        keys.sort();
        for k in keys {
            if !sc::ALL.contains(&k.as_str()) {
                let hint = if k.starts_with("csi.storage.k8s.io/") {
                    " (external-provisioner strips the csi.storage.k8s.io/ keys it knows; this \
                     one it does not)"
                        .to_owned()
                } else {
                    format!(" (known: {})", sc::ALL.join(", "))
                };
                return Err(invalid(k, format!("unknown StorageClass parameter{hint}")));
            }
        }
        let get = |k: &str| params.get(k).map(String::as_str);

        // 2. Encryption is the point of this driver.
        if let Some(v) = get(sc::ENCRYPTED) {
            if !parse_bool(sc::ENCRYPTED, v)? {
                return Err(invalid(
                    sc::ENCRYPTED,
                    "strongroom only provisions encrypted volumes; remove the key or set \"true\"",
                ));
            }
        }
        if let Some(v) = get(sc::ENCRYPTION_TYPE) {
            if v != "block" {
                return Err(invalid(
                    sc::ENCRYPTION_TYPE,
                    format!("{v:?}: only \"block\" (LUKS2) encryption is supported"),
                ));
            }
        }

        // 3. The tenant, from --extra-create-metadata.
        let namespace = get(PVC_NAMESPACE).ok_or_else(|| {
            invalid(
                PVC_NAMESPACE,
                "missing: the tenant is the PVC's namespace; run external-provisioner with \
                 --extra-create-metadata",
            )
        })?;
        if !is_dns_label(namespace) {
            return Err(invalid(
                PVC_NAMESPACE,
                format!("{namespace:?} is not a namespace name"),
            ));
        }
        let name_of = |k: &str| -> Result<Option<String>, CsiError> {
            match get(k) {
                Some(v) if !is_dns_subdomain(v) => {
                    Err(invalid(k, format!("{v:?} is not an object name")))
                }
                Some(v) => Ok(Some(v.to_owned())),
                None => Ok(None),
            }
        };
        let pvc = PvcMeta {
            namespace: namespace.to_owned(),
            name: name_of(PVC_NAME)?,
            pv_name: name_of(PV_NAME)?,
        };

        // 4. The KMS connection: a catalog entry or inline keys, not both.
        let inline: Vec<&str> = sc::INLINE_KMS
            .iter()
            .copied()
            .filter(|k| params.contains_key(*k))
            .collect();
        let (kms_id, kms) = match (get(sc::KMS_ID), inline.is_empty()) {
            (Some(_), false) => {
                return Err(invalid(
                    inline[0],
                    format!(
                        "conflicts with {:?}: name a KMS connection or give one inline",
                        sc::KMS_ID
                    ),
                ))
            }
            (Some(id), true) => {
                let conn = catalog.get(id).ok_or_else(|| {
                    invalid(
                        sc::KMS_ID,
                        format!(
                            "{id:?} is not in the KMS connection config (known: {})",
                            catalog.ids().collect::<Vec<_>>().join(", ")
                        ),
                    )
                })?;
                (Some(id.to_owned()), conn.clone())
            }
            (None, false) => (None, inline_connection(params, files)?),
            (None, true) => match &catalog.default_id {
                Some(id) => (Some(id.clone()), catalog.entries[id].clone()),
                None => {
                    return Err(invalid(
                        sc::KMS_ID,
                        format!(
                            "no KMS connection: set {:?} or {:?} (the driver has no default)",
                            sc::KMS_ID,
                            sc::KMS_ADDRESS
                        ),
                    ))
                }
            },
        };

        // 5. Protection, with templates rendered for this PVC.
        let mode = get(sc::PROTECTION).unwrap_or("envelope");
        let protection = match mode {
            "envelope" => {
                let mount = get(sc::TRANSIT_MOUNT).unwrap_or(DEFAULT_TRANSIT_MOUNT);
                check_kms_path(sc::TRANSIT_MOUNT, mount)?;
                let key = Template::parse(
                    sc::TRANSIT_KEY,
                    get(sc::TRANSIT_KEY).unwrap_or(DEFAULT_TRANSIT_KEY),
                )?
                .render(&pvc)?;
                check_kms_path(sc::TRANSIT_KEY, &key)?;
                if key.contains('/') {
                    return Err(invalid(
                        sc::TRANSIT_KEY,
                        format!("{key:?}: a key name has no '/'"),
                    ));
                }
                Protection::Envelope {
                    mount: mount.trim_matches('/').to_owned(),
                    key,
                }
            }
            "kv" => {
                for k in [sc::TRANSIT_MOUNT, sc::TRANSIT_KEY] {
                    if params.contains_key(k) {
                        return Err(invalid(k, "only applies to protection \"envelope\""));
                    }
                }
                let backend = kms.backend_path.render(&pvc)?;
                check_kms_path(&kms.backend_path.key, &backend)?;
                Protection::Kv {
                    backend: backend.trim_matches('/').to_owned(),
                }
            }
            other => {
                return Err(invalid(
                    sc::PROTECTION,
                    format!("{other:?}: use \"envelope\" or \"kv\""),
                ))
            }
        };

        let fs_type = get(sc::FS_TYPE)
            .map(|v| FsType::parse(sc::FS_TYPE, v))
            .transpose()?;

        Ok(VolumeParams {
            tenant: pvc.namespace.clone(),
            pvc,
            kms_id,
            kms,
            protection,
            fs_type,
        })
    }
}

fn inline_connection(
    params: &HashMap<String, String>,
    files: &SecretFiles,
) -> Result<KmsConnection, CsiError> {
    let get = |k: &str| params.get(k).map(String::as_str);
    let address = match get(sc::KMS_ADDRESS) {
        Some(v) => check_address(sc::KMS_ADDRESS, v)?,
        None => {
            return Err(invalid(
                sc::KMS_ADDRESS,
                "required with the other inline KMS settings",
            ))
        }
    };
    let backend_path = Template::parse(
        sc::KMS_BACKEND_PATH,
        get(sc::KMS_BACKEND_PATH).unwrap_or(DEFAULT_BACKEND_PATH),
    )?;
    let tls_server_name = match get(sc::KMS_TLS_SERVER_NAME) {
        Some(v) if !is_dns_subdomain(v) => {
            return Err(invalid(
                sc::KMS_TLS_SERVER_NAME,
                format!("{v:?} is not a host name"),
            ))
        }
        v => v.map(str::to_owned),
    };
    Ok(KmsConnection {
        address,
        tls_server_name,
        ca_cert: get(sc::KMS_CA_CERT_SECRET)
            .map(|s| files.file(sc::KMS_CA_CERT_SECRET, s, "cert"))
            .transpose()?,
        client_cert: None,
        skip_verify: false,
        backend_path,
        kv_version: get(sc::KMS_BACKEND)
            .map(|v| KvVersion::parse(sc::KMS_BACKEND, v))
            .transpose()?
            .flatten(),
        tenant_token_name: DEFAULT_TENANT_TOKEN_NAME.to_owned(),
    })
}

#[cfg(test)]
mod tests;
