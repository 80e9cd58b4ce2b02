//! Activation functions: `gelu`, `gelu_tanh`, `silu`, `softplus`, `leaky_relu`, `elu`, `hardtanh`.
//!
//! Each forward and backward is one loop per function over a slice. `gelu`, `gelu_tanh`,
//! `softplus` and their derivatives are the vectorised kernels of `crate::kernels::vecmath` (within
//! 1–2 ulp of the exact value, also where PyTorch's formulas cancel, e.g. gelu at x < −5); `silu`
//! and `elu`'s derivative take σ and eˣ from them; the rest is the formula of PyTorch's CPU kernel
//! (`Activation.cpp`), evaluated in the same order. With Φ the standard normal CDF and φ its
//! density:
//!
//! | op | y | ∂L/∂x |
//! |---|---|---|
//! | `gelu` | x Φ(x) | g (Φ(x) + x φ(x)) |
//! | `gelu_tanh` | ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³) | g (½(1 + tanh u) + ½x(1 − tanh²u) u′) |
//! | `silu` | x σ(x) | g σ(x)(1 + x(1 − σ(x))) |
//! | `softplus(β, t)` | ln(1 + e^(βx))/β, or x where βx > t | g e^(βx)/(1 + e^(βx)), or g |
//! | `leaky_relu(s)` | x if x > 0 else s x | g if x > 0 else s g |
//! | `elu(α)` | x if x > 0 else α(eˣ − 1) | g if x > 0 else g α eˣ |
//! | `hardtanh(lo, hi)` | min(max(x, lo), hi) | g where lo < x < hi, else 0 |
//!
//! Kinks follow PyTorch: `leaky_relu` takes the left slope at 0 (its test is x > 0), `elu` the left
//! branch (x ≤ 0, so α at 0), `hardtanh` passes no gradient at either bound.
//!
//! At a NaN input PyTorch's vectorised kernels and their scalar tails (the last few elements of a
//! tensor) disagree for `elu` and `hardtanh`, so the gradient there depends on the tensor's length;
//! we take the vectorised answer everywhere: `elu` gives NaN, `hardtanh` gives 0.

use smallvec::smallvec;

use super::elementwise::{c, constant_of, each, each3, exp_m1, invalid, map_slices, map_slices3};
use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::Result;
use crate::kernels::vecmath;
use crate::tape::Var;
use crate::tensor::Tensor;

/// √½, GELU's scale inside erf (`M_SQRT1_2`).
const SQRT_HALF: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1/√(2π), the normal density's factor (`M_2_SQRTPI * M_SQRT1_2 * 0.5`).
const INV_SQRT_2PI: f64 = std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2 * 0.5;
/// √(2/π), the tanh approximation's scale (`M_SQRT2 * M_2_SQRTPI * 0.5`).
const SQRT_2_OVER_PI: f64 = std::f64::consts::SQRT_2 * std::f64::consts::FRAC_2_SQRT_PI * 0.5;
/// The cubic coefficient of the tanh approximation.
const KAPPA: f64 = 0.044715;

/// Whether softplus is on its linear part at βx (with z = e^(βx)): above the threshold, as
/// PyTorch, and also where z overflows (only possible with a threshold above ~88 in f32, ~709 in
/// f64), where ln(1 + z)/β equals x to within rounding and z/(z + 1) is 1 — PyTorch computes ∞ and
/// ∞/∞ = NaN there.
#[inline(always)]
fn softplus_is_linear<T: Float>(bx: T, z: T, threshold: T) -> bool {
    bx > threshold || (!z.is_finite() && !bx.is_nan())
}

/// Which activation, with its hyper-parameters; the backward rule saves this and nothing else.
#[derive(Debug, Clone, Copy)]
enum Activation<T> {
    Gelu,
    GeluTanh,
    Silu,
    Softplus { beta: T, threshold: T },
    LeakyRelu { slope: T },
    Elu { alpha: T },
    Hardtanh { min: T, max: T },
}

impl<T: Float> Activation<T> {
    fn name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::Silu => "silu",
            Activation::Softplus { .. } => "softplus",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
            Activation::Hardtanh { .. } => "hardtanh",
        }
    }

    /// y = f(x) over a slice.
    fn forward(self, x: &[T], y: &mut [T]) {
        match self {
            Activation::Gelu => vecmath::gelu(x, y),
            Activation::GeluTanh => vecmath::gelu_tanh(x, y),
            // x·σ(x) (PyTorch: x / (1 + exp(-x)), the same value within an ulp or so)
            Activation::Silu => {
                vecmath::sigmoid(x, y);
                for (y, &x) in y.iter_mut().zip(x) {
                    *y *= x;
                }
            }
            // (x * beta) > threshold ? x : log1p(exp(x * beta)) / beta
            Activation::Softplus { beta, threshold } => vecmath::softplus(x, beta, threshold, y),
            // x > 0 ? x : x * slope
            Activation::LeakyRelu { slope } => {
                each(x, y, |x| if x > T::ZERO { x } else { x * slope })
            }
            // x <= 0 ? expm1(x) * alpha : x
            Activation::Elu { alpha } => {
                each(x, y, |x| if x <= T::ZERO { exp_m1(x) * alpha } else { x })
            }
            Activation::Hardtanh { min, max } => each(x, y, |x| {
                if x < min {
                    min
                } else if x > max {
                    max
                } else {
                    x
                }
            }),
        }
    }

    /// dx over a slice, from x and g (and y, unused by these formulas).
    fn backward(self, x: &[T], y: &[T], g: &[T], dx: &mut [T]) {
        let one = T::ONE;
        match self {
            Activation::Gelu => vecmath::gelu_backward(x, g, dx),
            Activation::GeluTanh => vecmath::gelu_tanh_backward(x, g, dx),
            // g·σ(x)·(1 + x(1 − σ(x))), σ(x) computed into dx first.
            Activation::Silu => {
                vecmath::sigmoid(x, dx);
                for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                    let sigmoid = *d;
                    *d = g * sigmoid * (one + x * (one - sigmoid));
                }
            }
            Activation::Softplus { beta, threshold } => {
                vecmath::softplus_backward(x, g, beta, threshold, dx)
            }
            Activation::LeakyRelu { slope } => {
                each3(
                    x,
                    y,
                    g,
                    dx,
                    |x, _, g| {
                        if x > T::ZERO { g } else { g * slope }
                    },
                )
            }
            // x <= 0 ? g * alpha * exp(x) : g, written with the test `x > 0` so that a NaN x
            // takes the left branch and gives NaN (PyTorch's vectorised kernel does; its scalar
            // tail passes g).
            // eˣ computed into dx first (it may overflow where x > 0; that branch does not use it).
            Activation::Elu { alpha } => {
                vecmath::exp(x, dx);
                for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                    *d = if x > T::ZERO { g } else { g * alpha * *d };
                }
            }
            // (x <= min || x >= max) ? 0 : g, written as a test for the inside so that a NaN x
            // gets 0 (PyTorch's vectorised kernel does; its scalar tail passes g). A selection:
            // a NaN g outside does not leak through.
            Activation::Hardtanh { min, max } => {
                each3(
                    x,
                    y,
                    g,
                    dx,
                    |x, _, g| {
                        if x > min && x < max { g } else { T::ZERO }
                    },
                )
            }
        }
    }

    /// The same derivative built from ops on `Var`s, for second derivatives.
    fn backward_graph<'t>(self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<Var<'t, T>> {
        let x = cx.input(0);
        let (half, one) = (c::<T>(0.5), T::ONE);
        match self {
            Activation::Gelu => {
                let cdf = x
                    .mul_scalar(c(SQRT_HALF))?
                    .erf()?
                    .add_scalar(one)?
                    .mul_scalar(half)?;
                let pdf = x
                    .square()?
                    .mul_scalar(c(-0.5))?
                    .exp()?
                    .mul_scalar(c(INV_SQRT_2PI))?;
                g.mul(cdf.add(x.mul(pdf)?)?)
            }
            Activation::GeluTanh => {
                let (beta, kappa) = (c::<T>(SQRT_2_OVER_PI), c::<T>(KAPPA));
                let x_sq = x.square()?;
                let inner = x.add(x_sq.mul(x)?.mul_scalar(kappa)?)?.mul_scalar(beta)?;
                let tanh_inner = inner.tanh()?;
                let left_derivative = tanh_inner.add_scalar(one)?.mul_scalar(half)?;
                let tanh_derivative = tanh_inner.square()?.neg()?.add_scalar(one)?;
                let inner_derivative = x_sq
                    .mul_scalar(c::<T>(3.0) * kappa)?
                    .add_scalar(one)?
                    .mul_scalar(beta)?;
                let right_derivative = x
                    .mul_scalar(half)?
                    .mul(tanh_derivative)?
                    .mul(inner_derivative)?;
                g.mul(left_derivative.add(right_derivative)?)
            }
            Activation::Silu => {
                let s = x.sigmoid()?;
                let factor = x.mul(s.neg()?.add_scalar(one)?)?.add_scalar(one)?;
                g.mul(s)?.mul(factor)
            }
            Activation::Softplus { beta, threshold } => {
                // σ(βx) where the function is smooth; 1 (a constant) where it is linear.
                let linear = constant_of(cx, &x.value(), |x| {
                    let bx = x * beta;
                    if softplus_is_linear(bx, bx.exp(), threshold) {
                        T::ONE
                    } else {
                        T::ZERO
                    }
                })?;
                let slope = x.mul_scalar(beta)?.sigmoid()?.masked_fill(linear, one)?;
                g.mul(slope)
            }
            Activation::LeakyRelu { slope } => {
                let factor =
                    constant_of(cx, &x.value(), |x| if x > T::ZERO { one } else { slope })?;
                g.mul(factor)
            }
            Activation::Elu { alpha } => {
                // α·eˣ on the left branch (x ≤ 0), 1 on the right. eˣ is taken of x with the
                // right branch zeroed, so that no e^(large x) appears even where it is not used
                // (its gradient would be 0·∞ = NaN).
                let right =
                    constant_of(cx, &x.value(), |x| if x > T::ZERO { one } else { T::ZERO })?;
                let slope = x
                    .masked_fill(right, T::ZERO)?
                    .exp()?
                    .mul_scalar(alpha)?
                    .masked_fill(right, one)?;
                g.mul(slope)
            }
            Activation::Hardtanh { min, max } => {
                let outside = constant_of(cx, &x.value(), |x| {
                    if x > min && x < max { T::ZERO } else { one }
                })?;
                g.masked_fill(outside, T::ZERO)
            }
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    fn activation(self, f: Activation<T>) -> Result<Var<'t, T>> {
        let value = map_slices(f.name(), &self.value(), |x, y| f.forward(x, y))?;
        Ok(self
            .tape
            .record(f.name(), value, &[self], || ActivationBackward(f)))
    }

    /// GELU, exact: x·Φ(x) = ½x(1 + erf(x/√2)). ∂L/∂x = g (Φ(x) + x φ(x)) with
    /// φ(x) = e^(−x²/2)/√(2π).
    ///
    /// PyTorch equivalent: `F.gelu(x)` (`approximate='none'`).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![-1.0f64, 0.0, 1.0], &[3])?);
    /// let y = x.gelu()?;
    /// assert!((y.value().data()[2] - 0.8413447460685429).abs() < 1e-15); // Φ(1)
    /// let g = y.sum()?.backward()?;
    /// assert_eq!(g.wrt(x)?.data()[1], 0.5); // Φ(0) + 0·φ(0)
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn gelu(self) -> Result<Var<'t, T>> {
        self.activation(Activation::Gelu)
    }

    /// GELU, tanh approximation: ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
    /// ∂L/∂x = g (½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²)).
    ///
    /// PyTorch equivalent: `F.gelu(x, approximate='tanh')`.
    pub fn gelu_tanh(self) -> Result<Var<'t, T>> {
        self.activation(Activation::GeluTanh)
    }

    /// SiLU (swish): x·σ(x). ∂L/∂x = g σ(x)(1 + x(1 − σ(x))).
    ///
    /// PyTorch equivalent: `F.silu(x)`.
    pub fn silu(self) -> Result<Var<'t, T>> {
        self.activation(Activation::Silu)
    }

    /// Softplus: ln(1 + e^(βx))/β, and x itself where βx > `threshold` (for numerical stability).
    /// ∂L/∂x = g·e^(βx)/(1 + e^(βx)) = g σ(βx), and g on the linear part.
    ///
    /// β must be finite and nonzero (PyTorch gives ∞ for β = 0); a negative β is accepted, as in
    /// PyTorch. `threshold` must not be NaN (+∞ means never linear). Where e^(βx) overflows — only
    /// possible with a threshold above ~88 (f32) or ~709 (f64) — the value is x and the derivative
    /// 1, the limits; PyTorch returns ∞ and NaN there.
    ///
    /// PyTorch equivalent: `F.softplus(x, beta, threshold)` (defaults β = 1, threshold = 20).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![0.0f64, 30.0], &[2])?);
    /// let y = x.softplus(1.0, 20.0)?;
    /// assert_eq!(y.value().data(), &[2.0f64.ln(), 30.0]); // linear above the threshold
    /// assert_eq!(y.sum()?.backward()?.wrt(x)?.data(), &[0.5, 1.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn softplus(self, beta: T, threshold: T) -> Result<Var<'t, T>> {
        if !beta.is_finite() || beta == T::ZERO {
            return Err(invalid(
                "softplus",
                "beta",
                beta.to_f64(),
                "must be finite and nonzero",
            ));
        }
        if threshold.is_nan() {
            return Err(invalid(
                "softplus",
                "threshold",
                threshold.to_f64(),
                "must not be NaN",
            ));
        }
        self.activation(Activation::Softplus { beta, threshold })
    }

    /// Leaky ReLU: x where x > 0, `negative_slope`·x elsewhere. ∂L/∂x = g where x > 0, and
    /// `negative_slope`·g elsewhere — including at x = 0 (PyTorch's `x > 0 ? g : g·slope`) and for
    /// NaN. The slope must be finite (negative is accepted, as in PyTorch).
    ///
    /// PyTorch equivalent: `F.leaky_relu(x, negative_slope)` (default 0.01).
    pub fn leaky_relu(self, negative_slope: T) -> Result<Var<'t, T>> {
        if !negative_slope.is_finite() {
            return Err(invalid(
                "leaky_relu",
                "negative_slope",
                negative_slope.to_f64(),
                "must be finite",
            ));
        }
        self.activation(Activation::LeakyRelu {
            slope: negative_slope,
        })
    }

    /// ELU: x where x > 0, α(eˣ − 1) where x ≤ 0. ∂L/∂x = g where x > 0, g·α·eˣ where x ≤ 0 —
    /// so α·g at x = 0 (PyTorch's `elu_backward` takes the left branch there), and NaN at a NaN x.
    /// α must be finite (negative is accepted, as in PyTorch).
    ///
    /// PyTorch equivalent: `F.elu(x, alpha)` (default 1).
    pub fn elu(self, alpha: T) -> Result<Var<'t, T>> {
        if !alpha.is_finite() {
            return Err(invalid("elu", "alpha", alpha.to_f64(), "must be finite"));
        }
        self.activation(Activation::Elu { alpha })
    }

    /// HardTanh: x clamped into `[min, max]`. ∂L/∂x = g strictly inside (min, max), 0 at and
    /// beyond either bound (PyTorch's `hardtanh_backward`: `x <= min || x >= max ? 0 : g`); a NaN
    /// element stays NaN and gets gradient 0 (as PyTorch's vectorised kernel; its scalar tail
    /// passes g).
    ///
    /// `min` and `max` must not be NaN and `min ≤ max` (`F.hardtanh` raises "min_val cannot be
    /// greater than max_val").
    ///
    /// PyTorch equivalent: `F.hardtanh(x, min_val, max_val)` (defaults −1, 1).
    pub fn hardtanh(self, min: T, max: T) -> Result<Var<'t, T>> {
        if min.is_nan() {
            return Err(invalid("hardtanh", "min", min.to_f64(), "must not be NaN"));
        }
        if max.is_nan() {
            return Err(invalid("hardtanh", "max", max.to_f64(), "must not be NaN"));
        }
        if min > max {
            return Err(invalid(
                "hardtanh",
                "min",
                min.to_f64(),
                "must not exceed max",
            ));
        }
        self.activation(Activation::Hardtanh { min, max })
    }
}

/// Saves which activation and its hyper-parameters; x is on the tape.
#[derive(Debug)]
struct ActivationBackward<T>(Activation<T>);

impl<T: Float> Backward<T> for ActivationBackward<T> {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let f = self.0;
        let dx = map_slices3(f.name(), cx.input(0), cx.output(), g, |x, y, g, dx| {
            f.backward(x, y, g, dx)
        })?;
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(self.0.backward_graph(cx, g)?)])
    }

    fn saved_bytes(&self) -> usize {
        std::mem::size_of::<Activation<T>>()
    }

    fn describe_saved(&self) -> String {
        match self.0 {
            Activation::Softplus { beta, threshold } => {
                format!("beta {beta}, threshold {threshold}")
            }
            Activation::LeakyRelu { slope } => format!("negative slope {slope}"),
            Activation::Elu { alpha } => format!("alpha {alpha}"),
            Activation::Hardtanh { min, max } => format!("min {min}, max {max}"),
            _ => String::new(),
        }
    }
}
