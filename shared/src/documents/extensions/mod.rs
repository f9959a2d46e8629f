//! The documents around extensions (wire.md §7–§9, §11.2): parsers and renderers only, no I/O.
//! Fetching and running extensions is in [`crate::extensions`].
//!
//! * [`config`]: ExtensionsConfig XML from the WireServer (§7.1), and the InVMArtifactsProfile;
//! * [`vm_settings`]: the HostGAPlugin's vmSettings JSON (Fast Track, §7.2);
//! * [`extensions_goal_state`]: the [`ExtensionsGoalState`] both produce, and the choice between
//!   them (§7.4);
//! * [`manifest`]: extension and agent manifests (`PluginVersionManifest`) and version selection
//!   (§8.1–§8.2);
//! * [`handler_manifest`]: the extension's `HandlerManifest.json` (§9.1);
//! * [`handler_environment`]: the `HandlerEnvironment.json` the agent writes (§9.2);
//! * [`settings`]: the `config/<seq>.settings` files the agent writes (§9.3);
//! * [`status`]: `status/<seq>.status` and `heartbeat.log` written by extensions (§9.4–§9.5), and
//!   the aggregate status document the agent uploads (§11.2);
//! * [`events`]: the Extension Telemetry Pipeline's event files (§10.5);
//! * [`redact`]: protected settings taken out of a document before it is kept or shown;
//! * [`names`]: which handler names, versions and extension names are accepted, and the one
//!   helper that builds a path from them;
//! * `version`: dotted versions compared as waagent compares them ([`FlexibleVersion`]).
//!
//! Every parser takes the document as text or bytes, never panics, and returns a typed
//! [`DocumentError`] naming the document and the field that is wrong. A problem that belongs to
//! one handler of a goal state does not reject the document: it is recorded on that handler
//! ([`Extension::failure`]) with waagent's message, and the rest of the goal state is used.
//! Protected settings are held in [`Secret`](crate::base::secret::Secret) and serialize as `<redacted>`.

pub mod config;
pub mod events;
pub mod extensions_goal_state;
pub mod handler_environment;
pub mod handler_manifest;
pub mod manifest;
pub mod names;
pub mod redact;
pub mod settings;
pub mod status;
mod version;
pub mod vm_settings;

pub use config::{parse_artifacts_profile, parse_extensions_config, ArtifactsProfile};
pub use events::redact_sas_queries;
pub use extensions_goal_state::{
    choose, AgentFamily, Chosen, DependsOnExtension, Extension, ExtensionSettings, ExtensionState,
    ExtensionsGoalState, GoalStateChannel, GoalStateSource, HandlerConfigError, StatusBlobType,
    StatusUploadBlob, Updates,
};
pub use handler_environment::{render_handler_environment, HandlerEnvironment};
pub use handler_manifest::{parse_handler_manifest, HandlerManifest, UpdateMode};
pub use manifest::{
    parse_extension_image, parse_manifest, ExtensionImage, ManifestPackage, PluginVersionManifest,
};
pub use settings::{render_settings, settings_file_name};
pub use status::{parse_heartbeat, parse_status_file, ExtensionStatus, Heartbeat};
pub use version::FlexibleVersion;
pub use vm_settings::{parse_vm_settings, VmSettingsDocument, MIN_HOST_GA_PLUGIN_VERSION};

pub(crate) use crate::documents::error::excerpt;
pub use crate::documents::error::DocumentError;

/// Serialize a secret as `<redacted>` (the value itself is never shown).
pub(crate) fn serialize_redacted<S: serde::Serializer, T>(_: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("<redacted>")
}
