//! What the real daemon leaves in `Lib.Dir` for extensions and support tools, against the fabric
//! simulator on loopback: waagent's file names, the documents as the fabric served them (the
//! ExtensionsConfig redacted), modes, the status document as uploaded, the certificates, and a
//! goal-state history that stays within waagent's 50 entries over many incarnations. Also the
//! configuration keys the daemon honours for waagent (Pid.File, EnableOverProvisioning,
//! Extensions.InitialGoalStatePeriod) and `check-config`'s report.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;
use wala::base::limits::Document;
use wala::platform::endpoint::{Endpoint, Endpoints};
use wala::platform::wireserver::WireClient;

const HANDLER: &str = "Wala.Test.LibDir";
/// A protected setting as the platform sends it (base64 of an envelope; never decrypted here).
const PROTECTED: &str = "MIIBsAYJKoZIhvcNAQcDoIIBoTCCAZ0CAQAxggFpTESTONLYprotectedSECRET0000==";

fn lib(root: &Path) -> PathBuf {
    root.join("var/lib/waagent")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Single-config settings with a protected part.
fn protected_settings(seq: u64) -> String {
    format!(
        r#"<Plugin name="{HANDLER}" version="1.0.0"><RuntimeSettings seqNo="{seq}">{{"runtimeSettings":[{{"handlerSettings":{{"protectedSettingsCertThumbprint":"{{{{thumbprint}}}}","protectedSettings":"{PROTECTED}","publicSettings":{{"message":"lib"}}}}}}]}}</RuntimeSettings></Plugin>"#
    )
}

fn fabric_with_protected_settings(log: &Path) -> (wala_fabric::Fabric, tempfile::TempDir) {
    let config = extensions_config(&[plugin(HANDLER, "1.0.0", "enabled")], &[protected_settings(1)], "");
    start(&[Handler { name: HANDLER, packages: vec![Package::new("1.0.0")] }], log, &config)
}

/// A WireServer client of the test's own, to fetch what the fabric serves.
fn client(fabric: &wala_fabric::Fabric, dir: &Path) -> WireClient {
    let ep = |a: std::net::SocketAddr| Endpoint::new(a.ip().to_string(), a.port());
    WireClient::new(
        Endpoints::explicit(ep(fabric.wire_addr()), ep(fabric.hgap_addr()), ep(fabric.imds_addr())),
        dir,
    )
}

/// Every file under `dir`, with the members of zips as `<zip>!<member>`, and their contents.
fn all_files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        let meta = path.symlink_metadata().expect("stat");
        if meta.is_dir() {
            all_files(&path, out);
        } else if meta.is_file() {
            let data = std::fs::read(&path).expect("read");
            let name = path.display().to_string();
            if name.ends_with(".zip") {
                for m in wala::base::ziparchive::read_all(&data).expect("zip") {
                    out.push((format!("{name}!{}", m.name), m.data));
                }
            }
            out.push((name, data));
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn the_daemon_writes_waagents_files_with_the_served_documents_redacted_and_private() {
    let logs = tempfile::tempdir().expect("tempdir");
    let (fabric, _scenario) = fabric_with_protected_settings(&logs.path().join("ops.log"));
    let root = root_for(&fabric, "");
    run_polls(root.path(), 5);
    let l = lib(root.path());

    // What the fabric serves, fetched independently.
    let scratch = tempfile::tempdir().expect("tempdir");
    let c = client(&fabric, scratch.path());
    let fetched = c.goal_state().expect("goal state");
    let gs = &fetched.goal_state;
    let n = gs.incarnation;
    let hosting =
        c.fetch_document(gs.hosting_env_url.as_deref().unwrap(), Document::HostingEnvironmentConfig).unwrap();
    let shared = c.fetch_document(gs.shared_config_url.as_deref().unwrap(), Document::SharedConfig).unwrap();
    let ext =
        c.fetch_document(gs.extensions_config_url.as_deref().unwrap(), Document::ExtensionsConfig).unwrap();
    assert!(ext.contains(PROTECTED) && ext.contains("&amp;sig=x"), "the fabric serves secrets: {ext}");

    // The top of Lib.Dir: waagent's names and the documents as served.
    assert_eq!(read(&l.join(format!("GoalState.{n}.xml"))), fetched.xml);
    assert_eq!(read(&l.join("Incarnation")), n.to_string());
    assert_eq!(read(&l.join("HostingEnvironmentConfig.xml")), hosting);
    assert_eq!(read(&l.join("SharedConfig.xml")), shared);
    // What the Linux Diagnostic extension takes from it: the first Deployment's name.
    let hec = read(&l.join("HostingEnvironmentConfig.xml"));
    let deployment = hec.split("<Deployment name=\"").nth(1).and_then(|r| r.split('"').next());
    assert_eq!(deployment, Some("5c0ffee0c0de4b1d8a11fab41c000001"));
    // The ExtensionsConfig with exactly the secrets replaced.
    let expected = ext
        .replace("?sv=2018-03-28&amp;sr=b&amp;sp=w&amp;sig=x", "?***REDACTED***")
        .replace(PROTECTED, "***REDACTED***");
    assert_ne!(expected, ext);
    assert_eq!(read(&l.join(format!("ExtensionsConfig.{n}.xml"))), expected);
    for (name, want) in [
        (format!("GoalState.{n}.xml"), 0o644),
        ("HostingEnvironmentConfig.xml".into(), 0o644),
        ("SharedConfig.xml".into(), 0o644),
        ("Incarnation".into(), 0o644),
        (format!("ExtensionsConfig.{n}.xml"), 0o600),
        ("waagent_status.json".into(), 0o600),
        ("Certificates.pem".into(), 0o644),
    ] {
        assert_eq!(mode(&l.join(&name)), want, "{name}");
    }

    // The status document exactly as last uploaded.
    let blob = fabric.status_blob().expect("status blob");
    assert_eq!(std::fs::read(l.join("waagent_status.json")).unwrap(), blob.data);

    // Certificates: one .crt per certificate, a 0600 .prv per key, and Certificates.pem with
    // every certificate and no key.
    let pem = read(&l.join("Certificates.pem"));
    assert!(!pem.contains("PRIVATE KEY"));
    for cert in fabric.certificates() {
        let crt = l.join(format!("{}.crt", cert.thumbprint));
        assert!(pem.contains(read(&crt).trim()), "{} in Certificates.pem", cert.thumbprint);
        if cert.in_pfx_with_key {
            assert_eq!(mode(&l.join(format!("{}.prv", cert.thumbprint))), 0o600);
        }
    }

    // One history entry, waagent's name and files, private.
    let history = l.join("history");
    assert_eq!(mode(&history), 0o700);
    let entries: Vec<PathBuf> = std::fs::read_dir(&history).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(&format!("__{n}")) && name.as_bytes()[10] == b'T', "{name}");
    assert_eq!(mode(entry), 0o700);
    assert_eq!(read(&entry.join("GoalState.xml")), fetched.xml);
    assert_eq!(read(&entry.join("HostingEnvironmentConfig.xml")), hosting);
    assert_eq!(read(&entry.join("SharedConfig.xml")), shared);
    assert_eq!(read(&entry.join("ExtensionsConfig.xml")), expected);
    assert_eq!(std::fs::read(entry.join("waagent_status.json")).unwrap(), blob.data);
    let summary: serde_json::Value = serde_json::from_str(&read(&entry.join("Certificates.json"))).unwrap();
    let mut thumbprints: Vec<String> =
        summary.as_array().unwrap().iter().map(|c| c["thumbprint"].as_str().unwrap().to_string()).collect();
    thumbprints.sort();
    let mut served: Vec<String> = fabric.certificates().iter().map(|c| c.thumbprint.clone()).collect();
    served.sort();
    assert_eq!(thumbprints, served);
    for f in std::fs::read_dir(entry).unwrap().flatten() {
        assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
    }

    // The protected settings are in the handler's settings file (for the extension, as waagent
    // writes them) and nowhere else; no SAS signature is anywhere.
    let mut files = Vec::new();
    all_files(&l, &mut files);
    for (name, data) in &files {
        if contains(data, PROTECTED) {
            assert!(
                name.contains(&format!("/{HANDLER}-1.0.0/config/")) && name.ends_with(".settings"),
                "{name}"
            );
        }
        assert!(!contains(data, "sig=x"), "a SAS signature in {name}");
    }
    // The initial goal state is recorded, as waagent does.
    assert!(read(&l.join("initial_goal_state")).starts_with(&format!("incarnation_{n}")));
}

#[test]
fn over_many_incarnations_one_of_each_file_stays_and_the_history_keeps_fifty_entries() {
    let logs = tempfile::tempdir().expect("tempdir");
    let (fabric, _scenario) = fabric_with_protected_settings(&logs.path().join("ops.log"));
    let root = root_for(&fabric, "");
    let l = lib(root.path());
    // Waagent's leftovers of other incarnations go.
    std::fs::write(l.join("GoalState.7.xml"), "<xml>empty placeholder file</xml>").unwrap();
    std::fs::write(l.join("ExtensionsConfig.7.xml"), "<Extensions/>").unwrap();
    fabric.add_fault(
        wala_fabric::Fault::new(
            wala_fabric::Listener::Wireserver,
            "/machine/?comp=goalstate",
            wala_fabric::FaultAction::BumpIncarnation,
        )
        .times(60),
    );
    run_polls(root.path(), 70);
    let n = fabric.incarnation();
    assert!(n >= 61, "incarnation {n}");

    let mut numbered: Vec<String> = std::fs::read_dir(&l)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("GoalState.") || f.starts_with("ExtensionsConfig."))
        .collect();
    numbered.sort();
    assert_eq!(
        numbered,
        [format!("ExtensionsConfig.{n}.xml"), "GoalState.1.xml".into(), format!("GoalState.{n}.xml")]
    );
    assert_eq!(read(&l.join("GoalState.1.xml")), read(&l.join(format!("GoalState.{n}.xml"))));
    assert!(read(&l.join("GoalState.1.xml")).contains(&format!("<Incarnation>{n}</Incarnation>")));
    assert_eq!(read(&l.join("Incarnation")), n.to_string());

    let history = l.join("history");
    let mut names: Vec<String> = std::fs::read_dir(&history)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 50, "{names:?}");
    let dirs: Vec<&String> = names.iter().filter(|n| !n.ends_with(".zip")).collect();
    assert_eq!(dirs.len(), 1, "only the current entry is a directory: {dirs:?}");
    assert!(dirs[0].ends_with(&format!("__{n}")), "{dirs:?}");
    // Each archive holds its goal state: the incarnation in its name is the one inside.
    let mut incarnations = Vec::new();
    for zip in names.iter().filter(|n| n.ends_with(".zip")) {
        let tag: u64 = zip.trim_end_matches(".zip").rsplit("__").next().unwrap().parse().unwrap();
        let members = wala::base::ziparchive::read_all(&std::fs::read(history.join(zip)).unwrap()).unwrap();
        let gs = members.iter().find(|m| m.name == "GoalState.xml").expect("GoalState.xml");
        assert!(contains(&gs.data, &format!("<Incarnation>{tag}</Incarnation>")), "{zip}");
        assert!(members.iter().all(|m| !contains(&m.data, PROTECTED)), "{zip}");
        assert_eq!(mode(&history.join(zip)), 0o600);
        incarnations.push(tag);
    }
    incarnations.sort();
    // The newest 49 before the current one: the oldest went.
    assert_eq!(incarnations, (n - 49..n).collect::<Vec<u64>>());
    let total: u64 =
        std::fs::read_dir(&history).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
    assert!(total < wala::host::lib_dir::MAX_HISTORY_BYTES, "{total}");
}

#[test]
fn the_pid_file_names_the_daemon_while_it_runs() {
    let fabric = wala_fabric::Fabric::start_builtin().expect("fabric");
    let root = root_for(&fabric, "Pid.File=/run/wala-test.pid\n");
    std::fs::create_dir_all(root.path().join("run")).unwrap();
    let pid_file = root.path().join("run/wala-test.pid");
    let daemon = spawn(root.path());
    let pid = daemon_pid(&daemon);
    wait_for("the pid file", std::time::Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p == pid.to_string())
    });
    stop(daemon);
    assert!(!pid_file.exists(), "removed when the daemon stops");
}

fn daemon_pid(d: &Daemon) -> u32 {
    d.pid()
}

/// vmSettings with one Fast Track extension, on hold or not.
fn on_hold_vm_settings(on_hold: bool) -> String {
    serde_json::json!({
        "hostGAPluginVersion": "1.0.8.143",
        "vmSettingsSchemaVersion": "0.0",
        "activityId": "2e7f8b5d-f637-4721-b757-cb190d49b4e9",
        "correlationId": "1bef4c48-044e-4225-8f42-1d1eac1eb158",
        "inSvdSeqNo": 7,
        "extensionsLastModifiedTickCount": CONFIG_TICKS + 10_000_000,
        "extensionGoalStatesSource": "FastTrack",
        "onHold": on_hold,
        "statusUploadBlob": {"statusBlobType": "BlockBlob", "value": "{{wire}}/statusblob/vm.status?sv=2018-03-28&sr=b&sp=w&sig=x"},
        "requiredFeatures": [],
        "gaFamilies": [],
        "extensionGoalStates": [{
            "name": HANDLER, "version": "1.0.0", "state": "enabled",
            "location": format!("{{{{wire}}}}/artifacts/{HANDLER}/manifest.xml"),
            "failoverLocation": format!("{{{{wire}}}}/artifacts/{HANDLER}/manifest.xml"),
            "additionalLocations": [],
            "autoUpgrade": false, "runAsStartupTask": false, "isJson": true, "useExactVersion": true,
            "settingsSeqNo": 3, "isMultiConfig": false,
            "settings": [{"protectedSettingsCertThumbprint": "{{thumbprint}}", "protectedSettings": PROTECTED, "publicSettings": "{\"message\":\"fast\"}"}]
        }]
    })
    .to_string()
}

#[test]
fn an_on_hold_goal_state_runs_nothing_unless_over_provisioning_is_off() {
    for (extra, runs) in [("", false), ("EnableOverProvisioning=n\n", true)] {
        let logs = tempfile::tempdir().expect("tempdir");
        let log = logs.path().join("ops.log");
        let config = extensions_config(&[], &[], "");
        let (fabric, _s) =
            start(&[Handler { name: HANDLER, packages: vec![Package::new("1.0.0")] }], &log, &config);
        fabric.set_vm_settings(Some(on_hold_vm_settings(true)));
        let root = root_for(&fabric, extra);
        run_polls(root.path(), 4);
        let expected: Vec<String> = if runs {
            vec![format!("install {HANDLER}-1.0.0 v=1.0.0"), format!("enable {HANDLER}-1.0.0 v=1.0.0")]
        } else {
            Vec::new()
        };
        assert_eq!(ops(&log), expected, "config {extra:?}");
        // The vmSettings went to the history, redacted, under waagent's <incarnation>-<ETag> tag.
        let history = lib(root.path()).join("history");
        let entry = std::fs::read_dir(&history)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("VmSettings.json").is_file())
            .expect("an entry with VmSettings.json");
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.rsplit("__").next().unwrap().contains('-'), "tag with the ETag: {name}");
        let saved = read(&entry.join("VmSettings.json"));
        assert!(!saved.contains(PROTECTED) && !saved.contains("sig=x"), "{saved}");
        assert!(saved.contains("\"protectedSettings\":\"***REDACTED***\""), "{saved}");
    }
}

#[test]
fn check_config_notes_unused_keys_by_line_and_fails_on_a_proxy_without_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    let conf = dir.path().join("etc/waagent.conf");
    let run = || Command::new(BIN).args(["check-config", "--root"]).arg(dir.path()).output().expect("run");

    std::fs::write(&conf, "# image defaults\nOS.OpensslPath=/usr/bin/openssl\nAutoupdate.Frequency=3600\nLib.Dir=/var/lib/waagent\n")
        .unwrap();
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].ends_with(":2: OS.OpensslPath: accepted, not used by wala: wala does its certificate work with libcrypto in its wala-crypto helper and never runs openssl"), "{text}");
    assert!(
        lines[1]
            .contains(":3: Autoupdate.Frequency: accepted, not used by wala: wala does not update itself"),
        "{text}"
    );
    assert!(lines[2].ends_with(": no problems; 2 key(s) accepted but not used by wala"), "{text}");

    std::fs::write(&conf, "HttpProxy.Host=proxy.corp\nProvisioning.PasswordCryptId=2a\n").unwrap();
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains(":1: HttpProxy.Host: set without HttpProxy.Port: storage traffic goes direct"),
        "{text}"
    );
    assert!(text.contains(":2: Provisioning.PasswordCryptId: invalid value \"2a\""), "{text}");
    assert!(text.contains("failure token `*0`"), "{text}");
    assert!(text.trim_end().ends_with(": 2 problem(s)"), "{text}");
}
