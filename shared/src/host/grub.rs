//! `/etc/default/grub`: idempotent edits of its shell-style variables, and regeneration of
//! `grub.cfg` with the distribution's tool.
//!
//! Used by the serial console set-up (`console=ttyS0…`, `GRUB_TERMINAL`, `GRUB_SERIAL_COMMAND`) and
//! the old-kernel virtual NUMA work-around (`numa=off`). The file is a shell fragment: the last
//! assignment of a variable wins, so edits change the last assignment, or append one when there is
//! none. Comments and every other line are kept as they are.

use std::path::{Path, PathBuf};

use crate::base::cmd::{Cmd, CmdError, Runner};
use crate::base::files::{self, FileError, WriteOptions};
use crate::base::root::HostRoot;

/// Where GRUB's defaults live, as seen on the target system.
pub const DEFAULT_GRUB: &str = "/etc/default/grub";

/// The kernel command line variable wala edits (both Debian and Red Hat families read it).
pub const CMDLINE_VAR: &str = "GRUB_CMDLINE_LINUX";

#[derive(Debug, thiserror::Error)]
pub enum GrubError {
    #[error("{} does not exist: is GRUB the boot loader of this system?", path.display())]
    Missing { path: PathBuf },
    #[error("{}: line {line}: the value of {var} has an unterminated quote; not editing it", path.display())]
    Unparsable { path: PathBuf, line: usize, var: String },
    #[error("cannot regenerate the GRUB configuration: {0}")]
    Regenerate(#[source] CmdError),
    #[error(transparent)]
    File(#[from] FileError),
}

/// A kernel argument to make present in the command line. Existing arguments that `replaces`
/// matches are removed first, so a differently-spelled earlier setting does not linger.
#[derive(Debug, Clone, Copy)]
pub struct KernelArg<'a> {
    /// The argument exactly as wanted, e.g. `console=ttyS0,115200n8`.
    pub value: &'a str,
    /// Arguments to drop in its favour: the exact text, or a prefix ending in `,` or `=`.
    pub replaces: &'a [&'a str],
}

impl KernelArg<'_> {
    fn superseded(&self, arg: &str) -> bool {
        arg != self.value
            && self
                .replaces
                .iter()
                .any(|r| arg == *r || ((r.ends_with(',') || r.ends_with('=')) && arg.starts_with(r)))
    }
}

/// An assignment `NAME=value` found on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Assignment {
    line: usize,
    value: String,
}

/// The last assignment of `var` in `text` (lines like `NAME=…` or `export NAME=…`).
fn last_assignment(text: &str, var: &str) -> Option<Assignment> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| assignment_value(l, var).map(|v| (i, v)))
        .last()
        .map(|(line, value)| Assignment { line, value: value.to_string() })
}

fn assignment_value<'a>(line: &'a str, var: &str) -> Option<&'a str> {
    let t = line.trim_start();
    let t = t.strip_prefix("export ").map(str::trim_start).unwrap_or(t);
    t.strip_prefix(var)?.strip_prefix('=')
}

/// The shell words of a simple quoted value: `"a b"`, `'a b'` or `a`. `None` when a quote is not
/// closed or the value mixes forms wala does not rewrite safely.
fn unquote(value: &str) -> Option<String> {
    let v = value.trim_end();
    for q in ['"', '\''] {
        if let Some(rest) = v.strip_prefix(q) {
            let inner = rest.strip_suffix(q)?;
            return (!inner.contains(q)).then(|| inner.to_string());
        }
    }
    (!v.contains(['"', '\''])).then(|| v.to_string())
}

/// Replace line `index` of `text` with `new_line` (keeping the final newline convention).
fn replace_line(text: &str, index: usize, new_line: &str) -> String {
    let mut out: Vec<&str> = text.lines().collect();
    if let Some(slot) = out.get_mut(index) {
        *slot = new_line;
    }
    out.join("\n") + "\n"
}

fn append_line(text: &str, line: &str) -> String {
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    out
}

/// Set `var` to `value` (written double-quoted). Returns the text unchanged when the last
/// assignment already has that value.
pub fn set_var(text: &str, var: &str, value: &str) -> String {
    let line = format!("{var}=\"{value}\"");
    match last_assignment(text, var) {
        Some(a) if unquote(&a.value).as_deref() == Some(value) => text.to_string(),
        Some(a) => replace_line(text, a.line, &line),
        None => append_line(text, &line),
    }
}

/// Make every argument of `args` present in `var` (the kernel command line), keeping the other
/// arguments in their order. Idempotent: a second run changes nothing.
pub fn add_kernel_args(
    text: &str,
    var: &str,
    args: &[KernelArg<'_>],
    path: &Path,
) -> Result<String, GrubError> {
    let Some(a) = last_assignment(text, var) else {
        let joined: Vec<&str> = args.iter().map(|a| a.value).collect();
        return Ok(append_line(text, &format!("{var}=\"{}\"", joined.join(" "))));
    };
    let Some(current) = unquote(&a.value) else {
        return Err(GrubError::Unparsable { path: path.to_path_buf(), line: a.line + 1, var: var.into() });
    };
    let words: Vec<&str> = current.split_whitespace().collect();
    if args.iter().all(|k| words.contains(&k.value) && !words.iter().any(|w| k.superseded(w))) {
        return Ok(text.to_string());
    }
    let mut kept: Vec<&str> = words.into_iter().filter(|w| !args.iter().any(|k| k.superseded(w))).collect();
    for k in args {
        if !kept.contains(&k.value) {
            kept.push(k.value);
        }
    }
    Ok(replace_line(text, a.line, &format!("{var}=\"{}\"", kept.join(" "))))
}

/// What an edit of `/etc/default/grub` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrubChange {
    /// Whether `/etc/default/grub` was rewritten.
    pub changed: bool,
    /// The command that regenerated `grub.cfg`, when one ran.
    pub regenerated_with: Option<String>,
    /// Why `grub.cfg` was not regenerated, when it was not (a non-live root, no tool found).
    pub not_regenerated: Option<String>,
}

/// Apply `edit` to `<root>/etc/default/grub` (atomically, keeping the file's mode), then regenerate
/// `grub.cfg` when the file changed and the root is the live one.
pub fn edit_defaults(
    root: &HostRoot,
    runner: &dyn Runner,
    edit: impl FnOnce(&str, &Path) -> Result<String, GrubError>,
) -> Result<GrubChange, GrubError> {
    let path = root.path(DEFAULT_GRUB);
    let Some(text) = files::read_optional(&path)? else {
        return Err(GrubError::Missing { path });
    };
    let new = edit(&text, &path)?;
    let mut change = GrubChange::default();
    if new == text {
        return Ok(change);
    }
    let mode = files::mode_and_owner(&path).map(|m| m.0).unwrap_or(0o644);
    files::write_atomic(&path, new.as_bytes(), WriteOptions::mode(mode))?;
    change.changed = true;
    match regenerate_command(root, runner) {
        Err(why) => change.not_regenerated = Some(why),
        Ok(cmd) => {
            runner.run(&cmd).map_err(GrubError::Regenerate)?;
            change.regenerated_with = Some(cmd.to_string());
        }
    }
    Ok(change)
}

/// The distribution's command to regenerate `grub.cfg`: `update-grub` where it exists, else
/// `grub2-mkconfig -o /boot/grub2/grub.cfg` or `grub-mkconfig -o /boot/grub/grub.cfg`. Only on
/// the live root: under another root the tool would write the running system's configuration.
pub fn regenerate_command(root: &HostRoot, runner: &dyn Runner) -> Result<Cmd, String> {
    let hint = "run update-grub (or grub2-mkconfig -o /boot/grub2/grub.cfg) inside the image";
    if !root.is_live() {
        return Err(format!(
            "{} is not the live root: grub.cfg was not regenerated; {hint}",
            root.prefix().display()
        ));
    }
    if runner.exists("update-grub") {
        Ok(Cmd::new("update-grub"))
    } else if runner.exists("grub2-mkconfig") {
        Ok(Cmd::new("grub2-mkconfig").args(["-o", "/boot/grub2/grub.cfg"]))
    } else if runner.exists("grub-mkconfig") {
        Ok(Cmd::new("grub-mkconfig").args(["-o", "/boot/grub/grub.cfg"]))
    } else {
        Err(format!("none of update-grub, grub2-mkconfig, grub-mkconfig was found; {hint}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: KernelArg<'static> =
        KernelArg { value: "console=ttyS0,115200n8", replaces: &["console=ttyS0", "console=ttyS0,"] };

    fn p() -> PathBuf {
        PathBuf::from("/etc/default/grub")
    }

    #[test]
    fn adds_args_keeping_others_and_is_idempotent() {
        let text = "# comment\nGRUB_CMDLINE_LINUX=\"quiet rhgb console=ttyS0\"\nGRUB_TIMEOUT=5\n";
        let once = add_kernel_args(text, CMDLINE_VAR, &[CONSOLE], &p()).unwrap();
        assert_eq!(
            once,
            "# comment\nGRUB_CMDLINE_LINUX=\"quiet rhgb console=ttyS0,115200n8\"\nGRUB_TIMEOUT=5\n"
        );
        assert_eq!(add_kernel_args(&once, CMDLINE_VAR, &[CONSOLE], &p()).unwrap(), once);
    }

    #[test]
    fn last_assignment_wins_and_missing_var_is_appended() {
        let text = "GRUB_CMDLINE_LINUX=''\n#GRUB_CMDLINE_LINUX=\"x\"\nexport GRUB_CMDLINE_LINUX='a'";
        let out = add_kernel_args(text, CMDLINE_VAR, &[CONSOLE], &p()).unwrap();
        assert_eq!(out, "GRUB_CMDLINE_LINUX=''\n#GRUB_CMDLINE_LINUX=\"x\"\nGRUB_CMDLINE_LINUX=\"a console=ttyS0,115200n8\"\n");
        let out = add_kernel_args("GRUB_TIMEOUT=1", CMDLINE_VAR, &[CONSOLE], &p()).unwrap();
        assert_eq!(out, "GRUB_TIMEOUT=1\nGRUB_CMDLINE_LINUX=\"console=ttyS0,115200n8\"\n");
    }

    #[test]
    fn unterminated_quote_is_refused() {
        let err =
            add_kernel_args("A=1\nGRUB_CMDLINE_LINUX=\"quiet\n", CMDLINE_VAR, &[CONSOLE], &p()).unwrap_err();
        assert!(matches!(err, GrubError::Unparsable { line: 2, .. }), "{err}");
    }

    #[test]
    fn set_var_replaces_or_appends() {
        assert_eq!(
            set_var("GRUB_TERMINAL=console\n", "GRUB_TERMINAL", "serial console"),
            "GRUB_TERMINAL=\"serial console\"\n"
        );
        assert_eq!(
            set_var("GRUB_TERMINAL='serial console'\n", "GRUB_TERMINAL", "serial console"),
            "GRUB_TERMINAL='serial console'\n"
        );
        assert_eq!(set_var("", "X", "y"), "X=\"y\"\n");
    }

    #[test]
    fn random_text_never_panics() {
        let mut seed = 0x2545_f491_u64;
        for _ in 0..500 {
            let text: String = (0..seed % 80)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    ['G', '=', '"', '\'', '\n', ' ', 'x', 'R'][(seed % 8) as usize]
                })
                .collect();
            let text = format!("GRUB_CMDLINE_LINUX={text}");
            let _ = add_kernel_args(&text, CMDLINE_VAR, &[CONSOLE], &p());
            let _ = set_var(&text, "GRUB_TERMINAL", "serial console");
        }
    }
}
