//! The WireServer's protocol versions, `GET http://<endpoint>/?comp=versions` (wire.md §3).
//! Version strings are opaque: they are compared as text, never parsed as dates (the real list
//! contains `2010-28-10`).

use crate::documents::wire::{parse_root, DocumentError};

const DOC: &str = "Versions";

/// The only protocol version wala speaks; every later request carries it in `x-ms-version`.
pub const PROTOCOL_VERSION: &str = "2012-11-30";

/// The versions the WireServer offers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Versions {
    /// `Preferred/Version`.
    pub preferred: Option<String>,
    /// `Supported/Version`, in document order.
    pub supported: Vec<String>,
}

impl Versions {
    /// waagent's rule: `version` is usable when it is the preferred one or among the supported ones.
    pub fn supports(&self, version: &str) -> bool {
        self.preferred.as_deref() == Some(version) || self.supported.iter().any(|v| v == version)
    }
}

/// Parse a `Versions` document. Empty `Version` elements are skipped.
pub fn parse_versions(text: &str) -> Result<Versions, DocumentError> {
    let root = parse_root(text, DOC)?;
    let preferred = root.child("Preferred").and_then(|p| p.child_text("Version")).map(str::to_string);
    let supported = root
        .child("Supported")
        .into_iter()
        .flat_map(|s| s.children_named("Version"))
        .filter_map(|v| v.text_trimmed().map(str::to_string))
        .collect();
    Ok(Versions { preferred, supported })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferred_or_supported() {
        let v = parse_versions(
            "<Versions><Preferred><Version>2015-04-05</Version></Preferred><Supported>\
             <Version>2015-04-05</Version><Version> 2012-11-30 </Version><Version/></Supported></Versions>",
        )
        .unwrap();
        assert_eq!(v.preferred.as_deref(), Some("2015-04-05"));
        assert_eq!(v.supported, ["2015-04-05", "2012-11-30"]);
        assert!(v.supports(PROTOCOL_VERSION));
        let only_preferred =
            parse_versions("<Versions><Preferred><Version>2012-11-30</Version></Preferred></Versions>")
                .unwrap();
        assert!(only_preferred.supports(PROTOCOL_VERSION));
        let neither =
            parse_versions("<Versions><Supported><Version>2010-12-15</Version></Supported></Versions>")
                .unwrap();
        assert!(!neither.supports(PROTOCOL_VERSION));
        assert!(parse_versions("<GoalState/>").is_err());
    }
}
