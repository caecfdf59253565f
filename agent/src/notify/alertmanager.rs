//! `alerting.alertmanagers`: every alert to `POST /api/v2/alerts` on every URL, the way
//! Prometheus' notifier does it, so that the sidecars of many replicas deduplicate in
//! Alertmanager (their alerts carry `service`/`environment`, never the pod):
//!
//! - a firing alert is sent when it starts firing and again every `resend_delay` (1m)
//!   with `endsAt` = now + 4 × `resend_delay`, so Alertmanager resolves it by itself if
//!   the agent goes away;
//! - a resolved alert is sent at once with `endsAt` = its resolve time, and again every
//!   `resend_delay` while the rule engine remembers it (15 minutes), which covers an
//!   Alertmanager that was down when it resolved;
//! - grouping, silences and inhibition are Alertmanager's business, not ours.
//!
//! `Resender` (pure) decides what is due; `post` sends one batch to one URL. As in
//! Prometheus, a failed post is logged and counted, not queued: the next resend carries
//! the alert again.

use std::collections::HashMap;
use std::time::Duration;

use super::NotifyAlert;
use super::config::AlertmanagerConfig;
use super::payload::{annotations_json, labels_json};
use crate::parse::time::rfc3339;

/// What was last sent of each alert, by fingerprint.
#[derive(Debug, Default)]
pub struct Resender {
    sent: HashMap<u64, Sent>,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    at: i64,
    resolved: bool,
}

impl Resender {
    /// The alerts to send at `now` out of every current one (firing, or resolved and
    /// still remembered), with `endsAt` filled in as Prometheus does. Alerts that are no
    /// longer current are forgotten.
    pub fn due(
        &mut self,
        alerts: &[NotifyAlert],
        now: i64,
        resend_delay: Duration,
    ) -> Vec<NotifyAlert> {
        let resend = i64::try_from(resend_delay.as_nanos()).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        let mut current = std::collections::HashSet::new();
        for alert in alerts {
            let fp = alert.fingerprint();
            current.insert(fp);
            let resolved = alert.resolved_at(now);
            let due = match self.sent.get(&fp) {
                None => true,
                // A change of state goes out at once; otherwise every `resend_delay`.
                Some(sent) => sent.resolved != resolved || sent.at.saturating_add(resend) <= now,
            };
            if !due {
                continue;
            }
            self.sent.insert(fp, Sent { at: now, resolved });
            let mut alert = alert.clone();
            if !resolved {
                alert.ends_at = Some(now.saturating_add(resend.saturating_mul(4)));
            }
            out.push(alert);
        }
        self.sent.retain(|fp, _| current.contains(fp));
        out
    }
}

/// The body of `POST /api/v2/alerts`: Alertmanager's `postableAlerts`.
pub fn body(alerts: &[NotifyAlert]) -> serde_json::Value {
    serde_json::Value::Array(
        alerts
            .iter()
            .map(|a| {
                let mut alert = serde_json::json!({
                    "labels": labels_json(&a.labels),
                    "annotations": annotations_json(&a.annotations),
                    "startsAt": rfc3339(a.starts_at),
                    "generatorURL": a.generator_url,
                });
                if let Some(end) = a.ends_at {
                    alert["endsAt"] = rfc3339(end).into();
                }
                alert
            })
            .collect(),
    )
}

/// The client of one `alertmanagers` entry.
#[derive(Clone)]
pub struct AlertmanagerClient {
    client: reqwest::Client,
    config: AlertmanagerConfig,
}

impl AlertmanagerClient {
    pub fn new(
        config: &AlertmanagerConfig,
    ) -> Result<AlertmanagerClient, super::webhook::WebhookError> {
        let https = config.urls.iter().any(|u| u.starts_with("https://"));
        let client = super::webhook::http_client(config.ca_file.as_deref(), config.timeout, https)?;
        Ok(AlertmanagerClient {
            client,
            config: config.clone(),
        })
    }

    pub fn urls(&self) -> &[String] {
        &self.config.urls
    }

    /// Posts one batch to one Alertmanager; the error says why, without secrets.
    pub async fn post(&self, base: &str, body: &serde_json::Value) -> Result<(), String> {
        let url = format!("{base}/api/v2/alerts");
        let mut request = self.client.post(&url).json(body);
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token.expose());
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(200).collect();
                Err(format!(
                    "{} answered {status}: {}",
                    redact(base),
                    text.trim()
                ))
            }
            Err(e) => Err(format!(
                "{}: {}",
                redact(base),
                crate::sources::health_probe::describe_request_error(&e)
            )),
        }
    }
}

/// A URL without its user info, query and path: what may be printed of it.
pub fn redact(url: &str) -> String {
    match url.parse::<axum::http::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.host()) {
            (Some(scheme), Some(host)) => match uri.port_u16() {
                Some(port) => format!("{scheme}://{host}:{port}"),
                None => format!("{scheme}://{host}"),
            },
            _ => "<url>".into(),
        },
        Err(_) => "<url>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::labels::Labels;

    const S: i64 = 1_000_000_000;

    fn alert(name: &str, ends_at: Option<i64>) -> NotifyAlert {
        NotifyAlert {
            labels: Labels::from_pairs([("alertname", name), ("service", "api")]),
            annotations: vec![("summary".into(), "x".into())],
            starts_at: 5 * S,
            ends_at,
            generator_url: "http://127.0.0.1:9777/api/v1/alerts".into(),
        }
    }

    #[test]
    fn firing_is_resent_every_resend_delay_and_a_resolve_goes_out_at_once() {
        let mut r = Resender::default();
        let delay = Duration::from_secs(60);
        let firing = [alert("A", None)];
        let sent = r.due(&firing, 10 * S, delay);
        assert_eq!(sent.len(), 1);
        // endsAt = now + 4 × resend_delay, so Alertmanager resolves it if we vanish.
        assert_eq!(sent[0].ends_at, Some(10 * S + 240 * S));
        assert!(r.due(&firing, 40 * S, delay).is_empty());
        assert_eq!(r.due(&firing, 70 * S, delay).len(), 1);
        let resolved = [alert("A", Some(75 * S))];
        let sent = r.due(&resolved, 75 * S, delay);
        assert_eq!(sent.len(), 1, "a resolve is sent without waiting");
        assert_eq!(sent[0].ends_at, Some(75 * S));
        assert!(r.due(&resolved, 100 * S, delay).is_empty());
        assert_eq!(
            r.due(&resolved, 135 * S, delay).len(),
            1,
            "and re-sent while remembered"
        );
        // Forgotten by the engine: forgotten here, and a new firing goes out at once.
        assert!(r.due(&[], 140 * S, delay).is_empty());
        assert_eq!(r.due(&firing, 141 * S, delay).len(), 1);
    }

    #[test]
    fn body_is_alertmanagers_postable_alerts() {
        let mut a = alert("A", Some(7 * S));
        a.starts_at = 1_700_000_000 * S;
        a.ends_at = Some(1_700_000_060 * S);
        let body = body(&[a]);
        assert_eq!(
            body,
            serde_json::json!([{
                "labels": {"alertname": "A", "service": "api"},
                "annotations": {"summary": "x"},
                "startsAt": "2023-11-14T22:13:20Z",
                "endsAt": "2023-11-14T22:14:20Z",
                "generatorURL": "http://127.0.0.1:9777/api/v1/alerts",
            }])
        );
    }

    #[test]
    fn redact_keeps_scheme_host_and_port_only() {
        assert_eq!(
            redact("https://u:p@am.example:9093/x?token=1"),
            "https://am.example:9093"
        );
        assert_eq!(redact("http://am"), "http://am");
        assert_eq!(redact("::"), "<url>");
    }
}
