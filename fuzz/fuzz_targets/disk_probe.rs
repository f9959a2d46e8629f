//! `disk::probe::probe_bytes`: the first bytes of a disk (partition tables, filesystem superblocks).
#![no_main]
use libfuzzer_sys::fuzz_target;
use wala::host::disk::probe::{self, Probe};

fuzz_target!(|data: &[u8]| {
    let found = probe::probe_bytes(data);
    let sector = probe::gpt_sector_size(data);
    match &found {
        Probe::Gpt(parts) => {
            let Some(sector) = sector else { panic!("GPT found without a sector size") };
            for p in parts {
                let _ = p.extent(sector);
            }
        }
        Probe::Mbr(parts) => {
            for p in parts {
                let _ = p.extent();
            }
        }
        _ => {}
    }
});
