//! `ovf::parse_bytes`: the OVF environment from the provisioning media (any bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = wala::documents::ovf::parse_bytes(data) {
        // The reason reported to the host is bounded and has no control characters.
        let reason = e.reason();
        assert!(reason.chars().count() <= wala::documents::ovf::REASON_MAX_CHARS);
        assert!(!reason.chars().any(char::is_control));
    }
});
