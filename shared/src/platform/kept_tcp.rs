//! The TCP transport of the platform client's kept connections ([`super::http`]), plugged into
//! ureq through its transport interface (ureq itself is not changed).
//!
//! ureq's own TCP transport is made for connections of any kind, and on a kept connection it
//! spends system calls that an idle period of the daemon paid for every time (docs/daemon.md):
//! - it checks that a connection is open when the connection goes back to the pool and again when
//!   it is taken out, each time by switching the socket to non-blocking mode, reading, and
//!   switching back (three calls);
//! - it bounds each read and write by setting the socket's timeout, which it sets again whenever
//!   the time left differs from the last, that is before every request (two calls).
//!
//! Here the check is one non-blocking peek (`recv` with `MSG_PEEK | MSG_DONTWAIT`), and the time
//! left bounds a `poll` before each read (an answer is rarely there the moment a request is sent)
//! and each write that would block: 5 system calls per request on a kept connection, where ureq's
//! took 11. What is checked and when is ureq's: a connection is used again only if nothing is
//! waiting on it (neither an end nor stray bytes), and no read or write waits past the time left.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Weak};
use std::time::Instant;

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, LazyBuffers, NextTimeout, ShutdownHandle, Transport,
};

/// One platform connection.
#[derive(Debug)]
pub struct KeptTcp {
    /// Shared (weakly) with the agent, which can shut it down ([`ShutdownHandle`]).
    stream: Arc<TcpStream>,
    buffers: LazyBuffers,
}

impl KeptTcp {
    /// Connect to the first of `details.addrs` that answers within the time given.
    pub fn connect(details: &ConnectionDetails<'_>) -> Result<Self, ureq::Error> {
        let deadline = deadline(details.timeout)?;
        let mut last = None;
        for addr in details.addrs.iter() {
            let connected = match deadline {
                None => TcpStream::connect(addr),
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => TcpStream::connect_timeout(addr, left),
                    _ => return Err(ureq::Error::Timeout(details.timeout.reason)),
                },
            };
            match connected {
                Ok(stream) => {
                    if details.config.no_delay() {
                        stream.set_nodelay(true)?;
                    }
                    let stream = Arc::new(stream);
                    let handle: Weak<dyn ShutdownHandle> =
                        Arc::downgrade(&stream) as Weak<dyn ShutdownHandle>;
                    (details.register_shutdown)(handle)?;
                    let buffers = LazyBuffers::new(
                        details.config.input_buffer_size(),
                        details.config.output_buffer_size(),
                    );
                    return Ok(Self { stream, buffers });
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(ureq::Error::Timeout(details.timeout.reason))
                }
                // Refused, unreachable: the next address may answer.
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to"))
            .into())
    }

    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

impl Transport for KeptTcp {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        let deadline = deadline(timeout)?;
        let fd = self.fd();
        let output = &self.buffers.output()[..amount];
        let mut sent = 0;
        while sent < output.len() {
            let rest = &output[sent..];
            // SAFETY: sending from a buffer we own, of the length given.
            let n = unsafe {
                libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            if n >= 0 {
                sent += n as usize;
                continue;
            }
            match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::WouldBlock => wait(fd, libc::POLLOUT, deadline, timeout)?,
                e if e.kind() == io::ErrorKind::Interrupted => {}
                e => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        let deadline = deadline(timeout)?;
        let fd = self.fd();
        loop {
            wait(fd, libc::POLLIN, deadline, timeout)?;
            let buf = self.buffers.input_append_buf();
            // SAFETY: receiving into a buffer we own, of the length given.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n >= 0 {
                self.buffers.input_appended(n as usize);
                return Ok(n > 0);
            }
            match io::Error::last_os_error() {
                // Readable, and then not: wait again for what is left of the time.
                e if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                e => return Err(e.into()),
            }
        }
    }

    /// Open and idle: nothing to read, not even the end of the stream. Bytes that nobody asked
    /// for (after an answer's end) make the connection unusable too, as in ureq's own check.
    fn is_open(&mut self) -> bool {
        is_open_and_idle(self.fd())
    }
}

/// One non-blocking peek: `true` when there is nothing to read and no error.
fn is_open_and_idle(fd: RawFd) -> bool {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: peeking into a one-byte buffer we own.
        let n = unsafe { libc::recv(fd, byte.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        if n >= 0 {
            return false; // the end of the stream, or unexpected bytes
        }
        match io::Error::last_os_error().kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return true,
            _ => return false,
        }
    }
}

/// When `timeout` runs out (`None`: never). An exhausted one is the timeout's error at once, as
/// ureq's transports do.
fn deadline(timeout: NextTimeout) -> Result<Option<Instant>, ureq::Error> {
    if timeout.after.is_zero() {
        return Err(ureq::Error::Timeout(timeout.reason));
    }
    if timeout.after.is_not_happening() {
        return Ok(None);
    }
    Ok(Instant::now().checked_add(*timeout.after))
}

/// Wait until `fd` is ready for `events` (or has an error or hang-up, which the next read or
/// write reports), or `deadline` passes: then `timeout`'s error.
fn wait(
    fd: RawFd,
    events: libc::c_short,
    deadline: Option<Instant>,
    timeout: NextTimeout,
) -> Result<(), ureq::Error> {
    loop {
        let ms = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ureq::Error::Timeout(timeout.reason));
                }
                // Rounded up, so that a wait never ends just before the deadline and spins.
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        let mut pfd = libc::pollfd { fd, events, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            return Ok(());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (client, server)
    }

    #[test]
    fn an_idle_connection_is_open_until_the_peer_closes_or_sends_unasked() {
        let (client, mut server) = pair();
        assert!(is_open_and_idle(client.as_raw_fd()));
        assert!(is_open_and_idle(client.as_raw_fd()), "the check reads nothing");
        server.write_all(b"x").expect("write");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!is_open_and_idle(client.as_raw_fd()), "bytes nobody asked for");
        let (client, server) = pair();
        drop(server);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!is_open_and_idle(client.as_raw_fd()), "closed by the peer");
    }

    #[test]
    fn the_check_leaves_a_blocking_socket_blocking() {
        let (mut client, mut server) = pair();
        assert!(is_open_and_idle(client.as_raw_fd()));
        // A blocking read still waits for the peer (a non-blocking one would fail at once).
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            server.write_all(b"late").expect("write");
            server
        });
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"late");
        drop(writer.join());
    }

    #[test]
    fn waits_end_at_the_deadline_and_not_before() {
        let (client, _server) = pair();
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::from_millis(150),
            reason: ureq::Timeout::Global,
            per_read: None,
            per_write: None,
        };
        let start = Instant::now();
        let d = deadline(timeout).expect("some time left");
        let err = wait(client.as_raw_fd(), libc::POLLIN, d, timeout).expect_err("nothing comes");
        assert!(matches!(err, ureq::Error::Timeout(ureq::Timeout::Global)), "{err:?}");
        let took = start.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(150) && took < std::time::Duration::from_secs(2),
            "{took:?}"
        );
        let spent =
            NextTimeout { after: ureq::unversioned::transport::time::Duration::from_millis(0), ..timeout };
        assert!(matches!(deadline(spent), Err(ureq::Error::Timeout(_))), "no time left: the timeout at once");
        let never =
            NextTimeout { after: ureq::unversioned::transport::time::Duration::NotHappening, ..timeout };
        assert_eq!(deadline(never).expect("no deadline"), None);
    }
}
