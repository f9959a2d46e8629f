#!/usr/bin/env bash
# Benchmark: the footprint of wala-agentd against the fabric simulator on loopback.
#   1. 10,000 goal-state polls with nothing changing;
#   2. 1,000 polls in which every goal state is a new incarnation, and 3. 3,000 of them (a leak
#      would show as a higher RSS than in 2).
# Prints RSS at the end, peak RSS and CPU time of each run (the daemon reports its own, from
# /proc/self/status and getrusage), and CPU per poll. Targets: RSS under 5 MiB and no growth
# between the two runs; under 1 ms of CPU per idle poll. Usage: bench/daemon-footprint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release -q -p wala-agentd -p wala-fabric
bin=$PWD/target/release
work=$(mktemp -d /tmp/wala-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start_fabric() { # name [faults-file]
  local args=(--ports-file "$work/$1.ports")
  [ $# -gt 1 ] && args+=(--faults "$2")
  "$bin/wala-fabric" "${args[@]}" >/dev/null &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$work/$1.ports" ] && return; sleep 0.05; done
  echo "fabric did not start" >&2
  exit 1
}

make_root() { # name ports-file
  local root=$work/$1 ports
  ports=$(cat "$2")
  mkdir -p "$root"/{etc,var/log,var/lib/waagent}
  echo bench-vm >"$root/etc/hostname"
  printf 'Wala.WireServer=%s\nWala.HostGAPlugin=%s\nWala.Imds=%s\n' \
    "$(sed -E 's/.*"wireserver":"([^"]+)".*/\1/' <<<"$ports")" \
    "$(sed -E 's/.*"hostgaplugin":"([^"]+)".*/\1/' <<<"$ports")" \
    "$(sed -E 's/.*"imds":"([^"]+)".*/\1/' <<<"$ports")" >"$root/etc/waagent.conf"
  echo "$root"
}

run() { # root polls -> "wakeups rss peak cpu"
  "$bin/wala-agentd" daemon --root "$1" --goal-state-period-ms 0 --max-wakeups "$2" 2>/dev/null
  grep 'stopping after' "$1/var/log/waagent.log" | tail -n1 |
    sed -E 's/.*after ([0-9]+) wake-ups.*RSS ([0-9]+) KiB, peak ([0-9]+) KiB, CPU ([0-9]+) ms.*/\1 \2 \3 \4/'
}

start_fabric idle
idle_root=$(make_root idle "$work/idle.ports")
read -r n1 rss1 peak1 cpu1 <<<"$(run "$idle_root" 10000)"

echo '[{"listener":"wireserver","path":"/machine/?comp=goalstate","action":{"kind":"bump_incarnation"}}]' >"$work/bump.json"
start_fabric busy "$work/bump.json"
busy_root=$(make_root busy "$work/busy.ports")
read -r n2 rss2 peak2 cpu2 <<<"$(run "$busy_root" 1000)"
# Three times as many changes: a leak would show as a higher RSS here.
start_fabric busier "$work/bump.json"
busier_root=$(make_root busier "$work/busier.ports")
read -r n3 rss3 peak3 cpu3 <<<"$(run "$busier_root" 3000)"

printf '%-44s %10s %10s %10s %12s\n' "wala-agentd, $(date -u +%F), $(nproc) cores" "RSS KiB" "peak KiB" "CPU ms" "CPU ms/poll"
printf '%-44s %10d %10d %10d %12.3f\n' "$n1 polls, nothing changing" "$rss1" "$peak1" "$cpu1" "$(echo "$cpu1 / $n1" | bc -l)"
printf '%-44s %10d %10d %10d %12.3f\n' "$n2 polls, a new incarnation each time" "$rss2" "$peak2" "$cpu2" "$(echo "$cpu2 / $n2" | bc -l)"
printf '%-44s %10d %10d %10d %12.3f\n' "$n3 polls, a new incarnation each time" "$rss3" "$peak3" "$cpu3" "$(echo "$cpu3 / $n3" | bc -l)"
printf 'binary: %d KiB stripped\n' "$(( $(stat -c %s "$bin/wala-agentd") / 1024 ))"
