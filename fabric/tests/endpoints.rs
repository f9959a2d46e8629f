//! Every endpoint answers over real loopback HTTP, with the built-in scenario.

// Helpers in this test crate unwrap too: a failed step must fail the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;

use base64::Engine;
use common::*;
use openssl::cms::CmsContentInfo;
use openssl::hash::MessageDigest;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509};
use wala_fabric::{BlobType, Fabric, JitUser, Listener};

fn goal_state(f: &Fabric) -> String {
    let r = get(f.wire_addr(), "/machine/?comp=goalstate", WIRE);
    assert_eq!(r.status, 200);
    r.text()
}

#[test]
fn versions_and_goal_state_with_rewritten_urls_and_recorded_headers() {
    let f = Fabric::start_builtin().unwrap();
    let v = get(f.wire_addr(), "/?comp=versions", &[]);
    assert_eq!(v.status, 200);
    assert!(v.text().contains("<Version>2012-11-30</Version>"));

    let gs = goal_state(&f);
    assert_eq!(element(&gs, "Incarnation"), "1");
    let wire = format!("http://{}/machine/", f.wire_addr());
    assert!(element(&gs, "ExtensionsConfig").starts_with(&wire), "{gs}");
    assert!(!gs.contains("{{"), "unrendered token in {gs}");

    let last = f.requests().pop().unwrap();
    assert_eq!(last.listener, Listener::Wireserver);
    assert_eq!(last.target, "/machine/?comp=goalstate");
    assert_eq!(last.header("x-ms-version"), Some("2012-11-30"));
    assert_eq!(last.header("x-ms-agent-name"), Some("WALinuxAgent"));

    // Missing or unknown protocol versions are refused.
    assert_eq!(get(f.wire_addr(), "/machine/?comp=goalstate", &[]).status, 400);
    assert_eq!(get(f.wire_addr(), "/machine/?comp=goalstate", &[("x-ms-version", "1999-01-01")]).status, 400);
}

#[test]
fn sub_documents_follow_the_goal_state_urls_and_incarnation() {
    let f = Fabric::start_builtin().unwrap();
    let gs = goal_state(&f);
    for (name, root) in [
        ("HostingEnvironmentConfig", "<HostingEnvironmentConfig"),
        ("SharedConfig", "<SharedConfig"),
        ("ExtensionsConfig", "<Extensions"),
    ] {
        let r = get(f.wire_addr(), &target_of(element(&gs, name)), WIRE);
        assert_eq!(r.status, 200, "{name}");
        assert!(r.text().contains(root), "{name}: {}", r.text());
    }
    let ext = get(f.wire_addr(), &target_of(element(&gs, "ExtensionsConfig")), WIRE).text();
    assert!(ext.contains(&f.certificates()[0].thumbprint), "thumbprint token rendered");
    assert_eq!(get(f.wire_addr(), &target_of(element(&gs, "FullConfig")), WIRE).status, 404);

    assert_eq!(f.bump_incarnation(), 2);
    let gs2 = goal_state(&f);
    assert_eq!(element(&gs2, "Incarnation"), "2");
    assert!(element(&gs2, "SharedConfig").ends_with("incarnation=2"));
}

#[test]
fn the_extensions_config_can_be_replaced_at_run_time() {
    let f = Fabric::start_builtin().unwrap();
    let target = target_of(element(&goal_state(&f), "ExtensionsConfig"));
    f.set_extensions_config("<Extensions><Plugins/><!-- {{incarnation}} --></Extensions>");
    assert_eq!(get(f.wire_addr(), &target, WIRE).text(), "<Extensions><Plugins/><!-- 1 --></Extensions>");
    let put =
        request(f.wire_addr(), "PUT", "/__fabric/extensionsconfig", &[], b"<Extensions>two</Extensions>");
    assert_eq!(put.unwrap().status, 204);
    assert_eq!(get(f.wire_addr(), &target, WIRE).text(), "<Extensions>two</Extensions>");
}

#[test]
fn protected_settings_are_encrypted_to_the_first_certificate_as_handlers_decrypt_them() {
    let f = Fabric::start_builtin().unwrap();
    let settings = br#"{"username":"newuser","password":"not-in-the-clear"}"#;
    let r = request(f.wire_addr(), "POST", "/__fabric/protect", &[], settings).unwrap();
    assert_eq!(r.status, 200);
    let b64 = r.text();
    assert!(!b64.contains("not-in-the-clear") && !b64.contains('\n'), "{b64}");
    let der = base64::engine::general_purpose::STANDARD.decode(&b64).unwrap();
    let tenant = &f.certificates()[0];
    let cms = CmsContentInfo::from_der(&der).unwrap();
    assert_eq!(cms.decrypt(&tenant.key, &tenant.cert).unwrap(), settings.to_vec());
    // Addressed to the first certificate only: the second one's key does not open it.
    let other = &f.certificates()[1];
    let cms = CmsContentInfo::from_der(&der).unwrap();
    assert!(cms.decrypt(&other.key, &other.cert).is_err());
    // The way the handlers decrypt it (Azure/azure-linux-extensions, Utils/handlerutil2.py):
    // the openssl command with the certificate and key files the agent writes to Lib.Dir.
    let dir = tempfile::tempdir().unwrap();
    let (crt, prv) = (dir.path().join("t.crt"), dir.path().join("t.prv"));
    std::fs::write(&crt, tenant.cert.to_pem().unwrap()).unwrap();
    std::fs::write(&prv, tenant.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    if let Ok(mut child) = std::process::Command::new("openssl")
        .args(["cms", "-decrypt", "-inform", "DER", "-recip"])
        .arg(&crt)
        .arg("-inkey")
        .arg(&prv)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        child.stdin.take().unwrap().write_all(&der).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, settings.to_vec());
    } else {
        eprintln!("NOTE: no openssl command here: the command-line decryption is not checked");
    }

    let scenario = wala_fabric::Scenario { certificates: 0, ..wala_fabric::Scenario::builtin().unwrap() };
    let none = Fabric::start(wala_fabric::FabricConfig::new(scenario)).unwrap();
    let r = request(none.wire_addr(), "POST", "/__fabric/protect", &[], settings).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn health_reports_are_parsed_in_order_and_other_posts_accepted() {
    let f = Fabric::start_builtin().unwrap();
    let report = |state: &str, details: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Health><GoalStateIncarnation>1</GoalStateIncarnation>\
             <Container><ContainerId>c</ContainerId><RoleInstanceList><Role><InstanceId>i</InstanceId>\
             <Health><State>{state}</State>{details}</Health></Role></RoleInstanceList></Container></Health>"
        )
    };
    let xml = &[WIRE[0], WIRE[1], ("Content-Type", "text/xml;charset=utf-8")];
    let starting = report(
        "NotReady",
        "<Details><SubStatus>Provisioning</SubStatus><Description>Starting</Description></Details>",
    );
    let r = request(f.wire_addr(), "POST", "/machine?comp=health", xml, starting.as_bytes()).unwrap();
    assert_eq!(r.status, 200);

    // The second report goes with a chunked body on a kept-alive connection.
    let mut s = TcpStream::connect(f.wire_addr()).unwrap();
    let ready = report("Ready", "");
    let (a, b) = ready.split_at(40);
    write!(
        s,
        "POST /machine/?comp=health HTTP/1.1\r\nHost: x\r\nx-ms-version: 2012-11-30\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    assert_eq!(receive(&mut reader).unwrap().status, 200);
    send(&mut s, "POST", "/machine?comp=health", WIRE, b"<Health><Nope/></Health>");
    assert_eq!(receive(&mut reader).unwrap().status, 400, "report without State refused");

    let states: Vec<_> =
        f.health_reports().into_iter().map(|h| (h.state, h.substatus, h.description)).collect();
    assert_eq!(
        states,
        vec![
            ("NotReady".to_string(), Some("Provisioning".to_string()), Some("Starting".to_string())),
            ("Ready".to_string(), None, None)
        ]
    );
    let recorded = f.requests_on(Listener::Wireserver);
    assert_eq!(recorded[1].body, ready, "chunked body recorded decoded");

    let props =
        request(f.wire_addr(), "POST", "/machine?comp=roleProperties", xml, b"<RoleProperties/>").unwrap();
    assert_eq!(props.status, 202);
    let tele =
        request(f.wire_addr(), "POST", "/machine?comp=telemetrydata", xml, b"<TelemetryData/>").unwrap();
    assert_eq!(tele.status, 200);
    assert_eq!(f.requests().last().unwrap().body, "<TelemetryData/>");
}

fn transport_cert() -> (X509, PKey<openssl::pkey::Private>) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "LinuxTransport").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = openssl::bn::BigNum::from_u32(0x5eed).unwrap().to_asn1_integer().unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    let nb = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
    let na = openssl::asn1::Asn1Time::days_from_now(730).unwrap();
    b.set_not_before(&nb).unwrap();
    b.set_not_after(&na).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (b.build(), key)
}

fn thumb(c: &X509) -> String {
    c.digest(MessageDigest::sha1()).unwrap().iter().map(|b| format!("{b:02X}")).collect()
}

#[test]
fn certificates_decrypt_with_the_transport_key_for_both_ciphers_and_header_forms() {
    let f = Fabric::start_builtin().unwrap();
    let url = target_of(element(&goal_state(&f), "Certificates"));
    let (cert, key) = transport_cert();
    let pem = String::from_utf8(cert.to_pem().unwrap()).unwrap();
    // What WALinuxAgent sends: the PEM body without armour and newlines.
    let mangled: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    // The armoured PEM on one line is accepted too.
    let one_line: String = pem.lines().collect();
    for (header, cipher) in [(mangled.as_str(), "AES128_CBC"), (one_line.as_str(), "DES_EDE3_CBC")] {
        let r = get(
            f.wire_addr(),
            &url,
            &[WIRE[0], WIRE[1], ("x-ms-guest-agent-public-x509-cert", header), ("x-ms-cipher-name", cipher)],
        );
        assert_eq!(r.status, 200, "{cipher}: {}", r.text());
        let doc = r.text();
        assert_eq!(element(&doc, "Format"), "Pkcs7BlobWithPfxContents");
        assert_eq!(element(&doc, "Incarnation"), "1");
        let data: String = element(&doc, "Data").split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
        let cms = CmsContentInfo::from_der(&der).unwrap();
        let pfx = cms.decrypt(&key, &cert).unwrap();
        let parsed = Pkcs12::from_der(&pfx).unwrap().parse2("").unwrap();
        let served = f.certificates();
        let leaf = parsed.cert.unwrap();
        assert_eq!(thumb(&leaf), served[0].thumbprint);
        assert!(parsed.pkey.unwrap().public_eq(&served[0].key), "the tenant key is in the PFX");
        let others: Vec<String> = parsed.ca.unwrap().iter().map(|c| thumb(&c.to_owned())).collect();
        assert_eq!(others, vec![served[1].thumbprint.clone()]);
        // A different key cannot open it. With PKCS#1 v1.5 key transport OpenSSL does not say so
        // (implicit rejection: the wrong key yields a random content key, and about one in 256
        // of those also passes the CBC padding check), so what is asserted is that the content
        // does not come out.
        let (_, other_key) = transport_cert();
        assert!(cms.decrypt(&other_key, &cert).map_or(true, |wrong| wrong != pfx));
    }
}

#[test]
fn certificates_accept_spaced_base64_and_refuse_bad_requests() {
    let f = Fabric::start_builtin().unwrap();
    let url = target_of(element(&goal_state(&f), "Certificates"));
    let (cert, key) = transport_cert();
    let pem = String::from_utf8(cert.to_pem().unwrap()).unwrap();
    let b64_with_spaces: String =
        pem.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().join(" ");
    let r = get(
        f.wire_addr(),
        &url,
        &[
            WIRE[0],
            WIRE[1],
            ("x-ms-guest-agent-public-x509-cert", &b64_with_spaces),
            ("x-ms-cipher-name", "AES128_CBC"),
        ],
    );
    assert_eq!(r.status, 200);
    let der = base64::engine::general_purpose::STANDARD
        .decode(element(&r.text(), "Data").split_whitespace().collect::<String>())
        .unwrap();
    assert!(!CmsContentInfo::from_der(&der).unwrap().decrypt(&key, &cert).unwrap().is_empty());

    assert_eq!(get(f.wire_addr(), &url, WIRE).status, 400, "no transport cert");
    let bad_cipher = [
        WIRE[0],
        WIRE[1],
        ("x-ms-guest-agent-public-x509-cert", b64_with_spaces.as_str()),
        ("x-ms-cipher-name", "ROT13"),
    ];
    assert_eq!(get(f.wire_addr(), &url, &bad_cipher).status, 400);
    let bad_cert = [
        WIRE[0],
        WIRE[1],
        ("x-ms-guest-agent-public-x509-cert", "bm90IGEgY2VydA=="),
        ("x-ms-cipher-name", "AES128_CBC"),
    ];
    assert_eq!(get(f.wire_addr(), &url, &bad_cert).status, 400);
}

#[test]
fn remote_access_users_are_named_by_the_goal_state_and_their_passwords_encrypted_to_the_agent() {
    let f = Fabric::start_builtin().unwrap();
    assert!(!goal_state(&f).contains("RemoteAccessInfo"), "no users, no document");
    f.set_remote_access(Some(vec![
        JitUser::new("jit1", "Pä55w.rd!", "Tue, 01 Jan 2030 00:00:00 GMT"),
        JitUser::expiring_in("jit2", "other", -60),
    ]));
    let gs = goal_state(&f);
    let url = element(&gs, "RemoteAccessInfo");
    assert_eq!(
        url,
        format!(
            "http://{}/machine/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0?comp=remoteaccess&amp;incarnation=1",
            f.wire_addr()
        )
    );
    let target = target_of(url);
    let (cert, key) = transport_cert();
    let header: String = String::from_utf8(cert.to_pem().unwrap())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let with_cert = |cipher: &'static str| {
        let h = header.clone();
        move |f: &Fabric, target: &str| {
            get(
                f.wire_addr(),
                target,
                &[WIRE[0], WIRE[1], ("x-ms-guest-agent-public-x509-cert", &h), ("x-ms-cipher-name", cipher)],
            )
        }
    };
    for cipher in ["AES128_CBC", "DES_EDE3_CBC"] {
        let r = with_cert(cipher)(&f, &target);
        assert_eq!(r.status, 200, "{}", r.text());
        let doc = r.text();
        assert_eq!(element(&doc, "Incarnation"), "1");
        let users: Vec<&str> = doc.split("<User>").skip(1).collect();
        assert_eq!(users.len(), 2, "{doc}");
        assert_eq!(element(users[0], "Name"), "jit1");
        assert_eq!(element(users[0], "Expiration"), "Tue, 01 Jan 2030 00:00:00 GMT");
        assert!(!doc.contains("Pä55w.rd!") && !doc.contains("other"), "{doc}");
        let der = base64::engine::general_purpose::STANDARD.decode(element(users[0], "Password")).unwrap();
        let plain = CmsContentInfo::from_der(&der).unwrap().decrypt(&key, &cert).unwrap();
        let utf16: Vec<u16> = plain.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        assert_eq!(String::from_utf16(&utf16).unwrap(), "Pä55w.rd!", "UTF-16LE inside");
        // The relative expiration was fixed when the users were set: a minute ago.
        let expiration = element(users[1], "Expiration");
        assert!(expiration.ends_with(" GMT") && expiration.len() == 29, "{expiration}");
        assert_eq!(f.remote_access().unwrap()[1].expiration.as_deref(), Some(expiration));
    }
    assert_eq!(get(f.wire_addr(), &target, WIRE).status, 400, "no transport cert");
    // Taken out again: the goal state names no document and the URL answers 404.
    f.set_remote_access(None);
    assert!(!goal_state(&f).contains("RemoteAccessInfo"));
    assert_eq!(with_cert("AES128_CBC")(&f, &target).status, 404);
    // The control endpoint sets them too, and lists them without passwords.
    let put = request(
        f.wire_addr(),
        "PUT",
        "/__fabric/remoteaccess",
        &[],
        br#"[{"name":"ctl","password":"SECRET-PW","expires_in_secs":3600}]"#,
    )
    .unwrap();
    assert_eq!(put.status, 204);
    let listed = get(f.wire_addr(), "/__fabric/remoteaccess", &[]).text();
    assert!(listed.contains(r#""name":"ctl""#) && !listed.contains("SECRET-PW"), "{listed}");
    assert!(goal_state(&f).contains("<RemoteAccessInfo>"));
    let bad = request(f.wire_addr(), "PUT", "/__fabric/remoteaccess", &[], b"{\"name\":1}").unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(request(f.wire_addr(), "DELETE", "/__fabric/remoteaccess", &[], b"").unwrap().status, 204);
    assert_eq!(get(f.wire_addr(), "/__fabric/remoteaccess", &[]).status, 404);
}

#[test]
fn hostgaplugin_versions_health_and_vm_settings_etag() {
    let f = Fabric::start_builtin().unwrap();
    let h = f.hgap_addr();
    assert!(get(h, "/versions", HGAP).text().contains("2015-09-01"));
    assert_eq!(get(h, "/health", &[]).status, 200);

    let first = get(h, "/vmSettings", HGAP);
    assert_eq!(first.status, 200);
    let etag = first.header("ETag").unwrap().to_string();
    let doc: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(doc["hostGAPluginVersion"], "1.0.8.133");
    assert!(doc["statusUploadBlob"]["value"]
        .as_str()
        .unwrap()
        .starts_with(&format!("http://{}/", f.wire_addr())));

    let again = get(h, "/vmSettings", &[HGAP[0], HGAP[1], ("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("ETag"), Some(etag.as_str()));

    let stale =
        get(h, "/vmSettings", &[HGAP[0], ("x-ms-containerid", "00000000-dead-beef-0000-000000000000")]);
    assert_eq!((stale.status, stale.text().as_str()), (400, "InvalidContainerConfiguration"));

    f.set_vm_settings(Some(r#"{"hostGAPluginVersion":"1.0.8.133","extensionGoalStates":[]}"#.into()));
    let changed = get(h, "/vmSettings", &[HGAP[0], HGAP[1], ("If-None-Match", &etag)]);
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("ETag").unwrap(), etag);
    f.set_vm_settings(None);
    assert_eq!(get(h, "/vmSettings", HGAP).status, 404, "no Fast Track");
}

#[test]
fn extension_artifacts_direct_and_through_the_hostgaplugin() {
    let f = Fabric::start_builtin().unwrap();
    let manifest_url = format!("http://{}/artifacts/Wala.Test.Example/manifest.xml", f.wire_addr());
    let direct = get(f.wire_addr(), "/artifacts/Wala.Test.Example/manifest.xml", &[]);
    assert_eq!(direct.status, 200);
    let zip_url = element(&direct.text(), "Uri").to_string();
    assert!(zip_url.starts_with(&format!("http://{}/", f.wire_addr())));

    let proxied = get(
        f.hgap_addr(),
        "/extensionArtifact",
        &[HGAP[0], HGAP[1], ("x-ms-artifact-location", &manifest_url)],
    );
    assert_eq!(proxied.text(), direct.text());
    let zip = get(
        f.hgap_addr(),
        "/extensionArtifact",
        &[
            HGAP[0],
            HGAP[1],
            ("x-ms-artifact-location", &zip_url),
            ("x-ms-artifact-manifest-location", &manifest_url),
        ],
    );
    assert_eq!(zip.status, 200);
    assert_eq!(&zip.body[..4], b"PK\x03\x04");
    assert_eq!(zip.body, get(f.wire_addr(), &target_of(&zip_url), &[]).body);
    let missing = format!("http://{}/artifacts/none.zip", f.wire_addr());
    assert_eq!(
        get(f.hgap_addr(), "/extensionArtifact", &[HGAP[0], HGAP[1], ("x-ms-artifact-location", &missing)])
            .status,
        502
    );

    let log = request(f.hgap_addr(), "PUT", "/vmAgentLog", HGAP, b"PK\x05\x06zip\xff").unwrap();
    assert_eq!(log.status, 200);
    let rec = f.requests().pop().unwrap();
    assert!(rec.body_base64, "binary body recorded as base64");
    assert_eq!(rec.body_bytes(), b"PK\x05\x06zip\xff");
}

#[test]
fn block_and_page_blobs_direct_and_through_hostgaplugin_status() {
    let f = Fabric::start_builtin().unwrap();
    let w = f.wire_addr();
    let sas = "/statusblob/vm.status?sv=2018-03-28&sr=b&sp=w&sig=x";
    let block = request(
        w,
        "PUT",
        sas,
        &[("x-ms-blob-type", "BlockBlob"), ("x-ms-version", "2014-02-14")],
        b"{\"v\":1}",
    )
    .unwrap();
    assert_eq!(block.status, 201);
    assert_eq!(f.status_blob().unwrap().data, b"{\"v\":1}");

    // PageBlob directly: create 1024 bytes, write the second page, then the first.
    let create = [("x-ms-blob-type", "PageBlob"), ("x-ms-blob-content-length", "1024")];
    assert_eq!(request(w, "PUT", sas, &create, b"").unwrap().status, 201);
    let page = |range: &str, byte: u8| {
        let h = [("x-ms-range", range), ("x-ms-page-write", "update")];
        request(w, "PUT", &format!("{sas}&comp=page"), &h, &[byte; 512]).unwrap().status
    };
    assert_eq!(page("bytes=512-1023", b'b'), 201);
    assert_eq!(page("bytes=0-511", b'a'), 201);
    assert_eq!(page("bytes=100-611", b'x'), 400, "unaligned");
    let blob = f.status_blob().unwrap();
    assert_eq!(blob.blob_type, BlobType::PageBlob);
    assert_eq!(blob.data, [[b'a'; 512], [b'b'; 512]].concat());

    // Through the HostGAPlugin envelope (spec §6.5): create without content, then pages.
    let url = format!("http://{w}/statusblob/vm.status?sv=2018-03-28&sr=b&sp=w&sig=x");
    let envelope = |content: Option<&[u8]>, headers: serde_json::Value, uri: &str| {
        let mut e = serde_json::json!({"headers": headers, "requestUri": uri});
        if let Some(c) = content {
            e["content"] = base64::engine::general_purpose::STANDARD.encode(c).into();
        }
        e.to_string()
    };
    let h = |n: &str, v: &str| serde_json::json!({"headerName": n, "headerValue": v});
    let status_hdrs = [HGAP[0], HGAP[1], ("Content-Type", "application/json")];
    let create = envelope(
        None,
        serde_json::json!([h("x-ms-blob-type", "PageBlob"), h("x-ms-blob-content-length", "1536")]),
        &url,
    );
    assert_eq!(
        request(f.hgap_addr(), "PUT", "/status", &status_hdrs, create.as_bytes()).unwrap().status,
        200
    );
    let body = format!("{:<1536}", "{\"version\":\"1.1\"}");
    for (i, chunk) in body.as_bytes().chunks(1024).enumerate() {
        let start = i * 1024;
        let range = format!("bytes={}-{}", start, start + chunk.len() - 1);
        let e = envelope(
            Some(chunk),
            serde_json::json!([h("x-ms-range", &range), h("x-ms-page-write", "update")]),
            &format!("{url}&comp=page"),
        );
        assert_eq!(request(f.hgap_addr(), "PUT", "/status", &status_hdrs, e.as_bytes()).unwrap().status, 200);
    }
    assert_eq!(f.status_blob().unwrap().data, body.as_bytes());
    let readback = get(w, "/__fabric/blob", &[]);
    assert_eq!(readback.body, body.as_bytes());

    let block = envelope(Some(b"{}"), serde_json::json!([h("x-ms-blob-type", "BlockBlob")]), &url);
    assert_eq!(request(f.hgap_addr(), "PUT", "/status", &status_hdrs, block.as_bytes()).unwrap().status, 200);
    assert_eq!(
        f.status_blob().unwrap(),
        wala_fabric::Blob { blob_type: BlobType::BlockBlob, data: b"{}".to_vec() }
    );
    let elsewhere =
        envelope(Some(b"{}"), serde_json::json!([h("x-ms-blob-type", "BlockBlob")]), "http://x/other");
    assert_eq!(
        request(f.hgap_addr(), "PUT", "/status", &status_hdrs, elsewhere.as_bytes()).unwrap().status,
        502
    );
}

#[test]
fn imds_requires_the_metadata_header_and_walks_paths() {
    let f = Fabric::start_builtin().unwrap();
    let i = f.imds_addr();
    let md = [("Metadata", "true")];
    let no_header = get(i, "/metadata/instance?api-version=2021-02-01", &[]);
    assert_eq!(no_header.status, 400);
    assert_eq!(get(i, "/metadata/instance", &md).status, 400, "api-version required");
    let full = get(i, "/metadata/instance?api-version=2023-11-15&extended=true", &md);
    assert_eq!(full.status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&full.body).unwrap();
    assert_eq!(doc["compute"]["osProfile"]["adminUsername"], "azureuser");
    assert_eq!(doc["network"]["interface"][0]["macAddress"], "000D3A0B0C0D");
    let name = get(i, "/metadata/instance/compute/name?api-version=2017-08-01&format=text", &md);
    assert_eq!(name.text(), "wala-test-vm");
    let keys =
        get(i, "/metadata/instance/compute/publicKeys?api-version=2021-02-01", &[("Metadata", "True")]);
    assert!(keys.text().starts_with("[{"), "{}", keys.text());
    assert_eq!(get(i, "/metadata/instance/compute/nope?api-version=2021-02-01", &md).status, 404);
}

#[test]
fn the_imds_document_can_be_replaced_or_removed_at_run_time() {
    let f = Fabric::start_builtin().unwrap();
    let (i, w) = (f.imds_addr(), f.wire_addr());
    let md = [("Metadata", "true")];
    let user = |f: &Fabric| {
        let r = get(
            f.imds_addr(),
            "/metadata/instance/compute/osProfile/adminUsername?api-version=2021-02-01&format=text",
            &md,
        );
        (r.status, r.text())
    };
    assert_eq!(user(&f), (200, "azureuser".to_string()));
    // A VM of the test's own: another user, its key, served at {{imds}}-rendered paths too.
    let doc = r#"{"compute": {"vmId": "v", "osProfile": {"adminUsername": "alice", "computerName": "h"},
        "publicKeys": [{"keyData": "ssh-ed25519 AAAA", "path": "/home/alice/.ssh/authorized_keys"}]}}"#;
    assert_eq!(request(w, "PUT", "/__fabric/imds", &[], doc.as_bytes()).unwrap().status, 204);
    assert_eq!(user(&f), (200, "alice".to_string()));
    let keys = get(i, "/metadata/instance/compute/publicKeys/0/path?api-version=2021-02-01&format=text", &md);
    assert_eq!(keys.text(), "/home/alice/.ssh/authorized_keys");
    // Not an object, or not JSON: refused, and the document stays.
    assert_eq!(request(w, "PUT", "/__fabric/imds", &[], b"[1]").unwrap().status, 400);
    assert_eq!(request(w, "PUT", "/__fabric/imds", &[], b"{nope").unwrap().status, 400);
    assert_eq!(user(&f).1, "alice");
    // Removed: IMDS answers 404, as for a scenario without one; the control requests are not recorded.
    assert_eq!(request(w, "DELETE", "/__fabric/imds", &[], b"").unwrap().status, 204);
    assert_eq!(get(i, "/metadata/instance?api-version=2021-02-01", &md).status, 404);
    f.set_imds_instance(Some(doc.replace("alice", "bob")));
    assert_eq!(user(&f).1, "bob");
    assert!(f.requests().iter().all(|r| !r.target.starts_with("/__fabric/")));
}

#[test]
fn reprovisiondata_is_held_open_then_404_until_a_user_takes_the_pool_vm_over() {
    let mut scenario = wala_fabric::Scenario::builtin().unwrap();
    scenario.reprovision_hold_ms = 200;
    let f = std::sync::Arc::new(Fabric::start(wala_fabric::FabricConfig::new(scenario)).unwrap());
    let i = f.imds_addr();
    let md = [("Metadata", "true")];
    let target = "/metadata/reprovisiondata?api-version=2019-06-01";
    assert_eq!(get(i, "/metadata/reprovisiondata", &md).status, 400, "api-version required");
    assert_eq!(get(i, target, &[]).status, 400, "Metadata header required");
    let started = std::time::Instant::now();
    assert_eq!(get(i, target, &md).status, 404);
    assert!(started.elapsed() >= std::time::Duration::from_millis(200), "held for the hold time");
    assert_eq!(f.incarnation(), 1);
    // A held request gets the document as soon as it is set; the goal state moves on.
    let setter = {
        let f = std::sync::Arc::clone(&f);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            f.set_reprovision_data(Some(b"<Environment/>"))
        })
    };
    let got = get(i, target, &md);
    assert_eq!(setter.join().unwrap(), 2);
    assert_eq!((got.status, got.text().as_str()), (200, "<Environment/>"));
    assert_eq!(element(&goal_state(&f), "Incarnation"), "2");
    // The control endpoint replaces and clears it.
    let put = request(f.wire_addr(), "PUT", "/__fabric/reprovisiondata", &[], b"<E2/>").unwrap();
    assert_eq!((put.status, put.text().contains("\"incarnation\":3")), (200, true), "{}", put.text());
    assert_eq!(get(i, target, &md).text(), "<E2/>");
    assert_eq!(get(f.wire_addr(), "/__fabric/reprovisiondata", &[]).text(), "<E2/>");
    assert_eq!(request(f.wire_addr(), "PUT", "/__fabric/reprovisiondata", &[], b"").unwrap().status, 400);
    assert_eq!(request(f.wire_addr(), "DELETE", "/__fabric/reprovisiondata", &[], b"").unwrap().status, 204);
    assert_eq!(get(i, target, &md).status, 404);
    assert_eq!(
        f.requests_on(Listener::Imds).iter().filter(|r| r.path() == "/metadata/reprovisiondata").count(),
        6
    );
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let f = Fabric::start_builtin().unwrap();
    let mut s = TcpStream::connect(f.wire_addr()).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for _ in 0..3 {
        send(&mut s, "GET", "/?comp=versions", &[], b"");
        let r = receive(&mut reader).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), Some("keep-alive"));
    }
    assert_eq!(f.requests().len(), 3);
}

#[test]
fn malformed_requests_get_400_and_never_crash_the_listener() {
    let f = Fabric::start_builtin().unwrap();
    for garbage in [
        &b"NOT HTTP\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /x HTTP/1.1\r\nContent-Length: zz\r\n\r\n",
        b"\xff\xfe\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(f.wire_addr()).unwrap();
        s.write_all(garbage).unwrap();
        let r = receive(&mut BufReader::new(s)).unwrap();
        assert_eq!(r.status, 400, "{garbage:?}");
    }
    assert_eq!(get(f.wire_addr(), "/?comp=versions", &[]).status, 200);
}

#[test]
fn random_garbage_never_takes_a_listener_down() {
    let f = Fabric::start_builtin().unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: [&[u8]; 8] = [
        b"GET ",
        b"POST /machine?comp=health HTTP/1.1\r\n",
        b"Content-Length: 5\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"ffffffff\r\n",
        b"\xff\x00:",
        b"x-ms-version: 2012-11-30\r\n",
    ];
    for addr in [f.wire_addr(), f.hgap_addr(), f.imds_addr()] {
        for _ in 0..40 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let mut data = Vec::new();
            for _ in 0..(next() % 12) {
                data.extend_from_slice(pieces[(next() % 8) as usize]);
            }
            // Broken pipes are fine: the server may answer 400 and close before all is written.
            let _ = s.write_all(&data);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut s, &mut sink);
        }
    }
    assert_eq!(get(f.wire_addr(), "/?comp=versions", &[]).status, 200);
    assert_eq!(get(f.hgap_addr(), "/health", &[]).status, 200);
}

#[test]
fn documents_can_advertise_the_platform_addresses_for_a_vm() {
    let config = wala_fabric::FabricConfig {
        advertise: Some(wala_fabric::platform_addresses()),
        ..wala_fabric::FabricConfig::new(wala_fabric::Scenario::builtin().unwrap())
    };
    let f = Fabric::start(config).unwrap();
    let gs = goal_state(&f);
    let own = f.wire_addr().to_string();
    assert!(gs.contains("http://168.63.129.16:80/"), "{gs}");
    assert!(!gs.contains(&own), "the bound address is not served: {gs}");
    // The status blob is still found by its path, whatever host the agent writes to.
    let ext_url = element(&gs, "ExtensionsConfig");
    let ext = get(f.wire_addr(), &target_of(ext_url), WIRE).text();
    assert!(ext.contains("http://168.63.129.16:80/"), "{ext}");
}

#[test]
fn traffic_counts_connections_requests_and_bytes_each_way_without_control_requests() {
    use std::io::Read;
    let f = Fabric::start_builtin().unwrap();
    let exchange = |addr, raw: &str| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        answer.len() as u64
    };
    let versions = "GET /?comp=versions HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n";
    let goal_state = "GET /machine/?comp=goalstate HTTP/1.1\r\nHost: w\r\nx-ms-version: 2012-11-30\r\n\
                      Connection: close\r\n\r\n";
    let out = exchange(f.wire_addr(), versions) + exchange(f.wire_addr(), goal_state);
    let health = "GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let hgap_out = exchange(f.hgap_addr(), health);
    // Control requests are the test's, not the agent's: not counted.
    assert_eq!(get(f.wire_addr(), "/__fabric/incarnation", &[]).status, 200);
    let wire = f.traffic(Listener::Wireserver);
    assert_eq!((wire.connections, wire.requests), (2, 2));
    assert_eq!(wire.bytes_in, (versions.len() + goal_state.len()) as u64);
    assert_eq!(wire.bytes_out, out);
    assert!(out > 1000, "the goal state is in it: {out}");
    let hgap = f.traffic(Listener::Hostgaplugin);
    assert_eq!(
        (hgap.connections, hgap.requests, hgap.bytes_in, hgap.bytes_out),
        (1, 1, health.len() as u64, hgap_out)
    );
    assert_eq!(f.traffic(Listener::Imds), Default::default());

    // Two requests on one kept-alive connection count one connection; the control endpoint
    // reports the same figures and clears them.
    let mut s = TcpStream::connect(f.hgap_addr()).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for _ in 0..2 {
        send(&mut s, "GET", "/health", &[], b"");
        assert_eq!(receive(&mut reader).unwrap().status, 200);
    }
    let hgap = f.traffic(Listener::Hostgaplugin);
    assert_eq!((hgap.connections, hgap.requests), (2, 3));
    let report: serde_json::Value =
        serde_json::from_str(&get(f.wire_addr(), "/__fabric/traffic", &[]).text()).unwrap();
    assert_eq!(report["hostgaplugin"]["requests"], 3);
    assert_eq!(report["wireserver"]["bytes_out"], out);
    assert_eq!(request(f.wire_addr(), "DELETE", "/__fabric/traffic", &[], b"").unwrap().status, 204);
    assert_eq!(f.traffic(Listener::Wireserver), Default::default());
}
