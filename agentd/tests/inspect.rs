//! `wala-agentd inspect KIND FILE` over project-own fixtures: the JSON it prints, its exit codes,
//! and that secrets never reach the output.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_wala-agentd");

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/fixtures").join(rel)
}

fn inspect(kind: &str, file: &std::path::Path) -> (Option<i32>, String, String) {
    let out: Output = Command::new(BIN).args(["inspect", kind]).arg(file).output().expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).expect("stdout is JSON")
}

#[test]
fn ovf_secrets_are_redacted() {
    let (code, out, err) = inspect("ovf", &fixture("ovf/with-keys.xml"));
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("Zebra-Lamp-42!"), "{out}");
    assert!(!out.contains("I2Nsb3VkLWNvbmZpZw"), "{out}");
    assert!(out.contains("<redacted>"));
    json(&out);
}

#[test]
fn rejected_documents_exit_5() {
    let (code, out, err) = inspect("ovf", &fixture("ovf/malformed-unclosed.xml"));
    assert_eq!(code, Some(5));
    assert!(out.is_empty());
    assert!(err.contains("rejected"), "{err}");
    assert!(!err.contains("UserPassword>"), "{err}");
    let (code, _, _) = inspect("goal-state", &fixture("goalstate/unclosed.xml"));
    assert_eq!(code, Some(5));
}

#[test]
fn goal_state_and_lease() {
    let (code, out, err) = inspect("goal-state", &fixture("goalstate/bom-remote-access.xml"));
    assert_eq!(code, Some(0), "{err}");
    assert!(json(&out)["incarnation"].is_u64());
    let (code, out, err) = inspect("dhcp-lease", &fixture("dhcp-lease-networkd/colon-hex"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(json(&out)["format"], "networkd");
    let (code, out, _) = inspect("dhcp-lease", &fixture("dhcp-packet/ack-own.bin"));
    assert_eq!(code, Some(0));
    assert_eq!(json(&out)["format"], "dhcp-packet");
}

#[test]
fn conf_problems_exit_3() {
    let (code, out, _) = inspect("conf", &fixture("conf/bad.conf"));
    assert_eq!(code, Some(3));
    let v = json(&out);
    assert!(!v["problems"].as_array().unwrap().is_empty());
    assert!(v["effective"]["ResourceDisk.Format"].is_string());
    let (code, _, _) = inspect("conf", &fixture("conf/waagent.conf"));
    assert_eq!(code, Some(0));
    let (code, _, err) = inspect("vm-settings", &fixture("conf/waagent.conf"));
    assert_eq!(code, Some(5), "not JSON: rejected");
    assert!(err.contains("vmSettings: not valid JSON"), "{err}");
    let (code, _, _) = inspect("certificates", &fixture("certificates/no-data.xml"));
    assert_eq!(code, Some(0));
    let (code, _, _) = inspect("nonsense", &fixture("conf/waagent.conf"));
    assert_eq!(code, Some(2));
}

#[test]
fn extension_documents() {
    let (code, out, err) = inspect("extensions-config", &fixture("ext/extensions_config.xml"));
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("ALLSOSECRET"), "{out}");
    assert!(out.contains("<redacted>"));
    let v = json(&out);
    assert_eq!(v["id"], "incarnation_7");
    assert_eq!(v["extensions"][0]["settings"][0]["sequence_number"], 4);
    assert!(v["extensions"][2]["failure"]
        .as_str()
        .unwrap()
        .starts_with("Extension PluginSettings Version Mismatch!"));

    let (code, out, err) = inspect("vm-settings", &fixture("ext/vm_settings.json"));
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("ALLSOSECRET"), "{out}");
    assert_eq!(json(&out)["source"], "FastTrack");

    let (code, out, err) = inspect("handler-manifest", &fixture("ext/handler_manifest.json"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(json(&out)["enable_command"], "bin/script enable");

    let (code, out, err) = inspect("ext-status", &fixture("ext/status.json"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(json(&out)["status"], "success");

    let (code, out, err) = inspect("ext-status", &fixture("ext/manifest.xml"));
    assert_eq!(code, Some(5));
    assert!(out.is_empty());
    assert!(err.contains("First 2000 Bytes of status file"), "{err}");
    let (code, _, _) = inspect("handler-manifest", &fixture("ext/status.json"));
    assert_eq!(code, Some(5), "a status file is not a handler manifest");
}
