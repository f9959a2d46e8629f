//! `collect-logs [--full]` (waagent's `-collect-logs [-full]`): one zip of what support needs to see,
//! without secrets, at `<Lib.Dir>/logcollector/logs.zip` (waagent's path), with a
//! `results.txt` next to it.
//!
//! What goes in, in this order (most useful first, so a size limit drops the least useful):
//! system facts (`/etc/os-release`, the configuration, and on the live root `uname -a`, mounts,
//! `ip addr`, `lsblk`, the kernel command line), agent state under the lib dir, the journal of the
//! `wala*` units, `/var/log/waagent.log`, extension logs (`Extension.LogDir`, newest first), then
//! rotated `waagent.log*` files (and, with `--full`, the distribution's system logs).
//!
//! Secrets are kept out by independent rules: files that hold keys or custom data are never read
//! (`*.prv`, `*.key`, `*.pem`, `*.p7m`, `*.pfx`, `*.p12`, `Certificates.xml`, `CustomData`); any
//! file with a PEM private key block is dropped; `protectedSettings` values in JSON (`*.settings`,
//! goal-state documents, embedded in XML) are replaced with `<redacted>`, and a file where that
//! cannot be done for certain is dropped; SAS signatures (`sig=`) are redacted in every text file,
//! extension output and status included, and a binary extension log is dropped. `ovf-env.xml` goes
//! in with its password scrubbed ([`ovf::scrub_password`]) and its `CustomData` replaced.
//!
//! Every file in the zip is listed in `manifest.txt` with its size; `results.txt` says what was
//! left out and why, which commands ran, and the limits. The total size of the content is bounded
//! ([`Limits`]); a file that does not fit is left out (and listed), and collection goes on with the
//! others.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::base::cmd::{Cmd, Runner};
use crate::base::files::{self, FileError, WriteOptions};
use crate::base::root::HostRoot;
use crate::base::ziparchive::{ZipError, ZipWriter};
use crate::documents::conf::Config;
use crate::documents::extensions::redact::redact_protected_settings;
use crate::documents::ovf;

/// How much is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total uncompressed bytes of collected content.
    pub total: u64,
    /// Larger files contribute only their last `per_file` bytes (logs grow at the end).
    pub per_file: u64,
    /// Most files taken from one directory tree.
    pub max_files_per_tree: usize,
    /// `journalctl -n`.
    pub journal_lines: u32,
    /// Also collect the distribution's system logs.
    pub full: bool,
}

impl Limits {
    /// The default: 32 MiB.
    pub const fn normal() -> Self {
        Self {
            total: 32 << 20,
            per_file: 8 << 20,
            max_files_per_tree: 2000,
            journal_lines: 5000,
            full: false,
        }
    }

    /// `--full`: 256 MiB, more journal, system logs.
    pub const fn full() -> Self {
        Self {
            total: 256 << 20,
            per_file: 64 << 20,
            max_files_per_tree: 10_000,
            journal_lines: 100_000,
            full: true,
        }
    }
}

/// The directory (under the lib dir) and file names waagent uses.
pub const OUTPUT_DIR: &str = "logcollector";
pub const ZIP_NAME: &str = "logs.zip";
pub const RESULTS_NAME: &str = "results.txt";

const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_DEPTH: usize = 6;

/// Files never read because they hold keys, certificates with keys, or custom data.
fn secret_by_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    matches!(ext, "prv" | "key" | "pem" | "p7m" | "pfx" | "p12" | "crt")
        || lower == "certificates.xml"
        || lower.starts_with("customdata")
}

/// Whether `data` holds a PEM private key block (any kind: RSA, EC, PKCS#8, OpenSSH, encrypted).
pub fn contains_private_key(data: &[u8]) -> bool {
    let needle = b"PRIVATE KEY-----";
    data.windows(needle.len()).any(|w| w == needle)
}

/// Replace the text of every `CustomData` element (any namespace prefix) with `redacted`.
/// `None` when an element is not closed.
pub fn redact_custom_data(xml: &str) -> Option<String> {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        rest = &rest[lt..];
        let tag_end = rest.find('>')?;
        let tag = &rest[..=tag_end];
        out.push_str(tag);
        rest = &rest[tag_end + 1..];
        let inner = tag.trim_start_matches('<').trim_end_matches('>');
        if inner.starts_with(['/', '?', '!']) || inner.ends_with('/') {
            continue;
        }
        let qname = inner.split(|c: char| c.is_whitespace()).next().unwrap_or("");
        let local = qname.rsplit(':').next().unwrap_or("");
        if local == "CustomData" {
            let close = format!("</{qname}>");
            let end = rest.find(&close)?;
            out.push_str("redacted");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    Some(out)
}

#[derive(Debug, thiserror::Error)]
pub enum LogCollectError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Zip(#[from] ZipError),
}

impl From<LogCollectError> for crate::error::Cause {
    fn from(e: LogCollectError) -> Self {
        Self::Other(Box::new(e))
    }
}

/// What was collected.
#[derive(Debug, Clone)]
pub struct Collection {
    /// The zip, as a host path (`<Lib.Dir>/logcollector/logs.zip`).
    pub zip: PathBuf,
    /// `results.txt` next to it.
    pub results: PathBuf,
    /// Zip entry names and their sizes (uncompressed), as in `manifest.txt`.
    pub entries: Vec<(String, u64)>,
    /// Paths left out, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Size of the zip file.
    pub zip_size: u64,
}

/// What to do with a file's content. Every text file that goes in has its SAS signatures
/// redacted ([`crate::base::logging::redact_sas`]): extension output and status carry storage URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A system log: its tail when large, dropped if it holds a private key; a binary one
    /// (compressed rotations) goes in as it is.
    Log,
    /// An extension's log (under `Extension.LogDir`): text only, so that its SAS signatures can be
    /// redacted; a binary one is left out.
    ExtensionLog,
    /// Agent state: text only, protectedSettings redacted.
    State,
    /// The OVF environment: password scrubbed, CustomData redacted.
    Ovf,
}

struct Collector<'a> {
    root: &'a HostRoot,
    limits: Limits,
    zip: ZipWriter,
    total: u64,
    entries: Vec<(String, u64)>,
    skipped: Vec<(String, String)>,
    notes: Vec<String>,
    binary_skipped: usize,
}

impl Collector<'_> {
    fn skip(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.skipped.push((what.into(), why.into()));
    }

    fn add(&mut self, name: &str, data: &[u8], note: Option<&str>) -> Result<(), LogCollectError> {
        if self.total + data.len() as u64 > self.limits.total {
            self.skip(name, format!("size limit ({} MiB) reached", self.limits.total >> 20));
            return Ok(());
        }
        self.zip.add(name, data, 0o644)?;
        self.total += data.len() as u64;
        self.entries.push((name.to_string(), data.len() as u64));
        if let Some(n) = note {
            self.notes.push(format!("{name}: {n}"));
        }
        Ok(())
    }

    /// Add the host file `host` (regular files only, never through a symlink), named by its host
    /// path in the zip.
    fn add_file(&mut self, host: &Path, kind: Kind) -> Result<(), LogCollectError> {
        let name = host.to_string_lossy().trim_start_matches('/').to_string();
        self.add_path(&self.root.path(host), &name, kind)
    }

    /// Add the file at `path` (a real path) as `name`.
    fn add_path(&mut self, path: &Path, name: &str, kind: Kind) -> Result<(), LogCollectError> {
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if secret_by_name(&file_name) {
            self.skip(name, "may hold secrets (keys, certificates or custom data)");
            return Ok(());
        }
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                self.skip(name, format!("cannot stat: {e}"));
                return Ok(());
            }
        };
        if self.total + meta.len().min(self.limits.per_file) > self.limits.total {
            self.skip(name, format!("size limit ({} MiB) reached", self.limits.total >> 20));
            return Ok(());
        }
        let (data, truncated) = match read_tail(path, self.limits.per_file) {
            Ok(d) => d,
            Err(e) => {
                self.skip(name, format!("cannot read: {e}"));
                return Ok(());
            }
        };
        if contains_private_key(&data) {
            self.skip(name, "holds a private key");
            return Ok(());
        }
        let data = match kind {
            Kind::Log | Kind::ExtensionLog if data.contains(&0) => {
                if kind == Kind::ExtensionLog {
                    self.skip(name, "binary: SAS signatures in it could not be redacted");
                    return Ok(());
                }
                data
            }
            Kind::Log | Kind::ExtensionLog => {
                // A cut can fall inside a signature, past the `sig=` that marks it: the partial
                // first line goes.
                let text = String::from_utf8_lossy(&data);
                let text = if truncated { text.split_once('\n').map_or("", |(_, rest)| rest) } else { &text };
                crate::base::logging::redact_sas(text).into_bytes()
            }
            Kind::State | Kind::Ovf => {
                if truncated {
                    // A cut could start inside a secret value, past the key that marks it.
                    self.skip(name, "agent state larger than the per-file limit");
                    return Ok(());
                }
                if data.contains(&0) {
                    self.binary_skipped += 1;
                    return Ok(());
                }
                let text = String::from_utf8_lossy(&data);
                let redacted = if kind == Kind::Ovf {
                    ovf::scrub_password(&text).ok().and_then(|t| redact_custom_data(&t))
                } else {
                    Some(text.into_owned())
                };
                match redacted.and_then(|t| redact_protected_settings(&t)) {
                    Some(t) => crate::base::logging::redact_sas(&t).into_bytes(),
                    None => {
                        self.skip(name, "secrets could not be redacted for certain");
                        return Ok(());
                    }
                }
            }
        };
        let note = truncated.then(|| format!("only the last {} bytes of {}", data.len(), meta.len()));
        self.add(name, &data, note.as_deref())
    }

    /// The regular files under the host directory `dir` (depth-bounded, symlinks not followed),
    /// newest first, at most `max_files_per_tree`.
    fn tree(&mut self, dir: &Path, skip_dir: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
        let mut found: Vec<(SystemTime, PathBuf)> = Vec::new();
        let mut stack = vec![(dir.to_path_buf(), 0usize)];
        while let Some((d, depth)) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(self.root.path(&d)) else { continue };
            for e in rd.filter_map(|e| e.ok()) {
                let host = d.join(e.file_name());
                let Ok(m) = e.path().symlink_metadata() else { continue };
                if m.is_dir() && depth + 1 < MAX_DEPTH && !skip_dir(&host) {
                    stack.push((host, depth + 1));
                } else if m.is_file() {
                    found.push((m.modified().unwrap_or(UNIX_EPOCH), host));
                }
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        if found.len() > self.limits.max_files_per_tree {
            let n = found.len() - self.limits.max_files_per_tree;
            self.skip(format!("{} ({n} oldest files)", dir.display()), "file count limit");
            found.truncate(self.limits.max_files_per_tree);
        }
        found.into_iter().map(|(_, p)| p).collect()
    }

    fn command(&mut self, runner: &dyn Runner, name: &str, cmd: Cmd) -> Result<(), LogCollectError> {
        let program = cmd.program().to_string_lossy().into_owned();
        if !runner.exists(&program) {
            self.notes.push(format!("{name}: {program} not found"));
            return Ok(());
        }
        let line = cmd.to_string();
        match runner.output(&cmd.timeout(COMMAND_TIMEOUT)) {
            Ok(out) => {
                let mut data = format!("$ {line}\n").into_bytes();
                data.extend_from_slice(&out.stdout);
                if !out.stderr.is_empty() {
                    data.extend_from_slice(b"\n--- stderr ---\n");
                    data.extend_from_slice(&out.stderr);
                }
                self.notes.push(format!("ran `{line}`: exit {:?}", out.code));
                self.add(name, &data, None)
            }
            Err(e) => {
                self.notes.push(format!("`{line}` failed: {e}"));
                Ok(())
            }
        }
    }
}

/// Read a file, or only its last `max` bytes when it is larger. Returns whether it was cut.
fn read_tail(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let len = f.metadata()?.len();
    let cut = len > max;
    if cut {
        f.seek(SeekFrom::Start(len - max))?;
    }
    let mut data = Vec::with_capacity(len.min(max) as usize);
    f.take(max).read_to_end(&mut data)?;
    Ok((data, cut))
}

/// Collect under `root` into `<Lib.Dir>/logcollector/logs.zip` (written atomically, mode 0600).
/// `config_file` is the configuration file in use (a real path, as `conf::load_or_defaults`
/// reports it); it is stored as `config/<file name>`.
pub fn collect(
    root: &HostRoot,
    runner: &dyn Runner,
    config: &Config,
    config_file: Option<&Path>,
    limits: Limits,
) -> Result<Collection, LogCollectError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut c = Collector {
        root,
        limits,
        zip: ZipWriter::new(now),
        total: 0,
        entries: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
        binary_skipped: 0,
    };
    let lib_dir = config.lib_dir.as_path().to_path_buf();
    let out_dir = lib_dir.join(OUTPUT_DIR);

    // System facts and the configuration.
    c.add_file(Path::new("/etc/os-release"), Kind::Log)?;
    let conf_path = config_file.map_or_else(|| root.path("/etc/waagent.conf"), Path::to_path_buf);
    let conf_name = conf_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !conf_name.is_empty() {
        c.add_path(&conf_path, &format!("config/{conf_name}"), Kind::State)?;
    }
    if root.is_live() {
        c.command(runner, "commands/uname.txt", Cmd::new("uname").arg("-a"))?;
        c.add_file(Path::new("/proc/self/mounts"), Kind::Log)?;
        c.add_file(Path::new("/proc/cmdline"), Kind::Log)?;
        c.command(runner, "commands/ip-addr.txt", Cmd::new("ip").arg("addr"))?;
        c.command(
            runner,
            "commands/lsblk.txt",
            Cmd::new("lsblk").args(["-o", "NAME,SIZE,TYPE,FSTYPE,MOUNTPOINT,MODEL"]),
        )?;
    } else {
        c.notes.push(format!(
            "{} is not the live root: uname, mounts, ip addr and lsblk describe the running system and were not collected",
            root.prefix().display()
        ));
        c.add_file(Path::new("/etc/fstab"), Kind::Log)?;
    }

    // Agent state.
    let state_files = c.tree(&lib_dir, |d| {
        let n = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        d == out_dir || n.starts_with("WALinuxAgent-")
    });
    for f in state_files {
        let kind = if f == lib_dir.join("ovf-env.xml") { Kind::Ovf } else { Kind::State };
        c.add_file(&f, kind)?;
    }

    // The journal of wala's units.
    let lines = limits.journal_lines.to_string();
    if root.is_live() {
        let cmd = Cmd::new("journalctl").args(["-b", "-u", "wala*", "--no-pager", "-n", &lines]);
        c.command(runner, "commands/journal-wala.txt", cmd)?;
    } else if root.path("/var/log/journal").is_dir() {
        let cmd = Cmd::new("journalctl").arg("-D").arg(root.path("/var/log/journal")).args([
            "-u",
            "wala*",
            "--no-pager",
            "-n",
            &lines,
        ]);
        c.command(runner, "commands/journal-wala.txt", cmd)?;
    }

    // Logs.
    c.add_file(Path::new("/var/log/waagent.log"), Kind::Log)?;
    let ext_log_dir = config.extension_log_dir.as_path().to_path_buf();
    for f in c.tree(&ext_log_dir, |_| false) {
        c.add_file(&f, Kind::ExtensionLog)?;
    }
    let mut rotated: Vec<PathBuf> = c
        .tree(Path::new("/var/log"), |_| true)
        .into_iter()
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            n.starts_with("waagent.log") && n != "waagent.log"
        })
        .collect();
    if limits.full {
        for f in
            ["cloud-init.log", "cloud-init-output.log", "syslog", "messages", "boot.log", "dmesg", "kern.log"]
        {
            rotated.push(Path::new("/var/log").join(f));
        }
    }
    for f in rotated {
        c.add_file(&f, Kind::Log)?;
    }

    // results.txt and manifest.txt.
    if c.binary_skipped > 0 {
        c.notes.push(format!(
            "{} binary file(s) under {} not collected",
            c.binary_skipped,
            lib_dir.display()
        ));
    }
    let results = render_results(&c, limits);
    c.zip.add(RESULTS_NAME, results.as_bytes(), 0o644)?;
    c.entries.push((RESULTS_NAME.to_string(), results.len() as u64));
    let manifest: String = c.entries.iter().map(|(n, s)| format!("{s}\t{n}\n")).collect();
    c.zip.add("manifest.txt", manifest.as_bytes(), 0o644)?;
    c.entries.push(("manifest.txt".into(), manifest.len() as u64));

    let dir = root.path(&out_dir);
    files::ensure_dir(&dir, 0o700)?;
    let zip_bytes = c.zip.finish()?;
    files::write_atomic(&dir.join(ZIP_NAME), &zip_bytes, WriteOptions::mode(0o600))?;
    files::write_atomic(&dir.join(RESULTS_NAME), results.as_bytes(), WriteOptions::mode(0o600))?;
    Ok(Collection {
        zip: out_dir.join(ZIP_NAME),
        results: out_dir.join(RESULTS_NAME),
        entries: c.entries,
        skipped: c.skipped,
        zip_size: zip_bytes.len() as u64,
    })
}

fn render_results(c: &Collector<'_>, limits: Limits) -> String {
    let mut s = format!(
        "wala-{} log collection ({} mode)\nlimits: {} MiB in total, {} MiB per file (larger files: their end)\n\
         collected: {} file(s), {} bytes\n",
        crate::VERSION,
        if limits.full { "full" } else { "normal" },
        limits.total >> 20,
        limits.per_file >> 20,
        c.entries.len(),
        c.total
    );
    s.push_str("\nleft out:\n");
    for (what, why) in &c.skipped {
        s.push_str(&format!("  {what}: {why}\n"));
    }
    s.push_str("\nnotes:\n");
    for n in &c.notes {
        s.push_str(&format!("  {n}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_data_is_redacted_with_any_prefix() {
        let xml =
            "<a><ns1:CustomData>U0VDUkVU</ns1:CustomData><CustomData x=\"1\">X</CustomData><CustomData/></a>";
        assert_eq!(
            redact_custom_data(xml).unwrap(),
            "<a><ns1:CustomData>redacted</ns1:CustomData><CustomData x=\"1\">redacted</CustomData><CustomData/></a>"
        );
        assert_eq!(redact_custom_data("<CustomData>open"), None);
        assert_eq!(redact_custom_data("<CustomData"), None);
    }

    #[test]
    fn large_state_files_are_left_out_not_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let value = "S".repeat(4096);
        std::fs::create_dir_all(dir.path().join("var/lib/waagent")).expect("mkdir");
        std::fs::write(
            dir.path().join("var/lib/waagent/0.settings"),
            format!("{{\"protectedSettings\":\"{value}\"}}"),
        )
        .expect("write");
        let limits = Limits { per_file: 1024, ..Limits::normal() };
        let c = collect(&root, &crate::base::cmd::FakeRunner::new(), &Config::default(), None, limits)
            .expect("collect");
        assert!(!c.entries.iter().any(|(n, _)| n.ends_with("0.settings")), "{:?}", c.entries);
        assert!(c.skipped.iter().any(|(n, why)| n.ends_with("0.settings") && why.contains("per-file limit")));
    }

    /// Issue #21 (item 5): extension output goes into the zip (which is uploaded to the
    /// HostGAPlugin) with its SAS signatures redacted: the extension's own log, the command output
    /// the agent keeps in the handler directory, its status file, and the end of a log too large
    /// to go in whole even when the cut falls inside a signature. A binary extension log, which
    /// cannot be redacted, is left out.
    #[test]
    fn sas_signatures_in_extension_output_are_redacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let sas =
            "https://acct.blob.core.windows.net/c/script.sh?sv=2018-03-28&sr=b&sp=r&sig=SIGNATURE%2Bsecret";
        let write = |rel: &str, data: &[u8]| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, data).expect("write");
        };
        let ext = "var/log/azure/Microsoft.Azure.Extensions.CustomScript";
        write(&format!("{ext}/handler.log"), format!("downloading {sas}\ndone\n").as_bytes());
        let base = "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.6";
        write(&format!("{base}/.wala-enable.stdout"), format!("curl {sas} failed\n").as_bytes());
        write(&format!("{base}/status/0.status"), format!("[{{\"message\":\"{sas}\"}}]").as_bytes());
        // Larger than the per-file limit, cut inside the signature of its first URL.
        let mut long = format!("x {sas}\n").into_bytes();
        let cut_at = long.len() - 8;
        long.extend(std::iter::repeat_n(b'.', 100));
        long.extend(format!("\nlast {sas}\n").as_bytes());
        let per_file = (long.len() - cut_at) as u64;
        write(&format!("{ext}/long.log"), &long);
        write(&format!("{ext}/old.log.gz"), b"\x1f\x8b\x08\x00sig=SIGNATURE");
        let limits = Limits { per_file, ..Limits::normal() };
        let c = collect(&root, &crate::base::cmd::FakeRunner::new(), &Config::default(), None, limits)
            .expect("collect");
        let zip = std::fs::read(root.path(&c.zip)).expect("zip");
        let entries = crate::base::ziparchive::read_all(&zip).expect("read back");
        let text = |suffix: &str| {
            let e = entries.iter().find(|e| e.name.ends_with(suffix)).unwrap_or_else(|| panic!("{suffix}"));
            String::from_utf8_lossy(&e.data).into_owned()
        };
        for f in ["handler.log", ".wala-enable.stdout", "status/0.status", "long.log"] {
            let t = text(f);
            assert!(t.contains("&sig=***REDACTED***"), "{f}: {t}");
            assert!(!t.contains("SIGNATURE") && !t.contains("secret"), "{f}: {t}");
        }
        assert!(text("long.log").starts_with("...."), "the partial first line is dropped");
        assert!(!entries.iter().any(|e| e.name.ends_with("old.log.gz")));
        assert!(c.skipped.iter().any(|(n, why)| n.ends_with("old.log.gz") && why.contains("binary")));
    }

    #[test]
    fn secret_names() {
        for n in
            ["ABC.prv", "TransportPrivate.pem", "Certificates.p7m", "Certificates.xml", "CustomData", "x.KEY"]
        {
            assert!(secret_by_name(n), "{n}");
        }
        for n in ["GoalState.1.xml", "waagent.log", "0.settings", "HandlerState"] {
            assert!(!secret_by_name(n), "{n}");
        }
        assert!(contains_private_key(b"x\n-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(!contains_private_key(b"-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn redaction_never_panics_on_random_text() {
        let alphabet =
            ["protectedSettings", "\"", ":", " ", "&quot;", "\\", "null", "<", ">", "CustomData", "/", "x"];
        let mut seed = 0x1234_5678_9abc_def1_u64;
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push_str(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let _ = redact_protected_settings(&s);
            let _ = redact_custom_data(&s);
        }
    }
}
