//! ExtensionsConfig, the WireServer's extensions goal state (wire.md §7.1), and the
//! InVMArtifactsProfile blob it points to.
//!
//! The document as a whole is rejected only when it is not XML or its root is not
//! `<Extensions>`. Everything else is lenient like waagent: unknown elements and attributes are
//! ignored, a missing `StatusUploadBlob` or `InVMGoalStateMetaData` gives defaults, and a problem
//! in one `Plugin` or its `PluginSettings` fails only that handler ([`Extension::failure`]).

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::base::secret::Secret;
use crate::documents::extensions::extensions_goal_state::{
    ticks_to_timestamp, AgentFamily, DependsOnExtension, Extension, ExtensionSettings, ExtensionState,
    ExtensionsGoalState, GoalStateChannel, GoalStateSource, HandlerConfigError, StatusBlobType,
    StatusUploadBlob, NULL_GUID,
};
use crate::documents::extensions::DocumentError;
use crate::documents::xml::{self, Element};

const DOC: &str = "ExtensionsConfig";

/// Parse an ExtensionsConfig document. `incarnation` is the WireServer goal state's incarnation
/// (it becomes the goal state's ID and `inSvdSeqNo`); `None` takes the document's own
/// `goalStateIncarnation` attribute (0 when absent), which is what `inspect` does.
pub fn parse_extensions_config(
    text: &str,
    incarnation: Option<u64>,
) -> Result<ExtensionsGoalState, DocumentError> {
    let root = xml::parse_platform(text).map_err(|e| DocumentError::xml(DOC, e))?;
    if root.name != "Extensions" {
        return Err(DocumentError::UnexpectedRoot {
            document: DOC,
            expected: "Extensions",
            found: root.name.clone(),
        });
    }
    let incarnation = incarnation.unwrap_or_else(|| {
        root.attr_nonempty("goalStateIncarnation").and_then(|v| v.parse().ok()).unwrap_or(0)
    });

    let metadata = root.child("InVMGoalStateMetaData");
    let meta_attr = |name: &str| metadata.and_then(|m| m.attr_nonempty(name)).map(str::to_string);
    let created_on_ticks = match meta_attr("createdOnTicks") {
        Some(t) => t.parse::<u64>().map_err(|_| DocumentError::Invalid {
            document: DOC,
            path: "Extensions/InVMGoalStateMetaData@createdOnTicks".into(),
            why: format!("not a non-negative integer: {:?}", super::excerpt(&t)),
        })?,
        None => 0,
    };

    let status_upload_blob = root.child("StatusUploadBlob").and_then(|b| {
        b.text_trimmed().map(|url| StatusUploadBlob {
            url: url.to_string(),
            blob_type: StatusBlobType::parse_lenient(b.attr("statusBlobType")),
        })
    });

    let required_features = root
        .child("RequiredFeatures")
        .map(|rf| {
            rf.children_named("RequiredFeature")
                .filter_map(|f| f.child_text("Name"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();

    let agent_families = root
        .child("GuestAgentExtension")
        .and_then(|g| g.child("GAFamilies"))
        .map(|fams| fams.children_named("GAFamily").filter_map(parse_family).collect())
        .unwrap_or_default();

    // The settings of each handler, found by name (case-insensitive) in one pass: matching every
    // Plugin against every PluginSettings entry would be quadratic.
    let mut plugin_settings: HashMap<String, Vec<&Element>> = HashMap::new();
    for p in root.child("PluginSettings").into_iter().flat_map(|ps| ps.children_named("Plugin")) {
        if let Some(name) = p.attr("name") {
            plugin_settings.entry(name.to_ascii_lowercase()).or_default().push(p);
        }
    }
    let extensions = root
        .child("Plugins")
        .map(|plugins| {
            plugins
                .children_named("Plugin")
                .map(|p| {
                    let name = p.attr("name").unwrap_or_default().to_ascii_lowercase();
                    parse_plugin(p, plugin_settings.get(&name).map_or(&[], Vec::as_slice))
                })
                .collect()
        })
        .unwrap_or_default();

    Ok(ExtensionsGoalState {
        id: format!("incarnation_{incarnation}"),
        source: GoalStateSource::Fabric,
        channel: GoalStateChannel::WireServer,
        svd_sequence_number: incarnation,
        activity_id: meta_attr("activityId").unwrap_or_else(|| NULL_GUID.to_string()),
        correlation_id: meta_attr("correlationId").unwrap_or_else(|| NULL_GUID.to_string()),
        created_on_ticks,
        created_on_timestamp: ticks_to_timestamp(created_on_ticks),
        status_upload_blob,
        in_vm_artifacts_profile_blob: root.child_text("InVMArtifactsProfileBlob").map(str::to_string),
        on_hold: false,
        required_features,
        agent_families,
        extensions,
        host_ga_plugin_version: None,
    })
}

/// `true`/`false` text, case-insensitive; anything else is false (waagent compares with "true").
fn bool_text(e: &Element, name: &str) -> Option<bool> {
    e.child_text(name).map(|t| t.eq_ignore_ascii_case("true"))
}

fn parse_family(f: &Element) -> Option<AgentFamily> {
    let name = f.child_text("Name")?.to_string();
    Some(AgentFamily {
        name,
        version: f.child_text("Version").map(str::to_string),
        from_version: f.child_text("FromVersion").map(str::to_string),
        is_version_from_rsm: bool_text(f, "IsVersionFromRSM"),
        is_vm_enabled_for_rsm_upgrades: bool_text(f, "IsVMEnabledForRSMUpgrades"),
        uris: f
            .child("Uris")
            .map(|u| u.children_named("Uri").filter_map(Element::text_trimmed).map(str::to_string).collect())
            .unwrap_or_default(),
    })
}

fn parse_plugin(plugin: &Element, plugin_settings: &[&Element]) -> Extension {
    let attr = |n: &str| plugin.attr(n).unwrap_or("").to_string();
    let mut ext = Extension::new(attr("name"), attr("version"));
    if ext.refuse_bad_names("ExtensionsConfig Plugins/Plugin@name", "ExtensionsConfig Plugins/Plugin@version")
    {
        return ext;
    }
    ext.encoded_signature = attr("encodedSignature");
    for name in ["location", "failoverlocation"] {
        if let Some(uri) = plugin.attr_nonempty(name) {
            ext.manifest_uris.push(uri.to_string());
        }
    }
    if let Some(additional) = plugin.child("additionalLocations") {
        ext.manifest_uris.extend(
            additional
                .children_named("additionalLocation")
                .filter_map(Element::text_trimmed)
                .map(str::to_string),
        );
    }
    let state = plugin.attr("state").map(str::trim).unwrap_or("");
    if state.is_empty() {
        ext.fail(HandlerConfigError::EmptyState);
        return ext;
    }
    match ExtensionState::parse(state) {
        Some(s) => ext.state = Some(s),
        None => {
            ext.fail(HandlerConfigError::InvalidState {
                handler: ext.name.clone(),
                state: super::excerpt(state),
            });
            return ext;
        }
    }
    if let Err(e) = parse_plugin_settings(&mut ext, plugin_settings) {
        ext.fail(e);
    }
    ext
}

/// `mine`: the `PluginSettings/Plugin` entries named as this handler (case-insensitively).
fn parse_plugin_settings(ext: &mut Extension, mine: &[&Element]) -> Result<(), HandlerConfigError> {
    if mine.is_empty() {
        return Ok(());
    }
    let same_version: Vec<&Element> =
        mine.iter().copied().filter(|p| p.attr("version") == Some(&ext.version)).collect();
    if same_version.len() != mine.len() {
        let mut found: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for v in mine.iter().map(|p| p.attr("version").unwrap_or("")) {
            if seen.insert(v) {
                found.push(v.to_string());
            }
        }
        return Err(HandlerConfigError::SettingsVersionMismatch {
            handler: ext.name.clone(),
            expected: ext.version.clone(),
            found,
        });
    }
    if same_version.len() > 1 {
        return Err(HandlerConfigError::MultiplePluginSettings {
            handler: ext.name.clone(),
            version: ext.version.clone(),
            count: same_version.len(),
        });
    }
    let node = same_version[0];
    let runtime: Vec<&Element> = node.children_named("RuntimeSettings").collect();
    let per_extension: Vec<&Element> = node.children_named("ExtensionRuntimeSettings").collect();
    let depends_on: Vec<&Element> = node.children_named("DependsOn").collect();
    let handler_state = ext.state.unwrap_or(ExtensionState::Enabled);
    if !runtime.is_empty() && !per_extension.is_empty() {
        return Err(HandlerConfigError::BothSettingsKinds {
            handler: ext.name.clone(),
            version: ext.version.clone(),
        });
    }
    if let [single] = runtime.as_slice() {
        if depends_on.len() > 1 {
            return Err(HandlerConfigError::MultipleDependsOn { count: depends_on.len() });
        }
        let (level, deps) = depends_on.first().map(|d| dependency(d)).unwrap_or_default();
        let name = ext.name.clone();
        ext.settings.extend(parse_settings_node(single, &name, handler_state, level, &deps)?);
    } else if runtime.len() > 1 {
        return Err(HandlerConfigError::MultipleRuntimeSettings {
            handler: ext.name.clone(),
            version: ext.version.clone(),
            count: runtime.len(),
        });
    } else if !per_extension.is_empty() {
        // The first DependsOn of each name counts, as in a search from the start.
        let mut levels: HashMap<&str, (i64, Vec<DependsOnExtension>)> = HashMap::new();
        for d in &depends_on {
            let name = d.attr_nonempty("name").ok_or(HandlerConfigError::DependsOnWithoutName)?;
            levels.entry(name).or_insert_with(|| dependency(d));
        }
        ext.is_multi_config = true;
        for node in per_extension {
            let name =
                node.attr_nonempty("name").ok_or(HandlerConfigError::ExtensionNameMissing)?.to_string();
            ext.check_extension_name(
                &name,
                "ExtensionsConfig PluginSettings/Plugin/ExtensionRuntimeSettings@name",
            )?;
            let state = match node.attr_nonempty("state") {
                None => ExtensionState::Enabled,
                Some(s) => ExtensionState::parse(s).ok_or_else(|| HandlerConfigError::InvalidState {
                    handler: name.clone(),
                    state: super::excerpt(s),
                })?,
            };
            let (level, deps) = levels.get(name.as_str()).cloned().unwrap_or_default();
            ext.settings.extend(parse_settings_node(node, &name, state, level, &deps)?);
        }
    }
    Ok(())
}

/// `dependencyLevel` (0 when absent or not an integer, as waagent) and the `DependsOnExtension`s.
fn dependency(node: &Element) -> (i64, Vec<DependsOnExtension>) {
    let level = node.attr_nonempty("dependencyLevel").and_then(|l| l.parse().ok()).unwrap_or(0);
    let deps = node
        .children_named("DependsOnExtension")
        .filter_map(|d| {
            d.attr_nonempty("handler").map(|h| DependsOnExtension {
                handler: h.to_string(),
                extension: d.attr_nonempty("extension").map(str::to_string),
            })
        })
        .collect();
    (level, deps)
}

/// One `RuntimeSettings` or `ExtensionRuntimeSettings` node: a settings entry per element of
/// `runtimeSettings`, or one entry without settings when the JSON cannot be used.
fn parse_settings_node(
    node: &Element,
    name: &str,
    state: ExtensionState,
    level: i64,
    deps: &[DependsOnExtension],
) -> Result<Vec<ExtensionSettings>, HandlerConfigError> {
    let seq = node
        .attr_nonempty("seqNo")
        .ok_or_else(|| HandlerConfigError::SeqNoMissing { name: name.to_string() })?;
    let sequence_number = seq.parse::<u64>().map_err(|_| HandlerConfigError::InvalidSeqNo {
        name: name.to_string(),
        value: super::excerpt(seq),
    })?;
    let empty = |unparsable: bool| ExtensionSettings {
        name: name.to_string(),
        sequence_number,
        state,
        public_settings: None,
        protected_settings: None,
        certificate_thumbprint: None,
        dependency_level: level,
        depends_on: deps.to_vec(),
        settings_unparsable: unparsable,
    };
    let Some(list) = serde_json::from_str::<Value>(&node.text)
        .ok()
        .and_then(|v| v.get("runtimeSettings").and_then(Value::as_array).cloned())
    else {
        log::warn!("ExtensionsConfig: the settings of extension {name} (seqNo {sequence_number}) are not usable JSON");
        return Ok(vec![empty(true)]);
    };
    let mut out = Vec::new();
    for item in &list {
        let hs = item.get("handlerSettings");
        let field = |k: &str| hs.and_then(|h| h.get(k)).filter(|v| !v.is_null());
        let mut s = empty(false);
        s.public_settings = field("publicSettings").cloned();
        s.protected_settings =
            field("protectedSettings").and_then(Value::as_str).map(|p| Secret::new(p.to_string()));
        s.certificate_thumbprint =
            field("protectedSettingsCertThumbprint").and_then(Value::as_str).map(str::to_string);
        out.push(s);
    }
    Ok(out)
}

/// The InVMArtifactsProfile blob (JSON). Only `onHold` changes what the agent does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct ArtifactsProfile {
    /// `onHold`: a boolean or the strings `true`/`false` (any case); anything else is not on hold.
    pub on_hold: bool,
    pub profile_id: Option<String>,
    pub sequence_number: Option<String>,
    pub certificate_thumbprint: Option<String>,
}

/// Parse the InVMArtifactsProfile blob. A caller that cannot fetch or parse it treats the VM as
/// not on hold.
pub fn parse_artifacts_profile(text: &str) -> Result<ArtifactsProfile, DocumentError> {
    const PDOC: &str = "InVMArtifactsProfile";
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let v: Value = serde_json::from_str(text).map_err(|e| DocumentError::json(PDOC, e))?;
    let obj = v.as_object().ok_or_else(|| DocumentError::Invalid {
        document: PDOC,
        path: "(root)".into(),
        why: "not a JSON object".into(),
    })?;
    let string = |k: &str| match obj.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let on_hold = match obj.get("onHold") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    };
    Ok(ArtifactsProfile {
        on_hold,
        profile_id: string("profileId"),
        sequence_number: string("inVMArtifactsProfileBlobSeqNo"),
        certificate_thumbprint: string("certificateThumbprint"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(plugins: &str, settings: &str) -> String {
        format!(
            "<Extensions goalStateIncarnation=\"3\"><Plugins>{plugins}</Plugins><PluginSettings>{settings}</PluginSettings>\
             <StatusUploadBlob statusBlobType=\"pageblob\">https://s/b?sp=w&amp;sig=x</StatusUploadBlob>\
             <Unknown a=\"b\"/></Extensions>"
        )
    }

    const P: &str =
        "<Plugin name=\"A.B\" version=\"1.0\" state=\"enabled\" location=\"http://l\" extra=\"x\"/>";

    // Hostile documents the quadratic parser took seconds on (11.5 s for the first, release build);
    // the tests assert the outcome, `cargo bench --bench parsers` prints the times.

    #[test]
    fn a_hundred_thousand_attributes_are_parsed_in_linear_time() {
        let attrs: String = (0..100_000).map(|i| format!(" a{i}=\"\"")).collect();
        let text = doc(P, "").replacen("<Extensions ", &format!("<Extensions{attrs} "), 1);
        assert!(
            text.len() > 900_000
                && text.len() as u64 <= crate::base::limits::Document::ExtensionsConfig.limit()
        );
        let gs = parse_extensions_config(&text, None).expect("a valid document");
        assert_eq!((gs.id.as_str(), gs.extensions.len()), ("incarnation_3", 1));
    }

    #[test]
    fn many_handlers_are_matched_to_their_settings_in_linear_time() {
        let n = 20_000;
        let plugins: String =
            (0..n).map(|i| format!("<Plugin name=\"P.H{i}\" version=\"1.0\" state=\"enabled\"/>")).collect();
        let settings: String = (0..n)
            .map(|i| format!("<Plugin name=\"p.h{i}\" version=\"1.0\"><RuntimeSettings seqNo=\"{i}\">{{}}</RuntimeSettings></Plugin>"))
            .collect();
        let gs = parse_extensions_config(&doc(&plugins, &settings), None).expect("valid");
        assert_eq!(gs.extensions.len(), n);
        let last = &gs.extensions[n - 1];
        assert_eq!((last.name.as_str(), last.settings[0].sequence_number), ("P.H19999", 19_999));
    }

    #[test]
    fn settings_match_case_insensitively_and_secrets_stay_hidden() {
        let s = "<Plugin name=\"a.b\" version=\"1.0\"><RuntimeSettings seqNo=\"5\">{\"runtimeSettings\":[{\"handlerSettings\":\
                 {\"protectedSettingsCertThumbprint\":\"T\",\"protectedSettings\":\"SECRETDATA\",\"publicSettings\":{\"k\":1}}}]}\
                 </RuntimeSettings></Plugin>";
        let gs = parse_extensions_config(&doc(P, s), None).unwrap();
        assert_eq!(gs.id, "incarnation_3");
        assert_eq!(gs.status_upload_blob_type(), StatusBlobType::PageBlob);
        let e = &gs.extensions[0];
        assert_eq!(e.failure, None);
        assert_eq!(e.settings.len(), 1);
        let st = &e.settings[0];
        assert_eq!((st.name.as_str(), st.sequence_number), ("A.B", 5));
        assert_eq!(st.public_settings, Some(serde_json::json!({"k": 1})));
        assert_eq!(st.protected_settings.as_ref().map(|p| p.expose().as_str()), Some("SECRETDATA"));
        assert!(!format!("{gs:?}").contains("SECRETDATA"));
        assert!(!serde_json::to_string(&gs).unwrap().contains("SECRETDATA"));
    }

    #[test]
    fn invalid_json_keeps_an_entry_and_bad_handlers_fail_alone() {
        let s = "<Plugin name=\"A.B\" version=\"1.0\"><RuntimeSettings seqNo=\"2\">{not json</RuntimeSettings></Plugin>";
        let two = format!("{P}<Plugin name=\"P.C\" version=\"1\" state=\"\"/><Plugin name=\"P.D\" version=\"1\" state=\"bogus\"/>");
        let gs = parse_extensions_config(&doc(&two, s), Some(9)).unwrap();
        assert_eq!(gs.svd_sequence_number, 9);
        assert_eq!(gs.extensions[0].settings.len(), 1);
        assert!(gs.extensions[0].settings[0].settings_unparsable);
        assert_eq!(gs.extensions[0].settings[0].sequence_number, 2);
        assert_eq!(gs.extensions[1].failure, Some(HandlerConfigError::EmptyState));
        assert!(matches!(gs.extensions[2].failure, Some(HandlerConfigError::InvalidState { .. })));
        let no_seq = "<Plugin name=\"A.B\" version=\"1.0\"><RuntimeSettings>{}</RuntimeSettings></Plugin>";
        let gs = parse_extensions_config(&doc(P, no_seq), None).unwrap();
        assert_eq!(
            gs.extensions[0].failure.as_ref().map(ToString::to_string).as_deref(),
            Some("SeqNo not specified for the Extension: A.B")
        );
    }

    /// Issue #21: the handler name and version become paths (`<Lib.Dir>/<Name>-<Version>`) and,
    /// with waagent's way of running commands, part of a shell line. Names and versions the
    /// platform does not use fail their handler alone, with the plugin and the field named.
    #[test]
    fn hostile_names_and_versions_fail_only_their_handler() {
        let plugins = "<Plugin name=\"../../../../ESCAPED.Ext\" version=\"1.0\" state=\"enabled\"/>\
             <Plugin name=\"../../../../victim\" version=\"1.0\" state=\"uninstall\"/>\
             <Plugin name=\"X;id&gt;INJECTED;#\" version=\"1.0\" state=\"enabled\"/>\
             <Plugin name=\"Pub.Ver\" version=\"1.0/../../x\" state=\"enabled\"/>\
             <Plugin name=\"Pub.Multi\" version=\"1.0\" state=\"enabled\"/>\
             <Plugin name=\"Microsoft.Azure.Extensions.CustomScript\" version=\"2.1.6\" state=\"enabled\"/>";
        let settings = "<Plugin name=\"Pub.Multi\" version=\"1.0\">\
             <ExtensionRuntimeSettings seqNo=\"1\" name=\"../../evil\">{}</ExtensionRuntimeSettings></Plugin>";
        let gs = parse_extensions_config(&doc(plugins, settings), None).unwrap();
        let failure =
            |i: usize| gs.extensions[i].failure.as_ref().map(ToString::to_string).unwrap_or_default();
        for (i, field) in [
            (0, "ExtensionsConfig Plugins/Plugin@name is not a valid handler name"),
            (1, "ExtensionsConfig Plugins/Plugin@name is not a valid handler name"),
            (2, "ExtensionsConfig Plugins/Plugin@name is not a valid handler name: ';' is not allowed"),
            (3, "ExtensionsConfig Plugins/Plugin@version is not a valid version"),
            (4, "ExtensionsConfig PluginSettings/Plugin/ExtensionRuntimeSettings@name is not a valid extension name"),
        ] {
            let f = failure(i);
            assert!(f.starts_with(&format!("Plugin {:?} is refused: ", gs.extensions[i].name)), "{f}");
            assert!(f.contains(field), "{i}: {f}");
            assert!(gs.extensions[i].settings.is_empty(), "{i}");
        }
        assert_eq!(gs.extensions[2].name, "X;id>INJECTED;#");
        assert_eq!(gs.extensions[5].failure, None, "a real name is untouched");
    }

    #[test]
    fn whole_document_errors() {
        assert!(matches!(
            parse_extensions_config("<Other/>", None),
            Err(DocumentError::UnexpectedRoot { .. })
        ));
        assert!(matches!(parse_extensions_config("<Extensions>", None), Err(DocumentError::Xml { .. })));
        let bad_ticks = "<Extensions><InVMGoalStateMetaData createdOnTicks=\"x\"/></Extensions>";
        let err = parse_extensions_config(bad_ticks, None).unwrap_err();
        assert!(err.to_string().contains("createdOnTicks"), "{err}");
    }

    #[test]
    fn artifacts_profile_on_hold() {
        assert!(parse_artifacts_profile("{\"onHold\": true}").unwrap().on_hold);
        assert!(parse_artifacts_profile("{\"onHold\": \"TRUE\"}").unwrap().on_hold);
        assert!(!parse_artifacts_profile("{\"onHold\": \"false\"}").unwrap().on_hold);
        assert!(!parse_artifacts_profile("{\"onHold\": 1}").unwrap().on_hold);
        assert!(!parse_artifacts_profile("{}").unwrap().on_hold);
        assert!(parse_artifacts_profile("[]").is_err());
        assert!(parse_artifacts_profile("nope").is_err());
    }
}
