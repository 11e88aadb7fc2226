//! High-level LUKS2 volume API: format, unlock, add/remove/change keys, repair, tokens.
//!
//! Write ordering (crash safety, see [`crate::update`]):
//! - add-key: keyslot material into a free area (unused by the old header), then the header.
//! - remove-key: header without the slot, then the wipe of its area.
//! - change-key: new material into a free area, header pointing the same slot id at it, then the
//!   wipe of the old area.
//!
//! A header with any `config.requirements.mandatory` flag (reencryption in progress, unknown
//! features) is read-only here: keyslots can be tested, but no write and no activation.

use crate::crypt::CryptDevice;
use crate::device::BlockDevice;
use crate::digest;
use crate::error::{Error, HeaderCopy, Result};
use crate::format::{self, FormatParams, KdfParams, KeyslotParams};
use crate::hash::HashAlg;
use crate::header::{self, CopyState, Header, LoadOptions, LoadReport};
use crate::keyslot;
use crate::model::{self, DigestInfo, Kdf, Keyslot, Segment};
use crate::update;
use crate::validate::{self, KEYSLOTS_MAX};
use crate::xts::Backend;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

pub struct Volume<D> {
    dev: D,
    header: Header,
    report: LoadReport,
}

/// Result of a successful unlock.
pub struct Unlocked {
    pub slot: u32,
    pub digest: u32,
    /// False for an unbound key (its digest has no segment): testable, never activatable.
    pub bound: bool,
    pub volume_key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlocked")
            .field("slot", &self.slot)
            .field("digest", &self.digest)
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

fn obj_mut<'a>(meta: &'a mut Map<String, Value>, key: &str) -> Result<&'a mut Map<String, Value>> {
    meta.get_mut(key)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::Unsupported(format!("metadata has no {key} object")))
}

fn remove_id_from_arrays(section: &mut Map<String, Value>, id: &str) {
    for v in section.values_mut() {
        if let Some(Value::Array(a)) = v.get_mut("keyslots") {
            a.retain(|x| x.as_str() != Some(id));
        }
    }
}

impl<D: BlockDevice> Volume<D> {
    pub fn open(dev: D) -> Result<Self> {
        Self::open_with(dev, LoadOptions::default())
    }

    pub fn open_with(dev: D, opts: LoadOptions) -> Result<Self> {
        let (header, report) = header::load(&dev, opts)?;
        Ok(Volume {
            dev,
            header,
            report,
        })
    }

    /// Create a new volume. Returns it with its volume key.
    pub fn format(
        dev: D,
        params: &FormatParams,
        passphrase: &[u8],
    ) -> Result<(Self, Zeroizing<Vec<u8>>)> {
        let layout = params.layout()?;
        let key_len = params.key_size_bits / 8;
        let vk = match &params.volume_key {
            Some(k) => k.clone(),
            None => format::random_volume_key(key_len),
        };
        check_format(&dev, params, &layout, &vk)?;
        let slot = params.keyslot.slot.unwrap_or(0);
        let mut ks = format::new_keyslot(
            slot,
            key_len,
            &params.cipher,
            2 * layout.hdr_size,
            params.keyslot.kdf.instantiate()?,
            params.keyslot.priority.unwrap_or(1),
        );
        ks.af_hash = af_hash_for(&ks.kdf);
        let digest = new_digest(params, &vk, slot)?;
        let meta = fresh_meta(params, &layout, &ks, &digest);
        let mut header = fresh_header(params, &layout, meta);
        validate::validate(&header.meta, header.hdr_size, None)
            .map_err(|e| e.at(HeaderCopy::Primary))?;
        prepare_header_area(&dev, &layout)?;
        keyslot::create(&dev, &ks, passphrase, &vk)?;
        update::write_fresh_header(&dev, &mut header)?;
        let fresh = || CopyState::Valid {
            seqid: header.seqid,
        };
        let report = LoadReport {
            used: HeaderCopy::Primary,
            primary: fresh(),
            secondary: fresh(),
            needs_repair: None,
            repaired_in_memory: vec![],
        };
        let volume = Volume {
            dev,
            header,
            report,
        };
        Ok((volume, vk))
    }

    pub fn header(&self) -> &Header {
        &self.header
    }
    pub fn report(&self) -> &LoadReport {
        &self.report
    }
    pub fn device(&self) -> &D {
        &self.dev
    }
    pub fn into_device(self) -> D {
        self.dev
    }

    pub fn requirements(&self) -> Vec<String> {
        validate::requirements_list(&self.header.meta)
    }

    /// Why this header must not be written or activated, if it must not.
    pub fn read_only_reason(&self) -> Option<String> {
        let req = self.requirements();
        if req.is_empty() {
            None
        } else {
            Some(format!(
                "header requires unsupported features: {}",
                req.join(", ")
            ))
        }
    }

    fn ensure_writable(&self) -> Result<()> {
        match self.read_only_reason() {
            Some(r) => Err(Error::ReadOnly(r)),
            None => Ok(()),
        }
    }

    /// (id, type, priority) of every keyslot.
    pub fn keyslots(&self) -> Vec<(u32, String, u8)> {
        model::keyslot_list(&self.header.meta)
    }

    pub fn keyslot(&self, id: u32) -> Result<Keyslot> {
        Keyslot::from_meta(&self.header.meta, id)
    }

    /// Try the passphrase: on `slot` only if given (whatever its priority, bound or not);
    /// otherwise on every luks2 keyslot bound to a segment (or any, with `include_unbound`),
    /// priority 2 first, then 1; priority 0 slots are skipped.
    pub fn unlock(
        &self,
        passphrase: &[u8],
        slot: Option<u32>,
        include_unbound: bool,
    ) -> Result<Unlocked> {
        let list = self.keyslots();
        let mut candidates: Vec<(u32, u8)> = match slot {
            Some(s) => {
                if !list.iter().any(|(id, t, _)| *id == s && t == "luks2") {
                    return Err(Error::keyslot(s, "no such luks2 keyslot"));
                }
                vec![(s, 2)]
            }
            None => list
                .iter()
                .filter(|(_, t, p)| t == "luks2" && *p > 0)
                .map(|(id, _, p)| (*id, *p))
                .collect(),
        };
        candidates.sort_by_key(|&(id, p)| (std::cmp::Reverse(p), id));
        let mut last_err = None;
        for (id, _) in candidates {
            let d = match DigestInfo::for_keyslot(&self.header.meta, id) {
                Ok(d) => d,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let bound = !d.segments.is_empty();
            if slot.is_none() && !bound && !include_unbound {
                continue;
            }
            let ks = match self.keyslot(id) {
                Ok(k) => k,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            match keyslot::open(&self.dev, &ks, passphrase) {
                Ok(vk) => {
                    if digest::verify(&d, &vk)? {
                        return Ok(Unlocked {
                            slot: id,
                            digest: d.id,
                            bound,
                            volume_key: vk,
                        });
                    }
                }
                Err(e @ Error::Io { .. }) => return Err(e),
                Err(e) => last_err = Some(e),
            }
        }
        match (slot, last_err) {
            (Some(_), Some(e)) => Err(e),
            _ => Err(Error::WrongKey),
        }
    }

    /// The digest id that `vk` matches.
    pub fn verify_volume_key(&self, vk: &[u8]) -> Result<u32> {
        for d in DigestInfo::all(&self.header.meta)? {
            if digest::verify(&d, vk)? {
                return Ok(d.id);
            }
        }
        Err(Error::WrongKey)
    }

    /// The data segment (segment 0), if this engine may activate it.
    pub fn data_segment(&self) -> Result<Segment> {
        if let Some(r) = self.read_only_reason() {
            return Err(Error::ReadOnly(format!("{r}; activation refused")));
        }
        let seg = Segment::from_meta(&self.header.meta, 0)?;
        if seg.kind != "crypt" {
            return Err(Error::Unsupported(format!(
                "segment 0 has type {:?}",
                seg.kind
            )));
        }
        if !crate::cipher::supported(&seg.encryption) {
            return Err(Error::Unsupported(format!(
                "segment cipher {:?}",
                seg.encryption
            )));
        }
        Ok(seg)
    }

    /// An encrypted device over `data_dev` (this device for an attached header, another one for
    /// a detached header) with an unlocked, bound volume key.
    pub fn crypt_device<E: BlockDevice>(
        &self,
        data_dev: E,
        unlocked: &Unlocked,
        backend: Backend,
    ) -> Result<CryptDevice<E>> {
        let seg = self.data_segment()?;
        let d = DigestInfo::all(&self.header.meta)?
            .into_iter()
            .find(|d| d.id == unlocked.digest)
            .ok_or(Error::WrongKey)?;
        if !d.segments.contains(&seg.id) || !digest::verify(&d, &unlocked.volume_key)? {
            return Err(Error::InvalidArgument(
                "this key is not bound to the data segment (unbound key)".into(),
            ));
        }
        CryptDevice::new(data_dev, &seg, &unlocked.volume_key, backend)
    }

    fn commit(&mut self) -> Result<()> {
        let used = self.report.used;
        let mut h = self.header.clone();
        update::write_header(&self.dev, &mut h, used)?;
        self.header = h;
        self.report.primary = CopyState::Valid {
            seqid: self.header.seqid,
        };
        self.report.secondary = CopyState::Valid {
            seqid: self.header.seqid,
        };
        self.report.needs_repair = None;
        Ok(())
    }

    /// Rewrite the invalid or stale copy from the valid one. Returns what was repaired.
    pub fn repair(&mut self) -> Result<Option<(HeaderCopy, String)>> {
        let r = self.report.needs_repair.clone();
        if r.is_some() {
            self.ensure_writable()?;
            self.commit()?;
        }
        Ok(r)
    }

    fn free_area(&self, size: u64) -> Result<u64> {
        let h = &self.header;
        let start = 2 * h.hdr_size;
        let ks_size = h
            .meta
            .get("config")
            .and_then(|c| c.get("keyslots_size"))
            .and_then(Value::as_str)
            .and_then(validate::parse_u64)
            .unwrap_or(0);
        let end = start + ks_size;
        let mut used: Vec<(u64, u64)> = h
            .meta
            .get("keyslots")
            .and_then(Value::as_object)
            .map(|k| {
                k.values()
                    .filter_map(|v| {
                        let a = v.get("area")?;
                        let o = a.get("offset")?.as_str().and_then(validate::parse_u64)?;
                        let s = a.get("size")?.as_str().and_then(validate::parse_u64)?;
                        Some((o, o.saturating_add(s)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        used.sort();
        let mut cand = start;
        for (o, e) in used {
            if cand + size <= o {
                break;
            }
            cand = cand.max(e.div_ceil(4096) * 4096);
        }
        if cand + size <= end {
            Ok(cand)
        } else {
            Err(Error::NoSpace(
                "no free keyslot area left in the keyslots area".into(),
            ))
        }
    }

    fn free_slot(&self, wanted: Option<u32>) -> Result<u32> {
        let taken: Vec<u32> = self.keyslots().iter().map(|k| k.0).collect();
        match wanted {
            Some(s) if s >= KEYSLOTS_MAX => Err(Error::InvalidArgument(format!(
                "keyslot id must be below {KEYSLOTS_MAX}"
            ))),
            Some(s) if taken.contains(&s) => {
                Err(Error::InvalidArgument(format!("keyslot {s} is in use")))
            }
            Some(s) => Ok(s),
            None => (0..KEYSLOTS_MAX)
                .find(|s| !taken.contains(s))
                .ok_or_else(|| Error::NoSpace("all 32 keyslots are in use".into())),
        }
    }

    /// The cipher new keyslots use: the segment cipher if this engine supports it.
    fn keyslot_cipher(&self, vk_len: usize) -> String {
        let seg = Segment::from_meta(&self.header.meta, 0).ok();
        match seg {
            Some(s)
                if s.kind == "crypt"
                    && s.encryption.starts_with("aes-xts-")
                    && (vk_len == 32 || vk_len == 64) =>
            {
                s.encryption
            }
            _ => "aes-xts-plain64".into(),
        }
    }

    /// Add a keyslot for a known volume key. Returns the new slot id.
    pub fn add_keyslot(
        &mut self,
        vk: &[u8],
        new_passphrase: &[u8],
        params: &KeyslotParams,
    ) -> Result<u32> {
        self.ensure_writable()?;
        let digest_id = self.verify_volume_key(vk)?;
        let slot = self.free_slot(params.slot)?;
        let kdf = params.kdf.instantiate()?;
        let area_len = keyslot::area_size(vk.len(), format::AF_STRIPES);
        let offset = self.free_area(area_len)?;
        let enc = if vk.len() == 32 || vk.len() == 64 {
            self.keyslot_cipher(vk.len())
        } else {
            "aes-xts-plain64".into()
        };
        let area_key = if enc.starts_with("aes-xts-") && vk.len() != 32 && vk.len() != 64 {
            64
        } else {
            vk.len()
        };
        let mut ks = format::new_keyslot(
            slot,
            vk.len(),
            &enc,
            offset,
            kdf,
            params.priority.unwrap_or(1),
        );
        ks.area.key_size = area_key;
        ks.af_hash = af_hash_for(&ks.kdf);
        keyslot::create(&self.dev, &ks, new_passphrase, vk)?;
        self.dev
            .flush()
            .map_err(|e| Error::io("flush after keyslot write", e))?;
        obj_mut(&mut self.header.meta, "keyslots")?.insert(slot.to_string(), ks.to_json());
        let digests = obj_mut(&mut self.header.meta, "digests")?;
        if let Some(Value::Array(a)) = digests
            .get_mut(&digest_id.to_string())
            .and_then(|d| d.get_mut("keyslots"))
        {
            a.push(Value::String(slot.to_string()));
        }
        if let Err(e) = self.commit() {
            // Keep the in-memory header consistent with the disk's old state.
            if let Ok((h, r)) = header::load(&self.dev, LoadOptions::default()) {
                self.header = h;
                self.report = r;
            }
            return Err(e);
        }
        Ok(slot)
    }

    /// Add a keyslot for `new_passphrase`, unlocking with `passphrase`.
    pub fn add_key(
        &mut self,
        passphrase: &[u8],
        new_passphrase: &[u8],
        params: &KeyslotParams,
    ) -> Result<u32> {
        self.ensure_writable()?;
        let u = self.unlock(passphrase, None, true)?;
        self.add_keyslot(&u.volume_key, new_passphrase, params)
    }

    /// Remove a keyslot: header first, then wipe its area.
    pub fn remove_keyslot(&mut self, slot: u32) -> Result<()> {
        self.ensure_writable()?;
        let id = slot.to_string();
        let old = self
            .header
            .meta
            .get("keyslots")
            .and_then(|k| k.get(&id))
            .cloned()
            .ok_or_else(|| Error::keyslot(slot, "no such keyslot"))?;
        let area = old.get("area").and_then(|a| {
            let o = a.get("offset")?.as_str().and_then(validate::parse_u64)?;
            let s = a.get("size")?.as_str().and_then(validate::parse_u64)?;
            Some((o, s))
        });
        let saved = self.header.meta.clone();
        obj_mut(&mut self.header.meta, "keyslots")?.remove(&id);
        remove_id_from_arrays(obj_mut(&mut self.header.meta, "digests")?, &id);
        remove_id_from_arrays(obj_mut(&mut self.header.meta, "tokens")?, &id);
        if let Err(e) = self.commit() {
            self.header.meta = saved;
            return Err(e);
        }
        if let Some((o, s)) = area {
            keyslot::wipe(&self.dev, o, s)?;
        }
        Ok(())
    }

    /// Remove the keyslot that `passphrase` opens. Returns its id.
    pub fn remove_key(&mut self, passphrase: &[u8], slot: Option<u32>) -> Result<u32> {
        self.ensure_writable()?;
        let u = self.unlock(passphrase, slot, true)?;
        self.remove_keyslot(u.slot)?;
        Ok(u.slot)
    }

    /// Replace the passphrase of the keyslot `old` opens, keeping its id and priority (and its
    /// KDF type and parameters unless `kdf` is given). Returns the slot id.
    pub fn change_key(
        &mut self,
        old: &[u8],
        new: &[u8],
        slot: Option<u32>,
        kdf: Option<&KdfParams>,
    ) -> Result<u32> {
        self.ensure_writable()?;
        let u = self.unlock(old, slot, true)?;
        let old_ks = self.keyslot(u.slot)?;
        let kdf_params = match kdf {
            Some(k) => k.clone(),
            None => match &old_ks.kdf {
                Kdf::Pbkdf2 {
                    hash, iterations, ..
                } => KdfParams::Pbkdf2 {
                    hash: hash.clone(),
                    iterations: *iterations,
                },
                Kdf::Argon2 {
                    id: true,
                    time,
                    memory,
                    cpus,
                    ..
                } => KdfParams::Argon2id {
                    time: *time,
                    memory_kib: *memory,
                    cpus: *cpus,
                },
                Kdf::Argon2 {
                    id: false,
                    time,
                    memory,
                    cpus,
                    ..
                } => KdfParams::Argon2i {
                    time: *time,
                    memory_kib: *memory,
                    cpus: *cpus,
                },
            },
        };
        let offset = self.free_area(old_ks.area.size)?;
        let mut ks = old_ks.clone();
        ks.kdf = kdf_params.instantiate()?;
        ks.af_hash = af_hash_for(&ks.kdf);
        ks.area.offset = offset;
        keyslot::create(&self.dev, &ks, new, &u.volume_key)?;
        self.dev
            .flush()
            .map_err(|e| Error::io("flush after keyslot write", e))?;
        let saved = self.header.meta.clone();
        let mut v = ks.to_json();
        // Keep any extra fields the old keyslot had (e.g. a non-default priority).
        if let (Some(newo), Some(oldo)) = (
            v.as_object_mut(),
            saved
                .get("keyslots")
                .and_then(|k| k.get(u.slot.to_string())),
        ) {
            if let Some(p) = oldo.get("priority") {
                newo.insert("priority".into(), p.clone());
            }
        }
        obj_mut(&mut self.header.meta, "keyslots")?.insert(u.slot.to_string(), v);
        if let Err(e) = self.commit() {
            self.header.meta = saved;
            return Err(e);
        }
        keyslot::wipe(&self.dev, old_ks.area.offset, old_ks.area.size)?;
        Ok(u.slot)
    }

    /// Remove a token (its JSON is dropped; nothing else changes).
    pub fn remove_token(&mut self, id: u32) -> Result<()> {
        self.ensure_writable()?;
        let saved = self.header.meta.clone();
        if obj_mut(&mut self.header.meta, "tokens")?
            .remove(&id.to_string())
            .is_none()
        {
            return Err(Error::InvalidArgument(format!("token {id} does not exist")));
        }
        if let Err(e) = self.commit() {
            self.header.meta = saved;
            return Err(e);
        }
        Ok(())
    }

    /// A token's JSON, parsed (numbers beyond f64 precision are approximated; see
    /// [`Volume::token_text`] for the exact text).
    pub fn token(&self, id: u32) -> Option<&Value> {
        self.header
            .meta
            .get("tokens")
            .and_then(|t| t.get(id.to_string()))
    }

    /// A token's JSON text as stored, compact, as `cryptsetup token export` prints it.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.header.json_text_at(&["tokens", &id.to_string()])
    }
}

fn af_hash_for(kdf: &Kdf) -> String {
    match kdf {
        Kdf::Pbkdf2 { hash, .. } => hash.clone(),
        Kdf::Argon2 { .. } => "sha256".into(),
    }
}

/// What `format` refuses before writing anything: a key of the wrong length or unusable
/// with the cipher (e.g. equal XTS halves), a device too small for the data offset, a
/// digest below 1000 iterations, a keyslot id out of range.
fn check_format<D: BlockDevice>(
    dev: &D,
    params: &FormatParams,
    layout: &format::Layout,
    vk: &[u8],
) -> Result<()> {
    if vk.len() != params.key_size_bits / 8 {
        return Err(Error::InvalidArgument(
            "volume key length does not match the key size".into(),
        ));
    }
    crate::cipher::SectorCipher::new(&params.cipher, vk, Backend::RustCrypto)?;
    if !params.detached {
        let size = dev.size().map_err(|e| Error::io("device size", e))?;
        if size < layout.data_offset + params.sector_size as u64 {
            return Err(Error::InvalidArgument(format!(
                "device of {size} bytes is too small for a data offset of {}",
                layout.data_offset
            )));
        }
    }
    if params.digest_iterations < 1000 {
        return Err(Error::InvalidArgument(
            "digest needs at least 1000 iterations".into(),
        ));
    }
    if params.keyslot.slot.unwrap_or(0) >= KEYSLOTS_MAX {
        return Err(Error::InvalidArgument(format!(
            "keyslot id must be below {KEYSLOTS_MAX}"
        )));
    }
    Ok(())
}

/// The volume key's digest (PBKDF2 with a fresh salt), binding keyslot `slot` and segment 0.
fn new_digest(params: &FormatParams, vk: &[u8], slot: u32) -> Result<DigestInfo> {
    let dhash = HashAlg::from_name(&params.digest_hash)?;
    let mut salt = vec![0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    let iterations = params.digest_iterations;
    Ok(DigestInfo {
        id: 0,
        hash: params.digest_hash.clone(),
        iterations,
        digest: digest::compute(dhash, vk, &salt, iterations, dhash.output_len()),
        salt,
        keyslots: vec![slot],
        segments: vec![0],
    })
}

/// The JSON metadata of a fresh volume: one keyslot, one crypt segment to the device's
/// end, one digest, no tokens.
fn fresh_meta(
    params: &FormatParams,
    layout: &format::Layout,
    ks: &Keyslot,
    digest: &DigestInfo,
) -> Map<String, Value> {
    let seg = Segment {
        id: 0,
        kind: "crypt".into(),
        offset: layout.data_offset,
        size: None,
        iv_tweak: 0,
        encryption: params.cipher.clone(),
        sector_size: params.sector_size,
        flags: vec![],
        integrity: false,
    };
    let mut keyslots = Map::new();
    keyslots.insert(ks.id.to_string(), ks.to_json());
    let mut meta = Map::new();
    meta.insert("keyslots".into(), Value::Object(keyslots));
    meta.insert("tokens".into(), json!({}));
    meta.insert("segments".into(), json!({"0": seg.to_json()}));
    meta.insert("digests".into(), json!({"0": digest.to_json()}));
    meta.insert(
        "config".into(),
        json!({"json_size": (layout.hdr_size - 4096).to_string(), "keyslots_size": layout.keyslots_size.to_string()}),
    );
    meta
}

fn fresh_header(
    params: &FormatParams,
    layout: &format::Layout,
    meta: Map<String, Value>,
) -> Header {
    let mut salts = [[0u8; 64]; 2];
    for s in salts.iter_mut() {
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, s);
    }
    Header {
        hdr_size: layout.hdr_size,
        seqid: 0,
        label: params.label.clone(),
        subsystem: params.subsystem.clone(),
        uuid: params.uuid.clone().unwrap_or_else(format::random_uuid),
        csum_alg: "sha256".into(),
        salts,
        meta,
        source: None,
    }
}

/// The header device spans both copies and the keyslots area (a new detached header file
/// grows here; a too-small block device fails), and the keyslots area holds no old
/// content (zeros; without data I/O where the device can).
fn prepare_header_area<D: BlockDevice>(dev: &D, layout: &format::Layout) -> Result<()> {
    let hdr_end = 2 * layout.hdr_size + layout.keyslots_size;
    if dev.size().map_err(|e| Error::io("header device size", e))? < hdr_end {
        dev.write_at(&[0], hdr_end - 1)
            .map_err(|e| Error::io("extending the header device", e))?;
    }
    dev.zero_range(2 * layout.hdr_size, layout.keyslots_size)
        .map_err(|e| Error::io("clearing the keyslots area", e))
}
