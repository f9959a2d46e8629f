//! Pre-provisioned pool VMs end to end: the real `wala-provision` stages (and, for the NIC
//! changes, the library's pps stage inside a network namespace of the test's own, with veth links)
//! on a temporary root with real useradd, over loopback HTTP to the fabric simulator, which serves
//! the pool's goal state, then the user's OVF at IMDS `reprovisiondata` and the user's goal state.
//! Root only.

mod support;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;
use wala_fabric::{Fabric, FabricConfig, Fault, FaultAction, Listener, Scenario};

const POOL_STATE: &str = "var/lib/waagent/wala-pps.json";
const FLAG: &str = "run/wala/pps-pending";
const STATE: &str = "var/lib/waagent/wala-provisioning.json";

fn fabric() -> Fabric {
    let mut scenario = Scenario::builtin().expect("scenario");
    scenario.reprovision_hold_ms = 200;
    Fabric::start(FabricConfig::new(scenario)).expect("fabric")
}

fn platform_config(r: &TestRoot, fabric: &Fabric) -> std::path::PathBuf {
    r.config(&format!(
        "Wala.WireServer={}\nWala.HostGAPlugin={}\nWala.Imds={}\n",
        fabric.wire_addr(),
        fabric.hgap_addr(),
        fabric.imds_addr()
    ))
}

/// The pool's placeholder OVF (user `pooluser`, hostname `pool-placeholder`) with these
/// `PreprovisionedVm` and `PreprovisionedVMType` elements, and the user's OVF (`azureuser`,
/// `wala-test-vm`, the root's keys), as texts.
fn ovfs(r: &TestRoot, pool_settings: &str) -> (String, String) {
    let user = std::fs::read_to_string(r.ovf(None, None)).expect("user ovf");
    let pool = std::fs::read_to_string(r.ovf_for(
        "pooluser",
        "/home/pooluser/.ssh/authorized_keys",
        None,
        None,
        &[],
        &[],
    ))
    .expect("pool ovf")
    .replace("wala-test-vm", "pool-placeholder")
    .replace(
        "<ns1:ProvisionGuestAgent>true</ns1:ProvisionGuestAgent>",
        &format!("<ns1:ProvisionGuestAgent>true</ns1:ProvisionGuestAgent>{pool_settings}"),
    );
    (pool, user)
}

const RUNNING: &str =
    "<ns1:PreprovisionedVm>true</ns1:PreprovisionedVm><ns1:PreprovisionedVMType>Running</ns1:PreprovisionedVMType>";
const SAVABLE: &str =
    "<ns1:PreprovisionedVm>true</ns1:PreprovisionedVm><ns1:PreprovisionedVMType>Savable</ns1:PreprovisionedVMType>";

fn command(r: &TestRoot, stage: &str, ovf: &str, conf: &std::path::Path) -> Command {
    let file = r.path("dvd-ovf-env.xml");
    std::fs::write(&file, ovf).expect("write ovf");
    let mut cmd = Command::new(BIN);
    cmd.arg("--root").arg(r.dir.path()).args(["--stage", stage, "--config"]).arg(conf).arg("--ovf").arg(file);
    cmd.env_remove("WALA_TEST_CRASH_AFTER");
    cmd
}

fn stage(r: &TestRoot, stage: &str, ovf: &str, conf: &std::path::Path) -> Output {
    command(r, stage, ovf, conf).output().expect("run")
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("wait")
}

/// Reports as `State/SubStatus@incarnation`.
fn reports(fabric: &Fabric) -> Vec<String> {
    fabric
        .health_reports()
        .iter()
        .map(|h| {
            format!(
                "{}/{}@{}",
                h.state,
                h.substatus.clone().unwrap_or_default(),
                h.incarnation.clone().unwrap_or_default()
            )
        })
        .collect()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(120), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn has_user(r: &TestRoot, name: &str) -> bool {
    r.read("etc/passwd").lines().any(|l| l.starts_with(&format!("{name}:")))
}

fn reprovision_requests(fabric: &Fabric) -> usize {
    fabric.requests_on(Listener::Imds).iter().filter(|q| q.path() == "/metadata/reprovisiondata").count()
}

#[test]
fn a_running_pool_vm_reports_ready_for_the_pool_then_provisions_its_user_and_nothing_of_the_placeholder() {
    if !need_root("a_running_pool_vm_reports_ready_for_the_pool_then_provisions_its_user") {
        return;
    }
    let fabric = fabric();
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric);
    let (pool, user) = ovfs(&r, RUNNING);
    let hostname_before = std::fs::read_to_string(r.path("etc/hostname")).ok();

    // The local stage: nothing of the placeholder is applied; the pps stage is flagged.
    let out = stage(&r, "local", &pool, &conf);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pre-provisioned pool VM (PreprovisionedVMType Running)"),
        "{}",
        stderr(&out)
    );
    assert!(!has_user(&r, "pooluser"), "the placeholder user was created");
    assert_eq!(std::fs::read_to_string(r.path("etc/hostname")).ok(), hostname_before);
    assert!(!r.path("var/lib/waagent/ovf-env.xml").exists(), "the placeholder OVF was saved");
    assert!(r.path(FLAG).exists());
    assert!(r.read(POOL_STATE).contains("\"kind\": \"running\""), "{}", r.read(POOL_STATE));
    assert!(fabric.requests().is_empty(), "the local stage talked to the platform");

    // A reboot in the pool: no DVD needed (the one given here is not even an OVF), still waiting.
    std::fs::remove_file(r.path(FLAG)).expect("rm flag");
    let out = stage(&r, "local", "not an OVF", &conf);
    assert!(out.status.success() && r.path(FLAG).exists(), "{}", stderr(&out));

    // The pps stage, through faults on the new endpoint.
    for action in [
        FaultAction::Reset,
        FaultAction::Status { status: 503, body: None },
        FaultAction::Truncate { keep: None },
    ] {
        fabric.add_fault(Fault::new(Listener::Imds, "/metadata/reprovisiondata", action).times(1));
    }
    let child = spawn(command(&r, "pps", &pool, &conf));
    wait_until("the pool's Ready", || !fabric.health_reports().is_empty());
    wait_until("a few polls", || reprovision_requests(&fabric) >= 5);
    assert!(!has_user(&r, "azureuser") && !has_user(&r, "pooluser"));
    assert_eq!(reports(&fabric), ["Ready/@1"]);
    assert!(r.read(POOL_STATE).contains("\"reported_ready\": true"));
    // The user takes the VM over.
    assert_eq!(fabric.set_reprovision_data(Some(user.as_bytes())), 2);
    let out = finish(child);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(has_user(&r, "azureuser") && !has_user(&r, "pooluser"));
    assert_eq!(r.read("etc/hostname").trim(), "wala-test-vm");
    let keys = r.read("home/azureuser/.ssh/authorized_keys");
    assert!(r.keys.iter().all(|k| keys.contains(k.as_str())), "{keys}");
    assert!(r.read("var/lib/waagent/ovf-env.xml").contains("<ns1:UserName>azureuser</ns1:UserName>"));
    assert!(!r.path(POOL_STATE).exists() && !r.path(FLAG).exists(), "the pool state is cleared");
    assert!(r.read(STATE).contains("\"result\": \"done\""), "{}", r.read(STATE));
    // The pool's Ready came before any poll; every poll was well formed.
    let sent = fabric.requests();
    let ready_at = sent.iter().position(|q| q.target == "/machine?comp=health").expect("health");
    let first_poll = sent.iter().position(|q| q.path() == "/metadata/reprovisiondata").expect("poll");
    assert!(ready_at < first_poll, "polled IMDS before the pool's Ready");
    assert!(sent
        .iter()
        .filter(|q| q.listener == Listener::Imds)
        .all(|q| q.header("Metadata") == Some("true")));

    // The network stage: the user's goal state gets NotReady/Provisioning, then Ready.
    let out = stage(&r, "network", &pool, &conf);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(reports(&fabric), ["Ready/@1", "NotReady/Provisioning@2", "Ready/@2"]);
    assert_eq!(r.read("var/lib/waagent/provisioned"), VM_ID);

    // The next boot: nothing at all.
    fabric.clear_requests();
    for s in ["local", "pps", "network"] {
        let out = stage(&r, s, &pool, &conf);
        assert!(out.status.success(), "{s}: {}", stderr(&out));
    }
    assert!(fabric.requests().is_empty(), "a later boot talked to the platform");
    assert!(!has_user(&r, "pooluser"));
}

#[test]
fn a_reboot_after_the_pools_ready_goes_straight_to_polling() {
    if !need_root("a_reboot_after_the_pools_ready_goes_straight_to_polling") {
        return;
    }
    let fabric = fabric();
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric);
    let (pool, user) = ovfs(&r, RUNNING);
    assert!(stage(&r, "local", &pool, &conf).status.success());
    // The stage dies right after Ready was recorded.
    let out = command(&r, "pps", &pool, &conf)
        .env("WALA_TEST_CRASH_AFTER", "pps-report-ready")
        .output()
        .expect("run");
    assert!(!out.status.success(), "the crash hook did not fire");
    assert_eq!(reprovision_requests(&fabric), 0);
    assert_eq!(reports(&fabric), ["Ready/@1"]);
    // Reboot: the local stage hands over again, the pps stage polls at once (no second Ready).
    assert!(stage(&r, "local", "", &conf).status.success());
    fabric.set_reprovision_data(Some(user.as_bytes()));
    let out = stage(&r, "pps", &pool, &conf);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("reported Ready before a reboot"), "{}", stderr(&out));
    assert!(stage(&r, "network", &pool, &conf).status.success());
    assert_eq!(reports(&fabric), ["Ready/@1", "NotReady/Provisioning@2", "Ready/@2"]);
    assert!(has_user(&r, "azureuser") && !has_user(&r, "pooluser"));
}

#[test]
fn a_bad_ovf_from_imds_is_reported_as_provisioning_failed_and_nothing_is_created() {
    if !need_root("a_bad_ovf_from_imds_is_reported_as_provisioning_failed_and_nothing_is_created") {
        return;
    }
    let fabric = fabric();
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric);
    let (pool, user) = ovfs(&r, RUNNING);
    assert!(stage(&r, "local", &pool, &conf).status.success());
    fabric
        .set_reprovision_data(Some(user.replace("<ns1:HostName>wala-test-vm</ns1:HostName>", "").as_bytes()));
    let out = stage(&r, "pps", &pool, &conf);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!has_user(&r, "azureuser") && !has_user(&r, "pooluser"));
    assert!(r.path(POOL_STATE).exists(), "a reboot tries again");
    let out = stage(&r, "network", &pool, &conf);
    assert_eq!(out.status.code(), Some(1));
    // (The document was there before the pool's Ready: that Ready already went to incarnation 2.)
    assert_eq!(reports(&fabric), ["Ready/@2", "NotReady/Provisioning@2", "NotReady/ProvisioningFailed@2"]);
    let description = fabric.health_reports()[2].description.clone().unwrap_or_default();
    assert!(description.contains("IMDS") && description.contains("HostName"), "{description}");
}

#[test]
fn a_failed_pool_ready_fails_a_running_vm_and_is_tolerated_for_a_savable_one() {
    if !need_root("a_failed_pool_ready_fails_a_running_vm_and_is_tolerated_for_a_savable_one") {
        return;
    }
    let health = || {
        Fault::new(
            Listener::Wireserver,
            "/machine?comp=health",
            FaultAction::Status { status: 400, body: None },
        )
        .times(1)
    };
    // Running: the stage fails, and the network stage says why.
    let fabric = fabric();
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric);
    let (pool, _) = ovfs(&r, RUNNING);
    assert!(stage(&r, "local", &pool, &conf).status.success());
    fabric.add_fault(health());
    let out = stage(&r, "pps", &pool, &conf);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(reprovision_requests(&fabric), 0);
    assert!(stage(&r, "network", &pool, &conf).status.code() == Some(1));
    let last = fabric.health_reports().pop().expect("a report");
    assert_eq!(last.substatus.as_deref(), Some("ProvisioningFailed"));
    assert!(last.description.unwrap_or_default().contains("pps-report-ready"));

    // Savable: the host may have unplugged the NIC already; the stage goes on to IMDS.
    let fabric = self::fabric();
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric);
    let (pool, user) = ovfs(&r, SAVABLE);
    assert!(stage(&r, "local", &pool, &conf).status.success());
    fabric.add_fault(health());
    fabric.set_reprovision_data(Some(user.as_bytes()));
    let out = stage(&r, "pps", &pool, &conf);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("ignored for a Savable pool VM"), "{}", stderr(&out));
    assert!(has_user(&r, "azureuser"));
}

#[test]
fn an_os_disk_pool_vm_reports_ready_and_waits_for_its_shutdown() {
    if !need_root("an_os_disk_pool_vm_reports_ready_and_waits_for_its_shutdown") {
        return;
    }
    let fabric = fabric();
    let r = TestRoot::new();
    let conf = platform_config(&r, &fabric);
    let (pool, _) = ovfs(&r, "<ns1:PreprovisionedVMType>PreprovisionedOSDisk</ns1:PreprovisionedVMType>");
    assert!(stage(&r, "local", &pool, &conf).status.success());
    let out = command(&r, "pps", &pool, &conf).args(["--pps-wait-limit", "1"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("did not shut the VM down"), "{}", stderr(&out));
    assert_eq!(reports(&fabric), ["Ready/@1"]);
    assert_eq!(reprovision_requests(&fabric), 0);
    assert!(!r.read(POOL_STATE).contains("\"reported_ready\": true"), "no marker for an OS-disk pool VM");
    assert!(!has_user(&r, "pooluser"));
}

// ---------------------------------------------------------------------------------------------
// The NIC changes, for real: inside a network namespace of the test's own.

mod netns {
    use super::*;
    use wala::platform::endpoint::{Endpoint, Endpoints};
    use wala::provision::preprovisioned::{self, Links, PoolOutcome, PoolServices, Primary};

    fn sh(script: &str) {
        let out = Command::new("sh").args(["-ec", script]).output().expect("sh");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn endpoint(a: std::net::SocketAddr) -> Endpoint {
        Endpoint::new(a.ip().to_string(), a.port())
    }

    /// The pool VM of `kind` through its local stage, then the library's pps stage in a thread
    /// that has a network namespace with `setup` done; `host` plays the platform from that
    /// namespace once the pool's Ready arrived. Returns the stage's outcome and the fabric.
    fn pool_vm_in_netns(
        settings: &'static str,
        setup: &'static str,
        primary: Option<&'static str>,
        host: fn(&Fabric),
    ) -> Option<(TestRoot, PoolOutcome, Vec<String>)> {
        if !need_root("pps in a network namespace") {
            return None;
        }
        let r = TestRoot::new();
        let handle = std::thread::spawn(move || {
            // SAFETY: unshare(2) of this thread's network namespace only; the thread ends after.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
            sh(&format!("ip link set lo up; {setup}"));
            let fabric = fabric();
            let conf = platform_config(&r, &fabric);
            let (pool, user) = ovfs(&r, settings);
            assert!(stage(&r, "local", &pool, &conf).status.success());
            let loaded = wala::documents::conf::load(&conf).expect("config");
            let outcome = std::thread::scope(|scope| {
                let worker = scope.spawn(|| {
                    let runner = wala::base::cmd::SystemRunner;
                    let root = wala::base::root::HostRoot::new(r.dir.path());
                    let host = wala::host::Host { root: &root, config: &loaded.config, runner: &runner };
                    let ctx = wala::provision::Context { host, kvp: None };
                    let e = Endpoints::explicit(
                        endpoint(fabric.wire_addr()),
                        endpoint(fabric.hgap_addr()),
                        endpoint(fabric.imds_addr()),
                    );
                    let client =
                        wala::platform::wireserver::WireClient::new(e.clone(), r.path("var/lib/waagent"));
                    let reprovision = wala::platform::imds_reprovision::ReprovisionClient::new(
                        e.imds.clone(),
                    )
                    .with_policy(wala::platform::imds_reprovision::PollPolicy::default().scaled_down(10));
                    let services = PoolServices {
                        platform: &client,
                        reprovision: &reprovision,
                        links: Links::Watch(Primary::Named(primary.unwrap_or("lo").to_string())),
                        imds: Some(std::net::Ipv4Addr::LOCALHOST),
                        wait_limit: Some(Duration::from_secs(60)),
                    };
                    preprovisioned::run(&ctx, &services)
                });
                wait_until("the pool's Ready", || !fabric.health_reports().is_empty());
                host(&fabric);
                fabric.set_reprovision_data(Some(user.as_bytes()));
                worker.join().expect("worker")
            });
            (r, outcome.expect("pps stage"), reports(&fabric))
        });
        Some(handle.join().expect("netns thread"))
    }

    /// A moment for a stage that would wrongly poll already to do so.
    fn settle() {
        std::thread::sleep(Duration::from_millis(400));
    }

    #[test]
    fn running_polls_imds_only_after_its_nic_switched_networks() {
        let setup = "ip link add pwa0 type veth peer name pwb0; ip link set pwa0 up; ip link set pwb0 up";
        let Some((r, outcome, reports)) = pool_vm_in_netns(RUNNING, setup, Some("pwa0"), |fabric| {
            settle();
            assert_eq!(reprovision_requests(fabric), 0, "polled IMDS before the NIC switched networks");
            sh("ip link set pwb0 down; sleep 0.2; ip link set pwb0 up");
        }) else {
            return;
        };
        assert!(matches!(outcome, PoolOutcome::Reprovisioned { resumed: false, .. }), "{outcome:?}");
        assert_eq!(reports, ["Ready/@1"]);
        assert!(has_user(&r, "azureuser") && !has_user(&r, "pooluser"));
    }

    #[test]
    fn savable_polls_imds_only_after_its_nic_was_unplugged_and_a_new_one_plugged() {
        let setup = "ip link add swa0 type veth peer name swb0; ip link set swa0 up";
        let Some((r, outcome, _)) = pool_vm_in_netns(SAVABLE, setup, None, |fabric| {
            settle();
            assert_eq!(reprovision_requests(fabric), 0, "polled IMDS before the NIC was unplugged");
            sh("ip link del swa0");
            settle();
            assert_eq!(reprovision_requests(fabric), 0, "polled IMDS before a new NIC was plugged in");
            sh("ip link add swc0 type veth peer name swd0; ip link set swc0 up");
        }) else {
            return;
        };
        assert!(matches!(outcome, PoolOutcome::Reprovisioned { resumed: false, .. }), "{outcome:?}");
        assert!(has_user(&r, "azureuser") && !has_user(&r, "pooluser"));
        assert_eq!(r.read("etc/hostname").trim(), "wala-test-vm");
    }
}
