//! `crypto::openssl_certs::parse_pfx`: the decrypted certificates payload (PKCS#12 DER), including the
//! project's own key bag walker.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(certs) = wala::crypto::openssl_certs::parse_pfx(data) {
        for c in &certs {
            assert_eq!(c.thumbprint.len(), 40, "thumbprint {:?}", c.thumbprint);
        }
    }
});
