//! The validated `alerting:` section. `config::validate` builds it from the YAML (with
//! positions in every error); defaults and inheritance are resolved there, so every
//! value here is final: a child route already carries its parent's `group_by` and timers
//! when it sets none.

use std::path::PathBuf;
use std::time::Duration;

use super::matcher::Matcher;
use crate::config::Secret;

/// Alertmanager's defaults.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 60 * 60);

/// The receiver of the default route when `alerting:` has no `route:`: alerts are
/// written to the agent's log (stdout), as SPEC's defaults say.
pub const LOG_RECEIVER: &str = "log";

#[derive(Debug, Clone)]
pub struct AlertingConfig {
    /// `alerting.alertmanagers`: every alert, Prometheus-style.
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// How often a firing alert is re-sent to the Alertmanagers (Prometheus'
    /// `--rules.alert.resend-delay`, 1m); `endsAt` is now + 4 × this.
    pub resend_delay: Duration,
    /// The root of the route tree.
    pub route: Route,
    pub receivers: Vec<Receiver>,
    pub inhibit_rules: Vec<InhibitRule>,
    /// Alertmanager's `externalURL` in payloads and links: the agent's API URL unless
    /// set (`alerting.external_url`).
    pub external_url: String,
}

impl AlertingConfig {
    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }
}

/// `group_by`: a list of label names, or `['...']`, every label (no aggregation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Labels(Vec<String>),
    All,
}

/// One node of the route tree, with its inherited values resolved.
#[derive(Debug, Clone)]
pub struct Route {
    pub receiver: String,
    /// All must match (the root's list is empty: it matches every alert).
    pub matchers: Vec<Matcher>,
    /// Keep looking at the following siblings after this route matched.
    pub continue_matching: bool,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub email: Option<EmailConfig>,
    pub webhook: Option<WebhookConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required: refused if the server does
    /// not offer it).
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No TLS at all: only for a relay on localhost.
    None,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub to: Vec<String>,
    pub from: String,
    /// `host:port`.
    pub smarthost: String,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// An extra trust root (a private CA or a self-signed server certificate).
    pub ca_file: Option<PathBuf>,
    /// The EHLO name; default: the host's name.
    pub hello: Option<String>,
    /// Templates overriding the built-in subject, plain-text and HTML bodies.
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Send a notification when a group's alerts resolve (Alertmanager: false for email;
    /// sidewatch: true, so a page is followed by its all-clear).
    pub send_resolved: bool,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Alertmanager's webhook JSON, version "4".
    Alertmanager,
    /// A Slack incoming-webhook body (`text` plus one attachment per alert).
    Slack,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub format: WebhookFormat,
    /// When set, `X-Sidewatch-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    pub hmac_secret: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    /// At most this many alerts in one payload (0: all), as Alertmanager's `max_alerts`.
    pub max_alerts: usize,
    pub send_resolved: bool,
}

/// Mute alerts matching `target_matchers` while an alert matching `source_matchers`
/// fires with the same values of the `equal` labels.
#[derive(Debug, Clone)]
pub struct InhibitRule {
    pub source_matchers: Vec<Matcher>,
    pub target_matchers: Vec<Matcher>,
    pub equal: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AlertmanagerConfig {
    /// Base URLs; alerts go to `<url>/api/v2/alerts`.
    pub urls: Vec<String>,
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
    /// A bearer token, when the Alertmanagers sit behind a proxy that wants one.
    pub bearer_token: Option<Secret>,
}

impl Route {
    /// The root route without an `alerting.route`: every alert to the agent's log,
    /// grouped by `alertname` and `service` with Alertmanager's timers.
    pub fn default_root() -> Route {
        Route {
            receiver: LOG_RECEIVER.into(),
            matchers: Vec::new(),
            continue_matching: false,
            group_by: GroupBy::Labels(vec!["alertname".into(), "service".into()]),
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            routes: Vec::new(),
        }
    }
}

impl AlertingConfig {
    /// No `alerting:` section: notifications go to the agent's log only.
    pub fn defaults(external_url: String) -> AlertingConfig {
        AlertingConfig {
            alertmanagers: Vec::new(),
            resend_delay: Duration::from_secs(60),
            route: Route::default_root(),
            receivers: Vec::new(),
            inhibit_rules: Vec::new(),
            external_url,
        }
    }
}
