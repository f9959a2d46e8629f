//! SELinux labels on the files wala writes.
//!
//! A file wala writes is a new inode (the atomic writer renames a temporary file into place), so it
//! takes the label the policy gives a new file in its directory, not the one the policy wants for
//! its path: `etc_t` for a rewritten `/etc/shadow` instead of `shadow_t`, `user_home_t` for a new
//! `~/.ssh/authorized_keys` instead of `ssh_home_t` (which sshd, confined, cannot read: key
//! login fails). Where SELinux is on ([`OsFacts::selinux`]: RHEL and its rebuilds by default) and
//! wala works on the live root, it runs `restorecon -R -i --` on what it wrote, as cloud-init
//! does (waagent `chcon`s the key files to `ssh_home_t`). Under another root (the initramfs's
//! `/sysroot`) no policy is loaded yet: `wala-initrd-relabel` leaves lines for systemd-tmpfiles,
//! which restores the labels after switch-root. Without SELinux nothing runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::cmd::{Cmd, Runner};
use crate::base::distro::OsFacts;
use crate::base::root::HostRoot;

/// Restore the policy's labels on `paths` (host paths; directories recursively; missing ones
/// ignored). Returns whether `restorecon` ran and succeeded. A failure is a warning: the files are
/// written, and a wrong label is what the VM had before this function existed.
pub fn restore_labels(root: &HostRoot, runner: &dyn Runner, facts: &OsFacts, paths: &[PathBuf]) -> bool {
    if !facts.selinux || paths.is_empty() {
        return false;
    }
    if !root.is_live() {
        log::debug!("SELinux labels under {} are left to wala-initrd-relabel", root.prefix().display());
        return false;
    }
    if !runner.exists("restorecon") {
        log::warn!("SELinux is on but restorecon is not installed: the files wala wrote keep the labels they were created with");
        return false;
    }
    let cmd = Cmd::new("restorecon").args(["-R", "-i", "--"]).args(paths).timeout(Duration::from_secs(60));
    match runner.run(&cmd) {
        Ok(_) => true,
        Err(e) => {
            log::warn!("restoring SELinux labels failed: {e}");
            false
        }
    }
}

/// What provisioning wrote, for [`restore_labels`]: the hostname files, the password file, the
/// sudoers and ssh directories (drop-ins, host keys), wala's lib directory, and the directory of
/// each deployed key file (`~/.ssh`), each once and in this order.
pub fn provisioned_paths(
    lib_dir: &Path,
    ssh_dir: &Path,
    sudoers_dir: &Path,
    password_file: &Path,
    key_files: &[PathBuf],
) -> Vec<PathBuf> {
    let fixed =
        [Path::new("/etc/hostname"), Path::new("/etc/hosts"), password_file, sudoers_dir, ssh_dir, lib_dir];
    let mut out: Vec<PathBuf> = fixed.into_iter().map(Path::to_path_buf).collect();
    for dir in key_dirs(key_files) {
        if !out.contains(&dir) {
            out.push(dir);
        }
    }
    out
}

/// The directories holding `key_files`, each once.
pub fn key_dirs(key_files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in key_files.iter().filter_map(|k| k.parent()) {
        if !out.iter().any(|d| d == dir) {
            out.push(dir.to_path_buf());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::{CmdOutput, FakeRunner};
    use crate::base::distro::Family;

    fn facts(selinux: bool) -> OsFacts {
        OsFacts { family: Family::RedHat, sshd_unit: "sshd.service", selinux, cgroup_v2: true }
    }

    fn provisioned() -> Vec<PathBuf> {
        provisioned_paths(
            Path::new("/var/lib/waagent"),
            Path::new("/etc/ssh"),
            Path::new("/etc/sudoers.d"),
            Path::new("/etc/shadow"),
            &[
                "/home/alice/.ssh/authorized_keys".into(),
                "/home/alice/.ssh/id_rsa".into(),
                "/home/alice/keys/ak".into(),
            ],
        )
    }

    #[test]
    fn provisioned_paths_name_each_directory_once() {
        let list: Vec<String> = provisioned().iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            list,
            [
                "/etc/hostname",
                "/etc/hosts",
                "/etc/shadow",
                "/etc/sudoers.d",
                "/etc/ssh",
                "/var/lib/waagent",
                "/home/alice/.ssh",
                "/home/alice/keys"
            ]
        );
    }

    #[test]
    fn restorecon_runs_on_the_live_root_with_selinux_on_only() {
        let list = provisioned();
        let runner = FakeRunner::new();
        assert!(restore_labels(&HostRoot::live(), &runner, &facts(true), &list));
        assert_eq!(
            runner.command_lines(),
            ["restorecon -R -i -- /etc/hostname /etc/hosts /etc/shadow /etc/sudoers.d /etc/ssh /var/lib/waagent /home/alice/.ssh /home/alice/keys"]
        );
        // SELinux off (Debian, Ubuntu, SUSE, Azure Linux as configured): nothing runs.
        let runner = FakeRunner::new();
        assert!(!restore_labels(&HostRoot::live(), &runner, &facts(false), &list));
        // Under /sysroot the policy is not loaded: left to wala-initrd-relabel.
        assert!(!restore_labels(&HostRoot::new("/sysroot"), &runner, &facts(true), &list));
        assert!(runner.calls().is_empty());
        // No restorecon, or a failing one: a warning, never an error.
        runner.without("restorecon");
        assert!(!restore_labels(&HostRoot::live(), &runner, &facts(true), &list));
        assert!(runner.calls().is_empty());
        let failing = FakeRunner::new();
        failing.respond("restorecon", CmdOutput { code: Some(255), ..Default::default() });
        assert!(!restore_labels(&HostRoot::live(), &failing, &facts(true), &list));
        assert_eq!(failing.calls().len(), 1);
    }

    #[test]
    fn each_family_relabels_only_where_its_files_say_selinux_is_on() {
        use crate::base::testing::FakeOs;
        for os in FakeOs::ALL {
            let dir = tempfile::tempdir().expect("tempdir");
            let detected = OsFacts::detect(&os.build(dir.path()));
            // The facts come from the fake root; the command is what the live root would run.
            let runner = FakeRunner::new();
            restore_labels(&HostRoot::live(), &runner, &detected, &[PathBuf::from("/etc/shadow")]);
            let expected: &[&str] = match os {
                FakeOs::Rhel9 | FakeOs::Rhel8 => &["restorecon -R -i -- /etc/shadow"],
                FakeOs::Debian12 | FakeOs::Ubuntu2404 | FakeOs::AzureLinux3 | FakeOs::Sles15 => &[],
            };
            assert_eq!(runner.command_lines(), expected, "{os:?}");
        }
    }
}
