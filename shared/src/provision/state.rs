//! What one stage tells the next, and the `provisioned` marker.
//!
//! `<Lib.Dir>/provisioned` holds the VM id (waagent's marker: extensions and waagent itself read it).
//! `<Lib.Dir>/wala-provisioning.json` records how the local stage ended for which VM id, and whether
//! Ready reached the platform, so that the real-root local stage does not redo work the initramfs
//! did, the host-keys stage knows whether it has keys to make, the network stage reports the local
//! stage's failure, and the daemon can retry a report that never got through.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::{self, FileError, WriteOptions};
use crate::root::HostRoot;
use crate::vmid;

/// Who provisions this VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// wala provisions.
    Provision,
    /// `Provisioning.Agent=disabled`: nothing is provisioned; Ready is reported.
    Disabled,
    /// cloud-init provisions and reports; wala stays out of the way.
    CloudInit,
}

/// How the local stage ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum LocalResult {
    Done,
    Failed { step: String, reason: String },
}

/// The hand-off state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub vm_id: String,
    pub mode: Mode,
    pub local: LocalResult,
    /// Whether the platform accepted the final report (Ready, or ProvisioningFailed).
    #[serde(default)]
    pub final_report_sent: bool,
    /// The local stage left the SSH host keys to the host-keys stage, which runs while the network
    /// comes up; cleared once they are made. Ready waits for them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_keys_pending: bool,
}

const STATE_FILE: &str = "wala-provisioning.json";
const MARKER_FILE: &str = "provisioned";

fn state_path(root: &HostRoot, lib_dir: &Path) -> PathBuf {
    root.path(lib_dir.join(STATE_FILE))
}

/// The recorded state, if any (an unreadable or foreign file counts as none, with a warning).
pub fn load(root: &HostRoot, lib_dir: &Path) -> Option<State> {
    let path = state_path(root, lib_dir);
    let text = files::read_optional(&path).ok()??;
    serde_json::from_str(&text).map_err(|e| log::warn!("ignoring {}: {e}", path.display())).ok()
}

/// Record the state (atomically, 0600).
pub fn save(root: &HostRoot, lib_dir: &Path, state: &State) -> Result<(), FileError> {
    let dir = root.path(lib_dir);
    files::ensure_dir(&dir, 0o700)?;
    let text = serde_json::to_string_pretty(state).unwrap_or_default() + "\n";
    files::write_atomic(&state_path(root, lib_dir), text.as_bytes(), WriteOptions::mode(0o600))
}

/// The VM id in the marker, if the marker exists.
pub fn marker(root: &HostRoot, lib_dir: &Path) -> Option<String> {
    files::read_optional(&root.path(lib_dir.join(MARKER_FILE))).ok()?.map(|s| s.trim().to_string())
}

/// Whether the marker says this VM is provisioned (waagent's comparison: case and byte order
/// insensitive, so a marker written by waagent counts).
pub fn provisioned_for(root: &HostRoot, lib_dir: &Path, vm_id: &str) -> bool {
    marker(root, lib_dir).is_some_and(|m| !m.is_empty() && vmid::same_vm(&m, vm_id))
}

/// Write the marker (the VM id, no newline, as waagent).
pub fn write_marker(root: &HostRoot, lib_dir: &Path, vm_id: &str) -> Result<(), FileError> {
    files::ensure_dir(&root.path(lib_dir), 0o700)?;
    files::write_atomic(&root.path(lib_dir.join(MARKER_FILE)), vm_id.as_bytes(), WriteOptions::mode(0o644))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_and_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let lib = Path::new("/var/lib/waagent");
        assert_eq!(load(&root, lib), None);
        let s = State {
            vm_id: "id".into(),
            mode: Mode::Provision,
            local: LocalResult::Failed { step: "user".into(), reason: "boom".into() },
            final_report_sent: false,
            host_keys_pending: true,
        };
        save(&root, lib, &s).expect("save");
        assert_eq!(load(&root, lib), Some(s));
        let text =
            std::fs::read_to_string(dir.path().join("var/lib/waagent/wala-provisioning.json")).unwrap();
        assert!(text.contains("\"result\": \"failed\""), "{text}");
        // A file an older wala wrote (no host_keys_pending) still loads: nothing is pending.
        let old = r#"{"vm_id": "id", "mode": "provision", "local": {"result": "done"}}"#;
        std::fs::write(dir.path().join("var/lib/waagent/wala-provisioning.json"), old).unwrap();
        assert!(load(&root, lib).is_some_and(|s| !s.host_keys_pending && s.local == LocalResult::Done));
        assert!(!provisioned_for(&root, lib, "544CDFD0-CB4E-4B4A-9954-5BDF3ED5C3B8"));
        write_marker(&root, lib, "544cdfd0-cb4e-4b4a-9954-5bdf3ed5c3b8").expect("marker");
        assert!(provisioned_for(&root, lib, "544CDFD0-CB4E-4B4A-9954-5BDF3ED5C3B8"));
        assert!(
            provisioned_for(&root, lib, "D0DF4C54-4ECB-4A4B-9954-5BDF3ED5C3B8"),
            "byte-swapped id matches"
        );
        assert!(!provisioned_for(&root, lib, "00000000-0000-0000-0000-000000000000"));
    }
}
