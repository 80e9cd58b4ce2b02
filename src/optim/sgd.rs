//! Stochastic gradient descent, PyTorch's `torch.optim.SGD`.

use std::collections::HashMap;

use super::{GradSource, check_hyper, check_lr, check_shape, check_state};
use crate::element::Float;
use crate::error::Result;
use crate::param::{Param, ParamId};
use crate::tensor::Tensor;

/// Settings of [`Sgd`]; the defaults are PyTorch's: lr 1e-3 (as `torch.optim.SGD` since 2.x), no
/// momentum, no dampening, no weight decay.
#[derive(Clone, Debug)]
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
    buffers: HashMap<ParamId, Tensor<T>>,
}

impl<T: Float> Sgd<T> {
    /// An optimizer with these settings; fails on the values PyTorch rejects.
    pub fn new(config: SgdConfig) -> Result<Self> {
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
        Ok(Sgd {
            config,
            buffers: HashMap::new(),
        })
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Changes the learning rate for the following steps (a schedule); fails (and keeps the old
    /// one) unless it is finite and ≥ 0, as the constructor does.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_lr("SGD", lr)?;
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
        let (lr, momentum) = (T::from_f64(c.lr), T::from_f64(c.momentum));
        let (decay, damp) = (T::from_f64(c.weight_decay), T::from_f64(1.0 - c.dampening));
        for param in params {
            let Some(grad) = grads.grad(param) else {
                continue;
            };
            check_shape("SGD", param, grad)?;
            if c.weight_decay == 0.0 && c.momentum == 0.0 {
                // Plain SGD: θ ← θ − lr·g, straight from the gradient, no copy.
                for (p, &gi) in param.value_mut().data_mut().iter_mut().zip(grad.data()) {
                    *p -= lr * gi;
                }
                continue;
            }
            let mut g = grad.try_clone()?;
            if c.weight_decay != 0.0 {
                for (gi, &p) in g.data_mut().iter_mut().zip(param.value().data()) {
                    *gi += decay * p;
                }
            }
            if c.momentum != 0.0 {
                match self.buffers.get_mut(&param.id()) {
                    Some(buf) => {
                        check_state("SGD", param, buf)?;
                        for (b, &gi) in buf.data_mut().iter_mut().zip(g.data()) {
                            *b = momentum * *b + damp * gi;
                        }
                    }
                    None => {
                        self.buffers.insert(param.id(), g.try_clone()?);
                    }
                }
                let buf = &self.buffers[&param.id()];
                if c.nesterov {
                    for (gi, &b) in g.data_mut().iter_mut().zip(buf.data()) {
                        *gi += momentum * b;
                    }
                } else {
                    g.data_mut().copy_from_slice(buf.data());
                }
            }
            for (p, &gi) in param.value_mut().data_mut().iter_mut().zip(g.data()) {
                *p -= lr * gi;
            }
        }
        Ok(())
    }
}
