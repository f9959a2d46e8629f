//! What the local stage does on this boot, decided from three facts before anything changes: whether
//! the disk was provisioned already (the marker), what the provisioning source holds, and whether
//! the user it names exists. The rule and its reasons are in docs/provisioning.md ("Which boots
//! provision"); in short, a disk that was provisioned keeps its users, passwords and host keys,
//! whatever VM it boots in, unless a provisioning section asks for a user it does not have.
//!
//! [`decide`] is a pure function; reading the source and applying the decision are the caller's.

use crate::documents::ovf::OvfEnv;
use crate::provision::ProvisionError;

/// The disk, as its marker (`<Lib.Dir>/provisioned`) tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disk {
    /// No marker: never provisioned (a generalized image's first boot).
    Fresh,
    /// Provisioned for another VM (the marker's id, or `None` when an old agent left it empty).
    ProvisionedFor(Option<String>),
}

/// What the provisioning source gave.
#[derive(Debug)]
pub enum Source {
    /// A provisioning section (DVD or `--ovf`), with the document's bytes.
    Section { bytes: Vec<u8>, env: Box<OvfEnv> },
    /// An OVF environment asking for no provisioning (a specialized VM's DVD).
    NoSection,
    /// No DVD could be read (none attached, or unreadable); why, for the log, in words that
    /// start with "no provisioning DVD".
    NoDvd(String),
    /// A provisioning request that cannot be used (malformed XML, a missing element).
    Broken(ProvisionError),
}

/// What to do.
#[derive(Debug)]
pub enum Decision {
    /// Provision from this section: a first boot, or a user the provisioned disk does not have.
    Provision { bytes: Vec<u8>, env: Box<OvfEnv> },
    /// Provision nothing (no user, password or host key); report Ready. With `refresh`, the
    /// section names a user the disk has: its hostname and inline SSH keys are applied.
    Keep { reason: String, refresh: Option<Box<OvfEnv>> },
    /// No DVD on a disk never provisioned: ask IMDS, once the network is up, before sshd.
    AskImds { dvd: String },
    /// Fail: the section is broken (the network stage reports ProvisioningFailed).
    Fail(ProvisionError),
}

/// Decide (see the module documentation). `user_exists` says whether an account of that name
/// exists on the disk (an unreadable account database counts as "exists": on a provisioned disk,
/// doubt keeps what is there).
pub fn decide(disk: &Disk, source: Source, user_exists: &dyn Fn(&str) -> bool) -> Decision {
    match (disk, source) {
        (Disk::Fresh, Source::Section { bytes, env }) => Decision::Provision { bytes, env },
        (Disk::Fresh, Source::NoSection) => Decision::Keep {
            reason: "the provisioning DVD carries no provisioning section (a specialized VM): nothing to \
                     provision"
                .into(),
            refresh: None,
        },
        (Disk::Fresh, Source::NoDvd(why)) => Decision::AskImds { dvd: why },
        (Disk::Fresh, Source::Broken(e)) => Decision::Fail(e),
        (Disk::ProvisionedFor(previous), source) => {
            let was = match previous {
                Some(id) => format!("the disk was provisioned for VM {id}"),
                None => "the disk was provisioned (by an agent that did not record the VM id)".into(),
            };
            match source {
                Source::Section { bytes, env } if !user_exists(&env.provisioning.user_name) => {
                    log::warn!(
                        "{was}, and the provisioning section asks for user {}, which it does not have: \
                         provisioning this VM (an image captured without deprovisioning)",
                        env.provisioning.user_name
                    );
                    Decision::Provision { bytes, env }
                }
                Source::Section { env, .. } => Decision::Keep {
                    reason: format!(
                        "{was}; user {} exists: its password and the host keys are kept, the \
                         hostname and SSH keys of the provisioning section are applied",
                        env.provisioning.user_name
                    ),
                    refresh: Some(env),
                },
                Source::NoSection => Decision::Keep {
                    reason: format!("{was}; the DVD carries no provisioning section: nothing to provision"),
                    refresh: None,
                },
                Source::NoDvd(why) => {
                    Decision::Keep { reason: format!("{was}; {why}: nothing to provision"), refresh: None }
                }
                Source::Broken(e) => Decision::Keep {
                    reason: format!(
                        "{was}; the provisioning section is unusable ({e}): nothing to provision"
                    ),
                    refresh: None,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(user: &str) -> Source {
        let xml = format!(
            r#"<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure">
<wa:ProvisioningSection><wa:Version>1.0</wa:Version><wa:LinuxProvisioningConfigurationSet>
<wa:HostName>vm</wa:HostName><wa:UserName>{user}</wa:UserName></wa:LinuxProvisioningConfigurationSet></wa:ProvisioningSection>
<wa:PlatformSettingsSection><wa:PlatformSettings><wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent></wa:PlatformSettings></wa:PlatformSettingsSection></Environment>"#
        );
        Source::Section {
            env: Box::new(crate::documents::ovf::parse(&xml).expect("ovf")),
            bytes: xml.into_bytes(),
        }
    }

    fn broken() -> Source {
        Source::Broken(ProvisionError::new("ovf", "Failed to validate OVF: HostName not found"))
    }

    fn kind(d: &Decision) -> &'static str {
        match d {
            Decision::Provision { .. } => "provision",
            Decision::Keep { refresh: Some(_), .. } => "keep+refresh",
            Decision::Keep { refresh: None, .. } => "keep",
            Decision::AskImds { .. } => "imds",
            Decision::Fail(_) => "fail",
        }
    }

    #[test]
    fn the_whole_table() {
        let existing = |name: &str| name == "azureuser";
        let fresh = Disk::Fresh;
        let old = Disk::ProvisionedFor(Some("11111111-2222-3333-4444-555555555555".into()));
        let empty_marker = Disk::ProvisionedFor(None);
        let dvd = || Source::NoDvd("no provisioning DVD".into());
        let cases: Vec<(&Disk, Source, &str)> = vec![
            (&fresh, section("azureuser"), "provision"),
            (&fresh, section("alice"), "provision"),
            (&fresh, Source::NoSection, "keep"),
            (&fresh, dvd(), "imds"),
            (&fresh, broken(), "fail"),
            (&old, section("alice"), "provision"),
            (&old, section("azureuser"), "keep+refresh"),
            (&old, Source::NoSection, "keep"),
            (&old, dvd(), "keep"),
            (&old, broken(), "keep"),
            (&empty_marker, section("azureuser"), "keep+refresh"),
            (&empty_marker, dvd(), "keep"),
        ];
        for (disk, source, want) in cases {
            let what = format!("{disk:?} {source:?}");
            assert_eq!(kind(&decide(disk, source, &existing)), want, "{what}");
        }
    }

    #[test]
    fn reasons_say_what_happened() {
        let old = Disk::ProvisionedFor(Some("11111111-2222-3333-4444-555555555555".into()));
        let none = Source::NoDvd("no provisioning DVD (none attached)".into());
        let Decision::Keep { reason, .. } = decide(&old, none, &|_| true) else { panic!("keep") };
        assert!(reason.contains("provisioned for VM 11111111-2222-3333-4444-555555555555"), "{reason}");
        assert!(reason.ends_with("; no provisioning DVD (none attached): nothing to provision"), "{reason}");
        let Decision::Keep { reason, .. } = decide(&old, section("azureuser"), &|_| true) else {
            panic!("keep")
        };
        assert!(reason.contains("user azureuser exists"), "{reason}");
        // Doubt about the account database keeps what the disk has.
        assert_eq!(kind(&decide(&old, section("bob"), &|_| true)), "keep+refresh");
    }
}
