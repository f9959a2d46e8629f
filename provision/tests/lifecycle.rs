//! Every way a VM comes to boot, with the real `wala-provision` binary on a temporary root (real
//! `useradd --prefix`), talking HTTP over loopback to the fabric simulator: a provisioned disk on a
//! new VM (kept, or provisioned for a new user), a DVD with no provisioning section, no DVD, and
//! IMDS as the second source. Checks the files, the KVP pool, and the reports the fabric got, in
//! order. Root only (useradd and chown need it; CI runs as root).

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::*;
use wala_fabric::{Fabric, Fault, FaultAction, Listener};

const NEW_ID: &str = "11111111-2222-3333-4444-555555555555";

/// `wala-provision --root R --config C ARGS...`.
fn wala(r: &TestRoot, conf: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--root").arg(r.dir.path()).arg("--config").arg(conf).args(args);
    cmd.env_remove("WALA_TEST_CRASH_AFTER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run wala-provision")
}

fn platform_config(r: &TestRoot, fabric: &Fabric, extra: &str) -> PathBuf {
    r.config(&format!(
        "Wala.WireServer={}\nWala.HostGAPlugin={}\nWala.Imds={}\n{extra}",
        fabric.wire_addr(),
        fabric.hgap_addr(),
        fabric.imds_addr()
    ))
}

fn states(fabric: &Fabric) -> Vec<String> {
    fabric
        .health_reports()
        .iter()
        .map(|h| format!("{}/{}", h.state, h.substatus.clone().unwrap_or_default()))
        .collect()
}

/// An OVF environment with no provisioning section, as a specialized VM's DVD carries.
fn specialized_ovf(r: &TestRoot) -> PathBuf {
    let path = r.dir.path().join("specialized-ovf-env.xml");
    std::fs::write(
        &path,
        r#"<?xml version="1.0" encoding="utf-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure">
 <wa:ProvisioningSection><wa:Version>1.0</wa:Version></wa:ProvisioningSection>
 <wa:PlatformSettingsSection><wa:Version>1.0</wa:Version>
  <wa:PlatformSettings><wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent></wa:PlatformSettings>
 </wa:PlatformSettingsSection>
</Environment>
"#,
    )
    .expect("write");
    path
}

/// The last `PROVISIONING_REPORT` in a KVP pool (one record: it is short).
fn last_report(pool: &[(String, String)]) -> String {
    pool.iter().rev().find(|(k, _)| k == "PROVISIONING_REPORT").map(|(_, v)| v.clone()).expect("a report")
}

/// The previous VM's state the daemon leaves in `Lib.Dir`, and an installed extension.
fn previous_vm_state(r: &TestRoot) {
    let ext = "var/lib/waagent/Wala.Test.Example-1.0.0";
    for d in [format!("{ext}/config"), format!("{ext}/status")] {
        std::fs::create_dir_all(r.path(&d)).expect("mkdir");
    }
    for (f, text) in [
        ("var/lib/waagent/GoalState.7.xml", "<GoalState/>"),
        ("var/lib/waagent/ExtensionsConfig.7.xml", "<Extensions/>"),
        ("var/lib/waagent/SharedConfig.xml", "<SharedConfig/>"),
        ("var/lib/waagent/published_hostname", "wala-test-vm"),
        (&format!("{ext}/HandlerManifest.json"), "[]"),
        (&format!("{ext}/config/HandlerState"), "Enabled"),
        (&format!("{ext}/config/0.settings"), "{}"),
        (&format!("{ext}/config/ext.wala-seq"), "0"),
        (&format!("{ext}/status/0.status"), "[]"),
    ] {
        std::fs::write(r.path(f), text).expect("write");
    }
}

/// A root provisioned by the local stage for [`VM_ID`], and its marker (what the network stage
/// writes after Ready).
fn provisioned_root(settings: &str) -> (TestRoot, PathBuf) {
    let r = TestRoot::new();
    let conf = r.config(settings);
    let out = r.run(&r.ovf(None, None), &conf, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(r.path("var/lib/waagent/provisioned"), VM_ID).expect("marker");
    (r, conf)
}

/// The OVF a new VM of the same image gets: the same user, a new hostname, one more key and a
/// password (which a kept disk does not take).
fn new_vm_ovf(r: &TestRoot, extra_key: &str) -> PathBuf {
    let path = r.ovf(Some("New-Pa55word"), Some(extra_key));
    let text = std::fs::read_to_string(&path).expect("read").replace("wala-test-vm", "wala-new-vm");
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn a_provisioned_disk_on_a_new_vm_keeps_its_identity_and_reports_ready_alone() {
    if !need_root("a_provisioned_disk_on_a_new_vm_keeps_its_identity_and_reports_ready_alone") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    let r = TestRoot::new();
    std::fs::create_dir_all(r.path("var/lib/hyperv")).expect("KVP pool dir");
    let conf = platform_config(
        &r,
        &fabric,
        "Provisioning.RegenerateSshHostKeyPair=y\nProvisioning.SshHostKeyPairType=ed25519\n",
    );
    let out = wala(&r, &conf, &["--stage", "all", "--ovf", r.ovf(None, None).to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "Ready/"]);
    let host_key = r.read("etc/ssh/ssh_host_ed25519_key");
    let shadow = r.read("etc/shadow");
    let passwd = r.read("etc/passwd");
    previous_vm_state(&r);

    // The same disk boots as another VM, with a DVD naming the user it has.
    r.set_vm_id(NEW_ID);
    let extra = ssh_public_key(r.dir.path(), 5);
    let fabric = Fabric::start_builtin().expect("a new VM's fabric");
    let conf = platform_config(
        &r,
        &fabric,
        "Provisioning.RegenerateSshHostKeyPair=y\nProvisioning.SshHostKeyPairType=ed25519\n",
    );
    let out = wala(&r, &conf, &["--stage", "all", "--ovf", new_vm_ovf(&r, &extra).to_str().unwrap()], &[]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains(&format!("provisioned for another VM ({VM_ID})")), "{log}");
    assert!(log.contains("Nothing provisioned: the disk was provisioned for VM"), "{log}");
    assert_eq!(states(&fabric), ["Ready/"], "Ready alone: nothing was provisioned");
    assert_eq!(r.read("var/lib/waagent/provisioned"), NEW_ID);

    // Identity kept: no user made, password, host keys and root's entry as they were.
    assert_eq!(r.read("etc/passwd"), passwd);
    assert_eq!(r.read("etc/shadow"), shadow, "the section's password is not taken");
    assert_eq!(r.read("etc/ssh/ssh_host_ed25519_key"), host_key, "no new host keys");
    // What the platform says about this VM: its hostname, and the key it was given, added.
    assert_eq!(r.read("etc/hostname"), "wala-new-vm\n");
    let keys = r.read("home/azureuser/.ssh/authorized_keys");
    assert_eq!(keys, format!("{}\n{}\n{extra}\n", r.keys[0], r.keys[1]));
    // The previous VM's state is forgotten; the extension stays installed.
    for gone in [
        "var/lib/waagent/GoalState.7.xml",
        "var/lib/waagent/ExtensionsConfig.7.xml",
        "var/lib/waagent/SharedConfig.xml",
        "var/lib/waagent/published_hostname",
        "var/lib/waagent/Wala.Test.Example-1.0.0/config/0.settings",
        "var/lib/waagent/Wala.Test.Example-1.0.0/config/ext.wala-seq",
        "var/lib/waagent/Wala.Test.Example-1.0.0/status/0.status",
    ] {
        assert!(!r.path(gone).exists(), "{gone} forgotten");
    }
    assert_eq!(r.read("var/lib/waagent/Wala.Test.Example-1.0.0/config/HandlerState"), "Enabled");
    // The ovf-env.xml the extensions read is still the one the disk was provisioned with.
    assert!(r.read("var/lib/waagent/ovf-env.xml").contains("wala-test-vm"));
    // Said in the KVP pool too.
    let pool = wala::host::kvp::read_pool(&r.path("var/lib/hyperv/.kvp_pool_1")).expect("pool");
    let report = last_report(&pool);
    assert!(
        report.starts_with("result=success|provisioning=none|detail=the disk was provisioned for VM"),
        "{report}"
    );
    assert!(report.contains(&format!("vm_id={NEW_ID}")), "{report}");
    assert!(
        pool.iter().any(|(k, v)| k.ends_with("|kept") && v.contains("user azureuser exists")),
        "{pool:?}"
    );

    // Its next boot: nothing done, nothing sent.
    fabric.clear_requests();
    let out = wala(&r, &conf, &["--stage", "all", "--no-dvd"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fabric.requests().is_empty(), "a reboot talked to the platform");
}

#[test]
fn a_new_user_on_a_provisioned_disk_is_provisioned_as_a_new_vm() {
    if !need_root("a_new_user_on_a_provisioned_disk_is_provisioned_as_a_new_vm") {
        return;
    }
    let settings = "Provisioning.RegenerateSshHostKeyPair=y\nProvisioning.SshHostKeyPairType=ed25519\n";
    let (r, _) = provisioned_root(settings);
    let fabric = Fabric::start_builtin().expect("fabric");
    let conf = platform_config(&r, &fabric, settings);
    let host_key = r.read("etc/ssh/ssh_host_ed25519_key");
    previous_vm_state(&r);
    r.set_vm_id(NEW_ID);
    // An image captured without deprovisioning, deployed with a new admin user.
    let ovf = r.ovf_for("alice", "/home/alice/.ssh/authorized_keys", Some("Alice-Pa55"), None, &[], &[]);
    let out = wala(&r, &conf, &["--stage", "all", "--ovf", ovf.to_str().unwrap()], &[]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("asks for user alice, which it does not have"), "{log}");
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "Ready/"]);
    uid_of(&r, "alice");
    assert!(r.read("etc/shadow").lines().any(|l| l.starts_with("alice:$6$")), "alice's password set");
    assert_ne!(r.read("etc/ssh/ssh_host_ed25519_key"), host_key, "a new VM gets new host keys");
    assert!(r.read("var/lib/waagent/ovf-env.xml").contains(">alice<"));
    assert!(!r.path("var/lib/waagent/GoalState.7.xml").exists(), "the previous VM's state forgotten");
    assert_eq!(r.read("var/lib/waagent/provisioned"), NEW_ID);
}

#[test]
fn no_provisioning_section_and_no_dvd_provision_nothing_and_report_ready_alone() {
    if !need_root("no_provisioning_section_and_no_dvd_provision_nothing_and_report_ready_alone") {
        return;
    }
    // A fresh disk on a specialized VM: its DVD has no provisioning section.
    let fabric = Fabric::start_builtin().expect("fabric");
    let r = TestRoot::new();
    std::fs::create_dir_all(r.path("var/lib/hyperv")).expect("KVP pool dir");
    let conf = platform_config(&r, &fabric, "");
    let ovf = specialized_ovf(&r);
    let mut before = r.host_snapshot();
    before.retain(|k, _| !k.starts_with("var/lib/hyperv"));
    let out = wala(&r, &conf, &["--stage", "all", "--ovf", ovf.to_str().unwrap()], &[]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("Nothing provisioned: the provisioning DVD carries no provisioning section"),
        "{log}"
    );
    assert_eq!(states(&fabric), ["Ready/"]);
    let mut after = r.host_snapshot();
    after.retain(|k, _| !k.starts_with("var/lib/hyperv"));
    assert_eq!(after, before, "nothing provisioned");
    assert_eq!(r.read("var/lib/waagent/provisioned"), VM_ID);
    assert!(!r.path("var/lib/waagent/ovf-env.xml").exists());
    let pool = wala::host::kvp::read_pool(&r.path("var/lib/hyperv/.kvp_pool_1")).expect("pool");
    let report = last_report(&pool);
    assert!(
        report.contains("provisioning=none|detail=the provisioning DVD carries no provisioning section"),
        "{report}"
    );
    // No IMDS request: the DVD answered.
    assert!(fabric.requests_on(Listener::Imds).is_empty());

    // A provisioned disk on a VM with no DVD: kept, Ready alone, IMDS not asked.
    let (r, _) = provisioned_root("");
    let fabric = Fabric::start_builtin().expect("fabric");
    let conf = platform_config(&r, &fabric, "");
    r.set_vm_id(NEW_ID);
    let out = wala(&r, &conf, &["--stage", "all", "--no-dvd"], &[]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Nothing provisioned: ") && log.contains("no provisioning DVD (--no-dvd)"), "{log}");
    assert_eq!(states(&fabric), ["Ready/"]);
    assert!(fabric.requests_on(Listener::Imds).is_empty(), "no IMDS on a provisioned disk");
    assert!(!r.path("run/wala/imds-pending").exists());
}

/// The fabric's IMDS document for a VM with `user`, hostname `host` and `key`.
fn imds_doc(user: &str, host: &str, key: &str) -> String {
    serde_json::json!({"compute": {"vmId": "x", "osProfile": {"adminUsername": user, "computerName": host,
        "disablePasswordAuthentication": "true"},
        "publicKeys": [{"keyData": key, "path": format!("/home/{user}/.ssh/authorized_keys")}]}})
    .to_string()
}

#[test]
fn without_a_dvd_the_user_keys_and_hostname_come_from_imds_before_the_report() {
    if !need_root("without_a_dvd_the_user_keys_and_hostname_come_from_imds_before_the_report") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    let r = TestRoot::new();
    fabric.set_imds_instance(Some(imds_doc("imdsuser", "wala-imds-vm", &r.keys[0])));
    // IMDS fails twice first: the stage's bounded retries get through.
    fabric.add_fault(
        Fault::new(Listener::Imds, "/metadata/instance", FaultAction::Status { status: 500, body: None })
            .times(2),
    );
    let conf = platform_config(&r, &fabric, "");

    // The local stage alone: no DVD on a fresh disk leaves the IMDS stage its flag, and no user.
    let out = wala(&r, &conf, &["--stage", "local", "--no-dvd"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(r.path("run/wala/imds-pending").exists(), "the IMDS unit's condition");
    assert!(r.read("var/lib/waagent/wala-provisioning.json").contains("\"kind\": \"imds-pending\""));
    assert!(!r.read("etc/passwd").contains("imdsuser"));
    // The IMDS stage, then the network stage.
    let out = wala(&r, &conf, &["--stage", "imds"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!r.path("run/wala/imds-pending").exists(), "the flag is cleared");
    let out = wala(&r, &conf, &["--stage", "network"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "Ready/"]);

    let (uid, _) = uid_of(&r, "imdsuser");
    assert!(uid >= 1000);
    assert_eq!(r.read("home/imdsuser/.ssh/authorized_keys"), format!("{}\n", r.keys[0]));
    assert_eq!(r.read("etc/hostname"), "wala-imds-vm\n");
    assert!(r.read("etc/shadow").contains("imdsuser:*:"), "no password: it only comes from the OVF");
    assert_eq!(r.read("etc/sudoers.d/waagent"), "imdsuser ALL=(ALL) NOPASSWD: ALL\n");
    assert!(r.read("etc/ssh/sshd_config.d/50-wala.conf").contains("PasswordAuthentication no\n"));
    let saved = r.read("var/lib/waagent/ovf-env.xml");
    assert!(
        saved.contains("Made by wala from IMDS") && saved.contains("<wa:UserName>imdsuser</wa:UserName>")
    );
    assert!(r.read("var/lib/waagent/wala-provisioning.json").contains("\"kind\": \"from-imds\""));
    // The fabric's record: IMDS (tried three times) before the first health report.
    let order: Vec<String> = fabric
        .requests()
        .iter()
        .filter(|q| q.listener == Listener::Imds || q.target.contains("comp=health"))
        .map(|q| format!("{} {}", q.listener.name(), q.target.split('?').next().unwrap_or_default()))
        .collect();
    assert_eq!(
        order,
        [
            "imds /metadata/instance",
            "imds /metadata/instance",
            "imds /metadata/instance",
            "wireserver /machine",
            "wireserver /machine"
        ],
        "{order:?}"
    );
    let imds = &fabric.requests_on(Listener::Imds)[0];
    assert!(imds.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("metadata") && v == "true"));

    // The next boot does nothing, and the IMDS stage has nothing to do.
    fabric.clear_requests();
    let out = wala(&r, &conf, &["--stage", "all", "--no-dvd"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fabric.requests().is_empty());
}

#[test]
fn imds_decides_a_specialized_vm_and_its_refusals_are_reported() {
    if !need_root("imds_decides_a_specialized_vm_and_its_refusals_are_reported") {
        return;
    }
    // IMDS names no admin user: a specialized VM; nothing provisioned, Ready alone.
    let fabric = Fabric::start_builtin().expect("fabric");
    fabric.set_imds_instance(Some(
        r#"{"compute": {"vmId": "x", "osProfile": {"adminUsername": "", "computerName": ""}, "publicKeys": []}}"#.into(),
    ));
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric, "");
    let before = r.host_snapshot();
    let out = wala(&r, &conf, &["--stage", "all", "--no-dvd"], &[]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("IMDS names no admin user (a specialized VM): nothing to provision"), "{log}");
    assert_eq!(states(&fabric), ["Ready/"]);
    assert_eq!(r.host_snapshot(), before);

    // An admin user with no key: nobody could log in; reported, nothing created.
    let fabric = Fabric::start_builtin().expect("fabric");
    fabric.set_imds_instance(Some(
        r#"{"compute": {"osProfile": {"adminUsername": "u", "computerName": "h"}, "publicKeys": []}}"#.into(),
    ));
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric, "");
    let passwd = r.read("etc/passwd");
    let out = wala(&r, &conf, &["--stage", "all", "--no-dvd"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "NotReady/ProvisioningFailed"]);
    let description = fabric.health_reports()[1].description.clone().unwrap_or_default();
    assert!(
        description.contains("imds: no provisioning DVD (--no-dvd); IMDS: missing field compute.publicKeys"),
        "{description}"
    );
    assert_eq!(r.read("etc/passwd"), passwd);

    // The IMDS stage never ran (its unit was missing, say): the network stage reports that.
    let fabric = Fabric::start_builtin().expect("fabric");
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric, "");
    assert!(wala(&r, &conf, &["--stage", "local", "--no-dvd"], &[]).status.success());
    let out = wala(&r, &conf, &["--stage", "network"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let description = fabric.health_reports().last().and_then(|h| h.description.clone()).unwrap_or_default();
    assert!(description.contains("imds: no provisioning DVD, and the IMDS stage"), "{description}");
}

#[test]
fn a_crash_after_any_new_step_converges_on_rerun() {
    if !need_root("a_crash_after_any_new_step_converges_on_rerun") {
        return;
    }
    // The kept disk's steps: decided, the previous VM forgotten, hostname and keys refreshed.
    let (reference, conf) = provisioned_root("");
    let extra = ssh_public_key(reference.dir.path(), 9);
    let keep = |r: &TestRoot, conf: &Path, env: &[(&str, &str)]| {
        r.set_vm_id(NEW_ID);
        let ovf = new_vm_ovf(r, &extra);
        r.run(&ovf, conf, env)
    };
    previous_vm_state(&reference);
    assert!(keep(&reference, &conf, &[]).status.success());
    let expected = reference.snapshot();
    for step in ["ovf", "forget-previous-vm", "hostname", "ssh-keys"] {
        let r = TestRoot::with_keys(reference.keys.clone());
        let conf = r.config("");
        assert!(r.run(&r.ovf(None, None), &conf, &[]).status.success());
        std::fs::write(r.path("var/lib/waagent/provisioned"), VM_ID).expect("marker");
        previous_vm_state(&r);
        let crashed = keep(&r, &conf, &[("WALA_TEST_CRASH_AFTER", step)]);
        assert!(!crashed.status.success(), "{step}: the crash hook fired");
        let out = keep(&r, &conf, &[]);
        assert!(out.status.success(), "{step}: rerun: {}", stderr(&out));
        assert_eq!(r.snapshot(), expected, "kept disk: after a crash after {step}, the rerun converges");
    }

    // The IMDS stage's steps.
    let fabric = Fabric::start_builtin().expect("fabric");
    let imds = |r: &TestRoot, env: &[(&str, &str)]| {
        let conf = platform_config(r, &fabric, "");
        assert!(wala(r, &conf, &["--stage", "local", "--no-dvd"], &[]).status.success());
        wala(r, &conf, &["--stage", "imds"], env)
    };
    let reference = TestRoot::new();
    fabric.set_imds_instance(Some(imds_doc("imdsuser", "wala-imds-vm", &reference.keys[0])));
    assert!(imds(&reference, &[]).status.success());
    let expected = reference.snapshot();
    assert!(expected.contains_key("home/imdsuser/.ssh/authorized_keys"));
    let steps = [
        "imds",
        "plan",
        "save-ovf",
        "hostname",
        "user",
        "password",
        "sudoers",
        "sshd",
        "ssh-keys",
        "root-password",
        "guest-agent",
    ];
    for step in steps {
        let r = TestRoot::with_keys(reference.keys.clone());
        let crashed = imds(&r, &[("WALA_TEST_CRASH_AFTER", step)]);
        assert!(!crashed.status.success(), "{step}: the crash hook fired");
        assert!(r.path("run/wala/imds-pending").exists(), "{step}: still pending after the crash");
        // The next boot: the local stage finds its decision and the IMDS stage runs again.
        let out = imds(&r, &[]);
        assert!(out.status.success(), "{step}: rerun: {}", stderr(&out));
        assert_eq!(r.snapshot(), expected, "IMDS stage: after a crash after {step}, the rerun converges");
    }
}
