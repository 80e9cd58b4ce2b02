//! Adam and AdamW, PyTorch's `torch.optim.Adam` and `torch.optim.AdamW`.

use std::collections::HashMap;

use std::collections::hash_map::Entry;

use super::{GradSource, check_hyper, check_lr, check_shape, check_state};
use crate::element::Float;
use crate::error::Result;
use crate::param::{Param, ParamId};
use crate::tensor::Tensor;

/// Settings of [`Adam`]. `Default` gives PyTorch's Adam defaults; [`AdamConfig::adamw`] gives AdamW's.
#[derive(Clone, Debug)]
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
    state: HashMap<ParamId, Moments<T>>,
}

#[derive(Debug)]
struct Moments<T: Float> {
    step: i32,
    m: Tensor<T>,
    v: Tensor<T>,
}

impl<T: Float> Adam<T> {
    /// An optimizer with these settings; fails on the values PyTorch rejects.
    pub fn new(config: AdamConfig) -> Result<Self> {
        let op = if config.decoupled { "AdamW" } else { "Adam" };
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
        Ok(Adam {
            config,
            state: HashMap::new(),
        })
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Changes the learning rate for the following steps; fails (and keeps the old one) unless it
    /// is finite and ≥ 0, as the constructor does.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_lr(
            if self.config.decoupled {
                "AdamW"
            } else {
                "Adam"
            },
            lr,
        )?;
        self.config.lr = lr;
        Ok(())
    }

    /// One update of every parameter that has a gradient in `grads`.
    pub fn step<'p>(
        &mut self,
        params: impl IntoIterator<Item = &'p mut Param<T>>,
        grads: &impl GradSource<T>,
    ) -> Result<()> {
        let c = &self.config;
        let op = if c.decoupled { "AdamW" } else { "Adam" };
        let b2 = T::from_f64(c.betas.1);
        let eps = T::from_f64(c.eps);
        // 1 − β in f64, then rounded once, as PyTorch passes them to its kernels.
        let (one_minus_b1, one_minus_b2) =
            (T::from_f64(1.0 - c.betas.0), T::from_f64(1.0 - c.betas.1));
        for param in params {
            let Some(grad) = grads.grad(param) else {
                continue;
            };
            check_shape(op, param, grad)?;
            let state = match self.state.entry(param.id()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(Moments {
                    step: 0,
                    m: grad.zeros_like()?,
                    v: grad.zeros_like()?,
                }),
            };
            check_state(op, param, &state.m)?;
            state.step += 1;
            let bias1 = 1.0 - c.betas.0.powi(state.step);
            let bias2_sqrt = T::from_f64((1.0 - c.betas.1.powi(state.step)).sqrt());
            let step_size = T::from_f64(c.lr / bias1);
            let decay = T::from_f64(c.weight_decay);
            let shrink = T::from_f64(1.0 - c.lr * c.weight_decay);
            let theta = param.value_mut();
            for (((p, &g), m), v) in theta
                .data_mut()
                .iter_mut()
                .zip(grad.data())
                .zip(state.m.data_mut())
                .zip(state.v.data_mut())
            {
                let g = if c.decoupled {
                    *p *= shrink;
                    g
                } else {
                    g + decay * *p
                };
                // m ← m + (1 − β₁)(g − m): the same as β₁m + (1 − β₁)g, in PyTorch's lerp form.
                *m += one_minus_b1 * (g - *m);
                *v = b2 * *v + one_minus_b2 * g * g;
                *p -= step_size * *m / (v.sqrt() / bias2_sqrt + eps);
            }
        }
        Ok(())
    }
}
