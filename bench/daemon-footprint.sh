#!/usr/bin/env bash
# Benchmark: the footprint of wala-agentd against the fabric simulator on loopback.
#   1. 10,000 goal-state polls with nothing changing, twice: against endpoints that keep idle
#      connections open (the simulator's default, 60 s) and against endpoints that close every
#      connection after its answer (--keep-alive-idle-ms 0; what the platform does is not known,
#      docs/daemon.md), so both figures are printed;
#      then 10,000 polls as the daemon polls while Fast Track is quiet (vmSettings on every poll,
#      the WireServer goal state about every fifth: 2-ms polls, a 10-ms Wala.WireServerPollPeriod);
#   2. 1,000 polls in which every goal state is a new incarnation, and 3. 3,000 of them (a leak
#      would show as a higher RSS than in 2).
# Prints RSS at the end, peak RSS and CPU time of each run (the daemon reports its own, from
# /proc/self/status and getrusage), and CPU per poll; for the idle run also what one idle period
# costs on the wire, from the simulator's counters (/__fabric/traffic: requests, connections and
# bytes each way, the start-up poll left out). Targets: RSS under 5 MiB and no growth between the
# two runs; at most 0.1 ms of CPU per idle poll (issue #19); per idle period at most waagent's
# requests and half its bytes from the platform (docs/daemon.md). Then the daemon at rest: run
# for $WALA_BENCH_REST_SECONDS (default 20) with a 1-s goal-state period, so that it has taken the
# goal state and decrypted the certificates (in the wala-crypto helper), then its RSS and Pss
# from /proc/<pid>/smaps_rollup, by mapping from /proc/<pid>/smaps, and the libraries it maps;
# it fails if libssl or libcrypto is mapped (docs/security.md, "The crypto helper"). Binaries from
# $CARGO_TARGET_DIR (default ./target), built as the Makefile builds them (wala-crypto in a cargo
# run of its own, the only one with the library's `https`). Usage: bench/daemon-footprint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release -q -p wala-agentd -p wala-fabric
cargo build --locked --release -q -p wala-crypto
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d /tmp/wala-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench/fabric-root.sh
. bench/fabric-root.sh

run() { # root polls [period-ms [wireserver-period-ms]] -> "wakeups rss peak cpu"
  "$bin/wala-agentd" daemon --root "$1" --goal-state-period-ms "${3:-0}" --wireserver-period-ms "${4:-${3:-0}}" \
    --max-wakeups "$2" 2>/dev/null
  grep 'stopping after' "$1/var/log/waagent.log" | tail -n1 |
    sed -E 's/.*after ([0-9]+) wake-ups.*RSS ([0-9]+) KiB, peak ([0-9]+) KiB, CPU ([0-9]+) ms.*/\1 \2 \3 \4/'
}

idle_run() { # name period-ms wireserver-period-ms [wala-fabric arguments...] -> "polls rss peak cpu requests connections up down"
  local root wire polls rss peak cpu name=$1 period=$2 wire_period=$3
  shift 3
  start_fabric "$name" "$@"
  root=$(make_root "$name" "$work/$name.ports")
  wire=$(sed -E 's/.*"wireserver":"([^"]+)".*/\1/' <"$work/$name.ports")
  # A first run takes the goal state in; its traffic is start-up, not idle, and is left out.
  run "$root" 1 >/dev/null
  curl -fsS -X DELETE "http://$wire/__fabric/traffic"
  read -r polls rss peak cpu <<<"$(run "$root" 10000 "$period" "$wire_period")"
  echo "$polls $rss $peak $cpu $(curl -fsS "http://$wire/__fabric/traffic" | python3 -c '
import json, sys
t = json.load(sys.stdin).values()
print(*(sum(l[k] for l in t) for k in ("requests", "connections", "bytes_in", "bytes_out")))')"
  kill "${pids[-1]}" # started in this subshell: the trap does not know it
}
read -r n1 rss1 peak1 cpu1 reqs conns up down <<<"$(idle_run idle 0 0)"
read -r n0 _ _ cpu0 _ conns0 _ _ <<<"$(idle_run idle-closing 0 0 --keep-alive-idle-ms 0)"
# As in production while Fast Track is quiet (6-s polls, the WireServer goal state every 30 s):
# the WireServer every fifth poll or so, here 2-ms polls and a 10-ms WireServer period.
read -r nq _ _ cpuq reqsq _ upq downq <<<"$(idle_run idle-quiet 2 10)"

echo '[{"listener":"wireserver","path":"/machine/?comp=goalstate","action":{"kind":"bump_incarnation"}}]' >"$work/bump.json"
start_fabric busy --faults "$work/bump.json"
busy_root=$(make_root busy "$work/busy.ports")
read -r n2 rss2 peak2 cpu2 <<<"$(run "$busy_root" 1000)"
# Three times as many changes: a leak would show as a higher RSS here.
start_fabric busier --faults "$work/bump.json"
busier_root=$(make_root busier "$work/busier.ports")
read -r n3 rss3 peak3 cpu3 <<<"$(run "$busier_root" 3000)"

printf '%-44s %10s %10s %10s %12s\n' "wala-agentd, $(date -u +%F), $(nproc) cores" "RSS KiB" "peak KiB" "CPU ms" "CPU ms/poll"
printf '%-44s %10d %10d %10d %12.3f\n' "$n1 polls, nothing changing" "$rss1" "$peak1" "$cpu1" "$(echo "$cpu1 / $n1" | bc -l)"
printf '%-44s %10s %10s %10d %12.3f\n' "  the same, endpoints closing connections" "" "" "$cpu0" "$(echo "$cpu0 / $n0" | bc -l)"
printf '%-44s %10s %10s %10d %12.3f\n' "  $nq polls, Fast Track quiet (2/10 ms)" "" "" "$cpuq" "$(echo "$cpuq / $nq" | bc -l)"
printf '%-44s %10d %10d %10d %12.3f\n' "$n2 polls, a new incarnation each time" "$rss2" "$peak2" "$cpu2" "$(echo "$cpu2 / $n2" | bc -l)"
printf '%-44s %10d %10d %10d %12.3f\n' "$n3 polls, a new incarnation each time" "$rss3" "$peak3" "$cpu3" "$(echo "$cpu3 / $n3" | bc -l)"
# waagent per 6-s period (spec wire.md §12.1, measured in the README's VM run): a goal-state GET,
# a vmSettings GET (304) and a status PUT, 3 requests; its bytes from the platform are the goal
# state's, about 2,150 B with the simulator's goal state, plus two short answers.
echo
printf '%-44s %12s %12s\n' "per idle period (over $n1 polls)" "wala" "target"
printf '%-44s %12.3f %12s\n' "CPU ms" "$(echo "$cpu1 / $n1" | bc -l)" "<= 0.1"
printf '%-44s %12.3f %12s\n' "CPU ms, endpoints closing connections" "$(echo "$cpu0 / $n0" | bc -l)" "<= 0.1"
printf '%-44s %12.2f %12s\n' "requests" "$(echo "$reqs / $n1" | bc -l)" "<= 3 (waagent)"
printf '%-44s %12.2f %12s\n' "connections" "$(echo "$conns / $n1" | bc -l)" "-"
printf '%-44s %12.2f %12s\n' "connections, endpoints closing them" "$(echo "$conns0 / $n0" | bc -l)" "-"
printf '%-44s %12.0f %12s\n' "bytes to the platform" "$(echo "$up / $n1" | bc -l)" "-"
printf '%-44s %12.0f %12s\n' "bytes from the platform" "$(echo "$down / $n1" | bc -l)" "<= 0.5 x waagent"
printf '%-44s %12.3f %12s\n' "Fast Track quiet: CPU ms" "$(echo "$cpuq / $nq" | bc -l)" "<= 0.1"
printf '%-44s %12.2f %12s\n' "Fast Track quiet: requests" "$(echo "$reqsq / $nq" | bc -l)" "<= 3 (waagent)"
printf '%-44s %12.0f %12s\n' "Fast Track quiet: bytes to the platform" "$(echo "$upq / $nq" | bc -l)" "-"
printf '%-44s %12.0f %12s\n' "Fast Track quiet: bytes from the platform" "$(echo "$downq / $nq" | bc -l)" "<= 0.5 x waagent"
printf 'binary: %d KiB stripped\n' "$(( $(stat -c %s "$bin/wala-agentd") / 1024 ))"

# The daemon at rest.
rest=${WALA_BENCH_REST_SECONDS:-20}
start_fabric rest
rest_root=$(make_root rest "$work/rest.ports")
"$bin/wala-agentd" daemon --root "$rest_root" --goal-state-period-ms 1000 2>/dev/null &
daemon=$!
pids+=("$daemon")
sleep "$rest"
kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$daemon/smaps_rollup"; }
rss=$(kb Rss) pss=$(kb Pss) anon=$(kb Anonymous) priv=$(( $(kb Private_Clean) + $(kb Private_Dirty) ))
echo
printf '%-44s %10s %10s\n' "daemon at rest after ${rest} s ($(find "$rest_root/var/lib/waagent" -maxdepth 1 -name '*.crt' | wc -l) certificates)" "KiB" "target"
printf '%-44s %10d %10s\n' "RSS" "$rss" "<= 4096"
printf '%-44s %10d %10s\n' "Pss" "$pss" "-"
printf '%-44s %10d %10s\n' "private (clean + dirty)" "$priv" "-"
printf '%-44s %10d %10s\n' "anonymous" "$anon" "-"
echo "by mapping (RSS / Pss KiB):"
awk '/^[0-9a-f]+-[0-9a-f]+ /{f=($6==""?"[anon]":$6)} /^Rss:/{r[f]+=$2} /^Pss:/{p[f]+=$2}
     END{for (k in r) if (r[k] > 0) printf "  %6d %6d  %s\n", r[k], p[k], k}' "/proc/$daemon/smaps" | sort -rn
echo "libraries: $(awk '$6 ~ /\.so/ {n=$6; sub(".*/", "", n); print n}' "/proc/$daemon/maps" | sort -u | paste -sd' ')"
if grep -qE 'lib(ssl|crypto)\.so' "/proc/$daemon/maps"; then
  echo "FAIL: the daemon maps libssl or libcrypto" >&2
  exit 1
fi
echo "libssl/libcrypto mapped: no"
