//! A small ZIP writer (deflate via `flate2`) for `collect-logs`, and a strict, streaming reader for
//! extension packages ([`ZipReader`]) and for checking archives ([`read_all`]).
//!
//! The writer does only what the log collector needs: regular files, deflated, UTF-8 names, one
//! timestamp, no ZIP64 (archives are bounded far below 4 GiB and 65 535 entries; larger ones are
//! refused). The archive is built in memory so it can be written atomically in one go.
//!
//! The reader never holds an entry's data: it checks the whole central directory first (entry
//! count, total unpacked size, no overlapping entries, local headers that agree), then unpacks one
//! entry at a time through a fixed buffer, so memory does not grow with what an archive unpacks
//! to. The directory itself is read one record at a time (names up to 4096 bytes), never whole.
//! It reads ZIP64 (the ZIP64 end record through its locator, and the ZIP64 extra fields of
//! entries whose sizes or offset are saturated), with the same checks on the 64-bit values; an end
//! record that says otherwise than its ZIP64 record is refused. Packages come from the platform's
//! storage and their publishers; see docs/security.md.

use std::io::{Read, Write};

use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};

/// ZIP's limits without the ZIP64 extension.
const MAX_ENTRIES: usize = 0xffff;
const MAX_SIZE: u64 = 0xffff_ffff;

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const END_SIG: u32 = 0x0605_4b50;
/// The ZIP64 end of central directory record, and its locator (just before the end record).
const END64_SIG: u32 = 0x0606_4b50;
const LOCATOR64_SIG: u32 = 0x0706_4b50;
/// The ZIP64 extended information extra field.
const ZIP64_EXTRA: u16 = 0x0001;
/// The longest entry name read (Linux's `PATH_MAX`: a longer path cannot be created anyway).
const MAX_NAME: usize = 4096;
/// General purpose flag bit 11: the name is UTF-8.
const FLAG_UTF8: u16 = 1 << 11;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATE: u16 = 8;
/// "Made by" Unix (3), spec version 2.0.
const VERSION_MADE_BY: u16 = (3 << 8) | 20;
const VERSION_NEEDED: u16 = 20;

#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("zip entry {name:?}: {why}")]
    Entry { name: String, why: &'static str },
    #[error("the archive would exceed {what} (ZIP64 is not supported)")]
    TooLarge { what: &'static str },
    #[error("compressing {name:?}: {source}")]
    Compress {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed zip archive at byte {offset}: {why}")]
    Malformed { offset: usize, why: &'static str },
    #[error("the archive has {count} entries, more than the limit of {limit}")]
    TooManyEntries { count: usize, limit: usize },
    #[error("the archive unpacks to more than the limit of {limit} bytes")]
    TooLargeUnpacked { limit: u64 },
    #[error("entries {first:?} and {second:?} overlap (one compressed stream read as several entries)")]
    Overlap { first: String, second: String },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

struct CentralEntry {
    name: String,
    crc: u32,
    compressed: u32,
    size: u32,
    offset: u32,
    mode: u32,
}

/// Builds a ZIP archive in memory.
pub struct ZipWriter {
    out: Vec<u8>,
    entries: Vec<CentralEntry>,
    dos_time: u16,
    dos_date: u16,
}

impl std::fmt::Debug for ZipWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipWriter")
            .field("entries", &self.entries.len())
            .field("bytes", &self.out.len())
            .finish()
    }
}

impl ZipWriter {
    /// A new archive whose entries carry the time `unix_secs` (UTC).
    pub fn new(unix_secs: u64) -> Self {
        let (dos_date, dos_time) = dos_datetime(unix_secs);
        Self { out: Vec::new(), entries: Vec::new(), dos_time, dos_date }
    }

    /// Bytes written so far (local headers and compressed data).
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add a file `name` (a relative path with `/` separators) holding `data`, with Unix
    /// permission bits `mode`.
    pub fn add(&mut self, name: &str, data: &[u8], mode: u32) -> Result<(), ZipError> {
        let bad = |why| Err(ZipError::Entry { name: name.into(), why });
        if name.is_empty() || name.len() > 0xffff {
            return bad("the name is empty or too long");
        }
        if name.starts_with('/') || name.split('/').any(|c| c == ".." || c.is_empty()) || name.contains('\0')
        {
            return bad("the name must be a relative path without '..' or empty components");
        }
        if self.entries.len() >= MAX_ENTRIES {
            return Err(ZipError::TooLarge { what: "65535 entries" });
        }
        let mut crc = Crc::new();
        crc.update(data);
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
        let compressed = enc
            .write_all(data)
            .and_then(|()| enc.finish())
            .map_err(|source| ZipError::Compress { name: name.into(), source })?;
        // Incompressible data is stored as it is.
        let (method, body) = if compressed.len() < data.len() {
            (METHOD_DEFLATE, compressed.as_slice())
        } else {
            (METHOD_STORED, data)
        };
        let size =
            u32::try_from(data.len()).map_err(|_| ZipError::TooLarge { what: "4 GiB for one entry" })?;
        let csize =
            u32::try_from(body.len()).map_err(|_| ZipError::TooLarge { what: "4 GiB for one entry" })?;
        let offset = u32::try_from(self.out.len()).map_err(|_| ZipError::TooLarge { what: "4 GiB" })?;
        if self.out.len() as u64 + 30 + name.len() as u64 + body.len() as u64 > MAX_SIZE {
            return Err(ZipError::TooLarge { what: "4 GiB" });
        }
        let o = &mut self.out;
        put32(o, LOCAL_SIG);
        put16(o, VERSION_NEEDED);
        put16(o, FLAG_UTF8);
        put16(o, method);
        put16(o, self.dos_time);
        put16(o, self.dos_date);
        put32(o, crc.sum());
        put32(o, csize);
        put32(o, size);
        put16(o, name.len() as u16);
        put16(o, 0);
        o.extend_from_slice(name.as_bytes());
        o.extend_from_slice(body);
        self.entries.push(CentralEntry {
            name: name.into(),
            crc: crc.sum(),
            compressed: csize,
            size,
            offset,
            mode: mode & 0o7777,
        });
        Ok(())
    }

    /// Write the central directory and return the whole archive.
    pub fn finish(mut self) -> Result<Vec<u8>, ZipError> {
        let cd_start = self.out.len();
        let method_of = |e: &CentralEntry| if e.compressed < e.size { METHOD_DEFLATE } else { METHOD_STORED };
        for e in &self.entries {
            let o = &mut self.out;
            put32(o, CENTRAL_SIG);
            put16(o, VERSION_MADE_BY);
            put16(o, VERSION_NEEDED);
            put16(o, FLAG_UTF8);
            put16(o, method_of(e));
            put16(o, self.dos_time);
            put16(o, self.dos_date);
            put32(o, e.crc);
            put32(o, e.compressed);
            put32(o, e.size);
            put16(o, e.name.len() as u16);
            put16(o, 0); // extra
            put16(o, 0); // comment
            put16(o, 0); // disk number
            put16(o, 0); // internal attributes
            put32(o, (0o100000 | e.mode) << 16); // regular file, Unix mode
            put32(o, e.offset);
            o.extend_from_slice(e.name.as_bytes());
        }
        let cd_size = self.out.len() - cd_start;
        if self.out.len() as u64 + 22 > MAX_SIZE {
            return Err(ZipError::TooLarge { what: "4 GiB" });
        }
        let n = self.entries.len() as u16;
        let o = &mut self.out;
        put32(o, END_SIG);
        put16(o, 0);
        put16(o, 0);
        put16(o, n);
        put16(o, n);
        put32(o, cd_size as u32);
        put32(o, cd_start as u32);
        put16(o, 0);
        Ok(self.out)
    }
}

fn put16(o: &mut Vec<u8>, v: u16) {
    o.extend_from_slice(&v.to_le_bytes());
}

fn put32(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_le_bytes());
}

/// MS-DOS date and time fields for a Unix time (UTC); times before 1980 become 1980-01-01.
fn dos_datetime(unix_secs: u64) -> (u16, u16) {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let (year, month, day) = crate::base::civil_date::from_days(days);
    if !(1980..=2107).contains(&year) {
        return ((1 << 5) | 1, 0);
    }
    let date = (((year - 1980) as u16) << 9) | ((month as u16) << 5) | day as u16;
    let time =
        (((secs / 3600) as u16) << 11) | ((((secs % 3600) / 60) as u16) << 5) | ((secs % 60) / 2) as u16;
    (date, time)
}

// ---------------------------------------------------------------------------------------------------
// Reading

/// Random access to an archive's bytes: a byte slice, or a file ([`FileSource`]).
pub trait Source {
    /// The size of the archive in bytes.
    fn size(&self) -> u64;
    /// Read up to `buf.len()` bytes at `offset`; fewer only at the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl Source for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let tail = usize::try_from(offset).ok().and_then(|o| self.get(o..)).unwrap_or_default();
        let n = tail.len().min(buf.len());
        buf[..n].copy_from_slice(&tail[..n]);
        Ok(n)
    }
}

/// An archive in a file, read in place (never loaded whole).
#[derive(Debug)]
pub struct FileSource {
    file: std::fs::File,
    size: u64,
}

impl FileSource {
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        Ok(Self { file, size })
    }
}

impl Source for FileSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

/// What an archive may hold before it is refused, checked from its central directory before
/// anything is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most entries (files and directories).
    pub max_entries: usize,
    /// Most bytes all entries unpack to, together.
    pub max_total_size: u64,
}

impl ReadLimits {
    /// Only the format's own limits (ZIP64: no practical limit but the archive's size).
    pub const FORMAT: ReadLimits = ReadLimits { max_entries: usize::MAX, max_total_size: u64::MAX };
}

/// One entry of an archive being read: its name, what it unpacks to, and where its data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// Size unpacked, in bytes (checked while unpacking).
    pub size: u64,
    /// Unix permission bits from the central directory (0 when the archive has none).
    pub mode: u32,
    /// The central directory marks the entry as a symbolic link (Unix file type `S_IFLNK`).
    pub is_symlink: bool,
    method: u16,
    crc: u32,
    compressed: u64,
    data_at: u64,
}

impl Entry {
    /// A directory entry (its name ends with `/`).
    pub fn is_dir(&self) -> bool {
        self.name.ends_with('/')
    }
}

/// An archive whose central directory has been read and checked: every entry is a stored or
/// deflated, unencrypted file whose local header agrees with the central directory; entries do not
/// overlap each other or the directory (the "overlapping entries" zip bomb, where thousands of
/// entries share one deflate stream); and the count and the total unpacked size are within
/// [`ReadLimits`]. Entries are then unpacked one at a time, streamed with a fixed-size buffer, each
/// checked against its size and CRC.
#[derive(Debug)]
pub struct ZipReader<'s, S: Source + ?Sized> {
    src: &'s S,
    entries: Vec<Entry>,
}

fn get16(b: &[u8], at: usize) -> Result<u16, ZipError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(ZipError::Malformed { offset: at, why: "truncated" })
}

fn get64(b: &[u8], at: usize) -> Result<u64, ZipError> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
        .ok_or(ZipError::Malformed { offset: at, why: "truncated" })
}

fn get32(b: &[u8], at: usize) -> Result<u32, ZipError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(ZipError::Malformed { offset: at, why: "truncated" })
}

/// General purpose flag bit 0: the entry is encrypted.
const FLAG_ENCRYPTED: u16 = 1;

fn malformed(offset: u64, why: &'static str) -> ZipError {
    ZipError::Malformed { offset: usize::try_from(offset).unwrap_or(usize::MAX), why }
}

/// Read exactly `len` bytes at `offset` of `src` (a short read is a truncated archive).
fn read_exact_at<S: Source + ?Sized>(src: &S, offset: u64, len: usize) -> Result<Vec<u8>, ZipError> {
    if offset.checked_add(len as u64).is_none_or(|end| end > src.size()) {
        return Err(malformed(offset, "truncated"));
    }
    let mut buf = vec![0; len];
    let n = src
        .read_at(offset, &mut buf)
        .map_err(|source| ZipError::Io { what: "reading the archive", source })?;
    if n != len {
        return Err(malformed(offset + n as u64, "truncated"));
    }
    Ok(buf)
}

/// Where the central directory is, from the end record (and the ZIP64 end record, when the
/// archive has one).
struct Directory {
    count: u64,
    cd_at: u64,
    cd_size: u64,
}

/// Find the end of central directory record (in the last 22 bytes plus a comment of up to
/// 64 KiB) and, when a ZIP64 locator sits just before it, the ZIP64 end record it points at. The
/// directory must lie inside the archive, before the record(s) that describe it.
fn find_directory<S: Source + ?Sized>(src: &S) -> Result<Directory, ZipError> {
    let size = src.size();
    let tail_at = size.saturating_sub(22 + 0xffff);
    let tail = read_exact_at(src, tail_at, (size - tail_at) as usize)?;
    let end = (0..=tail.len().saturating_sub(22))
        .rev()
        .find(|&i| tail.len() >= 22 && get32(&tail, i).ok() == Some(END_SIG))
        .ok_or(malformed(size, "no end of central directory record"))?;
    let end_at = tail_at + end as u64;
    let (disk, cd_disk) = (get16(&tail, end + 4)?, get16(&tail, end + 6)?);
    let (here, count) = (get16(&tail, end + 8)?, get16(&tail, end + 10)?);
    let (cd_size, cd_at) = (get32(&tail, end + 12)?, get32(&tail, end + 16)?);
    let multi = |at| malformed(at, "multi-volume archives are not supported");
    if disk != 0 || cd_disk != 0 || here != count {
        return Err(multi(end_at));
    }
    let locator_at = end_at.checked_sub(20);
    let locator = match locator_at {
        Some(at) => Some(read_exact_at(src, at, 20)?).filter(|l| get32(l, 0).ok() == Some(LOCATOR64_SIG)),
        None => None,
    };
    let (dir, records_at) = match (locator, locator_at) {
        (Some(loc), Some(loc_at)) => {
            let (record_disk, record_at, disks) = (get32(&loc, 4)?, get64(&loc, 8)?, get32(&loc, 16)?);
            if record_disk != 0 || disks > 1 {
                return Err(multi(loc_at));
            }
            if record_at.checked_add(56).is_none_or(|e| e > loc_at) {
                return Err(malformed(loc_at, "the ZIP64 end record is outside the archive"));
            }
            let rec = read_exact_at(src, record_at, 56)?;
            if get32(&rec, 0)? != END64_SIG {
                return Err(malformed(record_at, "bad ZIP64 end of central directory signature"));
            }
            // The record's size counts what follows its first 12 bytes (44, or more with
            // extensible data, which is skipped).
            let len = get64(&rec, 4)?;
            if len < 44 || len.checked_add(12 + record_at).is_none_or(|end| end > loc_at) {
                return Err(malformed(record_at, "the ZIP64 end record has a wrong size"));
            }
            if get32(&rec, 16)? != 0 || get32(&rec, 20)? != 0 || get64(&rec, 24)? != get64(&rec, 32)? {
                return Err(multi(record_at));
            }
            let dir =
                Directory { count: get64(&rec, 32)?, cd_size: get64(&rec, 40)?, cd_at: get64(&rec, 48)? };
            // A 32-bit value is either saturated (see the ZIP64 record) or the same: two readers
            // must never see two different archives.
            let agree = (count == 0xffff || u64::from(count) == dir.count)
                && (cd_size == 0xffff_ffff || u64::from(cd_size) == dir.cd_size)
                && (cd_at == 0xffff_ffff || u64::from(cd_at) == dir.cd_at);
            if !agree {
                return Err(malformed(end_at, "the end record and the ZIP64 end record disagree"));
            }
            (dir, record_at)
        }
        _ => (Directory { count: count.into(), cd_size: cd_size.into(), cd_at: cd_at.into() }, end_at),
    };
    if dir.cd_at.checked_add(dir.cd_size).is_none_or(|cd_end| cd_end > records_at) {
        return Err(malformed(records_at, "the central directory is outside the archive"));
    }
    Ok(dir)
}

/// An entry's unpacked size, compressed size and local header offset: the central directory's
/// 32-bit values, or, for each one that is 0xFFFFFFFF, the next 64-bit value of the ZIP64 extended
/// information extra field (id 1) in `extra` (in that order, as the format has it). `None` when
/// a saturated value has no ZIP64 field, or one too short to hold it.
fn zip64_values(extra: &[u8], size: u32, compressed: u32, local: u32) -> Option<(u64, u64, u64)> {
    let saturated = [size, compressed, local].map(|v| v == 0xffff_ffff);
    if !saturated.contains(&true) {
        return Some((size.into(), compressed.into(), local.into()));
    }
    // The extra fields: (id, length, data) one after the other.
    let mut rest = extra;
    let field = loop {
        let id = get16(rest, 0).ok()?;
        let len = get16(rest, 2).ok()? as usize;
        let data = rest.get(4..4 + len)?;
        if id == ZIP64_EXTRA {
            break data;
        }
        rest = &rest[4 + len..];
    };
    let mut values =
        field.chunks_exact(8).map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
    let mut pick =
        |small: u32, is_saturated: bool| if is_saturated { values.next() } else { Some(small.into()) };
    Some((pick(size, saturated[0])?, pick(compressed, saturated[1])?, pick(local, saturated[2])?))
}

impl<'s, S: Source + ?Sized> ZipReader<'s, S> {
    /// Read and check the central directory of the archive in `src` (see [`ZipReader`]).
    pub fn new(src: &'s S, limits: ReadLimits) -> Result<Self, ZipError> {
        let Directory { count, cd_at, cd_size } = find_directory(src)?;
        if count > limits.max_entries as u64 {
            return Err(ZipError::TooManyEntries {
                count: usize::try_from(count).unwrap_or(usize::MAX),
                limit: limits.max_entries,
            });
        }
        // Every record is at least 46 bytes: a count the directory cannot hold is a lie (and would
        // otherwise size the allocations below).
        if count.saturating_mul(46) > cd_size {
            return Err(malformed(cd_at, "the central directory is too small for its entry count"));
        }
        let cd_end = cd_at + cd_size;
        let capacity = usize::try_from(count).unwrap_or(usize::MAX).min(4096);
        let mut entries = Vec::with_capacity(capacity);
        let mut ranges = Vec::with_capacity(capacity);
        let mut total: u64 = 0;
        // One record at a time: memory follows the entries kept, not the directory's size.
        let mut here = cd_at;
        for _ in 0..count {
            if here + 46 > cd_end {
                return Err(malformed(here, "the central directory ends in the middle of a record"));
            }
            let fixed = read_exact_at(src, here, 46)?;
            if get32(&fixed, 0)? != CENTRAL_SIG {
                return Err(malformed(here, "bad central directory signature"));
            }
            let flags = get16(&fixed, 8)?;
            let method = get16(&fixed, 10)?;
            let crc = get32(&fixed, 16)?;
            let compressed32 = get32(&fixed, 20)?;
            let size32 = get32(&fixed, 24)?;
            let (nlen, xlen, clen) =
                (get16(&fixed, 28)? as usize, get16(&fixed, 30)? as usize, get16(&fixed, 32)? as usize);
            let unix = get32(&fixed, 38)? >> 16;
            let local32 = get32(&fixed, 42)?;
            let record_end = here + (46 + nlen + xlen + clen) as u64;
            if record_end > cd_end {
                return Err(malformed(here, "a central directory record runs past the directory"));
            }
            if nlen > MAX_NAME {
                return Err(malformed(here + 46, "an entry name longer than 4096 bytes"));
            }
            let var = read_exact_at(src, here + 46, nlen + xlen)?;
            let name = String::from_utf8(var[..nlen].to_vec())
                .map_err(|_| malformed(here + 46, "name is not UTF-8"))?;
            let Some((entry_size, compressed, local)) =
                zip64_values(&var[nlen..], size32, compressed32, local32)
            else {
                return Err(ZipError::Entry {
                    name,
                    why: "a size or offset of 0xFFFFFFFF without a ZIP64 extra field that holds it",
                });
            };
            here = record_end;
            if flags & FLAG_ENCRYPTED != 0 {
                return Err(ZipError::Entry { name, why: "encrypted entries are not supported" });
            }
            if method != METHOD_STORED && method != METHOD_DEFLATE {
                return Err(ZipError::Entry { name, why: "unsupported compression method" });
            }
            if method == METHOD_STORED && compressed != entry_size {
                return Err(ZipError::Entry { name, why: "stored entry whose sizes differ" });
            }
            total = total.saturating_add(entry_size);
            if total > limits.max_total_size {
                return Err(ZipError::TooLargeUnpacked { limit: limits.max_total_size });
            }

            let header = read_exact_at(src, local, 30)?;
            if get32(&header, 0)? != LOCAL_SIG {
                return Err(malformed(local, "bad local header signature"));
            }
            let (lnlen, lxlen) = (u64::from(get16(&header, 26)?), u64::from(get16(&header, 28)?));
            // `local + 30` is inside the archive (just read), so none of this overflows.
            if read_exact_at(src, local + 30, lnlen as usize)? != name.as_bytes() {
                return Err(ZipError::Entry { name, why: "the local header names another file" });
            }
            let data_at = local + 30 + lnlen + lxlen;
            let Some(data_end) = data_at.checked_add(compressed).filter(|&end| end <= cd_at) else {
                return Err(ZipError::Entry { name, why: "data runs into the central directory" });
            };
            ranges.push((local, data_end, entries.len()));
            entries.push(Entry {
                name,
                size: entry_size,
                mode: unix & 0o7777,
                is_symlink: unix & 0o170000 == 0o120000,
                method,
                crc,
                compressed,
                data_at,
            });
        }
        // No two entries may share bytes: sorted by start, each must begin after the previous ends.
        ranges.sort_unstable();
        for pair in ranges.windows(2) {
            let ((_, prev_end, a), (start, _, b)) = (pair[0], pair[1]);
            if start < prev_end {
                return Err(ZipError::Overlap {
                    first: entries[a].name.clone(),
                    second: entries[b].name.clone(),
                });
            }
        }
        Ok(Self { src, entries })
    }

    /// The entries, in central directory order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Unpack `entry` into `out`, streaming; fails (having written part of it) when the data is
    /// not exactly `entry.size` bytes with the recorded CRC, or `out` fails.
    pub fn extract(&self, entry: &Entry, out: &mut dyn Write) -> Result<(), ZipError> {
        let bad = |why| ZipError::Entry { name: entry.name.clone(), why };
        let raw = SourceReader { src: self.src, at: entry.data_at, end: entry.data_at + entry.compressed };
        let mut reader: Box<dyn Read> = match entry.method {
            METHOD_DEFLATE => {
                Box::new(flate2::read::DeflateDecoder::new(std::io::BufReader::with_capacity(16 * 1024, raw)))
            }
            _ => Box::new(raw),
        };
        let mut crc = Crc::new();
        let mut written: u64 = 0;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::InvalidInput
                        || e.kind() == std::io::ErrorKind::InvalidData =>
                {
                    return Err(bad("bad deflate stream"))
                }
                Err(source) => return Err(ZipError::Io { what: "reading the archive", source }),
            };
            written += n as u64;
            if written > entry.size {
                return Err(bad("more data than its recorded size"));
            }
            crc.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|source| ZipError::Io { what: "writing an entry", source })?;
        }
        if written != entry.size {
            return Err(bad("less data than its recorded size"));
        }
        if crc.sum() != entry.crc {
            return Err(bad("CRC does not match"));
        }
        Ok(())
    }
}

/// `Read` over a byte range of a [`Source`].
struct SourceReader<'s, S: Source + ?Sized> {
    src: &'s S,
    at: u64,
    end: u64,
}

impl<S: Source + ?Sized> Read for SourceReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(usize::try_from(self.end - self.at).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.src.read_at(self.at, &mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "truncated archive"));
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// One entry read back from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    pub name: String,
    pub data: Vec<u8>,
    /// Unix permission bits from the central directory.
    pub mode: u32,
    /// The central directory marks the entry as a symbolic link (Unix file type `S_IFLNK`).
    pub is_symlink: bool,
}

/// Read every entry of a stored/deflated archive into memory, with the checks of [`ZipReader`]
/// and only the format's limits: for archives wala wrote itself (log collections) and tests.
/// Never panics on malformed input.
pub fn read_all(b: &[u8]) -> Result<Vec<ZipEntry>, ZipError> {
    let zip = ZipReader::new(b, ReadLimits::FORMAT)?;
    let mut out = Vec::with_capacity(zip.entries().len());
    for e in zip.entries() {
        let mut data = Vec::new();
        zip.extract(e, &mut data)?;
        out.push(ZipEntry { name: e.name.clone(), data, mode: e.mode, is_symlink: e.is_symlink });
    }
    Ok(out)
}

/// Hostile archives, for tests, benchmarks and fuzz seeds (wala itself never builds them): each
/// is a real, consistent archive (right sizes and CRCs), so only the limits stop it.
#[doc(hidden)]
pub mod hostile {
    use super::*;

    const CHUNK: usize = 1 << 20;

    /// A raw deflate stream of `chunks` MiB of zero bytes, and its CRC, built without compressing
    /// it all: one MiB is compressed and sync-flushed (which ends on a byte boundary), and the
    /// blocks for the second MiB, which only refer back to zeros, are repeated.
    pub fn zeros_deflated(chunks: u64) -> (Vec<u8>, u32) {
        let zeros = vec![0u8; CHUNK];
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::best());
        // `flush` is a sync flush: everything so far is emitted, ending on a byte boundary.
        let chunk = |enc: &mut DeflateEncoder<Vec<u8>>| {
            let _ = enc.write_all(&zeros).and_then(|()| enc.flush());
            std::mem::take(enc.get_mut())
        };
        let mut stream = chunk(&mut enc);
        let repeat = chunk(&mut enc);
        for _ in 1..chunks.max(1) {
            stream.extend_from_slice(&repeat);
        }
        stream.extend_from_slice(&enc.finish().unwrap_or_default());
        let mut one = Crc::new();
        one.update(&zeros);
        let mut crc = Crc::new();
        for _ in 0..chunks.max(1) {
            crc.combine(&one);
        }
        (stream, crc.sum())
    }

    /// A local header, and the matching central directory record, for an entry at `offset`.
    #[allow(clippy::too_many_arguments)]
    fn headers(
        name: &str,
        method: u16,
        crc: u32,
        csize: u32,
        size: u32,
        offset: u32,
        mode: u32,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut local = Vec::new();
        put32(&mut local, LOCAL_SIG);
        for v in [VERSION_NEEDED, FLAG_UTF8, method, 0, 0x21] {
            put16(&mut local, v);
        }
        for v in [crc, csize, size] {
            put32(&mut local, v);
        }
        put16(&mut local, name.len() as u16);
        put16(&mut local, 0);
        local.extend_from_slice(name.as_bytes());
        let mut central = Vec::new();
        put32(&mut central, CENTRAL_SIG);
        for v in [VERSION_MADE_BY, VERSION_NEEDED, FLAG_UTF8, method, 0, 0x21] {
            put16(&mut central, v);
        }
        for v in [crc, csize, size] {
            put32(&mut central, v);
        }
        for v in [name.len() as u16, 0, 0, 0, 0] {
            put16(&mut central, v);
        }
        put32(&mut central, (0o100000 | mode) << 16);
        put32(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
        (local, central)
    }

    /// `body` (local headers and data), then the central directory `records` of `count` entries.
    fn finish(mut body: Vec<u8>, records: &[u8], count: u16) -> Vec<u8> {
        let cd_at = body.len() as u32;
        body.extend_from_slice(records);
        put32(&mut body, END_SIG);
        for v in [0, 0, count, count] {
            put16(&mut body, v);
        }
        put32(&mut body, records.len() as u32);
        put32(&mut body, cd_at);
        put16(&mut body, 0);
        body
    }

    /// One file of `mib` MiB of zeros (up to 4095): about 1 KiB of archive per MiB unpacked.
    pub fn ratio_bomb(mib: u64) -> Vec<u8> {
        let (data, crc) = zeros_deflated(mib);
        let size = (mib * CHUNK as u64) as u32;
        let (mut body, central) =
            headers("zeros.bin", METHOD_DEFLATE, crc, data.len() as u32, size, 0, 0o644);
        body.extend_from_slice(&data);
        finish(body, &central, 1)
    }

    /// `count` central directory entries (all named `bomb.bin`) that point at the same local
    /// header and deflate stream of `mib` MiB of zeros: `count * mib` MiB from a small archive.
    pub fn overlap_bomb(count: u16, mib: u64) -> Vec<u8> {
        let (data, crc) = zeros_deflated(mib);
        let size = (mib * CHUNK as u64) as u32;
        let (mut body, central) = headers("bomb.bin", METHOD_DEFLATE, crc, data.len() as u32, size, 0, 0o644);
        body.extend_from_slice(&data);
        finish(body, &central.repeat(usize::from(count)), count)
    }

    /// Two differently named stored entries whose ranges overlap: the data of `outer.txt` is the
    /// whole of `inner.txt`, header included.
    pub fn nested_overlap() -> Vec<u8> {
        let inner_data = b"hello";
        let mut crc = Crc::new();
        crc.update(inner_data);
        let outer_name = "outer.txt";
        let inner_at = (30 + outer_name.len()) as u32;
        let (mut inner, inner_cd) = headers("inner.txt", METHOD_STORED, crc.sum(), 5, 5, inner_at, 0o644);
        inner.extend_from_slice(inner_data);
        let mut outer_crc = Crc::new();
        outer_crc.update(&inner);
        let n = inner.len() as u32;
        let (mut body, outer_cd) = headers(outer_name, METHOD_STORED, outer_crc.sum(), n, n, 0, 0o644);
        body.extend_from_slice(&inner);
        finish(body, &[outer_cd, inner_cd].concat(), 2)
    }

    /// A stored ZIP64 archive of `files`, shaped as one over 4 GiB is: every size and offset in
    /// the central directory is 0xFFFFFFFF with the value in a ZIP64 extra field, and the end
    /// record is saturated, pointing through a locator at a ZIP64 end record. For hostile
    /// variants: `first_size` claims another unpacked size for the first file, `same_offset` makes
    /// every entry point at the first one's data, `count` claims another entry count.
    pub fn zip64(
        files: &[(&str, &[u8])],
        first_size: Option<u64>,
        same_offset: bool,
        count: Option<u64>,
    ) -> Vec<u8> {
        let mut body = Vec::new();
        let mut records = Vec::new();
        for (i, (name, data)) in files.iter().enumerate() {
            let mut crc = Crc::new();
            crc.update(data);
            let offset = if same_offset { 0 } else { body.len() as u64 };
            let len = data.len() as u64;
            let size = if i == 0 { first_size.unwrap_or(len) } else { len };
            put32(&mut body, LOCAL_SIG);
            for v in [45, FLAG_UTF8, METHOD_STORED, 0, 0x21] {
                put16(&mut body, v);
            }
            for v in [crc.sum(), 0xffff_ffff, 0xffff_ffff] {
                put32(&mut body, v);
            }
            put16(&mut body, name.len() as u16);
            put16(&mut body, 20);
            body.extend_from_slice(name.as_bytes());
            put16(&mut body, ZIP64_EXTRA);
            put16(&mut body, 16);
            body.extend_from_slice(&size.to_le_bytes());
            body.extend_from_slice(&len.to_le_bytes());
            body.extend_from_slice(data);
            put32(&mut records, CENTRAL_SIG);
            for v in [(3 << 8) | 45, 45, FLAG_UTF8, METHOD_STORED, 0, 0x21] {
                put16(&mut records, v);
            }
            for v in [crc.sum(), 0xffff_ffff, 0xffff_ffff] {
                put32(&mut records, v);
            }
            for v in [name.len() as u16, 28, 0, 0, 0] {
                put16(&mut records, v);
            }
            put32(&mut records, 0o100644 << 16);
            put32(&mut records, 0xffff_ffff);
            records.extend_from_slice(name.as_bytes());
            put16(&mut records, ZIP64_EXTRA);
            put16(&mut records, 24);
            for v in [size, len, offset] {
                records.extend_from_slice(&v.to_le_bytes());
            }
        }
        let cd_at = body.len() as u64;
        let cd_size = records.len() as u64;
        body.extend_from_slice(&records);
        let record_at = body.len() as u64;
        let n = count.unwrap_or(files.len() as u64);
        put32(&mut body, END64_SIG);
        body.extend_from_slice(&44u64.to_le_bytes());
        put16(&mut body, (3 << 8) | 45);
        put16(&mut body, 45);
        put32(&mut body, 0);
        put32(&mut body, 0);
        for v in [n, n, cd_size, cd_at] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        put32(&mut body, LOCATOR64_SIG);
        put32(&mut body, 0);
        body.extend_from_slice(&record_at.to_le_bytes());
        put32(&mut body, 1);
        put32(&mut body, END_SIG);
        for v in [0, 0, 0xffff, 0xffff] {
            put16(&mut body, v);
        }
        put32(&mut body, 0xffff_ffff);
        put32(&mut body, 0xffff_ffff);
        put16(&mut body, 0);
        body
    }

    /// `count` empty files (`f0`, `f1`, ...).
    pub fn many_entries(count: usize) -> Vec<u8> {
        let mut z = ZipWriter::new(0);
        for i in 0..count {
            let _ = z.add(&format!("f{i}"), b"", 0o644);
        }
        z.finish().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut z = ZipWriter::new(1_764_121_000);
        let text = "hello log line\n".repeat(1000);
        z.add("var/log/waagent.log", text.as_bytes(), 0o644).unwrap();
        z.add("empty", b"", 0o600).unwrap();
        z.add("bin", &[0u8, 255, 3, 7], 0o600).unwrap();
        let bytes = z.finish().unwrap();
        assert!(bytes.len() < text.len() / 5, "text is deflated");
        let e = read_all(&bytes).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].name.as_str(), e[0].data.as_slice(), e[0].mode),
            ("var/log/waagent.log", text.as_bytes(), 0o644)
        );
        assert_eq!(e[1].data, b"");
        assert_eq!(e[2].data, [0, 255, 3, 7]);
    }

    #[test]
    fn unsafe_names_are_refused() {
        let mut z = ZipWriter::new(0);
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "a/"] {
            assert!(z.add(bad, b"x", 0o644).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dos_dates() {
        // 2026-11-26T02:56:40Z (checked with Python's datetime)
        let (d, t) = dos_datetime(1_795_656_000 + 5800);
        assert_eq!((d >> 9) + 1980, 2026);
        assert_eq!((d >> 5) & 0xf, 11);
        assert_eq!(d & 0x1f, 26);
        assert_eq!((t >> 11, (t >> 5) & 0x3f, (t & 0x1f) * 2), (2, 56, 40));
        assert_eq!(dos_datetime(0), (33, 0));
    }

    #[test]
    fn hostile_archives_are_consistent_and_stream_through_a_fixed_buffer() {
        let bomb = hostile::ratio_bomb(64);
        assert!(bomb.len() < 80 * 1024, "{} bytes", bomb.len());
        let zip = ZipReader::new(&bomb[..], ReadLimits::FORMAT).expect("readable");
        let [entry] = zip.entries() else { panic!("one entry") };
        assert_eq!(entry.size, 64 << 20);
        zip.extract(entry, &mut std::io::sink()).expect("sizes and CRC match");
        let err =
            ZipReader::new(&bomb[..], ReadLimits { max_entries: 1, max_total_size: 64 << 20 }).map(|_| ());
        assert!(err.is_ok(), "exactly at the limit");
        let err = ZipReader::new(&bomb[..], ReadLimits { max_entries: 1, max_total_size: (64 << 20) - 1 })
            .expect_err("over");
        assert!(matches!(err, ZipError::TooLargeUnpacked { .. }), "{err}");
        for overlapping in [hostile::overlap_bomb(3, 1), hostile::nested_overlap()] {
            assert!(matches!(read_all(&overlapping), Err(ZipError::Overlap { .. })));
        }
        let many = hostile::many_entries(10);
        assert!(matches!(
            ZipReader::new(&many[..], ReadLimits { max_entries: 9, max_total_size: 0 }),
            Err(ZipError::TooManyEntries { count: 10, limit: 9 })
        ));
    }

    /// Run `script` with Python 3 (its `zipfile` is the reference ZIP64 writer and reader here);
    /// `sys.argv[1]` is `path`.
    fn python(script: &str, path: &std::path::Path) {
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(path)
            .output()
            .expect("python3 is needed for the ZIP64 tests");
        assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Python's writer with its ZIP64 thresholds lowered to 1 byte and 1 entry: every size and
    /// offset goes into ZIP64 extra fields (local and central), and a ZIP64 end record and
    /// locator are written: an archive over 4 GiB in miniature.
    const PYTHON_ZIP64: &str = r##"
import sys, zipfile
zipfile.ZIP64_LIMIT = 1
zipfile.ZIP_FILECOUNT_LIMIT = 1
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("HandlerManifest.json", "[]" * 100, compress_type=zipfile.ZIP_DEFLATED)
    z.writestr("bin/", "")
    z.writestr("bin/run.sh", "#!/bin/sh\necho hi\n", compress_type=zipfile.ZIP_STORED)
    z.writestr("data.bin", bytes(range(256)) * 40, compress_type=zipfile.ZIP_STORED)
"##;

    #[test]
    fn zip64_archives_written_by_python_are_read_with_their_extra_fields_and_end_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("zip64.zip");
        python(PYTHON_ZIP64, &path);
        let bytes = std::fs::read(&path).expect("read");
        let has = |sig: u32| bytes.windows(4).any(|w| w == sig.to_le_bytes());
        assert!(has(END64_SIG) && has(LOCATOR64_SIG), "Python wrote a ZIP64 end record and locator");
        let src = FileSource::open(&path).expect("open");
        let zip = ZipReader::new(&src, ReadLimits::FORMAT).expect("a ZIP64 archive is read");
        let names: Vec<&str> = zip.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["HandlerManifest.json", "bin/", "bin/run.sh", "data.bin"]);
        let mut out = Vec::new();
        zip.extract(&zip.entries()[3], &mut out).expect("extract");
        assert_eq!(out, (0..=255u8).collect::<Vec<_>>().repeat(40));
        let all = read_all(&bytes).expect("read_all");
        assert_eq!(all[0].data, "[]".repeat(100).as_bytes(), "the deflated entry");
        assert_eq!(all[2].data, b"#!/bin/sh\necho hi\n");
        // The limits apply to what the ZIP64 fields say.
        let total: u64 = zip.entries().iter().map(|e| e.size).sum();
        let tight = ReadLimits { max_entries: 4, max_total_size: total - 1 };
        assert!(matches!(ZipReader::new(&src, tight), Err(ZipError::TooLargeUnpacked { .. })));
        let few = ReadLimits { max_entries: 3, max_total_size: u64::MAX };
        assert!(matches!(ZipReader::new(&src, few), Err(ZipError::TooManyEntries { count: 4, limit: 3 })));
    }

    #[test]
    fn more_than_65535_entries_need_zip64_and_are_counted_from_its_end_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("many.zip");
        python(
            r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for i in range(65537):
        z.writestr(f"f{i}", "")
    z.writestr("last.txt", "the end")
"#,
            &path,
        );
        let src = FileSource::open(&path).expect("open");
        let zip = ZipReader::new(&src, ReadLimits::FORMAT).expect("readable");
        assert_eq!(zip.entries().len(), 65538);
        let last = &zip.entries()[65537];
        let mut out = Vec::new();
        zip.extract(last, &mut out).expect("extract");
        assert_eq!((last.name.as_str(), out.as_slice()), ("last.txt", b"the end".as_slice()));
        let limits = ReadLimits { max_entries: 65537, max_total_size: u64::MAX };
        assert!(matches!(
            ZipReader::new(&src, limits),
            Err(ZipError::TooManyEntries { count: 65538, limit: 65537 })
        ));
    }

    #[test]
    fn saturated_zip64_archives_are_read_and_keep_every_check() {
        let files: [(&str, &[u8]); 2] = [("a.txt", b"alpha"), ("b.txt", b"bravo!")];
        let good = hostile::zip64(&files, None, false, None);
        // Python agrees this is a good archive.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("z.zip");
        std::fs::write(&path, &good).expect("write");
        python(
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nassert z.read('b.txt') == b'bravo!'",
            &path,
        );
        let all = read_all(&good).expect("read");
        assert_eq!(
            (all[0].data.as_slice(), all[1].data.as_slice()),
            (b"alpha".as_slice(), b"bravo!".as_slice())
        );
        // The sizes in the ZIP64 fields count against the limit before anything is read (5 + 6).
        let limits = |max_total_size| ReadLimits { max_entries: 10, max_total_size };
        assert!(ZipReader::new(&good[..], limits(11)).is_ok());
        assert!(matches!(
            ZipReader::new(&good[..], limits(10)),
            Err(ZipError::TooLargeUnpacked { limit: 10 })
        ));
        // A stored entry whose ZIP64 sizes differ (5 GiB claimed for 5 bytes) is refused.
        let huge = hostile::zip64(&files, Some(5 << 30), false, None);
        let err = read_all(&huge).expect_err("sizes differ");
        assert!(err.to_string().contains("stored entry whose sizes differ"), "{err}");
        // Offsets from ZIP64 fields are checked for overlaps.
        let overlap = hostile::zip64(&[("a.txt", b"alpha"), ("a.txt", b"alpha")], None, true, None);
        assert!(matches!(read_all(&overlap), Err(ZipError::Overlap { .. })));
        // A count from the ZIP64 end record over the limit, or more than the directory can hold.
        let limits = ReadLimits { max_entries: 100, max_total_size: u64::MAX };
        let many = hostile::zip64(&files, None, false, Some(1 << 40));
        assert!(matches!(ZipReader::new(&many[..], limits), Err(ZipError::TooManyEntries { .. })));
        let err = read_all(&many).expect_err("count beyond the directory");
        assert!(err.to_string().contains("too small for its entry count"), "{err}");
        // The end record may not say something else than the ZIP64 one.
        let mut disagree = good.clone();
        let end = disagree.len() - 22;
        disagree[end + 8..end + 12].copy_from_slice(&[3, 0, 3, 0]);
        let err = read_all(&disagree).expect_err("disagree");
        assert!(err.to_string().contains("disagree"), "{err}");
        // A saturated size without the ZIP64 field to hold it.
        let mut missing = good.clone();
        let cd = missing.windows(4).position(|w| w == CENTRAL_SIG.to_le_bytes()).expect("cd");
        let extra = cd + 46 + "a.txt".len();
        missing[extra..extra + 2].copy_from_slice(&0x7777u16.to_le_bytes());
        let err = read_all(&missing).expect_err("no extra");
        assert!(err.to_string().contains("without a ZIP64 extra field"), "{err}");
        // A locator pointing past itself.
        let mut outside = good;
        let loc = outside.len() - 22 - 20;
        outside[loc + 8..loc + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = read_all(&outside).expect_err("outside");
        assert!(err.to_string().contains("ZIP64 end record is outside"), "{err}");
    }

    #[test]
    fn reader_never_panics_on_damaged_archives() {
        let mut z = ZipWriter::new(1_764_121_000);
        z.add("a.txt", "abc".repeat(100).as_bytes(), 0o644).unwrap();
        z.add("b.txt", b"xyz", 0o644).unwrap();
        let good = z.finish().unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            let mut b = good.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed % b.len() as u64) as usize;
                b[i] = (seed >> 32) as u8;
            }
            let cut = (seed >> 40) as usize % (b.len() + 1);
            let _ = read_all(&b);
            let _ = read_all(&b[..cut]);
        }
    }
}
