//! Finding the provisioning DVD and reading `ovf-env.xml` from it.
//!
//! The DVD is found through udev (block devices with `ID_CDROM=1`), then waagent's device-name
//! patterns (`sr*`, `hd[c-z]`, `cdrom*`, `cd*`, and last `vd[b-z]`). When none is there yet, wala
//! waits for udev events (through mio, not a sleep loop) up to a deadline. A DVD already mounted
//! somewhere (by udisks, by the initramfs) is read where it is. Otherwise each candidate is read
//! in-process, without mounting it ([`medium`]: UDF, or ISO 9660 with Joliet and Rock Ridge names),
//! and ejected. A device with neither a UDF nor an ISO 9660 volume (vfat, say), or one the reader
//! does not read or finds inconsistent, is mounted read-only (`udf`, then `iso9660`, then `vfat`)
//! in a private directory under `/run` instead, read, unmounted and ejected: the kernel decides.
//! An empty drive is passed over without a mount.
//!
//! **No DVD, told apart from a slow one.** The stage runs after `systemd-udev-trigger.service`, so
//! udev has been asked about every device present at boot (the provisioning DVD drive is one: the
//! platform attaches it before the VM starts). Once udev's event queue is empty, `udevadm settle`
//! confirms that udev has handled every event sent so far; if no candidate holds `ovf-env.xml` then
//! and none is still undecided (an empty drive, a volume only a mount could read and that did not
//! mount), there is no provisioning DVD: [`DvdError::Absent`], at once, not after the timeout.
//! Only an undecided candidate, or a udev that never settles, is waited for up to the deadline.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::base::cmd::{Cmd, Runner};
use crate::base::files::{self, FileError};
use crate::base::limits::{self, Document};

pub mod iso9660;
pub mod medium;
pub mod udf;

use medium::MediumError;

/// The file on the DVD.
pub const OVF_FILE: &str = "ovf-env.xml";
/// Where wala mounts the DVD (private, 0700).
pub const MOUNT_DIR: &str = "/run/wala/dvd";

#[derive(Debug, thiserror::Error)]
pub enum DvdError {
    #[error("no provisioning DVD with {OVF_FILE} appeared within {}s (devices tried: {})", waited.as_secs(), if tried.is_empty() { "none".to_string() } else { tried.join(", ") })]
    NotFound { waited: Duration, tried: Vec<String> },
    /// There is no provisioning DVD: udev has handled every device present at boot and none holds
    /// `ovf-env.xml`.
    #[error("no provisioning DVD: no device holds {OVF_FILE} once udev has handled every device present at boot (devices tried: {})", if tried.is_empty() { "none".to_string() } else { tried.join(", ") })]
    Absent { tried: Vec<String> },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("reading {OVF_FILE} from {}: {source}", device.display())]
    Medium { device: PathBuf, source: MediumError },
}

/// `ovf-env.xml` as read from the DVD, and where it came from.
#[derive(Debug)]
pub struct OvfFromDvd {
    pub bytes: Vec<u8>,
    pub device: Option<PathBuf>,
}

/// Whether a `/dev` entry name matches waagent's DVD patterns.
pub fn is_dvd_name(name: &str) -> bool {
    let b = name.as_bytes();
    let digit_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    (name.starts_with("sr") && digit_at(2))
        || (name.starts_with("hd") && b.get(2).is_some_and(|c| (b'c'..=b'z').contains(c)))
        || (name.starts_with("cdrom") && digit_at(5))
        || (name.starts_with("cd") && digit_at(2))
        || is_virtio_name(name)
}

fn is_virtio_name(name: &str) -> bool {
    let b = name.as_bytes();
    name.starts_with("vd") && b.get(2).is_some_and(|c| (b'b'..=b'z').contains(c))
}

/// Candidate devices right now, in the order they are tried: waagent's CD-ROM name patterns in
/// `/dev` (`sr*`, `cd*`, `cdrom*`, `hd[c-z]`), then the CD-ROMs udev knows under other names, then
/// virtio disks (only a guess). udev's database is read only when the caller goes past the
/// names (the local stage stops at the DVD, which on Azure is `/dev/sr0`): enumerating it through
/// libudev took half a second of an emulated VM's boot.
pub fn candidates() -> impl Iterator<Item = PathBuf> {
    let (named, virtio) = names_in(Path::new("/dev"));
    let known = named.clone();
    let udev = std::iter::once(()).flat_map(move |()| {
        let known = known.clone();
        udev_cdroms().into_iter().filter(move |p| !known.contains(p))
    });
    named.into_iter().chain(udev).chain(virtio)
}

/// The entries of `dev` with waagent's DVD names, sorted: the CD-ROM names, and apart the virtio
/// disks.
fn names_in(dev: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut by_name: Vec<String> = std::fs::read_dir(dev)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    by_name.retain(|n| is_dvd_name(n));
    by_name.sort();
    let (virtio, named): (Vec<String>, Vec<String>) = by_name.into_iter().partition(|n| is_virtio_name(n));
    let path = |names: Vec<String>| names.into_iter().map(|n| dev.join(n)).collect();
    (path(named), path(virtio))
}

/// Whether `dev` (`/dev` at boot) holds a CD-ROM drive by waagent's names (`sr*`, `cd*`,
/// `cdrom*`, `hd[c-z]`; not a virtio disk). Before udev has run on the real root, the drive is
/// there only when the initramfs loaded its driver (Debian's initramfs-tools does; a host-only
/// dracut image may not).
pub fn drive_present(dev: &Path) -> bool {
    !names_in(dev).0.is_empty()
}

/// `ovf-env.xml` from the first CD-ROM drive in `dev` (by waagent's names) whose medium holds
/// one and that the in-process reader reads, without mounting, waiting for udev or ejecting: what
/// can be known before udev has run (the hostname stage). `None` for anything else (no drive, an
/// empty drive, a medium only a mount could read, a file over its limit): the local stage, which
/// waits and mounts, decides then.
pub fn read_ovf_at_once(dev: &Path) -> Option<OvfFromDvd> {
    names_in(dev).0.into_iter().find_map(|device| {
        match medium::Device::open(&device).and_then(|d| medium::read_ovf(&d)) {
            Ok(Some(bytes)) => Some(OvfFromDvd { bytes, device: Some(device) }),
            Ok(None) => None,
            Err(e) => {
                log::debug!("{}: not read before udev ({e})", device.display());
                None
            }
        }
    })
}

fn udev_cdroms() -> Vec<PathBuf> {
    let scan = || -> std::io::Result<Vec<PathBuf>> {
        let mut e = udev::Enumerator::new()?;
        e.match_subsystem("block")?;
        e.match_property("ID_CDROM", "1")?;
        Ok(e.scan_devices()?.filter_map(|d| d.devnode().map(Path::to_path_buf)).collect())
    };
    scan().unwrap_or_default()
}

/// A mounted filesystem that holds `ovf-env.xml` and looks like a DVD.
fn already_mounted() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dev, mnt, fstype) = (f.first()?, f.get(1)?, f.get(2)?);
        let dvdish = matches!(*fstype, "udf" | "iso9660")
            || Path::new(dev).file_name().is_some_and(|n| is_dvd_name(&n.to_string_lossy()));
        let mnt = PathBuf::from(mnt.replace("\\040", " "));
        (dvdish && mnt.join(OVF_FILE).is_file()).then_some(mnt)
    })
}

/// Find the DVD and read `ovf-env.xml`, waiting up to `wait` for it to appear, but not once it is
/// certain that there is none ([`DvdError::Absent`], see the module documentation). With a `wait`
/// of zero, udev is still let settle once and the devices read again.
pub fn read_ovf(runner: &dyn Runner, wait: Duration) -> Result<OvfFromDvd, DvdError> {
    let deadline = Instant::now() + wait;
    let mut tried = BTreeSet::new();
    // Made when first needed: on Azure the DVD is there at the first look.
    let mut monitor: Option<crate::host::devices::BlockEvents> = None;
    let mut settled = None;
    loop {
        if let Some(mnt) = already_mounted() {
            let path = mnt.join(OVF_FILE);
            log::info!("Reading {} (the DVD is already mounted)", path.display());
            let bytes =
                limits::read_file(&path, Document::Ovf).map_err(|e| FileError::new("read", &path, e))?;
            return Ok(OvfFromDvd { bytes, device: None });
        }
        let mut undecided = false;
        for dev in candidates() {
            tried.insert(dev.display().to_string());
            match crate::base::timeline::wait("dvd-read", || probe(runner, &dev, Path::new(MOUNT_DIR)))? {
                Probe::Found(bytes) => return Ok(OvfFromDvd { bytes, device: Some(dev) }),
                Probe::NotTheDvd => {}
                Probe::Undecided => undecided = true,
            }
        }
        let now = Instant::now();
        if settled.is_none() && (udev_idle() || now >= deadline) {
            let done = crate::base::timeline::span_by(
                crate::base::timeline::Kind::Wait,
                "udev-settle",
                || settle(runner),
                |done| {
                    if *done {
                        crate::base::timeline::Outcome::Ok
                    } else {
                        crate::base::timeline::Outcome::Failed
                    }
                },
            );
            settled = Some(done);
            if done {
                continue; // read the devices once more, now that udev has handled every one
            }
        }
        if settled == Some(true) && !undecided {
            return Err(DvdError::Absent { tried: tried.into_iter().collect() });
        }
        if now >= deadline {
            return Err(DvdError::NotFound { waited: wait, tried: tried.into_iter().collect() });
        }
        // Wake on the next block-device event, or after a second to retry media that were not ready.
        monitor
            .get_or_insert_with(crate::host::devices::BlockEvents::new)
            .wait((deadline - now).min(Duration::from_secs(1)));
    }
}

/// udev's control socket: udevd is running.
const UDEV_CONTROL: &str = "/run/udev/control";
/// Present while udev has events queued (libudev's `udev_queue_get_queue_is_empty` reads it).
const UDEV_QUEUE: &str = "/run/udev/queue";

/// Whether udev has nothing queued (or there is no udev, and `/dev` is all there is).
fn udev_idle() -> bool {
    !Path::new(UDEV_CONTROL).exists() || !Path::new(UDEV_QUEUE).exists()
}

/// Let udev handle every event sent so far (`udevadm settle`, bounded). `true` when it has: then
/// every device present at boot is in `/dev` and in udev's database. Without udev, `/dev` is all
/// there is: `true` at once.
fn settle(runner: &dyn Runner) -> bool {
    if !Path::new(UDEV_CONTROL).exists() {
        log::debug!("no udev running: the devices in /dev are all there are");
        return true;
    }
    if !runner.exists("udevadm") {
        return false;
    }
    let cmd = Cmd::new("udevadm").args(["settle", "--timeout=10"]).timeout(Duration::from_secs(15));
    match runner.run(&cmd) {
        Ok(_) => true,
        Err(e) => {
            log::warn!("udev did not settle: {e}");
            false
        }
    }
}

/// `DetectScvmmEnv`: mount each DVD candidate and, where it holds System Center VMM's
/// `linuxosconfiguration.xml`, run VMM's installer from it (waagent's behaviour). `true` when a VMM
/// environment was found: the VMM agent then owns provisioning.
pub fn detect_scvmm(runner: &dyn Runner) -> bool {
    let mount_dir = Path::new(MOUNT_DIR);
    if files::ensure_dir(mount_dir, 0o700).is_err() {
        return false;
    }
    for dev in candidates() {
        let mounted = runner
            .run(&Cmd::new("mount").args(["-o", "ro", "-t", "udf,iso9660,vfat"]).arg(&dev).arg(mount_dir));
        if mounted.is_err() {
            continue;
        }
        let outcome = crate::host::platform_features::detect_scvmm(mount_dir, runner);
        let _ = runner.run(&Cmd::new("umount").arg(mount_dir));
        match outcome {
            Ok(crate::host::platform_features::ScvmmOutcome::NotScvmm) => {}
            Ok(_) => return true,
            Err(e) => {
                log::error!("{e}");
                return true;
            }
        }
    }
    false
}

/// What to do with a candidate device after reading it directly.
#[derive(Debug, PartialEq, Eq)]
pub enum Direct {
    /// `ovf-env.xml` was read.
    Found(Vec<u8>),
    /// Not the DVD: a volume without `ovf-env.xml`.
    NotTheDvd,
    /// An empty drive (`ENOMEDIUM`): not the DVD now; a medium may still come.
    NoMedium,
    /// Leave it to the kernel: mount it.
    Mount,
}

/// Decide from the direct read of `dev` (the reason is logged). Only an `ovf-env.xml` over its
/// size limit is an error: the mount would find the same file.
pub fn after_direct_read(dev: &Path, read: Result<Option<Vec<u8>>, MediumError>) -> Result<Direct, DvdError> {
    let dev_name = dev.display();
    match read {
        Ok(Some(bytes)) => Ok(Direct::Found(bytes)),
        Ok(None) => {
            log::debug!("{dev_name} is not the provisioning DVD: its volume has no {OVF_FILE}");
            Ok(Direct::NotTheDvd)
        }
        Err(MediumError::NoMedium) => {
            log::debug!("{dev_name}: no medium in the drive");
            Ok(Direct::NoMedium)
        }
        Err(e @ (MediumError::Unrecognised | MediumError::Unsupported(_))) => {
            log::info!("{dev_name} is not read directly ({e}); mounting it");
            Ok(Direct::Mount)
        }
        Err(e @ (MediumError::Invalid(_) | MediumError::Io { .. })) => {
            log::warn!("cannot read {dev_name} directly ({e}); mounting it");
            Ok(Direct::Mount)
        }
        Err(source @ MediumError::TooLarge(_)) => Err(DvdError::Medium { device: dev.to_path_buf(), source }),
    }
}

/// Read `ovf-env.xml` from `dev` without mounting it and eject it; when the direct read leaves it
/// to the kernel, [`read_from_device`] (mount) instead. `Ok(None)` when `dev` is not the DVD.
pub fn read_device(runner: &dyn Runner, dev: &Path, mount_dir: &Path) -> Result<Option<Vec<u8>>, DvdError> {
    Ok(match probe(runner, dev, mount_dir)? {
        Probe::Found(bytes) => Some(bytes),
        Probe::NotTheDvd | Probe::Undecided => None,
    })
}

/// What one candidate device is.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    /// The DVD: its `ovf-env.xml`.
    Found(Vec<u8>),
    /// Certainly not the DVD: a readable volume without `ovf-env.xml`.
    NotTheDvd,
    /// Not known yet: an empty drive, or a medium that only a mount could read and that did not
    /// mount (not ready yet, or a file system the kernel lacks).
    Undecided,
}

/// Read `dev` as [`read_device`] does, and say how certain the answer is.
pub fn probe(runner: &dyn Runner, dev: &Path, mount_dir: &Path) -> Result<Probe, DvdError> {
    let read = medium::Device::open(dev).and_then(|device| medium::read_ovf(&device));
    match after_direct_read(dev, read)? {
        Direct::Found(bytes) => {
            log::info!("Read {OVF_FILE} from {} (not mounted)", dev.display());
            eject(runner, dev);
            Ok(Probe::Found(bytes))
        }
        Direct::NotTheDvd => Ok(Probe::NotTheDvd),
        Direct::NoMedium => Ok(Probe::Undecided),
        Direct::Mount => Ok(match mount_and_read(runner, dev, mount_dir)? {
            MountRead::Ovf(bytes) => Probe::Found(bytes),
            MountRead::NoOvf => Probe::NotTheDvd,
            MountRead::Failed => Probe::Undecided,
        }),
    }
}

/// Eject the DVD once read, as waagent does (a virtio disk, only a guess, is left alone).
fn eject(runner: &dyn Runner, dev: &Path) {
    let is_virtio = dev.file_name().is_some_and(|n| is_virtio_name(&n.to_string_lossy()));
    if !is_virtio && runner.exists("eject") {
        if let Err(e) = runner.run(&Cmd::new("eject").arg(dev).timeout(Duration::from_secs(10))) {
            log::warn!("cannot eject the DVD: {e}");
        }
    }
}

/// Mount `dev` read-only at `mount_dir`, read `ovf-env.xml`, unmount and eject. `Ok(None)` when the
/// device cannot be mounted or holds no `ovf-env.xml`.
pub fn read_from_device(
    runner: &dyn Runner,
    dev: &Path,
    mount_dir: &Path,
) -> Result<Option<Vec<u8>>, DvdError> {
    Ok(match mount_and_read(runner, dev, mount_dir)? {
        MountRead::Ovf(bytes) => Some(bytes),
        MountRead::NoOvf | MountRead::Failed => None,
    })
}

/// What a mount of a candidate gave.
enum MountRead {
    /// Its `ovf-env.xml`.
    Ovf(Vec<u8>),
    /// A volume without `ovf-env.xml`.
    NoOvf,
    /// It did not mount.
    Failed,
}

fn mount_and_read(runner: &dyn Runner, dev: &Path, mount_dir: &Path) -> Result<MountRead, DvdError> {
    files::ensure_dir(mount_dir, 0o700)?;
    let mounted = runner.run(
        &Cmd::new("mount")
            .args(["-o", "ro", "-t", "udf,iso9660,vfat"])
            .arg(dev)
            .arg(mount_dir)
            .timeout(Duration::from_secs(30)),
    );
    if let Err(e) = mounted {
        log::debug!("{} is not the provisioning DVD: {e}", dev.display());
        return Ok(MountRead::Failed);
    }
    let path = mount_dir.join(OVF_FILE);
    let read = limits::read_file(&path, Document::Ovf);
    if let Err(e) = runner.run(&Cmd::new("umount").arg(mount_dir)) {
        log::warn!("cannot unmount the DVD: {e}");
    }
    match read {
        Ok(bytes) => {
            log::info!("Read {OVF_FILE} from {}", dev.display());
            eject(runner, dev);
            Ok(MountRead::Ovf(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::debug!("{} has no {OVF_FILE}", dev.display());
            Ok(MountRead::NoOvf)
        }
        Err(e) => Err(FileError::new("read", &path, e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::{CmdOutput, FakeRunner};

    #[test]
    fn waagent_name_patterns() {
        for yes in ["sr0", "hdc", "hdz", "cdrom0", "cd1", "vdb"] {
            assert!(is_dvd_name(yes), "{yes}");
        }
        for no in ["sda", "sr", "hda", "hdb", "cdrom", "vda", "nvme0n1", "loop0", "cdx"] {
            assert!(!is_dvd_name(no), "{no}");
        }
    }

    #[test]
    fn unmountable_device_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeRunner::new();
        fake.respond(
            "mount",
            CmdOutput { code: Some(32), stderr: b"no medium found".to_vec(), ..Default::default() },
        );
        let got = read_from_device(&fake, Path::new("/dev/sr0"), &dir.path().join("mnt")).expect("read");
        assert!(got.is_none());
        assert_eq!(fake.command_lines().len(), 1, "no umount after a failed mount");
    }

    #[test]
    fn an_oversized_ovf_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).expect("mkdir");
        // 32 MiB of empty elements: the old reader took it whole, and its tree took 1 GB.
        std::fs::write(mnt.join(OVF_FILE), "<x/>".repeat(8 * 1024 * 1024)).expect("write");
        let err = read_from_device(&FakeRunner::new(), Path::new("/dev/sr0"), &mnt).expect_err("too large");
        assert!(
            err.to_string().ends_with("the ovf-env.xml is larger than its limit of 1048576 bytes"),
            "{err}"
        );
    }

    #[test]
    fn mounted_media_is_read_unmounted_and_ejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).expect("mkdir");
        // The fake mount does nothing; the file is already "on the media".
        std::fs::write(mnt.join(OVF_FILE), b"<Environment/>").expect("write");
        let fake = FakeRunner::new();
        let got = read_from_device(&fake, Path::new("/dev/sr0"), &mnt).expect("read");
        assert_eq!(got.as_deref(), Some(&b"<Environment/>"[..]));
        let lines = fake.command_lines();
        assert_eq!(lines[0], format!("mount -o ro -t udf,iso9660,vfat /dev/sr0 {}", mnt.display()));
        assert_eq!(lines[1], format!("umount {}", mnt.display()));
        assert_eq!(lines[2], "eject /dev/sr0");
        // A virtio disk is not ejected.
        let fake = FakeRunner::new();
        read_from_device(&fake, Path::new("/dev/vdb"), &mnt).expect("read");
        assert_eq!(fake.command_lines().len(), 2);
    }

    /// An image file made by `tool args..` (None, with a SKIP line, when the tool is missing).
    fn image(dir: &Path, tool: &str, args: &[&str]) -> Option<PathBuf> {
        if crate::base::cmd::find_program(tool).is_none() {
            crate::base::testing::skip(&format!("dvd: {tool} is missing"));
            return None;
        }
        let out = std::process::Command::new(tool).args(args).output().expect(tool);
        assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Some(dir.join("dvd.img"))
    }

    #[test]
    fn a_dvd_image_is_read_without_mounting_and_ejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir(&src).expect("mkdir");
        std::fs::write(src.join(OVF_FILE), b"<Environment/>").expect("write");
        let img = dir.path().join("dvd.img");
        let args =
            ["-quiet", "-udf", "-J", "-r", "-o", img.to_str().expect("utf-8"), src.to_str().expect("utf-8")];
        let Some(img) = image(dir.path(), "genisoimage", &args) else { return };
        let fake = FakeRunner::new();
        let got = read_device(&fake, &img, &dir.path().join("mnt")).expect("read");
        assert_eq!(got.as_deref(), Some(&b"<Environment/>"[..]));
        assert_eq!(fake.command_lines(), vec![format!("eject {}", img.display())], "no mount, one eject");
        // A volume without the file is not the DVD: no mount, no eject.
        std::fs::remove_file(src.join(OVF_FILE)).expect("rm");
        std::fs::write(src.join("other.xml"), b"x").expect("write");
        let Some(img) = image(dir.path(), "genisoimage", &args) else { return };
        let fake = FakeRunner::new();
        assert_eq!(read_device(&fake, &img, &dir.path().join("mnt")).expect("read"), None);
        assert!(fake.command_lines().is_empty(), "{:?}", fake.command_lines());
        // A readable volume without the file is certainly not the DVD: no reason to wait for it.
        assert_eq!(probe(&fake, &img, &dir.path().join("mnt")).expect("probe"), Probe::NotTheDvd);
    }

    #[test]
    fn before_udev_only_a_drive_already_in_dev_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dev = dir.path().join("dev");
        std::fs::create_dir(&dev).expect("mkdir");
        assert!(!drive_present(&dev));
        assert!(read_ovf_at_once(&dev).is_none());
        // A virtio disk is no drive, and is not read.
        std::fs::write(dev.join("vdb"), vec![0u8; 4096]).expect("write");
        std::fs::write(dev.join("sda"), vec![0u8; 4096]).expect("write");
        assert!(!drive_present(&dev));
        // An unreadable medium (zeros: neither UDF nor ISO 9660) is left to the local stage.
        std::fs::write(dev.join("sr1"), vec![0u8; 64 * 2048]).expect("write");
        assert!(drive_present(&dev));
        assert!(read_ovf_at_once(&dev).is_none());
        let src = dir.path().join("src");
        std::fs::create_dir(&src).expect("mkdir");
        std::fs::write(src.join(OVF_FILE), b"<Environment/>").expect("write");
        let img = dir.path().join("dvd.img");
        let args = ["-quiet", "-J", "-r", "-o", img.to_str().expect("utf-8"), src.to_str().expect("utf-8")];
        let Some(img) = image(dir.path(), "genisoimage", &args) else { return };
        std::fs::rename(&img, dev.join("sr0")).expect("rename");
        let read = read_ovf_at_once(&dev).expect("read");
        assert_eq!(read.bytes, b"<Environment/>");
        assert_eq!(read.device, Some(dev.join("sr0")));
    }

    #[test]
    fn a_vfat_medium_is_left_to_mount() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("dvd.img");
        std::fs::File::create(&img).and_then(|f| f.set_len(4 << 20)).expect("image");
        let Some(img) = image(dir.path(), "mkfs.vfat", &[img.to_str().expect("utf-8")]) else { return };
        let read = medium::Device::open(&img).and_then(|d| medium::read_ovf(&d));
        assert!(matches!(read, Err(MediumError::Unrecognised)), "{read:?}");
        assert_eq!(after_direct_read(&img, read).expect("decision"), Direct::Mount);
        // Through read_device: the fake mount "fails" as a real one of an empty vfat would not,
        // but what matters is that mount was asked.
        let fake = FakeRunner::new();
        fake.respond("mount", CmdOutput { code: Some(32), ..Default::default() });
        let mnt = dir.path().join("mnt");
        assert_eq!(read_device(&fake, &img, &mnt).expect("read"), None);
        assert_eq!(
            fake.command_lines(),
            vec![format!("mount -o ro -t udf,iso9660,vfat {} {}", img.display(), mnt.display())]
        );
        // Only a mount could tell, and it did not mount: not known yet (waited for, bounded).
        assert_eq!(probe(&fake, &img, &mnt).expect("probe"), Probe::Undecided);
    }

    #[test]
    fn direct_read_outcomes_decide_the_next_step() {
        let dev = Path::new("/dev/sr0");
        let next = |r| after_direct_read(dev, r).expect("decision");
        assert_eq!(next(Ok(Some(b"x".to_vec()))), Direct::Found(b"x".to_vec()));
        assert_eq!(next(Ok(None)), Direct::NotTheDvd);
        // An empty drive: passed over, no mount (which would fail with "no medium found"); a medium
        // may still come, so it is not a certain "no".
        assert_eq!(next(Err(MediumError::NoMedium)), Direct::NoMedium);
        assert_eq!(next(Err(MediumError::Unrecognised)), Direct::Mount);
        assert_eq!(
            next(Err(MediumError::Unsupported("UDF: partition map 1 is a type 2 map".into()))),
            Direct::Mount
        );
        assert_eq!(next(Err(MediumError::Invalid("UDF: bad tag checksum".into()))), Direct::Mount);
        let io = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(next(Err(MediumError::Io { what: "x".into(), source: io })), Direct::Mount);
        let err = after_direct_read(dev, Err(Document::Ovf.too_large().into())).expect_err("too large");
        assert_eq!(
            err.to_string(),
            "reading ovf-env.xml from /dev/sr0: the ovf-env.xml is larger than its limit of 1048576 bytes"
        );
    }

    #[test]
    fn an_empty_drive_is_no_medium() {
        // A missing device is an I/O error (left to mount, as before); ENOMEDIUM, which only a
        // real empty drive gives, is "no medium".
        let err = medium::Device::open(Path::new("/dev/wala-no-such-device")).expect_err("missing");
        assert!(matches!(err, MediumError::Io { .. }), "{err:?}");
        struct Empty;
        impl medium::Medium for Empty {
            fn sectors(&self) -> u64 {
                100
            }
            fn read_sectors(&self, _: u64, _: &mut [u8]) -> std::io::Result<()> {
                Err(std::io::Error::from_raw_os_error(libc::ENOMEDIUM))
            }
        }
        assert!(matches!(medium::read_ovf(&Empty), Err(MediumError::NoMedium)));
    }
}
