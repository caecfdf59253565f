//! Delivers the queued log requests to the collector, in order, over OTLP/HTTP
//! (protobuf) or OTLP/gRPC, with the OTLP specification's retry rules:
//! - HTTP 429, 502, 503, 504 and connection failures are retried, honouring
//!   `Retry-After`; any other status refuses the batch (dropped, counted, logged);
//! - gRPC `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE`,
//!   `DATA_LOSS` (and `RESOURCE_EXHAUSTED` with a `RetryInfo`) are retried, honouring
//!   `RetryInfo`; any other code refuses the batch;
//! - a partial success is logged and its rejected records counted as dropped.
//!
//! Waits between retries follow `notify::webhook::backoff` (exponential with jitter,
//! capped at a minute), or the server's hint when it asks for longer. A retry never
//! skips ahead: the batch at the head of the queue blocks those behind it, so the
//! collector receives records in order; the queue meanwhile grows on disk, and the
//! tail never waits for the collector.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, BufMut as _};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use super::config::{Compression, OtlpConfig, Protocol};
use super::queue::DiskQueue;
use crate::telemetry::{Counter, Telemetry};

/// The most payload one request carries, whatever `batch.max_records` allows: under the
/// 4 MiB that gRPC servers (and the Collector's receivers) accept by default.
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// Accepted; `rejected` records were refused inside a partial success.
    Accepted { rejected: u64, message: String },
    /// Worth retrying, not before `after` when the server said so.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Refused for good: retrying the same bytes cannot help.
    Refused { reason: String },
}

/// The sender's series.
#[derive(Debug, Clone)]
pub struct SenderMetrics {
    /// `sidewatch_export_sent_records_total{signal}`.
    pub sent: Counter,
    /// `sidewatch_export_dropped_total{signal}`: refused by the collector.
    pub dropped: Counter,
    /// `sidewatch_export_retries_total{signal}`: failed attempts that will be retried.
    pub retries: Counter,
}

impl SenderMetrics {
    pub fn new(telemetry: &Telemetry, signal: &str) -> SenderMetrics {
        let labels = [("signal", signal)];
        SenderMetrics {
            sent: telemetry.counter(
                "sidewatch_export_sent_records_total",
                "Records the OTLP collector accepted.",
                &labels,
            ),
            dropped: telemetry.counter(
                "sidewatch_export_dropped_total",
                "Records dropped by the OTLP exporter: disk queue full, or refused by the collector (always also logged).",
                &labels,
            ),
            retries: telemetry.counter(
                "sidewatch_export_retries_total",
                "OTLP requests that failed and will be retried.",
                &labels,
            ),
        }
    }
}

enum Transport {
    Http {
        client: reqwest::Client,
        url: String,
        headers: reqwest::header::HeaderMap,
    },
    Grpc {
        channel: tonic::transport::Channel,
        headers: tonic::metadata::MetadataMap,
        timeout: Duration,
    },
}

/// Sends the log queue's requests to the collector.
pub struct LogSender {
    queue: Arc<DiskQueue>,
    client: OtlpClient,
    max_records: u64,
    batch_timeout: Duration,
    metrics: SenderMetrics,
}

/// One signal's connection to the collector: sends an encoded export request and
/// classifies the answer by OTLP's rules. Used by the log sender and the metrics
/// exporter alike.
pub struct OtlpClient {
    transport: Transport,
    gzip: bool,
    grpc_path: &'static str,
    /// The compressor and output buffer of the last gzipped HTTP request, for the
    /// next one (as the log sender reuses its request buffer: `DiskQueue::peek_into`).
    gzip_spare: std::sync::Mutex<Gzip>,
}

/// gzip (RFC 1952) with one deflate state and one output buffer kept from request to
/// request: `GzEncoder` allocates ~300 KiB of compressor state per request, and
/// glibc kept what each tokio worker freed in its own arena. (Not `compress_vec`: it
/// zero-fills the whole spare capacity of the vector at every call.)
#[derive(Default)]
struct Gzip {
    deflate: Option<flate2::Compress>,
    scratch: Vec<u8>,
    out: Vec<u8>,
}

/// What miniz_oxide's compressor state takes (dictionary, hash chains, LZ code
/// buffer), as heaptrack showed per `GzEncoder`.
const DEFLATE_STATE_BYTES: u64 = 300 * 1024;

impl Gzip {
    /// The memory this keeps between requests.
    fn retained_bytes(&self) -> u64 {
        let state = if self.deflate.is_some() {
            DEFLATE_STATE_BYTES
        } else {
            0
        };
        state + (self.scratch.capacity() + self.out.capacity()) as u64
    }

    /// `body` gzipped into `self.out` (cleared first).
    fn compress(&mut self, body: &[u8]) -> Result<(), flate2::CompressError> {
        const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];
        let deflate = self
            .deflate
            .get_or_insert_with(|| flate2::Compress::new(flate2::Compression::fast(), false));
        deflate.reset();
        self.scratch.resize(64 * 1024, 0);
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(&HEADER);
        let mut input = body;
        loop {
            let (read, written) = (deflate.total_in(), deflate.total_out());
            let status =
                deflate.compress(input, &mut self.scratch, flate2::FlushCompress::Finish)?;
            out.extend_from_slice(&self.scratch[..(deflate.total_out() - written) as usize]);
            input = &input[(deflate.total_in() - read) as usize..];
            if status == flate2::Status::StreamEnd {
                break;
            }
        }
        let crc = crc32fast::hash(body);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        Ok(())
    }
}

/// Errors building the sender; header values never appear in them.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("invalid OTLP endpoint {url}: {reason}")]
    Endpoint { url: String, reason: String },
    #[error("invalid OTLP header `{0}` (its value is not shown)")]
    Header(String),
    #[error("cannot read the OTLP ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot build the OTLP HTTP client: {0}")]
    Client(String),
}

impl LogSender {
    pub fn new(
        config: &OtlpConfig,
        queue: Arc<DiskQueue>,
        metrics: SenderMetrics,
    ) -> Result<LogSender, SenderError> {
        Ok(LogSender {
            queue,
            client: OtlpClient::new(config)?,
            max_records: config.batch_max_records as u64,
            batch_timeout: config.batch_timeout,
            metrics,
        })
    }

    /// Sends until `stop` is cancelled; then keeps sending what is queued until the
    /// queue is empty or a request fails (the rest stays on disk for the next run).
    /// The caller bounds that drain with the shutdown grace period.
    pub async fn run(self, stop: CancellationToken) {
        self.send_until(stop).await;
        // The acks so far reach `read.pos` before the agent exits: a clean stop sends
        // nothing twice.
        let queue = self.queue.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || queue.save_read()).await {
            tracing::warn!(component = "otlp_logs", "{e}");
        }
    }

    async fn send_until(&self, stop: CancellationToken) {
        let mut attempt: u32 = 0;
        // The request being retried: it goes again as it is, without a new copy, unless
        // the disk limit dropped entries from under it meanwhile.
        let mut held: Option<(Vec<super::queue::Entry>, bytes::Bytes)> = None;
        // The request buffer, back from the request before (`DiskQueue::peek_into`).
        let mut spare = bytes::BytesMut::new();
        loop {
            if let Some((entries, body)) = held.take()
                && entries.first().is_some_and(|e| self.queue.is_head(e.at))
            {
                if !self
                    .attempt(entries, body, &mut attempt, &mut held, &mut spare, &stop)
                    .await
                {
                    return;
                }
                continue;
            }
            let queue = self.queue.clone();
            let max_records = self.max_records;
            let buffer = std::mem::take(&mut spare);
            let peeked = match tokio::task::spawn_blocking(move || {
                let peeked = queue.peek_into(buffer, max_records, MAX_REQUEST_BYTES)?;
                if peeked.is_empty() {
                    // Idle: the acks so far reach `read.pos` now, not in a second.
                    queue.save_read()?;
                }
                Ok::<_, super::queue::QueueError>(peeked)
            })
            .await
            {
                Ok(Ok(peeked)) => peeked,
                Ok(Err(e)) => {
                    tracing::error!(component = "otlp_logs", "{e}; retrying");
                    if sleep_or_stop(Duration::from_secs(1), &stop).await {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            };
            if peeked.is_empty() {
                spare = peeked.body;
                if stop.is_cancelled() {
                    tracing::debug!("otlp log export drained");
                    return;
                }
                tokio::select! {
                    () = self.queue.appended() => {}
                    () = stop.cancelled() => continue,
                }
                // As the Collector's batch processor does: a batch goes once it holds
                // `batch.max_records`, or `batch.timeout` after its first record.
                let deadline = tokio::time::Instant::now() + self.batch_timeout;
                while self.queue.pending_records() < self.max_records {
                    tokio::select! {
                        () = self.queue.appended() => {}
                        () = tokio::time::sleep_until(deadline) => break,
                        () = stop.cancelled() => break,
                    }
                }
                continue;
            }
            let body = peeked.body.freeze();
            if !self
                .attempt(
                    peeked.entries,
                    body,
                    &mut attempt,
                    &mut held,
                    &mut spare,
                    &stop,
                )
                .await
            {
                return;
            }
        }
    }

    /// Sends one request and acks its entries once the collector has answered for
    /// good, giving its buffer back to `spare`; a request to retry is left in `held`.
    /// False when the sender must stop.
    async fn attempt(
        &self,
        entries: Vec<super::queue::Entry>,
        body: bytes::Bytes,
        attempt: &mut u32,
        held: &mut Option<(Vec<super::queue::Entry>, bytes::Bytes)>,
        spare: &mut bytes::BytesMut,
        stop: &CancellationToken,
    ) -> bool {
        let records: u64 = entries.iter().map(|e| e.records as u64).sum();
        let outcome = self.send(body.clone()).await;
        match outcome {
            SendOutcome::Accepted { rejected, message } => {
                let rejected = rejected.min(records);
                self.metrics.sent.add(records - rejected);
                if rejected > 0 || !message.is_empty() {
                    self.metrics.dropped.add(rejected);
                    tracing::warn!(
                        component = "otlp_logs",
                        rejected,
                        message,
                        "the collector accepted the request only in part"
                    );
                }
                *attempt = 0;
            }
            SendOutcome::Refused { reason } => {
                self.metrics.dropped.add(records);
                tracing::error!(
                    component = "otlp_logs",
                    records,
                    "the collector refused a request, dropped it: {reason}"
                );
                *attempt = 0;
            }
            SendOutcome::Retry { after, reason } => {
                self.metrics.retries.inc();
                if stop.is_cancelled() {
                    tracing::warn!(
                        component = "otlp_logs",
                        pending_bytes = self.queue.pending_bytes(),
                        "cannot reach the collector while shutting down ({reason}); the queued records stay on disk for the next start"
                    );
                    return false;
                }
                let backoff = crate::notify::webhook::backoff(*attempt, jitter());
                let wait = after.map_or(backoff, |a| a.max(backoff));
                *attempt = attempt.saturating_add(1);
                tracing::warn!(
                    component = "otlp_logs",
                    attempt = *attempt,
                    wait = ?wait,
                    records,
                    "cannot send logs to the collector: {reason}; retrying"
                );
                sleep_or_stop(wait, stop).await;
                *held = Some((entries, body));
                return true;
            }
        }
        // The HTTP client has let go of the body by now; if it still holds a copy, the
        // next request gets a new buffer.
        if let Ok(buffer) = body.try_into_mut() {
            *spare = buffer;
        }
        self.queue
            .set_compression_memory(self.client.retained_bytes());
        let queue = self.queue.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || queue.ack(&entries)).await {
            // The batch may be sent again after a restart: at-least-once.
            tracing::error!(component = "otlp_logs", "{e}");
        }
        true
    }

    /// One request with `body` (an encoded `ExportLogsServiceRequest`).
    pub async fn send(&self, body: bytes::Bytes) -> SendOutcome {
        self.client.send(body).await
    }
}

impl OtlpClient {
    pub fn new(config: &OtlpConfig) -> Result<OtlpClient, SenderError> {
        let url = config.endpoint.clone();
        let https = url.starts_with("https://");
        let transport = match config.protocol {
            Protocol::HttpProtobuf => {
                let mut headers = reqwest::header::HeaderMap::new();
                for (name, value) in &config.headers {
                    let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| SenderError::Header(name.clone()))?;
                    let mut value = reqwest::header::HeaderValue::from_str(value.expose())
                        .map_err(|_| SenderError::Header(name.to_string()))?;
                    value.set_sensitive(true);
                    headers.insert(name, value);
                }
                let client = crate::notify::webhook::http_client(
                    config.ca_file.as_deref(),
                    config.timeout,
                    https,
                )
                .map_err(|e| SenderError::Client(e.to_string()))?;
                Transport::Http {
                    client,
                    url,
                    headers,
                }
            }
            Protocol::Grpc => {
                let mut headers = tonic::metadata::MetadataMap::new();
                for (name, value) in &config.headers {
                    let key = tonic::metadata::AsciiMetadataKey::from_bytes(name.as_bytes())
                        .map_err(|_| SenderError::Header(name.clone()))?;
                    let value = value
                        .expose()
                        .parse::<tonic::metadata::AsciiMetadataValue>()
                        .map_err(|_| SenderError::Header(name.clone()))?;
                    headers.insert(key, value);
                }
                let endpoint = |reason: String| SenderError::Endpoint {
                    url: url.clone(),
                    reason,
                };
                let mut builder = tonic::transport::Endpoint::from_shared(url.clone())
                    .map_err(|e| endpoint(e.to_string()))?
                    .connect_timeout(config.timeout)
                    .timeout(config.timeout);
                if https {
                    let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
                    if let Some(path) = &config.ca_file {
                        let pem = fs_err::read(path).map_err(|e| SenderError::CaFile {
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        })?;
                        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
                    }
                    builder = builder
                        .tls_config(tls)
                        .map_err(|e| endpoint(e.to_string()))?;
                }
                Transport::Grpc {
                    // Connects on first use and reconnects after a failure, so a
                    // collector that is down at start is no error.
                    channel: builder.connect_lazy(),
                    headers,
                    timeout: config.timeout,
                }
            }
        };
        Ok(OtlpClient {
            transport,
            gzip: config.compression == Compression::Gzip,
            grpc_path: config.signal.grpc_path(),
            gzip_spare: std::sync::Mutex::new(Gzip::default()),
        })
    }

    /// The memory kept for gzip between requests (0 without compression, or over
    /// gRPC, where tonic compresses each message in a buffer of its own).
    pub fn retained_bytes(&self) -> u64 {
        self.gzip_spare
            .lock()
            .map(|gzip| gzip.retained_bytes())
            .unwrap_or(0)
    }

    /// One request with `body` (an encoded export request of the client's signal).
    /// A `Bytes`, so that retries share one buffer and nothing is copied to send it.
    pub async fn send(&self, body: bytes::Bytes) -> SendOutcome {
        let gzip = self.gzip;
        match &self.transport {
            Transport::Http {
                client,
                url,
                headers,
            } => {
                if !gzip {
                    return send_http(client, url, headers, body, false).await;
                }
                let mut gzip = self
                    .gzip_spare
                    .lock()
                    .map(|mut spare| std::mem::take(&mut *spare))
                    .unwrap_or_default();
                // Deflating megabytes is CPU work: on the blocking pool, not on a runtime
                // worker that the health probes and the API's clients share (under a CPU
                // limit one request took seconds there).
                let (mut gzip, result, body) = crate::off_worker(move || {
                    let result = gzip.compress(&body);
                    (gzip, result, body)
                })
                .await;
                if let Err(e) = result {
                    tracing::warn!("cannot gzip an OTLP request ({e}); sending it uncompressed");
                    return send_http(client, url, headers, body, false).await;
                }
                drop(body);
                let payload = bytes::Bytes::from(std::mem::take(&mut gzip.out));
                let outcome = send_http(client, url, headers, payload.clone(), true).await;
                if let Ok(buffer) = payload.try_into_mut() {
                    gzip.out = buffer.into();
                }
                if let Ok(mut spare) = self.gzip_spare.lock() {
                    *spare = gzip;
                }
                outcome
            }
            // tonic compresses the message itself (`grpc-encoding: gzip`).
            Transport::Grpc {
                channel,
                headers,
                timeout,
            } => {
                send_grpc(
                    channel.clone(),
                    headers,
                    body,
                    gzip,
                    *timeout,
                    self.grpc_path,
                )
                .await
            }
        }
    }
}

/// Sleeps for `wait`; `true` when `stop` was cancelled first.
async fn sleep_or_stop(wait: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = stop.cancelled() => true,
    }
}

async fn send_http(
    client: &reqwest::Client,
    url: &str,
    headers: &reqwest::header::HeaderMap,
    payload: bytes::Bytes,
    gzip: bool,
) -> SendOutcome {
    let mut request = client
        .post(url)
        .headers(headers.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf");
    if gzip {
        request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
    }
    let response = match request.body(payload).send().await {
        Ok(response) => response,
        Err(e) => {
            return SendOutcome::Retry {
                after: None,
                reason: crate::notify::webhook::error_text(&e),
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::notify::webhook::retry_after(v, crate::rule_runner::unix_nanos()));
    let body = response.bytes().await.unwrap_or_default();
    match status {
        200..=299 => {
            let response = ExportLogsServiceResponse::decode(body.as_ref()).unwrap_or_default();
            let partial = response.partial_success.unwrap_or_default();
            SendOutcome::Accepted {
                rejected: partial.rejected_log_records.max(0) as u64,
                message: partial.error_message,
            }
        }
        429 | 502 | 503 | 504 => SendOutcome::Retry {
            after: retry_after,
            reason: format!("{url} answered {status}"),
        },
        _ => SendOutcome::Refused {
            reason: format!("{url} answered {status}: {}", status_message(&body)),
        },
    }
}

/// The message of a `google.rpc.Status` body (what OTLP/HTTP servers send with an
/// error), else the start of the body as text.
fn status_message(body: &[u8]) -> String {
    if let Ok(status) = RpcStatus::decode(body)
        && !status.message.is_empty()
    {
        return status.message;
    }
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

async fn send_grpc(
    channel: tonic::transport::Channel,
    headers: &tonic::metadata::MetadataMap,
    body: bytes::Bytes,
    gzip: bool,
    timeout: Duration,
    path: &'static str,
) -> SendOutcome {
    use tonic::codec::CompressionEncoding;
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzip {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc = grpc.accept_compressed(CompressionEncoding::Gzip);
    if let Err(e) = grpc.ready().await {
        return SendOutcome::Retry {
            after: None,
            reason: format!("cannot connect: {}", crate::notify::webhook::error_text(&e)),
        };
    }
    let mut request = tonic::Request::new(body);
    *request.metadata_mut() = headers.clone();
    request.set_timeout(timeout);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    match grpc.unary(request, path, RawCodec).await {
        Ok(response) => {
            let partial = response.into_inner().partial_success.unwrap_or_default();
            SendOutcome::Accepted {
                rejected: partial.rejected_log_records.max(0) as u64,
                message: partial.error_message,
            }
        }
        Err(status) => classify_grpc(&status),
    }
}

/// The OTLP/gRPC retry rules for a failed call.
fn classify_grpc(status: &tonic::Status) -> SendOutcome {
    use tonic::Code;
    let retry_info = retry_delay(status.details());
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => SendOutcome::Retry {
            after: retry_info,
            reason,
        },
        // Retryable only when the server says when (the OTLP spec).
        Code::ResourceExhausted if retry_info.is_some() => SendOutcome::Retry {
            after: retry_info,
            reason,
        },
        _ => SendOutcome::Refused { reason },
    }
}

/// `google.rpc.RetryInfo.retry_delay` from a status's details.
fn retry_delay(details: &[u8]) -> Option<Duration> {
    let status = RpcStatus::decode(details).ok()?;
    let info = status
        .details
        .iter()
        .find(|any| any.type_url.ends_with("/google.rpc.RetryInfo"))?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    Some(Duration::new(
        delay.seconds.max(0) as u64,
        delay.nanos.clamp(0, 999_999_999) as u32,
    ))
}

/// `google.rpc.Status`, `google.protobuf.Any`, `google.rpc.RetryInfo` and
/// `google.protobuf.Duration`: the few fields needed, declared here rather than
/// pulling in `tonic-types` for them.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// Sends already-encoded request bytes as they are (no decode and re-encode) and
/// decodes the response with prost.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
/// Decodes every signal's export response as `ExportLogsServiceResponse`: the three
/// responses are the same message on the wire (field 1, a partial success holding the
/// rejected count as field 1 and the message as field 2).
struct ResponseDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = ExportLogsServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for ResponseDecoder {
    type Item = ExportLogsServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<ExportLogsServiceResponse>, tonic::Status> {
        let len = src.remaining();
        let bytes = src.copy_to_bytes(len);
        ExportLogsServiceResponse::decode(bytes)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("cannot decode the response: {e}")))
    }
}

/// Jitter for the backoff, from the system's generator.
fn jitter() -> f64 {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_with_retry_info(code: tonic::Code, seconds: i64) -> tonic::Status {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration { seconds, nanos: 0 }),
        };
        let details = RpcStatus {
            code: code as i32,
            message: "busy".into(),
            details: vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: info.encode_to_vec(),
            }],
        };
        tonic::Status::with_details(code, "busy", details.encode_to_vec().into())
    }

    #[test]
    fn grpc_codes_follow_the_otlp_retry_rules() {
        use tonic::Code;
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert!(
                matches!(
                    classify_grpc(&tonic::Status::new(code, "x")),
                    SendOutcome::Retry { after: None, .. }
                ),
                "{code:?}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::Internal,
        ] {
            assert!(
                matches!(
                    classify_grpc(&tonic::Status::new(code, "x")),
                    SendOutcome::Refused { .. }
                ),
                "{code:?}"
            );
        }
        assert_eq!(
            classify_grpc(&status_with_retry_info(Code::Unavailable, 7)),
            SendOutcome::Retry {
                after: Some(Duration::from_secs(7)),
                reason: "gRPC Unavailable: busy".into()
            }
        );
        assert!(matches!(
            classify_grpc(&status_with_retry_info(Code::ResourceExhausted, 2)),
            SendOutcome::Retry { after: Some(d), .. } if d == Duration::from_secs(2)
        ));
    }

    #[test]
    fn gzip_output_is_standard_and_the_state_is_reused() {
        use std::io::Read as _;
        let mut gzip = Gzip::default();
        // Compressible text, incompressible bytes, and nothing at all.
        let text = b"{\"event\":\"request finished\",\"status\":200}".repeat(5000);
        let mut noise = vec![0u8; 300_000];
        let mut x: u32 = 1;
        for b in &mut noise {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        for body in [&text[..], &noise[..], &[][..], &text[..]] {
            gzip.compress(body).expect("compresses");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gzip.out[..])
                .read_to_end(&mut back)
                .expect("valid gzip");
            assert_eq!(back, body);
        }
        assert!(gzip.out.len() < text.len() / 10, "text compresses");
        // What it keeps (and the queue counts against `queue.memory`): the state, the
        // scratch and the largest output so far (the incompressible 300 KB).
        assert!(gzip.retained_bytes() >= DEFLATE_STATE_BYTES + 64 * 1024 + noise.len() as u64);
    }

    #[test]
    fn an_error_body_is_read_as_a_status_or_as_text() {
        let status = RpcStatus {
            code: 3,
            message: "bad field".into(),
            details: vec![],
        };
        assert_eq!(status_message(&status.encode_to_vec()), "bad field");
        assert_eq!(status_message(b"plain words"), "plain words");
    }
}
