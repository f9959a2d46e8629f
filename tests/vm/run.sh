#!/usr/bin/env bash
# The VM boot test: Debian guests under qemu, provisioned by wala against the fabric simulator
# (wala-fabric). Documented in docs/vm-test.md.
#
# Phase 1 (here, with the package mirror reachable): tools, `make deb`, wala-fabric, the cached
# base image (tests/vm/image.sh), a per-run copy of it with the fresh package installed, the
# dracut initramfs, root.raw (mkfs.ext4 -d), the provisioning DVDs, the resource disk.
# Phase 2 (tests/vm/boots.sh, inside `unshare --net` where only loopback exists): the boots and
# their checks.
#
# Prints PASS/FAIL/PENDING lines, a table of figures, and "N passed, M failed"; exits non-zero on
# any FAIL. Needs root. Environment:
#   WALA_VM_CACHE   base image cache (default /var/cache/wala-vm; outside the repository)
#   WALA_VM_WORK    where the per-run directory is made (default /var/tmp)
#   WALA_VM_KEEP=1  keep the per-run directory (it is always kept after a failure)
#   WALA_VM_MIRROR  Debian mirror for debootstrap (default: the machine's apt source for Debian)
#   WALA_VM_SUITE, WALA_VM_NETSTACK  the image's cell of the test matrix (tests/vm/image.sh;
#                   default bookworm with systemd-networkd). Outside the default cell, the
#                   migration checks from Debian 12's waagent package are not run.
#   WALA_VM_SCENARIOS  only these boots (boots.sh); what only the others need is not prepared
# Usage: tests/vm/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
repo=$(pwd)
here=$repo/tests/vm
export WALA_VM_CACHE=${WALA_VM_CACHE:-/var/cache/wala-vm}
run_start=$(date +%s)

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() {
    echo "FAIL $1"
    failed=$((failed + 1))
    if [ -n "${2:-}" ] && [ -s "$2" ]; then tail -30 "$2" | sed 's/^/    /'; fi
}
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

if [ "$(id -u)" -ne 0 ]; then
    fail "the VM test needs root (debootstrap, chroot, mkfs)"
    finish
fi

# --- tools -------------------------------------------------------------------------------------
# shellcheck source=tests/vm/lib.sh
. "$here/lib.sh"
if ! vm_install_tools /tmp/wala-vm-apt.log; then
    fail "tools: apt-get install" /tmp/wala-vm-apt.log
    finish
fi
echo "qemu: $(qemu-system-x86_64 --version | head -1)"

# --- build -------------------------------------------------------------------------------------
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
log=$(mktemp /tmp/wala-vm-build.XXXXXX)
t=$(date +%s)
if make --no-print-directory deb >"$log" 2>&1; then
    deb=$repo/$(sed -n 's/^build-deb: //p' "$log" | tail -1)
    pass "make deb ($(basename "$deb"), $(($(date +%s) - t)) s)"
else
    fail "make deb" "$log"
    finish
fi
if cargo build --release --locked -p wala-fabric >"$log" 2>&1; then
    fabric_bin=$CARGO_TARGET_DIR/release/wala-fabric
    pass "wala-fabric built"
else
    fail "cargo build -p wala-fabric" "$log"
    finish
fi
rm -f "$log"

# --- base image (cached) -----------------------------------------------------------------------
t=$(date +%s)
if base=$("$here/image.sh"); then
    image_secs=$(($(date +%s) - t))
    pass "base image $(basename "$(dirname "$base")") ($image_secs s; $(cat "$(dirname "$base")/done"))"
else
    fail "base image (tests/vm/image.sh)"
    finish
fi

work=$(mktemp -d "${WALA_VM_WORK:-/var/tmp}/wala-vm.XXXXXX")
echo "work directory: $work"
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
    if [ "${WALA_VM_KEEP:-}" = 1 ] || [ "$failed" -gt 0 ]; then
        echo "kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# --- the run's tree: base + the fresh package + test configuration ------------------------------
t=$(date +%s)
tree=$work/tree
cp -a --reflink=auto "$base" "$tree"
cp "$deb" "$tree/tmp/wala.deb"
if vm_apt_install "$tree" "$work/dpkg.log" /tmp/wala.deb &&
    chroot "$tree" dpkg-query -W -f="\${Status}" wala | grep -q "install ok installed"; then
    pass "the package installs into the image (apt-get install ./wala.deb: $(grep -c '^Unpacking' "$work/dpkg.log") packages)"
else
    fail "the package installs into the image" "$work/dpkg.log"
    finish
fi
rm -f "$tree/tmp/wala.deb"
# The image is a stock one plus wala's own Depends: none of the helpers wala no longer needs.
# shellcheck disable=SC2016 # expanded by the inner shell
extra=$(chroot "$tree" sh -c 'for p in ntfsls ntfs-3g parted eject; do command -v "$p"; done')
if [ -z "$extra" ]; then pass "the image has no ntfs-3g, parted or eject"; else fail "the image has no ntfs-3g, parted or eject (found: $extra)"; fi
if [ -x "$tree/usr/sbin/wala-provision" ] && [ -L "$tree/etc/systemd/system/multi-user.target.wants/wala-provision-local.service" ]; then
    pass "the package enabled the units (wala-provision-local in multi-user.target.wants)"
else
    fail "the package enabled the units"
fi

# The test's configuration on top of the packaged /etc/waagent.conf.
set_conf() { vm_set_conf "$tree/etc/waagent.conf" "$1" "$2"; }
set_conf Provisioning.Agent waagent
set_conf ResourceDisk.Format y
set_conf ResourceDisk.MountPoint /mnt/resource
set_conf ResourceDisk.EnableSwap y
set_conf ResourceDisk.SwapSizeMB 64
set_conf Logs.Verbose y
set_conf Wala.WireServer 168.63.129.16

# Keys: the provisioned user's (delivered through the OVF), and the harness's own root key (TEST
# ONLY, in this run's image copy): it lets the harness read the journal of every boot, including
# a broken OVF's, where no user exists.
mkdir -p "$work/keys"
ssh-keygen -q -t ed25519 -N '' -C wala-vm-user -f "$work/keys/user"
ssh-keygen -q -t ed25519 -N '' -C wala-vm-root -f "$work/keys/root"
install -d -m 0700 "$tree/root/.ssh"
install -m 0600 "$work/keys/root.pub" "$tree/root/.ssh/authorized_keys"

# Kernel and the initramfs-tools initrd, for direct kernel boot.
for m in "$tree"/lib/modules/*/; do kver=$(basename "$m"); done
cp "$tree/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$tree/boot/initrd.img-$kver" "$work/initrd.img"

# wanted_boot NAME: the boot NAME is in WALA_VM_SCENARIOS (or no list was given).
wanted_boot() { [ -z "${WALA_VM_SCENARIOS:-}" ] || [[ " $WALA_VM_SCENARIOS " == *" $1 "* ]]; }

# The dracut variant: an initramfs built inside the image with wala's module (opt-in: --add).
# /proc, /sys and /dev are mounted in a private mount namespace, so they vanish with it.
# shellcheck disable=SC2016 # expanded by the inner shell
if ! wanted_boot dracut; then
    echo "dracut initramfs not built (dracut is not in WALA_VM_SCENARIOS)"
elif unshare --mount --propagation private sh -c '
        mount -t proc proc "$1/proc" && mount -t sysfs sys "$1/sys" && mount --rbind /dev "$1/dev" &&
        chroot "$1" dracut --force --no-hostonly --add wala --kver "$2" /tmp/initrd-dracut.img' \
        sh "$tree" "$kver" >"$work/dracut.log" 2>&1 &&
    chroot "$tree" lsinitrd /tmp/initrd-dracut.img >"$work/lsinitrd.txt" 2>&1 &&
    grep -q 'wala-provision-initrd.service' "$work/lsinitrd.txt" &&
    grep -q 'usr/sbin/wala-provision' "$work/lsinitrd.txt"; then
    mv "$tree/tmp/initrd-dracut.img" "$work/initrd-dracut.img"
    pass "dracut initramfs with the wala module ($(du -m "$work/initrd-dracut.img" | cut -f1) MiB; unit and binary inside)"
else
    rm -f "$tree/tmp/initrd-dracut.img"
    fail "dracut initramfs with the wala module" "$work/dracut.log"
fi

if mkfs.ext4 -q -F -L wala-root -d "$tree" "$work/root.raw" 3G >"$work/mkfs.log" 2>&1; then
    pass "root image (mkfs.ext4 -d, $(($(date +%s) - t)) s for copy, install, dracut and mkfs)"
else
    fail "root image (mkfs.ext4 -d)" "$work/mkfs.log"
    finish
fi
rm -rf "$tree"

# --- the resource disk: as Azure hands it over (MBR, one NTFS partition, the warning file) -------
if ! resource=$(vm_resource_disk "$work"); then
    fail "resource disk template" "$work/resource.log"
    finish
fi
pass "resource disk template ($(basename "$resource"))"

# --- migration from waagent: the package's takeover in chroots, and waagent's image ---------------
# The base plus Debian 12's waagent package (cached, tests/vm/lib.sh vm_waagent_tree). In chroots:
# wala's package installed over it with `dpkg -i` and with `apt-get install ./wala.deb` (stdin
# closed), and waagent's package installed again (tests/vm/package-takeover.sh). Then waagent's
# image for the migration boots (boots.sh): waagent configured as in the benchmark (its shim for
# the resource disk under qemu), the harness's root key, and the fresh wala.deb in /root, which
# the guest installs over waagent while it runs.
export WALA_VM_WAAGENT_VERSION=${WALA_VM_WAAGENT_VERSION:-2.7.3.0-4.1}
t=$(date +%s)
if [ "${WALA_VM_SUITE:-bookworm}/${WALA_VM_NETSTACK:-networkd}" != bookworm/networkd ]; then
    echo "migration from waagent not checked in this cell (${WALA_VM_SUITE:-bookworm}/${WALA_VM_NETSTACK:-networkd}: Debian 12's waagent package, the default cell only)"
elif wtree=$(vm_waagent_tree "$base" "$WALA_VM_WAAGENT_VERSION" 2>"$work/waagent-tree.log"); then
    pass "waagent tree (Debian's waagent $WALA_VM_WAAGENT_VERSION, cached: $(basename "$(dirname "$wtree")"), $(($(date +%s) - t)) s)"
    waagent_deb=$WALA_VM_CACHE/debs/waagent_${WALA_VM_WAAGENT_VERSION}_all.deb
    t=$(date +%s)
    "$here/package-takeover.sh" "$wtree" "$deb" "$waagent_deb" "$work" >"$work/takeover.out" 2>&1
    cat "$work/takeover.out"
    passed=$((passed + $(grep -c '^PASS ' "$work/takeover.out")))
    failed=$((failed + $(grep -c '^FAIL ' "$work/takeover.out")))
    echo "package takeover checks: $(($(date +%s) - t)) s"
    wt=$work/waagent-tree
    if [ -n "${WALA_VM_SCENARIOS:-}" ] && [[ " $WALA_VM_SCENARIOS " != *" waagent-first "* ]]; then
        echo "waagent's root image not built (waagent-first is not in WALA_VM_SCENARIOS)"
    else
        cp -a --reflink=auto "$wtree" "$wt"
        vm_waagent_configure "$wt" 64
        install -d -m 0700 "$wt/root/.ssh"
        install -m 0600 "$work/keys/root.pub" "$wt/root/.ssh/authorized_keys"
        cp "$deb" "$wt/root/wala.deb"
        if mkfs.ext4 -q -F -L wala-root -d "$wt" "$work/waagent.raw" 3G >"$work/mkfs-waagent.log" 2>&1; then
            pass "waagent's root image (waagent provisions; wala.deb in /root for the guest to install)"
        else
            fail "waagent's root image (mkfs.ext4 -d)" "$work/mkfs-waagent.log"
            rm -f "$work/waagent.raw"
        fi
        rm -rf "$wt"
    fi
else
    fail "waagent tree (apt-get install waagent=$WALA_VM_WAAGENT_VERSION in a chroot)" "$work/waagent-tree.log"
fi

# --- provisioning DVDs -------------------------------------------------------------------------
# make_dvd NAME HOSTNAME USER PASSWORD DISABLE_PASSWORD_AUTH CUSTOM_DATA
make_dvd() { vm_make_dvd "$work/$1.iso" "$work/dvd-$1" "$2" "$3" "$4" "$5" "$6" "$work/keys/user.pub"; }

export WALA_VM_USER=azureuser
export WALA_VM_HOST1=wala-vm-one WALA_VM_HOST2=wala-vm-two WALA_VM_HOST3=wala-vm-pw WALA_VM_HOST4=wala-vm-dracut
export WALA_VM_HOST5=wala-vm-waagent
export WALA_VM_CUSTOM_DATA="#!/bin/sh
echo wala custom data"
# A throw-away test password (the guest is on loopback only): random per run.
pw_file=$work/keys/password
head -c 12 /dev/urandom | base64 | tr -d '/+=' >"$pw_file"
chmod 600 "$pw_file"
dvd_ok=0
make_dvd nopw "$WALA_VM_HOST1" "$WALA_VM_USER" "" true "$WALA_VM_CUSTOM_DATA" &&
    make_dvd newid "$WALA_VM_HOST2" "$WALA_VM_USER" "" true "$WALA_VM_CUSTOM_DATA" &&
    make_dvd password "$WALA_VM_HOST3" "$WALA_VM_USER" "$(cat "$pw_file")" false "" &&
    make_dvd broken "" "$WALA_VM_USER" "" true "" &&
    make_dvd dracut "$WALA_VM_HOST4" "$WALA_VM_USER" "" true "$WALA_VM_CUSTOM_DATA" &&
    make_dvd waagent "$WALA_VM_HOST5" "$WALA_VM_USER" "" true "" && dvd_ok=1
# A specialized VM's DVD: an OVF environment with no provisioning section (its version only).
mkdir -p "$work/dvd-specialized"
cat >"$work/dvd-specialized/ovf-env.xml" <<'EOF'
<?xml version="1.0" encoding="utf-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure">
  <wa:ProvisioningSection>
    <wa:Version>1.0</wa:Version>
  </wa:ProvisioningSection>
  <wa:PlatformSettingsSection>
    <wa:Version>1.0</wa:Version>
    <wa:PlatformSettings>
      <wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent>
      <wa:PreprovisionedVm>false</wa:PreprovisionedVm>
    </wa:PlatformSettings>
  </wa:PlatformSettingsSection>
</Environment>
EOF
genisoimage -quiet -udf -J -r -V rd_rdfe_stable -o "$work/specialized.iso" "$work/dvd-specialized" \
    2>>"$work/genisoimage.log" || dvd_ok=0
# The IMDS-only VM's instance document (it has no DVD): its own user and hostname, and the
# harness user's key.
export WALA_VM_IMDS_USER=imdsuser WALA_VM_HOST_IMDS=wala-vm-imds
python3 -c '
import json, sys
key = open(sys.argv[1]).read().strip()
doc = {"compute": {"vmId": "", "name": sys.argv[4], "osType": "Linux",
       "osProfile": {"adminUsername": sys.argv[3], "computerName": sys.argv[4],
                     "disablePasswordAuthentication": "true"},
       "publicKeys": [{"keyData": key, "path": "/home/%s/.ssh/authorized_keys" % sys.argv[3]}]}}
json.dump(doc, open(sys.argv[2], "w"))
' "$work/keys/user.pub" "$work/imds-only.json" "$WALA_VM_IMDS_USER" "$WALA_VM_HOST_IMDS" || dvd_ok=0
# The password must not stay on disk longer than the DVD needs it.
rm -f "$work/dvd-password/ovf-env.xml"
if [ "$dvd_ok" = 1 ]; then pass "provisioning DVDs (UDF, ovf-env.xml per scenario, a specialized VM's) and the IMDS-only document"; else
    fail "provisioning DVDs" "$work/genisoimage.log"
    finish
fi
# Pre-provisioned pool VMs (boots pps-running, pps-savable): the pool's placeholder DVD (user
# pooluser with a key of its own, PreprovisionedVm=true and the type), and the user's ovf-env.xml
# that the fabric hands out at IMDS reprovisiondata when the test takes the VM over.
ssh-keygen -q -t ed25519 -N '' -C wala-vm-pool -f "$work/keys/pool"
export WALA_VM_PPS_HOST_R=wala-vm-pps-running WALA_VM_PPS_HOST_S=wala-vm-pps-savable
make_pool_dvd() { # NAME TYPE USER_HOSTNAME
    vm_make_dvd "$work/$1.iso" "$work/dvd-$1" wala-pool-placeholder pooluser "" true "" "$work/keys/pool.pub" &&
        sed -i "s|<wa:PreprovisionedVm>false</wa:PreprovisionedVm>|<wa:PreprovisionedVm>true</wa:PreprovisionedVm><wa:PreprovisionedVMType>$2</wa:PreprovisionedVMType>|" \
            "$work/dvd-$1/ovf-env.xml" &&
        grep -q "<wa:PreprovisionedVMType>$2<" "$work/dvd-$1/ovf-env.xml" &&
        rm -f "$work/$1.iso" &&
        genisoimage -quiet -udf -J -r -V rd_rdfe_stable -o "$work/$1.iso" "$work/dvd-$1" 2>>"$work/genisoimage.log" &&
        vm_make_dvd "$work/$1-user.iso" "$work/dvd-$1-user" "$3" "$WALA_VM_USER" "" true "" "$work/keys/user.pub"
}
if make_pool_dvd pool-running Running "$WALA_VM_PPS_HOST_R" && make_pool_dvd pool-savable Savable "$WALA_VM_PPS_HOST_S"; then
    pass "pre-provisioned pool DVDs (Running, Savable) and their users' ovf-env.xml"
else
    fail "pre-provisioned pool DVDs" "$work/genisoimage.log"
fi
prepare_secs=$(($(date +%s) - run_start))

# --- phase 2: the boots, with no network but loopback -------------------------------------------
export WALA_VM_WORKDIR=$work WALA_VM_FABRIC=$fabric_bin WALA_VM_RESOURCE=$resource
export WALA_VM_PREPARE_SECS=$prepare_secs WALA_VM_IMAGE_SECS=$image_secs
out=$work/boots.out
if unshare --net true 2>/dev/null; then
    echo "network: qemu, the fabric and ssh run inside 'unshare --net' (only loopback exists)"
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --net -- sh -c 'ip link set lo up && exec "$0"' "$here/boots.sh" 2>&1 | tee "$out"
else
    echo "NOTE: unshare --net is not permitted here: relying on slirp restrict=on alone"
    "$here/boots.sh" 2>&1 | tee "$out"
fi
passed=$((passed + $(grep -c '^PASS ' "$out")))
failed=$((failed + $(grep -c '^FAIL ' "$out")))
grep -q '^BOOTS DONE$' "$out" || fail "the boot phase did not finish"
if grep -q '^NOT RUN ' "$out"; then
    echo "NOTE: a partial run: WALA_VM_SCENARIOS=$WALA_VM_SCENARIOS ($(grep -c '^NOT RUN ' "$out") scenarios not run)"
fi
echo "VM stage: $(($(date +%s) - run_start)) s in all ($prepare_secs s preparing)"
finish
