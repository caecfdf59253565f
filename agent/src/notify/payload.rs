//! What a notification looks like on the wire, and how a delivery attempt ended: the
//! Alertmanager webhook JSON (version "4"), the Slack incoming-webhook body, the
//! Alertmanager subject line, and the email templates (minijinja, with Alertmanager's
//! data names). Pure: nothing here does IO or reads the clock; a notification's
//! `created` is "now" for every firing/resolved decision.
//!
//! # Times
//! Alertmanager writes Go `time.Time`s: RFC 3339 with as many fractional digits as
//! needed (trailing zeros dropped, up to nanoseconds), and a firing alert's `endsAt` is
//! Go's zero time, `0001-01-01T00:00:00Z`. The same text is used in templates.
//!
//! # Email templates
//! A template sees Alertmanager's names so that users recognise them: `Status`,
//! `Receiver`, `GroupLabels`, `CommonLabels`, `CommonAnnotations`, `ExternalURL`,
//! `Alerts` (each with `Status`, `Labels`, `Annotations`, `StartsAt`, `EndsAt`,
//! `GeneratorURL`, `Fingerprint`; `Alerts.Firing` and `Alerts.Resolved` as in
//! Alertmanager), the same two lists as `Firing` and `Resolved`, and `Subject`, the
//! built-in subject line (Alertmanager's `__subject`). Label and annotation maps iterate
//! sorted by name (`{% for k, v in Labels|items %}`). The `html` template escapes every
//! value (minijinja's HTML auto-escaping); `subject` and `text` do not.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value as Jinja};
use minijinja::{AutoEscape, Environment};
use serde_json::{Value, json};

use super::config::EmailConfig;
use super::{Notification, NotifyAlert, Status};
use crate::rules::labels::Labels;

/// How one delivery attempt ended, for the outbox to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver accepted the notification.
    Delivered,
    /// Worth trying again: the receiver or the network may recover. `after` is the
    /// receiver's own wish (`Retry-After`), when it said one; otherwise the outbox's
    /// backoff decides.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The receiver refused it for good (a 4xx, a permanent SMTP reply): sending the
    /// same thing again would fail the same way.
    Failed { reason: String },
}

/// Go's zero `time.Time`, Alertmanager's `endsAt` of a firing alert.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// How many alerts the Slack body shows as attachments: Slack advises at most 20 and
/// refuses more than 100; the rest are counted in the text.
pub const SLACK_MAX_ATTACHMENTS: usize = 20;

/// `nanos` as Go's `time.RFC3339Nano` in UTC: `2026-11-23T19:49:24.1234Z`, whole
/// seconds without a fraction.
pub fn rfc3339_nano(nanos: i64) -> String {
    // rfc3339 writes 6 or 9 digits; Go drops the trailing zeros.
    let mut text = crate::parse::time::rfc3339(nanos);
    if text.contains('.') {
        text.pop(); // the `Z`
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
        text.push('Z');
    }
    text
}

/// An alert's status at the notification's creation: resolved once its end has passed.
fn alert_status(alert: &NotifyAlert, created: i64) -> Status {
    if alert.resolved_at(created) {
        Status::Resolved
    } else {
        Status::Firing
    }
}

/// `endsAt` as Alertmanager shows it: the zero time while the alert fires, even when
/// an end in the future is known.
fn ends_at_text(alert: &NotifyAlert, created: i64) -> String {
    match (alert_status(alert, created), alert.ends_at) {
        (Status::Resolved, Some(end)) => rfc3339_nano(end),
        _ => GO_ZERO_TIME.to_string(),
    }
}

/// Alertmanager's `KV.SortedPairs`: `alertname` first, the rest by name.
fn sorted_pairs(labels: &Labels) -> Vec<(&str, &str)> {
    let mut pairs: Vec<(&str, &str)> = labels.iter().collect();
    if let Some(at) = pairs.iter().position(|(k, _)| *k == "alertname") {
        let name = pairs.remove(at);
        pairs.insert(0, name);
    }
    pairs
}

/// Go's `regexp.QuoteMeta`, which Alertmanager applies to the receiver's name in its
/// template data (and so in the webhook JSON): receivers that match on the name see
/// the same text they would get from Alertmanager.
fn quote_meta(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Annotations as a map (a repeated name keeps its last value, as a Go map would).
fn annotation_map(annotations: &[(String, String)]) -> BTreeMap<&str, &str> {
    annotations
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A label set as a JSON object (the shape of every API and payload).
pub fn labels_json(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect(),
    )
}

/// Annotations as a JSON object, keys sorted.
pub fn annotations_json(annotations: &[(String, String)]) -> Value {
    Value::Object(
        annotation_map(annotations)
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect(),
    )
}

/// The notification with at most `max` alerts (0: all), and how many were left out:
/// Alertmanager truncates before it computes the status and the common labels.
fn truncated(n: &Notification, max: usize) -> (Cow<'_, Notification>, usize) {
    if max == 0 || n.alerts.len() <= max {
        return (Cow::Borrowed(n), 0);
    }
    let kept = Notification {
        id: n.id.clone(),
        receiver: n.receiver.clone(),
        group_key: n.group_key.clone(),
        group_labels: n.group_labels.clone(),
        alerts: n.alerts[..max].to_vec(),
        created: n.created,
    };
    (Cow::Owned(kept), n.alerts.len() - max)
}

/// Alertmanager's webhook payload, version "4", with at most `truncate_to` alerts (0:
/// all; the rest are counted in `truncatedAlerts`).
pub fn alertmanager_json(n: &Notification, external_url: &str, truncate_to: usize) -> Value {
    let (n, truncated_alerts) = truncated(n, truncate_to);
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            json!({
                "status": alert_status(a, n.created).as_str(),
                "labels": labels_json(&a.labels),
                "annotations": annotations_json(&a.annotations),
                "startsAt": rfc3339_nano(a.starts_at),
                "endsAt": ends_at_text(a, n.created),
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint_hex(),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": truncated_alerts,
        "status": n.status().as_str(),
        "receiver": quote_meta(&n.receiver),
        "groupLabels": labels_json(&n.group_labels),
        "commonLabels": labels_json(&n.common_labels()),
        "commonAnnotations": annotations_json(&n.common_annotations()),
        "externalURL": external_url,
        "alerts": alerts,
    })
}

/// Alertmanager's default subject (`__subject`): `[FIRING:2] HighErrorRatio
/// checkout-api (production page)` — the status, the firing count, the group labels'
/// values, then in parentheses the values of the other labels every alert shares.
/// Alertmanager's stray spaces (a trailing one when nothing is in parentheses, a double
/// one when there are no group labels) are left out.
pub fn subject(n: &Notification) -> String {
    let status = n.status();
    let mut parts = Vec::new();
    let mut head = format!("[{}", status.as_str().to_uppercase());
    if status == Status::Firing {
        head.push_str(&format!(":{}", n.counts().0));
    }
    head.push(']');
    parts.push(head);
    parts.extend(
        sorted_pairs(&n.group_labels)
            .into_iter()
            .map(|(_, v)| v.to_string()),
    );
    let common = n.common_labels();
    if common.len() > n.group_labels.len() {
        let rest: Vec<&str> = sorted_pairs(&common)
            .into_iter()
            .filter(|(k, _)| n.group_labels.get(k).is_none())
            .map(|(_, v)| v)
            .collect();
        parts.push(format!("({})", rest.join(" ")));
    }
    parts.join(" ")
}

/// Slack's escaping of the three characters its message text gives meaning to.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook body: the subject as `text`, and one attachment per alert
/// (at most `SLACK_MAX_ATTACHMENTS`), red (`danger`) while it fires and green (`good`)
/// once resolved, titled with its name and the labels that tell it from the others,
/// with its `summary` and `description` annotations as fields.
pub fn slack_json(n: &Notification, external_url: &str) -> Value {
    let common = n.common_labels();
    let mut text = slack_escape(&subject(n));
    if !external_url.is_empty() {
        text = format!("<{}|{text}>", slack_escape(external_url));
    }
    let hidden = n.alerts.len().saturating_sub(SLACK_MAX_ATTACHMENTS);
    if hidden > 0 {
        text.push_str(&format!(
            "\n{hidden} more alert{} not shown",
            if hidden == 1 { "" } else { "s" }
        ));
    }
    let attachments: Vec<Value> = n
        .alerts
        .iter()
        .take(SLACK_MAX_ATTACHMENTS)
        .map(|a| {
            let status = alert_status(a, n.created);
            let name = a.labels.get("alertname").unwrap_or("alert");
            // The labels that tell this alert from the others in the group.
            let own: Vec<String> = sorted_pairs(&a.labels)
                .into_iter()
                .filter(|(k, v)| *k != "alertname" && common.get(k) != Some(*v))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let mut title = format!("[{}] {name}", status.as_str().to_uppercase());
            if !own.is_empty() {
                title.push_str(&format!(" {}", own.join(" ")));
            }
            let annotations = annotation_map(&a.annotations);
            let fields: Vec<Value> = [("summary", "Summary"), ("description", "Description")]
                .into_iter()
                .filter_map(|(key, label)| {
                    annotations.get(key).map(
                        |v| json!({ "title": label, "value": slack_escape(v), "short": false }),
                    )
                })
                .collect();
            let mut attachment = json!({
                "color": if status == Status::Firing { "danger" } else { "good" },
                "title": slack_escape(&title),
                "fallback": slack_escape(&title),
                "fields": fields,
                "ts": a.starts_at.div_euclid(1_000_000_000),
            });
            if !a.generator_url.is_empty() {
                attachment["title_link"] = Value::from(a.generator_url.as_str());
            }
            attachment
        })
        .collect();
    json!({ "text": text, "attachments": attachments })
}

// ---------------------------------------------------------------------------------
// Email templates

/// An email's templates, in the order of `RenderedEmail`'s parts.
const PARTS: [&str; 3] = ["subject", "text", "html"];

/// The built-in subject: Alertmanager's, computed by `subject`.
const BUILTIN_SUBJECT: &str = "{{ Subject }}";

/// The built-in plain-text body: Alertmanager's alert list (`__text_alert_list`) under
/// a firing and a resolved heading.
const BUILTIN_TEXT: &str = r#"{{ Subject }}
{%- for heading, list in [("Firing", Firing), ("Resolved", Resolved)] if list %}

{{ heading }} ({{ list|length }}):
{%- for a in list %}

Labels:
{%- for k, v in a.Labels|items %}
 - {{ k }} = {{ v }}
{%- endfor %}
{%- if a.Annotations %}
Annotations:
{%- for k, v in a.Annotations|items %}
 - {{ k }} = {{ v }}
{%- endfor %}
{%- endif %}
Started: {{ a.StartsAt }}
{%- if a.Status == "resolved" %}
Ended: {{ a.EndsAt }}
{%- endif %}
{%- if a.GeneratorURL %}
Source: {{ a.GeneratorURL }}
{%- endif %}
{%- endfor %}
{%- endfor %}
{%- if ExternalURL %}

Sent by sidewatch: {{ ExternalURL }}
{%- endif %}
"#;

/// The built-in HTML body: inline styles only (mail clients drop `<style>`), every
/// value escaped by the environment's auto-escaping.
const BUILTIN_HTML: &str = r##"<!DOCTYPE html>
<html>
<head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8"><title>{{ Subject }}</title></head>
<body style="margin:0;padding:0;background-color:#f6f6f6;font-family:Helvetica,Arial,sans-serif;font-size:14px;color:#333333;">
<table width="100%" cellpadding="0" cellspacing="0" style="background-color:#f6f6f6;"><tr><td align="center" style="padding:20px;">
<table width="600" cellpadding="0" cellspacing="0" style="max-width:600px;background-color:#ffffff;border:1px solid #e9e9e9;border-radius:3px;">
<tr><td style="padding:20px;color:#ffffff;font-size:16px;font-weight:bold;text-align:center;background-color:{{ "#e6522c" if Status == "firing" else "#2e7d32" }};">
{{ Alerts|length }} alert{{ "s" if Alerts|length != 1 }} for {% for k, v in GroupLabels|items %}{{ k }}={{ v }}{{ " " if not loop.last }}{% endfor %}
</td></tr>
{%- if ExternalURL %}
<tr><td style="padding:20px 20px 0 20px;"><a href="{{ ExternalURL }}" style="display:inline-block;padding:8px 16px;background-color:#348eda;color:#ffffff;text-decoration:none;border-radius:4px;font-weight:bold;">View in sidewatch</a></td></tr>
{%- endif %}
{%- for heading, list in [("Firing", Firing), ("Resolved", Resolved)] if list %}
<tr><td style="padding:20px 20px 0 20px;"><strong>[{{ list|length }}] {{ heading }}</strong></td></tr>
{%- for a in list %}
<tr><td style="padding:10px 20px;border-bottom:1px solid #eeeeee;">
<strong>Labels</strong><br>
{%- for k, v in a.Labels|items %}
{{ k }} = {{ v }}<br>
{%- endfor %}
{%- if a.Annotations %}
<strong>Annotations</strong><br>
{%- for k, v in a.Annotations|items %}
{{ k }} = {{ v }}<br>
{%- endfor %}
{%- endif %}
Started: {{ a.StartsAt }}<br>
{%- if a.Status == "resolved" %}
Ended: {{ a.EndsAt }}<br>
{%- endif %}
{%- if a.GeneratorURL %}
<a href="{{ a.GeneratorURL }}" style="color:#348eda;">Source</a>
{%- endif %}
</td></tr>
{%- endfor %}
{%- endfor %}
</table>
<p style="color:#999999;font-size:12px;">Sent by sidewatch</p>
</td></tr></table>
</body>
</html>
"##;

/// A template that does not compile or render: which one, where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("email `{template}` template{}: {message}", position(*.line, *.column))]
pub struct TemplateError {
    /// `subject`, `text` or `html`.
    pub template: &'static str,
    /// 1-based line and column in the template's source, when minijinja knows them.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(", line {line}, column {column}"),
        (Some(line), None) => format!(", line {line}"),
        _ => String::new(),
    }
}

impl TemplateError {
    fn from_minijinja(template: &'static str, source: &str, err: &minijinja::Error) -> Self {
        let mut line = err.line();
        let mut column = None;
        if let Some(range) = err.range()
            && let Some(before) = source.get(..range.start)
        {
            line = Some(before.matches('\n').count() + 1);
            column = Some(before.chars().rev().take_while(|c| *c != '\n').count() + 1);
        }
        let message = match err.detail() {
            Some(detail) => format!("{}: {detail}", err.kind()),
            None => err.kind().to_string(),
        };
        TemplateError {
            template,
            line,
            column,
            message,
        }
    }
}

/// An email's three parts, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// One line (a template's line breaks and runs of spaces become one space).
    pub subject: String,
    pub text: String,
    pub html: String,
    /// A user template that failed to render and was replaced by the built-in one,
    /// one sentence each, for the sender to log: the notification still goes out.
    pub warnings: Vec<String>,
}

/// The compiled subject, text and HTML templates of one email receiver: the user's
/// (`subject`/`text`/`html` in `EmailConfig`) where set, the built-in ones always.
#[derive(Debug)]
pub struct EmailTemplates {
    env: Environment<'static>,
    /// The user's source for each of `PARTS`, where overridden (for error positions).
    user: [Option<String>; 3],
}

impl EmailTemplates {
    /// Compiles the user's templates; an error names the template and the line and
    /// column, so the config loader can point at it.
    pub fn new(cfg: &EmailConfig) -> Result<EmailTemplates, TemplateError> {
        let mut env = Environment::new();
        // The HTML templates, user's or built-in, escape every value; subject and
        // text are plain text.
        env.set_auto_escape_callback(|name| {
            if name.ends_with("html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        for (name, source) in [
            ("builtin-subject", BUILTIN_SUBJECT),
            ("builtin-text", BUILTIN_TEXT),
            ("builtin-html", BUILTIN_HTML),
        ] {
            // A bug, not a user error: the tests compile every built-in.
            env.add_template(name, source)
                .map_err(|e| TemplateError::from_minijinja("built-in", source, &e))?;
        }
        let user = [cfg.subject.clone(), cfg.text.clone(), cfg.html.clone()];
        for (&name, source) in PARTS.iter().zip(&user) {
            if let Some(source) = source {
                env.add_template_owned(name, source.clone())
                    .map_err(|e| TemplateError::from_minijinja(name, source, &e))?;
            }
        }
        Ok(EmailTemplates { env, user })
    }

    /// Renders the three parts. A user template that fails is replaced by the built-in
    /// one and named in `warnings`: a template bug must not lose a page.
    pub fn render(&self, n: &Notification, external_url: &str) -> RenderedEmail {
        let ctx = template_context(n, external_url);
        let mut warnings = Vec::new();
        let mut parts: [String; 3] = Default::default();
        for (i, &name) in PARTS.iter().enumerate() {
            if let Some(source) = &self.user[i] {
                match self.render_one(name, &ctx) {
                    Ok(text) => {
                        parts[i] = text;
                        continue;
                    }
                    Err(e) => {
                        let err = TemplateError::from_minijinja(name, source, &e);
                        warnings.push(format!("{err}; sent with the built-in {name} template"));
                    }
                }
            }
            parts[i] = self
                .render_one(&format!("builtin-{name}"), &ctx)
                .unwrap_or_else(|e| {
                    // The built-ins are tested; should one fail anyway, the mail still
                    // says what happened.
                    warnings.push(format!("built-in {name} template failed: {e}"));
                    match name {
                        "html" => format!("<pre>{}</pre>", html_escape(&subject(n))),
                        _ => subject(n),
                    }
                });
        }
        let [subject_text, text, html] = parts;
        RenderedEmail {
            subject: subject_text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            text,
            html,
            warnings,
        }
    }

    fn render_one(&self, name: &str, ctx: &Jinja) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `Alerts` in a template: a list that also has Alertmanager's `Alerts.Firing` and
/// `Alerts.Resolved`.
#[derive(Debug)]
struct AlertList {
    all: Vec<Jinja>,
    firing: Vec<Jinja>,
    resolved: Vec<Jinja>,
}

impl Object for AlertList {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Jinja) -> Option<Jinja> {
        if let Some(index) = key.as_usize() {
            return self.all.get(index).cloned();
        }
        match key.as_str()? {
            "Firing" => Some(Jinja::from(self.firing.clone())),
            "Resolved" => Some(Jinja::from(self.resolved.clone())),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.all.len())
    }
}

fn labels_jinja(labels: &Labels) -> Jinja {
    Jinja::from(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), Jinja::from(v)))
            .collect::<BTreeMap<String, Jinja>>(),
    )
}

fn annotations_jinja(annotations: &[(String, String)]) -> Jinja {
    Jinja::from(
        annotation_map(annotations)
            .into_iter()
            .map(|(k, v)| (k.to_string(), Jinja::from(v)))
            .collect::<BTreeMap<String, Jinja>>(),
    )
}

/// The data a template sees (see the module doc).
fn template_context(n: &Notification, external_url: &str) -> Jinja {
    let mut all = Vec::with_capacity(n.alerts.len());
    let mut firing = Vec::new();
    let mut resolved = Vec::new();
    for a in &n.alerts {
        let status = alert_status(a, n.created);
        let alert = Jinja::from(BTreeMap::from([
            ("Status", Jinja::from(status.as_str())),
            ("Labels", labels_jinja(&a.labels)),
            ("Annotations", annotations_jinja(&a.annotations)),
            ("StartsAt", Jinja::from(rfc3339_nano(a.starts_at))),
            ("EndsAt", Jinja::from(ends_at_text(a, n.created))),
            ("GeneratorURL", Jinja::from(a.generator_url.as_str())),
            ("Fingerprint", Jinja::from(a.fingerprint_hex())),
        ]));
        match status {
            Status::Firing => firing.push(alert.clone()),
            Status::Resolved => resolved.push(alert.clone()),
        }
        all.push(alert);
    }
    Jinja::from(BTreeMap::from([
        ("Status", Jinja::from(n.status().as_str())),
        ("Receiver", Jinja::from(n.receiver.as_str())),
        ("GroupLabels", labels_jinja(&n.group_labels)),
        ("CommonLabels", labels_jinja(&n.common_labels())),
        (
            "CommonAnnotations",
            annotations_jinja(&n.common_annotations()),
        ),
        ("ExternalURL", Jinja::from(external_url)),
        ("Subject", Jinja::from(subject(n))),
        ("Firing", Jinja::from(firing.clone())),
        ("Resolved", Jinja::from(resolved.clone())),
        (
            "Alerts",
            Jinja::from_object(AlertList {
                all,
                firing,
                resolved,
            }),
        ),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::SmtpTls;

    const T0: i64 = 1_795_463_364_000_000_000; // 2026-11-23T19:49:24Z

    fn alert(
        pairs: &[(&str, &str)],
        annotations: &[(&str, &str)],
        ends_at: Option<i64>,
    ) -> NotifyAlert {
        NotifyAlert {
            labels: Labels::from_pairs(pairs.iter().copied()),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts_at: T0 + 123_456_789,
            ends_at,
            generator_url: "http://127.0.0.1:9777/api/v1/alerts".into(),
        }
    }

    fn notification(alerts: Vec<NotifyAlert>, group: &[(&str, &str)]) -> Notification {
        Notification {
            id: "n-1".into(),
            receiver: "oncall".into(),
            group_key: r#"{}:{alertname="HighErrorRatio", service="checkout-api"}"#.into(),
            group_labels: Labels::from_pairs(group.iter().copied()),
            alerts,
            created: T0 + 60_000_000_000,
        }
    }

    const GROUP: &[(&str, &str)] = &[("alertname", "HighErrorRatio"), ("service", "checkout-api")];

    /// One firing and one resolved alert of the same rule, on two paths.
    fn two_alerts() -> Notification {
        let base = [
            ("alertname", "HighErrorRatio"),
            ("service", "checkout-api"),
            ("environment", "production"),
            ("severity", "page"),
        ];
        let mut a = base.to_vec();
        a.push(("path", "/cart"));
        let mut b = base.to_vec();
        b.push(("path", "/pay"));
        notification(
            vec![
                alert(
                    &a,
                    &[("summary", "errors on /cart"), ("runbook", "r")],
                    None,
                ),
                // Resolved 10 s before the notification was made.
                alert(
                    &b,
                    &[("summary", "errors on /pay"), ("runbook", "r")],
                    Some(T0 + 50_000_000_000),
                ),
            ],
            GROUP,
        )
    }

    fn email_config() -> EmailConfig {
        EmailConfig {
            to: vec!["ops@example.com".into()],
            from: "sidewatch@example.com".into(),
            smarthost: "127.0.0.1:2525".into(),
            tls: SmtpTls::None,
            username: None,
            password: None,
            ca_file: None,
            hello: None,
            subject: None,
            text: None,
            html: None,
            send_resolved: true,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn times_are_written_as_go_does() {
        let cases = [
            (T0, "2026-11-23T19:49:24Z"),
            (T0 + 100_000_000, "2026-11-23T19:49:24.1Z"),
            (T0 + 123_456_000, "2026-11-23T19:49:24.123456Z"),
            (T0 + 123_456_789, "2026-11-23T19:49:24.123456789Z"),
            (T0 + 1, "2026-11-23T19:49:24.000000001Z"),
        ];
        for (nanos, want) in cases {
            assert_eq!(rfc3339_nano(nanos), want);
        }
    }

    #[test]
    fn alertmanager_payload_is_version_4_exactly() {
        let n = two_alerts();
        let got = alertmanager_json(&n, "http://127.0.0.1:9777", 0);
        let alert = |path: &str, summary: &str, status: &str, ends: &str, fp: String| {
            json!({
                "status": status,
                "labels": {"alertname": "HighErrorRatio", "environment": "production",
                           "path": path, "service": "checkout-api", "severity": "page"},
                "annotations": {"runbook": "r", "summary": summary},
                "startsAt": "2026-11-23T19:49:24.123456789Z",
                "endsAt": ends,
                "generatorURL": "http://127.0.0.1:9777/api/v1/alerts",
                "fingerprint": fp,
            })
        };
        let want = json!({
            "version": "4",
            "groupKey": r#"{}:{alertname="HighErrorRatio", service="checkout-api"}"#,
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "oncall",
            "groupLabels": {"alertname": "HighErrorRatio", "service": "checkout-api"},
            "commonLabels": {"alertname": "HighErrorRatio", "environment": "production",
                             "service": "checkout-api", "severity": "page"},
            "commonAnnotations": {"runbook": "r"},
            "externalURL": "http://127.0.0.1:9777",
            "alerts": [
                alert("/cart", "errors on /cart", "firing", GO_ZERO_TIME,
                      n.alerts[0].fingerprint_hex()),
                alert("/pay", "errors on /pay", "resolved", "2026-11-23T19:50:14Z",
                      n.alerts[1].fingerprint_hex()),
            ],
        });
        assert_eq!(got, want);
        assert_eq!(n.alerts[0].fingerprint_hex().len(), 16);
    }

    #[test]
    fn alertmanager_payload_truncates_before_computing_common_values() {
        let n = two_alerts();
        let got = alertmanager_json(&n, "", 1);
        assert_eq!(got["truncatedAlerts"], 1);
        assert_eq!(got["alerts"].as_array().map(Vec::len), Some(1));
        // Only the first alert is left: its own path is now common.
        assert_eq!(got["commonLabels"]["path"], "/cart");
        assert_eq!(got["commonAnnotations"]["summary"], "errors on /cart");
        // A limit at or above the count truncates nothing.
        assert_eq!(alertmanager_json(&n, "", 2)["truncatedAlerts"], 0);
    }

    #[test]
    fn receiver_name_is_quoted_as_alertmanager_does() {
        let mut n = two_alerts();
        n.receiver = "team.pager(1)".into();
        assert_eq!(
            alertmanager_json(&n, "", 0)["receiver"],
            r"team\.pager\(1\)"
        );
    }

    #[test]
    fn subject_follows_alertmanagers_template() {
        let firing = |labels: &[(&str, &str)]| alert(labels, &[], None);
        let resolved = |labels: &[(&str, &str)]| alert(labels, &[], Some(T0));
        let two_paths = vec![
            firing(&[
                ("alertname", "HighErrorRatio"),
                ("service", "checkout-api"),
                ("path", "/a"),
            ]),
            firing(&[
                ("alertname", "HighErrorRatio"),
                ("service", "checkout-api"),
                ("path", "/b"),
            ]),
        ];
        let cases: Vec<(Notification, &str)> = vec![
            // Extra common labels go in parentheses, alertname first, the rest by name.
            (
                two_alerts(),
                "[FIRING:1] HighErrorRatio checkout-api (production page)",
            ),
            // Nothing beyond the group labels: no parentheses and no trailing space.
            (
                notification(two_paths, GROUP),
                "[FIRING:2] HighErrorRatio checkout-api",
            ),
            // All resolved: no count.
            (
                notification(
                    vec![resolved(&[
                        ("alertname", "HighErrorRatio"),
                        ("service", "checkout-api"),
                    ])],
                    GROUP,
                ),
                "[RESOLVED] HighErrorRatio checkout-api",
            ),
            // alertname comes first even though `a` sorts before it.
            (
                notification(
                    vec![firing(&[("alertname", "Z"), ("a", "1"), ("b", "2")])],
                    &[("a", "1"), ("alertname", "Z")],
                ),
                "[FIRING:1] Z 1 (2)",
            ),
            // No group labels (group_by: []): just the common labels.
            (
                notification(vec![firing(&[("alertname", "Down"), ("job", "api")])], &[]),
                "[FIRING:1] (Down api)",
            ),
        ];
        for (n, want) in cases {
            assert_eq!(subject(&n), want);
        }
    }

    #[test]
    fn slack_body_has_an_attachment_per_alert_coloured_by_status() {
        let mut n = two_alerts();
        n.alerts[0]
            .annotations
            .push(("description".into(), "5% of <requests> & more".into()));
        let body = slack_json(&n, "http://sw:9777");
        assert_eq!(
            body["text"],
            "<http://sw:9777|[FIRING:1] HighErrorRatio checkout-api (production page)>"
        );
        let attachments = body["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 2);
        assert_eq!(attachments[0]["color"], "danger");
        assert_eq!(attachments[1]["color"], "good");
        assert_eq!(
            attachments[0]["title"],
            "[FIRING] HighErrorRatio path=/cart"
        );
        assert_eq!(
            attachments[1]["title"],
            "[RESOLVED] HighErrorRatio path=/pay"
        );
        assert_eq!(
            attachments[0]["fields"],
            json!([
                {"title": "Summary", "value": "errors on /cart", "short": false},
                {"title": "Description", "value": "5% of &lt;requests&gt; &amp; more", "short": false},
            ])
        );
        assert_eq!(
            attachments[0]["title_link"],
            "http://127.0.0.1:9777/api/v1/alerts"
        );
    }

    #[test]
    fn slack_body_counts_the_alerts_it_leaves_out() {
        let alerts = (0..SLACK_MAX_ATTACHMENTS + 3)
            .map(|i| alert(&[("alertname", "A"), ("i", &i.to_string())], &[], None))
            .collect();
        let body = slack_json(&notification(alerts, &[("alertname", "A")]), "");
        assert_eq!(
            body["attachments"].as_array().map(Vec::len),
            Some(SLACK_MAX_ATTACHMENTS)
        );
        let text = body["text"].as_str().unwrap();
        assert!(text.ends_with("\n3 more alerts not shown"), "{text}");
    }

    #[test]
    fn builtin_templates_render_every_alert() {
        let templates = EmailTemplates::new(&email_config()).unwrap();
        let mail = templates.render(&two_alerts(), "http://sw:9777");
        assert!(mail.warnings.is_empty(), "{:?}", mail.warnings);
        assert_eq!(
            mail.subject,
            "[FIRING:1] HighErrorRatio checkout-api (production page)"
        );
        let want_text = "\
[FIRING:1] HighErrorRatio checkout-api (production page)

Firing (1):

Labels:
 - alertname = HighErrorRatio
 - environment = production
 - path = /cart
 - service = checkout-api
 - severity = page
Annotations:
 - runbook = r
 - summary = errors on /cart
Started: 2026-11-23T19:49:24.123456789Z
Source: http://127.0.0.1:9777/api/v1/alerts

Resolved (1):

Labels:
 - alertname = HighErrorRatio
 - environment = production
 - path = /pay
 - service = checkout-api
 - severity = page
Annotations:
 - runbook = r
 - summary = errors on /pay
Started: 2026-11-23T19:49:24.123456789Z
Ended: 2026-11-23T19:50:14Z
Source: http://127.0.0.1:9777/api/v1/alerts

Sent by sidewatch: http://sw:9777";
        assert_eq!(mail.text, want_text);
        for want in [
            "[1] Firing",
            "[1] Resolved",
            "path = &#x2f;cart<br>",
            "path = &#x2f;pay<br>",
            "2 alerts for alertname=HighErrorRatio service=checkout-api",
            "background-color:#e6522c",
        ] {
            assert!(mail.html.contains(want), "{want} not in {}", mail.html);
        }
        assert!(!mail.html.contains("<style"), "inline styles only");
    }

    #[test]
    fn html_escapes_what_alerts_carry() {
        let mut n = two_alerts();
        n.alerts[0]
            .annotations
            .push(("description".into(), "<script>alert(1)</script>".into()));
        n.alerts[0]
            .labels
            .insert("path".into(), "/a\"><img src=x>".into());
        let mail = EmailTemplates::new(&email_config()).unwrap().render(&n, "");
        assert!(!mail.html.contains("<script>"), "{}", mail.html);
        assert!(
            mail.html
                .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{}",
            mail.html
        );
        assert!(!mail.html.contains("<img"), "{}", mail.html);
        // The plain-text part is not HTML: it shows the text as it is.
        assert!(mail.text.contains("<script>alert(1)</script>"));
    }

    #[test]
    fn user_templates_see_alertmanagers_names() {
        let mut cfg = email_config();
        cfg.subject = Some(
            "{{ Status|upper }}: {{ CommonLabels.alertname }}\n on {{ GroupLabels.service }}"
                .into(),
        );
        cfg.text = Some(
            "{{ Alerts|length }}/{{ Alerts.Firing|length }}/{{ Resolved|length }} \
             {% for a in Alerts %}{{ a.Labels.path }}={{ a.Status }} {% endfor %}\
             {{ Receiver }} {{ ExternalURL }} {{ CommonAnnotations.runbook }}"
                .into(),
        );
        cfg.html = Some("<b>{{ Alerts[0].Annotations.summary }}</b>".into());
        let mut n = two_alerts();
        n.alerts[0].annotations[0].1 = "errors & <more>".into();
        let mail = EmailTemplates::new(&cfg).unwrap().render(&n, "http://sw");
        assert!(mail.warnings.is_empty(), "{:?}", mail.warnings);
        assert_eq!(mail.subject, "FIRING: HighErrorRatio on checkout-api");
        assert_eq!(
            mail.text,
            "2/1/1 /cart=firing /pay=resolved oncall http://sw r"
        );
        assert_eq!(mail.html, "<b>errors &amp; &lt;more&gt;</b>");
    }

    #[test]
    fn broken_user_template_is_an_error_naming_line_and_column() {
        let cases: [(&str, &str, Option<usize>, Option<usize>); 3] = [
            ("subject", "[{{ Status }]", Some(1), Some(12)),
            (
                "text",
                "ok\n  {% for a in Alerts %}\n{{ a }",
                Some(3),
                Some(6),
            ),
            ("html", "{% if Status %}x", Some(1), None),
        ];
        for (part, source, line, column) in cases {
            let mut cfg = email_config();
            match part {
                "subject" => cfg.subject = Some(source.into()),
                "text" => cfg.text = Some(source.into()),
                _ => cfg.html = Some(source.into()),
            }
            let err = EmailTemplates::new(&cfg).unwrap_err();
            assert_eq!(err.template, part, "{err}");
            assert_eq!(err.line, line, "{part}: {err}");
            if column.is_some() {
                assert_eq!(err.column, column, "{part}: {err}");
            }
            let prefix = format!("email `{part}` template, line ");
            assert!(err.to_string().starts_with(&prefix), "{err}");
            assert!(err.message.contains("syntax error"), "{err}");
        }
    }

    #[test]
    fn a_template_failing_at_render_falls_back_to_the_builtin() {
        let mut cfg = email_config();
        // Compiles, but fails on these data: an undefined value has no attributes.
        cfg.text = Some("line one\n{{ NoSuch.thing }}".into());
        let mail = EmailTemplates::new(&cfg).unwrap().render(&two_alerts(), "");
        assert_eq!(mail.warnings.len(), 1, "{:?}", mail.warnings);
        let warning = &mail.warnings[0];
        assert!(
            warning.starts_with("email `text` template, line 2, column 4: ")
                && warning.ends_with("; sent with the built-in text template"),
            "{warning}"
        );
        // The built-in text went out instead.
        assert!(
            mail.text.starts_with("[FIRING:1] HighErrorRatio"),
            "{}",
            mail.text
        );
    }
}
