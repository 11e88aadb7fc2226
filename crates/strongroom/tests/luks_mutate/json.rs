//! Semantic mutations of LUKS2 JSON metadata: one field of a keyslot, digest, segment, token or
//! the config set to a value from a pool of legal, borderline and wrong ones (or removed, or
//! given another JSON type), and structural edits (ids renamed, entries copied or removed,
//! tokens/segments/keyslots added, requirements, overlapping areas).
//!
//! Values that serde_json cannot hold (`1e400`, `NaN`, 30-digit integers, `012`, `TRUE`, strings
//! with `\u0000`) are placeholders in the tree, replaced by their raw text when serialized.

use super::rng::Rng;
use serde_json::{json, Map, Value};

/// Raw JSON texts for integer fields.
const INTS: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "4",
    "31",
    "32",
    "512",
    "1000",
    "4096",
    "65536",
    "4294967295",
    "4294967296",
    "-2147483649",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012345678901234567890",
    "-123456789012345678901234567890",
    "1.0",
    "1e3",
    "2.5",
    "-0",
    "00",
    "012",
    "1e400",
    "NaN",
    "Infinity",
    "-Infinity",
    "true",
    "TRUE",
    "null",
    "\"4\"",
    "\"\"",
    "[]",
    "{}",
];

/// Contents (already escaped) of strings holding a decimal u64.
const U64S: &[&str] = &[
    "0",
    "512",
    "513",
    "4096",
    "32768",
    "65536",
    "1048576",
    "16777216",
    "-512",
    "+512",
    " 512",
    "512 ",
    "0x200",
    "1e3",
    "00512",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "",
    "dynamic",
    "abc",
    "512\\u0000x",
];

const HASHES: &[&str] = &[
    "sha256",
    "sha1",
    "sha512",
    "sha384",
    "sha224",
    "SHA256",
    "sha-256",
    "sha3-256",
    "md5",
    "ripemd160",
    "blake2b-512",
    "whirlpool",
    "nohash",
    "",
    "sha256\\u0000x",
    "\\u0000",
];
const KDF_TYPES: &[&str] = &[
    "pbkdf2", "argon2i", "argon2id", "argon2", "PBKDF2", "Argon2id", "scrypt", "",
];
const KS_TYPES: &[&str] = &["luks2", "reencrypt", "luks1", "", "LUKS2", "x-unknown"];
const AF_TYPES: &[&str] = &["luks1", "luks2", "", "LUKS1"];
const AREA_TYPES: &[&str] = &[
    "raw",
    "none",
    "checksum",
    "journal",
    "datashift",
    "datashift-checksum",
    "datashift-journal",
    "",
    "RAW",
];
const CIPHERS: &[&str] = &[
    "aes-xts-plain64",
    "aes-cbc-essiv:sha256",
    "cipher_null-ecb",
    "serpent-xts-plain64",
    "capi:xts(aes)-plain64",
    "",
    "x",
];
const SEG_TYPES: &[&str] = &["crypt", "linear", "", "CRYPT", "x-unknown"];
const TOKEN_TYPES: &[&str] = &[
    "luks2-keyring",
    "systemd-tpm2",
    "x-test",
    "",
    "luks2-",
    "\\u0000",
];
const SALTS: &[&str] = &["", "AAAA", "!!!!", "c2FsdA==", "YQ", "\\u0000"];
const MODES: &[&str] = &["reencrypt", "encrypt", "decrypt", "", "x"];
const DIRECTIONS: &[&str] = &["forward", "backward", "", "x"];
const FLAG_WORDS: &[&str] = &[
    "allow-discards",
    "backup-final",
    "backup-previous",
    "backup-moved-segment",
    "backup-",
    "in-reencryption",
    "",
    "x",
];
const REQUIREMENTS: &[&str] = &[
    "online-reencrypt-v2",
    "online-reencrypt-v3",
    "online-reencrypt",
    "online-reencrypt-v",
    "online-reencrypt-v22",
    "online-reencrypt-vx",
    "online-reencrypt-v2 ",
    "offline-reencrypt",
    "x-unknown",
    "",
];
/// Ids for renamed or added entries.
const IDS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "5",
    "7",
    "30",
    "31",
    "32",
    "33",
    "64",
    "100",
    "007",
    "00",
    "",
    "a",
    "-1",
    "1.0",
    " 1",
    "2147483648",
    "4294967296",
    "4294967297",
    "99999999999999999999",
];
/// Wrong JSON types.
const ODD: &[&str] = &["null", "true", "0", "\"x\"", "[]", "{}", "1.5", "[\"0\"]"];

/// What a field holds, hence which pool its mutated values come from.
#[derive(Clone, Copy)]
enum Kind<'a> {
    Int(&'a [&'a str]),
    U64(&'a [&'a str]),
    Str(&'a [&'a str]),
}

/// Geometry of the base header, for values near the real boundaries.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub hdr_size: u64,
    pub keyslots_size: u64,
    pub data_offset: u64,
}

pub struct Ctx<'r> {
    pub rng: &'r mut Rng,
    pub geo: Geometry,
    raws: Vec<String>,
    pub desc: Vec<String>,
}

fn section<'a>(meta: &'a mut Value, name: &str) -> Option<&'a mut Map<String, Value>> {
    meta.get_mut(name)?.as_object_mut()
}

fn ids_of(meta: &Value, name: &str) -> Vec<String> {
    meta.get(name)
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

impl<'r> Ctx<'r> {
    pub fn new(rng: &'r mut Rng, geo: Geometry) -> Self {
        Ctx {
            rng,
            geo,
            raws: Vec::new(),
            desc: Vec::new(),
        }
    }

    /// A placeholder for the raw JSON text `text`.
    fn raw(&mut self, text: &str) -> Value {
        let v = Value::String(format!("\u{1}R{}\u{1}", self.raws.len()));
        self.raws.push(text.to_string());
        v
    }

    fn note(&mut self, s: String) {
        self.desc.push(s);
    }

    /// JSON text of `v` with the placeholders replaced.
    pub fn serialize(&self, v: &Value, pretty: bool) -> Vec<u8> {
        let mut s = if pretty {
            serde_json::to_string_pretty(v)
        } else {
            serde_json::to_string(v)
        }
        .expect("serialize");
        for (i, r) in self.raws.iter().enumerate().rev() {
            s = s.replace(&format!("\"\\u0001R{i}\\u0001\""), r);
        }
        s.into_bytes()
    }

    fn value_of(&mut self, kind: Kind<'_>) -> (String, Value) {
        let text = match kind {
            Kind::Int(extra) => {
                if !extra.is_empty() && self.rng.percent(40) {
                    self.rng.pick(extra).to_string()
                } else {
                    self.rng.pick(INTS).to_string()
                }
            }
            Kind::U64(extra) => {
                let s = if !extra.is_empty() && self.rng.percent(40) {
                    self.rng.pick(extra).to_string()
                } else {
                    self.rng.pick(U64S).to_string()
                };
                if self.rng.percent(5) {
                    // A JSON number instead of a string.
                    s.parse::<u64>().map(|n| n.to_string()).unwrap_or(s)
                } else {
                    format!("\"{s}\"")
                }
            }
            Kind::Str(pool) => format!("\"{}\"", self.rng.pick(pool)),
        };
        let v = self.raw(&text);
        (text, v)
    }

    /// Set, remove or retype `obj[key]`.
    fn poke(&mut self, obj: &mut Map<String, Value>, at: &str, key: &str, kind: Kind<'_>) {
        let r = self.rng.below(100);
        if r < 12 {
            obj.shift_remove(key);
            self.note(format!("{at}.{key} removed"));
        } else if r < 20 {
            let t = self.rng.pick(ODD).to_string();
            let v = self.raw(&t);
            obj.insert(key.to_string(), v);
            self.note(format!("{at}.{key}={t} (type)"));
        } else {
            let (t, v) = self.value_of(kind);
            obj.insert(key.to_string(), v);
            self.note(format!("{at}.{key}={t}"));
        }
    }

    /// An array of ids for a `keyslots`/`segments` reference field.
    fn id_array(&mut self, meta: &Value, target: &str) -> (String, Value) {
        let ids = ids_of(meta, target);
        let some = |c: &mut Self| -> String {
            if ids.is_empty() || c.rng.percent(25) {
                c.rng.pick(IDS).to_string()
            } else {
                c.rng.pick(&ids).clone()
            }
        };
        let text = match self.rng.below(8) {
            0 => "[]".to_string(),
            1 => format!("[{}]", serde_json::to_string(&some(self)).unwrap()),
            2 => {
                let a = some(self);
                let b = some(self);
                serde_json::to_string(&[a, b]).unwrap()
            }
            3 => "[0]".to_string(),
            4 => "\"0\"".to_string(),
            5 => serde_json::to_string(&ids).unwrap(),
            6 => "[\"\"]".to_string(),
            _ => "[\"99\"]".to_string(),
        };
        let v = self.raw(&text);
        (text, v)
    }

    fn pick_entry(
        &mut self,
        meta: &Value,
        sec: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<String> {
        let ids: Vec<String> = meta
            .get(sec)?
            .as_object()?
            .iter()
            .filter(|(_, v)| pred(v))
            .map(|(k, _)| k.clone())
            .collect();
        if ids.is_empty() {
            None
        } else {
            Some(self.rng.pick(&ids).clone())
        }
    }

    /// Apply one random mutation to `meta`.
    pub fn mutate(&mut self, meta: &mut Value) {
        let ops: &[fn(&mut Self, &mut Value) -> bool] = &[
            Self::kdf_field,
            Self::kdf_field,
            Self::kdf_extra,
            Self::keyslot_field,
            Self::keyslot_field,
            Self::area_geometry,
            Self::digest_field,
            Self::segment_field,
            Self::segment_field,
            Self::segment_add,
            Self::token_add,
            Self::token_add,
            Self::token_field,
            Self::config_field,
            Self::requirements,
            Self::requirements,
            Self::reencrypt_keyslot,
            Self::reencrypt_field,
            Self::rename_id,
            Self::remove_entry,
            Self::copy_entry,
            Self::top_level,
        ];
        for _ in 0..4 {
            let op = *self.rng.pick(ops);
            if op(self, meta) {
                return;
            }
        }
        self.top_level(meta);
    }

    fn kdf_field(&mut self, meta: &mut Value) -> bool {
        let Some(id) = self.pick_entry(meta, "keyslots", |k| k.get("kdf").is_some()) else {
            return false;
        };
        let Some(kdf) = meta["keyslots"][&id]["kdf"].as_object_mut() else {
            return false;
        };
        let fields: &[(&str, Kind)] = &[
            ("type", Kind::Str(KDF_TYPES)),
            ("hash", Kind::Str(HASHES)),
            ("iterations", Kind::Int(&["1000", "0", "1"])),
            ("salt", Kind::Str(SALTS)),
            ("time", Kind::Int(&["4", "0"])),
            ("memory", Kind::Int(&["32", "31", "4194304", "4194305"])),
            ("cpus", Kind::Int(&["1", "4", "16", "17", "0"])),
        ];
        let (key, kind) = *self.rng.pick(fields);
        let at = format!("keyslots.{id}.kdf");
        self.poke(kdf, &at, key, kind);
        true
    }

    /// Unknown or leftover fields in a KDF object (cryptsetup drops them on load).
    fn kdf_extra(&mut self, meta: &mut Value) -> bool {
        let Some(id) = self.pick_entry(meta, "keyslots", |k| k.get("kdf").is_some()) else {
            return false;
        };
        let names = [
            "time",
            "memory",
            "cpus",
            "hash",
            "iterations",
            "x-extra",
            "",
            "type2",
        ];
        let name = self.rng.pick(&names).to_string();
        let (t, v) = self.value_of(Kind::Int(&["1"]));
        if let Some(kdf) = meta["keyslots"][&id]["kdf"].as_object_mut() {
            kdf.insert(name.clone(), v);
        }
        self.note(format!("keyslots.{id}.kdf.{name}={t} (extra)"));
        true
    }

    fn keyslot_field(&mut self, meta: &mut Value) -> bool {
        let Some(id) = self.pick_entry(meta, "keyslots", |_| true) else {
            return false;
        };
        let Some(ks) = meta["keyslots"][&id].as_object_mut() else {
            return false;
        };
        let at = format!("keyslots.{id}");
        let fields: &[(&str, &str, Kind)] = &[
            ("", "type", Kind::Str(KS_TYPES)),
            ("", "key_size", Kind::Int(&["64", "32", "1"])),
            ("", "priority", Kind::Int(&["0", "1", "2", "3"])),
            ("af", "type", Kind::Str(AF_TYPES)),
            ("af", "hash", Kind::Str(HASHES)),
            ("af", "stripes", Kind::Int(&["4000", "1", "0"])),
            ("area", "type", Kind::Str(AREA_TYPES)),
            ("area", "offset", Kind::U64(&[])),
            ("area", "size", Kind::U64(&[])),
            ("area", "encryption", Kind::Str(CIPHERS)),
            ("area", "key_size", Kind::Int(&["64", "32"])),
            ("", "af", Kind::Str(&[""])),
            ("", "area", Kind::Str(&[""])),
            ("", "kdf", Kind::Str(&[""])),
            ("", "x-extra", Kind::Int(&[])),
        ];
        let (sub, key, kind) = *self.rng.pick(fields);
        if sub.is_empty() {
            self.poke(ks, &at, key, kind);
        } else if let Some(o) = ks.get_mut(sub).and_then(Value::as_object_mut) {
            self.poke(o, &format!("{at}.{sub}"), key, kind);
        } else {
            return false;
        }
        true
    }

    /// Keyslot areas moved against the metadata, the keyslots area end and each other.
    fn area_geometry(&mut self, meta: &mut Value) -> bool {
        let Some(id) = self.pick_entry(meta, "keyslots", |k| k.get("area").is_some()) else {
            return false;
        };
        let others: Vec<(u64, u64)> = meta["keyslots"]
            .as_object()
            .map(|ks| {
                ks.iter()
                    .filter(|(k, _)| **k != id)
                    .filter_map(|(_, v)| {
                        let a = &v["area"];
                        Some((
                            a["offset"].as_str()?.parse().ok()?,
                            a["size"].as_str()?.parse().ok()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let g = self.geo;
        let end = 2 * g.hdr_size + g.keyslots_size;
        let cur_size: u64 = meta["keyslots"][&id]["area"]["size"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(258048);
        let (what, off, size) = match self.rng.below(9) {
            0 if !others.is_empty() => {
                let o = *self.rng.pick(&others);
                ("overlap start", o.0, cur_size)
            }
            1 if !others.is_empty() => {
                let o = *self.rng.pick(&others);
                ("overlap inside", o.0 + o.1 - 4096, cur_size)
            }
            2 => ("in json area", g.hdr_size, cur_size),
            3 => ("just after metadata", 2 * g.hdr_size, cur_size),
            4 => (
                "ends at keyslots end",
                end.saturating_sub(cur_size),
                cur_size,
            ),
            5 => (
                "past keyslots end",
                end.saturating_sub(cur_size) + 4096,
                cur_size,
            ),
            6 => ("zero size", 2 * g.hdr_size, 0),
            7 => ("overflow", u64::MAX - 4095, 8192),
            _ => ("unaligned", 2 * g.hdr_size + 512, cur_size),
        };
        if let Some(a) = meta["keyslots"][&id]["area"].as_object_mut() {
            a.insert("offset".into(), Value::String(off.to_string()));
            a.insert("size".into(), Value::String(size.to_string()));
        }
        self.note(format!("keyslots.{id}.area {what} ({off}+{size})"));
        true
    }

    fn digest_field(&mut self, meta: &mut Value) -> bool {
        let Some(id) = self.pick_entry(meta, "digests", |_| true) else {
            return false;
        };
        let at = format!("digests.{id}");
        let which = self.rng.below(8);
        if which < 2 {
            let target = if which == 0 { "keyslots" } else { "segments" };
            let (t, v) = self.id_array(meta, target);
            if let Some(d) = meta["digests"][&id].as_object_mut() {
                d.insert(target.into(), v);
            }
            self.note(format!("{at}.{target}={t}"));
            return true;
        }
        let fields: &[(&str, Kind)] = &[
            ("type", Kind::Str(&["pbkdf2", "", "argon2id", "x"])),
            ("hash", Kind::Str(HASHES)),
            ("iterations", Kind::Int(&["1000", "0"])),
            ("salt", Kind::Str(SALTS)),
            ("digest", Kind::Str(SALTS)),
            ("keyslots", Kind::Str(&[""])),
        ];
        let (key, kind) = *self.rng.pick(fields);
        let Some(d) = meta["digests"][&id].as_object_mut() else {
            return false;
        };
        self.poke(d, &at, key, kind);
        true
    }

    fn segment_field(&mut self, meta: &mut Value) -> bool {
        let Some(id) = self.pick_entry(meta, "segments", |_| true) else {
            return false;
        };
        let at = format!("segments.{id}");
        let g = self.geo;
        let offs_owned = [
            g.data_offset.to_string(),
            (2 * g.hdr_size + g.keyslots_size).to_string(),
            (2 * g.hdr_size + g.keyslots_size - 4096).to_string(),
            (g.data_offset + 512).to_string(),
        ];
        let offs: Vec<&str> = offs_owned.iter().map(String::as_str).collect();
        let fields: &[(&str, Kind)] = &[
            ("type", Kind::Str(SEG_TYPES)),
            ("offset", Kind::U64(&offs)),
            ("size", Kind::U64(&["dynamic", "4096", "1048576", "1536"])),
            ("iv_tweak", Kind::U64(&["0", "8", "1"])),
            ("encryption", Kind::Str(CIPHERS)),
            (
                "sector_size",
                Kind::Int(&[
                    "512", "1024", "2048", "4096", "8192", "256", "4097", "65536",
                ]),
            ),
            ("flags", Kind::Str(&[""])),
            ("integrity", Kind::Str(&[""])),
        ];
        let (key, kind) = *self.rng.pick(fields);
        if key == "flags" || key == "integrity" {
            let text = if key == "flags" {
                match self.rng.below(4) {
                    0 => "[]".to_string(),
                    1 => "[1]".to_string(),
                    2 => "\"backup-final\"".to_string(),
                    _ => format!("[\"{}\"]", self.rng.pick(FLAG_WORDS)),
                }
            } else {
                match self.rng.below(4) {
                    0 => r#"{"type":"hmac(sha256)","journal_encryption":"none","journal_integrity":"none"}"#.to_string(),
                    1 => r#"{"type":"hmac(sha256)","journal_encryption":"","journal_integrity":"none"}"#.to_string(),
                    2 => r#"{"type":"hmac(sha256)"}"#.to_string(),
                    _ => "\"x\"".to_string(),
                }
            };
            let v = self.raw(&text);
            if let Some(s) = meta["segments"][&id].as_object_mut() {
                s.insert(key.into(), v);
            }
            self.note(format!("{at}.{key}={text}"));
            return true;
        }
        let Some(s) = meta["segments"][&id].as_object_mut() else {
            return false;
        };
        self.poke(s, &at, key, kind);
        true
    }

    /// A second (or backup) segment, possibly overlapping, dynamic in the middle, or with a gap.
    fn segment_add(&mut self, meta: &mut Value) -> bool {
        let Some(first) = meta["segments"]
            .as_object()
            .and_then(|s| s.values().next().cloned())
        else {
            return false;
        };
        let off: u64 = first["offset"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut seg = first.clone();
        let id = self.rng.pick(&["1", "1", "2", "3", "0"]).to_string();
        let variant = self.rng.below(7);
        let what = match variant {
            0 => {
                if let Some(s) = meta
                    .get_mut("segments")
                    .and_then(|s| s.get_mut("0"))
                    .and_then(Value::as_object_mut)
                {
                    s.insert("size".into(), json!("1048576"));
                }
                seg["offset"] = json!((off + 1048576).to_string());
                "after a sized first"
            }
            1 => {
                seg["offset"] = json!((off + 1048576).to_string());
                "second dynamic after dynamic"
            }
            2 => {
                seg["flags"] = json!(["backup-previous"]);
                "backup-previous"
            }
            3 => {
                seg["flags"] = json!(["backup-final"]);
                "backup-final"
            }
            4 => {
                seg["flags"] = json!(["in-reencryption"]);
                seg["offset"] = json!((off + 1048576).to_string());
                "in-reencryption"
            }
            5 => {
                seg["type"] = json!("linear");
                seg["offset"] = json!((off + 1048576).to_string());
                "linear"
            }
            _ => {
                seg["offset"] = json!((off + 512).to_string());
                seg["size"] = json!("512");
                "overlapping"
            }
        };
        let also_digest = self.rng.percent(60);
        if let Some(s) = section(meta, "segments") {
            s.insert(id.clone(), seg);
        }
        if also_digest {
            if let Some(d) = meta
                .get_mut("digests")
                .and_then(Value::as_object_mut)
                .and_then(|d| d.values_mut().next())
                .and_then(|d| d["segments"].as_array_mut())
            {
                d.push(json!(id.clone()));
            }
        }
        self.note(format!(
            "segments.{id} added ({what}{})",
            if also_digest { ", in digest" } else { "" }
        ));
        true
    }

    fn token_add(&mut self, meta: &mut Value) -> bool {
        let id = self.rng.pick(IDS).to_string();
        let ty = self.rng.pick(TOKEN_TYPES).to_string();
        let (kt, keyslots) = self.id_array(meta, "keyslots");
        let mut tok = Map::new();
        let ty_v = self.raw(&format!("\"{ty}\""));
        if self.rng.percent(92) {
            tok.insert("type".into(), ty_v);
        }
        if self.rng.percent(92) {
            tok.insert("keyslots".into(), keyslots);
        }
        let extra = match self.rng.below(6) {
            0 => Some(("key_description", "\"cs:test\"".to_string())),
            1 => Some(("f", "1.5e300".to_string())),
            2 => {
                let d = 26 + self.rng.below(8);
                Some(("deep", format!("{}1{}", "[".repeat(d), "]".repeat(d))))
            }
            3 => Some(("x", "{\"a\":[1,2,{\"b\":null}]}".to_string())),
            _ => None,
        };
        let mut extra_note = String::new();
        if let Some((k, t)) = extra {
            extra_note = format!(" +{k}");
            let v = self.raw(&t);
            tok.insert(k.into(), v);
        }
        if let Some(t) = section(meta, "tokens") {
            t.insert(id.clone(), Value::Object(tok));
        }
        self.note(format!(
            "tokens.{id:?} added type={ty:?} keyslots={kt}{extra_note}"
        ));
        true
    }

    fn token_field(&mut self, meta: &mut Value) -> bool {
        let Some(id) = self.pick_entry(meta, "tokens", |_| true) else {
            return false;
        };
        let at = format!("tokens.{id}");
        if self.rng.percent(40) {
            let (t, v) = self.id_array(meta, "keyslots");
            if let Some(o) = meta["tokens"][&id].as_object_mut() {
                o.insert("keyslots".into(), v);
            }
            self.note(format!("{at}.keyslots={t}"));
            return true;
        }
        let fields: &[(&str, Kind)] = &[
            ("type", Kind::Str(TOKEN_TYPES)),
            ("key_description", Kind::Str(&["", "x"])),
            ("keyslots", Kind::Str(&[""])),
        ];
        let (key, kind) = *self.rng.pick(fields);
        let Some(o) = meta["tokens"][&id].as_object_mut() else {
            return false;
        };
        self.poke(o, &at, key, kind);
        true
    }

    fn config_field(&mut self, meta: &mut Value) -> bool {
        let g = self.geo;
        let js_owned = [
            (g.hdr_size - 4096).to_string(),
            (2 * g.hdr_size - 4096).to_string(),
            (g.hdr_size / 2 - 4096).to_string(),
            (g.hdr_size - 4095).to_string(),
        ];
        let js: Vec<&str> = js_owned.iter().map(String::as_str).collect();
        let room = g.data_offset.saturating_sub(2 * g.hdr_size);
        let ks_owned = [
            room.to_string(),
            (room + 4096).to_string(),
            room.saturating_sub(4096).to_string(),
            room.saturating_sub(2048).to_string(),
            "134217728".to_string(),
            "134221824".to_string(),
            "16744448".to_string(),
        ];
        let ks: Vec<&str> = ks_owned.iter().map(String::as_str).collect();
        let fields: &[(&str, Kind)] = &[
            ("json_size", Kind::U64(&js)),
            ("keyslots_size", Kind::U64(&ks)),
            ("keyslots_size", Kind::U64(&ks)),
            ("flags", Kind::Str(&[""])),
            ("x-extra", Kind::Int(&[])),
        ];
        let (key, kind) = *self.rng.pick(fields);
        if key == "flags" {
            let text = match self.rng.below(4) {
                0 => "[]".to_string(),
                1 => "[1]".to_string(),
                2 => "\"allow-discards\"".to_string(),
                _ => format!("[\"{}\",\"no-read-workqueue\"]", self.rng.pick(FLAG_WORDS)),
            };
            let v = self.raw(&text);
            if let Some(c) = section(meta, "config") {
                c.insert("flags".into(), v);
            }
            self.note(format!("config.flags={text}"));
            return true;
        }
        let Some(c) = section(meta, "config") else {
            return false;
        };
        self.poke(c, "config", key, kind);
        true
    }

    fn requirements(&mut self, meta: &mut Value) -> bool {
        let text = match self.rng.below(10) {
            0 => "[]".to_string(),
            1 => "\"online-reencrypt-v2\"".to_string(),
            2 => "[1]".to_string(),
            3 => {
                let a = self.rng.pick(REQUIREMENTS);
                let b = self.rng.pick(REQUIREMENTS);
                format!("[\"{a}\",\"{b}\"]")
            }
            _ => format!("[\"{}\"]", self.rng.pick(REQUIREMENTS)),
        };
        let shape = self.rng.below(10);
        let v = self.raw(&text);
        let Some(c) = section(meta, "config") else {
            return false;
        };
        let note = match shape {
            0 => {
                c.insert("requirements".into(), v);
                format!("config.requirements={text}")
            }
            1 => {
                c.insert("requirements".into(), json!({}));
                "config.requirements={}".to_string()
            }
            2 => {
                c.insert(
                    "requirements".into(),
                    json!({"mandatory": [], "optional": ["x"]}),
                );
                "config.requirements optional only".to_string()
            }
            _ => {
                c.insert("requirements".into(), json!({ "mandatory": v }));
                format!("config.requirements.mandatory={text}")
            }
        };
        self.note(note);
        true
    }

    /// Add a reencrypt keyslot (with or without its requirement), in a free area.
    fn reencrypt_keyslot(&mut self, meta: &mut Value) -> bool {
        let g = self.geo;
        let area_type = *self
            .rng
            .pick(&["none", "checksum", "datashift", "journal", "x"]);
        let mut area = json!({
            "type": area_type,
            "offset": (2 * g.hdr_size + g.keyslots_size - 8192).to_string(),
            "size": "8192",
        });
        if area_type == "checksum" {
            area["hash"] = json!("sha256");
            area["sector_size"] = json!(4096);
        }
        if area_type == "datashift" {
            area["shift_size"] = json!("1048576");
        }
        let id = self.rng.pick(&["9", "31", "32", "1"]).to_string();
        let ks = json!({"type":"reencrypt","key_size":1,"mode":"reencrypt","direction":"forward","area":area});
        if let Some(k) = section(meta, "keyslots") {
            k.insert(id.clone(), ks);
        }
        let with_req = self.rng.percent(50);
        if with_req {
            if let Some(c) = section(meta, "config") {
                c.insert(
                    "requirements".into(),
                    json!({"mandatory": ["online-reencrypt-v2"]}),
                );
            }
        }
        let with_digest = self.rng.percent(50);
        if with_digest {
            if let Some(d) = section(meta, "digests") {
                d.insert(
                    "7".into(),
                    json!({"type":"pbkdf2","keyslots":[id.clone()],"segments":[],"hash":"sha256","iterations":1000,"salt":"c2FsdA==","digest":"c2FsdA=="}),
                );
            }
        }
        self.note(format!(
            "keyslots.{id} reencrypt area={area_type} requirement={with_req} digest={with_digest}"
        ));
        true
    }

    fn reencrypt_field(&mut self, meta: &mut Value) -> bool {
        let Some(id) = self.pick_entry(meta, "keyslots", |k| k["type"] == "reencrypt") else {
            return false;
        };
        let at = format!("keyslots.{id}");
        let fields: &[(&str, &str, Kind)] = &[
            ("", "mode", Kind::Str(MODES)),
            ("", "direction", Kind::Str(DIRECTIONS)),
            ("", "key_size", Kind::Int(&["1", "0", "2"])),
            ("area", "type", Kind::Str(AREA_TYPES)),
            ("area", "hash", Kind::Str(HASHES)),
            (
                "area",
                "sector_size",
                Kind::Int(&["512", "4096", "1024", "1536", "256"]),
            ),
            ("area", "shift_size", Kind::U64(&["1048576", "0", "1000"])),
        ];
        let (sub, key, kind) = *self.rng.pick(fields);
        let Some(ks) = meta["keyslots"][&id].as_object_mut() else {
            return false;
        };
        if sub.is_empty() {
            self.poke(ks, &at, key, kind);
        } else if let Some(o) = ks.get_mut(sub).and_then(Value::as_object_mut) {
            self.poke(o, &format!("{at}.{sub}"), key, kind);
        }
        true
    }

    fn rename_id(&mut self, meta: &mut Value) -> bool {
        let sec = *self
            .rng
            .pick(&["keyslots", "tokens", "segments", "digests"]);
        let Some(old) = self.pick_entry(meta, sec, |_| true) else {
            return false;
        };
        let new = self.rng.pick(IDS).to_string();
        let follow = self.rng.percent(60);
        let Some(s) = section(meta, sec) else {
            return false;
        };
        let Some(v) = s.shift_remove(&old) else {
            return false;
        };
        s.insert(new.clone(), v);
        if follow && (sec == "keyslots" || sec == "segments") {
            for refs in ["digests", "tokens"] {
                if let Some(o) = section(meta, refs) {
                    for e in o.values_mut() {
                        if let Some(a) = e.get_mut(sec).and_then(Value::as_array_mut) {
                            for x in a.iter_mut() {
                                if x.as_str() == Some(&old) {
                                    *x = json!(new.clone());
                                }
                            }
                        }
                    }
                }
            }
        }
        self.note(format!(
            "{sec}.{old} renamed {new:?}{}",
            if follow { " (refs follow)" } else { "" }
        ));
        true
    }

    fn remove_entry(&mut self, meta: &mut Value) -> bool {
        let sec = *self
            .rng
            .pick(&["keyslots", "tokens", "segments", "digests"]);
        let Some(id) = self.pick_entry(meta, sec, |_| true) else {
            return false;
        };
        let refs_too = self.rng.percent(50);
        if let Some(s) = section(meta, sec) {
            s.shift_remove(&id);
        }
        if refs_too {
            for refs in ["digests", "tokens"] {
                if let Some(o) = section(meta, refs) {
                    for e in o.values_mut() {
                        if let Some(a) = e.get_mut(sec).and_then(Value::as_array_mut) {
                            a.retain(|x| x.as_str() != Some(&id));
                        }
                    }
                }
            }
        }
        self.note(format!(
            "{sec}.{id} removed{}",
            if refs_too { " with its references" } else { "" }
        ));
        true
    }

    /// Copy an entry under another id (keyslots get a free area half the time).
    fn copy_entry(&mut self, meta: &mut Value) -> bool {
        let sec = *self
            .rng
            .pick(&["keyslots", "keyslots", "tokens", "digests", "segments"]);
        let Some(id) = self.pick_entry(meta, sec, |_| true) else {
            return false;
        };
        let new = self.rng.pick(IDS).to_string();
        let mut v = meta[sec][&id].clone();
        let g = self.geo;
        let moved = sec == "keyslots" && v["area"].is_object() && self.rng.percent(50);
        if moved {
            let size = 16384u64;
            v["area"]["offset"] = json!((2 * g.hdr_size + g.keyslots_size - size).to_string());
            v["area"]["size"] = json!(size.to_string());
        }
        let in_digest = sec == "keyslots" && self.rng.percent(60);
        if in_digest {
            if let Some(a) = meta
                .get_mut("digests")
                .and_then(Value::as_object_mut)
                .and_then(|d| d.values_mut().next())
                .and_then(|d| d["keyslots"].as_array_mut())
            {
                a.push(json!(new.clone()));
            }
        }
        if let Some(s) = section(meta, sec) {
            s.insert(new.clone(), v);
        }
        self.note(format!(
            "{sec}.{id} copied to {new:?}{}{}",
            if moved { " (free area)" } else { "" },
            if in_digest { " (in digest)" } else { "" }
        ));
        true
    }

    fn top_level(&mut self, meta: &mut Value) -> bool {
        let name = *self.rng.pick(&[
            "keyslots", "tokens", "segments", "digests", "config", "x-extra",
        ]);
        let Some(m) = meta.as_object_mut() else {
            return false;
        };
        match self.rng.below(3) {
            0 if name != "x-extra" => {
                m.shift_remove(name);
                self.note(format!("{name} removed"));
            }
            1 => {
                let t = self.rng.pick(ODD).to_string();
                let v = self.raw(&t);
                m.insert(name.into(), v);
                self.note(format!("{name}={t}"));
            }
            _ => {
                m.insert(name.into(), json!({}));
                self.note(format!("{name}={{}}"));
            }
        }
        true
    }
}
