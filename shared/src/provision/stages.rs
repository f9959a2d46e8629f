//! Running the provisioning stages by name, one after the other: what `wala-provision --stage`
//! does, and what `wala-agentd daemon --provision` (and so `waagent -daemon`) does before the
//! daemon starts. Each stage decides on its own whether there is anything left to do (the marker,
//! the hand-off state, the flags in /run), so running them again on a provisioned VM changes
//! nothing.

use std::fmt::Display;
use std::time::Duration;

use super::{from_imds, preprovisioned, Context, NetworkOutcome, OvfSource};
use crate::timeline::{self, Outcome};

/// A provisioning stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No network: OVF, hostname, user, password, sshd, fast host keys, inline keys, custom data.
    Local,
    /// Only when the local stage found no DVD on a disk never provisioned: the request from IMDS.
    Imds,
    /// The resource disk and swap on it.
    ResourceDisk,
    /// Only on a pre-provisioned pool VM: the pool's Ready, the wait, then the user's OVF.
    Pps,
    /// The host keys the local stage left to make, then sshd reloaded.
    HostKeys,
    /// WireServer: certificates for fingerprint keys, then Ready or ProvisioningFailed.
    Network,
    /// All of the above, in that order.
    All,
}

/// Every stage, in the order [`Stage::All`] runs them.
pub const ALL: [Stage; 6] =
    [Stage::Local, Stage::Imds, Stage::ResourceDisk, Stage::Pps, Stage::HostKeys, Stage::Network];

impl Stage {
    fn includes(self, other: Stage) -> bool {
        self == Stage::All || self == other
    }
}

/// What the stages may be told beyond the context.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Bounds each of the pps stage's waits (by default a pool VM waits as long as it is pooled).
    pub pps_wait_limit: Option<Duration>,
    /// The network stage's certificate work, from a program that links the crypto library
    /// ([`super::network::IN_PROCESS`]); without it, keys named by certificate thumbprint fail.
    pub certificates: Option<super::network::CertificateWork>,
}

/// Run `stage` (every stage for [`Stage::All`]); each is recorded in the boot timeline. A failed
/// stage is logged and does not stop the next one (the network stage must still report a failed
/// local stage). Returns whether every stage that ran succeeded.
pub fn run(ctx: &Context<'_>, source: &OvfSource, stage: Stage, options: Options) -> bool {
    let mut ok = true;
    if stage.includes(Stage::Local) {
        ok &= record(
            ctx,
            "local",
            || super::run_local(ctx, source),
            |o| {
                log::info!("local stage finished for VM {} ({})", o.vm_id, o.lifecycle.describe());
                o.skipped.is_none()
            },
        )
        .is_some();
    }
    if stage.includes(Stage::Imds) {
        ok &= record(
            ctx,
            "IMDS",
            || from_imds::run(ctx),
            |o| {
                log::info!("IMDS stage: {o:?}");
                *o != from_imds::ImdsOutcome::NothingToDo
            },
        )
        .is_some();
    }
    if stage.includes(Stage::ResourceDisk) {
        ok &= record(
            ctx,
            "resource-disk",
            || super::run_resource_disk(ctx),
            |disk| {
                log::info!("resource-disk stage: {disk:?}");
                disk.is_some()
            },
        )
        .is_some();
    }
    if stage.includes(Stage::Pps) {
        let wait_limit = options.pps_wait_limit;
        ok &= record(
            ctx,
            "pps",
            || preprovisioned::run_stage(ctx, wait_limit),
            |o| match o {
                preprovisioned::PoolOutcome::NothingToDo(why) => {
                    log::debug!("pps stage: {why}");
                    false
                }
                other => {
                    log::info!("pps stage: {other:?}");
                    true
                }
            },
        )
        .is_some();
    }
    if stage.includes(Stage::HostKeys) {
        ok &= record(
            ctx,
            "host-keys",
            || super::run_host_keys(ctx),
            |made| {
                log::info!("host-keys stage: {}", if *made { "keys made" } else { "nothing to do" });
                *made
            },
        )
        .is_some();
    }
    if stage.includes(Stage::Network) {
        let done = record(
            ctx,
            "network",
            || super::network::run(ctx, options.certificates),
            |o| {
                log::info!("network stage: {o:?}");
                !matches!(o, NetworkOutcome::NothingToDo(_))
            },
        );
        ok &= done.is_some();
        // The timeline of a boot that provisioned (or failed to) outlives /run.
        if done != Some(false) {
            timeline::keep_copy(&ctx.root, ctx.config.lib_dir.as_path());
        }
    }
    ok
}

/// Run one stage and record it in the log and the boot timeline (`name` lower-case there): `did`
/// logs a success and says whether the stage did anything (else it was skipped). `None` when the
/// stage failed, else what `did` said.
fn record<T, E: Display>(
    ctx: &Context<'_>,
    name: &str,
    stage: impl FnOnce() -> Result<T, E>,
    did: impl FnOnce(&T) -> bool,
) -> Option<bool> {
    let recorded = timeline::Stage::begin(&ctx.root, &name.to_lowercase());
    match stage() {
        Ok(value) => {
            let did = did(&value);
            recorded.end(if did { Outcome::Ok } else { Outcome::Skipped });
            Some(did)
        }
        Err(e) => {
            log::error!("{name} stage failed: {e}");
            recorded.end(Outcome::Failed);
            None
        }
    }
}
