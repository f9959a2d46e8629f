//! `ovf-env.xml` from the root directory of a UDF volume (ECMA-167 as profiled by OSTA UDF 1.02
//! to 2.01), the filesystem of Azure's provisioning DVD and of ISO/UDF bridge images.
//!
//! The path through the volume: the Anchor Volume Descriptor Pointer (sector 256, else N-256 or
//! the last sector N-1) gives the Main Volume Descriptor Sequence (the Reserve one when the Main
//! one is unreadable); its Partition Descriptors and Logical Volume Descriptor give the block size
//! and the partition maps; the Logical Volume Descriptor points to the File Set Descriptor, which
//! points to the root directory's File Entry (or Extended File Entry). The root's data (embedded
//! in its entry, or in extents listed by short or long allocation descriptors, continued in
//! Allocation Extent Descriptors) is a run of File Identifier Descriptors; the one named
//! `ovf-env.xml` (OSTA compressed unicode, 8 or 16 bits, matched exactly, as the kernel does)
//! points to the file's entry, and that to its data.
//!
//! Every descriptor's tag is checked as the kernel checks it: identifier, checksum, version 2 or 3,
//! location, and CRC over the length it gives. Type 2 partition maps (virtual, sparable and UDF 2.50
//! metadata partitions), logical blocks other than 2048 bytes, ICB strategy 4096, extended
//! allocation descriptors and symbolic links are [`MediumError::Unsupported`]: left to the kernel.

use crate::base::limits::Document;
use crate::host::dvd::medium::{
    invalid, read, sectors_for, u16le, u32le, u64le, unsupported, Medium, MediumError, MAX_DIRECTORY_BYTES,
    SECTOR,
};
use crate::host::dvd::OVF_FILE;

const TAG_AVDP: u16 = 2;
const TAG_VDP: u16 = 3;
const TAG_PD: u16 = 5;
const TAG_LVD: u16 = 6;
const TAG_TD: u16 = 8;
const TAG_FSD: u16 = 256;
const TAG_FID: u16 = 257;
const TAG_AED: u16 = 258;
const TAG_IE: u16 = 259;
const TAG_FE: u16 = 261;
const TAG_EFE: u16 = 266;
/// Volume descriptor tags that may appear in a sequence and are not needed here (primary,
/// implementation use, unallocated space).
const TAGS_SKIPPED: [u16; 3] = [1, 4, 7];

/// Sectors looked at in one Volume Descriptor Sequence, pointers to further extents followed.
const MAX_SEQUENCE_SECTORS: u64 = 256;
const MAX_SEQUENCE_POINTERS: usize = 8;
const MAX_PARTITION_MAPS: u32 = 64;
/// Allocation Extent Descriptors followed, and extents accepted, per file.
const MAX_CONTINUATIONS: usize = 64;
const MAX_EXTENTS: usize = 4096;

const FILE_TYPE_UNSPECIFIED: u8 = 0;
const FILE_TYPE_DIRECTORY: u8 = 4;
const FILE_TYPE_REGULAR: u8 = 5;
const FILE_TYPE_SYMLINK: u8 = 12;
const FILE_TYPE_REALTIME: u8 = 249;

const FID_HIDDEN: u8 = 0x01;
const FID_DIRECTORY: u8 = 0x02;
const FID_DELETED: u8 = 0x04;
const FID_PARENT: u8 = 0x08;

/// A logical block address: a block in the partition of a partition map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LbAddr {
    block: u32,
    partition: u16,
}

/// A `long_ad`: extent length (the low 30 bits of the first field) and where.
fn long_ad(b: &[u8], at: usize) -> (u32, LbAddr) {
    (u32le(b, at) & 0x3FFF_FFFF, LbAddr { block: u32le(b, at + 4), partition: u16le(b, at + 8) })
}

/// An `extent_ad`: length in bytes, location in sectors.
#[derive(Debug, Clone, Copy)]
struct ExtentAd {
    len: u32,
    sector: u32,
}

fn extent_ad(b: &[u8], at: usize) -> ExtentAd {
    ExtentAd { len: u32le(b, at), sector: u32le(b, at + 4) }
}

/// CRC-16/CCITT as ECMA-167 7.2.6 defines it (polynomial 0x1021, initial value 0).
pub(super) fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// Check a descriptor tag: identifier in `ids`, checksum, version, location and CRC. `d` is the
/// whole descriptor as far as it may extend. Returns the identifier.
fn check_tag(d: &[u8], ids: &[u16], location: u32, what: &str) -> Result<u16, MediumError> {
    if d.len() < 16 {
        return invalid(format!("{what}: shorter than a descriptor tag"));
    }
    let id = u16le(d, 0);
    if !ids.contains(&id) {
        return invalid(format!("{what}: tag identifier {id}, expected {}", join(ids)));
    }
    let sum = d[..16].iter().enumerate().filter(|&(i, _)| i != 4).fold(0u8, |s, (_, &b)| s.wrapping_add(b));
    if sum != d[4] {
        return invalid(format!("{what}: bad tag checksum"));
    }
    let version = u16le(d, 2);
    if version != 2 && version != 3 {
        return invalid(format!("{what}: descriptor version {version}"));
    }
    let recorded_at = u32le(d, 12);
    if recorded_at != location {
        return invalid(format!("{what}: tag location {recorded_at}, expected {location}"));
    }
    let crc_len = usize::from(u16le(d, 10));
    let Some(body) = d.get(16..16 + crc_len) else {
        return invalid(format!("{what}: CRC length {crc_len} runs past the descriptor"));
    };
    if crc16(body) != u16le(d, 8) {
        return invalid(format!("{what}: bad descriptor CRC"));
    }
    Ok(id)
}

fn join(ids: &[u16]) -> String {
    ids.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
}

/// A partition as a type 1 map sees it.
#[derive(Debug, Clone, Copy)]
struct Partition {
    number: u16,
    start: u64,
    blocks: u64,
}

/// The volume as the Logical Volume Descriptor describes it: partition maps, indexed by partition
/// reference number.
struct Volume<'m> {
    medium: &'m dyn Medium,
    maps: Vec<Partition>,
}

/// A File Entry or Extended File Entry, as far as it is needed.
struct Entry {
    at: LbAddr,
    file_type: u8,
    info_len: u64,
    /// 0 short, 1 long, 2 extended allocation descriptors, 3 data embedded in `ads`.
    ad_kind: u16,
    ads: Vec<u8>,
}

/// One extent of a file's data.
#[derive(Debug, Clone, Copy)]
struct Extent {
    len: u32,
    /// 0 recorded; 1 and 2 not recorded (read as zeros).
    kind: u32,
    at: LbAddr,
}

/// A file's data and the block each byte came from (for the File Identifier Descriptors' tag
/// locations).
struct Data {
    bytes: Vec<u8>,
    /// (start in `bytes`, length, first block); all of an embedded file's bytes are in its entry's
    /// block.
    pieces: Vec<(u64, u64, u32)>,
    embedded_in: Option<u32>,
}

impl Data {
    fn block_of(&self, offset: u64) -> Option<u32> {
        if let Some(block) = self.embedded_in {
            return Some(block);
        }
        let &(start, _, block) = self.pieces.iter().find(|&&(s, l, _)| offset >= s && offset - s < l)?;
        u32::try_from((offset - start) / SECTOR as u64).ok().and_then(|n| block.checked_add(n))
    }
}

/// `ovf-env.xml` from the root directory of the UDF volume on `medium`.
pub fn read_ovf(medium: &dyn Medium) -> Result<Option<Vec<u8>>, MediumError> {
    let (main, reserve) = anchor(medium)?;
    let (pds, lvd) = match sequence(medium, main, "Main") {
        Ok(found) => found,
        Err(e) => sequence(medium, reserve, "Reserve").map_err(|_| e)?,
    };
    let volume = Volume::new(medium, &pds, &lvd)?;
    let (_, fsd_at) = long_ad(&lvd, 248);
    let fsd_sector = volume.sector_of(fsd_at, 1, "the File Set Descriptor")?;
    let fsd = read(medium, "UDF: the File Set Descriptor", fsd_sector, 1)?;
    check_tag(&fsd, &[TAG_FSD], fsd_at.block, &format!("UDF: File Set Descriptor at sector {fsd_sector}"))?;
    let (_, root_at) = long_ad(&fsd, 400);
    let root = volume.entry(root_at, "the root directory")?;
    if root.file_type != FILE_TYPE_DIRECTORY {
        return invalid(format!("UDF: the root directory's File Entry has file type {}", root.file_type));
    }
    if root.info_len > MAX_DIRECTORY_BYTES {
        return unsupported(format!(
            "UDF: the root directory of {} bytes is larger than the {MAX_DIRECTORY_BYTES} read directly",
            root.info_len
        ));
    }
    let dir = volume.data(&root, "the root directory")?;
    let Some(file_at) = find(&dir)? else { return Ok(None) };
    let file = volume.entry(file_at, OVF_FILE)?;
    match file.file_type {
        FILE_TYPE_REGULAR | FILE_TYPE_UNSPECIFIED | FILE_TYPE_REALTIME => {}
        FILE_TYPE_DIRECTORY => return invalid(format!("UDF: {OVF_FILE} is a directory")),
        FILE_TYPE_SYMLINK => {
            return unsupported(format!("UDF: {OVF_FILE} is a symbolic link (not followed directly)"))
        }
        other => return invalid(format!("UDF: {OVF_FILE} has file type {other}")),
    }
    if file.info_len > Document::Ovf.limit() {
        return Err(Document::Ovf.too_large().into());
    }
    Ok(Some(volume.data(&file, OVF_FILE)?.bytes))
}

/// The Main and Reserve Volume Descriptor Sequence extents from the first valid anchor.
fn anchor(medium: &dyn Medium) -> Result<(ExtentAd, ExtentAd), MediumError> {
    let n = medium.sectors();
    let mut first_error = None;
    let mut places = vec![256];
    places.extend(n.checked_sub(256).filter(|&s| s > 256));
    places.extend(n.checked_sub(1).filter(|&s| s > 256));
    places.dedup();
    for sector in places {
        if sector >= n {
            continue;
        }
        let d = read(medium, "UDF: Anchor Volume Descriptor Pointer", sector, 1)?;
        if u16le(&d, 0) != TAG_AVDP {
            continue;
        }
        let location = u32::try_from(sector).unwrap_or(u32::MAX);
        let what = format!("UDF: Anchor Volume Descriptor Pointer at sector {sector}");
        match check_tag(&d, &[TAG_AVDP], location, &what) {
            Ok(_) => return Ok((extent_ad(&d, 16), extent_ad(&d, 24))),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| {
        MediumError::Unsupported(format!(
            "UDF: no Anchor Volume Descriptor Pointer of {SECTOR}-byte sectors at sector 256, N-256 or N-1 \
             (N = {n}); other sector sizes are not read directly"
        ))
    }))
}

/// The Partition Descriptors and the Logical Volume Descriptor of a Volume Descriptor Sequence
/// (for each, the one with the highest Volume Descriptor Sequence Number).
fn sequence(
    medium: &dyn Medium,
    extent: ExtentAd,
    which: &str,
) -> Result<(Vec<Vec<u8>>, Vec<u8>), MediumError> {
    let (mut len, mut sector) = (u64::from(extent.len) / SECTOR as u64, u64::from(extent.sector));
    let mut pds: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut lvd: Option<(u32, Vec<u8>)> = None;
    let (mut seen, mut pointers) = (0u64, 0usize);
    while len > 0 {
        seen += 1;
        if seen > MAX_SEQUENCE_SECTORS {
            return invalid(format!(
                "UDF: {which} Volume Descriptor Sequence: more than {MAX_SEQUENCE_SECTORS} sectors"
            ));
        }
        let d = read(medium, &format!("UDF: {which} Volume Descriptor Sequence"), sector, 1)?;
        let id = u16le(&d, 0);
        if id == 0 {
            break; // an unrecorded sector ends the sequence
        }
        let what =
            format!("UDF: descriptor {id} of the {which} Volume Descriptor Sequence at sector {sector}");
        let location = u32::try_from(sector).unwrap_or(u32::MAX);
        let mut ids = vec![TAG_VDP, TAG_PD, TAG_LVD, TAG_TD];
        ids.extend(TAGS_SKIPPED);
        check_tag(&d, &ids, location, &what)?;
        let number = u32le(&d, 16);
        match id {
            TAG_TD => break,
            TAG_VDP => {
                pointers += 1;
                if pointers > MAX_SEQUENCE_POINTERS {
                    return invalid(format!(
                        "{what}: more than {MAX_SEQUENCE_POINTERS} Volume Descriptor Pointers"
                    ));
                }
                let next = extent_ad(&d, 20);
                (len, sector) = (u64::from(next.len) / SECTOR as u64, u64::from(next.sector));
                continue;
            }
            TAG_PD => {
                let partition = u16le(&d, 22);
                match pds.iter_mut().find(|(_, p)| u16le(p, 22) == partition) {
                    Some(slot) if slot.0 < number => *slot = (number, d),
                    Some(_) => {}
                    None => pds.push((number, d)),
                }
            }
            TAG_LVD if lvd.as_ref().is_none_or(|(n, _)| *n < number) => lvd = Some((number, d)),
            _ => {}
        }
        len -= 1;
        sector += 1;
    }
    let Some((_, lvd)) = lvd else {
        return invalid(format!(
            "UDF: the {which} Volume Descriptor Sequence has no Logical Volume Descriptor"
        ));
    };
    Ok((pds.into_iter().map(|(_, d)| d).collect(), lvd))
}

impl<'m> Volume<'m> {
    fn new(medium: &'m dyn Medium, pds: &[Vec<u8>], lvd: &[u8]) -> Result<Self, MediumError> {
        let block = u32le(lvd, 212);
        if block as usize != SECTOR {
            return unsupported(format!(
                "UDF: logical blocks of {block} bytes (only {SECTOR} are read directly)"
            ));
        }
        let table_len = u32le(lvd, 264) as usize;
        let count = u32le(lvd, 268);
        let Some(table) = lvd.get(440..440 + table_len) else {
            return invalid(format!(
                "UDF: Logical Volume Descriptor: partition map table of {table_len} bytes runs past it"
            ));
        };
        if count > MAX_PARTITION_MAPS {
            return invalid(format!("UDF: Logical Volume Descriptor: {count} partition maps"));
        }
        let mut maps = Vec::new();
        let mut at = 0usize;
        for i in 0..count {
            let (kind, len) = match table.get(at..at + 2) {
                Some(h) => (h[0], usize::from(h[1])),
                None => {
                    return invalid(format!(
                        "UDF: Logical Volume Descriptor: partition map {i} runs past the table"
                    ))
                }
            };
            let Some(map) = table.get(at..at + len).filter(|_| len >= 2) else {
                return invalid(format!(
                    "UDF: Logical Volume Descriptor: partition map {i} of {len} bytes runs past the table"
                ));
            };
            match (kind, len) {
                (1, 6) => {
                    let number = u16le(map, 4);
                    let Some(pd) = pds.iter().find(|pd| u16le(pd, 22) == number) else {
                        return invalid(format!("UDF: partition map {i} names partition {number}, which has no Partition Descriptor"));
                    };
                    maps.push(Partition {
                        number,
                        start: u64::from(u32le(pd, 188)),
                        blocks: u64::from(u32le(pd, 192)),
                    });
                }
                (2, 64) => {
                    let ident = String::from_utf8_lossy(&map[5..28]).trim_end_matches('\0').to_string();
                    return unsupported(format!(
                        "UDF: partition map {i} is a type 2 map ({ident:?}): virtual, sparable and metadata partitions are \
                         not read directly"
                    ));
                }
                _ => return invalid(format!("UDF: partition map {i}: type {kind} of {len} bytes")),
            }
            at += len;
        }
        Ok(Self { medium, maps })
    }

    /// The sector of `count` blocks from `at`, all inside its partition.
    fn sector_of(&self, at: LbAddr, count: u64, what: &str) -> Result<u64, MediumError> {
        let Some(p) = self.maps.get(usize::from(at.partition)) else {
            return invalid(format!(
                "UDF: {what}: partition reference {}, but the volume has {} partition maps",
                at.partition,
                self.maps.len()
            ));
        };
        if u64::from(at.block) + count > p.blocks {
            return invalid(format!(
                "UDF: {what}: block {} ({count} blocks) lies beyond partition {} ({} blocks)",
                at.block, p.number, p.blocks
            ));
        }
        Ok(p.start + u64::from(at.block))
    }

    /// The File Entry or Extended File Entry at `at`, of the file called `name` in errors.
    fn entry(&self, at: LbAddr, name: &str) -> Result<Entry, MediumError> {
        let sector = self.sector_of(at, 1, &format!("the File Entry of {name}"))?;
        let d = read(self.medium, &format!("UDF: the File Entry of {name}"), sector, 1)?;
        let what = format!("UDF: File Entry of {name} at sector {sector}");
        let id = check_tag(&d, &[TAG_FE, TAG_EFE, TAG_IE], at.block, &what)?;
        if id == TAG_IE {
            return unsupported(format!("{what}: an Indirect Entry (ICB strategy 4096, not read directly)"));
        }
        let strategy = u16le(&d, 20);
        if strategy != 4 {
            return unsupported(format!("{what}: ICB strategy {strategy} (only 4 is read directly)"));
        }
        let fixed = if id == TAG_FE { 176 } else { 216 };
        let l_ea = u64::from(u32le(&d, fixed - 8));
        let l_ad = u64::from(u32le(&d, fixed - 4));
        let end = fixed as u64 + l_ea + l_ad;
        if end > SECTOR as u64 {
            return invalid(format!("{what}: {l_ea} bytes of extended attributes and {l_ad} of allocation descriptors run past the block"));
        }
        Ok(Entry {
            at,
            file_type: d[27],
            info_len: u64le(&d, 56),
            ad_kind: u16le(&d, 34) & 7,
            ads: d[(fixed as u64 + l_ea) as usize..end as usize].to_vec(),
        })
    }

    /// The extents an entry's allocation descriptors list, following Allocation Extent Descriptors.
    fn extents(&self, entry: &Entry, name: &str) -> Result<Vec<Extent>, MediumError> {
        let size = match entry.ad_kind {
            0 => 8,
            1 => 16,
            2 => {
                return unsupported(format!(
                    "UDF: {name}: extended allocation descriptors (not read directly)"
                ))
            }
            kind => {
                return invalid(format!("UDF: the File Entry of {name}: allocation descriptor type {kind}"))
            }
        };
        let mut area = entry.ads.clone();
        let mut out = Vec::new();
        let mut continuations = 0usize;
        'areas: loop {
            if area.len() % size != 0 {
                return invalid(format!(
                    "UDF: {name}: allocation descriptors of {} bytes, not a multiple of {size}",
                    area.len()
                ));
            }
            for ad in area.chunks_exact(size) {
                let raw = u32le(ad, 0);
                let (len, kind) = (raw & 0x3FFF_FFFF, raw >> 30);
                if len == 0 {
                    break 'areas;
                }
                let at = if size == 8 {
                    LbAddr { block: u32le(ad, 4), partition: entry.at.partition }
                } else {
                    LbAddr { block: u32le(ad, 4), partition: u16le(ad, 8) }
                };
                if kind == 3 {
                    continuations += 1;
                    if continuations > MAX_CONTINUATIONS {
                        return invalid(format!(
                            "UDF: {name}: more than {MAX_CONTINUATIONS} Allocation Extent Descriptors"
                        ));
                    }
                    let sector =
                        self.sector_of(at, 1, &format!("an Allocation Extent Descriptor of {name}"))?;
                    let d = read(
                        self.medium,
                        &format!("UDF: an Allocation Extent Descriptor of {name}"),
                        sector,
                        1,
                    )?;
                    let what = format!("UDF: Allocation Extent Descriptor of {name} at sector {sector}");
                    check_tag(&d, &[TAG_AED], at.block, &what)?;
                    let l_ad = u32le(&d, 20) as usize;
                    let Some(next) = d.get(24..24 + l_ad) else {
                        return invalid(format!(
                            "{what}: {l_ad} bytes of allocation descriptors run past the block"
                        ));
                    };
                    area = next.to_vec();
                    continue 'areas;
                }
                if out.len() >= MAX_EXTENTS {
                    return invalid(format!("UDF: {name}: more than {MAX_EXTENTS} extents"));
                }
                out.push(Extent { len, kind, at });
            }
            break;
        }
        Ok(out)
    }

    /// The data of an entry (its information length, which the caller has capped).
    fn data(&self, entry: &Entry, name: &str) -> Result<Data, MediumError> {
        if entry.ad_kind == 3 {
            let Some(bytes) = usize::try_from(entry.info_len).ok().and_then(|n| entry.ads.get(..n)) else {
                return invalid(format!(
                    "UDF: the File Entry of {name}: information length {} is more than its {} embedded bytes",
                    entry.info_len,
                    entry.ads.len()
                ));
            };
            return Ok(Data { bytes: bytes.to_vec(), pieces: Vec::new(), embedded_in: Some(entry.at.block) });
        }
        let mut data = Data { bytes: Vec::new(), pieces: Vec::new(), embedded_in: None };
        let mut left = entry.info_len;
        for e in self.extents(entry, name)? {
            if left == 0 {
                break;
            }
            let take = left.min(u64::from(e.len));
            if take < left && e.len as usize % SECTOR != 0 {
                return invalid(format!(
                    "UDF: {name}: an extent of {} bytes that is not the last is not whole blocks",
                    e.len
                ));
            }
            let start = data.bytes.len() as u64;
            if e.kind == 0 {
                let sector = self.sector_of(e.at, sectors_for(take), &format!("the data of {name}"))?;
                let mut bytes =
                    read(self.medium, &format!("UDF: the data of {name}"), sector, sectors_for(take))?;
                bytes.truncate(take as usize);
                data.bytes.extend_from_slice(&bytes);
                data.pieces.push((start, take, e.at.block));
            } else {
                data.bytes.resize(data.bytes.len() + take as usize, 0);
            }
            left -= take;
        }
        if left > 0 {
            return invalid(format!(
                "UDF: {name}: allocation descriptors cover {} bytes of an information length of {}",
                entry.info_len - left,
                entry.info_len
            ));
        }
        Ok(data)
    }
}

/// The ICB of the entry named `ovf-env.xml` in a directory's File Identifier Descriptors.
fn find(dir: &Data) -> Result<Option<LbAddr>, MediumError> {
    let bytes = &dir.bytes;
    let mut at = 0usize;
    while at < bytes.len() {
        let what = format!("UDF: File Identifier Descriptor at byte {at} of the root directory");
        let Some(head) = bytes.get(at..at + 38) else {
            return invalid(format!("{what}: truncated"));
        };
        let (l_fi, l_iu) = (usize::from(head[19]), usize::from(u16le(head, 36)));
        let total = (38 + l_iu + l_fi + 3) & !3;
        // The last descriptor's padding may be cut by the directory's length.
        let Some(fid) = bytes.get(at..(at + total).min(bytes.len())).filter(|f| f.len() >= 38 + l_iu + l_fi)
        else {
            return invalid(format!("{what}: {total} bytes run past the directory"));
        };
        let location = dir.block_of(at as u64).unwrap_or(u32::MAX);
        check_tag(fid, &[TAG_FID], location, &what)?;
        let characteristics = fid[18];
        if characteristics & (FID_HIDDEN | FID_DELETED | FID_PARENT) == 0 {
            let name = &fid[38 + l_iu..38 + l_iu + l_fi];
            if cs0_name(name).is_some_and(|n| n == OVF_FILE) {
                if characteristics & FID_DIRECTORY != 0 {
                    return invalid(format!("UDF: {OVF_FILE} is a directory"));
                }
                return Ok(Some(long_ad(fid, 20).1));
            }
        }
        at += total;
    }
    Ok(None)
}

/// An OSTA compressed unicode name: compression 8 (one byte a character, Latin-1) or 16 (UCS-2
/// big-endian). `None` for anything else, which names no file here.
pub(super) fn cs0_name(id: &[u8]) -> Option<String> {
    let (&compression, rest) = id.split_first()?;
    match compression {
        8 => Some(rest.iter().map(|&b| char::from(b)).collect()),
        16 if rest.len() % 2 == 0 => {
            let units = rest.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units).collect::<Result<String, _>>().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_ecma_167_example() {
        // ECMA-167 7.2.6: the CRC of the bytes 0x70 0x6A 0x77 is 0x3299.
        assert_eq!(crc16(&[0x70, 0x6A, 0x77]), 0x3299);
    }

    #[test]
    fn names_in_8_and_16_bit_compressed_unicode() {
        assert_eq!(cs0_name(b"\x08ovf-env.xml").as_deref(), Some("ovf-env.xml"));
        let mut wide = vec![16u8];
        wide.extend("ovf-env.xml".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(cs0_name(&wide).as_deref(), Some("ovf-env.xml"));
        assert_eq!(cs0_name(b"\x08\xe9t\xe9").as_deref(), Some("été"));
        wide.push(0);
        assert_eq!(cs0_name(&wide), None, "an odd number of bytes in a 16-bit name");
        assert_eq!(cs0_name(b"\x07ovf-env.xml"), None);
        assert_eq!(cs0_name(b""), None);
    }

    fn tagged(id: u16, location: u32, body_len: usize) -> Vec<u8> {
        let mut d = vec![0u8; 16 + body_len];
        d[0..2].copy_from_slice(&id.to_le_bytes());
        d[2..4].copy_from_slice(&2u16.to_le_bytes());
        d[12..16].copy_from_slice(&location.to_le_bytes());
        for (i, b) in d[16..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let crc = crc16(&d[16..]);
        d[8..10].copy_from_slice(&crc.to_le_bytes());
        d[10..12].copy_from_slice(&(body_len as u16).to_le_bytes());
        d[4] = d[..16].iter().enumerate().filter(|&(i, _)| i != 4).fold(0u8, |s, (_, &b)| s.wrapping_add(b));
        d
    }

    #[test]
    fn tags_are_checked_like_the_kernel_checks_them() {
        let good = tagged(TAG_FE, 261, 100);
        assert_eq!(check_tag(&good, &[TAG_FE], 261, "X").expect("good"), TAG_FE);
        let err = |d: &[u8]| {
            check_tag(d, &[TAG_FE], 261, "UDF: File Entry of ovf-env.xml at sector 300")
                .expect_err("bad")
                .to_string()
        };
        let mut bad = good.clone();
        bad[6] ^= 1; // the serial number, covered by the checksum only
        assert_eq!(err(&bad), "UDF: File Entry of ovf-env.xml at sector 300: bad tag checksum");
        let mut bad = good.clone();
        bad[50] ^= 1;
        assert_eq!(err(&bad), "UDF: File Entry of ovf-env.xml at sector 300: bad descriptor CRC");
        assert_eq!(
            err(&tagged(TAG_FE, 262, 100)),
            "UDF: File Entry of ovf-env.xml at sector 300: tag location 262, expected 261"
        );
        assert_eq!(
            err(&tagged(TAG_EFE, 261, 100)),
            "UDF: File Entry of ovf-env.xml at sector 300: tag identifier 266, expected 261"
        );
        assert_eq!(
            err(&good[..60]),
            "UDF: File Entry of ovf-env.xml at sector 300: CRC length 100 runs past the descriptor"
        );
        assert_eq!(
            err(&good[..10]),
            "UDF: File Entry of ovf-env.xml at sector 300: shorter than a descriptor tag"
        );
    }
}
