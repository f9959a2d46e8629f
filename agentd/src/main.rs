//! `wala-agentd`: the steady-state daemon and the administrative commands. Also answers to the name
//! `waagent` (a symlink), taking waagent's single-dash flags.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use wala::base::cmd::SystemRunner;
use wala::base::exit::{ExitCode, EXIT_CODES_HELP};
use wala::base::root::HostRoot;
use wala::commands::legacy_cli::{self, LegacyCommand};

/// The wala guest agent daemon and administrative commands (waagent compatible).
///
/// Invoked as `waagent`, it accepts waagent's flags: -deprovision[+user] [-force], -version, -help,
/// -show-configuration, -collect-logs [-full], -serialconsole, -daemon (daemon --provision),
/// -run-exthandlers (daemon), -start (daemon --provision, in the background), -register-service
/// (systemctl enable of wala's units), -setup-firewall=IP, -verbose, -configuration-path:FILE.
#[derive(Debug, Parser)]
#[command(name = "wala-agentd", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    /// Configuration file [default: /etc/waagent.conf under --root]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Root directory under which every host path is resolved
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Verbose logging (as Logs.Verbose=y)
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the steady-state daemon (goal state, extensions, status, JIT remote access, monitors)
    Daemon {
        /// First run every provisioning stage, as `wala-provision --stage all` (what `waagent
        /// -daemon` does: for a unit that runs `waagent -daemon` instead of wala's units). Each
        /// stage finds on its own whether anything is left to do, so on a provisioned VM this
        /// changes nothing
        #[arg(long)]
        provision: bool,
        /// With --provision: how long to wait for the provisioning DVD to appear
        #[arg(long, value_name = "SECONDS", default_value_t = 60, requires = "provision")]
        dvd_timeout: u64,
        /// Benchmarks: stop after this many event-loop wake-ups
        #[arg(long, hide = true)]
        max_wakeups: Option<u64>,
        /// Benchmarks: poll the goal state every this many milliseconds
        #[arg(long, hide = true)]
        goal_state_period_ms: Option<u64>,
        /// Tests: upload the status as a heartbeat every this many milliseconds (default 60 s)
        #[arg(long, hide = true)]
        status_heartbeat_ms: Option<u64>,
        /// Tests: Wala.WireServerPollPeriod in milliseconds (default with --goal-state-period-ms:
        /// the same period, every poll)
        #[arg(long, hide = true)]
        wireserver_period_ms: Option<u64>,
    },
    /// The provisioning network stage (`wala-provision --stage network`), for a VM whose OVF names
    /// SSH keys by certificate thumbprint: wala-provision hands that stage over to this command,
    /// which does the certificate work through the wala-crypto helper
    ProvisionNetwork,
    /// Check the configuration file and list every problem (exits 3 when there are any), and
    /// every key set that wala accepts but does not use, with the reason
    CheckConfig,
    /// Print the effective configuration as `Key = Value` lines (waagent's format)
    ShowConfiguration,
    /// Print the version and the distribution
    Version,
    /// Remove machine-specific state before capturing an image (see docs/deprovision.md). Prints
    /// what will be removed and asks for confirmation; any answer but y/Y exits 1 with nothing
    /// changed
    Deprovision {
        /// Also delete the last provisioned user and its home directory
        #[arg(long)]
        user: bool,
        /// Do not ask for confirmation
        #[arg(long)]
        force: bool,
    },
    /// Collect logs and state (without secrets) into <Lib.Dir>/logcollector/logs.zip
    CollectLogs {
        /// Raise the size limit from 32 MiB to 256 MiB and add the system logs
        #[arg(long)]
        full: bool,
    },
    /// Configure GRUB for the serial console on ttyS0
    SerialConsole,
    /// Record this VM as provisioned (<Lib.Dir>/provisioned with its VM id) unless a marker
    /// exists, so that the next boot does not provision it again. For a VM already in service
    /// whose marker was lost, e.g. taken over from waagent's package (whose removal deletes
    /// /var/lib/waagent); the Debian package runs it then (docs/migration.md)
    MarkProvisioned,
    /// Enable wala's units (`systemctl enable`), as `waagent -register-service` registers waagent
    RegisterService,
    /// Parse a document as wala would and print what was understood as JSON (secrets redacted).
    /// KIND: ovf, goal-state, hosting-env, shared-config, extensions-config, vm-settings,
    /// certificates, dhcp-lease, handler-manifest, ext-status, imds, conf.
    /// Exits 5 when the document is rejected, 3 when a configuration has problems, 4 for a kind
    /// not built yet.
    Inspect {
        /// The kind of document
        #[arg(value_parser = inspect_kinds())]
        kind: String,
        /// The file to read
        file: PathBuf,
    },
    /// Install the firewall rules that protect the WireServer
    SetupFirewall {
        /// The WireServer address to protect
        #[arg(long, value_name = "IP")]
        destination: String,
    },
    /// Print the boot timeline: each provisioning stage, step and wait with its start, end and
    /// duration in seconds since the kernel started
    ///
    /// Reads this boot's /run/wala/boot-timeline.jsonl (written by every wala-provision stage),
    /// else the copy of the last provisioning boot, <Lib.Dir>/wala-boot-timeline.jsonl. Waits on
    /// something outside wala (the DVD, udev, the WireServer) are marked `wait*`. On the live
    /// root it adds systemd's timestamps (systemctl show): the kernel/initrd/userspace split, when
    /// the wala units and ssh/sshd started, and "sshd ready".
    ///
    /// --json prints a list of entries {"lane": str, "name": str, "start": secs, "end": secs,
    /// "kind": "stage"|"step"|"wait"|"mark", "outcome": "ok"|"failed"|"skipped"}. --compare
    /// NAME=FILE reads that form back (or a timeline file); a mark needs no "end" and "outcome"
    /// is optional, e.g. [{"lane": "outside", "name": "sshd banner", "start": 7.5, "kind":
    /// "mark"}]. See docs/boot.md, "Boot timeline".
    BootReport {
        /// Print JSON (a list of entries) instead of the table
        #[arg(long)]
        json: bool,
        /// Read this timeline file instead of this boot's
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Also write the timeline as an SVG chart to PATH (one lane per stage, waits hatched)
        #[arg(long, value_name = "PATH")]
        svg: Option<PathBuf>,
        /// Show these timelines side by side instead of this boot's (repeatable; FILE is a JSON
        /// list of entries or a timeline file)
        #[arg(long, value_name = "NAME=FILE", value_parser = wala::commands::boot_report::parse_compare_arg, conflicts_with = "file")]
        compare: Vec<(String, PathBuf)>,
    },
}

fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let invoked_as_waagent = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n.to_string_lossy().starts_with("waagent"));
    let code = if invoked_as_waagent {
        run_legacy(&args.split_off(1))
    } else {
        let cli = Cli::parse();
        run(cli.command, &HostRoot::new(&cli.root), cli.config, cli.verbose)
    };
    code.into()
}

/// Map waagent's flags onto the modern commands.
fn run_legacy(args: &[String]) -> ExitCode {
    let inv = match legacy_cli::parse(args) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}", legacy_cli::USAGE);
            return ExitCode::Failure;
        }
    };
    let command = match inv.command {
        LegacyCommand::Help => {
            println!("{}", legacy_cli::USAGE);
            println!("(wala: these flags map onto `wala-agentd COMMAND`; see `wala-agentd --help`)");
            return ExitCode::Ok;
        }
        LegacyCommand::Version => Command::Version,
        LegacyCommand::ShowConfiguration => Command::ShowConfiguration,
        LegacyCommand::Deprovision { user } => Command::Deprovision { user, force: inv.force },
        // waagent's daemon provisions, then runs the extension handler; -run-exthandlers is the
        // second half alone.
        LegacyCommand::Daemon => legacy_daemon(true),
        LegacyCommand::RunExtHandlers => legacy_daemon(false),
        LegacyCommand::CollectLogs => Command::CollectLogs { full: inv.full },
        LegacyCommand::SerialConsole => Command::SerialConsole,
        LegacyCommand::SetupFirewall { destination } => Command::SetupFirewall { destination },
        LegacyCommand::Start => return start_in_background(&SystemRunner, inv.config_path.as_deref()),
        LegacyCommand::RegisterService => Command::RegisterService,
    };
    run(command, &HostRoot::live(), inv.config_path, inv.verbose)
}

fn run(command: Command, root: &HostRoot, config: Option<PathBuf>, verbose: bool) -> ExitCode {
    // The network stage handed over by wala-provision logs as that stage does.
    let settings = match command {
        Command::ProvisionNetwork => wala::base::logging::LogSettings {
            component: "Provision",
            verbose,
            file: Some(root.path(wala::base::logging::LOG_FILE)),
        },
        _ => wala::base::logging::LogSettings { component: "Daemon", verbose, file: None },
    };
    wala::base::logging::init(settings);
    match command {
        Command::Version => {
            print!("{}", wala::version_text(root));
            ExitCode::Ok
        }
        Command::ShowConfiguration => {
            let loaded = wala::documents::conf::load_or_defaults(root, config.as_deref());
            loaded.log_problems();
            print!("{}", wala::documents::conf::show(&loaded.config));
            ExitCode::Ok
        }
        Command::CheckConfig => {
            let loaded = wala::documents::conf::load_or_defaults(root, config.as_deref());
            let file = loaded.source.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
            for n in &loaded.notes {
                println!("{n}");
            }
            for p in &loaded.problems {
                println!("{p}");
            }
            let unused = match loaded.notes.len() {
                0 => String::new(),
                n => format!("; {n} key(s) accepted but not used by wala"),
            };
            if loaded.problems.is_empty() {
                println!("{file}: no problems{unused}");
                ExitCode::Ok
            } else {
                println!("{file}: {} problem(s){unused}", loaded.problems.len());
                ExitCode::ConfigProblems
            }
        }
        Command::Inspect { kind, file } => inspect(&kind, &file),
        Command::Daemon {
            provision,
            dvd_timeout,
            max_wakeups,
            goal_state_period_ms,
            status_heartbeat_ms,
            wireserver_period_ms,
        } => {
            let options = wala::daemon::start::StartOptions {
                provision: provision.then(|| std::time::Duration::from_secs(dvd_timeout)),
                limits: wala::daemon::Limits { max_wakeups },
                overrides: wala::daemon::Overrides {
                    goal_state_period: goal_state_period_ms.map(std::time::Duration::from_millis),
                    status_heartbeat: status_heartbeat_ms.map(std::time::Duration::from_millis),
                    wireserver_period: wireserver_period_ms.map(std::time::Duration::from_millis),
                },
            };
            daemon(root, config, verbose, &options)
        }
        Command::ProvisionNetwork => provision_network(root, config.as_deref()),
        Command::MarkProvisioned => {
            let loaded = wala::documents::conf::load_or_defaults(root, config.as_deref());
            loaded.log_problems();
            mark_provisioned(root, &loaded.config)
        }
        Command::RegisterService => register_service(&SystemRunner, root),
        Command::Deprovision { user, force } => {
            let loaded = wala::documents::conf::load_or_defaults(root, config.as_deref());
            loaded.log_problems();
            deprovision(root, &loaded.config, user, force)
        }
        Command::CollectLogs { full } => {
            let loaded = wala::documents::conf::load_or_defaults(root, config.as_deref());
            loaded.log_problems();
            collect_logs(root, &loaded.config, loaded.source.as_deref(), full)
        }
        Command::SerialConsole => serial_console(root),
        Command::SetupFirewall { destination } => setup_firewall(&destination),
        Command::BootReport { json, file, svg, compare } => {
            let loaded = wala::documents::conf::load_or_defaults(root, config.as_deref());
            let input = match (file, compare.is_empty()) {
                (_, false) => wala::commands::boot_report::Input::Compare(compare),
                (Some(f), true) => wala::commands::boot_report::Input::File(f),
                (None, true) => wala::commands::boot_report::Input::ThisBoot,
            };
            boot_report(root, &loaded.config, &input, json, svg.as_deref())
        }
    }
}

fn boot_report(
    root: &HostRoot,
    config: &wala::documents::conf::Config,
    input: &wala::commands::boot_report::Input,
    json: bool,
    svg: Option<&Path>,
) -> ExitCode {
    use wala::commands::boot_report;
    let report = match boot_report::build(root, config.lib_dir.as_path(), &SystemRunner, input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wala-agentd: boot-report: {e}");
            return ExitCode::Failure;
        }
    };
    for p in &report.problems {
        eprintln!("wala-agentd: boot-report: skipped {p}");
    }
    if json {
        print!("{}", boot_report::render_json(&report));
    } else {
        print!("{}", boot_report::render_table(&report));
    }
    if let Some(path) = svg {
        let title = format!("Boot timeline: {}", report.sources.join("; "));
        let text = boot_report::render_svg(&report, &title);
        let options = wala::base::files::WriteOptions::mode(0o644);
        if let Err(e) = wala::base::files::write_atomic(path, text.as_bytes(), options) {
            eprintln!("wala-agentd: boot-report: {e}");
            return ExitCode::Failure;
        }
        eprintln!("SVG timeline written to {}", path.display());
    }
    ExitCode::Ok
}

/// `provision-network`: the network stage with the certificate work (through `wala-crypto`).
fn provision_network(root: &HostRoot, config: Option<&Path>) -> ExitCode {
    if wala::provision::stages::run_handed_over_network_stage(root, config) {
        ExitCode::Ok
    } else {
        ExitCode::Failure
    }
}

fn legacy_daemon(provision: bool) -> Command {
    Command::Daemon {
        provision,
        dvd_timeout: 60,
        max_wakeups: None,
        goal_state_period_ms: None,
        status_heartbeat_ms: None,
        wireserver_period_ms: None,
    }
}

/// `waagent -start`: the daemon in the background ([`wala::commands::service::start_in_background`]).
fn start_in_background(runner: &dyn wala::base::cmd::Runner, config: Option<&Path>) -> ExitCode {
    match wala::commands::service::start_in_background(runner, config) {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            eprintln!("wala: -start: {e}");
            ExitCode::Failure
        }
    }
}

/// `waagent -register-service`: wala's units enabled ([`wala::commands::service::register_service`]).
fn register_service(runner: &dyn wala::base::cmd::Runner, root: &HostRoot) -> ExitCode {
    match wala::commands::service::register_service(runner, root) {
        Ok(units) => {
            println!("enabled {}", units.join(" "));
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("wala: register-service: {e}");
            ExitCode::Failure
        }
    }
}

fn mark_provisioned(root: &HostRoot, config: &wala::documents::conf::Config) -> ExitCode {
    use wala::provision::takeover::{mark_provisioned, MarkOutcome};
    let lib = config.lib_dir.as_path();
    match mark_provisioned(root, lib) {
        Ok(MarkOutcome::Written(id)) => {
            println!("{}: VM {id} recorded as provisioned", root.path(lib.join("provisioned")).display());
            ExitCode::Ok
        }
        Ok(MarkOutcome::Exists(text)) => {
            println!(
                "{}: a marker exists ({text:?}); nothing changed",
                root.path(lib.join("provisioned")).display()
            );
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("wala-agentd: mark-provisioned: {e}");
            ExitCode::Failure
        }
    }
}

fn daemon(
    root: &HostRoot,
    config: Option<PathBuf>,
    verbose: bool,
    options: &wala::daemon::start::StartOptions,
) -> ExitCode {
    wala::base::logging::init(wala::base::logging::LogSettings {
        component: "Daemon",
        verbose,
        file: Some(root.path(wala::base::logging::LOG_FILE)),
    });
    use wala::daemon::start::{start, Outcome};
    match start(root, config.as_deref(), options) {
        Ok(Outcome::Ran(_)) => ExitCode::Ok,
        Ok(Outcome::TurnedOff | Outcome::AnotherRunning) => ExitCode::Disabled,
        Err(e) => {
            log::error!("{e}");
            ExitCode::Failure
        }
    }
}

fn setup_firewall(destination: &str) -> ExitCode {
    let Ok(dst) = destination.parse::<std::net::Ipv4Addr>() else {
        eprintln!("wala-agentd: --destination {destination:?} is not an IPv4 address");
        return ExitCode::Usage;
    };
    let runner = wala::base::cmd::SystemRunner;
    let result = wala::host::firewall::backend(&runner)
        .and_then(|b| wala::host::firewall::ensure(&runner, b, dst, wala::host::firewall::agent_uid()));
    match result {
        Ok(_) => ExitCode::Ok,
        Err(e) => {
            eprintln!("wala-agentd: setup-firewall: {e}");
            ExitCode::Failure
        }
    }
}

fn inspect_kinds() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(wala::commands::inspect::Kind::ALL.iter().map(|(name, _)| *name))
}

fn inspect(kind: &str, file: &std::path::Path) -> ExitCode {
    use wala::commands::inspect::{inspect, Kind, Outcome};
    let Some(kind) = Kind::from_name(kind) else { return ExitCode::Usage };
    let read = match kind.document() {
        Some(document) => wala::base::limits::read_file(file, document),
        None => std::fs::read(file),
    };
    let bytes = match read {
        Ok(b) => b,
        Err(e) => {
            eprintln!("wala: {}: {e}", file.display());
            return ExitCode::Failure;
        }
    };
    let print = |v: &serde_json::Value| match serde_json::to_string_pretty(v) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("wala: {e}"),
    };
    match inspect(kind, file, &bytes, std::time::SystemTime::now()) {
        Outcome::Parsed(v) => {
            print(&v);
            ExitCode::Ok
        }
        Outcome::Problems(v) => {
            print(&v);
            ExitCode::ConfigProblems
        }
        Outcome::Rejected(why) => {
            eprintln!("wala: {}: rejected: {why}", file.display());
            ExitCode::Rejected
        }
        Outcome::NotBuilt(what) => not_built(what),
    }
}

/// Deprovision: warnings and a prompt unless `force`; an answer other than yes exits 1 having
/// changed nothing.
fn deprovision(root: &HostRoot, config: &wala::documents::conf::Config, user: bool, force: bool) -> ExitCode {
    use wala::host::deprovision;
    let plan = deprovision::plan(root, config, deprovision::Options { user });
    if force {
        for w in &plan.warnings {
            println!("{w}");
        }
    } else if !deprovision::confirm(&plan, &mut std::io::stdin().lock(), &mut std::io::stdout()) {
        println!("Deprovision is cancelled; nothing was changed.");
        return ExitCode::Failure;
    }
    deprovision::ignore_interrupts();
    let report = deprovision::apply(root, &SystemRunner, &plan);
    for path in &report.removed {
        log::debug!("removed {}", path.display());
    }
    for note in &report.notes {
        println!("{note}");
    }
    if report.ok() {
        println!("Deprovisioned: {} item(s) removed.", report.removed.len());
        ExitCode::Ok
    } else {
        for f in &report.failures {
            eprintln!("deprovision failed: {f}");
        }
        ExitCode::Failure
    }
}

fn collect_logs(
    root: &HostRoot,
    config: &wala::documents::conf::Config,
    config_file: Option<&Path>,
    full: bool,
) -> ExitCode {
    use wala::commands::collect_logs::{self, Limits};
    let limits = if full { Limits::full() } else { Limits::normal() };
    match collect_logs::collect(root, &SystemRunner, config, config_file, limits) {
        Ok(c) => {
            println!(
                "Log collection written to {} ({} files, {} bytes; {} left out, see {})",
                c.zip.display(),
                c.entries.len(),
                c.zip_size,
                c.skipped.len(),
                c.results.display()
            );
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("log collection failed: {e}");
            ExitCode::Failure
        }
    }
}

fn serial_console(root: &HostRoot) -> ExitCode {
    match wala::commands::serial_console::configure(root, &SystemRunner) {
        Ok(change) => {
            let file = root.path(wala::host::grub::DEFAULT_GRUB);
            if change.changed {
                println!("{}: serial console on ttyS0 configured", file.display());
            } else {
                println!("{}: serial console on ttyS0 already configured", file.display());
            }
            if let Some(cmd) = &change.regenerated_with {
                println!("GRUB configuration regenerated with `{cmd}`; takes effect at the next boot");
            }
            if let Some(why) = &change.not_regenerated {
                println!("{why}");
            }
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("serial console set-up failed: {e}");
            ExitCode::Failure
        }
    }
}

fn not_built(what: &str) -> ExitCode {
    eprintln!("wala: {what} is not built yet; nothing was done");
    ExitCode::NotImplemented
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn waagent_daemon_provisions_first_and_run_exthandlers_does_not() {
        assert!(matches!(legacy_daemon(true), Command::Daemon { provision: true, dvd_timeout: 60, .. }));
        assert!(matches!(legacy_daemon(false), Command::Daemon { provision: false, .. }));
    }
}
