//! The real daemon applies the fabric's RemoteAccess document on a temporary root with the real
//! `useradd`/`userdel --prefix` (as root; skipped with a SKIP line otherwise): a JIT account is
//! created with its password and sudo, removed when the goal state no longer names the document,
//! and neither the password nor its hash reaches a log.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use wala_fabric::{Fabric, JitUser};

const BIN: &str = env!("CARGO_BIN_EXE_wala-agentd");

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn skip(message: &str) {
    eprintln!("SKIP {message}");
    if let Some(path) = std::env::var_os("WALA_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "SKIP {message}");
        }
    }
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_default()
}

fn run_polls(dir: &Path, polls: u64) -> std::process::Output {
    Command::new(BIN)
        .args(["daemon", "--goal-state-period-ms", "20", "--max-wakeups", &polls.to_string(), "--root"])
        .arg(dir)
        .output()
        .expect("run")
}

const PASSWORD: &str = "Jit-SECRET-Pa55w.rd";

#[test]
fn the_daemon_creates_and_removes_a_jit_account_without_logging_its_password() {
    if !is_root() {
        skip("the_daemon_creates_and_removes_a_jit_account_without_logging_its_password: needs root (useradd/userdel --prefix)");
        return;
    }
    let fabric = Fabric::start_builtin().expect("fabric");
    fabric.set_remote_access(Some(vec![JitUser::expiring_in("jituser", PASSWORD, 7200)]));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    write(d, "etc/group", "root:x:0:\n");
    write(d, "etc/shadow", "root:*:19000:0:99999:7:::\n");
    write(d, "etc/gshadow", "root:*::\n");
    write(
        d,
        "etc/login.defs",
        "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\nUSERGROUPS_ENAB yes\n",
    );
    write(d, "etc/hostname", "wala-vm\n");
    write(d, "sys/class/dmi/id/product_uuid", "7E5C3F2A-1B4D-4E6F-8A9B-0C1D2E3F4A5B");
    std::fs::create_dir_all(d.join("home")).expect("mkdir");
    std::fs::create_dir_all(d.join("var/log")).expect("mkdir");
    write(
        d,
        "etc/waagent.conf",
        &format!(
            "Wala.WireServer={}\nWala.HostGAPlugin={}\nWala.Imds={}\n",
            fabric.wire_addr(),
            fabric.hgap_addr(),
            fabric.imds_addr()
        ),
    );

    let out = run_polls(d, 10);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let passwd = read(d, "etc/passwd");
    let line =
        passwd.lines().find(|l| l.starts_with("jituser:")).unwrap_or_else(|| panic!("created: {passwd}"));
    assert!(line.contains(":JIT_Account:"), "{line}");
    let shadow = read(d, "etc/shadow");
    let hash = shadow
        .lines()
        .find(|l| l.starts_with("jituser:"))
        .and_then(|l| l.split(':').nth(1))
        .expect("shadow entry")
        .to_string();
    assert!(pwhash::unix::verify(PASSWORD, &hash));
    assert_eq!(read(d, "etc/sudoers.d/waagent"), "jituser ALL=(ALL) ALL\n");
    let log = read(d, "var/log/waagent.log");
    assert!(log.contains("Adding remote access user jituser with expiration date "), "{log}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for text in [&log, &stderr] {
        assert!(!text.contains(PASSWORD) && !text.contains(&hash), "a secret in the log:\n{text}");
        // The salt's `$6$` is in every hash; no hash at all is logged.
        assert!(!text.contains("$6$"), "{text}");
    }

    // The goal state no longer names a document: the next daemon run removes the account.
    fabric.set_remote_access(None);
    fabric.bump_incarnation();
    let out = run_polls(d, 10);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!read(d, "etc/passwd").contains("jituser"), "removed");
    assert!(!d.join("home/jituser").exists());
    assert!(!d.join("etc/sudoers.d/waagent").exists(), "its sudoers line (the only one) is gone");
    let log = read(d, "var/log/waagent.log");
    assert!(
        log.contains("Removing remote access user jituser: the goal state has no RemoteAccess document"),
        "{log}"
    );
}
