#!/usr/bin/env bash
# Real extension handlers, unmodified, under wala in a VM (issue #17 item 1; docs/vm-test.md,
# "Real handlers"): Microsoft.OSTCExtensions.VMAccessForLinux and CustomScriptForLinux, the Python
# handlers of the public repository Azure/azure-linux-extensions, as zips packaged by that
# repository's own build. This project holds none of their code and no recipe that builds them:
# the zips are given on the command line, and without them nothing runs (the script says so and
# exits 2).
#
# The guest is the VM test's base image plus python3 and openssl (both in every Azure Debian
# image: waagent's package depends on them, and the handlers need them: Python for the code,
# `openssl cms -decrypt` for the protected settings), plus the freshly built wala package. The
# fabric serves the zips with their own HandlerManifest.json, and each sequence number's protected
# settings encrypted to the tenant certificate of the goal state, as the platform does
# (`POST /__fabric/protect`). Checked from inside the guest and at the fabric:
#   seq 0  VMAccess resets the provisioned user's SSH key (the old key is refused) and password;
#          CustomScript downloads a script from the fabric's blob endpoint and runs it (its
#          command is in the protected settings); both report success in the status blob
#   seq 1  new settings: VMAccess adds a new user with its own key and password, CustomScript
#          runs its new command; both report the new sequence number
#   then   both disabled ("Plugin disabled" reported), then uninstalled (their directories gone,
#          and they leave the status document)
# and that what the handlers read from the agent's side is where they read it
# (HandlerEnvironment.json, /var/lib/waagent/<thumbprint>.crt|.prv, ovf-env.xml, waagent.conf,
# /var/log/waagent.log).
#
# Usage: sudo tests/vm/handlers.sh VMACCESS_ZIP CUSTOMSCRIPT_ZIP
# Environment: as tests/vm/run.sh (WALA_VM_CACHE, WALA_VM_WORK, WALA_VM_KEEP, WALA_VM_MIRROR,
# WALA_VM_TRY_KVM). Prints PASS/FAIL lines and "N passed, M failed"; exits non-zero on any FAIL.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
repo=$(pwd)
here=$repo/tests/vm
tool=$here/vmtool.py
export WALA_VM_CACHE=${WALA_VM_CACHE:-/var/cache/wala-vm}

if [ "${1:-}" != --phase2 ]; then
    if [ $# -ne 2 ] || [ ! -f "$1" ] || [ ! -f "$2" ]; then
        echo "usage: $0 VMACCESS_ZIP CUSTOMSCRIPT_ZIP (handler zips from Azure/azure-linux-extensions, packaged by that repository's build); nothing was run" >&2
        exit 2
    fi
fi

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() {
    echo "FAIL $1"
    failed=$((failed + 1))
    if [ -n "${2:-}" ] && [ -s "$2" ]; then tail -30 "$2" | sed 's/^/    /'; fi
}
result() { if [ "$2" -eq 0 ]; then pass "$1"; else fail "$1" "${3:-}"; fi; }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
# shellcheck source=tests/vm/lib.sh
. "$here/lib.sh"

# ------------------------------------------------------------------------------------------------
# Phase 2 (inside `unshare --net`): the boot and the checks.
phase2() {
    work=$WALA_VM_WORKDIR
    d=$work/boot
    mkdir -p "$d"
    vm_accel "$work/vmlinuz" "$work"
    echo "accelerator: $accel_name"
    ssh_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    ssh_opts=(-p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes
        -o ConnectTimeout=20 -o LogLevel=ERROR)
    "$WALA_VM_FABRIC" --scenario "$work/scenario" --advertise-platform-addresses --ports-file "$d/ports.json" \
        --record "$d/record.jsonl" >"$d/fabric.out" 2>"$d/fabric.err" &
    fab_pid=$!
    for _ in $(seq 100); do [ -s "$d/ports.json" ] && break; sleep 0.05; done
    read -r wire hgap imds < <(python3 "$tool" ports "$d/ports.json")
    wire_port=${wire##*:}
    t0=$(date +%s.%N)
    vm_qemu "$d" "$work/vmlinuz" "$work/initrd.img" "$work/root.raw" on "$work/dvd.iso" "$work/res.raw" \
        "$(python3 -c 'import uuid; print(uuid.uuid4())')" "$(vm_netdev "$ssh_port" "$wire" "$hgap" "$imds")" &
    qemu_pid=$!
    # shellcheck disable=SC2317 # called through the EXIT trap
    stop() { kill "$qemu_pid" "$fab_pid" 2>/dev/null; }
    trap stop EXIT
    if banner=$(python3 "$tool" banner "$ssh_port" 300 "$t0"); then
        pass "boots to sshd (banner after $banner s)"
    else
        fail "boots to sshd within 300 s" "$d/serial.log"
        return
    fi
    rssh() { ssh "${ssh_opts[@]}" -i "$work/keys/root" root@127.0.0.1 "$@"; }
    # as KEY USER CMD...: ssh as USER with KEY (a file in $work/keys)
    as() {
        local key=$1 who=$2
        shift 2
        ssh "${ssh_opts[@]}" -i "$work/keys/$key" "$who@127.0.0.1" "$@"
    }
    # until_ok SECONDS CMD...: CMD succeeds within SECONDS (tried every second)
    until_ok() {
        local end=$((SECONDS + $1))
        shift
        while [ $SECONDS -lt $end ]; do
            "$@" >/dev/null 2>&1 && return 0
            sleep 1
        done
        return 1
    }
    until_ok 180 as user azureuser true
    result "the provisioned user logs in with the OVF key" $?
    # password_is USER FILE: USER's hash in the guest's /etc/shadow is that of the password in FILE
    # (given on stdin, never on a command line; checked with the guest's libcrypt)
    password_is() {
        local code='import ctypes, sys
pw = sys.stdin.read().strip().encode()
h = [l.split(":")[1] for l in open("/etc/shadow") if l.split(":")[0] == sys.argv[1]][0]
crypt = ctypes.CDLL("libcrypt.so.1").crypt
crypt.restype = ctypes.c_char_p
sys.exit(0 if h.startswith("$") and crypt(pw, h.encode()) == h.encode() else 1)'
        rssh "python3 -c '$code' $1" <"$2"
    }
    fabric() { python3 "$here/handlers.py" fabric "http://127.0.0.1:$wire_port" "$@"; }
    thumb=$(fabric thumbprint)
    until_ok 120 rssh test -s "/var/lib/waagent/$thumb.prv" -a -s "/var/lib/waagent/$thumb.crt"
    result "the tenant certificate's $thumb.crt and .prv are in /var/lib/waagent" $?
    rssh "ls -l /var/lib/waagent/*.crt /var/lib/waagent/*.prv /var/lib/waagent/ovf-env.xml" >"$d/libdir.txt" 2>&1
    # status SEQ|disabled|gone TIMEOUT: the status blob shows both handlers so
    status() {
        python3 "$here/handlers.py" status "http://127.0.0.1:$wire_port" "$work/handlers.json" "$1" "$2" \
            >"$d/status-$1.txt" 2>&1
    }

    # --- sequence number 0 -------------------------------------------------------------------
    fabric apply "$work/handlers.json" 0 enabled >"$d/apply-0.txt" 2>&1
    result "the fabric serves both handlers with seq 0 settings (protected settings encrypted)" $? "$d/apply-0.txt"
    status 0 600
    result "both handlers report success for seq 0 in the status blob" $? "$d/status-0.txt"
    # VMAccess restarts sshd on every enable: the new key is tried until sshd answers again, and the
    # old key must then be refused by sshd itself (not by a closed port).
    until_ok 60 as user2 azureuser true
    result "VMAccess reset the provisioned user's key: the new key logs in" $?
    as user azureuser true 2>"$d/old-key.err"
    [ $? -eq 255 ] && grep -q 'Permission denied' "$d/old-key.err"
    result "VMAccess reset the provisioned user's key: the OVF key is refused (prior keys removed)" $? "$d/old-key.err"
    password_is azureuser "$work/keys/password-0" >"$d/pw-0.txt" 2>&1
    result "VMAccess set the provisioned user's password (checked against /etc/shadow)" $? "$d/pw-0.txt"
    rssh cat /var/tmp/wala-customscript.out >"$d/cse-0.txt" 2>&1 && grep -qx 'customscript seq 0 ran as root' "$d/cse-0.txt"
    result "CustomScript downloaded the script from the fabric and ran its protected command" $? "$d/cse-0.txt"

    # --- sequence number 1: new settings ------------------------------------------------------
    fabric apply "$work/handlers.json" 1 enabled >"$d/apply-1.txt" 2>&1
    result "the fabric serves seq 1 settings" $? "$d/apply-1.txt"
    status 1 600
    result "both handlers report success for seq 1" $? "$d/status-1.txt"
    until_ok 60 as user3 vmaccessuser true
    result "VMAccess added a new user who logs in with their own key" $?
    password_is vmaccessuser "$work/keys/password-1" >"$d/pw-1.txt" 2>&1
    result "the new user's password is set" $? "$d/pw-1.txt"
    rssh cat /var/tmp/wala-customscript.out >"$d/cse-1.txt" 2>&1 && grep -qx 'customscript seq 1 ran as root' "$d/cse-1.txt"
    result "CustomScript ran its new command" $? "$d/cse-1.txt"

    # --- what the handlers read from the agent's side -----------------------------------------
    # shellcheck disable=SC2016 # expanded by the guest's shell
    rssh 'cd /var/lib/waagent && for h in Microsoft.OSTCExtensions.*; do echo "== $h"; cat "$h/HandlerEnvironment.json"; echo; ls "$h/config" "$h/status"; done' \
        >"$d/agent-side.txt" 2>&1
    # shellcheck disable=SC2016 # expanded by the guest's shell
    [ "$(grep -c '"handlerEnvironment"' "$d/agent-side.txt")" -eq 2 ] &&
        rssh 'for h in /var/lib/waagent/Microsoft.OSTCExtensions.*/; do test -s "$h/status/1.status" || exit 1; done'
    result "HandlerEnvironment.json in each handler directory; the handlers wrote their status where it names" $? "$d/agent-side.txt"
    # Both log through waagent's log file as they would under waagent ("<name> started to handle."
    # is their own line, not the agent's).
    rssh cat /var/log/waagent.log >"$d/waagent.log" 2>&1
    grep -q 'VMAccess started to handle' "$d/waagent.log" && grep -q 'CustomScriptForLinux started to handle' "$d/waagent.log"
    result "both handlers logged to /var/log/waagent.log" $? "$d/waagent.log"
    rssh journalctl -b --no-pager -u wala-agentd.service >"$d/agentd.journal" 2>&1

    # --- disable, then uninstall ---------------------------------------------------------------
    fabric apply "$work/handlers.json" 1 disabled >"$d/apply-disabled.txt" 2>&1
    status disabled 300
    result "both handlers disabled (NotReady, Plugin disabled)" $? "$d/status-disabled.txt"
    fabric apply "$work/handlers.json" 1 uninstall >"$d/apply-uninstall.txt" 2>&1
    status gone 300
    result "both handlers uninstalled: they left the status document" $? "$d/status-gone.txt"
    # shellcheck disable=SC2016 # expanded by the guest's shell
    rssh 'ls -d /var/lib/waagent/Microsoft.OSTCExtensions.* 2>/dev/null; true' >"$d/dirs-left.txt" 2>&1
    [ ! -s "$d/dirs-left.txt" ]
    result "their directories are removed" $? "$d/dirs-left.txt"
    rssh journalctl -b --no-pager -u wala-agentd.service >"$d/agentd.journal" 2>&1
}

if [ "${1:-}" = --phase2 ]; then
    phase2
    finish
fi

# ------------------------------------------------------------------------------------------------
# Phase 1: package, fabric, image, DVD, scenario.
vmaccess_zip=$(realpath "$1")
customscript_zip=$(realpath "$2")
if [ "$(id -u)" -ne 0 ]; then
    fail "the VM test needs root (chroot, mkfs)"
    finish
fi
if ! vm_install_tools /tmp/wala-vm-apt.log; then
    fail "tools: apt-get install" /tmp/wala-vm-apt.log
    finish
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
work=$(mktemp -d "${WALA_VM_WORK:-/var/tmp}/wala-handlers.XXXXXX")
echo "work directory: $work"
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
    if [ "${WALA_VM_KEEP:-}" = 1 ] || [ "$failed" -gt 0 ]; then echo "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
if make --no-print-directory deb >"$work/build.log" 2>&1 &&
    cargo build --release --locked -p wala-fabric >>"$work/build.log" 2>&1; then
    deb=$repo/$(sed -n 's/^build-deb: //p' "$work/build.log" | tail -1)
    pass "make deb ($(basename "$deb")) and wala-fabric"
else
    fail "make deb, wala-fabric" "$work/build.log"
    finish
fi
if ! base=$("$here/image.sh"); then
    fail "base image (tests/vm/image.sh)"
    finish
fi
if ptree=$(vm_tree_plus "$base" handlers python3 openssl 2>"$work/tree.log"); then
    pass "image tree: the base plus python3 and openssl (cached: $(basename "$(dirname "$ptree")"))"
else
    fail "image tree: apt-get install python3 openssl" "$work/tree.log"
    finish
fi
tree=$work/tree
cp -a --reflink=auto "$ptree" "$tree"
cp "$deb" "$tree/tmp/wala.deb"
if vm_apt_install "$tree" "$work/dpkg.log" /tmp/wala.deb; then
    pass "the package installs into the image"
else
    fail "the package installs into the image" "$work/dpkg.log"
    finish
fi
rm -f "$tree/tmp/wala.deb"
for kv in Provisioning.Agent=waagent ResourceDisk.Format=n Logs.Verbose=y Wala.WireServer=168.63.129.16; do
    vm_set_conf "$tree/etc/waagent.conf" "${kv%%=*}" "${kv#*=}"
done
mkdir -p "$work/keys"
for k in user user2 user3 root; do ssh-keygen -q -t ed25519 -N '' -C "wala-handlers-$k" -f "$work/keys/$k"; done
for n in 0 1; do python3 -c 'import secrets; print("Vm-" + secrets.token_urlsafe(12))' >"$work/keys/password-$n"; done
chmod 600 "$work"/keys/password-*
install -d -m 0700 "$tree/root/.ssh"
install -m 0600 "$work/keys/root.pub" "$tree/root/.ssh/authorized_keys"
for m in "$tree"/lib/modules/*/; do kver=$(basename "$m"); done
cp "$tree/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$tree/boot/initrd.img-$kver" "$work/initrd.img"
if mkfs.ext4 -q -F -L wala-root -d "$tree" "$work/root.raw" 3G >"$work/mkfs.log" 2>&1; then
    pass "root image"
else
    fail "root image (mkfs.ext4 -d)" "$work/mkfs.log"
    finish
fi
rm -rf "$tree"
if resource=$(vm_resource_disk "$work"); then cp --sparse=always "$resource" "$work/res.raw"; else
    fail "resource disk template" "$work/resource.log"
    finish
fi
if vm_make_dvd "$work/dvd.iso" "$work/dvd" wala-vm-handlers azureuser "" true "" "$work/keys/user.pub"; then
    pass "provisioning DVD"
else
    fail "provisioning DVD" "$work/genisoimage.log"
    finish
fi
# The scenario: the built-in documents, no vmSettings (the WireServer's ExtensionsConfig carries
# the handlers), one certificate, the two zips and a script for CustomScript to download.
if python3 "$here/handlers.py" scenario "$repo/fabric/scenario" "$work/scenario" "$work/handlers.json" \
    "$vmaccess_zip" "$customscript_zip" "$work/keys" >"$work/scenario.log" 2>&1; then
    pass "fabric scenario with both handlers ($(python3 -c 'import json,sys; print(", ".join(h["name"] + " " + h["version"] for h in json.load(open(sys.argv[1]))["handlers"]))' "$work/handlers.json"))"
else
    fail "fabric scenario" "$work/scenario.log"
    finish
fi

export WALA_VM_WORKDIR=$work WALA_VM_FABRIC=$CARGO_TARGET_DIR/release/wala-fabric
out=$work/phase2.out
if unshare --net true 2>/dev/null; then
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --net -- sh -c 'ip link set lo up && exec "$0" --phase2' "$0" 2>&1 | tee "$out"
else
    echo "NOTE: unshare --net is not permitted here: relying on slirp restrict=on alone"
    "$0" --phase2 2>&1 | tee "$out"
fi
passed=$((passed + $(grep -c '^PASS ' "$out")))
failed=$((failed + $(grep -c '^FAIL ' "$out")))
grep -q ' passed, ' "$out" || fail "phase 2 did not finish"
finish
