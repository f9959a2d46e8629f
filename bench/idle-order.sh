#!/usr/bin/env bash
# Regenerates agentd/idle.order: the functions wala-agentd runs when it is at rest, which the
# release link puts together in a section of their own before .text (agentd/build.rs,
# docs/daemon.md "The idle path's code together").
#
# Why: the kernel maps program pages 64 KiB around each page a process touches (fault-around),
# and the functions the idle loop runs are spread over most of the 2.2 MiB of code, so at rest
# nearly the whole program was resident. Put together, they fill a few such windows.
#
# How: an unordered, unstripped release build runs against the fabric simulator on loopback
# under callgrind with instrumentation off during start-up (WALA_ORDER_WARMUP seconds, default 20),
# then on for WALA_ORDER_WINDOW seconds (default 150: every periodic task with a period up to a
# minute runs at least twice, the status heartbeat among them). Every function of the program
# that ran in the window is written, busiest first, as its mangled name with the legacy
# mangling's hash replaced by "*", so the file keeps matching when unrelated code changes (a
# renamed function just drops out of the list; nothing breaks). Needs valgrind. Usage: bench/idle-order.sh [OUT] (default
# agentd/idle.order).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-agentd/idle.order}
warmup=${WALA_ORDER_WARMUP:-20}
window=${WALA_ORDER_WINDOW:-150}
command -v valgrind >/dev/null || { echo "idle-order: needs valgrind" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-$PWD/target}/idle-order
# WALA_IDLE_ORDER=off: link as without the file (the profile is of the program's own layout).
CARGO_TARGET_DIR=$target CARGO_PROFILE_RELEASE_STRIP=false WALA_IDLE_ORDER=off \
    cargo build --locked --release -q -p wala-agentd -p wala-fabric
bin=$target/release
work=$(mktemp -d /tmp/wala-idle-order.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "${WALA_ORDER_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench/fabric-root.sh
. bench/fabric-root.sh
start_fabric order
root=$(make_root root "$work/order.ports")

valgrind --tool=callgrind --demangle=no --instr-atstart=no --callgrind-out-file="$work/cg.out" \
    "$bin/wala-agentd" daemon --root "$root" >/dev/null 2>"$work/valgrind.log" &
vg=$!
pids+=("$vg")
sleep "$warmup"
callgrind_control -i on "$vg" >/dev/null
sleep "$window"
kill -TERM "$vg"
wait "$vg" || true
[ -s "$work/cg.out" ] || { echo "idle-order: no profile" >&2; tail "$work/valgrind.log" >&2; exit 1; }

# callgrind's file: "fn=(id) name" (the name only the first time an id is used), then cost
# lines "line Ir" for that function until the next fn=/cfn=/calls= block. Self cost per function
# of the program (objects other than the executable are left out: libc's order is not ours).
python3 - "$work/cg.out" "$bin/wala-agentd" >"$work/idle.order" <<'EOF'
import re, sys
path, exe = sys.argv[1], sys.argv[2]
names, objs, cost = {}, {}, {}
cur_fn = cur_ob = None
in_call = False
ob_of = {}
for line in open(path, encoding="utf-8", errors="replace"):
    line = line.rstrip("\n")
    m = re.match(r"^(ob|fl|fi|fe|fn|cob|cfi|cfl|cfn)=\((\d+)\)(?: (.*))?$", line)
    if m:
        kind, ident, name = m.groups()
        if kind == "ob":
            if name is not None:
                objs[ident] = name
            cur_ob = ident
        elif kind == "cob" and name is not None:
            objs[ident] = name
        elif kind in ("fn", "cfn"):
            if name is not None:
                names[ident] = name
            if kind == "fn":
                cur_fn = ident
                ob_of[ident] = cur_ob
                in_call = False
        continue
    if line.startswith("calls="):
        in_call = True  # the next cost line is the call's inclusive cost, not self cost
        continue
    if cur_fn and line and (line[0].isdigit() or line[0] in "+-*"):
        if in_call:
            in_call = False
            continue
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            cost[cur_fn] = cost.get(cur_fn, 0) + int(parts[1])
seen = set()
rows = []
for ident, c in cost.items():
    if c == 0 or objs.get(ob_of.get(ident)) != exe:
        continue
    name = names.get(ident, "")
    if not name.startswith("_ZN") and not name.startswith("_R"):
        continue  # C symbols of the program (none expected) and callgrind's own entries
    pattern = re.sub(r"17h[0-9a-f]{16}E$", "17h*", name)
    if pattern not in seen:
        seen.add(pattern)
        rows.append((c, pattern))
rows.sort(key=lambda r: -r[0])
print("# wala-agentd's idle path: the functions that ran at rest, busiest first, as symbol patterns")
print("# (made by bench/idle-order.sh; read by agentd/build.rs).")
for _, p in rows:
    print(p)
EOF
n=$(grep -vc "^#" "$work/idle.order" || true)
[ "$n" -gt 50 ] || { echo "idle-order: only $n functions found" >&2; exit 1; }
mv "$work/idle.order" "$out"
echo "idle-order: $n functions in $out (window ${window} s after ${warmup} s of start-up)"
