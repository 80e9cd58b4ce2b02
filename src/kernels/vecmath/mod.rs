//! Vector math: transcendental functions over slices, vectorised with run-time dispatch.
//!
//! Each function maps a slice `x` to an output slice of the same length (`*_in_place` variants
//! overwrite `x`), element by element, for `f32` and `f64` (any `T: Float`, which has [`VecMath`]
//! as a supertrait):
//!
//! | function | y | max error f32 | max error f64 |
//! |---|---|---|---|
//! | [`exp`] | eˣ | 1 ulp (0.78) | 1 ulp (1.00) |
//! | [`log`] | ln x | 1 ulp (0.79) | 1 ulp (0.82) |
//! | [`tanh`] | tanh x | 1 ulp (1.31) | 1 ulp (1.30) |
//! | [`sigmoid`] | 1/(1 + e⁻ˣ) | 1 ulp (0.87; 1.27 baseline) | 1 ulp (1.01) |
//! | [`erf`] | erf x | 1 ulp (1.12; 1.16 baseline) | 1 ulp (0.89; 1.08 baseline) |
//! | [`gelu`] | x·Φ(x) | 1 ulp (0.57) | 2 ulp (1.59; 2.11 baseline) |
//! | [`gelu_tanh`] | ½x(1 + tanh(√(2/π)(x + 0.044715x³))) | 1 ulp (0.55) | 1 ulp (1.16; 2 ulp, 1.80 baseline) |
//! | [`softplus`] | x if βx > threshold, else ln(1 + e^(βx))/β | 1 ulp (1.26) for β = 1, 2 ulp (1.95) for other β | 1 ulp (1.37) |
//!
//! and the backward kernels `out = g·f′(x)`, for the derivatives that are not cheaper from the
//! output (exp′ = y, tanh′ = 1 − y², σ′ = y(1 − y) and log′ = 1/x are):
//!
//! | function | f′ | max error f32 | max error f64 |
//! |---|---|---|---|
//! | [`erf_backward`] | 2/√π·e^(−x²) | 1 ulp (0.55) | 1 ulp (1.00; 1.31 baseline) |
//! | [`gelu_backward`] | Φ(x) + x·φ(x) | 1 ulp (0.55)* | 2 ulp (1.50; 2.12 baseline)* |
//! | [`gelu_tanh_backward`] | σ(2u) + x·2u′·σ(2u)(1 − σ(2u)) | 1 ulp (0.55)* | 2 ulp (2.02); 3 ulp (2.58) baseline* |
//! | [`softplus_backward`] | σ(βx), 1 above the threshold | 1 ulp (0.95; 1.40 baseline) | 1 ulp (1.00) |
//!
//! "n ulp (e)": n is the largest distance, in representable values, from the correctly rounded
//! result (the bound the tests assert: 2 for the functions, 3 for the derivatives), e the largest
//! error in ulps of the exact value; on the AVX2/AVX-512 paths unless "baseline" (the x86-64 path
//! without FMA) says otherwise. *The derivatives of gelu change sign at x ≈ −0.75, where no
//! relative bound can hold: there the error is in ulps of the larger of the two terms (Φ and
//! x·φ), i.e. absolute ~2⁻²⁴ (f32) / 2⁻⁵³ (f64) of the function's scale.
//!
//! # How an op calls them
//!
//! ```text
//! use crate::kernels::vecmath;
//! // forward (T: Float): a fresh output, written once
//! let mut y = Tensor::overwritable("gelu", x.shape().clone())?;
//! vecmath::gelu(x.data(), y.data_mut());
//! // backward: dx = g·gelu′(x), fused
//! let mut dx = Tensor::overwritable("gelu", g.shape().clone())?;
//! vecmath::gelu_backward(x.data(), g.data(), dx.data_mut());
//! // or in place on a buffer the op owns
//! vecmath::tanh_in_place(y.data_mut());
//! ```
//!
//! The kernels split slices above [`crate::tensor::parallel`]'s threshold over threads, in chunks
//! of [`crate::tensor::PARALLEL_CHUNK`] (the results do not depend on the thread count: each
//! element is computed on its own). Slices of different lengths are a caller's bug: debug builds
//! assert, release builds process the common prefix.
//!
//! # Semantics
//!
//! As PyTorch's functions, with these limits: NaN propagates; ±∞ give the limits (gelu(−∞) = −0
//! and gelu(+∞) = +∞, where PyTorch's f32 kernel gives NaN for both, and gelu_tanh(−∞) = −0
//! where PyTorch gives NaN); −0 stays −0 for tanh, erf, gelu and gelu_tanh; subnormal inputs and
//! outputs are exact to the stated bounds (sigmoid(−100) is the subnormal 3.7e-44, not 0; gelu and
//! gelu_tanh are accurate down to the underflow of the result, x ≈ −14 in f32, where PyTorch's
//! ½x(1 + erf(x/√2)) and ½x(1 + tanh u) cancel to 0 from x ≈ −5.5). softplus takes its branch on
//! β·x rounded to the type, as PyTorch does, and computes the rest with β·x exact, so it is
//! accurate for any finite β ≠ 0 (the op checks β).
//!
//! # Dispatch
//!
//! [`pulp::Arch`] picks, at run time, AVX-512 (x86-64-v4), AVX2+FMA (v3) or the baseline x86-64
//! path and runs the same loop compiled for that instruction set: the element functions are
//! branch-free scalar code (every regime computed, the right one selected) that LLVM vectorises
//! inside each context — 16 f32 lanes per instruction with AVX-512. On the baseline path
//! `a·b + c` is not fused (`mul_add` would be a call into software emulation) and the few steps
//! that need an exact product use Dekker's algorithm instead. No `unsafe` anywhere.
//!
//! # Algorithms
//!
//! Polynomials after range reduction, as in Cephes and SLEEF, with coefficients fitted by
//! `coefficients.py` (weighted minimax in 200-bit arithmetic, coefficients rounded one at a time
//! with refits):
//! - exp: Cody–Waite reduction x = k·ln 2 + r, eʳ = 1 + r + r²P(r) with 1 + r kept exact, 2^k
//!   applied as two factors so that subnormal results round once ([`functions`]);
//! - log: x = 2^k·(1 + f) with 1 + f in [√½, √2), ln(1 + f) = 2s + s·R(s²), s = f/(2 + f);
//! - tanh: an odd polynomial below |x| = 0.625, 1 − 2/(e^(2|x|) + 1) above;
//! - sigmoid: from e = e^(−|x|), 1/(1 + e) or e/(1 + e), with 1 + e and its reciprocal carried as
//!   two-float sums and e folded in unrounded (each result rounded once);
//! - erf: an odd polynomial below |x| = 1 (f32) / 0.75 (f64), 1 − e^(−x²)·erfcx(|x|) above, with
//!   erfcx = e^(x²)·erfc a polynomial in 1/(|x| + k) (Weideman's variable);
//! - gelu: x·Φ(x) = max(x, 0) − ½|x|·e^(−x²/2)·erfcx(|x|/√2);
//! - gelu_tanh: x·σ(2u), u = √(2/π)(x + 0.044715x³) (equal to ½x(1 + tanh u), without the
//!   cancellation of 1 + tanh u for x < 0);
//! - softplus: (max(t, 0) + ln(1 + e^(−|t|)))/β with t = βx; e^t·(1 − e^t/2 + e^(2t)/3)/β for
//!   t < −6 (f32) / −13 (f64).
//!
//! Arguments of e^x that need more than one float (−x², −x²/2, 2u, βx) are carried as two-float
//! sums: an absolute error δ in the argument is a relative error δ of the result, and these
//! arguments reach hundreds. In f64, gelu's erfcx also takes its variable and its last two Horner
//! steps in two-float arithmetic. In f32, gelu, gelu_tanh and the derivatives of the erf family are
//! evaluated in f64 instead ([`wide`]): the same accuracy for less work than compensated f32.
//!
//! # Accuracy tests
//!
//! `tests.rs`: for f32, every 97th bit pattern of the 2³² (NaNs and infinities included) plus
//! ±2000 values around each breakpoint, on every instruction set the machine has, against the f64
//! function (std, or the `libm` crate for erf/erfc) rounded to f32 — and all 2³² with
//! `TAPEGRAD_VECMATH_STRIDE=1 cargo test --release --lib vecmath`; for f64, 2800 values per kernel against mpmath at 160
//! bits (`tests/golden/vecmath.py`, log-uniform over each whole range and dense at the
//! breakpoints), and a million random values per function against std / `libm` (within 3 ulps
//! of those references, which are themselves within ~1–2 ulps).

mod coefficients;
mod functions;
mod real;
#[cfg(test)]
mod tests;
mod wide;

use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

use real::{ElementFunctions, Real};

use crate::tensor::{PARALLEL_CHUNK, parallel};

/// The element-wise functions of one argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Function<T> {
    /// eˣ.
    Exp,
    /// ln x.
    Log,
    /// tanh x.
    Tanh,
    /// 1/(1 + e⁻ˣ).
    Sigmoid,
    /// erf x.
    Erf,
    /// x·Φ(x).
    Gelu,
    /// ½x·(1 + tanh(√(2/π)·(x + 0.044715x³))).
    GeluTanh,
    /// x if βx > threshold, else (1/β)·ln(1 + e^(βx)).
    Softplus {
        /// β.
        beta: T,
        /// Above this βx, the function is x.
        threshold: T,
    },
}

/// The derivatives that the backward kernels multiply the incoming gradient by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Derivative<T> {
    /// 2/√π·e^(−x²).
    Erf,
    /// Φ(x) + x·φ(x).
    Gelu,
    /// The derivative of [`Function::GeluTanh`].
    GeluTanh,
    /// σ(βx), or 1 where βx > threshold.
    Softplus {
        /// β.
        beta: T,
        /// Above this βx, the derivative is 1.
        threshold: T,
    },
}

/// The slice kernels of an element type: implemented for every [`Real`] (f32 and f64), and a
/// supertrait of [`crate::Float`], so that code generic over `T: Float` reaches them.
pub trait VecMath: Sized {
    /// `out[i]` = f(`x[i]`).
    fn vec_map(f: Function<Self>, x: &[Self], out: &mut [Self]);
    /// `x[i]` = f(`x[i]`).
    fn vec_map_in_place(f: Function<Self>, x: &mut [Self]);
    /// `out[i]` = `g[i]`·f′(`x[i]`).
    fn vec_map_derivative(f: Derivative<Self>, x: &[Self], g: &[Self], out: &mut [Self]);
}

impl<T: ElementFunctions> VecMath for T {
    fn vec_map(f: Function<T>, x: &[T], out: &mut [T]) {
        map_with(Arch::new(), f, x, out);
    }
    fn vec_map_in_place(f: Function<T>, x: &mut [T]) {
        map_in_place_with(Arch::new(), f, x);
    }
    fn vec_map_derivative(f: Derivative<T>, x: &[T], g: &[T], out: &mut [T]) {
        map_derivative_with(Arch::new(), f, x, g, out);
    }
}

macro_rules! forward {
    ($(#[$doc:meta])* $name:ident, $in_place:ident, $variant:ident) => {
        $(#[$doc])*
        pub(crate) fn $name<T: VecMath>(x: &[T], out: &mut [T]) {
            T::vec_map(Function::$variant, x, out);
        }

        /// In place: `x[i]` = the function of `x[i]` (same accuracy).
        #[allow(dead_code, reason = "for the ops, which are wired to these kernels separately")]
        pub(crate) fn $in_place<T: VecMath>(x: &mut [T]) {
            T::vec_map_in_place(Function::$variant, x);
        }
    };
}

forward!(
    /// `out[i]` = e^`x[i]`. Overflows to +∞ above ln(MAX), underflows through the subnormals to 0.
    exp, exp_in_place, Exp
);
forward!(
    /// `out[i]` = ln `x[i]`: −∞ at ±0, NaN below 0, +∞ at +∞; subnormal inputs are exact-exponent.
    log, log_in_place, Log
);
forward!(
    /// `out[i]` = tanh `x[i]`: odd (−0 ↦ −0), ±1 beyond |x| ≈ 9 (f32) / 19 (f64).
    tanh, tanh_in_place, Tanh
);
forward!(
    /// `out[i]` = σ(`x[i]`) = 1/(1 + e^−`x[i]`), never overflowing; tiny results are subnormal, not 0.
    sigmoid, sigmoid_in_place, Sigmoid
);
forward!(
    /// `out[i]` = erf `x[i]`: odd, ±1 beyond |x| ≈ 3.9 (f32) / 5.9 (f64).
    erf, erf_in_place, Erf
);
forward!(
    /// `out[i]` = x·Φ(x) (PyTorch's `F.gelu(x)`, `approximate='none'`), with Φ the standard normal
    /// CDF: relative accuracy all the way down to the underflow of the result for x < 0 (where
    /// PyTorch's ½x·(1 + erf(x/√2)) rounds to 0 below x ≈ −5.5 in f32).
    gelu, gelu_in_place, Gelu
);
forward!(
    /// `out[i]` = ½x·(1 + tanh(√(2/π)·(x + 0.044715x³))) (PyTorch's `F.gelu(x,
    /// approximate='tanh')`), computed as x·σ(2u): relative accuracy for x < 0 too, where
    /// PyTorch's formula cancels (to 0 below x ≈ −5 in f32).
    gelu_tanh, gelu_tanh_in_place, GeluTanh
);

/// `out[i]` = `x[i]` where β·`x[i]` > threshold, else (1/β)·ln(1 + e^(β·`x[i]`)) — PyTorch's
/// `F.softplus(x, beta, threshold)` (defaults β = 1, threshold = 20). β·x is formed exactly, so the
/// result is accurate for any β ≠ 0 (the caller checks β).
pub(crate) fn softplus<T: VecMath>(x: &[T], beta: T, threshold: T, out: &mut [T]) {
    T::vec_map(Function::Softplus { beta, threshold }, x, out);
}

/// [`softplus`] in place.
#[allow(
    dead_code,
    reason = "for the ops, which are wired to these kernels separately"
)]
pub(crate) fn softplus_in_place<T: VecMath>(x: &mut [T], beta: T, threshold: T) {
    T::vec_map_in_place(Function::Softplus { beta, threshold }, x);
}

/// `out[i]` = `g[i]`·2/√π·e^(−`x[i]`²), the backward of [`erf`].
pub(crate) fn erf_backward<T: VecMath>(x: &[T], g: &[T], out: &mut [T]) {
    T::vec_map_derivative(Derivative::Erf, x, g, out);
}

/// `out[i]` = `g[i]`·(Φ(`x[i]`) + `x[i]`·φ(`x[i]`)), the backward of [`gelu`] (PyTorch's
/// `gelu_backward(g, x)`).
pub(crate) fn gelu_backward<T: VecMath>(x: &[T], g: &[T], out: &mut [T]) {
    T::vec_map_derivative(Derivative::Gelu, x, g, out);
}

/// `out[i]` = `g[i]`·d/dx gelu_tanh(`x[i]`), the backward of [`gelu_tanh`] (PyTorch's
/// `gelu_backward(g, x, approximate='tanh')`).
pub(crate) fn gelu_tanh_backward<T: VecMath>(x: &[T], g: &[T], out: &mut [T]) {
    T::vec_map_derivative(Derivative::GeluTanh, x, g, out);
}

/// `out[i]` = `g[i]`·σ(β·`x[i]`), or `g[i]` where β·`x[i]` > threshold — the backward of [`softplus`]
/// (PyTorch's `softplus_backward`).
pub(crate) fn softplus_backward<T: VecMath>(
    x: &[T],
    g: &[T],
    beta: T,
    threshold: T,
    out: &mut [T],
) {
    T::vec_map_derivative(Derivative::Softplus { beta, threshold }, x, g, out);
}

/// A kernel as `(x, g, out)` (the forward kernels ignore `g`).
pub type SliceKernel<T> = fn(&[T], &[T], &mut [T]);

/// The kernel named `name` as `(x, g, out)` (the forward kernels ignore `g`; softplus with
/// β = 1, threshold = 20), for the benchmarks (through the hidden `Float::vecmath_kernel`).
pub(crate) fn kernel_by_name<T: crate::Float>(name: &str) -> Option<SliceKernel<T>> {
    let kernel: SliceKernel<T> = match name {
        "exp" => |x, _, out| exp(x, out),
        "log" => |x, _, out| log(x, out),
        "tanh" => |x, _, out| tanh(x, out),
        "sigmoid" => |x, _, out| sigmoid(x, out),
        "erf" => |x, _, out| erf(x, out),
        "gelu" => |x, _, out| gelu(x, out),
        "gelu_tanh" => |x, _, out| gelu_tanh(x, out),
        "softplus" => |x, _, out| softplus(x, T::ONE, T::from_f64(20.0), out),
        "erf_backward" => |x, g, out| erf_backward(x, g, out),
        "gelu_backward" => |x, g, out| gelu_backward(x, g, out),
        "gelu_tanh_backward" => |x, g, out| gelu_tanh_backward(x, g, out),
        "softplus_backward" => |x, g, out| softplus_backward(x, g, T::ONE, T::from_f64(20.0), out),
        _ => return None,
    };
    Some(kernel)
}

// ---------------------------------------------------------------------------------------------
// The drivers: one dispatch per slice (or per parallel chunk), then a plain loop.

/// An element function, evaluated with or without fused multiply-add.
trait Kernel<T>: Copy + Send + Sync {
    fn eval<const FMA: bool>(self, x: T) -> T;
}

/// An element function of (x, g): g·f′(x).
trait Kernel2<T>: Copy + Send + Sync {
    fn eval<const FMA: bool>(self, x: T, g: T) -> T;
}

macro_rules! kernel {
    ($name:ident, $($call:tt)*) => {
        #[derive(Clone, Copy)]
        struct $name;
        impl<T: ElementFunctions> Kernel<T> for $name {
            #[inline(always)]
            fn eval<const FMA: bool>(self, x: T) -> T {
                ($($call)*)(x)
            }
        }
    };
}

kernel!(ExpKernel, functions::exp::<T, FMA>);
kernel!(LogKernel, functions::log::<T, FMA>);
kernel!(TanhKernel, functions::tanh::<T, FMA>);
kernel!(SigmoidKernel, T::sigmoid::<FMA>);
kernel!(ErfKernel, T::erf::<FMA>);
kernel!(GeluKernel, T::gelu::<FMA>);
kernel!(GeluTanhKernel, T::gelu_tanh::<FMA>);

/// softplus; with `UNIT`, β = 1 as a constant, so that the compiler drops the multiplications
/// and divisions by β (PyTorch's default, and by far the most common case).
#[derive(Clone, Copy)]
struct SoftplusKernel<T, const UNIT: bool> {
    beta: T,
    threshold: T,
}

impl<T: ElementFunctions, const UNIT: bool> Kernel<T> for SoftplusKernel<T, UNIT> {
    #[inline(always)]
    fn eval<const FMA: bool>(self, x: T) -> T {
        let beta = if UNIT { T::ONE } else { self.beta };
        T::softplus::<FMA>(x, beta, self.threshold)
    }
}

macro_rules! derivative_kernel {
    ($name:ident, $function:ident) => {
        #[derive(Clone, Copy)]
        struct $name;
        impl<T: ElementFunctions> Kernel2<T> for $name {
            #[inline(always)]
            fn eval<const FMA: bool>(self, x: T, g: T) -> T {
                g * T::$function::<FMA>(x)
            }
        }
    };
}

derivative_kernel!(ErfDerivativeKernel, erf_derivative);
derivative_kernel!(GeluDerivativeKernel, gelu_derivative);
derivative_kernel!(GeluTanhDerivativeKernel, gelu_tanh_derivative);

#[derive(Clone, Copy)]
struct SoftplusDerivativeKernel<T> {
    beta: T,
    threshold: T,
}

impl<T: ElementFunctions> Kernel2<T> for SoftplusDerivativeKernel<T> {
    #[inline(always)]
    fn eval<const FMA: bool>(self, x: T, g: T) -> T {
        g * T::softplus_derivative::<FMA>(x, self.beta, self.threshold)
    }
}

/// `out[i] = f(x[i])` on the instruction set `arch`.
pub(crate) fn map_with<T: ElementFunctions>(arch: Arch, f: Function<T>, x: &[T], out: &mut [T]) {
    match f {
        Function::Exp => map_kernel(arch, ExpKernel, x, out),
        Function::Log => map_kernel(arch, LogKernel, x, out),
        Function::Tanh => map_kernel(arch, TanhKernel, x, out),
        Function::Sigmoid => map_kernel(arch, SigmoidKernel, x, out),
        Function::Erf => map_kernel(arch, ErfKernel, x, out),
        Function::Gelu => map_kernel(arch, GeluKernel, x, out),
        Function::GeluTanh => map_kernel(arch, GeluTanhKernel, x, out),
        Function::Softplus { beta, threshold } if beta == T::ONE => {
            map_kernel(arch, SoftplusKernel::<T, true> { beta, threshold }, x, out)
        }
        Function::Softplus { beta, threshold } => {
            map_kernel(arch, SoftplusKernel::<T, false> { beta, threshold }, x, out)
        }
    }
}

/// `x[i] = f(x[i])` on the instruction set `arch`.
pub(crate) fn map_in_place_with<T: ElementFunctions>(arch: Arch, f: Function<T>, x: &mut [T]) {
    match f {
        Function::Exp => map_in_place_kernel(arch, ExpKernel, x),
        Function::Log => map_in_place_kernel(arch, LogKernel, x),
        Function::Tanh => map_in_place_kernel(arch, TanhKernel, x),
        Function::Sigmoid => map_in_place_kernel(arch, SigmoidKernel, x),
        Function::Erf => map_in_place_kernel(arch, ErfKernel, x),
        Function::Gelu => map_in_place_kernel(arch, GeluKernel, x),
        Function::GeluTanh => map_in_place_kernel(arch, GeluTanhKernel, x),
        Function::Softplus { beta, threshold } if beta == T::ONE => {
            map_in_place_kernel(arch, SoftplusKernel::<T, true> { beta, threshold }, x)
        }
        Function::Softplus { beta, threshold } => {
            map_in_place_kernel(arch, SoftplusKernel::<T, false> { beta, threshold }, x)
        }
    }
}

/// `out[i] = g[i]·f′(x[i])` on the instruction set `arch`.
pub(crate) fn map_derivative_with<T: ElementFunctions>(
    arch: Arch,
    f: Derivative<T>,
    x: &[T],
    g: &[T],
    out: &mut [T],
) {
    match f {
        Derivative::Erf => map2_kernel(arch, ErfDerivativeKernel, x, g, out),
        Derivative::Gelu => map2_kernel(arch, GeluDerivativeKernel, x, g, out),
        Derivative::GeluTanh => map2_kernel(arch, GeluTanhDerivativeKernel, x, g, out),
        Derivative::Softplus { beta, threshold } => map2_kernel(
            arch,
            SoftplusDerivativeKernel { beta, threshold },
            x,
            g,
            out,
        ),
    }
}

fn map_kernel<T: Real, K: Kernel<T>>(arch: Arch, kernel: K, x: &[T], out: &mut [T]) {
    debug_assert_eq!(x.len(), out.len());
    let len = x.len().min(out.len());
    let (x, out) = (&x[..len], &mut out[..len]);
    if parallel(len) {
        out.par_chunks_mut(PARALLEL_CHUNK)
            .zip(x.par_chunks(PARALLEL_CHUNK))
            .for_each(|(out, x)| arch.dispatch(Map { kernel, x, out }));
    } else {
        arch.dispatch(Map { kernel, x, out });
    }
}

fn map_in_place_kernel<T: Real, K: Kernel<T>>(arch: Arch, kernel: K, x: &mut [T]) {
    if parallel(x.len()) {
        x.par_chunks_mut(PARALLEL_CHUNK)
            .for_each(|x| arch.dispatch(MapInPlace { kernel, x }));
    } else {
        arch.dispatch(MapInPlace { kernel, x });
    }
}

fn map2_kernel<T: Real, K: Kernel2<T>>(arch: Arch, kernel: K, x: &[T], g: &[T], out: &mut [T]) {
    debug_assert_eq!(x.len(), out.len());
    debug_assert_eq!(g.len(), out.len());
    let len = x.len().min(g.len()).min(out.len());
    let (x, g, out) = (&x[..len], &g[..len], &mut out[..len]);
    if parallel(len) {
        out.par_chunks_mut(PARALLEL_CHUNK)
            .zip(x.par_chunks(PARALLEL_CHUNK))
            .zip(g.par_chunks(PARALLEL_CHUNK))
            .for_each(|((out, x), g)| arch.dispatch(Map2 { kernel, x, g, out }));
    } else {
        arch.dispatch(Map2 { kernel, x, g, out });
    }
}

/// The loop of [`map_kernel`], compiled once per instruction set by [`Arch::dispatch`].
struct Map<'a, T, K> {
    kernel: K,
    x: &'a [T],
    out: &'a mut [T],
}

impl<T: Real, K: Kernel<T>> WithSimd for Map<'_, T, K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        #[inline(always)]
        fn run<T: Real, K: Kernel<T>, const FMA: bool>(kernel: K, x: &[T], out: &mut [T]) {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = kernel.eval::<FMA>(v);
            }
        }
        if S::IS_SCALAR {
            run::<T, K, false>(self.kernel, self.x, self.out);
        } else {
            run::<T, K, true>(self.kernel, self.x, self.out);
        }
    }
}

struct MapInPlace<'a, T, K> {
    kernel: K,
    x: &'a mut [T],
}

impl<T: Real, K: Kernel<T>> WithSimd for MapInPlace<'_, T, K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        #[inline(always)]
        fn run<T: Real, K: Kernel<T>, const FMA: bool>(kernel: K, x: &mut [T]) {
            for v in x.iter_mut() {
                *v = kernel.eval::<FMA>(*v);
            }
        }
        if S::IS_SCALAR {
            run::<T, K, false>(self.kernel, self.x);
        } else {
            run::<T, K, true>(self.kernel, self.x);
        }
    }
}

struct Map2<'a, T, K> {
    kernel: K,
    x: &'a [T],
    g: &'a [T],
    out: &'a mut [T],
}

impl<T: Real, K: Kernel2<T>> WithSimd for Map2<'_, T, K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        #[inline(always)]
        fn run<T: Real, K: Kernel2<T>, const FMA: bool>(
            kernel: K,
            x: &[T],
            g: &[T],
            out: &mut [T],
        ) {
            for ((o, &v), &g) in out.iter_mut().zip(x).zip(g) {
                *o = kernel.eval::<FMA>(v, g);
            }
        }
        if S::IS_SCALAR {
            run::<T, K, false>(self.kernel, self.x, self.g, self.out);
        } else {
            run::<T, K, true>(self.kernel, self.x, self.g, self.out);
        }
    }
}
