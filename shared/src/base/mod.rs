//! The ground floor: what every other module stands on and nothing here depends on the rest.
//!
//! * [`root`]: the one place host paths are resolved (`/`, `/sysroot`, a test directory);
//! * [`files`]: the one atomic file writer;
//! * [`cmd`]: the one way external programs are run;
//! * [`logging`], [`timeline`]: log lines and the boot timeline; [`notify`]: `sd_notify`;
//! * [`secret`]: values that never reach logs or argv; [`random`]: kernel random bytes;
//! * [`limits`]: the size cap of every document read from outside;
//! * [`distro`]: which distribution this is, and the facts that differ between families;
//! * [`dir_watch`]: inotify watches on directories (what changed, without reading them);
//! * [`exit`]: the exit codes; [`civil_date`]: calendar dates; [`ziparchive`]: ZIP reading and
//!   writing.

pub mod civil_date;
pub mod cmd;
pub mod dir_watch;
pub mod distro;
pub mod exit;
pub mod files;
pub mod limits;
pub mod logging;
pub mod notify;
pub mod random;
pub mod root;
pub mod secret;
pub mod timeline;
pub mod ziparchive;

#[cfg(test)]
pub(crate) mod testing;
