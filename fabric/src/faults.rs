//! Scriptable faults: what to do instead of (or before) the normal answer for matching requests.
//!
//! JSON form (one object or an array), as accepted by `--faults FILE` and `POST /__fabric/faults`:
//! ```json
//! {"listener": "wireserver", "path": "/machine/?comp=goalstate", "method": "GET", "times": 2,
//!  "action": {"kind": "status", "status": 410, "body": "Gone"}}
//! ```
//! `path` is a prefix of the request target (path and query); `method` and `times` are optional
//! (no `times` = always). Actions: `status` {status, body?}, `delay` {ms}, `reset`,
//! `truncate` {keep?}, `slow_body` {chunk, interval_ms}, `bump_incarnation`.

use serde::{Deserialize, Serialize};

use crate::Listener;

/// One scripted fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The listener it applies to.
    pub listener: Listener,
    /// Prefix of the request target (path and query) it applies to.
    #[serde(default = "root")]
    pub path: String,
    /// Method it applies to; any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// How many more matching requests it applies to; always when absent.
    #[serde(default)]
    pub times: Option<u32>,
    /// What happens.
    pub action: FaultAction,
}

fn root() -> String {
    "/".into()
}

/// What a fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Answer with this status (and body) instead of the normal response.
    Status {
        /// HTTP status code.
        status: u16,
        /// Body text (e.g. `InvalidContainerConfiguration`); empty when absent.
        #[serde(default)]
        body: Option<String>,
    },
    /// Wait this long, then answer normally.
    Delay {
        /// Milliseconds to wait.
        ms: u64,
    },
    /// Close the connection abortively without any response.
    Reset,
    /// Announce the full Content-Length but send only `keep` bytes (default: half), then close.
    Truncate {
        /// Bytes of the body actually sent.
        #[serde(default)]
        keep: Option<usize>,
    },
    /// Send the body `chunk` bytes at a time, `interval_ms` apart.
    SlowBody {
        /// Bytes per write.
        chunk: usize,
        /// Milliseconds between writes.
        interval_ms: u64,
    },
    /// Increment the goal state incarnation when the request arrives, then answer normally.
    BumpIncarnation,
}

impl Fault {
    /// A fault on `listener` for targets starting with `path`, applying always.
    pub fn new(listener: Listener, path: &str, action: FaultAction) -> Self {
        Fault { listener, path: path.into(), method: None, times: None, action }
    }

    /// Restricts the fault to `method`.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Applies the fault to the next `n` matching requests only.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, listener: Listener, method: &str, target: &str) -> bool {
        self.listener == listener
            && self.times != Some(0)
            && target.starts_with(&self.path)
            && self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

/// Parses one fault or an array of faults from JSON text.
pub fn parse_faults(text: &str) -> Result<Vec<Fault>, serde_json::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<Fault>),
        One(Fault),
    }
    Ok(match serde_json::from_str::<OneOrMany>(text)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(f) => vec![f],
    })
}

/// The active faults, in the order they were added.
#[derive(Debug, Default)]
pub struct FaultTable {
    faults: Vec<Fault>,
}

impl FaultTable {
    /// Adds faults after the existing ones.
    pub fn add(&mut self, faults: impl IntoIterator<Item = Fault>) {
        self.faults.extend(faults);
    }

    /// Removes all faults.
    pub fn clear(&mut self) {
        self.faults.clear();
    }

    /// The faults still active.
    pub fn list(&self) -> Vec<Fault> {
        self.faults.clone()
    }

    /// The action of the first active fault matching the request, consuming one use of it.
    pub fn take(&mut self, listener: Listener, method: &str, target: &str) -> Option<FaultAction> {
        let idx = self.faults.iter().position(|f| f.matches(listener, method, target))?;
        let fault = &mut self.faults[idx];
        let action = fault.action.clone();
        if let Some(n) = fault.times.as_mut() {
            *n -= 1;
            if *n == 0 {
                self.faults.remove(idx);
            }
        }
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_fault_is_used_up_and_first_match_wins() {
        let mut t = FaultTable::default();
        t.add([
            Fault::new(Listener::Wireserver, "/machine", FaultAction::Reset).method("POST").times(1),
            Fault::new(Listener::Wireserver, "/machine", FaultAction::Delay { ms: 5 }),
        ]);
        assert_eq!(t.take(Listener::Hostgaplugin, "POST", "/machine"), None);
        assert_eq!(t.take(Listener::Wireserver, "POST", "/machine?comp=health"), Some(FaultAction::Reset));
        assert_eq!(
            t.take(Listener::Wireserver, "POST", "/machine?comp=health"),
            Some(FaultAction::Delay { ms: 5 })
        );
        assert_eq!(t.list().len(), 1);
        assert_eq!(t.take(Listener::Wireserver, "GET", "/?comp=versions"), None);
    }

    #[test]
    fn parses_single_and_array_json() {
        let one = parse_faults(
            r#"{"listener":"hostgaplugin","path":"/vmSettings","times":2,
                "action":{"kind":"status","status":400,"body":"InvalidContainerConfiguration"}}"#,
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].times, Some(2));
        let many = parse_faults(
            r#"[{"listener":"imds","action":{"kind":"slow_body","chunk":3,"interval_ms":10}},
                {"listener":"wireserver","action":{"kind":"bump_incarnation"}}]"#,
        )
        .unwrap();
        assert_eq!(many[0].path, "/");
        assert_eq!(many[1].action, FaultAction::BumpIncarnation);
        assert!(parse_faults(r#"{"listener":"wireserver","action":{"kind":"explode"}}"#).is_err());
    }
}
