//! The typed provisioning plan, built from the OVF environment and the configuration before
//! anything is changed. Everything that can be checked up front is checked here (user name,
//! hostname, every SSH key and key path), so that a bad document changes nothing: no user is ever
//! created without its keys.

use std::fmt;
use std::path::PathBuf;

use crate::base::root::HostRoot;
use crate::base::secret::Secret;
use crate::documents::conf::{Config, PasswordCryptId, SshHostKeyType};
use crate::documents::ovf::OvfEnv;
use crate::host::disk::ResourceDiskSettings;
use crate::host::ssh::{self, SshdSettings};
use crate::host::user::{self, Account};
use crate::{host::hostname, host::ssh::SshError};

/// A plan that cannot be built: the OVF asks for something wala will not do.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("HostName: {0}")]
    Hostname(#[from] hostname::HostnameError),
    #[error("UserName: {0}")]
    UserName(#[from] user::UserError),
    /// The named account exists and is not a regular user's (its text names UserName already).
    #[error(transparent)]
    SystemAccount(user::UserError),
    #[error("SSH/PublicKeys/PublicKey[{index}]: {source}")]
    Key {
        index: usize,
        #[source]
        source: SshError,
    },
    #[error("SSH/KeyPairs/KeyPair[{index}]: {source}")]
    KeyPair {
        index: usize,
        #[source]
        source: SshError,
    },
}

impl From<PlanError> for crate::error::Cause {
    fn from(e: PlanError) -> Self {
        Self::Other(Box::new(e))
    }
}

/// Paths from the configuration, as seen on the target system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub lib_dir: PathBuf,
    pub ssh_dir: PathBuf,
    pub sudoers_dir: PathBuf,
    pub password_file: PathBuf,
    pub home_base: PathBuf,
}

impl Paths {
    pub fn from_config(c: &Config) -> Self {
        Self {
            lib_dir: c.lib_dir.as_path().into(),
            ssh_dir: c.ssh_dir.as_path().into(),
            sudoers_dir: c.sudoers_dir.as_path().into(),
            password_file: c.password_path.as_path().into(),
            home_base: c.home_dir.as_path().into(),
        }
    }
}

/// The admin user.
#[derive(Debug, Clone)]
pub struct UserPlan {
    pub name: String,
    pub password: Option<Secret<String>>,
    pub crypt: PasswordCryptId,
    pub salt_length: usize,
    /// `Provisioning.AllowResetSysUser`: admit an existing account whose uid is outside
    /// `UID_MIN`..=`UID_MAX` (never root, never one without a login shell).
    pub allow_system_user: bool,
    /// The home directory the keys were checked against (from passwd, or predicted for a new user).
    pub home: PathBuf,
}

/// A public key given inline in the OVF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineKey {
    /// The path as the OVF gave it (resolved again against the real home after useradd).
    pub ovf_path: Option<String>,
    pub path: PathBuf,
    pub line: String,
}

/// A key that comes from the goal state's certificates (network stage).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertificateKey {
    pub fingerprint: String,
    pub path: PathBuf,
    /// A key pair (private key deployed too) rather than a public key.
    pub key_pair: bool,
}

/// CustomData handling.
#[derive(Debug, Clone)]
pub struct CustomDataPlan {
    pub data: Secret<String>,
    pub decode: bool,
    pub execute: bool,
}

/// Everything the local and network stages will do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub vm_id: String,
    pub hostname: String,
    pub user: UserPlan,
    pub sshd: SshdSettings,
    pub inline_keys: Vec<InlineKey>,
    pub certificate_keys: Vec<CertificateKey>,
    pub regenerate_host_keys: Option<SshHostKeyType>,
    pub lock_root_password: bool,
    pub custom_data: Option<CustomDataPlan>,
    /// `ProvisionGuestAgent=false`: write `disable_agent` so the daemon does not run extensions.
    pub disable_agent: bool,
    pub resource_disk: ResourceDiskSettings,
    pub paths: Paths,
}

/// The part of a [`Plan`] the stages after the local one carry out, recorded in the state file
/// by the local stage (`provision::state`): the host-keys stage and the network stage do what
/// the plan said, and do not work it out again from the configuration or the saved OVF.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LaterSteps {
    /// Host key types the host-keys stage makes after sshd has started (`rsa`, `dsa`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_keys: Vec<String>,
    /// Keys named by certificate thumbprint, deployed by the network stage for `user`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_keys: Vec<CertificateKey>,
    pub user: String,
    #[serde(default)]
    pub allow_system_user: bool,
    /// Where relative key paths are resolved when the user's home is not the usual one.
    pub home_base: PathBuf,
    /// The network stage runs the saved custom data (`Provisioning.ExecuteCustomData`).
    #[serde(default)]
    pub run_custom_data: bool,
    /// Set by a local stage in the initramfs that found the kernel's random pool not yet ready:
    /// it removed the old host keys and left the fast ones (Ed25519, ECDSA) to the local stage on
    /// the real root, which makes them before sshd starts. The hostname for their comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_host_keys: Option<String>,
}

/// The resource disk settings from the configuration.
pub fn resource_disk_settings(c: &Config) -> ResourceDiskSettings {
    ResourceDiskSettings {
        format: c.resource_disk_format,
        filesystem: c.resource_disk_filesystem.clone(),
        mount_point: c.resource_disk_mount_point.as_path().into(),
        mount_options: c.resource_disk_mount_options.clone(),
        enable_swap: c.resource_disk_enable_swap,
        swap_encryption: c.resource_disk_enable_swap_encryption,
        swap_size_mb: c.resource_disk_swap_size_mb,
        // Large swap files are allocated after the boot-critical work (waagent issue #1442).
        swap_in_background: c.resource_disk_swap_size_mb > 2048,
    }
}

impl Plan {
    /// What this plan leaves to the stages after the local one.
    pub fn later_steps(&self) -> LaterSteps {
        LaterSteps {
            host_keys: self
                .regenerate_host_keys
                .map(|t| crate::host::host_keys::deferred_types(t).into_iter().map(String::from).collect())
                .unwrap_or_default(),
            certificate_keys: self.certificate_keys.clone(),
            user: self.user.name.clone(),
            allow_system_user: self.user.allow_system_user,
            home_base: self.paths.home_base.clone(),
            run_custom_data: self.custom_data.as_ref().is_some_and(|c| c.execute),
            fast_host_keys: None,
        }
    }

    /// Build and check the plan.
    pub fn build(root: &HostRoot, ovf: &OvfEnv, config: &Config, vm_id: &str) -> Result<Self, PlanError> {
        let p = &ovf.provisioning;
        hostname::validate(&p.host_name)?;
        user::validate_name(&p.user_name)?;
        let home = match user::lookup(root, &p.user_name)? {
            Some(a) => {
                // Checked again at the user step: the account may appear or change in between.
                user::check_regular(root, &a, config.allow_reset_sys_user)
                    .map_err(PlanError::SystemAccount)?;
                a.home
            }
            None => user::predicted_home(root, &p.user_name),
        };
        let account =
            Account { name: p.user_name.clone(), uid: 0, gid: 0, home: home.clone(), shell: PathBuf::new() };
        let paths = Paths::from_config(config);
        let mut inline_keys = Vec::new();
        let mut certificate_keys = Vec::new();
        for (index, key) in p.public_keys.iter().enumerate() {
            let err = |source| PlanError::Key { index: index + 1, source };
            let ovf_path = Some(key.path.clone()).filter(|s| !s.trim().is_empty());
            let path = ssh::resolve_key_path(ovf_path.as_deref(), &account, &paths.home_base).map_err(err)?;
            match (&key.value, &key.fingerprint) {
                (Some(value), _) => {
                    let line = ssh::validate_public_key(index + 1, value).map_err(err)?;
                    inline_keys.push(InlineKey { ovf_path, path, line });
                }
                (None, Some(fp)) => certificate_keys.push(CertificateKey {
                    fingerprint: fp.trim().to_ascii_uppercase(),
                    path,
                    key_pair: false,
                }),
                (None, None) => {}
            }
        }
        for (index, pair) in p.key_pairs.iter().enumerate() {
            let path = ssh::resolve_key_path(Some(&pair.path), &account, &paths.home_base)
                .map_err(|source| PlanError::KeyPair { index: index + 1, source })?;
            certificate_keys.push(CertificateKey {
                fingerprint: pair.fingerprint.trim().to_ascii_uppercase(),
                path,
                key_pair: true,
            });
        }
        Ok(Self {
            vm_id: vm_id.to_string(),
            hostname: p.host_name.clone(),
            user: UserPlan {
                name: p.user_name.clone(),
                password: p.user_password.clone(),
                crypt: config.password_crypt_id,
                salt_length: usize::try_from(config.password_crypt_salt_length).unwrap_or(16),
                allow_system_user: config.allow_reset_sys_user,
                home,
            },
            sshd: SshdSettings {
                password_authentication: !p.password_authentication_disabled(),
                client_alive_interval: config.ssh_client_alive_interval,
            },
            inline_keys,
            certificate_keys,
            regenerate_host_keys: config
                .regenerate_ssh_host_key_pair
                .then_some(config.ssh_host_key_pair_type),
            lock_root_password: config.delete_root_password,
            custom_data: p.custom_data.clone().map(|data| CustomDataPlan {
                data,
                decode: config.decode_custom_data(),
                execute: config.execute_custom_data,
            }),
            disable_agent: ovf.platform.guest_agent_disabled(),
            resource_disk: resource_disk_settings(config),
            paths,
        })
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "VM id:              {}", self.vm_id)?;
        writeln!(f, "local stage:")?;
        writeln!(f, "  hostname          {} (/etc/hostname, /etc/hosts)", self.hostname)?;
        writeln!(f, "  user              {} (home {})", self.user.name, self.user.home.display())?;
        let password = match &self.user.password {
            Some(p) => format!("{p}, hashed with crypt id {}", self.user.crypt.as_str()),
            None => "none: password login disabled, sudo without password".into(),
        };
        writeln!(f, "  password          {password}")?;
        writeln!(f, "  sudoers           {}/waagent", self.paths.sudoers_dir.display())?;
        writeln!(
            f,
            "  sshd              PasswordAuthentication {}, ClientAliveInterval {}",
            yes(self.sshd.password_authentication),
            self.sshd.client_alive_interval
        )?;
        for k in &self.inline_keys {
            let kind = k.line.split_whitespace().find(|w| !w.contains('=')).unwrap_or("?");
            writeln!(f, "  ssh key           {kind} -> {}", k.path.display())?;
        }
        match self.regenerate_host_keys {
            Some(t) => writeln!(f, "  host keys         regenerate ({})", t.as_str())?,
            None => writeln!(f, "  host keys         keep")?,
        }
        writeln!(f, "  root password     {}", if self.lock_root_password { "lock" } else { "keep" })?;
        match &self.custom_data {
            Some(c) => writeln!(
                f,
                "  custom data       {} saved to {}/CustomData{}",
                c.data,
                self.paths.lib_dir.display(),
                if c.decode { " (base64-decoded)" } else { "" }
            )?,
            None => writeln!(f, "  custom data       none")?,
        }
        let d = &self.resource_disk;
        if d.format {
            write!(f, "  resource disk     {} at {}", d.filesystem, d.mount_point.display())?;
            if d.enable_swap {
                write!(
                    f,
                    ", swap {} MiB{}{}",
                    d.swap_size_mb,
                    if d.swap_encryption { " encrypted" } else { "" },
                    if d.swap_in_background { " (allocated in the background)" } else { "" }
                )?;
            }
            writeln!(f, " (decided on the disk's contents at apply time; never reformats data)")?;
        } else {
            writeln!(f, "  resource disk     not managed (ResourceDisk.Format=n)")?;
        }
        writeln!(f, "network stage:")?;
        writeln!(f, "  report            NotReady/Provisioning")?;
        for k in &self.certificate_keys {
            let what = if k.key_pair { "key pair" } else { "ssh key" };
            writeln!(f, "  {what:<17} certificate {} -> {}", k.fingerprint, k.path.display())?;
        }
        if self.custom_data.as_ref().is_some_and(|c| c.execute) {
            writeln!(f, "  custom data       execute")?;
        }
        if self.disable_agent {
            writeln!(f, "  extensions        disabled (ProvisionGuestAgent=false)")?;
        }
        writeln!(f, "  marker            {}/provisioned", self.paths.lib_dir.display())?;
        writeln!(f, "  report            Ready")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ovf(user: &str, key_path: &str) -> OvfEnv {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBH5dHoEPpIHqGUK3xfI0qWqTeuTr4SfQeRfVmW4EwB5";
        crate::documents::ovf::parse(&format!(
            r#"<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure">
<wa:ProvisioningSection><wa:Version>1.0</wa:Version><wa:LinuxProvisioningConfigurationSet>
<wa:ConfigurationSetType>LinuxProvisioningConfiguration</wa:ConfigurationSetType>
<wa:HostName>vm</wa:HostName><wa:UserName>{user}</wa:UserName>
<wa:SSH><wa:PublicKeys><wa:PublicKey><wa:Path>{key_path}</wa:Path><wa:Value>{key}</wa:Value></wa:PublicKey></wa:PublicKeys></wa:SSH>
</wa:LinuxProvisioningConfigurationSet></wa:ProvisioningSection><wa:PlatformSettingsSection><wa:Version>1.0</wa:Version><wa:PlatformSettings><wa:ProvisionGuestAgent>true</wa:ProvisionGuestAgent></wa:PlatformSettings></wa:PlatformSettingsSection></Environment>"#
        ))
        .expect("ovf")
    }

    #[test]
    fn an_existing_system_account_is_refused_by_the_plan() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/sbin/nologin\n\
             svc:x:1200:1200::/srv/svc:/usr/sbin/nologin\nold:x:500:500::/home/old:/bin/bash\n",
        )
        .expect("write");
        let root = HostRoot::new(dir.path());
        let config = Config::default();
        for (user, path, reason) in [
            (
                "nobody",
                "/etc/authorized_keys",
                "UserName nobody is a system account (uid 65534 > UID_MAX 60000)",
            ),
            (
                "root",
                "/root/.ssh/authorized_keys",
                "UserName root is a system account (uid 0, the superuser)",
            ),
            (
                "svc",
                "/srv/svc/.ssh/authorized_keys",
                "UserName svc is a system account (its shell /usr/sbin/nologin allows no login)",
            ),
            (
                "old",
                "/home/old/.ssh/authorized_keys",
                "UserName old is a system account (uid 500 < UID_MIN 1000)",
            ),
        ] {
            let err = Plan::build(&root, &ovf(user, path), &config, "id").unwrap_err();
            assert!(matches!(err, PlanError::SystemAccount(_)), "{user}: {err}");
            assert_eq!(err.to_string(), reason);
        }
        // Provisioning.AllowResetSysUser=y admits the low uid, and only that.
        let allow = Config { allow_reset_sys_user: true, ..Config::default() };
        assert!(Plan::build(&root, &ovf("old", "/home/old/.ssh/authorized_keys"), &allow, "id").is_ok());
        assert!(Plan::build(&root, &ovf("root", "/root/.ssh/authorized_keys"), &allow, "id").is_err());
        // A user that does not exist yet is planned (useradd makes a regular one).
        assert!(Plan::build(&root, &ovf("alice", "/home/alice/.ssh/authorized_keys"), &config, "id").is_ok());
    }
}
