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
fn conf_problems_exit_3_and_not_built_kinds_exit_4() {
    let (code, out, _) = inspect("conf", &fixture("conf/bad.conf"));
    assert_eq!(code, Some(3));
    let v = json(&out);
    assert!(!v["problems"].as_array().unwrap().is_empty());
    assert!(v["effective"]["ResourceDisk.Format"].is_string());
    let (code, _, _) = inspect("conf", &fixture("conf/waagent.conf"));
    assert_eq!(code, Some(0));
    let (code, _, err) = inspect("vm-settings", &fixture("conf/waagent.conf"));
    assert_eq!(code, Some(4));
    assert!(err.contains("not built yet"), "{err}");
    let (code, _, _) = inspect("certificates", &fixture("certificates/no-data.xml"));
    assert_eq!(code, Some(0));
    let (code, _, _) = inspect("nonsense", &fixture("conf/waagent.conf"));
    assert_eq!(code, Some(2));
}
