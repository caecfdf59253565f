//! Notification delivery against real peers on 127.0.0.1: webhooks are posted to a tiny
//! hand-written HTTP/1.1 server in the test (plain, or behind tokio-rustls with an
//! rcgen certificate) that records every request and answers from a script; mail goes
//! to a tiny scripted SMTP server the same way. They are real network peers speaking
//! the real protocols, not mocks of the code under test. Clocks are real (the sockets
//! are), with generous bounds.

mod common;
use common::self_signed;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use sidewatch::config::Secret;
use sidewatch::notify::config::{EmailConfig, SmtpTls, WebhookConfig, WebhookFormat};
use sidewatch::notify::email::EmailSender;
use sidewatch::notify::payload::{Delivery, alertmanager_json};
use sidewatch::notify::webhook::WebhookSender;
use sidewatch::notify::{Notification, NotifyAlert};
use sidewatch::rules::labels::Labels;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

const T0: i64 = 1_795_463_364_000_000_000; // 2026-11-23T19:49:24Z
const EXTERNAL_URL: &str = "http://sidewatch.test:9777";

fn notification() -> Notification {
    let alert = |path: &str, ends_at: Option<i64>| NotifyAlert {
        labels: Labels::from_pairs([
            ("alertname", "HighErrorRatio"),
            ("service", "checkout-api"),
            ("path", path),
        ]),
        annotations: vec![("summary".into(), format!("errors on {path}"))],
        starts_at: T0,
        ends_at,
        generator_url: "http://127.0.0.1:9777/api/v1/alerts".into(),
    };
    Notification {
        id: "0193a1b2c3d4-7".into(),
        receiver: "pager".into(),
        group_key: r#"{}:{alertname="HighErrorRatio"}"#.into(),
        group_labels: Labels::from_pairs([("alertname", "HighErrorRatio")]),
        alerts: vec![alert("/cart", None), alert("/pay", Some(T0 + 1))],
        created: T0 + 60_000_000_000,
    }
}

// ---------------------------------------------------------------------------------
// The HTTP peer

/// What the server answers, one entry per request (the last one repeats).
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
    delay: Duration,
}

fn reply(status: u16) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: "",
        delay: Duration::ZERO,
    }
}

/// One request as the server read it; header names lowercased.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Log = Arc<Mutex<Vec<Request>>>;

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Request> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, log: Log, reply: Reply) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    log.lock().unwrap().push(request);
    tokio::time::sleep(reply.delay).await;
    let mut response = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        response.push_str(&format!("{k}: {v}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(reply.body);
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A server answering requests with `script` in turn, over TLS when `tls` is set.
async fn serve(script: Vec<Reply>, tls: Option<TlsAcceptor>) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let server_log = log.clone();
    tokio::spawn(async move {
        let mut turn = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let reply = script[turn.min(script.len() - 1)].clone();
            turn += 1;
            let log = server_log.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => answer(stream, log, reply).await,
                    // A client that rejects the certificate ends the handshake.
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer(stream, log, reply).await;
                        }
                    }
                }
            });
        }
    });
    (addr, log)
}

fn webhook_config(url: String) -> WebhookConfig {
    WebhookConfig {
        url,
        format: WebhookFormat::Alertmanager,
        hmac_secret: None,
        ca_file: None,
        timeout: Duration::from_secs(5),
        max_alerts: 0,
        send_resolved: true,
    }
}

async fn send(cfg: &WebhookConfig) -> Delivery {
    WebhookSender::new(cfg, EXTERNAL_URL)
        .unwrap()
        .send(&notification())
        .await
}

fn retry_reason(delivery: &Delivery) -> &str {
    match delivery {
        Delivery::Retry { reason, .. } => reason,
        other => panic!("expected a retry, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// Webhooks

#[tokio::test]
async fn delivered_on_200_with_headers_and_a_signature_of_the_exact_body() {
    let (addr, log) = serve(vec![reply(200)], None).await;
    let mut cfg = webhook_config(format!("http://{addr}/hook?token=abc"));
    cfg.hmac_secret = Some(Secret::new("s3cret".into()));
    assert_eq!(send(&cfg).await, Delivery::Delivered);

    let requests = log.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/hook?token=abc");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("user-agent"),
        Some(concat!("sidewatch/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(
        request.header("x-sidewatch-notification-id"),
        Some("0193a1b2c3d4-7")
    );
    // The receiver's check: HMAC-SHA256 of the bytes it got, with the shared secret.
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"s3cret");
    let tag = hmac::sign(&key, &request.body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        request.header("x-sidewatch-signature"),
        Some(format!("sha256={hex}").as_str())
    );
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body, alertmanager_json(&notification(), EXTERNAL_URL, 0));
    assert_eq!(body["version"], "4");
}

#[tokio::test]
async fn no_signature_header_without_a_secret() {
    let (addr, log) = serve(vec![reply(204)], None).await;
    assert_eq!(
        send(&webhook_config(format!("http://{addr}/"))).await,
        Delivery::Delivered
    );
    assert_eq!(log.lock().unwrap()[0].header("x-sidewatch-signature"), None);
}

#[tokio::test]
async fn slack_format_posts_the_slack_body() {
    let (addr, log) = serve(vec![reply(200)], None).await;
    let mut cfg = webhook_config(format!("http://{addr}/services/T0/B0/X"));
    cfg.format = WebhookFormat::Slack;
    assert_eq!(send(&cfg).await, Delivery::Delivered);
    let body: serde_json::Value = serde_json::from_slice(&log.lock().unwrap()[0].body).unwrap();
    assert_eq!(body["attachments"][0]["color"], "danger");
    assert_eq!(body["attachments"][1]["color"], "good");
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("[FIRING:1] HighErrorRatio")
    );
}

#[tokio::test]
async fn max_alerts_truncates_the_payload() {
    let (addr, log) = serve(vec![reply(200)], None).await;
    let mut cfg = webhook_config(format!("http://{addr}/"));
    cfg.max_alerts = 1;
    assert_eq!(send(&cfg).await, Delivery::Delivered);
    let body: serde_json::Value = serde_json::from_slice(&log.lock().unwrap()[0].body).unwrap();
    assert_eq!(body["truncatedAlerts"], 1);
    assert_eq!(body["alerts"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn statuses_are_classified_as_alertmanager_does() {
    let with_body = |status, body| Reply {
        body,
        ..reply(status)
    };
    let retry_after = |status, value| Reply {
        headers: vec![("Retry-After", value)],
        ..reply(status)
    };
    let cases: Vec<(Reply, Delivery)> = vec![
        (
            reply(500),
            Delivery::Retry {
                after: None,
                reason: "webhook answered 500 internal server error".into(),
            },
        ),
        (
            retry_after(503, "120"),
            Delivery::Retry {
                after: Some(Duration::from_secs(120)),
                reason: "webhook answered 503 service unavailable".into(),
            },
        ),
        (
            retry_after(429, "7"),
            Delivery::Retry {
                after: Some(Duration::from_secs(7)),
                reason: "webhook answered 429 too many requests".into(),
            },
        ),
        (
            reply(429),
            Delivery::Retry {
                after: None,
                reason: "webhook answered 429 too many requests".into(),
            },
        ),
        (
            with_body(404, "no such hook\n"),
            Delivery::Failed {
                reason: "webhook answered 404 not found: no such hook".into(),
            },
        ),
        (
            with_body(400, "{\"error\": \"invalid_payload\"}"),
            Delivery::Failed {
                reason: "webhook answered 400 bad request: {\"error\": \"invalid_payload\"}".into(),
            },
        ),
        (
            retry_after(302, "1"),
            Delivery::Failed {
                reason:
                    "webhook answered 302 found (redirects are not followed: set the final url)"
                        .into(),
            },
        ),
    ];
    for (answer, want) in cases {
        let status = answer.status;
        let (addr, _) = serve(vec![answer], None).await;
        let got = send(&webhook_config(format!("http://{addr}/h?token=SECRET"))).await;
        assert_eq!(got, want, "status {status}");
    }
}

#[tokio::test]
async fn a_hanging_server_is_retried_after_the_timeout() {
    let hang = Reply {
        delay: Duration::from_secs(30),
        ..reply(200)
    };
    let (addr, _) = serve(vec![hang], None).await;
    let mut cfg = webhook_config(format!("http://{addr}/"));
    cfg.timeout = Duration::from_millis(500);
    let start = Instant::now();
    let got = send(&cfg).await;
    let elapsed = start.elapsed();
    assert_eq!(
        got,
        Delivery::Retry {
            after: None,
            reason: "timed out after 500ms".into()
        }
    );
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_the_reason_holds_no_url() {
    // A port that was free a moment ago: nothing listens there now.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = webhook_config(format!("http://user:pw@{addr}/hook/TOKEN?key=SECRET"));
    let got = send(&cfg).await;
    let reason = retry_reason(&got);
    assert!(reason.contains("refused"), "{reason}");
    for secret in ["TOKEN", "SECRET", "pw", "/hook"] {
        assert!(!reason.contains(secret), "{reason}");
    }
}

#[tokio::test]
async fn self_signed_https_is_refused_without_ca_file_and_accepted_with_it() {
    let (pem, acceptor) = self_signed();
    let (addr, log) = serve(vec![reply(200)], Some(acceptor)).await;
    let mut cfg = webhook_config(format!("https://{addr}/hook"));

    let got = send(&cfg).await;
    let reason = retry_reason(&got);
    assert!(
        reason.starts_with("tls: ") && reason.contains("certificate"),
        "{reason}"
    );
    assert!(
        log.lock().unwrap().is_empty(),
        "nothing may reach an untrusted server"
    );

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    cfg.ca_file = Some(ca);
    assert_eq!(send(&cfg).await, Delivery::Delivered);
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_bad_ca_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for (path, why) in [
        (dir.path().join("missing.pem"), "no such file"),
        (not_pem, "no PEM certificate"),
    ] {
        let mut cfg = webhook_config("https://hooks.example.com/x".into());
        cfg.ca_file = Some(path.clone());
        let err = WebhookSender::new(&cfg, "").unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains(why),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Email

fn email_config(smarthost: String) -> EmailConfig {
    EmailConfig {
        to: vec!["ops@example.com".into(), "Pager <pager@example.com>".into()],
        from: "sidewatch@example.com".into(),
        smarthost,
        tls: SmtpTls::None,
        username: None,
        password: None,
        ca_file: None,
        hello: Some("sidewatch.test".into()),
        subject: None,
        text: None,
        html: None,
        send_resolved: true,
        timeout: Duration::from_secs(5),
    }
}

/// Quoted-printable decoding (RFC 2045), enough to read the parts lettre encodes.
fn decode_qp(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn the_mail_has_both_parts_every_recipient_and_the_idempotency_key() {
    let mut n = notification();
    n.alerts[0].annotations[0].1 = "errors on /cart <script>x</script> — 5%".into();
    let sender = EmailSender::new(&email_config("127.0.0.1:2525".into()), EXTERNAL_URL).unwrap();
    let (message, warnings) = sender.message(&n).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let raw = String::from_utf8(message.formatted()).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    for want in [
        "From: sidewatch@example.com\r\n",
        "To: ops@example.com, Pager <pager@example.com>\r\n",
        "Subject: [FIRING:1] HighErrorRatio (checkout-api)\r\n",
        "Message-ID: <0193a1b2c3d4-7@sidewatch>\r\n",
        // The notification's creation time: a retry is the same mail.
        "Date: Mon, 23 Nov 2026 19:50:24 +0000\r\n",
        "Auto-Submitted: auto-generated\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/alternative;",
    ] {
        assert!(
            format!("{head}\r\n").contains(want),
            "{want:?} not in\n{head}"
        );
    }
    let decoded = decode_qp(body);
    assert!(
        decoded.contains("Content-Type: text/plain; charset=utf-8"),
        "{decoded}"
    );
    assert!(
        decoded.contains("Content-Type: text/html; charset=utf-8"),
        "{decoded}"
    );
    // The plain part says it as it is; the HTML part escapes it.
    assert!(
        decoded.contains(" - summary = errors on /cart <script>x</script> — 5%"),
        "{decoded}"
    );
    assert!(
        decoded.contains("summary = errors on &#x2f;cart &lt;script&gt;x&lt;&#x2f;script&gt; — 5%"),
        "{decoded}"
    );
    let plain = decoded.find("text/plain").unwrap();
    let html = decoded.find("text/html").unwrap();
    assert!(plain < html, "the preferred (HTML) alternative comes last");
}

#[test]
fn email_config_errors_name_what_is_wrong() {
    let mut cfg = email_config("127.0.0.1:2525".into());
    cfg.to.push("not an address".into());
    let err = EmailSender::new(&cfg, "").unwrap_err().to_string();
    assert!(
        err.starts_with("invalid `to` address `not an address`"),
        "{err}"
    );

    let mut cfg = email_config("127.0.0.1:2525".into());
    cfg.text = Some("{% for a in Alerts %}".into());
    let err = EmailSender::new(&cfg, "").unwrap_err().to_string();
    assert!(err.starts_with("email `text` template, line 1"), "{err}");

    let mut cfg = email_config("127.0.0.1:2525".into());
    cfg.tls = SmtpTls::Tls;
    cfg.ca_file = Some("/nonexistent/ca.pem".into());
    let err = EmailSender::new(&cfg, "").unwrap_err().to_string();
    assert!(
        err.contains("/nonexistent/ca.pem") && err.contains("no such file"),
        "{err}"
    );
}

/// How the scripted SMTP server answers `RCPT TO` and the end of `DATA`.
#[derive(Clone, Copy)]
struct SmtpScript {
    rcpt: &'static str,
    data_end: &'static str,
}

const SMTP_OK: SmtpScript = SmtpScript {
    rcpt: "250 2.1.5 ok",
    data_end: "250 2.0.0 queued",
};

/// One SMTP session: answers from `script`, records the commands and the message.
async fn smtp_session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    script: SmtpScript,
    log: Arc<Mutex<Vec<String>>>,
) {
    let mut stream = BufReader::new(stream);
    let say = |line: &str| format!("{line}\r\n");
    if stream
        .get_mut()
        .write_all(say("220 smtp.test ESMTP").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_string();
        log.lock().unwrap().push(command.clone());
        let upper = command.to_uppercase();
        let answer = if upper.starts_with("EHLO") {
            "250 smtp.test".to_string()
        } else if upper.starts_with("MAIL FROM") {
            "250 2.1.0 ok".to_string()
        } else if upper.starts_with("RCPT TO") {
            script.rcpt.to_string()
        } else if upper == "DATA" {
            stream
                .get_mut()
                .write_all(say("354 go ahead").as_bytes())
                .await
                .ok();
            let mut message = String::new();
            loop {
                line.clear();
                match stream.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == ".\r\n" => break,
                    Ok(_) => message.push_str(&line),
                }
            }
            log.lock().unwrap().push(message);
            script.data_end.to_string()
        } else if upper == "QUIT" {
            let _ = stream.get_mut().write_all(say("221 bye").as_bytes()).await;
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            "250 ok".to_string()
        } else {
            "502 5.5.2 not implemented".to_string()
        };
        if stream
            .get_mut()
            .write_all(say(&answer).as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn smtp_server(
    script: SmtpScript,
    tls: Option<TlsAcceptor>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let server_log = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = server_log.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => smtp_session(stream, script, log).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            smtp_session(stream, script, log).await;
                        }
                    }
                }
            });
        }
    });
    (addr, log)
}

#[tokio::test]
async fn mail_is_delivered_to_every_recipient() {
    let (addr, log) = smtp_server(SMTP_OK, None).await;
    let sender = EmailSender::new(&email_config(addr.to_string()), EXTERNAL_URL).unwrap();
    assert_eq!(sender.send(&notification()).await, Delivery::Delivered);
    let log = log.lock().unwrap().clone();
    assert_eq!(log[0], "EHLO sidewatch.test");
    assert!(
        log.contains(&"MAIL FROM:<sidewatch@example.com>".to_string()),
        "{log:?}"
    );
    assert!(
        log.contains(&"RCPT TO:<ops@example.com>".to_string()),
        "{log:?}"
    );
    assert!(
        log.contains(&"RCPT TO:<pager@example.com>".to_string()),
        "{log:?}"
    );
    let message = log.iter().find(|l| l.contains("Message-ID:")).unwrap();
    assert!(
        message.contains("Message-ID: <0193a1b2c3d4-7@sidewatch>"),
        "{message}"
    );
}

#[tokio::test]
async fn each_mail_has_a_connection_of_its_own() {
    let (addr, log) = smtp_server(SMTP_OK, None).await;
    let sender = EmailSender::new(&email_config(addr.to_string()), "").unwrap();
    for _ in 0..2 {
        assert_eq!(sender.send(&notification()).await, Delivery::Delivered);
    }
    // The connection is closed (QUIT) just after the send returns.
    let deadline = Instant::now() + Duration::from_secs(3);
    let count = |what: &str| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(what))
            .count()
    };
    while count("QUIT") < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (count("EHLO"), count("QUIT")),
        (2, 2),
        "{:?}",
        log.lock().unwrap()
    );
}

#[tokio::test]
async fn smtp_replies_are_classified() {
    let cases = [
        (
            SmtpScript {
                rcpt: "550 5.1.1 no such user",
                ..SMTP_OK
            },
            Delivery::Failed {
                reason: "smtp server refused the mail: 550 5.1.1 no such user".into(),
            },
        ),
        (
            SmtpScript {
                data_end: "451 4.3.0 try again later",
                ..SMTP_OK
            },
            Delivery::Retry {
                after: None,
                reason: "smtp server deferred the mail: 451 4.3.0 try again later".into(),
            },
        ),
    ];
    for (script, want) in cases {
        let (addr, _) = smtp_server(script, None).await;
        let sender = EmailSender::new(&email_config(addr.to_string()), "").unwrap();
        assert_eq!(sender.send(&notification()).await, want);
    }
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_retried() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let sender = EmailSender::new(&email_config(addr.to_string()), "").unwrap();
    assert_eq!(
        sender.send(&notification()).await,
        Delivery::Retry {
            after: None,
            reason: "smtp server: connection refused".into()
        }
    );
}

#[tokio::test]
async fn a_silent_smtp_server_is_retried_after_the_timeout() {
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut cfg = email_config(addr.to_string());
    cfg.timeout = Duration::from_millis(500);
    let start = Instant::now();
    let got = EmailSender::new(&cfg, "")
        .unwrap()
        .send(&notification())
        .await;
    let elapsed = start.elapsed();
    assert_eq!(
        got,
        Delivery::Retry {
            after: None,
            reason: "smtp server timed out after 500ms".into()
        }
    );
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn smtps_with_a_self_signed_certificate_needs_ca_file() {
    let (pem, acceptor) = self_signed();
    let (addr, log) = smtp_server(SMTP_OK, Some(acceptor)).await;
    let mut cfg = email_config(addr.to_string());
    cfg.tls = SmtpTls::Tls;

    let got = EmailSender::new(&cfg, "")
        .unwrap()
        .send(&notification())
        .await;
    let reason = retry_reason(&got);
    assert!(
        reason.starts_with("tls: ") && reason.contains("certificate"),
        "{reason}"
    );
    assert!(log.lock().unwrap().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    cfg.ca_file = Some(ca);
    let got = EmailSender::new(&cfg, "")
        .unwrap()
        .send(&notification())
        .await;
    assert_eq!(got, Delivery::Delivered);
}
