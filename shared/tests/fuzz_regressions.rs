//! Inputs found by the fuzz targets in `fuzz/` (see docs/testing.md), replayed against the parser
//! that failed on them. Each input is kept in `tests/fixtures/fuzz/<target>-<what>.bin`.

use std::path::PathBuf;

fn input(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// disk_probe: a GPT entry whose start LBA or length in sectors times the sector size is past
/// `u64::MAX` made `GptPartition::extent` overflow (a panic in debug builds, a wrapped, wrong
/// offset in release).
#[test]
fn gpt_extent_with_huge_lba_saturates() {
    use wala::host::disk::probe::{gpt_sector_size, probe_bytes, Probe};
    let data = input("disk_probe-gpt-lba-overflow.bin");
    let Probe::Gpt(parts) = probe_bytes(&data) else { panic!("not read as a GPT") };
    let sector = gpt_sector_size(&data).expect("GPT sector size");
    let mut overflowing = 0;
    for p in &parts {
        let extent = p.extent(sector);
        let sectors = p.end_lba.saturating_sub(p.start_lba).saturating_add(1);
        for (got, lba) in [(extent.start_byte, p.start_lba), (extent.len_bytes, sectors)] {
            let want = lba.checked_mul(sector).unwrap_or_else(|| {
                overflowing += 1;
                u64::MAX
            });
            assert_eq!(got, want, "partition {}: {p:?}", p.index);
        }
    }
    assert!(overflowing > 0, "the input no longer has an overflowing entry: {parts:?}");
}

/// ext_events: in a URL with a second `?` (`https://a?sig=?sig=s`), `redact_sas_queries` only redacted
/// after the last one, so the signature after the first stayed in the text (and redacting the
/// output again changed it).
#[test]
fn sas_redaction_starts_at_the_first_sas_query() {
    use wala::documents::extensions::redact_sas_queries as redact_sas;
    let text = String::from_utf8(input("ext_events-sas-second-query.txt")).expect("UTF-8");
    let once = redact_sas(&text);
    assert_eq!(once, "https://a?<redacted>");
    assert_eq!(redact_sas(&once), once);
    let leaky = "see https://acct.blob.core.windows.net/c/b?sig=SECRETSIG?sv=2020&se=x done";
    let redacted = redact_sas(leaky);
    assert!(!redacted.contains("SECRETSIG"), "{redacted}");
    assert_eq!(redacted, "see https://acct.blob.core.windows.net/c/b?<redacted> done");
}

/// history_redact: a `"protectedSettings": "` whose string is not closed before its XML element
/// ends (first input), or whose closing quote is an attribute's (second). The redaction went
/// across the markup and the saved copy no longer parsed. A value that is not base64 is now "not
/// redactable for certain", and such a document is not saved at all.
#[test]
fn a_protected_value_running_into_markup_is_not_redacted() {
    for name in ["history_redact-reparse.bin", "history_redact-attribute.bin"] {
        not_redacted(name);
    }
}

fn not_redacted(name: &str) {
    let text = String::from_utf8(input(name)).expect("UTF-8");
    let gs = wala::documents::extensions::parse_extensions_config(&text, Some(1)).expect("the input parses");
    let secrets: Vec<String> = gs
        .extensions
        .iter()
        .flat_map(|e| e.settings.iter())
        .filter_map(|s| s.protected_settings.as_ref().map(|p| p.expose().clone()))
        .collect();
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert!(text.contains("\"protectedSettings\":"), "{name}: the input changed");
    assert_eq!(wala::host::lib_dir::redact(&text, &refs), None, "{name}");
}
