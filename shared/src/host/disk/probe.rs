//! A superblock probe: what is on a block device, read from its bytes (no libblkid).
//!
//! [`probe_bytes`] looks at a buffer holding the start of a device (at least [`PROBE_LEN`] bytes
//! for every signature to be seen; shorter buffers are fine, signatures beyond the end are simply
//! not found) and reports a partition table with its entries, a filesystem, all zeros, or
//! "unknown". [`probe_path`] reads that buffer from a device node or image file, at an offset so
//! a partition can be probed through its parent disk.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::base::files::FileError;

/// How many bytes of a device the probe looks at: 1 MiB, which covers every signature below
/// (btrfs at 64 KiB, ISO9660/UDF descriptors at 32 KiB, swap headers up to a 64 KiB page).
pub const PROBE_LEN: usize = 1024 * 1024;

/// GPT partition type of a "Microsoft basic data" partition (NTFS, FAT, exFAT).
pub const GPT_MS_BASIC_DATA: &str = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7";
/// GPT partition type of a "Linux filesystem" partition.
pub const GPT_LINUX_FS: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
/// MBR partition type of HPFS/NTFS/exFAT.
pub const MBR_NTFS: u8 = 0x07;

/// What the probe found at the start of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The whole probed range is zero bytes: a never-written disk.
    Empty,
    /// A DOS/MBR partition table.
    Mbr(Vec<MbrPartition>),
    /// A GUID partition table.
    Gpt(Vec<GptPartition>),
    /// A filesystem or other known content directly on the device.
    Fs(FsKind),
    /// Data nothing here recognises.
    Unknown,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Empty => f.write_str("nothing (all zeros)"),
            Probe::Mbr(parts) => {
                write!(f, "an MBR partition table with {} partition(s)", parts.len())?;
                for p in parts {
                    write!(f, "; #{} type 0x{:02x}", p.index, p.kind)?;
                }
                Ok(())
            }
            Probe::Gpt(parts) => {
                write!(f, "a GPT partition table with {} partition(s)", parts.len())?;
                for p in parts {
                    write!(f, "; #{} type {}", p.index, p.type_guid)?;
                }
                Ok(())
            }
            Probe::Fs(kind) => write!(f, "a {kind} filesystem"),
            Probe::Unknown => f.write_str("unrecognised data"),
        }
    }
}

/// One used entry of an MBR partition table (primary partitions only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbrPartition {
    /// 1-based slot number, as in `sdb1`.
    pub index: u32,
    pub bootable: bool,
    /// The partition type byte (0x07 NTFS, 0x83 Linux, 0x82 Linux swap, 0xee GPT protective...).
    pub kind: u8,
    pub start_lba: u64,
    pub sectors: u64,
}

/// One used entry of a GPT partition array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// 1-based slot number in the entry array.
    pub index: u32,
    /// Partition type GUID, lower case, in its usual text form.
    pub type_guid: String,
    pub start_lba: u64,
    pub end_lba: u64,
    pub name: String,
}

/// A partition's position, whichever table it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub index: u32,
    pub start_byte: u64,
    pub len_bytes: u64,
}

impl MbrPartition {
    pub fn extent(&self) -> Extent {
        Extent { index: self.index, start_byte: self.start_lba * 512, len_bytes: self.sectors * 512 }
    }
}

impl GptPartition {
    /// The partition's bytes, for a table found with `sector` byte logical blocks. The LBAs are
    /// 64-bit values from the disk: a position past `u64::MAX` bytes saturates (nothing can be
    /// read there) instead of wrapping round to a wrong place.
    pub fn extent(&self, sector: u64) -> Extent {
        let len = self.end_lba.saturating_sub(self.start_lba).saturating_add(1);
        Extent {
            index: self.index,
            start_byte: self.start_lba.saturating_mul(sector),
            len_bytes: len.saturating_mul(sector),
        }
    }
}

/// A filesystem (or filesystem-like content) the probe recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Btrfs,
    Ntfs,
    Vfat,
    Swap,
    Iso9660,
    Udf,
    Luks,
}

impl FsKind {
    /// The name `mount -t` and `mkfs.<name>` use.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Ntfs => "ntfs",
            FsKind::Vfat => "vfat",
            FsKind::Swap => "swap",
            FsKind::Iso9660 => "iso9660",
            FsKind::Udf => "udf",
            FsKind::Luks => "crypto_LUKS",
        }
    }
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Probe a device node or image file, starting `offset` bytes in.
pub fn probe_path(path: &Path, offset: u64) -> Result<Probe, FileError> {
    read_head(path, offset, PROBE_LEN).map(|buf| probe_bytes(&buf))
}

/// Read up to `len` bytes of `path` from `offset` (fewer when the device is shorter).
///
/// A whole disk and its partitions have separate page caches, so data written through
/// `/dev/sdb1` may not show in a cached read of `/dev/sdb`: the cached range is dropped first
/// (`POSIX_FADV_DONTNEED`), so that the re-check before a format sees what is on the disk now.
pub fn read_head(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, FileError> {
    let mut file = File::open(path).map_err(|e| FileError::new("open", path, e))?;
    drop_cache(&file, offset, len);
    file.seek(SeekFrom::Start(offset)).map_err(|e| FileError::new("seek", path, e))?;
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut buf).map_err(|e| FileError::new("read", path, e))?;
    Ok(buf)
}

/// Identify the content of a device from its first bytes.
pub fn probe_bytes(buf: &[u8]) -> Probe {
    if buf.iter().all(|&b| b == 0) {
        return Probe::Empty;
    }
    // Signatures in sector 0 that also carry the 0x55aa boot-sector mark go before the tables.
    if let Some(kind) = probe_boot_sector_fs(buf) {
        return Probe::Fs(kind);
    }
    if let Some(parts) = parse_gpt(buf) {
        return Probe::Gpt(parts.1);
    }
    if let Some(parts) = parse_mbr(buf) {
        return Probe::Mbr(parts);
    }
    probe_superblock_fs(buf).map_or(Probe::Unknown, Probe::Fs)
}

/// The logical sector size a GPT was found with (512 or 4096), for [`GptPartition::extent`].
pub fn gpt_sector_size(buf: &[u8]) -> Option<u64> {
    parse_gpt(buf).map(|(sector, _)| sector)
}

fn drop_cache(file: &File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else { return };
    // SAFETY: posix_fadvise only takes a descriptor we own and two integers. It is advice: a
    // failure (e.g. on a pipe) changes nothing, so its result is ignored.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), off, len, libc::POSIX_FADV_DONTNEED);
    }
}

fn at(buf: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    buf.get(off..off.checked_add(len)?)
}

fn has(buf: &[u8], off: usize, magic: &[u8]) -> bool {
    at(buf, off, magic.len()) == Some(magic)
}

fn le16(buf: &[u8], off: usize) -> Option<u16> {
    at(buf, off, 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn le32(buf: &[u8], off: usize) -> Option<u32> {
    at(buf, off, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn le64(buf: &[u8], off: usize) -> Option<u64> {
    let b = at(buf, off, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

fn probe_boot_sector_fs(buf: &[u8]) -> Option<FsKind> {
    if has(buf, 0, b"LUKS\xba\xbe") {
        return Some(FsKind::Luks);
    }
    if has(buf, 0, b"XFSB") {
        return Some(FsKind::Xfs);
    }
    if has(buf, 3, b"NTFS    ") {
        return Some(FsKind::Ntfs);
    }
    let jump = buf.first().is_some_and(|&b| b == 0xeb || b == 0xe9);
    let fat_label = has(buf, 0x36, b"FAT12") || has(buf, 0x36, b"FAT16") || has(buf, 0x52, b"FAT32");
    (jump && fat_label && has(buf, 510, &[0x55, 0xaa])).then_some(FsKind::Vfat)
}

fn probe_superblock_fs(buf: &[u8]) -> Option<FsKind> {
    if let Some(kind) = probe_ext(buf) {
        return Some(kind);
    }
    if has(buf, 0x10040, b"_BHRfS_M") {
        return Some(FsKind::Btrfs);
    }
    for page in [4096usize, 8192, 16384, 65536] {
        if has(buf, page - 10, b"SWAPSPACE2") || has(buf, page - 10, b"SWAP-SPACE") {
            return Some(FsKind::Swap);
        }
    }
    probe_optical(buf)
}

const EXT_SB: usize = 1024;
const EXT3_COMPAT_HAS_JOURNAL: u32 = 0x4;
const EXT4_INCOMPAT_ONLY: u32 = 0x40 | 0x80 | 0x200 | 0x400 | 0x1000 | 0x8000 | 0x10000;
const EXT4_RO_COMPAT_ONLY: u32 = 0x8 | 0x10 | 0x20 | 0x40 | 0x200 | 0x400;

/// ext2/3/4 share a superblock; the feature flags say which one mkfs made.
fn probe_ext(buf: &[u8]) -> Option<FsKind> {
    if le16(buf, EXT_SB + 0x38)? != 0xef53 {
        return None;
    }
    let compat = le32(buf, EXT_SB + 0x5c)?;
    let incompat = le32(buf, EXT_SB + 0x60)?;
    let ro_compat = le32(buf, EXT_SB + 0x64)?;
    if incompat & EXT4_INCOMPAT_ONLY != 0 || ro_compat & EXT4_RO_COMPAT_ONLY != 0 {
        Some(FsKind::Ext4)
    } else if compat & EXT3_COMPAT_HAS_JOURNAL != 0 {
        Some(FsKind::Ext3)
    } else {
        Some(FsKind::Ext2)
    }
}

/// ISO9660 and UDF volume recognition sequences start at 32 KiB, one descriptor per 2 KiB.
fn probe_optical(buf: &[u8]) -> Option<FsKind> {
    let mut iso = false;
    for n in 0..16usize {
        let off = 0x8000 + n * 2048 + 1;
        if has(buf, off, b"NSR02") || has(buf, off, b"NSR03") {
            return Some(FsKind::Udf);
        }
        iso |= has(buf, off, b"CD001");
    }
    iso.then_some(FsKind::Iso9660)
}

fn parse_mbr(buf: &[u8]) -> Option<Vec<MbrPartition>> {
    if !has(buf, 510, &[0x55, 0xaa]) {
        return None;
    }
    let mut parts = Vec::new();
    for slot in 0..4u32 {
        let e = 446 + slot as usize * 16;
        let status = *buf.get(e)?;
        if status != 0 && status != 0x80 {
            return None;
        }
        let kind = *buf.get(e + 4)?;
        let start_lba = u64::from(le32(buf, e + 8)?);
        let sectors = u64::from(le32(buf, e + 12)?);
        if kind == 0 || sectors == 0 {
            continue;
        }
        if start_lba == 0 {
            return None;
        }
        parts.push(MbrPartition { index: slot + 1, bootable: status == 0x80, kind, start_lba, sectors });
    }
    // A boot sector with the mark but no partitions and no table is not an MBR we can use; an
    // MBR with all slots empty (a freshly labelled disk) still is one.
    Some(parts)
}

fn parse_gpt(buf: &[u8]) -> Option<(u64, Vec<GptPartition>)> {
    for sector in [512u64, 4096] {
        let hdr = sector as usize;
        if has(buf, hdr, b"EFI PART") {
            return parse_gpt_entries(buf, hdr, sector).map(|p| (sector, p));
        }
    }
    None
}

fn parse_gpt_entries(buf: &[u8], hdr: usize, sector: u64) -> Option<Vec<GptPartition>> {
    let entries_lba = le64(buf, hdr + 72)?;
    let count = le32(buf, hdr + 80)?.min(256);
    let size = le32(buf, hdr + 84)? as usize;
    if size < 128 {
        return None;
    }
    let mut parts = Vec::new();
    // An entry array outside the buffer (or past any real disk) reads as no entries.
    let base = entries_lba.checked_mul(sector).and_then(|b| usize::try_from(b).ok()).unwrap_or(usize::MAX);
    for i in 0..count as usize {
        let Some(e) = base.checked_add(i * size).and_then(|o| at(buf, o, 128)) else { break };
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        parts.push(GptPartition {
            index: i as u32 + 1,
            type_guid: guid_text(&e[..16]),
            start_lba: le64(e, 32)?,
            end_lba: le64(e, 40)?,
            name: utf16_name(&e[56..128]),
        });
    }
    Some(parts)
}

/// A mixed-endian GUID as GPT stores it, in its text form.
fn guid_text(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

fn utf16_name(b: &[u8]) -> String {
    let units: Vec<u16> =
        b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn mbr(entries: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        for (i, &(kind, start, len)) in entries.iter().enumerate() {
            let e = 446 + i * 16;
            b[e + 4] = kind;
            b[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
            b[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
        }
        b[510] = 0x55;
        b[511] = 0xaa;
        b
    }

    fn guid_bytes(text: &str) -> [u8; 16] {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        let mut raw = [0u8; 16];
        for (i, r) in raw.iter_mut().enumerate() {
            *r = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap();
        }
        let mut out = raw;
        out[..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
        out[4..6].copy_from_slice(&[raw[5], raw[4]]);
        out[6..8].copy_from_slice(&[raw[7], raw[6]]);
        out
    }

    pub(crate) fn gpt(types: &[&str]) -> Vec<u8> {
        let mut b = mbr(&[(0xee, 1, 0xffff)]);
        b.resize(64 * 1024, 0);
        b[512..520].copy_from_slice(b"EFI PART");
        b[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        b[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        b[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            let e = 1024 + i * 128;
            b[e..e + 16].copy_from_slice(&guid_bytes(t));
            b[e + 32..e + 40].copy_from_slice(&(2048u64 * (i as u64 + 1)).to_le_bytes());
            b[e + 40..e + 48].copy_from_slice(&(2048u64 * (i as u64 + 2) - 1).to_le_bytes());
            b[e + 56] = b'd';
        }
        b
    }

    fn ext(compat: u32, incompat: u32, ro: u32) -> Vec<u8> {
        let mut b = vec![0u8; 8192];
        b[1024 + 0x38..1024 + 0x3a].copy_from_slice(&0xef53u16.to_le_bytes());
        b[1024 + 0x5c..1024 + 0x60].copy_from_slice(&compat.to_le_bytes());
        b[1024 + 0x60..1024 + 0x64].copy_from_slice(&incompat.to_le_bytes());
        b[1024 + 0x64..1024 + 0x68].copy_from_slice(&ro.to_le_bytes());
        b
    }

    fn with(len: usize, off: usize, magic: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[off..off + magic.len()].copy_from_slice(magic);
        b
    }

    #[test]
    fn zeros_and_empty_buffers_are_empty() {
        assert_eq!(probe_bytes(&[]), Probe::Empty);
        assert_eq!(probe_bytes(&vec![0u8; PROBE_LEN]), Probe::Empty);
        assert_eq!(probe_bytes(&with(4096, 2000, b"x")), Probe::Unknown);
    }

    #[test]
    fn mbr_entries_and_types() {
        let p = probe_bytes(&mbr(&[(MBR_NTFS, 2048, 100_000), (0x83, 102_048, 50)]));
        let Probe::Mbr(parts) = p else { panic!("{p:?}") };
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].index, parts[0].kind, parts[0].start_lba), (1, 0x07, 2048));
        assert_eq!(parts[0].extent().start_byte, 1024 * 1024);
        assert_eq!((parts[1].index, parts[1].kind, parts[1].sectors), (2, 0x83, 50));
    }

    #[test]
    fn mbr_with_bad_status_or_zero_start_is_not_a_table() {
        let mut b = mbr(&[(0x83, 2048, 10)]);
        b[446] = 0x12;
        assert_eq!(probe_bytes(&b), Probe::Unknown);
        assert_eq!(probe_bytes(&mbr(&[(0x83, 0, 10)])), Probe::Unknown);
    }

    #[test]
    fn gpt_entries_and_guid_text() {
        let b = gpt(&[GPT_MS_BASIC_DATA, GPT_LINUX_FS]);
        let Probe::Gpt(parts) = probe_bytes(&b) else { panic!() };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].type_guid, GPT_MS_BASIC_DATA);
        assert_eq!(parts[1].type_guid, GPT_LINUX_FS);
        assert_eq!(
            parts[0].extent(512),
            Extent { index: 1, start_byte: 1024 * 1024, len_bytes: 1024 * 1024 }
        );
        assert_eq!(parts[0].name, "d");
        assert_eq!(gpt_sector_size(&b), Some(512));
    }

    #[test]
    fn truncated_gpt_does_not_panic() {
        let b = gpt(&[GPT_LINUX_FS]);
        for len in [0, 511, 520, 600, 1030, 1100, 2000] {
            let _ = probe_bytes(&b[..len]);
        }
        let mut huge = b.clone();
        huge[512 + 72..512 + 80].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(probe_bytes(&huge), Probe::Gpt(vec![]));
    }

    #[test]
    fn ext_generations_by_feature_flags() {
        assert_eq!(probe_bytes(&ext(0, 0x2, 0x1)), Probe::Fs(FsKind::Ext2));
        assert_eq!(probe_bytes(&ext(0x4, 0x2, 0x1)), Probe::Fs(FsKind::Ext3));
        assert_eq!(probe_bytes(&ext(0x4, 0x2 | 0x40, 0x1)), Probe::Fs(FsKind::Ext4));
        assert_eq!(probe_bytes(&ext(0x4, 0x2, 0x400)), Probe::Fs(FsKind::Ext4));
    }

    #[test]
    fn other_filesystems() {
        assert_eq!(probe_bytes(&with(4096, 0, b"XFSB")), Probe::Fs(FsKind::Xfs));
        assert_eq!(probe_bytes(&with(0x20000, 0x10040, b"_BHRfS_M")), Probe::Fs(FsKind::Btrfs));
        assert_eq!(probe_bytes(&with(4096, 4086, b"SWAPSPACE2")), Probe::Fs(FsKind::Swap));
        assert_eq!(probe_bytes(&with(65536, 65526, b"SWAPSPACE2")), Probe::Fs(FsKind::Swap));
        assert_eq!(probe_bytes(&with(0x9000, 0x8001, b"CD001")), Probe::Fs(FsKind::Iso9660));
        let mut udf = with(0x10000, 0x8001, b"BEA01");
        udf[0x8801..0x8806].copy_from_slice(b"NSR02");
        assert_eq!(probe_bytes(&udf), Probe::Fs(FsKind::Udf));
        assert_eq!(probe_bytes(&with(4096, 0, b"LUKS\xba\xbe")), Probe::Fs(FsKind::Luks));
    }

    #[test]
    fn boot_sector_filesystems_win_over_the_mbr_mark() {
        let mut ntfs = mbr(&[]);
        ntfs[0] = 0xeb;
        ntfs[3..11].copy_from_slice(b"NTFS    ");
        assert_eq!(probe_bytes(&ntfs), Probe::Fs(FsKind::Ntfs));
        let mut fat = mbr(&[]);
        fat[0] = 0xeb;
        fat[0x52..0x57].copy_from_slice(b"FAT32");
        assert_eq!(probe_bytes(&fat), Probe::Fs(FsKind::Vfat));
        fat[0] = 0;
        assert_eq!(probe_bytes(&fat), Probe::Mbr(vec![]), "no jump instruction: only a label");
    }

    #[test]
    fn arbitrary_and_mutated_input_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in [0usize, 1, 3, 446, 512, 600, 1100, 4096, 0x8802, 0x10050] {
            let buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = probe_bytes(&buf);
        }
        let base = gpt(&[GPT_MS_BASIC_DATA]);
        for _ in 0..2000 {
            let mut b = base.clone();
            for _ in 0..4 {
                let i = (next() as usize) % 1200;
                b[i] = next() as u8;
            }
            let _ = probe_bytes(&b);
        }
    }

    #[test]
    fn probe_path_reads_at_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let mut b = mbr(&[(0x83, 8, 16)]);
        b.resize(4096 + 8192, 0);
        b[4096..].copy_from_slice(&ext(0x4, 0x40, 0));
        std::fs::write(&img, &b).unwrap();
        assert!(matches!(probe_path(&img, 0).unwrap(), Probe::Mbr(_)));
        assert_eq!(probe_path(&img, 4096).unwrap(), Probe::Fs(FsKind::Ext4));
        assert!(probe_path(&dir.path().join("missing"), 0).is_err());
    }
}
