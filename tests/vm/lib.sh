# shellcheck shell=bash
# Shared pieces of the VM harness, sourced by tests/vm/run.sh (the VM test) and
# bench/vm-vs-waagent.sh (wala against waagent). Functions only; nothing runs on source.
# Needs WALA_VM_CACHE set (the cache outside the repository).

# This file's directory (vmtool.py is beside it).
vm_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# vm_install_tools LOG: installs what the harness needs (qemu, debootstrap, genisoimage, ...) when
# missing, with apt-get. Returns non-zero when that fails (LOG holds apt's output).
vm_install_tools() {
    local log=$1 need=() codename
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    command -v genisoimage >/dev/null || need+=(genisoimage)
    command -v mkntfs >/dev/null || need+=(ntfs-3g)
    command -v ssh >/dev/null || need+=(openssh-client)
    command -v sfdisk >/dev/null || need+=(fdisk)
    command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
    command -v python3 >/dev/null || need+=(python3)
    command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
    command -v help2man >/dev/null || need+=(help2man)
    [ ${#need[@]} -eq 0 ] && return 0
    echo "installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1
    local apt_args=(-y -qq --no-install-recommends)
    apt-get install "${apt_args[@]}" "${need[@]}" >"$log" 2>&1 && return 0
    # A newer qemu-utils (e.g. from backports) Breaks Debian 12's qemu-system-common: take the
    # release's own qemu-utils with it (the harness does not use qemu-utils).
    # shellcheck source=/dev/null
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    apt-get install "${apt_args[@]}" --allow-downgrades "${need[@]}" "qemu-utils/$codename" >"$log" 2>&1
}

# vm_apt_install TREE LOG PACKAGE...: apt-get install into the image tree TREE (a chroot), as an
# image maintainer would on a stock image: with the package's own Depends resolved by apt, no
# recommends. PACKAGE may be a path inside the tree (/tmp/wala.deb). /proc and the .deb cache
# ($WALA_VM_CACHE/debs) are mounted in a private mount namespace, so they vanish with it; the
# package lists and resolv.conf are removed again afterwards. Needs the Debian mirror (phase 1).
vm_apt_install() {
    local tree=$1 log=$2 rc
    shift 2
    mkdir -p "$WALA_VM_CACHE/debs"
    cp -a "$tree/etc/resolv.conf" "$tree/etc/resolv.conf.wala-orig" 2>/dev/null
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --mount --propagation private sh -c '
            tree=$1 debs=$2; shift 2
            mount --bind "$debs" "$tree/var/cache/apt/archives" && mount -t proc proc "$tree/proc" &&
            cp /etc/resolv.conf "$tree/etc/resolv.conf" &&
            chroot "$tree" apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive chroot "$tree" apt-get install -y -q --no-install-recommends "$@"'         sh "$tree" "$WALA_VM_CACHE/debs" "$@" >"$log" 2>&1
    rc=$?
    rm -f "$tree/etc/resolv.conf"
    [ -e "$tree/etc/resolv.conf.wala-orig" ] && mv "$tree/etc/resolv.conf.wala-orig" "$tree/etc/resolv.conf"
    rm -rf "$tree"/var/lib/apt/lists/* "$tree"/var/cache/apt/*.bin
    return $rc
}

# vm_set_conf FILE KEY VALUE: sets KEY=VALUE in a waagent.conf-style file (replaces or appends).
vm_set_conf() {
    if grep -q "^$2=" "$1"; then
        sed -i "s|^$2=.*|$2=$3|" "$1"
    else
        echo "$2=$3" >>"$1"
    fi
}

# vm_resource_disk WORK: the resource disk template as Azure hands it over (1 GiB, MBR, one
# type-7 partition with an NTFS file system and the warning file), cached in $WALA_VM_CACHE.
# Prints its path; on failure returns non-zero with WORK/resource.log.
vm_resource_disk() {
    local work=$1 resource=$WALA_VM_CACHE/resource-1g-v1.raw r part
    if [ ! -f "$resource" ]; then
        r=$work/resource.tmp
        part=$work/part.tmp
        truncate -s 1G "$r"
        printf 'label: dos\nstart=2048, type=7\n' | sfdisk -q "$r" >"$work/resource.log" 2>&1
        truncate -s $((1024 - 1))M "$part"
        printf 'This is a temporary disk.\n' >"$work/DATALOSS_WARNING_README.txt"
        if mkntfs -F -Q -q -L "Temporary Storage" -p 2048 -H 255 -S 63 "$part" >>"$work/resource.log" 2>&1 &&
            ntfscp -f "$part" "$work/DATALOSS_WARNING_README.txt" DATALOSS_WARNING_README.txt >>"$work/resource.log" 2>&1 &&
            dd if="$part" of="$r" bs=1M seek=1 conv=notrunc,sparse status=none; then
            mv "$r" "$resource"
            rm -f "$part"
        else
            rm -f "$part" "$r"
            return 1
        fi
    fi
    echo "$resource"
}

# vm_make_dvd ISO DIR HOSTNAME USER PASSWORD DISABLE_PASSWORD_AUTH CUSTOM_DATA PUBKEY_FILE:
# writes DIR/ovf-env.xml (empty HOSTNAME, PASSWORD or CUSTOM_DATA leave the element out) and the
# provisioning DVD ISO from it (UDF/ISO9660 bridge, as Azure's). genisoimage's messages go to
# DIR/../genisoimage.log.
vm_make_dvd() {
    local iso=$1 dir=$2 host_xml="" pw_xml="" cd_xml=""
    mkdir -p "$dir"
    [ -n "$3" ] && host_xml="<HostName>$3</HostName>"
    [ -n "$5" ] && pw_xml="<UserPassword>$5</UserPassword>"
    [ -n "$7" ] && cd_xml="<CustomData>$(printf '%s' "$7" | base64 -w0)</CustomData>"
    cat >"$dir/ovf-env.xml" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
  <wa:ProvisioningSection>
    <wa:Version>1.0</wa:Version>
    <LinuxProvisioningConfigurationSet xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
      <ConfigurationSetType>LinuxProvisioningConfiguration</ConfigurationSetType>
      $host_xml
      <UserName>$4</UserName>
      $pw_xml
      <DisableSshPasswordAuthentication>$6</DisableSshPasswordAuthentication>
      <SSH>
        <PublicKeys>
          <PublicKey>
            <Fingerprint></Fingerprint>
            <Path>/home/$4/.ssh/authorized_keys</Path>
            <Value>$(cat "$8")</Value>
          </PublicKey>
        </PublicKeys>
      </SSH>
      $cd_xml
    </LinuxProvisioningConfigurationSet>
  </wa:ProvisioningSection>
  <wa:PlatformSettingsSection>
    <wa:Version>1.0</wa:Version>
    <wa:PlatformSettings>
      <wa:KmsServerHostname>kms.core.windows.net</wa:KmsServerHostname>
      <wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent>
      <wa:GuestAgentPackageName i:nil="true" />
      <wa:RetainWindowsPEPassInUnattend>true</wa:RetainWindowsPEPassInUnattend>
      <wa:RetainOfflineServicingPassInUnattend>true</wa:RetainOfflineServicingPassInUnattend>
      <wa:PreprovisionedVm>false</wa:PreprovisionedVm>
    </wa:PlatformSettings>
  </wa:PlatformSettingsSection>
</Environment>
EOF
    genisoimage -quiet -udf -J -r -V rd_rdfe_stable -o "$iso" "$dir" 2>>"$(dirname "$dir")/genisoimage.log"
}

# vm_accel: sets the arrays/strings `accel` and `accel_name`: KVM only when a 10 s probe reaches
# the guest kernel's first console line (on these machines /dev/kvm is a nested hypervisor that
# cannot run a guest), else TCG. Needs KERNEL and a scratch directory: vm_accel KERNEL DIR.
# Under TCG the CPU is qemu64 without SVM (WALA_VM_CPU overrides it): qemu64 advertises AMD's
# virtualisation extension, so udev loads kvm_amd during coldplug, and under TCG that stalled
# the guest for seconds (networkd and logind waited for it in dracut boots; docs/vm-test.md).
# An Azure guest sees no SVM or VMX unless nested virtualisation is turned on for it.
# shellcheck disable=SC2034 # accel and accel_name are for the caller
vm_accel() {
    local kernel=$1 dir=$2 cpu=${WALA_VM_CPU:-qemu64,-svm}
    accel=(-accel "tcg,thread=multi" -cpu "$cpu")
    accel_name="TCG (-accel tcg,thread=multi -cpu $cpu)"
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ "${WALA_VM_TRY_KVM:-1}" = 1 ]; then
        # In a subshell: qemu may abort (MSR 0x10a on these machines), and bash reports that.
        (timeout 10 qemu-system-x86_64 -machine pc -accel kvm -cpu host -m 256 -display none -no-reboot \
            -kernel "$kernel" -append "console=ttyS0 panic=-1" -serial "file:$dir/kvm-probe.log" \
            -monitor none >"$dir/kvm-probe.out" 2>&1; true) 2>/dev/null
        if grep -q 'Linux version' "$dir/kvm-probe.log" 2>/dev/null; then
            accel=(-accel kvm -cpu host)
            accel_name="KVM (-accel kvm -cpu host)"
        else
            echo "KVM: /dev/kvm is there but a guest kernel did not start under it ($(head -c 120 "$dir/kvm-probe.out" | tr '\n' ' ')): using TCG" >&2
        fi
    else
        echo "KVM: /dev/kvm is not usable: using TCG" >&2
    fi
}

# vm_netdev SSH_PORT WIRE HGAP IMDS [TRAFFIC_LOG]: the -netdev value every harness guest uses: qemu
# user networking with restrict=on (the guest reaches nothing but what is listed), the slirp
# gateway at 168.0.0.2 (the image's static routes use it), ssh forwarded from 127.0.0.1:SSH_PORT,
# and the platform addresses relayed (vmtool.py relay) to the fabric's loopback listeners WIRE,
# HGAP and IMDS (host:port). With TRAFFIC_LOG the relays count bytes per direction into it.
vm_netdev() {
    local port=$1 wire=$2 hgap=$3 imds=$4 traffic=${5:-}
    local relay="cmd:python3 $vm_lib_dir/vmtool.py relay 127.0.0.1"
    local net="user,id=n0,restrict=on,net=168.0.0.0/7,host=168.0.0.2,hostfwd=tcp:127.0.0.1:$port-:22"
    net+=",guestfwd=tcp:168.63.129.16:80-$relay $wire${traffic:+ $traffic wireserver}"
    net+=",guestfwd=tcp:168.63.129.16:32526-$relay $hgap${traffic:+ $traffic hostgaplugin}"
    net+=",guestfwd=tcp:169.254.169.254:80-$relay $imds${traffic:+ $traffic imds}"
    echo "$net"
}

# vm_qemu DIR KERNEL INITRD ROOT SNAPSHOT ISO RESOURCE UUID NETDEV [APPEND]: the harness guest (the
# same machine for the VM test and the benchmark): i440fx, 2 vCPU, 2 GiB, the root image on
# virtio (SNAPSHOT on|off), the provisioning DVD on IDE, the resource disk on virtio-scsi with
# serial "walaresource", Azure's SMBIOS strings, the NIC as device `net0` on netdev `n0`. Serial
# console in DIR/serial.log, qemu's own output in DIR/qemu.out, a QMP socket at DIR/qmp.sock (for
# `vmtool.py qmp`: link switches and NIC hot-plug). ISO "-": no DVD drive at all. Run it in the
# background (`vm_qemu ... &`): it execs qemu, so $! is qemu's pid. Needs `accel` (vm_accel).
vm_qemu() {
    local d=$1 kernel=$2 initrd=$3 root=$4 snap=$5 iso=$6 res=$7 uuid=$8 net=$9 append=${10:-}
    local dvd=(-drive "file=$iso,format=raw,media=cdrom,if=ide,index=2")
    [ "$iso" = - ] && dvd=()
    exec qemu-system-x86_64 -machine pc "${accel[@]}" -smp 2 -m 2048 -display none -monitor none \
        -qmp "unix:$d/qmp.sock,server=on,wait=off" \
        -no-reboot -serial "file:$d/serial.log" \
        -kernel "$kernel" -initrd "$initrd" \
        -append "root=/dev/vda ro console=ttyS0 panic=-1${append:+ $append}" \
        -drive "file=$root,format=raw,if=virtio,snapshot=$snap" \
        "${dvd[@]}" \
        -device virtio-scsi-pci,id=scsi0 \
        -drive "file=$res,format=raw,if=none,id=res0" \
        -device scsi-hd,drive=res0,bus=scsi0.0,serial=walaresource \
        -uuid "$uuid" \
        -smbios "type=1,manufacturer=Microsoft Corporation,product=Virtual Machine" \
        -smbios "type=3,asset=7783-7084-3265-9085-8269-3286-77" \
        -netdev "$net" -device virtio-net-pci,netdev=n0,id=net0 >"$d/qemu.out" 2>&1
}

# vm_waagent_tree BASE VERSION: BASE (the VM test's base tree) plus Debian's waagent package at
# VERSION and its dependencies, parted and eject (waagent's Suggests, which its own provisioning
# and resource disk code run: without eject its provisioning dies after reading the DVD), and
# fdisk (a Debian cloud image has it; wala's package depends on it, so that `dpkg -i wala.deb`
# works offline in the guest), installed by apt-get in a chroot from the base's own apt source. Cached as $WALA_VM_CACHE/waagent-<key>/tree, the key hashing BASE,
# VERSION and this function. Prints the tree's path; needs the Debian mirror on a cache miss.
vm_waagent_tree() {
    local base=$1 version=$2 key dir tmp
    key=$({
        echo "$base $version"
        declare -f vm_waagent_tree
    } | sha256sum | cut -c1-16)
    dir=$WALA_VM_CACHE/waagent-$key
    if [ -f "$dir/done" ]; then
        echo "$dir/tree"
        return 0
    fi
    tmp=$(mktemp -d "$WALA_VM_CACHE/build.XXXXXX")
    cp -a --reflink=auto "$base" "$tmp/tree"
    if ! vm_apt_install "$tmp/tree" "$tmp/apt.log" "waagent=$version" parted eject fdisk; then
        tail -20 "$tmp/apt.log" >&2
        rm -rf "$tmp"
        return 1
    fi
    rm -rf "$dir"
    mv "$tmp" "$dir"
    touch "$dir/done"
    echo "$dir/tree"
}

# vm_tree_plus BASE NAME PACKAGE...: BASE (the VM test's base tree) plus PACKAGEs and their
# dependencies, installed by apt-get in a chroot from the base's own apt source, cached as
# $WALA_VM_CACHE/NAME-<key>/tree (the key hashes BASE, the packages and this function). For
# images that hold what a stock image has beyond the base (python3 and openssl, which every Azure
# Debian image carries, for tests/vm/handlers.sh). Prints the tree's path; needs the Debian mirror
# on a cache miss.
vm_tree_plus() {
    local base=$1 name=$2 key dir tmp
    shift 2
    key=$({
        echo "$base $*"
        declare -f vm_tree_plus
    } | sha256sum | cut -c1-16)
    dir=$WALA_VM_CACHE/$name-$key
    if [ -f "$dir/done" ]; then
        echo "$dir/tree"
        return 0
    fi
    tmp=$(mktemp -d "$WALA_VM_CACHE/build.XXXXXX")
    cp -a --reflink=auto "$base" "$tmp/tree"
    if ! vm_apt_install "$tmp/tree" "$tmp/apt.log" "$@"; then
        tail -20 "$tmp/apt.log" >&2
        rm -rf "$tmp"
        return 1
    fi
    rm -rf "$dir"
    mv "$tmp" "$dir"
    touch "$dir/done"
    echo "$dir/tree"
}

# vm_waagent_configure TREE SWAP_MB: waagent's image in the harness (TEST ONLY): waagent.conf with
# Provisioning.Agent=waagent, the resource disk formatted and mounted at /mnt/resource with
# SWAP_MB of swap (what the wala image uses), and a drop-in for walinuxagent.service that resets
# ConditionVirtualization=microsoft (qemu is not Hyper-V) and loads the shim below.
#
# THE SHIM: waagent 2.7 finds the resource disk only by walking /sys/bus/vmbus
# (DefaultOSUtil.device_for_ide_port(1)), and qemu has no VMBus. The drop-in sets
# PYTHONPATH=/usr/local/lib/wala-bench-shim, whose sitecustomize.py replaces that one method: for
# port 1 it answers the kernel name of the disk behind /dev/disk/azure/resource (the link the
# image's test udev rule makes) and logs "wala-bench shim: ..." in waagent.log; anything else goes
# to the original. Everything waagent then does with the disk is its own code.
vm_waagent_configure() {
    local tree=$1 swap_mb=$2
    vm_set_conf "$tree/etc/waagent.conf" Provisioning.Agent waagent
    vm_set_conf "$tree/etc/waagent.conf" ResourceDisk.Format y
    vm_set_conf "$tree/etc/waagent.conf" ResourceDisk.MountPoint /mnt/resource
    vm_set_conf "$tree/etc/waagent.conf" ResourceDisk.EnableSwap y
    vm_set_conf "$tree/etc/waagent.conf" ResourceDisk.SwapSizeMB "$swap_mb"
    mkdir -p "$tree/etc/systemd/system/walinuxagent.service.d" "$tree/usr/local/lib/wala-bench-shim"
    cat >"$tree/etc/systemd/system/walinuxagent.service.d/wala-bench.conf" <<'EOF'
# wala VM harness, TEST ONLY: qemu is not Hyper-V, so the unit's ConditionVirtualization=microsoft
# is reset; the shim on PYTHONPATH lets waagent find the resource disk without VMBus.
[Unit]
ConditionVirtualization=

[Service]
Environment=PYTHONPATH=/usr/local/lib/wala-bench-shim
EOF
    cat >"$tree/usr/local/lib/wala-bench-shim/sitecustomize.py" <<'EOF'
"""wala VM harness, TEST ONLY (tests/vm/lib.sh, vm_waagent_configure).

qemu has no VMBus, so waagent 2.7's DefaultOSUtil.device_for_ide_port, which walks
/sys/bus/vmbus, finds no resource disk. For port 1 (the resource disk) this answers the kernel
name of the disk behind /dev/disk/azure/resource, the link the image's test udev rule makes for
the virtio-scsi disk with serial "walaresource". Other ports, or no link: waagent's own code.
"""
import os

try:
    from azurelinuxagent.common import logger as _logger
    from azurelinuxagent.common.osutil import default as _default
except ImportError:
    _default = None

if _default is not None:
    _original = _default.DefaultOSUtil.device_for_ide_port

    def _device_for_ide_port(self, port_id):
        link = "/dev/disk/azure/resource"
        if port_id == 1 and os.path.exists(link):
            device = os.path.basename(os.path.realpath(link))
            _logger.info("wala-bench shim: resource disk {0} from {1} (no VMBus under qemu)", device, link)
            return device
        return _original(self, port_id)

    _default.DefaultOSUtil.device_for_ide_port = _device_for_ide_port
EOF
}
