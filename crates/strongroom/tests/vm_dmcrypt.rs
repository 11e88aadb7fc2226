//! The kernel data path (dm-crypt) for real, inside a throwaway VM (`scripts/vm/run-vm.sh`:
//! Debian's kernel + busybox initramfs under QEMU), because the host's kernel may have no
//! device-mapper. The real `strongroom` binary runs as root in the guest from the shared target
//! directory (9p, same absolute path); the dev key manager runs on the host and the guest
//! reaches it at 10.0.2.2 (slirp). Guest scripts only collect evidence into the shared
//! directory; every assertion is made here, on the host.
//!
//! When the runner cannot work (no apt, no qemu, ...), each test prints a loud `SKIP VM TIER`
//! naming the missing piece, unless `STRONGROOM_VM_REQUIRED=1` (set by scripts/test.sh), which
//! turns that into a failure.

mod common;
mod csi_common;
mod vm_common;
mod volume_common;

use std::path::PathBuf;
use std::process::Command;
use vm_common::Vm;
use volume_common::{can_mount, marker};

/// Guest: create (kv protection, so the keyslot secret can be fetched for the interop check),
/// mount while sampling every process's argv and environment, evidence into `$D`.
const CREATE_MOUNT: &str = r#"
$S --json create v1 --tenant a --size 64M --protection kv --token-file $D/a.token >$D/create.json
( while [ ! -e /tmp/stop ]; do
    for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do { tr '\0' ' ' <$f; } 2>/dev/null; echo; done
  done >$D/argv.txt ) &
$S --json mount v1 /mnt/v1 --token-file $D/a.token >$D/mount.json
touch /tmp/stop; wait
$S --json status v1 >$D/status.json
dmsetup table >$D/table.txt
dmsetup table --showkeys >$D/table-keys.txt
# the volume key itself, from the header with the keyslot secret, for the argv scan
VAULT_TOKEN=root $B kv get --field=data secret/strongroom/a/v1 | base64 -d >/tmp/slot.key
cryptsetup luksDump --dump-volume-key --batch-mode --volume-key-file /tmp/vk.bin \
  --key-file /tmp/slot.key $D/vols/v1/volume.img >/dev/null 2>&1 \
  || { lo=$(/usr/sbin/losetup -f --show $D/vols/v1/volume.img); \
       cryptsetup luksDump --dump-volume-key --batch-mode --volume-key-file /tmp/vk.bin \
         --key-file /tmp/slot.key $lo >/dev/null; /usr/sbin/losetup -d $lo; }
od -An -tx1 -v /tmp/vk.bin | tr -d ' \n' >$D/volume-key.hex
"#;

/// Guest: write a marker, unmount, check the teardown, re-mount, read it back, unmount.
const ROUNDTRIP: &str = r#"
cp $D/marker.txt /mnt/v1/marker.txt; sync
$S unmount v1 --token-file $D/a.token
{ dmsetup ls; /usr/sbin/losetup -a; grep /mnt/v1 /proc/mounts || true; } >$D/after-unmount.txt
$S mount v1 /mnt/v1 --token-file $D/a.token >/dev/null
cat /mnt/v1/marker.txt >$D/readback.txt
$S unmount v1 --token-file $D/a.token
"#;

/// Guest: the volume opens with plain cryptsetup given the keyslot secret from KV.
const CRYPTSETUP_OPEN: &str = r#"
VAULT_TOKEN=root $B kv get --field=data secret/strongroom/a/v1 | base64 -d >/tmp/slot.key
lo=$(/usr/sbin/losetup -f --show $D/vols/v1/volume.img)
cryptsetup open --type luks2 --key-file /tmp/slot.key $lo plain
mkdir -p /mnt/plain; mount -t ext4 -o ro /dev/mapper/plain /mnt/plain
cat /mnt/plain/marker.txt >$D/cryptsetup-readback.txt
umount /mnt/plain; cryptsetup close plain; /usr/sbin/losetup -d $lo
"#;

#[test]
fn vm_tier_kernel_path_create_mount_roundtrip_and_cryptsetup_interop() {
    let Some(vm) = Vm::start() else { return };
    let mk = marker("vm-kernel-roundtrip");
    std::fs::write(vm.path("marker.txt"), &mk).unwrap();
    vm.guest(&format!("{CREATE_MOUNT}{ROUNDTRIP}{CRYPTSETUP_OPEN}"));

    let st = vm.json("status.json");
    assert_eq!(st["datapath"], "kernel", "{st}");
    assert_eq!(st["device"], "/dev/mapper/strongroom-v1", "{st}");
    let table = vm.read("table.txt");
    assert!(
        table.starts_with("strongroom-v1: ") && table.contains(" crypt aes-xts-plain64 "),
        "{table}"
    );
    assert_eq!(vm.read("after-unmount.txt").trim(), "No devices found");
    assert_eq!(vm.read("readback.txt"), mk);
    assert_eq!(vm.read("cryptsetup-readback.txt"), mk);
    assert!(!volume_common::file_contains_any(
        &vm.path("vols/v1/volume.img"),
        &[mk]
    ));
}

/// The volume key (dumped from the header with the keyslot secret) and the tenant token
/// never appear in any
/// process's argv or environment in the guest while `volume mount` runs.
#[test]
fn vm_tier_kernel_path_keeps_key_and_token_out_of_argv() {
    let Some(vm) = Vm::start() else { return };
    vm.guest(CREATE_MOUNT);
    let argv = vm.read("argv.txt");
    assert!(
        argv.contains("volume") && argv.contains(" mount v1 "),
        "the sampler never saw the mount command: {argv:.2000}"
    );
    let key = vm.read("volume-key.hex");
    assert_eq!(key.len(), 128, "the volume key was dumped (64 bytes, hex)");
    let token = vm.read("a.token");
    for (what, secret) in [("volume key", key.as_str()), ("token", token.trim())] {
        assert!(
            !argv.contains(secret),
            "{what} found in a guest argv/environ"
        );
    }
}

/// The key field of a `crypt` table line: hex, or a keyring reference `:<len>:<type>:<desc>`.
fn volume_key_hex(table: &str) -> String {
    let f: Vec<&str> = table.split_whitespace().collect();
    let i = f.iter().position(|w| *w == "crypt").expect("crypt target") + 2;
    f[i].to_owned()
}

/// Issue 17: the key reaches dm-crypt through the kernel keyring (`:64:logon:...` in the
/// table), never as hex in the table.
#[test]
fn vm_tier_kernel_path_table_references_the_keyring() {
    let Some(vm) = Vm::start() else { return };
    vm.guest(CREATE_MOUNT);
    let key = volume_key_hex(&vm.read("table-keys.txt"));
    // never print the key itself, even a test one
    let shape = if key.starts_with(':') {
        "a reference"
    } else {
        "not a keyring reference"
    };
    assert!(
        key.starts_with(':') && key.contains(":logon:"),
        "table key field is {shape}"
    );
}

/// Data written on the kernel path reads back on the host's userspace path, and the other way.
#[test]
fn vm_tier_kernel_and_userspace_paths_read_each_others_data() {
    let Some(vm) = Vm::start() else { return };
    if !can_mount() {
        eprintln!("*** SKIP host half of the VM interop test: no root/FUSE/loop here ***");
        return;
    }
    let (k, u) = (marker("written-by-kernel"), marker("written-by-userspace"));
    std::fs::write(vm.path("marker.txt"), &k).unwrap();
    vm.guest(&format!(
        "{CREATE_MOUNT}cp $D/marker.txt /mnt/v1/k.txt; sync\n\
         $S unmount v1 --token-file $D/a.token\n"
    ));
    let mnt = vm.path("host-mnt");
    let tok = vm.p("a.token");
    let o = vm.host_cli(&[
        "--json",
        "mount",
        "v1",
        &mnt.to_string_lossy(),
        "--token-file",
        &tok,
    ]);
    assert!(o.status.success(), "{}", volume_common::out_text(&o));
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["datapath"], "userspace", "{st}");
    let read = std::fs::read_to_string(mnt.join("k.txt"));
    std::fs::write(mnt.join("u.txt"), &u).unwrap();
    let o = vm.host_cli(&["unmount", "v1", "--token-file", &tok]);
    assert!(o.status.success(), "{}", volume_common::out_text(&o));
    assert_eq!(read.expect("kernel-written file on the userspace path"), k);

    vm.guest(
        "$S --json mount v1 /mnt/v1 --token-file $D/a.token >$D/mount2.json\n\
         cat /mnt/v1/u.txt >$D/u-readback.txt\n$S unmount v1 --token-file $D/a.token\n",
    );
    assert_eq!(vm.json("mount2.json")["datapath"], "kernel");
    assert_eq!(vm.read("u-readback.txt"), u);
}

/// A LUKS2 image cryptsetup formatted (and wrote through dm-crypt) in the VM passes our
/// `strongroom luks dump` / `test-key` on the host; a wrong key is refused.
#[test]
fn vm_tier_cryptsetup_formatted_in_vm_opens_with_strongroom_luks() {
    let Some(vm) = Vm::start() else { return };
    std::fs::write(vm.path("pass"), "vm-interop-passphrase").unwrap();
    std::fs::write(vm.path("wrong"), "not-the-passphrase").unwrap();
    vm.guest(
        "truncate -s 32M $D/cs.img\n\
         lo=$(/usr/sbin/losetup -f --show $D/cs.img)\n\
         cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
           --key-file $D/pass $lo\n\
         cryptsetup open --key-file $D/pass $lo cs\n\
         mkfs.ext4 -q /dev/mapper/cs\ncryptsetup close cs\n/usr/sbin/losetup -d $lo\n",
    );
    let luks = |args: &[&str]| {
        Command::new(common::strongroom_bin())
            .arg("luks")
            .args(args)
            .output()
            .unwrap()
    };
    let img = vm.p("cs.img");
    let o = luks(&["dump", &img]);
    assert!(o.status.success(), "{}", volume_common::out_text(&o));
    let o = luks(&["test-key", "--key-file", &vm.p("pass"), &img]);
    assert!(o.status.success(), "{}", volume_common::out_text(&o));
    let o = luks(&["test-key", "--key-file", &vm.p("wrong"), &img]);
    assert!(!o.status.success(), "wrong key accepted");
}

/// Guest: an envelope volume on the kernel path grown online, its keyslot secret and KEK
/// rotated while mounted, re-mounted, then shredded while mounted; evidence after each step.
const RESIZE_ROTATE_SHRED: &str = r#"
$S --json create v1 --tenant a --size 64M --token-file $D/a.token >$D/create.json
$S --json mount v1 /mnt/v1 --token-file $D/a.token >$D/mount.json
cp $D/marker.txt /mnt/v1/marker.txt; sync
/usr/sbin/blockdev --getsize64 /dev/mapper/strongroom-v1 >$D/dm-size-before.txt
df -kP /mnt/v1 | tail -n 1 >$D/df-before.txt
$S --json resize v1 --size 128M --token-file $D/a.token >$D/resize.json
/usr/sbin/blockdev --getsize64 /dev/mapper/strongroom-v1 >$D/dm-size-after.txt
df -kP /mnt/v1 | tail -n 1 >$D/df-after.txt
dd if=/dev/urandom of=/mnt/v1/big bs=1M count=80 2>/dev/null; sync
$S --json rotate v1 --kind slot --token-file $D/a.token >$D/rotate-slot.json
$S --json rotate v1 --kind kek --token-file $D/a.token >$D/rotate-kek.json
cat /mnt/v1/marker.txt >$D/readback-rotated.txt
$S unmount v1
$S --json mount v1 /mnt/v1 --token-file $D/a.token >$D/remount.json
cat /mnt/v1/marker.txt >$D/readback-remounted.txt
dmsetup table --showkeys >$D/table-remounted.txt
# shredded while mounted: the mount, mapping and loop device go first
$S --json shred v1 --token-file $D/a.token >$D/shred.json
rc=0; $S --json mount v1 /mnt/v1 --token-file $D/a.token >$D/mount-shredded.json || rc=$?
echo $rc >$D/mount-shredded.rc
{ dmsetup ls; /usr/sbin/losetup -a; grep /mnt/v1 /proc/mounts || true; } >$D/after-shred.txt
"#;

fn df_kib(line: &str) -> u64 {
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("df line {line:?}"))
}

/// Issue 17: resize (online), rotate (keyslot secret and KEK) and shred on the dm-crypt path.
#[test]
fn vm_tier_kernel_path_resize_rotate_shred() {
    let Some(vm) = Vm::start() else { return };
    let mk = marker("vm-kernel-resize");
    std::fs::write(vm.path("marker.txt"), &mk).unwrap();
    vm.guest(RESIZE_ROTATE_SHRED);

    let size = |f: &str| vm.read(f).trim().parse::<u64>().unwrap();
    assert_eq!(size("dm-size-before.txt"), 64 << 20);
    assert_eq!(size("dm-size-after.txt"), 128 << 20, "mapping grown online");
    let (before, after) = (
        df_kib(&vm.read("df-before.txt")),
        df_kib(&vm.read("df-after.txt")),
    );
    assert!(
        after > before + 50 * 1024,
        "filesystem grown online: {before} -> {after} KiB"
    );
    let r = vm.json("resize.json");
    assert_eq!(r["size"], 128u64 << 20, "{r}");
    assert_eq!(r["fs_grow_pending"], false, "{r}");
    for f in ["rotate-slot.json", "rotate-kek.json", "remount.json"] {
        assert_eq!(vm.json(f)["datapath"], "kernel", "{f}");
    }
    assert_eq!(vm.read("readback-rotated.txt"), mk);
    assert_eq!(vm.read("readback-remounted.txt"), mk);
    let key = volume_key_hex(&vm.read("table-remounted.txt"));
    assert!(
        key.contains(":logon:"),
        "re-mounted table holds no keyring reference"
    );
    assert_eq!(vm.json("shred.json")["state"], "shredded");
    assert_ne!(
        vm.read("mount-shredded.rc").trim(),
        "0",
        "a shredded volume mounted"
    );
    assert_eq!(vm.read("after-shred.txt").trim(), "No devices found");
    assert!(!volume_common::file_contains_any(
        &vm.path("vols/v1/volume.img"),
        &[mk]
    ));
}

/// Guest: for each fault point, the faulted call aborts, the retried call succeeds, and
/// after the final unmount no mapping, loop device, mount or keyring key is left.
const FAULTS: &str = r#"
$S --json create v1 --tenant a --size 64M --token-file $D/a.token >/dev/null
$S mount v1 /mnt/v1 --token-file $D/a.token >/dev/null
cp $D/marker.txt /mnt/v1/marker.txt; $S unmount v1
leftovers() {
  { echo "== $1"; dmsetup ls; /usr/sbin/losetup -a; grep /mnt/v1 /proc/mounts || true;
    grep -c ' logon .*cryptsetup' /proc/keys || true; } >>$D/faults.txt
}
for step in mount:kernel-loop-attached mount:kernel-loop mount:dm-opened mount:dm mount:mounted; do
  if STRONGROOM_FAULT=$step $S mount v1 /mnt/v1 --token-file $D/a.token >/dev/null 2>&1; then
    echo "$step" >>$D/not-aborted.txt
  fi
  $S mount v1 /mnt/v1 --token-file $D/a.token >/dev/null
  { echo "== $step"; dmsetup ls | wc -l; /usr/sbin/losetup -a | wc -l; } >>$D/retried.txt
  cat /mnt/v1/marker.txt >>$D/readbacks.txt
  $S unmount v1
  leftovers $step
done
for step in unmount:umounted unmount:dm-closed; do
  $S mount v1 /mnt/v1 --token-file $D/a.token >/dev/null
  if STRONGROOM_FAULT=$step $S unmount v1 >/dev/null 2>&1; then echo "$step" >>$D/not-aborted.txt; fi
  $S unmount v1
  leftovers $step
done
"#;

/// Issue 17: an abort (as kill -9) at each fault point of mount and unmount on the dm-crypt
/// path; the retried call succeeds with one mapping and one loop device, and after unmount
/// nothing is left: no mapping, loop device, mount or key in the kernel keyring.
#[test]
fn vm_tier_kernel_path_kill_at_each_fault_point_leaves_nothing() {
    let Some(vm) = Vm::start() else { return };
    let mk = marker("vm-kernel-faults");
    std::fs::write(vm.path("marker.txt"), &mk).unwrap();
    vm.guest(FAULTS);
    assert!(
        !vm.path("not-aborted.txt").exists(),
        "fault points never reached: {}",
        vm.read("not-aborted.txt")
    );
    let mounts = [
        "mount:kernel-loop-attached",
        "mount:kernel-loop",
        "mount:dm-opened",
        "mount:dm",
        "mount:mounted",
    ];
    let retried = vm.read("retried.txt");
    for step in mounts {
        assert!(
            retried.contains(&format!("== {step}\n1\n1\n")),
            "after the retried mount ({step}) one mapping and one loop device:\n{retried}"
        );
    }
    assert_eq!(vm.read("readbacks.txt"), mk.repeat(mounts.len()));
    let faults = vm.read("faults.txt");
    for block in faults.split("== ").filter(|b| !b.is_empty()) {
        let (step, rest) = block.split_once('\n').unwrap();
        assert_eq!(
            rest.trim(),
            "No devices found\n0",
            "left after {step} and the retried call"
        );
    }
    assert_eq!(faults.matches("== ").count(), mounts.len() + 2);
}

/// Issue 17: the CSI driver's node RPCs over its gRPC socket on the dm-crypt path, filesystem
/// and block access: the guest half ([`guest_csi_node_rpcs`], this binary run in the VM)
/// drives a real `strongroom csi` and key manager there and leaves its evidence in `$D`.
#[test]
fn vm_tier_csi_node_rpcs_on_the_kernel_path() {
    let Some(vm) = Vm::start() else { return };
    vm.guest(
        "VM_EVIDENCE=$D $T --exact guest_csi_node_rpcs --ignored --nocapture --test-threads=1 \
         >$D/guest-test.log 2>&1 || { cat $D/guest-test.log; exit 1; }\n",
    );
    let e = vm.json("csi.json");
    assert_eq!(e["fs"]["datapath"], "kernel", "{e}");
    assert_eq!(e["block"]["datapath"], "kernel", "{e}");
    assert_eq!(e["fs"]["size_after_expand"], 128u64 << 20, "{e}");
    assert_eq!(e["fs"]["expand_without_token"], "Unauthenticated", "{e}");
    assert!(
        e["fs"]["stats_total_after_expand"].as_u64().unwrap() > 100 << 20,
        "filesystem grown by NodeExpandVolume: {e}"
    );
    assert_eq!(e["fs"]["readback"], e["fs"]["marker"], "{e}");
    assert_eq!(e["block"]["readback"], e["block"]["marker"], "{e}");
    assert_eq!(e["dm_after_unstage"], "No devices found", "{e}");
    assert_eq!(e["leftovers"], serde_json::json!([]), "{e}");
    let log = vm.read("guest-test.log");
    assert!(log.contains("test result: ok. 1 passed"), "{log}");
}

/// The VM tier's guest half of [`vm_tier_csi_node_rpcs_on_the_kernel_path`]; runs only in the
/// VM (where the kernel has device-mapper), never on the host.
#[test]
#[ignore = "the guest half of a VM tier test: runs inside the VM"]
fn guest_csi_node_rpcs() {
    use csi_common::*;
    use strongroom_csi::pb::volume_capability::access_mode::Mode as PbMode;
    use strongroom_csi::pb::*;
    let out =
        PathBuf::from(std::env::var("VM_EVIDENCE").expect("VM_EVIDENCE (run by the VM tier)"));
    let c = Csi::start();
    let status = |id: &str| -> serde_json::Value {
        let o = Command::new(common::strongroom_bin())
            .args(["volume", "--json", "--root"])
            .arg(c.root())
            .args(["status", id])
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("{}", volume_common::out_text(&o)))
    };

    // Filesystem access: stage, publish, write, expand (controller then node), read back.
    let v = c.create_for("pvc-fs", 0, 64 * MIB);
    let id = v.volume_id.clone();
    let (staging, mnt) = c.paths("fs");
    let target = mnt.join("target");
    c.stage(&v, &staging, snw(), Some(&c.token(0)))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", c.tail()));
    c.publish(&v, &staging, &target, snw(), false).unwrap();
    let fs_status = status(&id);
    let mk = marker("csi-fs");
    std::fs::write(target.join("marker.txt"), &mk).unwrap();
    c.run(
        c.ctrl()
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: id.clone(),
                capacity_range: range(128 * MIB),
                secrets: secrets(&c.token(0)),
                volume_capability: Some(snw()),
            }),
    )
    .unwrap_or_else(|e| panic!("{e:?}\n{}", c.tail()));
    let expand = |token: Option<&str>| {
        c.run(c.node().node_expand_volume(NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: target.to_string_lossy().into_owned(),
            capacity_range: range(128 * MIB),
            staging_target_path: staging.to_string_lossy().into_owned(),
            volume_capability: Some(snw()),
            secrets: token.map(secrets).unwrap_or_default(),
        }))
    };
    // dm-crypt loads the resized table with the key again: without the node-expand secret
    // the call is refused (and can be retried with it).
    let no_token = code(expand(None));
    let r = expand(Some(&c.token(0)))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", c.tail()))
        .into_inner();
    let total = c.stats(&id, &target).unwrap().usage[0].total;
    let fs_readback = std::fs::read_to_string(target.join("marker.txt")).unwrap();
    c.unpublish(&id, &target).unwrap();
    c.unstage(&id, &staging).unwrap();

    // Block access: the mapping itself published as a device file.
    let b = c.create_for("pvc-blk", 0, 64 * MIB);
    let (bstaging, bmnt) = c.paths("blk");
    let btarget = bmnt.join("dev");
    let bcap = block_cap(PbMode::SingleNodeWriter);
    c.stage(&b, &bstaging, bcap.clone(), Some(&c.token(0)))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", c.tail()));
    c.publish(&b, &bstaging, &btarget, bcap, false).unwrap();
    let blk_status = status(&b.volume_id);
    let bmk = marker("csi-block");
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&btarget)
            .unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(bmk.as_bytes()).unwrap();
        f.sync_all().unwrap();
        drop(f);
        let mut f = std::fs::File::open(&btarget).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        let mut back = vec![0u8; bmk.len()];
        f.read_exact(&mut back).unwrap();
        std::fs::write(out.join("block-readback.txt"), back).unwrap();
    }
    c.unpublish(&b.volume_id, &btarget).unwrap();
    c.unstage(&b.volume_id, &bstaging).unwrap();

    let dm = Command::new("dmsetup").arg("ls").output().unwrap();
    let e = serde_json::json!({
        "fs": {
            "datapath": fs_status["datapath"], "device": fs_status["device"],
            "size_after_expand": r.capacity_bytes, "stats_total_after_expand": total,
            "expand_without_token": format!("{no_token:?}"),
            "marker": mk, "readback": fs_readback,
        },
        "block": {
            "datapath": blk_status["datapath"], "device": blk_status["device"], "marker": bmk,
            "readback": std::fs::read_to_string(out.join("block-readback.txt")).unwrap(),
        },
        "dm_after_unstage": String::from_utf8_lossy(&dm.stdout).trim(),
        "leftovers": leftovers(&c.root()),
        "driver_log": c.logs(),
    });
    std::fs::write(out.join("csi.json"), e.to_string()).unwrap();
}

/// Issue 17: the node plugin SIGKILLed while fio writes to a volume staged on the dm-crypt
/// path (the kernel holds the mapping): no I/O error, the data verifies after the plugin
/// comes back, unstage leaves nothing. The guest half is [`guest_csi_plugin_restart`].
#[test]
fn vm_tier_csi_plugin_sigkill_while_fio_writes_on_the_kernel_path() {
    let Some(vm) = Vm::start() else { return };
    let fio = which("fio").expect("fio on the host (scripts/test.sh installs it)");
    vm.guest_with(
        &["-f", &fio.to_string_lossy()],
        "VM_EVIDENCE=$D $T --exact guest_csi_plugin_restart --ignored --nocapture \
         --test-threads=1 >$D/guest-test.log 2>&1 || { cat $D/guest-test.log; exit 1; }\n",
    );
    csi_common::assert_survived_restart(&vm.json("restart.json"), "kernel");
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// The guest half of [`vm_tier_csi_plugin_sigkill_while_fio_writes_on_the_kernel_path`].
#[test]
#[ignore = "the guest half of a VM tier test: runs inside the VM"]
fn guest_csi_plugin_restart() {
    let out =
        PathBuf::from(std::env::var("VM_EVIDENCE").expect("VM_EVIDENCE (run by the VM tier)"));
    let mut c = csi_common::Csi::start();
    let e = csi_common::sigkill_plugin_while_fio_writes(&mut c, csi_common::snw());
    std::fs::write(out.join("restart.json"), e.to_string()).unwrap();
}
