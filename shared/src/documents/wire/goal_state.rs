//! The goal state, `GET http://<endpoint>/machine/?comp=goalstate` (wire.md §4.1).
//!
//! Required: `Incarnation` (an integer), `Container/ContainerId`, and the first
//! `Container/RoleInstanceList/RoleInstance` with its `InstanceId`. A goal state without any
//! `RoleInstance` yields [`DocumentError::MissingRoleInstance`] so the caller can fetch it again.
//! Every sub-document URL is optional (ExtensionsConfig and Certificates are often absent);
//! URLs are trimmed and entity-unescaped, and otherwise used verbatim.

use crate::documents::wire::{parse_root, Cursor, DocumentError};

const DOC: &str = "GoalState";

/// What the agent uses from the goal state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GoalState {
    /// `Version` (informational; requests always say `2012-11-30`).
    pub version: Option<String>,
    /// `Incarnation`. Compare with `!=`: it may go back to 1 (hibernate, new container).
    pub incarnation: u64,
    /// `Machine/ExpectedState`, e.g. `Started`.
    pub expected_state: Option<String>,
    /// `Container/ContainerId`: sent in health reports and to the HostGAPlugin.
    pub container_id: String,
    /// `Container/RemoteAccessInfo`: URL of the JIT remote-access users document.
    pub remote_access_url: Option<String>,
    /// `RoleInstance/InstanceId` of the first role instance: sent in health reports.
    pub role_instance_id: String,
    /// `RoleInstance/State`.
    pub role_instance_state: Option<String>,
    /// `Configuration/HostingEnvironmentConfig` URL.
    pub hosting_env_url: Option<String>,
    /// `Configuration/SharedConfig` URL.
    pub shared_config_url: Option<String>,
    /// `Configuration/ExtensionsConfig` URL; absent when the VM has no extensions goal state.
    pub extensions_config_url: Option<String>,
    /// `Configuration/FullConfig` URL (waagent does not fetch it).
    pub full_config_url: Option<String>,
    /// `Configuration/Certificates` URL; absent when there are no certificates.
    pub certificates_url: Option<String>,
    /// `Configuration/ConfigName`: sent to the HostGAPlugin as `x-ms-host-config-name`.
    pub config_name: Option<String>,
}

impl GoalState {
    /// The deployment ID: `ConfigName` up to its first `.` (sent as `x-ms-vmagentlog-deploymentid`).
    pub fn deployment_id(&self) -> Option<&str> {
        self.config_name.as_deref().and_then(|n| n.split('.').next()).filter(|s| !s.is_empty())
    }
}

/// Parse a goal-state document.
pub fn parse_goal_state(text: &str) -> Result<GoalState, DocumentError> {
    let root = parse_root(text, DOC)?;
    let gs = Cursor::new(DOC, &root);
    let incarnation = gs.require_u64("Incarnation", "GoalState/Incarnation")?;
    let container = gs.require("Container", "GoalState/Container")?;
    let container_id = container.require_text("ContainerId", "GoalState/Container/ContainerId")?.to_string();
    let instance = container
        .element
        .child("RoleInstanceList")
        .and_then(|list| list.child("RoleInstance"))
        .map(|element| Cursor::new(DOC, element))
        .ok_or(DocumentError::MissingRoleInstance { incarnation })?;
    let role_instance_id = instance
        .require_text("InstanceId", "GoalState/Container/RoleInstanceList/RoleInstance/InstanceId")?
        .to_string();
    let config = instance.element.child("Configuration").map(|element| Cursor::new(DOC, element));
    let url = |name: &str| config.and_then(|c| c.text(name));
    Ok(GoalState {
        version: gs.text("Version"),
        incarnation,
        expected_state: gs
            .element
            .child("Machine")
            .and_then(|m| m.child_text("ExpectedState"))
            .map(Into::into),
        container_id,
        remote_access_url: container.text("RemoteAccessInfo"),
        role_instance_id,
        role_instance_state: instance.text("State"),
        hosting_env_url: url("HostingEnvironmentConfig"),
        shared_config_url: url("SharedConfig"),
        extensions_config_url: url("ExtensionsConfig"),
        full_config_url: url("FullConfig"),
        certificates_url: url("Certificates"),
        config_name: url("ConfigName"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(container: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<GoalState><Version>2012-11-30</Version>\
             <Incarnation> 7 </Incarnation><Machine><ExpectedState>Started</ExpectedState></Machine>\
             <Container>{container}</Container></GoalState>"
        )
    }

    const INSTANCE: &str = "<ContainerId>c-1</ContainerId><RemoteAccessInfo>http://h/ra?a=1&amp;b=2</RemoteAccessInfo>\
        <RoleInstanceList><RoleInstance><InstanceId>i-1</InstanceId><State>Started</State><Configuration>\
        <HostingEnvironmentConfig>\n   http://h/hec?comp=config&amp;type=hostingEnvironmentConfig\n  </HostingEnvironmentConfig>\
        <SharedConfig>http://h/sc</SharedConfig><Certificates></Certificates>\
        <ConfigName>dep1.0.dep1.0.vm.1.xml</ConfigName></Configuration></RoleInstance>\
        <RoleInstance><InstanceId>i-2</InstanceId></RoleInstance></RoleInstanceList>";

    #[test]
    fn fields_urls_and_defaults() {
        let gs = parse_goal_state(&doc(INSTANCE)).unwrap();
        assert_eq!(gs.incarnation, 7);
        assert_eq!(gs.version.as_deref(), Some("2012-11-30"));
        assert_eq!(gs.expected_state.as_deref(), Some("Started"));
        assert_eq!(gs.container_id, "c-1");
        assert_eq!(gs.role_instance_id, "i-1", "the first RoleInstance is used");
        assert_eq!(gs.role_instance_state.as_deref(), Some("Started"));
        assert_eq!(gs.remote_access_url.as_deref(), Some("http://h/ra?a=1&b=2"));
        assert_eq!(
            gs.hosting_env_url.as_deref(),
            Some("http://h/hec?comp=config&type=hostingEnvironmentConfig")
        );
        assert_eq!(gs.shared_config_url.as_deref(), Some("http://h/sc"));
        assert_eq!(gs.extensions_config_url, None);
        assert_eq!(gs.certificates_url, None, "an empty element means no URL");
        assert_eq!(gs.deployment_id(), Some("dep1"));
    }

    #[test]
    fn missing_pieces_are_named() {
        let no_instances = parse_goal_state(&doc("<ContainerId>c-1</ContainerId>")).unwrap_err();
        assert!(
            matches!(no_instances, DocumentError::MissingRoleInstance { incarnation: 7 }),
            "{no_instances}"
        );
        let no_container_id = parse_goal_state(&doc(&INSTANCE.replace("<ContainerId>c-1</ContainerId>", "")));
        assert!(
            matches!(no_container_id, Err(DocumentError::Missing { ref path, .. }) if path.ends_with("ContainerId"))
        );
        let empty_id = parse_goal_state(&doc(
            &INSTANCE.replace("<InstanceId>i-1</InstanceId>", "<InstanceId> </InstanceId>")
        ));
        assert!(
            matches!(empty_id, Err(DocumentError::Empty { ref path, .. }) if path.ends_with("InstanceId"))
        );
        let bad_inc = parse_goal_state(&doc(INSTANCE).replace(" 7 ", "seven")).unwrap_err();
        assert!(
            matches!(bad_inc, DocumentError::Invalid { ref path, .. } if path == "GoalState/Incarnation")
        );
        let wrong_root = parse_goal_state("<Versions/>").unwrap_err();
        assert!(matches!(wrong_root, DocumentError::UnexpectedRoot { ref found, .. } if found == "Versions"));
        assert!(matches!(parse_goal_state("random non-xml data"), Err(DocumentError::Xml { .. })));
    }
}
