//! Alert states as Prometheus keeps them: inactive → pending → firing → resolved, with
//! `for`, `keep_firing_for`, and sidewatch's `resolve_expr` hysteresis. Pure: each
//! evaluation passes its time and result in and gets the transitions out.

use std::collections::HashMap;

use super::labels::Labels;

/// How long a resolved alert is remembered (Prometheus' `resolvedRetention`), so a
/// notifier that missed it can still see it.
pub const RESOLVED_RETENTION_NS: i64 = 15 * 60 * 1_000_000_000;

/// Prometheus' `--rules.alert.for-grace-period`: after a restart, a pending alert gets at
/// least this long before it can fire.
pub const FOR_GRACE_PERIOD_NS: i64 = 10 * 60 * 1_000_000_000;

/// Prometheus' `--rules.alert.for-outage-tolerance`: after a longer outage `for` timers
/// start again.
pub const FOR_OUTAGE_TOLERANCE_NS: i64 = 60 * 60 * 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Resolved, kept for `RESOLVED_RETENTION_NS`.
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule: a label set the rule's expression produced.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    /// The labels of the expression's result (the series), without the rule's labels:
    /// what `resolve_expr` is matched on.
    pub series: Labels,
    /// The alert's labels: the series' labels, the rule's labels and `alertname`.
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
    pub state: AlertState,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub keep_firing_since: Option<i64>,
    /// The last evaluation that saw the alert (for `for` restoration after a restart).
    pub last_eval: i64,
}

/// A change of an alert's state, in evaluation order.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertEvent {
    pub time: i64,
    pub state: AlertState,
    pub alert: Alert,
}

/// One element of an alert rule's result, with its rendered labels and annotations.
pub struct Candidate {
    pub series: Labels,
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
    pub value: f64,
}

/// The active alerts of one alerting rule.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AlertSet {
    pub alerts: HashMap<u64, Alert>,
}

/// The timing parameters of a rule.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub hold: i64,
    pub keep_firing_for: i64,
}

impl AlertSet {
    /// Applies one evaluation at `t`. `resolved(series)` says whether `resolve_expr`
    /// lets a firing alert whose condition has ended resolve (always true without one).
    pub fn update(
        &mut self,
        t: i64,
        timing: Timing,
        candidates: Vec<Candidate>,
        resolved: &dyn Fn(&Labels) -> bool,
        events: &mut Vec<AlertEvent>,
    ) {
        let mut present = std::collections::HashSet::new();
        for c in candidates {
            let fp = c.labels.fingerprint();
            present.insert(fp);
            match self.alerts.get_mut(&fp) {
                Some(alert) if alert.state != AlertState::Inactive => {
                    alert.value = c.value;
                    alert.annotations = c.annotations;
                    alert.series = c.series;
                    alert.last_eval = t;
                }
                _ => {
                    let alert = Alert {
                        series: c.series,
                        labels: c.labels,
                        annotations: c.annotations,
                        state: AlertState::Pending,
                        value: c.value,
                        active_at: t,
                        fired_at: None,
                        resolved_at: None,
                        keep_firing_since: None,
                        last_eval: t,
                    };
                    events.push(AlertEvent {
                        time: t,
                        state: AlertState::Pending,
                        alert: alert.clone(),
                    });
                    self.alerts.insert(fp, alert);
                }
            }
        }
        let mut gone = Vec::new();
        let mut fps: Vec<u64> = self.alerts.keys().copied().collect();
        // A stable order makes events of one evaluation deterministic.
        fps.sort_by(|a, b| self.alerts[a].labels.cmp(&self.alerts[b].labels));
        for fp in fps {
            let Some(alert) = self.alerts.get_mut(&fp) else {
                continue;
            };
            if !present.contains(&fp) {
                if alert.state == AlertState::Firing {
                    if !resolved(&alert.series) {
                        // Hysteresis: the condition ended but `resolve_expr` does not
                        // hold yet; the alert keeps firing with its last value.
                        alert.last_eval = t;
                        continue;
                    }
                    if timing.keep_firing_for > 0 {
                        let since = *alert.keep_firing_since.get_or_insert(t);
                        if t - since < timing.keep_firing_for {
                            alert.last_eval = t;
                            continue;
                        }
                    }
                }
                let expired = alert
                    .resolved_at
                    .is_some_and(|r| t - r > RESOLVED_RETENTION_NS);
                if alert.state == AlertState::Pending || expired {
                    gone.push(fp);
                    continue;
                }
                if alert.state != AlertState::Inactive {
                    alert.state = AlertState::Inactive;
                    alert.resolved_at = Some(t);
                    alert.keep_firing_since = None;
                    events.push(AlertEvent {
                        time: t,
                        state: AlertState::Inactive,
                        alert: alert.clone(),
                    });
                }
                continue;
            }
            if alert.state == AlertState::Pending && t - alert.active_at >= timing.hold {
                alert.state = AlertState::Firing;
                alert.fired_at = Some(t);
                events.push(AlertEvent {
                    time: t,
                    state: AlertState::Firing,
                    alert: alert.clone(),
                });
            }
            if alert.state == AlertState::Firing {
                alert.keep_firing_since = None;
            }
        }
        for fp in gone {
            self.alerts.remove(&fp);
        }
    }

    /// Restores `for` timers after the agent was down from `down_at` to `now`, the way
    /// Prometheus does: a pending alert keeps the time it already spent pending, but
    /// gets at least `FOR_GRACE_PERIOD_NS` before it fires; after an outage longer than
    /// `FOR_OUTAGE_TOLERANCE_NS`, or for a rule whose `for` is shorter than the grace
    /// period, pending alerts start over. Firing alerts stay firing until their next
    /// evaluation says otherwise.
    pub fn restore(&mut self, hold: i64, down_at: i64, now: i64) {
        let outage = now - down_at;
        self.alerts.retain(|_, alert| {
            if alert.state != AlertState::Pending {
                return true;
            }
            if outage > FOR_OUTAGE_TOLERANCE_NS || hold < FOR_GRACE_PERIOD_NS {
                return false;
            }
            let spent = down_at - alert.active_at;
            let remaining = hold - spent;
            if remaining <= 0 {
                // It was due to fire when the agent stopped: the next evaluation decides.
            } else if remaining < FOR_GRACE_PERIOD_NS {
                alert.active_at = now + FOR_GRACE_PERIOD_NS - hold;
            } else {
                alert.active_at += outage;
            }
            true
        });
    }

    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .values()
            .filter(|a| a.state == AlertState::Firing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn cand(path: &str, value: f64) -> Candidate {
        let series = Labels::from_pairs([("path", path)]);
        let mut labels = series.clone();
        labels.insert("alertname".into(), "A".into());
        Candidate {
            series,
            labels,
            annotations: vec![],
            value,
        }
    }

    /// Runs evaluations every 15s; `present(t)` says whether the condition holds.
    fn run(
        timing: Timing,
        until: i64,
        present: impl Fn(i64) -> bool,
        resolved: impl Fn(i64) -> bool,
    ) -> Vec<(i64, AlertState)> {
        let mut set = AlertSet::default();
        let mut out = Vec::new();
        let mut t = 0;
        while t <= until {
            let mut events = Vec::new();
            let candidates = if present(t) {
                vec![cand("/x", 1.0)]
            } else {
                vec![]
            };
            set.update(t, timing, candidates, &|_| resolved(t), &mut events);
            out.extend(events.into_iter().map(|e| (e.time / S, e.state)));
            t += 15 * S;
        }
        out
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let timing = Timing {
            hold: 60 * S,
            keep_firing_for: 0,
        };
        let events = run(
            timing,
            300 * S,
            |t| (30 * S..=150 * S).contains(&t),
            |_| true,
        );
        assert_eq!(
            events,
            vec![
                (30, AlertState::Pending),
                (90, AlertState::Firing),
                (165, AlertState::Inactive)
            ]
        );
    }

    #[test]
    fn pending_that_ends_before_for_never_fires() {
        let timing = Timing {
            hold: 60 * S,
            keep_firing_for: 0,
        };
        let events = run(
            timing,
            300 * S,
            |t| (30 * S..=75 * S).contains(&t),
            |_| true,
        );
        assert_eq!(events, vec![(30, AlertState::Pending)]);
    }

    #[test]
    fn zero_for_fires_in_the_same_evaluation() {
        let timing = Timing {
            hold: 0,
            keep_firing_for: 0,
        };
        let events = run(timing, 60 * S, |t| t == 15 * S, |_| true);
        assert_eq!(
            events,
            vec![
                (15, AlertState::Pending),
                (15, AlertState::Firing),
                (30, AlertState::Inactive)
            ]
        );
    }

    #[test]
    fn keep_firing_for_holds_the_alert_after_the_condition_ends() {
        let timing = Timing {
            hold: 0,
            keep_firing_for: 60 * S,
        };
        // Condition at 0..=30; ends at 45; keep firing while t − 45 < 60 → resolves at 105.
        let events = run(timing, 300 * S, |t| t <= 30 * S, |_| true);
        assert_eq!(
            events,
            vec![
                (0, AlertState::Pending),
                (0, AlertState::Firing),
                (105, AlertState::Inactive)
            ]
        );
    }

    #[test]
    fn resolve_expr_keeps_firing_until_it_holds() {
        let timing = Timing {
            hold: 0,
            keep_firing_for: 0,
        };
        let events = run(timing, 300 * S, |t| t <= 30 * S, |t| t >= 120 * S);
        assert_eq!(
            events,
            vec![
                (0, AlertState::Pending),
                (0, AlertState::Firing),
                (120, AlertState::Inactive)
            ]
        );
    }

    #[test]
    fn restore_gives_pending_alerts_the_grace_period() {
        let hold = 30 * 60 * S;
        let mut set = AlertSet::default();
        let mut events = Vec::new();
        let timing = Timing {
            hold,
            keep_firing_for: 0,
        };
        set.update(0, timing, vec![cand("/x", 1.0)], &|_| true, &mut events);
        // Down at 25m (5m left < grace 10m), back at 30m: needs 10m more from now.
        set.restore(hold, 25 * 60 * S, 30 * 60 * S);
        let alert = set.alerts.values().next().unwrap();
        assert_eq!(alert.active_at, 30 * 60 * S + 10 * 60 * S - hold);
        // Down at 5m (25m left), back at 10m: shifted by the 5m outage.
        let mut set = AlertSet::default();
        set.update(0, timing, vec![cand("/x", 1.0)], &|_| true, &mut events);
        set.restore(hold, 5 * 60 * S, 10 * 60 * S);
        assert_eq!(set.alerts.values().next().unwrap().active_at, 5 * 60 * S);
        // An outage over an hour starts over.
        set.restore(hold, 10 * 60 * S, 80 * 60 * S);
        assert!(set.alerts.is_empty());
    }
}
