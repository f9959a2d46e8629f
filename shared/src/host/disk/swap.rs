//! Swap on the resource disk: `<mount point>/swapfile`, mode 0600, allocated without holes.
//!
//! [`read_swap_state`] gathers, [`decide_swap`] (pure) chooses the steps, [`apply_swap`] runs them.
//! Encrypted swap maps the file through a loop device with dm-crypt in plain mode under a
//! throw-away random key (from getrandom(2), the kernel's urandom source) that goes to
//! `cryptsetup` on stdin and is never stored: the swap contents are unreadable after a reboot.
//! Allocating a big file takes time; [`SwapPlan::background`] tells the caller it asked for the
//! swap to be applied off the main path (wala does not spawn threads on its own).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::base::cmd::{Cmd, Runner};
use crate::base::files::FileError;
use crate::base::root::HostRoot;
use crate::host::disk::mounts::read_swaps;
use crate::host::disk::{DiskError, ResourceDiskSettings};
use zeroize::Zeroizing;

/// File name of the swap file in the resource disk's mount point.
pub const SWAP_FILE_NAME: &str = "swapfile";
/// Device-mapper name of the encrypted swap mapping.
pub const CRYPT_MAPPING: &str = "wala-swap";
/// Bytes of random key for `aes-xts-plain64` with a 512-bit key.
const KEY_BYTES: usize = 64;
const MIB: u64 = 1024 * 1024;

/// What is there now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwapState {
    /// Size of the swap file, when it exists as a regular file.
    pub file_len: Option<u64>,
    /// Something other than a regular file (a symlink, a directory) is at the swap file's path.
    pub file_not_regular: bool,
    /// The file itself is an active swap area.
    pub file_active: bool,
    /// The encrypted mapping exists.
    pub crypt_mapped: bool,
    /// The encrypted mapping is an active swap area of this many KiB.
    pub crypt_active_kib: Option<u64>,
}

/// How the swap file gets its blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocMethod {
    /// posix_fallocate: instant, and accepted by swapon on ext4 and on xfs (Linux ≥ 4.18).
    Fallocate,
    /// Write zeros: for every other filesystem (and if fallocate is not supported).
    WriteZeros,
    /// btrfs: mark the empty file no-copy-on-write (`chattr +C`), then write zeros.
    NoCowZeros,
}

impl AllocMethod {
    /// The method for a filesystem type name.
    pub fn for_fs(fs: &str) -> Self {
        match fs {
            "ext4" | "xfs" => AllocMethod::Fallocate,
            "btrfs" => AllocMethod::NoCowZeros,
            _ => AllocMethod::WriteZeros,
        }
    }
}

/// One step of the swap plan, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapStep {
    /// `swapoff` the plain swap file.
    SwapOffFile,
    /// `swapoff` the encrypted mapping (if active) and `cryptsetup close` it.
    CloseCrypt,
    /// Delete the old swap file.
    RemoveFile,
    /// Create the file (0600, exclusive) and allocate every block.
    Allocate,
    /// Make sure the file is mode 0600.
    TightenMode,
    /// `mkswap` the file.
    MkswapFile,
    /// Loop device + dm-crypt plain mapping with a fresh random key + `mkswap` on the mapping.
    OpenCrypt,
    /// `swapon` the file.
    SwapOnFile,
    /// `swapon` the mapping.
    SwapOnCrypt,
}

impl fmt::Display for SwapStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SwapStep::SwapOffFile => "swapoff the old file",
            SwapStep::CloseCrypt => "close the old encrypted mapping",
            SwapStep::RemoveFile => "remove the old file",
            SwapStep::Allocate => "allocate the file (0600, no holes)",
            SwapStep::TightenMode => "set mode 0600",
            SwapStep::MkswapFile => "mkswap the file",
            SwapStep::OpenCrypt => "map it with dm-crypt (plain, random key) and mkswap the mapping",
            SwapStep::SwapOnFile => "swapon the file",
            SwapStep::SwapOnCrypt => "swapon the mapping",
        })
    }
}

/// The swap steps for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapPlan {
    /// Host path of the swap file.
    pub file: PathBuf,
    pub size_bytes: u64,
    pub encrypted: bool,
    pub alloc: AllocMethod,
    /// The settings asked for the swap to be applied in the background.
    pub background: bool,
    /// Empty when the wanted swap is already active.
    pub steps: Vec<SwapStep>,
}

/// Whether and how to set up swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapDecision {
    /// Swap is off in the settings, or the resource disk will not be mounted.
    Off,
    /// Swap was asked for but cannot be set up; the text says why.
    Invalid(String),
    Plan(SwapPlan),
}

impl fmt::Display for SwapDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwapDecision::Off => f.write_str("swap: off"),
            SwapDecision::Invalid(why) => write!(f, "swap: not set up: {why}"),
            SwapDecision::Plan(p) if p.steps.is_empty() => {
                write!(
                    f,
                    "swap: {} ({} MiB) already active, nothing to do",
                    p.file.display(),
                    p.size_bytes / MIB
                )
            }
            SwapDecision::Plan(p) => {
                write!(
                    f,
                    "swap: {} ({} MiB{}{}):",
                    p.file.display(),
                    p.size_bytes / MIB,
                    if p.encrypted { ", encrypted" } else { "" },
                    if p.background { ", in background" } else { "" },
                )?;
                let steps: Vec<String> = p.steps.iter().map(|s| s.to_string()).collect();
                write!(f, " {}", steps.join(", "))
            }
        }
    }
}

/// Decide the swap steps. `mount` is the mount point and filesystem type the resource disk will
/// have (`None` when it will not be mounted).
pub fn decide_swap(
    settings: &ResourceDiskSettings,
    mount: Option<(&Path, &str)>,
    st: &SwapState,
) -> SwapDecision {
    let Some((mount_point, fs)) = mount.filter(|_| settings.enable_swap) else { return SwapDecision::Off };
    let file = mount_point.join(SWAP_FILE_NAME);
    if settings.swap_size_mb == 0 {
        return SwapDecision::Invalid("ResourceDisk.SwapSizeMB is 0".into());
    }
    let Some(size_bytes) = settings.swap_size_mb.checked_mul(MIB) else {
        return SwapDecision::Invalid(format!(
            "ResourceDisk.SwapSizeMB={} is too large",
            settings.swap_size_mb
        ));
    };
    if st.file_not_regular {
        return SwapDecision::Invalid(format!("{} exists and is not a regular file", file.display()));
    }
    let steps =
        if settings.swap_encryption { encrypted_steps(st, size_bytes) } else { plain_steps(st, size_bytes) };
    SwapDecision::Plan(SwapPlan {
        file,
        size_bytes,
        encrypted: settings.swap_encryption,
        alloc: AllocMethod::for_fs(fs),
        background: settings.swap_in_background,
        steps,
    })
}

fn plain_steps(st: &SwapState, size: u64) -> Vec<SwapStep> {
    use SwapStep::*;
    let mut steps = Vec::new();
    if st.crypt_mapped {
        steps.push(CloseCrypt);
    }
    match (st.file_len == Some(size), st.file_active) {
        (true, true) => {}
        // A right-sized file that is not active gets a fresh signature: it may hold an old
        // encrypted mapping's ciphertext.
        (true, false) => steps.extend([TightenMode, MkswapFile, SwapOnFile]),
        (false, active) => {
            if active {
                steps.push(SwapOffFile);
            }
            if st.file_len.is_some() {
                steps.push(RemoveFile);
            }
            steps.extend([Allocate, MkswapFile, SwapOnFile]);
        }
    }
    steps
}

fn encrypted_steps(st: &SwapState, size: u64) -> Vec<SwapStep> {
    use SwapStep::*;
    let right_size = st.file_len == Some(size);
    if right_size && !st.file_active && st.crypt_active_kib.is_some_and(|kib| mapping_matches(kib, size)) {
        return Vec::new();
    }
    let mut steps = Vec::new();
    if st.file_active {
        steps.push(SwapOffFile);
    }
    if st.crypt_mapped {
        steps.push(CloseCrypt);
    }
    if !right_size {
        if st.file_len.is_some() {
            steps.push(RemoveFile);
        }
        steps.push(Allocate);
    }
    steps.extend([TightenMode, OpenCrypt, SwapOnCrypt]);
    steps
}

/// The kernel reports a swap area's size minus its header page (4 KiB to 64 KiB).
fn mapping_matches(active_kib: u64, size_bytes: u64) -> bool {
    let active = active_kib.saturating_mul(1024);
    active < size_bytes && size_bytes - active <= 64 * 1024
}

/// Gather the swap state for the swap file at host path `file`.
pub fn read_swap_state(root: &HostRoot, file: &Path) -> Result<SwapState, FileError> {
    let mut st = SwapState::default();
    let local = root.path(file);
    match fs::symlink_metadata(&local) {
        Ok(m) if m.file_type().is_file() => st.file_len = Some(m.len()),
        Ok(_) => st.file_not_regular = true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(FileError::new("stat", local, e)),
    }
    let swaps = read_swaps(root)?;
    st.file_active = swaps.iter().any(|s| s.path == file);
    let mapping = root.path(format!("/dev/mapper/{CRYPT_MAPPING}"));
    st.crypt_mapped = fs::symlink_metadata(&mapping).is_ok();
    if st.crypt_mapped {
        let dm_name = fs::canonicalize(&mapping).ok().and_then(|p| p.file_name().map(|n| n.to_owned()));
        st.crypt_active_kib = swaps
            .iter()
            .find(|s| {
                let name = s.path.file_name();
                name == Some(CRYPT_MAPPING.as_ref()) || (name.is_some() && name == dm_name.as_deref())
            })
            .map(|s| s.size_kib);
    }
    Ok(st)
}

/// Run the swap plan's steps.
pub fn apply_swap(root: &HostRoot, runner: &dyn Runner, plan: &SwapPlan) -> Result<(), DiskError> {
    let file = root.path(&plan.file);
    let mapping = root.path(format!("/dev/mapper/{CRYPT_MAPPING}"));
    for step in &plan.steps {
        match step {
            SwapStep::SwapOffFile => {
                runner.run(&Cmd::new("swapoff").arg(&file))?;
            }
            SwapStep::CloseCrypt => close_crypt(runner, &mapping)?,
            SwapStep::RemoveFile => fs::remove_file(&file).map_err(|e| FileError::new("remove", &file, e))?,
            SwapStep::Allocate => allocate(runner, &file, plan.size_bytes, plan.alloc)?,
            SwapStep::TightenMode => tighten_mode(&file)?,
            SwapStep::MkswapFile => {
                runner.run(&Cmd::new("mkswap").arg(&file))?;
            }
            SwapStep::OpenCrypt => open_crypt(runner, &file, &mapping)?,
            SwapStep::SwapOnFile => {
                runner.run(&Cmd::new("swapon").arg(&file))?;
            }
            SwapStep::SwapOnCrypt => {
                runner.run(&Cmd::new("swapon").arg(&mapping))?;
            }
        }
    }
    if !plan.steps.is_empty() {
        log::info!("swap of {} MiB enabled on {}", plan.size_bytes / MIB, plan.file.display());
    }
    Ok(())
}

fn close_crypt(runner: &dyn Runner, mapping: &Path) -> Result<(), DiskError> {
    // Not active is fine: the mapping may exist without being swapped on.
    let _ = runner.output(&Cmd::new("swapoff").arg(mapping))?;
    runner.run(&Cmd::new("cryptsetup").args(["close", CRYPT_MAPPING]))?;
    Ok(())
}

/// Loop device over the file, a plain dm-crypt mapping with a random key given on stdin, then
/// `losetup -d` at once: the kernel keeps the loop device until the mapping closes (autoclear).
fn open_crypt(runner: &dyn Runner, file: &Path, mapping: &Path) -> Result<(), DiskError> {
    let key = random_key()?;
    let out = runner.run(&Cmd::new("losetup").args(["--find", "--show"]).arg(file))?;
    let loop_dev = out.stdout_str().trim().to_string();
    if loop_dev.is_empty() {
        return Err(DiskError::Swap { path: file.to_path_buf(), reason: "losetup printed no device".into() });
    }
    let open = Cmd::new("cryptsetup")
        .args(["open", "--type", "plain", "--cipher", "aes-xts-plain64", "--key-size", "512"])
        .args(["--key-file", "-", &loop_dev, CRYPT_MAPPING])
        .stdin(key.to_vec());
    let opened = runner.run(&open);
    let detached = runner.run(&Cmd::new("losetup").args(["-d", &loop_dev]));
    opened?;
    detached?;
    runner.run(&Cmd::new("mkswap").arg(mapping))?;
    Ok(())
}

fn random_key() -> Result<Zeroizing<Vec<u8>>, DiskError> {
    let mut key = Zeroizing::new(vec![0u8; KEY_BYTES]);
    crate::base::random::fill(key.as_mut_slice()).map_err(DiskError::Random)?;
    Ok(key)
}

/// Create the swap file exclusively with mode 0600 and give it every block.
fn allocate(runner: &dyn Runner, file: &Path, size: u64, method: AllocMethod) -> Result<(), DiskError> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(file)
        .map_err(|e| FileError::new("create", file, e))?;
    let result = fill(runner, &f, file, size, method);
    if result.is_err() {
        let _ = fs::remove_file(file);
    }
    result
}

fn fill(runner: &dyn Runner, f: &File, file: &Path, size: u64, method: AllocMethod) -> Result<(), DiskError> {
    f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| FileError::new("chmod", file, e))?;
    let done = match method {
        AllocMethod::Fallocate => try_fallocate(f, file, size)?,
        AllocMethod::NoCowZeros => {
            runner.run(&Cmd::new("chattr").arg("+C").arg(file))?;
            false
        }
        AllocMethod::WriteZeros => false,
    };
    if !done {
        write_zeros(f, file, size)?;
    }
    f.sync_all().map_err(|e| FileError::new("fsync", file, e))?;
    Ok(())
}

/// `Ok(false)` when the filesystem does not support fallocate.
fn try_fallocate(f: &File, file: &Path, size: u64) -> Result<bool, FileError> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(size)
        .map_err(|_| FileError::new("fallocate", file, io::Error::other("size too large")))?;
    // SAFETY: posix_fallocate on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(true),
        libc::EOPNOTSUPP | libc::EINVAL => Ok(false),
        e => Err(FileError::new("fallocate", file, io::Error::from_raw_os_error(e))),
    }
}

fn write_zeros(mut f: &File, file: &Path, size: u64) -> Result<(), FileError> {
    let chunk = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        f.write_all(&chunk[..n]).map_err(|e| FileError::new("write", file, e))?;
        left -= n as u64;
    }
    Ok(())
}

fn tighten_mode(file: &Path) -> Result<(), FileError> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(file)
        .map_err(|e| FileError::new("open", file, e))?;
    f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| FileError::new("chmod", file, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::{CmdOutput, FakeRunner};
    use SwapStep::*;

    fn settings(mb: u64, encrypted: bool) -> ResourceDiskSettings {
        ResourceDiskSettings {
            format: true,
            enable_swap: true,
            swap_size_mb: mb,
            swap_encryption: encrypted,
            ..ResourceDiskSettings::default()
        }
    }

    fn plan(d: SwapDecision) -> SwapPlan {
        match d {
            SwapDecision::Plan(p) => p,
            other => panic!("{other:?}"),
        }
    }

    fn mp() -> Option<(&'static Path, &'static str)> {
        Some((Path::new("/mnt/resource"), "ext4"))
    }

    #[test]
    fn off_invalid_and_not_mounted() {
        let st = SwapState::default();
        assert_eq!(decide_swap(&ResourceDiskSettings::default(), mp(), &st), SwapDecision::Off);
        assert_eq!(decide_swap(&settings(16, false), None, &st), SwapDecision::Off);
        assert!(matches!(decide_swap(&settings(0, false), mp(), &st), SwapDecision::Invalid(_)));
        assert!(matches!(decide_swap(&settings(u64::MAX, false), mp(), &st), SwapDecision::Invalid(_)));
        let link = SwapState { file_not_regular: true, ..st };
        assert!(matches!(decide_swap(&settings(16, false), mp(), &link), SwapDecision::Invalid(_)));
    }

    #[test]
    fn plain_create_keep_and_resize() {
        let p = plan(decide_swap(&settings(16, false), mp(), &SwapState::default()));
        assert_eq!(p.file, PathBuf::from("/mnt/resource/swapfile"));
        assert_eq!((p.size_bytes, p.alloc), (16 * MIB, AllocMethod::Fallocate));
        assert_eq!(p.steps, vec![Allocate, MkswapFile, SwapOnFile]);

        let active = SwapState { file_len: Some(16 * MIB), file_active: true, ..Default::default() };
        let p = plan(decide_swap(&settings(16, false), mp(), &active));
        assert!(p.steps.is_empty());
        assert!(SwapDecision::Plan(p).to_string().contains("already active"));

        let p = plan(decide_swap(&settings(32, false), mp(), &active));
        assert_eq!(p.steps, vec![SwapOffFile, RemoveFile, Allocate, MkswapFile, SwapOnFile]);

        let idle = SwapState { file_len: Some(16 * MIB), ..Default::default() };
        let p = plan(decide_swap(&settings(16, false), mp(), &idle));
        assert_eq!(p.steps, vec![TightenMode, MkswapFile, SwapOnFile]);
    }

    #[test]
    fn encrypted_create_keep_and_switch() {
        let p = plan(decide_swap(&settings(16, true), mp(), &SwapState::default()));
        assert_eq!(p.steps, vec![Allocate, TightenMode, OpenCrypt, SwapOnCrypt]);

        let on = SwapState {
            file_len: Some(16 * MIB),
            crypt_mapped: true,
            crypt_active_kib: Some(16 * 1024 - 4),
            ..Default::default()
        };
        assert!(plan(decide_swap(&settings(16, true), mp(), &on)).steps.is_empty());
        let p = plan(decide_swap(&settings(8, true), mp(), &on));
        assert_eq!(p.steps, vec![CloseCrypt, RemoveFile, Allocate, TightenMode, OpenCrypt, SwapOnCrypt]);
        let p = plan(decide_swap(&settings(16, false), mp(), &on));
        assert_eq!(p.steps, vec![CloseCrypt, TightenMode, MkswapFile, SwapOnFile]);

        let plain_on = SwapState { file_len: Some(16 * MIB), file_active: true, ..Default::default() };
        let p = plan(decide_swap(&settings(16, true), mp(), &plain_on));
        assert_eq!(p.steps, vec![SwapOffFile, TightenMode, OpenCrypt, SwapOnCrypt]);
    }

    #[test]
    fn display_for_dry_run() {
        let s = ResourceDiskSettings { swap_in_background: true, ..settings(2048, true) };
        let text = decide_swap(&s, mp(), &SwapState::default()).to_string();
        assert_eq!(
            text,
            "swap: /mnt/resource/swapfile (2048 MiB, encrypted, in background): allocate the file (0600, no \
             holes), set mode 0600, map it with dm-crypt (plain, random key) and mkswap the mapping, swapon the \
             mapping"
        );
    }

    #[test]
    fn alloc_method_by_filesystem() {
        assert_eq!(AllocMethod::for_fs("xfs"), AllocMethod::Fallocate);
        assert_eq!(AllocMethod::for_fs("ext3"), AllocMethod::WriteZeros);
        assert_eq!(AllocMethod::for_fs("btrfs"), AllocMethod::NoCowZeros);
    }

    #[test]
    fn state_from_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        fs::create_dir_all(dir.path().join("mnt/resource")).unwrap();
        fs::create_dir_all(dir.path().join("proc")).unwrap();
        fs::create_dir_all(dir.path().join("dev/mapper")).unwrap();
        fs::write(dir.path().join("mnt/resource/swapfile"), vec![0u8; 8192]).unwrap();
        fs::write(dir.path().join("dev/dm-3"), b"").unwrap();
        std::os::unix::fs::symlink("../dm-3", dir.path().join("dev/mapper/wala-swap")).unwrap();
        fs::write(
            dir.path().join("proc/swaps"),
            "Filename Type Size Used Priority\n/mnt/resource/swapfile file 4 0 -2\n/dev/dm-3 partition 4 0 -3\n",
        )
        .unwrap();
        let st = read_swap_state(&root, Path::new("/mnt/resource/swapfile")).unwrap();
        assert_eq!(
            st,
            SwapState {
                file_len: Some(8192),
                file_not_regular: false,
                file_active: true,
                crypt_mapped: true,
                crypt_active_kib: Some(4)
            }
        );
    }

    #[test]
    fn apply_plain_allocates_0600_without_holes() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        fs::create_dir_all(dir.path().join("mnt")).unwrap();
        let p =
            plan(decide_swap(&settings(2, false), Some((Path::new("/mnt"), "ext3")), &SwapState::default()));
        let fake = FakeRunner::new();
        apply_swap(&root, &fake, &p).unwrap();
        let f = dir.path().join("mnt/swapfile");
        let meta = fs::metadata(&f).unwrap();
        assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (2 * MIB, 0o600));
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 >= 2 * MIB, "no holes: {} blocks", meta.blocks());
        let f = f.display().to_string();
        assert_eq!(fake.command_lines(), vec![format!("mkswap {f}"), format!("swapon {f}")]);
    }

    #[test]
    fn apply_encrypted_passes_key_on_stdin_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        fs::create_dir_all(dir.path().join("mnt")).unwrap();
        let p =
            plan(decide_swap(&settings(1, true), Some((Path::new("/mnt"), "xfs")), &SwapState::default()));
        let fake = FakeRunner::new();
        fake.respond(
            "losetup",
            CmdOutput { code: Some(0), stdout: b"/dev/loop7\n".to_vec(), stderr: vec![] },
        );
        apply_swap(&root, &fake, &p).unwrap();
        let lines = fake.command_lines();
        let mapper = dir.path().join("dev/mapper/wala-swap").display().to_string();
        assert!(lines[0].starts_with("losetup --find --show "), "{lines:?}");
        assert_eq!(
            lines[1],
            "cryptsetup open --type plain --cipher aes-xts-plain64 --key-size 512 --key-file - /dev/loop7 wala-swap"
        );
        assert_eq!(
            lines[2..],
            ["losetup -d /dev/loop7".to_string(), format!("mkswap {mapper}"), format!("swapon {mapper}")]
        );
        let calls = fake.calls();
        let key = calls[1].stdin_data().unwrap();
        assert_eq!(key.len(), KEY_BYTES);
        assert!(key.iter().any(|&b| b != 0));
        assert!(calls.iter().enumerate().all(|(i, c)| i == 1 || !c.has_stdin()));
    }

    #[test]
    fn failed_allocation_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        fs::create_dir_all(dir.path().join("mnt")).unwrap();
        let p =
            plan(decide_swap(&settings(1, false), Some((Path::new("/mnt"), "btrfs")), &SwapState::default()));
        let fake = FakeRunner::new();
        fake.respond("chattr", CmdOutput { code: Some(1), ..Default::default() });
        assert!(apply_swap(&root, &fake, &p).is_err());
        assert!(!dir.path().join("mnt/swapfile").exists());
    }
}
