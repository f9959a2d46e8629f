//! `conf::parse`: any text; the parsed configuration round-trips through `conf::show` (whose
//! waagent `-show-configuration` format prints booleans as `True`/`False`; the file format wants
//! `y`/`n`). The shown file has no problem of its own: the only ones it may carry are the
//! combination problems the input already had (a proxy host without a port stays one).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let loaded = wala::documents::conf::parse(&text, Path::new("/etc/waagent.conf"));
    let shown = wala::documents::conf::show(&loaded.config);
    let as_file: String = shown
        .lines()
        .map(|line| match line.split_once(" = ") {
            Some((key, "True")) => format!("{key}=y\n"),
            Some((key, "False")) => format!("{key}=n\n"),
            Some((key, value)) => format!("{key}={value}\n"),
            None => panic!("show printed a line without ' = ': {line:?}"),
        })
        .collect();
    let reparsed = wala::documents::conf::parse(&as_file, Path::new("/shown.conf"));
    let new: Vec<_> = reparsed
        .problems
        .iter()
        .filter(|p| !loaded.problems.iter().any(|q| q.key == p.key && q.message == p.message))
        .collect();
    assert!(new.is_empty(), "show output has problems the input did not: {new:?}\n{shown}");
    assert_eq!(reparsed.config, loaded.config, "show output does not round-trip:\n{shown}");
});
