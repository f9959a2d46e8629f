//! The fuzz target `history_redact`'s properties on its seeds (waagent's own redaction test
//! documents): the saved copy of an ExtensionsConfig or vmSettings holds none of the protected
//! settings the parser finds and no SAS signature, is a fixed point, and still parses.

use std::path::PathBuf;

use wala::documents::extensions::{
    parse_extensions_config, parse_vm_settings, ExtensionsGoalState, VmSettingsDocument,
};
use wala::host::lib_dir::{redact, REDACTED};

fn protected(gs: &ExtensionsGoalState) -> Vec<String> {
    gs.extensions
        .iter()
        .flat_map(|e| e.settings.iter())
        .filter_map(|s| s.protected_settings.as_ref().map(|p| p.expose().clone()))
        .collect()
}

#[test]
fn waagents_redaction_documents_are_saved_without_secrets() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/history_redact");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("seeds").flatten() {
        let text = std::fs::read_to_string(entry.path()).expect("read");
        let name = entry.file_name().to_string_lossy().into_owned();
        let gs = if name.ends_with(".xml") {
            parse_extensions_config(&text, Some(1)).expect("ExtensionsConfig")
        } else {
            match parse_vm_settings(&text, "1").expect("vmSettings") {
                VmSettingsDocument::Supported(gs) => *gs,
                other => panic!("{name}: {other:?}"),
            }
        };
        let secrets = protected(&gs);
        assert!(secrets.len() >= 3, "{name}: waagent's document has three protected settings");
        assert!(text.to_ascii_lowercase().contains("sig="), "{name}: and SAS URLs");
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let saved = redact(&text, &refs).unwrap_or_else(|| panic!("{name}: not redacted"));
        assert!(!saved.to_ascii_lowercase().contains("sig="), "{name}");
        for s in &refs {
            assert!(!saved.contains(s), "{name}: a protected setting survived");
        }
        assert!(saved.matches(REDACTED).count() > secrets.len(), "{name}");
        assert_eq!(redact(&saved, &[]).as_deref(), Some(saved.as_str()), "{name}: not a fixed point");
        if name.ends_with(".xml") {
            let again = parse_extensions_config(&saved, Some(1)).expect("still parses");
            assert_eq!(again.extensions.len(), gs.extensions.len());
        } else {
            assert!(parse_vm_settings(&saved, "1").is_ok(), "{name}: still parses");
        }
        seen += 1;
    }
    assert_eq!(seen, 2);
}
