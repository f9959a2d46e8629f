#!/usr/bin/env bash
# The VM test matrix: the same boots and checks on each cell, a Debian release times a network
# stack (tests/vm/image.sh), then one table row per cell. Documented in docs/vm-test.md.
#
# Usage: tests/vm/matrix.sh [CELL...]     CELL is SUITE/NETSTACK, e.g. trixie/networkmanager;
#                                          none: all six cells
#        tests/vm/matrix.sh --rotate      one cell, chosen by the day (CI runs this: the default
#                                          cell bookworm/networkd is the full VM test's own)
# Environment: WALA_VM_MATRIX_SCENARIOS (default "first-boot reboot password"), and everything
# tests/vm/run.sh reads. Each cell's run.sh output is kept in $WALA_VM_MATRIX_LOGS (default a new
# directory under /var/tmp). Ends with "N passed, M failed" over all cells (scripts/test.sh counts
# it) and exits non-zero when any cell has a failed check.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

all_cells=(bookworm/networkd bookworm/networkmanager bookworm/ifupdown
    trixie/networkd trixie/networkmanager trixie/ifupdown)
# The cells the full VM test does not boot, for --rotate.
other_cells=("${all_cells[@]:1}")

cells=()
if [ "${1:-}" = --rotate ]; then
    day=$(($(date +%s) / 86400))
    cells=("${other_cells[$((day % ${#other_cells[@]}))]}")
    echo "matrix: rotating cell for day $day: ${cells[0]} (${#other_cells[@]} cells rotate; all: tests/vm/matrix.sh)"
elif [ $# -gt 0 ]; then
    cells=("$@")
else
    cells=("${all_cells[@]}")
fi
for cell in "${cells[@]}"; do
    case " ${all_cells[*]} " in
    *" $cell "*) ;;
    *)
        echo "matrix: unknown cell '$cell' (known: ${all_cells[*]})" >&2
        exit 2
        ;;
    esac
done

scenarios=${WALA_VM_MATRIX_SCENARIOS:-first-boot reboot password}
logs=${WALA_VM_MATRIX_LOGS:-$(mktemp -d /var/tmp/wala-matrix.XXXXXX)}
mkdir -p "$logs"
echo "matrix: scenarios '$scenarios'; logs in $logs"

rows=()
bad=0
total_pass=0
total_fail=0
for cell in "${cells[@]}"; do
    suite=${cell%/*} netstack=${cell#*/}
    log=$logs/${suite}-${netstack}.log
    echo "=== $cell"
    t=$(date +%s)
    WALA_VM_SUITE=$suite WALA_VM_NETSTACK=$netstack WALA_VM_SCENARIOS=$scenarios \
        tests/vm/run.sh >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - t))
    grep -E '^(PASS|FAIL|PENDING) ' "$log" | sed 's/^/  /'
    npass=$(grep -c '^PASS ' "$log")
    nfail=$(grep -c '^FAIL ' "$log")
    total_pass=$((total_pass + npass)) total_fail=$((total_fail + nfail))
    # boots.sh's table row for the first boot: scenario, first wire request, Ready, banner, RSS.
    read -r wire ready banner < <(awk '$1 == "first" && $2 == "boot" { print $3, $4, $5; exit }' "$log")
    login=$(sed -nE 's/^first-boot: login as .* after ([0-9.]+) s$/\1/p' "$log" | head -1)
    rows+=("$(printf '%-24s %8s %8s %8s %8s %7s %7s %6s' "$cell" "${ready:--}" "${banner:--}" "${login:--}" \
        "${wire:--}" "$npass" "$nfail" "$secs")")
    if [ "$rc" -ne 0 ] || [ "$nfail" -gt 0 ] || [ "$npass" -eq 0 ]; then
        bad=1
        echo "  cell $cell: FAILED (run.sh exit $rc; log $log)"
    fi
done

echo
echo "VM matrix (seconds from qemu start; first boot; scenarios: $scenarios)"
printf '%-24s %8s %8s %8s %8s %7s %7s %6s\n' cell Ready banner login "1st req" passed failed "run s"
printf '%s\n' "${rows[@]}"
echo "$total_pass passed, $total_fail failed"
exit "$bad"
