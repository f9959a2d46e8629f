//! The WireServer firewall, for real, inside network namespaces this test creates (never on the
//! host's own tables): root reaches the WireServer, an unprivileged user does not, except DNS.
//! Both backends (iptables and nft); partial rule sets are repaired. Root only.

mod common;

use std::net::Ipv4Addr;
use std::process::{Child, Command};

use wala::base::cmd::{Cmd, CmdError, CmdOutput, Runner, SystemRunner};
use wala::host::firewall::{self, Backend, RuleState};

const WS: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

/// A network namespace, deleted on drop, with the WireServer address on its loopback and a TCP
/// listener on ports 80 and 53.
struct Netns {
    name: String,
    listener: Option<Child>,
}

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("wala-fw-{tag}-{}", std::process::id());
        let ip = |args: &[&str]| {
            assert!(Command::new("ip").args(args).status().expect("ip").success(), "ip {args:?}")
        };
        ip(&["netns", "add", &name]);
        let mut ns = Self { name, listener: None };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ip(&["-n", &ns.name, "addr", "add", "168.63.129.16/32", "dev", "lo"]);
        let script = "import socket,threading\n\
            def serve(p):\n s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n \
            s.bind(('168.63.129.16',p)); s.listen(16)\n while True: s.accept()[0].close()\n\
            [threading.Thread(target=serve,args=(p,),daemon=True).start() for p in (80,53)]\n\
            import time\ntime.sleep(120)\n";
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c", script])
            .spawn()
            .expect("listener");
        ns.listener = Some(child);
        // Wait for the listener (python starts slowly on a loaded machine).
        let started = std::time::Instant::now();
        while !(ns.connects(0, 80) && ns.connects(0, 53)) {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "the test listener did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ns
    }

    /// Whether `uid` can open a TCP connection to the WireServer on `port` within a second.
    fn connects(&self, uid: u32, port: u16) -> bool {
        let code = format!(
            "import socket,sys\ns=socket.socket(); s.settimeout(1)\n\
             try:\n s.connect(('168.63.129.16',{port})); sys.exit(0)\nexcept Exception:\n sys.exit(1)\n"
        );
        let uid = uid.to_string();
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "setpriv",
                "--reuid",
                &uid,
                "--regid",
                &uid,
                "--clear-groups",
            ])
            .args(["/usr/bin/python3", "-c", &code])
            .status()
            .expect("probe")
            .success()
    }

    fn runner(&self) -> NetnsRunner<'_> {
        NetnsRunner { ns: &self.name }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut c) = self.listener.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Runs every command inside the namespace.
struct NetnsRunner<'a> {
    ns: &'a str,
}

impl Runner for NetnsRunner<'_> {
    fn output(&self, cmd: &Cmd) -> Result<CmdOutput, CmdError> {
        let mut wrapped =
            Cmd::new("ip").args(["netns", "exec", self.ns]).arg(cmd.program()).args(cmd.get_args());
        if let Some(data) = cmd.stdin_data() {
            wrapped = wrapped.stdin(data.to_vec());
        }
        SystemRunner.output(&wrapped)
    }
}

fn usable() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        common::skip("firewall_netns: needs root (network namespaces)");
        return false;
    }
    for tool in ["ip", "iptables", "nft", "setpriv", "/usr/bin/python3"] {
        if wala::base::cmd::find_program(tool).is_none() {
            common::skip(&format!(
                "firewall_netns: {tool} is not installed (apt-get install -y iptables nftables)"
            ));
            return false;
        }
    }
    true
}

fn exercise(backend: Backend) {
    let ns = Netns::new(if backend == Backend::Iptables { "ipt" } else { "nft" });
    let runner = ns.runner();
    assert!(ns.connects(65534, 80), "before: everyone may connect");
    assert_eq!(firewall::ensure(&runner, backend, WS, 0).expect("ensure"), RuleState::Missing);
    assert_eq!(firewall::ensure(&runner, backend, WS, 0).expect("ensure"), RuleState::Present);
    assert!(ns.connects(0, 80), "root reaches the WireServer");
    assert!(!ns.connects(65534, 80), "an unprivileged user does not");
    assert!(ns.connects(65534, 53), "DNS stays open to everyone");
}

#[test]
fn iptables_rules_protect_the_wireserver_and_are_repaired() {
    if !usable() {
        return;
    }
    exercise(Backend::Iptables);
    // A partial set (one rule deleted by someone) is reset to exactly the three rules.
    let ns = Netns::new("partial");
    let runner = ns.runner();
    firewall::ensure(&runner, Backend::Iptables, WS, 0).expect("ensure");
    let drop_rule = &firewall::iptables_rules(WS, 0)[2];
    runner
        .run(&Cmd::new("iptables").args(["-w", "-t", "security", "-D", "OUTPUT"]).args(drop_rule))
        .expect("delete");
    assert!(ns.connects(65534, 80));
    assert_eq!(firewall::ensure(&runner, Backend::Iptables, WS, 0).expect("repair"), RuleState::Partial);
    let listing =
        runner.run(&Cmd::new("iptables").args(["-w", "-t", "security", "-S", "OUTPUT"])).expect("list");
    assert_eq!(listing.stdout_str().lines().filter(|l| l.starts_with("-A OUTPUT")).count(), 3);
    assert!(!ns.connects(65534, 80));
}

#[test]
fn nft_rule_protects_the_wireserver() {
    if !usable() {
        return;
    }
    exercise(Backend::Nft);
}
