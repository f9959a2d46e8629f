//! `link_watch::parse_messages`: rtnetlink datagrams (link notifications and dumps, as the kernel
//! sends them to the pps stage).
#![no_main]
use libfuzzer_sys::fuzz_target;
use wala::host::link_watch::{parse_messages, Message};

fuzz_target!(|data: &[u8]| {
    for m in parse_messages(data) {
        if let Message::New(link) | Message::Del(link) = m {
            assert!(!link.name.contains('\0'), "a link name with a NUL: {link:?}");
            let _ = link.to_string();
            let _ = (link.has_carrier(), link.is_loopback(), link.is_up());
        }
    }
});
