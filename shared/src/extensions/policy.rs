//! waagent's extension policy: with `Debug.EnableExtensionPolicy=y` and a file at
//! `Policy.PolicyFilePath` (`/etc/waagent_policy.json`), only the extensions the policy allows are
//! downloaded and run. The file, as waagent reads it (policy version up to 0.1.0):
//!
//! ```json
//! {
//!   "policyVersion": "0.1.0",
//!   "extensionPolicies": {
//!     "allowListedExtensionsOnly": true,
//!     "signatureRequired": false,
//!     "extensions": {
//!       "Microsoft.Azure.Extensions.CustomScript": {"signatureRequired": false, "runtimePolicy": {}}
//!     }
//!   }
//! }
//! ```
//!
//! `policyVersion` is required; everything else is optional (`false`, `false`, no extensions).
//! An unknown attribute, a value of the wrong JSON type or a newer policy version makes the whole
//! file invalid: then no extension is processed, and each reports why (waagent's messages).
//! Extension names are matched without regard to case. `signatureRequired` is read and checked
//! but not acted on: like waagent, wala does not enforce signatures.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::base::root::HostRoot;
use crate::documents::conf::Config;
use crate::documents::extensions::extensions_goal_state::ExtensionState;
use crate::documents::extensions::FlexibleVersion;
use crate::extensions::lifecycle::Failure;

/// The newest `policyVersion` understood.
pub const MAX_SUPPORTED_POLICY_VERSION: &str = "0.1.0";
/// A policy file larger than this is invalid (waagent has no limit).
pub const MAX_POLICY_FILE_SIZE: u64 = 1024 * 1024;
/// Status codes of a refused extension (waagent's `PluginEnableProcessingFailed` and, for
/// uninstall and disable, `PluginDisableProcessingFailed`).
pub const CODE_ENABLE_REFUSED: i64 = 1009;
pub const CODE_UNINSTALL_REFUSED: i64 = 1010;

/// One extension's entry in `extensionPolicies.extensions`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtensionPolicy {
    pub signature_required: Option<bool>,
    /// Arbitrary, for the extension itself.
    pub runtime_policy: Option<Value>,
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub policy_version: String,
    pub allow_listed_extensions_only: bool,
    pub signature_required: bool,
    /// Keyed by lower-case name.
    pub extensions: BTreeMap<String, ExtensionPolicy>,
}

impl Policy {
    /// Whether the extension (handler) `name` may be processed.
    pub fn allows(&self, name: &str) -> bool {
        !self.allow_listed_extensions_only || self.extensions.contains_key(&name.to_ascii_lowercase())
    }

    /// Whether the policy asks for `name`'s signature to be checked (its own setting first).
    pub fn signature_required(&self, name: &str) -> bool {
        self.extensions
            .get(&name.to_ascii_lowercase())
            .and_then(|e| e.signature_required)
            .unwrap_or(self.signature_required)
    }
}

/// Python's name of a JSON value's type, as waagent's messages show it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn check_attributes(obj: &Map<String, Value>, object_name: &str, valid: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !valid.contains(&k.as_str())) {
        Some(k) => Err(format!("unrecognized attribute '{k}' in {object_name}")),
        None => Ok(()),
    }
}

/// `obj[attribute]`, `None` when absent or null (as waagent).
fn get<'v>(obj: &'v Map<String, Value>, attribute: &str) -> Option<&'v Value> {
    obj.get(attribute).filter(|v| !v.is_null())
}

fn wrong_type(v: &Value, name: &str, expected: &str) -> String {
    format!("invalid type {} for attribute '{name}'; must be '{expected}'", type_name(v))
}

fn get_bool(obj: &Map<String, Value>, attribute: &str, prefix: &str) -> Result<Option<bool>, String> {
    match get(obj, attribute) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(wrong_type(v, &format!("{prefix}{attribute}"), "boolean")),
    }
}

fn get_object<'v>(
    obj: &'v Map<String, Value>,
    attribute: &str,
    prefix: &str,
) -> Result<Option<&'v Map<String, Value>>, String> {
    match get(obj, attribute) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => Err(wrong_type(v, &format!("{prefix}{attribute}"), "object")),
    }
}

/// Parse a policy file. The error is waagent's reason text (what follows "please correct the
/// following error: ").
pub fn parse_policy(text: &str) -> Result<Policy, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let v: Value = serde_json::from_str(text).map_err(|_| {
        format!(
            "policy file does not conform to valid json syntax. File contents: {}",
            crate::documents::extensions::excerpt(text)
        )
    })?;
    let Value::Object(policy) = &v else {
        return Err(format!("expected an object describing a Policy; got {}.", type_name(&v)));
    };
    check_attributes(policy, "policy", &["policyVersion", "extensionPolicies"])?;
    let version = match get(policy, "policyVersion") {
        None => return Err("missing required attribute 'policyVersion'".into()),
        Some(Value::String(s)) => s.clone(),
        Some(v) => return Err(wrong_type(v, "policyVersion", "string")),
    };
    let parts: Vec<&str> = version.split('.').collect();
    let well_formed =
        parts.len() <= 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let parsed = FlexibleVersion::parse(&version).ok().filter(|_| well_formed).ok_or_else(|| {
        format!(
            "invalid value for attribute 'policyVersion': '{}'; it should be in format 'major[.minor[.patch]]' (e.g., '1', '1.0', '1.0.0')",
            crate::documents::extensions::excerpt(&version)
        )
    })?;
    let max = FlexibleVersion::parse(MAX_SUPPORTED_POLICY_VERSION).unwrap_or_else(|_| parsed.clone());
    if parsed > max {
        return Err(format!(
            "policy version '{version}' is not supported. The agent supports policy versions up to '{MAX_SUPPORTED_POLICY_VERSION}'."
        ));
    }
    let mut out = Policy { policy_version: version, ..Policy::default() };
    let Some(ext_policies) = get_object(policy, "extensionPolicies", "")? else { return Ok(out) };
    let prefix = "extensionPolicies.";
    check_attributes(
        ext_policies,
        "extensionPolicies",
        &["allowListedExtensionsOnly", "signatureRequired", "extensions"],
    )?;
    out.allow_listed_extensions_only =
        get_bool(ext_policies, "allowListedExtensionsOnly", prefix)?.unwrap_or(false);
    out.signature_required = get_bool(ext_policies, "signatureRequired", prefix)?.unwrap_or(false);
    let Some(extensions) = get_object(ext_policies, "extensions", prefix)? else { return Ok(out) };
    for (name, entry) in extensions {
        let attr = format!("extensionPolicies.extensions.{name}");
        let Value::Object(entry) = entry else {
            return Err(format!(
                "invalid type {} for attribute '{attr}'; must be 'object'",
                type_name(entry)
            ));
        };
        check_attributes(entry, &attr, &["signatureRequired", "runtimePolicy"])?;
        let e = ExtensionPolicy {
            signature_required: get_bool(entry, "signatureRequired", &format!("{attr}."))?,
            runtime_policy: get(entry, "runtimePolicy").cloned(),
        };
        out.extensions.insert(name.to_ascii_lowercase(), e);
    }
    Ok(out)
}

/// The policy in force for one goal state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// `Debug.EnableExtensionPolicy=n`, or no policy file: everything is allowed.
    Off,
    On(Policy),
    /// The file is invalid: nothing is processed. The message is waagent's whole text.
    Invalid(String),
}

impl Engine {
    /// The policy for `config`, read from under `root`.
    pub fn load(root: &HostRoot, config: &Config) -> Self {
        if !config.debug_enable_extension_policy {
            return Self::Off;
        }
        let shown = config.policy_file_path.as_path().display().to_string();
        let path = root.path(config.policy_file_path.as_path());
        if !path.exists() {
            return Self::Off;
        }
        let engine = match read_policy(&path).and_then(|text| parse_policy(&text)) {
            Ok(policy) => {
                log::info!("Enforcing policy using policy file found at '{shown}'.");
                Self::On(policy)
            }
            Err(why) => Self::Invalid(format!(
                "Customer-provided policy file ('{shown}') is invalid, please correct the following error: {why}"
            )),
        };
        if let Self::Invalid(m) = &engine {
            log::error!("{m}");
        }
        engine
    }

    /// Why `name`, requested in `state`, must not be processed; `None` when it may be.
    pub fn refusal(&self, name: &str, state: Option<ExtensionState>, config: &Config) -> Option<Failure> {
        let (operation, code) = match state {
            Some(ExtensionState::Uninstall | ExtensionState::Disabled) => {
                ("uninstall", CODE_UNINSTALL_REFUSED)
            }
            _ => ("run", CODE_ENABLE_REFUSED),
        };
        let message = match self {
            Self::Off => return None,
            Self::On(p) if p.allows(name) => return None,
            Self::On(_) => format!(
                "Extension will not be processed: failed to {operation} extension '{name}' because it is not specified as an allowed extension. To {operation}, add the extension to the list of allowed extensions in the policy file ('{}').",
                config.policy_file_path.as_path().display()
            ),
            Self::Invalid(why) => format!("Extension will not be processed: {why}"),
        };
        Some(Failure { code, message })
    }
}

fn read_policy(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("unable to read or load policy file: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("unable to read or load policy file: {e}"))?;
    if bytes.len() as u64 > MAX_POLICY_FILE_SIZE {
        return Err(format!("unable to read or load policy file: larger than {MAX_POLICY_FILE_SIZE} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "unable to read or load policy file: not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_policy_and_defaults() {
        let p = parse_policy(
            r#"{"policyVersion":"0.1.0","extensionPolicies":{"allowListedExtensionsOnly":true,"signatureRequired":true,
                "extensions":{"Microsoft.Azure.Extensions.CustomScript":{"signatureRequired":false,"runtimePolicy":{"x":[1]}},
                              "Contoso.Other":{}}}}"#,
        )
        .unwrap();
        assert!(p.allows("microsoft.azure.extensions.customscript"));
        assert!(p.allows("CONTOSO.OTHER"));
        assert!(!p.allows("Contoso.Third"));
        assert!(!p.signature_required("Microsoft.Azure.Extensions.CustomScript"), "its own setting wins");
        assert!(p.signature_required("Contoso.Other"), "the global one otherwise");
        let minimal = parse_policy(r#"{"policyVersion":"0.1"}"#).unwrap();
        assert!(minimal.allows("Anything.At.All"));
        assert!(!minimal.signature_required("Anything.At.All"));
        let nulls = parse_policy(r#"{"policyVersion":"1","extensionPolicies":null}"#);
        assert!(nulls.unwrap_err().contains("not supported"), "1 > 0.1.0");
    }

    #[test]
    fn hostile_and_malformed_policies_are_refused_with_waagents_reasons() {
        let cases: &[(&str, &str)] = &[
            ("", "policy file does not conform to valid json syntax. File contents: "),
            ("{", "policy file does not conform to valid json syntax"),
            ("[]", "expected an object describing a Policy; got list."),
            ("{}", "missing required attribute 'policyVersion'"),
            (r#"{"policyVersion":1}"#, "invalid type int for attribute 'policyVersion'; must be 'string'"),
            (r#"{"policyVersion":"1.0.0.0"}"#, "invalid value for attribute 'policyVersion': '1.0.0.0'"),
            (r#"{"policyVersion":"-1"}"#, "invalid value for attribute 'policyVersion'"),
            (r#"{"policyVersion":"0.2.0"}"#, "policy version '0.2.0' is not supported"),
            (r#"{"policyVersion":"0.1.0","extra":1}"#, "unrecognized attribute 'extra' in policy"),
            (
                r#"{"policyVersion":"0.1.0","extensionPolicies":[]}"#,
                "invalid type list for attribute 'extensionPolicies'; must be 'object'",
            ),
            (
                r#"{"policyVersion":"0.1.0","extensionPolicies":{"allowListedExtensionsOnly":"true"}}"#,
                "invalid type str for attribute 'extensionPolicies.allowListedExtensionsOnly'; must be 'boolean'",
            ),
            (
                r#"{"policyVersion":"0.1.0","extensionPolicies":{"extensions":{"A.B":true}}}"#,
                "invalid type bool for attribute 'extensionPolicies.extensions.A.B'; must be 'object'",
            ),
            (
                r#"{"policyVersion":"0.1.0","extensionPolicies":{"extensions":{"A.B":{"signatureRequired":1.5}}}}"#,
                "invalid type float for attribute 'extensionPolicies.extensions.A.B.signatureRequired'",
            ),
            (
                r#"{"policyVersion":"0.1.0","extensionPolicies":{"extensions":{"A.B":{"allowed":true}}}}"#,
                "unrecognized attribute 'allowed' in extensionPolicies.extensions.A.B",
            ),
        ];
        for (text, want) in cases {
            let got = parse_policy(text).expect_err(text);
            assert!(got.starts_with(want), "{text}: {got}");
        }
        let long = format!("{{\"policyVersion\": \"{}\"", "9".repeat(5000));
        assert!(parse_policy(&long).unwrap_err().len() < 300, "the file is echoed as an excerpt");
        let huge = format!(r#"{{"policyVersion":"{}"}}"#, "1".repeat(100));
        assert!(parse_policy(&huge).unwrap_err().starts_with("invalid value"), "too large a number");
    }

    #[test]
    fn the_engine_reads_the_file_only_when_switched_on_and_refuses_with_waagents_messages() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let file = dir.path().join("etc/waagent_policy.json");
        std::fs::write(
            &file,
            r#"{"policyVersion":"0.1.0","extensionPolicies":{"allowListedExtensionsOnly":true}}"#,
        )
        .unwrap();
        let mut config = Config::default();
        assert_eq!(Engine::load(&root, &config), Engine::Off, "off by default, as waagent");
        config.debug_enable_extension_policy = true;
        let engine = Engine::load(&root, &config);
        let f = engine.refusal("Contoso.Ext", Some(ExtensionState::Enabled), &config).unwrap();
        assert_eq!(f.code, 1009);
        assert_eq!(
            f.message,
            "Extension will not be processed: failed to run extension 'Contoso.Ext' because it is not specified as an allowed extension. To run, add the extension to the list of allowed extensions in the policy file ('/etc/waagent_policy.json')."
        );
        let f = engine.refusal("Contoso.Ext", Some(ExtensionState::Uninstall), &config).unwrap();
        assert_eq!(f.code, 1010);
        assert!(f.message.contains("failed to uninstall extension"));
        std::fs::write(&file, vec![b' '; MAX_POLICY_FILE_SIZE as usize + 1]).unwrap();
        let Engine::Invalid(m) = Engine::load(&root, &config) else { panic!("a huge file is invalid") };
        assert!(
            m.starts_with("Customer-provided policy file ('/etc/waagent_policy.json') is invalid"),
            "{m}"
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(Engine::load(&root, &config), Engine::Off, "no file, no policy (waagent)");
    }
}
