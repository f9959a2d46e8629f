//! Logging: stderr (the journal and the serial console under systemd) and `/var/log/waagent.log` in
//! waagent's line format, `<UTC timestamp> <LEVEL> <component> <message>`, e.g.
//! `2026-11-26T01:11:37.123456Z INFO Provision Provisioning complete`.
//!
//! As in waagent, the file is opened in append mode for every record, so external rotation needs no
//! signal; lines are ASCII with backslash escapes, and SAS signatures in URLs are redacted. Levels are
//! waagent's: VERBOSE (log's debug and trace), INFO, WARNING, ERROR. `Logs.Verbose` or `--verbose`
//! turns VERBOSE on.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The waagent log file.
pub const LOG_FILE: &str = "/var/log/waagent.log";

/// Where log lines go.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Component name in each file line (`Provision`, `Daemon`, ...).
    pub component: &'static str,
    pub verbose: bool,
    /// The log file, already resolved under the host root; `None` for stderr only.
    pub file: Option<PathBuf>,
}

struct Logger {
    component: &'static str,
    file: Mutex<Option<PathBuf>>,
    journal: bool,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// Install the logger (once per process; later calls only change the level and file).
pub fn init(settings: LogSettings) {
    let logger = LOGGER.get_or_init(|| Logger {
        component: settings.component,
        file: Mutex::new(None),
        journal: std::env::var_os("JOURNAL_STREAM").is_some(),
    });
    *logger.file.lock().unwrap_or_else(|e| e.into_inner()) = settings.file;
    let _ = log::set_logger(logger);
    set_verbose(settings.verbose);
}

/// Raise or lower the level after the configuration is known.
pub fn set_verbose(verbose: bool) {
    log::set_max_level(if verbose { log::LevelFilter::Debug } else { log::LevelFilter::Info });
}

/// waagent's name for a level.
pub fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARNING",
        log::Level::Info => "INFO",
        log::Level::Debug | log::Level::Trace => "VERBOSE",
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = sanitize(&record.args().to_string());
        let level = level_name(record.level());
        let mut stderr = std::io::stderr().lock();
        let _ = if self.journal {
            writeln!(stderr, "<{}>{level} {message}", syslog_priority(record.level()))
        } else {
            writeln!(stderr, "{level} {message}")
        };
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(path) = file {
            let line = format_line(SystemTime::now(), level, self.component, &message);
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
        }
    }

    fn flush(&self) {}
}

fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// One line of `/var/log/waagent.log`.
pub fn format_line(time: SystemTime, level: &str, component: &str, message: &str) -> String {
    format!("{} {level} {component} {message}\n", timestamp(time))
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC.
pub fn timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, mo, d) = crate::base::civil_date::from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// ASCII with backslash escapes, newlines kept as `\n` text, SAS signatures redacted.
pub fn sanitize(message: &str) -> String {
    let redacted = redact_sas(message);
    let mut out = String::with_capacity(redacted.len());
    for c in redacted.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push(' '),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    out
}

/// Replace the value of every `sig=` query parameter (a SAS token's signature, the key in any case)
/// with `***REDACTED***`; the rest of the URL stays readable in logs. (Messages that leave the
/// machine drop the whole query instead: `extensions::redact_sas_queries`.)
pub fn redact_sas(text: &str) -> String {
    // ASCII lowercasing keeps byte offsets, so a position found in `lower` indexes `text` too.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find("sig=") {
        let pos = at + found;
        let boundary = pos == 0 || matches!(text.as_bytes()[pos - 1], b'?' | b'&' | b';');
        out.push_str(&text[at..pos + 4]);
        at = pos + 4;
        if boundary {
            let end = text[at..]
                .find(|c: char| c == '&' || c == '"' || c == '<' || c.is_whitespace())
                .map_or(text.len(), |e| at + e);
            out.push_str("***REDACTED***");
            at = end;
        }
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamp_format() {
        let t = UNIX_EPOCH + Duration::new(1_795_655_497, 123_456_789);
        assert_eq!(timestamp(t), "2026-11-26T01:11:37.123456Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // A leap day.
        assert_eq!(&timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400))[..10], "2000-02-29");
    }

    #[test]
    fn line_format_matches_waagent() {
        let t = UNIX_EPOCH + Duration::new(1_795_655_497, 0);
        assert_eq!(
            format_line(t, "INFO", "Daemon", "Run daemon"),
            "2026-11-26T01:11:37.000000Z INFO Daemon Run daemon\n"
        );
    }

    #[test]
    fn sanitize_escapes_and_redacts() {
        assert_eq!(sanitize("a\nb é"), "a\\nb \\u{e9}");
        assert_eq!(
            redact_sas("GET https://x.blob/c?sv=1&sig=abc%2Fdef&se=2 done"),
            "GET https://x.blob/c?sv=1&sig=***REDACTED***&se=2 done"
        );
        assert_eq!(redact_sas("design=ok"), "design=ok");
        assert_eq!(redact_sas("u?SV=1&Sig=abc&x=1"), "u?SV=1&Sig=***REDACTED***&x=1");
    }
}
