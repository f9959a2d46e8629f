//! The hostname stage (`wala-provision --stage hostname`, `wala-provision-hostname.service`): the
//! provisioned hostname set before udev has run on the real root, so that the network, which
//! waits for it (`Before=network-pre.target`), starts as early as on an image without an agent,
//! and the first DHCP request still carries the new name.
//!
//! Why not the local stage: it runs after udev has been asked about every device, and while udev
//! works through them (about two seconds under emulation) systemd is slow to start the jobs that
//! become runnable, so a network held by the local stage started 1.2 to 1.8 s after the hostname
//! was set (docs/boot.md). This stage runs right after the root file system is writable, when
//! the only device nodes are those the initramfs made: it reads the DVD only where its drive is
//! already in `/dev` and its medium is one the in-process reader reads, never mounts, waits or
//! ejects, and changes nothing but the hostname. It makes the local stage's own decision
//! ([`decide`](super::decide)) from the same facts, and sets the name only when that decision
//! sets one: a disk never provisioned, or a provisioned disk whose section names a user it has. In
//! every other case it leaves the hostname to the local stage, which decides again with the DVD it
//! waits for and sets the same name (then a no-op).
//!
//! When the local stage (or the IMDS stage) changes the kernel's hostname and the network did not
//! wait for it, it leaves [`NOT_PUBLISHED`]; the network stage then publishes the name with a DHCP
//! request once Ready is reported ([`publish_if_pending`]). The network waits for the local
//! stage only where `wala-provision-generator` found no DVD drive in `/dev` when systemd started:
//! its drop-in orders the stage `Before=network-pre.target` and sets [`NETWORK_WAITS_ENV`].

use std::path::Path;

use crate::base::files::{self, WriteOptions};
use crate::base::root::HostRoot;
use crate::host::{dvd, hostname, mounts};

use super::{decide, preprovisioned, state, Context, LocalResult, Mode, Plan, ProvisionError};

/// Present (it holds the name) when the kernel's hostname changed after the network may have sent
/// its first DHCP request with the old one; under [`HostRoot::kernel`].
pub const NOT_PUBLISHED: &str = "/run/wala/hostname-not-published";

/// Set to `1` (by the generator's drop-in) when the network waits for the local stage's
/// hostname (`Before=network-pre.target`): nothing to publish then.
pub const NETWORK_WAITS_ENV: &str = "WALA_NETWORK_WAITS_FOR_HOSTNAME";

/// What the hostname stage did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostnameOutcome {
    /// The hostname is set to this name.
    Set(String),
    /// Left to the local stage, and why.
    Left(String),
}

/// The hostname stage (see the module documentation). An error only when setting the name failed.
pub fn run(ctx: &Context<'_>) -> Result<HostnameOutcome, ProvisionError> {
    let left = |why: &str| Ok(HostnameOutcome::Left(why.to_string()));
    let root = ctx.host.root;
    let lib = ctx.lib_dir();
    if let Some(mount_point) = mounts::pending_mount_for(root, &lib) {
        return Ok(HostnameOutcome::Left(format!(
            "{} is on {}, which is not mounted yet",
            lib.display(),
            mount_point.display()
        )));
    }
    let Ok(vm_id) = super::vm_id(root) else { return left("no VM id yet") };
    if state::provisioned_for(root, &lib, &vm_id) {
        return left("already provisioned for this VM");
    }
    if preprovisioned::pending(root, &lib, &vm_id).is_some() {
        return left("a pre-provisioned pool VM waiting for its user");
    }
    if state::load(root, &lib).is_some_and(|s| s.vm_id == vm_id && s.local == LocalResult::Done) {
        return left("the local stage already ran for this VM");
    }
    if ctx.host.config.detect_scvmm_env {
        return left("DetectScvmmEnv: whether System Center VMM provisions is the local stage's question");
    }
    if super::mode(ctx) != Mode::Provision {
        return left("provisioning is not wala's (Provisioning.Agent)");
    }
    let Some(read) = dvd::read_ovf_at_once(&root.kernel().path("/dev")) else {
        return left("no provisioning DVD readable before udev has run");
    };
    let disk = super::disk_state(ctx);
    let env =
        match decide::decide(&disk, super::source_from_bytes(read.bytes), &|n| super::user_exists(ctx, n)) {
            decide::Decision::Provision { env, .. } if preprovisioned::pool_kind(&env).is_none() => env,
            decide::Decision::Keep { refresh: Some(env), .. } => env,
            _ => return left("this boot's provisioning sets no hostname from the DVD"),
        };
    let plan = match Plan::build(root, &env, ctx.host.config, &vm_id) {
        Ok(plan) => plan,
        Err(e) => {
            return Ok(HostnameOutcome::Left(format!("the local stage reports the plan's error ({e})")))
        }
    };
    hostname::set_hostname(root, &plan.hostname).map_err(|e| ProvisionError::new("hostname", e))?;
    Ok(HostnameOutcome::Set(plan.hostname))
}

/// The local and IMDS stages' hostname step: set `name`; when that changed the kernel's name and
/// the network did not wait for it, leave [`NOT_PUBLISHED`] for the network stage.
pub(super) fn set_hostname(root: &HostRoot, name: &str) -> Result<(), ProvisionError> {
    let change = hostname::set_hostname(root, name).map_err(|e| ProvisionError::new("hostname", e))?;
    if change.kernel && !network_waited(std::env::var_os(NETWORK_WAITS_ENV).as_deref()) {
        leave_unpublished(root, name);
    }
    Ok(())
}

/// Whether [`NETWORK_WAITS_ENV`]'s value says the network waited for the hostname.
fn network_waited(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| v == "1")
}

/// Write [`NOT_PUBLISHED`] (a failure is a warning: the name then reaches the platform's DNS
/// with the next renewal).
fn leave_unpublished(root: &HostRoot, name: &str) {
    let path = root.kernel().path(NOT_PUBLISHED);
    let written = path
        .parent()
        .map_or(Ok(()), |dir| files::ensure_dir(dir, 0o755))
        .and_then(|()| files::write_atomic(&path, format!("{name}\n").as_bytes(), WriteOptions::mode(0o644)));
    match written {
        Ok(()) => {
            log::info!("the hostname is published with a DHCP request once the network stage has reported")
        }
        Err(e) => log::warn!("{e}: the new hostname is not published before the next DHCP renewal"),
    }
}

/// In the network stage, once it has reported: publish the hostname when [`NOT_PUBLISHED`] asks
/// for it, then remove the file.
pub(super) fn publish_if_pending(ctx: &Context<'_>) {
    let path = ctx.host.root.kernel().path(NOT_PUBLISHED);
    if !path.exists() {
        return;
    }
    if ctx.host.root.is_live() {
        let publish = || {
            hostname::publish(ctx.host.root, ctx.host.runner);
            crate::base::timeline::Outcome::Ok
        };
        crate::base::timeline::span_by(crate::base::timeline::Kind::Wait, "publish-hostname", publish, |o| {
            *o
        });
    }
    if let Err(e) = files::remove_optional(Path::new(&path)) {
        log::warn!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_left_unpublished_is_taken_once_by_the_network_stage() {
        assert!(network_waited(Some(std::ffi::OsStr::new("1"))));
        assert!(!network_waited(Some(std::ffi::OsStr::new("0"))));
        assert!(!network_waited(None));

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("proc")).expect("mkdir"); // the kernel's view is the test root
        let root = HostRoot::new(dir.path());
        leave_unpublished(&root, "vm-1");
        let path = root.kernel().path(NOT_PUBLISHED);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "vm-1\n");
        let config = crate::documents::conf::Config::default();
        let runner = crate::base::cmd::FakeRunner::new();
        let ctx =
            Context { host: crate::host::Host { root: &root, config: &config, runner: &runner }, kvp: None };
        publish_if_pending(&ctx);
        assert!(!path.exists());
        // Not the live root: nothing run (the live root runs the network stack's renewal).
        assert!(runner.command_lines().is_empty());
    }
}
