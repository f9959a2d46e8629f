//! Extension events and what decides whether an extension may run, end to end: the real daemon
//! against the fabric simulator over loopback.
//!
//! * the Extension Telemetry Pipeline: events an extension drops in its `eventsFolder` reach the
//!   WireServer's `telemetrydata` endpoint, and the files are gone;
//! * the InVMArtifactsProfile: `onHold` defers extension handling until a goal state that is not
//!   on hold;
//! * `Policy.PolicyFilePath` with `Debug.EnableExtensionPolicy=y`: an extension the allow-list
//!   leaves out is not run, with waagent's status message.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;
use wala_fabric::Listener;

fn telemetry_bodies(fabric: &wala_fabric::Fabric) -> Vec<String> {
    fabric
        .requests_on(Listener::Wireserver)
        .into_iter()
        .filter(|r| r.method == "POST" && r.target.contains("comp=telemetrydata"))
        .map(|r| r.body)
        .collect()
}

#[test]
fn events_in_an_extensions_events_folder_reach_the_telemetry_endpoint_and_are_deleted() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let config = extensions_config(&[], &[], "");
    let (fabric, _scenario) = start(&[], &log, &config);
    let root = root_for(&fabric, "Debug.EtpCollectionPeriod=1\n");
    let events = root.path().join("var/log/azure/Contoso.Events/events");
    std::fs::create_dir_all(&events).expect("mkdir");
    let event = |msg: &str| {
        format!(
            r#"{{"Version":"2.0.1","Timestamp":"2024-05-01T10:00:00Z","TaskName":"Install","EventLevel":"Warning","Message":"{msg}","EventPid":42,"EventTid":"43","OperationId":"6f1c"}}"#
        )
    };
    std::fs::write(
        events.join("1714557600.json"),
        format!("[{},{{\"Message\":\"no fields\"}}]", event("disk is slow")),
    )
    .expect("write");
    std::fs::write(events.join("1714557601.json"), "{ not json").expect("write");
    let daemon = spawn(root.path());
    wait_for("the extension event at the WireServer", Duration::from_secs(10), || {
        telemetry_bodies(&fabric).iter().any(|b| b.contains("disk is slow"))
    });
    let body = telemetry_bodies(&fabric).into_iter().find(|b| b.contains("disk is slow")).expect("body");
    assert!(body.contains(r#"<Provider id="FFF0196F-EE4C-4EAF-9AA5-776F622DEB4F">"#), "{body}");
    assert!(body.contains(r#"<Event id="7">"#), "{body}");
    for param in [
        r#"Name="EventName" Value="Contoso.Events-2.0.1""#,
        r#"Name="CapabilityUsed" Value="Warning""#,
        r#"Name="Context2" Value="2024-05-01T10:00:00Z""#,
        r#"Name="Context3" Value="6f1c""#,
        r#"Name="EventPid" Value="42""#,
        r#"Name="TaskName" Value="Install""#,
    ] {
        assert!(body.contains(param), "{param} missing from {body}");
    }
    assert!(!body.contains("no fields"), "an event without the required fields is dropped: {body}");
    wait_for("the events folder emptied", Duration::from_secs(5), || {
        std::fs::read_dir(&events).map(|d| d.count() == 0).unwrap_or(false)
    });
    // A new file written later is collected by a later period.
    std::fs::write(events.join("1714557700.json"), format!("[{}]", event("second period"))).expect("write");
    wait_for("the second event", Duration::from_secs(10), || {
        telemetry_bodies(&fabric).iter().any(|b| b.contains("second period"))
    });
    stop(daemon);
    let sent = telemetry_bodies(&fabric).iter().filter(|b| b.contains("disk is slow")).count();
    assert_eq!(sent, 1, "an event is sent once");
}

fn on_hold_config(name: &str, seq: u64, profile: &str) -> String {
    extensions_config(
        &[plugin(name, "1.0.0", "enabled")],
        &[settings(name, "1.0.0", seq, "held")],
        &format!("<InVMArtifactsProfileBlob>{{{{wire}}}}/artifacts/{profile}?sv=2018-03-28&amp;sr=b&amp;sp=r&amp;sig=x</InVMArtifactsProfileBlob>"),
    )
}

#[test]
fn an_on_hold_artifacts_profile_defers_extensions_until_a_goal_state_that_is_not_on_hold() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.Hold";
    let h = Handler { name, packages: vec![Package::new("1.0.0")] };
    let dir = scenario(&[h], &log, &on_hold_config(name, 1, "held.json"));
    // Add the two profiles to the scenario's files.
    std::fs::write(dir.path().join("held.json"), r#"{"onHold": true, "profileId": "p"}"#).expect("write");
    std::fs::write(dir.path().join("released.json"), r#"{"onHold": "false"}"#).expect("write");
    let scenario_path = dir.path().join("scenario.json");
    let mut scenario: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&scenario_path).expect("read")).expect("json");
    scenario["files"]["/artifacts/held.json"] = "held.json".into();
    scenario["files"]["/artifacts/released.json"] = "released.json".into();
    std::fs::write(&scenario_path, scenario.to_string()).expect("write");
    let fabric = wala_fabric::Fabric::start(wala_fabric::FabricConfig::new(
        wala_fabric::Scenario::from_dir(dir.path()).expect("scenario"),
    ))
    .expect("fabric");
    let root = root_for(&fabric, "");
    let daemon = spawn(root.path());
    wait_status(&fabric, "status for the held goal state", |d| {
        handlers(d).iter().any(|h| h["handlerName"] == name)
    });
    assert!(
        fabric.requests_on(Listener::Wireserver).iter().any(|r| r.path() == "/artifacts/held.json"),
        "the profile is fetched"
    );
    // Several more polls: still nothing runs.
    std::thread::sleep(Duration::from_millis(500));
    assert!(ops(&log).is_empty(), "nothing runs while on hold: {:?}", ops(&log));
    assert!(!root.path().join("var/lib/waagent/Wala.Test.Hold-1.0.0").exists());
    fabric.set_extensions_config(&on_hold_config(name, 2, "released.json"));
    fabric.bump_incarnation();
    wait_status(&fabric, "enabled once released", |d| {
        handlers(d).iter().any(|h| h["handlerName"] == name && h["status"] == "Ready")
    });
    stop(daemon);
    assert_eq!(ops(&log), ["install Wala.Test.Hold-1.0.0 v=1.0.0", "enable Wala.Test.Hold-1.0.0 v=1.0.0"]);
}

#[test]
fn an_artifacts_profile_that_cannot_be_fetched_or_parsed_is_not_on_hold() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.NoProfile";
    let h = Handler { name, packages: vec![Package::new("1.0.0")] };
    let (fabric, _scenario) = start(&[h], &log, &on_hold_config(name, 1, "missing.json"));
    let root = root_for(&fabric, "");
    let daemon = spawn(root.path());
    wait_status(&fabric, "enabled", |d| {
        handlers(d).iter().any(|h| h["handlerName"] == name && h["status"] == "Ready")
    });
    stop(daemon);
    assert_eq!(ops(&log).len(), 2, "{:?}", ops(&log));
}

/// The policy file in the root, and the configuration that turns policy on.
fn with_policy(root: &Path, policy: &str) -> String {
    std::fs::write(root.join("etc/waagent_policy.json"), policy).expect("policy");
    "Debug.EnableExtensionPolicy=y\n".to_string()
}

#[test]
fn a_policy_that_does_not_allow_an_extension_stops_it_with_waagents_message() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let (allowed, blocked) = ("Wala.Test.Allowed", "Wala.Test.Blocked");
    let hs = [
        Handler { name: allowed, packages: vec![Package::new("1.0.0")] },
        Handler { name: blocked, packages: vec![Package::new("1.0.0")] },
    ];
    let config = extensions_config(
        &[plugin(allowed, "1.0.0", "enabled"), plugin(blocked, "1.0.0", "enabled")],
        &[settings(allowed, "1.0.0", 1, "a"), settings(blocked, "1.0.0", 1, "b")],
        "",
    );
    let (fabric, _scenario) = start(&hs, &log, &config);
    let root = root_for(&fabric, "");
    let extra = with_policy(
        root.path(),
        r#"{"policyVersion":"0.1.0","extensionPolicies":{"allowListedExtensionsOnly":true,"extensions":{"wala.test.ALLOWED":{}}}}"#,
    );
    let conf = root.path().join("etc/waagent.conf");
    let mut text = std::fs::read_to_string(&conf).expect("conf");
    text.push_str(&extra);
    std::fs::write(&conf, text).expect("conf");
    let daemon = spawn(root.path());
    wait_status(&fabric, "both reported", |d| {
        handlers(d).iter().any(|h| h["handlerName"] == allowed && h["status"] == "Ready")
            && handlers(d).iter().any(|h| h["handlerName"] == blocked && h["status"] == "NotReady")
    });
    stop(daemon);
    assert_eq!(
        ops(&log),
        ["install Wala.Test.Allowed-1.0.0 v=1.0.0", "enable Wala.Test.Allowed-1.0.0 v=1.0.0"]
    );
    let doc = status_doc(&fabric);
    let h = handler(&doc, blocked);
    assert_eq!(h["code"], 1009, "{h}");
    assert_eq!(
        h["formattedMessage"]["message"],
        "Extension will not be processed: failed to run extension 'Wala.Test.Blocked' because it is not \
         specified as an allowed extension. To run, add the extension to the list of allowed extensions in \
         the policy file ('/etc/waagent_policy.json')."
    );
    let settings = &h["runtimeSettingsStatus"]["settingsStatus"]["status"];
    assert_eq!(settings["status"], "error", "{h}");
    assert_eq!(settings["code"], 1009, "{h}");
    assert!(!root.path().join("var/lib/waagent/Wala.Test.Blocked-1.0.0").exists(), "nothing downloaded");
}

#[test]
fn an_invalid_policy_stops_every_extension_and_says_why() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.BadPolicy";
    let hs = [Handler { name, packages: vec![Package::new("1.0.0")] }];
    let config =
        extensions_config(&[plugin(name, "1.0.0", "enabled")], &[settings(name, "1.0.0", 1, "a")], "");
    let (fabric, _scenario) = start(&hs, &log, &config);
    let root = root_for(&fabric, "");
    let extra =
        with_policy(root.path(), r#"{"policyVersion":"0.1.0","extensionPolicies":{"allowAll":true}}"#);
    let conf = root.path().join("etc/waagent.conf");
    let mut text = std::fs::read_to_string(&conf).expect("conf");
    text.push_str(&extra);
    std::fs::write(&conf, text).expect("conf");
    let daemon = spawn(root.path());
    wait_status(&fabric, "reported", |d| {
        handlers(d).iter().any(|h| h["handlerName"] == name && h["status"] == "NotReady" && h["code"] == 1009)
    });
    stop(daemon);
    assert!(ops(&log).is_empty(), "{:?}", ops(&log));
    let doc = status_doc(&fabric);
    assert_eq!(
        handler(&doc, name)["formattedMessage"]["message"],
        "Extension will not be processed: Customer-provided policy file ('/etc/waagent_policy.json') is invalid, \
         please correct the following error: unrecognized attribute 'allowAll' in extensionPolicies"
    );
}
