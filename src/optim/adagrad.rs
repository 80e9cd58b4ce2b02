//! Adagrad, PyTorch's `torch.optim.Adagrad`.

use super::state::{self, Hyper, Meta, StateConfig, fmt_f64};
use super::{
    GradSource, Group, IntoGroups, Optimizer, SlotState, build_groups, check_lr, check_nonneg,
    check_shape, check_state, effective_grad, group_params, lr_groups,
};
use crate::element::Float;
use crate::error::Result;
use crate::nn::StateDict;
use crate::param::Param;
use crate::tensor::Tensor;

/// Settings of [`Adagrad`]; the defaults are PyTorch's: lr 1e-2, no lr decay, no weight decay,
/// accumulator starting at 0, ε 1e-10, minimizing.
#[derive(Clone, Copy, Debug)]
pub struct AdagradConfig {
    /// Learning rate.
    pub lr: f64,
    /// Learning-rate decay: step t uses `lr / (1 + (t − 1)·lr_decay)`.
    pub lr_decay: f64,
    /// L2 penalty λ added to the gradient.
    pub weight_decay: f64,
    /// The value every sum of squared gradients starts from.
    pub initial_accumulator_value: f64,
    /// ε added to the denominator.
    pub eps: f64,
    /// Maximize the objective (PyTorch's `maximize=True`).
    pub maximize: bool,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        AdagradConfig {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            maximize: false,
        }
    }
}

impl AdagradConfig {
    fn validate(&self) -> Result<()> {
        let op = "Adagrad";
        check_lr(op, self.lr)?;
        check_nonneg(op, "lr_decay", self.lr_decay)?;
        check_nonneg(op, "weight_decay", self.weight_decay)?;
        check_nonneg(
            op,
            "initial_accumulator_value",
            self.initial_accumulator_value,
        )?;
        check_nonneg(op, "eps", self.eps)
    }
}

impl StateConfig for AdagradConfig {
    fn name(&self) -> &'static str {
        "Adagrad"
    }

    fn hyper(&self) -> Hyper {
        vec![
            ("lr", fmt_f64(self.lr)),
            ("lr_decay", fmt_f64(self.lr_decay)),
            ("weight_decay", fmt_f64(self.weight_decay)),
            (
                "initial_accumulator_value",
                fmt_f64(self.initial_accumulator_value),
            ),
            ("eps", fmt_f64(self.eps)),
            ("maximize", self.maximize.to_string()),
        ]
    }

    fn from_meta(meta: &Meta<'_>) -> Result<Self> {
        let config = AdagradConfig {
            lr: meta.f64("lr")?,
            lr_decay: meta.f64("lr_decay")?,
            weight_decay: meta.f64("weight_decay")?,
            initial_accumulator_value: meta.f64("initial_accumulator_value")?,
            eps: meta.f64("eps")?,
            maximize: meta.bool("maximize")?,
        };
        config.validate()?;
        Ok(config)
    }

    fn buffers(&self) -> &'static [&'static str] {
        BUFFERS
    }
}

/// The state each parameter keeps, PyTorch's name: the running sum of squared gradients.
const BUFFERS: &[&str] = &["sum"];

/// Adagrad with PyTorch's update, for each parameter θ with gradient g at step t:
///
/// ```text
/// g ← −g                                  (maximize)
/// g ← g + λθ                              (weight decay)
/// s ← s + g²                              (s starts at initial_accumulator_value)
/// θ ← θ − lr / (1 + (t − 1)·lr_decay) · g / (√s + ε)
/// ```
///
/// PyTorch equivalent: `torch.optim.Adagrad(params, lr, lr_decay, weight_decay,
/// initial_accumulator_value, eps, maximize=maximize)`. PyTorch creates each sum when the
/// optimizer is built, this creates it at the parameter's first step; the updates are the same.
///
/// ```
/// use tapegrad::optim::{Adagrad, AdagradConfig, GradAccumulator, Optimizer};
/// use tapegrad::{Param, Tensor};
/// let w = Param::new("w", Tensor::from_vec(vec![1.0f64], &[1])?);
/// let config = AdagradConfig { lr: 0.5, initial_accumulator_value: 0.25, ..Default::default() };
/// let mut adagrad = Adagrad::new(vec![("w".to_string(), w.share())], config)?;
/// let mut grads = GradAccumulator::new();
/// grads.set(&w, Tensor::from_vec(vec![1.0], &[1])?);
/// adagrad.step(&grads)?;
/// // s = 0.25 + 1, θ = 1 − 0.5·1/(√1.25 + 1e-10)
/// assert!((w.value().data()[0] - (1.0 - 0.5 / (1.25f64.sqrt() + 1e-10))).abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug)]
pub struct Adagrad<T: Float> {
    config: AdagradConfig,
    groups: Vec<Group<T>>,
}

impl<T: Float> Adagrad<T> {
    /// An optimizer of these parameters (named, or in groups) with these settings; fails on the
    /// values PyTorch rejects, on a NaN or infinite one, and on two parameters of one name.
    pub fn new(params: impl IntoGroups<T>, config: AdagradConfig) -> Result<Self> {
        config.validate()?;
        let groups = build_groups(
            "Adagrad",
            params.into_groups(),
            config.lr,
            config.weight_decay,
        )?;
        Ok(Adagrad { config, groups })
    }

    /// Its settings.
    pub fn config(&self) -> &AdagradConfig {
        &self.config
    }

    fn op_name(&self) -> &'static str {
        "Adagrad"
    }
}

lr_groups!(Adagrad);

impl<T: Float> Optimizer<T> for Adagrad<T> {
    fn step(&mut self, grads: &dyn GradSource<T>) -> Result<()> {
        let op = "Adagrad";
        let c = &self.config;
        let eps = T::from_f64(c.eps);
        for group in &mut self.groups {
            for slot in &mut group.slots {
                let Some(grad) = grads.grad(&slot.param) else {
                    continue;
                };
                check_shape(op, &slot.param, grad)?;
                let g = effective_grad(grad, &slot.param, c.maximize, group.weight_decay)?;
                let state = match &mut slot.state {
                    Some(state) => state,
                    empty @ None => empty.insert(SlotState {
                        step: 0,
                        buffers: vec![Tensor::full_shape(
                            grad.shape().clone(),
                            T::from_f64(c.initial_accumulator_value),
                        )?],
                    }),
                };
                // Adagrad keeps exactly one buffer (`BUFFERS`).
                let sum = &mut state.buffers[0];
                check_state(op, &slot.name, &slot.param, sum)?;
                state.step += 1;
                let clr = group.lr / (1.0 + (state.step as f64 - 1.0) * c.lr_decay);
                let neg_clr = T::from_f64(-clr);
                let sum = sum.data_mut();
                slot.param.update(|theta| {
                    for ((p, &g), s) in theta.data_mut().iter_mut().zip(g.data()).zip(sum) {
                        *s += g * g;
                        *p += neg_clr * g / (s.sqrt() + eps);
                    }
                });
            }
        }
        Ok(())
    }

    fn params(&self) -> Vec<&Param<T>> {
        group_params(&self.groups)
    }

    fn state_dict(&self) -> Result<StateDict<T>> {
        state::save_with(&self.config, &self.groups)
    }

    fn load_state_dict(&mut self, sd: &StateDict<T>) -> Result<()> {
        state::load_with(&mut self.config, &mut self.groups, sd)
    }
}
