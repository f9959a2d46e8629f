//! The locks shadow-utils holds while it edits the account files, taken under any root.
//!
//! `useradd`, `usermod`, `passwd` and `chpasswd` take two locks before they touch `/etc/shadow`:
//! glibc's `lckpwdf(3)` (a write lock on the whole of `/etc/.pwd.lock`, waited for up to 15 s)
//! and their own lock of the file (`/etc/shadow.lock`, made by linking a file that holds their
//! process id). With `--prefix DIR` they take only the second one, under `DIR`. glibc's
//! `lckpwdf` knows only the live `/etc`, so wala takes both itself under its [`HostRoot`].
//!
//! The first is an open-file-description lock (`F_OFD_SETLK`): it conflicts with glibc's classic
//! `fcntl` lock in another process and with another open of the file in this one, and it goes
//! away when the file is closed, even if the process dies.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::base::root::HostRoot;

/// How long the locks are waited for: `lckpwdf(3)`'s timeout (shadow-utils also tries its own
/// lock 15 times a second apart).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(15);

/// glibc's lock file, as seen on the target system.
pub const PWD_LOCK_FILE: &str = "/etc/.pwd.lock";

/// How often a held lock is tried again.
const RETRY: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the shadow lock {} is held by another process (useradd, passwd, ...) for {:.1} s; {} not edited",
        lock.display(),
        waited.as_secs_f64(),
        file.display()
    )]
    Busy { lock: PathBuf, file: PathBuf, waited: Duration },
    #[error("cannot take the shadow lock {}: {source}", lock.display())]
    Io {
        lock: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Both locks for one account file, released on drop (the file lock first, as shadow-utils).
#[derive(Debug)]
pub struct ShadowLock {
    file_lock: PathBuf,
    /// Holds the `lckpwdf` lock until it is closed, after `file_lock` is removed.
    _pwd_lock: File,
}

impl ShadowLock {
    /// Lock `file` (a target-system path such as `/etc/shadow`) under `root`, waiting at most
    /// `timeout` in all.
    pub fn acquire(root: &HostRoot, file: &Path, timeout: Duration) -> Result<Self, LockError> {
        let started = Instant::now();
        let target = root.path(file);
        let busy = |lock: PathBuf| LockError::Busy { lock, file: target.clone(), waited: started.elapsed() };
        let pwd_path = root.path(PWD_LOCK_FILE);
        let io_err = |lock: &Path| {
            let lock = lock.to_path_buf();
            move |source| LockError::Io { lock, source }
        };
        let pwd = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&pwd_path)
            .map_err(io_err(&pwd_path))?;
        while !try_write_lock(&pwd).map_err(io_err(&pwd_path))? {
            if started.elapsed() >= timeout {
                return Err(busy(pwd_path));
            }
            std::thread::sleep(RETRY);
        }
        let file_lock = with_suffix(&target, ".lock");
        let mine = with_suffix(&target, &format!(".{}", std::process::id()));
        while !try_link_lock(&mine, &file_lock).map_err(io_err(&file_lock))? {
            if started.elapsed() >= timeout {
                return Err(busy(file_lock));
            }
            std::thread::sleep(RETRY);
        }
        log::debug!("took the shadow locks {} and {}", pwd_path.display(), file_lock.display());
        Ok(Self { file_lock, _pwd_lock: pwd })
    }
}

impl Drop for ShadowLock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.file_lock) {
            log::warn!("cannot remove the lock {}: {e}", self.file_lock.display());
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// A write lock on the whole file, without waiting: `Ok(false)` when another holder has it.
fn try_write_lock(file: &File) -> io::Result<bool> {
    // SAFETY: an all-zero `flock` is a valid value (and l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    let mut command = libc::F_OFD_SETLK;
    loop {
        // SAFETY: the descriptor is open for the duration of the call and `fl` is a valid flock.
        if unsafe { libc::fcntl(file.as_raw_fd(), command, &fl) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES) => return Ok(false),
            Some(libc::EINTR) => {}
            // A kernel older than 3.15: glibc's own kind of lock, which still excludes other
            // processes (wala takes one at a time, so this process never contends with itself).
            Some(libc::EINVAL) if command == libc::F_OFD_SETLK => command = libc::F_SETLK,
            _ => return Err(e),
        }
    }
}

/// shadow-utils' file lock: write our pid to `mine`, link it to `lock`; a lock whose process no
/// longer exists is removed and taken. `Ok(false)` when a live process holds it.
fn try_link_lock(mine: &Path, lock: &Path) -> io::Result<bool> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(mine)?;
    let result = (|| {
        // The pid and a NUL, as shadow-utils writes it.
        f.write_all(format!("{}\0", std::process::id()).as_bytes())?;
        f.sync_data()?;
        match std::fs::hard_link(mine, lock) {
            Ok(()) => return Ok(std::fs::metadata(mine)?.nlink() == 2),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let holder = match std::fs::read(lock) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).trim_matches(['\0', ' ', '\n']).parse::<i32>().ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if holder.is_none_or(alive) {
            return Ok(false);
        }
        log::info!("removing the stale lock {} of process {}", lock.display(), holder.unwrap_or_default());
        match std::fs::remove_file(lock) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        match std::fs::hard_link(mine, lock) {
            Ok(()) => Ok(std::fs::metadata(mine)?.nlink() == 2),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    drop(f);
    let _ = std::fs::remove_file(mine);
    result
}

/// Whether the process holding a file lock still runs. Our own pid means a lock left by an
/// earlier run that had the same pid (early-boot pids repeat): this process holds no file lock
/// when it asks, since the `lckpwdf` lock, taken first, admits one holder at a time.
fn alive(pid: i32) -> bool {
    if pid <= 0 || u32::try_from(pid).is_ok_and(|p| p == std::process::id()) {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root() -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(dir.path().join("etc/shadow"), "root:*:1::::::\n").expect("write");
        let root = HostRoot::new(dir.path());
        (dir, root)
    }

    fn shadow() -> &'static Path {
        Path::new("/etc/shadow")
    }

    #[test]
    fn both_locks_are_taken_and_the_file_lock_removed_on_release() {
        let (dir, root) = temp_root();
        let lock = ShadowLock::acquire(&root, shadow(), LOCK_TIMEOUT).expect("lock");
        let pwd = dir.path().join("etc/.pwd.lock");
        assert_eq!(crate::base::files::mode_and_owner(&pwd).expect("stat").0, 0o600);
        let held = std::fs::read(dir.path().join("etc/shadow.lock")).expect("file lock");
        assert_eq!(held, format!("{}\0", std::process::id()).into_bytes());
        drop(lock);
        assert!(!dir.path().join("etc/shadow.lock").exists());
        assert!(pwd.exists(), "glibc leaves /etc/.pwd.lock in place too");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("etc")).unwrap().flatten().collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
        ShadowLock::acquire(&root, shadow(), LOCK_TIMEOUT).expect("lock again");
    }

    #[test]
    fn a_held_pwd_lock_times_out_naming_the_lock() {
        let (dir, root) = temp_root();
        let _holder = ShadowLock::acquire(&root, shadow(), LOCK_TIMEOUT).expect("lock");
        let started = Instant::now();
        let err = ShadowLock::acquire(&root, shadow(), Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(matches!(&err, LockError::Busy { lock, .. } if *lock == dir.path().join("etc/.pwd.lock")));
        let text = err.to_string();
        assert!(
            text.contains("/etc/.pwd.lock is held by another process") && text.contains("not edited"),
            "{text}"
        );
    }

    /// A child process holds glibc's kind of lock (`lckpwdf` does `fcntl(F_SETLKW)`), as
    /// `useradd` or `passwd` on the live root would.
    #[test]
    fn a_classic_fcntl_lock_of_another_process_is_waited_for() {
        let (dir, root) = temp_root();
        let pwd = File::create(dir.path().join("etc/.pwd.lock")).expect("create");
        // `fds`: the parent tells the child to let go; `ack`: the child says it holds the lock.
        let (mut fds, mut ack) = ([0; 2], [0; 2]);
        // SAFETY: pipe creation into valid two-element arrays.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::pipe(ack.as_mut_ptr()) }, 0);
        let (from_parent, to_child) = (fds[0], fds[1]);
        // SAFETY: the child only calls async-signal-safe functions (fcntl, write, read, _exit).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            unsafe {
                let mut fl: libc::flock = std::mem::zeroed();
                fl.l_type = libc::F_WRLCK as libc::c_short;
                fl.l_whence = libc::SEEK_SET as libc::c_short;
                let ok = libc::fcntl(pwd.as_raw_fd(), libc::F_SETLK, &fl) == 0;
                libc::write(ack[1], [u8::from(ok)].as_ptr().cast(), 1);
                let mut b = [0u8; 1];
                libc::read(from_parent, b.as_mut_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        let mut b = [0u8; 1];
        // SAFETY: reads one byte into a valid buffer.
        assert_eq!(unsafe { libc::read(ack[0], b.as_mut_ptr().cast(), 1) }, 1);
        assert_eq!(b[0], 1, "the child took the lock");
        let err = ShadowLock::acquire(&root, shadow(), Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }), "{err}");
        // Released 300 ms from now: the edit waits for it and then gets it.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            // SAFETY: writes one byte from a valid buffer; waits for our own child.
            unsafe {
                libc::write(to_child, [1u8].as_ptr().cast(), 1);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        });
        let started = Instant::now();
        let lock = ShadowLock::acquire(&root, shadow(), LOCK_TIMEOUT).expect("lock after release");
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
        drop(lock);
        release.join().expect("join");
        for fd in [fds[0], fds[1], ack[0], ack[1]] {
            // SAFETY: closing our own pipe ends.
            unsafe { libc::close(fd) };
        }
    }

    #[test]
    fn shadow_utils_file_lock_of_a_live_process_is_waited_for_and_a_stale_one_taken() {
        let (dir, root) = temp_root();
        let lock = dir.path().join("etc/shadow.lock");
        let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        std::fs::write(&lock, format!("{}\0", sleeper.id())).expect("write");
        let err = ShadowLock::acquire(&root, shadow(), Duration::from_millis(200)).unwrap_err();
        assert!(matches!(&err, LockError::Busy { lock: l, .. } if *l == lock), "{err}");
        assert!(err.to_string().contains("/etc/shadow.lock is held"), "{err}");
        sleeper.kill().expect("kill");
        sleeper.wait().expect("wait");
        // Its process is gone: the lock is stale and taken over.
        let held = ShadowLock::acquire(&root, shadow(), LOCK_TIMEOUT).expect("stale lock taken");
        assert_eq!(std::fs::read(&lock).expect("read"), format!("{}\0", std::process::id()).into_bytes());
        drop(held);
        assert!(!lock.exists());
    }

    /// shadow-utils honours the lock: `useradd --prefix` waits while wala holds it.
    #[test]
    fn useradd_waits_for_the_lock() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/sbin/useradd").exists() {
            eprintln!("SKIP useradd_waits_for_the_lock: needs root and useradd");
            return;
        }
        let (dir, root) = temp_root();
        let p = dir.path();
        std::fs::write(p.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").expect("write");
        std::fs::write(p.join("etc/group"), "root:x:0:\n").expect("write");
        std::fs::write(p.join("etc/gshadow"), "root:*::\n").expect("write");
        std::fs::write(
            p.join("etc/login.defs"),
            "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\n",
        )
        .expect("write");
        let held = ShadowLock::acquire(&root, shadow(), LOCK_TIMEOUT).expect("lock");
        let mut useradd = std::process::Command::new("useradd")
            .arg("--prefix")
            .arg(p)
            .args(["-M", "--", "locktest"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("useradd");
        std::thread::sleep(Duration::from_millis(2500));
        assert!(useradd.try_wait().expect("wait").is_none(), "useradd did not wait for the lock");
        assert!(!std::fs::read_to_string(p.join("etc/shadow")).expect("read").contains("locktest"));
        drop(held);
        let status = useradd.wait().expect("wait");
        assert!(status.success(), "useradd after the release: {status}");
        assert!(std::fs::read_to_string(p.join("etc/shadow")).expect("read").contains("locktest:"));
    }
}
