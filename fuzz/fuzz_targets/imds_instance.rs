//! `imds::parse_instance` (and the other IMDS JSON readers) with the checks run on the result.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(md) = wala::imds::parse_instance(&text) {
        let _ = md.validate_network();
        for key in &md.compute.public_keys {
            let _ = key.validate_openssh();
        }
        for nic in md.network.iter().flat_map(|n| n.interfaces.iter()) {
            if let Some(mac) = nic.mac() {
                assert_eq!(mac.len(), 17, "bad normalised MAC {mac:?}");
            }
        }
    }
    let _ = wala::imds::parse_os_profile(&text);
    let _ = wala::imds::parse_interface(&text);
    if let Ok(keys) = wala::imds::parse_public_keys(&text) {
        for key in &keys {
            let _ = key.validate_openssh();
        }
    }
    let _ = wala::imds::parse_text(&text);
    let _ = wala::imds::parse_azure_stack_identity(&text);
});
