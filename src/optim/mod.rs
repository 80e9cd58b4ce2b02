//! Optimizers with PyTorch's exact update rules: [`Sgd`] (momentum, dampening, Nesterov, weight
//! decay), [`Adam`] and AdamW (AMSGrad), [`RMSprop`] (momentum, centered) and [`Adagrad`], each
//! with `maximize`; learning-rate schedulers in [`lr_scheduler`]; gradient clipping
//! ([`clip_grad_norm`], [`clip_grad_value`]); and optimizer state that saves and loads by
//! parameter name ([`Optimizer::state_dict`]). The guide is `docs/optim.md`.
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

/// Builder-style setters on an optimizer's configuration, one per field, so that a configuration
/// differing from the defaults in one value is one expression, as PyTorch's keyword arguments:
/// `AdamConfig::default().lr(1e-2)` for `torch.optim.Adam(params, lr=1e-2)`. The fields stay
/// public; a setter only assigns (values are checked when the optimizer is built).
macro_rules! config_setters {
    ($config:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        impl $config {
            $(
                #[doc = concat!("Sets `", stringify!($field), "` (builder style; see the field).")]
                #[must_use]
                pub fn $field(mut self, $field: $ty) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}

config_setters!(SgdConfig {
    lr: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
    maximize: bool,
});
config_setters!(AdamConfig {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    amsgrad: bool,
    maximize: bool,
});
config_setters!(RMSpropConfig {
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool,
    maximize: bool,
});
config_setters!(AdagradConfig {
    lr: f64,
    lr_decay: f64,
    weight_decay: f64,
    initial_accumulator_value: f64,
    eps: f64,
    maximize: bool,
});

mod adagrad;
mod adam;
mod clip;
pub mod lr_scheduler;
mod rmsprop;
mod sgd;
mod state;

pub use adagrad::{Adagrad, AdagradConfig};
pub use adam::{Adam, AdamConfig};
pub use clip::{GradSourceMut, clip_grad_norm, clip_grad_value};
pub use lr_scheduler::{LrGroups, LrScheduler};
pub use rmsprop::{RMSprop, RMSpropConfig};
pub use sgd::{Sgd, SgdConfig};

use std::collections::{HashMap, HashSet};

use crate::element::Float;
use crate::error::{Error, Result};
use crate::grads::Gradients;
use crate::nn::StateDict;
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

    /// Sets a parameter's gradient by hand, replacing any sum (PyTorch: assigning `p.grad`).
    pub fn set(&mut self, param: &Param<T>, grad: Tensor<T>) {
        self.sums.insert(param.id(), grad);
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

/// What every optimizer does: a step from gradients, learning rates a schedule can set (through
/// its supertrait [`LrGroups`]), and state that can be saved and loaded by parameter name.
pub trait Optimizer<T: Float>: LrGroups {
    /// One update of every parameter that has a gradient in `grads`.
    fn step(&mut self, grads: &dyn GradSource<T>) -> Result<()>;

    /// The learning rate of each group.
    fn lrs(&self) -> Vec<f64> {
        self.group_lrs()
    }

    /// Sets each group's learning rate (one value per group); fails, changing nothing, unless
    /// each is finite and ≥ 0.
    fn set_lrs(&mut self, lrs: &[f64]) -> Result<()> {
        self.set_group_lrs(lrs)
    }

    /// The learning rate of the first group.
    fn lr(&self) -> f64 {
        self.lrs().first().copied().unwrap_or(0.0)
    }

    /// Sets every group's learning rate; fails, changing nothing, unless finite and ≥ 0.
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        let n = self.lrs().len();
        self.set_lrs(&vec![lr; n])
    }

    /// Every parameter the optimizer updates, group by group (for [`clip_grad_norm`]).
    fn params(&self) -> Vec<&Param<T>>;

    /// The optimizer's state, keyed by parameter **name**: per parameter, its step count and
    /// buffers (tensors `state.<name>.<buffer>`, e.g. `state.0.weight.exp_avg`, and metadata
    /// `state.<name>.step`); per group, its learning rate, initial learning rate (set by a
    /// scheduler) and weight decay, and its parameters' names (`group.<i>.*`); and the
    /// hyper-parameters (`hyper.*`). Save it with [`StateDict::save`] (atomic) beside the model.
    ///
    /// PyTorch equivalent: `optimizer.state_dict()` (which keys by position, not name).
    fn state_dict(&self) -> Result<StateDict<T>>;

    /// Restores a state saved by [`state_dict`](Optimizer::state_dict), all or nothing: the
    /// optimizer kind must match, each group must hold the same parameter names, every buffer
    /// must be present with its parameter's current shape and no other entry may be; the saved
    /// hyper-parameters, learning rates and weight decays replace the current ones (as PyTorch's
    /// `load_state_dict` does). On any error nothing changes.
    fn load_state_dict(&mut self, state: &StateDict<T>) -> Result<()>;
}

/// One parameter's optimizer state: its step count and its buffers (momentum, moments), in the
/// order of the optimizer's buffer names.
#[derive(Debug)]
pub(crate) struct SlotState<T: Float> {
    pub(crate) step: u64,
    pub(crate) buffers: Vec<Tensor<T>>,
}

/// One parameter an optimizer tracks: its name, the handle, and its state once a step has
/// created it.
#[derive(Debug)]
pub(crate) struct Slot<T: Float> {
    pub(crate) name: String,
    pub(crate) param: Param<T>,
    pub(crate) state: Option<SlotState<T>>,
}

/// A group as an optimizer keeps it: resolved settings and the slots.
#[derive(Debug)]
pub(crate) struct Group<T: Float> {
    pub(crate) lr: f64,
    /// The learning rate a scheduler started from (PyTorch's `group["initial_lr"]`).
    pub(crate) initial_lr: Option<f64>,
    /// The group's momentum (SGD, RMSprop) or β₁ (Adam) once a scheduler has set it
    /// (`OneCycleLR`'s momentum cycling); `None`: the optimizer's setting.
    pub(crate) momentum: Option<f64>,
    pub(crate) weight_decay: f64,
    pub(crate) slots: Vec<Slot<T>>,
}

/// Resolves groups against the optimizer's defaults and validates them: names unique across
/// groups, learning rates and decays finite and ≥ 0.
pub(crate) fn build_groups<T: Float>(
    op: &'static str,
    groups: Vec<ParamGroup<T>>,
    lr: f64,
    weight_decay: f64,
) -> Result<Vec<Group<T>>> {
    let mut names = HashSet::new();
    groups
        .into_iter()
        .map(|g| {
            let lr = g.lr.unwrap_or(lr);
            let weight_decay = g.weight_decay.unwrap_or(weight_decay);
            check_lr(op, lr)?;
            check_decay(op, weight_decay)?;
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
                initial_lr: None,
                momentum: None,
                weight_decay,
                slots,
            })
        })
        .collect()
}

/// Sets each group's lr after checking them all.
pub(crate) fn set_lrs_checked<T: Float>(
    op: &'static str,
    groups: &mut [Group<T>],
    lrs: &[f64],
    initial: bool,
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
        if initial {
            g.initial_lr = Some(lr);
        } else {
            g.lr = lr;
        }
    }
    Ok(())
}

/// Implements [`LrGroups`] for an optimizer whose groups are in `self.groups` and whose name is
/// `self.op_name()`. With `momentum: |config| …, check: |op, value| …`, the groups' momentum
/// (or β₁) can be set too.
macro_rules! lr_groups {
    ($ty:ident $(, momentum: $get:expr, check: $check:expr)?) => {
        impl<T: Float> $crate::optim::LrGroups for $ty<T> {
            fn group_lrs(&self) -> Vec<f64> {
                self.groups.iter().map(|g| g.lr).collect()
            }

            fn set_group_lrs(&mut self, lrs: &[f64]) -> Result<()> {
                $crate::optim::set_lrs_checked(self.op_name(), &mut self.groups, lrs, false)
            }

            fn initial_lrs(&self) -> Vec<Option<f64>> {
                self.groups.iter().map(|g| g.initial_lr).collect()
            }

            fn set_initial_lrs(&mut self, lrs: &[f64]) -> Result<()> {
                $crate::optim::set_lrs_checked(self.op_name(), &mut self.groups, lrs, true)
            }

            $(
            fn group_momentums(&self) -> Option<Vec<f64>> {
                let default = ($get)(&self.config);
                Some(self.groups.iter().map(|g| g.momentum.unwrap_or(default)).collect())
            }

            fn set_group_momentums(&mut self, momentums: &[f64]) -> Result<()> {
                let op = self.op_name();
                if momentums.len() != self.groups.len() {
                    return Err($crate::Error::ArgumentCount {
                        op,
                        what: "momentums (one per group)",
                        expected: self.groups.len(),
                        got: momentums.len(),
                    });
                }
                for &m in momentums {
                    ($check)(op, &self.config, m)?;
                }
                for (g, &m) in self.groups.iter_mut().zip(momentums) {
                    g.momentum = Some(m);
                }
                Ok(())
            }
            )?
        }
    };
}
pub(crate) use lr_groups;

/// Every parameter of the groups, in order.
pub(crate) fn group_params<T: Float>(groups: &[Group<T>]) -> Vec<&Param<T>> {
    groups
        .iter()
        .flat_map(|g| g.slots.iter().map(|s| &s.param))
        .collect()
}

/// The gradient as the update uses it: negated when maximizing (PyTorch's `-grad`), with the
/// L2 penalty `λθ` added when `weight_decay` ≠ 0 (PyTorch's `grad.add(param, alpha=λ)`). Borrows
/// the gradient when neither applies.
pub(crate) fn effective_grad<'g, T: Float>(
    grad: &'g Tensor<T>,
    param: &Param<T>,
    maximize: bool,
    weight_decay: f64,
) -> Result<std::borrow::Cow<'g, Tensor<T>>> {
    use std::borrow::Cow;
    if !maximize && weight_decay == 0.0 {
        return Ok(Cow::Borrowed(grad));
    }
    let mut g = grad.try_clone()?;
    if maximize {
        g.data_mut().iter_mut().for_each(|x| *x = -*x);
    }
    if weight_decay != 0.0 {
        let decay = T::from_f64(weight_decay);
        for (gi, &p) in g.data_mut().iter_mut().zip(param.value().data()) {
            *gi += decay * p;
        }
    }
    Ok(Cow::Owned(g))
}

/// PyTorch's CPU `lerp(start, end, weight)`: `start + w·(end − start)` for |w| < 0.5, else
/// `end − (end − start)·(1 − w)` (the two forms keep the ends exact).
#[inline]
pub(crate) fn lerp<T: Float>(start: T, end: T, weight: T) -> T {
    if weight.abs() < T::from_f64(0.5) {
        start + weight * (end - start)
    } else {
        end - (end - start) * (T::ONE - weight)
    }
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

/// A weight decay must be finite and ≥ 0.
pub(crate) fn check_decay(op: &'static str, weight_decay: f64) -> Result<()> {
    check_hyper(
        op,
        "weight_decay",
        weight_decay,
        weight_decay >= 0.0 && weight_decay.is_finite(),
        "must be finite and >= 0",
    )
}

/// A setting that must be finite and ≥ 0.
pub(crate) fn check_nonneg(op: &'static str, name: &'static str, value: f64) -> Result<()> {
    check_hyper(
        op,
        name,
        value,
        value >= 0.0 && value.is_finite(),
        "must be finite and >= 0",
    )
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

/// A group's momentum set after construction (SGD, RMSprop): only if the optimizer was built with
/// momentum (`configured` > 0, so that it keeps a momentum buffer), and finite and > 0.
pub(crate) fn check_group_momentum(op: &'static str, configured: f64, momentum: f64) -> Result<()> {
    check_hyper(
        op,
        "momentum",
        momentum,
        configured > 0.0,
        "the optimizer was built without momentum",
    )?;
    check_hyper(
        op,
        "momentum",
        momentum,
        momentum > 0.0 && momentum.is_finite(),
        "must be finite and > 0",
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
