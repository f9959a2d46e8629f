//! sshd settings and the user's authorized keys (host keys: [`crate::host::host_keys`]).

use std::path::{Component, Path, PathBuf};

use crate::base::files::{self, FileError, WriteOptions};
use crate::base::root::HostRoot;
use crate::host::user::Account;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("SSH public key {index} is not a key sshd accepts: {why}")]
    BadKey { index: usize, why: String },
    #[error("SSH key path {path:?} is outside the home directory {} of {user}", home.display())]
    PathOutsideHome { path: String, home: PathBuf, user: String },
    #[error("SSH key path {} goes through a symlink at {}; refusing to follow it", path.display(), link.display())]
    Symlink { path: PathBuf, link: PathBuf },
    #[error("the home directory {} of {user} is owned by uid {owner}, not by the user; refusing to put SSH keys in it", home.display())]
    HomeNotOwned { home: PathBuf, user: String, owner: u32 },
    #[error("SSH key file {} {why}; refusing to read or replace it", path.display())]
    UnsafeKeyFile { path: PathBuf, why: String },
    #[error(transparent)]
    File(#[from] FileError),
}

/// The sshd settings provisioning controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshdSettings {
    /// `PasswordAuthentication` and keyboard-interactive: off when the OVF's
    /// `DisableSshPasswordAuthentication` is true, on otherwise (also when it is absent, as waagent).
    pub password_authentication: bool,
    /// `ClientAliveInterval` (`OS.SshClientAliveInterval`).
    pub client_alive_interval: u64,
}

/// Where the settings went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshdChange {
    DropIn(PathBuf),
    Edited(PathBuf),
    Unchanged(PathBuf),
}

/// The drop-in file name: same position as cloud-init's `50-cloud-init.conf`, before the main file's
/// own settings (sshd keeps the first value it reads).
pub const DROP_IN_NAME: &str = "50-wala.conf";

/// Apply the settings: a drop-in in `sshd_config.d/` when `sshd_config` includes that directory,
/// else an idempotent edit of `sshd_config` following waagent's rules. Where `sshd_config` is
/// absent but the vendor's `/usr/etc/ssh/sshd_config` is there (openSUSE, newer SUSE releases:
/// sshd reads it when `/etc/ssh/sshd_config` does not exist), the vendor file is what sshd reads:
/// its `Include` decides, and an edit starts from its text (an `/etc` file with only wala's
/// three lines would hide every vendor setting).
pub fn configure_sshd(
    root: &HostRoot,
    ssh_dir: &Path,
    settings: SshdSettings,
) -> Result<SshdChange, SshError> {
    let main = root.path(ssh_dir.join("sshd_config"));
    let text =
        match files::read_optional(&main)? {
            Some(text) => text,
            None => files::read_optional(&root.path(
                Path::new("/usr").join(ssh_dir.strip_prefix("/").unwrap_or(ssh_dir)).join("sshd_config"),
            ))?
            .unwrap_or_default(),
        };
    let yes_no = if settings.password_authentication { "yes" } else { "no" };
    // OpenSSH 8.7 renamed ChallengeResponseAuthentication; the old name is accepted by every version,
    // the new one only by recent ones. Use the new one only where the config already does.
    let kbd_key = if text.lines().any(|l| l.trim_start().starts_with("KbdInteractiveAuthentication")) {
        "KbdInteractiveAuthentication"
    } else {
        "ChallengeResponseAuthentication"
    };
    let wanted = [
        ("PasswordAuthentication", yes_no.to_string()),
        (kbd_key, yes_no.to_string()),
        ("ClientAliveInterval", settings.client_alive_interval.to_string()),
    ];
    if includes_drop_in_dir(&text, ssh_dir) {
        let dir = root.path(ssh_dir.join("sshd_config.d"));
        files::ensure_dir(&dir, 0o755)?;
        let path = dir.join(DROP_IN_NAME);
        let mut body = String::from("# Written by wala from the VM's provisioning settings.\n");
        for (k, v) in &wanted {
            body.push_str(&format!("{k} {v}\n"));
        }
        for (file, key, value) in earlier_settings(&dir, &wanted) {
            log::warn!("{} sets {key} {value} before {DROP_IN_NAME}: sshd keeps that value", file.display());
        }
        if files::read_optional(&path)?.as_deref() == Some(body.as_str()) {
            return Ok(SshdChange::Unchanged(path));
        }
        files::write_atomic(&path, body.as_bytes(), WriteOptions::mode(0o644))?;
        return Ok(SshdChange::DropIn(path));
    }
    let mut edited = text.clone();
    for (k, v) in &wanted {
        edited = set_sshd_option(&edited, k, v);
    }
    if edited == text {
        return Ok(SshdChange::Unchanged(main));
    }
    let (mode, uid, gid) = files::mode_and_owner(&main).unwrap_or((0o644, 0, 0));
    files::write_atomic(&main, edited.as_bytes(), WriteOptions::mode(mode).owned_by(uid, gid))?;
    Ok(SshdChange::Edited(main))
}

/// Settings of drop-ins that sort before wala's and give one of `wanted`'s keys another value
/// (sshd keeps the first value it reads): RHEL 9's `50-redhat.conf` sets
/// `ChallengeResponseAuthentication no`. Lines inside `Match` blocks are not counted.
pub fn earlier_settings(dir: &Path, wanted: &[(&str, String)]) -> Vec<(PathBuf, String, String)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.retain(|n| n.ends_with(".conf") && n.as_str() < DROP_IN_NAME);
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let Some(key) = words.next() else { continue };
            if key.eq_ignore_ascii_case("match") {
                break;
            }
            let value = words.next().unwrap_or_default();
            if let Some((k, v)) = wanted.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
                if !v.eq_ignore_ascii_case(value)
                    && !out.iter().any(|(_, seen, _): &(PathBuf, String, String)| seen == k)
                {
                    out.push((path.clone(), (*k).to_string(), value.to_string()));
                }
            }
        }
    }
    out
}

/// Whether an `Include` line of sshd_config covers `<ssh_dir>/sshd_config.d/*.conf`.
fn includes_drop_in_dir(text: &str, ssh_dir: &Path) -> bool {
    let absolute = ssh_dir.join("sshd_config.d/*.conf");
    text.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next().is_some_and(|w| w.eq_ignore_ascii_case("include"))
            && words.any(|w| w == "sshd_config.d/*.conf" || Path::new(w) == absolute)
    })
}

/// Set `key value` in sshd_config text as waagent does: replace every line starting with `key`
/// outside `Match` blocks; if there was none, insert before the first `Match` line, else at the end.
pub fn set_sshd_option(text: &str, key: &str, value: &str) -> String {
    let new_line = format!("{key} {value}");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut in_match = false;
    let mut first_match = None;
    let mut replaced = false;
    for (i, line) in lines.iter_mut().enumerate() {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("match") {
            in_match = !lower.starts_with("match all");
            first_match.get_or_insert(i);
            continue;
        }
        if !in_match && line.split_whitespace().next() == Some(key) {
            *line = new_line.clone();
            replaced = true;
        }
    }
    if !replaced {
        lines.insert(first_match.unwrap_or(lines.len()), new_line);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Key types sshd accepts in authorized_keys.
const KEY_TYPES: &[&str] = &[
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ssh-dss-cert-v01@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
];

/// A public key line checked for sshd: optional options, a known type, a base64 blob whose embedded
/// type matches, an optional comment. Returns the normalised line (trimmed, one line).
pub fn validate_public_key(index: usize, value: &str) -> Result<String, SshError> {
    let bad = |why: String| SshError::BadKey { index, why };
    let line = value.trim();
    if line.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if line.contains('\n') || line.contains('\r') {
        return Err(bad("it spans several lines".into()));
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some(pos) = words.iter().position(|w| KEY_TYPES.contains(w)) else {
        return Err(bad(format!("no known key type (one of {})", KEY_TYPES[..6].join(", ") + ", ...")));
    };
    let key_type = words[pos];
    let blob = words.get(pos + 1).ok_or_else(|| bad(format!("the {key_type} key has no base64 data")))?;
    let bytes =
        base64_decode(blob).ok_or_else(|| bad(format!("the {key_type} key data is not valid base64")))?;
    let embedded = bytes
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| bytes.get(4..4 + n))
        .map(|t| String::from_utf8_lossy(t).into_owned());
    if embedded.as_deref() != Some(key_type) {
        return Err(bad(format!("the key data is not a {key_type} key")));
    }
    Ok(line.to_string())
}

/// Decode standard base64 (with padding), or `None`.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const fn val(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        acc = (acc << 6) | u32::from(val(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The key comparison identity: type and blob, without options or comment.
fn key_identity(line: &str) -> Option<(String, String)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let pos = words.iter().position(|w| KEY_TYPES.contains(w))?;
    Some((words[pos].to_string(), words.get(pos + 1)?.to_string()))
}

/// Resolve an OVF key path for `account`: `$HOME` means `OS.HomeDir`, a relative path is relative to
/// the user's home; the result must lie inside the user's home.
pub fn resolve_key_path(
    ovf_path: Option<&str>,
    account: &Account,
    home_base: &Path,
) -> Result<PathBuf, SshError> {
    let raw = match ovf_path.map(str::trim).filter(|p| !p.is_empty()) {
        None => return Ok(account.home.join(".ssh/authorized_keys")),
        Some(p) => p.replace("$HOME", &home_base.to_string_lossy()),
    };
    let joined = if raw.starts_with('/') { PathBuf::from(&raw) } else { account.home.join(&raw) };
    let mut normal = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(p) => normal.push(p),
            Component::ParentDir => {
                normal.pop();
            }
            _ => {}
        }
    }
    if !normal.starts_with(&account.home) || normal == account.home {
        return Err(SshError::PathOutsideHome {
            path: ovf_path.unwrap_or_default().to_string(),
            home: account.home.clone(),
            user: account.name.clone(),
        });
    }
    Ok(normal)
}

/// Check `path` (inside the user's home) and make its directories, returning the host path of the
/// file. The home directory must be the user's own (so nothing below it is given away: with home
/// `/`, `/etc` would be). From the home down, no symlink is followed; missing directories are
/// created 0700 and owned by the user; an existing directory keeps its mode and owner, except the
/// user's own `~/.ssh`, which gets 0700 as sshd's StrictModes wants. An existing file must be a
/// plain file with one link, owned by the user or root: its content is read and kept.
fn prepare_key_dir(root: &HostRoot, account: &Account, path: &Path) -> Result<PathBuf, SshError> {
    use std::os::unix::fs::MetadataExt;
    let home = root.path(&account.home);
    let target = root.path(path);
    let relative = target.strip_prefix(&home).map_err(|_| SshError::PathOutsideHome {
        path: path.display().to_string(),
        home: account.home.clone(),
        user: account.name.clone(),
    })?;
    // Followed: the home may be reached through a symlink of the image's (`/home` -> `var/home`).
    let meta = std::fs::metadata(&home).map_err(|e| FileError::new("stat", &home, e))?;
    if !meta.is_dir() {
        return Err(FileError::new("stat", &home, std::io::Error::other("not a directory")).into());
    }
    if meta.uid() != account.uid {
        return Err(SshError::HomeNotOwned {
            home: account.home.clone(),
            user: account.name.clone(),
            owner: meta.uid(),
        });
    }
    let ssh_dir = home.join(".ssh");
    let unsafe_file = |why: String| SshError::UnsafeKeyFile { path: path.to_path_buf(), why };
    let mut current = home.clone();
    let parts: Vec<_> = relative.components().collect();
    for (i, part) in parts.iter().enumerate() {
        current.push(part);
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(SshError::Symlink { path: path.to_path_buf(), link: current });
            }
            Ok(meta) if last => {
                if !meta.is_file() {
                    return Err(unsafe_file("is not a regular file".into()));
                }
                if meta.nlink() != 1 {
                    return Err(unsafe_file(format!("has {} hard links", meta.nlink())));
                }
                if meta.uid() != account.uid && meta.uid() != 0 {
                    return Err(unsafe_file(format!("belongs to uid {}", meta.uid())));
                }
            }
            Ok(meta) if current == ssh_dir && meta.is_dir() && meta.uid() == account.uid => {
                set_mode(&current, 0o700)?;
            }
            Ok(meta) => {
                if meta.uid() != account.uid {
                    log::info!("{} belongs to uid {}: left as it is", current.display(), meta.uid());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !last => {
                std::fs::create_dir(&current).map_err(|e| FileError::new("create directory", &current, e))?;
                chown_mode(&current, account, 0o700)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FileError::new("stat", &current, e).into()),
        }
    }
    Ok(target)
}

/// Deploy an OVF `KeyPair`: the private key at `path` (0600) and its public half at `path.pub`
/// (0644, OpenSSH format), both owned by the user (waagent left them root-owned, with the private
/// key 0644).
pub fn deploy_key_pair(
    root: &HostRoot,
    account: &Account,
    path: &Path,
    private_pem: &[u8],
    public_line: &str,
) -> Result<(), SshError> {
    let target = prepare_key_dir(root, account, path)?;
    let mut public = target.clone().into_os_string();
    public.push(".pub");
    let public = PathBuf::from(public);
    if std::fs::symlink_metadata(&public).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(SshError::Symlink { path: path.to_path_buf(), link: public });
    }
    let owned = |mode| WriteOptions::mode(mode).owned_by(account.uid, account.gid);
    files::write_atomic(&target, private_pem, owned(0o600))?;
    files::write_atomic(&public, format!("{}\n", public_line.trim()).as_bytes(), owned(0o644))?;
    Ok(())
}

/// Add `keys` (already validated) to the authorized keys file at `path` (a target-system path inside
/// the user's home, which must be the user's own): missing directories are created 0700 and owned
/// by the user, existing ones are left as they are (but the user's own `~/.ssh`, made 0700), the
/// file is 0600 and owned by the user, keys already present are not added again, and no symlink
/// below the home directory is followed. Returns how many keys were added.
pub fn deploy_authorized_keys(
    root: &HostRoot,
    account: &Account,
    path: &Path,
    keys: &[String],
) -> Result<usize, SshError> {
    let target = prepare_key_dir(root, account, path)?;
    let existing = files::read_optional(&target)?.unwrap_or_default();
    let mut present: Vec<(String, String)> = existing.lines().filter_map(key_identity).collect();
    let mut text = existing.clone();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let mut added = 0;
    for key in keys {
        let Some(id) = key_identity(key) else { continue };
        if present.contains(&id) {
            continue;
        }
        text.push_str(key.trim());
        text.push('\n');
        present.push(id);
        added += 1;
    }
    files::write_atomic(
        &target,
        text.as_bytes(),
        WriteOptions::mode(0o600).owned_by(account.uid, account.gid),
    )?;
    Ok(added)
}

/// Own a directory wala just created to the user, with `mode`.
fn chown_mode(path: &Path, account: &Account, mode: u32) -> Result<(), FileError> {
    std::os::unix::fs::lchown(path, Some(account.uid), Some(account.gid))
        .map_err(|e| FileError::new("chown", path, e))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), FileError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| FileError::new("chmod", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBH5dHoEPpIHqGUK3xfI0qWqTeuTr4SfQeRfVmW4EwB5 me@host";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEx2w0hBXG2VtZ1X5oQ9b9n2pWmKQm9qfYkqk3xv9u1r0v5rE3o2yQ+f5Jx4i0Xz7v4e1XgX0dFqT1G5m6mQe2o=";

    fn account(home: &str) -> Account {
        Account { name: "alice".into(), uid: 1000, gid: 1000, home: home.into(), shell: "/bin/bash".into() }
    }

    #[test]
    fn keys_of_every_sshd_type_are_accepted() {
        assert!(validate_public_key(0, ED25519).is_ok());
        assert!(validate_public_key(0, ECDSA).is_ok(), "waagent wrongly rejects keys not starting with ssh-");
        assert!(validate_public_key(0, &format!("no-pty,from=\"10.0.0.1\" {ED25519}")).is_ok());
        let sk = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIB4g";
        assert!(validate_public_key(0, sk).is_ok());
    }

    #[test]
    fn bad_keys_are_rejected_with_a_reason() {
        for (key, why) in [
            ("", "empty"),
            ("hello world", "no known key type"),
            ("ssh-rsa", "no base64"),
            ("ssh-rsa !!!", "not valid base64"),
            (
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIBH5dHoEPpIHqGUK3xfI0qWqTeuTr4SfQeRfVmW4EwB5",
                "not a ssh-rsa key",
            ),
            ("ssh-ed25519 AAAA\nssh-rsa AAAA", "several lines"),
        ] {
            let err = validate_public_key(3, key).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("key 3"), "{key:?}: {err}");
        }
    }

    #[test]
    fn key_paths() {
        let a = account("/home/alice");
        let base = Path::new("/home");
        assert_eq!(
            resolve_key_path(None, &a, base).unwrap(),
            PathBuf::from("/home/alice/.ssh/authorized_keys")
        );
        assert_eq!(
            resolve_key_path(Some("$HOME/alice/.ssh/authorized_keys"), &a, base).unwrap(),
            PathBuf::from("/home/alice/.ssh/authorized_keys")
        );
        assert_eq!(
            resolve_key_path(Some(".ssh/keys"), &a, base).unwrap(),
            PathBuf::from("/home/alice/.ssh/keys")
        );
        for bad in [
            "/root/.ssh/authorized_keys",
            "/home/alice/../bob/.ssh/authorized_keys",
            "/home/alice",
            "/home/alicex/k",
        ] {
            assert!(
                matches!(resolve_key_path(Some(bad), &a, base), Err(SshError::PathOutsideHome { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn deploy_is_idempotent_and_keeps_existing_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        std::fs::create_dir_all(dir.path().join("home/alice/.ssh")).expect("mkdir");
        let file = dir.path().join("home/alice/.ssh/authorized_keys");
        std::fs::write(&file, format!("{ECDSA} old")).expect("write");
        let me = nix_ids();
        let a = Account { uid: me.0, gid: me.1, ..account("/home/alice") };
        let path = Path::new("/home/alice/.ssh/authorized_keys");
        let keys = vec![ED25519.to_string(), format!("{ECDSA} same key other comment")];
        assert_eq!(deploy_authorized_keys(&root, &a, path, &keys).unwrap(), 1);
        assert_eq!(deploy_authorized_keys(&root, &a, path, &keys).unwrap(), 0);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{ECDSA} old\n{ED25519}\n"));
        assert_eq!(files::mode_and_owner(&file).unwrap(), (0o600, me.0, me.1));
        assert_eq!(files::mode_and_owner(&dir.path().join("home/alice/.ssh")).unwrap().0, 0o700);
    }

    #[test]
    fn deploy_refuses_symlinks_below_home() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        std::fs::create_dir_all(dir.path().join("home/alice")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::os::unix::fs::symlink(dir.path().join("etc"), dir.path().join("home/alice/.ssh"))
            .expect("symlink");
        let me = nix_ids();
        let a = Account { uid: me.0, gid: me.1, ..account("/home/alice") };
        let err = deploy_authorized_keys(
            &root,
            &a,
            Path::new("/home/alice/.ssh/authorized_keys"),
            &[ED25519.into()],
        )
        .unwrap_err();
        assert!(matches!(err, SshError::Symlink { .. }), "{err}");
        assert!(!dir.path().join("etc/authorized_keys").exists());
    }

    fn is_root() -> bool {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    fn mode_owner(path: &Path) -> (u32, u32, u32) {
        files::mode_and_owner(path).expect("stat")
    }

    /// A temp root with `rel` made as a directory of this mode and owner.
    fn dir_as(root: &Path, rel: &str, mode: u32, owner: u32) {
        use std::os::unix::fs::PermissionsExt;
        let path = root.join(rel);
        std::fs::create_dir_all(&path).expect("mkdir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        std::os::unix::fs::chown(&path, Some(owner), Some(owner)).expect("chown");
    }

    #[test]
    fn a_key_path_under_etc_leaves_etc_as_it_was() {
        if !is_root() {
            eprintln!("SKIP a_key_path_under_etc_leaves_etc_as_it_was: needs root (chown)");
            return;
        }
        // Fedora's nobody: home `/`, so `/etc/authorized_keys` is "inside the home".
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        dir_as(dir.path(), "etc", 0o755, 0);
        let nobody = Account { name: "nobody".into(), uid: 65534, gid: 65534, ..account("/") };
        let err =
            deploy_authorized_keys(&root, &nobody, Path::new("/etc/authorized_keys"), &[ED25519.into()])
                .unwrap_err();
        assert!(matches!(err, SshError::HomeNotOwned { .. }), "{err}");
        assert!(err.to_string().contains("home directory / of nobody is owned by uid 0"), "{err}");
        assert_eq!(mode_owner(&dir.path().join("etc")), (0o755, 0, 0));
        assert!(!dir.path().join("etc/authorized_keys").exists());
        let pair = deploy_key_pair(&root, &nobody, Path::new("/etc/id_rsa"), b"PEM", ED25519).unwrap_err();
        assert!(matches!(pair, SshError::HomeNotOwned { .. }), "{pair}");
        assert_eq!(mode_owner(&dir.path().join("etc")), (0o755, 0, 0));
    }

    #[test]
    fn existing_directories_the_user_does_not_own_are_left_alone() {
        if !is_root() {
            eprintln!("SKIP existing_directories_the_user_does_not_own_are_left_alone: needs root (chown)");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let alice = account("/home/alice");
        dir_as(dir.path(), "home/alice", 0o750, 1000);
        // A directory of root's inside the home: the key goes in, the directory stays root's.
        dir_as(dir.path(), "home/alice/shared", 0o755, 0);
        let path = Path::new("/home/alice/shared/authorized_keys");
        assert_eq!(deploy_authorized_keys(&root, &alice, path, &[ED25519.into()]).unwrap(), 1);
        assert_eq!(mode_owner(&dir.path().join("home/alice/shared")), (0o755, 0, 0));
        assert_eq!(mode_owner(&dir.path().join("home/alice/shared/authorized_keys")), (0o600, 1000, 1000));
        // The user's own ~/.ssh gets 0700; a root-owned one keeps its mode and owner.
        dir_as(dir.path(), "home/alice/.ssh", 0o755, 1000);
        let ak = Path::new("/home/alice/.ssh/authorized_keys");
        deploy_authorized_keys(&root, &alice, ak, &[ED25519.into()]).unwrap();
        assert_eq!(mode_owner(&dir.path().join("home/alice/.ssh")), (0o700, 1000, 1000));
        dir_as(dir.path(), "home/alice/.ssh", 0o755, 0);
        deploy_authorized_keys(&root, &alice, ak, &[ECDSA.into()]).unwrap();
        assert_eq!(mode_owner(&dir.path().join("home/alice/.ssh")), (0o755, 0, 0));
        // Directories made here are the user's, 0700; the home itself never changes.
        let deep = Path::new("/home/alice/a/b/authorized_keys");
        deploy_authorized_keys(&root, &alice, deep, &[ED25519.into()]).unwrap();
        assert_eq!(mode_owner(&dir.path().join("home/alice/a")), (0o700, 1000, 1000));
        assert_eq!(mode_owner(&dir.path().join("home/alice/a/b")), (0o700, 1000, 1000));
        assert_eq!(mode_owner(&dir.path().join("home/alice")), (0o750, 1000, 1000));
    }

    #[test]
    fn a_home_the_user_does_not_own_gets_no_keys() {
        if !is_root() {
            eprintln!("SKIP a_home_the_user_does_not_own_gets_no_keys: needs root (chown)");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        dir_as(dir.path(), "srv", 0o755, 0);
        let svc = Account { name: "svc".into(), ..account("/srv") };
        let err =
            deploy_authorized_keys(&root, &svc, Path::new("/srv/.ssh/authorized_keys"), &[ED25519.into()])
                .unwrap_err();
        assert!(matches!(err, SshError::HomeNotOwned { .. }), "{err}");
        assert!(!dir.path().join("srv/.ssh").exists());
        // An existing key file that is a hard link (to /etc/shadow, say) is not read nor replaced.
        dir_as(dir.path(), "home/alice/.ssh", 0o700, 1000);
        std::os::unix::fs::chown(dir.path().join("home/alice"), Some(1000), Some(1000)).expect("chown");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(dir.path().join("etc/shadow"), "root:$6$secret:1::::::\n").expect("write");
        std::fs::hard_link(dir.path().join("etc/shadow"), dir.path().join("home/alice/.ssh/authorized_keys"))
            .expect("link");
        let err = deploy_authorized_keys(
            &root,
            &account("/home/alice"),
            Path::new("/home/alice/.ssh/authorized_keys"),
            &[ED25519.into()],
        )
        .unwrap_err();
        assert!(matches!(err, SshError::UnsafeKeyFile { .. }), "{err}");
        assert_eq!(mode_owner(&dir.path().join("etc/shadow")).1, 0);
    }

    /// Our own ids: chown to ourselves succeeds without privileges.
    fn nix_ids() -> (u32, u32) {
        // SAFETY: getuid/getgid cannot fail.
        unsafe { (libc::getuid(), libc::getgid()) }
    }

    #[test]
    fn sshd_in_place_edit_follows_waagent() {
        let text = "Port 22\n#PasswordAuthentication yes\nPasswordAuthentication yes\nMatch User anoncvs\n  PasswordAuthentication no\n";
        let out = set_sshd_option(text, "PasswordAuthentication", "no");
        assert_eq!(out, "Port 22\n#PasswordAuthentication yes\nPasswordAuthentication no\nMatch User anoncvs\n  PasswordAuthentication no\n");
        let out = set_sshd_option(text, "ClientAliveInterval", "180");
        assert!(out.contains("PasswordAuthentication yes\nClientAliveInterval 180\nMatch User"), "{out}");
        assert_eq!(
            set_sshd_option("Port 22\n", "ClientAliveInterval", "5"),
            "Port 22\nClientAliveInterval 5\n"
        );
        // Idempotent.
        let once = set_sshd_option(text, "ClientAliveInterval", "180");
        assert_eq!(set_sshd_option(&once, "ClientAliveInterval", "180"), once);
    }

    #[test]
    fn sshd_uses_a_drop_in_when_included() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        std::fs::create_dir_all(dir.path().join("etc/ssh")).expect("mkdir");
        let main = "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n";
        std::fs::write(dir.path().join("etc/ssh/sshd_config"), main).expect("write");
        let s = SshdSettings { password_authentication: false, client_alive_interval: 120 };
        let change = configure_sshd(&root, Path::new("/etc/ssh"), s).expect("sshd");
        let dropin = dir.path().join("etc/ssh/sshd_config.d/50-wala.conf");
        assert_eq!(change, SshdChange::DropIn(dropin.clone()));
        let body = std::fs::read_to_string(&dropin).expect("read");
        assert!(body.contains(
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nClientAliveInterval 120\n"
        ));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/ssh/sshd_config")).unwrap(),
            main,
            "main file untouched"
        );
        assert_eq!(configure_sshd(&root, Path::new("/etc/ssh"), s).unwrap(), SshdChange::Unchanged(dropin));
    }

    #[test]
    fn sshd_without_include_is_edited_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        std::fs::create_dir_all(dir.path().join("etc/ssh")).expect("mkdir");
        let path = dir.path().join("etc/ssh/sshd_config");
        std::fs::write(&path, "PasswordAuthentication no\n").expect("write");
        let s = SshdSettings { password_authentication: true, client_alive_interval: 180 };
        assert!(matches!(configure_sshd(&root, Path::new("/etc/ssh"), s).unwrap(), SshdChange::Edited(_)));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "PasswordAuthentication yes\nChallengeResponseAuthentication yes\nClientAliveInterval 180\n"
        );
        assert!(matches!(configure_sshd(&root, Path::new("/etc/ssh"), s).unwrap(), SshdChange::Unchanged(_)));
    }

    fn settings(password: bool) -> SshdSettings {
        SshdSettings { password_authentication: password, client_alive_interval: 120 }
    }

    #[test]
    fn rhel9_layout_gets_a_drop_in_and_its_earlier_setting_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = crate::base::testing::FakeOs::Rhel9.build(dir.path());
        let ssh = dir.path().join("etc/ssh");
        std::fs::create_dir_all(ssh.join("sshd_config.d")).expect("mkdir");
        let main = "# To modify the system-wide sshd configuration, create a  *.conf  file under\nInclude /etc/ssh/sshd_config.d/*.conf\nAuthorizedKeysFile\t.ssh/authorized_keys\nSubsystem\tsftp\t/usr/libexec/openssh/sftp-server\n";
        std::fs::write(ssh.join("sshd_config"), main).expect("write");
        std::fs::write(
            ssh.join("sshd_config.d/50-redhat.conf"),
            "Include /etc/crypto-policies/back-ends/opensshserver.config\nSyslogFacility AUTHPRIV\nChallengeResponseAuthentication no\nGSSAPIAuthentication yes\nUsePAM yes\nX11Forwarding yes\n",
        )
        .expect("write");
        let change = configure_sshd(&root, Path::new("/etc/ssh"), settings(true)).expect("sshd");
        assert_eq!(change, SshdChange::DropIn(ssh.join("sshd_config.d/50-wala.conf")));
        assert_eq!(std::fs::read_to_string(ssh.join("sshd_config")).expect("read"), main);
        let wanted = [
            ("PasswordAuthentication", "yes".to_string()),
            ("ChallengeResponseAuthentication", "yes".to_string()),
            ("ClientAliveInterval", "120".to_string()),
        ];
        assert_eq!(
            earlier_settings(&ssh.join("sshd_config.d"), &wanted),
            [(
                ssh.join("sshd_config.d/50-redhat.conf"),
                "ChallengeResponseAuthentication".to_string(),
                "no".to_string()
            )]
        );
        // With password login off the values agree: nothing to name.
        let off = [("ChallengeResponseAuthentication", "no".to_string())];
        assert!(earlier_settings(&ssh.join("sshd_config.d"), &off).is_empty());
        // Files sorting after wala's (Ubuntu's 60-cloudimg-settings.conf) are read after it.
        std::fs::write(ssh.join("sshd_config.d/60-cloudimg-settings.conf"), "PasswordAuthentication no\n")
            .expect("write");
        assert_eq!(earlier_settings(&ssh.join("sshd_config.d"), &wanted).len(), 1);
    }

    #[test]
    fn rhel8_layout_without_include_is_edited_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = crate::base::testing::FakeOs::Rhel8.build(dir.path());
        let ssh = dir.path().join("etc/ssh");
        std::fs::create_dir_all(&ssh).expect("mkdir");
        std::fs::write(
            ssh.join("sshd_config"),
            "HostKey /etc/ssh/ssh_host_rsa_key\nPasswordAuthentication yes\nChallengeResponseAuthentication no\nUsePAM yes\nSubsystem\tsftp\t/usr/libexec/openssh/sftp-server\n",
        )
        .expect("write");
        let change = configure_sshd(&root, Path::new("/etc/ssh"), settings(false)).expect("sshd");
        assert_eq!(change, SshdChange::Edited(ssh.join("sshd_config")));
        assert_eq!(
            std::fs::read_to_string(ssh.join("sshd_config")).expect("read"),
            "HostKey /etc/ssh/ssh_host_rsa_key\nPasswordAuthentication no\nChallengeResponseAuthentication no\nUsePAM yes\nSubsystem\tsftp\t/usr/libexec/openssh/sftp-server\nClientAliveInterval 120\n"
        );
        assert!(!ssh.join("sshd_config.d").exists());
    }

    #[test]
    fn a_vendor_sshd_config_in_usr_is_what_counts_when_etc_has_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = crate::base::testing::FakeOs::Sles15.build(dir.path());
        let vendor = dir.path().join("usr/etc/ssh");
        std::fs::create_dir_all(&vendor).expect("mkdir");
        // With the Include: a drop-in, and no /etc/ssh/sshd_config to hide the vendor file.
        std::fs::write(vendor.join("sshd_config"), "Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\nSubsystem sftp /usr/libexec/ssh/sftp-server\n").expect("write");
        let change = configure_sshd(&root, Path::new("/etc/ssh"), settings(false)).expect("sshd");
        assert_eq!(change, SshdChange::DropIn(dir.path().join("etc/ssh/sshd_config.d/50-wala.conf")));
        assert!(!dir.path().join("etc/ssh/sshd_config").exists());
        // Without it: the /etc file starts from the vendor's text.
        std::fs::remove_dir_all(dir.path().join("etc/ssh")).expect("rm");
        std::fs::create_dir_all(dir.path().join("etc/ssh")).expect("mkdir");
        std::fs::write(
            vendor.join("sshd_config"),
            "UsePAM yes\nSubsystem sftp /usr/libexec/ssh/sftp-server\n",
        )
        .expect("write");
        let change = configure_sshd(&root, Path::new("/etc/ssh"), settings(false)).expect("sshd");
        assert_eq!(change, SshdChange::Edited(dir.path().join("etc/ssh/sshd_config")));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/ssh/sshd_config")).expect("read"),
            "UsePAM yes\nSubsystem sftp /usr/libexec/ssh/sftp-server\nPasswordAuthentication no\nChallengeResponseAuthentication no\nClientAliveInterval 120\n"
        );
    }
}
