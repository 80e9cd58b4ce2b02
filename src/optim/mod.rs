//! Optimizers with PyTorch's exact update rules: [`Sgd`] (momentum, dampening, Nesterov, weight
//! decay), [`Adam`] and AdamW.
//!
//! An optimizer reads each parameter's gradient from anything that implements [`GradSource`]: the
//! [`Gradients`] of one backward pass, or a [`GradAccumulator`] that sums several (micro-batches),
//! like PyTorch's `.grad` accumulating until `zero_grad()`. Parameters without a gradient are
//! skipped, as in PyTorch. The learning rate can be changed between steps with `set_lr`.
//!
//! ```
//! use rand::SeedableRng;
//! use tapegrad::nn::{CrossEntropyLoss, Linear, Module};
//! use tapegrad::optim::{Sgd, SgdConfig};
//! use tapegrad::{Tape, Tensor};
//!
//! let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
//! let mut model = Linear::<f32>::new(4, 3, &mut rng)?;
//! let mut sgd = Sgd::new(SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, ..Default::default() })?;
//! let x = Tensor::normal(&[6, 4], 0.0, 1.0, &mut rng)?;
//! let mut losses = vec![];
//! for _ in 0..20 {
//!     let tape = Tape::new();
//!     let loss = CrossEntropyLoss.forward(model.forward(tape.constant(x.clone()), &mut rng)?, &[0, 1, 2, 0, 1, 2])?;
//!     losses.push(loss.value().item()?);
//!     let grads = loss.backward()?;
//!     drop(tape);
//!     sgd.step(model.params_mut(), &grads)?;
//! }
//! assert!(losses[19] < losses[0]);
//! # Ok::<(), tapegrad::Error>(())
//! ```

mod adam;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use sgd::{Sgd, SgdConfig};

use std::collections::HashMap;

use crate::element::Float;
use crate::grads::Gradients;
use crate::param::{Param, ParamId};
use crate::tensor::Tensor;

/// Where an optimizer finds a parameter's gradient.
pub trait GradSource<T: Float> {
    /// The gradient of `param`, if it has one.
    fn grad(&self, param: &Param<T>) -> Option<&Tensor<T>>;
}

impl<T: Float> GradSource<T> for Gradients<T> {
    fn grad(&self, param: &Param<T>) -> Option<&Tensor<T>> {
        self.param(param)
    }
}

/// Sums the parameter gradients of several backward passes (gradient accumulation).
#[derive(Debug, Clone, Default)]
pub struct GradAccumulator<T: Float> {
    sums: HashMap<ParamId, Tensor<T>>,
}

impl<T: Float> GradAccumulator<T> {
    /// Empty.
    pub fn new() -> Self {
        GradAccumulator {
            sums: HashMap::new(),
        }
    }

    /// Adds every parameter gradient of one backward pass. A gradient whose shape differs from
    /// the sum so far (the parameter was replaced) starts a new sum.
    pub fn accumulate(&mut self, grads: &Gradients<T>) -> crate::Result<()> {
        for (id, g) in grads.params() {
            match self.sums.get_mut(&id) {
                Some(sum) if sum.shape() == g.shape() => sum.add_assign_same_shape(g),
                _ => {
                    self.sums.insert(id, g.try_clone()?);
                }
            }
        }
        Ok(())
    }

    /// Forgets every sum (PyTorch's `zero_grad()`).
    pub fn zero_grad(&mut self) {
        self.sums.clear();
    }
}

impl<T: Float> GradSource<T> for GradAccumulator<T> {
    fn grad(&self, param: &Param<T>) -> Option<&Tensor<T>> {
        self.sums.get(&param.id())
    }
}

/// Checks a gradient's shape against its parameter's.
fn check_shape<T: Float>(
    op: &'static str,
    param: &Param<T>,
    grad: &Tensor<T>,
) -> crate::Result<()> {
    if param.value().shape() == grad.shape() {
        Ok(())
    } else {
        Err(crate::Error::ShapeMismatch {
            op,
            lhs: param.value().shape().clone(),
            rhs: grad.shape().clone(),
        })
    }
}

/// Checks a state tensor (momentum, moments) against its parameter's current shape.
fn check_state<T: Float>(
    op: &'static str,
    param: &Param<T>,
    state: &Tensor<T>,
) -> crate::Result<()> {
    if param.value().shape() == state.shape() {
        Ok(())
    } else {
        Err(crate::Error::StateShape {
            op,
            name: param.name().to_string(),
            state: state.dims().to_vec(),
            param: param.value().dims().to_vec(),
        })
    }
}

/// A learning rate must be finite and ≥ 0 (NaN fails both).
fn check_lr(op: &'static str, lr: f64) -> crate::Result<()> {
    check_hyper(
        op,
        "lr",
        lr,
        lr >= 0.0 && lr.is_finite(),
        "must be finite and >= 0",
    )
}

fn check_hyper(
    op: &'static str,
    name: &'static str,
    value: f64,
    ok: bool,
    reason: &'static str,
) -> crate::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(crate::Error::InvalidHyperparameter {
            op,
            name,
            value,
            reason,
        })
    }
}
