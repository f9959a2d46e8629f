//! The daemon from start to stop, as `wala-agentd daemon` runs it: the configuration, one
//! daemon per machine, provisioning first when asked (`waagent -daemon`), the start-up
//! switches (FIPS, RDMA, the `AutoUpdate.*` notice), the `AgentStart` event, signals, the pid
//! file, then the tasks ([`super::run`]) until a signal or a limit. The binary sets up logging
//! and maps the [`Outcome`] or [`StartError`] to an exit code.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::base::cmd::SystemRunner;
use crate::base::root::HostRoot;
use crate::documents::conf;

use super::{instance, signals, DaemonError, Limits, Overrides, Owned, PidFile, Summary};

/// How a daemon run ended without an error.
#[derive(Debug)]
pub enum Outcome {
    /// The tasks ran until a signal or the wake-up limit.
    Ran(Summary),
    /// `Wala.Enabled=n`: nothing ran (systemd was told READY, so the unit does not wait).
    TurnedOff,
    /// Another wala daemon holds the machine's lock: this one stopped (systemd was told READY).
    AnotherRunning,
}

/// The daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot take the daemon's lock: {0}")]
    Lock(#[source] instance::InstanceError),
    #[error("cannot set up signal handling: {0}")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Run(#[from] DaemonError),
}

/// What `wala-agentd daemon` asks for.
#[derive(Debug, Default)]
pub struct StartOptions {
    /// Provision first, waiting this long for the DVD (`daemon --provision`, `waagent -daemon`).
    pub provision: Option<Duration>,
    pub limits: Limits,
    pub overrides: Overrides,
}

/// Run the daemon under `root` with the configuration at `config_file` (waagent's default path
/// when `None`).
pub fn start(
    root: &HostRoot,
    config_file: Option<&Path>,
    options: &StartOptions,
) -> Result<Outcome, StartError> {
    let loaded = conf::load_or_defaults(root, config_file);
    loaded.log_problems();
    if loaded.config.logs_verbose {
        crate::base::logging::set_verbose(true);
    }
    if !loaded.config.wala_enabled {
        log::info!("wala is turned off (Wala.Enabled=n): the daemon does not run");
        crate::base::notify::notify("READY=1");
        return Ok(Outcome::TurnedOff);
    }
    // One daemon per machine: a unit running `waagent -daemon` beside wala-agentd.service finds
    // the lock taken and stops, as waagent's daemon does when its pid file names a live daemon.
    let _instance = match instance::acquire(root) {
        Ok(lock) => lock,
        Err(e @ instance::InstanceError::Busy { .. }) => {
            log::warn!("{e}: this one exits");
            crate::base::notify::notify("READY=1");
            return Ok(Outcome::AnotherRunning);
        }
        Err(e) => return Err(StartError::Lock(e)),
    };
    if let Some(dvd_wait) = options.provision {
        provision_first(root, &loaded.config, dvd_wait);
    }
    crate::crypto::apply_fips(root, loaded.config.enable_fips);
    crate::host::platform_features::log_auto_update_once(&loaded.config);
    if loaded.config.enable_rdma {
        let endpoints = crate::platform::endpoint::resolve(&loaded.config, root, SystemTime::now());
        let size = crate::platform::imds::ImdsClient::new(endpoints.imds)
            .instance()
            .ok()
            .and_then(|i| i.compute.vm_size);
        crate::host::platform_features::setup_rdma(root, &SystemRunner, &loaded.config, size.as_deref());
    }
    let started =
        crate::platform::telemetry::AgentEvent::new("AgentStart", true, "daemon started", Duration::ZERO);
    crate::platform::telemetry::record(root, loaded.config.lib_dir.as_path(), &started);
    let tasks = super::all_tasks(root, &loaded.config, &options.overrides);
    // SIGTERM and the others are blocked and go to the signalfd from here on, before the pid file
    // names this process: a signal sent as soon as it appears is handled, not fatal.
    let signals = signals::SignalFd::new().map_err(StartError::Signals)?;
    let _pid_file = PidFile::write(root, loaded.config.pid_file.as_path());
    let owned = Owned { root: root.clone(), config: loaded.config, runner: SystemRunner };
    Ok(Outcome::Ran(super::run(owned, tasks, options.limits, signals)?))
}

/// As waagent's daemon: provision (each stage skips what is done), then the extension handler,
/// also when provisioning failed (the failure has been reported).
fn provision_first(root: &HostRoot, config: &conf::Config, dvd_wait: Duration) {
    let ctx = crate::provision::Context {
        host: crate::host::Host { root, config, runner: &SystemRunner },
        kvp: crate::host::kvp::KvpPool::for_root(root),
    };
    let source = crate::provision::OvfSource::Dvd(dvd_wait);
    let options = crate::provision::stages::Options {
        certificates: Some(crate::provision::network::IN_PROCESS),
        ..Default::default()
    };
    if !crate::provision::stages::run(&ctx, &source, crate::provision::stages::Stage::All, options) {
        log::warn!("provisioning did not complete (see above); the daemon starts anyway");
    }
}
