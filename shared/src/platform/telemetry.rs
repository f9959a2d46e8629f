//! Telemetry: agent events queued on disk (`<Lib.Dir>/events/*.waagent.tld`, waagent's layout)
//! and sent by the daemon to the WireServer (`?comp=telemetrydata`) in batches, at most once a
//! minute (the server allows about 15 calls in 15 seconds).
//!
//! What is sent, and nothing else: the operation (`Provision`, `ReportReady`,
//! `ActivateResourceDisk`, `AgentStart`, `HeartBeat`, `RemoteAccessHandling`, and waagent's package
//! signature events `SignatureValidation`, `PackageSignatureResult`, `PackageSigningInfoResult`,
//! which name the extension and its version), whether it succeeded, how long it took, a
//! message naming the step (never a user name, hostname, key, path under a home directory,
//! password or custom data), wala's version, the distribution and version, the number of
//! processors, RAM in MiB, and the goal state's container id. See docs/telemetry.md.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::base::files::{self, WriteOptions};
use crate::base::root::HostRoot;
use crate::documents::wire::health::{ParamValue, TelemetryEvent};

/// GuestAgentExtensionEvents provider and event id (spec wire.md §12.3).
pub const PROVIDER: &str = "69B669B9-4AF8-4C50-BDC4-6006FA76E975";
pub const EVENT_ID: u32 = 1;
/// The queue keeps at most this many events; the oldest are dropped.
pub const MAX_QUEUED: usize = 1000;

/// One agent event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEvent {
    pub operation: String,
    pub success: bool,
    pub message: String,
    pub duration_ms: u64,
    /// Seconds since the epoch.
    pub time: u64,
    /// The extension the event is about (`Name`, `Version` on the wire), as waagent's package
    /// signature events; `None`: wala itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<(String, String)>,
}

impl AgentEvent {
    pub fn new(operation: &str, success: bool, message: impl Into<String>, duration: Duration) -> Self {
        Self {
            operation: operation.into(),
            success,
            message: message.into(),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            time: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            subject: None,
        }
    }

    /// The same event, about extension `name` at `version`.
    pub fn about(mut self, name: &str, version: &str) -> Self {
        self.subject = Some((name.to_string(), version.to_string()));
        self
    }
}

fn queue_dir(root: &HostRoot, lib_dir: &Path) -> PathBuf {
    root.path(lib_dir.join("events"))
}

/// Queue an event for the daemon to send. Never fails the caller: problems are logged.
pub fn record(root: &HostRoot, lib_dir: &Path, event: &AgentEvent) {
    record_in(&queue_dir(root, lib_dir), event);
}

/// [`record`] into the queue directory `dir` (a host path: `<Lib.Dir>/events` under the root).
pub fn record_in(dir: &Path, event: &AgentEvent) {
    let result = files::ensure_dir(dir, 0o700).and_then(|()| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = dir.join(format!("{nanos}.waagent.tld"));
        let text = serde_json::to_string(event).unwrap_or_default();
        files::write_atomic(&path, text.as_bytes(), WriteOptions::mode(0o600))
    });
    if let Err(e) = result {
        log::debug!("telemetry event not queued: {e}");
    }
}

/// The queued events, oldest first, with their files; malformed files are removed.
pub fn queued(root: &HostRoot, lib_dir: &Path) -> Vec<(PathBuf, AgentEvent)> {
    let Ok(rd) = std::fs::read_dir(queue_dir(root, lib_dir)) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        rd.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(".waagent.tld")).collect();
    files.sort();
    let excess = files.len().saturating_sub(MAX_QUEUED);
    for old in files.drain(..excess) {
        let _ = std::fs::remove_file(old);
    }
    files
        .into_iter()
        .filter_map(|p| match std::fs::read_to_string(&p).ok().and_then(|t| serde_json::from_str(&t).ok()) {
            Some(e) => Some((p, e)),
            None => {
                let _ = std::fs::remove_file(&p);
                None
            }
        })
        .collect()
}

/// Facts sent with every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Common {
    pub os_version: String,
    pub processors: u64,
    pub ram_mib: u64,
    pub container_id: String,
}

impl Common {
    pub fn detect(root: &HostRoot) -> Self {
        let d = crate::base::distro::Distro::detect(root);
        let ram_kib: u64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0);
        Self {
            os_version: format!("{}:{}", d.id, d.version_id),
            processors: std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1),
            ram_mib: ram_kib / 1024,
            container_id: String::new(),
        }
    }
}

/// The wire form of one event.
pub fn to_wire(event: &AgentEvent, common: &Common) -> TelemetryEvent {
    let s = |v: &str| ParamValue::Str(v.to_string());
    TelemetryEvent {
        provider_id: PROVIDER.into(),
        event_id: EVENT_ID,
        params: vec![
            ("Name".into(), s(event.subject.as_ref().map_or("WALinuxAgent", |(n, _)| n))),
            ("Version".into(), s(event.subject.as_ref().map_or(crate::VERSION, |(_, v)| v))),
            ("Operation".into(), s(&event.operation)),
            ("OperationSuccess".into(), ParamValue::Bool(event.success)),
            ("Message".into(), s(&crate::base::logging::redact_sas(&event.message))),
            ("Duration".into(), ParamValue::U64(event.duration_ms)),
            ("ExtensionType".into(), s("")),
            ("IsInternal".into(), ParamValue::Bool(false)),
            ("GAVersion".into(), s(&format!("wala-{}", crate::VERSION))),
            ("ContainerId".into(), s(&common.container_id)),
            (
                "OpcodeName".into(),
                s(&crate::base::logging::timestamp(UNIX_EPOCH + Duration::from_secs(event.time))),
            ),
            ("EventTid".into(), ParamValue::U64(0)),
            ("EventPid".into(), ParamValue::U64(u64::from(std::process::id()))),
            ("TaskName".into(), s("wala")),
            ("OSVersion".into(), s(&common.os_version)),
            ("ExecutionMode".into(), s("IAAS")),
            ("RAM".into(), ParamValue::U64(common.ram_mib)),
            ("Processors".into(), ParamValue::U64(common.processors)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_round_trip_bounded_and_wire_form() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let lib = Path::new("/var/lib/waagent");
        record(&root, lib, &AgentEvent::new("Provision", true, "local stage", Duration::from_millis(31)));
        record(&root, lib, &AgentEvent::new("ReportReady", false, "report-ready: HTTP 503", Duration::ZERO));
        std::fs::write(dir.path().join("var/lib/waagent/events/0.waagent.tld"), "not json").expect("write");
        let q = queued(&root, lib);
        assert_eq!(
            q.iter().map(|(_, e)| e.operation.as_str()).collect::<Vec<_>>(),
            ["Provision", "ReportReady"]
        );
        assert!(!dir.path().join("var/lib/waagent/events/0.waagent.tld").exists(), "malformed file dropped");
        let w = to_wire(
            &q[0].1,
            &Common {
                os_version: "debian:12".into(),
                processors: 2,
                ram_mib: 2048,
                container_id: "c".into(),
            },
        );
        let xml = w.render();
        assert!(xml.contains(r#"<Param Name="Operation" Value="Provision" T="mt:wstr" />"#), "{xml}");
        assert!(xml.contains(r#"<Param Name="Duration" Value="31" T="mt:uint64" />"#), "{xml}");
        assert!(xml.contains(r#"<Param Name="OperationSuccess" Value="True" T="mt:bool" />"#), "{xml}");
    }
}
