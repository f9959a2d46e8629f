//! Benchmark: wala's own document parsers over a list of files, the Rust half of
//! `bench/parsers-vs-waagent.sh` (whose Python half, `bench/waagent_parsers.py`, times waagent's
//! parsers over the same list with the same method).
//!
//! Usage: `cargo bench -p wala --bench parsers -- [--check] [--rounds N] [--warmup W] LIST`.
//! LIST is a text file of `kind<TAB>path` lines, where kind is one of [`KINDS`] (the MANIFEST.tsv
//! names). Every file is read into memory first; only parsing is timed.
//!
//! - `--check` parses each document once and prints `accept<TAB>kind<TAB>path` or
//!   `reject<TAB>kind<TAB>path<TAB>reason`.
//! - Otherwise, for each kind: `W` warm-up rounds, then `N` timed rounds, each round parsing every
//!   document of the kind once; it prints `time<TAB>kind<TAB>docs<TAB>µs`, where µs is the median
//!   round time divided by the number of documents (median µs per document). A document that
//!   fails to parse is reported as `reject` and left out of the timing.
//!
//! Nothing here is asserted: timings depend on the machine.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

/// The document kinds, in the order they are reported.
const KINDS: [&str; 8] = [
    "ovf-env",
    "goalstate",
    "extensionsconfig",
    "vmsettings",
    "hostingenv",
    "sharedconfig",
    "certificates",
    "waagent-conf",
];

/// Parse one document of `kind` with the parser wala uses for it; the error as text.
fn parse(kind: &str, text: &str) -> Result<(), String> {
    let shown = |e: &dyn std::fmt::Display| e.to_string();
    match kind {
        "ovf-env" => black_box(wala::documents::ovf::parse(text)).map(drop).map_err(|e| shown(&e)),
        "goalstate" => {
            black_box(wala::documents::wire::parse_goal_state(text)).map(drop).map_err(|e| shown(&e))
        }
        "extensionsconfig" => black_box(wala::documents::extensions::parse_extensions_config(text, Some(1)))
            .map(drop)
            .map_err(|e| shown(&e)),
        "vmsettings" => black_box(wala::documents::extensions::parse_vm_settings(text, "1"))
            .map(drop)
            .map_err(|e| shown(&e)),
        "hostingenv" => {
            black_box(wala::documents::wire::parse_hosting_env(text)).map(drop).map_err(|e| shown(&e))
        }
        "sharedconfig" => {
            black_box(wala::documents::wire::parse_shared_config(text)).map(drop).map_err(|e| shown(&e))
        }
        // Parsing only: the XML and its `Data`/`Format`; no base64 decoding, no decryption.
        "certificates" => {
            black_box(wala::documents::wire::parse_certificates(text)).map(drop).map_err(|e| shown(&e))
        }
        // `conf::parse` never fails: a bad line is a problem in the result, not an error.
        "waagent-conf" => {
            black_box(wala::documents::conf::parse(text, Path::new("waagent.conf")));
            Ok(())
        }
        other => Err(format!("unknown kind {other:?}")),
    }
}

struct Args {
    check: bool,
    rounds: usize,
    warmup: usize,
    list: String,
}

fn args() -> Result<Args, String> {
    let mut out = Args { check: false, rounds: 1000, warmup: 20, list: String::new() };
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>, flag: &str| -> Result<usize, String> {
        v.as_deref()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{flag} needs a positive number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--check" => out.check = true,
            "--rounds" => out.rounds = number(it.next(), "--rounds")?,
            "--warmup" => out.warmup = number(it.next(), "--warmup")?,
            // `cargo bench` appends this to the arguments of a `harness = false` bench.
            "--bench" => {}
            _ if out.list.is_empty() && !a.starts_with('-') => out.list = a,
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    if out.list.is_empty() {
        return Err("usage: parsers [--check] [--rounds N] [--warmup W] LIST".into());
    }
    Ok(out)
}

/// The documents of the list, read into memory: (kind, path, text).
fn documents(list: &str) -> Result<Vec<(String, String, String)>, String> {
    let listing = std::fs::read_to_string(list).map_err(|e| format!("{list}: {e}"))?;
    let mut docs = Vec::new();
    for (i, line) in listing.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let (kind, path) =
            line.split_once('\t').ok_or_else(|| format!("{list}:{}: expected kind<TAB>path", i + 1))?;
        if !KINDS.contains(&kind) {
            return Err(format!("{list}:{}: unknown kind {kind:?}", i + 1));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        docs.push((kind.to_string(), path.to_string(), text));
    }
    Ok(docs)
}

/// The reason on one line, so that the output stays one record per line.
fn one_line(reason: &str) -> String {
    reason.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run(args: &Args) -> Result<(), String> {
    let docs = documents(&args.list)?;
    if args.check {
        for (kind, path, text) in &docs {
            match parse(kind, text) {
                Ok(()) => println!("accept\t{kind}\t{path}"),
                Err(e) => println!("reject\t{kind}\t{path}\t{}", one_line(&e)),
            }
        }
        return Ok(());
    }
    for kind in KINDS {
        let mut texts = Vec::new();
        for (_, path, text) in docs.iter().filter(|(k, _, _)| k == kind) {
            match parse(kind, text) {
                Ok(()) => texts.push(text.as_str()),
                Err(e) => println!("reject\t{kind}\t{path}\t{}", one_line(&e)),
            }
        }
        if texts.is_empty() {
            continue;
        }
        let round = || {
            for text in &texts {
                let _ = black_box(parse(kind, black_box(text)));
            }
        };
        for _ in 0..args.warmup {
            round();
        }
        let mut times: Vec<u128> = (0..args.rounds)
            .map(|_| {
                let t = Instant::now();
                round();
                t.elapsed().as_nanos()
            })
            .collect();
        times.sort_unstable();
        let median_ns = times[times.len() / 2] as f64;
        println!("time\t{kind}\t{}\t{:.2}", texts.len(), median_ns / 1000.0 / texts.len() as f64);
    }
    Ok(())
}

fn main() {
    if let Err(e) = args().and_then(|a| run(&a)) {
        eprintln!("parsers: {e}");
        std::process::exit(2);
    }
}
