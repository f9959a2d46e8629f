//! `HandlerManifest.json`, shipped in an extension's package (wire.md §9.1).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::documents::extensions::DocumentError;

const DOC: &str = "HandlerManifest.json";

/// Whether an update runs the new version's install command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum UpdateMode {
    UpdateWithInstall,
    UpdateWithoutInstall,
}

/// `signingInfo`: checked against the handler name and version after signature validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SigningInfo {
    pub r#type: Option<String>,
    pub publisher: Option<String>,
    pub version: Option<String>,
}

/// What the agent uses from `HandlerManifest.json` (element 0 of the array).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandlerManifest {
    pub name: Option<String>,
    pub install_command: String,
    pub uninstall_command: String,
    pub update_command: String,
    pub enable_command: String,
    pub disable_command: String,
    /// `reportHeartbeat`: read `heartbeat.log`.
    pub report_heartbeat: bool,
    pub continue_on_update_failure: bool,
    /// `supportsMultipleExtensions`: required for a multi-config handler.
    pub supports_multiple_extensions: bool,
    /// `updateMode`: absent or `UpdateWithInstall` (any case) means with install; any other
    /// value means without (as waagent).
    pub update_mode: UpdateMode,
    /// `resourceLimits`, kept as JSON (cgroup quotas).
    pub resource_limits: Option<Value>,
    pub signing_info: Option<SigningInfo>,
    /// Problems that did not fail the parse (waagent sends them as `ExtensionHandlerManifest`
    /// events), e.g. `'reportHeartbeat' has a non-boolean value [invalid]; using false`.
    pub warnings: Vec<String>,
}

/// Parse `HandlerManifest.json` (a UTF-8 BOM is skipped). The five commands are required.
pub fn parse_handler_manifest(text: &str) -> Result<HandlerManifest, DocumentError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let v: Value = serde_json::from_str(text).map_err(|e| DocumentError::json(DOC, e))?;
    let first = match &v {
        Value::Array(items) => {
            items.first().ok_or_else(|| DocumentError::Missing { document: DOC, path: "[0]".into() })?
        }
        other => other,
    };
    let top = first.as_object().ok_or_else(|| DocumentError::Invalid {
        document: DOC,
        path: "[0]".into(),
        why: "not a JSON object".into(),
    })?;
    let hm = match top.get("handlerManifest") {
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(DocumentError::Invalid {
                document: DOC,
                path: "[0]/handlerManifest".into(),
                why: "not a JSON object".into(),
            })
        }
        None => return Err(DocumentError::Missing { document: DOC, path: "[0]/handlerManifest".into() }),
    };
    let command = |key: &str| match hm.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(DocumentError::Invalid {
            document: DOC,
            path: format!("[0]/handlerManifest/{key}"),
            why: "not a string".into(),
        }),
        None => Err(DocumentError::Missing { document: DOC, path: format!("[0]/handlerManifest/{key}") }),
    };
    let mut warnings = Vec::new();
    let mut flag = |key: &str| boolean(hm, key, &mut warnings);
    let report_heartbeat = flag("reportHeartbeat");
    let continue_on_update_failure = flag("continueOnUpdateFailure");
    let supports_multiple_extensions = flag("supportsMultipleExtensions");
    let update_mode = match hm.get("updateMode").and_then(Value::as_str) {
        None => UpdateMode::UpdateWithInstall,
        Some(m) if m.eq_ignore_ascii_case("UpdateWithInstall") => UpdateMode::UpdateWithInstall,
        Some(_) => UpdateMode::UpdateWithoutInstall,
    };
    let signing_info = top.get("signingInfo").and_then(Value::as_object).map(|s| {
        let f = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_string);
        SigningInfo { r#type: f("type"), publisher: f("publisher"), version: f("version") }
    });
    Ok(HandlerManifest {
        name: top.get("name").and_then(Value::as_str).map(str::to_string),
        install_command: command("installCommand")?,
        uninstall_command: command("uninstallCommand")?,
        update_command: command("updateCommand")?,
        enable_command: command("enableCommand")?,
        disable_command: command("disableCommand")?,
        report_heartbeat,
        continue_on_update_failure,
        supports_multiple_extensions,
        update_mode,
        resource_limits: top.get("resourceLimits").filter(|v| !v.is_null()).cloned(),
        signing_info,
        warnings,
    })
}

/// An optional boolean: `true`/`false`, or those strings in any case. Anything else is false,
/// with a warning (waagent's behaviour).
fn boolean(m: &Map<String, Value>, key: &str, warnings: &mut Vec<String>) -> bool {
    match m.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(other) => {
            let shown: String = other.to_string().chars().take(40).collect();
            warnings.push(format!("'{key}' has a non-boolean value [{shown}]; using false"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""installCommand":"i","uninstallCommand":"u","updateCommand":"up","enableCommand":"e","disableCommand":"d""#;

    #[test]
    fn flags_modes_and_warnings() {
        let m = parse_handler_manifest(&format!(
            "\u{feff}[{{\"name\":\"X\",\"handlerManifest\":{{{BASE},\"reportHeartbeat\":\"TRUE\",\"continueOnUpdateFailure\":5,\"updateMode\":\"UpdateWithoutInstall\"}}}}]"
        ))
        .unwrap();
        assert!(m.report_heartbeat);
        assert!(!m.continue_on_update_failure);
        assert!(!m.supports_multiple_extensions);
        assert_eq!(m.update_mode, UpdateMode::UpdateWithoutInstall);
        assert_eq!(m.warnings.len(), 1);
        assert!(m.warnings[0].starts_with("'continueOnUpdateFailure' has a non-boolean value"));
        assert_eq!(m.enable_command, "e");
    }

    #[test]
    fn missing_commands_are_named() {
        let err = parse_handler_manifest(r#"[{"handlerManifest":{"installCommand":"i"}}]"#).unwrap_err();
        assert!(err.to_string().contains("uninstallCommand"), "{err}");
        assert!(parse_handler_manifest("[]").is_err());
        assert!(parse_handler_manifest("[1]").is_err());
        assert!(parse_handler_manifest("{").is_err());
    }
}
