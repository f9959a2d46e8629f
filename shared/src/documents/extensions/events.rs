//! Extension Telemetry Pipeline event files, `/var/log/azure/<Handler>/events/<digits>.json`
//! (wire.md §10.5), and the SAS redaction applied to every message the agent reports.
//!
//! A file holds a JSON array of events (a single object is taken as one event). Each event needs
//! the keys `Version`, `TimeStamp`, `TaskName`, `EventLevel`, `Message`, `EventPid`, `EventTid`
//! and `OperationId` (any case, string values; `EventPid` and `EventTid` may also be integers, as
//! waagent 2.10+ accepts); unknown keys are dropped. An event whose fields
//! add up to more than [`MAX_EVENT_SIZE`] characters, or whose message is empty, is dropped with
//! a reason; the message is cut to [`MAX_MESSAGE_LENGTH`] characters.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::documents::extensions::DocumentError;

/// Largest event (sum of its fields' lengths, counted as waagent does).
pub const MAX_EVENT_SIZE: usize = 6 * 1024;
/// Messages are cut to this many characters.
pub const MAX_MESSAGE_LENGTH: usize = 3 * 1024;
/// Event files larger than this are skipped whole.
pub const MAX_EVENT_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// The required keys, lower-cased, in the order waagent checks them.
const REQUIRED: [&str; 8] =
    ["eventlevel", "eventpid", "eventtid", "message", "operationid", "taskname", "timestamp", "version"];

/// One event, as forwarded to telemetry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionEvent {
    pub version: String,
    pub timestamp: String,
    pub task_name: String,
    pub event_level: String,
    /// SAS-redacted, cut to [`MAX_MESSAGE_LENGTH`].
    pub message: String,
    pub event_pid: String,
    pub event_tid: String,
    pub operation_id: String,
}

/// What an event file gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct EventFile {
    pub events: Vec<ExtensionEvent>,
    /// One reason per dropped event (waagent's `InvalidExtensionEventError` texts).
    pub dropped: Vec<String>,
}

/// Whether `file_name` is an event file: digits, then `.json` (any case).
pub fn is_event_file_name(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    lower
        .strip_suffix(".json")
        .is_some_and(|stem| !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()))
}

/// Parse one event file. Not JSON → an error (the file is dropped); bad events are dropped
/// one by one.
pub fn parse_event_file(text: &str) -> Result<EventFile, DocumentError> {
    const DOC: &str = "extension event file";
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let v: Value = serde_json::from_str(text).map_err(|e| DocumentError::json(DOC, e))?;
    let items = match v {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut out = EventFile::default();
    for item in &items {
        match item.as_object().ok_or_else(|| "event is not a JSON object".to_string()).and_then(parse_event) {
            Ok(e) => out.events.push(e),
            Err(why) => out.dropped.push(why),
        }
    }
    Ok(out)
}

fn parse_event(obj: &Map<String, Value>) -> Result<ExtensionEvent, String> {
    let lower: Map<String, Value> = obj.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
    let mut size = 0usize;
    let mut fields = Vec::with_capacity(REQUIRED.len());
    for key in REQUIRED {
        let value = match lower.get(key) {
            None => return Err(format!("MissingKeyError: {key} not found")),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) if key == "message" => String::new(),
            Some(Value::Number(n))
                if matches!(key, "eventpid" | "eventtid") && (n.is_u64() || n.is_i64()) =>
            {
                n.to_string()
            }
            Some(_) => return Err(format!("{key} is not a string")),
        };
        if size > MAX_EVENT_SIZE {
            return Err(format!("OversizeEventError: max event size allowed: {MAX_EVENT_SIZE}"));
        }
        size += value.chars().count();
        fields.push(value.trim().to_string());
    }
    let message: String =
        lower.get("message").and_then(Value::as_str).unwrap_or("").chars().take(MAX_MESSAGE_LENGTH).collect();
    let message = message.trim().to_string();
    if message.is_empty() {
        return Err("EmptyMessageError: Message should not be empty".to_string());
    }
    let take = |i: usize| fields.get(i).cloned().unwrap_or_default();
    Ok(ExtensionEvent {
        event_level: take(0),
        event_pid: take(1),
        event_tid: take(2),
        message: redact_sas_queries(&message),
        operation_id: take(4),
        task_name: take(5),
        timestamp: take(6),
        version: take(7),
    })
}

/// SAS query keys whose presence marks a URL's query as a SAS token.
const SAS_KEYS: [&str; 8] = ["sv", "st", "se", "sr", "sp", "sip", "spr", "sig"];

/// Replace the query of every `https://` URL that carries a SAS token (`sv=`, `sig=`, ...) with
/// `<redacted>`: `https://h/p?sig=x&se=y` → `https://h/p?<redacted>`.
pub fn redact_sas_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_ascii_ci(rest, "https://") {
        out.push_str(&rest[..start]);
        let url_and_more = &rest[start..];
        let end = url_and_more.find(char::is_whitespace).unwrap_or(url_and_more.len());
        let url = &url_and_more[..end];
        out.push_str(&redact_url(url));
        rest = &url_and_more[end..];
    }
    out.push_str(rest);
    out
}

fn redact_url(url: &str) -> String {
    // The first `?` followed by a SAS key and `=` with something after it, after at least one
    // character of URL: everything after it goes, so a URL with a second `?` (or a second URL
    // glued on) cannot keep an earlier signature.
    let candidates = url.match_indices('?').map(|(i, _)| i).filter(|&i| i > "https://".len());
    for q in candidates {
        let query = &url[q + 1..];
        let is_sas = SAS_KEYS.iter().any(|k| {
            query.len() > k.len() + 1
                && query.get(..k.len()).is_some_and(|p| p.eq_ignore_ascii_case(k))
                && query.as_bytes().get(k.len()) == Some(&b'=')
        });
        if is_sas {
            return format!("{}<redacted>", &url[..=q]);
        }
    }
    url.to_string()
}

/// The byte offset of the first ASCII-case-insensitive match of the ASCII `needle`. A match starts
/// at an ASCII byte, so the offset is a char boundary of `haystack`. (This runs over every
/// extension status message each time the status is built: a byte scan, not a string per char.)
fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    debug_assert!(needle.is_ascii() && !needle.is_empty());
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    let first = n[0].to_ascii_lowercase();
    (0..=h.len().checked_sub(n.len())?)
        .find(|&i| h[i].to_ascii_lowercase() == first && h[i..i + n.len()].eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"EventLevel":"INFO","Message":" hi ","Version":"1","TaskName":"t","EventPid":"1","EventTid":"2","OperationId":"o","TimeStamp":"ts","Extra":"x"}"#;

    #[test]
    fn good_bad_and_mixed() {
        let f = parse_event_file(&format!("[{GOOD},{{\"BadEvent\":true}},{}]", GOOD.replace(" hi ", "")))
            .unwrap();
        assert_eq!(f.events.len(), 1);
        assert_eq!(f.events[0].message, "hi");
        assert_eq!(f.events[0].timestamp, "ts");
        assert_eq!(f.dropped.len(), 2);
        assert!(f.dropped[0].starts_with("MissingKeyError"));
        assert!(f.dropped[1].starts_with("EmptyMessageError"));
        assert_eq!(parse_event_file(GOOD).unwrap().events.len(), 1, "a single object is one event");
        assert!(parse_event_file("{").is_err());
        let ints = GOOD
            .replace(r#""EventPid":"1""#, r#""EventPid":12"#)
            .replace(r#""EventTid":"2""#, r#""EventTid":34"#);
        let e = &parse_event_file(&ints).unwrap().events[0];
        assert_eq!(
            (e.event_pid.as_str(), e.event_tid.as_str()),
            ("12", "34"),
            "integer pids, as waagent 2.10+"
        );
        let float = GOOD.replace(r#""EventPid":"1""#, r#""EventPid":1.5"#);
        assert_eq!(parse_event_file(&float).unwrap().dropped, ["eventpid is not a string"]);
        let int_level = GOOD.replace(r#""EventLevel":"INFO""#, r#""EventLevel":3"#);
        assert_eq!(parse_event_file(&int_level).unwrap().dropped, ["eventlevel is not a string"]);
        let big = GOOD.replace(" hi ", &"m".repeat(7000));
        assert!(parse_event_file(&big).unwrap().dropped[0].starts_with("OversizeEventError"));
        let long = GOOD.replace(" hi ", &"m".repeat(5000));
        assert_eq!(parse_event_file(&long).unwrap().events[0].message.len(), MAX_MESSAGE_LENGTH);
    }

    #[test]
    fn names_and_redaction() {
        assert!(is_event_file_name("1591905451.json"));
        assert!(is_event_file_name("1.JSON"));
        assert!(!is_event_file_name("bad_name_file.json"));
        assert!(!is_event_file_name("1594857360.tld"));
        assert!(!is_event_file_name(".json"));
        assert_eq!(
            redact_sas_queries("see https://a.b/c.png?sig=abc&sp=r now https://x/y?q=1"),
            "see https://a.b/c.png?<redacted> now https://x/y?q=1"
        );
        assert_eq!(redact_sas_queries("HTTPS://h/p?x=1?SV=2020 é"), "HTTPS://h/p?x=1?<redacted> é");
        assert_eq!(redact_sas_queries("https://"), "https://");
        assert_eq!(redact_sas_queries("http"), "http");
        assert_eq!(redact_sas_queries("ééhTtPs://h/p?sig=1 x"), "ééhTtPs://h/p?<redacted> x");
        assert_eq!(find_ascii_ci("éhttps://", "https://"), Some(2));
        assert_eq!(find_ascii_ci("HTTPs:/", "https://"), None);
    }
}
