//! The tape: an append-only record of a forward pass, walked in reverse to get gradients.
//!
//! Every op appends one node holding its output value, the ids of its inputs, and (when a gradient
//! is wanted) the op's backward rule with the state it saved. Because a node can only be appended
//! after its inputs exist, the order of the nodes is already a topological order: walking them from
//! the last to the first visits every node after all the nodes that consumed it. No graph search,
//! no recursion, no stack to overflow on a deep network.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use smallvec::SmallVec;

use crate::element::Float;
use crate::error::{Error, Result};
use crate::grads::{Gradients, GraphGradients};
use crate::inspect::{BackwardTrace, TensorSummary, TraceStep};
use crate::ops::{Backward, BackwardCx, GraphCx};
use crate::param::{Param, ParamId};
use crate::shape::Shape;
use crate::tensor::Tensor;

static NEXT_TAPE_ID: AtomicU64 = AtomicU64::new(1);

/// Index of a node on its tape.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The position of the node on the tape (0 = first recorded).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What kind of value a node holds.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum NodeKind {
    /// Data that needs no gradient (inputs, labels).
    Constant,
    /// A free value that requires a gradient.
    Leaf,
    /// A recorded [`Param`].
    Param(ParamId),
    /// The output of an op.
    Op,
}

// ANCHOR: node
pub(crate) struct Node<T: Float> {
    pub(crate) value: Arc<Tensor<T>>,
    pub(crate) inputs: SmallVec<[NodeId; 2]>,
    pub(crate) name: &'static str,
    /// The op's backward rule and saved state; `None` for leaves, for ops that need no gradient,
    /// and after a backward pass released it.
    pub(crate) op: Option<Arc<dyn Backward<T>>>,
    pub(crate) requires_grad: bool,
    pub(crate) kind: NodeKind,
    /// A parameter's name, for inspection.
    pub(crate) label: Option<Box<str>>,
}
// ANCHOR_END: node

/// An append-only record of one forward pass. Make one per training step.
///
/// ```
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.leaf(Tensor::from_vec(vec![1.0f64, -2.0, 3.0], &[3])?);
/// let y = x.mul(x)?.sum()?;                      // y = Σ x²
/// let grads = y.backward()?;
/// assert_eq!(grads.wrt(x)?.data(), &[2.0, -4.0, 6.0]); // dy/dx = 2x
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub struct Tape<T: Float> {
    id: u64,
    pub(crate) nodes: RefCell<Vec<Node<T>>>,
    params: RefCell<Vec<(ParamId, NodeId)>>,
    grad_enabled: bool,
    released: Cell<bool>,
    /// Backward walks of this tape in progress (more than one when a rule starts another).
    walking: Cell<usize>,
    detect_anomalies: Cell<bool>,
    /// The first non-finite forward value seen while detecting anomalies: (node, op, detail).
    first_anomaly: RefCell<Option<(NodeId, &'static str, String)>>,
}

impl<T: Float> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Tape<T> {
    /// An empty tape that records what backward needs.
    pub fn new() -> Self {
        Self::with_grad(true)
    }

    /// A tape for inference: values are computed as usual but no op saves state for backward, so
    /// nothing requires a gradient (PyTorch's `torch.no_grad()`).
    pub fn no_grad() -> Self {
        Self::with_grad(false)
    }

    fn with_grad(grad_enabled: bool) -> Self {
        Tape {
            id: NEXT_TAPE_ID.fetch_add(1, Ordering::Relaxed),
            nodes: RefCell::new(Vec::new()),
            params: RefCell::new(Vec::new()),
            grad_enabled,
            released: Cell::new(false),
            walking: Cell::new(0),
            detect_anomalies: Cell::new(false),
            first_anomaly: RefCell::new(None),
        }
    }

    /// Turns anomaly detection on or off (PyTorch's `detect_anomaly`). While on, every value
    /// recorded is checked for NaN and infinity: the first offending forward value is remembered
    /// ([`Tape::anomaly`]) and makes the next backward pass fail with [`Error::Anomaly`] naming its
    /// op and node; during backward, the first gradient that is not finite stops the pass with the
    /// same error naming the op whose rule produced it. Off by default: it costs a scan of every
    /// value.
    ///
    /// ```
    /// use tapegrad::{Error, Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// tape.detect_anomalies(true);
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 0.0], &[2])?);
    /// let y = x.log()?.sum()?;                    // log 0 = −∞
    /// let err = y.backward().unwrap_err();
    /// assert!(matches!(err, Error::Anomaly { op: "log", phase: "forward", .. }), "{err}");
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn detect_anomalies(&self, on: bool) {
        self.detect_anomalies.set(on);
    }

    /// The first non-finite value recorded while anomaly detection was on, as an error describing it.
    pub fn anomaly(&self) -> Option<Error> {
        self.first_anomaly
            .borrow()
            .as_ref()
            .map(|(node, op, detail)| Error::Anomaly {
                op,
                node: node.index(),
                phase: "forward",
                detail: detail.clone(),
            })
    }

    /// Whether this tape records backward rules (false for [`Tape::no_grad`]).
    pub fn grad_enabled(&self) -> bool {
        self.grad_enabled
    }

    /// Number of nodes recorded.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every node so the tape can record a new pass. Takes `&mut self`, so no `Var` of the
    /// old pass can still be alive.
    pub fn reset(&mut self) {
        self.nodes.get_mut().clear();
        self.params.get_mut().clear();
        self.released.set(false);
        *self.first_anomaly.get_mut() = None;
        self.id = NEXT_TAPE_ID.fetch_add(1, Ordering::Relaxed);
    }

    /// Records data that needs no gradient.
    pub fn constant(&self, value: Tensor<T>) -> Var<'_, T> {
        self.push_leaf(Arc::new(value), NodeKind::Constant, false)
    }

    /// Records a shared value that needs no gradient, without copying it: a batch reused over
    /// several steps, or a buffer's snapshot. The tape holds one more reference to the same data.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tapegrad::{Tape, Tensor};
    /// let batch = Arc::new(Tensor::<f32>::ones(&[2, 3])?);
    /// for _ in 0..2 {
    ///     let tape = Tape::new();
    ///     let x = tape.constant_shared(Arc::clone(&batch));
    ///     assert!(Arc::ptr_eq(&x.value(), &batch));
    /// }
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn constant_shared(&self, value: Arc<Tensor<T>>) -> Var<'_, T> {
        self.push_leaf(value, NodeKind::Constant, false)
    }

    /// Records a value that requires a gradient (on a [`Tape::no_grad`] tape, it requires none).
    pub fn leaf(&self, value: Tensor<T>) -> Var<'_, T> {
        self.push_leaf(Arc::new(value), NodeKind::Leaf, self.grad_enabled)
    }

    /// Records a parameter as a leaf that requires a gradient, sharing its data (no copy).
    ///
    /// Recording the same parameter twice returns the same node, so its gradients accumulate. If
    /// the parameter's value was changed in between (through [`Param::update`] or [`Param::set`]), the
    /// new value is recorded as a new node — the tape never silently reuses a stale value — and
    /// the parameter's gradient is the sum over both uses.
    pub fn param(&self, param: &Param<T>) -> Var<'_, T> {
        let value = param.shared_value();
        let latest = self
            .params
            .borrow()
            .iter()
            .rev()
            .find(|(p, _)| *p == param.id())
            .map(|&(_, id)| id);
        if let Some(id) = latest
            && Arc::ptr_eq(&self.nodes.borrow()[id.index()].value, &value)
        {
            return Var { id, tape: self };
        }
        let var = self.push_leaf(value, NodeKind::Param(param.id()), self.grad_enabled);
        self.nodes.borrow_mut()[var.id.index()].label = Some(param.name().into());
        self.params.borrow_mut().push((param.id(), var.id));
        var
    }

    fn push_leaf(&self, value: Arc<Tensor<T>>, kind: NodeKind, requires_grad: bool) -> Var<'_, T> {
        self.push(Node {
            value,
            inputs: SmallVec::new(),
            name: match kind {
                NodeKind::Constant => "constant",
                NodeKind::Leaf => "leaf",
                NodeKind::Param(_) => "param",
                NodeKind::Op => "op",
            },
            op: None,
            requires_grad,
            kind,
            label: None,
        })
    }

    fn push(&self, node: Node<T>) -> Var<'_, T> {
        if self.detect_anomalies.get()
            && self.first_anomaly.borrow().is_none()
            && let Some(detail) = non_finite(&node.value)
        {
            let id = NodeId(self.nodes.borrow().len() as u32);
            *self.first_anomaly.borrow_mut() = Some((id, node.name, detail));
        }
        let mut nodes = self.nodes.borrow_mut();
        // A tape of 2³² nodes would hold at least 2³² tensors; memory runs out long before.
        let id = NodeId(u32::try_from(nodes.len()).expect("a tape holds fewer than 2^32 nodes"));
        nodes.push(node);
        Var { id, tape: self }
    }

    // ANCHOR: record
    /// Records the output of an op. The backward rule is built (and its state saved) only when some
    /// input requires a gradient.
    pub(crate) fn record<B: Backward<T>>(
        &self,
        name: &'static str,
        value: Tensor<T>,
        inputs: &[Var<'_, T>],
        make_backward: impl FnOnce() -> B,
    ) -> Var<'_, T> {
        let requires_grad = self.grad_enabled && inputs.iter().any(|v| v.requires_grad());
        let op: Option<Arc<dyn Backward<T>>> = if requires_grad {
            Some(Arc::new(make_backward()))
        } else {
            None
        };
        self.push(Node {
            value: Arc::new(value),
            inputs: inputs.iter().map(|v| v.id).collect(),
            name,
            op,
            requires_grad,
            kind: NodeKind::Op,
            label: None,
        })
    }
    // ANCHOR_END: record

    /// Records the output of a user-defined op with its backward rule: the way to extend the
    /// engine without touching it (see `docs/custom-op.md`). Fails if an input is from another tape.
    pub fn push_op<B: Backward<T>>(
        &self,
        name: &'static str,
        value: Tensor<T>,
        inputs: &[Var<'_, T>],
        backward: B,
    ) -> Result<Var<'_, T>> {
        for v in inputs {
            self.check_owns(*v, name)?;
        }
        Ok(self.record(name, value, inputs, || backward))
    }

    pub(crate) fn check_owns(&self, var: Var<'_, T>, op: &'static str) -> Result<()> {
        if var.tape.id == self.id {
            Ok(())
        } else {
            Err(Error::ForeignVar { op })
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn value(&self, id: NodeId) -> Arc<Tensor<T>> {
        Arc::clone(&self.nodes.borrow()[id.index()].value)
    }

    fn requires_grad(&self, id: NodeId) -> bool {
        self.nodes.borrow()[id.index()].requires_grad
    }

    /// Marks a walk as started; the guard ends it when dropped (on success, error or panic).
    /// A walk that would release the saved state while another is still running fails: the
    /// outer walk would lose the rules it has yet to run.
    fn start_walk(&self, releases: bool) -> Result<WalkGuard<'_, T>> {
        if self.released.get() {
            return Err(Error::BackwardTwice);
        }
        if releases && self.walking.get() > 0 {
            return Err(Error::BackwardInProgress);
        }
        self.walking.set(self.walking.get() + 1);
        Ok(WalkGuard { tape: self })
    }

    // ANCHOR: rule_of
    /// What a node's rule needs, copied out of the arena so that no borrow of it is held while
    /// the rule runs (a rule may record on this very tape).
    fn rule_of(&self, id: usize) -> Option<Rule<T>> {
        let nodes = self.nodes.borrow();
        let node = &nodes[id];
        let op = node.op.clone()?;
        Some(Rule {
            op,
            name: node.name,
            inputs: node.inputs.clone(),
            values: node
                .inputs
                .iter()
                .map(|i| Arc::clone(&nodes[i.index()].value))
                .collect(),
            needs: node
                .inputs
                .iter()
                .map(|i| nodes[i.index()].requires_grad)
                .collect(),
            output: Arc::clone(&node.value),
        })
    }
    // ANCHOR_END: rule_of

    // ANCHOR: backward
    /// The reverse walk of a first-order backward pass, on plain tensors.
    fn run_backward(
        &self,
        root: NodeId,
        seed: Tensor<T>,
        options: &BackwardOptions<T>,
    ) -> Result<Gradients<T>> {
        let walk = self.start_walk(!options.retain_graph)?;
        if !self.requires_grad(root) {
            return Err(Error::NoGradRequired);
        }
        let detect = self.detect_anomalies.get();
        if detect && let Some(anomaly) = self.anomaly() {
            return Err(anomaly);
        }
        let mut grads: Vec<Option<Tensor<T>>> = (0..=root.index()).map(|_| None).collect();
        grads[root.index()] = Some(seed);
        let mut trace = options.trace.then(BackwardTrace::default);
        for id in (0..=root.index()).rev() {
            if grads[id].is_none() {
                continue;
            }
            let Some(rule) = self.rule_of(id) else {
                continue;
            };
            let cx = BackwardCx {
                inputs: &rule.values,
                output: &rule.output,
                needs: &rule.needs,
            };
            let start_step = |grad: &Tensor<T>| {
                trace
                    .as_ref()
                    .map(|_| TraceStep::new(NodeId(id as u32), rule.name, grad))
            };
            let (input_grads, mut step) = if options.keep_intermediate {
                let Some(grad) = &grads[id] else { continue };
                (rule.op.backward(&cx, grad)?, start_step(grad))
            } else {
                // The gradient is passed on and not kept: the rule may reuse its buffer.
                let Some(grad) = grads[id].take() else {
                    continue;
                };
                let step = start_step(&grad);
                (rule.op.backward_owned(&cx, grad)?, step)
            };
            rule.check_count(input_grads.len())?;
            for (k, grad) in input_grads.into_iter().enumerate() {
                let (Some(grad), true) = (grad, rule.needs[k]) else {
                    continue;
                };
                let input = rule.inputs[k];
                check_grad_shape(rule.name, &rule.values[k], &grad)?;
                // `&&` short-circuits: without anomaly mode the gradient is not scanned.
                if detect {
                    backward_anomaly(&rule, id, input, &grad)?;
                }
                if let Some(step) = step.as_mut() {
                    step.sent.push((input, TensorSummary::of(&grad)));
                }
                // Accumulate, never assign: a value used twice gets both contributions.
                match &mut grads[input.index()] {
                    Some(sum) => sum.add_assign_same_shape(&grad),
                    slot @ None => *slot = Some(grad),
                }
            }
            if let (Some(trace), Some(step)) = (trace.as_mut(), step) {
                trace.steps.push(step);
            }
        }
        drop(walk);
        if !options.retain_graph {
            for node in self.nodes.borrow_mut().iter_mut() {
                node.op = None;
            }
            self.released.set(true);
        }
        Ok(Gradients::new(self.id, grads, self.params.borrow().clone()).with_trace(trace))
    }
    // ANCHOR_END: backward

    /// The reverse walk with every backward rule itself recorded on this tape, so that the
    /// gradients are `Var`s that can be differentiated again.
    fn run_backward_graph<'t>(
        &'t self,
        root: NodeId,
        seed: Var<'t, T>,
    ) -> Result<GraphGradients<'t, T>> {
        let _walk = self.start_walk(false)?;
        if !self.requires_grad(root) {
            return Err(Error::NoGradRequired);
        }
        let detect = self.detect_anomalies.get();
        if detect && let Some(anomaly) = self.anomaly() {
            return Err(anomaly);
        }
        let mut grads: Vec<Option<Var<'t, T>>> = vec![None; root.index() + 1];
        grads[root.index()] = Some(seed);
        for id in (0..=root.index()).rev() {
            let Some(grad) = grads[id] else { continue };
            // Running the rule appends nodes to this very tape: nothing of the arena is borrowed.
            let Some(rule) = self.rule_of(id) else {
                continue;
            };
            let cx = GraphCx {
                tape: self,
                inputs: rule.inputs.clone(),
                output: NodeId(id as u32),
                needs: rule.needs.clone(),
            };
            let input_grads = rule.op.backward_graph(&cx, grad)?;
            rule.check_count(input_grads.len())?;
            for (k, grad) in input_grads.into_iter().enumerate() {
                let (Some(grad), true) = (grad, rule.needs[k]) else {
                    continue;
                };
                let input = rule.inputs[k];
                let value = grad.value();
                check_grad_shape(rule.name, &rule.values[k], &value)?;
                if detect {
                    backward_anomaly(&rule, id, input, &value)?;
                }
                grads[input.index()] = Some(match grads[input.index()] {
                    Some(sum) => sum.add(grad)?,
                    None => grad,
                });
            }
        }
        GraphGradients::new(self, grads, self.params.borrow().clone())
    }
}

/// Ends a backward walk when dropped.
struct WalkGuard<'a, T: Float> {
    tape: &'a Tape<T>,
}

impl<T: Float> Drop for WalkGuard<'_, T> {
    fn drop(&mut self) {
        self.tape.walking.set(self.tape.walking.get() - 1);
    }
}

/// A node's backward rule with everything it reads, held outside the arena's borrow.
struct Rule<T: Float> {
    op: Arc<dyn Backward<T>>,
    name: &'static str,
    inputs: SmallVec<[NodeId; 2]>,
    values: SmallVec<[Arc<Tensor<T>>; 2]>,
    needs: SmallVec<[bool; 2]>,
    output: Arc<Tensor<T>>,
}

impl<T: Float> Rule<T> {
    /// A rule must return one gradient (or `None`) per input: a shorter list would silently drop
    /// one, a longer one would be meaningless.
    fn check_count(&self, got: usize) -> Result<()> {
        if got == self.inputs.len() {
            Ok(())
        } else {
            Err(Error::ArgumentCount {
                op: self.name,
                what: "gradients from the backward rule (one per input, None where not needed)",
                expected: self.inputs.len(),
                got,
            })
        }
    }
}

/// With anomaly detection on: fails if the gradient a rule sent to `input` is not finite.
fn backward_anomaly<T: Float>(
    rule: &Rule<T>,
    node: usize,
    input: NodeId,
    grad: &Tensor<T>,
) -> Result<()> {
    match non_finite(grad) {
        None => Ok(()),
        Some(detail) => Err(Error::Anomaly {
            op: rule.name,
            node,
            phase: "backward",
            detail: format!("{detail} in the gradient sent to node {}", input.index()),
        }),
    }
}

/// How many elements of `t` are NaN or infinite, and the first one's index; `None` if all are finite.
fn non_finite<T: Float>(t: &Tensor<T>) -> Option<String> {
    let bad = t.data().iter().filter(|v| !v.is_finite()).count();
    let first = t.data().iter().position(|v| !v.is_finite())?;
    Some(format!(
        "{bad} non-finite of {} elements (first at flat index {first}: {})",
        t.numel(),
        t.data()[first]
    ))
}

fn check_grad_shape<T: Float>(op: &'static str, input: &Tensor<T>, grad: &Tensor<T>) -> Result<()> {
    if input.shape() == grad.shape() {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            op,
            lhs: input.shape().clone(),
            rhs: grad.shape().clone(),
        })
    }
}

impl<T: Float> fmt::Debug for Tape<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tape<{}>({} nodes)", T::DTYPE, self.len())
    }
}

/// Options of a backward pass.
///
/// ```
/// use tapegrad::{BackwardOptions, Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.leaf(Tensor::from_vec(vec![1.0f64, 2.0], &[2])?);
/// let y = x.exp()?;
/// let grads = y.backward_with(BackwardOptions::new().seed(Tensor::ones(&[2])?).trace(true))?;
/// println!("{}", grads.trace().expect("asked for"));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct BackwardOptions<T: Float> {
    /// The gradient of the final value with respect to itself; required when that value has more
    /// than one element, 1 by default for a scalar.
    pub seed: Option<Tensor<T>>,
    /// Keep the saved state so the tape can be walked backward again (PyTorch's `retain_graph`).
    pub retain_graph: bool,
    /// Record what flowed backward through every node (see [`BackwardTrace`]).
    pub trace: bool,
    /// Keep the gradient of every value, not only of leaves and parameters (PyTorch keeps only
    /// leaves' unless asked with `retain_grad`). Off by default: an intermediate gradient is freed as
    /// soon as its node has passed it on, which lowers peak memory and lets the next op reuse the
    /// buffer while it is still in cache.
    pub keep_intermediate: bool,
}

impl<T: Float> BackwardOptions<T> {
    /// The defaults: seed 1, release the saved state, no trace.
    pub fn new() -> Self {
        BackwardOptions {
            seed: None,
            retain_graph: false,
            trace: false,
            keep_intermediate: false,
        }
    }

    /// Sets the seed gradient.
    pub fn seed(mut self, seed: Tensor<T>) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Keeps the saved state for another backward pass.
    pub fn retain_graph(mut self, retain: bool) -> Self {
        self.retain_graph = retain;
        self
    }

    /// Records a [`BackwardTrace`].
    pub fn trace(mut self, trace: bool) -> Self {
        self.trace = trace;
        self
    }

    /// Keeps the gradients of intermediate values too.
    pub fn keep_intermediate(mut self, keep: bool) -> Self {
        self.keep_intermediate = keep;
        self
    }
}

/// A handle to a value on a tape: cheap to copy, tied to the tape by its lifetime.
///
/// Every op is a method on `Var` that records a node and returns the new `Var`.
#[derive(Copy, Clone)]
#[must_use = "an op's result does nothing unless it is used"]
pub struct Var<'t, T: Float> {
    pub(crate) id: NodeId,
    pub(crate) tape: &'t Tape<T>,
}

impl<'t, T: Float> Var<'t, T> {
    /// The node's id on its tape.
    pub fn id(self) -> NodeId {
        self.id
    }

    /// The tape it lives on.
    pub fn tape(self) -> &'t Tape<T> {
        self.tape
    }

    /// Its value (shared, not copied).
    pub fn value(self) -> Arc<Tensor<T>> {
        self.tape.value(self.id)
    }

    /// Its shape.
    pub fn shape(self) -> Shape {
        self.tape.nodes.borrow()[self.id.index()]
            .value
            .shape()
            .clone()
    }

    /// What kind of node it is: constant, leaf, parameter or op output.
    pub fn kind(self) -> NodeKind {
        self.tape.nodes.borrow()[self.id.index()].kind
    }

    /// Whether a gradient flows to it.
    pub fn requires_grad(self) -> bool {
        self.tape.requires_grad(self.id)
    }

    /// Fails with [`Error::ForeignVar`] unless `other` is on the same tape.
    pub(crate) fn same_tape(self, other: Var<'_, T>, op: &'static str) -> Result<()> {
        self.tape.check_owns(other, op)
    }

    /// Walks the tape backward from this scalar and returns the gradient of every value that
    /// requires one. The saved state is released afterwards; see [`Var::backward_with`].
    pub fn backward(self) -> Result<Gradients<T>> {
        self.backward_with(BackwardOptions::default())
    }

    /// [`Var::backward`] with a seed gradient (for a non-scalar value) or `retain_graph`.
    pub fn backward_with(self, mut options: BackwardOptions<T>) -> Result<Gradients<T>> {
        let value = self.value();
        let seed = self.seed_tensor(&value, options.seed.take())?;
        self.tape.run_backward(self.id, seed, &options)
    }

    fn seed_tensor(self, value: &Tensor<T>, seed: Option<Tensor<T>>) -> Result<Tensor<T>> {
        match seed {
            Some(seed) if seed.shape() != value.shape() => Err(Error::SeedShape {
                value: value.shape().clone(),
                seed: seed.shape().clone(),
            }),
            Some(seed) => Ok(seed),
            None if value.numel() == 1 => Tensor::full_shape(value.shape().clone(), T::ONE),
            None => Err(Error::NonScalarLoss {
                shape: value.shape().clone(),
            }),
        }
    }

    /// A backward pass that records itself on the tape (PyTorch's `create_graph=True`): the
    /// gradients are `Var`s, which can be differentiated again for second derivatives. `seed` is the
    /// gradient of this value (a `Var` that may itself require a gradient); `None` means 1 for a scalar.
    /// The tape keeps its saved state, so it can be walked backward again.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![2.0f64], &[1])?);
    /// let y = x.mul(x)?.mul(x)?.sum()?;               // y = x³
    /// let dy = y.backward_graph(None)?.wrt(x)?;       // 3x² as a Var
    /// let d2y = dy.sum()?.backward()?;                // d(3x²)/dx = 6x
    /// assert_eq!(d2y.wrt(x)?.data(), &[12.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn backward_graph(self, seed: Option<Var<'t, T>>) -> Result<GraphGradients<'t, T>> {
        let value = self.value();
        let seed = match seed {
            Some(seed) => {
                self.same_tape(seed, "backward_graph")?;
                let seed_value = seed.value();
                if seed_value.shape() != value.shape() {
                    return Err(Error::SeedShape {
                        value: value.shape().clone(),
                        seed: seed_value.shape().clone(),
                    });
                }
                seed
            }
            None => self.tape.constant(self.seed_tensor(&value, None)?),
        };
        self.tape.run_backward_graph(self.id, seed)
    }
}

impl<T: Float> fmt::Debug for Var<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes = self.tape.nodes.borrow();
        let node = &nodes[self.id.index()];
        write!(
            f,
            "Var(#{} {} {})",
            self.id.0,
            node.name,
            node.value.shape()
        )
    }
}
