//! Whether a path's file system is mounted yet. Early in the boot (before `local-fs.target`), a
//! separate `/var` may not be: a file under it is then not there, or is the root file system's
//! own file that the mount will hide. The hostname stage runs that early and reads `Lib.Dir`'s
//! marker, so it first asks [`pending_mount_for`].

use std::path::{Path, PathBuf};

use crate::base::root::HostRoot;
use crate::host::disk::mounts::{parse_mounts, unescape};

/// Where systemd's own mount units may be.
const UNIT_DIRS: [&str; 4] =
    ["/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

/// The mount point of a file system that holds `path` (or one of its ancestors, `/` aside) and
/// that is to be mounted at boot but is not mounted yet, as `/etc/fstab` (entries without
/// `noauto`) and mount units named after the path's ancestors (`var-lib.mount`) tell, against the
/// kernel's `/proc/self/mounts`. `None` when every such file system is mounted, or there is none.
/// An unreadable `/proc/self/mounts` counts as nothing mounted.
pub fn pending_mount_for(root: &HostRoot, path: &Path) -> Option<PathBuf> {
    let mounted = std::fs::read_to_string(root.kernel().path("/proc/self/mounts")).unwrap_or_default();
    let mounted: Vec<PathBuf> = parse_mounts(&mounted).into_iter().map(|m| m.target).collect();
    let fstab = std::fs::read_to_string(root.path("/etc/fstab")).unwrap_or_default();
    let mut wanted: Vec<PathBuf> = fstab_mount_points(&fstab);
    for ancestor in path.ancestors().filter(|a| *a != Path::new("/") && !a.as_os_str().is_empty()) {
        let unit = format!("{}.mount", unit_name(ancestor));
        if UNIT_DIRS.iter().any(|d| root.path(Path::new(d).join(&unit)).exists()) {
            wanted.push(ancestor.to_path_buf());
        }
    }
    wanted.sort();
    wanted.dedup();
    wanted
        .into_iter()
        .filter(|m| m != Path::new("/") && path.starts_with(m))
        .find(|m| !mounted.contains(&root.path(m)))
}

/// The mount points of `/etc/fstab`'s entries mounted at boot (not swap, not `noauto`).
fn fstab_mount_points(fstab: &str) -> Vec<PathBuf> {
    fstab
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (file, vfstype) = (*f.get(1)?, f.get(2).copied().unwrap_or(""));
            let noauto = f.get(3).is_some_and(|o| o.split(',').any(|o| o == "noauto"));
            (file.starts_with('/') && vfstype != "swap" && !noauto).then(|| PathBuf::from(unescape(file)))
        })
        .collect()
}

/// systemd's unit name for a path (`systemd-escape --path`): `/var/lib/waagent` is
/// `var-lib-waagent`; bytes other than letters, digits, `:`, `_` and an inner `.` as `\xNN`.
fn unit_name(path: &Path) -> String {
    let text = path.to_string_lossy();
    let parts: Vec<String> = text
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|part| {
            part.bytes()
                .enumerate()
                .map(|(i, c)| {
                    if c.is_ascii_alphanumeric() || c == b':' || c == b'_' || (c == b'.' && i > 0) {
                        (c as char).to_string()
                    } else {
                        format!("\\x{c:02x}")
                    }
                })
                .collect()
        })
        .collect();
    parts.join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("proc/self")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("etc/systemd/system")).expect("mkdir");
        let root = HostRoot::new(dir.path());
        (dir, root)
    }

    fn mounts(root: &HostRoot, points: &[&str]) {
        let text: String =
            points.iter().map(|p| format!("/dev/vda1 {} ext4 rw 0 0\n", root.path(p).display())).collect();
        std::fs::write(root.path("/proc/self/mounts"), text).expect("write");
    }

    #[test]
    fn a_separate_var_is_waited_for_until_mounted() {
        let (_dir, root) = root();
        let lib = Path::new("/var/lib/waagent");
        std::fs::write(
            root.path("/etc/fstab"),
            "# <file system> <mount point> <type> <options>\nUUID=1 / ext4 errors=remount-ro 0 1\n\
             UUID=2 /var xfs defaults 0 2\nUUID=3 none swap sw 0 0\nUUID=4 /var/lib/waagent/x ext4 noauto 0 0\n",
        )
        .expect("write");
        mounts(&root, &["/"]);
        assert_eq!(pending_mount_for(&root, lib), Some(PathBuf::from("/var")));
        mounts(&root, &["/", "/var"]);
        assert_eq!(pending_mount_for(&root, lib), None);
        // Not under it: no wait.
        mounts(&root, &["/"]);
        assert_eq!(pending_mount_for(&root, Path::new("/srv/lib")), None);
    }

    #[test]
    fn a_mount_unit_counts_as_an_fstab_entry() {
        let (_dir, root) = root();
        mounts(&root, &["/"]);
        assert_eq!(pending_mount_for(&root, Path::new("/var/lib/waagent")), None);
        std::fs::write(root.path("/etc/systemd/system/var-lib.mount"), "[Mount]\n").expect("write");
        assert_eq!(pending_mount_for(&root, Path::new("/var/lib/waagent")), Some(PathBuf::from("/var/lib")));
        mounts(&root, &["/", "/var/lib"]);
        assert_eq!(pending_mount_for(&root, Path::new("/var/lib/waagent")), None);
    }

    #[test]
    fn escapes_as_the_kernel_and_systemd_write_them() {
        assert_eq!(unescape(r"/mnt/with\040space"), "/mnt/with space");
        assert_eq!(unescape(r"/a\\b"), r"/a\\b");
        assert_eq!(unit_name(Path::new("/var/lib/waagent")), "var-lib-waagent");
        assert_eq!(unit_name(Path::new("/var/lib/wa-agent")), r"var-lib-wa\x2dagent");
        assert_eq!(unit_name(Path::new("/srv/.hidden")), r"srv-\x2ehidden");
    }
}
