//! systemd's readiness protocol (`sd_notify`): datagrams to `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;

/// Send `state` (e.g. `READY=1`) to the service manager; a no-op outside systemd.
pub fn notify(state: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        notify_to(&path.to_string_lossy(), state);
    }
}

/// Send `state` to the socket at `path` (`@name` for an abstract socket).
pub fn notify_to(path: &str, state: &str) {
    let Ok(sock) = UnixDatagram::unbound() else { return };
    let sent = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), path)
    };
    if let Err(e) = sent {
        log::debug!("sd_notify {state:?} to {path}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_reaches_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        notify_to(&path.to_string_lossy(), "READY=1");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }
}
