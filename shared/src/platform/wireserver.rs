//! The WireServer client (wire.md §3–§5, §12.3): versions, goal state and its documents,
//! certificates, health reports, role properties and telemetry. Never proxied.
//!
//! Every call is bounded: each HTTP exchange by the client's [`RetryPolicy`], the RoleInstance
//! refetch by a fixed count, a stale answer (410, `InvalidContainerConfiguration`) by one refetch of
//! the goal state and one retry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::limits::Document;
use crate::crypto::openssl_certs::CertError;
use crate::crypto::{self, TransportKeys, CIPHERS};
use crate::documents::wire::health::{self, TelemetryEvent};
use crate::documents::wire::{
    parse_certificates, parse_goal_state, parse_hosting_env, parse_remote_access, parse_shared_config,
    parse_versions, CertificateSummary, CertificatesPayload, DocumentError, GoalState,
    HostingEnvironmentConfig, RemoteAccess, SharedConfig, Versions, PROTOCOL_VERSION,
};
use crate::platform::endpoint::Endpoints;
use crate::platform::http::{HttpClient, HttpError, Request, Response, RetryPolicy};
use crate::platform::{CertificateSource, Platform, PlatformError, ProvisioningHealth};

/// `x-ms-agent-name`.
pub const AGENT_NAME: &str = "WALinuxAgent";
/// Content type of XML POSTs.
pub const XML_CONTENT_TYPE: &str = "text/xml;charset=utf-8";

/// Why a WireServer call failed.
#[derive(Debug, thiserror::Error)]
pub enum WireClientError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("certificates: {0}")]
    Certificates(#[from] CertError),
    /// The WireServer does not speak `2012-11-30`.
    #[error("the WireServer does not support protocol version {PROTOCOL_VERSION} (preferred {preferred:?}, supported {supported:?})")]
    UnsupportedVersion { preferred: Option<String>, supported: Vec<String> },
    /// An answer other than the expected one (e.g. roleProperties not 202).
    #[error("{what}: unexpected HTTP {status}")]
    UnexpectedStatus { what: &'static str, status: u16 },
}

impl WireClientError {
    /// Short text for a ProvisioningFailed report.
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// Whether the goal state is stale (refetch it, then retry).
    pub fn is_stale(&self) -> bool {
        matches!(self, WireClientError::Http(e) if e.is_stale())
    }
}

/// `goal_state_unless(None)` never answers "the same": there is nothing to be the same as.
fn unreachable_same() -> Result<FetchedGoalState, WireClientError> {
    Err(WireClientError::UnexpectedStatus {
        what: "goal state (answered as unchanged without a previous one)",
        status: 0,
    })
}

/// A goal state with its raw text (for history and `SharedConfig.xml`).
#[derive(Debug, Clone)]
pub struct FetchedGoalState {
    pub goal_state: GoalState,
    pub xml: String,
}

/// The WireServer client.
#[derive(Debug, Clone)]
pub struct WireClient {
    endpoints: Endpoints,
    lib_dir: PathBuf,
    http: HttpClient,
    policy: RetryPolicy,
    health_policy: RetryPolicy,
    telemetry_policy: RetryPolicy,
    role_instance_attempts: u32,
    role_instance_delay: Duration,
}

impl WireClient {
    /// A client for `endpoints`, keeping its files (transport key pair, certificates) in `lib_dir`
    /// (a host path already under the root, e.g. `root.path(config.lib_dir.as_path())`).
    pub fn new(endpoints: Endpoints, lib_dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoints,
            lib_dir: lib_dir.into(),
            http: HttpClient::platform(),
            policy: RetryPolicy::wire(),
            health_policy: RetryPolicy {
                max_attempts: 30,
                base_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(30),
                deadline: Duration::from_secs(300),
                ..RetryPolicy::wire()
            },
            telemetry_policy: RetryPolicy {
                max_attempts: 3,
                throttled_max_attempts: 3,
                throttle_delay: Duration::from_secs(8),
                deadline: Duration::from_secs(40),
                ..RetryPolicy::wire()
            },
            role_instance_attempts: 6,
            role_instance_delay: Duration::from_millis(500),
        }
    }

    /// Endpoints resolved from the configuration and the host ([`super::endpoint::resolve`]).
    pub fn from_config(config: &crate::documents::conf::Config, root: &crate::base::root::HostRoot) -> Self {
        let endpoints = super::endpoint::resolve(config, root, std::time::SystemTime::now());
        Self::new(endpoints, root.path(config.lib_dir.as_path()))
    }

    /// Replace every retry policy (documents, health, telemetry) and the RoleInstance refetch delay
    /// by `policy` (tests use a fast one).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.role_instance_delay = policy.base_delay;
        self.health_policy = policy.clone();
        self.telemetry_policy = policy.clone();
        self.policy = policy;
        self
    }

    /// Replace only the health-report policy (default: 30 attempts, 2 s doubling to 30 s, 300 s).
    pub fn with_health_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.health_policy = policy;
        self
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn lib_dir(&self) -> &Path {
        &self.lib_dir
    }

    fn url(&self, path_and_query: &str) -> String {
        self.endpoints.wireserver.url(path_and_query)
    }

    fn wire_headers(request: Request) -> Request {
        request.header("x-ms-agent-name", AGENT_NAME).header("x-ms-version", PROTOCOL_VERSION)
    }

    fn get(&self, url: &str, document: Document) -> Result<Response, HttpError> {
        self.http.send(&Self::wire_headers(Request::get(url)).document(document), &self.policy)
    }

    /// `GET /?comp=versions` (sent without the `x-ms-*` headers) and check that `2012-11-30` is
    /// preferred or supported.
    pub fn check_versions(&self) -> Result<Versions, WireClientError> {
        let request = Request::get(self.url("/?comp=versions")).document(Document::Versions);
        let resp = self.http.send(&request, &self.policy)?;
        let versions = parse_versions(&resp.text())?;
        if !versions.supports(PROTOCOL_VERSION) {
            return Err(WireClientError::UnsupportedVersion {
                preferred: versions.preferred.clone(),
                supported: versions.supported.clone(),
            });
        }
        Ok(versions)
    }

    /// `GET /machine/?comp=goalstate`. A goal state without a RoleInstance is fetched again (6
    /// attempts, 0.5 s apart); a stale answer (410, 400 InvalidContainerConfiguration: the host is
    /// changing the goal state) is fetched again up to [`STALE_RETRIES`] times with doubling delays.
    pub fn goal_state(&self) -> Result<FetchedGoalState, WireClientError> {
        match self.goal_state_unless(None)? {
            Some(fetched) => Ok(fetched),
            None => unreachable_same(),
        }
    }

    /// The goal state, or `None` when its text is `last` byte for byte (nothing to parse: an idle
    /// poll's answer is the same document every time).
    pub fn goal_state_unless(&self, last: Option<&str>) -> Result<Option<FetchedGoalState>, WireClientError> {
        let url = self.url("/machine/?comp=goalstate");
        let mut stale = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = match self.get(&url, Document::GoalState) {
                Err(e) if e.is_stale() && stale < STALE_RETRIES => {
                    log::info!("{e}; fetching the goal state again");
                    std::thread::sleep(self.role_instance_delay * (1 << stale));
                    stale += 1;
                    continue;
                }
                other => other?,
            };
            if last.is_some_and(|last| resp.text_is(last)) {
                return Ok(None);
            }
            let xml = resp.text();
            match parse_goal_state(&xml) {
                Ok(goal_state) => return Ok(Some(FetchedGoalState { goal_state, xml })),
                Err(DocumentError::MissingRoleInstance { incarnation })
                    if attempt < self.role_instance_attempts =>
                {
                    log::info!("goal state {incarnation} has no RoleInstance yet; fetching again");
                    std::thread::sleep(self.role_instance_delay);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// GET a goal-state document of kind `document` by its URL (as given in the goal state) with
    /// the WireServer headers.
    pub fn fetch_document(&self, url: &str, document: Document) -> Result<String, WireClientError> {
        Ok(self.get(&self.document_url(url), document)?.text())
    }

    /// The goal state's URLs are used verbatim, except that with an overridden WireServer
    /// (`Wala.WireServer`) a URL naming the well-known address is sent to the override instead:
    /// a lab or test setup must never reach out to 168.63.129.16.
    pub fn document_url(&self, url: &str) -> String {
        if self.endpoints.source != super::endpoint::Source::Override {
            return url.to_string();
        }
        for prefix in ["http://168.63.129.16:80/", "http://168.63.129.16/"] {
            if let Some(rest) = url.strip_prefix(prefix) {
                return format!("{}/{rest}", self.endpoints.wireserver.base_url());
            }
        }
        url.to_string()
    }

    /// The HostingEnvironmentConfig, when the goal state names one.
    pub fn hosting_env(&self, gs: &GoalState) -> Result<Option<HostingEnvironmentConfig>, WireClientError> {
        let Some(url) = &gs.hosting_env_url else { return Ok(None) };
        Ok(Some(parse_hosting_env(&self.fetch_document(url, Document::HostingEnvironmentConfig)?)?))
    }

    /// The SharedConfig, parsed and raw (waagent also saves it as `<Lib.Dir>/SharedConfig.xml`).
    pub fn shared_config(&self, gs: &GoalState) -> Result<Option<(SharedConfig, String)>, WireClientError> {
        let Some(url) = &gs.shared_config_url else { return Ok(None) };
        let text = self.fetch_document(url, Document::SharedConfig)?;
        Ok(Some((parse_shared_config(&text)?, text)))
    }

    /// The ExtensionsConfig as raw text (its parser is not built yet).
    pub fn extensions_config_text(&self, gs: &GoalState) -> Result<Option<String>, WireClientError> {
        match &gs.extensions_config_url {
            Some(url) => Ok(Some(self.fetch_document(url, Document::ExtensionsConfig)?)),
            None => Ok(None),
        }
    }

    /// Fetch the goal state's certificates, decrypt them and write `<THUMBPRINT>.crt`/`.prv` and
    /// `Certificates.json` into the lib dir. The request asks for `AES128_CBC` first; when the
    /// request fails (not stale) or the envelope does not decrypt, it asks once more for
    /// `DES_EDE3_CBC`. No `Certificates` URL, no `Data` or another `Format`: no certificates.
    pub fn certificates(&self, gs: &GoalState) -> Result<Vec<CertificateSummary>, WireClientError> {
        let Some(url) = &gs.certificates_url else {
            crypto::store_certificates(&self.lib_dir, None)?;
            return Ok(Vec::new());
        };
        let keys = TransportKeys::load_or_create(&self.lib_dir)?;
        let header = keys.header_value()?;
        let mut last_error = None;
        for cipher in CIPHERS {
            let request = Self::wire_headers(Request::get(self.document_url(url)))
                .document(Document::Certificates)
                .header("x-ms-cipher-name", cipher)
                .header("x-ms-guest-agent-public-x509-cert", header.as_str());
            let outcome = self
                .http
                .send(&request, &self.policy)
                .map_err(WireClientError::from)
                .and_then(|resp| self.store_certificates(&resp.text()));
            match outcome {
                Ok(summary) => return Ok(summary),
                Err(e) if e.is_stale() => return Err(e),
                Err(e) => {
                    log::warn!("certificates with cipher {cipher}: {e}");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or(WireClientError::UnexpectedStatus { what: "certificates", status: 0 }))
    }

    /// Decrypt and write the certificates of a Certificates document (in the `wala-crypto`
    /// helper, with the transport key pair of the lib dir).
    fn store_certificates(&self, xml: &str) -> Result<Vec<CertificateSummary>, WireClientError> {
        let doc = parse_certificates(xml)?;
        let summary = match doc.payload()? {
            CertificatesPayload::None => crypto::store_certificates(&self.lib_dir, None)?,
            CertificatesPayload::UnsupportedFormat(format) => {
                log::warn!("the Certificates format is {format:?}, not Pkcs7BlobWithPfxContents; skipping");
                return Ok(Vec::new());
            }
            CertificatesPayload::Pkcs7Pfx(der) => crypto::store_certificates(&self.lib_dir, Some(&der))?,
        };
        Ok(summary)
    }

    /// The RemoteAccess document at `url` (the goal state's `Container/RemoteAccessInfo`), asked for
    /// as waagent does: with the transport certificate and `x-ms-cipher-name: AES128_CBC`, so that
    /// the server encrypts each user's password to `keys`.
    pub fn remote_access(&self, url: &str, keys: &TransportKeys) -> Result<RemoteAccess, WireClientError> {
        let request = Self::wire_headers(Request::get(self.document_url(url)))
            .document(Document::RemoteAccess)
            .header("x-ms-cipher-name", CIPHERS[0])
            .header("x-ms-guest-agent-public-x509-cert", keys.header_value()?.as_str());
        let resp = self.http.send(&request, &self.policy)?;
        Ok(parse_remote_access(&resp.text())?)
    }

    /// POST a health report for `gs`.
    pub fn post_health(&self, gs: &GoalState, health: &ProvisioningHealth) -> Result<(), WireClientError> {
        let (state, details) = health::health_fields(health);
        let body = health::render_health(
            gs.incarnation,
            &gs.container_id,
            &gs.role_instance_id,
            state,
            details.as_ref().map(|(s, d)| (*s, d.as_str())),
        );
        let request = Self::wire_headers(Request::post(self.url("/machine?comp=health"), body))
            .header("Content-Type", XML_CONTENT_TYPE);
        self.http.send(&request, &self.health_policy)?;
        Ok(())
    }

    /// Fetch the goal state and POST a health report; on a stale answer fetch the goal state again
    /// and POST again, up to [`STALE_RETRIES`] times with doubling delays.
    pub fn report_health(&self, health: &ProvisioningHealth) -> Result<(), WireClientError> {
        let mut stale = 0;
        loop {
            let gs = self.goal_state()?;
            match self.post_health(&gs.goal_state, health) {
                Err(e) if e.is_stale() && stale < STALE_RETRIES => {
                    log::info!("{e}; fetching the goal state again before reporting");
                    std::thread::sleep(self.role_instance_delay * (1 << stale));
                    stale += 1;
                }
                other => return other,
            }
        }
    }

    /// POST `comp=roleProperties` with the SSH host key thumbprint; the server answers 202.
    pub fn report_role_properties(&self, gs: &GoalState, thumbprint: &str) -> Result<(), WireClientError> {
        let body = health::render_role_properties(&gs.container_id, &gs.role_instance_id, thumbprint);
        let request = Self::wire_headers(Request::post(self.url("/machine?comp=roleProperties"), body))
            .header("Content-Type", XML_CONTENT_TYPE);
        let resp = self.http.send(&request, &self.policy)?;
        if resp.status != 202 {
            return Err(WireClientError::UnexpectedStatus { what: "roleProperties", status: resp.status });
        }
        Ok(())
    }

    /// POST `events` to `comp=telemetrydata` in batches of at most 63 KiB per provider. Returns
    /// the number of requests sent. Stops at the first batch that fails.
    pub fn send_telemetry(&self, events: &[TelemetryEvent]) -> Result<usize, WireClientError> {
        let bodies = health::render_telemetry_batches(events);
        for body in &bodies {
            let request =
                Self::wire_headers(Request::post(self.url("/machine?comp=telemetrydata"), body.as_str()))
                    .header("Content-Type", XML_CONTENT_TYPE);
            self.http.send(&request, &self.telemetry_policy)?;
        }
        Ok(bodies.len())
    }

    /// Fetch the goal state and its certificates; on a stale certificates URL, fetch the goal state
    /// once more and retry.
    pub fn fetch_goal_state_certificates(&self) -> Result<Vec<CertificateSummary>, WireClientError> {
        let gs = self.goal_state()?;
        match self.certificates(&gs.goal_state) {
            Err(e) if e.is_stale() => {
                let gs = self.goal_state()?;
                self.certificates(&gs.goal_state)
            }
            other => other,
        }
    }
}

/// How many times a stale answer is followed by a fresh goal state before giving up (with delays
/// doubling from the RoleInstance retry delay: about 15 s in all by default).
pub const STALE_RETRIES: u32 = 5;

/// Provisioning's requests are waits on the WireServer in the boot timeline.
impl Platform for WireClient {
    fn report_health(&self, health: &ProvisioningHealth) -> Result<(), PlatformError> {
        let name = match health {
            ProvisioningHealth::Provisioning => "report-provisioning",
            ProvisioningHealth::Ready => "report-ready",
            ProvisioningHealth::Failed { .. } => "report-failed",
        };
        crate::base::timeline::wait(name, || WireClient::report_health(self, health))
            .map_err(PlatformError::from)
    }
}

impl CertificateSource for WireClient {
    fn fetch_certificates(&self) -> Result<Vec<String>, PlatformError> {
        crate::base::timeline::wait("certificates", || self.fetch_goal_state_certificates())
            .map(|s| s.into_iter().map(|c| c.thumbprint).collect())
            .map_err(PlatformError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::endpoint::{Endpoint, Source};

    #[test]
    fn document_urls_follow_an_override_only() {
        let e = Endpoint::new("127.0.0.1", 8080);
        let mut eps = Endpoints::explicit(e.clone(), e.clone(), e);
        let c = WireClient::new(eps.clone(), "/x");
        assert_eq!(
            c.document_url("http://168.63.129.16:80/machine/a?comp=config&type=x"),
            "http://127.0.0.1:8080/machine/a?comp=config&type=x"
        );
        assert_eq!(c.document_url("http://168.63.129.16/m"), "http://127.0.0.1:8080/m");
        assert_eq!(c.document_url("http://10.0.0.9/m"), "http://10.0.0.9/m");
        eps.source = Source::RouteTable;
        let c = WireClient::new(eps, "/x");
        assert_eq!(c.document_url("http://168.63.129.16:80/m"), "http://168.63.129.16:80/m");
    }
}
