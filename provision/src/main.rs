//! `wala-provision`: the one-shot early-boot provisioning binary.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use wala::base::exit::{ExitCode, EXIT_CODES_HELP};
use wala::base::root::HostRoot;
use wala::provision::{self, stages, Context, OvfSource};

/// Provision an Azure VM from its OVF environment: user, password, SSH keys, hostname, resource
/// disk, then report Ready (or ProvisioningFailed) to the WireServer.
#[derive(Debug, Parser)]
#[command(name = "wala-provision", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    /// Root directory of the system to provision (the initramfs passes /sysroot)
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Configuration file [default: /etc/waagent.conf under --root]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read the OVF environment from FILE instead of the provisioning DVD
    #[arg(long, value_name = "FILE")]
    ovf: Option<PathBuf>,
    /// How long to wait for the provisioning DVD to appear, on a disk never provisioned, when a
    /// drive is there but not readable yet (no drive at all, once udev has settled, is no DVD)
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    dvd_timeout: u64,
    /// Behave as if no provisioning DVD were attached (the IMDS stage is then asked on a disk never
    /// provisioned)
    #[arg(long, conflicts_with = "ovf")]
    no_dvd: bool,
    /// Print the plan (secrets redacted) and change nothing; a rejected document exits 5
    #[arg(long)]
    dry_run: bool,
    /// Which stage to run
    #[arg(long, value_enum, default_value_t = Stage::All)]
    stage: Stage,
    /// Pre-provisioned pool VMs: give up each wait (NIC change, the user's OVF from IMDS, the
    /// host's shutdown) after SECONDS [default: wait as long as the VM stays in the pool]
    #[arg(long, value_name = "SECONDS")]
    pps_wait_limit: Option<u64>,
    /// Verbose logging (as Logs.Verbose=y)
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stage {
    /// Before udev and the network (right after the root file system is writable): the hostname
    /// alone, where the DVD's drive is already in /dev and the local stage's decision can be
    /// made at once; anything else is left to the local stage. Never waits, mounts or ejects
    Hostname,
    /// No network: OVF, hostname, user, password, sshd, Ed25519 and ECDSA host keys, inline keys,
    /// custom data; or, on a disk provisioned for another VM, what it keeps and forgets
    Local,
    /// Wait until this boot's local stage has ended (sshd, logins and the other stages wait for
    /// this: the local stage tells systemd it is ready once the hostname is set)
    LocalDone,
    /// Before sshd, only when the local stage found no provisioning DVD on a disk never
    /// provisioned: the user, SSH keys and hostname from IMDS (never a password)
    Imds,
    /// The resource disk and swap on it (every boot; nothing waits for it)
    ResourceDisk,
    /// A pre-provisioned pool VM: report Ready for the pool, wait until a user takes it over, then
    /// provision it from the user's OVF (from IMDS); nothing to do on any other VM
    Pps,
    /// The RSA (or DSA) host keys the local stage left to make, after sshd has started; then
    /// sshd is reloaded
    HostKeys,
    /// WireServer: certificates for fingerprint keys, then Ready or ProvisioningFailed
    Network,
    /// All stages, one after the other
    All,
}

fn main() -> std::process::ExitCode {
    if let Some(code) = as_generator() {
        return code;
    }
    wala::base::timeline::count_start_up();
    let cli = Cli::parse();
    let root = HostRoot::new(&cli.root);
    if cli.stage == Stage::LocalDone {
        // No configuration, no log file: this only waits, beside the local stage.
        return match stages::wait_for_local_stage(&root) {
            Ok(_) => ExitCode::Ok.into(),
            Err(e) => {
                eprintln!("wala-provision: {e}");
                ExitCode::Failure.into()
            }
        };
    }
    if cli.stage == Stage::Local {
        stages::ready_at_hostname();
    }
    wala::base::logging::init(wala::base::logging::LogSettings {
        component: "Provision",
        verbose: cli.verbose,
        // The hostname stage runs before the local file systems are mounted (a separate /var):
        // the journal only.
        file: (!cli.dry_run && cli.stage != Stage::Hostname)
            .then(|| root.path(wala::base::logging::LOG_FILE)),
    });
    let loaded = wala::documents::conf::load_or_defaults(&root, cli.config.as_deref());
    loaded.log_problems();
    if loaded.config.logs_verbose {
        wala::base::logging::set_verbose(true);
    }
    if !loaded.config.wala_enabled && !cli.dry_run {
        log::info!("wala is turned off (Wala.Enabled=n): nothing to do");
        return ExitCode::Ok.into();
    }
    let runner = wala::base::cmd::SystemRunner;
    let ctx = Context {
        host: wala::host::Host { root: &root, config: &loaded.config, runner: &runner },
        kvp: if cli.dry_run { None } else { wala::host::kvp::KvpPool::for_root(&root) },
    };
    let source = match cli.ovf {
        Some(path) => OvfSource::File(path),
        None if cli.no_dvd => OvfSource::Absent,
        None => OvfSource::Dvd(Duration::from_secs(cli.dvd_timeout)),
    };
    let pps_wait_limit = cli.pps_wait_limit.map(Duration::from_secs);
    let hand_over = || provision::network::hand_over(&cli.root, cli.config.as_deref(), cli.verbose);
    run(&ctx, &source, cli.stage, cli.dry_run, pps_wait_limit, &hand_over).into()
}

/// Called as `wala-provision-generator` (the link in systemd's system-generators directory), this
/// program is that generator ([`provision::generator`]): `wala-provision-generator NORMAL-DIR
/// [EARLY-DIR LATE-DIR]`, as systemd runs it when it starts and on every reload.
fn as_generator() -> Option<std::process::ExitCode> {
    let mut args = std::env::args_os();
    let name = args.next()?;
    if std::path::Path::new(&name).file_name()?.to_str() != Some("wala-provision-generator") {
        return None;
    }
    let Some(dir) = args.next() else {
        eprintln!(
            "wala-provision-generator: usage: wala-provision-generator NORMAL-DIR [EARLY-DIR LATE-DIR]"
        );
        return Some(ExitCode::Usage.into());
    };
    match provision::generator::run(&HostRoot::live(), std::path::Path::new(&dir)) {
        Ok(_) => Some(ExitCode::Ok.into()),
        Err(e) => {
            eprintln!("wala-provision-generator: {e}");
            Some(ExitCode::Failure.into())
        }
    }
}

fn run(
    ctx: &Context<'_>,
    source: &OvfSource,
    stage: Stage,
    dry_run: bool,
    pps_wait_limit: Option<Duration>,
    hand_over: &dyn Fn() -> std::io::Error,
) -> ExitCode {
    if dry_run {
        return match provision::dry_run(ctx, source) {
            Ok(plan) => {
                print!("{plan}");
                ExitCode::Ok
            }
            Err(e) => {
                eprintln!("wala-provision: rejected: {e}");
                ExitCode::Rejected
            }
        };
    }
    let stages: &[stages::Stage] = match stage {
        Stage::LocalDone => &[],
        Stage::Hostname => &[stages::Stage::Hostname],
        Stage::Local => &[stages::Stage::Local],
        Stage::Imds => &[stages::Stage::Imds],
        Stage::ResourceDisk => &[stages::Stage::ResourceDisk],
        Stage::Pps => &[stages::Stage::Pps],
        Stage::HostKeys => &[stages::Stage::HostKeys],
        Stage::Network => &[stages::Stage::Network],
        Stage::All => &stages::ALL,
    };
    // No certificate work here (this program does not link the crypto library): a network stage
    // that needs certificates is handed over to wala-agentd.
    let options = stages::Options { pps_wait_limit, certificates: None };
    let mut ok = true;
    for &stage in stages {
        if stage == stages::Stage::Network && provision::network::needs_certificates(ctx) {
            // Returns only when wala-agentd could not be run: the stage then runs here and
            // reports ProvisioningFailed at its certificate-keys step.
            let e = hand_over();
            log::error!("{e}");
        }
        ok &= stages::run(ctx, source, stage, options);
    }
    if ok {
        ExitCode::Ok
    } else {
        ExitCode::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
