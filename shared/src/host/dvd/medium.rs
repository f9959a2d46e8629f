//! Reading `ovf-env.xml` straight from the DVD's block device, without mounting it.
//!
//! The medium is read in whole 2048-byte sectors with positioned reads. Its volume recognition
//! area (from sector 16) says what it holds: a UDF volume (an `NSR02`/`NSR03` descriptor, read by
//! [`super::udf`]), an ISO 9660 one (`CD001`, read by [`super::iso9660`]), or neither. A bridge
//! image holds both and is read as UDF, the order of the `mount -t udf,iso9660` it replaces.
//!
//! The readers look only at the root directory and are strict: every offset and length is checked
//! against the medium, every count and size is capped, and anything inconsistent is an
//! [`MediumError::Invalid`] naming the structure and where it is. What they do not read
//! (multi-extent files, UDF virtual, sparable or metadata partitions, block sizes other than 2048
//! bytes) is an [`MediumError::Unsupported`]; the caller then leaves the medium to the kernel
//! (mount), as it does for a medium with no recognition sequence at all.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::base::limits::TooLarge;

/// The sector (and logical block) size of CD and DVD media, and the only one read directly.
pub const SECTOR: usize = 2048;
/// Where the volume recognition sequence starts.
pub(super) const FIRST_VOLUME_DESCRIPTOR: u64 = 16;
/// Volume descriptors looked at before giving up on finding the end of the sequence.
pub(super) const MAX_VOLUME_DESCRIPTORS: u64 = 64;
/// The largest root directory read; real ones are a sector or two.
pub(super) const MAX_DIRECTORY_BYTES: u64 = 1024 * 1024;

/// Why `ovf-env.xml` could not be read from a medium directly.
#[derive(Debug, thiserror::Error)]
pub enum MediumError {
    /// Neither a UDF nor an ISO 9660 volume: not media this reader knows (vfat, ext4, blank).
    #[error("no UDF or ISO 9660 volume recognition sequence at sector 16")]
    Unrecognised,
    /// A volume the reader does not read, with the reason.
    #[error("{0}")]
    Unsupported(String),
    /// An inconsistent volume: the structure and where it is.
    #[error("{0}")]
    Invalid(String),
    /// An empty drive (`ENOMEDIUM`).
    #[error("no medium in the drive")]
    NoMedium,
    #[error("cannot read {what}: {source}")]
    Io { what: String, source: io::Error },
    /// `ovf-env.xml` is there but over its size limit.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
}

pub(super) fn invalid<T>(why: impl Into<String>) -> Result<T, MediumError> {
    Err(MediumError::Invalid(why.into()))
}

pub(super) fn unsupported<T>(why: impl Into<String>) -> Result<T, MediumError> {
    Err(MediumError::Unsupported(why.into()))
}

/// Something read in whole sectors: a device, an image file, or bytes in memory.
pub trait Medium {
    /// How many whole sectors there are.
    fn sectors(&self) -> u64;
    /// Fill `buf` (a whole number of sectors) from `first` on; the caller has checked the bounds.
    fn read_sectors(&self, first: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// An image in memory (tests, the fuzz target).
#[derive(Debug, Clone, Copy)]
pub struct Image<'a>(pub &'a [u8]);

impl Medium for Image<'_> {
    fn sectors(&self) -> u64 {
        (self.0.len() / SECTOR) as u64
    }

    fn read_sectors(&self, first: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(first).ok().and_then(|s| s.checked_mul(SECTOR));
        let src = start.and_then(|s| self.0.get(s..s.checked_add(buf.len())?));
        let src = src.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A block device or image file opened read-only.
#[derive(Debug)]
pub struct Device {
    file: File,
    sectors: u64,
}

impl Device {
    /// Open `path` read-only and size it. An empty drive is [`MediumError::NoMedium`].
    pub fn open(path: &Path) -> Result<Self, MediumError> {
        let io_err = |source: io::Error| {
            if source.raw_os_error() == Some(libc::ENOMEDIUM) {
                MediumError::NoMedium
            } else {
                MediumError::Io { what: path.display().to_string(), source }
            }
        };
        let file = File::open(path).map_err(io_err)?;
        // The size of a block device is where a seek to its end lands (its metadata says 0).
        let bytes = io::Seek::seek(&mut &file, io::SeekFrom::End(0)).map_err(io_err)?;
        Ok(Self { file, sectors: bytes / SECTOR as u64 })
    }
}

impl Medium for Device {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read_sectors(&self, first: u64, buf: &mut [u8]) -> io::Result<()> {
        let offset =
            first.checked_mul(SECTOR as u64).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.file.read_exact_at(buf, offset)
    }
}

/// Read `count` sectors from `first` on, checked against the medium's size; `what` names the
/// structure for the error.
pub(super) fn read(medium: &dyn Medium, what: &str, first: u64, count: u64) -> Result<Vec<u8>, MediumError> {
    let end = first.checked_add(count);
    if end.is_none_or(|end| end > medium.sectors()) {
        return invalid(format!(
            "{what} at sector {first} ({count} sectors) lies beyond the end of the medium ({} sectors)",
            medium.sectors()
        ));
    }
    let len = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(SECTOR))
        .filter(|&l| l as u64 <= 2 * MAX_DIRECTORY_BYTES);
    let Some(len) = len else {
        return invalid(format!("{what} at sector {first}: {count} sectors is more than wala reads"));
    };
    let mut buf = vec![0u8; len];
    medium.read_sectors(first, &mut buf).map_err(|source| {
        if source.raw_os_error() == Some(libc::ENOMEDIUM) {
            MediumError::NoMedium
        } else {
            MediumError::Io { what: format!("{what} at sector {first}"), source }
        }
    })?;
    Ok(buf)
}

/// How many sectors hold `bytes` bytes.
pub(super) fn sectors_for(bytes: u64) -> u64 {
    bytes.div_ceil(SECTOR as u64)
}

/// What the volume recognition area says the medium holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recognised {
    Udf,
    Iso9660,
}

/// Walk the volume recognition sequence from sector 16: ISO 9660 descriptors (`CD001`), then
/// UDF's extended area (`BEA01`, `NSR02`/`NSR03`, `TEA01`, and `BOOT2`/`CDW02`), ending at the
/// first sector that is none of those.
pub fn recognise(medium: &dyn Medium) -> Result<Option<Recognised>, MediumError> {
    let (mut iso, mut udf) = (false, false);
    for n in 0..MAX_VOLUME_DESCRIPTORS {
        let sector = FIRST_VOLUME_DESCRIPTOR + n;
        if sector >= medium.sectors() {
            break;
        }
        let d = read(medium, "the volume recognition sequence", sector, 1)?;
        match &d[1..6] {
            b"CD001" => iso = true,
            b"NSR02" | b"NSR03" => udf = true,
            b"BEA01" | b"TEA01" | b"BOOT2" | b"CDW02" => {}
            _ => break,
        }
    }
    Ok(if udf {
        Some(Recognised::Udf)
    } else if iso {
        Some(Recognised::Iso9660)
    } else {
        None
    })
}

/// `ovf-env.xml` from the root directory of the medium: `Ok(None)` when a volume was read and
/// has no such file.
pub fn read_ovf(medium: &dyn Medium) -> Result<Option<Vec<u8>>, MediumError> {
    match recognise(medium)? {
        Some(Recognised::Udf) => super::udf::read_ovf(medium),
        Some(Recognised::Iso9660) => super::iso9660::read_ovf(medium),
        None => Err(MediumError::Unrecognised),
    }
}

/// Little-endian fields of an on-disk structure (the caller has checked the length).
pub(super) fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(super) fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(super) fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from(u32le(b, at)) | (u64::from(u32le(b, at + 4)) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_descriptors(ids: &[&[u8; 5]]) -> Vec<u8> {
        let mut img = vec![0u8; 40 * SECTOR];
        for (i, id) in ids.iter().enumerate() {
            img[(16 + i) * SECTOR + 1..][..5].copy_from_slice(*id);
        }
        img
    }

    #[test]
    fn the_recognition_sequence_says_what_the_medium_holds() {
        assert_eq!(
            recognise(&Image(&with_descriptors(&[b"CD001", b"CD001"]))).expect("iso"),
            Some(Recognised::Iso9660)
        );
        let bridge = with_descriptors(&[b"CD001", b"CD001", b"BEA01", b"NSR02", b"TEA01"]);
        assert_eq!(recognise(&Image(&bridge)).expect("bridge"), Some(Recognised::Udf));
        assert_eq!(
            recognise(&Image(&with_descriptors(&[b"BEA01", b"NSR03", b"TEA01"]))).expect("udf"),
            Some(Recognised::Udf)
        );
        // The sequence ends at the first sector that is not a descriptor: an NSR02 after a gap
        // does not count.
        let mut gap = with_descriptors(&[b"BEA01"]);
        gap[18 * SECTOR + 1..][..5].copy_from_slice(b"NSR02");
        assert_eq!(recognise(&Image(&gap)).expect("gap"), None);
        assert!(matches!(read_ovf(&Image(&vec![0u8; 40 * SECTOR])), Err(MediumError::Unrecognised)));
        // Too short to hold sector 16 at all.
        assert!(matches!(read_ovf(&Image(&[0u8; 100])), Err(MediumError::Unrecognised)));
    }

    #[test]
    fn reads_past_the_end_are_errors_naming_the_structure() {
        let img = vec![0u8; 20 * SECTOR];
        let err = read(&Image(&img), "the File Entry of ovf-env.xml", 19, 2).expect_err("past the end");
        assert_eq!(
            err.to_string(),
            "the File Entry of ovf-env.xml at sector 19 (2 sectors) lies beyond the end of the medium (20 sectors)"
        );
        assert!(read(&Image(&img), "x", u64::MAX, 2).is_err());
        assert_eq!(read(&Image(&img), "x", 19, 1).expect("last sector").len(), SECTOR);
    }
}
