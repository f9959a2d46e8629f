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
//! to. Packages come from the platform's storage and their publishers; see docs/security.md.

use std::io::{Read, Write};

use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};

/// ZIP's limits without the ZIP64 extension.
const MAX_ENTRIES: usize = 0xffff;
const MAX_SIZE: u64 = 0xffff_ffff;

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const END_SIG: u32 = 0x0605_4b50;
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
    let (year, month, day) = crate::civil_date::from_days(days);
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
    /// Only the format's own limits (65,535 entries of up to 4 GiB each).
    pub const FORMAT: ReadLimits = ReadLimits { max_entries: MAX_ENTRIES, max_total_size: u64::MAX };
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

impl<'s, S: Source + ?Sized> ZipReader<'s, S> {
    /// Read and check the central directory of the archive in `src` (see [`ZipReader`]).
    pub fn new(src: &'s S, limits: ReadLimits) -> Result<Self, ZipError> {
        let size = src.size();
        // The end record is in the last 22 bytes plus a comment of up to 64 KiB.
        let tail_at = size.saturating_sub(22 + 0xffff);
        let tail = read_exact_at(src, tail_at, (size - tail_at) as usize)?;
        let end = (0..=tail.len().saturating_sub(22))
            .rev()
            .find(|&i| tail.len() >= 22 && get32(&tail, i).ok() == Some(END_SIG))
            .ok_or(malformed(size, "no end of central directory record"))?;
        let end_at = tail_at + end as u64;
        let (disk, cd_disk) = (get16(&tail, end + 4)?, get16(&tail, end + 6)?);
        let (here, count) = (get16(&tail, end + 8)?, get16(&tail, end + 10)?);
        let (cd_size, cd_at) = (u64::from(get32(&tail, end + 12)?), u64::from(get32(&tail, end + 16)?));
        if disk != 0 || cd_disk != 0 || here != count {
            return Err(malformed(end_at, "multi-volume archives are not supported"));
        }
        if count == 0xffff || cd_at == 0xffff_ffff || cd_size == 0xffff_ffff {
            return Err(malformed(end_at, "ZIP64 archives are not supported"));
        }
        if usize::from(count) > limits.max_entries {
            return Err(ZipError::TooManyEntries { count: count.into(), limit: limits.max_entries });
        }
        if cd_at.checked_add(cd_size).is_none_or(|cd_end| cd_end > end_at) {
            return Err(malformed(end_at, "the central directory is outside the archive"));
        }
        let cd = read_exact_at(src, cd_at, cd_size as usize)?;

        let mut entries = Vec::with_capacity(usize::from(count));
        let mut ranges = Vec::with_capacity(usize::from(count));
        let mut total: u64 = 0;
        let mut at = 0usize;
        for _ in 0..count {
            let here = cd_at + at as u64;
            if get32(&cd, at)? != CENTRAL_SIG {
                return Err(malformed(here, "bad central directory signature"));
            }
            let flags = get16(&cd, at + 8)?;
            let method = get16(&cd, at + 10)?;
            let crc = get32(&cd, at + 16)?;
            let compressed = u64::from(get32(&cd, at + 20)?);
            let entry_size = u64::from(get32(&cd, at + 24)?);
            let (nlen, xlen, clen) =
                (get16(&cd, at + 28)? as usize, get16(&cd, at + 30)? as usize, get16(&cd, at + 32)? as usize);
            let unix = get32(&cd, at + 38)? >> 16;
            let local = u64::from(get32(&cd, at + 42)?);
            let name_bytes = cd.get(at + 46..at + 46 + nlen).ok_or(malformed(here, "truncated name"))?;
            let name = String::from_utf8(name_bytes.to_vec())
                .map_err(|_| malformed(here + 46, "name is not UTF-8"))?;
            at += 46 + nlen + xlen + clen;
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
            if read_exact_at(src, local + 30, lnlen as usize)? != name.as_bytes() {
                return Err(ZipError::Entry { name, why: "the local header names another file" });
            }
            let data_at = local + 30 + lnlen + lxlen;
            let data_end = data_at + compressed;
            if data_end > cd_at {
                return Err(ZipError::Entry { name, why: "data runs into the central directory" });
            }
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
        drop(cd);
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
