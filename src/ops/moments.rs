//! Variance and standard deviation along an axis (or of every element), with PyTorch's
//! `correction`.
//!
//! For a slice of N elements with mean μ = Σxᵢ / N,
//!
//! var(x) = Σ(xᵢ − μ)² / (N − c),   std(x) = √var(x),
//!
//! with c the correction (1 by default in PyTorch: Bessel's correction; 0 gives the population
//! variance). **Two passes**, each with the crate's pairwise summation: first μ, then Σ(xᵢ − μ)².
//! The one-pass E[x²] − E[x]² would cancel catastrophically when |μ| ≫ σ (in f32, a variance of 1
//! around a mean of 10⁴ loses every digit); the two-pass error stays at the order of ε·σ².
//!
//! **N − c ≤ 0** (a single element with c = 1, or c ≥ N): PyTorch divides by max(N − c, 0) = 0, so
//! the result is +∞, or NaN when the slice is constant (0/0); an empty slice gives NaN. We do the
//! same. The backward follows PyTorch's `var_backward` literally, including its two cases:
//!
//! - reduction along an axis: ∂L/∂xᵢ = (2 / (N − c)) · g · (xᵢ − μ) — with N − c < 0 this is a
//!   finite number of the opposite sign, with N − c = 0 it is ±∞ (or NaN at xᵢ = μ);
//! - every element (`axis: None`, or a rank-0 input) with N − c ≤ 0: ∂L/∂xᵢ = g · (NaN if xᵢ = μ
//!   else +∞).
//!
//! **std** has ∂std/∂var = 1 / (2·std), so ∂L/∂x is the variance's rule applied to g / (2·std),
//! where that factor is taken as 0 when std = 0 (PyTorch's `masked_fill_(result == 0, 0)`): a
//! constant slice gets a zero gradient rather than NaN.
//!
//! A correction that is NaN or infinite is rejected ([`Error::InvalidHyperparameter`]); PyTorch
//! accepts it and returns NaN or ∞. Negative and fractional corrections are accepted, as in PyTorch.

use smallvec::smallvec;

use super::reduce_axis::{Plan, map_along, map_along2};
use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tape::Var;
use crate::tensor::{Tensor, reduce_middle};

fn check_correction(op: &'static str, correction: f64) -> Result<()> {
    if correction.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            op,
            name: "correction",
            value: correction,
            reason: "must be finite",
        })
    }
}

/// The mean of every slice, `[outer, inner]`: the pairwise sum divided by N (NaN for N = 0).
fn slice_means<T: Float>(op: &'static str, x: &Tensor<T>, plan: &Plan) -> Result<Tensor<T>> {
    let mut mean = Tensor::overwritable(op, plan.out.clone())?;
    reduce_middle(x.data(), plan.outer, plan.len, plan.inner, mean.data_mut())?;
    let n = T::from_f64(plan.len as f64);
    for m in mean.data_mut() {
        *m /= n;
    }
    Ok(mean)
}

/// var along the plan: two pairwise passes. Returns (variance, mean), both `plan.out`.
fn variance<T: Float>(
    op: &'static str,
    x: &Tensor<T>,
    plan: &Plan,
    correction: f64,
) -> Result<Tensor<T>> {
    let mean = slice_means(op, x, plan)?;
    let mut squares = Tensor::overwritable(op, x.shape().clone())?;
    map_along(x.data(), mean.data(), plan, squares.data_mut(), |x, m| {
        let d = x - m;
        d * d
    });
    let mut var = Tensor::overwritable(op, plan.out.clone())?;
    reduce_middle(
        squares.data(),
        plan.outer,
        plan.len,
        plan.inner,
        var.data_mut(),
    )?;
    let divisor = T::from_f64((plan.len as f64 - correction).max(0.0));
    for v in var.data_mut() {
        *v /= divisor;
    }
    Ok(var)
}

impl<'t, T: Float> Var<'t, T> {
    /// Variance along `axis` (`None`: of every element), dividing by N − `correction`
    /// (two pairwise passes, never `E[x²] − E[x]²`). ∂L/∂xᵢ = (2 / (N − c))·g·(xᵢ − μ).
    /// N − c ≤ 0 gives ∞ or NaN, as in PyTorch (see the module docs).
    ///
    /// PyTorch equivalent: `torch.var(x, dim=axis, correction=correction, keepdim=keepdim)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[4])?);
    /// let v = x.var(None, 1.0, false)?;
    /// assert_eq!(v.value().item()?, 5.0 / 3.0);
    /// let g = v.backward()?;
    /// assert_eq!(g.wrt(x)?.data(), &[-1.0, -1.0 / 3.0, 1.0 / 3.0, 1.0]); // 2(x − μ)/3
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn var(self, axis: Option<isize>, correction: f64, keepdim: bool) -> Result<Var<'t, T>> {
        check_correction("var", correction)?;
        let x = self.value();
        let plan = Plan::new("var", x.shape(), axis, keepdim)?;
        let value = variance("var", &x, &plan, correction)?;
        Ok(self.tape.record("var", value, &[self], || MomentBackward {
            plan,
            correction,
            root: false,
        }))
    }

    /// Standard deviation √var along `axis` (`None`: of every element), dividing by
    /// N − `correction`. ∂L/∂xᵢ = g·(xᵢ − μ) / ((N − c)·std), and 0 where std = 0.
    ///
    /// PyTorch equivalent: `torch.std(x, dim=axis, correction=correction, keepdim=keepdim)`.
    pub fn std(self, axis: Option<isize>, correction: f64, keepdim: bool) -> Result<Var<'t, T>> {
        check_correction("std", correction)?;
        let x = self.value();
        let plan = Plan::new("std", x.shape(), axis, keepdim)?;
        let value = variance("std", &x, &plan, correction)?.map(|v| v.sqrt())?;
        Ok(self.tape.record("std", value, &[self], || MomentBackward {
            plan,
            correction,
            root: true,
        }))
    }
}

/// Backward of `var` (root false) and `std` (root true). Saves the plan and the correction; x and
/// the output are on the tape.
#[derive(Debug)]
struct MomentBackward {
    plan: Plan,
    correction: f64,
    root: bool,
}

impl MomentBackward {
    fn name(&self) -> &'static str {
        if self.root { "std" } else { "var" }
    }

    /// N − c, PyTorch's degrees of freedom.
    fn dof(&self) -> f64 {
        self.plan.len as f64 - self.correction
    }

    /// Whether PyTorch's every-element rule for N − c ≤ 0 applies.
    fn degenerate(&self) -> bool {
        self.plan.all && self.dof() <= 0.0
    }
}

impl<T: Float> Backward<T> for MomentBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let op = self.name();
        let x = cx.input(0);
        let grad_var = if self.root {
            // g / (2·std), 0 where std = 0.
            g.zip_map(cx.output(), op, |g, s| {
                if s == T::ZERO {
                    T::ZERO
                } else {
                    g / (s * T::from_f64(2.0))
                }
            })?
        } else {
            g.try_clone()?
        };
        let mean = slice_means(op, x, &self.plan)?;
        let mut dx = Tensor::overwritable(op, x.shape().clone())?;
        if self.degenerate() {
            map_along2(
                x.data(),
                grad_var.data(),
                mean.data(),
                &self.plan,
                dx.data_mut(),
                |x, g, m| g * T::from_f64(if x == m { f64::NAN } else { f64::INFINITY }),
            );
        } else {
            let scale = T::from_f64(2.0 / self.dof());
            map_along2(
                x.data(),
                grad_var.data(),
                mean.data(),
                &self.plan,
                dx.data_mut(),
                |x, g, m| scale * g * (x - m),
            );
        }
        Ok(smallvec![Some(dx)])
    }

    /// The same formula from recorded ops on `[outer, len, inner]` views: the mean is recomputed
    /// from x (so it is differentiated too), std's 1/(2·std) from the recorded output.
    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let op = self.name();
        let x = cx.input(0);
        let x_dims = x.shape();
        let tape = cx.tape();
        let mut grad_var = g.reshape(&self.plan.reduced3())?;
        if self.root {
            // g / (2·std) with std replaced by 1 where it is 0, then zeroed there: the same values
            // as the plain rule, and the derivative through std wherever std ≠ 0.
            let std = cx.output().value();
            let zero = std.map(|s| if s == T::ZERO { T::ONE } else { T::ZERO })?;
            let nonzero = std.map(|s| if s == T::ZERO { T::ZERO } else { T::ONE })?;
            let zero = tape.constant(zero.into_reshaped(Shape::new(&self.plan.reduced3())?)?);
            let nonzero = tape.constant(nonzero.into_reshaped(Shape::new(&self.plan.reduced3())?)?);
            let safe = cx
                .output()
                .reshape(&self.plan.reduced3())?
                .add(zero)?
                .mul_scalar(T::from_f64(2.0))?;
            grad_var = grad_var.div(safe)?.mul(nonzero)?;
        }
        let x3 = x.reshape(&self.plan.view3())?;
        let dx = if self.degenerate() {
            let xv = x.value();
            let mean = slice_means(op, &xv, &self.plan)?;
            let mut factor = Tensor::overwritable(op, xv.shape().clone())?;
            map_along(
                xv.data(),
                mean.data(),
                &self.plan,
                factor.data_mut(),
                |x, m| T::from_f64(if x == m { f64::NAN } else { f64::INFINITY }),
            );
            let factor = tape.constant(factor.into_reshaped(Shape::new(&self.plan.view3())?)?);
            grad_var.mul(factor)?
        } else {
            let mean = x3
                .sum_axis(1, true)?
                .div_scalar(T::from_f64(self.plan.len as f64))?;
            grad_var
                .mul_scalar(T::from_f64(2.0 / self.dof()))?
                .mul(x3.sub(mean)?)?
        };
        Ok(smallvec![Some(dx.reshape(x_dims.dims())?)])
    }

    fn saved_bytes(&self) -> usize {
        self.plan.saved_bytes() + std::mem::size_of::<f64>()
    }

    fn describe_saved(&self) -> String {
        format!(
            "slices of {}, correction {} (reads its input{})",
            self.plan.len,
            self.correction,
            if self.root { " and output" } else { "" }
        )
    }
}
