//! `ovf-env.xml` from the root directory of an ISO 9660 volume (ECMA-119), with the names the
//! Linux kernel would give it when mounted with its defaults, so that this reader finds the file
//! exactly when `mount -t iso9660` would:
//!
//! - Rock Ridge (a SUSP `SP` entry in the root's `.` record): a record's `NM` name, matched
//!   exactly; a record without one falls back to its ISO name. Rock Ridge wins over Joliet, as in
//!   the kernel.
//! - Joliet (a supplementary descriptor with a UCS-2 escape sequence): UCS-2 big-endian names
//!   without a trailing `;1` or dots, matched without regard to ASCII case.
//! - Plain ISO 9660 (levels 1 to 3): the name in lower case, without a trailing `;1` or `.;1`
//!   (other `;` become `.`), so `OVF-ENV.XML;1` is `ovf-env.xml`.
//!
//! Associated files are skipped (the kernel hides them). Multi-extent and interleaved files are
//! left to the kernel ([`MediumError::Unsupported`]).

use crate::base::limits::Document;
use crate::host::dvd::medium::{
    invalid, read, sectors_for, unsupported, Medium, MediumError, FIRST_VOLUME_DESCRIPTOR,
    MAX_DIRECTORY_BYTES, MAX_VOLUME_DESCRIPTORS, SECTOR,
};
use crate::host::dvd::OVF_FILE;

const TYPE_PRIMARY: u8 = 1;
const TYPE_SUPPLEMENTARY: u8 = 2;
const TYPE_TERMINATOR: u8 = 255;
/// Offset of the root directory record in a primary or supplementary volume descriptor.
const ROOT_RECORD: usize = 156;
/// The fixed part of a directory record, before the file identifier.
const RECORD_HEADER: usize = 33;
const FLAG_DIRECTORY: u8 = 0x02;
const FLAG_ASSOCIATED: u8 = 0x04;
const FLAG_MULTI_EXTENT: u8 = 0x80;
/// SUSP continuation areas followed per directory record.
const MAX_CONTINUATIONS: usize = 8;

/// Which names a directory's records are read by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    Plain,
    Joliet,
    /// Rock Ridge, with the SUSP skip length from the root's `SP` entry.
    RockRidge(u8),
}

/// A directory record's extent.
#[derive(Debug, Clone, Copy)]
struct Extent {
    sector: u64,
    len: u64,
}

/// `ovf-env.xml` from the root directory of the ISO 9660 volume on `medium`.
pub fn read_ovf(medium: &dyn Medium) -> Result<Option<Vec<u8>>, MediumError> {
    let (primary, joliet) = volume_descriptors(medium)?;
    let Some(primary) = primary else {
        return invalid("ISO 9660: no primary volume descriptor before the terminator");
    };
    let root = root_extent(&primary, "primary")?;
    let dir = read_directory(medium, root)?;
    let (dir, names) = match rock_ridge_skip(&dir)? {
        Some(skip) => (dir, Names::RockRidge(skip)),
        None => match joliet {
            Some(svd) => (read_directory(medium, root_extent(&svd, "Joliet supplementary")?)?, Names::Joliet),
            None => (dir, Names::Plain),
        },
    };
    let Some(found) = find(medium, &dir, names)? else { return Ok(None) };
    read_file(medium, found)
}

/// A volume descriptor's sector.
type Descriptor = Vec<u8>;

/// The primary volume descriptor and the first Joliet supplementary one, from sector 16 up to the
/// terminator.
fn volume_descriptors(medium: &dyn Medium) -> Result<(Option<Descriptor>, Option<Descriptor>), MediumError> {
    let (mut primary, mut joliet) = (None, None);
    for n in 0..MAX_VOLUME_DESCRIPTORS {
        let sector = FIRST_VOLUME_DESCRIPTOR + n;
        if sector >= medium.sectors() {
            break;
        }
        let d = read(medium, "ISO 9660: volume descriptor", sector, 1)?;
        if &d[1..6] != b"CD001" {
            break;
        }
        match d[0] {
            TYPE_PRIMARY if primary.is_none() => primary = Some(d),
            TYPE_SUPPLEMENTARY if joliet.is_none() && is_joliet(&d) => joliet = Some(d),
            TYPE_TERMINATOR => break,
            _ => {}
        }
    }
    Ok((primary, joliet))
}

/// A supplementary descriptor is Joliet's when its escape sequences name UCS-2 level 1, 2 or 3.
fn is_joliet(svd: &[u8]) -> bool {
    let esc = &svd[88..120];
    [b"%/@", b"%/C", b"%/E"].iter().any(|seq| esc.windows(3).any(|w| w == *seq))
}

/// A both-endian 32-bit field (little-endian then big-endian copy), which must agree.
fn both32(b: &[u8], at: usize, what: &str) -> Result<u32, MediumError> {
    let le = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let be = u32::from_be_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]);
    if le != be {
        return invalid(format!("ISO 9660: {what}: little-endian {le} and big-endian {be} copies differ"));
    }
    Ok(le)
}

fn both16(b: &[u8], at: usize, what: &str) -> Result<u16, MediumError> {
    let le = u16::from_le_bytes([b[at], b[at + 1]]);
    let be = u16::from_be_bytes([b[at + 2], b[at + 3]]);
    if le != be {
        return invalid(format!("ISO 9660: {what}: little-endian {le} and big-endian {be} copies differ"));
    }
    Ok(le)
}

/// The root directory's extent from a volume descriptor.
fn root_extent(vd: &[u8], which: &str) -> Result<Extent, MediumError> {
    let block = both16(vd, 128, &format!("{which} volume descriptor's logical block size"))?;
    if usize::from(block) != SECTOR {
        return unsupported(format!(
            "ISO 9660: logical blocks of {block} bytes (only {SECTOR} are read directly)"
        ));
    }
    let rec = &vd[ROOT_RECORD..ROOT_RECORD + 34];
    if rec[0] != 34 {
        return invalid(format!(
            "ISO 9660: the {which} volume descriptor's root directory record has length {}",
            rec[0]
        ));
    }
    record_extent(rec, &format!("the {which} volume descriptor's root directory record"))
}

/// The extent of a directory record (its data start after any extended attribute record).
fn record_extent(rec: &[u8], what: &str) -> Result<Extent, MediumError> {
    let location = both32(rec, 2, &format!("{what}: extent location"))?;
    let len = both32(rec, 10, &format!("{what}: data length"))?;
    let sector = u64::from(location) + u64::from(rec[1]);
    Ok(Extent { sector, len: u64::from(len) })
}

fn read_directory(medium: &dyn Medium, dir: Extent) -> Result<Vec<u8>, MediumError> {
    if dir.len > MAX_DIRECTORY_BYTES {
        return unsupported(format!(
            "ISO 9660: the root directory of {} bytes is larger than the {MAX_DIRECTORY_BYTES} read directly",
            dir.len
        ));
    }
    let mut bytes = read(medium, "ISO 9660: the root directory", dir.sector, sectors_for(dir.len))?;
    bytes.truncate(dir.len as usize);
    Ok(bytes)
}

/// The records of a directory: each lies within one sector; a zero length byte means the rest of
/// that sector is padding.
fn records(dir: &[u8]) -> impl Iterator<Item = Result<(usize, &[u8]), MediumError>> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || loop {
        if at >= dir.len() {
            return None;
        }
        let sector_end = (at / SECTOR + 1) * SECTOR;
        let len = usize::from(dir[at]);
        if len == 0 {
            at = sector_end;
            continue;
        }
        let start = at;
        let rec = dir.get(start..start + len).filter(|_| start + len <= sector_end);
        let ok = rec.filter(|r| r.len() >= RECORD_HEADER && RECORD_HEADER + usize::from(r[32]) <= r.len());
        let Some(rec) = ok else {
            at = dir.len();
            return Some(invalid(format!(
                "ISO 9660: directory record at byte {start} of the root directory: length {len} does not fit \
                 its name and its sector"
            )));
        };
        at += len;
        return Some(Ok((start, rec)));
    })
}

/// The SUSP skip length when the root's `.` record starts with an `SP` entry (Rock Ridge in use).
fn rock_ridge_skip(dir: &[u8]) -> Result<Option<u8>, MediumError> {
    let Some(first) = records(dir).next() else { return Ok(None) };
    let (_, dot) = first?;
    let sua = system_use(dot);
    Ok((sua.len() >= 7 && &sua[0..2] == b"SP" && sua[2] == 7 && sua[4..6] == [0xBE, 0xEF]).then(|| sua[6]))
}

/// The system use area of a record: after the identifier and its padding byte.
fn system_use(rec: &[u8]) -> &[u8] {
    let name_len = usize::from(rec[32]);
    let start = RECORD_HEADER + name_len + usize::from(name_len % 2 == 0);
    rec.get(start..).unwrap_or(&[])
}

/// The record named `ovf-env.xml` in the root directory, if any.
fn find<'d>(medium: &dyn Medium, dir: &'d [u8], names: Names) -> Result<Option<&'d [u8]>, MediumError> {
    for rec in records(dir) {
        let (at, rec) = rec?;
        let id = &rec[RECORD_HEADER..RECORD_HEADER + usize::from(rec[32])];
        if id == [0] || id == [1] || rec[25] & FLAG_ASSOCIATED != 0 {
            continue; // `.`, `..`, associated files
        }
        let matched = match names {
            Names::Plain => plain_name(id) == OVF_FILE.as_bytes(),
            Names::Joliet => joliet_matches(id),
            Names::RockRidge(skip) => match rock_ridge_name(medium, rec, skip, at)? {
                Some(nm) => nm == OVF_FILE.as_bytes(),
                None => plain_name(id) == OVF_FILE.as_bytes(),
            },
        };
        if matched {
            return Ok(Some(rec));
        }
    }
    Ok(None)
}

/// A plain ISO 9660 name as the kernel shows it: lower case, no trailing `;1` or `.;1`, other
/// `;` (and `/`) as `.`, cut at a NUL byte.
pub(super) fn plain_name(id: &[u8]) -> Vec<u8> {
    let id = id.split(|&b| b == 0).next().unwrap_or(&[]);
    let id = id.strip_suffix(b".;1").or_else(|| id.strip_suffix(b";1")).unwrap_or(id);
    id.iter()
        .map(|&c| match c {
            b';' | b'/' => b'.',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Whether a Joliet (UCS-2 big-endian) name is `ovf-env.xml`, ignoring ASCII case, a trailing
/// `;1` and trailing dots.
pub(super) fn joliet_matches(id: &[u8]) -> bool {
    let units = id.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
    let Ok(name) = char::decode_utf16(units).collect::<Result<String, _>>() else { return false };
    let name = name.strip_suffix(";1").unwrap_or(&name);
    name.trim_end_matches('.').eq_ignore_ascii_case(OVF_FILE)
}

/// The Rock Ridge `NM` name of a record (its pieces joined), following SUSP continuation areas.
fn rock_ridge_name(
    medium: &dyn Medium,
    rec: &[u8],
    skip: u8,
    at: usize,
) -> Result<Option<Vec<u8>>, MediumError> {
    let what =
        || format!("ISO 9660: Rock Ridge entries of the directory record at byte {at} of the root directory");
    let mut area = system_use(rec).get(usize::from(skip)..).unwrap_or(&[]).to_vec();
    let mut name: Option<Vec<u8>> = None;
    for _ in 0..=MAX_CONTINUATIONS {
        let mut next = None;
        let mut i = 0usize;
        // Entries: signature (2), length (1), version (1), data. Fewer than 4 bytes left is padding.
        while i + 4 <= area.len() {
            let len = usize::from(area[i + 2]);
            if len < 4 || i + len > area.len() {
                return invalid(format!("{}: entry of length {len} at byte {i}", what()));
            }
            let entry = &area[i..i + len];
            match &entry[0..2] {
                b"NM" if len >= 5 => {
                    let flags = entry[4];
                    if flags & 0x06 != 0 {
                        return Ok(None); // names `.` or `..`
                    }
                    name.get_or_insert_with(Vec::new).extend_from_slice(&entry[5..]);
                }
                b"CE" if len >= 28 => {
                    let block = both32(entry, 4, &what())?;
                    let offset = both32(entry, 12, &what())?;
                    let length = both32(entry, 20, &what())?;
                    next = Some((u64::from(block), offset as usize, length as usize));
                }
                b"ST" => break,
                _ => {}
            }
            i += len;
        }
        let Some((block, offset, length)) = next else { return Ok(name) };
        if offset.checked_add(length).is_none_or(|end| end > SECTOR) {
            return invalid(format!("{}: continuation area at byte {offset} ({length} bytes) of sector {block} crosses the sector", what()));
        }
        let sector = read(medium, "ISO 9660: a Rock Ridge continuation area", block, 1)?;
        area = sector[offset..offset + length].to_vec();
    }
    invalid(format!("{}: more than {MAX_CONTINUATIONS} continuation areas", what()))
}

fn read_file(medium: &dyn Medium, rec: &[u8]) -> Result<Option<Vec<u8>>, MediumError> {
    let what = format!("ISO 9660: the directory record of {OVF_FILE}");
    let flags = rec[25];
    if flags & FLAG_DIRECTORY != 0 {
        return invalid(format!("{what}: it is a directory"));
    }
    if flags & FLAG_MULTI_EXTENT != 0 {
        return unsupported(format!("ISO 9660: {OVF_FILE} is a multi-extent file (not read directly)"));
    }
    if rec[26] != 0 || rec[27] != 0 {
        return unsupported(format!("ISO 9660: {OVF_FILE} is recorded interleaved (not read directly)"));
    }
    let extent = record_extent(rec, &what)?;
    if extent.len > Document::Ovf.limit() {
        return Err(Document::Ovf.too_large().into());
    }
    if extent.len == 0 {
        return Ok(Some(Vec::new()));
    }
    let mut bytes =
        read(medium, &format!("ISO 9660: the data of {OVF_FILE}"), extent.sector, sectors_for(extent.len))?;
    bytes.truncate(extent.len as usize);
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ucs2(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    #[test]
    fn plain_names_are_shown_as_the_kernel_shows_them() {
        assert_eq!(plain_name(b"OVF-ENV.XML;1"), b"ovf-env.xml");
        assert_eq!(plain_name(b"OVF-ENV.XML"), b"ovf-env.xml");
        assert_eq!(plain_name(b"README.;1"), b"readme");
        // Only version 1 is dropped; other `;` become dots.
        assert_eq!(plain_name(b"OVF-ENV.XML;2"), b"ovf-env.xml.2");
        // Level 1 maps `-` to `_`: not the same name.
        assert_ne!(plain_name(b"OVF_ENV.XML;1"), b"ovf-env.xml");
        assert_eq!(plain_name(b"OVF-ENV.XML\0junk"), b"ovf-env.xml");
    }

    #[test]
    fn joliet_names_ignore_case_version_and_trailing_dots() {
        assert!(joliet_matches(&ucs2("ovf-env.xml")));
        assert!(joliet_matches(&ucs2("OVF-ENV.XML;1")));
        assert!(joliet_matches(&ucs2("Ovf-Env.Xml..")));
        assert!(!joliet_matches(&ucs2("ovf-env.xml;2")));
        assert!(!joliet_matches(&ucs2("ovf-env.xm")));
        // A lone surrogate is no name at all.
        let mut bad = ucs2("ovf-env.xml");
        bad.extend_from_slice(&[0xD8, 0x00]);
        assert!(!joliet_matches(&bad));
    }
}
