//! Every semantic rule cryptsetup 2.6 (`LUKS2_hdr_validate`: `hdr_validate_*` and
//! `LUKS2_keyslots_validate`) applies to the JSON metadata of a header copy, with the C
//! semantics it has (module `c`), plus the in-memory repair it makes first (`LUKS2_hdr_repair`).
//!
//! Rules are applied in cryptsetup's order: requirements, tokens, digests, segments, keyslots,
//! config, keyslot areas, json_size, then the per-type keyslot checks. Errors name the field.
//! Only the verdict has to match cryptsetup's; checks are not stricter than its own (a header
//! cryptsetup opens opens here too, a header it refuses is refused).

mod access;
mod c;
mod keyslots;
mod segments;

pub(crate) use access::{get_arr, get_int, get_obj, get_str, get_u32, get_u64_str};
pub use access::{numbered, parse_id, parse_u64};
pub use keyslots::repair_leftovers;

use crate::header::binary::{BIN_HDR_LEN, HDR_SIZES};
use crate::header::json::{self, Source};
use c::{fail, V};
use serde_json::{Map, Value};

pub const KEYSLOTS_MAX: u32 = 32;
pub const MAX_KEYSLOTS_SIZE: u64 = 128 * 1024 * 1024;

/// Validate the whole metadata object of a copy whose binary `hdr_size` is given; `source` is
/// the text it was read from (for the length json-c would write it back with).
pub fn validate(meta: &Map<String, Value>, hdr_size: u64, source: Option<&Source>) -> V {
    let top = Value::Object(meta.clone());
    requirements(&top)?;
    tokens(&top)?;
    digests(&top)?;
    segments::segments(&top)?;
    keyslots::keyslots(&top)?;
    config(&top)?;
    keyslots::areas(&top)?;
    json_size(&top, hdr_size, json::serialized_len(meta, source))?;
    keyslots::keyslot_types(&top)?;
    Ok(())
}

/// Bytes the metadata device must hold: both copies and the keyslots area
/// (`LUKS2_hdr_and_areas_size`), from validated metadata.
pub(crate) fn hdr_and_areas_size(meta: &Map<String, Value>) -> u64 {
    let cfg = meta.get("config");
    let json_size = c::u64_of(cfg.and_then(|c| c.get("json_size")));
    let keyslots_size = c::u64_of(cfg.and_then(|c| c.get("keyslots_size")));
    2 * (json_size + BIN_HDR_LEN as u64) + keyslots_size
}

/// Mandatory requirement flags (`config.requirements.mandatory`), if any.
pub fn requirements_list(meta: &Map<String, Value>) -> Vec<String> {
    mandatory(meta.get("config"))
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn mandatory(config: Option<&Value>) -> Option<&Vec<Value>> {
    config?.get("requirements")?.get("mandatory")?.as_array()
}

/// What cryptsetup makes of the mandatory requirements (`LUKS2_config_get_requirements`).
#[derive(Default)]
pub(super) struct Requirements {
    /// `online-reencrypt`, `online-reencrypt-v2` or `-v3`: a reencryption in progress.
    pub online_reencrypt: bool,
    /// Any flag that names a reencryption (`reencrypt_candidate_flag`), known or not.
    pub reencrypt_candidate: bool,
}

/// `online-reencrypt` or `online-reencrypt-v<digits>`.
fn reencrypt_candidate(flag: &str) -> bool {
    flag == "online-reencrypt"
        || flag
            .strip_prefix("online-reencrypt-v")
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

pub(super) fn requirement_flags(top: &Value) -> Requirements {
    let mut r = Requirements::default();
    for f in mandatory(top.get("config")).into_iter().flatten() {
        let f = f.as_str().unwrap_or("");
        r.online_reencrypt |= matches!(
            f,
            "online-reencrypt" | "online-reencrypt-v2" | "online-reencrypt-v3"
        );
        r.reencrypt_candidate |= reencrypt_candidate(f);
    }
    r
}

fn requirements(top: &Value) -> V {
    let Some(config) = c::obj(top, "config") else {
        return fail("config", "missing or not an object");
    };
    let Some(req) = config.get("requirements") else {
        return Ok(());
    };
    if !req.is_object() {
        return fail("config.requirements", "must be an object");
    }
    let Some(m) = req.get("mandatory") else {
        return Ok(());
    };
    let Some(m) = m.as_array() else {
        return fail("config.requirements.mandatory", "must be an array");
    };
    let mut reencrypt = 0;
    for f in m {
        let Some(f) = f.as_str() else {
            return fail("config.requirements.mandatory", "must hold strings");
        };
        reencrypt += usize::from(reencrypt_candidate(f));
    }
    if reencrypt > 1 {
        return fail(
            "config.requirements.mandatory",
            "more than one online-reencrypt flag",
        );
    }
    Ok(())
}

/// Every element a string naming an object of `target` (`validate_keyslots_array`).
fn refs(list: &[Value], target: Option<&Value>, at: &str, what: &str) -> V {
    for v in list {
        let Some(id) = v.as_str() else {
            return fail(at, "array elements must be strings");
        };
        if c::obj(target.unwrap_or(&Value::Null), id).is_none() {
            return fail(at, format!("references missing {what} {id:?}"));
        }
    }
    Ok(())
}

fn tokens(top: &Value) -> V {
    let Some(tokens) = c::obj(top, "tokens") else {
        return fail("tokens", "missing or not an object");
    };
    for (id, t) in tokens {
        let at = format!("tokens.{id}");
        if !c::numbered(id) {
            return fail(at, "token id is not a number");
        }
        if !c::has(top, "keyslots") {
            return fail("keyslots", "missing");
        }
        if c::string(t, "type").is_none() {
            return fail(format!("{at}.type"), "missing or not a non-empty string");
        }
        let Some(ks) = c::arr(t, "keyslots") else {
            return fail(format!("{at}.keyslots"), "missing or not an array");
        };
        refs(
            ks,
            top.get("keyslots"),
            &format!("{at}.keyslots"),
            "keyslot",
        )?;
    }
    Ok(())
}

fn digests(top: &Value) -> V {
    let Some(digests) = c::obj(top, "digests") else {
        return fail("digests", "missing or not an object");
    };
    for sec in ["keyslots", "segments"] {
        if c::obj(top, sec).is_none() {
            return fail(sec, "missing or not an object");
        }
    }
    for (id, d) in digests {
        let at = format!("digests.{id}");
        if !c::numbered(id) {
            return fail(at, "digest id is not a number");
        }
        if c::string(d, "type").is_none() {
            return fail(format!("{at}.type"), "missing or not a non-empty string");
        }
        let (Some(ks), Some(segs)) = (c::arr(d, "keyslots"), c::arr(d, "segments")) else {
            return fail(at, "keyslots and segments must be arrays");
        };
        refs(
            ks,
            top.get("keyslots"),
            &format!("{at}.keyslots"),
            "keyslot",
        )?;
        refs(
            segs,
            top.get("segments"),
            &format!("{at}.segments"),
            "segment",
        )?;
    }
    Ok(())
}

/// Smallest offset of a regular segment, 0 if one starts at 0 (detached header), `u64::MAX`
/// without regular segments (`json_segments_get_minimal_offset`).
fn min_segment_offset(top: &Value) -> u64 {
    let mut min = u64::MAX;
    for s in c::obj(top, "segments").into_iter().flat_map(|s| s.values()) {
        if segments::is_backup(s) {
            continue;
        }
        let off = c::u64_of(s.get("offset"));
        if off == 0 {
            return 0;
        }
        min = min.min(off);
    }
    min
}

fn config(top: &Value) -> V {
    let Some(cfg) = c::obj(top, "config") else {
        return fail("config", "missing or not an object");
    };
    let cfg_v = top.get("config").unwrap_or(&Value::Null);
    let Some(json_size) = c::string(cfg_v, "json_size").and_then(c::str_to_u64) else {
        return fail("config.json_size", "missing or not a number");
    };
    let Some(keyslots_size) = c::string(cfg_v, "keyslots_size").and_then(c::str_to_u64) else {
        return fail("config.keyslots_size", "missing or not a number");
    };
    let metadata = json_size.wrapping_add(BIN_HDR_LEN as u64);
    if !HDR_SIZES.contains(&metadata) {
        return fail(
            "config.json_size",
            format!("unsupported JSON area size {json_size}"),
        );
    }
    if keyslots_size % 4096 != 0 || keyslots_size > MAX_KEYSLOTS_SIZE {
        return fail(
            "config.keyslots_size",
            format!("unsupported keyslots area size {keyslots_size}"),
        );
    }
    let first = min_segment_offset(top);
    if first != 0 && (first < keyslots_size || first - keyslots_size < 2 * metadata) {
        return fail(
            "config.keyslots_size",
            "keyslots area overlaps the data segment",
        );
    }
    if let Some(flags) = cfg.get("flags") {
        let ok = flags
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            return fail("config.flags", "must be an array of strings");
        }
    }
    Ok(())
}

fn json_size(top: &Value, hdr_size: u64, text_len: usize) -> V {
    let area = c::u64_of(top.get("config").and_then(|c| c.get("json_size")));
    let expected = hdr_size - BIN_HDR_LEN as u64;
    if area != expected {
        return fail(
            "config.json_size",
            format!("{area} does not match the binary header ({expected})"),
        );
    }
    if text_len as u64 > area {
        return fail(
            "json area",
            format!("the metadata written back takes {text_len} bytes, more than {area}"),
        );
    }
    Ok(())
}
