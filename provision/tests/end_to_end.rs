//! `wala-provision --stage all` end to end: the real binary on a temporary root (real useradd),
//! talking HTTP over loopback to the fabric simulator. Checks what the platform received.

mod support;

use std::os::unix::fs::MetadataExt;

use support::*;
use wala_fabric::{Fabric, Fault, FaultAction, Listener};

fn platform_config(r: &TestRoot, fabric: &Fabric) -> std::path::PathBuf {
    r.config(&format!(
        "Wala.WireServer={}\nWala.HostGAPlugin={}\nWala.Imds={}\n",
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

fn run_all(r: &TestRoot, ovf: &std::path::Path, conf: &std::path::Path) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("--root")
        .arg(r.dir.path())
        .args(["--stage", "all", "--config"])
        .arg(conf)
        .arg("--ovf")
        .arg(ovf)
        .output()
        .expect("run")
}

#[test]
fn provisioning_reports_provisioning_then_ready_once() {
    if !need_root("provisioning_reports_provisioning_then_ready_once") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric);
    let ovf = r.ovf(None, None);
    let out = run_all(&r, &ovf, &conf);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "Ready/"]);
    assert_eq!(r.read("var/lib/waagent/provisioned"), VM_ID);
    assert_eq!(r.read("var/lib/waagent/WireServerEndpoint"), fabric.wire_addr().ip().to_string());
    // The next boot reports nothing more, and its network stage sends no request at all.
    fabric.clear_requests();
    let out = run_all(&r, &ovf, &conf);
    assert!(out.status.success());
    assert_eq!(states(&fabric).len(), 2);
    let sent: Vec<String> = fabric.requests().iter().map(|q| format!("{} {}", q.method, q.target)).collect();
    assert!(sent.is_empty(), "a later boot talked to the platform: {sent:?}");
}

#[test]
fn a_failed_step_is_reported_and_ready_is_never_sent() {
    if !need_root("a_failed_step_is_reported_and_ready_is_never_sent") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric);
    let ovf = r.ovf(Some("pw"), Some("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQ"));
    let out = run_all(&r, &ovf, &conf);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "NotReady/ProvisioningFailed"]);
    let description = fabric.health_reports()[1].description.clone().unwrap_or_default();
    assert!(description.contains("SSH/PublicKeys/PublicKey[3]"), "{description}");
    assert!(!r.path("var/lib/waagent/provisioned").exists());
}

#[test]
fn keys_given_by_certificate_thumbprint_come_from_the_goal_state() {
    if !need_root("keys_given_by_certificate_thumbprint_come_from_the_goal_state") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    let with_key = fabric.certificates().iter().find(|c| c.in_pfx_with_key).expect("a cert with its key");
    let thumb = with_key.thumbprint.to_ascii_lowercase();
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric);
    let ovf = r.ovf_with(
        None,
        None,
        &[(&thumb, "/home/azureuser/.ssh/authorized_keys")],
        &[(&thumb, "/home/azureuser/.ssh/id_rsa")],
    );
    let out = run_all(&r, &ovf, &conf);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // wala-provision links no crypto library: the certificates are fetched by wala-agentd, which
    // took the network stage over.
    assert!(stderr.contains("the network stage continues in") && stderr.contains("wala-agentd"), "{stderr}");
    assert_eq!(states(&fabric).last().map(String::as_str), Some("Ready/"));
    let keys = r.read("home/azureuser/.ssh/authorized_keys");
    let lines: Vec<&str> = keys.lines().collect();
    assert_eq!(lines.len(), 3, "two inline keys and the certificate's: {keys}");
    let expected = wala::crypto::openssl_certs::openssh_public_key(&with_key.key).expect("ssh key");
    assert_eq!(lines[2], expected);
    let private = r.path("home/azureuser/.ssh/id_rsa");
    let m = std::fs::metadata(&private).expect("stat");
    let (uid, _) = (m.uid(), m.gid());
    assert_eq!(m.mode() & 0o777, 0o600);
    assert_ne!(uid, 0, "owned by the user");
    assert_eq!(r.read("home/azureuser/.ssh/id_rsa.pub").trim(), expected);
    let prv = r.path(&format!("var/lib/waagent/{}.prv", with_key.thumbprint));
    assert_eq!(std::fs::metadata(prv).expect("prv").mode() & 0o777, 0o600);
}

#[test]
fn keys_by_thumbprint_without_wala_agentd_beside_it_fail_and_say_so() {
    if !need_root("keys_by_thumbprint_without_wala_agentd_beside_it_fail_and_say_so") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    let thumb = fabric.certificates()[0].thumbprint.to_ascii_lowercase();
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric);
    let ovf = r.ovf_with(None, None, &[(&thumb, "/home/azureuser/.ssh/authorized_keys")], &[]);
    // wala-provision alone in a directory: the hand-over to wala-agentd cannot happen.
    let alone = tempfile::tempdir().expect("tempdir");
    let bin = alone.path().join("wala-provision");
    std::fs::copy(BIN, &bin).expect("copy the binary");
    let out = std::process::Command::new(&bin)
        .arg("--root")
        .arg(r.dir.path())
        .args(["--stage", "all", "--config"])
        .arg(&conf)
        .arg("--ovf")
        .arg(&ovf)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot run") && stderr.contains("wala-agentd"), "{stderr}");
    // The platform is told, naming the step, and the VM is not marked provisioned.
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "NotReady/ProvisioningFailed"]);
    let description = fabric.health_reports()[1].description.clone().unwrap_or_default();
    assert!(description.contains("certificate-keys"), "{description}");
    assert!(!r.path("var/lib/waagent/provisioned").exists());
}

#[test]
fn a_burst_of_server_errors_still_ends_ready() {
    if !need_root("a_burst_of_server_errors_still_ends_ready") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    fabric.add_fault(
        Fault::new(
            Listener::Wireserver,
            "/machine?comp=health",
            FaultAction::Status { status: 503, body: None },
        )
        .times(3),
    );
    fabric.add_fault(
        Fault::new(
            Listener::Wireserver,
            "/machine/?comp=goalstate",
            FaultAction::Status { status: 500, body: None },
        )
        .times(2),
    );
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric);
    let out = run_all(&r, &r.ovf(None, None), &conf);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "Ready/"]);
}

/// `wala-provision --stage STAGE` on the test root.
fn run_stage(
    r: &TestRoot,
    stage: &str,
    ovf: &std::path::Path,
    conf: &std::path::Path,
) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("--root")
        .arg(r.dir.path())
        .args(["--stage", stage, "--config"])
        .arg(conf)
        .arg("--ovf")
        .arg(ovf)
        .output()
        .expect("run")
}

/// `run_stage` with the crash hook set to abort after `point`.
fn run_stage_crashing(
    r: &TestRoot,
    stage: &str,
    point: &str,
    ovf: &std::path::Path,
    conf: &std::path::Path,
) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("--root")
        .arg(r.dir.path())
        .args(["--stage", stage, "--config"])
        .arg(conf)
        .arg("--ovf")
        .arg(ovf)
        .env("WALA_TEST_CRASH_AFTER", point)
        .output()
        .expect("run")
}

#[test]
fn a_crash_at_any_point_of_the_network_stage_converges_on_rerun() {
    if !need_root("a_crash_at_any_point_of_the_network_stage_converges_on_rerun") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    let with_key = fabric.certificates().iter().find(|c| c.in_pfx_with_key).expect("a cert with its key");
    let thumb = with_key.thumbprint.to_ascii_lowercase();
    let keys = [(thumb.as_str(), "/home/azureuser/.ssh/authorized_keys")];
    let pairs = [(thumb.as_str(), "/home/azureuser/.ssh/id_rsa")];
    let converged = [
        "home/azureuser/.ssh/authorized_keys",
        "home/azureuser/.ssh/id_rsa",
        "home/azureuser/.ssh/id_rsa.pub",
        "var/lib/waagent/provisioned",
        "var/lib/waagent/wala-provisioning.json",
    ];
    // CustomData executed too (the OVF's is a comment line: it runs and does nothing).
    let conf_for = |r: &TestRoot| {
        let conf = platform_config(r, &fabric);
        let mut text = std::fs::read_to_string(&conf).expect("conf");
        text.push_str("Provisioning.ExecuteCustomData=y\n");
        std::fs::write(&conf, text).expect("conf");
        conf
    };
    let reference = TestRoot::new();
    let conf = conf_for(&reference);
    let ovf = reference.ovf_with(None, None, &keys, &pairs);
    assert!(run_stage(&reference, "local", &ovf, &conf).status.success());
    let out = run_stage(&reference, "network", &ovf, &conf);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected: Vec<String> = converged.iter().map(|f| reference.read(f)).collect();

    // One fabric (its certificates are made per fabric); each round's reports are the new ones.
    for point in ["certificate-keys", "custom-data-run", "marker", "report-ready"] {
        let before = states(&fabric).len();
        let r = TestRoot::with_keys(reference.keys.clone());
        let conf = conf_for(&r);
        let ovf = r.ovf_with(None, None, &keys, &pairs);
        assert!(run_stage(&r, "local", &ovf, &conf).status.success());
        let crashed = run_stage_crashing(&r, "network", point, &ovf, &conf);
        assert!(!crashed.status.success(), "{point}: the crash hook fired");
        assert!(stderr(&crashed).contains(&format!("WALA_TEST_CRASH_AFTER={point}")), "{}", stderr(&crashed));
        let out = run_stage(&r, "network", &ovf, &conf);
        assert!(out.status.success(), "{point}: rerun: {}", stderr(&out));
        let got: Vec<String> = converged.iter().map(|f| r.read(f)).collect();
        assert_eq!(got, expected, "after a crash after {point}, the rerun converges");
        let reports = states(&fabric).split_off(before);
        assert_eq!(reports.last().map(String::as_str), Some("Ready/"), "{point}: {reports:?}");
        assert!(reports.iter().all(|s| !s.contains("Failed")), "{point}: {reports:?}");
        // And then nothing more is sent.
        let sent = states(&fabric).len();
        assert!(run_stage(&r, "network", &ovf, &conf).status.success());
        assert_eq!(states(&fabric).len(), sent, "{point}: a converged VM reports nothing more");
    }
}

#[test]
fn a_crash_in_the_host_keys_stage_converges_on_rerun() {
    if !need_root("a_crash_in_the_host_keys_stage_converges_on_rerun") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    for point in ["host-keys-deferred", "host-keys-recorded"] {
        let (r, conf, ovf) = host_keys_setup(&fabric, "rsa");
        assert!(run_stage(&r, "local", &ovf, &conf).status.success());
        let ed25519 = r.read("etc/ssh/ssh_host_ed25519_key");
        let crashed = run_stage_crashing(&r, "host-keys", point, &ovf, &conf);
        assert!(!crashed.status.success(), "{point}: the crash hook fired");
        let out = run_stage(&r, "host-keys", &ovf, &conf);
        assert!(out.status.success(), "{point}: rerun: {}", stderr(&out));
        let rsa = r.read("etc/ssh/ssh_host_rsa_key");
        assert!(rsa.starts_with(OPENSSH_KEY), "{point}: {rsa}");
        assert!(r.read("etc/ssh/ssh_host_rsa_key.pub").starts_with("ssh-rsa "), "{point}");
        assert!(!r.read("var/lib/waagent/wala-provisioning.json").contains("host_keys_pending"), "{point}");
        assert_eq!(r.read("etc/ssh/ssh_host_ed25519_key"), ed25519, "{point}: the fast keys stay");
        assert!(run_stage(&r, "host-keys", &ovf, &conf).status.success());
        assert_eq!(r.read("etc/ssh/ssh_host_rsa_key"), rsa, "{point}: made once");
    }
}

/// The platform configuration plus host-key regeneration of `kind`, and stale host keys of the
/// image that must never be served again.
fn host_keys_setup(fabric: &Fabric, kind: &str) -> (TestRoot, std::path::PathBuf, std::path::PathBuf) {
    let r = TestRoot::new();
    let conf = r.config(&format!(
        "Wala.WireServer={}\nWala.HostGAPlugin={}\nWala.Imds={}\n\
         Provisioning.RegenerateSshHostKeyPair=y\nProvisioning.SshHostKeyPairType={kind}\n",
        fabric.wire_addr(),
        fabric.hgap_addr(),
        fabric.imds_addr()
    ));
    std::fs::create_dir_all(r.path("etc/ssh")).expect("mkdir etc/ssh");
    for stale in ["ssh_host_ed25519_key", "ssh_host_rsa_key", "ssh_host_rsa_key.pub"] {
        std::fs::write(r.path(&format!("etc/ssh/{stale}")), "the image's key\n").expect("write key");
    }
    let ovf = r.ovf(None, None);
    (r, conf, ovf)
}

const OPENSSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";

#[test]
fn sshd_gets_new_keys_from_the_local_stage_and_rsa_comes_later_without_holding_ready() {
    if !need_root("sshd_gets_new_keys_from_the_local_stage_and_rsa_comes_later_without_holding_ready") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    let (r, conf, ovf) = host_keys_setup(&fabric, "rsa");
    let state = "var/lib/waagent/wala-provisioning.json";

    // The local stage: new Ed25519 and ECDSA keys at once, every old key gone, RSA pending.
    let out = run_stage(&r, "local", &ovf, &conf);
    assert!(out.status.success(), "{}", stderr(&out));
    let ed25519 = r.read("etc/ssh/ssh_host_ed25519_key");
    assert!(ed25519.starts_with(OPENSSH_KEY), "a new key: {ed25519}");
    assert!(r.read("etc/ssh/ssh_host_ecdsa_key.pub").starts_with("ecdsa-sha2-nistp256 "));
    assert!(!r.path("etc/ssh/ssh_host_rsa_key").exists(), "the image's RSA key is gone");
    assert!(r.read(state).contains("\"host_keys_pending\": true"), "{}", r.read(state));

    // Ready does not wait for the RSA key.
    let out = run_stage(&r, "network", &ovf, &conf);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "Ready/"]);
    assert!(!r.path("etc/ssh/ssh_host_rsa_key").exists());

    // The host-keys stage (after sshd started) makes it; the fast keys stay as they are.
    let out = run_stage(&r, "host-keys", &ovf, &conf);
    assert!(out.status.success(), "{}", stderr(&out));
    let rsa = r.read("etc/ssh/ssh_host_rsa_key");
    assert!(rsa.starts_with(OPENSSH_KEY), "{rsa}");
    assert!(r.read("etc/ssh/ssh_host_rsa_key.pub").starts_with("ssh-rsa "));
    assert_eq!(r.read("etc/ssh/ssh_host_ed25519_key"), ed25519);
    assert!(!r.read(state).contains("host_keys_pending"), "{}", r.read(state));

    // Once made, nothing is made again (a second run, or the next boot).
    let out = run_stage(&r, "host-keys", &ovf, &conf);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(r.read("etc/ssh/ssh_host_rsa_key"), rsa);
    let out = run_stage(&r, "local", &ovf, &conf);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(r.read("etc/ssh/ssh_host_ed25519_key"), ed25519);
    assert_eq!(states(&fabric).len(), 2);
}

#[test]
fn ed25519_alone_leaves_nothing_for_later() {
    if !need_root("ed25519_alone_leaves_nothing_for_later") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    let (r, conf, ovf) = host_keys_setup(&fabric, "ed25519");
    assert!(run_stage(&r, "local", &ovf, &conf).status.success());
    assert!(!r.read("var/lib/waagent/wala-provisioning.json").contains("host_keys_pending"));
    assert!(r.read("etc/ssh/ssh_host_ed25519_key").starts_with(OPENSSH_KEY));
    assert!(!r.path("etc/ssh/ssh_host_rsa_key").exists());
    let out = run_stage(&r, "network", &ovf, &conf);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "Ready/"]);
}

#[test]
fn host_keys_that_cannot_be_made_before_sshd_are_a_reported_failure() {
    if !need_root("host_keys_that_cannot_be_made_before_sshd_are_a_reported_failure") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    let (r, conf, ovf) = host_keys_setup(&fabric, "auto");
    // A directory where the Ed25519 key goes: it cannot be written.
    std::fs::remove_file(r.path("etc/ssh/ssh_host_ed25519_key")).unwrap();
    std::fs::create_dir_all(r.path("etc/ssh/ssh_host_ed25519_key/in-the-way")).unwrap();
    let out = run_stage(&r, "local", &ovf, &conf);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = run_stage(&r, "network", &ovf, &conf);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "NotReady/ProvisioningFailed"]);
    let description = fabric.health_reports()[1].description.clone().unwrap_or_default();
    assert!(description.contains("host-keys"), "{description}");
    assert!(!r.path("var/lib/waagent/provisioned").exists());
}

#[test]
fn an_rsa_key_that_cannot_be_made_later_fails_its_stage_but_not_provisioning() {
    if !need_root("an_rsa_key_that_cannot_be_made_later_fails_its_stage_but_not_provisioning") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    let (r, conf, ovf) = host_keys_setup(&fabric, "auto");
    assert!(run_stage(&r, "local", &ovf, &conf).status.success());
    std::fs::create_dir_all(r.path("etc/ssh/ssh_host_rsa_key/in-the-way")).unwrap();
    let out = run_stage(&r, "host-keys", &ovf, &conf);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("host-keys"), "{}", stderr(&out));
    let out = run_stage(&r, "network", &ovf, &conf);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "Ready/"]);
    assert!(r.read("etc/ssh/ssh_host_ed25519_key").starts_with(OPENSSH_KEY), "sshd still has new keys");
}

#[test]
fn a_system_account_is_a_reported_failure_and_etc_is_left_alone() {
    if !need_root("a_system_account_is_a_reported_failure_and_etc_is_left_alone") {
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    let r = TestRoot::new();
    r.add_nobody();
    let conf = platform_config(&r, &fabric);
    let ovf = r.ovf_for("nobody", "/etc/authorized_keys", None, None, &[], &[]);
    let etc = std::fs::metadata(r.path("etc")).expect("stat");
    let out = run_all(&r, &ovf, &conf);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(states(&fabric), ["NotReady/Provisioning", "NotReady/ProvisioningFailed"]);
    let description = fabric.health_reports()[1].description.clone().unwrap_or_default();
    assert!(
        description.contains("plan: UserName nobody is a system account (uid 65534 > UID_MAX 60000)"),
        "{description}"
    );
    let now = std::fs::metadata(r.path("etc")).expect("stat");
    assert_eq!((now.mode(), now.uid(), now.gid()), (etc.mode(), etc.uid(), etc.gid()));
    assert!(!r.path("etc/authorized_keys").exists());
    assert!(!r.path("etc/sudoers.d/waagent").exists(), "no sudo for nobody");
    assert!(!r.path("var/lib/waagent/provisioned").exists());
}
