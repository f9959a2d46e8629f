//! The real `wala-provision` binary running the local stage on a temporary root, with real
//! `useradd --prefix`, real password hashing and real files, then checked file by file. Root only
//! (useradd and chown need it; CI runs as root).

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use support::*;

#[test]
fn local_stage_provisions_a_root_file_by_file() {
    if !need_root("local_stage_provisions_a_root_file_by_file") {
        return;
    }
    let r = TestRoot::new();
    let ovf = r.ovf(Some("Secret-Pa55"), None);
    let conf = r.config("");
    let out = r.run(&ovf, &conf, &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    assert_eq!(r.read("etc/hostname"), "wala-test-vm\n");
    assert!(r.read("etc/hosts").contains("127.0.1.1\twala-test-vm\n"));
    let (uid, gid) = uid_of(&r, "azureuser");
    assert!(uid >= 1000);
    let shadow = r.read("etc/shadow");
    let entry = shadow.lines().find(|l| l.starts_with("azureuser:")).expect("shadow entry");
    let hash = entry.split(':').nth(1).expect("hash");
    assert!(hash.starts_with("$6$") && pwhash::unix::verify("Secret-Pa55", hash), "{entry}");
    assert!(shadow.starts_with("root:*LOCK*:19000:"), "root locked: {shadow}");
    assert!(!shadow.contains("Secret-Pa55"));
    assert_eq!(r.read("etc/sudoers.d/waagent"), "azureuser ALL=(ALL) ALL\n");
    assert_eq!(std::fs::metadata(r.path("etc/sudoers.d/waagent")).expect("stat").mode() & 0o777, 0o440);
    let dropin = r.read("etc/ssh/sshd_config.d/50-wala.conf");
    assert!(dropin
        .contains("PasswordAuthentication yes\nKbdInteractiveAuthentication yes\nClientAliveInterval 120\n"));

    let ak = r.path("home/azureuser/.ssh/authorized_keys");
    assert_eq!(std::fs::read_to_string(&ak).expect("keys"), format!("{}\n{}\n", r.keys[0], r.keys[1]));
    let m = std::fs::metadata(&ak).expect("stat");
    assert_eq!((m.mode() & 0o777, m.uid(), m.gid()), (0o600, uid, gid));
    let m = std::fs::metadata(r.path("home/azureuser/.ssh")).expect("stat");
    assert_eq!((m.mode() & 0o777, m.uid(), m.gid()), (0o700, uid, gid));
    assert_eq!(std::fs::metadata(r.path("home/azureuser")).expect("stat").uid(), uid);

    let saved = r.read("var/lib/waagent/ovf-env.xml");
    assert!(!saved.contains("Secret-Pa55") && saved.contains("<ns1:UserName>azureuser</ns1:UserName>"));
    assert_eq!(std::fs::metadata(r.path("var/lib/waagent/ovf-env.xml")).expect("stat").mode() & 0o777, 0o600);
    assert_eq!(r.read("var/lib/waagent/CustomData"), "#cloud-config\n");
    let state = r.read("var/lib/waagent/wala-provisioning.json");
    assert!(state.contains("\"result\": \"done\"") && state.contains("\"mode\": \"provision\""), "{state}");
    assert!(!r.path("var/lib/waagent/provisioned").exists(), "the marker is the network stage's");
    let log = r.read("var/log/waagent.log");
    assert!(log.contains(" INFO Provision user: done in "), "{log}");
    assert!(!log.contains("Secret-Pa55"));
}

#[test]
fn rerun_is_idempotent_and_a_new_vm_id_provisions_again() {
    if !need_root("rerun_is_idempotent_and_a_new_vm_id_provisions_again") {
        return;
    }
    let r = TestRoot::new();
    let conf = r.config("");
    let ovf = r.ovf(None, None);
    assert!(r.run(&ovf, &conf, &[]).status.success());
    let first = r.snapshot();
    let out = r.run(&ovf, &conf, &[]);
    assert!(out.status.success() && stderr(&out).contains("already ran for this VM"), "{}", stderr(&out));
    assert_eq!(r.snapshot(), first, "a second run changes nothing");

    // Same image on a new VM, with one more key: provisioned again, the user reused, keys merged.
    r.set_vm_id("11111111-2222-3333-4444-555555555555");
    let extra = ssh_public_key(r.dir.path(), 3);
    let ovf = r.ovf(None, Some(&extra));
    let out = r.run(&ovf, &conf, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("User azureuser already exists"), "{}", stderr(&out));
    assert_eq!(r.read("etc/passwd").lines().filter(|l| l.starts_with("azureuser:")).count(), 1);
    let keys = r.read("home/azureuser/.ssh/authorized_keys");
    assert_eq!(keys, format!("{}\n{}\n{extra}\n", r.keys[0], r.keys[1]));
    assert!(r
        .read("var/lib/waagent/wala-provisioning.json")
        .contains("11111111-2222-3333-4444-555555555555"));
    // No password: password login off, sudo without a password.
    assert!(r.read("etc/shadow").contains("azureuser:*:"));
    assert_eq!(r.read("etc/sudoers.d/waagent"), "azureuser ALL=(ALL) NOPASSWD: ALL\n");
}

#[test]
fn a_bad_key_changes_nothing_and_is_recorded() {
    if !need_root("a_bad_key_changes_nothing_and_is_recorded") {
        return;
    }
    let r = TestRoot::new();
    let conf = r.config("");
    let ovf = r.ovf(
        Some("pw"),
        Some("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIBH5dHoEPpIHqGUK3xfI0qWqTeuTr4SfQeRfVmW4EwB5"),
    );
    let passwd = r.read("etc/passwd");
    let out = r.run(&ovf, &conf, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("SSH/PublicKeys/PublicKey[3]"), "{}", stderr(&out));
    assert_eq!(r.read("etc/passwd"), passwd, "no user created without its keys");
    assert!(!r.path("home/azureuser").exists());
    let state = r.read("var/lib/waagent/wala-provisioning.json");
    assert!(state.contains("\"result\": \"failed\"") && state.contains("\"step\": \"plan\""), "{state}");
}

#[test]
fn a_crash_after_any_step_converges_on_rerun() {
    if !need_root("a_crash_after_any_step_converges_on_rerun") {
        return;
    }
    // With host keys regenerated (Ed25519 only: nothing left for the host-keys stage).
    let settings = "Provisioning.RegenerateSshHostKeyPair=y\nProvisioning.SshHostKeyPairType=ed25519\n";
    let reference = TestRoot::new();
    let conf = reference.config(settings);
    let ovf = reference.ovf(Some("pw-123"), None);
    assert!(reference.run(&ovf, &conf, &[]).status.success());
    let expected = reference.snapshot();
    assert!(expected.contains_key("etc/ssh/ssh_host_ed25519_key"), "host keys were made");
    let steps = [
        "ovf",
        "plan",
        "save-ovf",
        "hostname",
        "sudoers-check",
        "user",
        "password",
        "sudoers",
        "sshd",
        "host-keys",
        "ssh-keys",
        "root-password",
        "custom-data",
        "guest-agent",
    ];
    for step in steps {
        let r = TestRoot::with_keys(reference.keys.clone());
        let conf = r.config(settings);
        let ovf = r.ovf(Some("pw-123"), None);
        let crashed = r.run(&ovf, &conf, &[("WALA_TEST_CRASH_AFTER", step)]);
        assert!(!crashed.status.success(), "{step}: the crash hook fired");
        let out = r.run(&ovf, &conf, &[]);
        assert!(out.status.success(), "{step}: rerun: {}", stderr(&out));
        assert_eq!(
            r.snapshot(),
            expected,
            "after a crash after {step}, the rerun converges to the same tree"
        );
    }
}

/// In the initramfs (`etc/initrd-release` under a root that is not the live one) before the
/// kernel's random pool is ready, the image's host keys are removed and the new ones left to the
/// local stage on the real root, which makes them (and converges after a crash); the marker that
/// lets the real root's unit be skipped is written only when nothing is left for it.
#[test]
fn host_keys_the_initramfs_could_not_make_are_made_on_the_real_root() {
    if !need_root("host_keys_the_initramfs_could_not_make_are_made_on_the_real_root") {
        return;
    }
    let settings = "Provisioning.RegenerateSshHostKeyPair=y\nProvisioning.SshHostKeyPairType=ed25519\n";
    let marker = "run/wala/local-stage-done-in-initrd";
    let (ed25519, ecdsa) = ("etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ecdsa_key");
    let r = TestRoot::new();
    let conf = r.config(settings);
    let ovf = r.ovf(Some("pw-123"), None);
    std::fs::write(r.path("etc/ssh/ssh_host_rsa_key"), "the image's old key").expect("write");
    std::fs::write(r.path("etc/initrd-release"), "").expect("write");
    let not_ready = [("WALA_TEST_RANDOM_NOT_READY", "1")];

    let out = r.run(&ovf, &conf, &not_ready);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!r.path("etc/ssh/ssh_host_rsa_key").exists(), "the old key is removed at once");
    assert!(!r.path(ed25519).exists() && !r.path(ecdsa).exists(), "no key made without the pool");
    assert!(r.read("etc/passwd").contains("azureuser:"), "the rest of the stage ran");
    assert!(r
        .read("var/lib/waagent/wala-provisioning.json")
        .contains("\"fast_host_keys\": \"wala-test-vm\""));
    assert!(!r.path(marker).exists(), "the real root's local stage has keys to make");
    // A later initramfs run, the pool still not ready: still left.
    assert!(r.run(&ovf, &conf, &not_ready).status.success());
    assert!(!r.path(ed25519).exists() && !r.path(marker).exists());

    // The real root (no initrd-release): a crash right after the keys (not yet recorded), then a
    // rerun, which makes them again.
    std::fs::remove_file(r.path("etc/initrd-release")).expect("remove");
    let crashed = r.run(&ovf, &conf, &[("WALA_TEST_CRASH_AFTER", "host-keys")]);
    assert!(!crashed.status.success(), "the crash hook fired");
    assert!(r.path(ed25519).exists());
    let out = r.run(&ovf, &conf, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("made the host keys the initramfs left"), "{}", stderr(&out));
    for key in [ed25519, ecdsa] {
        let mode = std::fs::metadata(r.path(key)).expect(key).mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
        assert!(r.read(&format!("{key}.pub")).ends_with(" root@wala-test-vm\n"), "{key}.pub");
    }
    let state = r.read("var/lib/waagent/wala-provisioning.json");
    assert!(!state.contains("fast_host_keys") && state.contains("\"result\": \"done\""), "{state}");
    let keys = r.read(ed25519);
    assert!(r.run(&ovf, &conf, &[]).status.success());
    assert_eq!(r.read(ed25519), keys, "made once");

    // An initramfs run that leaves nothing (this VM's stage is done): the marker.
    std::fs::write(r.path("etc/initrd-release"), "").expect("write");
    assert!(r.run(&ovf, &conf, &not_ready).status.success());
    assert!(r.path(marker).exists(), "nothing left for the real root");
}

#[test]
fn system_accounts_are_refused_before_anything_changes() {
    if !need_root("system_accounts_are_refused_before_anything_changes") {
        return;
    }
    // `nobody` is Fedora's (home `/`, /sbin/nologin): its key path under /etc used to make /etc
    // `drwx------ nobody` and give nobody passwordless sudo.
    let cases = [
        ("nobody", "/etc/authorized_keys", "uid 65534 > UID_MAX 60000"),
        ("root", "/root/.ssh/authorized_keys", "uid 0, the superuser"),
        ("daemon", "/usr/sbin/.ssh/authorized_keys", "uid 1 < UID_MIN 1000"),
    ];
    for (name, key_path, why) in cases {
        for password in [None, Some("Pa55-word")] {
            let r = TestRoot::new();
            r.add_nobody();
            std::fs::create_dir_all(r.path("root")).expect("mkdir");
            std::fs::create_dir_all(r.path("usr/sbin")).expect("mkdir");
            let before = r.host_snapshot();
            let ovf = r.ovf_for(name, key_path, password, None, &[], &[]);
            let out = r.run(&ovf, &r.config(""), &[]);
            let what = format!("{name} (password {password:?})");
            assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
            let reason = format!("UserName {name} is a system account ({why})");
            assert!(stderr(&out).contains(&reason), "{what}: {}", stderr(&out));
            assert_eq!(r.host_snapshot(), before, "{what}: nothing changed");
            let state = r.read("var/lib/waagent/wala-provisioning.json");
            assert!(state.contains("\"step\": \"plan\"") && state.contains(&reason), "{what}: {state}");
        }
    }
}

/// `wala-provision-local.service` is `Type=notify`: the stage says READY=1 once the hostname is set,
/// while `useradd` still runs, and `--stage local-done` (what sshd waits for) returns only when the
/// whole stage has ended. `useradd` is made slow by a wrapper first on `PATH` so that the order is
/// certain.
#[test]
fn ready_once_the_hostname_is_set_and_local_done_waits_for_the_whole_stage() {
    if !need_root("ready_once_the_hostname_is_set_and_local_done_waits_for_the_whole_stage") {
        return;
    }
    use std::os::unix::net::UnixDatagram;
    let r = TestRoot::new();
    let ovf = r.ovf(None, None);
    let conf = r.config("");
    let bin = r.dir.path().join("slow-bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let real =
        ["/usr/sbin/useradd", "/sbin/useradd"].into_iter().find(|p| Path::new(p).exists()).expect("useradd");
    std::fs::write(bin.join("useradd"), format!("#!/bin/sh\nsleep 2\nexec {real} \"$@\"\n")).expect("write");
    std::fs::set_permissions(bin.join("useradd"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let socket_path = r.dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    socket.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");

    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut stage = std::process::Command::new(BIN)
        .arg("--root")
        .arg(r.dir.path())
        .args(["--stage", "local", "--config"])
        .arg(&conf)
        .arg("--ovf")
        .arg(&ovf)
        .env("PATH", &path)
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("WALA_TEST_CRASH_AFTER")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("READY=1 from the local stage");
    assert_eq!(&buf[..n], b"READY=1");
    assert_eq!(r.read("etc/hostname"), "wala-test-vm\n", "the hostname is set before READY=1");
    assert!(!r.read("etc/passwd").contains("azureuser:"), "READY=1 comes while useradd still runs");

    let done = Command::new(BIN)
        .arg("--root")
        .arg(r.dir.path())
        .args(["--stage", "local-done"])
        .output()
        .expect("run");
    assert!(done.status.success(), "{}", stderr(&done));
    // local-done returned: the stage's process has ended, with the user and the keys in place.
    let status = stage.wait().expect("wait");
    assert!(status.success());
    assert!(r.read("etc/passwd").contains("azureuser:"));
    assert!(r.path("home/azureuser/.ssh/authorized_keys").exists());
    assert!(r.path("etc/sudoers.d/waagent").exists());

    // A second run has nothing to do and still says READY=1 (a notify unit that never does fails).
    let out = r.run(&ovf, &conf, &[("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8"))]);
    assert!(out.status.success(), "{}", stderr(&out));
    let n = socket.recv(&mut buf).expect("READY=1 from a stage with nothing to do");
    assert_eq!(&buf[..n], b"READY=1");
}

/// Linked as `wala-provision-generator`, the binary is the systemd generator: it takes the output
/// directory systemd gives it (on this machine, whose disk no marker names, it writes nothing;
/// the library's tests and the VM test's reboot cover a provisioned disk) and says how to call it.
#[test]
fn called_as_wala_provision_generator_it_is_the_generator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("wala-provision-generator");
    std::os::unix::fs::symlink(BIN, &link).expect("symlink");
    let usage = Command::new(&link).output().expect("run");
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("usage: wala-provision-generator NORMAL-DIR"), "{}", stderr(&usage));
    let out = dir.path().join("normal");
    std::fs::create_dir(&out).expect("mkdir");
    let run = Command::new(&link).arg(&out).arg(dir.path()).arg(dir.path()).output().expect("run");
    assert!(run.status.success(), "{}", stderr(&run));
    let provisioned = std::fs::read_to_string("/var/lib/waagent/provisioned").unwrap_or_default();
    if provisioned.is_empty() {
        assert_eq!(std::fs::read_dir(&out).expect("ls").count(), 0, "nothing for a disk never provisioned");
    }
}
