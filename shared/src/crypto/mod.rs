//! Certificate work as the rest of wala asks for it: each call runs in the `wala-crypto` helper
//! ([`crate::crypto::helper`]), a short-lived child that links OpenSSL and runs the code of
//! [`openssl_certs`], so that the daemon never maps libcrypto (docs/security.md, "The crypto
//! helper"). Private keys stay in the helper and the 0600 files it writes; what comes back is the
//! transport certificate's header value, the certificate summary, a decrypted RemoteAccess
//! password or an SSH key pair for provisioning, over a pipe.
//!
//! * [`helper`]: the `wala-crypto` child process and its calls;
//! * [`openssl_certs`]: the OpenSSL code the child runs (certificates, PKCS#7, CMS).

pub mod helper;
pub mod openssl_certs;

use std::path::{Path, PathBuf};

use crate::crypto::openssl_certs::CertError;
use crate::documents::wire::CertificateSummary;
use helper::{Answer, Call, Envelope, HelperError, CERT_CALL_TIMEOUT};

pub use crate::crypto::openssl_certs::{
    CIPHERS, PEM_FILE, SUMMARY_FILE, TRANSPORT_CERT_FILE, TRANSPORT_KEY_FILE,
};

fn ask(call: &Call, body: &[u8]) -> Result<Answer, CertError> {
    let mut no_body = |_: &[u8]| Err(std::io::Error::other("a certificate call has no streamed body"));
    helper::call(call, body, CERT_CALL_TIMEOUT, &mut no_body).map_err(CertError::from)
}

fn unexpected(call: &'static str) -> CertError {
    CertError::Helper(HelperError::Run { call, why: "an answer of another kind".into() })
}

/// The agent's transport key pair, in `TransportCert.pem`/`TransportPrivate.pem` of the lib dir
/// (made there when missing, invalid or expiring within a day): the WireServer encrypts
/// certificates and passwords to it.
#[derive(Debug, Clone)]
pub struct TransportKeys {
    lib_dir: PathBuf,
    header: String,
}

impl TransportKeys {
    /// Load the key pair in `lib_dir`, or make it.
    pub fn load_or_create(lib_dir: &Path) -> Result<Self, CertError> {
        match ask(&Call::TransportCert { lib_dir: lib_dir.to_path_buf() }, &[])? {
            Answer::Header(header) => Ok(Self { lib_dir: lib_dir.to_path_buf(), header }),
            _ => Err(unexpected("transport-cert")),
        }
    }

    /// The `x-ms-guest-agent-public-x509-cert` header: base64 of the certificate's DER.
    pub fn header_value(&self) -> Result<String, CertError> {
        Ok(self.header.clone())
    }

    /// Decrypt a CMS EnvelopedData (DER) addressed to this key pair.
    pub fn decrypt(
        &self,
        envelope_der: &[u8],
        what: Envelope,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CertError> {
        let call = Call::Decrypt { lib_dir: self.lib_dir.clone(), envelope: what };
        match ask(&call, envelope_der)? {
            Answer::Plain(text) => {
                let text = zeroize::Zeroizing::new(text);
                Ok(zeroize::Zeroizing::new(helper::unbase64(&text)?))
            }
            _ => Err(unexpected("decrypt")),
        }
    }
}

/// Decrypt the Certificates `Data` (`None`: the goal state has none) with the transport key pair
/// of `lib_dir` and write `<THUMBPRINT>.crt` (0644), `<THUMBPRINT>.prv` (0600),
/// `Certificates.json` and `Certificates.pem` there (see [`openssl_certs::write_cert_files`]).
pub fn store_certificates(lib_dir: &Path, data: Option<&[u8]>) -> Result<Vec<CertificateSummary>, CertError> {
    let call = Call::StoreCertificates { lib_dir: lib_dir.to_path_buf(), data: data.is_some() };
    match ask(&call, data.unwrap_or_default())? {
        Answer::Certificates(summary) => Ok(summary),
        _ => Err(unexpected("store-certificates")),
    }
}

/// The OpenSSH public key line of a PEM certificate (an OVF `PublicKey` given by fingerprint).
pub fn openssh_key_from_cert_pem(pem: &[u8]) -> Result<String, CertError> {
    match ask(&Call::SshKeyFromCert, pem)? {
        Answer::SshKey(line) => Ok(line),
        _ => Err(unexpected("ssh-key-from-cert")),
    }
}

/// For an OVF `KeyPair`: the private key as PKCS#8 PEM and its OpenSSH public key line.
pub fn ssh_keypair_from_prv_pem(pem: &[u8]) -> Result<(zeroize::Zeroizing<Vec<u8>>, String), CertError> {
    match ask(&Call::SshKeyPairFromPrv, pem)? {
        Answer::KeyPair { private_pem, public } => {
            Ok((zeroize::Zeroizing::new(private_pem.into_bytes()), public))
        }
        _ => Err(unexpected("ssh-key-pair-from-prv")),
    }
}

/// `OS.EnableFIPS`: with OpenSSL 3 the FIPS provider is chosen by the system's OpenSSL
/// configuration (`fips=1` on the kernel command line and the distribution's crypto policy), so
/// there is nothing to switch in a process; wala sets `OPENSSL_FIPS=1` for the commands it runs
/// (the `wala-crypto` helper among them), as waagent does, and reports whether the kernel says
/// FIPS mode is on.
pub fn apply_fips(root: &crate::base::root::HostRoot, enable: bool) -> bool {
    if !enable {
        return false;
    }
    std::env::set_var("OPENSSL_FIPS", "1");
    let on =
        std::fs::read_to_string(root.path("/proc/sys/crypto/fips_enabled")).is_ok_and(|s| s.trim() == "1");
    if !on {
        log::warn!("OS.EnableFIPS=y but the kernel is not in FIPS mode (/proc/sys/crypto/fips_enabled)");
    }
    on
}
