//! The real `wala-provision --stage hostname` on a temporary root whose `/dev/sr0` is an ISO 9660
//! image made by genisoimage: it sets the hostname the local stage would set and changes nothing
//! else, and leaves it to the local stage whenever the decision cannot be made at once.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::*;

/// `/dev/sr0` under the root: an ISO 9660 image holding `ovf` as `ovf-env.xml`. `false` (with a
/// SKIP line) when genisoimage is missing.
fn dvd(r: &TestRoot, ovf: &Path) -> bool {
    if wala::base::cmd::find_program("genisoimage").is_none() {
        skip("hostname stage: genisoimage is missing (apt-get install -y genisoimage)");
        return false;
    }
    let src = r.path("dvd-src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::copy(ovf, src.join("ovf-env.xml")).expect("copy");
    std::fs::create_dir_all(r.path("dev")).expect("mkdir");
    let out = Command::new("genisoimage")
        .args(["-quiet", "-J", "-r", "-o"])
        .arg(r.path("dev/sr0"))
        .arg(&src)
        .output()
        .expect("genisoimage");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    true
}

fn hostname_stage(r: &TestRoot, config: &Path) -> Output {
    let out = Command::new(BIN)
        .arg("--root")
        .arg(r.dir.path())
        .args(["--stage", "hostname", "--config"])
        .arg(config)
        .output()
        .expect("run wala-provision");
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

#[test]
fn the_hostname_is_set_from_a_drive_already_in_dev_and_nothing_else_changes() {
    if !need_root("the_hostname_is_set_from_a_drive_already_in_dev_and_nothing_else_changes") {
        return;
    }
    let r = TestRoot::new();
    let ovf = r.ovf(Some("Secret-Pa55"), None);
    if !dvd(&r, &ovf) {
        return;
    }
    let conf = r.config("");
    let before = r.snapshot();
    let out = hostname_stage(&r, &conf);
    assert!(
        stderr(&out).contains("the hostname is wala-test-vm, before udev and the network"),
        "{}",
        stderr(&out)
    );
    assert_eq!(r.read("etc/hostname"), "wala-test-vm\n");
    assert!(r.read("etc/hosts").contains("127.0.1.1\twala-test-vm\n"));
    let after = r.snapshot();
    let mut changed: Vec<&str> = after
        .keys()
        .chain(before.keys())
        .filter(|k| before.get(*k) != after.get(*k) && !k.starts_with("run/"))
        .map(String::as_str)
        .collect();
    changed.sort_unstable();
    changed.dedup();
    assert_eq!(changed, ["etc/hostname", "etc/hosts"], "only the hostname's files");
    assert!(!stderr(&out).contains("Secret-Pa55"));
    assert!(!r.path("var/log/waagent.log").exists(), "the journal only: /var may not be mounted yet");

    // The local stage then decides the same and sets the same name.
    let local = r.run(&ovf, &conf, &[]);
    assert!(local.status.success(), "{}", stderr(&local));
    assert_eq!(r.read("etc/hostname"), "wala-test-vm\n");
}

/// The stage on a root prepared by `prepare`: it must leave the hostname to the local stage, and
/// say why (`why` in its log).
fn left_to_the_local_stage(with_dvd: bool, extra_conf: &str, prepare: impl FnOnce(&TestRoot), why: &str) {
    let r = TestRoot::new();
    let ovf = r.ovf(None, None);
    if with_dvd && !dvd(&r, &ovf) {
        return;
    }
    prepare(&r);
    let conf = r.config(extra_conf);
    let before = r.snapshot();
    let out = hostname_stage(&r, &conf);
    let log = stderr(&out);
    assert!(log.contains("hostname stage: left to the local stage") && log.contains(why), "{why}: {log}");
    let after = r.snapshot();
    let changed: Vec<&String> =
        after.keys().filter(|k| before.get(*k) != after.get(*k) && !k.starts_with("run/")).collect();
    assert!(changed.is_empty(), "{why}: changed {changed:?}");
}

#[test]
fn without_a_drive_in_dev_the_hostname_is_left_to_the_local_stage() {
    left_to_the_local_stage(false, "", |_| {}, "no provisioning DVD readable before udev has run");
}

#[test]
fn a_separate_var_not_mounted_yet_leaves_the_hostname_to_the_local_stage() {
    left_to_the_local_stage(
        true,
        "",
        |r| {
            std::fs::write(r.path("etc/fstab"), "UUID=1 / ext4 defaults 0 1\nUUID=2 /var xfs defaults 0 2\n")
                .expect("fstab")
        },
        "/var/lib/waagent is on /var, which is not mounted yet",
    );
}

#[test]
fn a_disk_provisioned_for_this_vm_keeps_its_hostname() {
    left_to_the_local_stage(
        true,
        "",
        |r| {
            let root = wala::base::root::HostRoot::new(r.dir.path());
            let id = wala::provision::vm_id(&root).expect("vm id");
            wala::provision::state::write_marker(&root, Path::new("/var/lib/waagent"), &id).expect("marker");
        },
        "already provisioned for this VM",
    );
}

#[test]
fn another_provisioning_agent_keeps_the_hostname() {
    left_to_the_local_stage(true, "Provisioning.Agent=cloud-init\n", |_| {}, "provisioning is not wala's");
}
