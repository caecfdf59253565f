//! Silences as Alertmanager's v2 API models them: matchers, a start and an end, who
//! created it and why. `Silences` holds them for the dispatcher (`is_silenced`), the
//! API and the CLI, and serializes for the state store; `to_api_json` /
//! `Silence::from_api_json` speak Alertmanager's JSON so `amtool`-style clients work.
//!
//! Semantics of Alertmanager 0.25 (`silence/silence.go` and the v2 API), except:
//! - a silence is expired from its end time on (`now >= ends_at`); Alertmanager still
//!   counts the very nanosecond of `endsAt` as active. So an expired silence stops
//!   muting at once, and expiring sets `ends_at = now`.
//! - the store is pure: ids come from the caller (`new_id`) and time is passed in.

use std::collections::BTreeMap;
use std::time::Duration;

use super::matcher::{MatchOp, Matcher};
use crate::parse::time::rfc3339;
use crate::rules::labels::Labels;

/// How long an expired silence is kept (listed by the API) before `gc` drops it:
/// Alertmanager's `--data.retention` default, 120h.
pub const SILENCE_RETENTION: Duration = Duration::from_secs(5 * 24 * 60 * 60);

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Silence {
    /// Empty until `Silences::add` gives it one.
    pub id: String,
    /// All must match for an alert to be silenced.
    pub matchers: Vec<Matcher>,
    /// Unix ns.
    pub starts_at: i64,
    /// Unix ns; the silence is expired from this instant on.
    pub ends_at: i64,
    pub created_by: String,
    pub comment: String,
    /// When it was last written (Unix ns), set by `add` and `expire`.
    pub updated_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Starts in the future.
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("silence {0} not found")]
    NotFound(String),
    #[error("silence {0} already expired")]
    AlreadyExpired(String),
    #[error("at least one matcher is required")]
    NoMatchers,
    #[error("at least one matcher must not match the empty string")]
    MatchesEverything,
    #[error("end time must be after start time")]
    EndNotAfterStart,
    #[error("end time can't be in the past")]
    EndInPast,
    #[error("createdBy is required")]
    NoCreator,
    #[error("comment is required")]
    NoComment,
    /// The API JSON does not have the shape of a silence.
    #[error("invalid silence: {0}")]
    Invalid(String),
}

impl Silence {
    /// Its state at `now`.
    pub fn state(&self, now: i64) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now >= self.ends_at {
            SilenceState::Expired
        } else {
            SilenceState::Active
        }
    }

    /// Whether every matcher matches the labels (whatever the state).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// The checks that do not depend on the time, as Alertmanager's `validateSilence`
    /// and its v2 API's required fields.
    pub fn validate(&self) -> Result<(), SilenceError> {
        if self.matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        // Alertmanager only counts `=` and `=~` as matching the empty string here: a
        // silence of `!=` matchers alone is allowed.
        let matches_empty = |m: &Matcher| match m.op {
            MatchOp::Equal | MatchOp::Regex => m.matches_value(""),
            MatchOp::NotEqual | MatchOp::NotRegex => false,
        };
        if self.matchers.iter().all(matches_empty) {
            return Err(SilenceError::MatchesEverything);
        }
        if self.ends_at <= self.starts_at {
            return Err(SilenceError::EndNotAfterStart);
        }
        if self.created_by.trim().is_empty() {
            return Err(SilenceError::NoCreator);
        }
        if self.comment.trim().is_empty() {
            return Err(SilenceError::NoComment);
        }
        Ok(())
    }

    /// Alertmanager's v2 `GettableSilence`.
    pub fn to_api_json(&self, now: i64) -> serde_json::Value {
        let matchers: Vec<serde_json::Value> = self
            .matchers
            .iter()
            .map(|m| {
                serde_json::json!({
                    "name": m.name,
                    "value": m.value,
                    "isRegex": m.op.is_regex(),
                    "isEqual": m.op.is_equal(),
                })
            })
            .collect();
        serde_json::json!({
            "id": self.id,
            "matchers": matchers,
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(self.ends_at),
            "createdBy": self.created_by,
            "comment": self.comment,
            "updatedAt": rfc3339(self.updated_at),
            "status": { "state": self.state(now).as_str() },
        })
    }

    /// Reads Alertmanager's v2 `PostableSilence` (an `id` updates that silence). Only
    /// the shape is checked here; `Silences::add` validates the rest. `isEqual` defaults
    /// to true, as in Alertmanager.
    pub fn from_api_json(value: &serde_json::Value) -> Result<Silence, SilenceError> {
        let invalid = |message: String| SilenceError::Invalid(message);
        let object = value
            .as_object()
            .ok_or_else(|| invalid("expected a json object".into()))?;
        let string = |field: &str| -> Result<String, SilenceError> {
            match object.get(field) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(invalid(format!("`{field}` must be a string"))),
                None => Err(invalid(format!("`{field}` is required"))),
            }
        };
        let time = |field: &str| -> Result<i64, SilenceError> {
            let text = string(field)?;
            crate::parse::time::parse_iso8601(text.as_bytes())
                .ok_or_else(|| invalid(format!("`{field}` must be an RFC 3339 time, got {text:?}")))
        };
        let id = match object.get("id") {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(invalid("`id` must be a string".into())),
        };
        let list = match object.get("matchers") {
            Some(serde_json::Value::Array(list)) => list,
            Some(_) => return Err(invalid("`matchers` must be a list".into())),
            None => return Err(invalid("`matchers` is required".into())),
        };
        let mut matchers = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let field = |name: &str| item.get(name);
            let text = |name: &str| match field(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                _ => Err(invalid(format!("matcher {i}: `{name}` must be a string"))),
            };
            let flag = |name: &str, default: Option<bool>| match (field(name), default) {
                (Some(serde_json::Value::Bool(b)), _) => Ok(*b),
                (None, Some(default)) => Ok(default),
                _ => Err(invalid(format!(
                    "matcher {i}: `{name}` must be true or false"
                ))),
            };
            let op = MatchOp::from_flags(flag("isRegex", None)?, flag("isEqual", Some(true))?);
            let matcher = Matcher::new(text("name")?, op, text("value")?)
                .map_err(|e| invalid(format!("matcher {i}: {e}")))?;
            matchers.push(matcher);
        }
        Ok(Silence {
            id,
            matchers,
            starts_at: time("startsAt")?,
            ends_at: time("endsAt")?,
            created_by: string("createdBy")?,
            comment: string("comment")?,
            updated_at: 0,
        })
    }
}

/// Every silence by id, expired ones until `gc` drops them. Serialized as a list of
/// silences, matchers in their text form.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Vec<Silence>", into = "Vec<Silence>")]
pub struct Silences {
    silences: BTreeMap<String, Silence>,
}

impl From<Vec<Silence>> for Silences {
    fn from(list: Vec<Silence>) -> Silences {
        Silences {
            silences: list.into_iter().map(|s| (s.id.clone(), s)).collect(),
        }
    }
}

impl From<Silences> for Vec<Silence> {
    fn from(silences: Silences) -> Vec<Silence> {
        silences.silences.into_values().collect()
    }
}

impl Silences {
    pub fn new() -> Silences {
        Silences::default()
    }

    /// Creates a silence, or updates the one named by `silence.id`, and returns its id.
    ///
    /// As Alertmanager: a new silence starting in the past starts now. An update that
    /// keeps the matchers of an active silence and its start (to the second: clients
    /// round-trip times with millisecond precision), or of a pending silence with a start
    /// not in the past, is made in place; any other update expires the old silence (if
    /// it is not expired already) and creates a new one with a new id, so the history
    /// of what was silenced when stays true.
    pub fn add(
        &mut self,
        mut silence: Silence,
        now: i64,
        new_id: impl FnOnce() -> String,
    ) -> Result<String, SilenceError> {
        silence.validate()?;
        if silence.ends_at <= now {
            return Err(SilenceError::EndInPast);
        }
        let previous = if silence.id.is_empty() {
            None
        } else {
            let previous = self
                .silences
                .get(&silence.id)
                .ok_or_else(|| SilenceError::NotFound(silence.id.clone()))?;
            if can_update(previous, &silence, now) {
                if previous.state(now) == SilenceState::Active {
                    // Keep the exact start: only the second was compared.
                    silence.starts_at = previous.starts_at;
                }
                silence.updated_at = now;
                let id = silence.id.clone();
                self.silences.insert(id.clone(), silence);
                return Ok(id);
            }
            Some(silence.id.clone())
        };
        silence.id = new_id();
        silence.starts_at = silence.starts_at.max(now);
        silence.updated_at = now;
        if let Some(previous) = previous
            && let Some(old) = self.silences.get_mut(&previous)
            && old.state(now) != SilenceState::Expired
        {
            expire_at(old, now);
        }
        let id = silence.id.clone();
        self.silences.insert(id.clone(), silence);
        Ok(id)
    }

    /// Ends a silence now. A pending silence is expired without ever having been active
    /// (its start moves to now too); an expired one cannot be expired again.
    pub fn expire(&mut self, id: &str, now: i64) -> Result<(), SilenceError> {
        let silence = self
            .silences
            .get_mut(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        if silence.state(now) == SilenceState::Expired {
            return Err(SilenceError::AlreadyExpired(id.to_string()));
        }
        expire_at(silence, now);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.silences.get(id)
    }

    /// Every silence, by id.
    pub fn list(&self) -> impl Iterator<Item = &Silence> {
        self.silences.values()
    }

    /// Every silence in the order Alertmanager's API lists them: active ones first
    /// (ending soonest first), then pending (starting soonest first), then expired
    /// (most recently ended first).
    pub fn sorted(&self, now: i64) -> Vec<&Silence> {
        let mut list: Vec<&Silence> = self.silences.values().collect();
        list.sort_by_key(|s| match s.state(now) {
            SilenceState::Active => (0, s.ends_at),
            SilenceState::Pending => (1, s.starts_at),
            SilenceState::Expired => (2, s.ends_at.saturating_neg()),
        });
        list
    }

    /// The id of an active silence matching the labels (the smallest id when several
    /// do), if any.
    pub fn is_silenced(&self, labels: &Labels, now: i64) -> Option<&str> {
        self.silences
            .values()
            .find(|s| s.state(now) == SilenceState::Active && s.matches(labels))
            .map(|s| s.id.as_str())
    }

    /// The ids of every active silence matching the labels (the API's `silencedBy`).
    pub fn silenced_by(&self, labels: &Labels, now: i64) -> Vec<&str> {
        self.silences
            .values()
            .filter(|s| s.state(now) == SilenceState::Active && s.matches(labels))
            .map(|s| s.id.as_str())
            .collect()
    }

    /// Drops silences that ended `SILENCE_RETENTION` or longer ago; returns how many.
    pub fn gc(&mut self, now: i64) -> usize {
        let retention = i64::try_from(SILENCE_RETENTION.as_nanos()).unwrap_or(i64::MAX);
        let before = self.silences.len();
        self.silences
            .retain(|_, s| s.ends_at.saturating_add(retention) > now);
        before - self.silences.len()
    }

    pub fn len(&self) -> usize {
        self.silences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.silences.is_empty()
    }
}

fn expire_at(silence: &mut Silence, now: i64) {
    if silence.state(now) == SilenceState::Pending {
        silence.starts_at = now;
    }
    silence.ends_at = now;
    silence.updated_at = now;
}

/// Alertmanager's `canUpdate`: whether `new` may replace `old` in place without
/// rewriting what was silenced in the past. Matchers are compared as a set.
fn can_update(old: &Silence, new: &Silence, now: i64) -> bool {
    let sorted = |s: &Silence| {
        let mut list: Vec<String> = s.matchers.iter().map(|m| m.to_string()).collect();
        list.sort();
        list
    };
    if sorted(old) != sorted(new) {
        return false;
    }
    const SECOND: i64 = 1_000_000_000;
    match old.state(now) {
        SilenceState::Active => {
            old.starts_at.div_euclid(SECOND) == new.starts_at.div_euclid(SECOND)
                && new.ends_at > now
        }
        SilenceState::Pending => new.starts_at >= now,
        SilenceState::Expired => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const T0: i64 = 1_795_463_364 * S;

    fn silence(matchers: &str, starts_at: i64, ends_at: i64) -> Silence {
        Silence {
            id: String::new(),
            matchers: Matcher::parse_list(matchers).unwrap(),
            starts_at,
            ends_at,
            created_by: "ops".into(),
            comment: "deploy".into(),
            updated_at: 0,
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("s{n}")
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn states_follow_start_and_end() {
        let s = silence(r#"alertname="X""#, T0, T0 + 60 * S);
        let cases = [
            (T0 - 1, SilenceState::Pending),
            (T0, SilenceState::Active),
            (T0 + 60 * S - 1, SilenceState::Active),
            (T0 + 60 * S, SilenceState::Expired),
        ];
        for (now, want) in cases {
            assert_eq!(s.state(now), want, "{now}");
        }
    }

    #[test]
    fn validation() {
        let cases: &[(Silence, i64, SilenceError)] = &[
            (silence("{}", T0, T0 + S), T0, SilenceError::NoMatchers),
            (
                silence(r#"a="", b=~".*""#, T0, T0 + S),
                T0,
                SilenceError::MatchesEverything,
            ),
            (
                silence(r#"a="x""#, T0, T0),
                T0,
                SilenceError::EndNotAfterStart,
            ),
            (
                silence(r#"a="x""#, T0 - 2 * S, T0 - S),
                T0,
                SilenceError::EndInPast,
            ),
            (
                Silence {
                    created_by: " ".into(),
                    ..silence(r#"a="x""#, T0, T0 + S)
                },
                T0,
                SilenceError::NoCreator,
            ),
            (
                Silence {
                    comment: String::new(),
                    ..silence(r#"a="x""#, T0, T0 + S)
                },
                T0,
                SilenceError::NoComment,
            ),
            (
                Silence {
                    id: "nope".into(),
                    ..silence(r#"a="x""#, T0, T0 + S)
                },
                T0,
                SilenceError::NotFound("nope".into()),
            ),
        ];
        for (s, now, want) in cases {
            assert_eq!(
                Silences::new().add(s.clone(), *now, ids()),
                Err(want.clone()),
                "{s:?}"
            );
        }
        // `!=` alone is accepted, as Alertmanager does, and so is one matcher that
        // needs a value beside ones that match everything.
        let mut silences = Silences::new();
        assert!(
            silences
                .add(silence(r#"env!="prod""#, T0, T0 + S), T0, ids())
                .is_ok()
        );
        assert!(
            silences
                .add(silence(r#"a=~".*", b="x""#, T0, T0 + S), T0, ids())
                .is_ok()
        );
    }

    #[test]
    fn silences_matching_alerts_while_active() {
        let mut silences = Silences::new();
        let mut next = ids();
        let id = silences
            .add(
                silence(
                    r#"alertname="HighErrorRatio", service=~"checkout.*""#,
                    T0 + 10 * S,
                    T0 + 70 * S,
                ),
                T0,
                &mut next,
            )
            .unwrap();
        assert_eq!(id, "s1");
        let hit = labels(&[
            ("alertname", "HighErrorRatio"),
            ("service", "checkout-api"),
            ("severity", "page"),
        ]);
        let miss = labels(&[("alertname", "HighErrorRatio"), ("service", "cart")]);
        assert_eq!(silences.is_silenced(&hit, T0), None, "pending");
        assert_eq!(silences.is_silenced(&hit, T0 + 10 * S), Some("s1"));
        assert_eq!(silences.is_silenced(&miss, T0 + 10 * S), None);
        assert_eq!(silences.silenced_by(&hit, T0 + 10 * S), vec!["s1"]);
        assert_eq!(silences.is_silenced(&hit, T0 + 70 * S), None, "expired");
    }

    #[test]
    fn a_new_silence_starting_in_the_past_starts_now() {
        let mut silences = Silences::new();
        let id = silences
            .add(silence(r#"a="x""#, T0 - 60 * S, T0 + 60 * S), T0, ids())
            .unwrap();
        let s = silences.get(&id).unwrap();
        assert_eq!((s.starts_at, s.updated_at), (T0, T0));
    }

    #[test]
    fn updates_in_place_or_replace_as_alertmanager() {
        let mut silences = Silences::new();
        let mut next = ids();
        let id = silences
            .add(silence(r#"a="x""#, T0, T0 + 3600 * S), T0, &mut next)
            .unwrap();
        let now = T0 + 60 * S;

        // Active, same matchers and start (to the second), new end and comment: in place.
        let mut edit = silences.get(&id).unwrap().clone();
        edit.starts_at += 400_000; // a client's millisecond rounding
        edit.ends_at = T0 + 7200 * S;
        edit.comment = "longer".into();
        assert_eq!(silences.add(edit, now, &mut next).unwrap(), "s1");
        let s = silences.get("s1").unwrap();
        assert_eq!(
            (s.starts_at, s.ends_at, s.comment.as_str(), s.updated_at),
            (T0, T0 + 7200 * S, "longer", now)
        );
        assert_eq!(silences.len(), 1);

        // Active with other matchers: the old one expires now, a new id is made.
        let mut edit = silences.get("s1").unwrap().clone();
        edit.matchers = Matcher::parse_list(r#"a="y""#).unwrap();
        assert_eq!(silences.add(edit, now, &mut next).unwrap(), "s2");
        assert_eq!(
            silences.get("s1").unwrap().state(now),
            SilenceState::Expired
        );
        assert_eq!(silences.get("s1").unwrap().ends_at, now);
        assert_eq!(silences.get("s2").unwrap().state(now), SilenceState::Active);

        // An expired silence is never updated in place, and is left as it was.
        let mut edit = silences.get("s1").unwrap().clone();
        edit.ends_at = T0 + 9000 * S;
        assert_eq!(silences.add(edit, now + S, &mut next).unwrap(), "s3");
        assert_eq!(silences.get("s1").unwrap().ends_at, now);

        // A pending silence may move its start (not into the past) in place.
        let pid = silences
            .add(
                silence(r#"b="1""#, T0 + 7200 * S, T0 + 9000 * S),
                now,
                &mut next,
            )
            .unwrap();
        let mut edit = silences.get(&pid).unwrap().clone();
        edit.starts_at = T0 + 3600 * S;
        assert_eq!(silences.add(edit.clone(), now, &mut next).unwrap(), pid);
        assert_eq!(silences.get(&pid).unwrap().starts_at, T0 + 3600 * S);
        edit.starts_at = now - S;
        let replaced = silences.add(edit, now, &mut next).unwrap();
        assert_ne!(replaced, pid);
        assert_eq!(silences.get(&replaced).unwrap().starts_at, now);
        assert_eq!(
            silences.get(&pid).unwrap().state(now),
            SilenceState::Expired
        );
    }

    #[test]
    fn expire_once() {
        let mut silences = Silences::new();
        let mut next = ids();
        let active = silences
            .add(silence(r#"a="x""#, T0, T0 + 60 * S), T0, &mut next)
            .unwrap();
        let pending = silences
            .add(silence(r#"a="y""#, T0 + 30 * S, T0 + 60 * S), T0, &mut next)
            .unwrap();
        let now = T0 + 10 * S;
        assert_eq!(silences.expire(&active, now), Ok(()));
        assert_eq!(silences.get(&active).unwrap().ends_at, now);
        assert_eq!(silences.is_silenced(&labels(&[("a", "x")]), now), None);
        assert_eq!(
            silences.expire(&active, now + S),
            Err(SilenceError::AlreadyExpired(active.clone()))
        );
        assert_eq!(silences.expire(&pending, now), Ok(()));
        let p = silences.get(&pending).unwrap();
        assert_eq!(
            (p.starts_at, p.ends_at, p.state(now)),
            (now, now, SilenceState::Expired)
        );
        assert_eq!(
            silences.expire("missing", now),
            Err(SilenceError::NotFound("missing".into()))
        );
    }

    #[test]
    fn gc_drops_silences_expired_longer_than_the_retention() {
        let mut silences = Silences::new();
        let mut next = ids();
        let old = silences
            .add(silence(r#"a="x""#, T0, T0 + 60 * S), T0, &mut next)
            .unwrap();
        let recent = silences
            .add(silence(r#"a="y""#, T0, T0 + 120 * S), T0, &mut next)
            .unwrap();
        let retention = SILENCE_RETENTION.as_secs() as i64 * S;
        assert_eq!(silences.gc(T0 + 60 * S + retention - 1), 0);
        assert_eq!(silences.gc(T0 + 60 * S + retention), 1);
        assert!(silences.get(&old).is_none());
        assert!(silences.get(&recent).is_some());
    }

    #[test]
    fn sorted_as_the_api_lists_them() {
        let mut silences = Silences::new();
        let mut next = ids();
        for (m, start, end) in [
            (r#"a="1""#, T0, T0 + 100 * S),         // s1 active, ends later
            (r#"a="2""#, T0, T0 + 50 * S),          // s2 active, ends first
            (r#"a="3""#, T0 + 20 * S, T0 + 60 * S), // s3 pending
            (r#"a="4""#, T0, T0 + 5 * S),           // s4 expires first
            (r#"a="5""#, T0, T0 + 8 * S),           // s5 expires later
        ] {
            silences.add(silence(m, start, end), T0, &mut next).unwrap();
        }
        let order: Vec<&str> = silences
            .sorted(T0 + 10 * S)
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(order, ["s2", "s1", "s3", "s5", "s4"]);
    }

    #[test]
    fn serializes_for_the_state_store_with_text_matchers() {
        let mut silences = Silences::new();
        silences
            .add(
                silence(r#"alertname="X", path=~"/api/.*""#, T0, T0 + 60 * S),
                T0,
                ids(),
            )
            .unwrap();
        let json = serde_json::to_value(&silences).unwrap();
        assert_eq!(
            json[0]["matchers"],
            serde_json::json!([r#"alertname="X""#, r#"path=~"/api/.*""#])
        );
        let back: Silences = serde_json::from_value(json).unwrap();
        assert_eq!(back, silences);
        assert_eq!(
            back.is_silenced(&labels(&[("alertname", "X"), ("path", "/api/cart")]), T0),
            Some("s1")
        );
    }

    #[test]
    fn api_json_round_trip() {
        let mut silences = Silences::new();
        let id = silences
            .add(
                silence(
                    r#"alertname="X", path!~"/health""#,
                    T0,
                    T0 + 3600 * S + 250_000_000,
                ),
                T0,
                ids(),
            )
            .unwrap();
        let json = silences.get(&id).unwrap().to_api_json(T0 + S);
        assert_eq!(
            json,
            serde_json::json!({
                "id": "s1",
                "matchers": [
                    {"name": "alertname", "value": "X", "isRegex": false, "isEqual": true},
                    {"name": "path", "value": "/health", "isRegex": true, "isEqual": false},
                ],
                "startsAt": "2026-11-23T19:49:24Z",
                "endsAt": "2026-11-23T20:49:24.250000Z",
                "createdBy": "ops",
                "comment": "deploy",
                "updatedAt": "2026-11-23T19:49:24Z",
                "status": {"state": "active"},
            })
        );
        let back = Silence::from_api_json(&json).unwrap();
        assert_eq!(
            back,
            Silence {
                updated_at: 0,
                ..silences.get(&id).unwrap().clone()
            }
        );
    }

    #[test]
    fn api_json_shape_errors() {
        let base = serde_json::json!({
            "matchers": [{"name": "a", "value": "x", "isRegex": false}],
            "startsAt": "2026-11-23T19:49:24.000Z",
            "endsAt": "2026-11-23T20:49:24.000+01:00",
            "createdBy": "ops",
            "comment": "c",
        });
        // `isEqual` defaults to true; no id means a new silence.
        let s = Silence::from_api_json(&base).unwrap();
        assert_eq!(
            (s.id.as_str(), s.matchers[0].to_string()),
            ("", r#"a="x""#.to_string())
        );
        assert_eq!(s.ends_at, s.starts_at);
        let with = |key: &str, value: serde_json::Value| {
            let mut v = base.clone();
            v[key] = value;
            Silence::from_api_json(&v).unwrap_err().to_string()
        };
        assert_eq!(
            with("matchers", serde_json::json!("a=x")),
            "invalid silence: `matchers` must be a list"
        );
        assert_eq!(
            with(
                "matchers",
                serde_json::json!([{"name": "a", "value": "("  , "isRegex": true}])
            ),
            "invalid silence: matcher 0: invalid regular expression \"(\": unclosed group"
        );
        assert_eq!(
            with("matchers", serde_json::json!([{"name": "a", "value": "x"}])),
            "invalid silence: matcher 0: `isRegex` must be true or false"
        );
        assert_eq!(
            with("startsAt", serde_json::json!("tomorrow")),
            "invalid silence: `startsAt` must be an RFC 3339 time, got \"tomorrow\""
        );
        assert_eq!(
            with("createdBy", serde_json::json!(5)),
            "invalid silence: `createdBy` must be a string"
        );
        let mut missing = base.clone();
        missing.as_object_mut().unwrap().remove("comment");
        assert_eq!(
            Silence::from_api_json(&missing).unwrap_err().to_string(),
            "invalid silence: `comment` is required"
        );
    }
}
