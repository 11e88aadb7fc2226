//! Reading both header copies, choosing the valid one, and reporting why.
//!
//! A copy counts only if magic, version, hdr_offset, size, checksum, JSON framing, JSON parse and
//! full semantic validation ([`crate::validate`]) all pass. The primary is read at 0; the
//! secondary at the primary's `hdr_size`, or, when that fails, by scanning the 9 allowed offsets.
//! If both are valid the higher seqid wins (the primary on a tie); the other is reported stale.

pub mod binary;
pub mod json;

use crate::device::BlockDevice;
use crate::error::{Error, HeaderCopy, Invalid, Result};
use crate::hash::HashAlg;
use crate::validate;
use binary::{BinHeader, BIN_HDR_LEN, HDR_SIZES};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

/// The in-memory header: binary fields shared by both copies plus the JSON metadata.
#[derive(Debug, Clone)]
pub struct Header {
    pub hdr_size: u64,
    pub seqid: u64,
    pub label: String,
    pub subsystem: String,
    pub uuid: String,
    pub csum_alg: String,
    /// Per-copy salts (index 0 primary, 1 secondary).
    pub salts: [[u8; 64]; 2],
    pub meta: Map<String, Value>,
    /// The JSON text `meta` was read from (`None` for a header made in memory): a rewrite keeps
    /// the exact text of every value it did not change (see [`json::Source`]).
    pub source: Option<json::Source>,
}

impl Header {
    /// Compact JSON of the metadata value at `path` (e.g. `["tokens", "0"]`), unchanged values
    /// in their original text; `None` if there is no such value.
    pub fn json_text_at(&self, path: &[&str]) -> Option<String> {
        let (first, rest) = path.split_first()?;
        let mut v = self.meta.get(*first)?;
        for key in rest {
            v = v.get(key)?;
        }
        json::value_text(v, self.source.as_ref(), path).ok()
    }
}

/// What was found in one copy.
#[derive(Debug)]
pub enum CopyState {
    Valid { seqid: u64 },
    Invalid(Error),
}

impl CopyState {
    pub fn is_valid(&self) -> bool {
        matches!(self, CopyState::Valid { .. })
    }
}

/// Which copy is used, and what is wrong with the other.
#[derive(Debug)]
pub struct LoadReport {
    pub used: HeaderCopy,
    pub primary: CopyState,
    pub secondary: CopyState,
    /// Copy to rewrite from the used one, with the reason.
    pub needs_repair: Option<(HeaderCopy, String)>,
    /// Fields repaired in memory (leftover KDF parameters).
    pub repaired_in_memory: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Use (and allow repairing) the secondary even when the primary area carries another
    /// signature (e.g. an LVM2 label). cryptsetup only does this on an explicit `repair`.
    pub allow_foreign_signature: bool,
}

struct GoodCopy {
    bin: BinHeader,
    meta: Map<String, Value>,
    source: json::Source,
    repaired: Vec<String>,
}

fn read(dev: &dyn BlockDevice, buf: &mut [u8], offset: u64, copy: HeaderCopy) -> Result<()> {
    dev.read_at(buf, offset)
        .map_err(|e| Error::io(format!("reading {copy} at offset {offset}"), e))
}

fn read_copy(dev: &dyn BlockDevice, offset: u64, copy: HeaderCopy) -> Result<GoodCopy> {
    let mut bin_buf = vec![0u8; BIN_HDR_LEN];
    read(dev, &mut bin_buf, offset, copy)?;
    let bin = BinHeader::parse(&bin_buf, offset).map_err(|e| e.at(copy))?;
    let json_len = (bin.hdr_size as usize) - BIN_HDR_LEN;
    let mut area = vec![0u8; json_len];
    read(dev, &mut area, offset + BIN_HDR_LEN as u64, copy)?;
    let alg = HashAlg::from_name(&bin.csum_alg)
        .map_err(|_| Invalid::new("csum_alg", "unsupported").at(copy))?;
    let want = binary::checksum(alg, &bin_buf, &area);
    let stored = &bin.csum[..want.len()];
    if !bool::from(want.ct_eq(stored)) || bin.csum[want.len()..].iter().any(|&b| b != 0) {
        return Err(Invalid::new("csum", "checksum mismatch").at(copy));
    }
    let (mut meta, source) = json::parse_area(&area).map_err(|e| e.at(copy))?;
    let repaired = validate::repair_leftovers(&mut meta);
    validate::validate(&meta, bin.hdr_size).map_err(|e| e.at(copy))?;
    Ok(GoodCopy {
        bin,
        meta,
        source,
        repaired,
    })
}

/// Another on-disk signature in the primary header area (only LVM2 PV labels are recognised).
fn foreign_signature(dev: &dyn BlockDevice) -> Option<String> {
    let mut buf = vec![0u8; 2048];
    dev.read_at(&mut buf, 0).ok()?;
    for sector in 0..4 {
        let s = &buf[sector * 512..sector * 512 + 512];
        if &s[0..8] == b"LABELONE" && &s[24..32] == b"LVM2 001" {
            return Some(format!("LVM2 physical volume label in sector {sector}"));
        }
    }
    None
}

/// Read, validate and choose a header copy.
pub fn load(dev: &dyn BlockDevice, opts: LoadOptions) -> Result<(Header, LoadReport)> {
    let mut magic = [0u8; 8];
    if dev.read_at(&mut magic, 0).is_ok()
        && magic[..6] == binary::MAGIC_PRIMARY
        && magic[6..8] == [0, 1]
    {
        return Err(Error::NotLuks2(
            "LUKS1 header: only LUKS2 is supported (cryptsetup convert --type luks2)".into(),
        ));
    }
    let primary = read_copy(dev, 0, HeaderCopy::Primary);
    let mut tried = None;
    let mut secondary = Err(Error::NotLuks2("secondary header not found".into()));
    if let Ok(p) = &primary {
        tried = Some(p.bin.hdr_size);
        secondary = read_copy(dev, p.bin.hdr_size, HeaderCopy::Secondary);
    } else {
        // The primary may still carry a readable hdr_size even if it is invalid.
        let mut b = vec![0u8; BIN_HDR_LEN];
        if dev.read_at(&mut b, 0).is_ok() && b[..6] == binary::MAGIC_PRIMARY {
            let hs = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
            if HDR_SIZES.contains(&hs) {
                tried = Some(hs);
                secondary = read_copy(dev, hs, HeaderCopy::Secondary);
            }
        }
    }
    if secondary.is_err() && primary.is_err() {
        for off in HDR_SIZES {
            if Some(off) == tried {
                continue;
            }
            let mut m = [0u8; 6];
            if dev.read_at(&mut m, off).is_err() || m != binary::MAGIC_SECONDARY {
                continue;
            }
            secondary = read_copy(dev, off, HeaderCopy::Secondary);
            if secondary.is_ok() {
                break;
            }
        }
    }
    let (used, other_state, good, other_good) = match (primary, secondary) {
        (Ok(p), Ok(s)) => {
            if s.bin.seqid > p.bin.seqid {
                let st = CopyState::Valid { seqid: p.bin.seqid };
                (HeaderCopy::Secondary, st, s, Some(p))
            } else {
                let st = CopyState::Valid { seqid: s.bin.seqid };
                (HeaderCopy::Primary, st, p, Some(s))
            }
        }
        (Ok(p), Err(e)) => (HeaderCopy::Primary, CopyState::Invalid(e), p, None),
        (Err(e), Ok(s)) => {
            if !opts.allow_foreign_signature {
                if let Some(sig) = foreign_signature(dev) {
                    return Err(Error::ForeignSignature(sig));
                }
            }
            (HeaderCopy::Secondary, CopyState::Invalid(e), s, None)
        }
        (Err(pe), Err(se)) => {
            let no_magic = |e: &Error| matches!(e, Error::Header { field, .. } if field == "magic");
            if no_magic(&pe) && (no_magic(&se) || matches!(se, Error::NotLuks2(_))) {
                return Err(Error::NotLuks2("no LUKS2 header found".into()));
            }
            return Err(Error::NoValidHeader {
                primary: Box::new(pe),
                secondary: Box::new(se),
            });
        }
    };
    let needs_repair = match (&other_state, &other_good) {
        (CopyState::Invalid(e), _) => Some((used.other(), e.to_string())),
        (CopyState::Valid { seqid }, _) if *seqid != good.bin.seqid => Some((
            used.other(),
            format!("stale: seqid {} < {}", seqid, good.bin.seqid),
        )),
        _ => None,
    };
    let mut salts = [[0u8; 64]; 2];
    let (ui, oi) = match used {
        HeaderCopy::Primary => (0, 1),
        HeaderCopy::Secondary => (1, 0),
    };
    salts[ui] = good.bin.salt;
    match &other_good {
        Some(o) => salts[oi] = o.bin.salt,
        None => rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salts[oi]),
    }
    let used_state = CopyState::Valid {
        seqid: good.bin.seqid,
    };
    let (primary, secondary) = match used {
        HeaderCopy::Primary => (used_state, other_state),
        HeaderCopy::Secondary => (other_state, used_state),
    };
    let header = Header {
        hdr_size: good.bin.hdr_size,
        seqid: good.bin.seqid,
        label: good.bin.label,
        subsystem: good.bin.subsystem,
        uuid: good.bin.uuid,
        csum_alg: good.bin.csum_alg,
        salts,
        meta: good.meta,
        source: Some(good.source),
    };
    Ok((
        header,
        LoadReport {
            used,
            primary,
            secondary,
            needs_repair,
            repaired_in_memory: good.repaired,
        },
    ))
}

/// Encode one header copy around an arbitrary JSON area (no validation; the checksum is
/// correct). For tests and fuzzing: lets inputs reach the JSON rules past the checksum.
pub fn encode_raw_copy(primary: bool, hdr_size: u64, seqid: u64, json_area: &[u8]) -> Vec<u8> {
    let json_len = (hdr_size as usize).saturating_sub(BIN_HDR_LEN);
    let mut area = vec![0u8; json_len];
    let n = json_area.len().min(json_len);
    area[..n].copy_from_slice(&json_area[..n]);
    let bin = BinHeader {
        primary_magic: primary,
        version: 2,
        hdr_size,
        seqid,
        label: String::new(),
        csum_alg: "sha256".into(),
        salt: [0x5a; 64],
        uuid: "00000000-0000-4000-8000-000000000000".into(),
        subsystem: String::new(),
        hdr_offset: if primary { 0 } else { hdr_size },
        csum: [0; 64],
    };
    let mut enc = bin.encode().unwrap_or_else(|_| vec![0u8; BIN_HDR_LEN]);
    let csum = binary::checksum(HashAlg::Sha256, &enc, &area);
    binary::set_checksum(&mut enc, &csum);
    enc.extend_from_slice(&area);
    enc
}
