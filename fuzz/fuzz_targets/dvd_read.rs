//! `dvd::medium::read_ovf` and the UDF and ISO 9660 readers on their own: a DVD image as bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wala::host::dvd::medium::{self, Image};
use wala::host::dvd::{iso9660, udf};
use wala::base::limits::Document;

fuzz_target!(|data: &[u8]| {
    let image = Image(data);
    for read in [medium::read_ovf(&image), udf::read_ovf(&image), iso9660::read_ovf(&image)] {
        match read {
            Ok(Some(bytes)) => assert!(bytes.len() as u64 <= Document::Ovf.limit(), "over the limit"),
            Ok(None) => {}
            Err(e) => assert!(!e.to_string().is_empty(), "an error without a message"),
        }
    }
});
