//! wala's library: everything `wala-provision` and `wala-agentd` do lives here; the binaries only
//! parse their command line, set up logging and map errors to exit codes.

pub mod boot_report;
pub mod civil_date;
pub mod cmd;
pub mod conf;
pub mod crypto_helper;
pub mod customdata;
pub mod daemon;
pub mod deprovision;
pub mod devices;
pub mod dhcp;
pub mod disk;
pub mod distro;
pub mod dvd;
pub mod exit;
pub mod extensions;
pub mod files;
pub mod firewall;
pub mod grub;
pub mod host_keys;
pub mod hostgaplugin;
pub mod hostname;
pub mod http;
pub mod imds;
pub mod inspect;
pub mod kvp;
pub mod legacy_cli;
pub mod lib_dir;
pub mod limits;
pub mod link_watch;
pub mod logcollect;
pub mod logging;
pub mod notify;
pub mod ovf;
pub mod platform;
pub mod platform_features;
pub mod provision;
pub mod random;
pub mod remote_access;
pub mod root;
pub mod route_wait;
pub mod secret;
pub mod selinux;
pub mod serialconsole;
pub mod shadow_lock;
pub mod ssh;
pub mod status_blob;
pub mod takeover;
pub mod telemetry;
pub mod timeline;
pub mod user;
pub mod vmid;
pub mod wire;
pub mod ziparchive;

/// wala's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `version` prints: wala's version and the distribution it runs on.
pub fn version_text(root: &root::HostRoot) -> String {
    let d = distro::Distro::detect(root);
    format!("wala-{VERSION} running on {} {}\nGoal state agent: wala-{VERSION}\n", d.id, d.version_id)
}

#[cfg(test)]
pub(crate) mod testing;
