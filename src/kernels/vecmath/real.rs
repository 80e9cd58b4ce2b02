//! [`Real`]: what the generic algorithms of [`super::functions`] need to know about `f32` and
//! `f64` — their constants, their polynomial coefficients, and the few operations that look at the
//! bits (splitting off an exponent, building a power of two).

use std::ops::{Add, Div, Mul, Neg, Sub};

use super::{coefficients, functions, wide};

/// A floating-point type the vector math kernels are written for (`f32` and `f64`).
///
/// The bit-level helpers use only additions, logical shifts and masks on the unsigned integer of
/// the same width, so that they vectorise on every instruction set (AVX2 has no 64-bit arithmetic
/// shift and no 64-bit integer → float conversion).
pub(crate) trait Real:
    Copy
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    const ZERO: Self;
    const NEG_ZERO: Self;
    const HALF: Self;
    const ONE: Self;
    const TWO: Self;
    const INFINITY: Self;
    const NAN: Self;

    /// ln 2 = LN2_HI + LN2_LO, with k·LN2_HI exact for every k the kernels meet.
    const LN2_HI: Self;
    const LN2_LO: Self;
    const LOG2_E: Self;
    /// e^x is computed for x clamped to [EXP_ARG_MIN, EXP_ARG_MAX]: beyond, it is 0 or ∞ even
    /// when multiplied by a factor of order 1 (and 2^k stays a product of two normal numbers).
    const EXP_ARG_MIN: Self;
    const EXP_ARG_MAX: Self;
    /// eʳ = 1 + r + r²·EXP(r) for |r| ≤ ln2/2.
    const EXP: &'static [Self];
    /// ln(1 + f) = 2s + s·z·LOG(z), s = f/(2 + f), z = s².
    const LOG: &'static [Self];
    /// Scale of subnormal inputs before their exponent is read (2^SUBNORMAL_SHIFT).
    const SUBNORMAL_SCALE: Self;
    const SUBNORMAL_SHIFT: Self;

    const TANH_POLY_LIMIT: Self;
    const TANH: &'static [Self];
    /// |tanh x| rounds to 1 above this.
    const TANH_SATURATE: Self;

    /// Below this t = βx, softplus is e^t·(1 − e^t/2 + e^(2t)/3)/β: the truncated series of
    /// ln(1 + e^t) is exact to the last bit (the next term is below 2^−(p+2)).
    const SOFTPLUS_SMALL: Self;

    fn abs(self) -> Self;
    /// The magnitude of `self` with the sign of `sign`.
    fn copysign(self, sign: Self) -> Self;
    /// a·b + c with one rounding (the hardware instruction where the SIMD path has it).
    fn fused_mul_add(self, b: Self, c: Self) -> Self;
    /// The rounding error of p = a·b, computed without a fused multiply-add.
    fn product_error(a: Self, b: Self, p: Self) -> Self;
    /// For |y| < 2¹⁰ (or NaN): k = round(y) as a float, and s₁, s₂ with s₁·s₂ = 2^k, each a normal
    /// power of two (so that x·s₁·s₂ rounds once, even into the subnormal range).
    fn round_exp2(y: Self) -> (Self, Self, Self);
    /// For a finite x > 0: x = 2^k·(1 + f) with 1 + f in [√½, √2). Returns (k as a float, f), f
    /// exact.
    fn split_log(x: Self) -> (Self, Self);
}

/// The magic number 1.5·2^p: adding it to |y| < 2^(p−1) rounds y to an integer that sits in
/// the low bits of the sum.
macro_rules! impl_real {
    (
        $t:ident, $bits:ty, mantissa: $mant:literal, bias: $bias:literal,
        exp_arg: [$exp_min:literal, $exp_max:literal], tanh_saturate: $tanh_sat:literal,
        softplus_small: $softplus_small:literal,
        sqrt_half_bits: $sqrt_half:literal,
        product_error: |$a:ident, $b:ident, $p:ident| $product_error:expr
    ) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const NEG_ZERO: Self = -0.0;
            const HALF: Self = 0.5;
            const ONE: Self = 1.0;
            const TWO: Self = 2.0;
            const INFINITY: Self = $t::INFINITY;
            const NAN: Self = $t::NAN;

            const LN2_HI: Self = coefficients::$t::LN2_HI;
            const LN2_LO: Self = coefficients::$t::LN2_LO;
            const LOG2_E: Self = coefficients::$t::LOG2_E;
            const EXP_ARG_MIN: Self = $exp_min;
            const EXP_ARG_MAX: Self = $exp_max;
            const EXP: &'static [Self] = &coefficients::$t::EXP;
            const LOG: &'static [Self] = &coefficients::$t::LOG;
            const SUBNORMAL_SCALE: Self = (1u64 << $mant) as $t;
            const SUBNORMAL_SHIFT: Self = $mant as $t;

            const TANH_POLY_LIMIT: Self = coefficients::$t::TANH_POLY_LIMIT;
            const TANH: &'static [Self] = &coefficients::$t::TANH;
            const TANH_SATURATE: Self = $tanh_sat;

            const SOFTPLUS_SMALL: Self = $softplus_small;

            #[inline(always)]
            fn abs(self) -> Self {
                $t::abs(self)
            }
            #[inline(always)]
            fn copysign(self, sign: Self) -> Self {
                $t::copysign(self, sign)
            }
            #[inline(always)]
            fn fused_mul_add(self, b: Self, c: Self) -> Self {
                $t::mul_add(self, b, c)
            }
            #[inline(always)]
            fn product_error($a: Self, $b: Self, $p: Self) -> Self {
                $product_error
            }
            #[inline(always)]
            fn round_exp2(y: Self) -> (Self, Self, Self) {
                const MAGIC: $t = 1.5 * (1u64 << $mant) as $t;
                // Keeps k + OFFSET ≥ 0, so that halving it is a logical shift.
                const OFFSET: $bits = 1 << 12;
                let shifted = y + MAGIC;
                let k = shifted - MAGIC;
                let k_offset = shifted
                    .to_bits()
                    .wrapping_sub(MAGIC.to_bits())
                    .wrapping_add(OFFSET);
                // k₁ = ⌊k/2⌋, k₂ = k − k₁, both as biased exponents.
                let k1 = (k_offset >> 1).wrapping_sub(OFFSET / 2).wrapping_add($bias);
                let k2 = k_offset
                    .wrapping_sub(OFFSET)
                    .wrapping_add(2 * $bias)
                    .wrapping_sub(k1);
                (k, $t::from_bits(k1 << $mant), $t::from_bits(k2 << $mant))
            }
            #[inline(always)]
            fn split_log(x: Self) -> (Self, Self) {
                const SQRT_HALF: $bits = $sqrt_half;
                const HALF_RANGE: $bits = 1 << (<$bits>::BITS - 1);
                // 2^MANT as a float: its bits OR a small integer n are the float 2^MANT + n.
                const INTEGER_MAGIC: $t = (1u64 << $mant) as $t;
                let subnormal = x < $t::MIN_POSITIVE;
                let x = if subnormal {
                    x * Self::SUBNORMAL_SCALE
                } else {
                    x
                };
                // Measured from √½, the exponent field counts k, the mantissa field is 1 + f.
                let from_sqrt_half = x.to_bits().wrapping_sub(SQRT_HALF);
                let mantissa = $t::from_bits((from_sqrt_half & ((1 << $mant) - 1)) + SQRT_HALF);
                // k + 2^(exponent bits) as an unsigned integer, then as a float, exactly.
                let k_offset = from_sqrt_half.wrapping_add(HALF_RANGE) >> $mant;
                let k = ($t::from_bits(INTEGER_MAGIC.to_bits() | k_offset) - INTEGER_MAGIC)
                    - (HALF_RANGE >> $mant) as $t;
                let k = if subnormal {
                    k - Self::SUBNORMAL_SHIFT
                } else {
                    k
                };
                (k, mantissa - 1.0)
            }
        }
    };
}

impl_real!(
    f32, u32, mantissa: 23, bias: 127,
    exp_arg: [-110.0, 89.5], tanh_saturate: 9.5, softplus_small: -6.0,
    sqrt_half_bits: 0x3f35_04f3,
    // The product of two f32 is exact in f64.
    product_error: |a, b, p| (f64::from(a) * f64::from(b) - f64::from(p)) as f32
);

impl_real!(
    f64, u64, mantissa: 52, bias: 1023,
    exp_arg: [-760.0, 710.0], tanh_saturate: 19.5, softplus_small: -13.0,
    sqrt_half_bits: 0x3fe6_a09e_667f_3bcd,
    product_error: |a, b, p| dekker_product_error(a, b, p)
);

/// The rounding error of p = a·b by Dekker's algorithm (Veltkamp splitting into 26-bit halves),
/// exact for |a|, |b| < 2⁹⁹⁶.
#[inline(always)]
fn dekker_product_error(a: f64, b: f64, p: f64) -> f64 {
    const SPLIT: f64 = 134_217_729.0; // 2²⁷ + 1
    let split = |v: f64| {
        let c = SPLIT * v;
        let hi = c - (c - v);
        (hi, v - hi)
    };
    let (a_hi, a_lo) = split(a);
    let (b_hi, b_lo) = split(b);
    ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
}

/// The constants of the erf family in native precision (only f64: f32 evaluates the family in f64,
/// see [`wide`]).
pub(crate) trait Gaussian: Real {
    const ERF_POLY_LIMIT: Self;
    const ERF: &'static [Self];
    const ERFCX_K: Self;
    const ERFCX_START: Self;
    const ERFCX_MAX: Self;
    /// erfcx(a) = Σ `ERFCX[i]`·wⁱ, with the constant term `ERFCX[0]` + `ERFCX_C0_LO`.
    const ERFCX: &'static [Self];
    const ERFCX_C0_LO: Self;
    const FRAC_1_SQRT_2: Self;
    const FRAC_2_SQRT_PI: Self;
    const FRAC_1_SQRT_2PI: Self;
    /// gelu and its derivative are computed for x clamped to ±GELU_MAX (= ERFCX_MAX·√2, rounded
    /// down): beyond, x·Φ(x) is x or −0.
    const GELU_MAX: Self;
    const KAPPA_HI: Self;
    const KAPPA_LO: Self;
    const GELU_TANH_C_HI: Self;
    const GELU_TANH_C_LO: Self;
    const GELU_TANH_C3K: Self;
    /// gelu_tanh and its derivative are computed for x clamped to ±GELU_TANH_MAX: beyond, σ(2u)
    /// is 1 or underflows to 0.
    const GELU_TANH_MAX: Self;
}

impl Gaussian for f64 {
    const ERF_POLY_LIMIT: Self = coefficients::f64::ERF_POLY_LIMIT;
    const ERF: &'static [Self] = &coefficients::f64::ERF;
    const ERFCX_K: Self = coefficients::f64::ERFCX_K;
    const ERFCX_START: Self = coefficients::f64::ERFCX_START;
    const ERFCX_MAX: Self = coefficients::f64::ERFCX_MAX;
    const ERFCX: &'static [Self] = &coefficients::f64::ERFCX;
    const ERFCX_C0_LO: Self = coefficients::f64::ERFCX_C0_LO;
    const FRAC_1_SQRT_2: Self = std::f64::consts::FRAC_1_SQRT_2;
    const FRAC_2_SQRT_PI: Self = std::f64::consts::FRAC_2_SQRT_PI;
    const FRAC_1_SQRT_2PI: Self = coefficients::f64::FRAC_1_SQRT_2PI;
    const GELU_MAX: Self = 38.8;
    const KAPPA_HI: Self = coefficients::f64::KAPPA_HI;
    const KAPPA_LO: Self = coefficients::f64::KAPPA_LO;
    const GELU_TANH_C_HI: Self = coefficients::f64::GELU_TANH_C_HI;
    const GELU_TANH_C_LO: Self = coefficients::f64::GELU_TANH_C_LO;
    const GELU_TANH_C3K: Self = coefficients::f64::GELU_TANH_C3K;
    const GELU_TANH_MAX: Self = 23.0;
}

/// The element functions whose implementation depends on the type: f32 evaluates gelu,
/// gelu_tanh and the derivatives of the erf family in f64 ([`wide`]) and erf with a short
/// polynomial, f64 everything natively ([`functions`]).
pub(crate) trait ElementFunctions: Real {
    fn sigmoid<const FMA: bool>(x: Self) -> Self;
    fn softplus<const FMA: bool>(x: Self, beta: Self, threshold: Self) -> Self;
    fn softplus_derivative<const FMA: bool>(x: Self, beta: Self, threshold: Self) -> Self;
    fn erf<const FMA: bool>(x: Self) -> Self;
    fn erf_derivative<const FMA: bool>(x: Self) -> Self;
    fn gelu<const FMA: bool>(x: Self) -> Self;
    fn gelu_derivative<const FMA: bool>(x: Self) -> Self;
    fn gelu_tanh<const FMA: bool>(x: Self) -> Self;
    fn gelu_tanh_derivative<const FMA: bool>(x: Self) -> Self;
}

macro_rules! impl_element_functions {
    ($t:ty, unary: [$($name:ident => $path:path),*],
     softplus: $softplus:path, softplus_derivative: $softplus_derivative:path) => {
        impl ElementFunctions for $t {
            $(
                #[inline(always)]
                fn $name<const FMA: bool>(x: Self) -> Self {
                    $path(x)
                }
            )*
            #[inline(always)]
            fn softplus<const FMA: bool>(x: Self, beta: Self, threshold: Self) -> Self {
                $softplus(x, beta, threshold)
            }
            #[inline(always)]
            fn softplus_derivative<const FMA: bool>(x: Self, beta: Self, threshold: Self) -> Self {
                $softplus_derivative(x, beta, threshold)
            }
        }
    };
}

impl_element_functions!(
    f32,
    unary: [
        sigmoid => functions::sigmoid::<f32, FMA>,
        erf => functions::erf_f32::<FMA>,
        erf_derivative => wide::erf_derivative::<FMA>,
        gelu => wide::gelu::<FMA>,
        gelu_derivative => wide::gelu_derivative::<FMA>,
        gelu_tanh => wide::gelu_tanh::<FMA>,
        gelu_tanh_derivative => wide::gelu_tanh_derivative::<FMA>
    ],
    softplus: functions::softplus::<f32, FMA>,
    softplus_derivative: functions::softplus_derivative::<f32, FMA>
);

impl_element_functions!(
    f64,
    unary: [
        sigmoid => functions::sigmoid::<f64, FMA>,
        erf => functions::erf::<f64, FMA>,
        erf_derivative => functions::erf_derivative::<f64, FMA>,
        gelu => functions::gelu::<f64, FMA>,
        gelu_derivative => functions::gelu_derivative::<f64, FMA>,
        gelu_tanh => functions::gelu_tanh::<f64, FMA>,
        gelu_tanh_derivative => functions::gelu_tanh_derivative::<f64, FMA>
    ],
    softplus: functions::softplus::<f64, FMA>,
    softplus_derivative: functions::softplus_derivative::<f64, FMA>
);
