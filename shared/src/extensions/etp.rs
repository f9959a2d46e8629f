//! The Extension Telemetry Pipeline (wire.md §10.5, §12.3): collecting the event files extensions
//! write to `<Extension.LogDir>/<Handler>/events/` (advertised as `eventsFolder` in
//! `HandlerEnvironment.json`), and sending them to the WireServer as waagent's
//! `GuestAgentGenericLogs` events.
//!
//! Every `Debug.EtpCollectionPeriod` seconds (300, as waagent), for each handler directory:
//!
//! * event files (`<digits>.json`) are read newest first, each one at most
//!   [`MAX_EVENT_FILE_SIZE`]; events are validated by [`parse_event_file`] (required fields, event
//!   and message sizes); at most [`MAX_EVENTS_PER_HANDLER`] events are taken per handler and period;
//! * every file read is deleted, and so is everything else left in the folder (waagent empties it
//!   each period too), so the folder never holds more than one period's worth;
//! * a file that is not used (too large, not UTF-8, not JSON, not a regular file: a symbolic link,
//!   a FIFO) is deleted with one log line; dropped events are counted per reason, one log line
//!   per handler;
//! * a handler directory or `events` folder that is a symbolic link is neither read nor emptied
//!   (waagent follows it): one log line.
//!
//! Differences from waagent: a folder with more than [`MAX_FILES_LISTED`] entries is not sorted as
//! a whole (the first ones listed are read, the rest deleted unread); sending happens in the same
//! task, and events a failed send leaves are kept in memory for the next period, at most
//! [`MAX_PENDING`] (waagent hands them to its sender thread's queue and forgets them).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::documents::extensions::events::{
    is_event_file_name, parse_event_file, ExtensionEvent, MAX_EVENT_FILE_SIZE,
};
use crate::documents::wire::health::{ParamValue, TelemetryEvent};
use crate::platform::telemetry::Common;

/// waagent's `GuestAgentGenericLogs` provider and event id, which extension events go to.
pub const PROVIDER: &str = "FFF0196F-EE4C-4EAF-9AA5-776F622DEB4F";
pub const EVENT_ID: u32 = 7;
/// Events taken per handler per period (waagent's limit).
pub const MAX_EVENTS_PER_HANDLER: usize = 360;
/// Entries of an events folder looked at per period; the rest are deleted unread.
pub const MAX_FILES_LISTED: usize = 10_000;
/// Events kept in memory when sending fails (the oldest go first).
pub const MAX_PENDING: usize = 3_600;
/// waagent's `Debug.EtpCollectionPeriod` default.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(300);

/// One collected event and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// The handler directory's name, `<Publisher>.<Type>`.
    pub handler: String,
    pub event: ExtensionEvent,
    /// The event file's modification time (waagent's event time).
    pub file_time: SystemTime,
}

/// What one collection did (for logs and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collection {
    pub events: Vec<Collected>,
    /// One line per file, folder or handler that was refused or cut short.
    pub problems: Vec<String>,
    /// Files and other entries deleted.
    pub deleted: usize,
}

/// Collect the events of every handler under `log_dir` (the host path of `Extension.LogDir`),
/// deleting the event files. Problems are logged as warnings, one line each, and returned.
pub fn collect(log_dir: &Path) -> Collection {
    let mut out = Collection::default();
    let Ok(entries) = std::fs::read_dir(log_dir) else { return out };
    let mut handlers: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            crate::documents::extensions::names::check_handler_name(&name).ok()?;
            Some((name, e.path()))
        })
        .collect();
    handlers.sort();
    for (name, dir) in handlers {
        collect_handler(&name, &dir, &mut out);
    }
    for p in &out.problems {
        log::warn!("extension events: {p}");
    }
    out
}

fn collect_handler(handler: &str, dir: &Path, out: &mut Collection) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return };
    if meta.file_type().is_symlink() {
        if dir.join("events").exists() {
            out.problems.push(format!("{}: a symbolic link; its events are not read", dir.display()));
        }
        return;
    }
    if !meta.is_dir() {
        return;
    }
    let events_dir = dir.join("events");
    let Ok(meta) = std::fs::symlink_metadata(&events_dir) else { return };
    if !meta.is_dir() {
        out.problems.push(format!(
            "{}: not a directory (a symbolic link?); it is neither read nor emptied",
            events_dir.display()
        ));
        return;
    }
    let Ok(entries) = std::fs::read_dir(&events_dir) else { return };
    let mut files: Vec<String> = Vec::new();
    let mut residue: Vec<PathBuf> = Vec::new();
    let mut unlisted = 0usize;
    for e in entries.flatten() {
        match e.file_name().into_string() {
            Ok(name) if is_event_file_name(&name) && files.len() < MAX_FILES_LISTED => files.push(name),
            Ok(name) if is_event_file_name(&name) => {
                unlisted += 1;
                let _ = std::fs::remove_file(e.path());
            }
            _ => residue.push(e.path()),
        }
    }
    if unlisted > 0 {
        out.problems.push(format!(
            "{}: more than {MAX_FILES_LISTED} event files; {unlisted} deleted unread",
            events_dir.display()
        ));
    }
    // Newest first: the names are times, so a longer name is a later one.
    files.sort_by(|a, b| (b.len(), b).cmp(&(a.len(), a)));
    let mut taken = 0usize;
    let mut dropped: BTreeMap<String, usize> = BTreeMap::new();
    let mut full = false;
    for name in files {
        let path = events_dir.join(&name);
        if !full {
            match read_event_file(&path) {
                Ok((text, file_time)) => match parse_event_file(&text) {
                    Ok(parsed) => {
                        for why in parsed.dropped {
                            *dropped.entry(why).or_default() += 1;
                        }
                        for event in parsed.events {
                            if taken == MAX_EVENTS_PER_HANDLER {
                                break;
                            }
                            out.events.push(Collected { handler: handler.to_string(), event, file_time });
                            taken += 1;
                        }
                    }
                    Err(e) => out.problems.push(format!("{}: dropped: {e}", path.display())),
                },
                Err(why) => out.problems.push(format!("{}: dropped: {why}", path.display())),
            }
            if taken == MAX_EVENTS_PER_HANDLER {
                full = true;
                out.problems.push(format!(
                    "Reached max count for the extension: {handler}; Max Limit: {MAX_EVENTS_PER_HANDLER}. Skipping the rest."
                ));
            }
        }
        if std::fs::remove_file(&path).is_ok() {
            out.deleted += 1;
        }
    }
    for path in residue {
        // Not a directory: whatever else is in the folder goes, as with waagent.
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if !is_dir && std::fs::remove_file(&path).is_ok() {
            out.deleted += 1;
        }
    }
    if !dropped.is_empty() {
        let details: Vec<String> =
            dropped.iter().map(|(why, n)| format!("Reason: {why}; Dropped Count: {n}")).collect();
        out.problems
            .push(format!("Dropped events for Extension: {handler}; Details: {}", details.join("; ")));
    }
    if taken > 0 {
        log::info!("Collected {taken} events for extension: {handler}");
    }
}

/// Read one event file: a regular file (not followed through a symbolic link), at most
/// [`MAX_EVENT_FILE_SIZE`] bytes, UTF-8.
fn read_event_file(path: &Path) -> Result<(String, SystemTime), String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "a symbolic link".to_string(),
            _ => format!("cannot open: {e}"),
        })?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_EVENT_FILE_SIZE {
        return Err(format!(
            "its size is {} bytes > Max size allowed {MAX_EVENT_FILE_SIZE} bytes",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_EVENT_FILE_SIZE + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_EVENT_FILE_SIZE {
        return Err(format!("larger than {MAX_EVENT_FILE_SIZE} bytes"));
    }
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    Ok((text, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
}

/// The wire form of one extension event (waagent's `GuestAgentGenericLogs` schema): the agent's
/// common parameters, with the extension's `EventPid`, `EventTid` and `TaskName`, then
/// `EventName` (`<Handler>-<Version>`), `CapabilityUsed` (the level), `Context1` (the message),
/// `Context2` (its timestamp) and `Context3` (the operation id).
pub fn to_wire(c: &Collected, common: &Common) -> TelemetryEvent {
    let s = |v: &str| ParamValue::Str(v.to_string());
    let e = &c.event;
    TelemetryEvent {
        provider_id: PROVIDER.into(),
        event_id: EVENT_ID,
        params: vec![
            ("GAVersion".into(), s(&format!("wala-{}", crate::VERSION))),
            ("ContainerId".into(), s(&common.container_id)),
            ("OpcodeName".into(), s(&crate::base::logging::timestamp(c.file_time))),
            ("EventTid".into(), s(&e.event_tid)),
            ("EventPid".into(), s(&e.event_pid)),
            ("TaskName".into(), s(&e.task_name)),
            ("OSVersion".into(), s(&common.os_version)),
            ("ExecutionMode".into(), s("IAAS")),
            ("RAM".into(), ParamValue::U64(common.ram_mib)),
            ("Processors".into(), ParamValue::U64(common.processors)),
            ("EventName".into(), s(&format!("{}-{}", c.handler, e.version))),
            ("CapabilityUsed".into(), s(&e.event_level)),
            ("Context1".into(), s(&e.message)),
            ("Context2".into(), s(&e.timestamp)),
            ("Context3".into(), s(&e.operation_id)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(msg: &str) -> String {
        format!(
            r#"{{"Version":"1.2","Timestamp":"2024-01-01T00:00:00Z","TaskName":"t","EventLevel":"Informational","Message":"{msg}","EventPid":"7","EventTid":"8","OperationId":"op"}}"#
        )
    }

    fn events_dir(log: &Path, handler: &str) -> PathBuf {
        let d = log.join(handler).join("events");
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    fn messages(c: &Collection) -> Vec<&str> {
        c.events.iter().map(|e| e.event.message.as_str()).collect()
    }

    #[test]
    fn events_are_read_newest_first_validated_and_every_file_deleted() {
        let log = tempfile::tempdir().expect("tempdir");
        let d = events_dir(log.path(), "Contoso.Ext");
        std::fs::write(d.join("100.json"), format!("[{}]", event("old"))).expect("write");
        std::fs::write(d.join("99999.json"), format!("[{},{{\"Message\":\"x\"}}]", event("new")))
            .expect("write");
        std::fs::write(d.join("200.json"), "not json").expect("write");
        std::fs::write(d.join("300.json"), [0xffu8, 0xfe, b'[']).expect("write");
        std::fs::write(d.join("notes.txt"), "residue").expect("write");
        std::fs::create_dir(d.join("sub")).expect("mkdir");
        let c = collect(log.path());
        assert_eq!(messages(&c), ["new", "old"]);
        assert_eq!(c.events[0].handler, "Contoso.Ext");
        assert_eq!(c.events[0].event.version, "1.2");
        assert_eq!(c.deleted, 5);
        let left: Vec<_> =
            std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(left, ["sub"], "a directory is left alone");
        assert!(c.problems.iter().any(|p| p.contains("200.json: dropped") && p.contains("not valid JSON")));
        assert!(c.problems.iter().any(|p| p.contains("300.json: dropped: not UTF-8")));
        assert!(c
            .problems
            .iter()
            .any(|p| p
                .starts_with("Dropped events for Extension: Contoso.Ext; Details: Reason: MissingKeyError")));
        assert_eq!(c.problems.len(), 3, "{:?}", c.problems);
        assert!(collect(log.path()).events.is_empty(), "nothing is sent twice");
    }

    #[test]
    fn oversized_files_too_many_events_and_hostile_entries_are_bounded() {
        let log = tempfile::tempdir().expect("tempdir");
        let d = events_dir(log.path(), "Contoso.Big");
        let big = vec![b' '; MAX_EVENT_FILE_SIZE as usize + 1];
        std::fs::write(d.join("5.json"), big).expect("write");
        let many: Vec<String> = (0..400).map(|i| event(&format!("m{i}"))).collect();
        std::fs::write(d.join("4.json"), format!("[{}]", many.join(","))).expect("write");
        std::fs::write(d.join("3.json"), format!("[{}]", event("later file"))).expect("write");
        let target = log.path().join("secret");
        std::fs::write(&target, format!("[{}]", event("through a link"))).expect("write");
        std::os::unix::fs::symlink(&target, d.join("6.json")).expect("symlink");
        let fifo = d.join("7.json");
        let cpath = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a path we own.
        assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0);
        let c = collect(log.path());
        assert_eq!(c.events.len(), MAX_EVENTS_PER_HANDLER);
        assert_eq!(c.events[0].event.message, "m0");
        assert!(c.problems.iter().any(|p| p.contains("5.json: dropped: its size is 4194305 bytes")));
        assert!(c.problems.iter().any(|p| p.contains("6.json: dropped: a symbolic link")));
        assert!(c.problems.iter().any(|p| p.contains("7.json: dropped: not a regular file")));
        assert!(c.problems.iter().any(|p| p.starts_with("Reached max count for the extension: Contoso.Big")));
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "every file goes, read or not");
        assert!(target.exists(), "a link's target is not touched");
    }

    #[test]
    fn linked_folders_and_foreign_directories_are_neither_read_nor_emptied() {
        let log = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::fs::write(elsewhere.path().join("1.json"), format!("[{}]", event("x"))).expect("write");
        std::fs::create_dir(log.path().join("Contoso.Linked")).expect("mkdir");
        std::os::unix::fs::symlink(elsewhere.path(), log.path().join("Contoso.Linked/events"))
            .expect("symlink");
        let whole = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(whole.path().join("events")).expect("mkdir");
        std::fs::write(whole.path().join("events/1.json"), format!("[{}]", event("y"))).expect("write");
        std::os::unix::fs::symlink(whole.path(), log.path().join("Contoso.Whole")).expect("symlink");
        let other = events_dir(log.path(), "not-a-handler");
        std::fs::write(other.join("1.json"), format!("[{}]", event("z"))).expect("write");
        let c = collect(log.path());
        assert!(c.events.is_empty(), "{c:?}");
        assert_eq!(c.problems.len(), 2, "{:?}", c.problems);
        assert!(elsewhere.path().join("1.json").exists());
        assert!(whole.path().join("events/1.json").exists());
        assert!(other.join("1.json").exists());
    }

    #[test]
    fn wire_form_follows_the_generic_logs_schema() {
        let log = tempfile::tempdir().expect("tempdir");
        let d = events_dir(log.path(), "Contoso.Ext");
        std::fs::write(d.join("1.json"), event("see https://a/b?sig=s3cret")).expect("write");
        let c = collect(log.path());
        let common = Common {
            container_id: "cid".into(),
            os_version: "debian:12".into(),
            processors: 2,
            ram_mib: 512,
        };
        let w = to_wire(&c.events[0], &common);
        assert_eq!((w.provider_id.as_str(), w.event_id), (PROVIDER, EVENT_ID));
        let get = |k: &str| w.params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("EventName"), Some(ParamValue::Str("Contoso.Ext-1.2".into())));
        assert_eq!(get("CapabilityUsed"), Some(ParamValue::Str("Informational".into())));
        assert_eq!(get("Context1"), Some(ParamValue::Str("see https://a/b?<redacted>".into())));
        assert_eq!(get("Context2"), Some(ParamValue::Str("2024-01-01T00:00:00Z".into())));
        assert_eq!(get("Context3"), Some(ParamValue::Str("op".into())));
        assert_eq!(get("EventPid"), Some(ParamValue::Str("7".into())));
        assert_eq!(get("TaskName"), Some(ParamValue::Str("t".into())));
        assert_eq!(get("ContainerId"), Some(ParamValue::Str("cid".into())));
    }
}
