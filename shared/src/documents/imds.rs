//! Azure Instance Metadata Service documents (wire.md §13): parsers only, no HTTP.
//!
//! * [`parse_instance`]: `GET /metadata/instance?api-version=...`: the `compute` fields used for
//!   provisioning and telemetry, and the network interfaces;
//! * [`parse_public_keys`]: `GET /metadata/instance/compute/publicKeys` (each key checked as OpenSSH);
//! * [`parse_text`]: any `?format=text` response;
//! * [`parse_azure_stack_identity`]: Azure Stack Hub's identity document.
//!
//! Rules, the same for every document:
//! * unknown fields are ignored; `null` and absent fields are `None`;
//! * IMDS sends `""` for unset values (`zone`, `tags`, ...): an empty string is `None`;
//! * a string field that arrives as a number or a bool is taken as its text (IMDS sends numbers as
//!   strings, but a type change there must not stop provisioning); an object or an array where text
//!   is expected is an error naming the field;
//! * `osProfile.disablePasswordAuthentication` is a bool, or the string `"true"`/`"false"` (case and
//!   surrounding blanks ignored), which is what IMDS really sends. `""` means "not stated" (`None`).
//!   Any other string, a number or anything else is an error: guessing would decide whether
//!   password logins are allowed.
//!
//! Errors name the field as a JSON path, e.g. `compute.osProfile.disablePasswordAuthentication`.
//!
//! [`crate::provision::imds_request::request`] turns `compute` into a provisioning request when the DVD cannot be read.

use base64::Engine;
use serde_json::{Map, Value};

/// Why an IMDS document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImdsError {
    /// The body is not JSON.
    #[error("IMDS response is not valid JSON: {0}")]
    Json(String),
    /// A required field is absent or null.
    #[error("IMDS: missing field {0}")]
    MissingField(String),
    /// A required field is present but empty.
    #[error("IMDS: field {0} is empty")]
    EmptyField(String),
    /// A field of the wrong JSON type.
    #[error("IMDS: field {field} should be {expected}, found {found}")]
    WrongType { field: String, expected: &'static str, found: &'static str },
    /// A field of the right type whose value is not acceptable.
    #[error("IMDS: field {field} has an invalid value {value:?}: {why}")]
    InvalidValue { field: String, value: String, why: &'static str },
    /// A public key that is not a single OpenSSH public key.
    #[error("IMDS: failed to parse public key {index} for {path}: {why}")]
    BadPublicKey { index: usize, path: String, why: &'static str },
}

/// The parts of `/metadata/instance` wala uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceMetadata {
    pub compute: Compute,
    /// `network`, when the document has it.
    pub network: Option<Network>,
}

/// `compute`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Compute {
    /// `vmId`.
    pub vm_id: Option<String>,
    /// `name`: the VM's name in Azure.
    pub name: Option<String>,
    pub location: Option<String>,
    pub vm_size: Option<String>,
    pub os_type: Option<String>,
    pub publisher: Option<String>,
    pub offer: Option<String>,
    pub sku: Option<String>,
    pub version: Option<String>,
    pub subscription_id: Option<String>,
    pub resource_group_name: Option<String>,
    pub resource_id: Option<String>,
    pub vm_scale_set_name: Option<String>,
    pub zone: Option<String>,
    pub placement_group_id: Option<String>,
    pub platform_fault_domain: Option<String>,
    pub platform_update_domain: Option<String>,
    pub az_environment: Option<String>,
    /// `tags`, as IMDS flattens them: `k1:v1;k2:v2`.
    pub tags: Option<String>,
    /// `osProfile`, absent in older API versions.
    pub os_profile: Option<OsProfile>,
    /// `publicKeys`, in order; empty when absent.
    pub public_keys: Vec<PublicKey>,
}

/// `compute.osProfile`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OsProfile {
    /// `adminUsername`.
    pub admin_username: Option<String>,
    /// `computerName`: the host name to set.
    pub computer_name: Option<String>,
    /// `disablePasswordAuthentication`, read by the rule in the module docs.
    pub disable_password_authentication: Option<bool>,
}

/// One entry of `compute.publicKeys`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PublicKey {
    /// `keyData`, with surrounding blanks and line breaks removed.
    pub key_data: String,
    /// `path`: the authorized_keys file the key was meant for.
    pub path: String,
}

impl PublicKey {
    /// Check that `key_data` is one OpenSSH public key: `<type> <base64 blob> [comment]`, where the
    /// blob decodes and starts with the same key type (as `ssh-keygen` writes it).
    pub fn validate_openssh(&self) -> Result<(), &'static str> {
        if self.key_data.contains(['\n', '\r']) {
            return Err("more than one line");
        }
        let mut words = self.key_data.split_whitespace();
        let key_type = words.next().ok_or("empty key")?;
        let blob = words.next().ok_or("expected '<type> <base64 key> [comment]'")?;
        let known = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-sha2-"];
        if !known.iter().any(|p| key_type.starts_with(p)) {
            return Err("unknown key type");
        }
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(blob).map_err(|_| "key is not base64")?;
        let len = bytes
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or("key too short")?;
        let inner =
            usize::try_from(len).ok().and_then(|l| bytes.get(4..4 + l)).ok_or("key blob truncated")?;
        if inner != key_type.as_bytes() {
            return Err("key type does not match the key blob");
        }
        Ok(())
    }
}

/// `network`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Network {
    /// `network.interface`, in order (the first is the primary NIC).
    pub interfaces: Vec<Interface>,
}

/// One `network.interface[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Interface {
    /// `macAddress` as sent (IMDS sends `000D3A047598`, no separators).
    pub mac_address: Option<String>,
    /// `ipv4.ipAddress[]`.
    pub ipv4_addresses: Vec<IpAddress>,
    /// `ipv4.subnet[]`.
    pub ipv4_subnets: Vec<Subnet>,
    /// `ipv6.ipAddress[]`.
    pub ipv6_addresses: Vec<IpAddress>,
}

/// `ipAddress[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IpAddress {
    pub private_ip_address: Option<String>,
    pub public_ip_address: Option<String>,
}

/// `subnet[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Subnet {
    pub address: Option<String>,
    /// `prefix`, sent as a string (`"24"`).
    pub prefix: Option<String>,
}

impl Interface {
    /// The MAC address normalised to lower-case colon form (`00:0d:3a:04:75:98`); `None` unless it
    /// is 12 hex digits (separators `:` and `-` allowed).
    pub fn mac(&self) -> Option<String> {
        let hex: String = self.mac_address.as_deref()?.chars().filter(|c| *c != ':' && *c != '-').collect();
        if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let lower = hex.to_ascii_lowercase();
        let pairs: Vec<&str> = (0..6).filter_map(|i| lower.get(i * 2..i * 2 + 2)).collect();
        Some(pairs.join(":"))
    }
}

impl InstanceMetadata {
    /// waagent's IMDS health check: the document must have `network.interface[0].macAddress` and
    /// `network.interface[0].ipv4.ipAddress[0].privateIpAddress`, both non-empty.
    pub fn validate_network(&self) -> Result<(), ImdsError> {
        let nic = self
            .network
            .as_ref()
            .and_then(|n| n.interfaces.first())
            .ok_or_else(|| ImdsError::MissingField("network.interface[0]".into()))?;
        if nic.mac_address.is_none() {
            return Err(ImdsError::EmptyField("network.interface[0].macAddress".into()));
        }
        if nic.ipv4_addresses.first().and_then(|a| a.private_ip_address.as_ref()).is_none() {
            return Err(ImdsError::EmptyField(
                "network.interface[0].ipv4.ipAddress[0].privateIpAddress".into(),
            ));
        }
        Ok(())
    }
}

/// Parse `/metadata/instance` (or `/metadata/instance/compute` wrapped as `{"compute": ...}`).
/// `compute` is required: an IMDS error body such as `{"error": "Bad request."}` is rejected.
pub fn parse_instance(text: &str) -> Result<InstanceMetadata, ImdsError> {
    let value = json(text)?;
    let root = Obj::root(&value, "")?;
    let compute = parse_compute(&root.require_obj("compute")?)?;
    let network = root.obj("network")?.map(|n| parse_network(&n)).transpose()?;
    Ok(InstanceMetadata { compute, network })
}

/// Parse a `compute.osProfile` object on its own.
pub fn parse_os_profile(text: &str) -> Result<OsProfile, ImdsError> {
    let value = json(text)?;
    os_profile(&Obj::root(&value, "osProfile")?)
}

/// Parse one `network.interface[]` object on its own.
pub fn parse_interface(text: &str) -> Result<Interface, ImdsError> {
    let value = json(text)?;
    interface(&Obj::root(&value, "interface")?)
}

/// Parse `/metadata/instance/compute/publicKeys`: a JSON array of `{keyData, path}`. Every key must
/// pass [`PublicKey::validate_openssh`]; the error names the key's index and path.
pub fn parse_public_keys(text: &str) -> Result<Vec<PublicKey>, ImdsError> {
    let value = json(text)?;
    let keys = public_keys(&value, "publicKeys")?;
    for (index, key) in keys.iter().enumerate() {
        key.validate_openssh().map_err(|why| ImdsError::BadPublicKey {
            index,
            path: key.path.clone(),
            why,
        })?;
    }
    Ok(keys)
}

/// A `?format=text` response: trimmed; `None` when nothing is left.
pub fn parse_text(body: &str) -> Option<String> {
    Some(body.trim()).filter(|s| !s.is_empty()).map(str::to_string)
}

/// Azure Stack Hub's identity document: `{"subscriptionId": ..., "vmName": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AzureStackIdentity {
    pub subscription_id: Option<String>,
    pub vm_name: Option<String>,
}

/// Parse Azure Stack Hub's identity document.
pub fn parse_azure_stack_identity(text: &str) -> Result<AzureStackIdentity, ImdsError> {
    let value = json(text)?;
    let root = Obj::root(&value, "")?;
    Ok(AzureStackIdentity {
        subscription_id: root.string("subscriptionId")?,
        vm_name: root.string("vmName")?,
    })
}

// ---------------------------------------------------------------------------------------------

fn json(text: &str) -> Result<Value, ImdsError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_json::from_str(text).map_err(|e| ImdsError::Json(e.to_string()))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object and its path, for error messages.
struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn root(value: &'a Value, path: &str) -> Result<Self, ImdsError> {
        match value {
            Value::Object(map) => Ok(Obj { path: path.to_string(), map }),
            other => Err(ImdsError::WrongType {
                field: if path.is_empty() { "(document)".into() } else { path.to_string() },
                expected: "an object",
                found: type_name(other),
            }),
        }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn obj(&self, key: &str) -> Result<Option<Obj<'a>>, ImdsError> {
        self.get(key).map(|v| Obj::root(v, &self.field(key))).transpose()
    }

    fn require_obj(&self, key: &str) -> Result<Obj<'a>, ImdsError> {
        self.obj(key)?.ok_or_else(|| ImdsError::MissingField(self.field(key)))
    }

    fn array(&self, key: &str) -> Result<&'a [Value], ImdsError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(ImdsError::WrongType {
                field: self.field(key),
                expected: "an array",
                found: type_name(other),
            }),
        }
    }

    /// Text field by the module rules: `""`/null/absent → `None`, numbers and bools as text.
    fn string(&self, key: &str) -> Result<Option<String>, ImdsError> {
        let text = match self.get(key) {
            None => return Ok(None),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            Some(other) => {
                return Err(ImdsError::WrongType {
                    field: self.field(key),
                    expected: "a string",
                    found: type_name(other),
                })
            }
        };
        Ok(Some(text).filter(|s| !s.is_empty()))
    }
}

fn parse_compute(c: &Obj<'_>) -> Result<Compute, ImdsError> {
    Ok(Compute {
        vm_id: c.string("vmId")?,
        name: c.string("name")?,
        location: c.string("location")?,
        vm_size: c.string("vmSize")?,
        os_type: c.string("osType")?,
        publisher: c.string("publisher")?,
        offer: c.string("offer")?,
        sku: c.string("sku")?,
        version: c.string("version")?,
        subscription_id: c.string("subscriptionId")?,
        resource_group_name: c.string("resourceGroupName")?,
        resource_id: c.string("resourceId")?,
        vm_scale_set_name: c.string("vmScaleSetName")?,
        zone: c.string("zone")?,
        placement_group_id: c.string("placementGroupId")?,
        platform_fault_domain: c.string("platformFaultDomain")?,
        platform_update_domain: c.string("platformUpdateDomain")?,
        az_environment: c.string("azEnvironment")?,
        tags: c.string("tags")?,
        os_profile: c.obj("osProfile")?.map(|o| os_profile(&o)).transpose()?,
        public_keys: match c.get("publicKeys") {
            Some(v) => public_keys(v, &c.field("publicKeys"))?,
            None => Vec::new(),
        },
    })
}

fn os_profile(o: &Obj<'_>) -> Result<OsProfile, ImdsError> {
    Ok(OsProfile {
        admin_username: o.string("adminUsername")?,
        computer_name: o.string("computerName")?,
        disable_password_authentication: flexible_bool(o, "disablePasswordAuthentication")?,
    })
}

/// A bool sent as a JSON bool or as the string `"true"`/`"false"`; see the module docs.
fn flexible_bool(o: &Obj<'_>, key: &str) -> Result<Option<bool>, ImdsError> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(ImdsError::InvalidValue {
                field: o.field(key),
                value: s.chars().take(40).collect(),
                why: "expected \"true\" or \"false\"",
            }),
        },
        Some(other) => Err(ImdsError::WrongType {
            field: o.field(key),
            expected: "a bool or \"true\"/\"false\"",
            found: type_name(other),
        }),
    }
}

fn public_keys(value: &Value, path: &str) -> Result<Vec<PublicKey>, ImdsError> {
    let items = match value {
        Value::Array(items) => items,
        other => {
            return Err(ImdsError::WrongType {
                field: path.to_string(),
                expected: "an array",
                found: type_name(other),
            })
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let k = Obj::root(item, &format!("{path}[{i}]"))?;
            let key_data = k.string("keyData")?.ok_or_else(|| ImdsError::MissingField(k.field("keyData")))?;
            let path = k.string("path")?.ok_or_else(|| ImdsError::MissingField(k.field("path")))?;
            Ok(PublicKey { key_data, path })
        })
        .collect()
}

fn parse_network(n: &Obj<'_>) -> Result<Network, ImdsError> {
    let interfaces = n
        .array("interface")?
        .iter()
        .enumerate()
        .map(|(i, v)| interface(&Obj::root(v, &format!("{}[{i}]", n.field("interface")))?))
        .collect::<Result<_, _>>()?;
    Ok(Network { interfaces })
}

fn interface(nic: &Obj<'_>) -> Result<Interface, ImdsError> {
    let addresses = |family: Option<Obj<'_>>| -> Result<Vec<IpAddress>, ImdsError> {
        let Some(f) = family else { return Ok(Vec::new()) };
        f.array("ipAddress")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let a = Obj::root(v, &format!("{}[{i}]", f.field("ipAddress")))?;
                Ok(IpAddress {
                    private_ip_address: a.string("privateIpAddress")?,
                    public_ip_address: a.string("publicIpAddress")?,
                })
            })
            .collect()
    };
    let ipv4 = nic.obj("ipv4")?;
    let ipv4_subnets = match &ipv4 {
        None => Vec::new(),
        Some(f) => f
            .array("subnet")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let s = Obj::root(v, &format!("{}[{i}]", f.field("subnet")))?;
                Ok(Subnet { address: s.string("address")?, prefix: s.string("prefix")? })
            })
            .collect::<Result<_, ImdsError>>()?,
    };
    Ok(Interface {
        mac_address: nic.string("macAddress")?,
        ipv4_addresses: addresses(ipv4)?,
        ipv4_subnets,
        ipv6_addresses: addresses(nic.obj("ipv6")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_fields_and_tolerance() {
        let doc = r#"{"compute": {"vmId": "id-1", "name": "vm", "zone": "", "platformFaultDomain": 0,
            "newThing": {"x": [1]}, "osProfile": {"adminUsername": "u", "computerName": "h",
            "disablePasswordAuthentication": " TRUE "},
            "publicKeys": [{"keyData": "ssh-rsa AAAA c\n", "path": "/home/u/.ssh/authorized_keys"}]},
            "network": {"interface": [{"macAddress": "000D3A047598",
              "ipv4": {"ipAddress": [{"privateIpAddress": "10.0.0.4", "publicIpAddress": ""}],
                       "subnet": [{"address": "10.0.0.0", "prefix": "24"}]}}]}}"#;
        let md = parse_instance(doc).unwrap();
        assert_eq!(md.compute.vm_id.as_deref(), Some("id-1"));
        assert_eq!(md.compute.zone, None);
        assert_eq!(md.compute.platform_fault_domain.as_deref(), Some("0"));
        let os = md.compute.os_profile.as_ref().unwrap();
        assert_eq!(os.disable_password_authentication, Some(true));
        assert_eq!(md.compute.public_keys[0].key_data, "ssh-rsa AAAA c");
        let nic = &md.network.as_ref().unwrap().interfaces[0];
        assert_eq!(nic.mac().as_deref(), Some("00:0d:3a:04:75:98"));
        assert_eq!(nic.ipv4_addresses[0].public_ip_address, None);
        assert_eq!(nic.ipv4_subnets[0].prefix.as_deref(), Some("24"));
        md.validate_network().unwrap();
    }

    #[test]
    fn disable_password_authentication_rule() {
        let read = |v: &str| parse_os_profile(&format!(r#"{{"disablePasswordAuthentication": {v}}}"#));
        assert_eq!(read("true").unwrap().disable_password_authentication, Some(true));
        assert_eq!(read("false").unwrap().disable_password_authentication, Some(false));
        assert_eq!(read(r#""false""#).unwrap().disable_password_authentication, Some(false));
        assert_eq!(read(r#""""#).unwrap().disable_password_authentication, None);
        assert_eq!(read("null").unwrap().disable_password_authentication, None);
        let field = "osProfile.disablePasswordAuthentication";
        assert!(matches!(read("42"), Err(ImdsError::WrongType { field: ref f, .. }) if f == field));
        assert!(matches!(read("1"), Err(ImdsError::WrongType { .. })));
        assert!(matches!(read(r#""yes""#), Err(ImdsError::InvalidValue { field: ref f, .. }) if f == field));
    }

    #[test]
    fn errors_name_fields() {
        assert_eq!(
            parse_instance(r#"{"error": "Bad request."}"#),
            Err(ImdsError::MissingField("compute".into()))
        );
        assert!(matches!(parse_instance("[]"), Err(ImdsError::WrongType { .. })));
        assert!(matches!(parse_instance("nope"), Err(ImdsError::Json(_))));
        let bad_name = parse_instance(r#"{"compute": {"osProfile": {"adminUsername": ["a"]}}}"#).unwrap_err();
        assert!(bad_name.to_string().contains("compute.osProfile.adminUsername"), "{bad_name}");
        let bad_key = parse_instance(r#"{"compute": {"publicKeys": [{"path": "/p"}]}}"#).unwrap_err();
        assert_eq!(bad_key, ImdsError::MissingField("compute.publicKeys[0].keyData".into()));
        let no_ip = parse_instance(
            r#"{"compute": {}, "network": {"interface": [{"macAddress": "00", "ipv4": {"ipAddress": []}}]}}"#,
        )
        .unwrap();
        assert!(no_ip.validate_network().unwrap_err().to_string().contains("privateIpAddress"));
    }

    #[test]
    fn openssh_key_check() {
        let key = |k: &str| PublicKey { key_data: k.into(), path: "/p".into() };
        // "AAAAC3NzaC1lZDI1NTE5" is the base64 of the length-prefixed type "ssh-ed25519".
        assert!(key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 c").validate_openssh().is_ok());
        assert!(key("ssh-rsa AAAAC3NzaC1lZDI1NTE5").validate_openssh().is_err(), "type mismatch");
        assert!(key("not-an-ssh-key").validate_openssh().is_err());
        assert!(key("ssh-rsa !!!").validate_openssh().is_err());
        assert!(key("ssh-rsa AAAA").validate_openssh().is_err());
        let err = parse_public_keys(r#"[{"keyData": "junk", "path": "/home/a/.ssh/authorized_keys"}]"#)
            .unwrap_err();
        assert!(err.to_string().contains("/home/a/.ssh/authorized_keys"), "{err}");
        assert_eq!(parse_public_keys("[]"), Ok(Vec::new()));
    }

    #[test]
    fn text_and_azure_stack() {
        assert_eq!(parse_text("  azureuser\n").as_deref(), Some("azureuser"));
        assert_eq!(parse_text(" \n"), None);
        let id = parse_azure_stack_identity(r#"{"subscriptionId":"s","vmName":"v"}"#).unwrap();
        assert_eq!((id.subscription_id.as_deref(), id.vm_name.as_deref()), (Some("s"), Some("v")));
    }
}
