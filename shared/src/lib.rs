//! wala's library: everything `wala-provision` and `wala-agentd` do lives here; the binaries only
//! parse their command line, set up logging and map errors to exit codes.

pub mod cmd;
pub mod disk;
pub mod files;
pub mod root;
pub mod secret;

/// wala's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
