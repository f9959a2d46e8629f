//! The VM's hostname: `/etc/hostname`, the `/etc/hosts` entry, and on the live root the kernel's.
//! Where wicked (SUSE) runs DHCP, also the setting that makes it send the current hostname.
//! [`publish`] sends a new hostname to the platform DNS through a DHCP request (the daemon's
//! hostname monitor, and the pps provisioning stage after a pool VM took its user's hostname).

use std::path::Path;
use std::time::Duration;

use crate::base::cmd::{Cmd, Runner};

use crate::base::files::{self, FileError, WriteOptions};
use crate::base::root::HostRoot;

#[derive(Debug, thiserror::Error)]
pub enum HostnameError {
    #[error("invalid hostname {name:?}: {why}")]
    Invalid { name: String, why: &'static str },
    #[error("cannot set the kernel hostname to {name}: {source}")]
    Kernel {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] FileError),
}

/// Linux's limit on the kernel hostname.
pub const HOST_NAME_MAX: usize = 64;

/// Check a hostname: dot-separated labels of letters, digits and inner hyphens (RFC 1123), at
/// most 63 characters a label and [`HOST_NAME_MAX`] in all.
pub fn validate(name: &str) -> Result<(), HostnameError> {
    let invalid = |why| Err(HostnameError::Invalid { name: name.into(), why });
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > HOST_NAME_MAX {
        return invalid("it is longer than 64 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return invalid("a label is empty or longer than 63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return invalid("a label starts or ends with '-'");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return invalid("only letters, digits, '-' and '.' are allowed");
        }
    }
    Ok(())
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostnameChange {
    pub etc_hostname: bool,
    pub etc_hosts: bool,
    pub kernel: bool,
}

/// Set the hostname under `root`; on the live root also the kernel's.
pub fn set_hostname(root: &HostRoot, name: &str) -> Result<HostnameChange, HostnameError> {
    validate(name)?;
    let mut change = HostnameChange::default();
    let path = root.path("/etc/hostname");
    let wanted = format!("{name}\n");
    if files::read_optional(&path)?.as_deref().map(str::trim) != Some(name) {
        files::write_atomic(&path, wanted.as_bytes(), WriteOptions::mode(0o644))?;
        change.etc_hostname = true;
    }
    change.etc_hosts = set_hosts_entry(&root.path("/etc/hosts"), name)?;
    if wicked_sends_current_hostname(root)? {
        log::info!("{WICKED_DHCP}: {WICKED_OPTION}=\"AUTO\" (send the current hostname)");
    }
    if root.is_live() && kernel_hostname().as_deref() != Some(name) {
        // SAFETY: the pointer and length describe a valid byte buffer for the call's duration.
        let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
        if rc != 0 {
            return Err(HostnameError::Kernel { name: name.into(), source: std::io::Error::last_os_error() });
        }
        change.kernel = true;
    }
    Ok(change)
}

/// wicked's DHCP settings (SUSE).
const WICKED_DHCP: &str = "/etc/sysconfig/network/dhcp";
/// The hostname wicked's DHCP client sends: `AUTO` is the current one, an empty value none,
/// anything else that name.
const WICKED_OPTION: &str = "DHCLIENT_HOSTNAME_OPTION";

/// Where `<root>/etc/sysconfig/network/dhcp` exists (wicked), make `DHCLIENT_HOSTNAME_OPTION`
/// `"AUTO"`, so the DHCP request carries the hostname set here and not a name fixed in the image
/// (waagent writes the name itself; `AUTO` also follows later changes). Every other line is kept
/// as it is. Returns whether the file changed.
fn wicked_sends_current_hostname(root: &HostRoot) -> Result<bool, FileError> {
    let path = root.path(WICKED_DHCP);
    let Some(text) = files::read_optional(&path)? else { return Ok(false) };
    let wanted = format!("{WICKED_OPTION}=\"AUTO\"");
    let mut found = false;
    let mut out = String::with_capacity(text.len() + wanted.len() + 1);
    for line in text.split_inclusive('\n') {
        let (body, newline) = line.strip_suffix('\n').map_or((line, ""), |b| (b, "\n"));
        match body.trim_start().strip_prefix(WICKED_OPTION).and_then(|r| r.strip_prefix('=')) {
            Some(value) => {
                found = true;
                if value.trim().trim_matches(|c| c == '"' || c == '\'') == "AUTO" {
                    out.push_str(line);
                } else {
                    out.push_str(&wanted);
                    out.push_str(newline);
                }
            }
            None => out.push_str(line),
        }
    }
    if !found {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&wanted);
        out.push('\n');
    }
    if out == text {
        return Ok(false);
    }
    let (mode, uid, gid) = files::mode_and_owner(&path)?;
    files::write_atomic(&path, out.as_bytes(), WriteOptions::mode(mode).owned_by(uid, gid))?;
    Ok(true)
}

/// The running kernel's hostname.
pub fn kernel_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string())
}

/// Make `/etc/hosts` map 127.0.1.1 to `name` (the Debian convention that lets the host resolve its
/// own name without DNS): an existing 127.0.1.1 line is replaced, otherwise one is added.
fn set_hosts_entry(path: &Path, name: &str) -> Result<bool, FileError> {
    let text = files::read_optional(path)?.unwrap_or_else(|| "127.0.0.1\tlocalhost\n".into());
    let short = name.split('.').next().unwrap_or(name);
    let entry =
        if short == name { format!("127.0.1.1\t{name}") } else { format!("127.0.1.1\t{name} {short}") };
    let mut lines: Vec<String> = Vec::new();
    let mut placed = false;
    for line in text.lines() {
        if line.split_whitespace().next() == Some("127.0.1.1") {
            if !placed {
                lines.push(entry.clone());
                placed = true;
            }
        } else {
            lines.push(line.to_string());
        }
    }
    if !placed {
        lines.push(entry);
    }
    let out = lines.join("\n") + "\n";
    if out == text {
        return Ok(false);
    }
    let mode = files::mode_and_owner(path).map(|m| m.0).unwrap_or(0o644);
    files::write_atomic(path, out.as_bytes(), WriteOptions::mode(mode))?;
    Ok(true)
}

/// Renew the DHCP lease of the primary interface so the new hostname reaches the platform DNS:
/// in place where the client can (systemd-networkd, NetworkManager, wicked); with dhclient or
/// dhcpcd under ifupdown (Debian 13's ifupdown runs dhcpcd), which cannot, by taking the
/// interface down and up as waagent does. Failures are logged.
pub fn publish(root: &HostRoot, runner: &dyn Runner) {
    let Some(iface) = primary_interface(root) else {
        log::warn!("cannot publish the hostname: no default route");
        return;
    };
    let timeout = Duration::from_secs(30);
    let dhcp_under_ifupdown = (process_running(root, "dhclient") || process_running(root, "dhcpcd"))
        && runner.exists("ifdown")
        && runner.exists("ifup");
    let cmds = if runner.exists("networkctl") && is_active(runner, "systemd-networkd.service") {
        vec![Cmd::new("networkctl").args(["renew", &iface])]
    } else if runner.exists("nmcli") && is_active(runner, "NetworkManager.service") {
        vec![Cmd::new("nmcli").args(["device", "reapply", &iface])]
    } else if dhcp_under_ifupdown {
        let logical = ifupdown_logical(runner, &iface);
        vec![Cmd::new("ifdown").arg(&iface), Cmd::new("ifup").arg(logical)]
    } else if runner.exists("wicked") && is_active(runner, "wickedd.service") {
        // SUSE: `ifup` on a configured interface makes wicked's DHCP client ask again, with the
        // hostname DHCLIENT_HOSTNAME_OPTION names (AUTO, see above): no link bounce.
        vec![Cmd::new("wicked").args(["ifup", &iface])]
    } else {
        log::warn!(
            "cannot publish the hostname: no systemd-networkd, NetworkManager, dhclient or dhcpcd with ifupdown, or wicked"
        );
        return;
    };
    for cmd in cmds {
        if let Err(e) = runner.run(&cmd.timeout(timeout)) {
            log::warn!("publishing the hostname failed: {e}");
            return;
        }
    }
    log::info!("published the hostname through a DHCP request on {iface}");
}

/// The `iface=logical` spec `ifup` needs for `iface` when /etc/network/interfaces maps it to a
/// logical interface (`auto /en*=wala`): `ifquery --state` prints it while the interface is up.
/// Plain `iface` when ifquery is missing, fails or prints nothing.
fn ifupdown_logical(runner: &dyn Runner, iface: &str) -> String {
    if !runner.exists("ifquery") {
        return iface.to_string();
    }
    let query = Cmd::new("ifquery").args(["--state", iface]).timeout(Duration::from_secs(30));
    match runner.output(&query) {
        Ok(out) if out.success() => out
            .stdout_str()
            .lines()
            .map(str::trim)
            .find(|l| l.split_once('=').is_some_and(|(name, logical)| name == iface && !logical.is_empty()))
            .map_or_else(|| iface.to_string(), str::to_string),
        _ => iface.to_string(),
    }
}

/// Whether a process named `name` runs (from `/proc/<pid>/comm`).
fn process_running(root: &HostRoot, name: &str) -> bool {
    std::fs::read_dir(root.kernel().path("/proc")).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                && std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name)
        })
    })
}

fn is_active(runner: &dyn Runner, unit: &str) -> bool {
    runner.output(&Cmd::new("systemctl").args(["is-active", "--quiet", unit])).is_ok_and(|o| o.success())
}

/// The interface of the default route with the lowest metric, from `/proc/net/route`.
pub fn primary_interface(root: &HostRoot) -> Option<String> {
    let table = std::fs::read_to_string(root.path("/proc/net/route")).ok()?;
    parse_default_interface(&table)
}

/// The default-route interface in a `/proc/net/route` table.
pub fn parse_default_interface(table: &str) -> Option<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let metric = f.get(6)?.parse::<u32>().ok()?;
            (f.get(1) == Some(&"00000000") && flags & 0x2 != 0).then(|| (metric, f[0].to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for good in ["vm1", "my-vm.example.com", "A1", &"a".repeat(63)] {
            assert!(validate(good).is_ok(), "{good}");
        }
        for bad in ["", "-vm", "vm-", "vm_1", "a..b", "vm 1", &"a".repeat(65), "héllo"] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn files_under_a_root_are_written_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(dir.path().join("etc/hosts"), "127.0.0.1\tlocalhost\n127.0.1.1\told\n::1 localhost\n")
            .expect("write");
        let c = set_hostname(&root, "vm1.contoso.com").expect("set");
        assert_eq!(c, HostnameChange { etc_hostname: true, etc_hosts: true, kernel: false });
        assert_eq!(std::fs::read_to_string(dir.path().join("etc/hostname")).unwrap(), "vm1.contoso.com\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/hosts")).unwrap(),
            "127.0.0.1\tlocalhost\n127.0.1.1\tvm1.contoso.com vm1\n::1 localhost\n"
        );
        assert_eq!(set_hostname(&root, "vm1.contoso.com").unwrap(), HostnameChange::default());
    }

    #[test]
    fn wicked_is_told_to_send_the_current_hostname() {
        use crate::base::testing::FakeOs;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = FakeOs::Sles15.build(dir.path());
        let dhcp = dir.path().join("etc/sysconfig/network/dhcp");
        let shipped = std::fs::read_to_string(&dhcp).expect("read");
        // SLES's own AUTO: left as it is.
        set_hostname(&root, "vm1").expect("set");
        assert_eq!(std::fs::read_to_string(&dhcp).expect("read"), shipped);
        // An image captured with its build host's name fixed there: the new name would never be sent.
        std::fs::write(
            &dhcp,
            "## Type: string\nDHCLIENT_HOSTNAME_OPTION=\"imagebuilder\"\nDHCLIENT_SET_HOSTNAME=\"no\"\n",
        )
        .expect("write");
        set_hostname(&root, "vm1").expect("set");
        assert_eq!(
            std::fs::read_to_string(&dhcp).expect("read"),
            "## Type: string\nDHCLIENT_HOSTNAME_OPTION=\"AUTO\"\nDHCLIENT_SET_HOSTNAME=\"no\"\n"
        );
        // No line at all: one is added; then nothing changes.
        std::fs::write(&dhcp, "DHCLIENT_SET_HOSTNAME=\"no\"").expect("write");
        set_hostname(&root, "vm2").expect("set");
        let text = std::fs::read_to_string(&dhcp).expect("read");
        assert_eq!(text, "DHCLIENT_SET_HOSTNAME=\"no\"\nDHCLIENT_HOSTNAME_OPTION=\"AUTO\"\n");
        assert!(!wicked_sends_current_hostname(&root).expect("again"));
    }

    #[test]
    fn without_wicked_no_dhcp_file_is_made() {
        use crate::base::testing::FakeOs;
        for os in [FakeOs::Debian12, FakeOs::Ubuntu2404, FakeOs::Rhel9, FakeOs::AzureLinux3] {
            let dir = tempfile::tempdir().expect("tempdir");
            let root = os.build(dir.path());
            set_hostname(&root, "vm1").expect("set");
            assert!(!dir.path().join("etc/sysconfig/network/dhcp").exists(), "{os:?}");
            assert!(!dir.path().join("etc/sysconfig").exists(), "{os:?}");
        }
    }
    /// A root with a default route on `iface` and one process named `dhcp_client`.
    fn ifupdown_root(iface: &str, dhcp_client: &str) -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("proc/300")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("proc/net")).expect("mkdir");
        std::fs::write(dir.path().join("proc/300/comm"), format!("{dhcp_client}\n")).expect("write");
        std::fs::write(
            dir.path().join("proc/net/route"),
            format!(
                "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                 {iface}\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\n"
            ),
        )
        .expect("write");
        let root = HostRoot::new(dir.path());
        (dir, root)
    }

    #[test]
    fn dhcpcd_under_ifupdown_is_treated_as_dhclient() {
        // Debian 13: ifupdown runs dhcpcd.
        let (_dir, root) = ifupdown_root("eth0", "dhcpcd");
        let runner = crate::base::cmd::FakeRunner::new();
        runner.without("networkctl").without("nmcli").without("ifquery");
        publish(&root, &runner);
        assert_eq!(runner.command_lines(), ["ifdown eth0", "ifup eth0"]);
    }

    #[test]
    fn a_mapped_logical_interface_is_brought_up_by_its_spec() {
        // /etc/network/interfaces: `auto /en*=wala` then `iface wala inet dhcp`.
        let (_dir, root) = ifupdown_root("ens3", "dhcpcd");
        let runner = crate::base::cmd::FakeRunner::new();
        runner.without("networkctl").without("nmcli");
        let out = crate::base::cmd::CmdOutput {
            code: Some(0),
            stdout: b"ens3=wala\n".to_vec(),
            ..Default::default()
        };
        runner.respond_line("ifquery --state ens3", out);
        publish(&root, &runner);
        assert_eq!(runner.command_lines(), ["ifquery --state ens3", "ifdown ens3", "ifup ens3=wala"]);
    }

    #[test]
    fn a_failing_ifquery_falls_back_to_the_interface() {
        let (_dir, root) = ifupdown_root("ens3", "dhclient");
        let runner = crate::base::cmd::FakeRunner::new();
        runner.without("networkctl").without("nmcli");
        let failed = crate::base::cmd::CmdOutput {
            code: Some(1),
            stdout: b"ens3=wala\n".to_vec(),
            ..Default::default()
        };
        runner.respond_line("ifquery --state ens3", failed);
        publish(&root, &runner);
        assert_eq!(runner.command_lines(), ["ifquery --state ens3", "ifdown ens3", "ifup ens3"]);
    }

    #[test]
    fn without_a_dhcp_client_under_ifupdown_nothing_is_bounced() {
        let (_dir, root) = ifupdown_root("eth0", "sshd");
        let runner = crate::base::cmd::FakeRunner::new();
        runner.without("networkctl").without("nmcli").without("wicked");
        publish(&root, &runner);
        assert!(runner.command_lines().is_empty(), "{:?}", runner.command_lines());
    }
}
