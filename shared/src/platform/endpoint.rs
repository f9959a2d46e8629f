//! Where the WireServer, the HostGAPlugin and IMDS are (wire.md §1), and making sure the host has a
//! route to the WireServer.
//!
//! WireServer, in order:
//! 1. `Wala.WireServer` (a test or lab override);
//! 2. `Protocol.EndpointDiscovery=static`: `<Lib.Dir>/WireServerEndpoint` if present and valid,
//!    else `168.63.129.16` (waagent's non-DHCP path);
//! 3. `dhcp` (default): a route to `168.63.129.16` in `/proc/net/route` means that address; else
//!    option 245 from the DHCP lease files ([`dhcp::find_wireserver_endpoint`]); else
//!    `<Lib.Dir>/WireServerEndpoint` (what an earlier detection found); else `168.63.129.16`.
//!    No raw DHCP request is sent here.
//!
//! HostGAPlugin: `Wala.HostGAPlugin`, else the WireServer host on port 32526. IMDS: `Wala.Imds`,
//! else `169.254.169.254:80`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::base::cmd::{Cmd, Runner};
use crate::base::root::HostRoot;
use crate::documents::conf::{Config, EndpointDiscovery, HostPort};
use crate::platform::dhcp::{self, KNOWN_WIRESERVER};

/// The HostGAPlugin's port.
pub const HOSTGAPLUGIN_PORT: u16 = 32526;
/// IMDS's address.
pub const IMDS_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// How the WireServer address was found (for the log and `ProtocolEndpoint` telemetry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Override,
    RouteTable,
    DhcpLease,
    EndpointFile,
    WellKnown,
}

/// A `host:port` to talk plain HTTP to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self { host: host.into(), port }
    }

    fn from_override(hp: &HostPort, default_port: u16) -> Self {
        Self { host: hp.host.clone(), port: hp.port.unwrap_or(default_port) }
    }

    /// `http://host:port` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.url("")
    }

    /// `http://host:port` followed by `path` (which starts with `/`). Built by hand: it is made
    /// for every request, and `format!` took ten times as long.
    pub fn url(&self, path: &str) -> String {
        let mut port = [0u8; 5];
        let mut at = port.len();
        let mut n = self.port;
        loop {
            at -= 1;
            port[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let port = std::str::from_utf8(&port[at..]).unwrap_or_default();
        let mut url = String::with_capacity(8 + self.host.len() + port.len() + path.len());
        for part in ["http://", &self.host, ":", port, path] {
            url.push_str(part);
        }
        url
    }

    /// The host as an IPv4 address, when it is one.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.host.parse().ok()
    }
}

/// The three platform endpoints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoints {
    pub wireserver: Endpoint,
    pub hostgaplugin: Endpoint,
    pub imds: Endpoint,
    /// How the WireServer was found.
    pub source: Source,
}

impl Endpoints {
    /// All three on explicit addresses (tests, the fabric).
    pub fn explicit(wireserver: Endpoint, hostgaplugin: Endpoint, imds: Endpoint) -> Self {
        Self { wireserver, hostgaplugin, imds, source: Source::Override }
    }
}

/// Resolve the endpoints as the module docs say. `now` decides which DHCP leases are expired.
pub fn resolve(config: &Config, root: &HostRoot, now: SystemTime) -> Endpoints {
    let (wireserver, source) = resolve_wireserver(config, root, now);
    log::info!("WireServer endpoint {}:{} ({source:?})", wireserver.host, wireserver.port);
    let hostgaplugin = match &config.wala_hostgaplugin {
        Some(hp) => Endpoint::from_override(hp, HOSTGAPLUGIN_PORT),
        None => Endpoint::new(wireserver.host.clone(), HOSTGAPLUGIN_PORT),
    };
    let imds = match &config.wala_imds {
        Some(hp) => Endpoint::from_override(hp, 80),
        None => Endpoint::new(IMDS_ADDRESS.to_string(), 80),
    };
    Endpoints { wireserver, hostgaplugin, imds, source }
}

fn resolve_wireserver(config: &Config, root: &HostRoot, now: SystemTime) -> (Endpoint, Source) {
    if let Some(hp) = &config.wala_wireserver {
        return (Endpoint::from_override(hp, 80), Source::Override);
    }
    let known = (Endpoint::new(KNOWN_WIRESERVER.to_string(), 80), Source::WellKnown);
    let from_file = || {
        read_endpoint_file(root, config).map(|ip| (Endpoint::new(ip.to_string(), 80), Source::EndpointFile))
    };
    if config.endpoint_discovery == EndpointDiscovery::Static {
        return from_file().unwrap_or(known);
    }
    let routes = std::fs::read_to_string(root.path("/proc/net/route")).unwrap_or_default();
    if dhcp::route_table_has_wireserver(&routes) {
        return (Endpoint::new(KNOWN_WIRESERVER.to_string(), 80), Source::RouteTable);
    }
    if let Some(ip) = dhcp::find_wireserver_endpoint(root, now) {
        return (Endpoint::new(ip.to_string(), 80), Source::DhcpLease);
    }
    from_file().unwrap_or(known)
}

/// `<Lib.Dir>/WireServerEndpoint` on the host.
pub fn endpoint_file(root: &HostRoot, config: &Config) -> PathBuf {
    root.path(config.lib_dir.as_path()).join("WireServerEndpoint")
}

fn read_endpoint_file(root: &HostRoot, config: &Config) -> Option<Ipv4Addr> {
    let path = endpoint_file(root, config);
    let text = std::fs::read_to_string(&path).ok()?;
    match text.trim().parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            log::warn!(
                "{}: not an IPv4 address: {:?}",
                path.display(),
                text.trim().chars().take(40).collect::<String>()
            );
            None
        }
    }
}

/// Remember the WireServer address in `<Lib.Dir>/WireServerEndpoint` (as waagent does after a
/// successful detection).
pub fn save_endpoint(
    root: &HostRoot,
    config: &Config,
    endpoint: &Endpoint,
) -> Result<(), crate::base::files::FileError> {
    let path = endpoint_file(root, config);
    if let Some(dir) = path.parent() {
        crate::base::files::ensure_dir(dir, 0o700)?;
    }
    crate::base::files::write_atomic(
        &path,
        endpoint.host.as_bytes(),
        crate::base::files::WriteOptions::mode(0o644),
    )
}

/// Why a route could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// `/proc/net/route` has no default route to send the endpoint's traffic through.
    #[error("no route to {0} and no default gateway in /proc/net/route to add one through")]
    NoGateway(Ipv4Addr),
    /// `ip route add` failed.
    #[error("adding a route to {endpoint}: {source}")]
    Command {
        endpoint: Ipv4Addr,
        #[source]
        source: crate::base::cmd::CmdError,
    },
}

/// What [`ensure_route`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOutcome {
    /// Loopback or link-local (IMDS): nothing to do.
    NotNeeded,
    /// A specific route already covers the endpoint.
    Present,
    /// A host route was added through this gateway and interface.
    Added { gateway: Ipv4Addr, interface: String },
}

/// One row of `/proc/net/route`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteRow {
    iface: String,
    destination: Ipv4Addr,
    gateway: Ipv4Addr,
    flags: u32,
    metric: u32,
    mask: Ipv4Addr,
}

/// `RTF_GATEWAY`.
const RTF_GATEWAY: u32 = 0x2;

fn hex_le_ipv4(s: &str) -> Option<Ipv4Addr> {
    let v = u32::from_str_radix(s, 16).ok()?;
    Some(Ipv4Addr::from(v.swap_bytes()))
}

fn parse_routes(text: &str) -> Vec<RouteRow> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            Some(RouteRow {
                iface: f[0].to_string(),
                destination: hex_le_ipv4(f[1])?,
                gateway: hex_le_ipv4(f[2])?,
                flags: u32::from_str_radix(f[3], 16).ok()?,
                metric: f[6].parse().ok()?,
                mask: hex_le_ipv4(f[7])?,
            })
        })
        .collect()
}

/// Make sure the host has a route to `endpoint` other than the default route, as waagent's DHCP
/// handler does for the WireServer: when `/proc/net/route` has none, add
/// `ip route add <endpoint>/32 via <default gateway> dev <its interface>` through `runner`.
pub fn ensure_route(
    root: &HostRoot,
    runner: &dyn Runner,
    endpoint: Ipv4Addr,
) -> Result<RouteOutcome, RouteError> {
    if endpoint.is_loopback() || endpoint.is_link_local() || endpoint.is_unspecified() {
        return Ok(RouteOutcome::NotNeeded);
    }
    let text = std::fs::read_to_string(root.path("/proc/net/route")).unwrap_or_default();
    let rows = parse_routes(&text);
    let covered = rows.iter().any(|r| {
        let mask = u32::from(r.mask);
        mask != 0 && u32::from(endpoint) & mask == u32::from(r.destination) & mask
    });
    if covered {
        return Ok(RouteOutcome::Present);
    }
    let gateway = rows
        .iter()
        .filter(|r| u32::from(r.mask) == 0 && u32::from(r.destination) == 0 && r.flags & RTF_GATEWAY != 0)
        .min_by_key(|r| r.metric)
        .ok_or(RouteError::NoGateway(endpoint))?;
    let cmd = Cmd::new("ip").args([
        "route",
        "add",
        &format!("{endpoint}/32"),
        "via",
        &gateway.gateway.to_string(),
        "dev",
        &gateway.iface,
    ]);
    runner.run(&cmd).map_err(|source| RouteError::Command { endpoint, source })?;
    log::info!("added a route to {endpoint} via {} dev {}", gateway.gateway, gateway.iface);
    Ok(RouteOutcome::Added { gateway: gateway.gateway, interface: gateway.iface.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::FakeRunner;

    #[test]
    fn urls_name_the_host_the_port_and_the_path() {
        for port in [0, 7, 80, 100, 9999, 32526, 65535] {
            let e = Endpoint::new("168.63.129.16", port);
            assert_eq!(
                e.url("/machine/?comp=goalstate"),
                format!("http://168.63.129.16:{port}/machine/?comp=goalstate")
            );
            assert_eq!(e.base_url(), format!("http://168.63.129.16:{port}"));
        }
        assert_eq!(Endpoint::new("localhost", 8080).url("/vmSettings"), "http://localhost:8080/vmSettings");
    }

    const HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    fn root_with(files: &[(&str, &str)]) -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let root = HostRoot::new(dir.path());
        (dir, root)
    }

    fn config(text: &str) -> Config {
        crate::documents::conf::parse(text, std::path::Path::new("waagent.conf")).config
    }

    #[test]
    fn override_wins_and_derives_hgap_on_its_host() {
        let (_d, root) = root_with(&[]);
        let e = resolve(&config("Wala.WireServer=127.0.0.1:8080\n"), &root, SystemTime::now());
        assert_eq!(e.wireserver, Endpoint::new("127.0.0.1", 8080));
        assert_eq!(e.hostgaplugin, Endpoint::new("127.0.0.1", HOSTGAPLUGIN_PORT));
        assert_eq!(e.imds, Endpoint::new("169.254.169.254", 80));
        assert_eq!(e.source, Source::Override);
        let e = resolve(
            &config("Wala.WireServer=127.0.0.1\nWala.HostGAPlugin=127.0.0.2:9\nWala.Imds=127.0.0.3\n"),
            &root,
            SystemTime::now(),
        );
        assert_eq!(e.wireserver.port, 80);
        assert_eq!(e.hostgaplugin, Endpoint::new("127.0.0.2", 9));
        assert_eq!(e.imds, Endpoint::new("127.0.0.3", 80));
    }

    #[test]
    fn static_discovery_reads_the_endpoint_file_or_falls_back() {
        let (_d, root) = root_with(&[("/var/lib/waagent/WireServerEndpoint", "10.1.2.3\n")]);
        let e = resolve(&config("Protocol.EndpointDiscovery=static\n"), &root, SystemTime::now());
        assert_eq!((e.wireserver.host.as_str(), e.source), ("10.1.2.3", Source::EndpointFile));
        let (_d, root) = root_with(&[("/var/lib/waagent/WireServerEndpoint", "garbage")]);
        let e = resolve(&config("Protocol.EndpointDiscovery=static\n"), &root, SystemTime::now());
        assert_eq!((e.wireserver.host.as_str(), e.source), ("168.63.129.16", Source::WellKnown));
    }

    #[test]
    fn dhcp_discovery_order() {
        let route = format!("{HEADER}eth0\t10813FA8\t0100000A\t0007\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n");
        let lease = "OPTION_245=0A000005\n";
        let (_d, root) = root_with(&[
            ("/proc/net/route", &route),
            ("/run/systemd/netif/leases/2", lease),
            ("/var/lib/waagent/WireServerEndpoint", "10.9.9.9"),
        ]);
        assert_eq!(resolve(&Config::default(), &root, SystemTime::now()).source, Source::RouteTable);
        let (_d, root) = root_with(&[
            ("/run/systemd/netif/leases/2", lease),
            ("/var/lib/waagent/WireServerEndpoint", "10.9.9.9"),
        ]);
        let e = resolve(&Config::default(), &root, SystemTime::now());
        assert_eq!((e.wireserver.host.as_str(), e.source), ("10.0.0.5", Source::DhcpLease));
        assert_eq!(e.hostgaplugin, Endpoint::new("10.0.0.5", HOSTGAPLUGIN_PORT));
        let (_d, root) = root_with(&[("/var/lib/waagent/WireServerEndpoint", "10.9.9.9")]);
        assert_eq!(resolve(&Config::default(), &root, SystemTime::now()).source, Source::EndpointFile);
        let (_d, root) = root_with(&[]);
        assert_eq!(resolve(&Config::default(), &root, SystemTime::now()).source, Source::WellKnown);
    }

    #[test]
    fn save_then_static_reads_back() {
        let (_d, root) = root_with(&[]);
        let c = config("Protocol.EndpointDiscovery=static\n");
        save_endpoint(&root, &c, &Endpoint::new("10.4.4.4", 80)).unwrap();
        assert_eq!(resolve(&c, &root, SystemTime::now()).wireserver.host, "10.4.4.4");
    }

    #[test]
    fn route_added_via_lowest_metric_default_gateway() {
        let table = format!(
            "{HEADER}eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
             eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        );
        let (_d, root) = root_with(&[("/proc/net/route", &table)]);
        let runner = FakeRunner::new();
        let out = ensure_route(&root, &runner, KNOWN_WIRESERVER).unwrap();
        assert_eq!(
            out,
            RouteOutcome::Added { gateway: Ipv4Addr::new(10, 0, 0, 1), interface: "eth0".into() }
        );
        assert_eq!(runner.command_lines(), ["ip route add 168.63.129.16/32 via 10.0.0.1 dev eth0"]);
        // The subnet route covers 10.0.0.7: nothing to add.
        assert_eq!(ensure_route(&root, &runner, Ipv4Addr::new(10, 0, 0, 7)).unwrap(), RouteOutcome::Present);
        assert_eq!(runner.calls().len(), 1);
    }

    #[test]
    fn route_not_needed_present_or_impossible() {
        let runner = FakeRunner::new();
        let (_d, root) = root_with(&[]);
        assert_eq!(ensure_route(&root, &runner, Ipv4Addr::LOCALHOST).unwrap(), RouteOutcome::NotNeeded);
        assert_eq!(ensure_route(&root, &runner, IMDS_ADDRESS).unwrap(), RouteOutcome::NotNeeded);
        assert!(matches!(ensure_route(&root, &runner, KNOWN_WIRESERVER), Err(RouteError::NoGateway(_))));
        let table = format!("{HEADER}eth0\t10813FA8\t0100000A\t0007\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n");
        let (_d, root) = root_with(&[("/proc/net/route", &table)]);
        assert_eq!(ensure_route(&root, &runner, KNOWN_WIRESERVER).unwrap(), RouteOutcome::Present);
        assert!(runner.calls().is_empty());
    }
}
