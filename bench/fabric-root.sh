# shellcheck shell=bash disable=SC2154 # $bin, $work and pids are the caller's
# Sourced by the native benches (daemon-footprint.sh, idle-order.sh): a wala-fabric on loopback
# and a root directory whose waagent.conf points wala-agentd at it. The caller sets $bin (the
# binaries), $work (a scratch directory) and the array pids (processes to kill at exit).

# start_fabric NAME [wala-fabric arguments...]: the fabric's ports go to $work/NAME.ports.
start_fabric() {
  local args=(--ports-file "$work/$1.ports")
  args+=("${@:2}")
  "$bin/wala-fabric" "${args[@]}" >/dev/null &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$work/$1.ports" ] && return; sleep 0.05; done
  echo "fabric did not start" >&2
  exit 1
}

# make_root NAME PORTS_FILE: prints $work/NAME, a root with /etc/waagent.conf naming the fabric.
make_root() {
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
