//! GATHER and ACT for the resource disk itself: read what is on it ([`gather`]), and carry out a
//! decided [`DiskAction`] ([`apply_disk`]). The format path gathers again right before it writes
//! anything and stops if a single byte of the probed areas, a partition entry or a mount differs
//! from what the decision saw.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::base::cmd::{Cmd, Runner};
use crate::base::files::{ensure_dir, write_atomic, FileError, WriteOptions};
use crate::base::root::HostRoot;
use crate::host::disk::discover::{partition_name, ResourceDisk};
use crate::host::disk::mounts::{mount_of_disk, read_mounts};
use crate::host::disk::plan::{DiskAction, DiskPlan, DiskState, PartitionState, DATALOSS_WARNING_FILE};
use crate::host::disk::probe::{
    gpt_sector_size, probe_bytes, read_head, Extent, Probe, GPT_LINUX_FS, PROBE_LEN,
};
use crate::host::disk::DiskError;

/// Text of the warning file written to the root of the mounted resource disk.
pub const DATALOSS_WARNING_TEXT: &str = "WARNING: this is a temporary (resource) disk.\n\
Anything stored here can be lost at any time, for example when the VM is resized, redeployed or\n\
deallocated, and it cannot be recovered. Do not keep data here that you need to keep.\n";

/// How long to wait for a partition's device node to appear.
const PARTITION_WAIT: Duration = Duration::from_secs(25);
const POLL: Duration = Duration::from_millis(250);

/// What applying the disk action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOutcome {
    /// Nothing to do (format off, or no resource disk).
    Nothing,
    /// The disk is mounted at `mount_point` with `fstype` (`formatted` when wala made the
    /// filesystem in this run).
    Mounted { mount_point: PathBuf, fstype: String, formatted: bool },
    /// The disk was left alone because of what is on it; `warning` says what and why.
    Refused { warning: String },
}

/// Read everything the decision needs about `disk`. Only reads, and only through the disk's own
/// node: partition 1 (and its NTFS root directory) is read at its offset on the whole disk.
pub fn gather(root: &HostRoot, disk: &ResourceDisk) -> Result<DiskState, DiskError> {
    let mounted = mount_of_disk(root, &read_mounts(root)?, &disk.name);
    let dev = root.path(disk.device());
    let head = read_head(&dev, 0, PROBE_LEN)?;
    let layout = probe_bytes(&head);
    let part1 = match first_extent(&layout, &head) {
        Some(extent) => Some(gather_partition(root, disk, extent, mounted.is_none())?),
        None => None,
    };
    Ok(DiskState { disk: disk.clone(), mounted, layout, part1, head_digest: digest(&head) })
}

fn first_extent(layout: &Probe, head: &[u8]) -> Option<Extent> {
    match layout {
        Probe::Mbr(parts) => parts.iter().find(|p| p.index == 1).map(|p| p.extent()),
        Probe::Gpt(parts) => {
            let sector = gpt_sector_size(head)?;
            parts.iter().find(|p| p.index == 1).map(|p| p.extent(sector))
        }
        _ => None,
    }
}

fn gather_partition(
    root: &HostRoot,
    disk: &ResourceDisk,
    extent: Extent,
    may_list: bool,
) -> Result<PartitionState, DiskError> {
    let len = usize::try_from(extent.len_bytes).unwrap_or(usize::MAX).min(PROBE_LEN);
    let head = read_head(&root.path(disk.device()), extent.start_byte, len)?;
    let content = probe_bytes(&head);
    let ntfs_root = if may_list && content == Probe::Fs(super::probe::FsKind::Ntfs) {
        list_ntfs_root(root, disk, extent)
    } else {
        None
    };
    Ok(PartitionState { extent, content, ntfs_root, head_digest: digest(&head) })
}

/// The names in the NTFS partition's root directory, read in-process through the whole disk
/// ([`super::ntfs`]; NTFS's own `$` metadata files are not listed). `None` (logged) when it
/// cannot be read, which makes the decision refuse to format.
fn list_ntfs_root(root: &HostRoot, disk: &ResourceDisk, extent: Extent) -> Option<Vec<String>> {
    let dev = root.path(disk.device());
    match super::ntfs::root_names(&dev, extent.start_byte, extent.len_bytes) {
        Ok(names) => Some(names),
        Err(e) => {
            log::warn!("cannot list the NTFS partition 1 of {}: {e}", disk.device().display());
            None
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Carry out the plan's disk action.
pub fn apply_disk(root: &HostRoot, runner: &dyn Runner, plan: &DiskPlan) -> Result<DiskOutcome, DiskError> {
    match &plan.action {
        DiskAction::Disabled | DiskAction::NoDisk => Ok(DiskOutcome::Nothing),
        DiskAction::AlreadyMounted { device, mount_point } => {
            log::info!("resource disk {} is already mounted at {}", device.display(), mount_point.display());
            let fstype = plan.state.as_ref().and_then(|s| s.mounted.as_ref()).map(|m| m.fstype.clone());
            Ok(DiskOutcome::Mounted {
                mount_point: mount_point.clone(),
                fstype: fstype.unwrap_or_default(),
                formatted: false,
            })
        }
        DiskAction::Refuse { .. } => {
            let warning = plan.action.to_string();
            log::warn!("{warning}");
            Ok(DiskOutcome::Refused { warning })
        }
        DiskAction::Mount { partition, fs, mount_point, options } => {
            wait_for_node(root, runner, plan, partition, None)?;
            mount(root, runner, partition, fs, mount_point, options.as_deref())?;
            Ok(DiskOutcome::Mounted {
                mount_point: mount_point.clone(),
                fstype: fs.clone(),
                formatted: false,
            })
        }
        DiskAction::Format { device, partition, fs, mount_point, options, .. } => {
            let state = plan.state.as_ref().ok_or_else(|| DiskError::Changed {
                device: device.clone(),
                before: "no recorded state".into(),
                after: "unchecked".into(),
            })?;
            recheck(root, state)?;
            let extent = partition_disk(root, runner, device)?;
            wait_for_node(root, runner, plan, partition, Some(extent))?;
            mkfs(root, runner, fs, partition)?;
            mount(root, runner, partition, fs, mount_point, options.as_deref())?;
            Ok(DiskOutcome::Mounted { mount_point: mount_point.clone(), fstype: fs.clone(), formatted: true })
        }
    }
}

/// Gather again and refuse if anything differs from what the decision was made on.
fn recheck(root: &HostRoot, decided: &DiskState) -> Result<(), DiskError> {
    let now = gather(root, &decided.disk)?;
    if &now == decided {
        return Ok(());
    }
    Err(DiskError::Changed { device: decided.disk.device(), before: summary(decided), after: summary(&now) })
}

fn summary(s: &DiskState) -> String {
    let mut text = s.layout.to_string();
    if let Some(p) = &s.part1 {
        text.push_str(&format!(", partition 1: {}", p.content));
        if let Some(names) = &p.ntfs_root {
            text.push_str(&format!(" with {names:?}"));
        }
    }
    if let Some(m) = &s.mounted {
        text.push_str(&format!(", mounted at {}", m.target.display()));
    }
    text
}

/// One GPT "Linux filesystem" partition over the whole disk; returns its extent as written.
fn partition_disk(root: &HostRoot, runner: &dyn Runner, device: &Path) -> Result<Extent, DiskError> {
    let dev = root.path(device);
    let script = format!("label: gpt\ntype={}\n", GPT_LINUX_FS.to_ascii_uppercase());
    let cmd = Cmd::new("sfdisk").args(["--quiet", "--wipe", "always", "--wipe-partitions", "always"]);
    runner.run(&cmd.arg(&dev).stdin(script))?;
    let head = read_head(&dev, 0, PROBE_LEN)?;
    let layout = probe_bytes(&head);
    match (&layout, first_extent(&layout, &head)) {
        (Probe::Gpt(parts), Some(extent)) if parts.len() == 1 => Ok(extent),
        _ => Err(DiskError::Partitioning { device: device.to_path_buf(), found: layout.to_string() }),
    }
}

/// Wait for the partition node (and, after partitioning, for the kernel's view of it to match
/// the new table), nudging the kernel with `partx -u` / `partx -a` on the way.
fn wait_for_node(
    root: &HostRoot,
    runner: &dyn Runner,
    plan: &DiskPlan,
    partition: &Path,
    want: Option<Extent>,
) -> Result<(), DiskError> {
    let disk = plan.state.as_ref().map(|s| s.disk.clone());
    let dev = disk.as_ref().map(|d| root.path(d.device()));
    let tries = (PARTITION_WAIT.as_millis() / POLL.as_millis()).max(1) as u32;
    for i in 0..tries {
        if node_ready(root, partition, disk.as_ref(), want) {
            return Ok(());
        }
        if let Some(dev) = dev.as_ref().filter(|_| i % 8 == 0) {
            let flag = if i % 16 == 0 { "-u" } else { "-a" };
            let _ = runner.output(&Cmd::new("partx").arg(flag).arg(dev));
            continue;
        }
        sleep(POLL);
    }
    Err(DiskError::PartitionMissing { path: partition.to_path_buf(), secs: PARTITION_WAIT.as_secs() })
}

fn node_ready(root: &HostRoot, partition: &Path, disk: Option<&ResourceDisk>, want: Option<Extent>) -> bool {
    if !root.path(partition).exists() {
        return false;
    }
    let (Some(want), Some(disk)) = (want, disk) else { return true };
    let name = partition_name(&disk.name, want.index);
    let sys = |attr: &str| -> Option<u64> {
        fs::read_to_string(root.path(format!("/sys/class/block/{name}/{attr}"))).ok()?.trim().parse().ok()
    };
    sys("start").map(|s| s * 512) == Some(want.start_byte)
        && sys("size").map(|s| s * 512) == Some(want.len_bytes)
}

fn mkfs(root: &HostRoot, runner: &dyn Runner, fs: &str, partition: &Path) -> Result<(), DiskError> {
    let force = if matches!(fs, "xfs" | "btrfs") { "-f" } else { "-F" };
    runner.run(&Cmd::new(format!("mkfs.{fs}")).arg(force).arg(root.path(partition)))?;
    Ok(())
}

fn mount(
    root: &HostRoot,
    runner: &dyn Runner,
    partition: &Path,
    fs: &str,
    mount_point: &Path,
    options: Option<&str>,
) -> Result<(), DiskError> {
    let mp = root.path(mount_point);
    ensure_dir(&mp, 0o755)?;
    let mut cmd = Cmd::new("mount").args(["-t", fs]);
    if let Some(o) = options.filter(|o| !o.trim().is_empty()) {
        cmd = cmd.args(["-o", o]);
    }
    runner.run(&cmd.arg(root.path(partition)).arg(&mp))?;
    log::info!("resource disk {} is mounted at {} with {fs}", partition.display(), mount_point.display());
    write_warning(&mp)
}

fn write_warning(mp: &Path) -> Result<(), DiskError> {
    let path = mp.join(DATALOSS_WARNING_FILE);
    match write_atomic(&path, DATALOSS_WARNING_TEXT.as_bytes(), WriteOptions::mode(0o644)) {
        Ok(()) => Ok(()),
        Err(FileError { source, .. }) if source.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
            log::warn!("cannot write {}: read-only", path.display());
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::FakeRunner;
    use crate::host::disk::probe::tests::mbr;
    use crate::host::disk::probe::MBR_NTFS;
    use crate::host::disk::{plan, run, ResourceDiskSettings, SwapDecision};

    const MIB: usize = 1 << 20;

    /// A fake root with `/dev/sdb` (an image: MBR, partition 1 at 1 MiB holding `part1`), its
    /// partition node, the Azure link, and empty mount and swap tables.
    fn fake_root(table: &[u8], part1: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for d in ["dev/disk/azure", "proc/self", "mnt"] {
            fs::create_dir_all(p.join(d)).unwrap();
        }
        let mut img = vec![0u8; 3 * MIB];
        img[..table.len()].copy_from_slice(table);
        img[MIB..MIB + part1.len()].copy_from_slice(part1);
        fs::write(p.join("dev/sdb"), img).unwrap();
        fs::write(p.join("dev/sdb1"), b"").unwrap();
        std::os::unix::fs::symlink("../../sdb", p.join("dev/disk/azure/resource")).unwrap();
        fs::write(p.join("proc/self/mounts"), "/dev/sda1 / ext4 rw 0 0\n").unwrap();
        fs::write(p.join("proc/swaps"), "Filename Type Size Used Priority\n").unwrap();
        dir
    }

    /// A 2 MiB NTFS volume holding `files` in its root, made by mkntfs and ntfscp (ntfs-3g, a
    /// tool of the build machine only). `None`, with a SKIP line, where they are missing.
    fn ntfs_volume(files: &[&str]) -> Option<Vec<u8>> {
        use std::process::Command;
        if Command::new("mkntfs").arg("--version").output().is_err() {
            crate::base::testing::skip("resource disk NTFS unit tests: mkntfs (ntfs-3g) is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("part1");
        fs::File::create(&img).and_then(|f| f.set_len(2 * MIB as u64)).unwrap();
        assert!(Command::new("mkntfs").args(["-F", "-Q", "-q"]).arg(&img).status().unwrap().success());
        let src = dir.path().join("content");
        fs::write(&src, b"x").unwrap();
        for name in files {
            let status = Command::new("ntfscp").arg("-q").arg(&img).arg(&src).arg(name).status().unwrap();
            assert!(status.success(), "ntfscp {name}");
        }
        Some(fs::read(&img).unwrap())
    }

    fn ntfs_boot() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0] = 0xeb;
        b[3..11].copy_from_slice(b"NTFS    ");
        b[510] = 0x55;
        b[511] = 0xaa;
        b
    }

    fn ext4_sb() -> Vec<u8> {
        let mut b = vec![0u8; 2048];
        b[1024 + 0x38..1024 + 0x3a].copy_from_slice(&0xef53u16.to_le_bytes());
        b[1024 + 0x60] = 0x40;
        b
    }

    fn settings() -> ResourceDiskSettings {
        ResourceDiskSettings { format: true, mount_point: "/mnt/resource".into(), ..Default::default() }
    }

    fn ntfs_disk() -> Vec<u8> {
        mbr(&[(MBR_NTFS, 2048, 4096)])
    }

    #[test]
    fn fresh_ntfs_is_planned_for_format_and_partitioning_is_verified() {
        let Some(volume) = ntfs_volume(&["DATALOSS_WARNING_README.txt"]) else { return };
        let dir = fake_root(&ntfs_disk(), &volume);
        let root = HostRoot::new(dir.path());
        let fake = FakeRunner::new();
        let p = plan(&root, &settings()).unwrap();
        assert!(matches!(p.action, DiskAction::Format { .. }), "{p}");
        assert!(p.to_string().contains("/dev/sdb is Azure's fresh NTFS placeholder"), "{p}");
        // The fake sfdisk writes nothing, so the disk still shows the old MBR: wala must stop
        // before mkfs rather than format whatever partition 1 now is.
        let err = apply_disk(&root, &fake, &p).unwrap_err();
        assert!(matches!(err, DiskError::Partitioning { .. }), "{err}");
        // No helper program reads the disk: the first command is the partitioning.
        let lines = fake.command_lines();
        assert!(lines[0].starts_with("sfdisk --quiet --wipe always --wipe-partitions always "), "{lines:?}");
        assert_eq!(
            fake.calls()[0].stdin_data(),
            Some(&b"label: gpt\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"[..])
        );
        assert!(!lines.iter().any(|l| l.starts_with("mkfs") || l.starts_with("mount")), "{lines:?}");
    }

    #[test]
    fn ntfs_with_user_files_is_left_alone() {
        let Some(volume) = ntfs_volume(&["DATALOSS_WARNING_README.txt", "my-data"]) else { return };
        let dir = fake_root(&ntfs_disk(), &volume);
        let root = HostRoot::new(dir.path());
        let fake = FakeRunner::new();
        let outcome = run(&root, &fake, &settings()).unwrap();
        let DiskOutcome::Refused { warning } = outcome else { panic!("{outcome:?}") };
        assert!(warning.contains("/dev/sdb") && warning.contains("my-data"), "{warning}");
        assert!(fake.command_lines().is_empty(), "nothing ran");
    }

    #[test]
    fn unlistable_ntfs_is_left_alone() {
        // An NTFS boot sector and nothing behind it: the root directory cannot be read.
        let dir = fake_root(&ntfs_disk(), &ntfs_boot());
        let p = plan(&HostRoot::new(dir.path()), &settings()).unwrap();
        assert!(matches!(p.action, DiskAction::Refuse { .. }), "{p}");
    }

    #[test]
    fn a_change_after_the_decision_stops_the_format() {
        let Some(volume) = ntfs_volume(&["DATALOSS_WARNING_README.txt"]) else { return };
        let dir = fake_root(&ntfs_disk(), &volume);
        let root = HostRoot::new(dir.path());
        let fake = FakeRunner::new();
        let p = plan(&root, &settings()).unwrap();
        assert!(matches!(p.action, DiskAction::Format { .. }));
        let mut img = fs::read(dir.path().join("dev/sdb")).unwrap();
        img[MIB + 600] = 1;
        fs::write(dir.path().join("dev/sdb"), img).unwrap();
        let err = apply_disk(&root, &fake, &p).unwrap_err();
        assert!(matches!(err, DiskError::Changed { .. }), "{err}");
        assert!(!fake.command_lines().iter().any(|l| l.starts_with("sfdisk")));
    }

    #[test]
    fn existing_ext4_is_mounted_with_options_and_warning_file() {
        let dir = fake_root(&mbr(&[(0x83, 2048, 4096)]), &ext4_sb());
        let root = HostRoot::new(dir.path());
        let fake = FakeRunner::new();
        let s = ResourceDiskSettings { mount_options: Some("nofail,noatime".into()), ..settings() };
        let outcome = run(&root, &fake, &s).unwrap();
        assert_eq!(
            outcome,
            DiskOutcome::Mounted {
                mount_point: "/mnt/resource".into(),
                fstype: "ext4".into(),
                formatted: false
            }
        );
        let d = dir.path().display();
        assert_eq!(
            fake.command_lines(),
            vec![format!("mount -t ext4 -o nofail,noatime {d}/dev/sdb1 {d}/mnt/resource")]
        );
        let warning =
            fs::read_to_string(dir.path().join("mnt/resource/DATALOSS_WARNING_README.txt")).unwrap();
        assert_eq!(warning, DATALOSS_WARNING_TEXT);
    }

    #[test]
    fn mounted_disk_is_reported_with_its_real_mount_point_and_swap_is_exact() {
        let dir = fake_root(&mbr(&[(0x83, 2048, 4096)]), &ext4_sb());
        fs::write(dir.path().join("proc/self/mounts"), "/dev/sdb1 /mnt ext4 rw 0 0\n").unwrap();
        let root = HostRoot::new(dir.path());
        let fake = FakeRunner::new();
        let s = ResourceDiskSettings { enable_swap: true, swap_size_mb: 1, ..settings() };
        let p = plan(&root, &s).unwrap();
        assert!(
            matches!(&p.action, DiskAction::AlreadyMounted { mount_point, .. } if mount_point == Path::new("/mnt"))
        );
        let SwapDecision::Plan(sp) = &p.swap else { panic!("{p}") };
        assert_eq!(sp.file, PathBuf::from("/mnt/swapfile"));
        let text = p.to_string();
        assert!(
            text.contains("already mounted at /mnt") && text.contains("swap: /mnt/swapfile (1 MiB)"),
            "{text}"
        );
        let outcome = run(&root, &fake, &s).unwrap();
        assert!(matches!(outcome, DiskOutcome::Mounted { formatted: false, .. }));
        let lines = fake.command_lines();
        assert_eq!(
            lines,
            vec![
                format!("mkswap {}/mnt/swapfile", dir.path().display()),
                format!("swapon {}/mnt/swapfile", dir.path().display())
            ]
        );
    }

    #[test]
    fn no_disk_is_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeRunner::new();
        let outcome = run(&HostRoot::new(dir.path()), &fake, &settings()).unwrap();
        assert_eq!(outcome, DiskOutcome::Nothing);
        assert!(fake.command_lines().is_empty());
        let p = plan(&HostRoot::new(dir.path()), &settings()).unwrap();
        assert_eq!(p.to_string(), "resource disk: none on this VM, nothing to do\nswap: off");
    }
}
