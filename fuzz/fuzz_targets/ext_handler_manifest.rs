//! `documents::extensions::parse_handler_manifest`: an extension's HandlerManifest.json.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = wala::documents::extensions::parse_handler_manifest(&text);
});
