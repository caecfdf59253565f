//! Verification: each new version against the one before it, for every check of
//! `verifications:`. Pure: records, probe samples and `now` go in, outcomes come out.
//!
//! Evidence is kept per version in bounded summaries: the checks' log queries are log
//! windows (the rules' machinery) whose series carry the `deployment` label, so a
//! version's evidence is its series' time buckets — counts for `ratio`, a DDSketch for
//! `distribution`, one series per distinct value for `new_values` (bounded by the
//! window's series limit) — and probe results are counted per version and bucket.
//! Nothing keeps every sample.
//!
//! The baseline is the previous version's evidence in `(t0 − baseline_window, t0]`; the
//! new version's is everything it produced since `t0`, up to `t0 + verify_window`.
//! Buckets are `bucket_width` wide, so the baseline's start is exact to one bucket.

use std::collections::{BTreeMap, HashSet};

use super::stats::{self, TestResult};
use super::tracker::{CheckOutcome, Deployment, Verdict};
use crate::config::DeploymentsConfig;
use crate::event::{LogBatch, LogRecord, ProbeSample};
use crate::rules::ast::LogQuery;
use crate::rules::labels::Labels;
use crate::rules::logs::{AccKind, IngestTally, LogWindow, LogWindows, WindowSeries, WindowSpec};

const NS: i64 = 1_000_000_000;

/// One check of `verifications:`.
#[derive(Clone, Debug)]
pub struct CheckSpec {
    pub name: String,
    pub kind: CheckKind,
}

#[derive(Clone, Debug)]
pub enum CheckKind {
    Ratio {
        numerator: LogQuery,
        denominator: LogQuery,
        max_increase: f64,
        min_samples: u64,
        min_delta: f64,
    },
    Distribution {
        query: LogQuery,
        quantile: f64,
        max_increase: f64,
        min_samples: u64,
        min_delta: f64,
    },
    NewValues {
        query: LogQuery,
        field: String,
        max_new: u64,
        /// Records the query must match in each window: a value "never seen" in a
        /// baseline of two errors is no evidence.
        min_samples: u64,
    },
    Probe {
        probe: String,
        max_failures: u64,
    },
}

impl CheckKind {
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Ratio { .. } => "ratio",
            CheckKind::Distribution { .. } => "distribution",
            CheckKind::NewValues { .. } => "new_values",
            CheckKind::Probe { .. } => "probe",
        }
    }
}

/// `1.5x`, `1.5`, `150%` → 1.5.
fn parse_factor(value: &serde_json::Value) -> Option<f64> {
    match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => {
            let s = s.trim();
            if let Some(x) = s.strip_suffix(['x', 'X']) {
                x.trim().parse().ok()
            } else if let Some(p) = s.strip_suffix('%') {
                p.trim().parse::<f64>().ok().map(|p| p / 100.0)
            } else {
                s.parse().ok()
            }
        }
        _ => None,
    }
    .filter(|f: &f64| f.is_finite() && *f >= 1.0)
}

impl CheckSpec {
    /// Reads one `verifications:` entry; the error says which key is wrong and why.
    pub fn from_json(item: &serde_json::Value) -> Result<CheckSpec, String> {
        let obj = item
            .as_object()
            .ok_or("a verification is a mapping with `name` and `kind`")?;
        let name = obj
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or("a verification needs a `name`")?
            .to_string();
        let kind = obj.get("kind").and_then(|v| v.as_str()).ok_or_else(|| {
            format!("verification `{name}` needs a `kind` (ratio, distribution, new_values, probe)")
        })?;
        let allowed: &[&str] = match kind {
            "ratio" => &[
                "name",
                "kind",
                "numerator",
                "denominator",
                "max_increase",
                "min_samples",
                "min_delta",
            ],
            "distribution" => &[
                "name",
                "kind",
                "query",
                "quantile",
                "max_increase",
                "min_samples",
                "min_delta",
            ],
            "new_values" => &["name", "kind", "query", "field", "max_new", "min_samples"],
            "probe" => &["name", "kind", "probe", "max_failures"],
            other => {
                let hint = crate::config::validate::did_you_mean(
                    other,
                    &["ratio", "distribution", "new_values", "probe"],
                )
                .map(|m| format!(" (did you mean `{m}`?)"))
                .unwrap_or_default();
                return Err(format!(
                    "verification `{name}`: unknown kind `{other}`{hint}"
                ));
            }
        };
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                let hint = crate::config::validate::did_you_mean(key, allowed)
                    .map(|m| format!(" (did you mean `{m}`?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "verification `{name}`: unknown key `{key}` for kind {kind}{hint}"
                ));
            }
        }
        let query = |key: &str| -> Result<LogQuery, String> {
            let text = obj
                .get(key)
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("verification `{name}` needs `{key}` (a log query)"))?;
            crate::rules::parser::parse_log_query(text)
                .map_err(|e| format!("verification `{name}`: `{key}` at offset {}: {e}", e.offset))
        };
        let number = |key: &str, default: f64| -> Result<f64, String> {
            match obj.get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| format!("verification `{name}`: `{key}` must be a number ≥ 0")),
            }
        };
        let factor = || -> Result<f64, String> {
            match obj.get("max_increase") {
                None => Ok(1.0),
                Some(v) => parse_factor(v).ok_or_else(|| {
                    format!("verification `{name}`: `max_increase` must be a factor ≥ 1 like 1.5x")
                }),
            }
        };
        let kind = match kind {
            "ratio" => CheckKind::Ratio {
                numerator: query("numerator")?,
                denominator: query("denominator")?,
                max_increase: factor()?,
                min_samples: number("min_samples", 100.0)? as u64,
                min_delta: number("min_delta", 0.005)?,
            },
            "distribution" => {
                let query = query("query")?;
                if query.unwrap.is_none() {
                    return Err(format!(
                        "verification `{name}`: a distribution needs numeric samples: end `query` with `| unwrap <field>`"
                    ));
                }
                let quantile = number("quantile", 0.95)?;
                if !(0.0..=1.0).contains(&quantile) {
                    return Err(format!(
                        "verification `{name}`: `quantile` must be between 0 and 1"
                    ));
                }
                CheckKind::Distribution {
                    query,
                    quantile,
                    max_increase: factor()?,
                    min_samples: number("min_samples", 200.0)? as u64,
                    min_delta: number("min_delta", 5.0)?,
                }
            }
            "new_values" => CheckKind::NewValues {
                query: query("query")?,
                field: obj
                    .get("field")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| format!("verification `{name}` needs `field`"))?
                    .to_string(),
                max_new: number("max_new", 0.0)? as u64,
                min_samples: number("min_samples", 100.0)? as u64,
            },
            _ => CheckKind::Probe {
                probe: obj
                    .get("probe")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| format!("verification `{name}` needs `probe` (a probe's name)"))?
                    .to_string(),
                max_failures: number("max_failures", 0.0)? as u64,
            },
        };
        Ok(CheckSpec { name, kind })
    }
}

/// Probe results of one version in one bucket.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
struct ProbeCounts {
    total: u64,
    failures: u64,
}

/// Where each check's evidence is: indices of its windows.
#[derive(Clone, Debug)]
enum Sources {
    Ratio { num: usize, den: usize },
    Distribution { window: usize },
    NewValues { window: usize },
    Probe,
}

/// A verification's running state, kept between looks.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Looks {
    /// The information fraction of the last look of each check.
    pub fraction: Vec<f64>,
}

pub struct Verifier {
    pub checks: Vec<CheckSpec>,
    sources: Vec<Sources>,
    pub windows: LogWindows,
    /// (probe, version, bucket) → counts.
    probes: BTreeMap<(String, String, i64), ProbeCounts>,
    pub width: i64,
    verify_window: i64,
    baseline_window: i64,
    probe_grace: i64,
    confidence: f64,
    /// The probes that run, when not all do: a `probe` check of another probe has no
    /// data source and is left out of the verdict (and of the alpha correction). `None`:
    /// every probe runs; `Some([])`: none (`replay`, `test`).
    pub available_probes: Option<Vec<String>>,
}

/// Everything a verifier holds that must survive a restart.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    pub windows: Vec<(String, i64, Vec<WindowSeries>)>,
    probes: Vec<((String, String, i64), ProbeCounts)>,
}

/// The most series one check's window may hold: versions × files × (values, for
/// `new_values`). Bounds the memory of a long-running agent.
const MAX_EVIDENCE_SERIES: usize = 10_000;

fn ns(d: std::time::Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

impl Verifier {
    pub fn new(
        checks: Vec<CheckSpec>,
        config: &DeploymentsConfig,
        sources: std::collections::HashMap<String, crate::parse::FieldNames>,
    ) -> Verifier {
        let verify_window = ns(config.verify_window).max(NS);
        let baseline_window = ns(config.baseline_window).max(NS);
        // About 40 buckets per verify window, between 1s and 60s, dividing both windows.
        let width = (verify_window / 40).clamp(NS, 60 * NS);
        let width = (width / NS).max(1) * NS;
        let range = baseline_window + verify_window + 2 * width;
        let mut windows = LogWindows::new(
            sources,
            crate::parse::Format::Structlog.default_field_names(),
        );
        let mut add = |query: &LogQuery, fields: &[String], kind: AccKind| -> usize {
            let key = format!("{query}\u{0}{}", fields.join(","));
            if let Some(i) = windows.windows.iter().position(|w| w.key == key) {
                return i;
            }
            let window = LogWindow::new(
                WindowSpec {
                    key,
                    query,
                    label_fields: fields,
                    kind,
                    width,
                    range: range.div_euclid(width) * width + width,
                    max_series: MAX_EVIDENCE_SERIES,
                },
                &mut windows.table,
            );
            windows.windows.push(window);
            windows.windows.len() - 1
        };
        let by_version = ["deployment".to_string()];
        let sources = checks
            .iter()
            .map(|check| match &check.kind {
                CheckKind::Ratio {
                    numerator,
                    denominator,
                    ..
                } => Sources::Ratio {
                    num: add(numerator, &by_version, AccKind::Lines),
                    den: add(denominator, &by_version, AccKind::Lines),
                },
                CheckKind::Distribution { query, .. } => Sources::Distribution {
                    window: add(query, &by_version, AccKind::Sketch),
                },
                CheckKind::NewValues { query, field, .. } => Sources::NewValues {
                    window: add(
                        query,
                        &["deployment".to_string(), field.clone()],
                        AccKind::Lines,
                    ),
                },
                CheckKind::Probe { .. } => Sources::Probe,
            })
            .collect();
        Verifier {
            checks,
            sources,
            windows,
            probes: BTreeMap::new(),
            width,
            verify_window,
            baseline_window,
            probe_grace: ns(config.probe_grace),
            confidence: config.confidence,
            available_probes: None,
        }
    }

    pub fn ingest_records<'a>(
        &mut self,
        batch: &LogBatch,
        records: impl Iterator<Item = &'a LogRecord>,
    ) {
        let mut tally = IngestTally::default();
        self.windows.ingest_records(batch, records, &mut tally);
    }

    /// A probe result, attributed to `version` (the probe's own version, else the live one).
    pub fn ingest_probe(&mut self, sample: &ProbeSample, version: &str) {
        let bucket = (sample.time_unix_nano - 1).div_euclid(self.width);
        let counts = self
            .probes
            .entry((sample.probe.to_string(), version.to_string(), bucket))
            .or_default();
        counts.total += 1;
        if !sample.success {
            counts.failures += 1;
        }
    }

    /// Forgets evidence no verification starting at or after `now` can use.
    pub fn prune(&mut self, now: i64) {
        for window in &mut self.windows.windows {
            window.prune(now);
        }
        let floor = (now - self.baseline_window - self.verify_window - 2 * self.width)
            .div_euclid(self.width);
        self.probes.retain(|(_, _, b), _| *b >= floor);
    }

    /// The combined buckets of `version`'s series of a window over `(from, to]`.
    fn version_acc(
        &self,
        window: usize,
        version: &str,
        from: i64,
        to: i64,
    ) -> Option<crate::rules::logs::Acc> {
        let window = &self.windows.windows[window];
        let mut acc: Option<crate::rules::logs::Acc> = None;
        for (labels, a) in window.combine(to, (to - from).max(window.width)) {
            if labels.get("deployment") != Some(version) {
                continue;
            }
            match &mut acc {
                Some(x) => x.merge(&a),
                None => acc = Some(a),
            }
        }
        acc
    }

    /// Distinct values of `field` for `version` over `(from, to]`.
    fn version_values(
        &self,
        window: usize,
        field: &str,
        version: &str,
        from: i64,
        to: i64,
    ) -> (HashSet<String>, u64) {
        let window = &self.windows.windows[window];
        let mut values = HashSet::new();
        let mut n = 0;
        for (labels, a) in window.combine(to, (to - from).max(window.width)) {
            if labels.get("deployment") != Some(version) {
                continue;
            }
            n += a.count();
            values.insert(labels.get(field).unwrap_or("").to_string());
        }
        (values, n)
    }

    /// One look at a running verification at `now`: updates its checks and decides the
    /// verdict when it can (any check failed, or the window is over).
    /// Looks are sequential: each spends the share of its check's alpha that the
    /// spending function allows since the check's last test (a look below `min_samples`
    /// does not test, so it spends nothing).
    pub fn look(&self, deployment: &mut Deployment, looks: &mut Looks, now: i64) {
        let Some(previous) = deployment.previous.clone() else {
            return;
        };
        if deployment.verdict.is_some() || deployment.initial {
            return;
        }
        let t0 = deployment.t0;
        let end = t0 + self.verify_window;
        let now = now.min(end);
        let fraction = ((now - t0) as f64 / self.verify_window as f64).clamp(0.0, 1.0);
        let active: Vec<usize> = (0..self.checks.len())
            .filter(|&i| match (&self.checks[i].kind, &self.available_probes) {
                (CheckKind::Probe { probe, .. }, Some(available)) => available.contains(probe),
                _ => true,
            })
            .collect();
        let alpha_check = (1.0 - self.confidence) / active.len().max(1) as f64;
        looks.fraction.resize(self.checks.len(), 0.0);
        // Series are per version, so a bucket of slack at either end only rounds the
        // windows to whole buckets; it never mixes the versions' evidence.
        let baseline = (t0 - self.baseline_window, t0 + self.width);
        let current = (t0 - self.width, now + self.width);
        let finished = now >= end;
        let mut outcomes = Vec::new();
        for (i, check) in self.checks.iter().enumerate() {
            let mut outcome = CheckOutcome {
                name: check.name.clone(),
                kind: check.kind.name().to_string(),
                verdict: None,
                baseline: f64::NAN,
                current: f64::NAN,
                n_baseline: 0,
                n_current: 0,
                statistic: f64::NAN,
                p_value: f64::NAN,
                threshold: f64::NAN,
                alpha: 0.0,
                new_values: Vec::new(),
                note: None,
            };
            if !active.contains(&i) {
                outcome.note = Some(match (&check.kind, &self.available_probes) {
                    (CheckKind::Probe { probe, .. }, Some(available)) if !available.is_empty() => {
                        format!("no data source: probe `{probe}` is not configured in `probes:`")
                    }
                    _ => "no data source here (probes do not run in replay or tests)".into(),
                });
                outcomes.push(outcome);
                continue;
            }
            let alpha = stats::look_alpha(alpha_check, looks.fraction[i], fraction);
            outcome.alpha = alpha;
            let previous_outcome = deployment.checks.iter().find(|c| c.name == check.name);
            // A check that failed at an earlier look stays failed.
            if let Some(prev) = previous_outcome.filter(|c| c.verdict == Some(Verdict::Fail)) {
                outcomes.push(prev.clone());
                continue;
            }
            let apply = |outcome: &mut CheckOutcome, result: &TestResult| {
                outcome.baseline = result.baseline;
                outcome.current = result.current;
                outcome.n_baseline = result.n_baseline;
                outcome.n_current = result.n_current;
                outcome.statistic = result.statistic;
                outcome.p_value = result.p_value;
                outcome.threshold = result.threshold;
            };
            match (&check.kind, &self.sources[i]) {
                (
                    CheckKind::Ratio {
                        max_increase,
                        min_samples,
                        min_delta,
                        ..
                    },
                    Sources::Ratio { num, den },
                ) => {
                    let count = |w: usize, v: &str, (from, to): (i64, i64)| {
                        self.version_acc(w, v, from, to).map_or(0, |a| a.count())
                    };
                    let (nb, db) = (
                        count(*num, &previous, baseline),
                        count(*den, &previous, baseline),
                    );
                    let (nc, dc) = (
                        count(*num, &deployment.version, current),
                        count(*den, &deployment.version, current),
                    );
                    let result = stats::ratio_test(nb, db, nc, dc, *max_increase, *min_delta);
                    apply(&mut outcome, &result);
                    let enough = db >= *min_samples && dc >= *min_samples;
                    if decide(&mut outcome, &result, enough, alpha, finished, *min_samples) {
                        looks.fraction[i] = fraction;
                    }
                }
                (
                    CheckKind::Distribution {
                        quantile,
                        max_increase,
                        min_samples,
                        min_delta,
                        ..
                    },
                    Sources::Distribution { window },
                ) => {
                    let base = self.version_acc(*window, &previous, baseline.0, baseline.1);
                    let new = self.version_acc(*window, &deployment.version, current.0, current.1);
                    let sketch = |a: &Option<crate::rules::logs::Acc>| match a {
                        Some(crate::rules::logs::Acc::Sketch(s)) => (**s).clone(),
                        _ => crate::rules::sketch::Sketch::new(),
                    };
                    let (base, new) = (sketch(&base), sketch(&new));
                    let result =
                        stats::distribution_test(&base, &new, *quantile, *max_increase, *min_delta);
                    apply(&mut outcome, &result);
                    let enough = base.count() >= *min_samples && new.count() >= *min_samples;
                    if decide(&mut outcome, &result, enough, alpha, finished, *min_samples) {
                        looks.fraction[i] = fraction;
                    }
                }
                (
                    CheckKind::NewValues {
                        field,
                        max_new,
                        min_samples,
                        ..
                    },
                    Sources::NewValues { window },
                ) => {
                    let (known, nb) =
                        self.version_values(*window, field, &previous, baseline.0, baseline.1);
                    let (seen, nc) = self.version_values(
                        *window,
                        field,
                        &deployment.version,
                        current.0,
                        current.1,
                    );
                    let mut new: Vec<String> = seen.difference(&known).cloned().collect();
                    new.sort();
                    outcome.n_baseline = nb;
                    outcome.n_current = nc;
                    outcome.baseline = known.len() as f64;
                    outcome.current = new.len() as f64;
                    outcome.threshold = *max_new as f64;
                    if nb < *min_samples || nc < *min_samples {
                        // Too little to compare with (an empty baseline included): never
                        // a failure, inconclusive at the end.
                        if finished {
                            outcome.verdict = Some(Verdict::Inconclusive);
                            outcome.note =
                                Some(format!("fewer than min_samples={min_samples} in a window"));
                        }
                    } else if new.len() as u64 > *max_new {
                        outcome.verdict = Some(Verdict::Fail);
                    } else if finished {
                        outcome.verdict = Some(Verdict::Pass);
                    }
                    outcome.new_values = new;
                }
                (
                    CheckKind::Probe {
                        probe,
                        max_failures,
                    },
                    Sources::Probe,
                ) => {
                    let from = (t0 + self.probe_grace - 1).div_euclid(self.width) + 1;
                    let to = (now - 1).div_euclid(self.width);
                    let (mut total, mut failures) = (0, 0);
                    // Within probe_grace of the switch there is nothing to count yet (and
                    // a reversed range would panic).
                    if from <= to {
                        for (_, c) in self.probes.range(
                            (probe.clone(), deployment.version.clone(), from)
                                ..=(probe.clone(), deployment.version.clone(), to),
                        ) {
                            total += c.total;
                            failures += c.failures;
                        }
                    }
                    outcome.n_current = total;
                    outcome.current = failures as f64;
                    outcome.threshold = *max_failures as f64;
                    if failures > *max_failures {
                        outcome.verdict = Some(Verdict::Fail);
                    } else if finished {
                        outcome.verdict = Some(if total > 0 {
                            Verdict::Pass
                        } else {
                            Verdict::Inconclusive
                        });
                        if total == 0 {
                            outcome.note = Some("no probe results after probe_grace".into());
                        }
                    }
                }
                _ => {}
            }
            outcomes.push(outcome);
        }
        deployment.checks = outcomes;
        let counted: Vec<&CheckOutcome> = deployment
            .checks
            .iter()
            .enumerate()
            .filter(|(i, _)| active.contains(i))
            .map(|(_, c)| c)
            .collect();
        let verdict = if counted.iter().any(|c| c.verdict == Some(Verdict::Fail)) {
            Some(Verdict::Fail)
        } else if finished {
            if !counted.is_empty() && counted.iter().all(|c| c.verdict == Some(Verdict::Pass)) {
                Some(Verdict::Pass)
            } else {
                Some(Verdict::Inconclusive)
            }
        } else {
            None
        };
        if let Some(verdict) = verdict {
            deployment.verdict = Some(verdict);
            deployment.decided_at = Some(now);
        }
    }

    /// The evidence of `version`, for `GET /api/v1/baselines/{version}` and for a peer.
    pub fn summary(&self, version: &str) -> Evidence {
        Evidence {
            windows: self
                .windows
                .windows
                .iter()
                .map(|w| {
                    let series = w
                        .series
                        .iter()
                        .filter(|s| s.labels.get("deployment") == Some(version))
                        .cloned()
                        .collect();
                    (w.key.clone(), w.width, series)
                })
                .collect(),
            probes: self
                .probes
                .iter()
                .filter(|((_, v, _), _)| v == version)
                .map(|(k, c)| (k.clone(), *c))
                .collect(),
        }
    }

    pub fn snapshot(&self) -> Evidence {
        Evidence {
            windows: self
                .windows
                .windows
                .iter()
                .map(|w| (w.key.clone(), w.width, w.series.clone()))
                .collect(),
            probes: self.probes.iter().map(|(k, c)| (k.clone(), *c)).collect(),
        }
    }

    /// Adds evidence (a restart's saved state, or a peer's summary of a version this
    /// agent never saw): series of the same query and bucket width are merged in.
    pub fn absorb(&mut self, evidence: Evidence) {
        for (key, width, series) in evidence.windows {
            let Some(window) = self
                .windows
                .windows
                .iter_mut()
                .find(|w| w.key == key && w.width == width)
            else {
                continue;
            };
            let mut all = std::mem::take(&mut window.series);
            for s in series {
                match all.iter_mut().find(|x| x.labels == s.labels) {
                    Some(existing) => {
                        for (b, acc) in s.buckets {
                            match existing.buckets.iter_mut().find(|(x, _)| *x == b) {
                                Some((_, a)) => a.merge(&acc),
                                None => existing.buckets.push_back((b, acc)),
                            }
                        }
                        existing.buckets.make_contiguous().sort_by_key(|(b, _)| *b);
                    }
                    None => all.push(s),
                }
            }
            window.restore(all);
        }
        for (k, c) in evidence.probes {
            let e = self.probes.entry(k).or_default();
            e.total += c.total;
            e.failures += c.failures;
        }
    }

    /// Whether any evidence of `version` is here (else a peer may have it).
    pub fn has_version(&self, version: &str) -> bool {
        self.windows.windows.iter().any(|w| {
            w.series
                .iter()
                .any(|s| s.labels.get("deployment") == Some(version))
        })
    }

    pub fn memory_bytes(&self) -> usize {
        self.windows.memory_bytes() + self.probes.len() * 96
    }
}

/// The sequential decision of a statistical check at one look: `fail` when the evidence
/// is enough and significant at this look's `alpha`; at the end of the window `pass`, or
/// `inconclusive` below `min_samples`. Returns whether the look tested (only a look that
/// tests spends alpha: below `min_samples` it waits).
fn decide(
    outcome: &mut CheckOutcome,
    result: &TestResult,
    enough: bool,
    alpha: f64,
    finished: bool,
    min_samples: u64,
) -> bool {
    if enough && result.fails(alpha) {
        outcome.verdict = Some(Verdict::Fail);
    } else if finished {
        outcome.verdict = Some(if enough {
            Verdict::Pass
        } else {
            Verdict::Inconclusive
        });
        if !enough {
            outcome.note = Some(format!("fewer than min_samples={min_samples} in a window"));
        }
    }
    enough
}

/// Labels of a version, for tests.
pub fn version_labels(version: &str) -> Labels {
    Labels::from_pairs([("deployment", version)])
}
