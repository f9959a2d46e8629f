//! Which distribution this is, from `/etc/os-release` (or `/usr/lib/os-release`).

use crate::root::HostRoot;

/// `ID` and `VERSION_ID` of os-release.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Distro {
    pub id: String,
    pub version_id: String,
}

impl Distro {
    /// Read os-release under `root`; unknown fields are empty.
    pub fn detect(root: &HostRoot) -> Self {
        ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| std::fs::read_to_string(root.path(p)).ok())
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    /// Parse os-release text (shell-style `KEY=value`, optionally quoted).
    pub fn parse(text: &str) -> Self {
        let mut d = Self::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
            match k.trim() {
                "ID" => d.id = v,
                "VERSION_ID" => d.version_id = v,
                _ => {}
            }
        }
        d
    }
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
}
