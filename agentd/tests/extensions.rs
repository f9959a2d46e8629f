//! Real extension packages, built here as zip files, served by the fabric simulator from a scenario
//! directory, and run by the real daemon: install, enable with settings and waagent's environment,
//! re-enable on a new sequence number, a command past its timeout killed with its children (and,
//! while it runs, the status heartbeat and a firewall repair on schedule), a
//! SIGTERM during a long command, a zip-slip package refused, dependencies, and processing
//! turned off. Checked through the status blob the simulator received and the files on disk.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use support::{
    extensions_config, finish_scenario, handler, root_for, run_polls, scenario_dir, status_doc, wait_for, BIN,
};
use wala_fabric::{Fabric, FabricConfig, Fault, FaultAction, Listener, Scenario};

/// A handler script: `$1` is the operation. It logs operations and variables to `ops.log` in the
/// handler directory and runs `on_enable` for enable.
fn handler_sh(on_enable: &str) -> String {
    format!(
        r#"#!/bin/sh
cd "$AZURE_GUEST_AGENT_EXTENSION_PATH" || exit 9
echo "$1 seq=$ConfigSequenceNumber version=$AZURE_GUEST_AGENT_EXTENSION_VERSION wire=$AZURE_GUEST_AGENT_WIRE_PROTOCOL_ADDRESS uninstall=$AZURE_GUEST_AGENT_UNINSTALL_CMD_EXIT_CODE features=$AZURE_GUEST_AGENT_EXTENSION_SUPPORTED_FEATURES pwd=$(pwd)" >> ops.log
if [ "$1" = enable ]; then
{on_enable}
fi
exit 0
"#
    )
}

/// Enable that reads its settings and HandlerEnvironment.json and reports success.
const GOOD_ENABLE: &str = r#"
date +%s%N > "enable-started.$ConfigSequenceNumber"
status_dir=$(sed -n 's/.*"statusFolder": *"\([^"]*\)".*/\1/p' HandlerEnvironment.json)
msg=$(sed -n 's/.*"message": *"\([^"]*\)".*/\1/p' "config/$ConfigSequenceNumber.settings")
printf '[{"version":"1.0","timestampUTC":"2024-01-01T00:00:00Z","status":{"name":"test","operation":"Enable","status":"success","code":0,"formattedMessage":{"lang":"en-US","message":"got %s"}}}]' "$msg" > "$status_dir/$ConfigSequenceNumber.status"
"#;

fn manifest_json() -> &'static str {
    r#"[{"version":1.0,"handlerManifest":{"installCommand":"bin/handler.sh install","uninstallCommand":"bin/handler.sh uninstall","updateCommand":"bin/handler.sh update","enableCommand":"bin/handler.sh enable","disableCommand":"bin/handler.sh disable","reportHeartbeat":false}}]"#
}

fn package(script: &str) -> Vec<u8> {
    let mut z = wala::base::ziparchive::ZipWriter::new(1_700_000_000);
    z.add("HandlerManifest.json", manifest_json().as_bytes(), 0o644).expect("add");
    // No exec bit in the zip: the agent must add u+x.
    z.add("bin/handler.sh", script.as_bytes(), 0o644).expect("add");
    z.finish().expect("zip")
}

/// A scenario directory: the fabric's own base documents, plus these handlers (name, zip bytes,
/// extra XML inside `<PluginSettings><Plugin>` before RuntimeSettings).
fn scenario(handlers: &[(&str, Vec<u8>, &str)]) -> tempfile::TempDir {
    let dir = scenario_dir();
    let mut plugins = String::new();
    let mut settings = String::new();
    let mut files = serde_json::Map::new();
    for (name, zip, extra) in handlers {
        std::fs::write(dir.path().join(format!("{name}.zip")), zip).expect("zip");
        std::fs::write(
            dir.path().join(format!("{name}.manifest.xml")),
            format!(
                r#"<?xml version="1.0" encoding="utf-8"?><PluginVersionManifest><Plugins><Plugin><Version>1.0.0</Version><Uris><Uri>{{{{wire}}}}/artifacts/{name}/{name}__1.0.0.zip</Uri></Uris></Plugin></Plugins><InternalPlugins/></PluginVersionManifest>"#
            ),
        )
        .expect("manifest");
        files.insert(format!("/artifacts/{name}/manifest.xml"), format!("{name}.manifest.xml").into());
        files.insert(format!("/artifacts/{name}/{name}__1.0.0.zip"), format!("{name}.zip").into());
        plugins.push_str(&format!(
            r#"<Plugin name="{name}" version="1.0.0" location="{{{{wire}}}}/artifacts/{name}/manifest.xml" state="enabled" autoUpgrade="false" isJson="true" useExactVersion="true" />"#
        ));
        settings.push_str(&format!(
            r#"<Plugin name="{name}" version="1.0.0">{extra}<RuntimeSettings seqNo="{{{{incarnation}}}}">{{"runtimeSettings":[{{"handlerSettings":{{"publicSettings":{{"message":"hello-{name}"}}}}}}]}}</RuntimeSettings></Plugin>"#
        ));
    }
    finish_scenario(&dir, files, &extensions_config(&[plugins], &[settings], ""));
    dir
}

fn start(handlers: &[(&str, Vec<u8>, &str)]) -> (Fabric, tempfile::TempDir) {
    let dir = scenario(handlers);
    let fabric =
        Fabric::start(FabricConfig::new(Scenario::from_dir(dir.path()).expect("scenario"))).expect("fabric");
    (fabric, dir)
}

#[test]
fn an_extension_is_downloaded_installed_enabled_and_reported_then_re_enabled_on_a_new_sequence() {
    let (fabric, _scenario) = start(&[("Wala.Test.Good", package(&handler_sh(GOOD_ENABLE)), "")]);
    // The direct channel fails for the zip: the HostGAPlugin's extensionArtifact serves it.
    fabric.add_fault(Fault::new(
        Listener::Wireserver,
        "/artifacts/Wala.Test.Good/Wala.Test.Good__1.0.0.zip",
        FaultAction::Status { status: 503, body: None },
    ));
    let root = root_for(&fabric, "");
    let mut child = Command::new(BIN)
        .args(["daemon", "--goal-state-period-ms", "50", "--root"])
        .arg(root.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let lib = root.path().join("var/lib/waagent");
    let base = lib.join("Wala.Test.Good-1.0.0");
    wait_for("the first enable", Duration::from_secs(30), || base.join("status/1.status").exists());
    wait_for("the status upload", Duration::from_secs(10), || {
        fabric
            .status_blob()
            .is_some_and(|b| String::from_utf8_lossy(&b.data).contains("got hello-Wala.Test.Good"))
    });

    // A new incarnation carries a new sequence number: enable runs again.
    let t0 = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("time").as_nanos();
    let incarnation = fabric.bump_incarnation();
    let marker = base.join(format!("enable-started.{incarnation}"));
    wait_for("the second enable", Duration::from_secs(30), || marker.exists());
    let started: u128 = std::fs::read_to_string(&marker).expect("marker").trim().parse().unwrap_or(0);
    println!(
        "BENCH new incarnation -> enable command started: {:.1} ms (goal-state period 50 ms)",
        started.saturating_sub(t0) as f64 / 1e6
    );
    wait_for("the second status", Duration::from_secs(10), || {
        fabric.status_blob().is_some_and(|b| {
            let d: serde_json::Value = serde_json::from_slice(&b.data).unwrap_or_default();
            d["aggregateStatus"]["handlerAggregateStatus"][0]["runtimeSettingsStatus"]["sequenceNumber"]
                == incarnation
        })
    });
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success());

    let doc = status_doc(&fabric);
    let h = handler(&doc, "Wala.Test.Good");
    assert_eq!(h["status"], "Ready", "{h}");
    assert_eq!(h["handlerVersion"], "1.0.0");
    assert_eq!(h["formattedMessage"]["message"], "Plugin enabled");
    let s = &h["runtimeSettingsStatus"]["settingsStatus"]["status"];
    assert_eq!(s["status"], "success", "{h}");
    assert_eq!(s["formattedMessage"]["message"], "got hello-Wala.Test.Good");

    // On disk: waagent's contract.
    let ops = std::fs::read_to_string(base.join("ops.log")).expect("ops");
    let lines: Vec<&str> = ops.lines().collect();
    assert_eq!(lines.len(), 3, "install, enable, enable: {ops}");
    assert!(lines[0].starts_with("install seq=1 version=1.0.0 wire=127.0.0.1 uninstall=NOT_RUN"), "{ops}");
    assert!(lines[1].starts_with("enable seq=1 "), "{ops}");
    assert!(lines[2].starts_with(&format!("enable seq={incarnation} ")), "{ops}");
    assert!(ops.contains(r#"features=[{"Key":"ExtensionTelemetryPipeline","Value":"1.0"}]"#), "{ops}");
    assert!(ops.contains(&format!("pwd={}", base.display())), "{ops}");
    let mode = |p: PathBuf| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(base.join("config/1.settings")), 0o600);
    assert_eq!(mode(base.join("config")), 0o700);
    assert_eq!(mode(base.join("bin/handler.sh")) & 0o100, 0o100, "u+x added");
    assert_eq!(std::fs::read_to_string(base.join("config/HandlerState")).expect("state"), "Enabled");
    assert!(!lib.join("Wala.Test.Good__1.0.0.zip").exists(), "the zip is deleted after unpacking");
    assert!(root.path().join("var/log/azure/Wala.Test.Good/CommandExecution.log").is_file());
    // The zip came through the HostGAPlugin with the manifest's location.
    let via_hgap = fabric.requests_on(Listener::Hostgaplugin).into_iter().find(|r| {
        r.target.starts_with("/extensionArtifact")
            && r.headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("x-ms-artifact-location") && v.ends_with(".zip"))
    });
    let via_hgap = via_hgap.expect("zip fetched through the HostGAPlugin");
    assert!(
        via_hgap.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("x-ms-artifact-manifest-location")
            && v.ends_with("/artifacts/Wala.Test.Good/manifest.xml")),
        "{:?}",
        via_hgap.headers
    );
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_children_and_reported() {
    let marker_dir = tempfile::tempdir().expect("tempdir");
    let marker = marker_dir.path().join("child-survived");
    let enable = format!("(sleep 2; touch {}) &\nsleep 60", marker.display());
    let (fabric, _scenario) = start(&[("Wala.Test.Slow", package(&handler_sh(&enable)), "")]);
    let root = root_for(&fabric, "Wala.ExtensionCommandTimeout=1\n");
    let started = Instant::now();
    run_polls(root.path(), 3);
    assert!(started.elapsed() < Duration::from_secs(20));
    let doc = status_doc(&fabric);
    let h = handler(&doc, "Wala.Test.Slow");
    assert_eq!(h["status"], "NotReady", "{h}");
    assert_eq!(h["code"], 1011, "{h}");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!marker.exists(), "the enable command's background child was killed with its group");
}

#[test]
fn sigterm_during_a_long_extension_command_stops_the_daemon_and_the_command() {
    let enable = "echo $$ > enable.pid\nsleep 120";
    let (fabric, _scenario) = start(&[("Wala.Test.Long", package(&handler_sh(enable)), "")]);
    let root = root_for(&fabric, "");
    let mut child = Command::new(BIN)
        .args(["daemon", "--goal-state-period-ms", "50", "--root"])
        .arg(root.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid_file = root.path().join("var/lib/waagent/Wala.Test.Long-1.0.0/enable.pid");
    wait_for("the enable command", Duration::from_secs(30), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n'))
    });
    let pid: i32 = std::fs::read_to_string(&pid_file).expect("pid").trim().parse().expect("number");
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success());
    assert!(sent.elapsed() < Duration::from_secs(2), "stopped promptly");
    wait_for("the extension command to die", Duration::from_secs(5), || {
        // SAFETY: signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) };
        alive != 0
    });
}

#[test]
fn a_package_with_a_zip_slip_entry_is_refused_and_nothing_is_unpacked() {
    let evil = "../../../evil-wala-file";
    let placeholder = "q".repeat(evil.len());
    let mut z = wala::base::ziparchive::ZipWriter::new(0);
    z.add("HandlerManifest.json", manifest_json().as_bytes(), 0o644).expect("add");
    z.add("bin/handler.sh", handler_sh(GOOD_ENABLE).as_bytes(), 0o755).expect("add");
    z.add(&placeholder, b"owned", 0o644).expect("add");
    let mut bytes = z.finish().expect("zip");
    // The writer refuses such names: patch them in (local header and central directory).
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(placeholder.len()).position(|w| w == placeholder.as_bytes()) {
        bytes[i + at..i + at + evil.len()].copy_from_slice(evil.as_bytes());
        i += at + evil.len();
    }
    let (fabric, _scenario) = start(&[("Wala.Test.Slip", bytes, "")]);
    let root = root_for(&fabric, "");
    run_polls(root.path(), 3);
    let doc = status_doc(&fabric);
    let h = handler(&doc, "Wala.Test.Slip");
    assert_eq!(h["status"], "NotReady", "{h}");
    assert_eq!(h["code"], 1001, "{h}");
    assert!(h["formattedMessage"]["message"].as_str().is_some_and(|m| m.contains("'..'")), "{h}");
    let lib = root.path().join("var/lib/waagent");
    let left: Vec<String> = std::fs::read_dir(&lib)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("Slip"))
        .collect();
    assert!(left.is_empty(), "nothing unpacked or left over: {left:?}");
    assert!(!root.path().join("evil-wala-file").exists() && !root.path().join("var/evil-wala-file").exists());
}

#[test]
fn a_failed_dependency_skips_the_extensions_that_depend_on_it() {
    let failing = r#"printf '[{"status":{"status":"error","code":5,"formattedMessage":{"lang":"en-US","message":"broken"}}}]' > "status/$ConfigSequenceNumber.status""#;
    let (fabric, _scenario) = start(&[
        ("Wala.Test.First", package(&handler_sh(failing)), r#"<DependsOn dependencyLevel="1"></DependsOn>"#),
        (
            "Wala.Test.Second",
            package(&handler_sh(GOOD_ENABLE)),
            r#"<DependsOn dependencyLevel="2"><DependsOnExtension handler="Wala.Test.First" /></DependsOn>"#,
        ),
    ]);
    let root = root_for(&fabric, "");
    run_polls(root.path(), 3);
    let doc = status_doc(&fabric);
    let first = handler(&doc, "Wala.Test.First");
    assert_eq!(first["runtimeSettingsStatus"]["settingsStatus"]["status"]["status"], "error", "{first}");
    let second = handler(&doc, "Wala.Test.Second");
    assert_eq!(second["status"], "NotReady", "{second}");
    assert_eq!(second["code"], -1);
    assert_eq!(
        second["formattedMessage"]["message"],
        "Skipping processing of extensions since execution of dependent extension Wala.Test.First failed"
    );
    assert!(!root.path().join("var/lib/waagent/Wala.Test.Second-1.0.0").exists(), "never downloaded");
}

#[test]
fn with_extensions_disabled_nothing_runs_and_the_status_says_why() {
    let (fabric, _scenario) = start(&[("Wala.Test.Off", package(&handler_sh(GOOD_ENABLE)), "")]);
    let root = root_for(&fabric, "Extensions.Enabled=n\n");
    run_polls(root.path(), 3);
    let doc = status_doc(&fabric);
    let h = handler(&doc, "Wala.Test.Off");
    assert_eq!(h["status"], "NotReady");
    assert_eq!(h["code"], 1009);
    assert!(
        h["formattedMessage"]["message"].as_str().is_some_and(|m| m.contains("Extensions.Enabled=y")),
        "{h}"
    );
    assert!(!root.path().join("var/lib/waagent/Wala.Test.Off-1.0.0").exists());
    assert!(fabric.requests().iter().all(|r| !r.target.contains("/artifacts/")), "nothing downloaded");
}

/// A fake `iptables` that keeps its rules in a file beside it and logs every call with the time
/// (ns since the epoch): `-C` finds a rule, `-A` adds one, `-D` removes one (failing when absent);
/// and a `firewall-cmd` that says firewalld is not running.
fn fake_firewall_tools(dir: &std::path::Path) {
    let d = dir.display();
    let iptables = format!(
        r#"#!/bin/sh
echo "$(date +%s%N) $*" >> "{d}/calls.log"
[ "$1" = --version ] && {{ echo "iptables v1.8.9 (fake)"; exit 0; }}
op="$4"
shift 5
rule="$*"
touch "{d}/rules"
case "$op" in
  -C) grep -qxF -- "$rule" "{d}/rules" ;;
  -A) echo "$rule" >> "{d}/rules" ;;
  -D) grep -qxF -- "$rule" "{d}/rules" || exit 1
      grep -vxF -- "$rule" "{d}/rules" > "{d}/rules.new"; mv "{d}/rules.new" "{d}/rules" ;;
  *) exit 2 ;;
esac
"#
    );
    let firewall_cmd = "#!/bin/sh\necho 'not running'\nexit 252\n";
    for (name, text) in [("iptables", iptables.as_str()), ("firewall-cmd", firewall_cmd)] {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("fake tool");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

fn epoch_ns() -> u128 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_nanos()
}

/// Issue #17 item 5 (and #19 item 5): an extension whose enable sleeps for its whole timeout
/// holds its own worker only. Meanwhile the status heartbeat (every 500 ms here) keeps being
/// uploaded and the firewall task (every second) repairs rules flushed behind its back; on one
/// worker both would wait the whole 8 s.
#[test]
fn a_handler_sleeping_for_its_whole_timeout_leaves_the_heartbeat_and_the_firewall_on_schedule() {
    const TIMEOUT_NS: u128 = 8_000_000_000;
    const HEARTBEAT_MS: u64 = 500;
    // Generous against a loaded machine (a heartbeat is due every 500 ms, a poll every 100 ms),
    // and far below the 8 s a stalled daemon would take.
    const LATEST_NS: u128 = 2_000_000_000;
    let enable = "date +%s%N > enable-started\nsleep 600";
    let (fabric, _scenario) = start(&[("Wala.Test.Sleepy", package(&handler_sh(enable)), "")]);
    let root =
        root_for(&fabric, "Wala.ExtensionCommandTimeout=8\nOS.EnableFirewall=y\nOS.EnableFirewallPeriod=1\n");
    let bin = tempfile::tempdir().expect("tempdir");
    fake_firewall_tools(bin.path());
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let child = Command::new(BIN)
        .args(["daemon", "--goal-state-period-ms", "100", "--status-heartbeat-ms"])
        .arg(HEARTBEAT_MS.to_string())
        .arg("--root")
        .arg(root.path())
        .env("PATH", path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Stopped (SIGTERM, and a clean exit checked) at the end, killed if an assertion fails first.
    let daemon = support::Daemon::from(child);
    let started_file = root.path().join("var/lib/waagent/Wala.Test.Sleepy-1.0.0/enable-started");
    let read_ns = |p: &std::path::Path| std::fs::read_to_string(p).ok()?.trim().parse::<u128>().ok();

    // Watch the status uploads (when each is seen) until the timeout is reported; flush the
    // firewall rules 1.5 s into the enable command.
    let uploads =
        || fabric.requests_on(Listener::Hostgaplugin).iter().filter(|r| r.target.contains("/status")).count();
    let mut seen_uploads: Vec<u128> = Vec::new();
    let mut flushed_at = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let timed_out = loop {
        assert!(Instant::now() < deadline, "the enable command's timeout was never reported");
        let n = uploads();
        while seen_uploads.len() < n {
            seen_uploads.push(epoch_ns());
        }
        let enable_started = read_ns(&started_file);
        if let (Some(t), None) = (enable_started, flushed_at) {
            if epoch_ns() > t + 1_500_000_000 {
                assert!(bin.path().join("rules").exists(), "the firewall rules were set before");
                std::fs::remove_file(bin.path().join("rules")).expect("flush the rules");
                flushed_at = Some(epoch_ns());
            }
        }
        let reported =
            fabric.status_blob().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.data).ok());
        if let Some(doc) = reported.filter(|d| {
            support::handlers(d).iter().any(|h| h["handlerName"] == "Wala.Test.Sleepy" && h["code"] == 1011)
        }) {
            break (epoch_ns(), doc);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    support::stop(daemon);

    let enable_started = read_ns(&started_file).expect("the enable command ran");
    let window_end = enable_started + TIMEOUT_NS;
    // The daemon's clock starts when it spawns the command, a shell start before `date` runs in
    // it; on a loaded machine that start can take longer than the report of the kill, so allow
    // for it. A command cut short would be reported seconds earlier.
    const SHELL_START_NS: u128 = 1_000_000_000;
    assert!(
        timed_out.0 + SHELL_START_NS >= window_end,
        "the enable command ran its whole timeout: {}",
        timed_out.1
    );
    let h = handler(&timed_out.1, "Wala.Test.Sleepy");
    assert_eq!(h["status"], "NotReady", "{h}");

    // The heartbeat: uploads all through the enable command, none later than LATEST_NS after the
    // one before (or after the command's start, up to the end of its timeout).
    let during: Vec<u128> =
        seen_uploads.iter().copied().filter(|t| *t > enable_started && *t < window_end).collect();
    assert!(
        during.len() >= 8,
        "{} status uploads during the 8 s enable, heartbeat every 500 ms",
        during.len()
    );
    let mut marks = vec![enable_started];
    marks.extend(&during);
    marks.push(window_end);
    let worst = marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    assert!(worst < LATEST_NS, "a status heartbeat came {} ms late", worst / 1_000_000);

    // The firewall: rules flushed during the enable command are put back on schedule.
    let flushed_at = flushed_at.expect("the rules were flushed during the enable command");
    let calls = std::fs::read_to_string(bin.path().join("calls.log")).expect("iptables calls");
    let repaired: Vec<u128> = calls
        .lines()
        .filter(|l| l.contains(" -A OUTPUT "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .filter(|t| *t > flushed_at)
        .collect();
    let first = *repaired.first().unwrap_or_else(|| panic!("no repair after the flush:\n{calls}"));
    assert_eq!(repaired.len(), 3, "the three rules added again, once:\n{calls}");
    assert!(
        first - flushed_at < LATEST_NS && first < window_end,
        "the repair came {} ms after the flush, the enable command timed out {} ms after it",
        (first - flushed_at) / 1_000_000,
        (window_end.saturating_sub(flushed_at)) / 1_000_000
    );
}
