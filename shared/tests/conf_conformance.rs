//! waagent.conf conformance: every distro file waagent ships loads cleanly, the parser torture file
//! gives the values waagent's own tests expect, and mistakes are reported by file, line and key.

mod common;

use std::path::{Path, PathBuf};

use wala::documents::conf::{self, ProvisioningAgent, SshHostKeyType};

fn conf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            conf_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "conf") {
            out.push(path);
        }
    }
}

#[test]
fn project_copy_of_the_generic_file_loads_without_problems() {
    let loaded = conf::load(&common::project_fixtures().join("conf/waagent.conf")).expect("load");
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let c = &loaded.config;
    assert!(c.resource_disk_format);
    assert_eq!(c.resource_disk_filesystem, "ext4");
    assert_eq!(c.root_device_scsi_timeout, Some(300));
    assert!(c.enable_firewall);
    assert_eq!(c.enable_firewall_period, 30);
    assert_eq!(c.openssl_path.0, "/usr/bin/openssl", "None means the default");
}

#[test]
fn mistakes_are_reported_with_file_line_and_key() {
    let path = common::project_fixtures().join("conf/bad.conf");
    let loaded = conf::load(&path).expect("load");
    let found: Vec<(usize, &str)> = loaded.problems.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        found,
        vec![
            (2, "ResourceDisk.Format"),
            (3, "ResourceDisk.SwapSizeMB"),
            (4, "ResourceDisk.MountPoint"),
            (5, "Provisioning.Agnet")
        ]
    );
    assert!(loaded.problems.iter().all(|p| p.file == path));
    // Defaults were used for the bad values, good values kept.
    assert!(!loaded.config.resource_disk_format);
    assert_eq!(loaded.config.resource_disk_swap_size_mb, 0);
    assert_eq!(loaded.config.goal_state_period, 12);
}

#[test]
fn every_shipped_distro_file_loads_without_problems() {
    let Some(fixtures) = common::reference_fixtures("waagent.conf conformance") else { return };
    let rows = common::manifest_rows(&fixtures, "waagent-conf");
    let mut files = Vec::new();
    conf_files(&fixtures.join("conf"), &mut files);
    assert!(files.len() >= 20, "expected the shipped distro files, found {}", files.len());
    for row in &rows {
        assert!(files.contains(&fixtures.join(&row.path)), "MANIFEST row {} has no file", row.path);
    }
    for file in files.iter().filter(|f| !f.ends_with("test_waagent.conf")) {
        let loaded = conf::load(file).expect("load");
        assert!(loaded.problems.is_empty(), "{}: {:?}", file.display(), loaded.problems);
    }
}

#[test]
fn test_waagent_conf_gives_the_manifest_values() {
    let Some(fixtures) = common::reference_fixtures("waagent.conf conformance") else { return };
    let loaded = conf::load(&fixtures.join("conf/test_waagent.conf")).expect("load");
    // MANIFEST: FauxKey1='Value1', FauxKey2='Value2 Value2', FauxKey3='delalloc,rw,noatime,...'
    assert_eq!(loaded.raw("FauxKey1"), Some("Value1"));
    assert_eq!(loaded.raw("FauxKey2"), Some("Value2 Value2"));
    assert_eq!(loaded.raw("FauxKey3"), Some("delalloc,rw,noatime,nobarrier,users,mode=777"));
    let c = &loaded.config;
    assert_eq!(c.ssh_host_key_pair_type, SshHostKeyType::Rsa);
    assert!(!c.decode_custom_data);
    assert!(c.enable_fips);
    assert_eq!(c.ssh_client_alive_interval, 42);
    assert_eq!(c.resource_disk_mount_options, None);
    assert_eq!(c.openssl_path.0, "/usr/bin/openssl");
    assert_eq!(c.provisioning_agent, ProvisioningAgent::Auto);
    assert_eq!(c.ssh_dir.0, "/notareal/path");
    // The torture lines are reported, not fatal: '=Value0' and the three unknown FauxKeys.
    let keys: Vec<&str> = loaded.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["", "FauxKey1", "FauxKey2", "FauxKey3"]);
}

#[test]
fn auto_update_files_follow_the_manifest() {
    let Some(fixtures) = common::reference_fixtures("waagent.conf conformance") else { return };
    // MANIFEST: UpdateToLatestVersion wins when present, else falls back to AutoUpdate.Enabled.
    for (file, expected) in [
        ("waagent_auto_update_disabled.conf", false),
        ("waagent_auto_update_disabled_update_to_latest_version_disabled.conf", false),
        ("waagent_auto_update_enabled.conf", true),
        ("waagent_auto_update_enabled_update_to_latest_version_enabled.conf", true),
        ("waagent_update_to_latest_version_disabled.conf", false),
        ("waagent_update_to_latest_version_enabled.conf", true),
    ] {
        let loaded = conf::load(&fixtures.join("conf/tests-config").join(file)).expect("load");
        assert_eq!(loaded.config.auto_update_to_latest_version(), expected, "{file}");
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let err = conf::load(Path::new("/nonexistent/waagent.conf")).unwrap_err();
    assert_eq!(err.to_string(), "configuration file /nonexistent/waagent.conf does not exist");
}
