//! Test certificates and the Certificates document (spec §4.5): a CMS EnvelopedData, encrypted to
//! the agent's transport certificate, whose content is a password-less PKCS#12.
//!
//! The `openssl` crate can put only one private key into a PKCS#12, so the first certificate (the
//! "tenant" certificate) carries its key and the others are certificate-only bags.

use base64::Engine;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// Why a Certificates document could not be produced for a request.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The transport certificate header is missing.
    #[error("missing header x-ms-guest-agent-public-x509-cert")]
    MissingTransportCert,
    /// The transport certificate header is neither base64 DER nor PEM.
    #[error("x-ms-guest-agent-public-x509-cert is not a base64 DER or PEM certificate")]
    BadTransportCert,
    /// The cipher header is missing or names an unknown cipher.
    #[error("x-ms-cipher-name {0:?} is not AES128_CBC or DES_EDE3_CBC")]
    BadCipher(String),
    /// OpenSSL failed.
    #[error("openssl: {0}")]
    Openssl(#[from] ErrorStack),
}

/// One generated test certificate.
pub struct TestCert {
    /// The certificate.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
    /// SHA-1 of the DER, upper-case hex without colons (as the agent names `<thumb>.crt`).
    pub thumbprint: String,
    /// Whether the key is inside the PKCS#12 served to the agent.
    pub in_pfx_with_key: bool,
}

impl std::fmt::Debug for TestCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCert")
            .field("thumbprint", &self.thumbprint)
            .field("in_pfx_with_key", &self.in_pfx_with_key)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Generates `count` self-signed RSA-2048 certificates, `CN=wala-fabric-test-<i>`.
pub fn generate(count: usize) -> Result<Vec<TestCert>, ErrorStack> {
    (0..count).map(generate_one).collect()
}

fn generate_one(i: usize) -> Result<TestCert, ErrorStack> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", &format!("wala-fabric-test-{i}"))?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    b.set_not_before(&not_before)?;
    let not_after = Asn1Time::days_from_now(730)?;
    b.set_not_after(&not_after)?;
    b.sign(&key, MessageDigest::sha256())?;
    let cert = b.build();
    let thumbprint = hex_upper(&cert.digest(MessageDigest::sha1())?);
    Ok(TestCert { cert, key, thumbprint, in_pfx_with_key: i == 0 })
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The password-less PKCS#12 (DER) holding `certs`.
pub fn pfx(certs: &[TestCert]) -> Result<Vec<u8>, ErrorStack> {
    let Some((first, rest)) = certs.split_first() else { return Ok(Vec::new()) };
    let mut others = Stack::new()?;
    for c in rest {
        others.push(c.cert.clone())?;
    }
    let mut b = Pkcs12::builder();
    b.name("wala-fabric").pkey(&first.key).cert(&first.cert);
    if !rest.is_empty() {
        b.ca(others);
    }
    b.build2("")?.to_der()
}

/// Parses the transport certificate header: base64 of the DER (the PEM body without armour, as
/// WALinuxAgent sends it, possibly with whitespace), or a PEM, with or without line breaks.
pub fn parse_transport_cert(header: &str) -> Result<X509, CertError> {
    if let Ok(cert) = X509::from_pem(header.as_bytes()) {
        return Ok(cert);
    }
    // Armour markers on the same line as the base64 (a header cannot carry newlines).
    let unarmoured =
        header.replace("-----BEGIN CERTIFICATE-----", "").replace("-----END CERTIFICATE-----", "");
    let compact: String = unarmoured.chars().filter(|c| !c.is_whitespace()).collect();
    let der =
        base64::engine::general_purpose::STANDARD.decode(compact).map_err(|_| CertError::BadTransportCert)?;
    X509::from_der(&der).map_err(|_| CertError::BadTransportCert)
}

/// The cipher for an `x-ms-cipher-name` value.
pub fn cipher(name: &str) -> Result<Cipher, CertError> {
    match name {
        "AES128_CBC" => Ok(Cipher::aes_128_cbc()),
        "DES_EDE3_CBC" => Ok(Cipher::des_ede3_cbc()),
        other => Err(CertError::BadCipher(other.to_string())),
    }
}

/// `settings` encrypted as the platform encrypts an extension's protected settings: a CMS
/// EnvelopedData (DER, AES-256-CBC) addressed to `cert`, base64 without line breaks, the value of
/// `protectedSettings` beside `protectedSettingsCertThumbprint` naming `cert`. Handlers decrypt it
/// with that certificate's `<thumbprint>.crt` and `.prv` in `Lib.Dir`
/// (`openssl cms -decrypt -inform DER -recip <thumb>.crt -inkey <thumb>.prv`).
pub fn protect(settings: &[u8], cert: &TestCert) -> Result<String, ErrorStack> {
    let mut recipients = Stack::new()?;
    recipients.push(cert.cert.clone())?;
    let cms = CmsContentInfo::encrypt(&recipients, settings, Cipher::aes_256_cbc(), CMSOptions::BINARY)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(cms.to_der()?))
}

/// The Certificates document for `incarnation`, encrypting `pfx` to the transport certificate named
/// by the request headers. With no certificates, the document has no `Data` element.
pub fn certificates_document(
    incarnation: u64,
    pfx: &[u8],
    transport_header: Option<&str>,
    cipher_header: Option<&str>,
) -> Result<String, CertError> {
    let transport = parse_transport_cert(transport_header.ok_or(CertError::MissingTransportCert)?)?;
    let cipher = cipher(cipher_header.unwrap_or(""))?;
    let mut doc = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<CertificateFile \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:noNamespaceSchemaLocation=\"certificates10.xsd\">\n  <Version>2012-11-30</Version>\n  \
         <Incarnation>{incarnation}</Incarnation>\n  <Format>Pkcs7BlobWithPfxContents</Format>\n"
    );
    if !pfx.is_empty() {
        let mut recipients = Stack::new()?;
        recipients.push(transport)?;
        let cms = CmsContentInfo::encrypt(&recipients, pfx, cipher, CMSOptions::BINARY)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(cms.to_der()?);
        doc.push_str("  <Data>");
        for (i, line) in b64.as_bytes().chunks(76).enumerate() {
            if i > 0 {
                doc.push('\n');
            }
            doc.push_str(&String::from_utf8_lossy(line));
        }
        doc.push_str("</Data>\n");
    }
    doc.push_str("</CertificateFile>\n");
    Ok(doc)
}
