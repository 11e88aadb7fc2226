//! Admin-side tenant setup: the tenant's transit key (derived, so every operation needs the
//! volume context), an ACL policy that lets the tenant's token use only that key (and only its
//! own KV subtree for kv-mode volumes), and tokens for it. Also the platform's deletion policy.

use crate::error::{Error, Result};
use crate::kms::{classify, Call};
use strongroom_vault_client::{
    Client, Error as VErr, MountInput, SecretString, TokenCreateRequest, TransitKeyOptions,
};

/// Where a tenant's keys live.
#[derive(Clone, Debug)]
pub struct TenantLayout {
    pub transit_mount: String,
    /// KV v2 mount for kv-mode volumes (`secret`), the tenant's subtree is `strongroom/<tenant>`.
    pub kv2_mount: Option<String>,
    /// KV v1 mount, same subtree.
    pub kv1_mount: Option<String>,
}

impl Default for TenantLayout {
    fn default() -> Self {
        TenantLayout {
            transit_mount: "transit".into(),
            kv2_mount: Some("secret".into()),
            kv1_mount: None,
        }
    }
}

pub fn transit_key(tenant: &str) -> String {
    format!("tenant-{tenant}")
}

pub fn policy_name(tenant: &str) -> String {
    format!("strongroom-tenant-{tenant}")
}

/// KV backend path of a tenant's volumes on `mount` (`secret/strongroom/<tenant>`).
pub fn kv_backend(mount: &str, tenant: &str) -> String {
    format!("{}/strongroom/{tenant}", mount.trim_matches('/'))
}

/// The tenant's policy: update on encrypt/decrypt/rewrap of its own transit key and read of
/// its volume records (`volumes/<key>`), nothing else in transit; CRUD (and listing the
/// metadata) on its own KV subtree.
pub fn tenant_policy(tenant: &str, l: &TenantLayout) -> String {
    let t = l.transit_mount.trim_matches('/');
    let k = transit_key(tenant);
    let mut p = String::new();
    for op in ["encrypt", "decrypt", "rewrap"] {
        p.push_str(&format!(
            "path \"{t}/{op}/{k}\" {{\n  capabilities = [\"update\"]\n}}\n"
        ));
    }
    // what the key manager records of the volumes its key wraps (the UI's Volumes view)
    p.push_str(&format!(
        "path \"{t}/volumes/{k}\" {{\n  capabilities = [\"read\"]\n}}\n"
    ));
    if let Some(m) = &l.kv2_mount {
        let m = m.trim_matches('/');
        p.push_str(&format!(
            "path \"{m}/data/strongroom/{tenant}/*\" {{\n  capabilities = [\"create\", \"read\", \"update\", \"delete\"]\n}}\n\
             path \"{m}/metadata/strongroom/{tenant}/*\" {{\n  capabilities = [\"read\", \"list\", \"delete\"]\n}}\n"
        ));
    }
    if let Some(m) = &l.kv1_mount {
        let m = m.trim_matches('/');
        p.push_str(&format!(
            "path \"{m}/strongroom/{tenant}/*\" {{\n  capabilities = [\"create\", \"read\", \"update\", \"delete\"]\n}}\n"
        ));
    }
    p
}

/// The platform's deletion credential: may check tenants' transit keys exist and delete any
/// tenant's KV entries (crypto-shred without the tenant's token). Never decrypts.
pub const ADMIN_POLICY: &str = "strongroom-volume-admin";

pub fn admin_policy(l: &TenantLayout) -> String {
    let t = l.transit_mount.trim_matches('/');
    let mut p = format!("path \"{t}/keys/*\" {{\n  capabilities = [\"read\"]\n}}\n");
    if let Some(m) = &l.kv2_mount {
        let m = m.trim_matches('/');
        p.push_str(&format!(
            "path \"{m}/metadata/strongroom/*\" {{\n  capabilities = [\"read\", \"delete\"]\n}}\n"
        ));
    }
    if let Some(m) = &l.kv1_mount {
        let m = m.trim_matches('/');
        p.push_str(&format!(
            "path \"{m}/strongroom/*\" {{\n  capabilities = [\"read\", \"delete\"]\n}}\n"
        ));
    }
    p
}

fn mounted(admin: &Client, path: &str) -> Result<bool> {
    let mounts = admin
        .mounts_list()
        .map_err(|e| classify(admin, Call::Other, "list mounts", e))?;
    Ok(mounts.contains_key(&format!("{}/", path.trim_matches('/'))))
}

fn ensure_mount(admin: &Client, path: &str, kind: &str, version: Option<&str>) -> Result<()> {
    if mounted(admin, path)? {
        return Ok(());
    }
    let mut input = MountInput::of_type(kind);
    if let Some(v) = version {
        let mut o = serde_json::Map::new();
        o.insert("version".into(), serde_json::Value::String(v.into()));
        input.options = Some(o);
    }
    match admin.mount_enable(path, &input) {
        Ok(()) => Ok(()),
        // Enabled by someone else since the listing (the 400 of an existing mount): fine.
        Err(VErr::BadRequest(_)) if mounted(admin, path)? => Ok(()),
        Err(e) => Err(classify(
            admin,
            Call::Other,
            &format!("mount {kind} at {path}"),
            e,
        )),
    }
}

/// Create (idempotently) the mounts, the tenant's derived transit key and its policy.
pub fn setup_tenant(admin: &Client, tenant: &str, l: &TenantLayout) -> Result<String> {
    ensure_mount(admin, &l.transit_mount, "transit", None)?;
    if let Some(m) = &l.kv1_mount {
        ensure_mount(admin, m, "kv", Some("1"))?;
    }
    if let Some(m) = &l.kv2_mount {
        ensure_mount(admin, m, "kv", Some("2"))?;
    }
    admin
        .transit_create_key(
            &l.transit_mount,
            &transit_key(tenant),
            &TransitKeyOptions::derived(),
        )
        .map_err(|e| classify(admin, Call::Other, "create the tenant's transit key", e))?;
    let name = policy_name(tenant);
    admin
        .policy_write(&name, &tenant_policy(tenant, l))
        .map_err(|e| classify(admin, Call::Other, "write the tenant policy", e))?;
    admin
        .policy_write(ADMIN_POLICY, &admin_policy(l))
        .map_err(|e| classify(admin, Call::Other, "write the admin policy", e))?;
    Ok(name)
}

/// A token with `policies` (and `ttl`, e.g. "1h"; empty = default).
pub fn create_token(admin: &Client, policies: &[&str], ttl: &str) -> Result<SecretString> {
    let mut req = TokenCreateRequest::with_policies(policies);
    if !ttl.is_empty() {
        req.ttl = ttl.into();
    }
    let s = admin
        .token_create(&req, None)
        .map_err(|e| classify(admin, Call::Other, "create a token", e))?;
    let auth = s
        .auth
        .ok_or_else(|| Error::Internal("token create answered no auth".into()))?;
    Ok(auth.client_token)
}

/// Rotate the tenant's transit key (admin), so that a KEK rotation (rewrap) moves volumes to
/// the new version.
pub fn rotate_tenant_key(admin: &Client, l: &TenantLayout, tenant: &str) -> Result<()> {
    admin
        .transit_rotate_key(&l.transit_mount, &transit_key(tenant))
        .map_err(|e| classify(admin, Call::Other, "rotate the tenant's transit key", e))
}
