//! OTLP traces: the agent's own spans — one `deployment.verify` per deployment
//! verification (its checks as events), one `notification.deliver` per notification
//! delivery attempt — bridged from `tracing` by tracing-opentelemetry, batched by the
//! OpenTelemetry SDK, and sent to the collector with the same resolved `export.otlp`
//! settings as logs and metrics.
//!
//! Layout: `main` installs [`layer`] once, before the config is known, with an empty
//! [`TracesSlot`]; `topology` fills the slot with a batch span processor when
//! `export.otlp` is configured and `signals` includes `traces` ([`start`]), and shuts
//! it down (flushing what is batched) within the grace period ([`shutdown`]). Until the
//! slot is filled the layer's filter rejects every span, so an agent without traces
//! export builds no OpenTelemetry span at all.
//!
//! Only spans whose target is this crate (`sidewatch::…`) reach the layer; events never
//! do (span events are added explicitly with `OpenTelemetrySpanExt::add_event`). The
//! HTTP and gRPC stacks the exporter itself uses (hyper, h2, tonic, tower, reqwest,
//! rustls) have spans of their own: let through, every export would make new spans to
//! export, forever.
//!
//! Resource: the same as logs and metrics — the configured `service.name` (the app's,
//! not `sidewatch`), `deployment.environment.name`, `OTEL_RESOURCE_ATTRIBUTES` and
//! `host.name` — so a backend shows a deployment's verification beside the app's own
//! traces, logs and metrics under one service. That the spans come from the sidecar
//! and not from the app is said by the instrumentation scope (`sidewatch` with the
//! agent's version). `service.version` is left out: the resource is fixed for the
//! process, while the app's version changes with every deployment (each span carries
//! `deployment.version` instead). `service.instance.id` is left out too: it would
//! name the agent as an instance of the app's service.
//!
//! Why not the `opentelemetry-otlp` exporter: it resolves the `OTEL_EXPORTER_OTLP_*`
//! variables a second time on top of what `config::resolve` already decided (gRPC
//! metadata from `OTEL_EXPORTER_OTLP_HEADERS` would be appended twice; a file's
//! `compression: none` could be overridden by the variable), and it would bring a
//! second client stack (reqwest's blocking client on its own runtime thread). This
//! exporter encodes with `opentelemetry-proto`'s own SDK-to-protobuf transform and
//! sends through `sender::OtlpClient`: one client, one TLS/`ca_file`/headers/gzip
//! behaviour and one reading of OTLP's answers for all three signals, and the
//! `sidewatch_export_*{signal="traces"}` series beside the others.
//!
//! The SDK's batch processor exports from its own thread (no tokio context there); the
//! exporter hands each request to the agent's runtime and waits for its result.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use prost::Message as _;
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{DynFilterFn, LevelFilter};
use tracing_subscriber::registry::LookupSpan;

use super::config::OtlpConfig;
use super::sender::{OtlpClient, SendOutcome, SenderError, SenderMetrics};
use crate::telemetry::Telemetry;

/// The instrumentation scope of every span the agent makes.
pub const SCOPE: &str = "sidewatch";

/// Attempts per export request (the OTel SDKs' exporters retry too); what still fails
/// is dropped, counted and logged: the agent's spans are not worth a disk queue.
const ATTEMPTS: u32 = 3;
/// The longest wait between attempts, whatever the collector's `Retry-After` says.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);
/// Spans waiting in the batch processor; past it new spans are dropped by the SDK.
const MAX_QUEUED_SPANS: usize = 2048;

/// Where the span processor goes once the config says traces are exported. Cloned
/// into the layer's filter and span processor; filled at most once.
#[derive(Clone, Default)]
pub struct TracesSlot {
    processor: Arc<OnceLock<Box<dyn SpanProcessor>>>,
}

impl std::fmt::Debug for TracesSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracesSlot")
            .field("filled", &self.is_filled())
            .finish()
    }
}

impl TracesSlot {
    pub fn is_filled(&self) -> bool {
        self.processor.get().is_some()
    }

    /// Puts `processor` in the slot; `false` (and `processor` dropped) when it was
    /// already filled.
    pub fn fill(&self, processor: Box<dyn SpanProcessor>) -> bool {
        self.processor.set(processor).is_ok()
    }

    /// Exports what is batched and stops the processor. Blocks up to `timeout`.
    pub fn shutdown_blocking(&self, timeout: Duration) -> OTelSdkResult {
        match self.processor.get() {
            Some(processor) => processor.shutdown_with_timeout(timeout),
            None => Ok(()),
        }
    }
}

/// The provider's only processor: forwards to the slot's, once there is one.
#[derive(Debug)]
struct SlotProcessor(TracesSlot);

impl SpanProcessor for SlotProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        if let Some(processor) = self.0.processor.get() {
            processor.on_start(span, cx);
        }
    }

    fn on_end(&self, span: SpanData) {
        if let Some(processor) = self.0.processor.get() {
            processor.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.processor.get().map_or(Ok(()), |p| p.force_flush())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_blocking(timeout)
    }
}

/// Whether a callsite may make spans for the OpenTelemetry layer: this crate's spans,
/// nothing else (in particular not the exporter's own HTTP/gRPC stack), no events.
pub fn is_agent_span(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span()
        && (metadata.target() == SCOPE || metadata.target().starts_with("sidewatch::"))
}

/// The tracing layer that turns the agent's spans into OpenTelemetry spans, for
/// `slot`'s processor. Until the slot is filled it lets no span through.
pub fn layer<S>(slot: &TracesSlot) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let provider = SdkTracerProvider::builder()
        .with_span_processor(SlotProcessor(slot.clone()))
        .build();
    let tracer = provider.tracer_with_scope(
        InstrumentationScope::builder(SCOPE)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    let filled = slot.clone();
    // The whole test again per span, not only the slot: records of crates that log
    // through `log` (rustls) reach filters without a callsite, so the callsite filter
    // never saw them.
    let filter = DynFilterFn::new(move |metadata, _| {
        is_agent_span(metadata) && *metadata.level() <= Level::INFO && filled.is_filled()
    })
    .with_callsite_filter(|metadata| {
        if is_agent_span(metadata) && *metadata.level() <= Level::INFO {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    })
    // The agent's spans are INFO; the hint keeps `debug!` callsites elsewhere
    // statically disabled when the log level is `info`.
    .with_max_level_hint(LevelFilter::INFO);
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Attributes the spans are not about: source locations, thread ids, busy/idle
        // times, the tracing target and level.
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_level(false)
        .with_filter(filter)
}

/// The process's slot, installed by `main` together with the layer.
static GLOBAL: OnceLock<TracesSlot> = OnceLock::new();

/// Makes `slot` the one [`start`] fills and [`shutdown`] stops.
pub fn set_global(slot: TracesSlot) {
    let _ = GLOBAL.set(slot);
}

/// Starts exporting the agent's spans when `config` (the traces' resolution of
/// `export.otlp`) includes traces. Must run inside the tokio runtime, which must
/// outlive the export (requests are sent on it). `Ok(false)` when traces are not
/// exported: off in the config, or no layer installed (a test driving the topology).
pub fn start(config: &OtlpConfig, telemetry: &Arc<Telemetry>) -> Result<bool, SenderError> {
    if !config.signals.traces {
        return Ok(false);
    }
    let Some(slot) = GLOBAL.get() else {
        tracing::debug!("no tracing layer for spans installed: OTLP traces not exported");
        return Ok(false);
    };
    let exporter = OtlpSpanExporter::new(config, telemetry)?;
    let batch = BatchConfigBuilder::default()
        // `batch.timeout` and `batch.max_records`, as for log records.
        .with_scheduled_delay(config.batch_timeout)
        .with_max_export_batch_size(config.batch_max_records.clamp(1, MAX_QUEUED_SPANS))
        .with_max_queue_size(MAX_QUEUED_SPANS)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    if !slot.fill(Box::new(processor)) {
        return Ok(false);
    }
    tracing::info!(
        endpoint = %config.endpoint,
        protocol = ?config.protocol,
        "exporting traces over OTLP"
    );
    Ok(true)
}

/// At agent shutdown: exports the spans still batched, within `timeout`, and stops.
pub async fn shutdown(timeout: Duration) {
    let Some(slot) = GLOBAL.get().filter(|s| s.is_filled()).cloned() else {
        return;
    };
    match tokio::task::spawn_blocking(move || slot.shutdown_blocking(timeout)).await {
        Ok(Ok(())) => tracing::debug!("otlp trace export flushed"),
        Ok(Err(e)) => tracing::warn!(
            component = "otlp_traces",
            "spans not exported at shutdown: {e}"
        ),
        Err(_) => {}
    }
}

/// Sends the SDK's span batches through an [`OtlpClient`].
struct OtlpSpanExporter {
    client: Arc<OtlpClient>,
    resource: Arc<ResourceAttributesWithSchema>,
    /// The agent's runtime: the batch processor's thread has none.
    runtime: tokio::runtime::Handle,
    metrics: SenderMetrics,
}

impl std::fmt::Debug for OtlpSpanExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpSpanExporter").finish_non_exhaustive()
    }
}

impl OtlpSpanExporter {
    fn new(config: &OtlpConfig, telemetry: &Arc<Telemetry>) -> Result<Self, SenderError> {
        let resource = super::resource_with_host(&config.resource);
        Ok(OtlpSpanExporter {
            client: Arc::new(OtlpClient::new(config)?),
            resource: Arc::new(resource_attributes(&resource)),
            runtime: tokio::runtime::Handle::current(),
            metrics: SenderMetrics::new(telemetry, "traces"),
        })
    }
}

/// The resource in OTLP's shape, attributes in the configured order.
fn resource_attributes(resource: &[(String, String)]) -> ResourceAttributesWithSchema {
    let attributes = resource
        .iter()
        .map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone()));
    ResourceAttributesWithSchema {
        attributes: attributes.into(),
        schema_url: None,
    }
}

/// One export request's bytes: the spans grouped by scope under the resource.
fn encode(batch: Vec<SpanData>, resource: &ResourceAttributesWithSchema) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(batch, resource),
    }
    .encode_to_vec()
}

impl SpanExporter for OtlpSpanExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let spans = batch.len() as u64;
        let body = encode(batch, &self.resource);
        let client = self.client.clone();
        let metrics = self.metrics.clone();
        let task = self.runtime.spawn(async move {
            deliver(&client, &bytes::Bytes::from(body), spans, &metrics).await
        });
        async move {
            // The runtime is gone (the process is exiting): the spans are lost.
            task.await
                .map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?
        }
    }
}

/// Sends one request, retrying what OTLP says is worth retrying a few times.
async fn deliver(
    client: &OtlpClient,
    body: &bytes::Bytes,
    spans: u64,
    metrics: &SenderMetrics,
) -> OTelSdkResult {
    let mut attempt = 0;
    loop {
        match client.send(body.clone()).await {
            SendOutcome::Accepted { rejected, message } => {
                let rejected = rejected.min(spans);
                metrics.sent.add(spans - rejected);
                if rejected > 0 || !message.is_empty() {
                    metrics.dropped.add(rejected);
                    tracing::warn!(
                        component = "otlp_traces",
                        rejected,
                        message,
                        "the collector accepted the spans only in part"
                    );
                }
                return Ok(());
            }
            SendOutcome::Refused { reason } => {
                metrics.dropped.add(spans);
                tracing::error!(
                    component = "otlp_traces",
                    spans,
                    "the collector refused spans, dropped them: {reason}"
                );
                return Err(OTelSdkError::InternalFailure(reason));
            }
            SendOutcome::Retry { after, reason } => {
                attempt += 1;
                if attempt >= ATTEMPTS {
                    metrics.dropped.add(spans);
                    tracing::warn!(
                        component = "otlp_traces",
                        spans,
                        attempts = attempt,
                        "cannot send spans to the collector, dropped them: {reason}"
                    );
                    return Err(OTelSdkError::InternalFailure(reason));
                }
                metrics.retries.inc();
                let backoff = crate::notify::webhook::backoff(attempt - 1, jitter());
                let wait = after
                    .map_or(backoff, |a| a.max(backoff))
                    .min(MAX_RETRY_WAIT);
                tracing::debug!(component = "otlp_traces", attempt, wait = ?wait, "cannot send spans: {reason}; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Jitter for the backoff: the clock's nanoseconds are random enough to spread the
/// retries of one agent's rare trace exports.
fn jitter() -> f64 {
    f64::from(crate::rule_runner::unix_nanos().rem_euclid(1_000_000) as u32) / 1e6
}

/// A subscriber with the layer and a processor that keeps every finished span, for
/// the runners' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Mutex;

    use opentelemetry_sdk::trace::SimpleSpanProcessor;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Debug, Clone, Default)]
    pub(crate) struct Captured(pub Arc<Mutex<Vec<SpanData>>>);

    impl Captured {
        pub(crate) fn spans(&self) -> Vec<SpanData> {
            self.0.lock().unwrap().clone()
        }
    }

    impl SpanExporter for Captured {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// Installs the layer (slot filled with a capturing processor) as this thread's
    /// subscriber until the guard drops.
    pub(crate) fn capture() -> (tracing::subscriber::DefaultGuard, Captured) {
        let captured = Captured::default();
        let slot = TracesSlot::default();
        slot.fill(Box::new(SimpleSpanProcessor::new(captured.clone())));
        let subscriber = tracing_subscriber::registry().with(layer(&slot));
        (tracing::subscriber::set_default(subscriber), captured)
    }

    pub(crate) fn attribute(
        attributes: &[opentelemetry::KeyValue],
        key: &str,
    ) -> Option<opentelemetry::Value> {
        attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Status, TraceContextExt as _};
    use opentelemetry_proto::tonic::common::v1::any_value;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::testing::{attribute, capture};
    use super::*;

    #[test]
    fn only_the_agents_spans_reach_the_layer() {
        let (_guard, captured) = capture();
        {
            let span = tracing::info_span!(target: "sidewatch::deploy_runner", "deployment.verify", deployment.version = "1.2.3");
            span.add_event(
                "deployment.check",
                vec![opentelemetry::KeyValue::new("check.name", "latency")],
            );
            span.set_status(Status::error("failed checks: latency"));
            // An event inside the span is a log line, not a span event.
            span.in_scope(|| tracing::info!("inside"));
        }
        // The exporter's own stack, and a crate whose name only starts like ours.
        drop(tracing::info_span!(target: "h2::codec", "h2 span"));
        drop(tracing::info_span!(target: "hyper_util::client", "hyper span"));
        drop(tracing::info_span!(target: "tonic::transport", "tonic span"));
        drop(tracing::info_span!(target: "tower::buffer", "tower span"));
        drop(tracing::info_span!(target: "reqwest::connect", "reqwest span"));
        drop(tracing::info_span!(target: "rustls::client", "rustls span"));
        drop(tracing::info_span!(target: "sidewatchx", "prefix only"));
        let spans = captured.spans();
        assert_eq!(
            spans.iter().map(|s| s.name.as_ref()).collect::<Vec<_>>(),
            ["deployment.verify"],
            "only sidewatch's own spans"
        );
        let span = &spans[0];
        assert_eq!(span.instrumentation_scope.name(), SCOPE);
        assert_eq!(
            span.instrumentation_scope.version(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            attribute(&span.attributes, "deployment.version").map(|v| v.to_string()),
            Some("1.2.3".into())
        );
        assert_eq!(
            span.events
                .iter()
                .map(|e| e.name.as_ref())
                .collect::<Vec<_>>(),
            ["deployment.check"]
        );
        assert!(
            matches!(span.status, Status::Error { .. }),
            "{:?}",
            span.status
        );
        for unwanted in ["code.filepath", "thread.id", "busy_ns", "target", "level"] {
            assert!(
                attribute(&span.attributes, unwanted).is_none(),
                "{unwanted} in {:?}",
                span.attributes
            );
        }
    }

    #[test]
    fn an_empty_slot_lets_no_span_through() {
        let slot = TracesSlot::default();
        let layer = layer::<tracing_subscriber::Registry>(&slot);
        use tracing_subscriber::layer::SubscriberExt as _;
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        let span = tracing::info_span!(target: "sidewatch::test", "before");
        // Without a processor no OpenTelemetry span exists for it.
        assert!(!span.context().has_active_span());
        assert!(!slot.is_filled());
    }

    #[test]
    fn a_request_carries_the_resource_the_scope_and_the_spans() {
        let (_guard, captured) = capture();
        drop(
            tracing::info_span!(target: "sidewatch::notify_runner", "notification.deliver", notification.receiver = "hook"),
        );
        let resource = resource_attributes(&[
            ("service.name".into(), "checkout-api".into()),
            ("deployment.environment.name".into(), "e2e".into()),
        ]);
        let body = encode(captured.spans(), &resource);
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let [resource_spans] = request.resource_spans.as_slice() else {
            panic!("one resource: {request:?}")
        };
        let attributes: Vec<(String, String)> = resource_spans
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| {
                let value = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                    Some(any_value::Value::StringValue(s)) => s,
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), value)
            })
            .collect();
        assert_eq!(
            attributes,
            [
                ("service.name".to_string(), "checkout-api".to_string()),
                ("deployment.environment.name".into(), "e2e".into())
            ]
        );
        let [scope_spans] = resource_spans.scope_spans.as_slice() else {
            panic!("one scope: {resource_spans:?}")
        };
        assert_eq!(scope_spans.scope.as_ref().unwrap().name, SCOPE);
        assert_eq!(scope_spans.spans.len(), 1);
        assert_eq!(scope_spans.spans[0].name, "notification.deliver");
        assert_eq!(scope_spans.spans[0].trace_id.len(), 16);
    }
}
