//! A VM that waagent provisioned, taken over by wala (docs/migration.md): waagent's files under
//! `/var/lib/waagent` are read as waagent wrote them (the layouts and formats below follow
//! waagent 2.7's code: `write_provisioned`, `set_handler_state`, `set_handler_status`,
//! `create_handler_env`, the transport key pair made by `openssl req -x509 -nodes -newkey
//! rsa:2048`) and nothing is done twice. The real daemon against the fabric on loopback.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;
use wala_fabric::Listener;

/// The SMBIOS UUID the test VMs have, and waagent's instance id for it (the first three groups
/// byte-swapped, as waagent writes it into `provisioned` on every VM generation).
const PRODUCT_UUID: &str = "7e5c3f2a-1b4d-4e6f-8a9b-0c1d2e3f4a5b";
const WAAGENT_INSTANCE_ID: &str = "2a3f5c7e-4d1b-6f4e-8a9b-0c1d2e3f4a5b";

fn lib(root: &Path) -> PathBuf {
    root.join("var/lib/waagent")
}

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if e.file_type().expect("type").is_dir() {
                todo.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).expect("prefix").to_path_buf(),
                    std::fs::read(&p).expect("read"),
                );
            }
        }
    }
    out
}

/// The transport key pair as waagent makes it, with the openssl command line it runs.
fn waagent_transport_pair(lib: &Path) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-subj",
            "/CN=LinuxTransport",
            "-days",
            "730",
            "-newkey",
            "rsa:2048",
        ])
        .arg("-keyout")
        .arg(lib.join("TransportPrivate.pem"))
        .arg("-out")
        .arg(lib.join("TransportCert.pem"))
        .output()
        .expect("openssl (the openssl package; waagent's own dependency)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A certificate and key pair an extension's protected settings were once encrypted with, as
/// waagent leaves them: `<THUMBPRINT>.crt` and `<THUMBPRINT>.prv` (a traditional RSA key, as
/// older OpenSSL wrote it).
fn waagent_old_certificate(lib: &Path) {
    let key = lib.join("tmp.key");
    let crt = lib.join("tmp.crt");
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().expect("openssl");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let (k, c) = (key.to_str().expect("utf8"), crt.to_str().expect("utf8"));
    run(&["genrsa", "-traditional", "-out", k, "2048"]);
    run(&["req", "-x509", "-new", "-key", k, "-subj", "/CN=old-extension-cert", "-days", "30", "-out", c]);
    let fp = run(&["x509", "-in", c, "-noout", "-fingerprint", "-sha1"]);
    let thumb: String = String::from_utf8_lossy(&fp.stdout)
        .split('=')
        .nth(1)
        .expect("fingerprint")
        .trim()
        .replace(':', "")
        .to_uppercase();
    std::fs::rename(&crt, lib.join(format!("{thumb}.crt"))).expect("crt");
    std::fs::rename(&key, lib.join(format!("{thumb}.prv"))).expect("prv");
}

/// A root for the fabric with this VM's SMBIOS UUID (Gen1: no EFI) and waagent's state after it
/// provisioned the VM: the marker, the transport pair, an old certificate, and no wala file.
fn provisioned_by_waagent(fabric: &wala_fabric::Fabric) -> tempfile::TempDir {
    let root = root_for(fabric, "Provisioning.Agent=waagent\n");
    std::fs::write(root.path().join("sys/class/dmi/id/product_uuid"), format!("{PRODUCT_UUID}\n"))
        .expect("uuid");
    let lib = lib(root.path());
    std::fs::write(lib.join("provisioned"), WAAGENT_INSTANCE_ID).expect("marker");
    waagent_transport_pair(&lib);
    waagent_old_certificate(&lib);
    std::fs::write(lib.join("ovf-env.xml"), "<Environment/>").expect("ovf");
    root
}

#[test]
fn waagent_dash_daemon_on_a_vm_waagent_provisioned_sends_no_provisioning_report_and_keeps_its_files() {
    let fabric = wala_fabric::Fabric::start_builtin().expect("fabric");
    let root = provisioned_by_waagent(&fabric);
    let before = snapshot(&lib(root.path()));
    // `waagent -daemon` runs `daemon --provision`: the provisioning stages, then the daemon.
    let out = Command::new(BIN)
        .args(["daemon", "--provision", "--dvd-timeout", "1", "--goal-state-period-ms", "20"])
        .args(["--max-wakeups", "10", "--root"])
        .arg(root.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("already provisioned"), "{stderr}");
    // No NotReady/Provisioning, no Ready, no failure: nothing about provisioning at all.
    assert!(fabric.health_reports().is_empty(), "{:?}", fabric.health_reports());
    // The daemon's own status: Ready.
    let doc = status_doc(&fabric);
    assert_eq!(doc["aggregateStatus"]["guestAgentStatus"]["status"], "Ready", "{doc}");
    // The certificates were fetched with waagent's transport certificate, which was reused.
    let fetched = fabric
        .requests()
        .iter()
        .any(|r| r.listener == Listener::Wireserver && r.target.contains("certificates"));
    assert!(fetched, "the goal state's certificates were fetched");
    let after = snapshot(&lib(root.path()));
    for (path, data) in &before {
        assert_eq!(after.get(path), Some(data), "{} changed or went away", path.display());
    }
    // No wala state file was made up for a VM it did not provision.
    assert!(!after.contains_key(Path::new("wala-provisioning.json")), "{:?}", after.keys());
}

#[test]
fn a_handler_waagent_installed_and_enabled_is_not_installed_again_and_enabled_once_as_waagent_does_on_start()
{
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.Takeover";
    let h = Handler { name, packages: vec![Package::new("1.0.0")] };
    let config =
        extensions_config(&[plugin(name, "1.0.0", "enabled")], &[settings(name, "1.0.0", 3, "three")], "");
    let (fabric, _scenario) = start(&[h], &log, &config);
    let root = root_for(&fabric, "");
    let dir = lib(root.path()).join(format!("{name}-1.0.0"));

    // Install and enable it once, so that the handler's own files are in place; then leave its
    // directory as waagent 2.7 leaves it: no file of wala's, waagent's HandlerState,
    // HandlerStatus and HandlerEnvironment.json text.
    run_polls(root.path(), 10);
    assert_eq!(
        ops(&log),
        ["install Wala.Test.Takeover-1.0.0 v=1.0.0", "enable Wala.Test.Takeover-1.0.0 v=1.0.0"]
    );
    for e in std::fs::read_dir(dir.join("config")).expect("config").flatten() {
        if e.file_name().to_string_lossy().ends_with(".wala-seq") {
            std::fs::remove_file(e.path()).expect("rm");
        }
    }
    std::fs::write(dir.join("config/HandlerState"), "Enabled").expect("state");
    std::fs::write(
        dir.join("config/HandlerStatus"),
        format!(
            r#"{{"name": "{name}", "version": "1.0.0", "status": "Ready", "code": 0, "message": "Plugin enabled", "supports_multi_config": false, "extension_status": null}}"#
        ),
    )
    .expect("status");
    let logs_dir = root.path().join("var/log/azure").join(name);
    std::fs::write(
        dir.join("HandlerEnvironment.json"),
        format!(
            r#"[{{"name": "{name}", "version": 1.0, "handlerEnvironment": {{"logFolder": "{l}", "configFolder": "{d}/config", "statusFolder": "{d}/status", "heartbeatFile": "{d}/heartbeat.log"}}}}]"#,
            l = logs_dir.display(),
            d = dir.display()
        ),
    )
    .expect("env");
    // The extension's own record of the last sequence number it ran (CustomScript's `mrseq`).
    std::fs::write(dir.join("mrseq"), "3").expect("mrseq");
    std::fs::remove_file(&log).expect("reset the log");
    let zips = |f: &wala_fabric::Fabric| f.requests().iter().filter(|r| r.target.ends_with(".zip")).count();
    let downloaded = zips(&fabric);

    // wala takes over: the handler is not downloaded or installed again; enable runs once with
    // the same sequence number (waagent calls enable at every start of its daemon; the extension
    // decides from its own mrseq), and not again after that.
    run_polls(root.path(), 10);
    assert_eq!(ops(&log), ["enable Wala.Test.Takeover-1.0.0 v=1.0.0"]);
    assert!(log_lines(&log)[0].contains(" seq=3 "), "{:?}", log_lines(&log));
    assert_eq!(zips(&fabric), downloaded, "no download");
    std::fs::remove_file(&log).expect("reset the log");
    run_polls(root.path(), 10);
    assert!(!log.exists() || ops(&log).is_empty(), "{:?}", ops(&log));
    assert_eq!(std::fs::read_to_string(dir.join("config/HandlerState")).expect("state"), "Enabled");
    assert_eq!(std::fs::read_to_string(dir.join("mrseq")).expect("mrseq"), "3");
    let doc = status_doc(&fabric);
    assert_eq!(handler(&doc, name)["status"], "Ready", "{doc}");
}

#[test]
fn a_second_daemon_on_the_same_machine_exits_6_and_leaves_the_first_running() {
    // A unit running `waagent -daemon` next to wala-agentd.service: the second daemon stops.
    let fabric = wala_fabric::Fabric::start_builtin().expect("fabric");
    let root = root_for(&fabric, "");
    let first = spawn(root.path());
    let lock = root.path().join("run/wala/agentd.lock");
    wait_for("the first daemon's lock", std::time::Duration::from_secs(8), || {
        std::fs::read_to_string(&lock).is_ok_and(|t| !t.trim().is_empty())
    });
    let out = Command::new(BIN)
        .args(["daemon", "--provision", "--max-wakeups", "3", "--root"])
        .arg(root.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("another wala daemon is running"), "{stderr}");
    assert!(fabric.health_reports().is_empty(), "the second one provisioned nothing");
    // The first one is in its loop (it posted its status) and stops cleanly on SIGTERM.
    wait_status(&fabric, "the first daemon's status", |d| {
        d["aggregateStatus"]["guestAgentStatus"]["status"] == "Ready"
    });
    stop(first);
}
