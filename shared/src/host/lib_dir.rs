//! What the daemon keeps in `Lib.Dir` for others to read: waagent's files at the top of the
//! directory, and its goal-state history (`history/`). Names, contents and retention follow
//! waagent (`common/protocol/goal_state.py`, `common/utils/archive.py`, `ga/update.py`); the
//! readers are extensions, support tools and scripts (docs/lib-dir.md lists them).
//!
//! At the top of `Lib.Dir`, one of each, replaced on every new WireServer goal state:
//!
//! | file | content | mode |
//! |---|---|---|
//! | `GoalState.<n>.xml` | the goal state of incarnation `n`, as fetched | 0644 |
//! | `GoalState.1.xml` | the same document (waagent keeps a file of this name whatever the incarnation) | 0644 |
//! | `Incarnation` | `n` | 0644 |
//! | `HostingEnvironmentConfig.xml` | as fetched (the Linux Diagnostic extension reads `Deployment@name`) | 0644 |
//! | `SharedConfig.xml` | as fetched | 0644 |
//! | `ExtensionsConfig.<n>.xml` | as fetched, SAS queries and protected settings redacted | 0600 |
//! | `waagent_status.json` | the last status document uploaded (every upload) | 0600 |
//!
//! Older `GoalState.<m>.xml` and `ExtensionsConfig.<m>.xml` are removed, so each name exists once.
//! The certificates (`<THUMBPRINT>.crt/.prv`, `Certificates.pem`, `Certificates.json`) are written
//! by [`crate::crypto::openssl_certs`].
//!
//! `history/<UTC YYYY-MM-DDTHH-MM-SS>__<incarnation>[-<vmSettings ETag>]/` (0700, files 0600) gets
//! one entry for each poll in which the goal state or the vmSettings changed, as waagent's:
//! `GoalState.xml`, `HostingEnvironmentConfig.xml`, `SharedConfig.xml`, `ExtensionsConfig.xml`
//! and `VmSettings.json` (both redacted), `Certificates.json` (thumbprints only) and
//! `waagent_status.json`. When a new entry starts, every older directory is zipped into
//! `<name>.zip` (log collectors gather `history/*.zip`), and only the newest
//! [`MAX_HISTORY_ENTRIES`] entries are kept (waagent's count), the ones before the current entry
//! within [`MAX_HISTORY_BYTES`] (waagent has no byte bound, and documents may reach 8 MiB each).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::base::files::{self, write_atomic, FileError, WriteOptions};

/// The history directory under `Lib.Dir`.
pub const HISTORY_DIR: &str = "history";
/// Entries (directories and zips) kept in the history, as waagent's `_MAX_ARCHIVED_STATES`.
pub const MAX_HISTORY_ENTRIES: usize = 50;
/// Bytes the entries before the current one may hold.
pub const MAX_HISTORY_BYTES: u64 = 32 * 1024 * 1024;
/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Entries (directories and zips).
    pub entries: usize,
    /// Bytes the entries before the current one may hold (the current one is kept whatever its
    /// size, and bounded by the document limits).
    pub bytes: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self { entries: MAX_HISTORY_ENTRIES, bytes: MAX_HISTORY_BYTES }
    }
}

/// What replaces a secret in a saved document (waagent's marker, valid inside XML and JSON).
pub const REDACTED: &str = "***REDACTED***";

/// Files at the top of `Lib.Dir`.
pub const HOSTING_ENV_FILE: &str = "HostingEnvironmentConfig.xml";
pub const SHARED_CONFIG_FILE: &str = "SharedConfig.xml";
pub const INCARNATION_FILE: &str = "Incarnation";
pub const STATUS_FILE: &str = "waagent_status.json";
/// waagent ≥ 2.8 writes a file of this name on every goal state, whatever the incarnation, for
/// "internal components" that depend on it.
pub const GOAL_STATE_FIXED_FILE: &str = "GoalState.1.xml";

/// Names inside a history entry.
pub mod history_file {
    pub const GOAL_STATE: &str = "GoalState.xml";
    pub const HOSTING_ENV: &str = "HostingEnvironmentConfig.xml";
    pub const SHARED_CONFIG: &str = "SharedConfig.xml";
    pub const EXTENSIONS_CONFIG: &str = "ExtensionsConfig.xml";
    pub const VM_SETTINGS: &str = "VmSettings.json";
    pub const CERTIFICATES: &str = "Certificates.json";
    pub const STATUS: &str = "waagent_status.json";
}

/// `GoalState.<n>.xml`.
pub fn goal_state_file(incarnation: u64) -> String {
    format!("GoalState.{incarnation}.xml")
}

/// `ExtensionsConfig.<n>.xml`.
pub fn extensions_config_file(incarnation: u64) -> String {
    format!("ExtensionsConfig.{incarnation}.xml")
}

/// The documents of one WireServer goal state, as fetched (the ExtensionsConfig already
/// redacted with [`redact`]).
#[derive(Debug, Clone, Copy)]
pub struct Documents<'a> {
    pub incarnation: u64,
    pub goal_state: &'a str,
    pub hosting_env: Option<&'a str>,
    pub shared_config: Option<&'a str>,
    pub extensions_config_redacted: Option<&'a str>,
}

/// Write the current goal state's files at the top of `lib` (a host path) and remove the
/// numbered files of other incarnations.
pub fn write_current(lib: &Path, docs: &Documents<'_>) -> Result<(), FileError> {
    files::ensure_dir(lib, 0o700)?;
    let public = WriteOptions::mode(0o644);
    let n = docs.incarnation;
    write_atomic(&lib.join(goal_state_file(n)), docs.goal_state.as_bytes(), public)?;
    if n != 1 {
        write_atomic(&lib.join(GOAL_STATE_FIXED_FILE), docs.goal_state.as_bytes(), public)?;
    }
    write_atomic(&lib.join(INCARNATION_FILE), n.to_string().as_bytes(), public)?;
    if let Some(text) = docs.hosting_env {
        write_atomic(&lib.join(HOSTING_ENV_FILE), text.as_bytes(), public)?;
    }
    if let Some(text) = docs.shared_config {
        write_atomic(&lib.join(SHARED_CONFIG_FILE), text.as_bytes(), public)?;
    }
    let ext_name = extensions_config_file(n);
    if let Some(text) = docs.extensions_config_redacted {
        write_atomic(&lib.join(&ext_name), text.as_bytes(), WriteOptions::mode(0o600))?;
    }
    // One of each name: the numbered files of other incarnations go (and an ExtensionsConfig
    // that is no longer part of the goal state).
    let keep_gs = [goal_state_file(n), GOAL_STATE_FIXED_FILE.to_string()];
    let keep_ext = docs.extensions_config_redacted.map(|_| ext_name);
    for entry in fs::read_dir(lib).map_err(|e| FileError::new("list", lib, e))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = (numbered(&name, "GoalState.", ".xml") && !keep_gs.contains(&name))
            || (numbered(&name, "ExtensionsConfig.", ".xml") && keep_ext.as_deref() != Some(name.as_str()));
        if stale && entry.file_type().is_ok_and(|t| t.is_file()) {
            fs::remove_file(entry.path()).map_err(|e| FileError::new("remove", entry.path(), e))?;
        }
    }
    Ok(())
}

/// `<prefix><digits><suffix>`.
fn numbered(name: &str, prefix: &str, suffix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|r| r.strip_suffix(suffix))
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Write `waagent_status.json` at the top of `lib` and, when given, into the current history
/// entry.
pub fn write_status(lib: &Path, history: Option<&History>, json: &[u8]) -> Result<(), FileError> {
    write_atomic(&lib.join(STATUS_FILE), json, WriteOptions::mode(0o600))?;
    if let Some(h) = history {
        h.save(history_file::STATUS, json)?;
    }
    Ok(())
}

/// `text` (an ExtensionsConfig or vmSettings document) with every `protectedSettings` value and
/// the query of every URL carrying a SAS token replaced by [`REDACTED`], as waagent saves them.
/// `protected` are the protected settings the parser found: none of them may be left. `None`
/// when the document cannot be redacted for certain (the caller then saves nothing): a secret is
/// left, or the redaction broke the document (an XML or JSON document that no longer is one, as
/// when a value's closing quote was really markup's).
pub fn redact(text: &str, protected: &[&str]) -> Option<String> {
    let out = crate::documents::extensions::redact::redact_protected_settings_as(text, REDACTED)?;
    let out = redact_sas_urls(&out);
    let leaked =
        protected.iter().any(|p| p.len() >= 4 && out.contains(p)) || find_ascii_ci(&out, "sig=").is_some();
    let is_xml = |t: &str| crate::documents::xml::parse_platform(t).is_ok();
    let is_json = |t: &str| serde_json::from_str::<serde_json::Value>(t).is_ok();
    let broken = (is_xml(text) && !is_xml(&out)) || (is_json(text) && !is_json(&out));
    (!leaked && !broken).then_some(out)
}

/// Query keys that mark a URL's query as a SAS token.
const SAS_KEYS: [&str; 8] = ["sv", "st", "se", "sr", "sp", "sip", "spr", "sig"];

/// Replace the query of every `http(s)://` URL that carries a SAS token with [`REDACTED`]. A URL
/// ends at white space, a quote, `<`, `>` or `\` (JSON escapes), so it works inside XML text,
/// XML attributes and JSON strings; `&amp;` separates parameters as `&` does.
pub fn redact_sas_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url(rest) {
        out.push_str(&rest[..start]);
        let url_and_more = &rest[start..];
        let end = url_and_more
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '\\'))
            .unwrap_or(url_and_more.len());
        let url = &url_and_more[..end];
        match url.find('?') {
            Some(q) if is_sas_query(&url[q + 1..]) => {
                out.push_str(&url[..=q]);
                out.push_str(REDACTED);
            }
            _ => out.push_str(url),
        }
        rest = &url_and_more[end..];
    }
    out.push_str(rest);
    out
}

fn find_url(text: &str) -> Option<usize> {
    [find_ascii_ci(text, "https://"), find_ascii_ci(text, "http://")].into_iter().flatten().min()
}

fn is_sas_query(query: &str) -> bool {
    // Every parameter, after `&`, `&amp;` or a second `?` (a URL with two cannot hide one).
    query.replace("&amp;", "&").split(['&', '?']).any(|param| {
        let key = param.split('=').next().unwrap_or("");
        param.len() > key.len() + 1 && SAS_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k))
    })
}

fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    let n = needle.len();
    haystack.as_bytes().windows(n).position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The name of a history entry: `YYYY-MM-DDTHH-MM-SS__<tag>` in UTC, as waagent's. Characters
/// other than letters, digits, `-` and `_` in `tag` become `_`, and it is cut to 64 characters,
/// so the name is always one plain path component.
pub fn entry_name(now: SystemTime, tag: &str) -> String {
    let ts = crate::base::logging::timestamp(now);
    let ts: String = ts[..19].chars().map(|c| if c == ':' { '-' } else { c }).collect();
    let tag: String = tag
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    if tag.is_empty() {
        ts
    } else {
        format!("{ts}__{tag}")
    }
}

/// Whether `name` is a history entry (waagent's current and legacy names: a timestamp, then
/// anything), with `.zip` for archived ones.
fn is_entry_name(name: &str) -> bool {
    let b = name.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let sep = |i: usize, set: &[u8]| b.get(i).is_some_and(|c| set.contains(c));
    digits(0..4)
        && sep(4, b"-")
        && digits(5..7)
        && sep(7, b"-")
        && digits(8..10)
        && sep(10, b"T")
        && digits(11..13)
        && sep(13, b"-:")
        && digits(14..16)
        && sep(16, b"-:")
        && digits(17..19)
        && !name.contains('/')
}

/// The current history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    dir: PathBuf,
}

impl History {
    /// Start an entry for `now` and `tag` under `lib/history` (a second start with the same name
    /// reuses the directory), zip every older directory and drop the oldest entries beyond the
    /// bounds. Archiving and pruning problems are logged, not returned: the entry is usable.
    pub fn start(lib: &Path, now: SystemTime, tag: &str) -> Result<Self, FileError> {
        Self::start_bounded(lib, now, tag, Bounds::default())
    }

    /// [`History::start`] with other bounds (tests).
    pub fn start_bounded(lib: &Path, now: SystemTime, tag: &str, bounds: Bounds) -> Result<Self, FileError> {
        let root = lib.join(HISTORY_DIR);
        files::ensure_dir(&root, 0o700)?;
        let dir = root.join(entry_name(now, tag));
        files::ensure_dir(&dir, 0o700)?;
        let history = Self { dir };
        history.archive_and_prune(&root, bounds);
        Ok(history)
    }

    /// The entry's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Save `data` as `name` (one plain file name) in the entry, mode 0600.
    pub fn save(&self, name: &str, data: &[u8]) -> Result<(), FileError> {
        if name.contains('/') || name.starts_with('.') || name.is_empty() {
            return Err(FileError::new(
                "save",
                self.dir.join(name),
                std::io::Error::other("not a plain file name"),
            ));
        }
        write_atomic(&self.dir.join(name), data, WriteOptions::mode(0o600))
    }

    fn archive_and_prune(&self, root: &Path, bounds: Bounds) {
        for (path, _) in entries(root) {
            if path != self.dir && path.is_dir() {
                if let Err(e) = archive(&path) {
                    log::warn!("goal-state history: {e}");
                }
            }
        }
        // Newest first; the current entry is always kept.
        let mut all = entries(root);
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        let mut kept = 0usize;
        let mut bytes = 0u64;
        for (path, _) in all {
            let size = tree_size(&path);
            let current = path == self.dir;
            if current || (kept < bounds.entries && bytes + size <= bounds.bytes) {
                kept += 1;
                bytes += size;
                continue;
            }
            let removed = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            if let Err(e) = removed {
                log::warn!("goal-state history: remove {}: {e}", path.display());
            }
        }
    }
}

/// History entries (directories and zips, never symlinks) with their modification times.
fn entries(root: &Path) -> Vec<(PathBuf, SystemTime)> {
    let Ok(rd) = fs::read_dir(root) else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e.path().symlink_metadata().ok()?;
            let ok = (meta.is_dir() && is_entry_name(&name))
                || (meta.is_file() && name.strip_suffix(".zip").is_some_and(is_entry_name));
            ok.then(|| (e.path(), meta.modified().unwrap_or(UNIX_EPOCH)))
        })
        .collect()
}

fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path).map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum()).unwrap_or(0)
}

/// Largest file put into an archive: what a history entry holds is bounded by the document
/// limits (8 MiB at most); anything larger is not ours and is left out.
const MAX_ARCHIVED_FILE: u64 = 16 * 1024 * 1024;

/// Zip `dir`'s regular files into `<dir>.zip` (written atomically, 0600, with the directory's
/// modification time, so entries keep their order), then remove `dir`.
fn archive(dir: &Path) -> Result<(), String> {
    let mtime = dir.symlink_metadata().and_then(|m| m.modified()).unwrap_or(UNIX_EPOCH);
    let secs = mtime.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    let mut zip = crate::base::ziparchive::ZipWriter::new(secs);
    let mut names: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| format!("list {}: {e}", dir.display()))?
        .flatten()
        .filter(|e| e.path().symlink_metadata().is_ok_and(|m| m.is_file() && m.len() <= MAX_ARCHIVED_FILE))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    names.sort();
    for (name, path) in &names {
        let data = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
        zip.add(name, &data, 0o600).map_err(|e| e.to_string())?;
    }
    let bytes = zip.finish().map_err(|e| e.to_string())?;
    let mut zip_name = dir.as_os_str().to_owned();
    zip_name.push(".zip");
    let zip_path = PathBuf::from(zip_name);
    write_atomic(&zip_path, &bytes, WriteOptions::mode(0o600)).map_err(|e| e.to_string())?;
    if let Err(e) = fs::File::open(&zip_path).and_then(|f| f.set_modified(mtime)) {
        log::debug!("goal-state history: set the time of {}: {e}", zip_path.display());
    }
    fs::remove_dir_all(dir).map_err(|e| format!("remove {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn entry_names_are_waagents_and_one_path_component() {
        assert_eq!(entry_name(at(1_700_000_000), "7"), "2023-11-14T22-13-20__7");
        assert_eq!(entry_name(at(1_700_000_000), "7-123"), "2023-11-14T22-13-20__7-123");
        assert_eq!(entry_name(at(0), "../x\"y"), "1970-01-01T00-00-00_____x_y");
        assert_eq!(entry_name(at(0), ""), "1970-01-01T00-00-00");
        assert!(is_entry_name("2023-11-14T22-13-20__7"));
        assert!(is_entry_name("2018-04-06T08:21:37.142697_incarnation_3"));
        assert!(!is_entry_name("GoalState.xml"));
        assert!(!is_entry_name("2023-11-14"));
    }

    #[test]
    fn numbered_names() {
        assert!(numbered("GoalState.12.xml", "GoalState.", ".xml"));
        assert!(!numbered("GoalState.xml", "GoalState.", ".xml"));
        assert!(!numbered("GoalState.1a.xml", "GoalState.", ".xml"));
    }

    #[test]
    fn sas_queries_are_redacted_in_xml_and_json_and_plain_urls_are_kept() {
        let xml = "<StatusUploadBlob>https://a.blob/x.status?sr=b&amp;sp=rw&amp;sig=abc</StatusUploadBlob>\
                   <Plugin location=\"https://m/manifest.xml\" />";
        assert_eq!(
            redact_sas_urls(xml),
            "<StatusUploadBlob>https://a.blob/x.status?***REDACTED***</StatusUploadBlob>\
             <Plugin location=\"https://m/manifest.xml\" />"
        );
        let json = r#"{"statusUploadBlob":{"value":"https://a/b?sv=2018&sig=x"},"u":"http://h/p?q=1"}"#;
        assert_eq!(
            redact_sas_urls(json),
            r#"{"statusUploadBlob":{"value":"https://a/b?***REDACTED***"},"u":"http://h/p?q=1"}"#
        );
        assert_eq!(redact_sas_urls("HTTPS://h/p?X=1&SIG=2 end"), "HTTPS://h/p?***REDACTED*** end");
        assert_eq!(redact_sas_urls("https://h/p?x=1?sig=2"), "https://h/p?***REDACTED***");
    }

    #[test]
    fn redaction_refuses_what_it_cannot_clean() {
        let ok = r#"<R>{"protectedSettings":"MIIBsecret","publicSettings":{}}</R>"#;
        let red = redact(ok, &["MIIBsecret"]).expect("redacted");
        assert_eq!(red, r#"<R>{"protectedSettings":"***REDACTED***","publicSettings":{}}</R>"#);
        // The parser found a protected value the text redaction did not remove.
        assert_eq!(redact("<P>MIIBsecret</P>", &["MIIBsecret"]), None);
        // A signature outside any URL.
        assert_eq!(redact("token sig=abc", &[]), None);
    }

    fn lib() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    #[test]
    fn current_files_replace_other_incarnations() {
        let dir = lib();
        let l = dir.path();
        for stale in ["GoalState.3.xml", "ExtensionsConfig.3.xml", "GoalState.xml", "ExtensionsConfig.9.txt"]
        {
            fs::write(l.join(stale), "old").expect("write");
        }
        let docs = Documents {
            incarnation: 4,
            goal_state: "<GoalState>4</GoalState>",
            hosting_env: Some("<HostingEnvironmentConfig/>"),
            shared_config: Some("<SharedConfig/>"),
            extensions_config_redacted: Some("<Extensions/>"),
        };
        write_current(l, &docs).expect("write");
        let mut names: Vec<String> = fs::read_dir(l)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "ExtensionsConfig.4.xml",
                "ExtensionsConfig.9.txt",
                "GoalState.1.xml",
                "GoalState.4.xml",
                "GoalState.xml",
                "HostingEnvironmentConfig.xml",
                "Incarnation",
                "SharedConfig.xml"
            ]
        );
        assert_eq!(fs::read_to_string(l.join("GoalState.1.xml")).unwrap(), "<GoalState>4</GoalState>");
        assert_eq!(fs::read_to_string(l.join("Incarnation")).unwrap(), "4");
        assert_eq!(files::mode_and_owner(&l.join("ExtensionsConfig.4.xml")).unwrap().0, 0o600);
        assert_eq!(files::mode_and_owner(&l.join("HostingEnvironmentConfig.xml")).unwrap().0, 0o644);
        // A goal state without ExtensionsConfig leaves none behind.
        write_current(l, &Documents { incarnation: 5, extensions_config_redacted: None, ..docs })
            .expect("write");
        assert!(!l.join("ExtensionsConfig.4.xml").exists());
        assert!(!l.join("GoalState.4.xml").exists());
        assert!(l.join("GoalState.5.xml").exists() && l.join("GoalState.1.xml").exists());
    }

    #[test]
    fn history_archives_older_entries_and_keeps_fifty() {
        let dir = lib();
        let l = dir.path();
        let mut last = None;
        for i in 0..60u64 {
            let h = History::start(l, at(1_700_000_000 + i), &i.to_string()).expect("start");
            h.save(history_file::GOAL_STATE, format!("<GoalState>{i}</GoalState>").as_bytes()).expect("save");
            // The entry's time, as if the polls had been a second apart.
            set_mtime(h.dir(), at(1_700_000_000 + i));
            last = Some(h);
        }
        let last = last.unwrap();
        let names: Vec<String> = fs::read_dir(l.join(HISTORY_DIR))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), MAX_HISTORY_ENTRIES, "{names:?}");
        let dirs: Vec<&String> = names.iter().filter(|n| !n.ends_with(".zip")).collect();
        assert_eq!(dirs, [&entry_name(at(1_700_000_059), "59")], "only the current entry is a directory");
        assert_eq!(last.dir().file_name().unwrap().to_string_lossy(), entry_name(at(1_700_000_059), "59"));
        let oldest_kept = format!("{}.zip", entry_name(at(1_700_000_010), "10"));
        assert!(names.contains(&oldest_kept), "{names:?}");
        let zip = fs::read(l.join(HISTORY_DIR).join(&oldest_kept)).unwrap();
        let entries = crate::base::ziparchive::read_all(&zip).expect("zip");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, "GoalState.xml");
        assert_eq!(entries[0].data, b"<GoalState>10</GoalState>");
        assert_eq!(files::mode_and_owner(&l.join(HISTORY_DIR)).unwrap().0, 0o700);
        assert_eq!(files::mode_and_owner(last.dir()).unwrap().0, 0o700);
        assert_eq!(files::mode_and_owner(&last.dir().join("GoalState.xml")).unwrap().0, 0o600);
    }

    #[test]
    fn history_is_bounded_in_bytes_but_keeps_the_current_entry() {
        let dir = lib();
        let l = dir.path();
        let bounds = Bounds { entries: 50, bytes: 64 * 1024 };
        // Incompressible (xorshift), so each zip is about as large as its directory.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        for i in 0..5u64 {
            let h = History::start_bounded(l, at(1_000 + i), &i.to_string(), bounds).expect("start");
            h.save(history_file::VM_SETTINGS, &noise(20 * 1024)).expect("save");
            set_mtime(h.dir(), at(1_000 + i));
        }
        let mut kept: Vec<String> = entries(&l.join(HISTORY_DIR))
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        // When entry 4 started, the three before it (20 KiB each) fitted in 64 KiB, a fourth did
        // not: the oldest went. The current entry comes on top of the bound.
        assert_eq!(
            kept,
            [
                format!("{}.zip", entry_name(at(1_001), "1")),
                format!("{}.zip", entry_name(at(1_002), "2")),
                format!("{}.zip", entry_name(at(1_003), "3")),
                entry_name(at(1_004), "4"),
            ]
        );
        // A current entry larger than the whole budget is still kept, alone.
        let h = History::start_bounded(l, at(1_005), "5", bounds).expect("start");
        h.save(history_file::VM_SETTINGS, &noise(80 * 1024)).expect("save");
        let h = History::start_bounded(l, at(1_006), "6", Bounds { entries: 50, bytes: 1 }).expect("start");
        assert_eq!(entries(&l.join(HISTORY_DIR)).len(), 1);
        assert!(h.dir().is_dir());
    }

    #[test]
    fn status_goes_to_the_top_and_the_current_entry() {
        let dir = lib();
        let h = History::start(dir.path(), at(5), "1").expect("start");
        write_status(dir.path(), Some(&h), b"{\"version\":\"1.1\"}").expect("status");
        assert_eq!(fs::read(dir.path().join(STATUS_FILE)).unwrap(), b"{\"version\":\"1.1\"}");
        assert_eq!(fs::read(h.dir().join(history_file::STATUS)).unwrap(), b"{\"version\":\"1.1\"}");
        assert_eq!(files::mode_and_owner(&dir.path().join(STATUS_FILE)).unwrap().0, 0o600);
        assert!(h.save("../x", b"no").is_err());
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        let f = fs::File::open(path).expect("open");
        f.set_modified(t).expect("mtime");
    }
}
