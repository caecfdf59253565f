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

use std::cell::Cell;
use std::collections::hash_map::{DefaultHasher, Entry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
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

/// What the windows of one `LogWindows` share, so that each piece of work is done once
/// per record however many windows need it: the interned field names the rules read,
/// the distinct pipeline stages (windows of one event usually start with the same
/// `event="…"` filter), and the distinct lists of label fields (several windows group
/// by the same fields).
#[derive(Debug, Default)]
pub struct FieldTable {
    names: Vec<String>,
    /// The names by `name_bucket`: most attribute keys of a record are names no rule
    /// reads, and land in an empty bucket without comparing a byte.
    name_buckets: Vec<Vec<usize>>,
    /// Bit `n` is set when a name is `n` bytes long (bit 63: 63 bytes or more).
    name_lengths: u64,
    stages: Vec<CompiledStage>,
    /// The canonical text of each of `stages`, to find an equal stage again.
    stage_keys: Vec<String>,
    /// The slots of each distinct list of label fields (never empty).
    label_sets: Vec<Vec<usize>>,
    /// The keys of the series hash. Random per process, as a `HashMap`'s own are, so
    /// that label values from the logs cannot be chosen to collide.
    hasher: RandomState,
}

impl FieldTable {
    pub fn intern(&mut self, name: &str) -> usize {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i;
        }
        self.name_lengths |= length_bit(name.len());
        self.name_buckets.resize_with(NAME_BUCKETS, Vec::new);
        self.name_buckets[name_bucket(name.as_bytes())].push(self.names.len());
        self.names.push(name.to_string());
        self.names.len() - 1
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The slot of an attribute key, if the rules read it.
    fn slot_of(&self, key: &str) -> Option<usize> {
        let key = key.as_bytes();
        let bucket = self.name_buckets.get(name_bucket(key))?;
        bucket
            .iter()
            .copied()
            .find(|&i| self.names[i].as_bytes() == key)
    }

    fn intern_stage(
        &mut self,
        key: String,
        compile: impl FnOnce(&mut Self) -> CompiledStage,
    ) -> usize {
        if let Some(i) = self.stage_keys.iter().position(|k| *k == key) {
            return i;
        }
        let stage = compile(self);
        self.stages.push(stage);
        self.stage_keys.push(key);
        self.stages.len() - 1
    }

    fn intern_label_set(&mut self, slots: Vec<usize>) -> usize {
        if let Some(i) = self.label_sets.iter().position(|s| *s == slots) {
            return i;
        }
        self.label_sets.push(slots);
        self.label_sets.len() - 1
    }
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

const NAME_BUCKETS: usize = 64;

/// A name's bucket in `FieldTable::name_buckets`, from its length and its first and
/// last bytes (cheap, and different for the field names of typical rules).
fn name_bucket(name: &[u8]) -> usize {
    let first = usize::from(name.first().copied().unwrap_or(0));
    let last = usize::from(name.last().copied().unwrap_or(0));
    (name.len().wrapping_mul(31) ^ first.wrapping_mul(7) ^ last) % NAME_BUCKETS
}

/// Where a record's field is: in the batch, or a constant a parser derived (a level).
#[derive(Clone, Copy, Debug)]
enum FieldRef {
    In(Value),
    Static(&'static str),
}

/// Which of a record's own fields a name stands for under a source's field mapping,
/// worked out once per batch rather than per record.
#[derive(Clone, Copy, Debug)]
enum Mapped {
    Body,
    Level,
    TraceId,
    SpanId,
    Deployment,
    Attribute,
}

/// A record's fields that the rules read, resolved once per record.
#[derive(Debug, Default)]
pub struct FieldSlots {
    slots: Vec<Option<FieldRef>>,
    /// Each slot's value as a plain number (`UnwrapConversion::None`), parsed the first
    /// time a filter or an unwrap asks: `status >= 500` and `status >= 400` and every
    /// window unwrapping `duration_ms` share one parse.
    numbers: Vec<Cell<Option<Option<f64>>>>,
    mapped: Vec<Mapped>,
    /// `FieldTable::name_lengths` of the names that are attributes under this batch's
    /// mapping: an attribute key of another length is passed over without reading it.
    attribute_lengths: u64,
}

impl FieldSlots {
    /// Works out, for a batch of one source, which names are the record's own fields.
    fn map(&mut self, table: &FieldTable, names: &FieldNames) {
        self.mapped.clear();
        self.mapped.extend(table.names.iter().map(|name| {
            if *name == names.message {
                Mapped::Body
            } else if *name == names.level {
                Mapped::Level
            } else if *name == names.trace_id {
                Mapped::TraceId
            } else if *name == names.span_id {
                Mapped::SpanId
            } else if name == "deployment" {
                // The live version the record belongs to (its own version field wins).
                Mapped::Deployment
            } else {
                Mapped::Attribute
            }
        }));
        self.attribute_lengths = table
            .names
            .iter()
            .zip(&self.mapped)
            .filter(|(_, mapped)| matches!(mapped, Mapped::Attribute))
            .fold(0, |lengths, (name, _)| lengths | length_bit(name.len()));
    }

    /// Resolves every interned name for one record: the mapped fields first (`event` is
    /// the body, `level` the severity, …), then one pass over the attributes for the
    /// rest. `map` has been called for the batch.
    fn fill(&mut self, table: &FieldTable, batch: &LogBatch, record: &LogRecord) {
        self.slots.clear();
        self.numbers.clear();
        if table.names.is_empty() {
            return;
        }
        self.numbers.resize(table.names.len(), Cell::new(None));
        let mut missing = 0;
        let mut mapped_missing = false;
        self.slots.extend(self.mapped.iter().map(|mapped| {
            let slot = match mapped {
                Mapped::Body => record.body.map(FieldRef::In),
                Mapped::Level => match record.severity_text {
                    SeverityText::In(v) => Some(FieldRef::In(v)),
                    SeverityText::Static(s) => Some(FieldRef::Static(s)),
                    SeverityText::None => None,
                },
                Mapped::TraceId => record.trace_id.map(FieldRef::In),
                Mapped::SpanId => record.span_id.map(FieldRef::In),
                Mapped::Deployment => record.deployment.map(FieldRef::In),
                Mapped::Attribute => None,
            };
            if slot.is_none() {
                missing += 1;
                mapped_missing |= !matches!(mapped, Mapped::Attribute);
            }
            slot
        }));
        if missing == 0 {
            return;
        }
        // A mapped field the record lacks may still come from an attribute of its name.
        let lengths = if mapped_missing {
            table.name_lengths
        } else {
            self.attribute_lengths
        };
        for field in batch.attrs(record) {
            let slot = if field.key_escaped {
                // Rare: keys with JSON escapes are compared decoded.
                table.slot_of(&field.key(&batch.buf))
            } else {
                let key = field.key.range();
                if lengths & length_bit(key.len()) == 0 {
                    continue;
                }
                table.slot_of(batch.buf.get(key).unwrap_or(""))
            };
            let Some(slot) = slot else { continue };
            if self.slots[slot].is_none() {
                self.slots[slot] = Some(FieldRef::In(field.value));
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
        let plain = match self.numbers.get(slot) {
            Some(cell) => match cell.get() {
                Some(known) => known,
                None => {
                    let parsed = self.parse(slot, buf, UnwrapConversion::None);
                    cell.set(Some(parsed));
                    parsed
                }
            },
            None => self.parse(slot, buf, UnwrapConversion::None),
        };
        match (plain, conversion) {
            (plain, UnwrapConversion::None) => plain,
            // Every conversion reads a plain number as itself.
            (Some(v), _) => Some(v),
            (None, conversion) => self.parse(slot, buf, conversion),
        }
    }

    fn parse(&self, slot: usize, buf: &str, conversion: UnwrapConversion) -> Option<f64> {
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
        UnwrapConversion::None => parse_f64(text).filter(|v| !v.is_nan()),
        UnwrapConversion::Duration => {
            if let Some(v) = parse_f64(text) {
                return Some(v);
            }
            humantime::parse_duration(text)
                .ok()
                .map(|d| d.as_secs_f64())
        }
        UnwrapConversion::Bytes => {
            if let Some(v) = parse_f64(text) {
                return Some(v);
            }
            parse_bytes(text)
        }
    }
}

/// `text.parse::<f64>()`, with a fast path for the plain decimals that logs are full of
/// (`200`, `20.6`).
fn parse_f64(text: &str) -> Option<f64> {
    parse_plain_decimal(text).or_else(|| text.parse().ok())
}

/// Exact powers of ten up to 10^15.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// `-?digits[.digits]` with at most 15 digits, else `None` (for the full parser). Such
/// a number is `m / 10^k` with `m < 2^53` and `10^k` both exact in an `f64`, so the one
/// division rounds once, correctly: the same value `str::parse` gives (Clinger's fast
/// path).
fn parse_plain_decimal(text: &str) -> Option<f64> {
    let (negative, digits) = match text.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        all => (false, all),
    };
    if digits.len() > 16 {
        return None;
    }
    let mut mantissa: u64 = 0;
    let mut count = 0;
    let mut scale = None;
    for (i, &b) in digits.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                count += 1;
            }
            b'.' if scale.is_none() => scale = Some(digits.len() - i - 1),
            _ => return None,
        }
    }
    if count == 0 || count > 15 {
        return None;
    }
    let value = mantissa as f64 / POW10[scale.unwrap_or(0)];
    Some(if negative { -value } else { value })
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

/// The canonical text of a field filter, fully parenthesised, so that two filters with
/// the same text always behave the same and can share one evaluation per record.
fn filter_key(expr: &FieldExpr, out: &mut String) {
    use std::fmt::Write;
    match expr {
        FieldExpr::Compare(FieldCompare {
            field, op, value, ..
        }) => {
            let _ = write!(out, "[{field:?} {op:?} ");
            let _ = match value {
                FieldValue::Str(s) => write!(out, "s{s:?}]"),
                FieldValue::Num(n) => write!(out, "n{}]", n.to_bits()),
                FieldValue::Regex(re) => write!(out, "r{:?}]", re.as_str()),
            };
        }
        FieldExpr::And(a, b) | FieldExpr::Or(a, b) => {
            out.push('(');
            filter_key(a, out);
            out.push_str(if matches!(expr, FieldExpr::And(..)) {
                " and "
            } else {
                " or "
            });
            filter_key(b, out);
            out.push(')');
        }
        FieldExpr::Paren(inner) => filter_key(inner, out),
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

impl CompiledStage {
    /// Compiles a stage into the table (once for all windows that have it) and returns
    /// its index there; `None` for a stage that filters nothing (`| json`).
    fn intern(stage: &Stage, table: &mut FieldTable) -> Option<usize> {
        match stage {
            Stage::Json => None,
            Stage::Line(line) => {
                let key = format!("line {:?} {:?}", line.op, line.pattern);
                let compiled = match line.op {
                    LineOp::Contains => CompiledStage::Contains(
                        memmem::Finder::new(line.pattern.as_bytes()).into_owned(),
                    ),
                    LineOp::NotContains => CompiledStage::NotContains(
                        memmem::Finder::new(line.pattern.as_bytes()).into_owned(),
                    ),
                    LineOp::Matches => CompiledStage::Matches(line.regex.clone()?),
                    LineOp::NotMatches => CompiledStage::NotMatches(line.regex.clone()?),
                };
                Some(table.intern_stage(key, |_| compiled))
            }
            Stage::Fields(expr) => {
                let mut key = String::from("fields ");
                filter_key(expr, &mut key);
                Some(table.intern_stage(key, |table| {
                    CompiledStage::Fields(CompiledFilter::compile(expr, table))
                }))
            }
        }
    }

    fn passes(&self, line: &str, slots: &FieldSlots, buf: &str) -> bool {
        match self {
            CompiledStage::Contains(f) => f.find(line.as_bytes()).is_some(),
            CompiledStage::NotContains(f) => f.find(line.as_bytes()).is_none(),
            CompiledStage::Matches(re) => re.is_match(line),
            CompiledStage::NotMatches(re) => !re.is_match(line),
            CompiledStage::Fields(filter) => filter.matches(slots, buf),
        }
    }
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
    /// The query's stages as indices into the table's, in pipeline order.
    stages: Vec<usize>,
    unwrap: Option<(usize, UnwrapConversion)>,
    /// Fields kept as labels (beyond `source` and `file`), with their slots.
    label_fields: Vec<(String, usize)>,
    /// The table's label set of `label_fields`; `None` when `source` and `file` are the
    /// only labels, and a file's records all go to one series.
    label_set: Option<usize>,
    /// Labels the selector fixes with `=`: what `absent_over_time` returns.
    pub equality_labels: Labels,
    pub kind: AccKind,
    /// Bucket width and longest range, in nanoseconds.
    pub width: i64,
    pub range: i64,
    pub max_series: usize,
    /// Changed from outside only through `restore`, which rebuilds the index below.
    pub series: Vec<WindowSeries>,
    /// Each series' key, beside `series`: its stream (an index into `streams`) and the
    /// values of its label fields, each after a `\0`.
    keys: Vec<(u32, Box<str>)>,
    /// The streams (`source\0file`) of the series, numbered.
    streams: HashMap<Box<str>, u32>,
    /// The number in `streams` of each stream of the batch being ingested, `u32::MAX`
    /// for one that no series has yet.
    batch_streams: Vec<u32>,
    /// Series by the hash of their key (`series_hash`), so that a record finds its
    /// series by a hash it computed once for every window with the same label fields.
    index: HashMap<u64, u32, BuildHasherDefault<PreHashed>>,
    /// Series whose key hash an earlier series already had (possible, if unlikely, with
    /// 64 bits), found by their key.
    collided: HashMap<(u32, Box<str>), u32>,
    /// The table's hash keys, to hash the keys of restored series as records do.
    hasher: RandomState,
    /// The series the last record went to (`u32::MAX`: none yet).
    last_series: u32,
    /// Without label fields: the series of each file of the batch being ingested
    /// (`u32::MAX` until the first record of the file finds or creates it).
    file_series: Vec<u32>,
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

/// Hashes the `u64` keys of `LogWindow::index`, which are keyed hashes already, as
/// themselves.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed with this; other input still hashes (FNV-1a).
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The hasher state of a stream (`source\0file`), hashed once per file of a batch.
fn stream_hasher(keys: &RandomState, prefix: &str) -> DefaultHasher {
    let mut hasher = keys.build_hasher();
    hasher.write(prefix.as_bytes());
    hasher
}

/// The hash of the series key `prefix + rest`: always these two writes, so that records
/// (the stream's state hashed once per batch) and restored series agree.
fn series_hash(stream: &DefaultHasher, rest: &str) -> u64 {
    let mut hasher = stream.clone();
    hasher.write(rest.as_bytes());
    hasher.finish()
}

fn stream_prefix(source: &str, file: &str, out: &mut String) {
    out.clear();
    out.push_str(source);
    out.push('\0');
    out.push_str(file);
}

/// One record as the windows see it.
struct RecordView<'a> {
    buf: &'a str,
    line: &'a str,
    time: i64,
    source: &'a str,
    file: &'a str,
    /// The record's stream among the batch's (`IngestScratch::streams`).
    stream_index: usize,
    stream: &'a Stream,
}

/// A stream of the batch being ingested: its key prefix and hash state.
#[derive(Debug)]
struct Stream {
    prefix: String,
    hasher: DefaultHasher,
    /// The key hash of a series without label fields.
    hash: u64,
}

/// The label values of one label set for one record.
#[derive(Clone, Copy, Debug)]
struct LabelKey {
    start: usize,
    end: usize,
    hash: Option<u64>,
}

/// What one record has worked out already, for the next window that needs it.
#[derive(Debug, Default)]
struct RecordMemo {
    /// Per stage of the table: whether the record passes it, once evaluated.
    stages: Vec<Option<bool>>,
    /// Per label set of the table: where its values are in `values`, and the key hash
    /// once a window needed it.
    label_keys: Vec<Option<LabelKey>>,
    values: String,
    /// The last bucket computed and the width it was for (windows mostly share one).
    bucket: Option<(i64, i64)>,
}

impl RecordMemo {
    fn reset(&mut self, table: &FieldTable) {
        self.stages.clear();
        self.stages.resize(table.stages.len(), None);
        self.label_keys.clear();
        self.label_keys.resize(table.label_sets.len(), None);
        self.values.clear();
        self.bucket = None;
    }

    fn passes(
        &mut self,
        stage: usize,
        table: &FieldTable,
        record: &RecordView<'_>,
        slots: &FieldSlots,
    ) -> bool {
        match self.stages[stage] {
            Some(passed) => passed,
            None => {
                let passed = table.stages[stage].passes(record.line, slots, record.buf);
                self.stages[stage] = Some(passed);
                passed
            }
        }
    }

    fn bucket(&mut self, time: i64, width: i64) -> i64 {
        match self.bucket {
            Some((w, bucket)) if w == width => bucket,
            _ => {
                let bucket = (time - 1).div_euclid(width);
                self.bucket = Some((width, bucket));
                bucket
            }
        }
    }

    /// The label values (each after a `\0`) of a label set, as a range of `values`.
    fn label_values(
        &mut self,
        set: usize,
        table: &FieldTable,
        record: &RecordView<'_>,
        slots: &FieldSlots,
    ) -> std::ops::Range<usize> {
        if let Some(key) = self.label_keys[set] {
            return key.start..key.end;
        }
        let start = self.values.len();
        for &slot in &table.label_sets[set] {
            self.values.push('\0');
            if let Some(text) = slots.text(slot, record.buf) {
                self.values.push_str(&text);
            }
        }
        let end = self.values.len();
        self.label_keys[set] = Some(LabelKey {
            start,
            end,
            hash: None,
        });
        start..end
    }

    /// The key hash of a label set whose values `label_values` has worked out.
    fn label_hash(&mut self, set: usize, record: &RecordView<'_>) -> u64 {
        let Some(key) = &mut self.label_keys[set] else {
            return series_hash(&record.stream.hasher, "");
        };
        *key.hash.get_or_insert_with(|| {
            series_hash(&record.stream.hasher, &self.values[key.start..key.end])
        })
    }
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
            .filter_map(|stage| CompiledStage::intern(stage, table))
            .collect();
        let unwrap = query
            .unwrap
            .as_ref()
            .map(|u| (table.intern(&u.field), u.conversion));
        let label_fields: Vec<(String, usize)> = label_fields
            .iter()
            .filter(|f| *f != "source" && *f != "file")
            .map(|f| (f.clone(), table.intern(f)))
            .collect();
        let label_set = (!label_fields.is_empty())
            .then(|| table.intern_label_set(label_fields.iter().map(|(_, s)| *s).collect()));
        LogWindow {
            key,
            stream: StreamMatcher { matchers },
            stages,
            unwrap,
            label_fields,
            label_set,
            equality_labels: Labels::from_pairs(equality),
            kind,
            width,
            range,
            max_series,
            series: Vec::new(),
            keys: Vec::new(),
            streams: HashMap::new(),
            batch_streams: Vec::new(),
            index: HashMap::default(),
            collided: HashMap::new(),
            hasher: table.hasher.clone(),
            file_series: Vec::new(),
            last_series: u32::MAX,
            floor: i64::MIN,
            series_limit_hit: false,
            limited: 0,
        }
    }

    /// Whether the window reads this stream at all (decided per file, per batch).
    pub fn selects(&self, source: &str, file: &str) -> bool {
        self.stream.matches(source, file)
    }

    /// Readies the window for a batch of these streams.
    fn begin_batch(&mut self, streams: &[Stream]) {
        if self.keys.len() != self.series.len() {
            self.rebuild_index();
        }
        self.batch_streams.clear();
        self.batch_streams.extend(streams.iter().map(|s| {
            self.streams
                .get(s.prefix.as_str())
                .copied()
                .unwrap_or(u32::MAX)
        }));
        if self.label_set.is_none() {
            self.file_series.clear();
            self.file_series.resize(streams.len(), u32::MAX);
        }
    }

    /// Adds one record that the caller has checked `selects` for.
    fn add(
        &mut self,
        record: &RecordView<'_>,
        memo: &mut RecordMemo,
        table: &FieldTable,
        slots: &FieldSlots,
        tally: &mut IngestTally,
    ) -> bool {
        for &stage in &self.stages {
            if !memo.passes(stage, table, record, slots) {
                return false;
            }
        }
        let bucket = memo.bucket(record.time, self.width);
        if bucket < self.floor {
            tally.too_old += 1;
            return false;
        }
        let sample = match self.unwrap {
            Some((slot, conversion)) => match slots.number(slot, record.buf, conversion) {
                Some(v) => v,
                None => {
                    tally.unwrap_errors += 1;
                    return false;
                }
            },
            None => 0.0,
        };
        let index = match self.label_set {
            None => match self.file_series[record.stream_index] {
                u32::MAX => {
                    let Some(index) = self.series_of(record.stream.hash, "", record, slots, tally)
                    else {
                        return false;
                    };
                    self.file_series[record.stream_index] = index as u32;
                    index
                }
                index => index as usize,
            },
            Some(set) => {
                let values = memo.label_values(set, table, record, slots);
                let stream = self.batch_streams[record.stream_index];
                // Consecutive records often have the same labels (one version, a few
                // methods): the last series is checked before hashing the key.
                match self.keys.get(self.last_series as usize) {
                    Some((s, v)) if *s == stream && **v == memo.values[values.clone()] => {
                        self.last_series as usize
                    }
                    _ => {
                        let hash = memo.label_hash(set, record);
                        let values = &memo.values[values];
                        let Some(index) = self.series_of(hash, values, record, slots, tally) else {
                            return false;
                        };
                        self.last_series = index as u32;
                        index
                    }
                }
            }
        };
        let kind = self.kind;
        let buckets = &mut self.series[index].buckets;
        let bytes = record.line.len();
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

    /// The series of the record's stream with these label values, created if it is new
    /// and the series limit allows. Only a new series allocates.
    fn series_of(
        &mut self,
        hash: u64,
        values: &str,
        record: &RecordView<'_>,
        slots: &FieldSlots,
        tally: &mut IngestTally,
    ) -> Option<usize> {
        let stream = self.batch_streams[record.stream_index];
        if let Some(index) = self.find(hash, stream, values) {
            return Some(index);
        }
        if self.series.len() >= self.max_series {
            tally.series_limited += 1;
            self.series_limit_hit = true;
            self.limited += 1;
            return None;
        }
        let stream = match stream {
            u32::MAX => {
                let stream = self.stream_number(&record.stream.prefix);
                self.batch_streams[record.stream_index] = stream;
                stream
            }
            stream => stream,
        };
        let mut labels = Labels::from_pairs([("source", record.source), ("file", record.file)]);
        for (name, slot) in &self.label_fields {
            if let Some(text) = slots.text(*slot, record.buf) {
                labels.insert(name.clone(), text.into_owned());
            }
        }
        self.series.push(WindowSeries {
            labels,
            buckets: VecDeque::new(),
        });
        let index = self.series.len() - 1;
        self.insert_key(hash, stream, values, index);
        Some(index)
    }

    fn find(&self, hash: u64, stream: u32, values: &str) -> Option<usize> {
        let index = *self.index.get(&hash)? as usize;
        let (s, v) = &self.keys[index];
        if *s == stream && **v == *values {
            return Some(index);
        }
        if self.collided.is_empty() {
            return None;
        }
        self.collided
            .get(&(stream, Box::from(values)))
            .map(|&i| i as usize)
    }

    fn stream_number(&mut self, prefix: &str) -> u32 {
        let next = self.streams.len() as u32;
        *self.streams.entry(prefix.into()).or_insert(next)
    }

    fn insert_key(&mut self, hash: u64, stream: u32, values: &str, index: usize) {
        let key = (stream, Box::<str>::from(values));
        match self.index.entry(hash) {
            Entry::Vacant(entry) => {
                entry.insert(index as u32);
            }
            Entry::Occupied(mut entry) => {
                if self.keys[*entry.get() as usize] == key {
                    // The same labels twice (restored evidence): the later series wins.
                    entry.insert(index as u32);
                } else {
                    self.collided.insert(key.clone(), index as u32);
                }
            }
        }
        self.keys.push(key);
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
        self.collided.clear();
        self.keys.clear();
        self.streams.clear();
        self.batch_streams.fill(u32::MAX);
        self.file_series.fill(u32::MAX);
        self.last_series = u32::MAX;
        let mut prefix = String::new();
        let mut values = String::new();
        for index in 0..self.series.len() {
            let labels = &self.series[index].labels;
            stream_prefix(
                labels.get("source").unwrap_or(""),
                labels.get("file").unwrap_or(""),
                &mut prefix,
            );
            values.clear();
            for (name, _) in &self.label_fields {
                values.push('\0');
                values.push_str(labels.get(name).unwrap_or(""));
            }
            let hash = series_hash(&stream_hasher(&self.hasher, &prefix), &values);
            let stream = self.stream_number(&prefix);
            self.insert_key(hash, stream, &values, index);
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
    scratch: IngestScratch,
}

/// Buffers of `LogWindows::ingest_records`, kept from batch to batch so that ingesting
/// allocates nothing once they have grown.
#[derive(Debug, Default)]
struct IngestScratch {
    slots: FieldSlots,
    memo: RecordMemo,
    /// The batch's streams: one per file, then one for records without a file.
    streams: Vec<Stream>,
    /// Per file of the batch, the windows that select it.
    files: Vec<FileWindows>,
}

/// The windows that select one file of a batch, in runs that share their first stage:
/// a record that fails a run's first stage (most fail all `event="…"` but their own)
/// skips the whole run at the cost of one look in its memo.
#[derive(Debug, Default)]
struct FileWindows {
    windows: Vec<usize>,
    /// Each run's first stage (`None`: windows without stages) and its end in `windows`.
    runs: Vec<(Option<usize>, usize)>,
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
        let LogWindows {
            windows,
            table,
            sources,
            default_names,
            scratch,
        } = self;
        let source: &str = &batch.source;
        scratch
            .slots
            .map(table, sources.get(source).unwrap_or(default_names));
        // Which windows read which file of the batch, and each file's stream key and
        // hash state: decided once per batch. A record whose file index is out of range
        // (never, from a source) has the empty path, after the last file's windows.
        let files = batch.files.len().max(1);
        scratch.files.resize_with(files, FileWindows::default);
        for f in 0..files {
            let path = batch.files.get(f).map(|m| &*m.path).unwrap_or("");
            let FileWindows {
                windows: selected,
                runs,
            } = &mut scratch.files[f];
            selected.clear();
            selected.extend(
                windows
                    .iter()
                    .enumerate()
                    .filter(|(_, window)| window.selects(source, path))
                    .map(|(w, _)| w),
            );
            selected.sort_unstable_by_key(|&w| (windows[w].stages.first().copied(), w));
            runs.clear();
            for (i, &w) in selected.iter().enumerate() {
                let first = windows[w].stages.first().copied();
                match runs.last_mut() {
                    Some((stage, end)) if *stage == first => *end = i + 1,
                    _ => runs.push((first, i + 1)),
                }
            }
        }
        let paths = batch.files.iter().map(|m| &*m.path).chain([""]);
        for (s, path) in paths.enumerate() {
            let mut prefix = match scratch.streams.get_mut(s) {
                Some(stream) => std::mem::take(&mut stream.prefix),
                None => String::new(),
            };
            stream_prefix(source, path, &mut prefix);
            let hasher = stream_hasher(&table.hasher, &prefix);
            let stream = Stream {
                hash: series_hash(&hasher, ""),
                prefix,
                hasher,
            };
            match scratch.streams.get_mut(s) {
                Some(slot) => *slot = stream,
                None => scratch.streams.push(stream),
            }
        }
        let streams = &scratch.streams[..batch.files.len() + 1];
        for window in windows.iter_mut() {
            window.begin_batch(streams);
        }
        let buf = batch.buf.as_str();
        for record in records {
            let f = (record.file as usize).min(files - 1);
            let selected = &scratch.files[f];
            if selected.windows.is_empty() {
                continue;
            }
            scratch.slots.fill(table, batch, record);
            scratch.memo.reset(table);
            let stream_index = (record.file as usize).min(batch.files.len());
            let view = RecordView {
                buf,
                line: buf.get(record.line.range()).unwrap_or(""),
                time: record.time(),
                source,
                file: batch.file_path(record),
                stream_index,
                stream: &scratch.streams[stream_index],
            };
            let mut matched = false;
            let mut start = 0;
            for &(first, end) in &selected.runs {
                let run = &selected.windows[start..end];
                start = end;
                if let Some(stage) = first
                    && !scratch.memo.passes(stage, table, &view, &scratch.slots)
                {
                    continue;
                }
                for &w in run {
                    matched |=
                        windows[w].add(&view, &mut scratch.memo, table, &scratch.slots, tally);
                }
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

/// A pipeline (`| level="debug"`, `|= "GET /health"`) judged on single records outside
/// any window: a log source's `drop` filter. It uses the windows' own stage and field
/// machinery, so a filter means exactly what it means in a rule.
#[derive(Debug)]
pub struct RecordFilter {
    table: FieldTable,
    stages: Vec<usize>,
    slots: FieldSlots,
}

impl RecordFilter {
    /// `names` is the source's field mapping (`event` is the body, …).
    pub fn new(stages: &[Stage], names: &FieldNames) -> RecordFilter {
        let mut table = FieldTable::default();
        let stages = stages
            .iter()
            .filter_map(|stage| CompiledStage::intern(stage, &mut table))
            .collect();
        let mut slots = FieldSlots::default();
        slots.map(&table, names);
        RecordFilter {
            table,
            stages,
            slots,
        }
    }

    /// Whether `record` passes every stage.
    pub fn matches(&mut self, batch: &LogBatch, record: &LogRecord) -> bool {
        self.slots.fill(&self.table, batch, record);
        let line = batch.buf.get(record.line.range()).unwrap_or("");
        self.stages
            .iter()
            .all(|&stage| self.table.stages[stage].passes(line, &self.slots, &batch.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileMark, Span};
    use crate::parse::{Format, LineParser};
    use proptest::prelude::*;

    const S: i64 = 1_000_000_000;

    /// Windows of `(query, label fields)` in one `LogWindows`, 1s buckets.
    fn windows(queries: &[(&str, &[&str])]) -> LogWindows {
        let mut logs = LogWindows::new(HashMap::new(), Format::Structlog.default_field_names());
        for (text, fields) in queries {
            let query = super::super::parser::parse_log_query(text).expect("query parses");
            let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            let window = LogWindow::new(
                WindowSpec {
                    key: format!("{query}\u{0}{}", fields.join(",")),
                    query: &query,
                    label_fields: &fields,
                    kind: match query.unwrap {
                        Some(_) => AccKind::Values,
                        None => AccKind::Lines,
                    },
                    width: S,
                    range: 60 * S,
                    max_series: 100,
                },
                &mut logs.table,
            );
            logs.windows.push(window);
        }
        logs
    }

    /// A batch of structlog lines of one file, the n-th line at second n + 1.
    fn batch(lines: &[&str]) -> LogBatch {
        let parser = LineParser::new(Format::Structlog, Format::Structlog.default_field_names());
        let mut batch = LogBatch::new("app".into());
        batch
            .files
            .push(FileMark::unchecked("app".into(), "/var/log/app.log"));
        for (i, line) in lines.iter().enumerate() {
            let start = batch.buf.len();
            batch.buf.push_str(line);
            let mut record = LogRecord {
                observed_unix_nano: (i as i64 + 1) * S,
                ..LogRecord::default()
            };
            parser.parse(
                &mut batch.buf,
                Span::new(start, start + line.len()),
                &mut batch.fields,
                &mut record,
            );
            batch.records.push(record);
        }
        batch
    }

    /// Each series as `labels: count/sum`, sorted, over every bucket.
    fn contents(window: &LogWindow) -> Vec<String> {
        let mut out: Vec<String> = window
            .combine(1000 * S, 1000 * S)
            .map(|(labels, acc)| format!("{labels}: {}/{}", acc.count(), acc.sum()))
            .collect();
        out.sort();
        out
    }

    const LINES: &[&str] = &[
        r#"{"event": "request finished", "method": "GET", "status": 200, "duration_ms": 12.5}"#,
        r#"{"event": "request finished", "method": "POST", "status": 503, "duration_ms": 40}"#,
        r#"{"event": "db query", "table": "users", "duration_ms": "7"}"#,
        r#"{"event": "request finished", "method": "GET", "status": "500", "duration_ms": 1.5}"#,
        r#"{"event": "request finished", "method": "GET", "status": 404, "duration_ms": "x"}"#,
    ];

    /// Windows that share stages and label fields share their evaluation per record, and
    /// each still gets exactly its own records.
    #[test]
    fn shared_stages_and_label_sets_give_each_window_its_own_records() {
        let mut logs = windows(&[
            (r#"{source="app"} | event="request finished""#, &["method"]),
            (
                r#"{source="app"} | event="request finished" | status >= 500"#,
                &["method"],
            ),
            (
                r#"{source="app"} | event="request finished" | unwrap duration_ms"#,
                &["method"],
            ),
            (r#"{source="app"} | event="db query""#, &[]),
            (r#"{source="app"}"#, &[]),
            (r#"{source="other"}"#, &[]),
        ]);
        // One `event="request finished"` stage, one `event="db query"`, one `status >= 500`.
        assert_eq!(logs.table.stages.len(), 3);
        assert_eq!(logs.table.label_sets.len(), 1);
        let mut tally = IngestTally::default();
        logs.ingest(&batch(LINES), &mut tally);
        let all: Vec<Vec<String>> = logs.windows.iter().map(contents).collect();
        let file = r#"file="/var/log/app.log", "#;
        assert_eq!(
            all,
            [
                vec![
                    format!(r#"{{{file}method="GET", source="app"}}: 3/0"#),
                    format!(r#"{{{file}method="POST", source="app"}}: 1/0"#),
                ],
                vec![
                    format!(r#"{{{file}method="GET", source="app"}}: 1/0"#),
                    format!(r#"{{{file}method="POST", source="app"}}: 1/0"#),
                ],
                vec![
                    format!(r#"{{{file}method="GET", source="app"}}: 2/14"#),
                    format!(r#"{{{file}method="POST", source="app"}}: 1/40"#),
                ],
                vec![format!(r#"{{{file}source="app"}}: 1/0"#)],
                vec![format!(r#"{{{file}source="app"}}: 5/0"#)],
                vec![],
            ]
        );
        assert_eq!(tally.matched, 5);
        assert_eq!(tally.unwrap_errors, 1);
    }

    /// Series are found by a hash of their key; two keys with the same hash are still
    /// two series, and both are found again after the index is rebuilt.
    #[test]
    fn colliding_key_hashes_stay_distinct_series() {
        let mut logs = windows(&[(r#"{source="app"}"#, &["method"])]);
        let window = &mut logs.windows[0];
        for (stream, values) in [(0, "\0GET"), (0, "\0POST"), (1, "\0GET")] {
            let index = window.series.len();
            window.series.push(WindowSeries {
                labels: Labels::new(),
                buckets: VecDeque::new(),
            });
            window.insert_key(42, stream, values, index);
        }
        assert_eq!(window.find(42, 0, "\0GET"), Some(0));
        assert_eq!(window.find(42, 0, "\0POST"), Some(1));
        assert_eq!(window.find(42, 1, "\0GET"), Some(2));
        assert_eq!(window.find(42, 1, "\0PUT"), None);
        assert_eq!(window.find(7, 0, "\0GET"), None);
    }

    /// Pruning removes series and renumbers the rest: later records still find theirs.
    #[test]
    fn series_are_found_again_after_pruning_and_restoring() {
        let mut logs = windows(&[(r#"{source="app"}"#, &["method"])]);
        let mut tally = IngestTally::default();
        logs.ingest(&batch(&LINES[..2]), &mut tally);
        // GET in bucket 0, POST in bucket 1; at 60s a 60s range starts at bucket 1, so
        // the GET series goes.
        logs.windows[0].prune(60 * S);
        assert_eq!(logs.windows[0].series.len(), 1);
        let mut later = batch(LINES);
        for record in &mut later.records {
            record.observed_unix_nano += 60 * S;
        }
        logs.ingest(&later, &mut tally);
        let saved = logs.windows[0].series.clone();
        logs.windows[0].restore(saved);
        logs.ingest(&later, &mut tally);
        let file = r#"file="/var/log/app.log", "#;
        assert_eq!(
            contents(&logs.windows[0]),
            [
                format!(r#"{{{file}method="GET", source="app"}}: 6/0"#),
                format!(r#"{{{file}method="POST", source="app"}}: 3/0"#),
                format!(r#"{{{file}source="app"}}: 2/0"#),
            ]
        );
    }

    #[test]
    fn attribute_keys_are_found_by_name() {
        let mut table = FieldTable::default();
        let names = [
            "path",
            "status",
            "method",
            "logger",
            "duration_ms",
            "exception_type",
        ];
        for name in names {
            table.intern(name);
        }
        for (i, name) in names.iter().enumerate() {
            assert_eq!(table.slot_of(name), Some(i), "{name}");
        }
        for other in [
            "",
            "p",
            "pat",
            "paths",
            "statuS",
            "duration_mx",
            "version",
            "exception",
        ] {
            assert_eq!(table.slot_of(other), None, "{other}");
        }
    }

    #[test]
    fn plain_decimals_parse_as_the_standard_parser_does() {
        for text in [
            "0",
            "-0",
            "200",
            "20.6",
            "0.1",
            ".5",
            "5.",
            "-12.75",
            "007",
            "123456789012345",
            "0.00000001",
            "999999999999999.",
        ] {
            let fast = parse_plain_decimal(text).expect(text);
            let std: f64 = text.parse().expect(text);
            assert_eq!(fast.to_bits(), std.to_bits(), "{text}");
        }
        for text in [
            "",
            "-",
            ".",
            "1e3",
            "+5",
            "1.2.3",
            "1234567890123456",
            " 1",
            "NaN",
            "inf",
        ] {
            assert_eq!(parse_plain_decimal(text), None, "{text}");
        }
    }

    proptest! {
        #[test]
        fn fast_numbers_match_the_standard_parser(
            int in 0u64..10_000_000,
            frac in 0u64..100_000_000,
            digits in 0usize..9,
            negative: bool,
        ) {
            let text = match digits {
                0 => format!("{}{int}", if negative { "-" } else { "" }),
                _ => format!(
                    "{}{int}.{:0width$}",
                    if negative { "-" } else { "" },
                    frac % 10u64.pow(digits as u32),
                    width = digits
                ),
            };
            let std: f64 = text.parse().expect("valid");
            prop_assert_eq!(parse_f64(&text).map(f64::to_bits), Some(std.to_bits()));
        }
    }
}
