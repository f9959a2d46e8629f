//! The WireServer's XML documents: parsers only (the HTTP client lives elsewhere).
//!
//! * [`versions`]: `GET /?comp=versions`, and whether `2012-11-30` is spoken;
//! * [`goal_state`]: `GET /machine/?comp=goalstate`;
//! * [`hosting_env`], [`shared_config`], [`certificates`], [`remote_access`]: the sub-documents
//!   the goal state points to.
//!
//! Every parser takes the response body as text (a UTF-8 BOM is skipped), never panics, and
//! returns a [`WireError`] naming the document and the element that is wrong.

pub mod certificates;
pub mod goal_state;
pub mod health;
pub mod hosting_env;
pub mod remote_access;
pub mod shared_config;
pub mod versions;

pub use certificates::{
    parse_certificate_summary, parse_certificates, CertificateSummary, Certificates, CertificatesPayload,
};
pub use goal_state::{parse_goal_state, GoalState};
pub use hosting_env::{parse_hosting_env, HostingEnvironmentConfig};
pub use remote_access::{parse_remote_access, RemoteAccess, RemoteAccessUser};
pub use shared_config::{parse_shared_config, SharedConfig};
pub use versions::{parse_versions, Versions, PROTOCOL_VERSION};

use crate::documents::xml::{self, Element};

/// Why a WireServer document was rejected. `document` is the document kind (`GoalState`,
/// `Versions`, ...); `element` is a `/`-separated path from the root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body is not well-formed XML.
    #[error("{document}: not well-formed XML: {reason}")]
    Xml { document: &'static str, reason: String },
    /// A JSON document (the certificate summary) that is not valid JSON.
    #[error("{document}: not valid JSON: {reason}")]
    Json { document: &'static str, reason: String },
    /// The root element is not the one this document has.
    #[error("{document}: root element is <{found}>, expected <{document}>")]
    UnexpectedRoot { document: &'static str, found: String },
    /// A required element is absent.
    #[error("{document}: missing element {element}")]
    MissingElement { document: &'static str, element: String },
    /// A required element is present but has no text.
    #[error("{document}: element {element} is empty")]
    EmptyElement { document: &'static str, element: String },
    /// An element or attribute whose text is not of the expected form.
    #[error("{document}: {element} has an invalid value {value:?}: {why}")]
    InvalidValue { document: &'static str, element: String, value: String, why: &'static str },
    /// The goal state has no `RoleInstance` yet. waagent fetches the goal state again (6 times,
    /// 0.5 s apart) before giving up.
    #[error("GoalState: fetched goal state without a RoleInstance [incarnation {incarnation}]")]
    MissingRoleInstance { incarnation: u64 },
}

impl WireError {
    /// Short text for a ProvisioningFailed report.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// Parse `text` and check the root element's name.
fn parse_root(text: &str, document: &'static str) -> Result<Element, WireError> {
    let root = xml::parse_platform(text).map_err(|e| WireError::Xml { document, reason: e.to_string() })?;
    if root.name != document {
        return Err(WireError::UnexpectedRoot { document, found: root.name.clone() });
    }
    Ok(root)
}

/// Walks a document while remembering the path, so errors can name the element.
#[derive(Debug, Clone, Copy)]
struct Cursor<'a> {
    document: &'static str,
    element: &'a Element,
}

impl<'a> Cursor<'a> {
    fn new(document: &'static str, element: &'a Element) -> Self {
        Self { document, element }
    }

    fn missing(&self, path: &str) -> WireError {
        WireError::MissingElement { document: self.document, element: path.to_string() }
    }

    /// The first child `name`, or an error naming `path`.
    fn require(&self, name: &str, path: &str) -> Result<Cursor<'a>, WireError> {
        self.element
            .child(name)
            .map(|element| Cursor { document: self.document, element })
            .ok_or_else(|| self.missing(path))
    }

    /// Trimmed text of child `name`, required and non-empty.
    fn require_text(&self, name: &str, path: &str) -> Result<&'a str, WireError> {
        let child = self.element.child(name).ok_or_else(|| self.missing(path))?;
        child
            .text_trimmed()
            .ok_or_else(|| WireError::EmptyElement { document: self.document, element: path.to_string() })
    }

    /// Trimmed text of child `name`; `None` when absent or empty.
    fn text(&self, name: &str) -> Option<String> {
        self.element.child_text(name).map(str::to_string)
    }

    fn invalid(&self, path: &str, value: &str, why: &'static str) -> WireError {
        WireError::InvalidValue {
            document: self.document,
            element: path.to_string(),
            value: value.chars().take(80).collect(),
            why,
        }
    }

    /// Required child `name` holding a non-negative integer.
    fn require_u64(&self, name: &str, path: &str) -> Result<u64, WireError> {
        let text = self.require_text(name, path)?;
        text.parse().map_err(|_| self.invalid(path, text, "not a non-negative integer"))
    }
}

/// A non-empty, trimmed attribute value, owned.
fn attr_string(element: &Element, name: &str) -> Option<String> {
    element.attr_nonempty(name).map(str::to_string)
}
