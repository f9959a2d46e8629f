//! How the daemon runs its tasks. The main thread only waits for signals (signalfd, through
//! mio), so a stop request is answered at once whatever the tasks are doing. The tasks run on
//! worker threads:
//!
//! * the periodic worker (`tasks`) runs the [`Lane::Periodic`] tasks in turn (every task once at
//!   start or after its initial delay, then every period) and sleeps until the next one is due
//!   (`park_timeout`: no polling) or a task is woken ([`State::kick`]: the extensions task wakes
//!   the goal-state task when it is done, so the status reports the result at once);
//! * each [`Lane::Own`] task (extensions, log collection) has a worker thread of its own, which
//!   runs it every period and whenever another task wakes it ([`State::kick`]), and otherwise
//!   sleeps. However long such a run takes (an extension command up to its timeout, the 90-minute
//!   dependency wait, the cloud-init wait, a log collection), the periodic tasks keep their
//!   schedule.
//!
//! A failing task is logged (its first three failures, then every hundredth) and retried next
//! period. On SIGTERM the workers are abandoned mid-run, which is safe because every task's
//! writes are atomic and idempotent; the process group of any command still running is killed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::daemon::signals::SignalFd;
use crate::daemon::{DaemonError, Env, Lane, Limits, Owned, State, Summary, Task};
use crate::host::Host;

const SIGNAL: mio::Token = mio::Token(0);
const WORKER_DONE: mio::Token = mio::Token(1);

#[derive(Debug, Default)]
struct Counters {
    wakeups: AtomicU64,
    runs: AtomicU64,
    failures: AtomicU64,
}

/// What every worker shares.
struct Shared {
    owned: Owned,
    state: State,
    stop: AtomicBool,
    counters: Counters,
}

impl Shared {
    fn env(&self) -> Env<'_> {
        Env {
            host: Host { root: &self.owned.root, config: &self.owned.config, runner: &self.owned.runner },
            state: &self.state,
        }
    }
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

struct Scheduled {
    task: Box<dyn Task + Send>,
    next: Instant,
    failures: u64,
}

impl Scheduled {
    fn new(task: Box<dyn Task + Send>, start: Instant) -> Self {
        let next = start + task.initial_delay();
        Self { task, next, failures: 0 }
    }

    /// Run the task: a scheduled run when `due`, else the run of a task woken early.
    fn run(&mut self, shared: &Shared, due: bool) {
        shared.counters.runs.fetch_add(1, Ordering::SeqCst);
        let env = shared.env();
        let result = if due { self.task.run(&env) } else { self.task.woken(&env) };
        if let Err(e) = result {
            self.failures += 1;
            shared.counters.failures.fetch_add(1, Ordering::SeqCst);
            if self.failures <= 3 || self.failures % 100 == 0 {
                log::warn!("{} failed ({} times so far): {e}", self.task.name(), self.failures);
            }
        }
    }
}

/// Run `tasks` until SIGTERM/SIGINT (read from `signals`, which the caller creates before it
/// writes the pid file, so that a signal sent as soon as the pid file names the daemon is not
/// lost) or the limits; see the module comment.
pub fn run(
    owned: Owned,
    tasks: Vec<Box<dyn Task + Send>>,
    limits: Limits,
    signals: SignalFd,
) -> Result<Summary, DaemonError> {
    let mut poll = mio::Poll::new().map_err(DaemonError::Setup)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&signals);
    poll.registry()
        .register(&mut mio::unix::SourceFd(&fd), SIGNAL, mio::Interest::READABLE)
        .map_err(DaemonError::Setup)?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WORKER_DONE).map_err(DaemonError::Setup)?);
    let shared = Arc::new(Shared {
        owned,
        state: State::default(),
        stop: AtomicBool::new(false),
        counters: Counters::default(),
    });

    let (periodic, own): (Vec<_>, Vec<_>) = tasks.into_iter().partition(|t| t.lane() == Lane::Periodic);
    super::memory::one_malloc_arena();
    let start = Instant::now();
    for task in own {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(task.name().into())
            .spawn(move || own_worker(&shared, Scheduled::new(task, start)))
            .map_err(DaemonError::Setup)?;
    }
    let worker = {
        let (shared, waker) = (shared.clone(), waker.clone());
        std::thread::Builder::new()
            .name("tasks".into())
            .spawn(move || {
                let scheduled = periodic.into_iter().map(|t| Scheduled::new(t, start)).collect();
                periodic_worker(&shared, scheduled, limits);
                let _ = waker.wake();
            })
            .map_err(DaemonError::Setup)?
    };

    let mut events = mio::Events::with_capacity(8);
    crate::base::notify::notify("READY=1");
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
    shared.stop.store(true, Ordering::SeqCst);
    worker.thread().unpark();
    shared.state.unpark_all();
    if stopped_by_signal.is_none() {
        let _ = worker.join();
    }
    let summary = Summary {
        wakeups: shared.counters.wakeups.load(Ordering::SeqCst),
        task_runs: shared.counters.runs.load(Ordering::SeqCst),
        task_failures: shared.counters.failures.load(Ordering::SeqCst),
        stopped_by_signal,
    };
    // Stopped by a signal, the workers are abandoned: an extension command one still runs dies
    // with the daemon.
    if stopped_by_signal.is_some() {
        let killed = crate::base::cmd::kill_running_groups();
        if killed > 0 {
            log::info!("killed {killed} command(s) still running");
        }
    }
    crate::base::notify::notify("STOPPING=1");
    let usage = super::resource_usage();
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

/// The periodic worker: due (or kicked) tasks in turn, then sleep until the next is due or a
/// task is kicked. With a wake-up limit it stops once the limit is reached and the work handed
/// off until then is processed and reported.
fn periodic_worker(shared: &Shared, mut scheduled: Vec<Scheduled>, limits: Limits) {
    for s in &scheduled {
        shared.state.register_worker(s.task.name(), std::thread::current());
    }
    while !shared.stopping() {
        let now = Instant::now();
        for s in &mut scheduled {
            let due = s.next <= now;
            // A kicked task runs now; its schedule stays as it was.
            if shared.state.take_kick(s.task.name()) || due {
                s.run(shared, due);
            }
            if due {
                s.next = (s.next + s.task.period()).max(now);
            }
        }
        let wakeups = shared.counters.wakeups.fetch_add(1, Ordering::SeqCst) + 1;
        // At the limit, the work handed off so far is let finish and be reported, and nothing
        // new is handed off (State::drain).
        if limits.max_wakeups.is_some_and(|m| wakeups >= m) {
            shared.state.drain();
            if !shared.state.outstanding() {
                break;
            }
        }
        match scheduled.iter().map(|s| s.next).min() {
            Some(next) => std::thread::park_timeout(next.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
}

/// A worker of one [`Lane::Own`] task: it runs when due or woken ([`State::kick`]).
fn own_worker(shared: &Shared, mut s: Scheduled) {
    let name = s.task.name();
    shared.state.register_worker(name, std::thread::current());
    while !shared.stopping() {
        let now = Instant::now();
        let due = s.next <= now;
        if shared.state.take_kick(name) || due {
            s.run(shared, due);
        }
        if due {
            s.next = (s.next + s.task.period()).max(now);
        }
        if shared.stopping() {
            break;
        }
        std::thread::park_timeout(s.next.saturating_duration_since(Instant::now()).max(Duration::ZERO));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::root::HostRoot;
    use crate::daemon::TaskError;
    use crate::documents::conf::Config;
    use std::sync::Mutex;

    fn owned() -> Owned {
        Owned {
            root: HostRoot::new("/nonexistent"),
            config: Config::default(),
            runner: crate::base::cmd::SystemRunner,
        }
    }

    fn signals() -> SignalFd {
        SignalFd::new().expect("signalfd")
    }

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
                Err(TaskError::from("always"))
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
            Err(TaskError::from("ran before its initial delay"))
        }
    }

    #[test]
    fn a_task_waits_for_its_initial_delay() {
        let tasks: Vec<Box<dyn Task + Send>> =
            vec![Box::new(Delayed), Box::new(Counter { period: Duration::from_millis(1), fail: false })];
        let summary = run(owned(), tasks, Limits { max_wakeups: Some(10) }, signals()).expect("run");
        assert_eq!(summary.task_failures, 0);
    }

    #[test]
    fn tasks_run_on_their_periods_and_failures_are_counted() {
        let tasks: Vec<Box<dyn Task + Send>> = vec![
            Box::new(Counter { period: Duration::from_millis(1), fail: false }),
            Box::new(Counter { period: Duration::from_secs(3600), fail: true }),
        ];
        let summary = run(owned(), tasks, Limits { max_wakeups: Some(20) }, signals()).expect("run");
        assert_eq!(summary.wakeups, 20);
        assert_eq!(summary.task_failures, 1, "the hourly task ran once");
        assert!(summary.task_runs >= 20, "{summary:?}");
    }

    /// A long-running task: its first run blocks for `block`, and says when it started.
    struct Blocker {
        block: Duration,
        started: Arc<Mutex<Option<Instant>>>,
    }

    impl Task for Blocker {
        fn name(&self) -> &'static str {
            "blocker"
        }
        fn period(&self) -> Duration {
            Duration::from_secs(3600)
        }
        fn lane(&self) -> Lane {
            Lane::Own
        }
        fn run(&mut self, _: &Env<'_>) -> Result<(), TaskError> {
            *self.started.lock().expect("lock") = Some(Instant::now());
            std::thread::sleep(self.block);
            Ok(())
        }
    }

    /// A short periodic task that records when it runs.
    struct Ticker {
        period: Duration,
        runs: Arc<Mutex<Vec<Instant>>>,
    }

    impl Task for Ticker {
        fn name(&self) -> &'static str {
            "ticker"
        }
        fn period(&self) -> Duration {
            self.period
        }
        fn run(&mut self, _: &Env<'_>) -> Result<(), TaskError> {
            self.runs.lock().expect("lock").push(Instant::now());
            Ok(())
        }
    }

    /// Issue #19 item 5: a task that blocks for sixty of another's periods does not delay it.
    /// The ticker (period 50 ms) is listed after the blocker, as a periodic task listed after the
    /// extensions was; on one worker it would wait the blocker's 3 s.
    #[test]
    fn a_blocking_task_does_not_delay_a_short_periodic_one() {
        let period = Duration::from_millis(50);
        let block = Duration::from_secs(3);
        let started = Arc::new(Mutex::new(None));
        let runs = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<Box<dyn Task + Send>> = vec![
            Box::new(Blocker { block, started: started.clone() }),
            Box::new(Ticker { period, runs: runs.clone() }),
        ];
        let begun = Instant::now();
        // 20 wake-ups of the periodic worker: about a second, well inside the blocker's run.
        let summary = run(owned(), tasks, Limits { max_wakeups: Some(20) }, signals()).expect("run");
        let elapsed = begun.elapsed();
        let blocker_started = started.lock().expect("lock").expect("the blocking task ran");
        let runs = runs.lock().expect("lock").clone();
        assert!(elapsed < block, "the daemon stopped after {elapsed:?}, not after the blocker");
        assert!(runs.len() >= 20, "{} runs: {summary:?}", runs.len());
        let during = runs.iter().filter(|t| **t > blocker_started && **t < blocker_started + block).count();
        assert!(during >= 15, "only {during} of {} runs while the other task blocked", runs.len());
        // On time: no gap much beyond the period (generous for a loaded machine, far below 3 s).
        let worst = runs.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
        assert!(worst < Duration::from_millis(750), "a run came {worst:?} after the one before");
    }

    /// A kick runs an own-lane task at once, long before its period.
    #[test]
    fn a_kick_runs_an_own_lane_task_before_its_period() {
        let started = Arc::new(Mutex::new(None));
        let state_seen = Arc::new(Mutex::new(Vec::new()));
        struct Kicker(Arc<Mutex<Vec<Instant>>>);
        impl Task for Kicker {
            fn name(&self) -> &'static str {
                "kicker"
            }
            fn period(&self) -> Duration {
                Duration::from_millis(20)
            }
            fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
                self.0.lock().expect("lock").push(Instant::now());
                env.state.kick("blocker");
                Ok(())
            }
        }
        let tasks: Vec<Box<dyn Task + Send>> = vec![
            Box::new(Blocker { block: Duration::ZERO, started: started.clone() }),
            Box::new(Kicker(state_seen.clone())),
        ];
        run(owned(), tasks, Limits { max_wakeups: Some(25) }, signals()).expect("run");
        let first_kick = state_seen.lock().expect("lock")[0];
        let last_run = started.lock().expect("lock").expect("ran");
        // The hourly task ran at start and again after kicks, the last one well after the first.
        assert!(last_run > first_kick + Duration::from_millis(100), "{:?}", last_run - first_kick);
    }
}
