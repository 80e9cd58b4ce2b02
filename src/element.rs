//! The element types a tensor can hold: `f32` (for speed) and `f64` (for gradient checks).

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use rand::Rng;
use rand_distr::{Distribution, StandardNormal, StandardUniform};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element type: implemented for `f32` and `f64` only (the trait is sealed, because
/// the matrix kernel supports exactly these two).
pub trait Float:
    sealed::Sealed
    + crate::kernels::pool::Pooled
    + crate::kernels::vecmath::VecMath
    + Copy
    + Default
    + PartialEq
    + PartialOrd
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Negative infinity.
    const NEG_INFINITY: Self;
    /// Name of the type, as in PyTorch's dtypes (`"float32"`, `"float64"`).
    const DTYPE: &'static str;
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64(x: f64) -> Self;
    /// Converts to `f64` (exactly).
    fn to_f64(self) -> f64;
    /// e^self.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// The larger of two values (NaN-ignoring, as `f64::max`).
    fn max(self, other: Self) -> Self;
    /// Whether the value is neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// Whether the value is NaN.
    fn is_nan(self) -> bool;
    /// `self` if `keep`, else exactly `+0.0` — even for an infinite or NaN `self`, where
    /// multiplying by 0 would give NaN. Branch-free (a bit mask), so loops over random masks vectorise.
    fn keep_or_zero(self, keep: bool) -> Self;
    /// Bytes per element.
    const BYTES: usize;
    /// Appends the little-endian bytes of `self`.
    fn extend_le_bytes(self, out: &mut Vec<u8>);
    /// Reads a value from exactly [`Float::BYTES`] little-endian bytes.
    fn from_le_slice(bytes: &[u8]) -> Self;
    /// Applies one 64-bit word of a mask to at most 64 elements. With `exact_zero` false (dropout,
    /// as PyTorch's `x * mask * scale`): `out[i] = x[i] · (bit i ? scale : 0)`, so a dropped NaN or
    /// infinity stays NaN. With `exact_zero` true (ReLU's backward, PyTorch's `threshold_backward`):
    /// `out[i] = bit i ? x[i] · scale : +0.0`. A table turns each byte of the word into eight lane
    /// masks, so the loop is a multiply and a bitwise AND per element, which vectorises without
    /// AVX2's variable shifts.
    #[doc(hidden)]
    fn apply_mask_word(word: u64, x: &[Self], scale: Self, exact_zero: bool, out: &mut [Self]);
    /// ReLU's forward in one pass: `out[i] = max(x[i], 0)` (a NaN stays NaN, as in PyTorch) and
    /// the packed bits `[x[i] > 0 or x[i] is NaN]`, 64 to a word, which backward needs (a NaN passes its
    /// gradient, as PyTorch's `threshold_backward` does).
    #[doc(hidden)]
    fn relu_words(x: &[Self], out: &mut [Self]) -> crate::Result<Vec<u64>>;
    /// The vector math kernel named `name` ("exp", "log", "tanh", "sigmoid", "erf", "gelu",
    /// "gelu_tanh", "softplus", "erf_backward", "gelu_backward", "gelu_tanh_backward",
    /// "softplus_backward") as `(x, g, out)`; the forward kernels ignore `g`. The kernels are
    /// crate-private (`kernels::vecmath`); this exists for `benches/vecmath.rs` only.
    #[doc(hidden)]
    fn vecmath_kernel(name: &str) -> Option<crate::kernels::vecmath::SliceKernel<Self>>;
    /// A draw from the standard normal distribution.
    fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> Self;
    /// A draw from the uniform distribution on `[0, 1)`.
    fn standard_uniform<R: Rng + ?Sized>(rng: &mut R) -> Self;
}

macro_rules! impl_float {
    ($t:ty, $bits:ty, $name:literal) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            const DTYPE: &'static str = $name;
            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline]
            fn keep_or_zero(self, keep: bool) -> Self {
                <$t>::from_bits(self.to_bits() & (keep as $bits).wrapping_neg())
            }
            const BYTES: usize = std::mem::size_of::<$t>();
            fn extend_le_bytes(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn from_le_slice(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_le_bytes(raw)
            }
            #[inline(always)]
            fn apply_mask_word(
                word: u64,
                x: &[Self],
                scale: Self,
                exact_zero: bool,
                out: &mut [Self],
            ) {
                /// LANES[b][j] is all ones if bit j of byte b is set, else 0.
                const LANES: [[$bits; 8]; 256] = {
                    let mut table = [[0; 8]; 256];
                    let mut byte = 0;
                    while byte < 256 {
                        let mut bit = 0;
                        while bit < 8 {
                            if byte >> bit & 1 == 1 {
                                table[byte][bit] = <$bits>::MAX;
                            }
                            bit += 1;
                        }
                        byte += 1;
                    }
                    table
                };
                let (x_full, x_rest) = x.as_chunks::<8>();
                let (out_full, out_rest) = out.as_chunks_mut::<8>();
                let done = 8 * x_full.len();
                if exact_zero {
                    for (k, (xs, os)) in x_full.iter().zip(out_full.iter_mut()).enumerate() {
                        let lanes = &LANES[(word >> (8 * k) & 0xFF) as usize];
                        for j in 0..8 {
                            os[j] = <$t>::from_bits((xs[j] * scale).to_bits() & lanes[j]);
                        }
                    }
                    for (j, (&xv, o)) in x_rest.iter().zip(out_rest.iter_mut()).enumerate() {
                        *o = (xv * scale).keep_or_zero(word >> (done + j) & 1 == 1);
                    }
                } else {
                    // The factor is `scale` or +0.0, then one multiply: 0 · NaN = NaN, as in PyTorch.
                    let bits = scale.to_bits();
                    for (k, (xs, os)) in x_full.iter().zip(out_full.iter_mut()).enumerate() {
                        let lanes = &LANES[(word >> (8 * k) & 0xFF) as usize];
                        for j in 0..8 {
                            os[j] = xs[j] * <$t>::from_bits(bits & lanes[j]);
                        }
                    }
                    for (j, (&xv, o)) in x_rest.iter().zip(out_rest.iter_mut()).enumerate() {
                        *o = xv * scale.keep_or_zero(word >> (done + j) & 1 == 1);
                    }
                }
            }
            fn relu_words(x: &[Self], out: &mut [Self]) -> crate::Result<Vec<u64>> {
                let mut words = crate::kernels::pool::try_dirty("relu", x.len().div_ceil(64))?;
                /// The loop, compiled for the CPU's widest vectors (chosen at run time): the
                /// comparisons of a 64-element chunk become a few vector compares whose lane masks
                /// are the word's bits.
                struct Relu<'a> {
                    x: &'a [$t],
                    out: &'a mut [$t],
                    words: &'a mut [u64],
                }
                impl pulp::WithSimd for Relu<'_> {
                    type Output = ();
                    #[inline(always)]
                    fn with_simd<S: pulp::Simd>(self, _simd: S) {
                        #[inline(always)]
                        fn chunk(xs: &[$t], os: &mut [$t]) -> u64 {
                            let mut word = 0u64;
                            for (j, (&v, o)) in xs.iter().zip(os.iter_mut()).enumerate() {
                                // Set where v > 0 or v is NaN (a NaN passes its gradient).
                                word |= u64::from(v > 0.0 || v.is_nan()) << j;
                                // `v < 0` rather than `v > 0`: a NaN passes through.
                                *o = if v < 0.0 { 0.0 } else { v };
                            }
                            word
                        }
                        let (x_full, x_rest) = self.x.as_chunks::<64>();
                        let (out_full, out_rest) = self.out.as_chunks_mut::<64>();
                        let mut words = self.words.iter_mut();
                        // Whole chunks of a constant length, which the compiler turns into
                        // vector compares; then the tail.
                        for ((xs, os), w) in x_full.iter().zip(out_full).zip(&mut words) {
                            *w = chunk(xs, os);
                        }
                        if let Some(w) = words.next() {
                            *w = chunk(x_rest, out_rest);
                        }
                    }
                }
                pulp::Arch::new().dispatch(Relu {
                    x,
                    out,
                    words: &mut words,
                });
                Ok(words)
            }
            fn vecmath_kernel(name: &str) -> Option<crate::kernels::vecmath::SliceKernel<Self>> {
                crate::kernels::vecmath::kernel_by_name(name)
            }
            fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> Self {
                StandardNormal.sample(rng)
            }
            fn standard_uniform<R: Rng + ?Sized>(rng: &mut R) -> Self {
                StandardUniform.sample(rng)
            }
        }
    };
}

impl_float!(f32, u32, "float32");
impl_float!(f64, u64, "float64");
