//! wala's library: everything `wala-provision` and `wala-agentd` do lives here; the binaries only
//! parse their command line, set up logging and map errors to exit codes.

pub mod cmd;
pub mod dhcp;
pub mod files;
pub mod imds;
pub mod root;
pub mod secret;
pub mod wire;

/// wala's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
