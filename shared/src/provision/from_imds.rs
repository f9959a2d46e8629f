//! The IMDS stage: IMDS as the second source of the provisioning request, when the local stage
//! found no provisioning DVD on a disk never provisioned (docs/provisioning.md, "IMDS stage").
//!
//! IMDS needs the network and the local stage runs before it, so this is a stage of its own,
//! `wala-provision-imds.service`: after the local stage, before sshd and user sessions, and
//! started only on a boot whose local stage left [`PENDING_FLAG`] (a unit condition: every other
//! boot does not even start the process). It waits for a route to IMDS (rtnetlink, as the network
//! stage waits for the WireServer's; bounded by [`ROUTE_WAIT`]), asks `GET /metadata/instance`
//! through the one HTTP client ([`RetryPolicy::imds_provisioning`]: 30 s in all), and then:
//!
//! - `osProfile.adminUsername` set: the request IMDS makes ([`crate::provision::imds_request`]) is
//!   provisioned by the local stage's own steps (user, keys, hostname, sudoers, sshd, host keys):
//!   sshd has not started yet, so it never runs before the user's keys are in place;
//! - no `adminUsername` (a specialized VM): nothing is provisioned; Ready is reported;
//! - IMDS cannot be read, or its request cannot be used: the stage fails, and the network stage
//!   reports ProvisioningFailed naming both the missing DVD and the IMDS error.
//!
//! The password only ever comes from the OVF; IMDS carries none.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::base::root::HostRoot;
use crate::platform::http::RetryPolicy;
use crate::platform::imds::ImdsClient;
use crate::provision::imds_request::{self, Request};
use crate::provision::{step, Context, Lifecycle, LocalResult, ProvisionError, State, StepTiming};
use crate::{documents::ovf, platform::endpoint};

/// Present (under the running system's `/run`) while the IMDS stage has work: the unit's
/// `ConditionPathExists=`.
pub const PENDING_FLAG: &str = "/run/wala/imds-pending";

/// How long the stage waits for a route to IMDS before it tries anyway (sshd waits meanwhile).
pub const ROUTE_WAIT: Duration = Duration::from_secs(120);

/// How the IMDS stage ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImdsOutcome {
    /// Nothing pending: the DVD was read, or this VM is done.
    NothingToDo,
    /// Provisioned from IMDS.
    Provisioned,
    /// IMDS asks for nothing (a specialized VM); why.
    Kept(String),
}

fn flag_path(root: &HostRoot) -> PathBuf {
    root.kernel().path(PENDING_FLAG)
}

/// Leave the flag that starts the IMDS stage (a failure is a warning: the network stage then
/// reports that the IMDS stage did not run).
pub fn mark_pending(root: &HostRoot) {
    let path = flag_path(root);
    let made = path.parent().map_or(Ok(()), |d| crate::base::files::ensure_dir(d, 0o755)).and_then(|()| {
        crate::base::files::write_atomic(&path, b"", crate::base::files::WriteOptions::mode(0o644))
    });
    if let Err(e) = made {
        log::warn!("cannot leave {}: {e}", path.display());
    }
}

fn clear_pending(root: &HostRoot) {
    let _ = std::fs::remove_file(flag_path(root));
}

/// The recorded state of this VM, when the IMDS stage has work.
fn pending(ctx: &Context<'_>) -> Result<Option<State>, ProvisionError> {
    let vm_id = super::vm_id(ctx.host.root)?;
    Ok(super::state::load(ctx.host.root, &ctx.lib_dir()).filter(|s| {
        s.vm_id == vm_id
            && s.local == LocalResult::Done
            && matches!(s.lifecycle, Lifecycle::ImdsPending { .. })
    }))
}

/// The IMDS stage against the configured IMDS (`Wala.Imds`, else 169.254.169.254).
pub fn run(ctx: &Context<'_>) -> Result<ImdsOutcome, ProvisionError> {
    let Some(st) = pending(ctx)? else {
        clear_pending(ctx.host.root);
        return Ok(ImdsOutcome::NothingToDo);
    };
    let endpoints = endpoint::resolve(ctx.host.config, ctx.host.root, SystemTime::now());
    log::info!("No provisioning DVD: asking IMDS at {}", endpoints.imds.base_url());
    if ctx.host.root.is_live() {
        if let Some(ip) = endpoints.imds.ipv4() {
            let started = Instant::now();
            match crate::base::timeline::wait("route-to-imds", || {
                crate::host::route_wait::wait_for_route(ip, ROUTE_WAIT)
            }) {
                Ok(route) => {
                    log::info!("route to IMDS: {route} (waited {} ms)", started.elapsed().as_millis())
                }
                Err(e) => log::warn!("{e}; trying IMDS anyway"),
            }
        }
    }
    let client = ImdsClient::new(endpoints.imds).with_retry_policy(RetryPolicy::imds_provisioning());
    run_with(ctx, &client, st)
}

/// The IMDS stage with this client, for the recorded pending state `st`.
pub fn run_with(
    ctx: &Context<'_>,
    client: &ImdsClient,
    mut st: State,
) -> Result<ImdsOutcome, ProvisionError> {
    let lib = ctx.lib_dir();
    let vm_id = st.vm_id.clone();
    let dvd = match &st.lifecycle {
        Lifecycle::ImdsPending { dvd } => dvd.clone(),
        _ => String::new(),
    };
    let started = Instant::now();
    let mut timings: Vec<StepTiming> = Vec::new();
    let result = ask_and_provision(ctx, client, &vm_id, &dvd, &mut timings);
    let message = match &result {
        Ok((lifecycle, _)) => format!("IMDS stage: {}", lifecycle.describe()),
        Err(e) => format!("IMDS stage failed at step {}", e.step),
    };
    crate::platform::telemetry::record(
        ctx.host.root,
        &lib,
        &crate::platform::telemetry::AgentEvent::new("Provision", result.is_ok(), message, started.elapsed()),
    );
    let outcome = match &result {
        Ok((lifecycle, later)) => {
            st.lifecycle = lifecycle.clone();
            st.record_later_steps(later.clone());
            match lifecycle {
                Lifecycle::Kept { reason, .. } => {
                    log::info!("Nothing provisioned: {reason}");
                    ctx.note(&vm_id, "kept", reason);
                    ImdsOutcome::Kept(reason.clone())
                }
                _ => {
                    ctx.note(&vm_id, "source", "imds");
                    ImdsOutcome::Provisioned
                }
            }
        }
        Err(e) => {
            st.local = LocalResult::Failed { step: e.step.clone(), reason: e.reason() };
            ImdsOutcome::NothingToDo
        }
    };
    super::state::save(ctx.host.root, &lib, &st).map_err(|e| ProvisionError::new("state", e))?;
    clear_pending(ctx.host.root);
    match result {
        Ok(_) => Ok(outcome),
        Err(e) => {
            log::error!("Provisioning failed: {e}");
            ctx.final_kvp(&vm_id, Some(&e.to_string()));
            Err(e)
        }
    }
}

fn ask_and_provision(
    ctx: &Context<'_>,
    client: &ImdsClient,
    vm_id: &str,
    dvd: &str,
    timings: &mut Vec<StepTiming>,
) -> Result<(Lifecycle, Option<super::plan::LaterSteps>), ProvisionError> {
    let fail = |what: String| ProvisionError::new("imds", format!("{dvd}; {what}"));
    let compute = step(ctx, vm_id, timings, "imds", || {
        crate::base::timeline::wait("imds", || client.instance())
            .map(|md| md.compute)
            .map_err(|e| fail(format!("IMDS could not be read: {e}")))
    })?;
    match imds_request::request(&compute).map_err(|e| fail(e.to_string()))? {
        Request::Nothing => Ok((
            Lifecycle::Kept {
                previous_vm_id: None,
                reason: format!(
                    "{dvd}, and IMDS names no admin user (a specialized VM): nothing to provision"
                ),
            },
            None,
        )),
        Request::Ovf(xml) => {
            let env = ovf::parse(&xml).map_err(|e| fail(format!("IMDS's request: {}", e.reason())))?;
            log::info!(
                "provisioning user {} and hostname {} from IMDS (no password: it only comes from the OVF)",
                env.provisioning.user_name,
                env.provisioning.host_name
            );
            let later = super::provision_from(ctx, vm_id, timings, xml.as_bytes(), &env)?;
            Ok((Lifecycle::FromImds, Some(later)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::FakeRunner;
    use crate::documents::conf::Config;
    use crate::platform::endpoint::Endpoint;

    #[test]
    fn an_unreachable_imds_fails_the_stage_within_its_budget_and_clears_the_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sys/class/dmi/id")).expect("mkdir");
        let root = HostRoot::new(dir.path());
        let config = Config::default();
        let runner = FakeRunner::new();
        let ctx =
            Context { host: crate::host::Host { root: &root, config: &config, runner: &runner }, kvp: None };
        // A port nothing listens on: every attempt is refused; the real policy, 20 times faster.
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let client = ImdsClient::new(Endpoint::new("127.0.0.1", port))
            .with_retry_policy(RetryPolicy::imds_provisioning().scaled_down(20));
        let mut st = State::new("id", crate::provision::Mode::Provision, LocalResult::Done);
        st.lifecycle = Lifecycle::ImdsPending { dvd: "no provisioning DVD (--no-dvd)".into() };
        mark_pending(&root);
        assert!(dir.path().join("run/wala/imds-pending").exists());
        let err = run_with(&ctx, &client, st).expect_err("IMDS is down");
        assert_eq!(err.step, "imds");
        assert!(
            err.reason().starts_with("no provisioning DVD (--no-dvd); IMDS could not be read: "),
            "{err}"
        );
        let saved = crate::provision::state::load(&root, config.lib_dir.as_path()).expect("state");
        assert!(matches!(saved.local, LocalResult::Failed { ref step, .. } if step == "imds"), "{saved:?}");
        assert!(!dir.path().join("run/wala/imds-pending").exists(), "the flag is cleared");
    }
}
