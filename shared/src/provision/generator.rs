//! `wala-provision-generator`, a systemd generator (`systemd.generator(7)`). It runs when systemd
//! starts, before any unit (and on every reload), and writes drop-ins for two decisions that must
//! be made before the boot's units are ordered:
//!
//! * **A disk already provisioned for this VM**: the local stage has nothing to do, yet starting
//!   its process cost 0.4 to 0.85 s before `network-pre.target` in the VM test's reboots. When the
//!   marker in `Lib.Dir` names this VM ([`super::state::provisioned_for`], the same test the stage
//!   makes first), a drop-in skips `wala-provision-local.service` and
//!   `wala-provision-hostname.service` by a condition on a file written beside it, so the journal
//!   says why. The same drop-in skips `wala-provision-network.service` when the recorded state says
//!   the final report was sent, or there is none ([`super::state::final_report_done`], the network
//!   stage's own test), and `wala-provision-keys.service` when it leaves no host keys pending: on
//!   a later boot their processes only started to find nothing to do (1.2 and 1.9 s of a TCG
//!   reboot, most of it the start of a process under emulation). A state that says otherwise (a crash before Ready or
//!   before the RSA key) starts them again, so a later boot still converges.
//! * **No DVD drive in `/dev` yet** (the initramfs did not load its driver; a host-only dracut
//!   image may not): the hostname stage cannot read the DVD before udev has run, so the network
//!   must wait for the local stage's hostname. A drop-in orders the local stage
//!   `Before=network-pre.target` and tells it so ([`super::hostname_stage::NETWORK_WAITS_ENV`]).
//!   Where the drive is there, the network waits only for the hostname stage, which sets the name
//!   right after the root file system is writable, before udev.
//!
//! Anything else (another VM's disk, no marker, a marker it cannot read, a separate `/var` not
//! mounted yet, `Wala.Enabled=n`) writes nothing for the first. Generators write only into the
//! directories systemd gives them and must not block: a few small files are read, a directory
//! listed and at most five files written; nothing is logged but a failure, to stderr (the kernel
//! log).

use std::path::{Path, PathBuf};

use crate::base::files::{self, FileError, WriteOptions};
use crate::base::root::HostRoot;

/// The local stage's unit.
pub const UNIT: &str = "wala-provision-local.service";

/// The hostname stage's unit, skipped with the local stage.
pub const HOSTNAME_UNIT: &str = "wala-provision-hostname.service";

/// The network stage's unit, skipped once the final report was sent.
pub const NETWORK_UNIT: &str = "wala-provision-network.service";

/// The host-keys stage's unit, skipped when no host keys are pending.
pub const HOST_KEYS_UNIT: &str = "wala-provision-keys.service";

/// The file the skipping drop-ins' condition names, in the generator's output directory.
pub const PROVISIONED_FILE: &str = "wala-provisioned-for-this-vm";

/// The skipping drop-in's name in `<unit>.d/`.
pub const DROP_IN: &str = "50-wala-provisioned-for-this-vm.conf";

/// The drop-in, in `<UNIT>.d/`, that makes the network wait for the local stage's hostname.
pub const NETWORK_WAITS_DROP_IN: &str = "50-wala-network-waits-for-hostname.conf";

/// What the generator did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    /// The disk is provisioned for this VM: the drop-ins skip the local and hostname stages, and
    /// the network and host-keys stages when the recorded state leaves them nothing to do.
    SkipLocalStage { vm_id: String, network: bool, host_keys: bool },
    /// No DVD drive in `/dev`: the network waits for the local stage's hostname.
    NetworkWaitsForLocalStage,
    /// Nothing written (the reason, for tests): the local stage runs, and the network waits only
    /// for the hostname stage.
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
    let lib_dir = loaded.config.lib_dir.as_path();
    if super::state::provisioned_for(root, lib_dir, &vm_id) {
        // The tests the stages make first: the network stage's (the report sent, or no state of
        // this VM) and the host-keys stage's (keys pending in this VM's state).
        let recorded = super::state::load_for(root, lib_dir, &vm_id);
        let network = super::state::final_report_done(recorded.as_ref());
        let host_keys = recorded.as_ref().is_none_or(|s| !s.host_keys_pending);
        skip_stages(dir, &vm_id, network, host_keys)?;
        return Ok(Generated::SkipLocalStage { vm_id, network, host_keys });
    }
    if crate::host::dvd::drive_present(&root.kernel().path("/dev")) {
        return Ok(Generated::Nothing("a DVD drive is in /dev: the hostname stage sets the hostname"));
    }
    if super::mode_for(root, &loaded.config) != super::Mode::Provision {
        return Ok(Generated::Nothing("provisioning is not wala's: no hostname to wait for"));
    }
    let text = format!(
        "# Written by wala-provision-generator at boot: no DVD drive was in /dev when systemd started,\n\
         # so the hostname stage could not read it before udev; the network waits for the local\n\
         # stage's hostname instead (it is ready once the hostname is set).\n\
         # sshd and the other stages then wait for wala-provision-local-done.service, which waits\n\
         # for the stage's process to end.\n\
         [Unit]\nWants=network-pre.target\nBefore=network-pre.target\nWants=wala-provision-local-done.service\n\n\
         [Service]\nType=notify\nNotifyAccess=main\nEnvironment={}=1\n",
        super::hostname_stage::NETWORK_WAITS_ENV
    );
    write_drop_in(dir, UNIT, NETWORK_WAITS_DROP_IN, &text)?;
    Ok(Generated::NetworkWaitsForLocalStage)
}

/// The drop-ins that skip the local and hostname stages on a disk provisioned for this VM, and the
/// network and host-keys stages when told.
fn skip_stages(dir: &Path, vm_id: &str, network: bool, host_keys: bool) -> Result<(), FileError> {
    let flag = dir.join(PROVISIONED_FILE);
    files::write_atomic(
        &flag,
        format!(
            "wala-provision-generator: this disk was provisioned for this VM ({vm_id}) on an earlier boot\n"
        )
        .as_bytes(),
        WriteOptions::mode(0o644),
    )?;
    let text = format!(
        "# Written by wala-provision-generator at boot: the stage has nothing to do on a disk\n\
         # provisioned for this VM, so it is not started.\n[Unit]\nConditionPathExists=!{}\n",
        flag.display()
    );
    write_drop_in(dir, UNIT, DROP_IN, &text)?;
    write_drop_in(dir, HOSTNAME_UNIT, DROP_IN, &text)?;
    // systemd empties the output directory before every run (boot and reload), so a stage the
    // state now gives work to has no drop-in left from an earlier run.
    for (unit, skip) in [(NETWORK_UNIT, network), (HOST_KEYS_UNIT, host_keys)] {
        if skip {
            write_drop_in(dir, unit, DROP_IN, &text)?;
        }
    }
    Ok(())
}

fn write_drop_in(dir: &Path, unit: &str, name: &str, text: &str) -> Result<(), FileError> {
    let drop_in_dir: PathBuf = dir.join(format!("{unit}.d"));
    files::ensure_dir(&drop_in_dir, 0o755)?;
    files::write_atomic(&drop_in_dir.join(name), text.as_bytes(), WriteOptions::mode(0o644))
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

    fn with_drive(dir: &tempfile::TempDir) {
        std::fs::create_dir_all(dir.path().join("dev")).expect("mkdir");
        std::fs::write(dir.path().join("dev/sr0"), b"").expect("write");
    }

    #[test]
    fn a_disk_provisioned_for_this_vm_gets_the_drop_ins_and_any_other_nothing() {
        let root_dir = root_with(None);
        with_drive(&root_dir);
        let root = HostRoot::new(root_dir.path());
        let vm_id = crate::provision::vm_id(&root).expect("vm id");
        let out = tempfile::tempdir().expect("tempdir");
        let drop_in = out.path().join(format!("{UNIT}.d")).join(DROP_IN);
        let hostname_drop_in = out.path().join(format!("{HOSTNAME_UNIT}.d")).join(DROP_IN);

        let result = run(&root, out.path()).expect("run");
        assert_eq!(
            result,
            Generated::Nothing("a DVD drive is in /dev: the hostname stage sets the hostname")
        );
        assert!(!drop_in.exists());

        let other = root_with(Some("00000000-1111-2222-3333-444444444444"));
        with_drive(&other);
        let result = run(&HostRoot::new(other.path()), out.path()).expect("run");
        assert!(matches!(result, Generated::Nothing(_)), "another VM's disk: {result:?}");
        assert!(!drop_in.exists());

        let ours = root_with(Some(&vm_id));
        let result = run(&HostRoot::new(ours.path()), out.path()).expect("run");
        assert_eq!(
            result,
            Generated::SkipLocalStage { vm_id: vm_id.clone(), network: true, host_keys: true }
        );
        let flag = out.path().join(PROVISIONED_FILE);
        assert!(std::fs::read_to_string(&flag).expect("flag").contains(&vm_id));
        let network_drop_in = out.path().join(format!("{NETWORK_UNIT}.d")).join(DROP_IN);
        let keys_drop_in = out.path().join(format!("{HOST_KEYS_UNIT}.d")).join(DROP_IN);
        for path in [&drop_in, &hostname_drop_in, &network_drop_in, &keys_drop_in] {
            let text = std::fs::read_to_string(path).expect("drop-in");
            assert!(text.contains(&format!("[Unit]\nConditionPathExists=!{}\n", flag.display())), "{text}");
        }

        std::fs::create_dir_all(ours.path().join("etc")).expect("mkdir");
        std::fs::write(ours.path().join("etc/waagent.conf"), "Wala.Enabled=n\n").expect("conf");
        let off = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            run(&HostRoot::new(ours.path()), off.path()).expect("run"),
            Generated::Nothing("Wala.Enabled=n")
        );
    }

    #[test]
    fn a_later_boot_starts_the_network_and_host_keys_stages_only_when_the_state_gives_them_work() {
        let lib = Path::new("/var/lib/waagent");
        let probe = root_with(None);
        let vm_id = crate::provision::vm_id(&HostRoot::new(probe.path())).expect("vm id");
        let skipped = |out: &Path, unit: &str| out.join(format!("{unit}.d")).join(DROP_IN).exists();
        // (report sent, keys pending) -> (network skipped, host keys skipped)
        for (sent, pending) in [(false, false), (false, true), (true, true), (true, false)] {
            let dir = root_with(Some(&vm_id));
            let root = HostRoot::new(dir.path());
            let mut st = crate::provision::State::new(
                &vm_id,
                crate::provision::Mode::Provision,
                crate::provision::LocalResult::Done,
            );
            st.final_report_sent = sent;
            st.host_keys_pending = pending;
            crate::provision::state::save(&root, lib, &st).expect("state");
            let out = tempfile::tempdir().expect("tempdir");
            let result = run(&root, out.path()).expect("run");
            assert_eq!(
                result,
                Generated::SkipLocalStage { vm_id: vm_id.clone(), network: sent, host_keys: !pending },
                "report sent {sent}, keys pending {pending}"
            );
            assert!(skipped(out.path(), UNIT) && skipped(out.path(), HOSTNAME_UNIT));
            assert_eq!(skipped(out.path(), NETWORK_UNIT), sent, "report sent {sent}");
            assert_eq!(skipped(out.path(), HOST_KEYS_UNIT), !pending, "keys pending {pending}");
        }
        // Another VM's state on this VM's marker (not this VM's work): nothing pending here.
        let dir = root_with(Some(&vm_id));
        let root = HostRoot::new(dir.path());
        let mut other = crate::provision::State::new(
            "00000000-1111-2222-3333-444444444444",
            crate::provision::Mode::Provision,
            crate::provision::LocalResult::Done,
        );
        other.host_keys_pending = true;
        crate::provision::state::save(&root, lib, &other).expect("state");
        let out = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            run(&root, out.path()).expect("run"),
            Generated::SkipLocalStage { vm_id: vm_id.clone(), network: true, host_keys: true }
        );
    }

    #[test]
    fn without_a_drive_in_dev_the_network_waits_for_the_local_stage() {
        let root_dir = root_with(None);
        let root = HostRoot::new(root_dir.path());
        let out = tempfile::tempdir().expect("tempdir");
        assert_eq!(run(&root, out.path()).expect("run"), Generated::NetworkWaitsForLocalStage);
        let text = std::fs::read_to_string(out.path().join(format!("{UNIT}.d")).join(NETWORK_WAITS_DROP_IN))
            .expect("drop-in");
        assert!(
            text.contains(
                "[Unit]\nWants=network-pre.target\nBefore=network-pre.target\nWants=wala-provision-local-done.service\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "[Service]\nType=notify\nNotifyAccess=main\nEnvironment=WALA_NETWORK_WAITS_FOR_HOSTNAME=1\n"
            ),
            "{text}"
        );
        assert!(!out.path().join(format!("{HOSTNAME_UNIT}.d")).exists());

        // A virtio disk is no drive.
        std::fs::create_dir_all(root_dir.path().join("dev")).expect("mkdir");
        std::fs::write(root_dir.path().join("dev/vdb"), b"").expect("write");
        let again = tempfile::tempdir().expect("tempdir");
        assert_eq!(run(&root, again.path()).expect("run"), Generated::NetworkWaitsForLocalStage);

        // Nothing to wait for when wala does not provision.
        std::fs::create_dir_all(root_dir.path().join("etc")).expect("mkdir");
        std::fs::write(root_dir.path().join("etc/waagent.conf"), "Provisioning.Agent=cloud-init\n")
            .expect("conf");
        let cloud = tempfile::tempdir().expect("tempdir");
        let result = run(&root, cloud.path()).expect("run");
        assert_eq!(result, Generated::Nothing("provisioning is not wala's: no hostname to wait for"));
        assert!(std::fs::read_dir(cloud.path()).expect("read").next().is_none());
    }
}
