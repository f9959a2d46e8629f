//! `dhcp::parse_dhclient_leases` and `dhcp::dhclient_wireserver`: a dhclient lease file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(leases) = wala::platform::dhcp::parse_dhclient_leases(&text) {
        for lease in &leases {
            let _ = lease.expiry.is_valid_at(UNIX_EPOCH);
            let _ = lease.expiry.is_valid_at(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        }
    }
    let _ = wala::platform::dhcp::dhclient_wireserver(&text, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
});
