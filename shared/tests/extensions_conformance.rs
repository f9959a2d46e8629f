//! Extension documents: every reference MANIFEST row of the extension kinds (valid ones accepted
//! with the values the MANIFEST states, malformed ones rejected or handler-failed as stated), the
//! project's own fixtures under `tests/fixtures/ext/`, and no panic on truncated or mutated input.

// The per-file check tables are plain functions called from tests; unwrapping there is a test
// failure like any assertion.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use wala::documents::extensions::events::{is_event_file_name, parse_event_file};
use wala::documents::extensions::extensions_goal_state::NULL_GUID;
use wala::documents::extensions::status::{StatusFileError, StatusValue};
use wala::documents::extensions::*;

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

fn supported(doc: VmSettingsDocument, rel: &str) -> ExtensionsGoalState {
    match doc {
        VmSettingsDocument::Supported(gs) => *gs,
        other => panic!("{rel}: expected a supported vmSettings, got {other:?}"),
    }
}

fn failure(e: &Extension) -> Option<String> {
    e.failure.as_ref().map(ToString::to_string)
}

/// (name, seqNo, dependencyLevel) of each settings entry.
type SettingsSummary = Vec<(String, u64, i64)>;

/// Settings (name, seqNo, dependencyLevel) of a handler.
fn settings_of(e: &Extension) -> SettingsSummary {
    e.settings.iter().map(|s| (s.name.clone(), s.sequence_number, s.dependency_level)).collect()
}

fn no_secret_leaks(gs: &ExtensionsGoalState, rel: &str) {
    let debug = format!("{gs:?}");
    let json = serde_json::to_string(gs).unwrap();
    for e in &gs.extensions {
        for s in &e.settings {
            // Skip placeholders that also occur elsewhere in the document (`***REDACTED***`).
            if let Some(p) = s
                .protected_settings
                .as_ref()
                .filter(|p| p.expose().len() >= 8 && !p.expose().contains("REDACTED"))
            {
                assert!(!debug.contains(p.expose().as_str()), "{rel}: protected settings in Debug");
                assert!(!json.contains(p.expose().as_str()), "{rel}: protected settings in JSON");
            }
        }
    }
}

const ACTIVITY: &str = "a33f6f53-43d6-4625-b322-1a39651a00c9";
const CORRELATION: &str = "9a47a2a2-e740-4bfc-b11b-4f2f7cfe7d2e";

/// Expectations per ExtensionsConfig file (by file name), from the MANIFEST's expected_behavior.
fn check_extensions_config(rel: &str, gs: &ExtensionsGoalState) {
    let ext = &gs.extensions;
    let fam = &gs.agent_families;
    match file_name(rel) {
        "ext_conf-no_encoded_signature.xml" => assert_eq!(ext[0].encoded_signature, ""),
        "ext_conf-no_gs_metadata.xml" => {
            assert_eq!(gs.activity_id, NULL_GUID);
            assert_eq!(gs.correlation_id, NULL_GUID);
            assert_eq!(gs.created_on_timestamp, "0001-01-01T00:00:00.000000Z");
        }
        "ext_conf.xml" => {
            assert_eq!(ext.len(), 1);
            assert!(!ext[0].encoded_signature.is_empty());
            assert_eq!((gs.activity_id.as_str(), gs.correlation_id.as_str()), (ACTIVITY, CORRELATION));
            assert!(fam.iter().all(|f| f.version.is_none()));
            assert_eq!(gs.status_upload_blob.as_ref().map(|b| b.blob_type), Some(StatusBlobType::BlockBlob));
        }
        "ext_conf-vm_access_with_signature.xml" | "ext_conf-vm_access_with_invalid_signature.xml" => {
            assert_eq!(ext[0].name, "Microsoft.OSTCExtensions.Edp.VMAccessForLinux");
            assert!(!ext[0].encoded_signature.is_empty());
        }
        "ext_conf_additional_locations.xml" => assert_eq!(
            ext[0].manifest_uris,
            [
                "http://mock-goal-state/location/1/manifest.xml",
                "http://mock-goal-state/failoverlocation/2/manifest.xml",
                "http://mock-goal-state/additionalLocation/3/manifest.xml",
                "http://mock-goal-state/additionalLocation/4/manifest.xml",
            ]
        ),
        "ext_conf_autoupgrade.xml" => assert_eq!(gs.status_upload_blob_type(), StatusBlobType::BlockBlob),
        "ext_conf_downgrade_rsm_version.xml" => {
            assert_eq!(fam[0].version.as_deref(), Some("9.9.9.0"));
            assert_eq!(fam[0].from_version.as_deref(), Some("9.9.9.9"));
            assert_eq!(fam[0].is_version_from_rsm, Some(true));
        }
        "ext_conf_in_vm_artifacts_profile.xml" => assert!(gs.in_vm_artifacts_profile_blob.is_some()),
        "ext_conf_in_vm_empty_artifacts_profile.xml" => {
            assert_eq!(gs.in_vm_artifacts_profile_blob, None);
            assert!(!gs.on_hold);
        }
        "ext_conf_in_vm_metadata.xml" => {
            assert_eq!(gs.activity_id, "555e551c-600e-4fb4-90ba-8ab8ec28eccc");
            assert_eq!(gs.correlation_id, "400de90b-522e-491f-9d89-ec944661f531");
            assert_eq!(gs.created_on_timestamp, "2020-11-09T17:48:50.412125Z");
        }
        "ext_conf_internalversion.xml" => assert_eq!(ext[0].version, "1.3.0"),
        "ext_conf_invalid_and_valid_handlers.xml" => {
            let bad = gs.extension("OSTCExtensions.InvalidExampleHandlerLinux").unwrap();
            assert_eq!(
                failure(bad).as_deref(),
                Some("Both RuntimeSettings and ExtensionRuntimeSettings found for the same extension: OSTCExtensions.InvalidExampleHandlerLinux and version: 1.0.0")
            );
            assert!(bad.settings.is_empty());
            let good = gs.extension("OSTCExtensions.ValidExampleHandlerLinux").unwrap();
            assert_eq!((good.failure.is_none(), good.settings.len()), (true, 1));
        }
        "ext_conf_missing_family.xml" => {
            assert!(ext.is_empty());
            assert!(fam.iter().all(|f| f.uris.is_empty()), "no manifest links for the family");
        }
        "ext_conf_multiple_extensions.xml" => {
            assert_eq!(ext.len(), 5);
            assert!(ext.iter().all(|e| e.settings.len() == 1 && e.failure.is_none()));
        }
        "ext_conf_no_extensions-block_blob.xml" => {
            assert_eq!((ext.len(), fam.len()), (0, 0));
            assert_eq!(gs.status_upload_blob_type(), StatusBlobType::BlockBlob);
        }
        "ext_conf_no_extensions-no_status_blob.xml" => assert_eq!(gs.status_upload_blob, None),
        "ext_conf_no_settings.xml" => {
            assert_eq!(ext.len(), 1);
            assert!(ext[0].settings.is_empty() && ext[0].failure.is_none());
            assert_eq!(settings::settings_file_name(&ext[0], None), "0.settings");
            assert_eq!(render_settings(None).expose(), "");
        }
        "ext_conf_redact.xml" => {
            let protected = ext.iter().flat_map(|e| &e.settings).filter(|s| s.protected_settings.is_some()).count();
            assert!(protected > 0, "the fixture has protected settings");
        }
        "ext_conf_rsm_version.xml" => {
            assert_eq!(fam[0].version.as_deref(), Some("9.9.9.10"));
            assert_eq!(fam[0].is_version_from_rsm, Some(true), "'True' is true");
            assert_eq!(fam[0].is_vm_enabled_for_rsm_upgrades, Some(true));
        }
        "ext_conf_sequencing.xml" => {
            assert_eq!(ext[0].settings[0].dependency_level, 2);
            assert_eq!(ext[1].settings[0].dependency_level, 1);
        }
        "ext_conf_upgradeguid.xml" => {
            assert_eq!(ext.len(), 1);
            assert_eq!((ext[0].manifest_uris.len(), ext[0].settings.len()), (2, 1));
        }
        "ext_conf_version_missing_in_manifest.xml" => assert_eq!(fam[0].version.as_deref(), Some("9.9.9.999")),
        "ext_conf_version_not_from_rsm.xml" => assert_eq!(fam[0].is_version_from_rsm, Some(false)),
        "ext_conf_vm_not_enabled_for_rsm_upgrades.xml" => assert_eq!(fam[0].is_vm_enabled_for_rsm_upgrades, Some(false)),
        "hostgaplugin-ext_conf-agent_family_version.xml" => {
            assert_eq!(fam[0].from_version.as_deref(), Some("9.9.9.9"));
            assert_eq!((fam[0].is_version_from_rsm, fam[0].is_vm_enabled_for_rsm_upgrades), (Some(true), Some(true)));
        }
        "hostgaplugin-ext_conf-no_status_upload_blob.xml" => {
            assert_eq!(gs.status_upload_blob, None);
            assert_eq!(gs.status_upload_blob_type(), StatusBlobType::BlockBlob);
        }
        "hostgaplugin-ext_conf.xml" => assert_eq!(gs.required_features, ["MultipleExtensionsPerHandler"]),
        "ext_conf_multiple_depends_on_for_single_handler.xml" => {
            assert_eq!(
                failure(&ext[0]).as_deref(),
                Some("Extension Handler can only have a single dependsOn node for Single config extensions. Found: 2")
            );
            assert!(ext[0].settings.is_empty());
            assert!(ext[1..].iter().all(|e| e.failure.is_none() && !e.settings.is_empty()), "others unaffected");
        }
        "ext_conf_multiple_settings_for_same_handler.xml" => assert_eq!(
            failure(&ext[0]).as_deref(),
            Some("Multiple plugin settings found for the same extension: OSTCExtensions.ExampleHandlerLinux and version: 1.0.0 (Expected: 1; Available: 2)")
        ),
        "ext_conf_plugin_settings_version_mismatch.xml" => {
            let f = failure(&ext[0]).unwrap();
            let prefix = "Extension PluginSettings Version Mismatch! Expected PluginSettings version: 1.0.0 for Extension: OSTCExtensions.ExampleHandlerLinux but found versions: (";
            assert!(f.starts_with(prefix), "{f}");
            let mut found: Vec<&str> = f[prefix.len()..].trim_end_matches(')').split(", ").collect();
            found.sort();
            assert_eq!(found, ["1.0.1", "1.0.2"]);
        }
        "ext_conf_mc_disabled_extensions.xml" => {
            let states: Vec<ExtensionState> = ext[0].settings.iter().map(|s| s.state).collect();
            use ExtensionState::*;
            assert_eq!(states, [Disabled, Disabled, Enabled, Enabled]);
            assert!(ext[0].is_multi_config);
        }
        "ext_conf_mc_update_extensions.xml" | "ext_conf_multi_config_no_dependencies.xml" => {
            assert!(ext[0].is_multi_config && ext[0].supports_multi_config());
            assert!(!ext[1].is_multi_config);
        }
        "ext_conf_with_multi_config.xml" => {
            let rc = gs.extension("Microsoft.CPlat.Core.RunCommandHandlerWindows").unwrap();
            assert_eq!(
                settings_of(rc),
                [("firstRunCommand".into(), 2, 0), ("secondRunCommand".into(), 2, 3), ("thirdRunCommand".into(), 1, 4)]
            );
            assert_eq!(rc.settings[1].depends_on.len(), 3);
            let vm = gs.extension("Microsoft.Compute.VMAccessAgent").unwrap();
            assert_eq!((vm.version.as_str(), vm.settings[0].sequence_number, vm.settings[0].dependency_level), ("2.4.7", 1, 2));
            let geneva = gs.extension("Microsoft.Azure.Geneva.GenevaMonitoring").unwrap();
            assert_eq!((geneva.version.as_str(), geneva.settings[0].sequence_number), ("2.20.0.1", 1));
        }
        "ext_conf_with_multi_config_dependencies.xml" => {
            let levels: Vec<i64> = ext.iter().flat_map(|e| e.settings.iter().map(|s| s.dependency_level)).collect();
            assert!(levels.iter().any(|l| *l > 0), "dependency levels parsed: {levels:?}");
        }
        "ExtensionsConfig.xml" => {
            assert_eq!(gs.status_upload_blob_type(), StatusBlobType::PageBlob);
            assert!(ext.iter().all(|e| e.failure.is_none()));
        }
        other => panic!("{rel}: no expectation for {other}: add one to the table"),
    }
}

#[test]
fn every_extensions_config_row() {
    let Some(fx) = common::reference_fixtures("extensions_conformance extensionsconfig") else { return };
    let rows = common::manifest_rows(&fx, "extensionsconfig");
    assert!(rows.len() >= 30, "{} rows", rows.len());
    for row in rows {
        let gs = parse_extensions_config(&read(&fx, &row.path), Some(4))
            .unwrap_or_else(|e| panic!("{}: rejected: {e}", row.path));
        assert_eq!(gs.id, "incarnation_4");
        assert_eq!(gs.source, GoalStateSource::Fabric);
        let failed = gs.extensions.iter().filter(|e| e.failure.is_some()).count();
        let handler_level =
            row.expected.contains("Handler-level failure") || row.expected.contains("Per-handler failure");
        assert_eq!(
            failed > 0,
            handler_level,
            "{}: failed handlers {failed}; expected: {}",
            row.path,
            row.expected
        );
        no_secret_leaks(&gs, &row.path);
        check_extensions_config(&row.path, &gs);
    }
}

fn check_vm_settings(rel: &str, gs: &ExtensionsGoalState) {
    let ext = &gs.extensions;
    let fam = &gs.agent_families;
    match file_name(rel) {
        "vm_settings.json" => {
            assert_eq!((gs.activity_id.as_str(), gs.correlation_id.as_str()), (ACTIVITY, CORRELATION));
            assert_eq!(gs.created_on_timestamp, "2021-11-16T13:22:50.620529Z");
            assert_eq!(gs.status_upload_blob_type(), StatusBlobType::BlockBlob);
            assert_eq!(gs.required_features, ["MultipleExtensionsPerHandler"]);
            assert_eq!(fam.len(), 2);
            assert_eq!((fam[0].name.as_str(), fam[0].uris.len()), ("Prod", 2));
            assert_eq!(ext.len(), 5);
            assert_eq!(ext[0].name, "Microsoft.Azure.Monitor.AzureMonitorLinuxAgent");
            assert_eq!(
                ext[0].settings[0].public_settings,
                Some(serde_json::json!({"GCS_AUTO_CONFIG": true}))
            );
            assert_eq!(ext[2].settings[0].dependency_level, 1);
            assert_eq!(ext[3].settings[1].dependency_level, 1);
            assert!(gs.on_hold);
            assert!(gs.is_fast_track());
        }
        "vm_settings-agent_family_version.json" => {
            assert_eq!(
                (fam[0].version.as_deref(), fam[0].from_version.as_deref()),
                (Some("9.9.9.9"), Some("9.9.9.9"))
            );
            assert_eq!(
                (fam[0].is_version_from_rsm, fam[0].is_vm_enabled_for_rsm_upgrades),
                (Some(true), Some(true))
            );
        }
        "vm_settings-requested_version_properties_false.json" => {
            assert_eq!(
                (fam[0].is_version_from_rsm, fam[0].is_vm_enabled_for_rsm_upgrades),
                (Some(false), Some(false))
            );
        }
        "vm_settings-empty_depends_on.json" => assert_eq!(ext[0].settings[0].dependency_level, 0),
        "vm_settings-fabric-no_thumbprints.json" => {
            assert_eq!(gs.source, GoalStateSource::Fabric);
            assert!(!gs.is_fast_track());
        }
        "vm_settings-invalid_blob_type.json" => {
            assert_eq!(gs.status_upload_blob_type(), StatusBlobType::BlockBlob)
        }
        "vm_settings-no_manifests.json" => {
            assert_eq!(fam.len(), 1);
            assert!(fam[0].uris.is_empty());
            assert_eq!(ext.len(), 3);
            assert!(ext[0].manifest_uris.is_empty() && ext[1].manifest_uris.is_empty());
            assert_eq!(ext[2].manifest_uris.len(), 2);
            assert!(ext[2].manifest_uris.iter().all(|u| u.starts_with("https://umsa")));
        }
        "vm_settings-difference_in_required_features.json" => {
            assert_eq!(
                gs.unsupported_features(&["MultipleExtensionsPerHandler", "VersioningGovernance"]).len(),
                1
            );
        }
        "vm_settings-redact.json" => {
            let protected =
                ext.iter().flat_map(|e| &e.settings).filter(|s| s.protected_settings.is_some()).count();
            assert!(protected > 0);
        }
        "vm_settings-supported_hgap_version_for_signature.json" => {
            assert_eq!(gs.host_ga_plugin_version.as_deref(), Some("1.0.8.159"));
            assert!(!ext[0].encoded_signature.is_empty(), "one signed");
            assert!(ext[1].encoded_signature.is_empty(), "one unsigned");
        }
        "vm_settings-out-of-sync.json" => assert!(gs.is_fast_track()),
        "VmSettings.json" if rel.contains("goal_state_2") => {
            assert_eq!(gs.source, GoalStateSource::Fabric);
            let cs = gs.extension("Microsoft.Azure.Extensions.CustomScript").unwrap();
            assert_eq!(
                cs.settings[0].certificate_thumbprint.as_deref(),
                Some("33BDFEDC3C0E7F57A27C448BC4C4EB3D4D763489")
            );
            assert!(cs.settings[0].protected_settings.is_some());
        }
        "VmSettings.json" => assert!(gs.is_fast_track(), "{rel}"),
        other => panic!("{rel}: no expectation for {other}: add one to the table"),
    }
}

#[test]
fn every_vm_settings_row() {
    let Some(fx) = common::reference_fixtures("extensions_conformance vmsettings") else { return };
    let rows = common::manifest_rows(&fx, "vmsettings");
    assert!(rows.len() >= 14);
    for row in rows {
        let doc =
            parse_vm_settings(&read(&fx, &row.path), "42").unwrap_or_else(|e| panic!("{}: {e}", row.path));
        if row.path.ends_with("vm_settings-unsupported_version.json") {
            assert_eq!(
                doc,
                VmSettingsDocument::NotSupported { host_ga_plugin_version: Some("1.0.8.116".into()) }
            );
            continue;
        }
        let gs = supported(doc, &row.path);
        assert_eq!(gs.id, "etag_42");
        assert_eq!(gs.channel, GoalStateChannel::HostGAPlugin);
        assert!(gs.extensions.iter().all(|e| e.failure.is_none()), "{}", row.path);
        no_secret_leaks(&gs, &row.path);
        check_vm_settings(&row.path, &gs);
    }
}

#[test]
fn twins_and_choice() {
    let Some(fx) = common::reference_fixtures("extensions_conformance twins") else { return };
    // The HostGAPlugin test data has the same extensions in both formats.
    let ec = parse_extensions_config(&read(&fx, "wire/extensionsconfig/hostgaplugin-ext_conf.xml"), Some(1))
        .unwrap();
    let vs = supported(
        parse_vm_settings(&read(&fx, "hostgaplugin/vm_settings.json"), "1").unwrap(),
        "vm_settings",
    );
    let summary = |gs: &ExtensionsGoalState| -> Vec<(String, String, bool, SettingsSummary)> {
        gs.extensions
            .iter()
            .map(|e| (e.name.clone(), e.version.clone(), e.is_multi_config, settings_of(e)))
            .collect()
    };
    assert_eq!(summary(&ec), summary(&vs));
    assert_eq!(ec.extensions[0].settings[0].public_settings, vs.extensions[0].settings[0].public_settings);

    // Hibernate scenario: a Fast Track goal state, then a Fabric one that must not be executed.
    let dir = "scenarios/hibernate";
    let ec1 =
        parse_extensions_config(&read(&fx, &format!("{dir}/goal_state_1/ExtensionsConfig.xml")), Some(1))
            .unwrap();
    let vs1 = supported(
        parse_vm_settings(&read(&fx, &format!("{dir}/goal_state_1/VmSettings.json")), "a").unwrap(),
        "1",
    );
    let both = Updates { incarnation_changed: true, vm_settings_changed: true };
    assert_eq!(choose(None, Some(&ec1), Some(&vs1), both), Chosen::VmSettings, "Fast Track is newer");
    let vs2 = supported(
        parse_vm_settings(&read(&fx, &format!("{dir}/goal_state_2/VmSettings.json")), "b").unwrap(),
        "2",
    );
    let ec2 =
        parse_extensions_config(&read(&fx, &format!("{dir}/goal_state_2/ExtensionsConfig.xml")), Some(1))
            .unwrap();
    assert_eq!(
        choose(Some(&vs1), Some(&ec2), Some(&vs2), both),
        Chosen::ExtensionsConfig,
        "Fabric vmSettings ignored"
    );
    let only_vs = Updates { incarnation_changed: false, vm_settings_changed: true };
    assert_eq!(choose(Some(&ec2), None, Some(&vs2), only_vs), Chosen::KeepCurrent);
}

#[test]
fn every_handler_manifest_row() {
    let Some(fx) = common::reference_fixtures("extensions_conformance handler-manifest") else { return };
    let rows = common::manifest_rows(&fx, "handler-manifest");
    assert_eq!(rows.len(), 5);
    for row in rows {
        let m = parse_handler_manifest(&read(&fx, &row.path)).unwrap_or_else(|e| panic!("{}: {e}", row.path));
        let flags = (m.report_heartbeat, m.continue_on_update_failure, m.supports_multiple_extensions);
        match file_name(&row.path) {
            "manifest_boolean_fields_invalid.json" => {
                assert_eq!(flags, (false, false, false));
                assert_eq!(m.warnings.len(), 3);
                for (w, key) in m.warnings.iter().zip([
                    "reportHeartbeat",
                    "continueOnUpdateFailure",
                    "supportsMultipleExtensions",
                ]) {
                    assert!(w.starts_with(&format!("'{key}' has a non-boolean value")), "{w}");
                }
            }
            "manifest_boolean_fields_strings.json" | "valid_manifest.json" => {
                assert_eq!(flags, (true, true, true));
                assert!(m.warnings.is_empty());
            }
            "manifest_no_optional_fields.json" => {
                assert_eq!(flags, (false, false, false));
                assert_eq!(m.update_mode, UpdateMode::UpdateWithInstall);
            }
            "sample_ext-1.3.0-HandlerManifest.json" => assert!(!m.enable_command.is_empty()),
            other => panic!("no expectation for {other}"),
        }
        if file_name(&row.path) == "valid_manifest.json" {
            assert_eq!(
                [
                    &m.install_command,
                    &m.enable_command,
                    &m.uninstall_command,
                    &m.update_command,
                    &m.disable_command
                ],
                ["install_cmd", "enable_cmd", "uninstall_cmd", "update_cmd", "disable_cmd"]
            );
        }
    }
}

#[test]
fn every_extension_status_row() {
    let Some(fx) = common::reference_fixtures("extensions_conformance extension-status") else { return };
    let rows = common::manifest_rows(&fx, "extension-status");
    assert_eq!(rows.len(), 4);
    for row in rows {
        let bytes = std::fs::read(fx.join(&row.path)).unwrap();
        let result = parse_status_file(&bytes);
        match file_name(&row.path) {
            "sample-status.json" => {
                let s = result.unwrap().unwrap();
                assert_eq!(s.status, StatusValue::Success);
                assert!(s.message.as_deref().unwrap().starts_with("Aenean semper nunc nisl, "));
                assert_eq!(s.substatus.len(), 1);
                assert_eq!((s.substatus[0].code, s.substatus[0].status), (0, StatusValue::Success));
                assert!(!s.truncated);
            }
            "sample-status-very-large.json" => {
                let s = result.unwrap().unwrap();
                assert!(s.truncated);
                assert!(s.message.as_deref().unwrap().ends_with("[TRUNCATED]"));
                assert_eq!(s.substatus.len(), 1);
            }
            "sample-status-invalid-json-format.json" => {
                let e = result.unwrap_err();
                assert!(matches!(e, StatusFileError::InvalidJson { .. }));
                let st = e.to_status("TestHandler-1.0.0", 0);
                assert_eq!((st.status, st.code, st.substatus.len()), (StatusValue::Error, 1012, 0));
                let msg = st.message.unwrap();
                assert!(msg.starts_with("The status reported by the extension TestHandler-1.0.0(Sequence number 0), was in an incorrect format and the agent could not parse it correctly. Failed due to "), "{msg}");
                assert!(msg.contains("This is an invalid status file"), "includes the start of the file");
            }
            "sample-status-invalid-status-no-status-status-key.json" => {
                let st = result.unwrap_err().to_status("TestHandler-1.0.0", 0);
                assert_eq!(st.code, 1012);
                assert!(st
                    .message
                    .unwrap()
                    .starts_with("Could not get a valid status from the extension TestHandler-1.0.0. Encountered the following error"));
            }
            other => panic!("no expectation for {other}"),
        }
    }
}

#[test]
fn every_manifest_row() {
    let Some(fx) = common::reference_fixtures("extensions_conformance manifests") else { return };
    for kind in ["extension-manifest", "agent-manifest"] {
        for row in common::manifest_rows(&fx, kind) {
            let m = parse_manifest(&read(&fx, &row.path)).unwrap_or_else(|e| panic!("{}: {e}", row.path));
            assert!(!m.packages.is_empty(), "{}", row.path);
            assert!(m.packages.windows(2).all(|w| w[0].version <= w[1].version), "sorted");
            let largest = m.largest().unwrap().version.to_string();
            match file_name(&row.path) {
                "manifest.xml" => {
                    let v = |s| FlexibleVersion::parse(s).unwrap();
                    assert!(v("3.1") < v("4.0.0.0"));
                    assert!(m.packages.iter().any(|p| p.disallow_major_version_upgrade));
                    assert!(m.packages.iter().any(|p| p.is_internal));
                    let pick = m.select("H", "1.1", ExtensionState::Enabled, None).unwrap();
                    assert_eq!(pick.version.to_string(), "1.1.1", "highest 1.1.x");
                }
                "ga_manifest.xml" => assert_eq!(largest, "99999.0.0.0"),
                "ga_manifest_no_upgrade.xml" => assert_eq!(largest, "1.2.0"),
                "manifest_deletion.xml" => assert_eq!(largest, "1.0.0"),
                "manifest_vm_access.xml" => assert_eq!(largest, "1.7.0"),
                other => panic!("no expectation for {other}"),
            }
        }
    }
    for row in common::manifest_rows(&fx, "extension-image-manifest") {
        let img = parse_extension_image(&read(&fx, &row.path)).unwrap();
        assert_eq!(img.handler_name(), "Microsoft.Azure.TestExtensions.GuestAgentDcrTest");
        assert_eq!(img.version, "1.4.1");
        assert!(img.is_internal_extension && img.is_json_extension);
    }
    for row in common::manifest_rows(&fx, "artifacts-profile") {
        assert!(parse_artifacts_profile(&read(&fx, &row.path)).unwrap().on_hold, "{}", row.path);
    }
}

#[test]
fn every_extension_event_row() {
    let Some(fx) = common::reference_fixtures("extensions_conformance extension-event") else { return };
    let rows = common::manifest_rows(&fx, "extension-event");
    assert!(rows.len() >= 14);
    for row in rows {
        let name = file_name(&row.path);
        let text = read(&fx, &row.path);
        let parsed = parse_event_file(&text);
        let dir = row.path.rsplit('/').nth(1).unwrap_or("");
        match (dir, name) {
            (_, "1594857360.tld") | (_, "bad_name_file.json") => {
                assert!(!is_event_file_name(name), "{name} is skipped")
            }
            ("bad_json_files", _) => assert!(parsed.is_err(), "{}", row.path),
            ("empty_message", _) => {
                let f = parsed.unwrap();
                assert!(f.events.is_empty());
                assert!(
                    !f.dropped.is_empty() && f.dropped.iter().all(|d| d.starts_with("EmptyMessageError")),
                    "{:?}",
                    f.dropped
                );
            }
            ("large_messages", _) => {
                let f = parsed.unwrap();
                assert!(f.dropped.iter().all(|d| d.starts_with("OversizeEventError")));
                assert!(f.events.iter().all(|e| e.message.chars().count() <= events::MAX_MESSAGE_LENGTH));
                assert!(!f.dropped.is_empty(), "the oversized event is reported");
            }
            ("mix_files", "1591835369.json") => {
                let f = parsed.unwrap();
                assert_eq!((f.events.len(), f.dropped.len()), (0, 1));
            }
            ("mix_files", _) => {
                let f = parsed.unwrap();
                assert!(!f.events.is_empty());
            }
            ("sas_files", _) => {
                let f = parsed.unwrap();
                assert!(f.events.iter().all(|e| !e.message.contains("sig=")), "SAS redacted");
                assert!(f.events[0].message.ends_with("?<redacted>"), "{}", f.events[0].message);
            }
            ("special_chars", _) => {
                let f = parsed.unwrap();
                assert!(f.dropped.is_empty());
                assert!(f.events.iter().any(|e| !e.message.is_ascii()), "UTF-8 preserved");
            }
            ("extra_parameters", _) => {
                let f = parsed.unwrap();
                assert_eq!(
                    (f.events.len(), f.dropped.len()),
                    (2, 1),
                    "the event without the required keys is dropped"
                );
                let json = serde_json::to_string(&f.events).unwrap();
                assert!(
                    !json.contains("SomethingNewButNotCool") && !json.contains("random new param"),
                    "unknown keys not forwarded"
                );
            }
            ("well_formed_files", _) => {
                let f = parsed.unwrap();
                assert!(!f.events.is_empty() && f.dropped.is_empty(), "{}: {:?}", row.path, f.dropped);
                assert!(is_event_file_name(name));
            }
            other => panic!("no expectation for {other:?}"),
        }
    }
}

// ----- Project-own fixtures (no reference directory needed) -----

fn own(rel: &str) -> String {
    read(&common::project_fixtures(), rel)
}

#[test]
fn own_extensions_config() {
    let gs = parse_extensions_config(&own("ext/extensions_config.xml"), None).unwrap();
    assert_eq!((gs.id.as_str(), gs.svd_sequence_number), ("incarnation_7", 7));
    assert_eq!(gs.created_on_timestamp, "1970-01-01T00:00:00.000000Z");
    assert_eq!(gs.status_upload_blob_type(), StatusBlobType::PageBlob);
    assert_eq!(gs.status_upload_blob.as_ref().unwrap().url, "https://example.invalid/status?sp=w&sig=abc");
    assert_eq!(gs.in_vm_artifacts_profile_blob.as_deref(), Some("https://example.invalid/profile?sp=r"));
    assert_eq!(gs.agent_families[0].is_version_from_rsm, Some(true));
    assert_eq!(gs.agent_families[0].version.as_deref(), Some("2.9.1.1"));
    let script = &gs.extensions[0];
    assert_eq!(script.manifest_uris.len(), 3);
    assert_eq!(settings_of(script), [("Contoso.Tools.Script".to_string(), 4, 2)], "matched in another case");
    assert_eq!(script.settings[0].depends_on[0].handler, "Contoso.Tools.Multi");
    let multi = &gs.extensions[1];
    assert!(multi.is_multi_config);
    assert_eq!(settings_of(multi), [("first".to_string(), 0, 0), ("second".to_string(), 3, 1)]);
    assert_eq!(multi.settings[1].state, ExtensionState::Disabled);
    assert_eq!(multi.settings[1].public_settings, None);
    assert_eq!(
        failure(&gs.extensions[2]).as_deref(),
        Some("Extension PluginSettings Version Mismatch! Expected PluginSettings version: 1.0 for Extension: Contoso.Tools.Broken but found versions: (0.9)")
    );
    assert_eq!(gs.extensions[3].state, Some(ExtensionState::Uninstall));
    assert!(gs.extensions[3].settings.is_empty());
    no_secret_leaks(&gs, "own");
    assert!(!format!("{gs:?}").contains("ALLSOSECRET"));

    // The settings file the agent would write for the script handler.
    let text = render_settings(script.settings.first());
    let v: serde_json::Value = serde_json::from_str(text.expose()).unwrap();
    assert_eq!(v["runtimeSettings"][0]["handlerSettings"]["publicSettings"]["n"], 1);
    assert_eq!(v["runtimeSettings"][0]["handlerSettings"]["protectedSettings"], "TUlJT1dALLSOSECRET");
    assert_eq!(settings_file_name(multi, multi.settings.get(1)), "second.3.settings");
}

#[test]
fn own_vm_settings_match_the_extensions_config() {
    let vs = supported(parse_vm_settings(&own("ext/vm_settings.json"), "e1").unwrap(), "own");
    let ec = parse_extensions_config(&own("ext/extensions_config.xml"), None).unwrap();
    assert_eq!(vs.activity_id, ec.activity_id, "keys are case-insensitive (ActivityId)");
    assert_eq!(vs.svd_sequence_number, 12);
    assert_eq!(vs.status_upload_blob_type(), StatusBlobType::BlockBlob, "unknown type means BlockBlob");
    assert_eq!(vs.agent_families[0].uris, Vec::<String>::new());
    for i in 0..2 {
        assert_eq!(settings_of(&vs.extensions[i]), settings_of(&ec.extensions[i]), "handler {i}");
        assert_eq!(vs.extensions[i].manifest_uris, ec.extensions[i].manifest_uris);
        let pub_of = |g: &ExtensionsGoalState| g.extensions[i].settings[0].public_settings.clone();
        assert_eq!(pub_of(&vs), pub_of(&ec), "publicSettings string decoded");
    }
    assert_eq!(
        failure(&vs.extensions[2]).as_deref(),
        Some("The certificate thumbprint for protected settings is missing (extension Contoso.Tools.Broken)")
    );
    assert!(!format!("{vs:?}").contains("ALLSOSECRET"));
    assert!(serde_json::to_string(&vs).unwrap().contains("<redacted>"));
    assert_eq!(
        choose(
            Some(&ec),
            Some(&ec),
            Some(&vs),
            Updates { incarnation_changed: true, vm_settings_changed: true }
        ),
        Chosen::ExtensionsConfig,
        "same time: ExtensionsConfig"
    );
}

#[test]
fn own_handler_manifest_status_heartbeat_manifest_events() {
    let m = parse_handler_manifest(&own("ext/handler_manifest.json")).unwrap();
    assert!(m.report_heartbeat);
    assert!(!m.supports_multiple_extensions);
    assert_eq!(m.warnings.len(), 1, "\"yes\" is not a boolean");
    assert_eq!(m.update_mode, UpdateMode::UpdateWithoutInstall);
    assert_eq!(m.signing_info.as_ref().and_then(|s| s.publisher.as_deref()), Some("Contoso.Tools"));
    assert_eq!(m.install_command, "bin/script install");

    let s = parse_status_file(own("ext/status.json").as_bytes()).unwrap().unwrap();
    assert_eq!((s.operation.as_deref(), s.status, s.code), (Some("Enable"), StatusValue::Success, 0));
    assert_eq!(s.substatus.len(), 1, "null substatus entries are skipped");
    assert_eq!(s.substatus[0].message.as_deref(), Some("hello"));

    let h = parse_heartbeat(&own("ext/heartbeat.log")).unwrap();
    assert_eq!((h.status.as_str(), h.message.as_deref()), ("ready", Some("all good")));

    let man = parse_manifest(&own("ext/manifest.xml")).unwrap();
    let pick = |req: &str| {
        man.select("Contoso.Tools.Script", req, ExtensionState::Enabled, None).map(|p| p.version.to_string())
    };
    assert_eq!(pick("1.2").unwrap(), "1.2.11", "internal packages count");
    assert_eq!(pick("1.2.3").unwrap(), "1.2.3");
    assert_eq!(man.find(&FlexibleVersion::parse("1.2.3").unwrap()).unwrap().uris.len(), 2);
    assert_eq!(pick("1.3").unwrap_err().to_string(), "Unable to find version 1.3 in manifest");

    let ev = parse_event_file(&own("ext/events.json")).unwrap();
    assert_eq!(ev.events.len(), 1);
    assert_eq!(ev.events[0].message, "downloaded https://example.invalid/f.sh?<redacted>");
    assert_eq!(ev.dropped.len(), 2);
}

// ----- Robustness: no parser panics on truncated or mutated documents -----

fn every_parser(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = parse_extensions_config(&text, None);
    let _ = parse_vm_settings(&text, "x");
    let _ = parse_handler_manifest(&text);
    let _ = parse_status_file(bytes);
    let _ = parse_heartbeat(&text);
    let _ = parse_manifest(&text);
    let _ = parse_extension_image(&text);
    let _ = parse_artifacts_profile(&text);
    let _ = parse_event_file(&text);
    if let Ok(VmSettingsDocument::Supported(gs)) = parse_vm_settings(&text, "x") {
        let _ = serde_json::to_string(&gs);
        for e in &gs.extensions {
            let _ = render_settings(e.settings.first());
        }
    }
}

fn mutate_all(seed_docs: &[Vec<u8>]) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let specials = [b'<', b'>', b'"', b'{', b'}', b'[', b']', b':', b',', b'&', 0xff, b'0', b'9', b'-'];
    for doc in seed_docs {
        if doc.is_empty() {
            continue;
        }
        for k in 0..24 {
            every_parser(&doc[..(doc.len() * k / 24)]);
        }
        for _ in 0..24 {
            let mut m = doc.clone();
            for _ in 0..(1 + next() % 4) {
                let at = next() % m.len();
                match next() % 3 {
                    0 => m[at] = specials[next() % specials.len()],
                    1 => {
                        m.remove(at);
                        if m.is_empty() {
                            break;
                        }
                    }
                    _ => m.insert(at, specials[next() % specials.len()]),
                }
            }
            every_parser(&m);
        }
    }
}

#[test]
fn truncated_and_mutated_own_documents_never_panic() {
    let dir = common::project_fixtures().join("ext");
    let docs: Vec<Vec<u8>> =
        std::fs::read_dir(&dir).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    assert!(docs.len() >= 6);
    mutate_all(&docs);
    every_parser(b"");
    every_parser(&[0xff, 0xfe, 0x00]);
    every_parser("<Extensions>".repeat(5000).as_bytes());
    every_parser("[".repeat(100_000).as_bytes());
}

#[test]
fn truncated_and_mutated_reference_documents_never_panic() {
    let Some(fx) = common::reference_fixtures("extensions_conformance mutation") else { return };
    let mut docs = Vec::new();
    for kind in [
        "extensionsconfig",
        "vmsettings",
        "handler-manifest",
        "extension-status",
        "extension-manifest",
        "agent-manifest",
        "extension-image-manifest",
        "artifacts-profile",
        "extension-event",
    ] {
        for row in common::manifest_rows(&fx, kind) {
            let bytes = std::fs::read(fx.join(&row.path)).unwrap();
            // The big status file would dominate the run time; its start is enough.
            docs.push(bytes[..bytes.len().min(32 * 1024)].to_vec());
        }
    }
    mutate_all(&docs);
}
