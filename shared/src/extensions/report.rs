//! The handler statuses of the aggregate status document (wire.md §11.1–§11.2), collected from
//! what is on disk (`HandlerStatus`, the extensions' status files, heartbeats) and the failures
//! the lifecycle kept.
//!
//! The result is a pure function of the files and the goal state: no "now" timestamps, so the
//! daemon can tell whether anything changed and upload only then.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::base::root::HostRoot;
use crate::documents::conf::Config;
use crate::documents::extensions::extensions_goal_state::{
    Extension, ExtensionSettings, ExtensionState, ExtensionsGoalState,
};
use crate::documents::extensions::status::{
    ExtensionStatus, ExtensionStatusReport, FormattedMessage, HandlerAggregateStatus, RuntimeSettingsStatus,
    SettingsStatus, StatusValue,
};
use crate::extensions::handler::{installed_versions, HandlerDir, HandlerState, HandlerStatusFile};
use crate::extensions::lifecycle::Extensions;

/// Why extensions are not processed at all, if they are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disabled {
    /// `Extensions.Enabled=n`.
    ByConfig,
    /// `<Lib.Dir>/disable_agent` exists.
    ByMarker,
}

/// Whether extension processing is off, and why.
pub fn disabled(root: &HostRoot, config: &Config) -> Option<Disabled> {
    if !config.extensions_enabled {
        Some(Disabled::ByConfig)
    } else if root.path(config.lib_dir.as_path()).join("disable_agent").exists() {
        Some(Disabled::ByMarker)
    } else {
        None
    }
}

fn disabled_message(why: Disabled, name: &str, conf_path: &str) -> String {
    match why {
        Disabled::ByConfig => format!(
            "Extension '{name}' will not be processed since extension processing is disabled. To enable extension processing, set Extensions.Enabled=y in '{conf_path}'"
        ),
        Disabled::ByMarker => format!(
            "Extension '{name}' will not be processed since the guest agent is disabled (disable_agent file present)"
        ),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a file time.
fn utc(t: SystemTime) -> String {
    let ts = crate::base::logging::timestamp(t);
    format!("{}Z", ts.get(..19).unwrap_or(&ts))
}

/// One entry per handler (multi-config: per extension) of `gs`, as §11.2 wants them.
pub fn handler_statuses(
    root: &HostRoot,
    config: &Config,
    gs: &ExtensionsGoalState,
    state: &Extensions,
    now: SystemTime,
) -> Vec<HandlerAggregateStatus> {
    statuses_of(root, config, &gs.extensions, state, now)
}

/// The handlers installed on disk, reported in place of a goal state with unsupported required
/// features (§7.3, §11.1), whose handlers were not run: each with its `HandlerStatus`, and the
/// status file of its most recently written settings (multi-config: per extension, found from the
/// `<ext>.<seq>.settings` files).
pub fn handler_statuses_on_disk(
    root: &HostRoot,
    config: &Config,
    state: &Extensions,
    now: SystemTime,
) -> Vec<HandlerAggregateStatus> {
    let (lib, logs) = Extensions::dirs(root, config);
    let mut handlers: Vec<Extension> = Vec::new();
    for dir in super::handler::handler_dirs(&lib, &logs) {
        let handler_state = dir.state();
        if !matches!(handler_state, HandlerState::Installed | HandlerState::Enabled) {
            continue;
        }
        let state = if handler_state == HandlerState::Enabled {
            ExtensionState::Enabled
        } else {
            ExtensionState::Disabled
        };
        let mut h = Extension::new(dir.name().to_string(), dir.version().to_string());
        h.state = Some(state);
        // The newest settings file of each extension: (extension or None, seq, mtime).
        let mut newest: BTreeMap<Option<String>, (u64, SystemTime)> = BTreeMap::new();
        for e in std::fs::read_dir(dir.config_dir()).into_iter().flatten().flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = file.strip_suffix(".settings") else { continue };
            let (ext, seq) = match stem.rsplit_once('.') {
                Some((ext, seq)) => (Some(ext.to_string()), seq),
                None => (None, stem),
            };
            let Ok(seq) = seq.parse::<u64>() else { continue };
            let mtime = e.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
            if newest.get(&ext).is_none_or(|(_, t)| mtime > *t) {
                newest.insert(ext, (seq, mtime));
            }
        }
        h.is_multi_config = newest.keys().any(Option::is_some);
        for (ext, (seq, _)) in newest {
            if h.is_multi_config && ext.is_none() {
                continue;
            }
            h.settings.push(ExtensionSettings {
                name: ext.unwrap_or_else(|| h.name.clone()),
                sequence_number: seq,
                state,
                public_settings: None,
                protected_settings: None,
                certificate_thumbprint: None,
                dependency_level: 0,
                depends_on: Vec::new(),
                settings_unparsable: false,
            });
        }
        handlers.push(h);
    }
    statuses_of(root, config, &handlers, state, now)
}

fn statuses_of(
    root: &HostRoot,
    config: &Config,
    extensions: &[Extension],
    state: &Extensions,
    now: SystemTime,
) -> Vec<HandlerAggregateStatus> {
    let (lib, logs) = Extensions::dirs(root, config);
    let off = disabled(root, config);
    let mut out = Vec::new();
    for h in extensions {
        // The requested version when it has a status of its own (e.g. a failed update), else the
        // installed one. A handler whose name or version the parser refused has nothing on disk
        // and nothing is looked up for it.
        // Its handler status file is read here, once for all its extensions.
        let installed = match HandlerDir::new(&lib, &logs, &h.name, &h.version) {
            Err(_) => None,
            Ok(requested) => match requested.exists().then(|| requested.status()).flatten() {
                Some(status) => Some(Installed { dir: requested, status: Some(status) }),
                None => installed_versions(&lib, &logs, &h.name).into_iter().next().map(|dir| {
                    let status = dir.status();
                    Installed { dir, status }
                }),
            },
        };
        if h.state == Some(ExtensionState::Uninstall) && installed.is_none() && off.is_none() {
            continue; // Uninstalled handlers vanish from the list.
        }
        let settings: Vec<Option<&ExtensionSettings>> =
            if h.settings.is_empty() { vec![None] } else { h.settings.iter().map(Some).collect() };
        for s in settings {
            let ext = s.filter(|_| h.is_multi_config).map(|s| s.name.as_str());
            let disabled_here = s.is_some_and(|s| s.state == ExtensionState::Disabled);
            if let (Some(name), true) = (ext, disabled_here) {
                if installed.as_ref().is_none_or(|i| i.dir.last_enabled_seq(name).is_none()) {
                    continue; // Disabled in the goal state and on disk: omitted (§11.1).
                }
            }
            out.push(one(h, s, ext, installed.as_ref(), state, off, now));
        }
    }
    out
}

fn base(
    h: &Extension,
    version: &str,
    status: &str,
    code: i64,
    message: Option<String>,
) -> HandlerAggregateStatus {
    HandlerAggregateStatus {
        handler_version: version.to_string(),
        handler_name: h.name.clone(),
        status: status.to_string(),
        code,
        use_exact_version: true,
        formatted_message: message.map(|m| FormattedMessage::en_us(crate::base::logging::redact_sas(&m))),
        runtime_settings_status: None,
    }
}

/// A handler's directory on disk and its handler status file as read this time.
struct Installed {
    dir: HandlerDir,
    status: Option<(HandlerStatusFile, SystemTime)>,
}

fn one(
    h: &Extension,
    s: Option<&ExtensionSettings>,
    ext: Option<&str>,
    installed: Option<&Installed>,
    state: &Extensions,
    off: Option<Disabled>,
    now: SystemTime,
) -> HandlerAggregateStatus {
    let seq = s.map_or(0, |s| s.sequence_number);
    // Not processed on purpose (extensions off, or the policy): NotReady at the handler level
    // and, for an enabled extension with settings, an `error` settings status (waagent).
    let refused = |code: i64, msg: String| {
        let mut st = base(h, &h.version, "NotReady", code, Some(msg.clone()));
        if h.state == Some(ExtensionState::Enabled) && s.is_some() {
            st.runtime_settings_status =
                Some(settings_status(ext, seq, &agent_status(StatusValue::Error, code, &msg), ""));
        }
        st
    };
    if let Some(why) = off {
        let code = if h.state == Some(ExtensionState::Uninstall) { 1010 } else { 1009 };
        return refused(code, disabled_message(why, ext.unwrap_or(&h.name), "/etc/waagent.conf"));
    }
    if let Some(f) = state.disallowed(&h.name, ext) {
        return refused(f.code, f.message.clone());
    }
    if let Some(f) = &h.failure {
        return base(h, &h.version, "NotReady", -1, Some(f.to_string()));
    }
    if let Some(f) = state.failure(&h.name, ext) {
        if installed.is_none_or(|i| i.status.is_none()) || f.code == -1 {
            let version = installed.map_or(h.version.as_str(), |i| i.dir.version());
            return base(h, version, "NotReady", f.code, Some(f.message.clone()));
        }
    }
    let Some(Installed { dir, status: handler_status }) = installed else {
        return base(h, &h.version, "NotReady", 0, Some("Plugin is not installed yet".into()));
    };
    let has_handler_status = handler_status.is_some();
    let (mut st, written) = match handler_status {
        Some((file, mtime)) => {
            (base(h, dir.version(), &file.status, file.code, file.message.clone()), *mtime)
        }
        None => (base(h, dir.version(), "NotReady", 0, None), SystemTime::UNIX_EPOCH),
    };
    // The heartbeat file first: most handlers write none, and then the manifest is not read.
    if let Some(hb) = dir.heartbeat(now) {
        if dir.manifest().is_ok_and(|m| m.report_heartbeat) {
            st.status = hb.status;
            st.code = hb.code;
            if let Some(m) = hb.message {
                st.formatted_message = Some(FormattedMessage::en_us(crate::base::logging::redact_sas(&m)));
            }
        }
    }
    if h.state == Some(ExtensionState::Enabled) && has_handler_status {
        let (status, time) = match dir.read_status(ext, seq) {
            Some((Ok(status), mtime)) => (status, mtime),
            Some((Err(e), mtime)) => (e.to_status(&dir.full_name(), seq), mtime),
            None => (
                agent_status(
                    StatusValue::Transitioning,
                    0,
                    &format!(
                        "This status is being reported by the Guest Agent since no status file was reported by extension {}: [ExtensionStatusError] Status file {} does not exist",
                        ext.unwrap_or(&h.name),
                        dir.status_file(ext, seq).unwrap_or_default().display()
                    ),
                ),
                written,
            ),
        };
        st.runtime_settings_status = Some(settings_status(ext, seq, &status, &utc(time)));
    }
    st
}

fn agent_status(status: StatusValue, code: i64, message: &str) -> ExtensionStatus {
    ExtensionStatus {
        name: None,
        operation: None,
        configuration_applied_time: None,
        status,
        code,
        message: Some(message.to_string()),
        substatus: Vec::new(),
        truncated: false,
    }
}

fn settings_status(ext: Option<&str>, seq: u64, s: &ExtensionStatus, time: &str) -> RuntimeSettingsStatus {
    RuntimeSettingsStatus {
        extension_name: ext.map(str::to_string),
        sequence_number: seq,
        settings_status: SettingsStatus {
            version: 1.0,
            timestamp_utc: time.to_string(),
            status: ExtensionStatusReport::from(s),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_on_disk_are_reported_per_extension_with_the_newest_settings() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(tmp.path());
        let config = Config::default();
        let (lib, logs) = Extensions::dirs(&root, &config);
        let write = |dir: &HandlerDir, file: &str, text: &str| {
            let path = dir.base().join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        let manifest = r#"[{"handlerManifest":{"installCommand":"i","uninstallCommand":"u","updateCommand":"p","enableCommand":"e","disableCommand":"d"}}]"#;
        let multi = HandlerDir::new(&lib, &logs, "Pub.Multi", "1.0.0").expect("handler dir");
        write(&multi, "HandlerManifest.json", manifest);
        multi.set_state(HandlerState::Enabled).expect("state");
        multi.set_status("Ready", 0, "Plugin enabled", true).expect("status");
        write(&multi, "config/a.1.settings", "{}");
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(multi.base().join("config/a.1.settings"))
            .and_then(|f| f.set_modified(old))
            .expect("mtime");
        write(&multi, "config/a.2.settings", "{}");
        write(&multi, "config/b.5.settings", "{}");
        write(&multi, "status/b.5.status", r#"[{"status":{"status":"success","code":0}}]"#);
        // Not installed: not reported.
        let gone = HandlerDir::new(&lib, &logs, "Pub.Gone", "1.0.0").expect("handler dir");
        write(&gone, "HandlerManifest.json", manifest);

        let got = handler_statuses_on_disk(&root, &config, &Extensions::default(), SystemTime::now());
        let entries: Vec<(String, Option<String>, u64, String)> = got
            .iter()
            .map(|h| {
                let r = h.runtime_settings_status.as_ref().expect("runtime status");
                (h.handler_name.clone(), r.extension_name.clone(), r.sequence_number, h.status.clone())
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("Pub.Multi".to_string(), Some("a".to_string()), 2, "Ready".to_string()),
                ("Pub.Multi".to_string(), Some("b".to_string()), 5, "Ready".to_string()),
            ]
        );
    }
}
