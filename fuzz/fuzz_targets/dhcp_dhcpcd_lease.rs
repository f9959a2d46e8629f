//! `dhcp::dhcpcd_lease_wireserver`: a dhcpcd raw lease file (a DHCP packet) with its mtime.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let _ = wala::platform::dhcp::dhcpcd_lease_wireserver(data, now, now);
    // Extreme clocks: the lease time arithmetic must not overflow.
    let far = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1000);
    let _ = wala::platform::dhcp::dhcpcd_lease_wireserver(data, far, UNIX_EPOCH);
    let _ = wala::platform::dhcp::dhcpcd_lease_wireserver(data, SystemTime::UNIX_EPOCH, far);
});
