//! Shared test helpers: locating ../shared, decompressing images, running cryptsetup.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `../shared` relative to the repository root, if present.
pub fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if p.join("luks2-images").is_dir() {
        Some(p)
    } else {
        None
    }
}

#[macro_export]
macro_rules! need_shared {
    () => {
        match common::shared() {
            Some(p) => p,
            None => {
                eprintln!("SKIP: ../shared/luks2-images is absent (resolved from CARGO_MANIFEST_DIR/../../../shared)");
                return;
            }
        }
    };
}

#[macro_export]
macro_rules! need_cryptsetup {
    () => {
        if !common::have_cryptsetup() {
            eprintln!("SKIP: cryptsetup is not installed (apt-get install cryptsetup-bin)");
            return;
        }
    };
}

pub fn have_cryptsetup() -> bool {
    Command::new("cryptsetup")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Decompress `src` (.xz) into `dir`, returning the new file's path.
pub fn unxz(src: &Path, dir: &Path) -> PathBuf {
    let name = src
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".xz")
        .to_string();
    let out = dir.join(name);
    let f = std::fs::File::create(&out).unwrap();
    let st = Command::new("xz")
        .arg("-dc")
        .arg(src)
        .stdout(f)
        .status()
        .expect("xz must be installed");
    assert!(st.success(), "xz -dc {}", src.display());
    out
}

/// Extract a .tar.xz into `dir`.
pub fn untar(src: &Path, dir: &Path) {
    let st = Command::new("tar")
        .arg("xJf")
        .arg(src)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Run cryptsetup in batch mode with the given args, feeding `stdin`.
pub fn cs(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut c = Command::new("cryptsetup");
    c.arg("-q")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn cryptsetup");
    let mut si = child.stdin.take().unwrap();
    if let Some(d) = stdin {
        let _ = si.write_all(d);
    }
    drop(si);
    child.wait_with_output().unwrap()
}

pub fn cs_ok(args: &[&str], stdin: Option<&[u8]>) -> String {
    let o = cs(args, stdin);
    assert!(
        o.status.success(),
        "cryptsetup {:?} failed: {}",
        args,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `luksDump --dump-volume-key` via a key file; returns the key bytes.
pub fn cs_volume_key(dev: &Path, keyfile: &Path, header: Option<&Path>) -> Vec<u8> {
    let mut args = vec!["luksDump", "--dump-volume-key", "--key-file"];
    let kf = keyfile.to_str().unwrap();
    args.push(kf);
    let h;
    if let Some(hp) = header {
        h = hp.to_str().unwrap().to_string();
        args.push("--header");
        args.push(&h);
    }
    let d = dev.to_str().unwrap();
    args.push(d);
    let out = cs_ok(&args, None);
    let mut hexs = String::new();
    let mut in_key = false;
    for line in out.lines() {
        if let Some(rest) = line
            .split_once("MK dump:")
            .map(|x| x.1)
            .or_else(|| line.split_once("Volume key:").map(|x| x.1))
        {
            in_key = true;
            hexs.push_str(rest);
        } else if in_key && line.starts_with(|c: char| c.is_whitespace()) && !line.trim().is_empty()
        {
            hexs.push_str(line);
        } else if in_key {
            in_key = false;
        }
    }
    let clean: String = hexs.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    hex::decode(clean).expect("volume key hex")
}

pub fn write_file(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
}

/// The JSON text (up to its NUL) of the header copy at `offset` in a raw image.
pub fn json_text(raw: &[u8], offset: usize, hdr_size: usize) -> Vec<u8> {
    let area = &raw[offset + 4096..offset + hdr_size];
    let end = area.iter().position(|&b| b == 0).unwrap();
    area[..end].to_vec()
}

/// Rewrite the JSON text of the header copies at `offsets` of `img` (attached header,
/// `hdr_size` bytes per copy) through `edit`, with valid checksums: a header as if cryptsetup
/// had written that text.
pub fn edit_json_text(
    img: &Path,
    hdr_size: usize,
    offsets: &[usize],
    edit: impl Fn(&str) -> String,
) {
    use strongroom_luks::hash::HashAlg;
    use strongroom_luks::header::binary;
    let mut raw = std::fs::read(img).unwrap();
    for &off in offsets {
        let text = String::from_utf8(json_text(&raw, off, hdr_size)).unwrap();
        let new = edit(&text);
        let area = &mut raw[off + 4096..off + hdr_size];
        assert!(new.len() < area.len(), "edited JSON fits the area");
        area.fill(0);
        area[..new.len()].copy_from_slice(new.as_bytes());
        let csum = binary::checksum(
            HashAlg::Sha256,
            &raw[off..off + 4096],
            &raw[off + 4096..off + hdr_size],
        );
        binary::set_checksum(&mut raw[off..off + 4096], &csum);
    }
    std::fs::write(img, raw).unwrap();
}
