//! Stochastic gradient descent, PyTorch's `torch.optim.SGD`.

use super::state::{self, Hyper, Meta, StateConfig, fmt_f64};
use super::{
    GradSource, Group, IntoGroups, Optimizer, SlotState, build_groups, check_group_momentum,
    check_hyper, check_lr, check_nonneg, check_shape, check_state, effective_grad, group_params,
    lr_groups,
};
use crate::element::Float;
use crate::error::Result;
use crate::nn::StateDict;
use crate::param::Param;

/// Settings of [`Sgd`]; the defaults are PyTorch's: lr 1e-3 (as `torch.optim.SGD` since 2.x), no
/// momentum, no dampening, no weight decay, minimizing.
#[derive(Clone, Copy, Debug)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor μ.
    pub momentum: f64,
    /// Dampening τ of the momentum update.
    pub dampening: f64,
    /// Nesterov momentum (needs μ > 0 and τ = 0).
    pub nesterov: bool,
    /// L2 penalty λ added to the gradient.
    pub weight_decay: f64,
    /// Maximize the objective: step along +g (PyTorch's `maximize=True`).
    pub maximize: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl SgdConfig {
    fn validate(&self) -> Result<()> {
        let op = "SGD";
        check_lr(op, self.lr)?;
        check_nonneg(op, "momentum", self.momentum)?;
        check_hyper(
            op,
            "dampening",
            self.dampening,
            self.dampening.is_finite(),
            "must be finite",
        )?;
        check_nonneg(op, "weight_decay", self.weight_decay)?;
        if self.nesterov {
            check_hyper(
                op,
                "momentum",
                self.momentum,
                self.momentum > 0.0,
                "Nesterov needs momentum > 0",
            )?;
            check_hyper(
                op,
                "dampening",
                self.dampening,
                self.dampening == 0.0,
                "Nesterov needs dampening 0",
            )?;
        }
        Ok(())
    }
}

impl StateConfig for SgdConfig {
    fn name(&self) -> &'static str {
        "SGD"
    }

    fn hyper(&self) -> Hyper {
        vec![
            ("lr", fmt_f64(self.lr)),
            ("momentum", fmt_f64(self.momentum)),
            ("dampening", fmt_f64(self.dampening)),
            ("nesterov", self.nesterov.to_string()),
            ("weight_decay", fmt_f64(self.weight_decay)),
            ("maximize", self.maximize.to_string()),
        ]
    }

    fn from_meta(meta: &Meta<'_>) -> Result<Self> {
        let config = SgdConfig {
            lr: meta.f64("lr")?,
            momentum: meta.f64("momentum")?,
            dampening: meta.f64("dampening")?,
            nesterov: meta.bool("nesterov")?,
            weight_decay: meta.f64("weight_decay")?,
            maximize: meta.bool("maximize")?,
        };
        config.validate()?;
        Ok(config)
    }

    /// The state each parameter keeps: a momentum buffer when μ ≠ 0.
    fn buffers(&self) -> &'static [&'static str] {
        if self.momentum != 0.0 {
            &["momentum_buffer"]
        } else {
            &[]
        }
    }
}

/// SGD with PyTorch's update, for each parameter θ with gradient g:
///
/// ```text
/// g ← −g                                      (maximize)
/// g ← g + λθ                                  (weight decay)
/// b ← g                 on the first step,    (momentum buffer)
/// b ← μb + (1 − τ)g     after
/// g ← g + μb  if nesterov, else g ← b
/// θ ← θ − lr·g
/// ```
///
/// PyTorch equivalent: `torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov,
/// maximize=maximize)`.
#[derive(Debug)]
pub struct Sgd<T: Float> {
    config: SgdConfig,
    groups: Vec<Group<T>>,
}

impl<T: Float> Sgd<T> {
    /// An optimizer of these parameters (named, or in groups) with these settings; fails on the
    /// values PyTorch rejects, on a NaN or infinite one, and on two parameters of one name.
    pub fn new(params: impl IntoGroups<T>, config: SgdConfig) -> Result<Self> {
        config.validate()?;
        let groups = build_groups("SGD", params.into_groups(), config.lr, config.weight_decay)?;
        Ok(Sgd { config, groups })
    }

    /// Its settings.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    fn op_name(&self) -> &'static str {
        "SGD"
    }
}

lr_groups!(
    Sgd,
    momentum: |c: &SgdConfig| c.momentum,
    check: |op, c: &SgdConfig, m: f64| check_group_momentum(op, c.momentum, m)
);

impl<T: Float> Optimizer<T> for Sgd<T> {
    fn step(&mut self, grads: &dyn GradSource<T>) -> Result<()> {
        let c = &self.config;
        let damp = T::from_f64(1.0 - c.dampening);
        for group in &mut self.groups {
            let lr = T::from_f64(group.lr);
            let momentum = T::from_f64(group.momentum.unwrap_or(c.momentum));
            for slot in &mut group.slots {
                let Some(grad) = grads.grad(&slot.param) else {
                    continue;
                };
                check_shape("SGD", &slot.param, grad)?;
                if c.momentum == 0.0 {
                    // No state: θ ← θ − lr·g, straight from the gradient when there is nothing
                    // to add to it.
                    let g = effective_grad(grad, &slot.param, c.maximize, group.weight_decay)?;
                    slot.param.update(|p| {
                        for (p, &gi) in p.data_mut().iter_mut().zip(g.data()) {
                            *p -= lr * gi;
                        }
                    });
                    continue;
                }
                let g = effective_grad(grad, &slot.param, c.maximize, group.weight_decay)?;
                let state = match &mut slot.state {
                    Some(state) => {
                        // SGD with momentum keeps exactly one buffer (`buffers()`).
                        let buf = &mut state.buffers[0];
                        check_state("SGD", &slot.name, &slot.param, buf)?;
                        for (b, &gi) in buf.data_mut().iter_mut().zip(g.data()) {
                            *b = momentum * *b + damp * gi;
                        }
                        state.step += 1;
                        state
                    }
                    empty @ None => empty.insert(SlotState {
                        step: 1,
                        buffers: vec![g.try_clone()?],
                    }),
                };
                let buf = state.buffers[0].data();
                slot.param.update(|p| {
                    if c.nesterov {
                        // g ← g + μb, θ ← θ − lr·g, without materialising g.
                        for ((p, &gi), &b) in p.data_mut().iter_mut().zip(g.data()).zip(buf) {
                            *p -= lr * (gi + momentum * b);
                        }
                    } else {
                        for (p, &b) in p.data_mut().iter_mut().zip(buf) {
                            *p -= lr * b;
                        }
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
