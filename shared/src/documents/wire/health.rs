//! Renders the XML bodies the agent POSTs to the WireServer: the health report (wire.md §5.1), role
//! properties (§5.2) and telemetry (§12.3). Renderers return `String`; the client sends them.

/// The provisioning state reported in a WireServer health report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisioningHealth {
    /// `NotReady`, substatus `Provisioning`, description `Starting`.
    Provisioning,
    /// `Ready`.
    Ready,
    /// `NotReady`, substatus `ProvisioningFailed`, with a description naming the failed step and why.
    Failed { description: String },
}

use crate::documents::xml::escape;

/// Longest description sent, in characters, cut before escaping (server limit 4096 bytes).
pub const MAX_DESCRIPTION_CHARS: usize = 3686;

/// The `State`, `SubStatus` and `Description` a provisioning state is reported with.
pub fn health_fields(health: &ProvisioningHealth) -> (&'static str, Option<(&'static str, String)>) {
    match health {
        ProvisioningHealth::Ready => ("Ready", None),
        ProvisioningHealth::Provisioning => ("NotReady", Some(("Provisioning", "Starting".to_string()))),
        ProvisioningHealth::Failed { description } => {
            ("NotReady", Some(("ProvisioningFailed", description.clone())))
        }
    }
}

/// The health report body, on one line, element order as the server expects.
pub fn render_health(
    incarnation: u64,
    container_id: &str,
    instance_id: &str,
    state: &str,
    details: Option<(&str, &str)>,
) -> String {
    let details = details
        .map(|(sub, desc)| {
            let desc: String = desc.chars().take(MAX_DESCRIPTION_CHARS).collect();
            format!(
                "<Details><SubStatus>{}</SubStatus><Description>{}</Description></Details>",
                escape(sub),
                escape(&desc)
            )
        })
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Health xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><GoalStateIncarnation>{incarnation}</GoalStateIncarnation>\
         <Container><ContainerId>{}</ContainerId><RoleInstanceList><Role><InstanceId>{}</InstanceId><Health>\
         <State>{}</State>{details}</Health></Role></RoleInstanceList></Container></Health>",
        escape(container_id),
        escape(instance_id),
        escape(state),
    )
}

/// The roleProperties body carrying the SSH host key thumbprint.
pub fn render_role_properties(container_id: &str, instance_id: &str, thumbprint: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><RoleProperties><Container><ContainerId>{}</ContainerId>\
         <RoleInstances><RoleInstance><Id>{}</Id><Properties><Property name=\"CertificateThumbprint\" \
         value=\"{}\" /></Properties></RoleInstance></RoleInstances></Container></RoleProperties>",
        escape(container_id),
        escape(instance_id),
        escape(thumbprint)
    )
}

/// A telemetry parameter's value and type.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Str(String),
    U64(u64),
    Bool(bool),
    F64(f64),
}

/// One telemetry event: provider GUID, event id and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryEvent {
    pub provider_id: String,
    pub event_id: u32,
    pub params: Vec<(String, ParamValue)>,
}

impl TelemetryEvent {
    /// The `<Event>` element for this event.
    pub fn render(&self) -> String {
        let mut params = String::new();
        for (name, value) in &self.params {
            let (v, t) = match value {
                ParamValue::Str(s) => (s.clone(), "mt:wstr"),
                ParamValue::U64(n) => (n.to_string(), "mt:uint64"),
                ParamValue::Bool(b) => (if *b { "True" } else { "False" }.to_string(), "mt:bool"),
                ParamValue::F64(f) => (f.to_string(), "mt:float64"),
            };
            params.push_str(&format!(
                "<Param Name=\"{}\" Value=\"{}\" T=\"{t}\" />",
                escape(name),
                escape(&v)
            ));
        }
        // `]]>` would end the CDATA section early.
        let params = params.replace("]]>", "]]&gt;");
        format!("<Event id=\"{}\"><![CDATA[{params}]]></Event>", self.event_id)
    }
}

/// Largest body per provider in one request (wire.md §12.3).
pub const MAX_TELEMETRY_BYTES: usize = 65536 - 1024;

/// Group `events` into `TelemetryData` bodies of at most [`MAX_TELEMETRY_BYTES`] of events each,
/// one provider per body. An event larger than the limit on its own is dropped with a warning.
pub fn render_telemetry_batches(events: &[TelemetryEvent]) -> Vec<String> {
    let mut providers: Vec<(&str, Vec<String>)> = Vec::new();
    for e in events {
        let rendered = e.render();
        if rendered.len() > MAX_TELEMETRY_BYTES {
            log::warn!(
                "dropping a telemetry event of {} bytes (limit {MAX_TELEMETRY_BYTES})",
                rendered.len()
            );
            continue;
        }
        match providers.iter_mut().find(|(p, _)| *p == e.provider_id) {
            Some((_, list)) => list.push(rendered),
            None => providers.push((&e.provider_id, vec![rendered])),
        }
    }
    let mut bodies = Vec::new();
    for (provider, list) in providers {
        let mut current = String::new();
        for event in list {
            if !current.is_empty() && current.len() + event.len() > MAX_TELEMETRY_BYTES {
                bodies.push(wrap_telemetry(provider, &current));
                current.clear();
            }
            current.push_str(&event);
        }
        if !current.is_empty() {
            bodies.push(wrap_telemetry(provider, &current));
        }
    }
    bodies
}

fn wrap_telemetry(provider: &str, events: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><TelemetryData version=\"1.0\"><Provider id=\"{}\">{events}</Provider></TelemetryData>",
        escape(provider)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_has_no_details() {
        let body = render_health(3, "cid", "iid", "Ready", None);
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Health xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><GoalStateIncarnation>3</GoalStateIncarnation><Container>\
             <ContainerId>cid</ContainerId><RoleInstanceList><Role><InstanceId>iid</InstanceId><Health><State>Ready\
             </State></Health></Role></RoleInstanceList></Container></Health>"
        );
    }

    #[test]
    fn description_cut_before_escaping() {
        let desc = format!("{}<&>", "a".repeat(MAX_DESCRIPTION_CHARS - 1));
        let body = render_health(1, "c", "i", "NotReady", Some(("ProvisioningFailed", &desc)));
        let expected = format!("<Description>{}&lt;</Description>", "a".repeat(MAX_DESCRIPTION_CHARS - 1));
        assert!(body.contains(&expected), "{body}");
        assert!(body.contains("<SubStatus>ProvisioningFailed</SubStatus>"));
        // Multi-byte characters are counted as characters, never split.
        let body = render_health(1, "c", "i", "NotReady", Some(("x", &"é".repeat(5000))));
        assert_eq!(body.matches('é').count(), MAX_DESCRIPTION_CHARS);
    }

    #[test]
    fn health_fields_per_state() {
        assert_eq!(health_fields(&ProvisioningHealth::Ready), ("Ready", None));
        assert_eq!(
            health_fields(&ProvisioningHealth::Provisioning),
            ("NotReady", Some(("Provisioning", "Starting".to_string())))
        );
    }

    #[test]
    fn telemetry_batches_split_by_size_and_provider() {
        let ev = |p: &str, msg: &str| TelemetryEvent {
            provider_id: p.into(),
            event_id: 7,
            params: vec![("Message".into(), ParamValue::Str(msg.into())), ("N".into(), ParamValue::U64(1))],
        };
        let big = "x".repeat(30_000);
        let events =
            vec![ev("A", &big), ev("A", &big), ev("A", &big), ev("B", "b<]]>"), ev("A", &"y".repeat(70_000))];
        let bodies = render_telemetry_batches(&events);
        assert_eq!(bodies.len(), 3);
        assert!(bodies.iter().all(|b| b.len() < MAX_TELEMETRY_BYTES + 200));
        assert!(bodies[2].contains("<Provider id=\"B\">"));
        assert!(bodies[2].contains("Value=\"b&lt;]]&gt;\" T=\"mt:wstr\""), "{}", bodies[2]);
        assert!(!bodies.iter().any(|b| b.contains("yyyy")));
    }
}
