//! Running a handler's commands as waagent does (wire.md §10.4): the manifest's command line,
//! resolved inside the handler's directory and run by `/bin/sh`, in that directory, in its own
//! process group (killed whole at the timeout, and when the daemon stops:
//! [`crate::base::cmd::kill_running_groups`]), with waagent's environment variables under the agent's
//! own environment (which wins on a clash, proxies included). stdout and stderr go to files in
//! the handler directory and only their last [`OUTPUT_TAIL`] bytes are ever read, so an extension
//! that leaves a background child holding them does not hold the agent up, and one that writes
//! gigabytes does not fill its memory.
//!
//! # What the shell sees
//!
//! waagent runs `os.path.join(base_dir, cmd.lstrip('/'))` with `shell=True`, so the handler's
//! directory, whose name is made of the handler name and version the platform sent, is parsed by
//! the shell. wala runs
//!
//! ```text
//! /bin/sh -c '"$0"/<manifest command>' <base dir>
//! ```
//!
//! * The base directory is an argument (`$0`), never part of the script: whatever `Lib.Dir` or
//!   the (already checked, [`names`](crate::documents::extensions::names)) name and version contain, the shell expands it as
//!   one quoted word and never parses it. Nothing else from the platform reaches the line; settings
//!   go to files and the sequence number, version and extension name to environment variables.
//! * The manifest command (`bin/custom-script-shim enable`, `scripts/install.sh -install`,
//!   `extension_shim.sh -c ./vmaccess.py -install`) is the extension publisher's own command line
//!   from the package the agent is about to run anyway: letting the shell parse it gives the
//!   package nothing its own scripts do not have, and keeps every manifest that works with waagent
//!   working (arguments, quoting, redirections). Its leading `/`s are dropped and it is prefixed
//!   with `"$0"/`, so its first word is resolved inside the handler directory exactly as waagent
//!   resolves it (`sh x.sh` is `<base>/sh`, which does not exist, as with waagent).
//! * `$0` also names the shell in its own error messages, e.g. `<base>: 1: <base>/x: not found`.

use std::io::Write;
use std::time::Duration;

use crate::base::cmd::{read_tail, CmdError, Runner};
use crate::extensions::cgroups::{CgroupPolicy, Limits};
use crate::extensions::handler::HandlerDir;

/// The operations of a handler, with waagent's timeouts and error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Install,
    Enable,
    Disable,
    Update,
    Uninstall,
}

/// A command that ran past its timeout (any operation).
pub const CODE_TIMEOUT: i64 = 1011;

/// How much of each of stdout and stderr is read back (the end of it), for the status and the
/// log: a fixed 4 KiB, whatever the command wrote, whether it finished or was killed.
pub const OUTPUT_TAIL: usize = 4 * 1024;

/// The feature list extensions are told about.
pub const SUPPORTED_FEATURES: &str = r#"[{"Key":"ExtensionTelemetryPipeline","Value":"1.0"}]"#;

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Install => "install",
            Operation::Enable => "enable",
            Operation::Disable => "disable",
            Operation::Update => "update",
            Operation::Uninstall => "uninstall",
        }
    }

    /// waagent's timeout for the operation.
    pub fn timeout(self) -> Duration {
        Duration::from_secs(match self {
            Operation::Enable | Operation::Uninstall => 300,
            Operation::Install | Operation::Disable | Operation::Update => 900,
        })
    }

    /// The error code reported when the command fails.
    pub fn error_code(self) -> i64 {
        match self {
            Operation::Install => 1007,
            Operation::Enable => 1009,
            Operation::Disable => 1010,
            Operation::Update => 1008,
            Operation::Uninstall => 1000,
        }
    }
}

/// What a command is run with.
#[derive(Debug, Clone, Default)]
pub struct CommandEnv {
    /// `AZURE_GUEST_AGENT_WIRE_PROTOCOL_ADDRESS`.
    pub wire_address: String,
    /// `ConfigSequenceNumber` (0 without settings).
    pub sequence_number: u64,
    /// `ConfigExtensionName` (multi-config only).
    pub extension_name: Option<String>,
    /// Operation-specific variables (`VERSION`, `AZURE_GUEST_AGENT_UNINSTALL_CMD_EXIT_CODE`, ...).
    pub extra: Vec<(String, String)>,
    /// Overrides waagent's timeout (`Wala.ExtensionCommandTimeout`).
    pub timeout: Option<Duration>,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// Exit code; `None` when killed by a signal or at the timeout.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// `[stdout]\n...\n[stderr]\n...`, tails only.
    pub output: String,
}

impl CommandOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// The exit code as waagent puts it in `AZURE_GUEST_AGENT_*_CMD_EXIT_CODE`.
    pub fn exit_code_text(&self) -> String {
        match self.exit_code {
            Some(c) => c.to_string(),
            None if self.timed_out => CODE_TIMEOUT.to_string(),
            None => "-1".to_string(),
        }
    }

    /// The failure message for a status, with the command's output.
    pub fn failure_message(&self, op: Operation, handler: &str, command: &str) -> String {
        let what = if self.timed_out {
            "timed out and was killed".to_string()
        } else {
            match self.exit_code {
                Some(c) => format!("failed with exit code {c}"),
                None => "was killed by a signal".to_string(),
            }
        };
        crate::base::logging::redact_sas(&format!(
            "Non-zero exit code: {}, {handler} {} command `{command}` {what}\n{}",
            self.exit_code_text(),
            op.name(),
            self.output
        ))
    }

    /// The error code of the failure (1011 for a timeout, else the operation's).
    pub fn error_code(&self, op: Operation) -> i64 {
        if self.timed_out {
            CODE_TIMEOUT
        } else {
            op.error_code()
        }
    }
}

/// Why a command could not be started at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot run the {op} command of {handler}: {source}")]
pub struct ExecError {
    pub op: &'static str,
    pub handler: String,
    #[source]
    pub source: CmdError,
}

/// The variables waagent sets (the agent's own environment then wins on a clash).
pub fn environment(dir: &HandlerDir, env: &CommandEnv) -> Vec<(String, String)> {
    let mut vars = vec![
        ("AZURE_GUEST_AGENT_EXTENSION_PATH".to_string(), dir.base().to_string_lossy().into_owned()),
        ("AZURE_GUEST_AGENT_EXTENSION_VERSION".to_string(), dir.version().to_string()),
        ("AZURE_GUEST_AGENT_WIRE_PROTOCOL_ADDRESS".to_string(), env.wire_address.clone()),
        ("ConfigSequenceNumber".to_string(), env.sequence_number.to_string()),
        ("AZURE_GUEST_AGENT_EXTENSION_SUPPORTED_FEATURES".to_string(), SUPPORTED_FEATURES.to_string()),
    ];
    if let Some(name) = &env.extension_name {
        vars.push(("ConfigExtensionName".to_string(), name.clone()));
    }
    vars.extend(env.extra.iter().cloned());
    vars.retain(|(k, _)| std::env::var_os(k).is_none());
    vars
}

/// Run one command of a handler. A command that runs but fails is an `Ok` outcome; only a command
/// that cannot be started at all is an error.
pub fn run(
    runner: &dyn Runner,
    cgroups: &CgroupPolicy,
    limits: Limits,
    dir: &HandlerDir,
    op: Operation,
    command: &str,
    env: &CommandEnv,
) -> Result<CommandOutcome, ExecError> {
    let script = shell_script(command);
    let unit = format!("{}_{}", op.name(), crate::platform::hostgaplugin::correlation_id());
    let timeout = env.timeout.unwrap_or(op.timeout());
    let (stdout, stderr) = output_files(dir, op);
    let mut cmd = cgroups
        .command(dir.name(), &unit, limits, &script)
        .arg(dir.base())
        .current_dir(dir.base())
        .timeout(timeout)
        .output_files(&stdout, &stderr, OUTPUT_TAIL);
    for (k, v) in environment(dir, env) {
        cmd = cmd.env(k, v);
    }
    log::info!("{}: running the {} command: {command}", dir.full_name(), op.name());
    let started = std::time::Instant::now();
    let outcome = match runner.output(&cmd) {
        Ok(out) => CommandOutcome {
            exit_code: out.code,
            timed_out: false,
            output: format_output(&out.stdout, &out.stderr),
        },
        Err(CmdError::Timeout { .. }) => {
            let (o, e) = (read_tail(&stdout, OUTPUT_TAIL), read_tail(&stderr, OUTPUT_TAIL));
            CommandOutcome { exit_code: None, timed_out: true, output: format_output(&o, &e) }
        }
        Err(source) => return Err(ExecError { op: op.name(), handler: dir.full_name(), source }),
    };
    log::info!(
        "{}: {} command ended after {} ms: {}",
        dir.full_name(),
        op.name(),
        started.elapsed().as_millis(),
        if outcome.timed_out {
            "timed out, process group killed".to_string()
        } else {
            outcome.exit_code_text()
        }
    );
    append_command_log(dir, op, command, &outcome);
    Ok(outcome)
}

/// The script `/bin/sh -c` runs for a manifest command: `"$0"/<command>`, `$0` being the handler
/// directory (see the module's documentation).
fn shell_script(command: &str) -> String {
    format!("\"$0\"/{}", command.trim_start_matches('/'))
}

/// `<base>/.wala-<op>.stdout` and `.stderr`.
fn output_files(dir: &HandlerDir, op: Operation) -> (std::path::PathBuf, std::path::PathBuf) {
    let file = |stream: &str| dir.base().join(format!(".wala-{}.{stream}", op.name()));
    (file("stdout"), file("stderr"))
}

/// `[stdout]\n<tail>\n[stderr]\n<tail>`, lossy UTF-8.
fn format_output(stdout: &[u8], stderr: &[u8]) -> String {
    format!("[stdout]\n{}\n[stderr]\n{}", String::from_utf8_lossy(stdout), String::from_utf8_lossy(stderr))
}

/// Append to `<log dir>/CommandExecution.log` (best effort).
fn append_command_log(dir: &HandlerDir, op: Operation, command: &str, outcome: &CommandOutcome) {
    let _ = crate::base::files::ensure_dir(dir.log_dir(), 0o755);
    let path = dir.log_dir().join("CommandExecution.log");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > 10 * 1024 * 1024) {
        let _ = std::fs::remove_file(&path);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = writeln!(
            f,
            "{} {} `{command}`: exit {}{}\n{}",
            crate::base::logging::timestamp(std::time::SystemTime::now()),
            op.name(),
            outcome.exit_code_text(),
            if outcome.timed_out { " (timed out)" } else { "" },
            crate::base::logging::redact_sas(&outcome.output)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waagents_variables_are_set_and_the_command_runs_in_the_handler_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = HandlerDir::new(&tmp.path().join("lib"), &tmp.path().join("log"), "Pub.Ext", "1.0.1")
            .expect("handler dir");
        std::fs::create_dir_all(dir.base().join("bin")).expect("mkdir");
        std::fs::write(
            dir.base().join("bin/show.sh"),
            "#!/bin/sh\npwd\necho \"$AZURE_GUEST_AGENT_EXTENSION_PATH|$AZURE_GUEST_AGENT_EXTENSION_VERSION|$AZURE_GUEST_AGENT_WIRE_PROTOCOL_ADDRESS|$ConfigSequenceNumber|$AZURE_GUEST_AGENT_EXTENSION_SUPPORTED_FEATURES|$VERSION\"\necho warn >&2\nexit 3\n",
        )
        .expect("script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.base().join("bin/show.sh"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let env = CommandEnv {
            wire_address: "127.0.0.9".into(),
            sequence_number: 4,
            extra: vec![("VERSION".into(), "2.0".into())],
            ..Default::default()
        };
        let out = run(
            &crate::base::cmd::SystemRunner,
            &CgroupPolicy::default(),
            Limits::default(),
            &dir,
            Operation::Update,
            "/bin/show.sh",
            &env,
        )
        .expect("run");
        assert_eq!(out.exit_code, Some(3));
        let base = std::fs::canonicalize(dir.base()).expect("canon");
        assert!(out.output.contains(&format!("[stdout]\n{}\n", base.display())), "{}", out.output);
        assert!(
            out.output
                .contains(&format!("{}|1.0.1|127.0.0.9|4|{SUPPORTED_FEATURES}|2.0", dir.base().display())),
            "{}",
            out.output
        );
        assert!(out.output.ends_with("[stderr]\nwarn\n"), "{}", out.output);
        assert_eq!(out.error_code(Operation::Update), 1008);
        let log = std::fs::read_to_string(dir.log_dir().join("CommandExecution.log")).expect("log");
        assert!(log.contains("update `/bin/show.sh`: exit 3"), "{log}");
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_children() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = HandlerDir::new(&tmp.path().join("lib"), &tmp.path().join("log"), "Pub.Slow", "1.0")
            .expect("handler dir");
        std::fs::create_dir_all(dir.base()).expect("mkdir");
        let marker = tmp.path().join("child-survived");
        let script = format!("#!/bin/sh\necho started\n(sleep 1; touch {}) &\nsleep 30\n", marker.display());
        std::fs::write(dir.base().join("slow.sh"), script).expect("script");
        let env = CommandEnv { timeout: Some(Duration::from_millis(300)), ..Default::default() };
        let started = std::time::Instant::now();
        let enable = |command: &str| {
            run(
                &crate::base::cmd::SystemRunner,
                &CgroupPolicy::default(),
                Limits::default(),
                &dir,
                Operation::Enable,
                command,
                &env,
            )
        };
        // `<base>/sh slow.sh` is not a program: the shell says so and exits 127.
        assert_eq!(enable("sh slow.sh").expect("ran").exit_code, Some(127));
        // Not executable: 126.
        assert_eq!(enable("slow.sh").expect("ran").exit_code, Some(126));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.base().join("slow.sh"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let out = enable("slow.sh").expect("ran");
        assert!(out.timed_out);
        assert_eq!(out.error_code(Operation::Enable), CODE_TIMEOUT);
        assert!(out.output.contains("started"), "{}", out.output);
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1300));
        assert!(!marker.exists(), "the background child died with the group");
    }

    fn executable(path: &std::path::Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("script");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// Run an enable command, again when it could not start because a process forked by another
    /// test still held the script just written open ("Text file busy", a test-only race).
    fn enable(dir: &HandlerDir, command: &str, env: &CommandEnv) -> CommandOutcome {
        for _ in 0..20 {
            let out = run(
                &crate::base::cmd::SystemRunner,
                &CgroupPolicy::default(),
                Limits::default(),
                dir,
                Operation::Enable,
                command,
                env,
            )
            .expect("run");
            if !(out.exit_code == Some(126) && out.output.contains("Text file busy")) {
                return out;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{command}: the script stayed busy");
    }

    /// Issue #21: the handler directory reaches the shell as `$0`, never as script text, so a
    /// directory full of shell syntax runs the manifest command and nothing else; the forms real
    /// manifests use (arguments, `./`, a leading `/`, quoted arguments) keep working.
    #[test]
    fn the_handler_directory_is_never_parsed_by_the_shell() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lib = tmp.path().join("lib;touch INJECTED;#$(touch INJECTED2)`touch INJECTED3` 'q\"");
        let dir = HandlerDir::new(&lib, &tmp.path().join("log"), "Pub.Ext", "1.0").expect("handler dir");
        executable(&dir.base().join("bin/handler.sh"), "#!/bin/sh\necho \"ran $0 [$*]\"\n");
        for (command, ran, args) in [
            ("bin/handler.sh -enable", "bin/handler.sh", "[-enable]"),
            ("./bin/handler.sh -install", "./bin/handler.sh", "[-install]"),
            ("/bin/handler.sh 'two words' x", "bin/handler.sh", "[two words x]"),
            ("bin/handler.sh -c ./vmaccess.py -install", "bin/handler.sh", "[-c ./vmaccess.py -install]"),
        ] {
            let out = enable(&dir, command, &CommandEnv::default());
            assert_eq!(out.exit_code, Some(0), "{command}: {}", out.output);
            let expected = format!("[stdout]\nran {}/{ran} {args}\n", dir.base().display());
            assert!(out.output.starts_with(&expected), "{command}: {}", out.output);
        }
        let mut found = Vec::new();
        let mut stack = vec![tmp.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("ls").flatten() {
                if e.file_type().expect("type").is_dir() {
                    stack.push(e.path());
                } else if e.file_name().to_string_lossy().starts_with("INJECTED") {
                    found.push(e.path());
                }
            }
        }
        assert!(found.is_empty(), "commands injected through the directory ran: {found:?}");
    }

    /// Issue #21 (item 5): at a timeout only the end of each output file is read, whatever its
    /// size. The command turns its stdout into a 1 TiB sparse file (no disk used) ending with a
    /// marker; reading the whole file, as before, cannot even allocate the buffer.
    #[test]
    fn at_a_timeout_only_the_tail_of_the_output_is_read() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = HandlerDir::new(&tmp.path().join("lib"), &tmp.path().join("log"), "Pub.Loud", "1.0")
            .expect("handler dir");
        executable(
            &dir.base().join("loud.sh"),
            "#!/bin/sh\necho started\ntruncate -s 1T /dev/stdout || exit 9\necho tail-marker >> /dev/stdout\necho err-marker >&2\nsleep 30\n",
        );
        let env = CommandEnv { timeout: Some(Duration::from_millis(500)), ..Default::default() };
        let out = enable(&dir, "loud.sh", &env);
        assert!(out.timed_out, "{}", out.output);
        let size = std::fs::metadata(dir.base().join(".wala-enable.stdout")).expect("stdout").len();
        assert!(size > 1 << 40, "the output file is {size} bytes");
        assert!(out.output.contains("tail-marker\n\n[stderr]\nerr-marker\n"), "{:?}", &out.output);
        assert!(out.output.len() <= 2 * OUTPUT_TAIL + "[stdout]\n\n[stderr]\n".len(), "{}", out.output.len());
    }
}
