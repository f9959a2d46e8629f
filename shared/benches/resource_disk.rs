//! Benchmark: the resource disk steps on a 1 GiB loop disk made like a fresh Azure disk (MBR, one
//! NTFS partition holding only DATALOSS_WARNING_README.txt): probe and decide, partition + mkfs +
//! mount, 256 MiB swap; then a "reboot" with the disk mounted, and one with it unmounted (mount
//! only). Prints the wall time of each step. Needs root. `cargo bench -p wala --bench resource_disk`.

#[path = "../tests/support/loopdisk.rs"]
mod loopdisk;

use std::time::Instant;

use wala::base::cmd::SystemRunner;
use wala::base::root::HostRoot;
use wala::host::disk::{
    apply_disk, apply_swap, plan_for, swap_after_mount, ResourceDiskSettings, SwapDecision,
};

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("resource_disk benchmark: needs root (loop devices, mkfs, mount); not run");
        return;
    }
    let root = HostRoot::live();
    let d = loopdisk::LoopDisk::new(1024);
    d.azure_ntfs(&["DATALOSS_WARNING_README.txt"]);
    let settings = ResourceDiskSettings { enable_swap: true, swap_size_mb: 256, ..d.settings("ext4") };
    let mut rows: Vec<(&str, f64)> = Vec::new();
    let mut timed = |name: &'static str, f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        rows.push((name, t.elapsed().as_secs_f64() * 1000.0));
    };

    let mut plan = None;
    timed("probe + decide (fresh disk)", &mut || {
        plan = Some(plan_for(&root, &settings, Some(&d.disk())).expect("plan"));
    });
    let plan = plan.expect("plan");
    let mut outcome = None;
    timed("partition + mkfs.ext4 + mount", &mut || {
        outcome = Some(apply_disk(&root, &SystemRunner, &plan).expect("apply"));
    });
    let outcome = outcome.expect("outcome");
    timed("swap 256 MiB (fallocate, mkswap, swapon)", &mut || {
        if let SwapDecision::Plan(p) = swap_after_mount(&root, &settings, &outcome).expect("swap decision") {
            apply_swap(&root, &SystemRunner, &p).expect("swap");
        }
    });
    timed("reboot, disk still mounted: probe + decide", &mut || {
        let p = plan_for(&root, &settings, Some(&d.disk())).expect("plan");
        apply_disk(&root, &SystemRunner, &p).expect("apply");
    });
    let _ = std::process::Command::new("swapoff").arg(d.mount_point().join("swapfile")).status();
    d.umount();
    timed("reboot, disk unmounted: probe + mount", &mut || {
        let p = plan_for(&root, &settings, Some(&d.disk())).expect("plan");
        apply_disk(&root, &SystemRunner, &p).expect("apply");
    });
    println!("resource disk on a 1 GiB loop device ({})", d.dev);
    for (name, ms) in rows {
        println!("{name:<44} {ms:>9.1} ms");
    }
}
