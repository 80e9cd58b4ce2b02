//! Adam and AdamW, PyTorch's `torch.optim.Adam` and `torch.optim.AdamW`.

use super::state::{self, Hyper, Meta, StateConfig, fmt_f64};
use super::{
    GradSource, Group, IntoGroups, Optimizer, SlotState, build_groups, check_hyper, check_lr,
    check_nonneg, check_shape, check_state, group_params, lerp, lr_groups,
};
use crate::element::Float;
use crate::error::Result;
use crate::nn::StateDict;
use crate::param::Param;

/// Settings of [`Adam`]. `Default` gives PyTorch's Adam defaults; [`AdamConfig::adamw`] gives AdamW's.
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// (β₁, β₂): decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// ε added to the denominator.
    pub eps: f64,
    /// Weight decay λ: added to the gradient (Adam) or applied to θ directly (AdamW).
    pub weight_decay: f64,
    /// Decoupled weight decay: AdamW.
    pub decoupled: bool,
    /// AMSGrad: divide by the running maximum of the second moment (PyTorch's `amsgrad=True`).
    pub amsgrad: bool,
    /// Maximize the objective (PyTorch's `maximize=True`).
    pub maximize: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            amsgrad: false,
            maximize: false,
        }
    }
}

impl AdamConfig {
    /// PyTorch's AdamW defaults: as Adam, with decoupled weight decay 0.01.
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 1e-2,
            decoupled: true,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<()> {
        let op = self.name();
        check_lr(op, self.lr)?;
        check_nonneg(op, "eps", self.eps)?;
        let (b1, b2) = self.betas;
        check_hyper(
            op,
            "beta1",
            b1,
            (0.0..1.0).contains(&b1),
            "must lie in [0, 1)",
        )?;
        check_hyper(
            op,
            "beta2",
            b2,
            (0.0..1.0).contains(&b2),
            "must lie in [0, 1)",
        )?;
        check_nonneg(op, "weight_decay", self.weight_decay)
    }
}

impl StateConfig for AdamConfig {
    fn name(&self) -> &'static str {
        if self.decoupled { "AdamW" } else { "Adam" }
    }

    fn hyper(&self) -> Hyper {
        vec![
            ("lr", fmt_f64(self.lr)),
            ("beta1", fmt_f64(self.betas.0)),
            ("beta2", fmt_f64(self.betas.1)),
            ("eps", fmt_f64(self.eps)),
            ("weight_decay", fmt_f64(self.weight_decay)),
            ("decoupled", self.decoupled.to_string()),
            ("amsgrad", self.amsgrad.to_string()),
            ("maximize", self.maximize.to_string()),
        ]
    }

    fn from_meta(meta: &Meta<'_>) -> Result<Self> {
        let config = AdamConfig {
            lr: meta.f64("lr")?,
            betas: (meta.f64("beta1")?, meta.f64("beta2")?),
            eps: meta.f64("eps")?,
            weight_decay: meta.f64("weight_decay")?,
            decoupled: meta.bool("decoupled")?,
            amsgrad: meta.bool("amsgrad")?,
            maximize: meta.bool("maximize")?,
        };
        config.validate()?;
        Ok(config)
    }

    /// The state each parameter keeps, PyTorch's names.
    fn buffers(&self) -> &'static [&'static str] {
        if self.amsgrad {
            &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
        } else {
            &["exp_avg", "exp_avg_sq"]
        }
    }
}

/// Adam(W) with bias correction, for each parameter θ with gradient g at step t:
///
/// ```text
/// g ← −g                                       (maximize)
/// θ ← θ(1 − lr·λ)                 (AdamW)      g ← g + λθ   (Adam)
/// m ← β₁m + (1 − β₁)g
/// v ← β₂v + (1 − β₂)g²
/// v̂ ← max(v̂, v)                               (AMSGrad; v̂ replaces v below)
/// θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
///
/// PyTorch equivalent: `torch.optim.Adam(params, lr, betas, eps, weight_decay, amsgrad,
/// maximize=maximize)` and `torch.optim.AdamW(…)` when `decoupled`.
///
/// ```
/// use tapegrad::optim::{Adam, AdamConfig, GradAccumulator, Optimizer};
/// use tapegrad::{Param, Tensor};
/// let w = Param::new("w", Tensor::from_vec(vec![1.0f64, -2.0], &[2])?);
/// let config = AdamConfig { lr: 0.1, amsgrad: true, ..AdamConfig::adamw() };
/// let mut adam = Adam::new(vec![("w".to_string(), w.share())], config)?;
/// let g = Tensor::from_vec(vec![0.5, -0.5], &[2])?;
/// let mut grads = GradAccumulator::new();
/// grads.set(&w, g);
/// adam.step(&grads)?;
/// // The first step moves each coordinate by lr (times the AdamW shrink) against the gradient's sign.
/// assert!((w.value().data()[0] - (1.0 * (1.0 - 0.1 * 0.01) - 0.1)).abs() < 1e-7);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug)]
pub struct Adam<T: Float> {
    config: AdamConfig,
    groups: Vec<Group<T>>,
}

impl<T: Float> Adam<T> {
    /// An optimizer of these parameters (named, or in groups) with these settings; fails on the
    /// values PyTorch rejects, on a NaN or infinite one, and on two parameters of one name.
    pub fn new(params: impl IntoGroups<T>, config: AdamConfig) -> Result<Self> {
        config.validate()?;
        let groups = build_groups(
            config.name(),
            params.into_groups(),
            config.lr,
            config.weight_decay,
        )?;
        Ok(Adam { config, groups })
    }

    /// Its settings.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    fn op_name(&self) -> &'static str {
        self.config.name()
    }
}

lr_groups!(
    Adam,
    momentum: |c: &AdamConfig| c.betas.0,
    check: |op, _: &AdamConfig, b1: f64| {
        check_hyper(op, "beta1", b1, (0.0..1.0).contains(&b1), "must lie in [0, 1)")
    }
);

impl<T: Float> Optimizer<T> for Adam<T> {
    fn step(&mut self, grads: &dyn GradSource<T>) -> Result<()> {
        let c = &self.config;
        let op = c.name();
        let b2 = T::from_f64(c.betas.1);
        let eps = T::from_f64(c.eps);
        let one_minus_b2 = T::from_f64(1.0 - c.betas.1);
        let sign = if c.maximize { -T::ONE } else { T::ONE };
        for group in &mut self.groups {
            let (lr, weight_decay) = (group.lr, group.weight_decay);
            // β₁ may be the group's own (set by a scheduler). 1 − β in f64, then rounded once,
            // as PyTorch passes it to its kernels.
            let beta1 = group.momentum.unwrap_or(c.betas.0);
            let one_minus_b1 = T::from_f64(1.0 - beta1);
            for slot in &mut group.slots {
                let Some(grad) = grads.grad(&slot.param) else {
                    continue;
                };
                check_shape(op, &slot.param, grad)?;
                let state = match &mut slot.state {
                    Some(state) => state,
                    empty @ None => {
                        let count = if c.amsgrad { 3 } else { 2 };
                        let mut buffers = Vec::with_capacity(count);
                        for _ in 0..count {
                            buffers.push(grad.zeros_like()?);
                        }
                        empty.insert(SlotState { step: 0, buffers })
                    }
                };
                for buffer in &state.buffers {
                    check_state(op, &slot.name, &slot.param, buffer)?;
                }
                state.step += 1;
                // Python's float power, as PyTorch computes the bias corrections.
                let t = state.step as f64;
                let bias1 = 1.0 - beta1.powf(t);
                let bias2_sqrt = T::from_f64((1.0 - c.betas.1.powf(t)).powf(0.5));
                let step_size = T::from_f64(lr / bias1);
                let decay = T::from_f64(weight_decay);
                let shrink = T::from_f64(1.0 - lr * weight_decay);
                let decoupled = c.decoupled && weight_decay != 0.0;
                let coupled = !c.decoupled && weight_decay != 0.0;
                // The buffers are [m, v] or [m, v, v̂] (`buffers()`).
                let (m, rest) = state.buffers.split_at_mut(1);
                let (v, vmax) = rest.split_at_mut(1);
                let (m, v) = (m[0].data_mut(), v[0].data_mut());
                let mut vmax = vmax.first_mut().map(|t| t.data_mut());
                slot.param.update(|theta| {
                    for (i, (p, &g)) in theta.data_mut().iter_mut().zip(grad.data()).enumerate() {
                        let mut g = sign * g;
                        if decoupled {
                            *p *= shrink;
                        } else if coupled {
                            g += decay * *p;
                        }
                        m[i] = lerp(m[i], g, one_minus_b1);
                        v[i] = b2 * v[i] + one_minus_b2 * g * g;
                        let second = match &mut vmax {
                            Some(vmax) => {
                                // torch.maximum: NaN wins.
                                if vmax[i] < v[i] || v[i].is_nan() {
                                    vmax[i] = v[i];
                                }
                                vmax[i]
                            }
                            None => v[i],
                        };
                        *p -= step_size * m[i] / (second.sqrt() / bias2_sqrt + eps);
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
