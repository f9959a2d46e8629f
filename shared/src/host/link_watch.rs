//! Watching network links (NICs) come, go, and lose or regain their carrier: what a
//! pre-provisioned pool VM waits for when a user takes it over (docs/provisioning.md, "Pre-
//! provisioned pools"). A Running pool VM sees its NIC's carrier go down and come back up when the
//! host moves it to the user's virtual network; a Savable one sees its NIC unplugged, and later a
//! new NIC hot-plugged.
//!
//! The kernel says so on rtnetlink's link group (`RTMGRP_LINK`: `RTM_NEWLINK`, `RTM_DELLINK`), read
//! through mio like [`crate::host::route_wait`]'s notifications. [`LinkWatch`] subscribes first, then
//! asks for the table of links (`RTM_GETLINK` dump), and from then on keeps that table up to date
//! from the notifications and hands out each change. When the socket overflowed (`ENOBUFS`:
//! notifications were lost), the table is asked for again and the difference is handed out, so a
//! NIC that came or went in the lost stretch is still seen.
//!
//! Carrier is the `IFF_LOWER_UP` flag (what `ip link` shows as `LOWER_UP`, and `NO-CARRIER` when
//! it is absent on an interface that is up); the operational state is logged beside it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::host::route_wait::{netlink_socket, recv, send, set_receive_timeout, NLMSG_HDRLEN};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const IFINFOMSG_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_OPERSTATE: u16 = 16;
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_LOWER_UP: u32 = 0x10000;
/// How much the kernel may queue for the subscription before it drops notifications.
const RECEIVE_BUFFER: libc::c_int = 1 << 20;

/// Why watching links failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkWatchError {
    #[error("rtnetlink: {what}: {source}")]
    Netlink {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("rtnetlink: cannot open a socket: {0}")]
    Socket(String),
    #[error("rtnetlink: the link table could not be read: {0}")]
    Dump(String),
    #[error("no {what} within {}s", waited.as_secs())]
    Timeout { what: &'static str, waited: Duration },
}

fn netlink(what: &'static str) -> impl FnOnce(std::io::Error) -> LinkWatchError {
    move |source| LinkWatchError::Netlink { what, source }
}

/// One network link as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The interface index (never reused while the link exists; a hot-plugged NIC gets a new one).
    pub index: u32,
    /// `IFLA_IFNAME`.
    pub name: String,
    /// `ifi_flags` (`IFF_UP`, `IFF_LOOPBACK`, `IFF_LOWER_UP`, ...).
    pub flags: u32,
    /// `IFLA_OPERSTATE` (RFC 2863: 2 down, 6 up, 0 unknown, ...), when sent.
    pub operstate: Option<u8>,
}

impl Link {
    pub fn is_loopback(&self) -> bool {
        self.flags & IFF_LOOPBACK != 0
    }

    /// Whether the link has its carrier (`IFF_LOWER_UP`).
    pub fn has_carrier(&self) -> bool {
        self.flags & IFF_LOWER_UP != 0
    }

    /// Whether the link is administratively up (`IFF_UP`).
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.operstate {
            Some(0) => "unknown",
            Some(1) => "notpresent",
            Some(2) => "down",
            Some(3) => "lowerlayerdown",
            Some(4) => "testing",
            Some(5) => "dormant",
            Some(6) => "up",
            _ => "?",
        };
        let carrier = if self.has_carrier() { "carrier" } else { "no carrier" };
        write!(f, "{} (#{}, {carrier}, {state})", self.name, self.index)
    }
}

/// One rtnetlink message, as far as links go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `RTM_NEWLINK`: a link appeared or changed (or a dump entry).
    New(Link),
    /// `RTM_DELLINK`: a link is gone.
    Del(Link),
    /// `NLMSG_DONE` ending a dump, with its sequence number.
    Done { seq: u32 },
    /// `NLMSG_ERROR` with its sequence number and (negative) errno; 0 is an acknowledgement.
    Error { seq: u32, errno: i32 },
}

/// Parse the messages of one rtnetlink datagram. Messages of other kinds are skipped; a truncated
/// or malformed message ends the datagram (what came before it is kept). Never panics.
pub fn parse_messages(buf: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + NLMSG_HDRLEN <= buf.len() {
        let (Some(len), Some(kind), Some(seq)) =
            (u32_at(buf, off), u16_at(buf, off + 4), u32_at(buf, off + 8))
        else {
            break;
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > buf.len() - off {
            break;
        }
        let msg = &buf[off..off + len];
        off += len.saturating_add(3) & !3;
        match kind {
            RTM_NEWLINK | RTM_DELLINK => {
                if let Some(link) = parse_link(&msg[NLMSG_HDRLEN..]) {
                    out.push(if kind == RTM_NEWLINK { Message::New(link) } else { Message::Del(link) });
                }
            }
            NLMSG_DONE => out.push(Message::Done { seq }),
            NLMSG_ERROR => {
                if let Some(errno) = u32_at(msg, NLMSG_HDRLEN) {
                    out.push(Message::Error { seq, errno: errno as i32 });
                }
            }
            _ => {}
        }
    }
    out
}

/// `ifinfomsg` and its attributes.
fn parse_link(body: &[u8]) -> Option<Link> {
    if body.len() < IFINFOMSG_LEN {
        return None;
    }
    let index = u32_at(body, 4)?;
    let flags = u32_at(body, 8)?;
    let (mut name, mut operstate) = (None, None);
    let mut a = IFINFOMSG_LEN;
    while a + 4 <= body.len() {
        let alen = usize::from(u16_at(body, a)?);
        let atype = u16_at(body, a + 2)? & 0x3fff;
        if alen < 4 || alen > body.len() - a {
            break;
        }
        let data = &body[a + 4..a + alen];
        match atype {
            IFLA_IFNAME => {
                let raw = data.split(|b| *b == 0).next().unwrap_or_default();
                name = Some(String::from_utf8_lossy(raw).into_owned());
            }
            IFLA_OPERSTATE => operstate = data.first().copied(),
            _ => {}
        }
        a += alen.saturating_add(3) & !3;
    }
    Some(Link { index, name: name.unwrap_or_default(), flags, operstate })
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    b.get(i..i.checked_add(2)?).map(|s| u16::from_ne_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    b.get(i..i.checked_add(4)?).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// `RTM_GETLINK` dump request with sequence number `seq`.
fn dump_request(seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + IFINFOMSG_LEN;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[0u8; IFINFOMSG_LEN]);
    m
}

/// The kernel's table of links, now.
pub fn dump_links() -> Result<Vec<Link>, LinkWatchError> {
    const SEQ: u32 = 1;
    let sock = netlink_socket(0, 0).map_err(|e| LinkWatchError::Dump(e.to_string()))?;
    set_receive_timeout(&sock, Duration::from_secs(2)).map_err(|e| LinkWatchError::Dump(e.to_string()))?;
    send(&sock, &dump_request(SEQ)).map_err(netlink("send RTM_GETLINK"))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut links = Vec::new();
    loop {
        let n = recv(&sock, &mut buf).map_err(netlink("receive the link table"))?;
        if n == 0 {
            return Err(LinkWatchError::Dump("the kernel closed the socket".into()));
        }
        for m in parse_messages(&buf[..n]) {
            match m {
                Message::New(link) => links.push(link),
                Message::Done { seq } if seq == SEQ => return Ok(links),
                Message::Error { seq, errno } if seq == SEQ && errno != 0 => {
                    return Err(LinkWatchError::Dump(std::io::Error::from_raw_os_error(-errno).to_string()))
                }
                _ => {}
            }
        }
    }
}

/// A change to the table of links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    Added(Link),
    Changed { before: Link, after: Link },
    Removed(Link),
}

/// A subscription to link changes with the table of links it keeps.
pub struct LinkWatch {
    sock: OwnedFd,
    poll: mio::Poll,
    links: BTreeMap<u32, Link>,
    pending: VecDeque<LinkChange>,
}

impl std::fmt::Debug for LinkWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkWatch").field("links", &self.links).finish_non_exhaustive()
    }
}

impl LinkWatch {
    /// Subscribe to link changes, then read the table of links: nothing that happens after this
    /// returns is missed.
    pub fn subscribe() -> Result<Self, LinkWatchError> {
        let sock = netlink_socket(libc::RTMGRP_LINK as u32, libc::SOCK_NONBLOCK)
            .map_err(|e| LinkWatchError::Socket(e.to_string()))?;
        // A bigger queue than the default, so that a burst (many NICs) is not dropped; failing
        // that, an overflow is still repaired by reading the table again.
        // SAFETY: a valid c_int option value of the length given.
        let _ = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&RECEIVE_BUFFER as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let poll = mio::Poll::new().map_err(netlink("poll"))?;
        poll.registry()
            .register(&mut mio::unix::SourceFd(&sock.as_raw_fd()), mio::Token(0), mio::Interest::READABLE)
            .map_err(netlink("register the link socket"))?;
        let links = dump_links()?.into_iter().map(|l| (l.index, l)).collect();
        Ok(Self { sock, poll, links, pending: VecDeque::new() })
    }

    /// The links known now.
    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.values()
    }

    /// The link with this index, if it exists.
    pub fn link(&self, index: u32) -> Option<&Link> {
        self.links.get(&index)
    }

    /// The link named `name`, if it exists.
    pub fn by_name(&self, name: &str) -> Option<&Link> {
        self.links.values().find(|l| l.name == name)
    }

    /// The next change, waiting for it up to `timeout` (`None`: as long as it takes). `Ok(None)`
    /// when the time ran out.
    pub fn next_change(&mut self, timeout: Option<Duration>) -> Result<Option<LinkChange>, LinkWatchError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(c) = self.pending.pop_front() {
                return Ok(Some(c));
            }
            self.drain()?;
            if !self.pending.is_empty() {
                continue;
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(None),
                },
                None => None,
            };
            let mut events = mio::Events::with_capacity(4);
            match self.poll.poll(&mut events, left) {
                Err(e) if e.kind() != std::io::ErrorKind::Interrupted => {
                    return Err(LinkWatchError::Netlink { what: "wait for link changes", source: e })
                }
                _ => {}
            }
        }
    }

    /// Read every queued notification into the table (and the pending changes).
    fn drain(&mut self) -> Result<(), LinkWatchError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match recv(&self.sock, &mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    for m in parse_messages(&buf[..n]) {
                        self.apply(m);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    log::warn!(
                        "rtnetlink: link notifications were lost (queue full); reading the link table again"
                    );
                    self.resync()?;
                }
                Err(e) => return Err(LinkWatchError::Netlink { what: "receive link changes", source: e }),
            }
        }
    }

    fn apply(&mut self, m: Message) {
        match m {
            Message::New(mut link) => {
                let change = match self.links.get(&link.index) {
                    Some(before) => {
                        if link.name.is_empty() {
                            link.name.clone_from(&before.name);
                        }
                        LinkChange::Changed { before: before.clone(), after: link.clone() }
                    }
                    None => LinkChange::Added(link.clone()),
                };
                self.links.insert(link.index, link);
                self.pending.push_back(change);
            }
            Message::Del(link) => {
                let known = self.links.remove(&link.index);
                let mut gone = known.unwrap_or(link.clone());
                gone.flags = link.flags;
                gone.operstate = link.operstate.or(gone.operstate);
                self.pending.push_back(LinkChange::Removed(gone));
            }
            Message::Done { .. } | Message::Error { .. } => {}
        }
    }

    /// Read the table again and queue the differences as changes.
    fn resync(&mut self) -> Result<(), LinkWatchError> {
        let now: BTreeMap<u32, Link> = dump_links()?.into_iter().map(|l| (l.index, l)).collect();
        let before = std::mem::take(&mut self.links);
        for (index, old) in &before {
            match now.get(index) {
                None => self.pending.push_back(LinkChange::Removed(old.clone())),
                Some(new) if new != old => {
                    self.pending.push_back(LinkChange::Changed { before: old.clone(), after: new.clone() })
                }
                Some(_) => {}
            }
        }
        for (index, new) in &now {
            if !before.contains_key(index) {
                self.pending.push_back(LinkChange::Added(new.clone()));
            }
        }
        self.links = now;
        Ok(())
    }

    /// Wait until link `index` has lost its carrier and then regained it (a Running pool VM's
    /// move to the user's network; cloud-init's "media disconnect/connect"). A carrier already
    /// lost when this starts counts as the loss.
    pub fn wait_for_media_switch(
        &mut self,
        index: u32,
        limit: Option<Duration>,
    ) -> Result<Link, LinkWatchError> {
        let started = Instant::now();
        let mut lost = self.link(index).is_some_and(|l| !l.has_carrier());
        loop {
            let left = remaining(limit, started, "carrier loss and return")?;
            let Some(change) = self.next_change(left)? else { continue };
            match change {
                LinkChange::Changed { before, after } if after.index == index => {
                    if before.has_carrier() != after.has_carrier() || before.operstate != after.operstate {
                        log::info!("link {after}");
                    }
                    if !after.has_carrier() {
                        lost = true;
                    } else if lost {
                        return Ok(after);
                    }
                }
                LinkChange::Removed(link) if link.index == index => {
                    log::warn!("link {link} was removed while waiting for its carrier to switch");
                    lost = true;
                }
                LinkChange::Added(link) if lost && !link.is_loopback() && link.has_carrier() => {
                    log::info!("link {link} appeared after the watched one went away");
                    return Ok(link);
                }
                _ => {}
            }
        }
    }

    /// Wait until a link other than loopback is removed (a Savable pool VM's NIC unplugged).
    pub fn wait_for_detach(&mut self, limit: Option<Duration>) -> Result<Link, LinkWatchError> {
        let started = Instant::now();
        loop {
            let left = remaining(limit, started, "NIC detach")?;
            if let Some(LinkChange::Removed(link)) = self.next_change(left)? {
                if !link.is_loopback() {
                    return Ok(link);
                }
            }
        }
    }

    /// Wait until a link that is not in `known` (and not loopback) appears (a NIC hot-plugged).
    pub fn wait_for_attach(
        &mut self,
        known: &BTreeSet<u32>,
        limit: Option<Duration>,
    ) -> Result<Link, LinkWatchError> {
        let started = Instant::now();
        // One that came while nobody was waiting counts.
        if let Some(link) = self.links.values().find(|l| !known.contains(&l.index) && !l.is_loopback()) {
            return Ok(link.clone());
        }
        loop {
            let left = remaining(limit, started, "NIC attach")?;
            match self.next_change(left)? {
                Some(LinkChange::Added(link)) if !known.contains(&link.index) && !link.is_loopback() => {
                    return Ok(link)
                }
                _ => {}
            }
        }
    }
}

/// What is left of `limit` (`None`: no limit); a timeout error once it ran out.
fn remaining(
    limit: Option<Duration>,
    started: Instant,
    what: &'static str,
) -> Result<Option<Duration>, LinkWatchError> {
    match limit {
        None => Ok(None),
        Some(l) => {
            let left = l.saturating_sub(started.elapsed());
            if left.is_zero() {
                Err(LinkWatchError::Timeout { what, waited: started.elapsed() })
            } else {
                Ok(Some(left))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_msg(kind: u16, seq: u32, index: u32, flags: u32, name: &str, operstate: u8) -> Vec<u8> {
        let mut attrs = Vec::new();
        let name_attr_len = 4 + name.len() + 1;
        attrs.extend_from_slice(&(name_attr_len as u16).to_ne_bytes());
        attrs.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        attrs.extend_from_slice(name.as_bytes());
        attrs.push(0);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        attrs.extend_from_slice(&5u16.to_ne_bytes());
        attrs.extend_from_slice(&IFLA_OPERSTATE.to_ne_bytes());
        attrs.extend_from_slice(&[operstate, 0, 0, 0]);
        let len = NLMSG_HDRLEN + IFINFOMSG_LEN + attrs.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[0, 0, 1, 0]);
        m.extend_from_slice(&index.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn link_messages_are_parsed_and_garbage_is_no_panic() {
        let mut buf = link_msg(RTM_NEWLINK, 0, 2, IFF_UP | IFF_LOWER_UP, "eth0", 6);
        buf.extend(link_msg(RTM_DELLINK, 0, 3, 0, "eth1", 2));
        let mut done = Vec::new();
        done.extend_from_slice(&20u32.to_ne_bytes());
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.extend_from_slice(&0u16.to_ne_bytes());
        done.extend_from_slice(&9u32.to_ne_bytes());
        done.extend_from_slice(&0u32.to_ne_bytes());
        done.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend(&done);
        let got = parse_messages(&buf);
        assert_eq!(got.len(), 3);
        let Message::New(eth0) = &got[0] else { panic!("{got:?}") };
        assert_eq!((eth0.index, eth0.name.as_str(), eth0.operstate), (2, "eth0", Some(6)));
        assert!(eth0.has_carrier() && eth0.is_up() && !eth0.is_loopback());
        assert!(matches!(&got[1], Message::Del(l) if l.name == "eth1" && !l.has_carrier()));
        assert_eq!(got[2], Message::Done { seq: 9 });
        for n in 0..buf.len() {
            let _ = parse_messages(&buf[..n]);
        }
        assert!(parse_messages(&[0xff; 64]).is_empty());
        // A length field that lies (shorter than the header, longer than the buffer).
        let mut lying = buf.clone();
        lying[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(parse_messages(&lying).is_empty());
        lying[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse_messages(&lying).is_empty());
    }

    #[test]
    fn the_table_of_links_has_loopback() {
        let links = dump_links().expect("dump");
        assert!(links.iter().any(|l| l.is_loopback() && l.name == "lo"), "{links:?}");
    }

    /// In a network namespace of its own (root only): run `setup` with `sh`, then `body`; both in
    /// a thread that has the namespace (children it starts are in it too).
    fn in_netns<T: Send + 'static>(
        setup: &'static str,
        body: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Option<T> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            crate::base::testing::skip("link_watch: a network namespace needs root");
            return None;
        }
        let result = std::thread::spawn(move || {
            // SAFETY: unshare(2) of this thread's network namespace only; the thread ends after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!("unshare: {}", std::io::Error::last_os_error()));
            }
            sh(setup)?;
            body()
        })
        .join()
        .expect("thread");
        Some(result.expect("netns test"))
    }

    fn sh(script: &str) -> Result<(), String> {
        let out =
            std::process::Command::new("sh").args(["-ec", script]).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{script}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    fn later(script: &'static str) -> std::process::Child {
        std::process::Command::new("sh").args(["-ec", &format!("sleep 0.3; {script}")]).spawn().expect("sh")
    }

    #[test]
    fn a_carrier_that_goes_and_comes_back_is_a_media_switch() {
        let setup = "ip link set lo up; ip link add wa0 type veth peer name wb0; ip link set wa0 up; ip link set wb0 up";
        in_netns(setup, || {
            let mut w = LinkWatch::subscribe().map_err(|e| e.to_string())?;
            let wa0 = w.by_name("wa0").ok_or("no wa0")?.clone();
            // Nothing happens: the wait runs out.
            match w.wait_for_media_switch(wa0.index, Some(Duration::from_millis(200))) {
                Err(LinkWatchError::Timeout { .. }) => {}
                other => return Err(format!("expected a timeout, got {other:?}")),
            }
            let mut child = later("ip link set wb0 down; sleep 0.2; ip link set wb0 up");
            let back = w.wait_for_media_switch(wa0.index, Some(Duration::from_secs(20)));
            let _ = child.wait();
            let back = back.map_err(|e| e.to_string())?;
            if back.index != wa0.index || !back.has_carrier() {
                return Err(format!("{back:?}"));
            }
            Ok(())
        });
    }

    #[test]
    fn a_nic_unplugged_then_another_plugged_is_seen_in_order() {
        // veth pairs (dummy links need a module this kernel may not have): a pair comes and goes
        // as two links.
        let setup = "ip link set lo up; ip link add nic0 type veth peer name nic0p; ip link set nic0 up";
        in_netns(setup, || {
            let mut w = LinkWatch::subscribe().map_err(|e| e.to_string())?;
            let known: BTreeSet<u32> = w.links().map(|l| l.index).collect();
            let mut child =
                later("ip link del nic0; sleep 0.2; ip link add nic1 type veth peer name nic1p; ip link set nic1 up");
            let gone = w.wait_for_detach(Some(Duration::from_secs(20)));
            let new = gone.is_ok().then(|| w.wait_for_attach(&known, Some(Duration::from_secs(20))));
            let _ = child.wait();
            let gone = gone.map_err(|e| e.to_string())?;
            let new = new.ok_or("no detach")?.map_err(|e| e.to_string())?;
            if !gone.name.starts_with("nic0") || !new.name.starts_with("nic1") || known.contains(&new.index) {
                return Err(format!("detached {gone:?}, attached {new:?}"));
            }
            Ok(())
        });
    }
}
