//! First-boot provisioning in two stages, plan then apply.
//!
//! **Local stage** (no network; before network-pre.target and sshd, on the real root or from the
//! initramfs with `--root /sysroot`): OVF environment, hostname, user, password, sudoers, sshd, inline
//! SSH keys, host keys (Ed25519 and ECDSA, in-process), root password, CustomData (saved), and on
//! the live root the resource disk. **Host-keys stage** (after sshd started): RSA host keys, then
//! sshd reloaded; nothing waits for it.
//! **Network stage** (WireServer): NotReady/Provisioning, keys from the goal-state certificates,
//! CustomData execution, the `provisioned` marker, then Ready; or NotReady/ProvisioningFailed with a
//! description naming the failed step and why. Ready is only ever sent when every step succeeded.
//!
//! **IMDS stage** (only when the local stage found no provisioning DVD on a disk never
//! provisioned; before sshd, once the network is up): the provisioning request from IMDS
//! ([`from_imds`]).
//!
//! Every step is idempotent, so a rerun after a crash at any point converges. A VM whose marker
//! holds its VM id is not provisioned again. A disk provisioned for another VM keeps its users,
//! passwords and host keys unless the provisioning section names a user it does not have
//! ([`decide`]; docs/provisioning.md, "Which boots provision").

pub mod decide;
pub mod from_imds;
pub mod generator;
pub mod hostname_stage;
pub mod imds_request;
pub mod network;
pub mod plan;
pub mod preprovisioned;
pub mod stages;
pub mod state;
pub mod takeover;
pub mod vm_changed;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::base::cmd::{Cmd, Runner};
use crate::base::files::{self, WriteOptions};
use crate::base::root::HostRoot;
use crate::documents::conf::ProvisioningAgent;
use crate::error::Cause;
use crate::host::disk::{self, DiskOutcome};
use crate::host::kvp::KvpPool;
use crate::host::selinux;
use crate::host::Host;
use crate::platform::{CertificateSource, Platform, ProvisioningHealth};
use crate::{documents::ovf, host::customdata, host::dvd, host::ssh, host::user, host::vmid};

pub use plan::{Plan, PlanError};
pub use state::{Lifecycle, LocalResult, Mode, State};

/// Environment variable naming a step after which the process aborts (for crash-consistency tests).
pub const CRASH_AFTER_ENV: &str = "WALA_TEST_CRASH_AFTER";

/// A step that failed: which, and why (the text of a ProvisioningFailed report).
///
/// `cause` is the error of the module that failed, kept typed ([`Cause`]); a step recorded by an
/// earlier stage comes back from the state file as [`Cause::Message`].
#[derive(Debug, thiserror::Error)]
#[error("{step}: {}", .cause.reason())]
pub struct ProvisionError {
    pub step: String,
    #[source]
    pub cause: Box<Cause>,
}

impl ProvisionError {
    pub fn new(step: &str, cause: impl Into<Cause>) -> Self {
        Self { step: step.into(), cause: Box::new(cause.into()) }
    }

    /// Why the step failed, as the ProvisioningFailed report and the state file say it.
    pub fn reason(&self) -> String {
        self.cause.reason()
    }
}

impl From<ProvisionError> for crate::error::Cause {
    fn from(e: ProvisionError) -> Self {
        Self::Other(Box::new(e))
    }
}

/// Where the OVF environment comes from.
#[derive(Debug, Clone)]
pub enum OvfSource {
    /// A file (`--ovf`), for image builders and tests.
    File(PathBuf),
    /// The provisioning DVD, waiting up to this long for it to appear (on a disk never
    /// provisioned; a provisioned disk's boot does not wait for it).
    Dvd(Duration),
    /// No provisioning DVD (`--no-dvd`), as on a VM that has none: for tests and image builders.
    Absent,
}

/// What provisioning works with.
#[derive(Debug)]
pub struct Context<'a> {
    pub host: Host<'a>,
    /// Where milestones are written for the host to read (`None` off Hyper-V and in tests).
    pub kvp: Option<KvpPool>,
}

/// How long each step took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTiming {
    pub step: &'static str,
    pub duration: Duration,
}

/// How the local stage ended.
#[derive(Debug, Clone)]
pub struct LocalOutcome {
    pub vm_id: String,
    pub mode: Mode,
    /// Why the provisioning steps were skipped, when they were.
    pub skipped: Option<String>,
    /// What this VM's provisioning is (set when the stage decided it, or found it decided).
    pub lifecycle: Lifecycle,
    pub timings: Vec<StepTiming>,
}

/// How the network stage ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkOutcome {
    /// Ready was reported now.
    Ready,
    /// Nothing to do: already provisioned and reported, or cloud-init's job.
    NothingToDo(String),
}

impl Context<'_> {
    fn lib_dir(&self) -> PathBuf {
        self.host.config.lib_dir.as_path().to_path_buf()
    }

    fn milestone(&self, vm_id: &str, step: &str, took: Duration) {
        log::info!("{step}: done in {:.1} ms", took.as_secs_f64() * 1000.0);
        if let Some(kvp) = &self.kvp {
            let key = format!("WALA|{}|{vm_id}|{step}", crate::VERSION);
            let _ = kvp.write(&key, &format!("result=success|duration_ms={}", took.as_millis()));
        }
    }

    /// A KVP record `WALA|<version>|<vm id>|<what>` = `text`, for the host to read.
    fn note(&self, vm_id: &str, what: &str, text: &str) {
        if let Some(kvp) = &self.kvp {
            let key = format!("WALA|{}|{vm_id}|{what}", crate::VERSION);
            if let Err(e) = kvp.write(&key, text) {
                log::warn!("cannot write the KVP record {what}: {e}");
            }
        }
    }

    fn final_kvp(&self, vm_id: &str, failure: Option<&str>) {
        self.final_kvp_with(vm_id, failure, &[]);
    }

    /// The final KVP report with `extra` fields (what kind of provisioning this was).
    fn final_kvp_with(&self, vm_id: &str, failure: Option<&str>, extra: &[(&str, &str)]) {
        if let Some(kvp) = &self.kvp {
            let value = crate::host::kvp::provisioning_report_with(
                failure.is_none(),
                failure,
                extra,
                vm_id,
                std::time::SystemTime::now(),
            );
            if let Err(e) = kvp.write("PROVISIONING_REPORT", &value) {
                log::warn!("cannot write the KVP provisioning report: {e}");
            }
        }
    }
}

/// The VM id of this machine.
pub fn vm_id(root: &HostRoot) -> Result<String, ProvisionError> {
    vmid::vm_id(root).map_err(|e| ProvisionError::new("vm-id", e))
}

/// Who provisions, from `Provisioning.Agent` (and cloud-init's state for `auto`).
pub fn mode(ctx: &Context<'_>) -> Mode {
    mode_for(ctx.host.root, ctx.host.config)
}

/// [`mode`] for the system under `root` with `config`.
pub fn mode_for(root: &HostRoot, config: &crate::documents::conf::Config) -> Mode {
    match config.provisioning_agent {
        ProvisioningAgent::Disabled => Mode::Disabled,
        ProvisioningAgent::CloudInit => Mode::CloudInit,
        ProvisioningAgent::Waagent => Mode::Provision,
        ProvisioningAgent::Auto if cloud_init_enabled(root) => Mode::CloudInit,
        ProvisioningAgent::Auto => Mode::Provision,
    }
}

/// waagent's check, `systemctl is-enabled cloud-init-local.service` says `enabled`, answered from
/// the unit files themselves (no fork of systemctl on the boot's critical path): the unit exists
/// in a unit directory, is not masked in `/etc`, and `/etc/systemd/system/*.wants/` or
/// `*.requires/` holds a link to it (what `systemctl enable` makes; runtime enablement under
/// `/run` is `enabled-runtime` to systemctl, not `enabled`).
pub fn cloud_init_enabled(root: &HostRoot) -> bool {
    const UNIT: &str = "cloud-init-local.service";
    let etc = root.path("/etc/systemd/system");
    let masked = std::fs::read_link(etc.join(UNIT)).is_ok_and(|t| t == Path::new("/dev/null"));
    let installed = ["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"]
        .iter()
        .any(|d| root.path(Path::new(d).join(UNIT)).exists());
    let linked = std::fs::read_dir(&etc).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            (name.ends_with(".wants") || name.ends_with(".requires"))
                && std::fs::symlink_metadata(e.path().join(UNIT)).is_ok()
        })
    });
    let enabled = installed && !masked && linked;
    log::info!("cloud-init is enabled: {enabled}");
    enabled
}

/// Read and parse the OVF environment. Returns the raw bytes too (for the scrubbed copy).
pub fn read_ovf(ctx: &Context<'_>, source: &OvfSource) -> Result<(Vec<u8>, ovf::OvfEnv), ProvisionError> {
    let bytes = match source {
        OvfSource::File(path) => crate::base::limits::read_file(path, crate::base::limits::Document::Ovf)
            .map_err(|e| {
                ProvisionError::new("ovf", Cause::io(format!("cannot read {}", path.display()), e))
            })?,
        OvfSource::Dvd(wait) => {
            let read = crate::base::timeline::wait("dvd", || dvd::read_ovf(ctx.host.runner, *wait));
            read.map_err(|e| ProvisionError::new("ovf", e))?.bytes
        }
        OvfSource::Absent => return Err(ProvisionError::new("ovf", "no provisioning DVD (--no-dvd)")),
    };
    let env = ovf::parse_bytes(&bytes).map_err(|e| ProvisionError::new("ovf", e))?;
    Ok((bytes, env))
}

/// Build the plan without changing anything (`--dry-run`).
pub fn dry_run(ctx: &Context<'_>, source: &OvfSource) -> Result<Plan, ProvisionError> {
    let vm_id = vm_id(ctx.host.root).unwrap_or_else(|e| format!("unknown ({})", e.reason()));
    let (_, env) = read_ovf(ctx, source)?;
    Plan::build(ctx.host.root, &env, ctx.host.config, &vm_id).map_err(|e| ProvisionError::new("plan", e))
}

/// The local stage.
pub fn run_local(ctx: &Context<'_>, source: &OvfSource) -> Result<LocalOutcome, ProvisionError> {
    let lib = ctx.lib_dir();
    let vm_id = vm_id(ctx.host.root)?;
    let mode = mode(ctx);
    let mut outcome = LocalOutcome {
        vm_id: vm_id.clone(),
        mode,
        skipped: None,
        lifecycle: Lifecycle::Provisioned,
        timings: Vec::new(),
    };

    let recorded = state::load(ctx.host.root, &lib);
    if state::provisioned_for(ctx.host.root, &lib, &vm_id) {
        outcome.skipped = Some(format!("already provisioned (VM id {vm_id})"));
    } else if let Some(pool) = preprovisioned::pending(ctx.host.root, &lib, &vm_id) {
        // A pre-provisioned pool VM still waiting to be taken over (preprovisioned.rs).
        outcome.skipped = Some(preprovisioned::hand_over(ctx, &pool)?);
    } else if let Some(st) = recorded.filter(|s| s.vm_id == vm_id && s.local == LocalResult::Done) {
        outcome.skipped = Some("the local stage already ran for this VM (from the initramfs)".into());
        if matches!(st.lifecycle, Lifecycle::ImdsPending { .. }) {
            // /run did not survive (or was the initramfs's): the IMDS stage still has to run.
            from_imds::mark_pending(ctx.host.root);
        }
        if let Some(hostname) = st.later.as_ref().and_then(|l| l.fast_host_keys.clone()) {
            make_fast_host_keys_left_by_the_initramfs(ctx, &vm_id, &hostname, &mut outcome.timings)?;
        }
        outcome.lifecycle = st.lifecycle;
    } else if ctx.host.config.detect_scvmm_env
        && ctx.host.root.is_live()
        && dvd::detect_scvmm(ctx.host.runner)
    {
        outcome.skipped = Some("System Center VMM environment: its agent provisions this VM".into());
    } else if mode != Mode::Provision {
        outcome.skipped = Some(format!("provisioning is {mode:?} (Provisioning.Agent)"));
        record(ctx, &lib, State::new(&vm_id, mode, LocalResult::Done))?;
    } else {
        let started = Instant::now();
        let result = match local_provisioning(ctx, source, &vm_id, &mut outcome.timings) {
            // A pre-provisioned pool VM: nothing applied; the pps stage takes over (preprovisioned.rs).
            Ok(LocalSteps::Pool(kind)) => {
                let why = preprovisioned::enter_pool(ctx, &vm_id, kind)?;
                log::info!("Provisioning skipped: {why}");
                outcome.skipped = Some(why);
                return Ok(outcome);
            }
            Ok(LocalSteps::Done(done)) => Ok(done),
            Err(e) => Err(e),
        };
        let message = match &result {
            Ok(done) => format!("local stage: {}", done.lifecycle.describe()),
            Err(e) => format!("local stage failed at step {}", e.step),
        };
        crate::platform::telemetry::record(
            ctx.host.root,
            &lib,
            &crate::platform::telemetry::AgentEvent::new(
                "Provision",
                result.is_ok(),
                message,
                started.elapsed(),
            ),
        );
        let mut st = State::new(&vm_id, mode, LocalResult::Done);
        match &result {
            Ok(done) => {
                st.lifecycle = done.lifecycle.clone();
                // RSA (and DSA) host keys are left to the host-keys stage, after sshd has started;
                // keys by certificate thumbprint to the network stage.
                st.record_later_steps(done.later.clone());
            }
            Err(e) => st.local = LocalResult::Failed { step: e.step.clone(), reason: e.reason() },
        }
        record(ctx, &lib, st)?;
        match result {
            Err(e) => {
                log::error!("Provisioning failed: {e}");
                ctx.final_kvp(&vm_id, Some(&e.to_string()));
                return Err(e);
            }
            Ok(done) => {
                match &done.lifecycle {
                    Lifecycle::Kept { reason, .. } => {
                        log::info!("Nothing provisioned: {reason}");
                        ctx.note(&vm_id, "kept", reason);
                    }
                    Lifecycle::ImdsPending { dvd } => {
                        log::info!("{dvd}: IMDS is asked once the network is up, before sshd");
                        ctx.note(&vm_id, "imds-pending", dvd);
                    }
                    Lifecycle::Provisioned | Lifecycle::FromImds => {}
                }
                outcome.lifecycle = done.lifecycle;
            }
        }
    }
    if let Some(why) = &outcome.skipped {
        log::info!("Provisioning skipped: {why}");
    }
    Ok(outcome)
}

/// `WALA_TEST_RANDOM_NOT_READY`: tests set it to play a local stage in the initramfs before the
/// kernel's random pool is ready.
pub const RANDOM_NOT_READY_ENV: &str = "WALA_TEST_RANDOM_NOT_READY";

/// Whether the fast host keys wait for the real root: in the initramfs (a root not the live one)
/// before the kernel's random pool is ready (said in the log when so).
fn fast_keys_left_to_the_real_root(root: &HostRoot) -> bool {
    let ready = std::env::var_os(RANDOM_NOT_READY_ENV).is_none() && crate::base::random::ready();
    let left = !root.is_live() && !ready;
    if left {
        log::info!("the kernel's random pool is not ready yet: host keys are made on the real root");
    }
    left
}

/// The fast host keys a local stage in the initramfs left (the kernel's random pool was not ready
/// there), made before sshd starts: on the real root, or in a later boot's initramfs once the pool
/// is ready. Failing, the local stage is recorded failed at step `host-keys` (the network stage
/// reports ProvisioningFailed with it).
fn make_fast_host_keys_left_by_the_initramfs(
    ctx: &Context<'_>,
    vm_id: &str,
    hostname: &str,
    timings: &mut Vec<StepTiming>,
) -> Result<(), ProvisionError> {
    let (root, lib) = (ctx.host.root, ctx.lib_dir());
    if fast_keys_left_to_the_real_root(root) {
        return Ok(());
    }
    let made = step(ctx, vm_id, timings, "host-keys", || {
        crate::host::host_keys::replace_with_fast_keys(root, ctx.host.config.ssh_dir.as_path(), hostname)
            .map(drop)
            .map_err(|e| ProvisionError::new("host-keys", e))
    });
    let recorded = state::update(root, &lib, vm_id, |s| match &made {
        Ok(()) => {
            if let Some(later) = s.later.as_mut() {
                later.fast_host_keys = None;
            }
        }
        Err(e) => s.local = LocalResult::Failed { step: e.step.clone(), reason: e.reason() },
    });
    made?;
    recorded.map_err(|e| ProvisionError::new("state", e))?;
    log::info!("made the host keys the initramfs left");
    Ok(())
}

/// Whether the local stage on the real root would find nothing to do after this one: the marker
/// [`stages::LOCAL_DONE_IN_INITRD`] is written (in the initramfs) only then, and its unit is skipped.
pub fn nothing_left_for_the_real_root(ctx: &Context<'_>) -> bool {
    let lib = ctx.lib_dir();
    let Ok(vm_id) = vm_id(ctx.host.root) else { return false };
    if state::provisioned_for(ctx.host.root, &lib, &vm_id) {
        return true;
    }
    if preprovisioned::pending(ctx.host.root, &lib, &vm_id).is_some() {
        return false;
    }
    state::load(ctx.host.root, &lib).is_some_and(|st| {
        st.vm_id == vm_id
            && st.local == LocalResult::Done
            && !matches!(st.lifecycle, Lifecycle::ImdsPending { .. })
            && st.later.as_ref().is_none_or(|l| l.fast_host_keys.is_none())
    })
}

/// What the local stage's steps came to.
enum LocalSteps {
    /// Provisioned, kept or left to IMDS.
    Done(LocalDone),
    /// A pre-provisioned pool VM's OVF: nothing applied.
    Pool(preprovisioned::PoolKind),
}

/// What the local stage's provisioning ended with.
struct LocalDone {
    lifecycle: Lifecycle,
    /// What the plan leaves to the later stages (`None` when nothing was provisioned).
    later: Option<plan::LaterSteps>,
}

/// Read the source, decide ([`decide`]), and do it.
fn local_provisioning(
    ctx: &Context<'_>,
    source: &OvfSource,
    vm_id: &str,
    timings: &mut Vec<StepTiming>,
) -> Result<LocalSteps, ProvisionError> {
    let disk = disk_state(ctx);
    if let decide::Disk::ProvisionedFor(previous) = &disk {
        log::warn!(
            "This disk was provisioned for another VM ({}); it now boots as VM {vm_id} (a restored backup, a \
             failover, a specialized disk on a new VM, or an image captured without deprovisioning)",
            previous.as_deref().unwrap_or("VM id not recorded")
        );
    }
    let decision = step(ctx, vm_id, timings, "ovf", || {
        let read = read_source(ctx, source, &disk);
        Ok(decide::decide(&disk, read, &|name| user_exists(ctx, name)))
    })?;
    let previous = match &disk {
        decide::Disk::ProvisionedFor(previous) => previous.clone(),
        decide::Disk::Fresh => None,
    };
    match decision {
        decide::Decision::Fail(e) => Err(e),
        decide::Decision::AskImds { dvd } => {
            from_imds::mark_pending(ctx.host.root);
            Ok(LocalSteps::Done(LocalDone { lifecycle: Lifecycle::ImdsPending { dvd }, later: None }))
        }
        decide::Decision::Provision { bytes, env } => {
            if let Some(kind) = preprovisioned::pool_kind(&env) {
                return Ok(LocalSteps::Pool(kind));
            }
            if previous.is_some() {
                step(ctx, vm_id, timings, "forget-previous-vm", || Ok(forget_previous_vm(ctx)))?;
            }
            let later = provision_from(ctx, vm_id, timings, &bytes, &env)?;
            Ok(LocalSteps::Done(LocalDone { lifecycle: Lifecycle::Provisioned, later: Some(later) }))
        }
        decide::Decision::Keep { reason, refresh } => {
            if previous.is_some() {
                step(ctx, vm_id, timings, "forget-previous-vm", || Ok(forget_previous_vm(ctx)))?;
            }
            if let Some(env) = refresh {
                refresh_from(ctx, vm_id, timings, &env)?;
            }
            Ok(LocalSteps::Done(LocalDone {
                lifecycle: Lifecycle::Kept { previous_vm_id: previous, reason },
                later: None,
            }))
        }
    }
}

/// The disk as its marker tells ([`decide::Disk`]).
fn disk_state(ctx: &Context<'_>) -> decide::Disk {
    let lib = ctx.lib_dir();
    if state::disk_provisioned(ctx.host.root, &lib) {
        decide::Disk::ProvisionedFor(state::marker(ctx.host.root, &lib).filter(|m| !m.is_empty()))
    } else {
        decide::Disk::Fresh
    }
}

/// Whether an account `name` exists, as [`decide::decide`] asks it (an unreadable account
/// database counts as "exists").
fn user_exists(ctx: &Context<'_>, name: &str) -> bool {
    user::lookup(ctx.host.root, name).map_or(true, |a| a.is_some())
}

/// The provisioning source as [`decide`] sees it. On a provisioned disk the DVD is not waited for:
/// it only matters when it is there (udev is still let settle once, see [`dvd`]).
fn read_source(ctx: &Context<'_>, source: &OvfSource, disk: &decide::Disk) -> decide::Source {
    use decide::Source;
    let bytes = match source {
        OvfSource::File(path) => {
            match crate::base::limits::read_file(path, crate::base::limits::Document::Ovf) {
                Ok(bytes) => bytes,
                Err(e) => {
                    return Source::Broken(ProvisionError::new(
                        "ovf",
                        format!("cannot read {}: {e}", path.display()),
                    ))
                }
            }
        }
        OvfSource::Absent => return Source::NoDvd("no provisioning DVD (--no-dvd)".into()),
        OvfSource::Dvd(wait) => {
            let wait = if *disk == decide::Disk::Fresh { *wait } else { Duration::ZERO };
            match crate::base::timeline::wait("dvd", || dvd::read_ovf(ctx.host.runner, wait)) {
                Ok(read) => read.bytes,
                // An ovf-env.xml over its size limit is a broken request, not a missing one.
                Err(e @ dvd::DvdError::Medium { .. }) => {
                    return Source::Broken(ProvisionError::new("ovf", e))
                }
                Err(e @ dvd::DvdError::File(_)) => {
                    return Source::NoDvd(format!("no provisioning DVD could be read ({e})"))
                }
                Err(e) => return Source::NoDvd(e.to_string()),
            }
        }
    };
    source_from_bytes(bytes)
}

/// `ovf-env.xml`'s bytes as [`decide`] sees them.
fn source_from_bytes(bytes: Vec<u8>) -> decide::Source {
    use decide::Source;
    match ovf::parse_bytes(&bytes) {
        Ok(env) => Source::Section { bytes, env: Box::new(env) },
        Err(e) if e.no_provisioning_section() => Source::NoSection,
        Err(e) => Source::Broken(ProvisionError::new("ovf", e)),
    }
}

/// Forget the previous VM's state ([`vm_changed`]); what cannot be removed is a warning.
fn forget_previous_vm(ctx: &Context<'_>) -> usize {
    let report = vm_changed::forget_previous_vm(ctx.host.root, ctx.host.config);
    for f in &report.failures {
        log::warn!("forgetting the previous VM's state: {f}");
    }
    for p in &report.removed {
        log::debug!("removed {} (the previous VM's)", p.display());
    }
    log::info!(
        "removed {} file(s) of the previous VM (goal state, extension settings, DHCP leases)",
        report.removed.len()
    );
    report.removed.len()
}

/// On a kept disk, what a provisioning section naming an existing user may still change: the
/// hostname and the user's inline SSH keys (added, never removed). A section whose plan cannot be
/// made (a system account, a bad key) changes nothing, with a warning.
fn refresh_from(
    ctx: &Context<'_>,
    vm_id: &str,
    timings: &mut Vec<StepTiming>,
    env: &ovf::OvfEnv,
) -> Result<(), ProvisionError> {
    let root = ctx.host.root;
    let plan = match Plan::build(root, env, ctx.host.config, vm_id) {
        Ok(plan) => plan,
        Err(e) => {
            log::warn!("the provisioning section's hostname and SSH keys are not applied: {e}");
            return Ok(());
        }
    };
    step(ctx, vm_id, timings, "hostname", || hostname_stage::set_hostname(root, &plan.hostname))?;
    stages::hostname_settled();
    step(ctx, vm_id, timings, "ssh-keys", || {
        let account =
            user::lookup(root, &plan.user.name).map_err(|e| ProvisionError::new("ssh-keys", e))?.ok_or_else(
                || ProvisionError::new("ssh-keys", format!("user {} does not exist", plan.user.name)),
            )?;
        user::check_regular(root, &account, plan.user.allow_system_user)
            .map_err(|e| ProvisionError::new("ssh-keys", e))?;
        deploy_inline_keys(root, &plan, &account)
    })
    .map(|key_files| restore_provisioned_labels(root, ctx.host.runner, &plan.paths, &key_files))?;
    if !plan.certificate_keys.is_empty() {
        log::info!(
            "{} key(s) named by certificate thumbprint are not deployed on a kept disk",
            plan.certificate_keys.len()
        );
    }
    Ok(())
}

/// The resource-disk stage, on every boot, beside sshd and the network bring-up (nothing waits for
/// it): find the disk, format it only when it is Azure's fresh placeholder, mount it, and turn on
/// swap on it (a large swap file too: nothing waits). Its problems are warnings.
pub fn run_resource_disk(ctx: &Context<'_>) -> Result<Option<DiskOutcome>, ProvisionError> {
    let vm_id = vm_id(ctx.host.root)?;
    Ok(resource_disk(ctx, &vm_id, &mut Vec::new()))
}

fn record(ctx: &Context<'_>, lib: &Path, s: State) -> Result<(), ProvisionError> {
    state::save(ctx.host.root, lib, &s).map_err(|e| ProvisionError::new("state", e))
}

/// Run one step: time it, log it as a milestone, and honour the crash hook.
fn step<T>(
    ctx: &Context<'_>,
    vm_id: &str,
    timings: &mut Vec<StepTiming>,
    name: &'static str,
    f: impl FnOnce() -> Result<T, ProvisionError>,
) -> Result<T, ProvisionError> {
    crash_hook::step_begins();
    let started = Instant::now();
    let result = crate::base::timeline::step(name, f);
    crash_hook::step_ends();
    let value = result?;
    let duration = started.elapsed();
    ctx.milestone(vm_id, name, duration);
    timings.push(StepTiming { step: name, duration });
    crash_point(name);
    Ok(value)
}

/// The crash hook: abort here when `WALA_TEST_CRASH_AFTER` names this point (tests kill the stage
/// after each step and check that a rerun converges).
fn crash_point(name: &str) {
    if std::env::var(CRASH_AFTER_ENV).is_ok_and(|s| s == name) {
        crash_hook::between_steps();
        log::error!("{CRASH_AFTER_ENV}={name}: aborting (test hook)");
        std::process::abort();
    }
}

/// Steps run on two threads in the local stage (`useradd` beside the others). A crash point is
/// meant to fall between steps, so the hook, once it fires, lets no new step begin and waits for
/// the step running on the other thread to end before it aborts.
mod crash_hook {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    static RUNNING: AtomicUsize = AtomicUsize::new(0);
    static CRASHING: AtomicBool = AtomicBool::new(false);

    pub(super) fn step_begins() {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        if CRASHING.load(Ordering::SeqCst) {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
            loop {
                std::thread::park(); // the process is about to abort
            }
        }
    }

    pub(super) fn step_ends() {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }

    pub(super) fn between_steps() {
        CRASHING.store(true, Ordering::SeqCst);
        while RUNNING.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// The provisioning steps for `env` (whose bytes are `bytes`); `Ok(true)` when host keys are left
/// for the host-keys stage. Used by the local stage, the IMDS stage and a pool VM taken over.
fn provision_from(
    ctx: &Context<'_>,
    vm_id: &str,
    timings: &mut Vec<StepTiming>,
    bytes: &[u8],
    env: &ovf::OvfEnv,
) -> Result<plan::LaterSteps, ProvisionError> {
    let root = ctx.host.root;
    let plan = step(ctx, vm_id, timings, "plan", || {
        Plan::build(root, env, ctx.host.config, vm_id).map_err(|e| ProvisionError::new("plan", e))
    })?;
    let paths = &plan.paths;
    // `useradd` is the slowest step (a program that locks and rewrites the account files and
    // copies /etc/skel): it runs on its own thread while the steps that do not need the account
    // are done. Whatever fails, both sides finish before the first failure in step order is
    // returned, so a rerun finds a known state.
    let (account, beside) = std::thread::scope(|scope| {
        let attached = crate::base::timeline::attached();
        let (name, allow_system_user) = (plan.user.name.as_str(), plan.user.allow_system_user);
        let user = scope.spawn(move || {
            attached.enter();
            let mut user_timings = Vec::new();
            let account = step(ctx, vm_id, &mut user_timings, "user", || {
                user::ensure_user(root, ctx.host.runner, name, allow_system_user)
                    .map_err(|e| ProvisionError::new("user", e))
            });
            (account, user_timings)
        });
        let beside = steps_beside_useradd(ctx, vm_id, timings, &plan, bytes);
        let (account, user_timings) = user.join().unwrap_or_else(|_| {
            (Err(ProvisionError::new("user", "the useradd thread panicked")), Vec::new())
        });
        timings.extend(user_timings);
        (account, beside)
    });
    let ((sudoers, fast_keys_left), account) = match (beside, account) {
        (Err(e), _) if e.step == "hostname" => return Err(e),
        (_, Err(e)) | (Err(e), Ok(_)) => return Err(e),
        (Ok(beside), Ok(account)) => (beside, account),
    };
    step(ctx, vm_id, timings, "password", || {
        user::set_password(
            root,
            &paths.password_file,
            &account,
            plan.user.password.as_ref(),
            (plan.user.crypt, plan.user.salt_length),
            plan.user.allow_system_user,
        )
        .map_err(|e| ProvisionError::new("password", e))
    })?;
    if let Some(checked) = sudoers {
        step(ctx, vm_id, timings, "sudoers", || {
            checked.install().map_err(|e| ProvisionError::new("sudoers", e))
        })?;
    }
    let key_files = step(ctx, vm_id, timings, "ssh-keys", || deploy_inline_keys(root, &plan, &account))?;
    if plan.lock_root_password {
        step(ctx, vm_id, timings, "root-password", || {
            user::lock_root_password(root, &paths.password_file)
                .map_err(|e| ProvisionError::new("root-password", e))
        })?;
    }
    restore_provisioned_labels(root, ctx.host.runner, paths, &key_files);
    let mut later = plan.later_steps();
    later.fast_host_keys = fast_keys_left.then(|| plan.hostname.clone());
    Ok(later)
}

/// The local steps that do not need the account, run while `useradd` does: hostname first (the
/// network waits for it), the OVF saved, the sudoers file checked (installed once the user
/// exists), the sshd drop-in, new host keys, custom data and the guest-agent switch. Stops at the
/// first failure. Also returns whether the fast host keys were left to the real root.
fn steps_beside_useradd(
    ctx: &Context<'_>,
    vm_id: &str,
    timings: &mut Vec<StepTiming>,
    plan: &Plan,
    ovf_bytes: &[u8],
) -> Result<(Option<user::CheckedSudoers>, bool), ProvisionError> {
    let (root, paths) = (ctx.host.root, &plan.paths);
    step(ctx, vm_id, timings, "hostname", || hostname_stage::set_hostname(root, &plan.hostname))?;
    stages::hostname_settled();
    step(ctx, vm_id, timings, "save-ovf", || save_scrubbed_ovf(root, &paths.lib_dir, ovf_bytes))?;
    let sudoers = step(ctx, vm_id, timings, "sudoers-check", || {
        let nopasswd = plan.user.password.is_none();
        user::prepare_sudoers(root, ctx.host.runner, &paths.sudoers_dir, &plan.user.name, nopasswd)
            .map_err(|e| ProvisionError::new("sudoers", e))
    })?;
    step(ctx, vm_id, timings, "sshd", || {
        ssh::configure_sshd(root, &paths.ssh_dir, plan.sshd)
            .map(drop)
            .map_err(|e| ProvisionError::new("sshd", e))
    })?;
    // New host keys before sshd's first start: Ed25519 and ECDSA at once, in-process; the image's
    // old keys are deleted, so sshd never serves them. In the initramfs, before the kernel's random
    // pool is ready, making them would wait for it (about a second under emulation, on CPUs
    // without a trusted random instruction): the old keys go now and the new ones are made on
    // the real root ([`make_fast_host_keys_left_by_the_initramfs`]), still before sshd.
    let fast_keys_left = plan.regenerate_host_keys.is_some() && fast_keys_left_to_the_real_root(root);
    if plan.regenerate_host_keys.is_some() {
        if fast_keys_left {
            step(ctx, vm_id, timings, "host-keys-removed", || {
                crate::host::host_keys::remove_all(root, &paths.ssh_dir)
                    .map_err(|e| ProvisionError::new("host-keys", e))
            })?;
        } else {
            step(ctx, vm_id, timings, "host-keys", || {
                crate::host::host_keys::replace_with_fast_keys(root, &paths.ssh_dir, &plan.hostname)
                    .map(drop)
                    .map_err(|e| ProvisionError::new("host-keys", e))
            })?;
        }
    }
    if let Some(cd) = &plan.custom_data {
        step(ctx, vm_id, timings, "custom-data", || {
            customdata::save(root, &paths.lib_dir, &cd.data, cd.decode)
                .map(drop)
                .map_err(|e| ProvisionError::new("custom-data", e))
        })?;
    }
    step(ctx, vm_id, timings, "guest-agent", || set_disable_agent(root, &paths.lib_dir, plan.disable_agent))?;
    Ok((sudoers, fast_keys_left))
}

/// Save `ovf-env.xml` without the password (0600), whatever namespace prefix the document uses.
fn save_scrubbed_ovf(root: &HostRoot, lib_dir: &Path, bytes: &[u8]) -> Result<(), ProvisionError> {
    let err = |e: Cause| ProvisionError::new("save-ovf", e);
    let text = std::str::from_utf8(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes))
        .map_err(|e| err(format!("ovf-env.xml is not UTF-8: {e}").into()))?;
    let scrubbed = ovf::scrub_password(text).map_err(|e| err(e.into()))?;
    files::ensure_dir(&root.path(lib_dir), 0o700).map_err(|e| err(e.into()))?;
    files::write_atomic(
        &root.path(lib_dir.join("ovf-env.xml")),
        scrubbed.as_bytes(),
        WriteOptions::mode(0o600),
    )
    .map_err(|e| err(e.into()))
}

/// Returns the key files written.
fn deploy_inline_keys(
    root: &HostRoot,
    plan: &Plan,
    account: &user::Account,
) -> Result<Vec<PathBuf>, ProvisionError> {
    // Paths were checked against the predicted home; check again against the real one.
    let mut by_path: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for key in &plan.inline_keys {
        let path = ssh::resolve_key_path(key.ovf_path.as_deref(), account, &plan.paths.home_base)
            .map_err(|e| ProvisionError::new("ssh-keys", e))?;
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, lines)) => lines.push(key.line.clone()),
            None => by_path.push((path, vec![key.line.clone()])),
        }
    }
    for (path, lines) in &by_path {
        ssh::deploy_authorized_keys(root, account, path, lines)
            .map_err(|e| ProvisionError::new("ssh-keys", e))?;
    }
    Ok(by_path.into_iter().map(|(path, _)| path).collect())
}

/// `ProvisionGuestAgent=false` → `<Lib.Dir>/disable_agent` (the daemon then runs no extensions).
fn set_disable_agent(root: &HostRoot, lib_dir: &Path, disable: bool) -> Result<(), ProvisionError> {
    let path = root.path(lib_dir.join("disable_agent"));
    let result = if disable {
        files::write_atomic(&path, b"", WriteOptions::mode(0o644)).map_err(|e| e.to_string())
    } else {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
            _ => Ok(()),
        }
    };
    result.map_err(|e| ProvisionError::new("guest-agent", e))
}

/// The resource disk, on the live root only (never from the initramfs). Its problems are
/// warnings: they never fail provisioning.
fn resource_disk(ctx: &Context<'_>, vm_id: &str, timings: &mut Vec<StepTiming>) -> Option<DiskOutcome> {
    let settings = plan::resource_disk_settings(ctx.host.config);
    if !settings.format || !ctx.host.root.is_live() {
        crate::base::timeline::skipped(crate::base::timeline::Kind::Step, "resource-disk");
        return None;
    }
    let started = Instant::now();
    let outcome = crate::base::timeline::step("resource-disk", || {
        find_resource_disk(ctx).and_then(|d| disk::plan_for(ctx.host.root, &settings, d.as_ref())).and_then(
            |p| {
                let outcome = disk::apply_disk(ctx.host.root, ctx.host.runner, &p)?;
                match disk::swap_after_mount(ctx.host.root, &settings, &outcome)? {
                    disk::swap::SwapDecision::Plan(sp) => {
                        disk::apply_swap(ctx.host.root, ctx.host.runner, &sp)?
                    }
                    disk::swap::SwapDecision::Invalid(why) => log::warn!("swap not enabled: {why}"),
                    disk::swap::SwapDecision::Off => {}
                }
                Ok(outcome)
            },
        )
    });
    let took = started.elapsed();
    let event = crate::platform::telemetry::AgentEvent::new(
        "ActivateResourceDisk",
        outcome.is_ok(),
        "resource disk",
        took,
    );
    crate::platform::telemetry::record(ctx.host.root, &ctx.lib_dir(), &event);
    match outcome {
        Ok(o) => {
            log::info!("resource disk: {o:?}");
            let seen = ctx.host.root.path(ctx.lib_dir().join(RESOURCE_DISK_SEEN));
            if matches!(o, DiskOutcome::Mounted { .. }) && !seen.exists() {
                let _ = files::write_atomic(&seen, b"", WriteOptions::mode(0o644));
            }
            ctx.milestone(vm_id, "resource-disk", took);
            timings.push(StepTiming { step: "resource-disk", duration: took });
            Some(o)
        }
        Err(e) => {
            log::warn!("resource disk: {}", e.reason());
            None
        }
    }
}

/// Records that this VM has had a resource disk, so later boots wait for it to appear.
const RESOURCE_DISK_SEEN: &str = "wala-resource-disk-seen";
/// How long a boot waits for a resource disk that an earlier boot had.
const RESOURCE_DISK_WAIT: Duration = Duration::from_secs(30);

/// Find the resource disk. Early in the boot udev may not have made its link yet: when nothing is
/// found, let udev finish its queue; and when an earlier boot had a resource disk, wait for
/// block-device events up to a deadline. VM sizes without a resource disk never wait for one.
fn find_resource_disk(ctx: &Context<'_>) -> Result<Option<disk::ResourceDisk>, disk::DiskError> {
    if let Some(d) = disk::discover(ctx.host.root)? {
        return Ok(Some(d));
    }
    if ctx.host.runner.exists("udevadm") {
        let settle = Cmd::new("udevadm").args(["settle", "--timeout=10"]).timeout(Duration::from_secs(15));
        let _ = crate::base::timeline::wait("udev-settle", || ctx.host.runner.run(&settle));
        if let Some(d) = disk::discover(ctx.host.root)? {
            return Ok(Some(d));
        }
    }
    if !ctx.host.root.path(ctx.lib_dir().join(RESOURCE_DISK_SEEN)).exists() {
        return Ok(None);
    }
    log::info!("waiting up to {}s for the resource disk an earlier boot had", RESOURCE_DISK_WAIT.as_secs());
    let deadline = Instant::now() + RESOURCE_DISK_WAIT;
    let mut events = crate::host::devices::BlockEvents::new();
    let appeared = crate::base::timeline::span_by(
        crate::base::timeline::Kind::Wait,
        "resource-disk-device",
        || -> Result<_, disk::DiskError> {
            while Instant::now() < deadline {
                events.wait(deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(1)));
                if let Some(d) = disk::discover(ctx.host.root)? {
                    return Ok(Some(d));
                }
            }
            Ok(None)
        },
        |r| match r {
            Ok(Some(_)) => crate::base::timeline::Outcome::Ok,
            _ => crate::base::timeline::Outcome::Failed,
        },
    )?;
    if appeared.is_some() {
        return Ok(appeared);
    }
    log::warn!(
        "no resource disk appeared within {}s (the VM size may have none now)",
        RESOURCE_DISK_WAIT.as_secs()
    );
    Ok(None)
}

/// The host-keys stage: the host keys the local stage left (RSA for `rsa` and `auto`, DSA for
/// `dsa`), made by `ssh-keygen` after sshd has started, then sshd reloaded to serve them. sshd and
/// Ready never wait for this: the local stage already made Ed25519 and ECDSA keys. `Ok(true)` when
/// keys were made. A failure is logged and recorded (KVP, telemetry) but is not a provisioning
/// failure: the VM already serves its new Ed25519 and ECDSA keys.
pub fn run_host_keys(ctx: &Context<'_>) -> Result<bool, ProvisionError> {
    let lib = ctx.lib_dir();
    let vm_id = vm_id(ctx.host.root)?;
    let Some(st) = state::load_for(ctx.host.root, &lib, &vm_id).filter(|s| s.host_keys_pending) else {
        return Ok(false);
    };
    let started = Instant::now();
    // The types the plan named; a state file of an older version names none: the configuration's.
    let types: Vec<&'static str> = match st.later {
        Some(later) if !later.host_keys.is_empty() => later
            .host_keys
            .iter()
            .filter_map(|name| {
                let known = crate::host::host_keys::deferred_type(name);
                if known.is_none() {
                    log::warn!("the recorded plan names an unknown host key type {name:?}: not made");
                }
                known
            })
            .collect(),
        _ => crate::host::host_keys::deferred_types(ctx.host.config.ssh_host_key_pair_type),
    };
    let result = crate::base::timeline::step("host-keys-deferred", || {
        crate::host::host_keys::make_deferred_keys(
            ctx.host.root,
            ctx.host.runner,
            ctx.host.config.ssh_dir.as_path(),
            &types,
        )
    })
    .map_err(|e| ProvisionError::new("host-keys", e));
    crash_point("host-keys-deferred");
    // Only this field: the network stage may be recording Ready at the same moment.
    state::update(ctx.host.root, &lib, &vm_id, |s| s.host_keys_pending = false)
        .map_err(|e| ProvisionError::new("state", e))?;
    crash_point("host-keys-recorded");
    let took = started.elapsed();
    let event =
        crate::platform::telemetry::AgentEvent::new("HostKeys", result.is_ok(), types.join(","), took);
    crate::platform::telemetry::record(ctx.host.root, &lib, &event);
    result?;
    ctx.milestone(&vm_id, "host-keys-deferred", took);
    if ctx.host.root.is_live() {
        let facts = crate::base::distro::OsFacts::detect(ctx.host.root);
        crate::host::selinux::restore_labels(
            ctx.host.root,
            ctx.host.runner,
            &facts,
            &[ctx.host.config.ssh_dir.as_path().into()],
        );
        if let Err(e) = crate::host::host_keys::reload_sshd(ctx.host.root, ctx.host.runner) {
            log::warn!(
                "sshd was not reloaded, it serves the new {} key(s) from its next start: {e}",
                types.join(", ")
            );
        }
    }
    Ok(true)
}

/// The network stage: report to the platform.
/// Deploying the SSH keys and key pairs a plan names by certificate thumbprint (given by the
/// program that can: `wala-agentd`, which links the crypto library; see [`network::CertificateWork`]).
pub type CertificateKeys<'a> = dyn Fn(&Context<'_>, &plan::LaterSteps) -> Result<(), ProvisionError> + 'a;

/// The network stage's decisions and reports against `platform`; `certificate_keys` deploys keys
/// named by certificate thumbprint (a stage that finds such keys without it fails, naming the
/// step).
pub fn run_network(
    ctx: &Context<'_>,
    platform: &dyn Platform,
    certificate_keys: Option<&CertificateKeys<'_>>,
) -> Result<NetworkOutcome, ProvisionError> {
    let lib = ctx.lib_dir();
    let vm_id = vm_id(ctx.host.root)?;
    let recorded = state::load_for(ctx.host.root, &lib, &vm_id);
    let provisioned = state::provisioned_for(ctx.host.root, &lib, &vm_id);
    if provisioned && state::final_report_done(recorded.as_ref()) {
        return Ok(NetworkOutcome::NothingToDo(format!("already provisioned (VM id {vm_id})")));
    }
    let Some(mut st) = recorded else {
        let e = ProvisionError::new("local", "the local stage did not run for this VM");
        report_failure(ctx, platform, &vm_id, &e);
        return Err(e);
    };
    let kept = matches!(st.lifecycle, Lifecycle::Kept { .. });
    match st.mode {
        Mode::CloudInit => return Ok(NetworkOutcome::NothingToDo("cloud-init provisions this VM".into())),
        Mode::Disabled => {}
        // Nothing is provisioned on a kept disk: Ready alone, as waagent sends it.
        Mode::Provision if kept => {}
        Mode::Provision => {
            if let Err(e) = platform.report_health(&ProvisioningHealth::Provisioning) {
                log::warn!("Reporting NotReady/Provisioning failed: {e}");
            }
        }
    }
    if st.local == LocalResult::Done && matches!(st.lifecycle, Lifecycle::ImdsPending { .. }) {
        st.local = LocalResult::Failed {
            step: "imds".into(),
            reason: "no provisioning DVD, and the IMDS stage (wala-provision --stage imds) did not run"
                .into(),
        };
    }
    if let LocalResult::Failed { step, reason } = &st.local {
        let e = ProvisionError::new(step, reason.clone());
        if report_failure(ctx, platform, &vm_id, &e) {
            let local = st.local.clone();
            let _ = state::update(ctx.host.root, &lib, &vm_id, |s| {
                s.local = local;
                s.final_report_sent = true;
            });
        }
        return Err(e);
    }
    // With the marker written, the network steps are done: only the report is missing.
    if st.mode == Mode::Provision && !provisioned && !kept {
        if let Err(e) = network_steps(ctx, st.later.as_ref(), certificate_keys) {
            log::error!("Provisioning failed: {e}");
            if report_failure(ctx, platform, &vm_id, &e) {
                let _ = state::update(ctx.host.root, &lib, &vm_id, |s| {
                    s.local = LocalResult::Failed { step: e.step.clone(), reason: e.reason() };
                    s.final_report_sent = true;
                });
            }
            return Err(e);
        }
    }
    state::write_marker(ctx.host.root, &lib, &vm_id).map_err(|e| ProvisionError::new("marker", e))?;
    crash_point("marker");
    match &st.lifecycle {
        Lifecycle::Kept { reason, .. } => {
            log::info!("Reporting Ready; nothing was provisioned: {reason}");
            ctx.final_kvp_with(&vm_id, None, &[("provisioning", "none"), ("detail", reason)]);
        }
        Lifecycle::FromImds => ctx.final_kvp_with(&vm_id, None, &[("source", "imds")]),
        Lifecycle::Provisioned | Lifecycle::ImdsPending { .. } => ctx.final_kvp(&vm_id, None),
    }
    let reported = platform.report_health(&ProvisioningHealth::Ready);
    let event =
        crate::platform::telemetry::AgentEvent::new("ReportReady", reported.is_ok(), "Ready", Duration::ZERO);
    crate::platform::telemetry::record(ctx.host.root, &lib, &event);
    reported.map_err(|e| ProvisionError::new("report-ready", e))?;
    crash_point("report-ready");
    // Only this field (under the state's lock): the host-keys stage may be recording its keys.
    state::update(ctx.host.root, &lib, &vm_id, |s| s.final_report_sent = true)
        .map_err(|e| ProvisionError::new("state", e))?;
    log::info!("Provisioning complete");
    Ok(NetworkOutcome::Ready)
}

/// The network stage's part of the plan, as the local stage recorded it (`later`).
fn network_steps(
    ctx: &Context<'_>,
    later: Option<&plan::LaterSteps>,
    certificate_keys: Option<&CertificateKeys<'_>>,
) -> Result<(), ProvisionError> {
    let lib = ctx.lib_dir();
    let recovered;
    let plan = match later {
        Some(later) => later,
        None => {
            recovered = later_steps_from_saved_ovf(ctx)?;
            &recovered
        }
    };
    if !plan.certificate_keys.is_empty() {
        let deploy = certificate_keys.ok_or_else(|| {
            ProvisionError::new(
                "certificate-keys",
                "the OVF names SSH keys by certificate thumbprint, and this program cannot fetch \
                 certificates (wala-agentd provision-network can)",
            )
        })?;
        crate::base::timeline::step("certificate-keys", || deploy(ctx, plan))?;
        crash_point("certificate-keys");
    }
    if plan.run_custom_data {
        crate::base::timeline::step("custom-data-run", || {
            customdata::execute(ctx.host.root, ctx.host.runner, &lib)
        })
        .map_err(|e| ProvisionError::new("custom-data", e))?;
        crash_point("custom-data-run");
    }
    Ok(())
}

/// For the daemon: if the final provisioning report never reached the platform (the network stage
/// failed to send it, or was killed), send it now. `Ok(true)` when something was sent.
pub fn retry_final_report(
    ctx: &Context<'_>,
    platform: &dyn Platform,
    certificates: &dyn CertificateSource,
) -> Result<bool, ProvisionError> {
    let vm_id = vm_id(ctx.host.root)?;
    match state::load(ctx.host.root, &ctx.lib_dir()) {
        Some(s) if s.vm_id == vm_id && !s.final_report_sent && s.mode != Mode::CloudInit => {
            log::info!("the provisioning result was never reported; reporting it now");
            let deploy =
                |ctx: &Context<'_>, plan: &plan::LaterSteps| deploy_certificate_keys(ctx, certificates, plan);
            run_network(ctx, platform, Some(&deploy)).map(|_| true)
        }
        _ => Ok(false),
    }
}

/// The network stage's part of the plan worked out again from the saved OVF, for a state file an
/// older version wrote (it did not record [`plan::LaterSteps`]).
fn later_steps_from_saved_ovf(ctx: &Context<'_>) -> Result<plan::LaterSteps, ProvisionError> {
    let saved = files::read_optional(&ctx.host.root.path(ctx.lib_dir().join("ovf-env.xml")))
        .map_err(|e| ProvisionError::new("ovf", e))?
        .ok_or_else(|| ProvisionError::new("ovf", "the saved ovf-env.xml is missing"))?;
    let env = ovf::parse(&saved).map_err(|e| ProvisionError::new("ovf", e))?;
    let plan =
        Plan::build(ctx.host.root, &env, ctx.host.config, "").map_err(|e| ProvisionError::new("plan", e))?;
    Ok(plan.later_steps())
}

/// SSH keys and key pairs the plan names by certificate thumbprint: fetch the goal state's
/// certificates (decrypted into `<THUMBPRINT>.crt`/`.prv` in the lib dir) and deploy them.
pub fn deploy_certificate_keys(
    ctx: &Context<'_>,
    certificates: &dyn CertificateSource,
    plan: &plan::LaterSteps,
) -> Result<(), ProvisionError> {
    let err = |e: Cause| ProvisionError::new("certificate-keys", e);
    let thumbprints =
        certificates.fetch_certificates().map_err(|e| ProvisionError::new("certificates", e))?;
    let account = user::lookup(ctx.host.root, &plan.user)
        .map_err(|e| err(e.into()))?
        .ok_or_else(|| err(format!("user {} does not exist", plan.user).into()))?;
    user::check_regular(ctx.host.root, &account, plan.allow_system_user).map_err(|e| err(e.into()))?;
    let lib = ctx.host.root.path(ctx.lib_dir());
    let mut written = Vec::new();
    for key in &plan.certificate_keys {
        let Some(thumb) = thumbprints.iter().find(|t| t.eq_ignore_ascii_case(&key.fingerprint)) else {
            return Err(err(format!("certificate {} is not in the goal state", key.fingerprint).into()));
        };
        let path = ssh::resolve_key_path(Some(&key.path.to_string_lossy()), &account, &plan.home_base)
            .map_err(|e| err(e.into()))?;
        if key.key_pair {
            let file = lib.join(format!("{thumb}.prv"));
            let pem = crate::base::secret::Secret::new(
                std::fs::read(&file).map_err(|e| err(Cause::io(format!("read {}", file.display()), e)))?,
            );
            let (private, public) =
                crate::crypto::ssh_keypair_from_prv_pem(pem.expose()).map_err(|e| err(e.into()))?;
            ssh::deploy_key_pair(ctx.host.root, &account, &path, &private, &public)
                .map_err(|e| err(e.into()))?;
        } else {
            let file = lib.join(format!("{thumb}.crt"));
            let pem =
                std::fs::read(&file).map_err(|e| err(Cause::io(format!("read {}", file.display()), e)))?;
            let line = crate::crypto::openssh_key_from_cert_pem(&pem).map_err(|e| err(e.into()))?;
            ssh::deploy_authorized_keys(ctx.host.root, &account, &path, &[line])
                .map_err(|e| err(e.into()))?;
        }
        log::info!(
            "deployed the {} of certificate {thumb} to {}",
            if key.key_pair { "key pair" } else { "SSH key" },
            path.display()
        );
        written.push(path);
    }
    let facts = crate::base::distro::OsFacts::detect(ctx.host.root);
    crate::host::selinux::restore_labels(
        ctx.host.root,
        ctx.host.runner,
        &facts,
        &crate::host::selinux::key_dirs(&written),
    );
    Ok(())
}

/// Report ProvisioningFailed; whether the platform took it.
fn report_failure(ctx: &Context<'_>, platform: &dyn Platform, vm_id: &str, e: &ProvisionError) -> bool {
    ctx.final_kvp(vm_id, Some(&e.to_string()));
    let description = format!("Provisioning failed: {e}");
    match platform.report_health(&ProvisioningHealth::Failed { description }) {
        Ok(()) => true,
        Err(re) => {
            log::error!("Reporting ProvisioningFailed failed: {re}");
            false
        }
    }
}

/// SELinux labels restored on what provisioning wrote ([`selinux::provisioned_paths`]), with the facts found
/// under `root` (logged).
fn restore_provisioned_labels(
    root: &HostRoot,
    runner: &dyn Runner,
    paths: &plan::Paths,
    key_files: &[PathBuf],
) {
    let facts = crate::base::distro::OsFacts::detect(root);
    log::info!("host: {}", facts.summary());
    let list = selinux::provisioned_paths(
        &paths.lib_dir,
        &paths.ssh_dir,
        &paths.sudoers_dir,
        &paths.password_file,
        key_files,
    );
    selinux::restore_labels(root, runner, &facts, &list);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::FakeRunner;
    use crate::documents::conf::Config;
    use crate::platform::RecordingPlatform;

    const ID: &str = "7E5C3F2A-1B4D-4E6F-8A9B-0C1D2E3F4A5B";

    /// The network stage as wala-agentd runs it: certificate keys deployed in this process.
    fn network_in_process(
        ctx: &Context<'_>,
        p: &RecordingPlatform,
    ) -> Result<NetworkOutcome, ProvisionError> {
        let deploy = |ctx: &Context<'_>, plan: &plan::LaterSteps| deploy_certificate_keys(ctx, p, plan);
        run_network(ctx, p, Some(&deploy))
    }

    fn setup(local: LocalResult, mode: Mode) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sys/class/dmi/id")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("sys/firmware/efi")).expect("mkdir");
        std::fs::write(dir.path().join("sys/class/dmi/id/product_uuid"), ID).expect("write");
        let root = HostRoot::new(dir.path());
        let config = Config::default();
        let lib = config.lib_dir.as_path();
        let st = State::new(ID, mode, local);
        state::save(&root, lib, &st).expect("save");
        let ovf = concat!(
            r#"<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure">"#,
            r#"<wa:ProvisioningSection><wa:Version>1.0</wa:Version><wa:LinuxProvisioningConfigurationSet>"#,
            r#"<wa:ConfigurationSetType>LinuxProvisioningConfiguration</wa:ConfigurationSetType>"#,
            r#"<wa:HostName>vm</wa:HostName><wa:UserName>u</wa:UserName></wa:LinuxProvisioningConfigurationSet>"#,
            r#"</wa:ProvisioningSection><wa:PlatformSettingsSection><wa:Version>1.0</wa:Version><wa:PlatformSettings>"#,
            r#"<wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent></wa:PlatformSettings></wa:PlatformSettingsSection></Environment>"#
        );
        std::fs::write(root.path(lib.join("ovf-env.xml")), ovf).expect("write");
        (dir, config)
    }

    fn ctx<'a>(dir: &tempfile::TempDir, config: &'a Config, runner: &'a FakeRunner) -> Context<'a> {
        let root = Box::leak(Box::new(HostRoot::new(dir.path())));
        Context { host: Host { root, config, runner }, kvp: None }
    }

    #[test]
    fn done_local_stage_reports_provisioning_then_ready_and_writes_the_marker() {
        let (dir, config) = setup(LocalResult::Done, Mode::Provision);
        let runner = FakeRunner::new();
        let c = ctx(&dir, &config, &runner);
        let p = RecordingPlatform::default();
        assert_eq!(network_in_process(&c, &p).ok(), Some(NetworkOutcome::Ready));
        assert_eq!(p.reports(), vec![ProvisioningHealth::Provisioning, ProvisioningHealth::Ready]);
        assert!(state::provisioned_for(c.host.root, config.lib_dir.as_path(), ID));
        // Next boot: nothing more is sent.
        let p2 = RecordingPlatform::default();
        assert!(matches!(network_in_process(&c, &p2), Ok(NetworkOutcome::NothingToDo(_))));
        assert!(p2.reports().is_empty());
    }

    #[test]
    fn the_network_stage_carries_out_the_recorded_plan_not_the_saved_ovf() {
        let (dir, config) = setup(LocalResult::Done, Mode::Provision);
        let runner = FakeRunner::new();
        let c = ctx(&dir, &config, &runner);
        let lib = config.lib_dir.as_path();
        // The local stage recorded a key by certificate thumbprint; the saved OVF (which names
        // none) is gone: the network stage neither needs it nor reads it.
        std::fs::remove_file(c.host.root.path(lib.join("ovf-env.xml"))).expect("remove");
        let key = plan::CertificateKey {
            fingerprint: "ABC123".into(),
            path: "/home/u/.ssh/authorized_keys".into(),
            key_pair: false,
        };
        state::update(c.host.root, lib, ID, |s| {
            s.record_later_steps(Some(plan::LaterSteps {
                certificate_keys: vec![key.clone()],
                user: "u".into(),
                ..Default::default()
            }))
        })
        .expect("update");
        let given = std::sync::Mutex::new(Vec::new());
        let deploy = |_: &Context<'_>, later: &plan::LaterSteps| {
            given.lock().expect("lock").push(later.clone());
            Ok(())
        };
        let p = RecordingPlatform::default();
        assert_eq!(run_network(&c, &p, Some(&deploy)).ok(), Some(NetworkOutcome::Ready));
        let given = given.into_inner().expect("lock");
        assert_eq!(given.len(), 1, "deployed once");
        assert_eq!((given[0].user.as_str(), &given[0].certificate_keys), ("u", &vec![key]));
        assert!(
            !state::load(c.host.root, lib).expect("state").host_keys_pending,
            "no host keys were planned"
        );
    }

    #[test]
    fn failed_local_stage_is_reported_and_never_ready() {
        let (dir, config) = setup(
            LocalResult::Failed { step: "user".into(), reason: "useradd failed".into() },
            Mode::Provision,
        );
        let runner = FakeRunner::new();
        let c = ctx(&dir, &config, &runner);
        let p = RecordingPlatform::default();
        let err = network_in_process(&c, &p).unwrap_err();
        assert_eq!(err.step, "user");
        assert_eq!(
            p.reports(),
            vec![
                ProvisioningHealth::Provisioning,
                ProvisioningHealth::Failed {
                    description: "Provisioning failed: user: useradd failed".into()
                }
            ]
        );
        assert!(!state::provisioned_for(c.host.root, config.lib_dir.as_path(), ID));
    }

    #[test]
    fn a_ready_that_did_not_get_through_is_sent_again() {
        let (dir, config) = setup(LocalResult::Done, Mode::Provision);
        let runner = FakeRunner::new();
        let c = ctx(&dir, &config, &runner);
        let failing = RecordingPlatform::failing();
        assert_eq!(network_in_process(&c, &failing).unwrap_err().step, "report-ready");
        let p = RecordingPlatform::default();
        assert_eq!(network_in_process(&c, &p).ok(), Some(NetworkOutcome::Ready));
        assert_eq!(p.reports().last(), Some(&ProvisioningHealth::Ready));
    }

    #[test]
    fn the_daemon_resends_only_a_missing_report() {
        let (dir, config) = setup(LocalResult::Done, Mode::Provision);
        let runner = FakeRunner::new();
        let c = ctx(&dir, &config, &runner);
        // The network stage ran the steps and wrote the marker, but Ready did not get through.
        assert!(network_in_process(&c, &RecordingPlatform::failing()).is_err());
        assert!(state::provisioned_for(c.host.root, config.lib_dir.as_path(), ID));
        let p = RecordingPlatform::default();
        assert_eq!(retry_final_report(&c, &p, &p).ok(), Some(true));
        assert_eq!(p.reports(), vec![ProvisioningHealth::Provisioning, ProvisioningHealth::Ready]);
        let p = RecordingPlatform::default();
        assert_eq!(retry_final_report(&c, &p, &p).ok(), Some(false));
        assert!(p.reports().is_empty());
    }

    #[test]
    fn disabled_reports_ready_and_cloud_init_reports_nothing() {
        let (dir, config) = setup(LocalResult::Done, Mode::Disabled);
        let runner = FakeRunner::new();
        let p = RecordingPlatform::default();
        assert_eq!(network_in_process(&ctx(&dir, &config, &runner), &p).ok(), Some(NetworkOutcome::Ready));
        assert_eq!(p.reports(), vec![ProvisioningHealth::Ready]);
        let (dir, config) = setup(LocalResult::Done, Mode::CloudInit);
        let p = RecordingPlatform::default();
        assert!(matches!(
            network_in_process(&ctx(&dir, &config, &runner), &p),
            Ok(NetworkOutcome::NothingToDo(_))
        ));
        assert!(p.reports().is_empty());
    }

    #[test]
    fn no_local_stage_is_a_reported_failure() {
        let (dir, config) = setup(LocalResult::Done, Mode::Provision);
        std::fs::remove_file(dir.path().join("var/lib/waagent/wala-provisioning.json")).expect("rm");
        let runner = FakeRunner::new();
        let p = RecordingPlatform::default();
        assert_eq!(network_in_process(&ctx(&dir, &config, &runner), &p).unwrap_err().step, "local");
        assert!(matches!(p.reports().as_slice(), [ProvisioningHealth::Failed { .. }]));
    }

    #[test]
    fn a_marker_in_waagents_byte_order_or_case_is_this_vm_and_another_id_keeps_the_disk() {
        let (dir, config) = setup(LocalResult::Done, Mode::Provision);
        let runner = FakeRunner::new();
        let c = ctx(&dir, &config, &runner);
        let lib = config.lib_dir.as_path();
        // waagent swaps the first three groups on every generation (this is a Gen2 VM, whose id
        // is not swapped); old agents stored the raw order; kernels before 4.15 print upper case.
        for marker in ["2A3F5C7E-4D1B-6F4E-8A9B-0C1D2E3F4A5B".to_string(), ID.to_lowercase()] {
            state::write_marker(c.host.root, lib, &marker).expect("marker");
            let out = run_local(&c, &OvfSource::Absent).expect("local");
            assert!(out.skipped.as_deref().is_some_and(|s| s.starts_with("already provisioned")), "{marker}");
        }
        // Another VM's id, no DVD: kept (nothing provisioned), then Ready alone and the new marker.
        let other = "00000000-1111-2222-3333-444444444444";
        state::write_marker(c.host.root, lib, other).expect("marker");
        std::fs::remove_file(dir.path().join("var/lib/waagent/wala-provisioning.json")).expect("rm");
        let out = run_local(&c, &OvfSource::Absent).expect("local");
        assert_eq!(out.skipped, None);
        let Lifecycle::Kept { previous_vm_id, reason } = &out.lifecycle else {
            panic!("{:?}", out.lifecycle)
        };
        assert_eq!(previous_vm_id.as_deref(), Some(other));
        assert!(reason.ends_with("no provisioning DVD (--no-dvd): nothing to provision"), "{reason}");
        assert!(!c.host.root.path("run/wala/imds-pending").exists(), "no IMDS on a provisioned disk");
        let p = RecordingPlatform::default();
        assert_eq!(network_in_process(&c, &p).ok(), Some(NetworkOutcome::Ready));
        assert_eq!(p.reports(), vec![ProvisioningHealth::Ready]);
        assert_eq!(state::marker(c.host.root, lib).as_deref(), Some(ID));
        assert!(runner.command_lines().is_empty(), "{:?}", runner.command_lines());
    }

    #[test]
    fn auto_defers_to_an_enabled_cloud_init() {
        let (dir, config) = setup(LocalResult::Done, Mode::Provision);
        let runner = FakeRunner::new();
        let c = ctx(&dir, &config, &runner);
        let lib_units = dir.path().join("lib/systemd/system");
        let wants = dir.path().join("etc/systemd/system/cloud-init.target.wants");
        std::fs::create_dir_all(&lib_units).expect("mkdir");
        std::fs::create_dir_all(&wants).expect("mkdir");
        // Installed but not enabled; then enabled; then masked.
        std::fs::write(lib_units.join("cloud-init-local.service"), "[Unit]\n").expect("write");
        assert_eq!(mode(&c), Mode::Provision);
        std::os::unix::fs::symlink(
            "/lib/systemd/system/cloud-init-local.service",
            wants.join("cloud-init-local.service"),
        )
        .expect("link");
        assert_eq!(mode(&c), Mode::CloudInit);
        let waagent = Config { provisioning_agent: ProvisioningAgent::Waagent, ..Config::default() };
        assert_eq!(mode(&ctx(&dir, &waagent, &runner)), Mode::Provision);
        std::os::unix::fs::symlink(
            "/dev/null",
            dir.path().join("etc/systemd/system/cloud-init-local.service"),
        )
        .expect("mask");
        assert_eq!(mode(&c), Mode::Provision);
        // A link left behind by an uninstalled cloud-init does not count.
        std::fs::remove_file(dir.path().join("etc/systemd/system/cloud-init-local.service")).expect("unmask");
        std::fs::remove_file(lib_units.join("cloud-init-local.service")).expect("rm");
        assert_eq!(mode(&c), Mode::Provision);
        assert!(runner.command_lines().is_empty(), "no systemctl");
    }
}
