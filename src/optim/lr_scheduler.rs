//! Learning-rate schedulers with PyTorch's exact sequences: [`StepLR`], [`MultiStepLR`],
//! [`ExponentialLR`], [`CosineAnnealingLR`], [`LinearLR`], [`OneCycleLR`], [`SequentialLR`] and
//! [`ReduceLROnPlateau`].
//!
//! A scheduler acts on an optimizer's group learning rates through [`LrGroups`] (every
//! [`Optimizer`](super::Optimizer) implements it). As in PyTorch, building one takes its first
//! step at once (setting the lr of epoch 0), and each later [`LrScheduler::step`] — called
//! after the optimizer's step — moves to the next epoch. The updates are PyTorch's *recursive*
//! ("chainable") formulas, each new lr computed from the optimizer's current one, so the
//! sequences agree with PyTorch's to the last bit rather than only to the closed forms'
//! rounding, and schedulers compose the way PyTorch's do.
//!
//! The first scheduler attached to an optimizer records each group's lr as its *initial* lr
//! (PyTorch's `group["initial_lr"]`); every scheduler's base lrs are those. The optimizer saves
//! them in its state dict; a scheduler saves its own progress with [`LrScheduler::state_dict`].
//! To resume, build the optimizer and the scheduler as before, then load the optimizer's state
//! and then the scheduler's (the load overwrites the lr the scheduler's construction set).
//!
//! ```
//! use tapegrad::optim::lr_scheduler::{CosineAnnealingLR, LinearLR, SequentialLR};
//! use tapegrad::optim::{LrScheduler, Optimizer, Sgd, SgdConfig};
//! use tapegrad::{Param, Tensor};
//! let w = Param::new("w", Tensor::<f32>::zeros(&[3])?);
//! let mut sgd = Sgd::new(vec![("w".to_string(), w)], SgdConfig { lr: 0.1, ..Default::default() })?;
//! // 5 epochs of linear warm-up from 0.01, then cosine annealing over 20.
//! let warmup = LinearLR::new(&mut sgd, 0.1, 1.0, 5)?;
//! let cosine = CosineAnnealingLR::new(&mut sgd, 20, 0.0)?;
//! let mut schedule = SequentialLR::new(&mut sgd, vec![Box::new(warmup), Box::new(cosine)], vec![5])?;
//! let mut lrs = vec![sgd.lr()];
//! for _ in 0..25 {
//!     // … sgd.step(&grads)? …
//!     schedule.step(&mut sgd)?;
//!     lrs.push(sgd.lr());
//! }
//! assert!((lrs[0] - 0.01).abs() < 1e-12 && (lrs[5] - 0.1).abs() < 1e-12);
//! assert!(lrs[24] < 0.001);
//! # Ok::<(), tapegrad::Error>(())
//! ```

use std::collections::BTreeMap;
use std::f64::consts::PI;

use crate::error::{Error, Result};

/// What a scheduler reads and sets: the learning rate of each parameter group, and the initial
/// learning rate a schedule starts from. Every optimizer implements it.
pub trait LrGroups {
    /// The current learning rate of each group.
    fn group_lrs(&self) -> Vec<f64>;

    /// Sets each group's learning rate (one per group); fails, changing nothing, unless each is
    /// finite and ≥ 0.
    fn set_group_lrs(&mut self, lrs: &[f64]) -> Result<()>;

    /// Each group's initial learning rate (PyTorch's `group["initial_lr"]`): `None` until a
    /// scheduler is attached.
    fn initial_lrs(&self) -> Vec<Option<f64>>;

    /// Sets each group's initial learning rate; fails, changing nothing, unless each is finite
    /// and ≥ 0.
    fn set_initial_lrs(&mut self, lrs: &[f64]) -> Result<()>;

    /// Each group's momentum — SGD's and RMSprop's momentum, Adam's β₁ — or `None` if the
    /// optimizer has none (Adagrad). PyTorch: `group["momentum"]`, `group["betas"][0]`.
    fn group_momentums(&self) -> Option<Vec<f64>> {
        None
    }

    /// Sets each group's momentum (or β₁); fails, changing nothing, on an optimizer without one
    /// (or, for SGD and RMSprop, whose settings have momentum 0: the momentum buffer would not
    /// exist) and on a value the optimizer's constructor would reject.
    fn set_group_momentums(&mut self, momentums: &[f64]) -> Result<()> {
        let _ = momentums;
        Err(Error::InvalidArgument {
            op: "set_group_momentums",
            reason: "this optimizer has no momentum".into(),
        })
    }
}

/// A scheduler's saved state: string entries (numbers in shortest round-trip form), ready for a
/// [`StateDict`](crate::nn::StateDict)'s `metadata`.
pub type SchedulerState = BTreeMap<String, String>;

/// What every epoch-driven scheduler does (all but [`ReduceLROnPlateau`], whose step needs a
/// metric).
pub trait LrScheduler: std::fmt::Debug + Send {
    /// Moves to the next epoch and sets the optimizer's learning rates.
    ///
    /// PyTorch equivalent: `scheduler.step()`.
    fn step(&mut self, opt: &mut dyn LrGroups) -> Result<()>;

    /// The learning rates set by the latest step (PyTorch's `get_last_lr()`).
    fn last_lrs(&self) -> &[f64];

    /// The current epoch (PyTorch's `last_epoch`): 0 after construction.
    fn last_epoch(&self) -> i64;

    /// The scheduler's progress, to resume from.
    fn state_dict(&self) -> SchedulerState;

    /// Restores progress saved by [`state_dict`](LrScheduler::state_dict) from a scheduler of
    /// the same kind (built with the same settings); all or nothing.
    fn load_state_dict(&mut self, state: &SchedulerState) -> Result<()>;

    /// Restarts at epoch 0 as if just built (PyTorch's `_initial_step`); used by
    /// [`SequentialLR`].
    fn initial_step(&mut self, opt: &mut dyn LrGroups) -> Result<()>;

    /// Jumps to `epoch` with the closed form where there is one (PyTorch's `_update_lr(epoch)`);
    /// used by [`SequentialLR`] at a milestone.
    fn step_to(&mut self, opt: &mut dyn LrGroups, epoch: i64) -> Result<()>;

    /// Steps the epoch counter back by one, in every nested scheduler too (PyTorch's
    /// `recursive_undo`); used by [`SequentialLR`].
    fn undo_epoch(&mut self);
}

/// The progress every epoch-driven scheduler keeps (PyTorch's `base_lrs`, `last_epoch`,
/// `_step_count`, `_last_lr`).
#[derive(Clone, Debug)]
struct Core {
    name: &'static str,
    base_lrs: Vec<f64>,
    last_epoch: i64,
    step_count: u64,
    last_lrs: Vec<f64>,
}

fn fmt_list(xs: &[f64]) -> String {
    xs.iter()
        .map(|x| format!("{x:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn bad_state(op: &'static str, reason: String) -> Error {
    Error::InvalidArgument {
        op,
        reason: format!("load_state_dict: {reason}"),
    }
}

fn get<'a>(op: &'static str, state: &'a SchedulerState, key: &str) -> Result<&'a str> {
    state
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| bad_state(op, format!("the entry `{key}` is missing")))
}

fn parse<V: std::str::FromStr>(op: &'static str, state: &SchedulerState, key: &str) -> Result<V> {
    let s = get(op, state, key)?;
    s.parse()
        .map_err(|_| bad_state(op, format!("the entry `{key}` = {s:?} does not parse")))
}

fn parse_list(op: &'static str, state: &SchedulerState, key: &str) -> Result<Vec<f64>> {
    let s = get(op, state, key)?;
    s.split_whitespace()
        .map(|x| {
            x.parse()
                .map_err(|_| bad_state(op, format!("the entry `{key}` = {s:?} does not parse")))
        })
        .collect()
}

impl Core {
    /// Attaches to an optimizer: records each group's current lr as its initial lr where none
    /// is set (PyTorch's `setdefault("initial_lr", lr)`), and takes those as the base lrs.
    fn attach(name: &'static str, opt: &mut dyn LrGroups) -> Result<Core> {
        let lrs = opt.group_lrs();
        let initial: Vec<f64> = opt
            .initial_lrs()
            .iter()
            .zip(&lrs)
            .map(|(i, &lr)| i.unwrap_or(lr))
            .collect();
        opt.set_initial_lrs(&initial)?;
        Ok(Core {
            name,
            base_lrs: initial,
            last_epoch: -1,
            step_count: 0,
            last_lrs: lrs,
        })
    }

    /// The optimizer's lrs, checked to be one per base lr.
    fn current(&self, opt: &dyn LrGroups) -> Result<Vec<f64>> {
        let lrs = opt.group_lrs();
        if lrs.len() != self.base_lrs.len() {
            return Err(Error::ArgumentCount {
                op: self.name,
                what: "parameter groups (as when the scheduler was built)",
                expected: self.base_lrs.len(),
                got: lrs.len(),
            });
        }
        Ok(lrs)
    }

    fn save(&self) -> SchedulerState {
        let mut s = SchedulerState::new();
        s.insert("scheduler".into(), self.name.into());
        s.insert("last_epoch".into(), self.last_epoch.to_string());
        s.insert("step_count".into(), self.step_count.to_string());
        s.insert("base_lrs".into(), fmt_list(&self.base_lrs));
        s.insert("last_lrs".into(), fmt_list(&self.last_lrs));
        s
    }

    /// The saved progress, checked against this scheduler (kind and group count).
    fn read(&self, state: &SchedulerState) -> Result<Core> {
        let op = self.name;
        let kind = get(op, state, "scheduler")?;
        if kind != op {
            return Err(bad_state(
                op,
                format!("the state was saved by {kind}, not {op}"),
            ));
        }
        let core = Core {
            name: self.name,
            base_lrs: parse_list(op, state, "base_lrs")?,
            last_epoch: parse(op, state, "last_epoch")?,
            step_count: parse(op, state, "step_count")?,
            last_lrs: parse_list(op, state, "last_lrs")?,
        };
        if core.base_lrs.len() != self.base_lrs.len() || core.last_lrs.len() != self.base_lrs.len()
        {
            return Err(bad_state(
                op,
                format!(
                    "the state is for {} parameter groups, the scheduler has {}",
                    core.base_lrs.len(),
                    self.base_lrs.len()
                ),
            ));
        }
        Ok(core)
    }
}

/// A schedule's formulas: PyTorch's `get_lr` (recursive, from the current lrs) and
/// `_get_closed_form_lr` where it has one.
trait Rule {
    /// The lrs for epoch `epoch` (already advanced), from the current ones; `initial` during the
    /// step taken at construction.
    fn get_lr(&self, core: &Core, epoch: i64, lrs: &[f64], initial: bool) -> Result<Vec<f64>>;

    /// The closed form at `epoch`, from the base lrs.
    fn closed_form(&self, core: &Core, epoch: i64) -> Option<Vec<f64>>;

    /// The momentums to set at `epoch`, for a schedule that moves them (`OneCycleLR`).
    fn momentums(&self, epoch: i64, groups: usize) -> Result<Option<Vec<f64>>> {
        let _ = (epoch, groups);
        Ok(None)
    }
}

/// PyTorch's `_update_lr`: advances (or jumps to `epoch`), computes, sets the optimizer's lrs.
/// Nothing changes on error.
fn update_lr(
    rule: &dyn Rule,
    core: &mut Core,
    opt: &mut dyn LrGroups,
    epoch: Option<i64>,
    initial: bool,
    step_count: u64,
) -> Result<()> {
    let lrs = core.current(opt)?;
    let mut next = core.clone();
    next.step_count = step_count;
    let values = match epoch {
        None => {
            next.last_epoch = core.last_epoch + 1;
            rule.get_lr(&next, next.last_epoch, &lrs, initial)?
        }
        Some(e) => {
            next.last_epoch = e;
            match rule.closed_form(&next, e) {
                Some(v) => v,
                None => rule.get_lr(&next, e, &lrs, initial)?,
            }
        }
    };
    let momentums = rule.momentums(next.last_epoch, values.len())?;
    opt.set_group_lrs(&values)?;
    if let Some(momentums) = momentums {
        // Within the range checked when the scheduler was built.
        opt.set_group_momentums(&momentums)?;
    }
    next.last_lrs = opt.group_lrs();
    *core = next;
    Ok(())
}

/// Implements [`LrScheduler`] for a scheduler with a `core: Core` and a [`Rule`].
macro_rules! epoch_scheduler {
    ($ty:ident) => {
        impl LrScheduler for $ty {
            fn step(&mut self, opt: &mut dyn LrGroups) -> Result<()> {
                let count = self.core.step_count + 1;
                let mut core = self.core.clone();
                update_lr(self, &mut core, opt, None, false, count)?;
                self.core = core;
                Ok(())
            }

            fn last_lrs(&self) -> &[f64] {
                &self.core.last_lrs
            }

            fn last_epoch(&self) -> i64 {
                self.core.last_epoch
            }

            fn state_dict(&self) -> SchedulerState {
                self.core.save()
            }

            fn load_state_dict(&mut self, state: &SchedulerState) -> Result<()> {
                self.core = self.core.read(state)?;
                Ok(())
            }

            fn initial_step(&mut self, opt: &mut dyn LrGroups) -> Result<()> {
                let mut core = self.core.clone();
                update_lr(self, &mut core, opt, None, true, 1)?;
                self.core = core;
                Ok(())
            }

            fn step_to(&mut self, opt: &mut dyn LrGroups, epoch: i64) -> Result<()> {
                let count = self.core.step_count;
                let mut core = self.core.clone();
                update_lr(self, &mut core, opt, Some(epoch), false, count)?;
                self.core = core;
                Ok(())
            }

            fn undo_epoch(&mut self) {
                self.core.last_epoch -= 1;
            }
        }
    };
}

fn check(
    op: &'static str,
    name: &'static str,
    value: f64,
    ok: bool,
    reason: &'static str,
) -> Result<()> {
    super::check_hyper(op, name, value, ok, reason)
}

fn check_gamma(op: &'static str, gamma: f64) -> Result<()> {
    check(
        op,
        "gamma",
        gamma,
        gamma >= 0.0 && gamma.is_finite(),
        "must be finite and >= 0",
    )
}

fn positive(op: &'static str, name: &'static str, n: u64) -> Result<()> {
    check(op, name, n as f64, n >= 1, "must be >= 1")
}

/// Multiplies each group's lr by `gamma` every `step_size` epochs.
///
/// PyTorch equivalent: `torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma)`.
///
/// ```
/// use tapegrad::optim::lr_scheduler::{StepLR};
/// use tapegrad::optim::{LrScheduler, Optimizer, Sgd, SgdConfig};
/// use tapegrad::{Param, Tensor};
/// let w = Param::new("w", Tensor::<f32>::zeros(&[1])?);
/// let mut sgd = Sgd::new(vec![("w".to_string(), w)], SgdConfig { lr: 1.0, ..Default::default() })?;
/// let mut s = StepLR::new(&mut sgd, 2, 0.5)?;
/// let mut lrs = vec![sgd.lr()];
/// for _ in 0..5 {
///     s.step(&mut sgd)?;
///     lrs.push(sgd.lr());
/// }
/// assert_eq!(lrs, vec![1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug)]
pub struct StepLR {
    core: Core,
    step_size: u64,
    gamma: f64,
}

impl StepLR {
    /// Attaches to `opt` and takes the first step; fails unless `step_size` ≥ 1 and `gamma` is
    /// finite and ≥ 0.
    pub fn new(opt: &mut dyn LrGroups, step_size: u64, gamma: f64) -> Result<Self> {
        let op = "StepLR";
        positive(op, "step_size", step_size)?;
        check_gamma(op, gamma)?;
        let mut s = StepLR {
            core: Core::attach(op, opt)?,
            step_size,
            gamma,
        };
        s.initial_step(opt)?;
        Ok(s)
    }
}

impl Rule for StepLR {
    fn get_lr(&self, _: &Core, epoch: i64, lrs: &[f64], _: bool) -> Result<Vec<f64>> {
        if epoch == 0 || epoch.rem_euclid(self.step_size as i64) != 0 {
            return Ok(lrs.to_vec());
        }
        Ok(lrs.iter().map(|lr| lr * self.gamma).collect())
    }

    fn closed_form(&self, core: &Core, epoch: i64) -> Option<Vec<f64>> {
        let k = epoch.div_euclid(self.step_size as i64) as f64;
        Some(
            core.base_lrs
                .iter()
                .map(|b| b * self.gamma.powf(k))
                .collect(),
        )
    }
}

epoch_scheduler!(StepLR);

/// Multiplies each group's lr by `gamma` at each milestone epoch (by `gammaᵏ` at a milestone
/// listed k times).
///
/// PyTorch equivalent: `torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma)`.
///
/// ```
/// use tapegrad::optim::lr_scheduler::{MultiStepLR};
/// use tapegrad::optim::{LrScheduler, Optimizer, Sgd, SgdConfig};
/// use tapegrad::{Param, Tensor};
/// let w = Param::new("w", Tensor::<f32>::zeros(&[1])?);
/// let mut sgd = Sgd::new(vec![("w".to_string(), w)], SgdConfig { lr: 1.0, ..Default::default() })?;
/// let mut s = MultiStepLR::new(&mut sgd, &[1, 3, 3], 0.5)?;
/// let mut lrs = vec![sgd.lr()];
/// for _ in 0..4 {
///     s.step(&mut sgd)?;
///     lrs.push(sgd.lr());
/// }
/// assert_eq!(lrs, vec![1.0, 0.5, 0.5, 0.125, 0.125]); // 3 is listed twice: ×0.5²
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug)]
pub struct MultiStepLR {
    core: Core,
    milestones: Vec<i64>,
    gamma: f64,
}

impl MultiStepLR {
    /// Attaches to `opt` and takes the first step; fails unless `gamma` is finite and ≥ 0.
    pub fn new(opt: &mut dyn LrGroups, milestones: &[u64], gamma: f64) -> Result<Self> {
        let op = "MultiStepLR";
        check_gamma(op, gamma)?;
        let mut milestones: Vec<i64> = milestones.iter().map(|&m| m as i64).collect();
        milestones.sort_unstable();
        let mut s = MultiStepLR {
            core: Core::attach(op, opt)?,
            milestones,
            gamma,
        };
        s.initial_step(opt)?;
        Ok(s)
    }
}

impl Rule for MultiStepLR {
    fn get_lr(&self, _: &Core, epoch: i64, lrs: &[f64], _: bool) -> Result<Vec<f64>> {
        let count = self.milestones.iter().filter(|&&m| m == epoch).count();
        if count == 0 {
            return Ok(lrs.to_vec());
        }
        Ok(lrs
            .iter()
            .map(|lr| lr * self.gamma.powf(count as f64))
            .collect())
    }

    fn closed_form(&self, core: &Core, epoch: i64) -> Option<Vec<f64>> {
        // bisect_right: the milestones ≤ epoch.
        let k = self.milestones.partition_point(|&m| m <= epoch) as f64;
        Some(
            core.base_lrs
                .iter()
                .map(|b| b * self.gamma.powf(k))
                .collect(),
        )
    }
}

epoch_scheduler!(MultiStepLR);

/// Multiplies each group's lr by `gamma` every epoch.
///
/// PyTorch equivalent: `torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)`.
///
/// ```
/// use tapegrad::optim::lr_scheduler::{ExponentialLR};
/// use tapegrad::optim::{LrScheduler, Optimizer, Sgd, SgdConfig};
/// use tapegrad::{Param, Tensor};
/// let w = Param::new("w", Tensor::<f32>::zeros(&[1])?);
/// let mut sgd = Sgd::new(vec![("w".to_string(), w)], SgdConfig { lr: 1.0, ..Default::default() })?;
/// let mut s = ExponentialLR::new(&mut sgd, 0.5)?;
/// s.step(&mut sgd)?;
/// s.step(&mut sgd)?;
/// assert_eq!(sgd.lr(), 0.25);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug)]
pub struct ExponentialLR {
    core: Core,
    gamma: f64,
}

impl ExponentialLR {
    /// Attaches to `opt` and takes the first step; fails unless `gamma` is finite and ≥ 0.
    pub fn new(opt: &mut dyn LrGroups, gamma: f64) -> Result<Self> {
        let op = "ExponentialLR";
        check_gamma(op, gamma)?;
        let mut s = ExponentialLR {
            core: Core::attach(op, opt)?,
            gamma,
        };
        s.initial_step(opt)?;
        Ok(s)
    }
}

impl Rule for ExponentialLR {
    fn get_lr(&self, _: &Core, _: i64, lrs: &[f64], initial: bool) -> Result<Vec<f64>> {
        if initial {
            return Ok(lrs.to_vec());
        }
        Ok(lrs.iter().map(|lr| lr * self.gamma).collect())
    }

    fn closed_form(&self, core: &Core, epoch: i64) -> Option<Vec<f64>> {
        Some(
            core.base_lrs
                .iter()
                .map(|b| b * self.gamma.powf(epoch as f64))
                .collect(),
        )
    }
}

epoch_scheduler!(ExponentialLR);

/// Anneals each group's lr from its base lr to `eta_min` along half a cosine over `t_max`
/// epochs (and back up over the next `t_max`, as PyTorch's recursion does):
/// `η_min + (η_base − η_min)(1 + cos(π·epoch/t_max))/2`.
///
/// PyTorch equivalent: `torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max, eta_min)`.
///
/// ```
/// use tapegrad::optim::lr_scheduler::{CosineAnnealingLR};
/// use tapegrad::optim::{LrScheduler, Optimizer, Sgd, SgdConfig};
/// use tapegrad::{Param, Tensor};
/// let w = Param::new("w", Tensor::<f32>::zeros(&[1])?);
/// let mut sgd = Sgd::new(vec![("w".to_string(), w)], SgdConfig { lr: 1.0, ..Default::default() })?;
/// let mut s = CosineAnnealingLR::new(&mut sgd, 4, 0.0)?;
/// s.step(&mut sgd)?;
/// s.step(&mut sgd)?;
/// assert!((sgd.lr() - 0.5).abs() < 1e-15); // half-way down the half cosine
/// s.step(&mut sgd)?;
/// s.step(&mut sgd)?;
/// assert!(sgd.lr().abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug)]
pub struct CosineAnnealingLR {
    core: Core,
    t_max: u64,
    eta_min: f64,
}

impl CosineAnnealingLR {
    /// Attaches to `opt` and takes the first step; fails unless `t_max` ≥ 1 and `eta_min` is
    /// finite and ≥ 0.
    pub fn new(opt: &mut dyn LrGroups, t_max: u64, eta_min: f64) -> Result<Self> {
        let op = "CosineAnnealingLR";
        positive(op, "T_max", t_max)?;
        check(
            op,
            "eta_min",
            eta_min,
            eta_min >= 0.0 && eta_min.is_finite(),
            "must be finite and >= 0",
        )?;
        let mut s = CosineAnnealingLR {
            core: Core::attach(op, opt)?,
            t_max,
            eta_min,
        };
        s.initial_step(opt)?;
        Ok(s)
    }
}

impl Rule for CosineAnnealingLR {
    fn get_lr(&self, core: &Core, epoch: i64, lrs: &[f64], initial: bool) -> Result<Vec<f64>> {
        let (t, e, eta) = (self.t_max as f64, epoch as f64, self.eta_min);
        if initial {
            return Ok(lrs.to_vec());
        }
        if core.step_count == 1 && epoch > 0 {
            return Ok(core
                .base_lrs
                .iter()
                .map(|b| eta + (b - eta) * (1.0 + (e * PI / t).cos()) / 2.0)
                .collect());
        }
        let t_max = self.t_max as i64;
        if (epoch - 1 - t_max).rem_euclid(2 * t_max) == 0 {
            return Ok(lrs
                .iter()
                .zip(&core.base_lrs)
                .map(|(lr, b)| lr + (b - eta) * (1.0 - (PI / t).cos()) / 2.0)
                .collect());
        }
        Ok(lrs
            .iter()
            .map(|lr| {
                (1.0 + (PI * e / t).cos()) / (1.0 + (PI * (e - 1.0) / t).cos()) * (lr - eta) + eta
            })
            .collect())
    }

    fn closed_form(&self, core: &Core, epoch: i64) -> Option<Vec<f64>> {
        let (t, e, eta) = (self.t_max as f64, epoch as f64, self.eta_min);
        Some(
            core.base_lrs
                .iter()
                .map(|b| eta + (b - eta) * (1.0 + (PI * e / t).cos()) / 2.0)
                .collect(),
        )
    }
}

epoch_scheduler!(CosineAnnealingLR);

/// Scales each group's lr by a factor going linearly from `start_factor` to `end_factor` over
/// `total_iters` epochs (a warm-up), then keeps it.
///
/// PyTorch equivalent: `torch.optim.lr_scheduler.LinearLR(optimizer, start_factor, end_factor,
/// total_iters)`.
///
/// ```
/// use tapegrad::optim::lr_scheduler::{LinearLR};
/// use tapegrad::optim::{LrScheduler, Optimizer, Sgd, SgdConfig};
/// use tapegrad::{Param, Tensor};
/// let w = Param::new("w", Tensor::<f32>::zeros(&[1])?);
/// let mut sgd = Sgd::new(vec![("w".to_string(), w)], SgdConfig { lr: 1.0, ..Default::default() })?;
/// let mut s = LinearLR::new(&mut sgd, 0.25, 1.0, 3)?;
/// let mut lrs = vec![sgd.lr()];
/// for _ in 0..4 {
///     s.step(&mut sgd)?;
///     lrs.push(sgd.lr());
/// }
/// assert_eq!(lrs, vec![0.25, 0.5, 0.75, 1.0, 1.0]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug)]
pub struct LinearLR {
    core: Core,
    start_factor: f64,
    end_factor: f64,
    total_iters: u64,
}

impl LinearLR {
    /// Attaches to `opt` and takes the first step (lr × `start_factor`); fails unless
    /// `start_factor` ∈ (0, 1], `end_factor` ∈ [0, 1] and `total_iters` ≥ 1 (PyTorch accepts 0).
    pub fn new(
        opt: &mut dyn LrGroups,
        start_factor: f64,
        end_factor: f64,
        total_iters: u64,
    ) -> Result<Self> {
        let op = "LinearLR";
        check(
            op,
            "start_factor",
            start_factor,
            start_factor > 0.0 && start_factor <= 1.0,
            "must lie in (0, 1]",
        )?;
        check(
            op,
            "end_factor",
            end_factor,
            (0.0..=1.0).contains(&end_factor),
            "must lie in [0, 1]",
        )?;
        positive(op, "total_iters", total_iters)?;
        let mut s = LinearLR {
            core: Core::attach(op, opt)?,
            start_factor,
            end_factor,
            total_iters,
        };
        s.initial_step(opt)?;
        Ok(s)
    }
}

impl Rule for LinearLR {
    fn get_lr(&self, _: &Core, epoch: i64, lrs: &[f64], initial: bool) -> Result<Vec<f64>> {
        let (s, e) = (self.start_factor, self.end_factor);
        if epoch == 0 {
            return Ok(lrs.iter().map(|lr| lr * s).collect());
        }
        if initial || epoch > self.total_iters as i64 {
            return Ok(lrs.to_vec());
        }
        let factor = 1.0 + (e - s) / (self.total_iters as f64 * s + (epoch - 1) as f64 * (e - s));
        Ok(lrs.iter().map(|lr| lr * factor).collect())
    }

    fn closed_form(&self, core: &Core, epoch: i64) -> Option<Vec<f64>> {
        let (s, e, n) = (self.start_factor, self.end_factor, self.total_iters as i64);
        let done = n.min(epoch) as f64;
        Some(
            core.base_lrs
                .iter()
                .map(|b| b * (s + (e - s) * done / n as f64))
                .collect(),
        )
    }
}

epoch_scheduler!(LinearLR);

/// How [`OneCycleLR`] interpolates within a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anneal {
    /// Half a cosine (PyTorch's `anneal_strategy="cos"`, the default).
    Cos,
    /// A straight line (`"linear"`).
    Linear,
}

/// Settings of [`OneCycleLR`]; `Default` gives PyTorch's (with `max_lrs` empty and
/// `total_steps` 0: set them).
#[derive(Clone, Debug)]
pub struct OneCycleConfig {
    /// The peak lr of each group (one value: every group).
    pub max_lrs: Vec<f64>,
    /// The number of steps of the whole cycle.
    pub total_steps: u64,
    /// The fraction of the cycle spent increasing the lr.
    pub pct_start: f64,
    /// How to interpolate.
    pub anneal: Anneal,
    /// Cycle the momentum (SGD, RMSprop) or β₁ (Adam) inversely to the lr, between
    /// `max_momentum` and `base_momentum`.
    pub cycle_momentum: bool,
    /// The lowest momentum, reached at the peak lr.
    pub base_momentum: f64,
    /// The highest momentum, at the start and the end of the cycle.
    pub max_momentum: f64,
    /// The initial lr is `max_lr / div_factor`.
    pub div_factor: f64,
    /// The final lr is `initial_lr / final_div_factor`.
    pub final_div_factor: f64,
    /// Three phases (up, back down to the initial lr, then down to the final lr) rather than two.
    pub three_phase: bool,
}

impl Default for OneCycleConfig {
    fn default() -> Self {
        OneCycleConfig {
            max_lrs: Vec::new(),
            total_steps: 0,
            pct_start: 0.3,
            anneal: Anneal::Cos,
            cycle_momentum: true,
            base_momentum: 0.85,
            max_momentum: 0.95,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
        }
    }
}

/// Which lr a phase starts or ends at.
#[derive(Clone, Copy, Debug)]
enum Level {
    Initial,
    Max,
    Min,
}

/// One phase of the cycle: its last step, and the lr and momentum it goes between (`true`:
/// the max momentum, `false`: the base one).
#[derive(Clone, Copy, Debug)]
struct Phase {
    end_step: f64,
    lr: (Level, Level),
    momentum: (bool, bool),
}

/// The 1cycle policy: the lr rises from `max_lr/div_factor` to `max_lr` over the first
/// `pct_start` of the cycle, then falls to `initial_lr/final_div_factor` (with `three_phase`,
/// first back to the initial lr, then to the final one); the momentum (β₁ for Adam) moves the
/// other way between `max_momentum` and `base_momentum`. Step it after every batch.
///
/// PyTorch equivalent: `torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr, total_steps,
/// pct_start, anneal_strategy, cycle_momentum, base_momentum, max_momentum, div_factor,
/// final_div_factor, three_phase)`, with one base and one max momentum for all groups. Cycling
/// momentum needs an optimizer built with momentum > 0 (SGD, RMSprop; PyTorch would switch it
/// on) or Adam; with Adagrad, set `cycle_momentum: false`.
#[derive(Debug)]
pub struct OneCycleLR {
    core: Core,
    config: OneCycleConfig,
    phases: Vec<Phase>,
    initial_lrs: Vec<f64>,
    max_lrs: Vec<f64>,
    min_lrs: Vec<f64>,
}

impl OneCycleLR {
    /// Attaches to `opt` (setting each group's initial lr to `max_lr/div_factor`, and with
    /// `cycle_momentum` its momentum to `max_momentum`, as PyTorch does) and takes the first step;
    /// fails unless `total_steps` ≥ 1, `pct_start` ∈ [0, 1], the max lrs (one, or one per group)
    /// finite and ≥ 0, the divisors finite and > 0, and — with `cycle_momentum` — the momentums
    /// in `[0, 1)` and accepted by the optimizer.
    pub fn new(opt: &mut dyn LrGroups, config: OneCycleConfig) -> Result<Self> {
        let op = "OneCycleLR";
        positive(op, "total_steps", config.total_steps)?;
        check(
            op,
            "pct_start",
            config.pct_start,
            (0.0..=1.0).contains(&config.pct_start),
            "must lie in [0, 1]",
        )?;
        for (name, v) in [
            ("div_factor", config.div_factor),
            ("final_div_factor", config.final_div_factor),
        ] {
            check(
                op,
                name,
                v,
                v > 0.0 && v.is_finite(),
                "must be finite and > 0",
            )?;
        }
        let groups = opt.group_lrs().len();
        let max_lrs = match config.max_lrs.len() {
            1 => vec![config.max_lrs[0]; groups],
            n if n == groups => config.max_lrs.clone(),
            n => {
                return Err(Error::ArgumentCount {
                    op,
                    what: "max_lrs (one, or one per group)",
                    expected: groups,
                    got: n,
                });
            }
        };
        for &m in &max_lrs {
            check(
                op,
                "max_lr",
                m,
                m >= 0.0 && m.is_finite(),
                "must be finite and >= 0",
            )?;
        }
        if config.cycle_momentum {
            for (name, v) in [
                ("base_momentum", config.base_momentum),
                ("max_momentum", config.max_momentum),
            ] {
                check(op, name, v, (0.0..1.0).contains(&v), "must lie in [0, 1)")?;
            }
            if opt.group_momentums().is_none() {
                return Err(Error::InvalidArgument {
                    op,
                    reason: "cycle_momentum needs an optimizer with momentum or beta1 \
                             (set cycle_momentum: false)"
                        .into(),
                });
            }
        }
        let total = config.total_steps as f64;
        let pct = config.pct_start;
        let phase = |end_step, lr, momentum| Phase {
            end_step,
            lr,
            momentum,
        };
        let phases = if config.three_phase {
            vec![
                phase(
                    pct * total - 1.0,
                    (Level::Initial, Level::Max),
                    (true, false),
                ),
                phase(
                    2.0 * pct * total - 2.0,
                    (Level::Max, Level::Initial),
                    (false, true),
                ),
                phase(total - 1.0, (Level::Initial, Level::Min), (true, true)),
            ]
        } else {
            vec![
                phase(
                    pct * total - 1.0,
                    (Level::Initial, Level::Max),
                    (true, false),
                ),
                phase(total - 1.0, (Level::Max, Level::Min), (false, true)),
            ]
        };
        let initial_lrs: Vec<f64> = max_lrs.iter().map(|m| m / config.div_factor).collect();
        let min_lrs = initial_lrs
            .iter()
            .map(|i| i / config.final_div_factor)
            .collect();
        if config.cycle_momentum {
            opt.set_group_momentums(&vec![config.max_momentum; groups])?;
        }
        // PyTorch overwrites group["initial_lr"] here (not setdefault).
        opt.set_initial_lrs(&initial_lrs)?;
        let mut s = OneCycleLR {
            core: Core::attach(op, opt)?,
            config,
            phases,
            initial_lrs,
            max_lrs,
            min_lrs,
        };
        s.initial_step(opt)?;
        Ok(s)
    }

    fn level(&self, level: Level, group: usize) -> f64 {
        match level {
            Level::Initial => self.initial_lrs[group],
            Level::Max => self.max_lrs[group],
            Level::Min => self.min_lrs[group],
        }
    }

    fn momentum(&self, max: bool) -> f64 {
        if max {
            self.config.max_momentum
        } else {
            self.config.base_momentum
        }
    }

    fn anneal(&self, start: f64, end: f64, pct: f64) -> f64 {
        match self.config.anneal {
            Anneal::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            Anneal::Linear => (end - start) * pct + start,
        }
    }

    /// The phase of step `epoch` and how far into it (PyTorch's loop over `_schedule_phases`).
    fn locate(&self, epoch: i64) -> Result<(Phase, f64)> {
        let op = "OneCycleLR";
        if epoch > self.config.total_steps as i64 {
            return Err(Error::InvalidArgument {
                op,
                reason: format!(
                    "tried to step {epoch} times; the cycle has total_steps = {}",
                    self.config.total_steps
                ),
            });
        }
        let step = epoch as f64;
        let mut start_step = 0.0;
        let last = self.phases.len() - 1;
        for (i, &phase) in self.phases.iter().enumerate() {
            if step <= phase.end_step || i == last {
                if phase.end_step == start_step {
                    return Err(Error::InvalidArgument {
                        op,
                        reason: format!(
                            "phase {i} of the cycle is empty (pct_start = {}, total_steps = {})",
                            self.config.pct_start, self.config.total_steps
                        ),
                    });
                }
                return Ok((phase, (step - start_step) / (phase.end_step - start_step)));
            }
            start_step = phase.end_step;
        }
        // Unreachable: the loop returns at the last phase at the latest.
        Err(Error::InvalidArgument {
            op,
            reason: "no phase".into(),
        })
    }
}

impl Rule for OneCycleLR {
    fn get_lr(&self, _: &Core, epoch: i64, lrs: &[f64], _: bool) -> Result<Vec<f64>> {
        let (phase, pct) = self.locate(epoch)?;
        Ok((0..lrs.len())
            .map(|g| self.anneal(self.level(phase.lr.0, g), self.level(phase.lr.1, g), pct))
            .collect())
    }

    fn closed_form(&self, _: &Core, _: i64) -> Option<Vec<f64>> {
        None
    }

    fn momentums(&self, epoch: i64, groups: usize) -> Result<Option<Vec<f64>>> {
        if !self.config.cycle_momentum {
            return Ok(None);
        }
        let (phase, pct) = self.locate(epoch)?;
        let (a, b) = (
            self.momentum(phase.momentum.0),
            self.momentum(phase.momentum.1),
        );
        Ok(Some(vec![self.anneal(a, b, pct); groups]))
    }
}

epoch_scheduler!(OneCycleLR);

/// Runs schedulers one after another, switching at the milestone epochs: scheduler k runs from
/// milestone k−1 (restarted at its epoch 0 there) until milestone k.
///
/// PyTorch equivalent: `torch.optim.lr_scheduler.SequentialLR(optimizer, schedulers,
/// milestones)`.
///
/// ```
/// use tapegrad::optim::lr_scheduler::{{ExponentialLR, SequentialLR, StepLR}};
/// use tapegrad::optim::{LrScheduler, Optimizer, Sgd, SgdConfig};
/// use tapegrad::{Param, Tensor};
/// let w = Param::new("w", Tensor::<f32>::zeros(&[1])?);
/// let mut sgd = Sgd::new(vec![("w".to_string(), w)], SgdConfig { lr: 1.0, ..Default::default() })?;
/// // Constant for 2 epochs (ExponentialLR with γ = 1), then halved every epoch.
/// let flat = ExponentialLR::new(&mut sgd, 1.0)?;
/// let decay = StepLR::new(&mut sgd, 1, 0.5)?;
/// let mut s = SequentialLR::new(&mut sgd, vec![Box::new(flat), Box::new(decay)], vec![2])?;
/// let mut lrs = vec![sgd.lr()];
/// for _ in 0..4 {
///     s.step(&mut sgd)?;
///     lrs.push(sgd.lr());
/// }
/// assert_eq!(lrs, vec![1.0, 1.0, 1.0, 0.5, 0.25]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug)]
pub struct SequentialLR {
    schedulers: Vec<Box<dyn LrScheduler>>,
    milestones: Vec<i64>,
    last_epoch: i64,
    step_count: u64,
    last_lrs: Vec<f64>,
}

impl SequentialLR {
    /// Takes over `schedulers` (built on `opt`, in order) with one milestone fewer than
    /// schedulers, sorted: resets the lrs to the initial ones and restarts the first scheduler.
    pub fn new(
        opt: &mut dyn LrGroups,
        schedulers: Vec<Box<dyn LrScheduler>>,
        milestones: Vec<u64>,
    ) -> Result<Self> {
        let op = "SequentialLR";
        if schedulers.is_empty() {
            return Err(Error::InvalidArgument {
                op,
                reason: "needs at least one scheduler".into(),
            });
        }
        if milestones.len() + 1 != schedulers.len() {
            return Err(Error::ArgumentCount {
                op,
                what: "milestones (one fewer than schedulers)",
                expected: schedulers.len() - 1,
                got: milestones.len(),
            });
        }
        if milestones.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::InvalidArgument {
                op,
                reason: format!("the milestones {milestones:?} are not sorted"),
            });
        }
        let initial: Option<Vec<f64>> = opt.initial_lrs().into_iter().collect();
        let initial = initial.ok_or_else(|| Error::InvalidArgument {
            op,
            reason: "the optimizer has no initial lr: build the schedulers on it first".into(),
        })?;
        opt.set_group_lrs(&initial)?;
        let mut s = SequentialLR {
            schedulers,
            milestones: milestones.iter().map(|&m| m as i64).collect(),
            last_epoch: 0,
            step_count: 0,
            last_lrs: initial,
        };
        for child in &mut s.schedulers {
            child.undo_epoch();
        }
        let idx = s.index(0);
        s.schedulers[idx].initial_step(opt)?;
        s.last_lrs = s.schedulers[idx].last_lrs().to_vec();
        Ok(s)
    }

    /// bisect_right(milestones, epoch).
    fn index(&self, epoch: i64) -> usize {
        self.milestones.partition_point(|&m| m <= epoch)
    }
}

impl LrScheduler for SequentialLR {
    fn step(&mut self, opt: &mut dyn LrGroups) -> Result<()> {
        let epoch = self.last_epoch + 1;
        let idx = self.index(epoch);
        let child = &mut self.schedulers[idx];
        if idx > 0 && self.milestones[idx - 1] == epoch {
            child.step_to(opt, 0)?;
        } else {
            child.step(opt)?;
        }
        self.last_lrs = child.last_lrs().to_vec();
        self.last_epoch = epoch;
        self.step_count += 1;
        Ok(())
    }

    fn last_lrs(&self) -> &[f64] {
        &self.last_lrs
    }

    fn last_epoch(&self) -> i64 {
        self.last_epoch
    }

    fn state_dict(&self) -> SchedulerState {
        let mut s = SchedulerState::new();
        s.insert("scheduler".into(), "SequentialLR".into());
        s.insert("last_epoch".into(), self.last_epoch.to_string());
        s.insert("step_count".into(), self.step_count.to_string());
        s.insert("last_lrs".into(), fmt_list(&self.last_lrs));
        for (i, child) in self.schedulers.iter().enumerate() {
            for (k, v) in child.state_dict() {
                s.insert(format!("schedulers.{i}.{k}"), v);
            }
        }
        s
    }

    fn load_state_dict(&mut self, state: &SchedulerState) -> Result<()> {
        let op = "SequentialLR";
        let kind = get(op, state, "scheduler")?;
        if kind != op {
            return Err(bad_state(
                op,
                format!("the state was saved by {kind}, not {op}"),
            ));
        }
        let last_epoch: i64 = parse(op, state, "last_epoch")?;
        let step_count: u64 = parse(op, state, "step_count")?;
        let last_lrs = parse_list(op, state, "last_lrs")?;
        let children: Vec<SchedulerState> = (0..self.schedulers.len())
            .map(|i| {
                let prefix = format!("schedulers.{i}.");
                state
                    .iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v.clone())))
                    .collect()
            })
            .collect();
        // All or nothing: load into the children, and put back the old states on a failure.
        let old: Vec<SchedulerState> = self.schedulers.iter().map(|c| c.state_dict()).collect();
        for (i, child_state) in children.iter().enumerate() {
            if let Err(e) = self.schedulers[i].load_state_dict(child_state) {
                for (child, old) in self.schedulers.iter_mut().zip(&old).take(i) {
                    // Restoring a state this child itself produced cannot fail.
                    let _ = child.load_state_dict(old);
                }
                return Err(e);
            }
        }
        self.last_epoch = last_epoch;
        self.step_count = step_count;
        self.last_lrs = last_lrs;
        Ok(())
    }

    fn initial_step(&mut self, opt: &mut dyn LrGroups) -> Result<()> {
        self.step_count = 0;
        self.step(opt)
    }

    fn step_to(&mut self, _: &mut dyn LrGroups, _: i64) -> Result<()> {
        // PyTorch's SequentialLR has no get_lr, so a nested one cannot be restarted at a
        // milestone either (it raises NotImplementedError).
        Err(Error::InvalidArgument {
            op: "SequentialLR",
            reason: "a SequentialLR cannot follow a milestone inside another SequentialLR".into(),
        })
    }

    fn undo_epoch(&mut self) {
        self.last_epoch -= 1;
        for child in &mut self.schedulers {
            child.undo_epoch();
        }
    }
}

/// What counts as an improvement for [`ReduceLROnPlateau`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlateauMode {
    /// The metric should fall (a loss).
    Min,
    /// The metric should rise (an accuracy).
    Max,
}

/// How [`ReduceLROnPlateau`]'s threshold applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Better means beyond `best·(1 ∓ threshold)`.
    Rel,
    /// Better means beyond `best ∓ threshold`.
    Abs,
}

/// Settings of [`ReduceLROnPlateau`]; `Default` gives PyTorch's.
#[derive(Clone, Debug)]
pub struct PlateauConfig {
    /// Whether lower or higher is better.
    pub mode: PlateauMode,
    /// The lr is multiplied by this on a plateau.
    pub factor: f64,
    /// Epochs without improvement tolerated before reducing.
    pub patience: u64,
    /// The least change that counts as an improvement.
    pub threshold: f64,
    /// Relative or absolute threshold.
    pub threshold_mode: ThresholdMode,
    /// Epochs to wait after a reduction before counting bad epochs again.
    pub cooldown: u64,
    /// The lowest lr of each group (one value: every group).
    pub min_lrs: Vec<f64>,
    /// A reduction smaller than this is skipped.
    pub eps: f64,
}

impl Default for PlateauConfig {
    fn default() -> Self {
        PlateauConfig {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lrs: vec![0.0],
            eps: 1e-8,
        }
    }
}

/// Reduces each group's lr by `factor` when a metric has stopped improving for more than
/// `patience` epochs.
///
/// PyTorch equivalent: `torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode, factor,
/// patience, threshold, threshold_mode, cooldown, min_lr, eps)`.
///
/// ```
/// use tapegrad::optim::lr_scheduler::{PlateauConfig, ReduceLROnPlateau};
/// use tapegrad::optim::{Optimizer, Sgd, SgdConfig};
/// use tapegrad::{Param, Tensor};
/// let w = Param::new("w", Tensor::<f32>::zeros(&[1])?);
/// let mut sgd = Sgd::new(vec![("w".to_string(), w)], SgdConfig { lr: 1.0, ..Default::default() })?;
/// let config = PlateauConfig { patience: 1, factor: 0.5, ..Default::default() };
/// let mut plateau = ReduceLROnPlateau::new(&mut sgd, config)?;
/// for loss in [3.0, 2.0, 2.0, 2.0] {
///     plateau.step(&mut sgd, loss)?;
/// }
/// assert_eq!(sgd.lr(), 0.5); // two epochs without improvement: halved
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug)]
pub struct ReduceLROnPlateau {
    config: PlateauConfig,
    min_lrs: Vec<f64>,
    best: f64,
    num_bad_epochs: u64,
    cooldown_counter: u64,
    last_epoch: i64,
    last_lrs: Vec<f64>,
}

impl ReduceLROnPlateau {
    /// Attaches to `opt`; fails unless `factor` ∈ [0, 1), `threshold` finite and ≥ 0, `eps`
    /// finite and ≥ 0, and the min lrs (one, or one per group) finite and ≥ 0.
    pub fn new(opt: &mut dyn LrGroups, config: PlateauConfig) -> Result<Self> {
        let op = "ReduceLROnPlateau";
        check(
            op,
            "factor",
            config.factor,
            (0.0..1.0).contains(&config.factor),
            "must lie in [0, 1)",
        )?;
        for (name, v) in [("threshold", config.threshold), ("eps", config.eps)] {
            check(
                op,
                name,
                v,
                v >= 0.0 && v.is_finite(),
                "must be finite and >= 0",
            )?;
        }
        let lrs = opt.group_lrs();
        let min_lrs = match config.min_lrs.len() {
            1 => vec![config.min_lrs[0]; lrs.len()],
            n if n == lrs.len() => config.min_lrs.clone(),
            n => {
                return Err(Error::ArgumentCount {
                    op,
                    what: "min_lrs (one, or one per group)",
                    expected: lrs.len(),
                    got: n,
                });
            }
        };
        for &m in &min_lrs {
            check(
                op,
                "min_lr",
                m,
                m >= 0.0 && m.is_finite(),
                "must be finite and >= 0",
            )?;
        }
        let best = match config.mode {
            PlateauMode::Min => f64::INFINITY,
            PlateauMode::Max => f64::NEG_INFINITY,
        };
        Ok(ReduceLROnPlateau {
            config,
            min_lrs,
            best,
            num_bad_epochs: 0,
            cooldown_counter: 0,
            last_epoch: 0,
            last_lrs: lrs,
        })
    }

    fn is_better(&self, a: f64, best: f64) -> bool {
        let t = self.config.threshold;
        match (self.config.mode, self.config.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < best * (1.0 - t),
            (PlateauMode::Min, ThresholdMode::Abs) => a < best - t,
            (PlateauMode::Max, ThresholdMode::Rel) => a > best * (t + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => a > best + t,
        }
    }

    /// Records the epoch's `metric` and reduces the lrs if it has not improved for more than
    /// `patience` epochs (a NaN metric counts as no improvement).
    ///
    /// PyTorch equivalent: `scheduler.step(metric)`.
    pub fn step(&mut self, opt: &mut dyn LrGroups, metric: f64) -> Result<()> {
        let lrs = opt.group_lrs();
        if lrs.len() != self.min_lrs.len() {
            return Err(Error::ArgumentCount {
                op: "ReduceLROnPlateau",
                what: "parameter groups (as when the scheduler was built)",
                expected: self.min_lrs.len(),
                got: lrs.len(),
            });
        }
        let (mut best, mut bad, mut cooldown) =
            (self.best, self.num_bad_epochs, self.cooldown_counter);
        if self.is_better(metric, best) {
            best = metric;
            bad = 0;
        } else {
            bad += 1;
        }
        if cooldown > 0 {
            cooldown -= 1;
            bad = 0;
        }
        if bad > self.config.patience {
            let reduced: Vec<f64> = lrs
                .iter()
                .zip(&self.min_lrs)
                .map(|(&old, &min)| {
                    // Python's max(old·factor, min): the first unless the second is larger.
                    let scaled = old * self.config.factor;
                    let new = if min > scaled { min } else { scaled };
                    if old - new > self.config.eps {
                        new
                    } else {
                        old
                    }
                })
                .collect();
            opt.set_group_lrs(&reduced)?;
            cooldown = self.config.cooldown;
            bad = 0;
        }
        self.best = best;
        self.num_bad_epochs = bad;
        self.cooldown_counter = cooldown;
        self.last_epoch += 1;
        self.last_lrs = opt.group_lrs();
        Ok(())
    }

    /// The learning rates after the latest step (PyTorch's `get_last_lr()`).
    pub fn last_lrs(&self) -> &[f64] {
        &self.last_lrs
    }

    /// The number of steps taken (PyTorch's `last_epoch`).
    pub fn last_epoch(&self) -> i64 {
        self.last_epoch
    }

    /// The best metric so far.
    pub fn best(&self) -> f64 {
        self.best
    }

    /// The scheduler's progress, to resume from.
    pub fn state_dict(&self) -> SchedulerState {
        let mut s = SchedulerState::new();
        s.insert("scheduler".into(), "ReduceLROnPlateau".into());
        s.insert("best".into(), format!("{:?}", self.best));
        s.insert("num_bad_epochs".into(), self.num_bad_epochs.to_string());
        s.insert("cooldown_counter".into(), self.cooldown_counter.to_string());
        s.insert("last_epoch".into(), self.last_epoch.to_string());
        s.insert("last_lrs".into(), fmt_list(&self.last_lrs));
        s
    }

    /// Restores progress saved by [`state_dict`](ReduceLROnPlateau::state_dict); all or nothing.
    pub fn load_state_dict(&mut self, state: &SchedulerState) -> Result<()> {
        let op = "ReduceLROnPlateau";
        let kind = get(op, state, "scheduler")?;
        if kind != op {
            return Err(bad_state(
                op,
                format!("the state was saved by {kind}, not {op}"),
            ));
        }
        let best = parse(op, state, "best")?;
        let bad = parse(op, state, "num_bad_epochs")?;
        let cooldown = parse(op, state, "cooldown_counter")?;
        let last_epoch = parse(op, state, "last_epoch")?;
        let last_lrs = parse_list(op, state, "last_lrs")?;
        if last_lrs.len() != self.min_lrs.len() {
            return Err(bad_state(
                op,
                format!(
                    "the state is for {} parameter groups, the scheduler has {}",
                    last_lrs.len(),
                    self.min_lrs.len()
                ),
            ));
        }
        self.best = best;
        self.num_bad_epochs = bad;
        self.cooldown_counter = cooldown;
        self.last_epoch = last_epoch;
        self.last_lrs = last_lrs;
        Ok(())
    }
}
