//! Root-only tests of the resource disk code on real loop devices, real mkfs, mount and swapon.
//!
//! Each test prints a `SKIP` line and returns when not run as root or when a tool it needs is
//! missing (Debian/Ubuntu: `apt-get install -y ntfs-3g fdisk e2fsprogs xfsprogs cryptsetup-bin`;
//! `losetup`, `partx`, `mount`, `swapon` come with util-linux/mount). Every loop device, mount and
//! swap area a test makes is undone by [`LoopDisk`]'s `Drop`, also when the test fails. Mount
//! points live in the test's temp dir, never on the host's `/mnt`.

#![allow(clippy::unwrap_used)] // a test binary: helpers outside #[test] fns may unwrap too

mod common;
#[path = "support/loopdisk.rs"]
mod loopdisk;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;

use loopdisk::{sh, LoopDisk};

use wala::base::cmd::{find_program, SystemRunner};
use wala::base::root::HostRoot;
use wala::host::disk::mounts::{read_mounts, read_swaps};
use wala::host::disk::probe::{probe_path, FsKind, Probe};
use wala::host::disk::{
    apply_disk, plan_for, run_for, DiskAction, DiskOutcome, ResourceDiskSettings, SwapDecision,
};

/// Loop devices, mounts and the one dm-crypt name are machine-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `true` when the test can run; otherwise prints why it is skipped.
fn can_run(test: &str, tools: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        common::skip(&format!("{test}: needs root (loop devices, mkfs, mount)"));
        return false;
    }
    let missing: Vec<&str> = ["losetup", "partx", "mount", "umount"]
        .iter()
        .chain(tools)
        .copied()
        .filter(|t| find_program(t).is_none())
        .collect();
    if !missing.is_empty() {
        common::skip(&format!("{test}: missing {missing:?} (apt-get install -y ntfs-3g fdisk e2fsprogs xfsprogs cryptsetup-bin)"));
        return false;
    }
    true
}

fn probe_part1(d: &LoopDisk) -> Probe {
    probe_path(Path::new(&d.part1()), 0).unwrap()
}

#[test]
fn fresh_azure_ntfs_disk_is_formatted_and_mounted() {
    if !can_run(
        "fresh_azure_ntfs_disk_is_formatted_and_mounted",
        &["sfdisk", "mkntfs", "ntfscp", "ntfsls", "mkfs.ext4"],
    ) {
        return;
    }
    let _g = serial();
    let d = LoopDisk::new(64);
    d.azure_ntfs(&["DATALOSS_WARNING_README.txt"]);
    let root = HostRoot::live();
    let plan = plan_for(&root, &d.settings("ext4"), Some(&d.disk())).unwrap();
    assert!(matches!(plan.action, DiskAction::Format { .. }), "{plan}");
    let outcome = apply_disk(&root, &SystemRunner, &plan).unwrap();
    assert_eq!(
        outcome,
        DiskOutcome::Mounted { mount_point: d.mount_point(), fstype: "ext4".into(), formatted: true }
    );
    assert!(d.is_mounted());
    assert_eq!(probe_part1(&d), Probe::Fs(FsKind::Ext4));
    let Probe::Gpt(parts) = probe_path(Path::new(&d.dev), 0).unwrap() else { panic!("not GPT") };
    assert_eq!(parts.len(), 1);
    assert!(d.mount_point().join("DATALOSS_WARNING_README.txt").is_file());
}

#[test]
fn a_file_added_after_the_decision_stops_the_format() {
    let test = "a_file_added_after_the_decision_stops_the_format";
    if !can_run(test, &["sfdisk", "mkntfs", "ntfscp", "ntfsls", "mkfs.ext4"]) {
        return;
    }
    let _g = serial();
    let d = LoopDisk::new(64);
    d.azure_ntfs(&["DATALOSS_WARNING_README.txt"]);
    let root = HostRoot::live();
    let plan = plan_for(&root, &d.settings("ext4"), Some(&d.disk())).unwrap();
    assert!(matches!(plan.action, DiskAction::Format { .. }), "{plan}");
    // Someone writes to the partition between the decision and the format.
    let src = d.dir.path().join("late.txt");
    fs::write(&src, b"late").unwrap();
    sh("ntfscp", &["--force", &d.part1(), src.to_str().unwrap(), "late.txt"]);
    let err = apply_disk(&root, &SystemRunner, &plan).unwrap_err();
    assert!(matches!(err, wala::host::disk::DiskError::Changed { .. }), "{err}");
    assert!(err.to_string().contains("late.txt"), "{err}");
    assert_eq!(probe_part1(&d), Probe::Fs(FsKind::Ntfs));
    assert!(sh("ntfsls", &["-a", &d.part1()]).contains("late.txt"));
}

#[test]
fn ntfs_disk_with_a_user_file_is_left_alone() {
    if !can_run(
        "ntfs_disk_with_a_user_file_is_left_alone",
        &["sfdisk", "mkntfs", "ntfscp", "ntfsls", "mkfs.ext4"],
    ) {
        return;
    }
    let _g = serial();
    let d = LoopDisk::new(64);
    d.azure_ntfs(&["DATALOSS_WARNING_README.txt", "important.db"]);
    let outcome = run_for(&HostRoot::live(), &SystemRunner, &d.settings("ext4"), Some(&d.disk())).unwrap();
    let DiskOutcome::Refused { warning } = outcome else { panic!("{outcome:?}") };
    assert!(warning.contains(&d.dev) && warning.contains("important.db"), "{warning}");
    assert!(!d.is_mounted());
    assert_eq!(probe_part1(&d), Probe::Fs(FsKind::Ntfs));
    let listing = sh("ntfsls", &["-a", &d.part1()]);
    assert!(listing.contains("important.db"), "{listing}");
}

#[test]
fn existing_ext4_with_data_survives_a_second_run() {
    if !can_run("existing_ext4_with_data_survives_a_second_run", &["sfdisk", "mkfs.ext4"]) {
        return;
    }
    let _g = serial();
    let d = LoopDisk::new(64);
    let settings = d.settings("ext4");
    let root = HostRoot::live();
    let first = run_for(&root, &SystemRunner, &settings, Some(&d.disk())).unwrap();
    assert!(matches!(first, DiskOutcome::Mounted { formatted: true, .. }), "blank disk: {first:?}");
    fs::write(d.mount_point().join("data.txt"), b"keep me").unwrap();
    d.umount();
    let superblock = fs::read(d.part1()).map(|b| b[1024..2048].to_vec()).unwrap_or_default();

    let second = run_for(&root, &SystemRunner, &settings, Some(&d.disk())).unwrap();
    assert!(matches!(second, DiskOutcome::Mounted { formatted: false, .. }), "{second:?}");
    assert_eq!(fs::read(d.mount_point().join("data.txt")).unwrap(), b"keep me");

    let third = plan_for(&root, &settings, Some(&d.disk())).unwrap();
    assert!(
        matches!(&third.action, DiskAction::AlreadyMounted { mount_point, .. } if *mount_point == d.mount_point())
    );
    d.umount();
    let after = fs::read(d.part1()).map(|b| b[1024..2048].to_vec()).unwrap_or_default();
    assert_eq!(superblock[0x68..0x78], after[0x68..0x78], "same filesystem UUID: not reformatted");
}

#[test]
fn xfs_is_created_on_a_blank_disk() {
    if !can_run("xfs_is_created_on_a_blank_disk", &["sfdisk", "mkfs.xfs"]) {
        return;
    }
    let _g = serial();
    let d = LoopDisk::new(512);
    let out = run_for(&HostRoot::live(), &SystemRunner, &d.settings("xfs"), Some(&d.disk())).unwrap();
    assert_eq!(
        out,
        DiskOutcome::Mounted { mount_point: d.mount_point(), fstype: "xfs".into(), formatted: true }
    );
    assert_eq!(probe_part1(&d), Probe::Fs(FsKind::Xfs));
    let m =
        read_mounts(&HostRoot::live()).unwrap().into_iter().find(|m| m.target == d.mount_point()).unwrap();
    assert_eq!(m.fstype, "xfs");
}

fn swap_kib(file: &Path) -> Option<u64> {
    read_swaps(&HostRoot::live()).unwrap().into_iter().find(|s| s.path == file).map(|s| s.size_kib)
}

#[test]
fn swap_is_created_kept_and_resized() {
    if !can_run("swap_is_created_kept_and_resized", &["sfdisk", "mkfs.ext4", "mkswap", "swapon", "swapoff"]) {
        return;
    }
    let _g = serial();
    let d = LoopDisk::new(128);
    let root = HostRoot::live();
    let mut settings = ResourceDiskSettings { enable_swap: true, swap_size_mb: 16, ..d.settings("ext4") };
    run_for(&root, &SystemRunner, &settings, Some(&d.disk())).unwrap();
    let file = d.mount_point().join("swapfile");
    let meta = fs::metadata(&file).unwrap();
    assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (16 << 20, 0o600));
    let kib = swap_kib(&file).expect("swap active");
    assert!((16 * 1024 - 64..16 * 1024).contains(&kib), "{kib}");

    let again = plan_for(&root, &settings, Some(&d.disk())).unwrap();
    assert!(matches!(&again.swap, SwapDecision::Plan(p) if p.steps.is_empty()), "{again}");
    run_for(&root, &SystemRunner, &settings, Some(&d.disk())).unwrap();
    assert_eq!(fs::metadata(&file).unwrap().ino(), meta.ino(), "right-sized active swap is kept");

    settings.swap_size_mb = 32;
    run_for(&root, &SystemRunner, &settings, Some(&d.disk())).unwrap();
    let kib = swap_kib(&file).expect("resized swap active");
    assert!((32 * 1024 - 64..32 * 1024).contains(&kib), "{kib}");
    assert_eq!(fs::metadata(&file).unwrap().len(), 32 << 20);
}

#[test]
fn encrypted_swap_uses_a_dm_crypt_mapping() {
    let test = "encrypted_swap_uses_a_dm_crypt_mapping";
    if !can_run(test, &["sfdisk", "mkfs.ext4", "mkswap", "swapon", "swapoff", "cryptsetup"]) {
        return;
    }
    let misc = fs::read_to_string("/proc/misc").unwrap_or_default();
    if !misc.contains("device-mapper") {
        common::skip(&format!("{test}: the kernel has no device-mapper (dm_mod / dm_crypt)"));
        return;
    }
    let _g = serial();
    let d = LoopDisk::new(128);
    let root = HostRoot::live();
    let settings = ResourceDiskSettings {
        enable_swap: true,
        swap_size_mb: 16,
        swap_encryption: true,
        ..d.settings("ext4")
    };
    run_for(&root, &SystemRunner, &settings, Some(&d.disk())).unwrap();
    let dm = fs::canonicalize("/dev/mapper/wala-swap").unwrap();
    let active =
        read_swaps(&root).unwrap().into_iter().find(|s| s.path == dm || s.path.ends_with("wala-swap"));
    assert!(active.is_some_and(|s| (16 * 1024 - 64..16 * 1024).contains(&s.size_kib)));
    let file = d.mount_point().join("swapfile");
    assert_ne!(probe_path(&file, 0).unwrap(), Probe::Fs(FsKind::Swap), "only ciphertext on disk");
    let again = plan_for(&root, &settings, Some(&d.disk())).unwrap();
    assert!(matches!(&again.swap, SwapDecision::Plan(p) if p.steps.is_empty()), "{again}");
}

#[test]
fn no_resource_disk_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let settings =
        ResourceDiskSettings { format: true, enable_swap: true, swap_size_mb: 16, ..Default::default() };
    let fake_root = HostRoot::new(dir.path());
    assert_eq!(wala::host::disk::run(&fake_root, &SystemRunner, &settings).unwrap(), DiskOutcome::Nothing);
    let plan = plan_for(&HostRoot::live(), &settings, None).unwrap();
    assert_eq!(plan.action, DiskAction::NoDisk);
    assert_eq!(plan.swap, SwapDecision::Off);
}
