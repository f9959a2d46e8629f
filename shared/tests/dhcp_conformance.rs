//! DHCP conformance: every DHCP row of the reference MANIFEST, and the project's own lease fixtures.
//!
//! Each reference file has an entry in `EXPECTED` saying what its `expected_behavior` column states;
//! a MANIFEST row without an entry fails the test, so new fixtures cannot be skipped silently.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns read fixtures; a failure is a test failure

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wala::base::root::HostRoot;
use wala::platform::dhcp::{self, DhcpError, Route};

/// 2025-01-01T00:00:00Z: after the fixtures' past expiry dates, before their future ones.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_735_689_600)
}

const KINDS: &[&str] = &[
    "dhcp-lease-dhclient",
    "dhcp-lease-dhcpcd-raw",
    "dhcp-lease-networkd",
    "dhcp-option245-vectors",
    "dhcpcd-dump",
    "dhcp-packet",
];

/// What each reference file must yield (from the MANIFEST's expected_behavior column).
enum Expect {
    /// The WireServer address read from the file.
    Endpoint(Ipv4Addr),
    /// The dhcpcd dump's classless static routes as `(destination, prefix, gateway)`.
    Routes(&'static [(&'static str, u8, &'static str)]),
    /// Every row of a vector file decodes to its second column.
    Vectors,
}

const EXPECTED: &[(&str, Expect)] = &[
    ("dhcp/dhclient.leases", Expect::Endpoint(Ipv4Addr::new(168, 63, 129, 16))),
    ("dhcp/dhcp.leases.multi", Expect::Endpoint(Ipv4Addr::new(168, 63, 129, 2))),
    ("dhcp/cloud-init-dhcpcd-eth0.lease", Expect::Endpoint(Ipv4Addr::new(168, 63, 129, 16))),
    ("dhcp/systemd-netif-leases-2", Expect::Endpoint(Ipv4Addr::new(168, 63, 129, 16))),
    ("dhcp/cloud-init-option245-hex-vectors.tsv", Expect::Vectors),
    (
        "dhcp/cloud-init-dhcpcd-dump-azure.txt",
        Expect::Routes(&[
            ("0.0.0.0", 0, "10.0.0.1"),
            ("168.63.129.16", 32, "10.0.0.1"),
            ("169.254.169.254", 32, "10.0.0.1"),
        ]),
    ),
    ("dhcp/dhcp-offer-packet.bin", Expect::Endpoint(Ipv4Addr::new(10, 62, 144, 140))),
];

/// Read a fixture for its kind: the endpoint, or an error.
fn endpoint_of(kind: &str, path: &Path) -> Result<Option<Ipv4Addr>, DhcpError> {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    match kind {
        "dhcp-lease-dhclient" => dhcp::dhclient_wireserver(&text, now()),
        "dhcp-lease-networkd" => dhcp::networkd_wireserver(&text),
        "dhcp-lease-dhcpcd-raw" => dhcp::dhcpcd_lease_wireserver(&bytes, now(), now()),
        "dhcp-packet" => dhcp::parse_dhcp_packet(&bytes)?.wireserver(),
        other => panic!("no endpoint reader for kind {other}"),
    }
}

#[test]
fn reference_manifest_rows() {
    let Some(fixtures) = common::reference_fixtures("dhcp conformance") else { return };
    let mut seen = Vec::new();
    for kind in KINDS {
        let rows = common::manifest_rows(&fixtures, kind);
        assert!(!rows.is_empty(), "no MANIFEST rows of kind {kind}");
        for row in rows {
            let path = fixtures.join(&row.path);
            let expect = EXPECTED.iter().find(|(p, _)| *p == row.path).map(|(_, e)| e).unwrap_or_else(|| {
                panic!("{}: no expectation in EXPECTED; add one from: {}", row.path, row.expected)
            });
            assert!(row.valid, "{}: malformed DHCP rows need a rejection check here", row.path);
            match expect {
                Expect::Endpoint(ip) => {
                    assert_eq!(endpoint_of(kind, &path), Ok(Some(*ip)), "{}", row.path);
                }
                Expect::Vectors => {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let mut n = 0;
                    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
                        let cols: Vec<&str> = line.split('\t').collect();
                        let want: Ipv4Addr = cols[1].parse().unwrap();
                        assert_eq!(dhcp::decode_option245(cols[0]), Ok(want), "{}: {line}", row.path);
                        n += 1;
                    }
                    assert!(n > 0, "{}: no vectors", row.path);
                }
                Expect::Routes(want) => {
                    let dump = dhcp::parse_dhcpcd_dump(&std::fs::read_to_string(&path).unwrap()).unwrap();
                    let want: Vec<Route> = want
                        .iter()
                        .map(|(d, len, gw)| Route {
                            destination: d.parse().unwrap(),
                            prefix_len: *len,
                            gateway: gw.parse().unwrap(),
                        })
                        .collect();
                    assert_eq!(dump.classless_static_routes(), Ok(want), "{}", row.path);
                    // The dump carries no option 245; it must not be made up from the DNS server.
                    assert_eq!(dump.wireserver(), Ok(None));
                }
            }
            seen.push(row.path);
        }
    }
    for (path, _) in EXPECTED {
        assert!(seen.iter().any(|s| s == path), "{path}: in EXPECTED but not in the MANIFEST");
    }
}

#[test]
fn reference_leases_details() {
    let Some(fixtures) = common::reference_fixtures("dhcp lease details") else { return };
    // dhclient.leases: the 2015 lease has expired; the other two are valid ("never" and 2152).
    let text = std::fs::read_to_string(fixtures.join("dhcp/dhclient.leases")).unwrap();
    let leases = dhcp::parse_dhclient_leases(&text).unwrap();
    let valid: Vec<bool> = leases.iter().map(|l| l.expiry.is_valid_at(now())).collect();
    assert_eq!(valid, [true, false, true]);
    // dhcp.leases.multi: after 2152 everything has expired.
    let multi = std::fs::read_to_string(fixtures.join("dhcp/dhcp.leases.multi")).unwrap();
    let far_future = UNIX_EPOCH + Duration::from_secs(6_000_000_000);
    assert_eq!(dhcp::dhclient_wireserver(&multi, far_future), Ok(None));
    // The Azure OFFER: message type 2, and option 6 (DNS) is not where the endpoint comes from.
    let offer = dhcp::parse_dhcp_packet(&std::fs::read(fixtures.join("dhcp/dhcp-offer-packet.bin")).unwrap())
        .unwrap();
    assert_eq!(offer.message_type(), Some(2));
    assert_eq!(offer.op, 2);
    // The dhcpcd raw lease carries classless routes including the WireServer /32.
    let raw =
        dhcp::parse_dhcp_packet(&std::fs::read(fixtures.join("dhcp/cloud-init-dhcpcd-eth0.lease")).unwrap())
            .unwrap();
    let routes = raw.classless_static_routes().unwrap();
    assert!(
        routes.iter().any(|r| r.destination == dhcp::KNOWN_WIRESERVER && r.prefix_len == 32),
        "{routes:?}"
    );
}

#[test]
fn scanning_a_root_built_from_reference_leases() {
    let Some(fixtures) = common::reference_fixtures("dhcp root scan") else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = HostRoot::new(dir.path());
    let leases = root.path("/var/lib/dhcp");
    std::fs::create_dir_all(&leases).unwrap();
    std::fs::copy(fixtures.join("dhcp/dhcp.leases.multi"), leases.join("dhclient.eth0.leases")).unwrap();
    assert_eq!(dhcp::find_wireserver_endpoint(&root, now()), Some(Ipv4Addr::new(168, 63, 129, 2)));
    let netif = root.path("/run/systemd/netif/leases");
    std::fs::create_dir_all(&netif).unwrap();
    std::fs::copy(fixtures.join("dhcp/systemd-netif-leases-2"), netif.join("2")).unwrap();
    assert_eq!(dhcp::find_wireserver_endpoint(&root, now()), Some(dhcp::KNOWN_WIRESERVER));
}

/// The project's own fixtures (`tests/fixtures/<kind>/`), present in every clone.
#[test]
fn project_fixtures() {
    let dir = common::project_fixtures();
    type Case = (&'static str, &'static str, Result<Option<Ipv4Addr>, ()>);
    let cases: &[Case] = &[
        ("dhcp-lease-dhclient", "octal-string.leases", Ok(Some(Ipv4Addr::new(10, 1, 34, 35)))),
        ("dhcp-lease-dhclient", "no-option245.leases", Ok(None)),
        ("dhcp-lease-dhclient", "malformed-245.leases", Err(())),
        ("dhcp-lease-networkd", "colon-hex", Ok(Some(Ipv4Addr::new(10, 2, 0, 254)))),
        ("dhcp-lease-networkd", "dns-only", Ok(None)),
        ("dhcp-packet", "ack-own.bin", Ok(Some(Ipv4Addr::new(10, 20, 30, 40)))),
        ("dhcp-packet", "truncated-option.bin", Err(())),
    ];
    for (kind, file, want) in cases {
        let got = endpoint_of(kind, &dir.join(kind).join(file));
        assert_eq!(got.map_err(|_| ()), *want, "{kind}/{file}");
    }
    let err = endpoint_of("dhcp-lease-dhclient", &dir.join("dhcp-lease-dhclient/malformed-245.leases"))
        .unwrap_err();
    assert!(matches!(err, DhcpError::BadOption245 { line: 4, .. }), "{err}");
    let ack = dhcp::parse_dhcp_packet(&std::fs::read(dir.join("dhcp-packet/ack-own.bin")).unwrap()).unwrap();
    assert_eq!(ack.lease_time(), Some(86_400));
    assert_eq!(ack.client_hw_address, [0x00, 0x0d, 0x3a, 0x01, 0x02, 0x03]);
    assert_eq!(
        ack.classless_static_routes().unwrap(),
        [Route {
            destination: Ipv4Addr::new(10, 20, 0, 0),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 20, 0, 1)
        }]
    );
    // One day after it was written, the dhcpcd lease no longer counts.
    let bytes = std::fs::read(dir.join("dhcp-packet/ack-own.bin")).unwrap();
    let later = now() + Duration::from_secs(86_400);
    assert_eq!(dhcp::dhcpcd_lease_wireserver(&bytes, now(), later), Ok(None));
}

/// Every prefix of every lease fixture, and copies with single bytes changed, give `Ok` or `Err`
/// from every parser: never a panic.
#[test]
fn damaged_leases_never_panic() {
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for entry in std::fs::read_dir(common::project_fixtures()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("dhcp") {
            for file in std::fs::read_dir(entry.path()).unwrap().flatten() {
                inputs.push(std::fs::read(file.path()).unwrap());
            }
        }
    }
    if let Some(fixtures) = common::reference_fixtures("dhcp damage") {
        for kind in KINDS {
            for row in common::manifest_rows(&fixtures, kind) {
                inputs.push(std::fs::read(fixtures.join(&row.path)).unwrap());
            }
        }
    }
    for input in &inputs {
        let mut variants: Vec<Vec<u8>> = (0..=input.len()).map(|n| input[..n].to_vec()).collect();
        for i in (0..input.len()).step_by(3) {
            for b in [0u8, 1, 4, 32, b'\\', b'"', b'{', b'}', b':', 255] {
                let mut v = input.clone();
                v[i] = b;
                variants.push(v);
            }
        }
        for v in &variants {
            let text = String::from_utf8_lossy(v);
            let _ = dhcp::dhclient_wireserver(&text, now());
            let _ = dhcp::networkd_wireserver(&text);
            let _ = dhcp::parse_dhcpcd_dump(&text).map(|d| (d.classless_static_routes(), d.wireserver()));
            let _ = dhcp::decode_option245(&text);
            let _ = dhcp::route_table_has_wireserver(&text);
            if let Ok(p) = dhcp::parse_dhcp_packet(v) {
                let _ = (p.wireserver(), p.classless_static_routes(), p.lease_time(), p.message_type());
            }
            let _ = dhcp::parse_rfc3442(v);
        }
    }
}
