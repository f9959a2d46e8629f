//! The resource (temporary) disk and swap on it.
//!
//! Three steps, kept apart so that `--dry-run` can print the plan and tests can check every
//! decision without a disk:
//! 1. GATHER: [`discover`](discover::discover) the disk and [`gather`](resource::gather) what is on
//!    it (superblock [`probe`], mounts, the NTFS root listing);
//! 2. DECIDE: [`decide`](plan::decide) (pure) turns that and the [`ResourceDiskSettings`] into a
//!    [`DiskAction`]; [`plan`] bundles it with the swap decision into a [`DiskPlan`] (`Display`);
//! 3. ACT: [`apply_disk`](resource::apply_disk), then [`swap_after_mount`] and
//!    [`apply_swap`](swap::apply_swap), every command through the [`Runner`].
//!
//! Data safety: only a blank disk or Azure's fresh NTFS placeholder is ever formatted, and the
//! format step re-reads the disk first and stops if anything changed. A disk that is mounted
//! anywhere is left alone. No resource disk is not an error.
//!
//! Swap is applied separately so the caller can run it in the background when
//! [`SwapPlan::background`] asks for it (a big swap file takes a while to allocate).

pub mod discover;
pub mod mounts;
pub mod ntfs;
pub mod plan;
pub mod probe;
pub mod resource;
pub mod swap;

use std::path::{Path, PathBuf};

pub use discover::{discover, partition_name, DiscoverySource, ResourceDisk};
pub use plan::{decide, DiskAction, DiskPlan, DiskState};
pub use resource::{apply_disk, gather, DiskOutcome};
pub use swap::{apply_swap, decide_swap, read_swap_state, SwapDecision, SwapPlan, SwapStep};

use crate::base::cmd::{CmdError, Runner};
use crate::base::files::FileError;
use crate::base::root::HostRoot;

/// What to do with the resource disk (mapped from waagent.conf's `ResourceDisk.*` by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDiskSettings {
    /// `ResourceDisk.Format`: manage the disk at all.
    pub format: bool,
    /// `ResourceDisk.Filesystem`: ext2/ext3/ext4/xfs/btrfs.
    pub filesystem: String,
    /// `ResourceDisk.MountPoint`.
    pub mount_point: PathBuf,
    /// `ResourceDisk.MountOptions` (`None` = mount's defaults).
    pub mount_options: Option<String>,
    /// `ResourceDisk.EnableSwap`.
    pub enable_swap: bool,
    /// `ResourceDisk.EnableSwapEncryption` (dm-crypt plain mode, random key).
    pub swap_encryption: bool,
    /// `ResourceDisk.SwapSizeMB`.
    pub swap_size_mb: u64,
    /// Copied into [`SwapPlan::background`]: the caller wants swap set up off the main path.
    pub swap_in_background: bool,
}

impl Default for ResourceDiskSettings {
    /// waagent's code defaults, except the filesystem: ext4 as every shipped config has it.
    fn default() -> Self {
        Self {
            format: false,
            filesystem: "ext4".into(),
            mount_point: PathBuf::from("/mnt/resource"),
            mount_options: None,
            enable_swap: false,
            swap_encryption: false,
            swap_size_mb: 0,
            swap_in_background: false,
        }
    }
}

/// Anything that stopped the resource disk or swap from being set up.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error("{} changed between the check and the format (was: {before}; now: {after}); not formatting", device.display())]
    Changed { device: PathBuf, before: String, after: String },
    #[error("after partitioning {}, found {found} instead of one GPT partition; not formatting", device.display())]
    Partitioning { device: PathBuf, found: String },
    #[error("partition {} did not appear within {secs}s", path.display())]
    PartitionMissing { path: PathBuf, secs: u64 },
    #[error("cannot get random bytes for the swap key: {0}")]
    Random(#[source] std::io::Error),
    #[error("swap file {}: {reason}", path.display())]
    Swap { path: PathBuf, reason: String },
}

impl DiskError {
    /// Short text for a status report.
    pub fn reason(&self) -> String {
        match self {
            DiskError::File(_) | DiskError::Cmd(_) => format!("resource disk setup failed: {self}"),
            _ => self.to_string(),
        }
    }
}

/// GATHER and DECIDE: find the disk, read it, and decide. Changes nothing on the host.
pub fn plan(root: &HostRoot, settings: &ResourceDiskSettings) -> Result<DiskPlan, DiskError> {
    let disk = if settings.format { discover(root)? } else { None };
    plan_for(root, settings, disk.as_ref())
}

/// [`plan`] for a disk found by other means (or `None` for no disk).
pub fn plan_for(
    root: &HostRoot,
    settings: &ResourceDiskSettings,
    disk: Option<&ResourceDisk>,
) -> Result<DiskPlan, DiskError> {
    let state = match (settings.format, disk) {
        (true, Some(d)) => Some(gather(root, d)?),
        _ => None,
    };
    let action = decide(state.as_ref(), settings);
    let swap = preview_swap(root, settings, &action, state.as_ref())?;
    Ok(DiskPlan { action, swap, state })
}

/// The swap decision as far as it can be known before mounting: for a disk that is already
/// mounted it is exact; otherwise the swap file is assumed absent (the filesystem is not
/// mounted yet), and [`swap_after_mount`] decides again once it is.
fn preview_swap(
    root: &HostRoot,
    settings: &ResourceDiskSettings,
    action: &DiskAction,
    state: Option<&DiskState>,
) -> Result<SwapDecision, DiskError> {
    match action {
        DiskAction::AlreadyMounted { mount_point, .. } => {
            let fstype = state.and_then(|s| s.mounted.as_ref()).map(|m| m.fstype.as_str()).unwrap_or("");
            swap_at(root, settings, mount_point, fstype)
        }
        DiskAction::Mount { mount_point, fs, .. } | DiskAction::Format { mount_point, fs, .. } => {
            Ok(decide_swap(settings, Some((mount_point, fs)), &swap::SwapState::default()))
        }
        _ => Ok(SwapDecision::Off),
    }
}

fn swap_at(
    root: &HostRoot,
    settings: &ResourceDiskSettings,
    mp: &Path,
    fs: &str,
) -> Result<SwapDecision, DiskError> {
    let st = read_swap_state(root, &mp.join(swap::SWAP_FILE_NAME))?;
    Ok(decide_swap(settings, Some((mp, fs)), &st))
}

/// DECIDE swap for real, after [`apply_disk`]: `Off` unless the disk ended up mounted.
pub fn swap_after_mount(
    root: &HostRoot,
    settings: &ResourceDiskSettings,
    outcome: &DiskOutcome,
) -> Result<SwapDecision, DiskError> {
    match outcome {
        DiskOutcome::Mounted { mount_point, fstype, .. } => swap_at(root, settings, mount_point, fstype),
        _ => Ok(SwapDecision::Off),
    }
}

/// Everything in one go, synchronously: plan, apply the disk action, then swap. Callers that
/// want swap in the background use the steps above instead.
pub fn run(
    root: &HostRoot,
    runner: &dyn Runner,
    settings: &ResourceDiskSettings,
) -> Result<DiskOutcome, DiskError> {
    let disk = if settings.format { discover(root)? } else { None };
    run_for(root, runner, settings, disk.as_ref())
}

/// [`run`] for a disk found by other means (or `None` for no disk).
pub fn run_for(
    root: &HostRoot,
    runner: &dyn Runner,
    settings: &ResourceDiskSettings,
    disk: Option<&ResourceDisk>,
) -> Result<DiskOutcome, DiskError> {
    let plan = plan_for(root, settings, disk)?;
    let outcome = apply_disk(root, runner, &plan)?;
    match swap_after_mount(root, settings, &outcome)? {
        SwapDecision::Plan(p) => apply_swap(root, runner, &p)?,
        SwapDecision::Invalid(why) => log::warn!("swap not enabled: {why}"),
        SwapDecision::Off => {}
    }
    Ok(outcome)
}
