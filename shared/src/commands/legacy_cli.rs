//! waagent's single-dash command line, so `waagent -deprovision+user -force` and friends keep working.
//!
//! Rules (waagent's `parse_args`): every argument is matched on its own against `^[-/]*<word>` (any
//! number of leading `-` or `/`, and a prefix match, so `--deprovision` and `/deprovision` work); empty
//! arguments are skipped; the last command word wins and flags accumulate; anything unrecognised
//! means help. `-configuration-path:<file>` selects the configuration and the file must exist.

use std::path::PathBuf;

/// A waagent command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyCommand {
    Help,
    Version,
    ShowConfiguration,
    Deprovision { user: bool },
    Daemon,
    Start,
    RegisterService,
    RunExtHandlers,
    CollectLogs,
    SerialConsole,
    SetupFirewall { destination: String },
}

/// A parsed waagent command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyInvocation {
    pub command: LegacyCommand,
    pub verbose: bool,
    pub force: bool,
    pub full: bool,
    pub debug: bool,
    pub config_path: Option<PathBuf>,
}

/// A command line waagent would refuse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LegacyError {
    #[error("Error: Configuration file {0} does not exist")]
    ConfigMissing(String),
    #[error("Error: invalid configuration path {0:?} (allowed: letters, digits, '/', '.', '-', '_')")]
    ConfigPathInvalid(String),
}

/// waagent's usage line (kept as waagent prints it, for scripts that grep it).
pub const USAGE: &str =
    "usage: waagent [-verbose] [-force] [-help] -configuration-path:<path to configuration file>\
-deprovision[+user]|-register-service|-version|-daemon|-start|-run-exthandlers|-show-configuration|\
-collect-logs [-full]|-serialconsole|-setup-firewall=<IP>]";

/// Parse waagent-style arguments (without the program name).
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<LegacyInvocation, LegacyError> {
    let mut inv = LegacyInvocation {
        command: LegacyCommand::Help,
        verbose: false,
        force: false,
        full: false,
        debug: false,
        config_path: None,
    };
    for arg in args.iter().map(AsRef::as_ref) {
        if arg.is_empty() {
            continue;
        }
        let word = arg.trim_start_matches(['-', '/']);
        let is = |w: &str| word.starts_with(w);
        if let Some(path) = word.strip_prefix("configuration-path:") {
            if path.is_empty() || !path.chars().all(|c| c.is_alphanumeric() || "/._-".contains(c)) {
                return Err(LegacyError::ConfigPathInvalid(path.into()));
            }
            if !std::path::Path::new(path).is_file() {
                return Err(LegacyError::ConfigMissing(path.into()));
            }
            inv.config_path = Some(PathBuf::from(path));
        } else if is("deprovision+user") {
            inv.command = LegacyCommand::Deprovision { user: true };
        } else if is("deprovision") {
            inv.command = LegacyCommand::Deprovision { user: false };
        } else if is("daemon") {
            inv.command = LegacyCommand::Daemon;
        } else if is("start") {
            inv.command = LegacyCommand::Start;
        } else if is("register-service") {
            inv.command = LegacyCommand::RegisterService;
        } else if is("run-exthandlers") {
            inv.command = LegacyCommand::RunExtHandlers;
        } else if is("version") {
            inv.command = LegacyCommand::Version;
        } else if is("verbose") {
            inv.verbose = true;
        } else if is("debug") {
            inv.debug = true;
        } else if is("force") {
            inv.force = true;
        } else if is("show-configuration") {
            inv.command = LegacyCommand::ShowConfiguration;
        } else if is("help") || is("usage") || is("?") {
            inv.command = LegacyCommand::Help;
        } else if is("collect-logs") {
            inv.command = LegacyCommand::CollectLogs;
        } else if is("full") {
            inv.full = true;
        } else if is("serialconsole") {
            inv.command = LegacyCommand::SerialConsole;
        } else if let Some(ip) =
            word.strip_prefix("setup-firewall=").filter(|ip| valid_firewall_destination(ip))
        {
            inv.command = LegacyCommand::SetupFirewall { destination: ip.into() };
        } else {
            inv.command = LegacyCommand::Help;
            break;
        }
    }
    Ok(inv)
}

fn valid_firewall_destination(ip: &str) -> bool {
    ip.len() >= 7 && ip.chars().all(|c| c.is_ascii_digit() || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> LegacyInvocation {
        parse(args).expect("parse")
    }

    #[test]
    fn deprovision_user_force() {
        let inv = cmd(&["-deprovision+user", "-force"]);
        assert_eq!(inv.command, LegacyCommand::Deprovision { user: true });
        assert!(inv.force);
        assert_eq!(cmd(&["--deprovision"]).command, LegacyCommand::Deprovision { user: false });
        assert_eq!(cmd(&["/deprovision"]).command, LegacyCommand::Deprovision { user: false });
        assert_eq!(cmd(&["deprovisionXYZ"]).command, LegacyCommand::Deprovision { user: false });
    }

    #[test]
    fn no_arguments_or_unknown_means_help() {
        assert_eq!(cmd(&[]).command, LegacyCommand::Help);
        assert_eq!(cmd(&["-version", "-bogus", "-daemon"]).command, LegacyCommand::Help);
        assert_eq!(cmd(&["-?"]).command, LegacyCommand::Help);
        assert_eq!(cmd(&["-usage"]).command, LegacyCommand::Help);
    }

    #[test]
    fn last_command_wins_and_flags_accumulate() {
        let inv = cmd(&["-verbose", "-version", "", "-collect-logs", "-full"]);
        assert_eq!(inv.command, LegacyCommand::CollectLogs);
        assert!(inv.verbose && inv.full && !inv.force);
        assert_eq!(cmd(&["-show-configuration"]).command, LegacyCommand::ShowConfiguration);
        assert_eq!(cmd(&["-serialconsole"]).command, LegacyCommand::SerialConsole);
    }

    #[test]
    fn setup_firewall_needs_an_address() {
        assert_eq!(
            cmd(&["-setup-firewall=168.63.129.16"]).command,
            LegacyCommand::SetupFirewall { destination: "168.63.129.16".into() }
        );
        assert_eq!(cmd(&["-setup-firewall=1.2"]).command, LegacyCommand::Help);
    }

    #[test]
    fn configuration_path_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("my.conf");
        std::fs::write(&file, "Logs.Verbose=y\n").expect("write");
        let arg = format!("-configuration-path:{}", file.display());
        let inv = cmd(&[arg.as_str(), "-show-configuration"]);
        assert_eq!(inv.config_path.as_deref(), Some(file.as_path()));
        let missing = format!("-configuration-path:{}/nope.conf", dir.path().display());
        assert!(matches!(parse(&[missing.as_str()]), Err(LegacyError::ConfigMissing(_))));
        assert!(matches!(parse(&["-configuration-path:/etc/$(x)"]), Err(LegacyError::ConfigPathInvalid(_))));
    }
}
