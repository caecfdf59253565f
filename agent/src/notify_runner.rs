//! Runs the notifier live: after every rule evaluation (and on its own timers) it
//! collects the current alerts — the rules' firing and recently resolved alerts and the
//! `DeploymentVerdict` of the live deployment — feeds them to the dispatcher, writes the
//! notifications it makes to the outbox, delivers the outbox, and sends every alert to
//! the configured Alertmanagers the way Prometheus does.
//!
//! Durability: a notification enters the outbox in the same state-store transaction that
//! records it in the dispatcher's notification log, and leaves it only after the receiver
//! acknowledged it (or refused it for good, or it aged out). A crash at any point either
//! loses nothing or repeats one notification with the same idempotency key.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::deploy::tracker::Verdict;
use crate::notify::alertmanager::{self, AlertmanagerClient, Resender};
use crate::notify::config::{AlertingConfig, LOG_RECEIVER};
use crate::notify::dispatch::{DispatchState, Dispatcher};
use crate::notify::email::EmailSender;
use crate::notify::outbox::{Outbox, OutboxEntry};
use crate::notify::payload::Delivery;
use crate::notify::silence::Silences;
use crate::notify::webhook::{WebhookSender, backoff};
use crate::notify::{Notification, NotifyAlert};
use crate::rule_runner::{SharedEngine, unix_nanos};
use crate::rules::labels::Labels;
use crate::state::{NotifyWrite, StateStore};

/// A notification older than this is dropped from the outbox (counted and logged): a
/// receiver that has refused everything for a day needs a person, not more retries.
const MAX_AGE_NS: i64 = 24 * 3600 * 1_000_000_000;
/// The longest the loop sleeps without a timer: how soon an expired silence releases
/// its alerts and how often the Alertmanagers' resends are checked.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Outcomes of `sidewatch_notifications_total{receiver,outcome}`.
pub const OUTCOMES: [&str; 4] = ["delivered", "retried", "failed", "dropped"];

/// The notifier's state shared with the API (silences, outbox depth, counters).
pub struct NotifyShared {
    pub silences: Mutex<Silences>,
    /// Pending outbox entries per receiver.
    pub outbox_depth: Mutex<BTreeMap<String, usize>>,
    /// `(receiver, outcome)` → count.
    pub counters: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Wakes the runner: a rule evaluation ended, a silence changed.
    pub wake: Arc<Notify>,
    store: StateStore,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl NotifyShared {
    /// Saves the silences after a change through the API, and wakes the runner so an
    /// expired silence releases its alerts at once.
    pub fn save_silences(&self) -> Result<(), crate::state::StateError> {
        let bytes = serde_json::to_vec(&*lock(&self.silences)).unwrap_or_default();
        self.store.notify_write(&NotifyWrite {
            silences: Some(&bytes),
            ..NotifyWrite::default()
        })?;
        self.wake.notify_one();
        Ok(())
    }

    fn count(&self, receiver: &str, outcome: &'static str) {
        *lock(&self.counters)
            .entry((receiver.to_string(), outcome))
            .or_insert(0) += 1;
    }

    /// `sidewatch_notifications_total` and `sidewatch_notification_queue_depth`.
    pub fn exposition(&self, receivers: &[String], out: &mut String) {
        use std::fmt::Write as _;
        let counters = lock(&self.counters);
        out.push_str("# HELP sidewatch_notifications_total Notifications by receiver and outcome (delivered, retried, failed, dropped).\n# TYPE sidewatch_notifications_total counter\n");
        // Every configured receiver with every outcome (zeros included, so a rate() has
        // a start), then the Alertmanagers, which appear once they were posted to.
        let mut names: Vec<&str> = receivers.iter().map(String::as_str).collect();
        for (receiver, _) in counters.keys() {
            if !names.contains(&receiver.as_str()) {
                names.push(receiver);
            }
        }
        for receiver in names {
            for outcome in OUTCOMES {
                let n = counters
                    .get(&(receiver.to_string(), outcome))
                    .copied()
                    .unwrap_or(0);
                let _ = writeln!(
                    out,
                    "sidewatch_notifications_total{{receiver=\"{}\",outcome=\"{outcome}\"}} {n}",
                    escape_label(receiver)
                );
            }
        }
        let depth = lock(&self.outbox_depth);
        out.push_str("# HELP sidewatch_notification_queue_depth Notifications waiting in the outbox, by receiver.\n# TYPE sidewatch_notification_queue_depth gauge\n");
        for receiver in receivers {
            let n = depth.get(receiver).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "sidewatch_notification_queue_depth{{receiver=\"{}\"}} {n}",
                escape_label(receiver)
            );
        }
    }
}

/// A label value in the exposition format: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One way a receiver is reached.
enum Integration {
    // Boxed: the SMTP transport is several times the size of the webhook client.
    Email(Box<EmailSender>),
    Webhook(WebhookSender),
}

impl Integration {
    async fn send(&self, n: &Notification) -> Delivery {
        match self {
            Integration::Email(s) => s.send(n).await,
            Integration::Webhook(s) => s.send(n).await,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Integration::Email(_) => "email",
            Integration::Webhook(_) => "webhook",
        }
    }
}

/// The `notification.deliver` span of one delivery attempt (exported over OTLP when
/// traces are). Names, counts and the outcome only: never the receiver's URL,
/// address, headers or credentials.
fn delivery_span(entry: &OutboxEntry, integration: &'static str) -> tracing::Span {
    tracing::info_span!(
        parent: None,
        "notification.deliver",
        notification.receiver = %entry.notification.receiver,
        notification.integration = integration,
        notification.id = %entry.notification.id,
        // i64: tracing-opentelemetry records unsigned integers as strings.
        notification.alerts = i64::try_from(entry.notification.alerts.len()).unwrap_or(i64::MAX),
        notification.status = entry.notification.status().as_str(),
        notification.attempt = i64::from(entry.attempts) + 1,
        outcome = tracing::field::Empty,
    )
}

/// Ends a `notification.deliver` span with the attempt's outcome; a failed attempt
/// (retried or not) has status error with the reason (the senders keep URLs out of it).
fn end_delivery_span(span: tracing::Span, delivery: &Delivery) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let (outcome, reason) = match delivery {
        Delivery::Delivered => ("delivered", None),
        Delivery::Retry { reason, .. } => ("retry", Some(reason)),
        Delivery::Failed { reason } => ("failed", Some(reason)),
    };
    span.record("outcome", outcome);
    if let Some(reason) = reason {
        span.set_status(opentelemetry::trace::Status::error(reason.clone()));
    }
}

/// The result of one delivery attempt, back to the loop.
struct Attempt {
    id: String,
    delivery: Delivery,
}

pub struct NotifyRunner {
    pub shared: Arc<NotifyShared>,
    config: AlertingConfig,
    service: crate::config::ServiceConfig,
    notify_on_pass: bool,
    engine: Option<SharedEngine>,
    deployments: Option<crate::deploy::SharedDeployments>,
    dispatcher: Dispatcher,
    outbox: Outbox,
    /// Integrations by receiver name, each with its `send_resolved`; an outbox entry's
    /// id ends in `.<index>` of one.
    integrations: HashMap<String, Vec<(Arc<Integration>, bool)>>,
    alertmanagers: Vec<AlertmanagerClient>,
    resender: Resender,
    /// What was current at the last pass, to resolve alerts that vanished.
    last: HashMap<u64, NotifyAlert>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyRunnerError {
    #[error("receiver `{receiver}`: {message}")]
    Receiver { receiver: String, message: String },
    #[error("alertmanagers: {0}")]
    Alertmanager(String),
    #[error("{0}")]
    State(#[from] crate::state::StateError),
}

impl NotifyRunner {
    pub fn new(
        config: &Config,
        store: StateStore,
        engine: Option<SharedEngine>,
        deployments: Option<crate::deploy::SharedDeployments>,
        wake: Arc<Notify>,
    ) -> Result<NotifyRunner, NotifyRunnerError> {
        let alerting = config.alerting.clone();
        let mut integrations: HashMap<String, Vec<(Arc<Integration>, bool)>> = HashMap::new();
        for receiver in &alerting.receivers {
            let list = integrations.entry(receiver.name.clone()).or_default();
            if let Some(email) = &receiver.email {
                let sender = EmailSender::new(email, &alerting.external_url).map_err(|e| {
                    NotifyRunnerError::Receiver {
                        receiver: receiver.name.clone(),
                        message: e.to_string(),
                    }
                })?;
                list.push((
                    Arc::new(Integration::Email(Box::new(sender))),
                    email.send_resolved,
                ));
            }
            if let Some(webhook) = &receiver.webhook {
                let sender = WebhookSender::new(webhook, &alerting.external_url).map_err(|e| {
                    NotifyRunnerError::Receiver {
                        receiver: receiver.name.clone(),
                        message: e.to_string(),
                    }
                })?;
                list.push((
                    Arc::new(Integration::Webhook(sender)),
                    webhook.send_resolved,
                ));
            }
        }
        let alertmanagers = alerting
            .alertmanagers
            .iter()
            .map(AlertmanagerClient::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NotifyRunnerError::Alertmanager(e.to_string()))?;
        let now = unix_nanos();
        let mut dispatcher = Dispatcher::new(Arc::new(alerting.clone()));
        if let Some(bytes) = store.notify_state("dispatcher")? {
            match serde_json::from_slice::<DispatchState>(&bytes) {
                Ok(state) => dispatcher.restore(state, now),
                Err(e) => tracing::warn!(
                    component = "notify",
                    "the saved notification groups cannot be read ({e}); starting afresh"
                ),
            }
        }
        let silences = match store.notify_state("silences")? {
            Some(bytes) => serde_json::from_slice::<Silences>(&bytes).unwrap_or_else(|e| {
                tracing::error!(
                    component = "notify",
                    "the saved silences cannot be read ({e}); starting without silences"
                );
                Silences::default()
            }),
            None => Silences::default(),
        };
        let (outbox, unreadable) = Outbox::from_rows(store.outbox()?);
        if !unreadable.is_empty() {
            tracing::error!(
                component = "notify",
                ids = ?unreadable,
                "outbox entries that this version cannot read are left in the store"
            );
        }
        if !outbox.is_empty() {
            tracing::info!(
                component = "notify",
                pending = outbox.len(),
                "notifications left in the outbox by the last run will be delivered"
            );
        }
        let shared = Arc::new(NotifyShared {
            silences: Mutex::new(silences),
            outbox_depth: Mutex::new(outbox.depth_by_receiver()),
            counters: Mutex::new(BTreeMap::new()),
            wake,
            store,
        });
        Ok(NotifyRunner {
            shared,
            config: alerting,
            service: config.service.clone(),
            notify_on_pass: config.deployments.notify_on_pass,
            engine,
            deployments,
            dispatcher,
            outbox,
            integrations,
            alertmanagers,
            resender: Resender::default(),
            last: HashMap::new(),
        })
    }

    /// Every receiver name, the built-in `log` one included, for `/metrics`.
    pub fn receiver_names(&self) -> Vec<String> {
        let mut names: Vec<String> = vec![LOG_RECEIVER.to_string()];
        names.extend(self.config.receivers.iter().map(|r| r.name.clone()));
        names
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Attempt>();
        let mut busy: HashSet<String> = HashSet::new();
        let mut deliveries = tokio::task::JoinSet::new();
        loop {
            let now = unix_nanos();
            self.pass(now).await;
            for entry in self.outbox.due(now, &|id| busy.contains(id)) {
                let Some(integration) = self.integration_of(&entry) else {
                    // Its receiver or integration is gone from the config.
                    self.finish(
                        &entry.notification.id,
                        "dropped",
                        Some("its receiver is no longer configured".into()),
                    );
                    continue;
                };
                busy.insert(entry.notification.id.clone());
                let done = done_tx.clone();
                let span = delivery_span(&entry, integration.kind());
                deliveries.spawn(async move {
                    let delivery = integration.send(&entry.notification).await;
                    end_delivery_span(span, &delivery);
                    let _ = done.send(Attempt {
                        id: entry.notification.id,
                        delivery,
                    });
                });
            }
            let next = [
                self.dispatcher.next_flush(),
                self.outbox.next_due(&|id| busy.contains(id)),
            ]
            .into_iter()
            .flatten()
            .min();
            let wait = match next {
                Some(t) => Duration::from_nanos((t - unix_nanos()).max(0) as u64).min(IDLE_TICK),
                None => IDLE_TICK,
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                Some(attempt) = done_rx.recv() => {
                    busy.remove(&attempt.id);
                    self.settle(attempt);
                    while let Ok(attempt) = done_rx.try_recv() {
                        busy.remove(&attempt.id);
                        self.settle(attempt);
                    }
                }
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            }
        }
        // SIGTERM: give deliveries in flight a moment; what is not acknowledged stays in
        // the outbox and goes out after the restart.
        if !busy.is_empty() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while !busy.is_empty() {
                match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                    Ok(Some(attempt)) => {
                        busy.remove(&attempt.id);
                        self.settle(attempt);
                    }
                    _ => break,
                }
            }
        }
        self.save(None, &[]);
    }

    fn integration_of(&self, entry: &OutboxEntry) -> Option<Arc<Integration>> {
        let index: usize = entry.notification.id.rsplit_once('.')?.1.parse().ok()?;
        self.integrations
            .get(&entry.notification.receiver)?
            .get(index)
            .map(|(integration, _)| integration.clone())
    }

    /// Collects the current alerts, runs the dispatcher, and sends what is due to the
    /// Alertmanagers.
    async fn pass(&mut self, now: i64) {
        let alerts = self.current_alerts(now).await;
        for alert in &alerts {
            self.dispatcher.ingest(alert.clone(), now);
        }
        let notifications = {
            let silences = lock(&self.shared.silences);
            self.dispatcher.flush(now, &silences, &mut new_id)
        };
        if !notifications.is_empty() {
            self.enqueue(notifications);
        }
        if !self.alertmanagers.is_empty() {
            let due = self.resender.due(&alerts, now, self.config.resend_delay);
            if !due.is_empty() {
                let body = Arc::new(alertmanager::body(&due));
                for client in &self.alertmanagers {
                    for url in client.urls() {
                        let client = client.clone();
                        let url = url.clone();
                        let body = body.clone();
                        let shared = self.shared.clone();
                        tokio::spawn(async move {
                            let receiver = format!("alertmanager {}", alertmanager::redact(&url));
                            match client.post(&url, &body).await {
                                Ok(()) => shared.count(&receiver, "delivered"),
                                Err(e) => {
                                    shared.count(&receiver, "failed");
                                    tracing::warn!(
                                        component = "notify",
                                        "cannot send alerts to the alertmanager: {e}; they go again with the next resend"
                                    );
                                }
                            }
                        });
                    }
                }
            }
        }
    }

    /// The rules' firing and recently resolved alerts and the deployment verdict, plus a
    /// resolve for each alert that was current last time and no longer is.
    async fn current_alerts(&mut self, now: i64) -> Vec<NotifyAlert> {
        let generator_url = format!("{}/api/v1/alerts", self.config.external_url);
        let (engine, deployments) = (self.engine.clone(), self.deployments.clone());
        let (service, notify_on_pass) = (self.service.clone(), self.notify_on_pass);
        // On the blocking pool: the sink holds the engine's and the deployments' locks
        // while it ingests a batch, and a runtime worker must not wait for them.
        let mut alerts = crate::off_worker(move || {
            let mut alerts: Vec<NotifyAlert> = Vec::new();
            if let Some(engine) = &engine {
                let engine = crate::rule_runner::lock(engine);
                for a in engine.notifiable_alerts() {
                    alerts.push(NotifyAlert {
                        labels: a.labels.clone(),
                        annotations: a.annotations.clone(),
                        starts_at: a.fired_at.unwrap_or(a.active_at),
                        ends_at: a.resolved_at,
                        generator_url: generator_url.clone(),
                    });
                }
            }
            if let Some(deployments) = &deployments
                && let Some(alert) = deployment_alert(
                    &crate::deploy_runner::lock(deployments).tracker,
                    &service,
                    notify_on_pass,
                    &generator_url,
                )
            {
                alerts.push(alert);
            }
            alerts
        })
        .await;
        let current: HashSet<u64> = alerts.iter().map(|a| a.fingerprint()).collect();
        for (fp, alert) in &self.last {
            if !current.contains(fp) && !alert.resolved_at(now) {
                let mut resolved = alert.clone();
                resolved.ends_at = Some(now);
                alerts.push(resolved);
            }
        }
        self.last = alerts
            .iter()
            .filter(|a| !a.resolved_at(now))
            .map(|a| (a.fingerprint(), a.clone()))
            .collect();
        alerts
    }

    /// Writes new notifications: the `log` receiver's to the agent's log at once, the
    /// others to the outbox, in one transaction with the dispatcher's notification log.
    fn enqueue(&mut self, notifications: Vec<Notification>) {
        let mut entries = Vec::new();
        for n in notifications {
            if n.receiver == LOG_RECEIVER {
                log_notification(&n);
                self.shared.count(LOG_RECEIVER, "delivered");
                continue;
            }
            let flags: Vec<bool> = self
                .integrations
                .get(&n.receiver)
                .map(|l| l.iter().map(|(_, send_resolved)| *send_resolved).collect())
                .unwrap_or_default();
            // One entry per integration, each acknowledged on its own. An integration
            // without `send_resolved` gets the firing alerts only, and nothing when none
            // fires (Alertmanager's rule; the dispatcher decided for the receiver).
            for (index, send_resolved) in flags.into_iter().enumerate() {
                let mut copy = n.clone();
                copy.id = format!("{}.{index}", n.id);
                if !send_resolved {
                    copy.alerts.retain(|a| !a.resolved_at(n.created));
                    if copy.alerts.is_empty() {
                        continue;
                    }
                }
                entries.push(OutboxEntry::new(copy));
            }
        }
        self.save(Some(&entries), &[]);
        for entry in entries {
            self.outbox.insert(entry);
        }
        self.publish_depth();
    }

    /// One transaction: the dispatcher's state, `put` entries, `remove` ids.
    fn save(&self, put: Option<&[OutboxEntry]>, remove: &[&str]) {
        let dispatcher = serde_json::to_vec(&self.dispatcher.snapshot()).unwrap_or_default();
        let encoded: Vec<(String, Vec<u8>)> = put
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e.id().to_string(),
                    serde_json::to_vec(e).unwrap_or_default(),
                )
            })
            .collect();
        let write = NotifyWrite {
            dispatcher: Some(&dispatcher),
            silences: None,
            put: encoded
                .iter()
                .map(|(id, bytes)| (id.as_str(), bytes.as_slice()))
                .collect(),
            remove: remove.to_vec(),
        };
        if let Err(e) = self.shared.store.notify_write(&write) {
            tracing::error!(component = "notify", "cannot write the outbox: {e}");
        }
    }

    /// Records the outcome of a delivery attempt.
    fn settle(&mut self, attempt: Attempt) {
        let Some(entry) = self.outbox.get(&attempt.id).cloned() else {
            return;
        };
        let receiver = entry.notification.receiver.clone();
        let now = unix_nanos();
        match attempt.delivery {
            Delivery::Delivered => {
                tracing::info!(
                    component = "notify",
                    receiver,
                    id = attempt.id,
                    attempts = entry.attempts + 1,
                    status = entry.notification.status().as_str(),
                    alerts = entry.notification.alerts.len(),
                    "notification delivered"
                );
                self.finish(&attempt.id, "delivered", None);
            }
            Delivery::Failed { reason } => {
                tracing::error!(
                    component = "notify",
                    receiver,
                    id = attempt.id,
                    "notification refused, not retried: {reason}"
                );
                self.finish(&attempt.id, "failed", Some(reason));
            }
            Delivery::Retry { after, reason } => {
                if now - entry.notification.created > MAX_AGE_NS {
                    self.finish(&attempt.id, "dropped", Some(reason));
                    return;
                }
                let mut entry = entry;
                entry.attempts += 1;
                // `attempts` counts this failure: the first retry is backoff number 0.
                let wait = after.unwrap_or_else(|| backoff(entry.attempts - 1, jitter()));
                entry.next_attempt =
                    now.saturating_add(i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX));
                entry.last_error = Some(reason.clone());
                tracing::warn!(
                    component = "notify",
                    receiver,
                    id = attempt.id,
                    attempts = entry.attempts,
                    retry_in = ?wait,
                    "notification not delivered, will retry: {reason}"
                );
                self.shared.count(&receiver, "retried");
                self.save(Some(std::slice::from_ref(&entry)), &[]);
                self.outbox.insert(entry);
            }
        }
    }

    /// Removes an entry for good and counts why.
    fn finish(&mut self, id: &str, outcome: &'static str, reason: Option<String>) {
        if let Some(entry) = self.outbox.remove(id) {
            if outcome == "dropped" {
                tracing::error!(
                    component = "notify",
                    receiver = entry.notification.receiver,
                    id,
                    reason = reason.as_deref().unwrap_or(""),
                    "notification dropped from the outbox"
                );
            }
            self.shared.count(&entry.notification.receiver, outcome);
        }
        self.save(None, &[id]);
        self.publish_depth();
    }

    fn publish_depth(&self) {
        *lock(&self.shared.outbox_depth) = self.outbox.depth_by_receiver();
    }
}

/// The `DeploymentVerdict` alert of the live deployment: firing from a `fail` until the
/// next deployment starts; a `pass` only with `notify_on_pass`.
pub fn deployment_alert(
    tracker: &crate::deploy::tracker::Tracker,
    service: &crate::config::ServiceConfig,
    notify_on_pass: bool,
    generator_url: &str,
) -> Option<NotifyAlert> {
    let live = tracker.live()?;
    let verdict = live.verdict?;
    let (name, severity) = match verdict {
        Verdict::Fail => ("fail", "page"),
        Verdict::Pass if notify_on_pass => ("pass", "info"),
        _ => return None,
    };
    let failed: Vec<&str> = live
        .checks
        .iter()
        .filter(|c| c.verdict == Some(Verdict::Fail))
        .map(|c| c.name.as_str())
        .collect();
    let previous = live.previous.as_deref().unwrap_or("the previous version");
    let summary = match verdict {
        Verdict::Fail => format!(
            "version {} is worse than {previous}: {}",
            live.version,
            failed.join(", ")
        ),
        _ => format!(
            "version {} passed verification against {previous}",
            live.version
        ),
    };
    Some(NotifyAlert {
        labels: Labels::from_pairs([
            ("alertname", "DeploymentVerdict"),
            ("version", live.version.as_str()),
            ("verdict", name),
            ("severity", severity),
            ("service", service.name.as_str()),
            ("environment", service.environment.as_str()),
        ]),
        annotations: vec![
            ("summary".into(), summary),
            ("deployment_id".into(), live.id.clone()),
        ],
        starts_at: live.decided_at.unwrap_or(live.t0),
        ends_at: None,
        generator_url: generator_url.to_string(),
    })
}

/// The `log` receiver: one line per notification in the agent's log.
fn log_notification(n: &Notification) {
    let (firing, resolved) = n.counts();
    let alerts: Vec<String> = n.alerts.iter().map(|a| a.labels.to_string()).collect();
    tracing::warn!(
        component = "notify",
        receiver = LOG_RECEIVER,
        group = n.group_key,
        status = n.status().as_str(),
        firing,
        resolved,
        alerts = ?alerts,
        "notification"
    );
}

/// A random 128-bit id in hex: the idempotency key of a notification.
pub fn new_id() -> String {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .is_err()
    {
        // The system's generator failed (it does not, on Linux): time and a counter are
        // still unique within this agent.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return format!("{:016x}{n:016x}", unix_nanos());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Full jitter for the backoff, from the system's generator.
fn jitter() -> f64 {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::tracker::{Deployment, Tracker};

    fn tracker(verdict: Option<Verdict>) -> Tracker {
        let mut tracker = Tracker::new(Vec::new());
        tracker.history.push(Deployment {
            id: "d1".into(),
            version: "1.4.3".into(),
            previous: Some("1.4.2".into()),
            t0: 10,
            detected_by: Vec::new(),
            meta: serde_json::Value::Null,
            initial: false,
            verdict,
            decided_at: verdict.map(|_| 20),
            checks: Vec::new(),
        });
        tracker
    }

    #[test]
    fn deployment_verdict_fires_on_fail_and_on_pass_only_when_asked() {
        let service = crate::config::ServiceConfig {
            name: "checkout-api".into(),
            environment: "production".into(),
        };
        let fail = deployment_alert(&tracker(Some(Verdict::Fail)), &service, false, "u")
            .expect("a failed verdict is an alert");
        assert_eq!(
            fail.labels.to_string(),
            r#"{alertname="DeploymentVerdict", environment="production", service="checkout-api", severity="page", verdict="fail", version="1.4.3"}"#
        );
        assert_eq!(fail.starts_at, 20);
        assert!(deployment_alert(&tracker(Some(Verdict::Pass)), &service, false, "u").is_none());
        let pass = deployment_alert(&tracker(Some(Verdict::Pass)), &service, true, "u")
            .expect("notify_on_pass sends a pass");
        assert_eq!(pass.labels.get("severity"), Some("info"));
        assert_eq!(pass.labels.get("verdict"), Some("pass"));
        assert!(
            deployment_alert(&tracker(Some(Verdict::Inconclusive)), &service, true, "u").is_none()
        );
        assert!(deployment_alert(&tracker(None), &service, true, "u").is_none());
    }

    #[test]
    fn a_delivery_attempt_is_a_span_with_its_outcome_and_no_secrets() {
        use crate::export::otlp::traces::testing::{attribute, capture};
        let (_guard, captured) = capture();
        let service = crate::config::ServiceConfig {
            name: "checkout-api".into(),
            environment: "production".into(),
        };
        let alert = deployment_alert(&tracker(Some(Verdict::Fail)), &service, false, "u")
            .expect("a failed verdict is an alert");
        let entry = |id: &str, attempts: u32| OutboxEntry {
            attempts,
            ..OutboxEntry::new(Notification {
                id: id.into(),
                receiver: "hook".into(),
                group_key: "{}:{}".into(),
                group_labels: Labels::default(),
                alerts: vec![alert.clone()],
                created: 30,
            })
        };
        let cases = [
            (entry("n1.0", 0), Delivery::Delivered, "delivered", false),
            (
                entry("n2.0", 2),
                Delivery::Retry {
                    after: None,
                    reason: "webhook answered 503 service unavailable".into(),
                },
                "retry",
                true,
            ),
            (
                entry("n3.0", 0),
                Delivery::Failed {
                    reason: "webhook answered 400 bad request".into(),
                },
                "failed",
                true,
            ),
        ];
        for (entry, delivery, _, _) in &cases {
            end_delivery_span(delivery_span(entry, "webhook"), delivery);
        }
        let spans = captured.spans();
        assert_eq!(spans.len(), cases.len());
        for (span, (entry, _, outcome, error)) in spans.iter().zip(&cases) {
            assert_eq!(span.name, "notification.deliver");
            // These attributes and nothing else: no URL, address or header can slip in.
            let mut keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                [
                    "notification.alerts",
                    "notification.attempt",
                    "notification.id",
                    "notification.integration",
                    "notification.receiver",
                    "notification.status",
                    "outcome"
                ]
            );
            let get = |key: &str| attribute(&span.attributes, key).map(|v| v.to_string());
            assert_eq!(get("notification.id"), Some(entry.notification.id.clone()));
            assert_eq!(get("notification.receiver").as_deref(), Some("hook"));
            assert_eq!(get("notification.integration").as_deref(), Some("webhook"));
            assert_eq!(
                attribute(&span.attributes, "notification.alerts"),
                Some(1i64.into()),
                "a number, not a string"
            );
            assert_eq!(get("notification.status").as_deref(), Some("firing"));
            assert_eq!(
                attribute(&span.attributes, "notification.attempt"),
                Some((i64::from(entry.attempts) + 1).into())
            );
            assert_eq!(get("outcome").as_deref(), Some(*outcome));
            assert_eq!(
                matches!(span.status, opentelemetry::trace::Status::Error { .. }),
                *error,
                "{outcome}: {:?}",
                span.status
            );
            assert!(
                span.parent_span_id == opentelemetry::trace::SpanId::INVALID,
                "a root span"
            );
        }
    }

    #[test]
    fn ids_are_128_bit_hex_and_distinct() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}
