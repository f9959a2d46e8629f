//! The real daemon: tells systemd it is ready, and stops cleanly and quickly on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wala-agentd");

#[test]
fn ready_then_sigterm_stops_within_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["etc", "var/log"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
    }
    std::fs::write(dir.path().join("etc/waagent.conf"), "OS.RootDeviceScsiTimeout=300\n").expect("conf");
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut child = Command::new(BIN)
        .args(["daemon", "--root"])
        .arg(dir.path())
        .env("NOTIFY_SOCKET", &sock_path)
        .spawn()
        .expect("spawn");
    let mut buf = [0u8; 128];
    let n = sock.recv(&mut buf).expect("READY");
    assert_eq!(&buf[..n], b"READY=1");

    let sent = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).expect("STOPPING");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(sent.elapsed() < Duration::from_secs(1), "still running a second after SIGTERM");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(dir.path().join("var/log/waagent.log")).unwrap_or_default();
    assert!(log.contains(" INFO Daemon wala-agentd "), "{log}");
}

#[test]
fn turned_off_in_the_configuration_it_exits_6_after_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
    std::fs::write(dir.path().join("etc/waagent.conf"), "Wala.Enabled=n\n").expect("conf");
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let out = Command::new(BIN)
        .args(["daemon", "--root"])
        .arg(dir.path())
        .env("NOTIFY_SOCKET", &sock_path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(6));
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("READY");
    assert_eq!(&buf[..n], b"READY=1");
}
