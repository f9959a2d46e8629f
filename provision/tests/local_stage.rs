//! The real `wala-provision` binary running the local stage on a temporary root, with real
//! `useradd --prefix`, real password hashing and real files, then checked file by file. Root only
//! (useradd and chown need it; CI runs as root).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_wala-provision");
const VM_ID: &str = "7E5C3F2A-1B4D-4E6F-8A9B-0C1D2E3F4A5B";

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn skip(message: &str) {
    eprintln!("SKIP {message}");
    if let Some(path) = std::env::var_os("WALA_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "SKIP {message}");
        }
    }
}

fn need_root(test: &str) -> bool {
    if !is_root() {
        skip(&format!("{test}: needs root (useradd --prefix, chown)"));
    }
    is_root()
}

/// A temporary root with the minimal files a distribution has.
struct TestRoot {
    dir: tempfile::TempDir,
    keys: Vec<String>,
}

impl TestRoot {
    fn new() -> Self {
        let mut r = Self::with_keys(Vec::new());
        r.keys = (0..2).map(|i| ssh_public_key(r.dir.path(), i)).collect();
        r
    }

    /// A root whose OVF will carry these keys.
    fn with_keys(keys: Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        for d in [
            "etc/ssh/sshd_config.d",
            "etc/default",
            "home",
            "sys/class/dmi/id",
            "sys/firmware/efi",
            "var/lib",
            "var/log",
        ] {
            std::fs::create_dir_all(p.join(d)).expect("mkdir");
        }
        let write = |rel: &str, text: &str, mode: u32| {
            std::fs::write(p.join(rel), text).expect("write");
            std::fs::set_permissions(p.join(rel), std::os::unix::fs::PermissionsExt::from_mode(mode))
                .expect("chmod");
        };
        write(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
            0o644,
        );
        write("etc/group", "root:x:0:\ndaemon:x:1:\nusers:x:100:\n", 0o644);
        write("etc/shadow", "root:$6$old$hash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n", 0o640);
        write("etc/gshadow", "root:*::\ndaemon:*::\nusers:*::\n", 0o640);
        write(
            "etc/login.defs",
            "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\nUSERGROUPS_ENAB yes\n",
            0o644,
        );
        write(
            "etc/ssh/sshd_config",
            "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n",
            0o644,
        );
        write("etc/hosts", "127.0.0.1\tlocalhost\n", 0o644);
        write("sys/class/dmi/id/product_uuid", &format!("{VM_ID}\n"), 0o444);
        Self { dir, keys }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    fn set_vm_id(&self, id: &str) {
        std::fs::write(self.path("sys/class/dmi/id/product_uuid"), format!("{id}\n")).expect("write");
    }

    fn ovf(&self, password: Option<&str>, extra_key: Option<&str>) -> PathBuf {
        let mut keys = String::new();
        for k in self.keys.iter().map(String::as_str).chain(extra_key) {
            keys.push_str(&format!(
                "<PublicKey><Fingerprint>00</Fingerprint><Path>/home/azureuser/.ssh/authorized_keys</Path>\
                 <Value>{k}</Value></PublicKey>"
            ));
        }
        let password = password.map(|p| format!("<UserPassword>{p}</UserPassword>")).unwrap_or_default();
        let xml = format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<ns0:Environment xmlns:ns0="http://schemas.dmtf.org/ovf/environment/1" xmlns:ns1="http://schemas.microsoft.com/windowsazure">
 <ns1:ProvisioningSection><ns1:Version>1.0</ns1:Version>
  <ns1:LinuxProvisioningConfigurationSet>
   <ns1:ConfigurationSetType>LinuxProvisioningConfiguration</ns1:ConfigurationSetType>
   <ns1:HostName>wala-test-vm</ns1:HostName>
   <ns1:UserName>azureuser</ns1:UserName>
   {}
   <ns1:DisableSshPasswordAuthentication>{}</ns1:DisableSshPasswordAuthentication>
   <ns1:SSH><ns1:PublicKeys>{}</ns1:PublicKeys></ns1:SSH>
   <ns1:CustomData>I2Nsb3VkLWNvbmZpZwo=</ns1:CustomData>
  </ns1:LinuxProvisioningConfigurationSet>
 </ns1:ProvisioningSection>
 <ns1:PlatformSettingsSection><ns1:Version>1.0</ns1:Version>
  <ns1:PlatformSettings><ns1:ProvisionGuestAgent>true</ns1:ProvisionGuestAgent></ns1:PlatformSettings>
 </ns1:PlatformSettingsSection>
</ns0:Environment>
"#,
            password
                .replace("<UserPassword>", "<ns1:UserPassword>")
                .replace("</UserPassword>", "</ns1:UserPassword>"),
            if password.is_empty() { "true" } else { "false" },
            keys.replace('<', "<ns1:").replace("<ns1:/", "</ns1:"),
        );
        let path = self.dir.path().join("ovf-env.xml");
        std::fs::write(&path, xml).expect("write ovf");
        path
    }

    fn config(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("waagent.conf");
        let text = format!(
            "Provisioning.Agent=waagent\nProvisioning.DeleteRootPassword=y\nProvisioning.RegenerateSshHostKeyPair=n\n\
             Provisioning.DecodeCustomData=y\nResourceDisk.Format=n\nOS.SshClientAliveInterval=120\n{extra}"
        );
        std::fs::write(&path, text).expect("write conf");
        path
    }

    fn run(&self, ovf: &Path, config: &Path, env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("--root").arg(self.dir.path()).arg("--stage").arg("local").arg("--config").arg(config);
        cmd.arg("--ovf").arg(ovf);
        cmd.env_remove("WALA_TEST_CRASH_AFTER");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run wala-provision")
    }

    /// Every file under the root (but the ovf and config inputs, the log and /sys) with its mode,
    /// owner and content; the random parts of password hashes masked.
    fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("ls").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path.strip_prefix(base).expect("prefix").to_string_lossy().into_owned();
        if ["sys", "ovf-env.xml", "waagent.conf", "var/log/waagent.log", "keys"].contains(&rel.as_str()) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let head = format!("{:o} {}:{}", meta.mode() & 0o7777, meta.uid(), meta.gid());
        if meta.is_dir() {
            out.insert(rel, format!("{head} dir"));
            walk(base, &path, out);
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned();
            out.insert(rel, format!("{head}\n{}", mask_hashes(&text)));
        }
    }
}

fn mask_hashes(text: &str) -> String {
    text.lines()
        .map(|l| match l.split_once(":$6$") {
            Some((user, rest)) => format!("{user}:$6$<hash>:{}", rest.split_once(':').map_or("", |(_, r)| r)),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ssh_public_key(dir: &Path, i: usize) -> String {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    let file = keys.join(format!("k{i}"));
    let kind = if i % 2 == 0 { "ed25519" } else { "ecdsa" };
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", kind, "-C", &format!("key{i}"), "-f"])
        .arg(&file)
        .output();
    assert!(out.is_ok_and(|o| o.status.success()), "ssh-keygen");
    std::fs::read_to_string(file.with_extension("pub")).expect("read key").trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn uid_of(root: &TestRoot, user: &str) -> (u32, u32) {
    let passwd = root.read("etc/passwd");
    let line = passwd.lines().find(|l| l.starts_with(&format!("{user}:"))).expect("user in passwd");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().expect("uid"), f[3].parse().expect("gid"))
}

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
    let reference = TestRoot::new();
    let conf = reference.config("");
    let ovf = reference.ovf(Some("pw-123"), None);
    assert!(reference.run(&ovf, &conf, &[]).status.success());
    let expected = reference.snapshot();
    let steps = [
        "ovf",
        "plan",
        "save-ovf",
        "hostname",
        "user",
        "password",
        "sudoers",
        "sshd",
        "ssh-keys",
        "root-password",
        "custom-data",
        "guest-agent",
    ];
    for step in steps {
        let r = TestRoot::with_keys(reference.keys.clone());
        let conf = r.config("");
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
