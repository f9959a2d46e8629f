//! A temporary root that looks like a distribution, for the provisioning tests and benchmark.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_wala-provision");
pub const VM_ID: &str = "7E5C3F2A-1B4D-4E6F-8A9B-0C1D2E3F4A5B";

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn skip(message: &str) {
    eprintln!("SKIP {message}");
    if let Some(path) = std::env::var_os("WALA_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "SKIP {message}");
        }
    }
}

pub fn need_root(test: &str) -> bool {
    if !is_root() {
        skip(&format!("{test}: needs root (useradd --prefix, chown)"));
    }
    is_root()
}

/// A temporary root with the minimal files a distribution has.
pub struct TestRoot {
    pub dir: tempfile::TempDir,
    pub keys: Vec<String>,
}

impl TestRoot {
    pub fn new() -> Self {
        let mut r = Self::with_keys(Vec::new());
        r.keys = (0..2).map(|i| ssh_public_key(r.dir.path(), i)).collect();
        r
    }

    /// A root whose OVF will carry these keys.
    pub fn with_keys(keys: Vec<String>) -> Self {
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

    /// Add Fedora's `nobody` (home `/`, no login shell) to the account files.
    pub fn add_nobody(&self) {
        let append = |rel: &str, line: &str| {
            let text = self.read(rel) + line;
            std::fs::write(self.path(rel), text).expect("write");
        };
        append("etc/passwd", "nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin\n");
        append("etc/group", "nobody:x:65534:\n");
        append("etc/shadow", "nobody:*:19000:0:99999:7:::\n");
        append("etc/gshadow", "nobody:*::\n");
    }

    /// The snapshot without wala's own state (`/var/lib/waagent`), which records a failure too.
    pub fn host_snapshot(&self) -> BTreeMap<String, String> {
        let mut s = self.snapshot();
        s.retain(|k, _| !k.starts_with("var/lib/waagent"));
        s
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn set_vm_id(&self, id: &str) {
        std::fs::write(self.path("sys/class/dmi/id/product_uuid"), format!("{id}\n")).expect("write");
    }

    pub fn ovf(&self, password: Option<&str>, extra_key: Option<&str>) -> PathBuf {
        self.ovf_with(password, extra_key, &[], &[])
    }

    /// An OVF with the root's inline keys, plus keys and key pairs given only by certificate
    /// thumbprint (`(thumbprint, path)`).
    pub fn ovf_with(
        &self,
        password: Option<&str>,
        extra_key: Option<&str>,
        fingerprint_keys: &[(&str, &str)],
        key_pairs: &[(&str, &str)],
    ) -> PathBuf {
        let inline = "/home/azureuser/.ssh/authorized_keys";
        self.ovf_for("azureuser", inline, password, extra_key, fingerprint_keys, key_pairs)
    }

    /// An OVF naming `user`, with the root's inline keys (and `extra_key`) at `key_path`.
    pub fn ovf_for(
        &self,
        user: &str,
        key_path: &str,
        password: Option<&str>,
        extra_key: Option<&str>,
        fingerprint_keys: &[(&str, &str)],
        key_pairs: &[(&str, &str)],
    ) -> PathBuf {
        let mut keys = String::from("<PublicKeys>");
        for k in self.keys.iter().map(String::as_str).chain(extra_key) {
            keys.push_str(&format!(
                "<PublicKey><Fingerprint>00</Fingerprint><Path>{key_path}</Path><Value>{k}</Value></PublicKey>"
            ));
        }
        for (fp, path) in fingerprint_keys {
            keys.push_str(&format!(
                "<PublicKey><Fingerprint>{fp}</Fingerprint><Path>{path}</Path></PublicKey>"
            ));
        }
        keys.push_str("</PublicKeys><KeyPairs>");
        for (fp, path) in key_pairs {
            keys.push_str(&format!("<KeyPair><Fingerprint>{fp}</Fingerprint><Path>{path}</Path></KeyPair>"));
        }
        keys.push_str("</KeyPairs>");
        let password = password.map(|p| format!("<UserPassword>{p}</UserPassword>")).unwrap_or_default();
        let xml = format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<ns0:Environment xmlns:ns0="http://schemas.dmtf.org/ovf/environment/1" xmlns:ns1="http://schemas.microsoft.com/windowsazure">
 <ns1:ProvisioningSection><ns1:Version>1.0</ns1:Version>
  <ns1:LinuxProvisioningConfigurationSet>
   <ns1:ConfigurationSetType>LinuxProvisioningConfiguration</ns1:ConfigurationSetType>
   <ns1:HostName>wala-test-vm</ns1:HostName>
   <ns1:UserName>{user}</ns1:UserName>
   {}
   <ns1:DisableSshPasswordAuthentication>{}</ns1:DisableSshPasswordAuthentication>
   <ns1:SSH>{}</ns1:SSH>
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

    pub fn config(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("waagent.conf");
        let text = format!(
            "Provisioning.Agent=waagent\nProvisioning.DeleteRootPassword=y\nProvisioning.RegenerateSshHostKeyPair=n\n\
             Provisioning.DecodeCustomData=y\nResourceDisk.Format=n\nOS.SshClientAliveInterval=120\n{extra}"
        );
        std::fs::write(&path, text).expect("write conf");
        path
    }

    pub fn run(&self, ovf: &Path, config: &Path, env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("--root").arg(self.dir.path()).arg("--stage").arg("local").arg("--config").arg(config);
        cmd.arg("--ovf").arg(ovf);
        cmd.env_remove("WALA_TEST_CRASH_AFTER");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run wala-provision")
    }

    /// Every file under the root (but the ovf and config inputs, the log, /sys and the boot
    /// timeline) with its mode, owner and content; the random parts of password hashes masked.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out
    }
}

pub fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("ls").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path.strip_prefix(base).expect("prefix").to_string_lossy().into_owned();
        // Also left out: the boot timeline (times of this run) and its copy.
        if [
            "sys",
            "run",
            "ovf-env.xml",
            "waagent.conf",
            "var/log/waagent.log",
            "keys",
            "var/lib/waagent/events",
            "var/lib/waagent/wala-boot-timeline.jsonl",
        ]
        .contains(&rel.as_str())
        {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let head = format!("{:o} {}:{}", meta.mode() & 0o7777, meta.uid(), meta.gid());
        if meta.is_dir() {
            out.insert(rel, format!("{head} dir"));
            walk(base, &path, out);
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned();
            // New host keys are random: compare their kind (first word or line) only.
            let text = if rel.starts_with("etc/ssh/ssh_host_") {
                text.split_whitespace().next().unwrap_or_default().to_string()
            } else {
                mask_hashes(&text)
            };
            out.insert(rel, format!("{head}\n{text}"));
        }
    }
}

pub fn mask_hashes(text: &str) -> String {
    text.lines()
        .map(|l| match l.split_once(":$6$") {
            Some((user, rest)) => format!("{user}:$6$<hash>:{}", rest.split_once(':').map_or("", |(_, r)| r)),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn ssh_public_key(dir: &Path, i: usize) -> String {
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

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn uid_of(root: &TestRoot, user: &str) -> (u32, u32) {
    let passwd = root.read("etc/passwd");
    let line = passwd.lines().find(|l| l.starts_with(&format!("{user}:"))).expect("user in passwd");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().expect("uid"), f[3].parse().expect("gid"))
}
