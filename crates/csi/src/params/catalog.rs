//! The KMS connection catalog: ceph-csi's `csi-kms-connection-details` entries (upper-case
//! `KMS_PROVIDER`/`VAULT_ADDR`/... or camelCase `encryptionKMSType`/`vaultAddress`/...), one
//! per kmsID, parsed once at start-up into [`KmsConnection`]s. Every setting is known; an
//! unknown one, or one we do not support, is an error naming the kmsID and the key.

use super::{
    check_addresses, check_kms_path, is_dns_subdomain, kv_version, parse_bool, KmsConnection,
    PvcMeta, SecretFiles, Template, DEFAULT_BACKEND_PATH, DEFAULT_TENANT_TOKEN_NAME,
};
use crate::errors::CsiError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
const PROVIDERS: &[&str] = &["vaulttokens", "strongroom"];

/// One connection section's settings, each with the key it was given under.
struct Section<'a> {
    what: &'a str,
    vals: BTreeMap<Setting, (&'a str, &'a str)>,
}

impl<'a> Section<'a> {
    /// Every key known, a string, given once; no per-tenant overrides.
    fn read(what: &'a str, section: &'a Map<String, Value>) -> Result<Self, CsiError> {
        let mut s = Section {
            what,
            vals: BTreeMap::new(),
        };
        for (k, v) in section {
            let Some((_, setting)) = SETTINGS.iter().find(|(name, _)| name == k) else {
                let known: Vec<&str> = SETTINGS.iter().map(|(n, _)| *n).collect();
                return Err(s.bad(k, format!("unknown setting (known: {})", known.join(", "))));
            };
            if matches!(setting, Setting::Tenants | Setting::TenantConfigName) {
                return Err(s.bad(
                    k,
                    "per-tenant KMS overrides are not supported: the KMS connection is \
                     administrator-only (a tenant must not redirect the driver); remove this key",
                ));
            }
            let Value::String(text) = v else {
                return Err(s.bad(k, format!("must be a string, got {v}")));
            };
            if let Some((prev, _)) = s.vals.insert(*setting, (k.as_str(), text.as_str())) {
                return Err(s.bad(k, format!("duplicates {prev:?}")));
            }
        }
        Ok(s)
    }

    fn bad(&self, key: &str, why: impl std::fmt::Display) -> CsiError {
        CsiError::Invalid(format!("{}: key {key:?}: {why}", self.what))
    }

    fn get(&self, s: Setting) -> Option<(&'a str, &'a str)> {
        self.vals.get(&s).copied()
    }

    /// `f` of the setting's key and value, its error named after the section and key.
    fn with<T>(
        &self,
        s: Setting,
        f: impl FnOnce(&str, &str) -> Result<T, CsiError>,
    ) -> Result<Option<T>, CsiError> {
        self.get(s)
            .map(|(k, v)| f(k, v).map_err(|e| self.bad(k, e)))
            .transpose()
    }

    fn check_provider(&self) -> Result<(), CsiError> {
        match self.get(Setting::Provider) {
            Some((k, p)) if !PROVIDERS.contains(&p) => Err(self.bad(
                k,
                format!("provider {p:?} is not supported (supported: vaulttokens, strongroom)"),
            )),
            _ => Ok(()),
        }
    }

    fn addresses(&self) -> Result<Vec<String>, CsiError> {
        self.with(Setting::Address, check_addresses)?
            .ok_or_else(|| self.bad("VAULT_ADDR", "the KMS address is required"))
    }

    fn backend_path(&self) -> Result<Template, CsiError> {
        let t = self.with(Setting::BackendPath, |k, v| {
            let t = Template::parse(k, v)?;
            check_kms_path(k, &t.render(&sample_pvc()).unwrap_or_default())?;
            Ok(t)
        })?;
        match t {
            Some(t) => Ok(t),
            None => Template::parse("VAULT_BACKEND_PATH", DEFAULT_BACKEND_PATH),
        }
    }

    /// Settings we do not support, refused rather than ignored: soft deletion, namespaces.
    fn check_unsupported(&self) -> Result<(), CsiError> {
        if let (Some((k, _)), Some(false)) = (
            self.get(Setting::DestroyKeys),
            self.with(Setting::DestroyKeys, parse_bool)?,
        ) {
            return Err(self.bad(
                k,
                "keys are always destroyed (crypto-shred) when a volume is deleted; soft \
                 deletion is not supported",
            ));
        }
        for s in [Setting::Namespace, Setting::AuthNamespace] {
            if let Some((k, v)) = self.get(s) {
                if !v.is_empty() {
                    return Err(self.bad(k, "Vault Enterprise namespaces are not supported"));
                }
            }
        }
        Ok(())
    }

    fn skip_verify(&self) -> Result<bool, CsiError> {
        match (self.get(Setting::SkipVerify), self.get(Setting::CaVerify)) {
            (Some((k, _)), Some(_)) => {
                Err(self.bad(k, "set VAULT_SKIP_VERIFY or vaultCAVerify, not both"))
            }
            (Some(_), None) => Ok(self.with(Setting::SkipVerify, parse_bool)? == Some(true)),
            (None, Some(_)) => Ok(self.with(Setting::CaVerify, parse_bool)? == Some(false)),
            (None, None) => Ok(false),
        }
    }

    fn tls_server_name(&self) -> Result<Option<String>, CsiError> {
        match self.get(Setting::TlsServerName) {
            Some((k, v)) if !is_dns_subdomain(v) => {
                Err(self.bad(k, format!("{v:?} is not a host name")))
            }
            v => Ok(v.map(|(_, v)| v.to_owned())),
        }
    }

    /// The mounted file `item` of the Secret a setting names.
    fn secret_file(
        &self,
        s: Setting,
        item: &str,
        files: &SecretFiles,
    ) -> Result<Option<PathBuf>, CsiError> {
        self.with(s, |k, v| files.file(k, v, item))
    }

    fn client_cert(&self, files: &SecretFiles) -> Result<Option<(PathBuf, PathBuf)>, CsiError> {
        match (self.get(Setting::ClientCert), self.get(Setting::ClientKey)) {
            (None, None) => Ok(None),
            (Some((kc, c)), Some((kk, key))) => Ok(Some((
                files.file(kc, c, "cert").map_err(|e| self.bad(kc, e))?,
                files.file(kk, key, "key").map_err(|e| self.bad(kk, e))?,
            ))),
            (Some((k, _)), None) | (None, Some((k, _))) => Err(self.bad(
                k,
                "a client certificate and its key go together (VAULT_CLIENT_CERT and \
                 VAULT_CLIENT_KEY)",
            )),
        }
    }

    fn tenant_token_name(&self) -> Result<String, CsiError> {
        match self.get(Setting::TenantTokenName) {
            Some((k, v)) if !is_dns_subdomain(v) => {
                Err(self.bad(k, format!("{v:?} is not a Secret name")))
            }
            Some((_, v)) => Ok(v.to_owned()),
            None => Ok(DEFAULT_TENANT_TOKEN_NAME.to_owned()),
        }
    }
}

/// Parse one connection section (`what` names it in errors, e.g. `kmsID "vault-tokens"`).
fn parse_connection(
    what: &str,
    section: &Map<String, Value>,
    files: &SecretFiles,
) -> Result<KmsConnection, CsiError> {
    let s = Section::read(what, section)?;
    s.check_provider()?;
    let addresses = s.addresses()?;
    let backend_path = s.backend_path()?;
    let kv_version = s.with(Setting::Backend, kv_version)?.flatten();
    s.check_unsupported()?;
    let skip_verify = s.skip_verify()?;
    let tls_server_name = s.tls_server_name()?;
    let ca_cert = s.secret_file(Setting::CaCert, "cert", files)?;
    let client_cert = s.client_cert(files)?;
    let tenant_token_name = s.tenant_token_name()?;
    Ok(KmsConnection {
        addresses,
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

    /// The default entry's id and connection, if configured.
    pub(super) fn default_entry(&self) -> Option<(Option<String>, KmsConnection)> {
        let id = self.default_id.as_ref()?;
        Some((Some(id.clone()), self.entries.get(id)?.clone()))
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
