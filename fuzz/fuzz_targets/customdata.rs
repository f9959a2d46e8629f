//! `customdata::decode_base64` and `customdata::save`: any text as CustomData. Whatever decodes
//! re-encodes to the same text (whitespace aside), and `save` with decoding writes exactly the
//! decoded bytes, or the text as received when it is not base64.
#![no_main]
use std::path::Path;

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use wala::host::customdata::{decode_base64, save, Saved};
use wala::base::root::HostRoot;
use wala::base::secret::Secret;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let decoded = decode_base64(&text);
    if let Some(bytes) = &decoded {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        assert_eq!(base64::engine::general_purpose::STANDARD.encode(bytes), compact);
    }
    let dir = std::env::temp_dir().join(format!("wala-fuzz-customdata-{}", std::process::id()));
    let root = HostRoot::new(&dir);
    let lib = Path::new("/var/lib/waagent");
    let saved = save(&root, lib, &Secret::new(text.clone()), true).expect("save");
    let written = std::fs::read(dir.join("var/lib/waagent/CustomData")).expect("read back");
    match (saved, decoded) {
        (Saved::Decoded, Some(bytes)) => assert_eq!(written, bytes),
        (Saved::NotBase64, None) => assert_eq!(written, text.as_bytes()),
        (saved, decoded) => panic!("saved as {saved:?} but decoding gave {:?}", decoded.map(|d| d.len())),
    }
});
