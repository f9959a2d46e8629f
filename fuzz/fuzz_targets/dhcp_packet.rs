//! `dhcp::parse_dhcp_packet` with its option readers, `dhcp::parse_rfc3442` and
//! `dhcp::decode_option245`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = wala::platform::dhcp::parse_dhcp_packet(data) {
        let _ = packet.message_type();
        let _ = packet.lease_time();
        let _ = packet.wireserver();
        let _ = packet.classless_static_routes();
    }
    if let Ok(routes) = wala::platform::dhcp::parse_rfc3442(data) {
        for r in routes {
            assert!(r.prefix_len <= 32, "prefix length {} above 32", r.prefix_len);
        }
    }
    let _ = wala::platform::dhcp::decode_option245(&String::from_utf8_lossy(data));
});
