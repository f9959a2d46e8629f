//! `documents::extensions::manifest::parse_manifest` (plugin version manifests), `parse_extension_image`
//! and `FlexibleVersion::parse`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = wala::documents::extensions::manifest::parse_manifest(&text);
    let _ = wala::documents::extensions::manifest::parse_extension_image(&text);
    let _ = wala::documents::extensions::FlexibleVersion::parse(&text);
});
