//! Each fault kind, observed from the client side.

// Helpers in this test crate unwrap too: a failed step must fail the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use wala_fabric::{Fabric, Fault, FaultAction, Listener};

const GS: &str = "/machine/?comp=goalstate";

#[test]
fn status_fault_for_the_next_n_requests_then_normal() {
    let f = Fabric::start_builtin().unwrap();
    f.add_fault(
        Fault::new(
            Listener::Hostgaplugin,
            "/vmSettings",
            FaultAction::Status { status: 400, body: Some("InvalidContainerConfiguration".into()) },
        )
        .times(2),
    );
    for _ in 0..2 {
        let r = get(f.hgap_addr(), "/vmSettings", HGAP);
        assert_eq!((r.status, r.text().as_str()), (400, "InvalidContainerConfiguration"));
    }
    assert_eq!(get(f.hgap_addr(), "/vmSettings", HGAP).status, 200);
    // Faulted requests are recorded too.
    assert_eq!(f.requests_on(Listener::Hostgaplugin).len(), 3);
}

#[test]
fn method_restricted_fault_leaves_other_methods_alone() {
    let f = Fabric::start_builtin().unwrap();
    f.add_fault(
        Fault::new(Listener::Wireserver, "/machine", FaultAction::Status { status: 410, body: None })
            .method("GET"),
    );
    assert_eq!(get(f.wire_addr(), GS, WIRE).status, 410);
    assert_eq!(get(f.wire_addr(), GS, WIRE).status, 410, "no count: always");
    let post =
        request(f.wire_addr(), "POST", "/machine?comp=telemetrydata", WIRE, b"<TelemetryData/>").unwrap();
    assert_eq!(post.status, 200);
    f.clear_faults();
    assert_eq!(get(f.wire_addr(), GS, WIRE).status, 200);
}

#[test]
fn delay_fault_holds_the_response() {
    let f = Fabric::start_builtin().unwrap();
    f.add_fault(Fault::new(Listener::Imds, "/metadata", FaultAction::Delay { ms: 400 }).times(1));
    let start = Instant::now();
    let r = get(f.imds_addr(), "/metadata/instance?api-version=2021-02-01", &[("Metadata", "true")]);
    assert_eq!(r.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(400), "{:?}", start.elapsed());
}

#[test]
fn reset_fault_closes_without_a_response() {
    let f = Fabric::start_builtin().unwrap();
    f.add_fault(Fault::new(Listener::Wireserver, "/machine/?comp=goalstate", FaultAction::Reset).times(1));
    let err = request(f.wire_addr(), "GET", GS, WIRE, b"").unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof),
        "unexpected error kind {err:?}"
    );
    assert_eq!(get(f.wire_addr(), GS, WIRE).status, 200);
}

#[test]
fn truncate_fault_announces_more_than_it_sends() {
    let f = Fabric::start_builtin().unwrap();
    f.add_fault(Fault::new(Listener::Wireserver, GS, FaultAction::Truncate { keep: Some(10) }).times(1));
    let mut s = TcpStream::connect(f.wire_addr()).unwrap();
    send(&mut s, "GET", GS, WIRE, b"");
    let mut reader = BufReader::new(s);
    let mut announced = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            announced = Some(v.trim().parse::<usize>().unwrap());
        }
    }
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len(), 10);
    assert!(announced.unwrap() > 100, "the full goal state length is announced");
    assert!(rest.starts_with(b"<?xml"));

    // The default keeps half of the body; a strict client sees an early EOF.
    f.add_fault(Fault::new(Listener::Wireserver, GS, FaultAction::Truncate { keep: None }).times(1));
    assert_eq!(request(f.wire_addr(), "GET", GS, WIRE, b"").unwrap_err().kind(), ErrorKind::UnexpectedEof);
}

#[test]
fn slow_body_fault_trickles_the_bytes() {
    let f = Fabric::start_builtin().unwrap();
    let normal = get(f.wire_addr(), "/?comp=versions", &[]);
    f.add_fault(
        Fault::new(
            Listener::Wireserver,
            "/?comp=versions",
            FaultAction::SlowBody { chunk: 64, interval_ms: 50 },
        )
        .times(1),
    );
    let start = Instant::now();
    let slow = get(f.wire_addr(), "/?comp=versions", &[]);
    let pauses = (slow.body.len() - 1) / 64;
    assert!(pauses >= 3, "the versions document spans several chunks");
    assert!(start.elapsed() >= Duration::from_millis(50 * pauses as u64), "{:?}", start.elapsed());
    assert_eq!(slow.body, normal.body, "content intact");
}

#[test]
fn incarnation_changes_mid_fetch() {
    let f = Fabric::start_builtin().unwrap();
    let gs = get(f.wire_addr(), GS, WIRE).text();
    assert_eq!(element(&gs, "Incarnation"), "1");
    f.add_fault(
        Fault::new(Listener::Wireserver, "/machine/", FaultAction::BumpIncarnation).method("GET").times(1),
    );
    // The agent fetches a sub-document: it is served, but the incarnation moves underneath it.
    let ext = get(f.wire_addr(), &target_of(element(&gs, "ExtensionsConfig")), WIRE);
    assert_eq!(ext.status, 200);
    assert!(ext.text().contains("goalStateIncarnation=\"2\""));
    assert_eq!(element(&get(f.wire_addr(), GS, WIRE).text(), "Incarnation"), "2");
    assert_eq!(f.incarnation(), 2);
}

#[test]
fn control_endpoints_drive_faults_incarnation_and_report_requests() {
    let f = Fabric::start_builtin().unwrap();
    let w = f.wire_addr();
    let fault = br#"[{"listener":"wireserver","path":"/machine/?comp=goalstate","times":1,
                      "action":{"kind":"status","status":503,"body":"busy"}}]"#;
    let added = request(w, "POST", "/__fabric/faults", &[], fault).unwrap();
    assert_eq!(added.status, 200, "{}", added.text());
    assert_eq!(get(w, "/__fabric/faults", &[]).text().matches("\"listener\"").count(), 1);
    assert_eq!(get(w, GS, WIRE).status, 503);
    assert_eq!(get(w, GS, WIRE).status, 200);
    assert_eq!(get(w, "/__fabric/faults", &[]).text(), "[]");
    assert_eq!(request(w, "POST", "/__fabric/faults", &[], b"{\"listener\":\"moon\"}").unwrap().status, 400);

    let bumped = request(w, "POST", "/__fabric/incarnation", &[], b"").unwrap();
    assert_eq!(bumped.text(), r#"{"incarnation":2}"#);
    let set = request(w, "POST", "/__fabric/incarnation", &[], b"9").unwrap();
    assert_eq!(set.text(), r#"{"incarnation":9}"#);
    assert_eq!(element(&get(w, GS, WIRE).text(), "Incarnation"), "9");

    get(f.hgap_addr(), "/health", &[]);
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&get(w, "/__fabric/requests?listener=hostgaplugin", &[]).body).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["target"], "/health");
    let all: Vec<serde_json::Value> =
        serde_json::from_slice(&get(w, "/__fabric/requests", &[]).body).unwrap();
    assert_eq!(all.len(), 4, "control requests are not recorded");
    assert_eq!(request(w, "DELETE", "/__fabric/requests", &[], b"").unwrap().status, 204);
    assert!(f.requests().is_empty());

    let certs: Vec<serde_json::Value> =
        serde_json::from_slice(&get(w, "/__fabric/certificates", &[]).body).unwrap();
    assert_eq!(certs[0]["thumbprint"], f.certificates()[0].thumbprint.as_str());
    assert_eq!(certs[0]["has_private_key"], true);
}
