//! The in-process NTFS root reader (`wala::host::disk::ntfs`) against volumes made by mkntfs and filled
//! by ntfscp (ntfs-3g on the build machine, a test-time tool: the guest never needs it). Regular
//! image files, so no root is needed; skipped, with a SKIP line, where ntfs-3g is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use wala::host::disk::ntfs::{root_names, NtfsError};

fn image(files: &[&str]) -> Option<(tempfile::TempDir, PathBuf)> {
    if Command::new("mkntfs").arg("--version").output().is_err() {
        common::skip("ntfs_reader: mkntfs is missing (apt-get install -y ntfs-3g)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("ntfs.img");
    std::fs::File::create(&img).and_then(|f| f.set_len(32 << 20)).expect("image");
    let ok = Command::new("mkntfs").args(["-F", "-Q", "-q"]).arg(&img).status().expect("mkntfs");
    assert!(ok.success(), "mkntfs failed");
    let src = dir.path().join("content");
    std::fs::write(&src, b"x").expect("content");
    for name in files {
        let ok = Command::new("ntfscp").arg("-q").arg(&img).arg(&src).arg(name).status().expect("ntfscp");
        assert!(ok.success(), "ntfscp {name} failed");
    }
    Some((dir, img))
}

fn names_at(img: &Path, offset: u64, len: u64) -> Vec<String> {
    let mut names = root_names(img, offset, len).expect("root names");
    names.sort();
    names
}

fn names_of(img: &Path) -> Vec<String> {
    names_at(img, 0, std::fs::metadata(img).expect("stat").len())
}

/// What ntfs-3g's own lister says, for comparison.
fn ntfsls(img: &Path) -> Vec<String> {
    let out = Command::new("ntfsls").arg("-a").arg(img).output().expect("ntfsls");
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    names.sort();
    names
}

#[test]
fn a_fresh_volume_lists_only_what_was_copied_as_ntfsls_does() {
    let Some((_dir, img)) = image(&[]) else { return };
    assert_eq!(names_of(&img), Vec::<String>::new());
    let Some((_dir, img)) = image(&["DATALOSS_WARNING_README.txt"]) else { return };
    assert_eq!(names_of(&img), vec!["DATALOSS_WARNING_README.txt"]);
    assert_eq!(names_of(&img), ntfsls(&img));
}

#[test]
fn a_large_root_is_read_through_its_index_blocks() {
    // More entries than fit the root's MFT record: they move to $INDEX_ALLOCATION blocks.
    let mut want: Vec<String> =
        (0..80).map(|i| format!("user file number {i:03} with a long name.bin")).collect();
    let refs: Vec<&str> = want.iter().map(String::as_str).collect();
    let Some((_dir, img)) = image(&refs) else { return };
    want.sort();
    assert_eq!(names_of(&img), want);
    assert_eq!(names_of(&img), ntfsls(&img));
}

#[test]
fn a_partition_is_read_through_its_parent_disk() {
    let Some((dir, img)) = image(&["DATALOSS_WARNING_README.txt", "my-data"]) else { return };
    let vol = std::fs::read(&img).expect("read");
    let disk = dir.path().join("disk.img");
    let mut bytes = vec![0u8; 1 << 20];
    bytes.extend_from_slice(&vol);
    std::fs::write(&disk, &bytes).expect("write");
    assert_eq!(names_at(&disk, 1 << 20, vol.len() as u64), vec!["DATALOSS_WARNING_README.txt", "my-data"]);
}

fn le(b: &[u8], at: usize, n: usize) -> u64 {
    b[at..at + n].iter().rev().fold(0, |acc, &x| acc << 8 | u64::from(x))
}

#[test]
fn damage_is_an_error_never_a_shorter_list() {
    let Some((_dir, img)) = image(&["DATALOSS_WARNING_README.txt", "my-data"]) else { return };
    let good = std::fs::read(&img).expect("read");
    let len = good.len() as u64;
    let write = |bytes: &[u8]| std::fs::write(&img, bytes).expect("write");

    let mut bad = good.clone();
    bad[3..11].copy_from_slice(b"XFSB    ");
    write(&bad);
    assert!(matches!(root_names(&img, 0, len), Err(NtfsError::Invalid { .. })));

    // The root directory's record (MFT record 5) torn: a sector's update sequence number is stale.
    let cluster = le(&good, 0x0B, 2) * le(&good, 0x0D, 1);
    let record = match good[0x40] as i8 {
        v if v > 0 => v as u64 * cluster,
        v => 1u64 << -v,
    };
    let root = usize::try_from(le(&good, 0x30, 8) * cluster + 5 * record).expect("offset");
    assert_eq!(&good[root..root + 4], b"FILE");
    let mut bad = good.clone();
    bad[root + 510] ^= 0xff;
    write(&bad);
    let err = root_names(&img, 0, len).unwrap_err().to_string();
    assert!(err.contains("torn") && err.contains("ntfs.img"), "{err}");

    write(&good);
    assert!(root_names(&img, 0, 4096).is_err(), "a volume larger than its device");
    assert!(matches!(root_names(Path::new("/nonexistent/ntfs"), 0, len), Err(NtfsError::Io { .. })));
    assert_eq!(names_of(&img), vec!["DATALOSS_WARNING_README.txt", "my-data"]);
}
