//! The `wala-crypto` helper as the daemon uses it: a child process per call, through the
//! library's client ([`wala::crypto::helper::call`]). Certificates from the simulator (transport
//! certificate, decryption, keys by thumbprint) and HTTPS exchanges to a loopback TLS server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use openssl::ssl::{SslAcceptor, SslMethod};
use wala::crypto;
use wala::platform::endpoint::{Endpoint, Endpoints};
use wala::platform::http::{HttpClient, HttpError, Request, RetryPolicy, StorageProxy};
use wala::platform::wireserver::WireClient;
use wala_fabric::Fabric;

fn use_the_helper() {
    wala::crypto::helper::use_program(PathBuf::from(env!("CARGO_BIN_EXE_wala-crypto")));
}

fn endpoints(f: &Fabric) -> Endpoints {
    let e = |a: std::net::SocketAddr| Endpoint::new(a.ip().to_string(), a.port());
    Endpoints::explicit(e(f.wire_addr()), e(f.hgap_addr()), e(f.imds_addr()))
}

#[test]
fn certificates_are_decrypted_and_keys_read_by_the_helper() {
    use_the_helper();
    let f = Fabric::start_builtin().expect("fabric");
    let lib = tempfile::tempdir().expect("tempdir");
    let client =
        WireClient::new(endpoints(&f), lib.path()).with_retry_policy(RetryPolicy::wire().scaled_down(20));
    let gs = client.goal_state().expect("goal state").goal_state;
    let summary = client.certificates(&gs).expect("certificates");
    assert_eq!(summary.len(), f.certificates().len());
    for name in ["TransportPrivate.pem", "TransportCert.pem"] {
        let mode = std::fs::metadata(lib.path().join(name)).expect(name).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    for c in f.certificates() {
        let s = summary.iter().find(|s| s.thumbprint == c.thumbprint).expect("in the summary");
        assert_eq!(s.has_private_key, c.in_pfx_with_key);
        // Keys by thumbprint, as provisioning deploys them.
        let crt = std::fs::read(lib.path().join(format!("{}.crt", c.thumbprint))).expect("crt");
        let expected = wala::crypto::openssl_certs::openssh_public_key(&c.key).expect("ssh key");
        assert_eq!(crypto::openssh_key_from_cert_pem(&crt).expect("from cert"), expected);
        let prv = lib.path().join(format!("{}.prv", c.thumbprint));
        assert_eq!(prv.exists(), c.in_pfx_with_key);
        if c.in_pfx_with_key {
            assert_eq!(std::fs::metadata(&prv).expect("prv").permissions().mode() & 0o777, 0o600);
            let (private, public) =
                crypto::ssh_keypair_from_prv_pem(&std::fs::read(&prv).expect("prv")).expect("pair");
            assert_eq!(public, expected);
            let key = openssl::pkey::PKey::private_key_from_pem(&private).expect("PKCS#8");
            assert!(key.public_eq(&c.key));
        }
    }
    // The transport key pair is reused: the same header on the next call.
    let a = crypto::TransportKeys::load_or_create(lib.path()).expect("keys").header_value().expect("h");
    let b = crypto::TransportKeys::load_or_create(lib.path()).expect("keys").header_value().expect("h");
    assert_eq!(a, b);
    // An envelope that is not one fails in the helper and says so.
    let err = crypto::TransportKeys::load_or_create(lib.path())
        .expect("keys")
        .decrypt(b"not DER", wala::crypto::helper::Envelope::Password)
        .expect_err("garbage");
    assert!(err.to_string().contains("Password is not a CMS envelope"), "{err}");
}

/// A self-signed certificate for `localhost`, its key, and the PEM file the helper is told to
/// trust (`SSL_CERT_FILE`, which OpenSSL's default verify paths read).
fn tls_server(answers: usize, body: Vec<u8>) -> (u16, tempfile::TempDir) {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("key");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "localhost").expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("v3");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("t")).expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(1).expect("t")).expect("na");
    let san =
        SubjectAlternativeName::new().dns("localhost").build(&b.x509v3_context(None, None)).expect("san");
    b.append_extension(san).expect("ext");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    let cert = b.build();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), cert.to_pem().expect("pem")).expect("write");
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
    acceptor.set_private_key(&key).expect("key");
    acceptor.set_certificate(&cert).expect("cert");
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(answers) {
            let Ok(stream) = stream else { return };
            let Ok(mut tls) = acceptor.accept(stream) else { continue };
            let mut head = Vec::new();
            {
                let mut reader = BufReader::new(&mut tls);
                let mut line = String::new();
                let mut length = 0usize;
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.extend_from_slice(line.as_bytes());
                    line.clear();
                }
                let mut sent = vec![0u8; length];
                let _ = reader.read_exact(&mut sent);
            }
            let first = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
            let status = if first.starts_with("PUT ") { "201 Created" } else { "200 OK" };
            let _ =
                write!(tls, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nx-seen: {first}\r\n\r\n", body.len());
            let _ = tls.write_all(&body);
            let _ = tls.shutdown();
        }
    });
    (port, dir)
}

#[test]
fn https_exchanges_go_through_the_helper() {
    use_the_helper();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (port, dir) = tls_server(3, body.clone());
    // The helper inherits the environment: it trusts the test's certificate, and nothing else.
    std::env::set_var("SSL_CERT_FILE", dir.path().join("ca.pem"));
    let client = HttpClient::storage(&StorageProxy::Direct);
    let url = format!("https://localhost:{port}/container/blob?sv=2020&sig=SECRETSIG");
    let policy = RetryPolicy::wire().scaled_down(10);

    // A status PUT: the body goes over the helper's stdin, the answer comes back.
    let resp = client.send(&Request::put(&url, b"{\"status\":1}".to_vec()), &policy).expect("put");
    assert_eq!(resp.status, 201);
    assert_eq!(resp.header("x-seen"), Some("PUT /container/blob?sv=2020&sig=SECRETSIG HTTP/1.1"));
    // A package: streamed through the helper's body frames into the file.
    let mut out = Vec::new();
    let streamed =
        client.stream_once(&Request::get(&url), Duration::from_secs(20), 1 << 20, &mut out).expect("stream");
    assert_eq!((streamed.status, streamed.written), (200, body.len() as u64));
    assert_eq!(out, body);
    // Over the limit: refused, and the SAS signature is in no error text.
    let mut out = Vec::new();
    let err =
        client.stream_once(&Request::get(&url), Duration::from_secs(20), 1000, &mut out).expect_err("limit");
    assert!(matches!(err, HttpError::TooLarge { .. }), "{err:?}");
    assert!(!err.to_string().contains("SECRETSIG"), "{err}");
}

#[test]
fn an_https_failure_in_the_helper_is_a_transport_error_tried_again_by_the_caller() {
    use_the_helper();
    // A plain TCP server that closes every connection: no TLS handshake.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    let client = HttpClient::storage(&StorageProxy::Direct);
    // 1 s an attempt: a helper starts in milliseconds, but this machine may be busy.
    let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::wire().scaled_down(10) };
    let url = format!("https://127.0.0.1:{port}/c/b?sig=SECRETSIG");
    let err = client.send(&Request::get(&url), &policy).expect_err("no TLS");
    assert!(matches!(err, HttpError::Transport { attempts: 3, .. }), "{err:?}");
    assert!(!err.to_string().contains("SECRETSIG"), "{err}");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3, "one connection per attempt");
}
