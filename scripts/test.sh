#!/usr/bin/env bash
# Runs every check wala has: formatting, lints, and all tests (unit, conformance over
# ../shared/fixtures when present, CLI tests against the real binaries, root-only tests).
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh test

# In CI the clone is fresh every time: keep compiled dependencies in a cache outside the repository,
# one per checkout path. Cargo does not rebuild a test binary when only the checkout moved, and a
# test binary reads its fixtures from the path it was built at (env!("CARGO_MANIFEST_DIR")): a cache
# shared by two checkouts ran one checkout's tests against the other's files.
if [ "${CI:-}" = true ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  checkout_key=$(pwd -P | sha256sum | cut -c1-12)
  export CARGO_TARGET_DIR=${WALA_CACHE_DIR:-/var/cache/wala-ci}/target-$checkout_key
fi

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test"
log=$(mktemp /tmp/wala-test.XXXXXX)
WALA_SKIP_LOG=$(mktemp /tmp/wala-skips.XXXXXX)
export WALA_SKIP_LOG
trap 'rm -f "$log" "$WALA_SKIP_LOG"' EXIT
cargo test --locked --workspace 2>&1 | tee "$log"
# Every parser of outside input under libFuzzer for a short while (fuzz/run.sh 600 for a long run;
# WALA_FUZZ_SECONDS=0 skips it). A crash fails the run after the remaining checks.
fuzz_status=0
if [ "${WALA_FUZZ_SECONDS:-12}" != 0 ]; then
  echo "== fuzz"
  fuzz/run.sh "${WALA_FUZZ_SECONDS:-12}" || fuzz_status=$?
else
  echo "SKIP fuzz run: WALA_FUZZ_SECONDS=0" | tee -a "$WALA_SKIP_LOG"
fi
echo "== boot integration (units, dracut module, package)"
tests/boot/check.sh 2>&1 | tee -a "$log"
echo "== VM boot test (tests/vm/run.sh: Debian 12 with systemd-networkd under qemu against wala-fabric)"
# Needs root and Debian's packages (it installs qemu-system-x86, debootstrap, genisoimage); CI
# runs as root on Debian 12. WALA_VM_TEST=0 turns it off.
if [ "${WALA_VM_TEST:-1}" = 0 ]; then
  echo "SKIP VM boot test: WALA_VM_TEST=0" | tee -a "$WALA_SKIP_LOG"
elif [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null || [ ! -f /etc/debian_version ]; then
  echo "SKIP VM boot test: needs root on Debian (apt-get installs qemu-system-x86)" | tee -a "$WALA_SKIP_LOG"
else
  tests/vm/run.sh 2>&1 | tee -a "$log"
  grep '^PENDING ' "$log" >>"$WALA_SKIP_LOG" || true
  # One more cell of the matrix (Debian 12/13 times networkd/NetworkManager/ifupdown), a
  # different one each day; tests/vm/matrix.sh alone boots them all. WALA_VM_MATRIX=0 skips it.
  if [ "${WALA_VM_MATRIX:-1}" = 0 ]; then
    echo "SKIP VM matrix cell: WALA_VM_MATRIX=0" | tee -a "$WALA_SKIP_LOG"
  else
    echo "== VM matrix: one rotating cell (tests/vm/matrix.sh --rotate)"
    tests/vm/matrix.sh --rotate 2>&1 | tee -a "$log"
  fi
fi
echo "== summary"
if [ -s "$WALA_SKIP_LOG" ]; then
  echo "skipped (with the reason):"
  sort -u "$WALA_SKIP_LOG"
fi
# cargo's "test result:" lines plus the boot checks' own "N passed, M failed" line.
awk '/^test result:/ {p+=$4; f+=$6} /^[0-9]+ passed, [0-9]+ failed$/ {p+=$1; f+=$3} END {printf "%d passed, %d failed\n", p, f}' "$log"
if [ "$fuzz_status" != 0 ]; then
  echo "fuzz: a target crashed or hung (see the FAILED lines above)"
  exit 1
fi
