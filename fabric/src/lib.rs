//! wala-fabric: a fake Azure fabric for tests. Three HTTP/1.1 listeners on loopback play the
//! WireServer, the HostGAPlugin and IMDS, serving a [`Scenario`], recording every request and
//! injecting scripted [`Fault`]s.
//!
//! ```no_run
//! let fabric = wala_fabric::Fabric::start_builtin().unwrap();
//! println!("wireserver at {}", fabric.wire_addr());
//! ```
//!
//! Control endpoints on the WireServer listener (not recorded), for shell scripts and VM tests:
//! `GET|DELETE /__fabric/requests[?listener=wireserver]`, `GET|POST|DELETE /__fabric/faults`
//! (POST body: one fault or an array, see [`faults`]), `GET|POST /__fabric/incarnation` (POST with an
//! empty body bumps it, with a number sets it), `GET /__fabric/health` (received Health reports),
//! `GET /__fabric/blob[?path=/...]` (a stored status blob), `PUT|DELETE /__fabric/vmsettings`
//! (replace or remove the vmSettings document), `PUT /__fabric/extensionsconfig` (replace the
//! ExtensionsConfig document; bump the incarnation for the agent to fetch it), `PUT|DELETE
//! /__fabric/imds` (replace the IMDS instance document, or make IMDS answer 404), `GET
//! /__fabric/certificates`, `GET|PUT|DELETE /__fabric/reprovisiondata` (the `ovf-env.xml` IMDS
//! serves at `/metadata/reprovisiondata` once a user took a pre-provisioned pool VM over; PUT also
//! starts a new goal state, incarnation + 1), `GET|PUT|DELETE /__fabric/remoteaccess` (the
//! RemoteAccess users, see [`remote_access`]; bump the incarnation for the agent to fetch them),
//! `GET|DELETE /__fabric/traffic` (per listener: connections, requests, bytes each way; [`Traffic`]),
//! `POST /__fabric/protect` (the body, an extension's protected settings, encrypted to the first
//! test certificate as the platform encrypts them: [`certs::protect`]; the answer is the
//! `protectedSettings` value for a document the test then PUTs).

pub mod blob;
pub mod certs;
pub mod faults;
pub mod health;
pub mod http;
pub mod record;
pub mod remote_access;
mod routes;
pub mod scenario;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

pub use blob::{Blob, BlobType};
pub use certs::TestCert;
pub use faults::{Fault, FaultAction};
pub use health::HealthReport;
pub use record::RecordedRequest;
pub use remote_access::JitUser;
pub use scenario::{ArtifactFile, Scenario, ScenarioError};

/// Which of the three endpoints a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Listener {
    /// The WireServer (168.63.129.16:80 on Azure).
    Wireserver,
    /// The HostGAPlugin (168.63.129.16:32526 on Azure).
    Hostgaplugin,
    /// IMDS (169.254.169.254:80 on Azure).
    Imds,
}

impl Listener {
    /// The lower-case name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Wireserver => "wireserver",
            Listener::Hostgaplugin => "hostgaplugin",
            Listener::Imds => "imds",
        }
    }
}

/// What one listener carried since the start (or the last [`Fabric::clear_traffic`]): the
/// connections that brought a request, the requests, and the bytes of the requests (head and body)
/// and of the answers. Control requests (`/__fabric/`) are left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Connections that carried at least one request.
    pub connections: u64,
    /// Requests answered or refused by a fault.
    pub requests: u64,
    /// Bytes received: request heads and bodies.
    pub bytes_in: u64,
    /// Bytes sent: response heads and bodies.
    pub bytes_out: u64,
}

/// Why the fabric could not start.
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    /// A listener could not be bound.
    #[error("cannot listen for the {listener} on {addr}: {source}")]
    Bind {
        /// Which listener.
        listener: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
    /// The scenario could not be loaded.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The record file could not be created.
    #[error(transparent)]
    Record(#[from] record::RecordFileError),
    /// Generating the test certificates failed.
    #[error("generating test certificates: {0}")]
    Certs(#[from] openssl::error::ErrorStack),
    /// A listener thread could not be started.
    #[error("cannot start a listener thread: {0}")]
    Thread(io::Error),
}

/// How to start the fabric.
#[derive(Debug, Clone)]
pub struct FabricConfig {
    /// The documents to serve.
    pub scenario: Scenario,
    /// Address to bind; loopback by default.
    pub bind: IpAddr,
    /// WireServer port (0: ephemeral).
    pub wire_port: u16,
    /// HostGAPlugin port (0: ephemeral).
    pub hgap_port: u16,
    /// IMDS port (0: ephemeral).
    pub imds_port: u16,
    /// Also write every request as a JSON line here.
    pub record_file: Option<PathBuf>,
    /// Faults active from the start.
    pub faults: Vec<Fault>,
    /// Base URLs (WireServer, HostGAPlugin, IMDS) to put in served documents instead of the bound
    /// addresses: for a VM that reaches the fabric through relays at the platform's own addresses.
    pub advertise: Option<[String; 3]>,
    /// An IMDS instance document to serve instead of the scenario's (a VM's own `osProfile` and
    /// `publicKeys`, say).
    pub imds_instance: Option<String>,
    /// How long an idle keep-alive connection is kept open before the fabric closes it; zero: every
    /// answer carries `Connection: close` (a server without keep-alive). What the platform's own
    /// endpoints do is not known (waagent asks for `Connection: close` on every request), so tests
    /// run clients against each behaviour: see `docs/daemon.md`.
    pub keep_alive_idle: std::time::Duration,
}

/// [`FabricConfig::keep_alive_idle`] unless set: 60 s.
pub const DEFAULT_KEEP_ALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The platform's own base URLs, for [`FabricConfig::advertise`].
pub fn platform_addresses() -> [String; 3] {
    [
        "http://168.63.129.16:80".to_string(),
        "http://168.63.129.16:32526".to_string(),
        "http://169.254.169.254:80".to_string(),
    ]
}

impl FabricConfig {
    /// Serve `scenario` on 127.0.0.1, ephemeral ports, no record file, no faults.
    pub fn new(scenario: Scenario) -> Self {
        FabricConfig {
            scenario,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            wire_port: 0,
            hgap_port: 0,
            imds_port: 0,
            record_file: None,
            faults: Vec::new(),
            advertise: None,
            imds_instance: None,
            keep_alive_idle: DEFAULT_KEEP_ALIVE_IDLE,
        }
    }
}

/// A running fabric. Dropping it stops it.
#[derive(Debug)]
pub struct Fabric {
    state: Arc<routes::State>,
    threads: Vec<JoinHandle<()>>,
}

impl Fabric {
    /// Starts the built-in scenario on ephemeral loopback ports.
    pub fn start_builtin() -> Result<Self, FabricError> {
        Self::start(FabricConfig::new(Scenario::builtin()?))
    }

    /// Binds the three listeners and starts serving.
    pub fn start(config: FabricConfig) -> Result<Self, FabricError> {
        let bind = |listener: Listener, port: u16| {
            let addr = SocketAddr::new(config.bind, port);
            TcpListener::bind(addr).map_err(|source| FabricError::Bind {
                listener: listener.name(),
                addr,
                source,
            })
        };
        let sockets = [
            (Listener::Wireserver, bind(Listener::Wireserver, config.wire_port)?),
            (Listener::Hostgaplugin, bind(Listener::Hostgaplugin, config.hgap_port)?),
            (Listener::Imds, bind(Listener::Imds, config.imds_port)?),
        ];
        let addr = |i: usize| {
            let (l, s) = &sockets[i];
            s.local_addr().map_err(|source| FabricError::Bind {
                listener: l.name(),
                addr: SocketAddr::new(config.bind, 0),
                source,
            })
        };
        let addrs = [addr(0)?, addr(1)?, addr(2)?];
        let state = Arc::new(routes::State::new(config, addrs)?);
        let mut threads = Vec::new();
        for (listener, socket) in sockets {
            let state = Arc::clone(&state);
            let handle = std::thread::Builder::new()
                .name(format!("fabric-{}", listener.name()))
                .spawn(move || accept_loop(state, listener, socket))
                .map_err(FabricError::Thread)?;
            threads.push(handle);
        }
        Ok(Fabric { state, threads })
    }

    /// Address of the WireServer listener.
    pub fn wire_addr(&self) -> SocketAddr {
        self.state.addrs[0]
    }

    /// Address of the HostGAPlugin listener.
    pub fn hgap_addr(&self) -> SocketAddr {
        self.state.addrs[1]
    }

    /// Address of the IMDS listener.
    pub fn imds_addr(&self) -> SocketAddr {
        self.state.addrs[2]
    }

    /// Every request received so far (control requests excluded), in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.recorder.snapshot()
    }

    /// Requests received on `listener`.
    pub fn requests_on(&self, listener: Listener) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.listener == listener).collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state.recorder.clear();
    }

    /// The Health reports received, in order.
    pub fn health_reports(&self) -> Vec<HealthReport> {
        self.state.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Adds a fault after the active ones.
    pub fn add_fault(&self, fault: Fault) {
        if let Ok(mut f) = self.state.faults.lock() {
            f.add([fault]);
        }
    }

    /// Removes all faults.
    pub fn clear_faults(&self) {
        if let Ok(mut f) = self.state.faults.lock() {
            f.clear();
        }
    }

    /// The current goal state incarnation.
    pub fn incarnation(&self) -> u64 {
        self.state.incarnation.load(Ordering::SeqCst)
    }

    /// Sets the goal state incarnation.
    pub fn set_incarnation(&self, n: u64) {
        self.state.incarnation.store(n, Ordering::SeqCst);
    }

    /// Increments the goal state incarnation and returns the new value.
    pub fn bump_incarnation(&self) -> u64 {
        self.state.incarnation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Replaces the vmSettings document (a new ETag follows from the new text); `None` makes the
    /// HostGAPlugin answer 404 as a host without Fast Track.
    pub fn set_vm_settings(&self, json: Option<String>) {
        if let Ok(mut v) = self.state.vm_settings.lock() {
            *v = json;
        }
    }

    /// Replaces the ExtensionsConfig document (rendered like the scenario's). The agent fetches it
    /// on its next new incarnation: call [`bump_incarnation`](Self::bump_incarnation) after.
    pub fn set_extensions_config(&self, xml: &str) {
        if let Ok(mut d) = self.state.extensions_config.lock() {
            *d = Some(xml.to_string());
        }
    }

    /// Replaces the IMDS instance document (rendered like the scenario's); `None` makes IMDS
    /// answer 404.
    pub fn set_imds_instance(&self, json: Option<String>) {
        if let Ok(mut d) = self.state.imds_instance.lock() {
            *d = json;
        }
    }

    /// Hands a pre-provisioned pool VM over to a user: IMDS `/metadata/reprovisiondata` serves
    /// `ovf` from now on (requests held open get it at once), and the goal state gets a new
    /// incarnation, which is returned. `None` makes it answer 404 again (incarnation unchanged).
    pub fn set_reprovision_data(&self, ovf: Option<&[u8]>) -> u64 {
        routes::set_reprovision_data(&self.state, ovf.map(<[u8]>::to_vec))
    }

    /// Sets the RemoteAccess users (`expires_in_secs` counted from now); `None` takes the
    /// `RemoteAccessInfo` out of the goal state. The agent fetches it on its next new incarnation:
    /// call [`bump_incarnation`](Self::bump_incarnation) after.
    pub fn set_remote_access(&self, users: Option<Vec<JitUser>>) {
        if let Ok(mut r) = self.state.remote_access.lock() {
            *r = users.map(|u| remote_access::resolve(u, routes::unix_now()));
        }
    }

    /// The RemoteAccess users served, with their expirations.
    pub fn remote_access(&self) -> Option<Vec<JitUser>> {
        self.state.remote_access.lock().ok().and_then(|r| r.clone())
    }

    /// The status blob at `path` (e.g. the scenario's `status_blob_path`).
    pub fn blob(&self, path: &str) -> Option<Blob> {
        self.state.blobs.lock().ok().and_then(|b| b.get(path).cloned())
    }

    /// The status blob at the scenario's `status_blob_path`.
    pub fn status_blob(&self) -> Option<Blob> {
        self.blob(&self.state.scenario.status_blob_path)
    }

    /// The test certificates served in the Certificates document.
    pub fn certificates(&self) -> &[TestCert] {
        &self.state.certs
    }

    /// What `listener` carried so far ([`Traffic`]).
    pub fn traffic(&self, listener: Listener) -> Traffic {
        self.state.traffic[routes::slot(listener)].get()
    }

    /// Sets every listener's [`Traffic`] back to zero.
    pub fn clear_traffic(&self) {
        for c in &self.state.traffic {
            c.clear();
        }
    }

    /// Stops accepting connections and waits for the listener threads. Open keep-alive connections
    /// end within about a second. Calling it again does nothing.
    pub fn stop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for addr in self.state.addrs {
            // Wake the blocking accept(); an unspecified bind address is reachable on loopback.
            let target = if addr.ip().is_unspecified() {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
            } else {
                addr
            };
            let _ = TcpStream::connect(target);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(state: Arc<routes::State>, listener: Listener, socket: TcpListener) {
    for stream in socket.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        // An answer goes out as its head, then its body: without this, Nagle's algorithm holds
        // the body of an answer on a kept connection until the client's delayed ACK (40 ms).
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        // A failed spawn drops the connection, which the client sees as a reset.
        let _ = std::thread::Builder::new()
            .name(format!("fabric-{}-conn", listener.name()))
            .spawn(move || routes::handle_connection(&state, listener, stream));
    }
}
