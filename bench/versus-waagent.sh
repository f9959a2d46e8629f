#!/usr/bin/env bash
# Benchmark: wala against Debian's waagent 2.7.3, in one run on one machine, as one table.
#
# Runs the parts below; each prints `#` comment lines and rows of six tab-separated fields
#   section  metric  unit  wala  waagent  floor
# (the floor: for the first WireServer request and Ready, an image whose only agent is a minimal
# Ready reporter started after network-online.target; for sshd and logins, the image with no
# agent; "–" where it does not apply). This script collects
# the rows and prints one Markdown table with the ratio wala / waagent, headed by the date and the
# machine, ready for the README.
#   vm       bench/vm-vs-waagent.sh: boots of the wala (also from a dracut initramfs), waagent,
#            no-agent and Ready-floor images under qemu (alternately), and both daemons idle
#            against the simulator for ten minutes
#   parsers  bench/parsers-vs-waagent.sh: waagent's own Python parsers and ours over the same
#            documents
# Environment: WALA_BENCH_PARTS (default "parsers vm"), and what the parts read (see each).
# Needs root (the VM part) and Debian's package mirror (both parts fetch waagent).
# Usage: bench/versus-waagent.sh [OUTPUT.md]   (the table also goes to OUTPUT.md when given)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${1:-}
parts=${WALA_BENCH_PARTS:-parsers vm}
rows=$(mktemp /tmp/wala-versus.XXXXXX)
trap 'rm -f "$rows"' EXIT

status=0
started=$(date -u '+%Y-%m-%d %H:%M UTC')
for part in $parts; do
    case $part in
        vm) script=bench/vm-vs-waagent.sh ;;
        parsers) script=bench/parsers-vs-waagent.sh ;;
        *)
            echo "versus-waagent: unknown part '$part' (vm, parsers)" >&2
            exit 2
            ;;
    esac
    echo "== $script" >&2
    # The part's progress and comments go to the terminal; its rows are kept. With pipefail, a
    # part that exits non-zero fails the pipeline.
    if ! bash "$script" | tee /dev/stderr | awk -F'\t' 'NF == 6 && $1 !~ /^#/' >>"$rows"; then
        echo "versus-waagent: $script failed; its rows so far are kept" >&2
        status=1
    fi
done

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
table() {
    echo "Measured $started on $(nproc) cores ($cpu), $mem, Linux $(uname -r);"
    echo "guests under qemu TCG (no KVM). Lower is better; the ratio is wala / waagent."
    echo
    echo "| | metric | wala | waagent | floor | wala / waagent |"
    echo "|---|---|---|---|---|---|"
    awk -F'\t' '
        function num(s) { return s ~ /^[0-9]+(\.[0-9]+)?$/ }
        {
            ratio = "–"
            if (num($4) && num($5) && $5 + 0 > 0) ratio = sprintf("%.2f", $4 / $5)
            unit = ($3 == "" || $3 == "–" || $2 ~ ("(^|[ ,(])" $3 "([ ,)/]|$)")) ? "" : " (" $3 ")"
            printf "| %s | %s%s | %s | %s | %s | %s |\n", $1, $2, unit, $4, $5, $6, ratio
        }' "$rows"
}
echo
if [ -s "$rows" ]; then
    table
    [ -n "$out" ] && table >"$out"
else
    echo "versus-waagent: no figures" >&2
    status=1
fi
exit "$status"
