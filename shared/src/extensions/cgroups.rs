//! Where extension commands run (wire.md §10.4). When systemd is the init system and
//! `CGroups.Enabled=y` (the default), every command runs in a transient scope under
//! `azure-vmextensions-<Handler>.slice`, out of the daemon's own cgroup: the daemon's unit has a
//! `MemoryMax=` sized for the daemon alone (docs/security.md), which must not fall on an
//! extension's installer or on the daemons an extension starts. With `CGroups.EnforceLimits=y`
//! the scope also gets `CPUQuota=`/`MemoryMax=` from the handler's `resourceLimits`, except for
//! handlers named in `CGroups.Excluded`. Without systemd, or with `CGroups.Enabled=n`, a command
//! runs plainly.

use crate::base::cmd::Cmd;
use crate::base::root::HostRoot;

/// What the configuration and the host allow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupPolicy {
    /// `CGroups.Enabled=y` and systemd is PID 1 (`/run/systemd/system` exists): commands run in
    /// their own scope.
    pub scope: bool,
    /// `CGroups.EnforceLimits=y` and systemd is PID 1 (`/run/systemd/system` exists).
    pub enforce: bool,
    /// `CGroups.Excluded`, lower-cased: a handler is left out when its full name, or the part
    /// after its last `.` (`customscript` for `Microsoft.Azure.Extensions.CustomScript`), is listed.
    pub excluded: Vec<String>,
}

/// Limits for one handler, from its manifest's `resourceLimits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub cpu_quota_percent: Option<u64>,
    pub memory_mb: Option<u64>,
}

impl Limits {
    /// `{"cpuQuotaPercentage": n, "memoryQuotaInMB": n}`; anything else is ignored.
    pub fn from_manifest(resource_limits: Option<&serde_json::Value>) -> Self {
        let get = |k: &str| resource_limits.and_then(|r| r.get(k)).and_then(serde_json::Value::as_u64);
        Self { cpu_quota_percent: get("cpuQuotaPercentage"), memory_mb: get("memoryQuotaInMB") }
    }
}

impl CgroupPolicy {
    pub fn new(config: &crate::documents::conf::Config, root: &HostRoot) -> Self {
        let systemd = root.path("/run/systemd/system").is_dir();
        Self {
            scope: config.cgroups_enabled && systemd,
            enforce: config.cgroups_enforce_limits && systemd,
            excluded: config
                .cgroups_excluded
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// Whether `handler`'s commands run in a limited scope.
    pub fn applies_to(&self, handler: &str) -> bool {
        let full = handler.to_ascii_lowercase();
        let short = full.rsplit('.').next().unwrap_or(&full).to_string();
        self.enforce && !self.excluded.iter().any(|e| *e == full || *e == short)
    }

    /// The command that runs `/bin/sh -c <script>` for `handler`: either itself, or wrapped in
    /// `systemd-run --scope`; arguments added to it go to the shell (`$0`, `$1`, ...), so nothing
    /// but `script` is parsed by the shell. `unit` names the scope (`<operation>_<uuid>`).
    /// `handler` is a checked handler name ([`names`](crate::documents::extensions::names)) and only goes into an argument.
    pub fn command(&self, handler: &str, unit: &str, limits: Limits, script: &str) -> Cmd {
        if !self.scope && !self.applies_to(handler) {
            return Cmd::new("/bin/sh").arg("-c").arg(script);
        }
        let mut cmd = Cmd::new("systemd-run")
            .arg(format!("--unit={unit}"))
            .arg("--scope")
            .arg(format!("--slice=azure-vmextensions-{}.slice", handler.replace('-', "_")))
            .arg("--property=CPUAccounting=yes")
            .arg("--property=MemoryAccounting=yes");
        if self.applies_to(handler) {
            if let Some(cpu) = limits.cpu_quota_percent {
                cmd = cmd.arg(format!("--property=CPUQuota={cpu}%"));
            }
            if let Some(mb) = limits.memory_mb {
                cmd = cmd.arg(format!("--property=MemoryMax={mb}M"));
            }
        }
        cmd.arg("/bin/sh").arg("-c").arg(script)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::Runner;

    fn policy(root: &std::path::Path, enforce: bool) -> CgroupPolicy {
        let config = crate::documents::conf::Config { cgroups_enforce_limits: enforce, ..Default::default() };
        CgroupPolicy::new(&config, &HostRoot::new(root))
    }

    #[test]
    fn under_systemd_every_command_leaves_the_daemons_cgroup() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("run/systemd/system")).expect("mkdir");
        let p = policy(tmp.path(), false);
        let limits = Limits { cpu_quota_percent: Some(5), memory_mb: Some(100) };
        let cmd = p.command("Pub.Agent", "install_1", limits, "bin/x install");
        let fake = crate::base::cmd::FakeRunner::new();
        fake.run(&cmd).expect("run");
        assert_eq!(
            fake.command_lines(),
            ["systemd-run --unit=install_1 --scope --slice=azure-vmextensions-Pub.Agent.slice --property=CPUAccounting=yes --property=MemoryAccounting=yes /bin/sh -c bin/x install"],
            "a scope of its own, without the limits that are not enforced"
        );
        let off = crate::documents::conf::Config { cgroups_enabled: false, ..Default::default() };
        let plain =
            CgroupPolicy::new(&off, &HostRoot::new(tmp.path())).command("Pub.Agent", "u", limits, "x");
        let fake = crate::base::cmd::FakeRunner::new();
        fake.run(&plain).expect("run");
        assert_eq!(fake.command_lines(), ["/bin/sh -c x"]);
    }

    #[test]
    fn limits_apply_only_under_systemd_and_not_to_excluded_handlers() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(!policy(tmp.path(), true).enforce, "no systemd: plain");
        std::fs::create_dir_all(tmp.path().join("run/systemd/system")).expect("mkdir");
        assert!(!policy(tmp.path(), false).enforce, "off in the configuration");
        let p = policy(tmp.path(), true);
        assert!(p.applies_to("Pub.Monitor-Agent"));
        assert!(!p.applies_to("Microsoft.Azure.Extensions.CustomScript"), "default exclusion");
        assert!(!p.applies_to("Microsoft.CPlat.Core.RunCommand"));

        let fake = crate::base::cmd::FakeRunner::new();
        let limits = Limits::from_manifest(Some(
            &serde_json::json!({"cpuQuotaPercentage": 25, "memoryQuotaInMB": 300}),
        ));
        fake.run(&p.command("Pub.Monitor-Agent", "enable_1", limits, "bin/x enable")).expect("run");
        fake.run(&p.command("Microsoft.Azure.Extensions.CustomScript", "enable_2", limits, "bin/y"))
            .expect("run");
        assert_eq!(
            fake.command_lines(),
            [
                "systemd-run --unit=enable_1 --scope --slice=azure-vmextensions-Pub.Monitor_Agent.slice --property=CPUAccounting=yes --property=MemoryAccounting=yes --property=CPUQuota=25% --property=MemoryMax=300M /bin/sh -c bin/x enable",
                "systemd-run --unit=enable_2 --scope --slice=azure-vmextensions-Microsoft.Azure.Extensions.CustomScript.slice --property=CPUAccounting=yes --property=MemoryAccounting=yes /bin/sh -c bin/y",
            ]
        );
    }
}
