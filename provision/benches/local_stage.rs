//! Benchmark: the whole local stage of `wala-provision` on a temporary root (real useradd, real
//! password hashing, real files; host-key generation off, as the target excludes ssh-keygen).
//! Prints the wall time of each step (median of several runs), the total, the process's wall
//! time, and its peak RSS. Needs root. Run with `cargo bench -p wala-provision`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Instant;

const RUNS: usize = 11;

fn main() {
    if !support::is_root() {
        println!("local_stage benchmark: needs root (useradd --prefix); not run");
        return;
    }
    let mut per_step: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut process_ms = Vec::new();
    for _ in 0..RUNS {
        let r = support::TestRoot::new();
        let ovf = r.ovf(Some("Bench-Pa55word"), None);
        let conf = r.config("");
        let started = Instant::now();
        let out = r.run(&ovf, &conf, &[]);
        process_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            // "INFO <step>: done in <ms> ms"
            let Some(rest) = line.strip_prefix("INFO ") else { continue };
            let Some((step, ms)) = rest.split_once(": done in ") else { continue };
            let Some(ms) = ms.strip_suffix(" ms").and_then(|m| m.parse::<f64>().ok()) else { continue };
            if !order.contains(&step.to_string()) {
                order.push(step.to_string());
            }
            per_step.entry(step.to_string()).or_default().push(ms);
        }
    }
    println!("wala-provision local stage on a temporary root, median of {RUNS} runs");
    println!("{:<16} {:>10}", "step", "ms");
    let mut total = 0.0;
    for step in &order {
        let m = median(per_step.get_mut(step).expect("step"));
        total += m;
        println!("{step:<16} {m:>10.2}");
    }
    println!("{:<16} {total:>10.2}   (target: under 50 ms)", "steps total");
    println!("{:<16} {:>10.2}   (process start to exit)", "process", median(&mut process_ms));
    let r = support::TestRoot::new();
    let (ovf, conf) = (r.ovf(Some("Bench-Pa55word"), None), r.config(""));
    println!(
        "{:<16} {:>10} KiB (wala-provision and the commands it waits for)",
        "peak RSS",
        peak_rss_kib(&r, &ovf, &conf)
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Peak RSS of one local-stage run, from wait4(2) on that process alone.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std cannot see
fn peak_rss_kib(r: &support::TestRoot, ovf: &std::path::Path, conf: &std::path::Path) -> i64 {
    let child = std::process::Command::new(support::BIN)
        .arg("--root")
        .arg(r.dir.path())
        .args(["--stage", "local", "--config"])
        .arg(conf)
        .arg("--ovf")
        .arg(ovf)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // SAFETY: wait4 on our own child fills the structs we pass.
    unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(child.id() as i32, &mut status, 0, &mut usage);
        usage.ru_maxrss
    }
}
