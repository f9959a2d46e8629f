//! Taking a running VM over from waagent's package (docs/migration.md).
//!
//! wala keeps waagent's files under `Lib.Dir` as they are: the `provisioned` marker (the VM id,
//! compared ignoring case and byte order), the extension handler directories (`HandlerState`,
//! `<seq>.settings`, `status/`, the extension's own `mrseq`), `<THUMBPRINT>.crt`/`.prv` and the
//! transport key pair. The Debian package moves `/var/lib/waagent` aside while `dpkg -i` removes
//! waagent (whose `postrm remove` deletes that directory) and puts it back afterwards. When the
//! directory was deleted before wala's package could act (apt removes a conflicting package before
//! it unpacks the new one), the one thing that decides whether the next boot provisions again is
//! lost: the marker. [`mark_provisioned`] writes it back for this VM, so a VM that is in service is
//! not provisioned a second time (new host keys, NotReady/Provisioning and Ready again).

use std::path::Path;

use crate::base::root::HostRoot;
use crate::host::vmid;
use crate::provision::state;

/// What [`mark_provisioned`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkOutcome {
    /// The marker was written with this VM id.
    Written(String),
    /// A marker exists (its text, trimmed): nothing was changed, whatever VM id it names.
    Exists(String),
}

/// Why the marker could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    #[error(transparent)]
    VmId(#[from] vmid::VmIdError),
    #[error(transparent)]
    File(#[from] crate::base::files::FileError),
}

/// Record this VM as provisioned (the marker `<lib_dir>/provisioned` with its VM id, as waagent
/// writes it) unless a marker exists. An existing marker is never changed: one naming another VM
/// is for the first-boot decision to judge, not for a package installation.
pub fn mark_provisioned(root: &HostRoot, lib_dir: &Path) -> Result<MarkOutcome, TakeoverError> {
    if let Some(existing) = state::marker(root, lib_dir) {
        return Ok(MarkOutcome::Exists(existing));
    }
    let vm_id = vmid::vm_id(root)?;
    state::write_marker(root, lib_dir, &vm_id)?;
    log::info!("marked VM {vm_id} as provisioned ({})", root.path(lib_dir.join("provisioned")).display());
    Ok(MarkOutcome::Written(vm_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "7e5c3f2a-1b4d-4e6f-8a9b-0c1d2e3f4a5b";

    fn vm(gen2: bool) -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sys/class/dmi/id")).expect("mkdir");
        std::fs::write(dir.path().join("sys/class/dmi/id/product_uuid"), format!("{RAW}\n")).expect("write");
        if gen2 {
            std::fs::create_dir_all(dir.path().join("sys/firmware/efi")).expect("mkdir");
        }
        let root = HostRoot::new(dir.path());
        (dir, root)
    }

    #[test]
    fn writes_the_vm_id_as_waagent_does_and_the_first_boot_decision_accepts_it() {
        let lib = Path::new("/var/lib/waagent");
        for gen2 in [false, true] {
            let (dir, root) = vm(gen2);
            let written = mark_provisioned(&root, lib).expect("mark");
            let MarkOutcome::Written(id) = written else { panic!("{written:?}") };
            let text = std::fs::read_to_string(dir.path().join("var/lib/waagent/provisioned")).expect("read");
            // No newline, the VM id (Gen1: the first three groups byte-swapped, as waagent's
            // instance id; Gen2: as the kernel prints it).
            assert_eq!(text, id);
            let want = if gen2 { RAW } else { "2a3f5c7e-4d1b-6f4e-8a9b-0c1d2e3f4a5b" };
            assert_eq!(text, want);
            assert!(state::provisioned_for(&root, lib, &vmid::vm_id(&root).expect("id")));
        }
    }

    #[test]
    fn an_existing_marker_is_left_as_it_is() {
        let lib = Path::new("/var/lib/waagent");
        let (dir, root) = vm(false);
        let marker = dir.path().join("var/lib/waagent/provisioned");
        std::fs::create_dir_all(marker.parent().expect("parent")).expect("mkdir");
        // waagent's marker for another VM (a captured image), upper case, with a newline.
        std::fs::write(&marker, "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0\n").expect("write");
        assert_eq!(
            mark_provisioned(&root, lib).expect("mark"),
            MarkOutcome::Exists("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0".into())
        );
        assert_eq!(std::fs::read_to_string(&marker).expect("read"), "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0\n");
        // An empty marker (agents before 2.1 recorded no id) counts as a marker too.
        std::fs::write(&marker, "").expect("write");
        assert_eq!(mark_provisioned(&root, lib).expect("mark"), MarkOutcome::Exists(String::new()));
        assert_eq!(std::fs::read(&marker).expect("read"), b"");
    }

    #[test]
    fn no_vm_id_no_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        assert!(matches!(
            mark_provisioned(&root, Path::new("/var/lib/waagent")),
            Err(TakeoverError::VmId(_))
        ));
        assert!(!dir.path().join("var/lib/waagent/provisioned").exists());
    }
}
