//! Scenarios: the documents the fabric serves.
//!
//! A scenario is a directory with a `scenario.json`:
//! ```json
//! {
//!   "incarnation": 1,
//!   "goal_state": "GoalState.xml",
//!   "hosting_environment_config": "HostingEnvironmentConfig.xml",
//!   "shared_config": "SharedConfig.xml",
//!   "extensions_config": "ExtensionsConfig.xml",
//!   "versions": "versions.xml",
//!   "vm_settings": "vmSettings.json",
//!   "imds_instance": "imds-instance.json",
//!   "remote_access": "remote-access.json",
//!   "certificates": 2,
//!   "status_blob_path": "/statusblob/vm.status",
//!   "files": {"/artifacts/x/manifest.xml": "manifest.xml"},
//!   "rewrite": {"http://100.115.176.3:80": "wireserver"}
//! }
//! ```
//! Also `"reprovision_data": "ovf-env.xml"` (served at IMDS `/metadata/reprovisiondata` from the
//! start; by default that answers 404 until a test sets the document) and
//! `"reprovision_hold_ms": 1000` (how long such a request is held open waiting for it).
//! Only `goal_state` is required. Without `versions` a built-in Versions document is served;
//! without `vm_settings` the HostGAPlugin answers 404 (no Fast Track); without `imds_instance` IMDS
//! answers 404. `remote_access` lists JIT users (JSON, see [`crate::remote_access`]): the goal state
//! then names a RemoteAccess document; without it, it names none. `certificates` (default 1) is how many test certificates the Certificates document
//! carries (0: a document without `Data`). `files` maps URL paths (on the WireServer listener and
//! behind HostGAPlugin `/extensionArtifact`) to files.
//!
//! Text documents are rendered before being served: `{{wire}}`, `{{hgap}}` and `{{imds}}` become
//! `http://<addr>` of the listeners, `{{incarnation}}` the current incarnation and `{{thumbprint}}`
//! the first test certificate's thumbprint. URLs of the real fabric (`http://168.63.129.16[:80]`,
//! `http://168.63.129.16:32526`, `http://169.254.169.254`) and the prefixes in `rewrite` are
//! replaced by the listener addresses. In the goal state, the `<Incarnation>` element and every
//! `incarnation=<n>` query value are set to the current incarnation.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::Listener;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `scenario.json` is not valid.
    #[error("{path}: invalid scenario description: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
    /// A document reference escapes the scenario directory or is absolute.
    #[error("{path}: field {field}: {name:?} must be a relative path inside the scenario directory")]
    BadReference {
        /// The scenario.json file.
        path: PathBuf,
        /// The field naming the file.
        field: String,
        /// The offending reference.
        name: String,
    },
    /// A text document is not UTF-8.
    #[error("{path}: document is not UTF-8")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// A URL path in `files` or `status_blob_path` does not start with `/`.
    #[error("{path}: URL path {url:?} must start with '/'")]
    BadUrlPath {
        /// The scenario.json file.
        path: PathBuf,
        /// The URL path.
        url: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default = "one")]
    incarnation: u64,
    goal_state: String,
    hosting_environment_config: Option<String>,
    shared_config: Option<String>,
    extensions_config: Option<String>,
    versions: Option<String>,
    vm_settings: Option<String>,
    imds_instance: Option<String>,
    remote_access: Option<String>,
    #[serde(default = "one_usize")]
    certificates: usize,
    #[serde(default = "default_blob_path")]
    status_blob_path: String,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    rewrite: BTreeMap<String, Listener>,
    reprovision_data: Option<String>,
    #[serde(default = "default_hold_ms")]
    reprovision_hold_ms: u64,
}

fn default_hold_ms() -> u64 {
    1000
}
fn one() -> u64 {
    1
}
fn one_usize() -> usize {
    1
}
fn default_blob_path() -> String {
    "/statusblob/vm.status".into()
}

/// The served documents, unrendered.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Incarnation at start.
    pub incarnation: u64,
    /// GoalState XML.
    pub goal_state: String,
    /// HostingEnvironmentConfig XML.
    pub hosting_environment_config: Option<String>,
    /// SharedConfig XML.
    pub shared_config: Option<String>,
    /// ExtensionsConfig XML.
    pub extensions_config: Option<String>,
    /// Versions XML.
    pub versions: String,
    /// vmSettings JSON; `None` = HostGAPlugin without Fast Track (404).
    pub vm_settings: Option<String>,
    /// IMDS `/metadata/instance` JSON.
    pub imds_instance: Option<String>,
    /// RemoteAccess users ([`crate::remote_access`]); `None`: the goal state names no document.
    pub remote_access: Option<Vec<crate::remote_access::JitUser>>,
    /// Number of test certificates.
    pub certificates: usize,
    /// URL path of the status blob (PUTs on it or below it are stored).
    pub status_blob_path: String,
    /// Artifact files by URL path.
    pub files: BTreeMap<String, ArtifactFile>,
    /// Extra URL prefixes to rewrite to a listener.
    pub rewrite: BTreeMap<String, Listener>,
    /// The `ovf-env.xml` IMDS serves at `/metadata/reprovisiondata` (a pre-provisioned pool VM
    /// taken over by a user); `None` (the default) answers 404 until a test sets it.
    pub reprovision_data: Option<Vec<u8>>,
    /// How long a `reprovisiondata` request is held open waiting for the document before the 404
    /// (a long poll; default 1000 ms).
    pub reprovision_hold_ms: u64,
}

/// Files of a scenario directory larger than this are not loaded: they are streamed from disk at
/// each request (and served as they are, never rendered), so tests can serve packages of hundreds
/// of MiB without holding them.
pub const LARGE_FILE: u64 = 1024 * 1024;

/// An artifact the fabric serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactFile {
    /// Loaded (text ones are rendered when served).
    Bytes(Vec<u8>),
    /// Over [`LARGE_FILE`]: read from `path` at each request, `len` bytes as it was when loaded.
    Disk {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
}

/// The built-in Versions document.
const DEFAULT_VERSIONS: &str = include_str!("../scenario/versions.xml");

macro_rules! builtin_file {
    ($name:literal) => {
        ($name, include_bytes!(concat!("../scenario/", $name)).as_slice())
    };
}

/// The files of the built-in scenario.
const BUILTIN: &[(&str, &[u8])] = &[
    builtin_file!("scenario.json"),
    builtin_file!("GoalState.xml"),
    builtin_file!("HostingEnvironmentConfig.xml"),
    builtin_file!("SharedConfig.xml"),
    builtin_file!("ExtensionsConfig.xml"),
    builtin_file!("versions.xml"),
    builtin_file!("vmSettings.json"),
    builtin_file!("imds-instance.json"),
    builtin_file!("manifest.xml"),
    builtin_file!("Wala.Test.Example__1.0.0.zip"),
];

impl Scenario {
    /// The built-in scenario (one extension, block-blob status, two test certificates).
    pub fn builtin() -> Result<Self, ScenarioError> {
        Self::load(
            Path::new("<builtin>"),
            |name| {
                BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, b)| b.to_vec()).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "not a built-in scenario file")
                })
            },
            |_| None,
        )
    }

    /// Loads the scenario in directory `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self, ScenarioError> {
        Self::load(
            dir,
            |name| std::fs::read(dir.join(name)),
            |name| {
                let path = dir.join(name);
                let len = std::fs::metadata(&path).ok().filter(|m| m.is_file())?.len();
                (len > LARGE_FILE).then_some(ArtifactFile::Disk { path, len })
            },
        )
    }

    /// `read` loads a file of the scenario; `large` gives the files served from disk instead.
    fn load(
        dir: &Path,
        read: impl Fn(&str) -> std::io::Result<Vec<u8>>,
        large: impl Fn(&str) -> Option<ArtifactFile>,
    ) -> Result<Self, ScenarioError> {
        let json_path = dir.join("scenario.json");
        let raw = read("scenario.json")
            .map_err(|source| ScenarioError::Read { path: json_path.clone(), source })?;
        let desc: ScenarioFile = serde_json::from_slice(&raw)
            .map_err(|source| ScenarioError::Json { path: json_path.clone(), source })?;
        let check = |field: &str, name: &str| -> Result<(), ScenarioError> {
            let p = Path::new(name);
            if name.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(ScenarioError::BadReference {
                    path: json_path.clone(),
                    field: field.into(),
                    name: name.into(),
                });
            }
            Ok(())
        };
        let bytes = |field: &str, name: &str| -> Result<Vec<u8>, ScenarioError> {
            check(field, name)?;
            read(name).map_err(|source| ScenarioError::Read { path: dir.join(name), source })
        };
        let text = |field: &str, name: &str| -> Result<String, ScenarioError> {
            String::from_utf8(bytes(field, name)?)
                .map_err(|_| ScenarioError::NotUtf8 { path: dir.join(name) })
        };
        let opt = |field: &str, name: &Option<String>| name.as_deref().map(|n| text(field, n)).transpose();
        let url_path = |url: &str| -> Result<(), ScenarioError> {
            if url.starts_with('/') {
                Ok(())
            } else {
                Err(ScenarioError::BadUrlPath { path: json_path.clone(), url: url.into() })
            }
        };
        url_path(&desc.status_blob_path)?;
        let mut files = BTreeMap::new();
        for (url, name) in &desc.files {
            url_path(url)?;
            let field = format!("files.{url}");
            check(&field, name)?;
            let file = match large(name) {
                Some(file) => file,
                None => ArtifactFile::Bytes(bytes(&field, name)?),
            };
            files.insert(url.clone(), file);
        }
        let remote_access = match &desc.remote_access {
            Some(name) => {
                let path = dir.join(name);
                let users = crate::remote_access::parse_users(&text("remote_access", name)?)
                    .map_err(|source| ScenarioError::Json { path, source })?;
                Some(users)
            }
            None => None,
        };
        Ok(Scenario {
            incarnation: desc.incarnation,
            goal_state: text("goal_state", &desc.goal_state)?,
            hosting_environment_config: opt("hosting_environment_config", &desc.hosting_environment_config)?,
            shared_config: opt("shared_config", &desc.shared_config)?,
            extensions_config: opt("extensions_config", &desc.extensions_config)?,
            versions: opt("versions", &desc.versions)?.unwrap_or_else(|| DEFAULT_VERSIONS.to_string()),
            vm_settings: opt("vm_settings", &desc.vm_settings)?,
            imds_instance: opt("imds_instance", &desc.imds_instance)?,
            remote_access,
            certificates: desc.certificates,
            status_blob_path: desc.status_blob_path,
            files,
            rewrite: desc.rewrite,
            reprovision_data: desc
                .reprovision_data
                .as_deref()
                .map(|n| bytes("reprovision_data", n))
                .transpose()?,
            reprovision_hold_ms: desc.reprovision_hold_ms,
        })
    }
}

/// What a document is rendered with.
#[derive(Debug, Clone)]
pub struct RenderContext {
    /// `http://<addr>` of the WireServer listener.
    pub wire: String,
    /// `http://<addr>` of the HostGAPlugin listener.
    pub hgap: String,
    /// `http://<addr>` of the IMDS listener.
    pub imds: String,
    /// The current incarnation.
    pub incarnation: u64,
    /// Thumbprint of the first test certificate (empty when there is none).
    pub thumbprint: String,
    /// Extra prefixes to rewrite.
    pub rewrite: BTreeMap<String, Listener>,
}

impl RenderContext {
    fn base(&self, listener: Listener) -> &str {
        match listener {
            Listener::Wireserver => &self.wire,
            Listener::Hostgaplugin => &self.hgap,
            Listener::Imds => &self.imds,
        }
    }

    /// Replaces the tokens and the fabric URLs in `text`.
    pub fn render(&self, text: &str) -> String {
        let mut pairs: Vec<(String, String)> = vec![
            ("{{wire}}".into(), self.wire.clone()),
            ("{{hgap}}".into(), self.hgap.clone()),
            ("{{imds}}".into(), self.imds.clone()),
            ("{{incarnation}}".into(), self.incarnation.to_string()),
            ("{{thumbprint}}".into(), self.thumbprint.clone()),
            ("http://168.63.129.16:32526".into(), self.hgap.clone()),
            ("http://168.63.129.16:80".into(), self.wire.clone()),
            ("http://168.63.129.16".into(), self.wire.clone()),
            ("http://169.254.169.254:80".into(), self.imds.clone()),
            ("http://169.254.169.254".into(), self.imds.clone()),
        ];
        pairs.extend(self.rewrite.iter().map(|(from, l)| (from.clone(), self.base(*l).to_string())));
        // Longest pattern first so `http://168.63.129.16` never eats the `:32526` form.
        pairs.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        replace_all(text, &pairs)
    }

    /// Renders a goal state: like [`render`](Self::render), plus the incarnation element and the
    /// `incarnation=` values of the sub-document URLs.
    pub fn render_goal_state(&self, text: &str) -> String {
        let n = self.incarnation.to_string();
        let text = replace_between(text, "<Incarnation>", "</Incarnation>", &n);
        let text = replace_digits_after(&text, "incarnation=", &n);
        self.render(&text)
    }
}

/// Single left-to-right pass replacing the first pattern (in `pairs` order) that matches.
fn replace_all(text: &str, pairs: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for (from, to) in pairs {
            if !from.is_empty() && rest.starts_with(from.as_str()) {
                out.push_str(to);
                rest = &rest[from.len()..];
                continue 'outer;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// Replaces the text between every `open` and the following `close`.
fn replace_between(text: &str, open: &str, close: &str, value: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(close) else { break };
        out.push_str(&rest[..i + open.len()]);
        out.push_str(value);
        rest = &after[j..];
    }
    out.push_str(rest);
    out
}

/// Replaces the run of ASCII digits after every `marker`.
fn replace_digits_after(text: &str, marker: &str, value: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        let after = &rest[i + marker.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&rest[..i + marker.len()]);
        if digits > 0 {
            out.push_str(value);
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RenderContext {
        RenderContext {
            wire: "http://127.0.0.1:1000".into(),
            hgap: "http://127.0.0.1:2000".into(),
            imds: "http://127.0.0.1:3000".into(),
            incarnation: 7,
            thumbprint: "ABCD".into(),
            rewrite: BTreeMap::from([("http://100.115.176.3:80".to_string(), Listener::Wireserver)]),
        }
    }

    #[test]
    fn rewrites_fabric_urls_longest_first() {
        let out = ctx().render(
            "a http://168.63.129.16:32526/vmSettings b http://168.63.129.16/machine \
             c http://168.63.129.16:80/x d http://100.115.176.3:80/y {{thumbprint}} {{imds}}",
        );
        assert_eq!(
            out,
            "a http://127.0.0.1:2000/vmSettings b http://127.0.0.1:1000/machine \
             c http://127.0.0.1:1000/x d http://127.0.0.1:1000/y ABCD http://127.0.0.1:3000"
        );
    }

    #[test]
    fn goal_state_incarnation_is_forced() {
        let gs = "<Incarnation>1</Incarnation><U>http://168.63.129.16/m?comp=config&amp;incarnation=1</U>";
        assert_eq!(
            ctx().render_goal_state(gs),
            "<Incarnation>7</Incarnation><U>http://127.0.0.1:1000/m?comp=config&amp;incarnation=7</U>"
        );
    }

    #[test]
    fn builtin_scenario_loads() {
        let s = Scenario::builtin().unwrap();
        assert!(s.goal_state.contains("{{incarnation}}"));
        assert!(s.vm_settings.is_some());
        assert_eq!(s.files.len(), 2);
    }

    #[test]
    fn remote_access_users_come_from_a_json_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gs.xml"), "<GoalState/>").unwrap();
        std::fs::write(
            dir.path().join("scenario.json"),
            r#"{"goal_state": "gs.xml", "remote_access": "ra.json"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("ra.json"), r#"[{"name":"j","password":"p","expires_in_secs":5}]"#)
            .unwrap();
        let s = Scenario::from_dir(dir.path()).unwrap();
        assert_eq!(s.remote_access.unwrap()[0].name, "j");
        std::fs::write(dir.path().join("ra.json"), r#"{"name":"j"}"#).unwrap();
        let err = Scenario::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, ScenarioError::Json { .. }) && err.to_string().contains("ra.json"), "{err}");
        assert!(Scenario::builtin().unwrap().remote_access.is_none());
    }

    #[test]
    fn references_outside_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("scenario.json"), r#"{"goal_state": "../etc/passwd"}"#).unwrap();
        let err = Scenario::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, ScenarioError::BadReference { .. }), "{err}");
    }
}
