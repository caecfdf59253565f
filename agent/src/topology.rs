//! Builds the running agent from a `Config`: one file-tail source per `logs:` entry, the
//! sink stage, the API; wires them with a bounded channel; and owns shutdown.
//!
//! Shutdown order (SIGTERM or SIGINT): sources stop reading and drop their senders →
//! the sink stage drains what is queued, makes it durable and commits the checkpoints →
//! the OTLP sender sends what it can of its queue in what is left of the grace period
//! (the rest stays on disk for the next start) → the API stops last, so probes see the
//! agent alive while it drains. All of it under
//! `grace_period`; if that runs out the agent says so and exits 1 (a restart then
//! repeats at most the records since the last commit).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiState, SourceView};
use crate::channel::batch_channel;
use crate::config::Config;
use crate::deploy_runner::DeployRunner;
use crate::export::SinkStage;
use crate::rule_runner::RuleRunner;
use crate::sources::file_tail::FileTail;
use crate::sources::health_probe::HealthProbe;
use crate::sources::otlp_receiver;
use crate::state::StateStore;
use crate::telemetry::Telemetry;

/// Batches in flight between the sources and the sink stage (~0.8 MiB each: text,
/// records and fields). Two keep the sink busy (the blackhole benchmark is as fast as
/// with four); each one more is memory that a slow exporter fills. A full queue makes
/// the sources wait (backpressure), it never drops.
const QUEUE_BATCHES: usize = 2;

/// How the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Drained and committed everything within the grace period.
    Clean,
    /// The grace period ran out with work pending.
    GraceExceeded,
}

/// Runs the agent until a termination signal.
pub async fn run(config: Config) -> anyhow::Result<Outcome> {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    run_until(config, shutdown).await
}

/// Runs the agent until `shutdown` is cancelled (tests cancel it directly).
pub async fn run_until(config: Config, shutdown: CancellationToken) -> anyhow::Result<Outcome> {
    // If this future is dropped (the runtime shuts down, a test fails), stop the
    // sources too: their threads would otherwise keep the runtime from exiting.
    let _stop_on_drop = shutdown.clone().drop_guard();
    let started = Instant::now();
    let telemetry = Telemetry::new();
    // Before any component can open a span (a verification restored mid-way opens its
    // span on the deploy runner's first look).
    if let Some(otlp) = &config.export.otlp_traces {
        crate::export::otlp::traces::start(otlp, &telemetry)
            .context("cannot start OTLP trace export")?;
    }
    let store = StateStore::open(&config.data_dir).with_context(|| {
        format!(
            "cannot open the state store in data_dir {}",
            config.data_dir.display()
        )
    })?;
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on api.listen {}", config.api.listen))?;
    let otlp_listeners = match &config.otlp_receiver {
        Some(receiver) => Some(otlp_receiver::Listeners::bind(receiver).await?),
        None => None,
    };

    let (batch_tx, batch_rx, queue) = batch_channel(QUEUE_BATCHES);
    let recycle = Arc::new(Mutex::new(Vec::new()));
    let pipeline = TaskTracker::new();
    let mut sources = Vec::new();
    let mut wakers = Vec::new();
    for source in &config.logs {
        let tail = FileTail::new(source.clone(), &store, &telemetry)
            .with_context(|| format!("cannot start log source `{}`", source.name))?;
        sources.push(SourceView {
            name: source.name.clone(),
            format: source.format,
            paths: source.paths.clone(),
            files: tail.status(),
            ready: tail.ready(),
        });
        wakers.push(tail.waker());
        let out = batch_tx.clone();
        let recycle = recycle.clone();
        let stop = shutdown.clone();
        pipeline.spawn_blocking(move || tail.run(out, recycle, stop));
    }
    // The OTLP receiver's span records enter the pipeline like a source's batches, from
    // a blocking thread that waits while the channel is full.
    let otlp_spans = otlp_listeners.as_ref().map(|_| {
        let (tx, rx) = tokio::sync::mpsc::channel(otlp_receiver::SPAN_BATCHES);
        let out = batch_tx.clone();
        pipeline.spawn_blocking(move || otlp_receiver::feed_pipeline(rx, out));
        tx
    });
    drop(batch_tx);
    let runner = RuleRunner::new(&config, store.clone(), &telemetry)?;
    let engine = runner.engine();
    let verifications = crate::rule_runner::lock(&engine)
        .rules
        .verifications
        .clone();
    let deployments = crate::deploy_runner::build(&config, &verifications, &store)?;
    let (started_tx, started_rx) = tokio::sync::mpsc::unbounded_channel();
    let (boost_tx, boost_rx) = tokio::sync::watch::channel(None);
    let deploy_runner = Arc::new(DeployRunner::new(
        &config,
        deployments.clone(),
        store.clone(),
        boost_tx,
    ));
    let deploy_stop = CancellationToken::new();
    let deploy_task = tokio::spawn(deploy_runner.clone().run(started_rx, deploy_stop.clone()));
    let (probe_tx, probe_rx) = tokio::sync::mpsc::channel(256);
    for probe in &config.probes {
        let health = HealthProbe::new(probe.clone())
            .with_context(|| format!("cannot start probe `{}`", probe.name))?
            .with_drop_counter(telemetry.counter(
                "sidewatch_probe_samples_dropped_total",
                "Probe results dropped because their consumer was behind (counted, logged)",
                &[("probe", &probe.name)],
            ));
        tokio::spawn(health.run(probe_tx.clone(), boost_rx.clone(), shutdown.clone()));
    }
    drop(probe_tx);
    let probe_board = crate::deploy_runner::ProbeBoard::default();
    tokio::spawn(crate::deploy_runner::consume_probes(
        probe_board.clone(),
        probe_rx,
        engine.clone(),
        deployments.clone(),
        telemetry.clone(),
        started_tx.clone(),
    ));
    let otlp_logs = match &config.export.otlp {
        Some(otlp) => crate::export::otlp::build_logs(otlp, &config.data_dir, &telemetry)
            .context("cannot start OTLP log export")?,
        None => None,
    };
    let mut sink = SinkStage::new(
        &config.export,
        store.clone(),
        config.checkpoint_interval,
        &telemetry,
        recycle,
    )
    .context("cannot open the record outputs")?
    .with_deployments(deployments.clone(), started_tx.clone())
    .with_rules(engine.clone());
    let otlp_stop = CancellationToken::new();
    let mut otlp_task = None;
    // The same series the queue updates (the registry finds it by name and labels), for
    // the status document's queue depths.
    let otlp_queue_bytes = otlp_logs.as_ref().map(|_| {
        telemetry.gauge(
            "sidewatch_export_queue_bytes",
            "Bytes waiting in the OTLP exporter's queue (on disk), not yet acked by the collector.",
            &[("signal", "logs")],
        )
    });
    if let Some((export, sender)) = otlp_logs {
        sink = sink.with_otlp(export);
        otlp_task = Some(tokio::spawn(sender.run(otlp_stop.clone())));
    }
    let notifier = crate::notify_runner::NotifyRunner::new(
        &config,
        store.clone(),
        Some(engine.clone()),
        Some(deployments.clone()),
        runner.evaluated(),
    )
    .context("cannot start the notifier")?;
    let notify_shared = notifier.shared.clone();
    let receivers = notifier.receiver_names();
    let notify_stop = CancellationToken::new();
    let notify_task = tokio::spawn(notifier.run(notify_stop.clone()));
    let runner = Arc::new(runner);
    let rules_stop = CancellationToken::new();
    let rules_task = tokio::spawn({
        let runner = runner.clone();
        let stop = rules_stop.clone();
        async move { runner.run_shared(stop).await }
    });
    pipeline.spawn_blocking(move || sink.run(batch_rx));
    pipeline.close();
    let mut otlp_receiver = match (otlp_listeners, otlp_spans) {
        (Some(listeners), Some(spans)) => {
            let version: otlp_receiver::LiveVersion = {
                let deployments = deployments.clone();
                Box::new(move || {
                    crate::deploy_runner::lock(&deployments)
                        .tracker
                        .live_version()
                        .map(str::to_string)
                })
            };
            Some(
                otlp_receiver::start(listeners, &config, version, spans, &telemetry)
                    .context("cannot start the OTLP receiver")?,
            )
        }
        _ => None,
    };

    let ready = Arc::new(AtomicBool::new(false));
    let api_state = Arc::new(ApiState {
        telemetry: telemetry.clone(),
        ready: ready.clone(),
        token: config.api.token.clone(),
        service: config.service.clone(),
        config_origin: config.origin(),
        started,
        sources,
        queue,
        rules: Some(engine),
        deployments: Some((deployments.clone(), started_tx)),
        probes: probe_board,
        notify: Some((notify_shared, receivers)),
        otlp_queue_bytes,
    });
    let metrics_stop = CancellationToken::new();
    let metrics_task = match &config.export.otlp_metrics {
        Some(otlp) if otlp.signals.metrics => {
            let render = {
                let state = api_state.clone();
                Box::new(move || api::exposition(&state))
            };
            let version = {
                let deployments = deployments.clone();
                Box::new(move || {
                    crate::deploy_runner::lock(&deployments)
                        .tracker
                        .live_version()
                        .map(str::to_string)
                })
            };
            let resource = crate::export::otlp::resource_with_host(&otlp.resource);
            let exporter = crate::export::otlp::metrics::MetricsExporter::new(
                otlp, resource, &telemetry, render, version,
            )
            .context("cannot start OTLP metrics export")?;
            tracing::info!(endpoint = %otlp.endpoint, protocol = ?otlp.protocol, interval = ?otlp.metrics_interval, "exporting metrics over OTLP");
            Some(tokio::spawn(exporter.run(metrics_stop.clone())))
        }
        _ => None,
    };
    let api_stop = CancellationToken::new();
    let api_done = api::spawn(listener.into_std()?, api_state, api_stop.clone())
        .context("cannot start the API thread")?;
    ready.store(true, Ordering::Relaxed);
    tracing::info!(
        listen = %config.api.listen,
        sources = config.logs.len(),
        data_dir = %config.data_dir.display(),
        "sidewatch running"
    );

    shutdown.cancelled().await;
    let shutdown_started = Instant::now();
    tracing::info!(grace_period = ?config.grace_period, "shutting down: stopping sources, draining, committing checkpoints");
    ready.store(false, Ordering::Relaxed);
    // The OTLP receiver first: it stops taking requests (the app's SDK retries them) and
    // closes its span stream, so the sink below can drain; its relay queues are sent on
    // meanwhile.
    if let Some(receiver) = otlp_receiver.as_mut() {
        receiver.stop_servers(config.grace_period / 4).await;
    }
    // The tail threads sleep between polls; wake them so they see the cancellation now.
    for waker in &wakers {
        waker.wake(false);
    }
    let left = config
        .grace_period
        .saturating_sub(shutdown_started.elapsed());
    let outcome = match tokio::time::timeout(left, pipeline.wait()).await {
        Ok(()) => Outcome::Clean,
        Err(_) => {
            tracing::warn!(grace_period = ?config.grace_period, "grace period exceeded with records still draining; uncommitted records will be read again after restart");
            Outcome::GraceExceeded
        }
    };
    // The sink has drained into the OTLP queue: the sender now sends what is left and
    // stops at the first failure, in parallel with the steps below.
    otlp_stop.cancel();
    // The sink has drained: the engine holds every committed record. Stop evaluating and
    // save its state once more.
    rules_stop.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rules_task).await;
    deploy_stop.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), deploy_task).await;
    // The notifier last: it sees the final alerts, gives deliveries in flight a moment,
    // and leaves the rest in the outbox for the next run.
    notify_stop.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(4), notify_task).await;
    if outcome == Outcome::Clean {
        runner.save_final().await;
        deploy_runner.save().await;
    }
    if let Some(mut task) = otlp_task {
        let left = config
            .grace_period
            .saturating_sub(shutdown_started.elapsed());
        if tokio::time::timeout(left, &mut task).await.is_err() {
            // Acks are written only after the collector accepted a request: stopping
            // mid-request sends that request again after the restart (at-least-once).
            task.abort();
            tracing::warn!(
                "grace period over with OTLP records still queued; they stay on disk and are sent after the restart"
            );
        }
    }
    // The agent's spans, now that the runners that make them have stopped.
    crate::export::otlp::traces::shutdown(
        config
            .grace_period
            .saturating_sub(shutdown_started.elapsed())
            .max(std::time::Duration::from_secs(1)),
    )
    .await;
    if let Some(receiver) = otlp_receiver {
        let left = config
            .grace_period
            .saturating_sub(shutdown_started.elapsed());
        receiver.drain(left).await;
    }
    // The last metrics, after everything else has counted what it did.
    metrics_stop.cancel();
    if let Some(task) = metrics_task {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), task).await;
    }
    api_stop.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), api_done).await;
    if outcome == Outcome::Clean {
        tracing::info!("shutdown complete");
    }
    Ok(outcome)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "signal received"),
    }
}
