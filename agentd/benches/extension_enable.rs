//! Benchmark: from a new incarnation at the fabric to the extension's enable command starting.
//!
//! The real `wala-agentd daemon` against the fabric simulator on loopback, with one handler whose
//! script writes the time as its first command. Each round puts new settings (a higher sequence
//! number) into the ExtensionsConfig and bumps the incarnation; the figure is the time from the
//! bump to the enable script's first command. The goal-state period is 50 ms here (6 s in
//! production, where the wait for the next poll dominates), so the figure is the agent's own cost:
//! the poll, the goal state and ExtensionsConfig fetches and parses, the settings file, the command
//! start. Prints the median, minimum and maximum; nothing is asserted.
//!
//! Usage: `cargo bench -p wala-agentd --bench extension_enable [-- ROUNDS]` (default 20).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::*;

const NAME: &str = "Wala.Bench.Enable";

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

fn config(seq: u64) -> String {
    extensions_config(&[plugin(NAME, "1.0.0", "enabled")], &[settings(NAME, "1.0.0", seq, "m")], "")
}

fn main() {
    let rounds: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).filter(|&n| n > 0).unwrap_or(20);
    let work = tempfile::tempdir().expect("tempdir");
    let log = work.path().join("ops.log");
    let handlers = [Handler { name: NAME, packages: vec![Package::new("1.0.0").mark_start()] }];
    let (fabric, _scenario) = start(&handlers, &log, &config(0));
    let root = root_for(&fabric, "");
    let base = root.path().join(format!("var/lib/waagent/{NAME}-1.0.0"));
    let daemon = std::process::Command::new(BIN)
        .args(["daemon", "--goal-state-period-ms", "50", "--root"])
        .arg(root.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn wala-agentd");
    let daemon = Daemon::from(daemon);
    wait_for("the first enable", Duration::from_secs(60), || base.join("started.enable.0").exists());

    let mut ms: Vec<f64> = Vec::new();
    for seq in 1..=rounds {
        fabric.set_extensions_config(&config(seq));
        let t0 = now_ns();
        fabric.bump_incarnation();
        let marker = base.join(format!("started.enable.{seq}"));
        wait_for("the enable of a new sequence number", Duration::from_secs(60), || {
            std::fs::read_to_string(&marker).is_ok_and(|t| !t.trim().is_empty())
        });
        let started: u128 = std::fs::read_to_string(&marker).unwrap_or_default().trim().parse().unwrap_or(0);
        ms.push(started.saturating_sub(t0) as f64 / 1e6);
    }
    stop(daemon);
    ms.sort_by(f64::total_cmp);
    println!(
        "new incarnation -> enable command started ({rounds} rounds, goal-state period 50 ms): \
         median {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1]
    );
}
