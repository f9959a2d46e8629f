//! The network stage against the real WireServer: decide first whether anything is left to report
//! (a later boot costs nothing), then wait only for what the report needs, a route from this VM
//! to the WireServer, and not for `network-online.target`. The transport certificate, when the
//! OVF names keys by certificate, is made while the network comes up.
//!
//! Certificates need the crypto library (libcrypto), and `wala-provision` does not link it: every
//! process that maps it pays its relocations at start, a quarter of a second under emulation, on
//! every boot. So the certificate work is given to [`run`] as [`CertificateWork`] by
//! `wala-agentd` ([`IN_PROCESS`]), which does it through the short-lived `wala-crypto` helper (the
//! one program that links libcrypto, [`crate::crypto::helper`]); when the OVF names SSH keys by
//! certificate thumbprint, `wala-provision` hands the whole stage over to `wala-agentd
//! provision-network` ([`hand_over`]).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::crypto;
use crate::host::route_wait;
use crate::platform::{endpoint, wireserver::WireClient};
use crate::provision::plan::LaterSteps;
use crate::provision::{state, Context, Lifecycle, LocalResult, Mode, NetworkOutcome, ProvisionError};

/// The network stage's work with certificates, as functions, so that a program that never names
/// [`IN_PROCESS`] links none of it (nor the crypto library).
#[derive(Debug, Clone, Copy)]
pub struct CertificateWork {
    /// Make (or load) the transport key pair in the lib dir, while the network comes up.
    pub prepare: fn(&Path),
    /// Fetch the goal state's certificates through the client and deploy the keys the plan
    /// names by thumbprint.
    pub deploy: fn(&Context<'_>, &WireClient, &LaterSteps) -> Result<(), ProvisionError>,
}

/// The certificate work as `wala-agentd` does it (each call in the `wala-crypto` helper).
pub const IN_PROCESS: CertificateWork =
    CertificateWork { prepare: prepare_transport_keys, deploy: deploy_keys };

fn prepare_transport_keys(lib_dir: &Path) {
    let started = Instant::now();
    match crypto::TransportKeys::load_or_create(lib_dir) {
        Ok(_) => log::info!("transport certificate ready in {} ms", started.elapsed().as_millis()),
        Err(e) => log::warn!("transport certificate: {e} (trying again when it is needed)"),
    }
}

fn deploy_keys(ctx: &Context<'_>, client: &WireClient, plan: &LaterSteps) -> Result<(), ProvisionError> {
    super::deploy_certificate_keys(ctx, client, plan)
}

/// Continue this stage as `wala-agentd provision-network` (the program beside this one, which
/// links the crypto library), with the same root, configuration file and verbosity: this process
/// is replaced (`execve`: the same pid, so systemd sees one stage), and the call returns only
/// when that could not be done. Not a command run for its output, so not through [`crate::base::cmd`].
pub fn hand_over(root: &Path, config: Option<&Path>, verbose: bool) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let program = match std::env::current_exe() {
        Ok(me) => me.with_file_name("wala-agentd"),
        Err(e) => return e,
    };
    log::info!(
        "the OVF names SSH keys by certificate thumbprint: the network stage continues in {}",
        program.display()
    );
    let mut cmd = std::process::Command::new(&program);
    cmd.arg("--root").arg(root);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    if verbose {
        cmd.arg("--verbose");
    }
    let e = cmd.arg("provision-network").exec();
    std::io::Error::new(e.kind(), format!("cannot run {}: {e}", program.display()))
}

/// How long the stage waits for a route to the WireServer before it tries anyway (the HTTP retry
/// budget then decides).
pub const ROUTE_WAIT: Duration = Duration::from_secs(300);

/// Why the network stage has nothing to do on this boot, if it has not; decided from local files
/// alone, before any network.
pub fn nothing_to_do(ctx: &Context<'_>) -> Result<Option<String>, ProvisionError> {
    let lib = ctx.lib_dir();
    let vm_id = super::vm_id(ctx.host.root)?;
    let recorded = state::load_for(ctx.host.root, &lib, &vm_id);
    if state::provisioned_for(ctx.host.root, &lib, &vm_id) && state::final_report_done(recorded.as_ref()) {
        return Ok(Some(format!("already provisioned (VM id {vm_id})")));
    }
    if recorded.as_ref().is_some_and(|s| s.mode == Mode::CloudInit) {
        return Ok(Some("cloud-init provisions this VM".into()));
    }
    Ok(None)
}

/// Whether the network stage will fetch certificates: the local stage succeeded, the final report
/// is still to be sent, and the plan names an SSH key or key pair by certificate thumbprint (as the
/// local stage recorded it; in a state file of an older version, as the saved OVF says).
pub fn needs_certificates(ctx: &Context<'_>) -> bool {
    let lib = ctx.lib_dir();
    // A later boot (the report was sent) reads nothing more: `wala-provision` asks on every boot.
    let Some(st) = state::load(ctx.host.root, &lib).filter(|s| {
        s.local == LocalResult::Done
            && !s.final_report_sent
            && matches!(s.lifecycle, Lifecycle::Provisioned | Lifecycle::FromImds)
    }) else {
        return false;
    };
    if let Some(later) = &st.later {
        return !later.certificate_keys.is_empty();
    }
    crate::base::files::read_optional(&ctx.host.root.path(lib.join("ovf-env.xml")))
        .ok()
        .flatten()
        .and_then(|t| crate::documents::ovf::parse(&t).ok())
        .is_some_and(|env| {
            let p = &env.provisioning;
            !p.key_pairs.is_empty()
                || p.public_keys.iter().any(|k| k.value.is_none() && k.fingerprint.is_some())
        })
}

/// The whole network stage: endpoint, route, transport certificate, versions, then the report.
/// Without `certificates`, a VM whose OVF names keys by certificate thumbprint fails at that step
/// (`wala-provision` hands such a stage over first: [`hand_over`]).
pub fn run(
    ctx: &Context<'_>,
    certificates: Option<CertificateWork>,
) -> Result<NetworkOutcome, ProvisionError> {
    if let Some(why) = nothing_to_do(ctx)? {
        return Ok(NetworkOutcome::NothingToDo(why));
    }
    crypto::apply_fips(ctx.host.root, ctx.host.config.enable_fips);
    let endpoints = endpoint::resolve(ctx.host.config, ctx.host.root, SystemTime::now());
    log::info!("WireServer {} (from {:?})", endpoints.wireserver.base_url(), endpoints.source);
    let lib_dir = ctx.host.root.path(ctx.host.config.lib_dir.as_path());
    std::thread::scope(|scope| {
        // An RSA key pair takes a while to make (seconds under emulation): make it beside the wait.
        let transport = certificates.filter(|_| needs_certificates(ctx)).map(|work| {
            let lib_dir = lib_dir.clone();
            scope.spawn(move || (work.prepare)(&lib_dir))
        });
        if ctx.host.root.is_live() {
            if let Some(ip) = endpoints.wireserver.ipv4() {
                wait_for_route(ip);
                if let Err(e) = endpoint::ensure_route(ctx.host.root, ctx.host.runner, ip) {
                    log::warn!("{e}");
                }
            }
        }
        if let Some(t) = transport {
            let _ = t.join();
        }
    });
    let client = WireClient::new(endpoints.clone(), lib_dir);
    match crate::base::timeline::wait("wireserver-versions", || client.check_versions()) {
        Ok(_) => {
            if let Err(e) = endpoint::save_endpoint(ctx.host.root, ctx.host.config, &endpoints.wireserver) {
                log::warn!("{e}");
            }
        }
        Err(e) => log::warn!("WireServer versions check failed: {}", e.reason()),
    }
    let outcome = match certificates {
        Some(work) => {
            let deploy = |ctx: &Context<'_>, plan: &LaterSteps| (work.deploy)(ctx, &client, plan);
            super::run_network(ctx, &client, Some(&deploy))
        }
        None => super::run_network(ctx, &client, None),
    };
    // A hostname set after the network's first DHCP request, once reported (never delays Ready).
    super::hostname_stage::publish_if_pending(ctx);
    outcome
}

fn wait_for_route(ip: std::net::Ipv4Addr) {
    let started = Instant::now();
    match crate::base::timeline::wait("route-to-wireserver", || route_wait::wait_for_route(ip, ROUTE_WAIT)) {
        Ok(route) => {
            log::info!("route to the WireServer: {route} (waited {} ms)", started.elapsed().as_millis())
        }
        Err(e) => log::warn!("{e}; trying the WireServer anyway"),
    }
}
