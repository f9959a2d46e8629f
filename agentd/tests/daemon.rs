//! The real daemon against the fabric simulator on loopback: it tells systemd it is ready, stops
//! within a second of SIGTERM even while a request hangs, uploads status once and then only when
//! something changed, and sends a provisioning report that never got through.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use wala_fabric::{Fabric, Fault, FaultAction, Listener};

const BIN: &str = env!("CARGO_BIN_EXE_wala-agentd");

/// A root whose configuration points every platform endpoint at the fabric.
fn root_for(fabric: &Fabric, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["etc", "var/log", "var/lib/waagent", "sys/class/dmi/id", "sys/firmware/efi"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
    }
    std::fs::write(dir.path().join("sys/class/dmi/id/product_uuid"), "7E5C3F2A-1B4D-4E6F-8A9B-0C1D2E3F4A5B")
        .expect("id");
    std::fs::write(dir.path().join("etc/hostname"), "wala-vm\n").expect("hostname");
    let conf = format!(
        "Wala.WireServer={}\nWala.HostGAPlugin={}\nWala.Imds={}\n{extra}",
        fabric.wire_addr(),
        fabric.hgap_addr(),
        fabric.imds_addr()
    );
    std::fs::write(dir.path().join("etc/waagent.conf"), conf).expect("conf");
    dir
}

fn notify_socket(dir: &Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify");
    let sock = UnixDatagram::bind(&path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    (sock, path)
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 128];
    let n = sock.recv(&mut buf).expect("notify message");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn count(fabric: &Fabric, listener: Listener, needle: &str) -> usize {
    fabric.requests().iter().filter(|r| r.listener == listener && r.target.contains(needle)).count()
}

#[test]
fn sigterm_stops_within_a_second_even_while_a_request_hangs() {
    let fabric = Fabric::start_builtin().expect("fabric");
    fabric.add_fault(Fault::new(
        Listener::Wireserver,
        "/machine/?comp=goalstate",
        FaultAction::Delay { ms: 30_000 },
    ));
    let dir = root_for(&fabric, "");
    let (sock, path) = notify_socket(dir.path());
    let mut child = Command::new(BIN)
        .args(["daemon", "--root"])
        .arg(dir.path())
        .env("NOTIFY_SOCKET", &path)
        .spawn()
        .expect("spawn");
    assert_eq!(recv(&sock), "READY=1");
    let waiting = Instant::now();
    while count(&fabric, Listener::Wireserver, "comp=goalstate") == 0 {
        assert!(waiting.elapsed() < Duration::from_secs(10), "the daemon never asked for the goal state");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(recv(&sock), "STOPPING=1");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(sent.elapsed() < Duration::from_secs(1), "still running a second after SIGTERM");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(dir.path().join("var/log/waagent.log")).unwrap_or_default();
    assert!(log.contains(" INFO Daemon wala-agentd stopping after "), "{log}");
}

/// `wala-agentd daemon ARGS --root DIR` in the background, its output dropped.
fn spawn_quiet(dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .arg("daemon")
        .args(args)
        .arg("--root")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn")
}

fn run_polls(dir: &Path, polls: u64) -> std::process::Output {
    Command::new(BIN)
        .args(["daemon", "--goal-state-period-ms", "20", "--max-wakeups", &polls.to_string(), "--root"])
        .arg(dir)
        .output()
        .expect("run")
}

#[test]
fn an_idle_period_fetches_the_goal_state_and_vmsettings_only_and_a_new_incarnation_its_documents() {
    let fabric = Fabric::start_builtin().expect("fabric");
    let dir = root_for(&fabric, "");
    let mut child = spawn_quiet(dir.path(), &["--goal-state-period-ms", "20", "--max-wakeups", "60"]);
    // Twenty idle periods, then a new incarnation while the daemon runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&fabric, Listener::Wireserver, "comp=goalstate") < 20 {
        assert!(Instant::now() < deadline, "twenty polls within 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    fabric.bump_incarnation();
    assert!(child.wait().expect("wait").success());
    let polls = count(&fabric, Listener::Wireserver, "comp=goalstate");
    assert!(polls > 21, "{polls} polls");
    // The goal state's documents: once at start, once for the new incarnation, never when the
    // incarnation is unchanged.
    for doc in
        ["type=extensionsConfig", "type=hostingEnvironmentConfig", "type=sharedConfig", "comp=certificates"]
    {
        assert_eq!(count(&fabric, Listener::Wireserver, doc), 2, "{doc}");
    }
    assert_eq!(
        count(&fabric, Listener::Hostgaplugin, "/vmSettings"),
        polls,
        "vmSettings with every goal state"
    );
    let unconditional = fabric
        .requests()
        .iter()
        .filter(|r| r.target.contains("/vmSettings") && r.header("if-none-match").is_none())
        .count();
    assert_eq!(unconditional, 1, "only the first vmSettings request goes without the ETag");
    assert_eq!(count(&fabric, Listener::Hostgaplugin, "/status"), 2, "status at start and on the change");
    assert_eq!(count(&fabric, Listener::Wireserver, "comp=telemetrydata"), 1, "the start event");
    let artifacts = fabric.requests().iter().filter(|r| r.target.starts_with("/artifacts/")).count();
    assert_eq!(artifacts, 2, "the handler's manifest and zip, once");
    // Nothing else: per idle period exactly one goal state and one vmSettings request.
    let all = fabric.requests().len() as u64;
    assert_eq!(
        all,
        2 * polls as u64 + 2 * 4 + 2 + 2 + 1,
        "{:#?}",
        fabric.requests().iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    let traffic = [Listener::Wireserver, Listener::Hostgaplugin, Listener::Imds].map(|l| fabric.traffic(l));
    assert_eq!(traffic.iter().map(|t| t.requests).sum::<u64>(), all);
}

#[test]
fn status_is_uploaded_once_then_only_when_the_goal_state_changes() {
    let fabric = Fabric::start_builtin().expect("fabric");
    let dir = root_for(&fabric, "");
    let out = run_polls(dir.path(), 30);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let polls = count(&fabric, Listener::Wireserver, "comp=goalstate");
    assert!(polls >= 25, "{polls} goal-state polls");
    assert_eq!(count(&fabric, Listener::Hostgaplugin, "/status"), 1, "one upload while nothing changes");
    let telemetry: Vec<String> = fabric
        .requests()
        .iter()
        .filter(|r| r.target.contains("comp=telemetrydata"))
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(telemetry.len(), 1, "the queued start event was sent once");
    assert!(telemetry[0].contains(r#"Name="Operation" Value="AgentStart""#), "{}", telemetry[0]);
    assert!(std::fs::read_dir(dir.path().join("var/lib/waagent/events")).expect("queue").next().is_none());
    let vm_settings = count(&fabric, Listener::Hostgaplugin, "/vmSettings");
    assert!(vm_settings >= 25, "vmSettings asked for with its ETag on every poll: {vm_settings}");
    let conditional = fabric
        .requests()
        .iter()
        .filter(|r| {
            r.target.contains("/vmSettings")
                && r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("if-none-match"))
        })
        .count();
    assert_eq!(conditional, vm_settings - 1, "every request after the first carries the ETag");
    let blob = fabric.status_blob().expect("status blob");
    let doc: serde_json::Value = serde_json::from_slice(&blob.data).expect("status JSON");
    assert_eq!(doc["version"], "1.1");
    assert_eq!(doc["aggregateStatus"]["guestAgentStatus"]["status"], "Ready");
    assert_eq!(doc["aggregateStatus"]["guestAgentStatus"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["guestOSInfo"]["computerName"], "wala-vm");
    let first = doc["aggregateStatus"]["vmArtifactsAggregateStatus"]["goalStateAggregateStatus"]
        ["inSvdSeqNo"]
        .clone();

    // A new process, and three new incarnations (the first already at start-up, the others
    // while it runs, each once the change before it is reported): three uploads, the last naming
    // the newest incarnation, and none while nothing changes.
    fabric.bump_incarnation();
    let mut child = Command::new(BIN)
        .args(["daemon", "--goal-state-period-ms", "20", "--root"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let uploads = || count(&fabric, Listener::Hostgaplugin, "/status");
    let wait_uploads = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while uploads() < n {
            assert!(Instant::now() < deadline, "{} uploads, waiting for {n}", uploads());
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_uploads(2);
    for n in [3, 4] {
        fabric.bump_incarnation();
        wait_uploads(n);
    }
    let polls = count(&fabric, Listener::Wireserver, "comp=goalstate");
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&fabric, Listener::Wireserver, "comp=goalstate") < polls + 20 {
        assert!(Instant::now() < deadline, "twenty more polls within 20 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success());
    assert_eq!(uploads(), 1 + 3, "one upload per change");
    let doc: serde_json::Value =
        serde_json::from_slice(&fabric.status_blob().expect("blob").data).expect("JSON");
    let last =
        &doc["aggregateStatus"]["vmArtifactsAggregateStatus"]["goalStateAggregateStatus"]["inSvdSeqNo"];
    assert_eq!(last.as_u64(), first.as_u64().map(|n| n + 3));
}

/// The goal-state task's own requests, in the order the fabric took them: `v` for vmSettings,
/// `g` for the WireServer goal state.
fn poll_sequence(fabric: &Fabric) -> String {
    fabric
        .requests()
        .iter()
        .filter_map(|r| match r.listener {
            Listener::Hostgaplugin if r.target.starts_with("/vmSettings") => Some('v'),
            Listener::Wireserver if r.target.contains("comp=goalstate") => Some('g'),
            _ => None,
        })
        .collect()
}

#[test]
fn while_fast_track_is_quiet_the_wireserver_goal_state_is_fetched_every_wireserver_period_and_at_once_on_a_change(
) {
    let fabric = Fabric::start_builtin().expect("fabric");
    let dir = root_for(&fabric, "");
    // Polls every 20 ms; the WireServer every second while quiet, and on every poll for two
    // seconds after a change.
    let mut child =
        spawn_quiet(dir.path(), &["--goal-state-period-ms", "20", "--wireserver-period-ms", "1000"]);
    let counts = || {
        let seq = poll_sequence(&fabric);
        (seq.matches('g').count(), seq.matches('v').count())
    };
    // At first (the initial goal state, then two seconds after it) both on every poll.
    let deadline = Instant::now() + Duration::from_secs(20);
    while counts().1 < 20 {
        assert!(Instant::now() < deadline, "twenty polls within 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (g, v) = counts();
    assert!(g + 2 >= v, "the WireServer on every poll after a change: {g} goal states, {v} vmSettings");
    // Then quiet: a 2-s window with dozens of polls and one or two WireServer fetches.
    let quiet = loop {
        assert!(Instant::now() < deadline, "not quiet within 20 s: {}", poll_sequence(&fabric));
        let (g0, v0) = counts();
        std::thread::sleep(Duration::from_secs(2));
        let (g1, v1) = counts();
        if g1 - g0 <= 3 {
            break (g1 - g0, v1 - v0);
        }
    };
    assert!(quiet.1 >= 20 && (1..=3).contains(&quiet.0), "{quiet:?} (goal states, vmSettings) in 2 s");

    // A new vmSettings document (a new ETag): the WireServer goal state in the same poll.
    let before = poll_sequence(&fabric).len();
    let vm_settings = include_str!("../../fabric/scenario/vmSettings.json");
    fabric.set_vm_settings(Some(format!("{vm_settings}\n")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while poll_sequence(&fabric).len() < before + 10 {
        assert!(Instant::now() < deadline, "ten more requests within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = poll_sequence(&fabric)[before..].to_string();
    // The request in flight at the change may still have had the old document.
    assert!(
        after.starts_with("vg") || after.starts_with("vvg"),
        "{after} {}",
        std::fs::read_to_string(dir.path().join("var/log/waagent.log")).unwrap_or_default()
    );

    // Quiet again, then a new incarnation only the WireServer shows: taken in within a period.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "not quiet again within 20 s");
        let (g0, _) = counts();
        std::thread::sleep(Duration::from_millis(1500));
        if counts().0 - g0 <= 3 {
            break;
        }
    }
    let configs = count(&fabric, Listener::Wireserver, "type=extensionsConfig");
    let bumped = Instant::now();
    fabric.bump_incarnation();
    while count(&fabric, Listener::Wireserver, "type=extensionsConfig") == configs {
        assert!(bumped.elapsed() < Duration::from_secs(3), "the new incarnation not taken in within 3 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success());
}

#[test]
fn a_provisioning_report_that_never_got_through_is_sent() {
    let fabric = Fabric::start_builtin().expect("fabric");
    let dir = root_for(&fabric, "");
    let lib = dir.path().join("var/lib/waagent");
    std::fs::write(lib.join("provisioned"), "7E5C3F2A-1B4D-4E6F-8A9B-0C1D2E3F4A5B").expect("marker");
    std::fs::write(
        lib.join("wala-provisioning.json"),
        r#"{"vm_id":"7E5C3F2A-1B4D-4E6F-8A9B-0C1D2E3F4A5B","mode":"provision","local":{"result":"done"},"final_report_sent":false}"#,
    )
    .expect("state");
    let out = run_polls(dir.path(), 3);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let states: Vec<String> = fabric.health_reports().iter().map(|h| h.state.clone()).collect();
    assert_eq!(states.last().map(String::as_str), Some("Ready"), "{states:?}");
    let state = std::fs::read_to_string(lib.join("wala-provisioning.json")).expect("state");
    assert!(state.contains("\"final_report_sent\": true"), "{state}");
}

#[test]
fn turned_off_in_the_configuration_it_exits_6_after_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
    std::fs::write(dir.path().join("etc/waagent.conf"), "Wala.Enabled=n\n").expect("conf");
    let (sock, path) = notify_socket(dir.path());
    let out = Command::new(BIN)
        .args(["daemon", "--root"])
        .arg(dir.path())
        .env("NOTIFY_SOCKET", &path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(recv(&sock), "READY=1");
}

#[test]
fn a_wake_up_limit_ends_the_run_even_when_every_poll_brings_a_new_goal_state() {
    // The footprint benchmark's busy run: a new incarnation with every goal state, so handed-off
    // work is always outstanding; past the limit the daemon waits only for what was handed off
    // until then.
    let fabric = Fabric::start_builtin().expect("fabric");
    fabric.add_fault(Fault::new(
        Listener::Wireserver,
        "/machine/?comp=goalstate",
        FaultAction::BumpIncarnation,
    ));
    let dir = root_for(&fabric, "");
    let mut child = Command::new(BIN)
        .args(["daemon", "--goal-state-period-ms", "0", "--max-wakeups", "30", "--root"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after 60 s with --max-wakeups 30");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let log = std::fs::read_to_string(dir.path().join("var/log/waagent.log")).unwrap_or_default();
    let line = log.lines().find(|l| l.contains("stopping after")).expect("stop line");
    let wakeups: u64 = line
        .split("stopping after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("wake-ups");
    assert!((30..=60).contains(&wakeups), "{line}");
    assert!(
        count(&fabric, Listener::Wireserver, "type=extensionsConfig") > 10,
        "new goal states were taken in"
    );
}
