//! WireServer document conformance: every goal-state, sub-document and versions row of the reference
//! MANIFEST, and the project's own fixtures.
//!
//! Each reference file has a check in a per-kind table stating what its `expected_behavior` column
//! says; a MANIFEST row without a check fails, so new fixtures cannot be skipped silently.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns read fixtures; a failure is a test failure

mod common;

use std::path::Path;

use wala::documents::wire::{
    self, certificates::PFX_FORMAT, CertificatesPayload, DocumentError, GoalState, PROTOCOL_VERSION,
};

type Check<T> = fn(Result<T, DocumentError>);

fn read(path: &Path) -> String {
    String::from_utf8(std::fs::read(path).unwrap()).unwrap()
}

/// Run `parse` over every row of `kind`, applying the row's check. Valid rows must parse; malformed
/// rows' checks assert the rejection (or, for certificates, the skip).
fn run_kind<T: std::fmt::Debug>(
    kind: &str,
    parse: fn(&str) -> Result<T, DocumentError>,
    table: &[(&str, Check<T>)],
) {
    let Some(fixtures) = common::reference_fixtures(&format!("wire conformance ({kind})")) else { return };
    let rows = common::manifest_rows(&fixtures, kind);
    assert!(!rows.is_empty(), "no MANIFEST rows of kind {kind}");
    for row in &rows {
        let check = table.iter().find(|(p, _)| *p == row.path).map(|(_, c)| c).unwrap_or_else(|| {
            panic!("{}: no check in the {kind} table; add one from: {}", row.path, row.expected)
        });
        let result = parse(&read(&fixtures.join(&row.path)));
        if row.valid {
            assert!(result.is_ok(), "{}: valid fixture rejected: {:?}", row.path, result.as_ref().err());
        }
        check(result);
    }
    for (path, _) in table {
        assert!(rows.iter().any(|r| r.path == *path), "{path}: in the {kind} table but not in the MANIFEST");
    }
}

fn names(err: &DocumentError, element: &str) -> bool {
    matches!(err, DocumentError::Missing { path: e, .. } | DocumentError::Empty { path: e, .. } if e.ends_with(element))
}

const WALA_GS_URL: &str = "http://168.63.129.16:80/machine/865a6683-91d8-450f-99ae/bc8b9d47%2Db5ed%2D4704%2D85d9%2Dfd74cc967ec2.%5Fcanary";

fn wala_baseline(gs: &GoalState) {
    assert_eq!(gs.incarnation, 1);
    assert_eq!(gs.container_id, "c6d5526c-5ac2-4200-b6e2-56f2b70c5ab2");
    assert_eq!(gs.role_instance_id, "b61f93d0-e1ed-40b2-b067-22c243233448.MachineRole_IN_0");
    assert_eq!(
        gs.config_name.as_deref(),
        Some("bc8b9d47-b5ed-4704-85d9-fd74cc967ec2.5.bc8b9d47-b5ed-4704-85d9-fd74cc967ec2.5._canary.1.xml")
    );
    assert_eq!(gs.deployment_id(), Some("bc8b9d47-b5ed-4704-85d9-fd74cc967ec2"));
    assert_eq!(
        gs.hosting_env_url.as_deref(),
        Some(format!("{WALA_GS_URL}?comp=config&type=hostingEnvironmentConfig&incarnation=1").as_str())
    );
    assert_eq!(
        gs.shared_config_url.as_deref(),
        Some(format!("{WALA_GS_URL}?comp=config&type=sharedConfig&incarnation=1").as_str())
    );
    assert_eq!(
        gs.full_config_url.as_deref(),
        Some(format!("{WALA_GS_URL}?comp=config&type=fullConfig&incarnation=1").as_str())
    );
}

#[test]
fn goal_states() {
    run_kind(
        "goalstate",
        wire::parse_goal_state,
        &[
            ("scenarios/hibernate/goal_state_1/GoalState.xml", |r| {
                let gs = r.unwrap();
                assert_eq!(
                    (gs.incarnation, gs.container_id.as_str()),
                    (1, "06185f00-1f00-4545-abaa-4b7baa121869")
                );
                assert_eq!(gs.role_instance_id, "8cd0ae53-1baa-4f00-9356-a4e1a34f004c._test-vm");
            }),
            ("scenarios/hibernate/goal_state_2/GoalState.xml", |r| {
                // Same incarnation as goal_state_1, new container and instance: callers must compare those too.
                let gs = r.unwrap();
                assert_eq!(
                    (gs.incarnation, gs.container_id.as_str()),
                    (1, "6d8baa24-9f00-4f00-8aea-56fbaafee17e")
                );
                assert_eq!(gs.role_instance_id, "baa0a165-f009-4e19-8baa-1d14f00c4b15._test-vm");
            }),
            ("wire/goalstate/afterburn-goalstate.xml", |r| {
                let gs = r.unwrap();
                assert_eq!(gs.incarnation, 42);
                assert_eq!(gs.version.as_deref(), Some("2012-11-30"));
                assert_eq!(gs.container_id, "a511aa6d-29e7-4f53-8788-55655dfe848f");
                assert_eq!(gs.role_instance_id, "f6cd1d7ef1644557b9059345e5ba890c.lars-test-1");
                assert_eq!(
                    gs.certificates_url.as_deref(),
                    Some("http://100.115.176.3:80/machine/a511aa6d-29e7-4f53-8788-55655dfe848f/f6cd1d7ef1644557b9059345e5ba890c.lars%2Dtest%2D1?comp=certificates&incarnation=1")
                );
            }),
            ("wire/goalstate/cloud-init-goal_state-default.xml", |r| {
                let gs = r.unwrap();
                assert_eq!(
                    (gs.incarnation, gs.container_id.as_str(), gs.role_instance_id.as_str()),
                    (1, "MyContainerId", "MyInstanceId")
                );
                assert_eq!(gs.certificates_url.as_deref(), Some("MyCertificatesUrl"));
                assert_eq!(
                    gs.hosting_env_url.as_deref(),
                    Some("http://100.86.192.70:80/...hostingEnvironmentConfig...")
                );
                assert_eq!(
                    gs.extensions_config_url.as_deref(),
                    Some("http://100.86.192.70:80/...extensionsConfig...")
                );
            }),
            ("wire/goalstate/cloud-init-goal_state-missing_ContainerId.xml", |r| {
                let err = r.unwrap_err();
                assert!(names(&err, "ContainerId"), "{err}");
                assert!(err.to_string().contains("ContainerId"));
            }),
            ("wire/goalstate/cloud-init-goal_state-missing_InstanceId.xml", |r| {
                let err = r.unwrap_err();
                assert!(names(&err, "InstanceId"), "{err}");
            }),
            ("wire/goalstate/cloud-init-goal_state-no_certificates.xml", |r| {
                let gs = r.unwrap();
                assert_eq!(gs.certificates_url, None);
                assert!(gs.extensions_config_url.is_some());
            }),
            ("wire/goalstate/cloud-init-goal_state-random_non_xml_data.xml", |r| {
                assert!(matches!(r, Err(DocumentError::Xml { document: "GoalState", .. })), "{r:?}");
            }),
            ("wire/goalstate/goal_state.xml", |r| {
                let gs = r.unwrap();
                wala_baseline(&gs);
                assert_eq!(gs.version.as_deref(), Some("2010-12-15"));
                assert_eq!(
                    gs.extensions_config_url.as_deref(),
                    Some(format!("{WALA_GS_URL}?comp=config&type=extensionsConfig&incarnation=1").as_str())
                );
                assert_eq!(
                    gs.certificates_url.as_deref(),
                    Some(format!("{WALA_GS_URL}?comp=certificates&incarnation=1").as_str())
                );
            }),
            ("wire/goalstate/goal_state_no_certs.xml", |r| {
                let gs = r.unwrap();
                wala_baseline(&gs);
                assert_eq!(gs.certificates_url, None);
            }),
            ("wire/goalstate/goal_state_no_ext.xml", |r| {
                let gs = r.unwrap();
                wala_baseline(&gs);
                assert_eq!(gs.extensions_config_url, None);
                assert!(gs.certificates_url.is_some());
            }),
            ("wire/goalstate/goal_state_noop.xml", |r| {
                let e = r.unwrap_err();
                assert!(matches!(e, DocumentError::MissingRoleInstance { incarnation: 1 }), "{e}");
            }),
        ],
    );
}

#[test]
fn hosting_env() {
    run_kind(
        "hostingenv",
        wire::parse_hosting_env,
        &[
            ("scenarios/hibernate/goal_state_1/HostingEnvironmentConfig.xml", |r| {
                let h = r.unwrap();
                assert_eq!(h.vm_name.as_deref(), Some("_test-vm"));
                let thumbs: Vec<_> =
                    h.stored_certificates.iter().filter_map(|c| c.sha1_thumbprint()).collect();
                assert_eq!(
                    thumbs,
                    ["DC45A99039D4F9CFB0CD84D566BA065A763F3762", "1AF52E2E892C3A0DBC589F301F80073CBA924E26"]
                );
            }),
            ("scenarios/hibernate/goal_state_2/HostingEnvironmentConfig.xml", |r| {
                let h = r.unwrap();
                assert_eq!(h.vm_name.as_deref(), Some("_test-vm"));
                assert_eq!((h.role_name, h.deployment_name), (None, None));
            }),
            ("wire/hostingenv/hosting_env.xml", |r| {
                let h = r.unwrap();
                assert_eq!(h.vm_name.as_deref(), Some("MachineRole_IN_0"));
                assert_eq!(h.role_name.as_deref(), Some("MachineRole"));
                assert_eq!(h.deployment_name.as_deref(), Some("db00a7755a5e4e8a8fe4b19bc3b330c3"));
            }),
        ],
    );
}

#[test]
fn shared_config() {
    run_kind(
        "sharedconfig",
        wire::parse_shared_config,
        &[
            ("scenarios/hibernate/goal_state_1/SharedConfig.xml", |r| {
                assert_eq!(r.unwrap().private_ipv4(), Some("10.1.52.28".parse().unwrap()));
            }),
            ("scenarios/hibernate/goal_state_2/SharedConfig.xml", |r| {
                let sc = r.unwrap();
                assert_eq!(sc.private_ipv4(), Some("10.1.52.28".parse().unwrap()));
                assert_eq!(sc.public_ipv4(), None);
            }),
            ("wire/sharedconfig/shared_config.xml", |r| {
                let sc = r.unwrap();
                assert_eq!(sc.deployment_name.as_deref(), Some("db00a7755a5e4e8a8fe4b19bc3b330c3"));
                assert_eq!(sc.instance_name.as_deref(), Some("MachineRole_IN_0"));
                assert_eq!(sc.role_name.as_deref(), Some("MachineRole"));
                assert_eq!(sc.instances.len(), 1);
                assert_eq!(sc.instances[0].input_endpoints.len(), 3);
                assert_eq!(sc.private_ipv4(), Some("10.115.153.75".parse().unwrap()));
                assert_eq!(sc.public_ipv4(), Some("70.37.106.197".parse().unwrap()));
            }),
        ],
    );
}

#[test]
fn certificates() {
    fn pfx(r: Result<wire::Certificates, DocumentError>) {
        let c = r.unwrap();
        match c.payload().unwrap() {
            // A DER SEQUENCE with a long-form length: the CMS ContentInfo.
            CertificatesPayload::Pkcs7Pfx(der) => assert_eq!(der[0], 0x30, "not DER"),
            other => panic!("expected a PFX payload, got {other:?}"),
        }
    }
    run_kind(
        "certificates",
        wire::parse_certificates,
        &[
            ("scenarios/hibernate/goal_state_1/Certificates.xml", pfx),
            ("scenarios/hibernate/goal_state_2/Certificates.xml", pfx),
            ("wire/certs/certs.xml", |r| {
                let c = r.unwrap();
                assert_eq!(c.format.as_deref(), Some(PFX_FORMAT));
                pfx(Ok(c));
            }),
            ("wire/certs/certs_format_not_pfx.xml", |r| {
                // Malformed payload, but not an error: waagent skips it with a warning.
                assert_eq!(
                    r.unwrap().payload().ok(),
                    Some(CertificatesPayload::UnsupportedFormat("CertificatesNonPfxPackage".into()))
                );
            }),
            ("wire/certs/certs_no_format_specified.xml", |r| {
                let c = r.unwrap();
                assert_eq!(c.format, None);
                pfx(Ok(c));
            }),
        ],
    );
}

#[test]
fn certificate_summaries_match_hosting_env() {
    let Some(fixtures) = common::reference_fixtures("certificate summaries") else { return };
    let rows = common::manifest_rows(&fixtures, "certificates-summary");
    assert!(!rows.is_empty());
    for row in rows {
        let path = fixtures.join(&row.path);
        let summary = wire::parse_certificate_summary(&read(&path)).unwrap();
        assert_eq!(summary.len(), 2, "{}", row.path);
        assert_eq!(summary.iter().filter(|s| s.has_private_key).count(), 1, "{}", row.path);
        // The thumbprints are the ones HostingEnvironmentConfig lists for the same goal state.
        let hec =
            wire::parse_hosting_env(&read(&path.with_file_name("HostingEnvironmentConfig.xml"))).unwrap();
        let stored: Vec<String> =
            hec.stored_certificates.iter().filter_map(|c| c.sha1_thumbprint()).collect();
        for s in &summary {
            assert!(
                stored.contains(&s.thumbprint),
                "{}: {} not in HostingEnvironmentConfig",
                row.path,
                s.thumbprint
            );
        }
    }
}

#[test]
fn versions() {
    run_kind(
        "versions",
        wire::parse_versions,
        &[
            ("wire/versions/afterburn-versions.xml", |r| {
                let v = r.unwrap();
                assert_eq!(v.preferred.as_deref(), Some("2015-04-05"));
                assert_eq!(v.supported.len(), 10);
                assert!(v.supports(PROTOCOL_VERSION));
            }),
            ("wire/versions/version_info.xml", |r| {
                let v = r.unwrap();
                assert_eq!(v.preferred.as_deref(), Some(PROTOCOL_VERSION));
                assert_eq!(v.supported, ["2010-12-15", "2010-28-10"], "versions are opaque strings");
                assert!(v.supports(PROTOCOL_VERSION));
            }),
        ],
    );
}

#[test]
fn remote_access() {
    run_kind(
        "remoteaccess",
        wire::parse_remote_access,
        &[
            ("wire/remoteaccess/remote_access_10_accounts.xml", |r| assert_eq!(r.unwrap().users.len(), 10)),
            ("wire/remoteaccess/remote_access_no_accounts.xml", |r| assert!(r.unwrap().users.is_empty())),
            ("wire/remoteaccess/remote_access_single_account.xml", |r| {
                let ra = r.unwrap();
                assert_eq!(ra.incarnation.as_deref(), Some("1"));
                assert_eq!(ra.users.len(), 1);
                let u = &ra.users[0];
                assert_eq!(u.name, "testAccount");
                assert_eq!(u.encrypted_password.expose(), "encryptedPasswordString");
                assert_eq!(u.expiration.as_deref(), Some("2019-01-01"));
                assert_eq!(u.groups, ["Administrators", "RemoteDesktopUsers"]);
                assert!(!format!("{ra:?}").contains("encryptedPasswordString"));
            }),
            ("wire/remoteaccess/remote_access_two_accounts.xml", |r| {
                let names: Vec<String> = r.unwrap().users.into_iter().map(|u| u.name).collect();
                assert_eq!(names, ["testAccount1", "testAccount2"]);
            }),
        ],
    );
}

/// The project's own fixtures (`tests/fixtures/<kind>/`), present in every clone.
#[test]
fn project_fixtures() {
    let dir = common::project_fixtures();
    let gs = wire::parse_goal_state(&read(&dir.join("goalstate/bom-remote-access.xml"))).unwrap();
    assert_eq!(gs.incarnation, 12);
    assert_eq!(
        gs.remote_access_url.as_deref(),
        Some("http://10.0.0.1:80/machine/0a1b2c3d-0000-4000-8000-000000000001/vm%2D1?comp=remoteaccess&incarnation=12")
    );
    assert_eq!(
        gs.extensions_config_url.as_deref(),
        Some("http://10.0.0.1:80/machine/c/vm%2D1?comp=config&type=extensionsConfig&incarnation=12")
    );
    assert_eq!((gs.certificates_url.as_deref(), gs.full_config_url.as_deref()), (None, None));
    assert_eq!(gs.deployment_id(), Some("5e6f"));
    let json = serde_json::to_value(&gs).unwrap();
    assert_eq!(json["container_id"], "0a1b2c3d-0000-4000-8000-000000000001");

    let cut = wire::parse_goal_state(&read(&dir.join("goalstate/unclosed.xml"))).unwrap_err();
    assert!(matches!(cut, DocumentError::Xml { .. }), "{cut}");

    let v = wire::parse_versions(&read(&dir.join("versions/unsupported.xml"))).unwrap();
    assert!(!v.supports(PROTOCOL_VERSION));

    let c = wire::parse_certificates(&read(&dir.join("certificates/no-data.xml"))).unwrap();
    assert_eq!(c.payload().ok(), Some(CertificatesPayload::None));

    let ra =
        wire::parse_remote_access(&read(&dir.join("remoteaccess/user-without-password.xml"))).unwrap_err();
    assert!(names(&ra, "User[1]/Password"), "{ra}");

    let sc = wire::parse_shared_config(&read(&dir.join("sharedconfig/public-address.xml"))).unwrap();
    assert_eq!(sc.private_ipv4(), Some("10.3.0.5".parse().unwrap()));
    assert_eq!(sc.public_ipv4(), Some("20.30.40.50".parse().unwrap()));

    let wrong = wire::parse_hosting_env(&read(&dir.join("hostingenv/wrong-root.xml"))).unwrap_err();
    assert!(
        matches!(wrong, DocumentError::UnexpectedRoot { ref found, .. } if found == "SharedConfig"),
        "{wrong}"
    );
}

/// Every prefix of every fixture, and copies with one markup character swapped, give `Ok` or
/// `Err` from every parser: never a panic.
#[test]
fn damaged_documents_never_panic() {
    let mut texts: Vec<String> = Vec::new();
    for kind in ["goalstate", "hostingenv", "sharedconfig", "certificates", "versions", "remoteaccess"] {
        for entry in std::fs::read_dir(common::project_fixtures().join(kind)).into_iter().flatten().flatten()
        {
            texts.push(read(&entry.path()));
        }
    }
    if let Some(fixtures) = common::reference_fixtures("wire damage") {
        for kind in ["goalstate", "hostingenv", "sharedconfig", "versions", "remoteaccess"] {
            for row in common::manifest_rows(&fixtures, kind) {
                texts.push(read(&fixtures.join(&row.path)));
            }
        }
    }
    assert!(!texts.is_empty());
    for text in &texts {
        let mut variants: Vec<String> = (0..text.len())
            .step_by(7)
            .filter(|i| text.is_char_boundary(*i))
            .map(|i| text[..i].to_string())
            .collect();
        for (i, c) in text.char_indices().filter(|(_, c)| "<>&/\"=".contains(*c)).step_by(5) {
            for replacement in ["", "&", "<", "\u{0}"] {
                variants.push(format!("{}{replacement}{}", &text[..i], &text[i + c.len_utf8()..]));
            }
        }
        for v in &variants {
            let _ = wire::parse_goal_state(v);
            let _ = wire::parse_hosting_env(v);
            let _ = wire::parse_shared_config(v);
            let _ = wire::parse_certificates(v).map(|c| c.payload());
            let _ = wire::parse_versions(v);
            let _ = wire::parse_remote_access(v);
        }
    }
}
