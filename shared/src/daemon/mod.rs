//! `wala-agentd`'s steady-state loop: one mio event loop, no async runtime. Periodic tasks run
//! when due; SIGTERM/SIGINT (through a signalfd) stop the loop within one wake-up; systemd is told
//! READY and STOPPING.

pub mod monitors;
pub mod notify;
pub mod signals;

use std::time::{Duration, Instant};

use crate::cmd::Runner;
use crate::conf::Config;
use crate::root::HostRoot;

/// What tasks work with.
pub struct Env<'a> {
    pub root: &'a HostRoot,
    pub config: &'a Config,
    pub runner: &'a dyn Runner,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("root", &self.root).finish_non_exhaustive()
    }
}

/// A task run failed; the loop logs it and tries again next period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TaskError(pub String);

/// A periodic piece of work.
pub trait Task {
    fn name(&self) -> &'static str;
    fn period(&self) -> Duration;
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError>;
}

/// The daemon could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot set up the event loop: {0}")]
    Setup(#[source] std::io::Error),
}

/// When the loop stops on its own (tests and benchmarks); `None` runs until a signal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub max_wakeups: Option<u64>,
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub wakeups: u64,
    pub task_runs: u64,
    pub task_failures: u64,
    pub stopped_by_signal: Option<i32>,
}

struct Scheduled<'t> {
    task: Box<dyn Task + 't>,
    next: Instant,
    failures: u64,
}

/// The monitors the configuration turns on.
pub fn standard_tasks(config: &Config) -> Vec<Box<dyn Task>> {
    let secs = |s: u64| Duration::from_secs(s.max(1));
    let mut tasks: Vec<Box<dyn Task>> = vec![Box::new(monitors::PersistentNetRules {
        period: secs(config.remove_persistent_net_rules_period),
    })];
    if let Some(timeout) = config.root_device_scsi_timeout {
        tasks.push(Box::new(monitors::ScsiTimeout {
            timeout,
            period: secs(config.root_device_scsi_timeout_period),
        }));
    }
    if config.enable_firewall {
        tasks.push(Box::new(crate::firewall::FirewallTask {
            destination: wireserver_ip(config),
            period: secs(config.enable_firewall_period),
        }));
    }
    if config.monitor_hostname {
        tasks.push(Box::new(monitors::HostnameMonitor {
            period: secs(config.monitor_hostname_period),
            current: crate::hostname::kernel_hostname,
        }));
    }
    tasks
}

/// The WireServer address the firewall protects: the configured one when it is an IPv4 address,
/// else the well-known address.
fn wireserver_ip(config: &Config) -> std::net::Ipv4Addr {
    config
        .wala_wireserver
        .as_ref()
        .and_then(|hp| hp.host.parse().ok())
        .unwrap_or(std::net::Ipv4Addr::new(168, 63, 129, 16))
}

const SIGNAL: mio::Token = mio::Token(0);

/// Run `tasks` until SIGTERM/SIGINT (or the limits). Every task runs once at start, then every
/// period; a failing task is logged (its first failures, then every hundredth) and retried.
pub fn run<'t>(
    env: &Env<'_>,
    tasks: Vec<Box<dyn Task + 't>>,
    limits: Limits,
) -> Result<Summary, DaemonError> {
    let signals = signals::SignalFd::new().map_err(DaemonError::Setup)?;
    let mut poll = mio::Poll::new().map_err(DaemonError::Setup)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&signals);
    poll.registry()
        .register(&mut mio::unix::SourceFd(&fd), SIGNAL, mio::Interest::READABLE)
        .map_err(DaemonError::Setup)?;
    let mut events = mio::Events::with_capacity(16);
    let start = Instant::now();
    let mut scheduled: Vec<Scheduled<'t>> =
        tasks.into_iter().map(|task| Scheduled { task, next: start, failures: 0 }).collect();
    let mut summary = Summary::default();
    notify::notify("READY=1");
    log::info!("wala-agentd {} running ({} periodic tasks)", crate::VERSION, scheduled.len());
    'outer: loop {
        let now = Instant::now();
        for s in scheduled.iter_mut().filter(|s| s.next <= now) {
            summary.task_runs += 1;
            if let Err(e) = s.task.run(env) {
                s.failures += 1;
                summary.task_failures += 1;
                if s.failures <= 3 || s.failures % 100 == 0 {
                    log::warn!("{} failed ({} times so far): {e}", s.task.name(), s.failures);
                }
            }
            s.next = (s.next + s.task.period()).max(now);
        }
        if limits.max_wakeups.is_some_and(|m| summary.wakeups >= m) {
            break;
        }
        let timeout =
            scheduled.iter().map(|s| s.next).min().map(|next| next.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(DaemonError::Setup(e));
            }
        }
        summary.wakeups += 1;
        for event in events.iter() {
            if event.token() == SIGNAL {
                for sig in signals.read_pending() {
                    match sig {
                        libc::SIGTERM | libc::SIGINT => {
                            summary.stopped_by_signal = Some(sig);
                            break 'outer;
                        }
                        libc::SIGHUP => {
                            log::info!("SIGHUP: the configuration is read at start; restart to apply changes")
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    notify::notify("STOPPING=1");
    log::info!("wala-agentd stopping after {} wake-ups", summary.wakeups);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::FakeRunner;

    struct Counter {
        period: Duration,
        fail: bool,
    }

    impl Task for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }
        fn period(&self) -> Duration {
            self.period
        }
        fn run(&mut self, _: &Env<'_>) -> Result<(), TaskError> {
            if self.fail {
                Err(TaskError("always".into()))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn tasks_run_on_their_periods_and_failures_are_counted() {
        let (root, config, runner) = (HostRoot::new("/nonexistent"), Config::default(), FakeRunner::new());
        let env = Env { root: &root, config: &config, runner: &runner };
        let tasks: Vec<Box<dyn Task>> = vec![
            Box::new(Counter { period: Duration::from_millis(1), fail: false }),
            Box::new(Counter { period: Duration::from_secs(3600), fail: true }),
        ];
        let summary = run(&env, tasks, Limits { max_wakeups: Some(20) }).expect("run");
        assert_eq!(summary.wakeups, 20);
        assert_eq!(summary.task_failures, 1, "the hourly task ran once");
        assert!(summary.task_runs >= 20, "{summary:?}");
    }
}
