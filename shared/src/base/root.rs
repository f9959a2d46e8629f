//! The one place where host paths are resolved.
//!
//! wala runs on the live root (`/`), inside the initramfs against `/sysroot`, and in tests against a
//! temporary directory. Every module takes a [`HostRoot`] and asks it for paths instead of gluing
//! absolute paths together itself.

use std::path::{Component, Path, PathBuf};

/// A root prefix under which all host paths are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    prefix: PathBuf,
}

impl HostRoot {
    /// The live system root, `/`.
    pub fn live() -> Self {
        Self { prefix: PathBuf::from("/") }
    }

    /// A root at `prefix` (`/sysroot` in the initramfs, a temp dir in tests).
    pub fn new(prefix: impl Into<PathBuf>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Whether this is the running system's own root, where kernel-level changes (hostname, mounts,
    /// swap) take effect. Under any other prefix only files are written.
    pub fn is_live(&self) -> bool {
        self.prefix == Path::new("/")
    }

    /// Where the running kernel's own file systems (`/sys`, `/proc`, `/dev`) are seen: under the prefix
    /// when it has a populated `/sys` or `/proc` (the live root; test roots that fake them), else on
    /// the live root. In the
    /// initramfs, `/sysroot/sys` is an empty directory: the machine's identity and devices are in
    /// the initramfs's own `/sys`.
    pub fn kernel(&self) -> HostRoot {
        let populated = |dir: &str| std::fs::read_dir(self.path(dir)).is_ok_and(|mut d| d.next().is_some());
        if self.is_live() || populated("/sys") || populated("/proc") {
            self.clone()
        } else {
            Self::live()
        }
    }

    /// Resolve a host path (absolute or relative, as it would be seen on the target system) under the
    /// prefix. `..` components cannot climb above the prefix.
    ///
    /// ```
    /// use std::path::Path;
    /// use wala::base::root::HostRoot;
    ///
    /// let root = HostRoot::new("/sysroot");
    /// assert_eq!(root.path("/etc/hostname"), Path::new("/sysroot/etc/hostname"));
    /// assert_eq!(root.path("/etc/../../../etc/shadow"), Path::new("/sysroot/etc/shadow"));
    /// assert_eq!(HostRoot::live().path("/etc/hostname"), Path::new("/etc/hostname"));
    /// ```
    pub fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let mut out = self.prefix.clone();
        let mut depth = 0usize;
        for comp in host_path.as_ref().components() {
            match comp {
                Component::Normal(part) => {
                    out.push(part);
                    depth += 1;
                }
                Component::ParentDir if depth > 0 => {
                    out.pop();
                    depth -= 1;
                }
                Component::ParentDir | Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        out
    }
}

impl Default for HostRoot {
    fn default() -> Self {
        Self::live()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_root_keeps_paths() {
        let root = HostRoot::live();
        assert!(root.is_live());
        assert_eq!(root.path("/etc/hostname"), PathBuf::from("/etc/hostname"));
    }

    #[test]
    fn kernel_view_falls_back_to_the_live_root_when_the_prefix_has_no_sys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        std::fs::create_dir_all(dir.path().join("sys")).expect("mkdir");
        assert!(root.kernel().is_live(), "an empty /sys (initramfs /sysroot) is not the kernel's");
        std::fs::create_dir_all(dir.path().join("sys/class/dmi")).expect("mkdir");
        assert_eq!(root.kernel(), root);
    }

    #[test]
    fn prefix_is_prepended_and_cannot_be_escaped() {
        let root = HostRoot::new("/sysroot");
        assert!(!root.is_live());
        assert_eq!(root.path("/etc/hostname"), PathBuf::from("/sysroot/etc/hostname"));
        assert_eq!(root.path("etc/../../../etc/shadow"), PathBuf::from("/sysroot/etc/shadow"));
        assert_eq!(root.path("/var/lib/./waagent"), PathBuf::from("/sysroot/var/lib/waagent"));
    }
}
