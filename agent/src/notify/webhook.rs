//! Webhook delivery: POSTs a notification as Alertmanager's webhook JSON (version "4")
//! or a Slack body, signed with HMAC-SHA256 when a secret is set, and classifies the
//! outcome into delivered / retry / failed for the outbox.
//!
//! # Request
//! `Content-Type: application/json`, `User-Agent: sidewatch/<version>`,
//! `X-Sidewatch-Notification-Id: <id>` (the idempotency key: a repeat after a crash
//! carries the same one) and, with `hmac_secret`, `X-Sidewatch-Signature:
//! sha256=<lowercase hex HMAC-SHA256(secret, body)>` over the exact bytes sent. The
//! whole exchange (connect, TLS, request, response) is bounded by `timeout`.
//!
//! # Client
//! reqwest with rustls (the platform verifier plus the certificates of `ca_file`), as
//! the health probes use it, but with connection reuse and without following
//! redirects: a redirect would carry a signed body to another place, so a 3xx is a
//! failure that names itself. No proxy from the environment, as Alertmanager's default.
//!
//! # Outcome
//! 2xx delivered. 429 and 5xx retry (honouring `Retry-After`, seconds or an HTTP date),
//! as 408 (the receiver's own timeout). Any other status fails for good: the receiver
//! refuses this body and would refuse it again. Timeouts, connection errors and TLS
//! errors retry — an untrusted certificate too, since the server or `ca_file` may be
//! fixed — with a reason that names the certificate problem. Reasons never hold the
//! URL: webhook URLs often carry their token (Slack's is in the path).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use super::Notification;
use super::config::{WebhookConfig, WebhookFormat};
pub use super::payload::Delivery;
use super::payload::{alertmanager_json, slack_json};

/// The header carrying the notification's idempotency key.
pub const ID_HEADER: &str = "X-Sidewatch-Notification-Id";
/// The header carrying `sha256=<hex HMAC>` of the body.
pub const SIGNATURE_HEADER: &str = "X-Sidewatch-Signature";

/// The first retry waits up to this long; each further one up to twice as long…
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// …up to this.
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// At most this much of a refusing response's body is quoted in a reason.
const MAX_QUOTED_BODY: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook url is not a valid http(s) URL: {0}")]
    Url(String),
    #[error("cannot read ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
}

/// One webhook receiver and its HTTP client.
pub struct WebhookSender {
    client: reqwest::Client,
    cfg: WebhookConfig,
    external_url: String,
    /// `scheme://host:port`, the only part of the URL fit for logs.
    target: String,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL nor the secret.
        f.debug_struct("WebhookSender")
            .field("target", &self.target)
            .field("format", &self.cfg.format)
            .finish()
    }
}

impl WebhookSender {
    /// Builds the client: TLS verified with the platform's roots plus `ca_file`'s.
    pub fn new(cfg: &WebhookConfig, external_url: &str) -> Result<Self, WebhookError> {
        let url = reqwest::Url::parse(&cfg.url)
            .map_err(|e| WebhookError::Url(e.to_string().to_lowercase()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(WebhookError::Url(format!(
                "scheme `{}` is not http or https",
                url.scheme()
            )));
        }
        let client = http_client(cfg.ca_file.as_deref(), cfg.timeout, url.scheme() == "https")?;
        Ok(WebhookSender {
            client,
            cfg: cfg.clone(),
            external_url: external_url.to_string(),
            target: redacted(&url),
        })
    }

    /// `scheme://host:port` of the webhook, for log lines (the path may hold a token).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The exact body `send` posts.
    pub fn body(&self, n: &Notification) -> Vec<u8> {
        let payload = match self.cfg.format {
            WebhookFormat::Alertmanager => {
                alertmanager_json(n, &self.external_url, self.cfg.max_alerts)
            }
            WebhookFormat::Slack => slack_json(n, &self.external_url),
        };
        // A `Value` always serializes.
        serde_json::to_vec(&payload).unwrap_or_default()
    }

    /// One attempt to deliver `n`; never panics, never takes much longer than `timeout`.
    pub async fn send(&self, n: &Notification) -> Delivery {
        let body = self.body(n);
        let mut request = self
            .client
            .post(&self.cfg.url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match HeaderValue::from_str(&n.id) {
            Ok(id) => request = request.header(ID_HEADER, id),
            Err(_) => {
                return Delivery::Failed {
                    reason: format!("notification id {:?} is not a valid header value", n.id),
                };
            }
        }
        if let Some(secret) = &self.cfg.hmac_secret {
            request = request.header(
                SIGNATURE_HEADER,
                signature(secret.expose().as_bytes(), &body),
            );
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(e) => return self.request_error(e),
        };
        let status = response.status();
        if status.is_success() {
            return Delivery::Delivered;
        }
        let after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, unix_now()));
        // The receiver's explanation helps whoever reads the log; it is read within
        // the same timeout and cut short.
        let explanation = match response.text().await {
            Ok(text) => quote_body(&text),
            Err(_) => String::new(),
        };
        let reason = format!("webhook answered {}{explanation}", status_text(status));
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            Delivery::Retry { after, reason }
        } else if status.is_redirection() {
            Delivery::Failed {
                reason: format!("{reason} (redirects are not followed: set the final url)"),
            }
        } else {
            Delivery::Failed { reason }
        }
    }

    fn request_error(&self, err: reqwest::Error) -> Delivery {
        let err = err.without_url();
        if err.is_builder() {
            return Delivery::Failed {
                reason: format!("cannot build the request: {}", error_text(&err)),
            };
        }
        let reason = if err.is_timeout() {
            format!(
                "timed out after {}",
                humantime::format_duration(self.cfg.timeout)
            )
        } else if let Some(tls) = certificate_problem(&err) {
            format!("tls: {tls} (hint: ca_file adds a trust root for a private CA)")
        } else {
            crate::sources::health_probe::describe_request_error(&err)
        };
        Delivery::Retry {
            after: None,
            reason,
        }
    }
}

/// A reqwest client for notifications: TLS verified with the platform's roots plus the
/// certificates of `ca_file`, `timeout` on the whole exchange, no redirects, no proxy.
/// Without system roots (a bare image) a plain-HTTP client still builds; an HTTPS one
/// then needs `ca_file`.
pub(crate) fn http_client(
    ca_file: Option<&Path>,
    timeout: Duration,
    https: bool,
) -> Result<reqwest::Client, WebhookError> {
    let extra_roots = match ca_file {
        Some(path) => load_ca_file(path)?,
        None => Vec::new(),
    };
    let builder = || {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sidewatch/", env!("CARGO_PKG_VERSION")))
    };
    match builder().tls_certs_merge(extra_roots).build() {
        Ok(client) => Ok(client),
        // The only build error without extra roots is "no CA certificates were loaded
        // from the system": plain HTTP does not need them.
        Err(_) if ca_file.is_none() && !https => builder()
            .tls_certs_only(Vec::new())
            .build()
            .map_err(|e| WebhookError::Client(error_text(&e))),
        Err(e) if ca_file.is_none() => Err(WebhookError::Client(format!(
            "{} (install the system CA certificates, or set ca_file)",
            error_text(&e)
        ))),
        Err(e) => Err(WebhookError::Client(error_text(&e))),
    }
}

/// The certificates of a PEM file; an error when it holds none.
fn load_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, WebhookError> {
    let fail = |reason: String| WebhookError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = fs_err::read(path).map_err(|e| fail(io_reason(&e)))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| fail(format!("not a PEM certificate bundle: {}", error_text(&e))))?;
    if certs.is_empty() {
        return Err(fail(
            "no PEM certificate in it (`-----BEGIN CERTIFICATE-----`)".into(),
        ));
    }
    Ok(certs)
}

/// An IO error's kind in words, without the path fs-err adds (the caller names it).
fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => err
            .get_ref()
            .and_then(|inner| std::error::Error::source(inner))
            .map_or_else(|| err.kind().to_string(), |e| e.to_string()),
    }
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`, the `X-Sidewatch-Signature` value.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, body);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256=");
    for byte in tag.as_ref() {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// How long to wait before retry number `attempt` (0 for the first retry): exponential
/// from 1 s, doubling up to 1 min (Alertmanager's own cap: a receiver back after an
/// outage hears within a minute), with "equal jitter" — uniform over [bound/2, bound)
/// by `rand` in [0, 1), so that many senders retrying at once spread out but none
/// retries in a tight loop.
pub fn backoff(attempt: u32, rand: f64) -> Duration {
    let bound = BACKOFF_BASE
        .checked_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_CAP)
        .min(BACKOFF_CAP);
    let rand = if rand.is_nan() {
        0.0
    } else {
        rand.clamp(0.0, 1.0)
    };
    bound.mul_f64(0.5 + 0.5 * rand)
}

/// `Retry-After` as a wait: delay-seconds, or an HTTP date (IMF-fixdate, `Sun, 06 Nov
/// 1994 08:49:37 GMT`) measured from `now_unix_nanos`; a date in the past is no wait.
pub fn retry_after(value: &str, now_unix_nanos: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // IMF-fixdate is the Common Log Format's fields in another order.
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = fields.as_slice() else {
        return None;
    };
    let clf = format!("{day:0>2}/{month}/{year}:{time} +0000");
    let at = crate::parse::time::parse_clf(clf.as_bytes())?;
    Some(Duration::from_nanos(
        u64::try_from(at.saturating_sub(now_unix_nanos)).unwrap_or(0),
    ))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// `503 service unavailable`.
fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {}", status.as_u16(), reason.to_lowercase()),
        None => status.as_u16().to_string(),
    }
}

/// `: <the body's first 200 characters on one line>`, or nothing for an empty body.
fn quote_body(text: &str) -> String {
    let one_line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_QUOTED_BODY + 1)
        .collect();
    match one_line.chars().count() {
        0 => String::new(),
        n if n > MAX_QUOTED_BODY => {
            let cut: String = one_line.chars().take(MAX_QUOTED_BODY).collect();
            format!(": {cut}…")
        }
        _ => format!(": {one_line}"),
    }
}

/// An error and its sources, `: `-joined, each said once. An `io::Error` wrapping
/// another error shows it (its `source()` would skip it).
pub(crate) fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        // hyper-util's wrapper says nothing its source does not.
        if !text.starts_with("client error (") && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    // A later, more specific part can repeat an earlier, general one: keep the
    // specific one.
    let mut kept: Vec<&String> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if !parts[i + 1..]
            .iter()
            .any(|later| later.contains(part.as_str()))
        {
            kept.push(part);
        }
    }
    kept.iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(": ")
}

/// The certificate problem in an error's chain, as rustls words it (`invalid peer
/// certificate: UnknownIssuer`), if there is one.
pub(crate) fn certificate_problem(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::InvalidCertRevocationList(_) => Some(tls.to_string()),
                _ => Some(format!("handshake failed: {tls}")),
            };
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// `scheme://host:port` only: the path and query of a webhook URL may be its secret.
fn redacted(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_to_a_cap_with_equal_jitter() {
        // The bound: rand just under 1.
        let bound = |attempt| backoff(attempt, 0.999_999);
        let near = |d: Duration, secs: f64| (d.as_secs_f64() - secs).abs() < 0.01 * secs;
        for (attempt, secs) in [
            (0, 1.0),
            (1, 2.0),
            (2, 4.0),
            (5, 32.0),
            (6, 60.0),
            (40, 60.0),
            (u32::MAX, 60.0),
        ] {
            assert!(
                near(bound(attempt), secs),
                "attempt {attempt}: {:?}",
                bound(attempt)
            );
        }
        // Equal jitter: from half the bound to the bound.
        assert_eq!(backoff(5, 0.0), Duration::from_secs(16));
        assert_eq!(backoff(5, 0.5), Duration::from_secs(24));
        // Out-of-range randomness stays within bounds.
        assert_eq!(backoff(3, f64::NAN), Duration::from_secs(4));
        assert_eq!(backoff(3, 7.0), Duration::from_secs(8));
        assert_eq!(backoff(3, -1.0), Duration::from_secs(4));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        let date = 784_111_777_000_000_000i64;
        let cases: [(&str, i64, Option<Duration>); 6] = [
            ("7", 0, Some(Duration::from_secs(7))),
            (" 120 ", 0, Some(Duration::from_secs(120))),
            (
                "Sun, 06 Nov 1994 08:49:37 GMT",
                date - 30_000_000_000,
                Some(Duration::from_secs(30)),
            ),
            (
                "Sun, 06 Nov 1994 08:49:37 GMT",
                date + 5,
                Some(Duration::ZERO),
            ),
            ("soon", 0, None),
            ("-3", 0, None),
        ];
        for (value, now, want) in cases {
            assert_eq!(retry_after(value, now), want, "{value}");
        }
    }

    #[test]
    fn logs_see_scheme_host_and_port_only() {
        let url =
            reqwest::Url::parse("https://user:pw@hooks.slack.com/services/T0/B0/SECRET?token=x")
                .unwrap();
        assert_eq!(redacted(&url), "https://hooks.slack.com");
        let url = reqwest::Url::parse("http://127.0.0.1:8080/hook?k=v").unwrap();
        assert_eq!(redacted(&url), "http://127.0.0.1:8080");
    }

    #[test]
    fn quoted_bodies_are_one_short_line() {
        assert_eq!(quote_body(""), "");
        assert_eq!(quote_body("  bad\n request "), ": bad request");
        let long = "x".repeat(500);
        let quoted = quote_body(&long);
        assert_eq!(quoted.chars().count(), 2 + MAX_QUOTED_BODY + 1);
        assert!(quoted.ends_with('…'));
    }
}
