//! `sidewatch replay`: runs the configured rules over recorded log files with each
//! record's own timestamp as the clock, and prints what would have fired and when.
//!
//! The clock starts at the first record and ticks every group interval; after the last
//! record it keeps ticking long enough for `for`, `keep_firing_for`, resolution and
//! `absent_over_time` to play out. Records without a timestamp take the time of the
//! record before them.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
use crate::deploy::{DeploymentEvent, Deployments};
use crate::event::{FileMark, LogBatch, LogRecord, Span};
use crate::parse::LineParser;
use crate::rule_runner::engine_options;
use crate::rules::alert::{AlertEvent, AlertState};
use crate::rules::engine::Engine;

const NS: i64 = 1_000_000_000;

fn ns(d: std::time::Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayFormat {
    /// An aligned table for people
    Table,
    /// One JSON object per line
    Json,
}

/// One event of the replay, in time order.
struct Printed {
    time: i64,
    event: Event,
}

enum Event {
    Alert(AlertEvent),
    Deployment(DeploymentEvent),
}

pub fn run(
    config: &Config,
    from: &[PathBuf],
    format: ReplayFormat,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let rules = crate::rules::load(&config.rules).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("{}", text.join("\n"))
    })?;
    let settle = settle_time(&rules).max(ns(config.deployments.verify_window) + 60 * NS);
    let checks = Deployments::checks(&rules.verifications)
        .map_err(|e| anyhow::anyhow!("invalid verifications:\n{}", e.join("\n")))?;
    let mut deploys = Deployments::new(
        &config.deployments,
        checks,
        config
            .logs
            .iter()
            .map(|s| (s.name.to_string(), s.fields.clone()))
            .collect(),
    );
    // No probe runs over recorded logs: probe checks are left out of verdicts.
    deploys.verifier.available_probes = Some(Vec::new());
    let interval = ns(config.rules.evaluation_interval).max(NS);
    let mut engine = Engine::new(rules, engine_options(config));

    // Every record of every file, parsed with its source's format, in time order.
    let mut batches: Vec<LogBatch> = Vec::new();
    for path in from {
        let text = fs_err::read(path)?;
        let text = String::from_utf8_lossy(&text);
        let source = source_for(config, path);
        let parser = LineParser::new(source.format, source.fields.clone());
        let name: Arc<str> = source.name.clone();
        let mut batch = LogBatch::new(name.clone());
        batch
            .files
            .push(FileMark::unchecked(name, &path.to_string_lossy()));
        let mut offset = 0u64;
        let mut last_time = None;
        for line in text.split_inclusive('\n') {
            let content = line.trim_end_matches(['\n', '\r']);
            let line_offset = offset;
            offset += line.len() as u64;
            if content.trim().is_empty() {
                continue;
            }
            let start = batch.buf.len();
            batch.buf.push_str(content);
            let mut record = LogRecord {
                offset: line_offset,
                ..LogRecord::default()
            };
            parser.parse(
                &mut batch.buf,
                Span::new(start, start + content.len()),
                &mut batch.fields,
                &mut record,
            );
            match record.time_unix_nano {
                Some(t) => last_time = Some(t),
                None => record.time_unix_nano = last_time,
            }
            if record.time_unix_nano.is_some() {
                batch.records.push(record);
            }
        }
        // The source's drop and redact, as the live agent applies them.
        if let Some(mut transform) = crate::transform::SourceTransform::new(source) {
            transform.apply(&mut batch);
        }
        batches.push(batch);
    }
    // (time, batch, record) in time order; stable for records with the same time.
    let mut order: Vec<(i64, usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| {
            batch
                .records
                .iter()
                .enumerate()
                .map(move |(r, rec)| (rec.time(), b, r))
        })
        .collect();
    order.sort_by_key(|(t, _, _)| *t);
    let Some(&(first, _, _)) = order.first() else {
        anyhow::bail!(
            "no records with a timestamp in {}",
            from.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let last = order.last().map(|o| o.0).unwrap_or(first);

    // The clock runs relative to the first record, so ticks fall every interval from it.
    for batch in &mut batches {
        for record in &mut batch.records {
            record.time_unix_nano = record.time_unix_nano.map(|t| t - first);
        }
    }
    engine.start(0);
    let mut printed = Vec::new();
    let mut last_look = 0i64;
    // Rules and deployment looks both run on the evaluation grid up to `upto`.
    let mut advance =
        |engine: &mut Engine, deploys: &mut Deployments, upto: i64, printed: &mut Vec<Printed>| {
            for alert in engine.advance(upto) {
                printed.push(Printed {
                    time: alert.time + first,
                    event: Event::Alert(alert),
                });
            }
            while last_look + interval <= upto {
                last_look += interval;
                for event in deploys.tick(last_look) {
                    let time = match &event {
                        DeploymentEvent::Decided(d) => d.decided_at.unwrap_or(last_look),
                        DeploymentEvent::Started(d) => d.t0,
                    };
                    printed.push(Printed {
                        time: time + first,
                        event: Event::Deployment(event),
                    });
                }
            }
        };
    let mut i = 0;
    while i < order.len() {
        let t = order[i].0;
        advance(&mut engine, &mut deploys, t - first - 1, &mut printed);
        // Every record at this instant, file by file.
        let mut j = i;
        while j < order.len() && order[j].0 == t {
            j += 1;
        }
        for (b, batch) in batches.iter_mut().enumerate() {
            let indices: Vec<usize> = order[i..j]
                .iter()
                .filter(|o| o.1 == b)
                .map(|o| o.2)
                .collect();
            if indices.is_empty() {
                continue;
            }
            for event in deploys.ingest_indices(batch, &indices) {
                if let DeploymentEvent::Started(d) = &event {
                    printed.push(Printed {
                        time: d.t0 + first,
                        event: Event::Deployment(event.clone()),
                    });
                }
            }
            engine.ingest_records(batch, indices.iter().map(|&r| &batch.records[r]));
        }
        i = j;
    }
    advance(
        &mut engine,
        &mut deploys,
        last - first + settle,
        &mut printed,
    );
    printed.sort_by_key(|p| p.time);
    print(&printed, format, out)
}

/// How long after the last record the clock keeps running.
fn settle_time(rules: &crate::rules::file::RuleSet) -> i64 {
    let ns = |d: std::time::Duration| d.as_nanos().min(i64::MAX as u128) as i64;
    let mut longest = 0i64;
    let mut interval = 0i64;
    for group in &rules.groups {
        interval = interval.max(ns(group.interval));
        for rule in &group.rules {
            let mut range = 0i64;
            rule.expr.walk(&mut |e| {
                if let crate::rules::ast::ExprKind::RangeCall(call) = &e.kind {
                    range = range.max(ns(call.range));
                }
            });
            longest = longest.max(range + ns(rule.hold) + ns(rule.keep_firing_for));
        }
    }
    longest + 2 * interval.max(1)
}

/// The `logs:` entry whose paths match the file, else the first entry.
fn source_for<'a>(
    config: &'a Config,
    path: &std::path::Path,
) -> &'a crate::config::LogSourceConfig {
    let text = path.to_string_lossy();
    config
        .logs
        .iter()
        .find(|source| {
            source.paths.iter().any(|pattern| {
                globset::Glob::new(pattern)
                    .map(|g| g.compile_matcher().is_match(text.as_ref()))
                    .unwrap_or(false)
            })
        })
        .unwrap_or(&config.logs[0])
}

use crate::parse::time::rfc3339;

fn alert_json(time: i64, e: &AlertEvent) -> serde_json::Value {
    serde_json::json!({
        "time": rfc3339(time),
        "kind": "alert",
        "alertname": e.alert.labels.get("alertname").unwrap_or(""),
        "state": if e.state == AlertState::Firing { "firing" } else { "resolved" },
        "labels": crate::notify::payload::labels_json(&e.alert.labels),
        "value": e.alert.value,
    })
}

/// A number as JSON: NaN and infinities (no evidence yet) become null.
fn num(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

fn deployment_json(time: i64, e: &DeploymentEvent) -> serde_json::Value {
    match e {
        DeploymentEvent::Started(d) => serde_json::json!({
            "time": rfc3339(time),
            "kind": "deployment",
            "version": d.version,
            "previous": d.previous,
            "initial": d.initial,
        }),
        DeploymentEvent::Decided(d) => {
            let checks: Vec<serde_json::Value> = d
                .checks
                .iter()
                .filter(|c| {
                    c.note
                        .as_deref()
                        .is_none_or(|n| !n.starts_with("no data source"))
                })
                .map(|c| {
                    let mut check = serde_json::json!({
                        "name": c.name,
                        "verdict": c.verdict.map(|v| v.name()).unwrap_or("inconclusive"),
                        "baseline": num(c.baseline),
                        "current": num(c.current),
                        "n_baseline": c.n_baseline,
                        "n_current": c.n_current,
                        "p_value": num(c.p_value),
                    });
                    if !c.new_values.is_empty() {
                        check["new_values"] = c.new_values.clone().into();
                    }
                    check
                })
                .collect();
            serde_json::json!({
                "time": rfc3339(time),
                "kind": "verdict",
                "version": d.version,
                "previous": d.previous,
                "verdict": d.verdict.map(|v| v.name()).unwrap_or("inconclusive"),
                "checks": checks,
            })
        }
    }
}

fn print(events: &[Printed], format: ReplayFormat, out: &mut impl Write) -> anyhow::Result<()> {
    let shown: Vec<&Printed> = events
        .iter()
        .filter(|e| !matches!(&e.event, Event::Alert(a) if a.state == AlertState::Pending))
        .collect();
    match format {
        ReplayFormat::Json => {
            for e in shown {
                let line = match &e.event {
                    Event::Alert(a) => alert_json(e.time, a),
                    Event::Deployment(d) => deployment_json(e.time, d),
                };
                writeln!(out, "{line}").context("cannot write the replay")?;
            }
        }
        ReplayFormat::Table => {
            let rows: Vec<[String; 5]> = shown
                .iter()
                .map(|e| match &e.event {
                    Event::Alert(a) => {
                        let mut labels = a.alert.labels.clone();
                        labels.remove("alertname");
                        [
                            rfc3339(e.time),
                            a.alert.labels.get("alertname").unwrap_or("").to_string(),
                            if a.state == AlertState::Firing {
                                "firing"
                            } else {
                                "resolved"
                            }
                            .to_string(),
                            format!("{}", a.alert.value),
                            labels.to_string(),
                        ]
                    }
                    Event::Deployment(DeploymentEvent::Started(d)) => [
                        rfc3339(e.time),
                        format!("deployment {}", d.version),
                        if d.initial { "initial" } else { "started" }.to_string(),
                        String::new(),
                        format!("previous={}", d.previous.as_deref().unwrap_or("-")),
                    ],
                    Event::Deployment(DeploymentEvent::Decided(d)) => {
                        let checks: Vec<String> = d
                            .checks
                            .iter()
                            .filter_map(|c| Some(format!("{}={}", c.name, c.verdict?.name())))
                            .collect();
                        [
                            rfc3339(e.time),
                            format!("verdict {}", d.version),
                            d.verdict.map(|v| v.name()).unwrap_or("").to_string(),
                            String::new(),
                            checks.join(" "),
                        ]
                    }
                })
                .collect();
            let header = ["TIME", "EVENT", "STATE", "VALUE", "DETAILS"].map(String::from);
            let mut widths = header.clone().map(|h| h.len());
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            for row in std::iter::once(&header).chain(&rows) {
                let mut line = String::new();
                for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                    if i + 1 == row.len() {
                        line.push_str(cell);
                    } else {
                        line.push_str(&format!("{cell:<w$}  "));
                    }
                }
                writeln!(out, "{}", line.trim_end()).context("cannot write the replay")?;
            }
            if rows.is_empty() {
                writeln!(out, "(nothing fired)").context("cannot write the replay")?;
            }
        }
    }
    Ok(())
}
