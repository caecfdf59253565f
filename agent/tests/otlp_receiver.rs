//! The OTLP receiver end to end: the agent runs in-process with `otlp_receiver` on free
//! ports; the test sends as an app's SDK would (a tonic client from opentelemetry-proto's
//! stubs, and reqwest for OTLP/HTTP), and a collector started by the test (tonic server
//! stubs for traces, metrics and logs) records what the agent relays.
//!
//! Checked: relayed requests carry the live deployment's `service.version` (and the
//! config's `service.name` over the SDK's `unknown_service` default, an environment);
//! server spans become `source="otlp"` records in the file output with their status,
//! duration, ids and `deployment`; a signal that is not exported is accepted and
//! counted as dropped; gzip HTTP bodies and OTLP/JSON (hex ids) work; bad bodies get
//! 400, other media types 415, oversized bodies 413; a full relay queue answers gRPC UNAVAILABLE and HTTP 503
//! with Retry-After, and everything accepted arrives once the collector is back.

mod common;
use common::free_port;

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use sidewatch::config::{Config, OtlpReceiverConfig};
use sidewatch::export::otlp::config::{
    Compression, DEFAULT_QUEUE_DISK, DEFAULT_QUEUE_MEMORY, OtlpConfig, Protocol, Signal, Signals,
};
use sidewatch::topology::{Outcome, run_until};
use tokio_util::sync::CancellationToken;

/// What the collector got; `down` makes it answer UNAVAILABLE.
#[derive(Default)]
struct Collected {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
}

#[derive(Clone, Default)]
struct Collector {
    got: Arc<Mutex<Collected>>,
    down: Arc<AtomicBool>,
}

impl Collector {
    fn check(&self) -> Result<(), tonic::Status> {
        if self.down.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("collector down"));
        }
        Ok(())
    }

    fn spans(&self) -> Vec<(Vec<(String, String)>, Span)> {
        let got = self.got.lock().unwrap();
        let mut out = Vec::new();
        for request in &got.traces {
            for rs in &request.resource_spans {
                let resource = strings(&rs.resource.as_ref().unwrap().attributes);
                for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                    out.push((resource.clone(), span.clone()));
                }
            }
        }
        out
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.check()?;
        self.got.lock().unwrap().traces.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.check()?;
        self.got.lock().unwrap().metrics.push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.check()?;
        self.got.lock().unwrap().logs.push(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Starts the collector on 127.0.0.1:0; returns its gRPC URL.
async fn start_collector(collector: &Collector) -> String {
    use tonic::codec::CompressionEncoding::Gzip;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()).accept_compressed(Gzip))
        .add_service(MetricsServiceServer::new(collector.clone()).accept_compressed(Gzip))
        .add_service(LogsServiceServer::new(collector.clone()).accept_compressed(Gzip))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(async move { server.await.unwrap() });
    url
}

fn otlp(signal: Signal, endpoint: &str, queue_memory: u64) -> OtlpConfig {
    OtlpConfig {
        signal,
        endpoint: endpoint.to_string(),
        protocol: Protocol::Grpc,
        headers: Vec::new(),
        compression: Compression::Gzip,
        timeout: Duration::from_secs(5),
        ca_file: None,
        signals: Signals::ALL,
        queue_memory,
        queue_disk: DEFAULT_QUEUE_DISK,
        batch_max_records: 100,
        batch_timeout: Duration::from_millis(50),
        metrics_interval: Duration::from_secs(3600),
        resource: vec![("service.name".into(), "checkout-api".into())],
    }
}

struct Agent {
    dir: tempfile::TempDir,
    api: String,
    grpc: String,
    http: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<Outcome>>,
}

/// An agent with no log files, the receiver on free ports, traces and logs relayed to
/// `endpoint` (metrics not exported), records written to `records.jsonl`.
async fn start_agent(endpoint: &str, queue_memory: u64, max_request_bytes: usize) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.path = Some(dir.path().join("sidewatch.yaml"));
    config.data_dir = dir.path().join("data");
    let api_port = free_port();
    config.api.listen = format!("127.0.0.1:{api_port}").parse().unwrap();
    config.logs = Vec::new();
    config.service.name = "checkout-api".into();
    config.service.environment = "test".into();
    config.checkpoint_interval = Duration::from_millis(100);
    config.export.file = Some(dir.path().join("records.jsonl"));
    config.export.otlp_traces = Some(otlp(Signal::Traces, endpoint, queue_memory));
    // Logs relayed; the agent's own log export is off in `otlp` only for metrics.
    config.export.otlp = Some(otlp(Signal::Logs, endpoint, queue_memory));
    let (grpc_port, http_port) = (free_port(), free_port());
    config.otlp_receiver = Some(OtlpReceiverConfig {
        grpc: Some(format!("127.0.0.1:{grpc_port}").parse().unwrap()),
        http: Some(format!("127.0.0.1:{http_port}").parse().unwrap()),
        max_request_bytes,
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_until(config, stop.clone()));
    let agent = Agent {
        dir,
        api: format!("http://127.0.0.1:{api_port}"),
        grpc: format!("http://127.0.0.1:{grpc_port}"),
        http: format!("http://127.0.0.1:{http_port}"),
        stop,
        task,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("{}/readyz", agent.api))
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        if agent.task.is_finished() {
            panic!(
                "the agent stopped before it was ready: {:?}",
                agent.task.await
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the agent to be ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent
}

impl Agent {
    async fn announce(&self, version: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/deployments", self.api))
            .json(&serde_json::json!({ "version": version }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
    }

    /// A series' value, 0 when it is not exported (yet).
    async fn metric(&self, series: &str) -> f64 {
        self.series(series).await.unwrap_or(0.0)
    }

    async fn series(&self, series: &str) -> Option<f64> {
        let body = reqwest::get(format!("{}/metrics", self.api))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    }

    fn records(&self) -> Vec<serde_json::Value> {
        read_records(&self.dir.path().join("records.jsonl"))
    }

    async fn stop(self) {
        self.stop.cancel();
        let outcome = tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the agent stops within its grace period")
            .unwrap()
            .unwrap();
        assert_eq!(outcome, Outcome::Clean);
    }
}

fn read_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

async fn wait_for<F, Fut>(mut check: F, what: &str)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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

fn strings(attrs: &[KeyValue]) -> Vec<(String, String)> {
    attrs
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(v) => Some((kv.key.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

fn get<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// What a Python app's SDK sends: the SDK's default `service.name`, no version.
fn sdk_resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", s("unknown_service:python")),
            kv("telemetry.sdk.language", s("python")),
        ],
        ..Default::default()
    })
}

/// A request of `n` server spans (`GET /checkout`, every third one a 500) with a child
/// span each; trace ids start at `first`.
fn traces(first: u8, n: u8) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut spans = Vec::new();
    for i in 0..n {
        let status = if i % 3 == 0 { 500 } else { 200 };
        let trace_id = vec![first + i; 16];
        spans.push(Span {
            trace_id: trace_id.clone(),
            span_id: vec![first + i; 8],
            name: "GET /checkout".into(),
            kind: 2,
            start_time_unix_nano: now - 25_000_000,
            end_time_unix_nano: now,
            attributes: vec![
                kv("http.route", s("/checkout")),
                kv("http.method", s("GET")),
                kv("http.status_code", any_value::Value::IntValue(status)),
            ],
            status: Some(Status {
                code: if status == 500 { 2 } else { 0 },
                ..Default::default()
            }),
            ..Default::default()
        });
        spans.push(Span {
            trace_id,
            span_id: vec![0xc0 + i; 8],
            parent_span_id: vec![first + i; 8],
            name: "db".into(),
            kind: 3,
            start_time_unix_nano: now - 20_000_000,
            end_time_unix_nano: now - 10_000_000,
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: sdk_resource(),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn post(url: &str, content_type: &str, gzipped: bool, body: Vec<u8>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type);
    if gzipped {
        request = request.header("content-encoding", "gzip");
    }
    request.body(body).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_relayed_with_the_deployment_and_become_records() {
    let collector = Collector::default();
    let endpoint = start_collector(&collector).await;
    let agent = start_agent(&endpoint, DEFAULT_QUEUE_MEMORY, 4 << 20).await;
    agent.announce("1.4.2").await;

    // gRPC, gzip, as the SDK's OTLP/gRPC exporter sends.
    let mut client = TraceServiceClient::connect(agent.grpc.clone())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    client.export(traces(1, 3)).await.unwrap();
    // HTTP/protobuf, gzip.
    let response = post(
        &format!("{}/v1/traces", agent.http),
        "application/x-protobuf",
        true,
        gzip(&traces(0x40, 3).encode_to_vec()),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let body = response.bytes().await.unwrap();
    assert_eq!(
        ExportTraceServiceResponse::decode(body.as_ref()).unwrap(),
        ExportTraceServiceResponse::default(),
        "success with an empty partial_success"
    );
    // Logs are relayed, metrics are not exported: accepted and dropped.
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: sdk_resource(),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(s("hello")),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let response = post(
        &format!("{}/v1/logs", agent.http),
        "application/x-protobuf",
        false,
        logs.encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: sdk_resource(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "requests".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint::default(); 2],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let response = post(
        &format!("{}/v1/metrics", agent.http),
        "application/x-protobuf",
        false,
        metrics.encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 200);

    wait_for(
        || async { collector.spans().len() == 12 },
        "12 spans at the collector",
    )
    .await;
    for (resource, span) in collector.spans() {
        assert_eq!(get(&resource, "service.version"), Some("1.4.2"), "{span:?}");
        assert_eq!(get(&resource, "service.name"), Some("checkout-api"));
        assert_eq!(get(&resource, "deployment.environment.name"), Some("test"));
        assert_eq!(get(&resource, "telemetry.sdk.language"), Some("python"));
    }
    // The relayed log request, and the span records themselves: the agent's own log
    // export sends every pipeline record, those of `source="otlp"` included.
    let log_bodies = || -> Vec<(Vec<(String, String)>, String)> {
        let got = collector.got.lock().unwrap();
        let mut out = Vec::new();
        for rl in got.logs.iter().flat_map(|r| &r.resource_logs) {
            let resource = strings(&rl.resource.as_ref().unwrap().attributes);
            for record in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                if let Some(any_value::Value::StringValue(body)) =
                    record.body.as_ref().and_then(|b| b.value.as_ref())
                {
                    out.push((resource.clone(), body.clone()));
                }
            }
        }
        out
    };
    wait_for(
        || async { log_bodies().iter().any(|(_, b)| b == "hello") },
        "the relayed log record",
    )
    .await;
    for (resource, body) in log_bodies() {
        if body == "hello" {
            assert_eq!(get(&resource, "service.version"), Some("1.4.2"));
            assert_eq!(get(&resource, "telemetry.sdk.language"), Some("python"));
        }
    }
    assert!(
        collector.got.lock().unwrap().metrics.is_empty(),
        "metrics export is off"
    );

    // The server spans, not their children, are records of the `otlp` stream.
    wait_for(
        || async { agent.records().len() >= 6 },
        "6 span records in the file output",
    )
    .await;
    let records = agent.records();
    assert_eq!(records.len(), 6, "{records:#?}");
    // The spans went to the collector as traces: their records are not exported again
    // as OTLP log records.
    assert!(
        !log_bodies().iter().any(|(_, b)| b == "GET /checkout"),
        "span records were exported as logs too"
    );
    let errors: Vec<_> = records
        .iter()
        .filter(|r| r["attributes"]["status"] == 500)
        .collect();
    assert_eq!(errors.len(), 2, "{records:#?}");
    for record in &records {
        assert_eq!(record["source"], "otlp");
        assert_eq!(record["body"], "GET /checkout");
        assert_eq!(record["deployment"], "1.4.2");
        let attrs = &record["attributes"];
        assert_eq!(attrs["http.route"], "/checkout");
        assert_eq!(attrs["http.request.method"], "GET");
        assert_eq!(attrs["duration_ms"], 25.0);
        assert_eq!(attrs["span.kind"], "server");
        assert_eq!(attrs["service.name"], "checkout-api");
        let error = attrs["status"] == 500;
        assert_eq!(attrs["span.status"], if error { "error" } else { "unset" });
        assert_eq!(
            record["severity_text"],
            if error { "error" } else { "info" }
        );
        let trace_id = record["trace_id"].as_str().unwrap();
        assert_eq!(trace_id.len(), 32);
        assert_eq!(&trace_id[..2], &record["span_id"].as_str().unwrap()[..2]);
    }

    assert_eq!(
        agent
            .metric("sidewatch_otlp_receiver_received_total{signal=\"traces\"}")
            .await,
        12.0
    );
    assert_eq!(
        agent
            .metric("sidewatch_otlp_receiver_received_total{signal=\"metrics\"}")
            .await,
        2.0
    );
    assert_eq!(
        agent
            .metric("sidewatch_otlp_receiver_dropped_total{signal=\"metrics\"}")
            .await,
        2.0
    );
    assert_eq!(
        agent
            .metric("sidewatch_otlp_receiver_refused_total{signal=\"traces\"}")
            .await,
        0.0
    );

    // OTLP/JSON (hex ids, int64 as strings), answered in JSON.
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-app"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"POST /json","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000002000000","attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}}]}]}]}]}"#;
    let response = post(
        &format!("{}/v1/traces", agent.http),
        "application/json",
        false,
        json.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), "{}");
    wait_for(
        || async { collector.spans().len() == 13 },
        "the JSON span at the collector",
    )
    .await;
    let (resource, span) = collector
        .spans()
        .into_iter()
        .find(|(_, span)| span.name == "POST /json")
        .unwrap();
    assert_eq!(
        span.trace_id,
        [
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
            0xc6, 0x0c
        ]
    );
    assert_eq!(get(&resource, "service.name"), Some("json-app"));
    assert_eq!(get(&resource, "service.version"), Some("1.4.2"));
    wait_for(
        || async {
            agent.records().iter().any(|r| {
                r["trace_id"] == "5b8efff798038103d269b633813fc60c"
                    && r["attributes"]["status"] == 503
                    && r["attributes"]["duration_ms"] == 2.0
            })
        },
        "the JSON span's record",
    )
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_requests_get_the_otlp_status_codes() {
    let collector = Collector::default();
    let endpoint = start_collector(&collector).await;
    let agent = start_agent(&endpoint, DEFAULT_QUEUE_MEMORY, 64 * 1024).await;
    let url = format!("{}/v1/traces", agent.http);
    let protobuf = "application/x-protobuf";
    let bad = post(&url, protobuf, false, b"\x0a\xff\xff\xff\x0f".to_vec()).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["content-type"], protobuf);
    assert_eq!(
        post(&url, protobuf, true, b"not gzip".to_vec())
            .await
            .status(),
        400
    );
    assert_eq!(
        post(&url, "text/plain", false, b"{}".to_vec())
            .await
            .status(),
        415
    );
    let bad_json = post(
        &url,
        "application/json",
        false,
        b"{\"resourceSpans\":7}".to_vec(),
    )
    .await;
    assert_eq!(bad_json.status(), 400);
    assert_eq!(bad_json.headers()["content-type"], "application/json");
    assert_eq!(
        post(&url, protobuf, false, vec![0; 100 * 1024])
            .await
            .status(),
        413
    );
    // Small on the wire, large once decompressed.
    assert_eq!(
        post(&url, protobuf, true, gzip(&vec![0; 100 * 1024]))
            .await
            .status(),
        413
    );
    // tonic's own limit: OUT_OF_RANGE (RESOURCE_EXHAUSTED when compressed).
    let mut client = TraceServiceClient::connect(agent.grpc.clone())
        .await
        .unwrap();
    let mut big = traces(1, 1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(100 * 1024);
    let too_big = client.export(big).await.unwrap_err();
    assert!(
        matches!(
            too_big.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{too_big:?}"
    );
    assert_eq!(
        agent
            .metric("sidewatch_otlp_receiver_received_total{signal=\"traces\"}")
            .await,
        0.0
    );
    assert!(collector.spans().is_empty());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_relay_queue_pushes_back_on_the_sdk() {
    let collector = Collector::default();
    collector.down.store(true, Ordering::SeqCst);
    let endpoint = start_collector(&collector).await;
    // Room for about one request of 3 spans.
    let one = traces(1, 3).encode_to_vec().len() as u64;
    let agent = start_agent(&endpoint, one + 200, 4 << 20).await;
    let mut client = TraceServiceClient::connect(agent.grpc.clone())
        .await
        .unwrap();
    client.export(traces(1, 3)).await.unwrap();
    let refused = client.export(traces(10, 3)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let response = post(
        &format!("{}/v1/traces", agent.http),
        "application/x-protobuf",
        false,
        traces(20, 3).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        agent
            .metric("sidewatch_otlp_receiver_refused_total{signal=\"traces\"}")
            .await,
        12.0
    );
    // Refused requests are not records either: the SDK sends them again.
    wait_for(|| async { agent.records().len() == 3 }, "3 span records").await;

    // The collector comes back: the queued request arrives (retried with backoff), and
    // the SDK's retry is taken.
    collector.down.store(false, Ordering::SeqCst);
    wait_for(
        || async { collector.spans().len() == 6 },
        "the queued request at the collector",
    )
    .await;
    // The relay frees the request's room once the collector's answer is in, a moment
    // after the collector has recorded the spans.
    wait_for(
        || async {
            agent
                .series("sidewatch_otlp_receiver_queue_bytes{signal=\"traces\"}")
                .await
                == Some(0.0)
        },
        "the relay queue to empty",
    )
    .await;
    client.export(traces(10, 3)).await.unwrap();
    wait_for(
        || async { collector.spans().len() == 12 },
        "the retried request at the collector",
    )
    .await;
    assert!(
        agent
            .metric("sidewatch_export_retries_total{signal=\"traces\"}")
            .await
            >= 1.0
    );
    agent.stop().await;
}
