//! Reading both header copies, choosing the valid one, and reporting why.
//!
//! As cryptsetup 2.6 does: a LUKS magic at 0 with another version than 2 refuses the device.
//! A copy counts only if magic, version, hdr_offset, size, checksum, JSON framing, JSON parse and
//! full semantic validation ([`crate::validate`]) all pass. The primary is read at 0; the
//! secondary at the primary's `hdr_size` when the primary's binary header and checksum pass
//! (even if its JSON does not), else at the first of the 9 allowed offsets whose binary header
//! and checksum pass. If both are valid the higher seqid wins (the primary on a tie); the other
//! is reported stale. The device must hold both copies and the keyslots area, and when one
//! copy is invalid or stale another signature on the device refuses it (see [`LoadOptions`]).

pub mod binary;
pub mod json;
pub(crate) mod jsonc;

use crate::device::BlockDevice;
use crate::error::{Error, HeaderCopy, Invalid, Result};
use crate::hash::{ChecksumAlg, HashAlg};
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

/// One copy as cryptsetup classifies it on reading.
enum CopyRead {
    Good(Box<GoodCopy>),
    /// Binary header and checksum are fine, the JSON is not: its `hdr_size` still locates the
    /// secondary copy (cryptsetup's "obsolete" header).
    BadJson {
        hdr_size: u64,
        err: Error,
    },
    /// Binary header, checksum or I/O failed.
    Failed(Error),
}

impl CopyRead {
    fn into_result(self) -> Result<GoodCopy> {
        match self {
            CopyRead::Good(g) => Ok(*g),
            CopyRead::BadJson { err, .. } | CopyRead::Failed(err) => Err(err),
        }
    }
}

/// Binary header, JSON area and checksum of the copy at `offset`.
fn read_raw(dev: &dyn BlockDevice, offset: u64, copy: HeaderCopy) -> Result<(BinHeader, Vec<u8>)> {
    let mut bin_buf = vec![0u8; BIN_HDR_LEN];
    read(dev, &mut bin_buf, offset, copy)?;
    let bin = BinHeader::parse(&bin_buf, offset).map_err(|e| e.at(copy))?;
    let mut area = vec![0u8; (bin.hdr_size as usize) - BIN_HDR_LEN];
    read(dev, &mut area, offset + BIN_HDR_LEN as u64, copy)?;
    let alg = ChecksumAlg::from_name(&bin.csum_alg)
        .ok_or_else(|| Invalid::new("csum_alg", "unsupported").at(copy))?;
    // Only the digest's own length is compared; the rest of the field is not looked at.
    let want = binary::checksum(alg, &bin_buf, &area);
    if !bool::from(want.ct_eq(&bin.csum[..want.len()])) {
        return Err(Invalid::new("csum", "checksum mismatch").at(copy));
    }
    Ok((bin, area))
}

fn read_copy(dev: &dyn BlockDevice, offset: u64, copy: HeaderCopy) -> CopyRead {
    let (bin, area) = match read_raw(dev, offset, copy) {
        Ok(x) => x,
        Err(e) => return CopyRead::Failed(e),
    };
    let checked = json::parse_area(&area).and_then(|(mut meta, source)| {
        let repaired = validate::repair_leftovers(&mut meta);
        validate::validate(&meta, bin.hdr_size, Some(&source))?;
        Ok((meta, source, repaired))
    });
    match checked {
        Ok((meta, source, repaired)) => CopyRead::Good(Box::new(GoodCopy {
            bin,
            meta,
            source,
            repaired,
        })),
        Err(e) => CopyRead::BadJson {
            hdr_size: bin.hdr_size,
            err: e.at(copy),
        },
    }
}

/// The secondary copy when the primary gave no usable `hdr_size`: the first of the 9 offsets
/// whose binary header and checksum pass (its JSON decides, no further offset is tried).
fn scan_secondary(dev: &dyn BlockDevice) -> CopyRead {
    let mut first_err = None;
    for off in HDR_SIZES {
        match read_copy(dev, off, HeaderCopy::Secondary) {
            CopyRead::Failed(e) => {
                let no_magic = matches!(&e, Error::Header { field, .. } if field == "magic");
                if first_err.is_none() && !no_magic && !matches!(e, Error::Io { .. }) {
                    first_err = Some(e);
                }
            }
            found => return found,
        }
    }
    CopyRead::Failed(
        first_err.unwrap_or_else(|| Error::NotLuks2("secondary header not found".into())),
    )
}

/// LVM2's label checksum: CRC-32 (reflected, polynomial 0xEDB88320) started at 0xf597a6cf,
/// without final inversion.
fn lvm2_crc(data: &[u8]) -> u32 {
    let mut crc = 0xf597_a6cf_u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

/// Devices up to this size are "tiny" for blkid, which then does not look for RAID members
/// (LVM2 physical volumes among them).
const BLKID_TINY: u64 = 1440 * 1024;

/// Another on-disk signature in the primary header area, as blkid recognises it (only LVM2 PV
/// labels: `LABELONE`, `LVM2 001`, its own sector number and a valid checksum, on a device
/// larger than [`BLKID_TINY`]).
fn foreign_signature(dev: &dyn BlockDevice) -> Option<String> {
    if dev.size().ok()? <= BLKID_TINY {
        return None;
    }
    let mut buf = vec![0u8; 2048];
    dev.read_at(&mut buf, 0).ok()?;
    for sector in 0..4 {
        let s = &buf[sector * 512..sector * 512 + 512];
        let own_sector = u64::from_le_bytes(s[8..16].try_into().ok()?) == sector as u64;
        let crc = u32::from_le_bytes(s[16..20].try_into().ok()?);
        if &s[0..8] == b"LABELONE"
            && &s[24..32] == b"LVM2 001"
            && own_sector
            && crc == lvm2_crc(&s[20..])
        {
            return Some(format!("LVM2 physical volume label in sector {sector}"));
        }
    }
    None
}

/// The LUKS version at offset 0 decides before anything else (as in cryptsetup): LUKS1 and
/// unknown versions are refused even when a secondary LUKS2 copy is intact.
fn check_version(dev: &dyn BlockDevice) -> Result<()> {
    let mut head = [0u8; 8];
    if dev.read_at(&mut head, 0).is_err() || head[..6] != binary::MAGIC_PRIMARY {
        return Ok(());
    }
    match u16::from_be_bytes([head[6], head[7]]) {
        // Version 0 counts as "no version": the copies decide.
        0 | 2 => Ok(()),
        1 => Err(Error::NotLuks2(
            "LUKS1 header: only LUKS2 is supported (cryptsetup convert --type luks2)".into(),
        )),
        v => Err(Error::NotLuks2(format!("unsupported LUKS version {v}"))),
    }
}

/// Read, validate and choose a header copy.
pub fn load(dev: &dyn BlockDevice, opts: LoadOptions) -> Result<(Header, LoadReport)> {
    check_version(dev)?;
    let primary = read_copy(dev, 0, HeaderCopy::Primary);
    let secondary = match &primary {
        CopyRead::Good(g) => read_copy(dev, g.bin.hdr_size, HeaderCopy::Secondary),
        CopyRead::BadJson { hdr_size, .. } => read_copy(dev, *hdr_size, HeaderCopy::Secondary),
        CopyRead::Failed(_) => scan_secondary(dev),
    };
    let (used, other_state, good, other_good) =
        match (primary.into_result(), secondary.into_result()) {
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
            (Err(e), Ok(s)) => (HeaderCopy::Secondary, CopyState::Invalid(e), s, None),
            (Err(pe), Err(se)) => return Err(no_valid_header(pe, se)),
        };
    check_device_size(dev, &good.meta)?;
    // cryptsetup looks for other signatures whenever one copy would be recovered from the
    // other: the other copy is invalid or has a lower seqid.
    let recovers = other_good
        .as_ref()
        .is_none_or(|o| o.bin.seqid != good.bin.seqid);
    if recovers && !opts.allow_foreign_signature {
        if let Some(sig) = foreign_signature(dev) {
            return Err(Error::ForeignSignature(sig));
        }
    }
    Ok(assemble(used, other_state, good, other_good))
}

fn no_valid_header(pe: Error, se: Error) -> Error {
    let no_magic = |e: &Error| matches!(e, Error::Header { field, .. } if field == "magic");
    if no_magic(&pe) && (no_magic(&se) || matches!(se, Error::NotLuks2(_))) {
        return Error::NotLuks2("no LUKS2 header found".into());
    }
    Error::NoValidHeader {
        primary: Box::new(pe),
        secondary: Box::new(se),
    }
}

/// The device must hold both metadata copies and the keyslots area.
fn check_device_size(dev: &dyn BlockDevice, meta: &Map<String, Value>) -> Result<()> {
    let need = validate::hdr_and_areas_size(meta);
    let size = dev.size().map_err(|e| Error::io("device size", e))?;
    if size < need {
        return Err(Error::DeviceTooSmall { size, need });
    }
    Ok(())
}

fn assemble(
    used: HeaderCopy,
    other_state: CopyState,
    good: GoodCopy,
    other_good: Option<GoodCopy>,
) -> (Header, LoadReport) {
    let needs_repair = match &other_state {
        CopyState::Invalid(e) => Some((used.other(), e.to_string())),
        CopyState::Valid { seqid } if *seqid != good.bin.seqid => Some((
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
    let report = LoadReport {
        used,
        primary,
        secondary,
        needs_repair,
        repaired_in_memory: good.repaired,
    };
    (header, report)
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
