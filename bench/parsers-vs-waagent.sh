#!/usr/bin/env bash
# Benchmark: wala's document parsers against waagent's own Python parsers, over the same files.
# Prints one TSV row per document kind (after '#' comment lines saying what was measured):
#   parse<TAB><kind> (n docs), µs/doc<TAB>µs<TAB><wala median><TAB><waagent median><TAB>–
#
# waagent is Debian 12's `waagent` package, fetched with `apt-get download` and unpacked with
# `dpkg-deb -x` into a cache (never installed: its postinst would start the agent). Its modules
# are imported from there; bench/waagent_parsers.py gives constructors that want a wire client a
# stub that returns the document, refuses sockets, and runs in its own network namespace when
# `unshare --net` works.
#
# Documents: the project's fixtures (shared/tests/fixtures) and, when present, every valid
# document of these kinds in the reference fixtures (../shared/fixtures or
# $WALA_REFERENCE_FIXTURES, per MANIFEST.tsv). A document either side rejects is reported on a
# '#' line and timed on neither side. Method (same on both sides): per kind, WARMUP rounds, then
# ROUNDS timed rounds each parsing every document once; the figure is the median round time
# divided by the number of documents.
#
# Environment: WALA_BENCH_CACHE (default /var/cache/wala-bench), WALA_BENCH_PYTHON (default
# /usr/bin/python3, the interpreter waagent runs under on Debian), WALA_BENCH_ROUNDS (1000),
# WALA_BENCH_WARMUP (20). Usage: bench/parsers-vs-waagent.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cache=${WALA_BENCH_CACHE:-/var/cache/wala-bench}
rounds=${WALA_BENCH_ROUNDS:-1000}
warmup=${WALA_BENCH_WARMUP:-20}

die() {
  echo "parsers-vs-waagent: $*" >&2
  exit 1
}

python=${WALA_BENCH_PYTHON:-/usr/bin/python3}
if [ ! -x "$python" ]; then
  python=$(command -v python3 || true)
  [ -n "$python" ] || die "no python3 found (apt-get install python3, or set WALA_BENCH_PYTHON)"
fi

command -v cargo >/dev/null ||
  die "cargo not found: wala needs Rust 1.85 or newer (see scripts/deps.sh build)"

# --- waagent, fetched and unpacked once into the cache ---
unpacked=$cache/root
stamp=$cache/unpacked.stamp
if [ ! -f "$stamp" ] || [ ! -d "$unpacked/usr/lib/python3/dist-packages/azurelinuxagent" ]; then
  if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    die "apt-get and dpkg-deb are needed to fetch waagent (this script expects Debian 12)"
  fi
  mkdir -p "$cache/debs" || die "cannot create the cache $cache (set WALA_BENCH_CACHE)"
  rm -f "$cache"/debs/*.deb
  # waagent's modules import `distro`; its Debian package comes along so that any python3 works.
  fetch() { (cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root waagent python3-distro) >&2; }
  if ! fetch; then
    echo "parsers-vs-waagent: apt-get download failed; refreshing the package lists" >&2
    { apt-get update -q >&2 && fetch; } ||
      die "cannot fetch the Debian package waagent (and python3-distro) with apt-get download;" \
        "this needs Debian 12's package mirror and root for apt-get update"
  fi
  rm -rf "$unpacked"
  mkdir -p "$unpacked"
  for deb in "$cache"/debs/*.deb; do dpkg-deb -x "$deb" "$unpacked"; done
  dpkg-deb -f "$cache"/debs/waagent_*.deb Version >"$stamp"
fi
waagent_deb=$(cat "$stamp")
pypath=$unpacked/usr/lib/python3/dist-packages

work=$(mktemp -d /tmp/wala-parsers-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Run waagent's parsers: bytecode not written, cwd and HOME in the temp dir, and no network
# namespace at all when unshare allows it.
netns=()
if command -v unshare >/dev/null && unshare --net true 2>/dev/null; then netns=(unshare --net); fi
run_waagent() {
  (cd "$work" && HOME=$work PYTHONPATH=$pypath "${netns[@]}" "$python" -B "$repo/bench/waagent_parsers.py" "$@")
}
run_wala() {
  cargo bench --locked -q -p wala --bench parsers -- "$@"
}

# --- the documents ---
list=$work/all.tsv
fx=shared/tests/fixtures
{
  for f in "$fx"/ovf/*.xml; do printf 'ovf-env\t%s\n' "$repo/$f"; done
  for f in "$fx"/goalstate/*.xml; do printf 'goalstate\t%s\n' "$repo/$f"; done
  printf 'extensionsconfig\t%s\n' "$repo/$fx/ext/extensions_config.xml"
  for f in "$fx"/ext/vm_settings*.json; do printf 'vmsettings\t%s\n' "$repo/$f"; done
  for f in "$fx"/hostingenv/*.xml; do printf 'hostingenv\t%s\n' "$repo/$f"; done
  for f in "$fx"/sharedconfig/*.xml; do printf 'sharedconfig\t%s\n' "$repo/$f"; done
  for f in "$fx"/certificates/*.xml; do printf 'certificates\t%s\n' "$repo/$f"; done
  for f in "$fx"/conf/*.conf; do printf 'waagent-conf\t%s\n' "$repo/$f"; done
} >"$list"
set_name="project fixtures ($fx)"
ref=${WALA_REFERENCE_FIXTURES:-$repo/../shared/fixtures}
if [ -f "$ref/MANIFEST.tsv" ]; then
  ref=$(cd "$ref" && pwd)
  awk -F'\t' -v dir="$ref" '
    $6 ~ /^(ovf-env|goalstate|extensionsconfig|vmsettings|hostingenv|sharedconfig|certificates|waagent-conf)$/ &&
    $7 == "valid" { print $6 "\t" dir "/" $1 }' "$ref/MANIFEST.tsv" >>"$list"
  set_name="$set_name + reference fixtures ($ref, valid per MANIFEST.tsv)"
fi

# --- build, then keep the documents both sides accept ---
cargo bench --locked -q -p wala --bench parsers --no-run
run_wala --check "$list" >"$work/wala.check"
run_waagent --check "$list" >"$work/waagent.check" || die "waagent's parsers failed to run (see above)"
awk -F'\t' 'FNR == NR { if ($1 == "accept") ok[$2 "\t" $3] = 1; next }
  $1 == "accept" && ($2 "\t" $3) in ok { print $2 "\t" $3 }' "$work/wala.check" "$work/waagent.check" >"$work/common.tsv"

IFS=$'\t' read -r _ wa_version py_version _ < <(run_waagent --about)
echo "# parsers, wala vs waagent: $(date -u +%F), $(nproc) cores, $(uname -m)"
echo "# documents: $set_name; $(wc -l <"$list") listed, $(wc -l <"$work/common.tsv") accepted by both and timed"
echo "# waagent $wa_version (Debian package waagent $waagent_deb, unpacked in $cache, not installed), Python $py_version ($python)"
echo "# wala $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1), release profile, $(rustc --version)"
echo "# method: per kind, $warmup warm-up rounds then $rounds rounds each parsing every document once; figure = median round time / documents"
echo "# waagent side: OvfEnv, GoalState (wire client stub), ExtensionsGoalStateFactory (ExtensionsConfig, vmSettings), HostingEnv, SharedConfig, ConfigurationProvider.load; Certificates = parse_doc + Data + Format only (the rest writes files and runs openssl)"
echo "# note: waagent 2.7.3 keeps SharedConfig as text without parsing it; wala parses it"
# One line per document that either side rejects, in list order, with both verdicts.
awk -F'\t' -v repo="$repo/" '
  FNR == 1 { side = FILENAME ~ /waagent.check$/ ? "waagent" : "wala" }
  {
    key = $2 "\t" $3
    if (!(key in seen)) { seen[key] = 1; keys[++n] = key }
    verdict[side, key] = $1 == "accept" ? "accepted" : "rejected (" $4 ")"
    if ($1 == "reject") bad[key] = bad[key] (bad[key] == "" ? "" : " and ") side
  }
  END {
    for (i = 1; i <= n; i++) {
      k = keys[i]
      if (!(k in bad)) continue
      split(k, kp, "\t"); path = kp[2]; sub("^" repo, "", path)
      printf "# not timed, rejected by %s: %s %s: wala %s; waagent %s\n", bad[k], kp[1], path, verdict["wala", k], verdict["waagent", k]
    }
  }' "$work/wala.check" "$work/waagent.check"
[ -s "$work/common.tsv" ] || die "no document was accepted by both sides"

run_wala --rounds "$rounds" --warmup "$warmup" "$work/common.tsv" >"$work/wala.time"
run_waagent --rounds "$rounds" --warmup "$warmup" "$work/common.tsv" >"$work/waagent.time"
awk -F'\t' '
  BEGIN {
    split("ovf-env goalstate extensionsconfig vmsettings hostingenv sharedconfig certificates waagent-conf", order, " ")
    name["ovf-env"] = "ovf-env.xml"; name["goalstate"] = "GoalState"
    name["extensionsconfig"] = "ExtensionsConfig"; name["vmsettings"] = "vmSettings"
    name["hostingenv"] = "HostingEnvironmentConfig"; name["sharedconfig"] = "SharedConfig"
    name["certificates"] = "Certificates"; name["waagent-conf"] = "waagent.conf"
  }
  $1 == "time" && FILENAME ~ /wala.time$/ { wala[$2] = $4; n[$2] = $3 }
  $1 == "time" && FILENAME ~ /waagent.time$/ { wa[$2] = $4 }
  END {
    for (i = 1; i <= 8; i++)
      if (!(order[i] in n)) printf "# no %s document accepted by both sides: no row\n", name[order[i]]
    for (i = 1; i <= 8; i++) {
      k = order[i]
      if (!(k in n)) continue
      # waagent 2.7.3 keeps SharedConfig as text: its figure is not a parse, so no ratio.
      w = k == "sharedconfig" ? wa[k] " (not parsed)" : wa[k]
      printf "parse\t%s (%d doc%s), µs/doc\tµs\t%s\t%s\t–\n", name[k], n[k], n[k] == 1 ? "" : "s", wala[k], w
    }
  }' "$work/wala.time" "$work/waagent.time"
