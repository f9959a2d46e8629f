//! `documents::extensions::parse_status_file` (an extension's `<n>.status`) and `documents::extensions::parse_heartbeat`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wala::documents::extensions::parse_status_file(data);
    let _ = wala::documents::extensions::parse_heartbeat(&String::from_utf8_lossy(data));
});
