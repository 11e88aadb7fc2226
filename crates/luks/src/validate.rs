//! Every semantic rule cryptsetup (`hdr_validate_*`, `LUKS2_keyslots_validate`) applies to the
//! JSON metadata, plus the in-memory repair of leftover KDF parameters.
//!
//! Rules are applied in cryptsetup's order: requirements, tokens, digests, segments, keyslots,
//! config, keyslot areas, json_size, then the per-type keyslot checks. Errors name the field.

use crate::error::Invalid;
use crate::header::binary::{BIN_HDR_LEN, HDR_SIZES};
use serde_json::{Map, Value};

pub const KEYSLOTS_MAX: u32 = 32;
pub const TOKENS_MAX: u32 = 32;
pub const MAX_KEYSLOTS_SIZE: u64 = 128 * 1024 * 1024;

type V<T = ()> = Result<T, Invalid>;

/// A non-empty decimal string (cryptsetup `numbered()`).
pub fn numbered(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Strict u64 from a decimal string: digits only, no sign, no overflow.
pub fn parse_u64(s: &str) -> Option<u64> {
    if !numbered(s) {
        return None;
    }
    s.parse::<u64>().ok()
}

/// Object id ("0", "1", ...) as u32.
pub fn parse_id(s: &str) -> Option<u32> {
    if !numbered(s) {
        return None;
    }
    s.parse::<u32>().ok()
}

fn path(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

pub(crate) fn get_obj<'a>(
    m: &'a Map<String, Value>,
    at: &str,
    key: &str,
) -> V<&'a Map<String, Value>> {
    match m.get(key) {
        None => Err(Invalid::new(path(at, key), "missing")),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(Invalid::new(path(at, key), "must be an object")),
    }
}

pub(crate) fn get_str<'a>(m: &'a Map<String, Value>, at: &str, key: &str) -> V<&'a str> {
    match m.get(key) {
        None => Err(Invalid::new(path(at, key), "missing")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Invalid::new(path(at, key), "must be a string")),
    }
}

pub(crate) fn get_arr<'a>(m: &'a Map<String, Value>, at: &str, key: &str) -> V<&'a Vec<Value>> {
    match m.get(key) {
        None => Err(Invalid::new(path(at, key), "missing")),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(Invalid::new(path(at, key), "must be an array")),
    }
}

/// A JSON integer (not a float, not a string).
pub(crate) fn get_int(m: &Map<String, Value>, at: &str, key: &str) -> V<i128> {
    match m.get(key) {
        None => Err(Invalid::new(path(at, key), "missing")),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(u as i128)
            } else if let Some(i) = n.as_i64() {
                Ok(i as i128)
            } else {
                Err(Invalid::new(path(at, key), "must be an integer"))
            }
        }
        Some(_) => Err(Invalid::new(path(at, key), "must be an integer")),
    }
}

pub(crate) fn get_u32(m: &Map<String, Value>, at: &str, key: &str) -> V<u32> {
    let v = get_int(m, at, key)?;
    u32::try_from(v).map_err(|_| Invalid::new(path(at, key), "must be a 32-bit unsigned integer"))
}

pub(crate) fn get_u64_str(m: &Map<String, Value>, at: &str, key: &str) -> V<u64> {
    let s = get_str(m, at, key)?;
    parse_u64(s).ok_or_else(|| Invalid::new(path(at, key), format!("{s:?} is not a decimal u64")))
}

fn as_obj<'a>(v: &'a Value, at: &str) -> V<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| Invalid::new(at, "must be an object"))
}

fn string_array(a: &[Value], at: &str) -> V<Vec<String>> {
    a.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| Invalid::new(at, "array elements must be strings"))
        })
        .collect()
}

/// An array of ids that must all exist as keys of `target`.
fn id_refs(a: &[Value], at: &str, target: &Map<String, Value>, what: &str) -> V {
    for v in a {
        let s = v
            .as_str()
            .ok_or_else(|| Invalid::new(at, "array elements must be strings"))?;
        if !numbered(s) {
            return Err(Invalid::new(at, format!("{s:?} is not a {what} id")));
        }
        if !target.contains_key(s) {
            return Err(Invalid::new(at, format!("references missing {what} {s}")));
        }
    }
    Ok(())
}

/// In-memory repair of leftover KDF fields (cryptsetup `keyslot_luks2_repair`). Returns what was
/// removed, for reporting.
pub fn repair_leftovers(meta: &mut Map<String, Value>) -> Vec<String> {
    let mut done = Vec::new();
    let Some(Value::Object(keyslots)) = meta.get_mut("keyslots") else {
        return done;
    };
    for (id, ks) in keyslots.iter_mut() {
        let Some(ks) = ks.as_object_mut() else {
            continue;
        };
        if ks.get("type").and_then(Value::as_str) != Some("luks2") {
            continue;
        }
        let Some(Value::Object(kdf)) = ks.get_mut("kdf") else {
            continue;
        };
        let drop: &[&str] = match kdf.get("type").and_then(Value::as_str) {
            Some("pbkdf2") => &["time", "memory", "cpus"],
            Some("argon2i") | Some("argon2id") => &["iterations", "hash"],
            _ => &[],
        };
        for f in drop {
            if kdf.remove(*f).is_some() {
                done.push(format!(
                    "keyslots.{id}.kdf.{f} (leftover parameter removed)"
                ));
            }
        }
    }
    done
}

/// Validate the whole metadata object of a copy whose binary `hdr_size` is given.
pub fn validate(meta: &Map<String, Value>, hdr_size: u64) -> V {
    for top in ["keyslots", "tokens", "segments", "digests", "config"] {
        get_obj(meta, "", top)?;
    }
    requirements(meta)?;
    tokens(meta)?;
    digests(meta)?;
    segments(meta)?;
    keyslots(meta)?;
    config(meta)?;
    areas(meta, hdr_size)?;
    json_size(meta, hdr_size)?;
    keyslot_types(meta)?;
    Ok(())
}

/// Mandatory requirement flags (`config.requirements.mandatory`), if any.
pub fn requirements_list(meta: &Map<String, Value>) -> Vec<String> {
    meta.get("config")
        .and_then(|c| c.get("requirements"))
        .and_then(|r| r.get("mandatory"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn requirements(meta: &Map<String, Value>) -> V {
    let config = get_obj(meta, "", "config")?;
    if config.contains_key("requirements") {
        let req = get_obj(config, "config", "requirements")?;
        if req.contains_key("mandatory") {
            let m = get_arr(req, "config.requirements", "mandatory")?;
            let list = string_array(m, "config.requirements.mandatory")?;
            if list
                .iter()
                .filter(|s| s.starts_with("online-reencrypt"))
                .count()
                > 1
            {
                return Err(Invalid::new(
                    "config.requirements.mandatory",
                    "more than one online-reencrypt flag",
                ));
            }
        }
    }
    Ok(())
}

fn tokens(meta: &Map<String, Value>) -> V {
    let tokens = get_obj(meta, "", "tokens")?;
    let keyslots = get_obj(meta, "", "keyslots")?;
    for (id, t) in tokens {
        let at = format!("tokens.{id}");
        let n = parse_id(id).ok_or_else(|| Invalid::new(&at, "token id is not a number"))?;
        if n >= TOKENS_MAX {
            return Err(Invalid::new(
                &at,
                format!("token id must be below {TOKENS_MAX}"),
            ));
        }
        let t = as_obj(t, &at)?;
        get_str(t, &at, "type")?;
        let ks = get_arr(t, &at, "keyslots")?;
        id_refs(ks, &format!("{at}.keyslots"), keyslots, "keyslot")?;
    }
    Ok(())
}

fn digests(meta: &Map<String, Value>) -> V {
    let digests = get_obj(meta, "", "digests")?;
    let keyslots = get_obj(meta, "", "keyslots")?;
    let segments = get_obj(meta, "", "segments")?;
    for (id, d) in digests {
        let at = format!("digests.{id}");
        parse_id(id).ok_or_else(|| Invalid::new(&at, "digest id is not a number"))?;
        let d = as_obj(d, &at)?;
        get_str(d, &at, "type")?;
        let ks = get_arr(d, &at, "keyslots")?;
        let segs = get_arr(d, &at, "segments")?;
        id_refs(ks, &format!("{at}.keyslots"), keyslots, "keyslot")?;
        id_refs(segs, &format!("{at}.segments"), segments, "segment")?;
    }
    Ok(())
}

fn is_backup(seg: &Map<String, Value>) -> bool {
    seg.get("flags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .any(|f| f.as_str().is_some_and(|s| s.starts_with("backup-")))
        })
        .unwrap_or(false)
}

fn segment_has_digest(id: &str, digests: &Map<String, Value>) -> bool {
    digests.values().any(|d| {
        d.get("segments")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(id)))
    })
}

/// (offset, size) of a segment, size `None` = dynamic. Only valid after `segments()` passed.
pub(crate) fn segment_extent(seg: &Map<String, Value>) -> (u64, Option<u64>) {
    let off = seg
        .get("offset")
        .and_then(Value::as_str)
        .and_then(parse_u64)
        .unwrap_or(0);
    let size = seg.get("size").and_then(Value::as_str).and_then(parse_u64);
    (off, size)
}

fn segments(meta: &Map<String, Value>) -> V {
    let segments = get_obj(meta, "", "segments")?;
    let digests = get_obj(meta, "", "digests")?;
    if segments.is_empty() {
        return Err(Invalid::new("segments", "empty segments section"));
    }
    let mut first_backup: Option<u64> = None;
    for (id, s) in segments {
        let at = format!("segments.{id}");
        let n = parse_id(id).ok_or_else(|| Invalid::new(&at, "segment id is not a number"))? as u64;
        let s = as_obj(s, &at)?;
        let kind = get_str(s, &at, "type")?;
        let offset = get_u64_str(s, &at, "offset")?;
        let size_s = get_str(s, &at, "size")?;
        let size = if size_s == "dynamic" {
            0
        } else {
            match parse_u64(size_s) {
                Some(v) if v > 0 => v,
                _ => {
                    return Err(Invalid::new(
                        format!("{at}.size"),
                        format!("illegal segment size {size_s:?}"),
                    ))
                }
            }
        };
        if offset % 512 != 0 {
            return Err(Invalid::new(
                format!("{at}.offset"),
                "must be aligned to 512 bytes",
            ));
        }
        if size % 512 != 0 {
            return Err(Invalid::new(
                format!("{at}.size"),
                "must be aligned to 512 bytes",
            ));
        }
        if s.contains_key("flags") {
            let f = get_arr(s, &at, "flags")?;
            string_array(f, &format!("{at}.flags"))?;
        }
        if is_backup(s) {
            if first_backup.is_none_or(|b| n < b) {
                first_backup = Some(n);
            }
        } else if first_backup.is_some_and(|b| n >= b) {
            return Err(Invalid::new(
                &at,
                "regular segment placed after a backup segment",
            ));
        }
        if kind == "crypt" {
            crypt_segment(s, &at, id, digests, size)?;
        }
    }
    let count = segments.len() as u64;
    let regular = first_backup.unwrap_or(count);
    if regular == 0 {
        return Err(Invalid::new("segments", "no regular segment"));
    }
    let mut intervals = Vec::new();
    let mut i = 0u64;
    while i < regular {
        let seg = segments
            .get(&i.to_string())
            .and_then(Value::as_object)
            .ok_or_else(|| Invalid::new("segments", format!("gap at segment id {i}")))?;
        let (off, size) = segment_extent(seg);
        intervals.push((off, size));
        i += 1;
        if i > count {
            break;
        }
    }
    for (a, &(off_a, size_a)) in intervals.iter().enumerate() {
        if size_a.is_none() && a + 1 != intervals.len() {
            return Err(Invalid::new(
                format!("segments.{a}.size"),
                "only the last regular segment may be dynamic",
            ));
        }
        for (b, &(off_b, size_b)) in intervals.iter().enumerate() {
            if a == b {
                continue;
            }
            let inside = off_a >= off_b
                && match size_b {
                    None => true,
                    Some(len) => off_b.checked_add(len).is_none_or(|end| off_a < end),
                };
            if inside {
                return Err(Invalid::new(
                    "segments",
                    format!("segments {a} and {b} overlap"),
                ));
            }
        }
    }
    let mut j = regular;
    while j < count {
        if !segments.contains_key(&j.to_string()) {
            return Err(Invalid::new("segments", format!("gap at segment id {j}")));
        }
        j += 1;
    }
    Ok(())
}

fn crypt_segment(
    s: &Map<String, Value>,
    at: &str,
    id: &str,
    digests: &Map<String, Value>,
    size: u64,
) -> V {
    let iv = get_str(s, at, "iv_tweak")?;
    let enc = get_str(s, at, "encryption")?;
    if enc.is_empty() {
        return Err(Invalid::new(
            format!("{at}.encryption"),
            "empty cipher specification",
        ));
    }
    get_int(s, at, "sector_size")?;
    if s.contains_key("integrity") {
        let i = get_obj(s, at, "integrity")?;
        let ia = format!("{at}.integrity");
        get_str(i, &ia, "type")?;
        get_str(i, &ia, "journal_encryption")?;
        get_str(i, &ia, "journal_integrity")?;
    }
    let ss = get_u32(s, at, "sector_size")?;
    if ss == 0 || ss % 512 != 0 {
        return Err(Invalid::new(
            format!("{at}.sector_size"),
            format!("illegal sector size {ss}"),
        ));
    }
    if parse_u64(iv).is_none() {
        return Err(Invalid::new(
            format!("{at}.iv_tweak"),
            format!("illegal value {iv:?}"),
        ));
    }
    if !size.is_multiple_of(ss as u64) {
        return Err(Invalid::new(
            format!("{at}.size"),
            format!("must be aligned to sector size {ss}"),
        ));
    }
    if !segment_has_digest(id, digests) {
        return Err(Invalid::new(
            at,
            "crypt segment is not referenced by any digest",
        ));
    }
    Ok(())
}

fn keyslots(meta: &Map<String, Value>) -> V {
    let keyslots = get_obj(meta, "", "keyslots")?;
    for (id, k) in keyslots {
        let at = format!("keyslots.{id}");
        let n = parse_id(id).ok_or_else(|| Invalid::new(&at, "keyslot id is not a number"))?;
        if n >= KEYSLOTS_MAX {
            return Err(Invalid::new(
                &at,
                format!("keyslot id must be below {KEYSLOTS_MAX}"),
            ));
        }
        let k = as_obj(k, &at)?;
        get_str(k, &at, "type")?;
        get_u32(k, &at, "key_size")?;
    }
    Ok(())
}

fn config(meta: &Map<String, Value>) -> V {
    let c = get_obj(meta, "", "config")?;
    let json_size = get_u64_str(c, "config", "json_size")?;
    let keyslots_size = get_u64_str(c, "config", "keyslots_size")?;
    let metadata_size = json_size.checked_add(BIN_HDR_LEN as u64);
    if !metadata_size.is_some_and(|m| HDR_SIZES.contains(&m)) {
        return Err(Invalid::new(
            "config.json_size",
            format!("unsupported JSON area size {json_size}"),
        ));
    }
    if keyslots_size % 4096 != 0 || keyslots_size > MAX_KEYSLOTS_SIZE {
        return Err(Invalid::new(
            "config.keyslots_size",
            format!("unsupported keyslots area size {keyslots_size}"),
        ));
    }
    if c.contains_key("flags") {
        let f = get_arr(c, "config", "flags")?;
        string_array(f, "config.flags")?;
    }
    Ok(())
}

/// Smallest segment offset (bytes), the data offset.
pub(crate) fn min_segment_offset(meta: &Map<String, Value>) -> Option<u64> {
    meta.get("segments")?
        .as_object()?
        .values()
        .filter_map(|s| s.get("offset").and_then(Value::as_str).and_then(parse_u64))
        .min()
}

fn areas(meta: &Map<String, Value>, hdr_size: u64) -> V {
    let keyslots = get_obj(meta, "", "keyslots")?;
    let c = get_obj(meta, "", "config")?;
    let keyslots_size = get_u64_str(c, "config", "keyslots_size")?;
    let metadata = hdr_size.saturating_mul(2);
    let end_of_areas = metadata.saturating_add(keyslots_size);
    if let Some(first) = min_segment_offset(meta) {
        if first != 0 && first < end_of_areas {
            return Err(Invalid::new(
                "config.keyslots_size",
                "keyslots area overlaps the data segment",
            ));
        }
    }
    let mut iv = Vec::new();
    for (id, k) in keyslots {
        let at = format!("keyslots.{id}");
        let k = as_obj(k, &at)?;
        let area = get_obj(k, &at, "area")?;
        let aa = format!("{at}.area");
        get_str(area, &aa, "type")?;
        let off = get_u64_str(area, &aa, "offset")?;
        let len = get_u64_str(area, &aa, "size")?;
        iv.push((id.as_str(), off, len));
    }
    for &(id, off, len) in &iv {
        let at = format!("keyslots.{id}.area");
        if off < metadata {
            return Err(Invalid::new(
                format!("{at}.offset"),
                "area lies inside the metadata",
            ));
        }
        if len == 0 {
            return Err(Invalid::new(format!("{at}.size"), "area has zero length"));
        }
        let end = off
            .checked_add(len)
            .ok_or_else(|| Invalid::new(format!("{at}.size"), "offset + size overflows"))?;
        if end > end_of_areas {
            return Err(Invalid::new(
                format!("{at}.size"),
                "area runs past the keyslots area",
            ));
        }
        for &(other, o_off, o_len) in &iv {
            if other == id {
                continue;
            }
            let o_end = o_off.checked_add(o_len).ok_or_else(|| {
                Invalid::new(
                    format!("keyslots.{other}.area.size"),
                    "offset + size overflows",
                )
            })?;
            if off >= o_off && off < o_end {
                return Err(Invalid::new(
                    format!("{at}.offset"),
                    format!("area overlaps keyslot {other}"),
                ));
            }
        }
    }
    Ok(())
}

fn json_size(meta: &Map<String, Value>, hdr_size: u64) -> V {
    let c = get_obj(meta, "", "config")?;
    let js = get_u64_str(c, "config", "json_size")?;
    if js != hdr_size - BIN_HDR_LEN as u64 {
        return Err(Invalid::new(
            "config.json_size",
            format!(
                "{} does not match the binary header ({})",
                js,
                hdr_size - BIN_HDR_LEN as u64
            ),
        ));
    }
    Ok(())
}

fn keyslot_types(meta: &Map<String, Value>) -> V {
    let keyslots = get_obj(meta, "", "keyslots")?;
    let digests = get_obj(meta, "", "digests")?;
    let mut reencrypt = 0;
    for (id, k) in keyslots {
        let at = format!("keyslots.{id}");
        let k = as_obj(k, &at)?;
        match get_str(k, &at, "type")? {
            "luks2" => {
                luks2_keyslot(k, &at)?;
                let n = digests
                    .values()
                    .filter(|d| {
                        d.get("keyslots")
                            .and_then(Value::as_array)
                            .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(id)))
                    })
                    .count();
                if n != 1 {
                    return Err(Invalid::new(
                        &at,
                        format!("keyslot is assigned to {n} digests, must be exactly 1"),
                    ));
                }
            }
            "reencrypt" => {
                reencrypt += 1;
                get_str(k, &at, "mode")?;
                get_str(k, &at, "direction")?;
            }
            _ => {}
        }
    }
    if reencrypt > 1 {
        return Err(Invalid::new("keyslots", "more than one reencrypt keyslot"));
    }
    if reencrypt == 1
        && !requirements_list(meta)
            .iter()
            .any(|r| r.starts_with("online-reencrypt"))
    {
        return Err(Invalid::new(
            "keyslots",
            "reencrypt keyslot without an online-reencrypt requirement",
        ));
    }
    Ok(())
}

fn luks2_keyslot(k: &Map<String, Value>, at: &str) -> V {
    let kdf = get_obj(k, at, "kdf")?;
    let af = get_obj(k, at, "af")?;
    let area = get_obj(k, at, "area")?;
    let ka = format!("{at}.kdf");
    match get_str(kdf, &ka, "type")? {
        "pbkdf2" => {
            if kdf.len() != 4 {
                return Err(Invalid::new(
                    &ka,
                    "pbkdf2 needs exactly type, salt, hash, iterations",
                ));
            }
            get_str(kdf, &ka, "hash")?;
            get_int(kdf, &ka, "iterations")?;
            get_str(kdf, &ka, "salt")?;
        }
        "argon2i" | "argon2id" => {
            if kdf.len() != 5 {
                return Err(Invalid::new(
                    &ka,
                    "argon2 needs exactly type, salt, time, memory, cpus",
                ));
            }
            get_int(kdf, &ka, "time")?;
            get_int(kdf, &ka, "memory")?;
            get_int(kdf, &ka, "cpus")?;
            get_str(kdf, &ka, "salt")?;
        }
        _ => {}
    }
    let fa = format!("{at}.af");
    if get_str(af, &fa, "type")? != "luks1" {
        return Err(Invalid::new(
            format!("{fa}.type"),
            "unsupported anti-forensic splitter",
        ));
    }
    get_str(af, &fa, "hash")?;
    get_int(af, &fa, "stripes")?;
    let aa = format!("{at}.area");
    if get_str(area, &aa, "type")? != "raw" {
        return Err(Invalid::new(
            format!("{aa}.type"),
            "luks2 keyslot area must be raw",
        ));
    }
    get_str(area, &aa, "encryption")?;
    get_int(area, &aa, "key_size")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_u64() {
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "18446744073709551616",
            "-512",
            "+1",
            "",
            " 1",
            "1 ",
            "0x10",
            "dynamic",
        ] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
        assert!(numbered("007"));
        assert!(!numbered("7a"));
    }
}
