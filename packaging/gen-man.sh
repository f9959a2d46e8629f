#!/usr/bin/env bash
# Generates wala's man pages from the binaries' own --help and --version output with help2man,
# so the pages can never drift from the command lines (no hand-written roff, no Rust changes).
#   wala-provision.8   from `wala-provision --help`
#   wala-agentd.8      from `wala-agentd --help`, plus one section per subcommand's --help
#   waagent.8          from the `waagent` name's own usage (the compatibility flags)
# Usage: packaging/gen-man.sh BINDIR OUTDIR
set -euo pipefail

bindir=${1:?usage: gen-man.sh BINDIR OUTDIR}
out=${2:?usage: gen-man.sh BINDIR OUTDIR}
if ! command -v help2man >/dev/null 2>&1; then
    echo "gen-man: help2man is missing (Debian: apt-get install help2man)" >&2
    exit 1
fi
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Reproducible dates (Debian's SOURCE_DATE_EPOCH convention; help2man honours it).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

# Quote --help text for roff: no-fill block, backslashes escaped, lines starting with . or '
# protected by a zero-width character.
roff_block() {
    echo ".nf"
    sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
    echo ".fi"
}

{
    echo "[COMMAND DETAILS]"
    "$bindir/wala-agentd" --help | sed -n '/^Commands:/,/^$/p' |
        awk 'NR > 1 && $1 != "" && $1 != "help" {print $1}' |
        while read -r sub; do
            echo ".SS $sub"
            "$bindir/wala-agentd" "$sub" --help | roff_block
        done
    echo "[SEE ALSO]"
    echo ".BR wala-provision (8),"
    echo ".BR waagent (8)"
} >"$work/agentd.h2m"

printf '%s\n' "[SEE ALSO]" ".BR wala-agentd (8)," ".BR waagent (8)" >"$work/provision.h2m"
printf '%s\n' "[SEE ALSO]" ".BR wala-agentd (8)" >"$work/waagent.h2m"

help2man --no-info --section 8 --source wala --manual "System Administration" \
    --name "provision an Azure VM at boot (wala)" --include "$work/provision.h2m" \
    --output "$out/wala-provision.8" "$bindir/wala-provision"
help2man --no-info --section 8 --source wala --manual "System Administration" \
    --name "Azure guest agent daemon and administrative commands (wala)" \
    --include "$work/agentd.h2m" --output "$out/wala-agentd.8" "$bindir/wala-agentd"

# The `waagent` name answers --help and --version by waagent's own rules (prefix match).
ln -sf "$(realpath "$bindir/wala-agentd")" "$work/waagent"
version=$("$bindir/wala-provision" --version | awk '{print $2}')
help2man --no-info --section 8 --source wala --manual "System Administration" \
    --version-string "waagent (wala) $version" \
    --name "waagent-compatible entry point of wala-agentd" --include "$work/waagent.h2m" \
    --output "$out/waagent.8" "$work/waagent"

for page in "$out"/wala-provision.8 "$out"/wala-agentd.8 "$out"/waagent.8; do
    [ -s "$page" ] || { echo "gen-man: $page is empty" >&2; exit 1; }
done
echo "gen-man: wrote $out/wala-provision.8 $out/wala-agentd.8 $out/waagent.8"
