"""The fabric side of tests/vm/handlers.sh (real extension handlers under wala in a VM).

  scenario SRC DST HANDLERS_JSON VMACCESS_ZIP CUSTOMSCRIPT_ZIP KEYS
      A fabric scenario in DST: SRC's goal state, HostingEnvironmentConfig, SharedConfig and
      Versions, no vmSettings, one certificate, an ExtensionsConfig without handlers, each zip
      with a PluginVersionManifest naming it, and the script CustomScript downloads. HANDLERS_JSON
      gets the handlers (name and version from each zip's own manifest.xml) and the settings of
      sequence numbers 0 and 1 (keys and passwords from the KEYS directory).
  fabric URL thumbprint
      The thumbprint of the fabric's first (tenant) certificate.
  fabric URL apply HANDLERS_JSON SEQ STATE
      Serves both handlers in STATE (enabled, disabled, uninstall) with sequence number SEQ's
      settings, the protected ones encrypted by the fabric to the tenant certificate, and starts a
      new incarnation.
  status URL HANDLERS_JSON WANT TIMEOUT
      Waits up to TIMEOUT seconds for the status blob to show both handlers as WANT: a sequence
      number (Ready, that sequence number, its settings status success), `disabled` (NotReady,
      "disabled" in the message) or `gone` (neither in the status). Prints the last status.
"""

import json
import os
import re
import shutil
import sys
import time
import urllib.request
import zipfile
from xml.sax.saxutils import escape, quoteattr

# Neither a .sh or .py suffix nor a "#!" line: CustomScriptForLinux 1.5.5 converts such files
# with open(path, 'rU'), a mode Python 3.11 no longer has, and fails the download (as it does
# under waagent on Debian 12). The command runs it with `sh`.
SCRIPT = "wala-customscript"


def manifest_of(zip_path):
    """(name, version) from the handler zip's own manifest.xml."""
    with zipfile.ZipFile(zip_path) as z:
        text = z.read("manifest.xml").decode("utf-8")
    field = lambda tag: re.search(r"<%s>([^<]+)</%s>" % (tag, tag), text).group(1).strip()
    return field("ProviderNameSpace") + "." + field("Type"), field("Version")


def scenario(src, dst, handlers_json, vmaccess_zip, customscript_zip, keys):
    os.makedirs(dst, exist_ok=True)
    for f in ("GoalState.xml", "HostingEnvironmentConfig.xml", "SharedConfig.xml", "versions.xml"):
        shutil.copy(os.path.join(src, f), dst)
    files = {}
    handlers = []
    for kind, z in (("vmaccess", vmaccess_zip), ("customscript", customscript_zip)):
        name, version = manifest_of(z)
        zip_name = "%s__%s.zip" % (name, version)
        shutil.copy(z, os.path.join(dst, zip_name))
        with open(os.path.join(dst, name + ".manifest.xml"), "w") as m:
            m.write(
                '<?xml version="1.0" encoding="utf-8"?>\n'
                '<PluginVersionManifest xmlns:i="http://www.w3.org/2001/XMLSchema-instance">\n'
                "  <Plugins>\n    <Plugin>\n      <Version>%s</Version>\n      <Uris>\n"
                "        <Uri>{{wire}}/artifacts/%s/%s</Uri>\n      </Uris>\n    </Plugin>\n"
                "  </Plugins>\n  <InternalPlugins />\n</PluginVersionManifest>\n" % (version, name, zip_name)
            )
        files["/artifacts/%s/manifest.xml" % name] = name + ".manifest.xml"
        files["/artifacts/%s/%s" % (name, zip_name)] = zip_name
        handlers.append({"kind": kind, "name": name, "version": version})
    with open(os.path.join(dst, SCRIPT), "w") as s:
        s.write('echo "customscript seq $1 ran as $(id -un)" | tee /var/tmp/wala-customscript.out\n')
    files["/blobs/" + SCRIPT] = SCRIPT
    with open(os.path.join(dst, "ExtensionsConfig.xml"), "w") as e:
        e.write(extensions_config([], "enabled", {}, ""))
    with open(os.path.join(dst, "scenario.json"), "w") as j:
        json.dump(
            {
                "incarnation": 1,
                "goal_state": "GoalState.xml",
                "hosting_environment_config": "HostingEnvironmentConfig.xml",
                "shared_config": "SharedConfig.xml",
                "extensions_config": "ExtensionsConfig.xml",
                "versions": "versions.xml",
                "certificates": 1,
                "status_blob_path": "/statusblob/vm.status",
                "files": files,
            },
            j,
            indent=2,
        )
    key = lambda k: open(os.path.join(keys, k + ".pub")).read().strip()
    password = lambda n: open(os.path.join(keys, "password-%d" % n)).read().strip()
    script_uri = "http://168.63.129.16/blobs/" + SCRIPT
    settings = {
        # seq 0: VMAccess resets the provisioned user's key (prior keys removed) and password;
        # CustomScript downloads the script and runs the command given in the protected settings.
        "0": {
            "vmaccess": {"public": {}, "protected": {"username": "azureuser", "ssh_key": key("user2"),
                                                     "password": password(0), "remove_prior_keys": True}},
            "customscript": {"public": {"fileUris": [script_uri], "enableInternalDNSCheck": "false"},
                             "protected": {"commandToExecute": "sh %s 0" % SCRIPT}},
        },
        # seq 1: VMAccess adds a new user; CustomScript runs a new command.
        "1": {
            "vmaccess": {"public": {}, "protected": {"username": "vmaccessuser", "ssh_key": key("user3"),
                                                     "password": password(1)}},
            "customscript": {"public": {"fileUris": [script_uri], "enableInternalDNSCheck": "false"},
                             "protected": {"commandToExecute": "sh %s 1" % SCRIPT}},
        },
    }
    with open(handlers_json, "w") as h:
        os.fchmod(h.fileno(), 0o600)
        json.dump({"handlers": handlers, "settings": settings}, h, indent=2)


def extensions_config(handlers, state, runtime, _thumb):
    plugins = "".join(
        '    <Plugin name=%s version=%s location="{{wire}}/artifacts/%s/manifest.xml" state="%s" '
        'autoUpgrade="false" failoverlocation="{{wire}}/artifacts/%s/manifest.xml" runAsStartupTask="false" '
        'isJson="true" useExactVersion="true" />\n'
        % (quoteattr(h["name"]), quoteattr(h["version"]), h["name"], state, h["name"])
        for h in handlers
    )
    settings = "".join(
        "    <Plugin name=%s version=%s>\n      <RuntimeSettings seqNo=\"%s\">%s</RuntimeSettings>\n    </Plugin>\n"
        % (quoteattr(h["name"]), quoteattr(h["version"]), runtime[h["name"]][0], escape(runtime[h["name"]][1]))
        for h in handlers
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<Extensions version="1.0.0.0" goalStateIncarnation="{{incarnation}}">\n'
        '  <GuestAgentExtension xmlns:i="http://www.w3.org/2001/XMLSchema-instance">\n'
        "    <GAFamilies><GAFamily><Name>Prod</Name><Uris><Uri>{{wire}}/artifacts/ga/Prod_manifest.xml</Uri></Uris>"
        "</GAFamily></GAFamilies>\n    <Location>testregion</Location>\n  </GuestAgentExtension>\n"
        '  <StatusUploadBlob statusBlobType="BlockBlob">{{wire}}/statusblob/vm.status?sv=2018-03-28&amp;sr=b&amp;'
        "sp=w&amp;sig=not-a-real-signature</StatusUploadBlob>\n"
        "  <Plugins>\n%s  </Plugins>\n  <PluginSettings>\n%s  </PluginSettings>\n</Extensions>\n" % (plugins, settings)
    )


def call(url, method="GET", body=None):
    req = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.read()


def thumbprint(base):
    return json.loads(call(base + "/__fabric/certificates"))[0]["thumbprint"]


def apply(base, handlers_json, seq, state):
    doc = json.load(open(handlers_json))
    thumb = thumbprint(base)
    runtime = {}
    for h in doc["handlers"]:
        s = doc["settings"][seq][h["kind"]]
        protected = call(base + "/__fabric/protect", "POST", json.dumps(s["protected"]).encode()).decode()
        handler_settings = {"protectedSettingsCertThumbprint": thumb, "protectedSettings": protected,
                            "publicSettings": s["public"]}
        runtime[h["name"]] = (seq, json.dumps({"runtimeSettings": [{"handlerSettings": handler_settings}]}))
    call(base + "/__fabric/extensionsconfig", "PUT", extensions_config(doc["handlers"], state, runtime, thumb).encode())
    n = call(base + "/__fabric/incarnation", "POST", b"").decode().strip()
    print("incarnation %s: %s, seq %s, %s" % (n, ", ".join(h["name"] for h in doc["handlers"]), seq, state))


def handler_states(status, names):
    """{name: (status, sequenceNumber, settings status, message)} of the named handlers in the blob."""
    out = {}
    for h in status.get("aggregateStatus", {}).get("handlerAggregateStatus", []):
        if h.get("handlerName") not in names:
            continue
        rs = h.get("runtimeSettingsStatus", {})
        st = rs.get("settingsStatus", {}).get("status", {})
        msg = json.dumps(h.get("formattedMessage", "")) + " " + json.dumps(st.get("formattedMessage", ""))
        out[h["handlerName"]] = (h.get("status"), rs.get("sequenceNumber"), st.get("status"), msg)
    return out


def wait_status(base, handlers_json, want, timeout):
    names = [h["name"] for h in json.load(open(handlers_json))["handlers"]]
    end = time.time() + float(timeout)
    last = None
    while time.time() < end:
        try:
            last = json.loads(call(base + "/__fabric/blob"))
        except Exception as e:  # no blob yet
            last = {"error": str(e)}
        states = handler_states(last, names)
        if want == "gone":
            ok = not states and "aggregateStatus" in last
        elif want == "disabled":
            ok = len(states) == len(names) and all(s[0] == "NotReady" and "disabled" in s[3] for s in states.values())
        else:
            ok = len(states) == len(names) and all(
                s[0] == "Ready" and str(s[1]) == want and s[2] == "success" for s in states.values()
            )
        if ok:
            print(json.dumps(states, indent=1))
            return 0
        time.sleep(2)
    print("timed out after %s s waiting for %s; last status:" % (timeout, want))
    print(json.dumps(last, indent=1)[-6000:])
    return 1


def main(argv):
    if argv[0] == "scenario":
        scenario(*argv[1:7])
        return 0
    if argv[0] == "fabric" and argv[2] == "thumbprint":
        print(thumbprint(argv[1]))
        return 0
    if argv[0] == "fabric" and argv[2] == "apply":
        apply(argv[1], argv[3], argv[4], argv[5])
        return 0
    if argv[0] == "status":
        return wait_status(argv[1], argv[2], argv[3], argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
