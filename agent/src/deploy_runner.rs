//! Runs deployment detection and verification live: looks at running verifications
//! every second, logs deployments and verdicts, speeds probes up while a verification
//! runs (`probe_boost`), fetches a baseline from `baseline_from` peers when this agent
//! never saw the previous version, and saves the state (tracker, sequential-test state,
//! evidence) in the state store.
//!
//! The sink stage feeds records (`Deployments::ingest`), the probe consumer feeds
//! probe samples, the API announces deployments; all under one mutex.
//!
//! Each verification is also a span, `deployment.verify` (`VerifySpans`), exported over
//! OTLP when traces are (`export::otlp::traces`): opened when the runner hears of the
//! deployment, one `deployment.check` event per check when its verdict is known, ended
//! with `deployment.verdict` (status error on `fail`). Spans live in memory only: a
//! verification the agent restarts in the middle of gets a new span from the restart
//! on (same `deployment.id`), and the interrupted one ends with
//! `deployment.interrupted=true` at shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use tokio_util::sync::CancellationToken;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::{Config, DetectSource};
use crate::deploy::tracker::{CheckOutcome, Deployment, Verdict};
use crate::deploy::verify::Evidence;
use crate::deploy::{DeploymentEvent, DeploymentState, Deployments, SharedDeployments};
use crate::event::ProbeSample;
use crate::rule_runner::{SharedEngine, unix_nanos};
use crate::rules::labels::Labels;
use crate::state::StateStore;
use crate::telemetry::Telemetry;

pub fn lock(d: &SharedDeployments) -> MutexGuard<'_, Deployments> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds the deployments component from the config and the rule files' verifications,
/// with whatever state the last run saved.
pub fn build(
    config: &Config,
    verifications: &[serde_json::Value],
    store: &StateStore,
) -> anyhow::Result<SharedDeployments> {
    let checks = Deployments::checks(verifications)
        .map_err(|errors| anyhow::anyhow!("invalid verifications:\n{}", errors.join("\n")))?;
    let sources = config
        .logs
        .iter()
        .map(|s| (s.name.to_string(), s.fields.clone()))
        .collect();
    let mut deployments = Deployments::new(&config.deployments, checks, sources);
    // A probe check whose probe is not configured has no evidence: it is left out rather
    // than holding every verdict at inconclusive (the default pack checks `health`).
    let probes: Vec<String> = config.probes.iter().map(|p| p.name.clone()).collect();
    for check in &deployments.verifier.checks {
        if let crate::deploy::verify::CheckKind::Probe { probe, .. } = &check.kind
            && !probes.contains(probe)
        {
            tracing::info!(
                component = "deployments",
                check = check.name,
                probe,
                "verification check skipped: its probe is not configured in `probes:`"
            );
        }
    }
    deployments.verifier.available_probes = Some(probes);
    match store.deploy_state() {
        Ok(Some(bytes)) => match serde_json::from_slice::<DeploymentState>(&bytes) {
            Ok(state) => {
                deployments.restore(state);
                tracing::info!(
                    component = "deployments",
                    live = deployments.tracker.live_version().unwrap_or(""),
                    "deployment history and evidence restored"
                );
            }
            Err(e) => tracing::warn!(
                component = "deployments",
                "the saved deployment state cannot be read ({e}); starting without history"
            ),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(
            component = "deployments",
            "cannot read the saved deployment state: {e}"
        ),
    }
    Ok(Arc::new(Mutex::new(deployments)))
}

/// Logs a deployment event the way users grep for it.
pub fn log_event(event: &DeploymentEvent) {
    match event {
        DeploymentEvent::Started(d) if d.initial => tracing::info!(
            component = "deployments",
            version = %d.version,
            id = %d.id,
            "initial version (nothing to compare with)"
        ),
        DeploymentEvent::Started(d) => tracing::info!(
            component = "deployments",
            version = %d.version,
            previous = d.previous.as_deref().unwrap_or(""),
            id = %d.id,
            detected_by = ?d.detected_by,
            "deployment started: verifying"
        ),
        DeploymentEvent::Decided(d) => {
            let failed: Vec<&str> = d
                .checks
                .iter()
                .filter(|c| c.verdict == Some(Verdict::Fail))
                .map(|c| c.name.as_str())
                .collect();
            let verdict = d.verdict.map(|v| v.name()).unwrap_or("");
            let checks = serde_json::to_string(&d.checks).unwrap_or_default();
            if d.verdict == Some(Verdict::Fail) {
                tracing::warn!(component = "deployments", version = %d.version, previous = d.previous.as_deref().unwrap_or(""), verdict, failed_checks = ?failed, checks = %checks, "deployment verdict");
            } else {
                tracing::info!(component = "deployments", version = %d.version, previous = d.previous.as_deref().unwrap_or(""), verdict, checks = %checks, "deployment verdict");
            }
        }
    }
}

/// The open `deployment.verify` span of each running verification, by deployment id.
#[derive(Debug, Default)]
pub struct VerifySpans {
    open: HashMap<String, VerifySpan>,
}

#[derive(Debug)]
struct VerifySpan {
    span: tracing::Span,
    /// The checks that already have their `deployment.check` event.
    reported: HashSet<String>,
}

impl VerifySpans {
    /// Opens the span of `deployment` if it is being verified and has none yet.
    pub fn open(&mut self, deployment: &Deployment) {
        if !deployment.verifying() || self.open.contains_key(&deployment.id) {
            return;
        }
        let detected_by: Vec<&str> = deployment
            .detected_by
            .iter()
            .map(|s| detect_name(*s))
            .collect();
        let span = tracing::info_span!(
            parent: None,
            "deployment.verify",
            deployment.id = %deployment.id,
            deployment.version = %deployment.version,
            deployment.baseline_version = deployment.previous.as_deref().unwrap_or(""),
            deployment.detected_by = %detected_by.join(","),
        );
        self.open.insert(
            deployment.id.clone(),
            VerifySpan {
                span,
                reported: HashSet::new(),
            },
        );
    }

    /// After a look: `verifying` are the deployments still being verified, `decided`
    /// those whose verdict this look reached. Checks decided since the last look get
    /// their event; decided deployments' spans end with the verdict.
    pub fn looked(&mut self, verifying: &[Deployment], decided: &[Deployment]) {
        for deployment in verifying {
            self.open(deployment);
            if let Some(open) = self.open.get_mut(&deployment.id) {
                for check in deployment.checks.iter().filter(|c| c.verdict.is_some()) {
                    open.report(check);
                }
            }
        }
        for deployment in decided {
            let Some(mut open) = self.open.remove(&deployment.id) else {
                continue;
            };
            for check in &deployment.checks {
                open.report(check);
            }
            let verdict = deployment.verdict.map_or("", |v| v.name());
            open.span.set_attribute("deployment.verdict", verdict);
            if deployment.verdict == Some(Verdict::Fail) {
                let failed: Vec<&str> = deployment
                    .checks
                    .iter()
                    .filter(|c| c.verdict == Some(Verdict::Fail))
                    .map(|c| c.name.as_str())
                    .collect();
                open.span.set_status(Status::error(format!(
                    "failed checks: {}",
                    failed.join(", ")
                )));
            }
            // Dropping the last handle ends the span.
        }
        // A verification that stopped without a verdict (forgotten from the history).
        let running: HashSet<&str> = verifying.iter().map(|d| d.id.as_str()).collect();
        self.open.retain(|id, _| running.contains(id.as_str()));
    }

    /// At shutdown: ends the spans of verifications still running.
    pub fn interrupt_all(&mut self) {
        for (_, open) in self.open.drain() {
            open.span.set_attribute("deployment.interrupted", true);
        }
    }
}

impl VerifySpan {
    /// The check's `deployment.check` event, once per check.
    fn report(&mut self, check: &CheckOutcome) {
        if !self.reported.insert(check.name.clone()) {
            return;
        }
        self.span
            .add_event("deployment.check", check_attributes(check));
    }
}

/// A check's outcome as event attributes; values that are not finite numbers (no
/// samples yet) are left out.
pub fn check_attributes(check: &CheckOutcome) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("check.name", check.name.clone()),
        KeyValue::new("check.kind", check.kind.clone()),
        KeyValue::new(
            "check.verdict",
            check.verdict.map_or("undecided", |v| v.name()),
        ),
        KeyValue::new(
            "check.samples.baseline",
            i64::try_from(check.n_baseline).unwrap_or(i64::MAX),
        ),
        KeyValue::new(
            "check.samples.current",
            i64::try_from(check.n_current).unwrap_or(i64::MAX),
        ),
    ];
    for (key, value) in [
        ("check.baseline", check.baseline),
        ("check.current", check.current),
        ("check.threshold", check.threshold),
        ("check.statistic", check.statistic),
        ("check.p_value", check.p_value),
        ("check.alpha", check.alpha),
    ] {
        if value.is_finite() {
            attributes.push(KeyValue::new(key, value));
        }
    }
    if !check.new_values.is_empty() {
        let values: Vec<opentelemetry::StringValue> =
            check.new_values.iter().map(|v| v.clone().into()).collect();
        attributes.push(KeyValue::new(
            "check.new_values",
            opentelemetry::Value::Array(values.into()),
        ));
    }
    if let Some(note) = &check.note {
        attributes.push(KeyValue::new("check.note", note.clone()));
    }
    attributes
}

fn detect_name(source: DetectSource) -> &'static str {
    match source {
        DetectSource::Api => "api",
        DetectSource::ProbeVersion => "probe_version",
        DetectSource::LogField => "log_field",
    }
}

pub struct DeployRunner {
    pub deployments: SharedDeployments,
    store: StateStore,
    peers: Vec<String>,
    /// This agent's `api.token`, presented to the peers: the sidecars of one
    /// Deployment share the token (one Secret), and a peer's baselines are guarded.
    peer_token: Option<crate::config::Secret>,
    boost: tokio::sync::watch::Sender<Option<Duration>>,
    probe_boost: Option<Duration>,
    /// The running verifications' spans (only the run loop uses it; a mutex because
    /// the runner is shared with the topology).
    spans: Mutex<VerifySpans>,
}

impl DeployRunner {
    pub fn new(
        config: &Config,
        deployments: SharedDeployments,
        store: StateStore,
        boost: tokio::sync::watch::Sender<Option<Duration>>,
    ) -> DeployRunner {
        DeployRunner {
            deployments,
            store,
            peers: config.deployments.baseline_from.clone(),
            peer_token: config.api.token.clone(),
            boost,
            probe_boost: config.deployments.probe_boost,
            spans: Mutex::new(VerifySpans::default()),
        }
    }

    fn peer_client(&self) -> PlainClient {
        PlainClient {
            token: self.peer_token.clone(),
        }
    }

    fn spans(&self) -> MutexGuard<'_, VerifySpans> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks every second until `shutdown`; `started` brings deployments that started
    /// anywhere (records, probes, the API) for their baseline.
    pub async fn run(
        self: Arc<Self>,
        mut started: tokio::sync::mpsc::UnboundedReceiver<Deployment>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut saves = 0u32;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(deployment) = started.recv() => {
                    self.spans().open(&deployment);
                    self.started(&deployment).await;
                    continue;
                }
                _ = tick.tick() => {}
            }
            let (events, running) = self
                .with_deployments(|d| {
                    let events = d.tick(unix_nanos());
                    let running: Vec<Deployment> = d
                        .tracker
                        .history
                        .iter()
                        .filter(|d| d.verifying())
                        .cloned()
                        .collect();
                    (events, running)
                })
                .await;
            let verifying = !running.is_empty();
            for event in &events {
                log_event(event);
            }
            let decided: Vec<Deployment> = events
                .iter()
                .filter_map(|e| match e {
                    DeploymentEvent::Decided(d) => Some(d.clone()),
                    DeploymentEvent::Started(_) => None,
                })
                .collect();
            self.spans().looked(&running, &decided);
            let boost = if verifying { self.probe_boost } else { None };
            self.boost.send_if_modified(|current| {
                let changed = *current != boost;
                *current = boost;
                changed
            });
            saves += 1;
            if saves.is_multiple_of(5) || !events.is_empty() {
                self.save().await;
            }
        }
        self.spans().interrupt_all();
        self.save().await;
    }

    /// Handles deployments that started (from any source): fetches the previous
    /// version's baseline from peers when this agent has none.
    pub async fn started(&self, deployment: &Deployment) {
        if self.peers.is_empty() {
            return;
        }
        let client = self.peer_client();
        if deployment.initial {
            // A fresh pod in a rolling update sees the new version first: ask the peers
            // what replaced what. A peer already on this version knows the deployment
            // and its previous version; a peer still on the old one runs it.
            for peer in &self.peers {
                if let Some(previous) = peer_previous(&client, peer, &deployment.version).await {
                    {
                        let mut d = lock(&self.deployments);
                        if let Some(live) = d.tracker.history.last_mut()
                            && live.id == deployment.id
                        {
                            live.initial = false;
                            live.previous = Some(previous.clone());
                        }
                    }
                    tracing::info!(component = "deployments", version = %deployment.version, previous = %previous, peer = %peer, "a peer knows the version this one replaced: verifying against it");
                    self.fetch_baseline(&previous).await;
                    return;
                }
            }
            return;
        }
        if let Some(previous) = &deployment.previous {
            let have = lock(&self.deployments).verifier.has_version(previous);
            if !have {
                self.fetch_baseline(previous).await;
            }
        }
    }

    async fn fetch_baseline(&self, version: &str) {
        let client = self.peer_client();
        for peer in &self.peers {
            let url = format!("{peer}/api/v1/baselines/{}", encode_path(version));
            match tokio::time::timeout(Duration::from_secs(10), client.get(&url)).await {
                Ok(Ok((200, body))) => match serde_json::from_str::<Evidence>(&body) {
                    Ok(evidence) => {
                        lock(&self.deployments).verifier.absorb(evidence);
                        tracing::info!(component = "deployments", version, peer = %peer, "baseline fetched from a peer");
                    }
                    Err(e) => {
                        tracing::warn!(component = "deployments", peer = %peer, "a peer's baseline cannot be read: {e}")
                    }
                },
                Ok(Ok((code, _))) => {
                    tracing::warn!(component = "deployments", peer = %peer, code, "a peer has no baseline for {version}")
                }
                Ok(Err(e)) => {
                    tracing::warn!(component = "deployments", peer = %peer, "cannot reach a peer for a baseline: {e}")
                }
                Err(_) => {
                    tracing::warn!(component = "deployments", peer = %peer, "a peer did not answer within 10s")
                }
            }
        }
    }

    /// `f` with the deployments locked, on the blocking pool: the sink holds the lock
    /// while it ingests a batch (for long stretches when the agent is CPU-throttled), and a
    /// runtime worker, which the health probes and the exporters share, must not wait.
    async fn with_deployments<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Deployments) -> R + Send + 'static,
    ) -> R {
        let deployments = self.deployments.clone();
        crate::off_worker(move || f(&mut lock(&deployments))).await
    }

    pub async fn save(&self) {
        let bytes = self
            .with_deployments(|d| serde_json::to_vec(&d.snapshot()))
            .await;
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(
                    component = "deployments",
                    "cannot encode the deployment state: {e}"
                );
                return;
            }
        };
        let store = self.store.clone();
        if let Ok(Err(e)) =
            tokio::task::spawn_blocking(move || store.save_deploy_state(&bytes)).await
        {
            tracing::warn!(
                component = "deployments",
                "cannot save the deployment state: {e}"
            );
        }
    }
}

/// What `version` replaced, as a peer knows it: its own deployment of `version` names
/// the previous version; else the version the peer runs, when it is another one.
async fn peer_previous(client: &PlainClient, peer: &str, version: &str) -> Option<String> {
    let get = |url: String| async move {
        match tokio::time::timeout(Duration::from_secs(5), client.get(&url)).await {
            Ok(Ok((200, body))) => serde_json::from_str::<serde_json::Value>(&body).ok(),
            _ => None,
        }
    };
    if let Some(doc) = get(format!(
        "{peer}/api/v1/deployments/{}",
        encode_path(version)
    ))
    .await
        && let Some(previous) = doc["previous"].as_str()
        && doc["initial"].as_bool() != Some(true)
    {
        return Some(previous.to_string());
    }
    let doc = get(format!("{peer}/api/v1/deployments")).await?;
    doc["live"]
        .as_str()
        .filter(|live| *live != version)
        .map(str::to_string)
}

/// Percent-encodes a version for a URL path segment.
pub fn encode_path(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The plain-HTTP client the API module has (peers are sidecars on the pod network),
/// presenting this agent's token.
struct PlainClient {
    token: Option<crate::config::Secret>,
}

impl PlainClient {
    async fn get(&self, url: &str) -> anyhow::Result<(u16, String)> {
        crate::api::http_get(url, self.token.as_ref().map(|t| t.expose())).await
    }
}

/// The last result of each probe, for the status.
pub type ProbeBoard = Arc<Mutex<std::collections::BTreeMap<String, ProbeSample>>>;

/// Feeds probe samples to the rules (as series), `/metrics` and deployments.
pub async fn consume_probes(
    board: ProbeBoard,
    mut samples: tokio::sync::mpsc::Receiver<ProbeSample>,
    engine: SharedEngine,
    deployments: SharedDeployments,
    telemetry: Arc<Telemetry>,
    started: tokio::sync::mpsc::UnboundedSender<Deployment>,
) {
    while let Some(sample) = samples.recv().await {
        // The engine's and the deployments' locks are taken on the blocking pool: the sink
        // holds them while it ingests a batch, and a runtime worker must not wait for that.
        let (engine, deployments) = (engine.clone(), deployments.clone());
        let (sample, events) = crate::off_worker(move || {
            push_probe_sample(&engine, &sample);
            let events = lock(&deployments).probe(&sample);
            (sample, events)
        })
        .await;
        let probe = [("probe", &*sample.probe)];
        telemetry
            .gauge(
                "probe_success",
                "Whether the last probe succeeded (blackbox-exporter semantics)",
                &probe,
            )
            .set(f64::from(u8::from(sample.success)));
        telemetry
            .gauge(
                "probe_duration_seconds",
                "How long the last probe took",
                &probe,
            )
            .set(sample.duration_seconds);
        telemetry
            .gauge(
                "probe_http_status_code",
                "The last probe's HTTP status (0: no response)",
                &probe,
            )
            .set(f64::from(sample.status_code.unwrap_or(0)));
        if !sample.success {
            tracing::debug!(component = "probes", probe = %sample.probe, error = sample.error.as_deref().unwrap_or(""), "probe failed");
        }
        if let Ok(mut board) = board.lock() {
            board.insert(sample.probe.to_string(), sample.clone());
        }
        for event in &events {
            log_event(event);
            if let DeploymentEvent::Started(d) = event {
                let _ = started.send(d.clone());
            }
        }
    }
}

/// A probe result as the rules' `probe_*` series.
fn push_probe_sample(engine: &SharedEngine, sample: &ProbeSample) {
    let labels = |name: &str| Labels::from_pairs([("__name__", name), ("probe", &*sample.probe)]);
    let mut engine = crate::rule_runner::lock(engine);
    let t = sample.time_unix_nano;
    engine.push_sample(
        &labels("probe_success"),
        t,
        Some(f64::from(u8::from(sample.success))),
    );
    engine.push_sample(
        &labels("probe_duration_seconds"),
        t,
        Some(sample.duration_seconds),
    );
    if let Some(code) = sample.status_code {
        engine.push_sample(&labels("probe_http_status_code"), t, Some(f64::from(code)));
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, Status};

    use super::*;
    use crate::export::otlp::traces::testing::{attribute, capture};

    fn deployment(id: &str, version: &str, verdict: Option<Verdict>) -> Deployment {
        Deployment {
            id: id.into(),
            version: version.into(),
            previous: Some("1.0.0".into()),
            t0: 10,
            detected_by: vec![DetectSource::ProbeVersion, DetectSource::LogField],
            meta: serde_json::Value::Null,
            initial: false,
            verdict,
            decided_at: verdict.map(|_| 20),
            checks: Vec::new(),
        }
    }

    fn check(name: &str, kind: &str, verdict: Option<Verdict>) -> CheckOutcome {
        CheckOutcome {
            name: name.into(),
            kind: kind.into(),
            verdict,
            baseline: 0.02,
            current: 0.4,
            n_baseline: 160,
            n_current: 120,
            statistic: 9.5,
            p_value: 1e-6,
            threshold: 0.03,
            alpha: 0.01,
            new_values: Vec::new(),
            note: None,
        }
    }

    fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
        attribute(attributes, key).map(|v| v.to_string())
    }

    #[test]
    fn a_verification_is_a_span_with_an_event_per_check_and_its_verdict() {
        let (_guard, captured) = capture();
        let mut spans = VerifySpans::default();
        let mut bad = deployment("d2", "1.1.0", None);
        // Heard of: the span opens; the first look decides nothing.
        spans.open(&bad);
        bad.checks = vec![
            check("error-ratio", "ratio", None),
            check("latency", "distribution", None),
        ];
        spans.looked(std::slice::from_ref(&bad), &[]);
        // The next look fails error-ratio but the verdict waits.
        bad.checks[0].verdict = Some(Verdict::Fail);
        spans.looked(std::slice::from_ref(&bad), &[]);
        spans.looked(std::slice::from_ref(&bad), &[]);
        assert!(captured.spans().is_empty(), "still open");
        // The verdict: latency fails too; new values and a NaN are carried as they can.
        bad.checks[1].verdict = Some(Verdict::Fail);
        bad.checks[1].p_value = f64::NAN;
        bad.checks[1].new_values = vec!["KeyError".into()];
        bad.verdict = Some(Verdict::Fail);
        spans.looked(&[], std::slice::from_ref(&bad));

        let finished = captured.spans();
        let [span] = finished.as_slice() else {
            panic!("one span: {finished:?}")
        };
        assert_eq!(span.name, "deployment.verify");
        assert_eq!(span.parent_span_id, SpanId::INVALID, "a root span");
        for (key, value) in [
            ("deployment.id", "d2"),
            ("deployment.version", "1.1.0"),
            ("deployment.baseline_version", "1.0.0"),
            ("deployment.detected_by", "probe_version,log_field"),
            ("deployment.verdict", "fail"),
        ] {
            assert_eq!(
                string(&span.attributes, key).as_deref(),
                Some(value),
                "{key}"
            );
        }
        assert_eq!(
            span.status,
            Status::error("failed checks: error-ratio, latency")
        );
        let events: Vec<_> = span.events.iter().collect();
        assert_eq!(events.len(), 2, "one event per check: {events:?}");
        let first = &events[0].attributes;
        assert_eq!(events[0].name, "deployment.check");
        assert_eq!(string(first, "check.name").as_deref(), Some("error-ratio"));
        assert_eq!(string(first, "check.kind").as_deref(), Some("ratio"));
        assert_eq!(string(first, "check.verdict").as_deref(), Some("fail"));
        assert_eq!(attribute(first, "check.current"), Some(0.4.into()));
        assert_eq!(attribute(first, "check.baseline"), Some(0.02.into()));
        assert_eq!(
            attribute(first, "check.samples.current"),
            Some(120i64.into())
        );
        assert_eq!(attribute(first, "check.p_value"), Some(1e-6.into()));
        let second = &events[1].attributes;
        assert_eq!(string(second, "check.name").as_deref(), Some("latency"));
        assert!(attribute(second, "check.p_value").is_none(), "NaN left out");
        assert_eq!(
            string(second, "check.new_values").as_deref(),
            Some("[\"KeyError\"]")
        );
        assert!(events[0].timestamp <= events[1].timestamp);
    }

    #[test]
    fn a_pass_has_no_error_and_undecided_checks_still_get_their_event() {
        let (_guard, captured) = capture();
        let mut spans = VerifySpans::default();
        let mut good = deployment("d3", "1.2.0", None);
        let initial = Deployment {
            initial: true,
            ..deployment("d0", "0.9.0", None)
        };
        spans.looked(&[good.clone()], &[]);
        spans.open(&initial);
        good.checks = vec![
            check("health", "probe", Some(Verdict::Pass)),
            check("new-errors", "new_values", None),
        ];
        good.verdict = Some(Verdict::Pass);
        spans.looked(&[], std::slice::from_ref(&good));
        let finished = captured.spans();
        assert_eq!(
            finished.len(),
            1,
            "nothing to verify for an initial version"
        );
        let span = &finished[0];
        assert_eq!(
            string(&span.attributes, "deployment.verdict").as_deref(),
            Some("pass")
        );
        assert_eq!(span.status, Status::Unset);
        let verdicts: Vec<Option<String>> = span
            .events
            .iter()
            .map(|e| string(&e.attributes, "check.verdict"))
            .collect();
        assert_eq!(verdicts, [Some("pass".into()), Some("undecided".into())]);
    }

    #[test]
    fn shutdown_interrupts_and_a_restart_opens_a_new_span() {
        let (_guard, captured) = capture();
        let running = deployment("d4", "1.3.0", None);
        let mut before = VerifySpans::default();
        before.looked(std::slice::from_ref(&running), &[]);
        before.interrupt_all();
        // After a restart the same verification is running: a new span.
        let mut after = VerifySpans::default();
        after.looked(std::slice::from_ref(&running), &[]);
        let decided = Deployment {
            verdict: Some(Verdict::Inconclusive),
            ..running
        };
        after.looked(&[], std::slice::from_ref(&decided));
        let finished = captured.spans();
        assert_eq!(finished.len(), 2);
        assert_eq!(
            attribute(&finished[0].attributes, "deployment.interrupted"),
            Some(true.into())
        );
        assert!(attribute(&finished[0].attributes, "deployment.verdict").is_none());
        assert_eq!(
            string(&finished[1].attributes, "deployment.verdict").as_deref(),
            Some("inconclusive")
        );
        assert_ne!(
            finished[0].span_context.trace_id(),
            finished[1].span_context.trace_id()
        );
    }
}
