//! The Health report the agent POSTs (spec §5.1), parsed just enough to record what it said.

use std::collections::BTreeMap;

use quick_xml::events::Event;
use quick_xml::Reader;
use serde::{Deserialize, Serialize};

/// One received Health report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `GoalStateIncarnation`.
    pub incarnation: Option<String>,
    /// `Container/ContainerId`.
    pub container_id: Option<String>,
    /// `Role/InstanceId`.
    pub instance_id: Option<String>,
    /// `Health/State` (`Ready` or `NotReady`).
    pub state: String,
    /// `Details/SubStatus`.
    pub substatus: Option<String>,
    /// `Details/Description`.
    pub description: Option<String>,
}

/// Why a Health body was refused.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// Not well-formed XML.
    #[error("Health XML is malformed at byte {pos}: {msg}")]
    Xml {
        /// Byte offset.
        pos: u64,
        /// The parser's message.
        msg: String,
    },
    /// No `State` element.
    #[error("Health XML has no State element")]
    NoState,
}

/// Parses a Health XML body.
pub fn parse(xml: &str) -> Result<HealthReport, HealthError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    let mut current = String::new();
    let err = |reader: &Reader<&[u8]>, msg: String| HealthError::Xml { pos: reader.buffer_position(), msg };
    loop {
        match reader.read_event() {
            Err(e) => return Err(err(&reader, e.to_string())),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                stack.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                current.clear();
            }
            Ok(Event::End(_)) => {
                if let Some(name) = stack.pop() {
                    texts.entry(name).or_insert_with(|| current.trim().to_string());
                }
                current.clear();
            }
            Ok(Event::Text(t)) => {
                current.push_str(&t.decode().map_err(|e| err(&reader, e.to_string()))?);
            }
            Ok(Event::CData(t)) => current.push_str(&String::from_utf8_lossy(&t)),
            Ok(Event::GeneralRef(r)) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    current.push(c);
                } else {
                    let name = r.decode().map_err(|e| err(&reader, e.to_string()))?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(v) => current.push_str(v),
                        None => return Err(err(&reader, format!("unknown entity &{name};"))),
                    }
                }
            }
            Ok(_) => {}
        }
    }
    Ok(HealthReport {
        incarnation: texts.remove("GoalStateIncarnation"),
        container_id: texts.remove("ContainerId"),
        instance_id: texts.remove("InstanceId"),
        state: texts.remove("State").ok_or(HealthError::NoState)?,
        substatus: texts.remove("SubStatus"),
        description: texts.remove("Description"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_not_ready_with_details() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><Health xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><GoalStateIncarnation>3</GoalStateIncarnation><Container><ContainerId>c-1</ContainerId><RoleInstanceList><Role><InstanceId>i-1</InstanceId><Health><State>NotReady</State><Details><SubStatus>ProvisioningFailed</SubStatus><Description>bad &amp; worse &#60;x&#62;</Description></Details></Health></Role></RoleInstanceList></Container></Health>"#;
        let r = parse(xml).unwrap();
        assert_eq!(r.incarnation.as_deref(), Some("3"));
        assert_eq!(r.container_id.as_deref(), Some("c-1"));
        assert_eq!(r.instance_id.as_deref(), Some("i-1"));
        assert_eq!(r.state, "NotReady");
        assert_eq!(r.substatus.as_deref(), Some("ProvisioningFailed"));
        assert_eq!(r.description.as_deref(), Some("bad & worse <x>"));
    }

    #[test]
    fn refuses_missing_state_and_broken_xml() {
        assert!(matches!(parse("<Health><Container/></Health>"), Err(HealthError::NoState)));
        assert!(parse("<Health><State>Ready</Sta").is_err());
    }
}
