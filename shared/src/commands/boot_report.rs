//! `wala-agentd boot-report`: the boot timeline ([`crate::base::timeline`]) as a table, as JSON, or as
//! an SVG chart; and several timelines side by side, for the VM benchmark.
//!
//! Everything is turned into [`Entry`] values, the one generic form that `--json` prints and
//! `--compare` reads back: `{"lane": str, "name": str, "start": secs, "end": secs, "kind":
//! "stage"|"step"|"wait"|"mark"}` (plus an optional `"outcome"`), times in seconds since the kernel
//! started (or any common zero, for points measured from outside the VM). A wala timeline gives
//! one lane per stage; systemd's own timestamps, when read, give a `boot` lane (kernel, initrd,
//! userspace) and one lane per unit, with an `sshd ready` mark.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::cmd::{Cmd, Runner};
use crate::base::root::HostRoot;
use crate::base::timeline::{self, Kind, Outcome, Record};
use crate::documents::xml::escape;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A whole stage (or unit): drawn as an outline around its steps.
    Stage,
    /// Work: a wala step, a systemd unit starting, the kernel.
    Step,
    /// Waiting on something outside wala (a device, udev, the WireServer).
    Wait,
    /// A point in time (`sshd ready`, `Ready seen by the host`).
    Mark,
}

impl EntryKind {
    fn as_str(self) -> &'static str {
        match self {
            EntryKind::Stage => "stage",
            EntryKind::Step => "step",
            EntryKind::Wait => "wait",
            EntryKind::Mark => "mark",
        }
    }
}

impl From<Kind> for EntryKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Stage => EntryKind::Stage,
            Kind::Step => EntryKind::Step,
            Kind::Wait => EntryKind::Wait,
        }
    }
}

/// One bar (or mark) of the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    /// The `NAME` of `--compare NAME=FILE`; none for a single timeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub lane: String,
    pub name: String,
    pub start: f64,
    pub end: f64,
    pub kind: EntryKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

impl Entry {
    fn new(lane: &str, name: &str, start: f64, end: f64, kind: EntryKind) -> Self {
        Self { source: None, lane: lane.into(), name: name.into(), start, end, kind, outcome: None }
    }

    fn took(&self) -> f64 {
        self.end - self.start
    }
}

/// The generic input form (what `--json` prints).
#[derive(Debug, serde::Deserialize)]
struct InputEntry {
    lane: String,
    name: String,
    start: f64,
    #[serde(default)]
    end: Option<f64>,
    kind: EntryKind,
    #[serde(default)]
    outcome: Option<Outcome>,
}

/// A report input that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("no boot timeline: neither {live} nor {saved} exists (wala-provision writes one at each boot)")]
    NoTimeline { live: PathBuf, saved: PathBuf },
}

/// The largest timeline or compare file read (a boot writes a few kilobytes).
const MAX_INPUT: u64 = 8 << 20;

/// Turn timeline records into entries: one lane per stage.
pub fn from_records(records: &[Record]) -> Vec<Entry> {
    records
        .iter()
        .map(|r| Entry {
            source: None,
            lane: r.stage.clone(),
            name: r.name.clone(),
            start: r.start,
            end: r.end.max(r.start),
            kind: r.kind.into(),
            outcome: Some(r.outcome),
        })
        .collect()
}

/// Entries, and the lines that could not be used (`line N: why`).
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    pub problems: Vec<String>,
}

/// A timeline file (JSON lines): every record that parses; the others are listed as problems.
pub fn parse_timeline(text: &str) -> Parsed {
    let mut records = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(r) if r.start.is_finite() && r.end.is_finite() => records.push(r),
            Ok(_) => problems.push(format!("line {}: a time is not a number", i + 1)),
            Err(e) => problems.push(format!("line {}: not a timeline record: {e}", i + 1)),
        }
    }
    Parsed { entries: from_records(&records), problems }
}

/// A `--compare` input: a JSON array of entries in the generic form, or a timeline file.
pub fn parse_input(text: &str) -> Result<Parsed, String> {
    if !text.trim_start().starts_with('[') {
        return Ok(parse_timeline(text));
    }
    let items: Vec<InputEntry> =
        serde_json::from_str(text).map_err(|e| format!("not a list of entries: {e}"))?;
    let mut entries = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = |why: &str| format!("entry {} ({:?}): {why}", i + 1, item.name);
        let end = match (item.end, item.kind) {
            (Some(end), _) => end,
            (None, EntryKind::Mark) => item.start,
            (None, _) => return Err(at("\"end\" is missing")),
        };
        if !item.start.is_finite() || !end.is_finite() {
            return Err(at("a time is not a number"));
        }
        if end < item.start {
            return Err(at("\"end\" is before \"start\""));
        }
        entries.push(Entry {
            source: None,
            lane: item.lane,
            name: item.name,
            start: item.start,
            end,
            kind: item.kind,
            outcome: item.outcome,
        });
    }
    Ok(Parsed { entries, problems: Vec::new() })
}

fn read_text(path: &Path) -> Result<String, ReportError> {
    let err = |source| ReportError::Read { path: path.to_path_buf(), source };
    let mut text = String::new();
    std::fs::File::open(path).map_err(err)?.take(MAX_INPUT + 1).read_to_string(&mut text).map_err(err)?;
    if text.len() as u64 > MAX_INPUT {
        return Err(ReportError::Invalid {
            path: path.to_path_buf(),
            reason: format!("larger than {} MiB", MAX_INPUT >> 20),
        });
    }
    Ok(text)
}

/// Parse `NAME=FILE` (a `--compare` argument).
pub fn parse_compare_arg(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => Ok((name.to_string(), file.into())),
        _ => Err(format!("{arg:?} is not NAME=FILE")),
    }
}

/// What to report on.
#[derive(Debug, Clone)]
pub enum Input {
    /// This boot's timeline (else the copy of the last provisioning boot), with systemd's
    /// timestamps on the live root.
    ThisBoot,
    /// A saved timeline file.
    File(PathBuf),
    /// Several inputs side by side (`NAME`, file).
    Compare(Vec<(String, PathBuf)>),
}

/// A report: its entries, where they came from, and what could not be used.
#[derive(Debug, Default)]
pub struct Report {
    pub entries: Vec<Entry>,
    /// One line per input read.
    pub sources: Vec<String>,
    pub problems: Vec<String>,
}

/// Gather the entries for `input`. `lib_dir` is `Lib.Dir` (for the kept copy).
pub fn build(
    root: &HostRoot,
    lib_dir: &Path,
    runner: &dyn Runner,
    input: &Input,
) -> Result<Report, ReportError> {
    let mut report = Report::default();
    let add = |report: &mut Report, path: &Path, parsed: Parsed, source: Option<&str>| {
        report.problems.extend(parsed.problems.into_iter().map(|p| format!("{}: {p}", path.display())));
        report.entries.extend(parsed.entries.into_iter().map(|mut e| {
            e.source = source.map(str::to_string);
            e
        }));
    };
    match input {
        Input::ThisBoot => {
            let live = timeline::path(root);
            let saved = timeline::saved_path(root, lib_dir);
            if live.exists() {
                add(&mut report, &live, parse_timeline(&read_text(&live)?), None);
                report.sources.push(format!("this boot: {}", live.display()));
                if root.is_live() {
                    report.entries.extend(systemd_entries(runner));
                }
            } else if saved.exists() {
                add(&mut report, &saved, parse_timeline(&read_text(&saved)?), None);
                report
                    .sources
                    .push(format!("the last provisioning boot (this boot has none): {}", saved.display()));
            } else {
                return Err(ReportError::NoTimeline { live, saved });
            }
        }
        Input::File(path) => {
            add(&mut report, path, parse_timeline(&read_text(path)?), None);
            report.sources.push(path.display().to_string());
        }
        Input::Compare(items) => {
            for (name, path) in items {
                let parsed = parse_input(&read_text(path)?)
                    .map_err(|reason| ReportError::Invalid { path: path.clone(), reason })?;
                add(&mut report, path, parsed, Some(name));
                report.sources.push(format!("{name}: {}", path.display()));
            }
        }
    }
    Ok(report)
}

// ---- systemd's timestamps --------------------------------------------------------------------

/// The units whose start is shown, when systemd is there.
pub const UNITS: &[&str] = &[
    "wala-provision-local.service",
    "wala-provision-imds.service",
    "wala-provision-disk.service",
    "wala-provision-keys.service",
    "wala-provision-network.service",
    "wala-agentd.service",
    "ssh.socket",
    "ssh.service",
    "sshd.service",
];

/// The units whose readiness means "sshd accepts connections" (socket activation included).
const SSHD_UNITS: &[&str] = &["ssh.socket", "ssh.service", "sshd.service"];

/// systemd's view of this boot, through `systemctl show` (monotonic timestamps: the same clock
/// as the timeline during a boot without suspend): a `boot` lane with kernel, initrd and userspace,
/// one lane per unit of [`UNITS`] that ran, and an `sshd ready` mark. Empty without systemctl.
pub fn systemd_entries(runner: &dyn Runner) -> Vec<Entry> {
    if !runner.exists("systemctl") {
        return Vec::new();
    }
    let show = |cmd: Cmd| match runner.run(&cmd.timeout(Duration::from_secs(10))) {
        Ok(out) => out.stdout_str(),
        Err(e) => {
            log::warn!("systemd's timestamps are not shown: {e}");
            String::new()
        }
    };
    let manager = show(Cmd::new("systemctl").args([
        "show",
        "-p",
        "InitRDTimestampMonotonic,UserspaceTimestampMonotonic,FinishTimestampMonotonic",
    ]));
    let units = show(
        Cmd::new("systemctl")
            .args(["show", "-p", "Id,InactiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic"])
            .args(UNITS),
    );
    let mut entries = boot_split(&parse_show(&manager));
    entries.extend(unit_entries(&parse_show(&units)));
    entries
}

/// `systemctl show` output: one map per unit (blocks separated by blank lines).
pub fn parse_show(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut blocks = Vec::new();
    let mut block = BTreeMap::new();
    for line in text.lines() {
        match line.split_once('=') {
            Some((k, v)) => {
                block.insert(k.trim().to_string(), v.trim().to_string());
            }
            None if line.trim().is_empty() && !block.is_empty() => blocks.push(std::mem::take(&mut block)),
            None => {}
        }
    }
    if !block.is_empty() {
        blocks.push(block);
    }
    blocks
}

/// A monotonic timestamp (µs) as seconds; none when unset (0).
fn secs(block: &BTreeMap<String, String>, key: &str) -> Option<f64> {
    block.get(key).and_then(|v| v.parse::<u64>().ok()).filter(|&us| us > 0).map(|us| us as f64 / 1e6)
}

/// Kernel, initrd and userspace, from the manager's timestamps.
pub fn boot_split(blocks: &[BTreeMap<String, String>]) -> Vec<Entry> {
    let Some(m) = blocks.iter().find(|b| b.contains_key("UserspaceTimestampMonotonic")) else {
        return Vec::new();
    };
    let Some(userspace) = secs(m, "UserspaceTimestampMonotonic") else { return Vec::new() };
    let initrd = secs(m, "InitRDTimestampMonotonic");
    let mut out = vec![Entry::new("boot", "kernel", 0.0, initrd.unwrap_or(userspace), EntryKind::Step)];
    if let Some(initrd) = initrd {
        out.push(Entry::new("boot", "initrd", initrd, userspace, EntryKind::Step));
    }
    if let Some(finish) = secs(m, "FinishTimestampMonotonic") {
        out.push(Entry::new("boot", "userspace", userspace, finish, EntryKind::Step));
    }
    out
}

/// One lane per unit that started (activating to active), and `sshd ready` at the first of the
/// ssh units to become active.
pub fn unit_entries(blocks: &[BTreeMap<String, String>]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut sshd: Option<(f64, String)> = None;
    for b in blocks {
        let Some(id) = b.get("Id") else { continue };
        let (Some(start), Some(active)) =
            (secs(b, "InactiveExitTimestampMonotonic"), secs(b, "ActiveEnterTimestampMonotonic"))
        else {
            continue;
        };
        // `sshd.service` is an alias of `ssh.service` on Debian: the same unit twice.
        if out.iter().any(|e| e.lane == *id) {
            continue;
        }
        out.push(Entry::new(id, id, start, active.max(start), EntryKind::Step));
        if SSHD_UNITS.contains(&id.as_str()) && sshd.as_ref().is_none_or(|(t, _)| active < *t) {
            sshd = Some((active, id.clone()));
        }
    }
    if let Some((t, id)) = sshd {
        out.push(Entry::new(&id, "sshd ready", t, t, EntryKind::Mark));
    }
    out
}

// ---- ordering --------------------------------------------------------------------------------

/// The order of sources, as they first appear.
fn source_order(entries: &[Entry]) -> Vec<Option<String>> {
    let mut order: Vec<Option<String>> = Vec::new();
    for e in entries {
        if !order.contains(&e.source) {
            order.push(e.source.clone());
        }
    }
    order
}

/// Entries by source, then start; at one start a stage before its steps before their waits, the
/// longer first (so that what encloses comes before what it encloses).
fn sorted(entries: &[Entry]) -> Vec<&Entry> {
    let order = source_order(entries);
    let rank = |e: &Entry| order.iter().position(|s| *s == e.source).unwrap_or(0);
    let mut out: Vec<&Entry> = entries.iter().collect();
    out.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then(a.start.total_cmp(&b.start))
            .then(a.kind.cmp(&b.kind))
            .then(b.end.total_cmp(&a.end))
    });
    out
}

/// Where an entry sits among the stages and steps of its lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Nesting {
    /// How many stages and steps enclose it.
    depth: usize,
    /// Whether the innermost of them is a step (a wait inside a step).
    in_step: bool,
}

/// The nesting of each entry of `sorted`.
fn nesting(sorted: &[&Entry]) -> Vec<Nesting> {
    type Open = Vec<(f64, f64, EntryKind)>;
    let mut open: BTreeMap<(Option<String>, String), Open> = BTreeMap::new();
    sorted
        .iter()
        .map(|e| {
            let stack = open.entry((e.source.clone(), e.lane.clone())).or_default();
            while stack.last().is_some_and(|&(s, end, _)| !(s <= e.start && e.end <= end)) {
                stack.pop();
            }
            let nest = Nesting {
                depth: stack.len(),
                in_step: stack.last().is_some_and(|&(_, _, k)| k == EntryKind::Step),
            };
            if matches!(e.kind, EntryKind::Stage | EntryKind::Step) {
                stack.push((e.start, e.end, e.kind));
            }
            nest
        })
        .collect()
}

/// The lanes in drawing order: by source, then by first start.
fn lanes(entries: &[Entry]) -> Vec<(Option<String>, String)> {
    let mut out: Vec<(Option<String>, String)> = Vec::new();
    for e in sorted(entries) {
        let key = (e.source.clone(), e.lane.clone());
        if !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

fn lane_label(source: Option<&str>, lane: &str) -> String {
    match source {
        Some(s) => format!("{s}: {lane}"),
        None => lane.to_string(),
    }
}

// ---- text ------------------------------------------------------------------------------------

/// The report as a table: start, end and duration in seconds since the kernel started, the lane
/// (stage or unit), the kind (`wait*` marks waits on something outside wala), the outcome, and the
/// name indented under what encloses it.
pub fn render_table(report: &Report) -> String {
    let entries = sorted(&report.entries);
    let depth = nesting(&entries).into_iter().map(|n| n.depth);
    let lane_w = entries
        .iter()
        .map(|e| lane_label(e.source.as_deref(), &e.lane).chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    for s in &report.sources {
        let _ = writeln!(out, "# {s}");
    }
    let _ = writeln!(out, "# times in seconds since the kernel started");
    let _ = writeln!(
        out,
        "{:>9} {:>9} {:>8}  {:<lane_w$}  {:<6} {:<7}  name",
        "start", "end", "took", "lane", "kind", "outcome"
    );
    for (e, d) in entries.iter().zip(depth) {
        let (end, took) = if e.kind == EntryKind::Mark {
            (String::new(), String::new())
        } else {
            (format!("{:.3}", e.end), format!("{:.3}", e.took()))
        };
        let kind = if e.kind == EntryKind::Wait { "wait*" } else { e.kind.as_str() };
        let outcome = e.outcome.map_or("", Outcome::as_str);
        let lane = lane_label(e.source.as_deref(), &e.lane);
        let _ = writeln!(
            out,
            "{:>9.3} {end:>9} {took:>8}  {lane:<lane_w$}  {kind:<6} {outcome:<7}  {}{}",
            e.start,
            "  ".repeat(d),
            e.name
        );
    }
    if report.entries.iter().any(|e| e.kind == EntryKind::Wait) {
        let _ = writeln!(out, "wait*: waiting on something outside wala (a device, udev, the WireServer)");
    }
    for summary in summaries(&report.entries) {
        let _ = writeln!(out, "{summary}");
    }
    out
}

/// One-line summaries: the kernel/initrd/userspace split, when sshd was ready, and when Ready
/// was reported (per source).
fn summaries(entries: &[Entry]) -> Vec<String> {
    let mut out = Vec::new();
    for source in source_order(entries) {
        let of_source: Vec<&Entry> = entries.iter().filter(|e| e.source == source).collect();
        let prefix = source.as_deref().map(|s| format!("{s}: ")).unwrap_or_default();
        let split: Vec<String> = ["kernel", "initrd", "userspace"]
            .iter()
            .filter_map(|n| of_source.iter().find(|e| e.lane == "boot" && e.name == *n))
            .map(|e| format!("{} {:.3} s", e.name, e.took()))
            .collect();
        if !split.is_empty() {
            out.push(format!("{prefix}boot: {}", split.join(", ")));
        }
        if let Some(e) = of_source.iter().find(|e| e.kind == EntryKind::Mark && e.name == "sshd ready") {
            out.push(format!("{prefix}sshd ready at {:.3} s ({})", e.start, e.lane));
        }
        if let Some(e) =
            of_source.iter().find(|e| e.name == "report-ready" && e.outcome.is_none_or(|o| o == Outcome::Ok))
        {
            out.push(format!("{prefix}Ready reported at {:.3} s", e.end));
        }
    }
    out
}

/// The entries as JSON: a list in the generic form, one entry per line (what `--compare` reads).
pub fn render_json(report: &Report) -> String {
    let lines: Vec<String> =
        sorted(&report.entries).iter().filter_map(|e| serde_json::to_string(e).ok()).collect();
    if lines.is_empty() {
        "[]\n".to_string()
    } else {
        format!("[\n{}\n]\n", lines.join(",\n"))
    }
}

// ---- SVG -------------------------------------------------------------------------------------

const LABEL_W: f64 = 240.0;
const PLOT_W: f64 = 900.0;
const ROW_H: f64 = 26.0;
const TOP: f64 = 48.0;
const RIGHT: f64 = 30.0;
const CHAR_W: f64 = 6.6;
/// A white outline behind text, so that labels read over bars and hatching.
const HALO: &str = r#"stroke="white" stroke-width="3" stroke-linejoin="round" paint-order="stroke""#;

/// A tick step giving at most about 12 ticks over `span` seconds.
fn tick_step(span: f64) -> f64 {
    [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|s| span / s <= 12.0)
        .unwrap_or(1200.0)
}

/// A self-contained SVG: one lane per stage (per source and stage with several sources), steps
/// as bars (failed in red, skipped in grey), waits hatched in orange, stages as outlines, marks as
/// green lines; an axis in seconds since the kernel started. Every bar has a `<title>` tooltip.
pub fn render_svg(report: &Report, title: &str) -> String {
    let lanes = lanes(&report.entries);
    let t0 = report.entries.iter().map(|e| e.start).fold(0.0_f64, f64::min);
    let t_max = report.entries.iter().map(|e| e.end).fold(t0 + 0.001, f64::max);
    let step = tick_step(t_max - t0);
    let axis_start = (t0 / step).floor() * step;
    let axis_end = ((t_max / step).ceil() * step).max(axis_start + step);
    let x = |t: f64| LABEL_W + (t - axis_start) / (axis_end - axis_start) * PLOT_W;
    let plot_bottom = TOP + ROW_H * lanes.len() as f64;
    let height = plot_bottom + 70.0;
    let width = LABEL_W + PLOT_W + RIGHT;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, "<title>{}</title>", escape(title));
    s.push_str(concat!(
        r#"<defs><pattern id="hatch" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">"#,
        r##"<rect width="6" height="6" fill="#fde3c4"/><line x1="0" y1="0" x2="0" y2="6" stroke="#e8871e" stroke-width="3"/>"##,
        "</pattern></defs>\n"
    ));
    let _ = writeln!(s, r#"<rect width="{width}" height="{height}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#, escape(title));
    // Lanes: alternate backgrounds and labels.
    for (i, (source, lane)) in lanes.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        if i % 2 == 0 {
            let _ = writeln!(s, r##"<rect x="0" y="{y}" width="{width}" height="{ROW_H}" fill="#f4f4f4"/>"##);
        }
        let _ = writeln!(
            s,
            r#"<text class="lane" x="{}" y="{}" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            y + ROW_H / 2.0 + 4.0,
            escape(&lane_label(source.as_deref(), lane))
        );
    }
    // Axis: grid lines and tick labels, in seconds since the kernel started.
    let ticks = ((axis_end - axis_start) / step).round() as usize;
    for k in 0..=ticks {
        let t = axis_start + step * k as f64;
        let xt = x(t);
        let _ = writeln!(
            s,
            r##"<line x1="{xt:.1}" y1="{}" x2="{xt:.1}" y2="{plot_bottom}" stroke="#d0d0d0"/><text class="tick" x="{xt:.1}" y="{}" text-anchor="middle">{}</text>"##,
            TOP - 4.0,
            TOP - 8.0,
            trim_number(t)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds since the kernel started</text>"#,
        LABEL_W + PLOT_W / 2.0,
        plot_bottom + 18.0
    );
    // Bars: stages first (outlines), then steps, then waits on top, then marks; labels last, with
    // a white halo, so that they read over any bar.
    let entries = sorted(&report.entries);
    let nest = nesting(&entries);
    let mut labels = String::new();
    for kind in [EntryKind::Stage, EntryKind::Step, EntryKind::Wait, EntryKind::Mark] {
        for (e, n) in entries.iter().zip(&nest).filter(|(e, _)| e.kind == kind) {
            let Some(row) = lanes.iter().position(|(src, l)| *src == e.source && *l == e.lane) else {
                continue;
            };
            let y = TOP + ROW_H * row as f64;
            let (x1, x2) = (x(e.start), x(e.end));
            let tip = tooltip(e);
            if kind == EntryKind::Mark {
                let _ = writeln!(
                    s,
                    r##"<g class="mark"><title>{tip}</title><line x1="{x1:.1}" y1="{}" x2="{x1:.1}" y2="{}" stroke="#2ca02c" stroke-width="2"/></g>"##,
                    y + 1.0,
                    y + ROW_H - 1.0
                );
                let _ = writeln!(
                    labels,
                    r##"<text x="{:.1}" y="{}" fill="#1a7a1a" {HALO}>{}</text>"##,
                    x1 + 3.0,
                    y + 10.0,
                    escape(&e.name)
                );
                continue;
            }
            // A wait inside a step is a strip along the bottom of the step's bar.
            let (top, bar_h) = match kind {
                EntryKind::Stage => (y + 2.0, ROW_H - 4.0),
                EntryKind::Wait if n.in_step => (y + ROW_H / 2.0 + 1.0, ROW_H / 2.0 - 6.0),
                _ => (y + 5.0, ROW_H - 10.0),
            };
            let (fill, stroke, dash) = match (kind, e.outcome) {
                (EntryKind::Stage, Some(Outcome::Failed)) => ("none", "#b03030", ""),
                (EntryKind::Stage, Some(Outcome::Skipped)) => {
                    ("none", "#8a8080", r#" stroke-dasharray="3 2""#)
                }
                (EntryKind::Stage, _) => ("none", "#555555", ""),
                (EntryKind::Wait, _) => ("url(#hatch)", "#e8871e", ""),
                (_, Some(Outcome::Failed)) => ("#e45756", "#b03030", ""),
                (_, Some(Outcome::Skipped)) => ("#bab0ac", "#8a8080", ""),
                _ => ("#4c78a8", "#2f5580", ""),
            };
            let w = (x2 - x1).max(1.0);
            let _ = writeln!(
                s,
                r#"<g class="{}"><title>{tip}</title><rect x="{x1:.1}" y="{top}" width="{w:.1}" height="{bar_h}" fill="{fill}" stroke="{stroke}"{dash}/></g>"#,
                kind.as_str()
            );
            let fits = w > e.name.chars().count() as f64 * CHAR_W + 6.0;
            if fits && kind != EntryKind::Stage && !(kind == EntryKind::Wait && n.in_step) {
                let _ = writeln!(
                    labels,
                    r##"<text x="{:.1}" y="{}" fill="#111111" {HALO}>{}</text>"##,
                    x1 + 3.0,
                    y + ROW_H / 2.0 - 1.0,
                    escape(&e.name)
                );
            }
        }
    }
    s.push_str(&labels);
    // Legend.
    let ly = plot_bottom + 40.0;
    let _ = writeln!(
        s,
        concat!(
            r##"<g class="legend"><rect x="{lx}" y="{ly}" width="18" height="12" fill="#4c78a8"/><text x="{a}" y="{t}">step</text>"##,
            r##"<rect x="{b}" y="{ly}" width="18" height="12" fill="url(#hatch)" stroke="#e8871e"/><text x="{c}" y="{t}">wait (outside wala)</text>"##,
            r##"<rect x="{d}" y="{ly}" width="18" height="12" fill="#e45756"/><text x="{e}" y="{t}">failed</text>"##,
            r##"<rect x="{f}" y="{ly}" width="18" height="12" fill="none" stroke="#555555"/><text x="{g}" y="{t}">stage</text>"##,
            r##"<line x1="{h}" y1="{ly}" x2="{h}" y2="{lb}" stroke="#2ca02c" stroke-width="2"/><text x="{i}" y="{t}">mark</text></g>"##
        ),
        lx = LABEL_W,
        a = LABEL_W + 24.0,
        b = LABEL_W + 70.0,
        c = LABEL_W + 94.0,
        d = LABEL_W + 230.0,
        e = LABEL_W + 254.0,
        f = LABEL_W + 310.0,
        g = LABEL_W + 334.0,
        h = LABEL_W + 390.0,
        i = LABEL_W + 396.0,
        ly = ly,
        lb = ly + 12.0,
        t = ly + 10.0,
    );
    s.push_str("</svg>\n");
    s
}

fn tooltip(e: &Entry) -> String {
    let outcome = e.outcome.map(|o| format!(", {}", o.as_str())).unwrap_or_default();
    let text = if e.kind == EntryKind::Mark {
        format!("{}: {} at {:.3} s", e.lane, e.name, e.start)
    } else {
        format!(
            "{}: {} ({}{outcome}): {:.3} to {:.3} s, {:.3} s",
            e.lane,
            e.name,
            e.kind.as_str(),
            e.start,
            e.end,
            e.took()
        )
    };
    escape(&text)
}

/// `2`, `2.5`, `0.05`: a tick label without trailing zeros.
fn trim_number(t: f64) -> String {
    let s = format!("{t:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::{CmdOutput, FakeRunner};
    use crate::documents::xml::{self, Element};

    fn rec(stage: &str, kind: Kind, name: &str, start: f64, end: f64, outcome: Outcome) -> String {
        let r = Record {
            stage: stage.into(),
            kind,
            name: name.into(),
            start,
            end,
            outcome,
            pid: 42,
            boot_id: None,
        };
        serde_json::to_string(&r).expect("json")
    }

    /// A timeline as the stages write it: records in the order their spans end.
    fn fixture() -> String {
        [
            rec("local", Kind::Wait, "dvd", 2.1, 2.4, Outcome::Ok),
            rec("local", Kind::Step, "ovf", 2.1, 2.41, Outcome::Ok),
            rec("local", Kind::Step, "user", 2.41, 2.6, Outcome::Ok),
            rec("local", Kind::Stage, "local", 2.0, 2.7, Outcome::Ok),
            rec("network", Kind::Wait, "wireserver-versions", 5.0, 5.5, Outcome::Ok),
            rec("network", Kind::Wait, "report-ready", 5.6, 5.9, Outcome::Ok),
            rec("network", Kind::Stage, "network", 4.9, 6.0, Outcome::Ok),
            rec("resource-disk", Kind::Step, "resource-disk", 3.0, 3.0, Outcome::Skipped),
        ]
        .join("\n")
            + "\n"
    }

    fn report_of(text: &str) -> Report {
        let parsed = parse_timeline(text);
        Report { entries: parsed.entries, sources: vec!["fixture".into()], problems: parsed.problems }
    }

    #[test]
    fn the_table_lists_every_record_in_time_order_nested_with_waits_marked() {
        let table = render_table(&report_of(&fixture()));
        let rows: Vec<&str> = table.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(rows[0], "    start       end     took  lane           kind   outcome  name", "{table}");
        assert_eq!(rows[1], "    2.000     2.700    0.700  local          stage  ok       local");
        assert_eq!(rows[2], "    2.100     2.410    0.310  local          step   ok         ovf");
        assert_eq!(rows[3], "    2.100     2.400    0.300  local          wait*  ok           dvd");
        assert_eq!(rows[4], "    2.410     2.600    0.190  local          step   ok         user");
        assert_eq!(rows[5], "    3.000     3.000    0.000  resource-disk  step   skipped  resource-disk");
        assert_eq!(rows[6], "    4.900     6.000    1.100  network        stage  ok       network");
        assert_eq!(
            rows[7],
            "    5.000     5.500    0.500  network        wait*  ok         wireserver-versions"
        );
        assert_eq!(rows[8], "    5.600     5.900    0.300  network        wait*  ok         report-ready");
        assert_eq!(rows[9], "wait*: waiting on something outside wala (a device, udev, the WireServer)");
        assert_eq!(rows[10], "Ready reported at 5.900 s");
        assert_eq!(rows.len(), 11);
        assert!(table.starts_with("# fixture\n# times in seconds since the kernel started\n"));
    }

    #[test]
    fn a_torn_or_foreign_line_is_a_problem_not_a_failure() {
        let text = fixture() + "{\"stage\":\"local\",\"ki\n" + "not json\n";
        let parsed = parse_timeline(&text);
        assert_eq!(parsed.entries.len(), 8);
        assert_eq!(parsed.problems.len(), 2);
        assert!(parsed.problems[0].starts_with("line 9: "), "{:?}", parsed.problems);
    }

    #[test]
    fn json_output_is_the_generic_form_and_reads_back_as_a_compare_input() {
        let report = report_of(&fixture());
        let json = render_json(&report);
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        let first = &value[0];
        assert_eq!(first["lane"], "local");
        assert_eq!(first["name"], "local");
        assert_eq!(first["kind"], "stage");
        assert_eq!(first["start"], 2.0);
        assert_eq!(first["end"], 2.7);
        assert_eq!(first["outcome"], "ok");
        let back = parse_input(&json).expect("parse");
        assert_eq!(back.entries.len(), report.entries.len());
        assert_eq!(render_json(&Report { entries: back.entries, ..Report::default() }), json);
    }

    #[test]
    fn the_generic_form_takes_marks_without_end_and_rejects_bad_entries() {
        let parsed = parse_input(
            r#"[{"lane":"outside","name":"sshd banner","start":7.5,"kind":"mark"},
                {"lane":"outside","name":"Ready","start":3,"end":9.25,"kind":"wait","extra":1}]"#,
        )
        .expect("parse");
        assert_eq!(parsed.entries[0].end, 7.5);
        assert_eq!(parsed.entries[1].kind, EntryKind::Wait);
        let err = parse_input(r#"[{"lane":"l","name":"n","start":3,"end":2,"kind":"step"}]"#).unwrap_err();
        assert_eq!(err, r#"entry 1 ("n"): "end" is before "start""#);
        let err = parse_input(r#"[{"lane":"l","name":"n","start":3,"kind":"step"}]"#).unwrap_err();
        assert_eq!(err, r#"entry 1 ("n"): "end" is missing"#);
        assert!(parse_input(r#"[{"lane":"l","name":"n","start":3,"kind":"bar"}]"#).is_err());
        assert_eq!(parse_compare_arg("wala=a.json").expect("ok"), ("wala".into(), PathBuf::from("a.json")));
        assert!(parse_compare_arg("a.json").is_err());
        assert!(parse_compare_arg("=a.json").is_err());
    }

    fn collect<'a>(e: &'a Element, out: &mut Vec<&'a Element>) {
        out.push(e);
        for c in &e.children {
            collect(c, out);
        }
    }

    #[test]
    fn the_svg_is_well_formed_with_lanes_bars_waits_and_escaped_names() {
        let mut text = fixture();
        text.push_str(&rec("local", Kind::Step, "a <&> \"b\"", 2.6, 2.65, Outcome::Failed));
        text.push('\n');
        let mut report = report_of(&text);
        report.entries.push(Entry::new("ssh.service", "sshd ready", 3.2, 3.2, EntryKind::Mark));
        let svg = render_svg(&report, "boot <&> timeline");
        let root = xml::parse_platform(&svg).unwrap_or_else(|e| panic!("not well-formed: {e}\n{svg}"));
        assert_eq!(root.name, "svg");
        let mut all = Vec::new();
        collect(&root, &mut all);
        let lanes: Vec<&str> =
            all.iter().filter(|e| e.attr("class") == Some("lane")).map(|e| e.text.as_str()).collect();
        assert_eq!(lanes, ["local", "resource-disk", "ssh.service", "network"]);
        let count = |class: &str| all.iter().filter(|e| e.attr("class") == Some(class)).count();
        assert_eq!(count("stage"), 2);
        assert_eq!(count("step"), 4);
        assert_eq!(count("wait"), 3);
        assert_eq!(count("mark"), 1);
        // Waits are hatched; the failed step is red; its name came through escaped and back.
        let bars = |class: &str| {
            all.iter()
                .filter(move |e| e.attr("class") == Some(class))
                .map(|g| g.child("rect").expect("a bar"))
                .collect::<Vec<_>>()
        };
        assert!(bars("wait").iter().all(|r| r.attr("fill") == Some("url(#hatch)")));
        let titles: Vec<String> = all
            .iter()
            .filter(|e| e.attr("class") == Some("step"))
            .map(|g| g.child("title").expect("tooltip").text.clone())
            .collect();
        assert!(
            titles.iter().any(|t| t.starts_with("local: a <&> \"b\" (step, failed): 2.600 to 2.650 s")),
            "{titles:?}"
        );
        assert!(bars("step").iter().any(|r| r.attr("fill") == Some("#e45756")));
        // A wait inside a step is a strip along the bottom of the step's bar; one on its own is a
        // full bar.
        let wait_y = |prefix: &str| {
            let g = all
                .iter()
                .find(|e| {
                    e.attr("class") == Some("wait")
                        && e.child("title").is_some_and(|t| t.text.starts_with(prefix))
                })
                .expect("the wait");
            g.child("rect").and_then(|r| r.attr("y")).and_then(|y| y.parse::<f64>().ok()).expect("y")
        };
        assert_eq!(wait_y("local: dvd"), TOP + ROW_H / 2.0 + 1.0);
        assert_eq!(wait_y("network: report-ready"), TOP + 3.0 * ROW_H + 5.0);
        assert!(svg.contains("a &lt;&amp;&gt; &quot;b&quot;"));
        assert!(!svg.contains("a <&>"));
        assert_eq!(root.child("title").expect("title").text, "boot <&> timeline");
        // Bars sit on the axis: the stage "local" from 2.0 s to 2.7 s, on an axis of 0..6 s.
        let stage = bars("stage")[0];
        let x: f64 = stage.attr("x").and_then(|v| v.parse().ok()).expect("x");
        let w: f64 = stage.attr("width").and_then(|v| v.parse().ok()).expect("width");
        assert!((x - (LABEL_W + 2.0 / 6.0 * PLOT_W)).abs() < 0.1, "{x}");
        assert!((w - 0.7 / 6.0 * PLOT_W).abs() < 0.2, "{w}");
        let ticks: Vec<&str> =
            all.iter().filter(|e| e.attr("class") == Some("tick")).map(|e| e.text.as_str()).collect();
        assert_eq!(ticks, ["0", "0.5", "1", "1.5", "2", "2.5", "3", "3.5", "4", "4.5", "5", "5.5", "6"]);
    }

    #[test]
    fn compared_timelines_get_lanes_of_their_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wala = dir.path().join("wala.jsonl");
        std::fs::write(&wala, fixture()).expect("write");
        let waagent = dir.path().join("waagent.json");
        std::fs::write(
            &waagent,
            r#"[{"lane":"outside","name":"sshd banner","start":9.5,"kind":"mark"},
                {"lane":"outside","name":"Ready","start":0,"end":14,"kind":"wait"}]"#,
        )
        .expect("write");
        let input = Input::Compare(vec![("wala".into(), wala), ("waagent".into(), waagent.clone())]);
        let report =
            build(&HostRoot::new(dir.path()), Path::new("/var/lib/waagent"), &FakeRunner::new(), &input)
                .expect("build");
        let svg = render_svg(&report, "compare");
        let root = xml::parse_platform(&svg).expect("well-formed");
        let mut all = Vec::new();
        collect(&root, &mut all);
        let lanes: Vec<&str> =
            all.iter().filter(|e| e.attr("class") == Some("lane")).map(|e| e.text.as_str()).collect();
        assert_eq!(lanes, ["wala: local", "wala: resource-disk", "wala: network", "waagent: outside"]);
        let table = render_table(&report);
        assert!(
            table
                .contains("    9.500                     waagent: outside     mark            sshd banner\n"),
            "{table}"
        );
        assert!(table.contains("wala: Ready reported at 5.900 s"), "{table}");
        // A broken compare file names itself.
        std::fs::write(&waagent, "[{").expect("write");
        let input = Input::Compare(vec![("waagent".into(), waagent.clone())]);
        let err =
            build(&HostRoot::new(dir.path()), Path::new("/var/lib/waagent"), &FakeRunner::new(), &input)
                .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!("{}: not a list of entries", waagent.display())),
            "{err}"
        );
    }

    #[test]
    fn this_boot_falls_back_to_the_kept_copy_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sys/class")).expect("mkdir");
        let root = HostRoot::new(dir.path());
        let lib = Path::new("/var/lib/waagent");
        let runner = FakeRunner::new();
        let err = build(&root, lib, &runner, &Input::ThisBoot).unwrap_err();
        assert!(matches!(err, ReportError::NoTimeline { .. }), "{err}");
        std::fs::create_dir_all(dir.path().join("var/lib/waagent")).expect("mkdir");
        std::fs::write(dir.path().join("var/lib/waagent").join(timeline::SAVED_FILE), fixture())
            .expect("write");
        let report = build(&root, lib, &runner, &Input::ThisBoot).expect("build");
        assert_eq!(report.entries.len(), 8);
        assert!(report.sources[0].starts_with("the last provisioning boot"), "{:?}", report.sources);
        std::fs::create_dir_all(dir.path().join("run/wala")).expect("mkdir");
        std::fs::write(
            dir.path().join("run/wala/boot-timeline.jsonl"),
            rec("local", Kind::Stage, "local", 1.0, 2.0, Outcome::Skipped),
        )
        .expect("write");
        let report = build(&root, lib, &runner, &Input::ThisBoot).expect("build");
        assert_eq!(report.entries.len(), 1);
        assert!(runner.command_lines().is_empty(), "no systemctl for a root that is not the live one");
    }

    const MANAGER: &str = "InitRDTimestampMonotonic=1520000\nUserspaceTimestampMonotonic=4010000\nFinishTimestampMonotonic=9870500\n";
    const UNITS_SHOW: &str = "Id=wala-provision-local.service\nInactiveExitTimestampMonotonic=4500000\nActiveEnterTimestampMonotonic=4900000\n\n\
        Id=wala-provision-disk.service\nInactiveExitTimestampMonotonic=0\nActiveEnterTimestampMonotonic=0\n\n\
        Id=ssh.socket\nInactiveExitTimestampMonotonic=0\nActiveEnterTimestampMonotonic=0\n\n\
        Id=ssh.service\nInactiveExitTimestampMonotonic=5100000\nActiveEnterTimestampMonotonic=5230000\n\n\
        Id=ssh.service\nInactiveExitTimestampMonotonic=5100000\nActiveEnterTimestampMonotonic=5230000\n";

    #[test]
    fn systemd_gives_the_boot_split_the_units_and_sshd_ready() {
        let split = boot_split(&parse_show(MANAGER));
        let names: Vec<(&str, f64, f64)> = split.iter().map(|e| (e.name.as_str(), e.start, e.end)).collect();
        assert_eq!(names, [("kernel", 0.0, 1.52), ("initrd", 1.52, 4.01), ("userspace", 4.01, 9.8705)]);
        let units = unit_entries(&parse_show(UNITS_SHOW));
        let got: Vec<(&str, &str, EntryKind, f64)> =
            units.iter().map(|e| (e.lane.as_str(), e.name.as_str(), e.kind, e.start)).collect();
        assert_eq!(
            got,
            [
                ("wala-provision-local.service", "wala-provision-local.service", EntryKind::Step, 4.5),
                ("ssh.service", "ssh.service", EntryKind::Step, 5.1),
                ("ssh.service", "sshd ready", EntryKind::Mark, 5.23),
            ]
        );
        // No initramfs: the kernel runs until userspace.
        let split =
            boot_split(&parse_show("UserspaceTimestampMonotonic=2000000\nInitRDTimestampMonotonic=0\n"));
        assert_eq!(split.len(), 1);
        assert_eq!((split[0].name.as_str(), split[0].end), ("kernel", 2.0));
        let table = render_table(&Report {
            entries: [boot_split(&parse_show(MANAGER)), units].concat(),
            ..Report::default()
        });
        assert!(table.contains("boot: kernel 1.520 s, initrd 2.490 s, userspace 5.861 s"), "{table}");
        assert!(table.contains("sshd ready at 5.230 s (ssh.service)"), "{table}");
    }

    #[test]
    fn systemd_is_asked_through_the_runner_and_skipped_without_systemctl() {
        let runner = FakeRunner::new();
        runner.respond("systemctl", CmdOutput { code: Some(0), stdout: MANAGER.into(), stderr: Vec::new() });
        let entries = systemd_entries(&runner);
        assert_eq!(entries.iter().filter(|e| e.lane == "boot").count(), 3);
        let lines = runner.command_lines();
        assert_eq!(
            lines[0],
            "systemctl show -p InitRDTimestampMonotonic,UserspaceTimestampMonotonic,FinishTimestampMonotonic"
        );
        assert!(lines[1].starts_with("systemctl show -p Id,InactiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic wala-provision-local.service "), "{lines:?}");
        let runner = FakeRunner::new();
        runner.without("systemctl");
        assert!(systemd_entries(&runner).is_empty());
        assert!(runner.command_lines().is_empty());
    }
}
