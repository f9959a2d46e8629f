//! `documents::extensions::events::parse_event_file` (events extensions write) and `redact_sas_queries`, whose output
//! redacts to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = wala::documents::extensions::events::parse_event_file(&text);
    let redacted = wala::documents::extensions::redact_sas_queries(&text);
    assert_eq!(wala::documents::extensions::redact_sas_queries(&redacted), redacted, "redacting is not idempotent");
});
