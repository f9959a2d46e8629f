#!/bin/bash
# dracut module "wala": runs wala-provision's local stage from the initramfs on /sysroot.
# Opt-in: include it with `dracut --add wala` or `add_dracutmodules+=" wala "` in dracut.conf.d.
# Functions are called by dracut, which provides inst_*, instmods, $initdir, $moddir, $SYSTEMCTL.
# shellcheck disable=SC2154 # dracut sets $moddir, $initdir, $systemdsystemunitdir, $SYSTEMCTL

check() {
    # The binary must be installed on the host; include the module only when asked for (255).
    require_binaries wala-provision || return 1
    return 255
}

depends() {
    echo systemd
    return 0
}

installkernel() {
    # The provisioning DVD: CD-ROM over ATA (generation 1) or Hyper-V SCSI (generation 2), UDF.
    hostonly='' instmods sr_mod cdrom udf isofs ata_piix hv_vmbus hv_storvsc
}

install() {
    # The binary goes to /usr/sbin in the image wherever it is on the host (e.g. PREFIX=/usr/local).
    local bin
    bin=$(find_binary wala-provision) || return 1
    inst_binary "$bin" /usr/sbin/wala-provision
    inst_multiple mount umount udevadm useradd mkdir mv grep
    # Used when present: password and group tools, sudoers syntax check, host key generation.
    inst_multiple -o usermod groupadd chpasswd visudo ssh-keygen
    # useradd reads its defaults and the skeleton from the root given with --prefix (/sysroot),
    # so nothing from the host's /etc is copied in.
    inst_simple "$moddir/wala-initrd-relabel.sh" /usr/lib/wala/wala-initrd-relabel
    inst_simple "$moddir/wala-provision-initrd.service" \
        "$systemdsystemunitdir/wala-provision-initrd.service"
    $SYSTEMCTL -q --root "$initdir" add-wants initrd.target wala-provision-initrd.service
}
