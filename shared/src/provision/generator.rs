//! `wala-provision-generator`, a systemd generator (`systemd.generator(7)`): on a boot of a disk
//! already provisioned for this VM, the local stage has nothing to do, yet starting its process
//! cost 0.4 to 0.85 s before `network-pre.target` in the VM test's reboots (the process's start
//! competes with the rest of the boot for the CPU). The generator runs when systemd starts, before
//! any unit (and on every reload): when the marker in `Lib.Dir` names this VM
//! ([`super::state::provisioned_for`], the same test the stage makes first), it writes a drop-in
//! that skips `wala-provision-local.service` by a condition on a file it writes beside it, so the
//! journal says why. Anything else (another VM's disk, no marker, a marker it cannot read, a separate
//! `/var` not mounted yet, `Wala.Enabled=n`) writes nothing and the unit runs as before.
//!
//! Generators write only into the directories systemd gives them and must not block: two small
//! files are read and two written; nothing is logged but a failure, to stderr (the kernel log).

use std::path::{Path, PathBuf};

use crate::base::files::{self, FileError, WriteOptions};
use crate::base::root::HostRoot;

/// The unit the generator may skip.
pub const UNIT: &str = "wala-provision-local.service";

/// The file the drop-in's condition names, in the generator's output directory.
pub const PROVISIONED_FILE: &str = "wala-provisioned-for-this-vm";

/// The drop-in's name in `<UNIT>.d/`.
pub const DROP_IN: &str = "50-wala-provisioned-for-this-vm.conf";

/// What the generator did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    /// The disk is provisioned for this VM: the drop-in skips the local stage.
    SkipLocalStage { vm_id: String },
    /// The local stage runs (the reason, for tests).
    Nothing(&'static str),
}

/// Decide for the system under `root` and write into `dir` (the generator's "normal" output
/// directory, `/run/systemd/generator` at boot).
pub fn run(root: &HostRoot, dir: &Path) -> Result<Generated, FileError> {
    let loaded = crate::documents::conf::load_or_defaults(root, None);
    if !loaded.config.wala_enabled {
        return Ok(Generated::Nothing("Wala.Enabled=n"));
    }
    let Ok(vm_id) = super::vm_id(root) else { return Ok(Generated::Nothing("no VM id")) };
    if !super::state::provisioned_for(root, loaded.config.lib_dir.as_path(), &vm_id) {
        return Ok(Generated::Nothing("not provisioned for this VM"));
    }
    let flag = dir.join(PROVISIONED_FILE);
    files::write_atomic(
        &flag,
        format!(
            "wala-provision-generator: this disk was provisioned for this VM ({vm_id}) on an earlier boot\n"
        )
        .as_bytes(),
        WriteOptions::mode(0o644),
    )?;
    let drop_in_dir: PathBuf = dir.join(format!("{UNIT}.d"));
    files::ensure_dir(&drop_in_dir, 0o755)?;
    let text = format!(
        "# Written by wala-provision-generator at boot: the local stage has nothing to do on a disk\n\
         # provisioned for this VM, so it is not started.\n[Unit]\nConditionPathExists=!{}\n",
        flag.display()
    );
    files::write_atomic(&drop_in_dir.join(DROP_IN), text.as_bytes(), WriteOptions::mode(0o644))?;
    Ok(Generated::SkipLocalStage { vm_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "7E5C3F2A-1B4D-4E6F-8A9B-0C1D2E3F4A5B";

    fn root_with(marker: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sys/class/dmi/id")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("var/lib/waagent")).expect("mkdir");
        std::fs::write(dir.path().join("sys/class/dmi/id/product_uuid"), ID).expect("write");
        if let Some(m) = marker {
            let root = HostRoot::new(dir.path());
            crate::provision::state::write_marker(&root, Path::new("/var/lib/waagent"), m).expect("marker");
        }
        dir
    }

    #[test]
    fn a_disk_provisioned_for_this_vm_gets_the_drop_in_and_any_other_nothing() {
        let root_dir = root_with(None);
        let root = HostRoot::new(root_dir.path());
        let vm_id = crate::provision::vm_id(&root).expect("vm id");
        let out = tempfile::tempdir().expect("tempdir");
        let drop_in = out.path().join(format!("{UNIT}.d")).join(DROP_IN);

        assert_eq!(run(&root, out.path()).expect("run"), Generated::Nothing("not provisioned for this VM"));
        assert!(!drop_in.exists());

        let other = root_with(Some("00000000-1111-2222-3333-444444444444"));
        let result = run(&HostRoot::new(other.path()), out.path()).expect("run");
        assert_eq!(result, Generated::Nothing("not provisioned for this VM"), "another VM's disk");
        assert!(!drop_in.exists());

        let ours = root_with(Some(&vm_id));
        let result = run(&HostRoot::new(ours.path()), out.path()).expect("run");
        assert_eq!(result, Generated::SkipLocalStage { vm_id: vm_id.clone() });
        let flag = out.path().join(PROVISIONED_FILE);
        assert!(std::fs::read_to_string(&flag).expect("flag").contains(&vm_id));
        let text = std::fs::read_to_string(&drop_in).expect("drop-in");
        assert!(text.contains(&format!("[Unit]\nConditionPathExists=!{}\n", flag.display())), "{text}");

        std::fs::create_dir_all(ours.path().join("etc")).expect("mkdir");
        std::fs::write(ours.path().join("etc/waagent.conf"), "Wala.Enabled=n\n").expect("conf");
        let off = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            run(&HostRoot::new(ours.path()), off.path()).expect("run"),
            Generated::Nothing("Wala.Enabled=n")
        );
    }
}
