//! The HostGAPlugin client (wire.md §6.1–§6.3): versions, health and vmSettings fetch. Never
//! proxied. vmSettings is returned raw with its ETag; parsing it is elsewhere.

use std::time::Duration;

use crate::base::limits::Document;
use crate::platform::endpoint::Endpoint;
use crate::platform::http::{HttpClient, HttpError, Request, RetryPolicy};

/// The HostGAPlugin API version (`x-ms-version`).
pub const API_VERSION: &str = "2015-09-01";

/// Why a HostGAPlugin call failed.
#[derive(Debug, thiserror::Error)]
pub enum HostGaPluginError {
    #[error("HostGAPlugin: {0}")]
    Http(#[from] HttpError),
    /// A 200 vmSettings answer without the required ETag header.
    #[error("HostGAPlugin vmSettings: HTTP 200 without an ETag")]
    MissingEtag,
    /// Any status other than 200, 304, 404, 410 and 400 `InvalidContainerConfiguration`. 502 is the
    /// HostGAPlugin's own internal error.
    #[error("HostGAPlugin vmSettings: HTTP {status}{}: {body}", if *status == 502 { " [Internal error in HGAP]" } else { "" })]
    Status { status: u16, body: String },
}

impl HostGaPluginError {
    /// Whether the goal state is stale (refetch it for a new container ID, then retry once).
    pub fn is_stale(&self) -> bool {
        matches!(self, HostGaPluginError::Http(e) if e.is_stale())
    }
}

/// The result of a vmSettings fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmSettings {
    /// New settings: the raw JSON and its ETag.
    Updated { etag: String, json: String },
    /// 304: unchanged since the ETag sent.
    NotModified,
    /// 404: this HostGAPlugin has no vmSettings (Fast Track off; check again after 6 h).
    Unsupported,
}

/// Who the agent is to the HostGAPlugin: the goal state's container ID and ConfigName.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerIdentity {
    pub container_id: String,
    pub config_name: Option<String>,
}

impl ContainerIdentity {
    /// From a goal state.
    pub fn of(gs: &crate::documents::wire::GoalState) -> Self {
        Self { container_id: gs.container_id.clone(), config_name: gs.config_name.clone() }
    }
}

/// The HostGAPlugin client.
#[derive(Debug, Clone)]
pub struct HostGaPluginClient {
    endpoint: Endpoint,
    http: HttpClient,
    policy: RetryPolicy,
    single_timeout: Duration,
}

impl HostGaPluginClient {
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            http: HttpClient::platform(),
            policy: RetryPolicy::wire(),
            single_timeout: Duration::from_secs(10),
        }
    }

    /// Replace the retry policy of `versions` (and the single-attempt timeout of the others).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.single_timeout = policy.attempt_timeout;
        self.policy = policy;
        self
    }

    fn url(&self, path: &str) -> String {
        self.endpoint.url(path)
    }

    fn with_identity(request: Request, who: &ContainerIdentity) -> Request {
        let r =
            request.header("x-ms-version", API_VERSION).header("x-ms-containerid", who.container_id.as_str());
        match &who.config_name {
            Some(name) => r.header("x-ms-host-config-name", name.as_str()),
            None => r,
        }
    }

    /// `GET /versions`: the JSON array of API versions, as text.
    pub fn versions(&self, who: &ContainerIdentity) -> Result<String, HostGaPluginError> {
        let request = Request::get(self.url("/versions"))
            .document(Document::Versions)
            .header("x-ms-containerid", who.container_id.as_str());
        Ok(self.http.send(&request, &self.policy)?.text())
    }

    /// Whether `/versions` mentions `2015-09-01` (waagent's substring test).
    pub fn is_available(&self, who: &ContainerIdentity) -> bool {
        self.versions(who).is_ok_and(|v| v.contains(API_VERSION))
    }

    /// `GET /health`, one attempt: `true` on 200.
    pub fn health(&self) -> bool {
        let request = Request::get(self.url("/health")).header("x-ms-version", API_VERSION);
        self.http.send_once(&request, self.single_timeout).is_ok_and(|r| r.status == 200)
    }

    /// `GET /vmSettings`, one attempt, with `If-None-Match: etag` when given.
    pub fn vm_settings(
        &self,
        who: &ContainerIdentity,
        etag: Option<&str>,
    ) -> Result<VmSettings, HostGaPluginError> {
        let mut request =
            Self::with_identity(Request::get(self.url("/vmSettings")).document(Document::VmSettings), who)
                .header("x-ms-client-correlationid", correlation_id());
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        let resp = self.http.send_once(&request, self.single_timeout)?;
        let body = resp.text();
        match resp.status {
            200 => {
                let etag = resp.header("etag").ok_or(HostGaPluginError::MissingEtag)?.to_string();
                Ok(VmSettings::Updated { etag, json: body })
            }
            304 => Ok(VmSettings::NotModified),
            404 => Ok(VmSettings::Unsupported),
            410 => Err(HttpError::Stale { method: request.method, url: request.url, status: 410 }.into()),
            400 if body.contains("InvalidContainerConfiguration") => {
                Err(HttpError::Stale { method: request.method, url: request.url, status: 400 }.into())
            }
            status => Err(HostGaPluginError::Status { status, body: body.chars().take(200).collect() }),
        }
    }
}

impl HostGaPluginClient {
    /// `PUT /vmAgentLog` (spec §6.6): a zip of the agent's logs, one attempt, 30 s.
    pub fn put_vm_agent_log(&self, who: &ContainerIdentity, zip: Vec<u8>) -> Result<(), HostGaPluginError> {
        let deployment =
            who.config_name.as_deref().and_then(|n| n.split('.').next()).unwrap_or_default().to_string();
        let request = Request::put(self.url("/vmAgentLog"), zip)
            .header("x-ms-version", API_VERSION)
            .header("x-ms-containerid", who.container_id.as_str())
            .header("x-ms-vmagentlog-deploymentid", deployment)
            .header("x-ms-client-name", "WALinuxAgent")
            .header("x-ms-client-version", crate::VERSION)
            .header("x-ms-client-correlationid", correlation_id());
        let resp = self.http.send_once(&request, Duration::from_secs(30))?;
        match resp.status {
            200 | 201 => Ok(()),
            status => {
                Err(HostGaPluginError::Status { status, body: resp.text().chars().take(200).collect() })
            }
        }
    }

    /// `PUT /status` with a status-blob envelope (spec §6.5), one attempt; 200 is success.
    pub fn put_status(&self, who: &ContainerIdentity, envelope: &str) -> Result<(), HostGaPluginError> {
        let request =
            Self::with_identity(Request::put(self.url("/status"), envelope.as_bytes().to_vec()), who)
                .header("content-type", "application/json");
        let resp = self.http.send_once(&request, self.single_timeout)?;
        match resp.status {
            200 | 201 => Ok(()),
            410 => Err(HttpError::Stale { method: request.method, url: request.url, status: 410 }.into()),
            status => {
                Err(HostGaPluginError::Status { status, body: resp.text().chars().take(200).collect() })
            }
        }
    }
}

/// What an `extensionArtifact` request asks for (spec §6.4).
#[derive(Debug, Clone, Copy)]
pub struct ArtifactRequest<'a> {
    /// The original blob URL (manifest or zip).
    pub location: &'a str,
    /// For a zip: the URL the extension manifest was last fetched from.
    pub manifest_location: Option<&'a str>,
    /// The current extensions goal state is Fast Track.
    pub fast_track: bool,
    /// What the artifact is (a manifest or a package): its size limit.
    pub document: Document,
}

impl HostGaPluginClient {
    /// `GET /extensionArtifact`: the artifact at `req.location`, fetched by the HostGAPlugin, one
    /// attempt bounded by `timeout`. 410 and 400 `InvalidContainerConfiguration` are stale-goal-state
    /// errors ([`HostGaPluginError::is_stale`]).
    pub fn extension_artifact(
        &self,
        who: &ContainerIdentity,
        req: &ArtifactRequest<'_>,
        timeout: Duration,
    ) -> Result<Vec<u8>, HostGaPluginError> {
        let request = self.artifact_request(who, req);
        let resp = self.http.send_once(&request, timeout)?;
        match resp.status {
            200 => Ok(resp.body),
            status => Err(artifact_refusal(&request, status, &resp.text())),
        }
    }

    /// [`Self::extension_artifact`] with the body streamed into `out` (at most `limit` bytes, see
    /// [`HttpClient::stream_once`]); returns the bytes written. For packages.
    pub fn extension_artifact_to(
        &self,
        who: &ContainerIdentity,
        req: &ArtifactRequest<'_>,
        timeout: Duration,
        limit: u64,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, HostGaPluginError> {
        let request = self.artifact_request(who, req);
        let resp = self.http.stream_once(&request, timeout, limit, out)?;
        match resp.status {
            200 => Ok(resp.written),
            status => Err(artifact_refusal(&request, status, &resp.text())),
        }
    }

    fn artifact_request(&self, who: &ContainerIdentity, req: &ArtifactRequest<'_>) -> Request {
        let mut request =
            Self::with_identity(Request::get(self.url("/extensionArtifact")).document(req.document), who)
                .header("x-ms-artifact-location", req.location);
        if req.fast_track {
            request = request.header("x-ms-verify-from-artifacts-blob", "true");
        }
        if let Some(m) = req.manifest_location {
            request = request.header("x-ms-artifact-manifest-location", m);
        }
        request
    }
}

/// The error for an `extensionArtifact` answer other than 200: 410 and 400
/// `InvalidContainerConfiguration` mean the goal state is stale.
fn artifact_refusal(request: &Request, status: u16, body: &str) -> HostGaPluginError {
    match status {
        410 => HttpError::Stale { method: request.method, url: request.url.clone(), status: 410 }.into(),
        400 if body.contains("InvalidContainerConfiguration") => {
            HttpError::Stale { method: request.method, url: request.url.clone(), status: 400 }.into()
        }
        status => HostGaPluginError::Status {
            status,
            body: crate::base::logging::redact_sas(&body.chars().take(200).collect::<String>()),
        },
    }
}

/// An id in the form of a random UUID (version 4) for `x-ms-client-correlationid` (and
/// `x-ms-client-request-id`, and the names of extension command units).
///
/// These ids only let a request be found in the logs on both sides, and name transient units:
/// they must differ from each other, and should not repeat across daemon runs; they are not
/// secrets and nothing is protected by guessing one being hard. So the kernel is asked for
/// random bytes once per process (a seed), not once per request (a `getrandom` system call on
/// every HostGAPlugin request of every idle period): id number `n` of the process is made of
/// `n` and the seed by a permutation, so ids are unique within a process (for 2^60 of them),
/// and look random, with different sequences from one process to the next.
pub fn correlation_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: std::sync::OnceLock<[u64; 2]> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(correlation_seed);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    uuid_v4(permute60(n.wrapping_add(seed[0])), mix64(n ^ seed[1]))
}

/// 128 bits from the kernel, or, should that fail, from the time and the process id.
fn correlation_seed() -> [u64; 2] {
    let mut b = [0u8; 16];
    if crate::base::random::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        b = (t.as_nanos() ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    let (lo, hi) = b.split_at(8);
    let word = |s: &[u8]| s.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
    [mix64(word(lo)), mix64(word(hi))]
}

const BITS60: u64 = (1 << 60) - 1;

/// A bijection of the 60-bit values (the low 60 bits of `x`): each step (a right xorshift, a
/// multiplication by an odd number modulo 2^60) can be undone, so distinct inputs give distinct
/// outputs.
fn permute60(x: u64) -> u64 {
    let mut x = x & BITS60;
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9) & BITS60;
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb) & BITS60;
    x ^ (x >> 31)
}

/// A 64-bit mixing function (SplitMix64's finalizer).
fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The UUID text whose 122 free bits are `unique` (60 bits, all kept: ids with distinct
/// `unique` differ) and 62 bits of `other`, with the version (4) and variant bits set.
fn uuid_v4(unique: u64, other: u64) -> String {
    let unique = unique & BITS60;
    let high = (unique >> 12) << 16 | 0x4 << 12 | (unique & 0xfff);
    let low = 0b10 << 62 | (other >> 2);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(36);
    let bytes = (u128::from(high) << 64 | u128::from(low)).to_be_bytes();
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    fn is_v4(id: &str) -> bool {
        let dashes: Vec<usize> = id.match_indices('-').map(|(i, _)| i).collect();
        id.len() == 36
            && dashes == [8, 13, 18, 23]
            && &id[14..15] == "4"
            && matches!(&id[19..20], "8" | "9" | "a" | "b")
            && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    }

    #[test]
    fn correlation_ids_are_v4_and_differ() {
        let a = super::correlation_id();
        let b = super::correlation_id();
        assert_ne!(a, b);
        assert!(is_v4(&a) && is_v4(&b), "{a} {b}");
    }

    #[test]
    fn correlation_ids_stay_unique_over_many_calls_and_threads() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..50_000).map(|_| super::correlation_id()).collect::<Vec<_>>()))
            .collect();
        let mut seen = HashSet::new();
        for t in threads {
            for id in t.join().expect("thread") {
                assert!(is_v4(&id), "{id}");
                assert!(seen.insert(id.clone()), "{id} twice");
            }
        }
        assert_eq!(seen.len(), 200_000);
    }

    #[test]
    fn consecutive_ids_do_not_look_like_a_counter() {
        // Successive ids share no long run of digits with each other, as counters would:
        // in each half, about half of the bits differ.
        let ids: Vec<u128> = (0..1_000)
            .map(|_| u128::from_str_radix(&super::correlation_id().replace('-', ""), 16).expect("hex"))
            .collect();
        let flips: u32 = ids.windows(2).map(|w| (w[0] ^ w[1]).count_ones()).sum();
        let mean = f64::from(flips) / 999.0;
        assert!((50.0..72.0).contains(&mean), "{mean} bits differ between neighbours on average");
    }

    #[test]
    fn the_unique_part_is_a_permutation_and_fully_kept() {
        // Distinct inputs, distinct outputs: spot-checked on consecutive and widely spaced inputs.
        let inputs: Vec<u64> = (0..100_000u64).chain((1..=100_000u64).map(|i| i << 40 | 7)).collect();
        let outputs: HashSet<u64> = inputs.iter().map(|&n| super::permute60(n)).collect();
        assert_eq!(outputs.len(), inputs.len());
        assert!(outputs.iter().all(|&x| x <= super::BITS60));
        // Each of the 60 bits reaches the text: ids differing in one bit of it differ.
        let base = super::uuid_v4(0, 0);
        for bit in 0..60 {
            assert_ne!(super::uuid_v4(1 << bit, 0), base, "bit {bit}");
        }
        assert!(is_v4(&base) && is_v4(&super::uuid_v4(u64::MAX, u64::MAX)));
    }
}
