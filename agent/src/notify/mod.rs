//! Notifications with Alertmanager's semantics: alerts from the rules and deployment
//! verdicts go through a route tree into aggregation groups (`group_by`, `group_wait`,
//! `group_interval`, `repeat_interval`), are muted by silences and inhibition rules, and
//! leave as notifications to receivers (email, webhook) through a durable outbox. Every
//! alert also goes, Prometheus-style, to the `alerting.alertmanagers`.
//!
//! - `config`: the validated `alerting:` section (routes, receivers, inhibit rules)
//! - `matcher`: Alertmanager's label matchers (`=`, `!=`, `=~`, `!~`)
//! - `route`: the route tree: which routes (and receivers) an alert goes to
//! - `dispatch`: aggregation groups and their timers, the notification log — pure: takes
//!   `now`, returns the notifications due
//! - `silence`, `inhibit`: muting
//! - `payload`: Alertmanager's webhook JSON (version 4), the Slack body, email templates
//! - `webhook`, `email`: delivery, classified into delivered / retry / give up
//! - `outbox`: the durable queue in the state store
//! - `alertmanager`: the Prometheus-style client of `alerting.alertmanagers`
//!
//! Times are Unix nanoseconds (`i64`) everywhere, as in `rules/`.

use crate::rules::labels::Labels;

pub mod alertmanager;
pub mod config;
pub mod dispatch;
pub mod email;
pub mod inhibit;
pub mod matcher;
pub mod outbox;
pub mod payload;
pub mod route;
pub mod silence;
pub mod webhook;

/// An alert as the notifier sees it: Alertmanager's model. Labels carry `alertname`,
/// `service` and `environment`, never anything that differs between replicas.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NotifyAlert {
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
    /// When the alert started firing (Unix ns).
    pub starts_at: i64,
    /// When it resolved; `None` while it fires.
    pub ends_at: Option<i64>,
    /// Where the alert comes from (the agent's API), Alertmanager's `generatorURL`.
    pub generator_url: String,
}

impl NotifyAlert {
    /// Alertmanager identifies an alert by its label set.
    pub fn fingerprint(&self) -> u64 {
        self.labels.fingerprint()
    }

    /// The fingerprint as Alertmanager prints it: 16 hex digits.
    pub fn fingerprint_hex(&self) -> String {
        format!("{:016x}", self.fingerprint())
    }

    /// Resolved at `now`: an end time that is not in the future.
    pub fn resolved_at(&self, now: i64) -> bool {
        self.ends_at.is_some_and(|end| end <= now)
    }
}

/// Firing or resolved, for a notification and for each of its alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One message to one receiver: what Alertmanager's notify pipeline hands an integration
/// after grouping, silencing, inhibition and deduplication. It is written to the outbox
/// before anything is sent, so it must serialize.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Notification {
    /// The idempotency key: `X-Sidewatch-Notification-Id` of a webhook, the `Message-ID`
    /// of a mail. Unique per notification; a repeat after a crash between the receiver's
    /// ack and the outbox update carries the same key.
    pub id: String,
    /// The receiver's name in `alerting.receivers`.
    pub receiver: String,
    /// Alertmanager's group key: the route's path and the group's labels,
    /// `{}/{severity="page"}:{alertname="HighErrorRatio"}`.
    pub group_key: String,
    /// The values of the route's `group_by` labels.
    pub group_labels: Labels,
    /// Firing alerts first, then resolved ones; each sorted by labels.
    pub alerts: Vec<NotifyAlert>,
    /// When the dispatcher produced it (Unix ns).
    pub created: i64,
}

impl Notification {
    /// Firing when any of its alerts fires at `created`.
    pub fn status(&self) -> Status {
        if self.alerts.iter().any(|a| !a.resolved_at(self.created)) {
            Status::Firing
        } else {
            Status::Resolved
        }
    }

    /// Labels every alert has with the same value.
    pub fn common_labels(&self) -> Labels {
        let Some(first) = self.alerts.first() else {
            return Labels::new();
        };
        Labels::from_pairs(
            first
                .labels
                .iter()
                .filter(|(k, v)| self.alerts[1..].iter().all(|a| a.labels.get(k) == Some(*v))),
        )
    }

    /// Annotations every alert has with the same value.
    pub fn common_annotations(&self) -> Vec<(String, String)> {
        let Some(first) = self.alerts.first() else {
            return Vec::new();
        };
        let mut common: Vec<(String, String)> = first
            .annotations
            .iter()
            .filter(|(k, v)| {
                self.alerts[1..]
                    .iter()
                    .all(|a| a.annotations.iter().any(|(k2, v2)| k2 == k && v2 == v))
            })
            .cloned()
            .collect();
        common.sort();
        common
    }

    /// How many alerts fire and how many are resolved, at `created`.
    pub fn counts(&self) -> (usize, usize) {
        let firing = self
            .alerts
            .iter()
            .filter(|a| !a.resolved_at(self.created))
            .count();
        (firing, self.alerts.len() - firing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(pairs: &[(&str, &str)], ends_at: Option<i64>) -> NotifyAlert {
        NotifyAlert {
            labels: Labels::from_pairs(pairs.iter().copied()),
            annotations: vec![("summary".into(), "s".into())],
            starts_at: 1,
            ends_at,
            generator_url: String::new(),
        }
    }

    #[test]
    fn status_common_labels_and_counts() {
        let n = Notification {
            id: "x".into(),
            receiver: "r".into(),
            group_key: "{}:{}".into(),
            group_labels: Labels::new(),
            alerts: vec![
                alert(&[("alertname", "A"), ("path", "/a")], None),
                alert(&[("alertname", "A"), ("path", "/b")], Some(5)),
            ],
            created: 10,
        };
        assert_eq!(n.status(), Status::Firing);
        assert_eq!(n.counts(), (1, 1));
        assert_eq!(n.common_labels().to_string(), r#"{alertname="A"}"#);
        assert_eq!(n.common_annotations(), vec![("summary".into(), "s".into())]);
        let resolved = Notification {
            alerts: vec![n.alerts[1].clone()],
            ..n
        };
        assert_eq!(resolved.status(), Status::Resolved);
    }
}
