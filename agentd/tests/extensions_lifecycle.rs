//! The extension lifecycle end to end (wire.md §7–§11): update to a new version in waagent's
//! order (with and without `continueOnUpdateFailure`, with and without install), disable,
//! uninstall, removal from the goal state, multi-config handlers, heartbeats, a Fast Track goal
//! state from vmSettings, per-handler configuration errors and a goal state that cannot be
//! processed. Real packages whose script logs every command to one file; the real daemon against
//! the fabric simulator; checked through that log, the files on disk and the status blob.

mod support;

use std::path::Path;

use support::*;

fn lib(root: &Path) -> std::path::PathBuf {
    root.join("var/lib/waagent")
}

fn ready_with(doc: &serde_json::Value, name: &str, version: &str, message: &str) -> bool {
    handlers(doc).iter().any(|h| {
        h["handlerName"] == name
            && h["handlerVersion"] == version
            && h["status"] == "Ready"
            && h["runtimeSettingsStatus"]["settingsStatus"]["status"]["formattedMessage"]["message"]
                == message
    })
}

/// Runs the `old` package of `name` until it is enabled, then switches the goal state to `new`.
fn update_scenario(
    name: &'static str,
    old: Package,
    new: Package,
    log: &Path,
) -> (wala_fabric::Fabric, tempfile::TempDir, tempfile::TempDir, Daemon) {
    let (from, to) = (old.version, new.version);
    let h = Handler { name, packages: vec![old, new] };
    let v1 = extensions_config(&[plugin(name, from, "enabled")], &[settings(name, from, 1, "one")], "");
    let (fabric, scenario) = start(&[h], log, &v1);
    let root = root_for(&fabric, "");
    let child = spawn(root.path());
    wait_status(&fabric, "the first version enabled", |d| ready_with(d, name, from, &format!("{from} one")));
    fabric.set_extensions_config(&extensions_config(
        &[plugin(name, to, "enabled")],
        &[settings(name, to, 2, "two")],
        "",
    ));
    fabric.bump_incarnation();
    (fabric, scenario, root, child)
}

#[test]
fn an_update_runs_old_disable_new_update_old_uninstall_new_install_and_new_enable() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.Upd";
    let (fabric, _s, root, child) = update_scenario(name, Package::new("1.0.0"), Package::new("1.1.0"), &log);
    wait_status(&fabric, "1.1.0 enabled", |d| ready_with(d, name, "1.1.0", "1.1.0 two"));
    stop(child);
    assert_eq!(
        ops(&log),
        [
            "install Wala.Test.Upd-1.0.0 v=1.0.0",
            "enable Wala.Test.Upd-1.0.0 v=1.0.0",
            "disable Wala.Test.Upd-1.0.0 v=1.0.0",
            "update Wala.Test.Upd-1.1.0 v=1.1.0",
            "uninstall Wala.Test.Upd-1.0.0 v=1.0.0",
            "install Wala.Test.Upd-1.1.0 v=1.1.0",
            "enable Wala.Test.Upd-1.1.0 v=1.1.0",
        ]
    );
    let lines = log_lines(&log);
    assert!(lines[0].ends_with("uninstall=NOT_RUN"), "{lines:?}");
    assert!(lines[3].contains(" VERSION=1.1.0 from=1.0.0 disable=0 "), "{lines:?}");
    assert!(lines[5].ends_with(" uninstall=0"), "the old uninstall's exit code: {lines:?}");
    assert!(lines[6].contains(" seq=2 "), "{lines:?}");
    let doc = status_doc(&fabric);
    assert_eq!(handlers(&doc).len(), 1, "{doc}");
    assert_eq!(handler(&doc, name)["formattedMessage"]["message"], "Plugin enabled");
    assert!(!lib(root.path()).join("Wala.Test.Upd-1.0.0").exists(), "the old version is removed");
    let state = std::fs::read_to_string(lib(root.path()).join("Wala.Test.Upd-1.1.0/config/HandlerState"));
    assert_eq!(state.expect("state"), "Enabled");
}

#[test]
fn a_downgrade_runs_the_old_versions_update_with_the_new_version() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.Down";
    let (fabric, _s, root, child) = update_scenario(name, Package::new("1.1.0"), Package::new("1.0.0"), &log);
    wait_status(&fabric, "1.0.0 enabled", |d| ready_with(d, name, "1.0.0", "1.0.0 two"));
    stop(child);
    assert_eq!(
        ops(&log),
        [
            "install Wala.Test.Down-1.1.0 v=1.1.0",
            "enable Wala.Test.Down-1.1.0 v=1.1.0",
            "disable Wala.Test.Down-1.1.0 v=1.1.0",
            "update Wala.Test.Down-1.1.0 v=1.1.0",
            "uninstall Wala.Test.Down-1.1.0 v=1.1.0",
            "install Wala.Test.Down-1.0.0 v=1.0.0",
            "enable Wala.Test.Down-1.0.0 v=1.0.0",
        ]
    );
    assert!(log_lines(&log)[3].contains(" VERSION=1.0.0 from=1.1.0 "), "{:?}", log_lines(&log));
    assert!(!lib(root.path()).join("Wala.Test.Down-1.1.0").exists());
}

#[test]
fn with_continue_on_update_failure_a_failing_old_disable_does_not_stop_the_update() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.Cont";
    let old = Package::new("1.0.0").failing("disable");
    let new = Package::new("1.1.0")
        .manifest(r#""continueOnUpdateFailure":true,"updateMode":"UpdateWithoutInstall""#);
    let (fabric, _s, root, child) = update_scenario(name, old, new, &log);
    wait_status(&fabric, "1.1.0 enabled", |d| ready_with(d, name, "1.1.0", "1.1.0 two"));
    stop(child);
    assert_eq!(
        ops(&log),
        [
            "install Wala.Test.Cont-1.0.0 v=1.0.0",
            "enable Wala.Test.Cont-1.0.0 v=1.0.0",
            "disable Wala.Test.Cont-1.0.0 v=1.0.0",
            "update Wala.Test.Cont-1.1.0 v=1.1.0",
            "uninstall Wala.Test.Cont-1.0.0 v=1.0.0",
            // UpdateWithoutInstall: no install of the new version.
            "enable Wala.Test.Cont-1.1.0 v=1.1.0",
        ]
    );
    let lines = log_lines(&log);
    assert!(lines[3].contains(" disable=3 "), "the old disable's exit code, not an error code: {lines:?}");
    assert!(!lib(root.path()).join("Wala.Test.Cont-1.0.0").exists());
}

#[test]
fn without_continue_on_update_failure_a_failing_old_disable_fails_the_update_and_is_reported() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.Stop";
    let old = Package::new("1.0.0").failing("disable");
    let (fabric, _s, _root, child) = update_scenario(name, old, Package::new("1.1.0"), &log);
    wait_status(&fabric, "the failed update", |d| {
        handlers(d).iter().any(|h| h["handlerName"] == name && h["status"] == "NotReady")
    });
    stop(child);
    assert_eq!(
        ops(&log),
        [
            "install Wala.Test.Stop-1.0.0 v=1.0.0",
            "enable Wala.Test.Stop-1.0.0 v=1.0.0",
            "disable Wala.Test.Stop-1.0.0 v=1.0.0",
        ],
        "nothing runs after the failed disable"
    );
    let doc = status_doc(&fabric);
    let h = handler(&doc, name);
    assert_eq!(h["handlerVersion"], "1.1.0", "{h}");
    assert_eq!(h["code"], 1008, "{h}");
    let message = h["formattedMessage"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("disable") && message.contains("failing disable on purpose"), "{h}");
    assert!(message.ends_with("ContinueOnUpdate: False"), "{h}");
}

#[test]
fn disabled_runs_disable_uninstall_removes_the_handler_and_a_handler_left_out_is_removed() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let (a, b) = ("Wala.Test.A", "Wala.Test.B");
    let all = [
        Handler { name: a, packages: vec![Package::new("1.0.0")] },
        Handler { name: b, packages: vec![Package::new("1.0.0")] },
    ];
    let config = |sa: &str, sb: &str| {
        extensions_config(
            &[plugin(a, "1.0.0", sa), plugin(b, "1.0.0", sb)],
            &[settings(a, "1.0.0", 1, "a"), settings(b, "1.0.0", 1, "b")],
            "",
        )
    };
    let (fabric, _s) = start(&all, &log, &config("enabled", "enabled"));
    let root = root_for(&fabric, "");
    let child = spawn(root.path());
    wait_status(&fabric, "both enabled", |d| {
        ready_with(d, a, "1.0.0", "1.0.0 a") && ready_with(d, b, "1.0.0", "1.0.0 b")
    });

    fabric.set_extensions_config(&config("disabled", "uninstall"));
    fabric.bump_incarnation();
    wait_status(&fabric, "A disabled and B gone", |d| {
        handlers(d).iter().any(|h| h["handlerName"] == a && h["status"] == "NotReady")
            && handlers(d).iter().all(|h| h["handlerName"] != b)
    });
    let doc = status_doc(&fabric);
    let ha = handler(&doc, a);
    assert_eq!(ha["formattedMessage"]["message"], "Plugin disabled", "{ha}");
    assert_eq!(ha["code"], 0, "{ha}");
    let base_a = lib(root.path()).join("Wala.Test.A-1.0.0");
    assert_eq!(std::fs::read_to_string(base_a.join("config/HandlerState")).expect("state"), "Installed");
    assert!(!lib(root.path()).join("Wala.Test.B-1.0.0").exists(), "uninstall removes the directory");
    assert!(!lib(root.path()).join("Wala.Test.B__1.0.0.zip").exists());

    // A handler the goal state no longer names: its directory goes, no command runs (§10.3).
    fabric.set_extensions_config(&extensions_config(&[], &[], ""));
    fabric.bump_incarnation();
    wait_for("A's directory to go", std::time::Duration::from_secs(8), || !base_a.exists());
    wait_status(&fabric, "no handlers", |d| handlers(d).is_empty());
    stop(child);
    assert_eq!(
        ops(&log)[4..],
        [
            "disable Wala.Test.A-1.0.0 v=1.0.0",
            "disable Wala.Test.B-1.0.0 v=1.0.0",
            "uninstall Wala.Test.B-1.0.0 v=1.0.0",
        ],
        "nothing runs for the removal: {:?}",
        log_lines(&log)
    );
    assert!(log_lines(&log)[6].contains(" seq=1 "), "uninstall gets the settings' sequence number");
}

#[test]
fn a_multi_config_handler_runs_each_extension_with_its_own_settings_and_status() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.Multi";
    let pkg = Package::new("1.0.0").manifest(r#""supportsMultipleExtensions":true"#);
    let config = |second: &str| {
        extensions_config(
            &[plugin(name, "1.0.0", "enabled")],
            &[multi_settings(name, "1.0.0", &[("first", 1, "enabled"), ("second", 2, second)])],
            MULTI_FEATURE,
        )
    };
    let (fabric, _s) = start(&[Handler { name, packages: vec![pkg] }], &log, &config("enabled"));
    let root = root_for(&fabric, "");
    let child = spawn(root.path());
    let entry = |d: &serde_json::Value, ext: &str| {
        handlers(d).into_iter().find(|h| h["runtimeSettingsStatus"]["extensionName"] == ext)
    };
    wait_status(&fabric, "both extensions", |d| {
        ["first", "second"].iter().all(|e| {
            entry(d, e).is_some_and(|h| {
                h["runtimeSettingsStatus"]["settingsStatus"]["status"]["formattedMessage"]["message"]
                    == format!("1.0.0 {e}")
            })
        })
    });
    let doc = status_doc(&fabric);
    assert_eq!(handlers(&doc).len(), 2, "{doc}");
    for (e, seq) in [("first", 1), ("second", 2)] {
        let h = entry(&doc, e).expect("entry");
        assert_eq!(h["handlerName"], name);
        assert_eq!(h["status"], "Ready", "{h}");
        assert_eq!(h["runtimeSettingsStatus"]["sequenceNumber"], seq);
    }
    let base = lib(root.path()).join("Wala.Test.Multi-1.0.0");
    for f in [
        "config/first.1.settings",
        "config/second.2.settings",
        "status/first.1.status",
        "status/second.2.status",
    ] {
        assert!(base.join(f).is_file(), "{f}");
    }
    let settings = std::fs::read_to_string(base.join("config/second.2.settings")).expect("settings");
    assert!(settings.contains(r#""message":"second""#), "{settings}");

    // The second extension is disabled: its disable runs, its files go, it leaves the status.
    fabric.set_extensions_config(&config("disabled"));
    fabric.bump_incarnation();
    wait_status(&fabric, "only the first", |d| entry(d, "second").is_none() && entry(d, "first").is_some());
    stop(child);
    let lines = log_lines(&log);
    let ops: Vec<String> = lines
        .iter()
        .map(|l| {
            let ext = l.split(" ext=").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("");
            format!("{} {ext}", l.split(' ').next().unwrap_or(""))
        })
        .collect();
    assert_eq!(ops, ["install first", "enable first", "enable second", "disable second"], "{lines:?}");
    assert!(!base.join("status/second.2.status").exists(), "the disabled extension's status is removed");
    assert!(base.join("status/first.1.status").exists());
}

/// `PluginSettings/Plugin` of a multi-config handler: (extension, seqNo, state) each with
/// `publicSettings.message` = the extension's name.
fn multi_settings(name: &str, version: &str, exts: &[(&str, u64, &str)]) -> String {
    let mut inner = String::new();
    for (ext, seq, state) in exts {
        inner.push_str(&format!(
            r#"<ExtensionRuntimeSettings seqNo="{seq}" name="{ext}" state="{state}">{{"runtimeSettings":[{{"handlerSettings":{{"publicSettings":{{"message":"{ext}"}}}}}}]}}</ExtensionRuntimeSettings>"#
        ));
    }
    format!(r#"<Plugin name="{name}" version="{version}">{inner}</Plugin>"#)
}

const MULTI_FEATURE: &str =
    "<RequiredFeatures><RequiredFeature><Name>MultipleExtensionsPerHandler</Name></RequiredFeature></RequiredFeatures>";

#[test]
fn a_multi_config_update_disables_each_enabled_extension_and_passes_their_exit_codes() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.MultiUpd";
    let multi = r#""supportsMultipleExtensions":true"#;
    let h = Handler {
        name,
        packages: vec![Package::new("1.0.0").manifest(multi), Package::new("1.1.0").manifest(multi)],
    };
    let config = |v: &str| {
        extensions_config(
            &[plugin(name, v, "enabled")],
            &[multi_settings(name, v, &[("first", 1, "enabled"), ("second", 1, "enabled")])],
            MULTI_FEATURE,
        )
    };
    let (fabric, _s) = start(&[h], &log, &config("1.0.0"));
    let root = root_for(&fabric, "");
    let child = spawn(root.path());
    let both = |v: &'static str| {
        move |d: &serde_json::Value| {
            let ok: Vec<_> = handlers(d)
                .into_iter()
                .filter(|h| {
                    h["handlerVersion"] == v
                        && h["status"] == "Ready"
                        && h["runtimeSettingsStatus"]["settingsStatus"]["status"]["formattedMessage"]
                            ["message"]
                            == format!(
                                "{v} {}",
                                h["runtimeSettingsStatus"]["extensionName"].as_str().unwrap_or("")
                            )
                })
                .collect();
            ok.len() == 2
        }
    };
    wait_status(&fabric, "both extensions of 1.0.0", both("1.0.0"));
    fabric.set_extensions_config(&config("1.1.0"));
    fabric.bump_incarnation();
    wait_status(&fabric, "both extensions of 1.1.0", both("1.1.0"));
    stop(child);
    let lines = log_lines(&log);
    let ops: Vec<String> = lines
        .iter()
        .map(|l| {
            let ext = l.split(" ext=").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("");
            let mut words = l.split(' ');
            format!("{} {} {ext}", words.next().unwrap_or(""), words.next().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        ops,
        [
            "install Wala.Test.MultiUpd-1.0.0 first",
            "enable Wala.Test.MultiUpd-1.0.0 first",
            "enable Wala.Test.MultiUpd-1.0.0 second",
            "disable Wala.Test.MultiUpd-1.0.0 first",
            "disable Wala.Test.MultiUpd-1.0.0 second",
            "update Wala.Test.MultiUpd-1.1.0 first",
            "uninstall Wala.Test.MultiUpd-1.0.0 first",
            "install Wala.Test.MultiUpd-1.1.0 first",
            "enable Wala.Test.MultiUpd-1.1.0 first",
            "enable Wala.Test.MultiUpd-1.1.0 second",
        ],
        "{lines:?}"
    );
    let update = &lines[5];
    let codes = update.split(" multi=").nth(1).and_then(|r| r.split(" uninstall=").next()).unwrap_or("");
    let codes: serde_json::Value = serde_json::from_str(codes).unwrap_or_else(|e| panic!("{e}: {update}"));
    assert_eq!(
        codes,
        serde_json::json!([{"extensionName": "first", "exitCode": "0"}, {"extensionName": "second", "exitCode": "0"}]),
        "{update}"
    );
    assert!(update.contains(" disable= "), "no single-config variable for multi-config: {update}");
}

/// At rest the status document is not built again from the handlers' files on every poll
/// (inotify says when they change: `daemon/status_inputs.rs`); what an extension, the hostname or
/// the `disable_agent` marker changes still reaches the platform within a few polls, long before
/// the 60-s heartbeat.
#[test]
fn files_changed_at_rest_reach_the_status_within_a_few_polls() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.Rest";
    let config =
        extensions_config(&[plugin(name, "1.0.0", "enabled")], &[settings(name, "1.0.0", 1, "one")], "");
    let (fabric, _s) = start(&[Handler { name, packages: vec![Package::new("1.0.0")] }], &log, &config);
    let root = root_for(&fabric, "");
    let child = spawn(root.path());
    wait_status(&fabric, "enabled", |d| ready_with(d, name, "1.0.0", "1.0.0 one"));
    let uploads = || fabric.requests().iter().filter(|r| r.target.contains("/status")).count();
    // Rest: many polls, no upload (nothing changed, the heartbeat is a minute away).
    let before = uploads();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(uploads(), before, "no upload while nothing changes");

    // The extension writes a new status in place (no rename).
    let handler = lib(root.path()).join("Wala.Test.Rest-1.0.0");
    let status = r#"[{"version":"1.0","timestampUTC":"2024-01-01T00:00:01Z","status":{"name":"t","operation":"Enable","status":"success","code":0,"formattedMessage":{"lang":"en-US","message":"later"}}}]"#;
    std::fs::write(handler.join("status/1.status"), status).expect("status");
    wait_status(&fabric, "the extension's new status", |d| ready_with(d, name, "1.0.0", "later"));

    // The hostname, replaced by a rename as hostnamectl does.
    let etc = root.path().join("etc");
    std::fs::write(etc.join("hostname.new"), "renamed-vm\n").expect("hostname");
    std::fs::rename(etc.join("hostname.new"), etc.join("hostname")).expect("rename");
    wait_status(&fabric, "the new hostname", |d| d["guestOSInfo"]["computerName"] == "renamed-vm");

    // The disable_agent marker.
    std::fs::write(lib(root.path()).join("disable_agent"), "").expect("marker");
    wait_status(&fabric, "extensions disabled", |d| {
        d["aggregateStatus"]["guestAgentStatus"]["formattedMessage"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("disable_agent"))
    });
    stop(child);
}

#[test]
fn a_stale_heartbeat_is_reported_unresponsive_and_a_fresh_one_overrides_the_status() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let beat = r#"printf '[{"heartbeat":{"status":"Ready","code":0,"formattedMessage":{"lang":"en-US","message":"beating"}}}]' > heartbeat.log"#;
    let fresh = Package::new("1.0.0").manifest(r#""reportHeartbeat":true"#).on_enable(beat);
    let stale = Package::new("1.0.0")
        .manifest(r#""reportHeartbeat":true"#)
        .on_enable(&format!("{beat}\ntouch -d '11 minutes ago' heartbeat.log"));
    let (f, s) = ("Wala.Test.Fresh", "Wala.Test.Stale");
    let config = extensions_config(
        &[plugin(f, "1.0.0", "enabled"), plugin(s, "1.0.0", "enabled")],
        &[settings(f, "1.0.0", 1, "f"), settings(s, "1.0.0", 1, "s")],
        "",
    );
    let all = [Handler { name: f, packages: vec![fresh] }, Handler { name: s, packages: vec![stale] }];
    let (fabric, _s) = start(&all, &log, &config);
    let root = root_for(&fabric, "");
    run_polls(root.path(), 3);
    let doc = status_doc(&fabric);
    let hf = handler(&doc, f);
    assert_eq!(hf["status"], "Ready", "{hf}");
    assert_eq!(hf["formattedMessage"]["message"], "beating", "the heartbeat's message wins: {hf}");
    let hs = handler(&doc, s);
    assert_eq!(hs["status"], "Unresponsive", "{hs}");
    assert_eq!(hs["code"], -1, "{hs}");
    assert_eq!(hs["formattedMessage"]["message"], "Extension heartbeat is not responsive", "{hs}");
    // The extension's own status is still reported.
    assert_eq!(hs["runtimeSettingsStatus"]["settingsStatus"]["status"]["status"], "success", "{hs}");
    // No vmSettings here: the agent does not claim Fast Track.
    let features = doc["supportedFeatures"].to_string();
    assert!(
        !features.contains("FastTrack") && features.contains("MultipleExtensionsPerHandler"),
        "{features}"
    );
}

#[test]
fn a_newer_fast_track_goal_state_from_vm_settings_is_run_and_reported() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let (wire, fast) = ("Wala.Test.Wire", "Wala.Test.Fast");
    let config =
        extensions_config(&[plugin(wire, "1.0.0", "enabled")], &[settings(wire, "1.0.0", 1, "wire")], "");
    let all = [
        Handler { name: wire, packages: vec![Package::new("1.0.0")] },
        Handler { name: fast, packages: vec![Package::new("1.0.0")] },
    ];
    let (fabric, _s) = start(&all, &log, &config);
    let vm_settings = serde_json::json!({
        "hostGAPluginVersion": "1.0.8.143",
        "vmSettingsSchemaVersion": "0.0",
        "activityId": "2e7f8b5d-f637-4721-b757-cb190d49b4e9",
        "correlationId": "1bef4c48-044e-4225-8f42-1d1eac1eb158",
        "inSvdSeqNo": 7,
        "extensionsLastModifiedTickCount": CONFIG_TICKS + 10_000_000,
        "extensionGoalStatesSource": "FastTrack",
        "onHold": false,
        "statusUploadBlob": {"statusBlobType": "BlockBlob", "value": "{{wire}}/statusblob/vm.status?sv=2018-03-28&sr=b&sp=w&sig=x"},
        "requiredFeatures": [],
        "gaFamilies": [],
        "extensionGoalStates": [{
            "name": fast, "version": "1.0.0", "state": "enabled",
            "location": format!("{{{{wire}}}}/artifacts/{fast}/manifest.xml"),
            "failoverLocation": format!("{{{{wire}}}}/artifacts/{fast}/manifest.xml"),
            "additionalLocations": [],
            "autoUpgrade": false, "runAsStartupTask": false, "isJson": true, "useExactVersion": true,
            "settingsSeqNo": 3, "isMultiConfig": false,
            "settings": [{"publicSettings": "{\"message\":\"fast\"}"}]
        }]
    });
    fabric.set_vm_settings(Some(vm_settings.to_string()));
    // The direct channel fails for the zip: the HostGAPlugin serves it, told to verify it.
    fabric.add_fault(wala_fabric::Fault::new(
        wala_fabric::Listener::Wireserver,
        "/artifacts/Wala.Test.Fast/Wala.Test.Fast__1.0.0.zip",
        wala_fabric::FaultAction::Status { status: 503, body: None },
    ));
    let root = root_for(&fabric, "");
    run_polls(root.path(), 3);
    let via_hgap = fabric
        .requests_on(wala_fabric::Listener::Hostgaplugin)
        .into_iter()
        .find(|r| {
            r.target.starts_with("/extensionArtifact")
                && r.headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("x-ms-artifact-location") && v.ends_with(".zip"))
        })
        .expect("the zip through the HostGAPlugin");
    assert!(
        via_hgap
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("x-ms-verify-from-artifacts-blob") && v == "true"),
        "Fast Track downloads ask the HostGAPlugin to verify: {:?}",
        via_hgap.headers
    );
    assert_eq!(
        ops(&log),
        ["install Wala.Test.Fast-1.0.0 v=1.0.0", "enable Wala.Test.Fast-1.0.0 v=1.0.0"],
        "only the Fast Track goal state runs"
    );
    assert!(log_lines(&log)[1].contains(" seq=3 "), "{:?}", log_lines(&log));
    let doc = status_doc(&fabric);
    assert!(ready_with(&doc, fast, "1.0.0", "1.0.0 fast"), "{doc}");
    assert_eq!(handlers(&doc).len(), 1, "the ExtensionsConfig handler is not reported: {doc}");
    let features = doc["supportedFeatures"].as_array().cloned().unwrap_or_default();
    assert!(features.iter().any(|f| f["Key"] == "FastTrack" && f["Value"] == "1.0"), "{features:?}");
    let gs = &doc["aggregateStatus"]["vmArtifactsAggregateStatus"]["goalStateAggregateStatus"];
    assert_eq!(gs["inSvdSeqNo"], 7, "{gs}");
    assert_eq!(gs["status"], "Success", "{gs}");
    assert_eq!(gs["code"], 0, "{gs}");
}

#[test]
fn a_handler_with_a_configuration_error_fails_alone_with_waagents_message() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let (good, mismatch, empty) = ("Wala.Test.Good", "Wala.Test.Mismatch", "Wala.Test.Empty");
    let config = extensions_config(
        &[plugin(good, "1.0.0", "enabled"), plugin(mismatch, "1.0.0", "enabled"), plugin(empty, "1.0.0", "")],
        &[
            settings(good, "1.0.0", 1, "good"),
            settings(mismatch, "9.9.9", 1, "m"),
            settings(empty, "1.0.0", 1, "e"),
        ],
        "",
    );
    let all = [
        Handler { name: good, packages: vec![Package::new("1.0.0")] },
        Handler { name: mismatch, packages: vec![Package::new("1.0.0")] },
        Handler { name: empty, packages: vec![Package::new("1.0.0")] },
    ];
    let (fabric, _s) = start(&all, &log, &config);
    let root = root_for(&fabric, "");
    run_polls(root.path(), 3);
    assert_eq!(ops(&log), ["install Wala.Test.Good-1.0.0 v=1.0.0", "enable Wala.Test.Good-1.0.0 v=1.0.0"]);
    let doc = status_doc(&fabric);
    assert!(ready_with(&doc, good, "1.0.0", "1.0.0 good"), "{doc}");
    let hm = handler(&doc, mismatch);
    assert_eq!(hm["status"], "NotReady", "{hm}");
    assert_eq!(
        hm["formattedMessage"]["message"],
        "Extension PluginSettings Version Mismatch! Expected PluginSettings version: 1.0.0 for Extension: Wala.Test.Mismatch but found versions: (9.9.9)"
    );
    let he = handler(&doc, empty);
    assert_eq!(he["status"], "NotReady", "{he}");
    assert_eq!(
        he["formattedMessage"]["message"],
        "Received empty Extensions.Plugins.Plugin.state, failing Handler"
    );
    assert!(!lib(root.path()).join("Wala.Test.Mismatch-1.0.0").exists());
    let gs = &doc["aggregateStatus"]["vmArtifactsAggregateStatus"]["goalStateAggregateStatus"];
    assert_eq!(gs["status"], "Success", "a handler's error does not fail the goal state: {gs}");
}

#[test]
fn a_goal_state_with_unsupported_required_features_fails_runs_nothing_and_reports_the_handlers_on_disk() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let (old, new) = ("Wala.Test.Installed", "Wala.Test.Future");
    let all = [
        Handler { name: old, packages: vec![Package::new("1.0.0")] },
        Handler { name: new, packages: vec![Package::new("1.0.0")] },
    ];
    let first = extensions_config(&[plugin(old, "1.0.0", "enabled")], &[settings(old, "1.0.0", 1, "x")], "");
    let (fabric, _s) = start(&all, &log, &first);
    let root = root_for(&fabric, "");
    let child = spawn(root.path());
    wait_status(&fabric, "the first goal state", |d| ready_with(d, old, "1.0.0", "1.0.0 x"));

    let features = "<RequiredFeatures><RequiredFeature><Name>MultipleExtensionsPerHandler</Name></RequiredFeature><RequiredFeature><Name>TimeTravel</Name></RequiredFeature></RequiredFeatures>";
    fabric.set_extensions_config(&extensions_config(
        &[plugin(new, "1.0.0", "enabled")],
        &[settings(new, "1.0.0", 2, "y")],
        features,
    ));
    let incarnation = fabric.bump_incarnation();
    wait_status(&fabric, "the failed goal state", |d| {
        d["aggregateStatus"]["vmArtifactsAggregateStatus"]["goalStateAggregateStatus"]["status"] == "Failed"
    });
    stop(child);
    assert_eq!(
        ops(&log),
        ["install Wala.Test.Installed-1.0.0 v=1.0.0", "enable Wala.Test.Installed-1.0.0 v=1.0.0"],
        "nothing of the unsupported goal state runs"
    );
    let doc = status_doc(&fabric);
    let gs = &doc["aggregateStatus"]["vmArtifactsAggregateStatus"]["goalStateAggregateStatus"];
    assert_eq!(gs["code"], 2001, "{gs}");
    assert_eq!(gs["inSvdSeqNo"], incarnation, "{gs}");
    let message = gs["formattedMessage"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Failing GS ") && message.ends_with("as Unsupported features found: TimeTravel"),
        "{gs}"
    );
    // The handlers on disk are reported (with their own status), not the goal state's.
    assert!(ready_with(&doc, old, "1.0.0", "1.0.0 x"), "{doc}");
    assert_eq!(handler(&doc, old)["runtimeSettingsStatus"]["sequenceNumber"], 1, "{doc}");
    assert_eq!(handlers(&doc).len(), 1, "{doc}");
    assert!(!lib(root.path()).join("Wala.Test.Future-1.0.0").exists());
    // Cleanup is skipped after an unsupported goal state: the installed handler stays.
    assert!(lib(root.path()).join("Wala.Test.Installed-1.0.0").exists());
}

/// Issue #21: a handler name from the platform is a path and, with waagent's way of running
/// commands, part of a shell line. One edited `<Plugin name=...>` each: a name that climbs out of
/// `Lib.Dir` (the package used to be unpacked and run there), one that lands on an unrelated
/// directory (it used to be replaced by the package), one with shell syntax (it used to run `id`
/// as root). Each fails alone, named with the field in the status; nothing outside `Lib.Dir` is
/// touched and no injected command runs; the good handler beside them runs.
#[test]
fn hostile_handler_names_fail_alone_and_touch_nothing() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let (good, served) = ("Wala.Test.Good", "Wala.Test.Served");
    let hostile = ["../../ESCAPED.Ext", "../../victim", "X;id>INJECTED;#"];
    // Each hostile plugin points at a real manifest and package, so only its name is wrong.
    let hostile_plugin = |name: &str| {
        let attr = name.replace('&', "&amp;").replace('>', "&gt;").replace('<', "&lt;");
        format!(
            r#"<Plugin name="{attr}" version="1.0.0" location="{{{{wire}}}}/artifacts/{served}/manifest.xml" state="enabled" autoUpgrade="false" isJson="true" useExactVersion="true" />"#
        )
    };
    let mut plugins: Vec<String> = hostile.iter().map(|n| hostile_plugin(n)).collect();
    plugins.push(plugin(good, "1.0.0", "enabled"));
    let config = extensions_config(&plugins, &[settings(good, "1.0.0", 1, "good")], "");
    let all = [
        Handler { name: good, packages: vec![Package::new("1.0.0")] },
        Handler { name: served, packages: vec![Package::new("1.0.0")] },
    ];
    let (fabric, _s) = start(&all, &log, &config);
    let root = root_for(&fabric, "");
    // `<root>/var/lib/waagent/../../victim-1.0.0` is `<root>/var/victim-1.0.0`.
    let victim = root.path().join("var/victim-1.0.0");
    std::fs::create_dir_all(&victim).expect("mkdir");
    std::fs::write(victim.join("precious"), "keep me").expect("write");
    run_polls(root.path(), 3);

    assert_eq!(ops(&log), ["install Wala.Test.Good-1.0.0 v=1.0.0", "enable Wala.Test.Good-1.0.0 v=1.0.0"]);
    let doc = status_doc(&fabric);
    assert!(ready_with(&doc, good, "1.0.0", "1.0.0 good"), "{doc}");
    for name in hostile {
        let h = handler(&doc, name);
        assert_eq!(h["status"], "NotReady", "{h}");
        let message = h["formattedMessage"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("Plugin {name:?} is refused: its ExtensionsConfig Plugins/Plugin@name is not a valid handler name: ")),
            "{message}"
        );
    }
    assert_eq!(std::fs::read_to_string(victim.join("precious")).expect("the victim's file"), "keep me");
    let mut seen = Vec::new();
    let mut stack = vec![root.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("ls").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            }
            if name.contains("ESCAPED") || name.contains("INJECTED") || name.contains("unpack") {
                seen.push(e.path());
            }
        }
    }
    assert!(seen.is_empty(), "written by a hostile name: {seen:?}");
    let mut in_lib: Vec<String> = std::fs::read_dir(lib(root.path()))
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // (`ExtensionsConfig.<n>.xml` is waagent's copy of the goal state's document.)
        .filter(|n| {
            n.starts_with("Wala.")
                || n.contains("victim")
                || (n.contains("Ext") && !n.starts_with("ExtensionsConfig."))
        })
        .collect();
    in_lib.sort();
    assert_eq!(in_lib, ["Wala.Test.Good-1.0.0"]);
}
