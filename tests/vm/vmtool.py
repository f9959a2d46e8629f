#!/usr/bin/env python3
"""Small helpers for tests/vm/run.sh (python3 standard library only).

  vmtool.py relay HOST PORT           copy stdin/stdout to a TCP connection (qemu guestfwd cmd:)
  vmtool.py ports PORTS_FILE          print "WIRE HGAP IMDS" ports from wala-fabric's ports file
  vmtool.py banner PORT TIMEOUT T0    wait until an SSH banner is served on 127.0.0.1:PORT; print
                                      the seconds since T0 (epoch seconds) when it was
  vmtool.py get URL                   print the body of a loopback GET
  vmtool.py times RECORD FABRIC_T0 T0 print "FIRST_WIRE READY" (seconds since T0, or "-") from
                                      the fabric's record file; FABRIC_T0 is when the fabric started
  vmtool.py health HEALTH_JSON ready|failed [WORD]
                                      check the Health reports the fabric received: ready:
                                      NotReady/Provisioning (optional) then Ready, nothing else;
                                      failed: NotReady/ProvisioningFailed whose Description names
                                      WORD, and no Ready after it. Exit 0 when it holds, else 1.
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


def relay(host, port):
    loopback_only(host)
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
                os.write(stdout, data)
            else:
                data = os.read(stdin, 65536)
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    inputs.remove(stdin)
                else:
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


def banner(port, timeout, t0):
    deadline = time.time() + float(timeout)
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=2) as s:
                s.settimeout(3)
                data = s.recv(64)
                if data.startswith(b"SSH-"):
                    print(f"{time.time() - float(t0):.2f}")
                    return 0
        except OSError:
            pass
        time.sleep(0.2)
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


def health(path, want, word=""):
    with open(path, encoding="utf-8") as f:
        reports = json.load(f)
    seq = [(r.get("state"), r.get("substatus"), r.get("description") or "") for r in reports]
    print("reports: " + (", ".join(f"{s}/{ss or '-'}" for s, ss, _ in seq) or "none"))
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


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "relay":
        relay(*args)
        return 0
    if cmd == "ports":
        ports(*args)
        return 0
    if cmd == "banner":
        return banner(*args)
    if cmd == "get":
        get(*args)
        return 0
    if cmd == "times":
        times(*args)
        return 0
    if cmd == "health":
        return health(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
