//! The admin user: account, password, sudoers drop-in, and the root password lock.
//!
//! Accounts are created with `useradd --prefix <root>` so the same code works on the live root, on
//! `/sysroot` from the initramfs, and on a test root. Looking a user up reads `<root>/etc/passwd`
//! (not NSS, which would answer for the running system). Password hashes are written straight
//! into the shadow file with the atomic writer, under the locks shadow-utils takes
//! ([`crate::host::shadow_lock`]): neither the password nor its hash ever appears in a command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::cmd::{Cmd, CmdError, Runner};
use crate::base::files::{self, FileError, WriteOptions};
use crate::base::root::HostRoot;
use crate::base::secret::Secret;
use crate::documents::conf::PasswordCryptId;
use crate::host::shadow_lock::{self, LockError, ShadowLock};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid user name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("cannot create user {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: CmdError,
    },
    #[error("user {name} was not found in {} after useradd", passwd.display())]
    NotCreated { name: String, passwd: PathBuf },
    /// An existing account that is not a regular user's: provisioning would hand it sudo and keys.
    #[error("UserName {name} is a system account ({why})")]
    SystemAccount { name: String, uid: u32, why: String },
    #[error("user {name} has no entry in {}", shadow.display())]
    NoShadowEntry { name: String, shadow: PathBuf },
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("sudoers drop-in {} is invalid: {source}", path.display())]
    Sudoers {
        path: PathBuf,
        #[source]
        source: CmdError,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    File(#[from] FileError),
}

impl UserError {
    /// Short text for a ProvisioningFailed report.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// An account as `/etc/passwd` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Home directory as seen on the target system (resolve it with the root).
    pub home: PathBuf,
    /// Login shell as `/etc/passwd` has it (empty means `/bin/sh`).
    pub shell: PathBuf,
}

/// Check a user name the way useradd's default rules would, and refuse anything that could be read
/// as an option or break the passwd format.
pub fn validate_name(name: &str) -> Result<(), UserError> {
    let invalid = |why| Err(UserError::InvalidName { name: name.into(), why });
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > 32 {
        return invalid("it is longer than 32 characters");
    }
    if name.starts_with('-') {
        return invalid("it starts with '-'");
    }
    if name == "." || name == ".." || name.chars().all(|c| c.is_ascii_digit()) {
        return invalid("it is not a valid name");
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    // (Not `split_at(len - 1)`: a name ending in a multi-byte character panicked there; found by
    // the plan_build fuzz target.)
    let body = name.strip_suffix('$').unwrap_or(name);
    if !body.chars().all(ok) {
        return invalid("only letters, digits, '_', '-', '.' (and a final '$') are allowed");
    }
    Ok(())
}

/// Look `name` up in `<root>/etc/passwd`.
pub fn lookup(root: &HostRoot, name: &str) -> Result<Option<Account>, UserError> {
    let passwd = root.path("/etc/passwd");
    let text = files::read_optional(&passwd)?.unwrap_or_default();
    Ok(text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[0] == name).then(|| Account {
            name: f[0].to_string(),
            uid: f[2].parse().unwrap_or(u32::MAX),
            gid: f[3].parse().unwrap_or(u32::MAX),
            home: PathBuf::from(f[5]),
            shell: PathBuf::from(f[6]),
        })
    }))
}

/// Create the user (with a home directory) unless it exists; return the account either way, after
/// checking that it is a regular account ([`check_regular`]): it may have appeared since the plan
/// was made.
pub fn ensure_user(
    root: &HostRoot,
    runner: &dyn Runner,
    name: &str,
    allow_system_uid: bool,
) -> Result<Account, UserError> {
    validate_name(name)?;
    if let Some(account) = lookup(root, name)? {
        check_regular(root, &account, allow_system_uid)?;
        log::info!("User {name} already exists, skip useradd");
        return Ok(account);
    }
    let mut cmd = Cmd::new("useradd").args(["-m", "-s", "/bin/bash"]);
    if !root.is_live() {
        cmd = cmd.arg("--prefix").arg(root.prefix());
    }
    runner.run(&cmd.arg("--").arg(name)).map_err(|source| UserError::Create { name: name.into(), source })?;
    let account = lookup(root, name)?
        .ok_or_else(|| UserError::NotCreated { name: name.into(), passwd: root.path("/etc/passwd") })?;
    check_regular(root, &account, allow_system_uid)?;
    Ok(account)
}

/// `UID_MIN` from `<root>/etc/login.defs` (1000 when absent, the shadow-utils default).
pub fn uid_min(root: &HostRoot) -> u32 {
    login_defs_number(root, "UID_MIN").unwrap_or(1000)
}

/// `UID_MAX` from `<root>/etc/login.defs` (60000 when absent, the shadow-utils default).
pub fn uid_max(root: &HostRoot) -> u32 {
    login_defs_number(root, "UID_MAX").unwrap_or(60000)
}

fn login_defs_number(root: &HostRoot, key: &str) -> Option<u32> {
    let text = std::fs::read_to_string(root.path("/etc/login.defs")).ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok()).flatten()
    })
}

/// Shells that let no one log in: `nologin`, `false`, `true`, wherever they live.
const NO_LOGIN_SHELLS: &[&str] = &["nologin", "false", "true"];

/// Why `account` is not a regular user's, or `None` when it is: root (uid 0), a uid outside
/// `UID_MIN`..=`UID_MAX` of `<root>/etc/login.defs` (unless `allow_system_uid`,
/// `Provisioning.AllowResetSysUser`), or a shell that allows no login.
pub fn system_account_reason(root: &HostRoot, account: &Account, allow_system_uid: bool) -> Option<String> {
    let uid = account.uid;
    if uid == 0 {
        return Some("uid 0, the superuser".into());
    }
    if !allow_system_uid {
        let (min, max) = (uid_min(root), uid_max(root));
        if uid < min {
            return Some(format!("uid {uid} < UID_MIN {min}"));
        }
        if uid > max {
            return Some(format!("uid {uid} > UID_MAX {max}"));
        }
    }
    let shell = account.shell.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    NO_LOGIN_SHELLS.contains(&shell).then(|| format!("its shell {} allows no login", account.shell.display()))
}

/// Refuse an account that is not a regular user's (see [`system_account_reason`]).
pub fn check_regular(root: &HostRoot, account: &Account, allow_system_uid: bool) -> Result<(), UserError> {
    match system_account_reason(root, account, allow_system_uid) {
        None => Ok(()),
        Some(why) => Err(UserError::SystemAccount { name: account.name.clone(), uid: account.uid, why }),
    }
}

/// Hash `password` with the crypt(3) method and a random salt of `salt_len` characters.
pub fn hash_password(
    password: &Secret<String>,
    id: PasswordCryptId,
    salt_len: usize,
) -> Result<String, UserError> {
    let max_salt = if id == PasswordCryptId::Md5 { 8 } else { 16 };
    let salt = random_salt(salt_len.clamp(1, max_salt)).map_err(|e| UserError::Hash(e.to_string()))?;
    let setting = format!("${}${salt}", id.as_str());
    pwhash::unix::crypt(password.expose().as_bytes(), &setting).map_err(|e| UserError::Hash(e.to_string()))
}

fn random_salt(len: usize) -> std::io::Result<String> {
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = vec![0u8; len];
    crate::base::random::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect())
}

/// What the password field of a shadow entry should hold.
#[derive(Debug)]
pub enum PasswordField<'a> {
    /// A crypt(3) hash.
    Hash(&'a str),
    /// No password login (`*`): unlike `!`, sshd without PAM still accepts keys for the account.
    NoLogin,
}

/// Set the password field of `name` in the shadow file (`OS.PasswordPath`), keeping everything
/// else byte for byte, mode and owner included. The file is read, changed and replaced while
/// holding shadow-utils' locks, waited for up to [`shadow_lock::LOCK_TIMEOUT`].
pub fn set_shadow_password(
    root: &HostRoot,
    shadow: &Path,
    name: &str,
    field: PasswordField<'_>,
) -> Result<(), UserError> {
    edit_shadow(root, shadow, name, field, shadow_lock::LOCK_TIMEOUT)
}

fn edit_shadow(
    root: &HostRoot,
    shadow: &Path,
    name: &str,
    field: PasswordField<'_>,
    lock_timeout: Duration,
) -> Result<(), UserError> {
    let _lock = ShadowLock::acquire(root, shadow, lock_timeout)?;
    let path = root.path(shadow);
    let text = files::read_optional(&path)?.unwrap_or_default();
    let value = match field {
        PasswordField::Hash(h) => h,
        PasswordField::NoLogin => "*",
    };
    let mut found = false;
    let mut out = String::with_capacity(text.len() + 128);
    for line in text.split_inclusive('\n') {
        let (body, newline) = line.strip_suffix('\n').map_or((line, ""), |b| (b, "\n"));
        match body.split_once(':') {
            Some((user, rest)) if user == name => {
                found = true;
                let after = rest.split_once(':').map_or("", |(_, a)| a);
                out.push_str(&format!("{user}:{value}:{after}{newline}"));
            }
            _ => out.push_str(line),
        }
    }
    if !found {
        return Err(UserError::NoShadowEntry { name: name.into(), shadow: path });
    }
    let (mode, uid, gid) = files::mode_and_owner(&path)?;
    files::write_atomic(&path, out.as_bytes(), WriteOptions::mode(mode).owned_by(uid, gid))?;
    Ok(())
}

/// Set the user's password, or disable password login when there is none; a system account
/// ([`check_regular`]) is refused either way.
pub fn set_password(
    root: &HostRoot,
    shadow: &Path,
    account: &Account,
    password: Option<&Secret<String>>,
    crypt: (PasswordCryptId, usize),
    allow_system_uid: bool,
) -> Result<(), UserError> {
    check_regular(root, account, allow_system_uid)?;
    let Some(password) = password else {
        return set_shadow_password(root, shadow, &account.name, PasswordField::NoLogin);
    };
    let hash = Secret::new(hash_password(password, crypt.0, crypt.1)?);
    set_shadow_password(root, shadow, &account.name, PasswordField::Hash(hash.expose()))
}

/// Lock root's password (`Provisioning.DeleteRootPassword`).
pub fn lock_root_password(root: &HostRoot, shadow: &Path) -> Result<(), UserError> {
    set_shadow_password(root, shadow, "root", PasswordField::Hash("*LOCK*"))
}

/// The sudoers drop-in line for the user: without a password the user could never type one, so
/// sudo must not ask.
pub fn sudoers_line(name: &str, nopasswd: bool) -> String {
    if nopasswd {
        format!("{name} ALL=(ALL) NOPASSWD: ALL")
    } else {
        format!("{name} ALL=(ALL) ALL")
    }
}

/// Write `<OS.SudoersDir>/waagent` (0440) holding the user's line, keeping other users' lines and
/// replacing this user's old line; validated with `visudo -c` where visudo exists, and never left
/// invalid.
pub fn configure_sudoers(
    root: &HostRoot,
    runner: &dyn Runner,
    sudoers_dir: &Path,
    name: &str,
    nopasswd: bool,
) -> Result<(), UserError> {
    match prepare_sudoers(root, runner, sudoers_dir, name, nopasswd)? {
        Some(checked) => checked.install(),
        None => Ok(()),
    }
}

/// `<OS.SudoersDir>/waagent` with `name`'s line, checked by `visudo -c` (where there is one) but
/// not yet in place: the local stage checks it while `useradd` runs and installs it once the user
/// exists, so that no sudoers line names a user that was never made. `None` when the file already
/// says it.
pub fn prepare_sudoers(
    root: &HostRoot,
    runner: &dyn Runner,
    sudoers_dir: &Path,
    name: &str,
    nopasswd: bool,
) -> Result<Option<CheckedSudoers>, UserError> {
    let dir = root.path(sudoers_dir);
    files::ensure_dir(&dir, 0o750)?;
    let path = dir.join("waagent");
    let existing = files::read_optional(&path)?.unwrap_or_default();
    let line = sudoers_line(name, nopasswd);
    let mut lines: Vec<&str> = existing
        .lines()
        .filter(|l| l.split_whitespace().next() != Some(name) && !l.trim().is_empty())
        .collect();
    lines.push(&line);
    let text = lines.join("\n") + "\n";
    if text == existing {
        return Ok(None);
    }
    if runner.exists("visudo") {
        // Check the new content before it replaces anything: a broken sudoers file locks out sudo.
        let candidate = dir.join(".waagent.wala-check");
        files::write_atomic(&candidate, text.as_bytes(), WriteOptions::mode(0o440))?;
        let checked = runner.run(&Cmd::new("visudo").args(["-c", "-q", "-f"]).arg(&candidate));
        let _ = std::fs::remove_file(&candidate);
        checked.map_err(|source| UserError::Sudoers { path: path.clone(), source })?;
    }
    Ok(Some(CheckedSudoers { path, text }))
}

/// A sudoers file's new content, checked ([`prepare_sudoers`]).
#[derive(Debug)]
#[must_use = "the checked file is not in place until installed"]
pub struct CheckedSudoers {
    path: PathBuf,
    text: String,
}

impl CheckedSudoers {
    /// Put the file in place (0440, atomically).
    pub fn install(self) -> Result<(), UserError> {
        files::write_atomic(&self.path, self.text.as_bytes(), WriteOptions::mode(0o440))?;
        Ok(())
    }
}

/// Drop the lines of `<OS.SudoersDir>/waagent` whose first field is `name` (waagent drops every
/// line that merely contains the name, other users' included); the file keeps its mode and is
/// removed when no line is left. Returns whether anything changed.
pub fn remove_sudoers(root: &HostRoot, sudoers_dir: &Path, name: &str) -> Result<bool, UserError> {
    let path = root.path(sudoers_dir).join("waagent");
    let Some(text) = files::read_optional(&path)? else { return Ok(false) };
    let kept: Vec<&str> = text.lines().filter(|l| l.split_whitespace().next() != Some(name)).collect();
    if kept.len() == text.lines().count() {
        return Ok(false);
    }
    if kept.iter().all(|l| l.trim().is_empty()) {
        std::fs::remove_file(&path).map_err(|e| FileError::new("remove", &path, e))?;
        return Ok(true);
    }
    let mode = files::mode_and_owner(&path).map(|m| m.0).unwrap_or(0o440);
    files::write_atomic(&path, (kept.join("\n") + "\n").as_bytes(), WriteOptions::mode(mode))?;
    Ok(true)
}

/// The home directory `useradd` will give a new user: `HOME` of `/etc/default/useradd`, or /home.
pub fn predicted_home(root: &HostRoot, name: &str) -> PathBuf {
    let base = std::fs::read_to_string(root.path("/etc/default/useradd"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.trim().strip_prefix("HOME=").map(|v| v.trim().trim_matches('"').to_string()))
        })
        .filter(|v| v.starts_with('/'))
        .unwrap_or_else(|| "/home".into());
    Path::new(&base).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::FakeRunner;

    #[test]
    fn sudoers_lines_are_removed_by_first_field_only() {
        let (d, root) = root_with("", "");
        let dir = Path::new("/etc/sudoers.d");
        assert!(!remove_sudoers(&root, dir, "jit").expect("no file"));
        std::fs::create_dir_all(d.path().join("etc/sudoers.d")).expect("mkdir");
        let path = d.path().join("etc/sudoers.d/waagent");
        std::fs::write(&path, "azureuser ALL=(ALL) ALL\njit ALL=(ALL) ALL\njit2 ALL=(ALL) ALL # jit\n")
            .expect("write");
        assert!(remove_sudoers(&root, dir, "jit").expect("remove"));
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "azureuser ALL=(ALL) ALL\njit2 ALL=(ALL) ALL # jit\n"
        );
        assert!(!remove_sudoers(&root, dir, "jit").expect("again"));
        assert!(remove_sudoers(&root, dir, "azureuser").expect("remove"));
        assert!(remove_sudoers(&root, dir, "jit2").expect("remove"));
        assert!(!path.exists(), "an empty drop-in is removed");
    }

    fn root_with(passwd: &str, shadow: &str) -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(dir.path().join("etc/passwd"), passwd).expect("write");
        std::fs::write(dir.path().join("etc/shadow"), shadow).expect("write");
        let root = HostRoot::new(dir.path());
        (dir, root)
    }

    #[test]
    fn names() {
        for good in ["azureuser", "a.b-c_d", "svc$", "User1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-rf",
            "a:b",
            "a b",
            "123",
            "..",
            "x\ny",
            &"a".repeat(33),
            "azureuser\u{a7}",
            "\u{e9}",
            "a\u{e9}$",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn existing_user_is_reused_without_useradd() {
        let (_d, root) = root_with("root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n", "");
        let fake = FakeRunner::new();
        let acct = ensure_user(&root, &fake, "bob", false).expect("user");
        assert_eq!(
            acct,
            Account {
                name: "bob".into(),
                uid: 1001,
                gid: 1001,
                home: "/home/bob".into(),
                shell: "/bin/sh".into()
            }
        );
        assert!(fake.calls().is_empty());
    }

    #[test]
    fn useradd_gets_prefix_and_double_dash() {
        let (_d, root) = root_with("root:x:0:0::/root:/bin/sh\n", "");
        let fake = FakeRunner::new();
        let err = ensure_user(&root, &fake, "alice", false).unwrap_err();
        assert!(matches!(err, UserError::NotCreated { .. }), "{err}");
        let line = &fake.command_lines()[0];
        assert!(
            line.starts_with("useradd -m -s /bin/bash --prefix ") && line.ends_with(" -- alice"),
            "{line}"
        );
    }

    #[test]
    fn password_hash_goes_to_shadow_only() {
        let (d, root) =
            root_with("", "root:*:19000:0:99999:7:::\nalice:!:20000:0:99999:7:::\nbob:!:20000::::::\n");
        let acct = alice();
        let pw = Secret::new("Pa55w.rd!".to_string());
        set_password(&root, Path::new("/etc/shadow"), &acct, Some(&pw), (PasswordCryptId::Sha512, 10), false)
            .expect("set");
        let shadow = std::fs::read_to_string(d.path().join("etc/shadow")).expect("read");
        let lines: Vec<&str> = shadow.lines().collect();
        assert_eq!(lines[0], "root:*:19000:0:99999:7:::");
        assert_eq!(lines[2], "bob:!:20000::::::");
        let fields: Vec<&str> = lines[1].split(':').collect();
        assert_eq!(fields[0], "alice");
        assert!(fields[1].starts_with("$6$") && fields[1].len() > 80, "{}", fields[1]);
        assert_eq!(fields[1].split('$').nth(2).map(str::len), Some(10), "salt length");
        assert_eq!(&fields[2..], &["20000", "0", "99999", "7", "", "", ""]);
        assert!(pwhash::unix::verify("Pa55w.rd!", fields[1]));
        assert!(!shadow.contains("Pa55w.rd!"));
    }

    #[test]
    fn no_password_disables_password_login_but_not_keys() {
        let (d, root) = root_with("", "alice:!:20000::::::\n");
        let acct = alice();
        set_password(&root, Path::new("/etc/shadow"), &acct, None, (PasswordCryptId::Sha512, 10), false)
            .expect("set");
        assert_eq!(
            std::fs::read_to_string(d.path().join("etc/shadow")).expect("read"),
            "alice:*:20000::::::\n"
        );
    }

    fn alice() -> Account {
        Account {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/alice".into(),
            shell: "/bin/bash".into(),
        }
    }

    fn account(name: &str, uid: u32, home: &str, shell: &str) -> Account {
        Account { name: name.into(), uid, gid: uid, home: home.into(), shell: shell.into() }
    }

    #[test]
    fn system_accounts_are_named_with_the_reason() {
        let (_d, root) = root_with("", "");
        let why = |a: &Account, allow| system_account_reason(&root, a, allow);
        let nobody = account("nobody", 65534, "/", "/sbin/nologin");
        assert_eq!(why(&nobody, false).as_deref(), Some("uid 65534 > UID_MAX 60000"));
        assert_eq!(
            why(&account("root", 0, "/root", "/bin/bash"), true).as_deref(),
            Some("uid 0, the superuser")
        );
        assert_eq!(
            why(&account("daemon", 1, "/usr/sbin", "/bin/sh"), false).as_deref(),
            Some("uid 1 < UID_MIN 1000")
        );
        for shell in ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/true"] {
            let svc = account("svc", 1500, "/srv/svc", shell);
            assert_eq!(why(&svc, true), Some(format!("its shell {shell} allows no login")), "{shell}");
        }
        assert_eq!(why(&alice(), false), None);
        assert_eq!(
            why(&account("old", 500, "/home/old", ""), false).as_deref(),
            Some("uid 500 < UID_MIN 1000")
        );
        // Provisioning.AllowResetSysUser=y admits a uid outside the range, never root nor nologin.
        assert_eq!(why(&account("old", 500, "/home/old", ""), true), None);
        assert!(why(&nobody, true).is_some());
        // The range comes from the root's login.defs.
        std::fs::write(root.path("/etc/login.defs"), "# x\nUID_MIN\t500\nUID_MAX 70000\n").expect("write");
        assert_eq!(why(&account("old", 500, "/home/old", "/bin/bash"), false), None);
        assert_eq!(why(&account("hi", 65534, "/home/hi", "/bin/bash"), false), None);
        let err = check_regular(&root, &account("daemon", 1, "/", "/bin/sh"), false).unwrap_err();
        assert_eq!(err.to_string(), "UserName daemon is a system account (uid 1 < UID_MIN 500)");
    }

    #[test]
    fn an_existing_system_account_is_refused_at_use_whatever_the_password() {
        // The plan saw no such user; by the time of the user step it exists as a system account.
        let (d, root) = root_with(
            "root:x:0:0::/root:/bin/bash\nnobody:x:65534:65534::/:/sbin/nologin\n",
            "root:*:1::::::\nnobody:*:1::::::\n",
        );
        let fake = FakeRunner::new();
        for name in ["nobody", "root"] {
            let err = ensure_user(&root, &fake, name, true).unwrap_err();
            assert!(matches!(err, UserError::SystemAccount { .. }), "{err}");
        }
        assert!(fake.calls().is_empty());
        let nobody = lookup(&root, "nobody").expect("read").expect("nobody");
        let pw = Secret::new("x".to_string());
        for password in [None, Some(&pw)] {
            let err = set_password(
                &root,
                Path::new("/etc/shadow"),
                &nobody,
                password,
                (PasswordCryptId::Sha256, 8),
                false,
            )
            .unwrap_err();
            assert!(matches!(err, UserError::SystemAccount { uid: 65534, .. }), "{err}");
        }
        assert_eq!(
            std::fs::read_to_string(d.path().join("etc/shadow")).expect("read"),
            "root:*:1::::::\nnobody:*:1::::::\n"
        );
    }

    #[test]
    fn a_shadow_edit_waits_for_the_lock_and_times_out_with_a_clear_error() {
        let (d, root) = root_with("", "root:$6$abc$def:19000:0:99999:7:::\n");
        let shadow = Path::new("/etc/shadow");
        // Another holder (useradd, passwd, ...) that does not let go: the edit gives up unchanged.
        let holder = ShadowLock::acquire(&root, shadow, shadow_lock::LOCK_TIMEOUT).expect("lock");
        let started = std::time::Instant::now();
        let err =
            edit_shadow(&root, shadow, "root", PasswordField::Hash("*LOCK*"), Duration::from_millis(300))
                .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        let lock_file = d.path().join("etc/.pwd.lock");
        assert_eq!(
            err.to_string(),
            format!(
                "the shadow lock {} is held by another process (useradd, passwd, ...) for {:.1} s; {} not edited",
                lock_file.display(),
                match &err {
                    UserError::Lock(LockError::Busy { waited, .. }) => waited.as_secs_f64(),
                    other => panic!("{other}"),
                },
                d.path().join("etc/shadow").display()
            )
        );
        let text = || std::fs::read_to_string(d.path().join("etc/shadow")).expect("read");
        assert_eq!(text(), "root:$6$abc$def:19000:0:99999:7:::\n");
        // A holder that lets go after 300 ms: the edit waits for it, then happens.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(holder);
        });
        let started = std::time::Instant::now();
        lock_root_password(&root, shadow).expect("lock root after the wait");
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
        release.join().expect("join");
        assert_eq!(text(), "root:*LOCK*:19000:0:99999:7:::\n");
        assert!(!d.path().join("etc/shadow.lock").exists(), "released");
    }

    #[test]
    fn root_lock() {
        let (d, root) = root_with("", "root:$6$abc$def:19000:0:99999:7:::\n");
        lock_root_password(&root, Path::new("/etc/shadow")).expect("lock");
        assert_eq!(
            std::fs::read_to_string(d.path().join("etc/shadow")).expect("read"),
            "root:*LOCK*:19000:0:99999:7:::\n"
        );
    }

    #[test]
    fn sudoers_dropin_is_idempotent_and_replaces_the_users_line() {
        let (d, root) = root_with("", "");
        let fake = FakeRunner::new();
        fake.without("visudo");
        let dir = Path::new("/etc/sudoers.d");
        configure_sudoers(&root, &fake, dir, "alice", true).expect("sudoers");
        configure_sudoers(&root, &fake, dir, "carol", false).expect("sudoers");
        configure_sudoers(&root, &fake, dir, "alice", false).expect("sudoers");
        configure_sudoers(&root, &fake, dir, "alice", false).expect("sudoers");
        let path = d.path().join("etc/sudoers.d/waagent");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "carol ALL=(ALL) ALL\nalice ALL=(ALL) ALL\n"
        );
        assert_eq!(files::mode_and_owner(&path).expect("stat").0, 0o440);
    }

    #[test]
    fn sudoers_rejected_by_visudo_is_not_installed() {
        let (d, root) = root_with("", "");
        let fake = FakeRunner::new();
        fake.respond(
            "visudo",
            crate::base::cmd::CmdOutput {
                code: Some(1),
                stderr: b"syntax error".to_vec(),
                ..Default::default()
            },
        );
        let err = configure_sudoers(&root, &fake, Path::new("/etc/sudoers.d"), "alice", true).unwrap_err();
        assert!(err.to_string().contains("syntax error"), "{err}");
        assert!(!d.path().join("etc/sudoers.d/waagent").exists());
        assert_eq!(std::fs::read_dir(d.path().join("etc/sudoers.d")).expect("ls").count(), 0);
    }

    #[test]
    fn hashes_for_each_method() {
        let pw = Secret::new("secret".to_string());
        for (id, prefix) in [
            (PasswordCryptId::Md5, "$1$"),
            (PasswordCryptId::Sha256, "$5$"),
            (PasswordCryptId::Sha512, "$6$"),
        ] {
            let h = hash_password(&pw, id, 10).expect("hash");
            assert!(h.starts_with(prefix), "{h}");
            assert!(pwhash::unix::verify("secret", &h));
        }
    }
}
