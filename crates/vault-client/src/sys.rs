//! `sys/` endpoints (init, seal, health, mounts, policies) and token / userpass auth.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::client::{need_secret, parse, Client, Method};
use crate::error::{Error, Result};
use crate::secret::{zeroize_value, SecretString};
use crate::types::Secret;

/// `PUT sys/init` body.
#[derive(Clone, Debug, Serialize)]
pub struct InitRequest {
    pub secret_shares: u32,
    pub secret_threshold: u32,
    pub pgp_keys: Option<Vec<String>>,
    pub recovery_shares: u32,
    pub recovery_threshold: u32,
    pub recovery_pgp_keys: Option<Vec<String>>,
    pub root_token_pgp_key: String,
}

impl InitRequest {
    pub fn shamir(shares: u32, threshold: u32) -> Self {
        InitRequest {
            secret_shares: shares,
            secret_threshold: threshold,
            pgp_keys: None,
            recovery_shares: 0,
            recovery_threshold: 0,
            recovery_pgp_keys: None,
            root_token_pgp_key: String::new(),
        }
    }
}

/// `PUT sys/init` answer: the unseal key shares and the initial root token.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct InitResponse {
    /// Shares, hex.
    #[serde(default)]
    pub keys: Vec<SecretString>,
    /// The same shares, base64.
    #[serde(default)]
    pub keys_base64: Vec<SecretString>,
    #[serde(default)]
    pub recovery_keys: Vec<SecretString>,
    #[serde(default)]
    pub recovery_keys_base64: Vec<SecretString>,
    pub root_token: SecretString,
}

/// `GET sys/seal-status` (also the answer of `PUT sys/unseal`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct SealStatus {
    #[serde(rename = "type", default)]
    pub seal_type: String,
    pub initialized: bool,
    pub sealed: bool,
    #[serde(default)]
    pub t: u32,
    #[serde(default)]
    pub n: u32,
    #[serde(default)]
    pub progress: u32,
    #[serde(default)]
    pub nonce: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub commit_date: String,
    #[serde(default)]
    pub migration: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub recovery_seal: bool,
    #[serde(default)]
    pub storage_type: String,
    #[serde(default)]
    pub build_date: String,
}

/// `GET sys/health`, with the HTTP status it came with (200 active, 429 standby,
/// 472/473 DR/perf standby, 501 not initialized, 503 sealed).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Health {
    #[serde(skip)]
    pub status: u16,
    pub initialized: bool,
    pub sealed: bool,
    #[serde(default)]
    pub standby: bool,
    #[serde(default)]
    pub performance_standby: bool,
    #[serde(default)]
    pub replication_performance_mode: String,
    #[serde(default)]
    pub replication_dr_mode: String,
    #[serde(default)]
    pub server_time_utc: i64,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub cluster_id: Option<String>,
}

/// `config` of a mount request.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MountConfigInput {
    pub options: Option<Map<String, Value>>,
    pub default_lease_ttl: String,
    pub max_lease_ttl: String,
    pub force_no_cache: bool,
}

/// `POST sys/mounts/<path>` body.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MountInput {
    #[serde(rename = "type")]
    pub mount_type: String,
    pub description: String,
    pub config: MountConfigInput,
    pub local: bool,
    pub seal_wrap: bool,
    pub external_entropy_access: bool,
    pub options: Option<Map<String, Value>>,
}

impl MountInput {
    /// A mount of `mount_type` (`kv`, `kv-v2`, `transit`, ...) with default settings.
    pub fn of_type(mount_type: &str) -> Self {
        MountInput {
            mount_type: mount_type.to_owned(),
            config: MountConfigInput {
                default_lease_ttl: "0s".into(),
                max_lease_ttl: "0s".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// `POST sys/auth/<path>` body.
pub type AuthMountInput = MountInput;

/// `POST auth/token/create` body (fields as the CLI sends them).
#[derive(Clone, Debug, Serialize)]
pub struct TokenCreateRequest {
    pub policies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
    pub ttl: String,
    pub explicit_max_ttl: String,
    pub period: String,
    pub display_name: String,
    pub num_uses: u64,
    pub renewable: bool,
    #[serde(rename = "type")]
    pub token_type: String,
    pub entity_alias: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_parent: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_default_policy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<SecretString>,
}

impl Default for TokenCreateRequest {
    fn default() -> Self {
        TokenCreateRequest {
            policies: Vec::new(),
            meta: None,
            ttl: "0s".into(),
            explicit_max_ttl: "0s".into(),
            period: "0s".into(),
            display_name: String::new(),
            num_uses: 0,
            renewable: true,
            token_type: "service".into(),
            entity_alias: String::new(),
            no_parent: false,
            no_default_policy: false,
            id: None,
        }
    }
}

impl TokenCreateRequest {
    pub fn with_policies<S: AsRef<str>>(policies: &[S]) -> Self {
        TokenCreateRequest {
            policies: policies.iter().map(|p| p.as_ref().to_owned()).collect(),
            ..Default::default()
        }
    }
}

fn auth_of(s: Option<Secret>, url: String) -> Result<Secret> {
    let s = need_secret(s, url.clone())?;
    if s.auth.is_none() {
        return Err(Error::InvalidResponse {
            url,
            reason: "response has no auth block".into(),
        });
    }
    Ok(s)
}

fn mount_path(p: &str) -> &str {
    p.trim_matches('/')
}

impl Client {
    // ------------------------------------------------------------------ init / seal

    /// `GET sys/init`: is the server initialized?
    pub fn init_status(&self) -> Result<bool> {
        let v = self.request(Method::Get, "sys/init", &[], None)?;
        let v: Value = parse(v, self.url("sys/init"))?;
        v.get("initialized")
            .and_then(Value::as_bool)
            .ok_or_else(|| Error::InvalidResponse {
                url: self.url("sys/init"),
                reason: "no initialized field".into(),
            })
    }

    /// `PUT sys/init`.
    pub fn init(&self, req: &InitRequest) -> Result<InitResponse> {
        let body = serde_json::to_value(req).map_err(|e| Error::Config(e.to_string()))?;
        let mut v = self.request(Method::Put, "sys/init", &[], Some(&body))?;
        let r = parse(v.clone(), self.url("sys/init"));
        if let Some(v) = v.as_mut() {
            zeroize_value(v);
        }
        r
    }

    /// `GET sys/seal-status`.
    pub fn seal_status(&self) -> Result<SealStatus> {
        parse(
            self.request(Method::Get, "sys/seal-status", &[], None)?,
            self.url("sys/seal-status"),
        )
    }

    /// `PUT sys/unseal` with one key share (hex or base64).
    pub fn unseal(&self, key: &SecretString) -> Result<SealStatus> {
        let mut body = json!({ "key": key.expose(), "reset": false, "migrate": false });
        let r = self.request(Method::Put, "sys/unseal", &[], Some(&body));
        zeroize_value(&mut body);
        parse(r?, self.url("sys/unseal"))
    }

    /// `PUT sys/unseal {"reset": true}`: forget the shares given so far.
    pub fn unseal_reset(&self) -> Result<SealStatus> {
        let body = json!({ "reset": true, "migrate": false });
        parse(
            self.request(Method::Put, "sys/unseal", &[], Some(&body))?,
            self.url("sys/unseal"),
        )
    }

    /// `PUT sys/seal`.
    pub fn seal(&self) -> Result<()> {
        self.request(Method::Put, "sys/seal", &[], None).map(|_| ())
    }

    /// `GET sys/health`. Every documented health status (200, 429, 472, 473, 501, 503)
    /// is an answer, not an error; [`Health::status`] holds it.
    pub fn health(&self) -> Result<Health> {
        let (status, body) = self.raw_request(Method::Get, "sys/health", &[], None, None)?;
        match status {
            200 | 429 | 472 | 473 | 501 | 503 => {
                let mut h: Health = parse(body, self.url("sys/health"))?;
                h.status = status;
                Ok(h)
            }
            _ => Err(Error::from_status(
                "GET",
                &self.url("sys/health"),
                status,
                body,
            )),
        }
    }

    /// `GET sys/leader` (raw JSON; 503 while sealed).
    pub fn leader(&self) -> Result<Map<String, Value>> {
        parse(
            self.request(Method::Get, "sys/leader", &[], None)?,
            self.url("sys/leader"),
        )
    }

    // ------------------------------------------------------------------ tokens

    /// `POST auth/token/create` (or `create/<role>`). The new token is in `auth.client_token`.
    pub fn token_create(&self, req: &TokenCreateRequest, role: Option<&str>) -> Result<Secret> {
        let path = match role {
            Some(r) => format!("auth/token/create/{r}"),
            None => "auth/token/create".to_owned(),
        };
        let mut body = serde_json::to_value(req).map_err(|e| Error::Config(e.to_string()))?;
        let r = self.request_secret(Method::Post, &path, &[], Some(&body));
        zeroize_value(&mut body);
        auth_of(r?, self.url(&path))
    }

    /// `GET auth/token/lookup-self`.
    pub fn token_lookup_self(&self) -> Result<Secret> {
        need_secret(
            self.request_secret(Method::Get, "auth/token/lookup-self", &[], None)?,
            self.url("auth/token/lookup-self"),
        )
    }

    /// `POST auth/token/lookup {"token"}`.
    pub fn token_lookup(&self, token: &SecretString) -> Result<Secret> {
        let mut body = json!({ "token": token.expose() });
        let r = self.request_secret(Method::Post, "auth/token/lookup", &[], Some(&body));
        zeroize_value(&mut body);
        need_secret(r?, self.url("auth/token/lookup"))
    }

    /// `POST auth/token/lookup-accessor {"accessor"}`.
    pub fn token_lookup_accessor(&self, accessor: &str) -> Result<Secret> {
        let body = json!({ "accessor": accessor });
        need_secret(
            self.request_secret(Method::Post, "auth/token/lookup-accessor", &[], Some(&body))?,
            self.url("auth/token/lookup-accessor"),
        )
    }

    /// `PUT auth/token/renew-self {"increment": seconds}`.
    pub fn token_renew_self(&self, increment_secs: u64) -> Result<Secret> {
        let body = json!({ "increment": increment_secs });
        auth_of(
            self.request_secret(Method::Put, "auth/token/renew-self", &[], Some(&body))?,
            self.url("auth/token/renew-self"),
        )
    }

    /// `PUT auth/token/renew {"token", "increment"}`.
    pub fn token_renew(&self, token: &SecretString, increment_secs: u64) -> Result<Secret> {
        let mut body = json!({ "token": token.expose(), "increment": increment_secs });
        let r = self.request_secret(Method::Put, "auth/token/renew", &[], Some(&body));
        zeroize_value(&mut body);
        auth_of(r?, self.url("auth/token/renew"))
    }

    /// `POST auth/token/renew-accessor {"accessor", "increment"}`.
    pub fn token_renew_accessor(&self, accessor: &str, increment_secs: u64) -> Result<Secret> {
        let body = json!({ "accessor": accessor, "increment": increment_secs });
        auth_of(
            self.request_secret(Method::Post, "auth/token/renew-accessor", &[], Some(&body))?,
            self.url("auth/token/renew-accessor"),
        )
    }

    /// `PUT auth/token/revoke-self`.
    pub fn token_revoke_self(&self) -> Result<()> {
        self.request(Method::Put, "auth/token/revoke-self", &[], None)
            .map(|_| ())
    }

    /// `PUT auth/token/revoke {"token"}` (or `revoke-orphan` when `orphan`).
    pub fn token_revoke(&self, token: &SecretString, orphan: bool) -> Result<()> {
        let path = if orphan {
            "auth/token/revoke-orphan"
        } else {
            "auth/token/revoke"
        };
        let mut body = json!({ "token": token.expose() });
        let r = self.request(Method::Put, path, &[], Some(&body));
        zeroize_value(&mut body);
        r.map(|_| ())
    }

    /// `POST auth/token/revoke-accessor {"accessor"}`.
    pub fn token_revoke_accessor(&self, accessor: &str) -> Result<()> {
        let body = json!({ "accessor": accessor });
        self.request(Method::Post, "auth/token/revoke-accessor", &[], Some(&body))
            .map(|_| ())
    }

    // ------------------------------------------------------------------ userpass

    /// `PUT auth/<mount>/login/<username> {"password"}` (no token needed). Returns the
    /// login response; the token is `auth.client_token`.
    pub fn userpass_login(
        &self,
        mount: &str,
        username: &str,
        password: &SecretString,
    ) -> Result<Secret> {
        let path = format!("auth/{}/login/{username}", mount_path(mount));
        let mut body = json!({ "password": password.expose() });
        let r = self.request_secret(Method::Put, &path, &[], Some(&body));
        zeroize_value(&mut body);
        auth_of(r?, self.url(&path))
    }

    /// Creates or updates a userpass user.
    pub fn userpass_write_user(
        &self,
        mount: &str,
        username: &str,
        password: &SecretString,
        policies: &[&str],
    ) -> Result<()> {
        let path = format!("auth/{}/users/{username}", mount_path(mount));
        let mut body = json!({ "password": password.expose(), "policies": policies.join(",") });
        let r = self.request(Method::Put, &path, &[], Some(&body));
        zeroize_value(&mut body);
        r.map(|_| ())
    }

    // ------------------------------------------------------------------ mounts

    /// `POST sys/mounts/<path>`.
    pub fn mount_enable(&self, path: &str, input: &MountInput) -> Result<()> {
        let body = serde_json::to_value(input).map_err(|e| Error::Config(e.to_string()))?;
        self.request(
            Method::Post,
            &format!("sys/mounts/{}", mount_path(path)),
            &[],
            Some(&body),
        )
        .map(|_| ())
    }

    /// `DELETE sys/mounts/<path>`.
    pub fn mount_disable(&self, path: &str) -> Result<()> {
        self.request(
            Method::Delete,
            &format!("sys/mounts/{}", mount_path(path)),
            &[],
            None,
        )
        .map(|_| ())
    }

    /// `GET sys/mounts`: mount path (with trailing `/`) → mount entry.
    pub fn mounts_list(&self) -> Result<Map<String, Value>> {
        mounts_of(self.request_secret(Method::Get, "sys/mounts", &[], None)?)
    }

    /// `POST sys/auth/<path>`.
    pub fn auth_enable(&self, path: &str, input: &AuthMountInput) -> Result<()> {
        let body = serde_json::to_value(input).map_err(|e| Error::Config(e.to_string()))?;
        self.request(
            Method::Post,
            &format!("sys/auth/{}", mount_path(path)),
            &[],
            Some(&body),
        )
        .map(|_| ())
    }

    /// `DELETE sys/auth/<path>`.
    pub fn auth_disable(&self, path: &str) -> Result<()> {
        self.request(
            Method::Delete,
            &format!("sys/auth/{}", mount_path(path)),
            &[],
            None,
        )
        .map(|_| ())
    }

    /// `GET sys/auth`: auth mount path → entry.
    pub fn auth_list(&self) -> Result<Map<String, Value>> {
        mounts_of(self.request_secret(Method::Get, "sys/auth", &[], None)?)
    }

    // ------------------------------------------------------------------ policies

    /// `PUT sys/policies/acl/<name> {"policy"}`.
    pub fn policy_write(&self, name: &str, policy: &str) -> Result<()> {
        let body = json!({ "policy": policy });
        self.request(
            Method::Put,
            &format!("sys/policies/acl/{name}"),
            &[],
            Some(&body),
        )
        .map(|_| ())
    }

    /// `GET sys/policies/acl/<name>` → the policy text; `None` if there is no such policy.
    pub fn policy_read(&self, name: &str) -> Result<Option<String>> {
        let path = format!("sys/policies/acl/{name}");
        match self.request_secret(Method::Get, &path, &[], None) {
            Ok(Some(s)) => Ok(s.data_str("policy").map(str::to_owned)),
            Ok(None) | Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `LIST sys/policies/acl`.
    pub fn policy_list(&self) -> Result<Vec<String>> {
        self.list_keys("sys/policies/acl")
    }

    /// `DELETE sys/policies/acl/<name>`.
    pub fn policy_delete(&self, name: &str) -> Result<()> {
        self.request(
            Method::Delete,
            &format!("sys/policies/acl/{name}"),
            &[],
            None,
        )
        .map(|_| ())
    }
}

/// `sys/mounts` and `sys/auth` carry the table in `data` (and duplicated at top level).
fn mounts_of(s: Option<Secret>) -> Result<Map<String, Value>> {
    Ok(s.and_then(|mut s| s.data.take())
        .map(|d| d.into_inner())
        .unwrap_or_default())
}
