//! Runs deployment detection and verification live: looks at running verifications
//! every second, logs deployments and verdicts, speeds probes up while a verification
//! runs (`probe_boost`), fetches a baseline from `baseline_from` peers when this agent
//! never saw the previous version, and saves the state (tracker, sequential-test state,
//! evidence) in the state store.
//!
//! The sink stage feeds records (`Deployments::ingest`), the probe consumer feeds
//! probe samples, the API announces deployments; all under one mutex.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::deploy::tracker::{Deployment, Verdict};
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

pub struct DeployRunner {
    pub deployments: SharedDeployments,
    store: StateStore,
    peers: Vec<String>,
    /// This agent's `api.token`, presented to the peers: the sidecars of one
    /// Deployment share the token (one Secret), and a peer's baselines are guarded.
    peer_token: Option<crate::config::Secret>,
    boost: tokio::sync::watch::Sender<Option<Duration>>,
    probe_boost: Option<Duration>,
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
        }
    }

    fn peer_client(&self) -> PlainClient {
        PlainClient {
            token: self.peer_token.clone(),
        }
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
                    self.started(&deployment).await;
                    continue;
                }
                _ = tick.tick() => {}
            }
            let (events, verifying) = {
                let mut d = lock(&self.deployments);
                let events = d.tick(unix_nanos());
                (events, d.verifying())
            };
            for event in &events {
                log_event(event);
            }
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

    pub async fn save(&self) {
        let bytes = serde_json::to_vec(&lock(&self.deployments).snapshot());
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
        let labels =
            |name: &str| Labels::from_pairs([("__name__", name), ("probe", &*sample.probe)]);
        {
            let mut engine = crate::rule_runner::lock(&engine);
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
        let events = lock(&deployments).probe(&sample);
        for event in &events {
            log_event(event);
            if let DeploymentEvent::Started(d) = event {
                let _ = started.send(d.clone());
            }
        }
    }
}
