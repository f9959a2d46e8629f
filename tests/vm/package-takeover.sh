#!/usr/bin/env bash
# The Debian package taking over from Debian 12's waagent package, in chroots (no VM): started by
# tests/vm/run.sh in phase 1, documented in docs/vm-test.md and docs/migration.md.
#
# Each case works on its own copy of TREE (the VM test's base image plus waagent, as a Debian 12
# cloud image has it) after giving it an admin's edited /etc/waagent.conf and waagent's state
# under /var/lib/waagent (the marker, an extension handler directory, a certificate pair):
#   dpkg  `dpkg -i wala.deb`, stdin closed: waagent removed in favour of wala in one step; the
#         configuration byte for byte; every file under /var/lib/waagent byte for byte; one
#         logrotate rule for waagent.log; then the way back: `apt-get remove wala` and waagent's
#         package installed again (stdin closed): its own unit under walinuxagent.service, enabled,
#         its configuration and state as they were.
#   apt   `apt-get install -y ./wala.deb`, stdin closed, on a tree made to look like a running
#         system (/run/systemd/system, /sys mounted): apt removes waagent before wala's scripts
#         run and waagent's postrm deletes /var/lib/waagent; the configuration byte for byte; the
#         marker written back for this machine's VM id; then waagent's leftovers purged: the
#         configuration and logrotate file still there.
# Prints PASS/FAIL lines (run.sh counts them). Needs root.
# Usage: package-takeover.sh TREE WALA_DEB WAAGENT_DEB WORK
set -uo pipefail
tree=$1 deb=$2 waagent_deb=$3 work=$4

pass() { echo "PASS $1"; }
fail() {
    echo "FAIL $1"
    if [ -n "${2:-}" ] && [ -s "$2" ]; then tail -25 "$2" | sed 's/^/    /'; fi
}
result() { if [ "$2" -eq 0 ]; then pass "$1"; else fail "$1" "${3:-}"; fi; }

# in_tree T COMMAND...: COMMAND in the chroot T, stdin closed, with /proc and /sys mounted in a
# private mount namespace (they vanish with it). With VM_UUID set, /sys is a tmpfs holding only
# class/dmi/id/product_uuid with that text (a BIOS machine: no firmware/efi), so that the VM id
# is the same whatever machine runs the test.
in_tree() {
    export VM_UUID
    local t=$1
    shift
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --mount --propagation private sh -c '
        t=$1; shift
        mount -t proc proc "$t/proc" || exit 1
        if [ -n "$VM_UUID" ]; then
            mount -t tmpfs sys "$t/sys" && mkdir -p "$t/sys/class/dmi/id" &&
                echo "$VM_UUID" >"$t/sys/class/dmi/id/product_uuid" || exit 1
        else
            mount -t sysfs sys "$t/sys" || exit 1
        fi
        DEBIAN_FRONTEND=noninteractive exec chroot "$t" "$@"' sh "$t" "$@" </dev/null
}
VM_UUID=""

# status T PACKAGE: dpkg's status word for PACKAGE (installed, config-files, not-installed).
# shellcheck disable=SC2016 # a dpkg-query format
status() { chroot "$1" dpkg-query -W -f='${db:Status-Status}' "$2" 2>/dev/null || echo not-installed; }

# sums T: sha256 of every file under /var/lib/waagent, by path.
sums() { (cd "$1/var/lib/waagent" 2>/dev/null && find . -type f -print0 | sort -z | xargs -0r sha256sum); }

# prepare NAME: a copy of the tree with an admin's configuration and waagent's state.
prepare() {
    local t=$work/takeover-$1
    rm -rf "$t"
    cp -a --reflink=auto "$tree" "$t"
    cp "$deb" "$t/tmp/wala.deb"
    cp "$waagent_deb" "$t/tmp/waagent.deb"
    # The admin's edits: a key changed, a key of their own, a comment, no newline at the end.
    sed -i 's/^Provisioning.Agent=.*/Provisioning.Agent=waagent/; s/^ResourceDisk.EnableSwap=.*/ResourceDisk.EnableSwap=y/' \
        "$t/etc/waagent.conf"
    printf '# edited by the admin\nHttpProxy.Host=proxy.example.invalid\nHttpProxy.Port=3128' >>"$t/etc/waagent.conf"
    cp "$t/etc/waagent.conf" "$work/takeover-$1.conf"
    # waagent's state after it provisioned the VM and ran one extension (its formats: the marker
    # without a newline, HandlerState as plain text, the handler's settings, status and mrseq).
    local lib=$t/var/lib/waagent h
    h=$lib/Microsoft.Azure.Extensions.CustomScript-2.1.10
    mkdir -p "$h/config" "$h/status"
    printf '%s' 9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a >"$lib/provisioned"
    printf 'Enabled' >"$h/config/HandlerState"
    printf '{"runtimeSettings":[{"handlerSettings":{"publicSettings":{"commandToExecute":"true"}}}]}' >"$h/config/3.settings"
    printf '[{"version":"1.0","status":{"status":"success","code":0}}]' >"$h/status/3.status"
    printf '3' >"$h/mrseq"
    printf -- '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n' >"$lib/0123456789ABCDEF0123456789ABCDEF01234567.crt"
    printf -- '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n' >"$lib/0123456789ABCDEF0123456789ABCDEF01234567.prv"
    chmod 600 "$lib"/*.prv
    sums "$t" >"$work/takeover-$1.sums"
    echo "$t"
}

# common_checks NAME T LOG: what both ways must end with.
common_checks() {
    local name=$1 t=$2 log=$3 n
    [ "$(status "$t" wala)" = installed ] && [ "$(status "$t" waagent)" = config-files ]
    rc=$?
    result "$name: wala installed and waagent removed in one unattended step (waagent: $(status "$t" waagent))" $rc "$log"
    ! grep -qiE 'conffile|Configuration file .*waagent.conf' "$log"
    result "$name: no conffile question" $? "$log"
    cmp -s "$work/takeover-$name.conf" "$t/etc/waagent.conf"
    result "$name: /etc/waagent.conf kept byte for byte" $?
    n=$(grep -ls '^[^#]*/var/log/waagent\.log' "$t"/etc/logrotate.d/* | wc -l)
    [ "$n" = 1 ]
    rc=$?
    result "$name: one logrotate file for /var/log/waagent.log ($(grep -ls '^[^#]*/var/log/waagent\.log' "$t"/etc/logrotate.d/* | xargs -r -n1 basename | paste -sd' '))" $rc
    in_tree "$t" logrotate -d /etc/logrotate.conf >"$work/takeover-$name.logrotate" 2>&1
    ! grep -q '^error:' "$work/takeover-$name.logrotate"
    result "$name: logrotate reads its configuration without an error" $? "$work/takeover-$name.logrotate"
    [ "$(readlink "$t/etc/systemd/system/walinuxagent.service")" = /lib/systemd/system/wala-agentd.service ] &&
        [ "$(readlink "$t/etc/systemd/system/waagent.service")" = /lib/systemd/system/wala-agentd.service ]
    result "$name: walinuxagent.service and waagent.service are aliases of wala-agentd.service" $?
    [ "$(readlink "$t/usr/sbin/waagent")" = wala-agentd ]
    result "$name: /usr/sbin/waagent is wala's" $?
    # (captured first: with pipefail, grep -q closing the pipe early would fail the pipeline)
    chroot "$t" dpkg-divert --list wala >"$work/takeover-$name.diversions" 2>&1
    grep -q 'diversion of /etc/waagent.conf to /etc/waagent.conf.waagent-package by wala' "$work/takeover-$name.diversions"
    result "$name: /etc/waagent.conf diverted (kept when waagent's leftovers are purged)" $?
}

# --- dpkg -i -------------------------------------------------------------------------------------
t=$(prepare dpkg)
log=$work/takeover-dpkg.log
in_tree "$t" dpkg -i /tmp/wala.deb >"$log" 2>&1
rc=$?
result "dpkg: dpkg -i wala.deb over waagent exits 0" $rc "$log"
grep -q 'will remove waagent in favour of wala' "$log"
result "dpkg: dpkg removes waagent in favour of wala" $? "$log"
common_checks dpkg "$t" "$log"
sums "$t" >"$work/takeover-dpkg.after"
diff "$work/takeover-dpkg.sums" <(grep -vE ' \./(wala-|Certificates\.json)' "$work/takeover-dpkg.after") >"$work/takeover-dpkg.diff"
rc=$?
result "dpkg: every file waagent left under /var/lib/waagent kept byte for byte ($(wc -l <"$work/takeover-dpkg.sums") files)" $rc "$work/takeover-dpkg.diff"
[ ! -e "$t/var/lib/.waagent.wala-takeover" ]
result "dpkg: nothing left in the aside directory" $?

# The way back: remove wala, install waagent's package again.
log=$work/takeover-back.log
in_tree "$t" apt-get remove -y wala >"$log" 2>&1 && in_tree "$t" apt-get install -y /tmp/waagent.deb >>"$log" 2>&1
result "back: apt-get remove wala, then apt-get install ./waagent.deb, unattended" $? "$log"
[ "$(status "$t" waagent)" = installed ] && [ "$(status "$t" wala)" = config-files ]
result "back: waagent installed, wala removed" $? "$log"
cmp -s "$work/takeover-dpkg.conf" "$t/etc/waagent.conf"
result "back: /etc/waagent.conf still the admin's, byte for byte" $?
diff "$work/takeover-dpkg.sums" <(sums "$t" | grep -vE ' \./(wala-|Certificates\.json)') >"$work/takeover-back.diff"
result "back: waagent's state under /var/lib/waagent as it was" $? "$work/takeover-back.diff"
[ ! -L "$t/etc/systemd/system/walinuxagent.service" ] && [ ! -e "$t/etc/systemd/system/waagent.service" ] &&
    [ "$(chroot "$t" systemctl is-enabled walinuxagent.service 2>&1)" = enabled ]
rc=$?
result "back: walinuxagent.service is waagent's own unit again, enabled ($(chroot "$t" systemctl is-enabled walinuxagent.service 2>&1))" $rc
[[ "$(head -1 "$t/usr/sbin/waagent")" == *python3* ]]
result "back: /usr/sbin/waagent is waagent's script" $?
[ -z "$(chroot "$t" dpkg-divert --list wala)" ]
result "back: wala's diversions are gone" $?
n=$(grep -ls '^[^#]*/var/log/waagent\.log' "$t"/etc/logrotate.d/* | wc -l)
[ "$n" = 1 ]
result "back: one logrotate file for /var/log/waagent.log" $?

# --- apt-get install ./wala.deb -------------------------------------------------------------------
t=$(prepare apt)
log=$work/takeover-apt.log
# A running system, as postinst sees one (it marks only a running VM, never an image in a chroot).
mkdir -p "$t/run/systemd/system"
VM_UUID=7e5c3f2a-1b4d-4e6f-8a9b-0c1d2e3f4a5b
in_tree "$t" apt-get install -y /tmp/wala.deb >"$log" 2>&1
result "apt: apt-get install -y ./wala.deb over waagent exits 0" $? "$log"
VM_UUID=""
common_checks apt "$t" "$log"
[ ! -d "$t/var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.10" ]
result "apt: apt removed waagent before wala's preinst ran, and waagent's postrm deleted /var/lib/waagent (as documented)" $? "$log"
# The VM id of that machine: Gen1, so waagent's and wala's form swaps the first three groups.
m=$(cat "$t/var/lib/waagent/provisioned" 2>/dev/null)
[ "$m" = 2a3f5c7e-4d1b-6f4e-8a9b-0c1d2e3f4a5b ]
result "apt: the marker is written back for the running VM (provisioned: ${m:-none})" $? "$log"
log=$work/takeover-purge.log
in_tree "$t" dpkg --purge waagent >"$log" 2>&1
result "apt: dpkg --purge waagent (its leftover configuration) exits 0" $? "$log"
cmp -s "$work/takeover-apt.conf" "$t/etc/waagent.conf" && [ -s "$t/etc/logrotate.d/waagent.logrotate" ]
result "apt: after the purge, /etc/waagent.conf (byte for byte) and waagent.logrotate are still there" $? "$log"
rm -rf "$work/takeover-dpkg" "$work/takeover-apt"
