//! Finding the resource (temporary) disk, and naming its partitions.
//!
//! Order: the `/dev/disk/azure/resource` link (from our udev rules or waagent's), then the VMBus
//! scan waagent does (Gen1 IDE port 1, Gen2 SCSI controller LUN 1), then NVMe temp disks, which
//! Azure exposes with the model "Microsoft NVMe Direct Disk" (v1) or "Microsoft NVMe Direct Disk
//! v2" (v6 sizes); OS and data disks on NVMe have the model "MSFT NVMe Accelerator v1.0" and are
//! never taken. Every path goes through the [`HostRoot`], so tests build fake `/sys` and `/dev`
//! trees. A VM size without a temp disk is normal: discovery then returns `Ok(None)`.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::base::files::FileError;
use crate::base::root::HostRoot;

/// Gen1: the VMBus device id of IDE port 1 starts with this.
pub const GEN1_RESOURCE_PREFIX: &str = "00000000-0001";
/// Gen2: the VMBus device id of the first SCSI controller (`scsi0`).
pub const GEN2_SCSI0_ID: &str = "f8b3781a-1e82-4818-a1c3-63d806ec15bb";
/// NVMe models of Azure's local (temporary) disks.
pub const NVME_TEMP_MODELS: [&str; 2] = ["Microsoft NVMe Direct Disk", "Microsoft NVMe Direct Disk v2"];

/// How deep the VMBus scan descends into one device's sysfs directory.
const MAX_SCAN_DEPTH: usize = 8;

/// The resource disk that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDisk {
    /// Kernel name, e.g. `sdb` or `nvme1n1`.
    pub name: String,
    /// How it was found.
    pub source: DiscoverySource,
}

impl ResourceDisk {
    /// The device node as seen on the host, e.g. `/dev/sdb`.
    pub fn device(&self) -> PathBuf {
        PathBuf::from("/dev").join(&self.name)
    }

    /// The node of partition `n`, e.g. `/dev/sdb1` or `/dev/nvme1n1p1`.
    pub fn partition(&self, n: u32) -> PathBuf {
        PathBuf::from("/dev").join(partition_name(&self.name, n))
    }
}

/// Which discovery step found the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoverySource {
    AzureSymlink,
    VmbusGen1,
    VmbusGen2,
    NvmeTemp,
}

impl fmt::Display for DiscoverySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiscoverySource::AzureSymlink => "/dev/disk/azure/resource",
            DiscoverySource::VmbusGen1 => "VMBus IDE port 1 (Gen1)",
            DiscoverySource::VmbusGen2 => "VMBus SCSI controller LUN 1 (Gen2)",
            DiscoverySource::NvmeTemp => "NVMe temp disk model",
        })
    }
}

/// The kernel name of partition `n` of disk `disk`: a `p` goes between a name ending in a digit
/// and the number (`nvme0n1p1`, `mmcblk0p1`, `loop0p1`), none otherwise (`sdb1`).
pub fn partition_name(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

/// Whether kernel name `part` is a partition of disk `disk` by the naming rule above.
pub fn is_partition_of(part: &str, disk: &str) -> bool {
    let Some(rest) = part.strip_prefix(disk) else { return false };
    let digits =
        if disk.ends_with(|c: char| c.is_ascii_digit()) { rest.strip_prefix('p') } else { Some(rest) };
    digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Find the resource disk. `Ok(None)` when this VM has none.
pub fn discover(root: &HostRoot) -> Result<Option<ResourceDisk>, FileError> {
    if let Some(name) = from_azure_link(root)? {
        return Ok(Some(ResourceDisk { name, source: DiscoverySource::AzureSymlink }));
    }
    if let Some(found) = from_vmbus(root)? {
        return Ok(Some(found));
    }
    Ok(from_nvme(root)?.map(|name| ResourceDisk { name, source: DiscoverySource::NvmeTemp }))
}

/// `/dev/disk/azure/resource` → the kernel name its link points at (the last path component).
fn from_azure_link(root: &HostRoot) -> Result<Option<String>, FileError> {
    let link = root.path("/dev/disk/azure/resource");
    match fs::read_link(&link) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        // Not a symlink (EINVAL): ignore it rather than trust a stray file.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(None),
        Err(e) => Err(FileError::new("readlink", link, e)),
    }
}

fn from_vmbus(root: &HostRoot) -> Result<Option<ResourceDisk>, FileError> {
    let dir = root.path("/sys/bus/vmbus/devices");
    for entry in sorted_entries(&dir)? {
        let Some(id) = read_trimmed(&entry.join("device_id"))? else { continue };
        let id = id.trim_matches(|c| c == '{' || c == '}').to_ascii_lowercase();
        let (source, need_lun1) = if id.starts_with(GEN1_RESOURCE_PREFIX) {
            (DiscoverySource::VmbusGen1, false)
        } else if id == GEN2_SCSI0_ID {
            (DiscoverySource::VmbusGen2, true)
        } else {
            continue;
        };
        if let Some(name) = find_block_device(&entry, need_lun1, 0)? {
            return Ok(Some(ResourceDisk { name, source }));
        }
    }
    Ok(None)
}

/// Walk a VMBus device's directory (not following symlinks) for `.../<H:C:T:L>/block/<name>`, or
/// `block:<name>` on old kernels. With `need_lun1`, only a `H:C:T:L` ending in LUN 1 counts.
fn find_block_device(dir: &Path, need_lun1: bool, depth: usize) -> Result<Option<String>, FileError> {
    if depth > MAX_SCAN_DEPTH {
        return Ok(None);
    }
    let lun_ok = !need_lun1 || dir.file_name().is_some_and(|n| is_lun1(&n.to_string_lossy()));
    for entry in sorted_entries(dir)? {
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name == "block" && lun_ok && is_real_dir(&entry) {
            if let Some(dev) = sorted_entries(&entry)?.first().and_then(|p| p.file_name()) {
                return Ok(Some(dev.to_string_lossy().into_owned()));
            }
        } else if let Some(dev) = name.strip_prefix("block:").filter(|_| lun_ok) {
            return Ok(Some(dev.to_string()));
        } else if is_real_dir(&entry) {
            if let Some(found) = find_block_device(&entry, need_lun1, depth + 1)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

fn is_lun1(hctl: &str) -> bool {
    let parts: Vec<&str> = hctl.split(':').collect();
    parts.len() == 4 && parts.iter().all(|p| p.parse::<u32>().is_ok()) && parts[3] == "1"
}

/// The first NVMe namespace (in natural order) whose controller reports a temp-disk model.
fn from_nvme(root: &HostRoot) -> Result<Option<String>, FileError> {
    let mut names: Vec<String> = sorted_entries(&root.path("/sys/block"))?
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("nvme"))
        .collect();
    names.sort_by_key(|n| natural_key(n));
    for name in names {
        let model = read_trimmed(&root.path(format!("/sys/block/{name}/device/model")))?;
        if model.is_some_and(|m| NVME_TEMP_MODELS.contains(&m.as_str())) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Sort key that orders `nvme2n1` before `nvme10n1`.
fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut num = String::new();
    for c in name.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            if !num.is_empty() {
                out.push((std::mem::take(&mut text), num.parse().unwrap_or(u64::MAX)));
                num.clear();
            }
            text.push(c);
        }
    }
    out.push((text, num.parse().unwrap_or(0)));
    out
}

fn is_real_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// Entries of `dir`, sorted; a missing directory has none.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FileError::new("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        out.push(entry.map_err(|e| FileError::new("list", dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

/// A small sysfs attribute, trimmed; `None` when missing.
fn read_trimmed(path: &Path) -> Result<Option<String>, FileError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::new("read", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn mkdir(root: &Path, rel: &str) {
        fs::create_dir_all(root.join(rel)).unwrap();
    }

    #[test]
    fn partition_names() {
        assert_eq!(partition_name("sdb", 1), "sdb1");
        assert_eq!(partition_name("nvme1n1", 1), "nvme1n1p1");
        assert_eq!(partition_name("mmcblk0", 1), "mmcblk0p1");
        assert_eq!(partition_name("loop0", 12), "loop0p12");
        assert!(is_partition_of("sdb1", "sdb") && is_partition_of("nvme0n1p3", "nvme0n1"));
        assert!(!is_partition_of("sdba", "sdb") && !is_partition_of("sdb", "sdb"));
        assert!(!is_partition_of("nvme0n11", "nvme0n1") && !is_partition_of("loop10", "loop1"));
    }

    #[test]
    fn nothing_found_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(discover(&HostRoot::new(dir.path())).unwrap(), None);
    }

    #[test]
    fn azure_symlink_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        mkdir(dir.path(), "dev/disk/azure");
        std::os::unix::fs::symlink("../../sdc", dir.path().join("dev/disk/azure/resource")).unwrap();
        write(dir.path(), "sys/bus/vmbus/devices/x/device_id", "{00000000-0001-8899-0000-000000000000}\n");
        mkdir(dir.path(), "sys/bus/vmbus/devices/x/host1/target1:0:0/1:0:0:0/block/sdb");
        let d = discover(&HostRoot::new(dir.path())).unwrap().unwrap();
        assert_eq!((d.name.as_str(), d.source), ("sdc", DiscoverySource::AzureSymlink));
        assert_eq!(d.device(), PathBuf::from("/dev/sdc"));
        assert_eq!(d.partition(1), PathBuf::from("/dev/sdc1"));
    }

    #[test]
    fn gen1_ide_port_1() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sys/bus/vmbus/devices/a/device_id", "{00000000-0000-8899-0000-000000000000}\n");
        mkdir(dir.path(), "sys/bus/vmbus/devices/a/host0/target0:0:0/0:0:0:0/block/sda");
        write(dir.path(), "sys/bus/vmbus/devices/b/device_id", "{00000000-0001-8899-0000-000000000000}\n");
        mkdir(dir.path(), "sys/bus/vmbus/devices/b/host1/target1:0:1/1:0:1:0/block/sdb");
        let d = discover(&HostRoot::new(dir.path())).unwrap().unwrap();
        assert_eq!((d.name.as_str(), d.source), ("sdb", DiscoverySource::VmbusGen1));
    }

    #[test]
    fn gen2_requires_lun_1_and_old_kernel_block_colon() {
        let dir = tempfile::tempdir().unwrap();
        let dev = "sys/bus/vmbus/devices/f8b3781a-1e82-4818-a1c3-63d806ec15bb";
        write(dir.path(), &format!("{dev}/device_id"), "{f8b3781a-1e82-4818-a1c3-63d806ec15bb}\n");
        mkdir(dir.path(), &format!("{dev}/host0/target0:0:0/0:0:0:0/block/sda"));
        mkdir(dir.path(), &format!("{dev}/host0/target0:0:0/0:0:0:2/block/sr0"));
        let root = HostRoot::new(dir.path());
        assert_eq!(discover(&root).unwrap(), None, "LUN 0 is the OS disk, LUN 2 the DVD");
        mkdir(dir.path(), &format!("{dev}/host0/target0:0:0/0:0:0:1/block:sdb"));
        let d = discover(&root).unwrap().unwrap();
        assert_eq!((d.name.as_str(), d.source), ("sdb", DiscoverySource::VmbusGen2));
    }

    #[test]
    fn data_disk_controllers_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let dev = "sys/bus/vmbus/devices/d";
        write(dir.path(), &format!("{dev}/device_id"), "{f8b3781b-1e82-4818-a1c3-63d806ec15bb}");
        mkdir(dir.path(), &format!("{dev}/host2/target2:0:0/2:0:0:1/block/sdc"));
        assert_eq!(discover(&HostRoot::new(dir.path())).unwrap(), None);
    }

    #[test]
    fn nvme_temp_disk_by_model() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sys/block/nvme0n1/device/model", "MSFT NVMe Accelerator v1.0              \n");
        write(dir.path(), "sys/block/nvme10n1/device/model", "Microsoft NVMe Direct Disk v2\n");
        write(dir.path(), "sys/block/nvme2n1/device/model", "Microsoft NVMe Direct Disk v2           \n");
        write(dir.path(), "sys/block/sda/device/model", "Virtual Disk\n");
        let d = discover(&HostRoot::new(dir.path())).unwrap().unwrap();
        assert_eq!((d.name.as_str(), d.source), ("nvme2n1", DiscoverySource::NvmeTemp));
        assert_eq!(d.partition(1), PathBuf::from("/dev/nvme2n1p1"));
    }
}
