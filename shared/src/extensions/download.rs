//! Fetching extension manifests and packages (wire.md §6.4, §6.8, §8.1–§8.3), and unpacking a
//! package safely into `<Lib.Dir>/<Name>-<Version>/`.
//!
//! Every URI is tried on the default channel first (direct storage, proxied; or the HostGAPlugin's
//! `extensionArtifact`), then on the other one; when the other one works it becomes the default.
//! URIs are shuffled first, and the whole walk is bounded by [`DOWNLOAD_DEADLINE`].
//!
//! Manifests are read into memory under their document limit. Packages are streamed to a
//! temporary file beside the zip through one fixed buffer, refused past
//! `Wala.ExtensionPackageMaxDownloadMB`, and renamed into place only once whole (the announced
//! length) and readable as a zip within the unpack limits; a failed try leaves no file behind.
//! The platform gives no digest of a package to check (only the optional `encodedSignature`, not
//! checked yet): the zip's own CRCs are checked while unpacking.
//!
//! Unpacking is all-or-nothing: the archive and every entry are checked first (entry count and
//! unpacked size within [`UnpackLimits`], no overlapping entries, no absolute path, no `..`, no
//! symbolic link, no name twice), the files are streamed from the zip on disk into a temporary
//! directory beside the target, and that directory is renamed into place. A package that fails
//! leaves nothing behind. The archive's permission bits are ignored ([`FILE_MODE`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::base::limits::Document;
use crate::base::ziparchive::{ReadLimits, Source, ZipReader};
use crate::documents::extensions::manifest::{parse_manifest, PluginVersionManifest};
use crate::extensions::handler::HandlerDir;
use crate::platform::hostgaplugin::{ArtifactRequest, ContainerIdentity, HostGaPluginClient};
use crate::platform::http::{HttpClient, Request};

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
    /// Every try of the package was over the download limit (or failed otherwise, after one was).
    #[error("Failed to download artifacts: package {name} is larger than the limit of {limit} bytes (Wala.ExtensionPackageMaxDownloadMB): {}", errors.join("; "))]
    TooLarge { name: String, limit: u64, errors: Vec<String> },
    /// A file could not be written.
    #[error("Failed to download artifacts: {0}")]
    File(#[from] crate::base::files::FileError),
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
    /// What a package may unpack to.
    pub unpack_limits: UnpackLimits,
    /// The most bytes a package may be as downloaded ([`Downloader::max_package_size`]).
    pub max_package_size: u64,
}

impl std::fmt::Debug for Downloader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader").field("fast_track", &self.fast_track).finish_non_exhaustive()
    }
}

/// Why one try (one URI on one channel) did not give a usable artifact.
enum Miss {
    /// Nothing usable came: try the other channel, then the next URI.
    Channel(String),
    /// The bytes came but cannot be used (a bad zip, over the size limit): the other channel
    /// would bring the same bytes, so go on to the next URI.
    Uri(String),
}

/// Every URI failed: the lines of [`DownloadError::AllFailed`].
struct Missed(Vec<String>);

impl Downloader<'_> {
    /// `Wala.ExtensionPackageMaxDownloadMB` in bytes.
    pub fn max_package_size(config: &crate::documents::conf::Config) -> u64 {
        config.wala_extension_package_max_download_mb.saturating_mul(1024 * 1024)
    }

    /// Walk `uris` (shuffled), each on the default channel and then the other one, until `try_one`
    /// succeeds: its result and the URI. A channel that worked when the default did not becomes
    /// the default. The walk stops at the deadline.
    fn walk<T>(
        &self,
        channels: &mut Channels,
        uris: &[String],
        mut try_one: impl FnMut(&str, bool, Duration) -> Result<T, Miss>,
    ) -> Result<(T, String), Missed> {
        let start = Instant::now();
        let mut errors = Vec::new();
        for uri in shuffled(uris) {
            for hgap in [channels.host_plugin_first, !channels.host_plugin_first] {
                let remaining = self.deadline.saturating_sub(start.elapsed());
                if remaining.is_zero() {
                    errors.push(format!("gave up after {}s", self.deadline.as_secs()));
                    return Err(Missed(errors));
                }
                let line = |e: &str| {
                    format!(
                        "{} via {}: {}",
                        crate::base::logging::redact_sas(&uri),
                        if hgap { "HostGAPlugin" } else { "direct" },
                        crate::base::logging::redact_sas(e)
                    )
                };
                match try_one(&uri, hgap, remaining) {
                    Ok(got) => {
                        if hgap != channels.host_plugin_first {
                            log::info!(
                                "downloads now go {} first",
                                if hgap { "through the HostGAPlugin" } else { "directly" }
                            );
                            channels.host_plugin_first = hgap;
                        }
                        return Ok((got, uri));
                    }
                    Err(Miss::Channel(e)) => errors.push(line(&e)),
                    Err(Miss::Uri(e)) => {
                        errors.push(line(&e));
                        break;
                    }
                }
            }
        }
        Err(Missed(errors))
    }

    /// The bytes at the first URI (in shuffled order) that answers on either channel, and that
    /// URI, read into memory under `document`'s limit (manifests; packages go to disk, see
    /// [`Self::package`]). `manifest_location` goes with package downloads through the HostGAPlugin.
    pub fn fetch(
        &self,
        channels: &mut Channels,
        uris: &[String],
        manifest_location: Option<&str>,
        document: Document,
    ) -> Result<(Vec<u8>, String), DownloadError> {
        self.walk(channels, uris, |uri, hgap, remaining| {
            if hgap {
                let req = ArtifactRequest {
                    location: uri,
                    manifest_location,
                    fast_track: self.fast_track,
                    document,
                };
                self.hgap
                    .extension_artifact(self.who, &req, remaining)
                    .map_err(|e| Miss::Channel(e.to_string()))
            } else {
                let resp = self
                    .storage
                    .send_once(&Request::get(uri).document(document), remaining)
                    .map_err(|e| Miss::Channel(e.to_string()))?;
                match resp.status {
                    200 => Ok(resp.body),
                    status => Err(Miss::Channel(format!("HTTP {status}"))),
                }
            }
        })
        .map_err(|Missed(errors)| DownloadError::AllFailed { errors })
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
            uri: crate::base::logging::redact_sas(&uri),
            reason: e.to_string(),
        })?;
        Ok((manifest, uri))
    }

    /// Make sure the handler directory `dir` (`<Lib.Dir>/<Name>-<Version>/`, from a checked name
    /// and version) holds the package (§8.3): reuse a zip left by an earlier try
    /// ([`HandlerDir::package_zip`]), else download one from `uris`; unpack; delete the zip.
    ///
    /// A download is streamed to a temporary file beside the zip ([`partial_path`]), refused past
    /// [`Self::max_package_size`], and must end at its announced length; its central directory is
    /// then checked against the unpack limits, and only then is it renamed to the zip's name (so a
    /// zip under that name is always a whole one). Any failure removes the temporary file and
    /// goes on to the other channel or the next URI, under the walk's deadline; a package that
    /// does not unpack also goes on to the next URI.
    pub fn package(
        &self,
        channels: &mut Channels,
        dir: &HandlerDir,
        uris: &[String],
        manifest_uri: &str,
    ) -> Result<PathBuf, DownloadError> {
        self.package_checked(channels, dir, uris, manifest_uri, None)
    }

    /// [`Self::package`], with the zip's signature checked before it is unpacked (a failure is
    /// logged, never fatal: [`super::signature`]).
    pub fn package_checked(
        &self,
        channels: &mut Channels,
        dir: &HandlerDir,
        uris: &[String],
        manifest_uri: &str,
        signature: Option<&super::signature::SignatureCheck>,
    ) -> Result<PathBuf, DownloadError> {
        let zip = dir.package_zip();
        let target = dir.base();
        if zip.is_file() {
            if let Some(check) = signature {
                check.validate_package(zip);
            }
            match unpack_file(zip, target, self.unpack_limits) {
                Ok(()) => {
                    let _ = std::fs::remove_file(zip);
                    return Ok(target.to_path_buf());
                }
                Err(e) => {
                    log::warn!("{}: {e}; downloading it again", zip.display());
                    let _ = std::fs::remove_file(zip);
                }
            }
        }
        let name = dir.full_name();
        let part = partial_path(zip);
        // Left by a daemon stopped in the middle of a download.
        let _ = std::fs::remove_file(&part);
        if let Some(parent) = zip.parent() {
            crate::base::files::ensure_dir(parent, 0o755)?;
        }
        let mut too_large = false;
        let walked = self.walk(channels, uris, |uri, hgap, remaining| {
            let got = self.download_to(&part, uri, hgap, manifest_uri, remaining).and_then(|bytes| {
                self.verify(&part).map_err(|e| Miss::Uri(format!("not a usable package: {e}")))?;
                std::fs::rename(&part, zip).map_err(|e| {
                    Miss::Channel(format!("renaming {} to {}: {e}", part.display(), zip.display()))
                })?;
                let _ = crate::base::files::sync_dir(zip.parent().unwrap_or(Path::new("/")));
                log::info!(
                    "{name}: downloaded {bytes} byte(s) {}",
                    if hgap { "through the HostGAPlugin" } else { "directly" }
                );
                // The download is on disk: check its signature, unpack from there.
                if let Some(check) = signature {
                    check.validate_package(zip);
                }
                let unpacked = unpack_file(zip, target, self.unpack_limits);
                let _ = std::fs::remove_file(zip);
                unpacked.map_err(|e| Miss::Uri(e.to_string()))
            });
            if got.is_err() {
                let _ = std::fs::remove_file(&part);
            }
            if let Err(Miss::Uri(why)) = &got {
                too_large |= why.starts_with(TOO_LARGE);
            }
            got
        });
        match walked {
            Ok(((), _)) => Ok(target.to_path_buf()),
            Err(Missed(errors)) if too_large => {
                Err(DownloadError::TooLarge { name: name.to_string(), limit: self.max_package_size, errors })
            }
            Err(Missed(errors)) => Err(DownloadError::AllFailed { errors }),
        }
    }

    /// Stream one try into a new `part` file (mode 0600): the bytes written.
    fn download_to(
        &self,
        part: &Path,
        uri: &str,
        hgap: bool,
        manifest_uri: &str,
        remaining: Duration,
    ) -> Result<u64, Miss> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(part)
            .map_err(|e| Miss::Channel(format!("creating {}: {e}", part.display())))?;
        let mut out = &file;
        let limit = self.max_package_size;
        let over = |e: &crate::platform::http::HttpError| {
            matches!(e, crate::platform::http::HttpError::TooLarge { .. })
        };
        let written = if hgap {
            let req = ArtifactRequest {
                location: uri,
                manifest_location: Some(manifest_uri),
                fast_track: self.fast_track,
                document: Document::ExtensionPackage,
            };
            self.hgap.extension_artifact_to(self.who, &req, remaining, limit, &mut out).map_err(
                |e| match &e {
                    crate::platform::hostgaplugin::HostGaPluginError::Http(h) if over(h) => self.too_large(),
                    _ => Miss::Channel(e.to_string()),
                },
            )?
        } else {
            let request = Request::get(uri).document(Document::ExtensionPackage);
            let resp = self.storage.stream_once(&request, remaining, limit, &mut out).map_err(|e| {
                if over(&e) {
                    self.too_large()
                } else {
                    Miss::Channel(e.to_string())
                }
            })?;
            if resp.status != 200 {
                return Err(Miss::Channel(format!("HTTP {}", resp.status)));
            }
            resp.written
        };
        file.sync_all().map_err(|e| Miss::Channel(format!("fsync {}: {e}", part.display())))?;
        Ok(written)
    }

    fn too_large(&self) -> Miss {
        Miss::Uri(format!(
            "{TOO_LARGE} {} bytes (Wala.ExtensionPackageMaxDownloadMB={})",
            self.max_package_size,
            self.max_package_size / (1024 * 1024)
        ))
    }

    /// The downloaded file is a zip whose central directory passes the unpack limits.
    fn verify(&self, part: &Path) -> Result<(), UnpackError> {
        let src = crate::base::ziparchive::FileSource::open(part)
            .map_err(|e| UnpackError::File(crate::base::files::FileError::new("open", part, e)))?;
        let limits = ReadLimits {
            max_entries: self.unpack_limits.max_entries,
            max_total_size: self.unpack_limits.max_size,
        };
        ZipReader::new(&src, limits)?;
        Ok(())
    }
}

/// How a try over the size limit is described (and recognised).
const TOO_LARGE: &str = "larger than the limit of";

/// The temporary file a package is downloaded to: `.<Name>__<Version>.zip.part`, beside the zip
/// (the same directory, so the rename is atomic). One name per package, so a file left by a
/// stopped daemon is removed by the next try.
pub fn partial_path(zip: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(zip.file_name().unwrap_or_default());
    name.push(".part");
    zip.with_file_name(name)
}

/// The URIs in random order (waagent shuffles them so load spreads over the replicas).
fn shuffled(uris: &[String]) -> Vec<String> {
    let mut v = uris.to_vec();
    let mut seed = [0u8; 8];
    if crate::base::random::fill(&mut seed).is_err() {
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
    Zip(#[from] crate::base::ziparchive::ZipError),
    #[error("entry {name:?} is refused: {why}")]
    Unsafe { name: String, why: &'static str },
    #[error("{0}")]
    File(#[from] crate::base::files::FileError),
    /// The target is not a directory name inside its parent.
    #[error("cannot unpack here: {0}")]
    Target(String),
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

/// What an extension package may unpack to (`Wala.ExtensionPackageMaxEntries`,
/// `Wala.ExtensionPackageMaxSizeMB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    pub max_entries: usize,
    pub max_size: u64,
}

impl UnpackLimits {
    pub fn from_config(config: &crate::documents::conf::Config) -> Self {
        Self {
            max_entries: usize::try_from(config.wala_extension_package_max_entries).unwrap_or(usize::MAX),
            max_size: config.wala_extension_package_max_size_mb.saturating_mul(1024 * 1024),
        }
    }
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self::from_config(&crate::documents::conf::Config::default())
    }
}

/// The mode of every unpacked file, whatever the zip says: waagent ignores the archive's
/// permission bits (Python's `extractall` creates files 0644 under the daemon's umask) and adds
/// `u+x`. A package can therefore never make a handler file group- or world-writable, setuid or
/// setgid.
pub const FILE_MODE: u32 = 0o744;
/// The mode of every unpacked directory.
pub const DIR_MODE: u32 = 0o755;

/// Unpack the zip `bytes` into `target` ([`unpack_from`]).
pub fn unpack(bytes: &[u8], target: &Path, limits: UnpackLimits) -> Result<(), UnpackError> {
    unpack_from(bytes, target, limits)
}

/// Unpack the zip file `zip` into `target`, reading it in place ([`unpack_from`]).
pub fn unpack_file(zip: &Path, target: &Path, limits: UnpackLimits) -> Result<(), UnpackError> {
    let src = crate::base::ziparchive::FileSource::open(zip)
        .map_err(|e| UnpackError::File(crate::base::files::FileError::new("open", zip, e)))?;
    unpack_from(&src, target, limits)
}

/// Unpack a zip into `target` all-or-nothing: the archive and every entry are checked first (the
/// limits, overlapping entries, absolute paths, `..`, symbolic links, duplicates), the entries are
/// streamed one at a time into a temporary directory beside `target`, which then replaces
/// `target`. Files get [`FILE_MODE`] and directories [`DIR_MODE`], whatever the archive says.
pub fn unpack_from<S: Source + ?Sized>(
    src: &S,
    target: &Path,
    limits: UnpackLimits,
) -> Result<(), UnpackError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let zip =
        ZipReader::new(src, ReadLimits { max_entries: limits.max_entries, max_total_size: limits.max_size })?;
    // Every entry is checked before anything is written; the paths are worked out again while
    // writing rather than kept (memory stays proportional to the central directory alone).
    let mut files = HashSet::new();
    for e in zip.entries() {
        let refuse = |why| UnpackError::Unsafe { name: e.name.chars().take(200).collect(), why };
        if e.is_symlink {
            return Err(refuse("symbolic link"));
        }
        let parts = safe_components(&e.name)?;
        if parts.is_empty() {
            continue;
        }
        if !e.is_dir() && !files.insert(parts.join("/")) {
            return Err(refuse("a second entry of the same name"));
        }
    }
    drop(files);
    let parent = target.parent().unwrap_or(Path::new("/"));
    let leaf = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = crate::documents::extensions::names::join_under(
        parent,
        &format!(".{leaf}.unpack-{}", std::process::id()),
    )
    .map_err(|e| UnpackError::Target(e.to_string()))?;
    crate::base::files::ensure_dir(parent, 0o755)?;
    let _ = std::fs::remove_dir_all(&tmp);
    let io = |op, p: &Path, e| UnpackError::File(crate::base::files::FileError::new(op, p, e));
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true).mode(DIR_MODE);
    let write = || -> Result<(), UnpackError> {
        std::fs::DirBuilder::new().mode(DIR_MODE).create(&tmp).map_err(|e| io("create", &tmp, e))?;
        for e in zip.entries() {
            let parts = safe_components(&e.name)?;
            if parts.is_empty() {
                continue;
            }
            let path = parts.iter().fold(tmp.clone(), |p, c| p.join(c));
            if e.is_dir() {
                dirs.create(&path).map_err(|err| io("create", &path, err))?;
                continue;
            }
            if let Some(dir) = path.parent() {
                dirs.create(dir).map_err(|err| io("create", dir, err))?;
            }
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|err| io("create", &path, err))?;
            let mut out = std::io::BufWriter::with_capacity(32 * 1024, file);
            zip.extract(e, &mut out)?;
            let file = out.into_inner().map_err(|err| io("write", &path, err.into_error()))?;
            // Set, not masked by the umask: the same mode on every host.
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
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
        let mut z = crate::base::ziparchive::ZipWriter::new(0);
        for (n, d, m) in files {
            z.add(n, d.as_bytes(), *m).expect("add");
        }
        z.finish().expect("finish")
    }

    #[test]
    fn unpacks_with_waagents_modes_and_marks_files_executable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("X-1.0");
        let bytes = zip(&[("HandlerManifest.json", "[]", 0o644), ("bin/run.sh", "echo", 0o600)]);
        unpack(&bytes, &target, UnpackLimits::default()).expect("unpack");
        let mode = |p: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(target.join(p)).expect("meta").permissions().mode() & 0o777
        };
        assert_eq!(mode("HandlerManifest.json"), 0o744);
        assert_eq!(mode("bin/run.sh"), 0o744);
        // A second unpack replaces the directory (a stale file disappears).
        std::fs::write(target.join("stale"), "x").expect("write");
        unpack(&bytes, &target, UnpackLimits::default()).expect("again");
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
            let err = unpack(&bytes, &target, UnpackLimits::default()).expect_err(name).to_string();
            assert!(err.contains(why), "{name}: {err}");
            assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0, "{name}: nothing left");
        }
    }

    /// Unpack `bytes` into a fresh directory with the default limits: the error, if any, and
    /// whether anything was left behind.
    fn unpack_fresh(bytes: &[u8]) -> (Result<(), UnpackError>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let result = unpack(bytes, &dir.path().join("X-1.0"), UnpackLimits::default());
        (result, dir)
    }

    fn nothing_left(dir: &tempfile::TempDir) {
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0, "nothing is left behind");
    }

    // Hostile packages. Each is a consistent archive the old reader unpacked: it first held every
    // entry in memory (a 1 MB package took the daemon to 2.1 GB), then wrote it all.

    #[test]
    fn a_ratio_bomb_is_refused_before_anything_is_unpacked() {
        let limit = UnpackLimits::default().max_size;
        let bomb = crate::base::ziparchive::hostile::ratio_bomb(limit / (1 << 20) + 1);
        assert!(bomb.len() < 1_200_000, "a {} byte package", bomb.len());
        let (result, dir) = unpack_fresh(&bomb);
        let err = result.expect_err("refused").to_string();
        assert_eq!(
            err,
            format!("not a readable zip: the archive unpacks to more than the limit of {limit} bytes")
        );
        nothing_left(&dir);
        // Under a limit that allows it, the same shape unpacks (a smaller one, to spare the disk).
        let (result, dir) = unpack_fresh(&crate::base::ziparchive::hostile::ratio_bomb(3));
        result.expect("3 MiB is within the limit");
        let file = dir.path().join("X-1.0/zeros.bin");
        assert_eq!(std::fs::metadata(file).expect("unpacked").len(), 3 << 20);
    }

    #[test]
    fn overlapping_entries_are_refused() {
        // 1000 entries sharing one 1 MiB stream: 1 GiB from a 2 KiB package.
        let bomb = crate::base::ziparchive::hostile::overlap_bomb(1000, 1);
        let (result, dir) = unpack_fresh(&bomb);
        let err = result.expect_err("refused").to_string();
        assert!(err.contains("entries \"bomb.bin\" and \"bomb.bin\" overlap"), "{err}");
        nothing_left(&dir);
        let (result, dir) = unpack_fresh(&crate::base::ziparchive::hostile::nested_overlap());
        let err = result.expect_err("refused").to_string();
        assert!(err.contains("entries \"outer.txt\" and \"inner.txt\" overlap"), "{err}");
        nothing_left(&dir);
    }

    #[test]
    fn too_many_entries_are_refused() {
        let limit = UnpackLimits::default().max_entries;
        let (result, dir) = unpack_fresh(&crate::base::ziparchive::hostile::many_entries(limit + 1));
        let err = result.expect_err("refused").to_string();
        assert!(
            err.ends_with(&format!("has {} entries, more than the limit of {limit}", limit + 1)),
            "{err}"
        );
        nothing_left(&dir);
    }

    #[test]
    fn the_archives_permission_bits_are_not_trusted() {
        let bytes = zip(&[
            ("world.sh", "echo", 0o777),
            ("setuid", "x", 0o4755),
            ("group-writable", "x", 0o664),
            ("sub/private", "x", 0o400),
        ]);
        let (result, dir) = unpack_fresh(&bytes);
        result.expect("unpack");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join("X-1.0").join(p)).expect("meta").permissions().mode() & 0o7777
        };
        for file in ["world.sh", "setuid", "group-writable", "sub/private"] {
            assert_eq!(mode(file), FILE_MODE, "{file}");
        }
        assert_eq!(mode("sub") & 0o022, 0, "directories are not group- or world-writable");
    }

    #[test]
    fn a_name_twice_is_refused() {
        let bytes = zip(&[("a.sh", "one", 0o644), ("b.sh", "two", 0o644)]).replace_bytes("b.sh", "a.sh");
        let (result, dir) = unpack_fresh(&bytes);
        assert!(result.expect_err("refused").to_string().contains("a second entry of the same name"));
        nothing_left(&dir);
    }

    trait ReplaceBytes {
        fn replace_bytes(self, from: &str, to: &str) -> Vec<u8>;
    }

    impl ReplaceBytes for Vec<u8> {
        fn replace_bytes(mut self, from: &str, to: &str) -> Vec<u8> {
            let (from, to) = (from.as_bytes(), to.as_bytes());
            let mut i = 0;
            while let Some(at) = self[i..].windows(from.len()).position(|w| w == from) {
                self[i + at..i + at + from.len()].copy_from_slice(to);
                i += at + from.len();
            }
            self
        }
    }

    #[test]
    fn a_zip64_package_unpacks_with_every_check() {
        // Python's writer with its ZIP64 thresholds lowered: every entry's sizes and offset in
        // ZIP64 extra fields, and a ZIP64 end record.
        let dir = tempfile::tempdir().expect("tempdir");
        let zip = dir.path().join("pkg.zip");
        let script = "import sys, zipfile\nzipfile.ZIP64_LIMIT = 1\nzipfile.ZIP_FILECOUNT_LIMIT = 1\n\
            z = zipfile.ZipFile(sys.argv[1], 'w')\nz.writestr('HandlerManifest.json', '[]')\n\
            z.writestr('bin/run.sh', 'echo hi', compress_type=zipfile.ZIP_DEFLATED)\nz.close()";
        let out =
            std::process::Command::new("python3").args(["-c", script]).arg(&zip).output().expect("python3");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let target = dir.path().join("X-1.0");
        unpack_file(&zip, &target, UnpackLimits::default()).expect("a ZIP64 package unpacks");
        assert_eq!(std::fs::read_to_string(target.join("bin/run.sh")).expect("file"), "echo hi");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(target.join("bin/run.sh")).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode, FILE_MODE);
        // Its limits hold as for any package.
        let err =
            unpack_file(&zip, &dir.path().join("Y-1.0"), UnpackLimits { max_entries: 1, max_size: 1 << 20 })
                .expect_err("two entries");
        assert!(err.to_string().ends_with("has 2 entries, more than the limit of 1"), "{err}");
        assert!(!dir.path().join("Y-1.0").exists());
    }

    #[test]
    fn the_partial_download_is_a_hidden_file_beside_the_zip() {
        let zip = Path::new("/var/lib/waagent/Pub.Ext__1.0.zip");
        assert_eq!(partial_path(zip), Path::new("/var/lib/waagent/.Pub.Ext__1.0.zip.part"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(unpack(b"PK\x05\x06garbage", &dir.path().join("x"), UnpackLimits::default()).is_err());
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
