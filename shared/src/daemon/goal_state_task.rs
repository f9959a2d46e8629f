//! Goal-state polling and status reporting (spec wire.md §7.4, §11-12): every period, fetch the
//! goal state and vmSettings and act only when they changed: on a new goal state fetch the
//! certificates and publish it in the agent state ([`super::State`]); on a new extensions goal
//! state (ExtensionsConfig or Fast Track, per [`choose`]) hand it to the extensions task
//! ([`super::extensions_task`]), which runs the handlers on its own worker thread; then upload the
//! aggregate status when it changed, or as a heartbeat, rather than on every poll as waagent does.
//!
//! This task never waits for extensions: while the extensions task works on a goal state, the
//! status keeps what it last finished and goes out as a heartbeat (every [`STATUS_HEARTBEAT`]);
//! when it is done, the extensions task wakes this one ([`super::State::kick`]), which uploads
//! the status its result brings at once.
//!
//! Each new goal state's documents are also kept in `Lib.Dir` for extensions and support tools,
//! with a history entry per change and the status document after each upload ([`lib_dir`]).
//!
//! The task polls every `Extensions.InitialGoalStatePeriod` until its first extensions goal state
//! has been processed, then every `Extensions.GoalStatePeriod`; as waagent, the file
//! `initial_goal_state` in `Lib.Dir` records that, so a restart polls at the normal period.
//!
//! **Fewer WireServer fetches while Fast Track is quiet** (unlike waagent, which fetches both
//! documents on every poll). The goal state (about 2 KB, and the WireServer has no conditional
//! GET) is most of the daemon's traffic at rest, while vmSettings costs a 304 when nothing
//! changed. The HostGAPlugin's vmSettings carry every extensions goal state, Fast Track and
//! Fabric alike (`extensionGoalStatesSource`), so once the HostGAPlugin answers them, vmSettings
//! are asked first on every poll and the WireServer goal state is fetched:
//! * in the same poll, when vmSettings changed or could not be read (a 410 after the container
//!   moved, for one), or after a status upload failed (the container may have changed);
//! * on every poll for [`AFTER_CHANGE_FACTOR`] × `Wala.WireServerPollPeriod` after any change
//!   (a certificate a new Fast Track goal state needs can reach the WireServer a little later),
//!   and until the first extensions goal state has been processed;
//! * otherwise every `Wala.WireServerPollPeriod` (30 s): what only the WireServer brings
//!   (certificate rotation, RemoteAccess users, a container or role instance change without an
//!   HostGAPlugin error) arrives within that.
//!
//! Without vmSettings (a host without Fast Track, or a period at or above
//! `Wala.WireServerPollPeriod`), every poll fetches the goal state, as waagent does.

use std::time::{Duration, Instant, SystemTime};

use crate::host::lib_dir::{self, history_file, History};

use crate::daemon::state::Handoff;
use crate::daemon::status_inputs::StatusInputs;
use crate::daemon::{Env, Task, TaskError};
use crate::documents::extensions::status::{
    AggregateStatus, AggregateStatusDocument, FormattedMessage, GoalStateAggregateStatus, GuestAgentStatus,
    GuestOsInfo, HandlerAggregateStatus, SupportedFeature, VmArtifactsAggregateStatus,
};
use crate::documents::extensions::{choose, Chosen, ExtensionsGoalState, Updates};
use crate::platform::hostgaplugin::{ContainerIdentity, HostGaPluginClient};
use crate::platform::http::HttpClient;
use crate::platform::status_blob::{self, BlobType, StatusBlob};
use crate::platform::wireserver::WireClient;

/// The task's name, which the extensions task wakes ([`super::State::kick`]) when it is done.
pub const NAME: &str = "goal-state";

/// How often status is uploaded when nothing changed, so the host sees the agent alive.
pub const STATUS_HEARTBEAT: Duration = Duration::from_secs(60);

/// How long a HostGAPlugin without vmSettings is left alone (waagent: 6 hours).
pub const VM_SETTINGS_RECHECK: Duration = Duration::from_secs(6 * 3600);

/// `Wala.WireServerPollPeriod`'s default: how often the WireServer goal state is fetched while
/// Fast Track is quiet.
pub const WIRESERVER_PERIOD: Duration = Duration::from_secs(30);

/// After a change, the WireServer goal state is fetched on every poll for this many
/// `Wala.WireServerPollPeriod`s (1 minute by default).
pub const AFTER_CHANGE_FACTOR: u32 = 2;

/// waagent's marker in `Lib.Dir`: the initial goal state has been processed.
pub const INITIAL_GOAL_STATE_FILE: &str = "initial_goal_state";

/// A new goal state's documents, waiting for the poll's history entry.
#[derive(Debug, Default)]
struct ForHistory {
    goal_state: Option<String>,
    hosting_env: Option<String>,
    shared_config: Option<String>,
    extensions_config: Option<String>,
    certificates: Option<String>,
    vm_settings: Option<String>,
}

impl ForHistory {
    fn is_empty(&self) -> bool {
        self.goal_state.is_none() && self.vm_settings.is_none()
    }
}

/// The goal state as far as the daemon acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    incarnation: u64,
    container_id: String,
    role_instance_id: String,
}

/// Polls the goal state and uploads status.
pub struct GoalStateTask {
    pub client: WireClient,
    pub hgap: HostGaPluginClient,
    pub storage: HttpClient,
    pub period: Duration,
    /// The period until the first extensions goal state has been processed.
    pub initial_period: Duration,
    /// How often status is uploaded when nothing changed ([`STATUS_HEARTBEAT`]).
    pub heartbeat: Duration,
    initial_done: bool,
    /// The first run (the first heartbeat is due a heartbeat after it while extensions run).
    started: Option<Instant>,
    seen: Option<Seen>,
    /// The text of the goal state last taken in completely (an identical answer is not parsed).
    taken_xml: Option<String>,
    /// The distribution, as the status document names it (read on the first report).
    distro: Option<crate::base::distro::Distro>,
    identity: Option<ContainerIdentity>,
    blob: Option<StatusBlob>,
    /// The status document last uploaded, without its timestamps (compared, not serialized, on
    /// every poll).
    last_status: Option<AggregateStatusDocument>,
    last_upload: Option<Instant>,
    /// The watch on the status document's files (made on the first report), the agent state the
    /// last document was built from (extensions result, incarnation, Fast Track), and whether
    /// that document is still to be uploaded (its upload failed): a poll builds the document
    /// again only when one of them says it may differ, or for the heartbeat.
    status_inputs: Option<StatusInputs>,
    status_built_from: Option<(Option<u64>, u64, bool)>,
    status_pending: bool,
    /// The HostGAPlugin's vmSettings (Fast Track): the last ETag, and when to ask again after a
    /// 404 (not supported) or an error.
    vm_settings_etag: Option<String>,
    vm_settings_retry_at: Option<Instant>,
    /// Whether the HostGAPlugin serves vmSettings: the status then advertises `FastTrack`
    /// (§7.4: CRP sends Fast Track goal states only after seeing it).
    vm_settings_supported: bool,
    /// Whether the last vmSettings request was answered (200 or 304) with vmSettings this agent
    /// takes: only then may the WireServer goal state wait ([`Self::wireserver_due`]).
    vm_settings_answered: bool,
    /// `Wala.WireServerPollPeriod`.
    pub wireserver_period: Duration,
    /// When the WireServer goal state was last fetched, and when the last change (either
    /// document) was taken in.
    wireserver_fetched: Option<Instant>,
    changed_at: Option<Instant>,
    /// A status upload failed: fetch the WireServer goal state on the next poll.
    wireserver_wanted: bool,
    /// The raw vmSettings JSON of the newest Fast Track goal state.
    pub vm_settings: Option<String>,
    /// The extensions goal state from the last ExtensionsConfig, from the last vmSettings, and the
    /// one last handed to the extensions task.
    extensions_config: Option<ExtensionsGoalState>,
    vm_settings_gs: Option<ExtensionsGoalState>,
    current: Option<ExtensionsGoalState>,
    updates: Updates,
    /// What this poll adds to the history, and the current history entry.
    for_history: ForHistory,
    history: Option<History>,
    /// Whether writing the `Lib.Dir` files failed already (logged once, then at debug level).
    files_failed: bool,
    /// Counters, for tests and the footprint benchmark.
    pub polls: u64,
    pub changes: u64,
    pub uploads: u64,
}

impl std::fmt::Debug for GoalStateTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoalStateTask")
            .field("seen", &self.seen)
            .field("uploads", &self.uploads)
            .finish_non_exhaustive()
    }
}

impl GoalStateTask {
    pub fn new(client: WireClient, hgap: HostGaPluginClient, storage: HttpClient, period: Duration) -> Self {
        Self {
            client,
            hgap,
            storage,
            period,
            initial_period: period,
            heartbeat: STATUS_HEARTBEAT,
            initial_done: true,
            started: None,
            seen: None,
            taken_xml: None,
            distro: None,
            identity: None,
            blob: None,
            last_status: None,
            last_upload: None,
            status_inputs: None,
            status_built_from: None,
            status_pending: false,
            vm_settings_etag: None,
            vm_settings_retry_at: None,
            vm_settings_supported: false,
            vm_settings_answered: false,
            wireserver_period: WIRESERVER_PERIOD,
            wireserver_fetched: None,
            changed_at: None,
            wireserver_wanted: false,
            vm_settings: None,
            extensions_config: None,
            vm_settings_gs: None,
            current: None,
            updates: Updates::default(),
            for_history: ForHistory::default(),
            history: None,
            files_failed: false,
            polls: 0,
            changes: 0,
            uploads: 0,
        }
    }

    /// Poll every `initial` until the first extensions goal state has been processed, unless
    /// `Lib.Dir` already records that one was (waagent's `initial_goal_state`).
    pub fn with_initial_period(mut self, initial: Duration) -> Self {
        self.initial_done = self.client.lib_dir().join(INITIAL_GOAL_STATE_FILE).exists();
        self.initial_period = initial;
        self
    }

    /// `Wala.WireServerPollPeriod` (see the module's documentation).
    pub fn with_wireserver_period(mut self, period: Duration) -> Self {
        self.wireserver_period = period;
        self
    }

    /// Whether this poll fetches the WireServer goal state: always, unless the HostGAPlugin
    /// answered vmSettings just now and nothing has changed for a while (the module's
    /// documentation). Called after vmSettings were asked.
    fn wireserver_due(&self, now: Instant) -> bool {
        let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
        let quiet = self.initial_done
            && self.vm_settings_answered
            && !self.wireserver_wanted
            && self.wireserver_period > self.period
            && since(self.changed_at).is_none_or(|d| d >= self.wireserver_period * AFTER_CHANGE_FACTOR);
        // Half a period early rather than a whole period late: polls come a period apart.
        !quiet || since(self.wireserver_fetched).is_none_or(|d| d + self.period / 2 >= self.wireserver_period)
    }

    /// The `Lib.Dir` files could not be written: say so once, then quietly (they are for others;
    /// the agent works without them).
    fn files_failed(&mut self, what: &str, e: &dyn std::fmt::Display) {
        if self.files_failed {
            log::debug!("{what}: {e}");
        } else {
            log::warn!("{what}: {e} (further failures are logged at debug level)");
            self.files_failed = true;
        }
    }

    /// A goal-state document others read (`HostingEnvironmentConfig`, `SharedConfig`), as text;
    /// `None` when the goal state names none or it cannot be fetched (logged: the goal state goes
    /// on without it).
    fn fetch_for_files(&self, url: Option<&str>, document: crate::base::limits::Document) -> Option<String> {
        let url = url?;
        match self.client.fetch_document(url, document) {
            Ok(text) => Some(text),
            Err(e) => {
                log::warn!("{}: {}", document.name(), e.reason());
                None
            }
        }
    }

    fn refresh(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        // The same text as the last goal state taken in completely: nothing to parse or compare.
        let fetched = self.client.goal_state_unless(self.taken_xml.as_deref())?;
        self.wireserver_fetched = Some(Instant::now());
        self.wireserver_wanted = false;
        let Some(fetched) = fetched else {
            return Ok(());
        };
        let gs = &fetched.goal_state;
        let now = Seen {
            incarnation: gs.incarnation,
            container_id: gs.container_id.clone(),
            role_instance_id: gs.role_instance_id.clone(),
        };
        if self.seen.as_ref() == Some(&now) {
            self.taken_xml = Some(fetched.xml);
            return Ok(());
        }
        log::info!("new goal state: incarnation {} (container {})", now.incarnation, now.container_id);
        let ext = self.client.extensions_config_text(gs)?;
        self.extensions_config = match ext
            .as_deref()
            .map(|t| crate::documents::extensions::parse_extensions_config(t, Some(gs.incarnation)))
        {
            Some(Ok(parsed)) => Some(parsed),
            Some(Err(e)) => {
                log::warn!("ExtensionsConfig: {e}");
                None
            }
            None => None,
        };
        if let Some(parsed) = self.extensions_config.as_mut() {
            let who = ContainerIdentity::of(gs);
            crate::extensions::artifacts_profile::apply(parsed, &self.storage, &self.hgap, &who);
        }
        // From the parsed document; a document the strict parser rejects may still name its blob.
        self.blob = match &self.extensions_config {
            Some(parsed) => parsed.status_upload_blob.as_ref().map(StatusBlob::from),
            None => ext.as_deref().and_then(status_blob_of),
        };
        if self.blob.is_none() {
            log::warn!("the goal state has no StatusUploadBlob; status cannot be reported");
        }
        // Extensions decrypt their protected settings with these (`<thumbprint>.crt/.prv`).
        let certificates = match self.client.certificates(gs) {
            Ok(summary) => serde_json::to_string(&summary).ok(),
            Err(e) => {
                log::warn!("certificates: {}", e.reason());
                None
            }
        };
        let hosting_env = self.fetch_for_files(
            gs.hosting_env_url.as_deref(),
            crate::base::limits::Document::HostingEnvironmentConfig,
        );
        let shared_config = self
            .fetch_for_files(gs.shared_config_url.as_deref(), crate::base::limits::Document::SharedConfig);
        let ext_redacted = ext.as_deref().and_then(|text| {
            let redacted = lib_dir::redact(text, &protected_values(self.extensions_config.as_ref()));
            if redacted.is_none() {
                log::warn!("the ExtensionsConfig could not be redacted for certain: it is not saved");
            }
            redacted
        });
        let docs = lib_dir::Documents {
            incarnation: gs.incarnation,
            goal_state: &fetched.xml,
            hosting_env: hosting_env.as_deref(),
            shared_config: shared_config.as_deref(),
            extensions_config_redacted: ext_redacted.as_deref(),
        };
        if let Err(e) = lib_dir::write_current(self.client.lib_dir(), &docs) {
            self.files_failed("goal-state files", &e);
        }
        self.for_history.goal_state = Some(fetched.xml.clone());
        self.for_history.hosting_env = hosting_env;
        self.for_history.shared_config = shared_config;
        self.for_history.extensions_config = ext_redacted;
        self.for_history.certificates = certificates;
        self.updates.incarnation_changed = true;
        self.identity = Some(ContainerIdentity::of(gs));
        env.state.set_goal_state(gs.clone());
        self.seen = Some(now);
        self.changes += 1;
        self.changed_at = Some(Instant::now());
        self.taken_xml = Some(fetched.xml);
        Ok(())
    }

    /// Ask the HostGAPlugin for vmSettings with the last ETag; a change counts as a new goal state.
    fn refresh_vm_settings(&mut self) {
        let Some(who) = &self.identity else { return };
        if self.vm_settings_retry_at.is_some_and(|t| Instant::now() < t) {
            self.vm_settings_answered = false;
            return;
        }
        match self.hgap.vm_settings(who, self.vm_settings_etag.as_deref()) {
            Ok(crate::platform::hostgaplugin::VmSettings::Updated { etag, json }) => {
                log::info!("new vmSettings (ETag {etag})");
                let parsed = crate::documents::extensions::parse_vm_settings(&json, &etag);
                let protected = match &parsed {
                    Ok(crate::documents::extensions::VmSettingsDocument::Supported(gs)) => {
                        protected_values(Some(gs))
                    }
                    _ => Vec::new(),
                };
                self.for_history.vm_settings = lib_dir::redact(&json, &protected);
                if self.for_history.vm_settings.is_none() {
                    log::warn!("vmSettings (ETag {etag}) could not be redacted for certain: not saved");
                }
                let taken = match parsed {
                    Ok(crate::documents::extensions::VmSettingsDocument::Supported(gs)) => {
                        self.vm_settings_gs = Some(*gs);
                        self.updates.vm_settings_changed = true;
                        self.vm_settings_supported = true;
                        true
                    }
                    Ok(crate::documents::extensions::VmSettingsDocument::NotSupported { .. }) => {
                        self.vm_settings_gs = None;
                        self.vm_settings_supported = false;
                        false
                    }
                    Err(e) => {
                        log::warn!("vmSettings: {e}");
                        false
                    }
                };
                self.vm_settings_etag = Some(etag);
                self.vm_settings = Some(json);
                self.changes += 1;
                self.changed_at = Some(Instant::now());
                // Only a document taken in lets the WireServer wait (and a changed one not in
                // this poll: `changed_at`).
                self.vm_settings_answered = taken;
            }
            Ok(crate::platform::hostgaplugin::VmSettings::NotModified) => {
                self.vm_settings_answered = self.vm_settings_supported;
            }
            Ok(crate::platform::hostgaplugin::VmSettings::Unsupported) => {
                log::info!("the HostGAPlugin does not serve vmSettings; asking again in 6 hours");
                self.vm_settings_supported = false;
                self.vm_settings_answered = false;
                self.vm_settings_retry_at = Some(Instant::now() + VM_SETTINGS_RECHECK);
            }
            Err(e) => {
                log::debug!("vmSettings: {e}");
                self.vm_settings_answered = false;
                self.vm_settings_retry_at = Some(Instant::now() + Duration::from_secs(60));
            }
        }
    }

    fn report(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        let (Some(blob), Some(who), Some(seen)) = (&self.blob, &self.identity, &self.seen) else {
            // Nowhere to report to: the extensions' results are taken in all the same.
            env.state.extensions_reported(u64::MAX);
            return Ok(());
        };
        let since = self.last_upload.or(self.started).unwrap_or_else(Instant::now);
        let due = since.elapsed() >= self.heartbeat;
        // While the extensions task works, the status it last finished goes out as the heartbeat
        // only; its new result comes with the first poll after (so one upload per change).
        if !due && env.state.extensions_busy() {
            return Ok(());
        }
        // At rest nothing the document is made of changes: it is not built again (no file read)
        // until something does or the heartbeat is due (status_inputs.rs).
        let built_from =
            (env.state.with_processed(|p| p.map(|p| p.number)), seen.incarnation, self.vm_settings_supported);
        let inputs =
            self.status_inputs.get_or_insert_with(|| StatusInputs::new(env.host.root, env.host.config));
        let changed = inputs.changed() || self.status_built_from != Some(built_from) || self.status_pending;
        if !due && !changed {
            return Ok(());
        }
        inputs.arm();
        self.status_built_from = Some(built_from);
        self.status_pending = true;
        let (seq, handlers, outcome, number) = env.state.with_processed(|processed| {
            let Some(p) = processed else {
                return (seen.incarnation, Vec::new(), GoalStateOutcome::Success, 0);
            };
            let unsupported = p
                .extensions
                .goal_state_failure
                .as_ref()
                .is_some_and(|f| f.code == crate::extensions::lifecycle::CODE_UNSUPPORTED_FEATURES);
            let handlers = if unsupported {
                crate::extensions::report::handler_statuses_on_disk(
                    env.host.root,
                    env.host.config,
                    &p.extensions,
                    SystemTime::now(),
                )
            } else {
                crate::extensions::report::handler_statuses(
                    env.host.root,
                    env.host.config,
                    &p.goal_state,
                    &p.extensions,
                    SystemTime::now(),
                )
            };
            let outcome = match &p.extensions.goal_state_failure {
                Some(f) => GoalStateOutcome::Failed { code: f.code, message: f.message.clone() },
                None => GoalStateOutcome::Success,
            };
            (p.goal_state.svd_sequence_number, handlers, outcome, p.number)
        });
        env.state.extensions_reported(number);
        // os-release does not change under a running agent: read once.
        let distro =
            self.distro.get_or_insert_with(|| crate::base::distro::Distro::detect(env.host.root)).clone();
        let mut doc = status_document(env, &distro, seq, handlers, &outcome, self.vm_settings_supported);
        if self.last_status.as_ref() == Some(&doc) && !due {
            self.status_pending = false;
            return Ok(());
        }
        let now = timestamp_utc(SystemTime::now());
        doc.timestamp_utc.clone_from(&now);
        if let Some(vm) = &mut doc.aggregate_status.vm_artifacts_aggregate_status {
            vm.goal_state_aggregate_status.timestamp_utc = now;
        }
        let body = doc.to_json().map_err(|e| TaskError::from(format!("status document: {e}")))?;
        let uploaded =
            status_blob::upload(&self.hgap, &self.storage, who, blob, body.as_bytes(), SystemTime::now());
        // The container or the blob may have changed: the next poll asks the WireServer.
        self.wireserver_wanted |= uploaded.is_err();
        // As text: the upload error names the blob's URL, whose SAS token must not reach the log.
        uploaded.map_err(|e| TaskError::from(crate::base::logging::redact_sas(&e.to_string())))?;
        if let Err(e) = lib_dir::write_status(self.client.lib_dir(), self.history.as_ref(), body.as_bytes()) {
            self.files_failed("status file", &e);
        }
        doc.timestamp_utc.clear();
        if let Some(vm) = &mut doc.aggregate_status.vm_artifacts_aggregate_status {
            vm.goal_state_aggregate_status.timestamp_utc.clear();
        }
        self.last_status = Some(doc);
        self.status_pending = false;
        self.last_upload = Some(Instant::now());
        self.uploads += 1;
        Ok(())
    }
}

impl GoalStateTask {
    /// On a new extensions goal state (§7.4), hand it to the extensions task.
    fn handle_extensions(&mut self, env: &Env<'_>) {
        let updates = std::mem::take(&mut self.updates);
        let chosen = choose(
            self.current.as_ref(),
            self.extensions_config.as_ref(),
            self.vm_settings_gs.as_ref(),
            updates,
        );
        let gs = match chosen {
            Chosen::KeepCurrent => return,
            Chosen::ExtensionsConfig => self.extensions_config.clone(),
            Chosen::VmSettings => self.vm_settings_gs.clone(),
        };
        let Some(gs) = gs else { return };
        if self.current.as_ref().is_some_and(|c| c.id == gs.id) && !updates.incarnation_changed {
            return;
        }
        if let Some(blob) = &gs.status_upload_blob {
            self.blob = Some(StatusBlob::from(blob));
        }
        let Some(who) = self.identity.clone() else { return };
        env.state.hand_off_extensions(Handoff { goal_state: gs.clone(), who });
        self.current = Some(gs);
    }

    /// Once the extensions task has finished its first goal state, the initial period ends.
    fn check_initial_done(&mut self, env: &Env<'_>) {
        if self.initial_done {
            return;
        }
        if let Some(gs) = env.state.with_processed(|p| p.map(|p| p.goal_state.clone())) {
            self.initial_goal_state_done(&gs);
        }
    }

    /// The first extensions goal state has been handled: record it as waagent does and switch to
    /// the normal period.
    fn initial_goal_state_done(&mut self, gs: &crate::documents::extensions::ExtensionsGoalState) {
        self.initial_done = true;
        let path = self.client.lib_dir().join(INITIAL_GOAL_STATE_FILE);
        let text = format!("{} ({} handlers)\n", gs.id, gs.extensions.len());
        if let Err(e) = crate::base::files::write_atomic(
            &path,
            text.as_bytes(),
            crate::base::files::WriteOptions::mode(0o600),
        ) {
            self.files_failed("initial goal state marker", &e);
        }
        if self.initial_period != self.period {
            log::info!(
                "initial goal state {} done; polling every {} s from now on",
                gs.id,
                self.period.as_secs_f64()
            );
        }
    }

    /// Start a history entry for what this poll fetched (waagent's tag: the incarnation, and the
    /// vmSettings ETag when the HostGAPlugin serves them) and save it there.
    fn save_history(&mut self) {
        if self.for_history.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.for_history);
        let Some(seen) = &self.seen else { return };
        let tag = match (&self.vm_settings_etag, self.vm_settings_supported) {
            (Some(etag), true) => format!("{}-{etag}", seen.incarnation),
            _ => seen.incarnation.to_string(),
        };
        let lib = self.client.lib_dir().to_path_buf();
        let history = match History::start(&lib, SystemTime::now(), &tag) {
            Ok(h) => h,
            Err(e) => return self.files_failed("goal-state history", &e),
        };
        let files = [
            (history_file::GOAL_STATE, pending.goal_state),
            (history_file::HOSTING_ENV, pending.hosting_env),
            (history_file::SHARED_CONFIG, pending.shared_config),
            (history_file::EXTENSIONS_CONFIG, pending.extensions_config),
            (history_file::CERTIFICATES, pending.certificates),
            (history_file::VM_SETTINGS, pending.vm_settings),
        ];
        for (name, text) in files {
            if let Some(text) = text {
                if let Err(e) = history.save(name, text.as_bytes()) {
                    self.files_failed("goal-state history", &e);
                }
            }
        }
        self.history = Some(history);
    }
}

/// The protected settings of `gs` (still encrypted), which a saved copy must not hold.
fn protected_values(gs: Option<&crate::documents::extensions::ExtensionsGoalState>) -> Vec<&str> {
    gs.map(|gs| {
        gs.extensions
            .iter()
            .flat_map(|e| e.settings.iter())
            .filter_map(|s| s.protected_settings.as_ref().map(|p| p.expose().as_str()))
            .collect()
    })
    .unwrap_or_default()
}

impl Task for GoalStateTask {
    fn name(&self) -> &'static str {
        NAME
    }
    fn period(&self) -> Duration {
        if self.initial_done {
            self.period
        } else {
            self.initial_period
        }
    }
    fn run(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        self.polls += 1;
        self.started.get_or_insert_with(Instant::now);
        // vmSettings first once the container is known: what they say decides whether the
        // WireServer goal state is fetched in this poll (the module's documentation).
        let vm_settings_first = self.identity.is_some();
        if vm_settings_first {
            self.refresh_vm_settings();
        }
        let refreshed = if self.wireserver_due(Instant::now()) { self.refresh(env) } else { Ok(()) };
        if refreshed.is_ok() {
            if !vm_settings_first {
                self.refresh_vm_settings();
            }
            self.save_history();
            self.handle_extensions(env);
        }
        // Status still goes out on a failed poll (waagent reports status even then).
        let reported = self.report(env);
        // After the report, not before: a result the report took in has its marker written in
        // the same run (a daemon with a wake-up limit may stop right after the report).
        self.check_initial_done(env);
        refreshed.and(reported)
    }
    /// Woken by the extensions task when it is done: the status reports its result now; the
    /// next poll comes on schedule.
    fn woken(&mut self, env: &Env<'_>) -> Result<(), TaskError> {
        let reported = self.report(env);
        self.check_initial_done(env);
        reported
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn timestamp_utc(t: SystemTime) -> String {
    let ts = crate::base::logging::timestamp(t);
    format!("{}Z", &ts[..19])
}

/// How the last extensions goal state went, for `vmArtifactsAggregateStatus` (§11.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoalStateOutcome {
    /// Processed (individual handlers may still have failed).
    Success,
    /// Not processed as a whole, e.g. code 2001 for unsupported required features.
    Failed { code: i64, message: String },
}

/// The aggregate status document (version 1.1, spec §11.2), without its timestamps.
/// `fast_track`: the HostGAPlugin serves vmSettings, so `FastTrack` is advertised (§7.4).
pub fn status_document(
    env: &Env<'_>,
    distro: &crate::base::distro::Distro,
    in_svd_seq_no: u64,
    handlers: Vec<HandlerAggregateStatus>,
    outcome: &GoalStateOutcome,
    fast_track: bool,
) -> AggregateStatusDocument {
    let hostname =
        std::fs::read_to_string(env.host.root.path("/etc/hostname")).unwrap_or_default().trim().to_string();
    let message = match crate::extensions::report::disabled(env.host.root, env.host.config) {
        None => "Guest Agent is running",
        Some(crate::extensions::report::Disabled::ByConfig) => {
            "Guest Agent is running; extension processing is disabled (Extensions.Enabled=n)"
        }
        Some(crate::extensions::report::Disabled::ByMarker) => {
            "Guest Agent is running; extension processing is disabled (disable_agent file)"
        }
    };
    let feature = |k: &str| SupportedFeature { key: k.into(), value: "1.0".into() };
    let mut supported_features =
        vec![feature("MultipleExtensionsPerHandler"), feature("VersioningGovernance")];
    if fast_track {
        supported_features.push(feature("FastTrack"));
    }
    let (status, code, gs_message) = match outcome {
        GoalStateOutcome::Success => ("Success", 0, "GoalState executed successfully".to_string()),
        GoalStateOutcome::Failed { code, message } => {
            ("Failed", *code, crate::base::logging::redact_sas(message))
        }
    };
    AggregateStatusDocument {
        version: AggregateStatusDocument::VERSION.into(),
        timestamp_utc: String::new(),
        aggregate_status: AggregateStatus {
            guest_agent_status: GuestAgentStatus {
                version: crate::VERSION.into(),
                status: "Ready".into(),
                formatted_message: FormattedMessage::en_us(message),
                update_status: None,
            },
            handler_aggregate_status: handlers,
            vm_artifacts_aggregate_status: Some(VmArtifactsAggregateStatus {
                goal_state_aggregate_status: GoalStateAggregateStatus {
                    formatted_message: FormattedMessage::en_us(&gs_message),
                    timestamp_utc: String::new(),
                    in_svd_seq_no,
                    status: status.into(),
                    code,
                },
            }),
        },
        guest_os_info: GuestOsInfo {
            computer_name: hostname,
            os_name: distro.id.clone(),
            os_version: distro.version_id.clone(),
            version: crate::VERSION.into(),
        },
        supported_features,
    }
}

/// The `StatusUploadBlob` of an ExtensionsConfig document (URL and `statusBlobType`), read on its
/// own: the fallback for a document the full parser rejects.
pub fn status_blob_of(xml: &str) -> Option<StatusBlob> {
    let doc = crate::documents::xml::parse_platform(xml).ok()?;
    let blob = doc.child("StatusUploadBlob")?;
    Some(StatusBlob {
        url: blob.text_trimmed()?.to_string(),
        blob_type: blob.attr("statusBlobType").map_or(BlobType::BlockBlob, BlobType::from_text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(lib: &std::path::Path) -> GoalStateTask {
        use crate::platform::endpoint::{Endpoint, Endpoints};
        let e = Endpoint::new("127.0.0.1", 9);
        GoalStateTask::new(
            WireClient::new(Endpoints::explicit(e.clone(), e.clone(), e.clone()), lib),
            HostGaPluginClient::new(e),
            HttpClient::storage(&crate::platform::http::StorageProxy::Direct),
            Duration::from_secs(6),
        )
        .with_initial_period(Duration::from_secs(2))
    }

    #[test]
    fn the_initial_period_lasts_until_the_first_extensions_goal_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = task(dir.path());
        assert_eq!(Task::period(&t), Duration::from_secs(2));
        let gs = crate::documents::extensions::parse_extensions_config("<Extensions/>", Some(3))
            .expect("empty goal state");
        t.initial_goal_state_done(&gs);
        assert_eq!(Task::period(&t), Duration::from_secs(6));
        let marker = std::fs::read_to_string(dir.path().join(INITIAL_GOAL_STATE_FILE)).expect("marker");
        assert_eq!(marker, "incarnation_3 (0 handlers)\n");
        // A restart finds the marker: the normal period at once, as waagent.
        assert_eq!(Task::period(&task(dir.path())), Duration::from_secs(6));
    }

    #[test]
    fn the_wireserver_waits_only_while_vm_settings_answer_and_nothing_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = task(dir.path()).with_wireserver_period(Duration::from_secs(30));
        t.initial_done = true;
        let now = Instant::now() + Duration::from_secs(3600);
        let ago = |s: u64| Some(now - Duration::from_secs(s));
        t.wireserver_fetched = ago(10);
        // No vmSettings answer: every poll.
        assert!(t.wireserver_due(now));
        t.vm_settings_answered = true;
        assert!(!t.wireserver_due(now), "quiet, fetched 10 s ago");
        t.wireserver_fetched = ago(26);
        assert!(!t.wireserver_due(now));
        t.wireserver_fetched = ago(27);
        assert!(t.wireserver_due(now), "half a period early rather than a period late");
        t.wireserver_fetched = None;
        assert!(t.wireserver_due(now), "never fetched");
        t.wireserver_fetched = ago(10);
        t.changed_at = ago(50);
        assert!(t.wireserver_due(now), "within two WireServer periods of a change");
        t.changed_at = ago(61);
        assert!(!t.wireserver_due(now));
        t.wireserver_wanted = true;
        assert!(t.wireserver_due(now), "a status upload failed");
        t.wireserver_wanted = false;
        t.initial_done = false;
        assert!(t.wireserver_due(now), "the initial goal state is not done");
        t.initial_done = true;
        t.wireserver_period = Duration::from_secs(6);
        assert!(t.wireserver_due(now), "a WireServer period not above the poll period: every poll");
    }

    #[test]
    fn status_blob_from_extensions_config() {
        let xml = r#"<Extensions><StatusUploadBlob statusBlobType="PageBlob">
            https://x.blob.core.windows.net/vhds/s.status?sv=2&amp;sig=abc</StatusUploadBlob></Extensions>"#;
        assert_eq!(
            status_blob_of(xml),
            Some(StatusBlob {
                url: "https://x.blob.core.windows.net/vhds/s.status?sv=2&sig=abc".into(),
                blob_type: BlobType::PageBlob
            })
        );
        assert_eq!(status_blob_of("<Extensions/>"), None);
        let block = status_blob_of("<Extensions><StatusUploadBlob>u</StatusUploadBlob></Extensions>");
        assert_eq!(block.map(|b| b.blob_type), Some(BlobType::BlockBlob));
    }
}
