//! The firewall task (`OS.EnableFirewall`, `OS.EnableFirewallPeriod`): the WireServer rules of
//! [`crate::host::firewall`] checked and repaired every period, on the periodic worker.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::daemon::{Env, Task, TaskError};
use crate::host::firewall::{agent_uid, backend, ensure, ensure_permanent, firewalld_running, persist};

/// The daemon's periodic check and repair (`OS.EnableFirewall`, `OS.EnableFirewallPeriod`).
#[derive(Debug)]
pub struct FirewallTask {
    pub destination: Ipv4Addr,
    pub period: Duration,
}

impl Task for FirewallTask {
    fn name(&self) -> &'static str {
        "firewall"
    }
    fn period(&self) -> Duration {
        self.period
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        let b = backend(env.host.runner)?;
        ensure(env.host.runner, b, self.destination, agent_uid())?;
        // With firewalld, its permanent rules hold from boot and wala-network-setup.service must
        // not run (firewalld would flush what it set); without, that unit restores the rules.
        let boot_file = if firewalld_running(env.host.runner) {
            ensure_permanent(env.host.runner, self.destination, agent_uid())?;
            None
        } else {
            Some(self.destination)
        };
        Ok(persist(env.host.root, env.host.config.lib_dir.as_path(), boot_file)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::{Cmd, CmdError, Runner};
    use crate::daemon::State;
    use crate::host::firewall::{iptables_rules, RuleState, PERSIST_FILE};

    const WS: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

    fn ok(stdout: &str) -> crate::base::cmd::CmdOutput {
        crate::base::cmd::CmdOutput {
            code: Some(0),
            stdout: stdout.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn failed() -> crate::base::cmd::CmdOutput {
        crate::base::cmd::CmdOutput { code: Some(1), ..Default::default() }
    }

    /// Run the daemon's task once on a lib dir holding the boot file an earlier run without
    /// firewalld left; returns the task's result and whether the boot file is still there.
    fn run_task(runner: &dyn Runner) -> (Result<(), TaskError>, bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = crate::base::root::HostRoot::new(dir.path());
        let config = crate::documents::conf::Config::default();
        let lib = config.lib_dir.as_path().to_path_buf();
        std::fs::create_dir_all(root.path(&lib)).expect("mkdir");
        persist(&root, &lib, Some(WS)).expect("persist");
        let state = State::default();
        let env = Env { host: crate::host::Host { root: &root, config: &config, runner }, state: &state };
        let mut task = FirewallTask { destination: WS, period: Duration::from_secs(30) };
        let result = task.run(&env);
        (result, root.path(lib.join(PERSIST_FILE)).exists())
    }

    #[test]
    fn without_firewalld_the_rules_are_restored_at_boot_by_wala_network_setup() {
        // Debian, Ubuntu, SUSE, Azure Linux: no firewall-cmd, or firewalld installed but stopped.
        let uid = agent_uid();
        for firewalld_state in [None, Some("not running")] {
            let runner = crate::base::cmd::FakeRunner::new();
            runner.respond_line("iptables -w -t security -D", failed());
            match firewalld_state {
                None => {
                    runner.without("firewall-cmd");
                }
                Some(state) => {
                    let out = crate::base::cmd::CmdOutput {
                        code: Some(252),
                        stdout: state.into(),
                        ..Default::default()
                    };
                    runner.respond_line("firewall-cmd --state", out);
                }
            }
            let (result, boot_file) = run_task(&runner);
            result.expect("task");
            let mut expected: Vec<String> = vec![
                "iptables --version".into(),
                "iptables -w -t security -D OUTPUT -d 168.63.129.16 -p tcp -m conntrack --ctstate INVALID,NEW -j ACCEPT".into(),
            ];
            for r in iptables_rules(WS, uid) {
                expected.push(format!("iptables -w -t security -C OUTPUT {}", r.join(" ")));
            }
            if firewalld_state.is_some() {
                expected.push("firewall-cmd --state".into());
            }
            assert_eq!(runner.command_lines(), expected, "{firewalld_state:?}");
            assert!(boot_file, "{firewalld_state:?}");
        }
    }

    /// firewalld's permanent direct rules, kept as firewall-cmd would; iptables has its rules.
    #[derive(Default)]
    struct FakeFirewalld {
        permanent: std::sync::Mutex<Vec<String>>,
        lines: std::sync::Mutex<Vec<String>>,
    }

    impl Runner for FakeFirewalld {
        fn output(&self, cmd: &Cmd) -> Result<crate::base::cmd::CmdOutput, CmdError> {
            let line = cmd.to_string();
            self.lines.lock().expect("lock").push(line.clone());
            let mut permanent = self.permanent.lock().expect("lock");
            let args: Vec<String> = cmd.get_args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
            let success = match (cmd.program().to_str(), args.first().map(String::as_str)) {
                (Some("firewall-cmd"), Some("--state")) => return Ok(ok("running\n")),
                (Some("firewall-cmd"), Some("--permanent")) => {
                    let rule = args[3..].join(" ");
                    match args[2].as_str() {
                        "--query-passthrough" => permanent.contains(&rule),
                        "--passthrough" => {
                            permanent.push(rule);
                            true
                        }
                        "--remove-passthrough" => {
                            let before = permanent.len();
                            permanent.retain(|r| *r != rule);
                            permanent.len() < before
                        }
                        other => panic!("unexpected {other}"),
                    }
                }
                (Some("iptables"), Some("-w")) => args[3] == "-C",
                _ => true,
            };
            Ok(if success { ok("") } else { failed() })
        }

        fn exists(&self, _program: &str) -> bool {
            true
        }
    }

    #[test]
    fn with_firewalld_running_the_rules_are_made_permanent_and_the_boot_file_goes() {
        let uid = agent_uid();
        let rules: Vec<String> = iptables_rules(WS, uid).iter().map(|r| r.join(" ")).collect();
        let append = |r: &str| format!("ipv4 -t security -A OUTPUT {r}");
        let legacy = "ipv4 -t security -I OUTPUT -d 168.63.129.16 -p tcp --destination-port 53 -j ACCEPT";
        // An older agent's inserted DNS rule, and one of the three rules only: reset.
        let fw = FakeFirewalld::default();
        fw.permanent.lock().expect("lock").extend([legacy.to_string(), append(&rules[1])]);
        let (result, boot_file) = run_task(&fw);
        result.expect("task");
        assert!(!boot_file, "firewalld restores the rules at boot: wala-network-setup does not run");
        let want: Vec<String> = rules.iter().map(|r| append(r)).collect();
        assert_eq!(*fw.permanent.lock().expect("lock"), want);
        let cmds = fw.lines.lock().expect("lock").clone();
        let from = cmds.iter().position(|l| l == "firewall-cmd --state").expect("state asked");
        let fwcmd = |op: &str, rule: &str| format!("firewall-cmd --permanent --direct {op} {rule}");
        let mut expected = vec![
            "firewall-cmd --state".to_string(),
            fwcmd("--query-passthrough", legacy),
            fwcmd("--remove-passthrough", legacy),
        ];
        for op in ["--query-passthrough", "--remove-passthrough", "--passthrough", "--query-passthrough"] {
            expected.extend(want.iter().map(|r| fwcmd(op, r)));
        }
        assert_eq!(&cmds[from..], expected.as_slice());
        // Next period: all there, only checked.
        fw.lines.lock().expect("lock").clear();
        assert_eq!(ensure_permanent(&fw, WS, uid).expect("again"), RuleState::Present);
        let again = fw.lines.lock().expect("lock").clone();
        assert_eq!(again.len(), 4, "{again:?}");
        assert!(again.iter().all(|l| l.contains("--query-passthrough")), "{again:?}");
    }
}
