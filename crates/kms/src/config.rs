//! Server configuration: the Vault/OpenBao HCL stanzas we support, typed and validated.
//! Unknown stanzas and keys are errors naming them, so a setting is never silently ignored.

use hcl::{Body, Expression, Structure};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("reading config {path}: {msg}")]
    Read { path: String, msg: String },
    #[error("parsing config: {0}")]
    Parse(String),
    #[error("config: unknown stanza or key {0:?}")]
    Unknown(String),
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    Inmem,
    /// Integrated storage: replicated by raft (`file`: the embedded single-node store).
    Raft {
        path: PathBuf,
        node_id: Option<String>,
        /// `retry_join` stanzas: leaders to keep trying to join until this node is a member.
        retry_join: Vec<RetryJoin>,
        /// `retry_join_as_non_voter`: join through `retry_join` as a permanent non-voter.
        retry_join_as_non_voter: bool,
    },
    File {
        path: PathBuf,
    },
}

/// A `retry_join` stanza of `storage "raft"`: a leader to join and how to reach it over
/// HTTPS. PEM text, read from the `*_file` keys or given inline.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RetryJoin {
    pub leader_api_addr: String,
    pub leader_ca_cert: Option<String>,
    pub leader_client_cert: Option<String>,
    pub leader_client_key: Option<zeroize::Zeroizing<String>>,
    /// `leader_tls_servername`: the name the leader's certificate is checked against.
    pub leader_tls_servername: Option<String>,
}

impl std::fmt::Debug for RetryJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryJoin")
            .field("leader_api_addr", &self.leader_api_addr)
            .field("leader_ca_cert", &self.leader_ca_cert.is_some())
            .field("leader_client_cert", &self.leader_client_cert.is_some())
            .field("leader_client_key", &self.leader_client_key.is_some())
            .field("leader_tls_servername", &self.leader_tls_servername)
            .finish()
    }
}

/// Vault's listener timeouts. Zero turns one off; as in Go's `http.Server` (and so in
/// Vault), a zero header timeout falls back to the read timeout, and a zero idle timeout to
/// the read timeout, then to the header timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// `http_read_header_timeout` (10s): from a connection's first byte (a new connection:
    /// from its accept) until the request header is complete.
    pub read_header: Duration,
    /// `http_read_timeout` (30s): from a request's header until its whole body is read.
    pub read: Duration,
    /// `http_idle_timeout` (5m): a kept-alive connection waiting for its next request.
    pub idle: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            read_header: Duration::from_secs(10),
            read: Duration::from_secs(30),
            idle: Duration::from_secs(300),
        }
    }
}

impl HttpTimeouts {
    fn first_set(ds: &[Duration]) -> Option<Duration> {
        ds.iter().copied().find(|d| !d.is_zero())
    }
    /// The header timeout in force (`None`: none).
    pub fn header(&self) -> Option<Duration> {
        Self::first_set(&[self.read_header, self.read])
    }
    /// The body timeout in force.
    pub fn body(&self) -> Option<Duration> {
        Self::first_set(&[self.read])
    }
    /// The idle timeout in force.
    pub fn idle(&self) -> Option<Duration> {
        Self::first_set(&[self.idle, self.read, self.read_header])
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerConfig {
    pub address: String,
    pub tls_disable: bool,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_client_ca_file: Option<PathBuf>,
    pub tls_require_and_verify_client_cert: bool,
    pub max_request_size: Option<usize>,
    pub timeouts: HttpTimeouts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub storage: StorageConfig,
    pub listeners: Vec<ListenerConfig>,
    pub api_addr: Option<String>,
    pub cluster_addr: Option<String>,
    pub ui: bool,
    pub disable_mlock: bool,
    pub log_level: Option<String>,
    /// `audit "<type>" "<path>" { ... }` stanzas: devices enabled at every unseal.
    pub audit: Vec<crate::audit::DeviceConfig>,
    /// `unsafe_allow_api_audit_creation`: let `sys/audit/<path>` create devices (OpenBao
    /// refuses by default: a file device can write wherever the server can).
    pub unsafe_allow_api_audit_creation: bool,
}

fn as_string(key: &str, e: &Expression) -> Result<String, ConfigError> {
    match e {
        Expression::String(s) => Ok(s.clone()),
        Expression::Number(n) => Ok(n.to_string()),
        Expression::Bool(b) => Ok(b.to_string()),
        _ => Err(ConfigError::Invalid(format!("{key} must be a string"))),
    }
}

fn as_bool(key: &str, e: &Expression) -> Result<bool, ConfigError> {
    match e {
        Expression::Bool(b) => Ok(*b),
        Expression::String(s) => match s.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            _ => Err(ConfigError::Invalid(format!("{key} must be a boolean"))),
        },
        Expression::Number(n) => Ok(n.as_f64() != Some(0.0)),
        _ => Err(ConfigError::Invalid(format!("{key} must be a boolean"))),
    }
}

/// A Go-style duration (`"30s"`, `"5m"`) or a number of seconds.
fn as_duration(key: &str, e: &Expression) -> Result<Duration, ConfigError> {
    crate::duration::parse_secs(&as_string(key, e)?)
        .map(Duration::from_secs)
        .map_err(|err| ConfigError::Invalid(format!("{key}: {err}")))
}

fn attrs(ctx: &str, body: &Body) -> Result<Vec<(String, Expression)>, ConfigError> {
    let mut out = vec![];
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => out.push((a.key.to_string(), a.expr.clone())),
            Structure::Block(b) => {
                return Err(ConfigError::Unknown(format!(
                    "{ctx}.{}",
                    b.identifier.as_str()
                )))
            }
        }
    }
    Ok(out)
}

/// The attributes of a `storage "raft"` body and its `retry_join` stanzas.
type RaftBody = (Vec<(String, Expression)>, Vec<RetryJoin>);

fn raft_body(body: &Body) -> Result<RaftBody, ConfigError> {
    let mut out = vec![];
    let mut joins = vec![];
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => out.push((a.key.to_string(), a.expr.clone())),
            Structure::Block(b) if b.identifier.as_str() == "retry_join" => {
                joins.push(retry_join(&b.body)?)
            }
            Structure::Block(b) => {
                return Err(ConfigError::Unknown(format!(
                    "storage \"raft\".{}",
                    b.identifier.as_str()
                )))
            }
        }
    }
    Ok((out, joins))
}

fn read_pem(key: &str, path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_string(),
        msg: format!("{key}: {e}"),
    })
}

/// One `retry_join { ... }` stanza.
fn retry_join(body: &Body) -> Result<RetryJoin, ConfigError> {
    let mut j = RetryJoin::default();
    for (k, e) in attrs("storage \"raft\".retry_join", body)? {
        let v = as_string(&k, &e)?;
        match k.as_str() {
            "leader_api_addr" => j.leader_api_addr = v,
            "leader_ca_cert" => j.leader_ca_cert = Some(v),
            "leader_ca_cert_file" => j.leader_ca_cert = Some(read_pem(&k, &v)?),
            "leader_client_cert" => j.leader_client_cert = Some(v),
            "leader_client_cert_file" => j.leader_client_cert = Some(read_pem(&k, &v)?),
            "leader_client_key" => j.leader_client_key = Some(v.into()),
            "leader_client_key_file" => j.leader_client_key = Some(read_pem(&k, &v)?.into()),
            "leader_tls_servername" => j.leader_tls_servername = Some(v),
            "auto_join" | "auto_join_scheme" | "auto_join_port" => {
                return Err(ConfigError::Invalid(format!(
                    "storage \"raft\".retry_join: {k} (cloud auto-join) is not supported; give leader_api_addr"
                )))
            }
            other => {
                return Err(ConfigError::Unknown(format!(
                    "storage \"raft\".retry_join.{other}"
                )))
            }
        }
    }
    if j.leader_api_addr.is_empty() {
        return Err(ConfigError::Invalid(
            "storage \"raft\".retry_join needs leader_api_addr".into(),
        ));
    }
    if j.leader_client_cert.is_some() != j.leader_client_key.is_some() {
        return Err(ConfigError::Invalid(
            "storage \"raft\".retry_join: leader_client_cert and leader_client_key go together"
                .into(),
        ));
    }
    Ok(j)
}

impl ServerConfig {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let body: Body = hcl::parse(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let mut storage = None;
        let mut listeners = vec![];
        let mut cfg = ServerConfig {
            storage: StorageConfig::Inmem,
            listeners: vec![],
            api_addr: None,
            cluster_addr: None,
            ui: false,
            disable_mlock: false,
            log_level: None,
            audit: vec![],
            unsafe_allow_api_audit_creation: false,
        };
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    let k = a.key.as_str();
                    match k {
                        "api_addr" => cfg.api_addr = Some(as_string(k, &a.expr)?),
                        "cluster_addr" => cfg.cluster_addr = Some(as_string(k, &a.expr)?),
                        "ui" => cfg.ui = as_bool(k, &a.expr)?,
                        "disable_mlock" => cfg.disable_mlock = as_bool(k, &a.expr)?,
                        "log_level" => cfg.log_level = Some(as_string(k, &a.expr)?),
                        "unsafe_allow_api_audit_creation" => {
                            cfg.unsafe_allow_api_audit_creation = as_bool(k, &a.expr)?
                        }
                        other => return Err(ConfigError::Unknown(other.to_string())),
                    }
                }
                Structure::Block(b) => {
                    let id = b.identifier.as_str();
                    let label = b
                        .labels
                        .first()
                        .map(|l| l.as_str().to_string())
                        .unwrap_or_default();
                    match id {
                        "storage" => {
                            if storage.is_some() {
                                return Err(ConfigError::Invalid(
                                    "only one storage stanza is allowed".into(),
                                ));
                            }
                            storage = Some(Self::storage(&label, &b.body)?);
                        }
                        "listener" => listeners.push(Self::listener(&label, &b.body)?),
                        "audit" => cfg.audit.push(Self::audit(b)?),
                        "seal" => {
                            if label != "shamir" {
                                return Err(ConfigError::Invalid(format!(
                                    "seal {label:?} is not supported; only \"shamir\""
                                )));
                            }
                            attrs("seal", &b.body)?;
                        }
                        other => return Err(ConfigError::Unknown(other.to_string())),
                    }
                }
            }
        }
        cfg.storage =
            storage.ok_or_else(|| ConfigError::Invalid("a storage stanza is required".into()))?;
        if listeners.is_empty() {
            return Err(ConfigError::Invalid(
                "at least one listener stanza is required".into(),
            ));
        }
        cfg.listeners = listeners;
        Ok(cfg)
    }

    fn storage(kind: &str, body: &Body) -> Result<StorageConfig, ConfigError> {
        let (a, retry_join) = if kind == "raft" {
            raft_body(body)?
        } else {
            (attrs(&format!("storage \"{kind}\""), body)?, vec![])
        };
        let get = |k: &str| a.iter().find(|(n, _)| n == k).map(|(_, e)| e);
        let allowed: &[&str] = match kind {
            "inmem" => &[],
            "raft" => &[
                "path",
                "node_id",
                "performance_multiplier",
                "retry_join_as_non_voter",
            ],
            "file" => &["path"],
            other => {
                return Err(ConfigError::Invalid(format!(
                    "storage {other:?} is not supported; use \"raft\", \"file\" or \"inmem\""
                )))
            }
        };
        for (k, _) in &a {
            if !allowed.contains(&k.as_str()) {
                return Err(ConfigError::Unknown(format!("storage \"{kind}\".{k}")));
            }
        }
        let path = || -> Result<PathBuf, ConfigError> {
            get("path")
                .map(|e| as_string("path", e).map(PathBuf::from))
                .transpose()?
                .ok_or_else(|| ConfigError::Invalid(format!("storage \"{kind}\" needs a path")))
        };
        Ok(match kind {
            "inmem" => StorageConfig::Inmem,
            "raft" => StorageConfig::Raft {
                path: path()?,
                node_id: get("node_id")
                    .map(|e| as_string("node_id", e))
                    .transpose()?,
                retry_join,
                retry_join_as_non_voter: get("retry_join_as_non_voter")
                    .map(|e| as_bool("retry_join_as_non_voter", e))
                    .transpose()?
                    .unwrap_or(false),
            },
            _ => StorageConfig::File { path: path()? },
        })
    }

    /// `audit "file" "name" { description = "..." options { file_path = "..." } }`.
    fn audit(b: &hcl::Block) -> Result<crate::audit::DeviceConfig, ConfigError> {
        let [kind, path] = b.labels.as_slice() else {
            return Err(ConfigError::Invalid(
                "audit stanzas take two labels: type and path".into(),
            ));
        };
        let ctx = format!("audit \"{}\" \"{}\"", kind.as_str(), path.as_str());
        let mut dev = crate::audit::DeviceConfig {
            path: format!("{}/", path.as_str().trim_matches('/')),
            kind: kind.as_str().to_string(),
            description: String::new(),
            options: serde_json::Map::new(),
            local: false,
        };
        for s in b.body.iter() {
            match s {
                Structure::Attribute(a) if a.key.as_str() == "description" => {
                    dev.description = as_string("description", &a.expr)?
                }
                Structure::Attribute(a) if a.key.as_str() == "local" => {
                    dev.local = as_bool("local", &a.expr)?
                }
                Structure::Block(o) if o.identifier.as_str() == "options" => {
                    for (k, e) in attrs(&format!("{ctx}.options"), &o.body)? {
                        let v = as_string(&k, &e)?;
                        dev.options.insert(k, serde_json::Value::String(v));
                    }
                }
                Structure::Attribute(a) => {
                    return Err(ConfigError::Unknown(format!("{ctx}.{}", a.key.as_str())))
                }
                Structure::Block(o) => {
                    return Err(ConfigError::Unknown(format!(
                        "{ctx}.{}",
                        o.identifier.as_str()
                    )))
                }
            }
        }
        Ok(dev)
    }

    fn listener(kind: &str, body: &Body) -> Result<ListenerConfig, ConfigError> {
        if kind != "tcp" {
            return Err(ConfigError::Invalid(format!(
                "listener {kind:?} is not supported; use \"tcp\""
            )));
        }
        let mut l = ListenerConfig {
            address: "127.0.0.1:8200".into(),
            ..Default::default()
        };
        for (k, e) in attrs("listener \"tcp\"", body)? {
            match k.as_str() {
                "address" => l.address = as_string(&k, &e)?,
                "cluster_address" => {}
                "tls_disable" => l.tls_disable = as_bool(&k, &e)?,
                "tls_cert_file" => l.tls_cert_file = Some(as_string(&k, &e)?.into()),
                "tls_key_file" => l.tls_key_file = Some(as_string(&k, &e)?.into()),
                "tls_client_ca_file" => l.tls_client_ca_file = Some(as_string(&k, &e)?.into()),
                "tls_require_and_verify_client_cert" => {
                    l.tls_require_and_verify_client_cert = as_bool(&k, &e)?
                }
                "max_request_size" => {
                    let n: i64 = as_string(&k, &e)?.parse().map_err(|_| {
                        ConfigError::Invalid("max_request_size must be a number".into())
                    })?;
                    l.max_request_size = (n > 0).then_some(n as usize);
                }
                "http_read_header_timeout" => l.timeouts.read_header = as_duration(&k, &e)?,
                "http_read_timeout" => l.timeouts.read = as_duration(&k, &e)?,
                "http_idle_timeout" => l.timeouts.idle = as_duration(&k, &e)?,
                other => return Err(ConfigError::Unknown(format!("listener \"tcp\".{other}"))),
            }
        }
        if !l.tls_disable && (l.tls_cert_file.is_none() || l.tls_key_file.is_none()) {
            return Err(ConfigError::Invalid(
                "listener \"tcp\": tls_cert_file and tls_key_file are required unless tls_disable = true".into(),
            ));
        }
        Ok(l)
    }
}

/// OpenBao's server environment: each variable overrides its config key, `BAO_*` before
/// the `VAULT_*` name it replaced (a StatefulSet sets a pod's own addresses and raft node id
/// this way, around one shared config file).
const ENV_OVERRIDES: [(&str, &str); 4] = [
    ("BAO_API_ADDR", "VAULT_API_ADDR"),
    ("BAO_CLUSTER_ADDR", "VAULT_CLUSTER_ADDR"),
    ("BAO_RAFT_NODE_ID", "VAULT_RAFT_NODE_ID"),
    ("BAO_RAFT_PATH", "VAULT_RAFT_PATH"),
];

impl ServerConfig {
    /// Apply OpenBao's environment overrides, reading variables through `get` (the process
    /// environment in the server; a map in tests). An empty value counts as unset.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let value = |i: usize| {
            let (bao, vault) = ENV_OVERRIDES[i];
            get(bao)
                .filter(|v| !v.is_empty())
                .or_else(|| get(vault).filter(|v| !v.is_empty()))
        };
        if let Some(v) = value(0) {
            self.api_addr = Some(v);
        }
        if let Some(v) = value(1) {
            self.cluster_addr = Some(v);
        }
        if let StorageConfig::Raft { path, node_id, .. } = &mut self.storage {
            if let Some(v) = value(2) {
                *node_id = Some(v);
            }
            if let Some(v) = value(3) {
                *path = PathBuf::from(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openbao_raft_config_parses() {
        let c = ServerConfig::parse(
            r#"
            storage "raft" {
              path    = "/var/lib/bao"
              node_id = "node1"
            }
            listener "tcp" {
              address     = "127.0.0.1:8200"
              tls_disable = true
            }
            api_addr      = "http://127.0.0.1:8200"
            cluster_addr  = "https://127.0.0.1:8201"
            ui            = true
            disable_mlock = true
            "#,
        )
        .unwrap();
        assert_eq!(
            c.storage,
            StorageConfig::Raft {
                path: "/var/lib/bao".into(),
                node_id: Some("node1".into()),
                retry_join: vec![],
                retry_join_as_non_voter: false,
            }
        );
        assert!(c.listeners[0].tls_disable);
        assert!(c.ui);
    }

    #[test]
    fn retry_join_stanzas_parse() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "CA PEM").unwrap();
        let base = "listener \"tcp\" { tls_disable = true }\n";
        let c = ServerConfig::parse(&format!(
            "{base}storage \"raft\" {{\n path = \"/d\"\n retry_join_as_non_voter = true\n\
             retry_join {{\n leader_api_addr = \"https://n1:8200\"\n leader_ca_cert_file = \"{}\"\n}}\n\
             retry_join {{\n leader_api_addr = \"http://n2:8200\"\n}}\n}}",
            ca.display()
        ))
        .unwrap();
        let StorageConfig::Raft {
            retry_join,
            retry_join_as_non_voter,
            ..
        } = c.storage
        else {
            panic!("not raft")
        };
        assert!(retry_join_as_non_voter);
        assert_eq!(retry_join.len(), 2);
        assert_eq!(retry_join[0].leader_api_addr, "https://n1:8200");
        assert_eq!(retry_join[0].leader_ca_cert.as_deref(), Some("CA PEM"));
        assert_eq!(retry_join[1].leader_ca_cert, None);
        let bad = |stanza: &str| {
            ServerConfig::parse(&format!(
                "{base}storage \"raft\" {{\n path = \"/d\"\n retry_join {{\n{stanza}\n}}\n}}"
            ))
            .unwrap_err()
            .to_string()
        };
        assert!(bad("auto_join = \"provider=aws\"").contains("not supported"));
        assert!(bad("leader_ca_cert = \"x\"").contains("needs leader_api_addr"));
        assert!(bad("leader_api_addr = \"http://x\"\n colour = 1").contains("colour"));
        assert!(
            bad("leader_api_addr = \"http://x\"\n leader_client_cert = \"x\"").contains("together")
        );
        assert!(
            bad("leader_api_addr = \"http://x\"\n leader_ca_cert_file = \"/nonexistent\"")
                .contains("/nonexistent")
        );
    }

    #[test]
    fn declarative_audit_devices_parse() {
        let c = ServerConfig::parse(
            r#"
            storage "inmem" {}
            listener "tcp" { tls_disable = true }
            audit "file" "to-file" {
              description = "main log"
              options {
                file_path = "/var/log/strongroom/audit.log"
                mode = "0600"
              }
            }
            "#,
        )
        .unwrap();
        assert!(!c.unsafe_allow_api_audit_creation);
        assert_eq!(c.audit.len(), 1);
        assert_eq!(c.audit[0].path, "to-file/");
        assert_eq!(c.audit[0].kind, "file");
        assert_eq!(
            c.audit[0].options["file_path"],
            "/var/log/strongroom/audit.log"
        );
        let bad = "storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }\naudit \"file\" \"x\" { colour = 1 }";
        assert_eq!(
            ServerConfig::parse(bad).unwrap_err(),
            ConfigError::Unknown("audit \"file\" \"x\".colour".into())
        );
    }

    #[test]
    fn listener_timeouts_use_vaults_names_and_fallbacks() {
        let c = ServerConfig::parse(
            "storage \"inmem\" {}\nlistener \"tcp\" {\n tls_disable = true\n \
             http_read_header_timeout = \"3s\"\n http_read_timeout = 0\n \
             http_idle_timeout = \"2m\"\n}",
        )
        .unwrap();
        let t = c.listeners[0].timeouts;
        assert_eq!(t.header(), Some(Duration::from_secs(3)));
        assert_eq!(t.body(), None);
        assert_eq!(t.idle(), Some(Duration::from_secs(120)));
        let d = HttpTimeouts::default();
        assert_eq!(
            (d.header(), d.body(), d.idle()),
            (
                Some(Duration::from_secs(10)),
                Some(Duration::from_secs(30)),
                Some(Duration::from_secs(300))
            )
        );
        let only_header = HttpTimeouts {
            read: Duration::ZERO,
            idle: Duration::ZERO,
            ..d
        };
        assert_eq!(only_header.idle(), Some(Duration::from_secs(10)));
        assert!(ServerConfig::parse(
            "storage \"inmem\" {}\nlistener \"tcp\" {\n tls_disable = true\n http_read_timeout = \"soon\"\n}"
        )
        .is_err());
    }

    #[test]
    fn unknown_things_are_named() {
        let base = "listener \"tcp\" { tls_disable = true }\n";
        assert_eq!(
            ServerConfig::parse(&format!("{base}storage \"inmem\" {{}}\nbogus = 1")).unwrap_err(),
            ConfigError::Unknown("bogus".into())
        );
        assert_eq!(
            ServerConfig::parse(&format!(
                "{base}storage \"raft\" {{\n path = \"/x\"\n colour = 1\n}}"
            ))
            .unwrap_err(),
            ConfigError::Unknown("storage \"raft\".colour".into())
        );
        assert!(
            ServerConfig::parse("storage \"inmem\" {}\nlistener \"tcp\" { address = \"x\" }")
                .unwrap_err()
                .to_string()
                .contains("tls_cert_file")
        );
        assert!(ServerConfig::parse(&format!("{base}storage \"consul\" {{}}")).is_err());
        assert!(ServerConfig::parse("storage {").is_err());
    }

    #[test]
    fn environment_overrides_addresses_and_raft_identity() {
        let mut c = ServerConfig::parse(
            r#"
            storage "raft" {
              path    = "/data"
              node_id = "from-file"
            }
            listener "tcp" {
              address     = "0.0.0.0:8200"
              tls_disable = true
            }
            api_addr = "http://file:8200"
            "#,
        )
        .unwrap();
        let env: std::collections::HashMap<&str, &str> = [
            ("VAULT_API_ADDR", "http://vault-name:8200"),
            ("BAO_API_ADDR", "http://kms-1.kms-internal:8200"),
            ("VAULT_CLUSTER_ADDR", "https://kms-1.kms-internal:8201"),
            ("BAO_RAFT_NODE_ID", "kms-1"),
            ("BAO_RAFT_PATH", ""),
        ]
        .into_iter()
        .collect();
        c.apply_env(|k| env.get(k).map(|v| v.to_string()));
        assert_eq!(
            c.api_addr.as_deref(),
            Some("http://kms-1.kms-internal:8200")
        );
        assert_eq!(
            c.cluster_addr.as_deref(),
            Some("https://kms-1.kms-internal:8201")
        );
        assert_eq!(
            c.storage,
            StorageConfig::Raft {
                path: "/data".into(),
                node_id: Some("kms-1".into()),
                retry_join: vec![],
                retry_join_as_non_voter: false,
            }
        );
    }
}
