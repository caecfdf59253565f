//! Deployments: detection, per-version evidence and verification. Pure cores: the
//! tracker (`tracker.rs`), the statistics (`stats.rs`) and the verifier (`verify.rs`)
//! take records, probe samples and `now`, and return events; the agent, `sidewatch test`
//! and `sidewatch replay` drive them the same way.

pub mod stats;
pub mod tracker;
pub mod verify;

use std::sync::Arc;

use crate::config::{DeploymentsConfig, DetectSource};
use crate::event::{LogBatch, ProbeSample, Span, Value, ValueKind};
use tracker::{Deployment, Tracker, Verdict};
use verify::{CheckSpec, Evidence, Looks, Verifier};

/// Something worth telling: a deployment started, or a verdict was reached.
#[derive(Clone, Debug, PartialEq)]
pub enum DeploymentEvent {
    Started(Deployment),
    Decided(Deployment),
}

/// What survives a restart.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct DeploymentState {
    pub tracker: Tracker,
    pub looks: Vec<(String, Looks)>,
    pub evidence: Evidence,
}

/// The tracker and the verifier, driven together.
pub struct Deployments {
    pub tracker: Tracker,
    pub verifier: Verifier,
    pub config: DeploymentsConfig,
    /// Sequential-test state per deployment id.
    looks: Vec<(String, Looks)>,
    /// The live version, already appended to the current batch's buffer.
    version_field: String,
}

impl Deployments {
    pub fn new(
        config: &DeploymentsConfig,
        checks: Vec<CheckSpec>,
        sources: std::collections::HashMap<String, crate::parse::FieldNames>,
    ) -> Deployments {
        Deployments {
            tracker: Tracker::new(config.detect.clone()),
            verifier: Verifier::new(checks, config, sources),
            config: config.clone(),
            looks: Vec::new(),
            version_field: config.version_field.clone(),
        }
    }

    /// Reads `verifications:` entries; errors name the check.
    pub fn checks(items: &[serde_json::Value]) -> Result<Vec<CheckSpec>, Vec<String>> {
        let mut checks = Vec::new();
        let mut errors = Vec::new();
        for item in items {
            match CheckSpec::from_json(item) {
                Ok(c) => checks.push(c),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(checks)
        } else {
            Err(errors)
        }
    }

    /// Sets every record's `deployment` (its own version field, else the live version),
    /// lets log versions start deployments, and adds the records to the evidence.
    /// Returns the deployments that started.
    pub fn ingest(&mut self, batch: &mut LogBatch) -> Vec<DeploymentEvent> {
        let all: Vec<usize> = (0..batch.records.len()).collect();
        self.ingest_indices(batch, &all)
    }

    /// `ingest` for some records of a batch, in the given order (replay feeds one
    /// instant at a time).
    pub fn ingest_indices(
        &mut self,
        batch: &mut LogBatch,
        indices: &[usize],
    ) -> Vec<DeploymentEvent> {
        let mut events = Vec::new();
        let mut live_span: Option<(String, Value)> = None;
        for &i in indices {
            let record = &batch.records[i];
            let own = batch
                .attrs(record)
                .iter()
                .find(|f| {
                    let key = batch.buf.get(f.key.range()).unwrap_or("");
                    key.len() == self.version_field.len() && key == self.version_field
                })
                .map(|f| f.value)
                .filter(|v| {
                    !matches!(
                        v.kind,
                        ValueKind::Null | ValueKind::Object | ValueKind::Array
                    )
                });
            let t = record.time();
            let deployment = match own {
                Some(value) => {
                    let version = value.as_str(&batch.buf).into_owned();
                    if let Some(index) = self.tracker.observe(&version, t, DetectSource::LogField) {
                        events.push(DeploymentEvent::Started(
                            self.tracker.history[index].clone(),
                        ));
                    }
                    Some(value)
                }
                None => match self.tracker.live_version() {
                    Some(live) => match &live_span {
                        Some((v, span)) if v == live => Some(*span),
                        _ => {
                            // The live version's text, once per batch (and per change).
                            let start = batch.buf.len();
                            batch.buf.push_str(live);
                            let value = Value::text(Span::new(start, batch.buf.len()));
                            live_span = Some((live.to_string(), value));
                            Some(value)
                        }
                    },
                    None => None,
                },
            };
            batch.records[i].deployment = deployment;
        }
        self.verifier
            .ingest_records(batch, indices.iter().map(|&i| &batch.records[i]));
        events
    }

    /// A probe result: its `version` may start a deployment; it counts as evidence of
    /// the version it reports (else the live one).
    pub fn probe(&mut self, sample: &ProbeSample) -> Vec<DeploymentEvent> {
        let mut events = Vec::new();
        if let Some(version) = &sample.version
            && let Some(index) =
                self.tracker
                    .observe(version, sample.time_unix_nano, DetectSource::ProbeVersion)
        {
            events.push(DeploymentEvent::Started(
                self.tracker.history[index].clone(),
            ));
        }
        let version = sample
            .version
            .clone()
            .or_else(|| self.tracker.live_version().map(str::to_string));
        if let Some(version) = version {
            self.verifier.ingest_probe(sample, &version);
        }
        events
    }

    /// `POST /api/v1/deployments`.
    pub fn announce(
        &mut self,
        version: &str,
        id: Option<String>,
        meta: serde_json::Value,
        t: i64,
    ) -> (Deployment, Option<DeploymentEvent>) {
        let (index, started) = self.tracker.announce(version, id, meta, t);
        let deployment = self.tracker.history[index].clone();
        let event = started.then(|| DeploymentEvent::Started(deployment.clone()));
        (deployment, event)
    }

    /// Looks at every running verification at `now`; returns the verdicts reached.
    pub fn tick(&mut self, now: i64) -> Vec<DeploymentEvent> {
        let mut events = Vec::new();
        for deployment in self.tracker.history.iter_mut().filter(|d| d.verifying()) {
            let looks = match self
                .looks
                .iter_mut()
                .position(|(id, _)| *id == deployment.id)
            {
                Some(i) => &mut self.looks[i].1,
                None => {
                    self.looks.push((deployment.id.clone(), Looks::default()));
                    &mut self.looks.last_mut().expect("just pushed").1
                }
            };
            self.verifier.look(deployment, looks, now);
            if deployment.verdict.is_some() {
                events.push(DeploymentEvent::Decided(deployment.clone()));
            }
        }
        let running: Vec<String> = self
            .tracker
            .history
            .iter()
            .filter(|d| d.verifying())
            .map(|d| d.id.clone())
            .collect();
        self.looks.retain(|(id, _)| running.contains(id));
        self.verifier.prune(now);
        events
    }

    /// Whether a verification is running (probes then run at `probe_boost`).
    pub fn verifying(&self) -> bool {
        self.tracker.history.iter().any(|d| d.verifying())
    }

    pub fn snapshot(&self) -> DeploymentState {
        DeploymentState {
            tracker: self.tracker.clone(),
            looks: self.looks.clone(),
            evidence: self.verifier.snapshot(),
        }
    }

    pub fn restore(&mut self, state: DeploymentState) {
        let detect = std::mem::take(&mut self.tracker.detect);
        self.tracker = state.tracker;
        self.tracker.detect = detect;
        self.looks = state.looks;
        self.verifier.absorb(state.evidence);
    }

    /// The deployment of `version` the API and `verify` mean: the newest one.
    pub fn find(&self, version: &str) -> Option<&Deployment> {
        self.tracker.find_version(version)
    }

    /// The verdict of a finished deployment as the `sidewatch_deployment_verdict` series:
    /// one per deployment version and verdict.
    pub fn verdict_series(&self) -> Vec<(String, Verdict)> {
        let mut out: Vec<(String, Verdict)> = Vec::new();
        for d in &self.tracker.history {
            if let Some(v) = d.verdict {
                out.retain(|(version, _)| *version != d.version);
                out.push((d.version.clone(), v));
            }
        }
        out
    }
}

/// Shared between the sink stage, the probes, the API and the verification task.
pub type SharedDeployments = Arc<std::sync::Mutex<Deployments>>;
