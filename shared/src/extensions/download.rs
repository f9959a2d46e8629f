//! Fetching extension manifests and packages (wire.md §6.4, §6.8, §8.1–§8.3), and unpacking a
//! package safely into `<Lib.Dir>/<Name>-<Version>/`.
//!
//! Every URI is tried on the default channel first (direct storage, proxied; or the HostGAPlugin's
//! `extensionArtifact`), then on the other one; when the other one works it becomes the default.
//! URIs are shuffled first, and the whole walk is bounded by [`DOWNLOAD_DEADLINE`].
//!
//! Unpacking is all-or-nothing: every entry is checked first (no absolute path, no `..`, no
//! symbolic link), the files are written into a temporary directory beside the target, and that
//! directory is renamed into place. A package that fails leaves nothing behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::manifest::{parse_manifest, PluginVersionManifest};
use crate::files::{write_atomic, WriteOptions};
use crate::hostgaplugin::{ArtifactRequest, ContainerIdentity, HostGaPluginClient};
use crate::http::{HttpClient, Request};
use crate::limits::Document;

/// The bound on one whole download walk (manifest or package), as waagent's.
pub const DOWNLOAD_DEADLINE: Duration = Duration::from_secs(300);

/// waagent's error code for manifest and package download failures.
pub const CODE_DOWNLOAD_FAILED: i64 = 1001;

/// Why a manifest or package could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Every URI failed on both channels (or there were none). `errors` lists one line per try,
    /// SAS-redacted.
    #[error("Failed to download artifacts: {}", if errors.is_empty() { "no URI to download from".to_string() } else { errors.join("; ") })]
    AllFailed { errors: Vec<String> },
    /// The manifest was fetched but is not a valid manifest.
    #[error("Failed to download artifacts: invalid manifest from {uri}: {reason}")]
    Manifest { uri: String, reason: String },
    /// The package is not a safe, readable zip.
    #[error("Failed to download artifacts: package {name}: {why}")]
    Package { name: String, why: String },
    /// A file could not be written.
    #[error("Failed to download artifacts: {0}")]
    File(#[from] crate::files::FileError),
}

/// Which channel is tried first; shared by every download of the daemon (waagent keeps one
/// process-wide flag that starts on the direct channel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Channels {
    pub host_plugin_first: bool,
}

/// Fetches artifacts for one goal state.
pub struct Downloader<'a> {
    pub storage: &'a HttpClient,
    pub hgap: &'a HostGaPluginClient,
    pub who: &'a ContainerIdentity,
    /// The goal state is Fast Track (`x-ms-verify-from-artifacts-blob: true` on the HostGAPlugin).
    pub fast_track: bool,
    pub deadline: Duration,
}

impl std::fmt::Debug for Downloader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader").field("fast_track", &self.fast_track).finish_non_exhaustive()
    }
}

impl Downloader<'_> {
    /// The bytes at the first URI (in shuffled order) that answers on either channel, and that
    /// URI. `manifest_location` goes with package downloads through the HostGAPlugin.
    pub fn fetch(
        &self,
        channels: &mut Channels,
        uris: &[String],
        manifest_location: Option<&str>,
        document: Document,
    ) -> Result<(Vec<u8>, String), DownloadError> {
        let start = Instant::now();
        let mut errors = Vec::new();
        for uri in shuffled(uris) {
            for hgap in [channels.host_plugin_first, !channels.host_plugin_first] {
                let remaining = self.deadline.saturating_sub(start.elapsed());
                if remaining.is_zero() {
                    errors.push(format!("gave up after {}s", self.deadline.as_secs()));
                    return Err(DownloadError::AllFailed { errors });
                }
                let got = if hgap {
                    let req = ArtifactRequest {
                        location: &uri,
                        manifest_location,
                        fast_track: self.fast_track,
                        document,
                    };
                    self.hgap.extension_artifact(self.who, &req, remaining).map_err(|e| e.to_string())
                } else {
                    self.direct(&uri, remaining, document)
                };
                match got {
                    Ok(bytes) => {
                        if hgap != channels.host_plugin_first {
                            log::info!(
                                "downloads now go {} first",
                                if hgap { "through the HostGAPlugin" } else { "directly" }
                            );
                            channels.host_plugin_first = hgap;
                        }
                        return Ok((bytes, uri));
                    }
                    Err(e) => errors.push(format!(
                        "{} via {}: {}",
                        crate::logging::redact_sas(&uri),
                        if hgap { "HostGAPlugin" } else { "direct" },
                        crate::logging::redact_sas(&e)
                    )),
                }
            }
        }
        Err(DownloadError::AllFailed { errors })
    }

    fn direct(&self, uri: &str, timeout: Duration, document: Document) -> Result<Vec<u8>, String> {
        let request = Request::get(uri).document(document);
        let resp = self.storage.send_once(&request, timeout).map_err(|e| e.to_string())?;
        if resp.status == 200 {
            Ok(resp.body)
        } else {
            Err(format!("HTTP {}", resp.status))
        }
    }

    /// The extension manifest from `uris`, and the URI that served it.
    pub fn manifest(
        &self,
        channels: &mut Channels,
        uris: &[String],
    ) -> Result<(PluginVersionManifest, String), DownloadError> {
        let (bytes, uri) = self.fetch(channels, uris, None, Document::ExtensionManifest)?;
        let text = String::from_utf8_lossy(&bytes);
        let manifest = parse_manifest(&text).map_err(|e| DownloadError::Manifest {
            uri: crate::logging::redact_sas(&uri),
            reason: e.to_string(),
        })?;
        Ok((manifest, uri))
    }

    /// Make sure `<lib>/<name>-<version>/` holds the package (§8.3): reuse a zip left by an
    /// earlier try, else download one from `uris`; unpack; delete the zip.
    pub fn package(
        &self,
        channels: &mut Channels,
        lib: &Path,
        name: &str,
        version: &str,
        uris: &[String],
        manifest_uri: &str,
    ) -> Result<PathBuf, DownloadError> {
        let zip = lib.join(format!("{name}__{version}.zip"));
        let target = lib.join(format!("{name}-{version}"));
        if let Ok(bytes) = std::fs::read(&zip) {
            match unpack(&bytes, &target) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&zip);
                    return Ok(target);
                }
                Err(e) => {
                    log::warn!("{}: {e}; downloading it again", zip.display());
                    let _ = std::fs::remove_file(&zip);
                }
            }
        }
        let start = Instant::now();
        let mut errors = Vec::new();
        let mut left: Vec<String> = uris.to_vec();
        // A package that downloads but does not unpack sends the walk on to the next URI.
        while !left.is_empty() {
            let remaining = Downloader { deadline: self.deadline.saturating_sub(start.elapsed()), ..*self };
            let (bytes, uri) =
                match remaining.fetch(channels, &left, Some(manifest_uri), Document::ExtensionPackage) {
                    Ok(got) => got,
                    Err(DownloadError::AllFailed { errors: e }) => {
                        errors.extend(e);
                        break;
                    }
                    Err(e) => return Err(e),
                };
            write_atomic(&zip, &bytes, WriteOptions::mode(0o600))?;
            let unpacked = unpack(&bytes, &target);
            let _ = std::fs::remove_file(&zip);
            match unpacked {
                Ok(()) => return Ok(target),
                Err(e) => {
                    errors.push(format!("{}: {e}", crate::logging::redact_sas(&uri)));
                    left.retain(|u| *u != uri);
                }
            }
        }
        Err(DownloadError::AllFailed { errors })
    }
}

/// The URIs in random order (waagent shuffles them so load spreads over the replicas).
fn shuffled(uris: &[String]) -> Vec<String> {
    let mut v = uris.to_vec();
    let mut seed = [0u8; 8];
    if openssl::rand::rand_bytes(&mut seed).is_err() {
        return v;
    }
    let mut x = u64::from_le_bytes(seed) | 1;
    for i in (1..v.len()).rev() {
        // xorshift64: enough to spread load, not a secret.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("not a readable zip: {0}")]
    Zip(#[from] crate::ziparchive::ZipError),
    #[error("entry {name:?} is refused: {why}")]
    Unsafe { name: String, why: &'static str },
    #[error("{0}")]
    File(#[from] crate::files::FileError),
}

/// Check one entry name: relative, no `..`, no NUL. Returns the components.
fn safe_components(name: &str) -> Result<Vec<&str>, UnpackError> {
    let bad = |why| Err(UnpackError::Unsafe { name: name.chars().take(200).collect(), why });
    if name.starts_with('/') {
        return bad("absolute path");
    }
    if name.contains('\0') {
        return bad("NUL in the name");
    }
    let parts: Vec<&str> = name.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if parts.contains(&"..") {
        return bad("'..' in the path");
    }
    Ok(parts)
}

/// Unpack a zip into `target` all-or-nothing: entries are checked first, written into a temporary
/// directory beside `target`, which then replaces `target`. Every file gets `u+x` (waagent makes
/// the whole package executable for its owner).
pub fn unpack(bytes: &[u8], target: &Path) -> Result<(), UnpackError> {
    use std::os::unix::fs::PermissionsExt;
    let entries = crate::ziparchive::read_all(bytes)?;
    let mut plan = Vec::with_capacity(entries.len());
    for e in &entries {
        if e.is_symlink {
            return Err(UnpackError::Unsafe {
                name: e.name.chars().take(200).collect(),
                why: "symbolic link",
            });
        }
        let parts = safe_components(&e.name)?;
        if parts.is_empty() {
            continue;
        }
        plan.push((parts, e));
    }
    let parent = target.parent().unwrap_or(Path::new("/"));
    let leaf = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    crate::files::ensure_dir(parent, 0o755)?;
    let tmp = parent.join(format!(".{leaf}.unpack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let io = |op, p: &Path, e| UnpackError::File(crate::files::FileError::new(op, p, e));
    let write = || -> Result<(), UnpackError> {
        std::fs::create_dir(&tmp).map_err(|e| io("create", &tmp, e))?;
        for (parts, e) in &plan {
            let path = parts.iter().fold(tmp.clone(), |p, c| p.join(c));
            if e.name.ends_with('/') {
                std::fs::create_dir_all(&path).map_err(|err| io("create", &path, err))?;
                continue;
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|err| io("create", dir, err))?;
            }
            std::fs::write(&path, &e.data).map_err(|err| io("write", &path, err))?;
            let mode = if e.mode == 0 { 0o644 } else { e.mode & 0o777 } | 0o100;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|err| io("chmod", &path, err))?;
        }
        if target.exists() {
            std::fs::remove_dir_all(target).map_err(|err| io("remove", target, err))?;
        }
        std::fs::rename(&tmp, target).map_err(|err| io("rename", target, err))?;
        Ok(())
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip(files: &[(&str, &str, u32)]) -> Vec<u8> {
        let mut z = crate::ziparchive::ZipWriter::new(0);
        for (n, d, m) in files {
            z.add(n, d.as_bytes(), *m).expect("add");
        }
        z.finish().expect("finish")
    }

    #[test]
    fn unpacks_and_marks_files_executable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("X-1.0");
        let bytes = zip(&[("HandlerManifest.json", "[]", 0o644), ("bin/run.sh", "echo", 0o600)]);
        unpack(&bytes, &target).expect("unpack");
        let mode = |p: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(target.join(p)).expect("meta").permissions().mode() & 0o777
        };
        assert_eq!(mode("HandlerManifest.json"), 0o744);
        assert_eq!(mode("bin/run.sh"), 0o700);
        // A second unpack replaces the directory (a stale file disappears).
        std::fs::write(target.join("stale"), "x").expect("write");
        unpack(&bytes, &target).expect("again");
        assert!(!target.join("stale").exists());
    }

    #[test]
    fn unsafe_names_are_refused_and_nothing_is_left() {
        for (name, why) in [("../evil", "'..'"), ("a/../../evil", "'..'"), ("/etc/evil", "absolute")] {
            let dir = tempfile::tempdir().expect("tempdir");
            let target = dir.path().join("X-1.0");
            // The writer refuses such names, so patch a safe one of the same length afterwards.
            let placeholder: String = "q".repeat(name.len());
            let mut bytes = zip(&[("ok.txt", "fine", 0o644), (placeholder.as_str(), "bad", 0o644)]);
            let needle = placeholder.as_bytes();
            let mut i = 0;
            while let Some(at) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
                bytes[i + at..i + at + needle.len()].copy_from_slice(name.as_bytes());
                i += at + needle.len();
            }
            let err = unpack(&bytes, &target).expect_err(name).to_string();
            assert!(err.contains(why), "{name}: {err}");
            assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0, "{name}: nothing left");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(unpack(b"PK\x05\x06garbage", &dir.path().join("x")).is_err());
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn shuffle_keeps_every_uri() {
        let uris: Vec<String> = (0..20).map(|i| format!("u{i}")).collect();
        let mut s = shuffled(&uris);
        s.sort();
        let mut u = uris.clone();
        u.sort();
        assert_eq!(s, u);
    }
}
