//! `legacy_cli::parse`: waagent-style arguments (the input split at NUL bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let args: Vec<&str> = text.split('\0').collect();
    let _ = wala::commands::legacy_cli::parse(&args);
});
