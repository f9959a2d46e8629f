//! IMDS as the second source of a provisioning request, when the provisioning DVD cannot be read
//! (docs/provisioning.md, "IMDS stage"): `compute.osProfile.adminUsername`,
//! `compute.osProfile.computerName`, `compute.publicKeys` and
//! `compute.osProfile.disablePasswordAuthentication`, as azure-init and afterburn read them, turned
//! into an `ovf-env.xml` document (cloud-init writes one too, so that what reads
//! `/var/lib/waagent/ovf-env.xml` later finds the user). The document then goes through the same
//! parser, plan and steps as the DVD's.
//!
//! What IMDS does not carry is not made up: no password (it only ever comes from the OVF), no
//! CustomData. An `osProfile` without `adminUsername` (a specialized VM's) is "nothing to
//! provision". An admin user with no SSH key is refused: without a password nobody could log in.
//! Values with control characters are refused, naming the field, rather than written into XML.

use crate::documents::imds::{Compute, ImdsError};
use crate::documents::xml::escape;

/// What IMDS asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// No `osProfile.adminUsername`: nothing to provision (a specialized VM).
    Nothing,
    /// An `ovf-env.xml` document with a Linux provisioning section.
    Ovf(String),
}

/// The provisioning request in `compute` (see the module documentation).
pub fn request(compute: &Compute) -> Result<Request, ImdsError> {
    let profile = compute.os_profile.clone().unwrap_or_default();
    let Some(user) = profile.admin_username.as_deref() else {
        return Ok(Request::Nothing);
    };
    let host = profile
        .computer_name
        .as_deref()
        .ok_or_else(|| ImdsError::MissingField("compute.osProfile.computerName".into()))?;
    if compute.public_keys.is_empty() {
        return Err(ImdsError::MissingField("compute.publicKeys".into()));
    }
    check_text("compute.osProfile.adminUsername", user)?;
    check_text("compute.osProfile.computerName", host)?;
    let mut keys = String::new();
    for (i, key) in compute.public_keys.iter().enumerate() {
        check_text(&format!("compute.publicKeys[{i}].path"), &key.path)?;
        check_text(&format!("compute.publicKeys[{i}].keyData"), &key.key_data)?;
        keys.push_str(&format!(
            "\n          <wa:PublicKey><wa:Path>{}</wa:Path><wa:Value>{}</wa:Value></wa:PublicKey>",
            escape(&key.path),
            escape(&key.key_data)
        ));
    }
    // Not stated: password logins off, as no password is ever set from IMDS.
    let disable = profile.disable_password_authentication.unwrap_or(true);
    Ok(Request::Ovf(format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<!-- Made by wala from IMDS compute.osProfile and compute.publicKeys: no provisioning DVD could be read. -->
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure">
  <wa:ProvisioningSection>
    <wa:Version>1.0</wa:Version>
    <wa:LinuxProvisioningConfigurationSet>
      <wa:ConfigurationSetType>LinuxProvisioningConfiguration</wa:ConfigurationSetType>
      <wa:HostName>{}</wa:HostName>
      <wa:UserName>{}</wa:UserName>
      <wa:DisableSshPasswordAuthentication>{disable}</wa:DisableSshPasswordAuthentication>
      <wa:SSH>
        <wa:PublicKeys>{keys}
        </wa:PublicKeys>
      </wa:SSH>
    </wa:LinuxProvisioningConfigurationSet>
  </wa:ProvisioningSection>
  <wa:PlatformSettingsSection>
    <wa:Version>1.0</wa:Version>
    <wa:PlatformSettings>
      <wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent>
    </wa:PlatformSettings>
  </wa:PlatformSettingsSection>
</Environment>
"#,
        escape(host),
        escape(user),
    )))
}

/// Refuse text that XML 1.0 cannot carry or that no name, path or key has: control characters.
fn check_text(field: &str, text: &str) -> Result<(), ImdsError> {
    if text.chars().any(char::is_control) {
        return Err(ImdsError::InvalidValue {
            field: field.to_string(),
            value: text.chars().filter(|c| !c.is_control()).take(40).collect(),
            why: "control characters",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::imds::{parse_instance, PublicKey};

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBH5dHoEPpIHqGUK3xfI0qWqTeuTr4SfQeRfVmW4EwB5 a&b<c>";

    fn compute(user: Option<&str>, host: Option<&str>, keys: &[&str]) -> Compute {
        Compute {
            os_profile: Some(crate::documents::imds::OsProfile {
                admin_username: user.map(str::to_string),
                computer_name: host.map(str::to_string),
                disable_password_authentication: None,
            }),
            public_keys: keys
                .iter()
                .map(|k| PublicKey {
                    key_data: k.to_string(),
                    path: "/home/azureuser/.ssh/authorized_keys".into(),
                })
                .collect(),
            ..Compute::default()
        }
    }

    #[test]
    fn an_os_profile_becomes_an_ovf_that_parses_back_to_the_same_request() {
        let Request::Ovf(xml) = request(&compute(Some("azureuser"), Some("vm-1"), &[KEY, KEY])).unwrap()
        else {
            panic!("a request")
        };
        let env = crate::documents::ovf::parse(&xml).expect("the OVF parser reads it");
        let p = &env.provisioning;
        assert_eq!((p.user_name.as_str(), p.host_name.as_str()), ("azureuser", "vm-1"));
        assert!(p.user_password.is_none() && p.custom_data.is_none(), "no password, no custom data");
        assert_eq!(p.public_keys.len(), 2);
        assert_eq!(p.public_keys[0].value.as_deref(), Some(KEY), "escaped and read back");
        assert_eq!(p.public_keys[0].path, "/home/azureuser/.ssh/authorized_keys");
        assert!(p.password_authentication_disabled(), "no password from IMDS: password logins off");
        assert!(!env.platform.guest_agent_disabled());
    }

    #[test]
    fn the_fabric_document_and_a_specialized_vms() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fabric/scenario/imds-instance.json"
        ))
        .expect("the fabric's IMDS document");
        let md = parse_instance(&doc).expect("parse");
        let Request::Ovf(xml) = request(&md.compute).expect("request") else { panic!("a request") };
        let env = crate::documents::ovf::parse(&xml).expect("parse");
        assert_eq!(env.provisioning.user_name, "azureuser");
        assert_eq!(env.provisioning.host_name, "wala-test-vm");
        // IMDS sends "" for a specialized VM's osProfile fields: nothing to provision.
        let specialized = r#"{"compute": {"vmId": "x", "osProfile": {"adminUsername": "", "computerName": "",
            "disablePasswordAuthentication": ""}, "publicKeys": []}}"#;
        assert_eq!(request(&parse_instance(specialized).unwrap().compute), Ok(Request::Nothing));
        assert_eq!(request(&parse_instance(r#"{"compute": {}}"#).unwrap().compute), Ok(Request::Nothing));
    }

    #[test]
    fn what_cannot_make_a_usable_user_is_refused_naming_the_field() {
        assert_eq!(
            request(&compute(Some("u"), None, &[KEY])),
            Err(ImdsError::MissingField("compute.osProfile.computerName".into()))
        );
        assert_eq!(
            request(&compute(Some("u"), Some("h"), &[])),
            Err(ImdsError::MissingField("compute.publicKeys".into()))
        );
        let err = request(&compute(Some("u\u{1}"), Some("h"), &[KEY])).unwrap_err();
        assert!(err.to_string().contains("compute.osProfile.adminUsername"), "{err}");
        let err = request(&compute(Some("u"), Some("h"), &["ssh-rsa AAAA\u{0}x"])).unwrap_err();
        assert!(err.to_string().contains("compute.publicKeys[0].keyData"), "{err}");
    }
}
