#!/usr/bin/env bash
# Benchmark: wala against waagent (Debian 12's package, 2.7.3.0) in the VM harness, with an
# agent-less image as the floor. Documented in docs/vm-test.md ("wala against waagent").
#
# Phase 1 (package mirror reachable): `make deb`, wala-fabric, the cached base image
# (tests/vm/image.sh), a cached second tree = the base plus `apt-get install waagent parted eject fdisk` (tests/vm/lib.sh, in
# $WALA_VM_CACHE/waagent-<key>), then three root images with the harness's root key:
#   wala     the base + the fresh wala .deb, /etc/waagent.conf as the VM test sets it
#   waagent  the waagent tree, /etc/waagent.conf: Provisioning.Agent=waagent,
#            ResourceDisk.Format=y, ResourceDisk.MountPoint=/mnt/resource, EnableSwap=y,
#            SwapSizeMB=64 (what the wala image uses); a unit drop-in resetting
#            ConditionVirtualization=microsoft and loading the shim below
#   none     the base, no agent (the floor for sshd and logins)
#   floor    the base plus a minimal Ready reporter (bash, /dev/tcp: GET the goal state, POST
#            Health Ready) started after network-online.target: the floor for Ready, measured
# and wala-dracut: the wala image booted with an initramfs from dracut with wala's module (the
# local stage runs before switch-root), and floor-dracut: the floor image booted with an initramfs
# from dracut (no wala in it), wala-dracut's floor: a dracut initramfs costs time of its own.
# One provisioning DVD (same user, SSH key, hostname, CustomData), one resource disk template
# (a fresh copy per boot), one fabric per boot, the same qemu command line for all three.
#
# THE SHIM (test only, waagent image only): waagent 2.7 finds the resource disk only by walking
# /sys/bus/vmbus (DefaultOSUtil.device_for_ide_port(1)), and qemu has no VMBus. The unit's drop-in
# sets PYTHONPATH=/usr/local/lib/wala-bench-shim, whose sitecustomize.py replaces that one
# method: for port 1 it answers the kernel name of the disk behind /dev/disk/azure/resource (the
# link the image's test udev rule makes for the virtio-scsi disk with serial "walaresource") and
# logs "wala-bench shim: ..." in waagent.log; any other port, or no link, goes to the original.
# Everything waagent does with the disk afterwards (blkid, mount attempts, mkfs.ext4, swap file,
# swapon) is its own code. The link is the same one wala uses.
#
# Phase 2 (inside `unshare --net`, only loopback exists; qemu user networking restrict=on, the
# platform addresses are guestfwd relays to the fabric on 127.0.0.1): WALA_BENCH_ROUNDS rounds
# of wala, wala-dracut, waagent, none, floor, floor-dracut (each boot from a fresh snapshot), then
# wala and waagent side by side
# for WALA_BENCH_STEADY_SECONDS with nothing changing. Progress and PASS/FAIL lines go to
# stderr; stdout gets `#` lines (machine, accelerator, versions, date) and one TSV row per metric:
#   boot<TAB>metric<TAB>unit<TAB>wala<TAB>waagent<TAB>floor   (medians over the rounds; floor:
#       the floor image for the first request and Ready, the no-agent image for sshd and login;
#       metrics ending in _dracut: wala-dracut in the wala column, floor-dracut in the floor
#       column for all four times)
#   steady<TAB>metric<TAB>unit<TAB>wala<TAB>waagent<TAB>–
# "–" where a figure does not apply. Exits non-zero when any check failed.
#
# Needs root. Environment: WALA_BENCH_ROUNDS (3), WALA_BENCH_STEADY_SECONDS (600; 0: none),
# WALA_BENCH_VARIANTS (the variants to boot, in order; all by default),
# WALA_BENCH_WAAGENT_VERSION (2.7.3.0-4.1), WALA_BENCH_KEEP=1 (keep the work directory; it is
# kept after a failure), and the VM test's WALA_VM_CACHE, WALA_VM_WORK, WALA_VM_TRY_KVM.
# A full run (3 rounds, 600 s) takes about 30 minutes on a 2-core machine under TCG (1795 s on 2026-12-07).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
vm=$repo/tests/vm
tool=$vm/vmtool.py
# shellcheck source=tests/vm/lib.sh
. "$vm/lib.sh"
export WALA_VM_CACHE=${WALA_VM_CACHE:-/var/cache/wala-vm}
export WALA_BENCH_ROUNDS=${WALA_BENCH_ROUNDS:-3}
export WALA_BENCH_STEADY_SECONDS=${WALA_BENCH_STEADY_SECONDS:-600}
export WALA_BENCH_WAAGENT_VERSION=${WALA_BENCH_WAAGENT_VERSION:-2.7.3.0-4.1}
variants=(wala wala-dracut waagent none floor floor-dracut)
# WALA_BENCH_VARIANTS: boot only these (the images are made for all); for quick comparisons.
if [ -n "${WALA_BENCH_VARIANTS:-}" ]; then read -r -a booted <<<"$WALA_BENCH_VARIANTS"; else booted=("${variants[@]}"); fi
user=azureuser
vm_host=wala-bench-vm
swap_mb=64
dash="–"

say() { echo "$*" >&2; }
# check NAME STATUS [LOG]: a PASS/FAIL line (stderr), counted in $work/checks.
check() {
    if [ "$2" -eq 0 ]; then
        say "PASS $1"
        echo "PASS $1" >>"$work/checks"
    else
        say "FAIL $1"
        echo "FAIL $1" >>"$work/checks"
        if [ -n "${3:-}" ] && [ -s "$3" ]; then tail -20 "$3" | sed 's/^/    /' >&2; fi
    fi
}
die() {
    check "$1" 1 "${2:-}"
    exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }

# ================================ phase 2: the boots (no network) ================================
if [ "${1:-}" = --boots ]; then
    work=$WALA_BENCH_WORK
    ssh_base=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes
        -o ConnectTimeout=5 -o LogLevel=ERROR)
    # rssh DIR ARGS...: the harness's root login into the VM of DIR.
    rssh() {
        local d=$1
        shift
        ssh "${ssh_base[@]}" -p "$(cat "$d/ssh_port")" -i "$work/keys/root" root@127.0.0.1 "$@"
    }
    free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

    pids=()
    # shellcheck disable=SC2317 # called through the EXIT trap
    stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
    trap stop_all EXIT

    # start_vm DIR VARIANT: a fresh fabric (recording), fresh resource disk, qemu on a snapshot of
    # the variant's root image. DIR gets t0, fab_t0, ssh_port, qemu.pid, fabric.pid, traffic.log.
    start_vm() {
        local d=$1 v=$2 port wire hgap imds
        mkdir -p "$d"
        port=$(free_port)
        echo "$port" >"$d/ssh_port"
        echo "$v" >"$d/variant"
        cp --sparse=always "$WALA_BENCH_RESOURCE" "$d/res.raw"
        now >"$d/fab_t0"
        "$WALA_BENCH_FABRIC" --advertise-platform-addresses --ports-file "$d/ports.json" \
            --record "$d/record.jsonl" >"$d/fabric.out" 2>"$d/fabric.err" &
        echo $! >"$d/fabric.pid"
        pids+=("$!")
        for _ in $(seq 100); do [ -s "$d/ports.json" ] && break; sleep 0.05; done
        read -r wire hgap imds < <(python3 "$tool" ports "$d/ports.json")
        now >"$d/t0"
        local img=${v%-dracut}
        vm_qemu "$d" "$work/$img.vmlinuz" "$work/$v.initrd" "$work/$img.raw" on "$work/ovf.iso" "$d/res.raw" \
            "$(python3 -c 'import uuid; print(uuid.uuid4())')" \
            "$(vm_netdev "$port" "$wire" "$hgap" "$imds" "$d/traffic.log")" &
        echo $! >"$d/qemu.pid"
        pids+=("$!")
    }

    # stop_vm DIR: the root disk is a snapshot, so the VM is simply ended (SIGTERM to qemu).
    stop_vm() {
        local d=$1
        kill "$(cat "$d/qemu.pid")" "$(cat "$d/fabric.pid")" 2>/dev/null
        wait "$(cat "$d/qemu.pid")" "$(cat "$d/fabric.pid")" 2>/dev/null
        rm -f "$d/res.raw"
    }

    # wait_login DIR TIMEOUT: polls an ssh login (the provisioned user with the OVF key; root with
    # the harness key for `none`, which has no user) until it succeeds. Prints seconds since t0;
    # each attempt is a line of DIR/logins.log.
    wait_login() {
        local d=$1 deadline who=$user key=$work/keys/user
        deadline=$(($(date +%s) + $2))
        case $(cat "$d/variant") in none | floor | floor-dracut) who=root key=$work/keys/root ;; esac
        local t0 a rc
        t0=$(cat "$d/t0")
        while [ "$(date +%s)" -lt "$deadline" ]; do
            a=$(since "$t0")
            ssh "${ssh_base[@]}" -p "$(cat "$d/ssh_port")" -i "$key" "$who@127.0.0.1" true </dev/null >/dev/null 2>"$d/login.err"
            rc=$?
            # Each attempt: its start, its end (seconds since t0), ssh's status and last message.
            echo "$a $(since "$t0") $rc $(tail -1 "$d/login.err")" >>"$d/logins.log"
            if [ $rc -eq 0 ]; then
                since "$t0"
                return 0
            fi
            sleep 0.5
        done
        return 1
    }

    # wait_ready DIR TIMEOUT: waits until the fabric recorded Health Ready. Prints "FIRST READY"
    # (seconds since t0 from the fabric's record, "-" for none).
    wait_ready() {
        local d=$1 deadline first ready
        deadline=$(($(date +%s) + $2))
        while :; do
            read -r first ready < <(python3 "$tool" times "$d/record.jsonl" "$(cat "$d/fab_t0")" "$(cat "$d/t0")")
            if [ "$ready" != - ] || [ "$(date +%s)" -ge "$deadline" ]; then break; fi
            sleep 1
        done
        echo "$first $ready"
    }

    # sample DIR OUT: the agent's processes (wala: wala-agentd and any wala-provision;
    # waagent: `waagent -daemon` and `-run-exthandlers`) with /proc/<pid>/stat and VmRSS, and the
    # CPU systemd accounted to the agent's units (cgroup), written to OUT. Prints
    # "PROCS RSS_KIB CPU_S UNITS_CPU_S UPTIME_S" (CPU: user+system, own + reaped children; the
    # guest's uptime when the sample began).
    sample() {
        local d=$1 out=$2
        # shellcheck disable=SC2016 # runs in the guest
        rssh "$d" sh -s "$(cat "$d/variant")" >"$out" 2>&1 <<'EOF'
v=$1
echo "uptime $(cut -d' ' -f1 /proc/uptime)"
case $v in
    wala | wala-dracut) units="wala-provision-local.service wala-provision-keys.service wala-provision-disk.service wala-provision-network.service wala-network-setup.service wala-agentd.service" ;;
    waagent) units="walinuxagent.service" ;;
    *) units="" ;;
esac
for p in /proc/[0-9]*; do
    comm=$(cat "$p/comm" 2>/dev/null) || continue
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    case $v in
        wala | wala-dracut) case $comm in wala-agentd | wala-provision) ;; *) continue ;; esac ;;
        waagent) case $cmd in *waagent*-daemon* | *waagent*-run-exthandlers*) ;; *) continue ;; esac ;;
        *) continue ;;
    esac
    stat=$(cat "$p/stat" 2>/dev/null) || continue
    rss=$(awk '/^VmRSS:/ { print $2 }' "$p/status" 2>/dev/null)
    echo "proc ${p#/proc/} $comm ${rss:-0} ${stat##*) }"
    # The daemon's resident KiB by what is mapped (the executable, each library, heap, stacks).
    [ "$comm" = wala-agentd ] && awk '/^[0-9a-f]+-[0-9a-f]+ / { n = split($NF, a, "/"); m = (NF >= 6) ? a[n] : "[anon]" }
        /^Rss:/ { r[m] += $2 } END { for (m in r) if (r[m]) print "map", r[m], m }' "$p/smaps" 2>/dev/null
done
echo "clk $(getconf CLK_TCK)"
for u in $units; do
    echo "unit $u $(systemctl show -p CPUUsageNSec --value "$u") $(systemctl show -p ActiveState --value "$u")"
done
EOF
        # proc PID COMM RSS then stat from field 3 on: field k is $(k + 2): utime $16, stime $17,
        # cutime $18, cstime $19. A unit without a CPU figure counts 0 when it is inactive (it did
        # not run: a condition skipped it); an active unit without one makes the sum "-".
        awk '$1 == "uptime" { up = $2 }
             $1 == "clk" { clk = $2 }
             $1 == "proc" { n++; rss += $4; ticks += $16 + $17 + $18 + $19 }
             $1 == "unit" { if ($3 ~ /^[0-9]+$/) ns += $3; else if ($NF != "inactive") missing = 1; units++ }
             END { if (!clk) clk = 100
                   printf "%d %d %.2f %s %s\n", n, rss, ticks / clk,
                       (units && !missing) ? sprintf("%.2f", ns / 1e9) : "-", up ? up : "-" }' "$out"
    }

    vm_accel "$work/wala.vmlinuz" "$work"
    # --- the # lines: what this was measured on -------------------------------------------------
    {
        echo "# wala vs waagent in the VM harness (bench/vm-vs-waagent.sh), $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        echo "# machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "# accelerator: $accel_name; guests: -machine pc -smp 2 -m 2048"
        echo "# qemu: $(qemu-system-x86_64 --version | head -1); host kernel: $(uname -r); guest kernel: $(cat "$work/guest-kernel")"
        echo "# wala: $(cat "$work/wala-version"); waagent: Debian package $(cat "$work/waagent-version") (with the test-only resource disk shim); none: no agent"
        echo "# rounds: $WALA_BENCH_ROUNDS (order ${booted[*]}; medians); steady window: $WALA_BENCH_STEADY_SECONDS s, wala and waagent side by side"
        echo "# times from qemu start; ssh login: the provisioned user with the OVF key (none, floor, floor-dracut: root with the harness key); 1 min: guest uptime 60 s"
    }

    # --- boots -------------------------------------------------------------------------------------
    # The images were just written: flush them first, or the first boot pays for the writeback.
    sync
    for r in $(seq "$WALA_BENCH_ROUNDS"); do
        for v in "${booted[@]}"; do
            d=$work/boot-$r-$v
            say "round $r/$WALA_BENCH_ROUNDS: booting $v"
            start_vm "$d" "$v"
            banner=$(WALA_PROBE_LOG=$d/probes.log python3 "$tool" banner "$(cat "$d/ssh_port")" 300 "$(cat "$d/t0")" "$d/serial.log") || banner=-
            login=$(wait_login "$d" 300) || login=-
            first=- ready=-
            if [ "$v" != none ]; then read -r first ready < <(wait_ready "$d" 300); fi
            if [ "$login" = - ] && [ "$banner" = - ]; then
                check "round $r $v: boots to sshd within 300 s" 1 "$d/serial.log"
                stop_vm "$d"
                continue
            fi
            # sshd's start as the guest saw it: seconds from userspace's start (systemd's own
            # clock) to ssh.service active; free of the firmware's and kernel's boot-to-boot noise.
            sshd_us=$(rssh "$d" systemctl show -p UserspaceTimestampMonotonic --value \; \
                systemctl show -p ActiveEnterTimestampMonotonic --value ssh.service 2>/dev/null |
                awk 'NR == 1 { u = $1 } NR == 2 { a = $1 }
                     END { if (u > 0 && a > 0) printf "%.2f", (a - u) / 1e6; else print "-" }')
            # One minute after boot (guest uptime), or at once when that has passed.
            up=$(rssh "$d" "cut -d' ' -f1 /proc/uptime" 2>/dev/null)
            up=${up%.*}
            [ -n "$up" ] && [ "$up" -lt 60 ] && sleep $((60 - up))
            read -r nprocs rss cpu ucpu up < <(sample "$d" "$d/sample-1min.txt")
            say "round $r $v: sshd started ${sshd_us} s after userspace, banner ${banner} s, login ${login} s, first request ${first} s, Ready ${ready} s; at uptime ${up} s: $nprocs agent processes, RSS $rss KiB, CPU $cpu s (units $ucpu s)"
            if [ "$v" = none ] || [ "${v%-dracut}" = floor ]; then
                [ "$login" != - ]
                check "round $r $v: root logs in with the harness key" $?
                [ "$nprocs" = 0 ]
                check "round $r $v: no agent process" $?
                if [ "${v%-dracut}" = floor ]; then
                    python3 "$tool" get "http://127.0.0.1:$(python3 "$tool" ports "$d/ports.json" | cut -d' ' -f1)/__fabric/health" \
                        >"$d/health.json" 2>/dev/null || echo '[]' >"$d/health.json"
                    python3 "$tool" health "$d/health.json" ready >"$d/health.check" 2>&1
                    check "round $r $v: the minimal reporter's Ready reached the fabric (at $ready s)" $? "$d/health.check"
                fi
                rss=- cpu=- ucpu=-
                rssh "$d" journalctl -b --no-pager -o short-monotonic >"$d/journal.txt" 2>&1
                rssh "$d" systemd-analyze critical-chain --no-pager ssh.service >"$d/critical-chain.txt" 2>&1
            else
                python3 "$tool" get "http://127.0.0.1:$(python3 "$tool" ports "$d/ports.json" | cut -d' ' -f1)/__fabric/health" \
                    >"$d/health.json" 2>/dev/null || echo '[]' >"$d/health.json"
                python3 "$tool" health "$d/health.json" ready >"$d/health.check" 2>&1
                rc=$?
                check "round $r $v: Ready reported to the fabric (at $ready s; $(head -1 "$d/health.check"))" $rc "$d/health.check"
                [ "$login" != - ]
                check "round $r $v: $user logs in with the OVF key (at $login s)" $?
                fs=$(rssh "$d" findmnt -n -o SOURCE,FSTYPE /mnt/resource 2>/dev/null)
                [[ "$fs" == /dev/sd*1\ ext4 ]]
                check "round $r $v: resource disk mounted at /mnt/resource ($fs)" $?
                swap=$(rssh "$d" swapon --noheadings --show=NAME,SIZE 2>/dev/null | paste -sd' ')
                [[ "$swap" == /mnt/resource/* ]]
                check "round $r $v: swap on the resource disk ($swap)" $?
                if [ "$v" = waagent ]; then
                    rssh "$d" cat /var/log/waagent.log >"$d/waagent.log" 2>&1
                    grep -q 'wala-bench shim: resource disk' "$d/waagent.log"
                    check "round $r waagent: the shim answered the resource disk lookup" $? "$d/waagent.log"
                else
                    rssh "$d" journalctl -b --no-pager -o short-monotonic >"$d/journal.txt" 2>&1
                    rssh "$d" systemd-analyze critical-chain --no-pager wala-provision-network.service \
                        ssh.service >"$d/critical-chain.txt" 2>&1
                    rssh "$d" wala-agentd boot-report --json >"$d/timeline.json" 2>"$d/timeline.err"
                fi
            fi
            printf 'to_first_wire_request %s\nto_health_ready %s\nto_sshd_banner %s\nto_ssh_login %s\nsshd_started_userspace %s\nagent_rss_1min %s\nagent_cpu_1min %s\nagent_units_cpu_1min %s\n' \
                "$first" "$ready" "$banner" "$login" "$sshd_us" "$rss" "$cpu" "$ucpu" >"$d/metrics"
            stop_vm "$d"
        done
    done

    # --- steady state: wala and waagent side by side, nothing changing -----------------------------
    # WALA_BENCH_STEADY_SECONDS=0: no steady window (the steady rows are then "–").
    steady=(wala waagent)
    [ "$WALA_BENCH_STEADY_SECONDS" -gt 0 ] || steady=()
    [ ${#steady[@]} -eq 0 ] || say "steady state: booting ${steady[*]} side by side"
    for v in "${steady[@]}"; do start_vm "$work/steady-$v" "$v"; done
    ok=()
    for v in "${steady[@]}"; do
        d=$work/steady-$v
        login=$(wait_login "$d" 400) || login=-
        read -r _ ready < <(wait_ready "$d" 400)
        [ "$login" != - ] && [ "$ready" != - ]
        rc=$?
        check "steady $v: Ready (at $ready s) and $user logs in (at $login s)" $rc "$d/serial.log"
        [ $rc -eq 0 ] && ok+=("$v")
    done
    for v in "${ok[@]}"; do
        d=$work/steady-$v
        now >"$d/w0"
        read -r _ _ cpu ucpu _ < <(sample "$d" "$d/sample-start.txt")
        echo "$cpu $ucpu" >"$d/start"
    done
    if [ ${#ok[@]} -gt 0 ]; then
        say "steady state: measuring for $WALA_BENCH_STEADY_SECONDS s"
        sleep "$WALA_BENCH_STEADY_SECONDS"
    fi
    for v in "${ok[@]}"; do
        d=$work/steady-$v
        now >"$d/w1"
        read -r nprocs rss cpu ucpu _ < <(sample "$d" "$d/sample-end.txt")
        read -r cpu0 ucpu0 <"$d/start"
        read -r up down conns < <(python3 "$tool" traffic "$d/traffic.log" "$(cat "$d/w0")" "$(cat "$d/w1")")
        reqs=$(python3 "$tool" requests "$d/record.jsonl" "$(cat "$d/fab_t0")" "$(cat "$d/w0")" "$(cat "$d/w1")")
        win=$(awk -v a="$(cat "$d/w1")" -v b="$(cat "$d/w0")" 'BEGIN { printf "%.1f", a - b }')
        dcpu=$(awk -v a="$cpu" -v b="$cpu0" 'BEGIN { printf "%.2f", a - b }')
        ducpu=-
        [ "$ucpu" != - ] && [ "$ucpu0" != - ] && ducpu=$(awk -v a="$ucpu" -v b="$ucpu0" 'BEGIN { printf "%.2f", a - b }')
        say "steady $v: window $win s: CPU $dcpu s (units $ducpu s), RSS $rss KiB ($nprocs processes), $up B to / $down B from the platform in $conns connections, $reqs requests"
        for when in start end; do
            maps=$(awk '$1 == "map" { print $2, $3 }' "$d/sample-$when.txt" | sort -rn |
                awk '{ printf "%s%s %s KiB", sep, $2, $1; sep = ", " }')
            [ -z "$maps" ] || say "steady $v: resident at the window's $when by mapping: $maps"
        done
        [ "$nprocs" -gt 0 ]
        check "steady $v: the agent is still running at the end of the window ($nprocs processes)" $?
        printf 'agent_cpu %s\nagent_units_cpu %s\nagent_rss_end %s\nbytes_to_platform %s\nbytes_from_platform %s\nconnections %s\nrequests %s\nwindow %s\n' \
            "$dcpu" "$ducpu" "$rss" "$up" "$down" "$conns" "$reqs" "$win" >"$d/metrics"
    done
    for v in "${steady[@]}"; do stop_vm "$work/steady-$v"; done

    # --- the rows ----------------------------------------------------------------------------------
    python3 - "$work" "$dash" <<'EOF'
import os, statistics, sys
work, dash = sys.argv[1], sys.argv[2]

def metrics(path):
    out = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                k, _, v = line.strip().partition(" ")
                out[k] = v
    except OSError:
        pass
    return out

def fmt(vals, unit):
    nums = []
    for v in vals:
        try:
            nums.append(float(v))
        except (TypeError, ValueError):
            pass
    if not nums:
        return dash
    m = statistics.median(nums)
    return f"{m:.0f}" if unit in ("KiB", "B", "count") else f"{m:.2f}"

boot = [
    ("to_first_wire_request", "s"), ("to_health_ready", "s"), ("to_sshd_banner", "s"),
    ("to_ssh_login", "s"), ("sshd_started_userspace", "s"), ("agent_rss_1min", "KiB"), ("agent_cpu_1min", "s"),
    ("agent_units_cpu_1min", "s"),
]
steady = [
    ("agent_cpu", "s"), ("agent_units_cpu", "s"), ("agent_rss_end", "KiB"),
    ("bytes_to_platform", "B"), ("bytes_from_platform", "B"), ("connections", "count"),
    ("requests", "count"), ("window", "s"),
]
dirs = sorted(os.listdir(work))

def median(v, name, unit):
    # boot-<round>-<variant>: the variant is everything after the round number.
    vals = [metrics(os.path.join(work, d, "metrics")).get(name) for d in dirs
            if d.startswith("boot-") and d.split("-", 2)[2:] == [v]]
    return fmt(vals, unit)

# The floor column: the floor image (a minimal Ready reporter) for the platform figures, the
# no-agent image for sshd and logins.
floor_of = {"to_first_wire_request": "floor", "to_health_ready": "floor"}
for name, unit in boot:
    floor = median(floor_of.get(name, "none"), name, unit)
    if name.startswith("agent_"):
        floor = dash
    print("\t".join(["boot", name, unit, median("wala", name, unit), median("waagent", name, unit), floor]))
# wala-dracut's floor is the floor image with a dracut initramfs, for all four times.
for name, unit in boot[:5]:
    print("\t".join(["boot", name + "_dracut", unit, median("wala-dracut", name, unit),
                     median("waagent", name, unit), median("floor-dracut", name, unit)]))

def diff(a, b):
    try:
        return f"{float(a) - float(b):+.2f} s"
    except ValueError:
        return dash

for v in ("wala", "wala-dracut"):
    parts = []
    for name, label in (("to_sshd_banner", "sshd banner"), ("to_ssh_login", "login"),
                        ("sshd_started_userspace", "sshd started (guest clock, from userspace start)"),
                        ("to_first_wire_request", "first request"), ("to_health_ready", "Ready")):
        floor = "floor-dracut" if v == "wala-dracut" else floor_of.get(name, "none")
        parts.append(f"{label} {diff(median(v, name, 's'), median(floor, name, 's'))}")
    print(f"# {v} minus its floor (medians): " + ", ".join(parts))
for v in ("wala", "wala-dracut"):
    chains = sorted(d for d in dirs if d.startswith("boot-") and d.split("-", 2)[2:] == [v])
    if chains:
        try:
            with open(os.path.join(work, chains[-1], "critical-chain.txt"), encoding="utf-8") as f:
                print(f"# systemd-analyze critical-chain, {chains[-1]}:")
                for line in f:
                    print("#   " + line.rstrip())
        except OSError:
            pass
for name, unit in steady:
    cols = [fmt([metrics(os.path.join(work, f"steady-{v}", "metrics")).get(name)], unit)
            for v in ("wala", "waagent")]
    print("\t".join(["steady", name, unit] + cols + [dash]))
EOF
    # --- the timeline: the last round of wala, wala-dracut, waagent and floor side by side ----------
    # wala's own records count from kernel start; they are moved onto the harness's axis (qemu
    # start) by the difference between Ready as the fabric saw it and wala's own record of it.
    # The others get the points seen from outside: first request, Ready, sshd banner, login.
    python3 - "$work" "$WALA_BENCH_ROUNDS" <<'EOF'
import json, os, sys
work, r = sys.argv[1], sys.argv[2]
for v in ("wala", "wala-dracut", "waagent", "floor", "floor-dracut", "none"):
    d = os.path.join(work, f"boot-{r}-{v}")
    m = {}
    try:
        with open(os.path.join(d, "metrics"), encoding="utf-8") as f:
            m = dict(line.split() for line in f if len(line.split()) == 2)
    except OSError:
        continue
    entries = []
    own = []
    try:
        with open(os.path.join(d, "timeline.json"), encoding="utf-8") as f:
            own = json.load(f)
    except (OSError, ValueError):
        pass
    # The anchor: Ready, which the fabric records as it arrives (the end of wala's report-ready
    # step); the sshd banner seen from outside can come seconds after systemd's "sshd ready"
    # when the guest is busy, so it is only the fallback (for a record without report-ready).
    anchor = next(((e["end"], "to_health_ready") for e in own
                   if e.get("name") == "report-ready" and e.get("end") is not None), None)
    if anchor is None:
        anchor = next(((e["start"], "to_sshd_banner") for e in own if e.get("name") == "sshd ready"), None)
    if own and anchor is not None and m.get(anchor[1]) not in (None, "-"):
        shift = float(m[anchor[1]]) - float(anchor[0])
        for e in own:
            if e.get("lane") == "boot":
                continue
            e = dict(e, start=e["start"] + shift)
            if e.get("end") is not None:
                e["end"] = e["end"] + shift
            entries.append(e)
    for key, name in (("to_first_wire_request", "first WireServer request"), ("to_health_ready", "Ready"),
                      ("to_sshd_banner", "sshd banner"), ("to_ssh_login", "login")):
        if m.get(key) not in (None, "-"):
            entries.append({"lane": "seen from outside", "name": name, "start": float(m[key]), "kind": "mark"})
    with open(os.path.join(work, f"compare-{v}.json"), "w", encoding="utf-8") as f:
        json.dump(entries, f)
EOF
    compare=()
    for v in "${variants[@]}"; do
        [ -s "$work/compare-$v.json" ] && compare+=(--compare "$v=$work/compare-$v.json")
    done
    if "$WALA_BENCH_AGENTD" boot-report --svg "$work/timeline.svg" "${compare[@]}" >"$work/timeline.txt" 2>&1; then
        echo "# timeline (round $WALA_BENCH_ROUNDS, seconds from qemu start): $work/timeline.svg"
    else
        say "timeline: $(tail -1 "$work/timeline.txt")"
    fi
    echo "BENCH DONE" >>"$work/checks"
    exit 0
fi

# ================================ phase 1: build ================================================
run_start=$(date +%s)
if [ "$(id -u)" -ne 0 ]; then
    echo "FAIL the benchmark needs root (debootstrap, chroot, mkfs)" >&2
    exit 1
fi
work=$(mktemp -d "${WALA_VM_WORK:-/var/tmp}/wala-bench.XXXXXX")
: >"$work/checks"
say "work directory: $work"
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
    if [ "${WALA_BENCH_KEEP:-}" = 1 ] || grep -q '^FAIL' "$work/checks" || ! grep -q '^BENCH DONE' "$work/checks"; then
        say "kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

vm_install_tools "$work/apt.log" || die "tools: apt-get install" "$work/apt.log"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
t=$(date +%s)
make --no-print-directory deb >"$work/build.log" 2>&1 || die "make deb" "$work/build.log"
deb=$repo/$(sed -n 's/^build-deb: //p' "$work/build.log" | tail -1)
cargo build --release --locked -p wala-fabric >>"$work/build.log" 2>&1 || die "cargo build -p wala-fabric" "$work/build.log"
say "built $(basename "$deb") and wala-fabric ($(($(date +%s) - t)) s)"
basename "$deb" .deb >"$work/wala-version"

base=$("$vm/image.sh") || die "base image (tests/vm/image.sh)"
say "base image: $base"

t=$(date +%s)
wtree=$(vm_waagent_tree "$base" "$WALA_BENCH_WAAGENT_VERSION") || die "waagent tree (apt-get install waagent=$WALA_BENCH_WAAGENT_VERSION in a chroot)"
chroot "$wtree" dpkg-query -W -f="\${Version}" waagent >"$work/waagent-version" 2>/dev/null
say "waagent tree: $wtree ($(cat "$work/waagent-version"), $(($(date +%s) - t)) s)"

mkdir -p "$work/keys"
ssh-keygen -q -t ed25519 -N '' -C wala-bench-user -f "$work/keys/user"
ssh-keygen -q -t ed25519 -N '' -C wala-bench-root -f "$work/keys/root"

# configure_VARIANT TREE: what each image gets on top of its tree.
configure_wala() {
    local tree=$1
    cp "$deb" "$tree/tmp/wala.deb"
    vm_apt_install "$tree" "$work/dpkg.log" /tmp/wala.deb || return 1
    rm -f "$tree/tmp/wala.deb"
    # The VM test's keys, less Logs.Verbose (both agents log at their packaged default).
    vm_set_conf "$tree/etc/waagent.conf" Provisioning.Agent waagent
    vm_set_conf "$tree/etc/waagent.conf" ResourceDisk.Format y
    vm_set_conf "$tree/etc/waagent.conf" ResourceDisk.MountPoint /mnt/resource
    vm_set_conf "$tree/etc/waagent.conf" ResourceDisk.EnableSwap y
    vm_set_conf "$tree/etc/waagent.conf" ResourceDisk.SwapSizeMB "$swap_mb"
    vm_set_conf "$tree/etc/waagent.conf" Wala.WireServer 168.63.129.16
}
configure_waagent() {
    vm_waagent_configure "$1" "$swap_mb"
}
configure_none() { :; }
# The floor for Ready (TEST ONLY): what any agent must at least do, with a conventional unit
# ordering: once network-online.target is reached, GET the goal state and POST Health Ready. In
# bash (its /dev/tcp), since the stock image has neither curl nor python.
configure_floor() {
    local tree=$1
    install -d "$tree/usr/local/sbin"
    cat >"$tree/usr/local/sbin/wala-bench-ready" <<'EOF'
#!/bin/bash
# wala benchmark, TEST ONLY: report Ready to the WireServer, nothing else.
set -euo pipefail
ws=168.63.129.16
req() { # req METHOD PATH BODY: one HTTP/1.1 request, the answer on stdout
    exec 3<>"/dev/tcp/$ws/80"
    printf '%s %s HTTP/1.1\r\nHost: %s\r\nx-ms-agent-name: wala-bench-floor\r\nx-ms-version: 2012-11-30\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
        "$1" "$2" "$ws" "${#3}" "$3" >&3
    cat <&3
    exec 3<&-
}
gs=$(req GET '/machine/?comp=goalstate' '')
field() { sed -n "s:.*<$1>\([^<]*\)</$1>.*:\1:p" <<<"$gs" | head -1; }
body="<?xml version=\"1.0\" encoding=\"utf-8\"?><Health xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><GoalStateIncarnation>$(field Incarnation)</GoalStateIncarnation><Container><ContainerId>$(field ContainerId)</ContainerId><RoleInstanceList><Role><InstanceId>$(field InstanceId)</InstanceId><Health><State>Ready</State></Health></Role></RoleInstanceList></Container></Health>"
req POST '/machine?comp=health' "$body" | head -1
EOF
    chmod 0755 "$tree/usr/local/sbin/wala-bench-ready"
    cat >"$tree/etc/systemd/system/wala-bench-ready.service" <<'EOF'
[Unit]
Description=wala benchmark (TEST ONLY): report Ready after the network is online
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/wala-bench-ready

[Install]
WantedBy=multi-user.target
EOF
    mkdir -p "$tree/etc/systemd/system/multi-user.target.wants"
    ln -sf /etc/systemd/system/wala-bench-ready.service "$tree/etc/systemd/system/multi-user.target.wants/"
}

# dracut_initrd TREE KVER OUT [DRACUT_ARG...]: an initramfs built inside TREE by dracut (with
# `--add wala` for the wala image; the floor's has no wala).
dracut_initrd() {
    local tree=$1 kver=$2 out=$3
    shift 3
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --mount --propagation private sh -c '
        tree=$1 kver=$2; shift 2
        mount -t proc proc "$tree/proc" && mount -t sysfs sys "$tree/sys" && mount --rbind /dev "$tree/dev" &&
        chroot "$tree" dracut --force --no-hostonly "$@" --kver "$kver" /tmp/initrd-dracut.img' \
        sh "$tree" "$kver" "$@" >"$work/dracut.log" 2>&1 && mv "$tree/tmp/initrd-dracut.img" "$out"
}

t=$(date +%s)
for v in "${variants[@]}"; do
    # wala-dracut and floor-dracut: the wala and floor images with a dracut initramfs (made below)
    [ "${v%-dracut}" != "$v" ] && continue
    tree=$work/tree-$v
    if [ "$v" = waagent ]; then src=$wtree; else src=$base; fi
    cp -a --reflink=auto "$src" "$tree"
    "configure_$v" "$tree" || die "$v image: configuration" "$work/dpkg.log"
    install -d -m 0700 "$tree/root/.ssh"
    install -m 0600 "$work/keys/root.pub" "$tree/root/.ssh/authorized_keys"
    kver=$(basename "$(find "$tree/lib/modules" -mindepth 1 -maxdepth 1 | sort | tail -1)")
    cp "$tree/boot/vmlinuz-$kver" "$work/$v.vmlinuz"
    cp "$tree/boot/initrd.img-$kver" "$work/$v.initrd"
    echo "$kver" >"$work/guest-kernel"
    if [ "$v" = wala ]; then
        dracut_initrd "$tree" "$kver" "$work/wala-dracut.initrd" --add wala || die "wala image: dracut initramfs" "$work/dracut.log"
    elif [ "$v" = floor ]; then
        dracut_initrd "$tree" "$kver" "$work/floor-dracut.initrd" || die "floor image: dracut initramfs" "$work/dracut.log"
    fi
    mkfs.ext4 -q -F -L wala-root -d "$tree" "$work/$v.raw" 3G >"$work/mkfs.log" 2>&1 || die "$v image: mkfs.ext4 -d" "$work/mkfs.log"
    rm -rf "$tree"
done
check "root images wala and floor (each also with a dracut initramfs), waagent, none ($(($(date +%s) - t)) s)" 0

resource=$(vm_resource_disk "$work") || die "resource disk template" "$work/resource.log"
vm_make_dvd "$work/ovf.iso" "$work/dvd" "$vm_host" "$user" "" true "#!/bin/sh
echo wala bench custom data" "$work/keys/user.pub" || die "provisioning DVD" "$work/genisoimage.log"
say "prepared in $(($(date +%s) - run_start)) s"

# ================================ phase 2, inside unshare --net =================================
export WALA_BENCH_WORK=$work WALA_BENCH_RESOURCE=$resource
export WALA_BENCH_FABRIC=$CARGO_TARGET_DIR/release/wala-fabric
export WALA_BENCH_AGENTD=$CARGO_TARGET_DIR/release/wala-agentd
if unshare --net true 2>/dev/null; then
    say "network: qemu, the fabrics and ssh run inside 'unshare --net' (only loopback exists)"
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --net -- sh -c 'ip link set lo up && exec "$0" --boots' "$repo/bench/vm-vs-waagent.sh"
else
    say "NOTE: unshare --net is not permitted here: relying on slirp restrict=on alone"
    "$repo/bench/vm-vs-waagent.sh" --boots
fi
grep -q '^BENCH DONE' "$work/checks" || check "the boot phase finished" 1
passed=$(grep -c '^PASS' "$work/checks")
failed=$(grep -c '^FAIL' "$work/checks")
echo "# checks: $passed passed, $failed failed; $(($(date +%s) - run_start)) s in all"
say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
