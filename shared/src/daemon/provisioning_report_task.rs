//! The provisioning report task: a provisioning result that never reached the platform is
//! reported (spec: agentd retries the report), every minute until it is through.

use std::time::Duration;

use crate::daemon::{Env, Task, TaskError};
use crate::platform::wireserver::WireClient;

/// Sends the provisioning result if the network stage could not.
#[derive(Debug)]
pub struct ProvisioningReport {
    client: WireClient,
    done: bool,
}

impl ProvisioningReport {
    pub fn new(client: WireClient) -> Self {
        Self { client, done: false }
    }
}

impl Task for ProvisioningReport {
    fn name(&self) -> &'static str {
        "provisioning-report"
    }
    fn period(&self) -> Duration {
        Duration::from_secs(60)
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        if self.done {
            return Ok(());
        }
        let ctx = crate::provision::Context { host: env.host, kvp: None };
        crate::provision::retry_final_report(&ctx, &self.client, &self.client)?;
        self.done = true;
        Ok(())
    }
}
