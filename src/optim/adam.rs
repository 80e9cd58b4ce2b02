//! Adam and AdamW, PyTorch's `torch.optim.Adam` and `torch.optim.AdamW`.

use super::{
    GradSource, Group, IntoGroups, Optimizer, build_groups, check_hyper, check_lr, check_shape,
    check_state, set_group_lrs,
};
use crate::element::Float;
use crate::error::Result;
use crate::tensor::Tensor;

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
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
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
}

/// Adam(W) with bias correction, for each parameter θ with gradient g at step t:
///
/// ```text
/// θ ← θ(1 − lr·λ)                 (AdamW)      g ← g + λθ   (Adam)
/// m ← β₁m + (1 − β₁)g
/// v ← β₂v + (1 − β₂)g²
/// θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
#[derive(Debug)]
pub struct Adam<T: Float> {
    config: AdamConfig,
    groups: Vec<Group<T, Moments<T>>>,
}

/// One parameter's state: the step count and both moment estimates.
#[derive(Debug)]
pub(crate) struct Moments<T: Float> {
    step: i32,
    m: Tensor<T>,
    v: Tensor<T>,
}

impl<T: Float> Adam<T> {
    /// An optimizer of these parameters (named, or in groups) with these settings; fails on the
    /// values PyTorch rejects, on a NaN or infinite one, and on two parameters of one name.
    pub fn new(params: impl IntoGroups<T>, config: AdamConfig) -> Result<Self> {
        let op = config.name();
        check_lr(op, config.lr)?;
        check_hyper(
            op,
            "eps",
            config.eps,
            config.eps >= 0.0 && config.eps.is_finite(),
            "must be finite and >= 0",
        )?;
        let (b1, b2) = config.betas;
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
        check_hyper(
            op,
            "weight_decay",
            config.weight_decay,
            config.weight_decay >= 0.0 && config.weight_decay.is_finite(),
            "must be finite and >= 0",
        )?;
        let groups = build_groups(op, params.into_groups(), config.lr, config.weight_decay)?;
        Ok(Adam { config, groups })
    }
}

impl AdamConfig {
    fn name(&self) -> &'static str {
        if self.decoupled { "AdamW" } else { "Adam" }
    }
}

impl<T: Float> Optimizer<T> for Adam<T> {
    fn step(&mut self, grads: &dyn GradSource<T>) -> Result<()> {
        let c = &self.config;
        let op = c.name();
        let b2 = T::from_f64(c.betas.1);
        let eps = T::from_f64(c.eps);
        // 1 − β in f64, then rounded once, as PyTorch passes them to its kernels.
        let (one_minus_b1, one_minus_b2) =
            (T::from_f64(1.0 - c.betas.0), T::from_f64(1.0 - c.betas.1));
        for group in &mut self.groups {
            let (lr, weight_decay) = (group.lr, group.weight_decay);
            for slot in &mut group.slots {
                let Some(grad) = grads.grad(&slot.param) else {
                    continue;
                };
                check_shape(op, &slot.param, grad)?;
                let state = match &mut slot.state {
                    Some(state) => state,
                    empty @ None => empty.insert(Moments {
                        step: 0,
                        m: grad.zeros_like()?,
                        v: grad.zeros_like()?,
                    }),
                };
                check_state(op, &slot.name, &slot.param, &state.m)?;
                state.step += 1;
                let bias1 = 1.0 - c.betas.0.powi(state.step);
                let bias2_sqrt = T::from_f64((1.0 - c.betas.1.powi(state.step)).sqrt());
                let step_size = T::from_f64(lr / bias1);
                let decay = T::from_f64(weight_decay);
                let shrink = T::from_f64(1.0 - lr * weight_decay);
                let (m, v) = (&mut state.m, &mut state.v);
                slot.param.update(|theta| {
                    for (((p, &g), m), v) in theta
                        .data_mut()
                        .iter_mut()
                        .zip(grad.data())
                        .zip(m.data_mut())
                        .zip(v.data_mut())
                    {
                        let g = if c.decoupled {
                            *p *= shrink;
                            g
                        } else {
                            g + decay * *p
                        };
                        // m ← m + (1 − β₁)(g − m): β₁m + (1 − β₁)g in PyTorch's lerp form.
                        *m += one_minus_b1 * (g - *m);
                        *v = b2 * *v + one_minus_b2 * g * g;
                        *p -= step_size * *m / (v.sqrt() / bias2_sqrt + eps);
                    }
                });
            }
        }
        Ok(())
    }

    fn lrs(&self) -> Vec<f64> {
        self.groups.iter().map(|g| g.lr).collect()
    }

    fn set_lrs(&mut self, lrs: &[f64]) -> Result<()> {
        set_group_lrs(self.config.name(), &mut self.groups, lrs)
    }
}
