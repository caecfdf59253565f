//! Sample series: probe results (`probe_success{probe="health"}` …), `record:` rule
//! output and `input_series` of rule tests. Kept as `(time, value)` points for as long
//! as the loaded rules can read them, with Prometheus' staleness: a series a recording
//! rule stops producing gets a stale marker and disappears from instant queries at once.

use std::collections::{HashMap, VecDeque};

use super::labels::{Labels, NAME};

/// How far back an instant query looks for a series' latest sample (Prometheus' default
/// lookback delta).
pub const LOOKBACK_NS: i64 = 5 * 60 * 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub t: i64,
    /// `None` is a stale marker: the series ended here.
    pub v: Option<f64>,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SeriesStore {
    /// Metric name → label set (with `__name__`) → points, oldest first. Saved as a
    /// list: JSON object keys must be strings, and a label set is not one.
    #[serde(with = "as_list")]
    by_name: HashMap<String, HashMap<Labels, VecDeque<Point>>>,
    /// How long points are kept: the longest range any rule reads plus the lookback.
    pub retention: i64,
}

impl SeriesStore {
    pub fn new(retention: i64) -> SeriesStore {
        SeriesStore {
            by_name: HashMap::new(),
            retention: retention.max(LOOKBACK_NS),
        }
    }

    /// Appends a point; a point older than the series' last one is ignored (samples of
    /// one series arrive in order).
    pub fn push(&mut self, labels: &Labels, t: i64, v: Option<f64>) {
        let name = labels.get(NAME).unwrap_or("").to_string();
        let points = self
            .by_name
            .entry(name)
            .or_default()
            .entry(labels.clone())
            .or_default();
        if points.back().is_some_and(|p| p.t > t) {
            return;
        }
        if points.back().is_some_and(|p| p.t == t) {
            points.pop_back();
        }
        points.push_back(Point { t, v });
    }

    /// Marks every series of `name` in `previous` that is not in `current` as stale at `t`.
    pub fn mark_stale(&mut self, name: &str, previous: &[Labels], current: &[Labels], t: i64) {
        let Some(series) = self.by_name.get_mut(name) else {
            return;
        };
        for labels in previous {
            if current.contains(labels) {
                continue;
            }
            if let Some(points) = series.get_mut(labels)
                && points.back().is_some_and(|p| p.v.is_some() && p.t < t)
            {
                points.push_back(Point { t, v: None });
            }
        }
    }

    /// Series of `name` whose labels satisfy `filter`.
    pub fn select<'a>(
        &'a self,
        name: &str,
        mut filter: impl FnMut(&Labels) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a Labels, &'a VecDeque<Point>)> + 'a {
        self.by_name
            .get(name)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |(labels, _)| filter(labels))
    }

    /// The value an instant query at `t` sees: the latest point at or before `t` within
    /// the lookback, unless it is a stale marker.
    pub fn instant(points: &VecDeque<Point>, t: i64) -> Option<f64> {
        let idx = points.partition_point(|p| p.t <= t);
        let p = points.get(idx.checked_sub(1)?)?;
        if p.t <= t - LOOKBACK_NS {
            return None;
        }
        p.v
    }

    /// The non-stale points in `(t − range, t]`.
    pub fn range(
        points: &VecDeque<Point>,
        t: i64,
        range: i64,
    ) -> impl Iterator<Item = (i64, f64)> + '_ {
        let lo = points.partition_point(|p| p.t <= t - range);
        let hi = points.partition_point(|p| p.t <= t);
        points.range(lo..hi).filter_map(|p| p.v.map(|v| (p.t, v)))
    }

    /// Drops points older than the retention before `t`, and series left empty.
    pub fn prune(&mut self, t: i64) {
        let cutoff = t - self.retention;
        for series in self.by_name.values_mut() {
            for points in series.values_mut() {
                while points.front().is_some_and(|p| p.t < cutoff) {
                    points.pop_front();
                }
            }
            series.retain(|_, points| {
                !points.is_empty()
                    && points
                        .back()
                        .is_some_and(|p| p.v.is_some() || p.t >= cutoff)
            });
        }
        self.by_name.retain(|_, m| !m.is_empty());
    }

    pub fn series_count(&self) -> usize {
        self.by_name.values().map(|m| m.len()).sum()
    }

    /// Every series' latest value at `t` (for `/metrics`).
    pub fn latest(&self, t: i64) -> Vec<(&Labels, f64)> {
        let mut out: Vec<(&Labels, f64)> = self
            .by_name
            .values()
            .flat_map(|m| m.iter())
            .filter_map(|(labels, points)| Some((labels, SeriesStore::instant(points, t)?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }
}

mod as_list {
    use std::collections::{HashMap, VecDeque};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Labels, Point};

    type Map = HashMap<String, HashMap<Labels, VecDeque<Point>>>;

    pub(super) fn serialize<S: Serializer>(map: &Map, s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<(&Labels, &VecDeque<Point>)> =
            map.values().flat_map(|series| series.iter()).collect();
        list.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        let list: Vec<(Labels, VecDeque<Point>)> = Vec::deserialize(d)?;
        let mut map: Map = HashMap::new();
        for (labels, points) in list {
            let name = labels.get(super::NAME).unwrap_or("").to_string();
            map.entry(name).or_default().insert(labels, points);
        }
        Ok(map)
    }
}
