//! Gradient clipping: PyTorch's `torch.nn.utils.clip_grad_norm_` and `clip_grad_value_`.
//!
//! Clipping changes gradients between the backward pass and the optimizer's step, so it works
//! on a gradient source that can be modified, [`GradSourceMut`] — the [`Gradients`] of a backward
//! pass or a [`GradAccumulator`](super::GradAccumulator) — and on the parameters whose gradients
//! it clips (usually [`Optimizer::params`](super::Optimizer::params)):
//!
//! ```text
//! let mut grads = loss.backward()?;
//! clip_grad_norm(&mut grads, optimizer.params(), 1.0, 2.0, false)?;
//! optimizer.step(&grads)?;
//! ```

use std::collections::HashSet;

use super::{GradAccumulator, GradSource};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::grads::Gradients;
use crate::kernels::{pool, sum};
use crate::param::Param;
use crate::tensor::Tensor;

/// A gradient source whose gradients can be changed in place (for clipping).
pub trait GradSourceMut<T: Float>: GradSource<T> {
    /// The gradient of `param`, if it has one, to modify.
    fn grad_mut(&mut self, param: &Param<T>) -> Option<&mut Tensor<T>>;
}

impl<T: Float> GradSourceMut<T> for Gradients<T> {
    fn grad_mut(&mut self, param: &Param<T>) -> Option<&mut Tensor<T>> {
        self.param_mut(param)
    }
}

impl<T: Float> GradSourceMut<T> for GradAccumulator<T> {
    fn grad_mut(&mut self, param: &Param<T>) -> Option<&mut Tensor<T>> {
        self.sums.get_mut(&param.id())
    }
}

/// The parameters, each once (a parameter shared under two names is clipped once, as PyTorch's
/// `model.parameters()` yields it once).
fn distinct<'p, T: Float>(params: impl IntoIterator<Item = &'p Param<T>>) -> Vec<&'p Param<T>> {
    let mut seen = HashSet::new();
    params.into_iter().filter(|p| seen.insert(p.id())).collect()
}

/// The p-norm of `x` (p > 0 finite, or ∞), sums through the one summation kernel; NaN if any
/// element is NaN.
fn norm<T: Float>(x: &[T], p: f64) -> Result<T> {
    if p == 2.0 {
        return Ok(sum::dot(x, x).sqrt());
    }
    if p == f64::INFINITY {
        let mut max = T::ZERO;
        for &v in x {
            let a = v.abs();
            if a.is_nan() {
                return Ok(a);
            }
            if a > max {
                max = a;
            }
        }
        return Ok(max);
    }
    if p == 1.0 {
        let abs = pool::try_collect("clip_grad_norm", x.len(), x.iter().map(|v| v.abs()))?;
        return Ok(sum::sum(&abs));
    }
    let powers = pool::try_collect(
        "clip_grad_norm",
        x.len(),
        x.iter().map(|v| T::from_f64(v.abs().to_f64().powf(p))),
    )?;
    Ok(T::from_f64(sum::sum(&powers).to_f64().powf(1.0 / p)))
}

/// Scales the gradients of `params` so that their total `norm_type`-norm is at most `max_norm`,
/// and returns the total norm before clipping.
///
/// The total norm is the norm of the per-parameter norms (the norm of all gradients
/// concatenated); each gradient is multiplied by `min(1, max_norm / (total + 1e-6))`. Parameters
/// without a gradient are skipped; with none at all the norm is 0. With `error_if_nonfinite`, a
/// NaN or infinite total is an error and nothing is changed; without it, the gradients are scaled
/// anyway (a NaN total makes them NaN), as in PyTorch.
///
/// Fails with [`Error::InvalidHyperparameter`] unless `max_norm` is finite and ≥ 0 and
/// `norm_type` is > 0 (finite) or ∞ (PyTorch accepts more: negative `max_norm`, which flips
/// the gradients, and the 0 and −∞ "norms").
///
/// PyTorch equivalent: `torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type,
/// error_if_nonfinite)`.
///
/// ```
/// use tapegrad::optim::{GradAccumulator, clip_grad_norm};
/// use tapegrad::{Param, Tensor};
/// let w = Param::new("w", Tensor::from_vec(vec![0.0f64, 0.0], &[2])?);
/// let mut grads = GradAccumulator::new();
/// grads.set(&w, Tensor::from_vec(vec![3.0, 4.0], &[2])?);
/// let total = clip_grad_norm(&mut grads, [&w], 1.0, 2.0, false)?;
/// assert_eq!(total, 5.0);
/// let g = grads.grad(&w).unwrap().data().to_vec();
/// let coef = 1.0 / (5.0 + 1e-6);
/// assert_eq!(g, vec![3.0 * coef, 4.0 * coef]);
/// # use tapegrad::optim::GradSource;
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn clip_grad_norm<'p, T: Float>(
    grads: &mut dyn GradSourceMut<T>,
    params: impl IntoIterator<Item = &'p Param<T>>,
    max_norm: f64,
    norm_type: f64,
    error_if_nonfinite: bool,
) -> Result<T> {
    let op = "clip_grad_norm";
    super::check_nonneg(op, "max_norm", max_norm)?;
    super::check_hyper(
        op,
        "norm_type",
        norm_type,
        norm_type > 0.0 && !norm_type.is_nan(),
        "must be > 0 (or infinity)",
    )?;
    let params = distinct(params);
    let mut norms = Vec::new();
    norms
        .try_reserve_exact(params.len())
        .map_err(|_| Error::OutOfMemory {
            op,
            bytes: (params.len() * T::BYTES) as u128,
        })?;
    for p in &params {
        if let Some(g) = grads.grad(p) {
            norms.push(norm(g.data(), norm_type)?);
        }
    }
    if norms.is_empty() {
        return Ok(T::ZERO);
    }
    let total = norm(&norms, norm_type)?;
    if error_if_nonfinite && !total.is_finite() {
        return Err(Error::InvalidArgument {
            op,
            reason: format!(
                "the total norm of order {norm_type} of the gradients is non-finite ({total}), \
                 so they cannot be clipped"
            ),
        });
    }
    // PyTorch: clip_coef = max_norm / (total + 1e-6), clamped to at most 1 (NaN stays NaN).
    let mut coef = T::from_f64(max_norm) / (total + T::from_f64(1e-6));
    if coef > T::ONE {
        coef = T::ONE;
    }
    if coef != T::ONE {
        for p in &params {
            if let Some(g) = grads.grad_mut(p) {
                g.data_mut().iter_mut().for_each(|x| *x *= coef);
            }
        }
    }
    Ok(total)
}

/// Clamps every gradient of `params` to `[−clip_value, clip_value]` (NaN stays NaN).
///
/// Fails with [`Error::InvalidHyperparameter`] unless `clip_value` is finite and ≥ 0 (PyTorch
/// does not check).
///
/// PyTorch equivalent: `torch.nn.utils.clip_grad_value_(params, clip_value)`.
///
/// ```
/// use tapegrad::optim::{GradAccumulator, GradSource, clip_grad_value};
/// use tapegrad::{Param, Tensor};
/// let w = Param::new("w", Tensor::from_vec(vec![0.0f32; 3], &[3])?);
/// let mut grads = GradAccumulator::new();
/// grads.set(&w, Tensor::from_vec(vec![-2.0, 0.5, 7.0], &[3])?);
/// clip_grad_value(&mut grads, [&w], 1.0)?;
/// assert_eq!(grads.grad(&w).unwrap().data(), &[-1.0, 0.5, 1.0]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn clip_grad_value<'p, T: Float>(
    grads: &mut dyn GradSourceMut<T>,
    params: impl IntoIterator<Item = &'p Param<T>>,
    clip_value: f64,
) -> Result<()> {
    super::check_nonneg("clip_grad_value", "clip_value", clip_value)?;
    let hi = T::from_f64(clip_value);
    let lo = -hi;
    for p in distinct(params) {
        if let Some(g) = grads.grad_mut(p) {
            for x in g.data_mut() {
                if *x < lo {
                    *x = lo;
                } else if *x > hi {
                    *x = hi;
                }
            }
        }
    }
    Ok(())
}
