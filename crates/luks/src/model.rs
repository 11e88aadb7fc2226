//! Typed views of validated metadata (keyslots, digests, segments) and their JSON encoding in
//! cryptsetup's field order.

use crate::error::{Error, Result};
use crate::validate::{
    get_arr, get_int, get_obj, get_str, get_u32, get_u64_str, parse_id, parse_u64,
};
use base64::Engine;
use serde_json::{json, Map, Value};

pub(crate) fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub(crate) fn unb64(s: &str, what: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| Error::Unsupported(format!("{what}: invalid base64")))
}

/// Key derivation function of a keyslot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kdf {
    Pbkdf2 {
        hash: String,
        iterations: u32,
        salt: Vec<u8>,
    },
    Argon2 {
        id: bool,
        time: u32,
        memory: u32,
        cpus: u32,
        salt: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    pub offset: u64,
    pub size: u64,
    pub encryption: String,
    pub key_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyslot {
    pub id: u32,
    pub key_size: usize,
    /// 0 = ignore unless named, 1 = normal, 2 = prefer.
    pub priority: u8,
    pub kdf: Kdf,
    pub af_stripes: u32,
    pub af_hash: String,
    pub area: Area,
}

/// Type and priority of any keyslot (`luks2`, `reencrypt`, unknown).
pub fn keyslot_list(meta: &Map<String, Value>) -> Vec<(u32, String, u8)> {
    let mut v: Vec<(u32, String, u8)> = meta
        .get("keyslots")
        .and_then(Value::as_object)
        .map(|ks| {
            ks.iter()
                .filter_map(|(id, k)| {
                    let id = parse_id(id)?;
                    let kind = k
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    Some((id, kind, priority_of(k)))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|x| x.0);
    v
}

fn priority_of(k: &Value) -> u8 {
    match k.get("priority").and_then(Value::as_i64) {
        Some(0) => 0,
        Some(2) => 2,
        _ => 1,
    }
}

fn ks_err(id: u32) -> impl Fn(crate::error::Invalid) -> Error {
    move |e| Error::keyslot(id, e.to_string())
}

impl Keyslot {
    pub fn from_meta(meta: &Map<String, Value>, id: u32) -> Result<Keyslot> {
        let e = ks_err(id);
        let k = meta
            .get("keyslots")
            .and_then(|k| k.get(id.to_string()))
            .and_then(Value::as_object)
            .ok_or_else(|| Error::keyslot(id, "no such keyslot"))?;
        let at = format!("keyslots.{id}");
        if get_str(k, &at, "type").map_err(&e)? != "luks2" {
            return Err(Error::keyslot(id, "not a luks2 keyslot"));
        }
        let key_size = get_u32(k, &at, "key_size").map_err(&e)? as usize;
        let kdf_o = get_obj(k, &at, "kdf").map_err(&e)?;
        let ka = format!("{at}.kdf");
        let salt = unb64(
            get_str(kdf_o, &ka, "salt").map_err(&e)?,
            &format!("{ka}.salt"),
        )?;
        let kdf = match get_str(kdf_o, &ka, "type").map_err(&e)? {
            "pbkdf2" => Kdf::Pbkdf2 {
                hash: get_str(kdf_o, &ka, "hash").map_err(&e)?.to_string(),
                iterations: get_u32(kdf_o, &ka, "iterations").map_err(&e)?,
                salt,
            },
            t @ ("argon2i" | "argon2id") => Kdf::Argon2 {
                id: t == "argon2id",
                time: get_u32(kdf_o, &ka, "time").map_err(&e)?,
                memory: get_u32(kdf_o, &ka, "memory").map_err(&e)?,
                cpus: get_u32(kdf_o, &ka, "cpus").map_err(&e)?,
                salt,
            },
            other => {
                return Err(Error::keyslot(
                    id,
                    format!("unsupported kdf type {other:?}"),
                ))
            }
        };
        let af = get_obj(k, &at, "af").map_err(&e)?;
        let fa = format!("{at}.af");
        let af_stripes = get_u32(af, &fa, "stripes").map_err(&e)?;
        let af_hash = get_str(af, &fa, "hash").map_err(&e)?.to_string();
        let area_o = get_obj(k, &at, "area").map_err(&e)?;
        let aa = format!("{at}.area");
        let area = Area {
            offset: get_u64_str(area_o, &aa, "offset").map_err(&e)?,
            size: get_u64_str(area_o, &aa, "size").map_err(&e)?,
            encryption: get_str(area_o, &aa, "encryption").map_err(&e)?.to_string(),
            key_size: get_u32(area_o, &aa, "key_size").map_err(&e)? as usize,
        };
        Ok(Keyslot {
            id,
            key_size,
            priority: priority_of(&Value::Object(k.clone())),
            kdf,
            af_stripes,
            af_hash,
            area,
        })
    }

    /// JSON in cryptsetup's field order.
    pub fn to_json(&self) -> Value {
        let kdf = match &self.kdf {
            Kdf::Pbkdf2 {
                hash,
                iterations,
                salt,
            } => {
                json!({"type": "pbkdf2", "hash": hash, "iterations": iterations, "salt": b64(salt)})
            }
            Kdf::Argon2 {
                id,
                time,
                memory,
                cpus,
                salt,
            } => json!({
                "type": if *id { "argon2id" } else { "argon2i" },
                "time": time, "memory": memory, "cpus": cpus, "salt": b64(salt)
            }),
        };
        let mut v = json!({
            "type": "luks2",
            "key_size": self.key_size,
            "af": {"type": "luks1", "stripes": self.af_stripes, "hash": self.af_hash},
            "area": {
                "type": "raw",
                "offset": self.area.offset.to_string(),
                "size": self.area.size.to_string(),
                "encryption": self.area.encryption,
                "key_size": self.area.key_size,
            },
            "kdf": kdf,
        });
        if self.priority != 1 {
            if let Some(o) = v.as_object_mut() {
                o.insert("priority".into(), json!(self.priority));
            }
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestInfo {
    pub id: u32,
    pub hash: String,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub digest: Vec<u8>,
    pub keyslots: Vec<u32>,
    pub segments: Vec<u32>,
}

fn ids(a: &[Value]) -> Vec<u32> {
    a.iter()
        .filter_map(|v| v.as_str().and_then(parse_id))
        .collect()
}

impl DigestInfo {
    pub fn all(meta: &Map<String, Value>) -> Result<Vec<DigestInfo>> {
        let mut out = Vec::new();
        let Some(ds) = meta.get("digests").and_then(Value::as_object) else {
            return Ok(out);
        };
        for (id_s, d) in ds {
            let Some(id) = parse_id(id_s) else { continue };
            let Some(d) = d.as_object() else { continue };
            let at = format!("digests.{id_s}");
            let e = |x: crate::error::Invalid| Error::Unsupported(x.to_string());
            if get_str(d, &at, "type").map_err(e)? != "pbkdf2" {
                continue;
            }
            out.push(DigestInfo {
                id,
                hash: get_str(d, &at, "hash").map_err(e)?.to_string(),
                iterations: get_u32(d, &at, "iterations").map_err(e)?,
                salt: unb64(get_str(d, &at, "salt").map_err(e)?, &format!("{at}.salt"))?,
                digest: unb64(
                    get_str(d, &at, "digest").map_err(e)?,
                    &format!("{at}.digest"),
                )?,
                keyslots: ids(get_arr(d, &at, "keyslots").map_err(e)?),
                segments: ids(get_arr(d, &at, "segments").map_err(e)?),
            });
        }
        Ok(out)
    }

    pub fn for_keyslot(meta: &Map<String, Value>, slot: u32) -> Result<DigestInfo> {
        DigestInfo::all(meta)?
            .into_iter()
            .find(|d| d.keyslots.contains(&slot))
            .ok_or_else(|| Error::keyslot(slot, "no pbkdf2 digest references this keyslot"))
    }

    pub fn to_json(&self) -> Value {
        json!({
            "type": "pbkdf2",
            "keyslots": self.keyslots.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            "segments": self.segments.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            "hash": self.hash,
            "iterations": self.iterations,
            "salt": b64(&self.salt),
            "digest": b64(&self.digest),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub id: u32,
    pub kind: String,
    pub offset: u64,
    /// `None` = dynamic (to the end of the device).
    pub size: Option<u64>,
    pub iv_tweak: u64,
    pub encryption: String,
    pub sector_size: u32,
    pub flags: Vec<String>,
    pub integrity: bool,
}

impl Segment {
    pub fn from_meta(meta: &Map<String, Value>, id: u32) -> Result<Segment> {
        let s = meta
            .get("segments")
            .and_then(|s| s.get(id.to_string()))
            .and_then(Value::as_object)
            .ok_or_else(|| Error::Unsupported(format!("segment {id} does not exist")))?;
        let at = format!("segments.{id}");
        let e = |x: crate::error::Invalid| Error::Unsupported(x.to_string());
        let kind = get_str(s, &at, "type").map_err(e)?.to_string();
        let offset = get_u64_str(s, &at, "offset").map_err(e)?;
        let size = s.get("size").and_then(Value::as_str).and_then(parse_u64);
        let flags = s
            .get("flags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if kind != "crypt" {
            return Ok(Segment {
                id,
                kind,
                offset,
                size,
                iv_tweak: 0,
                encryption: String::new(),
                sector_size: 512,
                flags,
                integrity: false,
            });
        }
        let iv_tweak = get_u64_str(s, &at, "iv_tweak").map_err(e)?;
        let encryption = get_str(s, &at, "encryption").map_err(e)?.to_string();
        let ss = get_int(s, &at, "sector_size").map_err(e)?;
        let sector_size =
            u32::try_from(ss).map_err(|_| Error::Unsupported(format!("{at}.sector_size")))?;
        Ok(Segment {
            id,
            kind,
            offset,
            size,
            iv_tweak,
            encryption,
            sector_size,
            flags,
            integrity: s.contains_key("integrity"),
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "type": self.kind,
            "offset": self.offset.to_string(),
            "size": self.size.map(|s| s.to_string()).unwrap_or_else(|| "dynamic".into()),
            "iv_tweak": self.iv_tweak.to_string(),
            "encryption": self.encryption,
            "sector_size": self.sector_size,
        })
    }
}
