//! The HTTP API on `api.listen`: health and readiness for probes, `/metrics` for
//! Prometheus, `/api/v1/status` for people and scripts, `/` (the status page) for
//! browsers. A bearer `api.token`, when set, guards everything except `/healthz`,
//! `/readyz` and `/metrics` (what kubelets and scrapers reach without credentials); the
//! guard also takes HTTP Basic auth whose password is the token, since a browser cannot
//! send a bearer header (see `status_page`).

mod status_page;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::channel::QueueDepth;
use crate::config::{Secret, ServiceConfig};
use crate::parse::Format;
use crate::sources::file_tail::SourceStatus;
use crate::telemetry::Telemetry;

/// A source as the status endpoint shows it.
pub struct SourceView {
    pub name: Arc<str>,
    pub format: Format,
    pub paths: Vec<String>,
    pub files: SourceStatus,
    /// The source has opened the files that existed at startup.
    pub ready: Arc<AtomicBool>,
}

/// What the API serves from.
pub struct ApiState {
    pub telemetry: Arc<Telemetry>,
    /// Set once the config is loaded and every source runs.
    pub ready: Arc<AtomicBool>,
    pub token: Option<Secret>,
    pub service: ServiceConfig,
    pub config_origin: String,
    pub started: Instant,
    pub sources: Vec<SourceView>,
    /// The pipeline's queue between the sources and the sink stage.
    pub queue: QueueDepth,
    /// The rule engine (alerts, recorded series, rule health).
    pub rules: Option<crate::rule_runner::SharedEngine>,
    /// The last result of each probe.
    pub probes: crate::deploy_runner::ProbeBoard,
    /// Deployments, and where announced deployments go for their baseline.
    pub deployments: Option<(
        crate::deploy::SharedDeployments,
        tokio::sync::mpsc::UnboundedSender<crate::deploy::tracker::Deployment>,
    )>,
    /// The notifier (silences, outbox depth, counters) and its receivers' names.
    pub notify: Option<(Arc<crate::notify_runner::NotifyShared>, Vec<String>)>,
    /// Bytes in the OTLP log queue, when OTLP export of logs is on.
    pub otlp_queue_bytes: Option<crate::telemetry::Gauge>,
}

pub fn router(state: Arc<ApiState>) -> Router {
    let protected = Router::new()
        .route("/", get(status_page::status_page))
        .route("/api/v1/status", get(status))
        .route("/api/v1/alerts", get(alerts))
        .route(
            "/api/v1/deployments",
            get(list_deployments).post(announce_deployment),
        )
        .route("/api/v1/deployments/{version}", get(get_deployment))
        .route("/api/v1/baselines/{version}", get(get_baseline))
        .route("/api/v1/silences", get(list_silences).post(post_silence))
        .route(
            "/api/v1/silences/{id}",
            get(get_silence).delete(expire_silence),
        )
        .fallback(not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(protected)
        .with_state(state)
}

/// Starts the API on a thread of its own ("sidewatch-api") with a single-threaded
/// runtime, as linkerd's proxy runs its admin server: `/healthz` must not wait behind the
/// work of the main runtime's workers (an OTLP request being gzipped, a rule evaluation),
/// which under a pod's CPU limit took seconds and failed liveness probes. Handlers that
/// read the pipeline's shared state take its locks on this runtime's blocking pool
/// (`locked`), so this thread never waits for a lock either. The receiver resolves once
/// the server has stopped (after `shutdown`).
pub fn spawn(
    listener: std::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .thread_name("sidewatch-api-blocking")
        .build()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sidewatch-api".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, state, shutdown).await,
                    Err(e) => tracing::error!(component = "api", "api server failed: {e}"),
                }
            });
            // A handler still waiting for a lock does not hold the agent's exit.
            runtime.shutdown_background();
            let _ = done_tx.send(());
        })?;
    Ok(done_rx)
}

/// `read` (which takes the pipeline's locks: the engine, the deployments) on the API
/// runtime's blocking pool: the sink holds those locks while it ingests a batch, for
/// long stretches when the agent is CPU-throttled, and the API thread must keep
/// answering `/healthz` meanwhile.
async fn locked<R: Send + 'static>(
    state: &Arc<ApiState>,
    read: impl FnOnce(&ApiState) -> R + Send + 'static,
) -> R {
    let state = state.clone();
    crate::off_worker(move || read(&state)).await
}

/// Serves until `shutdown`.
async fn serve(listener: TcpListener, state: Arc<ApiState>, shutdown: CancellationToken) {
    let app = router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(component = "api", "api server failed: {e}");
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    let sources_ready = state
        .sources
        .iter()
        .all(|s| s.ready.load(Ordering::Relaxed));
    if state.ready.load(Ordering::Relaxed) && sources_ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let body = locked(&state, exposition).await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// Every series of the agent as Prometheus text: what `/metrics` serves and the OTLP
/// metrics exporter sends.
pub fn exposition(state: &ApiState) -> String {
    let mut body = state.telemetry.render();
    if let Some(engine) = &state.rules {
        crate::rule_runner::exposition(engine, &mut body);
    }
    if let Some((deployments, _)) = &state.deployments {
        use std::fmt::Write as _;
        let d = crate::deploy_runner::lock(deployments);
        let _ = writeln!(
            body,
            "# HELP sidewatch_deployment_verdict The verdict of each version's latest verified deployment (1)"
        );
        let _ = writeln!(body, "# TYPE sidewatch_deployment_verdict gauge");
        for (version, verdict) in d.verdict_series() {
            let version = version.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                body,
                "sidewatch_deployment_verdict{{version=\"{version}\",verdict=\"{}\"}} 1",
                verdict.name()
            );
        }
    }
    if let Some((notify, receivers)) = &state.notify {
        notify.exposition(receivers, &mut body);
    }
    body
}

async fn status(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    Json(locked(&state, status_document).await)
}

/// The `/api/v1/status` document (also what the status page shows).
fn status_document(state: &ApiState) -> serde_json::Value {
    let sources: Vec<serde_json::Value> = state
        .sources
        .iter()
        .map(|s| {
            let files = s.files.lock().map(|f| f.clone()).unwrap_or_default();
            serde_json::json!({
                "name": &*s.name,
                "format": s.format,
                "paths": s.paths,
                "ready": s.ready.load(Ordering::Relaxed),
                "files": files,
            })
        })
        .collect();
    let (depth, capacity) = (state.queue.depth(), state.queue.capacity());
    let probes: Vec<serde_json::Value> = state
        .probes
        .lock()
        .map(|board| {
            board
                .values()
                .map(|p| {
                    serde_json::json!({
                        "name": &*p.probe,
                        "success": p.success,
                        "time": rfc3339(p.time_unix_nano),
                        "duration_seconds": p.duration_seconds,
                        "status_code": p.status_code,
                        "version": p.version,
                        "error": p.error,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let deployments = state.deployments.as_ref().map(|(d, _)| {
        let d = crate::deploy_runner::lock(d);
        serde_json::json!({
            "live": d.tracker.live_version(),
            "verifying": d.verifying(),
            "latest": d.tracker.live(),
        })
    });
    let now = crate::rule_runner::unix_nanos();
    let notifications = state.notify.as_ref().map(|(n, receivers)| {
        let outbox = crate::notify_runner::lock(&n.outbox_depth).clone();
        let silences = crate::notify_runner::lock(&n.silences);
        let active = silences
            .list()
            .filter(|s| s.state(now) == crate::notify::silence::SilenceState::Active)
            .count();
        serde_json::json!({
            "receivers": receivers,
            "outbox": outbox,
            "active_silences": active,
        })
    });
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "service": state.service,
        "config": state.config_origin,
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "ready": state.ready.load(Ordering::Relaxed),
        "sources": sources,
        "queues": {
            "log_batches": { "depth": depth, "capacity": capacity },
            "notifications": notifications.as_ref().map(|n| n["outbox"].clone()),
            "otlp_logs_bytes": state.otlp_queue_bytes.as_ref().map(|g| g.get() as u64),
        },
        "rule_groups": state.rules.as_ref().map(rule_groups).unwrap_or_default(),
        "probes": probes,
        "deployments": deployments,
        "notifications": notifications,
    })
}

use crate::notify::payload::{annotations_json, labels_json};
use crate::parse::time::rfc3339;

fn rule_groups(engine: &crate::rule_runner::SharedEngine) -> Vec<serde_json::Value> {
    let engine = crate::rule_runner::lock(engine);
    engine
        .rules
        .groups
        .iter()
        .zip(&engine.health)
        .map(|(group, health)| {
            let rules: Vec<serde_json::Value> = group
                .rules
                .iter()
                .zip(health)
                .map(|(rule, h)| {
                    serde_json::json!({
                        "name": rule.name,
                        "type": match rule.kind {
                            crate::rules::file::RuleKind::Record => "recording",
                            crate::rules::file::RuleKind::Alert => "alerting",
                        },
                        "query": rule.expr_text.trim(),
                        "health": match (&h.last_evaluation, &h.last_error) {
                            (None, _) => "unknown",
                            (Some(_), None) => "ok",
                            (Some(_), Some(_)) => "err",
                        },
                        "last_error": h.last_error,
                        "last_evaluation": h.last_evaluation.map(rfc3339),
                        "series": h.series,
                    })
                })
                .collect();
            serde_json::json!({
                "name": group.name,
                "file": group.file.display().to_string(),
                "interval_seconds": group.interval.as_secs_f64(),
                "rules": rules,
            })
        })
        .collect()
}

/// Active alerts in the shape of Prometheus' `/api/v1/alerts`.
async fn alerts(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let alerts = locked(&state, active_alerts).await;
    Json(serde_json::json!({ "status": "success", "data": { "alerts": alerts } }))
}

/// The pending and firing alerts, each in Prometheus' shape: the rules' alerts, then a
/// failed deployment's `DeploymentVerdict`.
fn active_alerts(state: &ApiState) -> Vec<serde_json::Value> {
    let alerts: Vec<serde_json::Value> = match &state.rules {
        Some(engine) => {
            let engine = crate::rule_runner::lock(engine);
            engine
                .active_alerts()
                .into_iter()
                .map(|a| {
                    serde_json::json!({
                        "labels": labels_json(&a.labels),
                        "annotations": annotations_json(&a.annotations),
                        "state": a.state.name(),
                        "activeAt": rfc3339(a.active_at),
                        "firedAt": a.fired_at.map(rfc3339),
                        "value": a.value.to_string(),
                    })
                })
                .collect()
        }
        None => Vec::new(),
    };
    let mut alerts = alerts;
    if let Some((deployments, _)) = &state.deployments {
        let d = crate::deploy_runner::lock(deployments);
        // A failed verdict fires `DeploymentVerdict` until the next deployment starts.
        if let Some(alert) =
            crate::notify_runner::deployment_alert(&d.tracker, &state.service, false, "")
        {
            alerts.push(serde_json::json!({
                "labels": labels_json(&alert.labels),
                "annotations": annotations_json(&alert.annotations),
                "state": "firing",
                "activeAt": rfc3339(alert.starts_at),
                "firedAt": rfc3339(alert.starts_at),
                "value": "1",
            }));
        }
    }
    alerts
}

fn no_deployments() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "deployments are not enabled" })),
    )
        .into_response()
}

async fn list_deployments(State(state): State<Arc<ApiState>>) -> Response {
    match locked(&state, deployment_history).await {
        Some(history) => Json(history).into_response(),
        None => no_deployments(),
    }
}

/// The `/api/v1/deployments` document: the live version and the history, oldest
/// first; `None` when deployments are off.
fn deployment_history(state: &ApiState) -> Option<serde_json::Value> {
    let (deployments, _) = state.deployments.as_ref()?;
    let d = crate::deploy_runner::lock(deployments);
    Some(serde_json::json!({
        "live": d.tracker.live_version(),
        "deployments": d.tracker.history,
    }))
}

/// The newest deployment of a version (or the one with that id).
async fn get_deployment(
    State(state): State<Arc<ApiState>>,
    axum::extract::Path(version): axum::extract::Path<String>,
) -> Response {
    locked(&state, move |state| {
        let Some((deployments, _)) = &state.deployments else {
            return no_deployments();
        };
        let d = crate::deploy_runner::lock(deployments);
        match d.find(&version).or_else(|| d.tracker.find_id(&version)) {
            Some(deployment) => Json(deployment).into_response(),
            None => (
                StatusCode::NOT_FOUND,
                Json(
                    serde_json::json!({ "error": format!("no deployment of version {version:?}") }),
                ),
            )
                .into_response(),
        }
    })
    .await
}

async fn get_baseline(
    State(state): State<Arc<ApiState>>,
    axum::extract::Path(version): axum::extract::Path<String>,
) -> Response {
    locked(&state, move |state| {
        let Some((deployments, _)) = &state.deployments else {
            return no_deployments();
        };
        let d = crate::deploy_runner::lock(deployments);
        if !d.verifier.has_version(&version) {
            return (
                StatusCode::NOT_FOUND,
                Json(
                    serde_json::json!({ "error": format!("no evidence of version {version:?} here") }),
                ),
            )
                .into_response();
        }
        Json(d.verifier.summary(&version)).into_response()
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Announcement {
    version: String,
    id: Option<String>,
    #[serde(default)]
    meta: serde_json::Value,
}

async fn announce_deployment(
    State(state): State<Arc<ApiState>>,
    body: axum::body::Bytes,
) -> Response {
    let Some((_, started)) = &state.deployments else {
        return no_deployments();
    };
    let announcement: Announcement = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({
                    "error": format!("expected {{\"version\": \"1.4.3\", \"id\": \"...\", \"meta\": {{...}}}}: {e}")
                })),
            )
                .into_response();
        }
    };
    if announcement.version.trim().is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": "`version` is empty" })),
        )
            .into_response();
    }
    let (deployment, event) = locked(&state, move |state| {
        let (deployments, _) = state.deployments.as_ref().expect("checked above");
        crate::deploy_runner::lock(deployments).announce(
            announcement.version.trim(),
            announcement.id,
            announcement.meta,
            crate::rule_runner::unix_nanos(),
        )
    })
    .await;
    if let Some(event) = event {
        crate::deploy_runner::log_event(&event);
        let _ = started.send(deployment.clone());
    }
    (StatusCode::CREATED, Json(deployment)).into_response()
}

fn no_notifier() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "the notifier is not running" })),
    )
        .into_response()
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Every silence, in Alertmanager v2's shape.
async fn list_silences(State(state): State<Arc<ApiState>>) -> Response {
    let Some((notify, _)) = &state.notify else {
        return no_notifier();
    };
    let now = crate::rule_runner::unix_nanos();
    let silences = crate::notify_runner::lock(&notify.silences);
    // Alertmanager's order: active by end, then pending by start, then expired.
    let list: Vec<serde_json::Value> = silences
        .sorted(now)
        .iter()
        .map(|s| s.to_api_json(now))
        .collect();
    Json(serde_json::Value::Array(list)).into_response()
}

async fn get_silence(
    State(state): State<Arc<ApiState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let Some((notify, _)) = &state.notify else {
        return no_notifier();
    };
    let now = crate::rule_runner::unix_nanos();
    match crate::notify_runner::lock(&notify.silences).get(&id) {
        Some(silence) => Json(silence.to_api_json(now)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": "no silence with this id" })),
        )
            .into_response(),
    }
}

/// Creates a silence (or updates the one whose `id` is given), as Alertmanager's
/// `POST /api/v2/silences`: `{"silenceID": "…"}`.
async fn post_silence(State(state): State<Arc<ApiState>>, body: axum::body::Bytes) -> Response {
    let Some((notify, _)) = &state.notify else {
        return no_notifier();
    };
    let json: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("the body is not JSON: {e}")),
    };
    let silence = match crate::notify::silence::Silence::from_api_json(&json) {
        Ok(s) => s,
        Err(e) => return bad_request(e.to_string()),
    };
    let now = crate::rule_runner::unix_nanos();
    let added = crate::notify_runner::lock(&notify.silences).add(
        silence,
        now,
        crate::notify_runner::new_id,
    );
    let id = match added {
        Ok(id) => id,
        Err(e) => return bad_request(e.to_string()),
    };
    if let Err(e) = notify.save_silences() {
        tracing::error!(component = "api", "cannot save the silences: {e}");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": "the silence is active but could not be saved" })),
        )
            .into_response();
    }
    tracing::info!(component = "api", silence = id, "silence saved");
    (StatusCode::OK, Json(serde_json::json!({ "silenceID": id }))).into_response()
}

async fn expire_silence(
    State(state): State<Arc<ApiState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let Some((notify, _)) = &state.notify else {
        return no_notifier();
    };
    let now = crate::rule_runner::unix_nanos();
    let expired = crate::notify_runner::lock(&notify.silences).expire(&id, now);
    match expired {
        Ok(()) => {
            if let Err(e) = notify.save_silences() {
                tracing::error!(component = "api", "cannot save the silences: {e}");
            }
            tracing::info!(component = "api", silence = id, "silence expired");
            StatusCode::OK.into_response()
        }
        Err(e) => {
            let status = match e {
                crate::notify::silence::SilenceError::NotFound(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
        }
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "not found" })),
    )
        .into_response()
}

async fn require_token(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(presented_token);
    match presented {
        Some(p) if constant_time_eq(&p, token.expose().as_bytes()) => next.run(request).await,
        // The status page is for browsers: ask for Basic auth, so the browser prompts.
        _ if request.uri().path() == "/" => status_page::unauthorized(),
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
            Json(serde_json::json!({ "error": "missing or wrong bearer token" })),
        )
            .into_response(),
    }
}

/// The token an `Authorization` header presents: a bearer token, or the password of
/// HTTP Basic auth (any user name), for browsers.
fn presented_token(authorization: &str) -> Option<Vec<u8>> {
    if let Some(bearer) = authorization.strip_prefix("Bearer ") {
        return Some(bearer.as_bytes().to_vec());
    }
    let credentials = status_page::decode_base64(authorization.strip_prefix("Basic ")?.trim())?;
    let colon = credentials.iter().position(|&b| b == b':')?;
    Some(credentials[colon + 1..].to_vec())
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// GET `url` and return the status code and body (for `healthcheck` and tests).
pub async fn http_get(url: &str, token: Option<&str>) -> anyhow::Result<(u16, String)> {
    http_request("GET", url, token, None).await
}

/// One plain-HTTP request to a sidewatch API (the CLI verbs, peers, tests): the status
/// code and body. `body` is sent as JSON.
pub async fn http_request(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<String>,
) -> anyhow::Result<(u16, String)> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::builder().method(method).uri(url);
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let body = Full::new(bytes::Bytes::from(body.unwrap_or_default()));
    let response = client.request(request.body(body)?).await?;
    let code = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(engine: crate::rule_runner::SharedEngine) -> Arc<ApiState> {
        let (_, _, queue) = crate::channel::batch_channel(4);
        Arc::new(ApiState {
            telemetry: Telemetry::new(),
            ready: Arc::new(AtomicBool::new(true)),
            token: None,
            service: ServiceConfig {
                name: "app".into(),
                environment: "test".into(),
            },
            config_origin: "test".into(),
            started: Instant::now(),
            sources: Vec::new(),
            queue,
            rules: Some(engine),
            probes: Default::default(),
            deployments: None,
            notify: None,
            otlp_queue_bytes: None,
        })
    }

    /// `/healthz` answers while `/metrics` waits for the engine's lock (which the sink
    /// holds while it ingests a batch, for seconds when the agent is CPU-throttled): the
    /// waiting happens on the API runtime's blocking pool, not on the API's thread. With
    /// the lock taken on that thread, the `/healthz` below would never be answered.
    #[test]
    fn healthz_answers_while_metrics_waits_for_the_engine() {
        use crate::rules::engine::{Engine, EngineOptions};
        let engine: crate::rule_runner::SharedEngine = Arc::new(std::sync::Mutex::new(
            Engine::new(Default::default(), EngineOptions::default()),
        ));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let stop = CancellationToken::new();
        let held = crate::rule_runner::lock(&engine);
        let done = spawn(listener, state_with(engine.clone()), stop.clone()).expect("api");
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        client.block_on(async {
            let metrics_url = format!("{base}/metrics");
            let metrics = tokio::spawn(async move { http_get(&metrics_url, None).await });
            // `/metrics` is parked on the lock before `/healthz` is asked.
            tokio::task::yield_now().await;
            let bound = std::time::Duration::from_secs(10);
            for _ in 0..3 {
                let healthz =
                    tokio::time::timeout(bound, http_get(&format!("{base}/healthz"), None))
                        .await
                        .expect("/healthz answered within 10 s while /metrics waits")
                        .expect("/healthz request");
                assert_eq!(healthz, (200, "ok\n".to_string()));
            }
            assert!(!metrics.is_finished(), "/metrics waits for the engine");
            drop(held);
            let (code, body) = tokio::time::timeout(bound, metrics)
                .await
                .expect("/metrics answered once the engine is free")
                .expect("task")
                .expect("/metrics request");
            assert_eq!(code, 200);
            assert!(body.contains("# TYPE"), "{body}");
        });
        stop.cancel();
        client
            .block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(10), done).await
            })
            .expect("the API thread stops after shutdown")
            .expect("done sent");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn presented_tokens() {
        assert_eq!(presented_token("Bearer s3cret"), Some(b"s3cret".to_vec()));
        // "x:s3cret", "user:pa:ss" (the password is everything after the first colon).
        assert_eq!(
            presented_token("Basic eDpzM2NyZXQ="),
            Some(b"s3cret".to_vec())
        );
        assert_eq!(
            presented_token("Basic dXNlcjpwYTpzcw=="),
            Some(b"pa:ss".to_vec())
        );
        // No colon, not base64, another scheme.
        assert_eq!(presented_token("Basic czNjcmV0"), None);
        assert_eq!(presented_token("Basic !!!"), None);
        assert_eq!(presented_token("Digest s3cret"), None);
        assert_eq!(presented_token("s3cret"), None);
    }
}
