//! `provision::plan::Plan::build`: an OVF environment with any host name, user name, SSH key paths,
//! key values and fingerprints (one per input line: `host`, `user`, then `path|value` for a public
//! key, `path|` for a certificate key, `#pair path` for a key pair). Whatever is accepted has a
//! valid host and user name, and every key path lies strictly inside the user's home.
#![no_main]
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wala::documents::ovf::{KeyPair, LinuxProvisioning, OvfEnv, PlatformSettings, PublicKey};
use wala::provision::plan::Plan;
use wala::base::root::HostRoot;

/// A root with one existing user (`existing`, home /srv/existing) and the rest predicted.
fn root() -> &'static HostRoot {
    static ROOT: OnceLock<(std::path::PathBuf, HostRoot)> = OnceLock::new();
    &ROOT
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("wala-fuzz-plan-{}", std::process::id()));
            std::fs::create_dir_all(dir.join("etc")).expect("mkdir");
            std::fs::write(
                dir.join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\nexisting:x:1000:1000::/srv/existing:/bin/sh\n",
            )
            .expect("passwd");
            let root = HostRoot::new(&dir);
            (dir, root)
        })
        .1
}

fn env(text: &str) -> OvfEnv {
    let mut lines = text.split('\n');
    let host_name = lines.next().unwrap_or_default().to_string();
    let user_name = lines.next().unwrap_or_default().to_string();
    let (mut public_keys, mut key_pairs) = (Vec::new(), Vec::new());
    for line in lines {
        if let Some(path) = line.strip_prefix("#pair ") {
            key_pairs.push(KeyPair { fingerprint: "0123456789ABCDEF".into(), path: path.into() });
        } else {
            let (path, value) = line.split_once('|').unwrap_or((line, ""));
            let value = Some(value.to_string()).filter(|v| !v.is_empty());
            let fingerprint = value.is_none().then(|| "0123456789ABCDEF".to_string());
            public_keys.push(PublicKey { fingerprint, path: path.into(), value });
        }
    }
    OvfEnv {
        provisioning: LinuxProvisioning {
            version: "1.0".into(),
            configuration_set_type: None,
            host_name,
            user_name,
            user_password: None,
            disable_ssh_password_authentication: Some(true),
            public_keys,
            key_pairs,
            custom_data: None,
        },
        platform: PlatformSettings {
            version: None,
            provision_guest_agent: "true".into(),
            kms_server_hostname: None,
            guest_agent_package_name: None,
            retain_windows_pe_pass_in_unattend: None,
            retain_offline_servicing_pass_in_unattend: None,
            preprovisioned_vm: None,
            preprovisioned_vm_type: None,
            provision_guest_proxy_agent: None,
            enable_trusted_image_identifier: None,
            use_avma: None,
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let ovf = env(&text);
    let Ok(plan) = Plan::build(root(), &ovf, &wala::documents::conf::Config::default(), "vm-id") else { return };
    assert!(wala::host::hostname::validate(&plan.hostname).is_ok(), "host name {:?}", plan.hostname);
    assert!(wala::host::user::validate_name(&plan.user.name).is_ok(), "user name {:?}", plan.user.name);
    let home: &Path = &plan.user.home;
    let paths = plan.inline_keys.iter().map(|k| &k.path).chain(plan.certificate_keys.iter().map(|k| &k.path));
    for path in paths {
        assert!(path.starts_with(home) && path != home, "key path {path:?} is not inside {home:?}");
        assert!(
            !path.components().any(|c| matches!(c, std::path::Component::ParentDir)),
            "key path {path:?} has '..'"
        );
    }
});
