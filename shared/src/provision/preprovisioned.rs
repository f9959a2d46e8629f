//! Pre-provisioned pool VMs (Azure's "PPS"): a VM booted ahead of demand from a placeholder OVF
//! (`PlatformSettings/PreprovisionedVm=true`, `PreprovisionedVMType`), reported Ready to the pool,
//! and later taken over by a user. It must never apply the placeholder's identity; when a user
//! takes it over, IMDS hands out the user's `ovf-env.xml` and the VM is provisioned from that as
//! usual. The protocol is the one cloud-init's Azure datasource implements (docs/provisioning.md,
//! "Pre-provisioned pools"):
//!
//! 1. The **local stage** reads the DVD's OVF; [`pool_kind`] says it is a pool VM. Nothing of it is
//!    applied: [`enter_pool`] records [`PoolState`] in `<Lib.Dir>/wala-pps.json` and raises the
//!    flag [`RUN_FLAG`] (`/run/wala/pps-pending`), which starts `wala-provision-pps.service`. On
//!    every later boot while the VM waits, [`hand_over`] raises the flag again (no DVD is read).
//! 2. The **pps stage** ([`run`], `wala-provision --stage pps`), ordered before sshd and user
//!    sessions (the placeholder VM accepts no login), after a route to the WireServer:
//!    * reports **Ready** for the pool (the placeholder's goal state), then records
//!      `reported_ready` (cloud-init's `reported_ready` marker);
//!    * **Running**: waits until the primary NIC's carrier goes and comes back (the host moving it
//!      to the user's network; cloud-init's "media disconnect/connect");
//!    * **Savable**: the VM may be saved right after Ready (a failed Ready is then tolerated, as
//!      cloud-init does); waits until its NIC is unplugged, then until a new NIC is hot-plugged,
//!      then for a route to IMDS through it;
//!    * **PreprovisionedOSDisk**: reports Ready without the marker and waits for the host to shut
//!      the VM down (its disk then boots another VM, with a DVD of its own);
//!    * after a reboot with `reported_ready` recorded (cloud-init's "Unknown" type): none of the
//!      above, straight to the poll;
//!    * polls IMDS `reprovisiondata` ([`crate::platform::imds_reprovision`]) for the user's `ovf-env.xml`;
//!    * provisions from it exactly as the local stage provisions from a DVD (hostname, user,
//!      password, sshd, host keys, SSH keys, custom data), records the hand-off state for the
//!      network stage, publishes the new hostname by renewing the DHCP lease, and clears the pool
//!      state and the flag.
//! 3. The **network stage** then reports NotReady/Provisioning and Ready for the user's goal state,
//!    as for any VM.
//!
//! A reboot anywhere resumes: before Ready, the whole wait starts again; after Ready, the poll
//! starts again (IMDS keeps serving the document); during provisioning, the idempotent steps run
//! again. Any failure is recorded as the local stage's failure, which the network stage reports
//! as ProvisioningFailed.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::base::files::{self, WriteOptions};
use crate::base::root::HostRoot;
use crate::documents::ovf::OvfEnv;
use crate::error::Cause;
use crate::host::link_watch::{LinkWatch, LinkWatchError};
use crate::host::route_wait;
use crate::platform::imds_reprovision::{PollPolicy, ReprovisionClient};
use crate::platform::{Platform, ProvisioningHealth};
use crate::provision::{Context, LocalResult, Mode, ProvisionError, State, StepTiming};

/// The pool state, in `Lib.Dir`.
pub const STATE_FILE: &str = "wala-pps.json";
/// Raised while a pool VM waits; the condition of `wala-provision-pps.service`. On the running
/// system's `/run` (resolved through [`HostRoot::kernel`], so the initramfs's copy moves over at
/// switch-root).
pub const RUN_FLAG: &str = "/run/wala/pps-pending";
/// How long one wait for a route (to the WireServer before Ready, to IMDS after a NIC change or a
/// run of unanswered polls) lasts before wala tries anyway.
const ROUTE_WAIT: Duration = Duration::from_secs(300);

/// The kind of pool, from `PreprovisionedVMType` (`PreprovisionedVm=true` alone means Running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolKind {
    /// The VM keeps running in the pool; taken over, its NIC moves to the user's network.
    Running,
    /// The VM is saved (hibernated) in the pool with its NIC unplugged; taken over, it is resumed
    /// and a new NIC is hot-plugged.
    Savable,
    /// `PreprovisionedOSDisk`: the VM reports Ready and is shut down; its OS disk later boots the
    /// user's VM (a new VM with a provisioning DVD of its own).
    OsDisk,
}

impl std::fmt::Display for PoolKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoolKind::Running => "Running",
            PoolKind::Savable => "Savable",
            PoolKind::OsDisk => "PreprovisionedOSDisk",
        })
    }
}

/// Whether the OVF is a pool VM's, and of which kind: cloud-init's rule, with the type compared
/// without regard to case. `Savable` and `PreprovisionedOSDisk` by their type; `Running` by its
/// type, or by `PreprovisionedVm=true` with any other type (`None`, `Unknown`, absent).
pub fn pool_kind(env: &OvfEnv) -> Option<PoolKind> {
    let p = &env.platform;
    let kind = p.preprovisioned_vm_type.as_deref().map(str::trim).unwrap_or_default();
    if kind.eq_ignore_ascii_case("Savable") {
        Some(PoolKind::Savable)
    } else if kind.eq_ignore_ascii_case("PreprovisionedOSDisk") {
        Some(PoolKind::OsDisk)
    } else if p.preprovisioned_vm == Some(true) || kind.eq_ignore_ascii_case("Running") {
        Some(PoolKind::Running)
    } else {
        None
    }
}

/// What a pool VM has done so far (`<Lib.Dir>/wala-pps.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolState {
    pub vm_id: String,
    pub kind: PoolKind,
    /// Ready reached the platform for the pool (cloud-init's `reported_ready` marker): a reboot
    /// goes straight to polling IMDS.
    #[serde(default)]
    pub reported_ready: bool,
}

fn state_path(root: &HostRoot, lib_dir: &Path) -> PathBuf {
    root.path(lib_dir.join(STATE_FILE))
}

fn flag_path(root: &HostRoot) -> PathBuf {
    root.kernel().path(RUN_FLAG)
}

/// The recorded pool state, if any (unreadable counts as none, with a warning).
pub fn load(root: &HostRoot, lib_dir: &Path) -> Option<PoolState> {
    let path = state_path(root, lib_dir);
    let text = files::read_optional(&path).ok()??;
    serde_json::from_str(&text).map_err(|e| log::warn!("ignoring {}: {e}", path.display())).ok()
}

/// The pool state of this VM, when it is a pool VM still waiting to be taken over.
pub fn pending(root: &HostRoot, lib_dir: &Path, vm_id: &str) -> Option<PoolState> {
    load(root, lib_dir).filter(|s| crate::host::vmid::same_vm(&s.vm_id, vm_id))
}

fn save(root: &HostRoot, lib_dir: &Path, s: &PoolState) -> Result<(), ProvisionError> {
    let err = |e| ProvisionError::new("pps-state", Cause::File(e));
    files::ensure_dir(&root.path(lib_dir), 0o700).map_err(err)?;
    let text = serde_json::to_string_pretty(s).unwrap_or_default() + "\n";
    files::write_atomic(&state_path(root, lib_dir), text.as_bytes(), WriteOptions::mode(0o600)).map_err(err)
}

fn raise_flag(root: &HostRoot) -> Result<(), ProvisionError> {
    let path = flag_path(root);
    let err = |e| ProvisionError::new("pps-state", Cause::File(e));
    if let Some(dir) = path.parent() {
        files::ensure_dir(dir, 0o755).map_err(err)?;
    }
    files::write_atomic(&path, b"", WriteOptions::mode(0o644)).map_err(err)
}

/// Forget the pool state and lower the flag (the VM is no longer a pool VM).
fn clear(root: &HostRoot, lib_dir: &Path) {
    for path in [state_path(root, lib_dir), flag_path(root)] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                log::warn!("cannot remove {}: {e}", path.display())
            }
            _ => {}
        }
    }
}

/// The reason the local stage gives for provisioning nothing on a pool VM.
fn waiting(kind: PoolKind) -> String {
    format!("pre-provisioned pool VM (PreprovisionedVMType {kind}): waiting to be taken over (wala-provision-pps)")
}

/// Local-stage hook, first boot: the DVD's OVF is a pool VM's. Records the pool state, raises the
/// flag, and records the local stage as not done, so that if the pps stage never finishes the
/// network stage reports why instead of Ready. Returns why nothing was provisioned.
pub(crate) fn enter_pool(ctx: &Context<'_>, vm_id: &str, kind: PoolKind) -> Result<String, ProvisionError> {
    let lib = ctx.lib_dir();
    log::info!("the OVF is a pre-provisioned pool VM's (PreprovisionedVMType {kind}): its placeholder identity is not applied");
    save(ctx.host.root, &lib, &PoolState { vm_id: vm_id.to_string(), kind, reported_ready: false })?;
    super::record(
        ctx,
        &lib,
        State::new(
            vm_id,
            Mode::Provision,
            LocalResult::Failed {
                step: "pps".into(),
                reason: "a pre-provisioned pool VM that was not taken over (the pps stage did not finish)"
                    .into(),
            },
        ),
    )?;
    raise_flag(ctx.host.root)?;
    Ok(waiting(kind))
}

/// Local-stage hook, later boots: a pool VM still waiting. Raises the flag again; no DVD is read.
pub(crate) fn hand_over(ctx: &Context<'_>, pool: &PoolState) -> Result<String, ProvisionError> {
    raise_flag(ctx.host.root)?;
    Ok(waiting(pool.kind))
}

/// Which link is the primary NIC, for Running's carrier switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Primary {
    /// The interface the kernel routes this address (the WireServer) through.
    RouteTo(Ipv4Addr),
    /// This interface (tests, and a WireServer on this host).
    Named(String),
}

/// Whether the NIC changes are watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Links {
    /// Watch rtnetlink (the live system).
    Watch(Primary),
    /// Do not (a root that is not the running system's: the kernel's NICs are not this VM's).
    Ignore,
}

/// What the pps stage talks to.
pub struct PoolServices<'a> {
    /// For the pool's Ready.
    pub platform: &'a dyn Platform,
    pub reprovision: &'a ReprovisionClient,
    pub links: Links,
    /// IMDS's address, for route waits (`None`: no route waits).
    pub imds: Option<Ipv4Addr>,
    /// The longest wait for each of: the NIC changes, the reprovision document, the OS-disk
    /// shutdown (`None`: as long as the VM stays in the pool).
    pub wait_limit: Option<Duration>,
}

impl std::fmt::Debug for PoolServices<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolServices")
            .field("reprovision", &self.reprovision)
            .field("links", &self.links)
            .field("imds", &self.imds)
            .field("wait_limit", &self.wait_limit)
            .finish_non_exhaustive()
    }
}

/// How the pps stage ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolOutcome {
    NothingToDo(String),
    /// Provisioned from the user's OVF; the network stage reports Ready.
    Reprovisioned {
        kind: PoolKind,
        resumed: bool,
        requests: u32,
    },
}

/// The pps stage with the real platform: route to the WireServer, the WireServer, IMDS, rtnetlink
/// on the live root.
pub fn run_stage(ctx: &Context<'_>, wait_limit: Option<Duration>) -> Result<PoolOutcome, ProvisionError> {
    let vm_id = super::vm_id(ctx.host.root)?;
    let lib = ctx.lib_dir();
    let Some(pool) = pending(ctx.host.root, &lib, &vm_id) else {
        clear_stale_flag(ctx.host.root);
        return Ok(PoolOutcome::NothingToDo("not a pre-provisioned pool VM".into()));
    };
    let endpoints = crate::platform::endpoint::resolve(ctx.host.config, ctx.host.root, SystemTime::now());
    let wireserver = endpoints.wireserver.ipv4();
    if ctx.host.root.is_live() {
        if let Some(ip) = wireserver {
            wait_route("route-to-wireserver", ip);
            if let Err(e) = crate::platform::endpoint::ensure_route(ctx.host.root, ctx.host.runner, ip) {
                log::warn!("{e}");
            }
        }
    }
    let mut client =
        crate::platform::wireserver::WireClient::new(endpoints.clone(), ctx.host.root.path(&lib));
    if pool.kind == PoolKind::Savable {
        // The host may unplug the NIC and save the VM as soon as Ready reached it: no long retry.
        client = client.with_health_retry_policy(crate::platform::http::RetryPolicy::wire());
    }
    let reprovision = ReprovisionClient::new(endpoints.imds.clone()).with_policy(PollPolicy::default());
    let links = match (ctx.host.root.is_live(), wireserver) {
        (true, Some(ip)) => Links::Watch(Primary::RouteTo(ip)),
        (true, None) => Links::Watch(Primary::RouteTo(crate::platform::dhcp::KNOWN_WIRESERVER)),
        (false, _) => Links::Ignore,
    };
    let services = PoolServices {
        platform: &client,
        reprovision: &reprovision,
        links,
        imds: endpoints.imds.ipv4().filter(|_| ctx.host.root.is_live()),
        wait_limit,
    };
    run(ctx, &services)
}

/// A flag without a pool state (left by a crash, or a state removed by hand) is lowered.
fn clear_stale_flag(root: &HostRoot) {
    let _ = std::fs::remove_file(flag_path(root));
}

fn wait_route(name: &str, ip: Ipv4Addr) {
    let started = Instant::now();
    match crate::base::timeline::wait(name, || route_wait::wait_for_route(ip, ROUTE_WAIT)) {
        Ok(route) => log::info!("route to {ip}: {route} (waited {} ms)", started.elapsed().as_millis()),
        Err(e) => log::warn!("{e}; trying anyway"),
    }
}

/// The pps stage: see the module docs.
pub fn run(ctx: &Context<'_>, svc: &PoolServices<'_>) -> Result<PoolOutcome, ProvisionError> {
    let vm_id = super::vm_id(ctx.host.root)?;
    let lib = ctx.lib_dir();
    let Some(mut pool) = pending(ctx.host.root, &lib, &vm_id) else {
        clear_stale_flag(ctx.host.root);
        return Ok(PoolOutcome::NothingToDo("not a pre-provisioned pool VM".into()));
    };
    let started = Instant::now();
    let result = wait_and_provision(ctx, svc, &mut pool, &vm_id);
    let event = crate::platform::telemetry::AgentEvent::new(
        "Provision",
        result.is_ok(),
        format!("pre-provisioned pool VM ({})", pool.kind),
        started.elapsed(),
    );
    crate::platform::telemetry::record(ctx.host.root, &lib, &event);
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            log::error!("Provisioning failed: {e}");
            // The network stage reports it (the pool state stays: a reboot tries again).
            let st = State::new(
                &vm_id,
                Mode::Provision,
                LocalResult::Failed { step: e.step.clone(), reason: e.reason() },
            );
            super::record(ctx, &lib, st)?;
            ctx.final_kvp(&vm_id, Some(&e.to_string()));
            Err(e)
        }
    }
}

fn wait_and_provision(
    ctx: &Context<'_>,
    svc: &PoolServices<'_>,
    pool: &mut PoolState,
    vm_id: &str,
) -> Result<PoolOutcome, ProvisionError> {
    let lib = ctx.lib_dir();
    let mut timings: Vec<StepTiming> = Vec::new();
    let resumed = pool.reported_ready;
    if resumed {
        log::info!(
            "this pool VM ({}) reported Ready before a reboot: polling IMDS for the user's ovf-env.xml",
            pool.kind
        );
    } else {
        // Subscribe before Ready: the host acts on Ready, and nothing it does after may be missed.
        let mut watch = match &svc.links {
            Links::Watch(_) => Some(LinkWatch::subscribe().map_err(|e| ProvisionError::new("pps-nic", e))?),
            Links::Ignore => {
                log::info!("not the running system's root: NIC changes are not watched");
                None
            }
        };
        let primary = match (&svc.links, watch.as_ref()) {
            (Links::Watch(p), Some(w)) if pool.kind == PoolKind::Running => Some(primary_index(p, w)?),
            _ => None,
        };
        let known: BTreeSet<u32> =
            watch.as_ref().map(|w| w.links().map(|l| l.index).collect()).unwrap_or_default();
        report_pool_ready(ctx, svc, pool, vm_id, &mut timings)?;
        match (pool.kind, watch.as_mut()) {
            (PoolKind::OsDisk, _) => return wait_for_shutdown(svc.wait_limit),
            (PoolKind::Running, Some(w)) => {
                let index = primary.unwrap_or_default();
                log::info!("waiting for the host to move NIC #{index} to the user's network (carrier lost, then back)");
                let link = crate::base::timeline::wait("pps-nic-switch", || {
                    w.wait_for_media_switch(index, svc.wait_limit)
                })
                .map_err(nic_error)?;
                log::info!("the NIC switched networks: {link}");
            }
            (PoolKind::Savable, Some(w)) => {
                log::info!("waiting for the host to unplug this pool VM's NIC");
                let gone =
                    crate::base::timeline::wait("pps-nic-detach", || w.wait_for_detach(svc.wait_limit))
                        .map_err(nic_error)?;
                log::info!("NIC {gone} was unplugged; waiting for the user's NIC to be plugged in");
                let new = crate::base::timeline::wait("pps-nic-attach", || {
                    w.wait_for_attach(&known, svc.wait_limit)
                })
                .map_err(nic_error)?;
                log::info!("NIC {new} was plugged in");
            }
            (_, None) => {}
        }
        if let Some(ip) = svc.imds {
            wait_route("route-to-imds", ip);
        }
    }
    // The user's ovf-env.xml.
    let poll_started = Instant::now();
    let imds = svc.imds;
    let got = super::step(ctx, vm_id, &mut timings, "pps-reprovisiondata", || {
        crate::base::timeline::wait("pps-reprovisiondata", || {
            svc.reprovision.poll(svc.wait_limit, &mut || {
                if let Some(ip) = imds {
                    wait_route("route-to-imds", ip);
                }
            })
        })
        .map_err(|e| ProvisionError::new("pps-reprovisiondata", e))
    })?;
    log::info!("taken over after {} s in the pool", poll_started.elapsed().as_secs());
    let bytes = got.ovf.expose();
    let env = super::step(ctx, vm_id, &mut timings, "ovf", || {
        crate::documents::ovf::parse_bytes(bytes)
            .map_err(|e| ProvisionError::new("ovf", format!("the ovf-env.xml from IMDS: {}", e.reason())))
    })?;
    if let Some(again) = pool_kind(&env) {
        log::warn!(
            "the user's ovf-env.xml still says PreprovisionedVMType {again}: provisioning it all the same"
        );
    }
    let old_hostname = crate::host::hostname::kernel_hostname();
    let later = super::provision_from(ctx, vm_id, &mut timings, bytes, &env)?;
    let mut st = State::new(vm_id, Mode::Provision, LocalResult::Done);
    st.record_later_steps(Some(later));
    super::record(ctx, &lib, st)?;
    clear(ctx.host.root, &lib);
    if ctx.host.root.is_live() && crate::host::hostname::kernel_hostname() != old_hostname {
        // The network came up under the image's name: renew the lease so the platform's DNS gets
        // the user's.
        crate::host::hostname::publish(ctx.host.root, ctx.host.runner);
    }
    log::info!("the pool VM is provisioned for its user; the network stage reports Ready");
    Ok(PoolOutcome::Reprovisioned { kind: pool.kind, resumed, requests: got.attempts })
}

fn nic_error(e: LinkWatchError) -> ProvisionError {
    ProvisionError::new("pps-nic", e)
}

fn primary_index(p: &Primary, w: &LinkWatch) -> Result<u32, ProvisionError> {
    match p {
        Primary::Named(name) => w
            .by_name(name)
            .map(|l| l.index)
            .ok_or_else(|| ProvisionError::new("pps-nic", format!("no network interface {name}"))),
        Primary::RouteTo(ip) => {
            let route = route_wait::route_to(*ip)
                .map_err(|e| ProvisionError::new("pps-nic", e))?
                .map_err(|why| ProvisionError::new("pps-nic", format!("no route to {ip}: {why}")))?;
            let link = w.link(route.ifindex);
            match link {
                Some(l) if !l.is_loopback() => {
                    log::info!("primary NIC: {l} (the route to {ip})");
                    Ok(route.ifindex)
                }
                _ => Err(ProvisionError::new(
                    "pps-nic",
                    format!("the route to {ip} is not through a NIC ({route}): which NIC will switch networks is unknown"),
                )),
            }
        }
    }
}

/// Ready for the pool, with the placeholder's goal state; then `reported_ready` is recorded.
fn report_pool_ready(
    ctx: &Context<'_>,
    svc: &PoolServices<'_>,
    pool: &mut PoolState,
    vm_id: &str,
    timings: &mut Vec<StepTiming>,
) -> Result<(), ProvisionError> {
    let lib = ctx.lib_dir();
    super::step(ctx, vm_id, timings, "pps-report-ready", || {
        match svc.platform.report_health(&ProvisioningHealth::Ready) {
            Ok(()) => log::info!("reported Ready for the pool"),
            Err(e) if pool.kind == PoolKind::Savable => {
                // The host may unplug the NIC or save the VM before the answer arrives (cloud-init
                // ignores this failure too); if Ready really was lost, the VM stays in the pool.
                log::warn!("reporting Ready for the pool: {e} (ignored for a Savable pool VM)");
            }
            Err(e) => return Err(ProvisionError::new("pps-report-ready", e)),
        }
        if pool.kind != PoolKind::OsDisk {
            pool.reported_ready = true;
            save(ctx.host.root, &lib, pool)?;
        }
        Ok(())
    })
}

/// PreprovisionedOSDisk: the host shuts the VM down after Ready; wait for that.
fn wait_for_shutdown(limit: Option<Duration>) -> Result<PoolOutcome, ProvisionError> {
    log::info!("PreprovisionedOSDisk: reported Ready; waiting for the host to shut this VM down");
    let started = Instant::now();
    loop {
        let step = Duration::from_secs(3600);
        match limit {
            Some(l) if started.elapsed() >= l => {
                return Err(ProvisionError::new(
                    "pps-os-disk",
                    format!("the host did not shut the VM down within {} s of Ready", l.as_secs()),
                ))
            }
            Some(l) => std::thread::sleep(step.min(l.saturating_sub(started.elapsed()))),
            None => std::thread::sleep(step),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vm: Option<&str>, kind: Option<&str>) -> OvfEnv {
        let vm = vm.map(|v| format!("<wa:PreprovisionedVm>{v}</wa:PreprovisionedVm>")).unwrap_or_default();
        let kind = kind
            .map(|k| format!("<wa:PreprovisionedVMType>{k}</wa:PreprovisionedVMType>"))
            .unwrap_or_default();
        let xml = format!(
            r#"<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure">
<wa:ProvisioningSection><wa:Version>1.0</wa:Version><wa:LinuxProvisioningConfigurationSet>
<wa:ConfigurationSetType>LinuxProvisioningConfiguration</wa:ConfigurationSetType>
<wa:HostName>pool</wa:HostName><wa:UserName>placeholder</wa:UserName></wa:LinuxProvisioningConfigurationSet>
</wa:ProvisioningSection><wa:PlatformSettingsSection><wa:Version>1.0</wa:Version><wa:PlatformSettings>
<wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent>{vm}{kind}</wa:PlatformSettings></wa:PlatformSettingsSection></Environment>"#
        );
        crate::documents::ovf::parse(&xml).expect("ovf")
    }

    #[test]
    fn the_pool_kind_follows_cloud_inits_rule() {
        let cases = [
            (None, None, None),
            (Some("false"), None, None),
            (Some("false"), Some("None"), None),
            (Some("true"), None, Some(PoolKind::Running)),
            (Some("True"), Some("None"), Some(PoolKind::Running)),
            (Some("true"), Some("Unknown"), Some(PoolKind::Running)),
            (None, Some("Running"), Some(PoolKind::Running)),
            (Some("true"), Some("Savable"), Some(PoolKind::Savable)),
            (None, Some("savable"), Some(PoolKind::Savable)),
            (Some("false"), Some("Savable"), Some(PoolKind::Savable)),
            (None, Some("PreprovisionedOSDisk"), Some(PoolKind::OsDisk)),
            (Some("bogus"), None, None),
        ];
        for (vm, kind, want) in cases {
            assert_eq!(pool_kind(&env(vm, kind)), want, "PreprovisionedVm {vm:?}, type {kind:?}");
        }
    }

    #[test]
    fn pool_state_round_trips_and_is_per_vm_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let lib = Path::new("/var/lib/waagent");
        let s = PoolState {
            vm_id: "544CDFD0-CB4E-4B4A-9954-5BDF3ED5C3B8".into(),
            kind: PoolKind::Savable,
            reported_ready: true,
        };
        save(&root, lib, &s).expect("save");
        let text = std::fs::read_to_string(dir.path().join("var/lib/waagent/wala-pps.json")).expect("read");
        assert!(
            text.contains("\"kind\": \"savable\"") && text.contains("\"reported_ready\": true"),
            "{text}"
        );
        assert_eq!(pending(&root, lib, "544cdfd0-cb4e-4b4a-9954-5bdf3ed5c3b8"), Some(s));
        assert_eq!(pending(&root, lib, "00000000-0000-0000-0000-000000000000"), None);
        clear(&root, lib);
        assert_eq!(load(&root, lib), None);
    }
}
