//! The statistics of deployment verification: the tests behind `ratio` and
//! `distribution` checks, and the error control that makes `confidence` hold for a whole
//! deployment. Pure: no IO, no clock.
//!
//! # What `confidence` guarantees (for the user docs)
//! A check *meets H0* when the new version is no worse than the check allows: for
//! `ratio`, new ratio ≤ `m = max(max_increase × baseline ratio, baseline ratio +
//! min_delta)`; for `distribution`, the new samples are not stochastically larger than
//! the baseline's. A deployment whose checks all meet H0 is failed with probability at
//! most `1 − confidence` (1% by default), however many checks it has and however often
//! they are looked at during `verify_window`:
//!
//! - **Across checks: Bonferroni.** Each of the deployment's `k` tested checks gets
//!   `alpha_check = (1 − confidence) / k` ([`check_alpha`]).
//! - **Across looks: Pocock-type alpha spending** (Lan & DeMets, 1983). A check is
//!   looked at repeatedly while the window runs and fails as soon as its evidence is
//!   significant, without waiting for the end of the window. By information fraction
//!   `t` it may have spent at most `alpha_check · ln(1 + (e − 1)·t)`
//!   ([`pocock_spending`]), which is all of `alpha_check` at `t = 1`; a look at `t` that
//!   follows a look at `t_prev` tests at the nominal level `spend(t) − spend(t_prev)`
//!   ([`look_alpha`]). By the union bound the probability of a false failure at *any*
//!   look is at most the sum of these levels, `alpha_check`, whatever the correlation
//!   between looks: valid for any number and timing of looks (as long as the timing does
//!   not depend on the data), and conservative — exact group-sequential boundaries would
//!   be slightly less strict.
//! - The **information fraction** of a look is the elapsed share of `verify_window`:
//!   `t = min((time − t0) / verify_window, 1)` ([`information_fraction`]). (In
//!   group-sequential designs it is the share of the final sample size; a deployment's
//!   final sample size is not known in advance, and with steady traffic it grows in
//!   proportion to time.) The look at `t0 + verify_window` has `t = 1` and spends what
//!   is left.
//!
//! Summed over checks: P(the deployment fails | every check meets H0) ≤ `k · alpha_check
//! = 1 − confidence`.
//!
//! A check fails at a look when its result is worse than the threshold *and* significant
//! at the look's level ([`TestResult::fails`]). The p-values are normal approximations,
//! good once both windows have `min_samples`; below that a check is inconclusive.
//!
//! # The tests
//! - `ratio` ([`ratio_test`]): a one-sided Wald test of H0 `p_new ≤ m` with `m =
//!   max(max_increase · p_base, p_base + min_delta)`. Both ratios are estimates, so the
//!   variance of `m̂` (delta method: `m'(p_base)² · Var(p̂_base)`) is added to that of
//!   `p̂_new`: `z = (p̂_new − m̂) / √(p̂_new(1 − p̂_new)/n_new + m'² · p̂_base(1 −
//!   p̂_base)/n_base)`, p-value `P(Z ≥ z)`. With `max_increase = 1, min_delta = 0` this is
//!   the classic unpooled two-proportion z test.
//! - `distribution` ([`distribution_test`]): the Mann-Whitney U test, one-sided "the new
//!   samples are stochastically larger", normal approximation with tie and continuity
//!   corrections — the same numbers as `scipy.stats.mannwhitneyu(new, base,
//!   alternative="greater", method="asymptotic")`. It runs on the two versions' sketches:
//!   values in one sketch bin (2% wide) count as ties, so the test is exact for the
//!   binned data. The reported quantiles come from the sketches (within 1%).

use std::time::Duration;

use crate::rules::sketch::Sketch;

/// `1 / √(2π)`.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Beyond this |z| the tail is below the smallest subnormal float.
const Z_MAX: f64 = 40.0;

/// Where the tail switches from the series to the continued fraction (both converge
/// there within about 100 terms, and the series loses no relative accuracy below it).
const SERIES_LIMIT: f64 = 2.0;

/// The standard normal density. `e^(−x²/2)` is split as `e^(−h²/2) · e^(−(x−h)(x+h)/2)`
/// with `h` `x` rounded down to 1/16 (so `h²` is exact): a rounding error in `x²` would
/// otherwise cost up to `x²/2` ulps of relative accuracy far in the tail.
fn pdf(x: f64) -> f64 {
    let h = (x * 16.0).floor() / 16.0;
    FRAC_1_SQRT_2PI * (-0.5 * h * h).exp() * (-0.5 * (x - h) * (x + h)).exp()
}

/// `Φ(x) − ½ = φ(x) · Σ x^(2n+1) / (1·3·…·(2n+1))`, for `|x| < SERIES_LIMIT`: the terms
/// all have the sign of `x`, so there is no cancellation.
fn cdf_minus_half(x: f64) -> f64 {
    let x2 = x * x;
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= x2 / f64::from(2 * n + 1);
        let next = sum + term;
        if next == sum {
            break;
        }
        sum = next;
    }
    pdf(x) * sum
}

/// The upper tail `Q(x) = 1 − Φ(x)` for `x ≥ SERIES_LIMIT`, by Laplace's continued
/// fraction `Q(x) = φ(x) / (x + 1/(x + 2/(x + 3/(x + …))))` (modified Lentz).
fn upper_tail(x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (mut f, mut c, mut d) = (x, x, 0.0f64);
    for i in 1..1000 {
        let a = f64::from(i);
        d = x + a * d;
        if d == 0.0 {
            d = TINY;
        }
        c = x + a / c;
        if c == 0.0 {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    pdf(x) / f
}

/// The standard normal survival function `1 − Φ(z)`, with full relative accuracy in the
/// upper tail (about 1e-14 relative everywhere; `normal_sf(8) ≈ 6.2e-16`).
pub fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z > Z_MAX {
        return 0.0;
    }
    if z < -Z_MAX {
        return 1.0;
    }
    if z.abs() < SERIES_LIMIT {
        0.5 - cdf_minus_half(z)
    } else if z > 0.0 {
        upper_tail(z)
    } else {
        1.0 - upper_tail(-z)
    }
}

/// The standard normal cumulative distribution function `Φ(z)`, accurate in the lower
/// tail.
pub fn normal_cdf(z: f64) -> f64 {
    normal_sf(-z)
}

/// The inverse of [`normal_cdf`]: `Φ⁻¹(p)`, `-Inf` at 0, `+Inf` at 1, NaN outside
/// `[0, 1]`. Accurate to about 1e-15 relative for every `p` down to 1e-307.
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        -upper_quantile(p)
    } else {
        // Exact for p ≥ ½.
        upper_quantile(1.0 - p)
    }
}

/// The `x` with `Q(x) = q`, for `0 < q < ½`: Abramowitz & Stegun 26.2.23 (error below
/// 4.5e-4) refined by Halley's method on the accurate tail.
fn upper_quantile(q: f64) -> f64 {
    let t = (-2.0 * q.ln()).sqrt();
    let mut x = t
        - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
            / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t);
    for _ in 0..50 {
        // Q(x) − q, computed without cancelling ½ near the centre.
        let residual = if x.abs() < SERIES_LIMIT {
            (0.5 - q) - cdf_minus_half(x)
        } else {
            normal_sf(x) - q
        };
        let u = residual / pdf(x);
        let step = u / (1.0 - x * u / 2.0);
        if !step.is_finite() {
            break;
        }
        x += step;
        if step.abs() <= 4.0 * f64::EPSILON * x.abs() {
            break;
        }
    }
    x
}

/// Evidence of one check at one look, as the API and replay print it.
///
/// Non-finite numbers (a NaN ratio of an empty window, an infinite statistic when a
/// variance is 0) serialize as the strings `"NaN"`, `"+Inf"`, `"-Inf"`, as in the
/// sketches and Prometheus's API.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestResult {
    /// The baseline ratio, or the baseline quantile.
    #[serde(with = "crate::rules::sketch::float")]
    pub baseline: f64,
    /// The new ratio, or the new quantile.
    #[serde(with = "crate::rules::sketch::float")]
    pub current: f64,
    pub n_baseline: u64,
    pub n_current: u64,
    /// z for `ratio`, the new samples' U for `distribution`.
    #[serde(with = "crate::rules::sketch::float")]
    pub statistic: f64,
    /// One-sided p-value, in `[0, 1]`.
    #[serde(with = "crate::rules::sketch::float")]
    pub p_value: f64,
    /// The value `current` is compared with: `max(max_increase · baseline, baseline +
    /// min_delta)`.
    #[serde(with = "crate::rules::sketch::float")]
    pub threshold: f64,
}

impl TestResult {
    /// Whether the check fails at a look of nominal level `alpha` (from [`look_alpha`]):
    /// `current` is above `threshold` and the p-value is below `alpha` (so a level of 0
    /// never fails).
    pub fn fails(&self, alpha: f64) -> bool {
        self.current > self.threshold && self.p_value < alpha
    }
}

/// `max(max_increase · baseline, baseline + min_delta)`, and its derivative in
/// `baseline`.
fn threshold(baseline: f64, max_increase: f64, min_delta: f64) -> (f64, f64) {
    let relative = max_increase * baseline;
    let absolute = baseline + min_delta;
    if relative >= absolute {
        (relative, max_increase)
    } else {
        (absolute, 1.0)
    }
}

/// `ratio`: one-sided test of H0 "p_new ≤ m" with `m = max(max_increase · p_base, p_base +
/// min_delta)`, accounting for the baseline's own uncertainty (delta method on `m`).
/// p-value = P(Z ≥ z). See the module doc for the formula.
///
/// Degenerate inputs never fail: an empty denominator gives NaN ratios and p = 1, and a
/// threshold of 1 or more (no ratio can exceed it) gives z = −∞, p = 1. When both
/// variances are 0 (ratios of exactly 0 or 1) z is ±∞ by the sign of `p̂_new − m̂`, and
/// 0 when they are equal.
pub fn ratio_test(
    num_base: u64,
    den_base: u64,
    num_new: u64,
    den_new: u64,
    max_increase: f64,
    min_delta: f64,
) -> TestResult {
    let ratio = |num: u64, den: u64| {
        if den == 0 {
            f64::NAN
        } else {
            num as f64 / den as f64
        }
    };
    let (p_base, p_new) = (ratio(num_base, den_base), ratio(num_new, den_new));
    let (m, slope) = threshold(p_base, max_increase, min_delta);
    let mut result = TestResult {
        baseline: p_base,
        current: p_new,
        n_baseline: den_base,
        n_current: den_new,
        statistic: f64::NAN,
        p_value: 1.0,
        threshold: m,
    };
    if den_base == 0 || den_new == 0 || m.is_nan() {
        return result;
    }
    if m >= 1.0 {
        result.statistic = f64::NEG_INFINITY;
        return result;
    }
    // Clamped so a numerator that is not a subset of its denominator cannot make a
    // variance negative.
    let bernoulli = |p: f64| (p * (1.0 - p)).max(0.0);
    let variance =
        bernoulli(p_new) / den_new as f64 + slope * slope * bernoulli(p_base) / den_base as f64;
    let diff = p_new - m;
    let z = if diff == 0.0 {
        0.0
    } else {
        diff / variance.sqrt()
    };
    result.statistic = z;
    result.p_value = normal_sf(z).clamp(0.0, 1.0);
    result
}

/// Mann-Whitney U over groups of tied values in ascending order, each given as (count in
/// the baseline, count in the new samples): the new samples' U and the one-sided p-value
/// of "new is stochastically larger", as scipy computes them (normal approximation, tie
/// correction, continuity correction).
fn mann_whitney_groups(groups: impl Iterator<Item = (u64, u64)>) -> (f64, f64) {
    let (mut n_base, mut n_new) = (0u64, 0u64);
    // 2U counted exactly: each new value beats the baseline values below it and ties
    // with those in its group.
    let mut twice_u: u128 = 0;
    let mut tie_term = 0.0f64;
    for (base, new) in groups {
        twice_u += u128::from(new) * (2 * u128::from(n_base) + u128::from(base));
        let t = (base + new) as f64;
        tie_term += t * t * t - t;
        n_base += base;
        n_new += new;
    }
    if n_base == 0 || n_new == 0 {
        return (0.0, 1.0);
    }
    let u = twice_u as f64 / 2.0;
    let (n1, n2) = (n_new as f64, n_base as f64);
    let n = n1 + n2;
    let mean = n1 * n2 / 2.0;
    let sd = (n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0))))
        .max(0.0)
        .sqrt();
    // When every value ties, sd is 0 and U is the mean: z = −0.5/0 = −∞, p = 1.
    let z = (u - mean - 0.5) / sd;
    let p = normal_sf(z);
    (u, if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) })
}

/// `distribution` on raw samples: Mann-Whitney U, one-sided "new is stochastically larger
/// than baseline", normal approximation with tie and continuity corrections, exactly as
/// `scipy.stats.mannwhitneyu(new, base, alternative="greater", method="asymptotic",
/// use_continuity=True)`. Returns (U of `new`, p). NaN samples are ignored (the sketches
/// drop them too); with an empty side the result is (0, 1).
pub fn mann_whitney_samples(base: &[f64], new: &[f64]) -> (f64, f64) {
    let mut all: Vec<(f64, bool)> = base
        .iter()
        .map(|v| (*v, false))
        .chain(new.iter().map(|v| (*v, true)))
        .filter(|(v, _)| !v.is_nan())
        .collect();
    // total_cmp puts -0.0 just before 0.0; grouping by `==` then ties them as scipy does.
    all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut groups: Vec<(u64, u64)> = Vec::new();
    let mut last = f64::NAN;
    for (v, is_new) in all {
        if v != last || groups.is_empty() {
            groups.push((0, 0));
            last = v;
        }
        if let Some(group) = groups.last_mut() {
            if is_new {
                group.1 += 1;
            } else {
                group.0 += 1;
            }
        }
    }
    mann_whitney_groups(groups.into_iter())
}

/// The two sketches' bins aligned by order key, ascending: (baseline count, new count).
fn aligned_bins(base: &Sketch, new: &Sketch) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut a = base.bins().peekable();
    let mut b = new.bins().peekable();
    loop {
        let next = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(&(_, ca)), None) => {
                a.next();
                (ca, 0)
            }
            (None, Some(&(_, cb))) => {
                b.next();
                (0, cb)
            }
            (Some(&(ka, ca)), Some(&(kb, cb))) => match ka.cmp(&kb) {
                std::cmp::Ordering::Less => {
                    a.next();
                    (ca, 0)
                }
                std::cmp::Ordering::Greater => {
                    b.next();
                    (0, cb)
                }
                std::cmp::Ordering::Equal => {
                    a.next();
                    b.next();
                    (ca, cb)
                }
            },
        };
        out.push(next);
    }
    out
}

/// `distribution` over two sketches: [`mann_whitney_samples`] with the values of one bin
/// as ties (bins are 2% wide), so the result is exact for the binned data — equal to the
/// samples' result when no two distinct values share a bin. `baseline` and `current` are
/// the sketches' `quantile` (NaN for an empty sketch, whose p-value is 1), `statistic`
/// is the new samples' U.
pub fn distribution_test(
    base: &Sketch,
    new: &Sketch,
    quantile: f64,
    max_increase: f64,
    min_delta: f64,
) -> TestResult {
    let baseline = base.quantile(quantile).unwrap_or(f64::NAN);
    let current = new.quantile(quantile).unwrap_or(f64::NAN);
    let (u, p) = mann_whitney_groups(aligned_bins(base, new).into_iter());
    TestResult {
        baseline,
        current,
        n_baseline: base.count(),
        n_current: new.count(),
        statistic: u,
        p_value: p,
        threshold: threshold(baseline, max_increase, min_delta).0,
    }
}

/// The significance level of one check: Bonferroni across the deployment's `checks`
/// tested checks, `(1 − confidence) / checks`.
pub fn check_alpha(confidence: f64, checks: usize) -> f64 {
    (1.0 - confidence).clamp(0.0, 1.0) / checks.max(1) as f64
}

/// The information fraction of a look `elapsed` after the switch: the elapsed share of
/// `verify_window`, in `[0, 1]` (1 for an empty window).
pub fn information_fraction(elapsed: Duration, verify_window: Duration) -> f64 {
    if verify_window.is_zero() {
        return 1.0;
    }
    (elapsed.as_secs_f64() / verify_window.as_secs_f64()).clamp(0.0, 1.0)
}

/// Lan-DeMets Pocock-type spending function: the share of `alpha` that may be spent by
/// information fraction `t` in `[0, 1]`: `alpha · ln(1 + (e − 1)·t)` (`t` is clamped to
/// `[0, 1]`; NaN counts as 0).
pub fn pocock_spending(alpha: f64, t: f64) -> f64 {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    alpha * ((std::f64::consts::E - 1.0) * t).ln_1p()
}

/// The nominal significance level of one look: what the spending function allows
/// between the previous look's fraction and this one's (union bound, so valid whatever
/// the looks' correlation). Never negative; 0 when `t ≤ t_prev`. The first look has
/// `t_prev = 0`.
pub fn look_alpha(alpha: f64, t_prev: f64, t: f64) -> f64 {
    let spent = pocock_spending(alpha, t_prev);
    let allowed = pocock_spending(alpha, t);
    if allowed > spent {
        allowed - spent
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::rules::sketch::test_rng::Rng;

    fn assert_close(got: f64, want: f64, rel: f64, what: &str) {
        let err = (got - want).abs();
        assert!(
            err <= rel * want.abs() || (want == 0.0 && err <= rel),
            "{what}: got {got:e}, want {want:e} (error {:e})",
            err / want.abs().max(f64::MIN_POSITIVE)
        );
    }

    /// Reference values from scipy 1.17.1 (numpy 2.4.6):
    /// `scipy.stats.norm.cdf(z)`, `norm.sf(z)`, `norm.ppf(p)`, printed with `repr(float(…))`.
    #[test]
    fn normal_matches_scipy() {
        let cdf = [
            (-8.0, 6.22096057427174e-16),
            (-3.0, 0.0013498980316300933),
            (-1.5, 0.06680720126885807),
            (0.0, 0.5),
            (0.5, 0.6914624612740131),
            (1.96, 0.9750021048517795),
            (3.0, 0.9986501019683699),
        ];
        for (z, want) in cdf {
            assert_close(normal_cdf(z), want, 1e-13, &format!("cdf({z})"));
        }
        let sf = [
            (-2.0, 0.9772498680518208),
            (0.5, 0.3085375387259869),
            (1.0, 0.15865525393145707),
            (3.0, 0.0013498980316300933),
            (5.0, 2.866515718791933e-07),
            (8.0, 6.22096057427174e-16),
            (10.0, 7.61985302416047e-24),
            (20.0, 2.7536241186061556e-89),
            (37.0, 5.7255712225239266e-300),
        ];
        for (z, want) in sf {
            // scipy's own error grows in the far tail (1.1e-13 at 37, against mpmath).
            assert_close(normal_sf(z), want, 2e-13, &format!("sf({z})"));
        }
        // The far tail against mpmath 1.4.1 at 50 digits: `float(mpmath.ncdf(-z))`.
        let exact_tail = [
            (8.0, 6.220960574271784e-16),
            (10.0, 7.619853024160525e-24),
            (20.0, 2.7536241186062337e-89),
            (37.0, 5.725571222524577e-300),
        ];
        for (z, want) in exact_tail {
            assert_close(normal_sf(z), want, 1e-14, &format!("exact sf({z})"));
        }
        let ppf = [
            (1e-300, -37.0470962993612),
            (1e-10, -6.361340902404056),
            (0.001, -3.090232306167813),
            (0.025, -1.9599639845400545),
            (0.3, -0.5244005127080409),
            (0.5, 0.0),
            (0.975, 1.959963984540054),
            (0.999999, 4.753424308817087),
        ];
        for (p, want) in ppf {
            assert_close(normal_quantile(p), want, 1e-13, &format!("ppf({p})"));
        }
    }

    #[test]
    fn normal_edges_and_symmetry() {
        assert!(normal_cdf(f64::NAN).is_nan() && normal_sf(f64::NAN).is_nan());
        assert_eq!(normal_sf(f64::INFINITY), 0.0);
        assert_eq!(normal_sf(f64::NEG_INFINITY), 1.0);
        assert_eq!(normal_cdf(f64::INFINITY), 1.0);
        assert_eq!(normal_sf(50.0), 0.0);
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
        for p in [-0.1, 1.1, f64::NAN] {
            assert!(normal_quantile(p).is_nan());
        }
        // Far tail of the quantile, and a round trip through the smallest normal float.
        assert!(normal_quantile(f64::MIN_POSITIVE) < -37.0);
        assert_close(
            normal_cdf(normal_quantile(1e-307)),
            1e-307,
            1e-12,
            "round trip 1e-307",
        );
        // Both branches of the tail meet at SERIES_LIMIT without a jump.
        let below = normal_sf(SERIES_LIMIT - 1e-12);
        let above = normal_sf(SERIES_LIMIT);
        assert!(below >= above && below - above < 1e-12, "{below} {above}");
    }

    /// Reference values from scipy 1.17.1:
    /// `scipy.stats.mannwhitneyu(new, base, alternative=ALT, method="asymptotic",
    /// use_continuity=True)`, `(statistic, pvalue)`; the statistic is U of `new`.
    #[test]
    fn mann_whitney_matches_scipy() {
        struct Case {
            base: &'static [f64],
            new: &'static [f64],
            u_new: f64,
            p_greater: f64,
            p_less: f64,
        }
        let cases = [
            // No ties.
            Case {
                base: &[1.2, 3.4, 0.7, 5.1, 2.2, 4.8, 1.9],
                new: &[6.3, 2.9, 5.5, 7.1, 4.1, 3.8],
                u_new: 35.0,
                p_greater: 0.02689204443119914,
                p_less: 0.9808406184252932,
            },
            // Ties within and across the samples.
            Case {
                base: &[1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0],
                new: &[3.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 2.0, 7.0],
                u_new: 55.0,
                p_greater: 0.03467522719090861,
                p_less: 0.9722090215103386,
            },
            // Heavy ties: [10]*5+[20]*5 vs [10]*3+[20]*6+[30].
            Case {
                base: &[10.0, 10.0, 10.0, 10.0, 10.0, 20.0, 20.0, 20.0, 20.0, 20.0],
                new: &[10.0, 10.0, 10.0, 20.0, 20.0, 20.0, 20.0, 20.0, 20.0, 30.0],
                u_new: 62.5,
                p_greater: 0.15084979123917397,
                p_less: 0.8684004609193712,
            },
            // The new samples are smaller: "less" is significant.
            Case {
                base: &[5.5, 6.1, 7.3, 8.0, 6.6, 9.2, 5.9, 7.7],
                new: &[4.1, 5.0, 6.0, 3.3, 5.5, 4.4],
                u_new: 2.5,
                p_greater: 0.9977676471643364,
                p_less: 0.003323081160594305,
            },
        ];
        for (i, c) in cases.iter().enumerate() {
            let (u, p) = mann_whitney_samples(c.base, c.new);
            assert_eq!(u, c.u_new, "case {i}");
            assert_close(p, c.p_greater, 1e-12, &format!("case {i} greater"));
            // alternative="less" is "greater" with the roles swapped; U is then the
            // baseline's, n_base·n_new − U_new.
            let (u_base, p_less) = mann_whitney_samples(c.new, c.base);
            assert_eq!(u_base, (c.base.len() * c.new.len()) as f64 - c.u_new);
            assert_close(p_less, c.p_less, 1e-12, &format!("case {i} less"));
        }
    }

    #[test]
    fn mann_whitney_edges() {
        assert_eq!(mann_whitney_samples(&[], &[1.0]), (0.0, 1.0));
        assert_eq!(mann_whitney_samples(&[1.0], &[]), (0.0, 1.0));
        assert_eq!(mann_whitney_samples(&[f64::NAN], &[1.0]), (0.0, 1.0));
        // Everything tied: no evidence (scipy: z = −0.5/0 = −∞, p = 1).
        assert_eq!(mann_whitney_samples(&[2.0; 5], &[2.0; 7]), (17.5, 1.0));
        // -0.0 and 0.0 tie; NaN is ignored; infinities rank at the ends.
        let with_nan = mann_whitney_samples(&[-0.0, 1.0, f64::NAN], &[0.0, f64::INFINITY]);
        assert_eq!(with_nan, mann_whitney_samples(&[0.0, 1.0], &[0.0, 2.0]));
    }

    /// Two-proportion references from statsmodels 0.15.0:
    /// `statsmodels.stats.proportion.test_proportions_2indep(num_new, den_new, num_base,
    /// den_base, compare="diff", method="wald", alternative="larger")`, `(statistic,
    /// pvalue)`, which is `z = (p2 − p1) / √(p1(1 − p1)/n1 + p2(1 − p2)/n2)` (new p2, base
    /// p1) and `scipy.stats.norm.sf(z)`: both gave the same digits.
    #[test]
    fn ratio_test_is_the_wald_test_without_margin() {
        let cases = [
            (
                (30, 1000, 60, 1200),
                2.4132611064030662,
                0.007905244314796693,
            ),
            ((40, 2000, 45, 2000), 0.5482024446868428, 0.2917764518388023),
            ((12, 4000, 3, 500), 0.8426251590998236, 0.19971905783299165),
        ];
        for ((nb, db, nn, dn), z, p) in cases {
            let r = ratio_test(nb, db, nn, dn, 1.0, 0.0);
            assert_close(r.statistic, z, 1e-12, "z");
            assert_close(r.p_value, p, 1e-12, "p");
            assert_eq!(r.baseline, nb as f64 / db as f64);
            assert_eq!(r.current, nn as f64 / dn as f64);
            assert_eq!(r.threshold, r.baseline);
            assert_eq!((r.n_baseline, r.n_current), (db, dn));
        }
    }

    /// With a margin, by hand (the same formula in Python, p from scipy 1.17.1
    /// `norm.sf(z)`): m = max(k·p_b, p_b + d) with slope g = k or 1,
    /// z = (p_n − m) / √(p_n(1 − p_n)/n_n + g²·p_b(1 − p_b)/n_b).
    #[test]
    fn ratio_test_with_margin() {
        // 2% → 4.5%, k = 1.5: m = max(0.03, 0.025) = 0.03, g = 1.5.
        let r = ratio_test(200, 10_000, 90, 2000, 1.5, 0.005);
        assert_close(r.threshold, 0.03, 1e-12, "m");
        assert_close(r.statistic, 2.9475578546806904, 1e-12, "z");
        assert_close(r.p_value, 0.0016014740599668063, 1e-11, "p");
        assert!(r.fails(0.01) && !r.fails(0.001));
        // A zero baseline: the floor min_delta keeps one error from failing…
        let one = ratio_test(0, 5000, 1, 1000, 1.5, 0.005);
        assert_eq!(one.threshold, 0.005);
        assert_close(one.statistic, -4.002001501251095, 1e-12, "z one");
        assert_close(one.p_value, 0.9999685955499594, 1e-12, "p one");
        assert!(!one.fails(0.5));
        // …but not twenty.
        let twenty = ratio_test(0, 5000, 20, 1000, 1.5, 0.005);
        assert_close(twenty.statistic, 3.388154635894692, 1e-12, "z twenty");
        assert_close(twenty.p_value, 0.0003518229075666728, 1e-11, "p twenty");
        assert!(twenty.fails(0.01));
    }

    #[test]
    fn ratio_test_degenerate_inputs() {
        let empty = ratio_test(0, 0, 5, 100, 1.5, 0.005);
        assert!(empty.baseline.is_nan() && empty.p_value == 1.0 && !empty.fails(1.0));
        let no_new = ratio_test(5, 100, 0, 0, 1.5, 0.005);
        assert!(no_new.current.is_nan() && no_new.p_value == 1.0);
        // A threshold of 1 or more cannot be exceeded.
        let high = ratio_test(80, 100, 100, 100, 1.5, 0.005);
        assert_eq!(high.threshold, 1.2000000000000002);
        assert_eq!((high.statistic, high.p_value), (f64::NEG_INFINITY, 1.0));
        // Both variances 0: the sign of the difference decides.
        let zero = ratio_test(0, 100, 0, 100, 1.0, 0.0);
        assert_eq!((zero.statistic, zero.p_value), (0.0, 0.5));
        let all_fail = ratio_test(0, 100, 100, 100, 1.0, 0.0);
        assert_eq!((all_fail.statistic, all_fail.p_value), (f64::INFINITY, 0.0));
        let none = ratio_test(0, 100, 0, 100, 1.0, 0.01);
        assert_eq!((none.statistic, none.p_value), (f64::NEG_INFINITY, 1.0));
        // A numerator larger than its denominator does not make a variance negative.
        assert!(!ratio_test(150, 100, 5, 100, 1.0, 0.0).p_value.is_nan());
    }

    fn sketch_of(values: &[f64]) -> Sketch {
        let mut s = Sketch::new();
        for v in values {
            s.add(*v);
        }
        s
    }

    #[test]
    fn distribution_test_equals_samples_when_bins_separate_values() {
        // Values 1.1^i are 10% apart, so no two distinct values share a 2% bin; repeats
        // make ties.
        let mut rng = Rng(11);
        let mut draw = |lo: i32, hi: i32, n: usize| -> Vec<f64> {
            (0..n)
                .map(|_| 1.1f64.powi(lo + (rng.unit() * f64::from(hi - lo)) as i32))
                .collect()
        };
        for (base, new) in [
            (draw(0, 30, 300), draw(2, 32, 200)),
            (draw(0, 30, 300), draw(0, 30, 250)),
            (draw(-10, 40, 40), draw(-12, 30, 35)),
        ] {
            let (u, p) = mann_whitney_samples(&base, &new);
            let (sb, sn) = (sketch_of(&base), sketch_of(&new));
            let r = distribution_test(&sb, &sn, 0.95, 1.25, 5.0);
            assert_eq!(r.statistic, u);
            assert!((r.p_value - p).abs() <= 1e-9, "{} vs {p}", r.p_value);
            assert_eq!(r.baseline, sb.quantile(0.95).unwrap());
            assert_eq!(r.current, sn.quantile(0.95).unwrap());
            assert_eq!(r.threshold, (1.25 * r.baseline).max(r.baseline + 5.0));
            assert_eq!(
                (r.n_baseline, r.n_current),
                (base.len() as u64, new.len() as u64)
            );
        }
        // Mixed signs, zeros and infinities are ranked in the same order.
        let base = [-3.0, -1.0, 0.0, 0.0, 1.0, 2.0, f64::NEG_INFINITY];
        let new = [-1.0, 0.0, 2.0, 4.0, 8.0, f64::INFINITY];
        let r = distribution_test(&sketch_of(&base), &sketch_of(&new), 0.5, 1.0, 0.0);
        let (u, p) = mann_whitney_samples(&base, &new);
        assert_eq!((r.statistic, r.p_value), (u, p));
    }

    #[test]
    fn distribution_test_is_close_to_samples_with_binning() {
        // Continuous latencies: a bin then holds several distinct values, which become
        // ties; the p-value moves only a little.
        let mut rng = Rng(12);
        let mut latencies = |mu: f64, n: usize| -> Vec<f64> {
            (0..n).map(|_| (mu + 0.6 * rng.normal()).exp()).collect()
        };
        for (base, new) in [
            (latencies(3.0, 2000), latencies(3.05, 800)),
            (latencies(3.0, 2000), latencies(3.0, 800)),
            (latencies(3.0, 500), latencies(3.2, 300)),
        ] {
            let (u, p) = mann_whitney_samples(&base, &new);
            let r = distribution_test(&sketch_of(&base), &sketch_of(&new), 0.95, 1.25, 5.0);
            let pairs = (base.len() * new.len()) as f64;
            assert!(
                (r.statistic - u).abs() <= 0.01 * pairs,
                "U {} vs {u}",
                r.statistic
            );
            assert!((r.p_value - p).abs() <= 0.01, "p {} vs {p}", r.p_value);
        }
        // Empty sketches: no evidence.
        let empty = distribution_test(&Sketch::new(), &sketch_of(&[1.0]), 0.5, 1.25, 5.0);
        assert!(empty.baseline.is_nan() && empty.p_value == 1.0 && !empty.fails(1.0));
    }

    #[test]
    fn test_result_serde_round_trip() {
        let r = ratio_test(0, 100, 100, 100, 1.0, 0.0);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"statistic\":\"+Inf\""), "{json}");
        assert_eq!(serde_json::from_str::<TestResult>(&json).unwrap(), r);
        let empty = ratio_test(0, 0, 0, 0, 1.5, 0.005);
        let back: TestResult =
            serde_json::from_str(&serde_json::to_string(&empty).unwrap()).unwrap();
        assert!(back.baseline.is_nan() && back.statistic.is_nan() && back.p_value == 1.0);
    }

    #[test]
    fn spending_and_looks() {
        let alpha = 0.01;
        assert_eq!(pocock_spending(alpha, 0.0), 0.0);
        assert_close(pocock_spending(alpha, 1.0), alpha, 1e-15, "spend(1)");
        assert_eq!(pocock_spending(alpha, 2.0), pocock_spending(alpha, 1.0));
        assert_eq!(pocock_spending(alpha, f64::NAN), 0.0);
        // Pocock-type spends early: half the fraction is more than half the alpha.
        assert!(pocock_spending(alpha, 0.5) > 0.6 * alpha);
        assert_eq!(look_alpha(alpha, 0.5, 0.5), 0.0);
        assert_eq!(look_alpha(alpha, 0.6, 0.5), 0.0);
        assert_close(look_alpha(alpha, 0.0, 1.0), alpha, 1e-15, "single look");
        assert_close(check_alpha(0.99, 4), 0.0025, 1e-12, "Bonferroni");
        assert_close(check_alpha(0.99, 0), 0.01, 1e-12, "no checks");
        let window = Duration::from_secs(600);
        assert_eq!(information_fraction(Duration::from_secs(150), window), 0.25);
        assert_eq!(information_fraction(Duration::from_secs(900), window), 1.0);
        assert_eq!(information_fraction(Duration::ZERO, Duration::ZERO), 1.0);
    }

    /// What one simulated deployment's check did.
    #[derive(Default)]
    struct Outcome {
        /// Some look failed it (`TestResult::fails`).
        failed: bool,
        /// Some look's p-value was below the look's level.
        significant: bool,
        /// The last look alone, as a fixed-sample test at the full `alpha`.
        last_significant: bool,
    }

    /// The sequential procedure of one check: looks at t = k/40, k = 1..=40, each at
    /// level `look_alpha(alpha, t_prev, t)`, skipping looks below `min_samples` (the
    /// verifier calls them inconclusive; their share of alpha is not used).
    fn sequential(alpha: f64, mut look: impl FnMut(usize) -> Option<TestResult>) -> Outcome {
        const LOOKS: usize = 40;
        let mut out = Outcome::default();
        let mut t_prev = 0.0;
        for k in 1..=LOOKS {
            let t = k as f64 / LOOKS as f64;
            if let Some(r) = look(k) {
                let level = look_alpha(alpha, t_prev, t);
                out.failed |= r.fails(level);
                out.significant |= r.p_value < level;
                out.last_significant = r.p_value < alpha;
                t_prev = t;
            }
        }
        out
    }

    /// The false-fail rate of the sequential procedure is at most alpha (plus 3 standard
    /// errors of simulation noise), while the same test at one fixed look rejects at
    /// about alpha — so the simulation would see a miscalibrated test.
    fn assert_keeps_alpha(outcomes: &[Outcome], alpha: f64) {
        let runs = outcomes.len() as f64;
        let rate = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count() as f64 / runs;
        let noise = 3.0 * (alpha * (1.0 - alpha) / runs).sqrt();
        let sequential = rate(|o| o.significant);
        assert!(
            sequential <= alpha + noise,
            "false-fail rate {sequential} > {alpha}"
        );
        assert!(rate(|o| o.failed) <= sequential);
        let fixed = rate(|o| o.last_significant);
        assert!(
            (fixed - alpha).abs() <= noise,
            "one look rejects {fixed}, not {alpha}"
        );
    }

    /// Under H0 at its boundary (equal ratios, max_increase 1, min_delta 0) the
    /// deployment's false-fail rate over 40 looks stays at most alpha.
    #[test]
    fn sequential_ratio_test_keeps_alpha_under_h0() {
        let alpha = check_alpha(0.95, 1);
        let (runs, per_look, ratio, min_samples) = (1000, 100u64, 0.05, 200u64);
        let mut rng = Rng(21);
        let outcomes: Vec<Outcome> = (0..runs)
            .map(|_| {
                let den_base = 4000u64;
                let num_base = (0..den_base).filter(|_| rng.unit() < ratio).count() as u64;
                let mut num_new = 0u64;
                sequential(alpha, |k| {
                    num_new += (0..per_look).filter(|_| rng.unit() < ratio).count() as u64;
                    let den_new = per_look * k as u64;
                    (den_new >= min_samples)
                        .then(|| ratio_test(num_base, den_base, num_new, den_new, 1.0, 0.0))
                })
            })
            .collect();
        assert_keeps_alpha(&outcomes, alpha);
    }

    /// Under H0 (the same latency distribution) the Mann-Whitney sequential procedure on
    /// sketches stays at most alpha over 40 looks.
    #[test]
    fn sequential_distribution_test_keeps_alpha_under_h0() {
        let alpha = check_alpha(0.95, 1);
        let (runs, per_look, min_samples) = (400, 25, 50u64);
        let mut rng = Rng(22);
        let outcomes: Vec<Outcome> = (0..runs)
            .map(|_| {
                let mut base = Sketch::new();
                for _ in 0..1000 {
                    base.add((3.0 + 0.6 * rng.normal()).exp());
                }
                let mut new = Sketch::new();
                sequential(alpha, |_| {
                    for _ in 0..per_look {
                        new.add((3.0 + 0.6 * rng.normal()).exp());
                    }
                    (new.count() >= min_samples)
                        .then(|| distribution_test(&base, &new, 0.95, 1.0, 0.0))
                })
            })
            .collect();
        assert_keeps_alpha(&outcomes, alpha);
    }

    /// Samples with ties: latencies, and small integers that repeat.
    fn sample() -> impl Strategy<Value = f64> {
        prop_oneof![0.0f64..100.0, (0u8..5).prop_map(f64::from)]
    }

    proptest! {
        #[test]
        fn ratio_p_values_are_probabilities(
            den_base in 0u64..100_000,
            base_share in 0.0f64..=1.0,
            den_new in 0u64..100_000,
            new_share in 0.0f64..=1.0,
            max_increase in 1.0f64..3.0,
            min_delta in 0.0f64..0.05,
        ) {
            let num_base = (den_base as f64 * base_share) as u64;
            let num_new = (den_new as f64 * new_share) as u64;
            let r = ratio_test(num_base, den_base, num_new, den_new, max_increase, min_delta);
            prop_assert!((0.0..=1.0).contains(&r.p_value), "{:?}", r);
        }

        #[test]
        fn ratio_p_value_decreases_as_num_new_grows(
            den_base in 1u64..20_000,
            base_share in 0.0f64..=1.0,
            den_new in 1u64..5_000,
            a in 0.0f64..=1.0,
            b in 0.0f64..=1.0,
            max_increase in 1.0f64..3.0,
            min_delta in 0.0f64..0.05,
        ) {
            let num_base = (den_base as f64 * base_share) as u64;
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let (lo, hi) = ((den_new as f64 * lo) as u64, (den_new as f64 * hi) as u64);
            let p = |num_new| {
                ratio_test(num_base, den_base, num_new, den_new, max_increase, min_delta).p_value
            };
            // Non-increasing, up to float rounding.
            prop_assert!(p(hi) <= p(lo) + 1e-12, "p({}) = {} > p({}) = {}", hi, p(hi), lo, p(lo));
            prop_assert!(lo + 1 > den_new || p(lo + 1) <= p(lo) + 1e-12);
        }

        #[test]
        fn mann_whitney_p_values_are_probabilities(
            base in proptest::collection::vec(sample(), 0..60),
            new in proptest::collection::vec(sample(), 0..60),
        ) {
            let (u, p) = mann_whitney_samples(&base, &new);
            prop_assert!((0.0..=1.0).contains(&p));
            prop_assert!((0.0..=(base.len() * new.len()) as f64).contains(&u));
            let r = distribution_test(&sketch_of(&base), &sketch_of(&new), 0.9, 1.25, 5.0);
            prop_assert!((0.0..=1.0).contains(&r.p_value));
        }

        #[test]
        fn sketches_equal_samples_when_bins_separate_values(
            base in proptest::collection::vec((-20i32..40).prop_map(|i| 1.1f64.powi(i)), 1..80),
            new in proptest::collection::vec((-20i32..40).prop_map(|i| 1.1f64.powi(i)), 1..80),
        ) {
            // 1.1^i are 10% apart: one value per 2% bin, so binning loses nothing.
            let (u, p) = mann_whitney_samples(&base, &new);
            let r = distribution_test(&sketch_of(&base), &sketch_of(&new), 0.9, 1.25, 5.0);
            prop_assert_eq!(r.statistic, u);
            prop_assert!((r.p_value - p).abs() <= 1e-9, "{} vs {}", r.p_value, p);
        }

        #[test]
        fn looks_never_spend_more_than_alpha(
            alpha in 0.0001f64..0.2,
            steps in proptest::collection::vec(0.0f64..0.3, 1..60),
        ) {
            // An increasing sequence of fractions, possibly past 1 and with repeats.
            let mut t = 0.0;
            let mut t_prev = 0.0;
            let mut total = 0.0;
            for step in steps {
                t += step;
                let level = look_alpha(alpha, t_prev, t);
                prop_assert!(level >= 0.0);
                total += level;
                t_prev = t;
            }
            // Up to the rounding of the telescoping sum.
            let slack = 1e-14 * alpha;
            let spent = pocock_spending(alpha, t);
            prop_assert!(total <= spent + slack, "{} > {}", total, spent);
            prop_assert!(total <= alpha + slack);
        }

        #[test]
        fn quantile_inverts_cdf(z in -37.0f64..5.0) {
            let p = normal_cdf(z);
            let back = normal_quantile(p);
            prop_assert!((back - z).abs() <= 1e-9 * z.abs().max(1.0), "{} -> {} -> {}", z, p, back);
            prop_assert!(((normal_cdf(z) + normal_sf(z)) - 1.0).abs() <= 1e-15);
        }
    }
}
