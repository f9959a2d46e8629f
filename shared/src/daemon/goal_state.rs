//! Goal-state polling and status reporting (spec wire.md §11-12): every period, fetch the goal
//! state and act only when it changed; upload the aggregate status when it changed, or as a
//! heartbeat, rather than on every poll as waagent does.

use std::time::{Duration, Instant, SystemTime};

use super::{Env, Task, TaskError};
use crate::hostgaplugin::{ContainerIdentity, HostGaPluginClient};
use crate::http::HttpClient;
use crate::status_blob::{self, BlobType, StatusBlob};
use crate::wire::client::WireClient;

/// How often status is uploaded when nothing changed, so the host sees the agent alive.
pub const STATUS_HEARTBEAT: Duration = Duration::from_secs(60);

/// How long a HostGAPlugin without vmSettings is left alone (waagent: 6 hours).
pub const VM_SETTINGS_RECHECK: Duration = Duration::from_secs(6 * 3600);

/// The goal state as far as the daemon acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    incarnation: u64,
    container_id: String,
    role_instance_id: String,
}

/// Polls the goal state and uploads status.
pub struct GoalStateTask {
    pub client: WireClient,
    pub hgap: HostGaPluginClient,
    pub storage: HttpClient,
    pub period: Duration,
    seen: Option<Seen>,
    identity: Option<ContainerIdentity>,
    blob: Option<StatusBlob>,
    last_status: Option<String>,
    last_upload: Option<Instant>,
    /// The HostGAPlugin's vmSettings (Fast Track): the last ETag, and when to ask again after a
    /// 404 (not supported) or an error.
    vm_settings_etag: Option<String>,
    vm_settings_retry_at: Option<Instant>,
    /// The raw vmSettings JSON of the newest Fast Track goal state.
    pub vm_settings: Option<String>,
    /// Shared with the telemetry task, which sends it with every event.
    pub container_id: std::sync::Arc<std::sync::Mutex<String>>,
    /// Shared with the log upload, which names the container and deployment.
    pub identity_shared: std::sync::Arc<std::sync::Mutex<Option<ContainerIdentity>>>,
    /// Counters, for tests and the footprint benchmark.
    pub polls: u64,
    pub changes: u64,
    pub uploads: u64,
}

impl std::fmt::Debug for GoalStateTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoalStateTask")
            .field("seen", &self.seen)
            .field("uploads", &self.uploads)
            .finish_non_exhaustive()
    }
}

impl GoalStateTask {
    pub fn new(client: WireClient, hgap: HostGaPluginClient, storage: HttpClient, period: Duration) -> Self {
        Self {
            client,
            hgap,
            storage,
            period,
            seen: None,
            identity: None,
            blob: None,
            last_status: None,
            last_upload: None,
            vm_settings_etag: None,
            vm_settings_retry_at: None,
            vm_settings: None,
            container_id: Default::default(),
            identity_shared: Default::default(),
            polls: 0,
            changes: 0,
            uploads: 0,
        }
    }

    fn refresh(&mut self) -> Result<(), TaskError> {
        let fetched = self.client.goal_state().map_err(|e| TaskError(e.reason()))?;
        let gs = &fetched.goal_state;
        let now = Seen {
            incarnation: gs.incarnation,
            container_id: gs.container_id.clone(),
            role_instance_id: gs.role_instance_id.clone(),
        };
        if self.seen.as_ref() == Some(&now) {
            return Ok(());
        }
        log::info!("new goal state: incarnation {} (container {})", now.incarnation, now.container_id);
        let ext = self.client.extensions_config_text(gs).map_err(|e| TaskError(e.reason()))?;
        self.blob = ext.as_deref().and_then(status_blob_of);
        if self.blob.is_none() {
            log::warn!("the goal state has no StatusUploadBlob; status cannot be reported");
        }
        self.identity = Some(ContainerIdentity::of(gs));
        if let Ok(mut c) = self.container_id.lock() {
            c.clone_from(&gs.container_id);
        }
        if let Ok(mut i) = self.identity_shared.lock() {
            *i = self.identity.clone();
        }
        self.seen = Some(now);
        self.changes += 1;
        Ok(())
    }

    /// Ask the HostGAPlugin for vmSettings with the last ETag; a change counts as a new goal state.
    fn refresh_vm_settings(&mut self) {
        let Some(who) = &self.identity else { return };
        if self.vm_settings_retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match self.hgap.vm_settings(who, self.vm_settings_etag.as_deref()) {
            Ok(crate::hostgaplugin::VmSettings::Updated { etag, json }) => {
                log::info!("new vmSettings (ETag {etag})");
                self.vm_settings_etag = Some(etag);
                self.vm_settings = Some(json);
                self.changes += 1;
            }
            Ok(crate::hostgaplugin::VmSettings::NotModified) => {}
            Ok(crate::hostgaplugin::VmSettings::Unsupported) => {
                log::info!("the HostGAPlugin does not serve vmSettings; asking again in 6 hours");
                self.vm_settings_retry_at = Some(Instant::now() + VM_SETTINGS_RECHECK);
            }
            Err(e) => {
                log::debug!("vmSettings: {e}");
                self.vm_settings_retry_at = Some(Instant::now() + Duration::from_secs(60));
            }
        }
    }

    fn report(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        let (Some(blob), Some(who), Some(seen)) = (&self.blob, &self.identity, &self.seen) else {
            return Ok(());
        };
        let doc = status_document(env, seen.incarnation);
        let key = doc.to_string();
        let due = self.last_upload.is_none_or(|t| t.elapsed() >= STATUS_HEARTBEAT);
        if self.last_status.as_deref() == Some(key.as_str()) && !due {
            return Ok(());
        }
        let mut with_time = doc;
        with_time["timestampUTC"] = timestamp_utc(SystemTime::now()).into();
        let body = with_time.to_string();
        status_blob::upload(&self.hgap, &self.storage, who, blob, body.as_bytes(), SystemTime::now())
            .map_err(|e| TaskError(crate::logging::redact_sas(&e.to_string())))?;
        self.last_status = Some(key);
        self.last_upload = Some(Instant::now());
        self.uploads += 1;
        Ok(())
    }
}

impl Task for GoalStateTask {
    fn name(&self) -> &'static str {
        "goal-state"
    }
    fn period(&self) -> Duration {
        self.period
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        self.polls += 1;
        let refreshed = self.refresh();
        if refreshed.is_ok() {
            self.refresh_vm_settings();
        }
        // Status still goes out on a failed poll (waagent reports status even then).
        let reported = self.report(env);
        refreshed.and(reported)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn timestamp_utc(t: SystemTime) -> String {
    let ts = crate::logging::timestamp(t);
    format!("{}Z", &ts[..19])
}

/// The aggregate status document (version 1.1, spec §11.2), without its timestamp.
pub fn status_document(env: &Env<'_>, incarnation: u64) -> serde_json::Value {
    let distro = crate::distro::Distro::detect(env.root);
    let hostname =
        std::fs::read_to_string(env.root.path("/etc/hostname")).unwrap_or_default().trim().to_string();
    let message = if env.config.extensions_enabled {
        "Guest Agent is running"
    } else {
        "Guest Agent is running; extension processing is disabled (Extensions.Enabled=n)"
    };
    serde_json::json!({
        "version": "1.1",
        "timestampUTC": "",
        "aggregateStatus": {
            "guestAgentStatus": {
                "version": crate::VERSION,
                "status": "Ready",
                "formattedMessage": {"lang": "en-US", "message": message},
            },
            "handlerAggregateStatus": [],
            "vmArtifactsAggregateStatus": {
                "goalStateAggregateStatus": {
                    "formattedMessage": {"lang": "en-US", "message": "GoalState executed successfully"},
                    "timestampUTC": "",
                    "inSvdSeqNo": incarnation,
                    "status": "Success",
                    "code": 0,
                },
            },
        },
        "guestOSInfo": {
            "computerName": hostname,
            "osName": distro.id,
            "osVersion": distro.version_id,
            "version": crate::VERSION,
        },
        "supportedFeatures": [
            {"Key": "MultipleExtensionsPerHandler", "Value": "1.0"},
            {"Key": "VersioningGovernance", "Value": "1.0"},
        ],
    })
}

/// The `StatusUploadBlob` of an ExtensionsConfig document (URL and `statusBlobType`).
pub fn status_blob_of(xml: &str) -> Option<StatusBlob> {
    let doc = crate::wire::xml::parse(xml).ok()?;
    let blob = doc.child("StatusUploadBlob")?;
    Some(StatusBlob {
        url: blob.text_trimmed()?.to_string(),
        blob_type: blob.attr("statusBlobType").map_or(BlobType::BlockBlob, BlobType::from_text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_blob_from_extensions_config() {
        let xml = r#"<Extensions><StatusUploadBlob statusBlobType="PageBlob">
            https://x.blob.core.windows.net/vhds/s.status?sv=2&amp;sig=abc</StatusUploadBlob></Extensions>"#;
        assert_eq!(
            status_blob_of(xml),
            Some(StatusBlob {
                url: "https://x.blob.core.windows.net/vhds/s.status?sv=2&sig=abc".into(),
                blob_type: BlobType::PageBlob
            })
        );
        assert_eq!(status_blob_of("<Extensions/>"), None);
        let block = status_blob_of("<Extensions><StatusUploadBlob>u</StatusUploadBlob></Extensions>");
        assert_eq!(block.map(|b| b.blob_type), Some(BlobType::BlockBlob));
    }
}
