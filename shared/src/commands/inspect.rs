//! `wala-agentd inspect KIND FILE`: run any document wala reads through its parser and show what
//! was understood, as pretty JSON, or why it was rejected. Secrets print as `<redacted>` (the
//! parsers' serializers redact them).

use std::path::Path;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::platform::dhcp;

/// The kinds of document `inspect` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ovf,
    GoalState,
    HostingEnv,
    SharedConfig,
    ExtensionsConfig,
    VmSettings,
    Certificates,
    DhcpLease,
    HandlerManifest,
    ExtStatus,
    Imds,
    Conf,
}

impl Kind {
    /// Every kind with its command-line name.
    pub const ALL: &'static [(&'static str, Kind)] = &[
        ("ovf", Kind::Ovf),
        ("goal-state", Kind::GoalState),
        ("hosting-env", Kind::HostingEnv),
        ("shared-config", Kind::SharedConfig),
        ("extensions-config", Kind::ExtensionsConfig),
        ("vm-settings", Kind::VmSettings),
        ("certificates", Kind::Certificates),
        ("dhcp-lease", Kind::DhcpLease),
        ("handler-manifest", Kind::HandlerManifest),
        ("ext-status", Kind::ExtStatus),
        ("imds", Kind::Imds),
        ("conf", Kind::Conf),
    ];

    /// The document kind whose size limit applies to a file of this kind (`None`: a DHCP lease,
    /// which is the host's own file).
    pub fn document(self) -> Option<crate::base::limits::Document> {
        use crate::base::limits::Document;
        Some(match self {
            Kind::Ovf => Document::Ovf,
            Kind::GoalState => Document::GoalState,
            Kind::HostingEnv => Document::HostingEnvironmentConfig,
            Kind::SharedConfig => Document::SharedConfig,
            Kind::ExtensionsConfig => Document::ExtensionsConfig,
            Kind::VmSettings => Document::VmSettings,
            Kind::Certificates => Document::Certificates,
            Kind::DhcpLease => return None,
            Kind::HandlerManifest => Document::HandlerManifest,
            Kind::ExtStatus => Document::ExtensionStatus,
            Kind::Imds => Document::ImdsInstance,
            Kind::Conf => Document::WaagentConf,
        })
    }

    /// The kind named `name` on the command line.
    pub fn from_name(name: &str) -> Option<Kind> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }
}

/// What inspecting a document gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Understood: the JSON to print.
    Parsed(Value),
    /// Understood, with problems (a configuration file): the JSON to print.
    Problems(Value),
    /// Rejected: why.
    Rejected(String),
    /// wala has no parser for this kind yet.
    NotBuilt(&'static str),
}

fn to_json<T: serde::Serialize>(value: &T) -> Outcome {
    match serde_json::to_value(value) {
        Ok(v) => Outcome::Parsed(v),
        Err(e) => Outcome::Rejected(format!("cannot show the parsed document: {e}")),
    }
}

fn text(bytes: &[u8]) -> Result<&str, Outcome> {
    std::str::from_utf8(bytes).map_err(|e| Outcome::Rejected(format!("not UTF-8 text: {e}")))
}

/// Inspect `bytes` (read from `path`) as a document of `kind`. `now` decides lease expiry.
pub fn inspect(kind: Kind, path: &Path, bytes: &[u8], now: SystemTime) -> Outcome {
    match inspect_inner(kind, path, bytes, now) {
        Ok(o) | Err(o) => o,
    }
}

fn inspect_inner(kind: Kind, path: &Path, bytes: &[u8], now: SystemTime) -> Result<Outcome, Outcome> {
    let rejected = |e: &dyn std::fmt::Display| Outcome::Rejected(e.to_string());
    Ok(match kind {
        Kind::Ovf => {
            to_json(&crate::documents::ovf::parse_bytes(bytes).map_err(|e| Outcome::Rejected(e.reason()))?)
        }
        Kind::GoalState => {
            to_json(&crate::documents::wire::parse_goal_state(text(bytes)?).map_err(|e| rejected(&e))?)
        }
        Kind::HostingEnv => {
            to_json(&crate::documents::wire::parse_hosting_env(text(bytes)?).map_err(|e| rejected(&e))?)
        }
        Kind::SharedConfig => {
            to_json(&crate::documents::wire::parse_shared_config(text(bytes)?).map_err(|e| rejected(&e))?)
        }
        Kind::Certificates => {
            let doc = crate::documents::wire::parse_certificates(text(bytes)?).map_err(|e| rejected(&e))?;
            let payload = match doc.payload().map_err(|e| rejected(&e))? {
                crate::documents::wire::CertificatesPayload::None => json!("none"),
                crate::documents::wire::CertificatesPayload::Pkcs7Pfx(der) => {
                    json!({"format": "Pkcs7BlobWithPfxContents", "cms_der_bytes": der.len()})
                }
                crate::documents::wire::CertificatesPayload::UnsupportedFormat(f) => {
                    json!({"skipped_format": f})
                }
            };
            Outcome::Parsed(json!({
                "version": doc.version,
                "incarnation": doc.incarnation,
                "format": doc.format,
                "payload": payload,
            }))
        }
        Kind::DhcpLease => dhcp_lease(bytes, now)?,
        Kind::Imds => {
            to_json(&crate::documents::imds::parse_instance(text(bytes)?).map_err(|e| rejected(&e))?)
        }
        Kind::Conf => {
            let loaded = crate::documents::conf::parse(text(bytes)?, path);
            let effective: serde_json::Map<String, Value> =
                loaded.config.entries().into_iter().map(|(k, v)| (k.to_string(), Value::String(v))).collect();
            let problems: Vec<String> = loaded.problems.iter().map(|p| p.to_string()).collect();
            let out = json!({"effective": effective, "problems": problems});
            if problems.is_empty() {
                Outcome::Parsed(out)
            } else {
                Outcome::Problems(out)
            }
        }
        Kind::ExtensionsConfig => to_json(
            &crate::documents::extensions::parse_extensions_config(text(bytes)?, None)
                .map_err(|e| rejected(&e))?,
        ),
        Kind::VmSettings => {
            match crate::documents::extensions::parse_vm_settings(text(bytes)?, "unknown")
                .map_err(|e| rejected(&e))?
            {
                crate::documents::extensions::VmSettingsDocument::Supported(gs) => to_json(&gs),
                crate::documents::extensions::VmSettingsDocument::NotSupported { host_ga_plugin_version } => {
                    Outcome::Parsed(json!({
                        "not_supported": format!(
                            "hostGAPluginVersion {} is below {}: vmSettings are ignored and ExtensionsConfig is used",
                            host_ga_plugin_version.as_deref().unwrap_or("(missing)"),
                            crate::documents::extensions::MIN_HOST_GA_PLUGIN_VERSION
                        ),
                        "host_ga_plugin_version": host_ga_plugin_version,
                    }))
                }
            }
        }
        Kind::HandlerManifest => to_json(
            &crate::documents::extensions::parse_handler_manifest(text(bytes)?).map_err(|e| rejected(&e))?,
        ),
        Kind::ExtStatus => {
            to_json(&crate::documents::extensions::parse_status_file(bytes).map_err(|e| rejected(&e))?)
        }
    })
}

/// A DHCP lease in any of the formats wala reads, detected from its content.
fn dhcp_lease(bytes: &[u8], now: SystemTime) -> Result<Outcome, Outcome> {
    let as_text = std::str::from_utf8(bytes).ok().filter(|t| !t.contains('\0'));
    let Some(t) = as_text else {
        // dhcpcd keeps the raw DHCP reply as its lease file.
        let packet = dhcp::parse_dhcp_packet(bytes).map_err(|e| Outcome::Rejected(e.to_string()))?;
        let ws = packet.wireserver().map_err(|e| Outcome::Rejected(e.to_string()))?;
        return Ok(Outcome::Parsed(json!({"format": "dhcp-packet", "wireserver": ws, "packet": packet})));
    };
    let is_key_value = |sep: char| {
        t.lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .all(|l| l.contains(sep))
    };
    if t.contains("lease {") || t.lines().any(|l| l.trim() == "lease {") {
        let leases = dhcp::parse_dhclient_leases(t).map_err(|e| Outcome::Rejected(e.to_string()))?;
        let ws = dhcp::dhclient_wireserver(t, now).map_err(|e| Outcome::Rejected(e.to_string()))?;
        Ok(Outcome::Parsed(json!({"format": "dhclient", "wireserver": ws, "leases": leases})))
    } else if t.lines().any(|l| l.contains("='")) && is_key_value('=') {
        let dump = dhcp::parse_dhcpcd_dump(t).map_err(|e| Outcome::Rejected(e.to_string()))?;
        let ws = dump.wireserver().map_err(|e| Outcome::Rejected(e.to_string()))?;
        Ok(Outcome::Parsed(json!({"format": "dhcpcd-dumplease", "wireserver": ws, "values": dump.values})))
    } else if is_key_value('=') && !t.trim().is_empty() {
        let ws = dhcp::networkd_wireserver(t).map_err(|e| Outcome::Rejected(e.to_string()))?;
        Ok(Outcome::Parsed(json!({"format": "networkd", "wireserver": ws})))
    } else {
        Err(Outcome::Rejected(
            "not a dhclient, systemd-networkd or dhcpcd lease, nor a DHCP packet".to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: &str, data: &[u8]) -> Outcome {
        inspect(Kind::from_name(kind).unwrap(), Path::new("x"), data, SystemTime::now())
    }

    #[test]
    fn every_kind_has_a_name() {
        for (name, kind) in Kind::ALL {
            assert_eq!(Kind::from_name(name), Some(*kind));
        }
        assert_eq!(Kind::from_name("nope"), None);
    }

    #[test]
    fn lease_formats_are_detected() {
        let Outcome::Parsed(v) = run("dhcp-lease", b"ADDRESS=10.0.0.4\nOPTION_245=A83F8110\n") else {
            panic!()
        };
        assert_eq!(v["format"], "networkd");
        assert_eq!(v["wireserver"], "168.63.129.16");
        let Outcome::Parsed(v) = run("dhcp-lease", b"ip_address='10.0.0.4'\n") else { panic!() };
        assert_eq!(v["format"], "dhcpcd-dumplease");
        let d = b"lease {\n  interface \"eth0\";\n  option unknown-245 a8:3f:81:10;\n  expire never;\n}\n";
        let Outcome::Parsed(v) = run("dhcp-lease", d) else { panic!() };
        assert_eq!(
            (v["format"].as_str(), v["wireserver"].as_str()),
            (Some("dhclient"), Some("168.63.129.16"))
        );
        assert!(matches!(run("dhcp-lease", b"hello world"), Outcome::Rejected(_)));
        assert!(matches!(run("dhcp-lease", &[0u8; 10]), Outcome::Rejected(_)));
    }

    #[test]
    fn not_built_and_rejected() {
        assert!(matches!(run("vm-settings", b"{}"), Outcome::Parsed(_)), "not supported is still understood");
        assert!(matches!(run("vm-settings", b"[1"), Outcome::Rejected(_)));
        assert!(matches!(run("extensions-config", b"<Extensions/>"), Outcome::Parsed(_)));
        assert!(matches!(run("handler-manifest", b"[{}]"), Outcome::Rejected(_)));
        assert!(matches!(run("ext-status", b"[]"), Outcome::Parsed(serde_json::Value::Null)));
        assert!(matches!(run("goal-state", b"<nope/>"), Outcome::Rejected(_)));
        assert!(matches!(run("goal-state", &[0xff, 0xfe]), Outcome::Rejected(_)));
        assert!(matches!(run("conf", b"Provisioning.Agent=bogus\n"), Outcome::Problems(_)));
        assert!(matches!(run("conf", b"Logs.Verbose=y\n"), Outcome::Parsed(_)));
    }
}
