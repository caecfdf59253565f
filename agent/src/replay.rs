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
use crate::event::{FileIdentity, FileMark, LogBatch, LogRecord, Span};
use crate::parse::LineParser;
use crate::rule_runner::engine_options;
use crate::rules::alert::{AlertEvent, AlertState};
use crate::rules::engine::Engine;

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
    alert: AlertEvent,
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
    let settle = settle_time(&rules);
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
        batch.files.push(FileMark {
            source: name,
            path: Arc::from(path.to_string_lossy().as_ref()),
            identity: FileIdentity {
                dev: 0,
                ino: 0,
                fingerprint_len: 0,
                fingerprint: 0,
                complete: true,
            },
            checkpoint: 0,
            closed: false,
        });
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
    let mut i = 0;
    while i < order.len() {
        let t = order[i].0;
        for alert in engine.advance(t - first - 1) {
            printed.push(Printed {
                time: alert.time + first,
                alert,
            });
        }
        // Every record at this instant, file by file.
        let mut j = i;
        while j < order.len() && order[j].0 == t {
            j += 1;
        }
        for (b, batch) in batches.iter().enumerate() {
            let records = order[i..j]
                .iter()
                .filter(|o| o.1 == b)
                .map(|o| &batch.records[o.2]);
            engine.ingest_records(batch, records);
        }
        i = j;
    }
    for alert in engine.advance(last - first + settle) {
        printed.push(Printed {
            time: alert.time + first,
            alert,
        });
    }
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

fn rfc3339(t: i64) -> String {
    let mut out = Vec::new();
    crate::parse::time::write_rfc3339(&mut out, t);
    String::from_utf8_lossy(&out).into_owned()
}

fn print(events: &[Printed], format: ReplayFormat, out: &mut impl Write) -> anyhow::Result<()> {
    let shown = events
        .iter()
        .filter(|e| e.alert.state != AlertState::Pending);
    match format {
        ReplayFormat::Json => {
            for e in shown {
                let labels: serde_json::Map<String, serde_json::Value> = e
                    .alert
                    .alert
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.into()))
                    .collect();
                let line = serde_json::json!({
                    "time": rfc3339(e.time),
                    "kind": "alert",
                    "alertname": e.alert.alert.labels.get("alertname").unwrap_or(""),
                    "state": if e.alert.state == AlertState::Firing { "firing" } else { "resolved" },
                    "labels": labels,
                    "value": e.alert.alert.value,
                });
                writeln!(out, "{line}").context("cannot write the replay")?;
            }
        }
        ReplayFormat::Table => {
            let rows: Vec<[String; 5]> = shown
                .map(|e| {
                    let mut labels = e.alert.alert.labels.clone();
                    labels.remove("alertname");
                    [
                        rfc3339(e.time),
                        e.alert
                            .alert
                            .labels
                            .get("alertname")
                            .unwrap_or("")
                            .to_string(),
                        if e.alert.state == AlertState::Firing {
                            "firing"
                        } else {
                            "resolved"
                        }
                        .to_string(),
                        format!("{}", e.alert.alert.value),
                        labels.to_string(),
                    ]
                })
                .collect();
            let header = ["TIME", "ALERT", "STATE", "VALUE", "LABELS"].map(String::from);
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
                writeln!(out, "(no alert fired)").context("cannot write the replay")?;
            }
        }
    }
    Ok(())
}
