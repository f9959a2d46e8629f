//! Helpers for the library's own unit tests.

/// Say that a test (or part of one) was skipped and why: on stderr, and appended to the file named
/// by `WALA_SKIP_LOG` so that `scripts/test.sh` lists every skip in its summary.
pub fn skip(message: &str) {
    eprintln!("SKIP {message}");
    if let Some(path) = std::env::var_os("WALA_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "SKIP {message}");
        }
    }
}

/// A fake root laid out as a distribution family's images are, for the facts wala detects
/// ([`crate::base::distro::OsFacts`]): os-release, sshd's unit file, the SELinux config and selinuxfs,
/// the cgroup hierarchy the kernel shows, and the files the family's tools read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeOs {
    /// Debian 12: `ssh.service` under `/lib`, no SELinux, cgroup v2.
    Debian12,
    /// Ubuntu 24.04: `ssh.service`, no SELinux (AppArmor), cgroup v2.
    Ubuntu2404,
    /// RHEL 9: `sshd.service` under `/usr/lib`, SELinux enforcing, cgroup v2.
    Rhel9,
    /// RHEL 8: as RHEL 9, but cgroup v1.
    Rhel8,
    /// Azure Linux 3: `sshd.service`, SELinux configured off, cgroup v2.
    AzureLinux3,
    /// SLES 15: `sshd.service`, no SELinux (AppArmor), cgroup hybrid (v2 only under `unified/`),
    /// wicked's `/etc/sysconfig/network/dhcp`.
    Sles15,
}

impl FakeOs {
    pub const ALL: [FakeOs; 6] =
        [Self::Debian12, Self::Ubuntu2404, Self::Rhel9, Self::Rhel8, Self::AzureLinux3, Self::Sles15];

    /// Lay the files out under `dir` and return the root.
    pub fn build(self, dir: &std::path::Path) -> crate::base::root::HostRoot {
        let put = |rel: &str, text: &str| {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        let (os_release, unit) = match self {
            Self::Debian12 => (
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
                "lib/systemd/system/ssh.service",
            ),
            Self::Ubuntu2404 => (
                "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\n",
                "usr/lib/systemd/system/ssh.service",
            ),
            Self::Rhel9 => (
                "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"9.4 (Plow)\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"9.4\"\n",
                "usr/lib/systemd/system/sshd.service",
            ),
            Self::Rhel8 => (
                "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"8.10 (Ootpa)\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"8.10\"\n",
                "usr/lib/systemd/system/sshd.service",
            ),
            Self::AzureLinux3 => (
                "NAME=\"Microsoft Azure Linux\"\nVERSION=\"3.0.20240824\"\nID=azurelinux\nVERSION_ID=\"3.0\"\n",
                "usr/lib/systemd/system/sshd.service",
            ),
            Self::Sles15 => (
                "NAME=\"SLES\"\nVERSION=\"15-SP5\"\nVERSION_ID=\"15.5\"\nID=\"sles\"\nID_LIKE=\"suse\"\n",
                "usr/lib/systemd/system/sshd.service",
            ),
        };
        put("etc/os-release", os_release);
        put(unit, "[Service]\nExecStart=/usr/sbin/sshd -D\n");
        match self {
            Self::Rhel9 | Self::Rhel8 => {
                put(
                    "etc/selinux/config",
                    "# This file controls the state of SELinux\nSELINUX=enforcing\nSELINUXTYPE=targeted\n",
                );
                put("sys/fs/selinux/enforce", "1");
            }
            Self::AzureLinux3 => put("etc/selinux/config", "SELINUX=disabled\nSELINUXTYPE=targeted\n"),
            _ => {}
        }
        match self {
            Self::Rhel8 => put("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n"),
            Self::Sles15 => {
                put("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
                put("sys/fs/cgroup/unified/cgroup.controllers", "");
            }
            _ => put("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n"),
        }
        if self == Self::Sles15 {
            put(
                "etc/sysconfig/network/dhcp",
                "## Type: string\n# Specifies the hostname option field when DHCPv4 client sends messages.\nDHCLIENT_HOSTNAME_OPTION=\"AUTO\"\nDHCLIENT_SET_HOSTNAME=\"no\"\n",
            );
        }
        crate::base::root::HostRoot::new(dir)
    }
}
