//! Header parsing fuzz target. The first byte picks the mode:
//! - 0: the rest is a raw device image (binary headers, checksums, scan for the secondary);
//! - 1: the rest is the JSON area of a primary header with a correct checksum (reaches every
//!   JSON rule), no secondary;
//! - 2: the same JSON in both copies.
//! Whatever loads must give typed views without panicking, and a header we rewrite must load.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strongroom_luks::header::{encode_raw_copy, load, LoadOptions};
use strongroom_luks::model::{DigestInfo, Keyslot, Segment};
use strongroom_luks::{update, HeaderCopy, MemDevice, Volume};

const HDR: u64 = 16384;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let img = match mode % 3 {
        0 => rest.to_vec(),
        m => {
            let mut img = encode_raw_copy(true, HDR, 1, rest);
            if m == 2 {
                img.extend_from_slice(&encode_raw_copy(false, HDR, 1, rest));
            }
            img
        }
    };
    let Ok(vol) = Volume::open(MemDevice::new(img.clone())) else {
        return;
    };
    let meta = &vol.header().meta;
    for (id, _, _) in vol.keyslots() {
        let _ = Keyslot::from_meta(meta, id);
    }
    let _ = DigestInfo::all(meta);
    let _ = Segment::from_meta(meta, 0);
    let _ = vol.data_segment();
    let _ = vol.read_only_reason();
    // Rewriting what we accepted must give a header we accept again.
    let dev = MemDevice::new(img);
    let mut h = vol.header().clone();
    if update::write_header(&dev, &mut h, HeaderCopy::Primary).is_ok() {
        let (h2, _) = load(
            &dev,
            LoadOptions {
                allow_foreign_signature: true,
            },
        )
        .expect("rewritten header must load");
        assert_eq!(h2.meta, h.meta);
    }
});
