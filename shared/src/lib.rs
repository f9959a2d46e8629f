//! wala's library: everything `wala-provision` and `wala-agentd` do lives here; the binaries only
//! parse their command line, set up logging and map errors to exit codes.
//!
//! The folders say what a module may do (docs/architecture.md has the map):
//!
//! * [`base`]: the ground floor every other module stands on: the root prefix, the one file
//!   writer, the one command runner, logging, secrets, limits, the boot timeline;
//! * [`documents`]: pure parsers and renderers of every document wala reads or writes
//!   (`ovf-env.xml`, `waagent.conf`, WireServer XML, IMDS JSON, extension documents). No I/O;
//! * [`platform`]: the HTTP clients for the WireServer, the HostGAPlugin, IMDS and storage, and
//!   where those endpoints are;
//! * [`crypto`]: certificates and keys, in the short-lived `wala-crypto` child that links OpenSSL;
//! * [`host`]: everything that changes the machine: users, SSH, host keys, hostname, disks, the
//!   firewall, GRUB, the KVP pool, the files under `Lib.Dir`;
//! * [`provision`]: first-boot provisioning (plan, then apply, in boot stages);
//! * [`daemon`]: `wala-agentd`'s steady state: its tasks and how they are run;
//! * [`extensions`]: fetching and running VM extensions;
//! * [`commands`]: the one-shot commands (`deprovision`, `collect-logs`, `inspect`, ...);
//! * [`error`]: the errors at the seams: a failed provisioning step or daemon task keeps the
//!   typed error of the module that failed ([`error::Cause`]).

pub mod base;
pub mod commands;
pub mod crypto;
pub mod daemon;
pub mod documents;
pub mod error;
pub mod extensions;
pub mod host;
pub mod platform;
pub mod provision;

/// wala's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `version` prints: wala's version and the distribution it runs on.
pub fn version_text(root: &base::root::HostRoot) -> String {
    let d = base::distro::Distro::detect(root);
    format!("wala-{VERSION} running on {} {}\nGoal state agent: wala-{VERSION}\n", d.id, d.version_id)
}
