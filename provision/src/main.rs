//! `wala-provision`: the one-shot early-boot provisioning binary.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use wala::exit::{ExitCode, EXIT_CODES_HELP};
use wala::provision::{self, stages, Context, OvfSource};
use wala::root::HostRoot;

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
    /// How long to wait for the provisioning DVD to appear
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    dvd_timeout: u64,
    /// Print the plan (secrets redacted) and change nothing; a rejected document exits 5
    #[arg(long)]
    dry_run: bool,
    /// Which stage to run
    #[arg(long, value_enum, default_value_t = Stage::All)]
    stage: Stage,
    /// Verbose logging (as Logs.Verbose=y)
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stage {
    /// No network: OVF, hostname, user, password, sshd, Ed25519 and ECDSA host keys, inline keys,
    /// custom data
    Local,
    /// The resource disk and swap on it (every boot; nothing waits for it)
    ResourceDisk,
    /// The RSA (or DSA) host keys the local stage left to make, after sshd has started; then
    /// sshd is reloaded
    HostKeys,
    /// WireServer: certificates for fingerprint keys, then Ready or ProvisioningFailed
    Network,
    /// All stages, one after the other
    All,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let root = HostRoot::new(&cli.root);
    wala::logging::init(wala::logging::LogSettings {
        component: "Provision",
        verbose: cli.verbose,
        file: (!cli.dry_run).then(|| root.path(wala::logging::LOG_FILE)),
    });
    let loaded = wala::conf::load_or_defaults(&root, cli.config.as_deref());
    loaded.log_problems();
    if loaded.config.logs_verbose {
        wala::logging::set_verbose(true);
    }
    if !loaded.config.wala_enabled && !cli.dry_run {
        log::info!("wala is turned off (Wala.Enabled=n): nothing to do");
        return ExitCode::Ok.into();
    }
    let runner = wala::cmd::SystemRunner;
    let ctx = Context {
        kvp: if cli.dry_run { None } else { wala::kvp::KvpPool::for_root(&root) },
        root,
        config: &loaded.config,
        runner: &runner,
    };
    let source = match cli.ovf {
        Some(path) => OvfSource::File(path),
        None => OvfSource::Dvd(Duration::from_secs(cli.dvd_timeout)),
    };
    run(&ctx, &source, cli.stage, cli.dry_run).into()
}

fn run(ctx: &Context<'_>, source: &OvfSource, stage: Stage, dry_run: bool) -> ExitCode {
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
    let stage = match stage {
        Stage::Local => stages::Stage::Local,
        Stage::ResourceDisk => stages::Stage::ResourceDisk,
        Stage::HostKeys => stages::Stage::HostKeys,
        Stage::Network => stages::Stage::Network,
        Stage::All => stages::Stage::All,
    };
    if stages::run(ctx, source, stage) {
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
