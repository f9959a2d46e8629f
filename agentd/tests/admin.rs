//! The administrative commands on temporary roots: deprovision (library and the real binary, with a
//! real `useradd --prefix`/`userdel --prefix` when running as root), collect-logs (the zip read
//! back and searched for secrets) and serial-console.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use wala::base::cmd::{CmdOutput, FakeRunner, SystemRunner};
use wala::base::root::HostRoot;

const BIN: &str = env!("CARGO_BIN_EXE_wala-agentd");

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn skip(message: &str) {
    eprintln!("SKIP {message}");
    if let Some(path) = std::env::var_os("WALA_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "SKIP {message}");
        }
    }
}

struct Tree {
    dir: tempfile::TempDir,
    /// Whether the user was created with the real useradd.
    real_user: bool,
}

const OVF: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ns0:Environment xmlns:ns0="http://schemas.dmtf.org/ovf/environment/1" xmlns:ns1="http://schemas.microsoft.com/windowsazure">
 <ns1:ProvisioningSection><ns1:Version>1.0</ns1:Version>
  <ns1:LinuxProvisioningConfigurationSet>
   <ns1:ConfigurationSetType>LinuxProvisioningConfiguration</ns1:ConfigurationSetType>
   <ns1:HostName>myvm</ns1:HostName>
   <ns1:UserName>azureuser</ns1:UserName>
   <ns1:UserPassword>OvfPa55-SECRET</ns1:UserPassword>
   <ns1:DisableSshPasswordAuthentication>false</ns1:DisableSshPasswordAuthentication>
   <ns1:CustomData>Q1VTVE9NLURBVEEtU0VDUkVU</ns1:CustomData>
  </ns1:LinuxProvisioningConfigurationSet>
 </ns1:ProvisioningSection>
 <ns1:PlatformSettingsSection><ns1:Version>1.0</ns1:Version>
  <ns1:PlatformSettings><ns1:ProvisionGuestAgent>true</ns1:ProvisionGuestAgent></ns1:PlatformSettings>
 </ns1:PlatformSettingsSection>
</ns0:Environment>
"#;

const PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nPRIVATE-KEY-SECRET\n-----END PRIVATE KEY-----\n";

impl Tree {
    /// A root that looks provisioned: user, sudoers, host keys, leases, agent state with secrets,
    /// logs, hostname, machine-id, a resolv.conf symlink.
    fn provisioned(with_user: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Tree { dir, real_user: false };
        t.write("etc/passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n");
        t.write("etc/group", "root:x:0:\ndaemon:x:1:\nusers:x:100:\n");
        t.write("etc/shadow", "root:$6$old$hash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n");
        t.write("etc/gshadow", "root:*::\ndaemon:*::\nusers:*::\n");
        t.write(
            "etc/login.defs",
            "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\nUSERGROUPS_ENAB yes\n",
        );
        t.write(
            "etc/waagent.conf",
            "Provisioning.RegenerateSshHostKeyPair=y\nProvisioning.DeleteRootPassword=y\nHttpProxy.Host=proxy.local\nHttpProxy.Port=3128\n",
        );
        t.write("etc/hostname", "myvm\n");
        t.write("etc/os-release", "ID=debian\nVERSION_ID=\"13\"\n");
        t.write("etc/fstab", "UUID=abc / ext4 defaults 0 1\n");
        t.write("etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tmyvm\n");
        t.write("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        t.write("var/lib/dbus/machine-id", "0123456789abcdef0123456789abcdef\n");
        t.write("run/systemd/resolve/stub-resolv.conf", "nameserver 127.0.0.53\n");
        std::fs::create_dir_all(t.path("etc")).expect("mkdir");
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", t.path("etc/resolv.conf"))
            .expect("symlink");
        t.write("etc/ssh/sshd_config", "PasswordAuthentication no\n");
        t.write("etc/ssh/ssh_host_rsa_key", PRIVATE_KEY);
        t.write("etc/ssh/ssh_host_rsa_key.pub", "ssh-rsa AAAA host\n");
        t.write("etc/ssh/ssh_host_ed25519_key", PRIVATE_KEY);
        t.write("etc/ssh/moduli", "keep\n");
        t.write("var/lib/dhcp/dhclient.eth0.leases", "lease {}\n");
        t.write("var/lib/dhclient/dhclient-eth0.lease", "lease {}\n");
        t.write("var/lib/NetworkManager/dhclient-abc-eth0.lease", "lease {}\n");
        t.write("var/lib/NetworkManager/internal-abc-eth0.lease", "ADDRESS=10.0.0.4\n");
        t.write("var/lib/NetworkManager/NetworkManager.state", "[main]\n");
        t.write("run/systemd/netif/leases/2", "OPTION_245=a83f8110\n");
        t.write("var/lib/waagent/ovf-env.xml", OVF);
        t.write("var/lib/waagent/provisioned", "7E5C3F2A\n");
        t.write("var/lib/waagent/wala-provisioning.json", "{\"vm_id\":\"7E5C3F2A\"}\n");
        t.write("var/lib/waagent/CustomData", "CUSTOM-DATA-SECRET\n");
        t.write("var/lib/waagent/TransportPrivate.pem", PRIVATE_KEY);
        t.write("var/lib/waagent/ABCDEF.prv", PRIVATE_KEY);
        t.write(
            "var/lib/waagent/ABCDEF.crt",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        );
        t.write(
            "var/lib/waagent/Certificates.xml",
            "<CertificateFile><Data>PKCS7-SECRET</Data></CertificateFile>\n",
        );
        t.write("var/lib/waagent/GoalState.1.xml", "<GoalState><Incarnation>1</Incarnation></GoalState>\n");
        t.write(
            "var/lib/waagent/ExtensionsConfig.1.xml",
            "<Extensions><PluginSettings><Plugin name=\"X\"><RuntimeSettings seqNo=\"0\">{\"runtimeSettings\":[{\"handlerSettings\":\
             {\"protectedSettingsCertThumbprint\":\"ABCDEF\",\"protectedSettings\":\"PROTECTED-XML-SECRET\",\
             \"publicSettings\":{\"commandToExecute\":\"echo hi\"}}}]}</RuntimeSettings></Plugin></PluginSettings></Extensions>\n",
        );
        t.write(
            "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.10/config/0.settings",
            "{\"runtimeSettings\":[{\"handlerSettings\":{\"protectedSettingsCertThumbprint\":\"ABCDEF\",\
             \"protectedSettings\":\"PROTECTED-SETTINGS-SECRET\",\"publicSettings\":{}}}]}",
        );
        t.write(
            "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.10/status/0.status",
            "[{\"status\":{}}]",
        );
        t.write(
            "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.10/bin/custom-script-shim",
            "\x7fELF\0\0bin",
        );
        t.write("var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.10/notes.txt", PRIVATE_KEY);
        t.write("var/lib/waagent/history/2026-11-26T01-00-00__1/GoalState.xml", "<GoalState/>\n");
        t.write("var/lib/waagent/logcollector/logs.zip", "old zip");
        t.write("var/log/azure/Microsoft.Azure.Extensions.CustomScript/handler.log", "extension log line\n");
        t.write("var/log/waagent.log", "2026-11-26T01:00:00.000000Z INFO Daemon started\n");
        t.write("var/log/waagent.log.1", "older log\n");
        t.write("var/log/syslog", "system log\n");
        t.write("root/.bash_history", "history of root\n");
        t.write("var/log/journal/.keep", "");
        std::fs::create_dir_all(t.path("home")).expect("mkdir");
        if with_user {
            let t = Tree { real_user: true, ..t };
            let out = Command::new("useradd")
                .args(["-m", "-s", "/bin/bash", "--prefix"])
                .arg(t.dir.path())
                .args(["--", "azureuser"])
                .output()
                .expect("useradd");
            assert!(out.status.success(), "useradd: {}", String::from_utf8_lossy(&out.stderr));
            t.write("home/azureuser/.bash_history", "history of azureuser\n");
            t.write(
                "etc/sudoers.d/waagent",
                "azureuser ALL=(ALL) ALL\nazureuser2 ALL=(ALL) ALL\nadmin ALL=(ALL) ALL # not azureuser\n",
            );
            return t;
        }
        t
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.path(rel)).is_ok()
    }

    fn root(&self) -> HostRoot {
        HostRoot::new(self.dir.path())
    }

    fn agentd(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(BIN)
            .arg("--root")
            .arg(self.dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(stdin.as_bytes());
        }
        child.wait_with_output().expect("wait")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a deprovisioned tree must look like, file by file.
fn check_deprovisioned(t: &Tree, user_deleted: bool) {
    for gone in [
        "etc/ssh/ssh_host_rsa_key",
        "etc/ssh/ssh_host_rsa_key.pub",
        "etc/ssh/ssh_host_ed25519_key",
        "var/lib/dhcp/dhclient.eth0.leases",
        "var/lib/dhclient/dhclient-eth0.lease",
        "var/lib/NetworkManager/dhclient-abc-eth0.lease",
        "var/lib/NetworkManager/internal-abc-eth0.lease",
        "run/systemd/netif/leases/2",
        "var/lib/waagent/ovf-env.xml",
        "var/lib/waagent/provisioned",
        "var/lib/waagent/wala-provisioning.json",
        "var/lib/waagent/CustomData",
        "var/lib/waagent/ABCDEF.prv",
        "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.10",
        "var/lib/waagent/history",
        "var/log/azure/Microsoft.Azure.Extensions.CustomScript",
        "var/log/waagent.log",
        "root/.bash_history",
        "var/lib/dbus/machine-id",
    ] {
        assert!(!t.exists(gone), "{gone} should be gone");
    }
    for kept in [
        "etc/ssh/sshd_config",
        "etc/ssh/moduli",
        "var/lib/NetworkManager/NetworkManager.state",
        "var/log/waagent.log.1",
        "var/log/syslog",
        "etc/waagent.conf",
    ] {
        assert!(t.exists(kept), "{kept} should stay");
    }
    // Directories are kept, empty.
    assert_eq!(std::fs::read_dir(t.path("var/lib/waagent")).expect("lib dir").count(), 0);
    assert_eq!(std::fs::read_dir(t.path("var/log/azure")).expect("ext log dir").count(), 0);
    assert!(t.path("var/lib/dhcp").is_dir());
    assert_eq!(t.read("etc/hostname"), "localhost.localdomain\n");
    assert!(
        t.read("etc/hosts").contains("127.0.1.1\tlocalhost.localdomain localhost\n"),
        "{}",
        t.read("etc/hosts")
    );
    assert!(t.read("etc/shadow").starts_with("root:*LOCK*:19000:"), "{}", t.read("etc/shadow"));
    assert_eq!(t.read("etc/machine-id"), "", "machine-id emptied for systemd to regenerate");
    assert!(std::fs::symlink_metadata(t.path("etc/resolv.conf"))
        .expect("resolv.conf")
        .file_type()
        .is_symlink());
    assert_eq!(t.read("etc/resolv.conf"), "nameserver 127.0.0.53\n");
    if user_deleted {
        assert!(!t.read("etc/passwd").contains("azureuser:"), "{}", t.read("etc/passwd"));
        assert!(!t.read("etc/shadow").contains("azureuser:"));
        assert!(!t.exists("home/azureuser"), "home directory deleted");
        assert_eq!(
            t.read("etc/sudoers.d/waagent"),
            "azureuser2 ALL=(ALL) ALL\nadmin ALL=(ALL) ALL # not azureuser\n",
            "only lines whose first field is the user go"
        );
    }
}

#[test]
fn deprovision_library_on_a_temp_root() {
    let with_user = is_root();
    if !with_user {
        skip("deprovision_library_on_a_temp_root: user deletion needs root (useradd/userdel --prefix); checking the rest");
    }
    let t = Tree::provisioned(with_user);
    let root = t.root();
    let loaded = wala::documents::conf::load_or_defaults(&root, None);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let plan = wala::host::deprovision::plan(
        &root,
        &loaded.config,
        wala::host::deprovision::Options { user: with_user },
    );
    if with_user {
        assert_eq!(plan.user, wala::host::deprovision::UserTarget::Delete { name: "azureuser".into() });
        assert!(plan
            .warnings
            .contains(&"WARNING! azureuser account and entire home directory will be deleted.".into()));
    }
    assert!(plan.warnings.contains(&"WARNING! All SSH host key pairs will be deleted.".into()));
    let report = wala::host::deprovision::apply(&root, &SystemRunner, &plan);
    assert!(report.ok(), "{:?}", report.failures);
    check_deprovisioned(&t, with_user);
    assert!(t.real_user == with_user);
    // A second run finds nothing left to do and does not fail.
    let again = wala::host::deprovision::apply(&root, &SystemRunner, &plan);
    assert!(again.ok(), "{:?}", again.failures);
}

#[test]
fn deprovision_binary_with_user_and_force() {
    if !is_root() {
        skip("deprovision_binary_with_user_and_force: needs root (useradd/userdel --prefix)");
        return;
    }
    let t = Tree::provisioned(true);
    let out = t.agentd(&["deprovision", "--user", "--force"], "");
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("WARNING! azureuser account and entire home directory will be deleted."),
        "{stdout}"
    );
    assert!(!stdout.contains("Do you want to proceed"), "--force does not ask");
    assert!(!stdout.contains("service will be stopped"), "no service is stopped under --root");
    check_deprovisioned(&t, true);
}

#[test]
fn deprovision_binary_asks_and_a_no_changes_nothing() {
    let t = Tree::provisioned(false);
    let before = t.read("etc/hostname");
    for answer in ["n\n", "", "maybe\n"] {
        let out = t.agentd(&["deprovision"], answer);
        assert_eq!(out.status.code(), Some(1), "{answer:?}");
        let stdout = text(&out.stdout);
        assert!(stdout.contains("Do you want to proceed (y/n)"), "{stdout}");
        assert!(stdout.contains("Deprovision is cancelled; nothing was changed."), "{stdout}");
    }
    assert_eq!(t.read("etc/hostname"), before);
    assert!(t.exists("var/lib/waagent/ovf-env.xml") && t.exists("etc/ssh/ssh_host_rsa_key"));
    // "y" proceeds (without --user: the account database is not touched).
    let passwd = t.read("etc/passwd");
    let out = t.agentd(&["deprovision"], "y\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    check_deprovisioned(&t, false);
    assert_eq!(t.read("etc/passwd"), passwd);
}

fn zip_of(t: &Tree) -> Vec<wala::base::ziparchive::ZipEntry> {
    let bytes = std::fs::read(t.path("var/lib/waagent/logcollector/logs.zip")).expect("zip");
    wala::base::ziparchive::read_all(&bytes).expect("readable zip")
}

const SECRETS: [&str; 7] = [
    "OvfPa55-SECRET",
    "Q1VTVE9NLURBVEEtU0VDUkVU",
    "CUSTOM-DATA-SECRET",
    "PRIVATE-KEY-SECRET",
    "PKCS7-SECRET",
    "PROTECTED-XML-SECRET",
    "PROTECTED-SETTINGS-SECRET",
];

#[test]
fn collect_logs_library_leaves_every_secret_out() {
    let t = Tree::provisioned(false);
    let root = t.root();
    let loaded = wala::documents::conf::load_or_defaults(&root, None);
    let fake = FakeRunner::new();
    fake.respond(
        "journalctl",
        CmdOutput {
            code: Some(0),
            stdout: b"Nov 26 wala-agentd[1]: started\n".to_vec(),
            ..Default::default()
        },
    );
    let c = wala::commands::collect_logs::collect(
        &root,
        &fake,
        &loaded.config,
        loaded.source.as_deref(),
        wala::commands::collect_logs::Limits::normal(),
    )
    .expect("collect");
    assert_eq!(c.zip, Path::new("/var/lib/waagent/logcollector/logs.zip"));
    // Only journalctl ran, against the image's journal: the other commands describe the running system.
    let journal_dir = t.path("var/log/journal");
    assert_eq!(
        fake.command_lines(),
        [format!("journalctl -D {} -u wala* --no-pager -n 5000", journal_dir.display())]
    );

    let entries = zip_of(&t);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    for e in &entries {
        let body = text(&e.data);
        for s in SECRETS {
            assert!(!body.contains(s), "{} holds {s}", e.name);
        }
    }
    for expected in [
        "etc/os-release",
        "config/waagent.conf",
        "etc/fstab",
        "var/lib/waagent/ovf-env.xml",
        "var/lib/waagent/GoalState.1.xml",
        "var/lib/waagent/ExtensionsConfig.1.xml",
        "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.10/config/0.settings",
        "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.10/status/0.status",
        "var/lib/waagent/history/2026-11-26T01-00-00__1/GoalState.xml",
        "commands/journal-wala.txt",
        "var/log/waagent.log",
        "var/log/waagent.log.1",
        "var/log/azure/Microsoft.Azure.Extensions.CustomScript/handler.log",
        "results.txt",
        "manifest.txt",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    for absent in [
        "var/lib/waagent/CustomData",
        "var/lib/waagent/ABCDEF.prv",
        "var/lib/waagent/ABCDEF.crt",
        "var/lib/waagent/TransportPrivate.pem",
        "var/lib/waagent/Certificates.xml",
        "var/lib/waagent/logcollector/logs.zip",
        "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.10/bin/custom-script-shim",
        "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.10/notes.txt",
        "var/log/syslog",
    ] {
        assert!(!names.contains(&absent), "{absent} must not be collected");
    }
    let get = |n: &str| text(&entries.iter().find(|e| e.name == n).expect(n).data);
    let ovf = get("var/lib/waagent/ovf-env.xml");
    assert!(
        ovf.contains("<ns1:UserName>azureuser</ns1:UserName>")
            && ovf.contains("<ns1:CustomData>redacted</ns1:CustomData>"),
        "{ovf}"
    );
    assert!(get("var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.10/config/0.settings")
        .contains("\"protectedSettingsCertThumbprint\":\"ABCDEF\",\"protectedSettings\":\"<redacted>\""));
    assert!(get("var/lib/waagent/ExtensionsConfig.1.xml").contains("\"protectedSettings\":\"<redacted>\""));
    assert!(get("commands/journal-wala.txt").contains("wala-agentd[1]: started"));
    assert!(get("config/waagent.conf").contains("HttpProxy.Host=proxy.local"));

    // The manifest lists every other entry with its size.
    let manifest = get("manifest.txt");
    for e in entries.iter().filter(|e| e.name != "manifest.txt") {
        assert!(
            manifest.contains(&format!("{}\t{}\n", e.data.len(), e.name)),
            "{} not in manifest:\n{manifest}",
            e.name
        );
    }
    assert_eq!(manifest.lines().count(), entries.len() - 1);
    let results = get("results.txt");
    assert!(results.contains("var/lib/waagent/ABCDEF.prv: may hold secrets"), "{results}");
    assert!(results.contains("notes.txt: holds a private key"), "{results}");
    assert!(results.contains("binary file(s)"), "{results}");
    assert_eq!(t.read("var/lib/waagent/logcollector/results.txt"), results);
    let mode = std::fs::metadata(t.path("var/lib/waagent/logcollector/logs.zip"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // An independent reader agrees, where one is installed.
    if wala::base::cmd::find_program("unzip").is_some() {
        let out = Command::new("unzip")
            .arg("-t")
            .arg(t.path("var/lib/waagent/logcollector/logs.zip"))
            .output()
            .expect("unzip");
        assert!(out.status.success(), "{}", text(&out.stdout));
    } else {
        skip("collect_logs_library_leaves_every_secret_out: unzip not installed; zip checked with wala's reader only");
    }
}

#[test]
fn collect_logs_stops_adding_at_the_size_limit() {
    let t = Tree::provisioned(false);
    t.write("var/log/waagent.log", &"x".repeat(3000));
    let root = t.root();
    let loaded = wala::documents::conf::load_or_defaults(&root, None);
    let limits = wala::commands::collect_logs::Limits {
        total: 2048,
        per_file: 1024,
        ..wala::commands::collect_logs::Limits::normal()
    };
    let c = wala::commands::collect_logs::collect(&root, &FakeRunner::new(), &loaded.config, None, limits)
        .expect("collect");
    let content: u64 =
        c.entries.iter().filter(|(n, _)| n != "results.txt" && n != "manifest.txt").map(|(_, s)| s).sum();
    assert!(content <= 2048, "{content}");
    assert!(!c.skipped.is_empty());
    let entries = zip_of(&t);
    // The log was cut to its last 1024 bytes or left out.
    if let Some(log) = entries.iter().find(|e| e.name == "var/log/waagent.log") {
        assert_eq!(log.data.len(), 1024);
    }
    let results = text(&entries.iter().find(|e| e.name == "results.txt").expect("results").data);
    assert!(results.contains("size limit"), "{results}");
}

#[test]
fn collect_logs_binary_writes_the_zip() {
    let t = Tree::provisioned(false);
    let out = t.agentd(&["collect-logs", "--full"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("/var/lib/waagent/logcollector/logs.zip"), "{}", text(&out.stdout));
    let entries = zip_of(&t);
    assert!(entries.iter().any(|e| e.name == "var/log/syslog"), "--full adds the system logs");
    for e in &entries {
        for s in SECRETS {
            assert!(!text(&e.data).contains(s), "{} holds {s}", e.name);
        }
    }
}

#[test]
fn serial_console_binary_edits_grub_under_a_root() {
    let t = Tree::provisioned(false);
    t.write("etc/default/grub", "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"rootdelay=300\"\n");
    let out = t.agentd(&["serial-console"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("grub.cfg was not regenerated"), "{}", text(&out.stdout));
    let grub = t.read("etc/default/grub");
    assert!(
        grub.contains(
            "GRUB_CMDLINE_LINUX=\"rootdelay=300 console=ttyS0,115200n8 earlyprintk=ttyS0,115200\"\n"
        ),
        "{grub}"
    );
    assert!(grub.contains("GRUB_TERMINAL=\"serial console\"\n"));
    assert!(grub
        .contains("GRUB_SERIAL_COMMAND=\"serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1\"\n"));
    let out = t.agentd(&["serial-console"], "");
    assert!(text(&out.stdout).contains("already configured"), "{}", text(&out.stdout));
    assert_eq!(t.read("etc/default/grub"), grub);

    let bare = Tree::provisioned(false);
    let out = bare.agentd(&["serial-console"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does not exist"), "{}", text(&out.stderr));
}
