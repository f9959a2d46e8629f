//! `documents::wire::parse_hosting_env`: a WireServer document (any bytes, read as UTF-8 with replacement).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = wala::documents::wire::parse_hosting_env(&text);
});
