//! RMSprop, PyTorch's `torch.optim.RMSprop`.

use super::state::{self, Hyper, Meta, StateConfig, fmt_f64};
use super::{
    GradSource, Group, IntoGroups, Optimizer, SlotState, build_groups, check_group_momentum,
    check_hyper, check_lr, check_nonneg, check_shape, check_state, effective_grad, group_params,
    lerp, lr_groups,
};
use crate::element::Float;
use crate::error::Result;
use crate::nn::StateDict;
use crate::param::Param;

/// Settings of [`RMSprop`]; the defaults are PyTorch's: lr 1e-2, α 0.99, ε 1e-8, no weight decay,
/// no momentum, not centered, minimizing.
#[derive(Clone, Copy, Debug)]
pub struct RMSpropConfig {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant α of the running average of g².
    pub alpha: f64,
    /// ε added to the denominator.
    pub eps: f64,
    /// L2 penalty λ added to the gradient.
    pub weight_decay: f64,
    /// Momentum factor μ.
    pub momentum: f64,
    /// Centered: normalise by the estimated variance `E[g²] − E[g]²` rather than `E[g²]`.
    pub centered: bool,
    /// Maximize the objective (PyTorch's `maximize=True`).
    pub maximize: bool,
}

impl Default for RMSpropConfig {
    fn default() -> Self {
        RMSpropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
        }
    }
}

impl RMSpropConfig {
    fn validate(&self) -> Result<()> {
        let op = "RMSprop";
        check_lr(op, self.lr)?;
        check_hyper(
            op,
            "alpha",
            self.alpha,
            (0.0..=1.0).contains(&self.alpha),
            "must lie in [0, 1]",
        )?;
        check_nonneg(op, "eps", self.eps)?;
        check_nonneg(op, "weight_decay", self.weight_decay)?;
        check_nonneg(op, "momentum", self.momentum)
    }
}

impl StateConfig for RMSpropConfig {
    fn name(&self) -> &'static str {
        "RMSprop"
    }

    fn hyper(&self) -> Hyper {
        vec![
            ("lr", fmt_f64(self.lr)),
            ("alpha", fmt_f64(self.alpha)),
            ("eps", fmt_f64(self.eps)),
            ("weight_decay", fmt_f64(self.weight_decay)),
            ("momentum", fmt_f64(self.momentum)),
            ("centered", self.centered.to_string()),
            ("maximize", self.maximize.to_string()),
        ]
    }

    fn from_meta(meta: &Meta<'_>) -> Result<Self> {
        let config = RMSpropConfig {
            lr: meta.f64("lr")?,
            alpha: meta.f64("alpha")?,
            eps: meta.f64("eps")?,
            weight_decay: meta.f64("weight_decay")?,
            momentum: meta.f64("momentum")?,
            centered: meta.bool("centered")?,
            maximize: meta.bool("maximize")?,
        };
        config.validate()?;
        Ok(config)
    }

    /// The state each parameter keeps, PyTorch's names: `square_avg`, then `momentum_buffer`
    /// when μ > 0, then `grad_avg` when centered.
    fn buffers(&self) -> &'static [&'static str] {
        match (self.momentum > 0.0, self.centered) {
            (false, false) => &["square_avg"],
            (true, false) => &["square_avg", "momentum_buffer"],
            (false, true) => &["square_avg", "grad_avg"],
            (true, true) => &["square_avg", "momentum_buffer", "grad_avg"],
        }
    }
}

/// RMSprop with PyTorch's update, for each parameter θ with gradient g:
///
/// ```text
/// g ← −g                                  (maximize)
/// g ← g + λθ                              (weight decay)
/// s ← αs + (1 − α)g²
/// a ← αa + (1 − α)g,  d ← √(s − a²) + ε   (centered)
///                     d ← √s + ε          (otherwise)
/// b ← μb + g/d,  θ ← θ − lr·b             (momentum μ > 0)
/// θ ← θ − lr·g/d                          (otherwise)
/// ```
///
/// PyTorch equivalent: `torch.optim.RMSprop(params, lr, alpha, eps, weight_decay, momentum,
/// centered, maximize=maximize)`.
///
/// ```
/// use tapegrad::optim::{GradAccumulator, Optimizer, RMSprop, RMSpropConfig};
/// use tapegrad::{Param, Tensor};
/// let w = Param::new("w", Tensor::from_vec(vec![1.0f64], &[1])?);
/// let config = RMSpropConfig { lr: 0.01, alpha: 0.9, ..Default::default() };
/// let mut rmsprop = RMSprop::new(vec![("w".to_string(), w.share())], config)?;
/// let mut grads = GradAccumulator::new();
/// grads.set(&w, Tensor::from_vec(vec![2.0], &[1])?);
/// rmsprop.step(&grads)?;
/// // s = 0.1·4 = 0.4, θ = 1 − 0.01·2/(√0.4 + 1e-8)
/// assert!((w.value().data()[0] - (1.0 - 0.02 / (0.4f64.sqrt() + 1e-8))).abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug)]
pub struct RMSprop<T: Float> {
    config: RMSpropConfig,
    groups: Vec<Group<T>>,
}

impl<T: Float> RMSprop<T> {
    /// An optimizer of these parameters (named, or in groups) with these settings; fails on a
    /// negative, NaN or infinite setting, on α outside `[0, 1]`, and on two parameters of one name.
    pub fn new(params: impl IntoGroups<T>, config: RMSpropConfig) -> Result<Self> {
        config.validate()?;
        let groups = build_groups(
            "RMSprop",
            params.into_groups(),
            config.lr,
            config.weight_decay,
        )?;
        Ok(RMSprop { config, groups })
    }

    /// Its settings.
    pub fn config(&self) -> &RMSpropConfig {
        &self.config
    }

    fn op_name(&self) -> &'static str {
        "RMSprop"
    }
}

lr_groups!(
    RMSprop,
    momentum: |c: &RMSpropConfig| c.momentum,
    check: |op, c: &RMSpropConfig, m: f64| check_group_momentum(op, c.momentum, m)
);

impl<T: Float> Optimizer<T> for RMSprop<T> {
    fn step(&mut self, grads: &dyn GradSource<T>) -> Result<()> {
        let op = "RMSprop";
        let c = &self.config;
        let alpha = T::from_f64(c.alpha);
        let one_minus_alpha = T::from_f64(1.0 - c.alpha);
        let eps = T::from_f64(c.eps);
        let count = self.config.buffers().len();
        for group in &mut self.groups {
            let lr = T::from_f64(group.lr);
            let momentum = T::from_f64(group.momentum.unwrap_or(c.momentum));
            for slot in &mut group.slots {
                let Some(grad) = grads.grad(&slot.param) else {
                    continue;
                };
                check_shape(op, &slot.param, grad)?;
                let g = effective_grad(grad, &slot.param, c.maximize, group.weight_decay)?;
                let state = match &mut slot.state {
                    Some(state) => state,
                    empty @ None => {
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
                // [square_avg, momentum_buffer?, grad_avg?] (`buffers()`).
                let (square, rest) = state.buffers.split_at_mut(1);
                let square = square[0].data_mut();
                let (mut buf, rest) = if c.momentum > 0.0 {
                    let (b, r) = rest.split_at_mut(1);
                    (b.first_mut().map(|t| t.data_mut()), r)
                } else {
                    (None, rest)
                };
                let mut grad_avg = rest.first_mut().map(|t| t.data_mut());
                slot.param.update(|theta| {
                    for (i, (p, &g)) in theta.data_mut().iter_mut().zip(g.data()).enumerate() {
                        square[i] = square[i] * alpha + one_minus_alpha * g * g;
                        let avg = match &mut grad_avg {
                            Some(a) => {
                                a[i] = lerp(a[i], g, one_minus_alpha);
                                (square[i] - a[i] * a[i]).sqrt() + eps
                            }
                            None => square[i].sqrt() + eps,
                        };
                        match &mut buf {
                            Some(b) => {
                                b[i] = b[i] * momentum + g / avg;
                                *p -= lr * b[i];
                            }
                            None => *p -= lr * g / avg,
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
