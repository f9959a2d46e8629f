//! The `wala-fabric` binary and scenario directories.

// Helpers in this test crate unwrap too: a failed step must fail the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use wala_fabric::{Fabric, FabricConfig, Listener, Scenario};

const BIN: &str = env!("CARGO_BIN_EXE_wala-fabric");

fn wait_for(path: &std::path::Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn binary_reports_ports_records_requests_applies_faults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ports = dir.path().join("ports.json");
    let record = dir.path().join("requests.jsonl");
    let faults = dir.path().join("faults.json");
    std::fs::write(
        &faults,
        r#"{"listener":"imds","path":"/metadata","times":1,"action":{"kind":"status","status":500}}"#,
    )
    .unwrap();
    let child = Command::new(BIN)
        .arg("--ports-file")
        .arg(&ports)
        .arg("--record")
        .arg(&record)
        .arg("--faults")
        .arg(&faults)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(&wait_for(&ports)).unwrap();
    let addr = |k: &str| line[k].as_str().unwrap().parse::<SocketAddr>().unwrap();
    let (wire, imds) = (addr("wireserver"), addr("imds"));
    assert!(wire.ip().is_loopback() && addr("hostgaplugin").ip().is_loopback());

    let md = [("Metadata", "true")];
    assert_eq!(get(imds, "/metadata/instance?api-version=2021-02-01", &md).status, 500);
    assert_eq!(get(imds, "/metadata/instance?api-version=2021-02-01", &md).status, 200);
    assert_eq!(get(wire, "/machine/?comp=goalstate", WIRE).status, 200);

    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(stdout.trim()).unwrap(), line);

    let recorded: Vec<serde_json::Value> =
        std::fs::read_to_string(&record).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let targets: Vec<&str> = recorded.iter().map(|r| r["target"].as_str().unwrap()).collect();
    assert_eq!(
        targets,
        [
            "/metadata/instance?api-version=2021-02-01",
            "/metadata/instance?api-version=2021-02-01",
            "/machine/?comp=goalstate"
        ]
    );
    assert_eq!(recorded[2]["listener"], "wireserver");
    assert!(recorded[2]["headers"].to_string().contains("x-ms-agent-name"));
}

#[test]
fn binary_exits_after_the_given_time_and_refuses_bad_scenarios() {
    let start = Instant::now();
    let out = Command::new(BIN).args(["--exit-after", "1"]).output().unwrap();
    assert!(out.status.success());
    assert!(start.elapsed() >= Duration::from_secs(1));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scenario.json"), r#"{"goal_state": "missing.xml"}"#).unwrap();
    let out = Command::new(BIN).arg("--scenario").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.xml"));

    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in
        ["--scenario", "--bind", "--record", "--faults", "--ports-file", "--exit-after", "--wire-port"]
    {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn binary_serves_an_imds_document_given_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("imds.json");
    std::fs::write(&doc, r#"{"compute": {"osProfile": {"adminUsername": "vmuser"}, "publicKeys": []}}"#)
        .unwrap();
    let ports = dir.path().join("ports.json");
    let child = Command::new(BIN)
        .arg("--ports-file")
        .arg(&ports)
        .arg("--imds-instance")
        .arg(&doc)
        .args(["--exit-after", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(&wait_for(&ports)).unwrap();
    let imds: SocketAddr = line["imds"].as_str().unwrap().parse().unwrap();
    let md = [("Metadata", "true")];
    let user = get(
        imds,
        "/metadata/instance/compute/osProfile/adminUsername?api-version=2021-02-01&format=text",
        &md,
    );
    assert_eq!(user.text(), "vmuser");
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(child.wait_with_output().unwrap().status.success());
    // Not an object: the fabric does not start.
    std::fs::write(&doc, "[]").unwrap();
    let out = Command::new(BIN).arg("--imds-instance").arg(&doc).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be a JSON object"), "{out:?}");
}

#[test]
fn scenario_directory_with_real_fabric_urls_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let gs = r#"<?xml version="1.0" encoding="utf-8"?>
<GoalState><Version>2012-11-30</Version><Incarnation>42</Incarnation>
<Container><ContainerId>c-1</ContainerId><RoleInstanceList><RoleInstance><InstanceId>i.vm</InstanceId>
<Configuration>
<HostingEnvironmentConfig>http://100.115.176.3:80/machine/c-1/i.vm?comp=config&amp;type=hostingEnvironmentConfig&amp;incarnation=1</HostingEnvironmentConfig>
<SharedConfig>http://168.63.129.16:80/machine/c-1/i.vm?comp=config&amp;type=sharedConfig&amp;incarnation=1</SharedConfig>
</Configuration></RoleInstance></RoleInstanceList></Container></GoalState>"#;
    std::fs::write(dir.path().join("gs.xml"), gs).unwrap();
    std::fs::write(dir.path().join("hec.xml"), "<HostingEnvironmentConfig/>").unwrap();
    std::fs::write(dir.path().join("sc.xml"), "<SharedConfig/>").unwrap();
    std::fs::write(
        dir.path().join("scenario.json"),
        r#"{"incarnation": 42, "goal_state": "gs.xml", "hosting_environment_config": "hec.xml",
            "shared_config": "sc.xml", "certificates": 0,
            "rewrite": {"http://100.115.176.3:80": "wireserver"}}"#,
    )
    .unwrap();
    let f = Fabric::start(FabricConfig::new(Scenario::from_dir(dir.path()).unwrap())).unwrap();
    let doc = get(f.wire_addr(), "/machine/?comp=goalstate", WIRE).text();
    assert_eq!(element(&doc, "Incarnation"), "42");
    let hec = element(&doc, "HostingEnvironmentConfig");
    assert!(hec.starts_with(&format!("http://{}/machine/", f.wire_addr())), "{hec}");
    assert!(hec.ends_with("incarnation=42"));
    assert_eq!(get(f.wire_addr(), &target_of(hec), WIRE).text(), "<HostingEnvironmentConfig/>");
    assert_eq!(get(f.wire_addr(), &target_of(element(&doc, "SharedConfig")), WIRE).text(), "<SharedConfig/>");
    // No vmSettings and no IMDS document in this scenario.
    assert_eq!(get(f.hgap_addr(), "/vmSettings", &[("x-ms-containerid", "c-1")]).status, 404);
    assert_eq!(get(f.imds_addr(), "/metadata/instance?api-version=1", &[("Metadata", "true")]).status, 404);
    assert!(f.certificates().is_empty());
    assert_eq!(f.requests_on(Listener::Imds).len(), 1);
}

#[test]
fn stop_ends_the_listeners() {
    let mut f = Fabric::start_builtin().unwrap();
    let addr = f.wire_addr();
    assert_eq!(get(addr, "/?comp=versions", &[]).status, 200);
    f.stop();
    assert!(std::net::TcpStream::connect(addr).is_err());
}
