//! `sidewatch test`: rule unit tests in `promtool test rules`' format, with log input
//! (`input_logs`) beside series input (`input_series`). Each test runs the rule files
//! through the same `Engine` as the agent, on a clock that starts at 0 with the first
//! input, and compares the firing alerts at each `eval_time` the way promtool does.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::engine::{Engine, EngineOptions};
use super::file::{self, Group, Rule, RuleKind, RuleSet};
use super::labels::{Labels, NAME};
use super::parser;
use crate::config::ConfigError;
use crate::event::{LogBatch, LogRecord, Span};
use crate::parse::{Format, LineParser};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    evaluation_interval: Option<String>,
    /// Deployment settings for `verification_test` (deployment verification).
    #[serde(default)]
    #[allow(dead_code)]
    deployments: Option<serde_json::Value>,
    #[serde(default)]
    tests: Vec<TestCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: Option<String>,
    /// The step of `input_series` values (default: `evaluation_interval`).
    interval: Option<String>,
    #[serde(default)]
    input_logs: Vec<InputLogs>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default, alias = "logql_expr_test")]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default)]
    verification_test: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLogs {
    source: String,
    /// The stream's `file` label (default: none).
    file: Option<String>,
    /// structlog (default) | json | logfmt | text.
    format: Option<String>,
    #[serde(default)]
    lines: Vec<LineSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineSpec {
    #[serde(default)]
    at: Option<String>,
    every: Option<String>,
    repeat: Option<u64>,
    line: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

const NS: i64 = 1_000_000_000;

/// Every time in a test is at most 100 years after its start, so that the sum of two
/// stays inside `i64` nanoseconds.
const MAX_TIME: i64 = 100 * 365 * 86_400 * NS;
/// Inputs (log lines and series values) one test may expand to: `repeat: 10000000000` or
/// `1+1x10000000000` is an error, not the machine's memory.
const MAX_INPUTS: usize = 1_000_000;
/// Group evaluations one test may ask for (its last `eval_time` over the shortest
/// interval): `eval_time: 100y` at 15s is an error, not a run of days.
const MAX_EVALUATIONS: i64 = 1_000_000;

fn duration_ns(text: &str, what: &str) -> Result<i64, String> {
    let nanos = file::parse_duration(text)
        .map(|d| d.as_nanos())
        .ok_or_else(|| {
            format!("invalid duration `{text}` for `{what}` (write it like 30s, 5m, 1h)")
        })?;
    if nanos > MAX_TIME as u128 {
        return Err(format!(
            "duration `{text}` for `{what}` is too long (at most 100 years)"
        ));
    }
    Ok(nanos as i64)
}

/// A duration that must be more than 0: an interval to step by.
fn interval_ns(text: &str, what: &str) -> Result<i64, String> {
    match duration_ns(text, what)? {
        0 => Err(format!("`{what}` must be more than 0")),
        ns => Ok(ns),
    }
}

fn too_many_inputs() -> String {
    format!("the test expands to more than {MAX_INPUTS} input lines and values")
}

fn format_time(ns: i64) -> String {
    super::ast::format_duration(Duration::from_nanos(ns.max(0) as u64))
}

/// Runs every test of every file; prints results; true when all passed.
pub fn run_files(files: &[PathBuf], out: &mut impl std::io::Write) -> bool {
    let mut all_ok = true;
    for path in files {
        let _ = writeln!(out, "Unit Testing: {}", path.display());
        match run_file(path) {
            Ok(results) => {
                for (name, failures) in results {
                    if failures.is_empty() {
                        let _ = writeln!(out, "  SUCCESS: {name}");
                    } else {
                        all_ok = false;
                        let _ = writeln!(out, "  FAILED: {name}");
                        for f in failures {
                            for line in f.lines() {
                                let _ = writeln!(out, "    {line}");
                            }
                        }
                    }
                }
            }
            Err(errors) => {
                all_ok = false;
                let _ = writeln!(out, "  FAILED:");
                for e in errors {
                    let _ = writeln!(out, "    {e}");
                }
            }
        }
    }
    all_ok
}

/// Runs one test file: the failures of each test, by name.
pub fn run_file(path: &Path) -> Result<Vec<(String, Vec<String>)>, Vec<String>> {
    let text = fs_err::read_to_string(path).map_err(|e| vec![e.to_string()])?;
    let base = path.parent().unwrap_or(Path::new("."));
    run_str(path, &text, |rule_files, interval| {
        file::load_files(rule_files, base, interval)
    })
}

/// Runs the text of a test file named `path` (for messages only): `load_rules` is given
/// its `rule_files` and evaluation interval and returns the rules to test. Pure: the
/// fuzz target and the property tests run it without touching the filesystem.
pub fn run_str(
    path: &Path,
    text: &str,
    load_rules: impl FnOnce(&[String], Duration) -> Result<RuleSet, Vec<ConfigError>>,
) -> Result<Vec<(String, Vec<String>)>, Vec<String>> {
    let file: TestFile = serde_saphyr::from_str(text)
        .map_err(|e| vec![crate::config::validate::yaml_error(path, &e).to_string()])?;
    let interval = match &file.evaluation_interval {
        Some(text) => interval_ns(text, "evaluation_interval").map_err(|e| vec![e])?,
        None => 60 * NS,
    };
    let rules = load_rules(&file.rule_files, Duration::from_nanos(interval as u64))
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    let mut results = Vec::new();
    for (i, test) in file.tests.iter().enumerate() {
        let name = test
            .name
            .clone()
            .unwrap_or_else(|| format!("test {}", i + 1));
        let failures = match run_test(test, &rules, interval, file.deployments.as_ref()) {
            Ok(failures) => failures,
            Err(e) => vec![e],
        };
        results.push((name, failures));
    }
    Ok(results)
}

/// An input to the engine at one instant.
enum Input<'a> {
    Line { source: usize, line: &'a str },
    Sample { labels: Labels, value: Option<f64> },
}

/// `deployments:` of a test file: the durations and settings of `sidewatch.yaml`.
pub fn deployments_config(
    value: Option<&serde_json::Value>,
) -> Result<crate::config::DeploymentsConfig, String> {
    let mut config = crate::config::DeploymentsConfig::default();
    let Some(value) = value else {
        return Ok(config);
    };
    let obj = value
        .as_object()
        .ok_or("`deployments` is a mapping like { verify_window: 10m, baseline_window: 30m }")?;
    for (key, v) in obj {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let duration = || {
            file::parse_duration(&text)
                .ok_or_else(|| format!("deployments.{key}: invalid duration `{text}`"))
        };
        match key.as_str() {
            "verify_window" => config.verify_window = duration()?,
            "baseline_window" => config.baseline_window = duration()?,
            "probe_grace" => config.probe_grace = duration()?,
            "probe_boost" => config.probe_boost = Some(duration()?),
            "version_field" => config.version_field = text,
            "confidence" => {
                config.confidence = text
                    .parse()
                    .ok()
                    .filter(|c: &f64| *c > 0.5 && *c < 1.0)
                    .ok_or_else(|| {
                        format!("deployments.confidence: `{text}` is not between 0.5 and 1")
                    })?
            }
            "detect" | "baseline_from" | "notify_on_pass" => {}
            other => return Err(format!("deployments: unknown key `{other}`")),
        }
    }
    Ok(config)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerificationTest {
    version: String,
    eval_time: String,
    exp_verdict: String,
    #[serde(default)]
    exp_failed_checks: Vec<String>,
}

fn run_test(
    test: &TestCase,
    rules: &RuleSet,
    interval: i64,
    deployments: Option<&serde_json::Value>,
) -> Result<Vec<String>, String> {
    let series_step = match &test.interval {
        Some(text) => interval_ns(text, "interval")?,
        None => interval,
    };
    // Expression tests run as recording rules of their own group, on the same grid.
    let mut rules = rules.clone();
    let mut expr_rules = Vec::new();
    for (i, t) in test.promql_expr_test.iter().enumerate() {
        let expr = parser::parse(&t.expr)
            .map_err(|e| format!("promql_expr_test `{}`: at offset {}: {e}", t.expr, e.offset))?;
        expr_rules.push(Rule {
            name: format!("__expr_test_{i}"),
            kind: RuleKind::Record,
            expr,
            expr_text: t.expr.clone(),
            labels: Vec::new(),
            annotations: Vec::new(),
            hold: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            resolve: None,
            resolve_text: None,
            line: 0,
        });
    }
    if !expr_rules.is_empty() {
        rules.groups.push(Group {
            name: "__expr_tests__".into(),
            file: PathBuf::from("<test>"),
            interval: Duration::from_nanos(interval as u64),
            limit: 0,
            rules: expr_rules,
        });
    }
    let mut sources: Vec<(Arc<str>, Option<String>, LineParser)> = Vec::new();
    let mut inputs: Vec<(i64, Input<'_>)> = Vec::new();
    for input in &test.input_logs {
        let format = match &input.format {
            Some(name) => Format::from_name(name)
                .ok_or_else(|| format!("input_logs: unknown format `{name}`"))?,
            None => Format::Structlog,
        };
        sources.push((
            Arc::from(input.source.as_str()),
            input.file.clone(),
            LineParser::new(format, format.default_field_names()),
        ));
        let source = sources.len() - 1;
        for spec in &input.lines {
            let at = duration_ns(spec.at.as_deref().unwrap_or("0s"), "at")?;
            let every = match &spec.every {
                Some(text) => duration_ns(text, "every")?,
                None => 0,
            };
            let repeat = spec.repeat.unwrap_or(1);
            if repeat > MAX_INPUTS.saturating_sub(inputs.len()) as u64 {
                return Err(too_many_inputs());
            }
            for k in 0..repeat as i64 {
                // Both are at most MAX_TIME and k < MAX_INPUTS: no overflow in i128.
                let time = at as i128 + every as i128 * k as i128;
                if time > MAX_TIME as i128 {
                    return Err(format!(
                        "input_logs: `at` + `every` × `repeat` of {:?} is beyond 100 years",
                        spec.line
                    ));
                }
                inputs.push((
                    time as i64,
                    Input::Line {
                        source,
                        line: &spec.line,
                    },
                ));
            }
        }
    }
    for series in &test.input_series {
        let labels = parse_series_notation(&series.series)?;
        let values = expand_values(&series.values)?;
        if values.len() > MAX_INPUTS.saturating_sub(inputs.len()) {
            return Err(too_many_inputs());
        }
        if (values.len() as i128 - 1) * series_step as i128 > MAX_TIME as i128 {
            return Err(format!(
                "input_series `{}`: its values reach beyond 100 years",
                series.series
            ));
        }
        for (i, value) in values.into_iter().enumerate() {
            if let Some(value) = value {
                inputs.push((
                    i as i64 * series_step,
                    Input::Sample {
                        labels: labels.clone(),
                        value,
                    },
                ));
            }
        }
    }
    inputs.sort_by_key(|(t, _)| *t);

    let mut checks: Vec<(i64, Check<'_>)> = Vec::new();
    for t in &test.alert_rule_test {
        checks.push((duration_ns(&t.eval_time, "eval_time")?, Check::Alert(t)));
    }
    for (i, t) in test.promql_expr_test.iter().enumerate() {
        let at = duration_ns(&t.eval_time, "eval_time")?;
        if at % interval != 0 {
            return Err(format!(
                "promql_expr_test `{}`: eval_time {} is not a multiple of the evaluation interval {}",
                t.expr,
                t.eval_time,
                format_time(interval)
            ));
        }
        checks.push((at, Check::Expr(i, t)));
    }
    let mut failures = Vec::new();
    let verification_tests: Vec<VerificationTest> = test
        .verification_test
        .iter()
        .map(|v| serde_json::from_value(v.clone()).map_err(|e| format!("verification_test: {e}")))
        .collect::<Result<_, _>>()?;
    for v in &verification_tests {
        checks.push((
            duration_ns(&v.eval_time, "eval_time")?,
            Check::Verification(v),
        ));
    }
    checks.sort_by_key(|(t, _)| *t);
    let last_check = checks.last().map_or(0, |(t, _)| *t);
    let shortest = rules
        .groups
        .iter()
        .map(|g| g.interval.as_nanos().min(MAX_TIME as u128) as i64)
        .chain([interval])
        .min()
        .unwrap_or(interval)
        .max(1);
    if last_check / shortest > MAX_EVALUATIONS {
        return Err(format!(
            "the last eval_time, {}, is more than {MAX_EVALUATIONS} evaluations every {}",
            format_time(last_check),
            format_time(shortest)
        ));
    }

    let deploy_config = deployments_config(deployments)?;
    let verifications =
        crate::deploy::Deployments::checks(&rules.verifications).map_err(|e| e.join("\n"))?;
    let mut deploys =
        crate::deploy::Deployments::new(&deploy_config, verifications, Default::default());
    // No probes run in a test: probe checks are left out of verdicts.
    deploys.verifier.available_probes = Some(Vec::new());
    let mut engine = Engine::new(rules, EngineOptions::default());
    engine.start(0);
    let mut next = 0;
    let mut last_look = 0i64;
    // Deployment looks happen on the evaluation grid, like rule evaluations.
    let look_until = |deploys: &mut crate::deploy::Deployments, last_look: &mut i64, upto: i64| {
        while *last_look + interval <= upto {
            *last_look += interval;
            deploys.tick(*last_look);
        }
    };
    let batch_for = |engine: &mut Engine,
                     deploys: &mut crate::deploy::Deployments,
                     last_look: &mut i64,
                     upto: i64,
                     next: &mut usize| {
        // Feeds every input at or before `upto`, evaluating the ticks before each time.
        while *next < inputs.len() && inputs[*next].0 <= upto {
            let t = inputs[*next].0;
            engine.advance(t - 1);
            look_until(deploys, last_look, t - 1);
            let mut batches: Vec<LogBatch> = Vec::new();
            while *next < inputs.len() && inputs[*next].0 == t {
                match &inputs[*next].1 {
                    Input::Line { source, line } => {
                        let (name, file, parser) = &sources[*source];
                        let path = file.as_deref().unwrap_or("");
                        // One batch per stream (source and file), each with its file mark.
                        let batch = match batches.iter_mut().find(|b| {
                            b.source == *name && b.files.first().is_some_and(|m| &*m.path == path)
                        }) {
                            Some(b) => b,
                            None => {
                                let mut b = LogBatch::new(name.clone());
                                b.files
                                    .push(crate::event::FileMark::unchecked(name.clone(), path));
                                batches.push(b);
                                batches.last_mut().expect("just pushed")
                            }
                        };
                        push_line(batch, parser, line, t);
                    }
                    Input::Sample { labels, value } => engine.push_sample(labels, t, *value),
                }
                *next += 1;
            }
            for batch in &mut batches {
                deploys.ingest(batch);
                engine.ingest(batch);
            }
        }
    };
    for (at, check) in &checks {
        batch_for(&mut engine, &mut deploys, &mut last_look, *at, &mut next);
        engine.advance(*at);
        look_until(&mut deploys, &mut last_look, *at);
        match check {
            Check::Alert(t) => {
                if let Some(f) = compare_alerts(&engine, t, *at) {
                    failures.push(f);
                }
            }
            Check::Expr(i, t) => {
                if let Some(f) = compare_samples(&engine, *i, t, *at) {
                    failures.push(f);
                }
            }
            Check::Verification(v) => {
                if let Some(f) = compare_verdict(&deploys, v, *at) {
                    failures.push(f);
                }
            }
        }
    }
    Ok(failures)
}

enum Check<'a> {
    Alert(&'a AlertTest),
    Expr(usize, &'a ExprTest),
    Verification(&'a VerificationTest),
}

fn compare_verdict(
    deploys: &crate::deploy::Deployments,
    test: &VerificationTest,
    at: i64,
) -> Option<String> {
    let Some(d) = deploys.find(&test.version) else {
        let seen: Vec<&str> = deploys
            .tracker
            .history
            .iter()
            .map(|d| d.version.as_str())
            .collect();
        return Some(format!(
            "version: {}, time: {}: no deployment of this version was detected (versions seen: {seen:?})",
            test.version,
            format_time(at)
        ));
    };
    let got_verdict =
        d.verdict
            .map(|v| v.name())
            .unwrap_or(if d.initial { "initial" } else { "running" });
    let mut got_failed: Vec<String> = d
        .checks
        .iter()
        .filter(|c| c.verdict == Some(crate::deploy::tracker::Verdict::Fail))
        .map(|c| c.name.clone())
        .collect();
    got_failed.sort();
    let mut exp_failed = test.exp_failed_checks.clone();
    exp_failed.sort();
    if got_verdict == test.exp_verdict && got_failed == exp_failed {
        return None;
    }
    let mut out = format!(
        "version: {}, time: {}:\n  - verdict: {}, failed checks: {:?}\n  + verdict: {}, failed checks: {:?}\n  evidence:\n",
        test.version,
        format_time(at),
        test.exp_verdict,
        exp_failed,
        got_verdict,
        got_failed
    );
    for c in &d.checks {
        let _ = writeln!(
            out,
            "    {} ({}): {} baseline={:.6} current={:.6} threshold={:.6} n={}/{} p={:.3e} alpha={:.3e}{}",
            c.name,
            c.kind,
            c.verdict.map(|v| v.name()).unwrap_or("running"),
            c.baseline,
            c.current,
            c.threshold,
            c.n_baseline,
            c.n_current,
            c.p_value,
            c.alpha,
            c.note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    Some(out)
}

/// Parses a line into a record of `batch` at time `t` (the test's clock overrides the
/// line's own timestamp).
fn push_line(batch: &mut LogBatch, parser: &LineParser, line: &str, t: i64) {
    let start = batch.buf.len();
    batch.buf.push_str(line);
    let span = Span::new(start, batch.buf.len());
    let mut record = LogRecord {
        file: 0,
        observed_unix_nano: t,
        ..LogRecord::default()
    };
    parser.parse(&mut batch.buf, span, &mut batch.fields, &mut record);
    record.time_unix_nano = Some(t);
    batch.records.push(record);
}

fn render_alert(labels: &Labels, annotations: &BTreeMap<String, String>) -> String {
    let annotations = Labels::from_pairs(annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    format!("labels: {labels}  annotations: {annotations}")
}

fn compare_alerts(engine: &Engine, test: &AlertTest, at: i64) -> Option<String> {
    let mut got: Vec<String> = engine
        .alerts_named(&test.alertname)
        .into_iter()
        .filter(|a| a.state == super::alert::AlertState::Firing)
        .map(|a| {
            let mut labels = a.labels.clone();
            labels.remove("alertname");
            let annotations = a.annotations.iter().cloned().collect();
            render_alert(&labels, &annotations)
        })
        .collect();
    let mut exp: Vec<String> = test
        .exp_alerts
        .iter()
        .map(|e| {
            let labels =
                Labels::from_pairs(e.exp_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            render_alert(&labels, &e.exp_annotations)
        })
        .collect();
    got.sort();
    exp.sort();
    if got == exp {
        return None;
    }
    let mut out = format!(
        "alertname: {}, time: {}:\n  --- expected (firing)\n  +++ got (firing)\n",
        test.alertname,
        format_time(at)
    );
    diff_lines(&mut out, &exp, &got);
    Some(out)
}

fn compare_samples(engine: &Engine, i: usize, test: &ExprTest, at: i64) -> Option<String> {
    let name = format!("__expr_test_{i}");
    let mut got: Vec<(Labels, f64)> = engine
        .series
        .select(&name, |_| true)
        .filter_map(|(labels, points)| {
            let p = points.iter().rev().find(|p| p.t == at)?;
            Some((labels.without_name(), p.v?))
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut exp = Vec::new();
    for s in &test.exp_samples {
        match parse_series_notation(&s.labels) {
            Ok(labels) => exp.push((labels.without_name(), s.value)),
            Err(e) => return Some(format!("expr: {}: exp_samples: {e}", test.expr)),
        }
    }
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    let same = got.len() == exp.len()
        && got.iter().zip(&exp).all(|((gl, gv), (el, ev))| {
            gl == el
                && (gv == ev
                    || (gv.is_nan() && ev.is_nan())
                    || (gv.is_finite()
                        && ev.is_finite()
                        && (gv - ev).abs() <= 1e-9 * ev.abs().max(1.0)))
        });
    if same {
        return None;
    }
    let fmt = |v: &[(Labels, f64)]| -> Vec<String> {
        v.iter().map(|(l, x)| format!("{l} {x}")).collect()
    };
    let mut out = format!(
        "expr: {}, time: {}:\n  --- expected\n  +++ got\n",
        test.expr.trim(),
        format_time(at)
    );
    diff_lines(&mut out, &fmt(&exp), &fmt(&got));
    Some(out)
}

/// Lines only in `exp` with `-`, only in `got` with `+`, shared ones with a space.
fn diff_lines(out: &mut String, exp: &[String], got: &[String]) {
    for e in exp {
        let sign = if got.contains(e) { ' ' } else { '-' };
        let _ = writeln!(out, "  {sign} {e}");
    }
    for g in got {
        if !exp.contains(g) {
            let _ = writeln!(out, "  + {g}");
        }
    }
    if exp.is_empty() && got.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
}

/// `name{a="b", c="d"}`, `{a="b"}` or `name` as a label set (with `__name__`).
pub fn parse_series_notation(text: &str) -> Result<Labels, String> {
    let text = text.trim();
    let (name, rest) = match text.find('{') {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let mut labels = Labels::new();
    if !name.trim().is_empty() {
        labels.insert(NAME.to_string(), name.trim().to_string());
    }
    if rest.is_empty() {
        return Ok(labels);
    }
    let inner = rest
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| format!("`{text}`: expected `{{label=\"value\", …}}`"))?;
    let mut chars = inner.char_indices().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|(_, c)| c.is_whitespace() || *c == ',')
        {
            chars.next();
        }
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        let key = inner[start..end].to_string();
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        if chars.next().map(|(_, c)| c) != Some('=') {
            return Err(format!("`{text}`: expected `=` after `{key}`"));
        }
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        let quote = match chars.next() {
            Some((_, q @ ('"' | '\''))) => q,
            _ => return Err(format!("`{text}`: expected a quoted value for `{key}`")),
        };
        let mut value = String::new();
        let mut closed = false;
        while let Some((_, c)) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, other)) => value.push(other),
                    None => break,
                }
            } else if c == quote {
                closed = true;
                break;
            } else {
                value.push(c);
            }
        }
        if !closed {
            return Err(format!("`{text}`: unterminated value for `{key}`"));
        }
        labels.insert(key, value);
    }
    Ok(labels)
}

/// promtool's value notation: `1 2 3`, `1x3` (4 values), `1+2x3`, `5-1x3`, `_` (no
/// value), `_x3`, `stale`. `None` is "no sample", `Some(None)` a stale marker.
pub fn expand_values(text: &str) -> Result<Vec<Option<Option<f64>>>, String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        if token == "_" {
            out.push(None);
            continue;
        }
        if token == "stale" {
            out.push(Some(None));
            continue;
        }
        let bad = || {
            format!(
                "invalid value `{token}` in `{text}` (expected a number, `a+bxn`, `axn`, `_` or `stale`)"
            )
        };
        match token.split_once('x') {
            None => out.push(Some(Some(parse_value(token).ok_or_else(bad)?))),
            Some((head, count)) => {
                let n: u64 = count.parse().map_err(|_| bad())?;
                if n >= MAX_INPUTS.saturating_sub(out.len()) as u64 {
                    return Err(format!(
                        "`{token}` in `{text}` expands to more than {MAX_INPUTS} values"
                    ));
                }
                if head == "_" {
                    out.extend(std::iter::repeat_n(None, n as usize));
                    continue;
                }
                // Split `a+b` / `a-b` at the sign that is not the leading one or an exponent's.
                let bytes = head.as_bytes();
                let split = (1..bytes.len()).rev().find(|&i| {
                    (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E')
                });
                let (start, step) = match split {
                    Some(i) => {
                        let step = parse_value(&head[i + 1..]).ok_or_else(bad)?;
                        let step = if bytes[i] == b'-' { -step } else { step };
                        (parse_value(&head[..i]).ok_or_else(bad)?, step)
                    }
                    None => (parse_value(head).ok_or_else(bad)?, 0.0),
                };
                for k in 0..=n {
                    out.push(Some(Some(start + step * k as f64)));
                }
            }
        }
    }
    Ok(out)
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "Inf" | "+Inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promtool_value_notation() {
        let v = |s: &str| expand_values(s).unwrap();
        assert_eq!(v("1x3"), vec![Some(Some(1.0)); 4]);
        assert_eq!(
            v("1+2x2 _ stale 5-1x1"),
            vec![
                Some(Some(1.0)),
                Some(Some(3.0)),
                Some(Some(5.0)),
                None,
                Some(None),
                Some(Some(5.0)),
                Some(Some(4.0))
            ]
        );
        assert_eq!(v("_x2 -1"), vec![None, None, Some(Some(-1.0))]);
        assert!(expand_values("1y3").is_err());
    }

    #[test]
    fn series_notation() {
        let l = parse_series_notation(r#"probe_success{probe="health", x='a\"b'}"#).unwrap();
        assert_eq!(
            l.to_string(),
            r#"{__name__="probe_success", probe="health", x="a\"b"}"#
        );
        assert_eq!(parse_series_notation("up").unwrap().get(NAME), Some("up"));
        assert!(parse_series_notation("{a=b}").is_err());
    }
}
