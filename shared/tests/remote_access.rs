//! JIT remote access end to end: the fabric serves a RemoteAccess document over loopback, the
//! daemon's remote-access task fetches it, decrypts the passwords with the transport key and
//! creates, expires and removes accounts with the real `useradd`/`userdel --prefix` on a temporary
//! root (as root; skipped with a SKIP line otherwise). The clock is the task's own, moved forward to
//! pass expirations without waiting.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wala::base::cmd::SystemRunner;
use wala::base::root::HostRoot;
use wala::crypto::TransportKeys;
use wala::daemon::remote_access_task::RemoteAccessTask;
use wala::daemon::{Env, State, Task, TaskError};
use wala::documents::conf::Config;
use wala::error::Cause;
use wala::host::jit_accounts::{expire_day, parse_expiration};

use wala::platform::endpoint::{Endpoint, Endpoints};
use wala::platform::http::RetryPolicy;
use wala::platform::wireserver::WireClient;
use wala_fabric::{Fabric, Fault, FaultAction, JitUser, Listener};

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

const OVF: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure">
 <wa:ProvisioningSection><wa:Version>1.0</wa:Version>
  <wa:LinuxProvisioningConfigurationSet>
   <wa:ConfigurationSetType>LinuxProvisioningConfiguration</wa:ConfigurationSetType>
   <wa:HostName>vm</wa:HostName><wa:UserName>azureuser</wa:UserName>
  </wa:LinuxProvisioningConfigurationSet>
 </wa:ProvisioningSection>
 <wa:PlatformSettingsSection><wa:Version>1.0</wa:Version>
  <wa:PlatformSettings><wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent></wa:PlatformSettings>
 </wa:PlatformSettingsSection>
</Environment>
"#;

const ADMIN_HASH: &str = "$6$adminsalt$AdminHashThatMustNotChange";

/// A provisioned root: the admin user (named in the saved ovf-env.xml, with a sudoers line), an
/// account that put `JIT_Account` in its own GECOS (no expiry date), and a system account with the
/// marker and an expiry. None of them may ever be touched.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = Host { dir };
        h.write("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
        h.write("etc/group", "root:x:0:\nusers:x:100:\n");
        h.write("etc/shadow", "root:*:19000:0:99999:7:::\n");
        h.write("etc/gshadow", "root:*::\nusers:*::\n");
        h.write(
            "etc/login.defs",
            "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\nSYS_UID_MIN 100\nSYS_UID_MAX 999\n\
             SYS_GID_MIN 100\nSYS_GID_MAX 999\nUSERGROUPS_ENAB yes\n",
        );
        h.write("var/lib/waagent/ovf-env.xml", OVF);
        std::fs::create_dir_all(h.path("home")).expect("mkdir");
        h.useradd(&["-m", "-s", "/bin/bash"], "azureuser");
        h.useradd(&["-m", "-s", "/bin/bash", "-c", "JIT_Account"], "impostor");
        h.useradd(&["-r", "-s", "/bin/bash", "-c", "JIT_Account", "-e", "2099-01-01"], "svcjit");
        let shadow = h.read("etc/shadow").replace("azureuser:!:", &format!("azureuser:{ADMIN_HASH}:"));
        h.write("etc/shadow", &shadow);
        h.write("etc/sudoers.d/waagent", "azureuser ALL=(ALL) NOPASSWD: ALL\n");
        h
    }

    fn useradd(&self, args: &[&str], name: &str) {
        let out = Command::new("useradd")
            .args(args)
            .arg("--prefix")
            .arg(self.dir.path())
            .args(["--", name])
            .output()
            .expect("useradd");
        assert!(out.status.success(), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    fn line(&self, rel: &str, name: &str) -> Option<String> {
        self.read(rel).lines().find(|l| l.split(':').next() == Some(name)).map(str::to_string)
    }

    fn users(&self) -> Vec<String> {
        self.read("etc/passwd").lines().filter_map(|l| l.split(':').next()).map(str::to_string).collect()
    }

    fn sudoers(&self) -> String {
        self.read("etc/sudoers.d/waagent")
    }

    /// What must never change, whatever the document says.
    fn untouchable(&self) -> Vec<Option<String>> {
        ["azureuser", "impostor", "svcjit"]
            .iter()
            .flat_map(|n| [self.line("etc/passwd", n), self.line("etc/shadow", n)])
            .collect()
    }
}

/// The task and what drives it: the agent state (whose goal state the goal-state task fills) and a
/// clock offset.
struct Rig {
    fabric: Fabric,
    client: WireClient,
    state: State,
    offset: Arc<AtomicI64>,
    task: RemoteAccessTask,
    root: HostRoot,
    config: Config,
}

impl Rig {
    fn new(host: &Host) -> Self {
        // Certificate work in this process: this test program has no wala-crypto beside it.
        wala::crypto::helper::answer_in_this_process();
        let fabric = Fabric::start_builtin().expect("fabric");
        let ep = |a: std::net::SocketAddr| Endpoint::new(a.ip().to_string(), a.port());
        let endpoints =
            Endpoints::explicit(ep(fabric.wire_addr()), ep(fabric.hgap_addr()), ep(fabric.imds_addr()));
        let client = WireClient::new(endpoints, host.path("var/lib/waagent"))
            .with_retry_policy(RetryPolicy::wire().scaled_down(20));
        let offset = Arc::new(AtomicI64::new(0));
        let clock = {
            let offset = offset.clone();
            move || {
                let o = offset.load(Ordering::SeqCst);
                SystemTime::now() + Duration::from_secs(u64::try_from(o).expect("forward only"))
            }
        };
        let task = RemoteAccessTask::new(client.clone(), Duration::from_secs(1)).with_clock(clock);
        Rig {
            fabric,
            client,
            state: State::default(),
            offset,
            task,
            root: HostRoot::new(host.dir.path()),
            config: Config::default(),
        }
    }

    /// What the goal-state task does on each poll.
    fn take_goal_state(&self) {
        let gs = self.client.goal_state().expect("goal state").goal_state;
        self.state.set_goal_state(gs);
    }

    fn run(&mut self) -> Result<(), TaskError> {
        let env = Env {
            host: wala::host::Host { root: &self.root, config: &self.config, runner: &SystemRunner },
            state: &self.state,
        };
        self.task.run(&env)
    }

    fn fetches(&self) -> usize {
        self.fabric
            .requests_on(Listener::Wireserver)
            .iter()
            .filter(|r| r.target.contains("comp=remoteaccess"))
            .count()
    }

    fn expiration(&self, name: &str) -> i64 {
        let users = self.fabric.remote_access().expect("users");
        let u = users.iter().find(|u| u.name == name).expect("listed");
        parse_expiration(u.expiration.as_deref().expect("expiration")).expect("parses")
    }
}

fn shadow_fields(host: &Host, name: &str) -> Vec<String> {
    host.line("etc/shadow", name).expect("shadow entry").split(':').map(str::to_string).collect()
}

fn has(host: &Host, name: &str) -> bool {
    host.users().iter().any(|u| u == name)
}

#[test]
fn accounts_are_created_expired_and_removed_and_nothing_else_is_touched() {
    if !is_root() {
        common::skip("remote_access: needs root for useradd/userdel --prefix");
        return;
    }
    let host = Host::new();
    let untouchable = host.untouchable();
    let mut rig = Rig::new(&host);
    rig.fabric.set_remote_access(Some(vec![
        JitUser::expiring_in("jit1", "Jit1-Pa55w.rd", 7200),
        JitUser::expiring_in("jit2", "Jit2-Pä55w.rd", 3600),
        JitUser::expiring_in("old", "Old-Pa55w.rd", -60),
        JitUser::expiring_in("azureuser", "Hijack-Pa55w.rd", 7200),
        JitUser::expiring_in("impostor", "Hijack-Pa55w.rd", 7200),
    ]));

    // Before the goal-state task has taken in a goal state there is nothing to do.
    rig.run().expect("no goal state yet");
    assert_eq!(rig.fetches(), 0);

    rig.take_goal_state();
    rig.run().expect("first goal state");
    assert_eq!(rig.fetches(), 1);
    let request =
        rig.fabric.requests().into_iter().find(|r| r.target.contains("comp=remoteaccess")).expect("request");
    assert_eq!(request.header("x-ms-cipher-name"), Some("AES128_CBC"));
    assert!(request.header("x-ms-guest-agent-public-x509-cert").is_some_and(|c| !c.is_empty()));

    for (name, password) in [("jit1", "Jit1-Pa55w.rd"), ("jit2", "Jit2-Pä55w.rd")] {
        let passwd = host.line("etc/passwd", name).unwrap_or_else(|| panic!("{name} created"));
        let f: Vec<&str> = passwd.split(':').collect();
        assert_eq!(f[4], "JIT_Account", "{passwd}");
        assert_eq!(f[6], "/bin/bash");
        assert!(host.path(&format!("home/{name}")).is_dir(), "home of {name}");
        let shadow = shadow_fields(&host, name);
        assert!(shadow[1].starts_with("$6$"), "SHA-512 hash: {}", shadow[1]);
        assert!(pwhash::unix::verify(password, &shadow[1]), "{name}'s password is the decrypted one");
        assert_eq!(
            shadow[7],
            expire_day(rig.expiration(name)).to_string(),
            "expiry: the day after the expiration"
        );
    }
    assert!(!has(&host, "old"), "an expired user is not created");
    assert_eq!(host.untouchable(), untouchable, "a listed name that exists is not taken over");
    assert_eq!(host.sudoers(), "azureuser ALL=(ALL) NOPASSWD: ALL\njit1 ALL=(ALL) ALL\njit2 ALL=(ALL) ALL\n");

    // Nothing changed: nothing is fetched or planned again.
    let plans = rig.task.plans;
    rig.run().expect("idle");
    assert_eq!((rig.fetches(), rig.task.plans), (1, plans));

    // jit2's expiration passes: it is deleted at once, from the document already read.
    rig.offset.store(3601, Ordering::SeqCst);
    rig.run().expect("expiry");
    assert_eq!(rig.fetches(), 1, "no new fetch for an expiry");
    assert!(!has(&host, "jit2") && has(&host, "jit1"));
    assert!(host.line("etc/shadow", "jit2").is_none() && host.line("etc/group", "jit2").is_none());
    assert!(!host.path("home/jit2").exists(), "its home goes with it");
    assert_eq!(host.sudoers(), "azureuser ALL=(ALL) NOPASSWD: ALL\njit1 ALL=(ALL) ALL\n");

    // A new goal state: jit1 leaves the document, jit3 arrives, jit1's old entry would still be valid.
    rig.offset.store(0, Ordering::SeqCst);
    rig.fabric.set_remote_access(Some(vec![JitUser::expiring_in("jit3", "Jit3-Pa55w.rd", 600)]));
    rig.fabric.bump_incarnation();
    rig.take_goal_state();
    rig.run().expect("second document");
    assert_eq!(rig.fetches(), 2);
    assert!(!has(&host, "jit1") && has(&host, "jit3"));
    assert!(pwhash::unix::verify("Jit3-Pa55w.rd", &shadow_fields(&host, "jit3")[1]));
    assert_eq!(host.sudoers(), "azureuser ALL=(ALL) NOPASSWD: ALL\njit3 ALL=(ALL) ALL\n");

    // The expiration moves: the account's expiry date follows.
    rig.fabric.set_remote_access(Some(vec![JitUser::expiring_in("jit3", "ignored", 10 * 86_400)]));
    rig.fabric.bump_incarnation();
    rig.take_goal_state();
    rig.run().expect("extended");
    assert_eq!(shadow_fields(&host, "jit3")[7], expire_day(rig.expiration("jit3")).to_string());
    assert!(pwhash::unix::verify("Jit3-Pa55w.rd", &shadow_fields(&host, "jit3")[1]), "the password stays");

    // The goal state names no document any more: every remote-access account goes, nothing else.
    rig.fabric.set_remote_access(None);
    rig.fabric.bump_incarnation();
    rig.take_goal_state();
    rig.run().expect("no document");
    assert_eq!(rig.fetches(), 3, "nothing fetched without a RemoteAccessInfo");
    assert!(!has(&host, "jit3"));
    assert_eq!(host.untouchable(), untouchable);
    assert_eq!(host.sudoers(), "azureuser ALL=(ALL) NOPASSWD: ALL\n");
    for name in ["azureuser", "impostor"] {
        assert!(host.path(&format!("home/{name}")).is_dir(), "{name}'s home is still there");
    }
}

#[test]
fn a_failed_fetch_changes_nothing_and_is_tried_again() {
    if !is_root() {
        common::skip("remote_access: needs root for useradd/userdel --prefix");
        return;
    }
    let host = Host::new();
    let mut rig = Rig::new(&host);
    rig.fabric.set_remote_access(Some(vec![JitUser::expiring_in("jit1", "Jit1-Pa55w.rd", 3600)]));
    rig.take_goal_state();
    rig.run().expect("created");
    assert!(has(&host, "jit1"));
    let before = (host.read("etc/passwd"), host.read("etc/shadow"), host.sudoers());

    // The next goal state drops jit1, but its document cannot be read: error answers, a reset, a
    // truncated body, one that is not XML. Each run fails and changes nothing; jit1 stays.
    rig.fabric.set_remote_access(Some(vec![JitUser::expiring_in("jit2", "Jit2-Pa55w.rd", 3600)]));
    rig.fabric.bump_incarnation();
    rig.take_goal_state();
    let path = "/machine/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0?comp=remoteaccess";
    let faults = [
        FaultAction::Status { status: 500, body: Some("Internal error".into()) },
        FaultAction::Status { status: 404, body: None },
        FaultAction::Reset,
        FaultAction::Truncate { keep: Some(100) },
        FaultAction::Status { status: 200, body: Some("not xml at all".into()) },
    ];
    for action in faults {
        rig.fabric.clear_faults();
        rig.fabric.add_fault(Fault::new(Listener::Wireserver, path, action.clone()));
        let fetches = rig.fetches();
        let err = rig.run().expect_err("the fetch fails");
        // The WireServer client's own error, whole: the request's URL, or the document's name.
        assert!(matches!(*err.0, Cause::WireServer(_)), "{action:?}: {err:?}");
        let reason = err.reason();
        assert!(
            reason.contains("comp=remoteaccess") || reason.starts_with("RemoteAccess: "),
            "{action:?}: {reason}"
        );
        assert!(rig.fetches() > fetches, "{action:?}: tried again");
        assert_eq!((host.read("etc/passwd"), host.read("etc/shadow"), host.sudoers()), before, "{action:?}");
    }
    // Answers again: the same goal state is applied without a new incarnation.
    rig.fabric.clear_faults();
    rig.run().expect("fetched");
    assert!(!has(&host, "jit1") && has(&host, "jit2"));
}

#[test]
fn a_password_that_does_not_decrypt_creates_no_account_and_is_tried_again_later() {
    if !is_root() {
        common::skip("remote_access: needs root for useradd/userdel --prefix");
        return;
    }
    let host = Host::new();
    let mut rig = Rig::new(&host);
    rig.fabric.set_remote_access(Some(vec![
        JitUser::expiring_in("jit1", "Jit1-Pa55w.rd", 3600),
        JitUser::expiring_in("jit2", "Jit2-Pa55w.rd", 3600),
    ]));
    rig.take_goal_state();
    // A document whose first password is encrypted to another VM's key: that user is not created,
    // the other one is.
    let url = format!(
        "http://{}/machine/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0?comp=remoteaccess",
        rig.fabric.wire_addr()
    );
    let other = tempfile::tempdir().expect("tempdir");
    let fetch = |lib: &Path| {
        let keys = TransportKeys::load_or_create(lib).expect("keys");
        rig.client.remote_access(&url, &keys).expect("document")
    };
    let foreign = fetch(other.path());
    let mine = fetch(&host.path("var/lib/waagent"));
    let mut xml = String::from("<RemoteAccess><Version>1</Version><Incarnation>1</Incarnation><Users>");
    for (u, doc) in [(&foreign.users[0], &foreign), (&mine.users[1], &mine)] {
        assert_eq!(doc.users.len(), 2);
        xml.push_str(&format!(
            "<User><Name>{}</Name><Password>{}</Password><Expiration>{}</Expiration></User>",
            u.name,
            u.encrypted_password.expose(),
            u.expiration.as_deref().expect("expiration")
        ));
    }
    xml.push_str("</Users></RemoteAccess>");
    rig.fabric.add_fault(Fault::new(
        Listener::Wireserver,
        "/machine/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0?comp=remoteaccess",
        FaultAction::Status { status: 200, body: Some(xml) },
    ));
    let err = rig.run().expect_err("one user failed");
    assert_eq!(err.reason(), "1 of 2 remote access account changes failed; trying again in 300 s");
    assert!(!has(&host, "jit1") && has(&host, "jit2"));
    assert!(!host.path("home/jit1").exists());
    assert_eq!(host.sudoers(), "azureuser ALL=(ALL) NOPASSWD: ALL\njit2 ALL=(ALL) ALL\n");
    let events: Vec<String> = std::fs::read_dir(host.path("var/lib/waagent/events"))
        .expect("event queued")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect();
    assert_eq!(events.len(), 1);
    assert!(events[0].contains("RemoteAccessHandling") && !events[0].contains("jit1"), "{}", events[0]);
    // Not tried again before the retry time; then from the same document: the same failure only.
    let plans = rig.task.plans;
    rig.run().expect("not due yet");
    assert_eq!(rig.task.plans, plans);
    rig.offset.store(301, Ordering::SeqCst);
    rig.run().expect_err("still failing");
    assert_eq!(rig.task.plans, plans + 1);
    assert!(!has(&host, "jit1") && has(&host, "jit2"));
}
