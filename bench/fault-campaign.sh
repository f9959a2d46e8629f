#!/usr/bin/env bash
# Fault campaign: provisioning end to end against the fabric simulator with random faults.
#
# Each run starts wala-fabric (loopback only) with one or two random faults, each on a random
# endpoint (versions, goalstate, certificates, health, hostgaplugin, imds) with a random count:
# a status (500, 503, 429, 410, 400 InvalidContainerConfiguration), a delay, a reset, a truncated
# or slow body, or an incarnation bump. It then runs
#   wala-provision --stage all --root <fresh temp root> --ovf <ovf> --config <conf>
# on a fresh temporary root (real useradd with --prefix, so it must run as root). One run in three
# kills wala-provision with SIGKILL at a random moment and runs it again; one run in five gives an
# OVF that must fail (an invalid SSH key). The kill takes wala-provision's whole process group. At the end the Health reports the fabric received
# (/__fabric/health) classify the run:
#   ready   Ready received, no ProvisioningFailed, and the last wala-provision exited 0;
#   failed  ProvisioningFailed received, no Ready after it, and the last wala-provision exited 1;
#   other   anything else: no final report, Ready after a failure, a crash or signal, a hang
#           (10 minutes), an exit code that disagrees with the report, or an outcome that
#           disagrees with the OVF (a valid OVF must end Ready, an invalid one ProvisioningFailed).
# Prints the three counts and exits 1 if any run was "other"; the files of those runs are kept.
#
# Usage: bench/fault-campaign.sh [RUNS]     (default 50)
# Environment: SEED (default: random; printed, so a campaign can be repeated), JOBS (runs at
# once, default 4: runs mostly wait on retries), KEEP=1 keeps every run's files.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-50}
jobs=${JOBS:-4}
seed=${SEED:-$((RANDOM * 32768 + RANDOM))}
if [ "$(id -u)" -ne 0 ]; then
  echo "fault-campaign: needs root (useradd --prefix on temporary roots)" >&2
  exit 1
fi
for tool in curl ssh-keygen useradd; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fault-campaign: installing what it needs"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl openssh-client passwd >/dev/null
    break
  fi
done

cargo build --locked --release -q -p wala-provision -p wala-fabric
bin=${CARGO_TARGET_DIR:-$PWD/target}/release

work=$(mktemp -d /tmp/wala-campaign.XXXXXX)
echo "fault campaign: $runs runs, $jobs at a time, SEED=$seed, files in $work"
ssh-keygen -q -N '' -t ed25519 -C campaign -f "$work/key"
key=$(cat "$work/key.pub")

# Requests per endpoint, as listener and path prefix (the fabric matches a prefix of path+query).
endpoints=(
  "versions wireserver /?comp=versions"
  "goalstate wireserver /machine/?comp=goalstate"
  "certificates wireserver /machine/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0/5c0ffee0c0de4b1d8a11fab41c000001.wala%2Dtest%2Dvm?comp=certificates"
  "health wireserver /machine?comp=health"
  "hostgaplugin hostgaplugin /"
  "imds imds /metadata"
)

random_action() {
  case $((RANDOM % 11)) in
    0) echo '{"kind":"status","status":500}' ;;
    1) echo '{"kind":"status","status":503}' ;;
    2) echo '{"kind":"status","status":429}' ;;
    3) echo '{"kind":"status","status":410}' ;;
    4) echo '{"kind":"status","status":400,"body":"InvalidContainerConfiguration"}' ;;
    5) echo "{\"kind\":\"delay\",\"ms\":$((100 + RANDOM % 4000))}" ;;
    6) echo '{"kind":"reset"}' ;;
    7) echo "{\"kind\":\"truncate\",\"keep\":$((RANDOM % 64))}" ;;
    8) echo '{"kind":"truncate"}' ;;
    9) echo "{\"kind\":\"slow_body\",\"chunk\":$((16 + RANDOM % 256)),\"interval_ms\":$((5 + RANDOM % 60))}" ;;
    *) echo '{"kind":"bump_incarnation"}' ;;
  esac
}

make_root() { # dir
  local r=$1
  mkdir -p "$r"/{etc/ssh/sshd_config.d,etc/default,home,sys/class/dmi/id,sys/firmware/efi,var/lib,var/log}
  printf 'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n' >"$r/etc/passwd"
  printf 'root:x:0:\ndaemon:x:1:\nusers:x:100:\n' >"$r/etc/group"
  printf 'root:$6$old$hash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n' >"$r/etc/shadow"
  printf 'root:*::\ndaemon:*::\nusers:*::\n' >"$r/etc/gshadow"
  chmod 640 "$r/etc/shadow" "$r/etc/gshadow"
  printf 'UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\nUSERGROUPS_ENAB yes\n' >"$r/etc/login.defs"
  printf 'Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n' >"$r/etc/ssh/sshd_config"
  printf '127.0.0.1\tlocalhost\n' >"$r/etc/hosts"
  printf '7E5C3F2A-1B4D-4E6F-8A9B-0C1D2E3F4A5B\n' >"$r/sys/class/dmi/id/product_uuid"
  chmod 444 "$r/sys/class/dmi/id/product_uuid"
}

write_ovf() { # file key
  cat >"$1" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<ns0:Environment xmlns:ns0="http://schemas.dmtf.org/ovf/environment/1" xmlns:ns1="http://schemas.microsoft.com/windowsazure">
 <ns1:ProvisioningSection><ns1:Version>1.0</ns1:Version>
  <ns1:LinuxProvisioningConfigurationSet>
   <ns1:ConfigurationSetType>LinuxProvisioningConfiguration</ns1:ConfigurationSetType>
   <ns1:HostName>wala-campaign-vm</ns1:HostName>
   <ns1:UserName>azureuser</ns1:UserName>
   <ns1:DisableSshPasswordAuthentication>true</ns1:DisableSshPasswordAuthentication>
   <ns1:SSH><ns1:PublicKeys><ns1:PublicKey><ns1:Fingerprint>00</ns1:Fingerprint>
    <ns1:Path>/home/azureuser/.ssh/authorized_keys</ns1:Path><ns1:Value>$2</ns1:Value>
   </ns1:PublicKey></ns1:PublicKeys></ns1:SSH>
   <ns1:CustomData>I2Nsb3VkLWNvbmZpZwo=</ns1:CustomData>
  </ns1:LinuxProvisioningConfigurationSet>
 </ns1:ProvisioningSection>
 <ns1:PlatformSettingsSection><ns1:Version>1.0</ns1:Version>
  <ns1:PlatformSettings><ns1:ProvisionGuestAgent>true</ns1:ProvisionGuestAgent></ns1:PlatformSettings>
 </ns1:PlatformSettingsSection>
</ns0:Environment>
EOF
}

addr() { sed -E "s/.*\"$1\":\"([^\"]+)\".*/\1/" "$2"; }

# One run in its own directory; writes its verdict and a one-line description to files there.
one_run() { # index
  local i=$1 d=$work/run-$1
  RANDOM=$((seed + i))
  mkdir -p "$d/root"
  make_root "$d/root"
  local expect=ready ovf_key=$key
  if [ $((RANDOM % 5)) -eq 0 ]; then
    expect=failed
    ovf_key="ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQ"
  fi
  write_ovf "$d/ovf-env.xml" "$ovf_key"

  local n=$((1 + RANDOM % 2)) faults="" what=""
  for _ in $(seq "$n"); do
    read -r name listener path <<<"${endpoints[$((RANDOM % ${#endpoints[@]}))]}"
    local action times=$((1 + RANDOM % 4))
    action=$(random_action)
    faults+="${faults:+,}{\"listener\":\"$listener\",\"path\":\"$path\",\"times\":$times,\"action\":$action}"
    what+="${what:+ + }$name x$times $(sed -E 's/[{}"]//g; s/kind://' <<<"$action")"
  done
  echo "[$faults]" >"$d/faults.json"

  "$bin/wala-fabric" --faults "$d/faults.json" --ports-file "$d/ports.json" --exit-after 900 \
    >/dev/null 2>"$d/fabric.log" &
  local fabric=$!
  for _ in $(seq 200); do [ -s "$d/ports.json" ] && break; sleep 0.05; done
  local wire
  wire=$(addr wireserver "$d/ports.json")
  cat >"$d/waagent.conf" <<EOF
Provisioning.Agent=waagent
Provisioning.DeleteRootPassword=y
Provisioning.RegenerateSshHostKeyPair=n
Provisioning.DecodeCustomData=y
ResourceDisk.Format=n
OS.SshClientAliveInterval=120
Wala.WireServer=$wire
Wala.HostGAPlugin=$(addr hostgaplugin "$d/ports.json")
Wala.Imds=$(addr imds "$d/ports.json")
EOF
  local provision=("$bin/wala-provision" --stage all --root "$d/root" --ovf "$d/ovf-env.xml" --config "$d/waagent.conf")
  local killed="" status=0
  if [ $((RANDOM % 3)) -eq 0 ]; then
    local at_ms=$((RANDOM % 4000))
    # In its own process group, killed as a whole: like a reboot (or systemd's default
    # KillMode), a half-done useradd dies with it rather than finishing behind the rerun's back.
    setsid "${provision[@]}" >"$d/provision-1.log" 2>&1 &
    local p=$!
    sleep "$((at_ms / 1000)).$(printf '%03d' $((at_ms % 1000)))"
    if kill -KILL -- "-$p" 2>/dev/null; then killed=" (SIGKILL at ${at_ms} ms, rerun)"; fi
    wait "$p" 2>/dev/null || true
  fi
  timeout --signal=KILL 600 "${provision[@]}" >"$d/provision.log" 2>&1 || status=$?

  local health states
  health=$(curl -s --max-time 10 "http://$wire/__fabric/health" || echo "unreachable")
  echo "$health" >"$d/health.json"
  kill "$fabric" 2>/dev/null || true
  wait "$fabric" 2>/dev/null || true
  states=$(grep -o '"state":"[A-Za-z]*","substatus":\(null\|"[A-Za-z]*"\)' <<<"$health" |
    sed -E 's/"state":"([A-Za-z]*)","substatus":"?([A-Za-z]*)"?/\1\/\2/; s/\/null$/\//' | tr '\n' ' ' || true)

  local verdict=other ready=no failed=no ready_after_failure=no
  for s in $states; do
    case $s in
      Ready/*) ready=yes; [ "$failed" = yes ] && ready_after_failure=yes ;;
      */ProvisioningFailed) failed=yes ;;
    esac
  done
  if [ "$ready" = yes ] && [ "$failed" = no ] && [ "$status" = 0 ]; then
    verdict=ready
  elif [ "$failed" = yes ] && [ "$ready_after_failure" = no ] && [ "$ready" = no ] && [ "$status" = 1 ]; then
    verdict=failed
  fi
  local note=""
  if [ "$verdict" != other ] && [ "$verdict" != "$expect" ]; then
    note=" (expected $expect)"
    verdict=other
  fi
  echo "$verdict" >"$d/verdict"
  printf '%-6s run %3d: %s%s; exit %s; reports: %s%s\n' "$verdict" "$i" "$what" "$killed" "$status" \
    "${states:-none}" "$note" >"$d/summary"
  if [ "$verdict" != other ] && [ "${KEEP:-0}" != 1 ]; then
    rm -rf "$d/root"
  fi
}

for i in $(seq 1 "$runs"); do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n || true
  done
  one_run "$i" &
done
wait

declare -A count=([ready]=0 [failed]=0 [other]=0)
for i in $(seq 1 "$runs"); do
  v=$(cat "$work/run-$i/verdict" 2>/dev/null || echo other)
  count[$v]=$((count[$v] + 1))
  cat "$work/run-$i/summary" 2>/dev/null || echo "other  run $i: no summary (the run itself failed)"
done
echo "ready ${count[ready]}, failed ${count[failed]}, other ${count[other]} (SEED=$seed)"
if [ "${count[other]}" -gt 0 ]; then
  echo "files of the 'other' runs are in $work (run-N: faults.json, provision*.log, health.json)"
  exit 1
fi
[ "${KEEP:-0}" = 1 ] || rm -rf "$work"
