//! One installed handler on disk, as waagent lays it out (wire.md §9): the package in
//! `<Lib.Dir>/<Name>-<Version>/`, with `HandlerManifest.json`, `HandlerEnvironment.json`,
//! `config/` (settings files, `HandlerState`, `HandlerStatus`), `status/` (the extension's status
//! files) and `heartbeat.log`; logs in `<Extension.LogDir>/<Name>/`.
//!
//! Paths are host paths already joined to the [`HostRoot`](crate::base::root::HostRoot): what the
//! extension sees in `HandlerEnvironment.json` is where the files really are.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::base::files::{ensure_dir, write_atomic, FileError, WriteOptions};
use crate::base::limits::{self, Document};
use crate::documents::extensions::extensions_goal_state::{Extension, ExtensionSettings};
use crate::documents::extensions::handler_environment::{render_handler_environment, HandlerEnvironment};
use crate::documents::extensions::handler_manifest::{parse_handler_manifest, HandlerManifest};
use crate::documents::extensions::names::{self, NameError};
use crate::documents::extensions::status::{
    parse_heartbeat, parse_status_file, ExtensionStatus, Heartbeat, StatusFileError,
};
use crate::documents::extensions::FlexibleVersion;

/// `config/HandlerState` (plain text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerState {
    NotInstalled,
    Installed,
    Enabled,
    FailedUpgrade,
}

impl HandlerState {
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerState::NotInstalled => "NotInstalled",
            HandlerState::Installed => "Installed",
            HandlerState::Enabled => "Enabled",
            HandlerState::FailedUpgrade => "FailedUpgrade",
        }
    }

    /// A missing or unknown value reads as `NotInstalled`.
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            "Installed" => HandlerState::Installed,
            "Enabled" => HandlerState::Enabled,
            "FailedUpgrade" => HandlerState::FailedUpgrade,
            _ => HandlerState::NotInstalled,
        }
    }
}

/// `config/HandlerStatus`: waagent's `ExtHandlerStatus` data contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerStatusFile {
    pub name: String,
    pub version: String,
    /// `Ready` or `NotReady`.
    pub status: String,
    pub code: i64,
    pub message: Option<String>,
    #[serde(default)]
    pub supports_multi_config: bool,
    #[serde(default)]
    pub extension_status: Option<serde_json::Value>,
}

/// Why a handler file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    File(#[from] FileError),
    #[error("no HandlerManifest.json in the package {0}")]
    NoManifest(PathBuf),
    #[error("{path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    /// A file name would be built from a name the platform does not use.
    #[error("{0}")]
    Name(#[from] NameError),
}

/// One handler version on disk. Made only by [`HandlerDir::new`], which checks the name and
/// version ([`names`](crate::documents::extensions::names)), so every path below is inside `Lib.Dir` or `Extension.LogDir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerDir {
    name: String,
    version: String,
    /// `<lib>/<Name>-<Version>`.
    base: PathBuf,
    /// `<log dir>/<Name>`.
    log_dir: PathBuf,
    /// `<lib>/<Name>__<Version>.zip`.
    zip: PathBuf,
}

impl HandlerDir {
    /// `lib` and `log_root` are `Lib.Dir` and `Extension.LogDir` joined to the host root. A name
    /// or version the platform does not use is refused: nothing is built from it.
    pub fn new(lib: &Path, log_root: &Path, name: &str, version: &str) -> Result<Self, NameError> {
        names::check_handler_name(name)?;
        names::check_version(version)?;
        Ok(Self {
            name: name.to_string(),
            version: version.to_string(),
            base: names::join_under(lib, &format!("{name}-{version}"))?,
            log_dir: names::join_under(log_root, name)?,
            zip: names::join_under(lib, &format!("{name}__{version}.zip"))?,
        })
    }

    /// The handler's name (`Microsoft.Azure.Extensions.CustomScript`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This directory's version (`2.1.6`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `<Lib.Dir>/<Name>-<Version>`: the package, and where its commands run.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// `<Extension.LogDir>/<Name>`.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// `<Lib.Dir>/<Name>__<Version>.zip`, where the package is kept while it is unpacked.
    pub fn package_zip(&self) -> &Path {
        &self.zip
    }

    pub fn config_dir(&self) -> PathBuf {
        self.base.join("config")
    }

    pub fn status_dir(&self) -> PathBuf {
        self.base.join("status")
    }

    pub fn heartbeat_file(&self) -> PathBuf {
        self.base.join("heartbeat.log")
    }

    pub fn exists(&self) -> bool {
        self.base.is_dir()
    }

    /// `<Name>-<Version>`, as waagent names the handler in messages.
    pub fn full_name(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// A file of multi-config extension `ext` in `dir` (`<ext>.<suffix>`): `None` when `ext` is
    /// not an extension name the platform uses (the goal-state parsers refuse those already).
    fn extension_file(dir: &Path, ext: &str, suffix: &str) -> Option<PathBuf> {
        names::check_extension_name(ext).ok()?;
        names::join_under(dir, &format!("{ext}.{suffix}")).ok()
    }

    pub fn state(&self) -> HandlerState {
        read_small(&self.config_dir().join("HandlerState"))
            .map_or(HandlerState::NotInstalled, |t| HandlerState::parse(&t))
    }

    pub fn set_state(&self, state: HandlerState) -> Result<(), HandlerError> {
        ensure_dir(&self.config_dir(), 0o700)?;
        write_atomic(
            &self.config_dir().join("HandlerState"),
            state.as_str().as_bytes(),
            WriteOptions::mode(0o600),
        )?;
        Ok(())
    }

    /// Write `config/HandlerStatus` (`Ready`/`NotReady`, a code and a message).
    pub fn set_status(
        &self,
        status: &str,
        code: i64,
        message: &str,
        multi: bool,
    ) -> Result<(), HandlerError> {
        ensure_dir(&self.config_dir(), 0o700)?;
        let file = HandlerStatusFile {
            name: self.name.clone(),
            version: self.version.clone(),
            status: status.to_string(),
            code,
            message: Some(message.to_string()),
            supports_multi_config: multi,
            extension_status: None,
        };
        let text = serde_json::to_string(&file).unwrap_or_default();
        write_atomic(&self.config_dir().join("HandlerStatus"), text.as_bytes(), WriteOptions::mode(0o600))?;
        Ok(())
    }

    /// `config/HandlerStatus` and when it was written; `None` when missing or unreadable.
    pub fn status(&self) -> Option<(HandlerStatusFile, SystemTime)> {
        let path = self.config_dir().join("HandlerStatus");
        let text = read_small(&path).ok()?;
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        Some((serde_json::from_str(&text).ok()?, mtime))
    }

    /// Prepare an unpacked package (§10.3 "initialize"): find `HandlerManifest.json` (anywhere in
    /// the package; copied to the base dir, BOM stripped), create `config/` and `status/` (0700)
    /// and the log and events directories, and write `HandlerEnvironment.json`.
    pub fn initialize(&self) -> Result<HandlerManifest, HandlerError> {
        let manifest_path = self.base.join("HandlerManifest.json");
        if !manifest_path.is_file() {
            let found = find_file(&self.base, "HandlerManifest.json", 8)
                .ok_or_else(|| HandlerError::NoManifest(self.base.clone()))?;
            let data = limits::read_file(&found, Document::HandlerManifest)
                .map_err(|e| FileError::new("read", &found, e))?;
            write_atomic(&manifest_path, &data, WriteOptions::mode(0o644))?;
        }
        let manifest = self.manifest()?;
        ensure_dir(&self.config_dir(), 0o700)?;
        ensure_dir(&self.status_dir(), 0o700)?;
        ensure_dir(&self.log_dir, 0o755)?;
        ensure_dir(&self.log_dir.join("events"), 0o700)?;
        let lib = self.base.parent().unwrap_or(Path::new("/")).to_string_lossy().into_owned();
        let logs = self.log_dir.parent().unwrap_or(Path::new("/")).to_string_lossy().into_owned();
        let env = HandlerEnvironment::new(&self.name, &self.version, &lib, &logs, true);
        write_atomic(
            &self.base.join("HandlerEnvironment.json"),
            render_handler_environment(&self.name, &env).as_bytes(),
            WriteOptions::mode(0o644),
        )?;
        Ok(manifest)
    }

    /// The package's `HandlerManifest.json`.
    pub fn manifest(&self) -> Result<HandlerManifest, HandlerError> {
        let path = self.base.join("HandlerManifest.json");
        let text = limits::read_file_to_string(&path, Document::HandlerManifest)
            .map_err(|e| FileError::new("read", &path, e))?;
        parse_handler_manifest(text.strip_prefix('\u{feff}').unwrap_or(&text))
            .map_err(|e| HandlerError::Manifest { path, reason: e.to_string() })
    }

    /// Write the settings file of `settings` (or the empty `0.settings`), mode 0600.
    pub fn write_settings(
        &self,
        handler: &Extension,
        settings: Option<&ExtensionSettings>,
    ) -> Result<PathBuf, HandlerError> {
        let path = names::join_under(
            &self.config_dir(),
            &crate::documents::extensions::settings_file_name(handler, settings),
        )?;
        if let (Some(s), true) = (settings, handler.is_multi_config) {
            names::check_extension_name(&s.name)?;
        }
        ensure_dir(&self.config_dir(), 0o700)?;
        let text = crate::documents::extensions::render_settings(settings);
        write_atomic(&path, text.expose().as_bytes(), WriteOptions::mode(0o600))?;
        Ok(path)
    }

    /// The status file of an extension: `<seq>.status` or `<ext>.<seq>.status`; `None` for an
    /// `ext` that is not an extension name.
    pub fn status_file(&self, multi: Option<&str>, seq: u64) -> Option<PathBuf> {
        match multi {
            Some(ext) => Self::extension_file(&self.status_dir(), ext, &format!("{seq}.status")),
            None => Some(self.status_dir().join(format!("{seq}.status"))),
        }
    }

    /// Read a status file: `None` when it does not exist (or is empty of statuses), else the parsed
    /// status or why it could not be used, and the file's modification time.
    #[allow(clippy::type_complexity)]
    pub fn read_status(
        &self,
        multi: Option<&str>,
        seq: u64,
    ) -> Option<(Result<ExtensionStatus, StatusFileError>, SystemTime)> {
        let path = self.status_file(multi, seq)?;
        let bytes = match limits::read_file(&path, Document::ExtensionStatus) {
            Ok(bytes) => Ok(bytes),
            Err(e) if limits::is_too_large(&e) => Err(StatusFileError::Malformed { reason: e.to_string() }),
            Err(_) => return None,
        };
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
        match bytes.and_then(|b| parse_status_file(&b)) {
            Ok(Some(s)) => Some((Ok(s), mtime)),
            Ok(None) => None,
            Err(e) => Some((Err(e), mtime)),
        }
    }

    /// The heartbeat (when the manifest asks for one): [`Heartbeat::unresponsive`] when the file is
    /// older than 10 minutes; `None` when there is none or it cannot be read.
    pub fn heartbeat(&self, now: SystemTime) -> Option<Heartbeat> {
        let path = self.heartbeat_file();
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        if Heartbeat::is_stale(mtime, now) {
            return Some(Heartbeat::unresponsive());
        }
        parse_heartbeat(&read_small(&path).ok()?).ok()
    }

    /// The last sequence number enabled for `ext` (wala's own `config/<ext>.wala-seq` file; `None`
    /// when never enabled). Enable runs again only for a different number.
    pub fn last_enabled_seq(&self, ext: &str) -> Option<u64> {
        let path = Self::extension_file(&self.config_dir(), ext, "wala-seq")?;
        read_small(&path).ok()?.trim().parse().ok()
    }

    pub fn set_last_enabled_seq(&self, ext: &str, seq: Option<u64>) -> Result<(), HandlerError> {
        names::check_extension_name(ext)?;
        let path = names::join_under(&self.config_dir(), &format!("{ext}.wala-seq"))?;
        match seq {
            Some(n) => write_atomic(&path, n.to_string().as_bytes(), WriteOptions::mode(0o600))?,
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// Remove a multi-config extension's settings and status files (`<ext>.<seq>.settings`,
    /// `<ext>.<seq>.status`, `<ext>.HandlerState`) when it is disabled.
    pub fn remove_extension_files(&self, ext: &str) {
        let prefix = format!("{ext}.");
        for dir in [self.config_dir(), self.status_dir()] {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                let Some(rest) = file.strip_prefix(&prefix) else { continue };
                let numbered = rest.split_once('.').is_some_and(|(seq, kind)| {
                    seq.bytes().all(|b| b.is_ascii_digit()) && matches!(kind, "settings" | "status")
                });
                if numbered || rest == "HandlerState" {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Remove the handler's directory (uninstall, or the old version after an update).
    pub fn remove(&self) -> Result<(), HandlerError> {
        match std::fs::remove_dir_all(&self.base) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FileError::new("remove", &self.base, e).into()),
        }
    }
}

/// A file named `name` under `dir`, searched breadth-first up to `depth` levels.
/// A small state file (`HandlerState`, `HandlerStatus`, `heartbeat.log`, `*.wala-seq`) as text,
/// up to [`Document::HandlerState`]'s limit.
fn read_small(path: &Path) -> std::io::Result<String> {
    limits::read_file_to_string(path, Document::HandlerState)
}

fn find_file(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let mut level = vec![dir.to_path_buf()];
    for _ in 0..=depth {
        let mut next = Vec::new();
        for d in level {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            let mut entries: Vec<_> = entries.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let Ok(t) = e.file_type() else { continue };
                if t.is_file() && e.file_name() == name {
                    return Some(e.path());
                }
                if t.is_dir() {
                    next.push(e.path());
                }
            }
        }
        level = next;
    }
    None
}

/// The versions of `name` installed under `lib` (directory `<name>-<version>` whose state is
/// `Installed` or `Enabled`), highest first.
pub fn installed_versions(lib: &Path, log_root: &Path, name: &str) -> Vec<HandlerDir> {
    let prefix = format!("{name}-");
    let mut found: Vec<(FlexibleVersion, HandlerDir)> = std::fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let version = file.strip_prefix(&prefix)?;
            let v = FlexibleVersion::parse(version).ok()?;
            let dir = HandlerDir::new(lib, log_root, name, version).ok()?;
            matches!(dir.state(), HandlerState::Installed | HandlerState::Enabled).then_some((v, dir))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, d)| d).collect()
}

/// Every handler directory under `lib` (`<Name>-<dotted version>` holding a
/// `HandlerManifest.json`), except the agent's own `WALinuxAgent-*` packages. A directory whose
/// name is not a handler name and version ([`names`](crate::documents::extensions::names)) is not a handler: it is left alone.
pub fn handler_dirs(lib: &Path, log_root: &Path) -> Vec<HandlerDir> {
    std::fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            if file.starts_with("WALinuxAgent-") || file.starts_with('.') {
                return None;
            }
            let (name, version) = file.rsplit_once('-')?;
            let dir = HandlerDir::new(lib, log_root, name, version).ok()?;
            (e.file_type().is_ok_and(|t| t.is_dir()) && dir.base.join("HandlerManifest.json").is_file())
                .then_some(dir)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpacked(lib: &Path, logs: &Path) -> HandlerDir {
        let d = HandlerDir::new(lib, logs, "Pub.Ext", "1.2.3").expect("handler dir");
        std::fs::create_dir_all(d.base().join("nested/deeper")).expect("mkdir");
        std::fs::write(
            d.base().join("nested/deeper/HandlerManifest.json"),
            "\u{feff}[{\"handlerManifest\":{\"installCommand\":\"i\",\"uninstallCommand\":\"u\",\"updateCommand\":\"p\",\"enableCommand\":\"e\",\"disableCommand\":\"d\",\"reportHeartbeat\":true}}]",
        )
        .expect("manifest");
        d
    }

    #[test]
    fn initialize_lays_out_waagents_contract() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let (lib, logs) = (tmp.path().join("lib"), tmp.path().join("log"));
        let d = unpacked(&lib, &logs);
        let m = d.initialize().expect("initialize");
        assert_eq!(m.enable_command, "e");
        assert!(m.report_heartbeat);
        assert!(d.base().join("HandlerManifest.json").is_file(), "copied to the base dir");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&d.config_dir()), 0o700);
        assert_eq!(mode(&d.status_dir()), 0o700);
        assert_eq!(mode(&logs.join("Pub.Ext/events")), 0o700);
        let env: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(d.base().join("HandlerEnvironment.json")).expect("env"),
        )
        .expect("json");
        let he = &env[0]["handlerEnvironment"];
        assert_eq!(env[0]["name"], "Pub.Ext");
        assert_eq!(he["configFolder"], d.config_dir().to_string_lossy().as_ref());
        assert_eq!(he["statusFolder"], d.status_dir().to_string_lossy().as_ref());
        assert_eq!(he["heartbeatFile"], d.heartbeat_file().to_string_lossy().as_ref());
        assert_eq!(he["logFolder"], logs.join("Pub.Ext").to_string_lossy().as_ref());
    }

    #[test]
    fn state_status_and_versions() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (lib, logs) = (tmp.path().join("lib"), tmp.path().join("log"));
        let d = unpacked(&lib, &logs);
        d.initialize().expect("init");
        assert_eq!(d.state(), HandlerState::NotInstalled);
        assert!(installed_versions(&lib, &logs, "Pub.Ext").is_empty());
        d.set_state(HandlerState::Enabled).expect("state");
        assert_eq!(d.state(), HandlerState::Enabled);
        let older = HandlerDir::new(&lib, &logs, "Pub.Ext", "1.10.0").expect("handler dir");
        older.set_state(HandlerState::Installed).expect("state");
        let v: Vec<String> =
            installed_versions(&lib, &logs, "Pub.Ext").into_iter().map(|d| d.version).collect();
        assert_eq!(v, ["1.10.0", "1.2.3"], "numeric order, highest first");
        d.set_status("Ready", 0, "Plugin enabled", false).expect("status");
        let (s, _) = d.status().expect("read");
        assert_eq!((s.status.as_str(), s.code, s.message.as_deref()), ("Ready", 0, Some("Plugin enabled")));
        assert_eq!(d.last_enabled_seq("Pub.Ext"), None);
        d.set_last_enabled_seq("Pub.Ext", Some(7)).expect("seq");
        assert_eq!(d.last_enabled_seq("Pub.Ext"), Some(7));
        let dirs = handler_dirs(&lib, &logs);
        assert_eq!(dirs.len(), 1, "only the one with a HandlerManifest.json: {dirs:?}");
    }

    #[test]
    fn status_and_heartbeat_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = unpacked(&tmp.path().join("lib"), &tmp.path().join("log"));
        d.initialize().expect("init");
        assert!(d.read_status(None, 3).is_none());
        std::fs::write(
            d.status_file(None, 3).expect("status file"),
            r#"[{"status":{"status":"success","code":0}}]"#,
        )
        .expect("w");
        let (s, _) = d.read_status(None, 3).expect("present");
        assert_eq!(s.expect("valid").status, crate::documents::extensions::status::StatusValue::Success);
        std::fs::write(d.status_file(Some("a"), 1).expect("status file"), "{not json").expect("w");
        assert!(d.read_status(Some("a"), 1).expect("present").0.is_err());
        assert!(d.heartbeat(SystemTime::now()).is_none());
        std::fs::write(d.heartbeat_file(), r#"[{"heartbeat":{"status":"Ready","code":0}}]"#).expect("w");
        assert_eq!(d.heartbeat(SystemTime::now()).expect("hb").status, "Ready");
        let later = SystemTime::now() + std::time::Duration::from_secs(601);
        assert_eq!(d.heartbeat(later).expect("stale").status, "Unresponsive");
    }

    /// Issue #21: a name or version that is not one the platform uses builds no path at all, and
    /// a directory on disk whose name is not a handler's is neither listed nor touched.
    #[test]
    fn hostile_names_build_no_path_and_foreign_directories_are_not_handlers() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (lib, logs) = (tmp.path().join("lib"), tmp.path().join("log"));
        for (name, version) in [
            ("../../../../ESCAPED.Ext", "1.0"),
            ("../../../../victim", "1.0"),
            ("X;id>INJECTED;#", "1.0"),
            ("Pub.Ext", "1.0/../../x"),
            ("Pub.Ext", " 1.0"),
        ] {
            let err = HandlerDir::new(&lib, &logs, name, version).expect_err(name);
            assert!(err.to_string().contains("is refused"), "{err}");
        }
        assert!(!lib.exists() && !logs.exists());

        let d = unpacked(&lib, &logs);
        d.initialize().expect("init");
        assert_eq!(d.base(), lib.join("Pub.Ext-1.2.3"));
        assert_eq!(d.log_dir(), logs.join("Pub.Ext"));
        assert_eq!(d.package_zip(), lib.join("Pub.Ext__1.2.3.zip"));
        assert_eq!(d.status_file(Some("../x"), 1), None, "an extension name with '/' names no file");
        assert_eq!(d.last_enabled_seq("../x"), None);
        assert!(d.set_last_enabled_seq("../../x", Some(1)).is_err());
        assert!(!lib.join("x.wala-seq").exists() && !tmp.path().join("x.wala-seq").exists());
        // Directories that look like handlers but whose names are not: never listed, so never
        // removed by the cleanup or uninstalled.
        for foreign in ["X;id>INJECTED;#-1.0", "Pub Ext.A-1.0", "NoDot-1.0"] {
            let f = lib.join(foreign);
            std::fs::create_dir_all(f.join("config")).expect("mkdir");
            std::fs::write(f.join("HandlerManifest.json"), "[]").expect("manifest");
            std::fs::write(f.join("config/HandlerState"), "Enabled").expect("state");
        }
        let names: Vec<String> = handler_dirs(&lib, &logs).iter().map(HandlerDir::full_name).collect();
        assert_eq!(names, ["Pub.Ext-1.2.3"]);
        assert!(installed_versions(&lib, &logs, "X;id>INJECTED;#").is_empty());
    }
}
