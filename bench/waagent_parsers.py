#!/usr/bin/env python3
"""Times waagent's own document parsers over a list of files: the Python half of
bench/parsers-vs-waagent.sh (the Rust half is shared/benches/parsers.rs, same method).

Usage: waagent_parsers.py [--check] [--rounds N] [--warmup W] LIST
       waagent_parsers.py --about

azurelinuxagent must be importable (the script puts nothing on sys.path itself). LIST holds
`kind<TAB>path` lines (kinds as in MANIFEST.tsv). Every file is read into memory first and
decoded the way waagent's own readers do (BOM removed except for waagent.conf); only parsing
is timed.

  --check   parse each document once; print accept/reject lines.
  (default) per kind: W warm-up rounds, then N timed rounds, each parsing every document of
            the kind once; print `time<TAB>kind<TAB>docs<TAB>us` with the median round time
            divided by the number of documents. Rejected documents are reported and not timed.
  --about   print `waagent<TAB>version<TAB>python version<TAB>module path`.

Host safety: nothing here writes files or opens sockets. Constructors that want a wire client
get a stub that hands back the document's own text; socket connections are refused outright
so that a code path overlooked here fails instead of reaching the network.
"""

import socket
import sys
import time
import types


class _NoNetwork(socket.socket):
    def connect(self, *args, **kwargs):
        raise OSError("waagent_parsers.py: network access refused")

    def connect_ex(self, *args, **kwargs):
        raise OSError("waagent_parsers.py: network access refused")


socket.socket = _NoNetwork

# pylint: disable=wrong-import-position
from azurelinuxagent.common.conf import ConfigurationProvider
from azurelinuxagent.common.protocol import goal_state as _goal_state
from azurelinuxagent.common.protocol.extensions_goal_state_factory import ExtensionsGoalStateFactory
from azurelinuxagent.common.protocol.goal_state import GoalState, HostingEnv, SharedConfig
from azurelinuxagent.common.protocol.ovfenv import OvfEnv
from azurelinuxagent.common.utils.textutil import findtext, parse_doc, remove_bom
from azurelinuxagent.common.version import AGENT_VERSION

# GoalState retries a document without a RoleInstance 6 times, 0.5 s apart, then rejects it.
# Such a document is never timed (it is rejected), so skip the sleeps to keep --check quick.
_goal_state.time = types.SimpleNamespace(sleep=lambda _seconds: None)

KINDS = ["ovf-env", "goalstate", "extensionsconfig", "vmsettings", "hostingenv", "sharedconfig",
         "certificates", "waagent-conf"]


class StubWireClient(object):
    """The few WireClient methods the parsers call; fetch_config returns the document."""

    def __init__(self, text):
        self._text = text

    def get_endpoint(self):
        return "stub"

    def get_header(self):
        return {}

    def fetch_config(self, _uri, _headers):
        return self._text

    def send_request_using_appropriate_channel(self, _direct, _through_host):
        # The InVMArtifactsProfileBlob fetch: an empty profile, so nothing more is parsed (wala's
        # parse_extensions_config does not fetch or parse the profile either).
        return ""


def _certificates(text):
    # The parsing part of waagent's Certificates.__init__ (goal_state.py): the XML, then Data
    # and Format. The rest of that constructor writes files and runs openssl to decrypt.
    doc = parse_doc(text)
    findtext(doc, "Data")
    findtext(doc, "Format")


PARSERS = {
    "ovf-env": OvfEnv,
    "goalstate": lambda text: GoalState(StubWireClient(text)),
    "extensionsconfig": lambda text: ExtensionsGoalStateFactory.create_from_extensions_config(
        "1", text, StubWireClient(text)),
    "vmsettings": lambda text: ExtensionsGoalStateFactory.create_from_vm_settings("1", text),
    "hostingenv": HostingEnv,
    # waagent 2.7.3 keeps SharedConfig as text and never parses it.
    "sharedconfig": SharedConfig,
    "certificates": _certificates,
    "waagent-conf": lambda text: ConfigurationProvider().load(text),
}


def _one_line(text, limit=200):
    return " ".join(str(text).split())[:limit]


def read_documents(listing):
    docs = []
    with open(listing, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            kind, sep, path = line.partition("\t")
            if not sep or kind not in PARSERS:
                sys.exit("{0}:{1}: expected kind<TAB>path with a known kind".format(listing, number))
            with open(path, "rb") as doc:
                data = doc.read()
            # As waagent reads them: WireServer and HostGAPlugin bodies through remove_bom and
            # UTF-8 (wire.py decode_config, hostplugin.py), ovf-env.xml with read_file(remove_bom=True),
            # waagent.conf with plain read_file.
            if kind != "waagent-conf":
                data = remove_bom(data)
            try:
                docs.append((kind, path, data.decode("utf-8"), None))
            except UnicodeDecodeError as e:
                docs.append((kind, path, None, "not UTF-8: {0}".format(e)))
    return docs


def try_parse(kind, text):
    try:
        PARSERS[kind](text)
        return None
    except Exception as e:  # pylint: disable=broad-except
        return "{0}: {1}".format(type(e).__name__, _one_line(e))


def main(argv):
    check, rounds, warmup, listing = False, 1000, 20, None
    args = iter(argv)
    for a in args:
        if a == "--about":
            import azurelinuxagent  # pylint: disable=import-outside-toplevel
            print("waagent\t{0}\t{1}\t{2}".format(AGENT_VERSION, sys.version.split()[0], azurelinuxagent.__path__[0]))
            return 0
        if a == "--check":
            check = True
        elif a in ("--rounds", "--warmup"):
            value = int(next(args, "0"))
            if value <= 0:
                sys.exit("{0} needs a positive number".format(a))
            if a == "--rounds":
                rounds = value
            else:
                warmup = value
        elif listing is None and not a.startswith("-"):
            listing = a
        else:
            sys.exit("unexpected argument {0!r}".format(a))
    if listing is None:
        sys.exit(__doc__)

    docs = read_documents(listing)
    if check:
        for kind, path, text, error in docs:
            error = error or try_parse(kind, text)
            if error:
                print("reject\t{0}\t{1}\t{2}".format(kind, path, error))
            else:
                print("accept\t{0}\t{1}".format(kind, path))
        return 0

    for kind in KINDS:
        parse = PARSERS[kind]
        texts = []
        for k, path, text, error in docs:
            if k != kind:
                continue
            error = error or try_parse(kind, text)
            if error:
                print("reject\t{0}\t{1}\t{2}".format(kind, path, error))
            else:
                texts.append(text)
        if not texts:
            continue
        for _ in range(warmup):
            for text in texts:
                parse(text)
        times = []
        for _ in range(rounds):
            start = time.perf_counter_ns()
            for text in texts:
                parse(text)
            times.append(time.perf_counter_ns() - start)
        times.sort()
        print("time\t{0}\t{1}\t{2:.2f}".format(kind, len(texts), times[len(times) // 2] / 1000.0 / len(texts)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
