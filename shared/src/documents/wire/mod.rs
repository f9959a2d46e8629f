//! The WireServer's XML documents: parsers only (the HTTP client lives elsewhere).
//!
//! * [`versions`]: `GET /?comp=versions`, and whether `2012-11-30` is spoken;
//! * [`goal_state`]: `GET /machine/?comp=goalstate`;
//! * [`hosting_env`], [`shared_config`], [`certificates`], [`remote_access`]: the sub-documents
//!   the goal state points to.
//!
//! Every parser takes the response body as text (a UTF-8 BOM is skipped), never panics, and
//! returns a [`DocumentError`] naming the document and the element that is wrong.

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

use crate::documents::error::excerpt;
pub use crate::documents::error::DocumentError;
use crate::documents::xml::{self, Element};

/// Parse `text` and check the root element's name.
fn parse_root(text: &str, document: &'static str) -> Result<Element, DocumentError> {
    let root = xml::parse_platform(text).map_err(|e| DocumentError::xml(document, e))?;
    if root.name != document {
        return Err(DocumentError::UnexpectedRoot { document, expected: document, found: root.name.clone() });
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

    fn missing(&self, path: &str) -> DocumentError {
        DocumentError::missing(self.document, path)
    }

    /// The first child `name`, or an error naming `path`.
    fn require(&self, name: &str, path: &str) -> Result<Cursor<'a>, DocumentError> {
        self.element
            .child(name)
            .map(|element| Cursor { document: self.document, element })
            .ok_or_else(|| self.missing(path))
    }

    /// Trimmed text of child `name`, required and non-empty.
    fn require_text(&self, name: &str, path: &str) -> Result<&'a str, DocumentError> {
        let child = self.element.child(name).ok_or_else(|| self.missing(path))?;
        child
            .text_trimmed()
            .ok_or_else(|| DocumentError::Empty { document: self.document, path: path.to_string() })
    }

    /// Trimmed text of child `name`; `None` when absent or empty.
    fn text(&self, name: &str) -> Option<String> {
        self.element.child_text(name).map(str::to_string)
    }

    fn invalid(&self, path: &str, value: &str, why: &'static str) -> DocumentError {
        DocumentError::invalid(self.document, path, format!("{:?}: {why}", excerpt(value)))
    }

    /// Required child `name` holding a non-negative integer.
    fn require_u64(&self, name: &str, path: &str) -> Result<u64, DocumentError> {
        let text = self.require_text(name, path)?;
        text.parse().map_err(|_| self.invalid(path, text, "not a non-negative integer"))
    }
}

/// A non-empty, trimmed attribute value, owned.
fn attr_string(element: &Element, name: &str) -> Option<String> {
    element.attr_nonempty(name).map(str::to_string)
}
