//! The in-process DVD reader (`wala::host::dvd::medium`) against images made by real tools:
//! genisoimage (ISO 9660 plain, Joliet, Rock Ridge, ISO/UDF bridge), pycdlib's genisoimage (a
//! second ISO/UDF writer, UDF 2.60) and mkudffs (UDF volumes of each revision and media type; files
//! are copied in through a loop mount where the kernel has `udf`). Where root can loop-mount the
//! image, each answer is also compared with what the kernel's own filesystem shows, which is what
//! the mount fallback would read.
//!
//! Tools missing: a SKIP line (`apt-get install -y genisoimage udftools python3-pycdlib`).

#![allow(clippy::unwrap_used)] // a test binary: helpers outside #[test] fns may unwrap too

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use wala::base::cmd::find_program;
use wala::host::dvd::medium::{self, Device, Image, MediumError, SECTOR};
use wala::host::dvd::{iso9660, udf};

/// Bytes no tool would invent: a small OVF, and a 70 KiB one (35 blocks) of pseudo-random bytes.
fn small_ovf() -> Vec<u8> {
    b"<?xml version=\"1.0\" encoding=\"utf-8\"?><Environment xmlns=\"http://schemas.dmtf.org/ovf/environment/1\"/>\n"
        .to_vec()
}

fn large_ovf() -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..70 * 1024 + 123)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn have(tool: &str, package: &str) -> bool {
    let found = find_program(tool).is_some();
    if !found {
        common::skip(&format!("dvd_reader: {tool} is missing (apt-get install -y {package})"));
    }
    found
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A directory holding `files`, and the image `tool args.. -o IMAGE DIR` makes of it.
fn iso_image(tool: &str, args: &[&str], files: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for (name, bytes) in files {
        std::fs::write(src.join(name), bytes).unwrap();
    }
    let img = dir.path().join("dvd.iso");
    let mut all = vec!["-quiet"];
    all.extend_from_slice(args);
    all.extend(["-o", img.to_str().unwrap(), src.to_str().unwrap()]);
    run(tool, &all);
    (dir, img)
}

fn read_image(img: &Path) -> Result<Option<Vec<u8>>, MediumError> {
    medium::read_ovf(&Device::open(img)?)
}

/// What the kernel shows as `ovf-env.xml` on `img` mounted read-only as `fstype`: `None` (with a
/// SKIP line) when it cannot be mounted here (not root, no such filesystem in the kernel).
fn kernel_reads(img: &Path, fstype: &str) -> Option<Option<Vec<u8>>> {
    if !is_root() {
        common::skip(&format!("dvd_reader: comparison with the kernel's {fstype}: needs root"));
        return None;
    }
    let mnt = tempfile::tempdir().unwrap();
    let out = Command::new("mount")
        .args(["-o", "loop,ro", "-t", fstype])
        .arg(img)
        .arg(mnt.path())
        .output()
        .unwrap();
    if !out.status.success() {
        common::skip(&format!(
            "dvd_reader: comparison with the kernel's {fstype}: mount failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        return None;
    }
    let got = std::fs::read(mnt.path().join("ovf-env.xml")).ok();
    run("umount", &[mnt.path().to_str().unwrap()]);
    Some(got)
}

/// Read `img`, expect `want`, and, where the kernel can mount it as `fstype`, expect the kernel
/// to agree.
fn check(img: &Path, fstype: &str, want: Option<&[u8]>, what: &str) {
    let got = read_image(img).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got.as_deref(), want, "{what}");
    if let Some(kernel) = kernel_reads(img, fstype) {
        assert_eq!(got, kernel, "{what}: the kernel's {fstype} disagrees");
    }
}

#[test]
fn iso9660_images_give_the_bytes_written_under_the_names_the_kernel_shows() {
    if !have("genisoimage", "genisoimage") {
        return;
    }
    let (small, large) = (small_ovf(), large_ovf());
    // Relaxed names keep the `-`: `OVF-ENV.XML;1`, a 35-block file.
    let (_d, img) = iso_image("genisoimage", &["-relaxed-filenames"], &[("ovf-env.xml", &large)]);
    check(&img, "iso9660", Some(&large), "plain ISO 9660, OVF-ENV.XML;1");
    // Level 1 makes it `OVF_ENV.XML;1`: no ovf-env.xml, for the kernel either.
    let (_d, img) = iso_image("genisoimage", &[], &[("ovf-env.xml", &small)]);
    check(&img, "iso9660", None, "plain ISO 9660 level 1, OVF_ENV.XML;1");
    let (_d, img) =
        iso_image("genisoimage", &["-iso-level", "3"], &[("ovf-env.xml", &small), ("other.txt", b"x")]);
    check(&img, "iso9660", None, "ISO 9660 level 3 (`-` mapped to `_`)");
    // Joliet: names as written, matched without regard to case.
    let (_d, img) = iso_image("genisoimage", &["-J"], &[("ovf-env.xml", &large), ("a.txt", b"a")]);
    check(&img, "iso9660", Some(&large), "Joliet");
    let (_d, img) = iso_image("genisoimage", &["-J"], &[("OVF-ENV.XML", &small)]);
    check(&img, "iso9660", Some(&small), "Joliet, OVF-ENV.XML");
    let (_d, img) = iso_image("genisoimage", &["-J"], &[("ovf-env.xml.bak", &small)]);
    check(&img, "iso9660", None, "Joliet, no ovf-env.xml");
    // Rock Ridge: NM names, exact (and chosen over Joliet, as the kernel does).
    let (_d, img) = iso_image("genisoimage", &["-R"], &[("ovf-env.xml", &large)]);
    check(&img, "iso9660", Some(&large), "Rock Ridge");
    let (_d, img) = iso_image("genisoimage", &["-R", "-J"], &[("ovf-env.xml", &small)]);
    check(&img, "iso9660", Some(&small), "Rock Ridge and Joliet");
    // A name too long for its record continues in a SUSP continuation area (CE), which is
    // followed on the way to ovf-env.xml.
    let long = "a".repeat(200);
    let (_d, img) = iso_image("genisoimage", &["-R"], &[(&long, b"x"), ("ovf-env.xml", &small)]);
    let bytes = std::fs::read(&img).unwrap();
    assert!(bytes.windows(4).any(|w| w == b"CE\x1c\x01"), "genisoimage wrote no CE entry");
    check(&img, "iso9660", Some(&small), "Rock Ridge, a 200-character name before it");
    let (_d, img) = iso_image("genisoimage", &["-R"], &[("OVF-ENV.XML", &small)]);
    check(&img, "iso9660", None, "Rock Ridge, OVF-ENV.XML (Rock Ridge names are exact)");
}

#[test]
fn udf_bridge_images_are_read_as_udf() {
    if !have("genisoimage", "genisoimage") {
        return;
    }
    let (small, large) = (small_ovf(), large_ovf());
    for args in [&["-udf"][..], &["-udf", "-J", "-r"][..]] {
        let (_d, img) = iso_image("genisoimage", args, &[("ovf-env.xml", &large), ("b.txt", b"b")]);
        let what = format!("genisoimage {args:?}");
        check(&img, "udf", Some(&large), &what);
        // Both halves of the bridge, each on its own.
        let bytes = std::fs::read(&img).unwrap();
        assert_eq!(udf::read_ovf(&Image(&bytes)).unwrap().as_deref(), Some(&large[..]), "{what}: UDF");
        let iso = iso9660::read_ovf(&Image(&bytes)).unwrap();
        if args.len() > 1 {
            assert_eq!(iso.as_deref(), Some(&large[..]), "{what}: ISO 9660");
        }
    }
    // UDF names are exact, as in the kernel.
    let (_d, img) = iso_image("genisoimage", &["-udf"], &[("OVF-ENV.XML", &small)]);
    check(&img, "udf", None, "genisoimage -udf, OVF-ENV.XML");
    let (_d, img) = iso_image("genisoimage", &["-udf"], &[("ovf.xml", &small)]);
    check(&img, "udf", None, "genisoimage -udf, no ovf-env.xml");

    if have("pycdlib-genisoimage", "python3-pycdlib") {
        let (_d, img) =
            iso_image("pycdlib-genisoimage", &["-udf"], &[("ovf-env.xml", &large), ("c.txt", b"c")]);
        check(&img, "udf", Some(&large), "pycdlib-genisoimage -udf");
        let bytes = std::fs::read(&img).unwrap();
        assert_eq!(udf::read_ovf(&Image(&bytes)).unwrap().as_deref(), Some(&large[..]), "pycdlib: UDF");
        let (_d, img) = iso_image("pycdlib-genisoimage", &["-udf"], &[("ovf-env.xml", &small)]);
        check(&img, "udf", Some(&small), "pycdlib-genisoimage -udf, small");
    }
}

/// A fresh UDF volume made by `mkudffs args..` on a `blocks`-block image.
fn mkudffs(dir: &Path, args: &[&str], blocks: u64) -> PathBuf {
    let img = dir.join(format!("udf{}.img", args.join("").replace(['-', '=', '.'], "")));
    std::fs::File::create(&img).unwrap().set_len(blocks * SECTOR as u64).unwrap();
    let mut all = vec!["--blocksize=2048"];
    all.extend_from_slice(args);
    all.push(img.to_str().unwrap());
    run("mkudffs", &all);
    img
}

#[test]
fn mkudffs_volumes_are_read_or_left_to_the_kernel() {
    if !have("mkudffs", "udftools") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Type 1 partitions, each revision, File Entries and Extended File Entries, each kind of
    // allocation descriptor for the root: an empty root directory is read and has no ovf-env.xml.
    for args in [
        &["--media-type=hd"][..],
        &["--media-type=hd", "--udfrev=1.02"],
        &["--media-type=hd", "--udfrev=1.50"],
        &["--media-type=hd", "--udfrev=2.00"],
        &["--media-type=hd", "--noefe"],
        &["--media-type=hd", "--ad=short"],
        &["--media-type=hd", "--ad=long"],
        &["--media-type=dvd"],
    ] {
        let img = mkudffs(dir.path(), args, 2048);
        assert_eq!(
            read_image(&img).unwrap_or_else(|e| panic!("mkudffs {args:?}: {e}")),
            None,
            "mkudffs {args:?}"
        );
    }
    // Sparable (CD-RW) and virtual (CD-R, and BD-R in UDF 2.50, VAT) partitions: left to the
    // kernel. (mkudffs 2.3 makes no UDF 2.50 metadata partition: that type 2 map takes the same path.)
    for (args, kind) in [
        (&["--media-type=bdr"][..], "Virtual"),
        (&["--media-type=cdrw"], "Sparable"),
        (&["--media-type=cdr"], "Virtual"),
    ] {
        let img = mkudffs(dir.path(), args, 4096);
        match read_image(&img) {
            Err(MediumError::Unsupported(why)) => {
                assert!(why.contains("type 2 map") && why.contains(kind), "mkudffs {args:?}: {why}")
            }
            other => panic!("mkudffs {args:?}: {other:?}"),
        }
    }
}

#[test]
fn files_copied_into_mkudffs_volumes_through_the_kernel() {
    if !have("mkudffs", "udftools") {
        return;
    }
    if !is_root() {
        common::skip("dvd_reader: files in mkudffs volumes: needs root (loop mount)");
        return;
    }
    let (small, large) = (small_ovf(), large_ovf());
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // The kernel embeds a small file in its entry and gives a large one short or long extents.
    for (mk, opts) in [
        (&["--media-type=hd"][..], "loop"),
        (&["--media-type=hd", "--noefe", "--udfrev=1.02"], "loop"),
        (&["--media-type=hd", "--ad=long"], "loop,longad"),
        (&["--media-type=hd"], "loop,noadinicb,shortad"),
    ] {
        let img = mkudffs(dir.path(), mk, 4096);
        let out = Command::new("mount").args(["-t", "udf", "-o", opts]).arg(&img).arg(&mnt).output().unwrap();
        if !out.status.success() {
            common::skip(&format!(
                "dvd_reader: files in mkudffs volumes: cannot mount udf here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return;
        }
        let write = || -> std::io::Result<()> {
            std::fs::write(mnt.join("first.txt"), b"1")?;
            std::fs::write(mnt.join("ovf-env.xml"), &large)?;
            std::fs::write(mnt.join("small.xml"), &small)?;
            std::fs::write(mnt.join("OVF-ENV.XML"), &small)
        };
        let written = write();
        run("umount", &[mnt.to_str().unwrap()]);
        written.unwrap();
        check(&img, "udf", Some(&large), &format!("mkudffs {mk:?}, mount -o {opts}"));
    }
}

#[test]
fn a_missing_file_is_no_error_and_a_vfat_image_is_not_recognised() {
    if !have("genisoimage", "genisoimage") || !have("mkfs.vfat", "dosfstools") {
        return;
    }
    for args in [&[][..], &["-J"], &["-R"], &["-udf"]] {
        let (_d, img) = iso_image("genisoimage", args, &[("readme.txt", b"not here")]);
        assert_eq!(read_image(&img).unwrap(), None, "genisoimage {args:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("vfat.img");
    std::fs::File::create(&img).unwrap().set_len(8 << 20).unwrap();
    run("mkfs.vfat", &[img.to_str().unwrap()]);
    assert!(matches!(read_image(&img), Err(MediumError::Unrecognised)), "{:?}", read_image(&img));
}

/// Every way an image can be cut short gives the whole file or an error, never other bytes and
/// never a panic.
fn truncations_fail_cleanly(bytes: &[u8], want: &[u8], what: &str) {
    let sectors = bytes.len() / SECTOR;
    let mut errors = 0;
    for keep in (0..sectors).chain([sectors]) {
        match medium::read_ovf(&Image(&bytes[..keep * SECTOR])) {
            Ok(Some(got)) => assert!(got == want, "{what}: cut to {keep} sectors: other bytes"),
            Ok(None) => panic!("{what}: cut to {keep} sectors: read as a volume without the file"),
            Err(_) => errors += 1,
        }
        // Part of a sector is never read.
        let _ = medium::read_ovf(&Image(&bytes[..(keep * SECTOR).saturating_sub(1)]));
    }
    assert!(errors > 0, "{what}: no cut failed");
}

#[test]
fn truncated_images_give_errors_not_panics() {
    if !have("genisoimage", "genisoimage") {
        return;
    }
    let large = large_ovf();
    for args in [&["-relaxed-filenames"][..], &["-J"], &["-R"], &["-udf"]] {
        let (_d, img) = iso_image("genisoimage", args, &[("ovf-env.xml", &large)]);
        let bytes = std::fs::read(&img).unwrap();
        truncations_fail_cleanly(&bytes, &large, &format!("genisoimage {args:?}"));
        // Cut inside the file's data (found by its first bytes): the error says where.
        let first = bytes.chunks_exact(SECTOR).position(|s| s[..64] == large[..64]).expect("the data");
        let cut = &bytes[..(first + 2) * SECTOR];
        match medium::read_ovf(&Image(cut)) {
            Err(e) => assert!(e.to_string().contains("lies beyond the end of the medium"), "{args:?}: {e}"),
            Ok(got) => panic!("{args:?}: cut in the data, read {:?} bytes", got.map(|b| b.len())),
        }
    }
}

/// The sectors holding a UDF descriptor with tag `id` and a valid tag checksum.
fn tagged_sectors(bytes: &[u8], id: u16) -> Vec<usize> {
    bytes
        .chunks_exact(SECTOR)
        .enumerate()
        .filter(|(_, s)| {
            let sum =
                s[..16].iter().enumerate().filter(|&(i, _)| i != 4).fold(0u8, |a, (_, &b)| a.wrapping_add(b));
            u16::from_le_bytes([s[0], s[1]]) == id && sum == s[4] && matches!(s[2], 2 | 3)
        })
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn corrupted_udf_descriptors_are_named_in_errors() {
    if !have("genisoimage", "genisoimage") {
        return;
    }
    let large = large_ovf();
    let (_d, img) = iso_image("genisoimage", &["-udf"], &[("ovf-env.xml", &large)]);
    let bytes = std::fs::read(&img).unwrap();
    // The file's entry: the File Entry whose information length is the file's.
    let fe = tagged_sectors(&bytes, 261)
        .into_iter()
        .find(|&s| {
            u64::from_le_bytes(bytes[s * SECTOR + 56..][..8].try_into().unwrap()) == large.len() as u64
        })
        .expect("the File Entry of ovf-env.xml");
    let mut bad = bytes.clone();
    bad[fe * SECTOR + 6] ^= 0x55; // the tag serial number: only the checksum covers it
    assert_eq!(
        udf::read_ovf(&Image(&bad)).expect_err("bad checksum").to_string(),
        format!("UDF: File Entry of ovf-env.xml at sector {fe}: bad tag checksum")
    );
    let mut bad = bytes.clone();
    bad[fe * SECTOR + 100] ^= 0x55; // inside the entry: the CRC covers it
    assert_eq!(
        udf::read_ovf(&Image(&bad)).expect_err("bad CRC").to_string(),
        format!("UDF: File Entry of ovf-env.xml at sector {fe}: bad descriptor CRC")
    );
    // Through the bridge's top-level reader too: an inconsistent UDF is not read as ISO 9660.
    assert!(matches!(medium::read_ovf(&Image(&bad)), Err(MediumError::Invalid(_))));

    // Every other descriptor: a corrupt copy is an error naming the descriptor, or is passed over
    // for a good copy (the anchor at N-1, the Reserve sequence); never wrong bytes.
    for (id, name) in [
        (2u16, "Anchor"),
        (5, "Volume Descriptor Sequence"),
        (6, "Volume Descriptor Sequence"),
        (256, "File Set"),
        (257, "File Identifier"),
        (261, "root directory"),
    ] {
        for s in tagged_sectors(&bytes, id) {
            if s == fe {
                continue;
            }
            let mut bad = bytes.clone();
            bad[s * SECTOR + 6] ^= 0x55;
            match udf::read_ovf(&Image(&bad)) {
                Ok(got) => assert_eq!(got.as_deref(), Some(&large[..]), "tag {id} at sector {s}"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        e.contains(name) && e.contains("bad tag checksum"),
                        "tag {id} at sector {s}: {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_ovf_over_its_limit_is_refused_on_each_filesystem() {
    if !have("genisoimage", "genisoimage") {
        return;
    }
    let big = vec![b'x'; 1024 * 1024 + 1];
    for args in [&["-relaxed-filenames"][..], &["-J"], &["-R"], &["-udf"]] {
        let (_d, img) = iso_image("genisoimage", args, &[("ovf-env.xml", &big)]);
        match read_image(&img) {
            Err(e @ MediumError::TooLarge(_)) => {
                assert_eq!(e.to_string(), "the ovf-env.xml is larger than its limit of 1048576 bytes")
            }
            other => panic!("genisoimage {args:?}: {:?}", other.map(|b| b.map(|b| b.len()))),
        }
    }
}
