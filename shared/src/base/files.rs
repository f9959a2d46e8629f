//! The one atomic file writer, and small file-system helpers built on it.
//!
//! A write goes to a temporary file in the same directory (created exclusively, never through a
//! symlink), gets its mode and owner, is fsynced, renamed over the target, and the directory is
//! fsynced. A crash leaves either the old file or the new one, never half of one.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An I/O error with the path and the operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct FileError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FileError {
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self { op, path: path.into(), source }
    }
}

/// How a file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Permission bits of the new file.
    pub mode: u32,
    /// `(uid, gid)` to own the file; `None` keeps the writer's.
    pub owner: Option<(u32, u32)>,
}

impl WriteOptions {
    pub const fn mode(mode: u32) -> Self {
        Self { mode, owner: None }
    }

    pub const fn owned_by(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }
}

/// Atomically replace `path` with `contents`. Refuses to write when `path` is a symlink.
pub fn write_atomic(path: &Path, contents: &[u8], opts: WriteOptions) -> Result<(), FileError> {
    refuse_symlink(path)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = temp_name(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(opts.mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| FileError::new("create", &tmp, e))?;
        // The umask may have cleared bits of the requested mode: set it exactly.
        file.set_permissions(fs::Permissions::from_mode(opts.mode))
            .map_err(|e| FileError::new("chmod", &tmp, e))?;
        if let Some((uid, gid)) = opts.owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                .map_err(|e| FileError::new("chown", &tmp, e))?;
        }
        file.write_all(contents).map_err(|e| FileError::new("write", &tmp, e))?;
        file.sync_all().map_err(|e| FileError::new("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| FileError::new("rename", path, e))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(dir)
}

/// fsync a directory so that a rename or create in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| FileError::new("fsync", dir, e))
}

/// Create `dir` and its missing parents; directories created here get `mode`. An existing
/// directory is left as it is. A symlink where the directory should be is refused.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<(), FileError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_dir() => return Ok(()),
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(FileError::new(
                "create directory",
                dir,
                io::Error::other("refusing to use a symlink as a directory"),
            ))
        }
        Ok(_) => {
            return Err(FileError::new(
                "create directory",
                dir,
                io::Error::other("a file of another type is in the way"),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(FileError::new("stat", dir, e)),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(parent, 0o755)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(FileError::new("create directory", dir, e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(|e| FileError::new("chmod", dir, e))
}

/// Open (creating it, 0600, never through a symlink) the lock file `path` and take an exclusive
/// `flock` on it, waiting for any other holder; the lock goes when the returned file is dropped.
pub fn lock_exclusive(path: &Path) -> Result<std::fs::File, FileError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| FileError::new("open", path, e))?;
    loop {
        // SAFETY: flock on a valid open file descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(FileError::new("lock", path, e));
        }
    }
}

/// Wait until no process holds an exclusive `flock` on `path` (taking, then dropping, a shared
/// one). `Ok(false)` when there is no such file: then no one ever locked it.
pub fn wait_unlocked(path: &Path) -> Result<bool, FileError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(FileError::new("open", path, e)),
    };
    loop {
        // SAFETY: flock on a valid open file descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(FileError::new("lock", path, e));
        }
    }
}

/// Read a file to a string; `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, FileError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::new("read", path, e)),
    }
}

/// Remove a file; nothing to do when it does not exist.
pub fn remove_optional(path: &Path) -> Result<(), FileError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::new("remove", path, e)),
    }
}

/// The permission bits and owner of a file, for checks and tests.
pub fn mode_and_owner(path: &Path) -> Result<(u32, u32, u32), FileError> {
    let meta = fs::symlink_metadata(path).map_err(|e| FileError::new("stat", path, e))?;
    Ok((meta.mode() & 0o7777, meta.uid(), meta.gid()))
}

fn refuse_symlink(path: &Path) -> Result<(), FileError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Err(FileError::new("write", path, io::Error::other("refusing to write through a symlink")))
        }
        _ => Ok(()),
    }
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".wala-tmp.{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        write_atomic(&p, b"one", WriteOptions::mode(0o600)).expect("write");
        assert_eq!(fs::read(&p).expect("read"), b"one");
        assert_eq!(mode_and_owner(&p).expect("stat").0, 0o600);
        write_atomic(&p, b"two", WriteOptions::mode(0o644)).expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert_eq!(mode_and_owner(&p).expect("stat").0, 0o644);
        // No temp file left behind.
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn refuses_symlink_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        fs::write(&target, b"keep").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = write_atomic(&link, b"evil", WriteOptions::mode(0o600)).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(fs::read(&target).expect("read"), b"keep");
    }

    #[test]
    fn wait_unlocked_returns_only_once_the_exclusive_holder_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stage.lock");
        assert!(!wait_unlocked(&path).expect("no file"), "no lock file: nothing to wait for");
        let held = lock_exclusive(&path).expect("lock");
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let found = wait_unlocked(&path).expect("wait");
                (found, std::time::Instant::now())
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        let released = std::time::Instant::now();
        drop(held);
        let (found, returned) = waiter.join().expect("join");
        assert!(found && returned >= released, "the waiter returned before the lock was released");
        assert!(wait_unlocked(&path).expect("free"), "a free lock: at once");
    }

    #[test]
    fn ensure_dir_creates_parents_with_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("a/b/c");
        ensure_dir(&d, 0o700).expect("mkdir");
        assert_eq!(mode_and_owner(&d).expect("stat").0, 0o700);
        ensure_dir(&d, 0o755).expect("idempotent");
        assert_eq!(mode_and_owner(&d).expect("stat").0, 0o700, "existing dir left alone");
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&d, &link).expect("symlink");
        assert!(ensure_dir(&link, 0o700).is_err());
    }

    #[test]
    fn read_optional_distinguishes_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_optional(&dir.path().join("nope")).expect("read"), None);
    }
}
