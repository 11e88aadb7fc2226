//! The segments section (`hdr_validate_segments`, `hdr_validate_crypt_segment`, the segment
//! interval rules and, during a reencryption, `validate_reencrypt_segments`).

use super::c::{self, fail, V};
use serde_json::{Map, Value};

/// Any flag starting with `backup-` (`json_segment_is_backup`).
pub(super) fn is_backup(seg: &Value) -> bool {
    flags(seg).any(|f| f.starts_with("backup-"))
}

fn flags(seg: &Value) -> impl Iterator<Item = &str> {
    seg.get("flags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn has_flag(seg: &Value, flag: &str) -> bool {
    flags(seg).any(|f| f == flag)
}

/// The segment named by the `int` id `i`, as cryptsetup looks it up (`"%u"`).
fn by_id(segs: &Map<String, Value>, i: i32) -> Option<&Value> {
    segs.get(&c::id_name(i))
}

/// (offset, length) with `u64::MAX` for a dynamic size.
fn extent(seg: &Value) -> (u64, u64) {
    let size = c::u64_of(seg.get("size"));
    (
        c::u64_of(seg.get("offset")),
        if size == 0 { u64::MAX } else { size },
    )
}

/// One segment's common fields; returns its size (0 = dynamic).
fn common(id: &str, s: &Value) -> V<u64> {
    let at = format!("segments.{id}");
    if !c::numbered(id) {
        return fail(at, "segment id is not a number");
    }
    let (Some(_), Some(off), Some(size)) = (
        c::string(s, "type"),
        c::string(s, "offset"),
        c::string(s, "size"),
    ) else {
        return fail(at, "type, offset and size must be non-empty strings");
    };
    let Some(offset) = Some(off).filter(|o| c::numbered(o)).and_then(c::str_to_u64) else {
        return fail(format!("{at}.offset"), format!("illegal value {off:?}"));
    };
    let size = if size == "dynamic" {
        0
    } else {
        match Some(size)
            .filter(|s| c::numbered(s))
            .and_then(c::str_to_u64)
        {
            Some(v) if v > 0 => v,
            _ => return fail(format!("{at}.size"), format!("illegal value {size:?}")),
        }
    };
    if offset % 512 != 0 || size % 512 != 0 {
        return fail(at, "offset and size must be aligned to 512 bytes");
    }
    if c::has(s, "flags") {
        let ok = c::arr(s, "flags").is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            return fail(format!("{at}.flags"), "must be an array of strings");
        }
    }
    Ok(size)
}

pub(super) fn segments(top: &Value) -> V {
    let Some(segs) = c::obj(top, "segments") else {
        return fail("segments", "missing or not an object");
    };
    let count = segs.len() as i64;
    if count < 1 {
        return fail("segments", "empty segments section");
    }
    let digests = top.get("digests").unwrap_or(&Value::Null);
    let mut first_backup: i64 = -1;
    for (id, s) in segs {
        let size = common(id, s)?;
        let i = i64::from(c::atoi(id));
        if is_backup(s) {
            if first_backup < 0 || i < first_backup {
                first_backup = i;
            }
        } else if first_backup >= 0 && i >= first_backup {
            return fail(
                format!("segments.{id}"),
                "regular segment placed after a backup segment",
            );
        }
        if c::string(s, "type") == Some("crypt") {
            crypt_segment(id, s, digests, size)?;
        }
    }
    if first_backup == 0 {
        return fail("segments", "no regular segment");
    }
    if first_backup >= count {
        return fail("segments", "gap before the first backup segment");
    }
    if first_backup < 0 {
        first_backup = count;
    }
    // 0 < first_backup < count here, so the ids below fit an int.
    let regular = first_backup as i32;
    let mut intervals = Vec::new();
    for i in 0..regular {
        let Some(s) = by_id(segs, i) else {
            return fail("segments", format!("gap at segment id {i}"));
        };
        intervals.push(extent(s));
    }
    intervals_ok(&intervals)?;
    for i in regular..count as i32 {
        if by_id(segs, i).is_none() {
            return fail("segments", format!("gap at segment id {i}"));
        }
    }
    reencrypt_segments(top, segs, regular, count as i32)
}

fn crypt_segment(id: &str, s: &Value, digests: &Value, size: u64) -> V {
    let at = format!("segments.{id}");
    let (Some(iv), Some(_), Some(ss)) = (
        c::string(s, "iv_tweak"),
        c::string(s, "encryption"),
        c::int(s, "sector_size"),
    ) else {
        return fail(at, "iv_tweak, encryption and sector_size are required");
    };
    if c::has(s, "integrity") {
        let i = s.get("integrity").unwrap_or(&Value::Null);
        let ok = i.is_object()
            && ["type", "journal_encryption", "journal_integrity"]
                .iter()
                .all(|k| c::string(i, k).is_some());
        if !ok {
            return fail(format!("{at}.integrity"), "incomplete integrity object");
        }
    }
    let Some(ss) = c::uint32(ss) else {
        return fail(format!("{at}.sector_size"), "not a 32-bit unsigned integer");
    };
    if ss == 0 || ss % 512 != 0 {
        return fail(
            format!("{at}.sector_size"),
            format!("illegal sector size {ss}"),
        );
    }
    if !c::numbered(iv) || c::str_to_u64(iv).is_none() {
        return fail(format!("{at}.iv_tweak"), format!("illegal value {iv:?}"));
    }
    if !size.is_multiple_of(u64::from(ss)) {
        return fail(format!("{at}.size"), "not aligned to the sector size");
    }
    let has_digest = digests.as_object().into_iter().flatten().any(|(_, d)| {
        c::arr(d, "segments").is_some_and(|a| a.iter().any(|x| x.as_str() == Some(id)))
    });
    if !has_digest {
        return fail(at, "crypt segment is not referenced by any digest");
    }
    Ok(())
}

/// Only the last regular segment may be dynamic; no segment starts inside another.
fn intervals_ok(iv: &[(u64, u64)]) -> V {
    for (i, &(off_i, len_i)) in iv.iter().enumerate() {
        if len_i == u64::MAX && i + 1 != iv.len() {
            return fail(
                format!("segments.{i}.size"),
                "only the last regular segment may be dynamic",
            );
        }
        for (j, &(off_j, len_j)) in iv.iter().enumerate() {
            if i == j {
                continue;
            }
            if len_j != u64::MAX && off_j > u64::MAX - len_j {
                return fail(format!("segments.{j}"), "offset + size overflows");
            }
            if off_i >= off_j && (len_j == u64::MAX || off_i < off_j + len_j) {
                return fail("segments", format!("segments {i} and {j} overlap"));
            }
        }
    }
    Ok(())
}

/// `key characteristics` of two segments equal (`json_segment_cmp`).
fn same_kind(a: &Value, b: &Value) -> bool {
    let (Some(ta), Some(tb)) = (
        a.get("type").and_then(Value::as_str),
        b.get("type").and_then(Value::as_str),
    ) else {
        return false;
    };
    if ta != tb {
        return false;
    }
    if ta != "crypt" {
        return true;
    }
    // json_object_get_int of a validated sector size: clamped to the int range.
    let sector = |s: &Value| {
        s.get("sector_size")
            .and_then(Value::as_u64)
            .unwrap_or(512)
            .min(i32::MAX as u64)
    };
    let cipher = |s: &Value| {
        s.get("encryption")
            .and_then(Value::as_str)
            .unwrap_or("null")
            .to_string()
    };
    sector(a) == sector(b) && cipher(a) == cipher(b)
}

/// During an online reencryption both backup segments exist and every regular segment
/// matches one of them (`validate_reencrypt_segments`).
fn reencrypt_segments(top: &Value, segs: &Map<String, Value>, regular: i32, count: i32) -> V {
    if !super::requirement_flags(top).online_reencrypt {
        return Ok(());
    }
    let (mut fin, mut prev) = (None, None);
    for i in regular..count {
        let Some(s) = by_id(segs, i) else {
            return fail("segments", format!("gap at segment id {i}"));
        };
        if has_flag(s, "backup-final") {
            fin = Some(s);
        } else if has_flag(s, "backup-previous") {
            prev = Some(s);
        }
    }
    let (Some(fin), Some(prev)) = (fin, prev) else {
        return fail("segments", "reencryption without both backup segments");
    };
    for i in 0..regular {
        let Some(s) = by_id(segs, i) else {
            return fail("segments", format!("gap at segment id {i}"));
        };
        let ok = if has_flag(s, "in-reencryption") {
            same_kind(s, fin)
        } else {
            same_kind(s, fin) || same_kind(s, prev)
        };
        if !ok {
            return fail(
                format!("segments.{i}"),
                "does not match the backup segments of the reencryption",
            );
        }
    }
    Ok(())
}
