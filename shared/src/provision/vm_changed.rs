//! What a disk provisioned for one VM forgets when it boots as another (a restored backup, a Site
//! Recovery failover, a specialized disk attached to a new VM, an image captured without
//! deprovisioning): the state that belongs to the VM, not to the disk. waagent does the same in
//! `run_changed_unique_id` (spec §6.3) before it rewrites its marker and reports Ready.
//!
//! Removed: the DHCP leases (the new VM has a new NIC and address); in `Lib.Dir` the previous VM's
//! goal-state documents (`GoalState.*.xml`, `ExtensionsConfig.*.xml`, `Extensions.*.xml`,
//! `HostingEnvironmentConfig.xml`, `SharedConfig.xml`), its incarnation and protocol files, the
//! WireServer endpoint, the published hostname, and waagent's update markers; in each extension
//! handler's directory its settings (`config/*.settings`), statuses (`status/*.status`,
//! `config/HandlerStatus`) and last sequence numbers (waagent's `mrseq`, wala's
//! `config/*.wala-seq`), so that the new VM's goal state runs the extensions again instead of
//! being taken for one already handled. wala's own per-VM files go too: the note that an earlier
//! boot had a resource disk (the new VM size may have none: no 30 s wait for it) and the firewall
//! rule's WireServer address (the daemon writes it again).
//!
//! Kept, as waagent keeps them: certificates (`*.crt`, `*.prv`, the transport certificate),
//! `ovf-env.xml`, `CustomData`, the installed extension packages and their `HandlerState`, the
//! goal-state history. Users, passwords, SSH host keys and authorized keys are never touched here.

use std::path::Path;

use crate::base::root::HostRoot;
use crate::documents::conf::Config;
use crate::host::deprovision::{self, Report, LEASE_DIRS, LEASE_GLOBS};

/// Files in `Lib.Dir` that belong to the VM (waagent's list, then wala's own).
pub const PER_VM_FILES: [&str; 13] = [
    "HostingEnvironmentConfig.xml",
    "Incarnation",
    "partition",
    "Protocol",
    "SharedConfig.xml",
    "WireServerEndpoint",
    "published_hostname",
    "fast_track.json",
    "initial_goal_state",
    "waagent_rsm_update",
    "waagent_initial_update",
    "wala-resource-disk-seen",
    crate::host::firewall::PERSIST_FILE,
];

/// Patterns of per-VM files in `Lib.Dir` (`*` matches any run of characters).
pub const PER_VM_GLOBS: [&str; 3] = ["Extensions.*.xml", "ExtensionsConfig.*.xml", "GoalState.*.xml"];

/// Forget the previous VM's state under `root` (see the module documentation). Each removal is on
/// its own: a failure is in the report and does not stop the others. Leases under `/run` are only
/// the running system's, so they are left alone under another root (the initramfs's `/sysroot`).
pub fn forget_previous_vm(root: &HostRoot, config: &Config) -> Report {
    let mut r = Report::default();
    for dir in LEASE_DIRS {
        deprovision::remove_matching(root, Path::new(dir), |_| true, &mut r);
    }
    for (dir, pattern) in LEASE_GLOBS {
        if dir.starts_with("/run") && !root.is_live() {
            continue;
        }
        deprovision::remove_matching(root, Path::new(dir), |n| deprovision::glob_match(pattern, n), &mut r);
    }
    let lib = config.lib_dir.as_path();
    deprovision::remove_matching(
        root,
        lib,
        |n| PER_VM_FILES.contains(&n) || PER_VM_GLOBS.iter().any(|p| deprovision::glob_match(p, n)),
        &mut r,
    );
    let handlers = crate::extensions::handler::handler_dirs(
        &root.path(lib),
        &root.path(config.extension_log_dir.as_path()),
    );
    for handler in handlers {
        let Some(name) = handler.base().file_name() else { continue };
        let base = lib.join(name);
        deprovision::remove_matching(root, &base.join("status"), |n| n.ends_with(".status"), &mut r);
        deprovision::remove_matching(
            root,
            &base.join("config"),
            |n| n.ends_with(".settings") || n == "HandlerStatus" || n.ends_with(".wala-seq"),
            &mut r,
        );
        deprovision::remove_matching(root, &base, |n| n == "mrseq", &mut r);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_vms_state_goes_and_the_disks_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        let config = Config::default();
        let lib = dir.path().join("var/lib/waagent");
        let handler = lib.join("Microsoft.Azure.Extensions.CustomScript-2.1.6");
        for d in [lib.join("history/1"), handler.join("config"), handler.join("status")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::create_dir_all(dir.path().join("var/lib/dhcp")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("run/systemd/netif/leases")).expect("mkdir");
        let gone = [
            "var/lib/dhcp/dhclient.eth0.leases",
            "var/lib/waagent/GoalState.3.xml",
            "var/lib/waagent/ExtensionsConfig.3.xml",
            "var/lib/waagent/HostingEnvironmentConfig.xml",
            "var/lib/waagent/SharedConfig.xml",
            "var/lib/waagent/WireServerEndpoint",
            "var/lib/waagent/published_hostname",
            "var/lib/waagent/wala-resource-disk-seen",
            "var/lib/waagent/wala-network-setup.env",
            "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.6/mrseq",
            "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.6/config/0.settings",
            "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.6/config/HandlerStatus",
            "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.6/config/ext.wala-seq",
            "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.6/status/0.status",
        ];
        let kept = [
            "var/lib/waagent/provisioned",
            "var/lib/waagent/ovf-env.xml",
            "var/lib/waagent/CustomData",
            "var/lib/waagent/TransportCert.pem",
            "var/lib/waagent/0123ABCD.crt",
            "var/lib/waagent/0123ABCD.prv",
            "var/lib/waagent/wala-provisioning.json",
            "var/lib/waagent/history/1/GoalState.1.xml",
            "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.6/HandlerManifest.json",
            "var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.6/config/HandlerState",
            // Under another root, the running system's /run is not this disk's.
            "run/systemd/netif/leases/2",
        ];
        for f in gone.iter().chain(kept.iter()) {
            std::fs::write(dir.path().join(f), "x").expect("write");
        }
        let report = forget_previous_vm(&root, &config);
        assert!(report.ok(), "{:?}", report.failures);
        for f in gone {
            assert!(!dir.path().join(f).exists(), "{f} removed");
        }
        for f in kept {
            assert!(dir.path().join(f).exists(), "{f} kept");
        }
        assert_eq!(report.removed.len(), gone.len(), "{:?}", report.removed);
        assert!(report.removed.contains(&"/var/lib/waagent/GoalState.3.xml".into()));
        // A second run finds nothing more to do.
        assert!(forget_previous_vm(&root, &config).removed.is_empty());
    }
}
