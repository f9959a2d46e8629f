//! `ovf::scrub_password`: the output re-parses, is a fixed point, and keeps no password.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else { return };
    let Ok(scrubbed) = wala::documents::ovf::scrub_password(xml) else { return };
    // Scrubbing only removes element content: the result is well-formed and scrubbing it again
    // changes nothing.
    let again = wala::documents::ovf::scrub_password(&scrubbed).expect("scrubbed document no longer parses");
    assert_eq!(again, scrubbed, "scrubbing is not idempotent");
    // A document that parsed before parses after, with the same settings and no password.
    if let Ok(before) = wala::documents::ovf::parse(xml) {
        let after = wala::documents::ovf::parse(&scrubbed).expect("scrubbed OVF no longer parses");
        assert!(after.provisioning.user_password.is_none(), "password survived scrubbing");
        assert_eq!(after.provisioning.user_name, before.provisioning.user_name);
        if let Some(p) = before.provisioning.user_password.as_ref().map(|p| p.expose().trim().to_string()) {
            // A password long enough not to occur by chance elsewhere in the document is gone.
            if p.len() >= 8 && !xml.replacen(&p, "", 1).contains(&p) {
                assert!(!scrubbed.contains(&p), "password text survived scrubbing");
            }
        }
    }
});
