//! Bringing the handlers on disk to an extensions goal state (wire.md §10.1–§10.3): download,
//! install, enable, disable, uninstall and update, in dependency order, waiting for each
//! dependency to reach a terminal status.
//!
//! Results go to the handler's `config/HandlerStatus`; failures that happen before a handler has
//! a directory (download, version selection, configuration errors) are kept in
//! [`Extensions::failures`] for the report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::base::cmd::Cmd;
use crate::base::root::HostRoot;
use crate::documents::conf::Config;
use crate::documents::extensions::extensions_goal_state::{
    Extension, ExtensionSettings, ExtensionState, ExtensionsGoalState,
};
use crate::documents::extensions::handler_manifest::{HandlerManifest, UpdateMode};
use crate::documents::extensions::status::StatusValue;
use crate::documents::extensions::FlexibleVersion;
use crate::extensions::cgroups::{CgroupPolicy, Limits};
use crate::extensions::download::{Channels, Downloader, CODE_DOWNLOAD_FAILED};
use crate::extensions::exec::{self, CommandEnv, Operation};
use crate::extensions::handler::{installed_versions, HandlerDir, HandlerState};
use crate::host::Host;

/// How often a dependency's status file is checked.
pub const DEPENDENCY_POLL: Duration = Duration::from_secs(5);

/// Default bound on waiting for dependencies, shared by the whole goal state (waagent: 90 min).
pub const DEPENDENCY_DEADLINE: Duration = Duration::from_secs(90 * 60);

/// `vmArtifactsAggregateStatus` code of a goal state with unsupported required features (§7.3).
pub const CODE_UNSUPPORTED_FEATURES: i64 = 2001;

/// A handler-level failure to report (`NotReady`, with this code and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i64,
    pub message: String,
}

/// What the lifecycle needs from the daemon.
pub struct Context<'a> {
    pub host: Host<'a>,
    pub downloader: &'a Downloader<'a>,
    /// The WireServer's address, for `AZURE_GUEST_AGENT_WIRE_PROTOCOL_ADDRESS`.
    pub wire_address: String,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("host", &self.host).finish_non_exhaustive()
    }
}

/// The extension handling state the daemon keeps between goal states.
#[derive(Debug, Clone, Default)]
pub struct Extensions {
    pub channels: Channels,
    /// Handler (lower-case name) or `handler/extension` → a failure not recorded on disk.
    pub failures: BTreeMap<String, Failure>,
    /// The ID of the last goal state processed.
    pub last_processed: Option<String>,
    /// Why the last goal state as a whole could not be processed (the status document's
    /// `vmArtifactsAggregateStatus` is then `Failed` with this code and message); `None` when it
    /// was processed.
    pub goal_state_failure: Option<Failure>,
    /// Handler (lower-case name) or `handler/extension` → why the extension policy
    /// ([`super::policy`]) kept it from being processed.
    pub disallowed: BTreeMap<String, Failure>,
    cloud_init_waited: bool,
}

fn key(handler: &str, ext: Option<&str>) -> String {
    match ext {
        Some(e) => format!("{}/{}", handler.to_ascii_lowercase(), e.to_ascii_lowercase()),
        None => handler.to_ascii_lowercase(),
    }
}

/// A package to download: its URIs and the manifest URI that named it.
type Package = (Vec<String>, String);

/// One (handler, extension settings) pair to process.
struct Item<'g> {
    handler: &'g Extension,
    settings: Option<&'g ExtensionSettings>,
    level: i64,
}

impl Extensions {
    /// Where handlers live: `Lib.Dir` and `Extension.LogDir` under the root.
    pub fn dirs(root: &HostRoot, config: &Config) -> (PathBuf, PathBuf) {
        (root.path(config.lib_dir.as_path()), root.path(config.extension_log_dir.as_path()))
    }

    /// A failure recorded for `handler` (and `ext`), if any.
    pub fn failure(&self, handler: &str, ext: Option<&str>) -> Option<&Failure> {
        self.failures.get(&key(handler, ext)).or_else(|| self.failures.get(&key(handler, None)))
    }

    /// Why the extension policy kept `handler` (and `ext`) from being processed, if it did.
    pub fn disallowed(&self, handler: &str, ext: Option<&str>) -> Option<&Failure> {
        self.disallowed.get(&key(handler, ext)).or_else(|| self.disallowed.get(&key(handler, None)))
    }

    /// Process `gs`: every handler in dependency order, then remove handlers no longer wanted.
    pub fn process(&mut self, ctx: &Context<'_>, gs: &ExtensionsGoalState) {
        self.failures.clear();
        self.disallowed.clear();
        self.goal_state_failure = None;
        self.last_processed = Some(gs.id.clone());
        // waagent holds extensions only with EnableOverProvisioning=y (its default).
        if gs.on_hold && ctx.host.config.enable_over_provisioning {
            log::info!("the extensions goal state {} is on hold: nothing is run", gs.id);
            return;
        }
        if gs.on_hold {
            log::info!(
                "the extensions goal state {} is on hold; run anyway (EnableOverProvisioning=n)",
                gs.id
            );
        }
        let unsupported = gs.unsupported_features(&["MultipleExtensionsPerHandler"]);
        if !unsupported.is_empty() {
            log::warn!("the extensions goal state {} needs unsupported features {unsupported:?}", gs.id);
            // Nothing runs; the report shows the handlers on disk instead (§11.1).
            let message =
                format!("Failing GS {} as Unsupported features found: {}", gs.id, unsupported.join(", "));
            self.goal_state_failure = Some(Failure { code: CODE_UNSUPPORTED_FEATURES, message });
            return;
        }
        self.wait_for_cloud_init(ctx);
        // Read once per goal state, as waagent.
        let policy = super::policy::Engine::load(ctx.host.root, ctx.host.config);
        let items = order(gs);
        let max_level = items.iter().map(|i| i.level).max().unwrap_or(0);
        let dependency_deadline = Instant::now()
            + ctx
                .host
                .config
                .wala_extension_dependency_timeout
                .map_or(DEPENDENCY_DEADLINE, Duration::from_secs);
        let mut blocked: Option<String> = None;
        for item in &items {
            let ext_name = item.settings.map(|s| s.name.as_str()).filter(|_| item.handler.is_multi_config);
            let refusal = policy.refusal(&item.handler.name, item.handler.state, ctx.host.config);
            // An invalid policy stops every extension, dependencies aside (waagent's order).
            if let (super::policy::Engine::Invalid(_), Some(f)) = (&policy, &refusal) {
                self.disallowed.insert(key(&item.handler.name, ext_name), f.clone());
                continue;
            }
            if let Some(dep) = &blocked {
                self.failures.insert(
                    key(&item.handler.name, ext_name),
                    Failure {
                        code: -1,
                        message: format!(
                            "Skipping processing of extensions since execution of dependent extension {dep} failed"
                        ),
                    },
                );
                continue;
            }
            let ok = match refusal {
                Some(f) => {
                    log::warn!("{}", f.message);
                    self.disallowed.insert(key(&item.handler.name, ext_name), f);
                    false
                }
                None => self.process_item(ctx, item),
            };
            if (0..max_level).contains(&item.level) {
                let name = ext_name.unwrap_or(&item.handler.name).to_string();
                if !ok || !self.wait_terminal(ctx, item, dependency_deadline) {
                    log::warn!("{name} did not succeed; later extensions are skipped");
                    blocked = Some(name);
                }
            }
        }
        self.cleanup(ctx, gs);
    }

    /// `Extensions.WaitForCloudInit`: `cloud-init status --wait`, once, bounded.
    fn wait_for_cloud_init(&mut self, ctx: &Context<'_>) {
        if !ctx.host.config.wait_for_cloud_init || self.cloud_init_waited {
            return;
        }
        self.cloud_init_waited = true;
        let timeout = Duration::from_secs(ctx.host.config.wait_for_cloud_init_timeout.max(1));
        let cmd = Cmd::new("cloud-init").args(["status", "--wait"]).timeout(timeout);
        match ctx.host.runner.run(&cmd) {
            Ok(_) => log::info!("cloud-init has finished"),
            Err(e) => log::warn!("waiting for cloud-init: {e}; running extensions anyway"),
        }
    }

    /// One item; `false` when it failed.
    fn process_item(&mut self, ctx: &Context<'_>, item: &Item<'_>) -> bool {
        let h = item.handler;
        let ext = item.settings.map(|s| s.name.as_str()).filter(|_| h.is_multi_config);
        if let Some(f) = &h.failure {
            self.failures.insert(key(&h.name, None), Failure { code: -1, message: f.to_string() });
            return false;
        }
        let result = match h.state {
            Some(ExtensionState::Enabled) => self.enable(ctx, h, item.settings),
            Some(ExtensionState::Disabled) => self.disable(ctx, h, item.settings),
            Some(ExtensionState::Uninstall) => self.uninstall(ctx, h),
            None => {
                Err(Failure { code: -1, message: "Received empty Extensions.Plugins.Plugin.state".into() })
            }
        };
        match result {
            Ok(()) => true,
            Err(f) => {
                log::warn!("{} {}: {}", h.name, h.version, f.message);
                self.failures.insert(key(&h.name, ext), f);
                false
            }
        }
    }

    fn command_env(
        &self,
        ctx: &Context<'_>,
        h: &Extension,
        settings: Option<&ExtensionSettings>,
    ) -> CommandEnv {
        CommandEnv {
            wire_address: ctx.wire_address.clone(),
            sequence_number: settings.map_or(0, |s| s.sequence_number),
            extension_name: settings.filter(|_| h.is_multi_config).map(|s| s.name.clone()),
            extra: Vec::new(),
            timeout: ctx.host.config.wala_extension_command_timeout.map(Duration::from_secs),
        }
    }

    /// Run one command; a failure becomes a [`Failure`] (and `HandlerStatus` NotReady).
    fn run(
        &self,
        ctx: &Context<'_>,
        dir: &HandlerDir,
        manifest: &HandlerManifest,
        op: Operation,
        env: &CommandEnv,
    ) -> Result<exec::CommandOutcome, Failure> {
        let command = command_of(manifest, op);
        exec_command(ctx, dir, manifest, op, env)
            .map_err(|e| Failure { code: op.error_code(), message: e.to_string() })
            .and_then(|out| {
                if out.success() {
                    Ok(out)
                } else {
                    Err(Failure {
                        code: out.error_code(op),
                        message: out.failure_message(op, &dir.full_name(), command),
                    })
                }
            })
    }

    /// An old version's disable or uninstall during an update (§10.3): its exit code text for the
    /// next command's environment, or, unless `tolerate` (`continueOnUpdateFailure`), a 1008
    /// failure with waagent's "; ContinueOnUpdate: False" suffix.
    fn run_during_update(
        &self,
        ctx: &Context<'_>,
        dir: &HandlerDir,
        manifest: &HandlerManifest,
        op: Operation,
        env: &CommandEnv,
        tolerate: bool,
    ) -> Result<String, Failure> {
        let command = command_of(manifest, op);
        let (code, message) = match exec_command(ctx, dir, manifest, op, env) {
            Ok(out) if out.success() => return Ok(out.exit_code_text()),
            Ok(out) => (out.exit_code_text(), out.failure_message(op, &dir.full_name(), command)),
            Err(e) => (op.error_code().to_string(), e.to_string()),
        };
        let message = format!("{message}; ContinueOnUpdate: {}", if tolerate { "True" } else { "False" });
        log::warn!("{message}");
        if tolerate {
            Ok(code)
        } else {
            Err(Failure { code: 1008, message })
        }
    }

    /// The version to run: an installed one the request prefix-matches, else the manifest's choice.
    fn resolve(
        &mut self,
        ctx: &Context<'_>,
        h: &Extension,
    ) -> Result<(HandlerDir, Option<Package>), Failure> {
        let (lib, logs) = Self::dirs(ctx.host.root, ctx.host.config);
        let requested = FlexibleVersion::parse(&h.version).map_err(|why| Failure {
            code: CODE_DOWNLOAD_FAILED,
            message: format!("invalid version {}: {why}", h.version),
        })?;
        let name_err = |e: crate::documents::extensions::names::NameError| Failure {
            code: CODE_DOWNLOAD_FAILED,
            message: e.to_string(),
        };
        let exact = HandlerDir::new(&lib, &logs, &h.name, &h.version).map_err(name_err)?;
        if matches!(exact.state(), HandlerState::Installed | HandlerState::Enabled) {
            return Ok((exact, None));
        }
        let (manifest, manifest_uri) = ctx
            .downloader
            .manifest(&mut self.channels, &h.manifest_uris)
            .map_err(|e| Failure { code: CODE_DOWNLOAD_FAILED, message: e.to_string() })?;
        let pkg = manifest
            .select(&h.name, &h.version, ExtensionState::Enabled, None)
            .map_err(|e| Failure { code: CODE_DOWNLOAD_FAILED, message: e.to_string() })?;
        if !requested.matches(&pkg.version) {
            return Err(Failure {
                code: CODE_DOWNLOAD_FAILED,
                message: format!("Unable to find version {} in manifest", h.version),
            });
        }
        let version = pkg.version.to_string();
        let dir = HandlerDir::new(&lib, &logs, &h.name, &version).map_err(name_err)?;
        Ok((dir, Some((pkg.uris.clone(), manifest_uri))))
    }

    fn enable(
        &mut self,
        ctx: &Context<'_>,
        h: &Extension,
        settings: Option<&ExtensionSettings>,
    ) -> Result<(), Failure> {
        let (lib, logs) = Self::dirs(ctx.host.root, ctx.host.config);
        let (dir, download) = self.resolve(ctx, h)?;
        let file_err = |e: super::handler::HandlerError| Failure { code: -1, message: e.to_string() };
        let mut env = self.command_env(ctx, h, settings);
        let ext_key = settings.map_or_else(|| h.name.clone(), |s| s.name.clone());
        if let Some((uris, manifest_uri)) = download {
            let signature = super::signature::SignatureCheck::new(
                ctx.host.config.enable_signature_validation,
                &lib,
                h,
                dir.version(),
            );
            ctx.downloader
                .package_checked(&mut self.channels, &dir, &uris, &manifest_uri, signature.as_ref())
                .map_err(|e| Failure { code: CODE_DOWNLOAD_FAILED, message: e.to_string() })?;
            let manifest = dir.initialize().map_err(file_err)?;
            if let Some(check) = &signature {
                check.after_unpack(dir.base(), &manifest);
            }
            dir.set_state(HandlerState::NotInstalled).map_err(file_err)?;
            if h.is_multi_config && !manifest.supports_multiple_extensions {
                return Err(Failure {
                    code: -1,
                    message: format!("Handler {} does not support multi-config but the goal state says so (inconsistent data)", h.name),
                });
            }
            dir.write_settings(h, settings).map_err(file_err)?;
            let old =
                installed_versions(&lib, &logs, &h.name).into_iter().find(|d| d.version() != dir.version());
            let uninstall_code = match old {
                None => {
                    self.run(
                        ctx,
                        &dir,
                        &manifest,
                        Operation::Install,
                        &CommandEnv { extra: vec![not_run("UNINSTALL")], ..env.clone() },
                    )
                    .inspect_err(|f| {
                        let _ = dir.set_status("NotReady", f.code, &f.message, h.is_multi_config);
                    })?;
                    "NOT_RUN".to_string()
                }
                Some(old) => self.update(ctx, h, settings, &old, &dir, &manifest).inspect_err(|f| {
                    // Reported for the requested version, as waagent does.
                    let _ = dir.set_status("NotReady", f.code, &f.message, h.is_multi_config);
                })?,
            };
            dir.set_state(HandlerState::Installed).map_err(file_err)?;
            dir.set_status("NotReady", 0, "Plugin installed but not enabled", h.is_multi_config)
                .map_err(file_err)?;
            env.extra = vec![("AZURE_GUEST_AGENT_UNINSTALL_CMD_EXIT_CODE".into(), uninstall_code)];
        } else {
            env.extra = vec![not_run("UNINSTALL")];
        }
        let manifest = dir.manifest().map_err(file_err)?;
        dir.write_settings(h, settings).map_err(file_err)?;
        let seq = settings.map_or(0, |s| s.sequence_number);
        if settings.is_some_and(|s| s.state == ExtensionState::Disabled) {
            // Multi-config: this extension is disabled.
            if dir.last_enabled_seq(&ext_key).is_some() {
                let _ = self.run(ctx, &dir, &manifest, Operation::Disable, &env);
                dir.set_last_enabled_seq(&ext_key, None).map_err(file_err)?;
            }
            // waagent removes a disabled extension's settings and status files; it then leaves
            // the status document (§11.1).
            dir.remove_extension_files(&ext_key);
            return Ok(());
        }
        if dir.state() == HandlerState::Enabled && dir.last_enabled_seq(&ext_key) == Some(seq) {
            log::debug!("{} {ext_key}: sequence number {seq} already enabled", dir.full_name());
            return Ok(());
        }
        self.run(ctx, &dir, &manifest, Operation::Enable, &env).inspect_err(|f| {
            let _ = dir.set_status("NotReady", f.code, &f.message, h.is_multi_config);
        })?;
        dir.set_last_enabled_seq(&ext_key, Some(seq)).map_err(file_err)?;
        dir.set_state(HandlerState::Enabled).map_err(file_err)?;
        dir.set_status("Ready", 0, "Plugin enabled", h.is_multi_config).map_err(file_err)?;
        Ok(())
    }

    /// §10.3 update: old disable, copy `mrseq` and status files, update, old uninstall, remove the
    /// old directory, new install (per `updateMode`). Returns the old uninstall's exit code text.
    fn update(
        &mut self,
        ctx: &Context<'_>,
        h: &Extension,
        settings: Option<&ExtensionSettings>,
        old: &HandlerDir,
        new: &HandlerDir,
        manifest: &HandlerManifest,
    ) -> Result<String, Failure> {
        let env = self.command_env(ctx, h, settings);
        let old_manifest = old.manifest().map_err(|e| Failure { code: 1008, message: e.to_string() })?;
        let tolerate = manifest.continue_on_update_failure;
        let mut disable_code = "NOT_RUN".to_string();
        // Multi-config: the old disable runs for each extension enabled on the old version.
        let mut disable_codes: Vec<(String, String)> = Vec::new();
        if old.state() == HandlerState::Enabled {
            if h.is_multi_config {
                for s in &h.settings {
                    let code = if old.last_enabled_seq(&s.name).is_some() {
                        let env = self.command_env(ctx, h, Some(s));
                        self.run_during_update(ctx, old, &old_manifest, Operation::Disable, &env, tolerate)?
                    } else {
                        "NOT_RUN".to_string()
                    };
                    disable_codes.push((s.name.clone(), code));
                }
            } else {
                disable_code =
                    self.run_during_update(ctx, old, &old_manifest, Operation::Disable, &env, tolerate)?;
            }
        }
        let _ = std::fs::copy(old.base().join("mrseq"), new.base().join("mrseq"));
        for e in std::fs::read_dir(old.status_dir()).into_iter().flatten().flatten() {
            let _ = std::fs::copy(e.path(), new.status_dir().join(e.file_name()));
        }
        let newer = FlexibleVersion::parse(new.version()).ok() > FlexibleVersion::parse(old.version()).ok();
        let update_env = CommandEnv {
            extra: vec![
                ("VERSION".into(), new.version().to_string()),
                ("AZURE_GUEST_AGENT_UPDATING_FROM_VERSION".into(), old.version().to_string()),
                if h.is_multi_config {
                    let list: Vec<serde_json::Value> = disable_codes
                        .iter()
                        .map(|(name, code)| serde_json::json!({"extensionName": name, "exitCode": code}))
                        .collect();
                    (
                        "AZURE_GUEST_AGENT_DISABLE_CMD_EXIT_CODES_MULTIPLE_EXTENSIONS".into(),
                        serde_json::Value::from(list).to_string(),
                    )
                } else {
                    ("AZURE_GUEST_AGENT_DISABLE_CMD_EXIT_CODE".into(), disable_code)
                },
            ],
            ..env.clone()
        };
        let updated = if newer {
            self.run(ctx, new, manifest, Operation::Update, &update_env)
        } else {
            self.run(ctx, old, &old_manifest, Operation::Update, &update_env)
        };
        if let Err(f) = updated {
            let _ = new.set_state(HandlerState::FailedUpgrade);
            let _ = new.set_status("NotReady", 1008, &f.message, h.is_multi_config);
            return Err(Failure { code: 1008, message: f.message });
        }
        let uninstall_code =
            self.run_during_update(ctx, old, &old_manifest, Operation::Uninstall, &env, tolerate)?;
        let _ = old.remove();
        if manifest.update_mode == UpdateMode::UpdateWithInstall {
            let install_env = CommandEnv {
                extra: vec![("AZURE_GUEST_AGENT_UNINSTALL_CMD_EXIT_CODE".into(), uninstall_code.clone())],
                ..env
            };
            self.run(ctx, new, manifest, Operation::Install, &install_env)?;
        }
        Ok(uninstall_code)
    }

    /// The installed version of `h` (the highest), if any.
    fn installed(ctx: &Context<'_>, h: &Extension) -> Option<HandlerDir> {
        let (lib, logs) = Self::dirs(ctx.host.root, ctx.host.config);
        installed_versions(&lib, &logs, &h.name).into_iter().next()
    }

    fn disable(
        &mut self,
        ctx: &Context<'_>,
        h: &Extension,
        settings: Option<&ExtensionSettings>,
    ) -> Result<(), Failure> {
        let Some(dir) = Self::installed(ctx, h) else { return Ok(()) };
        let file_err = |e: super::handler::HandlerError| Failure { code: -1, message: e.to_string() };
        if dir.state() == HandlerState::Enabled {
            let manifest = dir.manifest().map_err(file_err)?;
            self.run(ctx, &dir, &manifest, Operation::Disable, &self.command_env(ctx, h, settings))?;
            let ext_key = settings.map_or_else(|| h.name.clone(), |s| s.name.clone());
            dir.set_last_enabled_seq(&ext_key, None).map_err(file_err)?;
            dir.set_state(HandlerState::Installed).map_err(file_err)?;
            dir.set_status("NotReady", 0, "Plugin disabled", h.is_multi_config).map_err(file_err)?;
        }
        Ok(())
    }

    fn uninstall(&mut self, ctx: &Context<'_>, h: &Extension) -> Result<(), Failure> {
        let (lib, logs) = Self::dirs(ctx.host.root, ctx.host.config);
        for dir in installed_versions(&lib, &logs, &h.name) {
            let Ok(manifest) = dir.manifest() else {
                let _ = dir.remove();
                continue;
            };
            let env = self.command_env(ctx, h, h.settings.first().filter(|_| !h.is_multi_config));
            if dir.state() == HandlerState::Enabled {
                let _ = self.run(ctx, &dir, &manifest, Operation::Disable, &env);
            }
            if let Err(f) = self.run(ctx, &dir, &manifest, Operation::Uninstall, &env) {
                log::warn!("{}: {}", dir.full_name(), f.message);
            }
            let _ = dir.remove();
            let _ = std::fs::remove_file(dir.package_zip());
        }
        Ok(())
    }

    /// Wait until the item's status file says `success` or `error`; `true` for success.
    fn wait_terminal(&self, ctx: &Context<'_>, item: &Item<'_>, deadline: Instant) -> bool {
        let (lib, logs) = Self::dirs(ctx.host.root, ctx.host.config);
        if item.handler.state != Some(ExtensionState::Enabled) {
            return true;
        }
        let Some(dir) = installed_versions(&lib, &logs, &item.handler.name).into_iter().next() else {
            return false;
        };
        let ext = item.settings.filter(|_| item.handler.is_multi_config).map(|s| s.name.as_str());
        let seq = item.settings.map_or(0, |s| s.sequence_number);
        loop {
            match dir.read_status(ext, seq) {
                Some((Ok(s), _)) if s.status == StatusValue::Success => return true,
                Some((Ok(s), _)) if s.status == StatusValue::Error => return false,
                Some((Err(_), _)) => return false,
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                log::warn!("{}: no terminal status before the dependency deadline", dir.full_name());
                return false;
            }
            std::thread::sleep(DEPENDENCY_POLL.min(deadline - now));
        }
    }

    /// Remove handler directories (and zips) of handlers the goal state no longer names.
    fn cleanup(&self, ctx: &Context<'_>, gs: &ExtensionsGoalState) {
        let (lib, logs) = Self::dirs(ctx.host.root, ctx.host.config);
        for dir in super::handler::handler_dirs(&lib, &logs) {
            if gs.extension(dir.name()).is_none() {
                log::info!("removing {}: no longer in the goal state", dir.full_name());
                let _ = dir.remove();
            }
        }
    }
}

fn not_run(what: &str) -> (String, String) {
    (format!("AZURE_GUEST_AGENT_{what}_CMD_EXIT_CODE"), "NOT_RUN".to_string())
}

/// §10.2: (handler, settings) pairs sorted by dependency level; whatever is not enabled goes
/// first, in reverse order (`-(level)-1`).
fn order(gs: &ExtensionsGoalState) -> Vec<Item<'_>> {
    let mut items: Vec<Item<'_>> = Vec::new();
    for h in &gs.extensions {
        let handler_enabled = h.state == Some(ExtensionState::Enabled);
        if h.settings.is_empty() {
            let level = if handler_enabled { 0 } else { -1 };
            items.push(Item { handler: h, settings: None, level });
        }
        for s in &h.settings {
            let enabled = handler_enabled && s.state == ExtensionState::Enabled;
            let level = if enabled { s.dependency_level } else { -s.dependency_level - 1 };
            items.push(Item { handler: h, settings: Some(s), level });
        }
    }
    items.sort_by_key(|i| i.level);
    items
}

/// The manifest's command line for `op`.
fn command_of(manifest: &HandlerManifest, op: Operation) -> &str {
    match op {
        Operation::Install => &manifest.install_command,
        Operation::Enable => &manifest.enable_command,
        Operation::Disable => &manifest.disable_command,
        Operation::Update => &manifest.update_command,
        Operation::Uninstall => &manifest.uninstall_command,
    }
}

/// Run the manifest's command for `op` in `dir`, under the configured cgroup policy and the
/// manifest's resource limits.
fn exec_command(
    ctx: &Context<'_>,
    dir: &HandlerDir,
    manifest: &HandlerManifest,
    op: Operation,
    env: &CommandEnv,
) -> Result<exec::CommandOutcome, exec::ExecError> {
    let cgroups = CgroupPolicy::new(ctx.host.config, ctx.host.root);
    let limits = Limits::from_manifest(manifest.resource_limits.as_ref());
    exec::run(ctx.host.runner, &cgroups, limits, dir, op, command_of(manifest, op), env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disables_and_uninstalls_come_first_in_reverse_then_enables_ascending() {
        let xml = r#"<Extensions><Plugins>
            <Plugin name="P.A" version="1.0" state="enabled" location="http://x/a"/>
            <Plugin name="P.B" version="1.0" state="enabled" location="http://x/b"/>
            <Plugin name="P.C" version="1.0" state="uninstall" location="http://x/c"/>
            <Plugin name="P.D" version="1.0" state="disabled" location="http://x/d"/>
          </Plugins><PluginSettings>
            <Plugin name="P.A" version="1.0"><DependsOn dependencyLevel="2"><DependsOnExtension handler="P.B"/></DependsOn><RuntimeSettings seqNo="1">{"runtimeSettings":[{"handlerSettings":{"publicSettings":{}}}]}</RuntimeSettings></Plugin>
            <Plugin name="P.B" version="1.0"><DependsOn dependencyLevel="1"></DependsOn><RuntimeSettings seqNo="1">{"runtimeSettings":[{"handlerSettings":{"publicSettings":{}}}]}</RuntimeSettings></Plugin>
            <Plugin name="P.C" version="1.0"><DependsOn dependencyLevel="1"></DependsOn><RuntimeSettings seqNo="1">{"runtimeSettings":[{"handlerSettings":{"publicSettings":{}}}]}</RuntimeSettings></Plugin>
            <Plugin name="P.D" version="1.0"><DependsOn dependencyLevel="3"></DependsOn><RuntimeSettings seqNo="1">{"runtimeSettings":[{"handlerSettings":{"publicSettings":{}}}]}</RuntimeSettings></Plugin>
          </PluginSettings></Extensions>"#;
        let gs = crate::documents::extensions::parse_extensions_config(xml, Some(1)).expect("parse");
        let names: Vec<(&str, i64)> = order(&gs).iter().map(|i| (i.handler.name.as_str(), i.level)).collect();
        assert_eq!(names, [("P.D", -4), ("P.C", -2), ("P.B", 1), ("P.A", 2)]);
    }
}
