//! `documents::extensions::parse_vm_settings`: the HostGAPlugin's vmSettings JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = wala::documents::extensions::parse_vm_settings(&text, "1234567890");
});
