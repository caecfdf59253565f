//! `GET /`: the status page, one self-contained HTML page for people (SPEC "HTTP API").
//!
//! It is rendered on the server from the same documents the JSON endpoints serve
//! (`/api/v1/status`, `/api/v1/alerts`, `/api/v1/deployments`, built by the functions in
//! `api/mod.rs`), so the page never disagrees with the API: the service and its live
//! version, the probes, the pending and firing alerts, the deployments newest first with
//! their verdicts and each check's evidence, and the queues and sources. No script, no
//! external asset: inline CSS and `<meta http-equiv="refresh">` every
//! [`REFRESH_SECONDS`]. Every string that comes from logs, labels, probes or the config is
//! untrusted and goes through [`Esc`]; the `Content-Security-Policy` forbids scripts and
//! every fetch anyway.
//!
//! Auth: when `api.token` is set the page is guarded like the rest of the API, but a
//! browser cannot send a bearer header, so the guard also takes HTTP Basic auth whose
//! password is the token (any user name), compared in constant time like the bearer. A
//! request for `/` without valid credentials gets 401 with
//! `WWW-Authenticate: Basic realm="sidewatch"`, so the browser asks for them.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiState;
use crate::parse::time::{parse_iso8601, rfc3339};

/// Seconds between the page's reloads.
const REFRESH_SECONDS: u32 = 5;
/// How many deployments the page shows, newest first (the API has the whole history).
const DEPLOYMENTS_SHOWN: usize = 20;
/// No script, no fetch, no frame: only the inline stylesheet. `default-src` does not
/// cover framing, hence `frame-ancestors`.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

pub(super) async fn status_page(State(state): State<Arc<ApiState>>) -> Response {
    let (status, alerts, deployments) = super::locked(&state, |state| {
        (
            super::status_document(state),
            super::active_alerts(state),
            super::deployment_history(state),
        )
    })
    .await;
    let page = Page {
        status: &status,
        alerts: &alerts,
        deployments: deployments.as_ref(),
        now: crate::rule_runner::unix_nanos(),
    };
    html(StatusCode::OK, render(&page))
}

/// The answer to a request for the page without valid credentials: a Basic challenge,
/// so a browser prompts for the token.
pub(super) fn unauthorized() -> Response {
    let mut response = html(
        StatusCode::UNAUTHORIZED,
        "<!doctype html><title>sidewatch</title><p>sign in with the API token as the \
         password (any user name)</p>\n"
            .to_string(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sidewatch\""),
    );
    response
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // Live state, possibly behind credentials: never from a cache.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// Standard base64 (RFC 4648, padding optional) to bytes, for Basic credentials;
/// `None` for anything else.
pub(super) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single character left over (6 bits) cannot be a whole byte: not base64.
    (bits < 6).then_some(out)
}

/// Displays a string HTML-escaped, fit for text and for quoted attribute values.
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// What one rendering shows: the API's documents and the time they were taken.
struct Page<'a> {
    /// The `/api/v1/status` document.
    status: &'a Value,
    /// `data.alerts` of `/api/v1/alerts`.
    alerts: &'a [Value],
    /// The `/api/v1/deployments` document; `None` when deployments are off.
    deployments: Option<&'a Value>,
    now: i64,
}

fn render(page: &Page<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a `String` cannot fail.
    let _ = write_page(&mut out, page);
    out
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f4f5f7;color:#1f2430}\
header{background:#1f2430;color:#fff;padding:14px 24px}\
header h1{margin:0;font-size:20px;font-weight:600}\
header p{margin:4px 0 0;color:#c9ced8}\
main{padding:4px 24px 16px;max-width:1280px}\
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:14px 0;padding:10px 16px 12px}\
h2{margin:0 0 6px;font-size:13px;text-transform:uppercase;letter-spacing:.05em;color:#4b5567}\
h3{margin:0;font-size:15px}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceff3;vertical-align:top}\
th{font-size:12px;font-weight:600;color:#5b6577}\
tr:last-child td{border-bottom:0}\
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.b{display:inline-block;min-width:52px;text-align:center;padding:0 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}\
.up,.pass{background:#1a7f37}.down,.fail,.firing{background:#cf222e}.pending{background:#9a6700}\
.running{background:#0969da}.inconclusive,.initial{background:#6e7781}\
.l{display:inline-block;background:#eef1f5;border-radius:3px;padding:0 5px;margin:1px 3px 1px 0;font:12px ui-monospace,Menlo,monospace}\
.m{color:#6e7781}.err{color:#a40e26}\
code{font:12px ui-monospace,Menlo,monospace}\
article{border-top:1px solid #eceff3;padding:8px 0 6px}article:first-of-type{border-top:0}\
article p{margin:2px 0 6px;color:#5b6577;font-size:13px}\
article table{margin-left:4px}table+table{margin-top:12px}\
footer{padding:0 24px 16px;color:#6e7781;font-size:12px}";

fn write_page(out: &mut String, page: &Page<'_>) -> fmt::Result {
    let status = page.status;
    let service = &status["service"];
    write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · sidewatch</title><style>{STYLE}</style></head><body>\n",
        Esc(&text(&service["name"])),
    )?;
    write_header(out, page)?;
    out.push_str("<main>\n");
    write_probes(out, page)?;
    write_alerts(out, page)?;
    write_deployments(out, page)?;
    write_queues(out, page)?;
    write!(
        out,
        "</main>\n<footer>rendered {} · refreshes every {REFRESH_SECONDS}s · \
         the same data as JSON: <a href=\"api/v1/status\">status</a>, \
         <a href=\"api/v1/alerts\">alerts</a>, <a href=\"api/v1/deployments\">deployments</a>\
         </footer>\n</body></html>\n",
        Esc(&short_time(&rfc3339(page.now))),
    )
}

fn write_header(out: &mut String, page: &Page<'_>) -> fmt::Result {
    let status = page.status;
    let service = &status["service"];
    let live = page
        .deployments
        .map(|d| text(&d["live"]))
        .filter(|v| !v.is_empty());
    write!(
        out,
        "<header><h1>{} <span class=\"m\">·</span> {}</h1><p>",
        Esc(&text(&service["name"])),
        Esc(&text(&service["environment"])),
    )?;
    match live {
        Some(version) => write!(out, "live version <b>{}</b> · ", Esc(&version))?,
        None if page.deployments.is_some() => out.push_str("no version seen yet · "),
        None => {}
    }
    let uptime = status["uptime_seconds"].as_f64().unwrap_or(0.0);
    writeln!(
        out,
        "sidewatch {} · up {} · config <code>{}</code>{}</p></header>",
        Esc(&text(&status["version"])),
        duration((uptime * 1e9) as i64),
        Esc(&text(&status["config"])),
        if status["ready"] == Value::Bool(true) {
            ""
        } else {
            " · <b>starting</b>"
        },
    )
}

fn write_probes(out: &mut String, page: &Page<'_>) -> fmt::Result {
    out.push_str("<section id=\"probes\"><h2>Probes</h2>\n");
    let probes = list(&page.status["probes"]);
    if probes.is_empty() {
        out.push_str("<p class=\"m\">No probe has run (none configured, or not yet).</p>");
    } else {
        out.push_str(
            "<table><tr><th>probe</th><th>state</th><th class=\"n\">latency</th>\
             <th class=\"n\">status</th><th>version</th><th>checked</th><th>last error</th></tr>\n",
        );
        for probe in probes {
            let up = probe["success"] == Value::Bool(true);
            let latency = probe["duration_seconds"]
                .as_f64()
                .map(|s| format!("{} ms", float(s * 1e3)))
                .unwrap_or_default();
            writeln!(
                out,
                "<tr><td>{}</td><td><span class=\"b {}\">{}</span></td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
                Esc(&text(&probe["name"])),
                if up { "up" } else { "down" },
                if up { "up" } else { "down" },
                Esc(&latency),
                Esc(&text(&probe["status_code"])),
                Esc(&text(&probe["version"])),
                Esc(&ago(&text(&probe["time"]), page.now)),
                Esc(&text(&probe["error"])),
            )?;
        }
        out.push_str("</table>");
    }
    out.push_str("</section>\n");
    Ok(())
}

fn write_alerts(out: &mut String, page: &Page<'_>) -> fmt::Result {
    out.push_str("<section id=\"alerts\"><h2>Alerts</h2>\n");
    if page.alerts.is_empty() {
        out.push_str("<p class=\"m\">No alert is pending or firing.</p></section>\n");
        return Ok(());
    }
    out.push_str(
        "<table><tr><th>state</th><th>alert</th><th>labels</th><th>since</th>\
         <th class=\"n\">value</th><th>summary</th></tr>\n",
    );
    // Firing first; otherwise the API's order (rule order, then labels).
    let mut alerts: Vec<&Value> = page.alerts.iter().collect();
    alerts.sort_by_key(|a| a["state"] != "firing");
    for alert in alerts {
        let firing = alert["state"] == "firing";
        let since = if firing {
            &alert["firedAt"]
        } else {
            &alert["activeAt"]
        };
        write!(
            out,
            "<tr><td><span class=\"b {0}\">{0}</span></td><td><b>{1}</b></td><td>",
            if firing { "firing" } else { "pending" },
            Esc(&text(&alert["labels"]["alertname"])),
        )?;
        if let Some(labels) = alert["labels"].as_object() {
            for (name, value) in labels.iter().filter(|(name, _)| *name != "alertname") {
                write!(
                    out,
                    "<span class=\"l\">{}={}</span>",
                    Esc(name),
                    Esc(&text(value))
                )?;
            }
        }
        writeln!(
            out,
            "</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            Esc(&ago(&text(since), page.now)),
            Esc(&number(&alert["value"])),
            Esc(&text(&alert["annotations"]["summary"])),
        )?;
    }
    out.push_str("</table></section>\n");
    Ok(())
}

fn write_deployments(out: &mut String, page: &Page<'_>) -> fmt::Result {
    out.push_str("<section id=\"deployments\"><h2>Deployments</h2>\n");
    let Some(doc) = page.deployments else {
        out.push_str("<p class=\"m\">Deployment tracking is off.</p></section>\n");
        return Ok(());
    };
    let history = list(&doc["deployments"]);
    if history.is_empty() {
        out.push_str("<p class=\"m\">No version seen yet.</p>");
    }
    for deployment in history.iter().rev().take(DEPLOYMENTS_SHOWN) {
        let state = verdict_class(deployment);
        write!(
            out,
            "<article><h3>{} <span class=\"b {state}\">{state}</span>",
            Esc(&text(&deployment["version"])),
        )?;
        let previous = text(&deployment["previous"]);
        if !previous.is_empty() {
            write!(out, " <span class=\"m\">after {}</span>", Esc(&previous))?;
        }
        let t0 = deployment["t0"].as_i64().unwrap_or(0);
        let sources: Vec<String> = list(&deployment["detected_by"]).iter().map(text).collect();
        write!(
            out,
            "</h3><p>t0 {} · detected by {}",
            Esc(&ago(&rfc3339(t0), page.now)),
            Esc(&sources.join(", ")),
        )?;
        if let Some(decided) = deployment["decided_at"].as_i64() {
            write!(out, " · decided {} after t0", duration(decided - t0))?;
        }
        write!(
            out,
            " · id <code>{}</code></p>",
            Esc(&text(&deployment["id"]))
        )?;
        let decided = !deployment["verdict"].is_null();
        write_checks(out, list(&deployment["checks"]), decided)?;
        out.push_str("</article>\n");
    }
    if history.len() > DEPLOYMENTS_SHOWN {
        write!(
            out,
            "<p class=\"m\">{} older deployments are in <a href=\"api/v1/deployments\">the API</a>.</p>",
            history.len() - DEPLOYMENTS_SHOWN
        )?;
    }
    out.push_str("</section>\n");
    Ok(())
}

/// A deployment's state as a badge: its verdict, `running` while it is verified,
/// `initial` for the first version (nothing to compare with). Only these fixed words
/// become CSS classes, never a string from the data.
fn verdict_class(deployment: &Value) -> &'static str {
    if deployment["initial"] == Value::Bool(true) {
        return "initial";
    }
    verdict_word(&deployment["verdict"])
}

fn verdict_word(verdict: &Value) -> &'static str {
    match verdict.as_str() {
        None => "running",
        Some("pass") => "pass",
        Some("fail") => "fail",
        Some(_) => "inconclusive",
    }
}

/// Each check's evidence: baseline and new values, the threshold, sample sizes, p-value.
/// A check without a verdict is `running` while its deployment is, `undecided` once the
/// deployment's verdict came from the other checks (an early fail).
fn write_checks(out: &mut String, checks: &[Value], decided: bool) -> fmt::Result {
    if checks.is_empty() {
        return Ok(());
    }
    out.push_str(
        "<table><tr><th>check</th><th>kind</th><th>verdict</th><th class=\"n\">baseline</th>\
         <th class=\"n\">new</th><th class=\"n\">threshold</th><th class=\"n\">samples (baseline / new)</th>\
         <th class=\"n\">p-value</th><th class=\"n\">α</th><th>note</th></tr>\n",
    );
    for check in checks {
        let (word, class) = match verdict_word(&check["verdict"]) {
            "running" if decided => ("undecided", "inconclusive"),
            word => (word, word),
        };
        let mut note = text(&check["note"]);
        let new_values: Vec<String> = list(&check["new_values"]).iter().map(text).collect();
        if !new_values.is_empty() {
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str("new: ");
            note.push_str(&new_values.join(", "));
        }
        writeln!(
            out,
            "<tr><td>{}</td><td class=\"m\">{}</td><td><span class=\"b {class}\">{word}</span></td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{} / {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            Esc(&text(&check["name"])),
            Esc(&text(&check["kind"])),
            Esc(&number(&check["baseline"])),
            Esc(&number(&check["current"])),
            Esc(&number(&check["threshold"])),
            Esc(&number(&check["n_baseline"])),
            Esc(&number(&check["n_current"])),
            Esc(&number(&check["p_value"])),
            Esc(&number(&check["alpha"])),
            Esc(&note),
        )?;
    }
    out.push_str("</table>");
    Ok(())
}

fn write_queues(out: &mut String, page: &Page<'_>) -> fmt::Result {
    let status = page.status;
    let queues = &status["queues"];
    out.push_str(
        "<section id=\"queues\"><h2>Queues and sources</h2>\n\
         <table><tr><th>queue</th><th class=\"n\">now</th><th>detail</th></tr>\n",
    );
    writeln!(
        out,
        "<tr><td>pipeline (log batches)</td><td class=\"n\">{} / {}</td>\
         <td class=\"m\">batches waiting for the sink stage / capacity</td></tr>",
        Esc(&number(&queues["log_batches"]["depth"])),
        Esc(&number(&queues["log_batches"]["capacity"])),
    )?;
    match queues["otlp_logs_bytes"].as_u64() {
        Some(n) => writeln!(
            out,
            "<tr><td>OTLP log queue</td><td class=\"n\">{}</td>\
             <td class=\"m\">on disk, not yet acknowledged by the collector</td></tr>",
            bytes(n)
        )?,
        None => out.push_str(
            "<tr><td>OTLP log queue</td><td class=\"n\">—</td><td class=\"m\">OTLP export is off</td></tr>\n",
        ),
    }
    let notifications = &status["notifications"];
    match notifications["outbox"].as_object() {
        Some(outbox) => {
            let total: u64 = outbox.values().filter_map(Value::as_u64).sum();
            write!(
                out,
                "<tr><td>notifier outbox</td><td class=\"n\">{total}</td><td>"
            )?;
            for (receiver, n) in outbox {
                write!(
                    out,
                    "<span class=\"l\">{}={}</span>",
                    Esc(receiver),
                    Esc(&number(n))
                )?;
            }
            writeln!(
                out,
                "</td></tr>\n<tr><td>active silences</td><td class=\"n\">{}</td><td></td></tr>",
                Esc(&number(&notifications["active_silences"])),
            )?;
        }
        None => out.push_str(
            "<tr><td>notifier outbox</td><td class=\"n\">—</td><td class=\"m\">the notifier is off</td></tr>\n",
        ),
    }
    out.push_str(
        "</table>\n<table><tr><th>source</th><th>format</th><th>state</th><th>files (offset / size)</th>\
         <th>paths</th></tr>\n",
    );
    for source in list(&status["sources"]) {
        let ready = source["ready"] == Value::Bool(true);
        write!(
            out,
            "<tr><td>{}</td><td class=\"m\">{}</td><td>{}</td><td>",
            Esc(&text(&source["name"])),
            Esc(&text(&source["format"])),
            if ready { "reading" } else { "starting" },
        )?;
        let files = list(&source["files"]);
        if files.is_empty() {
            out.push_str("<span class=\"m\">no file matches</span>");
        }
        for file in files {
            let size = file["size"].as_u64().unwrap_or(0);
            let offset = file["offset"].as_u64().unwrap_or(0);
            write!(
                out,
                "<div><code>{}</code> <span class=\"m\">{} / {}{}</span></div>",
                Esc(&text(&file["current_path"])),
                bytes(offset),
                bytes(size),
                if file["rotated"] == Value::Bool(true) {
                    ", rotated, draining"
                } else {
                    ""
                },
            )?;
        }
        out.push_str("</td><td>");
        for path in list(&source["paths"]) {
            write!(out, "<div><code>{}</code></div>", Esc(&text(path)))?;
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</table></section>\n");
    Ok(())
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A JSON value as text: strings as they are, `null` as nothing.
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A number for people: integers whole, others to about four significant digits, `—`
/// for nothing (NaN: no value yet). The API writes non-finite floats (and alert values)
/// as strings.
fn number(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_f64() => n.as_f64().map(float).unwrap_or_default(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.parse::<f64>().map(float).unwrap_or_else(|_| s.clone()),
        Value::Null => "—".to_string(),
        other => other.to_string(),
    }
}

fn float(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "—"
        } else if x > 0.0 {
            "+Inf"
        } else {
            "-Inf"
        }
        .to_string();
    }
    let magnitude = x.abs();
    if x == 0.0 || (x.fract() == 0.0 && magnitude < 1e15) {
        return format!("{x:.0}");
    }
    if !(1e-3..1e9).contains(&magnitude) {
        return format!("{x:.2e}");
    }
    let decimals = (3 - magnitude.log10().floor() as i32).clamp(0, 6) as usize;
    let fixed = format!("{x:.decimals$}");
    if fixed.contains('.') {
        fixed
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        fixed
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `2026-11-24T04:01:02.123456789Z` → `2026-11-24 04:01:02Z`.
fn short_time(rfc3339: &str) -> String {
    match rfc3339.get(..19) {
        Some(head) => format!("{}Z", head.replacen('T', " ", 1)),
        None => rfc3339.to_string(),
    }
}

/// A timestamp with how long ago it was: `2026-11-24 04:01:02Z (12s ago)`.
fn ago(rfc3339: &str, now: i64) -> String {
    if rfc3339.is_empty() {
        return String::new();
    }
    match parse_iso8601(rfc3339.as_bytes()) {
        Some(t) if now >= t => format!("{} ({} ago)", short_time(rfc3339), duration(now - t)),
        _ => short_time(rfc3339),
    }
}

/// `45s`, `3m 12s`, `5h 2m`, `2d 4h`.
fn duration(nanos: i64) -> String {
    let s = (nanos.max(0) / 1_000_000_000) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::tracker::{CheckOutcome, Deployment, Verdict};

    fn escape(s: &str) -> String {
        Esc(s).to_string()
    }

    #[test]
    fn escaping() {
        for (input, want) in [
            ("plain text", "plain text"),
            (
                "<script>alert(1)</script>",
                "&lt;script&gt;alert(1)&lt;/script&gt;",
            ),
            (r#"" onmouseover="x"#, "&quot; onmouseover=&quot;x"),
            ("it's", "it&#39;s"),
            ("a & b &amp;", "a &amp; b &amp;amp;"),
            ("é <ü>", "é &lt;ü&gt;"),
            ("", ""),
        ] {
            assert_eq!(escape(input), want, "{input:?}");
        }
    }

    #[test]
    fn base64() {
        for (input, want) in [
            ("", Some(&b""[..])),
            ("eDpzM2NyZXQ=", Some(b"x:s3cret")),
            ("eDpzM2NyZXQ", Some(b"x:s3cret")),
            ("YQ==", Some(b"a")),
            ("YWI=", Some(b"ab")),
            ("YWJj", Some(b"abc")),
            ("/+/+", Some(&[0xff, 0xef, 0xfe][..])),
            ("Y", None),
            ("YW J j", None),
            ("YW-j", None),
        ] {
            assert_eq!(decode_base64(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn numbers_and_durations() {
        for (input, want) in [
            (0.0, "0"),
            (42.0, "42"),
            (0.4012345, "0.4012"),
            (12.345678, "12.35"),
            (1234.5678, "1235"),
            (0.00001234, "1.23e-5"),
            (f64::NAN, "—"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(float(input), want, "{input}");
        }
        assert_eq!(number(&serde_json::json!("0.25")), "0.25");
        assert_eq!(number(&serde_json::json!("+Inf")), "+Inf");
        assert_eq!(number(&serde_json::json!(120)), "120");
        assert_eq!(number(&Value::Null), "—");
        assert_eq!(duration(45_000_000_000), "45s");
        assert_eq!(duration(192_000_000_000), "3m 12s");
        assert_eq!(
            duration(3 * 86_400_000_000_000 + 7_200_000_000_000),
            "3d 2h"
        );
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(
            ago("2026-11-24T04:01:02.5Z", 1_795_492_892_500_000_000),
            "2026-11-24 04:01:02Z (30s ago)"
        );
    }

    const T0: i64 = 1_795_492_000_000_000_000;

    fn check(name: &str, kind: &str, verdict: Option<Verdict>) -> CheckOutcome {
        CheckOutcome {
            name: name.into(),
            kind: kind.into(),
            verdict,
            baseline: 0.02,
            current: 0.4123,
            n_baseline: 160,
            n_current: 95,
            statistic: 9.1,
            p_value: 0.000012,
            threshold: 0.03,
            alpha: 0.0021,
            new_values: Vec::new(),
            note: None,
        }
    }

    fn deployment(version: &str, initial: bool, verdict: Option<Verdict>) -> Deployment {
        Deployment {
            id: format!("d-{version}"),
            version: version.into(),
            previous: (!initial).then(|| "1.0.0".into()),
            t0: T0,
            detected_by: Vec::new(),
            meta: Value::Null,
            initial,
            verdict,
            decided_at: verdict.map(|_| T0 + 7_000_000_000),
            checks: Vec::new(),
        }
    }

    /// A page with a probe up and one down, an alert whose label carries a script, a
    /// failed deployment with its evidence and a running one.
    #[test]
    fn renders_every_section_and_escapes_what_came_from_outside() {
        let status = serde_json::json!({
            "version": "0.9.0",
            "service": { "name": "checkout-api", "environment": "prod" },
            "config": "/etc/sidewatch.yaml",
            "uptime_seconds": 3725.5,
            "ready": true,
            "sources": [{
                "name": "app", "format": "structlog", "paths": ["/var/log/app/*.log"], "ready": true,
                "files": [{ "path": "/var/log/app/app.log", "current_path": "/var/log/app/app.log",
                            "offset": 2048, "size": 4096, "rotated": false }],
            }],
            "queues": {
                "log_batches": { "depth": 1, "capacity": 4 },
                "notifications": { "hook": 2 },
                "otlp_logs_bytes": 3_145_728,
            },
            "probes": [
                { "name": "health", "success": true, "time": "2026-11-24T04:01:00Z",
                  "duration_seconds": 0.0123, "status_code": 200, "version": "1.1.0", "error": null },
                { "name": "db<b>", "success": false, "time": "2026-11-24T04:01:00Z",
                  "duration_seconds": 2.0, "status_code": null, "version": null,
                  "error": "connection refused <&>" },
            ],
            "notifications": { "receivers": ["hook"], "outbox": { "hook": 2 }, "active_silences": 3 },
        });
        let alerts = vec![serde_json::json!({
            "labels": { "alertname": "HighErrorRate", "path": "<script>alert(1)</script>" },
            "annotations": { "summary": "errors \"above\" 5% & rising" },
            "state": "firing",
            "activeAt": "2026-11-24T04:00:00Z",
            "firedAt": "2026-11-24T04:00:30Z",
            "value": "0.0712",
        })];
        let mut failed = deployment("1.1.0", false, Some(Verdict::Fail));
        failed.detected_by = vec![crate::config::DetectSource::LogField];
        failed.checks = vec![
            check("error-ratio", "ratio", Some(Verdict::Fail)),
            CheckOutcome {
                new_values: vec!["KeyError<x>".into()],
                ..check("new-errors", "new_values", Some(Verdict::Fail))
            },
            CheckOutcome {
                p_value: f64::NAN,
                ..check("health", "probe", None)
            },
        ];
        let mut running = deployment("1.2.0", false, None);
        running.checks = vec![check("health", "probe", None)];
        let deployments = serde_json::json!({
            "live": "1.2.0",
            "deployments": [
                deployment("1.0.0", true, None),
                failed,
                running,
            ],
        });
        let page = Page {
            status: &status,
            alerts: &alerts,
            deployments: Some(&deployments),
            now: T0 + 60_000_000_000,
        };
        let html = render(&page);

        assert!(html.starts_with("<!doctype html>"), "{html}");
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        for id in ["probes", "alerts", "deployments", "queues"] {
            assert!(html.contains(&format!("<section id=\"{id}\">")), "{id}");
        }
        assert!(html.contains("checkout-api"));
        assert!(html.contains("live version <b>1.2.0</b>"));
        assert!(html.contains("up 1h 2m"));
        // Probes: state, latency, status, error.
        assert!(html.contains("<td>health</td><td><span class=\"b up\">up</span></td><td class=\"n\">12.3 ms</td><td class=\"n\">200</td>"), "{html}");
        assert!(html.contains("<td>db&lt;b&gt;</td><td><span class=\"b down\">down</span>"));
        assert!(html.contains("connection refused &lt;&amp;&gt;"));
        // The alert, its label escaped: no tag from the data reaches the page.
        assert!(
            html.contains("<span class=\"b firing\">firing</span></td><td><b>HighErrorRate</b>")
        );
        assert!(html.contains("path=&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b>\"") && !html.contains("db<b>"));
        assert!(html.contains("errors &quot;above&quot; 5% &amp; rising"));
        assert!(html.contains("<td class=\"n\">0.0712</td>"));
        // Deployments newest first, each with its state; the failed one with evidence.
        let at = |needle: &str| {
            html.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {html}"))
        };
        assert!(
            at("1.2.0 <span class=\"b running\">running</span>")
                < at("1.1.0 <span class=\"b fail\">fail</span>")
        );
        assert!(
            at("1.1.0 <span class=\"b fail\">fail</span>")
                < at("1.0.0 <span class=\"b initial\">initial</span>")
        );
        assert!(html.contains("decided 7s after t0"));
        assert!(html.contains("detected by log_field"));
        assert!(html.contains(
            "<td>error-ratio</td><td class=\"m\">ratio</td><td><span class=\"b fail\">fail</span></td>\
             <td class=\"n\">0.02</td><td class=\"n\">0.4123</td><td class=\"n\">0.03</td>\
             <td class=\"n\">160 / 95</td><td class=\"n\">1.20e-5</td><td class=\"n\">0.0021</td>"
        ), "{html}");
        assert!(html.contains("new: KeyError&lt;x&gt;"));
        // Decided early: a check without a verdict is undecided, not running; no p-value.
        assert!(html.contains(
            "<td>health</td><td class=\"m\">probe</td><td><span class=\"b inconclusive\">undecided</span></td>"
        ), "{html}");
        assert!(
            html.contains("<td class=\"n\">—</td><td class=\"n\">0.0021</td>"),
            "{html}"
        );
        assert!(html.contains(
            "<td>health</td><td class=\"m\">probe</td><td><span class=\"b running\">running</span></td>"
        ), "{html}");
        // Queues and sources.
        assert!(html.contains("<td class=\"n\">1 / 4</td>"));
        assert!(html.contains("<td class=\"n\">3.0 MiB</td>"));
        assert!(html.contains(
            "notifier outbox</td><td class=\"n\">2</td><td><span class=\"l\">hook=2</span>"
        ));
        assert!(html.contains("active silences</td><td class=\"n\">3</td>"));
        assert!(html.contains(
            "<code>/var/log/app/app.log</code> <span class=\"m\">2.0 KiB / 4.0 KiB</span>"
        ));
    }

    #[test]
    fn what_is_off_says_so() {
        let status = serde_json::json!({
            "service": { "name": "svc", "environment": "dev" },
            "queues": { "log_batches": { "depth": 0, "capacity": 4 }, "notifications": null, "otlp_logs_bytes": null },
            "probes": [], "sources": [], "notifications": null, "ready": false,
        });
        let html = render(&Page {
            status: &status,
            alerts: &[],
            deployments: None,
            now: T0,
        });
        assert!(html.contains("No probe has run"));
        assert!(html.contains("No alert is pending or firing."));
        assert!(html.contains("Deployment tracking is off."));
        assert!(html.contains("OTLP export is off"));
        assert!(html.contains("the notifier is off"));
        assert!(html.contains("<b>starting</b>"));
    }
}
