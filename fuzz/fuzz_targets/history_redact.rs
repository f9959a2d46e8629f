//! `lib_dir::redact`: what the daemon saves of an ExtensionsConfig or vmSettings document. A saved
//! copy holds no protected settings the parsers found and no SAS signature, redacting it again
//! changes nothing, and a document that parsed still parses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wala::documents::extensions::{parse_extensions_config, parse_vm_settings, ExtensionsGoalState, VmSettingsDocument};

fn protected(gs: &ExtensionsGoalState) -> Vec<String> {
    gs.extensions
        .iter()
        .flat_map(|e| e.settings.iter())
        .filter_map(|s| s.protected_settings.as_ref().map(|p| p.expose().clone()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let xml = parse_extensions_config(text, Some(1)).ok();
    let json = match parse_vm_settings(text, "1") {
        Ok(VmSettingsDocument::Supported(gs)) => Some(*gs),
        _ => None,
    };
    let secrets: Vec<String> = xml.iter().chain(json.iter()).flat_map(protected).collect();
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let Some(saved) = wala::host::lib_dir::redact(text, &refs) else { return };
    assert!(!saved.to_ascii_lowercase().contains("sig="), "a signature survived");
    for s in refs.iter().filter(|s| s.len() >= 4) {
        assert!(!saved.contains(s), "a protected setting survived");
    }
    assert_eq!(wala::host::lib_dir::redact(&saved, &[]).as_deref(), Some(saved.as_str()), "not a fixed point");
    if xml.is_some() {
        assert!(parse_extensions_config(&saved, Some(1)).is_ok(), "the redacted ExtensionsConfig no longer parses");
    }
    if json.is_some() {
        assert!(parse_vm_settings(&saved, "1").is_ok(), "the redacted vmSettings no longer parse");
    }
});
