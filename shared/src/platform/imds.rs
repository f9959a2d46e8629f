//! The IMDS HTTP client (wire.md §13): `GET /metadata/instance` with `Metadata: true`, never
//! proxied, bounded to a few seconds in total by [`RetryPolicy::imds`].

use crate::platform::endpoint::Endpoint;
use crate::platform::http::{HttpClient, HttpError, Request, RetryPolicy};

use crate::documents::imds::{parse_instance, ImdsError, InstanceMetadata};

/// The API version asked for: the one that has `osProfile` and `publicKeys` (also what afterburn
/// uses for them). waagent itself asks for 2018-02-01, azure-init for 2023-11-15.
pub const API_VERSION: &str = "2021-02-01";

/// Why the instance metadata could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ImdsClientError {
    #[error("IMDS: {0}")]
    Http(#[from] HttpError),
    #[error(transparent)]
    Document(#[from] ImdsError),
}

/// The IMDS client.
#[derive(Debug, Clone)]
pub struct ImdsClient {
    endpoint: Endpoint,
    http: HttpClient,
    policy: RetryPolicy,
}

impl ImdsClient {
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint, http: HttpClient::platform(), policy: RetryPolicy::imds() }
    }

    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The URL of `/metadata/instance`.
    pub fn instance_url(&self) -> String {
        format!("{}/metadata/instance?api-version={API_VERSION}", self.endpoint.base_url())
    }

    /// The raw `/metadata/instance` JSON.
    pub fn instance_text(&self) -> Result<String, ImdsClientError> {
        let request = Request::get(self.instance_url())
            .document(crate::base::limits::Document::ImdsInstance)
            .header("Metadata", "true");
        Ok(self.http.send(&request, &self.policy)?.text())
    }

    /// `/metadata/instance`, parsed.
    pub fn instance(&self) -> Result<InstanceMetadata, ImdsClientError> {
        Ok(parse_instance(&self.instance_text()?)?)
    }
}
