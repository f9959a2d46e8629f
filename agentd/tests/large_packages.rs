//! Large extension packages end to end: the real daemon against the fabric simulator, which
//! streams the packages from disk. A package larger than the old 32 MiB cap installs; one over
//! `Wala.ExtensionPackageMaxDownloadMB` is refused with an error naming the handler and the limit;
//! a body cut short is dropped and the next URI used; and no failed try leaves a file behind.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;
use wala_fabric::{Fabric, FabricConfig, Fault, FaultAction, Listener, Scenario};

const MIB: u64 = 1 << 20;

/// A fabric serving one handler `name` 1.0.0 whose package (the handler script plus `payload`
/// bytes of random data) is listed in its manifest under each of `uris` (URL paths).
fn start_big(name: &str, payload: u64, uris: &[&str], log: &Path) -> (Fabric, tempfile::TempDir) {
    let dir = scenario_dir();
    let zip = dir.path().join("package.zip");
    write_big_package(&Package::new("1.0.0"), log, payload, &zip);
    let mut files = serde_json::Map::new();
    let mut listed = String::new();
    for uri in uris {
        files.insert(uri.to_string(), "package.zip".into());
        listed.push_str(&format!("<Uri>{{{{wire}}}}{uri}</Uri>"));
    }
    std::fs::write(
        dir.path().join("manifest.xml"),
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><PluginVersionManifest><Plugins><Plugin><Version>1.0.0</Version><Uris>{listed}</Uris></Plugin></Plugins><InternalPlugins/></PluginVersionManifest>"#
        ),
    )
    .expect("manifest");
    files.insert(format!("/artifacts/{name}/manifest.xml"), "manifest.xml".into());
    let config =
        extensions_config(&[plugin(name, "1.0.0", "enabled")], &[settings(name, "1.0.0", 1, "big")], "");
    finish_scenario(&dir, files, &config);
    let fabric =
        Fabric::start(FabricConfig::new(Scenario::from_dir(dir.path()).expect("scenario"))).expect("fabric");
    (fabric, dir)
}

/// The files in `<Lib.Dir>` whose name mentions `name` (handler directory, zip, partial download).
fn left_in_lib(root: &Path, name: &str) -> Vec<String> {
    let lib = root.join("var/lib/waagent");
    let mut found: Vec<String> = std::fs::read_dir(lib)
        .expect("lib dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(name))
        .collect();
    found.sort();
    found
}

fn ready(doc: &serde_json::Value, name: &str) -> bool {
    handlers(doc).iter().any(|h| {
        h["handlerName"] == name
            && h["status"] == "Ready"
            && h["runtimeSettingsStatus"]["settingsStatus"]["status"]["formattedMessage"]["message"]
                == "1.0.0 big"
    })
}

fn not_ready(doc: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    handlers(doc).into_iter().find(|h| h["handlerName"] == name && h["status"] == "NotReady")
}

/// The zip downloads the fabric saw: (listener, URL path of the package).
fn zip_requests(fabric: &Fabric) -> Vec<(Listener, String)> {
    fabric
        .requests()
        .into_iter()
        .filter_map(|r| {
            let location = r.header("x-ms-artifact-location").map(str::to_string);
            let target = location.unwrap_or_else(|| r.target.clone());
            target.ends_with(".zip").then(|| {
                let path = target.split_once("://").map_or(target.as_str(), |(_, rest)| rest);
                let path = path.find('/').map_or("/", |i| &path[i..]).to_string();
                (r.listener, path)
            })
        })
        .collect()
}

#[test]
fn a_package_larger_than_the_old_32_mib_cap_installs_end_to_end() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.Big";
    let payload = 40 * MIB;
    let (fabric, _scenario) = start_big(name, payload, &["/packages/Wala.Test.Big__1.0.0.zip"], &log);
    let root = root_for(&fabric, "");
    let daemon = spawn(root.path());
    wait_for("the big package installed and enabled", Duration::from_secs(120), || {
        fabric
            .status_blob()
            .and_then(|b| serde_json::from_slice(&b.data).ok())
            .is_some_and(|d| ready(&d, name))
    });
    stop(daemon);
    assert_eq!(ops(&log), ["install Wala.Test.Big-1.0.0 v=1.0.0", "enable Wala.Test.Big-1.0.0 v=1.0.0"]);
    let base = root.path().join("var/lib/waagent/Wala.Test.Big-1.0.0");
    let unpacked = std::fs::metadata(base.join("payload/0.bin")).expect("the payload").len();
    assert_eq!(unpacked, payload, "the whole payload is unpacked");
    assert_eq!(left_in_lib(root.path(), name), ["Wala.Test.Big-1.0.0"], "no zip, no partial download");
    assert_eq!(
        zip_requests(&fabric),
        [(Listener::Wireserver, "/packages/Wala.Test.Big__1.0.0.zip".to_string())],
        "one download, direct"
    );
}

/// Run the daemon on `root` until the status blob reports handler `name` NotReady, then stop it;
/// that handler's status, checked to carry waagent's download-failure code (1001).
fn download_refused(fabric: &Fabric, root: &Path, name: &str) -> serde_json::Value {
    let daemon = spawn(root);
    wait_for("the download failure reported", Duration::from_secs(60), || {
        fabric
            .status_blob()
            .and_then(|b| serde_json::from_slice(&b.data).ok())
            .is_some_and(|d| not_ready(&d, name).is_some())
    });
    stop(daemon);
    let doc = status_doc(fabric);
    let h = not_ready(&doc, name).expect("NotReady");
    assert_eq!(h["code"], 1001, "{h}");
    h
}

#[test]
fn a_package_over_the_configured_ceiling_is_refused_naming_the_handler_and_the_limit() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.TooBig";
    let (fabric, _scenario) = start_big(name, 3 * MIB, &["/packages/Wala.Test.TooBig__1.0.0.zip"], &log);
    let root = root_for(&fabric, "Wala.ExtensionPackageMaxDownloadMB=1\n");
    let h = download_refused(&fabric, root.path(), name);
    let message = h["formattedMessage"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "Failed to download artifacts: package Wala.Test.TooBig-1.0.0 is larger than the limit of 1048576 bytes (Wala.ExtensionPackageMaxDownloadMB)"
        ),
        "{message}"
    );
    assert!(ops(&log).is_empty(), "nothing ran: {:?}", ops(&log));
    assert!(left_in_lib(root.path(), name).is_empty(), "left behind: {:?}", left_in_lib(root.path(), name));
    // The announced length was enough to refuse it; the HostGAPlugin would bring the same bytes.
    let tries = zip_requests(&fabric);
    assert!(!tries.is_empty() && tries.iter().all(|(l, _)| *l == Listener::Wireserver), "{tries:?}");
}

#[test]
fn a_body_cut_short_is_dropped_and_the_next_uri_is_used() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.Cut";
    let uris = ["/packages/a/Wala.Test.Cut__1.0.0.zip", "/packages/b/Wala.Test.Cut__1.0.0.zip"];
    let payload = 3 * MIB;
    let (fabric, _scenario) = start_big(name, payload, &uris, &log);
    // The first package request is cut after 1 MiB of its announced length; the HostGAPlugin
    // then fails that URI too; the other URI is whole.
    let mut cut =
        Fault::new(Listener::Wireserver, "/packages/", FaultAction::Truncate { keep: Some(MIB as usize) });
    cut.times = Some(1);
    fabric.add_fault(cut);
    let mut refused = Fault::new(
        Listener::Hostgaplugin,
        "/extensionArtifact",
        FaultAction::Status { status: 503, body: None },
    );
    refused.times = Some(1);
    fabric.add_fault(refused);
    let root = root_for(&fabric, "");
    let daemon = spawn(root.path());
    wait_for("the package installed from the other URI", Duration::from_secs(60), || {
        fabric
            .status_blob()
            .and_then(|b| serde_json::from_slice(&b.data).ok())
            .is_some_and(|d| ready(&d, name))
    });
    stop(daemon);
    let tries = zip_requests(&fabric);
    assert_eq!(tries.len(), 3, "{tries:?}");
    let first = &tries[0].1;
    let second = uris.iter().find(|u| *u != first).expect("the other URI").to_string();
    assert_eq!(
        tries,
        [
            (Listener::Wireserver, first.clone()),
            (Listener::Hostgaplugin, first.clone()),
            (Listener::Wireserver, second)
        ]
    );
    let unpacked = std::fs::metadata(root.path().join("var/lib/waagent/Wala.Test.Cut-1.0.0/payload/0.bin"));
    assert_eq!(unpacked.expect("payload").len(), payload);
    assert_eq!(left_in_lib(root.path(), name), ["Wala.Test.Cut-1.0.0"]);
}

#[test]
fn a_download_that_fails_everywhere_leaves_no_file_behind() {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("ops.log");
    let name = "Wala.Test.Broken";
    let (fabric, _scenario) = start_big(name, 3 * MIB, &["/packages/Wala.Test.Broken__1.0.0.zip"], &log);
    // Every direct try is cut short, every HostGAPlugin try cut short too.
    fabric.add_fault(Fault::new(Listener::Wireserver, "/packages/", FaultAction::Truncate { keep: None }));
    fabric.add_fault(Fault::new(
        Listener::Hostgaplugin,
        "/extensionArtifact",
        FaultAction::Truncate { keep: None },
    ));
    let root = root_for(&fabric, "");
    let h = download_refused(&fabric, root.path(), name);
    let message = h["formattedMessage"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("via direct") && message.contains("via HostGAPlugin"), "{message}");
    assert!(message.contains("announced byte(s)") || message.contains("reading the body"), "{message}");
    assert!(ops(&log).is_empty(), "nothing ran");
    assert!(left_in_lib(root.path(), name).is_empty(), "left behind: {:?}", left_in_lib(root.path(), name));
}
