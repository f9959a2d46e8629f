//! One daemon per machine. A unit that runs `waagent -daemon` (a distribution's own, or a copy an
//! image carries in `/etc/systemd/system`) next to `wala-agentd.service` would otherwise start a
//! second daemon processing the same goal states and extensions (waagent guards against that with
//! its pid file, `Pid.File`). The daemon holds an exclusive `flock` on `/run/wala/agentd.lock`
//! (released by the kernel when the process ends, so a crash leaves nothing stale) and writes its
//! pid into it; a second daemon finds the lock taken and exits.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::base::root::HostRoot;

/// The lock file, under the root.
pub const LOCK_FILE: &str = "/run/wala/agentd.lock";

/// The lock, held while this value lives.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Another daemon holds it (its pid, when it wrote one).
    #[error("another wala daemon is running{} (lock {path})", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Busy { pid: Option<u32>, path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Take the daemon's lock under `root`, without waiting.
pub fn acquire(root: &HostRoot) -> Result<InstanceLock, InstanceError> {
    let path = root.path(LOCK_FILE);
    let io = |source| InstanceError::Io { path: path.clone(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io)?;
    // SAFETY: flock on a valid open file descriptor; released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.take(32).read_to_string(&mut text);
            return Err(InstanceError::Busy { pid: text.trim().parse().ok(), path });
        }
        return Err(io(e));
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(InstanceLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_the_lock_is_free_again_once_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let first = acquire(&root).expect("first");
        let text = std::fs::read_to_string(dir.path().join("run/wala/agentd.lock")).expect("read");
        assert_eq!(text.trim(), std::process::id().to_string());
        // flock locks belong to the open file description: a second open in this process is
        // refused as another process's would be.
        match acquire(&root) {
            Err(InstanceError::Busy { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(first);
        acquire(&root).expect("free again");
    }
}
