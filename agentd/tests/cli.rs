//! The real `wala-agentd` binary, run directly and through a `waagent` symlink.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_wala-agentd");

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/fixtures")
}

/// A `waagent` symlink to the binary in a temp dir.
fn waagent(dir: &Path) -> PathBuf {
    let link = dir.join("waagent");
    std::os::unix::fs::symlink(BIN, &link).expect("symlink");
    link
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program).args(args).output().expect("run")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn waagent_version_and_help() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = waagent(dir.path());
    let out = run(&w, &["-version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).starts_with(&format!("wala-{} running on ", env!("CARGO_PKG_VERSION"))),
        "{}",
        stdout(&out)
    );
    let out = run(&w, &["-help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("usage: waagent [-verbose] [-force] [-help] -configuration-path:"));
    // No arguments: help, as waagent does.
    assert!(stdout(&run(&w, &[])).starts_with("usage: waagent"));
}

#[test]
fn waagent_show_configuration_reads_the_given_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = waagent(dir.path());
    let conf = fixtures().join("conf/waagent.conf");
    let arg = format!("-configuration-path:{}", conf.display());
    let out = run(&w, &[arg.as_str(), "-show-configuration"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("ResourceDisk.Filesystem = ext4\n"));
    assert!(text.contains("ResourceDisk.Format = True\n"));
    assert!(text.contains("ResourceDisk.MountOptions = None\n"));
    assert!(text.contains("OS.RootDeviceScsiTimeout = 300\n"));
    // The same output through the modern command.
    let modern = run(Path::new(BIN), &["show-configuration", "--config", conf.to_str().expect("utf8")]);
    assert_eq!(stdout(&modern), text);
}

#[test]
fn waagent_missing_configuration_path_fails_like_waagent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = waagent(dir.path());
    let out = run(&w, &["-configuration-path:/nonexistent/waagent.conf", "-show-configuration"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Error: Configuration file /nonexistent/waagent.conf does not exist"));
}

#[test]
fn commands_not_built_yet_say_so_and_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = waagent(dir.path());
    let out = run(&w, &["-start"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("not built yet; nothing was done"), "{}", stderr(&out));
}

#[test]
fn setup_firewall_rejects_a_destination_that_is_not_an_address() {
    // (The rules themselves are tested inside network namespaces, never on this host's tables.)
    let out = run(Path::new(BIN), &["setup-firewall", "--destination", "wireserver"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not an IPv4 address"), "{}", stderr(&out));
}

#[test]
fn check_config_lists_every_problem_and_exits_3() {
    let bad = fixtures().join("conf/bad.conf");
    let out = run(Path::new(BIN), &["check-config", "--config", bad.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(3));
    let text = stdout(&out);
    let b = bad.display();
    assert!(
        text.contains(&format!("{b}:2: ResourceDisk.Format: invalid value \"yes\" (expected y or n)")),
        "{text}"
    );
    assert!(text.contains(&format!("{b}:3: ResourceDisk.SwapSizeMB: invalid value \"lots\"")), "{text}");
    assert!(text.contains(&format!("{b}:5: Provisioning.Agnet: unknown key")), "{text}");
    assert!(text.contains("4 problem(s)"));

    let good = fixtures().join("conf/waagent.conf");
    let out = run(Path::new(BIN), &["check-config", "--config", good.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn check_config_on_a_root_without_a_file_reports_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(Path::new(BIN), &["check-config", "--root", dir.path().to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("etc/waagent.conf does not exist; using the defaults"), "{}", stdout(&out));
}
