//! The one list of the daemon's tasks: which ones the configuration turns on, with their periods.
//! Where each runs is the task's own [`Lane`](super::Lane); what they share is the agent state
//! ([`super::State`]), so the order of this list decides nothing.

use std::time::Duration;

use crate::base::root::HostRoot;
use crate::daemon::{
    etp_task, extensions_task, firewall_task, goal_state_task, log_collection_task, memory, monitors_task,
    provisioning_report_task, remote_access_task, telemetry_task, Task,
};
use crate::documents::conf::Config;

/// Periods set on the command line (tests and benchmarks) in place of the configured ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// The goal-state poll (and remote-access) period.
    pub goal_state_period: Option<Duration>,
    /// The status heartbeat ([`goal_state_task::STATUS_HEARTBEAT`]).
    pub status_heartbeat: Option<Duration>,
    /// `Wala.WireServerPollPeriod`; with only `goal_state_period` set, the same as that (every
    /// poll fetches the WireServer goal state, as waagent).
    pub wireserver_period: Option<Duration>,
}

/// Every task the daemon runs: the OS monitors, and the platform tasks (goal state and status,
/// extensions, remote-access accounts, firewall, telemetry, log collection, a provisioning report
/// that never got through), and letting go of the program's pages after start-up.
pub fn all_tasks(root: &HostRoot, config: &Config, overrides: &Overrides) -> Vec<Box<dyn Task + Send>> {
    use crate::platform::{endpoint, wireserver::WireClient};
    let endpoints = endpoint::resolve(config, root, std::time::SystemTime::now());
    let lib = root.path(config.lib_dir.as_path());
    let wire = || WireClient::new(endpoints.clone(), lib.clone());
    let hgap = || crate::platform::hostgaplugin::HostGaPluginClient::new(endpoints.hostgaplugin.clone());
    let storage = || {
        crate::platform::http::HttpClient::storage(&crate::platform::http::StorageProxy::from_config(config))
    };
    let mut tasks = standard_tasks(config);
    if config.enable_firewall {
        tasks.push(Box::new(firewall_task::FirewallTask {
            destination: endpoints.wireserver.ipv4().unwrap_or(std::net::Ipv4Addr::new(168, 63, 129, 16)),
            period: Duration::from_secs(config.enable_firewall_period.max(1)),
        }));
    }
    if let Some(ip) = endpoints.wireserver.ipv4() {
        let period = Duration::from_secs(config.monitor_dhcp_client_restart_period.max(1));
        tasks.push(Box::new(monitors_task::DhcpClientRestart::new(period, ip)));
    }
    tasks.push(Box::new(provisioning_report_task::ProvisioningReport::new(wire())));
    // With extensions off, waagent polls every 5 minutes; otherwise every
    // Extensions.InitialGoalStatePeriod until the first extensions goal state is done.
    let secs = |s: u64| Duration::from_secs(s.max(1));
    let (period, initial) = match overrides.goal_state_period {
        Some(p) => (p, p),
        None if !config.extensions_enabled => (secs(300), secs(300)),
        None => (secs(config.goal_state_period), secs(config.initial_goal_state_period())),
    };
    let wireserver_period = overrides
        .wireserver_period
        .or(overrides.goal_state_period)
        .unwrap_or(Duration::from_secs(config.wala_wireserver_poll_period));
    let mut goal_state = goal_state_task::GoalStateTask::new(wire(), hgap(), storage(), period)
        .with_initial_period(initial)
        .with_wireserver_period(wireserver_period);
    if let Some(heartbeat) = overrides.status_heartbeat {
        goal_state.heartbeat = heartbeat;
    }
    tasks.push(Box::new(goal_state));
    tasks.push(Box::new(extensions_task::ExtensionsTask::new(
        hgap(),
        storage(),
        endpoints.wireserver.host.clone(),
    )));
    tasks.push(Box::new(remote_access_task::RemoteAccessTask::new(wire(), period)));
    tasks.push(Box::new(telemetry_task::TelemetryTask {
        client: wire(),
        common: crate::platform::telemetry::Common::detect(root),
    }));
    tasks.push(Box::new(etp_task::EtpTask::new(
        wire(),
        crate::platform::telemetry::Common::detect(root),
        config,
    )));
    tasks.push(Box::new(memory::ProgramPagesTask));
    if config.logs_collect {
        tasks.push(Box::new(log_collection_task::UploadTask {
            hgap: hgap(),
            period: Duration::from_secs(config.logs_collect_period.max(60)),
        }));
    }
    tasks
}

/// The OS monitors the configuration turns on.
pub fn standard_tasks(config: &Config) -> Vec<Box<dyn Task + Send>> {
    let secs = |s: u64| Duration::from_secs(s.max(1));
    let mut tasks: Vec<Box<dyn Task + Send>> = vec![Box::new(monitors_task::PersistentNetRules {
        period: secs(config.remove_persistent_net_rules_period),
    })];
    if let Some(timeout) = config.root_device_scsi_timeout {
        tasks.push(Box::new(monitors_task::ScsiTimeout {
            timeout,
            period: secs(config.root_device_scsi_timeout_period),
        }));
    }
    if config.monitor_hostname {
        tasks.push(Box::new(monitors_task::HostnameMonitor {
            period: secs(config.monitor_hostname_period),
            current: crate::host::hostname::kernel_hostname,
        }));
    }
    tasks
}
