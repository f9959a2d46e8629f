//! The OVF environment, `ovf-env.xml`: the provisioning document Azure hands a new VM on a DVD.
//!
//! [`parse`] reads it into an [`OvfEnv`]; [`scrub_password`] removes the password before the document
//! is kept on disk. Both are namespace-aware and resolve elements by namespace URI, never by prefix:
//! the platform writes the Azure elements with `wa:` or a re-declared default namespace, cloud-init
//! re-serialises them as `ns0:`/`ns1:`, and all of these mean the same thing.
//!
//! # What is read, and how it differs from waagent
//!
//! The lookup follows the documented shape (`Environment/ProvisioningSection/
//! LinuxProvisioningConfigurationSet/...` and `Environment/PlatformSettingsSection/PlatformSettings/...`)
//! one level at a time. Elements from other namespaces and unknown elements are ignored. The required
//! elements are those waagent requires (`Environment`, `ProvisioningSection`, its `Version`,
//! `LinuxProvisioningConfigurationSet`, `HostName`, `UserName`, `PlatformSettingsSection`,
//! `PlatformSettings`, `ProvisionGuestAgent`); an element that is present but empty (or `xsi:nil`)
//! counts as missing, as in waagent. Where waagent is lax or buggy, wala deliberately differs:
//!
//! - **Duplicates are rejected.** waagent silently takes the first of several `ProvisioningSection`s
//!   (or `HostName`s, ...); like cloud-init, wala refuses a document in which a single-valued element
//!   appears more than once at the same place ([`OvfError::Duplicate`]), so an ambiguous document is
//!   never half-applied.
//! - **Whitespace is trimmed** (XML whitespace: space, tab, CR, LF) from every value except
//!   `UserPassword` and `CustomData`, which are kept exactly as sent. waagent trims nothing, so a
//!   pretty-printed `<HostName>\n  vm1\n</HostName>` would give it a host name with newlines in it.
//! - **Booleans** are `true`/`false` compared case-insensitively after trimming (waagent compares
//!   `text.lower()` untrimmed). Any other text is logged and read as "not given" (`None`); for
//!   `DisableSshPasswordAuthentication` that means password authentication stays enabled, which is
//!   what waagent does with any text other than `true`.
//! - **Text content** is the concatenation of all text and CDATA children, with entity and character
//!   references decoded. waagent reads only the first DOM text node, so CDATA content and text after a
//!   comment are lost there.
//! - **SSH keys of every type are accepted.** The parser does not require a public key `Value` to start
//!   with `ssh-` (waagent does at deploy time and so rejects `ecdsa-sha2-*` and `sk-*` keys). A
//!   `PublicKey` needs a `Path` and a `Value` or a `Fingerprint`; a `KeyPair` needs a `Path` and a
//!   `Fingerprint`: waagent fails provisioning later without them, wala fails before changing anything.
//! - **Malformed XML is an ordinary error** with a [`reason`](OvfError::reason) for a
//!   ProvisioningFailed report; waagent lets the parser exception escape into its 15-second daemon
//!   restart loop and never reports.
//! - A `ConfigurationSetType` other than `LinuxProvisioningConfiguration` is logged and accepted (waagent
//!   does not read it).
//! - A leading UTF-8 byte order mark is skipped, and leading whitespace before the XML declaration is
//!   tolerated.
//!
//! Secrets (`UserPassword`, `CustomData`) are held in [`Secret`], never appear in errors or `Debug`
//! output, and serialize as `"<redacted>"`.

use std::fmt;
use std::ops::Range;

use serde::{Serialize, Serializer};

use crate::base::secret::Secret;
use crate::documents::xml::{self, is_xml_space};

/// The OVF environment namespace (`Environment`, usually the default namespace or `oe:`).
pub const OVF_NS: &str = "http://schemas.dmtf.org/ovf/environment/1";
/// The Windows Azure namespace holding every provisioning element (`wa:`, `ns1:` or default).
pub const WA_NS: &str = "http://schemas.microsoft.com/windowsazure";
/// The XML Schema instance namespace (`xsi:nil`, sometimes bound to `i:`).
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Deepest element nesting accepted. Real documents nest six levels deep; the limit keeps hostile
/// input from building absurd trees.
pub const MAX_DEPTH: usize = 64;

/// The configuration set type Azure sends for Linux.
const LINUX_CONFIGURATION_SET_TYPE: &str = "LinuxProvisioningConfiguration";

/// Provisioning document versions this parser was written for (`ProvisioningSection/Version`).
const KNOWN_VERSION: (u32, u32) = (1, 0);

/// A parsed, validated OVF environment.
#[derive(Debug, Clone, Serialize)]
pub struct OvfEnv {
    /// `ProvisioningSection` and its `LinuxProvisioningConfigurationSet`.
    pub provisioning: LinuxProvisioning,
    /// `PlatformSettingsSection/PlatformSettings`.
    pub platform: PlatformSettings,
}

/// What the `LinuxProvisioningConfigurationSet` asks for. Values are trimmed unless noted.
#[derive(Debug, Clone, Serialize)]
pub struct LinuxProvisioning {
    /// `ProvisioningSection/Version` (required; `1.0` today; a newer one is logged, not rejected).
    pub version: String,
    /// `ConfigurationSetType`, if present (`LinuxProvisioningConfiguration`).
    pub configuration_set_type: Option<String>,
    /// `HostName` (required, non-empty).
    pub host_name: String,
    /// `UserName` (required, non-empty).
    pub user_name: String,
    /// `UserPassword`, exactly as sent (not trimmed). `None` when absent, empty or only whitespace
    /// (waagent: key-only account, password-less sudo).
    #[serde(serialize_with = "serialize_redacted")]
    pub user_password: Option<Secret<String>>,
    /// `DisableSshPasswordAuthentication`. `None` when absent, empty or not a boolean; waagent then
    /// leaves password authentication enabled. See [`Self::password_authentication_disabled`].
    pub disable_ssh_password_authentication: Option<bool>,
    /// `SSH/PublicKeys/PublicKey`, in document order.
    pub public_keys: Vec<PublicKey>,
    /// `SSH/KeyPairs/KeyPair`, in document order.
    pub key_pairs: Vec<KeyPair>,
    /// `CustomData`: the raw base64 text, exactly as sent (not trimmed, not decoded). `None` when
    /// absent, empty or only whitespace.
    #[serde(serialize_with = "serialize_redacted")]
    pub custom_data: Option<Secret<String>>,
}

impl LinuxProvisioning {
    /// Whether sshd password authentication is to be turned off: only when the document says `true`.
    pub fn password_authentication_disabled(&self) -> bool {
        self.disable_ssh_password_authentication == Some(true)
    }
}

/// One `SSH/PublicKeys/PublicKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicKey {
    /// `Fingerprint`: SHA-1 thumbprint of a certificate delivered through the WireServer, as sent
    /// (waagent does not change its case; certificate files are named in upper case, so a lookup must
    /// compare case-insensitively).
    pub fingerprint: Option<String>,
    /// `Path`: where to append the key, as sent (may start with the literal `$HOME`).
    pub path: String,
    /// `Value`: the key in OpenSSH format. When absent the key comes from the certificate named by
    /// `fingerprint`.
    pub value: Option<String>,
}

/// One `SSH/KeyPairs/KeyPair` (legacy: a private key from a certificate, installed at `path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyPair {
    /// `Fingerprint` of the certificate carrying the private key, as sent.
    pub fingerprint: String,
    /// `Path` for the private key, as sent (may start with the literal `$HOME`).
    pub path: String,
}

/// `PlatformSettingsSection/PlatformSettings`. Values are trimmed.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformSettings {
    /// `PlatformSettingsSection/Version`, if present.
    pub version: Option<String>,
    /// `ProvisionGuestAgent`, as sent (required and non-empty, as in waagent; any text is accepted,
    /// e.g. `bad data`). See [`Self::guest_agent_disabled`].
    pub provision_guest_agent: String,
    /// `KmsServerHostname` (a Windows setting; not used on Linux).
    pub kms_server_hostname: Option<String>,
    /// `GuestAgentPackageName` (usually `xsi:nil`).
    pub guest_agent_package_name: Option<String>,
    /// `RetainWindowsPEPassInUnattend` (Windows only).
    pub retain_windows_pe_pass_in_unattend: Option<bool>,
    /// `RetainOfflineServicingPassInUnattend` (Windows only).
    pub retain_offline_servicing_pass_in_unattend: Option<bool>,
    /// `PreprovisionedVm`: whether this is a pre-provisioned (PPS) VM. Not read by waagent.
    pub preprovisioned_vm: Option<bool>,
    /// `PreprovisionedVMType` (also spelled `PreprovisionedVmType`): `None`, `Running`, `Savable`...
    /// as sent; `None` (the Rust value) when absent or `xsi:nil`.
    pub preprovisioned_vm_type: Option<String>,
    /// `ProvisionGuestProxyAgent`.
    pub provision_guest_proxy_agent: Option<bool>,
    /// `EnableTrustedImageIdentifier`.
    pub enable_trusted_image_identifier: Option<bool>,
    /// `UseAVMA` (Windows automatic VM activation).
    pub use_avma: Option<bool>,
}

impl PlatformSettings {
    /// Whether the guest agent is to be disabled (waagent writes `disable_agent`): only when
    /// `ProvisionGuestAgent` is `false`, case-insensitively. Any other value leaves it enabled.
    pub fn guest_agent_disabled(&self) -> bool {
        self.provision_guest_agent.eq_ignore_ascii_case("false")
    }
}

/// Why an OVF environment was refused. Messages name the element and never contain secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OvfError {
    /// The document is empty or only whitespace.
    #[error("ovf-env.xml is empty")]
    Empty,
    /// The bytes are not UTF-8 (see [`parse_bytes`]).
    #[error("ovf-env.xml is not valid UTF-8 (at byte {offset})")]
    NotUtf8 { offset: usize },
    /// The document is not well-formed XML.
    #[error("ovf-env.xml is not well-formed XML at line {line}, column {column}: {message}")]
    Xml { line: usize, column: usize, message: String },
    /// An entity or character reference in an element's text cannot be decoded. The reference
    /// itself is not repeated, as it may be part of a password.
    #[error("ovf-env.xml: undecodable entity or character reference in <{element}> at line {line}")]
    BadReference { element: String, line: usize },
    /// Elements nested deeper than [`MAX_DEPTH`].
    #[error("ovf-env.xml: elements nested deeper than {limit} levels at line {line}")]
    TooDeep { limit: usize, line: usize },
    /// The root element is not the OVF `Environment`.
    #[error("Environment not found: the root element is <{root}> in namespace {namespace:?}")]
    NotOvfEnvironment { root: String, namespace: Option<String> },
    /// An OVF environment without an Azure `ProvisioningSection`: someone else's OVF document (for
    /// example VMware's), not an Azure provisioning request.
    #[error("ProvisioningSection not found: not an Azure provisioning document")]
    NotAzure,
    /// A required element is absent.
    #[error("{element} not found in {parent}")]
    Missing { element: &'static str, parent: &'static str },
    /// A required element is present but empty (or `xsi:nil`).
    #[error("{element} is empty")]
    EmptyElement { element: &'static str },
    /// A single-valued element appears more than once under the same parent.
    #[error("{element} appears {count} times in {parent}, expected at most once")]
    Duplicate { element: &'static str, parent: &'static str, count: usize },
    /// A `PublicKey` that cannot be deployed. `index` counts from 1 in document order.
    #[error("SSH PublicKey #{index} is unusable: {why}")]
    BadPublicKey { index: usize, why: &'static str },
    /// A `KeyPair` that cannot be deployed. `index` counts from 1 in document order.
    #[error("SSH KeyPair #{index} is unusable: {why}")]
    BadKeyPair { index: usize, why: &'static str },
}

impl OvfError {
    /// A short one-line text for a ProvisioningFailed health report, in waagent's wording where
    /// waagent has one (`Failed to validate OVF: HostName not found`). Control characters become
    /// spaces and the text is cut at [`REASON_MAX_CHARS`] characters.
    pub fn reason(&self) -> String {
        let text = match self {
            Self::Empty
            | Self::NotUtf8 { .. }
            | Self::Xml { .. }
            | Self::BadReference { .. }
            | Self::TooDeep { .. } => format!("Failed to parse OVF: {self}"),
            Self::NotOvfEnvironment { .. } => "Failed to validate OVF: Environment not found".to_string(),
            Self::NotAzure => {
                "Failed to validate OVF: ProvisioningSection not found (not an Azure provisioning document)"
                    .to_string()
            }
            Self::Missing { element, .. } => format!("Failed to validate OVF: {element} not found"),
            Self::EmptyElement { .. }
            | Self::Duplicate { .. }
            | Self::BadPublicKey { .. }
            | Self::BadKeyPair { .. } => format!("Failed to validate OVF: {self}"),
        };
        text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(REASON_MAX_CHARS).collect()
    }
}

impl OvfError {
    /// Whether this is an OVF environment that asks for no provisioning: no `ProvisioningSection`,
    /// or one without a `LinuxProvisioningConfigurationSet`, as a specialized VM's DVD carries.
    /// Every other error is a provisioning request that is broken.
    pub fn no_provisioning_section(&self) -> bool {
        matches!(self, Self::NotAzure | Self::Missing { element: "LinuxProvisioningConfigurationSet", .. })
    }
}

/// Longest [`OvfError::reason`] text, in characters.
pub const REASON_MAX_CHARS: usize = 300;

/// Parse an OVF environment read from disk: skips a UTF-8 byte order mark (waagent strips a leading
/// BOM too), requires UTF-8, then [`parse`]s.
pub fn parse_bytes(bytes: &[u8]) -> Result<OvfEnv, OvfError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| OvfError::NotUtf8 { offset: e.valid_up_to() })?;
    parse(text)
}

/// Parse and validate an OVF environment (see the [module documentation](self) for the rules).
///
/// ```
/// let xml = r#"<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"
///                           xmlns:wa="http://schemas.microsoft.com/windowsazure">
///   <wa:ProvisioningSection>
///     <wa:Version>1.0</wa:Version>
///     <wa:LinuxProvisioningConfigurationSet>
///       <wa:HostName>vm1</wa:HostName>
///       <wa:UserName>azureuser</wa:UserName>
///       <wa:UserPassword>secret</wa:UserPassword>
///     </wa:LinuxProvisioningConfigurationSet>
///   </wa:ProvisioningSection>
///   <wa:PlatformSettingsSection>
///     <wa:PlatformSettings><wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent></wa:PlatformSettings>
///   </wa:PlatformSettingsSection>
/// </Environment>"#;
/// let env = wala::documents::ovf::parse(xml).expect("a valid provisioning request");
/// assert_eq!((env.provisioning.host_name.as_str(), env.provisioning.user_name.as_str()), ("vm1", "azureuser"));
/// // The password is held in a Secret: it never reaches Debug output.
/// assert!(!format!("{env:?}").contains("secret"));
/// assert!(!wala::documents::ovf::scrub_password(xml).unwrap().contains("secret"));
/// ```
pub fn parse(xml: &str) -> Result<OvfEnv, OvfError> {
    let root = build_tree(xml)?;
    if !root.is(OVF_NS, "Environment") {
        return Err(OvfError::NotOvfEnvironment {
            root: root.name.clone(),
            namespace: root.namespace.as_deref().map(str::to_string),
        });
    }
    let provisioning = match single(&root, "Environment", &["ProvisioningSection"])? {
        Some(section) => parse_provisioning(section)?,
        None => return Err(OvfError::NotAzure),
    };
    let platform_section = required(&root, "Environment", "PlatformSettingsSection")?;
    let platform = parse_platform(platform_section)?;
    Ok(OvfEnv { provisioning, platform })
}

/// The document with the content of every `UserPassword` element (in any namespace, under any
/// prefix) removed: `<ns1:UserPassword>secret</ns1:UserPassword>` becomes
/// `<ns1:UserPassword></ns1:UserPassword>`. Every other byte is unchanged, including a leading BOM.
/// Used before keeping a copy of the document on disk.
///
/// waagent replaces the text with `*` using a regex that only matches the un-prefixed element name
/// and stops at newlines, so `wa:`/`ns1:`-prefixed passwords and multi-line ones survive there.
/// wala leaves the element empty, which a later parse reads as "no password".
///
/// Fails, like [`parse`], when the document is not well-formed: nothing must be written then.
pub fn scrub_password(xml: &str) -> Result<String, OvfError> {
    let (bom, body) = match xml.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", xml),
    };
    let root = build_tree(body)?;
    let mut spans = Vec::new();
    collect_password_spans(&root, &mut spans);
    spans.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(xml.len());
    out.push_str(bom);
    let mut at = 0;
    for span in spans {
        if span.start < at || span.end > body.len() {
            continue; // nested inside an already removed span
        }
        out.push_str(body.get(at..span.start).unwrap_or_default());
        at = span.end;
    }
    out.push_str(body.get(at..).unwrap_or_default());
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------
// Field extraction

fn parse_provisioning(section: &Node) -> Result<LinuxProvisioning, OvfError> {
    const SECTION: &str = "ProvisioningSection";
    const SET: &str = "LinuxProvisioningConfigurationSet";
    // The set first: a section without one (a specialized VM's) is told apart from a broken one.
    let set = required(section, SECTION, SET)?;
    let version = required_text(section, SECTION, "Version")?;
    warn_if_newer(&version);

    let configuration_set_type = optional_text(set, SET, &["ConfigurationSetType"])?;
    if let Some(kind) = &configuration_set_type {
        if kind != LINUX_CONFIGURATION_SET_TYPE {
            log::warn!(
                "ovf-env.xml: ConfigurationSetType is {kind:?}, expected {LINUX_CONFIGURATION_SET_TYPE}"
            );
        }
    }
    let host_name = required_text(set, SET, "HostName")?;
    let user_name = required_text(set, SET, "UserName")?;
    let user_password = single(set, SET, &["UserPassword"])?.and_then(raw_text).map(Secret::new);
    let disable_ssh_password_authentication = optional_bool(set, SET, "DisableSshPasswordAuthentication")?;
    let custom_data = single(set, SET, &["CustomData"])?.and_then(raw_text).map(Secret::new);

    let (mut public_keys, mut key_pairs) = (Vec::new(), Vec::new());
    if let Some(ssh) = single(set, SET, &["SSH"])? {
        if let Some(keys) = single(ssh, "SSH", &["PublicKeys"])? {
            for (i, key) in wa_children(keys, "PublicKey").enumerate() {
                public_keys.push(parse_public_key(key, i + 1)?);
            }
        }
        if let Some(pairs) = single(ssh, "SSH", &["KeyPairs"])? {
            for (i, pair) in wa_children(pairs, "KeyPair").enumerate() {
                key_pairs.push(parse_key_pair(pair, i + 1)?);
            }
        }
    }

    Ok(LinuxProvisioning {
        version,
        configuration_set_type,
        host_name,
        user_name,
        user_password,
        disable_ssh_password_authentication,
        public_keys,
        key_pairs,
        custom_data,
    })
}

fn parse_public_key(key: &Node, index: usize) -> Result<PublicKey, OvfError> {
    const KEY: &str = "PublicKey";
    let fingerprint = optional_text(key, KEY, &["Fingerprint"])?;
    let value = optional_text(key, KEY, &["Value"])?;
    let path = optional_text(key, KEY, &["Path"])?.ok_or(OvfError::BadPublicKey { index, why: "no Path" })?;
    if fingerprint.is_none() && value.is_none() {
        return Err(OvfError::BadPublicKey { index, why: "neither Value nor Fingerprint" });
    }
    Ok(PublicKey { fingerprint, path, value })
}

fn parse_key_pair(pair: &Node, index: usize) -> Result<KeyPair, OvfError> {
    const PAIR: &str = "KeyPair";
    let fingerprint = optional_text(pair, PAIR, &["Fingerprint"])?
        .ok_or(OvfError::BadKeyPair { index, why: "no Fingerprint" })?;
    let path = optional_text(pair, PAIR, &["Path"])?.ok_or(OvfError::BadKeyPair { index, why: "no Path" })?;
    Ok(KeyPair { fingerprint, path })
}

fn parse_platform(section: &Node) -> Result<PlatformSettings, OvfError> {
    const SECTION: &str = "PlatformSettingsSection";
    const SETTINGS: &str = "PlatformSettings";
    let version = optional_text(section, SECTION, &["Version"])?;
    let s = required(section, SECTION, SETTINGS)?;
    Ok(PlatformSettings {
        version,
        provision_guest_agent: required_text(s, SETTINGS, "ProvisionGuestAgent")?,
        kms_server_hostname: optional_text(s, SETTINGS, &["KmsServerHostname"])?,
        guest_agent_package_name: optional_text(s, SETTINGS, &["GuestAgentPackageName"])?,
        retain_windows_pe_pass_in_unattend: optional_bool(s, SETTINGS, "RetainWindowsPEPassInUnattend")?,
        retain_offline_servicing_pass_in_unattend: optional_bool(
            s,
            SETTINGS,
            "RetainOfflineServicingPassInUnattend",
        )?,
        preprovisioned_vm: optional_bool(s, SETTINGS, "PreprovisionedVm")?,
        preprovisioned_vm_type: optional_text(
            s,
            SETTINGS,
            &["PreprovisionedVMType", "PreprovisionedVmType"],
        )?,
        provision_guest_proxy_agent: optional_bool(s, SETTINGS, "ProvisionGuestProxyAgent")?,
        enable_trusted_image_identifier: optional_bool(s, SETTINGS, "EnableTrustedImageIdentifier")?,
        use_avma: optional_bool(s, SETTINGS, "UseAVMA")?,
    })
}

/// Log when the document's version is newer than the one this parser knows (waagent does the same
/// and carries on).
fn warn_if_newer(version: &str) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next().flatten();
    let minor = parts.next().flatten().unwrap_or(0);
    match major {
        Some(major) if (major, minor) <= KNOWN_VERSION => {}
        _ => log::warn!(
            "ovf-env.xml: newer or unknown provisioning configuration version {version:?}; parsing it as 1.0"
        ),
    }
}

/// The one WA-namespace child of `parent` called one of `names` (aliases spellings of one element),
/// if any; more than one is an error.
fn single<'a>(
    parent: &'a Node,
    parent_name: &'static str,
    names: &[&'static str],
) -> Result<Option<&'a Node>, OvfError> {
    let mut found = parent
        .children
        .iter()
        .filter(|c| c.namespace.as_deref() == Some(WA_NS) && names.contains(&c.name.as_str()));
    let first = found.next();
    let more = found.count();
    if more > 0 {
        let element = names.first().copied().unwrap_or("element");
        return Err(OvfError::Duplicate { element, parent: parent_name, count: more + 1 });
    }
    Ok(first)
}

fn required<'a>(
    parent: &'a Node,
    parent_name: &'static str,
    name: &'static str,
) -> Result<&'a Node, OvfError> {
    single(parent, parent_name, &[name])?.ok_or(OvfError::Missing { element: name, parent: parent_name })
}

fn required_text(parent: &Node, parent_name: &'static str, name: &'static str) -> Result<String, OvfError> {
    trimmed_text(required(parent, parent_name, name)?).ok_or(OvfError::EmptyElement { element: name })
}

fn optional_text(
    parent: &Node,
    parent_name: &'static str,
    names: &[&'static str],
) -> Result<Option<String>, OvfError> {
    Ok(single(parent, parent_name, names)?.and_then(trimmed_text))
}

fn optional_bool(
    parent: &Node,
    parent_name: &'static str,
    name: &'static str,
) -> Result<Option<bool>, OvfError> {
    let Some(text) = optional_text(parent, parent_name, &[name])? else {
        return Ok(None);
    };
    let value = parse_bool(&text);
    if value.is_none() {
        log::warn!("ovf-env.xml: {name} is {text:?}, not true or false; treating it as not given");
    }
    Ok(value)
}

/// `true`/`false`, case-insensitively, on already trimmed text.
fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn collect_password_spans(node: &Node, spans: &mut Vec<Range<usize>>) {
    if node.name == "UserPassword" {
        if !node.content.is_empty() {
            spans.push(node.content.clone());
        }
        return;
    }
    for child in &node.children {
        collect_password_spans(child, spans);
    }
}

// ---------------------------------------------------------------------------------------------------
// The tree, from the one XML reader ([`crate::documents::xml`]), namespaces declared.

/// Most elements in one document. Real documents have about 30, plus 4 per SSH key.
pub const MAX_ELEMENTS: usize = 50_000;

/// Most elements and attributes, together: more than a document within its size limit
/// ([`crate::base::limits::Document::Ovf`], 1 MiB) can hold, so that only elements are capped in
/// effect, while the tree of any document stays a small multiple of it.
const MAX_NODES: usize = 300_000;

/// How `ovf-env.xml` is read: every prefix declared.
const READ: xml::Options = xml::Options {
    limits: xml::Limits { max_depth: MAX_DEPTH, max_elements: MAX_ELEMENTS, max_nodes: MAX_NODES },
    prefixes: xml::Prefixes::Declared,
    secret_text: true,
};

type Node = xml::Element;

/// Build the element tree, checking well-formedness.
fn build_tree(text: &str) -> Result<Node, OvfError> {
    xml::parse(text, READ).map_err(|e| match e {
        xml::XmlError::Empty => OvfError::Empty,
        xml::XmlError::Malformed { line, column, message } => OvfError::Xml { line, column, message },
        xml::XmlError::TooDeep { limit, line } => OvfError::TooDeep { limit, line },
        xml::XmlError::BadReference { element, line } => OvfError::BadReference { element, line },
        xml::XmlError::TooManyNodes { what, limit, line, column } => {
            OvfError::Xml { line, column, message: format!("more than {limit} {what}") }
        }
    })
}

/// The WA-namespace children of `node` named `name`.
fn wa_children<'a>(node: &'a Node, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
    node.children_in(WA_NS, name)
}

/// `xsi:nil="true"` (or `1`).
fn is_nil(node: &Node) -> bool {
    node.attr_in(XSI_NS, "nil").is_some_and(|v| matches!(v.trim_matches(is_xml_space), "true" | "1"))
}

/// Trimmed text; `None` when nil, empty or only whitespace.
fn trimmed_text(node: &Node) -> Option<String> {
    let text = node.text.trim_matches(is_xml_space);
    (!is_nil(node) && !text.is_empty()).then(|| text.to_string())
}

/// Untrimmed text; `None` when nil, empty or only whitespace.
fn raw_text(node: &Node) -> Option<String> {
    (!is_nil(node) && !node.text.trim_matches(is_xml_space).is_empty()).then(|| node.text.clone())
}

/// Serialize an optional secret as `"<redacted>"` (or `null` when absent), never its value.
fn serialize_redacted<S: Serializer>(
    value: &Option<Secret<String>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str("<redacted>"),
        None => serializer.serialize_none(),
    }
}

impl fmt::Display for OvfEnv {
    /// A one-line summary for logs (no secrets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.provisioning;
        write!(
            f,
            "host {:?}, user {:?}, password {}, {} public key(s), {} key pair(s), custom data {}",
            p.host_name,
            p.user_name,
            if p.user_password.is_some() { "given" } else { "none" },
            p.public_keys.len(),
            p.key_pairs.len(),
            if p.custom_data.is_some() { "given" } else { "none" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A platform-style document (`wa:` prefix, default namespace re-declared) with the given
    /// children of `LinuxProvisioningConfigurationSet` and of `PlatformSettings`.
    fn doc(set: &str, platform: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <wa:ProvisioningSection>
    <wa:Version>1.0</wa:Version>
    <LinuxProvisioningConfigurationSet xmlns="http://schemas.microsoft.com/windowsazure">
      {set}
    </LinuxProvisioningConfigurationSet>
  </wa:ProvisioningSection>
  <wa:PlatformSettingsSection>
    <wa:Version>1.0</wa:Version>
    <wa:PlatformSettings>{platform}</wa:PlatformSettings>
  </wa:PlatformSettingsSection>
</Environment>
"#
        )
    }

    const USER: &str = "<HostName>vm1</HostName><UserName>azureuser</UserName>";
    const PGA: &str = "<wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent>";

    fn err(xml: &str) -> OvfError {
        match parse(xml) {
            Ok(env) => panic!("accepted: {env:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn minimal_document() {
        let env = parse(&doc(USER, PGA)).unwrap();
        let p = &env.provisioning;
        assert_eq!(p.version, "1.0");
        assert_eq!(p.host_name, "vm1");
        assert_eq!(p.user_name, "azureuser");
        assert!(p.user_password.is_none());
        assert!(p.custom_data.is_none());
        assert_eq!(p.disable_ssh_password_authentication, None);
        assert!(!p.password_authentication_disabled());
        assert!(p.public_keys.is_empty() && p.key_pairs.is_empty());
        assert_eq!(env.platform.provision_guest_agent, "true");
        assert!(!env.platform.guest_agent_disabled());
        assert_eq!(env.platform.version.as_deref(), Some("1.0"));
        assert_eq!(env.platform.preprovisioned_vm, None);
    }

    #[test]
    fn every_field() {
        let set = r#"<ConfigurationSetType>LinuxProvisioningConfiguration</ConfigurationSetType>
            <HostName>
               vm1
            </HostName>
            <UserName>azureuser</UserName>
            <UserPassword> p@ss word </UserPassword>
            <DisableSshPasswordAuthentication> TRUE </DisableSshPasswordAuthentication>
            <SSH>
              <PublicKeys>
                <PublicKey><Fingerprint>ab12</Fingerprint><Path>$HOME/azureuser/.ssh/authorized_keys</Path>
                  <Value>ecdsa-sha2-nistp256 AAAA x@y</Value></PublicKey>
                <PublicKey><Fingerprint>CD34</Fingerprint><Path>/p2</Path><Value/></PublicKey>
              </PublicKeys>
              <KeyPairs><KeyPair><Fingerprint>EF56</Fingerprint><Path>/home/a/.ssh/id_rsa</Path></KeyPair></KeyPairs>
            </SSH>
            <CustomData>
I2Nsb3VkLWNvbmZpZwo=
</CustomData>"#;
        let platform = r#"<wa:KmsServerHostname>kms.core.windows.net</wa:KmsServerHostname>
            <wa:ProvisionGuestAgent>False</wa:ProvisionGuestAgent>
            <wa:GuestAgentPackageName xsi:nil="true"/>
            <wa:RetainWindowsPEPassInUnattend>true</wa:RetainWindowsPEPassInUnattend>
            <wa:RetainOfflineServicingPassInUnattend>false</wa:RetainOfflineServicingPassInUnattend>
            <wa:PreprovisionedVm>True</wa:PreprovisionedVm>
            <wa:PreprovisionedVmType>Savable</wa:PreprovisionedVmType>
            <wa:ProvisionGuestProxyAgent>TRUE</wa:ProvisionGuestProxyAgent>
            <wa:EnableTrustedImageIdentifier>false</wa:EnableTrustedImageIdentifier>
            <wa:UseAVMA>true</wa:UseAVMA>"#;
        let env = parse(&doc(set, platform)).unwrap();
        let p = &env.provisioning;
        assert_eq!(p.configuration_set_type.as_deref(), Some("LinuxProvisioningConfiguration"));
        assert_eq!(p.host_name, "vm1");
        assert_eq!(p.user_password.as_ref().unwrap().expose(), " p@ss word ");
        assert_eq!(p.disable_ssh_password_authentication, Some(true));
        assert!(p.password_authentication_disabled());
        assert_eq!(
            p.public_keys,
            vec![
                PublicKey {
                    fingerprint: Some("ab12".into()),
                    path: "$HOME/azureuser/.ssh/authorized_keys".into(),
                    value: Some("ecdsa-sha2-nistp256 AAAA x@y".into()),
                },
                PublicKey { fingerprint: Some("CD34".into()), path: "/p2".into(), value: None },
            ]
        );
        assert_eq!(
            p.key_pairs,
            vec![KeyPair { fingerprint: "EF56".into(), path: "/home/a/.ssh/id_rsa".into() }]
        );
        assert_eq!(p.custom_data.as_ref().unwrap().expose(), "\nI2Nsb3VkLWNvbmZpZwo=\n");
        let s = &env.platform;
        assert_eq!(s.kms_server_hostname.as_deref(), Some("kms.core.windows.net"));
        assert_eq!(s.provision_guest_agent, "False");
        assert!(s.guest_agent_disabled());
        assert_eq!(s.guest_agent_package_name, None);
        assert_eq!(s.retain_windows_pe_pass_in_unattend, Some(true));
        assert_eq!(s.retain_offline_servicing_pass_in_unattend, Some(false));
        assert_eq!(s.preprovisioned_vm, Some(true));
        assert_eq!(s.preprovisioned_vm_type.as_deref(), Some("Savable"));
        assert_eq!(s.provision_guest_proxy_agent, Some(true));
        assert_eq!(s.enable_trusted_image_identifier, Some(false));
        assert_eq!(s.use_avma, Some(true));
    }

    #[test]
    fn prefixes_do_not_matter_only_namespaces() {
        let xml = r#"<a:Environment xmlns:a="http://schemas.dmtf.org/ovf/environment/1" xmlns:b="http://schemas.microsoft.com/windowsazure">
<b:ProvisioningSection><b:Version>1.0</b:Version><b:LinuxProvisioningConfigurationSet>
<b:HostName>h</b:HostName><b:UserName>u</b:UserName><b:UserPassword>pw</b:UserPassword>
<x:HostName xmlns:x="urn:other">ignored</x:HostName>
</b:LinuxProvisioningConfigurationSet></b:ProvisioningSection>
<b:PlatformSettingsSection><PlatformSettings xmlns="http://schemas.microsoft.com/windowsazure"><ProvisionGuestAgent>true</ProvisionGuestAgent></PlatformSettings></b:PlatformSettingsSection>
</a:Environment>"#;
        let env = parse(xml).unwrap();
        assert_eq!(env.provisioning.host_name, "h");
        assert_eq!(env.provisioning.user_password.as_ref().unwrap().expose(), "pw");
        // Azure element names in the wrong namespace are not Azure elements.
        let wrong = xml.replace("<b:HostName>h</b:HostName>", "<HostName>h</HostName>");
        assert_eq!(
            err(&wrong),
            OvfError::Missing { element: "HostName", parent: "LinuxProvisioningConfigurationSet" }
        );
    }

    #[test]
    fn required_elements() {
        let cases = [
            (doc("<UserName>u</UserName>", PGA), "HostName"),
            (doc("<HostName>h</HostName>", PGA), "UserName"),
            (doc(USER, ""), "ProvisionGuestAgent"),
        ];
        for (xml, element) in cases {
            let e = err(&xml);
            assert!(matches!(e, OvfError::Missing { element: el, .. } if el == element), "{e:?}");
            assert_eq!(e.reason(), format!("Failed to validate OVF: {element} not found"));
        }
        let no_version = doc(USER, PGA).replace("<wa:Version>1.0</wa:Version>\n    <Linux", "<Linux");
        assert_eq!(err(&no_version), OvfError::Missing { element: "Version", parent: "ProvisioningSection" });
        let no_set = doc(USER, PGA)
            .replace("LinuxProvisioningConfigurationSet", "WindowsProvisioningConfigurationSet");
        assert!(matches!(
            err(&no_set),
            OvfError::Missing { element: "LinuxProvisioningConfigurationSet", .. }
        ));
        assert!(err(&no_set).no_provisioning_section());
        // A section holding only its version (and no version either) asks for nothing.
        let start = no_set.find("<WindowsProvisioningConfigurationSet").unwrap();
        let end = no_set.find("</WindowsProvisioningConfigurationSet>").unwrap()
            + "</WindowsProvisioningConfigurationSet>".len();
        let only_version = format!("{}{}", &no_set[..start], &no_set[end..]);
        assert!(err(&only_version).no_provisioning_section(), "{:?}", err(&only_version));
        let empty_section = only_version.replace("<wa:Version>1.0</wa:Version>", "");
        assert!(err(&empty_section).no_provisioning_section(), "{:?}", err(&empty_section));
        for broken in [&no_version, &doc("<UserName>u</UserName>", PGA), &doc(USER, "")] {
            assert!(!err(broken).no_provisioning_section(), "{broken}");
        }
        let no_platform = doc(USER, PGA).replace("PlatformSettingsSection", "OtherSection");
        assert!(matches!(err(&no_platform), OvfError::Missing { element: "PlatformSettingsSection", .. }));
        let no_settings = doc(USER, PGA).replace("wa:PlatformSettings>", "wa:Other>");
        assert!(matches!(err(&no_settings), OvfError::Missing { element: "PlatformSettings", .. }));
    }

    #[test]
    fn empty_or_nil_required_elements_count_as_missing() {
        for (set, platform, element) in [
            ("<HostName>  </HostName><UserName>u</UserName>", PGA, "HostName"),
            ("<HostName>h</HostName><UserName/>", PGA, "UserName"),
            (USER, "<wa:ProvisionGuestAgent></wa:ProvisionGuestAgent>", "ProvisionGuestAgent"),
            (USER, r#"<wa:ProvisionGuestAgent xsi:nil="true"/>"#, "ProvisionGuestAgent"),
            (
                USER,
                r#"<wa:ProvisionGuestAgent xsi:nil="1">true</wa:ProvisionGuestAgent>"#,
                "ProvisionGuestAgent",
            ),
        ] {
            let e = err(&doc(set, platform));
            assert_eq!(e, OvfError::EmptyElement { element });
        }
    }

    #[test]
    fn duplicates_are_rejected() {
        let e = err(&doc(&format!("{USER}<HostName>other</HostName>"), PGA));
        assert_eq!(
            e,
            OvfError::Duplicate {
                element: "HostName",
                parent: "LinuxProvisioningConfigurationSet",
                count: 2
            }
        );
        let two_sections = doc(USER, PGA).replace(
            "</wa:ProvisioningSection>",
            "</wa:ProvisioningSection><wa:ProvisioningSection></wa:ProvisioningSection>",
        );
        assert!(matches!(
            err(&two_sections),
            OvfError::Duplicate { element: "ProvisioningSection", count: 2, .. }
        ));
        let both_spellings = doc(
            USER,
            "<wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent><wa:PreprovisionedVMType>a</wa:PreprovisionedVMType><wa:PreprovisionedVmType>b</wa:PreprovisionedVmType>",
        );
        assert!(matches!(err(&both_spellings), OvfError::Duplicate { element: "PreprovisionedVMType", .. }));
    }

    #[test]
    fn foreign_documents() {
        let vmware = r#"<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"><PropertySection/></Environment>"#;
        assert_eq!(err(vmware), OvfError::NotAzure);
        assert!(err(vmware).reason().contains("ProvisioningSection not found"));
        let section_in_ovf_ns = doc(USER, PGA).replace("wa:ProvisioningSection", "ProvisioningSection");
        assert_eq!(err(&section_in_ovf_ns), OvfError::NotAzure);
        let e = err("<html><body/></html>");
        assert_eq!(e, OvfError::NotOvfEnvironment { root: "html".into(), namespace: None });
        assert_eq!(e.reason(), "Failed to validate OVF: Environment not found");
        let azure_root = r#"<Environment xmlns="http://schemas.microsoft.com/windowsazure"/>"#;
        assert!(matches!(err(azure_root), OvfError::NotOvfEnvironment { .. }));
    }

    #[test]
    fn malformed_xml() {
        assert_eq!(err(""), OvfError::Empty);
        assert_eq!(err(" \n\t"), OvfError::Empty);
        for (xml, needle) in [
            ("badxml", "text outside"),
            ("<a>", "not closed"),
            ("<a></b>", ""),
            ("<a/><b/>", "more than one root"),
            ("<a/>trailing", "text outside"),
            ("<foo><?xml version=\"1.0\"?><a/></foo>", "declaration"),
            ("<x:a/>", "undeclared namespace prefix"),
            ("<a x:y=\"1\"/>", "undeclared namespace prefix"),
            ("<a b=\"1\" b=\"2\"/>", "attribute"),
            ("<a><![CDATA[x</a>", ""),
            ("<a><!-- x</a>", ""),
            ("<!DOCTYPE a><a/><!DOCTYPE b>", "DOCTYPE"),
            ("<![CDATA[x]]><a/>", "CDATA outside"),
            ("&amp;<a/>", "reference outside"),
            ("</a>", ""),
        ] {
            let e = err(xml);
            assert!(matches!(e, OvfError::Xml { .. }), "{xml:?} gave {e:?}");
            assert!(e.to_string().contains(needle), "{xml:?} gave {e}");
            assert!(e.reason().starts_with("Failed to parse OVF: "), "{}", e.reason());
        }
        let long = format!("<a>\n<{0}>\n</b></{0}></a>", "x".repeat(1000));
        let reason = err(&long).reason();
        assert!(reason.chars().count() <= REASON_MAX_CHARS && !reason.contains('\n'), "{reason}");
        let e = err("<a>\n<b>\n</c></a>");
        assert!(matches!(e, OvfError::Xml { line: 3, .. }), "{e:?}");
    }

    #[test]
    fn bad_references_do_not_leak_text() {
        let xml = doc(&format!("{USER}<UserPassword>se&cret;word</UserPassword>"), PGA);
        let e = err(&xml);
        assert!(matches!(&e, OvfError::BadReference { element, .. } if element == "UserPassword"), "{e:?}");
        assert!(!e.to_string().contains("cret"));
        assert!(!e.reason().contains("cret"));
        let e = err(&doc(&format!("{USER}<UserPassword>a&#0;b</UserPassword>"), PGA));
        assert!(matches!(e, OvfError::BadReference { .. }), "{e:?}");
        let e = err(&doc(&format!("{USER}<UserPassword>a&secret b</UserPassword>"), PGA));
        assert!(!format!("{e} {e:?}").contains("secret"), "{e:?}");
    }

    /// `doc()` with `extra` added to the root's start tag.
    fn doc_with_root_attributes(extra: &str) -> String {
        doc(USER, PGA).replacen("<Environment ", &format!("<Environment {extra} "), 1)
    }

    // Hostile documents of about 1 MB (under the 1 MiB limit). quick-xml's resolver took 6.9 s on
    // the first (release build); counting lines per reference never finished on the second.
    // These tests assert the outcome; `cargo bench --bench parsers` prints the times.

    #[test]
    fn fifty_thousand_namespace_declarations_are_parsed_in_linear_time() {
        let decls: String = (0..50_000).map(|i| format!(" xmlns:p{i}=\"u\"")).collect();
        let xml = doc_with_root_attributes(&decls);
        assert!(xml.len() > 800_000 && xml.len() as u64 <= crate::base::limits::Document::Ovf.limit());
        let env = parse(&xml).expect("a valid document");
        assert_eq!(env.provisioning.host_name, "vm1");
        // The same prefix declared again on every level resolves to the innermost binding.
        let nested = doc(USER, PGA).replace(
            "<wa:Version>1.0</wa:Version>\n    <LinuxProvisioningConfigurationSet",
            "<wa:Version xmlns:wa=\"urn:other\">1.0</wa:Version>\n    <LinuxProvisioningConfigurationSet",
        );
        assert_eq!(err(&nested), OvfError::Missing { element: "Version", parent: "ProvisioningSection" });
    }

    #[test]
    fn a_hundred_thousand_attributes_and_references_are_parsed_in_linear_time() {
        let attrs: String = (0..100_000).map(|i| format!(" a{i}=\"\"")).collect();
        let env = parse(&doc_with_root_attributes(&attrs)).expect("a valid document");
        assert_eq!(env.provisioning.user_name, "azureuser");
        let dup = doc_with_root_attributes(&format!("{attrs} a99999=\"x\""));
        assert!(err(&dup).to_string().contains("duplicate attribute \"a99999\""), "{}", err(&dup));
        let refs = "&amp;".repeat(200_000);
        let env = parse(&doc(&format!("{USER}<CustomData>{refs}</CustomData>"), PGA)).expect("valid");
        assert_eq!(env.provisioning.custom_data.expect("custom data").expose().len(), 200_000);
    }

    #[test]
    fn elements_are_capped() {
        let many = doc(&format!("{USER}{}", "<x/>".repeat(MAX_ELEMENTS)), PGA);
        assert!(many.len() as u64 <= crate::base::limits::Document::Ovf.limit());
        let e = err(&many);
        assert!(e.to_string().contains(&format!("more than {MAX_ELEMENTS} elements")), "{e}");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "<Environment xmlns=\"{OVF_NS}\">{}{}</Environment>",
            "<a>".repeat(MAX_DEPTH + 5),
            "</a>".repeat(MAX_DEPTH + 5)
        );
        assert!(matches!(err(&deep), OvfError::TooDeep { limit: MAX_DEPTH, .. }));
    }

    #[test]
    fn text_is_concatenated_and_decoded() {
        let set = "<HostName>v<!-- c -->m<![CDATA[1]]></HostName><UserName>a&amp;b&#x41;&#66;&lt;</UserName>\
                   <UserPassword><![CDATA[<pw>]]></UserPassword>";
        let env = parse(&doc(set, PGA)).unwrap();
        assert_eq!(env.provisioning.host_name, "vm1");
        assert_eq!(env.provisioning.user_name, "a&bAB<");
        assert_eq!(env.provisioning.user_password.as_ref().unwrap().expose(), "<pw>");
    }

    #[test]
    fn booleans() {
        for (text, want) in [
            ("true", Some(true)),
            ("True", Some(true)),
            (" TRUE\n", Some(true)),
            ("false", Some(false)),
            ("FALSE", Some(false)),
            ("yes", None),
            ("1", None),
            ("", None),
        ] {
            let set =
                format!("{USER}<DisableSshPasswordAuthentication>{text}</DisableSshPasswordAuthentication>");
            let env = parse(&doc(&set, PGA)).unwrap();
            assert_eq!(env.provisioning.disable_ssh_password_authentication, want, "{text:?}");
            assert_eq!(env.provisioning.password_authentication_disabled(), want == Some(true));
        }
    }

    #[test]
    fn provision_guest_agent_is_kept_as_sent() {
        for (text, disabled) in [("false", true), ("FALSE", true), ("true", false), ("bad data", false)] {
            let env = parse(&doc(USER, &format!("<wa:ProvisionGuestAgent>{text}</wa:ProvisionGuestAgent>")))
                .unwrap();
            assert_eq!(env.platform.provision_guest_agent, text);
            assert_eq!(env.platform.guest_agent_disabled(), disabled, "{text}");
        }
    }

    #[test]
    fn unusable_keys_are_rejected() {
        let key = |inner: &str| {
            doc(&format!("{USER}<SSH><PublicKeys><PublicKey>{inner}</PublicKey></PublicKeys></SSH>"), PGA)
        };
        assert_eq!(
            err(&key("<Value>ssh-rsa AAAA</Value>")),
            OvfError::BadPublicKey { index: 1, why: "no Path" }
        );
        assert_eq!(
            err(&key("<Path>/p</Path><Value> </Value>")),
            OvfError::BadPublicKey { index: 1, why: "neither Value nor Fingerprint" }
        );
        let pair = |inner: &str| {
            doc(&format!("{USER}<SSH><KeyPairs><KeyPair>{inner}</KeyPair></KeyPairs></SSH>"), PGA)
        };
        assert_eq!(err(&pair("<Path>/p</Path>")), OvfError::BadKeyPair { index: 1, why: "no Fingerprint" });
        assert_eq!(
            err(&pair("<Fingerprint>AB</Fingerprint>")),
            OvfError::BadKeyPair { index: 1, why: "no Path" }
        );
    }

    #[test]
    fn unknown_configuration_set_type_and_newer_version_are_accepted() {
        let xml = doc(&format!("<ConfigurationSetType>Other</ConfigurationSetType>{USER}"), PGA)
            .replace("<wa:Version>1.0</wa:Version>\n    <Linux", "<wa:Version>2.1</wa:Version>\n    <Linux");
        let env = parse(&xml).unwrap();
        assert_eq!(env.provisioning.configuration_set_type.as_deref(), Some("Other"));
        assert_eq!(env.provisioning.version, "2.1");
    }

    #[test]
    fn secrets_are_redacted_everywhere() {
        let set = format!("{USER}<UserPassword>hunter2</UserPassword><CustomData>c2VjcmV0</CustomData>");
        let env = parse(&doc(&set, PGA)).unwrap();
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["provisioning"]["user_password"], "<redacted>");
        assert_eq!(json["provisioning"]["custom_data"], "<redacted>");
        assert_eq!(json["provisioning"]["host_name"], "vm1");
        for text in [json.to_string(), format!("{env:?}"), env.to_string()] {
            assert!(!text.contains("hunter2") && !text.contains("c2VjcmV0"), "{text}");
        }
        let none = serde_json::to_value(parse(&doc(USER, PGA)).unwrap()).unwrap();
        assert!(none["provisioning"]["user_password"].is_null());
    }

    #[test]
    fn parse_bytes_skips_bom_and_requires_utf8() {
        let xml = doc(USER, PGA);
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(xml.as_bytes());
        assert_eq!(parse_bytes(&bytes).unwrap().provisioning.host_name, "vm1");
        assert_eq!(parse(&format!("\u{feff}{xml}")).unwrap().provisioning.user_name, "azureuser");
        assert_eq!(parse_bytes(b"<a>\xff</a>").unwrap_err(), OvfError::NotUtf8 { offset: 3 });
    }

    #[test]
    fn scrub_removes_password_under_any_prefix() {
        let plain = doc(&format!("{USER}<UserPassword>s3cret\nline2</UserPassword>"), PGA);
        let scrubbed = scrub_password(&plain).unwrap();
        assert_eq!(scrubbed, plain.replace("s3cret\nline2", ""));
        assert!(parse(&scrubbed).unwrap().provisioning.user_password.is_none());

        let prefixed = r#"<ns0:Environment xmlns:ns0="http://schemas.dmtf.org/ovf/environment/1" xmlns:ns1="http://schemas.microsoft.com/windowsazure"><ns1:ProvisioningSection><ns1:LinuxProvisioningConfigurationSet><ns1:UserPassword>p&amp;w<![CDATA[x]]></ns1:UserPassword><ns1:UserPassword/></ns1:LinuxProvisioningConfigurationSet></ns1:ProvisioningSection></ns0:Environment>"#;
        let scrubbed = scrub_password(prefixed).unwrap();
        assert_eq!(scrubbed, prefixed.replace("p&amp;w<![CDATA[x]]>", ""));

        let with_bom = format!("\u{feff}{plain}");
        assert_eq!(
            scrub_password(&with_bom).unwrap(),
            format!("\u{feff}{}", plain.replace("s3cret\nline2", ""))
        );

        let nothing = doc(USER, PGA);
        assert_eq!(scrub_password(&nothing).unwrap(), nothing);
        assert!(scrub_password("<a><UserPassword>x</a>").is_err());
    }

    #[test]
    fn truncated_and_mangled_input_never_panics() {
        let full = doc(
            &format!("{USER}<UserPassword>pw&amp;</UserPassword><SSH><PublicKeys><PublicKey><Path>/p</Path><Value>k</Value></PublicKey></PublicKeys></SSH>"),
            PGA,
        );
        let mut accepted = 0;
        for end in (0..=full.len()).filter(|&i| full.is_char_boundary(i)) {
            let part = &full[..end];
            accepted += usize::from(parse(part).is_ok());
            let _ = scrub_password(part);
            let mangled: String = part.chars().rev().collect();
            let _ = parse(&mangled);
        }
        // Only the complete document (or it minus trailing whitespace) is accepted.
        assert!((1..=2).contains(&accepted), "{accepted}");
    }
}
