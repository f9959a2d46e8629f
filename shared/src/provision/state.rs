//! What one stage tells the next, and the `provisioned` marker.
//!
//! `<Lib.Dir>/provisioned` holds the VM id (waagent's marker: extensions and waagent itself read it).
//! `<Lib.Dir>/wala-provisioning.json` records how the local stage ended for which VM id, and whether
//! Ready reached the platform, so that the real-root local stage does not redo work the initramfs
//! did, the host-keys stage knows whether it has keys to make, the network stage reports the local
//! stage's failure, and the daemon can retry a report that never got through.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::files::{self, FileError, WriteOptions};
use crate::base::root::HostRoot;
use crate::host::vmid;
use crate::provision::plan::LaterSteps;

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

/// What this VM's provisioning is (`docs/provisioning.md`, "Which boots provision").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Lifecycle {
    /// Provisioned from a provisioning section (the DVD's, `--ovf`, or one made from IMDS).
    #[default]
    Provisioned,
    /// Nothing was provisioned, on purpose: the disk keeps its users, passwords and host keys.
    /// The network stage reports Ready alone (no `NotReady`/`Provisioning` before it).
    Kept {
        /// The VM id the marker held, when the disk was provisioned for another VM.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_vm_id: Option<String>,
        /// Why, in a sentence (logged, and in the KVP report).
        reason: String,
    },
    /// Provisioned from the request IMDS made (no provisioning DVD could be read).
    FromImds,
    /// No provisioning DVD could be read on a disk never provisioned: the IMDS stage decides,
    /// before sshd, once the network is up.
    ImdsPending {
        /// Why the DVD gave nothing.
        dvd: String,
    },
}

impl Lifecycle {
    fn is_provisioned(&self) -> bool {
        *self == Lifecycle::Provisioned
    }

    /// A few words for logs and telemetry.
    pub fn describe(&self) -> String {
        match self {
            Lifecycle::Provisioned => "provisioned".into(),
            Lifecycle::FromImds => "provisioned from IMDS".into(),
            Lifecycle::Kept { reason, .. } => format!("nothing provisioned: {reason}"),
            Lifecycle::ImdsPending { .. } => "no provisioning DVD: IMDS to be asked".into(),
        }
    }
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
    /// What the provisioning of this VM is; absent (provisioned) in files of older versions.
    #[serde(default, skip_serializing_if = "Lifecycle::is_provisioned")]
    pub lifecycle: Lifecycle,
    /// What the plan leaves to the host-keys and network stages; absent when nothing was
    /// provisioned, and in files of older versions (the network stage then reads the saved OVF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub later: Option<LaterSteps>,
}

impl State {
    /// A state with the given outcome, nothing reported yet, no host keys pending, provisioned.
    pub fn new(vm_id: &str, mode: Mode, local: LocalResult) -> Self {
        Self {
            vm_id: vm_id.to_string(),
            mode,
            local,
            final_report_sent: false,
            host_keys_pending: false,
            lifecycle: Lifecycle::Provisioned,
            later: None,
        }
    }

    /// Record what the plan leaves to the later stages: host keys are pending when it names any.
    pub fn record_later_steps(&mut self, later: Option<LaterSteps>) {
        self.host_keys_pending = later.as_ref().is_some_and(|l| !l.host_keys.is_empty());
        self.later = later;
    }
}

const STATE_FILE: &str = "wala-provisioning.json";
const MARKER_FILE: &str = "provisioned";
/// Held while the state is changed ([`update`]).
const LOCK_FILE: &str = "wala-provisioning.lock";

fn state_path(root: &HostRoot, lib_dir: &Path) -> PathBuf {
    root.path(lib_dir.join(STATE_FILE))
}

/// The recorded state, if any (an unreadable or foreign file counts as none, with a warning).
pub fn load(root: &HostRoot, lib_dir: &Path) -> Option<State> {
    let path = state_path(root, lib_dir);
    let text = files::read_optional(&path).ok()??;
    serde_json::from_str(&text).map_err(|e| log::warn!("ignoring {}: {e}", path.display())).ok()
}

/// The recorded state of VM `vm_id`, if any (another VM's state counts as none).
pub fn load_for(root: &HostRoot, lib_dir: &Path, vm_id: &str) -> Option<State> {
    load(root, lib_dir).filter(|s| s.vm_id == vm_id)
}

/// Whether a disk provisioned for a VM leaves its network stage nothing to report, given the
/// VM's recorded state ([`load_for`]): the final report was sent, or there is no state (a disk
/// provisioned by waagent, or by a version that kept none).
pub fn final_report_done(recorded: Option<&State>) -> bool {
    recorded.is_none_or(|s| s.final_report_sent)
}

/// Record the state (atomically, 0600).
pub fn save(root: &HostRoot, lib_dir: &Path, state: &State) -> Result<(), FileError> {
    let dir = root.path(lib_dir);
    files::ensure_dir(&dir, 0o700)?;
    let text = serde_json::to_string_pretty(state).unwrap_or_default() + "\n";
    files::write_atomic(&state_path(root, lib_dir), text.as_bytes(), WriteOptions::mode(0o600))
}

/// Change the recorded state of VM `vm_id` under a lock, from the file as it is now: the stages
/// that run side by side (the host keys beside the network stage) each change their own fields of
/// the one file, and a load early then a save late would put back what the other wrote meanwhile
/// (a lost `final_report_sent` made every later boot report Ready again). `None` (nothing
/// written) when no state is recorded for `vm_id`.
pub fn update(
    root: &HostRoot,
    lib_dir: &Path,
    vm_id: &str,
    change: impl FnOnce(&mut State),
) -> Result<Option<State>, FileError> {
    let dir = root.path(lib_dir);
    files::ensure_dir(&dir, 0o700)?;
    let _lock = files::lock_exclusive(&dir.join(LOCK_FILE))?;
    let Some(mut state) = load(root, lib_dir).filter(|s| s.vm_id == vm_id) else { return Ok(None) };
    change(&mut state);
    save(root, lib_dir, &state)?;
    Ok(Some(state))
}

/// The VM id in the marker, if the marker exists.
pub fn marker(root: &HostRoot, lib_dir: &Path) -> Option<String> {
    files::read_optional(&root.path(lib_dir.join(MARKER_FILE))).ok()?.map(|s| s.trim().to_string())
}

/// Whether the disk was provisioned at all: the marker exists, whatever VM id it holds (waagent's
/// test; an empty marker is an old agent's).
pub fn disk_provisioned(root: &HostRoot, lib_dir: &Path) -> bool {
    root.path(lib_dir.join(MARKER_FILE)).is_file()
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
    fn updates_from_two_stages_at_once_both_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let lib = Path::new("/var/lib/waagent");
        let mut st = State::new("vm", Mode::Provision, LocalResult::Done);
        st.host_keys_pending = true;
        save(&root, lib, &st).expect("save");
        // The host-keys stage is inside its update (it read the file) when the network stage
        // records Ready; without the lock its save would put `final_report_sent` back to false.
        let (inside_tx, inside_rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let keys = scope.spawn(|| {
                update(&root, lib, "vm", |s| {
                    inside_tx.send(()).expect("signal");
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    s.host_keys_pending = false;
                })
            });
            inside_rx.recv().expect("the first update began");
            update(&root, lib, "vm", |s| s.final_report_sent = true).expect("update").expect("state");
            keys.join().expect("join").expect("update").expect("state");
        });
        let now = load(&root, lib).expect("state");
        assert!(now.final_report_sent && !now.host_keys_pending, "{now:?}");
        // Another VM's state is not changed.
        assert_eq!(update(&root, lib, "other", |s| s.final_report_sent = false).expect("update"), None);
        assert!(load(&root, lib).expect("state").final_report_sent);
    }

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
            lifecycle: Lifecycle::Kept { previous_vm_id: Some("old".into()), reason: "why".into() },
            later: Some(LaterSteps {
                host_keys: vec!["rsa".into()],
                certificate_keys: vec![crate::provision::plan::CertificateKey {
                    fingerprint: "ABC".into(),
                    path: "/home/u/.ssh/id_rsa".into(),
                    key_pair: true,
                }],
                user: "u".into(),
                allow_system_user: false,
                home_base: "/home".into(),
                run_custom_data: true,
                fast_host_keys: Some("vm".into()),
            }),
        };
        save(&root, lib, &s).expect("save");
        assert_eq!(load(&root, lib), Some(s));
        let text =
            std::fs::read_to_string(dir.path().join("var/lib/waagent/wala-provisioning.json")).unwrap();
        assert!(text.contains("\"result\": \"failed\""), "{text}");
        assert!(
            text.contains("\"kind\": \"kept\"") && text.contains("\"previous_vm_id\": \"old\""),
            "{text}"
        );
        // A file an older wala wrote (no host_keys_pending) still loads: nothing is pending.
        let old = r#"{"vm_id": "id", "mode": "provision", "local": {"result": "done"}}"#;
        std::fs::write(dir.path().join("var/lib/waagent/wala-provisioning.json"), old).unwrap();
        assert!(load(&root, lib).is_some_and(|s| !s.host_keys_pending
            && s.local == LocalResult::Done
            && s.lifecycle == Lifecycle::Provisioned));
        // A provisioned VM's file does not name its lifecycle (older versions read it as before).
        save(&root, lib, &State::new("id", Mode::Provision, LocalResult::Done)).expect("save");
        let text =
            std::fs::read_to_string(dir.path().join("var/lib/waagent/wala-provisioning.json")).unwrap();
        assert!(!text.contains("lifecycle"), "{text}");
        assert!(!disk_provisioned(&root, lib));
        assert!(!provisioned_for(&root, lib, "544CDFD0-CB4E-4B4A-9954-5BDF3ED5C3B8"));
        write_marker(&root, lib, "544cdfd0-cb4e-4b4a-9954-5bdf3ed5c3b8").expect("marker");
        assert!(disk_provisioned(&root, lib));
        assert!(provisioned_for(&root, lib, "544CDFD0-CB4E-4B4A-9954-5BDF3ED5C3B8"));
        assert!(
            provisioned_for(&root, lib, "D0DF4C54-4ECB-4A4B-9954-5BDF3ED5C3B8"),
            "byte-swapped id matches"
        );
        assert!(!provisioned_for(&root, lib, "00000000-0000-0000-0000-000000000000"));
    }
}
