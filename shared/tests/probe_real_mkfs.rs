//! The superblock probe against what real tools write, on image files.
//!
//! Needs root (mkfs tools and `cryptsetup` expect it) and prints a `SKIP` line for each tool
//! that is missing (`apt-get install -y e2fsprogs xfsprogs ntfs-3g dosfstools fdisk
//! cryptsetup-bin btrfs-progs`).

#![allow(clippy::unwrap_used)] // a test binary: helpers outside #[test] fns may unwrap too

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use wala::base::cmd::find_program;
use wala::host::disk::probe::{probe_path, FsKind, Probe, GPT_LINUX_FS, MBR_NTFS};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        common::skip("probe_real_mkfs: needs root");
    }
    root
}

/// A fresh sparse image; run `tool args.. <image>` on it. `None` (with a SKIP line) when the
/// tool is missing.
fn image_with(
    dir: &Path,
    mb: u64,
    tool: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Option<std::path::PathBuf> {
    if find_program(tool).is_none() {
        common::skip(&format!("probe of {tool} output: {tool} is not installed"));
        return None;
    }
    let img = dir.join(format!("{tool}-{}.img", args.join("_").replace(['/', ' '], "")));
    std::fs::File::create(&img).unwrap().set_len(mb << 20).unwrap();
    let mut child = Command::new(tool)
        .args(args)
        .arg(&img)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Some(img)
}

fn check(dir: &Path, mb: u64, tool: &str, args: &[&str], want: Probe) {
    if let Some(img) = image_with(dir, mb, tool, args, None) {
        assert_eq!(probe_path(&img, 0).unwrap(), want, "{tool} {args:?}");
    }
}

#[test]
fn filesystems_made_by_real_tools() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    check(d, 16, "mkfs.ext2", &["-q", "-F"], Probe::Fs(FsKind::Ext2));
    check(d, 16, "mkfs.ext3", &["-q", "-F"], Probe::Fs(FsKind::Ext3));
    check(d, 16, "mkfs.ext4", &["-q", "-F"], Probe::Fs(FsKind::Ext4));
    check(d, 320, "mkfs.xfs", &["-q", "-f"], Probe::Fs(FsKind::Xfs));
    check(d, 16, "mkntfs", &["-q", "-Q", "-F"], Probe::Fs(FsKind::Ntfs));
    check(d, 16, "mkfs.vfat", &[], Probe::Fs(FsKind::Vfat));
    check(d, 40, "mkfs.vfat", &["-F", "32"], Probe::Fs(FsKind::Vfat));
    check(d, 16, "mkswap", &[], Probe::Fs(FsKind::Swap));
    check(d, 128, "mkfs.btrfs", &["-q", "-f"], Probe::Fs(FsKind::Btrfs));
    check(d, 16, "true", &[], Probe::Empty);
}

#[test]
fn luks_made_by_cryptsetup() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "luksFormat",
        "--batch-mode",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file",
        "-",
    ];
    if let Some(img) = image_with(dir.path(), 32, "cryptsetup", &args, Some("not-a-real-secret")) {
        assert_eq!(probe_path(&img, 0).unwrap(), Probe::Fs(FsKind::Luks));
    }
}

#[test]
fn partition_tables_made_by_sfdisk() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if let Some(img) = image_with(d, 64, "sfdisk", &["--quiet"], Some("label: dos\n,32M,7\n,,83\n")) {
        let Probe::Mbr(parts) = probe_path(&img, 0).unwrap() else { panic!("not MBR") };
        assert_eq!(
            parts.iter().map(|p| (p.index, p.kind)).collect::<Vec<_>>(),
            vec![(1, MBR_NTFS), (2, 0x83)]
        );
        assert_eq!(parts[0].extent().start_byte, 1 << 20);
    }
    if let Some(img) = image_with(d, 64, "sfdisk", &["--quiet"], Some("label: gpt\ntype=L, name=tmp\n")) {
        let Probe::Gpt(parts) = probe_path(&img, 0).unwrap() else { panic!("not GPT") };
        assert_eq!(parts.len(), 1);
        assert_eq!((parts[0].type_guid.as_str(), parts[0].name.as_str()), (GPT_LINUX_FS, "tmp"));
        assert_eq!(parts[0].extent(512).start_byte, 1 << 20);
    }
}
