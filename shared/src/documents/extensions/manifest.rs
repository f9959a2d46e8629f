//! Extension and agent manifests (`PluginVersionManifest`, wire.md §8.1) and the choice of the
//! package to install (§8.2). Also the `ExtensionImage` document some publishers ship.

use serde::Serialize;

use crate::documents::extensions::{DocumentError, ExtensionState, FlexibleVersion};
use crate::documents::xml::{self, Element};

const DOC: &str = "PluginVersionManifest";

/// One package of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestPackage {
    pub version: FlexibleVersion,
    /// Where the zip can be downloaded from (shuffled at download).
    pub uris: Vec<String>,
    /// `DisallowMajorVersionUpgrade` (`True`, any case).
    pub disallow_major_version_upgrade: bool,
    /// From `InternalPlugins`.
    pub is_internal: bool,
}

/// A parsed manifest: every package of `Plugins` and `InternalPlugins`, sorted by ascending
/// version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginVersionManifest {
    pub packages: Vec<ManifestPackage>,
}

/// Why no package could be chosen (a `Download` error, code 1001).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionSelectionError {
    #[error("Unable to find version {version} in manifest")]
    NotFound { version: String },
    #[error("Failed to find installed version: {version} of Handler: {handler} in handler manifest")]
    InstalledNotFound { version: String, handler: String },
    #[error("invalid version {version:?}: {why}")]
    InvalidVersion { version: String, why: String },
}

/// Parse an extension or agent manifest. A package whose `Version` is missing or not a dotted
/// number is rejected with the element named: every package must be comparable.
pub fn parse_manifest(text: &str) -> Result<PluginVersionManifest, DocumentError> {
    let root = xml::parse_platform(text).map_err(|e| DocumentError::xml(DOC, e))?;
    if root.name != DOC {
        return Err(DocumentError::UnexpectedRoot { document: DOC, expected: DOC, found: root.name.clone() });
    }
    let mut packages = Vec::new();
    for (list, internal) in [("Plugins", false), ("InternalPlugins", true)] {
        for (i, p) in root.child(list).into_iter().flat_map(|l| l.children_named("Plugin")).enumerate() {
            packages.push(parse_package(p, internal, &format!("{DOC}/{list}/Plugin[{i}]"))?);
        }
    }
    packages.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(PluginVersionManifest { packages })
}

fn parse_package(p: &Element, is_internal: bool, path: &str) -> Result<ManifestPackage, DocumentError> {
    let text = p
        .child_text("Version")
        .ok_or_else(|| DocumentError::Missing { document: DOC, path: format!("{path}/Version") })?;
    let version = FlexibleVersion::parse(text).map_err(|why| DocumentError::Invalid {
        document: DOC,
        path: format!("{path}/Version"),
        why,
    })?;
    Ok(ManifestPackage {
        version,
        uris: p
            .child("Uris")
            .map(|u| u.children_named("Uri").filter_map(Element::text_trimmed).map(str::to_string).collect())
            .unwrap_or_default(),
        disallow_major_version_upgrade: p
            .child_text("DisallowMajorVersionUpgrade")
            .is_some_and(|t| t.eq_ignore_ascii_case("true")),
        is_internal,
    })
}

impl PluginVersionManifest {
    /// The highest version (the agent's self-update target when not driven by RSM).
    pub fn largest(&self) -> Option<&ManifestPackage> {
        self.packages.last()
    }

    /// The package with exactly this version.
    pub fn find(&self, version: &FlexibleVersion) -> Option<&ManifestPackage> {
        self.packages.iter().rev().find(|p| &p.version == version)
    }

    /// The highest package whose version the requested one is a prefix of (`2.1` → `2.1.6`).
    pub fn best_match(&self, requested: &FlexibleVersion) -> Option<&ManifestPackage> {
        self.packages.iter().rev().find(|p| requested.matches(&p.version))
    }

    /// wire.md §8.2 (`decide_version`): for an enabled handler, [`best_match`](Self::best_match) of
    /// `requested`; for a disabled or uninstalled one, the package of the `installed` version
    /// (exact match; `installed` defaults to `requested`).
    pub fn select(
        &self,
        handler: &str,
        requested: &str,
        state: ExtensionState,
        installed: Option<&str>,
    ) -> Result<&ManifestPackage, VersionSelectionError> {
        let parse = |v: &str| {
            FlexibleVersion::parse(v)
                .map_err(|why| VersionSelectionError::InvalidVersion { version: super::excerpt(v), why })
        };
        match state {
            ExtensionState::Enabled => self
                .best_match(&parse(requested)?)
                .ok_or_else(|| VersionSelectionError::NotFound { version: requested.to_string() }),
            ExtensionState::Disabled | ExtensionState::Uninstall => {
                let v = installed.unwrap_or(requested);
                self.find(&parse(v)?).ok_or_else(|| VersionSelectionError::InstalledNotFound {
                    version: v.to_string(),
                    handler: handler.to_string(),
                })
            }
        }
    }
}

/// An `ExtensionImage` document (a publisher's description of an extension version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionImage {
    pub provider_namespace: String,
    pub r#type: String,
    pub version: String,
    pub is_internal_extension: bool,
    pub is_json_extension: bool,
    pub supported_os: Option<String>,
}

impl ExtensionImage {
    /// The handler name: `<ProviderNameSpace>.<Type>`.
    pub fn handler_name(&self) -> String {
        format!("{}.{}", self.provider_namespace, self.r#type)
    }
}

/// Parse an `ExtensionImage` document; `ProviderNameSpace`, `Type` and `Version` are required.
pub fn parse_extension_image(text: &str) -> Result<ExtensionImage, DocumentError> {
    const IDOC: &str = "ExtensionImage";
    let root = xml::parse_platform(text).map_err(|e| DocumentError::xml(IDOC, e))?;
    if root.name != IDOC {
        return Err(DocumentError::UnexpectedRoot {
            document: IDOC,
            expected: IDOC,
            found: root.name.clone(),
        });
    }
    let req = |n: &str| {
        root.child_text(n)
            .map(str::to_string)
            .ok_or_else(|| DocumentError::Missing { document: IDOC, path: format!("{IDOC}/{n}") })
    };
    let flag = |n: &str| root.child_text(n).is_some_and(|t| t.eq_ignore_ascii_case("true"));
    Ok(ExtensionImage {
        provider_namespace: req("ProviderNameSpace")?,
        r#type: req("Type")?,
        version: req("Version")?,
        is_internal_extension: flag("IsInternalExtension"),
        is_json_extension: flag("IsJsonExtension"),
        supported_os: root.child_text("SupportedOS").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "<PluginVersionManifest><Plugins>\
        <Plugin><Version>2.1.6</Version><Uris><Uri>u216</Uri></Uris></Plugin>\
        <Plugin><Version>2.1.10</Version><Uris><Uri>u2110</Uri></Uris><DisallowMajorVersionUpgrade>TRUE</DisallowMajorVersionUpgrade></Plugin>\
        <Plugin><Version>2.10</Version></Plugin></Plugins>\
        <InternalPlugins><Plugin><Version>3.0</Version></Plugin></InternalPlugins></PluginVersionManifest>";

    #[test]
    fn selection_by_prefix_and_installed() {
        let m = parse_manifest(M).unwrap();
        let versions: Vec<String> = m.packages.iter().map(|p| p.version.to_string()).collect();
        assert_eq!(versions, ["2.1.6", "2.1.10", "2.10", "3.0"]);
        assert!(m.packages[1].disallow_major_version_upgrade);
        assert!(m.packages[3].is_internal);
        assert_eq!(m.largest().unwrap().version.to_string(), "3.0");
        let pick = |req, st, inst| m.select("H", req, st, inst).map(|p| p.version.to_string());
        assert_eq!(pick("2.1", ExtensionState::Enabled, None).unwrap(), "2.1.10");
        assert_eq!(pick("2.1.6", ExtensionState::Enabled, None).unwrap(), "2.1.6");
        assert_eq!(pick("3.0", ExtensionState::Enabled, None).unwrap(), "3.0");
        assert_eq!(
            pick("4", ExtensionState::Enabled, None).unwrap_err().to_string(),
            "Unable to find version 4 in manifest"
        );
        assert_eq!(pick("2.1.10", ExtensionState::Uninstall, Some("2.1.6")).unwrap(), "2.1.6");
        assert!(
            pick("2.1", ExtensionState::Disabled, None).is_err(),
            "exact match needed for the installed one"
        );
    }

    #[test]
    fn bad_manifests() {
        assert!(parse_manifest("<Other/>").is_err());
        let no_version = "<PluginVersionManifest><Plugins><Plugin/></Plugins></PluginVersionManifest>";
        assert!(parse_manifest(no_version).unwrap_err().to_string().contains("Plugins/Plugin[0]/Version"));
        let bad = "<PluginVersionManifest><Plugins><Plugin><Version>x</Version></Plugin></Plugins></PluginVersionManifest>";
        assert!(matches!(parse_manifest(bad), Err(DocumentError::Invalid { .. })));
    }
}
