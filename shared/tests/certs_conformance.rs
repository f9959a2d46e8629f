//! Certificate conformance over the reference MANIFEST rows of kinds `certificates`,
//! `certificates-summary`, `certificate`, `certificate-fingerprints`, `ssh-public-key`,
//! `transport-key` and `decrypted-pfx-pem`: decrypt with the TEST-ONLY transport keys, extract,
//! write the `.crt`/`.prv` files and compare with what the MANIFEST says.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use wala::crypto::openssl_certs::{self as certs, TransportKeys};
use wala::documents::wire::{parse_certificate_summary, parse_certificates, CertificatesPayload};

/// The TEST-ONLY transport key pair next to a Certificates document (its directory or a parent).
fn transport_keys_for(doc: &Path) -> Option<TransportKeys> {
    for dir in doc.ancestors().skip(1).take(2) {
        let mut cert: Option<PathBuf> = None;
        let mut key: Option<PathBuf> = None;
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let name = entry.file_name().to_string_lossy().to_lowercase();
            if !name.starts_with("test-only_") {
                continue;
            }
            if name.contains("transportcert") || name.ends_with("trans_cert") {
                cert = Some(entry.path());
            } else if name.contains("transportprivate") || name.ends_with("trans_prv") {
                key = Some(entry.path());
            }
        }
        if let (Some(c), Some(k)) = (cert, key) {
            return TransportKeys::from_pem(&std::fs::read(c).unwrap(), &std::fs::read(k).unwrap()).ok();
        }
    }
    None
}

/// 40-hex-digit thumbprints in a text, each with whether the text says it has a key.
fn expected_from_text(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i + 40 <= bytes.len() {
        let cand: String = bytes[i..i + 40].iter().collect();
        let boundary_ok = (i == 0 || !bytes[i - 1].is_ascii_hexdigit())
            && bytes.get(i + 40).is_none_or(|c| !c.is_ascii_hexdigit());
        if boundary_ok && cand.chars().all(|c| c.is_ascii_hexdigit()) {
            let after: String = bytes[i + 40..].iter().take(24).collect();
            let with_key = after.contains("with key") || after.contains("+private key");
            out.push((cand.to_uppercase(), with_key));
            i += 40;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn certificates_documents_decrypt_to_the_expected_files() {
    let Some(fx) = common::reference_fixtures("certificates conformance") else { return };
    let rows = common::manifest_rows(&fx, "certificates");
    assert!(!rows.is_empty());
    for row in &rows {
        let path = fx.join(&row.path);
        let doc = parse_certificates(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let payload = doc.payload().unwrap();
        if !row.valid {
            assert!(
                matches!(payload, CertificatesPayload::UnsupportedFormat(_)),
                "{}: a rejected document must be skipped",
                row.path
            );
            continue;
        }
        let CertificatesPayload::Pkcs7Pfx(der) = payload else { panic!("{}: no payload", row.path) };
        let keys = transport_keys_for(&path).unwrap_or_else(|| panic!("{}: no TEST-ONLY key pair", row.path));
        let pfx = keys.decrypt(&der).unwrap_or_else(|e| panic!("{}: {e}", row.path));
        let extracted = certs::parse_pfx(&pfx).unwrap();
        let lib = tempfile::tempdir().unwrap();
        certs::write_cert_files(lib.path(), &extracted).unwrap();

        // Expected: the sibling summary when there is one, else the MANIFEST text.
        let sibling = path.with_file_name("Certificates.json");
        let mut expected: Vec<(String, bool)> = if sibling.is_file() {
            parse_certificate_summary(&std::fs::read_to_string(&sibling).unwrap())
                .unwrap()
                .into_iter()
                .map(|s| (s.thumbprint, s.has_private_key))
                .collect()
        } else {
            let named = expected_from_text(&format!("{} {}", row.description, row.expected));
            if named.is_empty() && row.description.contains("Same payload") {
                // "Same payload as ..." a sibling document that names the thumbprints.
                let dir = row.path.rsplit_once('/').map_or("", |(d, _)| d);
                rows.iter()
                    .filter(|r| {
                        r.valid && r.path != row.path && r.path.rsplit_once('/').map_or("", |(d, _)| d) == dir
                    })
                    .map(|r| expected_from_text(&format!("{} {}", r.description, r.expected)))
                    .find(|e| !e.is_empty())
                    .unwrap_or_default()
            } else {
                named
            }
        };
        assert!(!expected.is_empty(), "{}: no expectation found", row.path);
        expected.sort();
        let mut got: Vec<(String, bool)> =
            extracted.iter().map(|c| (c.thumbprint.clone(), c.key.is_some())).collect();
        got.sort();
        assert_eq!(got, expected, "{}", row.path);
        for (tp, with_key) in &expected {
            assert!(lib.path().join(format!("{tp}.crt")).is_file(), "{}: {tp}.crt", row.path);
            let prv = lib.path().join(format!("{tp}.prv"));
            assert_eq!(prv.is_file(), *with_key, "{}: {tp}.prv", row.path);
            if *with_key {
                assert_eq!(std::fs::metadata(&prv).unwrap().permissions().mode() & 0o777, 0o600);
            }
        }
        // Certificates.pem: every certificate and no key (the keys stay in the 0600 .prv files).
        let pem = std::fs::read_to_string(lib.path().join("Certificates.pem")).unwrap();
        let in_pem: Vec<String> = openssl::x509::X509::stack_from_pem(pem.as_bytes())
            .unwrap()
            .iter()
            .map(|c| {
                c.digest(openssl::hash::MessageDigest::sha1())
                    .unwrap()
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect()
            })
            .collect();
        let mut in_pem_sorted = in_pem.clone();
        in_pem_sorted.sort();
        let thumbprints: Vec<String> = expected.iter().map(|(tp, _)| tp.clone()).collect();
        assert_eq!(in_pem_sorted, thumbprints, "{}: Certificates.pem", row.path);
        assert!(!pem.contains("PRIVATE KEY"), "{}: a key in Certificates.pem", row.path);
        assert_eq!(
            std::fs::metadata(lib.path().join("Certificates.pem")).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let summary = parse_certificate_summary(
            &std::fs::read_to_string(lib.path().join(certs::SUMMARY_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(summary.len(), expected.len(), "{}", row.path);
    }
}

#[test]
fn transport_keys_load() {
    let Some(fx) = common::reference_fixtures("transport keys") else { return };
    let rows = common::manifest_rows(&fx, "transport-key TEST-ONLY");
    assert!(rows.len() >= 4);
    for row in rows {
        let path = fx.join(&row.path);
        // Each cert/key file belongs to a pair that loads.
        let keys = transport_keys_for(&path.join("x")).or_else(|| transport_keys_for(&path));
        let keys = keys.unwrap_or_else(|| panic!("{}: no pair", row.path));
        assert!(!keys.header_value().unwrap().contains('\n'));
    }
}

#[test]
fn certificate_thumbprint_and_ssh_key() {
    let Some(fx) = common::reference_fixtures("certificate") else { return };
    let rows = common::manifest_rows(&fx, "certificate");
    assert!(!rows.is_empty());
    for row in rows {
        let pem = std::fs::read(fx.join(&row.path)).unwrap();
        let found = certs::certs_in_pem(&pem).unwrap();
        assert_eq!(found.len(), 1, "{}", row.path);
        let expected = expected_from_text(&row.expected);
        assert_eq!(found[0].0, expected[0].0, "{}", row.path);
        let ssh = certs::openssh_key_from_cert_pem(&pem).unwrap();
        // The ssh-public-key row whose description names this certificate.
        let stem = row.path.trim_end_matches("_cert.pem");
        let key_row =
            common::manifest_rows(&fx, "ssh-public-key").into_iter().find(|k| k.path.starts_with(stem));
        if let Some(k) = key_row {
            let want = std::fs::read_to_string(fx.join(&k.path)).unwrap();
            assert_eq!(ssh, want.trim_end(), "{}", k.path);
        }
    }
}

#[test]
fn pem_fingerprints() {
    let Some(fx) = common::reference_fixtures("certificate fingerprints") else { return };
    let fps = common::manifest_rows(&fx, "certificate-fingerprints");
    let pems = common::manifest_rows(&fx, "decrypted-pfx-pem TEST-ONLY");
    assert!(!fps.is_empty() && !pems.is_empty());
    for pem_row in pems {
        let found = certs::certs_in_pem(&std::fs::read(fx.join(&pem_row.path)).unwrap()).unwrap();
        let stem = pem_row
            .path
            .rsplit('/')
            .next()
            .unwrap()
            .trim_start_matches("TEST-ONLY_")
            .trim_end_matches("_pem");
        let fp_row = fps.iter().find(|r| r.path.contains(stem)).expect("matching fingerprints row");
        let want: Vec<String> = std::fs::read_to_string(fx.join(&fp_row.path))
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_uppercase)
            .collect();
        let mut got: Vec<String> = found.into_iter().map(|(t, _)| t).collect();
        // The reference lists them in its own order: compare as sets.
        let mut want = want;
        got.sort();
        want.sort();
        assert_eq!(got, want, "{}", pem_row.path);
    }
}

#[test]
fn ssh_keys_of_every_kind() {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    assert!(certs::openssh_public_key(&rsa).unwrap().starts_with("ssh-rsa AAAAB3NzaC1yc2E"));
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let ec = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let line = certs::openssh_public_key(&ec).unwrap();
    assert!(line.starts_with("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY"), "{line}");
    let ed = PKey::generate_ed25519().unwrap();
    let line = certs::openssh_public_key(&ed).unwrap();
    assert!(line.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"), "{line}");
    // Blob length: 4+11 + 4+32.
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD.decode(line.split(' ').nth(1).unwrap()).unwrap();
    assert_eq!(blob.len(), 51);
    let (private, public) =
        certs::ssh_keypair_from_prv_pem(&rsa.private_key_to_pem_pkcs8().unwrap()).unwrap();
    assert!(private.starts_with(b"-----BEGIN PRIVATE KEY-----"));
    assert_eq!(public, certs::openssh_public_key(&rsa).unwrap());
}

#[test]
fn transport_keys_are_created_then_reused_and_replaced_when_broken() {
    let lib = tempfile::tempdir().unwrap();
    let a = TransportKeys::load_or_create(lib.path()).unwrap().header_value().unwrap();
    let b = TransportKeys::load_or_create(lib.path()).unwrap().header_value().unwrap();
    assert_eq!(a, b);
    std::fs::write(lib.path().join(certs::TRANSPORT_KEY_FILE), "garbage").unwrap();
    let c = TransportKeys::load_or_create(lib.path()).unwrap().header_value().unwrap();
    assert_ne!(a, c);
    let mode = std::fs::metadata(lib.path().join(certs::TRANSPORT_KEY_FILE)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn garbage_pfx_and_envelopes_are_errors() {
    let keys = TransportKeys::generate().unwrap();
    for data in [&b""[..], b"\x30\x03\x02\x01\x00", &[0u8; 64]] {
        assert!(keys.decrypt(data).is_err());
        assert!(certs::parse_pfx(data).is_err());
    }
}
