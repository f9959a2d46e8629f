//! `documents::wire::parse_certificates` (and its payload decoding) and `documents::wire::parse_certificate_summary`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(certs) = wala::documents::wire::parse_certificates(&text) {
        let _ = certs.payload();
    }
    let _ = wala::documents::wire::parse_certificate_summary(&text);
});
