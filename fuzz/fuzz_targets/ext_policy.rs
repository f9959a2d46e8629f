//! `extensions::policy::parse_policy` (the `Policy.PolicyFilePath` file): never panics, and a
//! policy it accepts answers allow-list and signature questions.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(policy) = wala::extensions::policy::parse_policy(&text) {
        let allowed = policy.allows("Microsoft.Azure.Extensions.CustomScript");
        assert!(allowed || policy.allow_listed_extensions_only, "only an allow-list refuses");
        let _ = policy.signature_required("Microsoft.Azure.Extensions.CustomScript");
    }
});
