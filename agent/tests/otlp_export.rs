//! OTLP log export end to end: the agent runs in-process, tails a temp file, and sends
//! to an OTLP receiver started by the test on 127.0.0.1:0.
//!
//! The receiver is a real peer, not a mock: a gRPC server built on opentelemetry-proto's
//! generated `LogsService` server stubs (tonic), and an axum handler for OTLP/HTTP
//! `/v1/logs` that gunzips and decodes the protobuf body with the official types. It
//! records every request it accepts, so the tests decode what really went over the wire
//! and check the mapped fields, retries (503 + Retry-After), a collector that is down and
//! comes back, a permanent refusal (400) and a restart of the agent.

mod common;
use common::free_port;

use std::collections::{HashMap, VecDeque};
use std::io::Read as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use prost::Message as _;
use sidewatch::api::http_get;
use sidewatch::config::{Config, LogSourceConfig, Secret, StartAt};
use sidewatch::export::otlp::config::{
    Compression, DEFAULT_QUEUE_DISK, DEFAULT_QUEUE_MEMORY, OtlpConfig, Protocol, Signal, Signals,
};
use sidewatch::topology::{Outcome, run_until};
use tokio_util::sync::CancellationToken;

/// What the receiver got, and what it answers next.
#[derive(Default)]
struct Received {
    requests: Vec<ExportLogsServiceRequest>,
    /// `Content-Encoding` (HTTP) or `grpc-encoding` of each request.
    encodings: Vec<String>,
    /// Header `x-api-key` of each request.
    api_keys: Vec<String>,
    /// Answers to give before the normal 200: (status, Retry-After).
    script: VecDeque<(u16, Option<&'static str>)>,
    /// Answer every request with this status (a permanent refusal).
    always: Option<u16>,
    /// Requests answered with an error.
    refused: usize,
}

type Shared = Arc<Mutex<Received>>;

impl Received {
    /// Each record's `request_id` attribute, in arrival order.
    fn request_ids(&self) -> Vec<i64> {
        let mut ids = Vec::new();
        for request in &self.requests {
            for rl in &request.resource_logs {
                for sl in &rl.scope_logs {
                    for record in &sl.log_records {
                        for kv in &record.attributes {
                            if kv.key == "request_id"
                                && let Some(V::IntValue(i)) =
                                    kv.value.as_ref().and_then(|v| v.value.clone())
                            {
                                ids.push(i);
                            }
                        }
                    }
                }
            }
        }
        ids
    }
}

async fn http_receiver(listener: tokio::net::TcpListener, shared: Shared) {
    use axum::http::{HeaderMap, StatusCode};
    let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
        let shared = shared.clone();
        async move {
            let mut received = shared.lock().unwrap();
            let status = received
                .always
                .or_else(|| received.script.front().map(|s| s.0));
            if let Some(status) = status {
                let retry_after = received.script.pop_front().and_then(|s| s.1);
                received.refused += 1;
                let mut response = axum::http::Response::builder().status(status);
                if let Some(after) = retry_after {
                    response = response.header("retry-after", after);
                }
                return response.body(axum::body::Body::empty()).unwrap();
            }
            assert_eq!(
                headers.get("content-type").unwrap(),
                "application/x-protobuf"
            );
            let encoding = headers
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let bytes = if encoding == "gzip" {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(body.as_ref())
                    .read_to_end(&mut out)
                    .unwrap();
                out
            } else {
                body.to_vec()
            };
            let request = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
            received.requests.push(request);
            received.encodings.push(encoding);
            received.api_keys.push(
                headers
                    .get("x-api-key")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default(),
            );
            let response = ExportLogsServiceResponse::default().encode_to_vec();
            axum::http::Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/x-protobuf")
                .body(axum::body::Body::from(response))
                .unwrap()
        }
    };
    let app = axum::Router::new().route("/v1/logs", axum::routing::post(handler));
    axum::serve(listener, app).await.unwrap();
}

struct GrpcReceiver(Shared);

#[tonic::async_trait]
impl LogsService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut received = self.0.lock().unwrap();
        let encoding = request
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let api_key = request
            .metadata()
            .get("x-api-key")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        if received.script.pop_front().is_some() {
            received.refused += 1;
            return Err(tonic::Status::unavailable("warming up"));
        }
        received.requests.push(request.into_inner());
        received.encodings.push(encoding);
        received.api_keys.push(api_key);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

async fn grpc_receiver(listener: tokio::net::TcpListener, shared: Shared) {
    use tonic::codec::CompressionEncoding;
    tonic::transport::Server::builder()
        .add_service(
            LogsServiceServer::new(GrpcReceiver(shared))
                .accept_compressed(CompressionEncoding::Gzip),
        )
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
        .unwrap();
}

fn otlp_config(endpoint: String, protocol: Protocol) -> OtlpConfig {
    OtlpConfig {
        signal: Signal::Logs,
        endpoint,
        protocol,
        headers: vec![("x-api-key".into(), Secret::new("k3y".into()))],
        compression: Compression::Gzip,
        timeout: Duration::from_secs(5),
        ca_file: None,
        signals: Signals::ALL,
        queue_memory: DEFAULT_QUEUE_MEMORY,
        queue_disk: DEFAULT_QUEUE_DISK,
        batch_max_records: 100,
        batch_timeout: Duration::from_millis(50),
        metrics_interval: Duration::from_secs(60),
        resource: vec![
            ("service.name".into(), "checkout-api".into()),
            ("deployment.environment.name".into(), "test".into()),
        ],
    }
}

fn agent_config(dir: &Path, api_port: u16, otlp: OtlpConfig) -> Config {
    let mut config = Config::defaults();
    config.path = Some(dir.join("sidewatch.yaml"));
    config.data_dir = dir.join("data");
    config.api.listen = format!("127.0.0.1:{api_port}").parse().unwrap();
    let mut source =
        LogSourceConfig::defaults("app", vec![format!("{}/logs/*.log", dir.display())]);
    source.start_at = StartAt::Beginning;
    source.poll_interval = Duration::from_millis(50);
    config.logs = vec![source];
    config.checkpoint_interval = Duration::from_millis(200);
    config.export.otlp = Some(otlp);
    config
}

/// Writes structlog lines with `request_id` from `from` to `to - 1`.
fn write_lines(dir: &Path, from: i64, to: i64) {
    use std::io::Write as _;
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("logs/app.log"))
        .unwrap();
    let mut text = String::new();
    for i in from..to {
        let level = if i % 10 == 0 { "error" } else { "info" };
        text.push_str(&format!(
            "{{\"event\": \"request finished\", \"level\": \"{level}\", \"timestamp\": \"2026-11-23T19:49:{:02}.5Z\", \"request_id\": {i}, \"path\": \"/api/cart\", \"version\": \"1.4.2\", \"trace_id\": \"{:032x}\", \"span_id\": \"{:016x}\"}}\n",
            i % 60,
            i + 1,
            i + 1
        ));
    }
    file.write_all(text.as_bytes()).unwrap();
}

/// Waits until the receiver holds `n` records (or fails after 30 s).
async fn wait_for_records(shared: &Shared, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let have = shared.lock().unwrap().request_ids().len();
        if have >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {have} of {n} records arrived within 30s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of `series` on the agent's `/metrics` (0 when absent), waiting for the API
/// to come up.
async fn metric(api_port: u16, series: &str) -> f64 {
    let url = format!("http://127.0.0.1:{api_port}/metrics");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        match http_get(&url, None).await {
            Ok((200, body)) => break body,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "{url} not answering: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn assert_each_once(shared: &Shared, n: i64) {
    let mut ids = shared.lock().unwrap().request_ids();
    ids.sort_unstable();
    assert_eq!(ids, (0..n).collect::<Vec<_>>(), "every record exactly once");
}

/// An agent tailing `lines` written lines of a fresh directory into an HTTP receiver
/// that records into `shared`: the start of most tests here.
struct HttpRun {
    dir: tempfile::TempDir,
    api_port: u16,
    stop: CancellationToken,
    agent: tokio::task::JoinHandle<anyhow::Result<Outcome>>,
}

async fn start_http(shared: &Shared, lines: i64) -> HttpRun {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/logs", listener.local_addr().unwrap());
    tokio::spawn(http_receiver(listener, shared.clone()));
    write_lines(dir.path(), 0, lines);
    let api_port = free_port();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run_until(
        agent_config(
            dir.path(),
            api_port,
            otlp_config(endpoint, Protocol::HttpProtobuf),
        ),
        stop.clone(),
    ));
    HttpRun {
        dir,
        api_port,
        stop,
        agent,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gzip_every_record_arrives_with_its_fields_mapped() {
    let shared = Shared::default();
    let HttpRun {
        dir,
        api_port,
        stop,
        agent,
    } = start_http(&shared, 250).await;
    wait_for_records(&shared, 250).await;
    assert_each_once(&shared, 250);
    {
        let received = shared.lock().unwrap();
        assert!(received.encodings.iter().all(|e| e == "gzip"));
        assert!(received.api_keys.iter().all(|k| k == "k3y"));
        assert!(
            received.requests.iter().all(|r| r
                .resource_logs
                .iter()
                .map(|rl| rl.scope_logs[0].log_records.len())
                .sum::<usize>()
                <= 100),
            "batch.max_records holds"
        );
        let rl = &received.requests[0].resource_logs[0];
        let resource: HashMap<String, V> = rl
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap().value.unwrap()))
            .collect();
        assert_eq!(
            resource["service.name"],
            V::StringValue("checkout-api".into())
        );
        assert_eq!(resource["service.version"], V::StringValue("1.4.2".into()));
        assert_eq!(
            resource["deployment.environment.name"],
            V::StringValue("test".into())
        );
        assert!(resource.contains_key("host.name"));
        assert_eq!(rl.scope_logs[0].scope.as_ref().unwrap().name, "sidewatch");
        let record = &rl.scope_logs[0].log_records[0];
        let attrs: HashMap<String, V> = record
            .attributes
            .iter()
            .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?.value?)))
            .collect();
        assert_eq!(attrs["request_id"], V::IntValue(0));
        assert_eq!(
            record.body.as_ref().unwrap().value,
            Some(V::StringValue("request finished".into()))
        );
        assert_eq!(
            (record.severity_number, record.severity_text.as_str()),
            (17, "error")
        );
        assert_eq!(record.time_unix_nano, 1_795_463_340_500_000_000);
        assert!(record.observed_time_unix_nano > 1_700_000_000_000_000_000);
        let mut trace_id = [0u8; 16];
        trace_id[15] = 1;
        assert_eq!(record.trace_id, trace_id);
        assert_eq!(record.span_id, [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(attrs["path"], V::StringValue("/api/cart".into()));
        assert_eq!(attrs["log.source"], V::StringValue("app".into()));
        assert_eq!(
            attrs["log.file.path"],
            V::StringValue(format!("{}/logs/app.log", dir.path().display()))
        );
        assert_eq!(attrs["sidewatch.offset"], V::IntValue(0));
        assert!(matches!(&attrs["sidewatch.file_id"], V::StringValue(s) if !s.is_empty()));
    }
    assert_eq!(
        metric(
            api_port,
            "sidewatch_export_sent_records_total{signal=\"logs\"}"
        )
        .await,
        250.0
    );
    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_gzip_every_record_arrives_after_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::default();
    // The first call is answered UNAVAILABLE: retried.
    shared.lock().unwrap().script.push_back((503, None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(grpc_receiver(listener, shared.clone()));
    write_lines(dir.path(), 0, 120);
    let api_port = free_port();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run_until(
        agent_config(dir.path(), api_port, otlp_config(endpoint, Protocol::Grpc)),
        stop.clone(),
    ));
    wait_for_records(&shared, 120).await;
    assert_each_once(&shared, 120);
    {
        let received = shared.lock().unwrap();
        assert_eq!(received.refused, 1);
        assert!(
            received.encodings.iter().all(|e| e == "gzip"),
            "{:?}",
            received.encodings
        );
        assert!(received.api_keys.iter().all(|k| k == "k3y"));
        let record = &received.requests[0].resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.severity_number, 17);
        assert_eq!(record.trace_id.len(), 16);
    }
    assert!(metric(api_port, "sidewatch_export_retries_total{signal=\"logs\"}").await >= 1.0);
    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_503_with_retry_after_then_200_delivers_each_record_once() {
    let shared = Shared::default();
    shared.lock().unwrap().script.push_back((503, Some("1")));
    shared.lock().unwrap().script.push_back((429, Some("1")));
    let started = tokio::time::Instant::now();
    let HttpRun {
        dir: _dir,
        api_port,
        stop,
        agent,
    } = start_http(&shared, 300).await;
    wait_for_records(&shared, 300).await;
    // Two waits of at least the Retry-After second each.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_each_once(&shared, 300);
    assert_eq!(shared.lock().unwrap().refused, 2);
    assert_eq!(
        metric(api_port, "sidewatch_export_retries_total{signal=\"logs\"}").await,
        2.0
    );
    assert_eq!(
        metric(api_port, "sidewatch_export_dropped_total{signal=\"logs\"}").await,
        0.0
    );
    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_down_then_up_receives_everything() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::default();
    // Nothing listens on this port yet: connections are refused.
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}/v1/logs");
    write_lines(dir.path(), 0, 200);
    let api_port = free_port();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run_until(
        agent_config(
            dir.path(),
            api_port,
            otlp_config(endpoint, Protocol::HttpProtobuf),
        ),
        stop.clone(),
    ));
    // The records are read and checkpointed while the collector is down: the queue
    // holds them on disk.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    write_lines(dir.path(), 200, 400);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(metric(api_port, "sidewatch_export_queue_bytes{signal=\"logs\"}").await > 0.0);
    assert!(metric(api_port, "sidewatch_export_retries_total{signal=\"logs\"}").await >= 1.0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(http_receiver(listener, shared.clone()));
    wait_for_records(&shared, 400).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_each_once(&shared, 400);
    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_drops_the_batch_and_counts_it() {
    let shared = Shared::default();
    shared.lock().unwrap().always = Some(400);
    let HttpRun {
        dir: _dir,
        api_port,
        stop,
        agent,
    } = start_http(&shared, 150).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let dropped = metric(api_port, "sidewatch_export_dropped_total{signal=\"logs\"}").await;
        if dropped >= 150.0 {
            assert_eq!(dropped, 150.0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "dropped {dropped}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(api_port, "sidewatch_export_retries_total{signal=\"logs\"}").await,
        0.0,
        "a 400 is not retried"
    );
    assert!(metric(api_port, "sidewatch_export_queue_bytes{signal=\"logs\"}").await == 0.0);
    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_queued_while_the_collector_is_down_survive_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::default();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}/v1/logs");
    write_lines(dir.path(), 0, 200);
    let api_port = free_port();
    let mut config = agent_config(
        dir.path(),
        api_port,
        otlp_config(endpoint, Protocol::HttpProtobuf),
    );
    config.grace_period = Duration::from_secs(2);
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run_until(config.clone(), stop.clone()));
    // Read, queued and checkpointed, but never sent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(api_port, "sidewatch_export_queue_bytes{signal=\"logs\"}").await == 0.0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);

    // The collector is up and the agent starts again: the queue is sent, and the file
    // is not read again (its checkpoint was committed with the queue durable).
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(http_receiver(listener, shared.clone()));
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run_until(config, stop.clone()));
    wait_for_records(&shared, 200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_each_once(&shared, 200);
    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_queue_drops_the_oldest_records_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::default();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}/v1/logs");
    let mut otlp = otlp_config(endpoint, Protocol::HttpProtobuf);
    // 64 KiB segments, at most 256 KiB on disk: a few thousand records.
    otlp.queue_disk = 256 * 1024;
    otlp.queue_memory = 64 * 1024;
    let api_port = free_port();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run_until(
        agent_config(dir.path(), api_port, otlp),
        stop.clone(),
    ));
    let n = 6000;
    write_lines(dir.path(), 0, n);
    let dropped_series = "sidewatch_export_dropped_total{signal=\"logs\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metric(api_port, dropped_series).await == 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "nothing dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the tail finish the file (the count stops moving), then bring the collector up.
    let mut dropped = metric(api_port, dropped_series).await as i64;
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = metric(api_port, dropped_series).await as i64;
        if now == dropped {
            break;
        }
        dropped = now;
    }
    assert!(
        metric(api_port, "sidewatch_export_queue_bytes{signal=\"logs\"}").await <= 256.0 * 1024.0
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(http_receiver(listener, shared.clone()));
    wait_for_records(&shared, (n - dropped) as usize).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // What arrives is exactly the newest records, in order: the oldest were dropped.
    let ids = shared.lock().unwrap().request_ids();
    assert_eq!(ids, (dropped..n).collect::<Vec<_>>());
    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_trusts_the_ca_file() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert_pem = certified.cert.pem();
    let key_pem = certified.signing_key.serialize_pem();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &cert_pem).unwrap();
    let shared = Shared::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let receiver = shared.clone();
    tokio::spawn(async move {
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
        tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(
                LogsServiceServer::new(GrpcReceiver(receiver))
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    write_lines(dir.path(), 0, 50);
    let mut otlp = otlp_config(endpoint, Protocol::Grpc);
    otlp.ca_file = Some(ca_file);
    let api_port = free_port();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run_until(
        agent_config(dir.path(), api_port, otlp),
        stop.clone(),
    ));
    wait_for_records(&shared, 50).await;
    assert_each_once(&shared, 50);
    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
}

/// TLS is verified by default (SPEC): a collector with a self-signed certificate and no
/// `ca_file` is refused at the handshake, over HTTPS and gRPC alike, with an error that
/// says why — and no request reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_collector_without_ca_file_is_refused() {
    use sidewatch::export::otlp::sender::{OtlpClient, SendOutcome};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (_, acceptor) = common::self_signed();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                if acceptor.accept(stream).await.is_ok() {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    for protocol in [Protocol::HttpProtobuf, Protocol::Grpc] {
        let endpoint = match protocol {
            Protocol::HttpProtobuf => format!("https://localhost:{port}/v1/logs"),
            Protocol::Grpc => format!("https://localhost:{port}"),
        };
        let client = OtlpClient::new(&otlp_config(endpoint, protocol)).unwrap();
        match client.send(bytes::Bytes::new()).await {
            SendOutcome::Retry { reason, .. } => {
                let reason = reason.to_lowercase();
                assert!(
                    reason.contains("certificate") || reason.contains("unknownissuer"),
                    "{protocol:?}: the error names the certificate problem: {reason}"
                );
                assert!(
                    !reason.contains("k3y"),
                    "{protocol:?}: no header value in {reason}"
                );
            }
            other => panic!("{protocol:?}: expected a refused handshake, got {other:?}"),
        }
    }
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "no TLS session was established"
    );
}
