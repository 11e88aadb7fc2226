//! `sys/storage/raft/snapshot` (save, restore) and `snapshot-force`, laid out as OpenBao's:
//! a gzipped tar of `meta.json`, `state.bin` (here: every barrier entry, still encrypted),
//! `SHA256SUMS` and `SHA256SUMS.sealed` (the sums sealed by the barrier). The `bao` CLI
//! checks that the last one is there and not empty; a restore checks the sums, and that
//! the sealed copy opens with this cluster's keys unless forced. A restore is one
//! replicated change; the active node then reloads its state from storage, or seals when
//! the restored data is not readable with the keys it holds (another cluster's snapshot:
//! unseal with that cluster's keys).

use crate::barrier::{Barrier, UNSEAL_ENTRIES};
use crate::request::{multierror, ApiError};
use crate::storage::raft::export::Export;
use crate::storage::raft::types::b64;
use crate::storage::raft::RaftStorage;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// The additional data the sealed sums are bound to.
const SUMS_PATH: &str = "core/raft/snapshot-sums";
const FILES: [&str; 2] = ["meta.json", "state.bin"];
/// A decompressed snapshot larger than this is refused.
const MAX_UNPACKED: u64 = 4 << 30;

#[derive(Serialize, Deserialize)]
struct State {
    entries: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry(String, #[serde(with = "b64")] Vec<u8>);

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

fn meta(x: &Export, size: usize) -> Vec<u8> {
    let servers: Vec<_> = x
        .servers
        .iter()
        .map(|s| json!({"Suffrage": if s.voter { 0 } else { 1 }, "ID": s.name, "Address": s.address}))
        .collect();
    let v = json!({
        "Version": 1,
        "ID": format!("strongroom-{}-{}", x.term, x.index),
        "Index": x.index,
        "Term": x.term,
        "Peers": null,
        "Configuration": {"Servers": servers},
        "ConfigurationIndex": x.config_index,
        "Size": size,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

fn sums(files: &[(&str, &[u8])]) -> String {
    files
        .iter()
        .map(|(n, b)| format!("{}  {n}\n", hex::encode(Sha256::digest(b))))
        .collect()
}

/// `GET sys/storage/raft/snapshot`: the snapshot file.
pub fn save(barrier: &Barrier, raft: &RaftStorage) -> Result<Vec<u8>, ApiError> {
    let x = raft.export().map_err(internal)?;
    let state = State {
        entries: x
            .entries
            .iter()
            .map(|(k, v)| Entry(k.clone(), v.clone()))
            .collect(),
    };
    let state = serde_json::to_vec(&state).map_err(internal)?;
    let meta = meta(&x, state.len());
    let sums = sums(&[("meta.json", &meta), ("state.bin", &state)]);
    let sealed = barrier
        .seal_value(SUMS_PATH, sums.as_bytes())
        .map_err(internal)?;
    let files: [(&str, &[u8]); 4] = [
        ("meta.json", &meta),
        ("state.bin", &state),
        ("SHA256SUMS", sums.as_bytes()),
        ("SHA256SUMS.sealed", &sealed),
    ];
    pack(&files).map_err(internal)
}

fn pack(files: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(now);
        h.set_cksum();
        tar.append_data(&mut h, name, *bytes)?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

fn unpack(raw: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let gz = flate2::read::GzDecoder::new(raw).take(MAX_UNPACKED);
    let mut tar = tar::Archive::new(gz);
    let mut out = BTreeMap::new();
    for f in tar.entries().map_err(|e| e.to_string())? {
        let mut f = f.map_err(|e| e.to_string())?;
        let name = f.path().map_err(|e| e.to_string())?.display().to_string();
        let mut b = vec![];
        f.read_to_end(&mut b).map_err(|e| e.to_string())?;
        out.insert(name, b);
    }
    Ok(out)
}

/// Check a snapshot file and return the entries it holds.
pub fn open(
    barrier: &Barrier,
    raw: &[u8],
    force: bool,
) -> Result<BTreeMap<String, Vec<u8>>, ApiError> {
    let files = unpack(raw).map_err(|e| {
        ApiError::internal(multierror(&format!("failed to decompress snapshot: {e}")))
    })?;
    let get = |n: &str| {
        files.get(n).ok_or_else(|| {
            ApiError::internal(multierror(&format!(
                "failed to read snapshot file: {n} is missing"
            )))
        })
    };
    let listed: Vec<(&str, &[u8])> = FILES
        .iter()
        .map(|n| get(n).map(|b| (*n, b.as_slice())))
        .collect::<Result<_, _>>()?;
    let stored_sums = get("SHA256SUMS")?;
    if sums(&listed).as_bytes() != stored_sums.as_slice() {
        return Err(ApiError::internal(multierror(
            "failed to read snapshot file: the files do not match SHA256SUMS",
        )));
    }
    let verified = barrier
        .open_value(SUMS_PATH, get("SHA256SUMS.sealed")?)
        .is_ok_and(|s| s.as_slice() == stored_sums.as_slice());
    if !verified && !force {
        return Err(ApiError::bad_request(
            "could not verify hash file, possibly the snapshot is using a different set of unseal keys; use the snapshot-force API to bypass this check",
        ));
    }
    let state: State = serde_json::from_slice(get("state.bin")?)
        .map_err(|e| ApiError::bad_request(format!("the snapshot's state is unreadable: {e}")))?;
    let entries: BTreeMap<String, Vec<u8>> = state
        .entries
        .into_iter()
        .map(|Entry(k, v)| (k, v))
        .collect();
    if let Some(p) = UNSEAL_ENTRIES.iter().find(|p| !entries.contains_key(**p)) {
        return Err(ApiError::bad_request(format!(
            "the snapshot holds no {p}: it is not a snapshot of an initialized cluster"
        )));
    }
    Ok(entries)
}

/// Restore `raw` over the cluster's data (on the active node, blocking).
pub fn restore(
    barrier: &Barrier,
    raft: &RaftStorage,
    raw: &[u8],
    force: bool,
) -> Result<(), ApiError> {
    let entries = open(barrier, raw, force)?;
    tracing::info!(entries = entries.len(), force, "restoring a raft snapshot");
    raft.replace_all(entries).map_err(internal)
}

/// After a restore on the active node: rebuild the state from storage; when the restored
/// data does not open with the keys in memory, seal (as OpenBao does).
pub fn reload(core: &crate::core::Core) {
    if let Err(e) = core.post_unseal() {
        tracing::warn!("after the snapshot restore the data is not readable, sealing: {e:?}");
        core.seal_now();
    }
}
