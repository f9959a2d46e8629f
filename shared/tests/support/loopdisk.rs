//! A loop device over a sparse image in a temp dir, for the resource-disk tests and benchmark.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use wala::base::root::HostRoot;
use wala::host::disk::mounts::{read_mounts, read_swaps};
use wala::host::disk::{DiscoverySource, ResourceDisk, ResourceDiskSettings};

pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sh_stdin(program: &str, args: &[&str], input: &str) {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "{program} {args:?}");
}

/// A loop device over a sparse image in a temp dir, torn down (swaps, mounts, device) on drop.
pub struct LoopDisk {
    pub dir: tempfile::TempDir,
    pub dev: String,
}

impl LoopDisk {
    pub fn new(size_mb: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        fs::File::create(&img).unwrap().set_len(size_mb << 20).unwrap();
        let dev =
            sh("losetup", &["--find", "--show", "--partscan", img.to_str().unwrap()]).trim().to_string();
        Self { dir, dev }
    }

    pub fn name(&self) -> String {
        self.dev.trim_start_matches("/dev/").to_string()
    }

    pub fn disk(&self) -> ResourceDisk {
        ResourceDisk { name: self.name(), source: DiscoverySource::AzureSymlink }
    }

    pub fn part1(&self) -> String {
        format!("{}p1", self.dev)
    }

    pub fn mount_point(&self) -> PathBuf {
        self.dir.path().join("mnt/resource")
    }

    pub fn settings(&self, fs: &str) -> ResourceDiskSettings {
        ResourceDiskSettings {
            format: true,
            filesystem: fs.into(),
            mount_point: self.mount_point(),
            ..ResourceDiskSettings::default()
        }
    }

    /// Partition with an sfdisk script and make the kernel show the partitions.
    pub fn partition(&self, script: &str) {
        sh_stdin("sfdisk", &["--quiet", &self.dev], script);
        let _ = Command::new("partx").args(["-u", &self.dev]).status();
        assert!(Path::new(&self.part1()).exists(), "{} did not appear", self.part1());
    }

    /// Azure's fresh temp disk: MBR, one type-7 partition, NTFS, with `files` in its root.
    pub fn azure_ntfs(&self, files: &[&str]) {
        self.partition("label: dos\n,,7\n");
        sh("mkntfs", &["--quick", "--force", "--label", "Temporary Storage", &self.part1()]);
        for f in files {
            let src = self.dir.path().join(f);
            fs::write(&src, b"content").unwrap();
            sh("ntfscp", &["--force", &self.part1(), src.to_str().unwrap(), f]);
        }
    }

    pub fn is_mounted(&self) -> bool {
        read_mounts(&HostRoot::live()).unwrap().iter().any(|m| m.target == self.mount_point())
    }

    pub fn umount(&self) {
        sh("umount", &[self.mount_point().to_str().unwrap()]);
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let under = |p: &Path| p.starts_with(self.dir.path());
        let live = HostRoot::live();
        let mapper = Path::new("/dev/mapper/wala-swap");
        if mapper.exists() {
            let _ = Command::new("swapoff").arg(mapper).status();
            let _ = Command::new("cryptsetup").args(["close", "wala-swap"]).status();
        }
        for s in read_swaps(&live).unwrap_or_default().iter().filter(|s| under(&s.path)) {
            let _ = Command::new("swapoff").arg(&s.path).status();
        }
        let mut targets: Vec<PathBuf> = read_mounts(&live)
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.target)
            .filter(|t| under(t))
            .collect();
        targets.reverse();
        for t in targets {
            if !Command::new("umount").arg(&t).status().is_ok_and(|s| s.success()) {
                let _ = Command::new("umount").arg("-l").arg(&t).status();
            }
        }
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}
