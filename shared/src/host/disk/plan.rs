//! DECIDE: the pure part. From what was found on the resource disk ([`DiskState`]) and the
//! settings, choose one [`DiskAction`]. Nothing here touches the host, so every branch is tested
//! on hand-built states. The rule that rules them all: a disk is only formatted when it is
//! provably blank (all zeros, no table) or provably Azure's fresh NTFS placeholder.

use std::fmt;
use std::path::PathBuf;

use crate::host::disk::discover::ResourceDisk;
use crate::host::disk::mounts::MountEntry;
use crate::host::disk::probe::{Extent, FsKind, Probe, GPT_MS_BASIC_DATA, MBR_NTFS};
use crate::host::disk::swap::SwapDecision;
use crate::host::disk::ResourceDiskSettings;

/// Name of the warning file written to the root of the mounted resource disk.
pub const DATALOSS_WARNING_FILE: &str = "DATALOSS_WARNING_README.txt";

/// Names (compared case-insensitively) that may sit in the root of Azure's fresh NTFS
/// placeholder besides NTFS's own `$` metadata files (MFT records below 16), which are never listed.
pub const FRESH_NTFS_NAMES: [&str; 3] = [DATALOSS_WARNING_FILE, "System Volume Information", "$RECYCLE.BIN"];

/// Filesystems wala will create on the resource disk.
pub const SUPPORTED_FILESYSTEMS: [&str; 5] = ["ext2", "ext3", "ext4", "xfs", "btrfs"];

/// Everything the gather step found out about the disk. Two states compare equal only if the
/// disk's first MiB and partition 1's first MiB are byte-for-byte the same (by digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskState {
    pub disk: ResourceDisk,
    /// Where the disk or one of its partitions is mounted, if anywhere.
    pub mounted: Option<MountEntry>,
    /// What is at the start of the whole disk.
    pub layout: Probe,
    /// Partition 1, when the disk has a partition table with a first entry.
    pub part1: Option<PartitionState>,
    /// SHA-256 of the disk's first MiB.
    pub head_digest: [u8; 32],
}

/// What partition 1 holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub extent: Extent,
    /// What is at the start of the partition.
    pub content: Probe,
    /// The names in the NTFS root directory (read by [`super::ntfs`]), for NTFS partitions.
    pub ntfs_root: Option<Vec<String>>,
    /// SHA-256 of the partition's first MiB.
    pub head_digest: [u8; 32],
}

/// What to do with the resource disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskAction {
    /// `ResourceDisk.Format` is off: leave the disk to someone else (cloud-init, the admin).
    Disabled,
    /// This VM has no resource disk. Normal on many sizes.
    NoDisk,
    /// Already mounted (maybe somewhere other than the configured mount point): leave it.
    AlreadyMounted { device: PathBuf, mount_point: PathBuf },
    /// Partition 1 holds the wanted filesystem: mount it as it is.
    Mount { partition: PathBuf, fs: String, mount_point: PathBuf, options: Option<String> },
    /// A blank disk or Azure's fresh NTFS placeholder: one GPT partition, mkfs, mount.
    Format {
        device: PathBuf,
        partition: PathBuf,
        fs: String,
        mount_point: PathBuf,
        options: Option<String>,
        why: String,
    },
    /// Something else is on the disk: do not touch it, and say so.
    Refuse { device: PathBuf, found: String },
}

impl DiskAction {
    /// Where the disk will be mounted once the action succeeds.
    pub fn mount_point(&self) -> Option<&PathBuf> {
        match self {
            DiskAction::AlreadyMounted { mount_point, .. }
            | DiskAction::Mount { mount_point, .. }
            | DiskAction::Format { mount_point, .. } => Some(mount_point),
            DiskAction::Disabled | DiskAction::NoDisk | DiskAction::Refuse { .. } => None,
        }
    }
}

impl fmt::Display for DiskAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskAction::Disabled => f.write_str("resource disk: ResourceDisk.Format is off, nothing to do"),
            DiskAction::NoDisk => f.write_str("resource disk: none on this VM, nothing to do"),
            DiskAction::AlreadyMounted { device, mount_point } => write!(
                f,
                "resource disk: {} is already mounted at {}, leaving it",
                device.display(),
                mount_point.display()
            ),
            DiskAction::Mount { partition, fs, mount_point, options } => write!(
                f,
                "resource disk: mount existing {fs} on {} at {}{}",
                partition.display(),
                mount_point.display(),
                options_text(options)
            ),
            DiskAction::Format { device, partition, fs, mount_point, options, why } => write!(
                f,
                "resource disk: {} is {why}; create one GPT partition {}, mkfs.{fs}, mount at {}{}",
                device.display(),
                partition.display(),
                mount_point.display(),
                options_text(options)
            ),
            DiskAction::Refuse { device, found } => {
                write!(f, "resource disk: NOT formatting {}: found {found}", device.display())
            }
        }
    }
}

fn options_text(options: &Option<String>) -> String {
    options.as_ref().map(|o| format!(" with options {o}")).unwrap_or_default()
}

/// The whole plan: the disk action and, when the disk will be mounted, the swap decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    pub action: DiskAction,
    pub swap: SwapDecision,
    /// The state the action was decided on; the format step re-checks the disk against it.
    pub state: Option<DiskState>,
}

impl fmt::Display for DiskPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.action)?;
        write!(f, "{}", self.swap)
    }
}

/// Decide what to do with the disk. `state` is `None` when there is no resource disk.
pub fn decide(state: Option<&DiskState>, settings: &ResourceDiskSettings) -> DiskAction {
    if !settings.format {
        return DiskAction::Disabled;
    }
    let Some(state) = state else { return DiskAction::NoDisk };
    let device = state.disk.device();
    if let Some(m) = &state.mounted {
        return DiskAction::AlreadyMounted { device, mount_point: m.target.clone() };
    }
    let fs = settings.filesystem.clone();
    if !SUPPORTED_FILESYSTEMS.contains(&fs.as_str()) {
        return DiskAction::Refuse {
            device,
            found: format!(
                "ResourceDisk.Filesystem={fs} is not one wala creates ({SUPPORTED_FILESYSTEMS:?})"
            ),
        };
    }
    let (mount_point, options) = (settings.mount_point.clone(), settings.mount_options.clone());
    if let Some(p1) = &state.part1 {
        if matches!(p1.content, Probe::Fs(k) if k.name() == fs) {
            return DiskAction::Mount { partition: state.disk.partition(1), fs, mount_point, options };
        }
    }
    match fresh_reason(state) {
        Ok(why) => {
            DiskAction::Format { partition: state.disk.partition(1), device, fs, mount_point, options, why }
        }
        Err(found) => DiskAction::Refuse { device, found },
    }
}

/// Why the disk is safe to format, or what was found that makes it unsafe.
fn fresh_reason(state: &DiskState) -> Result<String, String> {
    let only_ntfs_part = match &state.layout {
        Probe::Empty => return Ok("blank (no partition table, first MiB all zeros)".into()),
        Probe::Mbr(p) if p.len() == 1 && p[0].index == 1 && p[0].kind == MBR_NTFS => true,
        Probe::Gpt(p) if p.len() == 1 && p[0].index == 1 && p[0].type_guid == GPT_MS_BASIC_DATA => true,
        other => return Err(describe_layout(other, state.part1.as_ref())),
    };
    let p1 = state.part1.as_ref().filter(|_| only_ntfs_part);
    let Some(p1) = p1 else { return Err(describe_layout(&state.layout, None)) };
    if p1.content != Probe::Fs(FsKind::Ntfs) {
        return Err(describe_layout(&state.layout, Some(p1)));
    }
    match &p1.ntfs_root {
        None => Err("an NTFS partition whose files could not be listed".into()),
        Some(names) => match unexpected_ntfs_names(names) {
            extra if extra.is_empty() => Ok("Azure's fresh NTFS placeholder".into()),
            extra => Err(format!("an NTFS partition holding files of its own: {}", extra.join(", "))),
        },
    }
}

/// Entries of an NTFS root listing that are not part of Azure's fresh placeholder.
pub fn unexpected_ntfs_names(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| !n.is_empty() && !FRESH_NTFS_NAMES.iter().any(|ok| ok.eq_ignore_ascii_case(n)))
        .cloned()
        .collect()
}

fn describe_layout(layout: &Probe, p1: Option<&PartitionState>) -> String {
    match p1 {
        Some(p) => format!("{layout}, partition 1 holding {}", p.content),
        None => layout.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::host::disk::discover::DiscoverySource;
    use crate::host::disk::probe::{GptPartition, MbrPartition};

    pub(crate) fn settings() -> ResourceDiskSettings {
        ResourceDiskSettings { format: true, ..ResourceDiskSettings::default() }
    }

    fn state(layout: Probe, part1: Option<(Probe, Option<&[&str]>)>) -> DiskState {
        DiskState {
            disk: ResourceDisk { name: "sdb".into(), source: DiscoverySource::VmbusGen1 },
            mounted: None,
            layout,
            part1: part1.map(|(content, names)| PartitionState {
                extent: Extent { index: 1, start_byte: 1 << 20, len_bytes: 1 << 30 },
                content,
                ntfs_root: names.map(|n| n.iter().map(|s| s.to_string()).collect()),
                head_digest: [1; 32],
            }),
            head_digest: [0; 32],
        }
    }

    fn mbr(kind: u8) -> Probe {
        Probe::Mbr(vec![MbrPartition { index: 1, bootable: false, kind, start_lba: 2048, sectors: 1 << 21 }])
    }

    fn gpt(types: &[&str]) -> Probe {
        Probe::Gpt(
            types
                .iter()
                .enumerate()
                .map(|(i, t)| GptPartition {
                    index: i as u32 + 1,
                    type_guid: t.to_string(),
                    start_lba: 2048,
                    end_lba: 4095,
                    name: String::new(),
                })
                .collect(),
        )
    }

    const FRESH: &[&str] = &["DATALOSS_WARNING_README.txt", "System Volume Information"];

    #[test]
    fn disabled_and_no_disk() {
        let off = ResourceDiskSettings { format: false, ..settings() };
        assert_eq!(decide(Some(&state(Probe::Empty, None)), &off), DiskAction::Disabled);
        assert_eq!(decide(None, &settings()), DiskAction::NoDisk);
    }

    #[test]
    fn mounted_anywhere_is_left_alone() {
        let mut s = state(Probe::Empty, None);
        s.mounted =
            Some(MountEntry { source: "/dev/sdb1".into(), target: "/mnt".into(), fstype: "ext4".into() });
        let a = decide(Some(&s), &settings());
        assert_eq!(a, DiskAction::AlreadyMounted { device: "/dev/sdb".into(), mount_point: "/mnt".into() });
        assert!(a.to_string().contains("already mounted at /mnt"));
    }

    #[test]
    fn healthy_wanted_filesystem_is_mounted_not_formatted() {
        let a = decide(Some(&state(mbr(0x83), Some((Probe::Fs(FsKind::Ext4), None)))), &settings());
        assert!(
            matches!(&a, DiskAction::Mount { partition, fs, .. } if partition.to_str() == Some("/dev/sdb1") && fs == "ext4"),
            "{a:?}"
        );
    }

    #[test]
    fn other_linux_filesystem_is_refused() {
        let a = decide(Some(&state(mbr(0x83), Some((Probe::Fs(FsKind::Xfs), None)))), &settings());
        assert!(matches!(&a, DiskAction::Refuse { found, .. } if found.contains("xfs")), "{a:?}");
    }

    #[test]
    fn blank_disk_is_formatted() {
        let a = decide(Some(&state(Probe::Empty, None)), &settings());
        assert!(matches!(&a, DiskAction::Format { why, .. } if why.contains("blank")), "{a:?}");
        assert!(a.to_string().contains("mkfs.ext4"), "{a}");
    }

    #[test]
    fn fresh_azure_ntfs_mbr_and_gpt_are_formatted() {
        for layout in [mbr(MBR_NTFS), gpt(&[GPT_MS_BASIC_DATA])] {
            let s = state(layout, Some((Probe::Fs(FsKind::Ntfs), Some(FRESH))));
            assert!(matches!(decide(Some(&s), &settings()), DiskAction::Format { .. }));
        }
        let s = state(mbr(MBR_NTFS), Some((Probe::Fs(FsKind::Ntfs), Some(&["$Recycle.Bin"]))));
        assert!(matches!(decide(Some(&s), &settings()), DiskAction::Format { .. }));
    }

    #[test]
    fn ntfs_with_user_files_is_refused_and_named() {
        let names: &[&str] = &["DATALOSS_WARNING_README.txt", "backup.tar"];
        let s = state(mbr(MBR_NTFS), Some((Probe::Fs(FsKind::Ntfs), Some(names))));
        let a = decide(Some(&s), &settings());
        assert!(matches!(&a, DiskAction::Refuse { found, .. } if found.contains("backup.tar")), "{a:?}");
        assert!(a.to_string().contains("NOT formatting /dev/sdb"));
        let unlisted = state(mbr(MBR_NTFS), Some((Probe::Fs(FsKind::Ntfs), None)));
        assert!(matches!(decide(Some(&unlisted), &settings()), DiskAction::Refuse { .. }));
    }

    #[test]
    fn unrecognised_layouts_are_refused() {
        let cases = [
            state(Probe::Unknown, None),
            state(Probe::Fs(FsKind::Ext4), None),
            state(Probe::Fs(FsKind::Luks), None),
            state(mbr(0x83), Some((Probe::Empty, None))),
            state(mbr(MBR_NTFS), Some((Probe::Fs(FsKind::Vfat), None))),
            state(gpt(&[GPT_MS_BASIC_DATA, GPT_MS_BASIC_DATA]), Some((Probe::Fs(FsKind::Ntfs), Some(FRESH)))),
            state(Probe::Mbr(vec![]), None),
        ];
        for s in cases {
            assert!(matches!(decide(Some(&s), &settings()), DiskAction::Refuse { .. }), "{s:?}");
        }
    }

    #[test]
    fn unsupported_filesystem_setting_is_refused() {
        let s = ResourceDiskSettings { filesystem: "zfs".into(), ..settings() };
        assert!(matches!(decide(Some(&state(Probe::Empty, None)), &s), DiskAction::Refuse { .. }));
    }
}
