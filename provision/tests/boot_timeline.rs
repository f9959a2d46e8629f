//! The boot timeline end to end: the real `wala-provision` stages, one process each as systemd
//! runs them, on a temporary root against the fabric simulator; then the real
//! `wala-agentd boot-report` reads what they recorded.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;
use wala_fabric::Fabric;

/// `wala-agentd`, built beside `wala-provision` (`cargo test --workspace` builds both first).
fn agentd() -> Option<PathBuf> {
    let path = Path::new(BIN).with_file_name("wala-agentd");
    path.exists().then_some(path)
}

fn entries_of(json: &[u8]) -> Vec<serde_json::Value> {
    serde_json::from_slice::<Vec<serde_json::Value>>(json).expect("boot-report --json prints a JSON list")
}

fn named<'a>(entries: &'a [serde_json::Value], lane: &str, kind: &str) -> Vec<&'a serde_json::Value> {
    entries.iter().filter(|e| e["lane"] == lane && e["kind"] == kind).collect()
}

#[test]
fn the_stages_record_a_timeline_that_boot_report_reads() {
    if !need_root("the_stages_record_a_timeline_that_boot_report_reads") {
        return;
    }
    let Some(agentd) = agentd() else {
        skip("the_stages_record_a_timeline_that_boot_report_reads: wala-agentd is not built (cargo test --workspace)");
        return;
    };
    let fabric = Fabric::start_builtin().expect("fabric");
    let r = TestRoot::new();
    let conf = r.config(&format!(
        "Wala.WireServer={}\nWala.HostGAPlugin={}\nWala.Imds={}\n",
        fabric.wire_addr(),
        fabric.hgap_addr(),
        fabric.imds_addr()
    ));
    let ovf = r.ovf(Some("Secret-Pa55"), None);
    for stage in ["local", "resource-disk", "host-keys", "network"] {
        let out = Command::new(BIN)
            .arg("--root")
            .arg(r.dir.path())
            .args(["--stage", stage, "--config"])
            .arg(&conf)
            .arg("--ovf")
            .arg(&ovf)
            .output()
            .expect("run wala-provision");
        assert!(out.status.success(), "{stage}: {}", stderr(&out));
    }
    let raw = r.read("run/wala/boot-timeline.jsonl");
    assert!(!raw.contains("Secret-Pa55"));
    assert!(raw.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{raw}");
    // The network stage provisioned: the timeline is kept beyond /run.
    assert_eq!(r.read("var/lib/waagent/wala-boot-timeline.jsonl"), raw);

    let out = Command::new(&agentd)
        .arg("--root")
        .arg(r.dir.path())
        .arg("--config")
        .arg(&conf)
        .args(["boot-report", "--json"])
        .output()
        .expect("run wala-agentd");
    assert!(out.status.success(), "{}", stderr(&out));
    let entries = entries_of(&out.stdout);

    // Every stage process, and how it ended.
    let stages: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e["kind"] == "stage")
        .map(|e| {
            (e["name"].as_str().unwrap_or_default().into(), e["outcome"].as_str().unwrap_or_default().into())
        })
        .collect();
    let stage = |n: &str, o: &str| (n.to_string(), o.to_string());
    // Sorted by name: a stage starts when its process was made, which the kernel gives to 10 ms,
    // and these ran back to back within a few milliseconds.
    let mut stages = stages;
    stages.sort();
    assert_eq!(
        stages,
        [
            stage("host-keys", "skipped"),
            stage("local", "ok"),
            stage("network", "ok"),
            stage("resource-disk", "skipped")
        ]
    );
    // The local stage's steps, in order, each inside the stage.
    let local = named(&entries, "local", "stage")[0];
    let steps = named(&entries, "local", "step");
    let names: Vec<&str> = steps.iter().filter_map(|e| e["name"].as_str()).collect();
    // In order, but for `useradd`'s step and the steps that run beside it on the other thread.
    assert_eq!(names[..4], ["start-up", "set-up", "ovf", "plan"], "{names:?}");
    let mut beside = names[4..11].to_vec();
    beside.sort_unstable();
    assert_eq!(
        beside,
        ["custom-data", "guest-agent", "hostname", "save-ovf", "sshd", "sudoers-check", "user"],
        "{names:?}"
    );
    assert_eq!(names[11..], ["password", "sudoers", "ssh-keys", "root-password"], "{names:?}");
    let t = |e: &serde_json::Value, k: &str| e[k].as_f64().expect("a time");
    for s in &steps {
        assert_eq!(s["outcome"], "ok");
        assert!(t(s, "start") >= t(local, "start") && t(s, "end") <= t(local, "end"), "{s} in {local}");
    }
    // The network stage: waits on the WireServer, the Ready report last.
    let network = named(&entries, "network", "stage")[0];
    // (Process start times are to 10 ms, truncated.)
    assert!(t(network, "start") + 0.01 >= t(local, "end"));
    let waits: Vec<&str> =
        named(&entries, "network", "wait").iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(waits, ["wireserver-versions", "report-provisioning", "report-ready"]);
    let ready = named(&entries, "network", "wait")[2];
    assert_eq!(ready["outcome"], "ok");
    assert!(t(ready, "end") <= t(network, "end") && t(ready, "end") > t(ready, "start"));
    // Every stage process counts its own start-up (from the kernel's record of when it was
    // made), then its set-up from main, first, inside its stage.
    for lane in ["local", "resource-disk", "host-keys", "network"] {
        let stage = named(&entries, lane, "stage")[0];
        let steps = named(&entries, lane, "step");
        let (first, second) = (steps[0], steps[1]);
        assert_eq!((&first["name"], &second["name"]), (&"start-up".into(), &"set-up".into()), "{lane}");
        assert_eq!(t(first, "start"), t(stage, "start"), "{lane}");
        assert_eq!(t(first, "end"), t(second, "start"), "{lane}");
        assert!(t(first, "end") >= t(first, "start") && t(second, "end") <= t(stage, "end"), "{lane}");
    }
    // The resource disk is left to the live root: skipped, and said so.
    let disk = named(&entries, "resource-disk", "step");
    assert_eq!(disk.len(), 3);
    assert_eq!(disk[2]["outcome"], "skipped");

    // The table and the SVG from the same timeline.
    let svg = r.path("timeline.svg");
    let out = Command::new(&agentd)
        .arg("--root")
        .arg(r.dir.path())
        .arg("--config")
        .arg(&conf)
        .arg("boot-report")
        .arg("--svg")
        .arg(&svg)
        .output()
        .expect("run wala-agentd");
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(" wait*  ok         report-ready\n"), "{table}");
    assert!(table.contains("Ready reported at "), "{table}");
    let svg = std::fs::read_to_string(svg).expect("the SVG was written");
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches(r#"<g class="wait">"#).count(), 3);

    // After a reboot /run is empty: the kept copy is reported instead.
    std::fs::remove_dir_all(r.path("run")).expect("rm run");
    let out = Command::new(&agentd)
        .arg("--root")
        .arg(r.dir.path())
        .arg("--config")
        .arg(&conf)
        .args(["boot-report", "--json"])
        .output()
        .expect("run wala-agentd");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(entries_of(&out.stdout), entries);
}
