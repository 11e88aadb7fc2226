//! Mutants of real cryptsetup-made LUKS2 headers for the differential test
//! (`luks_differential.rs`): semantic JSON edits ([`json`]), JSON text edits (framing, json-c
//! syntax), binary header fields, the two copies treated alike or apart, checksums recomputed
//! or not, and the file cut short.

pub mod json;
pub mod rng;

use json::{Ctx, Geometry};
use rng::Rng;
use serde_json::Value;
use strongroom_luks::hash::ChecksumAlg;

const BIN: usize = 4096;
const OFF_HDR_SIZE: usize = 8;
const OFF_SEQID: usize = 16;
const OFF_CSUM_ALG: usize = 72;
const OFF_CSUM: usize = 448;

/// A header made by cryptsetup, the starting point of mutants.
pub struct Base {
    pub name: String,
    /// The whole file.
    pub content: Vec<u8>,
    pub hdr_size: usize,
    pub seqid: u64,
    /// The JSON text cryptsetup wrote (primary copy) and its parsed form.
    pub text: Vec<u8>,
    pub meta: Value,
    pub geo: Geometry,
}

impl Base {
    pub fn new(name: &str, content: Vec<u8>) -> Base {
        let hdr_size = be64(&content, OFF_HDR_SIZE) as usize;
        let seqid = be64(&content, OFF_SEQID);
        let area = &content[BIN..hdr_size];
        let end = area
            .iter()
            .position(|&b| b == 0)
            .expect("NUL-terminated JSON");
        let text = area[..end].to_vec();
        let meta: Value = serde_json::from_slice(&text).expect("cryptsetup JSON");
        let num = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let data_offset = meta["segments"]
            .as_object()
            .and_then(|s| s.values().map(|v| num(&v["offset"])).min())
            .unwrap_or(0);
        let geo = Geometry {
            hdr_size: hdr_size as u64,
            keyslots_size: num(&meta["config"]["keyslots_size"]),
            data_offset,
        };
        Base {
            name: name.to_string(),
            content,
            hdr_size,
            seqid,
            text,
            meta,
            geo,
        }
    }
}

/// One mutant: the first `image.len()` bytes of the file (the rest is the base's), its length.
pub struct Mutant {
    pub desc: Vec<String>,
    pub image: Vec<u8>,
    pub file_len: u64,
}

fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().unwrap())
}

fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_be_bytes());
}

fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Text of a semantically mutated copy of the base metadata.
fn mutated_text(base: &Base, rng: &mut Rng, desc: &mut Vec<String>) -> Vec<u8> {
    let mut meta = base.meta.clone();
    let mut ctx = Ctx::new(rng, base.geo);
    let n = 1 + ctx.rng.below(3);
    for _ in 0..n {
        ctx.mutate(&mut meta);
    }
    let pretty = ctx.rng.percent(5);
    let mut text = ctx.serialize(&meta, pretty);
    if pretty {
        ctx.desc.push("pretty-printed".into());
    }
    desc.append(&mut ctx.desc);
    if rng.percent(20) {
        text_mutation(&mut text, base.hdr_size - BIN, rng, desc);
    }
    text
}

/// Edits of the JSON text itself: whitespace, comments, quotes, duplicate keys, raw bytes and
/// escapes inside strings, truncation.
fn text_mutation(text: &mut Vec<u8>, area_len: usize, rng: &mut Rng, desc: &mut Vec<String>) {
    fn insert(text: &mut Vec<u8>, at: usize, what: &[u8]) {
        let at = at.min(text.len());
        text.splice(at..at, what.iter().copied());
    }
    fn find(text: &[u8], what: &[u8]) -> Option<usize> {
        text.windows(what.len()).position(|w| w == what)
    }
    let last = text.len().saturating_sub(1);
    match rng.below(17) {
        0 => {
            let ws = *rng.pick(&[" ", "\n", "\t\r\n  "]);
            text.extend_from_slice(ws.as_bytes());
            desc.push(format!("text: trailing {ws:?}"));
        }
        1 => {
            let c = *rng.pick(&["/* c */", "// c\n", "//c", "/*", "/", "#"]);
            text.extend_from_slice(c.as_bytes());
            desc.push(format!("text: trailing {c:?}"));
        }
        2 => {
            text.insert(0, b' ');
            desc.push("text: leading space".into());
        }
        3 => {
            let c = *rng.pick(&["/*x*/", "//x\n", " \n\t", "/x"]);
            insert(text, 1, c.as_bytes());
            desc.push(format!("text: {c:?} after the opening brace"));
        }
        4 => {
            let key = *rng.pick(&["\"tokens\"", "\"type\"", "\"keyslots\"", "\"offset\""]);
            if let Some(p) = find(text, key.as_bytes()) {
                text[p] = b'\'';
                text[p + key.len() - 1] = b'\'';
            }
            desc.push(format!("text: single-quoted {key}"));
        }
        5 => {
            insert(text, last, b",");
            desc.push("text: trailing comma".into());
        }
        6 => {
            let key = *rng.pick(&["keyslots", "tokens", "segments", "digests", "config"]);
            let val = *rng.pick(&["{}", "[]", "null"]);
            if rng.percent(50) {
                insert(text, 1, format!("\"{key}\":{val},").as_bytes());
                desc.push(format!("text: duplicate {key}={val} before the real one"));
            } else {
                insert(text, last, format!(",\"{key}\":{val}").as_bytes());
                desc.push(format!("text: duplicate {key}={val} after the real one"));
            }
        }
        7 | 8 => {
            let lit = *rng.pick(&[
                "\"aes-xts-plain64\"",
                "\"sha256\"",
                "\"luks2\"",
                "\"crypt\"",
                "\"dynamic\"",
                "\"pbkdf2\"",
                "\"keyslots\"",
                "\"0\"",
            ]);
            let raw: &[&[u8]] = &[
                b"\0",
                b"\xff",
                b"\x01",
                b"\x7f",
                b"\xc3",
                b"\\u0000",
                b"\\ud800",
                b"\\udc00",
                b"\\ud800\\u0041",
                b"\\u00e9",
                b"\\/",
                b"\\x",
                b"\\",
            ];
            let what = *rng.pick(raw);
            if let Some(p) = find(text, lit.as_bytes()) {
                let at = if rng.percent(50) {
                    p + 2
                } else {
                    p + lit.len() - 1
                };
                insert(text, at, what);
            }
            desc.push(format!(
                "text: {} inside {lit}",
                String::from_utf8_lossy(what).escape_debug()
            ));
        }
        9 => {
            text.truncate(last);
            desc.push("text: last byte cut".into());
        }
        10 => {
            let spaced: Vec<u8> = text
                .iter()
                .flat_map(|&c| if c == b',' { vec![b',', b' '] } else { vec![c] })
                .collect();
            *text = spaced;
            desc.push("text: spaces after commas".into());
        }
        11 => {
            let n = *rng.pick(&[
                "+1", "1.", "-", ".5", "1e", "1e+", "0x1", "01.5", "1.-5", "- 1",
            ]);
            insert(text, last, format!(",\"x-num\":{n}").as_bytes());
            desc.push(format!("text: number {n}"));
        }
        13 => {
            // A duplicate key inside an object: the last one wins.
            let (find_s, repl) = *rng.pick(&[
                ("\"type\":\"luks2\"", "\"type\":\"x\",\"type\":\"luks2\""),
                (
                    "\"type\":\"luks2\"",
                    "\"type\":\"luks2\",\"type\":\"luks1\"",
                ),
                (
                    "\"type\":\"crypt\"",
                    "\"type\":\"crypt\",\"type\":\"linear\"",
                ),
                ("\"hash\":\"sha256\"", "\"hash\":\"sha256\",\"hash\":\"\""),
            ]);
            if let Some(p) = find(text, find_s.as_bytes()) {
                text.splice(p..p + find_s.len(), repl.bytes());
            }
            desc.push(format!("text: {find_s} -> {repl}"));
        }
        14 => {
            // Escapes and NULs in object keys (json-c cuts a key at its first NUL).
            let (find_s, repl) = *rng.pick(&[
                ("\"0\":{", "\"\\u0030\":{"),
                ("\"0\":{", "\"0\\u0000x\":{"),
                ("\"1\":{", "\"0\\u0000\":{"),
                ("\"keyslots\":", "\"keyslots\\u0000\":"),
                ("\"0\":{", "'0':{"),
            ]);
            if let Some(p) = find(text, find_s.as_bytes()) {
                text.splice(p..p + find_s.len(), repl.bytes());
            }
            desc.push(format!("text: key {find_s} -> {repl}"));
        }
        15 | 16 => {
            // Padding that brings the text near the end of the area: raw control characters
            // and tabs take more room when json-c writes the metadata back.
            let (fill, what): (u8, &str) = *rng.pick(&[(1, "\\x01"), (b'\t', "tab"), (b'a', "a")]);
            let slack = *rng.pick(&[1usize, 2, 3, 6, 10, 40]);
            let room = area_len.saturating_sub(text.len() + 12 + slack);
            let mut pad = b",\"x-pad\":\"".to_vec();
            pad.extend(std::iter::repeat_n(fill, room));
            pad.push(b'"');
            insert(text, last, &pad);
            desc.push(format!(
                "text: padded with {room} {what} to {} bytes of {area_len}",
                text.len()
            ));
        }
        _ => {
            let lit = *rng.pick(&[
                "nul",
                "nulls",
                "NULL",
                "tru",
                "True",
                "fals",
                "nan",
                "NAN",
                "inf",
                "INFINITY",
                "-infinity",
                "Infinityx",
            ]);
            insert(text, last, format!(",\"x-lit\":{lit}").as_bytes());
            desc.push(format!("text: literal {lit}"));
        }
    }
}

/// Write `text` as the JSON area of the copy at `off`, with an occasional framing edit.
fn write_area(
    img: &mut [u8],
    off: usize,
    hs: usize,
    text: &[u8],
    rng: &mut Rng,
    desc: &mut Vec<String>,
) {
    let area = &mut img[off + BIN..off + hs];
    area.fill(0);
    let n = text.len().min(area.len());
    area[..n].copy_from_slice(&text[..n]);
    if text.len() >= area.len() {
        desc.push(format!("text of {} bytes fills the area", text.len()));
    }
    match rng.below(60) {
        0 if n + 3 < area.len() => {
            area[n + 1 + rng.below(area.len() - n - 2)] = b'x';
            desc.push("area: garbage after the NUL".into());
        }
        1 => {
            let room = area.len() - n;
            area[n..].fill(b' ');
            if rng.percent(50) {
                area[area.len() - 1] = 0;
                desc.push(format!("area: {} trailing spaces, last byte NUL", room - 1));
            } else {
                desc.push(format!("area: {room} trailing spaces, no NUL"));
            }
        }
        2 if n + 4 < area.len() => {
            area[n + 1..n + 3].copy_from_slice(b"{}");
            desc.push("area: second JSON object after the NUL".into());
        }
        _ => {}
    }
}

/// One edit of the binary header of the copy at `off`.
fn binary_mutation(
    img: &mut [u8],
    off: usize,
    which: &str,
    base: &Base,
    rng: &mut Rng,
    desc: &mut Vec<String>,
) {
    let b = &mut img[off..off + BIN];
    let note = match rng.below(14) {
        0 => {
            let magics: [&[u8]; 4] = [
                b"SKUL\xba\xbe",
                b"LUKS\xba\xbe",
                b"\0\0\0\0\0\0",
                b"LUKS\xba\xbf",
            ];
            let m = *rng.pick(&magics);
            b[..6].copy_from_slice(m);
            format!("magic={}", String::from_utf8_lossy(m).escape_debug())
        }
        1 => {
            let v = *rng.pick(&[0u16, 1, 3, 0x200, 0xffff]);
            b[6..8].copy_from_slice(&v.to_be_bytes());
            format!("version={v}")
        }
        2 | 3 => {
            let v = *rng.pick(&[
                0x4000u64,
                0x8000,
                0x10000,
                0x20000,
                0x400000,
                0x3000,
                0x5000,
                0x4001,
                0x800000,
                0,
                u64::MAX,
            ]);
            put64(b, OFF_HDR_SIZE, v);
            format!("hdr_size={v:#x}")
        }
        4 => {
            let v = *rng.pick(&[
                0,
                base.seqid.wrapping_sub(1),
                base.seqid + 1,
                base.seqid + 100,
                u64::MAX,
            ]);
            put64(b, OFF_SEQID, v);
            format!("seqid={v}")
        }
        5 => {
            let (fill, what): (&[u8], &str) = *rng.pick(&[
                (&b"L"[..], "48 bytes"),
                (b"\xff", "invalid UTF-8"),
                (b"\0", "empty"),
            ]);
            let len = if what == "48 bytes" { 48 } else { 4 };
            b[24..72].fill(0);
            for i in 0..len {
                b[24 + i] = fill[0];
            }
            format!("label {what}")
        }
        6 | 7 => {
            let name = *rng.pick(&[
                "sha1",
                "sha224",
                "sha256",
                "sha384",
                "sha512",
                "SHA256",
                "Sha256",
                "sha-256",
                "sha2-256",
                "sha3-256",
                "sha3-512",
                "sha512-256",
                "md5",
                "ripemd160",
                "rmd160",
                "blake2b-512",
                "blake2s-256",
                "blake2b512",
                "whirlpool",
                "sm3",
                "",
                "crc32",
                "sha257",
                "shake256",
                "md5-sha1",
                "0123456789abcdef0123456789abcdef",
            ]);
            b[OFF_CSUM_ALG..OFF_CSUM_ALG + 32].fill(0);
            let n = name.len().min(32);
            b[OFF_CSUM_ALG..OFF_CSUM_ALG + n].copy_from_slice(&name.as_bytes()[..n]);
            format!("csum_alg={name:?}")
        }
        8 => {
            let v = *rng.pick(&[0u64, 0x4000, 0x8000, 4096, u64::MAX]);
            put64(b, 256, v);
            format!("hdr_offset={v:#x}")
        }
        9 => {
            let (fill, what) = *rng.pick(&[
                (b'U', "40 bytes, no NUL"),
                (0xff, "invalid UTF-8"),
                (0, "empty"),
                (b'-', "dashes"),
            ]);
            b[168..208].fill(0);
            let len = if what == "40 bytes, no NUL" { 40 } else { 36 };
            b[168..168 + len].fill(fill);
            format!("uuid {what}")
        }
        10 => {
            b[208..256].fill(b'S');
            "subsystem 48 bytes".into()
        }
        11 => {
            let s = rng.bytes(64);
            b[104..168].copy_from_slice(&s);
            "salt random".into()
        }
        12 => {
            let at = 512 + rng.below(BIN - 512);
            b[at] = 0x5a;
            format!("padding byte {at}")
        }
        _ => {
            b[OFF_CSUM + 60] = 0x77;
            "csum field byte 60 set".into()
        }
    };
    desc.push(format!("{which} binary: {note}"));
}

/// Recompute the checksum of the copy at `off` with its own `csum_alg` over its own
/// `hdr_size` (sha256 when the name is unknown here), growing `img` from the base as needed.
fn fix_checksum(img: &mut Vec<u8>, off: usize, base: &Base) {
    let hs = be64(img, off + OFF_HDR_SIZE);
    if !(0x4000..=0x400000).contains(&hs) {
        return;
    }
    let end = off + hs as usize;
    if end > img.len() {
        let from = img.len();
        img.resize(end, 0);
        let avail = base.content.len().min(end);
        if avail > from {
            img[from..avail].copy_from_slice(&base.content[from..avail]);
        }
    }
    let name = c_str(&img[off + OFF_CSUM_ALG..off + OFF_CSUM_ALG + 32]);
    let alg = ChecksumAlg::from_name(&name).unwrap_or(ChecksumAlg::Sha256);
    let len = alg.output_len();
    let mut zeroed = img[off..off + BIN].to_vec();
    zeroed[OFF_CSUM..OFF_CSUM + 64].fill(0);
    let sum = alg.digest(&[&zeroed, &img[off + BIN..end]]);
    img[off + OFF_CSUM..off + OFF_CSUM + len].copy_from_slice(&sum);
}

/// An LVM2 PV label (as `pvcreate` writes it in sector 1), with a right or a wrong checksum.
pub fn lvm2_label(sector: &mut [u8], valid: bool) {
    sector.fill(0);
    sector[..8].copy_from_slice(b"LABELONE");
    sector[8..16].copy_from_slice(&1u64.to_le_bytes());
    sector[20..24].copy_from_slice(&32u32.to_le_bytes());
    sector[24..32].copy_from_slice(b"LVM2 001");
    sector[32..64].copy_from_slice(b"abcdefghijklmnopqrstuvwxyz012345");
    let mut crc = 0xf597_a6cf_u32;
    for &b in &sector[20..] {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    let crc = if valid { crc } else { crc ^ 1 };
    sector[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// Both copies with the JSON area `text` (zero-filled), checksum algorithm `csum_alg` (the
/// base's when `None`), checksums recomputed: a deterministic case for table tests.
pub fn with_text(base: &Base, text: &[u8], csum_alg: Option<&str>) -> Mutant {
    let hs = base.hdr_size;
    let mut img = base.content[..2 * hs].to_vec();
    for off in [0, hs] {
        let area = &mut img[off + BIN..off + hs];
        area.fill(0);
        let n = text.len().min(area.len());
        area[..n].copy_from_slice(&text[..n]);
        if let Some(name) = csum_alg {
            let field = &mut img[off + OFF_CSUM_ALG..off + OFF_CSUM_ALG + 32];
            field.fill(0);
            field[..name.len()].copy_from_slice(name.as_bytes());
        }
    }
    for off in [hs, 0] {
        fix_checksum(&mut img, off, base);
    }
    Mutant {
        desc: vec![String::from_utf8_lossy(text).into_owned()],
        image: img,
        file_len: base.content.len() as u64,
    }
}

/// Recompute both checksums of `m` after an edit (each copy with its own csum_alg and
/// hdr_size).
pub fn refresh_checksums(base: &Base, m: &mut Mutant) {
    for off in [base.hdr_size, 0] {
        fix_checksum(&mut m.image, off, base);
    }
}

/// A 16 KiB secondary copy at 0x4000 made from the real secondary's binary header at `hs`.
fn decoy_secondary(img: &mut [u8], hs: usize, json: &[u8], good_csum: bool) {
    const AT: usize = 0x4000;
    let mut copy = img[hs..hs + BIN].to_vec();
    put64(&mut copy, OFF_HDR_SIZE, AT as u64);
    put64(&mut copy, 256, AT as u64);
    copy[OFF_CSUM..OFF_CSUM + 64].fill(0);
    copy.resize(AT, 0);
    let n = json.len().min(AT - BIN - 1);
    copy[BIN..BIN + n].copy_from_slice(&json[..n]);
    let name = c_str(&copy[OFF_CSUM_ALG..OFF_CSUM_ALG + 32]);
    let alg = ChecksumAlg::from_name(&name).unwrap_or(ChecksumAlg::Sha256);
    let sum = alg.digest(&[&copy[..BIN], &copy[BIN..]]);
    copy[OFF_CSUM..OFF_CSUM + sum.len()].copy_from_slice(&sum);
    if !good_csum {
        copy[OFF_CSUM] ^= 1;
    }
    img[AT..2 * AT].copy_from_slice(&copy);
}

/// How the two copies are mutated.
#[derive(Clone, Copy, PartialEq)]
enum Plan {
    Both,
    PrimaryOnly,
    SecondaryOnly,
    Apart,
    BinaryOnly,
}

/// Build mutant number `index` of the run seeded `seed`.
pub fn make(base: &Base, seed: u64, index: u64) -> Mutant {
    let mut rng = Rng::for_mutant(seed, index);
    let rng = &mut rng;
    let hs = base.hdr_size;
    let mut img = base.content[..2 * hs].to_vec();
    let mut desc = Vec::new();
    let plan = match rng.below(100) {
        0..=44 => Plan::Both,
        45..=57 => Plan::PrimaryOnly,
        58..=70 => Plan::SecondaryOnly,
        71..=79 => Plan::Apart,
        _ => Plan::BinaryOnly,
    };
    let (tp, ts) = match plan {
        Plan::Both => {
            let t = mutated_text(base, rng, &mut desc);
            desc.push("(both copies)".into());
            (t.clone(), t)
        }
        Plan::PrimaryOnly => {
            let t = mutated_text(base, rng, &mut desc);
            desc.push("(primary only)".into());
            (t, base.text.clone())
        }
        Plan::SecondaryOnly => {
            let t = mutated_text(base, rng, &mut desc);
            desc.push("(secondary only)".into());
            (base.text.clone(), t)
        }
        Plan::Apart => {
            desc.push("primary:".into());
            let a = mutated_text(base, rng, &mut desc);
            desc.push("secondary:".into());
            let b = mutated_text(base, rng, &mut desc);
            (a, b)
        }
        Plan::BinaryOnly => (base.text.clone(), base.text.clone()),
    };
    write_area(&mut img, 0, hs, &tp, rng, &mut desc);
    write_area(&mut img, hs, hs, &ts, rng, &mut desc);
    if rng.percent(25) {
        let who = if rng.percent(50) { 0 } else { hs };
        put64(&mut img, who + OFF_SEQID, base.seqid + 1);
        desc.push(format!(
            "{} seqid+1",
            if who == 0 { "primary" } else { "secondary" }
        ));
    }
    let binary_ops = if plan == Plan::BinaryOnly {
        1 + rng.below(2)
    } else {
        usize::from(rng.percent(12))
    };
    for _ in 0..binary_ops {
        let (off, which) = if rng.percent(50) {
            (0, "primary")
        } else {
            (hs, "secondary")
        };
        binary_mutation(&mut img, off, which, base, rng, &mut desc);
    }
    let keep = [rng.percent(6), rng.percent(6)];
    for (i, off) in [(1, hs), (0, 0)] {
        if keep[i] {
            desc.push(format!(
                "{} checksum not recomputed",
                if i == 0 { "primary" } else { "secondary" }
            ));
        } else {
            fix_checksum(&mut img, off, base);
        }
    }
    final_edits(&mut img, base, rng, &mut desc)
}

/// Edits after the checksums: a flipped checksum byte, a killed copy, an LVM2 label, a short file.
fn final_edits(img: &mut Vec<u8>, base: &Base, rng: &mut Rng, desc: &mut Vec<String>) -> Mutant {
    let hs = base.hdr_size;
    let mut file_len = base.content.len() as u64;
    match rng.below(100) {
        0..=2 => {
            let off = if rng.percent(50) { 0 } else { hs };
            img[off + OFF_CSUM] ^= 1;
            desc.push(format!("checksum byte flipped at {off}"));
        }
        3..=6 => {
            let off = if rng.percent(50) { 0 } else { hs };
            img[off..off + 8].fill(0);
            desc.push(format!("copy at {off} killed (magic zeroed)"));
        }
        7 | 14 => {
            let valid = rng.percent(60);
            lvm2_label(&mut img[512..1024], valid);
            // Half the time the primary's checksum covers the label (the copy stays valid).
            let covered = rng.percent(50);
            if covered {
                fix_checksum(img, 0, base);
            }
            desc.push(format!(
                "LVM2 label in sector 1 (valid: {valid}, in the primary's checksum: {covered})"
            ));
        }
        11..=13 if hs > 0x4000 => {
            // The primary unreadable and a decoy secondary at 0x4000 (inside the primary's own
            // area) before the real one: the scan stops at the first copy whose checksum
            // passes, whatever its JSON says.
            img[..8].fill(0);
            let good_csum = rng.percent(60);
            let json: &[u8] = if rng.percent(50) { b"{}" } else { &base.text };
            decoy_secondary(img, hs, json, good_csum);
            desc.push(format!(
                "primary killed, decoy secondary at 0x4000 (checksum valid: {good_csum}, {} bytes of JSON)",
                json.len()
            ));
        }
        8..=10 => {
            let hs = hs as u64;
            let need = 2 * hs + base.geo.keyslots_size;
            let len = *rng.pick(&[need - 512, need, hs + 4096, 2 * hs, 4096]);
            file_len = len;
            desc.push(format!("file cut to {len} bytes"));
        }
        _ => {}
    }
    if (img.len() as u64) > file_len {
        img.truncate(file_len as usize);
    }
    Mutant {
        desc: std::mem::take(desc),
        image: std::mem::take(img),
        file_len,
    }
}
