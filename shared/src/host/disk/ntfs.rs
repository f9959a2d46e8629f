//! The names in the root directory of an NTFS volume, read from its bytes: no ntfs-3g, no mount.
//!
//! Used for one decision only: is partition 1 of the resource disk Azure's fresh NTFS placeholder
//! (nothing in its root but the warning file and what Windows makes), so that it may be formatted?
//! The reader therefore errs on the side of "cannot tell": anything it does not fully understand
//! (an attribute list, a torn record, a loop in the index, more entries than a placeholder holds)
//! is an error, and an error makes the decision refuse to format.
//!
//! The path through the volume: the boot sector gives the cluster size, the record sizes and where
//! `$MFT` starts; record 0 (`$MFT` itself) gives the runs of the MFT; record 5 is the root
//! directory, whose `$I30` index is a B+ tree: entries in `$INDEX_ROOT`, and, for larger
//! directories, in `INDX` blocks of `$INDEX_ALLOCATION` reached through the entries' sub-node
//! pointers. Every multi-sector structure carries an update sequence array ("fixups") that is
//! checked and undone before it is read. Records below 16 are NTFS's own metadata files (`$MFT`,
//! `$LogFile`, `.`, ...), which are not listed, as `ntfsls` does not list them.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// MFT records below this one are NTFS's own metadata files.
const FIRST_USER_RECORD: u64 = 16;
/// The root directory's MFT record.
const ROOT_RECORD: u64 = 5;
/// Fixups protect every 512 bytes of a record, whatever the sector size.
const FIXUP_STRIDE: usize = 512;
/// Bounds on what a sane volume has; a placeholder is far below each.
const MAX_RECORD_SIZE: usize = 64 * 1024;
const MAX_CLUSTER_SIZE: u64 = 2 * 1024 * 1024;
const MAX_INDEX_NODES: usize = 1024;
const MAX_NAMES: usize = 4096;
const MAX_RUNS: usize = 4096;
const MAX_ATTRIBUTE_LIST: usize = 256 * 1024;

const ATTR_ATTRIBUTE_LIST: u32 = 0x20;
const ATTR_DATA: u32 = 0x80;
const ATTR_INDEX_ROOT: u32 = 0x90;
const ATTR_INDEX_ALLOCATION: u32 = 0xA0;
const ATTR_END: u32 = 0xFFFF_FFFF;

/// Why the root directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NtfsError {
    #[error("cannot read {what} at byte {offset} of {device}: {source}")]
    Io { what: &'static str, device: String, offset: u64, source: std::io::Error },
    #[error("{device}: not an NTFS volume wala can read: {why}")]
    Invalid { device: String, why: String },
}

/// The names in the root directory of the NTFS volume that starts `offset` bytes into `device`
/// and is `len` bytes long, without NTFS's metadata files and without DOS short names.
pub fn root_names(device: &Path, offset: u64, len: u64) -> Result<Vec<String>, NtfsError> {
    let file = File::open(device).map_err(|source| NtfsError::Io {
        what: "the device",
        device: device.display().to_string(),
        offset,
        source,
    })?;
    let volume = Volume { file: &file, base: offset, len };
    volume.root_names().map_err(|e| match e {
        Fault::Io { what, offset, source } => {
            NtfsError::Io { what, device: device.display().to_string(), offset, source }
        }
        Fault::Invalid(why) => NtfsError::Invalid { device: device.display().to_string(), why },
    })
}

enum Fault {
    Io { what: &'static str, offset: u64, source: std::io::Error },
    Invalid(String),
}

fn invalid<T>(why: impl Into<String>) -> Result<T, Fault> {
    Err(Fault::Invalid(why.into()))
}

struct Volume<'a> {
    file: &'a File,
    base: u64,
    len: u64,
}

/// What the boot sector says.
struct Geometry {
    cluster: u64,
    mft_offset: u64,
    record_size: usize,
    index_size: usize,
}

/// A run of clusters: `len` clusters of the stream from `vcn` sit at `lcn` (none: sparse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    vcn: u64,
    lcn: Option<u64>,
    len: u64,
}

impl Volume<'_> {
    fn read(&self, what: &'static str, offset: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return invalid(format!("{what} at byte {offset} lies beyond the end of the volume"));
        }
        self.file.read_exact_at(buf, self.base + offset).map_err(|source| Fault::Io {
            what,
            offset: self.base + offset,
            source,
        })
    }

    fn root_names(&self) -> Result<Vec<String>, Fault> {
        let mut boot = [0u8; 512];
        self.read("the boot sector", 0, &mut boot)?;
        let geo = geometry(&boot)?;
        let mut mft0 = vec![0u8; geo.record_size];
        self.read("MFT record 0", geo.mft_offset, &mut mft0)?;
        apply_fixups(&mut mft0, b"FILE", "MFT record 0")?;
        let mft_runs = match find_attr(&mft0, ATTR_DATA, "")? {
            Some(a) if a.non_resident() => a.runs()?,
            _ => return invalid("MFT record 0 has no non-resident $DATA"),
        };
        let mut root = vec![0u8; geo.record_size];
        let pos = ROOT_RECORD * geo.record_size as u64;
        self.read_stream(&mft_runs, geo.cluster, pos, &mut root, "the root directory's MFT record")?;
        apply_fixups(&mut root, b"FILE", "the root directory's MFT record")?;
        if u16le(&root, 0x16) & 0x3 != 0x3 {
            return invalid("MFT record 5 is not an in-use directory");
        }
        let records = self.root_records(root, &mft_runs, &geo)?;
        let index_root = match find_in(&records, ATTR_INDEX_ROOT)? {
            Some(a) if !a.non_resident() => a.resident_value()?,
            _ => return invalid("the root directory has no resident $INDEX_ROOT $I30"),
        };
        let mut names = Vec::new();
        let mut pending = Vec::new();
        if index_root.len() < 32 {
            return invalid("$INDEX_ROOT is too short");
        }
        let (start, end) = entries_range(index_root, 16)?;
        read_entries(&index_root[start..end], &mut names, &mut pending)?;
        if pending.is_empty() {
            return Ok(names);
        }
        // $INDEX_ALLOCATION may be split over several records, each with its own runs.
        let mut alloc_runs = Vec::new();
        for record in &records {
            if let Some(a) = find_attr(record, ATTR_INDEX_ALLOCATION, "$I30")? {
                if !a.non_resident() {
                    return invalid("a resident $INDEX_ALLOCATION");
                }
                alloc_runs.extend(a.runs()?);
            }
        }
        if alloc_runs.is_empty() {
            return invalid("the root index has sub-nodes but no $INDEX_ALLOCATION $I30");
        }
        // VCNs in an index count clusters when a block is at least a cluster, else 512-byte units.
        let vcn_unit = if geo.index_size as u64 >= geo.cluster { geo.cluster } else { 512 };
        let mut seen = HashSet::new();
        let mut block = vec![0u8; geo.index_size];
        while let Some(vcn) = pending.pop() {
            if !seen.insert(vcn) {
                return invalid(format!("index block {vcn} is reached twice (a loop in the index)"));
            }
            if seen.len() > MAX_INDEX_NODES {
                return invalid(format!("the root index has more than {MAX_INDEX_NODES} blocks"));
            }
            let pos = vcn.checked_mul(vcn_unit).ok_or_else(|| Fault::Invalid(format!("index VCN {vcn}")))?;
            self.read_stream(&alloc_runs, geo.cluster, pos, &mut block, "an index block")?;
            apply_fixups(&mut block, b"INDX", "an index block")?;
            let (start, end) = entries_range(&block, 0x18)?;
            read_entries(&block[start..end], &mut names, &mut pending)?;
        }
        Ok(names)
    }

    /// The root directory's base record and, when it has an attribute list, the extension
    /// records that list names for its index attributes.
    fn root_records(&self, root: Vec<u8>, mft_runs: &[Run], geo: &Geometry) -> Result<Vec<Vec<u8>>, Fault> {
        let list = match find_attr(&root, ATTR_ATTRIBUTE_LIST, "")? {
            None => return Ok(vec![root]),
            Some(a) if !a.non_resident() => a.resident_value()?.to_vec(),
            Some(a) => {
                let size = usize::try_from(u64le(a.bytes, 0x30)).unwrap_or(usize::MAX);
                if size > MAX_ATTRIBUTE_LIST {
                    return invalid(format!("an attribute list of {size} bytes"));
                }
                let mut value = vec![0u8; size];
                self.read_stream(&a.runs()?, geo.cluster, 0, &mut value, "the attribute list")?;
                value
            }
        };
        let mut refs = Vec::new();
        let mut at = 0usize;
        while at + 0x1A <= list.len() {
            let kind = u32le(&list, at);
            let len = usize::from(u16le(&list, at + 4));
            if len < 0x1A || at + len > list.len() {
                return invalid(format!("an attribute list entry has a bad length {len}"));
            }
            let record = u64le(&list, at + 0x10) & 0x0000_FFFF_FFFF_FFFF;
            let wanted = kind == ATTR_INDEX_ROOT || kind == ATTR_INDEX_ALLOCATION;
            if wanted && record != ROOT_RECORD && !refs.contains(&record) {
                refs.push(record);
            }
            at += len;
        }
        let mut records = vec![root];
        for record in refs.into_iter().take(MAX_INDEX_NODES) {
            let mut buf = vec![0u8; geo.record_size];
            let pos = record
                .checked_mul(geo.record_size as u64)
                .ok_or_else(|| Fault::Invalid(format!("MFT record {record}")))?;
            self.read_stream(mft_runs, geo.cluster, pos, &mut buf, "an extension record of the root")?;
            apply_fixups(&mut buf, b"FILE", "an extension record of the root")?;
            if u64le(&buf, 0x20) & 0x0000_FFFF_FFFF_FFFF != ROOT_RECORD {
                return invalid(format!("MFT record {record} does not extend the root directory"));
            }
            records.push(buf);
        }
        Ok(records)
    }

    /// Read `buf.len()` bytes at `pos` of a non-resident stream, cluster run by cluster run.
    fn read_stream(
        &self,
        runs: &[Run],
        cluster: u64,
        pos: u64,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<(), Fault> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = pos + done as u64;
            let vcn = at / cluster;
            let Some(run) = runs.iter().find(|r| r.vcn <= vcn && vcn < r.vcn + r.len) else {
                return invalid(format!("{what}: cluster {vcn} of its stream is not allocated"));
            };
            let Some(lcn) = run.lcn else {
                return invalid(format!("{what}: cluster {vcn} of its stream is sparse"));
            };
            let run_end = (run.vcn + run.len) * cluster;
            let n = usize::try_from(run_end - at).unwrap_or(usize::MAX).min(buf.len() - done);
            let disk = (lcn + (vcn - run.vcn)) * cluster + at % cluster;
            self.read(what, disk, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }
}

fn u16le(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32le(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64le(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

fn geometry(boot: &[u8]) -> Result<Geometry, Fault> {
    if &boot[3..11] != b"NTFS    " {
        return invalid("no NTFS signature in the boot sector");
    }
    let sector = u64::from(u16le(boot, 0x0B));
    if !(256..=4096).contains(&sector) || !sector.is_power_of_two() {
        return invalid(format!("bytes per sector {sector}"));
    }
    let raw = boot[0x0D];
    let per_cluster = if raw <= 0x80 { u64::from(raw) } else { 1u64 << (256 - u32::from(raw)).min(31) };
    let cluster = sector * per_cluster;
    if per_cluster == 0 || !per_cluster.is_power_of_two() || cluster > MAX_CLUSTER_SIZE {
        return invalid(format!("sectors per cluster {raw:#x}"));
    }
    let size = |at: usize, what: &str| -> Result<usize, Fault> {
        let v = boot[at] as i8;
        let bytes =
            if v > 0 { u64::from(v.unsigned_abs()) * cluster } else { 1u64 << v.unsigned_abs().min(31) };
        match usize::try_from(bytes) {
            Ok(b) if (FIXUP_STRIDE..=MAX_RECORD_SIZE).contains(&b) && b % FIXUP_STRIDE == 0 => Ok(b),
            _ => invalid(format!("{what} size {bytes}")),
        }
    };
    let record_size = size(0x40, "MFT record")?;
    let index_size = size(0x44, "index block")?;
    let mft_offset = u64le(boot, 0x30)
        .checked_mul(cluster)
        .ok_or_else(|| Fault::Invalid("the MFT's cluster number overflows".into()))?;
    Ok(Geometry { cluster, mft_offset, record_size, index_size })
}

/// Check and undo the update sequence array of a record or index block.
fn apply_fixups(buf: &mut [u8], magic: &[u8; 4], what: &str) -> Result<(), Fault> {
    if &buf[..4] != magic {
        return invalid(format!("{what} does not start with {}", String::from_utf8_lossy(magic)));
    }
    let usa = usize::from(u16le(buf, 4));
    let count = usize::from(u16le(buf, 6));
    if count < 2 || (count - 1) * FIXUP_STRIDE != buf.len() || usa + 2 * count > buf.len() {
        return invalid(format!("{what} has a bad update sequence array ({count} entries at {usa})"));
    }
    let usn = [buf[usa], buf[usa + 1]];
    for i in 1..count {
        let end = i * FIXUP_STRIDE - 2;
        if buf[end..end + 2] != usn {
            return invalid(format!("{what} is torn (sector {i} has a stale update sequence number)"));
        }
        buf[end] = buf[usa + 2 * i];
        buf[end + 1] = buf[usa + 2 * i + 1];
    }
    Ok(())
}

/// One attribute of an MFT record.
struct Attr<'a> {
    bytes: &'a [u8],
}

impl<'a> Attr<'a> {
    fn non_resident(&self) -> bool {
        self.bytes[8] != 0
    }

    fn name(&self) -> Result<String, Fault> {
        let len = usize::from(self.bytes[9]);
        let at = usize::from(u16le(self.bytes, 0x0A));
        match self.bytes.get(at..at + 2 * len) {
            Some(raw) => Ok(utf16(raw)),
            None => invalid("an attribute name lies outside its attribute"),
        }
    }

    fn resident_value(&self) -> Result<&'a [u8], Fault> {
        let len = u32le(self.bytes, 0x10) as usize;
        let at = usize::from(u16le(self.bytes, 0x14));
        self.bytes
            .get(at..at.saturating_add(len))
            .ok_or_else(|| Fault::Invalid("a resident value overruns".into()))
    }

    fn runs(&self) -> Result<Vec<Run>, Fault> {
        if self.bytes.len() < 0x40 {
            return invalid("a non-resident attribute is too short");
        }
        let at = usize::from(u16le(self.bytes, 0x20));
        let Some(list) = self.bytes.get(at..) else {
            return invalid("a run list lies outside its attribute");
        };
        decode_runs(list, u64le(self.bytes, 0x10))
    }
}

/// The attribute of `kind` named `name` (empty: unnamed) in an MFT record.
fn find_attr<'a>(record: &'a [u8], kind: u32, name: &str) -> Result<Option<Attr<'a>>, Fault> {
    let used = (u32le(record, 0x18) as usize).min(record.len());
    let mut at = usize::from(u16le(record, 0x14));
    while at + 8 <= used {
        let t = u32le(record, at);
        if t == ATTR_END {
            return Ok(None);
        }
        let len = u32le(record, at + 4) as usize;
        if len < 0x18 || at + len > used || len % 8 != 0 {
            return invalid(format!("attribute {t:#x} at {at} has a bad length {len}"));
        }
        let attr = Attr { bytes: &record[at..at + len] };
        if t == kind && attr.name()? == name {
            return Ok(Some(attr));
        }
        at += len;
    }
    invalid("an MFT record's attributes run past its end")
}

/// The first `$I30` attribute of `kind` in any of the root's records.
fn find_in(records: &[Vec<u8>], kind: u32) -> Result<Option<Attr<'_>>, Fault> {
    for record in records {
        if let Some(a) = find_attr(record, kind, "$I30")? {
            return Ok(Some(a));
        }
    }
    Ok(None)
}

/// Decode a mapping-pairs run list starting at `vcn`.
fn decode_runs(list: &[u8], mut vcn: u64) -> Result<Vec<Run>, Fault> {
    let mut runs = Vec::new();
    let mut lcn: i64 = 0;
    let mut at = 0usize;
    while let Some(&head) = list.get(at) {
        if head == 0 {
            return Ok(runs);
        }
        let (len_size, off_size) = (usize::from(head & 0x0F), usize::from(head >> 4));
        if len_size == 0 || len_size > 8 || off_size > 8 || at + 1 + len_size + off_size > list.len() {
            return invalid(format!("a run list has a bad header byte {head:#x}"));
        }
        let field = &list[at + 1..at + 1 + len_size + off_size];
        let len = field[..len_size].iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        let target = if off_size == 0 {
            None
        } else {
            let raw = &field[len_size..];
            let negative = raw[off_size - 1] & 0x80 != 0;
            let init = if negative { -1i64 } else { 0 };
            let delta = raw.iter().rev().fold(init, |acc, &b| acc << 8 | i64::from(b));
            lcn = lcn
                .checked_add(delta)
                .filter(|l| *l >= 0)
                .ok_or_else(|| Fault::Invalid("a run points before the volume".into()))?;
            Some(lcn as u64)
        };
        if len == 0 || runs.len() == MAX_RUNS {
            return invalid("a run list has an empty run or too many runs");
        }
        runs.push(Run { vcn, lcn: target, len });
        vcn = vcn.checked_add(len).ok_or_else(|| Fault::Invalid("a run list overflows".into()))?;
        at += 1 + len_size + off_size;
    }
    invalid("a run list has no end")
}

/// The entries area of an index header at `header` in `buf`: (start, end).
fn entries_range(buf: &[u8], header: usize) -> Result<(usize, usize), Fault> {
    let start = header + u32le(buf, header) as usize;
    let end = header + u32le(buf, header + 4) as usize;
    if start > end || end > buf.len() {
        return invalid("an index header points outside its block");
    }
    Ok((start, end))
}

/// Collect the names of one index node's entries, and the VCNs of its sub-nodes.
fn read_entries(area: &[u8], names: &mut Vec<String>, pending: &mut Vec<u64>) -> Result<(), Fault> {
    let mut at = 0usize;
    loop {
        if at + 16 > area.len() {
            return invalid("an index node has no last entry");
        }
        let len = usize::from(u16le(area, at + 8));
        let key_len = usize::from(u16le(area, at + 10));
        let flags = u32le(area, at + 12);
        if len < 16 || at + len > area.len() || len % 8 != 0 {
            return invalid(format!("an index entry has a bad length {len}"));
        }
        if flags & 0x1 != 0 {
            if len < 24 {
                return invalid("an index entry with a sub-node is too short");
            }
            pending.push(u64le(area, at + len - 8));
        }
        if flags & 0x2 != 0 {
            return Ok(());
        }
        let key = area.get(at + 16..at + 16 + key_len).filter(|k| k.len() >= 0x42 && 16 + key_len <= len);
        let Some(key) = key else { return invalid("an index entry's file name is cut short") };
        let record = u64le(area, at) & 0x0000_FFFF_FFFF_FFFF;
        let name_len = usize::from(key[0x40]);
        let namespace = key[0x41];
        let Some(raw) = key.get(0x42..0x42 + 2 * name_len) else {
            return invalid("an index entry's file name is longer than its key");
        };
        // Namespace 2 is a DOS 8.3 alias of a name listed under its own entry.
        if namespace != 2 && record >= FIRST_USER_RECORD {
            if names.len() == MAX_NAMES {
                return invalid(format!("the root directory has more than {MAX_NAMES} entries"));
            }
            names.push(utf16(raw));
        }
        at += len;
    }
}

fn utf16(raw: &[u8]) -> String {
    let units: Vec<u16> = raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lists_decode_signed_offsets_and_sparse_runs() {
        // 0x21: 1-byte length, 2-byte offset; 0x01: sparse; 0x11 with a negative offset.
        let list = [0x21, 0x04, 0x00, 0x01, 0x01, 0x02, 0x11, 0x03, 0xFE, 0x00];
        let runs = decode_runs(&list, 0).ok().expect("runs");
        assert_eq!(
            runs,
            vec![
                Run { vcn: 0, lcn: Some(0x100), len: 4 },
                Run { vcn: 4, lcn: None, len: 2 },
                Run { vcn: 6, lcn: Some(0xFE), len: 3 },
            ]
        );
        assert!(decode_runs(&[0x21, 0x04], 0).is_err(), "no end");
        assert!(decode_runs(&[0x11, 0x01, 0x80, 0x00], 0).is_err(), "before the volume start");
    }

    #[test]
    fn fixups_are_undone_and_a_torn_block_is_refused() {
        let mut block = vec![0u8; 1024];
        block[..4].copy_from_slice(b"INDX");
        block[4..6].copy_from_slice(&0x28u16.to_le_bytes());
        block[6..8].copy_from_slice(&3u16.to_le_bytes());
        block[0x28..0x2E].copy_from_slice(&[0x07, 0x00, 0xAA, 0xBB, 0xCC, 0xDD]);
        block[510..512].copy_from_slice(&[0x07, 0x00]);
        block[1022..1024].copy_from_slice(&[0x07, 0x00]);
        let mut good = block.clone();
        assert!(apply_fixups(&mut good, b"INDX", "test").is_ok());
        assert_eq!((&good[510..512], &good[1022..1024]), (&[0xAA, 0xBB][..], &[0xCC, 0xDD][..]));
        block[1022] = 0x08;
        assert!(
            matches!(apply_fixups(&mut block, b"INDX", "test"), Err(Fault::Invalid(w)) if w.contains("torn"))
        );
        assert!(apply_fixups(&mut good.clone(), b"FILE", "test").is_err(), "wrong magic");
    }

    #[test]
    fn boot_sector_geometry_is_checked() {
        let mut boot = [0u8; 512];
        boot[3..11].copy_from_slice(b"NTFS    ");
        boot[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        boot[0x0D] = 8;
        boot[0x30..0x38].copy_from_slice(&4u64.to_le_bytes());
        boot[0x40] = 0xF6; // -10: 1024-byte records
        boot[0x44] = 1; // one cluster: 4096-byte index blocks
        let g = geometry(&boot).ok().expect("geometry");
        assert_eq!((g.cluster, g.mft_offset, g.record_size, g.index_size), (4096, 16384, 1024, 4096));
        boot[0x0D] = 3;
        assert!(geometry(&boot).is_err(), "3 sectors per cluster");
        boot[0x0D] = 8;
        boot[0x40] = 0xE0; // 4 GiB records
        assert!(geometry(&boot).is_err());
    }
}
