//! A mergeable quantile sketch for `quantile_over_time`: every time bucket of a series
//! keeps one `Sketch`, and a query merges the buckets its range covers.
//!
//! This is DDSketch (Masson, Rim, Lee: "DDSketch: A Fast and Fully-Mergeable Quantile
//! Sketch with Relative-Error Guarantees", VLDB 2019). A positive value `v` is counted
//! in bin `k = ⌈log_γ v⌉` with `γ = (1 + α) / (1 − α)`, so the bin covers
//! `(γ^(k−1), γ^k]`, and the bin stands for `2·γ^k / (γ + 1)`, which is within `α·v` of
//! every `v` in it. Negative values use a second store keyed by their magnitude, zero
//! has its own count, and ±Inf are counted apart at the two ends so ranks stay exact.
//! Merging adds bin counts, so merged sketches are exactly the sketch of all the values.
//!
//! # Quantile convention
//! `quantile(q)` follows PromQL's `quantile_over_time`: with the `n` values sorted as
//! `x₀ ≤ … ≤ xₙ₋₁`, `r = q·(n − 1)` and `w = r − ⌊r⌋`, the answer is
//! `(1 − w)·x⌊r⌋ + w·x⌈r⌉` (linear interpolation between the closest ranks). The
//! sketch uses the same formula with each `xᵢ` replaced by the estimate of its bin; the
//! lowest and highest ranks use the exact `min` and `max`. `q < 0` gives `-Inf`,
//! `q > 1` gives `+Inf` and a NaN `q` gives NaN, as in PromQL. (Where PromQL's formula
//! would multiply an infinite sample by a zero weight and return NaN, this returns the
//! sample.)
//!
//! # Error bound (the statement for the user docs)
//! With α = 1%: every estimate `x̂` of a quantile whose exact value is `x` satisfies
//! `|x̂ − x| ≤ α·((1 − w)·|x⌊r⌋| + w·|x⌈r⌉|)`, which is `|x̂ − x| ≤ 1% · |x|` whenever
//! the two samples around the rank have the same sign (always true for latencies and
//! sizes). `q = 0` and `q = 1` are exact. In the user docs: "`quantile_over_time` is
//! computed from a sketch: its result is within 1% of the value Prometheus would compute
//! from the same samples, and exact for φ = 0 and φ = 1."
//!
//! The guarantee covers magnitudes from 2.2·10⁻³⁰⁸ to 1.7·10³⁰⁸ (smaller ones count as
//! zero), and holds as long as the positive values, and separately the negative values,
//! span less than a factor `γ^2048 ≈ 6·10¹⁷` (e.g. 1 ns to 19 years). Past that, each
//! store keeps its 2048 highest bins and folds the lowest ones into one — the paper's
//! "collapsing lowest" variant, which bounds memory (16 KiB per store) — so the
//! guarantee then holds for every quantile above the collapsed range: the smallest
//! positive values and the most negative values are the ones that lose it.

use std::collections::VecDeque;

/// Bins kept per store; see the module doc for what collapsing costs.
const MAX_BINS: usize = 2048;

/// γ for α = 1%.
const GAMMA: f64 = (1.0 + Sketch::RELATIVE_ACCURACY) / (1.0 - Sketch::RELATIVE_ACCURACY);

/// Magnitudes below the smallest normal float count as zero: their logarithms are fine
/// but the bin estimates would be subnormal floats, which have no relative precision.
const MIN_INDEXABLE: f64 = f64::MIN_POSITIVE;

/// Bounds on keys that finite floats can produce (about ±35 500), checked when a sketch
/// is deserialized from a peer so a corrupt one cannot claim absurd bins.
const KEY_LIMIT: i64 = 40_000;

/// A DDSketch of f64 values with 1% relative accuracy and exact count, sum, min and max.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SketchRepr")]
pub struct Sketch {
    count: u64,
    #[serde(with = "float")]
    sum: f64,
    #[serde(with = "float")]
    min: f64,
    #[serde(with = "float")]
    max: f64,
    zero: u64,
    neg_inf: u64,
    pos_inf: u64,
    /// Keyed by `-key(|v|)`, so that in both stores a lower key is a lower value and
    /// collapsing the lowest keys collapses the lowest values.
    negative: Store,
    positive: Store,
}

impl Sketch {
    pub const RELATIVE_ACCURACY: f64 = 0.01;

    pub fn new() -> Sketch {
        Sketch::default()
    }

    /// Adds a value. NaN is ignored (it has no rank); ±Inf are counted at the ends, so
    /// ranks stay exact and a quantile that lands on them is ±Inf as in PromQL.
    pub fn add(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += v;
        if v == f64::INFINITY {
            self.pos_inf += 1;
        } else if v == f64::NEG_INFINITY {
            self.neg_inf += 1;
        } else if v.abs() < MIN_INDEXABLE {
            self.zero += 1;
        } else if v > 0.0 {
            self.positive.add(key(v), 1);
        } else {
            self.negative.add(-key(-v), 1);
        }
    }

    /// Adds every value of `other`: the result is the sketch of both sets of values.
    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.sum += other.sum;
        self.zero += other.zero;
        self.neg_inf += other.neg_inf;
        self.pos_inf += other.pos_inf;
        self.negative.merge(&other.negative);
        self.positive.merge(&other.positive);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The exact sum (0 when empty).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The exact minimum, NaN when empty.
    pub fn min(&self) -> f64 {
        if self.count == 0 { f64::NAN } else { self.min }
    }

    /// The exact maximum, NaN when empty.
    pub fn max(&self) -> f64 {
        if self.count == 0 { f64::NAN } else { self.max }
    }

    /// The q-quantile by PromQL's convention (see the module doc); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        if q.is_nan() {
            return Some(f64::NAN);
        }
        if q < 0.0 {
            return Some(f64::NEG_INFINITY);
        }
        if q > 1.0 {
            return Some(f64::INFINITY);
        }
        let n = self.count as f64;
        let rank = q * (n - 1.0);
        let lower = rank.floor().max(0.0);
        let upper = (lower + 1.0).min(n - 1.0);
        let weight = rank - rank.floor();
        let low = self.value_at_rank(lower as u64);
        if weight == 0.0 {
            return Some(low);
        }
        let high = self.value_at_rank(upper as u64);
        Some(low * (1.0 - weight) + high * weight)
    }

    /// Distance between the stores' keys and zero's in the order keys of
    /// [`Sketch::bins`]: far above any key a finite float produces (about ±35 500).
    pub const BIN_KEY_OFFSET: i32 = 1 << 20;

    /// The order key of the bin that `v` is counted in (see [`Sketch::bins`]); `None`
    /// for NaN, which is never counted.
    pub fn bin_key(v: f64) -> Option<i32> {
        if v.is_nan() {
            None
        } else if v == f64::INFINITY {
            Some(i32::MAX)
        } else if v == f64::NEG_INFINITY {
            Some(i32::MIN)
        } else if v.abs() < MIN_INDEXABLE {
            Some(0)
        } else if v > 0.0 {
            Some(Self::BIN_KEY_OFFSET + key(v))
        } else {
            Some(-(Self::BIN_KEY_OFFSET + key(-v)))
        }
    }

    /// Every non-empty bin as `(order key, count)`, in ascending order of key and so of
    /// value: `-Inf`, the negative bins, zero, the positive bins, `+Inf`.
    ///
    /// The order key of a value is the same in every sketch (the mapping γ is fixed), so
    /// two sketches' bins can be aligned by key, e.g. to rank one sketch's values among
    /// another's. Keys: `-Inf` is `i32::MIN`, `+Inf` is `i32::MAX`, zero (every magnitude
    /// below `f64::MIN_POSITIVE`) is 0, a positive `v` is `BIN_KEY_OFFSET + ⌈log_γ v⌉`
    /// and a negative `v` is minus the key of `|v|`. Values with the same key are within
    /// 2% of each other (one bin is `(γ^(k−1), γ^k]`, γ ≈ 1.0202).
    ///
    /// One caveat: a store whose values span more than `γ^2048` has folded its lowest
    /// bins into its first one (see the module doc), so that first key then also holds
    /// every lower value of the store; two sketches align exactly only above the higher
    /// of their collapsed ranges.
    pub fn bins(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        let neg_inf = (self.neg_inf > 0).then_some((i32::MIN, self.neg_inf));
        let zero = (self.zero > 0).then_some((0, self.zero));
        let pos_inf = (self.pos_inf > 0).then_some((i32::MAX, self.pos_inf));
        neg_inf
            .into_iter()
            .chain(
                self.negative
                    .iter()
                    .map(|(k, c)| (k - Self::BIN_KEY_OFFSET, c)),
            )
            .chain(zero)
            .chain(
                self.positive
                    .iter()
                    .map(|(k, c)| (k + Self::BIN_KEY_OFFSET, c)),
            )
            .chain(pos_inf)
    }

    /// Approximate heap and inline size, for the series-limit accounting.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Sketch>()
            + (self.negative.bins.capacity() + self.positive.bins.capacity())
                * std::mem::size_of::<u64>()
    }

    /// The estimate of the value at 0-based rank `r` (`r < count`).
    fn value_at_rank(&self, r: u64) -> f64 {
        if r == 0 {
            return self.min;
        }
        if r >= self.count - 1 {
            return self.max;
        }
        // Clamping to the exact extremes can only move an estimate towards the truth,
        // and keeps the overflowing estimate of the top bin finite.
        let clamp = |v: f64| v.max(self.min).min(self.max);
        let mut seen = self.neg_inf;
        if r < seen {
            return f64::NEG_INFINITY;
        }
        for (k, c) in self.negative.iter() {
            seen += c;
            if r < seen {
                return clamp(-estimate(-k));
            }
        }
        seen += self.zero;
        if r < seen {
            return clamp(0.0);
        }
        for (k, c) in self.positive.iter() {
            seen += c;
            if r < seen {
                return clamp(estimate(k));
            }
        }
        f64::INFINITY
    }
}

fn ln_gamma() -> f64 {
    GAMMA.ln()
}

/// The bin of a positive, normal, finite magnitude: `⌈log_γ v⌉`.
fn key(v: f64) -> i32 {
    (v.ln() / ln_gamma()).ceil() as i32
}

/// What bin `k` stands for: `2·γ^k / (γ + 1)`, computed in log space so the top bins
/// overflow as late as possible.
fn estimate(k: i32) -> f64 {
    (f64::from(k) * ln_gamma() + (2.0 / (1.0 + GAMMA)).ln()).exp()
}

/// Counts of consecutive keys `offset, offset + 1, …`, at most `MAX_BINS` of them.
///
/// The window is always `[max(lowest key, highest key − MAX_BINS + 1), highest key]`
/// with every lower key counted in its first bin, whatever the order of the adds — so
/// merging two stores gives exactly the store of all their values.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Store {
    offset: i32,
    bins: VecDeque<u64>,
}

impl Store {
    fn add(&mut self, key: i32, n: u64) {
        if n == 0 {
            return;
        }
        if self.bins.is_empty() {
            self.offset = key;
            self.bins.push_back(n);
            return;
        }
        let max = MAX_BINS as i64;
        let lo = i64::from(self.offset);
        let hi = lo + self.bins.len() as i64 - 1;
        let mut key = i64::from(key);
        if key > hi {
            let new_lo = lo.max(key - max + 1);
            if new_lo > lo {
                self.collapse_below(new_lo);
            }
            let hi = i64::from(self.offset) + self.bins.len() as i64 - 1;
            self.bins
                .extend(std::iter::repeat_n(0, (key - hi) as usize));
        } else if key < lo {
            let new_lo = key.max(hi - max + 1);
            for _ in new_lo..lo {
                self.bins.push_front(0);
            }
            self.offset = new_lo as i32;
            key = key.max(new_lo);
        }
        let i = (key - i64::from(self.offset)) as usize;
        self.bins[i] += n;
    }

    /// Folds every bin below `new_lo` into the bin of `new_lo`, which becomes the first.
    fn collapse_below(&mut self, new_lo: i64) {
        let lo = i64::from(self.offset);
        let hi = lo + self.bins.len() as i64 - 1;
        if new_lo > hi {
            let total = self.bins.iter().sum();
            self.bins.clear();
            self.bins.push_back(total);
        } else {
            let folded: u64 = self.bins.drain(..(new_lo - lo) as usize).sum();
            self.bins[0] += folded;
        }
        self.offset = new_lo as i32;
    }

    fn merge(&mut self, other: &Store) {
        for (k, c) in other.iter() {
            self.add(k, c);
        }
    }

    /// Non-empty bins in ascending key order.
    fn iter(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.bins
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (self.offset + i as i32, *c))
    }

    fn total(&self) -> Option<u64> {
        self.bins
            .iter()
            .try_fold(0u64, |acc, c| acc.checked_add(*c))
    }
}

/// The serialized form, checked before it becomes a `Sketch`: baselines come from peers
/// and from disk, and a corrupt one must not panic a query or claim unbounded bins.
#[derive(serde::Deserialize)]
struct SketchRepr {
    count: u64,
    #[serde(with = "float")]
    sum: f64,
    #[serde(with = "float")]
    min: f64,
    #[serde(with = "float")]
    max: f64,
    zero: u64,
    neg_inf: u64,
    pos_inf: u64,
    negative: Store,
    positive: Store,
}

impl TryFrom<SketchRepr> for Sketch {
    type Error = String;

    fn try_from(r: SketchRepr) -> Result<Sketch, String> {
        for (name, store) in [("negative", &r.negative), ("positive", &r.positive)] {
            if store.bins.len() > MAX_BINS {
                return Err(format!(
                    "{name} store has {} bins, more than {MAX_BINS}",
                    store.bins.len()
                ));
            }
            let lo = i64::from(store.offset);
            let hi = lo + store.bins.len() as i64;
            if lo < -KEY_LIMIT || hi > KEY_LIMIT {
                return Err(format!("{name} store keys {lo}..{hi} are out of range"));
            }
        }
        let total = [r.zero, r.neg_inf, r.pos_inf]
            .into_iter()
            .map(Some)
            .chain([r.negative.total(), r.positive.total()])
            .try_fold(0u64, |acc, c| c.and_then(|c| acc.checked_add(c)));
        if total != Some(r.count) {
            return Err(format!("sketch count {} does not match its bins", r.count));
        }
        if r.count > 0 && (r.min.is_nan() || r.max.is_nan() || r.min > r.max) {
            return Err(format!("sketch min {} is above its max {}", r.min, r.max));
        }
        Ok(Sketch {
            count: r.count,
            sum: r.sum,
            min: r.min,
            max: r.max,
            zero: r.zero,
            neg_inf: r.neg_inf,
            pos_inf: r.pos_inf,
            negative: r.negative,
            positive: r.positive,
        })
    }
}

/// Floats that survive JSON: finite ones as numbers, NaN and ±Inf as the strings
/// `"NaN"`, `"+Inf"`, `"-Inf"` (the way Prometheus's API writes them), since JSON has no
/// literal for them and a sum or an extreme can be infinite.
/// Serde for `f64` that keeps NaN and ±Inf (as the strings "NaN", "+Inf", "-Inf"):
/// JSON has no such numbers, and plain serde would write `null` it cannot read back.
pub(crate) mod float {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if *v > 0.0 {
            s.serialize_str("+Inf")
        } else {
            s.serialize_str("-Inf")
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        struct FloatVisitor;
        impl Visitor<'_> for FloatVisitor {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or \"NaN\", \"+Inf\", \"-Inf\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                match v {
                    "NaN" => Ok(f64::NAN),
                    "+Inf" | "Inf" => Ok(f64::INFINITY),
                    "-Inf" => Ok(f64::NEG_INFINITY),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(FloatVisitor)
    }
}

/// splitmix64: a small deterministic generator so data-driven tests (the sketch's and the
/// verification statistics') are stable.
#[cfg(test)]
pub(crate) mod test_rng {
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        pub(crate) fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Standard normal by Box–Muller.
        pub(crate) fn normal(&mut self) -> f64 {
            let u1 = 1.0 - self.unit();
            let u2 = self.unit();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALPHA: f64 = Sketch::RELATIVE_ACCURACY;

    use test_rng::Rng;

    /// PromQL's quantile over sorted values, with the bound the sketch promises for it.
    fn exact(sorted: &[f64], q: f64) -> (f64, f64) {
        let n = sorted.len() as f64;
        let rank = q * (n - 1.0);
        let lower = rank.floor().max(0.0);
        let upper = (lower + 1.0).min(n - 1.0);
        let w = rank - rank.floor();
        let (lo, hi) = (sorted[lower as usize], sorted[upper as usize]);
        if w == 0.0 {
            return (lo, ALPHA * lo.abs());
        }
        (
            lo * (1.0 - w) + hi * w,
            ALPHA * ((1.0 - w) * lo.abs() + w * hi.abs()),
        )
    }

    const QS: [f64; 14] = [
        0.0, 0.001, 0.01, 0.1, 0.25, 0.333, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0,
    ];

    /// Checks every quantile in `qs` against the exact value and the promised bound (with
    /// room for float rounding in the logarithms).
    fn check_accuracy(values: &[f64], qs: &[f64]) -> Result<(), String> {
        let mut sketch = Sketch::new();
        for v in values {
            sketch.add(*v);
        }
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return match sketch.quantile(0.5) {
                None => Ok(()),
                Some(v) => Err(format!("empty sketch gave {v}")),
            };
        }
        for &q in qs {
            let (want, bound) = exact(&sorted, q);
            let got = sketch.quantile(q).ok_or("no quantile")?;
            let slack = bound * 1e-9 + 1e-300;
            let ok = if want.is_infinite() || want.is_nan() {
                got == want || (got.is_nan() && want.is_nan())
            } else {
                (got - want).abs() <= bound + slack
            };
            if !ok {
                return Err(format!(
                    "q={q}: got {got:e}, exact {want:e}, error {:e} > bound {bound:e} (n={})",
                    (got - want).abs(),
                    sorted.len()
                ));
            }
        }
        if (sketch.quantile(0.0), sketch.quantile(1.0)) != (Some(sorted[0]), sorted.last().copied())
        {
            return Err("q=0 and q=1 are not the exact min and max".into());
        }
        Ok(())
    }

    #[test]
    fn uniform_data() {
        let mut rng = Rng(1);
        let values: Vec<f64> = (0..20_000).map(|_| rng.unit() * 1000.0).collect();
        check_accuracy(&values, &QS).unwrap();
    }

    #[test]
    fn lognormal_data() {
        let mut rng = Rng(2);
        // Latency-like: median e^3 ≈ 20 ms, a long tail.
        let values: Vec<f64> = (0..20_000)
            .map(|_| (3.0 + 1.5 * rng.normal()).exp())
            .collect();
        check_accuracy(&values, &QS).unwrap();
    }

    #[test]
    fn negative_zero_and_mixed_data() {
        let mut rng = Rng(3);
        let negative: Vec<f64> = (0..5000).map(|_| -(rng.normal() * 2.0).exp()).collect();
        check_accuracy(&negative, &QS).unwrap();
        let zeros = vec![0.0; 100];
        check_accuracy(&zeros, &QS).unwrap();
        let mixed: Vec<f64> = (0..10_000)
            .map(|i| match i % 5 {
                0 => 0.0,
                1 => -0.0,
                2 => -(rng.normal() * 3.0).exp(),
                _ => (rng.normal() * 3.0).exp(),
            })
            .collect();
        check_accuracy(&mixed, &QS).unwrap();
        check_accuracy(&[42.0], &QS).unwrap();
        check_accuracy(&[-1.0, 1.0], &QS).unwrap();
    }

    #[test]
    fn infinities_nan_and_edges() {
        let mut s = Sketch::new();
        assert_eq!(s.quantile(0.5), None);
        assert!(s.min().is_nan() && s.max().is_nan());
        assert_eq!(s.sum(), 0.0);
        for v in [
            f64::NAN,
            1.0,
            2.0,
            3.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ] {
            s.add(v);
        }
        assert_eq!(s.count(), 5);
        assert_eq!(s.min(), f64::NEG_INFINITY);
        assert_eq!(s.max(), f64::INFINITY);
        assert!(s.sum().is_nan());
        assert_eq!(s.quantile(0.0), Some(f64::NEG_INFINITY));
        assert_eq!(s.quantile(1.0), Some(f64::INFINITY));
        assert_eq!(s.quantile(0.5), Some(estimate(key(2.0))));
        assert_eq!(s.quantile(0.9), Some(f64::INFINITY));
        assert_eq!(s.quantile(-0.1), Some(f64::NEG_INFINITY));
        assert_eq!(s.quantile(1.1), Some(f64::INFINITY));
        assert!(s.quantile(f64::NAN).is_some_and(f64::is_nan));

        let mut tiny = Sketch::new();
        for v in [f64::MAX, -f64::MAX, 1e-310, f64::MIN_POSITIVE, 5e-324] {
            tiny.add(v);
        }
        assert_eq!(tiny.zero, 2, "subnormals count as zero");
        check_accuracy(&[f64::MAX, f64::MAX / 1.5, 1.0], &QS).unwrap();
    }

    /// Every field equal, the sum up to float rounding (it depends on the order of the
    /// additions).
    fn assert_same(a: &Sketch, b: &Sketch) {
        let tolerance = 1e-9 * a.sum.abs().max(1.0);
        assert!(
            (a.sum - b.sum).abs() <= tolerance,
            "sum {} vs {}",
            a.sum,
            b.sum
        );
        let mut b = b.clone();
        b.sum = a.sum;
        assert_eq!(*a, b);
    }

    #[test]
    fn merge_equals_adding_everything() {
        let mut rng = Rng(4);
        let values: Vec<f64> = (0..30_000)
            .map(|i| match i % 7 {
                0 => 0.0,
                1 => -(rng.normal() * 4.0).exp(),
                _ => (rng.normal() * 4.0).exp(),
            })
            .collect();
        let mut all = Sketch::new();
        for v in &values {
            all.add(*v);
        }
        let mut parts = vec![Sketch::new(); 5];
        for (i, v) in values.iter().enumerate() {
            parts[(i * 7919) % 5].add(*v);
        }
        let mut merged = Sketch::new();
        for p in &parts {
            merged.merge(p);
        }
        merged.merge(&Sketch::new());
        assert_same(&all, &merged);
        for q in QS {
            assert_eq!(all.quantile(q), merged.quantile(q));
        }
    }

    #[test]
    fn bins_stay_bounded_over_a_huge_range() {
        let mut rng = Rng(5);
        // A million distinct values spread over 600 decades, in three sketches.
        let values: Vec<f64> = (0..1_000_000)
            .map(|_| 10f64.powf(rng.unit() * 600.0 - 300.0))
            .collect();
        let mut all = Sketch::new();
        let mut parts = vec![Sketch::new(); 3];
        for (i, v) in values.iter().enumerate() {
            all.add(*v);
            parts[i % 3].add(*v);
        }
        assert_eq!(all.count(), 1_000_000);
        assert_eq!(all.positive.bins.len(), MAX_BINS);
        assert!(
            all.memory_bytes() < 40 * 1024,
            "{} bytes",
            all.memory_bytes()
        );
        let mut merged = Sketch::new();
        for p in &parts {
            assert!(p.positive.bins.len() <= MAX_BINS);
            merged.merge(p);
        }
        assert_same(&all, &merged);

        // The top 2048 bins span a factor γ^2048 ≈ 6e17 below the maximum (~1e300), so
        // quantiles above ~1e283 (the top ~3%) keep the guarantee.
        check_accuracy(&values, &[0.98, 0.99, 0.999, 1.0]).unwrap();
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let floor = estimate(all.positive.offset);
        assert!(floor > 1e280 && floor < 1e290, "{floor:e}");
        // Below, estimates are held at the collapsed bin (never below the true value).
        let median = all.quantile(0.5).unwrap();
        assert!(median >= exact(&sorted, 0.5).0 && median <= floor * 1.01);
    }

    #[test]
    fn increasing_values_collapse_cheaply() {
        // Each new maximum shifts the window; with a deque that is O(1) per value.
        let mut s = Sketch::new();
        for i in 0..200_000 {
            s.add(1.1f64.powi(i % 7000));
        }
        assert!(s.positive.bins.len() <= MAX_BINS);
        assert_eq!(s.count(), 200_000);
    }

    #[test]
    fn serde_round_trip() {
        let mut s = Sketch::new();
        for v in [0.125, 1.5, -2.25, 0.0, 1e6, 3.75e-3, f64::INFINITY] {
            s.add(v);
        }
        let json = serde_json::to_string(&s).unwrap();
        let back: Sketch = serde_json::from_str(&json).unwrap();
        assert_eq!(s, back);
        assert!(json.contains("\"+Inf\""), "{json}");

        let empty: Sketch =
            serde_json::from_str(&serde_json::to_string(&Sketch::new()).unwrap()).unwrap();
        assert_eq!(empty, Sketch::new());

        // A sketch whose counts do not add up, or with too many bins, is refused.
        let mut bad: serde_json::Value = serde_json::to_value(&s).unwrap();
        bad["count"] = serde_json::json!(99);
        assert!(serde_json::from_value::<Sketch>(bad).is_err());
        let mut huge: serde_json::Value = serde_json::to_value(&s).unwrap();
        huge["positive"]["bins"] = serde_json::json!(vec![0u64; MAX_BINS + 1]);
        assert!(serde_json::from_value::<Sketch>(huge).is_err());
        let mut far: serde_json::Value = serde_json::to_value(&s).unwrap();
        far["positive"]["offset"] = serde_json::json!(i32::MAX - 1);
        assert!(serde_json::from_value::<Sketch>(far).is_err());
    }

    /// Groups sorted values by `bin_key`: what `bins()` must return.
    fn grouped_by_key(values: &[f64]) -> Vec<(i32, u64)> {
        let mut keys: Vec<i32> = values.iter().filter_map(|v| Sketch::bin_key(*v)).collect();
        keys.sort_unstable();
        let mut groups: Vec<(i32, u64)> = Vec::new();
        for k in keys {
            match groups.last_mut() {
                Some((last, c)) if *last == k => *c += 1,
                _ => groups.push((k, 1)),
            }
        }
        groups
    }

    #[test]
    fn bins_walk_every_value_in_order() {
        assert_eq!(Sketch::new().bins().count(), 0);
        let values = [
            f64::NEG_INFINITY,
            -1e6,
            -2.0,
            -2.01,
            -1.0,
            -0.0,
            0.0,
            1e-310,
            f64::NAN,
            0.5,
            1.0,
            1.0,
            1.005,
            1.015,
            1.03,
            1e6,
            f64::INFINITY,
            f64::INFINITY,
        ];
        let mut s = Sketch::new();
        for v in values {
            s.add(v);
        }
        let bins: Vec<(i32, u64)> = s.bins().collect();
        assert_eq!(bins, grouped_by_key(&values));
        assert_eq!(bins.iter().map(|(_, c)| c).sum::<u64>(), s.count());
        assert_eq!(bins.first(), Some(&(i32::MIN, 1)));
        assert_eq!(bins.last(), Some(&(i32::MAX, 2)));
        // -0.0, 0.0 and the subnormal share the zero bin; 1.005 and 1.015 share the bin
        // (1, γ], 1.03 is in the next; -2.0 and -2.01 share one.
        assert!(bins.contains(&(0, 3)));
        assert_eq!(Sketch::bin_key(1.005), Sketch::bin_key(1.015));
        assert_eq!(Sketch::bin_key(1.03), Sketch::bin_key(1.015).map(|k| k + 1));
        assert_eq!(Sketch::bin_key(1.0), Sketch::bin_key(1.015).map(|k| k - 1));
        assert_eq!(Sketch::bin_key(-2.0), Sketch::bin_key(-2.01));
        assert_eq!(Sketch::bin_key(-1.0), Sketch::bin_key(1.0).map(|k| -k));
        assert_eq!(Sketch::bin_key(f64::NAN), None);
        // (Positive values spanning more than γ^2048, e.g. 0.5 and 1e300, would collapse
        // the lowest bins: see `bins`.)
        // The extremes of the finite range stay inside the order.
        let keys = [
            -f64::MAX,
            -f64::MIN_POSITIVE,
            0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
        ]
        .map(|v| Sketch::bin_key(v).unwrap());
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert!(keys[0] > i32::MIN && keys[4] < i32::MAX);
    }

    /// Values in the shapes the sketch meets: latencies over many decades, signed
    /// values, exact zeros and repeated values.
    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => (-9.0f64..6.0).prop_map(|e| 10f64.powf(e)),
            2 => (-9.0f64..6.0).prop_map(|e| -(10f64.powf(e))),
            1 => Just(0.0),
            1 => (0u8..4).prop_map(f64::from),
            1 => -1e3f64..1e3,
        ]
    }

    proptest! {
        #[test]
        fn every_quantile_is_within_the_bound(
            values in proptest::collection::vec(value(), 1..400),
            extra_q in 0.0f64..=1.0,
        ) {
            let mut qs = QS.to_vec();
            qs.push(extra_q);
            if let Err(e) = check_accuracy(&values, &qs) {
                return Err(TestCaseError::fail(e));
            }
        }

        #[test]
        fn bins_group_values_by_key_in_value_order(
            values in proptest::collection::vec(value(), 0..300),
            a in value(),
            b in value(),
        ) {
            let mut s = Sketch::new();
            for v in &values { s.add(*v); }
            let bins: Vec<(i32, u64)> = s.bins().collect();
            prop_assert_eq!(bins, grouped_by_key(&values));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(Sketch::bin_key(lo) <= Sketch::bin_key(hi));
        }

        #[test]
        fn merge_matches_in_any_split(
            values in proptest::collection::vec(value(), 0..200),
            split in 0usize..200,
        ) {
            let split = split.min(values.len());
            let (mut a, mut b, mut all) = (Sketch::new(), Sketch::new(), Sketch::new());
            for v in &values[..split] { a.add(*v); all.add(*v); }
            for v in &values[split..] { b.add(*v); all.add(*v); }
            a.merge(&b);
            prop_assert_eq!(a.count(), all.count());
            prop_assert!((a.sum() - all.sum()).abs() <= 1e-9 * all.sum().abs().max(1.0));
            for q in QS {
                prop_assert_eq!(a.quantile(q), all.quantile(q));
            }
        }
    }
}
