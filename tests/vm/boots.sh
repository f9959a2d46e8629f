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
        if [ $rc -ne 255 ] || ! grep -qE 'kex_exchange_identification|Connection (refused|reset|closed)|timed out during banner exchange' "$err"; then
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
# Extra wala-fabric arguments for the next boot (a block sets it before `boot` and clears it after).
fabric_extra=()
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

# boot NAME ROOT SNAPSHOT(on|off) ISO RESOURCE UUID INITRD [EXTRA_APPEND]   (ISO "-": no DVD drive)
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
        "${fabric_extra[@]}" >"$d/fabric.out" 2>"$d/fabric.err" &
    fab_pid=$!
    for _ in $(seq 100); do [ -s "$d/ports.json" ] && break; sleep 0.05; done
    local wire hgap imds
    read -r wire hgap imds < <(python3 "$tool" ports "$d/ports.json")
    t0=$(date +%s.%N)
    vm_qemu "$d" "$work/vmlinuz" "$initrd" "$root" "$snap" "$iso" "$res" "$uuid" \
        "$(vm_netdev "$ssh_port" "$wire" "$hgap" "$imds")" "$append" &
    qemu_pid=$!
    ssh_at=$(python3 "$tool" banner "$ssh_port" 300 "$t0" "$d/serial.log") || ssh_at=""
    if [ -n "$ssh_at" ]; then
        pass "$name: boots to sshd (banner after $ssh_at s)"
    else
        fail "$name: boots to sshd within 300 s" "$d/serial.log"
        cat "$d/qemu.out"
    fi
}

# Fabric figures and the Health reports; then stop the fabric. Sets wire_at, ready_at.
collect_fabric() {
    # The request log first: the fabric records a request before it handles it, so a Ready seen
    # there is in the health list fetched after (the other order missed a Ready that came between
    # the two reads, and a wait for Ready then checked a list without it).
    read -r wire_at ready_at < <(python3 "$tool" times "$d/record.jsonl" "$fab_t0" "$t0")
    python3 "$tool" get "http://127.0.0.1:$(python3 "$tool" ports "$d/ports.json" | cut -d' ' -f1)/__fabric/health" \
        >"$d/health.json" 2>"$d/health.err" || echo '[]' >"$d/health.json"
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
    check_unit_warnings "$name"
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
    echo "$name: boot-report step times (s): $(awk '$5 == "step" && ($NF == "start-up" || $NF == "set-up" || $NF == "user" || $NF == "sudoers" || $NF == "sudoers-check" || $NF == "host-keys" || $NF == "ovf") { printf "%s%s %s  ", ($NF == "start-up" || $NF == "set-up" ? $4 " " : ""), $NF, $3 }' "$d/boot-report.txt")"
}

# unit_costs: how long each of wala's boot units ran on this boot (ExecMainStart to ExecMainExit,
# monotonic), as a figure: on a later boot (marker present) each should do next to nothing.
unit_costs() {
    local u line out=""
    for u in wala-provision-local wala-provision-keys wala-provision-disk wala-provision-network; do
        line=$(rssh systemctl show --value -p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic "$u.service" 2>/dev/null | paste -sd' ')
        # shellcheck disable=SC2086 # two numbers
        out+=$(printf '%s %s  ' "$u" "$(echo $line | awk '$1 > 0 && $2 >= $1 { printf "%.0f ms", ($2 - $1) / 1000 } $1 == 0 { print "not run" }')")
    done
    echo "$1: wala unit run times: $out"
    # Of which the processes' own start-up (fork to the stage's first record: loader, libraries,
    # configuration), from the boot timeline.
    out=$(rssh wala-agentd boot-report 2>/dev/null | awk '$5 == "step" && ($NF == "start-up" || $NF == "set-up") { printf "%s %s %.0f ms  ", $4, $NF, $3 * 1000 }')
    echo "$1: wala stages' start-up (fork to main) and set-up (main to stage): ${out:-none recorded}"
}

# cold_start: what starting wala-provision costs with nothing in the page cache (as early in boot),
# against a warm start and against reading the shared libraries it maps; figures, no assertion.
cold_start() {
    # shellcheck disable=SC2016 # expanded by the guest's shell
    rssh 'ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
        libs=$(ldd /usr/sbin/wala-provision | awk "\$3 ~ /^\// { print \$3 }")
        sync; echo 3 >/proc/sys/vm/drop_caches; t=$(date +%s%N); /usr/sbin/wala-provision --version >/dev/null; cold=$(ms "$t")
        t=$(date +%s%N); /usr/sbin/wala-provision --version >/dev/null; warm=$(ms "$t")
        sync; echo 3 >/proc/sys/vm/drop_caches; t=$(date +%s%N); cat $libs >/dev/null; libread=$(ms "$t")
        sync; echo 3 >/proc/sys/vm/drop_caches; t=$(date +%s%N); cat /usr/sbin/wala-provision >/dev/null; binread=$(ms "$t")
        echo "cold ${cold} ms, warm ${warm} ms; reading cold: the binary ${binread} ms, its libraries ${libread} ms ($(du -cLk $libs | tail -1 | cut -f1) KiB: $(echo $libs | xargs -n1 basename | paste -sd" "))"' \
        >"$d/cold-start.txt" 2>&1
    echo "$1: wala-provision --version start: $(cat "$d/cold-start.txt")"
}

check_custom_data() {
    local got want
    want=$(printf '%s' "$WALA_VM_CUSTOM_DATA" | base64 -w0)
    got=$(rssh cat /var/lib/waagent/CustomData 2>/dev/null)
    # Saved as given (base64, Provisioning.DecodeCustomData=n) or decoded.
    [ "$got" = "$want" ] || [ "$got" = "$WALA_VM_CUSTOM_DATA" ]
    result "$1: CustomData saved in /var/lib/waagent/CustomData" $?
}

# The unit that starts the cell's DHCP client, and its journal line for a lease (image.sh).
case ${WALA_VM_NETSTACK:-networkd} in
networkmanager) dhcp_unit=NetworkManager.service lease_re='dhcp4 .*(new lease|state changed bound)' ;;
ifupdown) dhcp_unit=networking.service lease_re='bound to [0-9.]+|leased [0-9.]+ for' ;;
*) dhcp_unit=systemd-networkd.service lease_re='DHCPv4 address' ;;
esac

# The hostname must be set before the first DHCP request: the first wala-provision line saying it
# is set (the hostname stage's, or the local stage's "hostname: done", in the initramfs or on the
# real root) comes before systemd started the network stack's DHCP client ($dhcp_unit), from the
# journal's monotonic timestamps (journald stamps a line when it reads it, so never early).
check_hostname_before_dhcp() {
    rssh journalctl -b -o short-monotonic --no-pager >"$d/journal.txt" 2>&1
    local t_host t_netd t_lease by
    t_host=$(grep -m1 -E 'wala-provision\[[0-9]+\]: INFO (hostname: done in|hostname stage: the hostname is)' "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    by=$(grep -m1 -oE 'wala-provision\[[0-9]+\]: INFO (hostname: done in|hostname stage: the hostname is)' "$d/journal.txt" | sed -E 's/.*INFO (hostname stage|hostname: done).*/\1/')
    t_netd=$(grep -m1 "Starting $dhcp_unit" "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    t_lease=$(grep -m1 -E "$lease_re" "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    if [ -n "$t_host" ] && [ -n "$t_netd" ] && python3 -c "import sys; sys.exit(0 if $t_host < $t_netd else 1)"; then
        pass "$1: hostname set before DHCP (by the ${by:-?} at ${t_host}s, $dhcp_unit started at ${t_netd}s, lease at ${t_lease:-?}s)"
    else
        fail "$1: hostname set before DHCP (set at '${t_host}', $dhcp_unit started at '${t_netd}')" "$d/journal.txt"
    fi
    # ... and sshd starts only once the whole local stage has ended (the oneshot unit finished, or
    # where the generator made it Type=notify, wala-provision-local-done finished).
    local t_end t_gate t_ssh
    t_end=$(grep -m1 'local stage finished for VM' "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    t_gate=$(grep -m1 -E 'Finished wala-provision-local(-done)?.service' "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    t_ssh=$(grep -m1 -E 'Starting (ssh|sshd).service' "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    if [ -n "$t_end" ] && [ -n "$t_gate" ] && [ -n "$t_ssh" ] &&
        python3 -c "import sys; sys.exit(0 if $t_end <= $t_gate <= $t_ssh else 1)"; then
        pass "$1: sshd started after the whole local stage (stage ended ${t_end}s, local-done ${t_gate}s, sshd ${t_ssh}s)"
    else
        fail "$1: sshd started after the whole local stage (stage ended '${t_end}', local-done '${t_gate}', sshd '${t_ssh}')" "$d/journal.txt"
    fi
}

# check_hostname_published NAME: a hostname changed by the admin is noticed by wala-agentd's
# hostname monitor (Provisioning.MonitorHostName) and sent to the platform's DNS through a DHCP
# request of the cell's network stack (networkd: networkctl renew; NetworkManager: nmcli device
# reapply; ifupdown: ifdown/ifup), within two of its periods.
check_hostname_published() {
    local new=wala-renamed ok=1 deadline=$((SECONDS + 90))
    rssh "hostname $new" >"$d/rename.log" 2>&1
    # Bounded in time, not in tries: a publishing that takes the link down for good would make
    # each ssh wait for its own timeout.
    while [ $SECONDS -lt $deadline ]; do
        rssh journalctl -b --no-pager -u wala-agentd.service >"$d/agentd.journal" 2>&1
        if grep -q "published the hostname through a DHCP request" "$d/agentd.journal"; then
            ok=0
            break
        fi
        grep -q "cannot publish the hostname\|publishing the hostname failed" "$d/agentd.journal" && break
        sleep 1
    done
    result "$1: a new hostname ($new) published through ${dhcp_unit%.service}'s DHCP request ($(grep -m1 -oE 'published the hostname.*|cannot publish the hostname.*|publishing the hostname failed.*' "$d/agentd.journal"))" $ok "$d/agentd.journal"
}

# check_package_purge NAME: `dpkg --purge wala` in the running guest stops wala's processes and
# leaves none of its files, units, enablement links, aliases or udev rules (the image maintainer's
# way back); the harness's own files (*wala-test*) are not wala's. Run on a snapshot boot: the image
# stays as it was.
check_package_purge() {
    local rc
    # shellcheck disable=SC2016 # expanded by the guest's shell
    rssh 'set -e
        dpkg -L wala | while read -r f; do [ -d "$f" ] || echo "$f"; done >/root/wala-files
        dpkg --purge wala
        left=""
        for p in wala-agentd wala-provision wala-crypto; do pgrep -x "$p" >/dev/null && left="$left process:$p"; done
        while read -r f; do [ -e "$f" ] || [ -L "$f" ] && left="$left $f"; done </root/wala-files
        for f in $(find /etc/systemd /run/systemd/system /lib/systemd /usr/lib/systemd /etc/udev /lib/udev /usr/lib/udev                 \( -name "*wala*" -o -name waagent.service -o -name walinuxagent.service \) \
                ! -name "*wala-test*" 2>/dev/null); do
            left="$left $f"
        done
        echo "left:$left"
        [ -z "$left" ]' >"$d/purge.log" 2>&1
    rc=$?
    result "$1: dpkg --purge wala in the running guest leaves no process, file, unit, link or udev rule ($(grep -m1 '^left:' "$d/purge.log"))" $rc "$d/purge.log"
}

# check_unit_warnings NAME: systemd (this image's version) read wala's unit files without a
# complaint ("file:line: Unknown key ...", deprecated settings), from the journal that
# check_hostname_before_dhcp saved.
check_unit_warnings() {
    local rc version
    ! grep -E 'systemd\[1\]: (/usr)?/(lib|etc)/systemd/system/wala[^:]*:[0-9]+:' "$d/journal.txt" >"$d/unit-warnings.txt"
    rc=$?
    version=$(rssh 'systemctl --version' 2>/dev/null | awk 'NR == 1 { print $2 }')
    result "$1: systemd $version has no complaint about wala's unit files" $rc "$d/unit-warnings.txt"
}

check_resource_disk() {
    local fs swap
    # The disk stage starts after sshd: wait (up to 60 s) until it has finished. A unit whose start
    # job is still queued behind its After= units is "inactive" too, so also wait until no job for
    # it is left (a login can come before the job has even begun).
    for _ in $(seq 120); do
        rssh "test \"\$(systemctl show -p ActiveState --value wala-provision-disk.service)\" != activating &&
            test -z \"\$(systemctl list-jobs --no-legend wala-provision-disk.service)\"" 2>/dev/null && break
        sleep 0.5
    done
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

# disk_file IMAGE PATH: a file of a powered-off ext4 disk image (debugfs, read-only), for what a
# boot must leave as it was.
disk_file() { debugfs -R "cat $2" "$1" 2>/dev/null; }

# check_kept NAME IMAGE UUID: a provisioned disk booted as VM UUID kept its identity: the local
# stage says nothing was provisioned, the host key and hostname are those the disk had (HOSTNAME_BEFORE
# and HOSTKEY_BEFORE, read with disk_file before the boot, unless the block says otherwise), the
# user still logs in, the marker names the new VM, and the fabric got Ready alone.
check_kept() {
    local name=$1 uuid=$2 why=$3 out
    local_journal
    grep -q "Nothing provisioned: .*$why" "$d/local.journal" && ! grep -q 'Provisioning skipped' "$d/local.journal"
    rc=$?
    result "$name: nothing provisioned ($(grep -m1 -o 'Nothing provisioned: .*' "$d/local.journal" | cut -c1-160))" $rc "$d/local.journal"
    ! grep -qE 'useradd|host-keys: done' "$d/local.journal"
    result "$name: no user made, no host key made" $? "$d/local.journal"
    out=$(rssh cat /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null)
    [ -n "$out" ] && [ "$out" = "$HOSTKEY_BEFORE" ]
    result "$name: the SSH host key is the one the disk had" $?
    ussh true >"$d/ussh.log" 2>&1
    result "$name: $user still logs in with its key" $? "$d/ussh.log"
    marker_is "$uuid"
    gated "$name: the marker names the new VM id" $?
    collect_fabric
    fabric_reports "$name" "Ready alone (nothing provisioned, nothing else reported)" ready-only
}

rows=()
row() { rows+=("$(printf '%-24s %12s %10s %12s %10s' "$1" "${2:--}" "${3:--}" "${4:--}" "${5:--}")"); }

uuid1=$(python3 -c 'import uuid; print(uuid.uuid4())')
uuid2=$(python3 -c 'import uuid; print(uuid.uuid4())')
uuid3=$(python3 -c 'import uuid; print(uuid.uuid4())')
uuid4=$(python3 -c 'import uuid; print(uuid.uuid4())')
uuid5=$(python3 -c 'import uuid; print(uuid.uuid4())')
uuid6=$(python3 -c 'import uuid; print(uuid.uuid4())')
uuid7=$(python3 -c 'import uuid; print(uuid.uuid4())')
uuid8=$(python3 -c 'import uuid; print(uuid.uuid4())')

# === 1. No password, SSH key, custom data: first boot on a persistent copy of the root ===========
cp --sparse=always "$work/root.raw" "$work/root-persistent.raw"
cp --sparse=always "$WALA_VM_RESOURCE" "$work/res1.raw"
boot first-boot "$work/root-persistent.raw" off "$work/nopw.iso" "$work/res1.raw" "$uuid1" "$work/initrd.img"
if [ -n "$ssh_at" ]; then
    # The provisioned user's first login, the first ssh session after the banner, in seconds from
    # qemu's start (tests/vm/matrix.sh prints it; the checks' own sessions come after).
    ussh true >/dev/null 2>&1 &&
        echo "first-boot: login as $user after $(python3 -c "import time; print(f'{time.time() - $t0:.2f}')") s"
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
    check_hostname_published first-boot
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
    # wala-provision-generator found the disk provisioned for this VM: the local stage's unit is
    # skipped by the condition of the drop-in it wrote, and its process never starts. (systemd 252
    # logs "skipped because of an unmet condition check (ConditionPathExists=...)", 257 "skipped,
    # unmet condition check ConditionPathExists=...".)
    grep -qE 'unmet condition check \(?ConditionPathExists=!/run/systemd/generator/wala-provisioned-for-this-vm' "$d/local.journal" &&
        ! grep -q 'wala-provision\[' "$d/local.journal"
    rc=$?
    result "reboot: no second provisioning, the local stage not even started ($(rssh cat /run/systemd/generator/wala-provisioned-for-this-vm 2>/dev/null))" "$rc" "$d/local.journal"
    ! grep -q 'VM id changed' "$d/local.journal"
    result "reboot: the VM id is recognised as unchanged" $? "$d/local.journal"
    # The network stage (Ready was sent) and the host-keys stage (none pending) are skipped by the
    # generator's drop-ins too: no process of theirs starts on a later boot.
    # (systemctl show puts an empty line between the units.)
    out=$(rssh systemctl show -p ConditionResult --value wala-provision-network.service wala-provision-keys.service 2>/dev/null | grep -v '^$' | paste -sd' ')
    [ "$out" = "no no" ]
    result "reboot: the network and host-keys stages not started either (ConditionResult: $out)" $?
    unit_costs reboot
    cold_start reboot
    marker_is "$uuid1"
    gated "reboot: the marker /var/lib/waagent/provisioned holds the VM id" $?
    ussh true >/dev/null 2>&1
    result "reboot: $user still logs in" $?
    check_resource_disk reboot
    collect_fabric
    # waagent's rule (provisioning.md §2.11): the marker holds this VM's id, so no report at all.
    fabric_reports reboot "no health report (already provisioned)" none
    row "reboot" "$wire_at" "$ready_at" "$ssh_at"
    shutdown_vm
else
    stop_all
fi

# === 3. A new VM id on the same disk (a restored backup, a failover, an image captured without ===
# deprovisioning): its DVD names the user the disk already has, so nothing is provisioned again (no
# user, password or host key); its hostname and keys are applied; the previous VM's state is
# forgotten; Ready alone.
cp --sparse=always "$WALA_VM_RESOURCE" "$work/res2.raw"
HOSTKEY_BEFORE=$(disk_file "$work/root-persistent.raw" /etc/ssh/ssh_host_ed25519_key.pub)
boot new-vm-id "$work/root-persistent.raw" off "$work/newid.iso" "$work/res2.raw" "$uuid2" "$work/initrd.img"
if [ -n "$ssh_at" ]; then
    check_pending_line
    check_kept new-vm-id "$uuid2" "user $user exists"
    grep -qE 'removed [1-9][0-9]* file\(s\) of the previous VM' "$d/local.journal"
    rc=$?
    result "new-vm-id: the previous VM's state was forgotten ($(grep -m1 -oE 'removed [0-9]+ file\(s\) of the previous VM' "$d/local.journal"))" $rc "$d/local.journal"
    out="$(rssh 'hostname; cat /etc/hostname' 2>/dev/null | paste -sd' ')"
    [ "$out" = "$WALA_VM_HOST2 $WALA_VM_HOST2" ]
    result "new-vm-id: the new DVD's hostname $WALA_VM_HOST2 is set (got: $out)" $?
    check_resource_disk new-vm-id
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
    check_package_purge password
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
        # Either the initramfs left nothing (the unit is skipped by its condition), or the real
        # root's stage found the work done and made only what was left (host keys, when the
        # kernel's random pool was not ready in the initramfs).
        rc=0
        if grep -qE 'unmet condition check \(?ConditionPathExists=!/run/wala/local-stage-done-in-initrd' "$d/local.journal"; then
            how="skipped: the initramfs left nothing"
        elif grep -q 'Provisioning skipped: the local stage already ran' "$d/local.journal"; then
            how="$(grep -m1 -o 'Provisioning skipped: .*' "$d/local.journal")$(grep -q 'made the host keys the initramfs left' "$d/local.journal" && echo '; made the host keys the initramfs left')"
        else
            rc=1 how="neither skipped nor found done"
        fi
        result "dracut: the real-root local stage did not redo it ($how)" "$rc" "$d/local.journal"
        check_provisioned dracut "$WALA_VM_HOST4"
        collect_fabric
        fabric_reports dracut "NotReady/Provisioning then Ready" ready
        row "dracut" "$wire_at" "$ready_at" "$ssh_at"
        shutdown_vm
    else
        stop_all
    fi
elif wanted dracut; then
    fail "dracut: no initramfs was built (see the preparation's FAIL line)"
else
    echo "NOT RUN dracut (not in WALA_VM_SCENARIOS=$WALA_VM_SCENARIOS)"
fi

# === 7. The same disk as a specialized VM: a DVD with no provisioning section =================
# Nothing provisioned, hostname and host keys as the disk had them, Ready alone.
cp --sparse=always "$WALA_VM_RESOURCE" "$work/res7.raw"
HOSTKEY_BEFORE=$(disk_file "$work/root-persistent.raw" /etc/ssh/ssh_host_ed25519_key.pub)
host_before=$(disk_file "$work/root-persistent.raw" /etc/hostname)
boot specialized-dvd "$work/root-persistent.raw" off "$work/specialized.iso" "$work/res7.raw" "$uuid6" "$work/initrd.img"
if [ -n "$ssh_at" ]; then
    check_pending_line
    check_kept specialized-dvd "$uuid6" "no provisioning section"
    out="$(rssh 'hostname; cat /etc/hostname' 2>/dev/null | paste -sd' ')"
    [ -n "$host_before" ] && [ "$out" = "$host_before $host_before" ]
    result "specialized-dvd: the hostname is the disk's own ($out)" $?
    row "specialized DVD" "$wire_at" "$ready_at" "$ssh_at"
    shutdown_vm
else
    stop_all
fi

# === 8. The same disk on a VM with no DVD drive at all =========================================
# Told apart from a slow DVD once udev has handled every device present at boot: no wait for one,
# no IMDS on a provisioned disk; nothing provisioned, Ready alone.
cp --sparse=always "$WALA_VM_RESOURCE" "$work/res8.raw"
HOSTKEY_BEFORE=$(disk_file "$work/root-persistent.raw" /etc/ssh/ssh_host_ed25519_key.pub)
boot no-dvd "$work/root-persistent.raw" off - "$work/res8.raw" "$uuid7" "$work/initrd.img"
if [ -n "$ssh_at" ]; then
    check_pending_line
    check_kept no-dvd "$uuid7" "no provisioning DVD"
    grep -q 'no provisioning DVD: no device holds ovf-env.xml once udev has handled every device' "$d/local.journal" &&
        ! grep -q 'appeared within' "$d/local.journal"
    result "no-dvd: no DVD was known at once (udev settled), not after the DVD timeout" $? "$d/local.journal"
    out=$(rssh systemctl show -p ConditionResult --value wala-provision-imds.service 2>/dev/null)
    [ "$out" = no ]
    result "no-dvd: the IMDS stage did not run on a provisioned disk (ConditionResult=$out)" $?
    row "no DVD" "$wire_at" "$ready_at" "$ssh_at"
    shutdown_vm
else
    stop_all
fi

# === 9. IMDS only: a fresh image on a VM without a DVD =========================================
# The user, its key and the hostname come from IMDS's osProfile and publicKeys (no password), in
# the IMDS stage, before sshd; then Provisioning and Ready.
cp --sparse=always "$WALA_VM_RESOURCE" "$work/res9.raw"
fabric_extra=(--imds-instance "$work/imds-only.json")
boot imds-only "$work/root.raw" on - "$work/res9.raw" "$uuid8" "$work/initrd.img"
fabric_extra=()
if [ -n "$ssh_at" ]; then
    check_pending_line
    iu=$WALA_VM_IMDS_USER
    ssh_retry "${ssh_opts[@]}" -i "$work/keys/user" "$iu@127.0.0.1" sudo -n true >"$d/ussh.log" 2>&1
    result "imds-only: $iu (from IMDS) logs in with its IMDS key and has sudo without a password" $? "$d/ussh.log"
    out="$(rssh 'hostname; cat /etc/hostname' 2>/dev/null | paste -sd' ')"
    [ "$out" = "$WALA_VM_HOST_IMDS $WALA_VM_HOST_IMDS" ]
    result "imds-only: hostname $WALA_VM_HOST_IMDS from IMDS (got: $out)" $?
    out=$(rssh "getent shadow $iu | cut -d: -f2" 2>/dev/null)
    [ "$out" = '*' ]
    result "imds-only: no password (shadow field '$out'): a password only comes from the OVF" $?
    rssh journalctl -b --no-pager -o short-monotonic >"$d/journal.txt" 2>&1
    t_imds=$(grep -m1 'Finished wala-provision-imds.service' "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    t_ssh=$(grep -m1 -E 'Start(ing|ed) (ssh|sshd)\.service' "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    [ -n "$t_imds" ] && [ -n "$t_ssh" ] && python3 -c "import sys; sys.exit(0 if $t_imds <= $t_ssh else 1)"
    result "imds-only: the IMDS stage finished before sshd started (${t_imds:-?}s, sshd ${t_ssh:-?}s)" $? "$d/journal.txt"
    # No drive at all when the generator ran: it made the local stage hold the network for the
    # hostname (the drop-in), and the local stage let the network go once it knew there was no DVD.
    out=$(rssh systemctl show -p DropInPaths --value wala-provision-local.service 2>/dev/null)
    [[ "$out" == *50-wala-network-waits-for-hostname.conf* ]] && grep -q 'Reached target network-pre.target' "$d/journal.txt"
    result "imds-only: booted without a DVD drive through the generator's hold (drop-in: ${out:-none}), the network released" $? "$d/journal.txt"
    rssh "grep -q 'Made by wala from IMDS' /var/lib/waagent/ovf-env.xml && grep -q '>$iu<' /var/lib/waagent/ovf-env.xml"
    result "imds-only: /var/lib/waagent/ovf-env.xml made from IMDS names $iu" $?
    collect_fabric
    fabric_reports imds-only "NotReady/Provisioning then Ready" ready
    python3 "$tool" imds-first "$d/record.jsonl" >"$d/imds-first.check" 2>&1
    rc=$?
    gated "imds-only: fabric's record: IMDS asked before the first Health report ($(cat "$d/imds-first.check"))" $rc "$d/imds-first.check"
    row "IMDS only" "$wire_at" "$ready_at" "$ssh_at"
    shutdown_vm
else
    stop_all
fi

# === 10. Pre-provisioned pool VMs: a Running and a Savable pool VM taken over by a user ===========
# The pool VM boots from a placeholder DVD (pooluser, PreprovisionedVm=true); wala must report
# Ready for the pool and start no sshd; then the test plays the host: Running moves the NIC to the
# user's network (QMP set_link off, on), Savable unplugs the NIC (device_del), is paused and
# resumed (stop, cont: the save and restore) and gets a new NIC (device_add); then the fabric hands
# out the user's ovf-env.xml at IMDS reprovisiondata (a new incarnation). Checked: the user logs in,
# the user's hostname, no placeholder user, sshd only after the pps stage, no IMDS poll before the
# NIC change, and the fabric's reports in order: Ready for the pool, then NotReady/Provisioning and
# Ready for the user's goal state.
pps_scenario() {
    local name=$1 kind=$2 host=$3 wire hgap imds uuid polls out rc
    if ! wanted "$name"; then
        echo "NOT RUN $name (not in WALA_VM_SCENARIOS=$WALA_VM_SCENARIOS)"
        return
    fi
    d=$work/$name
    mkdir -p "$d"
    rm -f "$d/ports.json"
    cp --sparse=always "$WALA_VM_RESOURCE" "$d/res.raw"
    uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
    fab_t0=$(date +%s.%N)
    "$WALA_VM_FABRIC" --advertise-platform-addresses --ports-file "$d/ports.json" --record "$d/record.jsonl" \
        >"$d/fabric.out" 2>"$d/fabric.err" &
    fab_pid=$!
    for _ in $(seq 100); do [ -s "$d/ports.json" ] && break; sleep 0.05; done
    read -r wire hgap imds < <(python3 "$tool" ports "$d/ports.json")
    t0=$(date +%s.%N)
    vm_qemu "$d" "$work/vmlinuz" "$work/initrd.img" "$work/root.raw" on "$work/pool-$kind.iso" "$d/res.raw" "$uuid" \
        "$(vm_netdev "$ssh_port" "$wire" "$hgap" "$imds")" &
    qemu_pid=$!
    local control=http://127.0.0.1:$wire/__fabric ready=1
    for _ in $(seq 600); do
        python3 "$tool" get "$control/health" >"$d/health.json" 2>/dev/null && grep -q '"Ready"' "$d/health.json" && {
            ready=0
            break
        }
        sleep 0.5
    done
    result "$name: the pool VM reported Ready for the pool ($(python3 "$tool" reports "$d/health.json" 2>/dev/null))" $ready "$d/serial.log"
    if [ $ready -ne 0 ]; then
        stop_all
        return
    fi
    ! python3 "$tool" banner "$ssh_port" 8 "$t0" >/dev/null
    result "$name: no sshd in the pool (no SSH banner for 8 s after the pool's Ready)" $?
    polls=$(python3 "$tool" count "$d/record.jsonl" /metadata/reprovisiondata)
    [ "$polls" = 0 ]
    result "$name: no IMDS reprovisiondata poll before the host's NIC change ($polls)" $?
    case $kind in
    running)
        python3 "$tool" qmp "$d/qmp.sock" set_link '{"name": "net0", "up": false}' >"$d/qmp.log" 2>&1 &&
            sleep 2 && python3 "$tool" qmp "$d/qmp.sock" set_link '{"name": "net0", "up": true}' >>"$d/qmp.log" 2>&1
        result "$name: the host moves the NIC to the user's network (QMP set_link net0 off, on)" $? "$d/qmp.log"
        ;;
    savable)
        # The new NIC (a new device, a new interface index) keeps qemu's default MAC address: slirp
        # then leases it the first NIC's address, which the harness's ssh forward points at.
        python3 "$tool" qmp "$d/qmp.sock" device_del '{"id": "net0"}' DEVICE_DELETED >"$d/qmp.log" 2>&1
        result "$name: the host unplugs the NIC (QMP device_del net0, DEVICE_DELETED)" $? "$d/qmp.log"
        sleep 2
        polls=$(python3 "$tool" count "$d/record.jsonl" /metadata/reprovisiondata)
        [ "$polls" = 0 ]
        result "$name: no IMDS poll while no NIC is plugged in ($polls)" $?
        python3 "$tool" qmp "$d/qmp.sock" stop >>"$d/qmp.log" 2>&1 && sleep 1 &&
            python3 "$tool" qmp "$d/qmp.sock" cont >>"$d/qmp.log" 2>&1 &&
            python3 "$tool" qmp "$d/qmp.sock" device_add \
                '{"driver": "virtio-net-pci", "netdev": "n0", "id": "net1", "mac": "52:54:00:12:34:56"}' >>"$d/qmp.log" 2>&1
        result "$name: the VM is paused and resumed, and a new NIC is plugged in (QMP stop, cont, device_add net1)" $? "$d/qmp.log"
        ;;
    esac
    python3 "$tool" put "$control/reprovisiondata" "$work/dvd-pool-$kind-user/ovf-env.xml" >"$d/handover.log" 2>&1
    rc=$?
    result "$name: the fabric hands the user's ovf-env.xml out at IMDS reprovisiondata ($(cat "$d/handover.log"))" $rc "$d/handover.log"
    ssh_at=$(python3 "$tool" banner "$ssh_port" 300 "$t0" "$d/serial.log") || ssh_at=""
    if [ -z "$ssh_at" ]; then
        fail "$name: sshd starts once the VM is provisioned for its user (within 300 s)" "$d/serial.log"
        stop_all
        return
    fi
    pass "$name: sshd starts once the VM is provisioned for its user (banner after $ssh_at s)"
    ussh true >"$d/ussh.log" 2>&1
    result "$name: $user logs in with the user's key" $? "$d/ussh.log"
    out="$(rssh 'hostname; cat /etc/hostname' 2>/dev/null | paste -sd' ')"
    [ "$out" = "$host $host" ]
    result "$name: the user's hostname $host, live and in /etc/hostname (got: $out)" $?
    ! rssh id pooluser >/dev/null 2>&1 && ! rssh test -e /home/pooluser
    result "$name: no placeholder user (no pooluser, no /home/pooluser)" $?
    ! ssh "${ssh_opts[@]}" -i "$work/keys/pool" pooluser@127.0.0.1 true >/dev/null 2>&1
    result "$name: the placeholder's key logs nobody in" $?
    rssh journalctl -b -o short-monotonic --no-pager >"$d/journal.txt" 2>&1
    rssh journalctl -b --no-pager -u wala-provision-pps.service >"$d/pps.journal" 2>&1
    case $kind in
    running) grep -q 'the NIC switched networks' "$d/pps.journal" ;;
    savable) grep -q 'was unplugged' "$d/pps.journal" && grep -q 'was plugged in' "$d/pps.journal" ;;
    esac && grep -q 'taken over after' "$d/pps.journal" && grep -q 'the pool VM is provisioned for its user' "$d/pps.journal"
    result "$name: the pps stage saw the NIC change, then the user's OVF (journal)" $? "$d/pps.journal"
    local t_pps t_ssh
    t_pps=$(grep -m1 'Finished wala-provision-pps.service' "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    t_ssh=$(grep -m1 -E 'Started (ssh|sshd)\.service' "$d/journal.txt" | sed -E 's/^\[ *([0-9.]+)\].*/\1/')
    [ -n "$t_pps" ] && [ -n "$t_ssh" ] && python3 -c "import sys; sys.exit(0 if $t_pps < $t_ssh else 1)"
    result "$name: sshd started after the pps stage finished (${t_pps:-?} s < ${t_ssh:-?} s)" $? "$d/journal.txt"
    grep -q 'published the hostname' "$d/pps.journal"
    result "$name: the user's hostname was published (DHCP lease renewed)" $? "$d/pps.journal"
    rc=1
    for _ in $(seq 240); do
        python3 "$tool" get "$control/health" >"$d/health.json" 2>/dev/null
        out=$(python3 "$tool" reports "$d/health.json" 2>/dev/null)
        [ "$out" = "Ready/@1, NotReady/Provisioning@2, Ready/@2" ] && { rc=0; break; }
        sleep 0.5
    done
    result "$name: fabric got Ready for the pool, then NotReady/Provisioning and Ready for the user, in order ($out)" $rc
    marker_is "$uuid"
    result "$name: the marker /var/lib/waagent/provisioned holds the VM id" $?
    rssh test ! -e /run/wala/pps-pending -a ! -e /var/lib/waagent/wala-pps.json
    result "$name: the pool state and flag are cleared" $?
    check_agentd "$name"
    polls=$(python3 "$tool" count "$d/record.jsonl" /metadata/reprovisiondata)
    echo "$name: IMDS reprovisiondata polls: $polls"
    read -r wire_at ready_at < <(python3 "$tool" times "$d/record.jsonl" "$fab_t0" "$t0")
    row "$name" "$wire_at" "$ready_at" "$ssh_at"
    shutdown_vm
}
pps_scenario pps-running running "$WALA_VM_PPS_HOST_R"
pps_scenario pps-savable savable "$WALA_VM_PPS_HOST_S"

# === 11. Migration from waagent: waagent provisions, wala's package replaces it, the VM reboots ==
# waagent's image (run.sh: Debian 12's waagent package, its test shim for the resource disk)
# provisions a first boot; in the running guest `dpkg -i /root/wala.deb` (stdin closed) replaces
# waagent; the next boot, same disk, same VM id, must change nothing: same host keys, no report
# about provisioning, waagent's files as they were, the resource disk not formatted again, and
# wala-agentd running under waagent's unit names (docs/migration.md).
# waagent_state: what must not change, listed from inside the guest (hashes, not contents).
waagent_state() {
    # shellcheck disable=SC2016 # runs in the guest
    rssh 'for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf "$f"; done
          cd /var/lib/waagent && sha256sum provisioned ovf-env.xml ./*.crt ./*.prv Transport*.pem 2>&1
          find /var/lib/waagent -path "*/config/HandlerState" -exec sha256sum {} +
          id '"$user"'; getent passwd '"$user"'; cat /etc/hostname' 2>&1
}
if wanted waagent-first && [ ! -s "$work/waagent.raw" ]; then
    fail "waagent-first: no waagent image was built (see the preparation's FAIL line)"
fi
if [ -s "$work/waagent.raw" ]; then
    uuid_wa=$(python3 -c 'import uuid; print(uuid.uuid4())')
    cp --sparse=always "$work/waagent.raw" "$work/waagent-persistent.raw"
    cp --sparse=always "$WALA_VM_RESOURCE" "$work/res-waagent.raw"
    boot waagent-first "$work/waagent-persistent.raw" off "$work/waagent.iso" "$work/res-waagent.raw" "$uuid_wa" "$work/initrd.img"
    if [ -n "$ssh_at" ]; then
        # waagent provisions after its daemon started (after multi-user.target): wait for its Ready.
        for _ in $(seq 150); do
            collect_fabric
            [ "$ready_at" != - ] && break
            sleep 2
        done
        net_pending=0
        fabric_reports waagent-first "waagent's NotReady/Provisioning then Ready" ready
        ussh true >"$d/ussh.log" 2>&1
        result "waagent-first: $user (made by waagent) logs in with the OVF key" $? "$d/ussh.log"
        for _ in $(seq 60); do
            rssh 'swapon --noheadings --show=NAME | grep -q "^/mnt/resource/"' 2>/dev/null && break
            sleep 2
        done
        fs=$(rssh findmnt -n -o SOURCE,FSTYPE /mnt/resource 2>/dev/null)
        [[ "$fs" == /dev/sd*1\ ext4 ]]
        result "waagent-first: waagent formatted and mounted the resource disk ($fs)" $?
        # shellcheck disable=SC2016 # runs in the guest
        rssh 'blkid -s UUID -o value "$(findmnt -n -o SOURCE /mnt/resource)"; echo wala-migration >/mnt/resource/sentinel' \
            >"$d/resource.before" 2>&1
        # The snapshot is taken once waagent has finished with the goal state's extension (its
        # HandlerState goes NotInstalled -> Enabled while waagent works): wala must keep that state.
        for _ in $(seq 90); do
            rssh 'cat /var/lib/waagent/*/config/HandlerState 2>/dev/null' 2>/dev/null | grep -qx Enabled && break
            sleep 2
        done
        rssh 'cat /var/lib/waagent/*/config/HandlerState' >"$d/handler-state" 2>&1
        grep -qx Enabled "$d/handler-state"
        rc=$?
        result "waagent-first: waagent enabled the goal state's extension ($(head -c 40 "$d/handler-state" | tr -d '\n'))" $rc "$d/handler-state"
        waagent_state >"$d/state.before"
        grep -q '/var/lib/waagent/provisioned\|  provisioned$' "$d/state.before" && grep -q '\.crt$' "$d/state.before"
        result "waagent-first: waagent's marker and certificates are there" $? "$d/state.before"
        # The switch, in the running guest, unattended.
        rssh 'dpkg -i /root/wala.deb </dev/null' >"$d/dpkg.log" 2>&1
        result "waagent-first: dpkg -i wala.deb in the running guest replaces waagent" $? "$d/dpkg.log"
        # shellcheck disable=SC2016 # runs in the guest
        out=$(rssh 'dpkg-query -W -f="\${db:Status-Status}" waagent; echo; systemctl is-active wala-agentd.service' 2>&1 | paste -sd' ')
        [ "$out" = "config-files active" ]
        result "waagent-first: waagent removed, wala-agentd started by the package ($out)" $? "$d/dpkg.log"
        collect_fabric
        row "waagent (1st boot)" "$wire_at" "$ready_at" "$ssh_at"
        shutdown_vm
    else
        stop_all
    fi

    boot waagent-migrated "$work/waagent-persistent.raw" off "$work/waagent.iso" "$work/res-waagent.raw" "$uuid_wa" "$work/initrd.img"
    if [ -n "$ssh_at" ]; then
        net_pending=0
        waagent_state >"$d/state.after"
        # Every line recorded before is still there (wala may add files: its own, new certificates).
        comm -23 <(sort "$work/waagent-first/state.before") <(sort "$d/state.after") >"$d/state.diff"
        [ ! -s "$d/state.diff" ]
        rc=$?
        result "waagent-migrated: same SSH host keys, waagent's marker, certificates, transport pair, user and hostname ($(wc -l <"$work/waagent-first/state.before") lines)" $rc "$d/state.diff"
        local_journal
        # waagent's marker names this VM: wala-provision-generator skips the local stage's unit.
        grep -qE 'unmet condition check \(?ConditionPathExists=!/run/systemd/generator/wala-provisioned-for-this-vm' "$d/local.journal"
        rc=$?
        result "waagent-migrated: waagent's marker is taken, the local stage skipped ($(rssh cat /run/systemd/generator/wala-provisioned-for-this-vm 2>/dev/null))" $rc "$d/local.journal"
        check_resource_disk waagent-migrated
        # shellcheck disable=SC2016 # runs in the guest
        rssh 'blkid -s UUID -o value "$(findmnt -n -o SOURCE /mnt/resource)"; cat /mnt/resource/sentinel' >"$d/resource.after" 2>&1
        diff "$work/waagent-first/resource.before" <(head -1 "$d/resource.after") >/dev/null &&
            [ "$(sed -n 2p "$d/resource.after")" = wala-migration ]
        result "waagent-migrated: the resource disk was not formatted again (same UUID, the file written before is there)" $? "$d/resource.after"
        check_agentd waagent-migrated
        collect_fabric
        fabric_reports waagent-migrated "no report about provisioning" no-provisioning
        out=$(rssh 'systemctl show -p Id --value walinuxagent.service; systemctl show -p Id --value waagent.service' 2>&1 | paste -sd' ')
        [ "$out" = "wala-agentd.service wala-agentd.service" ]
        result "waagent-migrated: walinuxagent.service and waagent.service name wala-agentd.service ($out)" $?
        rssh systemctl show -p DropInPaths --value wala-agentd.service >"$d/dropins" 2>&1
        grep -q 'walinuxagent.service.d/wala-bench.conf' "$d/dropins"
        result "waagent-migrated: the drop-in under walinuxagent.service.d applies to wala-agentd" $? "$d/dropins"
        before=$(rssh systemctl show -p MainPID --value wala-agentd.service 2>/dev/null)
        rssh systemctl restart walinuxagent >"$d/restart.log" 2>&1
        after=$(rssh systemctl show -p MainPID --value wala-agentd.service 2>/dev/null)
        [ -n "$after" ] && [ "$after" != 0 ] && [ "$after" != "$before" ]
        result "waagent-migrated: systemctl restart walinuxagent restarts wala-agentd (pid $before -> $after)" $? "$d/restart.log"
        row "waagent -> wala reboot" "$wire_at" "$ready_at" "$ssh_at"
        shutdown_vm
    else
        stop_all
    fi
fi

# === 12. JIT remote access: the fabric lists a user; wala-agentd creates it, then removes it ========
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
cp --sparse=always "$WALA_VM_RESOURCE" "$work/res-jit.raw"
uuid_jit=$(python3 -c 'import uuid; print(uuid.uuid4())')
boot jit-access "$work/root.raw" on "$work/password.iso" "$work/res-jit.raw" "$uuid_jit" "$work/initrd.img"
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

# === 13. The floor: the same image with wala's units masked ======================================
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

# === 14. The dracut path's floor: the same dracut initramfs, wala turned off ======================
# The dracut image is a generic one (--no-hostonly), slower to boot than initramfs-tools' own, so
# the dracut row is compared with this one, not with the floor above.
if [ -s "$work/initrd-dracut.img" ]; then
    cp --sparse=always "$WALA_VM_RESOURCE" "$work/res8.raw"
    boot dracut-floor "$work/root.raw" on "$work/dracut.iso" "$work/res8.raw" "$uuid5" "$work/initrd-dracut.img" \
        "$mask systemd.mask=wala-provision-initrd.service wala=disabled"
    if [ -n "$ssh_at" ]; then
        rssh journalctl -b --no-pager -o short-monotonic >"$d/journal.txt" 2>&1
        ! grep -q 'Finished wala-provision-initrd.service' "$d/journal.txt" && ! rssh id "$user" >/dev/null 2>&1
        result "dracut-floor: wala did nothing in the initramfs (no initrd stage, no $user)" $? "$d/journal.txt"
        collect_fabric
        row "no agent, dracut (floor)" "$wire_at" "$ready_at" "$ssh_at"
        shutdown_vm
    else
        stop_all
    fi
fi

echo
echo "Figures ($accel_name; seconds from qemu start; no timing assertions):"
printf '%-24s %12s %10s %12s %10s\n' scenario "1st wire req" Ready "sshd banner" "agentd RSS"
printf '%s\n' "${rows[@]}"
echo "preparation: ${WALA_VM_PREPARE_SECS} s (base image step: ${WALA_VM_IMAGE_SECS} s)"
echo "ssh connections tried again after a failed connection: $({ wc -l <"$work/ssh-retries.log"; } 2>/dev/null || echo 0)"
echo "BOOTS DONE"
