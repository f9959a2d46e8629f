//! Certificates from the goal state, with OpenSSL (wire.md §4.5, provisioning.md §2.7): the
//! transport key pair, decrypting the CMS envelope and the PKCS#12 inside, writing
//! `<THUMBPRINT>.crt` / `<THUMBPRINT>.prv`, and SSH public keys from certificates and keys.
//!
//! This code runs in the `wala-crypto` helper ([`crate::crypto::helper`]), never in the daemon:
//! the rest of wala asks through [`crate::crypto`], so that only the helper maps libcrypto.
//!
//! Files in the lib dir (what extensions and provisioning read):
//! * `TransportPrivate.pem` (PKCS#8 PEM, 0600) and `TransportCert.pem` (PEM, 0600): RSA-2048,
//!   self-signed `CN=LinuxTransport`, 730 days. Reused while both parse, belong together and the
//!   certificate has more than a day left; regenerated otherwise.
//! * `<THUMBPRINT>.crt` (PEM, 0644) for every certificate, `<THUMBPRINT>.prv` (PKCS#8 PEM, 0600)
//!   for every private key whose public key matches a certificate. THUMBPRINT is the SHA-1 of the
//!   DER, upper-case hex.
//! * `Certificates.json`: the summary `[{"thumbprint", "hasPrivateKey"}]` (no secrets).
//! * `Certificates.pem` (0644): every certificate, PEM, in the order of the PFX; removed when the
//!   goal state has none. Azure Stack tooling (aks-engine, the Azure CLI's instructions) copies it
//!   into the CA store to trust the stamp's root. waagent's file is `openssl pkcs12 -nodes`
//!   output and holds the private keys too; wala's holds no key: the keys are in the `.prv` files
//!   (0600), and a copy appended to a CA bundle, as those instructions do, leaks none.
//!
//! Unlike waagent, no `Certificates.xml`, `Certificates.p7m` or `.pfx` is left behind: they are
//! steps of waagent's `openssl` pipeline (the encrypted envelope, and the PFX it deletes), and
//! nothing else reads them.

use std::path::{Path, PathBuf};

use base64::Engine;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, BigNumContext, MsbOption};
use openssl::cms::CmsContentInfo;
use openssl::ec::PointConversionForm;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509};

use crate::base::files::{write_atomic, FileError, WriteOptions};

/// File names in the lib dir.
pub const TRANSPORT_CERT_FILE: &str = "TransportCert.pem";
pub const TRANSPORT_KEY_FILE: &str = "TransportPrivate.pem";
pub const SUMMARY_FILE: &str = "Certificates.json";
pub const PEM_FILE: &str = "Certificates.pem";

/// The two `x-ms-cipher-name` values, in the order they are tried.
pub const CIPHERS: [&str; 2] = ["AES128_CBC", "DES_EDE3_CBC"];

/// Why certificates could not be handled. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    File(#[from] FileError),
    /// OpenSSL refused an operation; `what` says which.
    #[error("{what}: {reason}")]
    Openssl { what: &'static str, reason: String },
    /// A PEM or DER input that is not what it should be.
    #[error("{what}: {why}")]
    Invalid { what: String, why: &'static str },
    /// The `wala-crypto` helper could not be asked, or said why the work failed.
    #[error(transparent)]
    Helper(#[from] crate::crypto::helper::HelperError),
}

fn ossl(what: &'static str) -> impl FnOnce(ErrorStack) -> CertError {
    move |e| CertError::Openssl { what, reason: e.to_string() }
}

/// Upper-case hex of `bytes`.
fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The thumbprint of a certificate: SHA-1 of its DER, upper-case hex, no colons.
pub fn thumbprint(cert: &X509) -> Result<String, CertError> {
    Ok(hex_upper(&cert.digest(MessageDigest::sha1()).map_err(ossl("certificate digest"))?))
}

/// The agent's transport key pair: the WireServer encrypts certificates to it.
pub struct TransportKeys {
    cert: X509,
    key: PKey<Private>,
}

impl std::fmt::Debug for TransportKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportKeys").field("key", &"<redacted>").finish_non_exhaustive()
    }
}

impl TransportKeys {
    /// From PEM texts (tests, fixtures).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CertError> {
        let cert = X509::from_pem(cert_pem).map_err(ossl("transport certificate PEM"))?;
        let key = PKey::private_key_from_pem(key_pem).map_err(ossl("transport private key PEM"))?;
        let keys = Self { cert, key };
        if !keys.key_matches()? {
            return Err(CertError::Invalid {
                what: "transport key pair".into(),
                why: "the private key does not belong to the certificate",
            });
        }
        Ok(keys)
    }

    fn key_matches(&self) -> Result<bool, CertError> {
        let cert_pub = self.cert.public_key().map_err(ossl("transport certificate key"))?;
        Ok(cert_pub.public_eq(&self.key))
    }

    /// A new RSA-2048 self-signed certificate, `CN=LinuxTransport`, 730 days.
    pub fn generate() -> Result<Self, CertError> {
        let build = || -> Result<Self, ErrorStack> {
            let key = PKey::from_rsa(Rsa::generate(2048)?)?;
            let mut name = X509NameBuilder::new()?;
            name.append_entry_by_text("CN", "LinuxTransport")?;
            let name = name.build();
            let mut b = X509::builder()?;
            b.set_version(2)?;
            let mut serial = BigNum::new()?;
            serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
            b.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
            b.set_subject_name(&name)?;
            b.set_issuer_name(&name)?;
            b.set_pubkey(&key)?;
            b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
            b.set_not_after(Asn1Time::days_from_now(730)?.as_ref())?;
            b.sign(&key, MessageDigest::sha256())?;
            Ok(Self { cert: b.build(), key })
        };
        build().map_err(ossl("generating the transport certificate"))
    }

    /// Reuse `<lib_dir>/TransportCert.pem` + `TransportPrivate.pem` when valid, else generate and
    /// write them (0600).
    pub fn load_or_create(lib_dir: &Path) -> Result<Self, CertError> {
        let cert_path = lib_dir.join(TRANSPORT_CERT_FILE);
        let key_path = lib_dir.join(TRANSPORT_KEY_FILE);
        if let (Ok(c), Ok(k)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
            match Self::from_pem(&c, &k) {
                Ok(keys) if keys.valid_for_a_day() => return Ok(keys),
                Ok(_) => log::info!("{}: expires within a day; generating a new one", cert_path.display()),
                Err(e) => log::warn!("{}: {e}; generating a new transport certificate", cert_path.display()),
            }
        }
        let keys = Self::generate()?;
        crate::base::files::ensure_dir(lib_dir, 0o700)?;
        let key_pem = keys.key.private_key_to_pem_pkcs8().map_err(ossl("transport private key PEM"))?;
        write_atomic(&key_path, &key_pem, WriteOptions::mode(0o600))?;
        let cert_pem = keys.cert.to_pem().map_err(ossl("transport certificate PEM"))?;
        write_atomic(&cert_path, &cert_pem, WriteOptions::mode(0o600))?;
        Ok(keys)
    }

    fn valid_for_a_day(&self) -> bool {
        Asn1Time::days_from_now(1)
            .ok()
            .and_then(|t| self.cert.not_after().compare(&t).ok())
            .is_some_and(|o| o == std::cmp::Ordering::Greater)
    }

    /// The `x-ms-guest-agent-public-x509-cert` header: base64 of the DER on one line (the PEM body
    /// without its armour and line breaks).
    pub fn header_value(&self) -> Result<String, CertError> {
        let der = self.cert.to_der().map_err(ossl("transport certificate DER"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(der))
    }

    /// Decrypt a CMS EnvelopedData (DER) addressed to this key pair: the Certificates `Data`.
    pub fn decrypt(&self, envelope_der: &[u8]) -> Result<Vec<u8>, CertError> {
        self.decrypt_named(
            envelope_der,
            "Certificates Data is not a CMS envelope",
            "decrypting the Certificates envelope",
        )
    }

    /// Decrypt a CMS EnvelopedData (DER) addressed to this key pair; the two texts name the
    /// document in the errors (not an envelope, and the decryption failed).
    pub fn decrypt_named(
        &self,
        envelope_der: &[u8],
        not_cms: &'static str,
        failed: &'static str,
    ) -> Result<Vec<u8>, CertError> {
        let cms = CmsContentInfo::from_der(envelope_der).map_err(ossl(not_cms))?;
        cms.decrypt(&self.key, &self.cert).map_err(ossl(failed))
    }
}

/// A certificate from the PKCS#12, with its private key when the PKCS#12 had one for it.
pub struct ExtractedCert {
    pub thumbprint: String,
    pub cert: X509,
    pub key: Option<PKey<Private>>,
}

impl std::fmt::Debug for ExtractedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractedCert")
            .field("thumbprint", &self.thumbprint)
            .field("has_private_key", &self.key.is_some())
            .finish()
    }
}

/// Read a password-less PKCS#12: every certificate, and every private key matched to its
/// certificate by public key. Keys are taken from OpenSSL's PKCS#12 parser and, so that a PFX
/// holding several keys loses none, from every (shrouded) key bag in unencrypted safe contents.
pub fn parse_pfx(pfx_der: &[u8]) -> Result<Vec<ExtractedCert>, CertError> {
    let pfx = Pkcs12::from_der(pfx_der).map_err(ossl("the decrypted content is not a PKCS#12"))?;
    let parsed = pfx.parse2("").map_err(ossl("reading the PKCS#12 (empty password)"))?;
    let mut certs: Vec<X509> = Vec::new();
    if let Some(c) = parsed.cert {
        certs.push(c);
    }
    if let Some(ca) = parsed.ca {
        certs.extend(ca);
    }
    let mut keys: Vec<PKey<Private>> = parsed.pkey.into_iter().collect();
    for k in pfx_der::key_bags(pfx_der) {
        if !keys.iter().any(|have| have.public_eq(&k)) {
            keys.push(k);
        }
    }
    let mut out: Vec<ExtractedCert> = Vec::new();
    for cert in certs {
        let tp = thumbprint(&cert)?;
        if out.iter().any(|e| e.thumbprint == tp) {
            continue;
        }
        let key = match cert.public_key() {
            Ok(public) => keys.iter().find(|k| public.public_eq(k)).cloned(),
            Err(_) => None,
        };
        out.push(ExtractedCert { thumbprint: tp, cert, key });
    }
    let unmatched =
        keys.iter().filter(|k| !out.iter().any(|e| e.key.as_ref().is_some_and(|m| m.public_eq(*k)))).count();
    if unmatched > 0 {
        log::warn!("{unmatched} private key(s) in the certificates match no certificate; not written");
    }
    Ok(out)
}

/// Write `<THUMBPRINT>.crt` (0644) and `<THUMBPRINT>.prv` (0600) for `certs` into `lib_dir`, the
/// summary `Certificates.json` and the certificates alone as `Certificates.pem` (removed when
/// there are none). Returns the paths of the certificate and key files, written or already there.
/// A file that already holds the same certificate (the same DER) or a key of the same key pair is
/// left as it is, whatever its PEM form (waagent's files, after a takeover, stay byte for byte;
/// and nothing is rewritten on every goal state).
pub fn write_cert_files(lib_dir: &Path, certs: &[ExtractedCert]) -> Result<Vec<PathBuf>, CertError> {
    crate::base::files::ensure_dir(lib_dir, 0o700)?;
    let mut written = Vec::new();
    for c in certs {
        let crt = lib_dir.join(format!("{}.crt", c.thumbprint));
        if !holds_certificate(&crt, &c.cert) {
            write_atomic(
                &crt,
                &c.cert.to_pem().map_err(ossl("certificate PEM"))?,
                WriteOptions::mode(0o644),
            )?;
        }
        written.push(crt);
        if let Some(key) = &c.key {
            let prv = lib_dir.join(format!("{}.prv", c.thumbprint));
            if !holds_key(&prv, key) {
                let pem =
                    zeroize::Zeroizing::new(key.private_key_to_pem_pkcs8().map_err(ossl("private key PEM"))?);
                write_atomic(&prv, &pem, WriteOptions::mode(0o600))?;
            }
            written.push(prv);
        }
    }
    let summary: Vec<crate::documents::wire::CertificateSummary> = certs
        .iter()
        .map(|c| crate::documents::wire::CertificateSummary {
            thumbprint: c.thumbprint.clone(),
            has_private_key: c.key.is_some(),
        })
        .collect();
    let json = serde_json::to_vec(&summary)
        .map_err(|_| CertError::Invalid { what: SUMMARY_FILE.into(), why: "not serializable" })?;
    write_atomic(&lib_dir.join(SUMMARY_FILE), &json, WriteOptions::mode(0o644))?;
    let pem_path = lib_dir.join(PEM_FILE);
    if certs.is_empty() {
        match std::fs::remove_file(&pem_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(FileError::new("remove", &pem_path, e).into())
            }
            _ => {}
        }
    } else {
        let mut pem = Vec::new();
        for c in certs {
            pem.extend_from_slice(&c.cert.to_pem().map_err(ossl("certificate PEM"))?);
        }
        if std::fs::read(&pem_path).ok().as_deref() != Some(pem.as_slice()) {
            write_atomic(&pem_path, &pem, WriteOptions::mode(0o644))?;
        }
    }
    Ok(written)
}

/// Whether `path` is a regular file holding `cert` (PEM, any line layout or text around it).
fn holds_certificate(path: &Path, cert: &X509) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return false };
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return false;
    }
    let (Ok(pem), Ok(want)) = (std::fs::read(path), cert.to_der()) else { return false };
    X509::from_pem(&pem).and_then(|c| c.to_der()).is_ok_and(|der| der == want)
}

/// Whether `path` is a regular file holding a private key of the same key pair as `key`.
fn holds_key(path: &Path, key: &PKey<Private>) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return false };
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return false;
    }
    let Ok(pem) = std::fs::read(path).map(zeroize::Zeroizing::new) else { return false };
    PKey::private_key_from_pem(&pem).is_ok_and(|k| k.public_eq(key))
}

/// The OpenSSH public key line (`ssh-rsa AAAA...`, `ecdsa-sha2-nistp256 ...`, `ssh-ed25519 ...`),
/// without comment or newline, for a public key.
pub fn openssh_public_key<T: openssl::pkey::HasPublic>(key: &PKeyRef<T>) -> Result<String, CertError> {
    fn string(out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
    }
    fn mpint(out: &mut Vec<u8>, n: &openssl::bn::BigNumRef) {
        let mut v = n.to_vec();
        if v.first().is_some_and(|b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        string(out, &v);
    }
    let mut blob = Vec::new();
    let kind = match key.id() {
        Id::RSA => {
            let rsa = key.rsa().map_err(ossl("RSA key"))?;
            string(&mut blob, b"ssh-rsa");
            mpint(&mut blob, rsa.e());
            mpint(&mut blob, rsa.n());
            "ssh-rsa".to_string()
        }
        Id::EC => {
            let ec = key.ec_key().map_err(ossl("EC key"))?;
            let curve = match ec.group().curve_name() {
                Some(Nid::X9_62_PRIME256V1) => "nistp256",
                Some(Nid::SECP384R1) => "nistp384",
                Some(Nid::SECP521R1) => "nistp521",
                _ => {
                    return Err(CertError::Invalid {
                        what: "EC key".into(),
                        why: "curve has no OpenSSH name",
                    })
                }
            };
            let mut ctx = BigNumContext::new().map_err(ossl("EC point"))?;
            let point = ec
                .public_key()
                .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
                .map_err(ossl("EC point"))?;
            let kind = format!("ecdsa-sha2-{curve}");
            string(&mut blob, kind.as_bytes());
            string(&mut blob, curve.as_bytes());
            string(&mut blob, &point);
            kind
        }
        Id::ED25519 => {
            let raw = key.raw_public_key().map_err(ossl("Ed25519 key"))?;
            string(&mut blob, b"ssh-ed25519");
            string(&mut blob, &raw);
            "ssh-ed25519".to_string()
        }
        _ => {
            return Err(CertError::Invalid {
                what: "public key".into(),
                why: "not an RSA, ECDSA or Ed25519 key",
            })
        }
    };
    Ok(format!("{kind} {}", base64::engine::general_purpose::STANDARD.encode(blob)))
}

/// The OpenSSH public key of a PEM certificate (an OVF `PublicKey` given by fingerprint).
pub fn openssh_key_from_cert_pem(pem: &[u8]) -> Result<String, CertError> {
    let cert = X509::from_pem(pem).map_err(ossl("certificate PEM"))?;
    let key: PKey<Public> = cert.public_key().map_err(ossl("certificate public key"))?;
    openssh_public_key(&key)
}

/// For an OVF `KeyPair`: the private key as PKCS#8 PEM (which OpenSSH reads as an identity file)
/// and its public half as an OpenSSH line for `<path>.pub`. waagent wrote the `.pub` as PEM, which
/// `ssh` cannot use; wala writes the OpenSSH form.
pub fn ssh_keypair_from_prv_pem(pem: &[u8]) -> Result<(zeroize::Zeroizing<Vec<u8>>, String), CertError> {
    let key = PKey::private_key_from_pem(pem).map_err(ossl("private key PEM"))?;
    let private = zeroize::Zeroizing::new(key.private_key_to_pem_pkcs8().map_err(ossl("private key PEM"))?);
    Ok((private, openssh_public_key(&key)?))
}

/// Every certificate in a PEM text (other blocks ignored), with its thumbprint.
pub fn certs_in_pem(pem: &[u8]) -> Result<Vec<(String, X509)>, CertError> {
    let certs = X509::stack_from_pem(pem).map_err(ossl("PEM certificates"))?;
    certs.into_iter().map(|c| Ok((thumbprint(&c)?, c))).collect()
}

/// A minimal DER walk over a PKCS#12 to find key bags in unencrypted safe contents.
mod pfx_der {
    use openssl::pkey::{PKey, Private};

    const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    const OID_KEY_BAG: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x01];
    const OID_SHROUDED_KEY_BAG: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02];

    /// One TLV: tag, content, and the whole encoding.
    fn read(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *data.first()?;
        let first = *data.get(1)? as usize;
        let (len, header) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                return None; // indefinite or absurd lengths: not handled here
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *data.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let end = header.checked_add(len)?;
        let content = data.get(header..end)?;
        Some((tag, content, data.get(end..)?))
    }

    /// The elements of a constructed value's content.
    fn items(mut content: &[u8]) -> Vec<(u8, &[u8])> {
        let mut out = Vec::new();
        while !content.is_empty() {
            let Some((tag, c, rest)) = read(content) else { break };
            out.push((tag, c));
            content = rest;
        }
        out
    }

    /// The OCTET STRING inside a ContentInfo of type `data`.
    fn data_content(content_info: &[u8]) -> Option<&[u8]> {
        let parts = items(content_info);
        let (0x06, oid) = *parts.first()? else { return None };
        if oid != OID_DATA {
            return None;
        }
        let (0xa0, explicit) = *parts.get(1)? else { return None };
        let (0x04, octets, _) = read(explicit)? else { return None };
        Some(octets)
    }

    /// Private keys in the `keyBag`s and `pkcs8ShroudedKeyBag`s (empty password) of every
    /// unencrypted SafeContents. Anything unexpected is skipped.
    pub fn key_bags(pfx: &[u8]) -> Vec<PKey<Private>> {
        let mut keys = Vec::new();
        let Some((0x30, pfx_seq, _)) = read(pfx) else { return keys };
        let parts = items(pfx_seq);
        let Some(&(0x30, auth_safe)) = parts.get(1) else { return keys };
        let Some(auth_safe) = data_content(auth_safe) else { return keys };
        let Some((0x30, infos, _)) = read(auth_safe) else { return keys };
        for (tag, info) in items(infos) {
            if tag != 0x30 {
                continue;
            }
            let Some(safe_contents) = data_content(info) else { continue };
            let Some((0x30, bags, _)) = read(safe_contents) else { continue };
            for (tag, bag) in items(bags) {
                if tag != 0x30 {
                    continue;
                }
                let fields = items(bag);
                let (Some(&(0x06, oid)), Some(&(0xa0, value))) = (fields.first(), fields.get(1)) else {
                    continue;
                };
                let Some((_, _, _)) = read(value) else { continue };
                let der_len = value.len() - read(value).map_or(0, |(_, _, rest)| rest.len());
                let der = &value[..der_len];
                let key = if oid == OID_KEY_BAG {
                    PKey::private_key_from_der(der).ok()
                } else if oid == OID_SHROUDED_KEY_BAG {
                    PKey::private_key_from_pkcs8_passphrase(der, b"").ok()
                } else {
                    None
                };
                keys.extend(key);
            }
        }
        keys
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn garbage_never_panics() {
            for data in [&b""[..], &[0x30], &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], &[0x30, 0x03, 0x02, 0x01]]
            {
                assert!(super::key_bags(data).is_empty());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extracted() -> ExtractedCert {
        let keys = TransportKeys::generate().expect("generate");
        ExtractedCert {
            thumbprint: thumbprint(&keys.cert).expect("thumbprint"),
            cert: keys.cert,
            key: Some(keys.key),
        }
    }

    #[test]
    fn files_holding_the_same_certificate_and_key_pair_are_left_byte_for_byte() {
        let lib = tempfile::tempdir().expect("tempdir");
        let c = extracted();
        let crt = lib.path().join(format!("{}.crt", c.thumbprint));
        let prv = lib.path().join(format!("{}.prv", c.thumbprint));
        // Another agent's forms of the same certificate and key: text before the PEM block, a
        // traditional ("RSA PRIVATE KEY") key.
        let mut crt_text =
            b"Bag Attributes\n    localKeyID: 01 00 00 00\nsubject=CN = LinuxTransport\n".to_vec();
        crt_text.extend(c.cert.to_pem().expect("pem"));
        let rsa = c.key.as_ref().expect("key").rsa().expect("rsa");
        let prv_text = rsa.private_key_to_pem().expect("pem");
        assert!(String::from_utf8_lossy(&prv_text).starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        std::fs::write(&crt, &crt_text).expect("write");
        std::fs::write(&prv, &prv_text).expect("write");
        let paths = write_cert_files(lib.path(), std::slice::from_ref(&c)).expect("write");
        assert_eq!(paths, vec![crt.clone(), prv.clone()]);
        assert_eq!(std::fs::read(&crt).expect("read"), crt_text);
        assert_eq!(std::fs::read(&prv).expect("read"), prv_text);

        // Files that hold something else (another certificate, another key, garbage) are replaced.
        let other = extracted();
        std::fs::write(&crt, other.cert.to_pem().expect("pem")).expect("write");
        std::fs::write(&prv, "not a key").expect("write");
        write_cert_files(lib.path(), std::slice::from_ref(&c)).expect("write");
        assert_eq!(std::fs::read(&crt).expect("read"), c.cert.to_pem().expect("pem"));
        let key = PKey::private_key_from_pem(&std::fs::read(&prv).expect("read")).expect("key");
        assert!(key.public_eq(c.key.as_ref().expect("key")));
    }
}
