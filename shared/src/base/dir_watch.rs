//! Directory watches (inotify): what changed in a few directories since the last look, found
//! with one non-blocking `read` rather than by reading the directories' files again.
//!
//! A watch covers the directory's entries (created, deleted, renamed, written, attributes
//! changed) and the directory itself (deleted or moved: the watch then ends). When the kernel's
//! queue overflowed, events were lost: [`Event::Overflow`] says so, and the caller must treat
//! everything as changed.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What one watch reports: every change to an entry, and the end of the directory itself.
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An entry of a watched directory changed (`name`); `is_dir` when that entry is a directory.
    Entry { dir: PathBuf, name: OsString, is_dir: bool },
    /// A watched directory was deleted or moved away: its watch has ended.
    Gone { dir: PathBuf },
    /// The kernel's queue overflowed: changes were lost.
    Overflow,
}

/// An inotify instance and the directories it watches.
#[derive(Debug)]
pub struct DirWatch {
    fd: OwnedFd,
    dirs: HashMap<i32, PathBuf>,
}

impl DirWatch {
    pub fn new() -> io::Result<Self> {
        // SAFETY: inotify_init1 takes flags only and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) }, dirs: HashMap::new() })
    }

    /// Watch `dir` (watching it again is harmless: the kernel keeps one watch per directory).
    pub fn watch(&mut self, dir: &Path) -> io::Result<()> {
        let c = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
        // SAFETY: a valid descriptor and a NUL-terminated path that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        self.dirs.insert(wd, dir.to_path_buf());
        Ok(())
    }

    /// The directories watched now (tests check that a watch ends with its directory).
    #[cfg(test)]
    fn watched(&self) -> impl Iterator<Item = &Path> {
        self.dirs.values().map(PathBuf::as_path)
    }

    /// Every change queued since the last call (none: one `read` that finds nothing).
    pub fn changes(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        // Aligned for `inotify_event`; room for many events with names up to NAME_MAX. Left
        // uninitialised: only what the kernel wrote is read, and zeroing 8 KiB on every call (once
        // an idle period, where the read finds nothing) was most of what a call cost.
        let mut buf = std::mem::MaybeUninit::<[u64; 1024]>::uninit();
        loop {
            // SAFETY: the kernel writes at most the length given into a buffer we own.
            let n = unsafe {
                libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), std::mem::size_of_val(&buf))
            };
            if n <= 0 {
                // EAGAIN: nothing more queued. Any other error: treat what cannot be read as lost.
                if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                    out.push(Event::Overflow);
                }
                return out;
            }
            // SAFETY: the kernel wrote (initialised) the first `n` bytes of the buffer.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
            self.parse(bytes, &mut out);
        }
    }

    fn parse(&mut self, mut bytes: &[u8], out: &mut Vec<Event>) {
        const HEAD: usize = std::mem::size_of::<libc::inotify_event>();
        while bytes.len() >= HEAD {
            let field =
                |at: usize| u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            let (wd, mask, len) = (field(0) as i32, field(4), field(12) as usize);
            let name_bytes = bytes.get(HEAD..HEAD + len).unwrap_or_default();
            let name = &name_bytes[..name_bytes.iter().position(|&b| b == 0).unwrap_or(name_bytes.len())];
            bytes = bytes.get(HEAD + len..).unwrap_or_default();
            if mask & libc::IN_Q_OVERFLOW != 0 {
                out.push(Event::Overflow);
                continue;
            }
            let Some(dir) = self.dirs.get(&wd).cloned() else { continue };
            if mask & libc::IN_IGNORED != 0 {
                // The watch ended (its directory is gone, or it was removed).
                self.dirs.remove(&wd);
                out.push(Event::Gone { dir });
            } else if mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                out.push(Event::Gone { dir });
            } else {
                let is_dir = mask & libc::IN_ISDIR != 0;
                out.push(Event::Entry { dir, name: OsStr::from_bytes(name).to_os_string(), is_dir });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(events: &[Event]) -> Vec<String> {
        let name = |e: &Event| match e {
            Event::Entry { name, .. } => Some(name.to_string_lossy().into_owned()),
            _ => None,
        };
        events.iter().filter_map(name).collect()
    }

    #[test]
    fn nothing_changed_reads_nothing_and_each_kind_of_change_is_reported() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(d.path().join("sub")).expect("sub");
        std::fs::write(d.path().join("a"), "1").expect("a");
        let mut w = DirWatch::new().expect("inotify");
        w.watch(d.path()).expect("watch");
        assert!(w.changes().is_empty(), "nothing changed yet");

        std::fs::write(d.path().join("a"), "2").expect("rewrite a");
        let got = w.changes();
        assert!(names(&got).iter().all(|n| n == "a") && !got.is_empty(), "{got:?}");
        assert!(w.changes().is_empty(), "read once");

        std::fs::write(d.path().join("b.tmp"), "x").expect("b.tmp");
        std::fs::rename(d.path().join("b.tmp"), d.path().join("b")).expect("rename");
        assert!(names(&w.changes()).contains(&"b".to_string()), "a rename into place");

        let f = std::fs::File::options().write(true).open(d.path().join("a")).expect("open");
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).expect("touch");
        assert_eq!(names(&w.changes()), ["a"], "an mtime change");

        std::fs::remove_dir(d.path().join("sub")).expect("rmdir");
        let got = w.changes();
        assert!(
            got.iter().any(|e| matches!(e, Event::Entry { name, is_dir: true, .. } if name == "sub")),
            "{got:?}"
        );
    }

    #[test]
    fn more_events_than_one_read_holds_are_all_reported_by_name() {
        // Each event carries its name: 600 long names are over 100 KB of events, a dozen reads
        // into the same (uninitialised, reused) buffer.
        let d = tempfile::tempdir().expect("tempdir");
        let mut w = DirWatch::new().expect("inotify");
        w.watch(d.path()).expect("watch");
        let name = |i: usize| format!("{i:04}-{}", "n".repeat(150));
        for i in 0..600 {
            std::fs::write(d.path().join(name(i)), "x").expect("write");
        }
        let got = w.changes();
        assert!(!got.contains(&Event::Overflow), "the kernel's queue holds 16384 events");
        let seen: std::collections::HashSet<String> = names(&got).into_iter().collect();
        assert_eq!(seen.len(), 600, "every file by its name");
        assert!((0..600).all(|i| seen.contains(&name(i))));
        assert!(w.changes().is_empty(), "all read");
    }

    #[test]
    fn a_watched_directory_that_goes_away_ends_its_watch() {
        let d = tempfile::tempdir().expect("tempdir");
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).expect("sub");
        let mut w = DirWatch::new().expect("inotify");
        w.watch(&sub).expect("watch");
        assert_eq!(w.watched().count(), 1);
        std::fs::remove_dir(&sub).expect("rmdir");
        let got = w.changes();
        assert!(got.contains(&Event::Gone { dir: sub.clone() }), "{got:?}");
        assert_eq!(w.watched().count(), 0, "the watch ended");
        assert!(w.watch(&sub).is_err(), "a directory that is not there cannot be watched");
    }
}
