//! Benchmark: time and heap allocations of one full goal-state fetch + parse against the fabric
//! simulator on loopback (goal state, HostingEnvironmentConfig, SharedConfig, ExtensionsConfig,
//! all parsed; target under 2 ms), and of parsing each kind of document wala reads (the project's
//! own fixtures). Allocations are counted on the measuring thread only, so the simulator's own
//! (in-process) work is not included. `cargo bench -p wala --bench wire`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator; the counters are plain thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        let _ = BYTES.try_with(|c| c.set(c.get() + layout.size() as u64));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counters() -> (u64, u64) {
    (ALLOCS.with(Cell::get), BYTES.with(Cell::get))
}

/// Median time, and allocations and bytes per run, of `f` over `runs` runs.
fn measure(runs: usize, mut f: impl FnMut()) -> (Duration, u64, u64) {
    f(); // warm up
    let mut times = Vec::with_capacity(runs);
    let (a0, b0) = counters();
    for _ in 0..runs {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    let (a1, b1) = counters();
    times.sort();
    (times[runs / 2], (a1 - a0) / runs as u64, (b1 - b0) / runs as u64)
}

fn row(name: &str, (t, allocs, bytes): (Duration, u64, u64)) {
    println!("{name:<44} {:>10.1} µs {allocs:>8} {:>10}", t.as_secs_f64() * 1e6, bytes);
}

fn fixture(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn main() {
    let fabric = wala_fabric::Fabric::start_builtin().expect("fabric");
    let ep = |a: std::net::SocketAddr| wala::platform::endpoint::Endpoint::new(a.ip().to_string(), a.port());
    let endpoints = wala::platform::endpoint::Endpoints::explicit(
        ep(fabric.wire_addr()),
        ep(fabric.hgap_addr()),
        ep(fabric.imds_addr()),
    );
    let lib = tempfile::tempdir().expect("tempdir");
    let client = wala::platform::wireserver::WireClient::new(endpoints, lib.path());
    println!("{:<44} {:>13} {:>8} {:>10}", "median of runs", "time", "allocs", "bytes");
    row(
        "goal state fetch + parse (loopback)",
        measure(200, || {
            client.goal_state().expect("goal state");
        }),
    );
    row(
        "full goal state (4 documents, all parsed)",
        measure(200, || {
            let gs = client.goal_state().expect("goal state").goal_state;
            client.hosting_env(&gs).expect("hosting env");
            client.shared_config(&gs).expect("shared config");
            let ext = client.extensions_config_text(&gs).expect("ext").unwrap_or_default();
            wala::documents::extensions::config::parse_extensions_config(&ext, Some(gs.incarnation))
                .expect("parse");
        }),
    );

    let ovf = fixture("ovf/with-keys.xml");
    row("parse ovf-env.xml", measure(2000, || drop(wala::documents::ovf::parse(&ovf))));
    let conf = fixture("conf/waagent.conf");
    row(
        "parse waagent.conf",
        measure(2000, || drop(wala::documents::conf::parse(&conf, std::path::Path::new("c")))),
    );
    let ext = fixture("ext/extensions_config.xml");
    row(
        "parse ExtensionsConfig",
        measure(2000, || drop(wala::documents::extensions::config::parse_extensions_config(&ext, Some(1)))),
    );
    let vms = fixture("ext/vm_settings.json");
    row(
        "parse vmSettings",
        measure(2000, || drop(wala::documents::extensions::vm_settings::parse_vm_settings(&vms, "etag"))),
    );
    let hm = fixture("ext/handler_manifest.json");
    row(
        "parse HandlerManifest.json",
        measure(2000, || drop(wala::documents::extensions::handler_manifest::parse_handler_manifest(&hm))),
    );
    let st = fixture("ext/status.json");
    row(
        "parse extension status",
        measure(2000, || drop(wala::documents::extensions::status::parse_status_file(st.as_bytes()))),
    );
    let lease = fixture("dhcp-lease-dhclient/octal-string.leases");
    row(
        "parse dhclient lease",
        measure(2000, || {
            drop(wala::platform::dhcp::dhclient_wireserver(&lease, std::time::SystemTime::now()))
        }),
    );
    let imds = fixture("imds-instance/dpa-yes.json");
    row("parse IMDS instance", measure(2000, || drop(wala::documents::imds::parse_instance(&imds))));
}
