//! waagent's service commands: `-start` (the daemon in the background, in a session of its own)
//! and `-register-service` (wala's units enabled, as the package does).

use std::path::Path;

use crate::base::cmd::{Cmd, CmdError, Runner};
use crate::base::root::HostRoot;

/// The units the package enables (packaging/debian/postinst), in boot order.
pub const UNITS: [&str; 6] = [
    "wala-provision-local.service",
    "wala-provision-keys.service",
    "wala-provision-disk.service",
    "wala-provision-network.service",
    "wala-network-setup.service",
    "wala-agentd.service",
];

/// Why `-start` could not start the daemon.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot find this program: {0}")]
    NoProgram(#[source] std::io::Error),
    #[error(transparent)]
    Command(#[from] CmdError),
}

/// `waagent -start`: `daemon --provision` of this program in the background (a new session,
/// output discarded; it logs to the journal through stderr only when run by a unit, and always
/// to waagent.log), returning at once.
pub fn start_in_background(runner: &dyn Runner, config: Option<&Path>) -> Result<(), StartError> {
    let exe = std::env::current_exe().map_err(StartError::NoProgram)?;
    let mut cmd = Cmd::new("setsid").arg("-f").arg(&exe);
    if let Some(c) = config {
        cmd = cmd.arg("--config").arg(c);
    }
    let cmd = cmd.args(["daemon", "--provision"]).output_files("/dev/null", "/dev/null", 0);
    runner.run(&cmd)?;
    Ok(())
}

/// `waagent -register-service`: `systemctl enable` of [`UNITS`] (`--root` for another root).
/// Returns the units enabled.
pub fn register_service(runner: &dyn Runner, root: &HostRoot) -> Result<&'static [&'static str], CmdError> {
    let mut cmd = Cmd::new("systemctl");
    if !root.is_live() {
        cmd = cmd.arg(format!("--root={}", root.path("/").display()));
    }
    runner.run(&cmd.arg("enable").args(UNITS))?;
    Ok(&UNITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::FakeRunner;

    #[test]
    fn start_runs_the_daemon_with_provisioning_in_a_new_session_and_returns() {
        let runner = FakeRunner::new();
        start_in_background(&runner, Some(Path::new("/etc/my.conf"))).expect("start");
        let exe = std::env::current_exe().expect("exe");
        assert_eq!(
            runner.command_lines(),
            vec![format!("setsid -f {} --config /etc/my.conf daemon --provision", exe.display())]
        );
    }

    #[test]
    fn register_service_enables_every_unit_the_package_enables() {
        let runner = FakeRunner::new();
        assert_eq!(register_service(&runner, &HostRoot::live()).expect("enable"), &UNITS);
        assert_eq!(runner.command_lines(), vec![format!("systemctl enable {}", UNITS.join(" "))]);
        let postinst = include_str!("../../../packaging/debian/postinst");
        for unit in UNITS {
            assert!(postinst.contains(unit), "{unit} is not enabled by the package");
        }
    }
}
