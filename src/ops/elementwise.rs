//! Element-wise math: `sqrt`, `rsqrt`, `square`, `reciprocal`, `abs`, `sin`, `cos`, `log1p`,
//! `expm1`, `erf`, `pow_scalar`, `clamp`, and the tensor power `pow` (with broadcasting).
//!
//! Each backward multiplies `g` element-wise by the function's derivative, written as PyTorch's
//! `derivatives.yaml` writes it (in terms of the output y where that is cheaper):
//!
//! | op | y | ∂L/∂x |
//! |---|---|---|
//! | `sqrt` | √x | g / (2y) |
//! | `rsqrt` | 1/√x | −½ g y³ |
//! | `square` | x² | g · 2x |
//! | `reciprocal` | 1/x | −g y² |
//! | `abs` | \|x\| | g · sign(x), sign(0) = sign(NaN) = 0 |
//! | `sin` | sin x | g cos x |
//! | `cos` | cos x | −g sin x |
//! | `log1p` | ln(1 + x) | g / (1 + x) |
//! | `expm1` | eˣ − 1 | g (y + 1) |
//! | `erf` | erf x | g · (2/√π) e^(−x²) |
//! | `pow_scalar(e)` | xᵉ | g · e xᵉ⁻¹ (0 when e = 0) |
//! | `clamp(lo, hi)` | min(max(x, lo), hi) | g where lo < x < hi, else 0 |
//!
//! The forward and backward of every function is one loop over a slice (see [`Math::forward`] and
//! [`Math::backward`]), so that a vectorised kernel (`crate::kernels::vecmath`) can replace the
//! scalar function slice by slice. Large tensors are processed in fixed chunks on several threads.
//!
//! Functions the [`Float`] trait does not carry (sin, cos, log1p, expm1, pow) are evaluated in
//! the tensor's own precision: `f32` functions for `f32`, `f64` ones for `f64`. `erf` and its
//! derivative are the vectorised kernels of `crate::kernels::vecmath` (within 1 ulp).

use rayon::prelude::*;
use smallvec::smallvec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars, grad_if};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels::vecmath;
use crate::shape::{Shape, for_each_broadcast};
use crate::tape::Var;
use crate::tensor::{PARALLEL_CHUNK, Tensor, parallel};

// ---------------------------------------------------------------------------------------------
// Scalar functions in the element type's own precision.

/// Evaluates `f32_fn` for `f32` tensors and `f64_fn` for `f64` ones. `T::BYTES` is a constant, so
/// the branch disappears at compile time; for `f32` both conversions are exact.
#[inline(always)]
fn in_own_precision<T: Float>(x: T, f32_fn: impl Fn(f32) -> f32, f64_fn: impl Fn(f64) -> f64) -> T {
    if T::BYTES == 4 {
        T::from_f64(f64::from(f32_fn(x.to_f64() as f32)))
    } else {
        T::from_f64(f64_fn(x.to_f64()))
    }
}

/// sin x.
#[inline(always)]
pub(super) fn sin<T: Float>(x: T) -> T {
    in_own_precision(x, f32::sin, f64::sin)
}

/// cos x.
#[inline(always)]
pub(super) fn cos<T: Float>(x: T) -> T {
    in_own_precision(x, f32::cos, f64::cos)
}

/// ln(1 + x), accurate near 0.
#[inline(always)]
pub(super) fn ln_1p<T: Float>(x: T) -> T {
    in_own_precision(x, f32::ln_1p, f64::ln_1p)
}

/// eˣ − 1, accurate near 0.
#[inline(always)]
pub(super) fn exp_m1<T: Float>(x: T) -> T {
    in_own_precision(x, f32::exp_m1, f64::exp_m1)
}

/// xᵉ as C's `pow` computes it (pow(x, 0) = 1 even for NaN x; pow(1, e) = 1).
#[inline(always)]
fn powf<T: Float>(x: T, e: T) -> T {
    if T::BYTES == 4 {
        T::from_f64(f64::from((x.to_f64() as f32).powf(e.to_f64() as f32)))
    } else {
        T::from_f64(x.to_f64().powf(e.to_f64()))
    }
}

/// sign(x) as PyTorch's `sgn` for real numbers: 1, −1, or 0 for ±0 and NaN.
#[inline(always)]
fn sign<T: Float>(x: T) -> T {
    if x > T::ZERO {
        T::ONE
    } else if x < T::ZERO {
        -T::ONE
    } else {
        T::ZERO
    }
}

// ---------------------------------------------------------------------------------------------
// Slice loops shared with `activation.rs`.

/// `out[i] = f(x[i])`: one loop the compiler can vectorise when `f` is simple.
#[inline(always)]
pub(super) fn each<T: Float>(x: &[T], out: &mut [T], f: impl Fn(T) -> T) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = f(x);
    }
}

/// `out[i] = f(x[i], y[i], g[i])`: the shape of every unary backward rule.
#[inline(always)]
pub(super) fn each3<T: Float>(x: &[T], y: &[T], g: &[T], out: &mut [T], f: impl Fn(T, T, T) -> T) {
    for (((o, &x), &y), &g) in out.iter_mut().zip(x).zip(y).zip(g) {
        *o = f(x, y, g);
    }
}

/// A fresh tensor of `x`'s shape filled by `kernel(x_chunk, out_chunk)`, chunk by chunk: in one
/// call for small tensors, in fixed chunks of [`PARALLEL_CHUNK`] on several threads for large ones
/// (the chunks are the same whatever the thread count, and element-wise results do not depend on
/// them anyway).
pub(super) fn map_slices<T: Float>(
    op: &'static str,
    x: &Tensor<T>,
    kernel: impl Fn(&[T], &mut [T]) + Sync,
) -> Result<Tensor<T>> {
    let mut out = Tensor::overwritable(op, x.shape().clone())?;
    if parallel(x.numel()) {
        out.data_mut()
            .par_chunks_mut(PARALLEL_CHUNK)
            .zip(x.data().par_chunks(PARALLEL_CHUNK))
            .for_each(|(o, x)| kernel(x, o));
    } else {
        kernel(x.data(), out.data_mut());
    }
    Ok(out)
}

/// The backward counterpart of [`map_slices`]: `kernel(x, y, g, dx)` over chunks of four tensors
/// of one shape (input, output, output gradient, input gradient).
pub(super) fn map_slices3<T: Float>(
    op: &'static str,
    x: &Tensor<T>,
    y: &Tensor<T>,
    g: &Tensor<T>,
    kernel: impl Fn(&[T], &[T], &[T], &mut [T]) + Sync,
) -> Result<Tensor<T>> {
    let mut dx = Tensor::overwritable(op, g.shape().clone())?;
    if parallel(g.numel()) {
        dx.data_mut()
            .par_chunks_mut(PARALLEL_CHUNK)
            .zip(x.data().par_chunks(PARALLEL_CHUNK))
            .zip(y.data().par_chunks(PARALLEL_CHUNK))
            .zip(g.data().par_chunks(PARALLEL_CHUNK))
            .for_each(|(((d, x), y), g)| kernel(x, y, g, d));
    } else {
        kernel(x.data(), y.data(), g.data(), dx.data_mut());
    }
    Ok(dx)
}

/// A constant (no gradient) of `x`'s shape with `f` applied to every element: the masks and
/// piecewise-constant factors the graph backward rules multiply by.
pub(super) fn constant_of<'t, T: Float>(
    cx: &GraphCx<'t, T>,
    x: &Tensor<T>,
    f: impl Fn(T) -> T + Sync,
) -> Result<Var<'t, T>> {
    Ok(cx.tape().constant(x.map(f)?))
}

/// `T::from_f64(1.0)`, …: a constant in the element type, rounded as PyTorch rounds its
/// `scalar_t(M_SQRT1_2)`-style constants.
#[inline(always)]
pub(super) fn c<T: Float>(x: f64) -> T {
    T::from_f64(x)
}

/// The error for a hyper-parameter outside its range.
pub(super) fn invalid(
    op: &'static str,
    name: &'static str,
    value: f64,
    reason: &'static str,
) -> Error {
    Error::InvalidHyperparameter {
        op,
        name,
        value,
        reason,
    }
}

// ---------------------------------------------------------------------------------------------
// The parameterless functions.

/// Which function; the backward rule saves only this (x and y are on the tape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Math {
    Sqrt,
    Rsqrt,
    Square,
    Reciprocal,
    Abs,
    Sin,
    Cos,
    Log1p,
    Expm1,
    Erf,
}

impl Math {
    fn name(self) -> &'static str {
        match self {
            Math::Sqrt => "sqrt",
            Math::Rsqrt => "rsqrt",
            Math::Square => "square",
            Math::Reciprocal => "reciprocal",
            Math::Abs => "abs",
            Math::Sin => "sin",
            Math::Cos => "cos",
            Math::Log1p => "log1p",
            Math::Expm1 => "expm1",
            Math::Erf => "erf",
        }
    }

    /// y = f(x) over a slice: one loop per function (the dispatch is outside the loop).
    fn forward<T: Float>(self, x: &[T], y: &mut [T]) {
        match self {
            Math::Sqrt => each(x, y, |x| x.sqrt()),
            Math::Rsqrt => each(x, y, |x| T::ONE / x.sqrt()),
            Math::Square => each(x, y, |x| x * x),
            Math::Reciprocal => each(x, y, |x| T::ONE / x),
            Math::Abs => each(x, y, |x| x.abs()),
            Math::Sin => each(x, y, sin),
            Math::Cos => each(x, y, cos),
            Math::Log1p => each(x, y, ln_1p),
            Math::Expm1 => each(x, y, exp_m1),
            Math::Erf => vecmath::erf(x, y),
        }
    }

    /// dx = g · f′(x) over a slice, each formula as PyTorch evaluates it.
    fn backward<T: Float>(self, x: &[T], y: &[T], g: &[T], dx: &mut [T]) {
        let two = c::<T>(2.0);
        match self {
            // grad / (2 * result)
            Math::Sqrt => each3(x, y, g, dx, |_, y, g| g / (two * y)),
            // -0.5 * grad * result.pow(3)
            Math::Rsqrt => each3(x, y, g, dx, |_, y, g| (c::<T>(-0.5) * g) * (y * y * y)),
            // grad * (2 * self)
            Math::Square => each3(x, y, g, dx, |x, _, g| g * (two * x)),
            // -grad * (result * result)
            Math::Reciprocal => each3(x, y, g, dx, |_, y, g| -g * (y * y)),
            // grad * self.sgn()
            Math::Abs => each3(x, y, g, dx, |x, _, g| g * sign(x)),
            Math::Sin => each3(x, y, g, dx, |x, _, g| g * cos(x)),
            Math::Cos => each3(x, y, g, dx, |x, _, g| g * -sin(x)),
            // grad / (self + 1)
            Math::Log1p => each3(x, y, g, dx, |x, _, g| g / (x + T::ONE)),
            // grad * (result + 1)
            Math::Expm1 => each3(x, y, g, dx, |_, y, g| g * (y + T::ONE)),
            // 2 / sqrt(pi) * exp(-(self * self)) * grad, with −x² carried exactly into the
            // exponential (PyTorch rounds it first: a relative error of up to ~x²·2⁻²⁴ in f32).
            Math::Erf => vecmath::erf_backward(x, g, dx),
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    fn math(self, f: Math) -> Result<Var<'t, T>> {
        let value = map_slices(f.name(), &self.value(), |x, y| f.forward(x, y))?;
        Ok(self
            .tape
            .record(f.name(), value, &[self], || MathBackward(f)))
    }

    /// √x element-wise (NaN below 0, as IEEE says). ∂L/∂x = g / (2y), which is +∞·sign(g) at
    /// x = 0 as in PyTorch.
    ///
    /// PyTorch equivalent: `torch.sqrt(x)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![4.0f64, 9.0], &[2])?);
    /// let y = x.sqrt()?;
    /// assert_eq!(y.value().data(), &[2.0, 3.0]);
    /// assert_eq!(y.sum()?.backward()?.wrt(x)?.data(), &[0.25, 1.0 / 6.0]); // 1/(2√x)
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn sqrt(self) -> Result<Var<'t, T>> {
        self.math(Math::Sqrt)
    }

    /// 1/√x element-wise. ∂L/∂x = −½ g y³.
    ///
    /// PyTorch equivalent: `torch.rsqrt(x)`.
    pub fn rsqrt(self) -> Result<Var<'t, T>> {
        self.math(Math::Rsqrt)
    }

    /// x² element-wise. ∂L/∂x = 2x g.
    ///
    /// PyTorch equivalent: `torch.square(x)`.
    pub fn square(self) -> Result<Var<'t, T>> {
        self.math(Math::Square)
    }

    /// 1/x element-wise (±∞ at ±0). ∂L/∂x = −g y².
    ///
    /// PyTorch equivalent: `torch.reciprocal(x)`.
    pub fn reciprocal(self) -> Result<Var<'t, T>> {
        self.math(Math::Reciprocal)
    }

    /// |x| element-wise. ∂L/∂x = g · sign(x), with sign(±0) = 0 (and sign(NaN) = 0), as
    /// PyTorch's `sgn`: the gradient at the kink is 0.
    ///
    /// PyTorch equivalent: `torch.abs(x)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![-2.0f64, 0.0, 3.0], &[3])?);
    /// let grads = x.abs()?.sum()?.backward()?;
    /// assert_eq!(grads.wrt(x)?.data(), &[-1.0, 0.0, 1.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn abs(self) -> Result<Var<'t, T>> {
        self.math(Math::Abs)
    }

    /// sin x element-wise (radians). ∂L/∂x = g cos x.
    ///
    /// PyTorch equivalent: `torch.sin(x)`.
    pub fn sin(self) -> Result<Var<'t, T>> {
        self.math(Math::Sin)
    }

    /// cos x element-wise (radians). ∂L/∂x = −g sin x.
    ///
    /// PyTorch equivalent: `torch.cos(x)`.
    pub fn cos(self) -> Result<Var<'t, T>> {
        self.math(Math::Cos)
    }

    /// ln(1 + x) element-wise, accurate for small x. ∂L/∂x = g / (1 + x).
    ///
    /// PyTorch equivalent: `torch.log1p(x)`.
    pub fn log1p(self) -> Result<Var<'t, T>> {
        self.math(Math::Log1p)
    }

    /// eˣ − 1 element-wise, accurate for small x. ∂L/∂x = g (y + 1).
    ///
    /// PyTorch equivalent: `torch.expm1(x)`.
    pub fn expm1(self) -> Result<Var<'t, T>> {
        self.math(Math::Expm1)
    }

    /// The error function erf x = (2/√π) ∫₀ˣ e^(−t²) dt element-wise. ∂L/∂x = g · (2/√π) e^(−x²).
    ///
    /// PyTorch equivalent: `torch.erf(x)`.
    pub fn erf(self) -> Result<Var<'t, T>> {
        self.math(Math::Erf)
    }
}

/// Saves only which function it was: x and y are on the tape.
#[derive(Debug)]
struct MathBackward(Math);

impl<T: Float> Backward<T> for MathBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let f = self.0;
        let dx = map_slices3(f.name(), cx.input(0), cx.output(), g, |x, y, g, dx| {
            f.backward(x, y, g, dx)
        })?;
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (x, y) = (cx.input(0), cx.output());
        let two = c::<T>(2.0);
        let dx = match self.0 {
            Math::Sqrt => g.div(y.mul_scalar(two)?)?,
            Math::Rsqrt => g.mul_scalar(c(-0.5))?.mul(y.mul(y)?.mul(y)?)?,
            Math::Square => g.mul(x.mul_scalar(two)?)?,
            Math::Reciprocal => g.neg()?.mul(y.mul(y)?)?,
            // sign(x) is constant where it exists: the second derivative of |x| is 0.
            Math::Abs => g.mul(constant_of(cx, &x.value(), sign)?)?,
            Math::Sin => g.mul(x.cos()?)?,
            Math::Cos => g.mul(x.sin()?.neg()?)?,
            Math::Log1p => g.div(x.add_scalar(T::ONE)?)?,
            Math::Expm1 => g.mul(y.add_scalar(T::ONE)?)?,
            Math::Erf => x
                .square()?
                .neg()?
                .exp()?
                .mul_scalar(c(std::f64::consts::FRAC_2_SQRT_PI))?
                .mul(g)?,
        };
        Ok(smallvec![Some(dx)])
    }
}

// ---------------------------------------------------------------------------------------------
// x to a constant power.

/// xᵉ over a slice, with PyTorch's special cases (`pow_tensor_scalar`): e = 0 gives 1 everywhere
/// (NaN too), e = 1 copies, ½ is `sqrt`, −½ is `rsqrt`, −1 is `reciprocal`, 2, 3 and −2 are
/// products; any other e calls `pow`. The special cases differ from `pow` in their rounding and at
/// a few points (√(−0) = −0 but pow(−0, ½) = +0; √(−∞) = NaN but pow(−∞, ½) = +∞).
fn pow_scalar_slice<T: Float>(x: &[T], e: T, out: &mut [T]) {
    let is = |v: f64| e == c::<T>(v);
    if is(0.0) {
        out.fill(T::ONE);
    } else if is(1.0) {
        out.copy_from_slice(x);
    } else if is(0.5) {
        each(x, out, |x| x.sqrt());
    } else if is(-0.5) {
        each(x, out, |x| T::ONE / x.sqrt());
    } else if is(-1.0) {
        each(x, out, |x| T::ONE / x);
    } else if is(2.0) {
        each(x, out, |x| x * x);
    } else if is(3.0) {
        each(x, out, |x| x * x * x);
    } else if is(-2.0) {
        each(x, out, |x| T::ONE / (x * x));
    } else {
        each(x, out, |x| powf(x, e));
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// xᵉ element-wise for a constant exponent e. ∂L/∂x = g · e · xᵉ⁻¹, and exactly 0 when e = 0
    /// (even at x = 0, where e · xᵉ⁻¹ would be 0 · ∞): PyTorch's `pow_backward`. Elsewhere at
    /// x = 0 the formula gives what it gives, as in PyTorch: 0 for e > 1, g for e = 1, ±∞ for
    /// 0 < e < 1 (with the sign of g, and of −0).
    ///
    /// Any e is accepted, NaN included (then every element is NaN except pow(1, NaN) = 1), as in
    /// PyTorch. e = ½, −½, −1, 2, 3, −2 take PyTorch's exact special cases (`sqrt`, products).
    ///
    /// PyTorch equivalent: `x ** e` (`torch.pow(x, e)`).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![0.0f64, 2.0, 4.0], &[3])?);
    /// let y = x.pow_scalar(1.5)?;
    /// assert_eq!(y.value().data(), &[0.0, 2.0f64.powf(1.5), 8.0]);
    /// assert_eq!(y.sum()?.backward()?.wrt(x)?.data(), &[0.0, 1.5 * 2.0f64.sqrt(), 3.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn pow_scalar(self, e: T) -> Result<Var<'t, T>> {
        let value = map_slices("pow_scalar", &self.value(), |x, y| {
            pow_scalar_slice(x, e, y)
        })?;
        Ok(self
            .tape
            .record("pow_scalar", value, &[self], || PowScalarBackward { e }))
    }
}

/// Saves the exponent.
#[derive(Debug)]
struct PowScalarBackward<T> {
    e: T,
}

impl<T: Float> Backward<T> for PowScalarBackward<T> {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let e = self.e;
        if e == T::ZERO {
            return Ok(smallvec![Some(g.zeros_like()?)]);
        }
        // grad * (e * self.pow(e - 1)), the power with the same special cases as the forward.
        let dx = map_slices3("pow_scalar", cx.input(0), cx.output(), g, |x, _, g, dx| {
            pow_scalar_slice(x, e - T::ONE, dx);
            for (d, &g) in dx.iter_mut().zip(g) {
                *d = g * (e * *d);
            }
        })?;
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        if self.e == T::ZERO {
            return Ok(smallvec![Some(cx.tape().constant(g.value().zeros_like()?))]);
        }
        let x = cx.input(0);
        let dx = g.mul(x.pow_scalar(self.e - T::ONE)?.mul_scalar(self.e)?)?;
        Ok(smallvec![Some(dx)])
    }

    fn saved_bytes(&self) -> usize {
        std::mem::size_of::<T>()
    }

    fn describe_saved(&self) -> String {
        format!("exponent {}", self.e)
    }
}

// ---------------------------------------------------------------------------------------------
// clamp.

/// min(max(x, lo), hi) with NaN passing through (`NaN < lo` is false), and hi winning when
/// lo > hi, as `torch.clamp`.
#[inline(always)]
fn clamp_value<T: Float>(x: T, lo: Option<T>, hi: Option<T>) -> T {
    let x = match lo {
        Some(lo) if x < lo => lo,
        _ => x,
    };
    match hi {
        Some(hi) if x > hi => hi,
        _ => x,
    }
}

/// Whether the gradient passes at x: strictly inside (lo, hi), as PyTorch 2.15's
/// `clamp_backward` for number bounds (a missing bound does not constrain; NaN is never inside).
#[inline(always)]
fn clamp_passes<T: Float>(x: T, lo: Option<T>, hi: Option<T>) -> bool {
    lo.is_none_or(|lo| x > lo) && hi.is_none_or(|hi| x < hi) && !x.is_nan()
}

impl<'t, T: Float> Var<'t, T> {
    /// Clamps every element into `[min, max]` (either bound may be `None`; a NaN element stays
    /// NaN; if min > max every element becomes max, as `torch.clamp` documents).
    ///
    /// ∂L/∂x = g where min < x < max **strictly**, 0 elsewhere (also at x = min and x = max, and
    /// for NaN): what PyTorch 2.15's `clamp_backward` computes for number bounds. (Older PyTorch
    /// passed the gradient at the bounds; the golden file pins the behaviour of the PyTorch that
    /// wrote it.) The second derivative is 0.
    ///
    /// Errors: both bounds `None` is an [`Error::InvalidArgument`] (PyTorch: "At least one of 'min'
    /// or 'max' must not be None"); a NaN bound is an [`Error::InvalidHyperparameter`] (PyTorch
    /// would fill the tensor with NaN).
    ///
    /// PyTorch equivalent: `torch.clamp(x, min, max)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![-1.0f64, 0.0, 0.5, 1.0, 2.0], &[5])?);
    /// let y = x.clamp(Some(0.0), Some(1.0))?;
    /// assert_eq!(y.value().data(), &[0.0, 0.0, 0.5, 1.0, 1.0]);
    /// assert_eq!(y.sum()?.backward()?.wrt(x)?.data(), &[0.0, 0.0, 1.0, 0.0, 0.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn clamp(self, min: Option<T>, max: Option<T>) -> Result<Var<'t, T>> {
        if min.is_none() && max.is_none() {
            return Err(Error::InvalidArgument {
                op: "clamp",
                reason: "at least one of min and max must be given".into(),
            });
        }
        for (name, bound) in [("min", min), ("max", max)] {
            if let Some(b) = bound
                && b.is_nan()
            {
                return Err(invalid("clamp", name, b.to_f64(), "must not be NaN"));
            }
        }
        let value = map_slices("clamp", &self.value(), |x, y| {
            each(x, y, |x| clamp_value(x, min, max))
        })?;
        Ok(self
            .tape
            .record("clamp", value, &[self], || ClampBackward { min, max }))
    }
}

/// Saves the bounds.
#[derive(Debug)]
struct ClampBackward<T> {
    min: Option<T>,
    max: Option<T>,
}

impl<T: Float> Backward<T> for ClampBackward<T> {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (lo, hi) = (self.min, self.max);
        // where(inside, grad, 0): a selection, so a NaN gradient outside does not leak through.
        let dx = map_slices3("clamp", cx.input(0), cx.output(), g, |x, y, g, dx| {
            each3(x, y, g, dx, |x, _, g| {
                if clamp_passes(x, lo, hi) { g } else { T::ZERO }
            })
        })?;
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (lo, hi) = (self.min, self.max);
        let outside = constant_of(cx, &cx.input(0).value(), |x| {
            if clamp_passes(x, lo, hi) {
                T::ZERO
            } else {
                T::ONE
            }
        })?;
        Ok(smallvec![Some(g.masked_fill(outside, T::ZERO)?)])
    }

    fn saved_bytes(&self) -> usize {
        2 * std::mem::size_of::<Option<T>>()
    }

    fn describe_saved(&self) -> String {
        format!("min {:?}, max {:?}", self.min, self.max)
    }
}

// ---------------------------------------------------------------------------------------------
// x to a tensor power, with broadcasting.

impl<'t, T: Float> Var<'t, T> {
    /// xᵉ element-wise with a tensor exponent, broadcasting x and e against each other.
    ///
    /// ∂L/∂x = g · e · xᵉ⁻¹, and 0 where e = 0; ∂L/∂e = g · xᵉ · ln x, and 0 where x = 0 and e ≥ 0
    /// (where xᵉ ln x → 0). Each is summed back to its operand's shape. These are PyTorch's
    /// `pow_backward_self` and `pow_backward_exponent`, masks included; elsewhere the formula
    /// gives what it gives (a negative base has ln x = NaN, so ∂L/∂e is NaN there, as in PyTorch).
    ///
    /// PyTorch equivalent: `torch.pow(x, e)` (`x ** e`).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![2.0f64, 3.0], &[2])?);
    /// let e = tape.leaf(Tensor::from_vec(vec![0.0f64, 2.0], &[2])?);
    /// let y = x.pow(e)?;
    /// assert_eq!(y.value().data(), &[1.0, 9.0]);
    /// let g = y.sum()?.backward()?;
    /// assert_eq!(g.wrt(x)?.data(), &[0.0, 6.0]);                    // e·x^(e−1), 0 where e = 0
    /// assert_eq!(g.wrt(e)?.data(), &[2.0f64.ln(), 9.0 * 3.0f64.ln()]); // xᵉ·ln x
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn pow(self, exponent: Var<'t, T>) -> Result<Var<'t, T>> {
        self.same_tape(exponent, "pow")?;
        let value = self
            .value()
            .zip_map(&exponent.value(), "pow", |x, e| powf(x, e))?;
        Ok(self
            .tape
            .record("pow", value, &[self, exponent], || PowBackward))
    }
}

/// Visits every output element of a broadcasting binary op with the flat offsets into both
/// operands: `visit(out_index, lhs_index, rhs_index)`. A plain counting loop when no operand is
/// broadcast, the odometer of [`for_each_broadcast`] otherwise.
pub(super) fn for_each_pair(
    out: &Shape,
    lhs: &Shape,
    rhs: &Shape,
    mut visit: impl FnMut(usize, usize, usize),
) {
    if lhs == out && rhs == out {
        for i in 0..out.numel() {
            visit(i, i, i);
        }
    } else {
        let sa = lhs.broadcast_strides(out);
        let sb = rhs.broadcast_strides(out);
        for_each_broadcast(out, &sa, &sb, visit);
    }
}

/// `d[o] = f(g[o], a[i], b[j])` over the broadcast of `a` and `b` to `out` (the shape of `g` and
/// `d`): a zipped loop over contiguous slices when nothing is broadcast, [`for_each_pair`]
/// otherwise.
pub(super) fn zip_broadcast3<T: Float>(
    out: &Shape,
    g: &[T],
    a: &Tensor<T>,
    b: &Tensor<T>,
    d: &mut [T],
    f: impl Fn(T, T, T) -> T,
) {
    if a.shape() == out && b.shape() == out {
        for (((d, &g), &a), &b) in d.iter_mut().zip(g).zip(a.data()).zip(b.data()) {
            *d = f(g, a, b);
        }
    } else {
        let (ad, bd) = (a.data(), b.data());
        for_each_pair(out, a.shape(), b.shape(), |o, i, j| {
            d[o] = f(g[o], ad[i], bd[j])
        });
    }
}

/// Saves nothing: x, e and y = xᵉ are on the tape.
#[derive(Debug)]
struct PowBackward;

impl<T: Float> Backward<T> for PowBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (x, e, y) = (cx.input(0), cx.input(1), cx.output());
        let out = g.shape();
        let grad_x = grad_if(cx.needs_grad(0), || {
            let mut d = Tensor::overwritable("pow", out.clone())?;
            // where(e == 0, 0, grad * (e * x.pow(e - 1)))
            zip_broadcast3(out, g.data(), x, e, d.data_mut(), |g, x, e| {
                if e == T::ZERO {
                    T::ZERO
                } else {
                    g * (e * powf(x, e - T::ONE))
                }
            });
            d.into_sum_to(x.shape())
        })?;
        let grad_e = grad_if(cx.needs_grad(1), || {
            let mut d = Tensor::overwritable("pow", out.clone())?;
            let (xd, ed, gd, yd, dd) = (x.data(), e.data(), g.data(), y.data(), d.data_mut());
            // grad * where(x == 0 & e >= 0, 0, result * log(x))
            for_each_pair(out, x.shape(), e.shape(), |o, i, j| {
                let (xv, ev) = (xd[i], ed[j]);
                dd[o] = gd[o]
                    * if xv == T::ZERO && ev >= T::ZERO {
                        T::ZERO
                    } else {
                        yd[o] * xv.ln()
                    };
            });
            d.into_sum_to(e.shape())
        })?;
        Ok(smallvec![grad_x, grad_e])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (x, e, y) = (cx.input(0), cx.input(1), cx.output());
        let tape = cx.tape();
        let zero = || tape.constant(Tensor::scalar(T::ZERO));
        let grad_x = grad_if(cx.needs_grad(0), || {
            let e_is_zero = e.eq_scalar(T::ZERO)?;
            let full = g.mul(e.mul(x.pow(e.add_scalar(-T::ONE)?)?)?)?;
            e_is_zero.where_(zero(), full)?.sum_to(&x.shape())
        })?;
        let grad_e = grad_if(cx.needs_grad(1), || {
            let (xv, ev) = (x.value(), e.value());
            let limit = xv.zip_map(&ev, "pow", |x, e| {
                if x == T::ZERO && e >= T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            })?;
            let limit = tape.constant(limit);
            g.mul(limit.where_(zero(), y.mul(x.log()?)?)?)?
                .sum_to(&e.shape())
        })?;
        Ok(smallvec![grad_x, grad_e])
    }
}
