//! The boot timeline: when each provisioning stage, step and wait began and ended.
//!
//! Each `wala-provision` stage process appends one JSON object per line to
//! [`FILE`] (`/run/wala/boot-timeline.jsonl`) as each span ends; `wala-agentd boot-report` reads
//! it back. Times are `CLOCK_BOOTTIME`, in seconds since the kernel started, so the stages of one
//! boot (the initramfs one included) share one axis with systemd's own monotonic timestamps.
//!
//! `/run` belongs to the running system, like `/sys`: it is resolved through
//! [`HostRoot::kernel`]. From the initramfs (`--root /sysroot`) that is the initramfs's own
//! `/run`, which systemd moves onto the real root at switch-root; so the records of the initramfs
//! stage and of the real-root stages end up in the same file. Test roots that fake `/sys` get
//! their own `run/wala/` under the root.
//!
//! Each record is one `write(2)` on a file opened with `O_APPEND`, so the stages that run side by
//! side (the resource disk beside the network stage) never interleave inside a line. Recording
//! never fails a step: a file that cannot be written is a single warning. After a network stage
//! that provisioned (Ready or ProvisioningFailed reported), a copy is kept in `Lib.Dir` as
//! [`SAVED_FILE`], so the report of the last provisioning boot survives a reboot.
//!
//! Record format (see docs/boot.md, "Boot timeline"):
//! `{"stage":"local","kind":"step","name":"user","start":2.481337,"end":2.502114,"outcome":"ok","pid":412}`
//! with `kind` one of `stage` (the whole stage process), `step` (wala's own work) and `wait`
//! (waiting on something outside wala: a device, udev, the WireServer), and `outcome` one of `ok`,
//! `failed` and `skipped`. Stage records also carry `boot_id` when the kernel exposes it. Names are
//! fixed strings from the code: no record ever holds data from the OVF or the platform.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::base::files::{self, FileError, WriteOptions};
use crate::base::root::HostRoot;

/// This boot's timeline (under [`HostRoot::kernel`]).
pub const FILE: &str = "/run/wala/boot-timeline.jsonl";
/// The copy of the last provisioning boot's timeline, in `Lib.Dir`.
pub const SAVED_FILE: &str = "wala-boot-timeline.jsonl";

/// What a record spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A whole stage process, from its start to its end.
    Stage,
    /// A provisioning step: wala's own work.
    Step,
    /// Waiting on something outside wala: a device, udev, the WireServer.
    Wait,
}

/// How a span ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
    Skipped,
}

impl Outcome {
    /// `ok`, `failed` or `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub stage: String,
    pub kind: Kind,
    pub name: String,
    /// Seconds since the kernel started (`CLOCK_BOOTTIME`).
    pub start: f64,
    pub end: f64,
    pub outcome: Outcome,
    pub pid: u32,
    /// The kernel's boot id (stage records only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// Seconds since the kernel started (`CLOCK_BOOTTIME`, which counts suspended time too), to the
/// microsecond. 0 if the clock cannot be read.
pub fn now() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec that clock_gettime only writes to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    micros(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

fn micros(secs: f64) -> f64 {
    (secs * 1e6).round() / 1e6
}

/// Where this boot's timeline is, for `root`.
pub fn path(root: &HostRoot) -> PathBuf {
    root.kernel().path(FILE)
}

/// Where the copy of the last provisioning boot's timeline is kept.
pub fn saved_path(root: &HostRoot, lib_dir: &Path) -> PathBuf {
    root.path(lib_dir.join(SAVED_FILE))
}

/// Appends the records of one stage process to a timeline file.
#[derive(Debug, Clone)]
pub struct Recorder {
    path: PathBuf,
    stage: String,
    pid: u32,
}

/// Whether a failed write was already reported (once per process is enough).
static WARNED: AtomicBool = AtomicBool::new(false);

impl Recorder {
    pub fn new(path: impl Into<PathBuf>, stage: impl Into<String>) -> Self {
        Self { path: path.into(), stage: stage.into(), pid: std::process::id() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// Append a span of this recorder's stage; a failure is a warning, never an error.
    pub fn record(&self, kind: Kind, name: &str, start: f64, end: f64, outcome: Outcome) {
        let record = Record {
            stage: self.stage.clone(),
            kind,
            name: name.to_string(),
            start,
            end,
            outcome,
            pid: self.pid,
            boot_id: None,
        };
        self.append_or_warn(&record);
    }

    fn append_or_warn(&self, record: &Record) {
        if let Err(e) = self.append(record) {
            if !WARNED.swap(true, Ordering::Relaxed) {
                log::warn!("the boot timeline is not recorded: {e}");
            }
        }
    }

    /// Append one record as one line, in a single `write(2)` on an `O_APPEND` file.
    pub fn append(&self, record: &Record) -> Result<(), FileError> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut line = serde_json::to_vec(record)
            .map_err(|e| FileError::new("serialize a record for", &self.path, e.into()))?;
        line.push(b'\n');
        if let Some(dir) = self.path.parent() {
            files::ensure_dir(dir, 0o755)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)
            .map_err(|e| FileError::new("open", &self.path, e))?;
        match file.write(&line) {
            Ok(n) if n == line.len() => Ok(()),
            Ok(n) => Err(FileError::new(
                "append to",
                &self.path,
                std::io::Error::other(format!("short write ({n} of {} bytes)", line.len())),
            )),
            Err(e) => Err(FileError::new("append to", &self.path, e)),
        }
    }
}

thread_local! {
    /// The recorder of the stage this thread runs, if any. A stage's steps run on the thread that
    /// began it, or on a thread it started that [`Attached::enter`]ed the stage (tests that run
    /// side by side on threads of one process do not see each other's stages).
    static CURRENT: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// The stage this thread records (if any), for a thread the stage starts: its steps go to the same
/// timeline once it has called [`Attached::enter`].
#[derive(Debug, Clone)]
pub struct Attached(Option<Recorder>);

/// The stage this thread records, to hand to another thread.
pub fn attached() -> Attached {
    Attached(current())
}

impl Attached {
    /// Record this thread's spans in the stage.
    pub fn enter(&self) {
        set_current(self.0.clone());
    }
}

fn current() -> Option<Recorder> {
    CURRENT.with(|c| c.borrow().clone())
}

fn set_current(recorder: Option<Recorder>) {
    CURRENT.with(|c| *c.borrow_mut() = recorder);
}

/// Record a span of the current stage (nothing when no stage is being recorded).
pub fn record(kind: Kind, name: &str, start: f64, end: f64, outcome: Outcome) {
    if let Some(r) = current() {
        r.record(kind, name, start, end, outcome);
    }
}

/// Record that a step of the current stage was skipped (a zero-length span, now).
pub fn skipped(kind: Kind, name: &str) {
    let t = now();
    record(kind, name, t, t, Outcome::Skipped);
}

/// Run `f` as a span of the current stage; `outcome` judges its result.
pub fn span_by<R>(kind: Kind, name: &str, f: impl FnOnce() -> R, outcome: impl FnOnce(&R) -> Outcome) -> R {
    let start = now();
    let result = f();
    record(kind, name, start, now(), outcome(&result));
    result
}

/// Run `f` as a span of the current stage: `ok` when it returns `Ok`, else `failed`.
pub fn span<T, E>(kind: Kind, name: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    span_by(kind, name, f, |r| if r.is_ok() { Outcome::Ok } else { Outcome::Failed })
}

/// A provisioning step: [`span`] of kind `step`.
pub fn step<T, E>(name: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    span(Kind::Step, name, f)
}

/// A wait on something outside wala: [`span`] of kind `wait`.
pub fn wait<T, E>(name: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    span(Kind::Wait, name, f)
}

/// A stage process being recorded: from [`Stage::begin`] the spans of this process go to the
/// timeline, and [`Stage::end`] writes the stage's own record.
#[derive(Debug)]
pub struct Stage {
    recorder: Recorder,
    start: f64,
    boot_id: Option<String>,
}

impl Stage {
    /// Start recording stage `name` (`local`, `resource-disk`, `host-keys`, `network`) for `root`.
    /// The local stage run from the initramfs is recorded as `local-initrd`.
    ///
    /// After [`count_start_up`], the first stage the process begins also records its `start-up`
    /// and `set-up` steps, from the moment the process was made (systemd's fork, from
    /// `/proc/self/stat`); the stage's own span then starts there too.
    pub fn begin(root: &HostRoot, name: &str) -> Stage {
        let mut start = now();
        let runtime = root.kernel();
        let in_initrd = !root.is_live() && runtime.path("/etc/initrd-release").exists();
        let stage = if in_initrd { format!("{name}-initrd") } else { name.to_string() };
        let recorder = Recorder::new(path(root), stage);
        set_current(Some(recorder.clone()));
        let main_at = f64::from_bits(MAIN_AT.swap(0, Ordering::Relaxed));
        if main_at > 0.0 {
            if let Some(made) = process_started().filter(|&t| t > 0.0 && t <= main_at) {
                recorder.record(Kind::Step, "start-up", made, main_at, Outcome::Ok);
                recorder.record(Kind::Step, "set-up", main_at, start, Outcome::Ok);
                start = made;
            }
        }
        let boot_id = std::fs::read_to_string(runtime.path("/proc/sys/kernel/random/boot_id"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s.len() <= 64);
        Stage { recorder, start, boot_id }
    }

    /// The stage's name as recorded.
    pub fn name(&self) -> &str {
        self.recorder.stage()
    }

    /// Write the stage's record and stop recording.
    pub fn end(self, outcome: Outcome) {
        set_current(None);
        let record = Record {
            stage: self.recorder.stage.clone(),
            kind: Kind::Stage,
            name: self.recorder.stage.clone(),
            start: self.start,
            end: now(),
            outcome,
            pid: self.recorder.pid,
            boot_id: self.boot_id,
        };
        self.recorder.append_or_warn(&record);
    }
}

/// When `main` began ([`count_start_up`]), as `f64` bits; 0 when the next stage does not count
/// the process's start.
static MAIN_AT: AtomicU64 = AtomicU64::new(0);

/// Called first thing in a binary's `main`: the next [`Stage::begin`] of this process then
/// records the process's own start as two steps, `start-up` (from the fork to `main`: systemd's
/// set-up of the process, loading the binary and its libraries) and `set-up` (from `main` to the
/// stage: arguments, log file, configuration). A library caller's stages start when they begin.
pub fn count_start_up() {
    MAIN_AT.store(now().to_bits(), Ordering::Relaxed);
}

/// Whether this boot's timeline already holds a record of this process (its pid): a program that
/// another one replaced (`exec`) after recording stages.
pub fn recorded_by_this_process(root: &HostRoot) -> bool {
    let pid = std::process::id();
    std::fs::read_to_string(path(root)).is_ok_and(|text| {
        text.lines().filter_map(|l| serde_json::from_str::<Record>(l).ok()).any(|r| r.pid == pid)
    })
}

/// When this process was made, in seconds since the kernel started (the `starttime` field of
/// `/proc/self/stat`, in clock ticks, so to 10 ms), if the kernel says.
pub fn process_started() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_starttime(&stat, clock_ticks()?)
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

/// `starttime` (field 22) of a `/proc/PID/stat` line, in seconds. The command name (field 2) is
/// in parentheses and may itself hold spaces and parentheses, so fields are counted from the last
/// `)`.
fn parse_starttime(stat: &str, ticks_per_second: f64) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so starttime (22) is the 20th.
    let ticks: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    Some(micros(ticks as f64 / ticks_per_second))
}

/// Keep a copy of this boot's timeline in `Lib.Dir` ([`SAVED_FILE`], 0600), replacing the
/// previous one. A failure is a warning.
pub fn keep_copy(root: &HostRoot, lib_dir: &Path) {
    let from = path(root);
    let to = saved_path(root, lib_dir);
    let copied = std::fs::read(&from)
        .map_err(|e| FileError::new("read", &from, e))
        .and_then(|bytes| files::write_atomic(&to, &bytes, WriteOptions::mode(0o600)));
    match copied {
        Ok(()) => log::debug!("boot timeline kept in {}", to.display()),
        Err(e) => log::warn!("the boot timeline was not kept: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_records(path: &Path) -> Vec<Record> {
        std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a whole record: {l:?}: {e}")))
            .collect()
    }

    #[test]
    fn process_start_is_read_from_proc_stat_whatever_the_command_name() {
        let line = "4242 (wala (x) y) S 1 4242 4242 0 -1 4194560 120 0 0 0 1 2 0 0 20 0 1 0 \
                    1234 2453504 300 18446744073709551615";
        assert_eq!(parse_starttime(line, 100.0), Some(12.34));
        assert_eq!(parse_starttime("4242 (wala) S 1 2", 100.0), None);
        assert_eq!(parse_starttime("no name here", 100.0), None);
        // This process: made before now, and not before the kernel started.
        let made = process_started().expect("this kernel has /proc/self/stat");
        assert!(made >= 0.0 && made <= now() + 0.01, "made at {made}, now {}", now());
    }

    #[test]
    fn the_clock_is_time_since_boot() {
        let t = now();
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .expect("uptime")
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .expect("parse uptime");
        // At least the uptime (which a container may count from its own start), and not the
        // wall clock.
        assert!(t > 0.0 && t + 1.0 >= uptime && t < 1e8, "boottime {t} against uptime {uptime}");
        assert!(now() >= t);
    }

    #[test]
    fn a_process_knows_whether_it_already_recorded_a_stage() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sys")).expect("mkdir");
        let root = HostRoot::new(dir.path());
        assert!(!recorded_by_this_process(&root), "no timeline yet");
        let mut other = Recorder::new(path(&root), "local");
        other.pid = std::process::id() + 1;
        other.record(Kind::Step, "user", 1.0, 2.0, Outcome::Ok);
        assert!(!recorded_by_this_process(&root), "another process's record");
        Recorder::new(path(&root), "local").record(Kind::Step, "user", 2.0, 3.0, Outcome::Ok);
        assert!(recorded_by_this_process(&root));
    }

    #[test]
    fn concurrent_appends_from_threads_are_whole_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/wala/boot-timeline.jsonl");
        // A long name makes each line several hundred bytes.
        let long = "x".repeat(300);
        std::thread::scope(|s| {
            for t in 0..8 {
                let path = &path;
                let long = &long;
                s.spawn(move || {
                    let r = Recorder::new(path, format!("stage{t}"));
                    for i in 0..200 {
                        r.record(
                            Kind::Step,
                            &format!("{long}-{i}"),
                            f64::from(i),
                            f64::from(i) + 0.5,
                            Outcome::Ok,
                        );
                    }
                });
            }
        });
        let records = read_records(&path);
        assert_eq!(records.len(), 8 * 200);
        for t in 0..8 {
            let stage = format!("stage{t}");
            let names: Vec<String> =
                records.iter().filter(|r| r.stage == stage).map(|r| r.name.clone()).collect();
            let expected: Vec<String> = (0..200).map(|i| format!("{long}-{i}")).collect();
            assert_eq!(names, expected, "{stage}: every record, in order");
        }
        let mode = files::mode_and_owner(&path).expect("stat").0;
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn spans_record_stage_step_outcome_and_times_and_keep_the_result() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sys/class")).expect("mkdir");
        let root = HostRoot::new(dir.path());
        let stage = Stage::begin(&root, "local");
        assert_eq!(stage.name(), "local");
        let ok: Result<u32, String> = step("user", || Ok(7));
        assert_eq!(ok, Ok(7));
        let failed: Result<(), String> = wait("dvd", || Err("no DVD".into()));
        assert_eq!(failed, Err("no DVD".into()));
        skipped(Kind::Step, "resource-disk");
        stage.end(Outcome::Ok);
        // No stage: nothing is recorded.
        let _: Result<(), ()> = step("after", || Ok(()));

        let records = read_records(&dir.path().join("run/wala/boot-timeline.jsonl"));
        let summary: Vec<(String, Kind, &str)> =
            records.iter().map(|r| (r.name.clone(), r.kind, r.outcome.as_str())).collect();
        assert_eq!(
            summary,
            [
                ("user".to_string(), Kind::Step, "ok"),
                ("dvd".to_string(), Kind::Wait, "failed"),
                ("resource-disk".to_string(), Kind::Step, "skipped"),
                ("local".to_string(), Kind::Stage, "ok"),
            ]
        );
        assert!(records.iter().all(|r| r.stage == "local" && r.pid == std::process::id()));
        assert!(records.iter().all(|r| r.start > 0.0 && r.end >= r.start));
        let stage = &records[3];
        assert!(records[..3].iter().all(|r| r.start >= stage.start && r.end <= stage.end));
    }

    #[test]
    fn a_timeline_that_cannot_be_written_never_fails_the_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file where the directory should be.
        std::fs::write(dir.path().join("run"), "").expect("write");
        let r = Recorder::new(dir.path().join("run/wala/boot-timeline.jsonl"), "local");
        r.record(Kind::Step, "user", 1.0, 2.0, Outcome::Ok);
        assert!(r
            .append(&Record {
                stage: "local".into(),
                kind: Kind::Step,
                name: "user".into(),
                start: 1.0,
                end: 2.0,
                outcome: Outcome::Ok,
                pid: 1,
                boot_id: None,
            })
            .is_err());
    }

    #[test]
    fn the_initramfs_stage_writes_to_its_own_run_and_is_named_for_it() {
        // /sysroot as the initramfs sees it: an empty /sys, so /run is the initramfs's (here, as
        // the live root cannot be used in a test, only the path is checked).
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sys")).expect("mkdir");
        let root = HostRoot::new(dir.path());
        assert_eq!(path(&root), PathBuf::from(FILE));
        // A test root with a fake /sys keeps everything under it.
        std::fs::create_dir_all(dir.path().join("sys/class")).expect("mkdir");
        assert_eq!(path(&root), dir.path().join("run/wala/boot-timeline.jsonl"));
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(dir.path().join("etc/initrd-release"), "").expect("write");
        let stage = Stage::begin(&root, "local");
        assert_eq!(stage.name(), "local-initrd");
        stage.end(Outcome::Skipped);
    }

    #[test]
    fn the_copy_in_lib_dir_is_private_and_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sys/class")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("var/lib/waagent")).expect("mkdir");
        let root = HostRoot::new(dir.path());
        Recorder::new(path(&root), "network").record(Kind::Wait, "report-ready", 1.0, 2.0, Outcome::Ok);
        keep_copy(&root, Path::new("/var/lib/waagent"));
        let saved = saved_path(&root, Path::new("/var/lib/waagent"));
        assert_eq!(std::fs::read(&saved).expect("saved"), std::fs::read(path(&root)).expect("live"));
        assert_eq!(files::mode_and_owner(&saved).expect("stat").0 & 0o777, 0o600);
    }
}
