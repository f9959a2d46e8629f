#!/usr/bin/env python3
"""Small helpers for tests/vm/run.sh (python3 standard library only).

  vmtool.py relay HOST PORT [LOG LABEL]
                                      copy stdin/stdout to a TCP connection (qemu guestfwd cmd:);
                                      with LOG, append "EPOCH open|up|down BYTES LABEL" lines to it
                                      (up: guest to platform, down: platform to guest)
  vmtool.py traffic LOG START END     print "UP DOWN CONNECTIONS" summed from a relay LOG over the
                                      epoch-seconds window [START, END)
  vmtool.py requests RECORD FABRIC_T0 START END
                                      print how many requests the fabric recorded in [START, END)
  vmtool.py ports PORTS_FILE          print "WIRE HGAP IMDS" ports from wala-fabric's ports file
  vmtool.py banner PORT TIMEOUT T0 [CONSOLE]
                                      wait until an SSH banner is served on 127.0.0.1:PORT; print
                                      the seconds since T0 (epoch seconds) when it was; with
                                      CONSOLE (the serial log), probe only once systemd printed
                                      there that sshd started
  vmtool.py get URL                   print the body of a loopback GET
  vmtool.py times RECORD FABRIC_T0 T0 print "FIRST_WIRE READY" (seconds since T0, or "-") from
                                      the fabric's record file; FABRIC_T0 is when the fabric started
  vmtool.py health HEALTH_JSON ready|ready-only|failed [WORD]|no-provisioning|none
                                      check the Health reports the fabric received: ready:
                                      NotReady/Provisioning (optional) then Ready, nothing else;
                                      ready-only: one Ready and nothing else (nothing provisioned);
                                      failed: NotReady/ProvisioningFailed whose Description names
                                      WORD, and no Ready after it; no-provisioning: no report
                                      about provisioning at all (waagent's migrated VM); none:
                                      no Health report at all (a reboot of a provisioned VM).
                                      Exit 0 when it holds, else 1.
  vmtool.py imds-first RECORD         check that the fabric's record has a GET /metadata/instance
                                      on the IMDS listener before the first Health report. Exit 0
                                      when it holds, else 1.
  vmtool.py put URL FILE              PUT FILE's bytes to a loopback URL (the fabric's control
                                      endpoints); print the answer
  vmtool.py reports HEALTH_JSON       print the Health reports as "State/SubStatus@incarnation, ..."
  vmtool.py count RECORD PATH         print how many requests to URL path PATH the fabric recorded
  vmtool.py qmp SOCKET COMMAND [ARGUMENTS_JSON [EVENT]]
                                      run one QMP command on qemu's socket (after the capabilities
                                      handshake); with EVENT, then wait up to 60 s for that event.
                                      Exit 1 on a QMP error or when the event does not come.
Only loopback addresses are ever contacted.
"""

import json
import os
import re
import select
import socket
import sys
import time
import urllib.request


def loopback_only(host):
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"vmtool: refusing non-loopback address {host}")


class ByteLog:
    """Appends one line per relayed chunk to a log shared by all relays of a VM (O_APPEND)."""

    def __init__(self, path, label):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None
        self.label = label

    def note(self, what, n):
        if self.fd is not None:
            os.write(self.fd, f"{time.time():.3f} {what} {n} {self.label}\n".encode())


def relay(host, port, log="", label="-"):
    loopback_only(host)
    counter = ByteLog(log, label)
    counter.note("open", 0)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.settimeout(None)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    inputs = [stdin, sock]
    while inputs:
        readable, _, _ = select.select(inputs, [], [], 300)
        if not readable:
            break
        for r in readable:
            if r is sock:
                data = sock.recv(65536)
                if not data:
                    return
                counter.note("down", len(data))
                os.write(stdout, data)
            else:
                data = os.read(stdin, 65536)
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    inputs.remove(stdin)
                else:
                    counter.note("up", len(data))
                    sock.sendall(data)


def ports(path):
    with open(path, encoding="utf-8") as f:
        p = json.load(f)
    out = []
    for k in ("wireserver", "hostgaplugin", "imds"):
        host, port = p[k].rsplit(":", 1)
        loopback_only(host)
        out.append(port)
    print(" ".join(out))


def wait_console(path, pattern, deadline):
    """Waits until the serial console log at PATH has a line matching PATTERN; True when it has."""
    seen = b""
    while time.time() < deadline:
        try:
            with open(path, "rb") as f:
                seen = f.read()
        except OSError:
            pass
        if re.search(pattern, seen):
            return True
        time.sleep(0.05)
    return False


def banner(port, timeout, t0, console=None):
    # Probes overlap: a new connection every 0.1 s. slirp accepts on the host side at once and
    # then sends its SYN to the guest; before the guest's network is up nothing answers and slirp
    # retransmits on TCP's back-off (seconds apart, growing). One probe at a time, each waiting
    # for its answer, would see a banner up to its own back-off late, so single boots differed by
    # seconds; with overlapping probes the banner is seen within about 0.1 s of being served.
    # A probe that ends without a banner was refused: the guest answered (no sshd yet). Then every
    # probe opened before that refusal and still silent is stuck in slirp's back-off (had its SYN
    # reached the guest, it would have been refused too) and is dropped, at every refusal. A
    # probe opened after the last refusal has reached the guest and, silent, was accepted by an
    # sshd that has not sent its banner yet: it is kept (up to 10 s), and at most 8 are open then,
    # below sshd's MaxStartups (10): probes once flooded an sshd slowed by the RSA key being made
    # beside it, it dropped them past MaxStartups, and the probe closed the rest before their
    # banner, for 100 s. Before any refusal a probe is kept 5 s. Refusals in the first 3 s after
    # T0 do not count: the guest cannot answer before its kernel has started, and slirp closes a
    # connection made while the guest's network card is not set up yet; counted, that once left
    # 8 probes stuck in back-off from 0.9 s to 19 s, and every image's banner read about 19 s.
    # With CONSOLE (the guest's serial console log), no probe is made before systemd has printed
    # there that sshd started (or a getty its login prompt): slirp keeps retrying a connection to the guest after the host side
    # closed it, so probes made while the guest's network was down all reached sshd later, dozens
    # of them within seconds (sshd logged "beginning MaxStartups throttling"), and forked while
    # the logins and the boot being measured went on. Every image prints the line (systemd's
    # status output on ttyS0); without it the probes start at once.
    # WALA_PROBE_LOG=FILE: every probe's opening and end, in seconds since T0 (to see what the
    # figure is made of).
    t0 = float(t0)
    events = []
    log_path = os.environ.get("WALA_PROBE_LOG")

    def note(what, s=None):
        if log_path:
            events.append(f"{time.time() - t0:.2f} {what}" + (f" fd {s.fileno()}" if s else ""))

    deadline = time.time() + float(timeout)
    if console:
        # Or the console's login prompt: once a getty holds the console, systemd prints no more
        # status lines there, and a boot whose sshd took longer to start than the getty (2026-12-07,
        # a dracut boot) never printed the line.
        started = wait_console(console, rb"Started \S{0,20}sshd?\.service|\S+ login: ", deadline)
        note("the console says sshd started (or shows its login prompt)" if started else "the console never said sshd started")
        if not started:
            return 1
    probes = {}  # socket -> when it was opened
    next_probe = 0.0
    refused_at = None  # the last refusal that counts
    try:
        while time.time() < deadline:
            now = time.time()
            limit = 64 if refused_at is None else 8
            if now >= next_probe and len(probes) < limit:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                if s.connect_ex(("127.0.0.1", int(port))) in (0, 115):  # 115: EINPROGRESS
                    probes[s] = now
                    note(f"open ({len(probes)} open)", s)
                else:
                    s.close()
                next_probe = now + 0.1
            ready, _, _ = select.select(list(probes), [], [], 0.05)
            for s in ready:
                try:
                    data = s.recv(64)
                except OSError:
                    data = b""
                # sshd answers "Exceeded MaxStartups" instead of its banner while more than
                # MaxStartups (10) connections wait for authentication: slirp's retries of probes
                # given up can all reach an sshd started before the guest's network at once. It
                # is sshd serving, and it goes on refusing until those connections time out
                # (LoginGraceTime, 120 s), so it counts as the banner.
                if data.startswith(b"SSH-") or data.startswith(b"Exceeded MaxStartups"):
                    what = "banner" if data.startswith(b"SSH-") else "sshd answered (Exceeded MaxStartups)"
                    note(f"{what}, probe opened at {probes[s] - t0:.2f}", s)
                    print(f"{time.time() - t0:.2f}")
                    return 0
                note(f"ended ({data[:40]!r}), opened at {probes[s] - t0:.2f}", s)
                del probes[s]
                s.close()
                if time.time() - t0 >= 3:
                    refused_at = time.time()
            now = time.time()
            for s, opened in list(probes.items()):
                stuck = refused_at is not None and opened < refused_at
                if stuck or now - opened > (5 if refused_at is None else 10):
                    note("stuck in back-off, dropped" if stuck else "given up", s)
                    del probes[s]
                    s.close()
    finally:
        for s in probes:
            s.close()
        if log_path:
            with open(log_path, "w", encoding="utf-8") as f:
                f.write("\n".join(events) + "\n")
    return 1


def get(url):
    host = re.match(r"http://([^:/]+)", url)
    loopback_only(host.group(1) if host else "")
    with urllib.request.urlopen(url, timeout=10) as r:
        sys.stdout.write(r.read().decode("utf-8", "replace"))


def times(record, fabric_t0, t0):
    offset = float(fabric_t0) - float(t0)
    first, ready = None, None
    try:
        with open(record, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("listener") != "wireserver":
            continue
        at = r["elapsed_ms"] / 1000.0 + offset
        if first is None:
            first = at
        if ready is None and "comp=health" in r.get("target", "") and r.get("method") == "POST":
            body = r.get("body", "")
            if re.search(r"<State>\s*Ready\s*</State>", body):
                ready = at
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print(fmt(first), fmt(ready))


def put(url, path):
    host = re.match(r"http://([^:/]+)", url)
    loopback_only(host.group(1) if host else "")
    with open(path, "rb") as f:
        body = f.read()
    req = urllib.request.Request(url, data=body, method="PUT")
    with urllib.request.urlopen(req, timeout=10) as r:
        sys.stdout.write(r.read().decode("utf-8", "replace"))


def reports(path):
    with open(path, encoding="utf-8") as f:
        seq = json.load(f)
    print(", ".join(f"{r.get('state')}/{r.get('substatus') or ''}@{r.get('incarnation') or ''}" for r in seq))


def count(record, path):
    n = 0
    try:
        with open(record, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            target = json.loads(line).get("target", "")
        except ValueError:
            continue
        if target.split("?", 1)[0] == path:
            n += 1
    print(n)


def qmp(sock_path, command, arguments="{}", event=""):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(sock_path)
    f = s.makefile("rwb")

    def send(obj):
        f.write((json.dumps(obj) + "\r\n").encode())
        f.flush()

    def until(pred):
        deadline = time.time() + 60
        while time.time() < deadline:
            line = f.readline()
            if not line:
                return None
            msg = json.loads(line)
            if pred(msg):
                return msg
        return None

    until(lambda m: "QMP" in m)
    send({"execute": "qmp_capabilities"})
    until(lambda m: "return" in m or "error" in m)
    send({"execute": command, "arguments": json.loads(arguments)})
    answer = until(lambda m: "return" in m or "error" in m)
    if answer is None or "error" in answer:
        print(f"qmp {command}: {answer}")
        return 1
    if event:
        got = until(lambda m: m.get("event") == event)
        if got is None:
            print(f"qmp {command}: no {event} event within 60 s")
            return 1
        print(json.dumps(got))
    return 0


def traffic(log, start, end):
    start, end = float(start), float(end)
    up = down = conns = 0
    try:
        with open(log, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            at, what, n = float(parts[0]), parts[1], int(parts[2])
        except ValueError:
            continue
        if not start <= at < end:
            continue
        if what == "up":
            up += n
        elif what == "down":
            down += n
        elif what == "open":
            conns += 1
    print(up, down, conns)


def requests(record, fabric_t0, start, end):
    start, end, base = float(start), float(end), float(fabric_t0)
    n = 0
    try:
        with open(record, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            at = base + json.loads(line)["elapsed_ms"] / 1000.0
        except (ValueError, KeyError, TypeError):
            continue
        if start <= at < end:
            n += 1
    print(n)


def health(path, want, word=""):
    with open(path, encoding="utf-8") as f:
        reports = json.load(f)
    seq = [(r.get("state"), r.get("substatus"), r.get("description") or "") for r in reports]
    print("reports: " + (", ".join(f"{s}/{ss or '-'}" for s, ss, _ in seq) or "none"))
    if want == "none":
        if seq:
            print("a health report on a boot that had nothing to report")
            return 1
        return 0
    if want == "ready-only":
        if [(s, ss) for s, ss, _ in seq] != [("Ready", None)]:
            print("not exactly one Ready and nothing else")
            return 1
        return 0
    if want == "no-provisioning":
        # Nothing about provisioning: no NotReady/Provisioning, no ProvisioningFailed.
        bad = [f"{s}/{ss}" for s, ss, _ in seq if ss in ("Provisioning", "ProvisioningFailed")]
        if bad:
            print("provisioning reported: " + ", ".join(bad))
            return 1
        return 0
    if want == "ready":
        if not seq or seq[-1][0] != "Ready":
            print("no Ready report (or not last)")
            return 1
        first_ready = next(i for i, r in enumerate(seq) if r[0] == "Ready")
        for s, ss, _ in seq[:first_ready]:
            if (s, ss) != ("NotReady", "Provisioning"):
                print(f"unexpected {s}/{ss} before Ready")
                return 1
        if any(s != "Ready" for s, _, _ in seq[first_ready:]):
            print("something other than Ready after Ready")
            return 1
        return 0
    failed = [i for i, r in enumerate(seq) if r[1] == "ProvisioningFailed"]
    if not failed:
        print("no NotReady/ProvisioningFailed report")
        return 1
    i = failed[0]
    if seq[i][0] != "NotReady" or word.lower() not in seq[i][2].lower():
        print(f"ProvisioningFailed description does not name {word!r}")
        return 1
    if any(s == "Ready" for s, _, _ in seq[i:]):
        print("Ready reported after ProvisioningFailed")
        return 1
    return 0


def imds_first(record):
    try:
        with open(record, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        print(f"cannot read {record}: {e}")
        return 1
    seen_imds = False
    for r in lines:
        if r.get("listener") == "imds" and r.get("target", "").startswith("/metadata/instance"):
            seen_imds = True
        if r.get("listener") == "wireserver" and "comp=health" in r.get("target", ""):
            print("IMDS asked before the first Health report" if seen_imds else "a Health report came first")
            return 0 if seen_imds else 1
    print("IMDS asked, no Health report" if seen_imds else "no IMDS request and no Health report")
    return 1


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    # Subcommands that answer with an exit status return it; the others print and succeed.
    commands = {
        "relay": relay,
        "ports": ports,
        "banner": banner,
        "get": get,
        "times": times,
        "traffic": traffic,
        "requests": requests,
        "health": health,
        "imds-first": imds_first,
        "put": put,
        "reports": reports,
        "count": count,
        "qmp": qmp,
    }
    if cmd not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[cmd](*args) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
