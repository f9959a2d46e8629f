//! Why a platform document (a WireServer document, ExtensionsConfig, vmSettings, a manifest, a
//! handler's JSON) was rejected as a whole: one error for all of them, naming the document and
//! the `/`-separated path of the element or field that is wrong. The OVF, the configuration and
//! IMDS's JSON have errors of their own ([`super::ovf::OvfError`], [`super::conf::ConfError`],
//! [`super::imds::ImdsError`]), since what they say differs.

use std::sync::Arc;

use crate::documents::xml::XmlError;

/// Why a platform document was rejected. `document` is its kind (`GoalState`, `ExtensionsConfig`,
/// `HandlerManifest.json`, ...); `path` is a `/`-separated path from the root. A value quoted in a
/// message is a short excerpt, never a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DocumentError {
    /// The body is not well-formed XML.
    #[error("{document}: not well-formed XML: {source}")]
    Xml {
        document: &'static str,
        #[source]
        source: XmlError,
    },
    /// Not valid JSON (or not UTF-8).
    #[error("{document}: not valid JSON: {source}")]
    Json {
        document: &'static str,
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// The root element is not the one this document has.
    #[error("{document}: root element is <{found}>, expected <{expected}>")]
    UnexpectedRoot { document: &'static str, expected: &'static str, found: String },
    /// A required element or field is absent (or null).
    #[error("{document}: missing {path}")]
    Missing { document: &'static str, path: String },
    /// A required element is present but has no text.
    #[error("{document}: {path} is empty")]
    Empty { document: &'static str, path: String },
    /// An element, attribute or field whose value is not usable.
    #[error("{document}: {path} is invalid: {why}")]
    Invalid { document: &'static str, path: String, why: String },
    /// The goal state has no `RoleInstance` yet. waagent fetches the goal state again (6 times,
    /// 0.5 s apart) before giving up.
    #[error("GoalState: fetched goal state without a RoleInstance [incarnation {incarnation}]")]
    MissingRoleInstance { incarnation: u64 },
}

impl DocumentError {
    /// A document that is not well-formed XML.
    pub fn xml(document: &'static str, source: XmlError) -> Self {
        Self::Xml { document, source }
    }

    /// A document that is not valid JSON.
    pub fn json(document: &'static str, source: serde_json::Error) -> Self {
        Self::Json { document, source: Arc::new(source) }
    }

    /// A required element or field that is absent.
    pub fn missing(document: &'static str, path: impl Into<String>) -> Self {
        Self::Missing { document, path: path.into() }
    }

    /// A value that is not usable, and why.
    pub fn invalid(document: &'static str, path: impl Into<String>, why: impl Into<String>) -> Self {
        Self::Invalid { document, path: path.into(), why: why.into() }
    }

    /// The kind of document rejected.
    pub fn document(&self) -> &'static str {
        match self {
            Self::Xml { document, .. }
            | Self::Json { document, .. }
            | Self::UnexpectedRoot { document, .. }
            | Self::Missing { document, .. }
            | Self::Empty { document, .. }
            | Self::Invalid { document, .. } => document,
            Self::MissingRoleInstance { .. } => "GoalState",
        }
    }

    /// The path of the element or field that is wrong, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Missing { path, .. } | Self::Empty { path, .. } | Self::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Short text for a status or health report.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// A short, printable excerpt of a value for an error message (never used for secrets).
pub(crate) fn excerpt(value: &str) -> String {
    let mut s: String = value.chars().take(80).collect();
    if value.chars().count() > 80 {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_document_and_the_path_and_the_source_is_kept() {
        let e =
            DocumentError::invalid("GoalState", "GoalState/Incarnation", "\"x\": not a non-negative integer");
        assert_eq!(
            e.to_string(),
            "GoalState: GoalState/Incarnation is invalid: \"x\": not a non-negative integer"
        );
        assert_eq!((e.document(), e.path()), ("GoalState", Some("GoalState/Incarnation")));

        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let e = DocumentError::json("vmSettings", json);
        let DocumentError::Json { source, .. } = &e else { panic!("{e:?}") };
        assert_eq!((source.line(), source.column()), (1, 1), "the parser's own error is kept");
        assert!(std::error::Error::source(&e).is_some(), "and is the source of the chain");
        assert!(e.reason().starts_with("vmSettings: not valid JSON: EOF"), "{e}");
    }
}
