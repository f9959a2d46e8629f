//! Running the provisioning stages by name, one after the other: what `wala-provision --stage`
//! does, and what `wala-agentd daemon --provision` (and so `waagent -daemon`) does before the
//! daemon starts. Each stage decides on its own whether there is anything left to do (the marker,
//! the hand-off state, the flags in /run), so running them again on a provisioned VM changes
//! nothing.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::base::files::{self, FileError};
use crate::base::root::HostRoot;
use crate::base::timeline::{self, Outcome};
use crate::host::Host;
use crate::provision::hostname_stage::HostnameOutcome;
use crate::provision::{from_imds, preprovisioned, Context, NetworkOutcome, OvfSource};

/// Held (an exclusive `flock`) by the local stage from its start to its end, under
/// [`HostRoot::kernel`]: [`wait_for_local_stage`] waits for it.
pub const LOCAL_STAGE_LOCK: &str = "/run/wala/local-stage.lock";

/// Written by the local stage in the initramfs, under [`HostRoot::kernel`] (the `/run` the real
/// root keeps), when it left nothing for the local stage on the real root
/// ([`super::nothing_left_for_the_real_root`]): `wala-provision-local.service` is then skipped
/// (`ConditionPathExists=!`), so the network need not wait for a process that would only find
/// that out. Removed when something is left.
pub const LOCAL_DONE_IN_INITRD: &str = "/run/wala/local-stage-done-in-initrd";

/// The initramfs's own marker file, as its units test for it.
const INITRD_RELEASE: &str = "/etc/initrd-release";

/// Whether this process tells systemd it is ready once the hostname is set ([`ready_at_hostname`]).
static READY_AT_HOSTNAME: AtomicBool = AtomicBool::new(false);
/// Whether that was said.
static READY_SENT: AtomicBool = AtomicBool::new(false);

/// Make this process's local stage send systemd `READY=1` as soon as the hostname is settled
/// (set, or known to need no change), not when the stage ends: `wala-provision-local.service` is
/// `Type=notify` and `Before=network-pre.target`, so the network comes up with the new name while
/// the user is made. What must wait for the whole stage (sshd, logins, the other stages) waits
/// for `wala-provision-local-done.service` ([`wait_for_local_stage`]).
pub fn ready_at_hostname() {
    READY_AT_HOSTNAME.store(true, Ordering::SeqCst);
}

/// The hostname is settled: `READY=1` when [`ready_at_hostname`] asked for it (once), and the
/// stage's priority back to the default ([`back_to_default_nice`]).
pub(super) fn hostname_settled() {
    if READY_AT_HOSTNAME.load(Ordering::SeqCst) && !READY_SENT.swap(true, Ordering::SeqCst) {
        crate::base::notify::notify("READY=1");
    }
    back_to_default_nice();
}

/// The local stage's unit starts it at nice -10: first in systemd's start order, and ahead of
/// the rest of the boot while the network waits for its hostname (where the generator says so).
/// Once the hostname is settled only sshd waits for the stage, and sshd also waits for the
/// network's own start (`systemd-networkd`: 3-5 s under emulation, which in the bench's journals
/// ended 3 s after the stage did): from here the stage and its children (`useradd`, already
/// running on its own thread) get the CPU on equal terms with it. The whole process group is
/// changed, since nice values belong to threads and the forked commands keep theirs. A process
/// started at nice 0 or above is left as it is.
fn back_to_default_nice() {
    // SAFETY: getpriority and setpriority on this process's own group; a failure leaves the
    // priority as it was, which is harmless.
    unsafe {
        if libc::getpriority(libc::PRIO_PROCESS, 0) < 0 {
            libc::setpriority(libc::PRIO_PGRP, 0, 0);
        }
    }
}

/// What `wala-provision --stage local-done` does: wait until this boot's local stage has ended
/// (its lock, [`LOCAL_STAGE_LOCK`], is free; a stage that crashed frees it too). Returns how long it
/// waited; at once when no local stage ran this boot.
pub fn wait_for_local_stage(root: &HostRoot) -> Result<Duration, FileError> {
    let started = Instant::now();
    files::wait_unlocked(&root.kernel().path(LOCAL_STAGE_LOCK))?;
    Ok(started.elapsed())
}

/// Take [`LOCAL_STAGE_LOCK`] for the local stage (a failure is a warning: then nothing waits).
fn hold_local_stage_lock(root: &HostRoot) -> Option<std::fs::File> {
    let path = root.kernel().path(LOCAL_STAGE_LOCK);
    let taken = path
        .parent()
        .map_or(Ok(()), |dir| files::ensure_dir(dir, 0o755))
        .and_then(|()| files::lock_exclusive(&path));
    match taken {
        Ok(file) => Some(file),
        Err(e) => {
            log::warn!("{e}: the units after the local stage do not wait for it");
            None
        }
    }
}

/// Write or remove [`LOCAL_DONE_IN_INITRD`] (see there); a failure is logged: the real root's
/// local stage then runs and finds out for itself.
fn mark_local_done_in_initrd(ctx: &Context<'_>) {
    let path = ctx.host.root.kernel().path(LOCAL_DONE_IN_INITRD);
    let done = super::nothing_left_for_the_real_root(ctx);
    let result = if done {
        path.parent()
            .map_or(Ok(()), |dir| files::ensure_dir(dir, 0o755))
            .and_then(|()| files::write_atomic(&path, b"", files::WriteOptions::mode(0o644)))
    } else {
        files::remove_optional(&path)
    };
    match result {
        Ok(()) if done => log::info!("nothing is left for the local stage on the real root"),
        Ok(()) => {}
        Err(e) => log::warn!("{e}: the local stage on the real root runs"),
    }
}

/// A provisioning stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before udev and the network: the hostname alone, where it can be known at once
    /// ([`super::hostname_stage`]). Not part of [`Stage::All`] (the local stage sets it too).
    Hostname,
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
        self == other || (self == Stage::All && other != Stage::Hostname)
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

/// The network stage in `wala-agentd provision-network`, the program `wala-provision --stage
/// network` hands over to because it links the crypto work (certificate keys): the
/// configuration at `config_file`, then [`run`] of [`Stage::Network`]. Returns whether it
/// succeeded.
pub fn run_handed_over_network_stage(root: &HostRoot, config_file: Option<&std::path::Path>) -> bool {
    // This process's start-up runs from wala-provision's fork (the same process, before its
    // exec). Not after `--stage all`, whose earlier stages this process already recorded.
    if !timeline::recorded_by_this_process(root) {
        timeline::count_start_up();
    }
    let loaded = crate::documents::conf::load_or_defaults(root, config_file);
    loaded.log_problems();
    if loaded.config.logs_verbose {
        crate::base::logging::set_verbose(true);
    }
    let ctx = Context {
        host: Host { root, config: &loaded.config, runner: &crate::base::cmd::SystemRunner },
        kvp: crate::host::kvp::KvpPool::for_root(root),
    };
    let options = Options { certificates: Some(super::network::IN_PROCESS), ..Default::default() };
    run(&ctx, &OvfSource::Absent, Stage::Network, options)
}

/// Run `stage` (every stage for [`Stage::All`]); each is recorded in the boot timeline. A failed
/// stage is logged and does not stop the next one (the network stage must still report a failed
/// local stage). Returns whether every stage that ran succeeded.
pub fn run(ctx: &Context<'_>, source: &OvfSource, stage: Stage, options: Options) -> bool {
    let mut ok = true;
    if stage.includes(Stage::Hostname) {
        ok &= record(
            ctx,
            "hostname",
            || super::hostname_stage::run(ctx),
            |o| match o {
                HostnameOutcome::Set(name) => {
                    log::info!("hostname stage: the hostname is {name}, before udev and the network");
                    true
                }
                HostnameOutcome::Left(why) => {
                    log::info!("hostname stage: left to the local stage ({why})");
                    false
                }
            },
        )
        .is_some();
    }
    if stage.includes(Stage::Local) {
        let _held = hold_local_stage_lock(ctx.host.root);
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
        // Skipped or failed before its hostname step: ready now (the lock is still held).
        hostname_settled();
        if !ctx.host.root.is_live() && ctx.host.root.kernel().path(INITRD_RELEASE).exists() {
            mark_local_done_in_initrd(ctx);
        }
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
            timeline::keep_copy(ctx.host.root, ctx.host.config.lib_dir.as_path());
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
    let recorded = timeline::Stage::begin(ctx.host.root, &name.to_lowercase());
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
