//! Platform connections kept between goal-state periods, against the fabric simulator on
//! loopback in each way an endpoint may treat them: kept for a minute, closed after every answer
//! (`Connection: close`), closed while idle between two periods, and reset at the moment a kept
//! connection carries a request. In every case each period makes its two requests and none is
//! lost or delayed; only the number of TCP connections differs.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use wala_fabric::{Fabric, FabricConfig, Fault, FaultAction, Listener, Scenario};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_wala-agentd");

/// A root whose configuration points every platform endpoint at the fabric.
/// The tests' root ([`support::root_for`]) with debug lines logged (`Logs.Verbose=y`, to see
/// whether a request was sent again), a pid-file directory and a VM id, so that the daemon has
/// nothing to warn about.
fn root_for(fabric: &Fabric) -> tempfile::TempDir {
    let dir = support::root_for(fabric, "Logs.Verbose=y\n");
    std::fs::create_dir_all(dir.path().join("var/run")).expect("mkdir");
    std::fs::write(dir.path().join("sys/class/dmi/id/product_uuid"), "7E5C3F2A-1B4D-4E6F-8A9B-0C1D2E3F4A5B")
        .expect("id");
    dir
}

fn fabric_keeping_idle_connections(idle: Duration) -> Fabric {
    let mut config = FabricConfig::new(Scenario::builtin().expect("scenario"));
    config.keep_alive_idle = idle;
    Fabric::start(config).expect("fabric")
}

fn count(fabric: &Fabric, listener: Listener, needle: &str) -> usize {
    fabric.requests().iter().filter(|r| r.listener == listener && r.target.contains(needle)).count()
}

fn run(dir: &Path, period_ms: u64, polls: u64) -> Output {
    let out = Command::new(BIN)
        .args([
            "daemon",
            "--goal-state-period-ms",
            &period_ms.to_string(),
            "--max-wakeups",
            &polls.to_string(),
        ])
        .arg("--root")
        .arg(dir)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("var/log/waagent.log")).unwrap_or_default()
}

/// The idle periods after the first goal state, as in `daemon.rs`: a first run takes the goal
/// state in (documents, certificates, the extension), the measured run starts from there.
fn warmed_up(fabric: &Fabric, dir: &Path) {
    run(dir, 20, 3);
    fabric.clear_requests();
    fabric.clear_traffic();
}

/// Each idle period asked for the goal state and for vmSettings, no more, no less.
fn assert_every_period_polled(fabric: &Fabric, dir: &Path) -> usize {
    let polls = count(fabric, Listener::Wireserver, "comp=goalstate");
    assert_eq!(
        count(fabric, Listener::Hostgaplugin, "/vmSettings"),
        polls,
        "vmSettings with every goal state"
    );
    let log = log_of(dir);
    assert!(!log.contains("WARNING"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    polls
}

#[test]
fn an_endpoint_that_keeps_connections_serves_every_idle_period_on_one_connection() {
    let fabric = fabric_keeping_idle_connections(Duration::from_secs(60));
    let dir = root_for(&fabric);
    warmed_up(&fabric, dir.path());
    run(dir.path(), 20, 40);
    let polls = assert_every_period_polled(&fabric, dir.path());
    assert!(polls >= 35, "{polls} polls");
    let wire = fabric.traffic(Listener::Wireserver);
    let hgap = fabric.traffic(Listener::Hostgaplugin);
    // One connection per endpoint for the whole run (the daemon starts with none).
    assert_eq!(wire.connections, 1, "{wire:?}");
    assert_eq!(hgap.connections, 1, "{hgap:?}");
    assert!(wire.requests as usize > polls, "{wire:?}");
}

#[test]
fn an_endpoint_that_closes_after_every_answer_costs_one_connection_per_request_and_nothing_else() {
    let fabric = fabric_keeping_idle_connections(Duration::ZERO);
    let dir = root_for(&fabric);
    warmed_up(&fabric, dir.path());
    run(dir.path(), 20, 30);
    let polls = assert_every_period_polled(&fabric, dir.path());
    assert!(polls >= 25, "{polls} polls");
    for listener in [Listener::Wireserver, Listener::Hostgaplugin] {
        let t = fabric.traffic(listener);
        assert_eq!(t.connections, t.requests, "{listener:?}: {t:?}");
    }
}

#[test]
fn connections_the_endpoint_closed_while_idle_are_replaced_before_the_next_request() {
    // The fabric closes an idle connection after 10 ms; the daemon waits 100 ms between periods,
    // so every kept connection is closed by the time it would be used.
    let fabric = fabric_keeping_idle_connections(Duration::from_millis(10));
    let dir = root_for(&fabric);
    warmed_up(&fabric, dir.path());
    run(dir.path(), 100, 12);
    let polls = assert_every_period_polled(&fabric, dir.path());
    assert!(polls >= 10, "{polls} polls");
    // Each found closed before use, and a new one opened. (A request that met the close at the
    // very moment is sent again at once: the last test.)
    let wire = fabric.traffic(Listener::Wireserver);
    assert!(wire.connections as usize >= polls, "{wire:?}");
}

#[test]
fn a_kept_connection_reset_as_it_carries_a_request_is_replaced_at_once() {
    let fabric = fabric_keeping_idle_connections(Duration::from_secs(60));
    let dir = root_for(&fabric);
    warmed_up(&fabric, dir.path());
    // Once the daemon has made two vmSettings requests, the next one, on the connection kept
    // since the first, is reset without an answer. Sent again at once on a new connection, it is
    // not lost: vmSettings is asked once more in the same period, and not put off for a minute
    // as after a real failure.
    let mut child = Command::new(BIN)
        .args(["daemon", "--goal-state-period-ms", "20", "--max-wakeups", "30", "--root"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count(&fabric, Listener::Hostgaplugin, "/vmSettings") < 2 {
        assert!(std::time::Instant::now() < deadline, "two vmSettings requests within 30 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    fabric.add_fault(Fault::new(Listener::Hostgaplugin, "/vmSettings", FaultAction::Reset).times(1));
    assert!(child.wait().expect("wait").success());
    let polls = count(&fabric, Listener::Wireserver, "comp=goalstate");
    assert!(polls >= 25, "{polls} polls");
    assert_eq!(
        count(&fabric, Listener::Hostgaplugin, "/vmSettings"),
        polls + 1,
        "the reset one and its resend"
    );
    assert_eq!(fabric.traffic(Listener::Hostgaplugin).connections, 2);
    let log = log_of(dir.path());
    assert!(!log.contains("WARNING"), "{log}");
    assert_eq!(log.matches("on a kept connection; sending it again on a new one").count(), 1, "{log}");
}
