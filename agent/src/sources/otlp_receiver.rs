//! `otlp_receiver:`: the app's own OpenTelemetry SDK sends its traces, metrics and logs
//! to the sidecar (OTLP/gRPC and OTLP/HTTP on the configured loopback addresses); the
//! agent adds the deployment's resource attributes and relays each request to the
//! collector, and turns the app's server spans into records of the stream
//! `{source="otlp"}` that rules and verifications read like log records.
//!
//! Flow of one request:
//! 1. decode (protobuf, or OTLP/JSON over HTTP; gzip; `max_request_bytes` compressed
//!    and decompressed; a bad body is 400 / `INVALID_ARGUMENT`);
//! 2. its server and root spans become records (`span_records`, pure) of a `LogBatch`
//!    with no file marks — made from what the app sent, before step 3, so a record's
//!    `deployment` is the app's own `service.version` when it sets one (through
//!    `deployments.version_field`), else the live version, exactly as for log lines;
//! 3. every resource gets `service.version` (the live deployment's),
//!    `deployment.environment.name` and `service.name` when it lacks them (`enrich`);
//! 4. the re-encoded request goes to the signal's bounded in-memory queue (`Forward`,
//!    `queue.memory` bytes). A full queue refuses the request with `UNAVAILABLE` / 503 +
//!    `Retry-After`, so the SDK retries later: backpressure onto the app's exporter,
//!    whose own queue is bounded, never unbounded memory here. When the signal is not
//!    exported (`export.otlp.signals`, or no endpoint) the request is accepted and
//!    discarded, counted;
//! 5. the records go to the pipeline (a tokio channel → one blocking thread →
//!    the bounded batch channel; a full pipeline makes the request wait);
//! 6. a sender task per signal relays the queue to the collector with the exporter's
//!    `OtlpClient` and OTLP's retry rules. The queue is memory only: what is left when
//!    the shutdown grace period runs out is lost (logged with its count).
//!
//! Memory: the three queues, plus the requests being decoded (each at most
//! `max_request_bytes`; gRPC handles a few per connection at a time).

use std::collections::VecDeque;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span as OtlpSpan};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::channel::BatchSender;
use crate::config::{Config, OTLP_SOURCE, OtlpReceiverConfig};
use crate::event::{Field, LogBatch, LogRecord, SeverityText, Span, Value, ValueKind};
use crate::export::otlp::config::{DEFAULT_QUEUE_MEMORY, OtlpConfig, Signal};
use crate::export::otlp::sender::{MAX_REQUEST_BYTES, OtlpClient, SendOutcome, SenderMetrics};
use crate::telemetry::{Counter, Gauge, Telemetry};

/// Span-record batches waiting for the pipeline thread. Small: a full pipeline should
/// slow the app's exporter down, not pile batches up here.
pub const SPAN_BATCHES: usize = 4;

/// gRPC requests one connection may have in flight (each up to `max_request_bytes`).
const GRPC_CONCURRENCY: usize = 4;

/// What a refused request tells the SDK to wait before it retries.
const RETRY_AFTER_SECS: u64 = 1;

/// The live deployment's version, looked up for each request.
pub type LiveVersion = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// The listeners, bound at startup so that a taken port fails the start.
#[derive(Debug)]
pub struct Listeners {
    grpc: Option<TcpListener>,
    http: Option<TcpListener>,
}

impl Listeners {
    /// Binds exactly the configured addresses (never a wider one).
    pub async fn bind(config: &OtlpReceiverConfig) -> anyhow::Result<Listeners> {
        let grpc = match config.grpc {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on otlp_receiver.grpc {addr}"))?,
            ),
            None => None,
        };
        let http = match config.http {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on otlp_receiver.http {addr}"))?,
            ),
            None => None,
        };
        Ok(Listeners { grpc, http })
    }

    /// The bound addresses (gRPC, HTTP): the real ports when the config said `:0`.
    pub fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let addr = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        (addr(&self.grpc), addr(&self.http))
    }
}

/// The running receiver's tasks, for an orderly shutdown.
#[derive(Debug)]
pub struct OtlpReceiverTasks {
    servers: Vec<tokio::task::JoinHandle<()>>,
    forwarders: Vec<tokio::task::JoinHandle<()>>,
    stop_servers: CancellationToken,
    stop_forwarders: CancellationToken,
    shared: Arc<Shared>,
}

impl OtlpReceiverTasks {
    /// Stops accepting requests and waits up to `wait` for those in flight; then closes
    /// the span stream, so the pipeline can drain. Call before the sink drains. The
    /// forwarders go on sending until their queues are empty or a request fails.
    pub async fn stop_servers(&mut self, wait: Duration) {
        self.stop_servers.cancel();
        let deadline = tokio::time::Instant::now() + wait;
        for task in &mut self.servers {
            if tokio::time::timeout_at(deadline, &mut *task).await.is_err() {
                task.abort();
                tracing::warn!(
                    component = "otlp_receiver",
                    "requests still in flight at shutdown were cut off; the app's SDK retries them"
                );
            }
        }
        // Handlers that still hold a clone drop it when they finish; no new one is made.
        if let Ok(mut spans) = self.shared.spans.lock() {
            spans.take();
        }
        self.stop_forwarders.cancel();
    }

    /// Lets the forwarders send what is queued, up to `wait`; what is left is lost (the
    /// queues are in memory) and logged.
    pub async fn drain(self, wait: Duration) {
        self.stop_forwarders.cancel();
        let deadline = tokio::time::Instant::now() + wait;
        for mut task in self.forwarders {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        for forward in &self.shared.forwards {
            let (entries, items) = forward.pending();
            if entries > 0 {
                tracing::warn!(
                    component = "otlp_receiver",
                    signal = forward.signal.name(),
                    requests = entries,
                    items,
                    "relayed OTLP data still queued at shutdown is lost (the relay queue is in memory)"
                );
                forward.metrics.dropped.add(items);
            }
        }
    }
}

/// Starts the servers and the forwarders. `spans` takes the span-record batches to the
/// pipeline (`feed_pipeline`).
pub fn start(
    listeners: Listeners,
    config: &Config,
    live_version: LiveVersion,
    spans: mpsc::Sender<LogBatch>,
    telemetry: &Arc<Telemetry>,
) -> anyhow::Result<OtlpReceiverTasks> {
    let receiver = config
        .otlp_receiver
        .as_ref()
        .context("otlp_receiver is not configured")?;
    let export = &config.export;
    let forwards = [
        (
            Signal::Traces,
            export.otlp_traces.as_ref().filter(|c| c.signals.traces),
        ),
        (
            Signal::Metrics,
            export.otlp_metrics.as_ref().filter(|c| c.signals.metrics),
        ),
        (
            Signal::Logs,
            export.otlp.as_ref().filter(|c| c.signals.logs),
        ),
    ]
    .into_iter()
    .map(|(signal, otlp)| Forward::new(signal, otlp, telemetry).map(Arc::new))
    .collect::<anyhow::Result<Vec<_>>>()?;
    let shared = Arc::new(Shared {
        max_request_bytes: receiver.max_request_bytes,
        defaults: ResourceDefaults {
            service_name: config.service.name.clone(),
            environment: config.service.environment.clone(),
        },
        version_field: config.deployments.version_field.clone(),
        live_version,
        spans: Mutex::new(Some(spans)),
        forwards,
    });
    let stop_servers = CancellationToken::new();
    let stop_forwarders = CancellationToken::new();
    let mut servers = Vec::new();
    let (grpc_addr, http_addr) = listeners.local_addrs();
    if let Some(listener) = listeners.grpc {
        servers.push(tokio::spawn(serve_grpc(
            listener,
            shared.clone(),
            stop_servers.clone(),
        )));
    }
    if let Some(listener) = listeners.http {
        servers.push(tokio::spawn(serve_http(
            listener,
            shared.clone(),
            stop_servers.clone(),
        )));
    }
    let forwarders = shared
        .forwards
        .iter()
        .filter(|f| f.client.is_some())
        .map(|f| tokio::spawn(f.clone().run(stop_forwarders.clone())))
        .collect();
    let relayed: Vec<&str> = shared
        .forwards
        .iter()
        .filter(|f| f.client.is_some())
        .map(|f| f.signal.name())
        .collect();
    tracing::info!(
        component = "otlp_receiver",
        grpc = ?grpc_addr,
        http = ?http_addr,
        relayed = ?relayed,
        "receiving OTLP from the app"
    );
    Ok(OtlpReceiverTasks {
        servers,
        forwarders,
        stop_servers,
        stop_forwarders,
        shared,
    })
}

/// The pipeline end of the span stream, on a blocking thread like a file source: moves
/// each batch into the bounded batch channel (waiting while it is full) until every
/// sender is gone.
pub fn feed_pipeline(mut spans: mpsc::Receiver<LogBatch>, out: BatchSender) {
    while let Some(batch) = spans.blocking_recv() {
        if out.send(batch).is_err() {
            return;
        }
    }
    tracing::debug!(component = "otlp_receiver", "span stream closed");
}

/// What every request handler shares.
struct Shared {
    max_request_bytes: usize,
    defaults: ResourceDefaults,
    /// `deployments.version_field`: the record attribute that names a span record's
    /// version when the app's resource has its own `service.version`.
    version_field: String,
    live_version: LiveVersion,
    /// Taken at shutdown so the pipeline thread sees the stream end.
    spans: Mutex<Option<mpsc::Sender<LogBatch>>>,
    /// Traces, metrics, logs.
    forwards: Vec<Arc<Forward>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("max_request_bytes", &self.max_request_bytes)
            .finish_non_exhaustive()
    }
}

/// Why a request was not taken.
#[derive(Debug)]
enum Refusal {
    /// The signal's relay queue is full: retry later.
    QueueFull,
}

impl Shared {
    fn forward(&self, signal: Signal) -> &Forward {
        let index = match signal {
            Signal::Traces => 0,
            Signal::Metrics => 1,
            Signal::Logs => 2,
        };
        &self.forwards[index]
    }

    fn live(&self) -> Option<String> {
        (self.live_version)()
    }

    async fn traces(&self, mut request: ExportTraceServiceRequest) -> Result<(), Refusal> {
        let items: u64 = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        let forward = self.forward(Signal::Traces);
        forward.metrics.received.add(items);
        // From what the app sent: the records' own version is the app's, if any.
        let mut batch = LogBatch {
            source: Arc::from(OTLP_SOURCE),
            ..LogBatch::default()
        };
        span_records(
            &mut batch,
            &request.resource_spans,
            &self.defaults.service_name,
            &self.version_field,
            crate::rule_runner::unix_nanos(),
        );
        let live = self.live();
        for resource_spans in &mut request.resource_spans {
            enrich(
                &mut resource_spans.resource,
                &self.defaults,
                live.as_deref(),
            );
        }
        forward.push(request.encode_to_vec(), items)?;
        self.send_records(batch).await;
        Ok(())
    }

    async fn metrics(&self, mut request: ExportMetricsServiceRequest) -> Result<(), Refusal> {
        let items: u64 = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| data_points(m.data.as_ref()))
            .sum();
        let forward = self.forward(Signal::Metrics);
        forward.metrics.received.add(items);
        let live = self.live();
        for resource_metrics in &mut request.resource_metrics {
            enrich(
                &mut resource_metrics.resource,
                &self.defaults,
                live.as_deref(),
            );
        }
        forward.push(request.encode_to_vec(), items)
    }

    async fn logs(&self, mut request: ExportLogsServiceRequest) -> Result<(), Refusal> {
        let items: u64 = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum();
        let forward = self.forward(Signal::Logs);
        forward.metrics.received.add(items);
        let live = self.live();
        for resource_logs in &mut request.resource_logs {
            enrich(&mut resource_logs.resource, &self.defaults, live.as_deref());
        }
        forward.push(request.encode_to_vec(), items)
    }

    /// Hands span records to the pipeline, waiting while it is full.
    async fn send_records(&self, batch: LogBatch) {
        if batch.records.is_empty() {
            return;
        }
        let sender = self.spans.lock().ok().and_then(|s| s.clone());
        if let Some(sender) = sender {
            // Closed only at shutdown, after the servers stopped.
            let _ = sender.send(batch).await;
        }
    }
}

fn data_points(data: Option<&metric::Data>) -> u64 {
    match data {
        Some(metric::Data::Gauge(g)) => g.data_points.len() as u64,
        Some(metric::Data::Sum(s)) => s.data_points.len() as u64,
        Some(metric::Data::Histogram(h)) => h.data_points.len() as u64,
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len() as u64,
        Some(metric::Data::Summary(s)) => s.data_points.len() as u64,
        None => 0,
    }
}

/// The receiver's series for one signal.
#[derive(Debug)]
struct ReceiverMetrics {
    /// `sidewatch_otlp_receiver_received_total{signal}`.
    received: Counter,
    /// `sidewatch_otlp_receiver_refused_total{signal}`: answered "retry later".
    refused: Counter,
    /// `sidewatch_otlp_receiver_dropped_total{signal}`: accepted, not relayed.
    dropped: Counter,
    /// `sidewatch_otlp_receiver_queue_bytes{signal}`.
    queue_bytes: Gauge,
}

/// One signal's relay: a bounded in-memory queue of encoded requests and the client
/// that sends them on.
struct Forward {
    signal: Signal,
    /// `None`: this signal is not exported; requests are accepted and discarded.
    client: Option<OtlpClient>,
    /// The most bytes the queue holds (`queue.memory` of the signal's export).
    capacity: usize,
    queue: Mutex<Queue>,
    /// Wakes the sender when a request is queued.
    queued: tokio::sync::Notify,
    metrics: ReceiverMetrics,
    sender_metrics: SenderMetrics,
}

#[derive(Debug, Default)]
struct Queue {
    entries: VecDeque<Entry>,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    body: Vec<u8>,
    items: u64,
}

impl Forward {
    fn new(
        signal: Signal,
        otlp: Option<&OtlpConfig>,
        telemetry: &Arc<Telemetry>,
    ) -> anyhow::Result<Forward> {
        let name = signal.name();
        let labels = [("signal", name)];
        let client = match otlp {
            Some(otlp) => Some(OtlpClient::new(otlp).with_context(|| {
                format!("cannot start relaying the app's OTLP {name} to the collector")
            })?),
            None => None,
        };
        Ok(Forward {
            signal,
            client,
            capacity: otlp.map_or(DEFAULT_QUEUE_MEMORY, |o| o.queue_memory) as usize,
            queue: Mutex::new(Queue::default()),
            queued: tokio::sync::Notify::new(),
            metrics: ReceiverMetrics {
                received: telemetry.counter(
                    "sidewatch_otlp_receiver_received_total",
                    "Spans, metric data points and log records the app's OTel SDK sent to the OTLP receiver.",
                    &labels,
                ),
                refused: telemetry.counter(
                    "sidewatch_otlp_receiver_refused_total",
                    "Items answered with UNAVAILABLE / 503 because the relay queue was full (the SDK retries them).",
                    &labels,
                ),
                dropped: telemetry.counter(
                    "sidewatch_otlp_receiver_dropped_total",
                    "Items the OTLP receiver accepted but did not relay: the signal is not exported, or it was still queued at shutdown.",
                    &labels,
                ),
                queue_bytes: telemetry.gauge(
                    "sidewatch_otlp_receiver_queue_bytes",
                    "Bytes of received OTLP requests waiting to be relayed to the collector (in memory).",
                    &labels,
                ),
            },
            sender_metrics: SenderMetrics::new(telemetry, name),
        })
    }

    /// Queues a request for the collector; refuses it when the queue is full. A request
    /// larger than the whole queue still goes in when the queue is empty, or it could
    /// never be relayed.
    fn push(&self, body: Vec<u8>, items: u64) -> Result<(), Refusal> {
        if self.client.is_none() {
            self.metrics.dropped.add(items);
            return Ok(());
        }
        let Ok(mut queue) = self.queue.lock() else {
            return Err(Refusal::QueueFull);
        };
        if !queue.entries.is_empty() && queue.bytes + body.len() > self.capacity {
            drop(queue);
            self.metrics.refused.add(items);
            return Err(Refusal::QueueFull);
        }
        queue.bytes += body.len();
        queue.entries.push_back(Entry { body, items });
        self.metrics.queue_bytes.set(queue.bytes as f64);
        drop(queue);
        self.queued.notify_one();
        Ok(())
    }

    /// Requests and items still queued.
    fn pending(&self) -> (usize, u64) {
        self.queue.lock().map_or((0, 0), |q| {
            (q.entries.len(), q.entries.iter().map(|e| e.items).sum())
        })
    }

    /// The head of the queue as one request: consecutive entries concatenated (protobuf
    /// merges repeated fields of concatenated messages), up to `MAX_REQUEST_BYTES`.
    /// Returns the body, how many entries and items it holds.
    fn head(&self) -> Option<(Vec<u8>, usize, u64)> {
        let queue = self.queue.lock().ok()?;
        let first = queue.entries.front()?;
        let mut body = first.body.clone();
        let (mut entries, mut items) = (1, first.items);
        for entry in queue.entries.iter().skip(1) {
            if body.len() + entry.body.len() > MAX_REQUEST_BYTES {
                break;
            }
            body.extend_from_slice(&entry.body);
            entries += 1;
            items += entry.items;
        }
        Some((body, entries, items))
    }

    fn pop(&self, entries: usize) {
        if let Ok(mut queue) = self.queue.lock() {
            for _ in 0..entries {
                if let Some(entry) = queue.entries.pop_front() {
                    queue.bytes -= entry.body.len();
                }
            }
            self.metrics.queue_bytes.set(queue.bytes as f64);
        }
    }

    /// Relays the queue until `stop`; then until it is empty or a request fails (the
    /// caller bounds that with the grace period).
    async fn run(self: Arc<Forward>, stop: CancellationToken) {
        let Some(client) = &self.client else { return };
        let component = "otlp_receiver";
        let signal = self.signal.name();
        let mut attempt: u32 = 0;
        loop {
            let Some((body, entries, items)) = self.head() else {
                if stop.is_cancelled() {
                    return;
                }
                tokio::select! {
                    () = self.queued.notified() => {}
                    () = stop.cancelled() => {}
                }
                continue;
            };
            match client.send(bytes::Bytes::from(body)).await {
                SendOutcome::Accepted { rejected, message } => {
                    let rejected = rejected.min(items);
                    self.sender_metrics.sent.add(items - rejected);
                    if rejected > 0 || !message.is_empty() {
                        self.sender_metrics.dropped.add(rejected);
                        tracing::warn!(
                            component,
                            signal,
                            rejected,
                            message,
                            "the collector accepted relayed OTLP data only in part"
                        );
                    }
                    attempt = 0;
                    self.pop(entries);
                }
                SendOutcome::Refused { reason } => {
                    self.sender_metrics.dropped.add(items);
                    tracing::error!(
                        component,
                        signal,
                        items,
                        "the collector refused relayed OTLP data, dropped it: {reason}"
                    );
                    attempt = 0;
                    self.pop(entries);
                }
                SendOutcome::Retry { after, reason } => {
                    self.sender_metrics.retries.inc();
                    if stop.is_cancelled() {
                        tracing::warn!(
                            component,
                            signal,
                            "cannot reach the collector while shutting down: {reason}"
                        );
                        return;
                    }
                    let backoff = crate::notify::webhook::backoff(attempt, jitter());
                    let wait = after.map_or(backoff, |a| a.max(backoff));
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(
                        component,
                        signal,
                        attempt,
                        wait = ?wait,
                        items,
                        "cannot relay OTLP data to the collector: {reason}; retrying"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stop.cancelled() => {}
                    }
                }
            }
        }
    }
}

/// A random number in [0, 1) for the backoff's jitter.
fn jitter() -> f64 {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// What `enrich` adds to a resource that lacks it.
#[derive(Debug, Clone)]
pub struct ResourceDefaults {
    /// `service.name` from the config.
    pub service_name: String,
    /// `deployment.environment.name` from `service.environment`.
    pub environment: String,
}

/// Adds the deployment's attributes to a resource the app sent, never overwriting one it
/// set: `service.version` = the live version, `deployment.environment.name` (unless it
/// has the older `deployment.environment`), and `service.name`. The SDKs always send a
/// `service.name`: theirs when nothing was configured is `unknown_service[:process]`,
/// which counts as missing here.
pub fn enrich(resource: &mut Option<Resource>, defaults: &ResourceDefaults, live: Option<&str>) {
    let resource = resource.get_or_insert_with(Resource::default);
    let attrs = &mut resource.attributes;
    let name_is_default = |s: &str| s.is_empty() || s.starts_with("unknown_service");
    if !name_is_default(&defaults.service_name) {
        match attrs.iter_mut().find(|kv| kv.key == "service.name") {
            Some(kv) if string_of(kv.value.as_ref()).is_some_and(|s| !name_is_default(s)) => {}
            Some(kv) => kv.value = Some(string_value(&defaults.service_name)),
            None => attrs.push(key_value("service.name", &defaults.service_name)),
        }
    }
    if let Some(live) = live.filter(|v| !v.is_empty()) {
        match attrs.iter_mut().find(|kv| kv.key == "service.version") {
            Some(kv) if string_of(kv.value.as_ref()).is_some_and(|s| !s.is_empty()) => {}
            Some(kv) => kv.value = Some(string_value(live)),
            None => attrs.push(key_value("service.version", live)),
        }
    }
    if !defaults.environment.is_empty()
        && !attrs
            .iter()
            .any(|kv| kv.key == "deployment.environment.name" || kv.key == "deployment.environment")
    {
        attrs.push(key_value(
            "deployment.environment.name",
            &defaults.environment,
        ));
    }
}

fn key_value(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(string_value(value)),
        ..Default::default()
    }
}

fn string_value(value: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(value.to_string())),
    }
}

fn string_of(value: Option<&AnyValue>) -> Option<&str> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attribute<'a>(attrs: &'a [KeyValue], keys: &[&str]) -> Option<&'a any_value::Value> {
    keys.iter().find_map(|key| {
        attrs
            .iter()
            .find(|kv| kv.key == *key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    })
}

/// `SpanKind` numbers of the OTLP protobuf.
const KIND_SERVER: i32 = 2;
/// `Status.code`: error.
const STATUS_ERROR: i32 = 2;

/// Appends a record to `batch` for every server span and every root span of the
/// request, in order; returns how many. The record: body and line = the span's name;
/// time = its end; severity `error` when its status is error, else `info`; `trace_id`
/// and `span_id` as hex; attributes `http.route`, `http.request.method`,
/// `http.response.status_code` (each also read from the older `http.method` /
/// `http.status_code`), `status` (the status code as a number, for `| status >= 500`),
/// `duration_ms`, `span.status` (`ok`/`error`/`unset`), `span.kind`, `service.name`
/// (`default_service` when the resource has none or the SDK's `unknown_service`), and `service.version` plus
/// `version_field` when the resource has its own version (so the record's `deployment`
/// is the app's version; without one it is the live version, set by the sink stage).
pub fn span_records(
    batch: &mut LogBatch,
    resource_spans: &[ResourceSpans],
    default_service: &str,
    version_field: &str,
    observed_unix_nano: i64,
) -> usize {
    let before = batch.records.len();
    for resource in resource_spans {
        let resource_attrs = resource
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        // As in `enrich`: the SDKs' `unknown_service` default counts as no name.
        let service = match attribute(resource_attrs, &["service.name"]) {
            Some(any_value::Value::StringValue(s))
                if !s.is_empty() && !s.starts_with("unknown_service") =>
            {
                s.as_str()
            }
            _ => default_service,
        };
        let version = match attribute(resource_attrs, &["service.version"]) {
            Some(any_value::Value::StringValue(s)) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        };
        for span in resource.scope_spans.iter().flat_map(|s| &s.spans) {
            if span.kind == KIND_SERVER || span.parent_span_id.iter().all(|b| *b == 0) {
                push_span(
                    batch,
                    span,
                    service,
                    version,
                    version_field,
                    observed_unix_nano,
                );
            }
        }
    }
    batch.records.len() - before
}

fn push_span(
    batch: &mut LogBatch,
    span: &OtlpSpan,
    service: &str,
    version: Option<&str>,
    version_field: &str,
    observed_unix_nano: i64,
) {
    let attrs_start = batch.fields.len() as u32;
    let name = push_text(&mut batch.buf, &span.name);
    let trace_id = hex_id(&mut batch.buf, &span.trace_id, 16);
    let span_id = hex_id(&mut batch.buf, &span.span_id, 8);
    let status_code = span.status.as_ref().map_or(0, |s| s.code);
    let error = status_code == STATUS_ERROR;
    if let Some(route) = attribute(&span.attributes, &["http.route"]) {
        push_any(batch, "http.route", route);
    }
    if let Some(method) = attribute(&span.attributes, &["http.request.method", "http.method"]) {
        push_any(batch, "http.request.method", method);
    }
    let http_status = attribute(
        &span.attributes,
        &["http.response.status_code", "http.status_code"],
    )
    .and_then(|v| match v {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        any_value::Value::DoubleValue(d) if d.fract() == 0.0 => Some(*d as i64),
        _ => None,
    });
    if let Some(code) = http_status {
        push_number(batch, "http.response.status_code", &code.to_string());
        push_number(batch, "status", &code.to_string());
    }
    if span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0 {
        let nanos = span.end_time_unix_nano - span.start_time_unix_nano;
        // Microsecond precision, written as a plain decimal number.
        let ms = format!("{}.{:03}", nanos / 1_000_000, (nanos / 1_000) % 1_000);
        push_number(batch, "duration_ms", &ms);
    }
    let span_status = match status_code {
        1 => "ok",
        STATUS_ERROR => "error",
        _ => "unset",
    };
    push_str(batch, "span.status", span_status);
    let kind = match span.kind {
        1 => "internal",
        KIND_SERVER => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    };
    push_str(batch, "span.kind", kind);
    push_str(batch, "service.name", service);
    if let Some(version) = version {
        push_str(batch, "service.version", version);
        if version_field != "service.version" && !version_field.is_empty() {
            push_str(batch, version_field, version);
        }
    }
    let time = if span.end_time_unix_nano > 0 {
        span.end_time_unix_nano
    } else {
        span.start_time_unix_nano
    };
    batch.records.push(LogRecord {
        file: 0,
        offset: 0,
        line: name,
        time_unix_nano: (time > 0).then(|| time.min(i64::MAX as u64) as i64),
        observed_unix_nano,
        severity_number: if error { 17 } else { 9 },
        severity_text: SeverityText::Static(if error { "error" } else { "info" }),
        body: Some(Value::text(name)),
        trace_id,
        span_id,
        attrs: attrs_start..batch.fields.len() as u32,
        deployment: None,
        flags: Default::default(),
    });
}

fn push_text(buf: &mut String, text: &str) -> Span {
    let start = buf.len();
    buf.push_str(text);
    Span::new(start, buf.len())
}

/// An id as lowercase hex text; none when it is empty, all zero or of the wrong length.
fn hex_id(buf: &mut String, id: &[u8], len: usize) -> Option<Value> {
    if id.len() != len || id.iter().all(|b| *b == 0) {
        return None;
    }
    use std::fmt::Write as _;
    let start = buf.len();
    for b in id {
        let _ = write!(buf, "{b:02x}");
    }
    Some(Value::text(Span::new(start, buf.len())))
}

fn push_field(batch: &mut LogBatch, key: &str, value: Value) {
    let key = push_text(&mut batch.buf, key);
    batch.fields.push(Field {
        key,
        key_escaped: false,
        value,
    });
}

fn push_str(batch: &mut LogBatch, key: &str, value: &str) {
    let key_span = push_text(&mut batch.buf, key);
    let value = Value::text(push_text(&mut batch.buf, value));
    batch.fields.push(Field {
        key: key_span,
        key_escaped: false,
        value,
    });
}

/// `text` must be a valid JSON number.
fn push_number(batch: &mut LogBatch, key: &str, text: &str) {
    let key_span = push_text(&mut batch.buf, key);
    let span = push_text(&mut batch.buf, text);
    batch.fields.push(Field {
        key: key_span,
        key_escaped: false,
        value: Value {
            span,
            kind: ValueKind::Number,
        },
    });
}

fn push_any(batch: &mut LogBatch, key: &str, value: &any_value::Value) {
    match value {
        any_value::Value::StringValue(s) => push_str(batch, key, s),
        any_value::Value::IntValue(i) => push_number(batch, key, &i.to_string()),
        any_value::Value::DoubleValue(d) if d.is_finite() => {
            push_number(batch, key, &d.to_string())
        }
        any_value::Value::BoolValue(b) => {
            let kind = if *b {
                ValueKind::True
            } else {
                ValueKind::False
            };
            let span = push_text(&mut batch.buf, if *b { "true" } else { "false" });
            push_field(batch, key, Value { span, kind });
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------
// gRPC

#[derive(Debug, Clone)]
struct GrpcReceiver(Arc<Shared>);

fn grpc_status(refusal: Refusal) -> tonic::Status {
    match refusal {
        Refusal::QueueFull => tonic::Status::unavailable(
            "sidewatch's relay queue is full (the collector is slow or down); retry later",
        ),
    }
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .traces(request.into_inner())
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0
            .metrics(request.into_inner())
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0
            .logs(request.into_inner())
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

async fn serve_grpc(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    use tonic::codec::CompressionEncoding::Gzip;
    let limit = shared.max_request_bytes;
    let receiver = GrpcReceiver(shared);
    let result = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(GRPC_CONCURRENCY)
        .add_service(
            TraceServiceServer::new(receiver.clone())
                .accept_compressed(Gzip)
                .max_decoding_message_size(limit),
        )
        .add_service(
            MetricsServiceServer::new(receiver.clone())
                .accept_compressed(Gzip)
                .max_decoding_message_size(limit),
        )
        .add_service(
            LogsServiceServer::new(receiver)
                .accept_compressed(Gzip)
                .max_decoding_message_size(limit),
        )
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            stop.cancelled_owned(),
        )
        .await;
    if let Err(e) = result {
        tracing::error!(component = "otlp_receiver", "OTLP/gRPC server failed: {e}");
    }
}

// ---------------------------------------------------------------------------------
// HTTP

async fn serve_http(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    use axum::routing::post;
    let limit = shared.max_request_bytes;
    let app = axum::Router::new()
        .route("/v1/traces", post(http_traces))
        .route("/v1/metrics", post(http_metrics))
        .route("/v1/logs", post(http_logs))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(shared);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::error!(component = "otlp_receiver", "OTLP/HTTP server failed: {e}");
    }
}

type HttpState = axum::extract::State<Arc<Shared>>;
type HttpResponse = axum::response::Response;

async fn http_traces(
    axum::extract::State(shared): HttpState,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> HttpResponse {
    match decode_http::<ExportTraceServiceRequest>(&headers, &body, shared.max_request_bytes) {
        Ok((request, format)) => answer(
            shared.traces(request).await,
            ExportTraceServiceResponse::default(),
            format,
        ),
        Err(error) => error.response(),
    }
}

async fn http_metrics(
    axum::extract::State(shared): HttpState,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> HttpResponse {
    match decode_http::<ExportMetricsServiceRequest>(&headers, &body, shared.max_request_bytes) {
        Ok((request, format)) => answer(
            shared.metrics(request).await,
            ExportMetricsServiceResponse::default(),
            format,
        ),
        Err(error) => error.response(),
    }
}

async fn http_logs(
    axum::extract::State(shared): HttpState,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> HttpResponse {
    match decode_http::<ExportLogsServiceRequest>(&headers, &body, shared.max_request_bytes) {
        Ok((request, format)) => answer(
            shared.logs(request).await,
            ExportLogsServiceResponse::default(),
            format,
        ),
        Err(error) => error.response(),
    }
}

/// How an OTLP/HTTP body is encoded; the answer uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    Protobuf,
    /// OTLP/JSON: protobuf's JSON mapping with hex ids (opentelemetry-proto's serde).
    Json,
}

impl BodyFormat {
    fn content_type(self) -> &'static str {
        match self {
            BodyFormat::Protobuf => "application/x-protobuf",
            BodyFormat::Json => "application/json",
        }
    }
}

/// The body of an OTLP/HTTP request: protobuf or JSON, optionally gzip; anything else
/// is answered as OTLP/HTTP says (400 for a body that does not decode, 413 too large,
/// 415 an unsupported content type or encoding).
fn decode_http<M>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
    limit: usize,
) -> Result<(M, BodyFormat), HttpError>
where
    M: prost::Message + Default + serde::de::DeserializeOwned,
{
    use axum::http::StatusCode;
    let header = |name: axum::http::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let content_type = header(axum::http::header::CONTENT_TYPE);
    let format = match content_type.split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" => BodyFormat::Protobuf,
        "application/json" => BodyFormat::Json,
        _ => {
            return Err(HttpError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported content type `{content_type}`: application/x-protobuf or application/json"
                ),
                BodyFormat::Protobuf,
            ));
        }
    };
    let error = |status, message| Err(HttpError(status, message, format));
    let encoding = header(axum::http::header::CONTENT_ENCODING);
    let decompressed;
    let bytes = match encoding.as_str() {
        "" | "identity" => body,
        "gzip" => {
            let mut out = Vec::new();
            // One byte over the limit tells "too large" from "exactly the limit".
            let read = flate2::read::GzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out);
            match read {
                Ok(n) if n > limit => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the decompressed body is over max_request_bytes ({limit})"),
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("the body is not valid gzip: {e}"),
                    );
                }
            }
            decompressed = out;
            &decompressed[..]
        }
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content encoding `{other}`: gzip or none"),
            );
        }
    };
    let decoded = match format {
        BodyFormat::Protobuf => M::decode(bytes).map_err(|e| e.to_string()),
        BodyFormat::Json => serde_json::from_slice::<M>(bytes).map_err(|e| e.to_string()),
    };
    match decoded {
        Ok(message) => Ok((message, format)),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("the body is not a valid OTLP export request: {e}"),
        ),
    }
}

/// An OTLP/HTTP request refused before decoding: its status, why, and the format to
/// answer in.
#[derive(Debug)]
struct HttpError(axum::http::StatusCode, String, BodyFormat);

impl HttpError {
    fn response(self) -> HttpResponse {
        error_response(self.0, &self.1, self.2)
    }
}

fn answer(
    result: Result<(), Refusal>,
    success: impl prost::Message,
    format: BodyFormat,
) -> HttpResponse {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse as _;
    match result {
        Ok(()) => {
            // An empty response: no partial_success, everything was accepted.
            let body = match format {
                BodyFormat::Protobuf => success.encode_to_vec(),
                BodyFormat::Json => b"{}".to_vec(),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, format.content_type())],
                body,
            )
                .into_response()
        }
        Err(Refusal::QueueFull) => {
            let mut response = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "sidewatch's relay queue is full (the collector is slow or down); retry later",
                format,
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_SECS),
            );
            response
        }
    }
}

/// A `google.rpc.Status` with `message`, what OTLP/HTTP servers send with an error.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The error body OTLP/HTTP asks for: a `google.rpc.Status` in the request's encoding,
/// with the gRPC code that matches the HTTP status.
fn error_response(
    status: axum::http::StatusCode,
    message: &str,
    format: BodyFormat,
) -> HttpResponse {
    use axum::response::IntoResponse as _;
    let code = match status.as_u16() {
        400 | 415 => tonic::Code::InvalidArgument,
        413 => tonic::Code::ResourceExhausted,
        503 => tonic::Code::Unavailable,
        _ => tonic::Code::Unknown,
    } as i32;
    let body = match format {
        BodyFormat::Protobuf => RpcStatus {
            code,
            message: message.to_string(),
        }
        .encode_to_vec(),
        BodyFormat::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    };
    (
        status,
        [(axum::http::header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Status};

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn span(name: &str, kind: i32, parent: &[u8], status: i32, attrs: Vec<KeyValue>) -> OtlpSpan {
        OtlpSpan {
            trace_id: (1..=16).collect(),
            span_id: vec![0xab; 8],
            parent_span_id: parent.to_vec(),
            name: name.into(),
            kind,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_012_345_678,
            attributes: attrs,
            status: Some(Status {
                message: String::new(),
                code: status,
            }),
            ..Default::default()
        }
    }

    fn resource_spans(resource: Vec<KeyValue>, spans: Vec<OtlpSpan>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Each record as `body | severity | trace/span | key=value…` and its JSON line.
    fn render(batch: &LogBatch) -> Vec<String> {
        batch
            .records
            .iter()
            .map(|r| {
                let attrs: Vec<String> = batch
                    .attrs(r)
                    .iter()
                    .map(|f| {
                        format!(
                            "{}={}:{:?}",
                            f.key(&batch.buf),
                            f.value.raw(&batch.buf),
                            f.value.kind
                        )
                    })
                    .collect();
                let mut line = Vec::new();
                crate::export::json::write_record(&mut line, batch, r, Some("9.9"));
                serde_json::from_slice::<serde_json::Value>(&line).expect("valid JSON");
                format!(
                    "{} | {:?} {} | {} {} | t={:?} | {}",
                    r.body.unwrap().raw(&batch.buf),
                    r.severity_text,
                    r.severity_number,
                    r.trace_id.map_or("-", |v| v.raw(&batch.buf)),
                    r.span_id.map_or("-", |v| v.raw(&batch.buf)),
                    r.time_unix_nano,
                    attrs.join(" ")
                )
            })
            .collect()
    }

    #[test]
    fn server_and_root_spans_become_records() {
        let spans = vec![
            span(
                "GET /checkout",
                KIND_SERVER,
                &[7; 8],
                STATUS_ERROR,
                vec![
                    kv("http.route", s("/checkout")),
                    kv("http.method", s("GET")),
                    kv("http.status_code", any_value::Value::IntValue(500)),
                    kv("user.id", s("not copied")),
                ],
            ),
            // A child (internal) span: not a request, no record.
            span("db query", 1, &[7; 8], 0, vec![]),
            // A root span of any kind (a job): a record.
            span(
                "nightly job",
                1,
                &[],
                1,
                vec![
                    kv("http.request.method", s("POST")),
                    kv("http.response.status_code", s("201")),
                ],
            ),
        ];
        let own = resource_spans(
            vec![
                kv("service.name", s("shop")),
                kv("service.version", s("2.0.0")),
            ],
            spans.clone(),
        );
        let bare = resource_spans(vec![], spans[..1].to_vec());
        let mut batch = LogBatch::default();
        let n = span_records(&mut batch, &[own, bare], "checkout-api", "version", 42);
        assert_eq!(n, 3);
        insta::assert_snapshot!(render(&batch).join("\n"), @r#"
GET /checkout | Static("error") 17 | 0102030405060708090a0b0c0d0e0f10 abababababababab | t=Some(1700000000012345678) | http.route=/checkout:Text http.request.method=GET:Text http.response.status_code=500:Number status=500:Number duration_ms=12.345:Number span.status=error:Text span.kind=server:Text service.name=shop:Text service.version=2.0.0:Text version=2.0.0:Text
nightly job | Static("info") 9 | 0102030405060708090a0b0c0d0e0f10 abababababababab | t=Some(1700000000012345678) | http.request.method=POST:Text http.response.status_code=201:Number status=201:Number duration_ms=12.345:Number span.status=ok:Text span.kind=internal:Text service.name=shop:Text service.version=2.0.0:Text version=2.0.0:Text
GET /checkout | Static("error") 17 | 0102030405060708090a0b0c0d0e0f10 abababababababab | t=Some(1700000000012345678) | http.route=/checkout:Text http.request.method=GET:Text http.response.status_code=500:Number status=500:Number duration_ms=12.345:Number span.status=error:Text span.kind=server:Text service.name=checkout-api:Text
"#);
        assert!(batch.records.iter().all(|r| r.observed_unix_nano == 42));
    }

    #[test]
    fn odd_spans_still_make_valid_records() {
        let mut weird = span(
            "quote \" and\nnewline",
            KIND_SERVER,
            &[],
            0,
            vec![kv("http.route", any_value::Value::DoubleValue(1.5))],
        );
        weird.trace_id = vec![0; 16];
        weird.span_id = vec![1, 2, 3];
        weird.start_time_unix_nano = 0;
        let mut batch = LogBatch::default();
        span_records(
            &mut batch,
            &[resource_spans(vec![], vec![weird])],
            "svc",
            "service.version",
            1,
        );
        insta::assert_snapshot!(render(&batch).join("\n"), @r#"
quote " and
newline | Static("info") 9 | - - | t=Some(1700000000012345678) | http.route=1.5:Number span.status=unset:Text span.kind=server:Text service.name=svc:Text
"#);
    }

    #[test]
    fn resource_attributes_are_added_never_overwritten() {
        let defaults = ResourceDefaults {
            service_name: "checkout-api".into(),
            environment: "production".into(),
        };
        let render = |r: &Option<Resource>| -> String {
            r.as_ref()
                .unwrap()
                .attributes
                .iter()
                .map(|kv| format!("{}={}", kv.key, string_of(kv.value.as_ref()).unwrap()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut none = None;
        enrich(&mut none, &defaults, Some("1.4.2"));
        assert_eq!(
            render(&none),
            "service.name=checkout-api service.version=1.4.2 deployment.environment.name=production"
        );
        let mut sdk_default = Some(Resource {
            attributes: vec![
                key_value("service.name", "unknown_service:python"),
                key_value("telemetry.sdk.language", "python"),
                key_value("service.version", ""),
            ],
            ..Default::default()
        });
        enrich(&mut sdk_default, &defaults, Some("1.4.2"));
        assert_eq!(
            render(&sdk_default),
            "service.name=checkout-api telemetry.sdk.language=python service.version=1.4.2 deployment.environment.name=production"
        );
        let mut own = Some(Resource {
            attributes: vec![
                key_value("service.name", "shop"),
                key_value("service.version", "2.0.0"),
                key_value("deployment.environment", "staging"),
            ],
            ..Default::default()
        });
        let before = own.clone();
        enrich(&mut own, &defaults, Some("1.4.2"));
        assert_eq!(own, before);
        // No live version yet: nothing to add for it.
        let mut none = None;
        enrich(&mut none, &defaults, None);
        assert_eq!(
            render(&none),
            "service.name=checkout-api deployment.environment.name=production"
        );
    }

    #[test]
    fn http_bodies_are_checked_before_decoding() {
        use axum::http::{HeaderMap, HeaderValue, StatusCode};
        let request = ExportTraceServiceRequest {
            resource_spans: vec![resource_spans(vec![], vec![span("a", 2, &[], 0, vec![])])],
        };
        let body = request.encode_to_vec();
        let headers = |ct: &'static str, ce: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_static(ct));
            if let Some(ce) = ce {
                h.insert("content-encoding", HeaderValue::from_static(ce));
            }
            h
        };
        let status = |r: Result<(ExportTraceServiceRequest, BodyFormat), HttpError>| match r {
            Ok(_) => StatusCode::OK,
            Err(e) => e.0,
        };
        let proto = headers("application/x-protobuf", None);
        assert_eq!(
            decode_http::<ExportTraceServiceRequest>(&proto, &body, 1 << 20).unwrap(),
            (request.clone(), BodyFormat::Protobuf)
        );
        // OTLP/JSON: hex ids, int64 and fixed64 as strings, enums as numbers.
        let json = headers("application/json", None);
        let text = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"abababababababab","name":"a","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000012345678","status":{}}]}]}]}"#;
        let (decoded, format) =
            decode_http::<ExportTraceServiceRequest>(&json, text, 1 << 20).unwrap();
        assert_eq!(format, BodyFormat::Json);
        let mut expected = request.clone();
        expected.resource_spans[0].resource = None;
        assert_eq!(decoded, expected);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &body).unwrap();
        let gzipped = gz.finish().unwrap();
        let gzip = headers("application/x-protobuf; charset=binary", Some("gzip"));
        assert_eq!(
            status(decode_http(&gzip, &gzipped, 1 << 20)),
            StatusCode::OK
        );
        assert_eq!(
            status(decode_http(&gzip, &gzipped, body.len() - 1)),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(decode_http(&gzip, &body, 1 << 20)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(decode_http(&proto, b"\xff\xff\xff", 1 << 20)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(decode_http(&json, b"{\"resourceSpans\": 3}", 1 << 20)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(decode_http(&headers("text/plain", None), b"{}", 1 << 20)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            status(decode_http(
                &headers("application/x-protobuf", Some("br")),
                &body,
                1 << 20
            )),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
