#!/usr/bin/env bash
# The main job: build wala and provision a VM's root the way a first boot would, against the
# built-in fabric simulator on loopback (no traffic leaves the machine). As root, the root is a
# temporary directory provisioned for real (useradd, keys, sshd, hostname), then the simulator
# shows what the platform received. Without root, the plan is printed instead (--dry-run).
# Usage: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh build
cargo build --locked --release --workspace
bin=$PWD/target/release
work=$(mktemp -d /tmp/wala-demo.XXXXXX)
fabric_pid=
cleanup() {
  if [ -n "$fabric_pid" ]; then kill "$fabric_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A plain HTTP GET on loopback, without curl.
http_get() { # host port path
  exec 3<>"/dev/tcp/$1/$2"
  printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$3" "$1" >&3
  sed '1,/^\r$/d' <&3
  exec 3<&-
}

echo "== the fabric simulator (WireServer, HostGAPlugin, IMDS on loopback)"
"$bin/wala-fabric" --ports-file "$work/ports.json" >/dev/null &
fabric_pid=$!
for _ in $(seq 50); do [ -s "$work/ports.json" ] && break; sleep 0.1; done
ports=$(cat "$work/ports.json")
addr() { sed -E "s/.*\"$1\":\"([^\"]+)\".*/\1/" <<<"$ports"; }
wire=$(addr wireserver)
echo "wireserver $wire, hostgaplugin $(addr hostgaplugin), imds $(addr imds)"

echo "== a root to provision: minimal /etc, an SMBIOS VM id, sshd with drop-ins"
root=$work/root
mkdir -p "$root"/{etc/ssh/sshd_config.d,etc/default,home,sys/class/dmi/id,sys/firmware/efi,var/lib,var/log}
printf 'root:x:0:0:root:/root:/bin/bash\n' >"$root/etc/passwd"
printf 'root:x:0:\nusers:x:100:\n' >"$root/etc/group"
printf 'root:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
printf 'root:*::\nusers:*::\n' >"$root/etc/gshadow"
chmod 640 "$root/etc/shadow" "$root/etc/gshadow"
printf 'UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\nUSERGROUPS_ENAB yes\n' >"$root/etc/login.defs"
printf 'Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\n' >"$root/etc/ssh/sshd_config"
echo "3F2504E0-4F89-11D3-9A0C-0305E82C3301" >"$root/sys/class/dmi/id/product_uuid"
ssh-keygen -q -t ed25519 -N '' -C demo@wala -f "$work/id_demo"
cat >"$work/ovf-env.xml" <<OVF
<?xml version="1.0" encoding="utf-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure">
  <wa:ProvisioningSection><wa:Version>1.0</wa:Version>
    <LinuxProvisioningConfigurationSet xmlns="http://schemas.microsoft.com/windowsazure">
      <ConfigurationSetType>LinuxProvisioningConfiguration</ConfigurationSetType>
      <HostName>wala-demo</HostName>
      <UserName>azureuser</UserName>
      <DisableSshPasswordAuthentication>true</DisableSshPasswordAuthentication>
      <SSH><PublicKeys><PublicKey><Fingerprint>00</Fingerprint>
        <Path>/home/azureuser/.ssh/authorized_keys</Path>
        <Value>$(cat "$work/id_demo.pub")</Value>
      </PublicKey></PublicKeys></SSH>
    </LinuxProvisioningConfigurationSet>
  </wa:ProvisioningSection>
  <wa:PlatformSettingsSection><wa:Version>1.0</wa:Version>
    <PlatformSettings xmlns="http://schemas.microsoft.com/windowsazure"><ProvisionGuestAgent>true</ProvisionGuestAgent></PlatformSettings>
  </wa:PlatformSettingsSection>
</Environment>
OVF
cat config/waagent.conf >"$work/waagent.conf"
cat >>"$work/waagent.conf" <<CONF
Provisioning.Agent=waagent
ResourceDisk.Format=n
Wala.WireServer=$wire
Wala.HostGAPlugin=$(addr hostgaplugin)
Wala.Imds=$(addr imds)
CONF

echo "== wala-provision --dry-run (the plan; secrets redacted)"
"$bin/wala-provision" --root "$root" --config "$work/waagent.conf" --ovf "$work/ovf-env.xml" --dry-run

if [ "$(id -u)" -ne 0 ]; then
  echo "not root: stopping at the plan (provisioning creates users with useradd --prefix)"
  exit 0
fi

echo "== wala-provision --stage all"
start=$(date +%s%N)
"$bin/wala-provision" --root "$root" --config "$work/waagent.conf" --ovf "$work/ovf-env.xml" 2>&1 \
  | sed -n 's/^INFO //p' | grep -E 'done in|complete|network stage' || true
echo "took $(( ($(date +%s%N) - start) / 1000000 )) ms"

echo "== what the root now holds"
grep '^azureuser:' "$root/etc/passwd"
echo "hostname: $(cat "$root/etc/hostname")"
echo "authorized_keys: $(wc -l <"$root/home/azureuser/.ssh/authorized_keys") key(s), $(stat -c 'mode %a, uid %u' "$root/home/azureuser/.ssh/authorized_keys")"
echo "sudoers: $(cat "$root/etc/sudoers.d/waagent")"
sed -n '2,$p' "$root/etc/ssh/sshd_config.d/50-wala.conf"
echo "marker: $(cat "$root/var/lib/waagent/provisioned")"

echo "== health reports the simulator received"
http_get "${wire%:*}" "${wire##*:}" /__fabric/health | tr '}' '\n' | grep -o '"state":"[A-Za-z]*"[^,]*,"substatus":[^,]*' || true

echo "== binary sizes (release, stripped)"
for b in wala-provision wala-agentd; do
  printf '%-16s %6d KiB\n' "$b" "$(( $(stat -c %s "$bin/$b") / 1024 ))"
done
