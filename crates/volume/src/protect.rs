//! Key protection of the per-volume keyslot secret (256 random bits).
//!
//! * Envelope (default): `transit/encrypt/<tenant key>` with context = the volume's canonical
//!   identity; the wrapped blob is kept in the volume metadata. KEK rotation = `rewrap`.
//! * KV: the secret (base64) at `<backend>/<volume id>`, field `data` (ceph-csi `vaulttokens`
//!   layout); a rotation in flight keeps the next secret in field `next`.

use crate::error::{Error, Result};
use crate::kms::{classify, Call};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use serde_json::{Map, Value};
use strongroom_vault_client::{Client, KvLocation, KvVersion};
use zeroize::Zeroizing;

pub const SECRET_LEN: usize = 32;

/// A fresh random keyslot secret.
pub fn new_secret() -> Zeroizing<Vec<u8>> {
    let mut s = Zeroizing::new(vec![0u8; SECRET_LEN]);
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

/// Transit context binding the wrapped secret to one volume of one tenant of one cluster.
/// (The KEK version is recorded beside the blob; it cannot be part of the context because a
/// rewrap keeps the context.)
pub fn context(cluster: &str, tenant: &str, volume: &str) -> Vec<u8> {
    format!("strongroom/v1\ncluster={cluster}\ntenant={tenant}\nvolume={volume}").into_bytes()
}

pub fn wrap(
    c: &Client,
    mount: &str,
    key: &str,
    secret: &[u8],
    ctx: &[u8],
) -> Result<(String, u64)> {
    let r = c
        .transit_encrypt(mount, key, secret, Some(ctx))
        .map_err(|e| classify(c, Call::Other, "wrap the keyslot secret", e))?;
    Ok((r.ciphertext, r.key_version))
}

pub fn unwrap(
    c: &Client,
    mount: &str,
    key: &str,
    blob: &str,
    ctx: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let s = c
        .transit_decrypt(mount, key, blob, Some(ctx))
        .map_err(|e| classify(c, Call::Unwrap, "unwrap the keyslot secret", e))?;
    if s.len() != SECRET_LEN {
        return Err(Error::Corrupt(
            "unwrapped secret has the wrong length".into(),
        ));
    }
    Ok(s)
}

pub fn rewrap(c: &Client, mount: &str, key: &str, blob: &str, ctx: &[u8]) -> Result<(String, u64)> {
    let r = c
        .transit_rewrap(mount, key, blob, Some(ctx))
        .map_err(|e| classify(c, Call::Unwrap, "rewrap the keyslot secret", e))?;
    Ok((r.ciphertext, r.key_version))
}

/// Mount, path and version of a KV backend path (`secret/strongroom/tenant-a`).
pub fn kv_locate(c: &Client, backend: &str) -> Result<KvLocation> {
    c.kv_locate(backend)
        .map_err(|e| classify(c, Call::Other, "locate the KV backend", e))
}

/// The KV entry of a volume: (`data`, `next`).
pub type KvEntry = (Option<Zeroizing<Vec<u8>>>, Option<Zeroizing<Vec<u8>>>);

fn decode_field(m: &Map<String, Value>, k: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
    match m.get(k).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => {
            let v = Zeroizing::new(
                B64.decode(s)
                    .map_err(|_| Error::Corrupt(format!("KV field {k} is not base64")))?,
            );
            if v.len() != SECRET_LEN {
                return Err(Error::Corrupt(format!("KV field {k} has the wrong length")));
            }
            Ok(Some(v))
        }
    }
}

pub fn kv_read(c: &Client, at: &KvLocation) -> Result<KvEntry> {
    let r = match at.version {
        KvVersion::V1 => c.kv1_read(&at.mount, &at.path),
        KvVersion::V2 => c
            .kv2_read(&at.mount, &at.path, None)
            .map(|o| o.map(|s| s.data)),
    };
    let map = match r {
        Ok(Some(m)) => m,
        Ok(None) => return Ok((None, None)),
        Err(e) if e.is_not_found() => return Ok((None, None)),
        Err(e) => {
            return Err(classify(
                c,
                Call::Other,
                "read the volume secret from KV",
                e,
            ))
        }
    };
    let inner = map.into_inner();
    let out = (decode_field(&inner, "data")?, decode_field(&inner, "next")?);
    let mut inner = Value::Object(inner);
    strongroom_vault_client::zeroize_value(&mut inner);
    Ok(out)
}

pub fn kv_write(c: &Client, at: &KvLocation, data: &[u8], next: Option<&[u8]>) -> Result<()> {
    let mut m = Map::new();
    m.insert("data".into(), Value::String(B64.encode(data)));
    if let Some(n) = next {
        m.insert("next".into(), Value::String(B64.encode(n)));
    }
    let r = match at.version {
        KvVersion::V1 => c.kv1_write(&at.mount, &at.path, &m),
        KvVersion::V2 => c.kv2_write(&at.mount, &at.path, &m, None).map(|_| ()),
    };
    let mut v = Value::Object(m);
    strongroom_vault_client::zeroize_value(&mut v);
    r.map_err(|e| classify(c, Call::Other, "store the volume secret in KV", e))
}

/// Destroy the KV entry: every version and the metadata on KV v2. Absent is fine.
pub fn kv_destroy(c: &Client, at: &KvLocation) -> Result<()> {
    let r = match at.version {
        KvVersion::V1 => c.kv1_delete(&at.mount, &at.path),
        KvVersion::V2 => c.kv2_delete_metadata(&at.mount, &at.path),
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(classify(
            c,
            Call::Other,
            "destroy the volume secret in KV",
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn context_binds_cluster_tenant_volume() {
        let c = super::context("c1", "a", "v1");
        assert_ne!(c, super::context("c2", "a", "v1"));
        assert_ne!(c, super::context("c1", "b", "v1"));
        assert_ne!(c, super::context("c1", "a", "v2"));
        assert_eq!(super::new_secret().len(), 32);
        assert_ne!(*super::new_secret(), *super::new_secret());
    }
}
