//! Status written by extensions — `status/<seq>.status` (wire.md §9.4) and `heartbeat.log`
//! (§9.5) — and the aggregate status document the agent uploads (§11.2).

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::documents::extensions::DocumentError;

/// Status files above this size get their messages truncated and substatus dropped.
pub const MAX_STATUS_FILE_SIZE: usize = 128 * 1024;
/// Length a message is cut to in an oversized status file.
pub const MAX_STATUS_MESSAGE_LENGTH: usize = 1024;
/// Length substatus names and messages are cut to in an oversized status file.
pub const MAX_SUBSTATUS_FIELD_LENGTH: usize = 10 * 1024;
/// Appended to a truncated field.
pub const TRUNCATED_SUFFIX: &str = " ... [TRUNCATED]";
/// `PluginSettingsStatusInvalid`: the code reported for an invalid status file.
pub const CODE_STATUS_INVALID: i64 = 1012;
/// A heartbeat file older than this means the extension is unresponsive.
pub const HEARTBEAT_MAX_AGE: Duration = Duration::from_secs(600);

/// The status values an extension may report; anything else is read as `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusValue {
    Transitioning,
    Warning,
    Error,
    Success,
}

impl StatusValue {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "transitioning" => Some(StatusValue::Transitioning),
            "warning" => Some(StatusValue::Warning),
            "error" => Some(StatusValue::Error),
            "success" => Some(StatusValue::Success),
            _ => None,
        }
    }
}

/// One substatus entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubStatus {
    pub name: Option<String>,
    pub status: StatusValue,
    pub code: i64,
    pub message: Option<String>,
}

/// What the agent reads from an extension's status file (element 0 of the array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionStatus {
    pub name: Option<String>,
    pub operation: Option<String>,
    pub configuration_applied_time: Option<String>,
    pub status: StatusValue,
    pub code: i64,
    /// `formattedMessage.message`.
    pub message: Option<String>,
    pub substatus: Vec<SubStatus>,
    /// Set when the file was over [`MAX_STATUS_FILE_SIZE`] and was cut down.
    pub truncated: bool,
}

/// Why a status file could not be used. [`StatusFileError::to_status`] gives the status waagent
/// reports instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusFileError {
    /// Not JSON. `excerpt` is the start of the file (up to 2000 characters).
    #[error("{reason} \n First 2000 Bytes of status file:\n {excerpt}")]
    InvalidJson { reason: String, excerpt: String },
    /// JSON, but not the status format.
    #[error("Invalid status format by extension: {reason}")]
    Malformed { reason: String },
}

impl StatusFileError {
    /// The status reported for this handler: `error`, code 1012, with waagent's message.
    /// `full_name` is `<Handler>-<Version>`.
    pub fn to_status(&self, full_name: &str, sequence_number: u64) -> ExtensionStatus {
        let message = match self {
            StatusFileError::InvalidJson { .. } => format!(
                "The status reported by the extension {full_name}(Sequence number {sequence_number}), was in an incorrect format and the agent could not parse it correctly. Failed due to {self}"
            ),
            StatusFileError::Malformed { .. } => format!(
                "Could not get a valid status from the extension {full_name}. Encountered the following error: {self}"
            ),
        };
        ExtensionStatus {
            name: None,
            operation: None,
            configuration_applied_time: None,
            status: StatusValue::Error,
            code: CODE_STATUS_INVALID,
            message: Some(message),
            substatus: Vec::new(),
            truncated: false,
        }
    }
}

fn malformed(reason: impl Into<String>) -> StatusFileError {
    StatusFileError::Malformed { reason: reason.into() }
}

/// A code as an integer: a JSON integer, a float (truncated) or a numeric string; else 0.
fn code_of(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

fn str_of(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    }
}

/// `formattedMessage`: when present (not null) it needs `lang` and `message`.
fn formatted_message(v: Option<&Value>, path: &str) -> Result<Option<String>, StatusFileError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            for key in ["lang", "message"] {
                if !m.contains_key(key) {
                    return Err(malformed(format!("Missing {path}/formattedMessage/{key} key")));
                }
            }
            Ok(str_of(m.get("message")))
        }
        Some(_) => Err(malformed(format!("{path}/formattedMessage is not an object"))),
    }
}

/// Parse the bytes of a status file. `Ok(None)` for an empty array or `null` (nothing
/// reported). An oversized file is accepted, cut down as waagent does.
pub fn parse_status_file(bytes: &[u8]) -> Result<Option<ExtensionStatus>, StatusFileError> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let data: Value = serde_json::from_str(text).map_err(|e| StatusFileError::InvalidJson {
        reason: e.to_string(),
        excerpt: text.chars().take(2000).collect(),
    })?;
    let list = match &data {
        Value::Null => return Ok(None),
        Value::Array(list) => list,
        other => {
            let shown: String = other.to_string().chars().take(4096).collect();
            return Err(malformed(format!("The extension status must be an array: {shown}")));
        }
    };
    let Some(first) = list.first() else { return Ok(None) };
    let top = first.as_object().ok_or_else(|| malformed("status[0] is not an object"))?;
    let status_obj = match top.get("status") {
        Some(Value::Object(s)) => s,
        Some(_) => return Err(malformed("status is not an object")),
        None => return Err(malformed("Missing status key")),
    };
    let status_text = status_obj.get("status").ok_or_else(|| malformed("Missing status/status key"))?;
    let status = status_text.as_str().and_then(StatusValue::parse).unwrap_or(StatusValue::Error);
    let mut substatus = Vec::new();
    match status_obj.get("substatus") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items.iter().filter(|i| !i.is_null()) {
                substatus.push(parse_substatus(item)?);
            }
        }
        Some(_) => return Err(malformed("status/substatus is not an array")),
    }
    let mut out = ExtensionStatus {
        name: str_of(status_obj.get("name")),
        operation: str_of(status_obj.get("operation")),
        configuration_applied_time: str_of(status_obj.get("configurationAppliedTime")),
        status,
        code: code_of(status_obj.get("code")),
        message: formatted_message(status_obj.get("formattedMessage"), "status")?,
        substatus,
        truncated: false,
    };
    if bytes.len() > MAX_STATUS_FILE_SIZE {
        truncate(&mut out);
    }
    Ok(Some(out))
}

fn parse_substatus(item: &Value) -> Result<SubStatus, StatusFileError> {
    let m: &Map<String, Value> =
        item.as_object().ok_or_else(|| malformed("substatus entry is not an object"))?;
    let text = m.get("status").ok_or_else(|| malformed("Missing substatus/status key"))?;
    let status = text.as_str().and_then(StatusValue::parse).ok_or_else(|| {
        malformed(format!(
            "Invalid value {} in substatus/status, expected one of transitioning, warning, error, success",
            super::excerpt(&text.to_string())
        ))
    })?;
    Ok(SubStatus {
        name: str_of(m.get("name")),
        status,
        code: code_of(m.get("code")),
        message: formatted_message(m.get("formattedMessage"), "substatus")?,
    })
}

/// Cut `field` to `max` characters plus [`TRUNCATED_SUFFIX`]; returns the new length.
fn truncate_field(field: &mut Option<String>, max: usize) -> usize {
    let Some(f) = field else { return 0 };
    if f.chars().count() >= max {
        let mut cut: String = f.chars().take(max).collect();
        cut.push_str(TRUNCATED_SUFFIX);
        *f = cut;
    }
    f.chars().count()
}

fn truncate(status: &mut ExtensionStatus) {
    status.truncated = true;
    let mut size = truncate_field(&mut status.message, MAX_STATUS_MESSAGE_LENGTH);
    let mut kept = Vec::new();
    for mut s in std::mem::take(&mut status.substatus) {
        size += truncate_field(&mut s.name, MAX_SUBSTATUS_FIELD_LENGTH);
        size += truncate_field(&mut s.message, MAX_SUBSTATUS_FIELD_LENGTH);
        size += serde_json::to_string(&s.status).map(|t| t.len()).unwrap_or(0) + s.code.to_string().len() + 4;
        if size > MAX_STATUS_FILE_SIZE {
            break;
        }
        kept.push(s);
    }
    status.substatus = kept;
}

/// The heartbeat an extension reports in `heartbeat.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    /// Handler status (`Ready`, `NotReady`, ...); overrides the handler's.
    pub status: String,
    pub code: i64,
    pub message: Option<String>,
}

impl Heartbeat {
    /// What the agent reports when the heartbeat file is older than [`HEARTBEAT_MAX_AGE`].
    pub fn unresponsive() -> Self {
        Self {
            status: "Unresponsive".into(),
            code: -1,
            message: Some("Extension heartbeat is not responsive".into()),
        }
    }

    /// Whether a heartbeat file modified at `mtime` is too old at `now`.
    pub fn is_stale(mtime: SystemTime, now: SystemTime) -> bool {
        now.duration_since(mtime).is_ok_and(|age| age > HEARTBEAT_MAX_AGE)
    }
}

/// Parse `heartbeat.log`: `[{"heartbeat": {"status", "code", "formattedMessage"}}]`.
pub fn parse_heartbeat(text: &str) -> Result<Heartbeat, DocumentError> {
    const DOC: &str = "heartbeat.log";
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let v: Value = serde_json::from_str(text).map_err(|e| DocumentError::json(DOC, e))?;
    let hb = v
        .get(0)
        .and_then(|e| e.get("heartbeat"))
        .and_then(Value::as_object)
        .ok_or_else(|| DocumentError::Missing { document: DOC, path: "[0]/heartbeat".into() })?;
    let status = hb
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| DocumentError::Missing { document: DOC, path: "[0]/heartbeat/status".into() })?;
    Ok(Heartbeat {
        status: status.to_string(),
        code: code_of(hb.get("code")),
        message: hb
            .get("formattedMessage")
            .and_then(|m| m.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

// ----- The aggregate status document (wire.md §11.2) -----

/// `{"lang": "en-US", "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FormattedMessage {
    pub lang: String,
    pub message: String,
}

impl FormattedMessage {
    /// An `en-US` message.
    pub fn en_us(message: impl Into<String>) -> Self {
        Self { lang: "en-US".into(), message: message.into() }
    }
}

/// The whole status blob, `version` `1.1`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregateStatusDocument {
    pub version: String,
    #[serde(rename = "timestampUTC")]
    pub timestamp_utc: String,
    pub aggregate_status: AggregateStatus,
    #[serde(rename = "guestOSInfo")]
    pub guest_os_info: GuestOsInfo,
    pub supported_features: Vec<SupportedFeature>,
}

impl AggregateStatusDocument {
    /// The status blob version this document has.
    pub const VERSION: &'static str = "1.1";

    /// The JSON text to upload.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregateStatus {
    pub guest_agent_status: GuestAgentStatus,
    pub handler_aggregate_status: Vec<HandlerAggregateStatus>,
    /// Only after a goal state was processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_artifacts_aggregate_status: Option<VmArtifactsAggregateStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestAgentStatus {
    pub version: String,
    pub status: String,
    pub formatted_message: FormattedMessage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatus {
    pub expected_version: String,
    /// `Success`, `Transitioning`, `Error` or `Unknown`.
    pub status: String,
    pub code: i64,
    pub formatted_message: FormattedMessage,
}

/// One handler's entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerAggregateStatus {
    pub handler_version: String,
    pub handler_name: String,
    /// `Ready`, `NotReady`, `Installing` or `Unresponsive`.
    pub status: String,
    pub code: i64,
    pub use_exact_version: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formatted_message: Option<FormattedMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_settings_status: Option<RuntimeSettingsStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSettingsStatus {
    /// Multi-config only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_name: Option<String>,
    pub sequence_number: u64,
    pub settings_status: SettingsStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingsStatus {
    /// Always the number 1.0.
    pub version: f64,
    #[serde(rename = "timestampUTC")]
    pub timestamp_utc: String,
    pub status: ExtensionStatusReport,
}

/// `{"lang": "en-US", "message": ...}` where the message may be null (an extension status without
/// a message is reported that way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusMessage {
    pub lang: String,
    pub message: Option<String>,
}

impl StatusMessage {
    /// An `en-US` message, SAS-redacted.
    pub fn en_us(message: Option<&str>) -> Self {
        Self { lang: "en-US".into(), message: message.map(super::events::redact_sas_queries) }
    }
}

/// An extension's status as reported (messages SAS-redacted by the `From` conversion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionStatusReport {
    pub name: Option<String>,
    pub configuration_applied_time: Option<String>,
    pub operation: Option<String>,
    pub status: StatusValue,
    pub code: i64,
    pub formatted_message: StatusMessage,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub substatus: Vec<SubStatusReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubStatusReport {
    pub name: Option<String>,
    pub status: StatusValue,
    pub code: i64,
    pub formatted_message: StatusMessage,
}

impl From<&ExtensionStatus> for ExtensionStatusReport {
    fn from(s: &ExtensionStatus) -> Self {
        Self {
            name: s.name.clone(),
            configuration_applied_time: s.configuration_applied_time.clone(),
            operation: s.operation.clone(),
            status: s.status,
            code: s.code,
            formatted_message: StatusMessage::en_us(s.message.as_deref()),
            substatus: s
                .substatus
                .iter()
                .map(|x| SubStatusReport {
                    name: x.name.clone(),
                    status: x.status,
                    code: x.code,
                    formatted_message: StatusMessage::en_us(x.message.as_deref()),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmArtifactsAggregateStatus {
    pub goal_state_aggregate_status: GoalStateAggregateStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GoalStateAggregateStatus {
    pub formatted_message: FormattedMessage,
    #[serde(rename = "timestampUTC")]
    pub timestamp_utc: String,
    /// The incarnation (ExtensionsConfig) or vmSettings' `inSvdSeqNo`.
    pub in_svd_seq_no: u64,
    /// `Success` or `Failed`.
    pub status: String,
    /// 0, -1, or 2001 (unsupported required features).
    pub code: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestOsInfo {
    pub computer_name: String,
    pub os_name: String,
    pub os_version: String,
    pub version: String,
}

/// `{"Key": ..., "Value": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupportedFeature {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value")]
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_rules() {
        let s = parse_status_file(
            br#"[{"status":{"status":"odd","code":"7","formattedMessage":{"lang":"en","message":"m"},"substatus":null}}]"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!((s.status, s.code, s.message.as_deref()), (StatusValue::Error, 7, Some("m")));
        assert_eq!(parse_status_file(b"[]").unwrap(), None);
        let no_lang = br#"[{"status":{"status":"success","formattedMessage":{"message":"m"}}}]"#;
        assert!(matches!(parse_status_file(no_lang), Err(StatusFileError::Malformed { .. })));
        let bad_sub = br#"[{"status":{"status":"success","substatus":[{"status":"meh"}]}}]"#;
        assert!(parse_status_file(bad_sub).is_err());
        assert!(matches!(parse_status_file(b"{\"a\":1}"), Err(StatusFileError::Malformed { .. })));
        let err = parse_status_file(b"[{").unwrap_err();
        let st = err.to_status("H-1.0", 3);
        assert_eq!(st.code, CODE_STATUS_INVALID);
        assert!(st
            .message
            .unwrap()
            .starts_with("The status reported by the extension H-1.0(Sequence number 3), was"));
    }

    #[test]
    fn oversized_files_are_cut() {
        let long = "x".repeat(MAX_STATUS_FILE_SIZE);
        let doc = format!(
            r#"[{{"status":{{"status":"success","formattedMessage":{{"lang":"en","message":"{long}"}},"substatus":[{{"status":"success","name":"{long}"}},{{"status":"error"}}]}}}}]"#
        );
        let s = parse_status_file(doc.as_bytes()).unwrap().unwrap();
        assert!(s.truncated);
        assert_eq!(s.message.as_ref().unwrap().len(), MAX_STATUS_MESSAGE_LENGTH + TRUNCATED_SUFFIX.len());
        assert_eq!(s.substatus.len(), 2);
        assert!(s.substatus[0].name.as_ref().unwrap().ends_with("[TRUNCATED]"));
    }

    #[test]
    fn heartbeat() {
        let h = parse_heartbeat(
            r#"[{"heartbeat":{"status":"ready","code":0,"formattedMessage":{"lang":"en","message":"ok"}}}]"#,
        )
        .unwrap();
        assert_eq!((h.status.as_str(), h.code, h.message.as_deref()), ("ready", 0, Some("ok")));
        assert!(parse_heartbeat("[{}]").is_err());
        let now = SystemTime::now();
        assert!(Heartbeat::is_stale(now - Duration::from_secs(601), now));
        assert!(!Heartbeat::is_stale(now - Duration::from_secs(10), now));
        assert_eq!(Heartbeat::unresponsive().code, -1);
    }

    #[test]
    fn aggregate_document_field_names() {
        let doc = AggregateStatusDocument {
            version: AggregateStatusDocument::VERSION.into(),
            timestamp_utc: "2024-01-01T00:00:00Z".into(),
            aggregate_status: AggregateStatus {
                guest_agent_status: GuestAgentStatus {
                    version: "2.15.0.1".into(),
                    status: "Ready".into(),
                    formatted_message: FormattedMessage::en_us("Guest Agent is running"),
                    update_status: None,
                },
                handler_aggregate_status: vec![HandlerAggregateStatus {
                    handler_version: "1.0".into(),
                    handler_name: "H".into(),
                    status: "Ready".into(),
                    code: 0,
                    use_exact_version: true,
                    formatted_message: None,
                    runtime_settings_status: Some(RuntimeSettingsStatus {
                        extension_name: None,
                        sequence_number: 2,
                        settings_status: SettingsStatus {
                            version: 1.0,
                            timestamp_utc: "t".into(),
                            status: ExtensionStatusReport::from(&ExtensionStatus {
                                name: Some("n".into()),
                                operation: Some("Enable".into()),
                                configuration_applied_time: None,
                                status: StatusValue::Success,
                                code: 0,
                                message: Some("m".into()),
                                substatus: vec![],
                                truncated: false,
                            }),
                        },
                    }),
                }],
                vm_artifacts_aggregate_status: Some(VmArtifactsAggregateStatus {
                    goal_state_aggregate_status: GoalStateAggregateStatus {
                        formatted_message: FormattedMessage::en_us("ok"),
                        timestamp_utc: "t".into(),
                        in_svd_seq_no: 4,
                        status: "Success".into(),
                        code: 0,
                    },
                }),
            },
            guest_os_info: GuestOsInfo {
                computer_name: "vm".into(),
                os_name: "debian".into(),
                os_version: "12".into(),
                version: "0.1.0".into(),
            },
            supported_features: vec![SupportedFeature {
                key: "MultipleExtensionsPerHandler".into(),
                value: "1.0".into(),
            }],
        };
        let v: Value = serde_json::from_str(&doc.to_json().unwrap()).unwrap();
        assert_eq!(v["version"], "1.1");
        assert_eq!(v["timestampUTC"], "2024-01-01T00:00:00Z");
        let ga = &v["aggregateStatus"]["guestAgentStatus"];
        assert_eq!(ga["formattedMessage"]["lang"], "en-US");
        assert!(ga.get("updateStatus").is_none());
        let h = &v["aggregateStatus"]["handlerAggregateStatus"][0];
        assert_eq!(h["handlerVersion"], "1.0");
        assert_eq!(h["useExactVersion"], true);
        assert!(h.get("formattedMessage").is_none());
        let rs = &h["runtimeSettingsStatus"];
        assert!(rs.get("extensionName").is_none());
        assert_eq!(rs["sequenceNumber"], 2);
        assert_eq!(rs["settingsStatus"]["version"], 1.0);
        assert_eq!(rs["settingsStatus"]["status"]["operation"], "Enable");
        assert!(rs["settingsStatus"]["status"].get("substatus").is_none());
        assert_eq!(rs["settingsStatus"]["status"]["formattedMessage"]["message"], "m");
        let quiet = ExtensionStatusReport::from(&ExtensionStatus {
            name: None,
            operation: None,
            configuration_applied_time: None,
            status: StatusValue::Transitioning,
            code: 0,
            message: None,
            substatus: vec![SubStatus {
                name: None,
                status: StatusValue::Success,
                code: 0,
                message: Some("see https://h/x?sig=abc".into()),
            }],
            truncated: false,
        });
        let q: Value = serde_json::to_value(&quiet).unwrap();
        assert_eq!(q["formattedMessage"]["message"], Value::Null);
        assert_eq!(q["substatus"][0]["formattedMessage"]["message"], "see https://h/x?<redacted>");
        let gs = &v["aggregateStatus"]["vmArtifactsAggregateStatus"]["goalStateAggregateStatus"];
        assert_eq!(gs["inSvdSeqNo"], 4);
        assert_eq!(v["guestOSInfo"]["computerName"], "vm");
        assert_eq!(v["supportedFeatures"][0]["Key"], "MultipleExtensionsPerHandler");
    }
}
