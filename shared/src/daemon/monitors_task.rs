//! The periodic OS monitors (waagent's environment thread, provisioning.md §4).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::files::{self, WriteOptions};
use crate::daemon::{Env, Task, TaskError};
use crate::error::Cause;

/// `OS.RootDeviceScsiTimeout`: the SCSI command timeout of every `sd*` disk.
#[derive(Debug)]
pub struct ScsiTimeout {
    pub timeout: u64,
    pub period: Duration,
}

impl Task for ScsiTimeout {
    fn name(&self) -> &'static str {
        "scsi-timeout"
    }
    fn period(&self) -> Duration {
        self.period
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        let dir = env.host.root.path("/sys/block");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
        let wanted = self.timeout.to_string();
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with("sd") {
                continue;
            }
            let file = entry.path().join("device/timeout");
            let Ok(current) = std::fs::read_to_string(&file) else { continue };
            if current.lines().next().map(str::trim) != Some(wanted.as_str()) {
                std::fs::write(&file, &wanted)
                    .map_err(|e| Cause::io(format!("write {}", file.display()), e))?;
                log::info!("set the SCSI timeout of {} to {wanted}s", entry.file_name().to_string_lossy());
            }
        }
        Ok(())
    }
}

/// Persistent net rules that pin interface names to MAC addresses break networking when the VM
/// moves to new hardware: move them into the lib dir (as waagent does).
#[derive(Debug)]
pub struct PersistentNetRules {
    pub period: Duration,
}

pub const PERSISTENT_NET_RULES: [&str; 2] =
    ["/lib/udev/rules.d/75-persistent-net-generator.rules", "/etc/udev/rules.d/70-persistent-net.rules"];

impl Task for PersistentNetRules {
    fn name(&self) -> &'static str {
        "persistent-net-rules"
    }
    fn period(&self) -> Duration {
        self.period
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        for rules in PERSISTENT_NET_RULES {
            let src = env.host.root.path(rules);
            if !src.is_file() {
                continue;
            }
            let name = Path::new(rules).file_name().unwrap_or_default();
            let dst = env.host.root.path(env.host.config.lib_dir.as_path()).join(name);
            let _ = std::fs::remove_file(&dst);
            std::fs::rename(&src, &dst)
                .map_err(|e| Cause::io(format!("move {} to {}", src.display(), dst.display()), e))?;
            log::warn!("Moved rules file {} to {}", src.display(), dst.display());
        }
        Ok(())
    }
}

/// `Provisioning.MonitorHostName`: when the hostname changes, record it and publish it to the
/// platform DNS by renewing the DHCP lease in place where the client can.
#[derive(Debug)]
pub struct HostnameMonitor {
    pub period: Duration,
    pub current: fn() -> Option<String>,
}

impl HostnameMonitor {
    fn record(env: &Env<'_>) -> PathBuf {
        env.host.root.path(env.host.config.lib_dir.as_path().join("published_hostname"))
    }
}

impl Task for HostnameMonitor {
    fn name(&self) -> &'static str {
        "hostname"
    }
    fn period(&self) -> Duration {
        self.period
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        let Some(now) = (self.current)() else { return Ok(()) };
        let record = Self::record(env);
        let published = files::read_optional(&record)?;
        let write_record = |name: &str| {
            files::ensure_dir(&env.host.root.path(env.host.config.lib_dir.as_path()), 0o700)
                .and_then(|()| files::write_atomic(&record, name.as_bytes(), WriteOptions::mode(0o644)))
                .map_err(TaskError::from)
        };
        match published.as_deref().map(str::trim) {
            None => write_record(&now),
            Some(old) if old == now => Ok(()),
            Some(old) => {
                log::info!("EnvMonitor: Detected hostname change: {old} -> {now}");
                crate::host::hostname::set_hostname(env.host.root, &now)?;
                crate::host::hostname::publish(env.host.root, env.host.runner);
                write_record(&now)
            }
        }
    }
}

/// `OS.MonitorDhcpClientRestartPeriod`: when the DHCP client restarts (its PIDs change), the
/// route to the WireServer may be gone: check it and add it back (waagent's routes feature).
#[derive(Debug)]
pub struct DhcpClientRestart {
    pub period: Duration,
    pub wireserver: std::net::Ipv4Addr,
    known: Option<Vec<u32>>,
}

/// The processes that run DHCP on the distributions waagent supports.
const DHCP_CLIENTS: [&str; 5] = ["dhclient", "systemd-networkd", "NetworkManager", "dhcpcd", "wickedd-dhcp4"];

impl DhcpClientRestart {
    pub fn new(period: Duration, wireserver: std::net::Ipv4Addr) -> Self {
        Self { period, wireserver, known: None }
    }

    /// PIDs of running DHCP clients, from `/proc/<pid>/comm`.
    fn pids(env: &Env<'_>) -> Vec<u32> {
        let mut pids: Vec<u32> = std::fs::read_dir(env.host.root.path("/proc"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
                        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
                        DHCP_CLIENTS.contains(&comm.trim()).then_some(pid)
                    })
                    .collect()
            })
            .unwrap_or_default();
        pids.sort_unstable();
        pids
    }
}

impl Task for DhcpClientRestart {
    fn name(&self) -> &'static str {
        "dhcp-client-restart"
    }
    fn period(&self) -> Duration {
        self.period
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        let now = Self::pids(env);
        let restarted =
            self.known.as_ref().is_some_and(|old| !now.is_empty() && !old.iter().any(|p| now.contains(p)));
        self.known = Some(now);
        if restarted {
            log::info!("Detected dhcp client restart. Restoring routing table.");
            crate::platform::endpoint::ensure_route(env.host.root, env.host.runner, self.wireserver)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::FakeRunner;
    use crate::base::root::HostRoot;
    use crate::documents::conf::Config;

    fn env<'a>(root: &'a HostRoot, config: &'a Config, runner: &'a FakeRunner) -> Env<'a> {
        Env { host: crate::host::Host { root, config, runner }, state: Box::leak(Box::default()) }
    }

    #[test]
    fn scsi_timeout_is_written_where_it_differs() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (dev, t) in [("sda", "30\n"), ("sdb", "300\n"), ("vda", "30\n")] {
            std::fs::create_dir_all(dir.path().join(format!("sys/block/{dev}/device"))).expect("mkdir");
            std::fs::write(dir.path().join(format!("sys/block/{dev}/device/timeout")), t).expect("write");
        }
        let (root, config, runner) = (HostRoot::new(dir.path()), Config::default(), FakeRunner::new());
        ScsiTimeout { timeout: 300, period: Duration::from_secs(30) }
            .run(&env(&root, &config, &runner))
            .expect("run");
        let read = |d: &str| {
            std::fs::read_to_string(dir.path().join(format!("sys/block/{d}/device/timeout"))).unwrap()
        };
        assert_eq!(read("sda"), "300");
        assert_eq!(read("sdb"), "300\n", "left alone");
        assert_eq!(read("vda"), "30\n", "not a SCSI disk");
    }

    #[test]
    fn a_dhcp_client_restart_restores_the_route() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc_dir = dir.path().join("proc");
        let spawn = |pid: u32, comm: &str| {
            std::fs::create_dir_all(proc_dir.join(pid.to_string())).expect("mkdir");
            std::fs::write(proc_dir.join(format!("{pid}/comm")), format!("{comm}\n")).expect("write");
        };
        spawn(100, "systemd-networkd");
        spawn(101, "sshd");
        std::fs::create_dir_all(proc_dir.join("net")).expect("mkdir");
        std::fs::write(
            proc_dir.join("net/route"),
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
             eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\n",
        )
        .expect("write");
        let (root, config, runner) = (HostRoot::new(dir.path()), Config::default(), FakeRunner::new());
        let e = env(&root, &config, &runner);
        let mut m =
            DhcpClientRestart::new(Duration::from_secs(30), std::net::Ipv4Addr::new(168, 63, 129, 16));
        m.run(&e).expect("first");
        m.run(&e).expect("unchanged");
        assert!(runner.calls().is_empty());
        std::fs::remove_dir_all(proc_dir.join("100")).expect("rm");
        spawn(200, "systemd-networkd");
        m.run(&e).expect("restart");
        let lines = runner.command_lines();
        assert_eq!(lines, ["ip route add 168.63.129.16/32 via 10.0.0.1 dev eth0"], "{lines:?}");
    }

    #[test]
    fn with_dhclient_the_interface_is_taken_down_and_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("proc/300")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(dir.path().join("proc/300/comm"), "dhclient\n").expect("write");
        std::fs::write(
            dir.path().join("proc/net/route").tap_parent(),
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
             eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\n",
        )
        .expect("write");
        let (root, config, runner) = (HostRoot::new(dir.path()), Config::default(), FakeRunner::new());
        runner.without("networkctl").without("nmcli");
        let e = env(&root, &config, &runner);
        let mut m = HostnameMonitor { period: Duration::from_secs(30), current: || Some("a".into()) };
        m.run(&e).expect("baseline");
        m.current = || Some("b".into());
        m.run(&e).expect("change");
        // ifquery prints nothing (the fake's default): `ifup` on the interface itself.
        assert_eq!(runner.command_lines(), ["ifquery --state eth0", "ifdown eth0", "ifup eth0"]);
    }

    #[test]
    fn with_wicked_the_interface_is_brought_up_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = crate::base::testing::FakeOs::Sles15.build(dir.path());
        std::fs::create_dir_all(dir.path().join("proc/400")).expect("mkdir");
        std::fs::write(dir.path().join("proc/400/comm"), "wickedd-dhcp4\n").expect("write");
        std::fs::write(
            dir.path().join("proc/net/route").tap_parent(),
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
             eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\n",
        )
        .expect("write");
        let (config, runner) = (Config::default(), FakeRunner::new());
        runner.without("networkctl").without("nmcli");
        let e = env(&root, &config, &runner);
        let mut m = HostnameMonitor { period: Duration::from_secs(30), current: || Some("a".into()) };
        m.run(&e).expect("baseline");
        m.current = || Some("b".into());
        m.run(&e).expect("change");
        assert_eq!(
            runner.command_lines(),
            ["systemctl is-active --quiet wickedd.service", "wicked ifup eth0"]
        );
    }

    /// Create a path's parent directories and return the path.
    trait TapParent {
        fn tap_parent(self) -> std::path::PathBuf;
    }

    impl TapParent for std::path::PathBuf {
        fn tap_parent(self) -> std::path::PathBuf {
            if let Some(p) = self.parent() {
                std::fs::create_dir_all(p).expect("mkdir");
            }
            self
        }
    }

    #[test]
    fn persistent_net_rules_are_moved_to_the_lib_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc/udev/rules.d")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("var/lib/waagent")).expect("mkdir");
        std::fs::write(dir.path().join("etc/udev/rules.d/70-persistent-net.rules"), "rule").expect("write");
        let (root, config, runner) = (HostRoot::new(dir.path()), Config::default(), FakeRunner::new());
        PersistentNetRules { period: Duration::from_secs(30) }
            .run(&env(&root, &config, &runner))
            .expect("run");
        assert!(!dir.path().join("etc/udev/rules.d/70-persistent-net.rules").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("var/lib/waagent/70-persistent-net.rules")).unwrap(),
            "rule"
        );
    }

    #[test]
    fn hostname_change_is_recorded_set_and_published_by_renewal() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("proc/net")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(
            dir.path().join("proc/net/route"),
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
             eth1\t00000000\t0100000A\t0003\t0\t0\t200\t00000000\n\
             eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\n\
             eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n",
        )
        .expect("write");
        let (root, config, runner) = (HostRoot::new(dir.path()), Config::default(), FakeRunner::new());
        let e = env(&root, &config, &runner);
        let mut m = HostnameMonitor { period: Duration::from_secs(30), current: || Some("first".into()) };
        m.run(&e).expect("baseline");
        assert!(runner.calls().is_empty(), "the first run only records");
        m.current = || Some("second".into());
        m.run(&e).expect("change");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("var/lib/waagent/published_hostname")).unwrap(),
            "second"
        );
        assert_eq!(std::fs::read_to_string(dir.path().join("etc/hostname")).unwrap(), "second\n");
        let lines = runner.command_lines();
        assert_eq!(lines.last().map(String::as_str), Some("networkctl renew eth0"), "{lines:?}");
    }
}
