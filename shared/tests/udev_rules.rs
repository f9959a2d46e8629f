//! Checks on our udev rules file `systemd/udev/66-wala-azure-storage.rules`: it is well formed
//! (every line is `KEY{attr}op"value"` pairs, GOTOs land on labels), and it agrees with the
//! discovery code on the ids and models it matches. `udevadm verify` runs too when available
//! (systemd ≥ 254).

#![allow(clippy::unwrap_used)] // a test binary: helpers outside #[test] fns may unwrap too

mod common;

use std::collections::HashSet;
use std::path::PathBuf;

use wala::host::disk::discover::{GEN2_SCSI0_ID, NVME_TEMP_MODELS};

fn rules_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../systemd/udev/66-wala-azure-storage.rules")
}

/// One `KEY op "value"` pair: key (with its `{attr}`), operator, value.
type Pair = (String, String, String);

/// The pairs of one rule line, or an error naming what is wrong.
fn parse_line(line: &str) -> Result<Vec<Pair>, String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let op_at = rest.find(['=', '!', '+', ':']).ok_or(format!("no operator in {rest:?}"))?;
        let key = rest[..op_at].trim().to_string();
        let after = &rest[op_at..];
        let op = ["==", "!=", "+=", "-=", ":=", "="]
            .iter()
            .find(|o| after.starts_with(**o))
            .ok_or("bad operator")?;
        let value_part = after[op.len()..].strip_prefix('"').ok_or(format!("value of {key} not quoted"))?;
        let end = value_part.find('"').ok_or(format!("unterminated value of {key}"))?;
        out.push((key, op.to_string(), value_part[..end].to_string()));
        rest = value_part[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

fn rules() -> Vec<(usize, Vec<Pair>)> {
    let text = std::fs::read_to_string(rules_path()).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, l)| (n + 1, parse_line(l).unwrap_or_else(|e| panic!("line {}: {e}", n + 1))))
        .collect()
}

#[test]
fn rules_are_well_formed_and_gotos_land() {
    let known = [
        "ACTION",
        "SUBSYSTEM",
        "SUBSYSTEMS",
        "KERNEL",
        "KERNELS",
        "ENV",
        "ATTRS",
        "PROGRAM",
        "GOTO",
        "LABEL",
        "SYMLINK",
        "OPTIONS",
    ];
    let mut labels = HashSet::new();
    let mut gotos = Vec::new();
    for (n, rule) in rules() {
        for (key, op, value) in &rule {
            let base = key.split('{').next().unwrap();
            assert!(known.contains(&base), "line {n}: unexpected key {key}");
            assert!(!key.contains('{') || key.ends_with('}'), "line {n}: {key}");
            match base {
                "LABEL" => assert!(labels.insert(value.clone()), "line {n}: duplicate label {value}"),
                "GOTO" => gotos.push((n, value.clone())),
                "SYMLINK" => assert_eq!(op, "+=", "line {n}: links are added, never replaced"),
                _ => {}
            }
        }
    }
    for (n, target) in gotos {
        assert!(labels.contains(&target), "line {n}: GOTO {target} has no LABEL");
    }
}

#[test]
fn rules_agree_with_discovery() {
    let text = std::fs::read_to_string(rules_path()).unwrap();
    assert!(text.contains(&format!("{{{GEN2_SCSI0_ID}}}")), "Gen2 scsi0 id");
    for model in NVME_TEMP_MODELS {
        assert!(text.contains(model), "NVMe temp model {model}");
    }
    let links: Vec<String> = rules()
        .into_iter()
        .flat_map(|(_, r)| r)
        .filter(|(k, _, _)| k == "SYMLINK")
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(links, vec!["disk/azure/$env{WALA_AZURE_NAME}", "disk/azure/$env{WALA_AZURE_NAME}-part%n"]);
    for name in ["\"resource\"", "\"root\""] {
        assert!(text.contains(&format!("ENV{{WALA_AZURE_NAME}}={name}")), "{name}");
    }
}

#[test]
fn parser_rejects_broken_lines() {
    assert!(parse_line("KERNEL==\"sda").is_err());
    assert!(parse_line("KERNEL==sda").is_err());
    assert_eq!(parse_line("A==\"x\", B=\"y\"").unwrap().len(), 2);
}

#[test]
fn udevadm_verify_when_available() {
    let Some(udevadm) = wala::base::cmd::find_program("udevadm") else {
        common::skip("udevadm verify: udevadm is not installed");
        return;
    };
    let out = std::process::Command::new(udevadm).arg("verify").arg(rules_path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Unknown command") || err.contains("unknown command") {
        common::skip("udevadm verify: this udevadm has no verify command");
        return;
    }
    assert!(out.status.success(), "{err}");
}
