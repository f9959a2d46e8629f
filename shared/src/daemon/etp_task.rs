//! The extension-events task (the Extension Telemetry Pipeline, wire.md §10.5): every
//! `Debug.EtpCollectionPeriod` the event files extensions wrote are collected
//! ([`crate::extensions::etp::collect`]) and sent to the WireServer; unsent events are kept for
//! the next period, up to [`MAX_PENDING`].

use std::collections::VecDeque;
use std::time::Duration;

use super::{Env, Task, TaskError};
use crate::documents::wire::health::TelemetryEvent;
use crate::extensions::etp::{collect, to_wire, MAX_PENDING};
use crate::platform::telemetry::Common;

/// The daemon's collector and sender of extension events.
pub struct EtpTask {
    pub client: crate::platform::wireserver::WireClient,
    pub common: Common,
    pub period: Duration,
    pending: VecDeque<TelemetryEvent>,
}

impl std::fmt::Debug for EtpTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtpTask").field("pending", &self.pending.len()).finish_non_exhaustive()
    }
}

impl EtpTask {
    /// The task, on `Debug.EtpCollectionPeriod`.
    pub fn new(
        client: crate::platform::wireserver::WireClient,
        common: Common,
        config: &crate::documents::conf::Config,
    ) -> Self {
        let period = Duration::from_secs(config.etp_collection_period.max(1));
        Self { client, common, period, pending: VecDeque::new() }
    }
}

impl Task for EtpTask {
    fn name(&self) -> &'static str {
        "extension-events"
    }
    fn period(&self) -> Duration {
        self.period
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        let collected = collect(&env.host.root.path(env.host.config.extension_log_dir.as_path()));
        if collected.events.is_empty() && self.pending.is_empty() {
            return Ok(());
        }
        // The container of the goal state last taken in (empty before the first).
        self.common.container_id = env.state.identity().map(|i| i.container_id).unwrap_or_default();
        self.pending.extend(collected.events.iter().map(|c| to_wire(c, &self.common)));
        let over = self.pending.len().saturating_sub(MAX_PENDING);
        if over > 0 {
            log::warn!("extension events: {over} unsent events dropped (at most {MAX_PENDING} are kept)");
            self.pending.drain(..over);
        }
        let events: Vec<TelemetryEvent> = self.pending.iter().cloned().collect();
        self.client.send_telemetry(&events)?;
        self.pending.clear();
        Ok(())
    }
}
