//! Waiting until the kernel can route to an address: the moment the WireServer can be reached,
//! without `network-online.target` or a wait-online service that waits for every link.
//!
//! The kernel is asked directly (rtnetlink `RTM_GETROUTE` for the address: the route and source
//! address a connection would use), and between answers wala sleeps on the kernel's own
//! notifications of link, address and route changes (rtnetlink multicast groups, through mio).
//! A check every second covers a lost notification (a full socket buffer drops them).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long one wait for a notification lasts before the route is asked for again anyway.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RouteWaitError {
    #[error("no route to {dst} after {}s (last answer from the kernel: {last})", waited.as_secs())]
    Timeout { dst: Ipv4Addr, waited: Duration, last: String },
    #[error("rtnetlink: {what}: {source}")]
    Netlink {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The route the kernel would use for a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    /// The source address a connection would get.
    pub src: Ipv4Addr,
    /// The next hop, when the destination is not on a directly attached network.
    pub gateway: Option<Ipv4Addr>,
    /// The outgoing interface's index.
    pub ifindex: u32,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        write!(f, " dev #{} src {}", self.ifindex, self.src)
    }
}

/// Wait until the kernel has a route, with a source address, to `dst`; at most `timeout`.
pub fn wait_for_route(dst: Ipv4Addr, timeout: Duration) -> Result<Route, RouteWaitError> {
    let started = Instant::now();
    // Subscribe before the first question, so that no change between the two is missed.
    let events = Notifications::subscribe()?;
    let mut last;
    loop {
        match route_to(dst)? {
            Ok(route) => return Ok(route),
            Err(why) => last = why,
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(RouteWaitError::Timeout { dst, waited: started.elapsed(), last });
        }
        events.wait(left.min(RECHECK))?;
    }
}

/// Ask the kernel for its route to `dst`: `Ok(Err(why))` when there is none yet.
pub fn route_to(dst: Ipv4Addr) -> Result<Result<Route, String>, RouteWaitError> {
    let sock = netlink_socket(0, 0)?;
    set_receive_timeout(&sock, Duration::from_secs(2))?;
    let request = route_request(dst, 1);
    send(&sock, &request).map_err(|source| RouteWaitError::Netlink { what: "send RTM_GETROUTE", source })?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = recv(&sock, &mut buf)
            .map_err(|source| RouteWaitError::Netlink { what: "receive the route", source })?;
        match parse_route_reply(&buf[..n], dst, 1) {
            Some(answer) => return Ok(answer),
            None => continue,
        }
    }
}

/// A socket subscribed to link, IPv4 address and IPv4 route changes.
struct Notifications {
    sock: OwnedFd,
    poll: std::cell::RefCell<mio::Poll>,
}

impl Notifications {
    fn subscribe() -> Result<Self, RouteWaitError> {
        let groups = (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV4_ROUTE) as u32;
        let sock = netlink_socket(groups, libc::SOCK_NONBLOCK)?;
        let err = |what| move |source| RouteWaitError::Netlink { what, source };
        let poll = mio::Poll::new().map_err(err("poll"))?;
        poll.registry()
            .register(&mut mio::unix::SourceFd(&sock.as_raw_fd()), mio::Token(0), mio::Interest::READABLE)
            .map_err(err("register the notification socket"))?;
        Ok(Self { sock, poll: std::cell::RefCell::new(poll) })
    }

    /// Sleep until a change is announced (or `timeout`), then drain what was announced.
    fn wait(&self, timeout: Duration) -> Result<(), RouteWaitError> {
        let mut events = mio::Events::with_capacity(4);
        match self.poll.borrow_mut().poll(&mut events, Some(timeout)) {
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => {
                return Err(RouteWaitError::Netlink { what: "wait for notifications", source: e })
            }
            _ => {}
        }
        let mut buf = [0u8; 8192];
        // Notifications only say "something changed": the next question gets the answer. An
        // overflow (ENOBUFS) means changes were lost, which the question covers as well.
        while recv(&self.sock, &mut buf).is_ok() {}
        Ok(())
    }
}

pub(crate) fn netlink_socket(groups: u32, flags: libc::c_int) -> Result<OwnedFd, RouteWaitError> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags, libc::NETLINK_ROUTE)
    };
    if fd < 0 {
        return Err(RouteWaitError::Netlink { what: "socket", source: std::io::Error::last_os_error() });
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    // SAFETY: `addr` is a valid sockaddr_nl of the length given.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(RouteWaitError::Netlink { what: "bind", source: std::io::Error::last_os_error() });
    }
    Ok(sock)
}

pub(crate) fn set_receive_timeout(sock: &OwnedFd, timeout: Duration) -> Result<(), RouteWaitError> {
    let tv = libc::timeval { tv_sec: timeout.as_secs() as libc::time_t, tv_usec: 0 };
    // SAFETY: `tv` is a valid timeval of the length given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(RouteWaitError::Netlink { what: "SO_RCVTIMEO", source: std::io::Error::last_os_error() });
    }
    Ok(())
}

pub(crate) fn send(sock: &OwnedFd, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: `bytes` is valid for its length; the kernel (pid 0) is the default destination of an
    // unconnected netlink socket.
    let n = unsafe { libc::send(sock.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn recv(sock: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

pub(crate) const NLMSG_HDRLEN: usize = 16;
const RTMSG_LEN: usize = 12;

/// `RTM_GETROUTE` for one IPv4 destination: nlmsghdr, rtmsg, one `RTA_DST` attribute.
fn route_request(dst: Ipv4Addr, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + RTMSG_LEN + 8;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&libc::RTM_GETROUTE.to_ne_bytes());
    m.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    m.extend_from_slice(&[libc::AF_INET as u8, 32, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&0u32.to_ne_bytes());
    // rtattr RTA_DST.
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&libc::RTA_DST.to_ne_bytes());
    m.extend_from_slice(&dst.octets());
    m
}

/// The answer to [`route_request`] with sequence number `seq` in one datagram: `None` when the
/// datagram holds no answer to it; `Some(Err(why))` when the kernel has no usable route.
fn parse_route_reply(buf: &[u8], dst: Ipv4Addr, seq: u32) -> Option<Result<Route, String>> {
    let u16_at = |b: &[u8], i: usize| b.get(i..i + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]));
    let u32_at = |b: &[u8], i: usize| b.get(i..i + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32_at(buf, off)? as usize;
        let kind = u16_at(buf, off + 4)?;
        let msg_seq = u32_at(buf, off + 8)?;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return None;
        }
        let msg = &buf[off..off + len];
        off += (len + 3) & !3;
        if msg_seq != seq {
            continue;
        }
        if kind == libc::NLMSG_ERROR as u16 {
            let errno = u32_at(msg, NLMSG_HDRLEN)? as i32;
            let why = std::io::Error::from_raw_os_error(-errno).to_string();
            return Some(Err(why));
        }
        if kind != libc::RTM_NEWROUTE {
            continue;
        }
        let body = msg.get(NLMSG_HDRLEN..)?;
        let route_type = *body.get(7)?;
        if route_type != libc::RTN_UNICAST && route_type != libc::RTN_LOCAL {
            return Some(Err(format!("route of type {route_type}, not unicast")));
        }
        let (mut src, mut gateway, mut ifindex) = (None, None, None);
        let mut a = RTMSG_LEN;
        while a + 4 <= body.len() {
            let alen = u16_at(body, a)? as usize;
            let atype = u16_at(body, a + 2)? & 0x3fff;
            if alen < 4 || a + alen > body.len() {
                break;
            }
            let data = &body[a + 4..a + alen];
            let ip = || <[u8; 4]>::try_from(data).ok().map(Ipv4Addr::from);
            match atype {
                t if t == libc::RTA_PREFSRC => src = ip(),
                t if t == libc::RTA_GATEWAY => gateway = ip(),
                t if t == libc::RTA_OIF => ifindex = u32_at(data, 0),
                _ => {}
            }
            a += (alen + 3) & !3;
        }
        return Some(match (src, ifindex) {
            (Some(src), Some(ifindex)) => Ok(Route { dst, src, gateway, ifindex }),
            (None, _) => Err("a route but no source address yet".into()),
            (_, None) => Err("a route without an interface".into()),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_routed_at_once() {
        let route = wait_for_route(Ipv4Addr::LOCALHOST, Duration::from_secs(5)).expect("route");
        assert_eq!(route.src, Ipv4Addr::LOCALHOST);
        assert_eq!(route.gateway, None);
        assert!(route.ifindex > 0);
    }

    #[test]
    fn replies_are_parsed_by_sequence_and_errors_named() {
        // An NLMSG_ERROR for another request, then ours with ENETUNREACH.
        let mut buf = Vec::new();
        for (seq, errno) in [(7u32, libc::EPERM), (1, libc::ENETUNREACH)] {
            buf.extend_from_slice(&36u32.to_ne_bytes());
            buf.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&(-errno).to_ne_bytes());
            buf.extend_from_slice(&[0u8; 16]);
        }
        let dst = Ipv4Addr::new(168, 63, 129, 16);
        let why = parse_route_reply(&buf, dst, 1).expect("an answer").unwrap_err();
        assert_eq!(why, std::io::Error::from_raw_os_error(libc::ENETUNREACH).to_string());
        assert!(parse_route_reply(&buf, dst, 2).is_none());
        // Truncated and garbage datagrams are no answer, never a panic.
        for n in 0..buf.len() {
            let _ = parse_route_reply(&buf[..n], dst, 1);
        }
        assert!(parse_route_reply(&[0xff; 40], dst, 1).is_none());
    }

    /// In a network namespace of its own (root only): no route at first, so the wait times out;
    /// then an address appears while wala waits, and the wait ends with the route through it.
    #[test]
    fn a_route_that_appears_later_ends_the_wait() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            crate::base::testing::skip("route_wait: a network namespace needs root");
            return;
        }
        let result = std::thread::spawn(|| {
            // SAFETY: unshare(2) of this thread's network namespace only; the thread ends after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!("unshare: {}", std::io::Error::last_os_error()));
            }
            let dst = Ipv4Addr::new(10, 99, 0, 7);
            match wait_for_route(dst, Duration::from_millis(300)) {
                Err(RouteWaitError::Timeout { last, .. }) => assert!(last.contains("unreachable"), "{last}"),
                other => return Err(format!("expected a timeout, got {other:?}")),
            }
            // A child forked by this thread is in its namespace.
            let mut child = std::process::Command::new("sh")
                .args(["-c", "sleep 0.3 && ip link set lo up && ip addr add 10.99.0.1/24 dev lo"])
                .spawn()
                .map_err(|e| format!("ip: {e}"))?;
            let route = wait_for_route(dst, Duration::from_secs(20));
            let status = child.wait().map_err(|e| e.to_string())?;
            assert!(status.success(), "ip failed");
            route.map_err(|e| e.to_string())
        })
        .join()
        .expect("thread");
        let route = result.expect("route");
        assert_eq!(
            (route.dst, route.src, route.gateway),
            (Ipv4Addr::new(10, 99, 0, 7), Ipv4Addr::new(10, 99, 0, 1), None)
        );
    }
}
