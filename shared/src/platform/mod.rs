//! Talking to the Azure platform: the one HTTP client and the clients built on it for the
//! WireServer, the HostGAPlugin, IMDS and storage (the status blob), where these endpoints are
//! (DHCP leases, routes), and the telemetry channel. Documents are parsed in
//! [`crate::documents`]; nothing here changes the host beyond the route and the event queue it
//! names.
//!
//! * [`http`]: the one HTTP client factory (timeouts, retry budget, kept connections), with
//!   [`kept_tcp`], the TCP transport of its platform connections;
//! * [`endpoint`], [`dhcp`]: where the WireServer is, and a route to it;
//! * [`wireserver`]: the WireServer client (goal state, health, telemetry);
//! * [`hostgaplugin`]: the HostGAPlugin client (vmSettings, artifacts, status);
//! * [`imds`], [`imds_reprovision`]: IMDS's instance document and pre-provisioned pool hand-over;
//! * [`status_blob`]: the status upload to storage;
//! * [`telemetry`]: agent events queued on disk and turned into WireServer telemetry.
//!
//! This module itself holds what provisioning and the daemon need from the platform, as a trait
//! ([`Platform`]): the WireServer client implements it for real, tests use [`RecordingPlatform`].

pub mod dhcp;
pub mod endpoint;
pub mod hostgaplugin;
pub mod http;
pub mod imds;
pub mod imds_reprovision;
pub mod kept_tcp;
pub mod status_blob;
pub mod telemetry;
pub mod wireserver;

use std::sync::Mutex;

pub use crate::documents::wire::health::ProvisioningHealth;

/// A platform request that did not succeed within its retry budget: the client's own error.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(transparent)]
    WireServer(#[from] wireserver::WireClientError),
}

/// The platform service every provisioning stage uses: health reports.
pub trait Platform {
    /// Send a health report for the current goal state.
    fn report_health(&self, health: &ProvisioningHealth) -> Result<(), PlatformError>;
}

/// The goal state's certificates: apart from [`Platform`] because fetching them needs the crypto
/// library (the transport key pair, decryption), which only the `wala-crypto` helper links; the
/// network stage does that work through `wala-agentd provision-network`.
pub trait CertificateSource {
    /// Fetch the goal state's certificates into the lib dir (`<THUMBPRINT>.crt`, `.prv`) and return
    /// the thumbprints (upper-case hex SHA-1 of the DER).
    fn fetch_certificates(&self) -> Result<Vec<String>, PlatformError>;
}

/// A platform for tests: records reports, answers with scripted results.
#[derive(Debug, Default)]
pub struct RecordingPlatform {
    reports: Mutex<Vec<ProvisioningHealth>>,
    pub fail_reports: bool,
    pub thumbprints: Vec<String>,
}

impl RecordingPlatform {
    /// A platform that refuses every report.
    pub fn failing() -> Self {
        Self { fail_reports: true, ..Self::default() }
    }

    pub fn reports(&self) -> Vec<ProvisioningHealth> {
        self.reports.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Platform for RecordingPlatform {
    fn report_health(&self, health: &ProvisioningHealth) -> Result<(), PlatformError> {
        self.reports.lock().unwrap_or_else(|e| e.into_inner()).push(health.clone());
        if self.fail_reports {
            let refused =
                wireserver::WireClientError::UnexpectedStatus { what: "health report", status: 503 };
            Err(PlatformError::WireServer(refused))
        } else {
            Ok(())
        }
    }
}

impl CertificateSource for RecordingPlatform {
    fn fetch_certificates(&self) -> Result<Vec<String>, PlatformError> {
        Ok(self.thumbprints.clone())
    }
}
