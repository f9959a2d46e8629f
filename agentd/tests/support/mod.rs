//! Helpers for the extension lifecycle tests: handler packages whose script logs every operation
//! (with waagent's variables) to one file outside the handler directories, a scenario directory
//! serving several versions of each handler, ExtensionsConfig documents built from parts, and the
//! daemon run against the fabric.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wala_fabric::{Fabric, FabricConfig, Scenario};

pub const BIN: &str = env!("CARGO_BIN_EXE_wala-agentd");

/// The `createdOnTicks` of every ExtensionsConfig built here.
pub const CONFIG_TICKS: u64 = 638_000_000_000_000_000;

/// One package of a handler.
pub struct Package {
    pub version: &'static str,
    /// Extra `handlerManifest` members, e.g. `"continueOnUpdateFailure":true`.
    pub manifest_extra: String,
    /// Operations that exit 3.
    pub fails: Vec<&'static str>,
    /// Shell run at the end of enable (in the handler directory).
    pub on_enable: String,
    /// The script's first command writes the time (ns since the epoch) to
    /// `started.<op>.<seq>` in the handler directory (benchmarks).
    pub mark_start: bool,
}

impl Package {
    pub fn new(version: &'static str) -> Self {
        Self {
            version,
            manifest_extra: String::new(),
            fails: Vec::new(),
            on_enable: String::new(),
            mark_start: false,
        }
    }
    pub fn manifest(mut self, extra: &str) -> Self {
        self.manifest_extra = format!(",{extra}");
        self
    }
    pub fn failing(mut self, op: &'static str) -> Self {
        self.fails.push(op);
        self
    }
    pub fn on_enable(mut self, sh: &str) -> Self {
        self.on_enable = sh.to_string();
        self
    }
    pub fn mark_start(mut self) -> Self {
        self.mark_start = true;
        self
    }

    /// The handler script: logs `<op> <directory name> v=<package version> ext=.. seq=.. VERSION=..
    /// from=.. disable=.. multi=.. uninstall=..` to `log`, fails the listed operations, and on enable writes a
    /// `success` status whose message is "<version> <publicSettings.message>".
    fn script(&self, log: &Path) -> String {
        format!(
            r#"#!/bin/sh
op="$1"
{mark}
echo "$op $(basename "$PWD") v={v} ext=$ConfigExtensionName seq=$ConfigSequenceNumber VERSION=$VERSION from=$AZURE_GUEST_AGENT_UPDATING_FROM_VERSION disable=$AZURE_GUEST_AGENT_DISABLE_CMD_EXIT_CODE multi=$AZURE_GUEST_AGENT_DISABLE_CMD_EXIT_CODES_MULTIPLE_EXTENSIONS uninstall=$AZURE_GUEST_AGENT_UNINSTALL_CMD_EXIT_CODE" >> "{log}"
case " {fails} " in *" $op "*) echo "failing $op on purpose" >&2; exit 3 ;; esac
if [ "$op" = enable ]; then
  prefix=""
  [ -n "$ConfigExtensionName" ] && prefix="$ConfigExtensionName."
  msg=$(sed -n 's/.*"message": *"\([^"]*\)".*/\1/p' "config/$prefix$ConfigSequenceNumber.settings")
  printf '[{{"version":"1.0","timestampUTC":"2024-01-01T00:00:00Z","status":{{"name":"t","operation":"Enable","status":"success","code":0,"formattedMessage":{{"lang":"en-US","message":"{v} %s"}}}}}}]' "$msg" > "status/$prefix$ConfigSequenceNumber.status"
{on_enable}
fi
exit 0
"#,
            v = self.version,
            log = log.display(),
            fails = self.fails.join(" "),
            on_enable = self.on_enable,
            mark = if self.mark_start { r#"date +%s%N > "started.$op.$ConfigSequenceNumber""# } else { "" },
        )
    }

    fn manifest_json(&self) -> String {
        format!(
            r#"[{{"version":1.0,"handlerManifest":{{"installCommand":"bin/handler.sh install","uninstallCommand":"bin/handler.sh uninstall","updateCommand":"bin/handler.sh update","enableCommand":"bin/handler.sh enable","disableCommand":"bin/handler.sh disable"{}}}}}]"#,
            self.manifest_extra
        )
    }

    fn zip(&self, log: &Path) -> Vec<u8> {
        let manifest = self.manifest_json();
        let mut z = wala::base::ziparchive::ZipWriter::new(1_700_000_000);
        z.add("HandlerManifest.json", manifest.as_bytes(), 0o644).expect("add");
        z.add("bin/handler.sh", self.script(log).as_bytes(), 0o755).expect("add");
        z.finish().expect("zip")
    }
}

/// Write `package` (its manifest and script) plus `payload` bytes of incompressible pseudo-random
/// data (files `payload/<n>.bin` of up to 64 MiB, stored) as a zip at `path`, streaming: memory
/// stays at one buffer whatever the size. Each file's CRC is patched into its local header once
/// its data is written. Returns the size of the zip.
pub fn write_big_package(package: &Package, log: &Path, payload: u64, path: &Path) -> u64 {
    use std::io::{Seek, SeekFrom, Write};
    const PIECE: u64 = 64 << 20;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create the package"));
    let mut central = Vec::new();
    let mut count = 0u16;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut buf = vec![0u8; 1 << 20];
    let small = [
        ("HandlerManifest.json".to_string(), package.manifest_json()),
        ("bin/handler.sh".to_string(), package.script(log)),
    ];
    let mut entries: Vec<(String, Option<Vec<u8>>, u64)> = small
        .into_iter()
        .map(|(n, d)| {
            let len = d.len() as u64;
            (n, Some(d.into_bytes()), len)
        })
        .collect();
    let mut left = payload;
    let mut i = 0;
    while left > 0 {
        let n = left.min(PIECE);
        entries.push((format!("payload/{i}.bin"), None, n));
        left -= n;
        i += 1;
    }
    for (name, data, len) in entries {
        let offset = file.stream_position().expect("position");
        let header = |crc: u32| {
            let mut h = Vec::new();
            h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            for v in [20u16, 1 << 11, 0, 0, 0x21] {
                h.extend_from_slice(&v.to_le_bytes());
            }
            for v in [crc, len as u32, len as u32] {
                h.extend_from_slice(&v.to_le_bytes());
            }
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            h.extend_from_slice(name.as_bytes());
            h
        };
        file.write_all(&header(0)).expect("write");
        let mut crc = flate2::Crc::new();
        match data {
            Some(d) => {
                crc.update(&d);
                file.write_all(&d).expect("write");
            }
            None => {
                let mut left = len;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    for chunk in buf[..n].chunks_mut(8) {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        chunk.copy_from_slice(&rng.to_le_bytes()[..chunk.len()]);
                    }
                    crc.update(&buf[..n]);
                    file.write_all(&buf[..n]).expect("write");
                    left -= n as u64;
                }
            }
        }
        let end = file.stream_position().expect("position");
        file.seek(SeekFrom::Start(offset)).expect("seek");
        file.write_all(&header(crc.sum())).expect("write");
        file.seek(SeekFrom::Start(end)).expect("seek");
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        for v in [(3u16 << 8) | 20, 20, 1 << 11, 0, 0, 0x21] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc.sum(), len as u32, len as u32] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [name.len() as u16, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&((0o100644u32) << 16).to_le_bytes());
        central.extend_from_slice(&(offset as u32).to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        count += 1;
    }
    let cd_at = file.stream_position().expect("position");
    file.write_all(&central).expect("write");
    let mut end = Vec::new();
    end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, count, count] {
        end.extend_from_slice(&v.to_le_bytes());
    }
    end.extend_from_slice(&(central.len() as u32).to_le_bytes());
    end.extend_from_slice(&(cd_at as u32).to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes());
    file.write_all(&end).expect("write");
    file.flush().expect("flush");
    file.stream_position().expect("position")
}

/// A handler and the packages its manifest lists.
pub struct Handler {
    pub name: &'static str,
    pub packages: Vec<Package>,
}

/// A scenario directory holding the fabric's own base documents.
pub fn scenario_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fabric/scenario");
    for f in ["GoalState.xml", "HostingEnvironmentConfig.xml", "SharedConfig.xml", "versions.xml"] {
        std::fs::copy(base.join(f), dir.path().join(f)).expect("copy");
    }
    dir
}

/// Write `config` as the ExtensionsConfig and the scenario serving `files` (URL path -> file name
/// in `dir`).
pub fn finish_scenario(
    dir: &tempfile::TempDir,
    files: serde_json::Map<String, serde_json::Value>,
    config: &str,
) {
    std::fs::write(dir.path().join("ExtensionsConfig.xml"), config).expect("config");
    let scenario = serde_json::json!({
        "incarnation": 1,
        "goal_state": "GoalState.xml",
        "hosting_environment_config": "HostingEnvironmentConfig.xml",
        "shared_config": "SharedConfig.xml",
        "extensions_config": "ExtensionsConfig.xml",
        "versions": "versions.xml",
        "certificates": 1,
        "status_blob_path": "/statusblob/vm.status",
        "files": files,
    });
    std::fs::write(dir.path().join("scenario.json"), scenario.to_string()).expect("scenario");
}

/// A scenario directory serving every package of `handlers` and `config` as ExtensionsConfig.
pub fn scenario(handlers: &[Handler], log: &Path, config: &str) -> tempfile::TempDir {
    let dir = scenario_dir();
    let mut files = serde_json::Map::new();
    for h in handlers {
        let name = h.name;
        let mut plugins = String::new();
        for p in &h.packages {
            let v = p.version;
            let zip = format!("{name}__{v}.zip");
            std::fs::write(dir.path().join(&zip), p.zip(log)).expect("zip");
            files.insert(format!("/artifacts/{name}/{zip}"), zip.clone().into());
            plugins.push_str(&format!(
                "<Plugin><Version>{v}</Version><Uris><Uri>{{{{wire}}}}/artifacts/{name}/{zip}</Uri></Uris></Plugin>"
            ));
        }
        std::fs::write(
            dir.path().join(format!("{name}.manifest.xml")),
            format!(
                r#"<?xml version="1.0" encoding="utf-8"?><PluginVersionManifest><Plugins>{plugins}</Plugins><InternalPlugins/></PluginVersionManifest>"#
            ),
        )
        .expect("manifest");
        files.insert(format!("/artifacts/{name}/manifest.xml"), format!("{name}.manifest.xml").into());
    }
    finish_scenario(&dir, files, config);
    dir
}

/// `<Plugin>` of `Plugins`.
pub fn plugin(name: &str, version: &str, state: &str) -> String {
    format!(
        r#"<Plugin name="{name}" version="{version}" location="{{{{wire}}}}/artifacts/{name}/manifest.xml" state="{state}" autoUpgrade="false" isJson="true" useExactVersion="true" />"#
    )
}

/// `<Plugin>` of `PluginSettings` with single-config `RuntimeSettings` carrying `message`.
pub fn settings(name: &str, version: &str, seq: u64, message: &str) -> String {
    format!(
        r#"<Plugin name="{name}" version="{version}"><RuntimeSettings seqNo="{seq}">{{"runtimeSettings":[{{"handlerSettings":{{"publicSettings":{{"message":"{message}"}}}}}}]}}</RuntimeSettings></Plugin>"#
    )
}

/// An ExtensionsConfig document: `plugins` and `settings` are concatenated `<Plugin>` elements,
/// `extra` goes before `StatusUploadBlob` (e.g. `RequiredFeatures`).
pub fn extensions_config(plugins: &[String], settings: &[String], extra: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Extensions version="1.0.0.0" goalStateIncarnation="{{{{incarnation}}}}">
  {extra}
  <StatusUploadBlob statusBlobType="BlockBlob">{{{{wire}}}}/statusblob/vm.status?sv=2018-03-28&amp;sr=b&amp;sp=w&amp;sig=x</StatusUploadBlob>
  <Plugins>{}</Plugins>
  <PluginSettings>{}</PluginSettings>
  <InVMGoalStateMetaData inSvdSeqNo="{{{{incarnation}}}}" createdOnTicks="{CONFIG_TICKS}" activityId="7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d" correlationId="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d" />
</Extensions>"#,
        plugins.concat(),
        settings.concat()
    )
}

/// A fabric serving `handlers` and `config`; also returns the scenario directory (keep it alive).
pub fn start(handlers: &[Handler], log: &Path, config: &str) -> (Fabric, tempfile::TempDir) {
    let dir = scenario(handlers, log, config);
    let fabric =
        Fabric::start(FabricConfig::new(Scenario::from_dir(dir.path()).expect("scenario"))).expect("fabric");
    (fabric, dir)
}

/// A root whose configuration points every platform endpoint at the fabric.
pub fn root_for(fabric: &Fabric, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["etc", "var/log", "var/lib/waagent", "sys/class/dmi/id"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
    }
    std::fs::write(dir.path().join("etc/hostname"), "wala-vm\n").expect("hostname");
    let conf = format!(
        "Wala.WireServer={}\nWala.HostGAPlugin={}\nWala.Imds={}\n{extra}",
        fabric.wire_addr(),
        fabric.hgap_addr(),
        fabric.imds_addr()
    );
    std::fs::write(dir.path().join("etc/waagent.conf"), conf).expect("conf");
    dir
}

/// Run the daemon for `polls` goal-state periods of 20 ms.
pub fn run_polls(dir: &Path, polls: u64) -> std::process::Output {
    let out = Command::new(BIN)
        .args(["daemon", "--goal-state-period-ms", "20", "--max-wakeups", &polls.to_string(), "--root"])
        .arg(dir)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A running daemon; killed when dropped (a failing test does not leave it behind).
pub struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Daemon {
    /// The daemon's process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }
}

impl From<Child> for Daemon {
    fn from(child: Child) -> Self {
        Self(Some(child))
    }
}

/// The daemon, running until [`stop`] (goal-state period 20 ms).
pub fn spawn(dir: &Path) -> Daemon {
    let child = Command::new(BIN)
        .args(["daemon", "--goal-state-period-ms", "20", "--root"])
        .arg(dir)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    Daemon(Some(child))
}

/// SIGTERM the daemon and check it exited cleanly.
pub fn stop(mut daemon: Daemon) {
    let Some(mut child) = daemon.0.take() else { return };
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success());
}

pub fn status_doc(fabric: &Fabric) -> serde_json::Value {
    serde_json::from_slice(&fabric.status_blob().expect("status blob").data).expect("status JSON")
}

pub fn handlers(doc: &serde_json::Value) -> Vec<serde_json::Value> {
    doc["aggregateStatus"]["handlerAggregateStatus"].as_array().cloned().unwrap_or_default()
}

pub fn handler(doc: &serde_json::Value, name: &str) -> serde_json::Value {
    handlers(doc)
        .into_iter()
        .find(|h| h["handlerName"] == name)
        .unwrap_or_else(|| panic!("no status for {name}: {doc}"))
}

/// Wait until the status blob satisfies `ok`.
pub fn wait_status(fabric: &Fabric, what: &str, mut ok: impl FnMut(&serde_json::Value) -> bool) {
    wait_for(what, Duration::from_secs(8), || {
        fabric
            .status_blob()
            .is_some_and(|b| serde_json::from_slice::<serde_json::Value>(&b.data).is_ok_and(|d| ok(&d)))
    });
}

pub fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The operations logged so far, without the variables: `["install Name-1.0.0 v=1.0.0", ...]`
/// (the directory the command ran in, and the version of the script that ran).
pub fn ops(log: &Path) -> Vec<String> {
    log_lines(log).iter().map(|l| l.split(" ext=").next().unwrap_or("").to_string()).collect()
}

pub fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect()
}
