//! The one way wala runs external programs.
//!
//! Every command is logged (program and arguments: secrets never go in arguments, they go on stdin),
//! its output captured, its run time bounded, and a failure returned as a typed error carrying the
//! command line, the exit status and stderr. Tests swap in [`FakeRunner`] to record and script calls.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::base::secret::Secret;

/// Default limit on how long one command may run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A command to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Secret<Vec<u8>>>,
    timeout: Duration,
    cwd: Option<std::path::PathBuf>,
    /// stdout and stderr go to these files (not pipes) and only their last `output_tail` bytes
    /// are returned: a command that leaves a background child holding its output cannot make the
    /// caller wait, and a chatty one cannot fill memory.
    output_files: Option<(std::path::PathBuf, std::path::PathBuf)>,
    output_tail: usize,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            cwd: None,
            output_files: None,
            output_tail: 64 * 1024,
        }
    }

    /// The working directory.
    pub fn current_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Send stdout and stderr to these files (created or truncated, mode 0600) and return only
    /// the last `tail` bytes of each.
    pub fn output_files(
        mut self,
        stdout: impl Into<std::path::PathBuf>,
        stderr: impl Into<std::path::PathBuf>,
        tail: usize,
    ) -> Self {
        self.output_files = Some((stdout.into(), stderr.into()));
        self.output_tail = tail;
        self
    }

    pub fn get_current_dir(&self) -> Option<&std::path::Path> {
        self.cwd.as_deref()
    }

    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// The environment variables set on top of the inherited environment.
    pub fn get_envs(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Data for the command's standard input. This is where secrets go; it is never logged.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(Secret::new(data.into()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    pub fn has_stdin(&self) -> bool {
        self.stdin.is_some()
    }

    /// The stdin data, for fakes that need to check it.
    pub fn stdin_data(&self) -> Option<&[u8]> {
        self.stdin.as_ref().map(|s| s.expose().as_slice())
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program.to_string_lossy())?;
        for a in &self.args {
            write!(f, " {}", a.to_string_lossy())?;
        }
        Ok(())
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdOutput {
    /// Exit code; `None` when the command was killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A command that could not be run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({}): {}", status_text(*code), stderr.trim())]
    Failed { command: String, code: Option<i32>, stderr: String },
    #[error("`{command}` did not finish within {}s and was killed", timeout.as_secs())]
    Timeout { command: String, timeout: Duration },
}

fn status_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".into(),
    }
}

/// Runs commands. Implemented by [`SystemRunner`] and, for tests, [`FakeRunner`].
pub trait Runner: Send + Sync {
    /// Run the command and return its output whatever its exit status.
    fn output(&self, cmd: &Cmd) -> Result<CmdOutput, CmdError>;

    /// Run the command; a non-zero exit is an error carrying stderr.
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, CmdError> {
        let out = self.output(cmd)?;
        if out.success() {
            Ok(out)
        } else {
            Err(CmdError::Failed { command: cmd.to_string(), code: out.code, stderr: out.stderr_str() })
        }
    }

    /// Whether `program` can be found on `PATH` (or exists, for a path).
    fn exists(&self, program: &str) -> bool {
        find_program(program).is_some()
    }
}

/// Find a program on `PATH` (or check an explicit path).
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &std::path::Path| {
        std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    };
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| is_exec(p))
}

/// Runs real processes, each in its own process group so that a timeout kills the whole tree.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn output(&self, cmd: &Cmd) -> Result<CmdOutput, CmdError> {
        log::debug!("running: {cmd}{}", if cmd.has_stdin() { " (with stdin)" } else { "" });
        let mut command = Command::new(&cmd.program);
        command
            .args(&cmd.args)
            .stdin(if cmd.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .process_group(0);
        if let Some(dir) = &cmd.cwd {
            command.current_dir(dir);
        }
        match &cmd.output_files {
            Some((out, err)) => {
                let open = |p: &std::path::Path| {
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(p)
                        .map_err(|source| CmdError::Spawn { command: cmd.to_string(), source })
                };
                command.stdout(open(out)?).stderr(open(err)?);
            }
            None => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        // The daemon blocks the signals it reads through a signalfd; children must not inherit that.
        // SAFETY: pthread_sigmask is async-signal-safe and touches only the child's own mask.
        unsafe {
            command.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        for (k, v) in &cmd.env {
            command.env(k, v);
        }
        let mut child =
            command.spawn().map_err(|source| CmdError::Spawn { command: cmd.to_string(), source })?;
        let group = child.id() as i32;
        live_groups(|g| g.push(group));

        let stdin_writer = match (child.stdin.take(), &cmd.stdin) {
            (Some(mut pipe), Some(data)) => {
                let data = data.clone();
                Some(std::thread::spawn(move || {
                    let _ = pipe.write_all(data.expose());
                }))
            }
            _ => None,
        };
        let mut stdout_pipe = child.stdout.take();
        let mut stderr_pipe = child.stderr.take();
        let out_reader = std::thread::spawn(move || read_all(stdout_pipe.as_mut()));
        let err_reader = std::thread::spawn(move || read_all(stderr_pipe.as_mut()));

        let deadline = Instant::now() + cmd.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => break None,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(source) => return Err(CmdError::Spawn { command: cmd.to_string(), source }),
            }
        };
        let Some(status) = status else {
            // SAFETY: kill(2) with a negative pid signals the process group we created above.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
            let _ = child.wait();
            live_groups(|g| g.retain(|&x| x != group));
            return Err(CmdError::Timeout { command: cmd.to_string(), timeout: cmd.timeout });
        };
        live_groups(|g| g.retain(|&x| x != group));
        if let Some(w) = stdin_writer {
            let _ = w.join();
        }
        let (stdout, stderr) = match &cmd.output_files {
            Some((out, err)) => (read_tail(out, cmd.output_tail), read_tail(err, cmd.output_tail)),
            None => (out_reader.join().unwrap_or_default(), err_reader.join().unwrap_or_default()),
        };
        let out = CmdOutput { code: status.code(), stdout, stderr };
        if !out.success() {
            log::debug!("`{cmd}` exited with {}", status_text(out.code));
        }
        Ok(out)
    }
}

/// The process groups of the commands running now (each command leads its own group).
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn live_groups<T>(f: impl FnOnce(&mut Vec<i32>) -> T) -> T {
    f(&mut LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Kill (SIGKILL) the process group of every command still running, and return how many there
/// were. The daemon calls this when it stops, so a long extension command does not outlive it.
/// Children that left the group on purpose (`setsid`, a daemonizing extension) are not touched.
pub fn kill_running_groups() -> usize {
    live_groups(|groups| {
        for &g in groups.iter() {
            // SAFETY: kill(2) on a process group this process created.
            unsafe {
                libc::kill(-g, libc::SIGKILL);
            }
        }
        let n = groups.len();
        groups.clear();
        n
    })
}

/// The last `max` bytes of a file (empty when it cannot be read). Only those bytes are read,
/// however large the file.
pub fn read_tail(path: &std::path::Path, max: usize) -> Vec<u8> {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return Vec::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max as u64);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(max as u64).read_to_end(&mut buf);
    buf
}

fn read_all<R: Read>(pipe: Option<&mut R>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(p) = pipe {
        let _ = p.read_to_end(&mut buf);
    }
    buf
}

/// A runner for tests: records every command and answers from a script of canned outputs.
///
/// ```
/// use wala::base::cmd::{Cmd, CmdOutput, FakeRunner, Runner};
///
/// let runner = FakeRunner::new();
/// runner.respond("hostname", CmdOutput { code: Some(0), stdout: b"vm1\n".to_vec(), stderr: Vec::new() });
/// let out = runner.run(&Cmd::new("hostname").arg("--fqdn")).expect("scripted");
/// assert_eq!(out.stdout, b"vm1\n");
/// assert_eq!(runner.command_lines(), ["hostname --fqdn"]);
/// ```
#[derive(Debug, Default)]
pub struct FakeRunner {
    calls: Mutex<Vec<Cmd>>,
    responses: Mutex<Vec<(String, CmdOutput)>>,
    line_responses: Mutex<Vec<(String, CmdOutput)>>,
    missing: Mutex<Vec<String>>,
}

impl FakeRunner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answer commands whose program's file name is `program` with `output` (first match wins;
    /// unscripted commands succeed with empty output).
    pub fn respond(&self, program: &str, output: CmdOutput) -> &Self {
        self.lock_responses().push((program.to_string(), output));
        self
    }

    /// Answer commands whose display line (program and arguments) starts with `prefix` with
    /// `output`; these are matched before [`Self::respond`]'s (first match wins).
    pub fn respond_line(&self, prefix: &str, output: CmdOutput) -> &Self {
        self.line_responses.lock().unwrap_or_else(|e| e.into_inner()).push((prefix.to_string(), output));
        self
    }

    /// Make `exists(program)` false.
    pub fn without(&self, program: &str) -> &Self {
        self.missing.lock().unwrap_or_else(|e| e.into_inner()).push(program.to_string());
        self
    }

    /// The commands run so far, as display strings.
    pub fn command_lines(&self) -> Vec<String> {
        self.calls().iter().map(|c| c.to_string()).collect()
    }

    pub fn calls(&self) -> Vec<Cmd> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock_responses(&self) -> std::sync::MutexGuard<'_, Vec<(String, CmdOutput)>> {
        self.responses.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Runner for FakeRunner {
    fn output(&self, cmd: &Cmd) -> Result<CmdOutput, CmdError> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(cmd.clone());
        let name = std::path::Path::new(&cmd.program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let line = cmd.to_string();
        let by_line = self
            .line_responses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(prefix, _)| line.starts_with(prefix.as_str()))
            .map(|(_, o)| o.clone());
        let out = by_line
            .or_else(|| self.lock_responses().iter().find(|(p, _)| *p == name).map(|(_, o)| o.clone()))
            .unwrap_or(CmdOutput { code: Some(0), ..CmdOutput::default() });
        Ok(out)
    }

    fn exists(&self, program: &str) -> bool {
        !self.missing.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|p| p == program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_captures() {
        let out = SystemRunner.run(&Cmd::new("sh").args(["-c", "echo out; echo err >&2"])).expect("run");
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.stderr_str(), "err\n");
    }

    #[test]
    fn stdin_is_passed_and_not_displayed() {
        let cmd = Cmd::new("cat").stdin("s3cret");
        assert!(!cmd.to_string().contains("s3cret"));
        assert!(!format!("{cmd:?}").contains("s3cret"));
        let out = SystemRunner.run(&cmd).expect("run");
        assert_eq!(out.stdout_str(), "s3cret");
    }

    #[test]
    fn failure_carries_command_and_stderr() {
        let err = SystemRunner.run(&Cmd::new("sh").args(["-c", "echo nope >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exit code 3") && text.contains("nope") && text.contains("sh -c"), "{text}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = SystemRunner.run(&Cmd::new("/nonexistent/wala-test")).unwrap_err();
        assert!(matches!(err, CmdError::Spawn { .. }), "{err}");
    }

    #[test]
    fn timeout_kills_the_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("survived");
        let script = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let started = Instant::now();
        let err = SystemRunner
            .run(&Cmd::new("sh").args(["-c", &script]).timeout(Duration::from_millis(200)))
            .unwrap_err();
        assert!(matches!(err, CmdError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1300));
        assert!(!marker.exists(), "the background child was killed with its group");
    }

    #[test]
    fn output_files_keep_the_tail_and_a_background_child_does_not_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (out, err) = (dir.path().join("out"), dir.path().join("err"));
        let script = "seq 1 10000; echo oops >&2; (sleep 5) & echo started";
        let started = Instant::now();
        let done = SystemRunner
            .output(&Cmd::new("sh").args(["-c", script]).current_dir(dir.path()).output_files(&out, &err, 16))
            .expect("run");
        assert!(started.elapsed() < Duration::from_secs(3), "did not wait for the background child");
        let full = "9999\n10000\nstarted\n";
        assert_eq!(done.stdout_str(), &full[full.len() - 16..]);
        assert_eq!(done.stderr_str(), "oops\n");
        let pwd = SystemRunner
            .output(&Cmd::new("pwd").current_dir(dir.path()).output_files(&out, &err, 4096))
            .expect("pwd");
        let real = std::fs::canonicalize(dir.path()).expect("canon");
        assert_eq!(pwd.stdout_str().trim(), real.to_string_lossy());
    }

    #[test]
    fn fake_runner_records_and_scripts() {
        let fake = FakeRunner::new();
        fake.respond("useradd", CmdOutput { code: Some(9), ..Default::default() });
        assert!(fake.run(&Cmd::new("/usr/sbin/useradd").arg("bob")).is_err());
        assert!(fake.run(&Cmd::new("true")).is_ok());
        assert_eq!(fake.command_lines(), vec!["/usr/sbin/useradd bob", "true"]);
    }

    #[test]
    fn fake_runner_answers_by_line_before_by_program() {
        let fake = FakeRunner::new();
        fake.respond("tool", CmdOutput { code: Some(1), ..Default::default() });
        fake.respond_line(
            "tool --state",
            CmdOutput { code: Some(0), stdout: b"running\n".to_vec(), ..Default::default() },
        );
        assert_eq!(fake.run(&Cmd::new("tool").arg("--state")).expect("state").stdout_str(), "running\n");
        assert!(fake.run(&Cmd::new("tool").arg("--query")).is_err(), "other lines: by program");
        assert!(fake.run(&Cmd::new("other").arg("--state")).is_ok(), "a prefix of the whole line");
    }
}
