//! Fetching and running extensions (wire.md §8.3, §9, §10, §11.1); the documents they are
//! described by are parsed in [`crate::documents::extensions`].
//!
//! * [`artifacts_profile`]: fetching the InVMArtifactsProfile for its `onHold`;
//! * [`download`]: manifest and package download over both channels, safe unpacking;
//! * [`handler`]: one handler's directory and files (waagent's on-disk contract);
//! * [`exec`]: running a handler command (environment, timeouts, output tails);
//! * [`cgroups`]: `CGroups.EnforceLimits` through `systemd-run --scope`;
//! * [`policy`]: waagent's extension policy (`Policy.PolicyFilePath`), which extensions may run;
//! * [`signature`]: package signatures and `signingInfo` (`Debug.EnableSignatureValidation`);
//! * [`lifecycle`]: install, enable, disable, uninstall, update, in dependency order;
//! * [`report`]: handler statuses for the aggregate status document;
//! * [`etp`]: the Extension Telemetry Pipeline (§10.5): collects the extensions' event files and
//!   sends the events.

pub mod artifacts_profile;
pub mod cgroups;
pub mod download;
pub mod etp;
pub mod exec;
pub mod handler;
pub mod lifecycle;
pub mod policy;
pub mod report;
pub mod signature;
