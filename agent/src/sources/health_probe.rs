//! The health probe source: GETs a `probes:` entry's URL every `interval` and judges the
//! response the way Prometheus' blackbox exporter does, producing one `ProbeSample` per
//! probe (`probe_success`, `probe_duration_seconds`, `probe_http_status_code`, and the
//! `version_from` value that feeds deployment detection).
//!
//! # Judging
//! A probe succeeds iff the response arrived (body included) within `timeout`, its
//! status is in `expect_status` (any 2xx when empty), every `expect_body` JSONPath finds
//! a value equal to the expected one (JSON values compared structurally, numbers
//! numerically: `1` equals `1.0`), and, when `max_latency` is set, the duration is at most
//! `max_latency`. The first condition that fails names itself in `error`, checked in
//! that order (status, body, latency). `version` is read whenever the body is JSON and
//! has the path, even when the probe failed on another condition: a new version that
//! answers 503 is still a new version. At most `MAX_BODY_BYTES` of the body are read.
//!
//! # HTTP client: reqwest
//! `reqwest` 0.13 with its `rustls` feature (rustls + aws-lc-rs + rustls-platform-
//! verifier; no OpenSSL), chosen over hand-assembling hyper-util + hyper-rustls because
//! it is the maintained, standard client that the other HTTPS users of the agent
//! (webhooks, peers' baselines, OTLP over HTTP) will need anyway, and gives redirects,
//! timeouts, HTTP/2 over ALPN and extra trust roots in one place. Its build cost is
//! aws-lc-sys (a C build, about a minute on 2 cores), which opentelemetry-otlp's TLS
//! pulls in as well. The crypto provider is reqwest's own aws-lc-rs default unless the
//! process installed another, so it never panics with "no crypto provider".
//!
//! Client settings, for a probe that measures what a fresh client sees:
//! - TLS verified by the platform verifier (on Linux: the system roots, honouring
//!   `SSL_CERT_FILE` / `SSL_CERT_DIR`) plus the certificates of `ca_file`. On a
//!   machine with no system roots at all (a bare container image), an `http://` probe
//!   still starts; an `https://` one without `ca_file` is an error at startup.
//! - No proxy: `HTTP_PROXY` & co. are ignored, as Prometheus' `proxy_from_environment`
//!   defaults to false — a sidecar probing its neighbour must not go through a proxy.
//! - No connection reuse (`pool_max_idle_per_host(0)`): each probe connects anew, as
//!   blackbox does, so a probe measures connect + TLS and sees a restarted app at once.
//! - Up to 10 redirects followed.
//!
//! # Running
//! `run` probes at once, then every `interval` measured from the start of the previous
//! probe (every `boost` while the boost watch holds `Some`, whichever is shorter), and
//! never overlaps probes. A full output channel drops the sample (`try_send`): it is
//! counted in `dropped_samples()` (and the `Counter` given to `with_drop_counter`) and
//! logged, so a stalled consumer never stalls probing. A closed channel stops the loop.
//!
//! Errors and log lines name the probe, never its URL (it may carry credentials).

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde_json::Value as Json;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::config::ProbeConfig;
use crate::event::ProbeSample;
use crate::jsonpath::value_text;
use crate::telemetry::Counter;

/// At most this much of a response body is read; a larger body fails body conditions
/// ("body over 1MiB") and yields no version.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// `run` never probes more often than this, whatever `interval` or `boost` say.
const MIN_PERIOD: Duration = Duration::from_millis(10);
/// Values quoted in an `error` are cut to this many characters.
const MAX_QUOTED_CHARS: usize = 80;

/// One configured health probe and its HTTP client.
pub struct HealthProbe {
    client: reqwest::Client,
    config: ProbeConfig,
    name: Arc<str>,
    /// Whether the body has to be parsed as JSON at all.
    needs_json: bool,
    dropped: Arc<AtomicU64>,
    drop_counter: Option<Counter>,
}

impl std::fmt::Debug for HealthProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may carry credentials.
        f.debug_struct("HealthProbe")
            .field("name", &self.name)
            .finish()
    }
}

impl HealthProbe {
    /// Builds the HTTP client: TLS verified by default with the platform/webpki roots plus `ca_file`
    /// when set (a bad ca_file is an error naming the file); timeouts; no proxy from env surprises.
    pub fn new(config: ProbeConfig) -> anyhow::Result<HealthProbe> {
        let mut extra_roots = Vec::new();
        if let Some(path) = &config.ca_file {
            let pem = fs_err::read(path)
                .with_context(|| format!("probe `{}`: cannot read ca_file", config.name))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "probe `{}`: ca_file {}: not a PEM certificate bundle: {}",
                    config.name,
                    path.display(),
                    chain_text(&e)
                )
            })?;
            if certs.is_empty() {
                anyhow::bail!(
                    "probe `{}`: ca_file {} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                    config.name,
                    path.display()
                );
            }
            extra_roots = certs;
        }
        let builder = || {
            reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .connect_timeout(config.timeout)
                .redirect(reqwest::redirect::Policy::limited(10))
                .user_agent(concat!(
                    "sidewatch/",
                    env!("CARGO_PKG_VERSION"),
                    " (health probe)"
                ))
        };
        let client = match builder().tls_certs_merge(extra_roots).build() {
            Ok(client) => client,
            Err(e) => {
                let why = chain_text(&e);
                match &config.ca_file {
                    Some(path) => anyhow::bail!(
                        "probe `{}`: cannot use ca_file {}: {why}",
                        config.name,
                        path.display()
                    ),
                    // The only build error without extra roots is "no CA certificates
                    // were loaded from the system" (a bare image). A plain-HTTP probe
                    // does not need them: it runs, and a redirect to https fails.
                    None if config.url.starts_with("http://") => {
                        tracing::debug!(probe = %config.name, error = %why,
                            "no platform TLS roots; the http probe runs without");
                        builder().tls_certs_only(Vec::new()).build().map_err(|e| {
                            anyhow::anyhow!(
                                "probe `{}`: cannot build the HTTP client: {}",
                                config.name,
                                chain_text(&e)
                            )
                        })?
                    }
                    None => anyhow::bail!(
                        "probe `{}`: cannot build the HTTPS client: {why} \
                         (install the system CA certificates, or set ca_file)",
                        config.name
                    ),
                }
            }
        };
        Ok(HealthProbe {
            client,
            name: Arc::from(config.name.as_str()),
            needs_json: !config.expect_body.is_empty() || config.version_from.is_some(),
            config,
            dropped: Arc::new(AtomicU64::new(0)),
            drop_counter: None,
        })
    }

    /// Also counts dropped samples in `counter` (a registered `/metrics` series).
    pub fn with_drop_counter(mut self, counter: Counter) -> HealthProbe {
        self.drop_counter = Some(counter);
        self
    }

    /// How many samples `run` dropped because the output channel was full.
    pub fn dropped_samples(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    pub fn config(&self) -> &ProbeConfig {
        &self.config
    }

    /// One probe: GET url, measure, judge, read version_from. Never panics, never takes longer than `timeout` (+ a few ms).
    pub async fn probe_once(&self, now_unix_nano: i64) -> ProbeSample {
        let start = Instant::now();
        let deadline = start + self.config.timeout;
        let mut sample = ProbeSample {
            probe: self.name.clone(),
            time_unix_nano: now_unix_nano,
            success: false,
            duration_seconds: 0.0,
            status_code: None,
            version: None,
            error: None,
        };
        let fetched = self.fetch(deadline, &mut sample).await;
        let elapsed = start.elapsed();
        sample.duration_seconds = elapsed.as_secs_f64();
        let body = match fetched {
            Ok(body) => body,
            Err(error) => {
                sample.error = Some(error);
                return sample;
            }
        };
        let status = sample.status_code.unwrap_or(0);

        // The body as JSON, when something needs it.
        let doc = match body {
            _ if !self.needs_json => Doc::NotNeeded,
            Body::TooLarge => Doc::TooLarge,
            Body::Whole(bytes) => match serde_json::from_slice(&bytes) {
                Ok(doc) => Doc::Json(doc),
                Err(_) => Doc::NotJson,
            },
        };
        if let (Some(path), Doc::Json(doc)) = (&self.config.version_from, &doc) {
            sample.version = path.find(doc).map(value_text);
        }

        sample.error = self
            .status_error(status)
            .or_else(|| self.body_error(&doc))
            .or_else(|| self.latency_error(elapsed));
        sample.success = sample.error.is_none();
        sample
    }

    /// Sends the request and reads the body by `deadline`. Sets `status_code` as soon as
    /// a response arrives.
    async fn fetch(&self, deadline: Instant, sample: &mut ProbeSample) -> Result<Body, String> {
        let timed_out = || format!("timed out after {}", fmt_duration(self.config.timeout));
        let mut response =
            match timeout_at(deadline, self.client.get(&self.config.url).send()).await {
                Err(_) => return Err(timed_out()),
                Ok(Err(e)) if e.is_timeout() => return Err(timed_out()),
                Ok(Err(e)) => return Err(describe_request_error(&e)),
                Ok(Ok(response)) => response,
            };
        sample.status_code = Some(response.status().as_u16());
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY_BYTES as u64)
        {
            return Ok(Body::TooLarge);
        }
        let mut body = Vec::new();
        let mut read = 0usize;
        loop {
            match timeout_at(deadline, response.chunk()).await {
                Err(_) => return Err(format!("{} reading the body", timed_out())),
                Ok(Err(e)) if e.is_timeout() => {
                    return Err(format!("{} reading the body", timed_out()));
                }
                Ok(Err(e)) => {
                    return Err(format!("reading the body: {}", describe_request_error(&e)));
                }
                Ok(Ok(None)) => return Ok(Body::Whole(body)),
                Ok(Ok(Some(chunk))) => {
                    read += chunk.len();
                    if read > MAX_BODY_BYTES {
                        return Ok(Body::TooLarge);
                    }
                    if self.needs_json {
                        body.extend_from_slice(&chunk);
                    }
                }
            }
        }
    }

    fn status_error(&self, status: u16) -> Option<String> {
        let expect = &self.config.expect_status;
        if expect.is_empty() {
            (!(200..300).contains(&status)).then(|| format!("status {status} not 2xx"))
        } else if expect.contains(&status) {
            None
        } else {
            let list: Vec<String> = expect.iter().map(u16::to_string).collect();
            Some(format!("status {status} not in [{}]", list.join(", ")))
        }
    }

    fn body_error(&self, doc: &Doc) -> Option<String> {
        if self.config.expect_body.is_empty() {
            return None;
        }
        let doc = match doc {
            Doc::Json(doc) => doc,
            Doc::TooLarge => return Some(format!("body over {}MiB", MAX_BODY_BYTES >> 20)),
            Doc::NotJson | Doc::NotNeeded => return Some("body is not JSON".to_string()),
        };
        for (path, expected) in &self.config.expect_body {
            match path.find(doc) {
                Some(found) if json_equal(found, expected) => {}
                Some(found) => {
                    return Some(format!(
                        "{path} is {}, expected {}",
                        quote(found),
                        quote(expected)
                    ));
                }
                None => return Some(format!("{path} is missing, expected {}", quote(expected))),
            }
        }
        None
    }

    fn latency_error(&self, elapsed: Duration) -> Option<String> {
        let max = self.config.max_latency?;
        (elapsed > max).then(|| {
            format!(
                "latency {}ms over max_latency {}",
                elapsed.as_millis(),
                fmt_duration(max)
            )
        })
    }

    /// Probes every `interval` (or every `boost` while the watch holds Some(d) — deployment verification
    /// asks for more evidence), sends each sample on `out`, until `shutdown`. A failing or hanging endpoint
    /// never blocks anything else: each probe is bounded by `timeout`, and a full `out` channel drops the
    /// sample with a counted log line rather than waiting forever (`try_send`; the count is
    /// `dropped_samples()`).
    pub async fn run(
        self,
        out: mpsc::Sender<ProbeSample>,
        mut boost: watch::Receiver<Option<Duration>>,
        shutdown: CancellationToken,
    ) {
        let mut boost_open = true;
        loop {
            let started = Instant::now();
            let sample = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                sample = self.probe_once(unix_nano_now()) => sample,
            };
            if !sample.success {
                tracing::debug!(probe = %self.name, error = sample.error.as_deref().unwrap_or(""),
                    "probe failed");
            }
            match out.try_send(sample) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Some(counter) = &self.drop_counter {
                        counter.inc();
                    }
                    tracing::warn!(probe = %self.name, dropped_total = total,
                        "probe sample dropped: the output channel is full");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::debug!(probe = %self.name, "probe output closed; probe stops");
                    return;
                }
            }
            // Wait for the next probe; a boost change re-plans the wait from `started`.
            loop {
                let period = match *boost.borrow_and_update() {
                    Some(boosted) => boosted.min(self.config.interval),
                    None => self.config.interval,
                }
                .max(MIN_PERIOD);
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    changed = boost.changed(), if boost_open => {
                        // A dropped sender keeps the last value.
                        boost_open = changed.is_ok();
                    }
                    _ = sleep_until(started + period) => break,
                }
            }
        }
    }
}

/// What was read of a body.
enum Body {
    /// The whole body (empty when no JSON is needed: read, then discarded).
    Whole(Vec<u8>),
    /// Longer than `MAX_BODY_BYTES`; reading stopped there.
    TooLarge,
}

/// The body as JSON, when something needs it.
enum Doc {
    NotNeeded,
    TooLarge,
    NotJson,
    Json(Json),
}

fn unix_nano_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// JSON equality where numbers compare by value (`1` == `1.0`), recursively.
fn json_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64().is_some() && x.as_f64() == y.as_f64(),
            },
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_equal(a, b)))
        }
        _ => a == b,
    }
}

/// A value as JSON text for an error message, cut short.
fn quote(value: &Json) -> String {
    let text = value.to_string();
    if text.chars().count() <= MAX_QUOTED_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    cut.push('…');
    cut
}

/// `2s`, `500ms`, `1.5s`.
fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        let secs = format!("{:.3}", d.as_secs_f64());
        format!("{}s", secs.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// A short, lowercase phrase for a failed request, without the URL: `connection
/// refused`, `dns error: …`, `invalid peer certificate: UnknownIssuer`.
pub(crate) fn describe_request_error(err: &reqwest::Error) -> String {
    let mut phrases: Vec<String> = Vec::new();
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => return "connection reset".into(),
                std::io::ErrorKind::ConnectionAborted => return "connection aborted".into(),
                std::io::ErrorKind::TimedOut => return "connect timed out".into(),
                _ => {}
            }
        }
        let text = e.to_string();
        // hyper-util's wrappers say nothing the inner errors do not.
        if !text.starts_with("client error (") && !phrases.iter().any(|p| p.contains(&text)) {
            phrases.push(text);
        }
        source = e.source();
    }
    if err.is_redirect() {
        return "too many redirects".into();
    }
    if phrases.is_empty() {
        // reqwest's own text without the URL.
        return err_without_url(err);
    }
    let text = phrases.join(": ");
    if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        format!("tls: {text}")
    } else {
        text
    }
}

fn err_without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(&format!(" for url ({url})"), "");
        text = text.replace(url.as_str(), "…");
    }
    text
}

/// An error and its sources, `: `-joined, without repeating a source's text.
fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = match err.downcast_ref::<reqwest::Error>() {
        Some(e) => err_without_url(e),
        None => err.to_string(),
    };
    let mut source = err.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        let j = |s: &str| serde_json::from_str::<Json>(s).unwrap();
        assert!(json_equal(&j("1"), &j("1.0")));
        assert!(json_equal(&j("[1, {\"a\": 2.0}]"), &j("[1.0, {\"a\": 2}]")));
        assert!(!json_equal(&j("\"1\""), &j("1")));
        assert!(!json_equal(&j("{\"a\": 1}"), &j("{\"a\": 1, \"b\": 2}")));
        assert!(json_equal(&j("\"ok\""), &j("\"ok\"")));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2s");
        assert_eq!(fmt_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn long_values_are_cut() {
        let long = Json::String("x".repeat(500));
        assert!(quote(&long).chars().count() <= MAX_QUOTED_CHARS + 1);
    }
}
