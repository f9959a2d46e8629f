//! Benchmark: the daemon's memory while it downloads and unpacks a large extension package.
//!
//! Writes a package of SIZE MiB (default 500) to a temporary directory: the handler script plus
//! stored, incompressible entries of up to 64 MiB each. The fabric simulator serves it from disk
//! (streamed, never loaded); the real `wala-agentd daemon` runs against it. The daemon is first
//! run until its idle goal-state polls settle (an ExtensionsConfig without the handler), then the
//! handler is added; its `/proc/<pid>/status` is sampled every 5 ms from then until enable runs.
//! Prints the idle VmRSS, the peak VmRSS sampled during download and unpack, the kernel's own
//! high-water mark (VmHWM), the time taken and the difference against the target (idle + 2 MiB).
//! Nothing is asserted.
//!
//! Usage: `cargo bench -p wala-agentd --bench large_package [-- SIZE_MIB]`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;
use wala_fabric::{Fabric, FabricConfig, Scenario};

const NAME: &str = "Wala.Bench.Large";

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn main() {
    let mib: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).filter(|&n| n > 0).unwrap_or(500);
    let work = tempfile::tempdir().expect("tempdir");
    let log = work.path().join("ops.log");
    let dir = scenario_dir();
    let zip = dir.path().join("package.zip");
    let written = Instant::now();
    let zip_len = write_big_package(&Package::new("1.0.0"), &log, mib << 20, &zip);
    eprintln!(
        "wrote a {:.1} MiB package in {:.1} s",
        zip_len as f64 / 1048576.0,
        written.elapsed().as_secs_f64()
    );
    std::fs::write(
        dir.path().join("manifest.xml"),
        r#"<?xml version="1.0" encoding="utf-8"?><PluginVersionManifest><Plugins><Plugin><Version>1.0.0</Version><Uris><Uri>{{wire}}/packages/package.zip</Uri></Uris></Plugin></Plugins><InternalPlugins/></PluginVersionManifest>"#,
    )
    .expect("manifest");
    let mut files = serde_json::Map::new();
    files.insert("/packages/package.zip".into(), "package.zip".into());
    files.insert(format!("/artifacts/{NAME}/manifest.xml"), "manifest.xml".into());
    finish_scenario(&dir, files, &extensions_config(&[], &[], ""));
    let fabric =
        Fabric::start(FabricConfig::new(Scenario::from_dir(dir.path()).expect("scenario"))).expect("fabric");
    let root = root_for(&fabric, "");
    let daemon = spawn(root.path());
    let pid = daemon.pid();

    // Idle: the empty goal state processed and a few seconds of polls.
    std::thread::sleep(Duration::from_secs(5));
    let (idle, idle_hwm) = memory(pid).expect("the daemon's /proc status");

    let config =
        extensions_config(&[plugin(NAME, "1.0.0", "enabled")], &[settings(NAME, "1.0.0", 1, "big")], "");
    fabric.set_extensions_config(&config);
    let start = Instant::now();
    fabric.bump_incarnation();
    let base = root.path().join(format!("var/lib/waagent/{NAME}-1.0.0"));
    let mut peak = idle;
    let mut hwm = idle_hwm;
    let mut samples = 0u64;
    loop {
        if let Some((rss, high)) = memory(pid) {
            peak = peak.max(rss);
            hwm = hwm.max(high);
            samples += 1;
        }
        if std::fs::read_to_string(&log).is_ok_and(|l| l.contains("enable ")) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "the package was not installed in 10 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = start.elapsed();
    let unpacked: u64 = std::fs::read_dir(base.join("payload"))
        .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    stop(daemon);
    let mb = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{:.1} MiB package ({} MiB unpacked) downloaded and unpacked in {:.1} s; {samples} samples",
        zip_len as f64 / 1048576.0,
        unpacked >> 20,
        took.as_secs_f64()
    );
    println!("idle VmRSS {:.2} MiB (VmHWM {:.2} MiB)", mb(idle), mb(idle_hwm));
    println!("peak VmRSS during download and unpack {:.2} MiB (VmHWM {:.2} MiB)", mb(peak), mb(hwm));
    let over = peak.saturating_sub(idle);
    println!(
        "peak - idle = {:.2} MiB (VmHWM - idle = {:.2} MiB); target under +2 MiB: {}",
        mb(over),
        mb(hwm.saturating_sub(idle)),
        if over < 2048 && hwm.saturating_sub(idle) < 2048 { "met" } else { "NOT met" }
    );
}
