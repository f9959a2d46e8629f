//! Reading the kernel's mount and swap tables (`/proc/self/mounts`, `/proc/swaps`) through the
//! [`HostRoot`].

use std::path::{Path, PathBuf};

use crate::base::files::{read_optional, FileError};
use crate::base::root::HostRoot;
use crate::host::disk::discover::is_partition_of;

/// One line of `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    pub target: PathBuf,
    pub fstype: String,
}

/// One line of `/proc/swaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapEntry {
    pub path: PathBuf,
    /// Usable size in KiB, as the kernel reports it (the file minus its header page).
    pub size_kib: u64,
}

/// Parse `/proc/self/mounts` text; malformed lines are skipped.
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let source = unescape(f.next()?);
            let target = PathBuf::from(unescape(f.next()?));
            let fstype = f.next()?.to_string();
            Some(MountEntry { source, target, fstype })
        })
        .collect()
}

/// Parse `/proc/swaps` text (first line is a header); malformed lines are skipped.
pub fn parse_swaps(text: &str) -> Vec<SwapEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let size_kib = f.get(2)?.parse().ok()?;
            Some(SwapEntry { path: PathBuf::from(unescape(f.first()?)), size_kib })
        })
        .collect()
}

/// The kernel (and `/etc/fstab`) escapes space, tab, newline and backslash in these tables as
/// `\ooo`.
pub(crate) fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct =
            b.get(i + 1..i + 4).filter(|o| b[i] == b'\\' && o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(o) => {
                let v = o.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Read the mount table of the root's kernel (empty when absent).
pub fn read_mounts(root: &HostRoot) -> Result<Vec<MountEntry>, FileError> {
    Ok(read_optional(&root.path("/proc/self/mounts"))?.map(|t| parse_mounts(&t)).unwrap_or_default())
}

/// Read the active swap areas (empty when absent).
pub fn read_swaps(root: &HostRoot) -> Result<Vec<SwapEntry>, FileError> {
    Ok(read_optional(&root.path("/proc/swaps"))?.map(|t| parse_swaps(&t)).unwrap_or_default())
}

/// Where the disk `disk` (kernel name) or any of its partitions is mounted, first one wins.
/// Mount sources that are symlinks (`/dev/disk/azure/resource-part1`) are resolved under the root.
pub fn mount_of_disk(root: &HostRoot, mounts: &[MountEntry], disk: &str) -> Option<MountEntry> {
    mounts
        .iter()
        .find(|m| {
            let name = kernel_name(root, &m.source);
            name.as_deref().is_some_and(|n| n == disk || is_partition_of(n, disk))
        })
        .cloned()
}

/// The kernel name behind a mount source under `/dev`, following links inside the root.
fn kernel_name(root: &HostRoot, source: &str) -> Option<String> {
    let path = Path::new(source);
    if !path.starts_with("/dev") {
        return None;
    }
    let resolved = std::fs::canonicalize(root.path(path)).ok();
    let name = resolved.as_deref().unwrap_or(path).file_name()?;
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_with_escapes() {
        let m =
            parse_mounts("/dev/sdb1 /mnt/my\\040disk ext4 rw,relatime 0 0\nbad\nproc /proc proc rw 0 0\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, PathBuf::from("/mnt/my disk"));
        assert_eq!((m[0].source.as_str(), m[0].fstype.as_str()), ("/dev/sdb1", "ext4"));
    }

    #[test]
    fn swaps_table() {
        let s = parse_swaps(
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/mnt/swapfile  file  1048572  0  -2\n/dev/dm-0 partition x 0 -3\n",
        );
        assert_eq!(s, vec![SwapEntry { path: PathBuf::from("/mnt/swapfile"), size_kib: 1_048_572 }]);
    }

    #[test]
    fn finds_partition_mounts_not_lookalikes() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        let m = parse_mounts("/dev/sdba1 /a ext4 rw 0 0\n/dev/sdb1 /mnt/resource ext4 rw 0 0\n");
        assert_eq!(mount_of_disk(&root, &m, "sdb").unwrap().target, PathBuf::from("/mnt/resource"));
        assert!(mount_of_disk(&root, &m, "sdc").is_none());
        let nvme = parse_mounts("/dev/nvme0n11 /x ext4 rw 0 0\n/dev/nvme0n1p1 /y xfs rw 0 0\n");
        assert_eq!(mount_of_disk(&root, &nvme, "nvme0n1").unwrap().target, PathBuf::from("/y"));
    }

    #[test]
    fn follows_azure_links_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dev/disk/azure")).unwrap();
        std::fs::write(dir.path().join("dev/sdb1"), b"").unwrap();
        std::os::unix::fs::symlink("../../sdb1", dir.path().join("dev/disk/azure/resource-part1")).unwrap();
        let root = HostRoot::new(dir.path());
        let m = parse_mounts("/dev/disk/azure/resource-part1 /mnt ext4 rw 0 0\n");
        assert_eq!(mount_of_disk(&root, &m, "sdb").unwrap().target, PathBuf::from("/mnt"));
    }
}
