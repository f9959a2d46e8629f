//! HostingEnvironmentConfig, fetched from the goal state's `HostingEnvironmentConfig` URL
//! (wire.md §4.3). waagent uses it only for telemetry: the VM name, role name and deployment name.
//! All of these are optional here; only the root element is required.

use crate::documents::wire::{attr_string, parse_root, DocumentError};

const DOC: &str = "HostingEnvironmentConfig";

/// What HostingEnvironmentConfig says about this VM.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostingEnvironmentConfig {
    /// Root attribute `goalStateIncarnation`.
    pub goal_state_incarnation: Option<String>,
    /// `Incarnation/@instance`: the VM name (e.g. `MachineRole_IN_0`, or `_<vmname>` in ARM).
    pub vm_name: Option<String>,
    /// `Role/@name`.
    pub role_name: Option<String>,
    /// `Deployment/@name`: the deployment (tenant) name.
    pub deployment_name: Option<String>,
    /// `StoredCertificates/StoredCertificate`, in document order.
    pub stored_certificates: Vec<StoredCertificate>,
}

/// One `StoredCertificates/StoredCertificate`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredCertificate {
    /// `@name`, e.g. `TenantEncryptionCert`.
    pub name: Option<String>,
    /// `@certificateId`, e.g. `sha1:<THUMBPRINT>`.
    pub certificate_id: Option<String>,
    /// `@storeName`, e.g. `My`.
    pub store_name: Option<String>,
}

impl StoredCertificate {
    /// The SHA-1 thumbprint from `certificateId="sha1:<hex>"`, upper-cased.
    pub fn sha1_thumbprint(&self) -> Option<String> {
        let id = self.certificate_id.as_deref()?;
        let (algo, hex) = id.split_once(':')?;
        (algo.eq_ignore_ascii_case("sha1") && !hex.is_empty()).then(|| hex.to_ascii_uppercase())
    }
}

/// Parse a HostingEnvironmentConfig document.
pub fn parse_hosting_env(text: &str) -> Result<HostingEnvironmentConfig, DocumentError> {
    let root = parse_root(text, DOC)?;
    let stored_certificates = root
        .child("StoredCertificates")
        .map(|s| {
            s.children_named("StoredCertificate")
                .map(|c| StoredCertificate {
                    name: attr_string(c, "name"),
                    certificate_id: attr_string(c, "certificateId"),
                    store_name: attr_string(c, "storeName"),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(HostingEnvironmentConfig {
        goal_state_incarnation: attr_string(&root, "goalStateIncarnation"),
        vm_name: root.child("Incarnation").and_then(|e| attr_string(e, "instance")),
        role_name: root.child("Role").and_then(|e| attr_string(e, "name")),
        deployment_name: root.child("Deployment").and_then(|e| attr_string(e, "name")),
        stored_certificates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_certificates() {
        let doc = r#"<HostingEnvironmentConfig version="1.0.0.0" goalStateIncarnation="3">
            <StoredCertificates><StoredCertificate name="T" certificateId="sha1:abcd" storeName="My"/></StoredCertificates>
            <Deployment name="dep"><Service name="s"/></Deployment>
            <Incarnation number="1" instance="_vm1"/><Role name="R"/></HostingEnvironmentConfig>"#;
        let hec = parse_hosting_env(doc).unwrap();
        assert_eq!(hec.goal_state_incarnation.as_deref(), Some("3"));
        assert_eq!(hec.vm_name.as_deref(), Some("_vm1"));
        assert_eq!(hec.role_name.as_deref(), Some("R"));
        assert_eq!(hec.deployment_name.as_deref(), Some("dep"));
        assert_eq!(hec.stored_certificates.len(), 1);
        assert_eq!(hec.stored_certificates[0].sha1_thumbprint().as_deref(), Some("ABCD"));
    }

    #[test]
    fn minimal_and_wrong() {
        let hec = parse_hosting_env("<HostingEnvironmentConfig/>").unwrap();
        assert_eq!(hec.vm_name, None);
        assert!(hec.stored_certificates.is_empty());
        assert!(matches!(parse_hosting_env("<SharedConfig/>"), Err(DocumentError::UnexpectedRoot { .. })));
        assert!(matches!(parse_hosting_env("<HostingEnvironmentConfig>"), Err(DocumentError::Xml { .. })));
    }
}
