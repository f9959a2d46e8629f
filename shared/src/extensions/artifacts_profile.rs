//! The InVMArtifactsProfile an ExtensionsConfig names (`InVMArtifactsProfileBlob`, wire.md §7.1):
//! fetched once per new ExtensionsConfig, directly and then through the HostGAPlugin's
//! `extensionArtifact` (without `x-ms-verify-from-artifacts-blob`, as waagent), for its `onHold`.
//! A goal state on hold runs no extension while `EnableOverProvisioning=y` (the lifecycle checks
//! [`ExtensionsGoalState::on_hold`]). As with waagent, a profile that cannot be fetched or parsed,
//! or is empty, means "not on hold", with one log line.

use std::time::Duration;

use crate::base::limits::Document;
use crate::documents::extensions::{parse_artifacts_profile, ExtensionsGoalState};
use crate::extensions::download::{Channels, Downloader, UnpackLimits};
use crate::platform::hostgaplugin::{ContainerIdentity, HostGaPluginClient};
use crate::platform::http::HttpClient;

/// Bound on fetching the profile over both channels.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(60);

/// Whether the profile at `url` says the VM is on hold.
pub fn fetch_on_hold(
    storage: &HttpClient,
    hgap: &HostGaPluginClient,
    who: &ContainerIdentity,
    url: &str,
) -> bool {
    let downloader = Downloader {
        storage,
        hgap,
        who,
        fast_track: false,
        deadline: FETCH_DEADLINE,
        unpack_limits: UnpackLimits::default(),
        max_package_size: 0,
    };
    // Its own channel order, starting direct (waagent's `fetch_artifacts_profile_blob`).
    let mut channels = Channels::default();
    let bytes = match downloader.fetch(&mut channels, &[url.to_string()], None, Document::ArtifactsProfile) {
        Ok((bytes, _)) => bytes,
        Err(e) => {
            log::warn!("Can't download the artifacts profile blob; will assume the VM is not on hold. {e}");
            return false;
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() {
        log::info!("The artifacts profile blob is empty; will assume the VM is not on hold.");
        return false;
    }
    match parse_artifacts_profile(&text) {
        Ok(profile) => {
            log::info!("the artifacts profile says onHold={}", profile.on_hold);
            profile.on_hold
        }
        Err(e) => {
            log::warn!(
                "Can't parse the artifacts profile blob; will assume the VM is not on hold. Error: {e}"
            );
            false
        }
    }
}

/// Set `gs.on_hold` from the profile its ExtensionsConfig names (nothing to do without one).
pub fn apply(
    gs: &mut ExtensionsGoalState,
    storage: &HttpClient,
    hgap: &HostGaPluginClient,
    who: &ContainerIdentity,
) {
    let Some(url) = gs.in_vm_artifacts_profile_blob.as_deref().map(str::trim).filter(|u| !u.is_empty())
    else {
        return;
    };
    gs.on_hold = fetch_on_hold(storage, hgap, who, url);
}
