//! `deprovision [--user]` (waagent's `-deprovision[+user]`): remove what makes this machine this
//! machine before an image is captured from it.
//!
//! [`plan`] reads the configuration and the saved `ovf-env.xml` and lists the warnings to show;
//! [`apply`] carries the steps out in waagent's order (spec §6.3), each step on its own so that one
//! failure does not stop the others; the [`Report`] says what was removed and what failed.
//!
//! Where wala differs from waagent (see `docs/deprovision.md`): `/etc/resolv.conf` is never
//! removed; `/etc/machine-id` is emptied on every distribution; only lines whose first field is the
//! user leave the sudoers drop-in; system accounts are not deleted; under `--root` no service is
//! stopped and no kernel state changes.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::base::cmd::{Cmd, Runner};
use crate::base::files::{self, WriteOptions};
use crate::base::root::HostRoot;
use crate::documents::conf::Config;
use crate::{documents::ovf, host::hostname, host::user};

/// The hostname a deprovisioned image carries.
pub const RESET_HOSTNAME: &str = "localhost.localdomain";

/// The daemon unit stopped first on the live root.
pub const AGENT_UNIT: &str = "wala-agentd.service";

/// Directories whose files are DHCP client leases (contents removed, directories kept).
pub(crate) const LEASE_DIRS: [&str; 3] = ["/var/lib/dhclient", "/var/lib/dhcpcd", "/var/lib/dhcp"];

/// Single lease files: directory and file-name pattern (`*` matches any run of characters).
pub(crate) const LEASE_GLOBS: [(&str, &str); 5] = [
    ("/var/db", "dhclient.leases.*"),
    ("/var/lib/NetworkManager", "dhclient-*.lease"),
    ("/var/lib/NetworkManager", "internal-*.lease"),
    ("/run/systemd/netif/leases", "*"),
    ("/var/db/dhcpcd", "*.lease"),
];

/// Host paths that are never emptied, whatever `Lib.Dir` or `Extension.LogDir` say.
const NEVER_EMPTY: [&str; 16] = [
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/opt", "/proc", "/root", "/run", "/sbin", "/sys",
    "/usr", "/var", "/tmp",
];

/// What to deprovision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Also delete the last provisioned user (`--user`, `-deprovision+user`).
    pub user: bool,
}

/// What `/etc/resolv.conf` is, which decides what deprovision says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvConf {
    /// Absent.
    Missing,
    /// A symlink (systemd-resolved, resolvconf, NetworkManager): managed, regenerated at boot.
    Managed { target: PathBuf },
    /// A plain file.
    PlainFile,
}

/// The user `--user` will delete, or why none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserTarget {
    /// Not asked for.
    NotRequested,
    /// Delete this account.
    Delete { name: String },
    /// Asked for but skipped; the reason is in the warnings.
    Skip { reason: String },
}

/// The deprovisioning decided before anything changes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub warnings: Vec<String>,
    pub user: UserTarget,
    pub resolv_conf: ResolvConf,
    pub stop_service: bool,
    pub delete_host_keys: bool,
    pub lock_root: bool,
    lib_dir: PathBuf,
    extension_log_dir: PathBuf,
    ssh_dir: PathBuf,
    password_path: PathBuf,
    sudoers_dir: PathBuf,
}

/// Build the plan: read `<Lib.Dir>/ovf-env.xml` for the user when `--user` is given, and work out
/// the warnings to print (waagent's, naming wala's unit, plus wala's own).
pub fn plan(root: &HostRoot, config: &Config, opts: Options) -> Plan {
    let lib_dir = config.lib_dir.as_path().to_path_buf();
    let mut w = Vec::new();
    let stop_service = root.is_live();
    if stop_service {
        w.push(format!("WARNING! The {} service will be stopped.", AGENT_UNIT.trim_end_matches(".service")));
    }
    let delete_host_keys = config.regenerate_ssh_host_key_pair;
    if delete_host_keys {
        w.push("WARNING! All SSH host key pairs will be deleted.".into());
    }
    w.push("WARNING! Cached DHCP leases will be deleted.".into());
    let lock_root = config.delete_root_password;
    if lock_root {
        w.push("WARNING! root password will be disabled. You will not be able to login as root.".into());
    }
    let resolv_conf = inspect_resolv_conf(root);
    w.push(match &resolv_conf {
        ResolvConf::Managed { target } => format!(
            "WARNING! /etc/resolv.conf will NOT be removed: it links to {}, which is regenerated at boot.",
            target.display()
        ),
        ResolvConf::PlainFile => "WARNING! /etc/resolv.conf will NOT be removed (removing it breaks name \
                                  resolution); check that it holds no site-specific settings."
            .into(),
        ResolvConf::Missing => "WARNING! /etc/resolv.conf does not exist; nothing to do for it.".into(),
    });
    let user = if opts.user {
        user_target(root, &lib_dir, config.allow_reset_sys_user)
    } else {
        UserTarget::NotRequested
    };
    match &user {
        UserTarget::Delete { name } => {
            w.push(format!("WARNING! {name} account and entire home directory will be deleted."))
        }
        UserTarget::Skip { reason } => {
            w.push(format!("WARNING! {reason}"));
            w.push("WARNING! Skip delete user.".into());
        }
        UserTarget::NotRequested => {}
    }
    w.push(format!(
        "WARNING! The hostname will be reset to {RESET_HOSTNAME}; the contents of {} and {} will be deleted.",
        lib_dir.display(),
        config.extension_log_dir.as_path().display()
    ));
    w.push("WARNING! /etc/machine-id will be emptied; systemd creates a new one at the next boot.".into());
    Plan {
        warnings: w,
        user,
        resolv_conf,
        stop_service,
        delete_host_keys,
        lock_root,
        lib_dir,
        extension_log_dir: config.extension_log_dir.as_path().to_path_buf(),
        ssh_dir: config.ssh_dir.as_path().to_path_buf(),
        password_path: config.password_path.as_path().to_path_buf(),
        sudoers_dir: config.sudoers_dir.as_path().to_path_buf(),
    }
}

fn inspect_resolv_conf(root: &HostRoot) -> ResolvConf {
    let path = root.path("/etc/resolv.conf");
    match std::fs::symlink_metadata(&path) {
        Err(_) => ResolvConf::Missing,
        Ok(m) if m.file_type().is_symlink() => {
            ResolvConf::Managed { target: std::fs::read_link(&path).unwrap_or_default() }
        }
        Ok(_) => ResolvConf::PlainFile,
    }
}

fn user_target(root: &HostRoot, lib_dir: &Path, allow_system_uid: bool) -> UserTarget {
    let skip = |reason: String| UserTarget::Skip { reason };
    let path = root.path(lib_dir.join("ovf-env.xml"));
    let Ok(Some(xml)) = files::read_optional(&path) else {
        return skip("ovf-env.xml is not found.".into());
    };
    let name = match ovf::parse(&xml) {
        Ok(env) => env.provisioning.user_name,
        Err(e) => return skip(format!("ovf-env.xml is not valid ({}).", e.reason())),
    };
    if let Err(e) = user::validate_name(&name) {
        return skip(format!("{e}."));
    }
    match user::lookup(root, &name) {
        Ok(Some(a)) => match user::system_account_reason(root, &a, allow_system_uid) {
            Some(why) => skip(format!("{name} is a system account ({why}); it will not be deleted.")),
            None => UserTarget::Delete { name },
        },
        Ok(None) => UserTarget::Delete { name },
        Err(e) => skip(format!("cannot read the account database: {e}.")),
    }
}

/// Print the warnings and ask `Do you want to proceed (y/n)`; true only for an answer starting
/// with `y` or `Y`. End of input counts as no.
pub fn confirm(plan: &Plan, input: &mut dyn BufRead, output: &mut dyn Write) -> bool {
    for w in &plan.warnings {
        let _ = writeln!(output, "{w}");
    }
    let _ = write!(output, "Do you want to proceed (y/n)");
    let _ = output.flush();
    let mut answer = String::new();
    let got = input.read_line(&mut answer).unwrap_or(0);
    let _ = writeln!(output);
    got > 0 && answer.trim_start().starts_with(['y', 'Y'])
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Host paths removed (or emptied, for `/etc/machine-id`), and `user NAME` for a deleted account.
    pub removed: Vec<PathBuf>,
    /// Informational notes (things left alone and why).
    pub notes: Vec<String>,
    /// Steps that failed, each with the reason.
    pub failures: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    fn fail(&mut self, step: &str, e: impl std::fmt::Display) {
        let line = format!("{step}: {e}");
        log::error!("deprovision: {line}");
        self.failures.push(line);
    }
}

/// Carry out the plan under `root`, in waagent's order. Never stops at a failed step.
pub fn apply(root: &HostRoot, runner: &dyn Runner, plan: &Plan) -> Report {
    let mut r = Report::default();
    // 1. Stop the daemon (live root only).
    if plan.stop_service && runner.exists("systemctl") {
        if let Err(e) = runner.run(&Cmd::new("systemctl").args(["stop", AGENT_UNIT])) {
            r.notes.push(format!("could not stop {AGENT_UNIT} (continuing): {e}"));
        }
    }
    // 2. SSH host keys.
    if plan.delete_host_keys {
        remove_matching(root, &plan.ssh_dir, |n| n.starts_with("ssh_host_") && n.contains("key"), &mut r);
    }
    // 3. DHCP leases.
    for dir in LEASE_DIRS {
        remove_matching(root, Path::new(dir), |_| true, &mut r);
    }
    for (dir, pattern) in LEASE_GLOBS {
        remove_matching(root, Path::new(dir), |n| glob_match(pattern, n), &mut r);
    }
    // 4. Hostname (the kernel's only on the live root).
    if let Err(e) = hostname::set_hostname(root, RESET_HOSTNAME) {
        r.fail("reset hostname", e);
    }
    // 5. Root password.
    if plan.lock_root {
        if let Err(e) = user::lock_root_password(root, &plan.password_path) {
            r.fail("lock root password", e);
        }
    }
    // 6. Agent state and extension logs (the directories are kept).
    for dir in [&plan.lib_dir, &plan.extension_log_dir] {
        empty_dir(root, dir, &mut r);
    }
    // 7. Shell history and the agent log.
    for file in ["/root/.bash_history", "/var/log/waagent.log"] {
        remove_file(root, Path::new(file), &mut r);
    }
    // 8. resolv.conf: left alone (waagent deletes it and breaks DNS on many images).
    r.notes.push(match &plan.resolv_conf {
        ResolvConf::Managed { target } => {
            format!("/etc/resolv.conf left alone: it links to {}", target.display())
        }
        ResolvConf::PlainFile => "/etc/resolv.conf left alone (a plain file)".into(),
        ResolvConf::Missing => "/etc/resolv.conf does not exist".into(),
    });
    // 9. The provisioned user.
    match &plan.user {
        UserTarget::Delete { name } => delete_user(root, runner, name, &plan.sudoers_dir, &mut r),
        UserTarget::Skip { reason } => r.notes.push(format!("user not deleted: {reason}")),
        UserTarget::NotRequested => {}
    }
    // 10, 11. waagent's firewall-persistence unit and cgroup drop-ins: wala's units come from its
    // package and it writes no such files, so there is nothing to remove.
    // 12. machine-id.
    reset_machine_id(root, &mut r);
    r
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters (no other wildcards).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Remove the files (regular files and symlinks, never directories) in `dir` whose names match.
pub(crate) fn remove_matching(root: &HostRoot, dir: &Path, matches: impl Fn(&str) -> bool, r: &mut Report) {
    let Ok(entries) = std::fs::read_dir(root.path(dir)) else {
        return;
    };
    let mut names: Vec<String> =
        entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for name in names.iter().filter(|n| matches(n)) {
        let host = dir.join(name);
        let is_dir = std::fs::symlink_metadata(root.path(&host)).map(|m| m.is_dir()).unwrap_or(true);
        if !is_dir {
            remove_file(root, &host, r);
        }
    }
}

fn remove_file(root: &HostRoot, host: &Path, r: &mut Report) {
    match std::fs::remove_file(root.path(host)) {
        Ok(()) => r.removed.push(host.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => r.fail(&format!("remove {}", host.display()), e),
    }
}

/// Delete everything inside `dir` (symlinks are removed, never followed); keep `dir` itself.
fn empty_dir(root: &HostRoot, dir: &Path, r: &mut Report) {
    let normalized = HostRoot::new("/").path(dir);
    if NEVER_EMPTY.iter().any(|p| Path::new(p) == normalized) || normalized.components().count() < 3 {
        r.fail(
            &format!("empty {}", dir.display()),
            "refusing to empty a system directory (check Lib.Dir and Extension.LogDir)",
        );
        return;
    }
    let Ok(entries) = std::fs::read_dir(root.path(&normalized)) else {
        return;
    };
    let mut names: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let host = normalized.join(&name);
        let path = root.path(&host);
        let res = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => r.removed.push(host),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => r.fail(&format!("remove {}", host.display()), e),
        }
    }
}

fn delete_user(root: &HostRoot, runner: &dyn Runner, name: &str, sudoers_dir: &Path, r: &mut Report) {
    match user::lookup(root, name) {
        Ok(Some(_)) => {
            let mut cmd = Cmd::new("userdel").args(["-f", "-r"]);
            if !root.is_live() {
                cmd = cmd.arg("--prefix").arg(root.prefix());
            }
            match runner.output(&cmd.arg("--").arg(name)) {
                // 12: the home directory could not be removed (often: it did not exist); the
                // account itself is gone.
                Ok(out) if out.success() || out.code == Some(12) => {
                    r.removed.push(PathBuf::from(format!("user {name}")));
                    if !out.success() {
                        r.notes.push(format!("userdel {name}: {}", out.stderr_str().trim()));
                    }
                }
                Ok(out) => r.fail(
                    &format!("delete user {name}"),
                    format!("userdel exited with {:?}: {}", out.code, out.stderr_str().trim()),
                ),
                Err(e) => r.fail(&format!("delete user {name}"), e),
            }
        }
        Ok(None) => r.notes.push(format!("user {name} does not exist")),
        Err(e) => r.fail(&format!("delete user {name}"), e),
    }
    remove_sudoers_lines(root, sudoers_dir, name, r);
}

/// Drop the lines of `<OS.SudoersDir>/waagent` whose first field is `name`; remove the file when no
/// line is left.
fn remove_sudoers_lines(root: &HostRoot, sudoers_dir: &Path, name: &str, r: &mut Report) {
    let host = sudoers_dir.join("waagent");
    let path = root.path(&host);
    let text = match files::read_optional(&path) {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => return r.fail("edit sudoers", e),
    };
    let kept: Vec<&str> = text.lines().filter(|l| l.split_whitespace().next() != Some(name)).collect();
    if kept.len() == text.lines().count() {
        return;
    }
    if kept.iter().all(|l| l.trim().is_empty()) {
        remove_file(root, &host, r);
        return;
    }
    let mode = files::mode_and_owner(&path).map(|m| m.0).unwrap_or(0o440);
    match files::write_atomic(&path, (kept.join("\n") + "\n").as_bytes(), WriteOptions::mode(mode)) {
        Ok(()) => r.notes.push(format!("removed {name}'s line from {}", host.display())),
        Err(e) => r.fail("edit sudoers", e),
    }
}

/// Empty `/etc/machine-id` (systemd writes a fresh id at the next boot and treats it as the first
/// boot) and remove a D-Bus copy that is a plain file. Symlinks are left alone.
fn reset_machine_id(root: &HostRoot, r: &mut Report) {
    let etc = Path::new("/etc/machine-id");
    let path = root.path(etc);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {
            if m.len() > 0 {
                let mode = files::mode_and_owner(&path).map(|m| m.0).unwrap_or(0o444);
                match files::write_atomic(&path, b"", WriteOptions::mode(mode)) {
                    Ok(()) => r.removed.push(etc.to_path_buf()),
                    Err(e) => r.fail("empty /etc/machine-id", e),
                }
            }
        }
        Ok(_) => r.notes.push("/etc/machine-id is not a plain file; left alone".into()),
        Err(_) => {}
    }
    let dbus = Path::new("/var/lib/dbus/machine-id");
    if std::fs::symlink_metadata(root.path(dbus)).is_ok_and(|m| m.is_file()) {
        remove_file(root, dbus, r);
    }
}

/// Ignore SIGINT from here on: once deprovisioning has started it must not stop half-way.
pub fn ignore_interrupts() {
    // SAFETY: installing SIG_IGN for SIGINT has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("dhclient-*.lease", "dhclient-eth0.lease"));
        assert!(!glob_match("dhclient-*.lease", "dhclient-eth0.leases"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("dhclient.leases.*", "dhclient.leases.hvn0"));
        assert!(glob_match("a*b*c", "aXbYc") && !glob_match("a*b*c", "aXc"));
        assert!(glob_match("ab", "ab") && !glob_match("ab", "abc"));
        assert!(!glob_match("a*a", "a"));
    }

    #[test]
    fn confirm_reads_one_answer() {
        let plan = plan(&HostRoot::new("/nonexistent-root"), &Config::default(), Options::default());
        for (answer, yes) in [("y\n", true), ("Yes\n", true), ("n\n", false), ("\n", false), ("", false)] {
            let mut out = Vec::new();
            assert_eq!(confirm(&plan, &mut answer.as_bytes(), &mut out), yes, "{answer:?}");
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("WARNING! Cached DHCP leases will be deleted.\n"), "{text}");
            assert!(text.contains("Do you want to proceed (y/n)"));
        }
    }

    #[test]
    fn warnings_follow_the_configuration() {
        let root = HostRoot::new("/nonexistent-root");
        let p = plan(&root, &Config::default(), Options { user: true });
        assert!(!p.warnings.iter().any(|w| w.contains("SSH host key") || w.contains("root password")));
        assert!(!p.warnings.iter().any(|w| w.contains("service will be stopped")), "not on a non-live root");
        assert!(p.warnings.contains(&"WARNING! ovf-env.xml is not found.".to_string()));
        assert!(p.warnings.contains(&"WARNING! Skip delete user.".to_string()));
        let c =
            Config { regenerate_ssh_host_key_pair: true, delete_root_password: true, ..Config::default() };
        let p = plan(&root, &c, Options::default());
        assert_eq!(p.warnings[0], "WARNING! All SSH host key pairs will be deleted.");
        assert_eq!(p.warnings[1], "WARNING! Cached DHCP leases will be deleted.");
        assert!(p.warnings[2].starts_with("WARNING! root password will be disabled."));
        assert_eq!(p.user, UserTarget::NotRequested);
    }

    #[test]
    fn system_accounts_are_not_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("var/lib/waagent")).expect("mkdir");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/bash\nnobody:x:65534:65534::/:/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/bash\n",
        )
        .expect("write");
        for (user, expected) in [
            (
                "nobody",
                Some("nobody is a system account (uid 65534 > UID_MAX 60000); it will not be deleted."),
            ),
            ("root", Some("root is a system account (uid 0, the superuser); it will not be deleted.")),
            ("alice", None),
        ] {
            let ovf = format!(
                r#"<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure"><wa:ProvisioningSection><wa:Version>1.0</wa:Version><wa:LinuxProvisioningConfigurationSet><wa:ConfigurationSetType>LinuxProvisioningConfiguration</wa:ConfigurationSetType><wa:HostName>vm</wa:HostName><wa:UserName>{user}</wa:UserName></wa:LinuxProvisioningConfigurationSet></wa:ProvisioningSection><wa:PlatformSettingsSection><wa:Version>1.0</wa:Version><wa:PlatformSettings><wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent></wa:PlatformSettings></wa:PlatformSettingsSection></Environment>"#
            );
            std::fs::write(dir.path().join("var/lib/waagent/ovf-env.xml"), ovf).expect("write");
            let p = plan(&root, &Config::default(), Options { user: true });
            match expected {
                Some(reason) => assert_eq!(p.user, UserTarget::Skip { reason: reason.into() }),
                None => assert_eq!(p.user, UserTarget::Delete { name: user.into() }),
            }
        }
    }

    #[test]
    fn system_directories_are_never_emptied() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("var/keep")).expect("mkdir");
        std::fs::write(dir.path().join("var/keep/f"), "x").expect("write");
        let root = HostRoot::new(dir.path());
        let mut r = Report::default();
        for d in ["/var", "/", "/etc/", "var", "/var/keep/.."] {
            empty_dir(&root, Path::new(d), &mut r);
        }
        assert_eq!(r.failures.len(), 5, "{:?}", r.failures);
        assert!(dir.path().join("var/keep/f").exists());
    }
}
