//! Extension package signatures, as current waagent checks them (`Debug.EnableSignatureValidation`,
//! off by default, as with waagent): when it is on and the goal state gives the handler an
//! `encodedSignature` (a base64 detached CMS signature of the zip), the downloaded zip is checked
//! against the trust anchor in `<Lib.Dir>/microsoft_root_certificate.pem` before it is unpacked
//! (in the `wala-crypto` helper: `cms -verify -binary -purpose any -no_check_time`, certificate
//! expiry not enforced), then the package's `HandlerManifest.json` `signingInfo` (`type`,
//! `publisher`, `version`, compared without regard to case) must name the handler. When both
//! hold, an empty `package_validated` file is left in the handler directory.
//!
//! Like waagent today, a failure is reported (one warning line, "This failure can be safely
//! ignored; will continue processing the package.") but does not stop the extension: waagent does
//! not enforce signatures yet.
//!
//! Each step is also a telemetry event, as waagent's `signature_validation_util` sends them, named
//! by the extension and its version: `SignatureValidation` when a check starts (and when it could
//! not be attempted: no trust anchor, a signature that is not base64), `PackageSignatureResult`
//! with the verification's outcome and duration (and, when it failed, one more
//! `SignatureValidation` event carrying the encoded signature, for the platform to debug), and
//! `PackageSigningInfoResult` with the `signingInfo` check's. A failure's message starts with
//! `[WARNING]`, as waagent's.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::documents::extensions::handler_manifest::HandlerManifest;
use crate::documents::extensions::Extension;

/// The trust anchor's file in `Lib.Dir` (waagent writes its Microsoft root certificate there).
pub const SIGNING_CERTIFICATE_FILE: &str = "microsoft_root_certificate.pem";
/// Left in a handler directory whose package signature and `signingInfo` were both checked.
pub const VALIDATION_STATE_FILE: &str = "package_validated";
/// How long the helper may take over one package.
const VERIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The signature check of one handler's package.
#[derive(Debug)]
pub struct SignatureCheck {
    full_name: String,
    name: String,
    version: String,
    signature: String,
    ca_file: PathBuf,
    events: PathBuf,
    validated: Cell<bool>,
}

impl SignatureCheck {
    /// The check for `h` at `version`, or `None` when signatures are not checked (the switch is
    /// off, or the goal state gives no signature: logged, as waagent).
    pub fn new(enabled: bool, lib_dir: &Path, h: &Extension, version: &str) -> Option<Self> {
        if !enabled {
            return None;
        }
        let full_name = format!("{}-{version}", h.name);
        if h.encoded_signature.trim().is_empty() {
            log::info!(
                "No signature for extension '{full_name}' in goal state, skipping signature validation."
            );
            return None;
        }
        Some(Self {
            full_name,
            name: h.name.clone(),
            version: version.to_string(),
            signature: h.encoded_signature.clone(),
            ca_file: lib_dir.join(SIGNING_CERTIFICATE_FILE),
            events: lib_dir.join("events"),
            validated: Cell::new(false),
        })
    }

    /// Check the zip at `package` (before it is unpacked). Never fails the download: a failure
    /// is one warning line.
    pub fn validate_package(&self, package: &Path) {
        let start = Instant::now();
        self.info("SignatureValidation", format!("Validating signature for package '{}'", self.full_name));
        match verify(package, &self.signature, &self.ca_file) {
            Ok(()) => {
                self.validated.set(true);
                self.event(
                    "PackageSignatureResult",
                    true,
                    format!("Successfully validated signature for package '{}'", self.full_name),
                    start.elapsed(),
                );
                log::info!("Successfully validated signature for package '{}'", self.full_name);
            }
            Err(VerifyError::Failed(why)) => {
                self.validated.set(false);
                let message = format!("Signature validation failed for package '{}'. {why}", self.full_name);
                self.failure("PackageSignatureResult", &message, start.elapsed());
                self.event(
                    "SignatureValidation",
                    true,
                    format!("Package encoded signature: '{}'", self.signature),
                    Duration::ZERO,
                );
            }
            Err(VerifyError::NotAttempted(why)) => {
                self.validated.set(false);
                let message = format!("Signature validation failed for package '{}'. {why}", self.full_name);
                self.failure("SignatureValidation", &message, Duration::ZERO);
            }
        }
    }

    /// After unpacking: check `signingInfo`, and record a package whose signature and
    /// `signingInfo` both held in `dir`.
    pub fn after_unpack(&self, dir: &Path, manifest: &HandlerManifest) {
        let start = Instant::now();
        self.info(
            "SignatureValidation",
            format!("Validating handler manifest 'signingInfo' of extension '{}'", self.full_name),
        );
        if let Err(why) = check_signing_info(manifest, &self.name, &self.version) {
            self.failure("PackageSigningInfoResult", &why, start.elapsed());
            return;
        }
        let message = format!(
            "Successfully validated handler manifest 'signingInfo' for extension '{}'",
            self.full_name
        );
        log::info!("{message}");
        self.event("PackageSigningInfoResult", true, message, start.elapsed());
        if self.validated.get() {
            let state = dir.join(VALIDATION_STATE_FILE);
            if let Err(e) =
                crate::base::files::write_atomic(&state, b"", crate::base::files::WriteOptions::mode(0o600))
            {
                log::warn!("Error saving signature validation state file ('{}'): {e}", state.display());
            }
        }
    }

    /// A step's start, logged and sent.
    fn info(&self, operation: &str, message: String) {
        log::info!("{message}");
        self.event(operation, true, message, Duration::ZERO);
    }

    /// A failed step: one warning line, and its event with waagent's `[WARNING]` prefix.
    fn failure(&self, operation: &str, why: &str, took: Duration) {
        let message = format!("{why}\n{IGNORED}");
        log::warn!("{message}");
        self.event(operation, false, format!("[WARNING] {message}"), took);
    }

    fn event(&self, operation: &str, success: bool, message: String, took: Duration) {
        let event = crate::platform::telemetry::AgentEvent::new(operation, success, message, took)
            .about(&self.name, &self.version);
        crate::platform::telemetry::record_in(&self.events, &event);
    }
}

/// What waagent appends to a signature failure.
const IGNORED: &str = "This failure can be safely ignored; will continue processing the package.";

/// Why a package's signature did not verify.
#[derive(Debug)]
enum VerifyError {
    /// The check ran and refused the signature (or could not read the package).
    Failed(String),
    /// The check could not run: no trust anchor, a signature that is not base64.
    NotAttempted(String),
}

/// The detached signature (base64 of DER) over `package`, checked by the helper against `ca_file`.
fn verify(package: &Path, signature: &str, ca_file: &Path) -> Result<(), VerifyError> {
    let compact: String = signature.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = crate::crypto::helper::unbase64(&compact)
        .map_err(|_| VerifyError::NotAttempted("Error: the signature is not base64".into()))?;
    if !ca_file.is_file() {
        return Err(VerifyError::NotAttempted(format!(
            "Error: signing certificate was not found at expected location ('{}').",
            ca_file.display()
        )));
    }
    let call = crate::crypto::helper::Call::VerifyPackage {
        package: package.to_path_buf(),
        ca_file: ca_file.to_path_buf(),
    };
    let mut no_body = |_: &[u8]| Err(std::io::Error::other("a signature check has no streamed body"));
    match crate::crypto::helper::call(&call, &der, VERIFY_TIMEOUT, &mut no_body) {
        Ok(crate::crypto::helper::Answer::Verified) => Ok(()),
        Ok(_) => Err(VerifyError::NotAttempted("Error: the helper answered with something else".into())),
        Err(e @ crate::crypto::helper::HelperError::Failed(_)) => {
            Err(VerifyError::Failed(format!("Error: {e}")))
        }
        Err(e) => Err(VerifyError::NotAttempted(format!("Error: {e}"))),
    }
}

/// waagent's `signingInfo` check: the manifest's `type`, `publisher` and `version` must be the
/// handler's (`<publisher>.<type>`, split at the last dot) and version, without regard to case.
pub fn check_signing_info(manifest: &HandlerManifest, name: &str, version: &str) -> Result<(), String> {
    let Some(info) = &manifest.signing_info else {
        return Err("HandlerManifest.json does not contain 'signingInfo'".into());
    };
    let Some((publisher, r#type)) = name.rsplit_once('.') else {
        return Err(format!(
            "Error during manifest 'signingInfo' validation for extension '{name}'. Error: no publisher"
        ));
    };
    for (attribute, found, expected) in [
        ("type", &info.r#type, r#type),
        ("publisher", &info.publisher, publisher),
        ("version", &info.version, version),
    ] {
        let Some(found) = found else {
            return Err(format!("HandlerManifest.json does not contain attribute 'signingInfo.{attribute}'"));
        };
        if found.to_lowercase() != expected.to_lowercase() {
            return Err(format!(
                "expected extension {attribute} '{expected}' does not match downloaded package {attribute} '{}'",
                crate::documents::extensions::excerpt(found)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(signing_info: &str) -> HandlerManifest {
        let text = format!(
            r#"[{{"version":1.0,"handlerManifest":{{"installCommand":"i","uninstallCommand":"u","updateCommand":"p","enableCommand":"e","disableCommand":"d"}}{signing_info}}}]"#
        );
        crate::documents::extensions::parse_handler_manifest(&text).expect("manifest")
    }

    #[test]
    fn signing_info_must_name_the_handler_and_version() {
        let good = manifest(
            r#","signingInfo":{"type":"customscript","publisher":"microsoft.azure.extensions","version":"2.1.6"}"#,
        );
        assert_eq!(check_signing_info(&good, "Microsoft.Azure.Extensions.CustomScript", "2.1.6"), Ok(()));
        assert_eq!(
            check_signing_info(&good, "Microsoft.Azure.Extensions.CustomScript", "2.1.7"),
            Err("expected extension version '2.1.7' does not match downloaded package version '2.1.6'".into())
        );
        assert!(check_signing_info(&good, "Contoso.Azure.Extensions.CustomScript", "2.1.6")
            .unwrap_err()
            .starts_with("expected extension publisher 'Contoso.Azure.Extensions'"));
        assert_eq!(
            check_signing_info(&manifest(""), "A.B", "1.0"),
            Err("HandlerManifest.json does not contain 'signingInfo'".into())
        );
        let partial = manifest(r#","signingInfo":{"type":"B","publisher":"A"}"#);
        assert_eq!(
            check_signing_info(&partial, "A.B", "1.0"),
            Err("HandlerManifest.json does not contain attribute 'signingInfo.version'".into())
        );
        let wrong_types = manifest(r#","signingInfo":{"type":1,"publisher":["A"],"version":null}"#);
        assert_eq!(
            check_signing_info(&wrong_types, "A.B", "1.0"),
            Err("HandlerManifest.json does not contain attribute 'signingInfo.type'".into())
        );
        let not_object = manifest(r#","signingInfo":"A.B-1.0""#);
        assert!(check_signing_info(&not_object, "A.B", "1.0").is_err());
        let long = manifest(&format!(
            r#","signingInfo":{{"type":"{}","publisher":"A","version":"1.0"}}"#,
            "x".repeat(5000)
        ));
        assert!(
            check_signing_info(&long, "A.B", "1.0").unwrap_err().len() < 200,
            "the value is cut in the message"
        );
        assert!(check_signing_info(&good, "NoDot", "2.1.6").is_err());
    }

    #[test]
    fn no_check_when_off_or_unsigned() {
        let mut h = Extension::new("A.B".into(), "1.0".into());
        h.encoded_signature = "MIIB".into();
        assert!(SignatureCheck::new(false, Path::new("/lib"), &h, "1.0").is_none());
        let check = SignatureCheck::new(true, Path::new("/lib"), &h, "1.0").expect("on");
        assert_eq!(check.ca_file, Path::new("/lib").join(SIGNING_CERTIFICATE_FILE));
        h.encoded_signature = " \n".into();
        assert!(SignatureCheck::new(true, Path::new("/lib"), &h, "1.0").is_none());
    }

    #[test]
    fn a_package_that_cannot_be_checked_is_not_validated_and_not_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let zip = dir.path().join("p.zip");
        std::fs::write(&zip, b"PK").expect("zip");
        let mut h = Extension::new("A.B".into(), "1.0".into());
        h.encoded_signature = "not base64!".into();
        let check = SignatureCheck::new(true, dir.path(), &h, "1.0").expect("on");
        let not_attempted = |r: Result<(), VerifyError>| match r {
            Err(VerifyError::NotAttempted(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(not_attempted(verify(&zip, &h.encoded_signature, &check.ca_file)).contains("not base64"));
        assert!(
            not_attempted(verify(&zip, "AAAA", &check.ca_file)).contains("signing certificate was not found")
        );
        check.validate_package(&zip);
        let good = manifest(r#","signingInfo":{"type":"B","publisher":"A","version":"1.0"}"#);
        check.after_unpack(dir.path(), &good);
        assert!(!dir.path().join(VALIDATION_STATE_FILE).exists(), "signingInfo alone is not enough");
        // The events, named by the extension: the signature check could not be attempted; the
        // signingInfo check passed.
        let events = crate::platform::telemetry::queued(&crate::base::root::HostRoot::new("/"), dir.path());
        let outline: Vec<(&str, bool)> =
            events.iter().map(|(_, e)| (e.operation.as_str(), e.success)).collect();
        assert_eq!(
            outline,
            [
                ("SignatureValidation", true),
                ("SignatureValidation", false),
                ("SignatureValidation", true),
                ("PackageSigningInfoResult", true)
            ]
        );
        assert!(events[1].1.message.starts_with("[WARNING] Signature validation failed for package 'A.B-1.0'. Error: the signature is not base64\n"));
        assert!(events.iter().all(|(_, e)| e.subject == Some(("A.B".into(), "1.0".into()))));
        let wrong = manifest(r#","signingInfo":{"type":"C","publisher":"A","version":"1.0"}"#);
        check.after_unpack(dir.path(), &wrong);
        let last = crate::platform::telemetry::queued(&crate::base::root::HostRoot::new("/"), dir.path())
            .pop()
            .expect("event")
            .1;
        assert_eq!((last.operation.as_str(), last.success), ("PackageSigningInfoResult", false));
        assert!(
            last.message.starts_with(
                "[WARNING] expected extension type 'B' does not match downloaded package type 'C'"
            ),
            "{}",
            last.message
        );
    }
}
