//! The telemetry task: every minute, the events queued by [`crate::platform::telemetry::record`] are sent
//! to the WireServer in batches, with the container id of the goal state last taken in (from the
//! agent state, [`super::State`]).

use std::time::Duration;

use crate::daemon::{Env, Task, TaskError};
use crate::documents::wire::health::TelemetryEvent;
use crate::platform::telemetry::{queued, to_wire, Common};

/// The daemon's sender: every minute, the queued events in batches; sent files are removed.
pub struct TelemetryTask {
    pub client: crate::platform::wireserver::WireClient,
    pub common: Common,
}

impl std::fmt::Debug for TelemetryTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryTask").field("common", &self.common).finish_non_exhaustive()
    }
}

impl Task for TelemetryTask {
    fn name(&self) -> &'static str {
        "telemetry"
    }
    fn period(&self) -> Duration {
        Duration::from_secs(60)
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        let lib = env.host.config.lib_dir.as_path();
        let events = queued(env.host.root, lib);
        if events.is_empty() {
            return Ok(());
        }
        // The container of the goal state last taken in (empty before the first).
        self.common.container_id = env.state.identity().map(|i| i.container_id).unwrap_or_default();
        let wire: Vec<TelemetryEvent> = events.iter().map(|(_, e)| to_wire(e, &self.common)).collect();
        self.client.send_telemetry(&wire)?;
        for (path, _) in events {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
}
