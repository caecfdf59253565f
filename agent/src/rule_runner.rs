//! Runs the rule engine live: evaluates every group on the wall clock, `evaluation_delay`
//! behind it; logs alert transitions (the default "alerts to stdout"); keeps
//! `sidewatch_alerts` current; saves the engine's state after each evaluation and at
//! shutdown; reloads rule files on change or SIGHUP, keeping the state of unchanged
//! rules and the last good set when a file is broken.
//!
//! The engine itself (`rules/`) is pure; this is its thin IO shell. The sink stage feeds
//! it records (`Engine::ingest`) under the same mutex.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, RulesConfig};
use crate::rules::alert::{AlertEvent, AlertState};
use crate::rules::engine::{Engine, EngineOptions, EngineState};
use crate::rules::labels::Labels;
use crate::state::StateStore;
use crate::telemetry::{Counter, Telemetry};

/// The engine shared between the sink stage (ingest), the runner (evaluate) and the API.
pub type SharedEngine = Arc<Mutex<Engine>>;

pub fn lock(engine: &SharedEngine) -> MutexGuard<'_, Engine> {
    // A panic while holding the lock leaves a consistent-enough engine: keep going.
    engine.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The engine options a config implies.
pub fn engine_options(config: &Config) -> EngineOptions {
    let mut alert_labels = Labels::new();
    alert_labels.insert("service".into(), config.service.name.clone());
    alert_labels.insert("environment".into(), config.service.environment.clone());
    EngineOptions {
        max_series: config.rules.max_series,
        alert_labels,
        sources: config
            .logs
            .iter()
            .map(|s| (s.name.to_string(), s.fields.clone()))
            .collect(),
    }
}

pub struct RuleRunner {
    engine: SharedEngine,
    store: StateStore,
    config_path: Option<PathBuf>,
    rules: RulesConfig,
    options: EngineOptions,
    telemetry: Arc<Telemetry>,
    reloads_ok: Counter,
    reloads_failed: Counter,
    /// Signalled after every evaluation: the notifier wakes to see the new alerts.
    evaluated: Arc<tokio::sync::Notify>,
}

impl RuleRunner {
    /// Builds the engine from the config's rules and whatever state the last run saved.
    pub fn new(
        config: &Config,
        store: StateStore,
        telemetry: &Arc<Telemetry>,
    ) -> anyhow::Result<RuleRunner> {
        let rules = crate::rules::load(&config.rules).map_err(|errors| {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            anyhow::anyhow!("invalid rule files:\n{}", text.join("\n"))
        })?;
        for warning in &rules.warnings {
            tracing::warn!(component = "rules", "{warning}");
        }
        let options = engine_options(config);
        let mut engine = Engine::new(rules, options.clone());
        let now = unix_nanos() - nanos(config.rules.evaluation_delay);
        match store.rule_state() {
            Ok(Some(bytes)) => match serde_json::from_slice::<EngineState>(&bytes) {
                Ok(state) => {
                    let saved_at = state.saved_at;
                    engine.restore(state, now, true);
                    tracing::info!(
                        component = "rules",
                        down_seconds = (now - saved_at) as f64 / 1e9,
                        "rule state restored: windows, alerts and `for` timers"
                    );
                }
                Err(e) => tracing::warn!(
                    component = "rules",
                    "the saved rule state cannot be read ({e}); rules start empty"
                ),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(component = "rules", "cannot read the saved rule state: {e}"),
        }
        engine.start_if_new(now);
        let groups = engine.rules.groups.len();
        let count: usize = engine.rules.groups.iter().map(|g| g.rules.len()).sum();
        tracing::info!(
            component = "rules",
            groups,
            rules = count,
            files = ?engine.rules.files,
            "rules loaded"
        );
        Ok(RuleRunner {
            engine: Arc::new(Mutex::new(engine)),
            store,
            config_path: config.path.clone(),
            rules: config.rules.clone(),
            options,
            telemetry: telemetry.clone(),
            evaluated: Arc::new(tokio::sync::Notify::new()),
            reloads_ok: telemetry.counter(
                "sidewatch_rule_reloads_total",
                "Rule reloads (file change or SIGHUP), by outcome",
                &[("outcome", "success")],
            ),
            reloads_failed: telemetry.counter(
                "sidewatch_rule_reloads_total",
                "Rule reloads (file change or SIGHUP), by outcome",
                &[("outcome", "failure")],
            ),
        })
    }

    pub fn engine(&self) -> SharedEngine {
        self.engine.clone()
    }

    /// Notified after every evaluation.
    pub fn evaluated(&self) -> Arc<tokio::sync::Notify> {
        self.evaluated.clone()
    }

    /// Evaluates on schedule until `shutdown`; reloads on SIGHUP or a change of the
    /// config or a rule file.
    pub async fn run_shared(self: Arc<Self>, shutdown: CancellationToken) {
        self.run(shutdown).await
    }

    async fn run(&self, shutdown: CancellationToken) {
        let delay = nanos(self.rules.evaluation_delay);
        let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<&'static str>(4);
        let _watcher = self.watch(reload_tx.clone());
        tokio::spawn(forward_sighup(reload_tx, shutdown.clone()));
        let mut announced = std::collections::HashSet::new();
        loop {
            let next = self.with_engine(|engine| engine.next_tick()).await;
            let wait = match next {
                Some(t) => Duration::from_nanos((t + delay - unix_nanos()).max(0) as u64),
                // No rules: nothing to evaluate until a reload brings some.
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                why = reload_rx.recv() => {
                    if let Some(why) = why {
                        // Let an editor finish writing (several events per save).
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        while reload_rx.try_recv().is_ok() {}
                        self.reload(why);
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    let now = unix_nanos() - delay;
                    let events = self.with_engine(move |engine| engine.advance(now)).await;
                    self.evaluated.notify_one();
                    self.report(&events);
                    self.report_limits(&mut announced).await;
                    self.save(now).await;
                }
            }
        }
    }

    /// Saves the state once more after the sink stage has drained: the windows then hold
    /// every record whose checkpoint was committed.
    pub async fn save_final(&self) {
        let now = unix_nanos() - nanos(self.rules.evaluation_delay);
        self.save(now).await;
    }

    /// `f` with the engine locked, on the blocking pool: the sink holds the lock while it
    /// ingests a batch (for long stretches when the agent is CPU-throttled) and an
    /// evaluation is CPU work; neither may stall a runtime worker, which the health
    /// probes, the API's clients and the exporters share.
    async fn with_engine<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine) -> R + Send + 'static,
    ) -> R {
        let engine = self.engine.clone();
        crate::off_worker(move || f(&mut lock(&engine))).await
    }

    async fn save(&self, now: i64) {
        let bytes = self
            .with_engine(move |engine| serde_json::to_vec(&engine.snapshot(now)))
            .await;
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(component = "rules", "cannot encode the rule state: {e}");
                return;
            }
        };
        // Written after the engine's lock is released: the sink never waits on this fsync.
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || store.save_rule_state(&bytes)).await;
        if let Ok(Err(e)) = result {
            tracing::warn!(component = "rules", "cannot save the rule state: {e}");
        }
    }

    /// Says once per log window that it reached `max_series`.
    async fn report_limits(&self, announced: &mut std::collections::HashSet<String>) {
        let limited = self
            .with_engine(|engine| {
                let windows = engine.logs.windows.iter().zip(&engine.window_users);
                windows
                    .filter(|(window, _)| window.series_limit_hit)
                    .map(|(window, users)| {
                        let rules: Vec<String> =
                            users.iter().map(|(g, r)| format!("{g}/{r}")).collect();
                        (window.key.clone(), rules, window.max_series)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        for (key, rules, max_series) in limited {
            if announced.insert(key) {
                tracing::warn!(
                    component = "rules",
                    rules = ?rules,
                    max_series,
                    "a rule's log query reached rules.max_series: records of new series are not counted (sidewatch_rule_series_limited_total); group by fewer or coarser fields, or raise the limit"
                );
            }
        }
    }

    fn report(&self, events: &[AlertEvent]) {
        for event in events {
            let state = match event.state {
                AlertState::Pending => continue,
                AlertState::Firing => "firing",
                AlertState::Inactive => "resolved",
            };
            tracing::warn!(
                component = "rules",
                alertname = event.alert.labels.get("alertname").unwrap_or(""),
                state,
                value = event.alert.value,
                labels = %crate::notify::payload::labels_json(&event.alert.labels),
                annotations = %crate::notify::payload::annotations_json(&event.alert.annotations),
                "alert {state}"
            );
        }
        let _ = &self.telemetry;
    }

    /// Reloads the rules: the config's `rules:` section and every rule file. A broken
    /// file is reported with its positions and the running set stays.
    fn reload(&self, why: &str) {
        let rules_config = match &self.config_path {
            Some(path) => match crate::config::load(path) {
                Ok(config) => config.rules,
                Err(errors) => {
                    self.reloads_failed.inc();
                    tracing::error!(
                        component = "rules",
                        reason = why,
                        "reload rejected, the running rules stay:\n{errors}"
                    );
                    return;
                }
            },
            None => self.rules.clone(),
        };
        let rules = match crate::rules::load(&rules_config) {
            Ok(rules) => rules,
            Err(errors) => {
                self.reloads_failed.inc();
                let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                tracing::error!(
                    component = "rules",
                    reason = why,
                    "reload rejected, the running rules stay:\n{}",
                    text.join("\n")
                );
                return;
            }
        };
        let mut engine = lock(&self.engine);
        let now = unix_nanos() - nanos(rules_config.evaluation_delay);
        let state = engine.snapshot(now);
        let mut fresh = Engine::new(rules, self.options.clone());
        fresh.restore(state, now, false);
        fresh.start_if_new(now);
        fresh.counters = engine.counters;
        let count: usize = fresh.rules.groups.iter().map(|g| g.rules.len()).sum();
        *engine = fresh;
        self.reloads_ok.inc();
        tracing::info!(
            component = "rules",
            reason = why,
            rules = count,
            "rules reloaded"
        );
    }

    /// Watches the config file and the rule files' directories.
    fn watch(
        &self,
        reload: tokio::sync::mpsc::Sender<&'static str>,
    ) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher as _;
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(path) = &self.config_path {
            dirs.push(parent(path));
        }
        if !self.rules.builtin_pack {
            for pattern in &self.rules.files {
                // The directory part before any glob character.
                let literal: PathBuf = Path::new(pattern)
                    .components()
                    .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
                    .collect();
                let dir = if literal.as_os_str() == pattern.as_str() {
                    parent(&literal)
                } else {
                    literal
                };
                dirs.push(dir);
            }
        }
        dirs.sort();
        dirs.dedup();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event
                    && (event.kind.is_modify() || event.kind.is_create() || event.kind.is_remove())
                    && event
                        .paths
                        .iter()
                        .any(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                {
                    let _ = reload.try_send("file changed");
                }
            })
            .ok()?;
        for dir in dirs {
            if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(component = "rules", dir = %dir.display(), "cannot watch for rule changes ({e}); SIGHUP still reloads");
            }
        }
        Some(watcher)
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

async fn forward_sighup(
    reload: tokio::sync::mpsc::Sender<&'static str>,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!(signal = "SIGHUP", "signal received: reloading rules");
                let _ = reload.send("SIGHUP").await;
            }
        }
    }
}

fn nanos(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

/// `/metrics` lines of the rules: every recorded series' latest value, alerts by state,
/// and the engine's counters.
pub fn exposition(engine: &SharedEngine, out: &mut String) {
    use std::fmt::Write as _;
    let engine = lock(engine);
    let now = unix_nanos();
    let mut last_name = "";
    let recorded = engine.recorded_series(now);
    for (labels, value) in &recorded {
        let name = labels.get(crate::rules::labels::NAME).unwrap_or("");
        if name != last_name {
            let _ = writeln!(out, "# HELP {name} Recorded by a sidewatch rule");
            let _ = writeln!(out, "# TYPE {name} gauge");
            last_name = name;
        }
        let _ = writeln!(
            out,
            "{name}{} {}",
            prom_labels(&labels.without_name()),
            prom_value(*value)
        );
    }
    let mut counts: std::collections::BTreeMap<(String, &'static str), u64> = Default::default();
    for group in &engine.rules.groups {
        for rule in &group.rules {
            if rule.kind == crate::rules::file::RuleKind::Alert {
                counts.entry((rule.name.clone(), "pending")).or_default();
                counts.entry((rule.name.clone(), "firing")).or_default();
            }
        }
    }
    for alert in engine.active_alerts() {
        let name = alert.labels.get("alertname").unwrap_or("").to_string();
        *counts.entry((name, alert.state.name())).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "# HELP sidewatch_alerts Alerts by rule and state (pending, firing)"
    );
    let _ = writeln!(out, "# TYPE sidewatch_alerts gauge");
    for ((name, state), n) in counts {
        let labels = Labels::from_pairs([("alertname", name.as_str()), ("state", state)]);
        let _ = writeln!(out, "sidewatch_alerts{} {n}", prom_labels(&labels));
    }
    let c = engine.counters;
    for (name, help, value) in [
        (
            "sidewatch_rule_evaluations_total",
            "Rule evaluations",
            c.evaluations,
        ),
        (
            "sidewatch_rule_evaluation_failures_total",
            "Rule evaluations that failed (see /api/v1/status)",
            c.evaluation_failures,
        ),
        (
            "sidewatch_rule_records_too_old_total",
            "Records older than every rule window they could fall in (counted, never fired on)",
            c.records_too_old,
        ),
        (
            "sidewatch_rule_series_limited_total",
            "Records refused because their rule window reached rules.max_series",
            c.series_limited,
        ),
        (
            "sidewatch_rule_unwrap_errors_total",
            "Records whose unwrapped field was absent or not a number",
            c.unwrap_errors,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP sidewatch_rule_window_series Series held by the rules' log windows"
    );
    let _ = writeln!(out, "# TYPE sidewatch_rule_window_series gauge");
    let series: usize = engine.logs.windows.iter().map(|w| w.series.len()).sum();
    let _ = writeln!(out, "sidewatch_rule_window_series {series}");
}

fn prom_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn prom_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}
