//! Health probes against real servers on 127.0.0.1: plain HTTP answered by a tiny
//! hand-written HTTP/1.1 server, HTTPS by the same behind tokio-rustls with a
//! certificate made by rcgen. Times are measured with tokio's clock in real time (not
//! paused: the sockets are real), with generous bounds.

mod common;
use common::self_signed;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use sidewatch::config::ProbeConfig;
use sidewatch::event::ProbeSample;
use sidewatch::jsonpath::JsonPath;
use sidewatch::sources::health_probe::HealthProbe;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// What the test server answers to every request.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

const HEALTHY: &str = r#"{"status": "ok", "version": "1.4.3"}"#;

fn config(name: &str, url: String) -> ProbeConfig {
    ProbeConfig {
        name: name.to_string(),
        url,
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
        expect_status: Vec::new(),
        expect_body: Vec::new(),
        max_latency: None,
        version_from: Some(JsonPath::parse("$.version").unwrap()),
        ca_file: None,
    }
}

fn expect_ok(config: &mut ProbeConfig) {
    config.expect_status = vec![200];
    config.expect_body = vec![(JsonPath::parse("$.status").unwrap(), json!("ok"))];
}

/// Reads one request's head, waits `delay`, answers and closes.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, reply: Reply) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    tokio::time::sleep(reply.delay).await;
    let response = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A server answering every connection with `reply`, over TLS when `tls` is set.
async fn serve(reply: Reply, tls: Option<TlsAcceptor>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => answer(stream, reply).await,
                    Some(acceptor) => {
                        // A client that rejects the certificate ends the handshake.
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer(stream, reply).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn http(reply: Reply) -> String {
    format!("http://{}/health", serve(reply, None).await)
}

async fn probe(config: ProbeConfig) -> (ProbeSample, Duration) {
    let probe = HealthProbe::new(config).unwrap();
    let start = Instant::now();
    let sample = probe.probe_once(1_700_000_000_000_000_000).await;
    (sample, start.elapsed())
}

fn error(sample: &ProbeSample) -> &str {
    sample.error.as_deref().unwrap_or("")
}

#[tokio::test]
async fn healthy_endpoint_succeeds_with_version() {
    let mut config = config("health", http(reply(200, HEALTHY)).await);
    expect_ok(&mut config);
    config.max_latency = Some(Duration::from_secs(3));
    let (sample, _) = probe(config).await;
    assert!(sample.success, "{sample:?}");
    assert_eq!(&*sample.probe, "health");
    assert_eq!(sample.time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(sample.status_code, Some(200));
    assert_eq!(sample.version.as_deref(), Some("1.4.3"));
    assert_eq!(sample.error, None);
    assert!(sample.duration_seconds > 0.0 && sample.duration_seconds < 3.0);
}

#[tokio::test]
async fn any_2xx_passes_when_no_status_is_expected() {
    let mut config = config("health", http(reply(204, "")).await);
    config.version_from = None;
    let (sample, _) = probe(config).await;
    assert!(sample.success, "{sample:?}");
    assert_eq!(sample.status_code, Some(204));
}

#[tokio::test]
async fn unexpected_status_fails_and_still_reads_the_version() {
    let body = r#"{"status": "degraded", "version": "1.4.4"}"#;
    let mut cfg = config("health", http(reply(503, body)).await);
    expect_ok(&mut cfg);
    let (sample, _) = probe(cfg).await;
    assert!(!sample.success);
    assert_eq!(sample.status_code, Some(503));
    assert_eq!(error(&sample), "status 503 not in [200]");
    assert_eq!(sample.version.as_deref(), Some("1.4.4"));

    let (sample, _) = probe(config("health", http(reply(503, body)).await)).await;
    assert_eq!(error(&sample), "status 503 not 2xx");
}

#[tokio::test]
async fn body_mismatch_names_the_path_and_both_values() {
    let body = r#"{"status": "degraded", "version": "1.4.3", "checks": {"db": 1.0}}"#;
    let mut cfg = config("health", http(reply(200, body)).await);
    expect_ok(&mut cfg);
    let (sample, _) = probe(cfg).await;
    assert!(!sample.success);
    assert_eq!(sample.status_code, Some(200));
    assert_eq!(error(&sample), r#"$.status is "degraded", expected "ok""#);
    assert_eq!(sample.version.as_deref(), Some("1.4.3"));

    // Numbers compare by value; a missing path is named as missing.
    let mut cfg = config("health", http(reply(200, body)).await);
    cfg.expect_body = vec![(JsonPath::parse("$.checks.db").unwrap(), json!(1))];
    assert!(probe(cfg).await.0.success);
    let mut cfg = config("health", http(reply(200, body)).await);
    cfg.expect_body = vec![(JsonPath::parse("$.checks.cache").unwrap(), json!(true))];
    let (sample, _) = probe(cfg).await;
    assert_eq!(error(&sample), "$.checks.cache is missing, expected true");
}

#[tokio::test]
async fn body_that_is_not_json_fails_body_conditions_only() {
    let mut cfg = config("health", http(reply(200, "OK")).await);
    expect_ok(&mut cfg);
    let (sample, _) = probe(cfg).await;
    assert_eq!(error(&sample), "body is not JSON");
    assert_eq!(sample.version, None);

    // Without body conditions, a text body is fine (and simply has no version).
    let cfg = config("health", http(reply(200, "OK")).await);
    let (sample, _) = probe(cfg).await;
    assert!(sample.success, "{sample:?}");
    assert_eq!(sample.version, None);
}

#[tokio::test]
async fn huge_body_is_not_read_whole() {
    let big = format!(r#"{{"status": "ok", "pad": "{}"}}"#, "x".repeat(2 << 20));
    let mut cfg = config("health", http(reply(200, &big)).await);
    expect_ok(&mut cfg);
    let (sample, _) = probe(cfg).await;
    assert!(!sample.success);
    assert_eq!(error(&sample), "body over 1MiB");
    assert_eq!(sample.status_code, Some(200));
}

/// A server whose body never ends (close-delimited, no Content-Length).
async fn endless_body() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"pad\": \"";
                let _ = stream.write_all(head.as_bytes()).await;
                let chunk = vec![b'x'; 64 * 1024];
                while stream.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    format!("http://{addr}/health")
}

#[tokio::test]
async fn endless_body_stops_at_the_cap() {
    // Nothing needs the body: reading stops at the cap, and the probe succeeds.
    let mut cfg = config("health", endless_body().await);
    cfg.version_from = None;
    let (sample, elapsed) = probe(cfg).await;
    assert!(sample.success, "{sample:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");

    // Body conditions need the whole body: they fail, naming the cap.
    let mut cfg = config("health", endless_body().await);
    expect_ok(&mut cfg);
    let (sample, _) = probe(cfg).await;
    assert_eq!(error(&sample), "body over 1MiB");
    assert_eq!(sample.status_code, Some(200));
}

#[tokio::test]
async fn slow_answer_fails_max_latency() {
    let mut slow = reply(200, HEALTHY);
    slow.delay = Duration::from_millis(300);
    let mut cfg = config("health", http(slow).await);
    expect_ok(&mut cfg);
    cfg.max_latency = Some(Duration::from_millis(100));
    let (sample, _) = probe(cfg).await;
    assert!(!sample.success);
    assert_eq!(sample.status_code, Some(200));
    assert_eq!(sample.version.as_deref(), Some("1.4.3"));
    let e = error(&sample);
    assert!(
        e.starts_with("latency ") && e.ends_with("ms over max_latency 100ms"),
        "{e}"
    );
    assert!(sample.duration_seconds >= 0.3, "{sample:?}");
}

#[tokio::test]
async fn refused_connection_fails_fast() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let cfg = config("health", format!("http://{addr}/health"));
    let (sample, elapsed) = probe(cfg).await;
    assert!(!sample.success);
    assert_eq!(error(&sample), "connection refused");
    assert_eq!(sample.status_code, None);
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn hanging_endpoint_times_out_within_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts, holds every connection open, never answers.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut cfg = config("health", format!("http://{addr}/health"));
    cfg.timeout = Duration::from_secs(1);
    let (sample, elapsed) = probe(cfg).await;
    assert!(!sample.success);
    assert_eq!(error(&sample), "timed out after 1s");
    assert_eq!(sample.status_code, None);
    assert!(elapsed >= Duration::from_millis(990), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert!(sample.duration_seconds >= 0.99 && sample.duration_seconds < 2.0);
}

#[tokio::test]
async fn body_that_never_ends_times_out_with_the_status_known() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"status\":";
            let _ = stream.write_all(head.as_bytes()).await;
            held.push(stream);
        }
    });
    let mut cfg = config("health", format!("http://{addr}/health"));
    cfg.timeout = Duration::from_millis(800);
    let (sample, elapsed) = probe(cfg).await;
    assert!(!sample.success);
    assert_eq!(sample.status_code, Some(200));
    assert_eq!(error(&sample), "timed out after 800ms reading the body");
    assert!(elapsed < Duration::from_millis(1800), "{elapsed:?}");
}

#[tokio::test]
async fn https_self_signed_is_refused_without_ca_file_and_accepted_with_it() {
    let (pem, acceptor) = self_signed();
    let addr = serve(reply(200, HEALTHY), Some(acceptor)).await;
    let url = format!("https://{addr}/health");

    let mut cfg = config("tls", url.clone());
    expect_ok(&mut cfg);
    let (sample, _) = probe(cfg.clone()).await;
    assert!(!sample.success);
    assert_eq!(sample.status_code, None);
    assert!(error(&sample).contains("certificate"), "{sample:?}");
    assert!(
        !error(&sample).contains(&url),
        "no URL in errors: {sample:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    cfg.ca_file = Some(ca);
    let (sample, _) = probe(cfg).await;
    assert!(sample.success, "{sample:?}");
    assert_eq!(sample.version.as_deref(), Some("1.4.3"));
}

#[tokio::test]
async fn bad_ca_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let bad_der = dir.path().join("bad-der.pem");
    std::fs::write(
        &bad_der,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    for path in [garbage, bad_der, missing] {
        let mut cfg = config("tls", "https://127.0.0.1:1/health".to_string());
        cfg.ca_file = Some(path.clone());
        let err = format!("{:#}", HealthProbe::new(cfg).unwrap_err());
        assert!(err.contains(&*path.to_string_lossy()), "{err}");
        assert!(err.contains("probe `tls`"), "{err}");
    }
}

#[tokio::test]
async fn run_probes_on_interval_and_boost_and_stops_on_cancel() {
    let url = http(reply(200, HEALTHY)).await;
    let mut cfg = config("health", url);
    cfg.interval = Duration::from_secs(3600);
    let probe = HealthProbe::new(cfg).unwrap();
    let dropped = probe.dropped_samples();
    let (tx, mut rx) = mpsc::channel(64);
    let (boost, boost_rx) = watch::channel(None);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(probe.run(tx, boost_rx, shutdown.clone()));

    // The first probe runs at once; the next waits for the (long) interval.
    let first = timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(first.success, "{first:?}");
    assert!(
        timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );

    // Boosted: probes every 50ms.
    boost.send(Some(Duration::from_millis(50))).unwrap();
    let mut times = Vec::new();
    for _ in 0..4 {
        let sample = timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(sample.success);
        times.push(sample.time_unix_nano);
    }
    for pair in times[1..].windows(2) {
        assert!(
            pair[1] - pair[0] >= 40_000_000,
            "boosted samples too close: {times:?}"
        );
    }

    // Back to the interval: after at most one probe in flight, quiet again.
    boost.send(None).unwrap();
    while timeout(Duration::from_millis(200), rx.recv()).await.is_ok() {}
    assert!(
        timeout(Duration::from_millis(400), rx.recv())
            .await
            .is_err()
    );

    let stop = Instant::now();
    shutdown.cancel();
    timeout(Duration::from_secs(1), task)
        .await
        .unwrap()
        .unwrap();
    assert!(stop.elapsed() < Duration::from_secs(1));
    assert_eq!(dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn cancel_stops_a_probe_in_flight() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut cfg = config("health", format!("http://{addr}/health"));
    cfg.timeout = Duration::from_secs(30);
    let probe = HealthProbe::new(cfg).unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    let (_boost, boost_rx) = watch::channel(None);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(probe.run(tx, boost_rx, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stop = Instant::now();
    shutdown.cancel();
    timeout(Duration::from_secs(1), task)
        .await
        .unwrap()
        .unwrap();
    assert!(stop.elapsed() < Duration::from_secs(1));
    // The hanging probe produced nothing, and the channel is closed.
    assert!(rx.recv().await.is_none());
}

#[tokio::test]
async fn full_output_drops_and_counts_instead_of_blocking() {
    let mut cfg = config("health", http(reply(200, HEALTHY)).await);
    cfg.interval = Duration::from_millis(20);
    let probe = HealthProbe::new(cfg).unwrap();
    let dropped = probe.dropped_samples();
    let (tx, mut rx) = mpsc::channel(1);
    let (_boost, boost_rx) = watch::channel(None);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(probe.run(tx, boost_rx, shutdown.clone()));

    let waited = Instant::now();
    while dropped.load(Ordering::Relaxed) < 3 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "no drop counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The loop keeps going: the one buffered sample is there, new ones follow.
    assert!(rx.recv().await.unwrap().success);
    timeout(Duration::from_secs(3), rx.recv())
        .await
        .unwrap()
        .unwrap();
    shutdown.cancel();
    timeout(Duration::from_secs(1), task)
        .await
        .unwrap()
        .unwrap();
}

/// A bare container image has no system CA certificates. Simulated by running
/// `no_system_roots_child` in a child process whose `SSL_CERT_FILE` / `SSL_CERT_DIR`
/// point at nothing (they replace the system store when set).
#[test]
fn without_system_roots_http_probes_run_and_https_needs_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "no_system_roots_child",
            "--ignored",
            "--nocapture",
        ])
        .env("SSL_CERT_FILE", &empty)
        .env("SSL_CERT_DIR", dir.path())
        .env("SIDEWATCH_TEST_NO_ROOTS_CHILD", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

#[tokio::test]
#[ignore = "run by without_system_roots_http_probes_run_and_https_needs_ca_file"]
async fn no_system_roots_child() {
    if std::env::var_os("SIDEWATCH_TEST_NO_ROOTS_CHILD").is_none() {
        return; // Only meaningful in the stripped environment the parent sets up.
    }
    let plain = HealthProbe::new(config("plain", http(reply(200, HEALTHY)).await)).unwrap();
    let sample = plain.probe_once(0).await;
    assert!(sample.success, "{sample:?}");

    let (pem, acceptor) = self_signed();
    let url = format!(
        "https://{}/health",
        serve(reply(200, HEALTHY), Some(acceptor)).await
    );
    let err = HealthProbe::new(config("tls", url.clone())).unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("probe `tls`") && err.contains("ca_file"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let mut cfg = config("tls", url);
    cfg.ca_file = Some(ca);
    let sample = HealthProbe::new(cfg).unwrap().probe_once(0).await;
    assert!(sample.success, "{sample:?}");
}
