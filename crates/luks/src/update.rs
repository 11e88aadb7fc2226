//! Crash-safe header writes.
//!
//! Each copy is written as: JSON area (with zero fill to its end), then the binary header with
//! its checksum, then a flush. A cut inside a copy leaves that copy with a checksum mismatch.
//! The copy that is *not* currently authoritative is written first, with seqid + 1; the
//! authoritative copy is rewritten only after it. So at any cut, one valid copy holds either the
//! old metadata (lower seqid) or the new one (higher seqid wins), never neither.
//! Keyslot material is written before the header that references it, and wiped only after the
//! header that drops it (see [`crate::volume`]).

use crate::device::BlockDevice;
use crate::error::{Error, HeaderCopy, Result};
use crate::hash::ChecksumAlg;
use crate::header::binary::{self, BinHeader, BIN_HDR_LEN};
use crate::header::{json, Header};
use crate::validate;

fn copy_offset(h: &Header, copy: HeaderCopy) -> u64 {
    match copy {
        HeaderCopy::Primary => 0,
        HeaderCopy::Secondary => h.hdr_size,
    }
}

/// Write one copy from the header's current state, then flush.
pub fn write_copy(dev: &dyn BlockDevice, h: &Header, copy: HeaderCopy) -> Result<()> {
    write_copy_unflushed(dev, h, copy)?;
    dev.flush()
        .map_err(|e| Error::io(format!("flushing the {copy}"), e))
}

fn write_copy_unflushed(dev: &dyn BlockDevice, h: &Header, copy: HeaderCopy) -> Result<()> {
    let offset = copy_offset(h, copy);
    let area = json::build_area(
        &h.meta,
        h.source.as_ref(),
        (h.hdr_size as usize).saturating_sub(BIN_HDR_LEN),
    )
    .map_err(|e| e.at(copy))?;
    let bin = BinHeader {
        primary_magic: copy == HeaderCopy::Primary,
        version: 2,
        hdr_size: h.hdr_size,
        seqid: h.seqid,
        label: h.label.clone(),
        csum_alg: h.csum_alg.clone(),
        salt: h.salts[if copy == HeaderCopy::Primary { 0 } else { 1 }],
        uuid: h.uuid.clone(),
        subsystem: h.subsystem.clone(),
        hdr_offset: offset,
        csum: [0; 64],
    };
    let mut enc = bin.encode().map_err(|e| e.at(copy))?;
    let alg = ChecksumAlg::from_name(&h.csum_alg)
        .ok_or_else(|| Error::Unsupported(format!("checksum algorithm {:?}", h.csum_alg)))?;
    let csum = binary::checksum(alg, &enc, &area);
    binary::set_checksum(&mut enc, &csum);
    let ctx = |what: &str| format!("writing {what} of the {copy}");
    dev.write_at(&area, offset + BIN_HDR_LEN as u64)
        .map_err(|e| Error::io(ctx("JSON area"), e))?;
    dev.write_at(&enc, offset)
        .map_err(|e| Error::io(ctx("binary header"), e))?;
    dev.flush().map_err(|e| Error::io(ctx("flush"), e))?;
    Ok(())
}

/// Validate, bump seqid and write both copies, `authoritative` last.
pub fn write_header(
    dev: &dyn BlockDevice,
    h: &mut Header,
    authoritative: HeaderCopy,
) -> Result<()> {
    validate::validate(&h.meta, h.hdr_size, h.source.as_ref()).map_err(|e| e.at(authoritative))?;
    h.seqid = h
        .seqid
        .checked_add(1)
        .ok_or_else(|| Error::Unsupported("seqid overflow".into()))?;
    write_copy(dev, h, authoritative.other())?;
    write_copy(dev, h, authoritative)?;
    Ok(())
}

/// Write both copies of a brand-new header with a single flush at the end. Only for format: a
/// cut there leaves no volume either way, so the steps need no ordering among themselves.
pub fn write_fresh_header(dev: &dyn BlockDevice, h: &mut Header) -> Result<()> {
    validate::validate(&h.meta, h.hdr_size, h.source.as_ref())
        .map_err(|e| e.at(HeaderCopy::Primary))?;
    h.seqid = h
        .seqid
        .checked_add(1)
        .ok_or_else(|| Error::Unsupported("seqid overflow".into()))?;
    write_copy_unflushed(dev, h, HeaderCopy::Secondary)?;
    write_copy_unflushed(dev, h, HeaderCopy::Primary)?;
    dev.flush()
        .map_err(|e| Error::io("flushing the new header", e))
}
