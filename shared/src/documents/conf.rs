//! `/etc/waagent.conf`: parsed exactly as waagent parses it, then typed and validated.
//!
//! Parsing rules (waagent's `ConfigurationProvider.load`):
//! - a line starting with `#` in column 0 is a comment (an indented `  # X=1` is not); a line with no
//!   `=` is ignored;
//! - the key is the text before the first `=`, trimmed; keys are case-sensitive;
//! - the value is the text after the first `=`, cut at the first `#` (inline comments), with `"` and
//!   spaces stripped from both ends, then trimmed: quotes are optional and values can contain `=`;
//! - the value `None` means "unset, use the default"; a repeated key: the last one wins.
//!
//! Where wala differs (on purpose, and never by refusing to boot): a value of the wrong type is a
//! [`Problem`] naming the file, line, key and what was expected, logged as a warning, and the default is
//! used (waagent silently uses the default); unknown keys are problems too (waagent stores them
//! silently), except the retired keys that shipped images still carry ([`RETIRED_KEYS`]).
//! `wala-agentd check-config` turns every problem into a non-zero exit for image builders.
//!
//! Every key wala accepts is either read by wala or listed in [`UNUSED_KEYS`] (or
//! [`RETIRED_KEYS`]) with the reason; a key set in the file that wala does not use is a [`Loaded`]
//! note (`file:line: key: accepted, not used by wala: why`), which `check-config` prints without
//! failing. A test (`shared/tests/conf_keys_read.rs`) keeps the list true to the code.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where waagent (and wala) look for the configuration.
pub const DEFAULT_PATH: &str = "/etc/waagent.conf";

/// A value type a configuration key can have.
pub trait ConfValue: Sized {
    /// Parse a (non-`None`) value; the error says what was expected.
    fn parse_value(s: &str) -> Result<Self, String>;
    /// The value as `show-configuration` prints it.
    fn show(&self) -> String;
}

impl ConfValue for bool {
    fn parse_value(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "y" => Ok(true),
            "n" => Ok(false),
            _ => Err("expected y or n".into()),
        }
    }
    fn show(&self) -> String {
        if *self { "True" } else { "False" }.into()
    }
}

impl ConfValue for u64 {
    fn parse_value(s: &str) -> Result<Self, String> {
        s.strip_prefix('+').unwrap_or(s).parse().map_err(|_| "expected a whole number (0 or more)".into())
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl ConfValue for String {
    fn parse_value(s: &str) -> Result<Self, String> {
        Ok(s.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl<T: ConfValue> ConfValue for Option<T> {
    fn parse_value(s: &str) -> Result<Self, String> {
        T::parse_value(s).map(Some)
    }
    fn show(&self) -> String {
        self.as_ref().map_or_else(|| "None".into(), T::show)
    }
}

/// An absolute path value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsPath(pub String);

impl AbsPath {
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl ConfValue for AbsPath {
    fn parse_value(s: &str) -> Result<Self, String> {
        if s.starts_with('/') {
            Ok(Self(s.to_string()))
        } else {
            Err("expected an absolute path".into())
        }
    }
    fn show(&self) -> String {
        self.0.clone()
    }
}

/// A TCP port, 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u16);

impl ConfValue for Port {
    fn parse_value(s: &str) -> Result<Self, String> {
        match s.strip_prefix('+').unwrap_or(s).parse::<u16>() {
            Ok(p) if p > 0 => Ok(Self(p)),
            _ => Err("expected a port number, 1 to 65535".into()),
        }
    }
    fn show(&self) -> String {
        self.0.to_string()
    }
}

/// A `host[:port]` value (an IPv4 address or a host name; the port defaults per service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl ConfValue for HostPort {
    fn parse_value(s: &str) -> Result<Self, String> {
        let expected = || "expected host or host:port".to_string();
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| expected())?)),
            None => (s, None),
        };
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
            return Err(expected());
        }
        Ok(Self { host: host.to_string(), port })
    }
    fn show(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

/// Declares an enum of string choices usable as a configuration value.
macro_rules! choice {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl ConfValue for $name {
            fn parse_value(s: &str) -> Result<Self, String> {
                match s.to_ascii_lowercase().as_str() {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(format!("expected one of: {}", [$($text),+].join(", "))),
                }
            }
            fn show(&self) -> String {
                self.as_str().into()
            }
        }
    };
}

choice! {
    /// `Provisioning.Agent`: who provisions the VM.
    ProvisioningAgent { Auto = "auto", Waagent = "waagent", CloudInit = "cloud-init", Disabled = "disabled" }
}

choice! {
    /// `Provisioning.SshHostKeyPairType`.
    SshHostKeyType { Rsa = "rsa", Dsa = "dsa", Ecdsa = "ecdsa", Ed25519 = "ed25519", Auto = "auto" }
}

choice! {
    /// `Provisioning.PasswordCryptId`: the crypt(3) method for password hashes.
    PasswordCryptId { Md5 = "1", Sha256 = "5", Sha512 = "6" }
}

choice! {
    /// `Protocol.EndpointDiscovery`: find the WireServer through DHCP, or use the well-known address.
    EndpointDiscovery { Dhcp = "dhcp", Static = "static" }
}

/// Declares every key once: the `Config` field, its type, the key, the default and its documentation.
macro_rules! config_keys {
    ($( $(#[doc = $doc:literal])+ $field:ident : $ty:ty = $key:literal, $default:expr; )+) => {
        /// The typed configuration: one field per waagent.conf key.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $field: $ty, )+
        }

        impl Default for Config {
            fn default() -> Self {
                Self { $( $field: $default, )+ }
            }
        }

        impl Config {
            /// Set `key` from its text. `None` for a key wala does not know; `Some(Err(expected))`
            /// for a value of the wrong type.
            fn set(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
                match key {
                    $( $key => Some(<$ty as ConfValue>::parse_value(value).map(|v| self.$field = v)), )+
                    _ => None,
                }
            }

            /// Put `key` back to its default; returns the default as `show-configuration` prints it.
            fn reset(&mut self, key: &str) -> Option<String> {
                match key {
                    $( $key => {
                        self.$field = $default;
                        Some(ConfValue::show(&self.$field))
                    } )+
                    _ => None,
                }
            }

            /// Every key with its current value as `show-configuration` prints it, in declaration order.
            pub fn entries(&self) -> Vec<(&'static str, String)> {
                vec![ $( ($key, ConfValue::show(&self.$field)), )+ ]
            }

            /// Every key with its default and its documentation, for `docs/configuration.md`.
            pub fn key_docs() -> Vec<KeyDoc> {
                let d = Self::default();
                vec![ $( KeyDoc {
                    key: $key,
                    field: stringify!($field),
                    default: ConfValue::show(&d.$field),
                    doc: concat!($($doc, "\n"),+).trim(),
                }, )+ ]
            }
        }
    };
}

/// Documentation of one key.
#[derive(Debug, Clone)]
pub struct KeyDoc {
    pub key: &'static str,
    /// The [`Config`] field that holds it.
    pub field: &'static str,
    pub default: String,
    pub doc: &'static str,
}

config_keys! {
    /// Who provisions the VM: `auto` (cloud-init when it is enabled, else wala), `waagent` (wala),
    /// `cloud-init`, or `disabled`.
    provisioning_agent: ProvisioningAgent = "Provisioning.Agent", ProvisioningAgent::Auto;
    /// Lock the root password during provisioning.
    delete_root_password: bool = "Provisioning.DeleteRootPassword", false;
    /// Generate fresh SSH host keys during provisioning.
    regenerate_ssh_host_key_pair: bool = "Provisioning.RegenerateSshHostKeyPair", false;
    /// Host key type to generate: rsa, dsa, ecdsa, ed25519, or auto (all types).
    ssh_host_key_pair_type: SshHostKeyType = "Provisioning.SshHostKeyPairType", SshHostKeyType::Rsa;
    /// Watch the hostname and publish changes to the platform DNS through DHCP.
    monitor_hostname: bool = "Provisioning.MonitorHostName", false;
    /// How often (seconds) to check the hostname.
    monitor_hostname_period: u64 = "Provisioning.MonitorHostNamePeriod", 30;
    /// Base64-decode CustomData before saving it.
    decode_custom_data: bool = "Provisioning.DecodeCustomData", false;
    /// Run CustomData as a script after provisioning (implies decoding).
    execute_custom_data: bool = "Provisioning.ExecuteCustomData", false;
    /// crypt(3) method for the user's password hash: 1 (MD5), 5 (SHA-256), 6 (SHA-512). Other
    /// methods (2a, 2b, 2y: bcrypt; y: yescrypt) are refused and 6 is used: waagent builds no valid
    /// setting for them and leaves the user without a working password.
    password_crypt_id: PasswordCryptId = "Provisioning.PasswordCryptId", PasswordCryptId::Sha512;
    /// Length of the random salt of the password hash.
    password_crypt_salt_length: u64 = "Provisioning.PasswordCryptSaltLength", 10;
    /// Admit an existing account whose UID is outside UID_MIN..UID_MAX as the provisioned user
    /// (never root, never one without a login shell).
    allow_reset_sys_user: bool = "Provisioning.AllowResetSysUser", false;

    /// Format and mount the resource disk.
    resource_disk_format: bool = "ResourceDisk.Format", false;
    /// Filesystem to create on the resource disk.
    resource_disk_filesystem: String = "ResourceDisk.Filesystem", "ext3".into();
    /// Where to mount the resource disk.
    resource_disk_mount_point: AbsPath = "ResourceDisk.MountPoint", AbsPath("/mnt/resource".into());
    /// Comma-separated mount options for the resource disk.
    resource_disk_mount_options: Option<String> = "ResourceDisk.MountOptions", None;
    /// Create a swap file on the resource disk.
    resource_disk_enable_swap: bool = "ResourceDisk.EnableSwap", false;
    /// Encrypt the swap with a throw-away key (dm-crypt).
    resource_disk_enable_swap_encryption: bool = "ResourceDisk.EnableSwapEncryption", false;
    /// Size of the swap file in MiB.
    resource_disk_swap_size_mb: u64 = "ResourceDisk.SwapSizeMB", 0;

    /// The agent's state directory.
    lib_dir: AbsPath = "Lib.Dir", AbsPath("/var/lib/waagent".into());
    /// Where waagent mounts the provisioning DVD.
    dvd_mount_point: AbsPath = "DVD.MountPoint", AbsPath("/mnt/cdrom/secure".into());
    /// The daemon's pid file: `wala-agentd daemon` writes its pid there while it runs.
    pid_file: AbsPath = "Pid.File", AbsPath("/var/run/waagent.pid".into());
    /// Directory for extension logs.
    extension_log_dir: AbsPath = "Extension.LogDir", AbsPath("/var/log/azure".into());
    /// Path of the openssl program waagent runs.
    openssl_path: AbsPath = "OS.OpensslPath", AbsPath("/usr/bin/openssl".into());
    /// Directory of sshd_config and the host keys.
    ssh_dir: AbsPath = "OS.SshDir", AbsPath("/etc/ssh".into());
    /// Base of home directories, used to expand `$HOME` in key paths.
    home_dir: AbsPath = "OS.HomeDir", AbsPath("/home".into());
    /// The shadow password file.
    password_path: AbsPath = "OS.PasswordPath", AbsPath("/etc/shadow".into());
    /// Directory for the sudoers drop-in.
    sudoers_dir: AbsPath = "OS.SudoersDir", AbsPath("/etc/sudoers.d".into());
    /// sshd `ClientAliveInterval` in seconds.
    ssh_client_alive_interval: u64 = "OS.SshClientAliveInterval", 180;
    /// SCSI timeout (seconds) for the root device's disks; None leaves the kernel's.
    root_device_scsi_timeout: Option<u64> = "OS.RootDeviceScsiTimeout", None;
    /// How often (seconds) to re-apply the SCSI timeout.
    root_device_scsi_timeout_period: u64 = "OS.RootDeviceScsiTimeoutPeriod", 30;
    /// Install firewall rules that keep non-root processes away from the WireServer.
    enable_firewall: bool = "OS.EnableFirewall", false;
    /// How often (seconds) to check the firewall rules.
    enable_firewall_period: u64 = "OS.EnableFirewallPeriod", 300;
    /// How often (seconds) to remove persistent net rules that break interface names.
    remove_persistent_net_rules_period: u64 = "OS.RemovePersistentNetRulesPeriod", 30;
    /// How often (seconds) to check for DHCP client restarts.
    monitor_dhcp_client_restart_period: u64 = "OS.MonitorDhcpClientRestartPeriod", 30;
    /// Run OpenSSL work in FIPS mode.
    enable_fips: bool = "OS.EnableFIPS", false;
    /// waagent: fall back to plain HTTP when its Python has no TLS or cannot tunnel HTTPS.
    allow_http: bool = "OS.AllowHTTP", false;
    /// Set up RDMA on RDMA-capable VM sizes.
    enable_rdma: bool = "OS.EnableRDMA", false;
    /// waagent: install the RDMA driver package that matches the host's.
    update_rdma_driver: bool = "OS.UpdateRdmaDriver", false;
    /// waagent: check the RDMA driver package against the host's version (its getter defaults to
    /// yes).
    check_rdma_driver: bool = "OS.CheckRdmaDriver", true;
    /// Proxy host for storage traffic (never for the WireServer, HostGAPlugin or IMDS); used with
    /// HttpProxy.Port. Set without a port, storage traffic goes direct, as in waagent (reported).
    /// Unset: the environment's `http_proxy`/`https_proxy`/`no_proxy`.
    http_proxy_host: Option<String> = "HttpProxy.Host", None;
    /// Proxy port for storage traffic, 1 to 65535; no effect without HttpProxy.Host (reported).
    http_proxy_port: Option<Port> = "HttpProxy.Port", None;
    /// `dhcp`: find the WireServer from DHCP option 245; `static`: use 168.63.129.16.
    endpoint_discovery: EndpointDiscovery = "Protocol.EndpointDiscovery", EndpointDiscovery::Dhcp;
    /// wala: run at all. `n` turns wala off completely (no provisioning, no Ready report, no daemon),
    /// unlike `Provisioning.Agent=disabled`, which still reports Ready.
    wala_enabled: bool = "Wala.Enabled", true;
    /// wala: the WireServer as `host[:port]` (default: found through DHCP option 245, else
    /// 168.63.129.16:80). For tests and simulation.
    wala_wireserver: Option<HostPort> = "Wala.WireServer", None;
    /// wala: the HostGAPlugin as `host[:port]` (default: the WireServer's address, port 32526).
    wala_hostgaplugin: Option<HostPort> = "Wala.HostGAPlugin", None;
    /// wala: the Instance Metadata Service as `host[:port]` (default 169.254.169.254:80).
    wala_imds: Option<HostPort> = "Wala.Imds", None;
    /// wala: one timeout (seconds) for every extension command, instead of waagent's 300 s for
    /// enable/uninstall and 900 s for install/update/disable. For tests and impatient labs.
    wala_extension_command_timeout: Option<u64> = "Wala.ExtensionCommandTimeout", None;
    /// wala: how long (seconds) a goal state waits in all for extensions its later extensions
    /// depend on (default 5400, waagent's 90 minutes).
    wala_extension_dependency_timeout: Option<u64> = "Wala.ExtensionDependencyTimeout", None;
    /// wala: most files and directories an extension package may hold; a package with more is
    /// refused before anything is unpacked.
    wala_extension_package_max_entries: u64 = "Wala.ExtensionPackageMaxEntries", 20_000;
    /// wala: most MiB all files of an extension package may unpack to, together; a package that
    /// says it unpacks to more is refused before anything is written.
    wala_extension_package_max_size_mb: u64 = "Wala.ExtensionPackageMaxSizeMB", 1024;
    /// wala: most MiB an extension package may be as downloaded (the zip itself). It is streamed
    /// to disk and refused once past this, or at once when its announced length is (the next URI
    /// is then tried); waagent has no such limit.
    wala_extension_package_max_download_mb: u64 = "Wala.ExtensionPackageMaxDownloadMB", 1024;
    /// wala: while the HostGAPlugin answers vmSettings (Fast Track) and nothing has changed for
    /// twice this long, fetch the WireServer goal state only this often (seconds), not on
    /// every poll; a new vmSettings, a vmSettings error or a failed status upload fetches it at
    /// once. At or below the poll period, every poll fetches it, as waagent does.
    wala_wireserver_poll_period: u64 = "Wala.WireServerPollPeriod", 30;
    /// Detect a System Center VMM environment and start its agent.
    detect_scvmm_env: bool = "DetectScvmmEnv", false;

    /// Verbose logging.
    logs_verbose: bool = "Logs.Verbose", false;
    /// waagent: echo its log to /dev/console until the VM is provisioned.
    logs_console: bool = "Logs.Console", true;
    /// Collect logs periodically for the platform.
    logs_collect: bool = "Logs.Collect", true;
    /// How often (seconds) to collect logs.
    logs_collect_period: u64 = "Logs.CollectPeriod", 3600;

    /// Handle VM extensions.
    extensions_enabled: bool = "Extensions.Enabled", true;
    /// How often (seconds) to poll the goal state.
    goal_state_period: u64 = "Extensions.GoalStatePeriod", 6;
    /// Goal state poll period until the first extensions goal state has been processed (recorded in
    /// `<Lib.Dir>/initial_goal_state`, as waagent); None means the same as
    /// Extensions.GoalStatePeriod.
    initial_goal_state_period: Option<u64> = "Extensions.InitialGoalStatePeriod", None;
    /// Wait for cloud-init to finish before running extensions.
    wait_for_cloud_init: bool = "Extensions.WaitForCloudInit", false;
    /// How long (seconds) to wait for cloud-init.
    wait_for_cloud_init_timeout: u64 = "Extensions.WaitForCloudInitTimeout", 3600;
    /// Put extension commands under CPU and memory limits.
    cgroups_enforce_limits: bool = "CGroups.EnforceLimits", false;
    /// Comma-separated extension names left out of the limits.
    cgroups_excluded: String = "CGroups.Excluded", "customscript,runcommand".into();
    /// Self-update of the agent (wala is updated by the package manager; accepted and logged).
    auto_update_enabled: bool = "AutoUpdate.Enabled", true;
    /// Newer name of AutoUpdate.Enabled; None means the same as AutoUpdate.Enabled.
    auto_update_to_latest_version: Option<bool> = "AutoUpdate.UpdateToLatestVersion", None;
    /// Agent family to follow for updates.
    auto_update_ga_family: String = "AutoUpdate.GAFamily", "Prod".into();
    /// How often (seconds) waagent checks for updates of itself.
    auto_update_frequency: u64 = "Autoupdate.Frequency", 3600;
    /// Hold extensions while the goal state says `onHold` (vmSettings, or the InVMArtifactsProfile
    /// an ExtensionsConfig names).
    enable_over_provisioning: bool = "EnableOverProvisioning", true;
    /// How often (seconds) the events extensions write to their `eventsFolder` are collected and
    /// sent (waagent's Extension Telemetry Pipeline).
    etp_collection_period: u64 = "Debug.EtpCollectionPeriod", 300;
    /// Check the signature (`encodedSignature`) of extension packages and their `signingInfo`, as
    /// waagent: failures are logged, not enforced; the trust anchor is
    /// `<Lib.Dir>/microsoft_root_certificate.pem`.
    enable_signature_validation: bool = "Debug.EnableSignatureValidation", false;
    /// Enforce the extension policy in Policy.PolicyFilePath (waagent's switch, off by default):
    /// extensions the policy does not allow are neither downloaded nor run.
    debug_enable_extension_policy: bool = "Debug.EnableExtensionPolicy", false;
    /// The extension policy file (JSON: `policyVersion`, `extensionPolicies`), read only with
    /// Debug.EnableExtensionPolicy=y and only when it exists. See docs/extensions.md.
    policy_file_path: AbsPath = "Policy.PolicyFilePath", AbsPath("/etc/waagent_policy.json".into());
    /// Run extension commands in scopes of their own under `azure-vmextensions-<Name>.slice`, out
    /// of the daemon's cgroup and its `MemoryMax` (systemd only).
    cgroups_enabled: bool = "CGroups.Enabled", true;
    /// Watch for network configuration changes.
    monitor_network_configuration_changes: bool = "Monitor.NetworkConfigurationChanges", false;
}

impl Config {
    /// `Extensions.InitialGoalStatePeriod`, defaulting to `Extensions.GoalStatePeriod`.
    pub fn initial_goal_state_period(&self) -> u64 {
        self.initial_goal_state_period.unwrap_or(self.goal_state_period)
    }

    /// `AutoUpdate.UpdateToLatestVersion`, defaulting to `AutoUpdate.Enabled`.
    pub fn auto_update_to_latest_version(&self) -> bool {
        self.auto_update_to_latest_version.unwrap_or(self.auto_update_enabled)
    }

    /// `Provisioning.ExecuteCustomData` implies decoding.
    pub fn decode_custom_data(&self) -> bool {
        self.decode_custom_data || self.execute_custom_data
    }
}

/// Keys wala accepts and does not use, with the reason: `check-config` notes each one set.
pub const UNUSED_KEYS: &[(&str, &str)] = &[
    (
        "DVD.MountPoint",
        "wala reads the DVD without mounting it; a medium it leaves to the kernel is mounted \
         read-only in the private /run/wala/dvd for the moment of the read (waagent too unmounts \
         right after reading, so nothing else uses the mount point)",
    ),
    (
        "OS.OpensslPath",
        "wala does its certificate work with libcrypto in its wala-crypto helper and never runs openssl",
    ),
    (
        "OS.AllowHTTP",
        "waagent reads it only to fall back to plain HTTP when its Python has no TLS or cannot \
         tunnel HTTPS through a proxy; wala always has both, and uses the platform's http:// and \
         https:// URLs as given, as waagent does",
    ),
    (
        "OS.CheckRdmaDriver",
        "wala loads the RDMA kernel modules (OS.EnableRDMA) but neither checks nor installs driver \
         packages: that is the package manager's work",
    ),
    (
        "OS.UpdateRdmaDriver",
        "wala loads the RDMA kernel modules (OS.EnableRDMA) but neither checks nor installs driver \
         packages: that is the package manager's work",
    ),
    (
        "Logs.Console",
        "where wala's output goes is set by its systemd units: the provisioning units write to the \
         journal and the console (waagent's default, y), the daemon to the journal; a drop-in with \
         StandardOutput=journal and StandardError=journal turns the console copy off",
    ),
    ("Autoupdate.Frequency", "wala does not update itself (the package manager does)"),
    (
        "Monitor.NetworkConfigurationChanges",
        "wala does not log the route table and NIC states every minute; the network's own service \
         (systemd-networkd, NetworkManager) logs its changes to the journal",
    ),
];

/// Keys that waagent no longer reads but shipped images and old docs still carry, plus `Debug.*`
/// experiment switches. They are accepted without complaint and have no effect.
pub const RETIRED_KEYS: &[&str] = &[
    "Provisioning.Enabled",
    "Provisioning.UseCloudInit",
    "LBProbeResponder",
    "RSA.KeyLength",
    "Home.Dir",
    "Role.StateConsumer",
    "Role.ConfigurationConsumer",
    "Role.TopologyConsumer",
    "OS.SshdConfigPath",
    "Network.Interface",
];

fn is_retired(key: &str) -> bool {
    RETIRED_KEYS.contains(&key) || key.starts_with("Debug.")
}

/// Why wala does not use `key`, when it accepts it without using it.
pub fn unused_reason(key: &str) -> Option<&'static str> {
    if let Some((_, why)) = UNUSED_KEYS.iter().find(|(k, _)| *k == key) {
        return Some(why);
    }
    if key.starts_with("Debug.") && !Config::default().entries().iter().any(|(k, _)| *k == key) {
        return Some("a waagent experiment switch; wala has none of these experiments");
    }
    RETIRED_KEYS.contains(&key).then_some("retired: waagent does not read it either")
}

/// More about a value of the wrong type, where waagent accepts it and does something else.
fn refused_value_note(key: &str, value: &str) -> Option<&'static str> {
    match key {
        "Provisioning.PasswordCryptId" if matches!(value, "2a" | "2b" | "2x" | "2y" | "y" | "gy" | "7") => {
            Some(
                "waagent hands crypt(3) `$<id>$` and random salt characters, which for bcrypt (2a, 2b, \
             2y), yescrypt (y, gy) or scrypt (7) is no valid setting: libxcrypt returns the \
             failure token `*0`, waagent sets it as the password hash and the user has no working \
             password",
            )
        }
        _ => None,
    }
}

/// Something wrong in a configuration file: the file, the line, the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}: {}", self.file.display(), self.line, self.key, self.message)
        }
    }
}

/// A configuration file that could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("configuration file {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A loaded configuration: the typed values, every problem found, and the raw key/value pairs
/// (unknown keys included, as waagent keeps them).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub config: Config,
    pub problems: Vec<Problem>,
    /// Keys set in the file that wala accepts and does not use, each with the reason.
    pub notes: Vec<Problem>,
    pub source: Option<PathBuf>,
    raw: BTreeMap<String, String>,
}

impl Loaded {
    /// The raw value of any key as waagent would store it (`None` for unset or `None`).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.raw.get(key).map(String::as_str)
    }

    /// Log every problem as a warning (a bad value never stops a boot, but is never silent), and
    /// every key wala does not use as information.
    pub fn log_problems(&self) {
        for p in &self.problems {
            log::warn!("{p}");
        }
        for n in &self.notes {
            log::info!("{n}");
        }
    }
}

/// Read and parse a configuration file.
pub fn load(path: &Path) -> Result<Loaded, ConfError> {
    let bytes = crate::base::limits::read_file(path, crate::base::limits::Document::WaagentConf).map_err(
        |source| match source.kind() {
            std::io::ErrorKind::NotFound => ConfError::Missing { path: path.to_path_buf() },
            _ => ConfError::Read { path: path.to_path_buf(), source },
        },
    )?;
    Ok(parse(&String::from_utf8_lossy(&bytes), path))
}

/// The configuration a binary runs with: `explicit` as given, else [`DEFAULT_PATH`] under `root`.
/// A file that is missing or unreadable gives the defaults plus a problem saying so: a VM must boot
/// without it, and `check-config` still reports it.
pub fn load_or_defaults(root: &crate::base::root::HostRoot, explicit: Option<&Path>) -> Loaded {
    let path = explicit.map_or_else(|| root.path(DEFAULT_PATH), Path::to_path_buf);
    load(&path).unwrap_or_else(|e| Loaded {
        problems: vec![Problem {
            file: path.clone(),
            line: 0,
            key: String::new(),
            message: format!("{e}; using the defaults"),
        }],
        source: Some(path),
        ..Loaded::default()
    })
}

/// Parse configuration text; `file` names it in problems.
///
/// ```
/// use std::path::Path;
///
/// let text = "ResourceDisk.Format=y\nResourceDisk.SwapSizeMB=2048\nOS.EnableFirewall=maybe\n";
/// let loaded = wala::documents::conf::parse(text, Path::new("/etc/waagent.conf"));
/// assert_eq!(loaded.config.resource_disk_swap_size_mb, 2048);
/// // A bad value is a problem naming the file, the line and the key; the default is kept.
/// assert_eq!((loaded.problems[0].line, loaded.problems[0].key.as_str()), (3, "OS.EnableFirewall"));
/// ```
pub fn parse(text: &str, file: &Path) -> Loaded {
    let mut loaded = Loaded { source: Some(file.to_path_buf()), ..Loaded::default() };
    let mut set_on: BTreeMap<String, usize> = BTreeMap::new();
    for (index, line) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let Some((key, value)) = split_line(line) else { continue };
        let problem =
            |message: String| Problem { file: file.to_path_buf(), line: line_no, key: key.into(), message };
        if key.is_empty() {
            loaded.problems.push(problem("a line with '=' but no key before it; ignored".into()));
            continue;
        }
        if let Some(previous) = set_on.insert(key.to_string(), line_no) {
            log::info!("{}:{line_no}: {key} set again (line {previous} is overridden)", file.display());
        }
        loaded.notes.retain(|n| n.key != key);
        let Some(value) = value else {
            // `None`: unset, back to the default.
            loaded.raw.remove(key);
            loaded.config.reset(key);
            continue;
        };
        loaded.raw.insert(key.to_string(), value.to_string());
        match loaded.config.set(key, value) {
            Some(Ok(())) => {}
            Some(Err(expected)) => {
                let default = loaded.config.reset(key).unwrap_or_default();
                let more = refused_value_note(key, value).map(|m| format!(" ({m})")).unwrap_or_default();
                loaded.problems.push(problem(format!(
                    "invalid value {value:?} ({expected}); using the default {default}{more}"
                )));
            }
            None if is_retired(key) => {}
            None => loaded.problems.push(problem(format!("unknown key (value {value:?}); ignored"))),
        }
        if let Some(why) = unused_reason(key) {
            loaded.notes.push(problem(format!("accepted, not used by wala: {why}")));
        }
    }
    check_combinations(&mut loaded, file, &set_on);
    loaded
}

/// Problems no single line shows: keys that only work together.
fn check_combinations(loaded: &mut Loaded, file: &Path, set_on: &BTreeMap<String, usize>) {
    let c = &loaded.config;
    let mut found: Vec<(&str, &str)> = Vec::new();
    match (&c.http_proxy_host, c.http_proxy_port) {
        (Some(_), None) => found.push((
            "HttpProxy.Host",
            "set without HttpProxy.Port: storage traffic goes direct, without this proxy and \
             without the environment's (as waagent does); set HttpProxy.Port",
        )),
        (None, Some(_)) => found.push((
            "HttpProxy.Port",
            "has no effect without HttpProxy.Host (the environment's proxy settings are used)",
        )),
        _ => {}
    }
    for (key, message) in found {
        loaded.problems.push(Problem {
            file: file.to_path_buf(),
            line: set_on.get(key).copied().unwrap_or(0),
            key: key.into(),
            message: message.into(),
        });
    }
}

/// Split a line into key and value per waagent's rules; `None` for comments and lines without `=`.
/// The value is `None` when it is the literal `None`.
fn split_line(line: &str) -> Option<(&str, Option<&str>)> {
    if line.starts_with('#') {
        return None;
    }
    let (key, rest) = line.split_once('=')?;
    let value = rest.split('#').next().unwrap_or("");
    let value = value.trim_matches(|c| c == '"' || c == ' ').trim();
    Some((key.trim(), (value != "None").then_some(value)))
}

/// `docs/configuration.md`: every key with its default and meaning (kept true by a golden test).
pub fn render_docs() -> String {
    let mut out = String::from(
        "# Configuration: `/etc/waagent.conf`\n\n\
         wala reads waagent's configuration file unchanged (`--config FILE`, or `-configuration-path:FILE`\n\
         through the `waagent` name). Parsing follows waagent exactly: `#` in column 0 starts a comment,\n\
         an inline `#` ends the value, quotes are optional, values may contain `=`, `None` means the\n\
         default, the last repeated key wins, booleans are `y`/`n`.\n\n\
         A value of the wrong type is logged as a warning naming the file, line, key and what was\n\
         expected, and the default is used (a typo never stops a boot). Unknown keys are reported the\n\
         same way, and so are settings that only work together (`HttpProxy.Host` without\n\
         `HttpProxy.Port`).\n\
         `wala-agentd check-config` lists every such problem and exits 3, for image builders.\n\n\
         Every key below is read by wala, except those in the last table: wala accepts them and does\n\
         not use them, for the reason given. `check-config` notes each one the file sets\n\
         (`file:line: key: accepted, not used by wala: why`) without failing, and the daemon logs the\n\
         same notes at start. Retired keys that shipped images still carry are accepted the same way:\n",
    );
    for key in RETIRED_KEYS {
        out.push_str(&format!("`{key}`, "));
    }
    out.push_str(
        "and every `Debug.*` key not in the table below.\n\n| Key | Default | Meaning |\n|---|---|---|\n",
    );
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for k in Config::key_docs() {
        let unused = if unused_reason(k.key).is_some() { " *(not used by wala)*" } else { "" };
        out.push_str(&format!("| `{}` | `{}` | {}{unused} |\n", k.key, k.default, one_line(k.doc)));
    }
    out.push_str("\n## Accepted, not used by wala\n\n| Key | Why |\n|---|---|\n");
    for (key, why) in UNUSED_KEYS {
        out.push_str(&format!("| `{key}` | {} |\n", one_line(why)));
    }
    out
}

/// Render `Key = Value` lines in waagent's `-show-configuration` format, sorted by key.
pub fn show(config: &Config) -> String {
    let mut entries = config.entries();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Loaded {
        parse(text, Path::new("/etc/waagent.conf"))
    }

    #[test]
    fn comments_inline_comments_quotes_and_equals() {
        let l = parse_str(
            "# comment\n  # X=1\nResourceDisk.MountOptions = \"rw,mode=777\" # inline\nOS.SshDir=/x#y\n\
             ResourceDisk.Format=Y\nno equals sign\n",
        );
        assert_eq!(l.config.resource_disk_mount_options.as_deref(), Some("rw,mode=777"));
        assert_eq!(l.config.ssh_dir.0, "/x");
        assert!(l.config.resource_disk_format);
        // The indented `  # X=1` is a key named `# X` as in waagent: unknown, reported.
        assert_eq!(l.problems.len(), 1, "{:?}", l.problems);
        assert_eq!(l.problems[0].key, "# X");
        assert_eq!(l.problems[0].line, 2);
    }

    #[test]
    fn none_means_default_and_last_value_wins() {
        let l = parse_str(
            "ResourceDisk.SwapSizeMB=10\nResourceDisk.SwapSizeMB=None\nOS.SshDir=/a\nOS.SshDir=/b\n",
        );
        assert_eq!(l.config.resource_disk_swap_size_mb, 0);
        assert_eq!(l.raw("ResourceDisk.SwapSizeMB"), None);
        assert_eq!(l.config.ssh_dir.0, "/b");
        assert!(l.problems.is_empty());
    }

    #[test]
    fn bad_value_names_file_line_key_and_expectation_and_uses_default() {
        let l = parse_str(
            "\nResourceDisk.SwapSizeMB=lots\nResourceDisk.EnableSwap=yes\nProvisioning.Agent=waagnet\n",
        );
        assert_eq!(l.config.resource_disk_swap_size_mb, 0);
        assert!(!l.config.resource_disk_enable_swap);
        assert_eq!(l.config.provisioning_agent, ProvisioningAgent::Auto);
        let texts: Vec<String> = l.problems.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 3);
        assert_eq!(
            texts[0],
            "/etc/waagent.conf:2: ResourceDisk.SwapSizeMB: invalid value \"lots\" (expected a whole number \
             (0 or more)); using the default 0"
        );
        assert!(texts[1].starts_with(
            "/etc/waagent.conf:3: ResourceDisk.EnableSwap: invalid value \"yes\" (expected y or n)"
        ));
        assert!(texts[2].contains("expected one of: auto, waagent, cloud-init, disabled"));
    }

    #[test]
    fn bad_value_after_good_one_falls_back_to_default_not_previous() {
        let l = parse_str("Extensions.GoalStatePeriod=12\nExtensions.GoalStatePeriod=-1\n");
        assert_eq!(l.config.goal_state_period, 6);
    }

    #[test]
    fn unknown_keys_are_reported_retired_keys_are_not() {
        let l = parse_str("Provisioning.Enabled=y\nDebug.CgroupLogMetrics=y\nResourceDisk.Formatt=y\n");
        assert_eq!(l.problems.len(), 1);
        assert_eq!(l.problems[0].key, "ResourceDisk.Formatt");
        assert_eq!(l.raw("ResourceDisk.Formatt"), Some("y"));
    }

    #[test]
    fn keys_wala_does_not_use_are_notes_with_their_line_and_reason() {
        let l = parse_str(
            "OS.OpensslPath=/usr/bin/openssl\nProvisioning.Enabled=y\nLogs.Console=n\nLogs.Console=None\n\
             Debug.CgroupLogMetrics=y\nPid.File=/run/w.pid\n",
        );
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let notes: Vec<String> = l.notes.iter().map(ToString::to_string).collect();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes[0].starts_with(
            "/etc/waagent.conf:1: OS.OpensslPath: accepted, not used by wala: wala does its certificate work"
        ));
        assert!(notes[1]
            .starts_with("/etc/waagent.conf:2: Provisioning.Enabled: accepted, not used by wala: retired"));
        // Logs.Console went back to None: nothing to note. Pid.File is honoured.
        assert!(
            notes[2].starts_with("/etc/waagent.conf:5: Debug.CgroupLogMetrics: accepted, not used by wala:")
        );
    }

    #[test]
    fn a_proxy_host_without_a_port_is_a_problem_on_its_line() {
        let l = parse_str("# proxy\nHttpProxy.Host=proxy.corp\n");
        assert_eq!(l.problems.len(), 1, "{:?}", l.problems);
        assert_eq!(l.problems[0].line, 2);
        assert!(l.problems[0].to_string().starts_with(
            "/etc/waagent.conf:2: HttpProxy.Host: set without HttpProxy.Port: storage traffic goes direct"
        ));
        let l = parse_str("HttpProxy.Port=3128\n");
        assert!(l.problems[0].message.contains("no effect without HttpProxy.Host"), "{:?}", l.problems);
        let l = parse_str("HttpProxy.Host=proxy.corp\nHttpProxy.Port=70000\n");
        assert!(l.problems[0].message.contains("expected a port number, 1 to 65535"), "{:?}", l.problems);
        assert!(l.problems[1].message.starts_with("set without HttpProxy.Port"), "{:?}", l.problems);
        let l = parse_str("HttpProxy.Host=proxy.corp\nHttpProxy.Port=3128\n");
        assert!(l.problems.is_empty());
        assert_eq!(l.config.http_proxy_port, Some(Port(3128)));
    }

    #[test]
    fn bcrypt_and_yescrypt_ids_are_refused_with_waagents_outcome() {
        for id in ["2a", "2b", "y"] {
            let l = parse_str(&format!("Provisioning.PasswordCryptId={id}\n"));
            assert_eq!(l.config.password_crypt_id, PasswordCryptId::Sha512);
            let m = &l.problems[0].message;
            assert!(m.contains("using the default 6") && m.contains("failure token `*0`"), "{m}");
        }
        let l = parse_str("Provisioning.PasswordCryptId=sha512\n");
        assert!(!l.problems[0].message.contains("*0"), "{:?}", l.problems);
    }

    #[test]
    fn the_extension_policy_switch_is_read_and_other_debug_keys_are_notes() {
        let l =
            parse_str("Debug.EnableExtensionPolicy=y\nPolicy.PolicyFilePath=/etc/p.json\nDebug.Other=1\n");
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert!(l.config.debug_enable_extension_policy);
        assert_eq!(l.config.policy_file_path.as_path(), Path::new("/etc/p.json"));
        assert_eq!(l.notes.len(), 1, "{:?}", l.notes);
        assert_eq!(l.notes[0].key, "Debug.Other");
    }

    #[test]
    fn endpoint_overrides() {
        let l =
            parse_str("Wala.WireServer=127.0.0.1:8080\nWala.Imds=localhost\nWala.HostGAPlugin=1.2.3.4:x\n");
        assert_eq!(l.config.wala_wireserver, Some(HostPort { host: "127.0.0.1".into(), port: Some(8080) }));
        assert_eq!(l.config.wala_imds, Some(HostPort { host: "localhost".into(), port: None }));
        assert_eq!(l.config.wala_hostgaplugin, None);
        assert!(l.problems[0].message.contains("expected host or host:port"));
    }

    #[test]
    fn relative_path_is_rejected() {
        let l = parse_str("ResourceDisk.MountPoint=mnt\n");
        assert_eq!(l.config.resource_disk_mount_point.0, "/mnt/resource");
        assert!(l.problems[0].message.contains("absolute path"));
    }

    #[test]
    fn derived_defaults() {
        let l = parse_str(
            "Extensions.GoalStatePeriod=10\nAutoUpdate.Enabled=n\nProvisioning.ExecuteCustomData=y\n",
        );
        assert_eq!(l.config.initial_goal_state_period(), 10);
        assert!(!l.config.auto_update_to_latest_version());
        assert!(l.config.decode_custom_data());
        let l = parse_str("AutoUpdate.Enabled=n\nAutoUpdate.UpdateToLatestVersion=y\n");
        assert!(l.config.auto_update_to_latest_version());
    }

    #[test]
    fn show_configuration_format() {
        let text = show(&Config::default());
        assert!(text.contains("OS.EnableFirewall = False\n"));
        assert!(text.contains("ResourceDisk.MountOptions = None\n"));
        assert!(text.contains("Extensions.GoalStatePeriod = 6\n"));
        let keys: Vec<&str> = text.lines().map(|l| l.split(" = ").next().unwrap_or("")).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn every_default_round_trips_through_the_parser() {
        // Setting each key to its shown default must parse without a problem and change nothing.
        let text: String = Config::default()
            .entries()
            .iter()
            .filter(|(_, v)| v != "None")
            .map(|(k, v)| {
                let v = match v.as_str() {
                    "True" => "y",
                    "False" => "n",
                    other => other,
                };
                format!("{k}={v}\n")
            })
            .collect();
        let l = parse_str(&text);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.config, Config::default());
    }
}
