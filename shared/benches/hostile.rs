//! Benchmark: wala against hostile input (docs/security.md).
//!
//! 1. Parser time for adversarial documents of about 1 MB (each under its size limit): the median
//!    of 5 parses, after one warm-up. Target: under 50 ms each (the quadratic parsers took 6.9 s
//!    and 11.5 s on the first two, and never finished on the third).
//! 2. Peak memory while unpacking hostile extension packages: each is written to disk and unpacked
//!    from there (as the daemon does) in a child process, which reports the growth of its peak RSS
//!    (`VmHWM`) across the unpack. Target: under 2 MiB over the process's own
//!    footprint, so that the daemon stays under its idle figure (about 9 MiB) plus 2 MiB. (The old
//!    reader held every entry in memory: a 1 MB package took the daemon to 2.1 GB.)
//!
//! Usage: `cargo bench -p wala --bench hostile`. Prints one tab-separated line per case; asserts
//! nothing (timings depend on the machine).

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use wala::base::ziparchive::{hostile, ZipWriter};
use wala::extensions::download::{unpack_file, UnpackLimits};

/// `env` variable that makes this binary the child that unpacks one package.
const CHILD: &str = "WALA_BENCH_UNPACK";

/// A platform-style ovf-env.xml.
const OVF: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
  <wa:ProvisioningSection><wa:Version>1.0</wa:Version>
    <LinuxProvisioningConfigurationSet xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
      <ConfigurationSetType>LinuxProvisioningConfiguration</ConfigurationSetType>
      <HostName>vm1</HostName><UserName>azureuser</UserName>
      <DisableSshPasswordAuthentication>true</DisableSshPasswordAuthentication>
    </LinuxProvisioningConfigurationSet>
  </wa:ProvisioningSection>
  <wa:PlatformSettingsSection><wa:Version>1.0</wa:Version>
    <PlatformSettings xmlns="http://schemas.microsoft.com/windowsazure"><ProvisionGuestAgent>true</ProvisionGuestAgent></PlatformSettings>
  </wa:PlatformSettingsSection>
</Environment>
"#;

/// A small ExtensionsConfig.
const EXT_CONF: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Extensions version="1.0.0.0" goalStateIncarnation="1"><Plugins><Plugin name="A.B" version="1.0" location="http://l" state="enabled"/></Plugins><PluginSettings><Plugin name="A.B" version="1.0"><RuntimeSettings seqNo="0">{"runtimeSettings":[{"handlerSettings":{"publicSettings":{}}}]}</RuntimeSettings></Plugin></PluginSettings></Extensions>
"#;

/// `doc` with `extra` added inside the start tag of its first element named `root`.
fn with_root_attributes(doc: &str, root: &str, extra: &str) -> String {
    let open = format!("<{root}");
    let at = doc.find(&open).expect("root element") + open.len();
    format!("{}{extra}{}", &doc[..at], &doc[at..])
}

type Parser = fn(&str) -> Result<(), String>;

fn ovf(text: &str) -> Result<(), String> {
    black_box(wala::documents::ovf::parse(text)).map(drop).map_err(|e| e.to_string())
}

fn extensions_config(text: &str) -> Result<(), String> {
    black_box(wala::documents::extensions::parse_extensions_config(text, Some(1)))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn goal_state(text: &str) -> Result<(), String> {
    black_box(wala::documents::wire::parse_goal_state(text)).map(drop).map_err(|e| e.to_string())
}

fn vm_settings(text: &str) -> Result<(), String> {
    black_box(wala::documents::extensions::parse_vm_settings(text, "1")).map(drop).map_err(|e| e.to_string())
}

fn documents() -> Vec<(&'static str, Parser, String)> {
    let (ovf_doc, ext_conf) = (OVF, EXT_CONF);
    let plugins: String = (0..6_000)
        .map(|i| format!("<Plugin name=\"H{i}\" version=\"1.0\" state=\"enabled\" location=\"http://l\"/>"))
        .collect();
    let settings: String = (0..6_000)
        .map(|i| format!("<Plugin name=\"h{i}\" version=\"1.0\"><RuntimeSettings seqNo=\"{i}\">{{}}</RuntimeSettings></Plugin>"))
        .collect();
    let dependencies: String =
        (0..6_000).map(|i| format!("{{\"name\":\"e{i}\",\"dependencyLevel\":1}},")).collect::<String>();
    let extension_settings: String =
        (0..6_000).map(|i| format!("{{\"extensionName\":\"e{i}\",\"seqNo\":{i}}},")).collect();
    let vm = format!(
        "{{\"hostGAPluginVersion\":\"1.0.8.133\",\"extensionGoalStates\":[{{\"name\":\"A.B\",\"version\":\"1.0\",\
         \"state\":\"enabled\",\"isMultiConfig\":true,\"settings\":[{}],\"dependsOn\":[{}]}}]}}",
        extension_settings.trim_end_matches(','),
        dependencies.trim_end_matches(',')
    );
    vec![
        (
            "ovf: 50,000 xmlns declarations",
            ovf as Parser,
            with_root_attributes(
                ovf_doc,
                "Environment",
                &(0..50_000).map(|i| format!(" xmlns:p{i}=\"u\"")).collect::<String>(),
            ),
        ),
        (
            "ovf: 100,000 attributes",
            ovf,
            with_root_attributes(
                ovf_doc,
                "Environment",
                &(0..100_000).map(|i| format!(" a{i}=\"\"")).collect::<String>(),
            ),
        ),
        (
            "ovf: 200,000 references",
            ovf,
            ovf_doc.replacen("</UserName>", &format!("</UserName><CustomData>{}</CustomData>", "&amp;".repeat(200_000)), 1),
        ),
        ("ovf: 250,000 empty elements", ovf, ovf_doc.replacen("</UserName>", &format!("</UserName>{}", "<x/>".repeat(250_000)), 1)),
        (
            "ExtensionsConfig: 100,000 attributes",
            extensions_config,
            with_root_attributes(
                ext_conf,
                "Extensions",
                &(0..100_000).map(|i| format!(" a{i}=\"\"")).collect::<String>(),
            ),
        ),
        (
            "ExtensionsConfig: 6,000 handlers and settings",
            extensions_config,
            format!("<Extensions><Plugins>{plugins}</Plugins><PluginSettings>{settings}</PluginSettings></Extensions>"),
        ),
        (
            "GoalState: 250,000 empty elements",
            goal_state,
            format!("<GoalState>{}</GoalState>", "<x/>".repeat(250_000)),
        ),
        ("vmSettings: 6,000 settings and dependsOn", vm_settings, vm),
    ]
}

fn time_parsers() {
    println!("case\tbytes\toutcome\tmedian ms");
    for (name, parse, text) in documents() {
        let outcome = match parse(&text) {
            Ok(()) => "parsed".to_string(),
            Err(e) => format!("rejected: {}", e.chars().take(60).collect::<String>()),
        };
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                let _ = parse(&text);
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("parse {name}\t{}\t{outcome}\t{:.1}", text.len(), times[2]);
    }
    // A 32 MiB ovf-env.xml, as the DVD reader meets it: refused at the size check.
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("ovf-env.xml");
    std::fs::write(&big, "<x/>".repeat(8 << 20)).expect("write");
    let start = Instant::now();
    let outcome = match wala::base::limits::read_file(&big, wala::base::limits::Document::Ovf) {
        Ok(bytes) => format!("read {} bytes", bytes.len()),
        Err(e) => format!("rejected: {e}"),
    };
    println!("read ovf: 32 MiB file\t{}\t{outcome}\t{:.1}", 32 << 20, start.elapsed().as_secs_f64() * 1000.0);
}

/// The peak RSS of this process image, in KiB: `VmHWM` from /proc/self/status. (`getrusage`'s
/// `ru_maxrss` would do in a forked child, but Linux carries it across `execve`, so a child started
/// from this benchmark would report the parent's peak.)
fn max_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(-1)
}

/// The child: unpack the zip named by `CHILD` into a fresh directory, print the peak RSS before
/// and after, and the outcome.
fn child(zip: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = max_rss_kib();
    let result = unpack_file(Path::new(zip), &dir.path().join("Pub.Ext-1.0"), UnpackLimits::default());
    let after = max_rss_kib();
    let outcome = match result {
        Ok(()) => "unpacked".to_string(),
        Err(e) => format!("refused: {}", e.to_string().chars().take(70).collect::<String>()),
    };
    println!("{before}\t{after}\t{outcome}");
}

fn unpack_packages() {
    let limits = UnpackLimits::default();
    let mut normal = ZipWriter::new(0);
    for i in 0..200 {
        let body: String = (0..400).map(|j| format!("line {j} of file {i}\n")).collect();
        normal.add(&format!("bin/file{i}.sh"), body.as_bytes(), 0o755).expect("add");
    }
    let packages: Vec<(String, Vec<u8>)> = vec![
        ("an ordinary package, 200 files".into(), normal.finish().expect("zip")),
        (
            format!("ratio bomb: {} MiB of zeros", limits.max_size / (1 << 20) + 1),
            hostile::ratio_bomb(limits.max_size / (1 << 20) + 1),
        ),
        ("ratio bomb: 256 MiB of zeros, within the limit".into(), hostile::ratio_bomb(256)),
        ("overlap bomb: 1,000 entries x 1 MiB".into(), hostile::overlap_bomb(1000, 1)),
        ("overlap bomb: 60,000 entries x 1 MiB".into(), hostile::overlap_bomb(60_000, 1)),
        (format!("{} empty files", limits.max_entries + 1), hostile::many_entries(limits.max_entries + 1)),
        (format!("{} empty files", limits.max_entries), hostile::many_entries(limits.max_entries)),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    println!("case\tpackage bytes\tpeak RSS before KiB\tafter KiB\tgrowth KiB\toutcome");
    for (name, bytes) in packages {
        let zip = dir.path().join("package.zip");
        std::fs::write(&zip, &bytes).expect("write");
        let out = std::process::Command::new(&exe).env(CHILD, &zip).output().expect("run the child");
        let line = String::from_utf8_lossy(&out.stdout);
        let mut f = line.trim().splitn(3, '\t');
        let before: i64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(-1);
        let after: i64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(-1);
        let outcome = f.next().unwrap_or("child failed");
        println!("unpack {name}\t{}\t{before}\t{after}\t{}\t{outcome}", bytes.len(), after - before);
    }
}

fn main() {
    if let Some(zip) = std::env::var_os(CHILD) {
        child(&zip.to_string_lossy());
        return;
    }
    // `cargo bench` passes `--bench`; nothing else is taken.
    time_parsers();
    unpack_packages();
}
