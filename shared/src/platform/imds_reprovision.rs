//! IMDS `GET /metadata/reprovisiondata`: how a pre-provisioned pool VM learns who took it over.
//! The answer is the user's `ovf-env.xml`, as raw XML (what cloud-init's Azure datasource reads
//! and parses as it comes); until a user takes the VM, IMDS answers 404 (or 410).
//!
//! The request carries `Metadata: true` and a fresh `x-ms-client-request-id`, goes through the one
//! platform client (never proxied), and each attempt is bounded by
//! [`PollPolicy::attempt_timeout`] (30 s, as cloud-init). Between attempts:
//! * 404 and 410 ("not yet"): [`PollPolicy::not_yet_delay`] (1 s, cloud-init's pace);
//! * any other status, or no answer: a delay doubling from [`PollPolicy::error_delay`] up to
//!   [`PollPolicy::max_error_delay`]; after [`PollPolicy::transport_failures_before_route_wait`]
//!   failures without an answer in a row, the caller's `network_trouble` runs (the provisioning
//!   stage waits for its route to IMDS there, as cloud-init renews its DHCP lease);
//! * a body over the OVF size limit, or an empty 200: an error at once (the same would come back).
//!
//! How long the whole poll lasts is the caller's `limit`: a pool VM waits as long as it stays in
//! the pool (hours or days), so the provisioning stage gives none by default. Logging backs off
//! (the first answer of each kind, then one line a minute) so a long wait does not flood the log.

use std::time::{Duration, Instant};

use crate::base::secret::Secret;
use crate::platform::endpoint::Endpoint;
use crate::platform::http::{HttpClient, HttpError, Request};

/// The API version asked for (cloud-init's).
pub const API_VERSION: &str = "2019-06-01";

/// How the poll paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollPolicy {
    /// Connect and whole-exchange timeout of one request (IMDS may hold it open).
    pub attempt_timeout: Duration,
    /// Delay after a 404 or 410.
    pub not_yet_delay: Duration,
    /// First delay after an error; doubles up to `max_error_delay`.
    pub error_delay: Duration,
    pub max_error_delay: Duration,
    /// Failures without an HTTP answer in a row before `network_trouble` is called.
    pub transport_failures_before_route_wait: u32,
    /// At most one "still waiting" log line per this long.
    pub log_every: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(30),
            not_yet_delay: Duration::from_secs(1),
            error_delay: Duration::from_secs(1),
            max_error_delay: Duration::from_secs(10),
            transport_failures_before_route_wait: 3,
            log_every: Duration::from_secs(60),
        }
    }
}

impl PollPolicy {
    /// Every duration divided by `factor` (tests run the real policy fast).
    pub fn scaled_down(mut self, factor: u32) -> Self {
        let f = factor.max(1);
        self.attempt_timeout /= f;
        self.not_yet_delay /= f;
        self.error_delay /= f;
        self.max_error_delay /= f;
        self.log_every /= f;
        self
    }
}

/// Why no document came.
#[derive(Debug, thiserror::Error)]
pub enum ReprovisionError {
    /// The answer is larger than an `ovf-env.xml` may be.
    #[error("IMDS reprovisiondata: {0}")]
    TooLarge(HttpError),
    /// IMDS answered 200 with nothing.
    #[error("IMDS reprovisiondata: {url} answered 200 with an empty body")]
    Empty { url: String },
    /// The caller's limit ran out.
    #[error("IMDS reprovisiondata: no document after {}s and {attempts} request(s) (last: {last})", waited.as_secs())]
    GaveUp { waited: Duration, attempts: u32, last: String },
}

/// The user's `ovf-env.xml` as IMDS sent it (it may hold a password: never logged).
#[derive(Debug)]
pub struct Reprovision {
    pub ovf: Secret<Vec<u8>>,
    /// Requests sent in all.
    pub attempts: u32,
    /// How long the poll took.
    pub waited: Duration,
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    NotYet(u16),
    Failed(String),
    Silent(String),
}

/// The `reprovisiondata` client.
#[derive(Debug, Clone)]
pub struct ReprovisionClient {
    endpoint: Endpoint,
    http: HttpClient,
    policy: PollPolicy,
}

impl ReprovisionClient {
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint, http: HttpClient::platform(), policy: PollPolicy::default() }
    }

    pub fn with_policy(mut self, policy: PollPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// `http://<imds>/metadata/reprovisiondata?api-version=2019-06-01`.
    pub fn url(&self) -> String {
        format!("{}/metadata/reprovisiondata?api-version={API_VERSION}", self.endpoint.base_url())
    }

    /// Poll until IMDS hands over the document, at most `limit` in all (`None`: as long as it
    /// takes). `network_trouble` is called after a run of requests that got no answer.
    pub fn poll(
        &self,
        limit: Option<Duration>,
        network_trouble: &mut dyn FnMut(),
    ) -> Result<Reprovision, ReprovisionError> {
        let url = self.url();
        let p = &self.policy;
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut no_answer_run = 0u32;
        let mut errors_run = 0u32;
        let mut last_logged: Option<(Instant, String)> = None;
        log::info!("polling {url} until a user takes this VM over");
        loop {
            attempts += 1;
            let timeout = match limit {
                Some(l) => {
                    p.attempt_timeout.min(l.saturating_sub(started.elapsed())).max(Duration::from_millis(1))
                }
                None => p.attempt_timeout,
            };
            let request = Request::get(url.as_str())
                .document(crate::base::limits::Document::Ovf)
                .header("Metadata", "true")
                .header("x-ms-client-request-id", crate::platform::hostgaplugin::correlation_id());
            let answer = match self.http.send_once(&request, timeout) {
                Ok(resp) if resp.status == 200 => {
                    if resp.body.is_empty() {
                        return Err(ReprovisionError::Empty { url });
                    }
                    log::info!(
                        "IMDS handed over the new ovf-env.xml ({} bytes) after {attempts} request(s) in {} s",
                        resp.body.len(),
                        started.elapsed().as_secs()
                    );
                    return Ok(Reprovision {
                        ovf: Secret::new(resp.body),
                        attempts,
                        waited: started.elapsed(),
                    });
                }
                Ok(resp) if resp.status == 404 || resp.status == 410 => Answer::NotYet(resp.status),
                Ok(resp) => {
                    let excerpt: String = resp.text().chars().take(200).collect();
                    Answer::Failed(format!("HTTP {}: {excerpt}", resp.status))
                }
                Err(e @ HttpError::TooLarge { .. }) => return Err(ReprovisionError::TooLarge(e)),
                Err(e) => Answer::Silent(e.to_string()),
            };
            let (delay, text) = match &answer {
                Answer::NotYet(status) => {
                    no_answer_run = 0;
                    errors_run = 0;
                    (p.not_yet_delay, format!("not yet (HTTP {status})"))
                }
                Answer::Failed(why) => {
                    no_answer_run = 0;
                    errors_run += 1;
                    (backoff(p, errors_run), why.clone())
                }
                Answer::Silent(why) => {
                    no_answer_run += 1;
                    errors_run += 1;
                    (backoff(p, errors_run), why.clone())
                }
            };
            let kind = match &answer {
                Answer::NotYet(s) => format!("not-yet {s}"),
                Answer::Failed(_) => "failed".into(),
                Answer::Silent(_) => "no-answer".into(),
            };
            let due = last_logged.as_ref().is_none_or(|(at, k)| *k != kind || at.elapsed() >= p.log_every);
            if due {
                log::info!("IMDS reprovisiondata, request {attempts}: {text}");
                last_logged = Some((Instant::now(), kind));
            }
            if no_answer_run >= p.transport_failures_before_route_wait.max(1) {
                no_answer_run = 0;
                network_trouble();
            }
            if let Some(l) = limit {
                if started.elapsed() + delay >= l {
                    return Err(ReprovisionError::GaveUp { waited: started.elapsed(), attempts, last: text });
                }
            }
            std::thread::sleep(delay);
        }
    }
}

fn backoff(p: &PollPolicy, run: u32) -> Duration {
    let factor = 1u32.checked_shl(run.saturating_sub(1)).unwrap_or(u32::MAX);
    p.error_delay.saturating_mul(factor).min(p.max_error_delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wala_fabric::{Fabric, FabricConfig, Fault, FaultAction, Listener, Scenario};

    fn fabric(hold_ms: u64) -> Fabric {
        let mut scenario = Scenario::builtin().expect("scenario");
        scenario.reprovision_hold_ms = hold_ms;
        Fabric::start(FabricConfig::new(scenario)).expect("fabric")
    }

    fn client(f: &Fabric) -> ReprovisionClient {
        let a = f.imds_addr();
        ReprovisionClient::new(Endpoint::new(a.ip().to_string(), a.port()))
            .with_policy(PollPolicy::default().scaled_down(10))
    }

    const OVF: &[u8] = b"<Environment>the user's</Environment>";

    #[test]
    fn the_document_comes_through_faults_and_each_request_is_well_formed() {
        let f = fabric(20);
        let path = "/metadata/reprovisiondata";
        for action in [
            FaultAction::Reset,
            FaultAction::Status { status: 500, body: None },
            FaultAction::Status { status: 410, body: None },
            FaultAction::Truncate { keep: None },
            FaultAction::Status { status: 429, body: None },
            FaultAction::Status { status: 400, body: Some("Bad request".into()) },
        ] {
            f.add_fault(Fault::new(Listener::Imds, path, action).times(1));
        }
        f.set_reprovision_data(Some(OVF));
        let mut troubles = 0;
        let got = client(&f).poll(Some(Duration::from_secs(30)), &mut || troubles += 1).expect("document");
        assert_eq!(got.ovf.expose().as_slice(), OVF);
        assert_eq!(got.attempts, 7, "six faults, then the document");
        assert_eq!(troubles, 0, "never three failures without an answer in a row");
        let sent = f.requests_on(Listener::Imds);
        assert_eq!(sent.len(), 7);
        let mut ids = std::collections::BTreeSet::new();
        for r in &sent {
            assert_eq!(
                (r.method.as_str(), r.target.as_str()),
                ("GET", "/metadata/reprovisiondata?api-version=2019-06-01")
            );
            assert_eq!(r.header("Metadata"), Some("true"));
            ids.insert(r.header("x-ms-client-request-id").expect("request id").to_string());
        }
        assert_eq!(ids.len(), 7, "a fresh request id each time");
    }

    #[test]
    fn not_yet_is_polled_through_and_a_run_of_no_answers_calls_for_the_route() {
        let f = fabric(10);
        f.add_fault(Fault::new(Listener::Imds, "/metadata/reprovisiondata", FaultAction::Reset).times(3));
        let a = f.imds_addr();
        let c = ReprovisionClient::new(Endpoint::new(a.ip().to_string(), a.port()))
            .with_policy(PollPolicy::default().scaled_down(10));
        let mut troubles = 0;
        // Nothing to hand over: the limit ends it (the last attempt may be cut short by it).
        let err = c.poll(Some(Duration::from_secs(2)), &mut || troubles += 1).expect_err("limit");
        let ReprovisionError::GaveUp { attempts, .. } = err else { panic!("{err}") };
        assert!(attempts > 4, "404 is polled through: {attempts} request(s)");
        assert_eq!(troubles, 1, "three resets in a row, then answers");
        f.set_reprovision_data(Some(OVF));
        assert!(c.poll(Some(Duration::from_secs(10)), &mut || {}).is_ok());
    }

    #[test]
    fn an_oversized_or_empty_document_is_an_error_at_once() {
        let f = fabric(10);
        f.set_reprovision_data(Some(&vec![b'x'; 2 * 1024 * 1024]));
        let err = client(&f).poll(None, &mut || {}).expect_err("too large");
        assert!(matches!(err, ReprovisionError::TooLarge(_)), "{err}");
        f.clear_requests();
        f.add_fault(Fault::new(
            Listener::Imds,
            "/metadata/reprovisiondata",
            FaultAction::Status { status: 200, body: Some(String::new()) },
        ));
        let err = client(&f).poll(None, &mut || {}).expect_err("empty");
        assert!(matches!(err, ReprovisionError::Empty { .. }), "{err}");
        assert_eq!(f.requests().len(), 1);
    }
}
