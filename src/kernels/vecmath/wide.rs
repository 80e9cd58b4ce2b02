//! The f32 kernels gelu, gelu_tanh and the derivatives of the erf family, evaluated in f64 and
//! rounded once at the end.
//!
//! In f32 arithmetic these functions lose several ulps to effects that need compensated
//! (two-float) arithmetic to avoid: the rounding of x² inside e^(−x²) (an absolute error δ of the
//! argument is a relative error δ of the result, and x² reaches 110), the conditioning of the erfcx
//! polynomial's variable, and the accumulated rounding of a polynomial whose terms are all of one
//! size. In f64 every one of those errors is ~2⁻⁵⁰ relative, so short polynomials fitted to f32
//! accuracy (`coefficients::wide`, ~2⁻²⁹) give results within 0.52 ulp of f32, at about the cost
//! of the compensated f32 code: each f64 instruction does half the lanes, but there is half as much
//! to do (no two-float steps, no split scaling for subnormal results: the f32 subnormal range is
//! normal in f64).

use super::coefficients::wide as c;

/// a·b + c, fused when `FMA` (the SIMD paths), else two roundings.
#[inline(always)]
fn fma<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

#[inline(always)]
fn horner<const FMA: bool>(x: f64, coeffs: &[f64]) -> f64 {
    // The coefficient tables are non-empty constants, so the index is in bounds.
    let mut acc = coeffs[coeffs.len() - 1];
    for &c in coeffs[..coeffs.len() - 1].iter().rev() {
        acc = fma::<FMA>(acc, x, c);
    }
    acc
}

/// 1/d for d in f32's normal range, to ~2⁻⁴⁷: an f32 division (16 lanes per AVX-512 instruction,
/// where an f64 division does 8 at twice the latency) and one Newton step in f64.
#[inline(always)]
fn recip<const FMA: bool>(d: f64) -> f64 {
    let r = f64::from(1.0 / d as f32);
    r * fma::<FMA>(-d, r, 2.0)
}

/// `x` clamped to [lo, hi]; a NaN stays NaN.
#[inline(always)]
fn clamp(x: f64, lo: f64, hi: f64) -> f64 {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

/// eˣ to ~2⁻²⁸ relative for x in [−700, 89] (clamped: beyond, every f32 result it feeds is 0 or
/// ∞): k = round(x/ln 2), r = x − k·ln 2, eʳ = 1 + r + r²·P(r), 2^k built in the exponent field.
#[inline(always)]
fn exp<const FMA: bool>(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5·2⁵²: adding it rounds to an integer
    let x = clamp(x, -700.0, 89.0);
    let shifted = x * std::f64::consts::LOG2_E + MAGIC;
    let k = shifted - MAGIC;
    let r = fma::<FMA>(k, -std::f64::consts::LN_2, x);
    let p = fma::<FMA>(r * r, horner::<FMA>(r, &c::EXP), r) + 1.0;
    // k + 1023 in the exponent field: 2^k (k is in [−1010, 129], so the field stays in range; a NaN
    // makes a garbage power of two, and NaN·anything is NaN).
    let two_k = f64::from_bits(
        shifted
            .to_bits()
            .wrapping_sub(MAGIC.to_bits())
            .wrapping_add(1023)
            << 52,
    );
    p * two_k
}

/// erfcx(a) = e^(a²)·erfc(a) for 0 ≤ a ≤ 10.5: a polynomial in 1/(a + k) − start.
#[inline(always)]
fn erfcx<const FMA: bool>(a: f64) -> f64 {
    let w = recip::<FMA>(a + c::ERFCX_K) - c::ERFCX_START;
    horner::<FMA>(w, &c::ERFCX)
}

#[inline(always)]
pub(crate) fn erf_derivative<const FMA: bool>(x: f32) -> f32 {
    let a = clamp(f64::from(x).abs(), 0.0, c::ERFCX_MAX);
    (std::f64::consts::FRAC_2_SQRT_PI * exp::<FMA>(-a * a)) as f32
}

/// x clamped to ±GELU_MAX, e^(−x²/2), erfcx(|x|/√2): Φ(x) = ½·e^(−x²/2)·erfcx(|x|/√2) for x ≤ 0.
#[inline(always)]
fn gaussian_tail<const FMA: bool>(x: f64) -> (f64, f64, f64) {
    let x = clamp(x, -c::GELU_MAX, c::GELU_MAX);
    let e = exp::<FMA>(-0.5 * x * x);
    (
        x,
        e,
        erfcx::<FMA>(x.abs() * std::f64::consts::FRAC_1_SQRT_2),
    )
}

/// x·Φ(x) = max(x, 0) − ½|x|·e^(−x²/2)·erfcx(|x|/√2).
#[inline(always)]
pub(crate) fn gelu<const FMA: bool>(x: f32) -> f32 {
    let x = f64::from(x);
    let (xc, e, r) = gaussian_tail::<FMA>(x);
    let base = if x >= 0.0 { x } else { -0.0 };
    ((base - 0.5 * xc.abs() * r * e) as f32).copysign(x as f32)
}

/// Φ(x) + x·φ(x) = [x ≥ 0] + e^(−x²/2)·(x/√(2π) ∓ ½·erfcx(|x|/√2)).
#[inline(always)]
pub(crate) fn gelu_derivative<const FMA: bool>(x: f32) -> f32 {
    let x = f64::from(x);
    let (xc, e, r) = gaussian_tail::<FMA>(x);
    let positive = x >= 0.0;
    let half_r = if positive { -0.5 * r } else { 0.5 * r };
    let base = if positive { 1.0 } else { 0.0 };
    (base + e * fma::<FMA>(xc, c::FRAC_1_SQRT_2PI, half_r)) as f32
}

/// e = e^(−|2u|), 2u = 2·√(2/π)·(x + κx³), with x clamped to ±GELU_TANH_MAX.
#[inline(always)]
fn gelu_tanh_exp<const FMA: bool>(x: f64) -> (f64, f64) {
    let x = clamp(x, -c::GELU_TANH_MAX, c::GELU_TANH_MAX);
    let z = c::GELU_TANH_C * x * fma::<FMA>(c::KAPPA, x * x, 1.0);
    (x, exp::<FMA>(-z.abs()))
}

/// x·σ(2u): x/(1 + e) for x ≥ 0, x·e/(1 + e) below.
#[inline(always)]
pub(crate) fn gelu_tanh<const FMA: bool>(x: f32) -> f32 {
    let x = f64::from(x);
    let (xc, e) = gelu_tanh_exp::<FMA>(x);
    let numerator = if x >= 0.0 { x } else { xc * e };
    (numerator * recip::<FMA>(1.0 + e)) as f32
}

/// σ(2u) + x·2u′·σ(2u)·(1 − σ(2u)) = (n/d)·(1 + x·2u′·m/d), d = 1 + e, (n, m) = (1, e) for
/// x ≥ 0 and (e, 1) below.
#[inline(always)]
pub(crate) fn gelu_tanh_derivative<const FMA: bool>(x: f32) -> f32 {
    let x = f64::from(x);
    let (xc, e) = gelu_tanh_exp::<FMA>(x);
    let d = 1.0 + e;
    let slope = fma::<FMA>(c::GELU_TANH_C3K, xc * xc, c::GELU_TANH_C);
    let (n, m) = if x >= 0.0 { (1.0, e) } else { (e, 1.0) };
    let r = recip::<FMA>(d);
    (n * r * fma::<FMA>(xc * slope, m * r, 1.0)) as f32
}
