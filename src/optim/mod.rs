//! Optimizers with PyTorch's exact update rules: [`Sgd`] (momentum, dampening, Nesterov, weight
//! decay), [`Adam`] and AdamW.
//!
//! An optimizer is built from a model's named parameters — handles to the model's own tensors —
//! split into [`ParamGroup`]s if some need their own learning rate or weight decay (no decay on
//! biases and norms, say). Each step reads every parameter's gradient from a [`GradSource`]: the
//! [`Gradients`] of one backward pass, or a [`GradAccumulator`] that sums several (micro-batches),
//! like PyTorch's `.grad` accumulating until `zero_grad()`. Parameters without a gradient are
//! skipped, as in PyTorch. Every setting is validated where it enters: at construction and in
//! `set_lr`.
//!
//! ```
//! use rand::SeedableRng;
//! use tapegrad::nn::{Context, CrossEntropyLoss, Forward, Linear, Module};
//! use tapegrad::optim::{Optimizer, Sgd, SgdConfig};
//! use tapegrad::{Tape, Tensor};
//!
//! let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
//! let model = Linear::<f32>::new(4, 3, &mut rng)?;
//! let config = SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, ..Default::default() };
//! let mut sgd = Sgd::new(model.named_params(), config)?;
//! let x = Tensor::normal(&[6, 4], 0.0, 1.0, &mut rng)?;
//! let mut losses = vec![];
//! for _ in 0..20 {
//!     let tape = Tape::new();
//!     let logits = model.forward(&mut Context::eval(), tape.constant(x.clone()))?;
//!     let loss = CrossEntropyLoss::default().forward(logits, &[0, 1, 2, 0, 1, 2])?;
//!     losses.push(loss.value().item()?);
//!     let grads = loss.backward()?;
//!     sgd.step(&grads)?;
//! }
//! assert!(losses[19] < losses[0]);
//! # Ok::<(), tapegrad::Error>(())
//! ```

mod adam;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use sgd::{Sgd, SgdConfig};

use std::collections::{HashMap, HashSet};

use crate::element::Float;
use crate::error::{Error, Result};
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
    pub fn accumulate(&mut self, grads: &Gradients<T>) -> Result<()> {
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

/// Parameters (with their names) and the settings they override, as PyTorch's param groups.
///
/// ```
/// use rand::SeedableRng;
/// use tapegrad::nn::{Linear, Module};
/// use tapegrad::optim::{Adam, AdamConfig, Optimizer, ParamGroup};
/// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
/// let model = Linear::<f32>::new(4, 3, &mut rng)?;
/// let (biases, weights): (Vec<_>, Vec<_>) =
///     model.named_params().into_iter().partition(|(name, _)| name.ends_with("bias"));
/// let adamw = Adam::new(
///     vec![ParamGroup::new(weights), ParamGroup::new(biases).weight_decay(0.0)],
///     AdamConfig::adamw(),
/// )?;
/// assert_eq!(adamw.lrs(), vec![1e-3, 1e-3]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug)]
pub struct ParamGroup<T: Float> {
    /// The parameters, by name (the names key the optimizer's saved state).
    pub params: Vec<(String, Param<T>)>,
    /// This group's learning rate; `None`: the optimizer's.
    pub lr: Option<f64>,
    /// This group's weight decay; `None`: the optimizer's.
    pub weight_decay: Option<f64>,
}

impl<T: Float> ParamGroup<T> {
    /// A group with the optimizer's settings.
    pub fn new(params: Vec<(String, Param<T>)>) -> Self {
        ParamGroup {
            params,
            lr: None,
            weight_decay: None,
        }
    }

    /// With its own learning rate.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = Some(lr);
        self
    }

    /// With its own weight decay.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = Some(weight_decay);
        self
    }
}

/// What an optimizer can be built from: named parameters (one group), or groups.
pub trait IntoGroups<T: Float> {
    /// The groups.
    fn into_groups(self) -> Vec<ParamGroup<T>>;
}

impl<T: Float> IntoGroups<T> for Vec<(String, Param<T>)> {
    fn into_groups(self) -> Vec<ParamGroup<T>> {
        vec![ParamGroup::new(self)]
    }
}

impl<T: Float> IntoGroups<T> for ParamGroup<T> {
    fn into_groups(self) -> Vec<ParamGroup<T>> {
        vec![self]
    }
}

impl<T: Float> IntoGroups<T> for Vec<ParamGroup<T>> {
    fn into_groups(self) -> Vec<ParamGroup<T>> {
        self
    }
}

/// What every optimizer does: a step from gradients, and learning rates a schedule can set.
pub trait Optimizer<T: Float> {
    /// One update of every parameter that has a gradient in `grads`.
    fn step(&mut self, grads: &dyn GradSource<T>) -> Result<()>;

    /// The learning rate of each group.
    fn lrs(&self) -> Vec<f64>;

    /// Sets each group's learning rate (one value per group); fails, changing nothing, unless
    /// each is finite and ≥ 0.
    fn set_lrs(&mut self, lrs: &[f64]) -> Result<()>;

    /// The learning rate of the first group.
    fn lr(&self) -> f64 {
        self.lrs().first().copied().unwrap_or(0.0)
    }

    /// Sets every group's learning rate; fails, changing nothing, unless finite and ≥ 0.
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        let n = self.lrs().len();
        self.set_lrs(&vec![lr; n])
    }
}

/// One parameter an optimizer tracks: its name, the handle, and its state (momentum, moments)
/// once a step has created it.
#[derive(Debug)]
pub(crate) struct Slot<T: Float, S> {
    pub(crate) name: String,
    pub(crate) param: Param<T>,
    pub(crate) state: Option<S>,
}

/// A group as an optimizer keeps it: resolved settings and the slots.
#[derive(Debug)]
pub(crate) struct Group<T: Float, S> {
    pub(crate) lr: f64,
    pub(crate) weight_decay: f64,
    pub(crate) slots: Vec<Slot<T, S>>,
}

/// Resolves groups against the optimizer's defaults and validates them: names unique across
/// groups, learning rates and decays finite and ≥ 0.
pub(crate) fn build_groups<T: Float, S>(
    op: &'static str,
    groups: Vec<ParamGroup<T>>,
    lr: f64,
    weight_decay: f64,
) -> Result<Vec<Group<T, S>>> {
    let mut names = HashSet::new();
    groups
        .into_iter()
        .map(|g| {
            let lr = g.lr.unwrap_or(lr);
            let weight_decay = g.weight_decay.unwrap_or(weight_decay);
            check_lr(op, lr)?;
            check_hyper(
                op,
                "weight_decay",
                weight_decay,
                weight_decay >= 0.0 && weight_decay.is_finite(),
                "must be finite and >= 0",
            )?;
            let slots = g
                .params
                .into_iter()
                .map(|(name, param)| {
                    if !names.insert(name.clone()) {
                        return Err(Error::DuplicateName { op, name });
                    }
                    Ok(Slot {
                        name,
                        param,
                        state: None,
                    })
                })
                .collect::<Result<_>>()?;
            Ok(Group {
                lr,
                weight_decay,
                slots,
            })
        })
        .collect()
}

/// Sets each group's lr after checking them all.
pub(crate) fn set_group_lrs<T: Float, S>(
    op: &'static str,
    groups: &mut [Group<T, S>],
    lrs: &[f64],
) -> Result<()> {
    if lrs.len() != groups.len() {
        return Err(Error::ArgumentCount {
            op,
            what: "learning rates (one per group)",
            expected: groups.len(),
            got: lrs.len(),
        });
    }
    for &lr in lrs {
        check_lr(op, lr)?;
    }
    for (g, &lr) in groups.iter_mut().zip(lrs) {
        g.lr = lr;
    }
    Ok(())
}

/// Checks a gradient's shape against its parameter's.
pub(crate) fn check_shape<T: Float>(
    op: &'static str,
    param: &Param<T>,
    grad: &Tensor<T>,
) -> Result<()> {
    let shape = param.shape();
    if &shape == grad.shape() {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            op,
            lhs: shape,
            rhs: grad.shape().clone(),
        })
    }
}

/// Checks a state tensor (momentum, moments) against its parameter's current shape.
pub(crate) fn check_state<T: Float>(
    op: &'static str,
    name: &str,
    param: &Param<T>,
    state: &Tensor<T>,
) -> Result<()> {
    let shape = param.shape();
    if &shape == state.shape() {
        Ok(())
    } else {
        Err(Error::StateShape {
            op,
            name: name.to_string(),
            state: state.dims().to_vec(),
            param: shape.dims().to_vec(),
        })
    }
}

/// A learning rate must be finite and ≥ 0 (NaN fails both).
pub(crate) fn check_lr(op: &'static str, lr: f64) -> Result<()> {
    check_hyper(
        op,
        "lr",
        lr,
        lr >= 0.0 && lr.is_finite(),
        "must be finite and >= 0",
    )
}

pub(crate) fn check_hyper(
    op: &'static str,
    name: &'static str,
    value: f64,
    ok: bool,
    reason: &'static str,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            op,
            name,
            value,
            reason,
        })
    }
}
