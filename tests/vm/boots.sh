#!/usr/bin/env bash
# Phase 2 of the VM test (started by tests/vm/run.sh, inside `unshare --net` where it can): boots
# the prepared image under qemu against wala-fabric and checks what wala did. Prints PASS/FAIL/
# PENDING lines, a table of figures, and "BOOTS DONE" at the end; run.sh counts the lines.
# The slirp gateway is set explicitly (host=168.0.0.2, which the image's static routes use: with
# net=168.0.0.0/7 alone it would be 168.0.2.2). Every address used here is loopback (the guest's platform addresses are slirp guestfwd relays to
# the fabric's loopback listeners).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$WALA_VM_WORKDIR
user=$WALA_VM_USER
tool=$here/vmtool.py

pass() { echo "PASS $1"; }
fail() {
    echo "FAIL $1"
    if [ -n "${2:-}" ] && [ -s "$2" ]; then tail -25 "$2" | sed 's/^/    /'; fi
}
pending() { echo "PENDING $1"; }
# result NAME STATUS [LOG]
result() { if [ "$2" -eq 0 ]; then pass "$1"; else fail "$1" "${3:-}"; fi; }

# The accelerator: KVM only when it can actually run a guest (tests/vm/lib.sh).
# shellcheck source=tests/vm/lib.sh
. "$here/lib.sh"
vm_accel "$work/vmlinuz" "$work"
echo "accelerator: $accel_name"

ssh_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ssh_opts=(-p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes
    -o ConnectTimeout=20 -o LogLevel=ERROR)
# ssh_retry ARGS...: ssh, tried again (up to 10 times, 0.5 s apart) when the connection itself
# failed: wala reloads sshd once on a first boot, after the RSA host key is made, and sshd's
# re-exec on SIGHUP leaves port 22 closed for about half a second under TCG (docs/provisioning.md,
# host-keys stage); the checks fail fast, so a run of them could all fall into that window. A
# refused login (authentication) is not retried.
ssh_retry() {
    local err rc
    err=$(mktemp)
    for _ in $(seq 10); do
        ssh "$@" 2>"$err"
        rc=$?
        if [ $rc -ne 255 ] || ! grep -qE 'kex_exchange_identification|Connection (refused|reset|closed)' "$err"; then
            break
        fi
        echo "ssh: connection failed ($(head -1 "$err")); trying again" >>"$work/ssh-retries.log"
        sleep 0.5
    done
    cat "$err" >&2
    rm -f "$err"
    return $rc
}
rssh() { ssh_retry "${ssh_opts[@]}" -i "$work/keys/root" root@127.0.0.1 "$@"; }
ussh() { ssh_retry "${ssh_opts[@]}" -i "$work/keys/user" "$user@127.0.0.1" "$@"; }

fab_pid=""
qemu_pid=""
stop_all() {
    [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null
    [ -n "$fab_pid" ] && kill "$fab_pid" 2>/dev/null
    qemu_pid=""
    fab_pid=""
}
trap stop_all EXIT

# wanted NAME: whether a scenario runs; WALA_VM_SCENARIOS (space-separated boot names) picks some
# for a quicker local run (a scenario that builds on another's disk needs that one too). Unset in CI:
# every scenario runs.
wanted() { [ -z "${WALA_VM_SCENARIOS:-}" ] || [[ " $WALA_VM_SCENARIOS " == *" $1 "* ]]; }

# boot NAME ROOT SNAPSHOT(on|off) ISO RESOURCE UUID INITRD [EXTRA_APPEND]
# Starts a fresh fabric and the VM, waits for the SSH banner. Sets t0, ssh_at (or empty), d.
boot() {
    local name=$1 root=$2 snap=$3 iso=$4 res=$5 uuid=$6 initrd=$7 append=${8:-}
    d=$work/$name
    if ! wanted "$name"; then
        echo "NOT RUN $name (not in WALA_VM_SCENARIOS=$WALA_VM_SCENARIOS)"
        ssh_at=""
        return
    fi
    mkdir -p "$d"
    rm -f "$d/ports.json"
    fab_t0=$(date +%s.%N)
    "$WALA_VM_FABRIC" --advertise-platform-addresses --ports-file "$d/ports.json" --record "$d/record.jsonl" \
        >"$d/fabric.out" 2>"$d/fabric.err" &
    fab_pid=$!
    for _ in $(seq 100); do [ -s "$d/ports.json" ] && break; sleep 0.05; done
    local wire hgap imds
    read -r wire hgap imds < <(python3 "$tool" ports "$d/ports.json")
    t0=$(date +%s.%N)
    vm_qemu "$d" "$work/vmlinuz" "$initrd" "$root" "$snap" "$iso" "$res" "$uuid" \
        "$(vm_netdev "$ssh_port" "$wire" "$hgap" "$imds")" "$append" &
    qemu_pid=$!
    ssh_at=$(python3 "$tool" banner "$ssh_port" 300 "$t0") || ssh_at=""
    if [ -n "$ssh_at" ]; then
        pass "$name: boots to sshd (banner after $ssh_at s)"
    else
        fail "$name: boots to sshd within 300 s" "$d/serial.log"
        cat "$d/qemu.out"
    fi
}

# Fabric figures and the Health reports; then stop the fabric. Sets wire_at, ready_at.
collect_fabric() {
    python3 "$tool" get "http://127.0.0.1:$(python3 "$tool" ports "$d/ports.json" | cut -d' ' -f1)/__fabric/health" \
        >"$d/health.json" 2>"$d/health.err" || echo '[]' >"$d/health.json"
    read -r wire_at ready_at < <(python3 "$tool" times "$d/record.jsonl" "$fab_t0" "$t0")
}

# fabric_reports NAME WHAT EXPECTATION...: the Health reports the fabric received match
# EXPECTATION (vmtool.py health: `ready`, or `failed WORD`); a check that needs the network stage.
fabric_reports() {
    local name=$1 what=$2 rc
    shift 2
    python3 "$tool" health "$d/health.json" "$@" >"$d/health.check" 2>&1
    rc=$?
    gated "$name: fabric got $what ($(head -1 "$d/health.check"))" "$rc" "$d/health.check"
}

shutdown_vm() {
    rssh systemctl poweroff >/dev/null 2>&1
    for _ in $(seq 240); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$qemu_pid" 2>/dev/null; then
        fail "$(basename "$d"): powers off within 120 s"
        kill "$qemu_pid"
    fi
    wait "$qemu_pid" 2>/dev/null
    kill "$fab_pid" 2>/dev/null
    wait "$fab_pid" 2>/dev/null
    qemu_pid=""
    fab_pid=""
}

# network_pending: the network stage exited 4 with "not built yet" in this boot's journal.
network_pending() {
    rssh journalctl -b --no-pager -u wala-provision-network.service >"$d/network.journal" 2>&1
    local status
    status=$(rssh systemctl show -p ExecMainStatus --value wala-provision-network.service 2>/dev/null)
    [ "$status" = 4 ] && grep -q 'not built yet' "$d/network.journal"
}

# gated NAME STATUS [LOG]: a check that needs the network stage. Evaluated always; when it fails
# only because the network stage is not built (detected above), it is PENDING, not FAIL.
gated() {
    if [ "$2" -eq 0 ]; then
        pass "$1"
    elif [ "$net_pending" = 1 ]; then
        pending "$1 (network stage not built)"
    else
        fail "$1" "${3:-}"
    fi
}

check_pending_line() {
    net_pending=0
    if network_pending; then
        net_pending=1
        echo "PENDING: network stage not built (exit 4 from wala-provision --stage network)"
    fi
}

# The provisioning checks shared by the first boot of every good OVF. $1 = expected hostname.
check_provisioned() {
    local name=$1 host=$2 out
    ussh true >"$d/ussh.log" 2>&1
    result "$name: ssh login as $user with the OVF key" $? "$d/ussh.log"
    ussh sudo -n true >"$d/sudo.log" 2>&1
    result "$name: sudo -n true works for the no-password user" $? "$d/sudo.log"
    out=$(rssh sshd -T 2>/dev/null | grep -i '^passwordauthentication')
    [ "$out" = "passwordauthentication no" ]
    result "$name: sshd -T says password login off as the OVF asked ($out)" $?
    out="$(rssh 'hostname; cat /etc/hostname' 2>/dev/null | paste -sd' ')"
    [ "$out" = "$host $host" ]
    result "$name: hostname $host live and in /etc/hostname (got: $out)" $?
    rssh "grep -qF '$(cut -d' ' -f2 "$work/keys/user.pub")' /home/$user/.ssh/authorized_keys"
    result "$name: authorized_keys holds the OVF key" $?
    check_custom_data "$name"
    check_hostname_before_dhcp "$name"
    check_resource_disk "$name"
    check_agentd "$name"
    check_boot_report "$name"
}

# check_boot_report NAME: `wala-agentd boot-report` in the guest shows the local stage (from the
# initramfs for dracut), the network stage's wait for its route and its Ready report, and when
# sshd became ready; prints the step times of useradd and the sudoers check.
check_boot_report() {
    local name=$1 lane=local
    [ "$name" = dracut ] && lane=local-initrd
    rssh wala-agentd boot-report >"$d/boot-report.txt" 2>&1
    grep -qE "[[:space:]]${lane}[[:space:]]+stage[[:space:]]+ok[[:space:]]" "$d/boot-report.txt" &&
        grep -qE "wait\*[[:space:]]+ok[[:space:]]+route-to-wireserver" "$d/boot-report.txt" &&
        grep -qE "wait\*[[:space:]]+ok[[:space:]]+report-ready" "$d/boot-report.txt" &&
        grep -q 'sshd ready' "$d/boot-report.txt"
    result "$name: boot-report shows the $lane stage, the route wait, Ready and sshd ready" $? "$d/boot-report.txt"
    echo "$name: boot-report step times (s): $(awk '$5 == "step" && ($NF == "user" || $NF == "sudoers" || $NF == "host-keys" || $NF == "ovf") { printf "%s %s  ", $NF, $3 }' "$d/boot-report.txt")"
}

check_custom_data() {
    local got want
    want=$(printf '%s' "$WALA_VM_CUSTOM_DATA" | base64 -w0)
    got=$(rssh cat /var/lib/waagent/CustomData 2>/dev/null)
    # Saved as given (base64, Provisioning.DecodeCustomData=n) or decoded.
    [ "$got" = "$want" ] || [ "$got" = "$WALA_VM_CUSTOM_DATA" ]
    result "$1: CustomData saved in /var/lib/waagent/CustomData" $?
}

# The hostname must be set before the first DHCP request: wala-provision-local finished before
# systemd started systemd-networkd (the DHCP client), from the journal's monotonic timestamps.
check_hostname_before_dhcp() {
    rssh journalctl -b -o short-monotonic --no-pager >"$d/journal.txt" 2>&1
    local t_local t_netd t_lease
    t_local=$(grep -m1 'Finished wala-provision-local.service' "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    t_netd=$(grep -m1 'Starting systemd-networkd.service' "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    t_lease=$(grep -m1 'DHCPv4 address' "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    if [ -n "$t_local" ] && [ -n "$t_netd" ] && python3 -c "import sys; sys.exit(0 if $t_local < $t_netd else 1)"; then
        pass "$1: hostname set before DHCP (local stage done at ${t_local}s, networkd started at ${t_netd}s, lease at ${t_lease:-?}s)"
    else
        fail "$1: hostname set before DHCP (local stage done at '${t_local}', networkd started at '${t_netd}')" "$d/journal.txt"
    fi
}

check_resource_disk() {
    local fs swap
    # What the guest saw, shown when a check fails: the udev links and wala's disk log lines.
    rssh 'ls -l /dev/disk/azure/; journalctl -b -o short-monotonic --no-pager | grep -E "sda|wala-provision.*(resource|disk|swap)"' \
        >"$d/disk.diag" 2>&1
    fs=$(rssh findmnt -n -o SOURCE,FSTYPE /mnt/resource 2>/dev/null)
    [[ "$fs" == /dev/sd*1\ ext4 ]]
    result "$1: resource disk mounted at /mnt/resource ($fs)" $? "$d/disk.diag"
    swap=$(rssh swapon --noheadings --show=NAME,SIZE 2>/dev/null | paste -sd' ')
    [[ "$swap" == /mnt/resource/* ]]
    result "$1: swap active on the resource disk ($swap)" $?
}

check_agentd() {
    local state
    state=$(rssh systemctl is-active wala-agentd.service 2>/dev/null)
    [ "$state" = active ]
    result "$1: wala-agentd is running (systemctl is-active: $state)" $?
    # The daemon's status document, as the simulator stored it (through the HostGAPlugin).
    local wire_port ok=1
    wire_port=$(python3 "$tool" ports "$d/ports.json" | cut -d' ' -f1)
    for _ in $(seq 60); do
        if python3 "$tool" get "http://127.0.0.1:$wire_port/__fabric/blob" >"$d/status.json" 2>"$d/status.err" &&
            grep -q '"guestAgentStatus"' "$d/status.json" && grep -q '"status":"Ready"' "$d/status.json"; then
            ok=0
            break
        fi
        sleep 0.5
    done
    result "$1: wala-agentd posted its status (guestAgentStatus Ready in the status blob)" $ok "$d/status.json"
}

# marker_is UUID: /var/lib/waagent/provisioned names this VM (case and byte order aside).
marker_is() {
    local m
    m=$(rssh cat /var/lib/waagent/provisioned 2>/dev/null | tr 'A-F' 'a-f')
    [ -n "$m" ] && python3 - "$m" "$1" <<'EOF'
import sys, uuid
m, want = sys.argv[1].strip(), uuid.UUID(sys.argv[2])
try:
    got = uuid.UUID(m)
except ValueError:
    sys.exit(1)
sys.exit(0 if got in (want, uuid.UUID(bytes_le=want.bytes)) else 1)
EOF
}

local_journal() {
    rssh journalctl -b --no-pager -u wala-provision-local.service >"$d/local.journal" 2>&1
}

rows=()
row() { rows+=("$(printf '%-22s %12s %10s %12s %10s' "$1" "${2:--}" "${3:--}" "${4:--}" "${5:--}")"); }

uuid1=$(python3 -c 'import uuid; print(uuid.uuid4())')
uuid2=$(python3 -c 'import uuid; print(uuid.uuid4())')
uuid3=$(python3 -c 'import uuid; print(uuid.uuid4())')
uuid4=$(python3 -c 'import uuid; print(uuid.uuid4())')
uuid5=$(python3 -c 'import uuid; print(uuid.uuid4())')

# === 1. No password, SSH key, custom data: first boot on a persistent copy of the root ===========
cp --sparse=always "$work/root.raw" "$work/root-persistent.raw"
cp --sparse=always "$WALA_VM_RESOURCE" "$work/res1.raw"
boot first-boot "$work/root-persistent.raw" off "$work/nopw.iso" "$work/res1.raw" "$uuid1" "$work/initrd.img"
if [ -n "$ssh_at" ]; then
    check_pending_line
    check_provisioned first-boot "$WALA_VM_HOST1"
    collect_fabric
    fabric_reports first-boot "NotReady/Provisioning then Ready, in order, nothing else" ready
    # RSS one minute after boot (guest uptime).
    up=$(rssh "cut -d' ' -f1 /proc/uptime" 2>/dev/null)
    up=${up%.*}
    [ -n "$up" ] && [ "$up" -lt 60 ] && sleep $((60 - up))
    rss=$(rssh ps -o rss= -C wala-agentd 2>/dev/null | awk '{s+=$1} END {if (NR) print s}')
    echo "wala-agentd RSS one minute after boot: ${rss:-?} KiB"
    row "first boot" "$wire_at" "$ready_at" "$ssh_at" "${rss:+$rss KiB}"
    shutdown_vm
else
    stop_all
fi

# === 2. Reboot: the same disk and VM id: no second provisioning ================================
boot reboot "$work/root-persistent.raw" off "$work/nopw.iso" "$work/res1.raw" "$uuid1" "$work/initrd.img"
if [ -n "$ssh_at" ]; then
    check_pending_line
    local_journal
    grep -qiE 'Provisioning skipped: .*already' "$d/local.journal"
    rc=$?
    result "reboot: no second provisioning (journal: $(grep -m1 -o 'Provisioning skipped: .*' "$d/local.journal"))" "$rc" "$d/local.journal"
    ! grep -q 'VM id changed' "$d/local.journal"
    result "reboot: the VM id is recognised as unchanged" $? "$d/local.journal"
    marker_is "$uuid1"
    gated "reboot: the marker /var/lib/waagent/provisioned holds the VM id" $?
    ussh true >/dev/null 2>&1
    result "reboot: $user still logs in" $?
    check_resource_disk reboot
    collect_fabric
    row "reboot" "$wire_at" "$ready_at" "$ssh_at"
    shutdown_vm
else
    stop_all
fi

# === 3. A new VM id on the same disk: provisions again ==========================================
cp --sparse=always "$WALA_VM_RESOURCE" "$work/res2.raw"
boot new-vm-id "$work/root-persistent.raw" off "$work/newid.iso" "$work/res2.raw" "$uuid2" "$work/initrd.img"
if [ -n "$ssh_at" ]; then
    check_pending_line
    local_journal
    ! grep -q 'Provisioning skipped' "$d/local.journal" && grep -q 'VM id changed' "$d/local.journal"
    rc=$?
    result "new-vm-id: provisions again (journal: $(grep -m1 -o 'the VM id changed.*' "$d/local.journal"))" "$rc" "$d/local.journal"
    out="$(rssh 'hostname; cat /etc/hostname' 2>/dev/null | paste -sd' ')"
    [ "$out" = "$WALA_VM_HOST2 $WALA_VM_HOST2" ]
    result "new-vm-id: the new OVF's hostname $WALA_VM_HOST2 is set (got: $out)" $?
    check_resource_disk new-vm-id
    marker_is "$uuid2"
    gated "new-vm-id: the marker holds the new VM id" $?
    collect_fabric
    fabric_reports new-vm-id "NotReady/Provisioning then Ready" ready
    row "new VM id" "$wire_at" "$ready_at" "$ssh_at"
    shutdown_vm
else
    stop_all
fi

# === 4. Password user, password login on (snapshot: the image stays clean) ======================
cp --sparse=always "$WALA_VM_RESOURCE" "$work/res3.raw"
boot password "$work/root.raw" on "$work/password.iso" "$work/res3.raw" "$uuid3" "$work/initrd.img"
if [ -n "$ssh_at" ]; then
    check_pending_line
    ussh true >"$d/ussh.log" 2>&1
    result "password: ssh login as $user with the OVF key" $? "$d/ussh.log"
    out=$(rssh sshd -T 2>/dev/null | grep -i '^passwordauthentication')
    [ "$out" = "passwordauthentication yes" ]
    result "password: sshd -T says password login on as the OVF asked ($out)" $?
    # Password login through ssh's askpass (no sshpass needed); the password is read from a file.
    printf '#!/bin/sh\ncat %q\n' "$work/keys/password" >"$work/keys/askpass"
    chmod 700 "$work/keys/askpass"
    SSH_ASKPASS=$work/keys/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=none setsid -w ssh "${ssh_opts[@]/BatchMode=yes/BatchMode=no}" \
        -o PreferredAuthentications=password -o PubkeyAuthentication=no "$user@127.0.0.1" true </dev/null >"$d/pwlogin.log" 2>&1
    result "password: login with the OVF password works" $? "$d/pwlogin.log"
    ! ussh sudo -n true >/dev/null 2>&1
    result "password: sudo asks for the password (sudo -n fails)" $?
    ussh "sudo -S -p '' true" <"$work/keys/password" >"$d/sudo.log" 2>&1
    result "password: sudo with the password works" $? "$d/sudo.log"
    rssh "! grep -rqF '$(cat "$work/keys/password")' /var/lib/waagent /var/log /etc/ssh 2>/dev/null"
    result "password: the password is not stored in clear under /var/lib/waagent, /var/log, /etc/ssh" $?
    collect_fabric
    fabric_reports password "NotReady/Provisioning then Ready" ready
    row "password" "$wire_at" "$ready_at" "$ssh_at"
    shutdown_vm
else
    stop_all
fi

# === 5. A broken OVF (no HostName): ProvisioningFailed naming it; the VM still boots to sshd ======
cp --sparse=always "$WALA_VM_RESOURCE" "$work/res4.raw"
boot broken-ovf "$work/root.raw" on "$work/broken.iso" "$work/res4.raw" "$uuid4" "$work/initrd.img"
if [ -n "$ssh_at" ]; then
    check_pending_line
    local_journal
    grep -q 'HostName' "$d/local.journal"
    result "broken-ovf: the local stage names the problem (HostName) in the journal" $? "$d/local.journal"
    ! rssh id "$user" >/dev/null 2>&1
    result "broken-ovf: no user was created" $?
    collect_fabric
    fabric_reports broken-ovf "ProvisioningFailed naming HostName, nothing after" failed HostName
    row "broken OVF" "$wire_at" "$ready_at" "$ssh_at"
    shutdown_vm
else
    stop_all
fi

# === 6. The dracut variant: the local stage runs in the initramfs ================================
if [ -s "$work/initrd-dracut.img" ]; then
    cp --sparse=always "$WALA_VM_RESOURCE" "$work/res5.raw"
    boot dracut "$work/root.raw" on "$work/dracut.iso" "$work/res5.raw" "$uuid5" "$work/initrd-dracut.img"
    if [ -n "$ssh_at" ]; then
        check_pending_line
        rssh journalctl -b --no-pager -u wala-provision-initrd.service >"$d/initrd.journal" 2>&1
        grep -q 'Finished wala-provision-initrd.service' "$d/initrd.journal" ||
            rssh journalctl -b --no-pager -o short-monotonic | grep -q 'Finished wala-provision-initrd.service'
        result "dracut: wala-provision-initrd.service ran and succeeded in the initramfs" $? "$d/initrd.journal"
        local_journal
        grep -q 'Provisioning skipped: the local stage already ran' "$d/local.journal"
        rc=$?
        result "dracut: the real-root local stage did not redo it ($(grep -m1 -o 'Provisioning skipped: .*' "$d/local.journal"))" "$rc" "$d/local.journal"
        check_provisioned dracut "$WALA_VM_HOST4"
        collect_fabric
        fabric_reports dracut "NotReady/Provisioning then Ready" ready
        row "dracut" "$wire_at" "$ready_at" "$ssh_at"
        shutdown_vm
    else
        stop_all
    fi
else
    fail "dracut: no initramfs was built (see the preparation's FAIL line)"
fi

# === 8. JIT remote access: the fabric lists a user; wala-agentd creates it, then removes it =========
# (snapshot: the image stays clean; the password OVF leaves sshd's password login on, so the JIT
# user's decrypted password is tried for real: ssh login and sudo with it.)
# fabric_call METHOD PATH [BODY_FILE]: a control request to this boot's fabric (loopback only).
fabric_call() {
    local wire_port
    wire_port=$(python3 "$tool" ports "$d/ports.json" | cut -d' ' -f1)
    python3 -c 'import sys, urllib.request as u
body = open(sys.argv[3], "rb").read() if len(sys.argv) > 3 else (b"" if sys.argv[2] != "DELETE" else None)
u.urlopen(u.Request(sys.argv[1], data=body, method=sys.argv[2]), timeout=10).read()' \
        "http://127.0.0.1:$wire_port$2" "$1" "${@:3}"
}
cp --sparse=always "$WALA_VM_RESOURCE" "$work/res8.raw"
uuid8=$(python3 -c 'import uuid; print(uuid.uuid4())')
boot jit-access "$work/root.raw" on "$work/password.iso" "$work/res8.raw" "$uuid8" "$work/initrd.img"
if [ -n "$ssh_at" ]; then
    check_pending_line
    # A random password per run, kept in a file (never on a command line of the guest).
    python3 -c 'import secrets; print("J1t-" + secrets.token_urlsafe(12))' >"$work/keys/jit-password"
    printf '#!/bin/sh\ncat %q\n' "$work/keys/jit-password" >"$work/keys/jit-askpass"
    chmod 700 "$work/keys/jit-askpass"
    python3 -c 'import json, sys; print(json.dumps([{"name": "jituser", "password": open(sys.argv[1]).read().strip(), "expires_in_secs": 7200}]))' \
        "$work/keys/jit-password" >"$d/remote-access.json"
    fabric_call PUT /__fabric/remoteaccess "$d/remote-access.json" && fabric_call POST /__fabric/incarnation
    rm -f "$d/remote-access.json"
    made=1
    for _ in $(seq 120); do
        rssh getent passwd jituser >"$d/jit-passwd.txt" 2>/dev/null && { made=0; break; }
        sleep 0.5
    done
    result "jit-access: wala-agentd created the listed user ($(cat "$d/jit-passwd.txt"))" $made "$d/jit-passwd.txt"
    grep -q ':JIT_Account:' "$d/jit-passwd.txt"
    result "jit-access: the account carries waagent's JIT_Account marker" $? "$d/jit-passwd.txt"
    expire=$(rssh "getent shadow jituser | cut -d: -f8" 2>/dev/null)
    [ -n "$expire" ] && [ "$expire" -ge "$(( $(date +%s) / 86400 ))" ]
    result "jit-access: the account has an expiry date (day $expire)" $?
    rssh "grep -qx 'jituser ALL=(ALL) ALL' /etc/sudoers.d/waagent && visudo -c -q"
    result "jit-access: sudoers line for jituser, and visudo accepts the files" $?
    SSH_ASKPASS=$work/keys/jit-askpass SSH_ASKPASS_REQUIRE=force DISPLAY=none setsid -w ssh "${ssh_opts[@]/BatchMode=yes/BatchMode=no}" \
        -o PreferredAuthentications=password -o PubkeyAuthentication=no jituser@127.0.0.1 \
        "sudo -S -p '' id -u" <"$work/keys/jit-password" >"$d/jit-login.log" 2>&1
    [ "$(tail -1 "$d/jit-login.log")" = 0 ]
    result "jit-access: ssh login with the decrypted password, then sudo with it" $? "$d/jit-login.log"
    rssh "journalctl -b --no-pager -u wala-agentd.service; cat /var/log/waagent.log" >"$d/agentd.log" 2>&1
    ! grep -qF "$(cat "$work/keys/jit-password")" "$d/agentd.log" && grep -q 'Adding remote access user jituser' "$d/agentd.log"
    result "jit-access: the daemon logged the user, never its password" $? "$d/agentd.log"
    # The document goes away: the account goes too; the admin user stays.
    fabric_call DELETE /__fabric/remoteaccess && fabric_call POST /__fabric/incarnation
    gone=1
    for _ in $(seq 120); do
        rssh "! getent passwd jituser >/dev/null && ! grep -qs '^jituser ' /etc/sudoers.d/waagent && [ ! -e /home/jituser ]" \
            2>/dev/null && { gone=0; break; }
        sleep 0.5
    done
    result "jit-access: removed (account, home, sudoers line) when the goal state no longer lists it" $gone
    ussh true >/dev/null 2>&1
    result "jit-access: $user still logs in" $?
    rm -f "$work/keys/jit-password" "$work/keys/jit-askpass"
    collect_fabric
    row "jit access" "$wire_at" "$ready_at" "$ssh_at"
    shutdown_vm
else
    stop_all
fi

# === 7. The floor: the same image with wala's units masked ======================================
cp --sparse=always "$WALA_VM_RESOURCE" "$work/res6.raw"
mask="systemd.mask=wala-provision-local.service systemd.mask=wala-provision-keys.service"
mask+=" systemd.mask=wala-provision-disk.service"
mask+=" systemd.mask=wala-provision-network.service"
mask+=" systemd.mask=wala-agentd.service systemd.mask=wala-network-setup.service"
boot no-agent "$work/root.raw" on "$work/nopw.iso" "$work/res6.raw" "$uuid1" "$work/initrd.img" "$mask"
if [ -n "$ssh_at" ]; then
    state=$(rssh systemctl is-active wala-provision-local.service 2>/dev/null)
    [ "$state" != active ]
    result "no-agent: wala's units are masked (wala-provision-local: $state)" $?
    collect_fabric
    row "no agent (floor)" "$wire_at" "$ready_at" "$ssh_at"
    shutdown_vm
else
    stop_all
fi

echo
echo "Figures ($accel_name; seconds from qemu start; no timing assertions):"
printf '%-22s %12s %10s %12s %10s\n' scenario "1st wire req" Ready "sshd banner" "agentd RSS"
printf '%s\n' "${rows[@]}"
echo "preparation: ${WALA_VM_PREPARE_SECS} s (base image step: ${WALA_VM_IMAGE_SECS} s)"
echo "ssh connections tried again after a failed connection: $(wc -l <"$work/ssh-retries.log" 2>/dev/null || echo 0)"
echo "BOOTS DONE"
