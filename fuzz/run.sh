#!/usr/bin/env bash
# Builds every fuzz target (libFuzzer through cargo-fuzz, on stable Rust) and runs each for SECONDS
# seconds, as many at once as there are cores. Exits 1 if any target found a crash, a hang (one
# input running over 10 s) or an out-of-memory, and prints the input that caused it.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
#   SECONDS  time per target, at least 1 (default 12: all 33 targets take about 3 minutes on
#            2 cores, plus the build)
#   TARGET   run only these targets (default: every target in fuzz/Cargo.toml)
#
# Tools and state live outside the repository, under ${WALA_CACHE_DIR:-/var/cache/wala-ci} (or
# ~/.cache/wala when that is not writable): cargo-fuzz in cargo-fuzz/bin, the build in fuzz-target,
# and the corpus each target grows in fuzz-corpus/<target> (so repeated runs keep going where the
# last one stopped). The committed seeds in fuzz/corpus/<target> are only read. Crash inputs are
# written to fuzz/artifacts/<target>/; replay one with
#   <cache>/fuzz-target/<host triple>/release/<target> fuzz/artifacts/<target>/crash-...
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-12}
shift || true
# (libFuzzer reads -max_total_time=0 as "no limit".)
case $secs in '' | *[!0-9]* | 0) echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

# cargo-fuzz version used; `cargo install --locked` pins its own dependencies.
CARGO_FUZZ_VERSION=0.13.2

cache=${WALA_CACHE_DIR:-/var/cache/wala-ci}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/wala
  mkdir -p "$cache"
fi

# Building needs the library's own build dependencies plus a C++ compiler for libFuzzer.
../scripts/deps.sh build
if ! command -v c++ >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "fuzz: installing g++"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null
  else
    echo "fuzz: no C++ compiler; run as root: apt-get install -y g++" >&2
    exit 1
  fi
fi

tools=$cache/cargo-fuzz
if [ "$("$tools/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "== fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools"
  cargo install --quiet --locked --force cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$tools"
fi
export PATH=$tools/bin:$PATH

# Fail, as `--locked` does for the main workspace, when fuzz/Cargo.lock is not up to date.
cargo fetch --locked --quiet

# No sanitizer: wala is safe Rust (AddressSanitizer would need nightly-only -Zsanitizer), so the
# crashes to find are panics, which libFuzzer catches as aborts. Debug assertions and overflow
# checks are on, so that arithmetic overflow on hostile input is a crash too.
target_dir=$cache/fuzz-target
echo "== fuzz: building"
cargo fuzz build --sanitizer none --debug-assertions --target-dir "$target_dir" 2>&1 | grep -v '^\s*Compiling' || true
bin_dir=$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
for t in "${targets[@]}"; do
  [ -x "$bin_dir/$t" ] || { echo "fuzz: no target named $t" >&2; exit 2; }
done

jobs=$(nproc 2>/dev/null || echo 1)
logs=$(mktemp -d /tmp/wala-fuzz.XXXXXX)
trap 'rm -rf "$logs"' EXIT
echo "== fuzz: ${#targets[@]} targets, ${secs}s each, $jobs at a time"

# Inputs up to 1 MiB for the parsers of documents and archives, where the size and parser-cost
# blowups live (docs/security.md: a 1 MB OVF of namespace declarations, 100,000 attributes, zip
# bombs); the committed adversarial seeds start them there. libFuzzer's default (the largest seed,
# at least 4 KiB) for the rest. -timeout=10 turns a quadratic parser into a reported hang.
max_len_of() {
  case $1 in
    zip_* | ovf_* | wire_* | ext_config | ext_vm_settings | ext_manifest | ext_status | imds_instance | conf_parse | dvd_read)
      echo "-max_len=1048576" ;;
    *) echo "-max_len=0" ;;
  esac
}

run_one() {
  local t=$1 work=$cache/fuzz-corpus/$1 status=0
  mkdir -p "$work" "artifacts/$t" "corpus/$t"
  "$bin_dir/$t" "$work" "corpus/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    "$(max_len_of "$t")" -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$logs/$t.log" 2>&1 || status=$?
  echo "$status" >"$logs/$t.status"
}

for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n || true
  done
  run_one "$t" &
done
wait

failed=0
for t in "${targets[@]}"; do
  status=$(cat "$logs/$t.status")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log")
  cov=$(grep -o 'cov: [0-9]*' "$logs/$t.log" | tail -1 || true)
  if [ "$status" = 0 ]; then
    printf 'ok      %-22s %10s runs  %s\n' "$t" "${runs:-?}" "$cov"
  else
    failed=1
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$logs/$t.log" | tail -1)
    printf 'FAILED  %-22s exit %s, input: fuzz/%s\n' "$t" "$status" "${input:-(none written)}"
    { grep -A3 'panicked at' "$logs/$t.log" || true; grep 'ERROR: libFuzzer' "$logs/$t.log" || true; } |
      head -c 4000 | sed 's/^/    /'
  fi
done
exit $failed
