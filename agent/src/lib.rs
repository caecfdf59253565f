//! sidewatch: an observability sidecar for Python web services. It tails the app's
//! structlog files and will evaluate rules, verify deployments, notify and export OTLP.
//!
//! # Layout
//! - `cli`: clap definitions and the verbs that are not the agent itself
//! - `config/`: raw YAML → validated `Config` (two phases, all errors at once)
//! - `topology`: builds and wires components; owns shutdown
//! - `channel`: the bounded batch channel between sources and the sink stage
//! - `sources/`: `file_tail` (and its `discovery` of glob matches)
//! - `event`: the record types that flow between components
//! - `parse/`: structlog, json, logfmt and text parsers — pure
//! - `rules/`: the expression language, rule files, the incremental evaluator, alert
//!   states, `sidewatch test` — pure
//! - `rule_runner`: runs the rule engine live (schedule, reload, saved state)
//! - `replay`: `sidewatch replay`, the rules over recorded logs
//! - `deploy/`: deployment detection, per-version evidence, verification statistics — pure
//! - `deploy_runner`: deployments live (looks, probe boost, peers' baselines, saved state)
//! - `notify_runner`: the notifier live (alerts in, outbox, delivery, Alertmanagers)
//! - `jsonpath`: the JSONPath subset probes read bodies with
//! - `notify/`: routing, grouping, silences, inhibition, the outbox; email, webhook and
//!   Alertmanager delivery
//! - `export/`: the sink stage (file / stdout / blackhole outputs) and checkpoint commits
//! - `state`: the one state store under `data_dir`
//! - `api/`: the HTTP API and `/metrics`
//! - `telemetry`: the agent's own counters and internal events
pub mod api;
pub mod channel;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod deploy_runner;
pub mod event;
pub mod export;
pub mod jsonpath;
pub mod notify;
pub mod notify_runner;
pub mod parse;
pub mod replay;
pub mod rule_runner;
pub mod rules;
pub mod sources;
pub mod state;
pub mod telemetry;
pub mod topology;
pub mod transform;

/// `f` on the tokio runtime's blocking pool, a panic in it carried on to the caller. For
/// CPU work (a rule evaluation, a gzip) and for the pipeline's locks (the engine, the
/// deployments), which the sink holds while it ingests a batch: async code never does
/// either on a runtime worker (ARCHITECTURE, "`/healthz` never waits for the pipeline").
pub async fn off_worker<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
