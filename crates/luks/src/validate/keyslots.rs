//! Keyslots: the generic section rules (`hdr_validate_keyslots`), their areas
//! (`hdr_validate_areas`), the per-type rules of `luks2` and `reencrypt` keyslots with the
//! reencryption bookkeeping (`LUKS2_keyslots_validate`), and the KDF repair cryptsetup makes on
//! load (`luks2_keyslot_repair`).

use super::c::{self, fail, V};
use serde_json::{Map, Value};

pub(super) fn keyslots(top: &Value) -> V {
    let Some(keyslots) = c::obj(top, "keyslots") else {
        return fail("keyslots", "missing or not an object");
    };
    for (id, k) in keyslots {
        let at = format!("keyslots.{id}");
        if !c::numbered(id) {
            return fail(at, "keyslot id is not a number");
        }
        if c::string(k, "type").is_none() {
            return fail(format!("{at}.type"), "missing or not a non-empty string");
        }
        if c::int(k, "key_size").and_then(c::uint32).is_none() {
            return fail(format!("{at}.key_size"), "not a 32-bit unsigned integer");
        }
    }
    Ok(())
}

/// (offset, length) of a keyslot's area.
fn area_extent(id: &str, k: &Value) -> V<(u64, u64)> {
    let at = format!("keyslots.{id}.area");
    let area = k.get("area").unwrap_or(&Value::Null);
    let (true, Some(_), Some(off), Some(len)) = (
        area.is_object(),
        c::string(area, "type"),
        c::string(area, "offset"),
        c::string(area, "size"),
    ) else {
        return fail(at, "type, offset and size must be non-empty strings");
    };
    let num = |s: &str| Some(s).filter(|s| c::numbered(s)).and_then(c::str_to_u64);
    match (num(off), num(len)) {
        (Some(o), Some(l)) => Ok((o, l)),
        _ => fail(at, format!("illegal area {off:?}+{len:?}")),
    }
}

/// Areas lie after both metadata copies, inside the keyslots area, and none starts inside
/// another (`validate_intervals`).
pub(super) fn areas(top: &Value) -> V {
    let keyslots = c::obj(top, "keyslots").into_iter().flatten();
    let mut iv = Vec::new();
    for (id, k) in keyslots {
        iv.push((id.as_str(), area_extent(id, k)?));
    }
    let cfg = top.get("config");
    let metadata = c::u64_of(cfg.and_then(|c| c.get("json_size"))).wrapping_add(4096);
    let keyslots_size = c::u64_of(cfg.and_then(|c| c.get("keyslots_size")));
    let end = metadata.wrapping_mul(2).wrapping_add(keyslots_size);
    for &(id, (off, len)) in &iv {
        let at = format!("keyslots.{id}.area");
        if off < metadata.wrapping_mul(2) {
            return fail(at, "area lies inside the metadata");
        }
        if len == 0 {
            return fail(at, "area has zero length");
        }
        if off > u64::MAX - len {
            return fail(at, "offset + size overflows");
        }
        if off + len > end {
            return fail(at, "area runs past the keyslots area");
        }
        for &(other, (o_off, o_len)) in &iv {
            if other == id {
                continue;
            }
            if o_off > u64::MAX - o_len {
                return fail(format!("keyslots.{other}.area"), "offset + size overflows");
            }
            if off >= o_off && off < o_off + o_len {
                return fail(at, format!("area overlaps keyslot {other}"));
            }
        }
    }
    Ok(())
}

/// Digests whose `keyslots` name `slot` (`LUKS2_get_keyslot_digests_count`).
fn digests_of(top: &Value, slot: &str) -> usize {
    c::obj(top, "digests")
        .into_iter()
        .flatten()
        .filter(|(_, d)| {
            c::arr(d, "keyslots").is_some_and(|a| a.iter().any(|x| x.as_str() == Some(slot)))
        })
        .count()
}

pub(super) fn keyslot_types(top: &Value) -> V {
    let Some(keyslots) = c::obj(top, "keyslots") else {
        return fail("keyslots", "missing or not an object");
    };
    let reqs = super::requirement_flags(top);
    let mut reencrypt = 0;
    for (id, k) in keyslots {
        let at = format!("keyslots.{id}");
        match k.get("type").and_then(Value::as_str) {
            Some("luks2") => {
                luks2_keyslot(&at, k)?;
                // cryptsetup counts the digests of `atoi(id)` printed back with %u.
                let n = digests_of(top, &c::id_name(c::atoi(id)));
                if n != 1 {
                    return fail(at, format!("keyslot is assigned to {n} digests, not 1"));
                }
            }
            Some("reencrypt") => {
                reencrypt_keyslot(&at, k)?;
                reencrypt += 1;
            }
            _ => {}
        }
    }
    if reqs.online_reencrypt && reencrypt == 0 {
        return fail(
            "config.requirements.mandatory",
            "online reencryption without a reencrypt keyslot",
        );
    }
    if reencrypt > 0 && !reqs.reencrypt_candidate {
        return fail(
            "keyslots",
            "reencrypt keyslot without an online-reencrypt requirement",
        );
    }
    if reencrypt > 1 {
        return fail("keyslots", "more than one reencrypt keyslot");
    }
    Ok(())
}

fn luks2_keyslot(at: &str, k: &Value) -> V {
    let (Some(kdf), Some(af), Some(area)) = (k.get("kdf"), k.get("af"), k.get("area")) else {
        return fail(at, "kdf, af and area are required");
    };
    if !(kdf.is_object() && af.is_object() && area.is_object()) {
        return fail(at, "kdf, af and area must be objects");
    }
    let count = kdf.as_object().map_or(0, Map::len);
    let Some(kind) = c::string(kdf, "type") else {
        return fail(
            format!("{at}.kdf.type"),
            "missing or not a non-empty string",
        );
    };
    let kdf_ok = match kind {
        "pbkdf2" => {
            count == 4
                && c::string(kdf, "hash").is_some()
                && c::int(kdf, "iterations").is_some()
                && c::string(kdf, "salt").is_some()
        }
        "argon2i" | "argon2id" => {
            count == 5
                && ["time", "memory", "cpus"]
                    .iter()
                    .all(|f| c::int(kdf, f).is_some())
                && c::string(kdf, "salt").is_some()
        }
        _ => true,
    };
    if !kdf_ok {
        return fail(format!("{at}.kdf"), format!("invalid {kind} parameters"));
    }
    let af_ok = c::string(af, "type") == Some("luks1")
        && c::string(af, "hash").is_some()
        && c::int(af, "stripes").is_some();
    if !af_ok {
        return fail(
            format!("{at}.af"),
            "not a valid luks1 anti-forensic splitter",
        );
    }
    let area_ok = c::string(area, "type") == Some("raw")
        && c::string(area, "encryption").is_some()
        && c::int(area, "key_size").is_some()
        && c::string(area, "offset").is_some()
        && c::string(area, "size").is_some();
    if !area_ok {
        return fail(format!("{at}.area"), "not a valid raw area");
    }
    Ok(())
}

fn reencrypt_keyslot(at: &str, k: &Value) -> V {
    let area = k.get("area").unwrap_or(&Value::Null);
    let kind = area.get("type").and_then(Value::as_str).unwrap_or("");
    let (Some(key_size), Some(mode), Some(direction)) = (
        c::int(k, "key_size"),
        c::string(k, "mode"),
        c::string(k, "direction"),
    ) else {
        return fail(at, "key_size, mode and direction are required");
    };
    if c::uint32(key_size) != Some(1) {
        return fail(format!("{at}.key_size"), "must be 1");
    }
    if !matches!(mode, "reencrypt" | "encrypt" | "decrypt") {
        return fail(format!("{at}.mode"), format!("illegal mode {mode:?}"));
    }
    if !matches!(direction, "forward" | "backward") {
        return fail(
            format!("{at}.direction"),
            format!("illegal direction {direction:?}"),
        );
    }
    match kind {
        "checksum" | "datashift-checksum" => {
            let ss = c::int(area, "sector_size").and_then(c::uint32);
            let ok = c::string(area, "hash").is_some()
                && ss.is_some_and(|s| s >= 512 && s.is_power_of_two());
            if !ok {
                return fail(
                    format!("{at}.area"),
                    "checksum needs a hash and a sector size",
                );
            }
        }
        "datashift" | "datashift-journal" => {
            let shift = c::string(area, "shift_size")
                .and_then(c::str_to_u64)
                .unwrap_or(0);
            if shift == 0 || !shift.is_multiple_of(512) {
                return fail(
                    format!("{at}.area.shift_size"),
                    "must be a non-zero multiple of 512",
                );
            }
        }
        _ => {}
    }
    Ok(())
}

/// KDF fields a `luks2` keyslot may have; cryptsetup drops every other one on load.
fn kdf_fields(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "pbkdf2" => Some(&["type", "salt", "hash", "iterations"]),
        "argon2i" | "argon2id" => Some(&["type", "salt", "time", "memory", "cpus"]),
        _ => None,
    }
}

/// In-memory repair of KDF objects (cryptsetup `luks2_keyslot_repair`, for headers older tools
/// left fields of another KDF in): fields the KDF type does not use are removed. Returns what
/// was removed, for reporting.
pub fn repair_leftovers(meta: &mut Map<String, Value>) -> Vec<String> {
    let mut done = Vec::new();
    let Some(Value::Object(keyslots)) = meta.get_mut("keyslots") else {
        return done;
    };
    for (id, ks) in keyslots.iter_mut() {
        if ks.get("type").and_then(Value::as_str) != Some("luks2") {
            continue;
        }
        let Some(Value::Object(kdf)) = ks.get_mut("kdf") else {
            continue;
        };
        let Some(keep) = kdf.get("type").and_then(Value::as_str).and_then(kdf_fields) else {
            continue;
        };
        kdf.retain(|f, _| {
            let kept = keep.contains(&f.as_str());
            if !kept {
                done.push(format!("keyslots.{id}.kdf.{f} (unused parameter removed)"));
            }
            kept
        });
    }
    done
}
