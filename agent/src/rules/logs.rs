//! Log windows: where log records enter the rules. Each distinct log query of the loaded
//! rules (selector + pipeline + unwrap, with the fields its rules name as labels) owns a
//! `LogWindow`: per series, a run of time buckets holding counts, bytes and sample
//! statistics. Records are added as they arrive; an evaluation combines the buckets of
//! its range and never looks at a raw record again.
//!
//! Buckets are left-open, right-closed like ranges: bucket `b` holds the records with
//! `b·w < t ≤ (b+1)·w`. Every range and group interval is a multiple of the bucket width
//! `w` and evaluations happen at multiples of their interval, so a range `(t−R, t]` is
//! exactly a run of whole buckets: results are exact, not approximated at the edges.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use memchr::memmem;

use super::ast::{
    FieldCompare, FieldExpr, FieldOp, FieldValue, LineOp, LogQuery, MatchOp, Stage,
    UnwrapConversion,
};
use super::labels::Labels;
use super::sketch::Sketch;
use crate::event::{LogBatch, LogRecord, SeverityText, Value, ValueKind};
use crate::parse::FieldNames;

/// What a window's buckets accumulate, the least its functions need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AccKind {
    /// Line counts and bytes (`count_over_time`, `rate`, `bytes_*`, `absent_over_time`).
    Lines,
    /// Unwrapped samples: count, sum, min, max.
    Values,
    /// Unwrapped samples in a quantile sketch (which also keeps count, sum, min, max).
    Sketch,
}

/// One bucket's contents.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Acc {
    Lines {
        count: u64,
        bytes: u64,
    },
    Values {
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
    },
    Sketch(Box<Sketch>),
}

impl Acc {
    fn new(kind: AccKind) -> Acc {
        match kind {
            AccKind::Lines => Acc::Lines { count: 0, bytes: 0 },
            AccKind::Values => Acc::Values {
                count: 0,
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
            },
            AccKind::Sketch => Acc::Sketch(Box::default()),
        }
    }

    fn add(&mut self, bytes: usize, sample: f64) {
        match self {
            Acc::Lines { count, bytes: b } => {
                *count += 1;
                *b += bytes as u64;
            }
            Acc::Values {
                count,
                sum,
                min,
                max,
            } => {
                *count += 1;
                *sum += sample;
                *min = min.min(sample);
                *max = max.max(sample);
            }
            Acc::Sketch(sketch) => sketch.add(sample),
        }
    }

    pub fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Lines { count, bytes }, Acc::Lines { count: c, bytes: b }) => {
                *count += c;
                *bytes += b;
            }
            (
                Acc::Values {
                    count,
                    sum,
                    min,
                    max,
                },
                Acc::Values {
                    count: c,
                    sum: s,
                    min: lo,
                    max: hi,
                },
            ) => {
                *count += c;
                *sum += s;
                *min = min.min(*lo);
                *max = max.max(*hi);
            }
            (Acc::Sketch(a), Acc::Sketch(b)) => a.merge(b),
            // A window has one kind; mixing never happens.
            _ => {}
        }
    }

    /// Records (lines, or samples when unwrapped) in the bucket.
    pub fn count(&self) -> u64 {
        match self {
            Acc::Lines { count, .. } | Acc::Values { count, .. } => *count,
            Acc::Sketch(s) => s.count(),
        }
    }

    pub fn bytes(&self) -> u64 {
        match self {
            Acc::Lines { bytes, .. } => *bytes,
            _ => 0,
        }
    }

    pub fn sum(&self) -> f64 {
        match self {
            Acc::Lines { .. } => 0.0,
            Acc::Values { sum, .. } => *sum,
            Acc::Sketch(s) => s.sum(),
        }
    }

    pub fn min(&self) -> f64 {
        match self {
            Acc::Lines { .. } => f64::NAN,
            Acc::Values { min, .. } => *min,
            Acc::Sketch(s) => s.min(),
        }
    }

    pub fn max(&self) -> f64 {
        match self {
            Acc::Lines { .. } => f64::NAN,
            Acc::Values { max, .. } => *max,
            Acc::Sketch(s) => s.max(),
        }
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        match self {
            Acc::Sketch(s) => s.quantile(q),
            _ => None,
        }
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Acc>()
            + match self {
                Acc::Sketch(s) => s.memory_bytes(),
                _ => 0,
            }
    }
}

/// One series of a window: its labels and its buckets, oldest first.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WindowSeries {
    pub labels: Labels,
    pub buckets: VecDeque<(i64, Acc)>,
}

/// The interned field names that the loaded rules read. A record's fields are looked up
/// once per record into `FieldSlots`, however many windows read them.
#[derive(Debug, Default)]
pub struct FieldTable {
    names: Vec<String>,
}

impl FieldTable {
    pub fn intern(&mut self, name: &str) -> usize {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i;
        }
        self.names.push(name.to_string());
        self.names.len() - 1
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Where a record's field is: in the batch, or a constant a parser derived (a level).
#[derive(Clone, Copy, Debug)]
enum FieldRef {
    In(Value),
    Static(&'static str),
}

/// A record's fields that the rules read, resolved once per record.
#[derive(Debug, Default)]
pub struct FieldSlots {
    slots: Vec<Option<FieldRef>>,
}

impl FieldSlots {
    /// Resolves every interned name for one record: the mapped fields first (`event` is
    /// the body, `level` the severity, …), then one pass over the attributes.
    fn fill(
        &mut self,
        table: &FieldTable,
        names: &FieldNames,
        batch: &LogBatch,
        record: &LogRecord,
    ) {
        self.slots.clear();
        self.slots.resize(table.names.len(), None);
        if table.names.is_empty() {
            return;
        }
        let mut missing = 0;
        for (slot, name) in self.slots.iter_mut().zip(&table.names) {
            *slot = if *name == names.message {
                record.body.map(FieldRef::In)
            } else if *name == names.level {
                match record.severity_text {
                    SeverityText::In(v) => Some(FieldRef::In(v)),
                    SeverityText::Static(s) => Some(FieldRef::Static(s)),
                    SeverityText::None => None,
                }
            } else if *name == names.trace_id {
                record.trace_id.map(FieldRef::In)
            } else if *name == names.span_id {
                record.span_id.map(FieldRef::In)
            } else if name == "deployment" {
                // The live version the record belongs to (its own version field wins).
                record.deployment.map(FieldRef::In)
            } else {
                None
            };
            if slot.is_none() {
                missing += 1;
            }
        }
        if missing == 0 {
            return;
        }
        for field in batch.attrs(record) {
            let key = if field.key_escaped {
                // Rare: keys with JSON escapes are compared decoded.
                let key = field.key(&batch.buf);
                match table.names.iter().position(|n| *n == key) {
                    Some(i) => i,
                    None => continue,
                }
            } else {
                let key = batch.buf.get(field.key.range()).unwrap_or("");
                match table
                    .names
                    .iter()
                    .position(|n| n.len() == key.len() && n == key)
                {
                    Some(i) => i,
                    None => continue,
                }
            };
            if self.slots[key].is_none() {
                self.slots[key] = Some(FieldRef::In(field.value));
                missing -= 1;
                if missing == 0 {
                    return;
                }
            }
        }
    }

    fn text<'a>(&self, slot: usize, buf: &'a str) -> Option<std::borrow::Cow<'a, str>> {
        match self.slots.get(slot).copied().flatten()? {
            FieldRef::In(v) => match v.kind {
                ValueKind::Null => None,
                _ => Some(v.as_str(buf)),
            },
            FieldRef::Static(s) => Some(std::borrow::Cow::Borrowed(s)),
        }
    }

    fn number(&self, slot: usize, buf: &str, conversion: UnwrapConversion) -> Option<f64> {
        let text = match self.slots.get(slot).copied().flatten()? {
            FieldRef::In(v) => match v.kind {
                ValueKind::Number | ValueKind::Str | ValueKind::Text => v.raw(buf),
                ValueKind::StrEscaped => return parse_number(&v.as_str(buf), conversion),
                _ => return None,
            },
            FieldRef::Static(s) => s,
        };
        parse_number(text, conversion)
    }
}

fn parse_number(text: &str, conversion: UnwrapConversion) -> Option<f64> {
    let text = text.trim();
    match conversion {
        UnwrapConversion::None => text.parse::<f64>().ok().filter(|v| !v.is_nan()),
        UnwrapConversion::Duration => {
            if let Ok(v) = text.parse::<f64>() {
                return Some(v);
            }
            humantime::parse_duration(text)
                .ok()
                .map(|d| d.as_secs_f64())
        }
        UnwrapConversion::Bytes => {
            if let Ok(v) = text.parse::<f64>() {
                return Some(v);
            }
            parse_bytes(text)
        }
    }
}

/// `10KiB`, `1.5MB`, `512B` → bytes, as LogQL's `bytes()` conversion reads them.
fn parse_bytes(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" | "ki" => 1024.0,
        "mib" | "mi" => 1024.0 * 1024.0,
        "gib" | "gi" => 1024.0 * 1024.0 * 1024.0,
        "tib" | "ti" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some(num * mult)
}

/// A field filter with its field names interned.
#[derive(Debug)]
enum CompiledFilter {
    Compare {
        slot: usize,
        op: FieldOp,
        value: FieldValue,
    },
    And(Box<CompiledFilter>, Box<CompiledFilter>),
    Or(Box<CompiledFilter>, Box<CompiledFilter>),
}

impl CompiledFilter {
    fn compile(expr: &FieldExpr, table: &mut FieldTable) -> CompiledFilter {
        match expr {
            FieldExpr::Compare(FieldCompare {
                field, op, value, ..
            }) => CompiledFilter::Compare {
                slot: table.intern(field),
                op: *op,
                value: value.clone(),
            },
            FieldExpr::And(a, b) => CompiledFilter::And(
                Box::new(CompiledFilter::compile(a, table)),
                Box::new(CompiledFilter::compile(b, table)),
            ),
            FieldExpr::Or(a, b) => CompiledFilter::Or(
                Box::new(CompiledFilter::compile(a, table)),
                Box::new(CompiledFilter::compile(b, table)),
            ),
            FieldExpr::Paren(inner) => CompiledFilter::compile(inner, table),
        }
    }

    fn matches(&self, slots: &FieldSlots, buf: &str) -> bool {
        match self {
            CompiledFilter::And(a, b) => a.matches(slots, buf) && b.matches(slots, buf),
            CompiledFilter::Or(a, b) => a.matches(slots, buf) || b.matches(slots, buf),
            CompiledFilter::Compare { slot, op, value } => match value {
                FieldValue::Str(s) => {
                    // A missing field is the empty string, as a missing label is in LogQL.
                    let text = slots.text(*slot, buf);
                    let text = text.as_deref().unwrap_or("");
                    match op {
                        FieldOp::Eq => text == s,
                        FieldOp::Ne => text != s,
                        // Ordering comparisons against strings are rejected by the parser.
                        _ => false,
                    }
                }
                FieldValue::Regex(re) => {
                    let text = slots.text(*slot, buf);
                    let matched = re.is_match(text.as_deref().unwrap_or(""));
                    match op {
                        FieldOp::NotRe | FieldOp::Ne => !matched,
                        _ => matched,
                    }
                }
                FieldValue::Num(n) => {
                    match slots.number(*slot, buf, UnwrapConversion::None) {
                        Some(v) => match op {
                            FieldOp::Eq => v == *n,
                            FieldOp::Ne => v != *n,
                            FieldOp::Gt => v > *n,
                            FieldOp::Ge => v >= *n,
                            FieldOp::Lt => v < *n,
                            FieldOp::Le => v <= *n,
                            FieldOp::Re | FieldOp::NotRe => false,
                        },
                        // A field that is absent or not a number never compares true,
                        // not even with `!=`, as Loki's numeric label filter does.
                        None => false,
                    }
                }
            },
        }
    }
}

#[derive(Debug)]
enum CompiledStage {
    Contains(memmem::Finder<'static>),
    NotContains(memmem::Finder<'static>),
    Matches(regex::Regex),
    NotMatches(regex::Regex),
    Fields(CompiledFilter),
}

/// The label matchers of a log selector, on `source` and `file`.
#[derive(Debug)]
struct StreamMatcher {
    matchers: Vec<(bool, MatchOp, String, Option<regex::Regex>)>,
}

impl StreamMatcher {
    fn matches(&self, source: &str, file: &str) -> bool {
        self.matchers.iter().all(|(is_source, op, value, re)| {
            let have = if *is_source { source } else { file };
            match op {
                MatchOp::Eq => have == value,
                MatchOp::Ne => have != value,
                MatchOp::Re => re.as_ref().is_some_and(|re| re.is_match(have)),
                MatchOp::NotRe => !re.as_ref().is_some_and(|re| re.is_match(have)),
            }
        })
    }
}

/// Why a record was not added to a window, for the rules' own counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct IngestTally {
    /// Records that reached at least one window.
    pub matched: u64,
    /// Records older than every window they could fall in.
    pub too_old: u64,
    /// New series refused by the series limit.
    pub series_limited: u64,
    /// Unwrapped fields that were absent or not numbers.
    pub unwrap_errors: u64,
}

/// One distinct log query and the series it has seen.
#[derive(Debug)]
pub struct LogWindow {
    /// The canonical text of the query plus its label fields: windows are shared by
    /// every rule that uses the same one.
    pub key: String,
    stream: StreamMatcher,
    stages: Vec<CompiledStage>,
    unwrap: Option<(usize, UnwrapConversion)>,
    /// Fields kept as labels (beyond `source` and `file`), with their slots.
    label_fields: Vec<(String, usize)>,
    /// Labels the selector fixes with `=`: what `absent_over_time` returns.
    pub equality_labels: Labels,
    pub kind: AccKind,
    /// Bucket width and longest range, in nanoseconds.
    pub width: i64,
    pub range: i64,
    pub max_series: usize,
    pub series: Vec<WindowSeries>,
    index: HashMap<String, usize>,
    key_buf: String,
    /// The oldest bucket a future evaluation can still read.
    pub floor: i64,
    /// The series limit refused a series at least once (for the status).
    pub series_limit_hit: bool,
    /// Records refused by the series limit, over the window's life.
    pub limited: u64,
}

/// What a window is built from: the engine's plan for one distinct log query.
pub struct WindowSpec<'a> {
    pub key: String,
    pub query: &'a LogQuery,
    pub label_fields: &'a [String],
    pub kind: AccKind,
    /// Bucket width and longest range, in nanoseconds.
    pub width: i64,
    pub range: i64,
    pub max_series: usize,
}

impl LogWindow {
    pub fn new(spec: WindowSpec<'_>, table: &mut FieldTable) -> LogWindow {
        let WindowSpec {
            key,
            query,
            label_fields,
            kind,
            width,
            range,
            max_series,
        } = spec;
        let mut matchers = Vec::new();
        let mut equality = Vec::new();
        for m in &query.selector.matchers {
            let is_source = m.name == "source";
            // Only `source` and `file` exist on a log stream; a matcher on another label
            // matches the empty string, as in Loki.
            if !is_source && m.name != "file" {
                let empty_ok = match m.op {
                    MatchOp::Eq => m.value.is_empty(),
                    MatchOp::Ne => !m.value.is_empty(),
                    MatchOp::Re => m.regex.as_ref().is_some_and(|r| r.is_match("")),
                    MatchOp::NotRe => !m.regex.as_ref().is_some_and(|r| r.is_match("")),
                };
                if !empty_ok {
                    matchers.push((true, MatchOp::Re, String::new(), None));
                }
                continue;
            }
            if m.op == MatchOp::Eq {
                equality.push((m.name.clone(), m.value.clone()));
            }
            matchers.push((is_source, m.op, m.value.clone(), m.regex.clone()));
        }
        let stages = query
            .stages
            .iter()
            .filter_map(|stage| match stage {
                Stage::Json => None,
                Stage::Line(line) => Some(match line.op {
                    LineOp::Contains => CompiledStage::Contains(
                        memmem::Finder::new(line.pattern.as_bytes()).into_owned(),
                    ),
                    LineOp::NotContains => CompiledStage::NotContains(
                        memmem::Finder::new(line.pattern.as_bytes()).into_owned(),
                    ),
                    LineOp::Matches => CompiledStage::Matches(line.regex.clone()?),
                    LineOp::NotMatches => CompiledStage::NotMatches(line.regex.clone()?),
                }),
                Stage::Fields(expr) => {
                    Some(CompiledStage::Fields(CompiledFilter::compile(expr, table)))
                }
            })
            .collect();
        let unwrap = query
            .unwrap
            .as_ref()
            .map(|u| (table.intern(&u.field), u.conversion));
        let label_fields = label_fields
            .iter()
            .filter(|f| *f != "source" && *f != "file")
            .map(|f| (f.clone(), table.intern(f)))
            .collect();
        LogWindow {
            key,
            stream: StreamMatcher { matchers },
            stages,
            unwrap,
            label_fields,
            equality_labels: Labels::from_pairs(equality),
            kind,
            width,
            range,
            max_series,
            series: Vec::new(),
            index: HashMap::new(),
            key_buf: String::new(),
            floor: i64::MIN,
            series_limit_hit: false,
            limited: 0,
        }
    }

    /// Whether the window reads this stream at all (decided per file, per batch).
    pub fn selects(&self, source: &str, file: &str) -> bool {
        self.stream.matches(source, file)
    }

    fn passes(&self, line: &str, slots: &FieldSlots, buf: &str) -> bool {
        self.stages.iter().all(|stage| match stage {
            CompiledStage::Contains(f) => f.find(line.as_bytes()).is_some(),
            CompiledStage::NotContains(f) => f.find(line.as_bytes()).is_none(),
            CompiledStage::Matches(re) => re.is_match(line),
            CompiledStage::NotMatches(re) => !re.is_match(line),
            CompiledStage::Fields(filter) => filter.matches(slots, buf),
        })
    }

    /// Adds one record that the caller has checked `selects` for.
    fn add(
        &mut self,
        source: &str,
        file: &str,
        batch: &LogBatch,
        record: &LogRecord,
        slots: &FieldSlots,
        tally: &mut IngestTally,
    ) -> bool {
        let buf = batch.buf.as_str();
        let line = buf.get(record.line.range()).unwrap_or("");
        if !self.passes(line, slots, buf) {
            return false;
        }
        let bucket = (record.time() - 1).div_euclid(self.width);
        if bucket < self.floor {
            tally.too_old += 1;
            return false;
        }
        let sample = match self.unwrap {
            Some((slot, conversion)) => match slots.number(slot, buf, conversion) {
                Some(v) => v,
                None => {
                    tally.unwrap_errors += 1;
                    return false;
                }
            },
            None => 0.0,
        };
        self.key_buf.clear();
        self.key_buf.push_str(source);
        self.key_buf.push('\u{0}');
        self.key_buf.push_str(file);
        for (_, slot) in &self.label_fields {
            self.key_buf.push('\u{0}');
            if let Some(text) = slots.text(*slot, buf) {
                self.key_buf.push_str(&text);
            }
        }
        let index = match self.index.get(self.key_buf.as_str()) {
            Some(&i) => i,
            None => {
                if self.series.len() >= self.max_series {
                    tally.series_limited += 1;
                    self.series_limit_hit = true;
                    self.limited += 1;
                    return false;
                }
                let mut labels = Labels::from_pairs([("source", source), ("file", file)]);
                for (name, slot) in &self.label_fields {
                    if let Some(text) = slots.text(*slot, buf) {
                        labels.insert(name.clone(), text.into_owned());
                    }
                }
                self.series.push(WindowSeries {
                    labels,
                    buckets: VecDeque::new(),
                });
                self.index
                    .insert(self.key_buf.clone(), self.series.len() - 1);
                self.series.len() - 1
            }
        };
        let kind = self.kind;
        let buckets = &mut self.series[index].buckets;
        let bytes = line.len();
        // Records mostly arrive in time order: the last bucket is the usual target.
        match buckets.back_mut() {
            Some((b, acc)) if *b == bucket => acc.add(bytes, sample),
            Some((b, _)) if *b < bucket => {
                let mut acc = Acc::new(kind);
                acc.add(bytes, sample);
                buckets.push_back((bucket, acc));
            }
            None => {
                let mut acc = Acc::new(kind);
                acc.add(bytes, sample);
                buckets.push_back((bucket, acc));
            }
            Some(_) => match buckets.binary_search_by_key(&bucket, |(b, _)| *b) {
                Ok(i) => buckets[i].1.add(bytes, sample),
                Err(i) => {
                    let mut acc = Acc::new(kind);
                    acc.add(bytes, sample);
                    buckets.insert(i, (bucket, acc));
                }
            },
        }
        true
    }

    /// Forgets buckets no evaluation at or after `t` can read, and series left empty.
    pub fn prune(&mut self, t: i64) {
        let floor = t.div_euclid(self.width) - self.range / self.width + 1;
        self.floor = self.floor.max(floor);
        let floor = self.floor;
        let mut removed = false;
        for series in &mut self.series {
            while series.buckets.front().is_some_and(|(b, _)| *b < floor) {
                series.buckets.pop_front();
            }
            removed |= series.buckets.is_empty();
        }
        if removed {
            self.series.retain(|s| !s.buckets.is_empty());
            self.rebuild_index();
        }
    }

    fn rebuild_index(&mut self) {
        self.index.clear();
        for (i, series) in self.series.iter().enumerate() {
            let mut key = String::new();
            key.push_str(series.labels.get("source").unwrap_or(""));
            key.push('\u{0}');
            key.push_str(series.labels.get("file").unwrap_or(""));
            for (name, _) in &self.label_fields {
                key.push('\u{0}');
                key.push_str(series.labels.get(name).unwrap_or(""));
            }
            self.index.insert(key, i);
        }
    }

    /// Restores series saved by `series` (a restart): keeps only what fits the window.
    pub fn restore(&mut self, series: Vec<WindowSeries>) {
        self.series = series
            .into_iter()
            .filter(|s| {
                s.buckets
                    .iter()
                    .all(|(_, acc)| Acc::new(self.kind).same_kind(acc))
            })
            .take(self.max_series)
            .collect();
        self.rebuild_index();
    }

    /// Combines each series' buckets of the range `(t − range, t]`.
    pub fn combine(&self, t: i64, range: i64) -> impl Iterator<Item = (&Labels, Acc)> + '_ {
        let hi = t.div_euclid(self.width) - 1;
        let lo = hi - range / self.width + 1;
        let kind = self.kind;
        self.series.iter().filter_map(move |series| {
            let mut acc: Option<Acc> = None;
            for (b, bucket) in &series.buckets {
                if *b < lo || *b > hi {
                    continue;
                }
                match &mut acc {
                    Some(a) => a.merge(bucket),
                    None => acc = Some(bucket.clone()),
                }
            }
            let _ = kind;
            acc.filter(|a| a.count() > 0).map(|a| (&series.labels, a))
        })
    }

    pub fn memory_bytes(&self) -> usize {
        self.series
            .iter()
            .map(|s| {
                64 + s
                    .labels
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>()
                    + s.buckets
                        .iter()
                        .map(|(_, a)| 8 + a.memory_bytes())
                        .sum::<usize>()
            })
            .sum()
    }
}

impl Acc {
    fn same_kind(&self, other: &Acc) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Every log window of the loaded rules and the field table they share.
#[derive(Debug, Default)]
pub struct LogWindows {
    pub windows: Vec<LogWindow>,
    pub table: FieldTable,
    /// The field mapping of each configured source (`event` is the body, …).
    pub sources: HashMap<String, FieldNames>,
    pub default_names: FieldNames,
    slots: FieldSlots,
    selected: Vec<usize>,
}

impl LogWindows {
    pub fn new(sources: HashMap<String, FieldNames>, default_names: FieldNames) -> LogWindows {
        LogWindows {
            sources,
            default_names,
            ..LogWindows::default()
        }
    }

    /// Adds a batch's records to every window that selects them.
    pub fn ingest(&mut self, batch: &LogBatch, tally: &mut IngestTally) {
        self.ingest_records(batch, batch.records.iter(), tally);
    }

    /// Adds some records of a batch (replay feeds one instant at a time).
    pub fn ingest_records<'a>(
        &mut self,
        batch: &LogBatch,
        records: impl Iterator<Item = &'a LogRecord>,
        tally: &mut IngestTally,
    ) {
        if self.windows.is_empty() || batch.records.is_empty() {
            return;
        }
        let source: &str = &batch.source;
        let names = self
            .sources
            .get(source)
            .unwrap_or(&self.default_names)
            .clone();
        // Which windows read which file of the batch: decided once per batch.
        let files = batch.files.len().max(1);
        let mut selects = vec![false; files * self.windows.len()];
        for f in 0..files {
            let path = batch.files.get(f).map(|m| &*m.path).unwrap_or("");
            for (w, window) in self.windows.iter().enumerate() {
                selects[f * self.windows.len() + w] = window.selects(source, path);
            }
        }
        let n = self.windows.len();
        for record in records {
            let f = (record.file as usize).min(files - 1);
            self.selected.clear();
            self.selected.extend((0..n).filter(|w| selects[f * n + w]));
            if self.selected.is_empty() {
                continue;
            }
            self.slots.fill(&self.table, &names, batch, record);
            let path = batch.file_path(record);
            let mut matched = false;
            for &w in &self.selected {
                matched |= self.windows[w].add(source, path, batch, record, &self.slots, tally);
            }
            if matched {
                tally.matched += 1;
            }
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.windows.iter().map(|w| w.memory_bytes()).sum()
    }
}

/// Shared so that cloned names in the hot path stay cheap.
pub type SourceName = Arc<str>;
