//! What each listener answers: the connection loop (recording, faults, keep-alive), the WireServer,
//! HostGAPlugin and IMDS endpoints, and the `/__fabric/` control endpoints.

use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::blob::BlobStore;
use crate::certs::{self, TestCert};
use crate::faults::{self, FaultAction, FaultTable};
use crate::health::{self, HealthReport};
use crate::http::{self, BodyMode, HttpError, Request, Response};
use crate::record::Recorder;
use crate::remote_access::{self, JitUser};
use crate::scenario::{ArtifactFile, RenderContext, Scenario};
use crate::{FabricConfig, FabricError, Listener};

/// How often an idle keep-alive connection checks whether the fabric is stopping.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// How long a new connection may wait before its first request.
const FIRST_REQUEST_MAX: Duration = Duration::from_secs(60);
/// How long a client may take to send one request once it started.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The HostGAPlugin API version (spec §6).
const HGAP_VERSIONS: &str = r#"["2015-09-01"]"#;

/// Everything the listeners share.
#[derive(Debug)]
pub(crate) struct State {
    pub scenario: Scenario,
    /// WireServer, HostGAPlugin, IMDS.
    pub addrs: [SocketAddr; 3],
    pub incarnation: AtomicU64,
    pub vm_settings: Mutex<Option<String>>,
    /// The ExtensionsConfig served (the scenario's, until replaced).
    pub extensions_config: Mutex<Option<String>>,
    /// The IMDS `/metadata/instance` document served (the scenario's, until replaced); `None`:
    /// IMDS answers 404.
    pub imds_instance: Mutex<Option<String>>,
    /// The RemoteAccess users (`None`: the goal state names no RemoteAccess document).
    pub remote_access: Mutex<Option<Vec<JitUser>>>,
    pub certs: Vec<TestCert>,
    pub pfx: Vec<u8>,
    pub faults: Mutex<FaultTable>,
    pub recorder: Recorder,
    pub health: Mutex<Vec<HealthReport>>,
    pub blobs: Mutex<BlobStore>,
    pub stop: AtomicBool,
    /// Base URLs served in documents, when not the bound addresses.
    pub advertise: Option<[String; 3]>,
    /// IMDS `reprovisiondata` (the new `ovf-env.xml` of a pool VM taken over), once set.
    pub reprovision: Mutex<Option<Vec<u8>>>,
    /// Wakes `reprovisiondata` requests held open when the document is set.
    pub reprovision_set: Condvar,
    /// What each listener (WireServer, HostGAPlugin, IMDS) carried, control requests left out.
    pub traffic: [Counters; 3],
    /// [`FabricConfig::keep_alive_idle`].
    pub keep_alive_idle: Duration,
}

/// Traffic counters of one listener.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Counters {
    pub fn get(&self) -> crate::Traffic {
        crate::Traffic {
            connections: self.connections.load(Ordering::SeqCst),
            requests: self.requests.load(Ordering::SeqCst),
            bytes_in: self.bytes_in.load(Ordering::SeqCst),
            bytes_out: self.bytes_out.load(Ordering::SeqCst),
        }
    }

    pub fn clear(&self) {
        for c in [&self.connections, &self.requests, &self.bytes_in, &self.bytes_out] {
            c.store(0, Ordering::SeqCst);
        }
    }
}

/// The index of `listener` in [`State::traffic`].
pub(crate) fn slot(listener: Listener) -> usize {
    match listener {
        Listener::Wireserver => 0,
        Listener::Hostgaplugin => 1,
        Listener::Imds => 2,
    }
}

impl State {
    pub fn new(config: FabricConfig, addrs: [SocketAddr; 3]) -> Result<Self, FabricError> {
        let certs = certs::generate(config.scenario.certificates)?;
        let pfx = certs::pfx(&certs)?;
        let mut faults = FaultTable::default();
        faults.add(config.faults);
        Ok(State {
            advertise: config.advertise,
            incarnation: AtomicU64::new(config.scenario.incarnation),
            vm_settings: Mutex::new(config.scenario.vm_settings.clone()),
            reprovision: Mutex::new(config.scenario.reprovision_data.clone()),
            reprovision_set: Condvar::new(),
            extensions_config: Mutex::new(config.scenario.extensions_config.clone()),
            imds_instance: Mutex::new(config.imds_instance.or_else(|| config.scenario.imds_instance.clone())),
            remote_access: Mutex::new(
                config.scenario.remote_access.clone().map(|u| remote_access::resolve(u, unix_now())),
            ),
            scenario: config.scenario,
            addrs,
            certs,
            pfx,
            faults: Mutex::new(faults),
            recorder: Recorder::new(Instant::now(), config.record_file.as_deref())?,
            health: Mutex::new(Vec::new()),
            blobs: Mutex::new(BlobStore::default()),
            stop: AtomicBool::new(false),
            traffic: Default::default(),
            keep_alive_idle: config.keep_alive_idle,
        })
    }

    fn render_ctx(&self) -> RenderContext {
        let base = |i: usize| match &self.advertise {
            Some(urls) => urls[i].clone(),
            None => format!("http://{}", self.addrs[i]),
        };
        RenderContext {
            wire: base(0),
            hgap: base(1),
            imds: base(2),
            incarnation: self.incarnation.load(Ordering::SeqCst),
            thumbprint: self.certs.first().map(|c| c.thumbprint.clone()).unwrap_or_default(),
            rewrite: self.scenario.rewrite.clone(),
        }
    }

    /// The ContainerId of the scenario's goal state.
    fn container_id(&self) -> Option<&str> {
        let gs = &self.scenario.goal_state;
        let start = gs.find("<ContainerId>")? + "<ContainerId>".len();
        let len = gs[start..].find("</ContainerId>")?;
        Some(gs[start..start + len].trim())
    }
}

/// Serves one connection until the client closes it, a fault ends it or the fabric stops.
pub(crate) fn handle_connection(state: &State, listener: Listener, stream: TcpStream) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut stream = stream;
    let counters = &state.traffic[slot(listener)];
    // A connection counts once it carried a request that is not a control request.
    let mut counted = false;
    let mut idle_max = FIRST_REQUEST_MAX;
    // Zero: no keep-alive; every answer says `Connection: close`.
    let keep_alive = !state.keep_alive_idle.is_zero();
    loop {
        if !wait_for_request(state, &mut reader, idle_max) {
            return;
        }
        idle_max = state.keep_alive_idle;
        let _ = reader.get_ref().set_read_timeout(Some(REQUEST_TIMEOUT));
        let req = match http::read_request(&mut reader, &mut stream) {
            Ok(Some(req)) => req,
            Ok(None) | Err(HttpError::Io(_)) | Err(HttpError::Eof(_)) => return,
            Err(e) => {
                let status = if matches!(e, HttpError::TooLarge(_)) { 413 } else { 400 };
                let _ = http::write_response(
                    &mut stream,
                    &Response::text(status, e.to_string()),
                    false,
                    BodyMode::Normal,
                );
                return;
            }
        };
        if listener == Listener::Wireserver && req.path().starts_with("/__fabric/") {
            let resp = control(state, &req);
            match http::write_response(&mut stream, &resp, req.keep_alive && keep_alive, BodyMode::Normal) {
                Ok(sent) if sent.keep_alive => continue,
                _ => return,
            }
        }
        if !counted {
            counted = true;
            counters.connections.fetch_add(1, Ordering::SeqCst);
        }
        counters.requests.fetch_add(1, Ordering::SeqCst);
        counters.bytes_in.fetch_add(req.wire_len, Ordering::SeqCst);
        state.recorder.record(listener, &req);
        let action = state.faults.lock().ok().and_then(|mut f| f.take(listener, &req.method, &req.target));
        let mut mode = BodyMode::Normal;
        let mut replaced = None;
        match action {
            None => {}
            Some(FaultAction::Reset) => {
                drop(reader);
                http::reset(stream);
                return;
            }
            Some(FaultAction::Delay { ms }) => std::thread::sleep(Duration::from_millis(ms)),
            Some(FaultAction::BumpIncarnation) => {
                state.incarnation.fetch_add(1, Ordering::SeqCst);
            }
            Some(FaultAction::Status { status, body }) => {
                let body = body.unwrap_or_default();
                let ctype = if body.trim_start().starts_with('<') {
                    "application/xml; charset=utf-8"
                } else {
                    "text/plain; charset=utf-8"
                };
                replaced = Some(Response::new(status, ctype, body));
            }
            Some(FaultAction::Truncate { keep }) => {
                mode = BodyMode::Truncate { keep: keep.unwrap_or(usize::MAX) }
            }
            Some(FaultAction::SlowBody { chunk, interval_ms }) => {
                mode = BodyMode::Slow { chunk, interval: Duration::from_millis(interval_ms) }
            }
        }
        let resp = replaced.unwrap_or_else(|| route(state, listener, &req));
        if let BodyMode::Truncate { keep: usize::MAX } = mode {
            mode = BodyMode::Truncate { keep: resp.len() / 2 };
        }
        match http::write_response(&mut stream, &resp, req.keep_alive && keep_alive, mode) {
            Ok(sent) => {
                counters.bytes_out.fetch_add(sent.bytes, Ordering::SeqCst);
                if !sent.keep_alive {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Waits until the next request starts arriving, at most `idle_max`. False when the connection
/// should end (then the fabric closes it, as a server closes an idle keep-alive connection).
fn wait_for_request(state: &State, reader: &mut BufReader<TcpStream>, idle_max: Duration) -> bool {
    let poll = IDLE_POLL.min(idle_max).max(Duration::from_millis(1));
    let _ = reader.get_ref().set_read_timeout(Some(poll));
    let started = Instant::now();
    loop {
        match reader.fill_buf() {
            Ok(buf) => return !buf.is_empty(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if state.stop.load(Ordering::SeqCst) || started.elapsed() >= idle_max {
                    return false;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

fn route(state: &State, listener: Listener, req: &Request) -> Response {
    match listener {
        Listener::Wireserver => wireserver(state, req),
        Listener::Hostgaplugin => hostgaplugin(state, req),
        Listener::Imds => imds(state, req),
    }
}

fn not_found(req: &Request) -> Response {
    Response::text(404, format!("wala-fabric: no such resource {} {}", req.method, req.target))
}

fn method_not_allowed(req: &Request) -> Response {
    Response::text(405, format!("wala-fabric: {} not allowed on {}", req.method, req.path()))
}

// ---------------------------------------------------------------------------------------------
// WireServer

fn wireserver(state: &State, req: &Request) -> Response {
    let path = req.path();
    let comp = req.query_param("comp");
    if path == "/" && comp == Some("versions") {
        return match req.method.as_str() {
            "GET" => Response::xml(state.render_ctx().render(&state.scenario.versions)),
            _ => method_not_allowed(req),
        };
    }
    if path == "/machine" || path.starts_with("/machine/") {
        if let Some(refused) = check_wire_version(state, req) {
            return refused;
        }
        return match (req.method.as_str(), comp) {
            ("GET", Some("goalstate")) => {
                Response::xml(state.render_ctx().render_goal_state(&goal_state(state)))
            }
            ("GET", Some("config")) => config_document(state, req),
            ("GET", Some("certificates")) => certificates(state, req),
            ("GET", Some("remoteaccess")) => remote_access_document(state, req),
            ("POST", Some("health")) => health_report(state, req),
            ("POST", Some("roleProperties")) => Response::empty(202),
            ("POST", Some("telemetrydata")) => Response::empty(200),
            _ => not_found(req),
        };
    }
    if path == "/HealthService" {
        return match req.method.as_str() {
            "POST" => Response::empty(200),
            _ => method_not_allowed(req),
        };
    }
    if path.starts_with(&state.scenario.status_blob_path) {
        return status_blob(state, req);
    }
    if let Some(resp) = artifact(state, path) {
        return match req.method.as_str() {
            "GET" => resp,
            _ => method_not_allowed(req),
        };
    }
    not_found(req)
}

/// WireServer requests under /machine must name a protocol version the fabric supports.
fn check_wire_version(state: &State, req: &Request) -> Option<Response> {
    match req.header("x-ms-version") {
        None => Some(Response::text(400, "wala-fabric: missing x-ms-version header")),
        Some(v) if !state.scenario.versions.contains(&format!("<Version>{v}</Version>")) => {
            Some(Response::text(400, format!("wala-fabric: unsupported x-ms-version {v:?}")))
        }
        Some(_) => None,
    }
}

fn config_document(state: &State, req: &Request) -> Response {
    let s = &state.scenario;
    let doc = match req.query_param("type") {
        Some("hostingEnvironmentConfig") => s.hosting_environment_config.clone(),
        Some("sharedConfig") => s.shared_config.clone(),
        Some("extensionsConfig") => state.extensions_config.lock().ok().and_then(|d| d.clone()),
        _ => None,
    };
    match doc {
        Some(doc) => Response::xml(state.render_ctx().render(&doc)),
        None => not_found(req),
    }
}

fn certificates(state: &State, req: &Request) -> Response {
    let incarnation = state.incarnation.load(Ordering::SeqCst);
    match certs::certificates_document(
        incarnation,
        &state.pfx,
        req.header("x-ms-guest-agent-public-x509-cert"),
        req.header("x-ms-cipher-name"),
    ) {
        Ok(doc) => Response::xml(doc),
        Err(certs::CertError::Openssl(e)) => Response::text(500, format!("wala-fabric: {e}")),
        Err(e) => Response::text(400, format!("wala-fabric: {e}")),
    }
}

/// The goal state template, with `RemoteAccessInfo` when RemoteAccess users are set.
fn goal_state(state: &State) -> String {
    let has_users = state.remote_access.lock().map(|r| r.is_some()).unwrap_or(false);
    match (has_users, state.container_id()) {
        (true, Some(id)) => remote_access::with_remote_access_info(&state.scenario.goal_state, id),
        _ => state.scenario.goal_state.clone(),
    }
}

fn remote_access_document(state: &State, req: &Request) -> Response {
    let Some(users) = state.remote_access.lock().ok().and_then(|r| r.clone()) else {
        return not_found(req);
    };
    match remote_access::document(
        state.incarnation.load(Ordering::SeqCst),
        &users,
        req.header("x-ms-guest-agent-public-x509-cert"),
        req.header("x-ms-cipher-name"),
    ) {
        Ok(doc) => Response::xml(doc),
        Err(certs::CertError::Openssl(e)) => Response::text(500, format!("wala-fabric: {e}")),
        Err(e) => Response::text(400, format!("wala-fabric: {e}")),
    }
}

/// Seconds since the epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn health_report(state: &State, req: &Request) -> Response {
    let Ok(text) = std::str::from_utf8(&req.body) else {
        return Response::text(400, "wala-fabric: Health body is not UTF-8");
    };
    match health::parse(text) {
        Ok(report) => {
            if let Ok(mut h) = state.health.lock() {
                h.push(report);
            }
            Response::empty(200)
        }
        Err(e) => Response::text(400, format!("wala-fabric: {e}")),
    }
}

/// Direct (storage) access to the status blob.
fn status_blob(state: &State, req: &Request) -> Response {
    let Ok(mut blobs) = state.blobs.lock() else { return Response::text(500, "blob store poisoned") };
    match req.method.as_str() {
        "PUT" => {
            let header = |n: &str| req.header(n).map(str::to_string);
            match blobs.put(req.path(), req.query(), &header, &req.body) {
                Ok(()) => Response::empty(201),
                Err(e) => Response::text(e.status, e.reason),
            }
        }
        "GET" => match blobs.get(req.path()) {
            Some(b) => Response::new(200, "application/octet-stream", b.data.clone()),
            None => not_found(req),
        },
        _ => method_not_allowed(req),
    }
}

/// A scenario file served at `path` (rendered when it is text; streamed from disk when large).
fn artifact(state: &State, path: &str) -> Option<Response> {
    let bytes = match state.scenario.files.get(path)? {
        ArtifactFile::Bytes(bytes) => bytes,
        ArtifactFile::Disk { path, len } => {
            return Some(Response::file(200, "application/octet-stream", path.clone(), *len))
        }
    };
    Some(match std::str::from_utf8(bytes) {
        Ok(text) if path.ends_with(".xml") || path.ends_with(".json") => {
            let ctype = if path.ends_with(".json") { "application/json" } else { "application/xml" };
            Response::new(200, ctype, state.render_ctx().render(text))
        }
        _ => Response::new(200, "application/octet-stream", bytes.clone()),
    })
}

// ---------------------------------------------------------------------------------------------
// HostGAPlugin

fn hostgaplugin(state: &State, req: &Request) -> Response {
    let m = req.method.as_str();
    match req.path() {
        "/versions" if m == "GET" => Response::new(200, "application/json", HGAP_VERSIONS),
        "/health" if m == "GET" => Response::empty(200),
        "/vmSettings" if m == "GET" => check_container(state, req).unwrap_or_else(|| vm_settings(state, req)),
        "/status" if m == "PUT" => check_container(state, req).unwrap_or_else(|| hgap_status(state, req)),
        "/extensionArtifact" if m == "GET" => {
            check_container(state, req).unwrap_or_else(|| extension_artifact(state, req))
        }
        "/vmAgentLog" if m == "PUT" => Response::empty(200),
        "/versions" | "/health" | "/vmSettings" | "/status" | "/extensionArtifact" | "/vmAgentLog" => {
            method_not_allowed(req)
        }
        _ => not_found(req),
    }
}

/// The HostGAPlugin refuses a missing or stale container ID (spec §4.7).
fn check_container(state: &State, req: &Request) -> Option<Response> {
    let expected = state.container_id()?;
    match req.header("x-ms-containerid") {
        Some(id) if id.eq_ignore_ascii_case(expected) => None,
        _ => Some(Response::text(400, "InvalidContainerConfiguration")),
    }
}

/// The ETag of a vmSettings body: derived from its bytes, so a new document gets a new ETag.
fn etag(body: &str) -> String {
    let digest = openssl::sha::sha256(body.as_bytes());
    let mut n = [0u8; 8];
    n.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(n) >> 1).to_string()
}

fn vm_settings(state: &State, req: &Request) -> Response {
    let Some(doc) = state.vm_settings.lock().ok().and_then(|v| v.clone()) else {
        return not_found(req);
    };
    let body = state.render_ctx().render(&doc);
    let tag = etag(&body);
    let matches = req.header("if-none-match").is_some_and(|v| v.trim().trim_matches('"') == tag);
    if matches {
        return Response::empty(304).with_header("ETag", &tag);
    }
    Response::new(200, "application/json; charset=utf-8", body).with_header("ETag", &tag)
}

/// `PUT /status`: the JSON envelope of a status blob write (spec §6.5).
fn hgap_status(state: &State, req: &Request) -> Response {
    let envelope: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return Response::text(400, format!("wala-fabric: status envelope is not JSON: {e}")),
    };
    let Some(uri) = envelope.get("requestUri").and_then(Value::as_str) else {
        return Response::text(400, "wala-fabric: status envelope without requestUri");
    };
    let content = match envelope.get("content") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(b64)) => match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(bytes) => bytes,
            Err(e) => return Response::text(400, format!("wala-fabric: content is not base64: {e}")),
        },
        Some(_) => return Response::text(400, "wala-fabric: content is not a string"),
    };
    let headers: Vec<(String, String)> = envelope
        .get("headers")
        .and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .filter_map(|h| {
                    Some((
                        h.get("headerName")?.as_str()?.to_string(),
                        h.get("headerValue")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let target = url_path(uri);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !path.starts_with(&state.scenario.status_blob_path) {
        return Response::text(502, format!("wala-fabric: upstream storage has no blob at {path}"));
    }
    let header = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let Ok(mut blobs) = state.blobs.lock() else { return Response::text(500, "blob store poisoned") };
    match blobs.put(path, query, &header, &content) {
        Ok(()) => Response::empty(200),
        Err(e) => Response::text(502, format!("wala-fabric: upstream storage answered {e}")),
    }
}

fn extension_artifact(state: &State, req: &Request) -> Response {
    let Some(location) = req.header("x-ms-artifact-location") else {
        return Response::text(400, "wala-fabric: missing x-ms-artifact-location header");
    };
    let target = url_path(location);
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    artifact(state, path)
        .unwrap_or_else(|| Response::text(502, format!("wala-fabric: upstream has no artifact at {path}")))
}

/// The path and query of an absolute URL (`/` when it has none).
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme.find('/').map_or("/", |i| &after_scheme[i..])
}

// ---------------------------------------------------------------------------------------------
// IMDS

fn imds(state: &State, req: &Request) -> Response {
    let error = |status: u16, msg: &str| Response::json(status, &json!({ "error": msg }));
    if !req.path().starts_with("/metadata/") {
        return not_found(req);
    }
    if req.method != "GET" {
        return method_not_allowed(req);
    }
    if !req.header("metadata").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return error(400, "Bad request. Required metadata header not specified");
    }
    if req.query_param("api-version").is_none_or(str::is_empty) {
        return error(400, "Bad request. api-version was not specified in the request");
    }
    if req.path() == "/metadata/reprovisiondata" {
        return reprovision_data(state);
    }
    let Some(rest) = req.path().strip_prefix("/metadata/instance") else { return not_found(req) };
    let Some(doc) = state.imds_instance.lock().ok().and_then(|d| d.clone()) else { return not_found(req) };
    let doc: Value = match serde_json::from_str(&state.render_ctx().render(&doc)) {
        Ok(v) => v,
        Err(e) => return error(500, &format!("scenario IMDS document is not JSON: {e}")),
    };
    let mut node = &doc;
    for seg in rest.split('/').filter(|s| !s.is_empty()) {
        let next = match node {
            Value::Object(map) => map.get(seg),
            Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return not_found(req),
        }
    }
    if req.query_param("format") == Some("text") {
        return match node {
            Value::String(s) => Response::text(200, s.clone()),
            Value::Object(_) | Value::Array(_) => error(400, "Bad request. format=text needs a leaf"),
            other => Response::text(200, other.to_string()),
        };
    }
    Response::json(200, node)
}

/// `GET /metadata/reprovisiondata`: the new `ovf-env.xml` once a user took the pool VM over; until
/// then the request is held open up to the scenario's hold time, then answered 404 (what a client
/// polls through).
fn reprovision_data(state: &State) -> Response {
    let hold = Duration::from_millis(state.scenario.reprovision_hold_ms);
    let started = Instant::now();
    let Ok(mut doc) = state.reprovision.lock() else { return Response::text(500, "wala-fabric: poisoned") };
    loop {
        if let Some(bytes) = doc.as_ref() {
            return Response::new(200, "text/xml; charset=utf-8", bytes.clone());
        }
        let left = hold.saturating_sub(started.elapsed());
        if left.is_zero() || state.stop.load(Ordering::SeqCst) {
            return Response::json(404, &json!({ "error": "Not found" }));
        }
        // Wake up at least every IDLE_POLL to notice a stopping fabric.
        match state.reprovision_set.wait_timeout(doc, left.min(IDLE_POLL)) {
            Ok((d, _)) => doc = d,
            Err(_) => return Response::text(500, "wala-fabric: poisoned"),
        }
    }
}

/// Set (or clear) the reprovision document; setting it starts a new goal state (a new
/// incarnation), as the platform's does for the VM the user gets. Returns the incarnation.
pub(crate) fn set_reprovision_data(state: &State, doc: Option<Vec<u8>>) -> u64 {
    let is_set = doc.is_some();
    if let Ok(mut d) = state.reprovision.lock() {
        *d = doc;
    }
    let n = if is_set {
        state.incarnation.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        state.incarnation.load(Ordering::SeqCst)
    };
    state.reprovision_set.notify_all();
    n
}

// ---------------------------------------------------------------------------------------------
// Control endpoints

fn control(state: &State, req: &Request) -> Response {
    let bad = |msg: String| Response::json(400, &json!({ "error": msg }));
    match (req.method.as_str(), req.path()) {
        ("GET", "/__fabric/requests") => {
            let filter = req.query_param("listener");
            let list: Vec<_> = state
                .recorder
                .snapshot()
                .into_iter()
                .filter(|r| filter.is_none_or(|l| r.listener.name() == l))
                .collect();
            Response::json(200, &json!(list))
        }
        ("DELETE", "/__fabric/requests") => {
            state.recorder.clear();
            Response::empty(204)
        }
        ("GET", "/__fabric/traffic") => {
            let of = |l: Listener| json!(state.traffic[slot(l)].get());
            Response::json(
                200,
                &json!({
                    "wireserver": of(Listener::Wireserver),
                    "hostgaplugin": of(Listener::Hostgaplugin),
                    "imds": of(Listener::Imds),
                }),
            )
        }
        ("DELETE", "/__fabric/traffic") => {
            for c in &state.traffic {
                c.clear();
            }
            Response::empty(204)
        }
        ("GET", "/__fabric/faults") => {
            Response::json(200, &json!(state.faults.lock().map(|f| f.list()).unwrap_or_default()))
        }
        ("POST", "/__fabric/faults") => match faults::parse_faults(&String::from_utf8_lossy(&req.body)) {
            Ok(list) => {
                let n = list.len();
                if let Ok(mut f) = state.faults.lock() {
                    f.add(list);
                }
                Response::json(200, &json!({ "added": n }))
            }
            Err(e) => bad(format!("invalid fault: {e}")),
        },
        ("DELETE", "/__fabric/faults") => {
            if let Ok(mut f) = state.faults.lock() {
                f.clear();
            }
            Response::empty(204)
        }
        ("GET", "/__fabric/incarnation") => {
            Response::json(200, &json!({ "incarnation": state.incarnation.load(Ordering::SeqCst) }))
        }
        ("POST", "/__fabric/incarnation") => {
            let text = String::from_utf8_lossy(&req.body);
            let n = if text.trim().is_empty() {
                state.incarnation.fetch_add(1, Ordering::SeqCst) + 1
            } else {
                match text.trim().parse::<u64>() {
                    Ok(n) => {
                        state.incarnation.store(n, Ordering::SeqCst);
                        n
                    }
                    Err(_) => return bad(format!("incarnation {:?} is not a number", text.trim())),
                }
            };
            Response::json(200, &json!({ "incarnation": n }))
        }
        ("GET", "/__fabric/health") => {
            Response::json(200, &json!(state.health.lock().map(|h| h.clone()).unwrap_or_default()))
        }
        ("GET", "/__fabric/blob") => {
            let path = req.query_param("path").unwrap_or(&state.scenario.status_blob_path);
            match state.blobs.lock().ok().and_then(|b| b.get(path).cloned()) {
                Some(b) => Response::new(200, "application/octet-stream", b.data)
                    .with_header("x-ms-blob-type", &format!("{:?}", b.blob_type)),
                None => not_found(req),
            }
        }
        ("PUT", "/__fabric/vmsettings") => match std::str::from_utf8(&req.body) {
            Ok(text) if serde_json::from_str::<Value>(text).is_ok() => {
                if let Ok(mut v) = state.vm_settings.lock() {
                    *v = Some(text.to_string());
                }
                Response::empty(204)
            }
            _ => bad("vmSettings body must be JSON".into()),
        },
        ("DELETE", "/__fabric/vmsettings") => {
            if let Ok(mut v) = state.vm_settings.lock() {
                *v = None;
            }
            Response::empty(204)
        }
        ("PUT", "/__fabric/extensionsconfig") => match std::str::from_utf8(&req.body) {
            Ok(text) => {
                if let Ok(mut d) = state.extensions_config.lock() {
                    *d = Some(text.to_string());
                }
                Response::empty(204)
            }
            _ => bad("ExtensionsConfig body must be UTF-8".into()),
        },
        ("PUT", "/__fabric/imds") => match std::str::from_utf8(&req.body) {
            Ok(text) if serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object()) => {
                if let Ok(mut d) = state.imds_instance.lock() {
                    *d = Some(text.to_string());
                }
                Response::empty(204)
            }
            _ => bad("the IMDS instance document must be a JSON object".into()),
        },
        ("DELETE", "/__fabric/imds") => {
            if let Ok(mut d) = state.imds_instance.lock() {
                *d = None;
            }
            Response::empty(204)
        }
        ("PUT", "/__fabric/reprovisiondata") => {
            if req.body.is_empty() {
                return bad("the reprovision document (the new ovf-env.xml) is empty".into());
            }
            let n = set_reprovision_data(state, Some(req.body.clone()));
            Response::json(200, &json!({ "incarnation": n }))
        }
        ("DELETE", "/__fabric/reprovisiondata") => {
            set_reprovision_data(state, None);
            Response::empty(204)
        }
        ("GET", "/__fabric/reprovisiondata") => match state.reprovision.lock().ok().and_then(|d| d.clone()) {
            Some(doc) => Response::new(200, "text/xml; charset=utf-8", doc),
            None => not_found(req),
        },
        ("PUT", "/__fabric/remoteaccess") => {
            match remote_access::parse_users(&String::from_utf8_lossy(&req.body)) {
                Ok(users) => {
                    if let Ok(mut r) = state.remote_access.lock() {
                        *r = Some(remote_access::resolve(users, unix_now()));
                    }
                    Response::empty(204)
                }
                Err(e) => bad(format!("invalid RemoteAccess users: {e}")),
            }
        }
        ("DELETE", "/__fabric/remoteaccess") => {
            if let Ok(mut r) = state.remote_access.lock() {
                *r = None;
            }
            Response::empty(204)
        }
        ("GET", "/__fabric/remoteaccess") => match state.remote_access.lock().ok().and_then(|r| r.clone()) {
            Some(users) => {
                let list: Vec<Value> =
                    users.iter().map(|u| json!({ "name": u.name, "expiration": u.expiration })).collect();
                Response::json(200, &json!(list))
            }
            None => not_found(req),
        },
        ("POST", "/__fabric/protect") => match state.certs.first() {
            Some(cert) => match certs::protect(&req.body, cert) {
                Ok(b64) => Response::text(200, b64),
                Err(e) => Response::json(500, &json!({ "error": format!("openssl: {e}") })),
            },
            None => bad("the scenario has no certificate to encrypt to (\"certificates\": 0)".into()),
        },
        ("GET", "/__fabric/certificates") => {
            let list: Vec<Value> = state
                .certs
                .iter()
                .map(|c| {
                    json!({
                        "thumbprint": c.thumbprint,
                        "has_private_key": c.in_pfx_with_key,
                        "certificate_pem": c.cert.to_pem().map(|p| String::from_utf8_lossy(&p).into_owned()).unwrap_or_default(),
                    })
                })
                .collect();
            Response::json(200, &json!(list))
        }
        _ => not_found(req),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_path_strips_scheme_and_host() {
        assert_eq!(url_path("http://127.0.0.1:9/a/b?x=1"), "/a/b?x=1");
        assert_eq!(url_path("https://host"), "/");
        assert_eq!(url_path("/already"), "/already");
    }
}
