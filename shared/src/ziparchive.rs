//! A small ZIP writer (deflate via `flate2`) for `collect-logs`, and a strict reader used to check
//! archives.
//!
//! Only what the log collector needs: regular files, deflated, UTF-8 names, one timestamp, no
//! ZIP64 (archives are bounded far below 4 GiB and 65 535 entries; larger ones are refused). The
//! archive is built in memory so it can be written atomically in one go.

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
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(1980..=2107).contains(&year) {
        return ((1 << 5) | 1, 0);
    }
    let date = (((year - 1980) as u16) << 9) | ((month as u16) << 5) | day as u16;
    let time =
        (((secs / 3600) as u16) << 11) | ((((secs % 3600) / 60) as u16) << 5) | ((secs % 60) / 2) as u16;
    (date, time)
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

/// Read every entry of a stored/deflated archive without ZIP64 or comments beyond 64 KiB,
/// checking each CRC and size. Never panics on malformed input.
pub fn read_all(b: &[u8]) -> Result<Vec<ZipEntry>, ZipError> {
    let malformed = |offset, why| ZipError::Malformed { offset, why };
    let search_from = b.len().saturating_sub(22 + 0xffff);
    let end = (search_from..=b.len().saturating_sub(22))
        .rev()
        .find(|&i| get32(b, i).ok() == Some(END_SIG))
        .ok_or(malformed(b.len(), "no end of central directory record"))?;
    let count = get16(b, end + 10)? as usize;
    let mut at = get32(b, end + 16)? as usize;
    let mut entries = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        if get32(b, at)? != CENTRAL_SIG {
            return Err(malformed(at, "bad central directory signature"));
        }
        let method = get16(b, at + 10)?;
        let crc = get32(b, at + 16)?;
        let csize = get32(b, at + 20)? as usize;
        let size = get32(b, at + 24)? as usize;
        let (nlen, xlen, clen) =
            (get16(b, at + 28)? as usize, get16(b, at + 30)? as usize, get16(b, at + 32)? as usize);
        let unix = get32(b, at + 38)? >> 16;
        let mode = unix & 0o7777;
        let is_symlink = unix & 0o170000 == 0o120000;
        let local = get32(b, at + 42)? as usize;
        let name_bytes = b.get(at + 46..at + 46 + nlen).ok_or(malformed(at, "truncated name"))?;
        let name =
            String::from_utf8(name_bytes.to_vec()).map_err(|_| malformed(at + 46, "name is not UTF-8"))?;
        at += 46 + nlen + xlen + clen;

        if get32(b, local)? != LOCAL_SIG {
            return Err(malformed(local, "bad local header signature"));
        }
        let data_at = local + 30 + get16(b, local + 26)? as usize + get16(b, local + 28)? as usize;
        let body =
            b.get(data_at..data_at.saturating_add(csize)).ok_or(malformed(data_at, "truncated data"))?;
        let data = match method {
            METHOD_STORED => body.to_vec(),
            METHOD_DEFLATE => {
                let mut out = Vec::with_capacity(size.min(1 << 24));
                flate2::read::DeflateDecoder::new(body)
                    .take(size as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|_| malformed(data_at, "bad deflate stream"))?;
                out
            }
            _ => return Err(malformed(at, "unsupported compression method")),
        };
        if data.len() != size {
            return Err(malformed(data_at, "size does not match"));
        }
        let mut c = Crc::new();
        c.update(&data);
        if c.sum() != crc {
            return Err(malformed(data_at, "CRC does not match"));
        }
        entries.push(ZipEntry { name, data, mode, is_symlink });
    }
    Ok(entries)
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
