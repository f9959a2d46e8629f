//! Small platform switches from waagent.conf that the daemon applies at start: RDMA
//! (`OS.EnableRDMA`), System Center VMM detection (`DetectScvmmEnv`), FIPS (`OS.EnableFIPS`), the
//! virtual NUMA work-around for old kernels, and what `AutoUpdate.*` means for wala.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use crate::base::cmd::{Cmd, CmdError, Runner};
use crate::base::root::HostRoot;
use crate::documents::conf::Config;
use crate::host::grub::{self, GrubChange, GrubError, KernelArg};

// ---------------------------------------------------------------------------------------------
// RDMA

/// Where the kernel lists RDMA (InfiniBand verbs) devices.
pub const INFINIBAND_CLASS: &str = "/sys/class/infiniband";

/// The kernel module for the SR-IOV InfiniBand function of today's RDMA sizes (HB, HC, HBv2+,
/// NDv2+, H16r on newer hosts). The legacy Network Direct module, `hv_network_direct`, that
/// waagent loads needs an out-of-tree driver and is tried second.
pub const RDMA_MODULES: [&str; 2] = ["mlx5_ib", "hv_network_direct"];

/// Whether an Azure VM size offers RDMA, from its name: A8 and A9, and every size whose feature
/// letters (the lowercase letters after the vCPU count) include `r` (`Standard_H16r`,
/// `Standard_HB120rs_v3`, `Standard_NC24rs_v3`, `Standard_ND96asr_v4`). Case of the prefix is
/// ignored; an unparsable name is not RDMA capable.
pub fn rdma_capable_size(vm_size: &str) -> bool {
    let name = vm_size.trim();
    let name = name.strip_prefix("Standard_").or_else(|| name.strip_prefix("standard_")).unwrap_or(name);
    if name.eq_ignore_ascii_case("A8") || name.eq_ignore_ascii_case("A9") {
        return true;
    }
    let base = name.split('_').next().unwrap_or("");
    // Family letters (upper case), the vCPU count, an optional `-N` constrained count, then the
    // lowercase feature letters.
    let after_family = base.trim_start_matches(|c: char| c.is_ascii_uppercase());
    if after_family.len() == base.len() {
        return false;
    }
    let after_digits = after_family.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
    if after_digits.len() == after_family.len() {
        return false;
    }
    let features: String = after_digits.chars().take_while(|c| c.is_ascii_lowercase()).collect();
    features.contains('r')
}

/// The RDMA devices the kernel shows under `root` (names in `/sys/class/infiniband`).
pub fn rdma_devices(root: &HostRoot) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.path(INFINIBAND_CLASS))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// What the RDMA set-up found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdmaOutcome {
    /// `OS.EnableRDMA=n`.
    Disabled,
    /// The VM size offers no RDMA and no RDMA device is present.
    NotCapable { vm_size: Option<String> },
    /// RDMA devices are already present (driver loaded by the distribution).
    Present { devices: Vec<String> },
    /// wala loaded this module.
    Loaded { module: String, devices: Vec<String> },
    /// No module could be loaded; the errors per module.
    LoadFailed { errors: Vec<String> },
}

/// `OS.EnableRDMA`: on an RDMA-capable VM (by size, from IMDS `compute.vmSize`, or because a
/// device is already present) make sure an RDMA driver is loaded. Never fails: problems are
/// logged and returned, as waagent continues after RDMA errors.
pub fn setup_rdma(
    root: &HostRoot,
    runner: &dyn Runner,
    config: &Config,
    vm_size: Option<&str>,
) -> RdmaOutcome {
    if !config.enable_rdma {
        log::info!("RDMA capabilities are not enabled, skipping");
        return RdmaOutcome::Disabled;
    }
    let devices = rdma_devices(root);
    if !devices.is_empty() {
        log::info!("RDMA: devices present: {}", devices.join(", "));
        return RdmaOutcome::Present { devices };
    }
    let capable = vm_size.is_some_and(rdma_capable_size);
    if !capable {
        match vm_size {
            Some(size) => log::info!("RDMA: VM size {size} has no RDMA capability; nothing to do"),
            None => log::info!("RDMA: VM size unknown and no RDMA device present; nothing to do"),
        }
        return RdmaOutcome::NotCapable { vm_size: vm_size.map(str::to_string) };
    }
    let mut errors = Vec::new();
    for module in RDMA_MODULES {
        log::info!("RDMA: probing module '{module}'");
        match runner.run(&Cmd::new("modprobe").arg(module)) {
            Ok(_) => {
                log::info!("RDMA: loaded the kernel module {module}");
                return RdmaOutcome::Loaded { module: module.into(), devices: rdma_devices(root) };
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    log::error!("RDMA: could not load any RDMA kernel module: {}", errors.join("; "));
    RdmaOutcome::LoadFailed { errors }
}

// ---------------------------------------------------------------------------------------------
// System Center VMM

/// The file on the VMM provisioning DVD that marks a System Center VMM environment.
pub const SCVMM_MARKER: &str = "linuxosconfiguration.xml";

/// How long the VMM installer may run before wala gives up waiting (waagent sleeps 300 s).
pub const SCVMM_INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ScvmmError {
    #[error("System Center VMM installer {} failed: {source}", installer.display())]
    Install {
        installer: PathBuf,
        #[source]
        source: CmdError,
    },
}

/// What SCVMM detection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScvmmOutcome {
    /// No `linuxosconfiguration.xml` at the mount point: not a VMM environment.
    NotScvmm,
    /// The VMM agent's installer ran: the VMM agent now owns the VM and the daemon must stop.
    Installed { installer: PathBuf },
}

/// `DetectScvmmEnv`: with the provisioning DVD mounted at `mount_dir`, look for
/// `linuxosconfiguration.xml`; when it is there, run `/bin/bash <mount>/install -p <mount>` (the
/// VMM agent's installer) and return [`ScvmmOutcome::Installed`]. Mounting the DVD is the
/// caller's (see `dvd`).
pub fn detect_scvmm(mount_dir: &Path, runner: &dyn Runner) -> Result<ScvmmOutcome, ScvmmError> {
    if !mount_dir.join(SCVMM_MARKER).is_file() {
        return Ok(ScvmmOutcome::NotScvmm);
    }
    let installer = mount_dir.join("install");
    log::info!("System Center VMM environment detected; starting {}", installer.display());
    let cmd = Cmd::new("/bin/bash").arg(&installer).arg("-p").arg(mount_dir).timeout(SCVMM_INSTALL_TIMEOUT);
    runner.run(&cmd).map_err(|source| ScvmmError::Install { installer: installer.clone(), source })?;
    Ok(ScvmmOutcome::Installed { installer })
}

// ---------------------------------------------------------------------------------------------
// FIPS

/// The variable OpenSSL 1.x reads to enter FIPS mode (and that waagent sets for its children).
pub const OPENSSL_FIPS_ENV: &str = "OPENSSL_FIPS";

/// `OS.EnableFIPS=y`: set `OPENSSL_FIPS=1` in this process's environment so that libssl (loaded
/// by wala's first OpenSSL call) and every command and extension wala starts inherit it. Call it
/// at the very start of `main`, before any thread is spawned and before any OpenSSL use (changing
/// the environment is not thread-safe). Returns whether it was set.
pub fn apply_fips(config: &Config) -> bool {
    let Some((key, value)) = fips_env(config) else {
        return false;
    };
    std::env::set_var(key, value);
    log::info!("OS.EnableFIPS=y: {key}={value} set for wala and the programs it starts");
    true
}

/// The environment variable [`apply_fips`] sets for this configuration, if any.
pub fn fips_env(config: &Config) -> Option<(&'static str, &'static str)> {
    config.enable_fips.then_some((OPENSSL_FIPS_ENV, "1"))
}

// ---------------------------------------------------------------------------------------------
// Virtual NUMA on old kernels

/// Kernels older than this mishandle Hyper-V's virtual NUMA topology.
pub const NUMA_FIXED_IN: (u32, u32, u32) = (2, 6, 37);

/// The leading `major.minor.patch` of a kernel release string (`2.6.32-504.el6.x86_64`,
/// `5.15.0-1057-azure`, `3.10`). `None` when it does not start with a number.
pub fn kernel_version(release: &str) -> Option<(u32, u32, u32)> {
    let head: String = release.trim().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let mut parts = head.split('.').filter(|p| !p.is_empty()).map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// Whether the kernel `release` needs virtual NUMA turned off (older than 2.6.37). An
/// unparsable release does not.
pub fn needs_numa_off(release: &str) -> bool {
    kernel_version(release).is_some_and(|v| v < NUMA_FIXED_IN)
}

/// The running kernel's release (`/proc/sys/kernel/osrelease`).
pub fn running_kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string())
}

/// On a kernel older than 2.6.37 add `numa=off` to `GRUB_CMDLINE_LINUX` (and regenerate
/// `grub.cfg` on the live root). `Ok(None)` when the kernel does not need it.
pub fn apply_numa_workaround(
    root: &HostRoot,
    runner: &dyn Runner,
    kernel_release: &str,
) -> Result<Option<GrubChange>, GrubError> {
    if !needs_numa_off(kernel_release) {
        return Ok(None);
    }
    log::info!("kernel {kernel_release} is older than 2.6.37: disabling virtual NUMA (numa=off)");
    let arg = [KernelArg { value: "numa=off", replaces: &["numa="] }];
    grub::edit_defaults(root, runner, |text, path| grub::add_kernel_args(text, grub::CMDLINE_VAR, &arg, path))
        .map(Some)
}

// ---------------------------------------------------------------------------------------------
// AutoUpdate

static AUTO_UPDATE_NOTICE: Once = Once::new();

/// What `AutoUpdate.*` means for wala, as one line: wala never downloads agent builds from the
/// platform; the package manager updates it.
pub fn auto_update_notice(config: &Config) -> String {
    if config.auto_update_to_latest_version() {
        format!(
            "AutoUpdate is on (GAFamily {}): wala does not download agent updates from the platform; \
             it is updated by the distribution's package manager",
            config.auto_update_ga_family
        )
    } else {
        "AutoUpdate is off: wala does not download agent updates; it is updated by the distribution's \
         package manager"
            .to_string()
    }
}

/// Log [`auto_update_notice`] once per process (the daemon calls it at start).
pub fn log_auto_update_once(config: &Config) {
    AUTO_UPDATE_NOTICE.call_once(|| log::info!("{}", auto_update_notice(config)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::{CmdOutput, FakeRunner};

    #[test]
    fn rdma_sizes() {
        for yes in [
            "Standard_A8",
            "Standard_A9",
            "Standard_H16r",
            "Standard_H16mr",
            "Standard_HB120rs_v3",
            "Standard_HC44rs",
            "Standard_NC24rs_v3",
            "Standard_ND96asr_v4",
            "Standard_ND40rs_v2",
            "Standard_HB176-96rs_v4",
        ] {
            assert!(rdma_capable_size(yes), "{yes}");
        }
        for no in [
            "Standard_D4s_v3",
            "Standard_A8_v2",
            "Standard_H16",
            "Standard_E2bds_v5",
            "Standard_B1s",
            "",
            "r",
            "A8m",
        ] {
            assert!(!rdma_capable_size(no), "{no}");
        }
    }

    fn config(rdma: bool) -> Config {
        Config { enable_rdma: rdma, ..Config::default() }
    }

    #[test]
    fn rdma_setup_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let fake = FakeRunner::new();
        assert_eq!(
            setup_rdma(&root, &fake, &config(false), Some("Standard_HB120rs_v3")),
            RdmaOutcome::Disabled
        );
        assert_eq!(
            setup_rdma(&root, &fake, &config(true), Some("Standard_D2s_v3")),
            RdmaOutcome::NotCapable { vm_size: Some("Standard_D2s_v3".into()) }
        );
        assert!(fake.calls().is_empty());
        assert_eq!(
            setup_rdma(&root, &fake, &config(true), Some("Standard_HB120rs_v3")),
            RdmaOutcome::Loaded { module: "mlx5_ib".into(), devices: vec![] }
        );
        assert_eq!(fake.command_lines(), ["modprobe mlx5_ib"]);

        let failing = FakeRunner::new();
        failing.respond(
            "modprobe",
            CmdOutput { code: Some(1), stderr: b"not found".to_vec(), ..Default::default() },
        );
        let out = setup_rdma(&root, &failing, &config(true), Some("Standard_H16r"));
        assert!(matches!(&out, RdmaOutcome::LoadFailed { errors } if errors.len() == 2), "{out:?}");
        assert_eq!(failing.command_lines(), ["modprobe mlx5_ib", "modprobe hv_network_direct"]);

        std::fs::create_dir_all(dir.path().join("sys/class/infiniband/mlx5_0")).expect("mkdir");
        let fake = FakeRunner::new();
        assert_eq!(
            setup_rdma(&root, &fake, &config(true), None),
            RdmaOutcome::Present { devices: vec!["mlx5_0".into()] }
        );
        assert!(fake.calls().is_empty());
    }

    #[test]
    fn scvmm_detection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeRunner::new();
        assert_eq!(detect_scvmm(dir.path(), &fake).expect("detect"), ScvmmOutcome::NotScvmm);
        assert!(fake.calls().is_empty());
        std::fs::write(dir.path().join(SCVMM_MARKER), "<x/>").expect("write");
        let out = detect_scvmm(dir.path(), &fake).expect("detect");
        assert_eq!(out, ScvmmOutcome::Installed { installer: dir.path().join("install") });
        let mnt = dir.path().display();
        assert_eq!(fake.command_lines(), [format!("/bin/bash {mnt}/install -p {mnt}")]);

        let failing = FakeRunner::new();
        failing.respond("bash", CmdOutput { code: Some(2), ..Default::default() });
        assert!(matches!(detect_scvmm(dir.path(), &failing), Err(ScvmmError::Install { .. })));
    }

    #[test]
    fn fips_variable_only_when_enabled() {
        // apply_fips itself changes the test process's environment, which other tests share.
        assert_eq!(fips_env(&Config::default()), None);
        assert!(!apply_fips(&Config::default()));
        assert_eq!(fips_env(&Config { enable_fips: true, ..Config::default() }), Some(("OPENSSL_FIPS", "1")));
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("2.6.32-504.el6.x86_64"), Some((2, 6, 32)));
        assert_eq!(kernel_version("5.15.0-1057-azure"), Some((5, 15, 0)));
        assert_eq!(kernel_version("3.10"), Some((3, 10, 0)));
        assert_eq!(kernel_version("linux"), None);
        assert!(needs_numa_off("2.6.32-504.el6.x86_64"));
        assert!(needs_numa_off("2.6.36"));
        assert!(!needs_numa_off("2.6.37"));
        assert!(!needs_numa_off("3.0.101"));
        assert!(!needs_numa_off("6.8.0-1012-azure"));
        assert!(!needs_numa_off("garbage"));
    }

    #[test]
    fn numa_off_is_added_for_old_kernels_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc/default")).expect("mkdir");
        let grub_file = dir.path().join("etc/default/grub");
        std::fs::write(&grub_file, "GRUB_CMDLINE_LINUX=\"quiet numa=on\"\n").expect("write");
        let root = HostRoot::new(dir.path());
        let fake = FakeRunner::new();
        assert_eq!(apply_numa_workaround(&root, &fake, "5.4.0").expect("new kernel"), None);
        assert_eq!(std::fs::read_to_string(&grub_file).unwrap(), "GRUB_CMDLINE_LINUX=\"quiet numa=on\"\n");
        let change = apply_numa_workaround(&root, &fake, "2.6.32-71.el6").expect("old").expect("changed");
        assert!(change.changed && change.regenerated_with.is_none());
        assert_eq!(std::fs::read_to_string(&grub_file).unwrap(), "GRUB_CMDLINE_LINUX=\"quiet numa=off\"\n");
        let again = apply_numa_workaround(&root, &fake, "2.6.32-71.el6").expect("old").expect("checked");
        assert!(!again.changed);
    }

    #[test]
    fn auto_update_notice_names_the_package_manager() {
        let on = auto_update_notice(&Config::default());
        assert!(on.starts_with("AutoUpdate is on (GAFamily Prod)") && on.contains("package manager"), "{on}");
        let off = auto_update_notice(&Config { auto_update_enabled: false, ..Config::default() });
        assert!(off.starts_with("AutoUpdate is off"), "{off}");
        log_auto_update_once(&Config::default());
    }
}
