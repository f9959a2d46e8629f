//! Helpers for the library's own unit tests.

/// Say that a test (or part of one) was skipped and why: on stderr, and appended to the file named
/// by `WALA_SKIP_LOG` so that `scripts/test.sh` lists every skip in its summary.
pub fn skip(message: &str) {
    eprintln!("SKIP {message}");
    if let Some(path) = std::env::var_os("WALA_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "SKIP {message}");
        }
    }
}
