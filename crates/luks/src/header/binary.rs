//! The 4096-byte binary header of one LUKS2 copy (all integers big-endian).

use crate::error::Invalid;
use crate::hash::ChecksumAlg;

pub const BIN_HDR_LEN: usize = 4096;
pub const MAGIC_PRIMARY: [u8; 6] = *b"LUKS\xba\xbe";
pub const MAGIC_SECONDARY: [u8; 6] = *b"SKUL\xba\xbe";
/// Allowed `hdr_size` values (binary header + JSON area); also the secondary scan offsets.
pub const HDR_SIZES: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];

const OFF_VERSION: usize = 6;
const OFF_HDR_SIZE: usize = 8;
const OFF_SEQID: usize = 16;
const OFF_LABEL: usize = 24;
const LEN_LABEL: usize = 48;
const OFF_CSUM_ALG: usize = 72;
const LEN_CSUM_ALG: usize = 32;
const OFF_SALT: usize = 104;
const LEN_SALT: usize = 64;
const OFF_UUID: usize = 168;
const LEN_UUID: usize = 40;
const OFF_SUBSYSTEM: usize = 208;
const LEN_SUBSYSTEM: usize = 48;
const OFF_HDR_OFFSET: usize = 256;
pub const OFF_CSUM: usize = 448;
const LEN_CSUM: usize = 64;

/// Decoded binary header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinHeader {
    pub primary_magic: bool,
    pub version: u16,
    pub hdr_size: u64,
    pub seqid: u64,
    pub label: String,
    pub csum_alg: String,
    pub salt: [u8; LEN_SALT],
    pub uuid: String,
    pub subsystem: String,
    pub hdr_offset: u64,
    pub csum: [u8; LEN_CSUM],
}

fn be_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

fn c_string(b: &[u8], off: usize, len: usize) -> String {
    let field = b.get(off..off + len).unwrap_or(&[]);
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn put_c_string(b: &mut [u8], off: usize, len: usize, s: &str, field: &str) -> Result<(), Invalid> {
    let bytes = s.as_bytes();
    if bytes.len() >= len || bytes.contains(&0) {
        return Err(Invalid::new(
            field,
            format!("at most {} bytes without NUL", len - 1),
        ));
    }
    b[off..off + bytes.len()].copy_from_slice(bytes);
    Ok(())
}

impl BinHeader {
    /// Decode and check the fields that do not depend on the JSON area.
    /// `expected_offset` is where this copy was read from.
    pub fn parse(buf: &[u8], expected_offset: u64) -> Result<BinHeader, Invalid> {
        if buf.len() < BIN_HDR_LEN {
            return Err(Invalid::new("binary header", "short read"));
        }
        let primary_magic = match buf.get(0..6) {
            Some(m) if m == MAGIC_PRIMARY => true,
            Some(m) if m == MAGIC_SECONDARY => false,
            _ => return Err(Invalid::new("magic", "no LUKS magic")),
        };
        let version = u16::from_be_bytes([buf[OFF_VERSION], buf[OFF_VERSION + 1]]);
        let mut salt = [0u8; LEN_SALT];
        salt.copy_from_slice(&buf[OFF_SALT..OFF_SALT + LEN_SALT]);
        let mut csum = [0u8; LEN_CSUM];
        csum.copy_from_slice(&buf[OFF_CSUM..OFF_CSUM + LEN_CSUM]);
        let h = BinHeader {
            primary_magic,
            version,
            hdr_size: be_u64(buf, OFF_HDR_SIZE),
            seqid: be_u64(buf, OFF_SEQID),
            label: c_string(buf, OFF_LABEL, LEN_LABEL),
            csum_alg: c_string(buf, OFF_CSUM_ALG, LEN_CSUM_ALG),
            salt,
            uuid: c_string(buf, OFF_UUID, LEN_UUID),
            subsystem: c_string(buf, OFF_SUBSYSTEM, LEN_SUBSYSTEM),
            hdr_offset: be_u64(buf, OFF_HDR_OFFSET),
            csum,
        };
        if h.version != 2 {
            return Err(Invalid::new(
                "version",
                format!("version {} is not LUKS2", h.version),
            ));
        }
        if (expected_offset == 0) != h.primary_magic {
            return Err(Invalid::new(
                "magic",
                "primary/secondary magic at the wrong offset",
            ));
        }
        // Any size in range passes here (the JSON rules then require one of HDR_SIZES); it
        // says where the secondary copy is.
        if !(HDR_SIZES[0]..=HDR_SIZES[HDR_SIZES.len() - 1]).contains(&h.hdr_size) {
            return Err(Invalid::new(
                "hdr_size",
                format!("header size {} out of range", h.hdr_size),
            ));
        }
        if h.hdr_offset != expected_offset {
            return Err(Invalid::new(
                "hdr_offset",
                format!(
                    "header says offset {} but was read at {}",
                    h.hdr_offset, expected_offset
                ),
            ));
        }
        if expected_offset != 0 && expected_offset != h.hdr_size {
            return Err(Invalid::new(
                "hdr_size",
                "secondary header offset differs from its hdr_size",
            ));
        }
        if ChecksumAlg::from_name(&h.csum_alg).is_none() {
            return Err(Invalid::new(
                "csum_alg",
                format!("unsupported checksum {:?}", h.csum_alg),
            ));
        }
        Ok(h)
    }

    /// Encode with a zeroed checksum field.
    pub fn encode(&self) -> Result<Vec<u8>, Invalid> {
        let mut b = vec![0u8; BIN_HDR_LEN];
        b[0..6].copy_from_slice(if self.primary_magic {
            &MAGIC_PRIMARY
        } else {
            &MAGIC_SECONDARY
        });
        b[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&self.version.to_be_bytes());
        b[OFF_HDR_SIZE..OFF_HDR_SIZE + 8].copy_from_slice(&self.hdr_size.to_be_bytes());
        b[OFF_SEQID..OFF_SEQID + 8].copy_from_slice(&self.seqid.to_be_bytes());
        put_c_string(&mut b, OFF_LABEL, LEN_LABEL, &self.label, "label")?;
        put_c_string(
            &mut b,
            OFF_CSUM_ALG,
            LEN_CSUM_ALG,
            &self.csum_alg,
            "csum_alg",
        )?;
        b[OFF_SALT..OFF_SALT + LEN_SALT].copy_from_slice(&self.salt);
        put_c_string(&mut b, OFF_UUID, LEN_UUID, &self.uuid, "uuid")?;
        put_c_string(
            &mut b,
            OFF_SUBSYSTEM,
            LEN_SUBSYSTEM,
            &self.subsystem,
            "subsystem",
        )?;
        b[OFF_HDR_OFFSET..OFF_HDR_OFFSET + 8].copy_from_slice(&self.hdr_offset.to_be_bytes());
        Ok(b)
    }
}

/// `csum_alg(binary header with the csum field zeroed ‖ whole JSON area)`.
pub fn checksum(alg: impl Into<ChecksumAlg>, bin: &[u8], json_area: &[u8]) -> Vec<u8> {
    let mut zeroed = bin.get(..BIN_HDR_LEN).unwrap_or(bin).to_vec();
    if let Some(c) = zeroed.get_mut(OFF_CSUM..OFF_CSUM + LEN_CSUM) {
        c.fill(0);
    }
    alg.into().digest(&[&zeroed, json_area])
}

/// Store a checksum into an encoded binary header.
pub fn set_checksum(bin: &mut [u8], csum: &[u8]) {
    if let Some(c) = bin.get_mut(OFF_CSUM..OFF_CSUM + csum.len().min(LEN_CSUM)) {
        c.copy_from_slice(&csum[..csum.len().min(LEN_CSUM)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_parse_roundtrip_and_checks() {
        let h = BinHeader {
            primary_magic: false,
            version: 2,
            hdr_size: 0x8000,
            seqid: 42,
            label: "lbl".into(),
            csum_alg: "sha256".into(),
            salt: [3; 64],
            uuid: "u".into(),
            subsystem: "s".into(),
            hdr_offset: 0x8000,
            csum: [0; 64],
        };
        let b = h.encode().unwrap();
        assert_eq!(BinHeader::parse(&b, 0x8000).unwrap(), h);
        assert_eq!(BinHeader::parse(&b, 0).unwrap_err().field, "magic");
        assert_eq!(
            BinHeader::parse(&b, 0x4000).unwrap_err().field,
            "hdr_offset"
        );
        assert!(BinHeader::parse(&b[..100], 0x8000).is_err());
        let mut bad = h.clone();
        bad.label = "x".repeat(48);
        assert_eq!(bad.encode().unwrap_err().field, "label");
    }
}
