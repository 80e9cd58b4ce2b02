//! Saving and loading an optimizer's state by parameter name, shared by every optimizer.
//!
//! Layout of the [`StateDict`] (a safetensors file once saved):
//!
//! - tensors `state.<param name>.<buffer>` (`state.0.weight.exp_avg`), one per buffer of each
//!   parameter that has taken a step;
//! - metadata `state.<param name>.step`: that parameter's step count;
//! - metadata `optimizer` (`Adam`, `SGD`, …), `hyper.<setting>` for each hyper-parameter,
//!   `groups` (the number of groups) and, per group `i`, `group.<i>.lr`, `group.<i>.weight_decay`,
//!   `group.<i>.initial_lr` and `group.<i>.momentum` (when a scheduler set them),
//!   `group.<i>.params` (the count) and
//!   `group.<i>.param.<j>` (the names).
//!
//! Numbers are written with Rust's shortest round-trip formatting, so every `f64` reads back
//! bit-identical.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::{Group, SlotState, check_decay, check_lr};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::nn::StateDict;

/// Hyper-parameters as `(name, value)` strings, in the order they are written.
pub(crate) type Hyper = Vec<(&'static str, String)>;

/// Formats an `f64` so that parsing gives back the same bits.
pub(crate) fn fmt_f64(x: f64) -> String {
    format!("{x:?}")
}

/// What an optimizer's configuration gives its saved state: its name (PyTorch's class name, checked
/// on load), its hyper-parameters, how to read them back, and the buffers each parameter keeps.
pub(crate) trait StateConfig: Sized {
    /// PyTorch's name of the optimizer ("SGD", "Adam", "AdamW", …).
    fn name(&self) -> &'static str;
    /// The hyper-parameters, as saved.
    fn hyper(&self) -> Hyper;
    /// The configuration a saved state was written with (validated).
    fn from_meta(meta: &Meta<'_>) -> Result<Self>;
    /// PyTorch's names of the buffers each parameter keeps with this configuration.
    fn buffers(&self) -> &'static [&'static str];
}

/// An optimizer's `state_dict`: its configuration and its groups' buffers, by parameter name.
pub(crate) fn save_with<T: Float, C: StateConfig>(
    config: &C,
    groups: &[Group<T>],
) -> Result<StateDict<T>> {
    save(config.name(), groups, config.buffers(), config.hyper())
}

/// An optimizer's `load_state_dict`: all or nothing — the configuration and every buffer are
/// checked before any is replaced.
pub(crate) fn load_with<T: Float, C: StateConfig>(
    config: &mut C,
    groups: &mut [Group<T>],
    sd: &StateDict<T>,
) -> Result<()> {
    let meta = Meta::new(config.name(), sd)?;
    let loaded = C::from_meta(&meta)?;
    let plan = plan(&meta, sd, groups, loaded.buffers())?;
    plan.apply(groups);
    *config = loaded;
    Ok(())
}

/// The optimizer state of `groups` as a [`StateDict`].
pub(crate) fn save<T: Float>(
    op: &'static str,
    groups: &[Group<T>],
    buffer_names: &[&'static str],
    hyper: Hyper,
) -> Result<StateDict<T>> {
    let mut sd = StateDict::new();
    let meta = &mut sd.metadata;
    meta.insert("optimizer".into(), op.into());
    for (name, value) in hyper {
        meta.insert(format!("hyper.{name}"), value);
    }
    meta.insert("groups".into(), groups.len().to_string());
    let mut tensors = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        meta.insert(format!("group.{i}.lr"), fmt_f64(g.lr));
        meta.insert(format!("group.{i}.weight_decay"), fmt_f64(g.weight_decay));
        if let Some(initial) = g.initial_lr {
            meta.insert(format!("group.{i}.initial_lr"), fmt_f64(initial));
        }
        if let Some(momentum) = g.momentum {
            meta.insert(format!("group.{i}.momentum"), fmt_f64(momentum));
        }
        meta.insert(format!("group.{i}.params"), g.slots.len().to_string());
        for (j, slot) in g.slots.iter().enumerate() {
            meta.insert(format!("group.{i}.param.{j}"), slot.name.clone());
            let Some(state) = &slot.state else { continue };
            meta.insert(format!("state.{}.step", slot.name), state.step.to_string());
            for (buffer, t) in buffer_names.iter().zip(&state.buffers) {
                tensors.push((format!("state.{}.{buffer}", slot.name), t.try_clone()?));
            }
        }
    }
    for (name, t) in tensors {
        sd.insert(name, Arc::new(t));
    }
    Ok(sd)
}

/// The metadata of a saved optimizer state, read with errors that name what is wrong.
pub(crate) struct Meta<'a> {
    op: &'static str,
    meta: &'a BTreeMap<String, String>,
}

impl<'a> Meta<'a> {
    /// Checks that the state was saved by optimizer `op`.
    pub(crate) fn new<T: Float>(op: &'static str, sd: &'a StateDict<T>) -> Result<Self> {
        let this = Meta {
            op,
            meta: &sd.metadata,
        };
        let saved = this.string("optimizer")?;
        if saved != op {
            return Err(this.bad(format!("the state was saved by {saved}, not {op}")));
        }
        Ok(this)
    }

    fn bad(&self, reason: String) -> Error {
        Error::InvalidArgument {
            op: self.op,
            reason: format!("load_state_dict: {reason}"),
        }
    }

    /// A metadata entry that must be present.
    pub(crate) fn string(&self, key: &str) -> Result<&'a str> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| self.bad(format!("the entry `{key}` is missing")))
    }

    fn parse<V: std::str::FromStr>(&self, key: &str) -> Result<V> {
        let s = self.string(key)?;
        s.parse()
            .map_err(|_| self.bad(format!("the entry `{key}` = {s:?} does not parse")))
    }

    /// The hyper-parameter `hyper.<name>` as an `f64`.
    pub(crate) fn f64(&self, name: &str) -> Result<f64> {
        self.parse(&format!("hyper.{name}"))
    }

    /// The hyper-parameter `hyper.<name>` as a `bool`.
    pub(crate) fn bool(&self, name: &str) -> Result<bool> {
        self.parse(&format!("hyper.{name}"))
    }
}

/// What a load will set, every entry checked: per group (lr, initial lr, weight decay) and per
/// slot its state.
pub(crate) struct Plan<T: Float> {
    groups: Vec<GroupPlan<T>>,
}

/// One group's saved settings, and each slot's state.
struct GroupPlan<T: Float> {
    lr: f64,
    initial_lr: Option<f64>,
    momentum: Option<f64>,
    weight_decay: f64,
    states: Vec<Option<SlotState<T>>>,
}

/// Checks a saved state against `groups` (names, shapes, every entry used) and reads it, without
/// changing anything.
pub(crate) fn plan<T: Float>(
    meta: &Meta<'_>,
    sd: &StateDict<T>,
    groups: &[Group<T>],
    buffer_names: &[&'static str],
) -> Result<Plan<T>> {
    let op = meta.op;
    let count: usize = meta.parse("groups")?;
    if count != groups.len() {
        return Err(meta.bad(format!(
            "the state has {count} parameter groups, the optimizer {}",
            groups.len()
        )));
    }
    let mut used_tensors = HashSet::new();
    let mut planned = Vec::with_capacity(groups.len());
    for (i, g) in groups.iter().enumerate() {
        let lr: f64 = meta.parse(&format!("group.{i}.lr"))?;
        check_lr(op, lr)?;
        let weight_decay: f64 = meta.parse(&format!("group.{i}.weight_decay"))?;
        check_decay(op, weight_decay)?;
        let initial_lr = match meta.meta.get(&format!("group.{i}.initial_lr")) {
            Some(_) => {
                let v: f64 = meta.parse(&format!("group.{i}.initial_lr"))?;
                check_lr(op, v)?;
                Some(v)
            }
            None => None,
        };
        let momentum = match meta.meta.get(&format!("group.{i}.momentum")) {
            Some(_) => {
                let v: f64 = meta.parse(&format!("group.{i}.momentum"))?;
                super::check_hyper(
                    op,
                    "momentum",
                    v,
                    v.is_finite() && v >= 0.0,
                    "must be finite and >= 0",
                )?;
                Some(v)
            }
            None => None,
        };
        let n: usize = meta.parse(&format!("group.{i}.params"))?;
        let mut saved = HashSet::with_capacity(n);
        for j in 0..n {
            saved.insert(meta.string(&format!("group.{i}.param.{j}"))?);
        }
        let ours: HashSet<&str> = g.slots.iter().map(|s| s.name.as_str()).collect();
        if let Some(missing) = ours.iter().find(|n| !saved.contains(*n)) {
            return Err(Error::CheckpointMissing {
                name: format!("group {i}: parameter `{missing}`"),
            });
        }
        if let Some(extra) = saved.iter().find(|n| !ours.contains(*n)) {
            return Err(Error::CheckpointUnexpected {
                name: format!("group {i}: parameter `{extra}`"),
            });
        }
        let mut states = Vec::with_capacity(g.slots.len());
        for slot in &g.slots {
            let step_key = format!("state.{}.step", slot.name);
            if !meta.meta.contains_key(&step_key) {
                states.push(None);
                continue;
            }
            let step: u64 = meta.parse(&step_key)?;
            let shape = slot.param.shape();
            let mut buffers = Vec::with_capacity(buffer_names.len());
            for buffer in buffer_names {
                let name = format!("state.{}.{buffer}", slot.name);
                let t = sd
                    .get(&name)
                    .ok_or_else(|| Error::CheckpointMissing { name: name.clone() })?;
                if t.shape() != &shape {
                    return Err(Error::CheckpointShape {
                        name,
                        expected: shape,
                        found: t.dims().to_vec(),
                    });
                }
                buffers.push(t.try_clone()?);
                used_tensors.insert(name);
            }
            states.push(Some(SlotState { step, buffers }));
        }
        planned.push(GroupPlan {
            lr,
            initial_lr,
            momentum,
            weight_decay,
            states,
        });
    }
    if let Some(extra) = sd.names().find(|n| !used_tensors.contains(*n)) {
        return Err(Error::CheckpointUnexpected {
            name: extra.to_string(),
        });
    }
    let names: HashSet<&str> = groups
        .iter()
        .flat_map(|g| g.slots.iter().map(|s| s.name.as_str()))
        .collect();
    let stray = sd.metadata.keys().find(|k| {
        k.strip_prefix("state.")
            .and_then(|k| k.strip_suffix(".step"))
            .is_some_and(|name| !names.contains(name))
    });
    if let Some(stray) = stray {
        return Err(Error::CheckpointUnexpected {
            name: stray.clone(),
        });
    }
    Ok(Plan { groups: planned })
}

impl<T: Float> Plan<T> {
    /// Sets everything the plan read. Cannot fail: every check was made by [`plan`].
    pub(crate) fn apply(self, groups: &mut [Group<T>]) {
        for (g, plan) in groups.iter_mut().zip(self.groups) {
            g.lr = plan.lr;
            g.initial_lr = plan.initial_lr;
            g.momentum = plan.momentum;
            g.weight_decay = plan.weight_decay;
            for (slot, state) in g.slots.iter_mut().zip(plan.states) {
                slot.state = state;
            }
        }
    }
}
