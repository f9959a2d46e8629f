//! `wala-agentd`'s steady state: the tasks the daemon runs, and how it runs them. No async
//! runtime. The main thread waits for signals (signalfd, through mio): SIGTERM/SIGINT stop the
//! daemon within one wake-up, and systemd is told READY and STOPPING. The tasks run on worker
//! threads ([`scheduler`]): the short periodic ones in turn on one worker, and each long-running
//! one ([`Lane::Own`]: extensions, log collection) on a thread of its own, so that a slow task
//! never delays the goal-state poll, the status heartbeat, the firewall or the monitors.
//!
//! * [`registry`]: the one list of the tasks the configuration turns on;
//! * [`state`]: the agent state the tasks share, passed to each in its [`Env`];
//! * the tasks, each in a file named `<what>_task.rs`: [`goal_state_task`] (poll and status),
//!   [`extensions_task`], [`remote_access_task`], [`firewall_task`], [`telemetry_task`],
//!   [`log_collection_task`], [`provisioning_report_task`], the OS [`monitors_task`], and
//!   [`memory`] (one malloc arena; start-up's program pages let go);
//! * [`instance`]: one daemon per machine; [`signals`]: SIGTERM, SIGINT, SIGHUP.

pub mod etp_task;
pub mod extensions_task;
pub mod firewall_task;
pub mod goal_state_task;
pub mod instance;
pub mod log_collection_task;
pub mod memory;
pub mod monitors_task;
pub mod provisioning_report_task;
pub mod registry;
pub mod remote_access_task;
pub mod scheduler;
pub mod signals;
pub mod start;
pub mod state;
pub mod status_inputs;
pub mod telemetry_task;

use std::time::Duration;

use crate::base::root::HostRoot;
use crate::documents::conf::Config;
use crate::error::Cause;
use crate::host::Host;

pub use registry::{all_tasks, standard_tasks, Overrides};
pub use scheduler::run;
pub use state::State;

/// What tasks work with: the host, the configuration, the command runner, and the agent state
/// they share.
#[derive(Debug)]
pub struct Env<'a> {
    pub host: Host<'a>,
    pub state: &'a State,
}

/// A task run failed; the scheduler logs it and tries again next period. It holds the typed error
/// of the module that failed ([`Cause`]); `?` on any module's error makes one.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TaskError(pub Box<Cause>);

impl<E: Into<Cause>> From<E> for TaskError {
    fn from(e: E) -> Self {
        Self(Box::new(e.into()))
    }
}

impl TaskError {
    /// Short text for the log and the status report.
    pub fn reason(&self) -> String {
        self.0.reason()
    }
}

/// Where a task runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lane {
    /// On the periodic worker, in turn with the other short tasks: a run must not take long
    /// (a few network requests or commands, each bounded by its timeout).
    #[default]
    Periodic,
    /// On a worker thread of its own: for work that can take minutes or hours (extension
    /// commands and their waits, log collection), which must not delay the periodic tasks.
    Own,
}

/// A periodic piece of work. A new task lives in `daemon/<what>_task.rs` and is listed in
/// [`registry`] (docs/architecture.md, "Recipe: a new daemon task").
///
/// ```
/// use std::time::Duration;
/// use wala::daemon::{Env, Lane, Task, TaskError};
/// use wala::error::Cause;
///
/// /// Counts the files in `Lib.Dir` every ten minutes, on a thread of its own.
/// struct CountFiles {
///     seen: usize,
/// }
///
/// impl Task for CountFiles {
///     fn name(&self) -> &'static str {
///         "count-files"
///     }
///     fn period(&self) -> Duration {
///         Duration::from_secs(600)
///     }
///     fn lane(&self) -> Lane {
///         Lane::Own
///     }
///     fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
///         let dir = env.host.root.path(env.host.config.lib_dir.as_path());
///         let entries = std::fs::read_dir(&dir).map_err(|e| Cause::io(format!("list {}", dir.display()), e))?;
///         self.seen = entries.count();
///         Ok(())
///     }
/// }
/// ```
pub trait Task {
    fn name(&self) -> &'static str;
    fn period(&self) -> Duration;
    /// How long after start the first run waits (default: none).
    fn initial_delay(&self) -> Duration {
        Duration::ZERO
    }
    /// Which worker runs it (default: the periodic one).
    fn lane(&self) -> Lane {
        Lane::Periodic
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError>;
    /// Run because another task woke it ([`State::kick`]) before it was due (default: a run as
    /// any other). The goal-state task only reports the status then, and polls on its schedule.
    fn woken(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        self.run(env)
    }
}

/// The daemon could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot set up the event loop: {0}")]
    Setup(#[source] std::io::Error),
}

/// When the daemon stops on its own (tests and benchmarks); `None` runs until a signal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Stop after this many wake-ups of the periodic worker, once work handed from one task to
    /// another (an extensions goal state) is done.
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

/// What the workers own: the host root, the configuration and the command runner.
#[derive(Debug)]
pub struct Owned {
    pub root: HostRoot,
    pub config: Config,
    pub runner: crate::base::cmd::SystemRunner,
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
        match crate::base::files::write_atomic(
            &path,
            pid.as_bytes(),
            crate::base::files::WriteOptions::mode(0o644),
        ) {
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
