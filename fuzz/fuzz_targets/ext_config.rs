//! `documents::extensions::parse_extensions_config` (with and without a WireServer incarnation) and
//! `documents::extensions::parse_artifacts_profile`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = wala::documents::extensions::parse_extensions_config(&text, None);
    let _ = wala::documents::extensions::parse_extensions_config(&text, Some(u64::MAX));
    let _ = wala::documents::extensions::parse_artifacts_profile(&text);
});
