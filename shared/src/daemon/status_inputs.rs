//! Whether the status document can have changed since it was last built, known without reading
//! the files it is built from.
//!
//! The document is made of the agent state (the goal state and the extensions task's last
//! result: the caller compares those), `/etc/hostname`, the `disable_agent` marker in `Lib.Dir`,
//! and each handler's files: `config/HandlerStatus`, `status/<seq>.status`, `heartbeat.log` and
//! `HandlerManifest.json`, the `config/*.wala-seq` markers, and which versions are installed. Those
//! files were read on every poll (eight path lookups and three opens with one handler, a quarter of
//! an idle period's CPU), though at rest none of them changes. Instead, inotify watches `/etc`,
//! `Lib.Dir` and every handler directory with its `config` and `status` directories, and a poll
//! rebuilds the document only when one of them reported a change that matters (below), when the
//! agent state changed, or when the heartbeat is due, which bounds what a lost change could cost.
//!
//! Always rebuilt, as before: where inotify cannot be used (no instance left, a watch refused),
//! after the kernel dropped events, and while any handler writes `heartbeat.log` (its staleness
//! depends on the time, not only on the files).

use std::path::{Path, PathBuf};

use crate::base::dir_watch::{DirWatch, Event};
use crate::base::root::HostRoot;
use crate::documents::conf::Config;

/// The watch on the status document's files.
#[derive(Debug)]
pub struct StatusInputs {
    watch: Option<DirWatch>,
    lib: PathBuf,
    etc: PathBuf,
    /// Every watch the last [`Self::arm`] wanted is in place.
    armed: bool,
    /// A handler has a `heartbeat.log`: the document depends on the time.
    time_dependent: bool,
}

impl StatusInputs {
    pub fn new(root: &HostRoot, config: &Config) -> Self {
        let watch = DirWatch::new()
            .map_err(|e| log::info!("status files are read on every poll: no inotify instance ({e})"))
            .ok();
        Self {
            watch,
            lib: root.path(config.lib_dir.as_path()),
            etc: root.path("/etc"),
            armed: false,
            time_dependent: false,
        }
    }

    /// Whether anything the document is made of may have changed since the last [`Self::arm`]
    /// (`true` when not armed). Reads the queued changes.
    pub fn changed(&mut self) -> bool {
        let Some(watch) = &mut self.watch else { return true };
        let events = watch.changes();
        let relevant = events.iter().filter(|e| self.matters(e)).count();
        relevant > 0 || !self.armed || self.time_dependent
    }

    fn matters(&self, e: &Event) -> bool {
        match e {
            Event::Overflow | Event::Gone { .. } => true,
            // Lib.Dir: handler directories coming and going, and the marker; not the files the
            // agent itself writes there (the status document after each upload, goal states).
            Event::Entry { dir, name, is_dir } if *dir == self.lib => *is_dir || name == "disable_agent",
            Event::Entry { dir, name, .. } if *dir == self.etc => name == "hostname",
            Event::Entry { .. } => true,
        }
    }

    /// Watch what the next document will be read from: call before reading it, so a change made
    /// while it is read is reported by the next [`Self::changed`].
    pub fn arm(&mut self) {
        let Some(watch) = &mut self.watch else { return };
        let mut ok = watch.watch(&self.etc).is_ok() && watch.watch(&self.lib).is_ok();
        let mut heartbeat = false;
        for handler in handler_dirs(&self.lib) {
            ok &= watch.watch(&handler).is_ok();
            for sub in ["config", "status"] {
                let d = handler.join(sub);
                // Made by the handler's installation; until then the handler directory's own
                // watch reports its creation.
                if d.is_dir() {
                    ok &= watch.watch(&d).is_ok();
                }
            }
            heartbeat |= handler.join("heartbeat.log").exists();
        }
        if !ok && self.armed {
            log::info!("status files are read on every poll: a directory could not be watched");
        }
        self.armed = ok;
        self.time_dependent = heartbeat;
    }
}

/// Directories of `lib` named like a handler (`<Name>-<Version>`).
fn handler_dirs(lib: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name().to_string_lossy().contains('-'))
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(root: &Path) -> StatusInputs {
        let config = Config::default();
        let host = HostRoot::new(root);
        std::fs::create_dir_all(host.path(config.lib_dir.as_path())).expect("lib");
        std::fs::create_dir_all(host.path("/etc")).expect("etc");
        StatusInputs::new(&host, &config)
    }

    #[test]
    fn at_rest_nothing_changed_and_every_input_file_is_seen_changing() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut s = inputs(d.path());
        let lib = d.path().join("var/lib/waagent");
        let handler = lib.join("Wala.Test.Example-1.0.0");
        for sub in ["config", "status"] {
            std::fs::create_dir_all(handler.join(sub)).expect("handler");
        }
        assert!(s.changed(), "not armed yet");
        s.arm();
        assert!(!s.changed(), "armed, nothing changed");

        let changes: [(&str, PathBuf); 6] = [
            ("the extension's status", handler.join("status/0.status")),
            ("HandlerStatus", handler.join("config/HandlerStatus")),
            ("a manifest", handler.join("HandlerManifest.json")),
            ("the disable_agent marker", lib.join("disable_agent")),
            ("the hostname", d.path().join("etc/hostname")),
            ("a new handler version", lib.join("Wala.Test.Example-1.1.0")),
        ];
        for (what, path) in changes {
            if what.starts_with("a new handler") {
                std::fs::create_dir(&path).expect("mkdir");
            } else {
                std::fs::write(&path, "x").expect("write");
            }
            assert!(s.changed(), "{what}");
            s.arm();
            assert!(!s.changed(), "{what}: seen once");
        }

        // What the agent writes in Lib.Dir itself, and other files in /etc, do not count.
        std::fs::write(lib.join("waagent_status.json"), "{}").expect("status copy");
        std::fs::write(lib.join("GoalState.2.xml"), "<x/>").expect("goal state");
        std::fs::write(d.path().join("etc/motd"), "hi").expect("motd");
        assert!(!s.changed(), "not an input of the document");

        // The new version's status directory, made after it was first watched, is watched once
        // the rebuild that its creation caused has armed again.
        let new_status = lib.join("Wala.Test.Example-1.1.0/status");
        std::fs::create_dir(&new_status).expect("mkdir");
        assert!(s.changed(), "a directory made in a watched handler directory");
        s.arm();
        std::fs::write(new_status.join("0.status"), "[]").expect("write");
        assert!(s.changed(), "a file in the new status directory");

        // A handler removed: its directories' watches end, which counts as a change.
        s.arm();
        std::fs::remove_dir_all(lib.join("Wala.Test.Example-1.1.0")).expect("rm");
        assert!(s.changed(), "a handler removed");
    }

    #[test]
    fn a_handler_with_a_heartbeat_file_makes_every_poll_rebuild() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut s = inputs(d.path());
        let handler = d.path().join("var/lib/waagent/Wala.Test.Beat-1.0.0");
        std::fs::create_dir_all(&handler).expect("handler");
        std::fs::write(handler.join("heartbeat.log"), "[]").expect("heartbeat");
        s.arm();
        assert!(s.changed(), "its staleness depends on the time");
        std::fs::remove_file(handler.join("heartbeat.log")).expect("rm");
        assert!(s.changed(), "the file removed");
        s.arm();
        assert!(!s.changed(), "without the file, the files decide again");
    }
}
