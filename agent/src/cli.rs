//! The command line: clap definitions and the verbs that are not the agent itself.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};

#[derive(Debug, Parser)]
#[command(
    name = "sidewatch",
    version,
    about = "Observability sidecar for Python web services"
)]
pub struct Cli {
    /// Config file [default: $SIDEWATCH_CONFIG, then ./sidewatch.yaml, else built-in defaults]
    #[arg(short = 'c', long = "config", env = "SIDEWATCH_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default with no verb)
    Run,
    /// Validate the config; print every problem as file:line:col and exit 1 if any
    Check,
    /// Run rule unit tests (like `promtool test rules`); exit 0 when all pass, 1 otherwise
    Test {
        /// Rule test files
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the configured rules over recorded logs and print what would have fired
    Replay {
        /// A recorded log file (repeat for more); records' own timestamps are the clock
        #[arg(long = "from", required = true)]
        from: Vec<PathBuf>,
        /// Output format
        #[arg(long, value_enum, default_value = "table")]
        format: crate::replay::ReplayFormat,
    },
    /// Tell a running agent that VERSION is now live (from a CI/CD pipeline)
    Deploy {
        #[arg(long)]
        version: String,
        /// The deployment's id in your pipeline (default: version@time)
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Wait for a deployment's verdict: exit 0 pass, 1 fail, 2 inconclusive or timeout
    Verify {
        /// The newest deployment of this version
        #[arg(long, required_unless_present = "id", conflicts_with = "id")]
        version: Option<String>,
        /// Exactly this deployment
        #[arg(long)]
        id: Option<String>,
        /// Block until the verdict (without it: print the state now)
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Probes, firing alerts and deployments of a running agent
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Manage silences on a running agent (like amtool silence)
    Silence {
        #[command(subcommand)]
        action: SilenceAction,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Exit 0 if a running agent's /healthz answers (for container HEALTHCHECK)
    Healthcheck {
        /// The agent's API [default: http://<api.listen of the config>, else http://127.0.0.1:9777]
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum SilenceAction {
    /// Silence the alerts that match every MATCHER (`alertname="HighErrorRatio"`,
    /// `path=~"/api/.*"`, `env!="dev"`); prints the new silence's id
    Add {
        #[arg(required = true)]
        matchers: Vec<String>,
        /// Why (required, as in Alertmanager)
        #[arg(long)]
        comment: String,
        /// Who [default: $USER]
        #[arg(long, short = 'a', env = "USER")]
        author: Option<String>,
        /// How long from now (or from --start)
        #[arg(long, short = 'd', default_value = "1h", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Start later than now (RFC 3339)
        #[arg(long)]
        start: Option<String>,
    },
    /// Active and pending silences (with --expired, the expired ones too)
    List {
        #[arg(long)]
        expired: bool,
    },
    /// End silences now
    Expire {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// How the verbs that talk to a running agent reach it.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// The agent's API [default: http://127.0.0.1:9777]
    // Global: `sidewatch silence add … --url U` puts it after the sub-verb.
    #[arg(long, default_value = "http://127.0.0.1:9777", global = true)]
    pub url: String,
    /// Bearer token [default: $SIDEWATCH_TOKEN]
    #[arg(long, env = "SIDEWATCH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

/// Loads the config the way every verb does: the given or default file, else the
/// built-in defaults.
pub fn load_config(explicit: Option<&std::path::Path>) -> Result<Config, config::ConfigErrors> {
    match config::resolve_path(explicit) {
        Some(path) => config::load(&path),
        // The built-in defaults, plus the standard OTEL_* variables (export.otlp).
        None => Ok(Config::defaults_with_env(&|name| std::env::var(name).ok())),
    }
}

/// `sidewatch check`.
pub fn check(explicit: Option<&std::path::Path>) -> ExitCode {
    match load_config(explicit) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            let rules = match crate::rules::load(&config.rules) {
                Ok(rules) => rules,
                Err(errors) => {
                    for error in &errors {
                        eprintln!("{error}");
                    }
                    let n = errors.len();
                    eprintln!("{n} problem{} found", if n == 1 { "" } else { "s" });
                    return ExitCode::FAILURE;
                }
            };
            let sources: Vec<String> = config
                .logs
                .iter()
                .map(|s| {
                    let mut what = format!("{}, {}", s.format.name(), s.paths.join(", "));
                    if let Some(drop) = &s.drop {
                        what.push_str(&format!(", drop '{}'", drop.text));
                    }
                    if !s.redact.is_empty() {
                        what.push_str(&format!(", {} redact rule(s)", s.redact.len()));
                    }
                    format!("{} ({what})", s.name)
                })
                .collect();
            println!(
                "{}: ok: {} log source(s): {}",
                config.origin(),
                config.logs.len(),
                sources.join("; ")
            );
            for warning in &rules.warnings {
                eprintln!("warning: {warning}");
            }
            let count: usize = rules.groups.iter().map(|g| g.rules.len()).sum();
            let files: Vec<String> = if config.rules.builtin_pack {
                vec![crate::rules::BUILTIN_PACK_NAME.to_string()]
            } else {
                rules
                    .files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect()
            };
            println!(
                "{}: ok: {} rule group(s), {count} rule(s) from {} file(s){}{}",
                config.origin(),
                rules.groups.len(),
                files.len(),
                if files.is_empty() { "" } else { ": " },
                files.join(", ")
            );
            let alerting = &config.alerting;
            let mut receivers: Vec<String> = alerting
                .receivers
                .iter()
                .map(|r| {
                    let kinds: Vec<&str> = [
                        r.email.as_ref().map(|_| "email"),
                        r.webhook.as_ref().map(|_| "webhook"),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    format!("{} ({})", r.name, kinds.join(", "))
                })
                .collect();
            if receivers.is_empty() {
                receivers.push("log (the agent's log)".into());
            }
            fn routes(route: &crate::notify::config::Route) -> usize {
                1 + route.routes.iter().map(routes).sum::<usize>()
            }
            let urls: usize = alerting.alertmanagers.iter().map(|a| a.urls.len()).sum();
            println!(
                "{}: ok: notifications: {} route(s) to {}; {urls} alertmanager URL(s)",
                config.origin(),
                routes(&alerting.route),
                receivers.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            let n = errors.0.len();
            eprintln!("{n} problem{} found", if n == 1 { "" } else { "s" });
            ExitCode::FAILURE
        }
    }
}

/// `sidewatch healthcheck`.
pub async fn healthcheck(explicit: Option<&std::path::Path>, url: Option<String>) -> ExitCode {
    let url = url.unwrap_or_else(|| {
        let listen = load_config(explicit)
            .map(|c| c.api.listen)
            .unwrap_or_else(|_| Config::defaults().api.listen);
        // An agent listening on every interface is reached on loopback.
        let host = if listen.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            listen.ip().to_string()
        };
        format!("http://{host}:{}", listen.port())
    });
    let target = format!("{}/healthz", url.trim_end_matches('/'));
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        crate::api::http_get(&target, None),
    )
    .await;
    match result {
        Ok(Ok((200, _))) => ExitCode::SUCCESS,
        Ok(Ok((code, _))) => {
            eprintln!("unhealthy: {target} answered {code}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("unhealthy: cannot reach {target}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("unhealthy: {target} did not answer within 5s");
            ExitCode::FAILURE
        }
    }
}

/// `sidewatch test`.
pub fn test(files: &[PathBuf]) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if crate::rules::unittest::run_files(files, &mut out) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `sidewatch replay`.
pub fn replay(
    explicit: Option<&std::path::Path>,
    from: &[PathBuf],
    format: crate::replay::ReplayFormat,
) -> ExitCode {
    let config = match load_config(explicit) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match crate::replay::run(&config, from, format, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn call(
    api: &ApiArgs,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<(u16, serde_json::Value), String> {
    let url = format!("{}{path}", api.url.trim_end_matches('/'));
    let (code, text) = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        crate::api::http_request(method, &url, api.token.as_deref(), body),
    )
    .await
    .map_err(|_| format!("{url} did not answer within 10s"))?
    .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let doc = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    if code == 401 {
        return Err(format!(
            "{url}: 401 unauthorized (pass --token or set $SIDEWATCH_TOKEN)"
        ));
    }
    Ok((code, doc))
}

/// `sidewatch deploy`.
pub async fn deploy(version: &str, id: Option<String>, api: &ApiArgs) -> ExitCode {
    let body = serde_json::json!({ "version": version, "id": id }).to_string();
    match call(api, "POST", "/api/v1/deployments", Some(body)).await {
        Ok((201, doc)) => {
            println!(
                "deployment {} of {} (previous: {}) registered",
                doc["id"].as_str().unwrap_or("?"),
                version,
                doc["previous"].as_str().unwrap_or("none")
            );
            ExitCode::SUCCESS
        }
        Ok((code, doc)) => {
            eprintln!(
                "error: the agent answered {code}: {}",
                doc["error"].as_str().unwrap_or(&doc.to_string())
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The verdict, `initial` for the first version seen (nothing to compare it with, so it
/// never gets one), else `verifying`.
fn deployment_state(doc: &serde_json::Value) -> &str {
    match doc["verdict"].as_str() {
        Some(verdict) => verdict,
        None if doc["initial"] == serde_json::Value::Bool(true) => "initial",
        None => "verifying",
    }
}

/// `{a="x", b="y"}` from a JSON object of labels, without `alertname` (printed first).
fn label_text(labels: &serde_json::Value) -> String {
    let pairs: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str().map_or(v.to_string(), |s| format!("{s:?}"))
            )
        })
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// One probe's line: `probe health: up 200 in 12 ms (version 1.4.2)`, or the error.
fn probe_text(p: &serde_json::Value) -> String {
    let name = p["name"].as_str().unwrap_or("?");
    let duration = p["duration_seconds"]
        .as_f64()
        .map(|d| format!(" in {:.0} ms", d * 1000.0))
        .unwrap_or_default();
    let code = p["status_code"]
        .as_u64()
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    let version = p["version"]
        .as_str()
        .map(|v| format!(" (version {v})"))
        .unwrap_or_default();
    if p["success"] == serde_json::Value::Bool(true) {
        format!("probe {name}: up{code}{duration}{version}")
    } else {
        let error = p["error"].as_str().unwrap_or("failed");
        format!("probe {name}: DOWN{code}{duration}: {error}")
    }
}

fn print_deployment(doc: &serde_json::Value) {
    println!(
        "{} {} (previous {}): {}",
        doc["id"].as_str().unwrap_or("?"),
        doc["version"].as_str().unwrap_or("?"),
        doc["previous"].as_str().unwrap_or("none"),
        deployment_state(doc)
    );
    for c in doc["checks"].as_array().into_iter().flatten() {
        let f = |k: &str| {
            c[k].as_f64()
                .map(|v| format!("{v:.4}"))
                .unwrap_or("-".into())
        };
        println!(
            "  {:<16} {:<13} baseline {} current {} (n {}/{}) p {}{}",
            c["name"].as_str().unwrap_or("?"),
            c["verdict"].as_str().unwrap_or("running"),
            f("baseline"),
            f("current"),
            c["n_baseline"],
            c["n_current"],
            c["p_value"]
                .as_f64()
                .map(|p| format!("{p:.2e}"))
                .unwrap_or("-".into()),
            c["new_values"]
                .as_array()
                .filter(|v| !v.is_empty())
                .map(|v| format!(
                    " new: {}",
                    v.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .unwrap_or_default()
        );
    }
}

/// `sidewatch verify`: 0 pass, 1 fail, 2 inconclusive or timeout (and errors).
pub async fn verify(
    version: Option<String>,
    id: Option<String>,
    wait: bool,
    timeout: std::time::Duration,
    api: &ApiArgs,
) -> ExitCode {
    let key = id.or(version).unwrap_or_default();
    let path = format!(
        "/api/v1/deployments/{}",
        crate::deploy_runner::encode_path(&key)
    );
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match call(api, "GET", &path, None).await {
            Ok((200, doc)) => match doc["verdict"].as_str() {
                Some(verdict) => {
                    print_deployment(&doc);
                    return match verdict {
                        "pass" => ExitCode::SUCCESS,
                        "fail" => ExitCode::from(1),
                        _ => ExitCode::from(2),
                    };
                }
                None if doc["initial"].as_bool() == Some(true) => {
                    print_deployment(&doc);
                    eprintln!(
                        "{key} is the initial version this agent saw: there is nothing to verify it against"
                    );
                    return ExitCode::from(2);
                }
                None if !wait => {
                    print_deployment(&doc);
                    return ExitCode::from(2);
                }
                None => {}
            },
            Ok((404, _)) if wait => {}
            Ok((code, doc)) => {
                eprintln!(
                    "error: the agent answered {code}: {}",
                    doc["error"].as_str().unwrap_or(&doc.to_string())
                );
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!(
                "timed out after {} waiting for the verdict of {key}",
                humantime::format_duration(timeout)
            );
            return ExitCode::from(2);
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// `sidewatch status`.
pub async fn status(api: &ApiArgs) -> ExitCode {
    let status = match call(api, "GET", "/api/v1/status", None).await {
        Ok((200, doc)) => doc,
        Ok((code, doc)) => {
            eprintln!("error: the agent answered {code}: {doc}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "sidewatch {} — {} ({}), up {:.0}s",
        status["version"].as_str().unwrap_or("?"),
        status["service"]["name"].as_str().unwrap_or("?"),
        status["service"]["environment"].as_str().unwrap_or("?"),
        status["uptime_seconds"].as_f64().unwrap_or(0.0)
    );
    for p in status["probes"].as_array().into_iter().flatten() {
        println!("{}", probe_text(p));
    }
    let notifications = &status["notifications"];
    if notifications.is_object() {
        let waiting: u64 = notifications["outbox"]
            .as_object()
            .map(|o| o.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0);
        let receivers: Vec<&str> = notifications["receivers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .collect();
        println!(
            "notifications: receivers {}, {waiting} waiting in the outbox, {} active silence(s)",
            if receivers.is_empty() {
                "none".to_string()
            } else {
                receivers.join(", ")
            },
            notifications["active_silences"].as_u64().unwrap_or(0)
        );
    }
    if let Ok((200, alerts)) = call(api, "GET", "/api/v1/alerts", None).await {
        let list = alerts["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let firing: Vec<&serde_json::Value> =
            list.iter().filter(|a| a["state"] == "firing").collect();
        println!(
            "alerts: {} firing, {} pending",
            firing.len(),
            list.len() - firing.len()
        );
        for a in firing {
            println!(
                "  {} {}",
                a["labels"]["alertname"].as_str().unwrap_or("?"),
                label_text(&a["labels"])
            );
        }
    }
    if let Ok((200, deployments)) = call(api, "GET", "/api/v1/deployments", None).await {
        println!(
            "live version: {}",
            deployments["live"].as_str().unwrap_or("unknown")
        );
        let list = deployments["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for d in list.iter().rev().take(5) {
            print_deployment(d);
        }
    }
    ExitCode::SUCCESS
}

/// `sidewatch silence add|list|expire`.
pub async fn silence(action: &SilenceAction, api: &ApiArgs) -> ExitCode {
    match action {
        SilenceAction::Add {
            matchers,
            comment,
            author,
            duration,
            start,
        } => {
            let mut list = Vec::new();
            for text in matchers {
                match crate::notify::matcher::Matcher::parse(text) {
                    Ok(m) => {
                        use crate::notify::matcher::MatchOp;
                        list.push(serde_json::json!({
                            "name": m.name,
                            "value": m.value,
                            "isRegex": matches!(m.op, MatchOp::Regex | MatchOp::NotRegex),
                            "isEqual": matches!(m.op, MatchOp::Equal | MatchOp::Regex),
                        }));
                    }
                    Err(e) => {
                        eprintln!("error: invalid matcher `{text}`: {}", e.message);
                        eprintln!(
                            "hint: write it like alertname=\"HighErrorRatio\" or path=~\"/api/.*\""
                        );
                        return ExitCode::FAILURE;
                    }
                }
            }
            let starts_at = match start {
                Some(text) => match crate::parse::time::parse_iso8601(text.as_bytes()) {
                    Some(t) => t,
                    None => {
                        eprintln!(
                            "error: --start `{text}` is not an RFC 3339 time (2026-11-24T10:00:00Z)"
                        );
                        return ExitCode::FAILURE;
                    }
                },
                None => crate::rule_runner::unix_nanos(),
            };
            let ends_at =
                starts_at.saturating_add(i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX));
            let body = serde_json::json!({
                "matchers": list,
                "startsAt": crate::parse::time::rfc3339(starts_at),
                "endsAt": crate::parse::time::rfc3339(ends_at),
                "createdBy": author.clone().unwrap_or_else(|| "sidewatch".into()),
                "comment": comment,
            });
            match call(api, "POST", "/api/v1/silences", Some(body.to_string())).await {
                Ok((200, doc)) => {
                    println!("{}", doc["silenceID"].as_str().unwrap_or("?"));
                    ExitCode::SUCCESS
                }
                Ok((code, doc)) => api_refused(code, &doc),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        SilenceAction::List { expired } => {
            let doc = match call(api, "GET", "/api/v1/silences", None).await {
                Ok((200, doc)) => doc,
                Ok((code, doc)) => return api_refused(code, &doc),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            println!(
                "{:<34} {:<8} {:<22} {:<22} {:<12} MATCHERS / COMMENT",
                "ID", "STATE", "STARTS", "ENDS", "CREATED BY"
            );
            for s in doc.as_array().into_iter().flatten() {
                let state = s["status"]["state"].as_str().unwrap_or("?");
                if state == "expired" && !expired {
                    continue;
                }
                let matchers: Vec<String> = s["matchers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        let op = match (
                            m["isEqual"].as_bool() != Some(false),
                            m["isRegex"].as_bool() == Some(true),
                        ) {
                            (true, false) => "=",
                            (false, false) => "!=",
                            (true, true) => "=~",
                            (false, true) => "!~",
                        };
                        format!(
                            "{}{op}{:?}",
                            m["name"].as_str().unwrap_or(""),
                            m["value"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                println!(
                    "{:<34} {:<8} {:<22} {:<22} {:<12} {} — {}",
                    s["id"].as_str().unwrap_or("?"),
                    state,
                    s["startsAt"].as_str().unwrap_or("?"),
                    s["endsAt"].as_str().unwrap_or("?"),
                    s["createdBy"].as_str().unwrap_or("?"),
                    matchers.join(" "),
                    s["comment"].as_str().unwrap_or("")
                );
            }
            ExitCode::SUCCESS
        }
        SilenceAction::Expire { ids } => {
            let mut failed = false;
            for id in ids {
                match call(api, "DELETE", &format!("/api/v1/silences/{id}"), None).await {
                    Ok((200, _)) => println!("expired {id}"),
                    Ok((code, doc)) => {
                        api_refused(code, &doc);
                        failed = true;
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

fn api_refused(code: u16, doc: &serde_json::Value) -> ExitCode {
    eprintln!(
        "error: the agent answered {code}: {}",
        doc["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| doc.to_string())
    );
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_lines_are_text_not_json() {
        assert_eq!(
            probe_text(
                &json!({"name": "health", "success": true, "duration_seconds": 0.0123,
                "status_code": 200, "version": "1.4.2", "error": null})
            ),
            "probe health: up 200 in 12 ms (version 1.4.2)"
        );
        assert_eq!(
            probe_text(
                &json!({"name": "db", "success": false, "duration_seconds": 2.0,
                "status_code": null, "error": "connection refused"})
            ),
            "probe db: DOWN in 2000 ms: connection refused"
        );
        assert_eq!(
            label_text(&json!({"alertname": "HighErrorRate", "path": "/cart", "severity": "page"})),
            r#"{path="/cart", severity="page"}"#
        );
        assert_eq!(
            deployment_state(&json!({"initial": true, "verdict": null})),
            "initial"
        );
        assert_eq!(deployment_state(&json!({"verdict": null})), "verifying");
        assert_eq!(deployment_state(&json!({"verdict": "fail"})), "fail");
    }
}
