//! Running the provisioning stages by name, one after the other: what `wala-provision --stage`
//! does, and what `wala-agentd daemon --provision` (and so `waagent -daemon`) does before the
//! daemon starts. Each stage decides on its own whether there is anything left to do (the marker,
//! the hand-off state), so running them again on a provisioned VM changes nothing.

use super::{Context, NetworkOutcome, OvfSource};
use crate::timeline::{self, Outcome};

/// A provisioning stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No network: OVF, hostname, user, password, sshd, fast host keys, inline keys, custom data.
    Local,
    /// The resource disk and swap on it.
    ResourceDisk,
    /// The host keys the local stage left to make, then sshd reloaded.
    HostKeys,
    /// WireServer: certificates for fingerprint keys, then Ready or ProvisioningFailed.
    Network,
    /// All of the above, in that order.
    All,
}

impl Stage {
    fn includes(self, other: Stage) -> bool {
        self == Stage::All || self == other
    }
}

/// Run `stage` (every stage for [`Stage::All`]); each is recorded in the boot timeline. A failed
/// stage is logged and does not stop the next one (the network stage must still report a failed
/// local stage). Returns whether every stage that ran succeeded.
pub fn run(ctx: &Context<'_>, source: &OvfSource, stage: Stage) -> bool {
    let mut ok = true;
    let begin = |name| timeline::Stage::begin(&ctx.root, name);
    if stage.includes(Stage::Local) {
        let recorded = begin("local");
        match super::run_local(ctx, source) {
            Ok(outcome) => {
                log::info!("local stage finished for VM {}", outcome.vm_id);
                recorded.end(if outcome.skipped.is_some() { Outcome::Skipped } else { Outcome::Ok });
            }
            Err(e) => {
                log::error!("local stage failed: {e}");
                recorded.end(Outcome::Failed);
                ok = false;
            }
        }
    }
    if stage.includes(Stage::ResourceDisk) {
        let recorded = begin("resource-disk");
        match super::run_resource_disk(ctx) {
            Ok(disk) => {
                log::info!("resource-disk stage: {disk:?}");
                recorded.end(if disk.is_some() { Outcome::Ok } else { Outcome::Skipped });
            }
            Err(e) => {
                log::error!("resource-disk stage failed: {e}");
                recorded.end(Outcome::Failed);
                ok = false;
            }
        }
    }
    if stage.includes(Stage::HostKeys) {
        let recorded = begin("host-keys");
        match super::run_host_keys(ctx) {
            Ok(made) => {
                log::info!("host-keys stage: {}", if made { "keys made" } else { "nothing to do" });
                recorded.end(if made { Outcome::Ok } else { Outcome::Skipped });
            }
            Err(e) => {
                log::error!("host-keys stage failed: {e}");
                recorded.end(Outcome::Failed);
                ok = false;
            }
        }
    }
    if stage.includes(Stage::Network) {
        let recorded = begin("network");
        let result = super::network::run(ctx);
        let provisioned = !matches!(result, Ok(NetworkOutcome::NothingToDo(_)));
        match result {
            Ok(outcome) => {
                log::info!("network stage: {outcome:?}");
                recorded.end(if provisioned { Outcome::Ok } else { Outcome::Skipped });
            }
            Err(e) => {
                log::error!("network stage failed: {e}");
                recorded.end(Outcome::Failed);
                ok = false;
            }
        }
        // The timeline of a boot that provisioned outlives /run.
        if provisioned {
            timeline::keep_copy(&ctx.root, ctx.config.lib_dir.as_path());
        }
    }
    ok
}
