//! Aggregation groups, their timers and the notification log: Alertmanager's
//! dispatcher and notify pipeline (mute by inhibition and silences, dedup, log) as a
//! pure state machine. The caller feeds alerts (`ingest`), asks for the notifications
//! due (`flush`, at `next_flush`), and saves `snapshot` in the state store; nothing here
//! reads the clock or does IO.
//!
//! Alertmanager 0.25 semantics (`dispatch/dispatch.go`, `notify/notify.go`):
//! - an alert goes to every route `route::match_routes` returns; in each, to the group
//!   of its `group_by` values, keyed `{route path}:{group labels}` and the receiver;
//! - a new group flushes `group_wait` after it was created, then every
//!   `group_interval`; an alert joining a group that already flushed waits for the
//!   next tick. An alert that started more than `group_wait` ago flushes a group that
//!   has not flushed yet at once;
//! - at a flush, inhibited and silenced alerts are left out; if nothing is left,
//!   nothing happens. Otherwise the notification log decides (the `DedupStage`): send
//!   when some firing alert was not in the last notification, when resolved alerts are
//!   new and the receiver wants them, when everything the receiver last heard of as
//!   firing has resolved, or when `repeat_interval` has passed with something firing;
//! - after every flush the group's resolved alerts leave it, and an empty group ends.
//!
//! Where sidewatch differs:
//! - the log entry's time is the flush time (Alertmanager's is taken after delivery),
//!   so a `repeat_interval` that is a multiple of `group_interval` repeats exactly on
//!   time rather than one `group_interval` late;
//! - an empty group ends at the flush that empties it, not at the next 30s
//!   maintenance tick;
//! - the newest `ingest` of an alert replaces the previous one (the sources, the rule
//!   engine and deployment verdicts, always send the whole current state), and a
//!   resolved alert that no group holds joins none: nobody was told it fired;
//! - delivery goes through the durable outbox, so a produced notification counts as
//!   sent. A receiver with both email and webhook is one notification: it includes
//!   resolved alerts when either integration has `send_resolved`, and the integration
//!   without it drops them (Alertmanager's per-integration rule).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::config::{AlertingConfig, GroupBy, Route};
use super::inhibit::Inhibitor;
use super::route::match_routes;
use super::silence::Silences;
use super::{Notification, NotifyAlert};
use crate::rules::labels::Labels;

/// How long the notification log remembers what a receiver was told about a group
/// after the last notification (Alertmanager's `--data.retention`, 120h).
pub const NOTIFICATION_LOG_RETENTION: Duration = Duration::from_secs(5 * 24 * 60 * 60);

pub struct Dispatcher {
    /// The route tree, receivers (`send_resolved`) and inhibit rules; replaced on reload.
    config: Arc<AlertingConfig>,
    /// Every alert by fingerprint: the firing ones, and resolved ones a group still has
    /// to report. Inhibition looks at the firing ones.
    alerts: BTreeMap<u64, NotifyAlert>,
    /// Aggregation groups by group key and receiver, holding fingerprints into `alerts`.
    groups: BTreeMap<GroupId, Group>,
    /// Alertmanager's notification log: what each receiver was last told about each
    /// group. Outlives the groups so an alert coming back is compared with it.
    log: BTreeMap<GroupId, LogEntry>,
    /// The latest `now` seen: the creation time of groups a reload makes.
    last_now: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct GroupId {
    group_key: String,
    receiver: String,
}

#[derive(Clone, Debug)]
struct Group {
    /// The values of the route's `group_by`.
    labels: Labels,
    alerts: BTreeSet<u64>,
    created: i64,
    next_flush: i64,
    has_flushed: bool,
    /// The route's timers in ns, refreshed on reload.
    group_wait: i64,
    group_interval: i64,
    repeat_interval: i64,
}

#[derive(Clone, Debug, PartialEq)]
struct LogEntry {
    firing: BTreeSet<u64>,
    resolved: BTreeSet<u64>,
    sent_at: i64,
}

/// The dispatcher's state for the state store: alerts, groups with their timers, and
/// the notification log. Restoring it after a restart neither re-notifies nor restarts
/// `group_wait`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DispatchState {
    pub alerts: Vec<NotifyAlert>,
    pub groups: Vec<GroupState>,
    pub notification_log: Vec<NotificationLogEntry>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupState {
    pub group_key: String,
    pub receiver: String,
    pub labels: Labels,
    /// Fingerprints of the group's alerts.
    pub alerts: Vec<u64>,
    pub created: i64,
    pub next_flush: i64,
    pub has_flushed: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NotificationLogEntry {
    pub group_key: String,
    pub receiver: String,
    /// Fingerprints of the alerts the last notification reported firing / resolved.
    pub firing: Vec<u64>,
    pub resolved: Vec<u64>,
    pub sent_at: i64,
}

/// A firing alert as the API shows it (Alertmanager's v2 `GettableAlert` status).
#[derive(Clone, Debug, PartialEq)]
pub struct AlertStatus<'a> {
    pub alert: &'a NotifyAlert,
    /// The receivers of the routes it goes to.
    pub receivers: Vec<&'a str>,
    /// Ids of the active silences that match it.
    pub silenced_by: Vec<String>,
    /// Fingerprints (16 hex digits) of the firing alerts that inhibit it.
    pub inhibited_by: Vec<String>,
}

impl AlertStatus<'_> {
    /// Alertmanager's `suppressed` state: silenced or inhibited (else `active`).
    pub fn suppressed(&self) -> bool {
        !self.silenced_by.is_empty() || !self.inhibited_by.is_empty()
    }
}

impl Dispatcher {
    pub fn new(config: Arc<AlertingConfig>) -> Dispatcher {
        Dispatcher {
            config,
            alerts: BTreeMap::new(),
            groups: BTreeMap::new(),
            log: BTreeMap::new(),
            last_now: i64::MIN,
        }
    }

    /// Replaces the config on reload. Every alert is routed again: a group whose key and
    /// receiver still exist keeps its timers and alerts (taking the route's new timers);
    /// other groups end, and new ones start at the latest time the dispatcher has seen.
    /// The notification log is kept, so nothing already sent is sent again.
    pub fn set_config(&mut self, config: Arc<AlertingConfig>) {
        self.config = config;
        self.regroup(self.last_now);
    }

    /// An alert's current state: firing while `ends_at` is `None` or in the future,
    /// resolved once it is not. The same labels are the same alert, updated in place;
    /// a resolved alert that fires again is firing.
    pub fn ingest(&mut self, alert: NotifyAlert, now: i64) {
        self.observe(now);
        let fingerprint = alert.fingerprint();
        let firing = !alert.resolved_at(now);
        let was_firing = self
            .alerts
            .get(&fingerprint)
            .is_some_and(|a| !a.resolved_at(now));
        if firing || was_firing {
            let config = Arc::clone(&self.config);
            for (route, route_key) in match_routes(&config.route, &alert.labels) {
                let labels = group_labels(&alert.labels, &route.group_by);
                let id = GroupId::new(&route_key, &labels, &route.receiver);
                self.groups
                    .entry(id)
                    .or_insert_with(|| Group::new(route, labels, now))
                    .insert(fingerprint, &alert, now);
            }
        }
        let held = self
            .groups
            .values()
            .any(|g| g.alerts.contains(&fingerprint));
        if firing || held {
            self.alerts.insert(fingerprint, alert);
        }
    }

    /// Every notification due at `now`, for each group whose flush time has come (in
    /// group key order). Muted alerts are left out, the notification log decides
    /// whether the receiver hears anything, and resolved alerts then leave the group; a
    /// group left empty ends. `new_id` gives each notification its idempotency key.
    pub fn flush(
        &mut self,
        now: i64,
        silences: &Silences,
        new_id: &mut dyn FnMut() -> String,
    ) -> Vec<Notification> {
        self.observe(now);
        let config = Arc::clone(&self.config);
        let inhibitor = Inhibitor::new(
            &config.inhibit_rules,
            self.alerts
                .values()
                .filter(|a| !a.resolved_at(now))
                .map(|a| &a.labels),
        );
        let mut notifications = Vec::new();
        let mut ended = Vec::new();
        for (id, group) in self.groups.iter_mut() {
            if group.next_flush > now {
                continue;
            }
            group.next_flush = now.saturating_add(group.group_interval);
            group.has_flushed = true;

            let unmuted: Vec<&NotifyAlert> = group
                .alerts
                .iter()
                .filter_map(|fp| self.alerts.get(fp))
                .filter(|a| {
                    !inhibitor.is_inhibited(&a.labels)
                        && silences.is_silenced(&a.labels, now).is_none()
                })
                .collect();
            if !unmuted.is_empty() {
                let send_resolved = send_resolved(&config, &id.receiver);
                let (resolved, firing): (Vec<&NotifyAlert>, Vec<&NotifyAlert>) =
                    unmuted.iter().partition(|a| a.resolved_at(now));
                let firing_set: BTreeSet<u64> = firing.iter().map(|a| a.fingerprint()).collect();
                let resolved_set: BTreeSet<u64> =
                    resolved.iter().map(|a| a.fingerprint()).collect();
                let entry = self.log.get(id);
                if needs_update(
                    entry,
                    &firing_set,
                    &resolved_set,
                    send_resolved,
                    group.repeat_interval,
                    now,
                ) {
                    let alerts = notification_alerts(&firing, &resolved, send_resolved);
                    // With nothing left to send (only resolved alerts, unwanted), the
                    // receiver hears nothing but the log still records that everything
                    // it knew of resolved.
                    if !alerts.is_empty() {
                        notifications.push(Notification {
                            id: new_id(),
                            receiver: id.receiver.clone(),
                            group_key: id.group_key.clone(),
                            group_labels: group.labels.clone(),
                            alerts,
                            created: now,
                        });
                    }
                    self.log.insert(
                        id.clone(),
                        LogEntry {
                            firing: firing_set,
                            resolved: resolved_set,
                            sent_at: now,
                        },
                    );
                }
            }
            // Resolved alerts leave the group after every flush, notified or not (muted,
            // unwanted, or never reported firing), as Alertmanager deletes them once the
            // pipeline has run.
            group
                .alerts
                .retain(|fp| self.alerts.get(fp).is_some_and(|a| !a.resolved_at(now)));
            if group.alerts.is_empty() {
                ended.push(id.clone());
            }
        }
        for id in ended {
            self.groups.remove(&id);
        }
        self.gc(now);
        notifications
    }

    /// The earliest time `flush` has work: the nearest group flush; `None` without
    /// groups.
    pub fn next_flush(&self) -> Option<i64> {
        self.groups.values().map(|g| g.next_flush).min()
    }

    /// The firing alerts, sorted by labels, with their receivers and whether they are
    /// silenced or inhibited at `now` (for the API).
    pub fn alerts(&self, now: i64, silences: &Silences) -> Vec<AlertStatus<'_>> {
        let firing: Vec<&NotifyAlert> = self
            .alerts
            .values()
            .filter(|a| !a.resolved_at(now))
            .collect();
        let inhibitor =
            Inhibitor::new(&self.config.inhibit_rules, firing.iter().map(|a| &a.labels));
        let mut statuses: Vec<AlertStatus<'_>> = firing
            .iter()
            .map(|alert| {
                let mut receivers: Vec<&str> = Vec::new();
                for (route, _) in match_routes(&self.config.route, &alert.labels) {
                    if !receivers.contains(&route.receiver.as_str()) {
                        receivers.push(&route.receiver);
                    }
                }
                AlertStatus {
                    alert,
                    receivers,
                    silenced_by: silences
                        .silenced_by(&alert.labels, now)
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    inhibited_by: inhibitor
                        .inhibited_by(&alert.labels)
                        .into_iter()
                        .map(|labels| format!("{:016x}", labels.fingerprint()))
                        .collect(),
                }
            })
            .collect();
        statuses.sort_by(|a, b| a.alert.labels.cmp(&b.alert.labels));
        statuses
    }

    /// The state to save: alerts, groups with their timers, the notification log.
    pub fn snapshot(&self) -> DispatchState {
        DispatchState {
            alerts: self.alerts.values().cloned().collect(),
            groups: self
                .groups
                .iter()
                .map(|(id, g)| GroupState {
                    group_key: id.group_key.clone(),
                    receiver: id.receiver.clone(),
                    labels: g.labels.clone(),
                    alerts: g.alerts.iter().copied().collect(),
                    created: g.created,
                    next_flush: g.next_flush,
                    has_flushed: g.has_flushed,
                })
                .collect(),
            notification_log: self
                .log
                .iter()
                .map(|(id, e)| NotificationLogEntry {
                    group_key: id.group_key.clone(),
                    receiver: id.receiver.clone(),
                    firing: e.firing.iter().copied().collect(),
                    resolved: e.resolved.iter().copied().collect(),
                    sent_at: e.sent_at,
                })
                .collect(),
        }
    }

    /// Replaces the state with a saved one (after a restart), then routes the alerts
    /// through the current config as `set_config` does: groups that still exist keep
    /// their timers, and the notification log keeps what was sent from being sent again.
    pub fn restore(&mut self, state: DispatchState, now: i64) {
        self.observe(now);
        self.alerts = state
            .alerts
            .into_iter()
            .map(|a| (a.fingerprint(), a))
            .collect();
        self.groups = state
            .groups
            .into_iter()
            .map(|g| {
                let id = GroupId {
                    group_key: g.group_key,
                    receiver: g.receiver,
                };
                // The timers' lengths come from the route when `regroup` finds it.
                let group = Group {
                    labels: g.labels,
                    alerts: g.alerts.into_iter().collect(),
                    created: g.created,
                    next_flush: g.next_flush,
                    has_flushed: g.has_flushed,
                    group_wait: 0,
                    group_interval: 0,
                    repeat_interval: 0,
                };
                (id, group)
            })
            .collect();
        self.log = state
            .notification_log
            .into_iter()
            .map(|e| {
                let id = GroupId {
                    group_key: e.group_key,
                    receiver: e.receiver,
                };
                let entry = LogEntry {
                    firing: e.firing.into_iter().collect(),
                    resolved: e.resolved.into_iter().collect(),
                    sent_at: e.sent_at,
                };
                (id, entry)
            })
            .collect();
        self.regroup(now);
        self.gc(now);
    }

    fn observe(&mut self, now: i64) {
        self.last_now = self.last_now.max(now);
    }

    /// Routes every alert through the current tree again. A group found again keeps its
    /// timers and takes the route's new lengths; its resolved alerts stay only if it
    /// held them already. New groups get the firing alerts.
    fn regroup(&mut self, now: i64) {
        let config = Arc::clone(&self.config);
        let mut old = std::mem::take(&mut self.groups);
        let mut held_before: BTreeMap<GroupId, BTreeSet<u64>> = BTreeMap::new();
        for (fingerprint, alert) in &self.alerts {
            let firing = !alert.resolved_at(now);
            for (route, route_key) in match_routes(&config.route, &alert.labels) {
                let labels = group_labels(&alert.labels, &route.group_by);
                let id = GroupId::new(&route_key, &labels, &route.receiver);
                let was_held = |held: &BTreeMap<GroupId, BTreeSet<u64>>| {
                    held.get(&id).is_some_and(|set| set.contains(fingerprint))
                };
                let group = match self.groups.entry(id.clone()) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => match old.remove(&id) {
                        Some(mut group) => {
                            held_before.insert(id.clone(), std::mem::take(&mut group.alerts));
                            group.retime(route);
                            entry.insert(group)
                        }
                        None => entry.insert(Group::new(route, labels, now)),
                    },
                };
                if firing || was_held(&held_before) {
                    group.insert(*fingerprint, alert, now);
                }
            }
        }
        self.groups.retain(|_, g| !g.alerts.is_empty());
    }

    /// Forgets resolved alerts no group holds any more and log entries past their
    /// retention.
    fn gc(&mut self, now: i64) {
        let held: BTreeSet<u64> = self
            .groups
            .values()
            .flat_map(|g| g.alerts.iter().copied())
            .collect();
        self.alerts
            .retain(|fp, a| !a.resolved_at(now) || held.contains(fp));
        let retention = nanos(NOTIFICATION_LOG_RETENTION);
        self.log
            .retain(|_, e| e.sent_at.saturating_add(retention) > now);
    }
}

impl GroupId {
    /// Alertmanager's group key, `{route path}:{group labels}`, with the receiver.
    fn new(route_key: &str, labels: &Labels, receiver: &str) -> GroupId {
        GroupId {
            group_key: format!("{route_key}:{labels}"),
            receiver: receiver.to_string(),
        }
    }
}

impl Group {
    fn new(route: &Route, labels: Labels, now: i64) -> Group {
        let group_wait = nanos(route.group_wait);
        Group {
            labels,
            alerts: BTreeSet::new(),
            created: now,
            next_flush: now.saturating_add(group_wait),
            has_flushed: false,
            group_wait,
            group_interval: nanos(route.group_interval),
            repeat_interval: nanos(route.repeat_interval),
        }
    }

    /// Takes the route's timer lengths (after a reload or restore); a group that has
    /// not flushed yet waits the route's `group_wait` from its creation.
    fn retime(&mut self, route: &Route) {
        self.group_wait = nanos(route.group_wait);
        self.group_interval = nanos(route.group_interval);
        self.repeat_interval = nanos(route.repeat_interval);
        if !self.has_flushed {
            self.next_flush = self.created.saturating_add(self.group_wait);
        }
    }

    /// Adds an alert. As Alertmanager, an alert that started more than `group_wait`
    /// ago makes a group that has not flushed yet flush now: it has waited enough.
    fn insert(&mut self, fingerprint: u64, alert: &NotifyAlert, now: i64) {
        self.alerts.insert(fingerprint);
        if !self.has_flushed && alert.starts_at.saturating_add(self.group_wait) < now {
            self.next_flush = self.next_flush.min(now);
        }
    }
}

/// The values of `group_by` the alert has (every label for `['...']`).
fn group_labels(labels: &Labels, group_by: &GroupBy) -> Labels {
    match group_by {
        GroupBy::All => labels.clone(),
        GroupBy::Labels(names) => labels.keep(names),
    }
}

/// Whether the receiver wants resolved alerts: either integration's `send_resolved`; a
/// receiver without integrations, `log`, or an unknown name: yes.
fn send_resolved(config: &AlertingConfig, receiver: &str) -> bool {
    let Some(receiver) = config.receiver(receiver) else {
        return true;
    };
    match (&receiver.email, &receiver.webhook) {
        (None, None) => true,
        (email, webhook) => {
            email.as_ref().is_some_and(|e| e.send_resolved)
                || webhook.as_ref().is_some_and(|w| w.send_resolved)
        }
    }
}

/// Alertmanager's `DedupStage.needsUpdate`.
fn needs_update(
    entry: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat_interval: i64,
    now: i64,
) -> bool {
    let Some(entry) = entry else {
        // Never notified: only something firing is worth a first message.
        return !firing.is_empty();
    };
    if !firing.is_subset(&entry.firing) {
        return true;
    }
    if firing.is_empty() {
        // Everything resolved: tell the receiver if it last heard something fire (this
        // clears the log even when resolved alerts are not sent). Alerts that fired and
        // resolved between two notifications were never reported, so nothing is said.
        return !entry.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&entry.resolved) {
        return true;
    }
    now.saturating_sub(entry.sent_at) >= repeat_interval
}

/// Firing alerts first, then resolved ones (when wanted), each sorted by labels. A
/// firing alert's future end time is left out, as Alertmanager does, so receivers never
/// see an alert "resolve" on a schedule.
fn notification_alerts(
    firing: &[&NotifyAlert],
    resolved: &[&NotifyAlert],
    send_resolved: bool,
) -> Vec<NotifyAlert> {
    let mut firing: Vec<NotifyAlert> = firing
        .iter()
        .map(|a| NotifyAlert {
            ends_at: None,
            ..(*a).clone()
        })
        .collect();
    firing.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut resolved: Vec<NotifyAlert> = if send_resolved {
        resolved.iter().map(|a| (*a).clone()).collect()
    } else {
        Vec::new()
    };
    resolved.sort_by(|a, b| a.labels.cmp(&b.labels));
    firing.extend(resolved);
    firing
}

fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Status;
    use crate::notify::config::{InhibitRule, Receiver, WebhookConfig, WebhookFormat};
    use crate::notify::matcher::Matcher;
    use crate::notify::silence::Silence;

    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;
    const T0: i64 = 1_795_463_364 * S;

    fn route(receiver: &str, matchers: &[&str], group_by: &[&str]) -> Route {
        Route {
            receiver: receiver.into(),
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            group_by: GroupBy::Labels(group_by.iter().map(|s| s.to_string()).collect()),
            ..Route::default_root()
        }
    }

    fn webhook(name: &str, send_resolved: bool) -> Receiver {
        Receiver {
            name: name.into(),
            email: None,
            webhook: Some(WebhookConfig {
                url: "http://127.0.0.1:9/hook".into(),
                format: WebhookFormat::Alertmanager,
                hmac_secret: None,
                ca_file: None,
                timeout: Duration::from_secs(10),
                max_alerts: 0,
                send_resolved,
            }),
        }
    }

    fn config(
        root: Route,
        receivers: Vec<Receiver>,
        inhibit_rules: Vec<InhibitRule>,
    ) -> Arc<AlertingConfig> {
        Arc::new(AlertingConfig {
            route: root,
            receivers,
            inhibit_rules,
            ..AlertingConfig::defaults(String::new())
        })
    }

    fn alert(pairs: &[(&str, &str)], starts_at: i64, ends_at: Option<i64>) -> NotifyAlert {
        NotifyAlert {
            labels: Labels::from_pairs(pairs.iter().copied()),
            annotations: vec![("summary".into(), "s".into())],
            starts_at,
            ends_at,
            generator_url: String::new(),
        }
    }

    /// A dispatcher with its silences and an id counter; notifications are rendered
    /// `receiver group_key ids` where each alert is its `id` label followed by `+`
    /// (firing) or `-` (resolved).
    struct Harness {
        dispatcher: Dispatcher,
        silences: Silences,
        ids: u64,
    }

    impl Harness {
        fn new(config: Arc<AlertingConfig>) -> Harness {
            Harness {
                dispatcher: Dispatcher::new(config),
                silences: Silences::new(),
                ids: 0,
            }
        }

        fn fire(&mut self, pairs: &[(&str, &str)], at: i64) {
            self.dispatcher.ingest(alert(pairs, at, None), at);
        }

        fn resolve(&mut self, pairs: &[(&str, &str)], started: i64, at: i64) {
            self.dispatcher.ingest(alert(pairs, started, Some(at)), at);
        }

        fn flush(&mut self, now: i64) -> Vec<String> {
            let mut counter = self.ids;
            let mut new_id = || {
                counter += 1;
                format!("n{counter}")
            };
            let out = self.dispatcher.flush(now, &self.silences, &mut new_id);
            self.ids = counter;
            out.iter().map(render).collect()
        }

        /// Flushes at every `next_flush` up to `until`; the notifications with their
        /// time relative to `T0` in seconds.
        fn run_until(&mut self, until: i64) -> Vec<(i64, String)> {
            let mut out = Vec::new();
            while let Some(at) = self.dispatcher.next_flush()
                && at <= until
            {
                for n in self.flush(at) {
                    out.push(((at - T0) / S, n));
                }
            }
            out
        }
    }

    fn render(n: &Notification) -> String {
        let alerts: Vec<String> = n
            .alerts
            .iter()
            .map(|a| {
                let state = if a.resolved_at(n.created) { "-" } else { "+" };
                format!("{}{state}", a.labels.get("id").unwrap_or("?"))
            })
            .collect();
        format!("{} {} {}", n.receiver, n.group_key, alerts.join(","))
    }

    fn by_alertname() -> Arc<AlertingConfig> {
        config(route("log", &[], &["alertname"]), vec![], vec![])
    }

    #[test]
    fn group_wait_then_group_interval_batching() {
        let mut h = Harness::new(by_alertname());
        h.fire(&[("alertname", "A"), ("id", "1")], T0);
        h.fire(&[("alertname", "A"), ("id", "2")], T0 + 10 * S);
        h.fire(&[("alertname", "B"), ("id", "1")], T0 + 20 * S);
        assert_eq!(h.dispatcher.next_flush(), Some(T0 + 30 * S));
        assert!(h.flush(T0 + 29 * S).is_empty());
        assert_eq!(h.flush(T0 + 30 * S), [r#"log {}:{alertname="A"} 1+,2+"#]);
        assert_eq!(h.flush(T0 + 50 * S), [r#"log {}:{alertname="B"} 1+"#]);
        // A new alert in a group that already flushed waits for the group's next tick.
        h.fire(&[("alertname", "A"), ("id", "3")], T0 + 60 * S);
        assert!(h.flush(T0 + 61 * S).is_empty());
        assert_eq!(h.dispatcher.next_flush(), Some(T0 + 30 * S + 5 * M));
        assert_eq!(
            h.flush(T0 + 30 * S + 5 * M),
            [r#"log {}:{alertname="A"} 1+,2+,3+"#]
        );
        // Nothing new, repeat_interval (4h) not reached.
        assert_eq!(h.run_until(T0 + 3 * 60 * M), []);
    }

    #[test]
    fn repeat_interval_resends_while_firing() {
        let root = Route {
            repeat_interval: Duration::from_secs(3600),
            ..route("log", &[], &["alertname"])
        };
        let mut h = Harness::new(config(root, vec![], vec![]));
        h.fire(&[("alertname", "A"), ("id", "1")], T0);
        let sent: Vec<i64> = h
            .run_until(T0 + 150 * M)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(sent, [30, 30 + 3600, 30 + 7200]);
    }

    #[test]
    fn resolved_notification_then_the_group_ends() {
        for (send_resolved, want) in [
            (true, vec![r#"hook {}:{alertname="A"} 1-"#.to_string()]),
            (false, vec![]),
        ] {
            let cfg = config(
                route("hook", &[], &["alertname"]),
                vec![webhook("hook", send_resolved)],
                vec![],
            );
            let mut h = Harness::new(cfg);
            h.fire(&[("alertname", "A"), ("id", "1")], T0);
            assert_eq!(h.flush(T0 + 30 * S).len(), 1);
            h.resolve(&[("alertname", "A"), ("id", "1")], T0, T0 + 100 * S);
            assert_eq!(
                h.flush(T0 + 30 * S + 5 * M),
                want,
                "send_resolved: {send_resolved}"
            );
            assert_eq!(h.dispatcher.next_flush(), None, "the group ended");
            assert!(
                h.dispatcher.snapshot().alerts.is_empty(),
                "the resolved alert is forgotten"
            );
        }
    }

    #[test]
    fn the_resolved_notification_has_resolved_status_and_keeps_the_end() {
        let mut h = Harness::new(by_alertname());
        h.fire(&[("alertname", "A"), ("id", "1")], T0);
        h.flush(T0 + 30 * S);
        h.resolve(&[("alertname", "A"), ("id", "1")], T0, T0 + 100 * S);
        let mut next = || "x".to_string();
        let out = h
            .dispatcher
            .flush(T0 + 30 * S + 5 * M, &h.silences, &mut next);
        assert_eq!(out[0].status(), Status::Resolved);
        assert_eq!(out[0].alerts[0].ends_at, Some(T0 + 100 * S));
    }

    #[test]
    fn partial_resolution() {
        for (send_resolved, want) in [
            (true, vec![r#"hook {}:{alertname="A"} 1+,2-"#.to_string()]),
            // Firing {1} was already reported: nothing until repeat_interval.
            (false, vec![]),
        ] {
            let cfg = config(
                route("hook", &[], &["alertname"]),
                vec![webhook("hook", send_resolved)],
                vec![],
            );
            let mut h = Harness::new(cfg);
            h.fire(&[("alertname", "A"), ("id", "1")], T0);
            h.fire(&[("alertname", "A"), ("id", "2")], T0);
            assert_eq!(h.flush(T0 + 30 * S), [r#"hook {}:{alertname="A"} 1+,2+"#]);
            h.resolve(&[("alertname", "A"), ("id", "2")], T0, T0 + 60 * S);
            assert_eq!(
                h.flush(T0 + 30 * S + 5 * M),
                want,
                "send_resolved: {send_resolved}"
            );
            // Alert 2 has left the group: the next tick has nothing to say.
            assert!(h.flush(T0 + 30 * S + 10 * M).is_empty());
            assert!(h.dispatcher.next_flush().is_some(), "alert 1 still fires");
        }
    }

    #[test]
    fn fired_and_resolved_within_group_wait_is_never_sent() {
        let mut h = Harness::new(by_alertname());
        h.fire(&[("alertname", "A"), ("id", "1")], T0);
        h.resolve(&[("alertname", "A"), ("id", "1")], T0, T0 + 10 * S);
        assert!(h.flush(T0 + 30 * S).is_empty());
        assert_eq!(h.dispatcher.next_flush(), None);
    }

    #[test]
    fn an_alert_firing_again_after_its_resolution_is_sent_again() {
        let mut h = Harness::new(by_alertname());
        let a = [("alertname", "A"), ("id", "1")];
        h.fire(&a, T0);
        h.flush(T0 + 30 * S);
        h.resolve(&a, T0, T0 + 60 * S);
        assert_eq!(h.flush(T0 + 330 * S), [r#"log {}:{alertname="A"} 1-"#]);
        h.fire(&a, T0 + 400 * S);
        // A new group: group_wait again.
        assert_eq!(h.dispatcher.next_flush(), Some(T0 + 430 * S));
        assert_eq!(h.flush(T0 + 430 * S), [r#"log {}:{alertname="A"} 1+"#]);
    }

    #[test]
    fn silence_suppresses_and_its_expiry_releases() {
        let mut h = Harness::new(by_alertname());
        let id = h
            .silences
            .add(
                Silence {
                    id: String::new(),
                    matchers: Matcher::parse_list(r#"alertname="A""#).unwrap(),
                    starts_at: T0,
                    ends_at: T0 + 60 * M,
                    created_by: "ops".into(),
                    comment: "maintenance".into(),
                    updated_at: 0,
                },
                T0,
                || "s1".to_string(),
            )
            .unwrap();
        h.fire(&[("alertname", "A"), ("id", "1")], T0);
        h.fire(&[("alertname", "B"), ("id", "1")], T0);
        // Flushes at 30s and 330s: B only.
        assert_eq!(
            h.run_until(T0 + 6 * M),
            [(30, r#"log {}:{alertname="B"} 1+"#.to_string())]
        );
        h.silences.expire(&id, T0 + 7 * M).unwrap();
        // The next tick of A's group (630s) sends it.
        assert_eq!(
            h.run_until(T0 + 11 * M),
            [(630, r#"log {}:{alertname="A"} 1+"#.to_string())]
        );
    }

    #[test]
    fn a_silence_added_later_stops_repeats_and_the_resolved_notice() {
        let mut h = Harness::new(by_alertname());
        let a = [("alertname", "A"), ("id", "1")];
        h.fire(&a, T0);
        assert_eq!(h.flush(T0 + 30 * S).len(), 1);
        h.silences
            .add(
                Silence {
                    id: String::new(),
                    matchers: Matcher::parse_list(r#"id="1""#).unwrap(),
                    starts_at: T0 + M,
                    ends_at: T0 + 10 * 60 * M,
                    created_by: "ops".into(),
                    comment: "known".into(),
                    updated_at: 0,
                },
                T0 + M,
                || "s1".to_string(),
            )
            .unwrap();
        assert_eq!(h.run_until(T0 + 5 * 60 * M), [], "no repeat after 4h");
        h.resolve(&a, T0, T0 + 5 * 60 * M);
        assert_eq!(h.run_until(T0 + 6 * 60 * M), [], "muted resolution");
        assert_eq!(h.dispatcher.next_flush(), None);
    }

    #[test]
    fn inhibition_mutes_targets_while_the_source_fires() {
        let rule = InhibitRule {
            source_matchers: vec![Matcher::parse(r#"severity="critical""#).unwrap()],
            target_matchers: vec![Matcher::parse(r#"severity="warning""#).unwrap()],
            equal: vec!["service".into()],
        };
        let mut h = Harness::new(config(
            route("log", &[], &["alertname"]),
            vec![],
            vec![rule],
        ));
        let down = [
            ("alertname", "Down"),
            ("severity", "critical"),
            ("service", "api"),
            ("id", "1"),
        ];
        h.fire(&down, T0);
        h.fire(
            &[
                ("alertname", "Slow"),
                ("severity", "warning"),
                ("service", "api"),
                ("id", "2"),
            ],
            T0,
        );
        h.fire(
            &[
                ("alertname", "Slow"),
                ("severity", "warning"),
                ("service", "web"),
                ("id", "3"),
            ],
            T0,
        );
        assert_eq!(
            h.flush(T0 + 30 * S),
            [
                r#"log {}:{alertname="Down"} 1+"#,
                r#"log {}:{alertname="Slow"} 3+"#
            ]
        );
        let statuses = h.dispatcher.alerts(T0 + 30 * S, &h.silences);
        let inhibited: Vec<(&str, usize)> = statuses
            .iter()
            .map(|s| {
                (
                    s.alert.labels.get("id").unwrap_or("?"),
                    s.inhibited_by.len(),
                )
            })
            .collect();
        assert_eq!(inhibited, [("1", 0), ("2", 1), ("3", 0)]);
        h.resolve(&down, T0, T0 + M);
        // The source is gone: the api warning is sent with the next tick.
        assert_eq!(
            h.flush(T0 + 330 * S),
            [
                r#"log {}:{alertname="Down"} 1-"#,
                r#"log {}:{alertname="Slow"} 2+,3+"#
            ]
        );
    }

    #[test]
    fn continue_routes_notify_two_receivers_and_group_wait_zero_is_immediate() {
        let mut root = route("log", &[], &["alertname"]);
        root.routes = vec![
            Route {
                continue_matching: true,
                group_wait: Duration::ZERO,
                ..route("team-a", &[r#"team="a""#], &["alertname"])
            },
            route("pager", &[r#"severity="page""#], &["alertname"]),
        ];
        let cfg = config(
            root,
            vec![webhook("team-a", true), webhook("pager", true)],
            vec![],
        );
        let mut h = Harness::new(cfg);
        h.fire(
            &[
                ("alertname", "A"),
                ("team", "a"),
                ("severity", "page"),
                ("id", "1"),
            ],
            T0,
        );
        assert_eq!(h.flush(T0), [r#"team-a {}/{team="a"}:{alertname="A"} 1+"#]);
        assert_eq!(
            h.flush(T0 + 30 * S),
            [r#"pager {}/{severity="page"}:{alertname="A"} 1+"#]
        );
        let statuses = h.dispatcher.alerts(T0 + 30 * S, &h.silences);
        assert_eq!(statuses[0].receivers, ["team-a", "pager"]);
    }

    #[test]
    fn group_by_all_labels_and_the_group_key() {
        let mut root = route("log", &[], &["alertname"]);
        root.routes = vec![
            route("pager", &[r#"severity="page""#], &["alertname", "service"]),
            Route {
                group_by: GroupBy::All,
                ..route("each", &[r#"severity="info""#], &[])
            },
        ];
        let mut h = Harness::new(config(root, vec![], vec![]));
        h.fire(
            &[
                ("alertname", "HighErrorRatio"),
                ("service", "checkout-api"),
                ("severity", "page"),
                ("id", "1"),
            ],
            T0,
        );
        h.fire(
            &[
                ("alertname", "HighErrorRatio"),
                ("service", "checkout-api"),
                ("severity", "page"),
                ("id", "2"),
            ],
            T0,
        );
        h.fire(
            &[("alertname", "Info"), ("severity", "info"), ("id", "1")],
            T0,
        );
        h.fire(
            &[("alertname", "Info"), ("severity", "info"), ("id", "2")],
            T0,
        );
        assert_eq!(
            h.flush(T0 + 30 * S),
            [
                r#"each {}/{severity="info"}:{alertname="Info", id="1", severity="info"} 1+"#,
                r#"each {}/{severity="info"}:{alertname="Info", id="2", severity="info"} 2+"#,
                r#"pager {}/{severity="page"}:{alertname="HighErrorRatio", service="checkout-api"} 1+,2+"#,
            ]
        );
    }

    #[test]
    fn group_labels_are_the_group_by_values() {
        let mut h = Harness::new(config(
            route("log", &[], &["alertname", "service"]),
            vec![],
            vec![],
        ));
        h.fire(&[("alertname", "A"), ("service", "api"), ("id", "1")], T0);
        h.fire(&[("alertname", "A"), ("id", "2")], T0);
        let mut next = || "x".to_string();
        let out = h.dispatcher.flush(T0 + 30 * S, &h.silences, &mut next);
        let labels: Vec<String> = out.iter().map(|n| n.group_labels.to_string()).collect();
        // An alert without `service` is grouped by the labels it has.
        assert_eq!(
            labels,
            [r#"{alertname="A", service="api"}"#, r#"{alertname="A"}"#]
        );
    }

    #[test]
    fn an_alert_older_than_group_wait_flushes_a_new_group_at_once() {
        let mut h = Harness::new(by_alertname());
        h.dispatcher.ingest(
            alert(&[("alertname", "A"), ("id", "1")], T0 - 10 * M, None),
            T0,
        );
        assert_eq!(h.dispatcher.next_flush(), Some(T0));
        assert_eq!(h.flush(T0), [r#"log {}:{alertname="A"} 1+"#]);
    }

    #[test]
    fn restore_keeps_timers_and_dedup() {
        let mut h = Harness::new(by_alertname());
        let a = [("alertname", "A"), ("id", "1")];
        h.fire(&a, T0);
        assert_eq!(h.flush(T0 + 30 * S).len(), 1);
        h.fire(&[("alertname", "B"), ("id", "1")], T0 + 40 * S);
        let saved = serde_json::to_string(&h.dispatcher.snapshot()).unwrap();

        // Restarted at 200s: B's group_wait ended (70s) while the agent was down, so it
        // flushes at once; A's next tick stays at 330s and sends nothing.
        let mut after = Harness::new(by_alertname());
        after
            .dispatcher
            .restore(serde_json::from_str(&saved).unwrap(), T0 + 200 * S);
        assert_eq!(
            after.dispatcher.snapshot(),
            serde_json::from_str(&saved).unwrap()
        );
        assert_eq!(after.flush(T0 + 200 * S), [r#"log {}:{alertname="B"} 1+"#]);
        assert_eq!(after.dispatcher.next_flush(), Some(T0 + 330 * S));
        assert_eq!(after.run_until(T0 + 60 * M), []);
        // The log knows A was reported firing: its resolution is sent.
        after.resolve(&a, T0, T0 + 61 * M);
        assert_eq!(
            after.run_until(T0 + 66 * M),
            [(3930, r#"log {}:{alertname="A"} 1-"#.to_string())]
        );

        // Without the saved state the same alert would be sent again at once.
        let mut fresh = Harness::new(by_alertname());
        fresh.dispatcher.ingest(alert(&a, T0, None), T0 + 200 * S);
        assert_eq!(fresh.flush(T0 + 200 * S).len(), 1);
    }

    #[test]
    fn reload_keeps_groups_that_still_exist() {
        let mut h = Harness::new(by_alertname());
        h.fire(&[("alertname", "A"), ("severity", "page"), ("id", "1")], T0);
        h.fire(&[("alertname", "B"), ("id", "1")], T0);
        assert_eq!(h.flush(T0 + 30 * S).len(), 2);

        // The same tree with a new group_interval: timers kept, nothing re-sent.
        let root = Route {
            group_interval: Duration::from_secs(60),
            ..route("log", &[], &["alertname"])
        };
        h.dispatcher
            .set_config(config(root.clone(), vec![], vec![]));
        assert_eq!(h.dispatcher.next_flush(), Some(T0 + 330 * S));
        assert!(h.flush(T0 + 330 * S).is_empty());
        assert_eq!(
            h.dispatcher.next_flush(),
            Some(T0 + 390 * S),
            "the new interval"
        );

        // Pages move to their own route: a new group for the new receiver, which flushes
        // at once since its alert started longer than group_wait ago; B's group stays
        // with its timer.
        let mut paged = root;
        paged.routes = vec![route("pager", &[r#"severity="page""#], &["alertname"])];
        h.dispatcher
            .set_config(config(paged, vec![webhook("pager", true)], vec![]));
        let keys: Vec<String> = h
            .dispatcher
            .snapshot()
            .groups
            .iter()
            .map(|g| g.group_key.clone())
            .collect();
        assert_eq!(
            keys,
            [
                r#"{}/{severity="page"}:{alertname="A"}"#,
                r#"{}:{alertname="B"}"#
            ]
        );
        assert_eq!(h.dispatcher.next_flush(), Some(T0 + 330 * S));
        assert_eq!(
            h.flush(T0 + 330 * S),
            [r#"pager {}/{severity="page"}:{alertname="A"} 1+"#]
        );
        assert_eq!(h.dispatcher.next_flush(), Some(T0 + 390 * S));
        assert!(h.flush(T0 + 390 * S).is_empty());
    }
}
