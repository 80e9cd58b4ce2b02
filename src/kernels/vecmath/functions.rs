//! The element functions, written once for `f32` and `f64` (through [`Real`]), branch-free so
//! that a loop over a slice vectorises: every regime is computed and the right one selected.
//!
//! `FMA` says whether `a·b + c` may use the fused instruction: true inside the AVX2+FMA and AVX-512
//! contexts, false on the baseline x86-64 path, where `mul_add` would be a call into software
//! emulation. Both settings meet the same accuracy bounds (the tests run both).
//!
//! Tricks used throughout:
//! - arguments of e^x that need more than one float of precision (−x², −x²/2, the argument of
//!   GELU's tanh approximation, β·x) are carried as an unevaluated sum `hi + lo`
//!   ([`two_prod`]), because e^x turns an absolute error δ of x into a relative error δ of the
//!   result, and |x| reaches 10⁴ ulp-scales there;
//! - [`exp_parts`] returns e^x unrounded, as (hi + lo)·s₁·s₂ with s₁·s₂ = 2^k ([`ExpParts`]), so
//!   that a factor can be folded in with one rounding and a result in the subnormal range is
//!   rounded once, at the last multiplication.

use super::real::{Gaussian, Real};

/// a·b + c: fused (one rounding) when `FMA`, else a multiplication and an addition.
#[inline(always)]
fn fma<T: Real, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.fused_mul_add(b, c)
    } else {
        a * b + c
    }
}

/// a·b + c with about one rounding on both paths: fused when `FMA`, else with the product's
/// rounding error added back (Dekker's product; for the few final steps where the baseline path
/// would otherwise lose an ulp).
#[inline(always)]
fn fma_accurate<T: Real, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.fused_mul_add(b, c)
    } else {
        let p = a * b;
        (p + c) + T::product_error(a, b, p)
    }
}

/// Σ cᵢ xⁱ by Horner's rule (`coeffs` lowest degree first, never empty).
#[inline(always)]
fn horner<T: Real, const FMA: bool>(x: T, coeffs: &[T]) -> T {
    // The coefficient tables are non-empty constants, so the index is in bounds.
    let mut acc = coeffs[coeffs.len() - 1];
    for &c in coeffs[..coeffs.len() - 1].iter().rev() {
        acc = fma::<T, FMA>(acc, x, c);
    }
    acc
}

/// a·b = hi + lo exactly.
#[inline(always)]
fn two_prod<T: Real, const FMA: bool>(a: T, b: T) -> (T, T) {
    let p = a * b;
    let error = if FMA {
        a.fused_mul_add(b, -p)
    } else {
        T::product_error(a, b, p)
    };
    (p, error)
}

/// a + b = hi + lo exactly (Knuth's TwoSum: no condition on the magnitudes).
#[inline(always)]
fn two_sum<T: Real>(a: T, b: T) -> (T, T) {
    let s = a + b;
    let b_virtual = s - a;
    (s, (a - (s - b_virtual)) + (b - b_virtual))
}

/// `x` clamped to [lo, hi]; a NaN stays NaN.
#[inline(always)]
fn clamp<T: Real>(x: T, lo: T, hi: T) -> T {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

/// `x` clamped to at most `hi`; a NaN stays NaN.
#[inline(always)]
fn at_most<T: Real>(x: T, hi: T) -> T {
    if x > hi { hi } else { x }
}

/// e^x before its last rounding: (hi + lo)·s₁·s₂, with eʳ = hi + lo (hi = 1 + r rounded, lo the
/// rest) and s₁·s₂ = 2^k, each a normal power of two.
#[derive(Clone, Copy)]
struct ExpParts<T> {
    hi: T,
    lo: T,
    s1: T,
    s2: T,
}

impl<T: Real> ExpParts<T> {
    /// e^x, rounded once (twice in the subnormal range, the second time by the scaling).
    #[inline(always)]
    fn value(self) -> T {
        (self.hi + self.lo) * self.s1 * self.s2
    }

    /// e^x as an unevaluated sum hi + lo (both scaled; exact unless subnormal).
    #[inline(always)]
    fn two_float(self) -> (T, T) {
        let sum = self.hi + self.lo;
        let rest = (self.hi - sum) + self.lo;
        (sum * self.s1 * self.s2, rest * self.s1 * self.s2)
    }

    /// factor·e^x, rounded once before the scaling.
    #[inline(always)]
    fn times<const FMA: bool>(self, factor: T) -> T {
        fma_accurate::<T, FMA>(factor, self.hi, factor * self.lo) * self.s1 * self.s2
    }

    /// (f + f_lo)·e^x for a two-float factor, rounded once before the scaling.
    #[inline(always)]
    fn times_two_float<const FMA: bool>(self, f: T, f_lo: T) -> T {
        let low = fma::<T, FMA>(f, self.lo, f_lo * self.hi);
        fma_accurate::<T, FMA>(f, self.hi, low) * self.s1 * self.s2
    }
}

/// e^(hi + lo) for |lo| ≪ 1, unrounded ([`ExpParts`]).
///
/// Cody–Waite reduction: k = round(hi/ln 2), r = hi − k·ln 2 + lo (k·LN2_HI and its subtraction
/// are exact), |r| ≤ ln2/2 + |lo|; then eʳ = 1 + r + r²·P(r), with 1 + r split exactly into
/// hi + lo (so the only rounding of eʳ is the caller's last one), and 2^k = s₁·s₂.
#[inline(always)]
fn exp_parts<T: Real, const FMA: bool>(hi: T, lo: T) -> ExpParts<T> {
    let hi = clamp(hi, T::EXP_ARG_MIN, T::EXP_ARG_MAX);
    let (k, s1, s2) = T::round_exp2(hi * T::LOG2_E);
    let r = fma::<T, FMA>(k, -T::LN2_HI, hi);
    let r = fma::<T, FMA>(k, -T::LN2_LO, r) + lo;
    let one_plus_r = T::ONE + r;
    let lo = fma::<T, FMA>(
        r * r,
        horner::<T, FMA>(r, T::EXP),
        (T::ONE - one_plus_r) + r,
    );
    ExpParts {
        hi: one_plus_r,
        lo,
        s1,
        s2,
    }
}

/// factor·e^(hi + lo), with one rounding for the factor and one into the subnormal range.
/// For hi above EXP_ARG_MAX the result is factor·e^EXP_ARG_MAX (∞ for factor ≥ 1).
#[inline(always)]
fn exp_scaled<T: Real, const FMA: bool>(hi: T, lo: T, factor: T) -> T {
    exp_parts::<T, FMA>(hi, lo).times::<FMA>(factor)
}

/// eˣ.
#[inline(always)]
pub(crate) fn exp<T: Real, const FMA: bool>(x: T) -> T {
    exp_parts::<T, FMA>(x, T::ZERO).value()
}

/// k·ln 2 + ln(1 + f) + c for |f| ≤ √2 − 1 and a small correction c (FreeBSD's `log` scheme):
/// with s = f/(2 + f), ln(1 + f) = 2s + s·R(s²) = f − (f²/2 − s·(f²/2 + R)).
#[inline(always)]
fn log_reduced<T: Real, const FMA: bool>(k: T, f: T, c: T) -> T {
    let s = f / (T::TWO + f);
    let z = s * s;
    let r = z * horner::<T, FMA>(z, T::LOG);
    let half_f2 = T::HALF * f * f;
    let small = fma::<T, FMA>(s, half_f2 + r, fma::<T, FMA>(k, T::LN2_LO, c));
    fma::<T, FMA>(k, T::LN2_HI, -((half_f2 - small) - f))
}

/// ln x: −∞ at ±0, NaN below 0, +∞ at +∞.
#[inline(always)]
pub(crate) fn log<T: Real, const FMA: bool>(x: T) -> T {
    let (k, f) = T::split_log(x);
    let y = log_reduced::<T, FMA>(k, f, T::ZERO);
    let y = if x == T::INFINITY { x } else { y };
    let y = if x == T::ZERO { -T::INFINITY } else { y };
    // Negative: NaN; a NaN input propagates itself (it fails both comparisons).
    if x < T::ZERO {
        T::NAN
    } else if x >= T::ZERO {
        y
    } else {
        x
    }
}

/// ln(1 + u) for u = u_hi + u_lo in [0, 1]: 1 + u = m + δ exactly (m rounded), ln(1 + u) =
/// ln m + δ/m.
#[inline(always)]
fn log1p_unit<T: Real, const FMA: bool>(u: T, u_lo: T) -> T {
    let m = T::ONE + u;
    let delta = (u - (m - T::ONE)) + u_lo;
    let (k, f) = T::split_log(m);
    // δ/m with 1/m from its chord on [1, 2] (exact at m = 1, where δ/m is the whole result, and
    // within 12% elsewhere, where δ/m is below an ulp of it): no second division.
    let inv_m = fma::<T, FMA>(-T::HALF, m, T::ONE + T::HALF);
    log_reduced::<T, FMA>(k, f, delta * inv_m)
}

/// tanh x: x + x³·P(x²) for |x| < 0.625, else sign(x)·(1 − 2/(e^(2|x|) + 1)).
#[inline(always)]
pub(crate) fn tanh<T: Real, const FMA: bool>(x: T) -> T {
    let a = x.abs();
    let z = x * x;
    // copysign: x + x³·P(x²) would turn −0 into +0.
    let small = fma::<T, FMA>(x * z, horner::<T, FMA>(z, T::TANH), x).copysign(x);
    let e = exp::<T, FMA>(T::TWO * at_most(a, T::TANH_SATURATE));
    let large = (T::ONE - T::TWO / (e + T::ONE)).copysign(x);
    if a < T::TANH_POLY_LIMIT { small } else { large }
}

/// σ(x) = 1/(1 + e⁻ˣ), from e = e^(−|x|) ≤ 1 (nothing overflows): see [`sigmoid_from_exp_parts`].
#[inline(always)]
pub(crate) fn sigmoid<T: Real, const FMA: bool>(x: T) -> T {
    sigmoid_from_exp_parts::<T, FMA>(x, exp_parts::<T, FMA>(-x.abs(), T::ZERO))
}

/// σ(t) from the parts of e = e^(−|t|): with d + d_lo = 1 + e exactly and r + r_lo = 1/(d + d_lo)
/// (r rounded, r_lo from the exact residual 1 − r·d), σ(|t|) = r + r_lo and σ(−|t|) =
/// (r + r_lo)·e with the factor folded into the exponential: each result is rounded once (a
/// rounded 1/d would cost up to an ulp where σ lands in a finer binade than 1/d), and a tiny
/// result is not flushed.
#[inline(always)]
fn sigmoid_from_exp_parts<T: Real, const FMA: bool>(t: T, parts: ExpParts<T>) -> T {
    let e = parts.value();
    let d = T::ONE + e;
    let d_lo = (T::ONE - d) + e;
    let r = T::ONE / d;
    let r_lo = r * (fma_accurate::<T, FMA>(-r, d, T::ONE) - r * d_lo);
    if t >= T::ZERO {
        r + r_lo
    } else {
        parts.times_two_float::<FMA>(r, r_lo)
    }
}

/// erf for f32, natively: x + x·P(x²) below |x| = 1; above, 1 − e^(−x²)·erfcx(|x|) with a
/// short erfcx polynomial in 1/(|x| + 2) fitted on [0.95, 4] (erf rounds to 1 beyond 3.92), x² a
/// two-float sum. erf damps the errors of erfc by erfc/erf ≤ 0.19, so no compensated steps are
/// needed (unlike gelu, whose left tail is erfc itself).
#[inline(always)]
pub(crate) fn erf_f32<const FMA: bool>(x: f32) -> f32 {
    use super::coefficients::f32 as c;
    let small = fma::<f32, FMA>(x, horner::<f32, FMA>(x * x, &c::ERF), x);
    let a = clamp(x.abs(), c::ERF_POLY_LIMIT, c::ERFCX_MAX);
    let (a2, a2_lo) = two_prod::<f32, FMA>(a, a);
    let w = 1.0 / (a + c::ERFCX_K) - c::ERFCX_START;
    let erfcx =
        fma::<f32, FMA>(w, horner::<f32, FMA>(w, &c::ERFCX[1..]), c::ERFCX_C0_LO) + c::ERFCX[0];
    let erfc = exp_parts::<f32, FMA>(-a2, -a2_lo).times::<FMA>(erfcx);
    let large = (1.0 - erfc).copysign(x);
    if x.abs() < c::ERF_POLY_LIMIT {
        small
    } else {
        large
    }
}

// ---------------------------------------------------------------------------------------------
// The erf family, in native precision (used for f64; f32 evaluates it in f64, see `wide`).

/// erfcx(a) = e^(a²)·erfc(a) for 0 ≤ a ≤ ERFCX_MAX, as a two-float sum hi + lo: a polynomial P
/// in w = 1/(a + k) − start, expanded at the large-a end where every term is positive.
///
/// Two effects would each cost ulps in plain arithmetic:
/// - the rounding of w: for small a, |d ln P/d ln w| reaches 1.13·k, so w is carried as w + w_lo
///   and the low part enters to first order, P′(w)·w_lo, with P′ from the differential equation
///   erfcx′(a) = 2a·erfcx(a) − 2/√π and dw/da = −1/(a + k)²;
/// - the roundings of Horner's rule: where P is far from its constant term (small a), the last
///   steps each pass almost their whole rounding error on, so the last two steps are two-float.
#[inline(always)]
fn erfcx<T: Gaussian, const FMA: bool>(a: T) -> (T, T) {
    let (d, d_lo) = two_sum(a, T::ERFCX_K);
    let u = T::ONE / d;
    // 1/(d + d_lo) = u·(1 + ρ), ρ = 1 − u·d − u·d_lo (1 − u·d formed exactly).
    let (ud, ud_err) = two_prod::<T, FMA>(u, d);
    let u_lo = u * (((T::ONE - ud) - ud_err) - u * d_lo);
    let w = u - T::ERFCX_START;
    // u ≥ start, so the error of the subtraction is exact (Fast2Sum).
    let w_lo = ((u - w) - T::ERFCX_START) + u_lo;
    let tail = horner::<T, FMA>(w, &T::ERFCX[2..]);
    // c₁ + w·tail, then c₀ + w·(that), in two-float arithmetic.
    let (m, m_lo) = two_prod::<T, FMA>(w, tail);
    let (s1, s1_lo) = two_sum(T::ERFCX[1], m);
    let s1_lo = s1_lo + m_lo;
    let (n, n_lo) = two_prod::<T, FMA>(w, s1);
    let n_lo = fma::<T, FMA>(w, s1_lo, n_lo);
    let (p, p_lo) = two_sum(T::ERFCX[0], n);
    let slope = (T::FRAC_2_SQRT_PI - T::TWO * a * p) * (d * d);
    let p_lo = p_lo + fma::<T, FMA>(slope, w_lo, n_lo + T::ERFCX_C0_LO);
    (p, p_lo)
}

/// erf x: x + x·P(x²) for |x| < 0.75, else sign(x)·(1 − e^(−x²)·erfcx(|x|)) with x² as a
/// two-float sum.
#[inline(always)]
pub(crate) fn erf<T: Gaussian, const FMA: bool>(x: T) -> T {
    let z = x * x;
    let small = fma::<T, FMA>(x, horner::<T, FMA>(z, T::ERF), x);
    let a = at_most(x.abs(), T::ERFCX_MAX);
    let (a2, a2_lo) = two_prod::<T, FMA>(a, a);
    let (p, p_lo) = erfcx::<T, FMA>(a);
    let erfc = exp_parts::<T, FMA>(-a2, -a2_lo).times_two_float::<FMA>(p, p_lo);
    let large = (T::ONE - erfc).copysign(x);
    if x.abs() < T::ERF_POLY_LIMIT {
        small
    } else {
        large
    }
}

/// d/dx erf x = 2/√π·e^(−x²), x² as a two-float sum.
#[inline(always)]
pub(crate) fn erf_derivative<T: Gaussian, const FMA: bool>(x: T) -> T {
    let a = at_most(x.abs(), T::ERFCX_MAX);
    let (a2, a2_lo) = two_prod::<T, FMA>(a, a);
    exp_scaled::<T, FMA>(-a2, -a2_lo, T::FRAC_2_SQRT_PI)
}

/// x clamped to ±GELU_MAX, e^(−x²/2) as exp parts (x²/2 exact as a two-float sum), and
/// erfcx(|x|/√2) as a two-float sum: with them Φ(x) = ½·e^(−x²/2)·erfcx(|x|/√2) for x ≤ 0 and 1
/// minus that above.
#[inline(always)]
fn gaussian_tail<T: Gaussian, const FMA: bool>(x: T) -> (T, ExpParts<T>, (T, T)) {
    let x = clamp(x, -T::GELU_MAX, T::GELU_MAX);
    let (x2, x2_lo) = two_prod::<T, FMA>(x, x);
    let parts = exp_parts::<T, FMA>(-T::HALF * x2, -T::HALF * x2_lo);
    (x, parts, erfcx::<T, FMA>(x.abs() * T::FRAC_1_SQRT_2))
}

/// GELU, x·Φ(x) = max(x, 0) − ½|x|·e^(−x²/2)·erfcx(|x|/√2) (the same formula on both sides
/// of 0: for x ≥ 0, x·(1 − ½erfc) and for x < 0, x·½erfc(−x/√2)).
#[inline(always)]
pub(crate) fn gelu<T: Gaussian, const FMA: bool>(x: T) -> T {
    let (xc, parts, (p, p_lo)) = gaussian_tail::<T, FMA>(x);
    let factor = -T::HALF * xc.abs();
    let (f, f_lo) = two_prod::<T, FMA>(factor, p);
    let tail = parts.times_two_float::<FMA>(f, fma::<T, FMA>(factor, p_lo, f_lo));
    // −0 rather than +0 on the left, as PyTorch's x·½(1 + erf(x/√2)) gives for x ≤ −0.
    let base = if x >= T::ZERO { x } else { T::NEG_ZERO };
    // x·Φ(x) has the sign of x, −0 included.
    (base + tail).copysign(x)
}

/// d/dx x·Φ(x) = Φ(x) + x·φ(x) = [x ≥ 0] + e^(−x²/2)·(x/√(2π) ∓ ½·erfcx(|x|/√2)).
#[inline(always)]
pub(crate) fn gelu_derivative<T: Gaussian, const FMA: bool>(x: T) -> T {
    let (xc, parts, (p, p_lo)) = gaussian_tail::<T, FMA>(x);
    let positive = x >= T::ZERO;
    let (half_r, half_r_lo) = if positive {
        (-T::HALF * p, -T::HALF * p_lo)
    } else {
        (T::HALF * p, T::HALF * p_lo)
    };
    let (g, g_lo) = two_prod::<T, FMA>(xc, T::FRAC_1_SQRT_2PI);
    let (f, f_lo) = two_sum(g, half_r);
    let tail = parts.times_two_float::<FMA>(f, f_lo + (g_lo + half_r_lo));
    let base = if positive { T::ONE } else { T::ZERO };
    base + tail
}

/// 2u = 2·√(2/π)·(x + κx³) as a two-float sum (x within ±GELU_TANH_MAX).
#[inline(always)]
fn gelu_tanh_argument<T: Gaussian, const FMA: bool>(x: T) -> (T, T) {
    let (x2, x2_lo) = two_prod::<T, FMA>(x, x);
    // κx²
    let (s, s_lo) = two_prod::<T, FMA>(T::KAPPA_HI, x2);
    let s_lo = s_lo + fma::<T, FMA>(T::KAPPA_HI, x2_lo, T::KAPPA_LO * x2);
    // 1 + κx²
    let (v, v_lo) = two_sum(T::ONE, s);
    let v_lo = v_lo + s_lo;
    // x·(1 + κx²)
    let (w, w_lo) = two_prod::<T, FMA>(x, v);
    let w_lo = fma::<T, FMA>(x, v_lo, w_lo);
    // 2·√(2/π)·x·(1 + κx²)
    let (z, z_lo) = two_prod::<T, FMA>(T::GELU_TANH_C_HI, w);
    let z_lo = z_lo + fma::<T, FMA>(T::GELU_TANH_C_HI, w_lo, T::GELU_TANH_C_LO * w);
    (z, z_lo)
}

/// e^(−|2u|) as exp parts, with x clamped to ±GELU_TANH_MAX.
#[inline(always)]
fn gelu_tanh_exp<T: Gaussian, const FMA: bool>(x: T) -> (T, ExpParts<T>) {
    let x = clamp(x, -T::GELU_TANH_MAX, T::GELU_TANH_MAX);
    let (z, z_lo) = gelu_tanh_argument::<T, FMA>(x);
    // −|z + z_lo|: z_lo flips with z.
    let minus_abs_lo = if z < T::ZERO { z_lo } else { -z_lo };
    (x, exp_parts::<T, FMA>(-z.abs(), minus_abs_lo))
}

/// GELU's tanh approximation, ½x·(1 + tanh(√(2/π)·(x + κx³))) = x·σ(2u): with e = e^(−|2u|),
/// x/(1 + e) for x ≥ 0 and x·e/(1 + e) below (never 1 + tanh, which cancels for x < 0). 1 + e is
/// a two-float sum d + d_lo, applied to first order as in [`sigmoid`].
#[inline(always)]
pub(crate) fn gelu_tanh<T: Gaussian, const FMA: bool>(x: T) -> T {
    let (xc, parts) = gelu_tanh_exp::<T, FMA>(x);
    let e = parts.value();
    let d = T::ONE + e;
    let d_lo = (T::ONE - d) + e;
    let numerator = if x >= T::ZERO {
        x
    } else {
        parts.times::<FMA>(xc)
    };
    let y = numerator / d;
    // 1/d to ~12% (d is in [1, 2]) is plenty for a correction of relative size 2⁻⁵³.
    let reciprocal = fma::<T, FMA>(-T::HALF, d, T::HALF + T::ONE);
    // x·σ(2u) has the sign of x, −0 included; beyond GELU_TANH_MAX it is x (∞ included).
    let y = (y - y * (d_lo * reciprocal)).copysign(x);
    if x > T::GELU_TANH_MAX { x } else { y }
}

/// d/dx x·σ(2u) = σ(2u) + x·2u′·σ(2u)·(1 − σ(2u)), 2u′ = 2·√(2/π)·(1 + 3κx²). With e and
/// d = 1 + e: (d + x·2u′·e)/d² for x ≥ 0 and e·(d + x·2u′)/d² below (e folded into the
/// exponential), each numerator one fused multiply-add.
#[inline(always)]
pub(crate) fn gelu_tanh_derivative<T: Gaussian, const FMA: bool>(x: T) -> T {
    let (xc, parts) = gelu_tanh_exp::<T, FMA>(x);
    let e = parts.value();
    let d = T::ONE + e;
    let (x2, x2_lo) = two_prod::<T, FMA>(xc, xc);
    let slope = fma::<T, FMA>(
        T::GELU_TANH_C3K,
        x2,
        fma::<T, FMA>(T::GELU_TANH_C3K, x2_lo, T::GELU_TANH_C_HI),
    );
    let positive = x >= T::ZERO;
    let (a, b) = if positive {
        (xc * slope, e)
    } else {
        (xc, slope)
    };
    // d and d² as two-float sums: their roundings (relative 2⁻⁵³ of a number near 1) would
    // otherwise cost up to 2 ulps of the quotient.
    let d_lo = (T::ONE - d) + e;
    let (dd, dd_lo) = two_prod::<T, FMA>(d, d);
    let dd_lo = fma::<T, FMA>(T::TWO * d, d_lo, dd_lo);
    let factor = (fma_accurate::<T, FMA>(a, b, d) + d_lo) / dd;
    // factor·(1 − dd_lo/dd), with 1/dd to ~3% (a Newton step from the chord of 1/d on [1, 2]).
    let r = fma::<T, FMA>(-T::HALF, d, T::HALF + T::ONE);
    let r = r * fma::<T, FMA>(-d, r, T::TWO);
    let factor = fma::<T, FMA>(-factor, dd_lo * (r * r), factor);
    if positive {
        factor
    } else {
        parts.times::<FMA>(factor)
    }
}

// ---------------------------------------------------------------------------------------------
// softplus.

/// t = β·x as a two-float sum, and e^(−|t|) as exp parts
/// (clamped so that huge |t| gives 0, never NaN).
#[inline(always)]
fn softplus_exp<T: Real, const FMA: bool>(x: T, beta: T) -> (T, T, ExpParts<T>) {
    let (t, t_lo) = two_prod::<T, FMA>(beta, x);
    let a = t.abs();
    // Beyond EXP_ARG_MIN the exponential is 0 whatever t_lo is (and t_lo may be NaN if t is ∞).
    let t_lo = if a < -T::EXP_ARG_MIN { t_lo } else { T::ZERO };
    let minus_abs_lo = if t < T::ZERO { t_lo } else { -t_lo };
    (t, t_lo, exp_parts::<T, FMA>(-a, minus_abs_lo))
}

/// softplus as PyTorch: x where β·x > threshold, else (1/β)·ln(1 + e^(βx)), with t = βx as a
/// two-float sum:
/// - t < SOFTPLUS_SMALL: e^t·(1 − e^t/2 + e^(2t)/3)/β (the series of ln(1 + u), exact to the last
///   bit there), the factor folded into the exponential (one rounding; tiny results not flushed);
/// - otherwise (max(t, 0) + ln(1 + e^(−|t|)))/β.
#[inline(always)]
pub(crate) fn softplus<T: Real, const FMA: bool>(x: T, beta: T, threshold: T) -> T {
    let (t, t_lo, parts) = softplus_exp::<T, FMA>(x, beta);
    let (e, e_lo) = parts.two_float();
    let log_term = log1p_unit::<T, FMA>(e, e_lo);
    let sum = if t > T::ZERO {
        t + (t_lo + log_term)
    } else {
        log_term
    };
    let third = T::ONE / (T::ONE + T::TWO);
    let series = fma::<T, FMA>(e, fma::<T, FMA>(e, third, -T::HALF), T::ONE);
    let small = parts.times::<FMA>(series / beta);
    if t > threshold {
        x
    } else if t < T::SOFTPLUS_SMALL {
        small
    } else {
        sum / beta
    }
}

/// d/dx softplus = σ(βx) (1 where βx > threshold, as PyTorch's `softplus_backward`).
#[inline(always)]
pub(crate) fn softplus_derivative<T: Real, const FMA: bool>(x: T, beta: T, threshold: T) -> T {
    let (t, _, parts) = softplus_exp::<T, FMA>(x, beta);
    let sigma = sigmoid_from_exp_parts::<T, FMA>(t, parts);
    if t > threshold { T::ONE } else { sigma }
}
