//! `wala-fabric`: run the fake Azure fabric until SIGTERM/SIGINT (or `--exit-after`).
//!
//! Exit codes: 0 stopped by a signal or `--exit-after`; 1 start-up failed (bad scenario, faults
//! file, port in use); 2 bad command line.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use wala_fabric::{faults, Fabric, FabricConfig, Scenario};

/// Fake Azure fabric for tests: WireServer, HostGAPlugin and IMDS over HTTP on loopback.
///
/// Prints the bound addresses as one JSON line on stdout
/// (`{"wireserver":"127.0.0.1:P","hostgaplugin":"127.0.0.1:P","imds":"127.0.0.1:P"}`), serves until
/// SIGTERM or SIGINT, and is driven at run time through control endpoints on the WireServer
/// listener: /__fabric/requests, /__fabric/faults, /__fabric/incarnation, /__fabric/health,
/// /__fabric/blob, /__fabric/vmsettings, /__fabric/imds, /__fabric/certificates,
/// /__fabric/reprovisiondata, /__fabric/remoteaccess, /__fabric/traffic.
#[derive(Debug, Parser)]
#[command(name = "wala-fabric", version)]
struct Cli {
    /// Scenario directory (with scenario.json); the built-in scenario when absent.
    #[arg(long, value_name = "DIR")]
    scenario: Option<PathBuf>,
    /// Address to bind the three listeners to. Keep it on loopback unless a VM must reach it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// WireServer port (0: ephemeral).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    wire_port: u16,
    /// HostGAPlugin port (0: ephemeral).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    hgap_port: u16,
    /// IMDS port (0: ephemeral).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    imds_port: u16,
    /// Append every request as a JSON line to FILE (created or truncated).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Faults active from the start: a JSON fault object or array (see the crate docs).
    #[arg(long, value_name = "FILE")]
    faults: Option<PathBuf>,
    /// Also write the address JSON line to FILE (written atomically once all listeners are bound).
    #[arg(long, value_name = "FILE")]
    ports_file: Option<PathBuf>,
    /// Stop after SECS seconds even without a signal.
    #[arg(long, value_name = "SECS")]
    exit_after: Option<u64>,
    /// Serve this IMDS instance document (JSON) instead of the scenario's.
    #[arg(long, value_name = "FILE")]
    imds_instance: Option<PathBuf>,
    /// Put the platform's own addresses (168.63.129.16:80, :32526, 169.254.169.254:80) in the
    /// documents served, instead of the bound ones: for a VM that reaches the fabric through relays
    /// at those addresses
    #[arg(long)]
    advertise_platform_addresses: bool,
    /// Close an idle keep-alive connection after MS milliseconds; 0: no keep-alive, every answer
    /// says `Connection: close`
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    keep_alive_idle_ms: u64,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("wala-fabric: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Block the stop signals before any thread exists so every thread inherits the mask and the
    // main thread can wait for them synchronously.
    let signals = block_stop_signals().context("blocking SIGTERM/SIGINT")?;
    let scenario = match &cli.scenario {
        Some(dir) => Scenario::from_dir(dir)?,
        None => Scenario::builtin()?,
    };
    let mut config = FabricConfig::new(scenario);
    config.bind = cli.bind;
    config.wire_port = cli.wire_port;
    config.hgap_port = cli.hgap_port;
    config.imds_port = cli.imds_port;
    config.record_file = cli.record.clone();
    config.keep_alive_idle = std::time::Duration::from_millis(cli.keep_alive_idle_ms);
    if cli.advertise_platform_addresses {
        config.advertise = Some(wala_fabric::platform_addresses());
    }
    if let Some(path) = &cli.imds_instance {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        anyhow::ensure!(
            value.is_object(),
            "{}: the IMDS instance document must be a JSON object",
            path.display()
        );
        config.imds_instance = Some(text);
    }
    if let Some(path) = &cli.faults {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        config.faults =
            faults::parse_faults(&text).with_context(|| format!("parsing faults in {}", path.display()))?;
    }
    let mut fabric = Fabric::start(config)?;
    let line = serde_json::json!({
        "wireserver": fabric.wire_addr().to_string(),
        "hostgaplugin": fabric.hgap_addr().to_string(),
        "imds": fabric.imds_addr().to_string(),
    })
    .to_string();
    if let Some(path) = &cli.ports_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{line}\n")).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing to stdout")?;
    out.flush().context("writing to stdout")?;
    drop(out);
    wait_for_stop(&signals, cli.exit_after.map(Duration::from_secs));
    fabric.stop();
    Ok(())
}

fn block_stop_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data that sigemptyset initialises; the pointers are to locals that
    // live for the calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

/// Waits for SIGTERM/SIGINT, or until `limit` has passed.
fn wait_for_stop(set: &libc::sigset_t, limit: Option<Duration>) {
    let deadline = limit.map(|l| std::time::Instant::now() + l);
    loop {
        let remaining = match deadline {
            Some(d) => match d.checked_duration_since(std::time::Instant::now()) {
                Some(r) if !r.is_zero() => r,
                _ => return,
            },
            None => Duration::from_secs(3600),
        };
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(remaining.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(remaining.subsec_nanos() as i32),
        };
        // SAFETY: `set` is an initialised signal set and `ts` a valid timespec, both alive for the
        // call; a null info pointer is allowed.
        let rc = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
        if rc > 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
