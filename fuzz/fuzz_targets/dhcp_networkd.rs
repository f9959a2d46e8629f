//! `dhcp::networkd_wireserver`: a systemd-networkd lease file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = wala::platform::dhcp::networkd_wireserver(&text);
    let _ = wala::platform::dhcp::route_table_has_wireserver(&text);
});
