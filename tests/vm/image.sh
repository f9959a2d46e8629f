#!/usr/bin/env bash
# The VM test's base image: a Debian 12 tree made with `debootstrap --variant=minbase` plus the
# packages in packages.txt and the test-only configuration below, cached under
# ${WALA_VM_CACHE:-/var/cache/wala-vm}/base-<key>/tree, where <key> hashes this script and
# packages.txt: it is rebuilt only when its recipe changes. wala itself is NOT in the base tree
# (run.sh installs the freshly built package into a copy of it on every run).
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
suite=bookworm

key=$(cat "$here/image.sh" "$here/packages.txt" | sha256sum | cut -c1-16)
base=$cache/base-$key
if [ -f "$base/done" ]; then
    echo "$base/tree"
    exit 0
fi

mkdir -p "$cache/debs"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/tree
packages=$(grep -v '^#' "$here/packages.txt" | grep -v '^$' | paste -sd, -)

echo "image: debootstrap $suite (minbase) into $tree" >&2
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

# Network: systemd-networkd with DHCP. qemu's user network with restrict=on offers no router, so
# the routes Azure's DHCP (option 121) would give are static here: a default route and /32 routes
# to the WireServer and IMDS through the slirp gateway.
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
