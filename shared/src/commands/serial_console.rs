//! `serial-console` (waagent's `-serialconsole`): boot messages and a GRUB menu on ttyS0, where the
//! Azure serial console and boot diagnostics read them.
//!
//! In `/etc/default/grub`: `GRUB_CMDLINE_LINUX` gets `console=ttyS0,115200n8
//! earlyprintk=ttyS0,115200` (other arguments kept; a bare or differently-set `console=ttyS0` or
//! `earlyprintk=ttyS0` is replaced), `GRUB_TERMINAL="serial console"` and `GRUB_SERIAL_COMMAND`
//! for 115200 8N1 on unit 0. Then `grub.cfg` is regenerated on the live root (see
//! [`grub::regenerate_command`]); under `--root` it is not, and the result says so.

use crate::base::cmd::Runner;
use crate::base::root::HostRoot;
use crate::host::grub::{self, GrubChange, GrubError, KernelArg};

/// The kernel arguments for the serial console.
pub const KERNEL_ARGS: [KernelArg<'static>; 2] = [
    KernelArg { value: "console=ttyS0,115200n8", replaces: &["console=ttyS0", "console=ttyS0,"] },
    KernelArg { value: "earlyprintk=ttyS0,115200", replaces: &["earlyprintk=ttyS0", "earlyprintk=ttyS0,"] },
];

/// `GRUB_TERMINAL`: the menu on both the serial line and the screen.
pub const GRUB_TERMINAL: &str = "serial console";

/// `GRUB_SERIAL_COMMAND`: ttyS0 at 115200 baud, 8 data bits, no parity, 1 stop bit.
pub const GRUB_SERIAL_COMMAND: &str = "serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1";

/// Configure GRUB for the serial console under `root`.
pub fn configure(root: &HostRoot, runner: &dyn Runner) -> Result<GrubChange, GrubError> {
    grub::edit_defaults(root, runner, |text, path| {
        let text = grub::add_kernel_args(text, grub::CMDLINE_VAR, &KERNEL_ARGS, path)?;
        let text = grub::set_var(&text, "GRUB_TERMINAL", GRUB_TERMINAL);
        Ok(grub::set_var(&text, "GRUB_SERIAL_COMMAND", GRUB_SERIAL_COMMAND))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cmd::FakeRunner;

    fn root_with(grub_text: Option<&str>) -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc/default")).expect("mkdir");
        if let Some(t) = grub_text {
            std::fs::write(dir.path().join("etc/default/grub"), t).expect("write");
        }
        let root = HostRoot::new(dir.path());
        (dir, root)
    }

    #[test]
    fn configures_grub_once_and_does_not_regenerate_under_a_root() {
        let before = "GRUB_DEFAULT=0\nGRUB_TERMINAL=console\nGRUB_CMDLINE_LINUX=\"quiet console=tty1 console=ttyS0\"\n";
        let (dir, root) = root_with(Some(before));
        let fake = FakeRunner::new();
        let change = configure(&root, &fake).expect("configure");
        assert!(change.changed);
        assert!(change.regenerated_with.is_none());
        assert!(change.not_regenerated.as_deref().unwrap_or("").contains("not the live root"));
        assert!(fake.calls().is_empty(), "no grub tool runs against a non-live root");
        let after = std::fs::read_to_string(dir.path().join("etc/default/grub")).unwrap();
        assert_eq!(
            after,
            "GRUB_DEFAULT=0\nGRUB_TERMINAL=\"serial console\"\n\
             GRUB_CMDLINE_LINUX=\"quiet console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200\"\n\
             GRUB_SERIAL_COMMAND=\"serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1\"\n"
        );
        let again = configure(&root, &fake).expect("again");
        assert_eq!(again, GrubChange::default());
        assert_eq!(std::fs::read_to_string(dir.path().join("etc/default/grub")).unwrap(), after);
    }

    #[test]
    fn regeneration_tool_choice_on_the_live_root() {
        let live = HostRoot::live();
        let fake = FakeRunner::new();
        assert_eq!(grub::regenerate_command(&live, &fake).unwrap().to_string(), "update-grub");
        fake.without("update-grub");
        assert_eq!(
            grub::regenerate_command(&live, &fake).unwrap().to_string(),
            "grub2-mkconfig -o /boot/grub2/grub.cfg"
        );
        fake.without("grub2-mkconfig");
        assert_eq!(
            grub::regenerate_command(&live, &fake).unwrap().to_string(),
            "grub-mkconfig -o /boot/grub/grub.cfg"
        );
        fake.without("grub-mkconfig");
        assert!(grub::regenerate_command(&live, &fake).unwrap_err().contains("none of"));
    }

    #[test]
    fn missing_defaults_file_is_an_error() {
        let (_dir, root) = root_with(None);
        let err = configure(&root, &FakeRunner::new()).unwrap_err();
        assert!(matches!(err, GrubError::Missing { .. }), "{err}");
    }
}
