//! The rule engine: the loaded groups, the log windows and sample series they read,
//! and every alert's state. Records and samples go in as they arrive; `advance(now)`
//! runs every group evaluation due up to `now`, in time order, and returns the alert
//! transitions. The same engine runs live (`now` = wall clock − `evaluation_delay`), in
//! `sidewatch test` and in `replay` (`now` = the records' own time), so the three agree.

use std::collections::HashMap;
use std::time::Duration;

use super::alert::{Alert, AlertEvent, AlertSet, Candidate, Timing};
use super::ast::{Expr, ExprKind, Grouping, RangeArg, RangeFunc, VectorMatching};
use super::eval::{self, EvalCtx, EvalError, Sample, Val};
use super::file::{RuleKind, RuleSet};
use super::labels::{Labels, NAME};
use super::logs::{AccKind, IngestTally, LogWindow, LogWindows, WindowSeries, WindowSpec};
use super::series::{LOOKBACK_NS, SeriesStore};
use crate::event::LogBatch;
use crate::parse::FieldNames;

/// Engine settings that do not come from rule files.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// The most series one log window may hold; more are refused and counted.
    pub max_series: usize,
    /// Labels every alert carries unless its rule sets them (`service`, `environment`).
    pub alert_labels: Labels,
    /// The field mapping of each log source, by source name.
    pub sources: HashMap<String, FieldNames>,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            max_series: 10_000,
            alert_labels: Labels::new(),
            sources: HashMap::new(),
        }
    }
}

/// How the last evaluation of a rule went.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RuleHealth {
    pub last_evaluation: Option<i64>,
    pub last_error: Option<String>,
    pub evaluations: u64,
    pub failures: u64,
    /// Series in the last result.
    pub series: usize,
}

/// Counters the engine keeps about itself, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineCounters {
    pub records_matched: u64,
    pub records_too_old: u64,
    pub series_limited: u64,
    pub unwrap_errors: u64,
    pub evaluations: u64,
    pub evaluation_failures: u64,
}

/// What survives a restart (or a reload): window contents, sample series, alerts.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct EngineState {
    pub saved_at: i64,
    pub windows: Vec<(String, i64, Vec<WindowSeries>)>,
    pub series: SeriesStore,
    /// Alert sets by rule signature.
    pub alerts: Vec<(String, AlertSet)>,
    /// The last tick of each group, by `file\0group`.
    pub ticks: Vec<(String, i64)>,
}

pub struct Engine {
    pub rules: RuleSet,
    pub logs: LogWindows,
    pub series: SeriesStore,
    options: EngineOptions,
    window_of: HashMap<usize, usize>,
    /// The rules (group, rule name) that read each log window.
    pub window_users: Vec<Vec<(String, String)>>,
    /// Per group, per rule.
    alerts: Vec<Vec<AlertSet>>,
    recorded: Vec<Vec<Vec<Labels>>>,
    pub health: Vec<Vec<RuleHealth>>,
    /// The last evaluated tick of each group.
    last_tick: Vec<Option<i64>>,
    /// Evaluations never run before this time (the engine's start).
    origin: Option<i64>,
    pub counters: EngineCounters,
}

fn ns(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The labels a rule names anywhere: `by`, `on`, the call's own grouping, and its
/// templates. Log fields with these names become labels of the rule's log series.
fn named_labels(expr: &Expr, out: &mut Vec<String>) {
    expr.walk(&mut |e| match &e.kind {
        ExprKind::Aggregate(agg) => {
            if let Some(Grouping::By(names)) = &agg.grouping {
                out.extend(names.iter().cloned());
            }
        }
        ExprKind::Binary(bin) => {
            if let Some(VectorMatching::On(names)) = &bin.matching {
                out.extend(names.iter().cloned());
            }
        }
        ExprKind::RangeCall(call) => {
            if let Some(Grouping::By(names)) = &call.grouping {
                out.extend(names.iter().cloned());
            }
        }
        _ => {}
    });
}

impl Engine {
    pub fn new(rules: RuleSet, options: EngineOptions) -> Engine {
        let mut logs = LogWindows::new(
            options.sources.clone(),
            crate::parse::Format::Structlog.default_field_names(),
        );
        let mut window_of = HashMap::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        let mut retention = LOOKBACK_NS;
        // First pass: every log range call's window key, width and range.
        struct Plan {
            users: Vec<(String, String)>,
            key: String,
            width: i64,
            range: i64,
            kind: AccKind,
            calls: Vec<usize>,
            query: super::ast::LogQuery,
            fields: Vec<String>,
        }
        let mut plans: Vec<Plan> = Vec::new();
        for group in &rules.groups {
            let interval = ns(group.interval).max(1_000_000);
            for rule in &group.rules {
                let mut fields = Vec::new();
                named_labels(&rule.expr, &mut fields);
                if let Some(resolve) = &rule.resolve {
                    named_labels(resolve, &mut fields);
                }
                for (_, t) in rule.labels.iter().chain(&rule.annotations) {
                    fields.extend(t.label_names());
                }
                fields.sort();
                fields.dedup();
                let exprs = std::iter::once(&rule.expr).chain(rule.resolve.as_ref());
                for expr in exprs {
                    expr.walk(&mut |e| {
                        let ExprKind::RangeCall(call) = &e.kind else {
                            return;
                        };
                        let range = ns(call.range).max(1_000_000);
                        retention = retention.max(range + LOOKBACK_NS);
                        let RangeArg::Log(query) = &call.arg else {
                            return;
                        };
                        let kind = match (call.func, &query.unwrap) {
                            (_, None) => AccKind::Lines,
                            (RangeFunc::QuantileOverTime, Some(_)) => AccKind::Sketch,
                            (_, Some(_)) => AccKind::Values,
                        };
                        let key = format!("{query}\u{0}{}", fields.join(","));
                        let width = gcd(range, interval);
                        let i = *by_key.entry(key.clone()).or_insert_with(|| {
                            plans.push(Plan {
                                users: Vec::new(),
                                key,
                                width,
                                range,
                                kind,
                                calls: Vec::new(),
                                query: query.clone(),
                                fields: fields.clone(),
                            });
                            plans.len() - 1
                        });
                        let plan = &mut plans[i];
                        plan.width = gcd(plan.width, width);
                        plan.range = plan.range.max(range);
                        plan.kind = plan.kind.max(kind);
                        plan.calls.push(eval::call_key(call));
                        let user = (group.name.clone(), rule.name.clone());
                        if !plan.users.contains(&user) {
                            plan.users.push(user);
                        }
                    });
                }
            }
        }
        let mut window_users = Vec::new();
        for plan in plans {
            window_users.push(plan.users);
            let index = logs.windows.len();
            for call in &plan.calls {
                window_of.insert(*call, index);
            }
            let window = LogWindow::new(
                WindowSpec {
                    key: plan.key,
                    query: &plan.query,
                    label_fields: &plan.fields,
                    kind: plan.kind,
                    width: plan.width,
                    range: plan.range,
                    max_series: options.max_series,
                },
                &mut logs.table,
            );
            logs.windows.push(window);
        }
        let alerts = rules
            .groups
            .iter()
            .map(|g| vec![AlertSet::default(); g.rules.len()])
            .collect();
        let recorded = rules
            .groups
            .iter()
            .map(|g| vec![Vec::new(); g.rules.len()])
            .collect();
        let health = rules
            .groups
            .iter()
            .map(|g| vec![RuleHealth::default(); g.rules.len()])
            .collect();
        let last_tick = vec![None; rules.groups.len()];
        Engine {
            rules,
            logs,
            series: SeriesStore::new(retention),
            options,
            window_of,
            window_users,
            alerts,
            recorded,
            health,
            last_tick,
            origin: None,
            counters: EngineCounters::default(),
        }
    }

    /// Sets the engine's clock origin: no evaluation before `t`, and records too old for
    /// any evaluation from `t` on only count (a backlog never fires "now").
    pub fn start(&mut self, t: i64) {
        self.origin = Some(t);
        for window in &mut self.logs.windows {
            window.prune(t - window.width);
        }
        for (g, group) in self.rules.groups.iter().enumerate() {
            let interval = ns(group.interval).max(1);
            // The last tick strictly before `t`: the first evaluation is at or after it.
            self.last_tick[g] = Some((t - 1).div_euclid(interval) * interval);
        }
    }

    /// `start(t)` unless the engine already has a clock (restored from a saved state).
    pub fn start_if_new(&mut self, t: i64) {
        if self.origin.is_none() {
            self.start(t);
        }
    }

    pub fn ingest(&mut self, batch: &LogBatch) {
        self.ingest_records(batch, &batch.records);
    }

    /// Adds the given records of a batch (`records` may be a subset, in any order).
    pub fn ingest_records<'a>(
        &mut self,
        batch: &LogBatch,
        records: impl IntoIterator<Item = &'a crate::event::LogRecord>,
    ) {
        let mut tally = IngestTally::default();
        self.logs
            .ingest_records(batch, records.into_iter(), &mut tally);
        self.counters.records_matched += tally.matched;
        self.counters.records_too_old += tally.too_old;
        self.counters.series_limited += tally.series_limited;
        self.counters.unwrap_errors += tally.unwrap_errors;
    }

    /// A sample of a series (a probe result, a test's `input_series`).
    pub fn push_sample(&mut self, labels: &Labels, t: i64, v: Option<f64>) {
        self.series.push(labels, t, v);
    }

    /// The time of the next evaluation of any group after the ones already run.
    pub fn next_tick(&self) -> Option<i64> {
        self.rules
            .groups
            .iter()
            .enumerate()
            .map(|(g, group)| {
                let interval = ns(group.interval).max(1);
                match self.last_tick[g] {
                    Some(last) => last + interval,
                    None => 0,
                }
            })
            .min()
    }

    /// Runs every evaluation due at or before `now`, in time order (groups at the same
    /// instant in file order), and returns the alert transitions.
    pub fn advance(&mut self, now: i64) -> Vec<AlertEvent> {
        if self.origin.is_none() {
            self.start(now);
        }
        let mut events = Vec::new();
        while let Some(t) = self.next_tick() {
            if t > now {
                break;
            }
            for g in 0..self.rules.groups.len() {
                let interval = ns(self.rules.groups[g].interval).max(1);
                let due = self.last_tick[g].map_or(0, |last| last + interval);
                if due == t {
                    self.evaluate_group(g, t, &mut events);
                    self.last_tick[g] = Some(t);
                }
            }
            for window in &mut self.logs.windows {
                window.prune(t);
            }
            self.series.prune(t);
        }
        events
    }

    fn evaluate_group(&mut self, g: usize, t: i64, events: &mut Vec<AlertEvent>) {
        let limit = self.rules.groups[g].limit;
        for r in 0..self.rules.groups[g].rules.len() {
            let rule = &self.rules.groups[g].rules[r];
            let ctx = EvalCtx {
                t,
                windows: &self.logs,
                series: &self.series,
                window_of: &self.window_of,
            };
            let result = eval::eval(&rule.expr, &ctx).map(Val::into_vector);
            let result = result.and_then(|v| {
                if limit > 0 && v.len() > limit {
                    Err(EvalError(format!(
                        "the rule produced {} series, more than the group's limit of {limit}",
                        v.len()
                    )))
                } else {
                    Ok(v)
                }
            });
            let health = &mut self.health[g][r];
            health.last_evaluation = Some(t);
            health.evaluations += 1;
            self.counters.evaluations += 1;
            let samples = match result {
                Ok(samples) => {
                    health.last_error = None;
                    health.series = samples.len();
                    samples
                }
                Err(e) => {
                    health.last_error = Some(e.0);
                    health.failures += 1;
                    self.counters.evaluation_failures += 1;
                    continue;
                }
            };
            match rule.kind {
                RuleKind::Record => self.record(g, r, t, samples),
                RuleKind::Alert => self.alert(g, r, t, samples, events),
            }
        }
    }

    fn record(&mut self, g: usize, r: usize, t: i64, samples: Vec<Sample>) {
        let rule = &self.rules.groups[g].rules[r];
        let mut produced = Vec::with_capacity(samples.len());
        for sample in samples {
            let mut labels = sample.labels.without_name();
            for (name, template) in &rule.labels {
                labels.insert(name.clone(), template.render(&sample.labels, sample.value));
            }
            labels.insert(NAME.to_string(), rule.name.clone());
            self.series.push(&labels, t, Some(sample.value));
            produced.push(labels);
        }
        let previous = std::mem::take(&mut self.recorded[g][r]);
        self.series.mark_stale(&rule.name, &previous, &produced, t);
        self.recorded[g][r] = produced;
    }

    fn alert(
        &mut self,
        g: usize,
        r: usize,
        t: i64,
        samples: Vec<Sample>,
        events: &mut Vec<AlertEvent>,
    ) {
        let rule = &self.rules.groups[g].rules[r];
        let candidates: Vec<Candidate> = samples
            .into_iter()
            .map(|sample| {
                let series = sample.labels.without_name();
                let mut labels = series.clone();
                for (name, template) in &rule.labels {
                    labels.insert(name.clone(), template.render(&series, sample.value));
                }
                for (name, value) in self.options.alert_labels.iter() {
                    if labels.get(name).is_none() {
                        labels.insert(name.to_string(), value.to_string());
                    }
                }
                labels.insert("alertname".to_string(), rule.name.clone());
                let annotations = rule
                    .annotations
                    .iter()
                    .map(|(name, template)| (name.clone(), template.render(&series, sample.value)))
                    .collect();
                Candidate {
                    series,
                    labels,
                    annotations,
                    value: sample.value,
                }
            })
            .collect();
        // `resolve_expr` is evaluated as a 0/1 condition per series, so "false" and
        // "series gone" can be told apart: a vanished series counts as resolved.
        let resolve: Option<HashMap<Labels, f64>> = rule.resolve.as_ref().map(|expr| {
            let ctx = EvalCtx {
                t,
                windows: &self.logs,
                series: &self.series,
                window_of: &self.window_of,
            };
            eval_condition(expr, &ctx)
                .map(|v| {
                    v.into_vector()
                        .into_iter()
                        .map(|s| (s.labels.without_name(), s.value))
                        .collect()
                })
                .unwrap_or_default()
        });
        let resolved = |series: &Labels| match &resolve {
            None => true,
            Some(map) => map.get(series).is_none_or(|v| *v != 0.0),
        };
        let timing = Timing {
            hold: ns(rule.hold),
            keep_firing_for: ns(rule.keep_firing_for),
        };
        self.alerts[g][r].update(t, timing, candidates, &resolved, events);
    }

    /// Every alert that is pending or firing, by rule order.
    pub fn active_alerts(&self) -> Vec<&Alert> {
        self.alerts
            .iter()
            .flatten()
            .flat_map(|set| {
                let mut alerts: Vec<&Alert> = set
                    .alerts
                    .values()
                    .filter(|a| a.state != super::alert::AlertState::Inactive)
                    .collect();
                alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
                alerts
            })
            .collect()
    }

    /// What the notifier sees: every firing alert, and every resolved one that had fired
    /// while the engine still remembers it (Prometheus' 15-minute `resolvedRetention`).
    pub fn notifiable_alerts(&self) -> Vec<&Alert> {
        self.alerts
            .iter()
            .flatten()
            .flat_map(|set| set.alerts.values())
            .filter(|a| {
                a.state == super::alert::AlertState::Firing
                    || (a.state == super::alert::AlertState::Inactive && a.fired_at.is_some())
            })
            .collect()
    }

    /// Active alerts of one rule by name, for tests.
    pub fn alerts_named(&self, name: &str) -> Vec<&Alert> {
        self.active_alerts()
            .into_iter()
            .filter(|a| a.labels.get("alertname") == Some(name))
            .collect()
    }

    /// The latest value of every recorded series (for `/metrics`).
    pub fn recorded_series(&self, t: i64) -> Vec<(&Labels, f64)> {
        let names: std::collections::HashSet<&str> = self
            .rules
            .groups
            .iter()
            .flat_map(|g| g.rules.iter())
            .filter(|r| r.kind == RuleKind::Record)
            .map(|r| r.name.as_str())
            .collect();
        self.series
            .latest(t)
            .into_iter()
            .filter(|(l, _)| l.get(NAME).is_some_and(|n| names.contains(n)))
            .collect()
    }

    pub fn memory_bytes(&self) -> usize {
        self.logs.memory_bytes()
    }

    /// The state worth keeping across a restart or a reload.
    pub fn snapshot(&self, saved_at: i64) -> EngineState {
        let mut alerts = Vec::new();
        for (g, group) in self.rules.groups.iter().enumerate() {
            for (r, rule) in group.rules.iter().enumerate() {
                if rule.kind == RuleKind::Alert && !self.alerts[g][r].alerts.is_empty() {
                    alerts.push((rule.signature(), self.alerts[g][r].clone()));
                }
            }
        }
        EngineState {
            saved_at,
            windows: self
                .logs
                .windows
                .iter()
                .map(|w| (w.key.clone(), w.width, w.series.clone()))
                .collect(),
            series: self.series.clone(),
            alerts,
            ticks: self
                .rules
                .groups
                .iter()
                .zip(&self.last_tick)
                .filter_map(|(g, t)| Some((group_key(g), (*t)?)))
                .collect(),
        }
    }

    /// Takes over a saved state: windows with the same query and bucket width get their
    /// series back, unchanged rules their alerts and `for` timers. `now` is when the
    /// engine resumes; after a restart the time since `saved_at` is an outage and `for`
    /// timers are restored as Prometheus does.
    pub fn restore(&mut self, state: EngineState, now: i64, after_restart: bool) {
        let mut windows: HashMap<String, (i64, Vec<WindowSeries>)> = state
            .windows
            .into_iter()
            .map(|(k, w, s)| (k, (w, s)))
            .collect();
        for window in &mut self.logs.windows {
            if let Some((width, series)) = windows.remove(&window.key)
                && width == window.width
            {
                window.restore(series);
            }
        }
        let retention = self.series.retention;
        self.series = state.series;
        self.series.retention = retention;
        let mut alerts: HashMap<String, AlertSet> = state.alerts.into_iter().collect();
        for (g, group) in self.rules.groups.iter().enumerate() {
            for (r, rule) in group.rules.iter().enumerate() {
                if let Some(mut set) = alerts.remove(&rule.signature()) {
                    if after_restart {
                        set.restore(ns(rule.hold), state.saved_at, now);
                    }
                    self.alerts[g][r] = set;
                }
            }
        }
        let ticks: HashMap<String, i64> = state.ticks.into_iter().collect();
        for (g, group) in self.rules.groups.iter().enumerate() {
            if let Some(t) = ticks.get(&group_key(group)) {
                let interval = ns(group.interval).max(1);
                // Resume on this group's grid; ticks missed while down are not replayed.
                let resume = (now - 1).div_euclid(interval) * interval;
                self.last_tick[g] = Some((*t).max(resume));
            }
        }
        if self.origin.is_none() {
            self.origin = Some(now);
        }
    }
}

fn group_key(group: &super::file::Group) -> String {
    format!("{}\u{0}{}", group.file.display(), group.name)
}

/// Evaluates `a < 0.02` as `a < bool 0.02` (other expressions as they are), in place:
/// the tree is not copied, because log windows are found by the address of its calls.
fn eval_condition(expr: &Expr, ctx: &EvalCtx<'_>) -> Result<Val, EvalError> {
    match &expr.kind {
        ExprKind::Binary(bin) if bin.op.is_comparison() => {
            let lhs = eval::eval(&bin.lhs, ctx)?;
            let rhs = eval::eval(&bin.rhs, ctx)?;
            eval::binary(bin.op, true, bin.matching.as_ref(), lhs, rhs)
        }
        ExprKind::Paren(inner) => eval_condition(inner, ctx),
        _ => eval::eval(expr, ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn engine(rules: &str) -> Engine {
        let set = super::super::file::load_str(
            std::path::Path::new("test.yaml"),
            rules,
            Duration::from_secs(1),
        )
        .expect("rules load");
        Engine::new(set, EngineOptions::default())
    }

    const RULES: &str = r#"
groups:
  - name: g
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: Down
        expr: job:up:sum < 1
        for: 1h
"#;

    /// A saved state restores recorded series, pending alerts and the group's clock
    /// through JSON, as the state store keeps it.
    #[test]
    fn state_survives_a_json_round_trip() {
        let mut a = engine(RULES);
        a.start(0);
        let down = Labels::from_pairs([("__name__", "up"), ("job", "api")]);
        for t in 0..=10 {
            a.push_sample(&down, t * S, Some(0.0));
        }
        a.advance(10 * S);
        assert_eq!(a.alerts_named("Down").len(), 1);
        let json = serde_json::to_vec(&a.snapshot(10 * S)).expect("state encodes");
        let state: EngineState = serde_json::from_slice(&json).expect("state decodes");
        let mut b = engine(RULES);
        b.restore(state, 12 * S, true);
        let alert = b.alerts_named("Down")[0].clone();
        // Pending for 10s of a 1h `for`: shifted by the 2s outage.
        assert_eq!(alert.active_at, 2 * S);
        assert_eq!(b.recorded_series(10 * S).len(), 1);
        assert_eq!(b.next_tick(), Some(12 * S));
    }

    /// A `by (path)` rule over more distinct paths than `max_series`: the window keeps
    /// its bound, refuses the rest, and says which rule it was.
    #[test]
    fn the_series_limit_bounds_a_window_and_is_counted() {
        let set = super::super::file::load_str(
            std::path::Path::new("test.yaml"),
            "groups:\n  - name: g\n    rules:\n      - record: by_path\n        expr: sum by (path) (count_over_time({source=\"app\"}[1m]))\n",
            Duration::from_secs(1),
        )
        .expect("rules load");
        let mut engine = Engine::new(
            set,
            EngineOptions {
                max_series: 3,
                ..EngineOptions::default()
            },
        );
        engine.start(0);
        let parser = crate::parse::LineParser::new(
            crate::parse::Format::Structlog,
            crate::parse::Format::Structlog.default_field_names(),
        );
        let mut batch = LogBatch::new("app".into());
        for i in 0..5 {
            let line = format!(r#"{{"event": "x", "path": "/p{i}"}}"#);
            let start = batch.buf.len();
            batch.buf.push_str(&line);
            let mut record = crate::event::LogRecord {
                observed_unix_nano: S,
                time_unix_nano: Some(S),
                ..Default::default()
            };
            parser.parse(
                &mut batch.buf,
                crate::event::Span::new(start, start + line.len()),
                &mut batch.fields,
                &mut record,
            );
            batch.records.push(record);
        }
        engine.ingest(&batch);
        engine.advance(2 * S);
        assert_eq!(engine.logs.windows[0].series.len(), 3);
        assert_eq!(engine.logs.windows[0].limited, 2);
        assert_eq!(engine.counters.series_limited, 2);
        assert_eq!(
            engine.window_users[0],
            vec![("g".to_string(), "by_path".to_string())]
        );
        assert_eq!(engine.recorded_series(2 * S).len(), 3);
    }
}
