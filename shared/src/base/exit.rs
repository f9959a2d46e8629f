//! Exit codes shared by every wala binary. Nothing deep in the library exits; binaries map errors to
//! these codes in `main`.

/// A documented process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// The command failed; the message says why.
    Failure = 1,
    /// The command line could not be parsed.
    Usage = 2,
    /// The configuration has problems (`check-config`).
    ConfigProblems = 3,
    /// The command exists in waagent but is not built in wala yet: nothing was done.
    NotImplemented = 4,
    /// An input document was rejected (`inspect`, `--dry-run` with a bad OVF).
    Rejected = 5,
    /// wala is turned off in the configuration (`Wala.Enabled=n`), or (the daemon) another wala
    /// daemon is running; nothing was done.
    Disabled = 6,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// The table printed at the end of every `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the command failed (the message says why)
  2  the command line could not be parsed
  3  the configuration has problems (check-config)
  4  the command is not built in wala yet; nothing was done
  5  an input document was rejected
  6  wala is turned off (Wala.Enabled=n), or another wala daemon runs; nothing was done";
