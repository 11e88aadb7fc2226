#!/usr/bin/env bash
# run-vm.sh — run a command as root in a throwaway Linux VM that has device-mapper / dm-crypt.
#
# The VM is Debian's own kernel plus a small busybox initramfs holding the host's cryptsetup,
# dmsetup, losetup and e2fsprogs, booted by QEMU. Everything it needs is fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` into a cache; nothing is installed.
# It exists because the dev/CI hosts' kernels may lack device-mapper, and it is for behaviour
# tests only: under TCG (no usable KVM) crypto runs ~100x slower than native.
#
# Usage:
#   scripts/vm/run-vm.sh --build                 # prepare the cache only (first time ~15 s)
#   scripts/vm/run-vm.sh [options] -- WORDS...   # WORDS run by the guest's sh (like ssh)
#   scripts/vm/run-vm.sh [options] -s SCRIPT [ARGS...]
# Options:
#   -d DIR        share DIR (9p) at the same absolute path in the guest; the command runs there
#   --disk SIZE   add a sparse scratch disk (/dev/vda, /dev/vdb, ... in order; $VM_DISKS)
#   -f SRC[:DEST] copy a host file into the guest (default DEST /opt/vm/, on PATH) + its libraries
#   -l BIN        copy only the shared libraries BIN needs (BIN itself runs from the share)
#   -n            network (slirp): the host's 127.0.0.1:PORT is 10.0.2.2:PORT in the guest
#   -N            as -n, and the guest's 127.0.0.0/8 is the host's loopback (the guest has none
#                 of its own): for a Ceph on the host's 127.0.0.1, whose OSD addresses the
#                 monitors hand out as 127.0.0.1 (the kernel rbd driver needs the mons' v1 port)
#   -e NAME=VALUE export in the guest command's environment (not on the kernel command line)
#   -t SECONDS    wall-clock limit (default 600); -m MiB memory (default 1024); -c vCPUs
# The guest's sh is busybox ash, which runs its own applet before searching PATH: call the
# host's util-linux tools by full path in guest scripts (/usr/sbin/losetup, /usr/sbin/blkid).
# Exit status: the guest command's, 124 on timeout, 125 if the VM died without reporting one,
# 2 on a usage error, 3 when the runner cannot prepare the VM (missing host tool, apt failure).
#
# Environment: STRONGROOM_VM_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/strongroom-vm),
# VM_ACCEL=auto|kvm|tcg, QEMU=/path/to/qemu-system-x86_64, VM_APPEND (extra kernel args),
# VM_LOG=FILE (console copy), VM_QUIET=1 (console only into VM_LOG / a temp file).
set -euo pipefail

SELF=$(readlink -f "$0")
CACHE=${STRONGROOM_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strongroom-vm}
TIMEOUT=600 MEM=1024 CPUS="" NET=0 SHARE="" SCRIPT="" BUILD=0
FILES=() ENVS=() DISKS=() LIBS_FOR=()

say() { printf 'run-vm: %s\n' "$*" >&2; }
fail() { say "error: $*"; exit 3; }
usage() { say "usage error: $*"; sed -n '10,28p' "$SELF" >&2; exit 2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
quote() { printf "'%s'" "$(printf %s "$1" | sed "s/'/'\\\\''/g")"; }

while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=1; shift ;;
        -d) [ -d "${2:-}" ] || usage "-d needs a directory"; SHARE=$(readlink -f "$2"); shift 2 ;;
        --disk) DISKS+=("${2:?--disk SIZE}"); shift 2 ;;
        -f) FILES+=("${2:?-f FILE}"); shift 2 ;;
        -l) LIBS_FOR+=("${2:?-l BIN}"); shift 2 ;;
        -n) NET=1; shift ;;
        -N) NET=hostlo; shift ;;
        -e) case ${2:-} in *=*) ENVS+=("$2") ;; *) usage "-e needs NAME=VALUE" ;; esac; shift 2 ;;
        -t) TIMEOUT=${2:?}; shift 2 ;;
        -m) MEM=${2:?}; shift 2 ;;
        -c) CPUS=${2:?}; shift 2 ;;
        -s) SCRIPT=$(readlink -f "${2:?-s SCRIPT}"); shift 2; break ;;
        --) shift; break ;;
        -h|--help) sed -n '2,33p' "$SELF"; exit 0 ;;
        *) usage "unknown option $1" ;;
    esac
done
[ "$BUILD" = 1 ] || [ -n "$SCRIPT" ] || [ $# -gt 0 ] || usage "no command"
case $SHARE in *,*) usage "a shared path must not contain a comma (qemu option syntax)" ;; esac

for t in apt-get apt-cache dpkg-deb xz flock timeout ldd cpio; do
    command -v "$t" >/dev/null || [ "$t" = cpio ] || fail "host tool '$t' missing"
done

mkdir -p "$CACHE"
exec 8>"$CACHE/.lock"
flock 8

# ------------------------------------------------------------------ fetching .debs
fetch_debs() { # DIR PKG... : apt-get download into DIR (no install)
    local dir=$1; shift
    mkdir -p "$dir"
    if ! (cd "$dir" && apt-get download -q "$@") >"$dir/apt.log" 2>&1; then
        # a fresh machine may have no package lists yet
        if [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 &&
            (cd "$dir" && apt-get download -q "$@") >"$dir/apt.log" 2>&1; then
            return 0
        fi
        cat "$dir/apt.log" >&2
        fail "apt-get download $* failed"
    fi
}

unpack_debs() { # DIR ROOT
    local d
    for d in "$1"/*.deb; do dpkg-deb -x "$d" "$2"; done
}

# The bzImage's payload is an xz stream; its ELF vmlinux can be booted directly through PVH,
# which skips firmware and the in-guest decompressor (seconds under TCG).
bzimage_to_elf() { # BZIMAGE OUT
    local off
    for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$1" | cut -d: -f1); do
        tail -c +$((off + 1)) "$1" | xz -dcq >"$2.tmp" 2>/dev/null || true
        if [ "$(head -c 4 "$2.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
            mv "$2.tmp" "$2"
            return 0
        fi
    done
    rm -f "$2.tmp"
    return 1
}

prepare_kernel() {
    local pkg dir
    pkg=${VM_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')}
    [ -n "$pkg" ] || fail "cannot resolve linux-image-amd64 (run apt-get update)"
    dir=$CACHE/kernel-$pkg
    if [ ! -f "$dir/ready" ]; then
        say "fetching kernel $pkg"
        rm -rf "$dir"
        fetch_debs "$dir/debs" "$pkg"
        unpack_debs "$dir/debs" "$dir/root"
        rm -rf "$dir/debs" "$dir/root/usr/share/doc"
        KVER=$(ls "$dir/root/lib/modules")
        depmod -b "$dir/root" "$KVER" # the package leaves this to its postinst
        if grep -q '^CONFIG_PVH=y' "$dir/root/boot/config-$KVER"; then
            bzimage_to_elf "$dir/root/boot/vmlinuz-$KVER" "$dir/vmlinux" || say "no ELF payload; booting the bzImage"
        fi
        touch "$dir/ready"
    fi
    KROOT=$dir/root
    KVER=$(ls "$KROOT/lib/modules")
    KIMAGE=$KROOT/boot/vmlinuz-$KVER
    [ -f "$dir/vmlinux" ] && KIMAGE=$dir/vmlinux
    return 0
}

prepare_busybox() {
    BUSYBOX=$CACHE/busybox/root/bin/busybox
    [ -x "$BUSYBOX" ] && return 0
    say "fetching busybox-static"
    rm -rf "$CACHE/busybox"
    fetch_debs "$CACHE/busybox/debs" busybox-static
    unpack_debs "$CACHE/busybox/debs" "$CACHE/busybox/root"
}

# QEMU from PATH, else Debian's qemu-system-x86 unpacked with the libraries the host lacks
# (installing it can conflict with a newer qemu-utils already on the host).
prepare_qemu() {
    QEMU_LIBPATH="" QEMU_DATA=()
    QEMU_BIN=${QEMU:-$(command -v qemu-system-x86_64 || true)}
    [ -n "$QEMU_BIN" ] && return 0
    local dir=$CACHE/qemu pkgs="qemu-system-x86 qemu-system-common qemu-system-data seabios" extra="" p
    if [ ! -f "$dir/ready" ]; then
        say "no qemu-system-x86_64 on PATH; unpacking Debian's qemu-system-x86 into the cache"
        rm -rf "$dir"
        for p in $(apt-cache depends $pkgs 2>/dev/null | awk '$1 ~ /Depends:$/ && $2 ~ /^lib/ { print $2 }' | sort -u); do
            dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || extra="$extra $p"
        done
        # shellcheck disable=SC2086
        fetch_debs "$dir/debs" $pkgs $extra
        unpack_debs "$dir/debs" "$dir/root"
        rm -rf "$dir/debs" "$dir/root/usr/share/doc"
        touch "$dir/ready"
    fi
    QEMU_BIN=$dir/root/usr/bin/qemu-system-x86_64
    QEMU_LIBPATH=$dir/root/usr/lib/x86_64-linux-gnu
    QEMU_DATA=(-L "$dir/root/usr/share/qemu" -L "$dir/root/usr/share/seabios")
    if ! LD_LIBRARY_PATH=$QEMU_LIBPATH "$QEMU_BIN" --version >/dev/null 2>&1; then
        LD_LIBRARY_PATH=$QEMU_LIBPATH ldd "$QEMU_BIN" | grep 'not found' >&2 || true
        fail "the unpacked qemu does not start (libraries above missing)"
    fi
}

# ------------------------------------------------------------------ the base initramfs
# Host programs the guest needs (with their shared libraries); the first four are required.
# util-linux mount/umount shadow busybox's (the CSI driver binds with --bind, remount,bind,ro).
PROGS_NEEDED="cryptsetup dmsetup mke2fs kmod"
PROGS_WANTED="losetup blkid e2fsck resize2fs dumpe2fs tune2fs blockdev wipefs mkfs.xfs xfs_growfs mount umount"
MODULES="virtio_pci virtio_blk virtio_net virtio_rng 9p 9pnet_virtio dm_mod dm_crypt loop ext4 xfs
    fuse af_alg algif_skcipher rbd"
BOOT_MODULES="virtio_pci virtio_blk virtio_rng dm_mod dm_crypt loop ext4 af_alg algif_skcipher"

host_prog() { PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v "$1" || true; }

libs_of() { # ELF -> its shared libraries (absolute paths)
    ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
}

put() { # ROOT SRC DEST : copy a file and its library closure into ROOT
    local root=$1 src=$2 dest=$3 lib
    mkdir -p "$root$(dirname "$dest")"
    cp -L "$src" "$root$dest"
    for lib in $(libs_of "$src"); do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}

write_init() {
    cat >"$1" <<'EOF'
#!/bin/sh
# PID 1: mount the basics, load modules, run /opt/vm/cmd.sh, report its status, power off.
export PATH=/opt/vm:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root DM_DISABLE_UDEV=1
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /dev/mapper /run/cryptsetup /run/lock /tmp /root
mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run; mkdir -p /run/cryptsetup /run/lock; mount -t tmpfs tmpfs /tmp
ln -sf /proc/self/fd /dev/fd
. /opt/vm/config
ip link set lo up
modprobe -qa $VM_MODULES || echo "vm-init: some of [$VM_MODULES] failed to load"
if [ -n "$VM_SHARE" ]; then
    mkdir -p "$VM_SHARE"
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=mmap share "$VM_SHARE" ||
        echo "vm-init: mounting the share $VM_SHARE failed"
    cd "$VM_SHARE" || cd /root
else
    cd /root
fi
if [ "$VM_NET" != 0 ]; then
    ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
    echo 'nameserver 10.0.2.3' >/etc/resolv.conf
fi
if [ "$VM_NET" = hostlo ]; then # 127/8 leaves through eth0; slirp connects to the host's
    ip addr del 127.0.0.1/8 dev lo && echo 1 >/proc/sys/net/ipv4/conf/eth0/route_localnet &&
        ip route add 127.0.0.0/8 via 10.0.2.2 dev eth0 onlink || echo "vm-init: host-loopback setup failed"
fi
sh /opt/vm/cmd.sh </dev/null
rc=$?
cd /; sync
[ -n "$VM_SHARE" ] && umount "$VM_SHARE" 2>/dev/null
printf '\nVM-EXIT=%s %s\n' "$rc" "$VM_NONCE"
poweroff -f
EOF
    chmod 755 "$1"
}

base_id() {
    {
        sha256sum "$SELF" "$BUSYBOX"
        echo "$KVER"
        local p
        for p in $PROGS_NEEDED $PROGS_WANTED; do
            p=$(host_prog "$p") && [ -n "$p" ] && stat -Lc '%n %s %Y' "$p"
        done
    } | sha256sum | cut -c1-16
}

prepare_base() {
    BASE=$CACHE/base-$(base_id).cpio
    [ -f "$BASE" ] && return 0
    local t0 st p path mdir m f
    t0=$(now)
    say "building the base initramfs for $KVER"
    st=$(mktemp -d "$CACHE/stage.XXXXXX")
    mkdir -p "$st"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,opt/vm,lib/modules}
    for p in $PROGS_NEEDED; do
        path=$(host_prog "$p")
        [ -n "$path" ] || fail "host program '$p' missing (apt-get install cryptsetup-bin dmsetup e2fsprogs kmod)"
        put "$st" "$path" "/usr/sbin/$p"
    done
    for p in $PROGS_WANTED; do
        path=$(host_prog "$p")
        [ -n "$path" ] && put "$st" "$path" "/usr/sbin/$p"
    done
    for p in /lib/x86_64-linux-gnu/libgcc_s.so.1 /lib/x86_64-linux-gnu/libnss_files.so.2; do
        [ -e "$p" ] && put "$st" "$p" "$p" # loaded with dlopen: ldd does not list them
    done
    mv "$st/usr/sbin/kmod" "$st/usr/bin/kmod"
    for p in modprobe insmod lsmod rmmod depmod modinfo; do ln -s /usr/bin/kmod "$st/sbin/$p"; done
    ln -s mke2fs "$st/usr/sbin/mkfs.ext4"
    [ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$st/etc/"
    cp "$BUSYBOX" "$st/bin/busybox"
    for p in $("$BUSYBOX" --list-full); do
        [ -e "$st/$p" ] || [ -L "$st/$p" ] || { mkdir -p "$st/$(dirname "$p")"; ln -s /bin/busybox "$st/$p"; }
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$st/etc/passwd"
    printf 'root:x:0:\ndisk:x:6:\n' >"$st/etc/group"
    printf '127.0.0.1 localhost\n10.0.2.2 host\n' >"$st/etc/hosts"
    ln -s /proc/mounts "$st/etc/mtab"
    # modules: the list above and every crypto module, each with its dependencies
    mdir=$KROOT/lib/modules/$KVER
    for m in $MODULES $(cd "$mdir/kernel" && find crypto arch/x86/crypto lib/crypto -name '*.ko*' |
        sed 's#.*/##; s/\.ko.*//'); do
        modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }' ||
            say "module $m is not in $KVER"
    done | sort -u | while read -r f; do
        p=$st/lib/modules/$KVER/${f#"$mdir"/}
        mkdir -p "$(dirname "$p")"
        cp "$f" "$p"
    done
    for f in modules.builtin modules.builtin.modinfo modules.order; do cp "$mdir/$f" "$st/lib/modules/$KVER/"; done
    depmod -b "$st" "$KVER"
    write_init "$st/init"
    rm -f "$CACHE"/base-*.cpio
    (cd "$st" && find . -mindepth 1 | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) >"$BASE.tmp"
    rm -rf "$st"
    mv "$BASE.tmp" "$BASE"
    say "base initramfs $(du -h "$BASE" | cut -f1) in $(since "$t0") s"
}

T0=$(now)
prepare_kernel
prepare_busybox
prepare_qemu
prepare_base
exec 8>&-
if [ "$BUILD" = 1 ]; then
    say "ready: kernel $KVER, qemu $QEMU_BIN, cache $CACHE ($(since "$T0") s)"
    exit 0
fi

# ------------------------------------------------------------------ this run's overlay
RUN=$(mktemp -d "${TMPDIR:-/tmp}/strongroom-vm.XXXXXX")
trap 'rm -rf "$RUN"' EXIT
OV=$RUN/overlay
mkdir -p "$OV/opt/vm"
for f in "${FILES[@]}"; do
    src=${f%%:*} dest=/opt/vm/
    [ "$src" = "$f" ] || dest=${f#*:}
    [ -e "$src" ] || usage "-f $src: no such file"
    case $dest in */) dest=$dest$(basename "$src") ;; esac
    put "$OV" "$(readlink -f "$src")" "$dest"
done
for bin in "${LIBS_FOR[@]}"; do
    [ -e "$bin" ] || usage "-l $bin: no such file"
    for lib in $(libs_of "$bin"); do [ -e "$OV$lib" ] || put "$OV" "$lib" "$lib"; done
done
NONCE=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
mods=$BOOT_MODULES
[ "$NET" != 0 ] && mods="$mods virtio_net"
[ -n "$SHARE" ] && mods="$mods 9pnet_virtio 9p"
{
    echo "VM_NONCE=$NONCE"
    echo "VM_SHARE=$(quote "$SHARE")"
    echo "VM_NET=$NET"
    echo "VM_MODULES='$mods'"
} >"$OV/opt/vm/config"
{
    for e in "${ENVS[@]}"; do echo "export ${e%%=*}=$(quote "${e#*=}")"; done
    names="" i=0
    for _ in "${DISKS[@]}"; do names="$names /dev/vd$(printf "\\$(printf %03o $((97 + i)))")"; i=$((i + 1)); done
    echo "export VM_DISKS=$(quote "${names# }")"
    if [ -n "$SCRIPT" ]; then
        cp "$SCRIPT" "$OV/opt/vm/script"
        printf 'sh /opt/vm/script'
        for a in "$@"; do printf ' %s' "$(quote "$a")"; done
        echo
    else
        echo "$*"
    fi
} >"$OV/opt/vm/cmd.sh"
(cd "$OV" && find . -mindepth 1 | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) >"$RUN/overlay.cpio"
cat "$BASE" "$RUN/overlay.cpio" >"$RUN/initrd"

# ------------------------------------------------------------------ qemu
ACCEL=${VM_ACCEL:-auto}
if [ "$ACCEL" = auto ]; then
    ACCEL=tcg
    # PVM's /dev/kvm (kvm_pvm) boots only PVM-enabled guest kernels, not Debian's
    if [ ! -d /sys/module/kvm_pvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then ACCEL=kvm; fi
fi
case $ACCEL in
    kvm) accel=(-accel kvm -cpu host); CPUS=${CPUS:-2} ;;
    tcg) accel=(-accel tcg,thread=multi -cpu max); CPUS=${CPUS:-1} ;;
    *) usage "VM_ACCEL must be auto, kvm or tcg" ;;
esac
cmdline="console=ttyS0 panic=-1 reboot=t quiet loglevel=4 mitigations=off random.trust_cpu=on"
# boot-time savings under TCG: no crypto self-tests, LSMs, audit, IPv6 or PS/2 probing
cmdline="$cmdline cryptomgr.notests=1 lsm=capability audit=0 ipv6.disable=1 i8042.noaux i8042.nokbd"
cmdline="$cmdline ${VM_APPEND:-}"
args=(-nodefaults -no-user-config -machine q35 "${accel[@]}" -m "$MEM" -smp "$CPUS"
    -display none -serial stdio -no-reboot -kernel "$KIMAGE" -initrd "$RUN/initrd"
    -append "$cmdline" -device virtio-rng-pci "${QEMU_DATA[@]}")
i=0
for size in "${DISKS[@]}"; do
    truncate -s "$size" "$RUN/disk$i"
    args+=(-drive "if=none,id=d$i,format=raw,cache=unsafe,discard=unmap,file=$RUN/disk$i"
        -device "virtio-blk-pci,drive=d$i,serial=disk$i")
    i=$((i + 1))
done
[ -n "$SHARE" ] && args+=(-fsdev "local,id=fs0,path=$SHARE,security_model=none"
    -device virtio-9p-pci,fsdev=fs0,mount_tag=share)
[ "$NET" != 0 ] && args+=(-netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=)

LOG=${VM_LOG:-$RUN/console}
T1=$(now)
say "booting $KVER ($ACCEL, $CPUS vCPU, $MEM MiB) after $(since "$T0") s of setup"
set +e
if [ "${VM_QUIET:-0}" = 1 ]; then
    LD_LIBRARY_PATH=${QEMU_LIBPATH:-${LD_LIBRARY_PATH:-}} timeout -k 5 "$TIMEOUT" "$QEMU_BIN" "${args[@]}" \
        </dev/null 2>&1 | sed -u 's/\r$//' >"$LOG"
else
    LD_LIBRARY_PATH=${QEMU_LIBPATH:-${LD_LIBRARY_PATH:-}} timeout -k 5 "$TIMEOUT" "$QEMU_BIN" "${args[@]}" \
        </dev/null 2>&1 | sed -u 's/\r$//' | tee "$LOG"
fi
qrc=${PIPESTATUS[0]}
set -e
rc=$(sed -n "s/^VM-EXIT=\([0-9]*\) $NONCE\$/\1/p" "$LOG" | tail -n 1)
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then say "timed out after $TIMEOUT s"; exit 124; fi
if [ -z "$rc" ]; then say "the VM stopped without reporting an exit status (qemu $qrc)"; exit 125; fi
say "guest exit $rc after $(since "$T1") s"
exit "$rc"
