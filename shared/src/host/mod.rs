//! Everything that changes the machine, always through a [`HostRoot`](crate::base::root::HostRoot)
//! and the one command runner.
//!
//! * [`user`], [`shadow_lock`]: the admin user, its password and sudoers drop-in;
//! * [`ssh`], [`host_keys`]: sshd settings, authorized keys, host keys;
//! * [`hostname`]: `/etc/hostname`, `/etc/hosts`, the kernel's name;
//! * [`disk`], [`devices`]: the resource disk and swap, and waiting for block devices;
//! * [`dvd`]: finding the provisioning DVD and reading `ovf-env.xml` from it;
//! * [`mounts`]: whether a path's file system is mounted yet (early in the boot);
//! * [`customdata`]: CustomData saved and, when configured, run;
//! * [`firewall`]: the WireServer firewall rules;
//! * [`link_watch`], [`route_wait`]: network links and routes, watched through rtnetlink;
//! * [`grub`], [`platform_features`]: kernel command line and the small `OS.*` switches;
//! * [`kvp`]: the Hyper-V KVP pool the host reads;
//! * [`jit_accounts`]: the JIT remote-access accounts the goal state asks for;
//! * [`lib_dir`]: what the agent keeps in `Lib.Dir` for extensions and tools;
//! * [`selinux`]: SELinux labels on the files wala writes;
//! * [`deprovision`]: `deprovision [--user]`, what makes this machine this machine removed;
//! * [`vmid`]: the VM id (SMBIOS).
//!
//! [`Host`] is what every stage and task that changes the machine works with: the root prefix,
//! the configuration and the command runner.

pub mod customdata;
pub mod deprovision;
pub mod devices;
pub mod disk;
pub mod dvd;
pub mod firewall;
pub mod grub;
pub mod host_keys;
pub mod hostname;
pub mod jit_accounts;
pub mod kvp;
pub mod lib_dir;
pub mod link_watch;
pub mod mounts;
pub mod platform_features;
pub mod route_wait;
pub mod selinux;
pub mod shadow_lock;
pub mod ssh;
pub mod user;
pub mod vmid;

use crate::base::cmd::Runner;
use crate::base::root::HostRoot;
use crate::documents::conf::Config;

/// The machine wala works on: where its root is, how it is configured, and how commands are run.
/// Provisioning ([`crate::provision::Context`]), daemon tasks ([`crate::daemon::Env`]) and the
/// extension lifecycle ([`crate::extensions::lifecycle::Context`]) each hold one, beside what is
/// theirs alone.
#[derive(Clone, Copy)]
pub struct Host<'a> {
    pub root: &'a HostRoot,
    pub config: &'a Config,
    pub runner: &'a dyn Runner,
}

impl std::fmt::Debug for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("root", &self.root).finish_non_exhaustive()
    }
}
