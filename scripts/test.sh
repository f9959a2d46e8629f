#!/usr/bin/env bash
# Runs every check wala has: formatting, lints, and all tests (unit, conformance over
# ../shared/fixtures when present, CLI tests against the real binaries, root-only tests).
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh test

# In CI the clone is fresh every time: keep compiled dependencies in a cache outside the repository.
if [ "${CI:-}" = true ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR=${WALA_CACHE_DIR:-/var/cache/wala-ci}/target
fi

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --workspace 2>&1 | tee /tmp/wala-test.log
echo "== summary"
grep -E '^test result:' /tmp/wala-test.log | awk '{p+=$4; f+=$6} END {printf "%d passed, %d failed\n", p, f}'
grep -h '^SKIP ' /tmp/wala-test.log | sort -u || true
