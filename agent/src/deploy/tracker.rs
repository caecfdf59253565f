//! Deployment detection: which version is live, and when a new one started.
//!
//! Evidence comes from three sources (SPEC): an explicit `POST /api/v1/deployments`, a
//! change of the health probe's `version_from` value, and a change of `version_field` in
//! log records. One version change is one deployment whatever source saw it first; its
//! switch time `t0` is the first evidence from any source. The first version a fresh
//! tracker sees is the initial one (no verdict). A change back to an earlier version is
//! a rollback: a new deployment compared with the version it replaced.
//!
//! Records attribute themselves: a record's own version field wins. So an old process
//! still writing the previous version (into a renamed file, or while it drains
//! requests) does not flip the deployment back: a log record of an earlier version only
//! counts as a rollback once the live version has gone quiet in the logs for
//! `ROLLBACK_QUIET_NS`.

use crate::config::DetectSource;

/// How long the live version must have been absent from the logs before records of an
/// earlier version mean a rollback rather than an old process draining.
pub const ROLLBACK_QUIET_NS: i64 = 30 * 1_000_000_000;

/// A deployment's verdict (SPEC "Guarantees").
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One check's outcome with its evidence.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckOutcome {
    pub name: String,
    pub kind: String,
    /// `None` while the check is still running.
    pub verdict: Option<Verdict>,
    #[serde(with = "crate::rules::sketch::float")]
    pub baseline: f64,
    #[serde(with = "crate::rules::sketch::float")]
    pub current: f64,
    pub n_baseline: u64,
    pub n_current: u64,
    #[serde(with = "crate::rules::sketch::float")]
    pub statistic: f64,
    #[serde(with = "crate::rules::sketch::float")]
    pub p_value: f64,
    /// What `current` is compared with (max_increase × baseline, with the min_delta floor).
    #[serde(with = "crate::rules::sketch::float")]
    pub threshold: f64,
    /// The significance level the last look used (after correction).
    #[serde(with = "crate::rules::sketch::float")]
    pub alpha: f64,
    /// Values never seen under the previous version (`new_values`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_values: Vec<String>,
    /// Why the check is inconclusive or was left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Deployment {
    pub id: String,
    pub version: String,
    pub previous: Option<String>,
    /// The switch time: the first evidence of the version from any source.
    pub t0: i64,
    /// Every source that reported this version change, first one first.
    pub detected_by: Vec<DetectSource>,
    #[serde(default)]
    pub meta: serde_json::Value,
    /// The first version this agent saw: nothing to compare with.
    pub initial: bool,
    pub verdict: Option<Verdict>,
    /// When the verdict was decided (early fail, or t0 + verify_window).
    pub decided_at: Option<i64>,
    pub checks: Vec<CheckOutcome>,
}

impl Deployment {
    pub fn verifying(&self) -> bool {
        !self.initial && self.verdict.is_none()
    }
}

/// The live version and the history of deployments.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Tracker {
    pub history: Vec<Deployment>,
    /// Last time each version was seen in a log record (for the rollback rule).
    last_log: Vec<(String, i64)>,
    /// Sources that may start a deployment (`deployments.detect`); empty = all.
    #[serde(skip)]
    pub detect: Vec<DetectSource>,
}

/// Keep this many deployments in the history (older ones are forgotten).
const HISTORY: usize = 200;

impl Tracker {
    pub fn new(detect: Vec<DetectSource>) -> Tracker {
        Tracker {
            detect,
            ..Tracker::default()
        }
    }

    pub fn live(&self) -> Option<&Deployment> {
        self.history.last()
    }

    pub fn live_version(&self) -> Option<&str> {
        self.live().map(|d| d.version.as_str())
    }

    /// The newest deployment of `version`.
    pub fn find_version(&self, version: &str) -> Option<&Deployment> {
        self.history.iter().rev().find(|d| d.version == version)
    }

    pub fn find_id(&self, id: &str) -> Option<&Deployment> {
        self.history.iter().rev().find(|d| d.id == id)
    }

    fn seen_in_logs(&mut self, version: &str, t: i64) {
        match self.last_log.iter_mut().find(|(v, _)| v == version) {
            Some((_, last)) => *last = (*last).max(t),
            None => {
                self.last_log.push((version.to_string(), t));
                if self.last_log.len() > 64 {
                    self.last_log.remove(0);
                }
            }
        }
    }

    fn last_in_logs(&self, version: &str) -> Option<i64> {
        self.last_log
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, t)| *t)
    }

    /// Evidence that `version` runs at `t`. Returns the index of a deployment it
    /// started, if any.
    pub fn observe(&mut self, version: &str, t: i64, source: DetectSource) -> Option<usize> {
        if version.is_empty() {
            return None;
        }
        if source == DetectSource::LogField {
            self.seen_in_logs(version, t);
        }
        if !self.detect.is_empty() && !self.detect.contains(&source) {
            return None;
        }
        let Some(live) = self.live() else {
            return Some(self.push(version, None, t, source, true, None, None));
        };
        if live.version == version {
            let live = self.history.last_mut().expect("live exists");
            if !live.detected_by.contains(&source) {
                live.detected_by.push(source);
            }
            // Evidence earlier than the recorded switch (records read late): t0 is the
            // first evidence from any source.
            if t < live.t0 && !live.initial {
                live.t0 = t;
            }
            return None;
        }
        let live_version = live.version.clone();
        let live_t0 = live.t0;
        let earlier = self.history.iter().any(|d| d.version == version);
        // The probe may still reach the old process for a moment after a switch (an
        // announced deploy restarts the app after the call): an earlier version from the
        // probe within the quiet period is that, not a rollback.
        if source == DetectSource::ProbeVersion
            && earlier
            && (t < live_t0 || t - live_t0 < ROLLBACK_QUIET_NS)
        {
            return None;
        }
        if source == DetectSource::LogField {
            // The live version counts as active from its switch (another source may
            // have seen it before its first log line) and while it logs.
            let last = self
                .last_in_logs(&live_version)
                .unwrap_or(live_t0)
                .max(live_t0);
            let live_active = t - last < ROLLBACK_QUIET_NS;
            // An earlier version's record while the live one still logs: a draining
            // old process, not a rollback. Records before the switch are not news either.
            if (earlier && live_active) || t < self.live().map_or(i64::MIN, |d| d.t0) {
                return None;
            }
        }
        Some(self.push(version, Some(live_version), t, source, false, None, None))
    }

    /// `POST /api/v1/deployments`: `version` is live from `t`. An announcement of the
    /// version already live joins its deployment (its id and meta are recorded).
    pub fn announce(
        &mut self,
        version: &str,
        id: Option<String>,
        meta: serde_json::Value,
        t: i64,
    ) -> (usize, bool) {
        if let Some(live) = self.history.last_mut()
            && live.version == version
        {
            if !live.detected_by.contains(&DetectSource::Api) {
                live.detected_by.push(DetectSource::Api);
            }
            if let Some(id) = id {
                live.id = id;
            }
            if !meta.is_null() {
                live.meta = meta;
            }
            return (self.history.len() - 1, false);
        }
        let previous = self.live_version().map(str::to_string);
        let initial = previous.is_none();
        let index = self.push(
            version,
            previous,
            t,
            DetectSource::Api,
            initial,
            id,
            Some(meta),
        );
        (index, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        version: &str,
        previous: Option<String>,
        t0: i64,
        source: DetectSource,
        initial: bool,
        id: Option<String>,
        meta: Option<serde_json::Value>,
    ) -> usize {
        let id = id.unwrap_or_else(|| {
            let base = format!("{version}@{}", t0.div_euclid(1_000_000_000));
            // Two deployments of one version in the same second get distinct ids.
            let mut id = base.clone();
            let mut n = 1;
            while self.history.iter().any(|d| d.id == id) {
                n += 1;
                id = format!("{base}-{n}");
            }
            id
        });
        self.history.push(Deployment {
            id,
            version: version.to_string(),
            previous,
            t0,
            detected_by: vec![source],
            meta: meta.unwrap_or(serde_json::Value::Null),
            initial,
            verdict: None,
            decided_at: None,
            checks: Vec::new(),
        });
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
        self.history.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DetectSource::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn first_version_is_initial_then_changes_are_deployments() {
        let mut t = Tracker::new(vec![]);
        assert_eq!(t.observe("1.0", 0, LogField), Some(0));
        assert!(t.history[0].initial);
        assert_eq!(t.observe("1.0", S, LogField), None);
        assert_eq!(t.observe("1.1", 100 * S, LogField), Some(1));
        let d = &t.history[1];
        assert_eq!(
            (d.version.as_str(), d.previous.as_deref(), d.t0),
            ("1.1", Some("1.0"), 100 * S)
        );
        assert!(d.verifying());
    }

    #[test]
    fn sources_are_deduplicated_and_t0_is_the_first_evidence() {
        let mut t = Tracker::new(vec![]);
        t.observe("1.0", 0, ProbeVersion);
        let (i, new) = t.announce(
            "1.1",
            Some("deploy-42".into()),
            serde_json::json!({"sha": "abc"}),
            50 * S,
        );
        assert!(new);
        assert_eq!(t.observe("1.1", 52 * S, ProbeVersion), None);
        assert_eq!(t.observe("1.1", 53 * S, LogField), None);
        // A record stamped before the announcement arrives late: t0 moves to it.
        assert_eq!(t.observe("1.1", 49 * S, LogField), None);
        let d = &t.history[i];
        assert_eq!(t.history.len(), 2);
        assert_eq!(d.id, "deploy-42");
        assert_eq!(d.t0, 49 * S);
        assert_eq!(d.detected_by, vec![Api, ProbeVersion, LogField]);
        // Announcing the live version again joins it.
        let (j, new) = t.announce("1.1", None, serde_json::Value::Null, 60 * S);
        assert_eq!((j, new), (i, false));
    }

    #[test]
    fn an_old_process_draining_does_not_flip_back_but_a_rollback_does() {
        let mut t = Tracker::new(vec![]);
        t.observe("1.0", 0, LogField);
        t.observe("1.1", 100 * S, LogField);
        t.observe("1.1", 101 * S, LogField);
        // The old process still writes 1.0 while 1.1 logs: attribution only.
        assert_eq!(t.observe("1.0", 102 * S, LogField), None);
        assert_eq!(t.live_version(), Some("1.1"));
        // 1.1 goes quiet for longer than ROLLBACK_QUIET_NS and 1.0 logs: a rollback.
        let i = t.observe("1.0", 101 * S + ROLLBACK_QUIET_NS + S, LogField);
        assert_eq!(i, Some(2));
        assert_eq!(t.history[2].previous.as_deref(), Some("1.1"));
        // Just after a switch that the probe saw first, the old process's records do
        // not flip it back either.
        t.observe("1.2", 300 * S, ProbeVersion);
        assert_eq!(t.observe("1.1", 301 * S, LogField), None);
        // The probe says rollback once the switch is past the quiet period; just after
        // it, the probe reaching the old process is not a rollback.
        assert_eq!(t.observe("1.1", 301 * S, ProbeVersion), None);
        assert_eq!(t.observe("1.1", 400 * S, ProbeVersion), Some(4));
    }

    #[test]
    fn detect_limits_the_sources_that_start_deployments() {
        let mut t = Tracker::new(vec![Api]);
        assert_eq!(t.observe("1.0", 0, LogField), None);
        assert!(t.history.is_empty());
        t.announce("1.0", None, serde_json::Value::Null, 0);
        assert_eq!(t.observe("1.1", S, LogField), None);
        assert_eq!(t.live_version(), Some("1.0"));
    }
}
