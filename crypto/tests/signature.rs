//! Extension package signatures checked by the `wala-crypto` helper, as the daemon asks for them
//! ([`wala::extensions::signature::SignatureCheck`]): a detached CMS signature made here with a
//! test CA, checked against that CA as the trust anchor in the lib dir; tampered packages, other
//! anchors, garbage and expired signers.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use wala::extensions::signature::{SignatureCheck, SIGNING_CERTIFICATE_FILE, VALIDATION_STATE_FILE};

fn use_the_helper() {
    wala::crypto::helper::use_program(PathBuf::from(env!("CARGO_BIN_EXE_wala-crypto")));
}

fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>, days: (i64, i64)) -> X509 {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", cn).expect("cn");
    let name = name.build();
    let mut b = X509Builder::new().expect("builder");
    b.set_version(2).expect("version");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name())).expect("issuer");
    b.set_pubkey(key).expect("pubkey");
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() as i64;
    b.set_not_before(&Asn1Time::from_unix(now + days.0 * 86_400).expect("t")).expect("nb");
    b.set_not_after(&Asn1Time::from_unix(now + days.1 * 86_400).expect("t")).expect("na");
    if issuer.is_none() {
        let bc = openssl::x509::extension::BasicConstraints::new().critical().ca().build().expect("bc");
        b.append_extension(bc).expect("ext");
    }
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256()).expect("sign");
    b.build()
}

fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey")
}

/// A CA and a signer it issued (valid for `days`).
fn pki(days: (i64, i64)) -> (X509, X509, PKey<Private>) {
    let ca_key = key();
    let ca = cert("Test Root", &ca_key, None, (-1, 3650));
    let signer_key = key();
    let signer = cert("Test Signer", &signer_key, Some((&ca, &ca_key)), days);
    (ca, signer, signer_key)
}

fn sign(data: &[u8], signer: &X509, key: &PKey<Private>) -> String {
    let cms = CmsContentInfo::sign(
        Some(signer),
        Some(key),
        None,
        Some(data),
        CMSOptions::DETACHED | CMSOptions::BINARY,
    )
    .expect("cms");
    base64_encode(&cms.to_der().expect("der"))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn manifest() -> wala::documents::extensions::HandlerManifest {
    wala::documents::extensions::parse_handler_manifest(
        r#"[{"version":1.0,"handlerManifest":{"installCommand":"i","uninstallCommand":"u","updateCommand":"p","enableCommand":"e","disableCommand":"d"},"signingInfo":{"type":"Ext","publisher":"Contoso","version":"1.0.0"}}]"#,
    )
    .expect("manifest")
}

/// Check `zip` with `signature` against `anchor` in a fresh lib dir: whether the package ended
/// up recorded as validated.
fn validated(zip: &Path, signature: &str, anchor: &X509) -> bool {
    checked(zip, signature, Some(anchor)).0
}

/// The telemetry events a check queued: (operation, success, message).
type Events = Vec<(String, bool, String)>;

/// Check `zip` with `signature` against `anchor` (none: no trust anchor file) in a fresh lib dir:
/// whether the package ended up recorded as validated, and the telemetry events queued, each
/// checked to name the extension and its version.
fn checked(zip: &Path, signature: &str, anchor: Option<&X509>) -> (bool, Events) {
    let lib = tempfile::tempdir().expect("tempdir");
    if let Some(anchor) = anchor {
        std::fs::write(lib.path().join(SIGNING_CERTIFICATE_FILE), anchor.to_pem().expect("pem"))
            .expect("anchor");
    }
    let h = wala::documents::extensions::parse_extensions_config(
        &format!(
            r#"<Extensions><Plugins><Plugin name="Contoso.Ext" version="1.0.0" location="https://x/m.xml" state="enabled" encodedSignature="{signature}" /></Plugins></Extensions>"#
        ),
        Some(1),
    )
    .expect("config")
    .extensions
    .remove(0);
    let check = SignatureCheck::new(true, lib.path(), &h, "1.0.0").expect("signed");
    check.validate_package(zip);
    let dir = tempfile::tempdir().expect("tempdir");
    check.after_unpack(dir.path(), &manifest());
    let events = wala::platform::telemetry::queued(&wala::base::root::HostRoot::new("/"), lib.path());
    let events = events
        .into_iter()
        .map(|(_, e)| {
            assert_eq!(e.subject, Some(("Contoso.Ext".to_string(), "1.0.0".to_string())), "{e:?}");
            (e.operation, e.success, e.message)
        })
        .collect();
    (dir.path().join(VALIDATION_STATE_FILE).exists(), events)
}

/// The operations and outcomes of `events`.
fn outline(events: &Events) -> Vec<(&str, bool)> {
    events.iter().map(|(op, ok, _)| (op.as_str(), *ok)).collect()
}

#[test]
fn a_package_signed_under_the_anchor_is_validated_and_anything_else_is_not() {
    use_the_helper();
    let work = tempfile::tempdir().expect("tempdir");
    let zip = work.path().join("Contoso.Ext__1.0.0.zip");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&zip, &content).expect("zip");
    let (ca, signer, signer_key) = pki((-1, 365));
    let signature = sign(&content, &signer, &signer_key);
    let (ok, events) = checked(&zip, &signature, Some(&ca));
    assert!(ok, "a good signature");
    // waagent's events, in its order: each check's start, then its result.
    assert_eq!(
        outline(&events),
        [
            ("SignatureValidation", true),
            ("PackageSignatureResult", true),
            ("SignatureValidation", true),
            ("PackageSigningInfoResult", true)
        ]
    );
    assert_eq!(events[1].2, "Successfully validated signature for package 'Contoso.Ext-1.0.0'");

    let (other_ca, _, _) = pki((-1, 365));
    let (ok, events) = checked(&zip, &signature, Some(&other_ca));
    assert!(!ok, "another trust anchor");
    // The verification failed: its result, then the encoded signature for the platform to debug.
    assert_eq!(
        outline(&events)[..3],
        [("SignatureValidation", true), ("PackageSignatureResult", false), ("SignatureValidation", true)]
    );
    assert!(
        events[1].2.starts_with("[WARNING] Signature validation failed for package 'Contoso.Ext-1.0.0'."),
        "{}",
        events[1].2
    );
    assert!(events[1]
        .2
        .ends_with("This failure can be safely ignored; will continue processing the package."));
    assert_eq!(events[2].2, format!("Package encoded signature: '{signature}'"));

    // No trust anchor: the check is not attempted, a SignatureValidation failure without duration.
    let (ok, events) = checked(&zip, &signature, None);
    assert!(!ok);
    assert_eq!(outline(&events)[..2], [("SignatureValidation", true), ("SignatureValidation", false)]);
    assert!(
        events[1].2.contains("signing certificate was not found at expected location"),
        "{}",
        events[1].2
    );

    let tampered = work.path().join("tampered.zip");
    let mut bytes = content.clone();
    bytes[100_000] ^= 1;
    std::fs::write(&tampered, &bytes).expect("zip");
    assert!(!validated(&tampered, &signature, &ca), "one bit changed");

    assert!(!validated(&zip, &base64_encode(b"not a CMS structure"), &ca), "garbage");
    assert!(!validated(&zip, &signature[..signature.len() / 2], &ca), "cut short");

    let (ca, signer, signer_key) = pki((-400, -30));
    assert!(
        validated(&zip, &sign(&content, &signer, &signer_key), &ca),
        "expiry is not enforced, as waagent"
    );

    let link = work.path().join("link.zip");
    std::os::unix::fs::symlink(&zip, &link).expect("symlink");
    let (ca, signer, signer_key) = pki((-1, 365));
    assert!(!validated(&link, &sign(&content, &signer, &signer_key), &ca), "a symbolic link is not followed");
}
