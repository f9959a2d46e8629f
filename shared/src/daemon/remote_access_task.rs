//! The remote-access (JIT) task: keeps the host's remote-access accounts as the goal state's
//! RemoteAccess document lists them ([`crate::host::jit_accounts`] plans and applies the changes).
//!
//! It reads the goal state the goal-state task last took in (from the agent state,
//! [`super::State::goal_state`]) and does no
//! polling of its own. The document is fetched when the goal state changes (incarnation,
//! container, or its `RemoteAccessInfo` URL), as waagent does on a new incarnation, and then:
//! * the accounts are planned and changed at once;
//! * again when the earliest expiration among the listed accounts passes, so an expired account is
//!   deleted at its expiration (waagent waits for the next incarnation; the account's shadow expiry,
//!   the day after, locks it meanwhile);
//! * again [`RETRY_AFTER`] after a change failed, and at the next period after a fetch failed
//!   (waagent tries again only on the next incarnation). A failed fetch never counts as "no
//!   document": nothing is deleted until a document (or a goal state without one) has been read.
//!
//! Per boot, the first goal state counts as new: a document still listed is applied again (nothing
//! changes for accounts that exist), and without one every remote-access account is deleted, as
//! waagent does at its start.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::crypto::TransportKeys;
use crate::daemon::{Env, Task, TaskError};
use crate::documents::wire::{GoalState, RemoteAccess};
use crate::host::jit_accounts::{self as jit, Settings};
use crate::platform::wireserver::WireClient;

/// How long after a failed change the accounts are planned again.
pub const RETRY_AFTER: Duration = Duration::from_secs(300);

/// What a goal state says about remote access.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    incarnation: u64,
    container_id: String,
    url: Option<String>,
}

impl Key {
    fn of(gs: &GoalState) -> Self {
        Self {
            incarnation: gs.incarnation,
            container_id: gs.container_id.clone(),
            url: gs.remote_access_url.clone(),
        }
    }

    /// Whether `gs` has this key (compared in place: the task looks every period).
    fn is_of(&self, gs: &GoalState) -> bool {
        self.incarnation == gs.incarnation
            && self.container_id == gs.container_id
            && self.url == gs.remote_access_url
    }
}

/// The document last read, with the keys its passwords are encrypted to.
struct Current {
    doc: Option<RemoteAccess>,
    keys: Option<TransportKeys>,
}

/// Applies the RemoteAccess document.
pub struct RemoteAccessTask {
    client: WireClient,
    period: Duration,
    clock: Box<dyn Fn() -> SystemTime + Send>,
    seen: Option<Key>,
    current: Option<Current>,
    next_expiry: Option<i64>,
    retry_at: Option<i64>,
    /// Counters, for tests.
    pub fetches: u64,
    pub plans: u64,
}

impl std::fmt::Debug for RemoteAccessTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAccessTask")
            .field("seen", &self.seen)
            .field("next_expiry", &self.next_expiry)
            .field("retry_at", &self.retry_at)
            .finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

impl RemoteAccessTask {
    /// A task reading the goal state the goal-state task last took in, looking every `period`.
    pub fn new(client: WireClient, period: Duration) -> Self {
        Self {
            client,
            period,
            clock: Box::new(SystemTime::now),
            seen: None,
            current: None,
            next_expiry: None,
            retry_at: None,
            fetches: 0,
            plans: 0,
        }
    }

    /// Read the time from `clock` instead of the system clock (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Fetch the document when the goal state changed. An error leaves the last document in place
    /// and the goal state unseen, so the next run fetches again.
    fn refresh(&mut self, env: &Env<'_>) -> Result<bool, TaskError> {
        // A new goal state's key; nothing (and no copy) when there is none or it was seen.
        let seen = self.seen.as_ref();
        let key =
            env.state.with_goal_state(|gs| gs.filter(|gs| !seen.is_some_and(|k| k.is_of(gs))).map(Key::of));
        let Some(key) = key else { return Ok(false) };
        let current = match &key.url {
            None => {
                // Said once at start and when a document goes away, not on every goal state.
                let had_one = self.current.as_ref().is_none_or(|c| c.doc.is_some());
                let level = if had_one { log::Level::Info } else { log::Level::Debug };
                log::log!(
                    level,
                    "the goal state (incarnation {}) has no RemoteAccess document",
                    key.incarnation
                );
                Current { doc: None, keys: None }
            }
            Some(url) => {
                self.fetches += 1;
                let keys = TransportKeys::load_or_create(self.client.lib_dir())?;
                let doc = self.client.remote_access(url, &keys)?;
                log::info!(
                    "RemoteAccess document of incarnation {}: {} user(s)",
                    key.incarnation,
                    doc.users.len()
                );
                Current { doc: Some(doc), keys: Some(keys) }
            }
        };
        self.current = Some(current);
        self.seen = Some(key);
        Ok(true)
    }

    /// Plan the accounts against the host and change them.
    fn reconcile(&mut self, env: &Env<'_>, now: i64) -> Result<(), TaskError> {
        let Some(current) = &self.current else { return Ok(()) };
        self.plans += 1;
        self.retry_at = None;
        let admin = provisioned_admin(env);
        let settings = Settings {
            shadow: env.host.config.password_path.as_path(),
            sudoers_dir: env.host.config.sudoers_dir.as_path(),
            crypt: (
                env.host.config.password_crypt_id,
                usize::try_from(env.host.config.password_crypt_salt_length).unwrap_or(usize::MAX),
            ),
            admin: admin.as_deref(),
        };
        let host = jit::snapshot(env.host.root, settings.shadow, settings.admin).map_err(|e| {
            self.retry_at = Some(now + RETRY_AFTER.as_secs() as i64);
            TaskError::from(e)
        })?;
        let plan = jit::plan(current.doc.as_ref(), &host, now);
        for (name, why) in &plan.refused {
            log::warn!("remote access user {name} is not created: {why}");
        }
        let keys = current.keys.as_ref();
        let decrypt = |enc: &crate::base::secret::Secret<String>| match keys {
            Some(k) => jit::decrypt_password(k, enc),
            None => Err("no transport key".to_string()),
        };
        let started = std::time::Instant::now();
        let report = jit::apply(env.host.root, env.host.runner, &settings, &plan, &decrypt);
        self.next_expiry = plan.next_expiry;
        if !report.created.is_empty() || !report.deleted.is_empty() || !report.extended.is_empty() {
            log::info!(
                "remote access users: {} created, {} expiration(s) changed, {} removed",
                report.created.len(),
                report.extended.len(),
                report.deleted.len()
            );
        }
        if report.failed.is_empty() {
            return Ok(());
        }
        self.retry_at = Some(now + RETRY_AFTER.as_secs() as i64);
        for e in &report.failed {
            log::error!("{e}");
        }
        // waagent's RemoteAccessHandling event; counts only, never a name.
        let message =
            format!("{} of {} remote access account changes failed", report.failed.len(), plan.steps.len());
        crate::platform::telemetry::record(
            env.host.root,
            env.host.config.lib_dir.as_path(),
            &crate::platform::telemetry::AgentEvent::new(
                "RemoteAccessHandling",
                false,
                message.clone(),
                started.elapsed(),
            ),
        );
        Err(TaskError::from(format!("{message}; trying again in {} s", RETRY_AFTER.as_secs())))
    }
}

/// The admin user provisioning created, from the saved `<Lib.Dir>/ovf-env.xml` (as deprovision
/// finds it).
fn provisioned_admin(env: &Env<'_>) -> Option<String> {
    let path = env.host.root.path(env.host.config.lib_dir.as_path().join("ovf-env.xml"));
    let xml = crate::base::limits::read_file_to_string(&path, crate::base::limits::Document::Ovf).ok()?;
    crate::documents::ovf::parse(&xml).ok().map(|env| env.provisioning.user_name)
}

impl Task for RemoteAccessTask {
    fn name(&self) -> &'static str {
        "remote-access"
    }
    fn period(&self) -> Duration {
        self.period
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        let changed = self.refresh(env)?;
        let now = unix((self.clock)());
        let expired = self.next_expiry.is_some_and(|t| now >= t);
        let retry = self.retry_at.is_some_and(|t| now >= t);
        if changed || expired || retry {
            self.reconcile(env, now)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_of_the_goal_states_it_was_made_from_only() {
        let gs = GoalState {
            incarnation: 3,
            container_id: "c1".into(),
            remote_access_url: Some("http://w/ra".into()),
            role_instance_id: "r".into(),
            ..GoalState::default()
        };
        let key = Key::of(&gs);
        assert!(key.is_of(&gs));
        // What does not name the document may change (another role instance state, say).
        assert!(key.is_of(&GoalState { role_instance_state: Some("Started".into()), ..gs.clone() }));
        for other in [
            GoalState { incarnation: 4, ..gs.clone() },
            GoalState { container_id: "c2".into(), ..gs.clone() },
            GoalState { remote_access_url: None, ..gs.clone() },
            GoalState { remote_access_url: Some("http://w/ra2".into()), ..gs.clone() },
        ] {
            assert!(!key.is_of(&other), "{other:?}");
            assert_eq!(key == Key::of(&other), key.is_of(&other), "is_of agrees with ==");
        }
    }

    #[test]
    fn the_state_lends_its_goal_state_without_a_copy() {
        let state = crate::daemon::State::default();
        assert!(state.with_goal_state(|gs| gs.is_none()));
        state.set_goal_state(GoalState { incarnation: 7, ..GoalState::default() });
        assert_eq!(state.with_goal_state(|gs| gs.map(|gs| gs.incarnation)), Some(7));
    }
}
