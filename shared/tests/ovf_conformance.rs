//! The OVF parser against real documents: every `ovf-env` row of the reference MANIFEST (when the
//! reference fixtures are present) and the project's own fixtures in `tests/fixtures/ovf/` (always).

mod common;

use std::path::Path;

use wala::documents::ovf::{self, OvfEnv, OvfError};

/// What a document must parse to. Fields left `None` are not checked for that document.
#[derive(Default)]
struct Expect {
    host: Option<&'static str>,
    user: Option<&'static str>,
    /// `Some(None)`: no password; `Some(Some(pw))`: exactly `pw`.
    password: Option<Option<&'static str>>,
    custom_data: Option<Option<&'static str>>,
    disable_password_auth: Option<Option<bool>>,
    /// In document order.
    public_keys: Option<Vec<KeyTriple>>,
    /// (fingerprint, path) in document order.
    key_pairs: Option<Vec<(&'static str, &'static str)>>,
    provision_guest_agent: Option<&'static str>,
    preprovisioned_vm: Option<Option<bool>>,
    preprovisioned_vm_type: Option<Option<&'static str>>,
    provision_guest_proxy_agent: Option<Option<bool>>,
}

/// A public key as (fingerprint, path, value).
type KeyTriple = (Option<&'static str>, &'static str, Option<&'static str>);

/// What a refused document must fail with.
type ExpectErr = fn(&OvfError) -> bool;

/// 73 times `a` (one more than cloud-init's limit; waagent has none).
const PASSWORD_73: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

const WALA_FP: &str = "EB0C0AB4B2D5FC35F2F0658D19F44C8283E2DD62";

/// Values stated in the MANIFEST's `expected_behavior` column, per file name.
fn reference_expectations(name: &str) -> Option<Result<Expect, ExpectErr>> {
    let waagent_sample = |pga: &'static str| Expect {
        host: Some("HostName"),
        user: Some("UserName"),
        password: Some(Some("UserPassword")),
        custom_data: Some(Some("CustomData")),
        disable_password_auth: Some(Some(false)),
        public_keys: Some(vec![(
            Some(WALA_FP),
            "$HOME/UserName/.ssh/authorized_keys",
            Some("ssh-rsa AAAANOTAREALKEY== foo@bar.local"),
        )]),
        key_pairs: Some(vec![(WALA_FP, "$HOME/UserName/.ssh/id_rsa")]),
        provision_guest_agent: Some(pga),
        preprovisioned_vm: Some(Some(false)),
        ..Expect::default()
    };
    let cloud_init = || Expect {
        host: Some("test-host"),
        user: Some("test-user"),
        password: Some(None),
        custom_data: Some(None),
        public_keys: Some(vec![]),
        provision_guest_agent: Some("false"),
        preprovisioned_vm: Some(None),
        preprovisioned_vm_type: Some(None),
        ..Expect::default()
    };
    Some(match name {
        "ovf-env.xml" => Ok(waagent_sample("false")),
        "ovf-env-2.xml" => Ok(waagent_sample("true")),
        "ovf-env-4.xml" => Ok(waagent_sample("bad data")),
        "azure-init-none_missing.xml" => Ok(Expect {
            host: Some("myhostname"),
            user: Some("myusername"),
            // An empty UserPassword is "no password" (waagent: key-only account).
            password: Some(None),
            disable_password_auth: Some(Some(false)),
            provision_guest_agent: Some("true"),
            preprovisioned_vm: Some(Some(false)),
            preprovisioned_vm_type: Some(Some("None")),
            ..Expect::default()
        }),
        "azure-init-missing_preprovisioned_vm_type.xml" => Ok(Expect {
            host: Some("myhostname"),
            user: Some("myusername"),
            preprovisioned_vm: Some(Some(false)),
            preprovisioned_vm_type: Some(None),
            ..Expect::default()
        }),
        "cloud-init-construct_ovf_env-defaults.xml" => Ok(cloud_init()),
        "cloud-init-construct_ovf_env-custom_data_foo.xml" => {
            Ok(Expect { custom_data: Some(Some("Zm9v")), ..cloud_init() })
        }
        "cloud-init-construct_ovf_env-disable_ssh_password_auth_true.xml" => {
            Ok(Expect { disable_password_auth: Some(Some(true)), ..cloud_init() })
        }
        "cloud-init-construct_ovf_env-password_73_chars.xml" => {
            Ok(Expect { password: Some(Some(PASSWORD_73)), ..cloud_init() })
        }
        "cloud-init-construct_ovf_env-preprovisioned_running.xml" => Ok(Expect {
            preprovisioned_vm: Some(Some(true)),
            preprovisioned_vm_type: Some(Some("Running")),
            ..cloud_init()
        }),
        "cloud-init-construct_ovf_env-provision_guest_proxy_agent_true.xml" => {
            Ok(Expect { provision_guest_proxy_agent: Some(Some(true)), ..cloud_init() })
        }
        "cloud-init-construct_ovf_env-two_public_keys.xml" => Ok(Expect {
            // The empty Value of the first key means "fetch by fingerprint".
            public_keys: Some(vec![(Some("fp1"), "path1", None), (Some("fp2"), "path2", Some("somevalue"))]),
            ..cloud_init()
        }),
        "azure-init-minimal-TEST_OVF.xml" | "azure-init-no_user_password_element.xml" => {
            Err(|e| matches!(e, OvfError::Missing { element: "ProvisionGuestAgent", .. }))
        }
        "cloud-init-doc-example-ovf-env.xml" => Err(|e| matches!(e, OvfError::NotAzure)),
        "cloud-init-invalid-badxml.xml" | "cloud-init-invalid-foo-prefix.xml" => {
            Err(|e| matches!(e, OvfError::Xml { .. }))
        }
        "cloud-init-invalid-empty.xml" => Err(|e| matches!(e, OvfError::Empty)),
        "cloud-init-multiple-provisioning-sections.xml" => {
            Err(|e| matches!(e, OvfError::Duplicate { element: "ProvisioningSection", count: 2, .. }))
        }
        _ => return None,
    })
}

fn check_values(name: &str, env: &OvfEnv, want: &Expect) {
    let p = &env.provisioning;
    let s = &env.platform;
    if let Some(host) = want.host {
        assert_eq!(p.host_name, host, "{name}: HostName");
    }
    if let Some(user) = want.user {
        assert_eq!(p.user_name, user, "{name}: UserName");
    }
    if let Some(pw) = &want.password {
        assert_eq!(p.user_password.as_ref().map(|s| s.expose().as_str()), *pw, "{name}: UserPassword");
    }
    if let Some(cd) = &want.custom_data {
        assert_eq!(p.custom_data.as_ref().map(|s| s.expose().as_str()), *cd, "{name}: CustomData");
    }
    if let Some(d) = want.disable_password_auth {
        assert_eq!(p.disable_ssh_password_authentication, d, "{name}: DisableSshPasswordAuthentication");
    }
    if let Some(keys) = &want.public_keys {
        let got: Vec<_> = p
            .public_keys
            .iter()
            .map(|k| (k.fingerprint.as_deref(), k.path.as_str(), k.value.as_deref()))
            .collect();
        assert_eq!(&got, keys, "{name}: PublicKeys");
    }
    if let Some(pairs) = &want.key_pairs {
        let got: Vec<_> = p.key_pairs.iter().map(|k| (k.fingerprint.as_str(), k.path.as_str())).collect();
        assert_eq!(&got, pairs, "{name}: KeyPairs");
    }
    if let Some(pga) = want.provision_guest_agent {
        assert_eq!(s.provision_guest_agent, pga, "{name}: ProvisionGuestAgent");
        assert_eq!(s.guest_agent_disabled(), pga.eq_ignore_ascii_case("false"), "{name}");
    }
    if let Some(v) = want.preprovisioned_vm {
        assert_eq!(s.preprovisioned_vm, v, "{name}: PreprovisionedVm");
    }
    if let Some(t) = want.preprovisioned_vm_type {
        assert_eq!(s.preprovisioned_vm_type.as_deref(), t, "{name}: PreprovisionedVMType");
    }
    if let Some(v) = want.provision_guest_proxy_agent {
        assert_eq!(s.provision_guest_proxy_agent, v, "{name}: ProvisionGuestProxyAgent");
    }
}

/// The document's character data with all markup removed (tags, comments, declarations).
fn text_outside_markup(xml: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in xml.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Scrubbing keeps the document parseable, removes the password from its text, and changes nothing
/// but the password's bytes.
fn check_scrub(name: &str, xml: &str, env: &OvfEnv) {
    let scrubbed = ovf::scrub_password(xml).unwrap_or_else(|e| panic!("{name}: scrub failed: {e}"));
    let again = ovf::parse(&scrubbed).unwrap_or_else(|e| panic!("{name}: scrubbed copy does not parse: {e}"));
    assert!(again.provisioning.user_password.is_none(), "{name}: password survived the scrub");
    assert_eq!(again.provisioning.host_name, env.provisioning.host_name, "{name}");
    match &env.provisioning.user_password {
        Some(pw) => {
            // Compare without XML escapes: the raw bytes in the file may be escaped.
            let first_line = pw.expose().lines().next().unwrap_or_default().to_string();
            assert!(
                !text_outside_markup(&scrubbed).contains(&first_line),
                "{name}: password text still in the scrubbed document"
            );
            assert!(scrubbed.len() < xml.len(), "{name}");
        }
        None => assert!(scrubbed.len() <= xml.len(), "{name}"),
    }
    // Everything except password content is unchanged: removing the same content from the original
    // gives the scrubbed copy, so the two share their prefix up to the first password and the rest.
    let common_prefix = xml.bytes().zip(scrubbed.bytes()).take_while(|(a, b)| a == b).count();
    let removed = xml.len() - scrubbed.len();
    if removed > 0 {
        assert!(xml[..common_prefix].ends_with("UserPassword>"), "{name}: scrub changed other bytes");
    }
    assert!(xml.ends_with(&scrubbed[common_prefix..]), "{name}: scrub changed other bytes");
}

#[test]
fn reference_ovf_env_documents() {
    let Some(dir) = common::reference_fixtures("ovf_conformance") else { return };
    let rows = common::manifest_rows(&dir, "ovf-env");
    assert!(!rows.is_empty(), "no ovf-env rows in the MANIFEST");
    let mut checked_values = 0;
    for row in &rows {
        let path = dir.join(&row.path);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = Path::new(&row.path).file_name().and_then(|n| n.to_str()).unwrap_or(&row.path);
        let result = ovf::parse_bytes(&bytes);
        match (&result, row.valid) {
            (Ok(env), true) => {
                let xml = std::str::from_utf8(&bytes).unwrap();
                check_scrub(name, xml, env);
            }
            (Err(e), false) => {
                assert!(
                    !e.reason().is_empty() && !e.reason().contains('\n'),
                    "{name}: reason {:?}",
                    e.reason()
                );
            }
            (Ok(env), false) => panic!("{name}: malformed document accepted: {env:?} ({})", row.expected),
            (Err(e), true) => panic!("{name}: valid document refused: {e} ({})", row.expected),
        }
        match (reference_expectations(name), &result) {
            (Some(Ok(want)), Ok(env)) => {
                check_values(name, env, &want);
                checked_values += 1;
            }
            (Some(Err(is_expected)), Err(e)) => {
                assert!(is_expected(e), "{name}: unexpected error {e:?}");
                checked_values += 1;
            }
            (Some(_), _) => panic!("{name}: expectation table disagrees with the MANIFEST"),
            (None, _) => eprintln!("note: {name}: no value table, accept/reject checked only"),
        }
    }
    assert!(checked_values > 0);
    assert_eq!(PASSWORD_73.len(), 73);
}

/// Every file in the expectation table is still in the MANIFEST (catches renames and typos).
#[test]
fn reference_expectation_table_matches_manifest() {
    let Some(dir) = common::reference_fixtures("ovf_conformance") else { return };
    let names: Vec<String> = common::manifest_rows(&dir, "ovf-env")
        .iter()
        .filter_map(|r| Path::new(&r.path).file_name().and_then(|n| n.to_str()).map(str::to_string))
        .collect();
    for name in [
        "ovf-env.xml",
        "ovf-env-2.xml",
        "ovf-env-4.xml",
        "azure-init-none_missing.xml",
        "cloud-init-construct_ovf_env-defaults.xml",
        "cloud-init-multiple-provisioning-sections.xml",
    ] {
        assert!(reference_expectations(name).is_some());
        assert!(names.iter().any(|n| n == name), "{name} no longer in the MANIFEST");
    }
    let covered = names.iter().filter(|n| reference_expectations(n).is_some()).count();
    assert_eq!(covered, names.len(), "some MANIFEST rows have no expectation entry");
}

// ---------------------------------------------------------------------------------------------------
// Project-own fixtures: always run.

fn own(name: &str) -> String {
    let path = common::project_fixtures().join("ovf").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn own_minimal() {
    let xml = own("minimal.xml");
    let env = ovf::parse(&xml).unwrap();
    check_values(
        "minimal.xml",
        &env,
        &Expect {
            host: Some("wala-min"),
            user: Some("walauser"),
            password: Some(None),
            custom_data: Some(None),
            disable_password_auth: Some(None),
            public_keys: Some(vec![]),
            key_pairs: Some(vec![]),
            provision_guest_agent: Some("true"),
            preprovisioned_vm: Some(None),
            ..Expect::default()
        },
    );
    assert!(!env.provisioning.password_authentication_disabled());
    assert_eq!(ovf::scrub_password(&xml).unwrap(), xml);
}

#[test]
fn own_with_keys() {
    let xml = own("with-keys.xml");
    let env = ovf::parse(&xml).unwrap();
    check_values(
        "with-keys.xml",
        &env,
        &Expect {
            host: Some("wala-keys"),
            user: Some("keyuser"),
            password: Some(Some("Zebra-Lamp-42!")),
            custom_data: Some(Some("I2Nsb3VkLWNvbmZpZwpydW5jbWQ6IFtbZWNobywgaGldXQo=")),
            disable_password_auth: Some(Some(true)),
            public_keys: Some(vec![
                (
                    Some("0123456789ABCDEF0123456789ABCDEF01234567"),
                    "/home/keyuser/.ssh/authorized_keys",
                    Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIWALATESTKEYNOTREAL keyuser@wala"),
                ),
                (
                    Some("89ABCDEF0123456789ABCDEF0123456789ABCDEF"),
                    "$HOME/keyuser/.ssh/authorized_keys",
                    Some("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYWALANOTREAL keyuser@wala"),
                ),
                (
                    Some("fedcba9876543210fedcba9876543210fedcba98"),
                    "/home/keyuser/.ssh/authorized_keys",
                    None,
                ),
            ]),
            key_pairs: Some(vec![("0123456789ABCDEF0123456789ABCDEF01234567", "/home/keyuser/.ssh/id_rsa")]),
            provision_guest_agent: Some("false"),
            preprovisioned_vm: Some(Some(false)),
            preprovisioned_vm_type: Some(Some("None")),
            provision_guest_proxy_agent: Some(Some(false)),
        },
    );
    assert_eq!(env.platform.guest_agent_package_name, None);
    assert_eq!(env.platform.kms_server_hostname.as_deref(), Some("kms.core.windows.net"));
    check_scrub("with-keys.xml", &xml, &env);
    let json = serde_json::to_string(&env).unwrap();
    assert!(!json.contains("Zebra") && !json.contains("I2Nsb3Vk"), "{json}");
}

#[test]
fn own_ns1_prefixed() {
    let xml = own("ns1-prefixed.xml");
    let env = ovf::parse(&xml).unwrap();
    check_values(
        "ns1-prefixed.xml",
        &env,
        &Expect {
            host: Some("wala-ns1"),
            user: Some("nsuser"),
            password: Some(Some("Purple&Kettle\nSecond-Line")),
            disable_password_auth: Some(Some(false)),
            provision_guest_agent: Some("FALSE"),
            preprovisioned_vm: Some(Some(true)),
            preprovisioned_vm_type: Some(Some("Savable")),
            ..Expect::default()
        },
    );
    let scrubbed = ovf::scrub_password(&xml).unwrap();
    assert!(!scrubbed.contains("Purple") && !scrubbed.contains("Second-Line"));
    assert!(scrubbed.contains("<ns1:UserPassword></ns1:UserPassword>"));
    check_scrub("ns1-prefixed.xml", &xml, &env);
}

#[test]
fn own_waagent_sample() {
    let xml = own("ovf-env.xml");
    let env = ovf::parse(&xml).unwrap();
    let Some(Ok(want)) = reference_expectations("ovf-env.xml") else { panic!("no table entry") };
    check_values("ovf-env.xml", &env, &want);
    check_scrub("ovf-env.xml", &xml, &env);
}

#[test]
fn own_refused_documents() {
    let cases: [(&str, ExpectErr); 4] = [
        ("malformed-unclosed.xml", |e| matches!(e, OvfError::Xml { .. })),
        ("missing-hostname.xml", |e| matches!(e, OvfError::Missing { element: "HostName", .. })),
        ("foreign-ovf.xml", |e| matches!(e, OvfError::NotAzure)),
        ("duplicate-provisioning-section.xml", |e| {
            matches!(e, OvfError::Duplicate { element: "ProvisioningSection", count: 2, .. })
        }),
    ];
    for (name, is_expected) in cases {
        let xml = own(name);
        let e = ovf::parse(&xml).expect_err(name);
        assert!(is_expected(&e), "{name}: {e:?}");
        for text in [e.to_string(), e.reason(), format!("{e:?}")] {
            assert!(!text.contains("Never-Shown") && !text.contains("Quiet-River"), "{name}: {text}");
        }
    }
    assert_eq!(
        ovf::parse(&own("missing-hostname.xml")).unwrap_err().reason(),
        "Failed to validate OVF: HostName not found"
    );
    // A well-formed but invalid document can still be scrubbed; a malformed one cannot.
    let scrubbed = ovf::scrub_password(&own("missing-hostname.xml")).unwrap();
    assert!(!scrubbed.contains("Quiet-River"));
    assert!(ovf::scrub_password(&own("malformed-unclosed.xml")).is_err());
}
