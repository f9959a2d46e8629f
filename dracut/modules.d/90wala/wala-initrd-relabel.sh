#!/bin/sh
# wala-initrd-relabel: SELinux relabelling of what wala-provision wrote from the initramfs.
#
#   wala-initrd-relabel snapshot   remember which home directories exist under /sysroot/home
#   wala-initrd-relabel write      write /run/tmpfiles.d/wala-initrd-relabel.conf: z/Z lines for
#                                  the files wala writes (its /run/wala too), and Z for each home
#                                  directory that appeared since the snapshot (the provisioned user's)
#
# /run moves into the real root at switch-root, and systemd-tmpfiles-setup.service reads
# /run/tmpfiles.d there, after the policy is loaded. "z"/"Z" with "-" fields only restore the
# SELinux context (a no-op on systems without SELinux) and ignore paths that do not exist.
# Idempotent; always exits 0 so it can never fail the boot.
set -u

sysroot=${WALA_SYSROOT:-/sysroot}
state=${WALA_RUNDIR:-/run/wala}
out=${WALA_TMPFILES_DIR:-/run/tmpfiles.d}/wala-initrd-relabel.conf

list_homes() {
    for d in "$sysroot"/home/*/; do
        [ -d "$d" ] || continue
        d=${d%/}
        printf '%s\n' "${d##*/}"
    done
}

snapshot() {
    mkdir -p "$state" && list_homes >"$state/homes-before"
}

write() {
    mkdir -p "${out%/*}" || return 0
    tmp="$out.tmp"
    {
        echo "# Written by wala-initrd-relabel in the initramfs: restore SELinux labels on the real root."
        for f in /etc/hostname /etc/hosts \
            /etc/passwd /etc/passwd- /etc/shadow /etc/shadow- \
            /etc/group /etc/group- /etc/gshadow /etc/gshadow- /etc/subuid /etc/subgid \
            /etc/sudoers.d /etc/sudoers.d/waagent \
            /etc/ssh /etc/ssh/sshd_config '/etc/ssh/ssh_host_*' \
            /var/lib/waagent '/var/lib/waagent/*' /var/log/waagent.log; do
            echo "z $f - - -"
        done
        echo "Z /etc/ssh/sshd_config.d - - -"
        # The boot timeline wala-provision started in the initramfs's /run.
        echo "Z /run/wala - - -"
        if [ -r "$state/homes-before" ]; then
            list_homes | while IFS= read -r h; do
                grep -qxF -- "$h" "$state/homes-before" || echo "Z /home/$h - - -"
            done
        fi
    } >"$tmp" && mv -f "$tmp" "$out"
}

case ${1:-} in
    snapshot) snapshot ;;
    write) write ;;
    *) echo "usage: wala-initrd-relabel snapshot|write" >&2 ;;
esac
exit 0
