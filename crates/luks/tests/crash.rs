//! Crash safety: for add-key, remove-key and change-key, cut the operation after every possible
//! number of writes (the cut write itself is torn: only its first half lands). The volume must
//! then open, with exactly the old or exactly the new set of working keys, and stay writable.

use strongroom_luks::device::FailAfterWrites;
use strongroom_luks::format::{FormatParams, KdfParams, KeyslotParams};
use strongroom_luks::{BlockDevice, Error, MemDevice, Volume};

const MIB: usize = 1024 * 1024;

fn base() -> Vec<u8> {
    let params = FormatParams {
        key_size_bits: 512,
        data_offset: Some(2 * MIB as u64),
        ..FormatParams::default()
    };
    let (mut vol, _) =
        Volume::format(MemDevice::zeroed(2 * MIB + 64 * 1024), &params, b"k1").unwrap();
    vol.add_key(b"k1", b"k2", &KeyslotParams::default())
        .unwrap();
    vol.into_device().into_inner()
}

const ALL_KEYS: [&[u8]; 3] = [b"k1", b"k2", b"k3"];

fn working_keys(dev: &dyn BlockDevice) -> Vec<&'static [u8]> {
    let vol = Volume::open(dev).expect("volume must open after a crash");
    ALL_KEYS
        .iter()
        .copied()
        .filter(|k| vol.unlock(k, None, false).is_ok())
        .collect()
}

type Op = fn(&mut Volume<&FailAfterWrites<MemDevice>>) -> Result<(), Error>;

fn check(name: &str, op: Op, old: &[&[u8]], new: &[&[u8]]) {
    let image = base();
    assert_eq!(working_keys(&MemDevice::new(image.clone())), old);
    // Count the writes of an uninterrupted run.
    let dev = FailAfterWrites::new(MemDevice::new(image.clone()), usize::MAX);
    op(&mut Volume::open(&dev).unwrap()).unwrap();
    let total = dev.writes();
    assert_eq!(
        working_keys(&dev.into_inner()),
        new,
        "{name}: uninterrupted"
    );
    assert!(total >= 4, "{name}: a header update is at least 4 writes");
    let mut seen_old = 0;
    let mut seen_new = 0;
    for cut in 0..=total {
        let dev = FailAfterWrites::new(MemDevice::new(image.clone()), cut);
        let res = op(&mut Volume::open(&dev).unwrap());
        assert_eq!(res.is_ok(), cut >= total, "{name}: cut {cut}/{total}");
        let mem = dev.into_inner();
        let keys = working_keys(&mem);
        if keys == old {
            seen_old += 1;
        } else if keys == new {
            seen_new += 1;
        } else {
            panic!("{name}: cut after {cut} of {total} writes left keys {keys:?}");
        }
        // Still writable: the next update succeeds and repairs a torn copy.
        let mut vol = Volume::open(&mem).unwrap();
        vol.repair().unwrap();
        let vk = vol.unlock(b"k1", None, false).unwrap().volume_key;
        let slot = vol.add_keyslot(
            &vk,
            b"later",
            &KeyslotParams {
                kdf: KdfParams::default(),
                ..Default::default()
            },
        );
        assert!(
            slot.is_ok(),
            "{name}: cut {cut}: volume still writable: {slot:?}"
        );
        let vol = Volume::open(&mem).unwrap();
        assert!(vol.report().needs_repair.is_none());
        assert!(vol.unlock(b"later", None, false).is_ok());
    }
    eprintln!(
        "{name}: {total} writes; {seen_old} cuts kept the old key set, {seen_new} gave the new one"
    );
    assert!(seen_old > 0 && seen_new > 0);
}

#[test]
fn crash_during_add_key() {
    check(
        "add-key",
        |v| {
            v.add_key(b"k1", b"k3", &KeyslotParams::default())
                .map(|_| ())
        },
        &[b"k1", b"k2"],
        &[b"k1", b"k2", b"k3"],
    );
}

#[test]
fn crash_during_remove_key() {
    check(
        "remove-key",
        |v| v.remove_key(b"k2", None).map(|_| ()),
        &[b"k1", b"k2"],
        &[b"k1"],
    );
}

#[test]
fn crash_during_change_key() {
    check(
        "change-key",
        |v| v.change_key(b"k2", b"k3", None, None).map(|_| ()),
        &[b"k1", b"k2"],
        &[b"k1", b"k3"],
    );
}
