//! What the platform may call a handler, a handler version and a multi-config extension, and the
//! one way a path is built from such a name ([`join_under`]).
//!
//! These strings come from ExtensionsConfig or vmSettings and end up as directory and file names
//! (`<Lib.Dir>/<Name>-<Version>/`, `<Lib.Dir>/<Name>__<Version>.zip`, `<Extension.LogDir>/<Name>/`,
//! `config/<ext>.<seq>.settings`, `status/<ext>.<seq>.status`) and in the environment of the
//! handler's commands. waagent uses them unchecked; wala accepts only what the platform actually
//! sends, and a goal state naming a handler otherwise fails that handler alone (its status says
//! which plugin and which field), before anything touches the disk.
//!
//! * Handler name: `<Publisher>.<Type>`, e.g. `Microsoft.Azure.Extensions.CustomScript`,
//!   `Microsoft.OSTCExtensions.VMAccessForLinux`: two or more parts separated by single dots,
//!   each made of ASCII letters, digits, `_` and `-` and starting with a letter or a digit; at
//!   most [`MAX_HANDLER_NAME`] characters.
//! * Version: dotted decimal numbers, e.g. `2.1.6`, `1.5.11`, `1.0` (a requested version may be
//!   a prefix); at most [`MAX_VERSION`] characters, nothing around it.
//! * Extension name (multi-config, ARM's run-command names): ASCII letters, digits, `.`, `_`
//!   and `-`, not starting with `.`; at most [`MAX_EXTENSION_NAME`] characters, e.g. `MCExt1`,
//!   `firstRunCommand`.

use std::path::{Component, Path, PathBuf};

use crate::documents::extensions::FlexibleVersion;

/// Longest handler name accepted.
pub const MAX_HANDLER_NAME: usize = 128;
/// Longest version accepted.
pub const MAX_VERSION: usize = 64;
/// Longest multi-config extension name accepted.
pub const MAX_EXTENSION_NAME: usize = 128;

/// A name that cannot be used, or a path part that would leave its directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is refused: {why}")]
pub struct NameError {
    /// `handler name`, `version`, `extension name` or `path part`.
    pub what: &'static str,
    /// The refused value, cut to 80 characters (shown with Rust's escapes).
    pub value: String,
    pub why: String,
}

fn refuse(what: &'static str, value: &str, why: impl Into<String>) -> NameError {
    NameError { what, value: super::excerpt(value), why: why.into() }
}

/// The first character of `text` not in `allowed`, described for an error.
fn bad_char(text: &str, allowed: impl Fn(char) -> bool) -> Option<String> {
    text.chars().find(|c| !allowed(*c)).map(|c| format!("{c:?} is not allowed"))
}

/// Check a handler name (`<Publisher>.<Type>`).
pub fn check_handler_name(name: &str) -> Result<(), NameError> {
    const RULE: &str = "a handler name is <Publisher>.<Type>: dot-separated parts of ASCII letters, digits, '_' and '-', each starting with a letter or digit";
    let what = "handler name";
    if name.is_empty() {
        return Err(refuse(what, name, "it is empty"));
    }
    if name.len() > MAX_HANDLER_NAME {
        return Err(refuse(what, name, format!("longer than {MAX_HANDLER_NAME} characters")));
    }
    if let Some(c) = bad_char(name, |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(refuse(what, name, format!("{c} ({RULE})")));
    }
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() < 2 {
        return Err(refuse(what, name, format!("no '.' ({RULE})")));
    }
    if parts.iter().any(|p| !p.starts_with(|c: char| c.is_ascii_alphanumeric())) {
        return Err(refuse(what, name, format!("a part is empty or starts with '_' or '-' ({RULE})")));
    }
    Ok(())
}

/// Check a version (`2.1.6`, or a requested prefix such as `1.0`).
pub fn check_version(version: &str) -> Result<(), NameError> {
    let what = "version";
    if version.len() > MAX_VERSION {
        return Err(refuse(what, version, format!("longer than {MAX_VERSION} characters")));
    }
    if version.trim() != version {
        return Err(refuse(what, version, "white space around it"));
    }
    FlexibleVersion::parse(version).map(|_| ()).map_err(|why| refuse(what, version, why))
}

/// Check a multi-config extension name.
pub fn check_extension_name(name: &str) -> Result<(), NameError> {
    let what = "extension name";
    if name.is_empty() {
        return Err(refuse(what, name, "it is empty"));
    }
    if name.len() > MAX_EXTENSION_NAME {
        return Err(refuse(what, name, format!("longer than {MAX_EXTENSION_NAME} characters")));
    }
    if let Some(c) = bad_char(name, |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(refuse(what, name, format!("{c} (only ASCII letters, digits, '.', '_' and '-')")));
    }
    if name.starts_with('.') {
        return Err(refuse(what, name, "it starts with '.'"));
    }
    Ok(())
}

/// `dir/leaf`, where `leaf` must be exactly one ordinary path component: not empty, not `.` or
/// `..`, no `/`, no NUL. The result is therefore always directly inside `dir`. Every path wala
/// builds from a name the platform gave goes through here.
pub fn join_under(dir: &Path, leaf: &str) -> Result<PathBuf, NameError> {
    let what = "path part";
    if leaf.contains('\0') {
        return Err(refuse(what, leaf, "NUL in the name"));
    }
    if leaf.contains('/') {
        return Err(refuse(what, leaf, "'/' in the name"));
    }
    let mut parts = Path::new(leaf).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(n)), None) if n == leaf => Ok(dir.join(leaf)),
        _ => Err(refuse(what, leaf, format!("not a file name inside {}", dir.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every handler name, version and multi-config extension name in the real documents under
    /// the team's fixtures (ExtensionsConfig, vmSettings), as a sample of what the platform sends.
    #[test]
    fn the_names_the_platform_sends_are_accepted() {
        for name in [
            "Microsoft.Azure.Extensions.CustomScript",
            "Microsoft.OSTCExtensions.VMAccessForLinux",
            "Microsoft.OSTCExtensions.Edp.VMAccessForLinux",
            "Microsoft.Azure.AzureDefenderForServers.MDE.Linux",
            "Microsoft.Azure.Security.AntimalwareSignature.AntimalwareConfiguration",
            "Microsoft.Azure.Monitor.WorkloadInsights.Test.Workload.LinuxConfigAgent",
            "Microsoft.CPlat.Core.RunCommandHandlerLinux",
            "OSTCExtensions.ExampleHandlerLinux",
            "Pub.Monitor-Agent",
            "Wala.Test_Ext.A1",
        ] {
            assert_eq!(check_handler_name(name), Ok(()), "{name}");
        }
        for v in ["2.1.6", "1.5.11", "1.0", "1.0.4.7", "2.20.0.1", "9.9.9.9", "0"] {
            assert_eq!(check_version(v), Ok(()), "{v}");
        }
        for e in ["MCExt1", "firstRunCommand", "shouldFailAsInvalid", "my-run_cmd.2", "a"] {
            assert_eq!(check_extension_name(e), Ok(()), "{e}");
        }
    }

    #[test]
    fn hostile_and_malformed_names_are_refused_with_the_reason() {
        for name in [
            "../../../../ESCAPED.Ext",
            "../../../../victim",
            "X;id>INJECTED;#",
            "Pub.Ext/../../x",
            "Pub.Ext$(id)",
            "Pub.Ext`id`",
            "Pub Ext.A",
            "Pub.Ext\n",
            "Pub.Ext\0",
            "NoDot",
            ".Pub.Ext",
            "Pub..Ext",
            "Pub.Ext.",
            "-Pub.Ext",
            "Pub._Ext",
            "",
            "Pub.Ëxt",
        ] {
            let err = check_handler_name(name).expect_err(name);
            assert_eq!(err.what, "handler name");
            assert!(err.to_string().starts_with("handler name "), "{err}");
        }
        assert!(check_handler_name(&format!("P.{}", "x".repeat(MAX_HANDLER_NAME))).is_err());
        let err = check_handler_name("X;id>INJECTED;#").unwrap_err().to_string();
        assert!(err.contains("';' is not allowed"), "{err}");

        for v in ["", " 1.0", "1.0 ", "1..0", "1.0.", "1.0;id", "../1", "1.0-beta", "1/0", &"1.".repeat(40)] {
            assert!(check_version(v).is_err(), "{v:?}");
        }
        for e in ["", ".", "..", ".hidden", "a/b", "../x", "a b", "a;b", "ä", &"e".repeat(129)] {
            assert!(check_extension_name(e).is_err(), "{e:?}");
        }
    }

    #[test]
    fn join_under_keeps_a_path_directly_inside_its_directory() {
        let dir = Path::new("/var/lib/waagent");
        assert_eq!(
            join_under(dir, "Microsoft.Azure.Extensions.CustomScript-2.1.6").unwrap(),
            Path::new("/var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.6")
        );
        assert_eq!(join_under(dir, "...").unwrap(), Path::new("/var/lib/waagent/..."));
        for leaf in ["", ".", "..", "../x", "a/b", "/etc", "a\0b", "./a"] {
            let err = join_under(dir, leaf).expect_err(leaf);
            assert_eq!(err.what, "path part", "{leaf:?}");
        }
    }
}
