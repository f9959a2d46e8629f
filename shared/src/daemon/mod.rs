//! `wala-agentd`'s steady-state loop: one mio event loop, no async runtime. Periodic tasks run
//! when due; SIGTERM/SIGINT (through a signalfd) stop the loop within one wake-up; systemd is told
//! READY and STOPPING.

pub mod goal_state;
pub mod instance;
pub mod monitors;
pub mod notify;
pub mod remote_access;
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
    /// How long after start the first run waits (default: none).
    fn initial_delay(&self) -> Duration {
        Duration::ZERO
    }
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
    task: Box<dyn Task + Send + 't>,
    next: Instant,
    failures: u64,
}

/// Every task the daemon runs: the OS monitors, and the platform tasks (goal state and status,
/// remote-access accounts, firewall, a provisioning report that never got through). `goal_state_period` overrides the
/// configured poll period (benchmarks).
pub fn all_tasks(
    root: &HostRoot,
    config: &Config,
    goal_state_period: Option<Duration>,
) -> Vec<Box<dyn Task + Send>> {
    use crate::wire::{client::WireClient, endpoint};
    let endpoints = endpoint::resolve(config, root, std::time::SystemTime::now());
    let lib = root.path(config.lib_dir.as_path());
    let mut tasks = standard_tasks(config);
    if config.enable_firewall {
        tasks.push(Box::new(crate::firewall::FirewallTask {
            destination: endpoints.wireserver.ipv4().unwrap_or(std::net::Ipv4Addr::new(168, 63, 129, 16)),
            period: Duration::from_secs(config.enable_firewall_period.max(1)),
        }));
    }
    if let Some(ip) = endpoints.wireserver.ipv4() {
        let period = Duration::from_secs(config.monitor_dhcp_client_restart_period.max(1));
        tasks.push(Box::new(monitors::DhcpClientRestart::new(period, ip)));
    }
    tasks.push(Box::new(ProvisioningReport {
        client: WireClient::new(endpoints.clone(), lib.clone()),
        done: false,
    }));
    // With extensions off, waagent polls every 5 minutes; otherwise every
    // Extensions.InitialGoalStatePeriod until the first extensions goal state is done.
    let secs = |s: u64| Duration::from_secs(s.max(1));
    let (period, initial) = match goal_state_period {
        Some(p) => (p, p),
        None if !config.extensions_enabled => (secs(300), secs(300)),
        None => (secs(config.goal_state_period), secs(config.initial_goal_state_period())),
    };
    let goal_state = goal_state::GoalStateTask::new(
        WireClient::new(endpoints.clone(), lib.clone()),
        crate::hostgaplugin::HostGaPluginClient::new(endpoints.hostgaplugin.clone()),
        crate::http::HttpClient::storage(&crate::http::StorageProxy::from_config(config)),
        period,
    )
    .with_initial_period(initial);
    // Run after the goal-state task, which shares the container id with them.
    let telemetry = crate::telemetry::TelemetryTask {
        client: WireClient::new(endpoints.clone(), lib.clone()),
        common: crate::telemetry::Common::detect(root),
        container_id: goal_state.container_id.clone(),
    };
    let etp = crate::extensions::etp::EtpTask::new(
        WireClient::new(endpoints.clone(), lib.clone()),
        crate::telemetry::Common::detect(root),
        goal_state.container_id.clone(),
        config,
    );
    let identity = goal_state.identity_shared.clone();
    let remote_access = remote_access::RemoteAccessTask::new(
        WireClient::new(endpoints.clone(), lib.clone()),
        goal_state.goal_state_shared.clone(),
        period,
    );
    tasks.push(Box::new(goal_state));
    // After the goal-state task, on the same period: it sees each new goal state at once.
    tasks.push(Box::new(remote_access));
    tasks.push(Box::new(telemetry));
    tasks.push(Box::new(etp));
    if config.logs_collect {
        tasks.push(Box::new(crate::logcollect::UploadTask {
            hgap: crate::hostgaplugin::HostGaPluginClient::new(endpoints.hostgaplugin.clone()),
            identity,
            period: Duration::from_secs(config.logs_collect_period.max(60)),
        }));
    }
    tasks
}

/// Sends the provisioning result if the network stage could not (spec: agentd retries the report).
struct ProvisioningReport {
    client: crate::wire::client::WireClient,
    done: bool,
}

impl Task for ProvisioningReport {
    fn name(&self) -> &'static str {
        "provisioning-report"
    }
    fn period(&self) -> Duration {
        Duration::from_secs(60)
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        if self.done {
            return Ok(());
        }
        let ctx = crate::provision::Context {
            root: env.root.clone(),
            config: env.config,
            runner: env.runner,
            kvp: None,
        };
        crate::provision::retry_final_report(&ctx, &self.client, &self.client)
            .map_err(|e| TaskError(e.to_string()))?;
        self.done = true;
        Ok(())
    }
}

/// The OS monitors the configuration turns on.
pub fn standard_tasks(config: &Config) -> Vec<Box<dyn Task + Send>> {
    let secs = |s: u64| Duration::from_secs(s.max(1));
    let mut tasks: Vec<Box<dyn Task + Send>> = vec![Box::new(monitors::PersistentNetRules {
        period: secs(config.remove_persistent_net_rules_period),
    })];
    if let Some(timeout) = config.root_device_scsi_timeout {
        tasks.push(Box::new(monitors::ScsiTimeout {
            timeout,
            period: secs(config.root_device_scsi_timeout_period),
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

const SIGNAL: mio::Token = mio::Token(0);
const WORKER_DONE: mio::Token = mio::Token(1);

/// What the worker owns: the host root, the configuration and the command runner.
#[derive(Debug)]
pub struct Owned {
    pub root: HostRoot,
    pub config: Config,
    pub runner: crate::cmd::SystemRunner,
}

/// Run `tasks` until SIGTERM/SIGINT (or the limits). Tasks run on one worker thread (every task
/// once at start, then every period; a failing task is logged, its first failures and then every
/// hundredth, and retried). The main thread only waits for signals, so a stop request is answered
/// at once even while a task waits on the network: the worker is abandoned mid-request, which is
/// safe because every task's writes are atomic and idempotent.
pub fn run(owned: Owned, tasks: Vec<Box<dyn Task + Send>>, limits: Limits) -> Result<Summary, DaemonError> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let signals = signals::SignalFd::new().map_err(DaemonError::Setup)?;
    let mut poll = mio::Poll::new().map_err(DaemonError::Setup)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&signals);
    poll.registry()
        .register(&mut mio::unix::SourceFd(&fd), SIGNAL, mio::Interest::READABLE)
        .map_err(DaemonError::Setup)?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WORKER_DONE).map_err(DaemonError::Setup)?);
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);

    let worker = {
        let (stop, counters, waker) = (stop.clone(), counters.clone(), waker.clone());
        std::thread::Builder::new()
            .name("tasks".into())
            .spawn(move || {
                let env = Env { root: &owned.root, config: &owned.config, runner: &owned.runner };
                let start = Instant::now();
                let mut scheduled: Vec<Scheduled<'_>> = tasks
                    .into_iter()
                    .map(|task| {
                        let next = start + task.initial_delay();
                        Scheduled { task, next, failures: 0 }
                    })
                    .collect();
                while !stop.load(Ordering::SeqCst) {
                    let now = Instant::now();
                    for s in scheduled.iter_mut().filter(|s| s.next <= now) {
                        counters[1].fetch_add(1, Ordering::SeqCst);
                        if let Err(e) = s.task.run(&env) {
                            s.failures += 1;
                            counters[2].fetch_add(1, Ordering::SeqCst);
                            if s.failures <= 3 || s.failures % 100 == 0 {
                                log::warn!("{} failed ({} times so far): {e}", s.task.name(), s.failures);
                            }
                        }
                        s.next = (s.next + s.task.period()).max(now);
                    }
                    let wakeups = counters[0].fetch_add(1, Ordering::SeqCst) + 1;
                    if limits.max_wakeups.is_some_and(|m| wakeups >= m) {
                        break;
                    }
                    if let Some(next) = scheduled.iter().map(|s| s.next).min() {
                        std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
                    } else {
                        std::thread::park();
                    }
                }
                let _ = waker.wake();
            })
            .map_err(DaemonError::Setup)?
    };

    let mut events = mio::Events::with_capacity(8);
    notify::notify("READY=1");
    log::info!("wala-agentd {} running", crate::VERSION);
    let mut stopped_by_signal = None;
    'outer: loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(DaemonError::Setup(e));
        }
        for event in events.iter() {
            match event.token() {
                WORKER_DONE => break 'outer,
                _ => {
                    for sig in signals.read_pending() {
                        match sig {
                            libc::SIGTERM | libc::SIGINT => {
                                stopped_by_signal = Some(sig);
                                break 'outer;
                            }
                            libc::SIGHUP => {
                                log::info!(
                                    "SIGHUP: the configuration is read at start; restart to apply changes"
                                )
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    worker.thread().unpark();
    if stopped_by_signal.is_none() {
        let _ = worker.join();
    }
    let summary = Summary {
        wakeups: counters[0].load(Ordering::SeqCst),
        task_runs: counters[1].load(Ordering::SeqCst),
        task_failures: counters[2].load(Ordering::SeqCst),
        stopped_by_signal,
    };
    // Stopped by a signal, the worker is abandoned: an extension command it still runs dies with
    // the daemon. (Otherwise the worker has finished and runs nothing.)
    if stopped_by_signal.is_some() {
        let killed = crate::cmd::kill_running_groups();
        if killed > 0 {
            log::info!("killed {killed} command(s) still running");
        }
    }
    notify::notify("STOPPING=1");
    let usage = resource_usage();
    log::info!(
        "wala-agentd stopping after {} wake-ups, {} task runs ({} failed); RSS {} KiB, peak {} KiB, CPU {} ms",
        summary.wakeups,
        summary.task_runs,
        summary.task_failures,
        usage.rss_kib,
        usage.peak_rss_kib,
        usage.cpu_ms
    );
    Ok(summary)
}

/// `Pid.File`: the daemon's pid while it runs, as waagent's daemon writes it (scripts and monitors
/// read it); removed when the daemon stops, if it still names this process.
#[derive(Debug)]
pub struct PidFile {
    path: std::path::PathBuf,
    pid: String,
}

impl PidFile {
    /// Write this process's pid to `pid_file` (a configured path) under `root`. A failure is
    /// logged: the daemon runs without it.
    pub fn write(root: &HostRoot, pid_file: &std::path::Path) -> Option<Self> {
        let path = root.path(pid_file);
        let pid = std::process::id().to_string();
        match crate::files::write_atomic(&path, pid.as_bytes(), crate::files::WriteOptions::mode(0o644)) {
            Ok(()) => Some(Self { path, pid }),
            Err(e) => {
                log::warn!("Pid.File: {e}");
                None
            }
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).is_ok_and(|p| p.trim() == self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The process's own footprint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    pub cpu_ms: u64,
}

/// Current and peak RSS (`/proc/self/status`) and CPU time (user + system).
pub fn resource_usage() -> Usage {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    // SAFETY: getrusage fills the struct we pass.
    let cpu_ms = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
        ms(u.ru_utime) + ms(u.ru_stime)
    };
    Usage { rss_kib: field("VmRSS:"), peak_rss_kib: field("VmHWM:"), cpu_ms }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    struct Delayed;

    impl Task for Delayed {
        fn name(&self) -> &'static str {
            "delayed"
        }
        fn period(&self) -> Duration {
            Duration::from_millis(1)
        }
        fn initial_delay(&self) -> Duration {
            Duration::from_secs(3600)
        }
        fn run(&mut self, _: &Env<'_>) -> Result<(), TaskError> {
            Err(TaskError("ran before its initial delay".into()))
        }
    }

    #[test]
    fn a_task_waits_for_its_initial_delay() {
        let owned = Owned {
            root: HostRoot::new("/nonexistent"),
            config: Config::default(),
            runner: crate::cmd::SystemRunner,
        };
        let tasks: Vec<Box<dyn Task + Send>> =
            vec![Box::new(Delayed), Box::new(Counter { period: Duration::from_millis(1), fail: false })];
        let summary = run(owned, tasks, Limits { max_wakeups: Some(10) }).expect("run");
        assert_eq!(summary.task_failures, 0);
    }

    #[test]
    fn tasks_run_on_their_periods_and_failures_are_counted() {
        let owned = Owned {
            root: HostRoot::new("/nonexistent"),
            config: Config::default(),
            runner: crate::cmd::SystemRunner,
        };
        let tasks: Vec<Box<dyn Task + Send>> = vec![
            Box::new(Counter { period: Duration::from_millis(1), fail: false }),
            Box::new(Counter { period: Duration::from_secs(3600), fail: true }),
        ];
        let summary = run(owned, tasks, Limits { max_wakeups: Some(20) }).expect("run");
        assert_eq!(summary.wakeups, 20);
        assert_eq!(summary.task_failures, 1, "the hourly task ran once");
        assert!(summary.task_runs >= 20, "{summary:?}");
    }
}
