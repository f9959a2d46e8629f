//! Helpers shared by the integration tests: where fixtures are, and the reference MANIFEST.
#![allow(dead_code)]

use std::path::PathBuf;

/// The project's own fixtures (`shared/tests/fixtures`), present in every clone.
pub fn project_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The team's reference fixtures (`../shared/fixtures` beside the checkout, or `$WALA_REFERENCE_FIXTURES`).
/// Absent in a user's fresh clone: then this prints a clear SKIP line naming `what` and returns `None`.
pub fn reference_fixtures(what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("WALA_REFERENCE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    if dir.join("MANIFEST.tsv").is_file() {
        Some(dir)
    } else {
        skip(&format!(
            "{what}: reference fixtures not found at {} (they exist beside the checkout in CI; \
             set WALA_REFERENCE_FIXTURES to point elsewhere)",
            dir.display()
        ));
        None
    }
}

/// One row of `MANIFEST.tsv`.
#[derive(Debug, Clone)]
pub struct ManifestRow {
    pub path: String,
    pub kind: String,
    pub valid: bool,
    pub description: String,
    pub expected: String,
}

/// The rows of the reference MANIFEST whose `kind` column equals `kind` (deduplicated by path).
pub fn manifest_rows(fixtures: &std::path::Path, kind: &str) -> Vec<ManifestRow> {
    let text = std::fs::read_to_string(fixtures.join("MANIFEST.tsv")).expect("read MANIFEST.tsv");
    let mut rows: Vec<ManifestRow> = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 8 || cols[5] != kind {
            continue;
        }
        if rows.iter().any(|r| r.path == cols[0]) {
            continue;
        }
        rows.push(ManifestRow {
            path: cols[0].to_string(),
            kind: cols[5].to_string(),
            valid: cols[6] == "valid",
            description: cols[7].to_string(),
            expected: cols.get(8).map(|s| s.to_string()).unwrap_or_default(),
        });
    }
    rows
}

/// Say that a test (or part of one) was skipped and why: on stderr, and appended to the file named
/// by `WALA_SKIP_LOG` so that `scripts/test.sh` lists every skip in its summary (cargo hides the
/// stderr of passing tests).
pub fn skip(message: &str) {
    eprintln!("SKIP {message}");
    if let Some(path) = std::env::var_os("WALA_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "SKIP {message}");
        }
    }
}
