//! Contract and fault tests of the WireServer, HostGAPlugin and IMDS clients against the
//! `wala_fabric` simulator on loopback: method, path, query, headers and body of every request
//! kind, retry counts, deadlines, and the certificate round trip.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use wala::documents::wire::health::{ParamValue, TelemetryEvent};
use wala::platform::endpoint::{Endpoint, Endpoints};
use wala::platform::hostgaplugin::{ContainerIdentity, HostGaPluginClient, VmSettings};
use wala::platform::http::{HttpClient, HttpError, Request, RetryPolicy};
use wala::platform::imds::ImdsClient;
use wala::platform::wireserver::WireClient;
use wala::platform::{CertificateSource, Platform, ProvisioningHealth};
use wala_fabric::{Fabric, Fault, FaultAction, Listener, RecordedRequest};

fn endpoint(addr: std::net::SocketAddr) -> Endpoint {
    Endpoint::new(addr.ip().to_string(), addr.port())
}

fn endpoints(f: &Fabric) -> Endpoints {
    Endpoints::explicit(endpoint(f.wire_addr()), endpoint(f.hgap_addr()), endpoint(f.imds_addr()))
}

/// The real policy shapes, 20 times faster: base 50 ms, cap 400 ms, throttle 50 ms, 500 ms per
/// attempt, 3 s overall.
fn fast() -> RetryPolicy {
    RetryPolicy::wire().scaled_down(20)
}

fn setup() -> (Fabric, tempfile::TempDir, WireClient) {
    // Certificate work in this process: this test program has no wala-crypto beside it.
    wala::crypto::helper::answer_in_this_process();
    let fabric = Fabric::start_builtin().expect("fabric starts");
    let lib = tempfile::tempdir().unwrap();
    let client = WireClient::new(endpoints(&fabric), lib.path()).with_retry_policy(fast());
    (fabric, lib, client)
}

fn wire_requests(f: &Fabric) -> Vec<RecordedRequest> {
    f.requests_on(Listener::Wireserver)
}

fn assert_wire_headers(r: &RecordedRequest) {
    assert_eq!(r.header("x-ms-agent-name"), Some("WALinuxAgent"), "{}", r.target);
    assert_eq!(r.header("x-ms-version"), Some("2012-11-30"), "{}", r.target);
    assert!(r.header("user-agent").is_some_and(|u| u.starts_with("WALinuxAgent/")), "{}", r.target);
    // Platform connections are kept for the next request (`http.rs`): no `Connection: close`.
    assert_eq!(r.header("connection"), None, "{}", r.target);
}

#[test]
fn versions_request_has_no_wire_headers() {
    let (f, _lib, client) = setup();
    let v = client.check_versions().unwrap();
    assert!(v.supports("2012-11-30"));
    let reqs = wire_requests(&f);
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].method.as_str(), reqs[0].target.as_str()), ("GET", "/?comp=versions"));
    assert_eq!(reqs[0].header("x-ms-version"), None);
    assert_eq!(reqs[0].header("x-ms-agent-name"), None);
}

#[test]
fn goal_state_and_documents() {
    let (f, _lib, client) = setup();
    let gs = client.goal_state().unwrap();
    assert_eq!(gs.goal_state.incarnation, f.incarnation());
    assert_eq!(gs.goal_state.container_id, "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0");
    let he = client.hosting_env(&gs.goal_state).unwrap().unwrap();
    assert!(!format!("{he:?}").is_empty());
    let (_sc, raw) = client.shared_config(&gs.goal_state).unwrap().unwrap();
    assert!(raw.contains("SharedConfig"));
    let ext = client.extensions_config_text(&gs.goal_state).unwrap().unwrap();
    assert!(ext.contains("Extensions"));
    let reqs = wire_requests(&f);
    let targets: Vec<&str> = reqs.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets[0], "/machine/?comp=goalstate");
    assert!(targets[1].contains("?comp=config&type=hostingEnvironmentConfig&incarnation=1"), "{targets:?}");
    assert!(targets[2].contains("type=sharedConfig"));
    assert!(targets[3].contains("type=extensionsConfig"));
    assert_eq!(reqs.len(), 4);
    reqs.iter().for_each(assert_wire_headers);
}

#[test]
fn health_report_body_and_headers() {
    let (f, _lib, client) = setup();
    let failure = format!("user creation failed: <bad> & {}", "x".repeat(5000));
    Platform::report_health(&client, &ProvisioningHealth::Provisioning).unwrap();
    Platform::report_health(&client, &ProvisioningHealth::Failed { description: failure.clone() }).unwrap();
    Platform::report_health(&client, &ProvisioningHealth::Ready).unwrap();
    let reports = f.health_reports();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[0].state, "NotReady");
    assert_eq!(reports[0].substatus.as_deref(), Some("Provisioning"));
    assert_eq!(reports[0].description.as_deref(), Some("Starting"));
    assert_eq!(reports[0].container_id.as_deref(), Some("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"));
    assert_eq!(reports[0].instance_id.as_deref(), Some("5c0ffee0c0de4b1d8a11fab41c000001.wala-test-vm"));
    assert_eq!(reports[0].incarnation.as_deref(), Some("1"));
    let expected: String = failure.chars().take(3686).collect();
    assert_eq!(reports[1].description.as_deref(), Some(expected.as_str()));
    assert_eq!(reports[2].state, "Ready");
    assert_eq!(reports[2].substatus, None);
    let posts: Vec<RecordedRequest> = wire_requests(&f).into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 3);
    for p in &posts {
        assert_eq!(p.target, "/machine?comp=health");
        assert_eq!(p.header("content-type"), Some("text/xml;charset=utf-8"));
        assert_wire_headers(p);
        assert!(p.body.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?><Health "));
    }
    assert!(posts[1].body.contains("&lt;bad&gt; &amp; x"));
}

#[test]
fn role_properties_and_telemetry() {
    let (f, _lib, client) = setup();
    let gs = client.goal_state().unwrap().goal_state;
    client.report_role_properties(&gs, "ABCDEF0123").unwrap();
    let event = TelemetryEvent {
        provider_id: "69B669B9-4AF8-4C50-BDC4-6006FA76E975".into(),
        event_id: 1,
        params: vec![
            ("Name".into(), ParamValue::Str("wala".into())),
            ("OperationSuccess".into(), ParamValue::Bool(true)),
        ],
    };
    assert_eq!(client.send_telemetry(&[event.clone(), event]).unwrap(), 1);
    let reqs = wire_requests(&f);
    let rp = reqs.iter().find(|r| r.target == "/machine?comp=roleProperties").unwrap();
    assert_wire_headers(rp);
    assert!(
        rp.body.contains("<Property name=\"CertificateThumbprint\" value=\"ABCDEF0123\" />"),
        "{}",
        rp.body
    );
    assert!(rp.body.contains("<Id>5c0ffee0c0de4b1d8a11fab41c000001.wala-test-vm</Id>"));
    let tel: Vec<&RecordedRequest> =
        reqs.iter().filter(|r| r.target == "/machine?comp=telemetrydata").collect();
    assert_eq!(tel.len(), 1);
    assert_wire_headers(tel[0]);
    assert_eq!(tel[0].header("content-type"), Some("text/xml;charset=utf-8"));
    assert_eq!(tel[0].body.matches("<Event id=\"1\">").count(), 2);
    assert!(tel[0].body.contains("<Param Name=\"OperationSuccess\" Value=\"True\" T=\"mt:bool\" />"));
}

#[test]
fn certificates_round_trip() {
    let (f, lib, client) = setup();
    let thumbs = CertificateSource::fetch_certificates(&client).unwrap();
    let mut expected: Vec<String> = f.certificates().iter().map(|c| c.thumbprint.clone()).collect();
    let mut got = thumbs.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    for c in f.certificates() {
        let crt = lib.path().join(format!("{}.crt", c.thumbprint));
        let pem = std::fs::read(&crt).unwrap();
        assert_eq!(openssl::x509::X509::from_pem(&pem).unwrap().to_der().unwrap(), c.cert.to_der().unwrap());
        let prv = lib.path().join(format!("{}.prv", c.thumbprint));
        assert_eq!(prv.exists(), c.in_pfx_with_key, "{}", c.thumbprint);
        if c.in_pfx_with_key {
            assert_eq!(std::fs::metadata(&prv).unwrap().permissions().mode() & 0o777, 0o600);
            let key = openssl::pkey::PKey::private_key_from_pem(&std::fs::read(&prv).unwrap()).unwrap();
            assert!(key.public_eq(&c.key));
        }
    }
    for name in ["TransportPrivate.pem", "TransportCert.pem"] {
        let mode = std::fs::metadata(lib.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    let summary = wala::documents::wire::parse_certificate_summary(
        &std::fs::read_to_string(lib.path().join("Certificates.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary.len(), 2);
    let req = wire_requests(&f).into_iter().find(|r| r.target.contains("comp=certificates")).unwrap();
    assert_wire_headers(&req);
    assert_eq!(req.header("x-ms-cipher-name"), Some("AES128_CBC"));
    let cert_header = req.header("x-ms-guest-agent-public-x509-cert").unwrap();
    assert!(!cert_header.contains('-') && !cert_header.contains('\n'));
    // The transport key pair is reused on the next fetch.
    let before = std::fs::read(lib.path().join("TransportCert.pem")).unwrap();
    client.fetch_goal_state_certificates().unwrap();
    assert_eq!(std::fs::read(lib.path().join("TransportCert.pem")).unwrap(), before);
}

#[test]
fn certificates_fall_back_to_des_when_aes_fails() {
    let (f, lib, client) = setup();
    // A 404 is not retried: the AES request fails at once, the DES one succeeds.
    let gs = client.goal_state().unwrap().goal_state;
    let url = gs.certificates_url.clone().unwrap();
    let path = url.split_once("127.0.0.1").unwrap().1.split_once('/').unwrap().1;
    f.add_fault(
        Fault::new(
            Listener::Wireserver,
            &format!("/{path}"),
            FaultAction::Status { status: 404, body: None },
        )
        .times(1),
    );
    let summary = client.certificates(&gs).unwrap();
    assert_eq!(summary.len(), 2);
    let ciphers: Vec<String> = wire_requests(&f)
        .iter()
        .filter(|r| r.target.contains("comp=certificates"))
        .filter_map(|r| r.header("x-ms-cipher-name").map(str::to_string))
        .collect();
    assert_eq!(ciphers, ["AES128_CBC", "DES_EDE3_CBC"]);
    assert!(lib.path().join(format!("{}.crt", f.certificates()[0].thumbprint)).exists());
}

#[test]
fn undecryptable_certificates_are_an_error_not_a_panic() {
    let (f, lib, client) = setup();
    let gs = client.goal_state().unwrap().goal_state;
    let body = "<CertificateFile><Version>2012-11-30</Version><Incarnation>1</Incarnation>\
                <Format>Pkcs7BlobWithPfxContents</Format><Data>MIIBAAAA</Data></CertificateFile>";
    f.add_fault(
        Fault::new(
            Listener::Wireserver,
            "/machine/",
            FaultAction::Status { status: 200, body: Some(body.into()) },
        )
        .method("GET"),
    );
    let err = client.certificates(&gs).unwrap_err();
    assert!(err.to_string().contains("CMS"), "{err}");
    let n = wire_requests(&f).iter().filter(|r| r.target.contains("comp=certificates")).count();
    assert_eq!(n, 2, "one request per cipher");
    assert!(!lib.path().join("Certificates.json").exists());
}

#[test]
fn burst_of_5xx_then_success_within_deadline() {
    let (f, _lib, client) = setup();
    f.add_fault(
        Fault::new(
            Listener::Wireserver,
            "/machine/?comp=goalstate",
            FaultAction::Status { status: 500, body: None },
        )
        .times(3),
    );
    let start = Instant::now();
    client.goal_state().unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    let n = wire_requests(&f).iter().filter(|r| r.target == "/machine/?comp=goalstate").count();
    assert_eq!(n, 4);
}

#[test]
fn persistent_failure_gives_up_within_the_deadline() {
    let (f, _lib, client) = setup();
    f.add_fault(Fault::new(
        Listener::Wireserver,
        "/machine/?comp=goalstate",
        FaultAction::Status { status: 503, body: None },
    ));
    let start = Instant::now();
    let err = client.goal_state().unwrap_err();
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_millis(3500), "{elapsed:?}");
    let msg = err.to_string();
    assert!(msg.contains("/machine/?comp=goalstate") && msg.contains("503"), "{msg}");
    // Throttled: fixed 50 ms delay, so well over the 6 normal attempts before the 3 s deadline.
    let n = wire_requests(&f).iter().filter(|r| r.target == "/machine/?comp=goalstate").count();
    assert!((7..=25).contains(&n), "{n} attempts");
}

#[test]
fn non_retryable_status_is_not_retried() {
    let (f, _lib, client) = setup();
    f.add_fault(Fault::new(
        Listener::Wireserver,
        "/machine/?comp=goalstate",
        FaultAction::Status { status: 404, body: None },
    ));
    let err = client.goal_state().unwrap_err();
    assert!(err.to_string().contains("HTTP 404 after 1 attempt"), "{err}");
    assert_eq!(wire_requests(&f).len(), 1);
}

#[test]
fn resets_and_truncated_bodies_are_retried() {
    let (f, _lib, client) = setup();
    f.add_fault(Fault::new(Listener::Wireserver, "/machine/?comp=goalstate", FaultAction::Reset).times(2));
    client.goal_state().unwrap();
    assert_eq!(wire_requests(&f).len(), 3);
    f.clear_requests();
    f.add_fault(
        Fault::new(
            Listener::Wireserver,
            "/machine/?comp=goalstate",
            FaultAction::Truncate { keep: Some(40) },
        )
        .times(1),
    );
    client.goal_state().unwrap();
    assert_eq!(wire_requests(&f).len(), 2);
}

#[test]
fn slow_server_hits_the_attempt_timeout() {
    let (f, _lib, client) = setup();
    f.add_fault(
        Fault::new(Listener::Wireserver, "/?comp=versions", FaultAction::Delay { ms: 2000 }).times(1),
    );
    let start = Instant::now();
    client.check_versions().unwrap();
    assert!(start.elapsed() < Duration::from_millis(1500), "{:?}", start.elapsed());
    assert_eq!(wire_requests(&f).len(), 2);
}

#[test]
fn gone_refetches_goal_state_within_a_bounded_budget() {
    let (f, _lib, client) = setup();
    f.add_fault(
        Fault::new(
            Listener::Wireserver,
            "/machine?comp=health",
            FaultAction::Status { status: 410, body: None },
        )
        .times(1),
    );
    client.report_health(&ProvisioningHealth::Ready).unwrap();
    let targets: Vec<String> = wire_requests(&f).iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        targets,
        [
            "/machine/?comp=goalstate",
            "/machine?comp=health",
            "/machine/?comp=goalstate",
            "/machine?comp=health"
        ]
    );
    assert_eq!(f.health_reports().len(), 1);
    // Four stale answers to the health report in a row: still reported (the fault campaign found
    // this ending without any report).
    f.clear_requests();
    f.add_fault(
        Fault::new(
            Listener::Wireserver,
            "/machine?comp=health",
            FaultAction::Status { status: 410, body: None },
        )
        .times(4),
    );
    client.report_health(&ProvisioningHealth::Ready).unwrap();
    assert_eq!(f.health_reports().len(), 2);
    // 410 on the goal state itself, for ever: STALE_RETRIES more fetches, then it is reported.
    f.clear_requests();
    f.add_fault(Fault::new(
        Listener::Wireserver,
        "/machine/?comp=goalstate",
        FaultAction::Status { status: 410, body: None },
    ));
    let err = client.goal_state().unwrap_err();
    assert!(err.is_stale(), "{err}");
    assert_eq!(wire_requests(&f).len(), 1 + wala::platform::wireserver::STALE_RETRIES as usize);
}

#[test]
fn invalid_container_configuration_is_stale() {
    let (f, _lib, _client) = setup();
    f.add_fault(Fault::new(
        Listener::Wireserver,
        "/x",
        FaultAction::Status {
            status: 400,
            body: Some("<Error>InvalidContainerConfiguration</Error>".into()),
        },
    ));
    let err = HttpClient::platform()
        .send(&Request::get(format!("http://{}/x", f.wire_addr())), &fast())
        .unwrap_err();
    assert!(matches!(err, HttpError::Stale { status: 400, .. }), "{err}");
}

#[test]
fn missing_role_instance_is_fetched_again() {
    let (f, _lib, client) = setup();
    let body = "<GoalState><Incarnation>1</Incarnation><Container><ContainerId>c</ContainerId>\
                <RoleInstanceList/></Container></GoalState>";
    f.add_fault(
        Fault::new(
            Listener::Wireserver,
            "/machine/?comp=goalstate",
            FaultAction::Status { status: 200, body: Some(body.into()) },
        )
        .times(2),
    );
    client.goal_state().unwrap();
    assert_eq!(wire_requests(&f).len(), 3);
    f.clear_requests();
    f.add_fault(Fault::new(
        Listener::Wireserver,
        "/machine/?comp=goalstate",
        FaultAction::Status { status: 200, body: Some(body.into()) },
    ));
    let err = client.goal_state().unwrap_err();
    assert!(err.to_string().contains("without a RoleInstance"), "{err}");
    assert_eq!(wire_requests(&f).len(), 6);
}

#[test]
fn hostgaplugin_versions_health_and_vm_settings() {
    let f = Fabric::start_builtin().unwrap();
    let wire = WireClient::new(endpoints(&f), "/nonexistent").with_retry_policy(fast());
    let gs = wire.goal_state().unwrap().goal_state;
    let who = ContainerIdentity::of(&gs);
    let hgap = HostGaPluginClient::new(endpoint(f.hgap_addr())).with_retry_policy(fast());
    assert!(hgap.is_available(&who));
    assert!(hgap.health());
    let VmSettings::Updated { etag, json } = hgap.vm_settings(&who, None).unwrap() else {
        panic!("expected settings")
    };
    assert!(json.trim_start().starts_with('{'));
    assert_eq!(hgap.vm_settings(&who, Some(&etag)).unwrap(), VmSettings::NotModified);
    let reqs = f.requests_on(Listener::Hostgaplugin);
    let vm: Vec<&RecordedRequest> = reqs.iter().filter(|r| r.path() == "/vmSettings").collect();
    assert_eq!(vm.len(), 2);
    for r in &vm {
        assert_eq!(r.header("x-ms-version"), Some("2015-09-01"));
        assert_eq!(r.header("x-ms-containerid"), Some(gs.container_id.as_str()));
        assert_eq!(r.header("x-ms-host-config-name"), gs.config_name.as_deref());
        assert_eq!(r.header("x-ms-client-correlationid").map(str::len), Some(36));
    }
    assert_eq!(vm[0].header("if-none-match"), None);
    assert_eq!(vm[1].header("if-none-match"), Some(etag.as_str()));
    assert_ne!(vm[0].header("x-ms-client-correlationid"), vm[1].header("x-ms-client-correlationid"));
    let versions = reqs.iter().find(|r| r.path() == "/versions").unwrap();
    assert_eq!(versions.header("x-ms-containerid"), Some(gs.container_id.as_str()));

    // Wrong container: 400 InvalidContainerConfiguration is stale.
    let stranger = ContainerIdentity { container_id: "other".into(), config_name: None };
    assert!(hgap.vm_settings(&stranger, None).unwrap_err().is_stale());
    // No vmSettings: unsupported. A 502 is an error, once.
    f.set_vm_settings(None);
    assert_eq!(hgap.vm_settings(&who, None).unwrap(), VmSettings::Unsupported);
    f.clear_requests();
    f.add_fault(Fault::new(
        Listener::Hostgaplugin,
        "/vmSettings",
        FaultAction::Status { status: 502, body: None },
    ));
    assert!(hgap.vm_settings(&who, None).unwrap_err().to_string().contains("Internal error in HGAP"));
    assert_eq!(f.requests_on(Listener::Hostgaplugin).len(), 1);
}

#[test]
fn imds_instance_via_fabric() {
    let f = Fabric::start_builtin().unwrap();
    let imds =
        ImdsClient::new(endpoint(f.imds_addr())).with_retry_policy(RetryPolicy::imds().scaled_down(10));
    let md = imds.instance().unwrap();
    assert!(!format!("{md:?}").is_empty());
    let reqs = f.requests_on(Listener::Imds);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].target, "/metadata/instance?api-version=2021-02-01");
    assert_eq!(reqs[0].header("metadata"), Some("true"));
    // A dead IMDS is given up on quickly.
    f.add_fault(Fault::new(Listener::Imds, "/metadata", FaultAction::Reset));
    let start = Instant::now();
    assert!(imds.instance().is_err());
    assert!(start.elapsed() < Duration::from_secs(1));
    // The full IMDS budget is a few seconds.
    assert!(RetryPolicy::imds().deadline <= Duration::from_secs(5));
}

/// A one-shot HTTP proxy: accepts a CONNECT (which is how ureq uses an HTTP proxy), then answers
/// the tunnelled request itself. Returns the request heads it received.
fn one_shot_proxy() -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{Read, Write};
    fn read_head(s: &mut std::net::TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut heads = vec![read_head(&mut s)];
        if heads[0].starts_with("CONNECT ") {
            s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").unwrap();
            heads.push(read_head(&mut s));
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").unwrap();
        heads
    });
    (addr, handle)
}

#[test]
fn storage_client_goes_through_the_configured_proxy() {
    let (addr, server) = one_shot_proxy();
    let proxy = wala::platform::http::ProxySetting { host: addr.ip().to_string(), port: addr.port() };
    let client = HttpClient::storage(&wala::platform::http::StorageProxy::Configured(proxy));
    assert_eq!(client.kind(), wala::platform::http::ClientKind::Storage);
    // The target host is never resolved or contacted: the proxy answers.
    let request = Request::get("http://blob.example.invalid/c/b?sv=1&sig=SECRET");
    let resp = client.send_once(&request, Duration::from_secs(5)).unwrap();
    assert_eq!(resp.body, b"ok");
    let heads = server.join().unwrap();
    assert!(heads[0].starts_with("CONNECT blob.example.invalid:80 HTTP/1.1\r\n"), "{heads:?}");
    assert!(heads[1].starts_with("GET /c/b?sv=1&sig=SECRET HTTP/1.1\r\n"), "{heads:?}");
}

#[test]
fn storage_https_verifies_the_server_certificate() {
    use openssl::ssl::{SslAcceptor, SslMethod};
    // A TLS server with a self-signed certificate: the handshake must be refused by the client.
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path();
    wala::crypto::openssl_certs::TransportKeys::load_or_create(lib).unwrap();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_private_key_file(lib.join("TransportPrivate.pem"), openssl::ssl::SslFiletype::PEM).unwrap();
    acceptor.set_certificate_chain_file(lib.join("TransportCert.pem")).unwrap();
    let acceptor = acceptor.build();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        acceptor.accept(s).is_err()
    });
    let err = HttpClient::storage(&wala::platform::http::StorageProxy::Environment)
        .send_once(&Request::get(format!("https://{addr}/c/b")), Duration::from_secs(5))
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    assert!(server.join().unwrap(), "the server saw a failed handshake");
}

#[test]
fn throttling_allows_more_attempts_at_a_fixed_delay() {
    let (f, _lib, client) = setup();
    // Eight 429s: more than the 6 attempts of an unthrottled request, within the throttled 25.
    f.add_fault(
        Fault::new(
            Listener::Wireserver,
            "/machine/?comp=goalstate",
            FaultAction::Status { status: 429, body: None },
        )
        .times(8),
    );
    let start = Instant::now();
    client.goal_state().unwrap();
    let reqs: Vec<RecordedRequest> = wire_requests(&f);
    assert_eq!(reqs.len(), 9);
    // Fixed 50 ms apart (scaled throttle delay), not doubling up to the 400 ms cap.
    assert!(start.elapsed() < Duration::from_millis(1500), "{:?}", start.elapsed());
    let gaps: Vec<u64> = reqs.windows(2).map(|w| w[1].elapsed_ms - w[0].elapsed_ms).collect();
    assert!(gaps.iter().all(|g| (40..300).contains(g)), "{gaps:?}");
}
