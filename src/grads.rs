//! The result of a backward pass: gradients looked up by `Var` or by `Param`.

use crate::element::Float;
use crate::error::{Error, Result};
use crate::inspect::BackwardTrace;
use crate::param::{Param, ParamId};
use crate::tape::{NodeId, Tape, Var};
use crate::tensor::Tensor;

/// A parameter recorded more than once (its value changed between two [`Tape::param`] calls) has
/// one node per value; its gradient is the sum over them, kept on its latest node. Returns each
/// parameter once, with that node.
fn merge_repeated_params<G>(
    grads: &mut [Option<G>],
    params: Vec<(ParamId, NodeId)>,
    mut add: impl FnMut(G, G) -> Result<G>,
) -> Result<Vec<(ParamId, NodeId)>> {
    let mut latest: Vec<(ParamId, NodeId)> = Vec::with_capacity(params.len());
    for (param, node) in params.into_iter().rev() {
        let Some(&(_, last)) = latest.iter().find(|(p, _)| *p == param) else {
            latest.push((param, node));
            continue;
        };
        let earlier = grads.get_mut(node.index()).and_then(Option::take);
        if let (Some(earlier), Some(slot)) = (earlier, grads.get_mut(last.index())) {
            *slot = Some(match slot.take() {
                Some(sum) => add(sum, earlier)?,
                None => earlier,
            });
        }
    }
    latest.reverse();
    Ok(latest)
}

/// Gradients of one backward pass, as plain tensors.
///
/// Every leaf and parameter that requires a gradient and influences the loss has one; intermediate
/// values have one too when the pass was run with
/// [`BackwardOptions::keep_intermediate`](crate::BackwardOptions::keep_intermediate).
#[derive(Clone, Debug)]
#[must_use = "a backward pass's gradients do nothing unless they are read"]
pub struct Gradients<T: Float> {
    tape_id: u64,
    grads: Vec<Option<Tensor<T>>>,
    params: Vec<(ParamId, NodeId)>,
    trace: Option<BackwardTrace>,
}

impl<T: Float> Gradients<T> {
    pub(crate) fn new(
        tape_id: u64,
        mut grads: Vec<Option<Tensor<T>>>,
        params: Vec<(ParamId, NodeId)>,
    ) -> Self {
        let params = merge_repeated_params(&mut grads, params, |mut sum, earlier| {
            sum.add_assign_same_shape(&earlier);
            Ok(sum)
        })
        // Adding tensors in place cannot fail.
        .unwrap_or_default();
        Gradients {
            tape_id,
            grads,
            params,
            trace: None,
        }
    }

    pub(crate) fn with_trace(mut self, trace: Option<BackwardTrace>) -> Self {
        self.trace = trace;
        self
    }

    /// The record of the backward pass, if it was asked for with
    /// [`BackwardOptions::trace`](crate::BackwardOptions::trace).
    pub fn trace(&self) -> Option<&BackwardTrace> {
        self.trace.as_ref()
    }

    /// The gradient of the loss with respect to `var`, or `None` if it received none or belongs to
    /// another tape.
    pub fn get(&self, var: Var<'_, T>) -> Option<&Tensor<T>> {
        if var.tape().id() != self.tape_id {
            return None;
        }
        self.grads.get(var.id().index()).and_then(Option::as_ref)
    }

    /// The gradient with respect to `var`, or an error saying why there is none.
    pub fn wrt(&self, var: Var<'_, T>) -> Result<&Tensor<T>> {
        if var.tape().id() != self.tape_id {
            return Err(Error::ForeignVar {
                op: "Gradients::wrt",
            });
        }
        self.get(var).ok_or_else(|| Error::NoGradient {
            node: var.id().index(),
        })
    }

    /// The gradient with respect to a parameter recorded with [`Tape::param`], or `None` if it was
    /// not on the tape or received no gradient.
    pub fn param(&self, param: &Param<T>) -> Option<&Tensor<T>> {
        let node = self.params.iter().find(|(p, _)| *p == param.id())?.1;
        self.grads.get(node.index()).and_then(Option::as_ref)
    }

    /// Every recorded parameter that received a gradient, with that gradient.
    pub fn params(&self) -> impl Iterator<Item = (ParamId, &Tensor<T>)> + '_ {
        self.params
            .iter()
            .filter_map(|&(p, node)| self.grads.get(node.index())?.as_ref().map(|g| (p, g)))
    }

    /// Removes and returns the gradient with respect to `var` (no copy). For the value backward
    /// started from, that is the seed gradient it was given.
    pub fn take(&mut self, var: Var<'_, T>) -> Option<Tensor<T>> {
        if var.tape().id() != self.tape_id {
            return None;
        }
        self.grads.get_mut(var.id().index()).and_then(Option::take)
    }

    /// Removes and returns a parameter's gradient (saves a copy when an optimizer consumes it).
    pub fn take_param(&mut self, param: &Param<T>) -> Option<Tensor<T>> {
        let node = self.params.iter().find(|(p, _)| *p == param.id())?.1;
        self.grads.get_mut(node.index()).and_then(Option::take)
    }

    /// The gradient with respect to a parameter, to modify in place (gradient clipping).
    pub fn param_mut(&mut self, param: &Param<T>) -> Option<&mut Tensor<T>> {
        let node = self.params.iter().find(|(p, _)| *p == param.id())?.1;
        self.grads.get_mut(node.index()).and_then(Option::as_mut)
    }

    /// Gradients by node index, for inspection (`None` where a node got no gradient).
    pub fn by_node(&self) -> &[Option<Tensor<T>>] {
        &self.grads
    }
}

/// Gradients of a backward pass that was itself recorded on the tape (see
/// [`Var::backward_graph`]): each is a `Var` that can be differentiated again.
#[derive(Debug)]
#[must_use = "a backward pass's gradients do nothing unless they are read"]
pub struct GraphGradients<'t, T: Float> {
    tape: &'t Tape<T>,
    grads: Vec<Option<Var<'t, T>>>,
    params: Vec<(ParamId, NodeId)>,
}

impl<'t, T: Float> GraphGradients<'t, T> {
    pub(crate) fn new(
        tape: &'t Tape<T>,
        mut grads: Vec<Option<Var<'t, T>>>,
        params: Vec<(ParamId, NodeId)>,
    ) -> Result<Self> {
        let params = merge_repeated_params(&mut grads, params, |sum, earlier| sum.add(earlier))?;
        Ok(GraphGradients {
            tape,
            grads,
            params,
        })
    }

    /// The gradient with respect to `var`, as a `Var` on the same tape.
    pub fn wrt(&self, var: Var<'_, T>) -> Result<Var<'t, T>> {
        self.tape.check_owns(var, "GraphGradients::wrt")?;
        self.grads
            .get(var.id().index())
            .copied()
            .flatten()
            .ok_or_else(|| Error::NoGradient {
                node: var.id().index(),
            })
    }

    /// The gradient with respect to a recorded parameter.
    pub fn param(&self, param: &Param<T>) -> Option<Var<'t, T>> {
        let node = self.params.iter().find(|(p, _)| *p == param.id())?.1;
        self.grads.get(node.index()).copied().flatten()
    }
}
