//! Evaluates an expression at one instant over the log windows and sample series:
//! range functions, aggregations, arithmetic, comparisons and set operators with
//! PromQL's vector matching. Pure: the time is an argument, nothing is read but the
//! windows and series it is given.

use std::collections::HashMap;

use super::ast::{
    AggOp, BinOp, Expr, ExprKind, Grouping, MatchOp, RangeArg, RangeCall, RangeFunc,
    SeriesSelector, VectorMatching,
};
use super::labels::{Labels, NAME};
use super::logs::{Acc, LogWindows};
use super::series::SeriesStore;

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Scalar(f64),
    Vector(Vec<Sample>),
}

impl Val {
    pub fn into_vector(self) -> Vec<Sample> {
        match self {
            Val::Vector(v) => v,
            // A rule whose expression is a plain number yields one series without labels.
            Val::Scalar(v) => vec![Sample {
                labels: Labels::new(),
                value: v,
            }],
        }
    }
}

/// A rule evaluation that cannot produce a result (PromQL's many-to-many errors).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// What an evaluation reads.
pub struct EvalCtx<'a> {
    pub t: i64,
    pub windows: &'a LogWindows,
    pub series: &'a SeriesStore,
    /// The window of each log range call, keyed by the call's address (the calls are
    /// boxed in the rule's tree, which outlives the evaluation).
    pub window_of: &'a HashMap<usize, usize>,
}

pub fn call_key(call: &RangeCall) -> usize {
    call as *const RangeCall as usize
}

const NS_PER_SEC: f64 = 1e9;

pub fn eval(expr: &Expr, ctx: &EvalCtx<'_>) -> Result<Val, EvalError> {
    match &expr.kind {
        ExprKind::Number(n) => Ok(Val::Scalar(*n)),
        ExprKind::Paren(inner) => eval(inner, ctx),
        ExprKind::Neg(inner) => Ok(match eval(inner, ctx)? {
            Val::Scalar(v) => Val::Scalar(-v),
            Val::Vector(v) => Val::Vector(
                v.into_iter()
                    .map(|s| Sample {
                        labels: s.labels.without_name(),
                        value: -s.value,
                    })
                    .collect(),
            ),
        }),
        ExprKind::Series(sel) => Ok(Val::Vector(instant_series(sel, ctx))),
        ExprKind::RangeCall(call) => range_call(call, ctx).map(Val::Vector),
        ExprKind::Aggregate(agg) => {
            let inner = eval(&agg.expr, ctx)?.into_vector();
            Ok(Val::Vector(aggregate(
                agg.op,
                agg.param,
                agg.grouping.as_ref(),
                inner,
            )))
        }
        ExprKind::Binary(bin) => {
            let lhs = eval(&bin.lhs, ctx)?;
            let rhs = eval(&bin.rhs, ctx)?;
            binary(bin.op, bin.return_bool, bin.matching.as_ref(), lhs, rhs)
        }
    }
}

fn selector_matches(sel: &SeriesSelector, labels: &Labels) -> bool {
    sel.matchers.iter().all(|m| {
        let have = labels.get(&m.name).unwrap_or("");
        match m.op {
            MatchOp::Eq => have == m.value,
            MatchOp::Ne => have != m.value,
            MatchOp::Re => m.regex.as_ref().is_some_and(|r| r.is_match(have)),
            MatchOp::NotRe => !m.regex.as_ref().is_some_and(|r| r.is_match(have)),
        }
    })
}

fn instant_series(sel: &SeriesSelector, ctx: &EvalCtx<'_>) -> Vec<Sample> {
    let mut out: Vec<Sample> = ctx
        .series
        .select(&sel.name, |l| selector_matches(sel, l))
        .filter_map(|(labels, points)| {
            Some(Sample {
                labels: labels.clone(),
                value: SeriesStore::instant(points, ctx.t)?,
            })
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

fn range_ns(call: &RangeCall) -> i64 {
    call.range.as_nanos().min(i64::MAX as u128) as i64
}

fn range_call(call: &RangeCall, ctx: &EvalCtx<'_>) -> Result<Vec<Sample>, EvalError> {
    let range = range_ns(call);
    let secs = range as f64 / NS_PER_SEC;
    let mut out = match &call.arg {
        RangeArg::Log(_) => {
            let Some(&w) = ctx.window_of.get(&call_key(call)) else {
                return Err(EvalError(format!(
                    "internal: no window for {}",
                    call.func.name()
                )));
            };
            let window = &ctx.windows.windows[w];
            if call.func == RangeFunc::AbsentOverTime {
                let present = window.combine(ctx.t, range).next().is_some();
                return Ok(if present {
                    Vec::new()
                } else {
                    vec![Sample {
                        labels: window.equality_labels.clone(),
                        value: 1.0,
                    }]
                });
            }
            // Group the window's series by the labels the call keeps (LogQL's `by`
            // after the call), merging their buckets so quantiles merge sketches.
            let mut groups: Vec<(Labels, Acc)> = Vec::new();
            let mut index: HashMap<Labels, usize> = HashMap::new();
            for (labels, acc) in window.combine(ctx.t, range) {
                let key = match &call.grouping {
                    None => labels.clone(),
                    Some(Grouping::By(names)) => labels.keep(names),
                    Some(Grouping::Without(names)) => labels.drop(names),
                };
                match index.get(&key) {
                    Some(&i) => groups[i].1.merge(&acc),
                    None => {
                        index.insert(key.clone(), groups.len());
                        groups.push((key, acc));
                    }
                }
            }
            let unwrapped = window.kind != super::logs::AccKind::Lines;
            groups
                .into_iter()
                .filter_map(|(labels, acc)| {
                    let n = acc.count() as f64;
                    let value = match call.func {
                        RangeFunc::CountOverTime => n,
                        RangeFunc::Rate if unwrapped => acc.sum() / secs,
                        RangeFunc::Rate => n / secs,
                        RangeFunc::BytesOverTime => acc.bytes() as f64,
                        RangeFunc::BytesRate => acc.bytes() as f64 / secs,
                        RangeFunc::SumOverTime => acc.sum(),
                        RangeFunc::AvgOverTime => acc.sum() / n,
                        RangeFunc::MinOverTime => acc.min(),
                        RangeFunc::MaxOverTime => acc.max(),
                        RangeFunc::QuantileOverTime => {
                            acc.quantile(call.param.unwrap_or(f64::NAN))?
                        }
                        RangeFunc::AbsentOverTime => return None,
                    };
                    Some(Sample { labels, value })
                })
                .collect()
        }
        RangeArg::Series(sel) => {
            let mut any = false;
            let mut out = Vec::new();
            for (labels, points) in ctx.series.select(&sel.name, |l| selector_matches(sel, l)) {
                let pts: Vec<(i64, f64)> = SeriesStore::range(points, ctx.t, range).collect();
                if pts.is_empty() {
                    continue;
                }
                any = true;
                let vals = || pts.iter().map(|(_, v)| *v);
                let n = pts.len() as f64;
                let value = match call.func {
                    RangeFunc::CountOverTime => n,
                    RangeFunc::SumOverTime => vals().sum(),
                    RangeFunc::AvgOverTime => vals().sum::<f64>() / n,
                    RangeFunc::MinOverTime => vals().fold(f64::INFINITY, f64::min),
                    RangeFunc::MaxOverTime => vals().fold(f64::NEG_INFINITY, f64::max),
                    RangeFunc::QuantileOverTime => {
                        let mut v: Vec<f64> = vals().collect();
                        exact_quantile(call.param.unwrap_or(f64::NAN), &mut v)
                    }
                    RangeFunc::Rate => match extrapolated_rate(&pts, ctx.t - range, ctx.t) {
                        Some(v) => v,
                        None => continue,
                    },
                    // The parser rejects these over series.
                    RangeFunc::BytesOverTime | RangeFunc::BytesRate | RangeFunc::AbsentOverTime => {
                        continue;
                    }
                };
                out.push(Sample {
                    labels: labels.without_name(),
                    value,
                });
            }
            if call.func == RangeFunc::AbsentOverTime {
                return Ok(if any {
                    Vec::new()
                } else {
                    let equality = sel
                        .matchers
                        .iter()
                        .filter(|m| m.op == MatchOp::Eq && m.name != NAME)
                        .map(|m| (m.name.clone(), m.value.clone()));
                    vec![Sample {
                        labels: Labels::from_pairs(equality),
                        value: 1.0,
                    }]
                });
            }
            if let Some(grouping) = &call.grouping {
                out = aggregate_range_grouping(call.func, grouping, out);
            }
            out
        }
    };
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// LogQL's `by` after a range call over series: the values of the grouped series are
/// combined with the function's own aggregation (sum for sums and counts, min, max,
/// mean for averages).
fn aggregate_range_grouping(func: RangeFunc, grouping: &Grouping, v: Vec<Sample>) -> Vec<Sample> {
    let op = match func {
        RangeFunc::MinOverTime => AggOp::Min,
        RangeFunc::MaxOverTime => AggOp::Max,
        RangeFunc::AvgOverTime | RangeFunc::QuantileOverTime => AggOp::Avg,
        _ => AggOp::Sum,
    };
    aggregate(op, None, Some(grouping), v)
}

/// Prometheus' quantile: linear interpolation between the closest ranks, rank = φ(n−1).
pub fn exact_quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0) as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

/// Prometheus' `rate`: the increase over the samples in the range, counter resets
/// corrected, extrapolated towards the range's edges, per second.
fn extrapolated_rate(points: &[(i64, f64)], start: i64, end: i64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (first_t, first_v) = points[0];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = last_v - first_v;
    let mut prev = first_v;
    for &(_, v) in &points[1..] {
        if v < prev {
            result += prev;
        }
        prev = v;
    }
    let secs = |ns: i64| ns as f64 / NS_PER_SEC;
    let sampled = secs(last_t - first_t);
    if sampled <= 0.0 {
        return None;
    }
    let avg_between = sampled / (points.len() - 1) as f64;
    let threshold = avg_between * 1.1;
    // Prometheus (since 2.51): first cap the gaps to the range's edges at half a step,
    // then let a counter's zero point shorten the start further.
    let mut to_start = secs(first_t - start);
    if to_start >= threshold {
        to_start = avg_between / 2.0;
    }
    if result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let mut to_end = secs(end - last_t);
    if to_end >= threshold {
        to_end = avg_between / 2.0;
    }
    let interval = sampled + to_start + to_end;
    Some(result * (interval / sampled) / secs(end - start))
}

pub fn aggregate(
    op: AggOp,
    param: Option<f64>,
    grouping: Option<&Grouping>,
    input: Vec<Sample>,
) -> Vec<Sample> {
    let group_key = |labels: &Labels| -> Labels {
        match grouping {
            None => Labels::new(),
            Some(Grouping::By(names)) => labels.keep(names),
            Some(Grouping::Without(names)) => labels.drop(names).without_name(),
        }
    };
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<Sample>> = HashMap::new();
    for sample in input {
        let key = group_key(&sample.labels);
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(sample);
    }
    let mut out = Vec::new();
    for key in order {
        let Some(mut members) = groups.remove(&key) else {
            continue;
        };
        let values = || members.iter().map(|s| s.value);
        let value = match op {
            AggOp::Sum => values().sum(),
            AggOp::Avg => values().sum::<f64>() / members.len() as f64,
            AggOp::Min => values().fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }),
            AggOp::Max => values().fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }),
            AggOp::Count => members.len() as f64,
            AggOp::Topk | AggOp::Bottomk => {
                let k = param.unwrap_or(1.0).max(0.0) as usize;
                // NaN sorts last in both directions, as in Prometheus.
                members.sort_by(|a, b| {
                    let (x, y) = (a.value, b.value);
                    match (x.is_nan(), y.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if op == AggOp::Topk => y.total_cmp(&x),
                        _ => x.total_cmp(&y),
                    }
                });
                members.truncate(k);
                out.extend(members);
                continue;
            }
        };
        out.push(Sample { labels: key, value });
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

fn arith(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Mod => a % b,
        BinOp::Pow => a.powf(b),
        _ => f64::NAN,
    }
}

fn compare(op: BinOp, a: f64, b: f64) -> bool {
    match op {
        BinOp::Eq => a == b,
        BinOp::Ne => a != b,
        BinOp::Gt => a > b,
        BinOp::Ge => a >= b,
        BinOp::Lt => a < b,
        BinOp::Le => a <= b,
        _ => false,
    }
}

/// The labels two samples are matched on.
fn signature(labels: &Labels, matching: Option<&VectorMatching>) -> Labels {
    match matching {
        Some(VectorMatching::On(names)) => labels.keep(names),
        Some(VectorMatching::Ignoring(names)) => labels.drop(names).without_name(),
        None => labels.without_name(),
    }
}

pub fn binary(
    op: BinOp,
    return_bool: bool,
    matching: Option<&VectorMatching>,
    lhs: Val,
    rhs: Val,
) -> Result<Val, EvalError> {
    let cmp = op.is_comparison();
    match (lhs, rhs) {
        (Val::Scalar(a), Val::Scalar(b)) => Ok(Val::Scalar(if cmp {
            f64::from(u8::from(compare(op, a, b)))
        } else {
            arith(op, a, b)
        })),
        (Val::Vector(v), Val::Scalar(s)) => {
            Ok(Val::Vector(vector_scalar(op, return_bool, v, s, false)))
        }
        (Val::Scalar(s), Val::Vector(v)) => {
            Ok(Val::Vector(vector_scalar(op, return_bool, v, s, true)))
        }
        (Val::Vector(l), Val::Vector(r)) => {
            if op.is_set() {
                return Ok(Val::Vector(set_op(op, matching, l, r)));
            }
            vector_vector(op, return_bool, matching, l, r).map(Val::Vector)
        }
    }
}

fn vector_scalar(op: BinOp, return_bool: bool, v: Vec<Sample>, s: f64, swap: bool) -> Vec<Sample> {
    let cmp = op.is_comparison();
    v.into_iter()
        .filter_map(|sample| {
            let (a, b) = if swap {
                (s, sample.value)
            } else {
                (sample.value, s)
            };
            if cmp {
                let keep = compare(op, a, b);
                if return_bool {
                    Some(Sample {
                        labels: sample.labels.without_name(),
                        value: f64::from(u8::from(keep)),
                    })
                } else if keep {
                    // A filtering comparison keeps the vector's own sample.
                    Some(sample)
                } else {
                    None
                }
            } else {
                Some(Sample {
                    labels: sample.labels.without_name(),
                    value: arith(op, a, b),
                })
            }
        })
        .collect()
}

fn vector_vector(
    op: BinOp,
    return_bool: bool,
    matching: Option<&VectorMatching>,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
) -> Result<Vec<Sample>, EvalError> {
    let mut right: HashMap<Labels, &Sample> = HashMap::new();
    for sample in &rhs {
        let sig = signature(&sample.labels, matching);
        if right.insert(sig.clone(), sample).is_some() {
            return Err(EvalError(format!(
                "found duplicate series for the match group {sig} on the right hand-side of the operation: many-to-many matching not allowed: matching labels must be unique on one side"
            )));
        }
    }
    let mut seen: HashMap<Labels, ()> = HashMap::new();
    let cmp = op.is_comparison();
    let mut out = Vec::new();
    for sample in lhs {
        let sig = signature(&sample.labels, matching);
        let Some(other) = right.get(&sig) else {
            continue;
        };
        if seen.insert(sig.clone(), ()).is_some() {
            return Err(EvalError(format!(
                "multiple matches for labels {sig}: many-to-one matching must be explicit (group_left/group_right are not supported)"
            )));
        }
        let (a, b) = (sample.value, other.value);
        let mut labels = if cmp && !return_bool {
            sample.labels.clone()
        } else {
            sample.labels.without_name()
        };
        match matching {
            Some(VectorMatching::On(names)) => labels = labels.keep(names),
            Some(VectorMatching::Ignoring(names)) => labels = labels.drop(names),
            None => {}
        }
        if cmp {
            let keep = compare(op, a, b);
            if return_bool {
                out.push(Sample {
                    labels,
                    value: f64::from(u8::from(keep)),
                });
            } else if keep {
                out.push(Sample { labels, value: a });
            }
        } else {
            out.push(Sample {
                labels,
                value: arith(op, a, b),
            });
        }
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

fn set_op(
    op: BinOp,
    matching: Option<&VectorMatching>,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
) -> Vec<Sample> {
    let right: std::collections::HashSet<Labels> =
        rhs.iter().map(|s| signature(&s.labels, matching)).collect();
    match op {
        BinOp::And => lhs
            .into_iter()
            .filter(|s| right.contains(&signature(&s.labels, matching)))
            .collect(),
        BinOp::Unless => lhs
            .into_iter()
            .filter(|s| !right.contains(&signature(&s.labels, matching)))
            .collect(),
        _ => {
            let left: std::collections::HashSet<Labels> =
                lhs.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|s| !left.contains(&signature(&s.labels, matching))),
            );
            out
        }
    }
}
