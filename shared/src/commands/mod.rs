//! The one-shot commands of `wala-agentd` (and waagent's single-dash names for them) that are
//! neither provisioning nor the daemon's steady state.
//!
//! * [`legacy_cli`]: waagent's single-dash command line (`-deprovision+user -force`, ...);
//! * [`collect_logs`]: `collect-logs [--full]`, one zip of what support needs;
//! * [`serial_console`]: `serial-console`, boot messages and GRUB on ttyS0;
//! * [`inspect`]: `inspect KIND FILE`, any document through its parser;
//! * [`service`]: `-start` and `-register-service`;
//! * [`boot_report`]: `boot-report`, the boot timeline as a table or JSON.

pub mod boot_report;
pub mod collect_logs;
pub mod inspect;
pub mod legacy_cli;
pub mod serial_console;
pub mod service;
