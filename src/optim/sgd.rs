//! Stochastic gradient descent, PyTorch's `torch.optim.SGD`.

use super::{
    GradSource, Group, IntoGroups, Optimizer, build_groups, check_hyper, check_lr, check_shape,
    check_state, set_group_lrs,
};
use crate::element::Float;
use crate::error::Result;
use crate::tensor::Tensor;

/// Settings of [`Sgd`]; the defaults are PyTorch's: lr 1e-3 (as `torch.optim.SGD` since 2.x), no
/// momentum, no dampening, no weight decay.
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
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// SGD with PyTorch's update, for each parameter θ with gradient g:
///
/// ```text
/// g ← g + λθ                                  (weight decay)
/// b ← g                 on the first step,    (momentum buffer)
/// b ← μb + (1 − τ)g     after
/// g ← g + μb  if nesterov, else g ← b
/// θ ← θ − lr·g
/// ```
#[derive(Debug)]
pub struct Sgd<T: Float> {
    config: SgdConfig,
    groups: Vec<Group<T, Tensor<T>>>,
}

impl<T: Float> Sgd<T> {
    /// An optimizer of these parameters (named, or in groups) with these settings; fails on the
    /// values PyTorch rejects, on a NaN or infinite one, and on two parameters of one name.
    pub fn new(params: impl IntoGroups<T>, config: SgdConfig) -> Result<Self> {
        let op = "SGD";
        check_lr(op, config.lr)?;
        check_hyper(
            op,
            "momentum",
            config.momentum,
            config.momentum >= 0.0 && config.momentum.is_finite(),
            "must be finite and >= 0",
        )?;
        check_hyper(
            op,
            "dampening",
            config.dampening,
            config.dampening.is_finite(),
            "must be finite",
        )?;
        check_hyper(
            op,
            "weight_decay",
            config.weight_decay,
            config.weight_decay >= 0.0 && config.weight_decay.is_finite(),
            "must be finite and >= 0",
        )?;
        if config.nesterov {
            check_hyper(
                op,
                "momentum",
                config.momentum,
                config.momentum > 0.0,
                "Nesterov needs momentum > 0",
            )?;
            check_hyper(
                op,
                "dampening",
                config.dampening,
                config.dampening == 0.0,
                "Nesterov needs dampening 0",
            )?;
        }
        let groups = build_groups(op, params.into_groups(), config.lr, config.weight_decay)?;
        Ok(Sgd { config, groups })
    }
}

impl<T: Float> Optimizer<T> for Sgd<T> {
    fn step(&mut self, grads: &dyn GradSource<T>) -> Result<()> {
        let c = &self.config;
        let momentum = T::from_f64(c.momentum);
        let damp = T::from_f64(1.0 - c.dampening);
        for group in &mut self.groups {
            let (lr, decay) = (T::from_f64(group.lr), T::from_f64(group.weight_decay));
            for slot in &mut group.slots {
                let Some(grad) = grads.grad(&slot.param) else {
                    continue;
                };
                check_shape("SGD", &slot.param, grad)?;
                if group.weight_decay == 0.0 && c.momentum == 0.0 {
                    // Plain SGD: θ ← θ − lr·g, straight from the gradient, no copy.
                    slot.param.update(|p| {
                        for (p, &gi) in p.data_mut().iter_mut().zip(grad.data()) {
                            *p -= lr * gi;
                        }
                    });
                    continue;
                }
                let mut g = grad.try_clone()?;
                if group.weight_decay != 0.0 {
                    for (gi, &p) in g.data_mut().iter_mut().zip(slot.param.value().data()) {
                        *gi += decay * p;
                    }
                }
                if c.momentum != 0.0 {
                    match &mut slot.state {
                        Some(buf) => {
                            check_state("SGD", &slot.name, &slot.param, buf)?;
                            for (b, &gi) in buf.data_mut().iter_mut().zip(g.data()) {
                                *b = momentum * *b + damp * gi;
                            }
                        }
                        None => slot.state = Some(g.try_clone()?),
                    }
                    if let Some(buf) = &slot.state {
                        if c.nesterov {
                            for (gi, &b) in g.data_mut().iter_mut().zip(buf.data()) {
                                *gi += momentum * b;
                            }
                        } else {
                            g.data_mut().copy_from_slice(buf.data());
                        }
                    }
                }
                slot.param.update(|p| {
                    for (p, &gi) in p.data_mut().iter_mut().zip(g.data()) {
                        *p -= lr * gi;
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
        set_group_lrs("SGD", &mut self.groups, lrs)
    }
}
