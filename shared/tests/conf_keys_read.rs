//! Every key `conf.rs` accepts is either read by wala's code or listed, with its reason, as
//! accepted and not used ([`wala::documents::conf::UNUSED_KEYS`]), never both: the list `check-config` and
//! docs/configuration.md show stays true to the code.
//!
//! "Read" means the key's `Config` field is accessed (`.field`) somewhere in the code of the
//! library or the binaries, outside `conf.rs` itself, comments and test modules; or that an
//! accessor of `conf.rs` reading it (`pub fn x(&self)` using `self.field`) is called there.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of `text` without comments and without the test module at the end of the file.
fn code_of(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let next = lines.get(i + 1).map(|l| l.trim_start()).unwrap_or("");
        if trimmed.starts_with("#[cfg(test)]")
            && (next.starts_with("mod tests") || next.contains("mod testing"))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The library's and binaries' code, `conf.rs` and the test helpers left out.
fn code() -> String {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["shared/src", "agentd/src", "provision/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut all = String::new();
    for f in files {
        let name = f.to_string_lossy();
        if name.ends_with("shared/src/documents/conf.rs") || name.ends_with("shared/src/base/testing.rs") {
            continue;
        }
        all.push_str(&code_of(&std::fs::read_to_string(&f).expect("read")));
    }
    all
}

/// Whether `code` accesses `.field` (followed by something that is not part of an identifier).
fn reads(code: &str, field: &str) -> bool {
    let needle = format!(".{field}");
    code.match_indices(&needle).any(|(i, _)| {
        code[i + needle.len()..].chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

/// The accessors of `Config` in conf.rs (`pub fn name(&self)`), each with the fields it reads.
fn accessors() -> Vec<(String, String)> {
    let text =
        code_of(&std::fs::read_to_string(workspace().join("shared/src/documents/conf.rs")).expect("conf.rs"));
    let mut out = Vec::new();
    for block in text.split("\nimpl Config {").skip(1) {
        // Up to the end of the impl block: the first line that is a lone `}`.
        let block = block.split("\n}\n").next().unwrap_or("");
        for f in block.split("pub fn ").skip(1) {
            let Some((name, body)) = f.split_once("(&self)") else { continue };
            out.push((name.trim().to_string(), body.to_string()));
        }
    }
    out
}

#[test]
fn every_key_is_read_or_listed_as_unused_with_a_reason() {
    let code = code();
    let accessors = accessors();
    assert!(
        accessors.iter().any(|(n, _)| n == "initial_goal_state_period"),
        "the accessors of conf.rs were not found: {:?}",
        accessors.iter().map(|a| &a.0).collect::<Vec<_>>()
    );
    let mut wrong = Vec::new();
    for k in wala::documents::conf::Config::key_docs() {
        let through_accessor =
            accessors.iter().any(|(name, body)| reads(body, k.field) && reads(&code, name));
        let read = reads(&code, k.field) || through_accessor;
        let listed = wala::documents::conf::UNUSED_KEYS.iter().any(|(key, _)| *key == k.key);
        match (read, listed) {
            (false, false) => wrong.push(format!(
                "{} ({}) is read nowhere: honour it, or add it to UNUSED_KEYS with the reason",
                k.key, k.field
            )),
            (true, true) => wrong.push(format!(
                "{} ({}) is read, but UNUSED_KEYS says wala does not use it: remove it from the list",
                k.key, k.field
            )),
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_unused_list_names_known_keys_with_reasons_and_the_check_notes_them() {
    let known: Vec<&str> = wala::documents::conf::Config::key_docs().iter().map(|k| k.key).collect();
    for (key, why) in wala::documents::conf::UNUSED_KEYS {
        assert!(known.contains(key), "{key} is not a key wala accepts");
        assert!(why.len() > 20, "{key}: say why");
        // Set in a file, it is a note on its line, not a problem.
        let text = format!("# header\n{key}=y\n");
        let loaded = wala::documents::conf::parse(&text, Path::new("/etc/waagent.conf"));
        let notes: Vec<String> = loaded.notes.iter().map(ToString::to_string).collect();
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with(&format!("/etc/waagent.conf:2: {key}: accepted, not used by wala: "))),
            "{key}: {notes:?}"
        );
    }
    for key in wala::documents::conf::RETIRED_KEYS {
        assert!(!known.contains(key), "{key} is both retired and a key");
    }
}

#[test]
fn the_reader_check_sees_reads_and_not_lookalikes() {
    assert!(reads("let p = config.pid_file.as_path();", "pid_file"));
    assert!(reads("c.initial_goal_state_period()", "initial_goal_state_period"));
    assert!(!reads("c.pid_file_path", "pid_file"));
    assert!(!reads("Config { pid_file: x }", "pid_file"));
    let text = "fn a() { c.x; }\n// c.y\n#[cfg(test)]\nmod tests {\n    c.z;\n}\n";
    let code = code_of(text);
    assert!(reads(&code, "x") && !reads(&code, "y") && !reads(&code, "z"), "{code}");
}
