//! `HandlerEnvironment.json`, written by the agent into an extension's directory to tell it where
//! its logs, settings, status and heartbeat go (wire.md §9.2). The paths are the ones the
//! extension sees on the running system (not prefixed by a test root).

use serde::Serialize;

/// The folders and files of one handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandlerEnvironment {
    #[serde(rename = "logFolder")]
    pub log_folder: String,
    #[serde(rename = "configFolder")]
    pub config_folder: String,
    #[serde(rename = "statusFolder")]
    pub status_folder: String,
    #[serde(rename = "heartbeatFile")]
    pub heartbeat_file: String,
    /// Extension Telemetry Pipeline folder; `None` when the feature is off.
    #[serde(rename = "eventsFolder", skip_serializing_if = "Option::is_none")]
    pub events_folder: Option<String>,
    #[serde(rename = "eventsFolder_preview", skip_serializing_if = "Option::is_none")]
    pub events_folder_preview: Option<String>,
}

impl HandlerEnvironment {
    /// The layout waagent uses: the handler's base dir is `<lib_dir>/<name>-<version>`, its logs
    /// go to `<log_dir>/<name>` (with `events/` under it when `events` is on). `lib_dir` is
    /// `Lib.Dir` (`/var/lib/waagent`), `log_dir` is `Extension.LogDir` (`/var/log/azure`).
    pub fn new(name: &str, version: &str, lib_dir: &str, log_dir: &str, events: bool) -> Self {
        let lib = lib_dir.trim_end_matches('/');
        let base = format!("{lib}/{name}-{version}");
        let logs = format!("{}/{name}", log_dir.trim_end_matches('/'));
        let events_dir = events.then(|| format!("{logs}/events"));
        Self {
            config_folder: format!("{base}/config"),
            status_folder: format!("{base}/status"),
            heartbeat_file: format!("{base}/heartbeat.log"),
            log_folder: logs,
            events_folder: events_dir.clone(),
            events_folder_preview: events_dir,
        }
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    name: &'a str,
    version: f64,
    #[serde(rename = "handlerEnvironment")]
    handler_environment: &'a HandlerEnvironment,
}

/// The file's content: `[{"name": <handler>, "version": 1.0, "handlerEnvironment": {...}}]`.
pub fn render_handler_environment(handler_name: &str, env: &HandlerEnvironment) -> String {
    let entry = [Entry { name: handler_name, version: 1.0, handler_environment: env }];
    // Serializing plain strings and a float cannot fail; fall back to an empty array regardless.
    serde_json::to_string(&entry).unwrap_or_else(|_| "[]".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waagent_layout() {
        let env =
            HandlerEnvironment::new("Contoso.Script", "1.2.3", "/var/lib/waagent/", "/var/log/azure", true);
        let text = render_handler_environment("Contoso.Script", &env);
        assert_eq!(
            text,
            "[{\"name\":\"Contoso.Script\",\"version\":1.0,\"handlerEnvironment\":{\
             \"logFolder\":\"/var/log/azure/Contoso.Script\",\
             \"configFolder\":\"/var/lib/waagent/Contoso.Script-1.2.3/config\",\
             \"statusFolder\":\"/var/lib/waagent/Contoso.Script-1.2.3/status\",\
             \"heartbeatFile\":\"/var/lib/waagent/Contoso.Script-1.2.3/heartbeat.log\",\
             \"eventsFolder\":\"/var/log/azure/Contoso.Script/events\",\
             \"eventsFolder_preview\":\"/var/log/azure/Contoso.Script/events\"}}]"
        );
        let off = HandlerEnvironment::new("H", "1", "/l", "/g", false);
        assert!(!render_handler_environment("H", &off).contains("events"));
    }
}
