//! The extensions task: brings the handlers on disk to the extensions goal state the goal-state
//! task hands it ([`super::State::hand_off_extensions`]): downloads, install, enable and the rest in
//! dependency order (see [`crate::extensions::lifecycle`]), the `Extensions.WaitForCloudInit`
//! wait, and the waits for dependencies (up to 90 minutes).
//!
//! All of that runs on a worker thread of its own ([`Lane::Own`]): the goal-state poll, the status
//! heartbeat, the firewall and the monitors go on meanwhile on the periodic worker. Each command
//! is killed at its timeout, and when the daemon stops the process group of any command still
//! running is killed (`cmd::kill_running_groups`). When it is done, the task publishes the goal
//! state and its handling state ([`super::State::extensions_done`]), which wakes the goal-state
//! task to upload the status that reports it.

use std::time::{Duration, Instant};

use crate::daemon::state::Processed;
use crate::daemon::{Env, Lane, Task, TaskError};
use crate::extensions::lifecycle::{Context, Extensions};
use crate::platform::hostgaplugin::HostGaPluginClient;
use crate::platform::http::HttpClient;

/// The task's name, which [`super::State::kick`] wakes.
pub const NAME: &str = "extensions";

/// Handles the extensions goal states handed to it.
pub struct ExtensionsTask {
    pub hgap: HostGaPluginClient,
    pub storage: HttpClient,
    /// The WireServer's address, for `AZURE_GUEST_AGENT_WIRE_PROTOCOL_ADDRESS`.
    pub wire_address: String,
    /// Extension handling state kept between goal states.
    pub extensions: Extensions,
}

impl std::fmt::Debug for ExtensionsTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtensionsTask").field("extensions", &self.extensions).finish_non_exhaustive()
    }
}

impl ExtensionsTask {
    pub fn new(hgap: HostGaPluginClient, storage: HttpClient, wire_address: String) -> Self {
        Self { hgap, storage, wire_address, extensions: Extensions::default() }
    }
}

impl Task for ExtensionsTask {
    fn name(&self) -> &'static str {
        NAME
    }
    /// Woken by each hand-off; the period only bounds how long a lost wake-up could go unseen.
    fn period(&self) -> Duration {
        Duration::from_secs(3600)
    }
    fn lane(&self) -> Lane {
        Lane::Own
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        while let Some((number, handoff)) = env.state.take_extensions() {
            let gs = handoff.goal_state;
            if let Some(why) = crate::extensions::report::disabled(env.host.root, env.host.config) {
                log::info!("extension processing is off ({why:?}): goal state {} is not run", gs.id);
            } else if self.extensions.last_processed.as_deref() != Some(gs.id.as_str()) {
                let started = Instant::now();
                log::info!("processing extensions goal state {} ({} handlers)", gs.id, gs.extensions.len());
                let downloader = crate::extensions::download::Downloader {
                    storage: &self.storage,
                    hgap: &self.hgap,
                    who: &handoff.who,
                    fast_track: gs.is_fast_track(),
                    deadline: crate::extensions::download::DOWNLOAD_DEADLINE,
                    unpack_limits: crate::extensions::download::UnpackLimits::from_config(env.host.config),
                    max_package_size: crate::extensions::download::Downloader::max_package_size(
                        env.host.config,
                    ),
                };
                let ctx = Context {
                    host: env.host,
                    downloader: &downloader,
                    wire_address: self.wire_address.clone(),
                };
                self.extensions.process(&ctx, &gs);
                // Packages, downloads and unpacking buffers: none of it is the idle loop's.
                crate::daemon::memory::release_free_heap();
                log::info!(
                    "extensions goal state {} processed in {} ms",
                    gs.id,
                    started.elapsed().as_millis()
                );
            }
            env.state.extensions_done(Processed {
                number,
                goal_state: gs,
                extensions: self.extensions.clone(),
            });
        }
        Ok(())
    }
}
