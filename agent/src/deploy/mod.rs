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
                    // Borrowed from the batch: every record names its version, and an
                    // owned copy per record was the sink stage's only allocation.
                    let version = value.as_str(&batch.buf);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Format, LineParser};

    const S: i64 = 1_000_000_000;

    fn config() -> DeploymentsConfig {
        DeploymentsConfig {
            verify_window: std::time::Duration::from_secs(600),
            baseline_window: std::time::Duration::from_secs(1800),
            ..DeploymentsConfig::default()
        }
    }

    fn checks() -> Vec<CheckSpec> {
        let yaml = serde_json::json!([
            { "name": "error-ratio", "kind": "ratio",
              "numerator": "{source=\"app\"} | status >= 500",
              "denominator": "{source=\"app\"}", "max_increase": "1.5x", "min_samples": 200 },
            { "name": "new-errors", "kind": "new_values",
              "query": "{source=\"app\"} | status >= 500", "field": "exception_type",
              "min_samples": 5 },
        ]);
        Deployments::checks(yaml.as_array().unwrap()).unwrap()
    }

    /// One request a second of `version` from `from` to `to` seconds; every `error_every`-th
    /// fails with `exception`.
    fn traffic(
        d: &mut Deployments,
        version: &str,
        from: i64,
        to: i64,
        error_every: i64,
        exception: &str,
    ) -> Vec<DeploymentEvent> {
        let parser = LineParser::new(Format::Structlog, Format::Structlog.default_field_names());
        let mut events = Vec::new();
        for s in from..to {
            let mut batch = LogBatch::new("app".into());
            let failed = s % error_every == 0;
            let line = format!(
                r#"{{"event": "request finished", "status": {}, "version": "{version}"{}}}"#,
                if failed { 500 } else { 200 },
                if failed {
                    format!(r#", "exception_type": "{exception}""#)
                } else {
                    String::new()
                }
            );
            batch.buf.push_str(&line);
            let mut record = crate::event::LogRecord {
                time_unix_nano: Some(s * S),
                observed_unix_nano: s * S,
                ..Default::default()
            };
            parser.parse(
                &mut batch.buf,
                Span::new(0, line.len()),
                &mut batch.fields,
                &mut record,
            );
            batch.records.push(record);
            events.extend(d.ingest(&mut batch));
            if s % 15 == 0 {
                events.extend(d.tick(s * S));
            }
        }
        events
    }

    fn verdict_of(d: &Deployments, version: &str) -> (Option<Verdict>, Vec<String>) {
        let dep = d.find(version).expect("deployment detected");
        let failed = dep
            .checks
            .iter()
            .filter(|c| c.verdict == Some(Verdict::Fail))
            .map(|c| c.name.clone())
            .collect();
        (dep.verdict, failed)
    }

    #[test]
    fn a_worse_version_fails_early_and_names_its_checks() {
        // Ten times the errors, of the same kind as before: the ratio test fails it.
        let mut d = Deployments::new(&config(), checks(), Default::default());
        traffic(&mut d, "1.0", 0, 1800, 100, "KeyError");
        let events = traffic(&mut d, "1.1", 1800, 2400, 10, "KeyError");
        assert_eq!(
            verdict_of(&d, "1.1"),
            (Some(Verdict::Fail), vec!["error-ratio".to_string()])
        );
        let dep = d.find("1.1").unwrap();
        assert_eq!(dep.previous.as_deref(), Some("1.0"));
        assert_eq!(dep.t0, 1800 * S);
        // Early: decided well before the end of the 10-minute window, once the new
        // version had min_samples=200 requests.
        let decided = dep.decided_at.unwrap();
        assert!((2000 * S..2100 * S).contains(&decided), "{decided}");
        assert!(
            dep.checks[0].p_value < dep.checks[0].alpha,
            "{:?}",
            dep.checks[0]
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, DeploymentEvent::Decided(x) if x.version == "1.1"))
        );

        // A new exception type fails `new_values` at its first look, naming the type.
        let mut d = Deployments::new(&config(), checks(), Default::default());
        traffic(&mut d, "1.0", 0, 1800, 100, "KeyError");
        traffic(&mut d, "1.1", 1800, 1900, 10, "AttributeError");
        assert_eq!(
            verdict_of(&d, "1.1"),
            (Some(Verdict::Fail), vec!["new-errors".to_string()])
        );
        assert_eq!(
            d.find("1.1").unwrap().checks[1].new_values,
            vec!["AttributeError"]
        );
    }

    #[test]
    fn an_unchanged_version_passes_only_at_the_end() {
        let mut d = Deployments::new(&config(), checks(), Default::default());
        traffic(&mut d, "1.0", 0, 1800, 100, "KeyError");
        traffic(&mut d, "1.1", 1800, 2399, 100, "KeyError");
        assert_eq!(
            verdict_of(&d, "1.1").0,
            None,
            "no pass before the window ends"
        );
        d.tick(2400 * S);
        assert_eq!(verdict_of(&d, "1.1"), (Some(Verdict::Pass), vec![]));
        assert_eq!(d.find("1.1").unwrap().decided_at, Some(2400 * S));
    }

    #[test]
    fn a_probe_check_of_a_probe_that_does_not_run_is_left_out() {
        let mut specs = checks();
        let probe = serde_json::json!([
            { "name": "health", "kind": "probe", "probe": "health" },
        ]);
        specs.extend(Deployments::checks(probe.as_array().unwrap()).unwrap());
        let run = |available: Option<Vec<String>>| {
            let mut d = Deployments::new(&config(), specs.clone(), Default::default());
            d.verifier.available_probes = available;
            traffic(&mut d, "1.0", 0, 1800, 100, "KeyError");
            traffic(&mut d, "1.1", 1800, 2399, 100, "KeyError");
            d.tick(2400 * S);
            let dep = d.find("1.1").unwrap().clone();
            (dep.verdict, dep.checks[2].note.clone())
        };
        // Configured but silent: no evidence, so the deployment cannot pass.
        assert_eq!(
            run(Some(vec!["health".into()])).0,
            Some(Verdict::Inconclusive)
        );
        // Not configured: the check is out of the verdict, which passes on the others.
        let (verdict, note) = run(Some(vec!["other".into()]));
        assert_eq!(verdict, Some(Verdict::Pass));
        assert!(
            note.as_deref()
                .is_some_and(|n| n.contains("probe `health` is not configured")),
            "{note:?}"
        );
    }

    #[test]
    fn too_little_traffic_is_inconclusive_never_fail() {
        let mut d = Deployments::new(&config(), checks(), Default::default());
        traffic(&mut d, "1.0", 0, 1800, 100, "KeyError");
        // 1.1 logs 50 requests, every 2nd failing: worse, but under min_samples=200.
        traffic(&mut d, "1.1", 1800, 1850, 2, "KeyError");
        d.tick(2400 * S);
        let (verdict, failed) = verdict_of(&d, "1.1");
        assert_eq!((verdict, failed), (Some(Verdict::Inconclusive), vec![]));
    }

    #[test]
    fn a_verification_resumes_from_a_saved_state() {
        let mut d = Deployments::new(&config(), checks(), Default::default());
        traffic(&mut d, "1.0", 0, 1800, 100, "KeyError");
        traffic(&mut d, "1.1", 1800, 2000, 100, "KeyError");
        let saved = serde_json::to_vec(&d.snapshot()).unwrap();
        let mut resumed = Deployments::new(&config(), checks(), Default::default());
        resumed.restore(serde_json::from_slice(&saved).unwrap());
        assert_eq!(resumed.tracker.live_version(), Some("1.1"));
        traffic(&mut resumed, "1.1", 2000, 2400, 100, "KeyError");
        resumed.tick(2400 * S);
        let dep = resumed.find("1.1").unwrap();
        assert_eq!(dep.verdict, Some(Verdict::Pass));
        // The baseline came through the restart: 30 minutes of 1.0.
        assert!(dep.checks[0].n_baseline >= 1790, "{:?}", dep.checks[0]);
    }
}
