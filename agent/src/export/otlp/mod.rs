//! The OTLP exporter: `config` resolves `export.otlp` with the `OTEL_*` variables,
//! `encode` maps log batches to OTLP protobuf, `queue` keeps the encoded requests
//! durable on disk, and `sender` delivers them to the collector (HTTP/protobuf or
//! gRPC) with the OTLP retry rules.
//!
//! Data flow: the sink stage encodes each batch (`LogEncoder`), appends it to the
//! `DiskQueue` and syncs the queue before it commits file checkpoints; the sender task
//! reads the queue in order, merges consecutive entries into requests of at most
//! `batch.max_records`, and acks them once the collector accepted (or permanently
//! refused) them.

pub mod config;
pub mod encode;
pub mod metrics;
pub mod queue;
pub mod sender;
pub mod traces;

use std::path::Path;
use std::sync::Arc;

use crate::telemetry::{Counter, Telemetry};
use config::OtlpConfig;
use encode::LogEncoder;
use queue::{DiskQueue, QueueLimits, QueueMetrics};
use sender::{LogSender, SenderMetrics};

/// The sink stage's end of log export: encodes each batch and appends it to the
/// durable queue.
#[derive(Debug)]
pub struct LogExport {
    pub queue: Arc<DiskQueue>,
    encoder: LogEncoder,
    /// The most records one queue entry holds (`batch.max_records`).
    max_records: usize,
    /// The encode buffer. Each entry is split off it and handed to the queue as it is
    /// (no copy); the rest of its capacity takes the next entry, and once the queue
    /// has let go of every entry of an allocation, `reserve` reuses it.
    scratch: bytes::BytesMut,
    /// The largest entry so far: reserved before encoding the next, so an entry is
    /// not moved to a new allocation halfway through.
    largest: usize,
    /// `sidewatch_export_invalid_ids_total{signal="logs"}`.
    invalid_ids: Counter,
}

impl LogExport {
    /// Encodes `batch` into entries of at most `batch.max_records` records and appends
    /// them (not yet synced: `DiskQueue::sync` before checkpoints are committed). An
    /// append that fails (a full disk) is reported to `on_error` and retried with
    /// backoff until it works: the pipeline waits rather than losing records, and an
    /// entry is never appended twice.
    pub fn append(
        &mut self,
        batch: &crate::event::LogBatch,
        mut on_error: impl FnMut(&queue::QueueError),
    ) {
        let total = batch.records.len();
        let mut start = 0;
        while start < total {
            let end = (start + self.max_records).min(total);
            self.scratch.clear();
            self.scratch.reserve(self.largest);
            let stats = self.encoder.encode(batch, start..end, &mut self.scratch);
            self.largest = self.largest.max(self.scratch.len());
            self.invalid_ids.add(stats.invalid_ids as u64);
            let entry = self.scratch.split().freeze();
            let mut delay = std::time::Duration::from_millis(100);
            while let Err(e) = self.queue.append(stats.records, entry.clone()) {
                on_error(&e);
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            start = end;
        }
    }
}

/// Opens the log queue under `data_dir/otlp/logs` and builds both ends of log export:
/// the sink's `LogExport` and the `LogSender` task. `None` when OTLP export is off or
/// does not include logs.
pub fn build_logs(
    config: &OtlpConfig,
    data_dir: &Path,
    telemetry: &Arc<Telemetry>,
) -> anyhow::Result<Option<(LogExport, LogSender)>> {
    if !config.signals.logs {
        return Ok(None);
    }
    let sender_metrics = SenderMetrics::new(telemetry, "logs");
    let queue_metrics = QueueMetrics {
        bytes: telemetry.gauge(
            "sidewatch_export_queue_bytes",
            "Bytes waiting in the OTLP exporter's queue (on disk), not yet acked by the collector.",
            &[("signal", "logs")],
        ),
        dropped: sender_metrics.dropped.clone(),
    };
    let dir = data_dir.join("otlp").join("logs");
    let queue = DiskQueue::open(
        &dir,
        QueueLimits {
            memory: config.queue_memory,
            disk: config.queue_disk,
        },
        queue_metrics,
    )?;
    let resource = resource_with_host(&config.resource);
    let export = LogExport {
        queue: queue.clone(),
        encoder: LogEncoder::new(&resource),
        max_records: config.batch_max_records.max(1),
        scratch: bytes::BytesMut::with_capacity(1024 * 1024),
        largest: 0,
        invalid_ids: telemetry.counter(
            "sidewatch_export_invalid_ids_total",
            "Trace or span ids left out of exported records because they were not valid hex.",
            &[("signal", "logs")],
        ),
    };
    let sender = LogSender::new(config, queue, sender_metrics)?;
    tracing::info!(
        endpoint = %config.endpoint,
        protocol = ?config.protocol,
        queue = %dir.display(),
        "exporting logs over OTLP"
    );
    Ok(Some((export, sender)))
}

/// The machine's host name (a pod's name in Kubernetes), for `host.name`.
/// The configured resource attributes plus `host.name`, unless they set it.
pub fn resource_with_host(resource: &[(String, String)]) -> Vec<(String, String)> {
    let mut resource = resource.to_vec();
    if !resource.iter().any(|(k, _)| k == "host.name")
        && let Some(host) = host_name()
    {
        resource.push(("host.name".into(), host));
    }
    resource
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
