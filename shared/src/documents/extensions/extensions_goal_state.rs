//! The extensions goal state both sources are normalized to (wire.md §7), and the choice between
//! ExtensionsConfig and vmSettings (§7.4).

use serde::Serialize;

use crate::base::secret::Secret;

/// Where the goal state was authored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GoalStateSource {
    /// By the fabric (ExtensionsConfig, or vmSettings saying `"extensionGoalStatesSource":
    /// "Fabric"`).
    Fabric,
    /// Fast Track (vmSettings).
    FastTrack,
}

/// Which endpoint served the goal state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GoalStateChannel {
    /// ExtensionsConfig from the WireServer.
    WireServer,
    /// vmSettings from the HostGAPlugin.
    HostGAPlugin,
}

/// How the status blob is written (wire.md §11.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum StatusBlobType {
    #[default]
    BlockBlob,
    PageBlob,
}

impl StatusBlobType {
    /// `PageBlob` (any case) or `BlockBlob`; anything else, or nothing, means `BlockBlob`.
    pub fn parse_lenient(text: Option<&str>) -> Self {
        match text.map(str::trim) {
            Some(t) if t.eq_ignore_ascii_case("PageBlob") => StatusBlobType::PageBlob,
            _ => StatusBlobType::BlockBlob,
        }
    }
}

/// The SAS URL the aggregate status is uploaded to. `Debug` hides the URL's query (the SAS
/// signature) so the goal state can be logged.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct StatusUploadBlob {
    pub url: String,
    pub blob_type: StatusBlobType,
}

impl std::fmt::Debug for StatusUploadBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = match self.url.split_once('?') {
            Some((base, _)) => format!("{base}?<redacted>"),
            None => self.url.clone(),
        };
        f.debug_struct("StatusUploadBlob").field("url", &shown).field("blob_type", &self.blob_type).finish()
    }
}

/// A guest-agent family (`Prod`, `Test`) and the URLs of its agent manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentFamily {
    pub name: String,
    /// The agent version requested by the goal state (RSM), if any.
    pub version: Option<String>,
    pub from_version: Option<String>,
    /// `None` when the goal state does not say.
    pub is_version_from_rsm: Option<bool>,
    pub is_vm_enabled_for_rsm_upgrades: Option<bool>,
    /// Agent manifest URLs; empty when there are none.
    pub uris: Vec<String>,
}

/// The requested state of a handler or of one extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtensionState {
    Enabled,
    Disabled,
    Uninstall,
}

impl ExtensionState {
    /// `enabled`, `disabled` or `uninstall`, in any case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "enabled" => Some(ExtensionState::Enabled),
            "disabled" => Some(ExtensionState::Disabled),
            "uninstall" => Some(ExtensionState::Uninstall),
            _ => None,
        }
    }

    /// The name waagent uses (`enabled`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ExtensionState::Enabled => "enabled",
            ExtensionState::Disabled => "disabled",
            ExtensionState::Uninstall => "uninstall",
        }
    }
}

/// One `DependsOnExtension`: the handler (and, for multi-config, the extension) waited for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependsOnExtension {
    pub handler: String,
    pub extension: Option<String>,
}

/// The settings of one extension (single-config: the handler itself; multi-config: one of its
/// named extensions).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtensionSettings {
    /// The handler name (single-config) or the extension name (multi-config).
    pub name: String,
    /// `seqNo`: names the settings and status files. Not guaranteed to increase.
    pub sequence_number: u64,
    /// Enabled or disabled (multi-config); for single-config, the handler's state.
    pub state: ExtensionState,
    /// `publicSettings` (already decoded from vmSettings' JSON string); `None` is JSON null and is
    /// written to the settings file as such.
    pub public_settings: Option<serde_json::Value>,
    /// `protectedSettings`: base64 CMS EnvelopedData, still encrypted to the tenant certificate.
    #[serde(serialize_with = "super::serialize_redacted")]
    pub protected_settings: Option<Secret<String>>,
    /// `protectedSettingsCertThumbprint`: which certificate decrypts `protected_settings`.
    pub certificate_thumbprint: Option<String>,
    /// `dependencyLevel`: extensions run in ascending order of this (default 0).
    pub dependency_level: i64,
    /// What this extension waits for (informational; ordering uses `dependency_level`).
    pub depends_on: Vec<DependsOnExtension>,
    /// The settings text could not be parsed (ExtensionsConfig): the entry is kept, without
    /// settings, so the extension still gets a status for its sequence number.
    pub settings_unparsable: bool,
}

/// One handler (an "extension" in waagent's code) of the goal state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extension {
    /// Handler name, e.g. `Microsoft.Azure.Extensions.CustomScript`.
    pub name: String,
    /// Requested version (exact in practice).
    pub version: String,
    /// Requested state; `None` only on a failed handler whose state could not be read.
    pub state: Option<ExtensionState>,
    /// Manifest URLs: location, failover location, then additional locations.
    pub manifest_uris: Vec<String>,
    /// Whether the goal state configures this handler as multi-config (waagent's
    /// `supports_multi_config`).
    pub is_multi_config: bool,
    /// `encodedSignature` (base64 CMS), empty when absent.
    pub encoded_signature: String,
    /// Per-extension settings; empty for a handler without settings (it still runs, with an empty
    /// `0.settings`), and for a failed handler.
    pub settings: Vec<ExtensionSettings>,
    /// Set when this handler's part of the goal state is invalid: the handler is reported NotReady
    /// with this message and nothing of it runs. The other handlers are unaffected.
    #[serde(serialize_with = "serialize_failure")]
    pub failure: Option<HandlerConfigError>,
}

fn serialize_failure<S: serde::Serializer>(f: &Option<HandlerConfigError>, s: S) -> Result<S::Ok, S::Error> {
    match f {
        Some(e) => s.serialize_some(&e.to_string()),
        None => s.serialize_none(),
    }
}

impl Extension {
    /// A handler with no settings yet.
    pub(crate) fn new(name: String, version: String) -> Self {
        Self {
            name,
            version,
            state: None,
            manifest_uris: Vec::new(),
            is_multi_config: false,
            encoded_signature: String::new(),
            settings: Vec::new(),
            failure: None,
        }
    }

    /// waagent's name for [`Extension::is_multi_config`].
    pub fn supports_multi_config(&self) -> bool {
        self.is_multi_config
    }

    /// Record a configuration error: the handler keeps its name and version, loses its settings.
    pub(crate) fn fail(&mut self, error: HandlerConfigError) {
        self.settings.clear();
        self.failure = Some(error);
    }

    /// Fail the handler when its name or version is not one the platform uses
    /// ([`super::names`]): they become paths and reach the handler's commands. `name_field` and
    /// `version_field` say where they came from, for the message. Returns whether it failed.
    pub(crate) fn refuse_bad_names(&mut self, name_field: &str, version_field: &str) -> bool {
        let checked = super::names::check_handler_name(&self.name)
            .map_err(|e| (name_field, e))
            .and_then(|()| super::names::check_version(&self.version).map_err(|e| (version_field, e)));
        match checked {
            Ok(()) => false,
            Err((field, error)) => {
                let plugin = super::excerpt(&self.name);
                self.fail(HandlerConfigError::InvalidName { plugin, field: field.to_string(), error });
                true
            }
        }
    }

    /// The error for a multi-config extension name that is not one the platform uses.
    pub(crate) fn check_extension_name(&self, name: &str, field: &str) -> Result<(), HandlerConfigError> {
        super::names::check_extension_name(name).map_err(|error| HandlerConfigError::InvalidName {
            plugin: super::excerpt(&self.name),
            field: field.to_string(),
            error,
        })
    }
}

/// Why one handler of a goal state is invalid. The messages are waagent's, so operators and CRP
/// see the same text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerConfigError {
    #[error("Received empty Extensions.Plugins.Plugin.state, failing Handler")]
    EmptyState,
    #[error("Invalid extension state: {state} ({handler})")]
    InvalidState { handler: String, state: String },
    #[error(
        "Extension PluginSettings Version Mismatch! Expected PluginSettings version: {expected} for Extension: {handler} but found versions: ({})",
        found.join(", ")
    )]
    SettingsVersionMismatch { handler: String, expected: String, found: Vec<String> },
    #[error(
        "Multiple plugin settings found for the same extension: {handler} and version: {version} (Expected: 1; Available: {count})"
    )]
    MultiplePluginSettings { handler: String, version: String, count: usize },
    #[error("Both RuntimeSettings and ExtensionRuntimeSettings found for the same extension: {handler} and version: {version}")]
    BothSettingsKinds { handler: String, version: String },
    #[error(
        "Multiple RuntimeSettings found for the same extension: {handler} and version: {version} (Expected: 1; Available: {count})"
    )]
    MultipleRuntimeSettings { handler: String, version: String, count: usize },
    #[error("Extension Handler can only have a single dependsOn node for Single config extensions. Found: {count}")]
    MultipleDependsOn { count: usize },
    #[error("No Name not specified for DependsOn object in ExtensionRuntimeSettings for MultiConfig!")]
    DependsOnWithoutName,
    #[error("Extension Name not specified for ExtensionRuntimeSettings for MultiConfig!")]
    ExtensionNameMissing,
    #[error("SeqNo not specified for the Extension: {name}")]
    SeqNoMissing { name: String },
    #[error("Invalid seqNo {value:?} for the Extension: {name} (expected a non-negative integer)")]
    InvalidSeqNo { name: String, value: String },
    /// vmSettings: a field of the handler is missing or of the wrong type.
    #[error("Extension {handler}: {field} {why}")]
    InvalidField { handler: String, field: String, why: String },
    #[error("Single-config extension '{handler}' has multiple settings ({count})")]
    MultipleSettingsSingleConfig { handler: String, count: usize },
    #[error("The certificate thumbprint for protected settings is missing (extension {handler})")]
    MissingThumbprint { handler: String },
    #[error("dependsOn should be an array with exactly one item for single-config extensions ({handler}) (got {count})")]
    DependsOnCount { handler: String, count: usize },
    #[error("Dependency '{name}' does not correspond to any of the settings in the extension (settings: [{}])", settings.join(", "))]
    UnknownDependency { name: String, settings: Vec<String> },
    #[error("Extension {handler}: publicSettings is not valid JSON: {reason}")]
    InvalidPublicSettings { handler: String, reason: String },
    /// A name or version the agent would have to use in a path or a command is not one the
    /// platform uses ([`super::names`]). `plugin` is the handler's name as given (escaped, cut),
    /// `field` the document and field (`ExtensionsConfig Plugins/Plugin@name`).
    #[error("Plugin {plugin:?} is refused: its {field} is not a valid {}: {}", error.what, error.why)]
    InvalidName { plugin: String, field: String, error: super::names::NameError },
}

/// The extensions goal state, from ExtensionsConfig or from vmSettings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtensionsGoalState {
    /// `incarnation_<N>` (ExtensionsConfig) or `etag_<ETag>` (vmSettings).
    pub id: String,
    pub source: GoalStateSource,
    pub channel: GoalStateChannel,
    /// Reported back as `inSvdSeqNo`: the WireServer incarnation for ExtensionsConfig, the
    /// document's `inSvdSeqNo` for vmSettings (0 when absent).
    pub svd_sequence_number: u64,
    /// GUID; all zeros when absent.
    pub activity_id: String,
    /// GUID; all zeros when absent.
    pub correlation_id: String,
    /// .NET ticks (100 ns since 0001-01-01 UTC); 0 when absent.
    pub created_on_ticks: u64,
    /// `created_on_ticks` as waagent prints it: `%Y-%m-%dT%H:%M:%S.%fZ`.
    pub created_on_timestamp: String,
    /// Where to upload the aggregate status; `None` when the goal state has none.
    pub status_upload_blob: Option<StatusUploadBlob>,
    /// URL of the InVMArtifactsProfile blob (ExtensionsConfig), `None` when absent or empty.
    pub in_vm_artifacts_profile_blob: Option<String>,
    /// vmSettings' `onHold`; ExtensionsConfig gets it from the artifacts profile (false here).
    pub on_hold: bool,
    /// Feature names the agent must support (§7.3).
    pub required_features: Vec<String>,
    pub agent_families: Vec<AgentFamily>,
    pub extensions: Vec<Extension>,
    /// vmSettings' `hostGAPluginVersion`.
    pub host_ga_plugin_version: Option<String>,
}

/// The all-zero GUID waagent uses for a missing activity or correlation ID.
pub const NULL_GUID: &str = "00000000-0000-0000-0000-000000000000";

impl ExtensionsGoalState {
    /// The status blob type; `BlockBlob` when there is no status blob.
    pub fn status_upload_blob_type(&self) -> StatusBlobType {
        self.status_upload_blob.as_ref().map(|b| b.blob_type).unwrap_or_default()
    }

    /// Whether this is a Fast Track goal state (vmSettings authored by Fast Track).
    pub fn is_fast_track(&self) -> bool {
        self.source == GoalStateSource::FastTrack
    }

    /// The handler named `name` (case-insensitive, like waagent's matching of settings).
    pub fn extension(&self, name: &str) -> Option<&Extension> {
        self.extensions.iter().find(|e| e.name.eq_ignore_ascii_case(name))
    }

    /// Required features the agent does not support (`supported` lists what it advertises). Non
    /// empty means the whole goal state fails with code 2001 (§7.3).
    pub fn unsupported_features<'a>(&'a self, supported: &[&str]) -> Vec<&'a str> {
        self.required_features
            .iter()
            .map(String::as_str)
            .filter(|f| !supported.iter().any(|s| s.eq_ignore_ascii_case(f)))
            .collect()
    }
}

/// .NET ticks to waagent's timestamp text. waagent converts through a float number of seconds
/// (`timedelta(seconds=ticks / 10**7)`), which loses precision below ~8 µs; this reproduces it
/// so the same ticks print the same text as waagent.
pub fn ticks_to_timestamp(ticks: u64) -> String {
    const TICKS_PER_SECOND: u64 = 10_000_000;
    let whole = ticks / TICKS_PER_SECOND;
    let rem = ticks % TICKS_PER_SECOND;
    let seconds = whole as f64 + rem as f64 / TICKS_PER_SECOND as f64;
    let int_part = seconds.trunc();
    let micros_frac = ((seconds - int_part) * 1e6).round_ties_even();
    let mut total_secs = int_part as u64;
    let mut micros = micros_frac as u64;
    if micros >= 1_000_000 {
        total_secs += 1;
        micros -= 1_000_000;
    }
    let days = total_secs / 86_400;
    let sod = total_secs % 86_400;
    let (y, m, d) = crate::base::civil_date::from_days(days as i64 - 719_162);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", sod / 3600, (sod / 60) % 60, sod % 60)
}

/// What changed since the last goal-state check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Updates {
    /// The WireServer incarnation changed (a new ExtensionsConfig was fetched).
    pub incarnation_changed: bool,
    /// vmSettings came back with a new ETag.
    pub vm_settings_changed: bool,
}

/// Which goal state to use after [`choose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// Use the ExtensionsConfig goal state.
    ExtensionsConfig,
    /// Use the vmSettings (Fast Track) goal state.
    VmSettings,
    /// Keep the current goal state (nothing newer, or the candidate is older: never go back).
    KeepCurrent,
}

/// wire.md §7.4: pick the extensions goal state to process.
///
/// vmSettings authored by the Fabric are never used (ExtensionsConfig is, because Fabric goal
/// states may need the tenant certificate). When the incarnation changed, the later
/// `created_on` of the two wins (ExtensionsConfig on a tie); when only vmSettings changed, it is
/// used. The chosen one replaces `current` only if it is not older than it.
pub fn choose(
    current: Option<&ExtensionsGoalState>,
    extensions_config: Option<&ExtensionsGoalState>,
    vm_settings: Option<&ExtensionsGoalState>,
    updates: Updates,
) -> Chosen {
    let vm_settings = vm_settings.filter(|v| v.is_fast_track());
    let candidate = if updates.incarnation_changed {
        match (extensions_config, vm_settings) {
            (Some(ec), Some(vs)) if vs.created_on_ticks > ec.created_on_ticks => {
                Some((Chosen::VmSettings, vs))
            }
            (Some(ec), _) => Some((Chosen::ExtensionsConfig, ec)),
            (None, Some(vs)) => Some((Chosen::VmSettings, vs)),
            (None, None) => None,
        }
    } else if updates.vm_settings_changed {
        vm_settings.map(|vs| (Chosen::VmSettings, vs))
    } else {
        None
    };
    match (candidate, current) {
        (None, _) => Chosen::KeepCurrent,
        (Some((_, new)), Some(cur)) if new.created_on_ticks < cur.created_on_ticks => Chosen::KeepCurrent,
        (Some((which, _)), _) => which,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gs(source: GoalStateSource, ticks: u64) -> ExtensionsGoalState {
        ExtensionsGoalState {
            id: "x".into(),
            source,
            channel: GoalStateChannel::WireServer,
            svd_sequence_number: 1,
            activity_id: NULL_GUID.into(),
            correlation_id: NULL_GUID.into(),
            created_on_ticks: ticks,
            created_on_timestamp: ticks_to_timestamp(ticks),
            status_upload_blob: None,
            in_vm_artifacts_profile_blob: None,
            on_hold: false,
            required_features: vec!["MultipleExtensionsPerHandler".into()],
            agent_families: vec![],
            extensions: vec![],
            host_ga_plugin_version: None,
        }
    }

    #[test]
    fn ticks_print_like_waagent() {
        assert_eq!(ticks_to_timestamp(0), "0001-01-01T00:00:00.000000Z");
        assert_eq!(ticks_to_timestamp(637726657706205299), "2021-11-16T13:22:50.620529Z");
        assert_eq!(ticks_to_timestamp(637405409304121230), "2020-11-09T17:48:50.412125Z");
        assert_eq!(ticks_to_timestamp(621355968000000000), "1970-01-01T00:00:00.000000Z");
        assert!(ticks_to_timestamp(u64::MAX).ends_with('Z'), "no panic on huge values");
    }

    #[test]
    fn choice_follows_section_7_4() {
        use GoalStateSource::*;
        let ec = gs(Fabric, 100);
        let newer_vs = gs(FastTrack, 200);
        let older_vs = gs(FastTrack, 50);
        let both = Updates { incarnation_changed: true, vm_settings_changed: true };
        let inc = Updates { incarnation_changed: true, vm_settings_changed: false };
        let vs_only = Updates { incarnation_changed: false, vm_settings_changed: true };
        assert_eq!(choose(None, Some(&ec), Some(&newer_vs), both), Chosen::VmSettings);
        assert_eq!(choose(None, Some(&ec), Some(&older_vs), both), Chosen::ExtensionsConfig);
        assert_eq!(choose(None, Some(&ec), Some(&newer_vs), inc), Chosen::VmSettings);
        assert_eq!(choose(None, Some(&ec), Some(&gs(FastTrack, 100)), inc), Chosen::ExtensionsConfig, "tie");
        assert_eq!(choose(None, Some(&ec), Some(&older_vs), vs_only), Chosen::VmSettings);
        assert_eq!(choose(None, Some(&ec), None, Updates::default()), Chosen::KeepCurrent);
        // Fabric-sourced vmSettings are ignored.
        assert_eq!(choose(None, Some(&ec), Some(&gs(Fabric, 300)), both), Chosen::ExtensionsConfig);
        assert_eq!(choose(None, Some(&ec), Some(&gs(Fabric, 300)), vs_only), Chosen::KeepCurrent);
        // Never backwards.
        let cur = gs(FastTrack, 150);
        assert_eq!(choose(Some(&cur), Some(&ec), Some(&older_vs), both), Chosen::KeepCurrent);
        assert_eq!(choose(Some(&cur), Some(&ec), Some(&gs(FastTrack, 150)), vs_only), Chosen::VmSettings);
    }

    #[test]
    fn unsupported_features_are_listed() {
        let g = gs(GoalStateSource::Fabric, 0);
        assert!(g.unsupported_features(&["MultipleExtensionsPerHandler"]).is_empty());
        assert_eq!(g.unsupported_features(&["VersioningGovernance"]), vec!["MultipleExtensionsPerHandler"]);
        assert_eq!(g.status_upload_blob_type(), StatusBlobType::BlockBlob);
        let blob = StatusUploadBlob {
            url: "https://a/b?sp=w&sig=SIGNATURE".into(),
            blob_type: StatusBlobType::PageBlob,
        };
        let shown = format!("{blob:?}");
        assert!(shown.contains("https://a/b?<redacted>") && !shown.contains("SIGNATURE"), "{shown}");
    }
}
