//! `documents::imds::parse_instance` (and the other IMDS JSON readers) with the checks run on the result, and
//! the provisioning request made from it (no DVD): a request must parse back, through the OVF
//! parser, to exactly the user, hostname and keys IMDS gave.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(md) = wala::documents::imds::parse_instance(&text) {
        if let Ok(wala::provision::imds_request::Request::Ovf(xml)) = wala::provision::imds_request::request(&md.compute) {
            let env = wala::documents::ovf::parse(&xml).expect("a request IMDS made parses as an OVF environment");
            let os = md.compute.os_profile.as_ref().expect("a request has an osProfile");
            let p = &env.provisioning;
            assert_eq!(Some(p.user_name.as_str()), os.admin_username.as_deref());
            assert_eq!(Some(p.host_name.as_str()), os.computer_name.as_deref());
            assert!(p.user_password.is_none() && p.custom_data.is_none());
            assert_eq!(p.public_keys.len(), md.compute.public_keys.len());
            for (ovf_key, imds_key) in p.public_keys.iter().zip(&md.compute.public_keys) {
                assert_eq!(ovf_key.value.as_deref(), Some(imds_key.key_data.as_str()));
                assert_eq!(ovf_key.path, imds_key.path);
            }
        }
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
    let _ = wala::documents::imds::parse_os_profile(&text);
    let _ = wala::documents::imds::parse_interface(&text);
    if let Ok(keys) = wala::documents::imds::parse_public_keys(&text) {
        for key in &keys {
            let _ = key.validate_openssh();
        }
    }
    let _ = wala::documents::imds::parse_text(&text);
    let _ = wala::documents::imds::parse_azure_stack_identity(&text);
});
