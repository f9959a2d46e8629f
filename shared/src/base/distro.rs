//! Which distribution this is, from `/etc/os-release` (or `/usr/lib/os-release`), and the few
//! facts about the host that differ between distribution families and matter to what wala touches
//! ([`OsFacts`]). Each fact is found by looking at the machine (a unit file, a config file, a
//! mounted file system), not looked up in a table of distribution names: a derivative or a new
//! release behaves as the files on it say. `docs/distributions.md` has the table.

use std::path::Path;

use crate::base::root::HostRoot;

/// `ID` and `VERSION_ID` of os-release.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Distro {
    pub id: String,
    pub version_id: String,
}

impl Distro {
    /// Read os-release under `root`; unknown fields are empty.
    pub fn detect(root: &HostRoot) -> Self {
        os_release(root).map(|text| Self::parse(&text)).unwrap_or_default()
    }

    /// Parse os-release text (shell-style `KEY=value`, optionally quoted).
    pub fn parse(text: &str) -> Self {
        Self {
            id: field(text, "ID").unwrap_or_default(),
            version_id: field(text, "VERSION_ID").unwrap_or_default(),
        }
    }
}

/// The text of `<root>/etc/os-release`, else `<root>/usr/lib/os-release`.
fn os_release(root: &HostRoot) -> Option<String> {
    ["/etc/os-release", "/usr/lib/os-release"].iter().find_map(|p| std::fs::read_to_string(root.path(p)).ok())
}

/// The value of `key` in os-release text (the last assignment wins, as in the shell), unquoted.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .next_back()
}

/// The distribution families Azure's Linux images come in. Only named in logs and docs: wala's
/// decisions follow [`OsFacts`], found on the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Debian and Ubuntu (`ID_LIKE=debian`).
    Debian,
    /// RHEL, its rebuilds, Fedora, Azure Linux and CBL-Mariner.
    RedHat,
    /// SLES and openSUSE (`ID_LIKE` has `suse`).
    Suse,
    Other,
}

impl Family {
    /// From os-release's `ID`, then each `ID_LIKE` entry in order (`ID=rocky`,
    /// `ID_LIKE="rhel centos fedora"`).
    pub fn parse(os_release: &str) -> Self {
        let id = field(os_release, "ID").unwrap_or_default();
        let like = field(os_release, "ID_LIKE").unwrap_or_default();
        std::iter::once(id.as_str())
            .chain(like.split_whitespace())
            .map(Self::of_id)
            .find(|f| *f != Self::Other)
            .unwrap_or(Self::Other)
    }

    /// The family of the distribution under `root`.
    pub fn detect(root: &HostRoot) -> Self {
        os_release(root).map_or(Self::Other, |text| Self::parse(&text))
    }

    fn of_id(id: &str) -> Self {
        match id {
            "debian" | "ubuntu" => Self::Debian,
            "rhel" | "fedora" | "centos" | "almalinux" | "rocky" | "ol" | "azurelinux" | "mariner" => {
                Self::RedHat
            }
            "suse" | "sles" | "sle-micro" | "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => {
                Self::Suse
            }
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debian => "debian",
            Self::RedHat => "rhel",
            Self::Suse => "suse",
            Self::Other => "other",
        }
    }
}

/// Where unit files are looked for, in systemd's order of precedence.
const UNIT_DIRS: [&str; 3] = ["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

/// What differs between distributions, as found under a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsFacts {
    /// For the log line only.
    pub family: Family,
    /// sshd's unit: `ssh.service` (Debian, Ubuntu) or `sshd.service` (RHEL-likes, Azure Linux,
    /// SUSE), whichever unit file exists; `sshd.service` when neither does.
    pub sshd_unit: &'static str,
    /// SELinux is on now: the root's `/etc/selinux/config` says `enforcing` or `permissive`, and
    /// the running kernel has `selinuxfs` mounted (`/sys/fs/selinux/enforce`). Files wala writes
    /// then get their policy labels back with `restorecon` ([`crate::host::selinux`]).
    pub selinux: bool,
    /// The running kernel has the unified cgroup hierarchy (`/sys/fs/cgroup/cgroup.controllers`):
    /// v2 (Debian 12, Ubuntu 22.04+, RHEL 9, Azure Linux 3), else v1 or hybrid (RHEL 8, SLES 15).
    /// For the log only: extensions' limits go through systemd, which applies `MemoryMax=` as the
    /// v1 memory limit and `CPUQuota=` on both.
    pub cgroup_v2: bool,
}

impl OsFacts {
    /// Look at `root` (and at the running kernel's file systems, [`HostRoot::kernel`]).
    pub fn detect(root: &HostRoot) -> Self {
        let kernel = root.kernel();
        Self {
            family: Family::detect(root),
            sshd_unit: sshd_unit(root),
            selinux: selinux_configured(root) && kernel.path("/sys/fs/selinux/enforce").exists(),
            cgroup_v2: kernel.path("/sys/fs/cgroup/cgroup.controllers").exists(),
        }
    }

    /// One line for the log: what was found.
    pub fn summary(&self) -> String {
        format!(
            "family {}, sshd unit {}, SELinux {}, cgroup {}",
            self.family.as_str(),
            self.sshd_unit,
            if self.selinux { "on" } else { "off" },
            if self.cgroup_v2 { "v2" } else { "v1" }
        )
    }
}

/// `ssh.service` or `sshd.service`, whichever unit file exists under `root`.
pub fn sshd_unit(root: &HostRoot) -> &'static str {
    ["ssh.service", "sshd.service"]
        .into_iter()
        .find(|u| UNIT_DIRS.iter().any(|d| root.path(Path::new(d).join(u)).exists()))
        .unwrap_or("sshd.service")
}

/// Whether `<root>/etc/selinux/config` asks for SELinux (`SELINUX=enforcing` or `permissive`).
pub fn selinux_configured(root: &HostRoot) -> bool {
    let Ok(text) = std::fs::read_to_string(root.path("/etc/selinux/config")) else { return false };
    text.lines().filter_map(|l| l.trim().strip_prefix("SELINUX=")).any(|v| {
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
        v == "enforcing" || v == "permissive"
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_and_unquoted() {
        let d =
            Distro::parse("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!(d, Distro { id: "debian".into(), version_id: "12".into() });
    }

    #[test]
    fn the_family_comes_from_id_then_id_like() {
        for (text, family) in [
            ("ID=debian\nVERSION_ID=\"12\"\n", Family::Debian),
            ("ID=ubuntu\nID_LIKE=debian\n", Family::Debian),
            ("ID=\"rhel\"\nID_LIKE=\"fedora\"\n", Family::RedHat),
            ("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", Family::RedHat),
            ("ID=\"ol\"\nID_LIKE=\"fedora\"\n", Family::RedHat),
            ("ID=azurelinux\nVERSION_ID=\"3.0\"\n", Family::RedHat),
            ("ID=mariner\nVERSION_ID=\"2.0\"\n", Family::RedHat),
            ("ID=\"sles\"\nID_LIKE=\"suse\"\n", Family::Suse),
            ("ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n", Family::Suse),
            // A derivative unknown by its ID is known by what it is like.
            ("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", Family::Debian),
            ("ID=someos\nID_LIKE=\"suse\"\n", Family::Suse),
            ("ID=alpine\n", Family::Other),
            ("", Family::Other),
        ] {
            assert_eq!(Family::parse(text), family, "{text:?}");
        }
    }

    #[test]
    fn facts_follow_the_files_of_each_family() {
        use crate::base::testing::FakeOs;
        for (os, family, sshd, selinux, v2) in [
            (FakeOs::Debian12, Family::Debian, "ssh.service", false, true),
            (FakeOs::Ubuntu2404, Family::Debian, "ssh.service", false, true),
            (FakeOs::Rhel9, Family::RedHat, "sshd.service", true, true),
            (FakeOs::Rhel8, Family::RedHat, "sshd.service", true, false),
            (FakeOs::AzureLinux3, Family::RedHat, "sshd.service", false, true),
            (FakeOs::Sles15, Family::Suse, "sshd.service", false, false),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let facts = OsFacts::detect(&os.build(dir.path()));
            assert_eq!(
                facts,
                OsFacts { family, sshd_unit: sshd, selinux, cgroup_v2: v2 },
                "{os:?}: {}",
                facts.summary()
            );
        }
    }

    #[test]
    fn selinux_needs_both_the_config_and_the_running_kernel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = crate::base::testing::FakeOs::Rhel9.build(dir.path());
        assert!(OsFacts::detect(&root).selinux);
        // The config asks for it but the kernel runs without (selinux=0 on the command line).
        std::fs::remove_file(dir.path().join("sys/fs/selinux/enforce")).expect("rm");
        assert!(!OsFacts::detect(&root).selinux);
        for (config, on) in [
            ("SELINUX=permissive\n", true),
            ("SELINUX=\"enforcing\"\n", true),
            ("SELINUX=disabled\n", false),
            ("#SELINUX=enforcing\nSELINUX=disabled\n", false),
            ("SELINUXTYPE=targeted\n", false),
        ] {
            std::fs::write(dir.path().join("etc/selinux/config"), config).expect("write");
            assert_eq!(selinux_configured(&root), on, "{config:?}");
        }
    }

    #[test]
    fn an_sshd_unit_in_etc_counts_and_none_means_sshd_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot::new(dir.path());
        assert_eq!(sshd_unit(&root), "sshd.service");
        std::fs::create_dir_all(dir.path().join("etc/systemd/system")).expect("mkdir");
        std::fs::write(dir.path().join("etc/systemd/system/ssh.service"), "").expect("write");
        assert_eq!(sshd_unit(&root), "ssh.service");
    }
}
