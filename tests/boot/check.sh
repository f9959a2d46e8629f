#!/usr/bin/env bash
# Boot integration checks: make install into a temp tree, systemd-analyze verify of every unit
# (each on its own and the whole boot transaction, warnings count as failures, with a broken unit
# as a negative control), tmpfiles, logrotate, the SELinux relabel helper, shellcheck, an
# initramfs built with the dracut module (and its size), and the Debian package.
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
for f in usr/sbin/wala-provision usr/sbin/wala-agentd usr/lib/systemd/system/azure.slice \
    usr/lib/systemd/system/wala-provision-local.service usr/lib/systemd/system/wala-provision-network.service \
    usr/lib/systemd/system/wala-provision-keys.service usr/lib/systemd/system/wala-provision-pps.service \
    usr/lib/systemd/system/wala-provision-disk.service \
    usr/lib/systemd/system/wala-agentd.service usr/lib/systemd/system/wala-network-setup.service \
    usr/lib/tmpfiles.d/wala.conf usr/lib/dracut/modules.d/90wala/module-setup.sh \
    usr/lib/dracut/modules.d/90wala/wala-provision-initrd.service \
    usr/lib/dracut/modules.d/90wala/wala-initrd-relabel.sh etc/logrotate.d/wala etc/waagent.conf \
    usr/share/man/man8/wala-provision.8 usr/share/man/man8/wala-agentd.8 usr/share/man/man8/waagent.8; do
    [ -s "$dest/$f" ] || missing+=("$f")
done
[ "$(readlink "$dest/usr/sbin/waagent")" = wala-agentd ] || missing+=("usr/sbin/waagent -> wala-agentd")
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
shells=(tests/boot/check.sh tests/vm/*.sh packaging/build-deb.sh packaging/gen-man.sh dracut/modules.d/90wala/*.sh)
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
rm -f target/debian/wala_*.deb
if packaging/build-deb.sh >"$tmp/deb.log" 2>&1; then
    deb=$(ls target/debian/wala_*_"$(dpkg --print-architecture)".deb)
    pass "build-deb.sh produced $deb"
    dpkg-deb -c "$deb" >"$tmp/deb.list"
    for f in ./usr/sbin/wala-provision ./usr/sbin/wala-agentd "./usr/sbin/waagent -> wala-agentd" \
        ./lib/systemd/system/wala-provision-local.service ./lib/systemd/system/wala-agentd.service \
        ./lib/systemd/system/azure.slice ./usr/lib/dracut/modules.d/90wala/module-setup.sh \
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
    dpkg-deb -f "$deb" Depends | grep -q 'libc6'
    rc=$?
    result "deb Depends (dpkg-shlibdeps): $(dpkg-deb -f "$deb" Depends)" $rc
    ! dpkg-deb -I "$deb" conffiles >/dev/null 2>&1 && ! grep -q ' \./etc/' "$tmp/deb.list"
    result "deb has no conffiles and nothing under /etc (the admin's waagent.conf is never asked about)" $?
    dpkg-deb -I "$deb" preinst | grep -q 'dpkg-divert --package wala --no-rename'
    result "deb preinst diverts waagent's configuration files (no rename)" $?
    dpkg-deb -I "$deb" postinst | grep -q 'deb-systemd-helper enable'
    result "deb postinst enables the units" $?
else
    fail "build-deb.sh" "$tmp/deb.log"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
