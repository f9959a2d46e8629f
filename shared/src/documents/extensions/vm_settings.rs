//! vmSettings, the HostGAPlugin's extensions goal state (Fast Track, wire.md §6.3, §7.2).
//!
//! Keys are matched case-insensitively (the HostGAPlugin is inconsistent). `publicSettings` is a
//! JSON document inside a JSON string and is decoded. A document from a HostGAPlugin older than
//! [`MIN_HOST_GA_PLUGIN_VERSION`] is [`VmSettingsDocument::NotSupported`]: the caller treats it
//! like a 404 and uses ExtensionsConfig. A document whose `extensionGoalStatesSource` is `Fabric`
//! parses with [`GoalStateSource::Fabric`]; [`super::choose`] never executes it. A problem inside
//! one entry of `extensionGoalStates` fails only that handler.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::base::secret::Secret;
use crate::documents::extensions::extensions_goal_state::{
    ticks_to_timestamp, AgentFamily, DependsOnExtension, Extension, ExtensionSettings, ExtensionState,
    ExtensionsGoalState, GoalStateChannel, GoalStateSource, HandlerConfigError, StatusBlobType,
    StatusUploadBlob, NULL_GUID,
};
use crate::documents::extensions::{DocumentError, FlexibleVersion};

const DOC: &str = "vmSettings";

/// The oldest HostGAPlugin whose vmSettings the agent uses.
pub const MIN_HOST_GA_PLUGIN_VERSION: &str = "1.0.8.133";

/// What a vmSettings body gives.
#[derive(Debug, Clone, PartialEq)]
pub enum VmSettingsDocument {
    /// A usable goal state. Check [`ExtensionsGoalState::is_fast_track`]: a `Fabric` one is not
    /// executed.
    Supported(Box<ExtensionsGoalState>),
    /// `hostGAPluginVersion` is missing or below [`MIN_HOST_GA_PLUGIN_VERSION`]: vmSettings are not
    /// supported by this host (use ExtensionsConfig; check again after 6 h).
    NotSupported { host_ga_plugin_version: Option<String> },
}

/// Case-insensitive access to a JSON object's members.
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
        .filter(|v| !v.is_null())
}

fn get_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    get(obj, key).and_then(Value::as_str)
}

/// A JSON boolean, or the strings `true`/`false`.
fn get_bool(obj: &Map<String, Value>, key: &str) -> Option<bool> {
    match get(obj, key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(s.trim().eq_ignore_ascii_case("true")),
        _ => None,
    }
}

/// A non-negative integer, or a string holding one.
fn get_u64(obj: &Map<String, Value>, key: &str) -> Option<Result<u64, String>> {
    get(obj, key).map(|v| match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("not a non-negative integer: {n}")),
        Value::String(s) => {
            s.trim().parse().map_err(|_| format!("not a non-negative integer: {:?}", super::excerpt(s)))
        }
        other => Err(format!("not an integer but {}", kind(other))),
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid(field: &str, why: impl Into<String>) -> DocumentError {
    DocumentError::Invalid { document: DOC, path: field.to_string(), why: why.into() }
}

/// Parse a vmSettings body served with `etag` (the goal state's ID becomes `etag_<etag>`).
pub fn parse_vm_settings(text: &str, etag: &str) -> Result<VmSettingsDocument, DocumentError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root: Value = serde_json::from_str(text).map_err(|e| DocumentError::json(DOC, e))?;
    let obj = root
        .as_object()
        .ok_or_else(|| invalid("(root)", format!("is {}, expected an object", kind(&root))))?;

    let hgap_version = get_str(obj, "hostGAPluginVersion").map(str::to_string);
    let supported = hgap_version
        .as_deref()
        .and_then(|v| FlexibleVersion::parse(v).ok())
        .zip(FlexibleVersion::parse(MIN_HOST_GA_PLUGIN_VERSION).ok())
        .is_some_and(|(have, min)| have >= min);
    if !supported {
        return Ok(VmSettingsDocument::NotSupported { host_ga_plugin_version: hgap_version });
    }

    let id_or_null = |key: &str| match get(obj, key) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => NULL_GUID.to_string(),
    };
    let svd_sequence_number = match get_u64(obj, "inSvdSeqNo") {
        Some(r) => r.map_err(|why| invalid("inSvdSeqNo", why))?,
        None => 0,
    };
    let created_on_ticks = match get_u64(obj, "extensionsLastModifiedTickCount") {
        Some(r) => r.map_err(|why| invalid("extensionsLastModifiedTickCount", why))?,
        None => 0,
    };
    let source = match get_str(obj, "extensionGoalStatesSource") {
        Some(s) if s.eq_ignore_ascii_case("Fabric") => GoalStateSource::Fabric,
        _ => GoalStateSource::FastTrack,
    };

    let status_upload_blob = match get(obj, "statusUploadBlob") {
        None => None,
        Some(Value::Object(b)) => {
            let url = get_str(b, "value").ok_or_else(|| DocumentError::Missing {
                document: DOC,
                path: "statusUploadBlob/value".into(),
            })?;
            Some(StatusUploadBlob {
                url: url.to_string(),
                blob_type: StatusBlobType::parse_lenient(get_str(b, "statusBlobType")),
            })
        }
        Some(other) => {
            return Err(invalid("statusUploadBlob", format!("is {}, expected an object", kind(other))))
        }
    };

    let required_features = match get(obj, "requiredFeatures") {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|f| f.as_object().and_then(|f| get_str(f, "name")).map(str::to_string))
            .collect(),
        Some(other) => {
            return Err(invalid("requiredFeatures", format!("is {}, expected an array", kind(other))))
        }
    };

    let agent_families = match get(obj, "gaFamilies") {
        None => Vec::new(),
        Some(Value::Array(list)) => {
            list.iter().enumerate().map(|(i, f)| parse_family(i, f)).collect::<Result<Vec<_>, _>>()?
        }
        Some(other) => return Err(invalid("gaFamilies", format!("is {}, expected an array", kind(other)))),
    };

    let extensions = match get(obj, "extensionGoalStates") {
        None => Vec::new(),
        Some(Value::Array(list)) => list.iter().enumerate().map(|(i, e)| parse_extension(i, e)).collect(),
        Some(other) => {
            return Err(invalid("extensionGoalStates", format!("is {}, expected an array", kind(other))))
        }
    };

    Ok(VmSettingsDocument::Supported(Box::new(ExtensionsGoalState {
        id: format!("etag_{etag}"),
        source,
        channel: GoalStateChannel::HostGAPlugin,
        svd_sequence_number,
        activity_id: id_or_null("activityId"),
        correlation_id: id_or_null("correlationId"),
        created_on_ticks,
        created_on_timestamp: ticks_to_timestamp(created_on_ticks),
        status_upload_blob,
        in_vm_artifacts_profile_blob: None,
        on_hold: get_bool(obj, "onHold").unwrap_or(false),
        required_features,
        agent_families,
        extensions,
        host_ga_plugin_version: hgap_version,
    })))
}

fn parse_family(i: usize, f: &Value) -> Result<AgentFamily, DocumentError> {
    let field = format!("gaFamilies[{i}]");
    let f = f.as_object().ok_or_else(|| invalid(&field, format!("is {}, expected an object", kind(f))))?;
    let name = get_str(f, "name")
        .ok_or_else(|| DocumentError::Missing { document: DOC, path: format!("{field}/name") })?;
    let uris = match get(f, "uris") {
        None => Vec::new(),
        Some(Value::Array(u)) => u.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(other) => {
            return Err(invalid(&format!("{field}/uris"), format!("is {}, expected an array", kind(other))))
        }
    };
    Ok(AgentFamily {
        name: name.to_string(),
        version: get_str(f, "version").map(str::to_string),
        from_version: get_str(f, "fromVersion").map(str::to_string),
        is_version_from_rsm: get_bool(f, "isVersionFromRSM"),
        is_vm_enabled_for_rsm_upgrades: get_bool(f, "isVMEnabledForRSMUpgrades"),
        uris,
    })
}

/// One entry of `extensionGoalStates`. Problems are recorded on the handler.
fn parse_extension(i: usize, e: &Value) -> Extension {
    let Some(obj) = e.as_object() else {
        let mut ext = Extension::new(format!("extensionGoalStates[{i}]"), String::new());
        ext.fail(HandlerConfigError::InvalidField {
            handler: ext.name.clone(),
            field: "(entry)".into(),
            why: format!("is {}, expected an object", kind(e)),
        });
        return ext;
    };
    let name = get_str(obj, "name").unwrap_or("").to_string();
    let version = get_str(obj, "version").unwrap_or("").to_string();
    let mut ext =
        Extension::new(if name.is_empty() { format!("extensionGoalStates[{i}]") } else { name }, version);
    let both_given = get_str(obj, "name").is_some() && get_str(obj, "version").is_some();
    let (name_field, version_field) = (
        format!("vmSettings extensionGoalStates[{i}]/name"),
        format!("vmSettings extensionGoalStates[{i}]/version"),
    );
    if both_given && ext.refuse_bad_names(&name_field, &version_field) {
        return ext;
    }
    if let Err(err) = fill_extension(&mut ext, obj) {
        ext.fail(err);
    }
    ext
}

fn fill_extension(ext: &mut Extension, obj: &Map<String, Value>) -> Result<(), HandlerConfigError> {
    let handler = ext.name.clone();
    let field_err = |field: &str, why: String| HandlerConfigError::InvalidField {
        handler: handler.clone(),
        field: field.to_string(),
        why,
    };
    for required in ["name", "version"] {
        if get_str(obj, required).is_none() {
            return Err(field_err(required, "is missing or not a string".into()));
        }
    }
    let state_text =
        get_str(obj, "state").ok_or_else(|| field_err("state", "is missing or not a string".into()))?;
    let state = ExtensionState::parse(state_text).ok_or_else(|| HandlerConfigError::InvalidState {
        handler: handler.clone(),
        state: super::excerpt(state_text),
    })?;
    ext.state = Some(state);
    ext.is_multi_config = get_bool(obj, "isMultiConfig").unwrap_or(false);
    ext.encoded_signature = get_str(obj, "encodedSignature").unwrap_or("").to_string();
    for key in ["location", "failoverLocation"] {
        if let Some(uri) = get_str(obj, key) {
            ext.manifest_uris.push(uri.to_string());
        }
    }
    match get(obj, "additionalLocations") {
        None => {}
        Some(Value::Array(list)) => {
            ext.manifest_uris.extend(list.iter().filter_map(Value::as_str).map(str::to_string))
        }
        Some(other) => {
            return Err(field_err("additionalLocations", format!("is {}, expected an array", kind(other))))
        }
    }

    let settings = match get(obj, "settings") {
        None => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(other) => return Err(field_err("settings", format!("is {}, expected an array", kind(other)))),
    };
    if !ext.is_multi_config && settings.len() > 1 {
        return Err(HandlerConfigError::MultipleSettingsSingleConfig { handler, count: settings.len() });
    }
    for (j, s) in settings.iter().enumerate() {
        let here = format!("settings[{j}]");
        let s =
            s.as_object().ok_or_else(|| field_err(&here, format!("is {}, expected an object", kind(s))))?;
        let public_settings = match get(s, "publicSettings") {
            None => None,
            Some(Value::String(text)) => Some(serde_json::from_str::<Value>(text).map_err(|e| {
                HandlerConfigError::InvalidPublicSettings { handler: handler.clone(), reason: e.to_string() }
            })?),
            // Tolerate an already-decoded object.
            Some(v) => Some(v.clone()),
        };
        let protected_settings = get_str(s, "protectedSettings").map(|p| Secret::new(p.to_string()));
        let certificate_thumbprint = get_str(s, "protectedSettingsCertThumbprint").map(str::to_string);
        if protected_settings.is_some() && certificate_thumbprint.is_none() {
            return Err(HandlerConfigError::MissingThumbprint { handler });
        }
        let (name, sequence_number, settings_state) = if ext.is_multi_config {
            let name = get_str(s, "extensionName").ok_or_else(|| {
                field_err(&format!("{here}/extensionName"), "is missing or not a string".into())
            })?;
            ext.check_extension_name(name, &format!("vmSettings {here}/extensionName"))?;
            let seq = get_u64(s, "seqNo")
                .ok_or_else(|| field_err(&format!("{here}/seqNo"), "is missing".into()))?
                .map_err(|why| field_err(&format!("{here}/seqNo"), why))?;
            let st_text = get_str(s, "extensionState").ok_or_else(|| {
                field_err(&format!("{here}/extensionState"), "is missing or not a string".into())
            })?;
            let st = ExtensionState::parse(st_text).ok_or_else(|| HandlerConfigError::InvalidState {
                handler: name.to_string(),
                state: super::excerpt(st_text),
            })?;
            (name.to_string(), seq, st)
        } else {
            let seq = get_u64(obj, "settingsSeqNo")
                .ok_or_else(|| field_err("settingsSeqNo", "is missing".into()))?
                .map_err(|why| field_err("settingsSeqNo", why))?;
            (ext.name.clone(), seq, state)
        };
        ext.settings.push(ExtensionSettings {
            name,
            sequence_number,
            state: settings_state,
            public_settings,
            protected_settings,
            certificate_thumbprint,
            dependency_level: 0,
            depends_on: Vec::new(),
            settings_unparsable: false,
        });
    }

    match get(obj, "dependsOn") {
        None => Ok(()),
        Some(Value::Array(list)) => apply_depends_on(ext, list),
        Some(other) => Err(field_err("dependsOn", format!("is {}, expected an array", kind(other)))),
    }
}

fn apply_depends_on(ext: &mut Extension, list: &[Value]) -> Result<(), HandlerConfigError> {
    if list.is_empty() {
        return Ok(());
    }
    let handler = ext.name.clone();
    let mut parsed = Vec::new();
    for (k, d) in list.iter().enumerate() {
        let field = format!("dependsOn[{k}]");
        let d = d.as_object().ok_or_else(|| HandlerConfigError::InvalidField {
            handler: handler.clone(),
            field: field.clone(),
            why: format!("is {}, expected an object", kind(d)),
        })?;
        let level = match get(d, "dependencyLevel") {
            None => 0,
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
            Some(_) => 0,
        };
        let deps: Vec<DependsOnExtension> = get(d, "dependsOnExtension")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_object)
                    .filter_map(|x| {
                        get_str(x, "handler").map(|h| DependsOnExtension {
                            handler: h.to_string(),
                            extension: get_str(x, "extension").map(str::to_string),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        parsed.push((get_str(d, "name").map(str::to_string), level, deps));
    }
    if !ext.is_multi_config {
        if parsed.len() != 1 {
            return Err(HandlerConfigError::DependsOnCount { handler, count: parsed.len() });
        }
        // A handler without settings has nothing to order (waagent ignores its dependsOn).
        if let (Some(s), Some((_, level, deps))) = (ext.settings.first_mut(), parsed.pop()) {
            s.dependency_level = level;
            s.depends_on = deps;
        }
        return Ok(());
    }
    // Settings found by name through a map (the first of each name, as a search from the start
    // would): a search per dependsOn entry would be quadratic.
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, s) in ext.settings.iter().enumerate() {
        index.entry(s.name.clone()).or_insert(i);
    }
    for (name, level, deps) in parsed {
        let name = name.unwrap_or_default();
        let Some(&i) = index.get(&name) else {
            let settings = ext.settings.iter().map(|s| s.name.clone()).collect();
            return Err(HandlerConfigError::UnknownDependency { name, settings });
        };
        let s = &mut ext.settings[i];
        s.dependency_level = level;
        s.depends_on = deps;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ExtensionsGoalState {
        match parse_vm_settings(text, "123").unwrap() {
            VmSettingsDocument::Supported(g) => *g,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn version_gate_and_source() {
        let old = parse_vm_settings("{\"hostGAPluginVersion\":\"1.0.8.132\"}", "e").unwrap();
        assert_eq!(
            old,
            VmSettingsDocument::NotSupported { host_ga_plugin_version: Some("1.0.8.132".into()) }
        );
        assert!(matches!(parse_vm_settings("{}", "e").unwrap(), VmSettingsDocument::NotSupported { .. }));
        let g = parse("{\"HOSTGAPLUGINVERSION\":\"1.0.8.140\",\"extensionGoalStatesSource\":\"Fabric\"}");
        assert_eq!(g.source, GoalStateSource::Fabric);
        assert_eq!(g.id, "etag_123");
        assert_eq!(g.activity_id, NULL_GUID);
        let g = parse("{\"hostGAPluginVersion\":\"1.0.8.133\"}");
        assert!(g.is_fast_track());
    }

    #[test]
    fn handler_problems_stay_with_the_handler() {
        let doc = r#"{"hostGAPluginVersion":"1.0.8.133","extensionGoalStates":[
            {"name":"P.Good","version":"1","state":"enabled","settingsSeqNo":3,
             "settings":[{"publicSettings":"{\"a\":1}","protectedSettings":"S3CRET","protectedSettingsCertThumbprint":"T"}],
             "dependsOn":[{"dependsOnExtension":[{"handler":"X"}],"dependencyLevel":2}]},
            {"name":"P.NoThumb","version":"1","state":"enabled","settingsSeqNo":0,"settings":[{"protectedSettings":"S3CRET"}]},
            {"name":"P.Two","version":"1","state":"enabled","settingsSeqNo":0,"settings":[{},{}]},
            {"name":"P.BadJson","version":"1","state":"enabled","settingsSeqNo":0,"settings":[{"publicSettings":"{oops"}]},
            {"name":"P.BadState","version":"1","state":"running"},
            {"name":"P.Mc","version":"1","state":"enabled","isMultiConfig":true,
             "settings":[{"extensionName":"e1","seqNo":1,"extensionState":"disabled"}],
             "dependsOn":[{"name":"nope","dependencyLevel":1}]},
            7
        ]}"#;
        let g = parse(doc);
        let e = &g.extensions;
        assert_eq!(e[0].failure, None);
        assert_eq!(e[0].settings[0].sequence_number, 3);
        assert_eq!(e[0].settings[0].dependency_level, 2);
        assert_eq!(e[0].settings[0].public_settings, Some(serde_json::json!({"a": 1})));
        assert!(matches!(e[1].failure, Some(HandlerConfigError::MissingThumbprint { .. })));
        assert!(matches!(
            e[2].failure,
            Some(HandlerConfigError::MultipleSettingsSingleConfig { count: 2, .. })
        ));
        assert!(matches!(e[3].failure, Some(HandlerConfigError::InvalidPublicSettings { .. })));
        assert!(matches!(e[4].failure, Some(HandlerConfigError::InvalidState { .. })));
        assert!(matches!(e[5].failure, Some(HandlerConfigError::UnknownDependency { .. })));
        assert!(e[6].failure.is_some());
        for x in e {
            if let Some(f) = &x.failure {
                assert!(!f.to_string().contains("S3CRET"));
                assert!(x.settings.is_empty());
            }
        }
        assert!(!format!("{g:?}").contains("S3CRET"));
    }

    /// Issue #21, the vmSettings side: the same names fail their handler alone.
    #[test]
    fn hostile_names_and_versions_fail_only_their_handler() {
        let doc = r#"{"hostGAPluginVersion":"1.0.8.133","extensionGoalStates":[
            {"name":"../../../../ESCAPED.Ext","version":"1.0","state":"enabled"},
            {"name":"X;id>INJECTED;#","version":"1.0","state":"enabled"},
            {"name":"Pub.Ver","version":"1.0; id","state":"enabled"},
            {"name":"Pub.Multi","version":"1.0","state":"enabled","isMultiConfig":true,
             "settings":[{"extensionName":"../x","seqNo":1,"extensionState":"enabled"}]},
            {"name":"Microsoft.OSTCExtensions.VMAccessForLinux","version":"1.5.11","state":"enabled"}
        ]}"#;
        let g = parse(doc);
        let failure =
            |i: usize| g.extensions[i].failure.as_ref().map(ToString::to_string).unwrap_or_default();
        for (i, field) in [
            (0, "vmSettings extensionGoalStates[0]/name is not a valid handler name"),
            (1, "vmSettings extensionGoalStates[1]/name is not a valid handler name"),
            (2, "vmSettings extensionGoalStates[2]/version is not a valid version"),
            (3, "vmSettings settings[0]/extensionName is not a valid extension name"),
        ] {
            let f = failure(i);
            assert!(f.starts_with(&format!("Plugin {:?} is refused: ", g.extensions[i].name)), "{f}");
            assert!(f.contains(field), "{i}: {f}");
        }
        assert_eq!(g.extensions[4].failure, None);
    }

    #[test]
    fn document_errors() {
        assert!(matches!(parse_vm_settings("[", "e"), Err(DocumentError::Json { .. })));
        assert!(matches!(parse_vm_settings("[]", "e"), Err(DocumentError::Invalid { .. })));
        let bad = "{\"hostGAPluginVersion\":\"1.0.8.133\",\"extensionGoalStates\":{}}";
        assert!(parse_vm_settings(bad, "e").unwrap_err().to_string().contains("extensionGoalStates"));
        let no_value = "{\"hostGAPluginVersion\":\"1.0.8.133\",\"statusUploadBlob\":{}}";
        assert!(matches!(parse_vm_settings(no_value, "e"), Err(DocumentError::Missing { .. })));
    }
}
