//! The crypto helper's `verify-package` call, as `wala-crypto` reads it on stdin
//! (`crypto::helper::read_call`: one JSON line, then the body) and answers it
//! (`crypto::helper::verify_package`: the body, a detached CMS signature in DER, checked over a
//! package against trust anchors). The call's own paths are never opened (a fuzzer must not walk
//! the file system): the signature is checked over a fixed package against a fixed anchor, written
//! once to a temporary directory. The seed `valid-signature` verifies; whatever else the fuzzer
//! makes of it must be refused without a crash.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// A test trust anchor (self-signed, CN=wala fuzz root), made for this target only.
const ANCHOR: &str = "-----BEGIN CERTIFICATE-----\nMIIDFTCCAf2gAwIBAgIULQZt5JHBdmngy2hP3hBr5Pd4eZswDQYJKoZIhvcNAQEL\nBQAwGTEXMBUGA1UEAwwOd2FsYSBmdXp6IHJvb3QwIBcNMjYxMjA3MDU1ODI0WhgP\nMjEyNjExMTMwNTU4MjRaMBkxFzAVBgNVBAMMDndhbGEgZnV6eiByb290MIIBIjAN\nBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtopa1Y6h3xpFaV5aTGSg7c968hbY\nL+PJXsuyiwXyMR+VSu/a3F7L+AmlKffmPDXei6/6T7T+eBr0bdcTjjVEwAQZY22x\nTk77BxwUMhDsbQIqf6ji4n4fh2JwNcGddzc7vNV4Nz+W4arcMwGG2Q+Ihu9jA77N\nvBRHruJNS38wolMYTZqCkdZOjeKp6DSSDgz4R8hnKzkDKiTFa3Zc3hlG0yF1d+h3\nqC+wdPYJYz3KXAa3eDW9O+riGM7NzJCZ1DwXJ/Tr6/arAKCLNjHo8IOBomSf33P7\nrHyyrBGAS0TDtDtez7oAZq/4YQ88ZkKWdFHz+IMHMGXGx1JPTcixiTKRDwIDAQAB\no1MwUTAdBgNVHQ4EFgQUUbFq2ELGNfAz2Axcd5AvSiKgoAUwHwYDVR0jBBgwFoAU\nUbFq2ELGNfAz2Axcd5AvSiKgoAUwDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0B\nAQsFAAOCAQEAlosRHhpsBZ34S6CR0bAsa20syAt9LXBhdIZXPzhEbOohPkHS12Bh\nF1V7IG/hT2Oi6G8e0UpKuQw8Ex7ji+y4Clix8FrftBflnnG7US3ZViimlPJVG1jj\n0Ri9HOUyEOrd7smg6LbkZeeOe8PLexJQ5RpqUcdzvM7wjkr9/+99Sok7pwm93yom\nPXzmEW54LigLRMDOJBzp/KLjYa4dOj4DHbZ8shL7PDepxufwVXy7ckfr+5PEEjAB\nU+2bRMcoRebjKTDs3TGfopIfjTuJSfvXYrcnq70xNxyVoTAZ9g/n/s4KpCN/ioQh\nUllpCI80XL5cegpvgqJPnXAN8kYKWEWNwQ==\n-----END CERTIFICATE-----";
/// The package the seed's signature was made over.
const PACKAGE: &[u8] = b"wala fuzz package\n";

fn files() -> &'static (PathBuf, PathBuf) {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wala-fuzz-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let (package, anchor) = (dir.join("package.zip"), dir.join("anchor.pem"));
        std::fs::write(&package, PACKAGE).expect("package");
        std::fs::write(&anchor, ANCHOR).expect("anchor");
        (package, anchor)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok((call, body)) = wala::crypto::helper::read_call(data) else { return };
    if let wala::crypto::helper::Call::VerifyPackage { .. } = call {
        let (package, anchor) = files();
        let _ = wala::crypto::helper::verify_package(package, anchor, body);
    }
});
