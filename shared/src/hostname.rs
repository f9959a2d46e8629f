//! The VM's hostname: `/etc/hostname`, the `/etc/hosts` entry, and on the live root the kernel's.

use std::path::Path;

use crate::files::{self, FileError, WriteOptions};
use crate::root::HostRoot;

#[derive(Debug, thiserror::Error)]
pub enum HostnameError {
    #[error("invalid hostname {name:?}: {why}")]
    Invalid { name: String, why: &'static str },
    #[error("cannot set the kernel hostname to {name}: {source}")]
    Kernel {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] FileError),
}

/// Linux's limit on the kernel hostname.
pub const HOST_NAME_MAX: usize = 64;

/// Check a hostname: dot-separated labels of letters, digits and inner hyphens (RFC 1123), at
/// most 63 characters a label and [`HOST_NAME_MAX`] in all.
pub fn validate(name: &str) -> Result<(), HostnameError> {
    let invalid = |why| Err(HostnameError::Invalid { name: name.into(), why });
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > HOST_NAME_MAX {
        return invalid("it is longer than 64 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return invalid("a label is empty or longer than 63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return invalid("a label starts or ends with '-'");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return invalid("only letters, digits, '-' and '.' are allowed");
        }
    }
    Ok(())
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostnameChange {
    pub etc_hostname: bool,
    pub etc_hosts: bool,
    pub kernel: bool,
}

/// Set the hostname under `root`; on the live root also the kernel's.
pub fn set_hostname(root: &HostRoot, name: &str) -> Result<HostnameChange, HostnameError> {
    validate(name)?;
    let mut change = HostnameChange::default();
    let path = root.path("/etc/hostname");
    let wanted = format!("{name}\n");
    if files::read_optional(&path)?.as_deref().map(str::trim) != Some(name) {
        files::write_atomic(&path, wanted.as_bytes(), WriteOptions::mode(0o644))?;
        change.etc_hostname = true;
    }
    change.etc_hosts = set_hosts_entry(&root.path("/etc/hosts"), name)?;
    if root.is_live() && kernel_hostname().as_deref() != Some(name) {
        // SAFETY: the pointer and length describe a valid byte buffer for the call's duration.
        let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
        if rc != 0 {
            return Err(HostnameError::Kernel { name: name.into(), source: std::io::Error::last_os_error() });
        }
        change.kernel = true;
    }
    Ok(change)
}

/// The running kernel's hostname.
pub fn kernel_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string())
}

/// Make `/etc/hosts` map 127.0.1.1 to `name` (the Debian convention that lets the host resolve its
/// own name without DNS): an existing 127.0.1.1 line is replaced, otherwise one is added.
fn set_hosts_entry(path: &Path, name: &str) -> Result<bool, FileError> {
    let text = files::read_optional(path)?.unwrap_or_else(|| "127.0.0.1\tlocalhost\n".into());
    let short = name.split('.').next().unwrap_or(name);
    let entry =
        if short == name { format!("127.0.1.1\t{name}") } else { format!("127.0.1.1\t{name} {short}") };
    let mut lines: Vec<String> = Vec::new();
    let mut placed = false;
    for line in text.lines() {
        if line.split_whitespace().next() == Some("127.0.1.1") {
            if !placed {
                lines.push(entry.clone());
                placed = true;
            }
        } else {
            lines.push(line.to_string());
        }
    }
    if !placed {
        lines.push(entry);
    }
    let out = lines.join("\n") + "\n";
    if out == text {
        return Ok(false);
    }
    let mode = files::mode_and_owner(path).map(|m| m.0).unwrap_or(0o644);
    files::write_atomic(path, out.as_bytes(), WriteOptions::mode(mode))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for good in ["vm1", "my-vm.example.com", "A1", &"a".repeat(63)] {
            assert!(validate(good).is_ok(), "{good}");
        }
        for bad in ["", "-vm", "vm-", "vm_1", "a..b", "vm 1", &"a".repeat(65), "héllo"] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn files_under_a_root_are_written_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(dir.path().join("etc/hosts"), "127.0.0.1\tlocalhost\n127.0.1.1\told\n::1 localhost\n")
            .expect("write");
        let c = set_hostname(&root, "vm1.contoso.com").expect("set");
        assert_eq!(c, HostnameChange { etc_hostname: true, etc_hosts: true, kernel: false });
        assert_eq!(std::fs::read_to_string(dir.path().join("etc/hostname")).unwrap(), "vm1.contoso.com\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
            "127.0.0.1\tlocalhost\n127.0.1.1\tvm1.contoso.com vm1\n::1 localhost\n"
        );
        assert_eq!(set_hostname(&root, "vm1.contoso.com").unwrap(), HostnameChange::default());
    }
}
