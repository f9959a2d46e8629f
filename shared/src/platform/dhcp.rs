//! The WireServer address from DHCP: option 245 in the lease files of dhclient (also used by
//! NetworkManager), systemd-networkd and dhcpcd, in raw DHCP packets, and the kernel route check.
//!
//! Every parser is a pure function over file contents with an explicit "now", so tests need no
//! clock and no host. [`find_wireserver_endpoint`] scans the standard lease locations through a
//! [`HostRoot`].
//!
//! Only option 245 is ever taken as the WireServer address: never the DNS server, the DHCP server
//! identifier or a router, even when (as on Azure) they carry the same address.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::base::root::HostRoot;

/// The WireServer's well-known address, used when DHCP does not say otherwise.
pub const KNOWN_WIRESERVER: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

/// The DHCP option code Azure uses for the WireServer address.
pub const OPTION_WIRESERVER: u8 = 245;

/// Why a lease, dump or packet could not be read. `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    /// An option 245 value that does not decode to exactly four octets.
    #[error("line {line}: option 245 value {value:?} is not an IPv4 address: {why}")]
    BadOption245 { line: usize, value: String, why: &'static str },
    /// An `expire` statement in a dhclient lease that cannot be read.
    #[error("line {line}: cannot read lease expiry {value:?}")]
    BadExpiry { line: usize, value: String },
    /// A `lease {` block without its closing `}`.
    #[error("line {line}: lease block is not closed")]
    UnclosedLease { line: usize },
    /// A `key=value` entry whose value is not what the key calls for.
    #[error("{key}: invalid value {value:?}: {why}")]
    BadValue { key: String, value: String, why: &'static str },
    /// A raw DHCP packet that is too short or whose options are cut off.
    #[error("DHCP packet: {0}")]
    Packet(&'static str),
}

// ---------------------------------------------------------------------------------------------
// Option 245 values
// ---------------------------------------------------------------------------------------------

/// Decode an option 245 value as found in lease files. Accepted forms:
/// * colon-separated hex octets, one or two digits each (`a8:3f:81:10`, `4:3:2:1`), as dhclient
///   writes unknown options whose bytes are not all printable;
/// * a dhclient string (`"bL6 "`, `"\250?\201\020"`), quoted or not, with backslash escapes:
///   `\ooo` octal or a backslash before a literal character; it must decode to four bytes;
/// * eight hex digits (`a83f8110`), as systemd-networkd writes `OPTION_245`;
/// * a dotted quad (`168.63.129.16`), as written when the option is declared `ip-address`.
pub fn decode_option245(value: &str) -> Result<Ipv4Addr, &'static str> {
    let v = value.trim();
    let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
    if quoted || v.contains('\\') {
        let inner = if quoted { &v[1..v.len() - 1] } else { v };
        let bytes = unescape_dhclient_string(inner)?;
        return octets(&bytes).ok_or("the string does not hold exactly 4 bytes");
    }
    if v.contains(':') {
        let mut out = Vec::with_capacity(4);
        for group in v.split(':') {
            if group.is_empty() || group.len() > 2 {
                return Err("each colon-separated group must be 1 or 2 hex digits");
            }
            out.push(u8::from_str_radix(group, 16).map_err(|_| "not a hex octet")?);
        }
        return octets(&out).ok_or("expected 4 colon-separated octets");
    }
    if v.contains('.') {
        return v.parse().map_err(|_| "not a dotted-quad address");
    }
    if v.len() == 8 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        let n = u32::from_str_radix(v, 16).map_err(|_| "not hex")?;
        return Ok(Ipv4Addr::from(n));
    }
    Err("expected a1:b2:c3:d4, 8 hex digits, a dotted quad or a 4-byte string")
}

fn octets(bytes: &[u8]) -> Option<Ipv4Addr> {
    let arr: [u8; 4] = bytes.try_into().ok()?;
    Some(Ipv4Addr::from(arr))
}

/// Undo dhclient's string escaping: `\` followed by 1-3 octal digits is a byte, `\` followed by any
/// other character is that character.
fn unescape_dhclient_string(s: &str) -> Result<Vec<u8>, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        i += 1;
        let digits = bytes[i..].iter().take(3).take_while(|b| (b'0'..=b'7').contains(b)).count();
        if digits > 0 {
            let mut n: u32 = 0;
            for b in &bytes[i..i + digits] {
                n = n * 8 + u32::from(b - b'0');
            }
            out.push(u8::try_from(n).map_err(|_| "octal escape above \\377")?);
            i += digits;
        } else if let Some(&b) = bytes.get(i) {
            out.push(b);
            i += 1;
        } else {
            return Err("dangling backslash");
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// dhclient (and NetworkManager's dhclient) lease files
// ---------------------------------------------------------------------------------------------

/// When a dhclient lease stops being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum LeaseExpiry {
    /// `expire never;` (or `expire 0 never;`): an infinite lease.
    Never,
    /// The lease expires at this instant.
    At(SystemTime),
    /// The block has no `expire` statement; it is taken as valid.
    Unstated,
}

impl LeaseExpiry {
    /// Whether the lease is still valid at `now` (an expiry equal to `now` is expired).
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        match self {
            LeaseExpiry::Never | LeaseExpiry::Unstated => true,
            LeaseExpiry::At(t) => *t > now,
        }
    }
}

/// One `lease { ... }` block of a dhclient lease file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DhclientLease {
    /// 1-based line of the `lease {` opener.
    pub line: usize,
    /// The `interface "..."` statement, if any.
    pub interface: Option<String>,
    /// `option unknown-245`, decoded.
    pub wireserver: Option<Ipv4Addr>,
    /// The `expire` statement.
    pub expiry: LeaseExpiry,
}

/// Parse the `lease { ... }` blocks of a dhclient lease file (ISC dhclient format, also written by
/// NetworkManager when it runs dhclient). `lease6` blocks and statements outside blocks are skipped.
pub fn parse_dhclient_leases(text: &str) -> Result<Vec<DhclientLease>, DhcpError> {
    let mut leases = Vec::new();
    let mut current: Option<DhclientLease> = None;
    let mut depth = 0usize;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if current.is_none() {
            if depth == 0 && is_block_opener(line, "lease") {
                current = Some(DhclientLease {
                    line: line_no,
                    interface: None,
                    wireserver: None,
                    expiry: LeaseExpiry::Unstated,
                });
            } else {
                depth = (depth + line.matches('{').count()).saturating_sub(line.matches('}').count());
            }
            continue;
        }
        if line.starts_with('}') {
            if depth > 0 {
                depth -= 1;
                continue;
            }
            if let Some(lease) = current.take() {
                leases.push(lease);
            }
            continue;
        }
        if line.ends_with('{') {
            depth += 1;
            continue;
        }
        let Some(lease) = current.as_mut() else { continue };
        let stmt = line.trim_end_matches(';').trim();
        let mut words = stmt.splitn(2, char::is_whitespace);
        let keyword = words.next().unwrap_or_default();
        let rest = words.next().unwrap_or_default().trim();
        match keyword {
            "interface" => lease.interface = Some(rest.trim_matches('"').to_string()),
            "expire" => {
                lease.expiry = parse_expiry(rest)
                    .ok_or_else(|| DhcpError::BadExpiry { line: line_no, value: rest.to_string() })?
            }
            "option" => {
                let mut parts = rest.splitn(2, char::is_whitespace);
                let name = parts.next().unwrap_or_default();
                let value = parts.next().unwrap_or_default().trim();
                if name == "unknown-245" {
                    let ip = decode_option245(value).map_err(|why| DhcpError::BadOption245 {
                        line: line_no,
                        value: value.to_string(),
                        why,
                    })?;
                    lease.wireserver = Some(ip);
                }
            }
            _ => {}
        }
    }
    match current {
        Some(lease) => Err(DhcpError::UnclosedLease { line: lease.line }),
        None => Ok(leases),
    }
}

/// The WireServer address from a dhclient lease file: option 245 of the **last** lease block that
/// carries it and has not expired at `now`.
pub fn dhclient_wireserver(text: &str, now: SystemTime) -> Result<Option<Ipv4Addr>, DhcpError> {
    let leases = parse_dhclient_leases(text)?;
    Ok(leases.iter().rev().filter(|l| l.expiry.is_valid_at(now)).find_map(|l| l.wireserver))
}

fn strip_comment(line: &str) -> &str {
    // dhclient quotes strings; a '#' inside quotes is not a comment.
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => in_quotes = !in_quotes,
            '#' if !in_quotes => return &line[..i],
            _ => {}
        }
    }
    line
}

fn is_block_opener(line: &str, keyword: &str) -> bool {
    line.strip_prefix(keyword).is_some_and(|rest| rest.trim() == "{")
}

/// Read the argument of an `expire` statement: `never`, `0 never`, `epoch 1434473934`, or
/// `<weekday> YYYY/MM/DD HH:MM:SS` in UTC.
fn parse_expiry(rest: &str) -> Option<LeaseExpiry> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.as_slice() {
        ["never"] | [_, "never"] => Some(LeaseExpiry::Never),
        ["epoch", secs] => {
            let secs: i64 = secs.parse().ok()?;
            Some(LeaseExpiry::At(system_time_from_unix(secs)?))
        }
        [_weekday, date, time] => {
            let d: Vec<&str> = date.split('/').collect();
            let t: Vec<&str> = time.split(':').collect();
            let [y, mo, da] = d.as_slice() else { return None };
            let [h, mi, s] = t.as_slice() else { return None };
            let (y, mo, da): (i64, u32, u32) = (y.parse().ok()?, mo.parse().ok()?, da.parse().ok()?);
            let (h, mi, s): (i64, i64, i64) = (h.parse().ok()?, mi.parse().ok()?, s.parse().ok()?);
            if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || s > 60 {
                return None;
            }
            if !(0..=9999).contains(&y) || h < 0 || mi < 0 || s < 0 {
                return None;
            }
            let secs = crate::base::civil_date::to_days(y, mo, da) * 86_400 + h * 3600 + mi * 60 + s;
            Some(LeaseExpiry::At(system_time_from_unix(secs)?))
        }
        _ => None,
    }
}

fn system_time_from_unix(secs: i64) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

// ---------------------------------------------------------------------------------------------
// systemd-networkd lease files and dhcpcd --dumplease output (key=value)
// ---------------------------------------------------------------------------------------------

/// The WireServer address from a systemd-networkd lease file (`/run/systemd/netif/leases/<ifindex>`):
/// the `OPTION_245=` line (8 hex digits, colons tolerated). `Ok(None)` when the line is absent.
/// networkd records no absolute expiry; its leases live in `/run` and so belong to this boot.
pub fn networkd_wireserver(text: &str) -> Result<Option<Ipv4Addr>, DhcpError> {
    let mut found = None;
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else { continue };
        if key.trim() == "OPTION_245" {
            let value = value.trim().trim_matches('"');
            let ip = decode_option245(value).map_err(|why| DhcpError::BadValue {
                key: "OPTION_245".into(),
                value: value.to_string(),
                why,
            })?;
            found = Some(ip);
        }
    }
    Ok(found)
}

/// An IPv4 route from a DHCP classless-static-routes option (RFC 3442, option 121).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// The output of `dhcpcd --dumplease`: `key='value'` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DhcpcdDump {
    pub values: BTreeMap<String, String>,
}

impl DhcpcdDump {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// `classless_static_routes='<dest>/<len> <gateway> ...'`; empty when the key is absent.
    pub fn classless_static_routes(&self) -> Result<Vec<Route>, DhcpError> {
        const KEY: &str = "classless_static_routes";
        let Some(value) = self.get(KEY) else { return Ok(Vec::new()) };
        let bad = |why| DhcpError::BadValue { key: KEY.into(), value: value.to_string(), why };
        let words: Vec<&str> = value.split_whitespace().collect();
        if words.len() % 2 != 0 {
            return Err(bad("expected pairs of <destination>/<length> <gateway>"));
        }
        let mut routes = Vec::new();
        for pair in words.chunks(2) {
            let (dest, gw) = (pair[0], pair[1]);
            let (addr, len) = dest.split_once('/').ok_or_else(|| bad("destination lacks /<length>"))?;
            let destination: Ipv4Addr = addr.parse().map_err(|_| bad("destination is not IPv4"))?;
            let prefix_len: u8 = len.parse().map_err(|_| bad("prefix length is not a number"))?;
            if prefix_len > 32 {
                return Err(bad("prefix length above 32"));
            }
            let gateway: Ipv4Addr = gw.parse().map_err(|_| bad("gateway is not IPv4"))?;
            routes.push(Route { destination, prefix_len, gateway });
        }
        Ok(routes)
    }

    /// Option 245 if dhcpcd printed it (`unknown_245=`, hex with or without colons).
    pub fn wireserver(&self) -> Result<Option<Ipv4Addr>, DhcpError> {
        const KEY: &str = "unknown_245";
        let Some(value) = self.get(KEY) else { return Ok(None) };
        decode_option245(value).map(Some).map_err(|why| DhcpError::BadValue {
            key: KEY.into(),
            value: value.to_string(),
            why,
        })
    }
}

/// Parse `dhcpcd --dumplease` output. Values may be single- or double-quoted; blank lines are
/// skipped; a non-empty line without `=` is an error naming that line.
pub fn parse_dhcpcd_dump(text: &str) -> Result<DhcpcdDump, DhcpError> {
    let mut values = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| DhcpError::BadValue {
            key: line.to_string(),
            value: String::new(),
            why: "line is not key=value",
        })?;
        let value = value.trim();
        let value = ['\'', '"']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        values.insert(key.trim().to_string(), value.to_string());
    }
    Ok(DhcpcdDump { values })
}

// ---------------------------------------------------------------------------------------------
// Raw DHCP packets (dhcpcd lease files, DHCP replies)
// ---------------------------------------------------------------------------------------------

/// Offset of the magic cookie in a BOOTP/DHCP message.
const COOKIE_OFFSET: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// A BOOTP/DHCP message as dhcpcd stores it in `<iface>.lease`, or as a DHCP server sends it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DhcpPacket {
    /// 1 = request, 2 = reply.
    pub op: u8,
    pub xid: u32,
    /// `yiaddr`: the address offered to the client.
    pub your_address: Ipv4Addr,
    /// `chaddr`, the first `hlen` bytes (at most 16).
    pub client_hw_address: Vec<u8>,
    /// Options in order of appearance; repeated codes are concatenated (RFC 3396).
    pub options: Vec<(u8, Vec<u8>)>,
}

impl DhcpPacket {
    /// The data of option `code`.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options.iter().find(|(c, _)| *c == code).map(|(_, v)| v.as_slice())
    }

    /// Option 53, the DHCP message type (2 = OFFER, 5 = ACK).
    pub fn message_type(&self) -> Option<u8> {
        self.option(53).and_then(|v| v.first().copied())
    }

    /// Option 51, the lease time in seconds (`u32::MAX` = infinite).
    pub fn lease_time(&self) -> Option<u32> {
        self.option(51).and_then(|v| <[u8; 4]>::try_from(v).ok()).map(u32::from_be_bytes)
    }

    /// Option 245, the WireServer address. An option of the wrong length is an error.
    pub fn wireserver(&self) -> Result<Option<Ipv4Addr>, DhcpError> {
        match self.option(OPTION_WIRESERVER) {
            None => Ok(None),
            Some(v) => octets(v).map(Some).ok_or(DhcpError::Packet("option 245 is not 4 bytes long")),
        }
    }

    /// Option 121, classless static routes (RFC 3442); empty when absent.
    pub fn classless_static_routes(&self) -> Result<Vec<Route>, DhcpError> {
        self.option(121).map(parse_rfc3442).unwrap_or(Ok(Vec::new()))
    }
}

/// Parse a raw DHCP message: the fixed BOOTP header, the magic cookie at offset 236, then options
/// up to `end` (255) or the end of the data. Pad (0) is skipped. An option cut off by the end of the
/// data, a missing cookie or a short packet is an error. Option overload (52) is not followed.
pub fn parse_dhcp_packet(data: &[u8]) -> Result<DhcpPacket, DhcpError> {
    if data.len() < COOKIE_OFFSET + 4 {
        return Err(DhcpError::Packet("shorter than the 240-byte header"));
    }
    if data[COOKIE_OFFSET..COOKIE_OFFSET + 4] != MAGIC_COOKIE {
        return Err(DhcpError::Packet("no DHCP magic cookie at offset 236"));
    }
    let hlen = usize::from(data[2]).min(16);
    let mut options: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut i = COOKIE_OFFSET + 4;
    while i < data.len() {
        let code = data[i];
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = usize::from(*data.get(i + 1).ok_or(DhcpError::Packet("option length cut off"))?);
        let value = data.get(i + 2..i + 2 + len).ok_or(DhcpError::Packet("option data cut off"))?;
        match options.iter_mut().find(|(c, _)| *c == code) {
            Some((_, existing)) => existing.extend_from_slice(value),
            None => options.push((code, value.to_vec())),
        }
        i += 2 + len;
    }
    Ok(DhcpPacket {
        op: data[0],
        xid: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        your_address: Ipv4Addr::new(data[16], data[17], data[18], data[19]),
        client_hw_address: data[28..28 + hlen].to_vec(),
        options,
    })
}

/// Decode RFC 3442 classless static routes: repeated `<len> <significant dest octets> <gateway>`.
pub fn parse_rfc3442(data: &[u8]) -> Result<Vec<Route>, DhcpError> {
    let mut routes = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let prefix_len = data[i];
        if prefix_len > 32 {
            return Err(DhcpError::Packet("classless route prefix length above 32"));
        }
        let sig = usize::from(prefix_len).div_ceil(8);
        let dest = data.get(i + 1..i + 1 + sig).ok_or(DhcpError::Packet("classless route cut off"))?;
        let gw = data.get(i + 1 + sig..i + 5 + sig).ok_or(DhcpError::Packet("classless route cut off"))?;
        let mut d = [0u8; 4];
        d[..sig].copy_from_slice(dest);
        routes.push(Route {
            destination: Ipv4Addr::from(d),
            prefix_len,
            gateway: Ipv4Addr::new(gw[0], gw[1], gw[2], gw[3]),
        });
        i += 5 + sig;
    }
    Ok(routes)
}

/// The WireServer address from a dhcpcd raw lease file written at `written` (its mtime). The lease
/// counts only while `written + lease time` (option 51) is after `now`; without option 51 or with
/// an infinite lease time (`0xffffffff`) it always counts.
pub fn dhcpcd_lease_wireserver(
    data: &[u8],
    written: SystemTime,
    now: SystemTime,
) -> Result<Option<Ipv4Addr>, DhcpError> {
    let packet = parse_dhcp_packet(data)?;
    if let Some(secs) = packet.lease_time().filter(|s| *s != u32::MAX) {
        let expired = written.checked_add(Duration::from_secs(u64::from(secs))).is_some_and(|end| end <= now);
        if expired {
            return Ok(None);
        }
    }
    packet.wireserver()
}

// ---------------------------------------------------------------------------------------------
// /proc/net/route
// ---------------------------------------------------------------------------------------------

/// Whether `/proc/net/route` (its text) has a route whose destination is the known WireServer
/// address (`10813FA8`, little-endian hex). This is waagent's first discovery step: with such a
/// route the endpoint is [`KNOWN_WIRESERVER`] and no lease needs reading.
pub fn route_table_has_wireserver(proc_net_route: &str) -> bool {
    proc_net_route
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1).is_some_and(|dest| dest.eq_ignore_ascii_case("10813FA8")))
}

// ---------------------------------------------------------------------------------------------
// Scanning the host
// ---------------------------------------------------------------------------------------------

/// Lease file families and where they live: `(directory, file-name prefix, file-name suffix)`.
const NETWORKD_DIR: &str = "/run/systemd/netif/leases";
const DHCLIENT_GLOBS: &[(&str, &str, &str)] = &[
    ("/var/lib/dhcp", "dhclient", ".leases"), // Debian, Ubuntu <= 16.04
    ("/var/lib/dhclient", "dhclient", ".leases"), // RHEL 6
    ("/var/lib/dhclient", "dhclient-", ".lease"), // RHEL 7+
    ("/var/lib/NetworkManager", "dhclient-", ".lease"), // NetworkManager running dhclient
];
const DHCPCD_GLOBS: &[(&str, &str, &str)] =
    &[("/var/lib/dhcpcd", "", ".lease"), ("/var/db/dhcpcd", "", ".lease")];

/// Find the WireServer address in the host's DHCP leases, looking in this order and stopping at the
/// first family that yields one:
/// 1. systemd-networkd, `/run/systemd/netif/leases/*` (this boot's leases; the last file in name
///    order wins);
/// 2. dhclient and NetworkManager's dhclient, `/var/lib/dhcp/dhclient*.leases`,
///    `/var/lib/dhclient/dhclient*.leases`, `/var/lib/dhclient/dhclient-*.lease`,
///    `/var/lib/NetworkManager/dhclient-*.lease`: in each file the last lease not expired at
///    `now`; across files the most recently modified file with such a lease;
/// 3. dhcpcd raw leases, `/var/lib/dhcpcd/*.lease`, `/var/db/dhcpcd/*.lease`, valid until
///    mtime + lease time; the most recently modified wins.
///
/// Unreadable or malformed files are skipped with a warning. `None` means "use
/// [`KNOWN_WIRESERVER`]" (or send a DHCP request).
pub fn find_wireserver_endpoint(root: &HostRoot, now: SystemTime) -> Option<Ipv4Addr> {
    let mut networkd = list_files(&root.path(NETWORKD_DIR), "", "");
    networkd.sort_by(|a, b| a.1.cmp(&b.1));
    let from_networkd = networkd.iter().rev().find_map(|(_, path)| {
        let text = read_text(path)?;
        warn_on_error(path, networkd_wireserver(&text))
    });
    if from_networkd.is_some() {
        return from_networkd;
    }

    let mut dhclient: Vec<(SystemTime, PathBuf)> =
        DHCLIENT_GLOBS.iter().flat_map(|(d, p, s)| list_files(&root.path(d), p, s)).collect();
    dhclient.sort();
    dhclient.dedup();
    let from_dhclient = dhclient.iter().rev().find_map(|(_, path)| {
        let text = read_text(path)?;
        warn_on_error(path, dhclient_wireserver(&text, now))
    });
    if from_dhclient.is_some() {
        return from_dhclient;
    }

    let mut dhcpcd: Vec<(SystemTime, PathBuf)> =
        DHCPCD_GLOBS.iter().flat_map(|(d, p, s)| list_files(&root.path(d), p, s)).collect();
    dhcpcd.sort();
    dhcpcd.iter().rev().find_map(|(mtime, path)| {
        let data = fs::read(path).map_err(|e| log::warn!("cannot read {}: {e}", path.display())).ok()?;
        warn_on_error(path, dhcpcd_lease_wireserver(&data, *mtime, now))
    })
}

fn warn_on_error(path: &Path, result: Result<Option<Ipv4Addr>, DhcpError>) -> Option<Ipv4Addr> {
    match result {
        Ok(ip) => ip,
        Err(e) => {
            log::warn!("skipping DHCP lease {}: {e}", path.display());
            None
        }
    }
}

fn read_text(path: &Path) -> Option<String> {
    match fs::read(path) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) => {
            log::warn!("cannot read DHCP lease {}: {e}", path.display());
            None
        }
    }
}

/// Regular files in `dir` whose names start with `prefix` and end with `suffix`, with their mtimes.
fn list_files(dir: &Path, prefix: &str, suffix: &str) -> Vec<(SystemTime, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.len() >= prefix.len() + suffix.len() && name.starts_with(prefix) && name.ends_with(suffix)
        })
        .filter_map(|e| {
            let meta = fs::metadata(e.path()).ok()?;
            meta.is_file().then(|| (meta.modified().unwrap_or(UNIX_EPOCH), e.path()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn option245_forms() {
        let ws = KNOWN_WIRESERVER;
        assert_eq!(decode_option245("a8:3f:81:10"), Ok(ws));
        assert_eq!(decode_option245("A8:3F:81:10"), Ok(ws));
        assert_eq!(decode_option245("a83f8110"), Ok(ws));
        assert_eq!(decode_option245("168.63.129.16"), Ok(ws));
        assert_eq!(decode_option245(r#""\250?\201\020""#), Ok(ws));
        assert_eq!(decode_option245(r"\250?\201\020"), Ok(ws));
        assert_eq!(decode_option245("4:3:2:1"), Ok(Ipv4Addr::new(4, 3, 2, 1)));
        assert_eq!(decode_option245(r#""bL6 ""#), Ok(Ipv4Addr::new(98, 76, 54, 32)));
        assert_eq!(decode_option245(r#""a\"b\\""#), Ok(Ipv4Addr::new(97, 34, 98, 92)));
        for bad in [
            "",
            "a8:3f:81",
            "a8:3f:81:10:01",
            "a8:3f:81:1000",
            "zz:3f:81:10",
            "a83f811",
            "\"abc\"",
            "\\400abc",
            "x\\",
        ] {
            assert!(decode_option245(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn expiry_forms() {
        assert_eq!(parse_expiry("0 never"), Some(LeaseExpiry::Never));
        assert_eq!(parse_expiry("never"), Some(LeaseExpiry::Never));
        assert_eq!(parse_expiry("epoch 1434473934"), Some(LeaseExpiry::At(at(1_434_473_934))));
        assert_eq!(parse_expiry("4 2015/06/16 16:58:54"), Some(LeaseExpiry::At(at(1_434_473_934))));
        assert_eq!(parse_expiry("0 1970/01/01 00:00:00"), Some(LeaseExpiry::At(at(0))));
        assert_eq!(parse_expiry("0 2000/02/29 00:00:00"), Some(LeaseExpiry::At(at(951_782_400))));
        for bad in ["", "4 2015/13/16 16:58:54", "4 2015/06/16", "4 2015-06-16 16:58:54", "epoch x"] {
            assert_eq!(parse_expiry(bad), None, "{bad:?}");
        }
    }

    const TWO_LEASES: &str = "lease {\n  interface \"eth0\";\n  option unknown-245 a8:3f:81:01;\n  \
        option domain-name-servers 10.0.0.9;\n  expire 4 2030/01/01 00:00:00;\n}\n\
        lease {\n  interface \"eth0\";\n  option unknown-245 a8:3f:81:02;\n  expire 4 2020/01/01 00:00:00;\n}\n";

    #[test]
    fn last_unexpired_lease_wins() {
        let before_both = at(1_500_000_000); // 2017
        let between = at(1_700_000_000); // 2023
        let after_both = at(1_950_000_000); // 2031
        assert_eq!(dhclient_wireserver(TWO_LEASES, before_both), Ok(Some(Ipv4Addr::new(168, 63, 129, 2))));
        assert_eq!(dhclient_wireserver(TWO_LEASES, between), Ok(Some(Ipv4Addr::new(168, 63, 129, 1))));
        assert_eq!(dhclient_wireserver(TWO_LEASES, after_both), Ok(None));
    }

    #[test]
    fn dns_server_is_never_the_endpoint() {
        let lease = "lease {\n option domain-name-servers 168.63.129.16;\n \
                     option dhcp-server-identifier 168.63.129.16;\n expire never;\n}\n";
        assert_eq!(dhclient_wireserver(lease, at(0)), Ok(None));
        assert_eq!(networkd_wireserver("DNS=168.63.129.16\nSERVER_ADDRESS=168.63.129.16\n"), Ok(None));
    }

    #[test]
    fn malformed_dhclient_files_are_errors_with_lines() {
        let unclosed = "lease {\n option unknown-245 a8:3f:81:10;\n";
        assert_eq!(dhclient_wireserver(unclosed, at(0)), Err(DhcpError::UnclosedLease { line: 1 }));
        let bad = "lease {\n option unknown-245 a8:3f;\n}\n";
        assert!(matches!(dhclient_wireserver(bad, at(0)), Err(DhcpError::BadOption245 { line: 2, .. })));
        let bad_date = "lease {\n expire 1 2020/99/01 00:00:00;\n}\n";
        assert!(matches!(parse_dhclient_leases(bad_date), Err(DhcpError::BadExpiry { line: 2, .. })));
    }

    #[test]
    fn other_blocks_and_comments_are_skipped() {
        let text = "# comment\ndefault-duid \"\\000\\001\";\nlease6 {\n  ia-na x {\n  }\n}\n\
                    lease {\n option unknown-245 a8:3f:81:10; # trailing\n}\n";
        let leases = parse_dhclient_leases(text).unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].line, 7);
        assert_eq!(leases[0].expiry, LeaseExpiry::Unstated);
        assert_eq!(leases[0].wireserver, Some(KNOWN_WIRESERVER));
    }

    #[test]
    fn networkd_lease() {
        assert_eq!(
            networkd_wireserver("ADDRESS=10.0.0.4\nOPTION_245=a83f8110\n"),
            Ok(Some(KNOWN_WIRESERVER))
        );
        assert_eq!(networkd_wireserver("ADDRESS=10.0.0.4\n"), Ok(None));
        assert!(networkd_wireserver("OPTION_245=a83f81\n").is_err());
    }

    fn packet_with_options(opts: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 240];
        p[0] = 2;
        p[2] = 6;
        p[236..240].copy_from_slice(&MAGIC_COOKIE);
        p.extend_from_slice(opts);
        p
    }

    #[test]
    fn packet_options() {
        let p = packet_with_options(&[53, 1, 5, 0, 245, 4, 168, 63, 129, 16, 6, 4, 10, 0, 0, 1, 255, 9, 9]);
        let parsed = parse_dhcp_packet(&p).unwrap();
        assert_eq!(parsed.message_type(), Some(5));
        assert_eq!(parsed.wireserver(), Ok(Some(KNOWN_WIRESERVER)));
        assert_eq!(parsed.option(6), Some(&[10, 0, 0, 1][..]));
        let no245 = parse_dhcp_packet(&packet_with_options(&[6, 4, 168, 63, 129, 16, 255])).unwrap();
        assert_eq!(no245.wireserver(), Ok(None));
    }

    #[test]
    fn broken_packets_are_errors() {
        assert!(parse_dhcp_packet(&[0u8; 100]).is_err());
        assert!(parse_dhcp_packet(&vec![0u8; 240]).is_err()); // no cookie
        assert!(parse_dhcp_packet(&packet_with_options(&[245, 4, 168, 63])).is_err());
        assert!(parse_dhcp_packet(&packet_with_options(&[245])).is_err());
        let short = parse_dhcp_packet(&packet_with_options(&[245, 3, 1, 2, 3, 255])).unwrap();
        assert!(short.wireserver().is_err());
    }

    #[test]
    fn rfc3442_routes() {
        let routes =
            parse_rfc3442(&[0, 10, 0, 0, 1, 32, 168, 63, 129, 16, 10, 0, 0, 1, 24, 10, 1, 2, 10, 0, 0, 1])
                .unwrap();
        assert_eq!(
            routes,
            vec![
                Route {
                    destination: Ipv4Addr::UNSPECIFIED,
                    prefix_len: 0,
                    gateway: Ipv4Addr::new(10, 0, 0, 1)
                },
                Route { destination: KNOWN_WIRESERVER, prefix_len: 32, gateway: Ipv4Addr::new(10, 0, 0, 1) },
                Route {
                    destination: Ipv4Addr::new(10, 1, 2, 0),
                    prefix_len: 24,
                    gateway: Ipv4Addr::new(10, 0, 0, 1)
                },
            ]
        );
        assert!(parse_rfc3442(&[33, 1, 2, 3, 4, 5, 6, 7, 8]).is_err());
        assert!(parse_rfc3442(&[24, 10, 1]).is_err());
    }

    #[test]
    fn dhcpcd_lease_expiry_uses_mtime_and_lease_time() {
        let p = packet_with_options(&[51, 4, 0, 0, 0x0e, 0x10, 245, 4, 168, 63, 129, 16, 255]); // 3600 s
        assert_eq!(dhcpcd_lease_wireserver(&p, at(1000), at(2000)), Ok(Some(KNOWN_WIRESERVER)));
        assert_eq!(dhcpcd_lease_wireserver(&p, at(1000), at(4600)), Ok(None));
        let infinite = packet_with_options(&[51, 4, 255, 255, 255, 255, 245, 4, 168, 63, 129, 16, 255]);
        assert_eq!(
            dhcpcd_lease_wireserver(&infinite, at(0), at(u64::from(u32::MAX) * 2)),
            Ok(Some(KNOWN_WIRESERVER))
        );
    }

    #[test]
    fn dhcpcd_dump() {
        let dump =
            parse_dhcpcd_dump("ip_address='10.0.0.5'\nunknown_245='a8:3f:81:10'\n\nrouters=10.0.0.1\n")
                .unwrap();
        assert_eq!(dump.get("ip_address"), Some("10.0.0.5"));
        assert_eq!(dump.get("routers"), Some("10.0.0.1"));
        assert_eq!(dump.wireserver(), Ok(Some(KNOWN_WIRESERVER)));
        assert_eq!(dump.classless_static_routes(), Ok(Vec::new()));
        assert!(parse_dhcpcd_dump("garbage line\n").is_err());
        let odd = parse_dhcpcd_dump("classless_static_routes='0.0.0.0/0'\n").unwrap();
        assert!(odd.classless_static_routes().is_err());
    }

    #[test]
    fn route_table_check() {
        let with = "Iface\tDestination\tGateway \tFlags\nETH0\t00000000\t0100000A\t0003\neth0\t10813FA8\t0100000A\t0007\n";
        let without = "Iface\tDestination\tGateway \tFlags\neth0\t00000000\t10813FA8\t0003\n";
        assert!(route_table_has_wireserver(with));
        assert!(!route_table_has_wireserver(without));
    }

    #[test]
    fn scanning_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        let now = at(1_700_000_000);
        assert_eq!(find_wireserver_endpoint(&root, now), None);

        let nm = root.path("/var/lib/NetworkManager");
        fs::create_dir_all(&nm).unwrap();
        fs::write(nm.join("dhclient-abc-eth0.lease"), TWO_LEASES).unwrap();
        fs::write(nm.join("other.lease"), "lease {\n option unknown-245 1:1:1:1;\n}\n").unwrap();
        assert_eq!(find_wireserver_endpoint(&root, now), Some(Ipv4Addr::new(168, 63, 129, 1)));

        // A malformed newer file is skipped, not fatal.
        let dh = root.path("/var/lib/dhclient");
        fs::create_dir_all(&dh).unwrap();
        fs::write(dh.join("dhclient-eth0.lease"), "lease {\n").unwrap();
        assert_eq!(find_wireserver_endpoint(&root, now), Some(Ipv4Addr::new(168, 63, 129, 1)));

        let nd = root.path(NETWORKD_DIR);
        fs::create_dir_all(&nd).unwrap();
        fs::write(nd.join("2"), "OPTION_245=0a000009\n").unwrap();
        assert_eq!(find_wireserver_endpoint(&root, now), Some(Ipv4Addr::new(10, 0, 0, 9)));
    }

    #[test]
    fn scanning_dhcpcd() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        let d = root.path("/var/lib/dhcpcd");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("eth0.lease"), packet_with_options(&[245, 4, 10, 1, 2, 3, 255])).unwrap();
        assert_eq!(find_wireserver_endpoint(&root, SystemTime::now()), Some(Ipv4Addr::new(10, 1, 2, 3)));
    }
}
