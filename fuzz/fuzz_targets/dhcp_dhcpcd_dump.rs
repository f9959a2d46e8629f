//! `dhcp::parse_dhcpcd_dump`: `dhcpcd --dumplease` output, with its route and option 245 readers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(dump) = wala::platform::dhcp::parse_dhcpcd_dump(&text) {
        let _ = dump.classless_static_routes();
        let _ = dump.wireserver();
    }
});
