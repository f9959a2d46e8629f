#!/usr/bin/env bash
# Boot integration checks: make install into a temp tree, systemd-analyze verify of every unit
# (each on its own and the whole boot transaction, warnings count as failures, with a broken unit
# as a negative control), tmpfiles, logrotate, the SELinux relabel helper, shellcheck, an
# initramfs built with the dracut module (and its size), the Debian package (lintian) and the RPM
# package (compared with the .deb, rpmlint, its scriptlets run by `rpm --root` in a scratch root).
# Prints one "PASS"/"FAIL" line per check and "N passed, N failed"; exits non-zero on any failure.
# Runs as root (installs missing Debian packages); needs no network beyond apt.
# Usage: tests/boot/check.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() {
    echo "FAIL $1"
    failed=$((failed + 1))
    if [ -n "${2:-}" ] && [ -s "$2" ]; then sed 's/^/    /' "$2" | head -40; fi
}
# result NAME STATUS [LOG]: pass when STATUS is 0.
result() { if [ "$2" -eq 0 ]; then pass "$1"; else fail "$1" "${3:-}"; fi; }
# check NAME COMMAND...: passes when COMMAND exits 0; its output is shown on failure.
check() {
    local name=$1
    shift
    if "$@" >"$tmp/out" 2>&1; then pass "$name"; else fail "$name" "$tmp/out"; fi
}

tmp=$(mktemp -d /tmp/wala-boot-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# --- tools -------------------------------------------------------------------------------------
# dracut-core only: the `dracut` package conflicts with initramfs-tools; dracut-core does not.
need=()
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v dracut >/dev/null || need+=(dracut-core)
command -v help2man >/dev/null || need+=(help2man)
command -v logrotate >/dev/null || need+=(logrotate)
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v rpmbuild >/dev/null || need+=(rpm)
command -v rpmlint >/dev/null || need+=(rpmlint)
command -v lintian >/dev/null || need+=(lintian)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "FAIL tools: missing ${need[*]}; run as root or: apt-get install -y --no-install-recommends ${need[*]}"
        exit 1
    fi
    echo "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
        echo "FAIL tools: apt-get install ${need[*]}"
        exit 1
    fi
fi

# --- make install ------------------------------------------------------------------------------
dest=$tmp/dest
if make --no-print-directory install DESTDIR="$dest" PREFIX=/usr >"$tmp/make.log" 2>&1; then
    pass "make install DESTDIR=$dest"
else
    fail "make install" "$tmp/make.log"
    echo "$passed passed, $failed failed"
    exit 1
fi
missing=()
for f in usr/sbin/wala-provision usr/sbin/wala-agentd usr/sbin/wala-crypto usr/lib/systemd/system/azure.slice \
    usr/lib/systemd/system/wala-provision-local.service usr/lib/systemd/system/wala-provision-network.service \
    usr/lib/systemd/system/wala-provision-keys.service usr/lib/systemd/system/wala-provision-pps.service \
    usr/lib/systemd/system/wala-provision-disk.service usr/lib/systemd/system/wala-provision-local-done.service \
    usr/lib/systemd/system/wala-provision-hostname.service \
    usr/lib/systemd/system/wala-agentd.service usr/lib/systemd/system/wala-network-setup.service \
    usr/lib/tmpfiles.d/wala.conf usr/lib/dracut/modules.d/90wala/module-setup.sh \
    usr/lib/dracut/modules.d/90wala/wala-provision-initrd.service \
    usr/lib/dracut/modules.d/90wala/wala-initrd-relabel.sh etc/logrotate.d/wala etc/waagent.conf \
    usr/share/man/man8/wala-provision.8 usr/share/man/man8/wala-agentd.8 usr/share/man/man8/waagent.8; do
    [ -s "$dest/$f" ] || missing+=("$f")
done
[ "$(readlink "$dest/usr/sbin/waagent")" = wala-agentd ] || missing+=("usr/sbin/waagent -> wala-agentd")
generator=usr/lib/systemd/system-generators/wala-provision-generator
[ "$(readlink "$dest/$generator")" = /usr/sbin/wala-provision ] || missing+=("$generator -> /usr/sbin/wala-provision")
for r in systemd/udev/*.rules; do
    [ -e "$r" ] || continue
    [ -s "$dest/usr/lib/udev/rules.d/${r##*/}" ] || missing+=("usr/lib/udev/rules.d/${r##*/}")
done
if [ ${#missing[@]} -eq 0 ]; then pass "installed tree is complete"; else
    printf '%s\n' "${missing[@]}" >"$tmp/missing"
    fail "installed tree is complete (missing below)" "$tmp/missing"
fi
echo "Wala.Enabled=y" >"$tmp/keep.conf"
cp "$tmp/keep.conf" "$dest/etc/waagent.conf"
make --no-print-directory install DESTDIR="$dest" PREFIX=/usr >"$tmp/make2.log" 2>&1
if cmp -s "$tmp/keep.conf" "$dest/etc/waagent.conf"; then pass "make install keeps an existing /etc/waagent.conf"; else
    fail "make install overwrote an existing /etc/waagent.conf"; fi
check "default waagent.conf has no problems (wala-agentd check-config)" \
    "$dest/usr/sbin/wala-agentd" --config config/waagent.conf check-config
grep -q '^\.TH WALA-AGENTD' "$dest/usr/share/man/man8/wala-agentd.8" &&
    grep -q 'setup-firewall' "$dest/usr/share/man/man8/wala-agentd.8" &&
    grep -q '^\.TH WAAGENT' "$dest/usr/share/man/man8/waagent.8"
result "man pages generated from --help (subcommands included)" $?

# --- systemd-analyze verify ----------------------------------------------------------------------
# A verification root: the host's own units (for targets and ordering partners), stand-ins for
# units this machine lacks but a VM has, then the installed tree with every wala unit enabled.
vroot=$tmp/vroot
make_vroot() {
    rm -rf "$vroot"
    mkdir -p "$vroot/usr/lib/systemd" "$vroot/etc/systemd/system"
    cp -a /usr/lib/systemd/system "$vroot/usr/lib/systemd/"
    stub() { # stub NAME [Unit]-lines...
        local f=$vroot/usr/lib/systemd/system/$1
        shift
        [ -e "$f" ] && return 0
        { echo "[Unit]"; printf '%s\n' "$@"; echo "[Service]"; echo "ExecStart=/bin/true"
          echo "[Install]"; echo "WantedBy=multi-user.target"; } >"$f"
    }
    # Debian's ssh.service ordering, Fedora's sshd-keygen, a KVP daemon with default dependencies.
    stub ssh.service "After=network.target auditd.service" "Wants=sshd-keygen.service"
    stub sshd-keygen.service "Before=ssh.service"
    stub hv-kvp-daemon.service "Description=stand-in"
    stub NetworkManager-wait-online.service "Before=network-online.target"
    cp -a "$dest/." "$vroot/"
    systemctl --root="$vroot" enable ssh.service sshd-keygen.service hv-kvp-daemon.service \
        systemd-networkd.service wala-provision-local.service wala-provision-keys.service wala-provision-disk.service wala-provision-network.service \
        wala-agentd.service wala-network-setup.service >/dev/null 2>&1
}
# verify ROOT UNIT...: systemd-analyze must exit 0 AND print nothing (it reports ordering cycles
# and unknown keys only as warnings, with exit code 0).
verify() {
    local root=$1
    shift
    systemd-analyze verify --man=no --root="$root" "$@" >"$tmp/verify" 2>&1
    local rc=$?
    [ $rc -eq 0 ] && [ ! -s "$tmp/verify" ]
}
make_vroot
units=("$vroot"/usr/lib/systemd/system/wala-*.service "$vroot"/usr/lib/systemd/system/azure.slice)
for u in "${units[@]}"; do
    if verify "$vroot" "$u"; then pass "systemd-analyze verify ${u##*/}"; else
        fail "systemd-analyze verify ${u##*/}" "$tmp/verify"; fi
done
for t in multi-user.target graphical.target network-online.target; do
    if verify "$vroot" "$vroot/usr/lib/systemd/system/$t"; then
        pass "boot transaction to $t with all wala units enabled: no cycle, no warning"
    else fail "boot transaction to $t" "$tmp/verify"; fi
done
# With wala-provision-generator's drop-in for a boot with no DVD drive in /dev (the local stage
# before network-pre.target, as shared/src/provision/generator.rs writes it): still no cycle.
mkdir -p "$vroot/etc/systemd/system/wala-provision-local.service.d"
printf '%s\n' "[Unit]" "Wants=network-pre.target" "Before=network-pre.target" \
    "Wants=wala-provision-local-done.service" "[Service]" "Type=notify" "NotifyAccess=main" \
    "Environment=WALA_NETWORK_WAITS_FOR_HOSTNAME=1" \
    >"$vroot/etc/systemd/system/wala-provision-local.service.d/50-wala-network-waits-for-hostname.conf"
if verify "$vroot" "$vroot/usr/lib/systemd/system/multi-user.target"; then
    pass "boot transaction with the local stage before network-pre.target (no DVD drive at start): no cycle"
else fail "boot transaction with the local stage before network-pre.target" "$tmp/verify"; fi
rm -r "$vroot/etc/systemd/system/wala-provision-local.service.d"
# Negative controls: the checker must reject a cycle, a typo and a missing binary.
bad=$vroot/usr/lib/systemd/system
printf '%s\n' "[Unit]" "DefaultDependencies=no" "After=wala-provision-network.service" \
    "Before=wala-provision-local.service" "[Service]" "Type=oneshot" "ExecStart=/usr/sbin/wala-provision" \
    "[Install]" "WantedBy=multi-user.target" >"$bad/wala-broken-cycle.service"
systemctl --root="$vroot" enable wala-broken-cycle.service >/dev/null 2>&1
if verify "$vroot" "$bad/multi-user.target"; then fail "negative control: an ordering cycle is caught"; else
    grep -q 'ordering cycle' "$tmp/verify"
    result "negative control: an ordering cycle is caught" $? "$tmp/verify"
fi
rm -f "$bad/wala-broken-cycle.service" "$vroot/etc/systemd/system/multi-user.target.wants/wala-broken-cycle.service"
sed 's/^After=local-fs.target/Aftr=local-fs.target/' "$bad/wala-provision-local.service" >"$bad/wala-broken-typo.service"
! verify "$vroot" "$bad/wala-broken-typo.service"
result "negative control: a misspelt key is caught" $?
sed 's|/usr/sbin/wala-provision|/usr/sbin/wala-provision-missing|' "$bad/wala-provision-local.service" >"$bad/wala-broken-exec.service"
! verify "$vroot" "$bad/wala-broken-exec.service"
result "negative control: a missing binary is caught" $?

# --- tmpfiles, logrotate, relabel helper ---------------------------------------------------------
troot=$tmp/troot
mkdir -p "$troot"
if systemd-tmpfiles --create --root="$troot" "$dest/usr/lib/tmpfiles.d/wala.conf" >"$tmp/tmpf" 2>&1 &&
    [ "$(stat -c %a "$troot/var/lib/waagent")" = 700 ] && [ "$(stat -c %a "$troot/var/log/azure")" = 755 ]; then
    pass "tmpfiles: /var/lib/waagent 0700, /var/log/azure 0755"
else fail "tmpfiles wala.conf" "$tmp/tmpf"; fi
mkdir -p "$tmp/lr"
: >"$tmp/lr/waagent.log"
sed "s|/var/log/waagent.log|$tmp/lr/waagent.log|" "$dest/etc/logrotate.d/wala" >"$tmp/lr/conf"
if logrotate --debug --state "$tmp/lr/state" "$tmp/lr/conf" >"$tmp/lr/out" 2>&1 &&
    ! grep -qi 'error' "$tmp/lr/out"; then pass "logrotate config parses"; else
    fail "logrotate config" "$tmp/lr/out"; fi
sys=$tmp/sysroot
mkdir -p "$sys/home/existing" "$tmp/run"
helper=$dest/usr/lib/dracut/modules.d/90wala/wala-initrd-relabel.sh
export WALA_SYSROOT=$sys WALA_RUNDIR=$tmp/run/wala WALA_TMPFILES_DIR=$tmp/run/tmpfiles.d
"$helper" snapshot
mkdir -p "$sys/home/azureuser"
"$helper" write
unset WALA_SYSROOT WALA_RUNDIR WALA_TMPFILES_DIR
rl=$tmp/run/tmpfiles.d/wala-initrd-relabel.conf
if grep -qx 'Z /home/azureuser - - -' "$rl" && ! grep -q '/home/existing' "$rl" &&
    grep -qx 'z /etc/shadow - - -' "$rl" && grep -qx 'Z /etc/ssh/sshd_config.d - - -' "$rl" &&
    systemd-tmpfiles --create --root="$sys" "$rl" >"$tmp/rl.out" 2>&1 && [ ! -s "$tmp/rl.out" ]; then
    pass "relabel helper: new home relabelled, old one not, snippet valid for systemd-tmpfiles"
else cat "$rl" "$tmp/rl.out" >"$tmp/rl.all" 2>/dev/null; fail "relabel helper" "$tmp/rl.all"; fi

# --- shellcheck ----------------------------------------------------------------------------------
shells=(tests/boot/check.sh tests/vm/*.sh packaging/build-deb.sh packaging/build-rpm.sh packaging/gen-man.sh dracut/modules.d/90wala/*.sh)
check "shellcheck ${shells[*]}" shellcheck "${shells[@]}"
check "shellcheck maintainer scripts" shellcheck -s sh packaging/debian/preinst packaging/debian/postinst \
    packaging/debian/prerm packaging/debian/postrm
# A `$?` after a command substitution in the same command is the substitution's status, not the
# checked command's: `result "... $(cat log)" $?` can never fail. Tried on a line that has it first.
status_after_subst() { grep -nE '\$\(.*\).*[[:space:]]\$\?([[:space:]]|$)' "$@"; }
printf 'result "x (%s(cat f))" %s? "%slog"\n' "\$" "\$" "\$" >"$tmp/subst.sh"
if status_after_subst "$tmp/subst.sh" >/dev/null && ! status_after_subst "${shells[@]}" bench/*.sh >"$tmp/subst.out"; then
    pass "test scripts: no check reads \$? after a command substitution"
else fail "test scripts: no check reads \$? after a command substitution" "$tmp/subst.out"; fi

# --- dracut --------------------------------------------------------------------------------------
# A private copy of dracut's module tree with ours added, the binary found in the DESTDIR tree;
# no kernel is needed (--no-kernel), and nothing on the host is changed.
dr=$tmp/dracut
cp -a /usr/lib/dracut "$dr"
cp -a "$dest/usr/lib/dracut/modules.d/90wala" "$dr/modules.d/"
build_initrd() { # build_initrd OUT [dracut args]
    local out=$1
    shift
    DRACUT_PATH="$dest/usr/sbin /sbin /bin /usr/sbin /usr/bin" dracutbasedir=$dr \
        dracut --no-kernel --kver 0.0.0-wala --no-hostonly --no-early-microcode --force \
        --tmpdir "$tmp" "$@" "$out" >"$out.log" 2>&1
}
if build_initrd "$tmp/with.img" --add wala && build_initrd "$tmp/without.img"; then
    pass "dracut builds an initramfs with and without the wala module"
    lsinitrd "$tmp/with.img" >"$tmp/with.list" 2>&1
    for f in usr/sbin/wala-provision usr/lib/systemd/system/wala-provision-initrd.service \
        etc/systemd/system/initrd.target.wants/wala-provision-initrd.service usr/lib/wala/wala-initrd-relabel \
        usr/sbin/useradd; do
        grep -q " $f\( ->.*\)\?$" "$tmp/with.list"
        result "initramfs contains $f" $?
    done
    ! lsinitrd "$tmp/without.img" 2>&1 | grep -q 'wala-provision'
    result "wala is opt-in (absent unless --add wala)" $?
    mkdir -p "$tmp/unpacked" && (cd "$tmp/unpacked" && lsinitrd --unpack "$tmp/with.img" >/dev/null 2>&1)
    if verify "$tmp/unpacked" "$tmp/unpacked/usr/lib/systemd/system/wala-provision-initrd.service" &&
        verify "$tmp/unpacked" "$tmp/unpacked/usr/lib/systemd/system/initrd.target"; then
        pass "systemd-analyze verify inside the initramfs (unit, initrd.target transaction)"
    else fail "systemd-analyze verify inside the initramfs" "$tmp/verify"; fi
    w=$(stat -c %s "$tmp/with.img")
    wo=$(stat -c %s "$tmp/without.img")
    echo "INFO initramfs size: $wo bytes without wala, $w with: +$(((w - wo) / 1024)) KiB compressed"
else
    cat "$tmp/with.img.log" "$tmp/without.img.log" >"$tmp/dr.log" 2>/dev/null
    fail "dracut builds an initramfs" "$tmp/dr.log"
fi

# --- Debian package ------------------------------------------------------------------------------
deb=
rm -f target/debian/wala_*.deb
if packaging/build-deb.sh >"$tmp/deb.log" 2>&1; then
    deb=$(ls target/debian/wala_*_"$(dpkg --print-architecture)".deb)
    pass "build-deb.sh produced $deb"
    dpkg-deb -c "$deb" >"$tmp/deb.list"
    for f in ./usr/sbin/wala-provision ./usr/sbin/wala-agentd ./usr/sbin/wala-crypto "./usr/sbin/waagent -> wala-agentd" \
        ./lib/systemd/system/wala-provision-local.service ./lib/systemd/system/wala-agentd.service \
        ./lib/systemd/system/azure.slice ./usr/lib/dracut/modules.d/90wala/module-setup.sh \
        "./lib/systemd/system-generators/wala-provision-generator -> /usr/sbin/wala-provision" \
        ./usr/share/wala/waagent.conf ./usr/share/wala/logrotate ./usr/share/man/man8/wala-agentd.8.gz; do
        grep -qF " $f" "$tmp/deb.list"
        result "deb contains $f" $?
    done
    # Taking over from waagent's package (docs/migration.md): Conflicts and Replaces name Debian's
    # and Ubuntu's packages; Provides names waagent only (Debian's waagent Conflicts with
    # walinuxagent, and dpkg -i cannot remove the package it installs to resolve that).
    for field in Conflicts Replaces; do
        [ "$(dpkg-deb -f "$deb" "$field")" = "waagent, walinuxagent" ]
        result "deb $field: waagent, walinuxagent" $?
    done
    [ "$(dpkg-deb -f "$deb" Provides)" = waagent ]
    result "deb Provides: waagent (unversioned, and not walinuxagent)" $?
    # wala-provision runs at every boot on sshd's path: it must not map libssl or libcrypto, whose
    # relocations cost each process ~3.5 M instructions before main (docs/boot.md). wala-agentd
    # runs for the VM's whole life: it must not map them either, whose pages were most of its
    # memory (docs/security.md, "The crypto helper"). The short-lived wala-crypto links them
    # (certificates, HTTPS to storage).
    mkdir -p "$tmp/debx" && dpkg-deb -x "$deb" "$tmp/debx"
    readelf -d "$tmp/debx/usr/sbin/wala-provision" >"$tmp/needed-provision" 2>&1
    readelf -d "$tmp/debx/usr/sbin/wala-agentd" >"$tmp/needed-agentd" 2>&1
    readelf -d "$tmp/debx/usr/sbin/wala-crypto" >"$tmp/needed-crypto" 2>&1
    ! grep -qE 'NEEDED.*lib(ssl|crypto)' "$tmp/needed-provision" && grep -q 'NEEDED.*libcrypto' "$tmp/needed-crypto"
    rc=$?
    result "wala-provision needs no libssl/libcrypto ($(grep -o 'NEEDED.*\[.*\]' "$tmp/needed-provision" | sed 's/.*\[\(.*\)\]/\1/' | paste -sd' ')); wala-crypto does" $rc "$tmp/needed-provision"
    ! grep -qE 'NEEDED.*lib(ssl|crypto)' "$tmp/needed-agentd"
    rc=$?
    result "wala-agentd needs no libssl/libcrypto ($(grep -o 'NEEDED.*\[.*\]' "$tmp/needed-agentd" | sed 's/.*\[\(.*\)\]/\1/' | paste -sd' '))" $rc "$tmp/needed-agentd"
    dpkg-deb -f "$deb" Depends | grep -q 'libc6'
    rc=$?
    result "deb Depends (dpkg-shlibdeps): $(dpkg-deb -f "$deb" Depends)" $rc
    ! dpkg-deb -I "$deb" conffiles >/dev/null 2>&1 && ! grep -q ' \./etc/' "$tmp/deb.list"
    result "deb has no conffiles and nothing under /etc (the admin's waagent.conf is never asked about)" $?
    dpkg-deb -I "$deb" preinst | grep -q 'dpkg-divert --package wala --no-rename'
    result "deb preinst diverts waagent's configuration files (no rename)" $?
    dpkg-deb -I "$deb" postinst | grep -q 'deb-systemd-helper enable'
    result "deb postinst enables the units" $?
    # lintian (Debian 12's, no profile tweaks): no errors; warnings are printed in the check name.
    lintian --no-cfg "$deb" >"$tmp/lintian" 2>&1
    rc=$?
    [ $rc -eq 0 ] && ! grep -q '^E: ' "$tmp/lintian"
    rc=$?
    result "lintian: no errors ($(grep -c '^W: ' "$tmp/lintian") warnings)" $rc "$tmp/lintian"
else
    fail "build-deb.sh" "$tmp/deb.log"
fi

# --- RPM package ---------------------------------------------------------------------------------
# The same contents as the .deb in RPM distributions' paths, the same takeover of WALinuxAgent,
# checked by rpm itself: file lists compared, relations, scriptlets shellchecked, rpmlint, and the
# scriptlets run for real by `rpm --root` in a scratch root holding WALinuxAgent's package and a
# VM's state (docs/boot.md, "The RPM package").
rpmq() { rpm -qp "$@" 2>/dev/null; }
# Sorted "perms path" lines (no directories, no leading /) of a package.
rpm_files() { rpmq --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$1" | awk '$1 !~ /^d/ {sub("^/", "", $2); print $1, $2}' | sort; }
deb_files() { dpkg-deb -c "$1" | awk '$1 !~ /^d/ {sub("^\\./", "", $6); print $1, $6}' | sort; }
rm -f target/rpm/wala-*.rpm
if packaging/build-rpm.sh >"$tmp/rpm.log" 2>&1; then
    rpmpkg=$(ls target/rpm/wala-*.rpm)
    pass "build-rpm.sh (rpmbuild) produced $rpmpkg"
    rpm -qlp "$rpmpkg" >"$tmp/rpm.qlp" 2>&1
    rpm_files "$rpmpkg" >"$tmp/rpm.files"
    # Every file of the rpm is in `rpm -qlp`, and both lists are the .deb's, path for path, with
    # these differences, each for a reason:
    #   /lib/systemd/system, /lib/systemd/system-generators, /lib/udev/rules.d -> /usr/lib/...:
    #     Debian 12 keeps units, generators and rules under /lib; Fedora, RHEL and Azure Linux have had them under /usr/lib since the /usr move.
    #   /usr/share/wala/{waagent.conf,logrotate} -> /etc/waagent.conf, /etc/logrotate.d/wala as
    #     %config(noreplace): rpm keeps an existing (admin's, WALinuxAgent's) file and writes the
    #     default beside it as .rpmnew, what the .deb's postinst and diversions do by hand.
    #   /usr/share/doc/wala/boot.md.gz -> boot.md: RPM distributions do not compress documents.
    #   /usr/share/doc/wala/{copyright,changelog.gz}: the License: tag and %changelog instead.
    #   only in the rpm: the preset (units enabled by presets), %ghost /var/log/waagent.log (owned
    #     as WALinuxAgent owns it, so that the takeover's erasure does not delete the log), and
    #     rpmbuild's /usr/lib/.build-id links from the binaries' build ids (debuginfo lookup).
    deb_files "$deb" | sed -e 's# lib/systemd/system/# usr/lib/systemd/system/#' \
        -e 's# lib/systemd/system-generators/# usr/lib/systemd/system-generators/#' \
        -e 's# lib/udev/rules.d/# usr/lib/udev/rules.d/#' \
        -e 's# usr/share/wala/waagent.conf$# etc/waagent.conf#' \
        -e 's# usr/share/wala/logrotate$# etc/logrotate.d/wala#' \
        -e 's# usr/share/doc/wala/boot.md.gz$# usr/share/doc/wala/boot.md#' \
        -e '\# usr/share/doc/wala/copyright$#d' -e '\# usr/share/doc/wala/changelog.gz$#d' |
        sort >"$tmp/deb.mapped"
    grep -v -e ' usr/lib/systemd/system-preset/85-wala.preset$' -e ' var/log/waagent.log$' \
        -e ' usr/lib/\.build-id/' "$tmp/rpm.files" >"$tmp/rpm.common"
    diff -u "$tmp/deb.mapped" "$tmp/rpm.common" >"$tmp/rpm.diff"
    rc=$?
    n=$(wc -l <"$tmp/deb.mapped")
    [ $rc -eq 0 ] && [ "$n" -ge 20 ]
    result "rpm has the .deb's $n files (mode and path, paths mapped as above), nothing else but the preset, the ghost log, build-id links" $? "$tmp/rpm.diff"
    missing_qlp=$(awk '{print "/" $2}' "$tmp/rpm.files" | grep -vxF -f "$tmp/rpm.qlp")
    [ -z "$missing_qlp" ] && grep -qx /usr/lib/systemd/system-preset/85-wala.preset "$tmp/rpm.qlp" &&
        grep -qx /var/log/waagent.log "$tmp/rpm.qlp"
    result "rpm -qlp lists every file, the preset and the ghost log" $?
    grep -qx 'lrwxrwxrwx usr/sbin/waagent' "$tmp/rpm.files" && [ "$(rpmq --qf '[%{FILENAMES} %{FILELINKTOS}\n]' "$rpmpkg" |
        grep '^/usr/sbin/waagent ')" = "/usr/sbin/waagent wala-agentd" ]
    result "rpm: waagent -> wala-agentd" $?
    # Relations: Provides and Obsoletes WALinuxAgent, unversioned; no Conflicts (docs/boot.md).
    rpmq --provides "$rpmpkg" | grep -qx 'WALinuxAgent'
    result "rpm Provides: WALinuxAgent (unversioned)" $?
    [ "$(rpmq --obsoletes "$rpmpkg")" = WALinuxAgent ]
    result "rpm Obsoletes: WALinuxAgent (unversioned, nothing else)" $?
    [ -z "$(rpmq --conflicts "$rpmpkg")" ]
    result "rpm has no Conflicts" $?
    rpmq --requires "$rpmpkg" >"$tmp/rpm.req"
    grep -qx 'libssl.so.3()(64bit)' "$tmp/rpm.req" && grep -qx 'libudev.so.1()(64bit)' "$tmp/rpm.req" &&
        grep -qx shadow-utils "$tmp/rpm.req" && grep -qx util-linux "$tmp/rpm.req" &&
        grep -qx e2fsprogs "$tmp/rpm.req" && grep -qx /usr/bin/udevadm "$tmp/rpm.req"
    result "rpm Requires: libraries (ELF generator), shadow-utils, util-linux, e2fsprogs, udevadm" $? "$tmp/rpm.req"
    rpmq --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpmpkg" >"$tmp/rpm.flags"
    grep -qx 'cn /etc/waagent.conf' "$tmp/rpm.flags" && grep -qx 'cn /etc/logrotate.d/wala' "$tmp/rpm.flags" &&
        grep -qx 'g /var/log/waagent.log' "$tmp/rpm.flags" && [ "$(grep -c '^c' "$tmp/rpm.flags")" -eq 2 ]
    result "rpm: /etc/waagent.conf and logrotate are %config(noreplace), the only config files; the log %ghost" $? "$tmp/rpm.flags"
    # The units the package enables: the preset, the spec and the .deb's maintainer scripts name
    # exactly the units that have an [Install] section.
    installable=$(grep -l '^\[Install\]' systemd/*.service | xargs -n1 basename | sort)
    preset=$(sed -n 's/^enable //p' packaging/rpm/85-wala.preset | sort)
    spec=$(sed -n 's/^%global wala_units //p' packaging/rpm/wala.spec | tr ' ' '\n' | sort)
    debunits=$(sed -n 's/^UNITS="\(.*\)"$/\1/p' packaging/debian/postinst | tr ' ' '\n' | sort)
    [ -n "$installable" ] && [ "$preset" = "$installable" ] && [ "$spec" = "$installable" ] && [ "$debunits" = "$installable" ]
    rc=$?
    result "preset, spec and deb postinst enable exactly the units with [Install] ($(echo "$installable" | wc -l))" $rc
    # Scriptlets: present, as rpm stores them (macros expanded), and clean under shellcheck.
    mkdir -p "$tmp/scriptlets"
    for s in POSTIN POSTTRANS PREUN POSTUN; do
        { echo '#!/bin/sh'; rpmq --qf "%{$s}" "$rpmpkg"; } >"$tmp/scriptlets/$s"
    done
    grep -q 'first-install' "$tmp/scriptlets/POSTIN" && grep -q 'systemctl --no-reload preset' "$tmp/scriptlets/POSTTRANS" &&
        grep -q 'systemctl --no-reload disable' "$tmp/scriptlets/PREUN" && grep -q 'systemctl stop' "$tmp/scriptlets/PREUN" &&
        grep -q 'daemon-reload' "$tmp/scriptlets/POSTUN"
    result "rpm scriptlets: %post, %posttrans (presets), %preun (disable, stop), %postun (reload)" $?
    check "shellcheck rpm scriptlets (as built)" shellcheck -s sh "$tmp"/scriptlets/*
    # rpmlint: Debian 12's 2.4 works, with packaging/rpm/rpmlint.toml (each setting says why).
    if command -v rpmlint >/dev/null; then
        rpmlint -c packaging/rpm/rpmlint.toml "$rpmpkg" packaging/rpm/wala.spec >"$tmp/rpmlint" 2>&1
        rc=$?
        [ $rc -eq 0 ] && grep -q ' 0 errors' "$tmp/rpmlint" && ! grep -q ': E: ' "$tmp/rpmlint"
        rc=$?
        result "rpmlint (package and spec): no errors ($(grep -o '[0-9]* warnings' "$tmp/rpmlint"))" $rc "$tmp/rpmlint"
    else
        echo "SKIP rpmlint: not installed (Debian package rpmlint: apt-get install rpmlint)"
    fi
    cp "$rpmpkg" "$tmp/wala-1.rpm"
    if WALA_RPM_RELEASE=2 packaging/build-rpm.sh >"$tmp/rpm2.log" 2>&1; then
        mv target/rpm/wala-*-2.*.rpm "$tmp/wala-2.rpm"
    fi
    cp "$tmp/wala-1.rpm" "$rpmpkg"
else
    fail "build-rpm.sh" "$tmp/rpm.log"
fi

# The scriptlets for real: `rpm --root` into a scratch root that has a shell, the programs the
# scriptlets run and WALinuxAgent's package (a stand-in built here with what RPM distributions'
# WALinuxAgent packages own and run: waagent.service with %systemd_post/%systemd_preun steps,
# azure.slice, %config /etc/waagent.conf, %config(noreplace) waagent.logrotate, %dir
# /var/lib/waagent, %ghost log, udev rules), then a VM's state as waagent leaves it. No systemd
# runs there (an image builder's chroot): the running-system branches (daemon-reload, restart,
# stop) are not exercised. rpm runs in a private mount namespace with /proc and /dev/null bound.
rroot=$tmp/rpmroot
# shellcheck disable=SC2016 # "$0" and "$@" belong to the inner sh
rpmr() { unshare -m sh -c 'mount -t proc proc "$0/proc" && mount --bind /dev/null "$0/dev/null" && exec "$@"' \
    "$rroot" rpm --root "$rroot" --dbpath /var/lib/rpm "$@"; }
make_rpm_root() {
    rm -rf "$rroot"
    mkdir -p "$rroot"/usr/bin "$rroot"/usr/sbin "$rroot"/usr/lib "$rroot"/usr/lib64 "$rroot"/etc "$rroot"/var/lib \
        "$rroot"/tmp "$rroot"/proc "$rroot"/dev "$rroot"/run
    : >"$rroot/dev/null"
    for l in bin sbin lib lib64; do ln -s "usr/$l" "$rroot/$l"; done
    local p src lib
    for p in sh mkdir rm rmdir basename readlink grep systemctl systemd-tmpfiles; do
        src=$(command -v "$p") || return 1
        cp -L "$src" "$rroot/usr/bin/$p" || return 1
        for lib in $(ldd "$src" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
            mkdir -p "$rroot${lib%/*}" && cp -L "$lib" "$rroot$lib" || return 1
        done
    done
    rpm --root "$rroot" --dbpath /var/lib/rpm --initdb
}
# WALinuxAgent's package, as a test stand-in (its file names and scriptlet commands, no Python).
build_fake_walinuxagent() {
    local top=$tmp/fake-wa
    mkdir -p "$top/src"
    printf '#!/usr/bin/python3\n# WALinuxAgent stand-in\n' >"$top/src/waagent"
    printf '[Unit]\nDescription=Azure Linux Agent\n[Service]\nExecStart=/usr/sbin/waagent -daemon\nSlice=azure.slice\n[Install]\nWantedBy=multi-user.target\n' >"$top/src/waagent.service"
    printf '[Unit]\nDescription=Slice for Azure VM Agent and Extensions\n' >"$top/src/azure.slice"
    printf 'Provisioning.Agent=auto\nResourceDisk.Format=y\n' >"$top/src/waagent.conf"
    printf '/var/log/waagent.log {\n    monthly\n    missingok\n}\n' >"$top/src/waagent.logrotate"
    printf 'SUBSYSTEM=="block", GOTO="end"\nLABEL="end"\n' >"$top/src/66-azure-storage.rules"
    cat >"$top/WALinuxAgent.spec" <<'SPEC'
Name: WALinuxAgent
Version: 2.9.1.1
Release: 1
Summary: stand-in for the Azure Linux Agent package (wala's tests)
License: Apache-2.0
BuildArch: noarch
%description
Stand-in for WALinuxAgent: its files and scriptlet commands.
%install
install -D -m 0755 %{src}/waagent %{buildroot}/usr/sbin/waagent
install -D -m 0644 %{src}/waagent.service %{buildroot}/usr/lib/systemd/system/waagent.service
install -D -m 0644 %{src}/azure.slice %{buildroot}/usr/lib/systemd/system/azure.slice
install -D -m 0644 %{src}/waagent.conf %{buildroot}/etc/waagent.conf
install -D -m 0644 %{src}/waagent.logrotate %{buildroot}/etc/logrotate.d/waagent.logrotate
install -D -m 0644 %{src}/66-azure-storage.rules %{buildroot}/etc/udev/rules.d/66-azure-storage.rules
install -d -m 0700 %{buildroot}/var/lib/waagent
install -d %{buildroot}/var/log
touch %{buildroot}/var/log/waagent.log
%post
if [ $1 -eq 1 ]; then systemctl --no-reload enable waagent.service >/dev/null 2>&1 || :; fi
%preun
if [ $1 -eq 0 ]; then systemctl --no-reload disable --now waagent.service >/dev/null 2>&1 || :; fi
%files
/usr/sbin/waagent
/usr/lib/systemd/system/waagent.service
/usr/lib/systemd/system/azure.slice
%config /etc/waagent.conf
%config(noreplace) /etc/logrotate.d/waagent.logrotate
/etc/udev/rules.d/66-azure-storage.rules
%dir %attr(0700, root, root) /var/lib/waagent
%ghost /var/log/waagent.log
SPEC
    rpmbuild -bb --quiet --define "_topdir $top/top" --define "src $top/src" "$top/WALinuxAgent.spec" >"$top/log" 2>&1 &&
        cp "$top"/top/RPMS/noarch/WALinuxAgent-*.rpm "$tmp/WALinuxAgent.rpm"
}
# A VM's state as waagent leaves it, in the scratch root.
make_vm_state() {
    local lib=$rroot/var/lib/waagent
    printf '8a3c1e2f-4b5d-6e7f-8091-a2b3c4d5e6f7' >"$lib/provisioned"
    printf -- '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n' >"$lib/TransportCert.pem"
    printf -- '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n' >"$lib/TransportPrivate.pem"
    printf 'cert\n' >"$lib/0123456789ABCDEF0123456789ABCDEF01234567.crt"
    printf 'key\n' >"$lib/0123456789ABCDEF0123456789ABCDEF01234567.prv"
    mkdir -p "$lib/Microsoft.Azure.Extensions.CustomScript-2.1.10/config"
    printf 'Enabled' >"$lib/Microsoft.Azure.Extensions.CustomScript-2.1.10/config/HandlerState"
    printf 'Logs.Verbose=y\n' >>"$rroot/etc/waagent.conf"
    mkdir -p "$rroot/etc/ssh"
    printf 'host key\n' >"$rroot/etc/ssh/ssh_host_ed25519_key"
    printf 'ssh-ed25519 AAAA host\n' >"$rroot/etc/ssh/ssh_host_ed25519_key.pub"
    mkdir -p "$rroot/var/log"
    printf '2026-12-06T00:00:00Z INFO Daemon waagent was here\n' >"$rroot/var/log/waagent.log"
    # waagent's run-time firewall unit (no package owns it).
    printf '[Unit]\nDescription=Setup network rules for WALinuxAgent\n[Service]\nExecStart=/usr/bin/python3 -u /usr/sbin/waagent -setup-firewall\n[Install]\nWantedBy=network.target\n' \
        >"$rroot/usr/lib/systemd/system/waagent-network-setup.service"
    mkdir -p "$rroot/etc/systemd/system/network.target.wants"
    ln -s /usr/lib/systemd/system/waagent-network-setup.service "$rroot/etc/systemd/system/network.target.wants/"
}
state_sums() { (cd "$rroot" && find var/lib/waagent etc/waagent.conf etc/ssh var/log/waagent.log -type f -print0 | sort -z | xargs -0 sha256sum); }
# links under /etc/systemd/system, as "link -> target" lines
unit_links() { (cd "$rroot/etc/systemd/system" 2>/dev/null && find . -type l -printf '%p -> %l\n' | sort); }

if [ -s "$tmp/wala-1.rpm" ] && make_rpm_root >"$tmp/rroot.log" 2>&1 && build_fake_walinuxagent &&
    rpmr --nodeps -i "$tmp/WALinuxAgent.rpm" >>"$tmp/rroot.log" 2>&1 &&
    [ -L "$rroot/etc/systemd/system/multi-user.target.wants/waagent.service" ]; then
    pass "scratch root: WALinuxAgent stand-in installed by rpm --root, waagent.service enabled by its %post"
    make_vm_state
    state_sums >"$tmp/state.before"
    cp "$rroot/etc/waagent.conf" "$tmp/admin.conf"
    # The takeover: one rpm -U transaction installs wala and erases the obsoleted WALinuxAgent.
    rpmr --nodeps -U "$tmp/wala-1.rpm" >"$tmp/takeover.log" 2>&1
    result "rpm -U wala.rpm over WALinuxAgent: one transaction, no file conflict" $? "$tmp/takeover.log"
    rpmr -qa --qf '%{NAME}\n' 2>/dev/null | sort >"$tmp/rpm.qa"
    [ "$(cat "$tmp/rpm.qa")" = wala ]
    result "Obsoletes: WALinuxAgent erased in the same transaction, wala installed" $? "$tmp/rpm.qa"
    state_sums >"$tmp/state.after"
    diff -u "$tmp/state.before" "$tmp/state.after" >"$tmp/state.diff"
    rc=$?
    [ $rc -eq 0 ] && [ "$(wc -l <"$tmp/state.before")" -ge 10 ]
    result "takeover keeps waagent's state byte for byte: marker, certificates, extension, admin's waagent.conf, host keys, log" $? "$tmp/state.diff"
    [ "$(stat -c %a "$rroot/var/lib/waagent")" = 700 ] && cmp -s "$rroot/etc/waagent.conf.rpmnew" config/waagent.conf
    result "/var/lib/waagent still 0700; wala's default beside the admin's file as waagent.conf.rpmnew" $?
    en=0
    for u in $installable; do
        [ "$(systemctl --root="$rroot" is-enabled "$u" 2>/dev/null)" = enabled ] || { echo "$u not enabled"; en=1; }
    done >"$tmp/enabled"
    result "the preset enabled every unit with [Install] (after WALinuxAgent's %preun disabled waagent.service)" $en "$tmp/enabled"
    unit_links >"$tmp/links"
    # (Debian's systemctl names /lib/systemd/system in links: the scratch root's /lib is /usr/lib.)
    grep -Eqx '\./waagent\.service -> (/usr)?/lib/systemd/system/wala-agentd\.service' "$tmp/links" &&
        grep -Eqx '\./walinuxagent\.service -> (/usr)?/lib/systemd/system/wala-agentd\.service' "$tmp/links" &&
        ! grep -q 'multi-user.target.wants/waagent.service' "$tmp/links"
    result "waagent.service and walinuxagent.service are wala-agentd's aliases; waagent's own link gone" $? "$tmp/links"
    [ ! -e "$rroot/usr/lib/systemd/system/waagent-network-setup.service" ] && ! grep -q 'waagent-network-setup' "$tmp/links"
    result "waagent's run-time firewall unit and its link removed by %posttrans" $? "$tmp/links"
    covering=$(grep -ls '^[^#]*/var/log/waagent\.log' "$rroot"/etc/logrotate.d/* | grep -cvE '\.(rpmsave|rpmorig|rpmnew)$')
    [ "$covering" -eq 1 ] && [ -e "$rroot/etc/logrotate.d/wala" ]
    result "one logrotate rule for /var/log/waagent.log (wala's; WALinuxAgent's erased)" $?
    [ ! -e "$rroot/var/lib/rpm-state/wala" ]
    result "no state left between scriptlets (/var/lib/rpm-state/wala)" $?
    # An upgrade keeps the admin's choice: a unit disabled stays disabled.
    if [ -s "$tmp/wala-2.rpm" ]; then
        systemctl --root="$rroot" disable wala-provision-disk.service >/dev/null 2>&1
        rpmr --nodeps -U "$tmp/wala-2.rpm" >"$tmp/upgrade.log" 2>&1 &&
            [ "$(systemctl --root="$rroot" is-enabled wala-provision-disk.service 2>/dev/null)" = disabled ] &&
            [ "$(systemctl --root="$rroot" is-enabled wala-agentd.service 2>/dev/null)" = enabled ] &&
            [ ! -e "$rroot/var/lib/rpm-state/wala" ]
        result "rpm -U to release 2: a unit the admin disabled stays disabled, the others enabled" $? "$tmp/upgrade.log"
    else
        fail "build-rpm.sh with WALA_RPM_RELEASE=2" "$tmp/rpm2.log"
    fi
    # Erasure: no unit, link, rule or tmpfiles entry of wala's left; waagent's state kept.
    rpmr -e wala >"$tmp/erase.log" 2>&1
    result "rpm -e wala" $? "$tmp/erase.log"
    left=$( (cd "$rroot" && find usr etc \( -name '*wala*' -o -lname '*wala*' \) ! -name '*.rpmsave' ! -name '*.rpmnew'); unit_links)
    [ -z "$left" ] && [ ! -e "$rroot/usr/lib/udev/rules.d/66-wala-azure-storage.rules" ] && [ ! -e "$rroot/usr/sbin/waagent" ]
    rc=$?
    echo "$left" >"$tmp/left"
    result "after rpm -e: no wala unit, enablement or alias link, udev rule, preset or binary" $rc "$tmp/left"
    [ -s "$rroot/var/lib/waagent/provisioned" ] && [ -d "$rroot/var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.10" ] &&
        cmp -s "$rroot/etc/waagent.conf.rpmsave" "$tmp/admin.conf" && [ ! -e "$rroot/etc/waagent.conf" ]
    result "after rpm -e: /var/lib/waagent kept; the admin's waagent.conf saved by rpm as waagent.conf.rpmsave" $?
    [ ! -e "$rroot/var/log/waagent.log" ]
    result "after rpm -e: the log went with the package (%ghost, as with WALinuxAgent's)" $?
    # A plain installation (no WALinuxAgent: an image being built) is the whole set-up too.
    rpmr --nodeps -i "$tmp/wala-1.rpm" >"$tmp/fresh.log" 2>&1
    rc=$?
    en=$rc
    for u in $installable; do
        [ "$(systemctl --root="$rroot" is-enabled "$u" 2>/dev/null)" = enabled ] || { echo "$u not enabled"; en=1; }
    done >>"$tmp/fresh.log"
    [ $en -eq 0 ] && cmp -s "$rroot/etc/waagent.conf" config/waagent.conf && [ -s "$rroot/etc/logrotate.d/wala" ]
    result "rpm -i without WALinuxAgent: every unit enabled, default waagent.conf and logrotate in /etc" $? "$tmp/fresh.log"
    rpmr -e wala >"$tmp/erase2.log" 2>&1 && [ -z "$(unit_links)" ] && [ ! -e "$rroot/etc/waagent.conf" ]
    result "rpm -e again: no link left, the unchanged default waagent.conf removed" $? "$tmp/erase2.log"
else
    cat "$tmp/rroot.log" "$tmp/fake-wa/log" >"$tmp/rroot.all" 2>/dev/null
    fail "scratch root for rpm --root (tools, WALinuxAgent stand-in)" "$tmp/rroot.all"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
