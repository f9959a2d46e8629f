//! The one HTTP client factory (wire.md §2): explicit timeouts, a User-Agent, a bounded retry
//! policy with capped exponential backoff under an overall deadline, throttling, and the "goal
//! state is stale" answers (410, 400 `InvalidContainerConfiguration`) as their own error.
//!
//! Platform connections are kept for the next request when the endpoint keeps them open
//! ([`PLATFORM_IDLE`]; waagent sends `Connection: close` on every request, wala does not): an
//! endpoint that closes them costs nothing more than before, one that keeps them saves the daemon
//! two TCP connections per goal-state period. A kept connection is checked before it is used, and
//! a request that fails on one that the endpoint closed at that very moment is sent again at once
//! on a new connection (`HttpClient::call_kept`). Storage requests still say `Connection: close`.
//!
//! Two kinds of client, so that the proxy rule is structural: [`ClientKind::Platform`] (WireServer,
//! HostGAPlugin, IMDS) never uses a proxy, whatever the environment says; [`ClientKind::Storage`]
//! (blob downloads and uploads) follows waagent's `restutil._get_http_proxy`: with `HttpProxy.Host`
//! and `HttpProxy.Port` set, that proxy (hosts in the environment's `no_proxy` bypass it); with
//! `HttpProxy.Host` alone, no proxy at all (waagent then neither proxies nor reads the
//! environment; `check-config` reports it); with no `HttpProxy.Host`, the
//! `http_proxy`/`https_proxy`/`no_proxy` environment.
//!
//! HTTPS (storage) goes through native-tls, that is the system's OpenSSL and its root
//! certificates (so the distribution's FIPS and crypto policies apply), never a bundled root list;
//! and it goes there in the `wala-crypto` helper ([`crate::crypto::helper`]): a storage client
//! sends each `https` exchange to the helper, one process per attempt, so that the daemon does not
//! map libssl and libcrypto for the rest of its life. Retries, deadlines and size limits stay
//! here, in the caller's process; the helper makes exactly one exchange
//! ([`HttpClient::storage_with_tls`], the library's `https` feature).

use std::fmt;
use std::time::{Duration, Instant};

use crate::base::limits::Document;
use crate::base::logging::redact_sas;

/// How long an idle platform connection is kept for the next request: longer than the
/// goal-state period (6 s) and than `Wala.WireServerPollPeriod`'s default (30 s: the WireServer's
/// connection idles that long while Fast Track is quiet), well under the idle timeouts of Azure's
/// network (4 minutes).
pub const PLATFORM_IDLE: Duration = Duration::from_secs(45);

/// The timeout of one attempt unless the caller says otherwise ([`RetryPolicy::wire`], the
/// HostGAPlugin's single attempts). Clients are configured with it, so that a request with this
/// timeout needs no configuration of its own (which ureq makes by copying the agent's, on every
/// request).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The User-Agent every request carries.
pub fn user_agent() -> String {
    format!("WALinuxAgent/{} (wala)", crate::VERSION)
}

/// Statuses retried by default (wire.md §2.3 `RETRY_CODES`).
pub const RETRY_STATUSES: &[u16] = &[205, 206, 403, 429, 500, 501, 502, 503, 504, 507];
/// Statuses retried when IMDS is asked for the provisioning request: [`RETRY_STATUSES`], and 404
/// and 410, which IMDS sends while a new VM's metadata is not ready.
pub const IMDS_PROVISIONING_RETRY_STATUSES: &[u16] =
    &[205, 206, 403, 404, 410, 429, 500, 501, 502, 503, 504, 507];
/// Statuses that mean "throttled": the delay becomes the fixed throttle delay (wire.md §2.3).
pub const THROTTLE_STATUSES: &[u16] = &[403, 429, 503];
/// Statuses that count as success.
pub const OK_STATUSES: &[u16] = &[200, 201, 202];

/// Which network path a client is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// WireServer, HostGAPlugin, IMDS: never proxied.
    Platform,
    /// Azure storage (SAS URLs): proxied per configuration or environment.
    Storage,
}

/// A proxy for storage traffic, from `HttpProxy.Host`/`HttpProxy.Port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySetting {
    pub host: String,
    pub port: u16,
}

/// How storage traffic finds its proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageProxy {
    /// `HttpProxy.Host` and `HttpProxy.Port`.
    Configured(ProxySetting),
    /// `HttpProxy.Host` without a port: waagent connects directly (and ignores the environment).
    Direct,
    /// No `HttpProxy.Host`: the environment's `http_proxy`, `https_proxy` and `no_proxy`.
    Environment,
}

impl StorageProxy {
    /// waagent's rule (`restutil._get_http_proxy`, `_http_request`'s `use_proxy`).
    pub fn from_config(config: &crate::documents::conf::Config) -> Self {
        match (&config.http_proxy_host, config.http_proxy_port) {
            (Some(host), Some(port)) => Self::Configured(ProxySetting { host: host.clone(), port: port.0 }),
            (Some(_), None) => Self::Direct,
            (None, _) => Self::Environment,
        }
    }
}

/// The environment's `no_proxy` (either case) as its comma-separated entries.
fn env_no_proxy() -> Vec<String> {
    let value = std::env::var("no_proxy").or_else(|_| std::env::var("NO_PROXY")).unwrap_or_default();
    value.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect()
}

/// `HttpProxy.Host:HttpProxy.Port`, bypassed for the hosts in `no_proxy` (waagent's
/// `bypass_proxy` applies `no_proxy` to the configured proxy too).
fn configured_proxy(p: &ProxySetting, no_proxy: &[String]) -> Option<ureq::Proxy> {
    let mut builder = ureq::Proxy::builder(ureq::ProxyProtocol::Http).host(&p.host).port(p.port);
    for entry in no_proxy {
        builder = builder.no_proxy(entry);
    }
    builder.build().map_err(|e| log::warn!("ignoring HttpProxy {}:{}: {e}", p.host, p.port)).ok()
}

/// How hard a request is tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total while not throttled (at least 1).
    pub max_attempts: u32,
    /// Attempts in total once a request was throttled.
    pub throttled_max_attempts: u32,
    /// First delay; it doubles on each retry up to `max_delay`.
    pub base_delay: Duration,
    /// Cap of the exponential delay.
    pub max_delay: Duration,
    /// Fixed delay once throttled.
    pub throttle_delay: Duration,
    /// Connect + whole-exchange timeout of one attempt (cut to what is left of `deadline`).
    pub attempt_timeout: Duration,
    /// Overall budget: no attempt starts and no sleep runs past it.
    pub deadline: Duration,
    /// Statuses worth another attempt.
    pub retry_statuses: &'static [u16],
}

impl RetryPolicy {
    /// WireServer defaults: 6 attempts, 1 s doubling to 8 s, throttled 25 attempts 1 s apart,
    /// 10 s per attempt, 60 s overall.
    pub fn wire() -> Self {
        Self {
            max_attempts: 6,
            throttled_max_attempts: 25,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            throttle_delay: Duration::from_secs(1),
            attempt_timeout: ATTEMPT_TIMEOUT,
            deadline: Duration::from_secs(60),
            retry_statuses: RETRY_STATUSES,
        }
    }

    /// A single attempt (HostGAPlugin health and vmSettings).
    pub fn once(attempt_timeout: Duration) -> Self {
        Self {
            max_attempts: 1,
            throttled_max_attempts: 1,
            attempt_timeout,
            deadline: attempt_timeout,
            ..Self::wire()
        }
    }

    /// IMDS: a few seconds in total.
    pub fn imds() -> Self {
        Self {
            max_attempts: 3,
            throttled_max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(1),
            throttle_delay: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            retry_statuses: RETRY_STATUSES,
        }
    }

    /// IMDS asked for the provisioning request (no DVD could be read; sshd waits): up to 8
    /// attempts, 0.5 s doubling to 4 s, 5 s each, 30 s in all. IMDS answers 404 or 410 while a new
    /// VM's metadata is not there yet, so those are tried again too (as cloud-init and azure-init do).
    pub fn imds_provisioning() -> Self {
        Self {
            max_attempts: 8,
            throttled_max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(4),
            throttle_delay: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(30),
            retry_statuses: IMDS_PROVISIONING_RETRY_STATUSES,
        }
    }

    /// Every duration divided by `factor` (tests use this to run the real policy fast).
    pub fn scaled_down(mut self, factor: u32) -> Self {
        let f = factor.max(1);
        self.base_delay /= f;
        self.max_delay /= f;
        self.throttle_delay /= f;
        self.attempt_timeout /= f;
        self.deadline /= f;
        self
    }

    fn delay_before(&self, retry: u32, throttled: bool) -> Duration {
        if throttled {
            return self.throttle_delay;
        }
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// HTTP methods used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Method {
    Get,
    Post,
    Put,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        })
    }
}

/// One request to send.
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// What the response body is: its size limit (see [`crate::base::limits`]) and its name in errors.
    pub document: Document,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may carry the transport certificate; bodies may carry anything.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &redact_sas(&self.url))
            .field("headers", &names)
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .field("document", &self.document)
            .finish()
    }
}

impl Request {
    /// A GET whose answer is an [`Document::Response`] until [`Self::document`] says otherwise.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url.into(), None)
    }

    pub fn post(url: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self::new(Method::Post, url.into(), Some(body.into()))
    }

    pub fn put(url: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self::new(Method::Put, url.into(), Some(body.into()))
    }

    fn new(method: Method, url: String, body: Option<Vec<u8>>) -> Self {
        Self { method, url, headers: Vec::new(), body, document: Document::Response }
    }

    /// The response body is a `document`: it is read up to that kind's size limit, and a longer
    /// one is refused with [`HttpError::TooLarge`] (not retried).
    pub fn document(mut self, document: Document) -> Self {
        self.document = document;
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// A response with its whole body read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8, BOM removed).
    pub fn text(&self) -> String {
        // The strict check first: it is the fast one, and platform documents are valid UTF-8.
        let text = match std::str::from_utf8(&self.body) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&self.body),
        };
        text.strip_prefix('\u{feff}').unwrap_or(&text).to_string()
    }

    /// Whether [`Self::text`] is `text`, found without making it (`false` for a body that is not
    /// valid UTF-8, whose text [`Self::text`] would have to repair).
    pub fn text_is(&self, text: &str) -> bool {
        let body = self.body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&self.body);
        body == text.as_bytes()
    }
}

/// The buffer a streamed body goes through ([`HttpClient::stream_once`]): the most of it held in
/// memory at once, whatever its size.
pub const STREAM_CHUNK: usize = 64 * 1024;

/// The answer to [`HttpClient::stream_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    pub status: u16,
    /// Bytes of a 200 answer's body written out.
    pub written: u64,
    /// Any other answer's body (at most [`Document::Response`]'s limit), for the error message.
    pub body: Vec<u8>,
}

impl Streamed {
    /// The body of a non-200 answer as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request did not succeed. URLs are SAS-redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// 410 Gone or 400 `InvalidContainerConfiguration`: the goal state is stale; refetch it, then
    /// retry once with the new container ID and URLs.
    #[error("{method} {url}: the goal state is stale (HTTP {status})")]
    Stale { method: Method, url: String, status: u16 },
    /// A status that is not success and not worth (or out of) retries.
    #[error("{method} {url}: HTTP {status} after {attempts} attempt(s): {body}")]
    Status { method: Method, url: String, status: u16, attempts: u32, body: String },
    /// No HTTP answer (refused, reset, timeout, truncated body) after the last attempt.
    #[error("{method} {url}: {reason} after {attempts} attempt(s)")]
    Transport { method: Method, url: String, reason: String, attempts: u32 },
    /// The response body is longer than the size limit of the document asked for (not retried:
    /// the same document would come back).
    #[error("{method} {url}: {source}")]
    TooLarge {
        method: Method,
        url: String,
        #[source]
        source: crate::base::limits::TooLarge,
    },
    /// A streamed body could not be written where it was going (a full disk, say).
    #[error("{method} {url}: writing the body: {reason}")]
    Write { method: Method, url: String, reason: String },
    /// The overall deadline ran out before a success.
    #[error(
        "{method} {url}: gave up after {attempts} attempt(s) in {elapsed_ms} ms (deadline); last: {last}"
    )]
    Deadline { method: Method, url: String, attempts: u32, elapsed_ms: u128, last: String },
}

impl HttpError {
    /// Whether this is the "goal state is stale" answer.
    pub fn is_stale(&self) -> bool {
        matches!(self, HttpError::Stale { .. })
    }

    /// The HTTP status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Stale { status, .. } | HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An HTTP client of one [`ClientKind`].
#[derive(Debug, Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
    kind: ClientKind,
    /// Where `https` URLs go: none (the platform's client: unsupported), the `wala-crypto` helper
    /// (with this proxy setting), or this process's TLS connector (in the helper itself).
    https: Https,
}

#[derive(Debug, Clone)]
enum Https {
    Unsupported,
    Helper(crate::crypto::helper::ProxyChoice),
    #[cfg(feature = "https")]
    InProcess,
}

impl HttpClient {
    /// A client for the WireServer, HostGAPlugin and IMDS: never proxied.
    pub fn platform() -> Self {
        // The WireServer, the HostGAPlugin and IMDS speak plain HTTP and are never proxied: a
        // TCP-only connector, so that a program talking only to them (wala-provision) does not
        // link the TLS library, whose relocations alone cost each such process a quarter of a
        // second at boot under emulation (docs/boot.md). An https URL fails as unsupported.
        //
        // Every platform client of the process shares one agent, so that its kept connections
        // (one per endpoint) serve the goal-state poll, the status heartbeat, telemetry and health
        // alike.
        static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
        let agent = AGENT.get_or_init(|| {
            let config = Self::config(ClientKind::Platform, None).build();
            ureq::Agent::with_parts(config, NoticedTcpConnector, LiteralResolver::default())
        });
        Self { agent: agent.clone(), kind: ClientKind::Platform, https: Https::Unsupported }
    }

    /// A client for storage, proxied as `proxy` says ([`StorageProxy`]). Plain `http` URLs are
    /// sent from this process; every `https` exchange is sent by the `wala-crypto` helper, so
    /// that this process links no TLS library (a TCP connector, behind the proxy's CONNECT).
    pub fn storage(proxy: &StorageProxy) -> Self {
        use ureq::unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector};
        let config = Self::config(ClientKind::Storage, Self::storage_proxy(proxy)).build();
        let connector = ().chain(ConnectProxyConnector::default()).chain(TcpConnector::default());
        let agent = ureq::Agent::with_parts(
            config,
            connector,
            ureq::unversioned::resolver::DefaultResolver::default(),
        );
        Self { agent, kind: ClientKind::Storage, https: Https::Helper(proxy.into()) }
    }

    fn storage_proxy(proxy: &StorageProxy) -> Option<ureq::Proxy> {
        match proxy {
            StorageProxy::Configured(p) => configured_proxy(p, &env_no_proxy()),
            StorageProxy::Direct => None,
            StorageProxy::Environment => ureq::Proxy::try_from_env(),
        }
    }

    /// The helper's proxy setting when `url` is to be sent by the `wala-crypto` helper.
    fn through_helper(&self, url: &str) -> Option<&crate::crypto::helper::ProxyChoice> {
        match &self.https {
            Https::Helper(proxy) if is_https(url) => Some(proxy),
            _ => None,
        }
    }

    /// The settings both kinds share.
    fn config(
        kind: ClientKind,
        proxy: Option<ureq::Proxy>,
    ) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
        // ureq allocates and zeroes both buffers for every connection (128 KiB each by default).
        // Platform documents are small and their headers short, so 16 KiB buffers do; storage
        // keeps the default for downloads. Platform connections are kept (one per endpoint) for
        // the next request; storage connections are not.
        let (buffer, kept) = match kind {
            ClientKind::Platform => (16 * 1024, 4),
            ClientKind::Storage => (128 * 1024, 0),
        };
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(proxy)
            .user_agent(user_agent())
            .max_idle_connections(kept)
            .max_idle_connections_per_host(1)
            .max_idle_age(PLATFORM_IDLE)
            .input_buffer_size(buffer)
            .output_buffer_size(buffer)
            .max_redirects(0)
            .timeout_connect(Some(ATTEMPT_TIMEOUT))
            .timeout_global(Some(ATTEMPT_TIMEOUT))
    }

    /// Which kind this client is.
    pub fn kind(&self) -> ClientKind {
        self.kind
    }

    /// Send `request` once and return whatever status came back (no retry, no status mapping).
    pub fn send_once(&self, request: &Request, timeout: Duration) -> Result<Response, HttpError> {
        self.attempt(request, timeout).map_err(|failure| match failure {
            Failure::TooLarge(source) => {
                HttpError::TooLarge { method: request.method, url: redact_sas(&request.url), source }
            }
            Failure::Transport(reason) => HttpError::Transport {
                method: request.method,
                url: redact_sas(&request.url),
                reason,
                attempts: 1,
            },
        })
    }

    /// Send `request` once; a 200 answer's body is streamed into `out` through one fixed
    /// [`STREAM_CHUNK`] buffer (never held whole), and refused past `limit` bytes (at once when
    /// the announced `Content-Length` is already over it) or when it ends short of its
    /// `Content-Length`. Any other status comes back with its body read into memory under the
    /// [`Document::Response`] limit, for the error message. Nothing is retried: the caller owns
    /// what was written and decides (a download tries its next channel or URI).
    pub fn stream_once(
        &self,
        request: &Request,
        timeout: Duration,
        limit: u64,
        out: &mut dyn std::io::Write,
    ) -> Result<Streamed, HttpError> {
        let url = || redact_sas(&request.url);
        let method = request.method;
        let transport = |reason: String| HttpError::Transport { method, url: url(), reason, attempts: 1 };
        log::debug!("{method} {} (streamed, limit {limit} bytes)", url());
        if let Some(proxy) = self.through_helper(&request.url) {
            return helper_stream(request, proxy, timeout, limit, out);
        }
        let mut resp = self.call_kept(request, timeout).map_err(|e| transport(redact_sas(&e.to_string())))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp
                .body_mut()
                .with_config()
                .limit(Document::Response.limit())
                .read_to_vec()
                .unwrap_or_default();
            return Ok(Streamed { status, written: 0, body });
        }
        let too_large = || HttpError::TooLarge {
            method,
            url: url(),
            source: crate::base::limits::TooLarge { document: request.document.name(), limit },
        };
        let announced = resp.body().content_length();
        if announced.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut reader = resp.body_mut().as_reader();
        let mut buf = vec![0u8; STREAM_CHUNK];
        let mut written: u64 = 0;
        loop {
            let n = match std::io::Read::read(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(transport(format!(
                        "reading the body after {written} byte(s): {}",
                        redact_sas(&e.to_string())
                    )))
                }
            };
            written += n as u64;
            if written > limit {
                return Err(too_large());
            }
            out.write_all(&buf[..n]).map_err(|e| HttpError::Write {
                method,
                url: url(),
                reason: e.to_string(),
            })?;
        }
        if let Some(announced) = announced.filter(|&n| n != written) {
            return Err(transport(format!(
                "the body ended after {written} of its {announced} announced byte(s)"
            )));
        }
        log::debug!("{method} {}: HTTP 200, {written} byte(s) streamed", url());
        Ok(Streamed { status, written, body: Vec::new() })
    }

    /// Send `request` under `policy` until it succeeds (200/201/202), fails for good, or the
    /// deadline runs out.
    pub fn send(&self, request: &Request, policy: &RetryPolicy) -> Result<Response, HttpError> {
        let start = Instant::now();
        let url = || redact_sas(&request.url);
        let method = request.method;
        let mut throttled = false;
        let mut attempts = 0u32;
        loop {
            let remaining = policy.deadline.saturating_sub(start.elapsed());
            attempts += 1;
            let outcome =
                self.attempt(request, policy.attempt_timeout.min(remaining).max(Duration::from_millis(1)));
            let last = match outcome {
                Ok(resp) if OK_STATUSES.contains(&resp.status) => return Ok(resp),
                Ok(resp) => {
                    let body = resp.text();
                    if resp.status == 410
                        || (resp.status == 400 && body.contains("InvalidContainerConfiguration"))
                    {
                        return Err(HttpError::Stale { method, url: url(), status: resp.status });
                    }
                    let excerpt: String = redact_sas(&body).chars().take(200).collect();
                    if !policy.retry_statuses.contains(&resp.status) {
                        return Err(HttpError::Status {
                            method,
                            url: url(),
                            status: resp.status,
                            attempts,
                            body: excerpt,
                        });
                    }
                    throttled |= THROTTLE_STATUSES.contains(&resp.status);
                    let max = if throttled { policy.throttled_max_attempts } else { policy.max_attempts };
                    if attempts >= max.max(1) {
                        return Err(HttpError::Status {
                            method,
                            url: url(),
                            status: resp.status,
                            attempts,
                            body: excerpt,
                        });
                    }
                    format!("HTTP {}", resp.status)
                }
                Err(Failure::TooLarge(source)) => {
                    return Err(HttpError::TooLarge { method, url: url(), source })
                }
                Err(Failure::Transport(reason)) => {
                    let max = if throttled { policy.throttled_max_attempts } else { policy.max_attempts };
                    if attempts >= max.max(1) {
                        return Err(HttpError::Transport { method, url: url(), reason, attempts });
                    }
                    reason
                }
            };
            let delay = policy.delay_before(attempts, throttled);
            if start.elapsed() + delay >= policy.deadline {
                return Err(HttpError::Deadline {
                    method,
                    url: url(),
                    attempts,
                    elapsed_ms: start.elapsed().as_millis(),
                    last,
                });
            }
            log::debug!("{method} {}: {last}; retrying in {} ms", url(), delay.as_millis());
            std::thread::sleep(delay);
        }
    }

    /// Send `request` with its headers and `timeout`; the body is left unread.
    fn call(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let close = self.kind == ClientKind::Storage;
        match request.method {
            Method::Get => prepare(self.agent.get(&request.url), request, timeout, close).call(),
            Method::Put => prepare(self.agent.put(&request.url), request, timeout, close)
                .send(request.body.as_deref().unwrap_or_default()),
            Method::Post => prepare(self.agent.post(&request.url), request, timeout, close)
                .send(request.body.as_deref().unwrap_or_default()),
        }
    }

    /// [`Self::call`], sent once more at once on a new connection when it failed without an
    /// answer on a kept connection: the endpoint may have closed it between ureq's check that it
    /// is open and the request (a kept connection is used only after that check, so this is that
    /// moment's race, not a dead connection found late). A timeout is not sent again: it used the
    /// attempt's time. A failure on a new connection is the caller's, as before.
    fn call_kept(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let started = Instant::now();
        NEW_CONNECTION.set(false);
        match self.call(request, timeout) {
            Err(e)
                if self.kind == ClientKind::Platform
                    && !NEW_CONNECTION.get()
                    && !matches!(e, ureq::Error::Timeout(_)) =>
            {
                log::debug!(
                    "{} {}: {} on a kept connection; sending it again on a new one",
                    request.method,
                    redact_sas(&request.url),
                    redact_sas(&e.to_string())
                );
                self.call(request, timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1)))
            }
            other => other,
        }
    }

    /// One exchange; `Err` is a transport failure described in one line, or a body over the limit.
    fn attempt(&self, request: &Request, timeout: Duration) -> Result<Response, Failure> {
        log::debug!(
            "{} {} ({} header(s), {} body byte(s))",
            request.method,
            redact_sas(&request.url),
            request.headers.len(),
            request.body.as_ref().map_or(0, Vec::len)
        );
        if let Some(proxy) = self.through_helper(&request.url) {
            return helper_attempt(request, proxy, timeout);
        }
        let mut resp =
            self.call_kept(request, timeout).map_err(|e| Failure::Transport(redact_sas(&e.to_string())))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let limit = request.document.limit();
        // Room for the announced length at once (up to 64 KiB; longer bodies grow as they come):
        // a platform document is read in one pass and one that finds its end, not in steps.
        let announced = resp.body().content_length().unwrap_or(0).min(limit).min(STREAM_CHUNK as u64);
        let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
        let read =
            std::io::Read::read_to_end(&mut resp.body_mut().with_config().limit(limit).reader(), &mut body);
        read.map_err(|e| match ureq::Error::from(e) {
            ureq::Error::BodyExceedsLimit(_) => Failure::TooLarge(request.document.too_large()),
            e => Failure::Transport(format!(
                "reading the body of HTTP {status}: {}",
                redact_sas(&e.to_string())
            )),
        })?;
        log::debug!("{} {}: HTTP {status}, {} byte(s)", request.method, redact_sas(&request.url), body.len());
        Ok(Response { status, headers, body })
    }
}

/// The TLS storage client, in a module of its own so that a program that never makes one (the
/// daemon) does not link the TLS library, even in a build without link-time optimisation.
#[cfg(feature = "https")]
mod with_tls {
    use super::{ClientKind, HttpClient, Https, StorageProxy};

    impl HttpClient {
        /// A storage client that makes `https` exchanges in this process, through native-tls
        /// (the `wala-crypto` helper's own; the library's `https` feature).
        pub fn storage_with_tls(proxy: &StorageProxy) -> Self {
            let config = Self::config(ClientKind::Storage, Self::storage_proxy(proxy)).tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::NativeTls)
                    .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                    .build(),
            );
            Self { agent: config.build().into(), kind: ClientKind::Storage, https: Https::InProcess }
        }
    }
}

fn is_https(url: &str) -> bool {
    url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// The [`crate::crypto::helper::Call`] of one exchange of `request`.
fn helper_call(
    request: &Request,
    proxy: &crate::crypto::helper::ProxyChoice,
    timeout: Duration,
    stream: Option<u64>,
) -> crate::crypto::helper::Call {
    crate::crypto::helper::Call::Https {
        method: request.method,
        url: request.url.clone(),
        headers: request.headers.clone(),
        document: request.document,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        proxy: proxy.clone(),
        stream,
    }
}

/// One exchange of `request` sent by the `wala-crypto` helper.
fn helper_attempt(
    request: &Request,
    proxy: &crate::crypto::helper::ProxyChoice,
    timeout: Duration,
) -> Result<Response, Failure> {
    use crate::crypto::helper::{self as helper, Answer, HelperError};
    let call = helper_call(request, proxy, timeout, None);
    let mut no_body = |_: &[u8]| Err(std::io::Error::other("a body frame outside a stream"));
    let body = request.body.as_deref().unwrap_or_default();
    match helper::call(&call, body, helper::https_timeout(timeout), &mut no_body) {
        Ok(Answer::Http { status, headers, body, .. }) => {
            let body = helper::unbase64(&body).map_err(|e| Failure::Transport(e.to_string()))?;
            if body.len() as u64 > request.document.limit() {
                return Err(Failure::TooLarge(request.document.too_large()));
            }
            log::debug!(
                "{} {}: HTTP {status}, {} byte(s)",
                request.method,
                redact_sas(&request.url),
                body.len()
            );
            Ok(Response { status, headers, body })
        }
        Ok(_) => Err(Failure::Transport(format!("{}: an answer of another kind", helper::PROGRAM))),
        Err(HelperError::TooLarge { .. }) => Err(Failure::TooLarge(request.document.too_large())),
        Err(e) => Err(Failure::Transport(redact_sas(&e.to_string()))),
    }
}

/// [`HttpClient::stream_once`] of `request` by the `wala-crypto` helper: its body frames are
/// written to `out` as they come, and counted against `limit` here too.
fn helper_stream(
    request: &Request,
    proxy: &crate::crypto::helper::ProxyChoice,
    timeout: Duration,
    limit: u64,
    out: &mut dyn std::io::Write,
) -> Result<Streamed, HttpError> {
    use crate::crypto::helper::{self as helper, Answer, HelperError};
    let method = request.method;
    let url = || redact_sas(&request.url);
    let too_large = || HttpError::TooLarge {
        method,
        url: url(),
        source: crate::base::limits::TooLarge { document: request.document.name(), limit },
    };
    let call = helper_call(request, proxy, timeout, Some(limit));
    let mut written: u64 = 0;
    let mut over = false;
    let mut sink = |chunk: &[u8]| {
        written += chunk.len() as u64;
        if written > limit {
            over = true;
            return Err(std::io::Error::other("over the limit"));
        }
        out.write_all(chunk)
    };
    let body = request.body.as_deref().unwrap_or_default();
    let outcome = helper::call(&call, body, helper::https_timeout(timeout), &mut sink);
    match outcome {
        _ if over => Err(too_large()),
        Ok(Answer::Http { status, body, streamed, .. }) => {
            if streamed != written {
                return Err(HttpError::Transport {
                    method,
                    url: url(),
                    reason: format!("{} sent {written} of {streamed} byte(s)", helper::PROGRAM),
                    attempts: 1,
                });
            }
            let body = helper::unbase64(&body).unwrap_or_default();
            log::debug!("{method} {}: HTTP {status}, {written} byte(s) streamed", url());
            Ok(Streamed { status, written, body })
        }
        Ok(_) => Err(HttpError::Transport {
            method,
            url: url(),
            reason: format!("{}: an answer of another kind", helper::PROGRAM),
            attempts: 1,
        }),
        Err(HelperError::TooLarge { .. }) => Err(too_large()),
        Err(HelperError::Write(reason)) => Err(HttpError::Write { method, url: url(), reason }),
        Err(e) => {
            Err(HttpError::Transport { method, url: url(), reason: redact_sas(&e.to_string()), attempts: 1 })
        }
    }
}

/// The platform's resolver: an address literal (the WireServer, HostGAPlugin and IMDS are always
/// addressed by IP) is its own answer; only a name goes to the system resolver. ureq's default
/// resolver, given a timeout, resolves on a new thread for every request, even for a literal:
/// that thread was most of the CPU of an idle poll (docs/daemon.md).
#[derive(Debug, Default)]
struct LiteralResolver {
    names: ureq::unversioned::resolver::DefaultResolver,
}

impl ureq::unversioned::resolver::Resolver for LiteralResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        if let Some(addr) = literal_socket_addr(uri) {
            let mut out = self.empty();
            out.push(addr);
            return Ok(out);
        }
        self.names.resolve(uri, config, timeout)
    }
}

/// The socket address of an `http` URI whose host is an IPv4 or IPv6 literal.
fn literal_socket_addr(uri: &ureq::http::Uri) -> Option<std::net::SocketAddr> {
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let authority = uri.authority()?;
    let host = authority.host();
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let ip: std::net::IpAddr = host.parse().ok()?;
    Some(std::net::SocketAddr::new(ip, authority.port_u16().unwrap_or(80)))
}

thread_local! {
    /// Whether the last platform request of this thread opened a new connection (set by
    /// [`NoticedTcpConnector`]; ureq connects in the calling thread).
    static NEW_CONNECTION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The platform's TCP connector: connections of the kept kind ([`super::kept_tcp`], which checks
/// and bounds them in fewer system calls than ureq's own), each noted in [`NEW_CONNECTION`]: a
/// request for which it opened none went over a kept one.
#[derive(Debug, Default)]
struct NoticedTcpConnector;

impl ureq::unversioned::transport::Connector<()> for NoticedTcpConnector {
    type Out = super::kept_tcp::KeptTcp;

    fn connect(
        &self,
        details: &ureq::unversioned::transport::ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        // Set before connecting: a connection that could not be opened is not a kept one either.
        NEW_CONNECTION.set(true);
        super::kept_tcp::KeptTcp::connect(details).map(Some)
    }
}

/// Why one exchange failed.
enum Failure {
    /// No usable answer, described in one line.
    Transport(String),
    /// The body is longer than the document's limit.
    TooLarge(crate::base::limits::TooLarge),
}

/// `request`'s headers, `Connection: close` when `close`, and the timeouts on a ureq request.
fn prepare<B>(
    mut builder: ureq::RequestBuilder<B>,
    request: &Request,
    timeout: Duration,
    close: bool,
) -> ureq::RequestBuilder<B> {
    for (n, v) in &request.headers {
        builder = builder.header(n.as_str(), v.as_str());
    }
    if close {
        builder = builder.header("Connection", "close");
    }
    if timeout == ATTEMPT_TIMEOUT {
        return builder; // the client's own timeouts
    }
    builder.config().timeout_connect(Some(timeout)).timeout_global(Some(timeout)).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::wire();
        let d: Vec<u64> = (1..=6).map(|n| p.delay_before(n, false).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 8, 8]);
        assert_eq!(p.delay_before(40, false), Duration::from_secs(8));
        assert_eq!(p.delay_before(3, true), Duration::from_secs(1));
    }

    /// A loopback server answering every request with `body_len` bytes; returns its URL and a
    /// counter of the connections it accepted.
    fn big_answer_server(body_len: usize) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/machine/?comp=goalstate", listener.local_addr().expect("addr"));
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(8) {
                let Ok(mut stream) = stream else { return };
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n");
                let _ = stream.write_all(head.as_bytes());
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = body_len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if stream.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                    left -= n;
                }
            }
        });
        (url, count)
    }

    #[test]
    fn a_request_with_the_usual_timeout_gets_it_from_its_client() {
        // prepare() leaves a request whose timeout is ATTEMPT_TIMEOUT without a configuration of
        // its own: the clients must carry that timeout themselves.
        for client in [HttpClient::platform(), HttpClient::storage(&StorageProxy::Direct)] {
            let t = client.agent.config().timeouts();
            assert_eq!(
                (t.global, t.connect),
                (Some(ATTEMPT_TIMEOUT), Some(ATTEMPT_TIMEOUT)),
                "{:?}",
                client.kind
            );
        }
        assert_eq!(RetryPolicy::wire().attempt_timeout, ATTEMPT_TIMEOUT);
    }

    #[test]
    fn text_is_compares_what_text_would_give() {
        let r = |body: &[u8]| Response { status: 200, headers: Vec::new(), body: body.to_vec() };
        assert!(r(b"<GoalState/>").text_is("<GoalState/>"));
        assert!(r("\u{feff}<GoalState/>".as_bytes()).text_is("<GoalState/>"), "the BOM is not text");
        assert!(!r(b"<GoalState/>").text_is("<GoalState />"));
        assert!(!r(b"<GoalState/>").text_is(""));
        assert!(r(b"").text_is(""));
        let bad = r(b"<a>\xff</a>");
        assert!(!bad.text_is(&bad.text()), "a body that needs repair is never the same text");
    }

    /// A loopback server answering each of `answers` (a whole HTTP answer) on a connection of
    /// its own and closing it; returns its URL.
    fn raw_answers(answers: Vec<Vec<u8>>) -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/x", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for (stream, answer) in listener.incoming().zip(answers) {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = stream.write_all(&answer);
            }
        });
        url
    }

    #[test]
    fn bodies_are_read_whole_whatever_their_length_says() {
        let long: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let with_length = |body: &[u8]| {
            let mut a = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            a.extend_from_slice(body);
            a
        };
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for part in long.chunks(70_000) {
            chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            chunked.extend_from_slice(part);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let mut close_delimited = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        close_delimited.extend_from_slice(&long);
        let mut short = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n".to_vec();
        short.extend_from_slice(&long[..100]);
        let url = raw_answers(vec![
            with_length(b"<GoalState/>"),
            with_length(&long),
            chunked,
            close_delimited,
            with_length(b""),
            short,
        ]);
        let client = HttpClient::storage(&StorageProxy::Direct);
        let get =
            || client.send_once(&Request::get(&url).document(Document::Certificates), Duration::from_secs(5));
        assert_eq!(get().expect("short").body, b"<GoalState/>");
        assert_eq!(get().expect("over 64 KiB").body, long, "longer than the room made at first");
        assert_eq!(get().expect("chunked").body, long, "no length announced");
        assert_eq!(get().expect("to the close").body, long);
        assert_eq!(get().expect("empty").body, b"");
        let err = get().expect_err("shorter than announced");
        assert!(matches!(err, HttpError::Transport { .. }), "{err:?}");
    }

    /// A loopback server that runs `serve` on each connection it accepts (in turn), and counts
    /// the connections; returns its URL and the count.
    fn serving(
        serve: impl Fn(std::net::TcpStream, usize) + Send + 'static,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/x", listener.local_addr().expect("addr"));
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                serve(stream, n);
            }
        });
        (url, count)
    }

    /// Read one request head (and a body of `Content-Length`) from `reader`; `None` at the end.
    fn read_request(reader: &mut impl std::io::BufRead) -> Option<Vec<u8>> {
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().ok()?;
            }
            if line == "\r\n" {
                let mut body = vec![0; length];
                reader.read_exact(&mut body).ok()?;
                return Some(body);
            }
        }
    }

    #[test]
    fn a_platform_answer_that_trickles_in_is_read_whole() {
        use std::io::Write;
        let (url, _) = serving(|mut stream, _| {
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            while read_request(&mut reader).is_some() {
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
                for piece in answer.chunks(7) {
                    std::thread::sleep(Duration::from_millis(10));
                    if stream.write_all(piece).is_err() {
                        return;
                    }
                }
            }
        });
        let client = HttpClient::platform();
        for _ in 0..2 {
            assert_eq!(
                client.send_once(&Request::get(&url), Duration::from_secs(5)).expect("answer").body,
                b"0123456789"
            );
        }
    }

    #[test]
    fn a_platform_endpoint_that_never_answers_times_out_on_time() {
        let (url, _) = serving(|stream, _| {
            let mut reader = std::io::BufReader::new(stream);
            let _ = read_request(&mut reader);
            std::thread::sleep(Duration::from_secs(3));
        });
        let start = Instant::now();
        let err = HttpClient::platform()
            .send_once(&Request::get(&url), Duration::from_millis(300))
            .expect_err("no answer");
        let took = start.elapsed();
        assert!(matches!(err, HttpError::Transport { .. }), "{err:?}");
        assert!(err.to_string().contains("timeout") || err.to_string().contains("timed out"), "{err}");
        assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(2500), "{took:?}");
    }

    #[test]
    fn a_large_upload_to_a_slow_reader_is_sent_whole() {
        use std::io::{Read, Write};
        // More than the socket buffers hold: the sender must wait for room, more than once.
        let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let expected = body.clone();
        let (url, _) = serving(move |mut stream, _| {
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            let mut length = 0usize;
            loop {
                line.clear();
                if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 {
                    return;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut got = Vec::new();
            let mut chunk = vec![0u8; 256 * 1024];
            while got.len() < length {
                std::thread::sleep(Duration::from_millis(5));
                let n = reader.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    return;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            let answer = if got == expected { "same" } else { "different" };
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}", answer.len());
        });
        let resp = HttpClient::platform()
            .send_once(&Request::put(&url, body), Duration::from_secs(20))
            .expect("put");
        assert_eq!(resp.body, b"same");
    }

    #[test]
    fn a_kept_connection_with_bytes_after_the_answer_is_not_used_again() {
        use std::io::Write;
        // The first connection's answer is followed by bytes nobody asked for: the next request
        // must go over a new connection (and get its own answer, not those bytes).
        let (url, count) = serving(|mut stream, n| {
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            while read_request(&mut reader).is_some() {
                let extra: &[u8] =
                    if n == 0 { b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray" } else { b"" };
                let answer =
                    [format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{n}{n}").as_bytes(), extra]
                        .concat();
                if stream.write_all(&answer).is_err() {
                    return;
                }
            }
        });
        let client = HttpClient::platform();
        let timeout = Duration::from_secs(5);
        assert_eq!(client.send_once(&Request::get(&url), timeout).expect("first").body, b"00");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(client.send_once(&Request::get(&url), timeout).expect("second").body, b"11");
        assert_eq!(client.send_once(&Request::get(&url), timeout).expect("third").body, b"11", "kept");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn the_storage_proxy_follows_waagents_rule() {
        use crate::documents::conf::{Config, Port};
        let with = |host: Option<&str>, port: Option<u16>| {
            StorageProxy::from_config(&Config {
                http_proxy_host: host.map(str::to_string),
                http_proxy_port: port.map(Port),
                ..Config::default()
            })
        };
        assert_eq!(
            with(Some("proxy.corp"), Some(3128)),
            StorageProxy::Configured(ProxySetting { host: "proxy.corp".into(), port: 3128 })
        );
        // A host without a port: direct, and the environment is not consulted either.
        assert_eq!(with(Some("proxy.corp"), None), StorageProxy::Direct);
        assert_eq!(with(None, Some(3128)), StorageProxy::Environment);
        assert_eq!(with(None, None), StorageProxy::Environment);
    }

    #[test]
    fn no_proxy_applies_to_the_configured_proxy() {
        let p = ProxySetting { host: "proxy.corp".into(), port: 3128 };
        let proxy =
            configured_proxy(&p, &[".blob.core.windows.net".into(), "10.1.2.3".into()]).expect("proxy");
        assert_eq!((proxy.host(), proxy.port()), ("proxy.corp", 3128));
        let uri = |u: &str| u.parse::<ureq::http::Uri>().expect("uri");
        assert!(proxy.is_no_proxy(&uri("https://acct.blob.core.windows.net/c/b")));
        assert!(proxy.is_no_proxy(&uri("http://10.1.2.3/x")));
        assert!(!proxy.is_no_proxy(&uri("https://example.org/x")));
        let none = configured_proxy(&p, &[]).expect("proxy");
        assert!(!none.is_no_proxy(&uri("https://acct.blob.core.windows.net/c/b")));
    }

    #[test]
    fn a_body_over_the_documents_limit_is_refused_once_and_named() {
        let (url, count) = big_answer_server(2 * 1024 * 1024);
        let client = HttpClient::platform();
        let policy = RetryPolicy::wire().scaled_down(100);
        let err =
            client.send(&Request::get(&url).document(Document::GoalState), &policy).expect_err("too large");
        assert!(matches!(err, HttpError::TooLarge { .. }), "{err:?}");
        assert!(
            err.to_string().ends_with("the GoalState is larger than its limit of 1048576 bytes"),
            "{err}"
        );
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1, "not retried");
        // The same body is fine for a document allowed more.
        let resp = client.send(&Request::get(&url).document(Document::Certificates), &policy).expect("fits");
        assert_eq!(resp.body.len(), 2 * 1024 * 1024);
        // And a request that names no document gets the small default.
        let err = client.send_once(&Request::get(&url), Duration::from_secs(5)).expect_err("default");
        assert!(err.to_string().contains("HTTP response is larger than its limit"), "{err}");
    }

    #[test]
    fn address_literals_resolve_without_the_system_resolver() {
        let addr = |u: &str| literal_socket_addr(&u.parse::<ureq::http::Uri>().expect("uri"));
        assert_eq!(
            addr("http://168.63.129.16/machine/?comp=goalstate"),
            Some("168.63.129.16:80".parse().expect("a"))
        );
        assert_eq!(addr("http://127.0.0.1:32526/vmSettings"), Some("127.0.0.1:32526".parse().expect("a")));
        assert_eq!(addr("http://[::1]:8080/x"), Some("[::1]:8080".parse().expect("a")));
        // Names, and anything but plain http, go to the system resolver.
        assert_eq!(addr("http://localhost:80/x"), None);
        assert_eq!(addr("https://10.0.0.1/x"), None);
    }

    #[test]
    fn request_debug_hides_header_values_and_signature() {
        let r =
            Request::get("http://h/x?sv=1&sig=SECRET").header("x-ms-guest-agent-public-x509-cert", "MIIB");
        let s = format!("{r:?}");
        assert!(!s.contains("SECRET") && !s.contains("MIIB"), "{s}");
    }

    /// A server that answers the first request and keeps the connection, then closes it on
    /// reading the second (the moment's race of an endpoint closing an idle connection), then
    /// answers on a new connection. Returns its URL and the requests it read per connection.
    fn closing_at_the_second_request() -> (String, std::sync::Arc<std::sync::Mutex<Vec<usize>>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/vmSettings", listener.local_addr().expect("addr"));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().take(2).enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut requests = 0;
                loop {
                    let mut line = String::new();
                    let mut head = 0;
                    while reader.read_line(&mut line).is_ok_and(|k| k > 2) {
                        head += 1;
                        line.clear();
                    }
                    if head == 0 {
                        break;
                    }
                    requests += 1;
                    if n == 0 && requests == 2 {
                        break; // closed without an answer
                    }
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
                log.lock().expect("lock").push(requests);
            }
        });
        (url, seen)
    }

    #[test]
    fn a_request_that_meets_a_close_on_a_kept_connection_is_sent_again_on_a_new_one() {
        let (url, seen) = closing_at_the_second_request();
        let client = HttpClient::platform();
        let timeout = Duration::from_secs(5);
        assert_eq!(client.send_once(&Request::get(&url), timeout).expect("first").body, b"ok");
        // Sent on the kept connection, which the server closes; sent again at once on a new one.
        assert_eq!(client.send_once(&Request::get(&url), timeout).expect("second").body, b"ok");
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.lock().expect("lock").is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(seen.lock().expect("lock")[0], 2, "both requests on the first connection");
    }
}
