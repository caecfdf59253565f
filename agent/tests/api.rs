//! The HTTP API and the verbs around it, against a running agent: health and metrics
//! are open, everything else needs the bearer token; `healthcheck` reports the truth;
//! with no config file the agent runs on SPEC's defaults and says so.

mod common;
use common::free_port;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sidewatch::api::http_get;
use sidewatch::config::{Config, LogSourceConfig, Secret};
use sidewatch::topology::{Outcome, run_until};
use tokio_util::sync::CancellationToken;

/// Polls `url` until it answers 200, or fails after 10 s.
async fn wait_ready(url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((200, _)) = http_get(url, None).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} not ready within 10s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(dir: &Path, port: u16) -> Config {
    let mut config = Config::defaults();
    config.path = Some(dir.join("sidewatch.yaml"));
    config.data_dir = dir.join("data");
    config.api.listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.api.token = Some(Secret::new("s3cret".into()));
    config.logs = vec![LogSourceConfig::defaults(
        "app",
        vec![format!("{}/logs/*.log", dir.display())],
    )];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_everything_but_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run_until(config(dir.path(), port), stop.clone()));
    wait_ready(&format!("{base}/readyz")).await;

    let (code, body) = http_get(&format!("{base}/healthz"), None).await.unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, body) = http_get(&format!("{base}/metrics"), None).await.unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("# TYPE sidewatch_log_records_total counter"),
        "{body}"
    );

    for token in [None, Some("wrong"), Some("S3cret"), Some("s3cre")] {
        let (code, body) = http_get(&format!("{base}/api/v1/status"), token)
            .await
            .unwrap();
        assert_eq!(code, 401, "token {token:?}: {body}");
        assert!(
            !body.contains("s3cret"),
            "the token leaked into a response: {body}"
        );
    }
    let (code, body) = http_get(&format!("{base}/api/v1/status"), Some("s3cret"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["sources"][0]["name"], "app");
    assert_eq!(status["sources"][0]["ready"], true);
    assert!(
        !body.contains("s3cret"),
        "the token leaked into the status: {body}"
    );
    // The built-in rule pack runs (Config::defaults has no rule files): its groups are in
    // the status, and the alerts endpoint is guarded and answers in Prometheus' shape.
    let groups = status["rule_groups"].as_array().expect("rule_groups");
    assert_eq!(groups[0]["name"], "python-service", "{body}");
    assert_eq!(groups[0]["rules"].as_array().map(|r| r.len()), Some(8));
    let (code, _) = http_get(&format!("{base}/api/v1/alerts"), None)
        .await
        .unwrap();
    assert_eq!(code, 401);
    let (code, body) = http_get(&format!("{base}/api/v1/alerts"), Some("s3cret"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let alerts: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alerts["status"], "success");
    assert!(alerts["data"]["alerts"].is_array(), "{body}");
    let (code, _) = http_get(&format!("{base}/api/v1/nothing"), Some("s3cret"))
        .await
        .unwrap();
    assert_eq!(code, 404);

    // `sidewatch healthcheck` agrees with the API, and fails when nothing answers.
    let healthcheck = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_sidewatch"))
            .args(["healthcheck", "--url", url])
            .output()
            .unwrap()
    };
    let out = healthcheck(&base);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = healthcheck(&format!("http://127.0.0.1:{}", free_port()));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy: cannot reach"));

    stop.cancel();
    let outcome = agent.await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Clean);
    assert!(
        http_get(&format!("{base}/healthz"), None).await.is_err(),
        "the API stops last, but it stops"
    );
}

#[test]
fn without_a_config_file_the_agent_runs_on_the_built_in_defaults_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    std::fs::write(
        dir.path().join("logs/app.log"),
        "{\"event\": \"before start\", \"level\": \"info\"}\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sidewatch"))
        .current_dir(dir.path())
        .env_remove("SIDEWATCH_CONFIG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let first: serde_json::Value = serde_json::from_str(&first).expect("the agent logs JSON");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("built-in defaults"),
        "{first}"
    );
    // It is running on the defaults: the API on 127.0.0.1:9777, data in ./sidewatch-data.
    let mut ready = false;
    for line in (&mut stderr).lines() {
        let line = line.unwrap();
        if line.contains("sidewatch running") {
            assert!(line.contains("127.0.0.1:9777"), "{line}");
            ready = true;
            break;
        }
    }
    assert!(ready, "the agent did not report running");
    assert!(dir.path().join("sidewatch-data/state.redb").exists());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(0), "SIGTERM exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_are_created_listed_expired_and_kept_across_a_restart() {
    use sidewatch::api::http_request;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let start =
        |stop: &CancellationToken| tokio::spawn(run_until(config(dir.path(), port), stop.clone()));
    let stop = CancellationToken::new();
    let agent = start(&stop);
    wait_ready(&format!("{base}/readyz")).await;
    let url = format!("{base}/api/v1/silences");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let rfc = |secs: i64| sidewatch::parse::time::rfc3339(secs * 1_000_000_000);
    let silence = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "HighErrorRatio", "isRegex": false, "isEqual": true}],
        "startsAt": rfc(now - 1),
        "endsAt": rfc(now + 3600),
        "createdBy": "api test",
        "comment": "deploying",
    });

    // Mutations need the token, like every API call but health and metrics.
    let (code, _) = http_request("POST", &url, None, Some(silence.to_string()))
        .await
        .unwrap();
    assert_eq!(code, 401);
    let (code, body) = http_request("POST", &url, Some("s3cret"), Some(silence.to_string()))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();

    // A silence that would mute everything, or has no comment, is refused with why.
    let mut everything = silence.clone();
    everything["matchers"][0]["value"] = ".*".into();
    everything["matchers"][0]["isRegex"] = true.into();
    let (code, body) = http_request("POST", &url, Some("s3cret"), Some(everything.to_string()))
        .await
        .unwrap();
    assert_eq!(code, 400, "{body}");
    let (code, body) = http_request("POST", &url, Some("s3cret"), Some("{not json".into()))
        .await
        .unwrap();
    assert_eq!(code, 400, "{body}");

    let list = |body: String| serde_json::from_str::<serde_json::Value>(&body).unwrap();
    let (code, body) = http_get(&url, Some("s3cret")).await.unwrap();
    assert_eq!(code, 200, "{body}");
    let silences = list(body);
    assert_eq!(silences.as_array().map(|a| a.len()), Some(1));
    assert_eq!(silences[0]["id"], id.as_str());
    assert_eq!(silences[0]["status"]["state"], "active");
    assert_eq!(silences[0]["comment"], "deploying");

    // Kept across a restart (the state store), then expired.
    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
    let stop = CancellationToken::new();
    let agent = start(&stop);
    wait_ready(&format!("{base}/readyz")).await;
    let (_, body) = http_get(&format!("{url}/{id}"), Some("s3cret"))
        .await
        .unwrap();
    assert_eq!(list(body)["status"]["state"], "active");
    let (code, body) = http_request("DELETE", &format!("{url}/{id}"), Some("s3cret"), None)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let (_, body) = http_get(&format!("{url}/{id}"), Some("s3cret"))
        .await
        .unwrap();
    assert_eq!(list(body)["status"]["state"], "expired");
    let (code, _) = http_request("DELETE", &format!("{url}/nope"), Some("s3cret"), None)
        .await
        .unwrap();
    assert_eq!(code, 404);
    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
}

/// One GET with an optional `Authorization` header: status, headers, body.
async fn get_with(url: &str, authorization: Option<&str>) -> (u16, axum::http::HeaderMap, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::get(url);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The page is HTML with the headers that keep it inert, and what it shows came
/// through the escaping (the service name is hostile on purpose).
fn assert_status_page(code: u16, headers: &axum::http::HeaderMap, body: &str) {
    assert_eq!(code, 200, "{body}");
    assert_eq!(header(headers, "content-type"), "text/html; charset=utf-8");
    assert!(
        header(headers, "content-security-policy")
            .starts_with("default-src 'none'; style-src 'unsafe-inline'"),
        "{headers:?}"
    );
    assert_eq!(header(headers, "x-content-type-options"), "nosniff");
    assert!(body.starts_with("<!doctype html>"), "{body}");
    assert!(
        body.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
        "{body}"
    );
    assert!(body.contains("&lt;checkout&gt; api"), "{body}");
    assert!(!body.contains("<checkout>"), "{body}");
    for section in ["probes", "alerts", "deployments", "queues"] {
        assert!(
            body.contains(&format!("<section id=\"{section}\">")),
            "no {section} section: {body}"
        );
    }
    // The source of the config, with its glob, in the queues and sources section.
    assert!(body.contains("<td>app</td>"), "{body}");
    assert!(body.contains("/logs/*.log</code>"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_is_html_and_open_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut config = config(dir.path(), port);
    config.api.token = None;
    config.service.name = "<checkout> api".into();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run_until(config, stop.clone()));
    wait_ready(&format!("{base}/readyz")).await;

    let (code, headers, body) = get_with(&format!("{base}/"), None).await;
    assert_status_page(code, &headers, &body);

    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_status_page_takes_basic_auth_and_the_bearer_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut config = config(dir.path(), port);
    config.service.name = "<checkout> api".into();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run_until(config, stop.clone()));
    wait_ready(&format!("{base}/readyz")).await;
    let page = format!("{base}/");

    // Without credentials: a Basic challenge, so a browser prompts.
    let (code, headers, body) = get_with(&page, None).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        header(&headers, "www-authenticate"),
        "Basic realm=\"sidewatch\""
    );
    // The token as the Basic password, whatever the user name ("x:s3cret",
    // "anyone:s3cret" in base64).
    for credentials in ["eDpzM2NyZXQ=", "YW55b25lOnMzY3JldA=="] {
        let (code, headers, body) = get_with(&page, Some(&format!("Basic {credentials}"))).await;
        assert_status_page(code, &headers, &body);
    }
    // A wrong password ("x:wrong"), the token as the user name ("s3cret:"), no colon
    // ("s3cret"), not base64, or the token as a bearer in the Basic scheme: refused.
    for authorization in [
        "Basic eDp3cm9uZw==",
        "Basic czNjcmV0Og==",
        "Basic czNjcmV0",
        "Basic s3cret",
        "Basic x:s3cret",
        "Bearer wrong",
    ] {
        let (code, headers, body) = get_with(&page, Some(authorization)).await;
        assert_eq!(code, 401, "{authorization}: {body}");
        assert_eq!(
            header(&headers, "www-authenticate"),
            "Basic realm=\"sidewatch\"",
            "{authorization}"
        );
        assert!(!body.contains("s3cret"), "{body}");
    }
    // The bearer still opens the page and the API, and the API's challenge is unchanged.
    let (code, headers, body) = get_with(&page, Some("Bearer s3cret")).await;
    assert_status_page(code, &headers, &body);
    let status = format!("{base}/api/v1/status");
    let (code, _, body) = get_with(&status, Some("Bearer s3cret")).await;
    assert_eq!(code, 200, "{body}");
    let (code, headers, _) = get_with(&status, None).await;
    assert_eq!(
        (code, header(&headers, "www-authenticate")),
        (401, "Bearer")
    );
    // Basic works for the JSON too (the page links to it).
    let (code, _, body) = get_with(&status, Some("Basic eDpzM2NyZXQ=")).await;
    assert_eq!(code, 200, "{body}");
    let (code, _, _) = get_with(&status, Some("Basic eDp3cm9uZw==")).await;
    assert_eq!(code, 401);

    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
}

/// SPEC's security promises for the API: every mutating call needs the token, the
/// listener is exactly `api.listen` (another loopback address of the same port is
/// refused), and the IDs in paths are looked up, never joined into a path: `..` cannot
/// reach outside `data_dir`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_need_the_token_the_bind_is_exact_and_ids_cannot_escape() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run_until(config(dir.path(), port), stop.clone()));
    wait_ready(&format!("{base}/readyz")).await;
    let client = reqwest::Client::new();
    let silence = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "X", "isRegex": false, "isEqual": true}],
        "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "test", "comment": "test"
    });
    let mutations = [
        (
            reqwest::Method::POST,
            "/api/v1/deployments",
            serde_json::json!({"version": "9.9.9"}),
        ),
        (reqwest::Method::POST, "/api/v1/silences", silence.clone()),
        (
            reqwest::Method::DELETE,
            "/api/v1/silences/00000000-0000-0000-0000-000000000000",
            serde_json::Value::Null,
        ),
    ];
    for (method, path, body) in &mutations {
        for auth in [None, Some("Bearer wrong"), Some("Basic eDp3cm9uZw==")] {
            let mut request = client.request(method.clone(), format!("{base}{path}"));
            if !body.is_null() {
                request = request.json(body);
            }
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {auth:?}");
        }
    }
    let (code, body) = http_get(&format!("{base}/api/v1/deployments"), Some("s3cret"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        !body.contains("9.9.9"),
        "a refused POST changed nothing: {body}"
    );

    // Bound to 127.0.0.1 only: the same port on another loopback address is closed.
    let other = tokio::net::TcpStream::connect(("127.0.0.2", port)).await;
    assert!(other.is_err(), "the API answered on 127.0.0.2:{port}");

    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "root:x:0:0").unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for path in [
        "/api/v1/silences/..%2Foutside.txt",
        "/api/v1/silences/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/v1/deployments/..%2Foutside.txt",
        "/api/v1/deployments/..%2F..%2Fdata",
        "/api/v1/baselines/..%2Foutside.txt",
        "/api/v1/baselines/%2Fetc%2Fpasswd",
    ] {
        for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
            let response = client
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth("s3cret")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert!(
                matches!(status, 400 | 404 | 405),
                "{method} {path} answered {status}: {body}"
            );
            assert!(
                !body.contains("root:x"),
                "{method} {path} read a file: {body}"
            );
        }
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "root:x:0:0");
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        before, after,
        "nothing was created or removed beside data_dir"
    );
    stop.cancel();
    assert_eq!(agent.await.unwrap().unwrap(), Outcome::Clean);
}
