//! CustomData: saved to `<Lib.Dir>/CustomData` (0600), decoded from base64 when configured, and
//! run when configured. Binary payloads (gzip, cloud-init archives) are saved as they are.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::cmd::{Cmd, CmdError, Runner};
use crate::base::files::{self, FileError, WriteOptions};
use crate::base::root::HostRoot;
use crate::base::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum CustomDataError {
    #[error("CustomData script {} failed: {source}", path.display())]
    Execute {
        path: PathBuf,
        #[source]
        source: CmdError,
    },
    #[error(transparent)]
    File(#[from] FileError),
}

/// How long a CustomData script may run before it is killed (waagent waits forever).
pub const EXECUTE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What was saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The base64 text as the OVF had it.
    Raw,
    /// The decoded bytes.
    Decoded,
    /// Decoding was asked for but the text is not base64: saved raw, and not executable.
    NotBase64,
}

/// The file CustomData is saved to.
pub fn path(root: &HostRoot, lib_dir: &Path) -> PathBuf {
    root.path(lib_dir.join("CustomData"))
}

/// Save CustomData (0600). With `decode`, the base64 text is decoded first; text that is not base64
/// is kept as it is, with a warning, rather than lost.
pub fn save(
    root: &HostRoot,
    lib_dir: &Path,
    data: &Secret<String>,
    decode: bool,
) -> Result<Saved, CustomDataError> {
    let file = path(root, lib_dir);
    files::ensure_dir(&root.path(lib_dir), 0o700)?;
    let (bytes, saved) = if decode {
        match decode_base64(data.expose()) {
            Some(b) => (Secret::new(b), Saved::Decoded),
            None => {
                log::warn!("CustomData is not valid base64; saved as received and not executed");
                (Secret::new(data.expose().as_bytes().to_vec()), Saved::NotBase64)
            }
        }
    } else {
        (Secret::new(data.expose().as_bytes().to_vec()), Saved::Raw)
    };
    files::write_atomic(&file, bytes.expose(), WriteOptions::mode(0o600))?;
    Ok(saved)
}

/// Run the saved CustomData as a script (0700, through `/bin/sh -c`, bounded in time).
pub fn execute(root: &HostRoot, runner: &dyn Runner, lib_dir: &Path) -> Result<(), CustomDataError> {
    let file = path(root, lib_dir);
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| FileError::new("chmod", &file, e))?;
    let out = runner
        .run(&Cmd::new("/bin/sh").arg("-c").arg(&file).timeout(EXECUTE_TIMEOUT))
        .map_err(|source| CustomDataError::Execute { path: file.clone(), source })?;
    log::info!("CustomData script finished ({} bytes of output)", out.stdout.len() + out.stderr.len());
    Ok(())
}

/// Decode base64, tolerating whitespace and line breaks as Azure and cloud-init send it.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(compact).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_decoded_binary_and_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let lib = Path::new("/var/lib/waagent");
        let file = dir.path().join("var/lib/waagent/CustomData");
        assert_eq!(save(&root, lib, &Secret::new("ZWNobyBoaQ==".into()), false).unwrap(), Saved::Raw);
        assert_eq!(std::fs::read(&file).unwrap(), b"ZWNobyBoaQ==");
        assert_eq!(crate::base::files::mode_and_owner(&file).unwrap().0, 0o600);
        assert_eq!(save(&root, lib, &Secret::new("ZWNo\nbyBoaQ==\n".into()), true).unwrap(), Saved::Decoded);
        assert_eq!(std::fs::read(&file).unwrap(), b"echo hi");
        // gzip magic and invalid UTF-8 survive untouched.
        assert_eq!(save(&root, lib, &Secret::new("H4sIAP8=".into()), true).unwrap(), Saved::Decoded);
        assert_eq!(std::fs::read(&file).unwrap(), [0x1f, 0x8b, 0x08, 0x00, 0xff]);
        assert_eq!(save(&root, lib, &Secret::new("not base64!".into()), true).unwrap(), Saved::NotBase64);
        assert_eq!(std::fs::read(&file).unwrap(), b"not base64!");
    }

    #[test]
    fn execute_runs_the_script() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let lib = Path::new("/var/lib/waagent");
        let marker = dir.path().join("ran");
        let script = format!("#!/bin/sh\necho ok > {}\n", marker.display());
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(script);
        save(&root, lib, &Secret::new(b64), true).unwrap();
        execute(&root, &crate::base::cmd::SystemRunner, lib).expect("execute");
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ok\n");
    }
}
