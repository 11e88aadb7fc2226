//! The kernel data path of RBD volumes (krbd + dm-crypt) for real: a throwaway Ceph
//! (scripts/ceph/dev-cluster.sh) and the key manager run on the host, the guest of
//! `scripts/vm/run-vm.sh -N` reaches both on the host's loopback (the kernel rbd driver talks to
//! the monitors' v1 port and to the OSDs at the 127.0.0.1 addresses the monitors hand out).
//! The host's kernel has no device-mapper, so the host is the userspace node (FUSE over librbd)
//! and the guest the kernel node, each with its own state directory; they share only Ceph and
//! the key manager. Functional only: the VM runs under TCG here, never benchmark it.
//!
//! Without Ceph or the VM runner: skips loudly, or fails under scripts/test.sh
//! (`STRONGROOM_CEPH_REQUIRED=1`, `STRONGROOM_VM_REQUIRED=1`).

mod common;
mod csi_common;
mod vm_common;
mod volume_common;

use std::time::{Duration, Instant};
use strongroom_rbd::dev::DevCluster;
use vm_common::{Vm, CLUSTER};
use volume_common::{can_mount, marker, out_text};

/// The client side of the dev cluster where the guest sees it too (the shared directory):
/// a ceph.conf naming the monitors and a keyring holding the admin's key.
fn share_ceph_conf(vm: &Vm, ceph: &DevCluster) -> (String, String) {
    let key = ceph.admin_key().unwrap();
    std::fs::write(
        vm.path("keyring"),
        format!("[client.admin]\n\tkey = {key}\n"),
    )
    .unwrap();
    let conf = format!(
        "[global]\nmon host = {}\nkeyring = {}\nauth client required = cephx\n\
         [client]\nadmin socket =\nlog file =\n",
        ceph.monitors().unwrap(),
        vm.p("keyring")
    );
    std::fs::write(vm.path("ceph.conf"), conf).unwrap();
    (vm.p("ceph.conf"), key)
}

/// The monitor's v1 `ip:port` (for the guest's hand-made map of the interop check).
fn v1_monitor(ceph: &DevCluster) -> String {
    let mons = ceph.monitors().unwrap();
    mons.split(',')
        .find_map(|a| a.trim_matches(['[', ']']).strip_prefix("v1:"))
        .unwrap_or_else(|| panic!("no v1 address in {mons}"))
        .to_owned()
}

/// Runner options for a guest that runs librados/librbd: the strongroom binary loads them
/// with dlopen, so `-l` (its linked closure) misses them; `-f` copies them with theirs.
fn guest_opts() -> Vec<String> {
    let mut opts = vec!["-N".to_owned()];
    for lib in ["librados.so.2", "librbd.so.1"] {
        let path = ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
            .iter()
            .map(|d| std::path::Path::new(d).join(lib))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{lib} not found (apt-get install librbd1 librados2)"));
        let dir = path.parent().unwrap().display().to_string();
        opts.extend(["-f".to_owned(), format!("{}:{dir}/", path.display())]);
    }
    opts
}

/// Run `script` in a guest that reaches the host's Ceph (`-N`) and loads librbd.
fn guest(vm: &Vm, script: &str) -> String {
    let opts = guest_opts();
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    vm.guest_with(&opts, script)
}

/// The VM, the dev Ceph, and a host that can mount (the userspace node); None (skipped,
/// loudly) without one of them.
fn world() -> Option<(Vm, &'static DevCluster)> {
    let vm = Vm::start()?;
    let ceph = DevCluster::for_tests()?;
    if !can_mount() {
        eprintln!("*** SKIP VM krbd test: the host half needs root, FUSE and loop ***");
        return None;
    }
    Some((vm, ceph))
}

/// Progress on stderr, to see where a slow run spends its time.
fn step(t0: Instant, what: &str) {
    eprintln!("vm_krbd: {:>6.1} s {what}", t0.elapsed().as_secs_f64());
}

/// On the way out, also when a step failed: the host's mounts go while Ceph still runs (the
/// cluster stops when this process ends; a FUSE server left on it would hang every `sync`).
struct HostUnmount<'a>(&'a Vm);

impl Drop for HostUnmount<'_> {
    fn drop(&mut self) {
        for v in ["v1", "v2", "m1", "m2"] {
            let _ = self.0.host_cli(&["unmount", v]);
        }
        drop(volume_common::Cleanup(self.0.path("")));
    }
}

/// `volume --json create ID --tenant a --size SIZE --backend rbd --pool POOL --ceph-conf CONF
/// --token-file a.token` and `extra`, as the host's CLI runs it.
fn create_rbd(
    vm: &Vm,
    ceph: &DevCluster,
    conf: &str,
    id: &str,
    size: &str,
    extra: &[&str],
) -> std::process::Output {
    let tok = vm.p("a.token");
    let mut args = vec![
        "--json",
        "create",
        id,
        "--tenant",
        "a",
        "--size",
        size,
        "--backend",
        "rbd",
        "--pool",
    ];
    args.extend([ceph.pool(), "--ceph-conf", conf, "--token-file", &tok]);
    args.extend_from_slice(extra);
    vm.host_cli(&args)
}

/// The RBD image a successful `--json create` names.
fn image_of(o: std::process::Output) -> String {
    let info: serde_json::Value = serde_json::from_slice(&ok(o).stdout).unwrap();
    info["store"]["image"].as_str().unwrap().to_owned()
}

/// The host (the userspace node) attaches `id` at `host-<id>`, reads `file` from it and
/// detaches; the file's text.
fn host_reads(vm: &Vm, id: &str, file: &str) -> String {
    let mnt = format!("host-{id}");
    ok(vm.host_cli(&["mount", id, &vm.p(&mnt), "--token-file", &vm.p("a.token")]));
    let read = std::fs::read_to_string(vm.path(&mnt).join(file));
    ok(vm.host_cli(&["unmount", id]));
    read.unwrap_or_else(|e| panic!("{file} of {id} on the host: {e}"))
}

fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "{}", out_text(&o));
    o
}

/// Guest, node B (its own state directory): an abort (as kill -9) right after the kernel map
/// and after dm-crypt opened, each retried; then the volume mounted on the kernel path, the
/// host's files read, files written, a second read-write attach from node C (another state
/// directory on the same kernel) refused; the host's attempts awaited; an unmount aborted
/// right after the unmap, then finished; then stock
/// cryptsetup opens the image mapped by hand. Evidence into `$D`.
const GUEST_NODE_B: &str = r#"
K="$B volume --root $D/node-b --address $VAULT_ADDR --cluster-id $CL"
C="$B volume --root $D/node-c --address $VAULT_ADDR --cluster-id $CL"
IMPORT="import v1 --pool rbd --rados-namespace $NS --image $IMG --ceph-conf $D/ceph.conf"
$K $IMPORT >/dev/null
$C $IMPORT >/dev/null
devs() { ls /sys/bus/rbd/devices 2>/dev/null | wc -l; }
for step in mount:krbd-mapped mount:krbd mount:dm-opened; do
  if STRONGROOM_FAULT=$step $K mount v1 /mnt/v1 --token-file $D/a.token >/dev/null 2>&1; then
    echo "$step" >>$D/not-aborted.txt
  fi
  echo "$step $(devs)" >>$D/after-abort.txt
done
$K --json mount v1 /mnt/v1 --token-file $D/a.token >$D/mount.json
$K --json status v1 >$D/status.json
echo "mapped $(devs) dm $(dmsetup ls | grep -c strongroom-)" >$D/mapped.txt
dmsetup table >$D/table.txt
for d in /sys/bus/rbd/devices/*; do cat $d/config_info; done >$D/config-info.txt
grep -c strongroom-krbd /proc/keys >$D/keys.txt || true
cat /mnt/v1/host-0.txt >$D/guest-read-host-0.txt
sha256sum /mnt/v1/host.bin | cut -d' ' -f1 >$D/guest-read-host-bin.sha256
cp $D/guest-marker.txt /mnt/v1/guest-0.txt
dd if=/dev/urandom of=/mnt/v1/guest.bin bs=64k count=16 2>/dev/null
sha256sum /mnt/v1/guest.bin | cut -d' ' -f1 >$D/guest-bin.sha256
sync
rc=0; $C mount v1 /mnt/c --token-file $D/a.token >/dev/null 2>$D/node-c.err || rc=$?
echo $rc >$D/node-c.rc
echo "mapped $(devs) dm $(dmsetup ls | grep -c strongroom-)" >$D/after-node-c.txt
# the host tries its userspace attach now (the test waits for this file)
touch $D/held
i=0; while [ ! -e $D/host-tried ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
# the host grew the image meanwhile: the mapping sees it; the node grows dm-crypt and ext4
# (as NodeExpandVolume: the same size again), the data is intact
rbd=$(ls /sys/bus/rbd/devices | head -n 1)
blockdev --getsize64 /dev/rbd$rbd >$D/grown-rbd.txt
$K --json resize v1 --size 128M --token-file $D/a.token >$D/grown.json
blockdev --getsize64 /dev/mapper/strongroom-v1 >$D/grown-dm.txt
df -Pk /mnt/v1 | tail -n 1 | awk '{print $2}' >$D/grown-fs-kb.txt
cat /mnt/v1/host-0.txt >$D/grown-read-host-0.txt
sha256sum /mnt/v1/guest.bin | cut -d' ' -f1 >$D/grown-guest-bin.sha256
dd if=/dev/urandom of=/mnt/v1/after-grow.bin bs=1M count=8 2>/dev/null
sha256sum /mnt/v1/after-grow.bin | cut -d' ' -f1 >$D/after-grow.sha256
sync
if STRONGROOM_FAULT=unmount:krbd-unmapped $K unmount v1 >/dev/null 2>&1; then
  echo unmount:krbd-unmapped >>$D/not-aborted.txt
fi
$K unmount v1
{ ls /sys/bus/rbd/devices; ls /dev | grep '^rbd' || true; dmsetup ls; } >$D/after-unmount.txt
# interop: the image mapped by hand, opened by stock cryptsetup with the keyslot secret
VAULT_TOKEN=root $B kv get --field=data secret/strongroom/a/v1 | base64 -d >/tmp/slot.key
key=$(sed -n 's/^[[:space:]]*key = //p' $D/keyring)
echo "$MON name=admin,secret=$key,_pool_ns=$NS $IMG_POOL $IMG -" >/sys/bus/rbd/add_single_major
id=$(ls /sys/bus/rbd/devices | head -n 1)
cryptsetup luksDump /dev/rbd$id >$D/luksdump.txt
cryptsetup open --type luks2 --key-file /tmp/slot.key /dev/rbd$id interop
mkdir -p /mnt/i; mount -t ext4 -o ro /dev/mapper/interop /mnt/i
cat /mnt/i/guest-0.txt >$D/interop-read.txt
sha256sum /mnt/i/guest.bin | cut -d' ' -f1 >$D/interop-bin.sha256
umount /mnt/i; cryptsetup close interop; echo $id >/sys/bus/rbd/remove_single_major
{ ls /sys/bus/rbd/devices; dmsetup ls; } >$D/after-interop.txt
# v2 was never mounted: its filesystem is made here, on the kernel path
$K import v2 --pool rbd --rados-namespace $NS --image $IMG2 --ceph-conf $D/ceph.conf >/dev/null
$K --json mount v2 /mnt/v2 --token-file $D/a.token >$D/mount-v2.json
cp $D/guest-marker.txt /mnt/v2/first.txt; sync
$K unmount v2
{ ls /sys/bus/rbd/devices; dmsetup ls; } >$D/after-v2.txt
"#;

/// Issue 12: an RBD volume on the kernel path (krbd + dm-crypt) in the VM and on the userspace
/// path on the host, one image: each reads what the other wrote; a read-write attach is
/// refused (FAILED_PRECONDITION) while the other path holds the image, both ways and from a
/// second kernel attach; the host (as the controller) grows the image while the kernel node
/// has it attached, and the kernel node grows dm-crypt and ext4 online, data intact; aborts
/// mid-attach are cleaned up, not duplicated; the key never reaches the map line; stock
/// cryptsetup opens the image on /dev/rbdN; nothing is left.
#[test]
fn vm_tier_krbd_kernel_and_userspace_nodes_share_one_rbd_volume_exclusively() {
    let t0 = Instant::now();
    let Some((vm, ceph)) = world() else { return };
    let _unmount = HostUnmount(&vm);
    step(t0, "VM runner, key manager and Ceph ready");
    let (conf, admin_key) = share_ceph_conf(&vm, ceph);
    let tok = vm.p("a.token");
    let ns = format!("vm{}", std::process::id());
    let image = image_of(create_rbd(
        &vm,
        ceph,
        &conf,
        "v1",
        "64M",
        &["--protection", "kv", "--rados-namespace", &ns],
    ));
    let image2 = image_of(create_rbd(
        &vm,
        ceph,
        &conf,
        "v2",
        "64M",
        &["--rados-namespace", &ns],
    ));

    step(t0, "volume created");
    // Host (userspace node A): write files and keep the volume attached.
    let mnt = vm.path("host-mnt");
    let mnt_s = mnt.to_string_lossy().into_owned();
    let st: serde_json::Value = serde_json::from_slice(
        &ok(vm.host_cli(&["--json", "mount", "v1", &mnt_s, "--token-file", &tok])).stdout,
    )
    .unwrap();
    assert_eq!(st["datapath"], "userspace", "{st}");
    let host_mk = marker("krbd-host");
    std::fs::write(mnt.join("host-0.txt"), &host_mk).unwrap();
    let host_bin: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i * 7 + i / 4093) as u8)
        .collect();
    std::fs::write(mnt.join("host.bin"), &host_bin).unwrap();

    step(t0, "host wrote its files");
    let vars = format!(
        "CL={CLUSTER}\nNS={ns}\nIMG={image}\nIMG2={image2}\nIMG_POOL={pool}\nMON={mon}\n",
        pool = ceph.pool(),
        mon = v1_monitor(ceph)
    );
    // Guest while the host holds the image: the kernel attach is refused, nothing is left.
    guest(
        &vm,
        &format!(
            "{vars}K=\"$B volume --root $D/node-b --address $VAULT_ADDR --cluster-id $CL\"\n\
             $K import v1 --pool rbd --rados-namespace $NS --image $IMG --ceph-conf $D/ceph.conf\n\
             rc=0; $K mount v1 /mnt/v1 --token-file $D/a.token 2>$D/refused.err || rc=$?\n\
             echo $rc >$D/refused.rc\n\
             {{ ls /sys/bus/rbd/devices; dmsetup ls; }} >$D/after-refused.txt\n"
        ),
    );
    assert_ne!(
        vm.read("refused.rc").trim(),
        "0",
        "kernel attach while the host holds it"
    );
    let err = vm.read("refused.err");
    assert!(err.contains("FAILED_PRECONDITION"), "{err}");
    assert_eq!(vm.read("after-refused.txt").trim(), "No devices found");
    ok(vm.host_cli(&["unmount", "v1"]));
    step(t0, "guest refused while the host held the image");

    // Guest node B on the kernel path; the host tries its attach while B holds the image.
    let guest_mk = marker("krbd-guest");
    std::fs::write(vm.path("guest-marker.txt"), &guest_mk).unwrap();
    let (host_attempt, host_resize) = std::thread::scope(|s| {
        let guest = s.spawn(|| guest(&vm, &format!("{vars}{GUEST_NODE_B}")));
        let t0 = Instant::now();
        while !vm.path("held").exists() && !guest.is_finished() {
            assert!(
                t0.elapsed() < Duration::from_secs(400),
                "guest never held the volume"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let attempt = vm.path("held").exists().then(|| {
            let o = vm.host_cli(&["mount", "v1", &mnt_s, "--token-file", &tok]);
            // the controller grows the image while the kernel node has it attached (the kernel
            // hands librbd's lock over for the resize)
            let r = vm.host_cli(&["resize", "v1", "--size", "128M", "--token-file", &tok]);
            std::fs::write(vm.path("host-tried"), "").unwrap();
            (o, r)
        });
        guest.join().unwrap();
        attempt.expect("the guest reached the held point")
    });
    step(t0, "guest node B done");
    assert!(host_resize.status.success(), "{}", out_text(&host_resize));
    // the mapping saw the new size; the kernel node grew dm-crypt and the filesystem online
    let grown = 128u64 << 20;
    assert_eq!(
        vm.read("grown-rbd.txt").trim(),
        (grown + (16 << 20)).to_string()
    );
    assert_eq!(vm.read("grown-dm.txt").trim(), grown.to_string());
    let fs_kb: u64 = vm.read("grown-fs-kb.txt").trim().parse().unwrap();
    assert!(fs_kb > 100 << 10, "ext4 not grown: {fs_kb} KiB");
    assert_eq!(
        vm.json("grown.json")["size"],
        grown,
        "{}",
        vm.read("grown.json")
    );
    assert_eq!(vm.read("grown-read-host-0.txt"), host_mk);
    assert_eq!(
        vm.read("grown-guest-bin.sha256"),
        vm.read("guest-bin.sha256")
    );
    assert!(
        !host_attempt.status.success(),
        "userspace attach while the kernel node holds the image"
    );
    assert!(
        out_text(&host_attempt).contains("FAILED_PRECONDITION"),
        "{}",
        out_text(&host_attempt)
    );

    // aborted attaches were cleaned up by the retry, never duplicated
    assert!(
        !vm.path("not-aborted.txt").exists(),
        "a fault point was not reached"
    );
    assert_eq!(
        vm.read("after-abort.txt"),
        "mount:krbd-mapped 1\nmount:krbd 1\nmount:dm-opened 1\n",
        "each abort leaves its one mapping, which the next attach replaces"
    );
    assert_eq!(vm.read("mapped.txt").trim(), "mapped 1 dm 1");
    let st = vm.json("status.json");
    assert_eq!(st["datapath"], "kernel", "{st}");
    assert_eq!(st["device"], "/dev/mapper/strongroom-v1", "{st}");
    // dm-crypt over /dev/rbdN with librbd's layout: data at 16 MiB, 4096-byte sectors
    let table = vm.read("table.txt");
    assert!(
        table.contains(" crypt aes-xts-plain64 ")
            && table.contains(" 32768 ")
            && table.contains("sector_size:4096"),
        "{table}"
    );
    let ci = vm.read("config-info.txt");
    assert!(
        ci.contains("key=strongroom-krbd-") && ci.contains(",noshare") && !ci.contains("exclusive"),
        "{ci}"
    );
    assert!(!ci.contains(&admin_key), "the cephx key is in the map line");
    assert_eq!(vm.read("keys.txt").trim(), "0", "kernel keyring entry left");
    // the host's data on the kernel path
    assert_eq!(vm.read("guest-read-host-0.txt"), host_mk);
    assert_eq!(
        vm.read("guest-read-host-bin.sha256").trim(),
        sha256_hex(&host_bin)
    );
    // the second kernel attach (node C) was refused and left B's mapping alone
    assert_ne!(vm.read("node-c.rc").trim(), "0");
    let err = vm.read("node-c.err");
    assert!(err.contains("FAILED_PRECONDITION"), "{err}");
    assert_eq!(vm.read("after-node-c.txt").trim(), "mapped 1 dm 1");
    assert_eq!(vm.read("after-unmount.txt").trim(), "No devices found");
    // stock cryptsetup on the hand-mapped /dev/rbdN
    let dump = vm.read("luksdump.txt");
    assert!(
        dump.contains("Version:       \t2")
            && dump.contains("offset: 16777216 [bytes]")
            && dump.contains("sector: 4096 [bytes]"),
        "{dump}"
    );
    assert_eq!(vm.read("interop-read.txt"), guest_mk);
    assert_eq!(vm.read("interop-bin.sha256"), vm.read("guest-bin.sha256"));
    assert_eq!(vm.read("after-interop.txt").trim(), "No devices found");

    // Host again, userspace: the guest's files, byte for byte.
    ok(vm.host_cli(&["mount", "v1", &mnt_s, "--token-file", &tok]));
    let read_mk = std::fs::read_to_string(mnt.join("guest-0.txt"));
    let read_bin = std::fs::read(mnt.join("guest.bin"));
    let read_grown = std::fs::read(mnt.join("after-grow.bin"));
    ok(vm.host_cli(&["unmount", "v1"]));
    // v2, whose filesystem the kernel node made: recorded in the image, so no mkfs here
    assert_eq!(vm.json("mount-v2.json")["datapath"], "kernel");
    assert_eq!(vm.read("after-v2.txt").trim(), "No devices found");
    let read_v2 = host_reads(&vm, "v2", "first.txt");
    step(t0, "host read the guest's files");
    assert_eq!(read_mk.unwrap(), guest_mk);
    assert_eq!(read_v2, guest_mk);
    assert_eq!(
        sha256_hex(&read_bin.unwrap()),
        vm.read("guest-bin.sha256").trim()
    );
    assert_eq!(
        sha256_hex(&read_grown.unwrap()),
        vm.read("after-grow.sha256").trim()
    );
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Guest half of the msgr2-only test: the kernel path maps over the monitor's v2 address,
/// writes, unmounts, maps again and reads back; evidence into `$D`.
const GUEST_MSGR2: &str = r#"
K="$B volume --root $D/node-k --address $VAULT_ADDR --cluster-id $CL"
$K import m1 --pool rbd --image $IMG --ceph-conf $D/ceph.conf >/dev/null
$K --json mount m1 /mnt/m1 --token-file $D/a.token >$D/mount.json
for d in /sys/bus/rbd/devices/*; do cat $d/config_info; done >$D/config-info.txt
cp $D/guest-marker.txt /mnt/m1/guest.txt
dd if=/dev/urandom of=/mnt/m1/guest.bin bs=64k count=8 2>/dev/null
sha256sum /mnt/m1/guest.bin | cut -d' ' -f1 >$D/guest-bin.sha256
$K unmount m1
$K mount m1 /mnt/m1 --token-file $D/a.token >/dev/null
cat /mnt/m1/guest.txt >$D/reread.txt
sha256sum /mnt/m1/guest.bin | cut -d' ' -f1 >$D/reread-bin.sha256
$K unmount m1
{ ls /sys/bus/rbd/devices; dmsetup ls; } >$D/after.txt
# m2 was created with --krbd-ms-mode secure: mapped in msgr2's secure (encrypted) mode
$K import m2 --pool rbd --image $IMG2 --ceph-conf $D/ceph.conf >/dev/null
$K mount m2 /mnt/m2 --token-file $D/a.token >/dev/null
for d in /sys/bus/rbd/devices/*; do cat $d/config_info; done >$D/config-info-2.txt
cp $D/guest-marker.txt /mnt/m2/guest.txt
$K unmount m2
"#;

/// Issue 12, v2-only monitors: a cluster whose daemons bind msgr2 only (`ms bind msgr1 =
/// false`, as many are set up now) has no v1 monitor address; the kernel path maps the image
/// over the v2 address with `ms_mode=prefer-crc`, writes, maps again and reads back, and the
/// userspace node on the host reads what the kernel node wrote.
#[test]
fn vm_tier_krbd_maps_over_msgr2_when_the_monitors_have_no_v1_address() {
    let t0 = Instant::now();
    let Some(vm) = Vm::start() else { return };
    if !can_mount() {
        eprintln!("*** SKIP VM krbd test: the host half needs root, FUSE and loop ***");
        return;
    }
    let ceph = match DevCluster::start_with(&std::env::temp_dir(), true) {
        Ok(c) => c,
        Err(why) if std::env::var(strongroom_rbd::dev::REQUIRED_ENV).as_deref() == Ok("1") => {
            panic!("Ceph required but unavailable: {why}")
        }
        Err(why) => {
            eprintln!("skipping: no Ceph for this test: {why}");
            return;
        }
    };
    let mons = ceph.monitors().unwrap();
    assert!(!mons.contains("v1:"), "not msgr2-only: {mons}");
    let _unmount = HostUnmount(&vm);
    step(t0, "VM runner, key manager and a msgr2-only Ceph ready");
    let (conf, _) = share_ceph_conf(&vm, &ceph);
    let image = image_of(create_rbd(&vm, &ceph, &conf, "m1", "48M", &[]));
    let image2 = image_of(create_rbd(
        &vm,
        &ceph,
        &conf,
        "m2",
        "32M",
        &["--krbd-ms-mode", "secure"],
    ));
    let bad = create_rbd(&vm, &ceph, &conf, "m3", "32M", &["--krbd-ms-mode", "fast"]);
    assert!(!bad.status.success(), "{}", out_text(&bad));
    let guest_mk = marker("krbd-msgr2");
    std::fs::write(vm.path("guest-marker.txt"), &guest_mk).unwrap();
    let vars = format!("CL={CLUSTER}\nIMG={image}\nIMG2={image2}\n");
    guest(&vm, &format!("{vars}{GUEST_MSGR2}"));
    step(t0, "guest mapped over msgr2");
    assert_eq!(vm.json("mount.json")["datapath"], "kernel");
    let ci = vm.read("config-info.txt");
    let v2 = mons.trim_matches(['[', ']']).trim_start_matches("v2:");
    assert!(
        ci.starts_with(&format!("{v2} ")) && ci.contains(",ms_mode=prefer-crc"),
        "{ci}"
    );
    assert_eq!(vm.read("reread.txt"), guest_mk);
    assert_eq!(vm.read("reread-bin.sha256"), vm.read("guest-bin.sha256"));
    assert_eq!(vm.read("after.txt").trim(), "No devices found");
    let ci = vm.read("config-info-2.txt");
    assert!(ci.contains(",ms_mode=secure,"), "{ci}");
    // the userspace node (librados over msgr2) reads what the kernel node wrote
    assert_eq!(host_reads(&vm, "m1", "guest.txt"), guest_mk);
    assert_eq!(host_reads(&vm, "m2", "guest.txt"), guest_mk);
}

/// Issue 12, a dead kernel node: the guest attaches on the kernel path, writes, syncs and
/// powers off without detaching (its mapping dies with it). Once Ceph drops the dead
/// mapping's watch, the host's attach blocklists that mapping's client address (fencing it)
/// and breaks its claim, and reads what the dead node wrote.
#[test]
fn vm_tier_krbd_a_dead_kernel_nodes_claim_is_fenced_and_broken() {
    let Some((vm, ceph)) = world() else { return };
    let _unmount = HostUnmount(&vm);
    let (conf, _) = share_ceph_conf(&vm, ceph);
    let tok = vm.p("a.token");
    let ns = format!("dead{}", std::process::id());
    let image = image_of(create_rbd(
        &vm,
        ceph,
        &conf,
        "m1",
        "32M",
        &["--rados-namespace", &ns],
    ));
    // dead clients' watches expire in 5 s instead of 30 (watches made from now on)
    let watch_timeout = |v: Option<&str>| {
        let args = match v {
            Some(v) => vec!["config", "set", "osd", "osd_client_watch_timeout", v],
            None => vec!["config", "rm", "osd", "osd_client_watch_timeout"],
        };
        ceph.tool("ceph", &args).unwrap();
    };
    watch_timeout(Some("5"));
    let mk = marker("krbd-dead");
    std::fs::write(vm.path("guest-marker.txt"), &mk).unwrap();
    guest(
        &vm,
        &format!(
            "K=\"$B volume --root $D/node-k --address $VAULT_ADDR --cluster-id {CLUSTER}\"\n\
             $K import m1 --pool rbd --rados-namespace {ns} --image {image} --ceph-conf $D/ceph.conf\n\
             $K mount m1 /mnt/m1 --token-file $D/a.token >/dev/null\n\
             cat /sys/bus/rbd/devices/*/client_addr >$D/dead-addr.txt\n\
             cp $D/guest-marker.txt /mnt/m1/dead.txt; sync\n"
        ),
    );
    // the guest is gone, its mapping never undone: the host's attach waits for its watch to
    // expire (FAILED_PRECONDITION meanwhile), then fences and breaks the claim
    let dead = vm.read("dead-addr.txt").trim().to_owned();
    let mnt = vm.p("host-m1");
    let t0 = Instant::now();
    let attached = loop {
        let o = vm.host_cli(&["mount", "m1", &mnt, "--token-file", &tok]);
        if o.status.success() || t0.elapsed() > Duration::from_secs(90) {
            break o;
        }
        assert!(
            out_text(&o).contains("FAILED_PRECONDITION"),
            "{}",
            out_text(&o)
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    watch_timeout(None);
    ok(attached);
    eprintln!(
        "vm_krbd: the dead node's claim broken after {:?}",
        t0.elapsed()
    );
    let read = std::fs::read_to_string(vm.path("host-m1").join("dead.txt"));
    ok(vm.host_cli(&["unmount", "m1"]));
    assert_eq!(read.unwrap(), mk);
    let bl = String::from_utf8(ceph.tool("ceph", &["osd", "blocklist", "ls"]).unwrap()).unwrap();
    assert!(
        !dead.is_empty() && bl.contains(&dead),
        "{dead} not fenced: {bl}"
    );
}

/// Issue 12, rolling upgrade: a node of an older Strongroom mapped its volumes with
/// `exclusive` and took no attach claim. A kernel attach on an upgraded node while such a
/// mapping holds the image is refused (FAILED_PRECONDITION: by the kernel's map, or by the
/// claim's check for a live unclaimed lock holder when the map went through) instead of
/// attaching and then failing every write; its teardown removes its own mapping and leaves
/// the other one alone; once the old mapping is gone the attach works and the host reads
/// what it wrote.
#[test]
fn vm_tier_krbd_an_older_nodes_exclusive_mapping_refuses_a_kernel_attach() {
    let Some((vm, ceph)) = world() else { return };
    let _unmount = HostUnmount(&vm);
    let (conf, _) = share_ceph_conf(&vm, ceph);
    let ns = format!("old{}", std::process::id());
    let image = image_of(create_rbd(
        &vm,
        ceph,
        &conf,
        "m1",
        "32M",
        &["--rados-namespace", &ns],
    ));
    let mk = marker("krbd-after-old");
    std::fs::write(vm.path("guest-marker.txt"), &mk).unwrap();
    guest(
        &vm,
        &format!(
            "K=\"$B volume --root $D/node-k --address $VAULT_ADDR --cluster-id {CLUSTER}\"\n\
             $K import m1 --pool rbd --rados-namespace {ns} --image {image} --ceph-conf $D/ceph.conf >/dev/null\n\
             modprobe rbd\n\
             key=$(sed -n 's/^[[:space:]]*key = //p' $D/keyring)\n\
             echo \"{mon} name=admin,secret=$key,_pool_ns={ns},exclusive {pool} {image} -\" \
               >/sys/bus/rbd/add_single_major\n\
             old=$(ls /sys/bus/rbd/devices)\n\
             rc=0; $K mount m1 /mnt/m1 --token-file $D/a.token 2>$D/old-refused.err || rc=$?\n\
             echo $rc >$D/old-refused.rc\n\
             ls /sys/bus/rbd/devices >$D/old-devs.txt\n\
             echo $old >/sys/bus/rbd/remove_single_major\n\
             $K mount m1 /mnt/m1 --token-file $D/a.token >/dev/null\n\
             cp $D/guest-marker.txt /mnt/m1/after-old.txt; sync\n\
             $K unmount m1\n",
            pool = ceph.pool(),
            mon = v1_monitor(ceph)
        ),
    );
    assert_ne!(vm.read("old-refused.rc").trim(), "0", "attached beside it");
    let err = vm.read("old-refused.err");
    assert!(
        err.contains("FAILED_PRECONDITION") && err.contains("exclusive lock"),
        "{err}"
    );
    assert_eq!(
        vm.read("old-devs.txt").lines().count(),
        1,
        "the refused attach left its mapping"
    );
    assert_eq!(host_reads(&vm, "m1", "after-old.txt"), mk);
}

/// Issue 12, the CSI driver on the kernel path: a real `strongroom csi` (controller and node in
/// one process) and key manager in the guest, the Ceph of the host, credentials only in the
/// requests' secrets (`userID`/`userKey`) and monitors from a cluster map, as ceph-csi takes
/// them. CreateVolume makes the image; NodeStage maps it with krbd and opens dm-crypt;
/// ControllerExpandVolume grows the image while the node holds it, NodeExpandVolume grows
/// dm-crypt and ext4; the data survives; NodeUnstage leaves no mapping; DeleteVolume leaves no
/// image. The guest half is [`guest_csi_rbd_kernel_node`].
#[test]
fn vm_tier_krbd_csi_stage_expand_unstage_on_the_kernel_path() {
    let Some(vm) = Vm::start() else { return };
    let Some(ceph) = DevCluster::for_tests() else {
        return;
    };
    share_ceph_conf(&vm, ceph);
    std::fs::write(vm.path("mons.txt"), ceph.monitors().unwrap()).unwrap();
    std::fs::write(vm.path("pool.txt"), ceph.pool()).unwrap();
    guest(
        &vm,
        "modprobe rbd\n\
         VM_EVIDENCE=$D $T --exact guest_csi_rbd_kernel_node --ignored --nocapture \
         --test-threads=1 >$D/guest-test.log 2>&1 || { cat $D/guest-test.log; exit 1; }\n",
    );
    let e = vm.json("csi-rbd.json");
    assert_eq!(e["datapath"], "kernel", "{e}");
    assert_eq!(e["mapped_while_staged"], 1, "{e}");
    assert_eq!(e["size_after_expand"], 128u64 << 20, "{e}");
    assert!(
        e["fs_total_after_expand"].as_u64().unwrap() > 100 << 20,
        "ext4 grown by NodeExpandVolume: {e}"
    );
    assert_eq!(e["readback"], e["marker"], "{e}");
    assert_eq!(e["mapped_after_unstage"], 0, "{e}");
    assert_eq!(e["dm_after_unstage"], "No devices found", "{e}");
    assert_eq!(e["leftovers"], serde_json::json!([]), "{e}");
    let image = e["image"].as_str().unwrap();
    assert!(image.starts_with("csi-vol-"), "{e}");
    let ns = e["namespace"].as_str().unwrap();
    let ls = ceph
        .tool("rbd", &["ls", "--namespace", ns, ceph.pool()])
        .unwrap();
    let trash = (ceph.tool("rbd", &["trash", "ls", "--namespace", ns, ceph.pool()])).unwrap();
    let (ls, trash) = (
        String::from_utf8_lossy(&ls),
        String::from_utf8_lossy(&trash),
    );
    assert!(
        !ls.contains(image) && !trash.contains(image),
        "{image} left after DeleteVolume: {ls} {trash}"
    );
    let log = vm.read("guest-test.log");
    assert!(log.contains("test result: ok. 1 passed"), "{log}");
}

/// The guest half of [`vm_tier_krbd_csi_stage_expand_unstage_on_the_kernel_path`]; runs only
/// in the VM (where the kernel has krbd and device-mapper), never on the host. The guest has
/// no loopback of its own (`-N`), so the driver uses the host's key manager (`VAULT_ADDR`,
/// tenant `a`'s token) instead of starting one as the other CSI tests do.
#[test]
#[ignore = "the guest half of a VM tier test: runs inside the VM"]
fn guest_csi_rbd_kernel_node() {
    use csi_common::*;
    use std::collections::HashMap;
    use strongroom_csi::pb::controller_client::ControllerClient;
    use strongroom_csi::pb::node_client::NodeClient;
    use strongroom_csi::pb::*;
    let out = std::path::PathBuf::from(
        std::env::var("VM_EVIDENCE").expect("VM_EVIDENCE (run by the VM tier)"),
    );
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    let key = read("keyring")
        .lines()
        .find_map(|l| l.trim().strip_prefix("key = ").map(str::to_owned))
        .expect("a key in the keyring");
    // the driver's state and socket on the guest's own filesystem (the shared one takes no
    // sockets)
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_path_buf();
    for sub in [
        "kms-config",
        "kms-secrets",
        "volumes",
        "kubelet/staging",
        "kubelet/mount",
    ] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let map = d.join("cluster-map.json");
    let conf = serde_json::json!([{"clusterID": "vm-ceph", "monitors": [read("mons.txt").trim()]}]);
    std::fs::write(&map, conf.to_string()).unwrap();
    let kms = serde_json::json!({ KMS_ID: {
        "KMS_PROVIDER": "vaulttokens",
        "VAULT_ADDR": std::env::var("VAULT_ADDR").expect("VAULT_ADDR"),
        "VAULT_BACKEND_PATH": "secret/strongroom/${pvc.namespace}",
        "VAULT_BACKEND": "kv-v2",
    }});
    std::fs::write(d.join("kms-config/config.json"), kms.to_string()).unwrap();
    std::fs::write(d.join("admin.token"), read("root.token")).unwrap();
    let (sock, log) = (d.join("csi.sock"), d.join("driver.log"));
    let logf = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(common::strongroom_bin())
        .arg("csi")
        .arg("--endpoint")
        .arg(format!("unix://{}", sock.display()))
        .args(["--node-id", "node-1", "--mode", "all", "--ceph-cluster-map"])
        .arg(&map)
        .arg("--root")
        .arg(d.join("volumes"))
        .arg("--kms-config-dir")
        .arg(d.join("kms-config"))
        .arg("--kms-secrets-dir")
        .arg(d.join("kms-secrets"))
        .args(["--default-kms-id", KMS_ID, "--cluster-id", CLUSTER])
        .arg("--admin-token-file")
        .arg(d.join("admin.token"))
        .args(["--log-level", "debug"])
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ch = connect(&rt, &sock, &mut child, &log);
    let (node, ctrl) = (NodeClient::new(ch.clone()), ControllerClient::new(ch));
    let tail = || std::fs::read_to_string(&log).unwrap_or_default();
    macro_rules! ok {
        ($call:expr) => {
            $call
                .unwrap_or_else(|e| panic!("{e:?}\n{}", tail()))
                .into_inner()
        };
    }

    let mut sec: HashMap<String, String> = secrets(read("a.token").trim());
    sec.insert("userID".into(), "admin".into());
    sec.insert("userKey".into(), key);
    let ns = format!("csi{}", std::process::id());
    let params = sc_params(
        "a",
        &[
            ("clusterID", "vm-ceph"),
            ("pool", read("pool.txt").trim()),
            ("radosNamespace", &ns),
        ],
    );
    let v = ok!(rt.block_on(ctrl.clone().create_volume(CreateVolumeRequest {
        name: "pvc-krbd".into(),
        capacity_range: range(64 * MIB),
        volume_capabilities: vec![snw()],
        parameters: params,
        secrets: sec.clone(),
        ..Default::default()
    })))
    .volume
    .unwrap();
    let id = v.volume_id.clone();
    let staging = d.join("kubelet/staging");
    let target = d.join("kubelet/mount/target");
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    ok!(
        rt.block_on(node.clone().node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: path(&staging),
            volume_capability: Some(snw()),
            secrets: sec.clone(),
            volume_context: v.volume_context.clone(),
            ..Default::default()
        }))
    );
    ok!(
        rt.block_on(node.clone().node_publish_volume(NodePublishVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: path(&staging),
            target_path: path(&target),
            volume_capability: Some(snw()),
            volume_context: v.volume_context.clone(),
            ..Default::default()
        }))
    );
    let mapped = || std::fs::read_dir("/sys/bus/rbd/devices").map_or(0, |d| d.count());
    let mapped_while_staged = mapped();
    let st = std::process::Command::new(common::strongroom_bin())
        .args(["volume", "--json", "--root"])
        .arg(d.join("volumes"))
        .args(["status", &id])
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&st.stdout)
        .unwrap_or_else(|_| panic!("{}", volume_common::out_text(&st)));
    let mk = marker("csi-krbd");
    std::fs::write(target.join("marker.txt"), &mk).unwrap();
    ok!(rt.block_on(
        ctrl.clone()
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: id.clone(),
                capacity_range: range(128 * MIB),
                secrets: sec.clone(),
                volume_capability: Some(snw()),
            },)
    ));
    let grown = ok!(
        rt.block_on(node.clone().node_expand_volume(NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: path(&target),
            capacity_range: range(128 * MIB),
            staging_target_path: path(&staging),
            volume_capability: Some(snw()),
            secrets: sec.clone(),
        }))
    );
    let stats = ok!(rt.block_on(
        node.clone()
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: id.clone(),
                volume_path: path(&target),
                staging_target_path: String::new(),
            },)
    ));
    let readback = std::fs::read_to_string(target.join("marker.txt")).unwrap();
    ok!(rt.block_on(
        node.clone()
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id.clone(),
                target_path: path(&target),
            })
    ));
    ok!(
        rt.block_on(node.clone().node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: path(&staging),
        }))
    );
    let mapped_after_unstage = mapped();
    let dm = std::process::Command::new("dmsetup")
        .arg("ls")
        .output()
        .unwrap();
    ok!(rt.block_on(ctrl.clone().delete_volume(DeleteVolumeRequest {
        volume_id: id.clone(),
        secrets: sec,
    })));
    let _ = child.kill();
    let _ = child.wait();
    let e = serde_json::json!({
        "datapath": st["datapath"], "image": v.volume_context["imageName"], "namespace": ns,
        "mapped_while_staged": mapped_while_staged,
        "size_after_expand": grown.capacity_bytes, "fs_total_after_expand": stats.usage[0].total,
        "marker": mk, "readback": readback,
        "mapped_after_unstage": mapped_after_unstage,
        "dm_after_unstage": String::from_utf8_lossy(&dm.stdout).trim(),
        "leftovers": leftovers(&d.join("volumes")),
        "driver_log": tail(),
    });
    std::fs::write(out.join("csi-rbd.json"), e.to_string()).unwrap();
}
