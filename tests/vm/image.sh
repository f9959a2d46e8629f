#!/usr/bin/env bash
# The VM test's base image: a Debian tree made with `debootstrap --variant=minbase` plus the
# packages in packages.txt, the network stack's packages and the test-only configuration below,
# cached under ${WALA_VM_CACHE:-/var/cache/wala-vm}/base-<key>/tree, where <key> hashes this
# script, packages.txt, the suite and the network stack: it is rebuilt only when its recipe
# changes. wala itself is NOT in the base tree (run.sh installs the freshly built package into a
# copy of it on every run).
#
# The cell of the test matrix (docs/vm-test.md, tests/vm/matrix.sh):
#   WALA_VM_SUITE     bookworm (Debian 12, the default) or trixie (Debian 13)
#   WALA_VM_NETSTACK  networkd (the default: systemd-networkd, as Debian's cloud images),
#                     networkmanager (NetworkManager, as RHEL-likes), or ifupdown (ifupdown with
#                     the suite's default DHCP client: dhclient on 12, dhcpcd on 13)
#
# Usage: tests/vm/image.sh            prints the path of the tree (building it when needed)
# Needs root, debootstrap, and a Debian package mirror: WALA_VM_MIRROR, else the machine's own apt
# source for Debian's main archive.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${WALA_VM_CACHE:-/var/cache/wala-vm}
# The first non-security Debian archive URI of the machine's apt sources (deb822 or one-line form).
apt_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f"
    done | head -n1 | grep . && return 0
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}'
}
mirror=${WALA_VM_MIRROR:-$(apt_mirror)}
if [ -z "$mirror" ]; then
    echo "image: no Debian mirror in the apt sources; set WALA_VM_MIRROR" >&2
    exit 1
fi
suite=${WALA_VM_SUITE:-bookworm}
netstack=${WALA_VM_NETSTACK:-networkd}
case $suite in
bookworm) suite_packages=(libssl3) dhcp_client=isc-dhcp-client ;;
# Debian 13's 64-bit time_t transition renamed the library package (it provides libssl3).
trixie) suite_packages=(libssl3t64) dhcp_client=dhcpcd-base ;;
*)
    echo "image: unknown WALA_VM_SUITE '$suite' (bookworm, trixie)" >&2
    exit 1
    ;;
esac
case $netstack in
networkd) stack_packages=() ;;
# polkitd (NetworkManager's dependency) depends on "default-logind | logind", which debootstrap
# does not resolve: name libpam-systemd, which provides it (as on every stock systemd image).
networkmanager) stack_packages=(network-manager libpam-systemd) ;;
ifupdown) stack_packages=(ifupdown "$dhcp_client") ;;
*)
    echo "image: unknown WALA_VM_NETSTACK '$netstack' (networkd, networkmanager, ifupdown)" >&2
    exit 1
    ;;
esac

key=$( (cat "$here/image.sh" "$here/packages.txt" && echo "$suite $netstack") | sha256sum | cut -c1-16)
base=$cache/base-$key
if [ -f "$base/done" ]; then
    echo "$base/tree"
    exit 0
fi

mkdir -p "$cache/debs"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/tree
packages=$( (grep -v '^#' "$here/packages.txt" | grep -v '^$' &&
    printf '%s\n' "${suite_packages[@]}" "${stack_packages[@]}") | paste -sd, -)

echo "image: debootstrap $suite (minbase, network: $netstack) into $tree" >&2
start=$(date +%s)
if ! debootstrap --variant=minbase --components=main --cache-dir="$cache/debs" \
    --include="$packages" "$suite" "$tree" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -30 "$work/debootstrap.log" >&2
    echo "image: debootstrap failed" >&2
    exit 1
fi

# A fixed machine id: no first-boot preset run, the same journal directory on every boot.
echo 5f3c2a8e4b7d4e1f9a6b0c2d8e4f1a3b >"$tree/etc/machine-id"
echo wala-base >"$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n' >"$tree/etc/hosts"
echo '/dev/vda / ext4 defaults 0 1' >"$tree/etc/fstab"

# Network: DHCP on the NIC, by the cell's network stack. qemu's user network with restrict=on
# offers no router, so the routes Azure's DHCP (option 121) would give are static here: a default
# route and /32 routes to the WireServer and IMDS through the slirp gateway 168.0.0.2. The NIC is
# the only one and is found by name pattern (en*), as Debian's cloud images do.
case $netstack in
networkd)
    mkdir -p "$tree/etc/systemd/network"
    cat >"$tree/etc/systemd/network/50-wala-test.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4

[DHCPv4]
UseRoutes=no
SendHostname=yes

[Route]
Gateway=168.0.0.2

[Route]
Destination=168.63.129.16/32
Gateway=168.0.0.2

[Route]
Destination=169.254.169.254/32
Gateway=168.0.0.2
EOF
    chroot "$tree" systemctl enable systemd-networkd.service >/dev/null 2>&1
    ;;
networkmanager)
    # A keyfile profile for any Ethernet NIC; NetworkManager sends the system hostname with DHCP.
    mkdir -p "$tree/etc/NetworkManager/system-connections"
    cat >"$tree/etc/NetworkManager/system-connections/wala-test.nmconnection" <<'EOF'
[connection]
id=wala-test
type=ethernet
autoconnect=true

[ipv4]
method=auto
ignore-auto-routes=true
dhcp-send-hostname=true
route1=0.0.0.0/0,168.0.0.2
route2=168.63.129.16/32,168.0.0.2
route3=169.254.169.254/32,168.0.0.2

[ipv6]
method=ignore
EOF
    chmod 600 "$tree/etc/NetworkManager/system-connections/wala-test.nmconnection"
    chroot "$tree" systemctl enable NetworkManager.service >/dev/null 2>&1
    ;;
ifupdown)
    # `auto` with a name pattern (ifupdown >= 0.8): networking.service brings up whichever en*
    # NIC there is at boot, with the logical interface "wala".
    mkdir -p "$tree/etc/network"
    cat >"$tree/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback

auto /en*=wala
iface wala inet dhcp
    post-up ip route replace default via 168.0.0.2 dev $IFACE
    post-up ip route replace 168.63.129.16/32 via 168.0.0.2 dev $IFACE
    post-up ip route replace 169.254.169.254/32 via 168.0.0.2 dev $IFACE
EOF
    chroot "$tree" systemctl enable networking.service >/dev/null 2>&1
    ;;
esac

# TEST ONLY: OpenSSH 9.8 and later (Debian 13) penalise a source address whose connections close
# before authenticating (PerSourcePenalties, "noauth"), and refuse it for a while. Every
# connection of the harness comes from the slirp gateway, and its banner probes close right
# after the banner: exempt that one address, or the harness locks itself out for minutes.
if [ "$suite" != bookworm ]; then
    mkdir -p "$tree/etc/ssh/sshd_config.d"
    echo 'PerSourcePenaltyExemptList 168.0.0.2' >"$tree/etc/ssh/sshd_config.d/05-wala-test-harness.conf"
fi

# TEST ONLY: qemu is not Hyper-V, so wala's /dev/disk/azure rules do not fire. The harness puts
# the resource disk on virtio-scsi with serial "walaresource"; these rules make the same links.
cat >"$tree/etc/udev/rules.d/66-wala-test-resource.rules" <<'EOF'
# wala VM test only: the resource disk is the virtio-scsi disk with serial "walaresource".
ACTION=="remove", GOTO="wala_test_end"
SUBSYSTEM!="block", GOTO="wala_test_end"
KERNEL!="sd*", GOTO="wala_test_end"
ENV{DEVTYPE}=="disk", ENV{ID_SERIAL}=="*walaresource", SYMLINK+="disk/azure/resource"
ENV{DEVTYPE}=="partition", ENV{ID_SERIAL}=="*walaresource", SYMLINK+="disk/azure/resource-part%n"
LABEL="wala_test_end"
EOF

# Keep the tree small; nothing in the VM uses apt.
rm -rf "$tree"/var/cache/apt/*.bin "$tree"/var/lib/apt/lists/* "$tree"/var/log/*.log

ls "$tree"/boot/vmlinuz-* "$tree"/boot/initrd.img-* >/dev/null
mv "$work" "$base.new"
trap - EXIT
rm -rf "$base"
mv "$base.new" "$base"
echo "image: built in $(($(date +%s) - start)) s" >"$base/done"
cat "$base/done" >&2
echo "$base/tree"
