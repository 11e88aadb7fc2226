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
use std::collections::HashMap;
use std::path::PathBuf;
use strongroom_volume::{FsType, KvVersion, ProtectionRequest};

mod catalog;
pub mod rbd;
pub use catalog::KmsCatalog;
pub use rbd::{ClusterMap, RbdParams};

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
        super::rbd::CLUSTER_ID,
        super::rbd::POOL,
        super::rbd::DATA_POOL,
        super::rbd::IMAGE_FEATURES,
        super::rbd::RADOS_NAMESPACE,
        super::rbd::MAP_OPTIONS,
    ];
    /// The CO's own keys (which Secret to send with which call). external-provisioner
    /// strips them; a CO that passes them on gets them accepted and not used.
    pub const CO_SECRET_REFS: &[&str] = &[
        "csi.storage.k8s.io/provisioner-secret-name",
        "csi.storage.k8s.io/provisioner-secret-namespace",
        "csi.storage.k8s.io/node-stage-secret-name",
        "csi.storage.k8s.io/node-stage-secret-namespace",
        "csi.storage.k8s.io/controller-expand-secret-name",
        "csi.storage.k8s.io/controller-expand-secret-namespace",
        "csi.storage.k8s.io/node-expand-secret-name",
        "csi.storage.k8s.io/node-expand-secret-namespace",
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

/// A filesystem type named by `key` (the volume manager's [`FsType`]: ext4 or xfs, nothing
/// else, never a silent default).
pub(crate) fn fs_type(key: &str, v: &str) -> Result<FsType, CsiError> {
    v.parse::<FsType>().map_err(|_| {
        invalid(
            key,
            format!("filesystem {v:?} is not supported (ext4 or xfs)"),
        )
    })
}

/// The KV engine version of a backend (`kv`/`kv-v1`, `kv-v2`); `None` (empty) = detect it
/// with the mount preflight.
fn kv_version(key: &str, v: &str) -> Result<Option<KvVersion>, CsiError> {
    match v {
        "kv" | "kv-v1" => Ok(Some(KvVersion::V1)),
        "kv-v2" => Ok(Some(KvVersion::V2)),
        "" => Ok(None),
        _ => Err(invalid(key, format!("{v:?}: use \"kv\" or \"kv-v2\""))),
    }
}

/// Where the key manager is and how to reach it. Holds no credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsConnection {
    /// `http(s)://host[:port]`: one key manager, or the nodes of a cluster (given as a
    /// comma-separated list; requests go to a node that answers).
    pub addresses: Vec<String>,
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

/// A comma-separated list of addresses (a key-manager cluster's nodes), each checked.
fn check_addresses(key: &str, v: &str) -> Result<Vec<String>, CsiError> {
    let list: Vec<&str> = v.split(',').map(str::trim).collect();
    if list.iter().any(|a| a.is_empty()) {
        return Err(invalid(key, format!("{v:?}: an empty address in the list")));
    }
    list.into_iter().map(|a| check_address(key, a)).collect()
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
    /// The volume manager's own request type, templates rendered.
    pub protection: ProtectionRequest,
    pub fs_type: Option<FsType>,
    /// An RBD image in Ceph (`pool` set), else a file on the controller's node.
    pub rbd: Option<RbdParams>,
}

/// A CreateVolume `parameters` map.
type Params = HashMap<String, String>;

fn get<'a>(params: &'a Params, k: &str) -> Option<&'a str> {
    params.get(k).map(String::as_str)
}

impl VolumeParams {
    /// Parse and validate a CreateVolume `parameters` map against the KMS catalog.
    pub fn parse(
        params: &Params,
        catalog: &KmsCatalog,
        files: &SecretFiles,
        clusters: &ClusterMap,
    ) -> Result<Self, CsiError> {
        check_keys(params)?;
        check_encryption(params)?;
        let pvc = pvc_meta(params)?;
        let (kms_id, kms) = connection(params, catalog, files)?;
        let protection = protection(params, &kms, &pvc)?;
        let fs_type = get(params, sc::FS_TYPE)
            .map(|v| fs_type(sc::FS_TYPE, v))
            .transpose()?;
        let rbd = rbd::parse(params, clusters, &pvc)?;
        Ok(VolumeParams {
            rbd,
            tenant: pvc.namespace.clone(),
            pvc,
            kms_id,
            kms,
            protection,
            fs_type,
        })
    }
}

/// Every key must be known.
fn check_keys(params: &Params) -> Result<(), CsiError> {
    let mut keys: Vec<&String> = params.keys().collect();
    keys.sort();
    let known = |k: &str| sc::ALL.contains(&k) || sc::CO_SECRET_REFS.contains(&k);
    match keys.into_iter().find(|k| !known(k)) {
        None => Ok(()),
        Some(k) => {
            let hint = if k.starts_with("csi.storage.k8s.io/") {
                " (external-provisioner strips the csi.storage.k8s.io/ keys it knows; this \
                 one it does not)"
                    .to_owned()
            } else {
                format!(" (known: {})", sc::ALL.join(", "))
            };
            Err(invalid(k, format!("unknown StorageClass parameter{hint}")))
        }
    }
}

/// Encryption is the point of this driver: `encrypted` may only be true, LUKS2 only.
fn check_encryption(params: &Params) -> Result<(), CsiError> {
    if let Some(v) = get(params, sc::ENCRYPTED) {
        if !parse_bool(sc::ENCRYPTED, v)? {
            return Err(invalid(
                sc::ENCRYPTED,
                "strongroom only provisions encrypted volumes; remove the key or set \"true\"",
            ));
        }
    }
    match get(params, sc::ENCRYPTION_TYPE) {
        Some(v) if v != "block" => Err(invalid(
            sc::ENCRYPTION_TYPE,
            format!("{v:?}: only \"block\" (LUKS2) encryption is supported"),
        )),
        _ => Ok(()),
    }
}

/// The PVC (the tenant is its namespace), from --extra-create-metadata.
fn pvc_meta(params: &Params) -> Result<PvcMeta, CsiError> {
    let namespace = get(params, PVC_NAMESPACE).ok_or_else(|| {
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
        match get(params, k) {
            Some(v) if !is_dns_subdomain(v) => {
                Err(invalid(k, format!("{v:?} is not an object name")))
            }
            v => Ok(v.map(str::to_owned)),
        }
    };
    Ok(PvcMeta {
        namespace: namespace.to_owned(),
        name: name_of(PVC_NAME)?,
        pv_name: name_of(PV_NAME)?,
    })
}

/// The KMS connection: a catalog entry (named, or the default) or inline keys, not both.
fn connection(
    params: &Params,
    catalog: &KmsCatalog,
    files: &SecretFiles,
) -> Result<(Option<String>, KmsConnection), CsiError> {
    let inline: Vec<&str> = sc::INLINE_KMS
        .iter()
        .copied()
        .filter(|k| params.contains_key(*k))
        .collect();
    match (get(params, sc::KMS_ID), inline.first()) {
        (Some(_), Some(k)) => Err(invalid(
            k,
            format!(
                "conflicts with {:?}: name a KMS connection or give one inline",
                sc::KMS_ID
            ),
        )),
        (Some(id), None) => {
            let conn = catalog.get(id).ok_or_else(|| {
                invalid(
                    sc::KMS_ID,
                    format!(
                        "{id:?} is not in the KMS connection config (known: {})",
                        catalog.ids().collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            Ok((Some(id.to_owned()), conn.clone()))
        }
        (None, Some(_)) => Ok((None, inline_connection(params, files)?)),
        (None, None) => catalog.default_entry().ok_or_else(|| {
            invalid(
                sc::KMS_ID,
                format!(
                    "no KMS connection: set {:?} or {:?} (the driver has no default)",
                    sc::KMS_ID,
                    sc::KMS_ADDRESS
                ),
            )
        }),
    }
}

/// How the new volume's secret is protected, with templates rendered for this PVC.
fn protection(
    params: &Params,
    kms: &KmsConnection,
    pvc: &PvcMeta,
) -> Result<ProtectionRequest, CsiError> {
    match get(params, sc::PROTECTION).unwrap_or("envelope") {
        "envelope" => envelope(params, pvc),
        "kv" => {
            for k in [sc::TRANSIT_MOUNT, sc::TRANSIT_KEY] {
                if params.contains_key(k) {
                    return Err(invalid(k, "only applies to protection \"envelope\""));
                }
            }
            let backend = kms.backend_path.render(pvc)?;
            check_kms_path(&kms.backend_path.key, &backend)?;
            Ok(ProtectionRequest::Kv {
                backend: backend.trim_matches('/').to_owned(),
            })
        }
        other => Err(invalid(
            sc::PROTECTION,
            format!("{other:?}: use \"envelope\" or \"kv\""),
        )),
    }
}

/// Envelope protection: the transit mount and key (default `tenant-${pvc.namespace}`).
fn envelope(params: &Params, pvc: &PvcMeta) -> Result<ProtectionRequest, CsiError> {
    let mount = get(params, sc::TRANSIT_MOUNT).unwrap_or(DEFAULT_TRANSIT_MOUNT);
    check_kms_path(sc::TRANSIT_MOUNT, mount)?;
    let key = Template::parse(
        sc::TRANSIT_KEY,
        get(params, sc::TRANSIT_KEY).unwrap_or(DEFAULT_TRANSIT_KEY),
    )?
    .render(pvc)?;
    check_kms_path(sc::TRANSIT_KEY, &key)?;
    if key.contains('/') {
        return Err(invalid(
            sc::TRANSIT_KEY,
            format!("{key:?}: a key name has no '/'"),
        ));
    }
    Ok(ProtectionRequest::Envelope {
        mount: mount.trim_matches('/').to_owned(),
        key,
    })
}

fn inline_connection(params: &Params, files: &SecretFiles) -> Result<KmsConnection, CsiError> {
    let get = |k: &str| get(params, k);
    let addresses = match get(sc::KMS_ADDRESS) {
        Some(v) => check_addresses(sc::KMS_ADDRESS, v)?,
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
        addresses,
        tls_server_name,
        ca_cert: get(sc::KMS_CA_CERT_SECRET)
            .map(|s| files.file(sc::KMS_CA_CERT_SECRET, s, "cert"))
            .transpose()?,
        client_cert: None,
        skip_verify: false,
        backend_path,
        kv_version: get(sc::KMS_BACKEND)
            .map(|v| kv_version(sc::KMS_BACKEND, v))
            .transpose()?
            .flatten(),
        tenant_token_name: DEFAULT_TENANT_TOKEN_NAME.to_owned(),
    })
}

#[cfg(test)]
mod tests;
