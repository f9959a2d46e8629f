//! Size caps on every document wala reads from outside: each kind has one limit, applied where
//! the bytes are read (the HTTP body in [`crate::platform::http`], the file read through [`read_file`]), so
//! no parser ever sees more than its limit, and an oversized document is refused with an error
//! naming it and the limit. docs/security.md lists them with the reasoning; a test keeps that
//! table and [`Document::ALL`] in step.
//!
//! The numbers are far above anything the platform sends (the largest documents in the team's
//! fixtures are a 143 KiB extension status and a 23 KiB vmSettings) and far below what a parser
//! could turn into a memory or time problem: every parser is linear, and the element trees cost a
//! bounded multiple of their input.

use std::io::{self, Read};
use std::path::Path;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// A kind of document read from the platform, the provisioning media, an extension or the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Document {
    /// `ovf-env.xml` from the provisioning DVD, `--ovf FILE` or IMDS `reprovisiondata`.
    Ovf,
    /// The WireServer goal state.
    GoalState,
    /// `HostingEnvironmentConfig`.
    HostingEnvironmentConfig,
    /// `SharedConfig`.
    SharedConfig,
    /// `Certificates` (the encrypted PKCS#7 bundle of the goal state's certificates).
    Certificates,
    /// `ExtensionsConfig`.
    ExtensionsConfig,
    /// `RemoteAccess` (JIT users, each with an encrypted password).
    RemoteAccess,
    /// The HostGAPlugin's `vmSettings`.
    VmSettings,
    /// An extension or agent manifest.
    ExtensionManifest,
    /// The `InVMArtifactsProfileBlob` an ExtensionsConfig names (`onHold`).
    ArtifactsProfile,
    /// The WireServer's or the HostGAPlugin's `versions`.
    Versions,
    /// IMDS `instance` JSON.
    ImdsInstance,
    /// An extension package (zip) as downloaded: streamed to a file, never read into memory; its
    /// limit is the configured one ([`crate::extensions::download::Downloader::max_package_size`]), this the
    /// default.
    ExtensionPackage,
    /// An extension's `HandlerManifest.json`.
    HandlerManifest,
    /// An extension's `<seq>.status` file.
    ExtensionStatus,
    /// wala's `config/HandlerStatus`, an extension's `heartbeat.log` and other small state files.
    HandlerState,
    /// `/etc/waagent.conf`.
    WaagentConf,
    /// Any other HTTP response body (health, telemetry, status upload answers).
    Response,
}

impl Document {
    /// Every kind, in the order of the table in docs/security.md.
    pub const ALL: &'static [Document] = &[
        Document::Ovf,
        Document::GoalState,
        Document::HostingEnvironmentConfig,
        Document::SharedConfig,
        Document::Certificates,
        Document::ExtensionsConfig,
        Document::RemoteAccess,
        Document::VmSettings,
        Document::ExtensionManifest,
        Document::ArtifactsProfile,
        Document::Versions,
        Document::ImdsInstance,
        Document::ExtensionPackage,
        Document::HandlerManifest,
        Document::ExtensionStatus,
        Document::HandlerState,
        Document::WaagentConf,
        Document::Response,
    ];

    /// The name used in errors and in docs/security.md.
    pub const fn name(self) -> &'static str {
        match self {
            Document::Ovf => "ovf-env.xml",
            Document::GoalState => "GoalState",
            Document::HostingEnvironmentConfig => "HostingEnvironmentConfig",
            Document::SharedConfig => "SharedConfig",
            Document::Certificates => "Certificates",
            Document::ExtensionsConfig => "ExtensionsConfig",
            Document::RemoteAccess => "RemoteAccess",
            Document::VmSettings => "vmSettings",
            Document::ExtensionManifest => "extension manifest",
            Document::ArtifactsProfile => "InVMArtifactsProfile",
            Document::Versions => "versions",
            Document::ImdsInstance => "IMDS instance metadata",
            Document::ExtensionPackage => "extension package",
            Document::HandlerManifest => "HandlerManifest.json",
            Document::ExtensionStatus => "extension status file",
            Document::HandlerState => "extension state file",
            Document::WaagentConf => "waagent.conf",
            Document::Response => "HTTP response",
        }
    }

    /// The largest accepted size in bytes.
    pub const fn limit(self) -> u64 {
        match self {
            // Real ones are 1-3 KiB plus CustomData, which Azure caps at 64 KiB (88 KiB in base64).
            Document::Ovf => MIB,
            // 2 KiB, 2.3 KiB, 0.5 KiB and 3 KiB in the fixtures.
            Document::GoalState
            | Document::HostingEnvironmentConfig
            | Document::Versions
            | Document::ExtensionManifest => MIB,
            // A few hundred bytes: four small members.
            Document::ArtifactsProfile => MIB,
            // Both grow with the deployment: one instance per role instance, one certificate (about
            // 2 KiB) per secret.
            Document::SharedConfig | Document::Certificates => 4 * MIB,
            // 15 KiB and 23 KiB in the fixtures; they grow with extensions and their settings.
            Document::ExtensionsConfig | Document::VmSettings => 8 * MIB,
            // About 1 KiB per user (the encrypted password is most of it); a handful of users.
            Document::RemoteAccess => MIB,
            // 1 KiB real; tags and the network section are bounded by the platform.
            Document::ImdsInstance => MIB,
            // The default of `Wala.ExtensionPackageMaxDownloadMB`, which replaces it: packages are
            // streamed to disk, never held in memory (monitoring agents are hundreds of MiB).
            Document::ExtensionPackage => GIB,
            Document::HandlerManifest | Document::HandlerState => MIB,
            // waagent reports at most 128 KiB of substatus; the largest fixture is 143 KiB.
            Document::ExtensionStatus => 4 * MIB,
            // 4.3 KiB shipped.
            Document::WaagentConf => MIB,
            Document::Response => MIB,
        }
    }

    /// The error for a document of this kind over its limit.
    pub fn too_large(self) -> TooLarge {
        TooLarge { document: self.name(), limit: self.limit() }
    }
}

/// A document over its size limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {document} is larger than its limit of {limit} bytes")]
pub struct TooLarge {
    pub document: &'static str,
    pub limit: u64,
}

impl From<TooLarge> for io::Error {
    fn from(e: TooLarge) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Read at most `doc`'s limit from `reader`; more is an [`io::ErrorKind::InvalidData`] error whose
/// inner error is a [`TooLarge`].
pub fn read_limited(reader: impl Read, doc: Document) -> io::Result<Vec<u8>> {
    read_limited_into(reader, doc, Vec::new())
}

fn read_limited_into(reader: impl Read, doc: Document, mut out: Vec<u8>) -> io::Result<Vec<u8>> {
    reader.take(doc.limit() + 1).read_to_end(&mut out)?;
    if out.len() as u64 > doc.limit() {
        return Err(doc.too_large().into());
    }
    Ok(out)
}

/// Read the file `path` holding a `doc`, refusing one over the limit without reading it all (the
/// size is checked first, and the read stops one byte past the limit in case it grows meanwhile).
/// The buffer is sized from that check, so a small file takes one read and the one that finds
/// its end.
pub fn read_file(path: &Path, doc: Document) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > doc.limit() {
        return Err(doc.too_large().into());
    }
    let capacity = usize::try_from(len).unwrap_or(0).saturating_add(1);
    read_limited_into(file, doc, Vec::with_capacity(capacity))
}

/// [`read_file`] as UTF-8 text (an error if it is not UTF-8, as `std::fs::read_to_string`).
pub fn read_file_to_string(path: &Path, doc: Document) -> io::Result<String> {
    String::from_utf8(read_file(path, doc)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Whether `err` is (or wraps) a [`TooLarge`].
pub fn is_too_large(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<TooLarge>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_over_the_limit_are_refused_with_the_document_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("waagent.conf");
        let limit = Document::WaagentConf.limit() as usize;
        std::fs::write(&path, vec![b'#'; limit]).expect("write");
        assert_eq!(read_file(&path, Document::WaagentConf).expect("at the limit").len(), limit);
        std::fs::write(&path, vec![b'#'; limit + 1]).expect("write");
        let err = read_file(&path, Document::WaagentConf).expect_err("over the limit");
        assert!(is_too_large(&err));
        assert_eq!(err.to_string(), format!("the waagent.conf is larger than its limit of {limit} bytes"));
        // A stream that is longer than it said (a growing file, a pipe) is cut at the limit too.
        let err = read_limited(&vec![0u8; limit + 10][..], Document::WaagentConf).expect_err("stream");
        assert!(is_too_large(&err));
    }

    #[test]
    fn docs_security_lists_every_limit() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md"))
            .expect("docs/security.md");
        for d in Document::ALL {
            let row = format!("| {} | {} |", d.name(), d.limit());
            assert!(doc.contains(&row), "docs/security.md has no row starting {row:?}");
        }
    }
}
