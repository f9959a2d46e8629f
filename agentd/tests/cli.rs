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
fn register_service_enables_the_units_and_waagents_names_become_aliases() {
    // `waagent -register-service` on the live root; here the same command with --root, run by the
    // real systemctl (offline, on the temp root only).
    if wala::base::cmd::find_program("systemctl").is_none() {
        panic!("this test needs systemctl (the systemd package)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let units = dir.path().join("lib/systemd/system");
    std::fs::create_dir_all(&units).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("etc/systemd/system")).expect("mkdir");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../systemd");
    for e in std::fs::read_dir(&repo).expect("systemd/").flatten() {
        if e.path().extension().is_some_and(|x| x == "service" || x == "slice") {
            std::fs::copy(e.path(), units.join(e.file_name())).expect("copy");
        }
    }
    let out = run(Path::new(BIN), &["--root", dir.path().to_str().expect("utf8"), "register-service"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let etc = dir.path().join("etc/systemd/system");
    for (link, target) in [
        ("multi-user.target.wants/wala-agentd.service", "wala-agentd.service"),
        ("multi-user.target.wants/wala-provision-local.service", "wala-provision-local.service"),
        ("network.target.wants/wala-network-setup.service", "wala-network-setup.service"),
        ("walinuxagent.service", "wala-agentd.service"),
        ("waagent.service", "wala-agentd.service"),
    ] {
        let got = std::fs::read_link(etc.join(link)).unwrap_or_else(|e| panic!("{link}: {e}"));
        assert_eq!(got.file_name().and_then(|n| n.to_str()), Some(target), "{link}");
    }
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
