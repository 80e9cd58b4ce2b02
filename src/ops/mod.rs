//! The ops: each file holds one op (or one small family), with its forward, the state it saves and
//! its backward rule side by side, and the derivative written in the doc comment.
//!
//! # How a backward rule is written
//!
//! An op's rule implements [`Backward`] twice over:
//!
//! - [`Backward::backward`] gets the gradient of the loss with respect to the op's output, `g`, as a
//!   plain [`Tensor`], and returns the gradient with respect to each input. This is the fast path of
//!   an ordinary (first-order) backward pass.
//! - [`Backward::backward_graph`] computes the same formula out of the engine's own ops on
//!   [`Var`]s, so that the backward pass is itself recorded on the tape and can be differentiated
//!   again (second derivatives, Hessian-vector products).
//!
//! The two must agree; the test suite checks that they do for every op, and gradcheck checks both
//! against finite differences.
//!
//! # Adding an op: the checklist
//!
//! 1. A file under `src/ops/` with a method on `Var` that validates its inputs (returning typed
//!    errors naming the op and shapes), computes the value, and calls `tape.record(...)` with a
//!    backward struct holding the least state that keeps backward exact.
//! 2. The doc comment states the derivative and the PyTorch equivalent.
//! 3. `backward` and `backward_graph`, both; `saved_bytes` if the op saves more than input ids.
//! 4. One line in this file (`mod your_op;`).
//! 5. Tests: gradcheck over several shapes (in `tests/gradcheck_ops.rs`), the backward against the
//!    formula computed independently, every error variant, and the graph path (`tests/higher_order.rs`).
//!
//! Users outside the crate can do the same with [`Tape::push_op`](crate::Tape::push_op).

use std::fmt;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::bitmask::BitMask;
use crate::element::Float;
use crate::error::Result;
use crate::tape::{NodeId, Tape, Var};
use crate::tensor::Tensor;

mod activation;
mod arith;
mod attention;
mod binary;
mod conv;
mod cumsum;
pub(crate) mod dropout;
mod elementwise;
mod index;
mod join;
mod layout;
mod linear;
mod logsumexp;
mod matmul;
mod moments;
mod nll;
mod norm;
mod pool;
mod prod;
mod reduce;
mod reduce_axis;
mod relu;
mod scalar;
mod select;
pub(crate) mod slice;
mod softmax;
mod unary;
mod vector_norm;

/// A class label: any primitive integer type (the same trait as [`Index`](crate::Index)).
pub use crate::indices::Index as Label;
pub use attention::AttnMask;
pub use conv::{Conv1dOptions, Conv2dOptions, IntoPair};
pub use dropout::{dropout_scale, dropout_scale_in};
pub(crate) use nll::nll_mean;
pub use nll::{CrossEntropyOptions, NllOptions, Reduction};
pub use norm::RunningStats;
pub use pool::{AvgPool2dOptions, MaxPool2dOptions};
pub(crate) use softmax::exp_of;
pub(crate) use softmax::log_softmax_rows;
pub use vector_norm::NormOrd;

/// Gradients for an op's inputs, in input order; `None` where an input needs none.
pub type InputGrads<T> = SmallVec<[Option<Tensor<T>>; 2]>;

/// Gradients for an op's inputs as recorded `Var`s (the graph path).
pub type InputVars<'t, T> = SmallVec<[Option<Var<'t, T>>; 2]>;

/// The backward rule of an op, holding whatever state the forward pass saved for it.
pub trait Backward<T: Float>: fmt::Debug + Send + Sync + 'static {
    /// Given `g` = dL/d(output), returns dL/d(input ᵢ) for each input (`None` where
    /// `cx.needs_grad(i)` is false, or where the input is not differentiable).
    fn backward(&self, cx: &BackwardCx<'_, T>, grad: &Tensor<T>) -> Result<InputGrads<T>>;

    /// [`Backward::backward`], given `g` by value: the engine calls this when nothing needs `g`
    /// after the rule (the usual case: intermediate gradients are not kept), so a rule may reuse
    /// its buffer — mask it in place (ReLU, dropout), relabel its shape (reshape), or pass it on
    /// (addition) — instead of allocating and writing a new tensor of the same size.
    ///
    /// The default borrows `g` and calls [`Backward::backward`]; an override must return exactly
    /// what `backward` returns.
    fn backward_owned(&self, cx: &BackwardCx<'_, T>, grad: Tensor<T>) -> Result<InputGrads<T>> {
        self.backward(cx, &grad)
    }

    /// The same formula built from ops on `Var`s, so that it is recorded on the tape.
    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, grad: Var<'t, T>)
    -> Result<InputVars<'t, T>>;

    /// Bytes of state saved beyond the ids of the inputs (which the tape holds anyway).
    fn saved_bytes(&self) -> usize {
        0
    }

    /// The saved state in words, for inspection (`Display` of a tape); empty if only input ids.
    fn describe_saved(&self) -> String {
        String::new()
    }

    /// The saved mask and its scale, for ops that keep one (dropout, ReLU).
    fn saved_mask(&self) -> Option<(&BitMask, f64)> {
        None
    }
}

/// What a first-order backward rule can see: the values of its inputs and output.
pub struct BackwardCx<'a, T: Float> {
    pub(crate) inputs: &'a [Arc<Tensor<T>>],
    pub(crate) output: &'a Tensor<T>,
    pub(crate) needs: &'a [bool],
}

impl<T: Float> BackwardCx<'_, T> {
    /// The value of input `i`.
    pub fn input(&self, i: usize) -> &Tensor<T> {
        &self.inputs[i]
    }

    /// The op's own output value.
    pub fn output(&self) -> &Tensor<T> {
        self.output
    }

    /// Whether input `i` wants a gradient; rules skip the work for inputs that do not.
    pub fn needs_grad(&self, i: usize) -> bool {
        self.needs[i]
    }
}

/// What a recorded (graph) backward rule can see: its inputs and output as `Var`s.
pub struct GraphCx<'t, T: Float> {
    pub(crate) tape: &'t Tape<T>,
    pub(crate) inputs: SmallVec<[NodeId; 2]>,
    pub(crate) output: NodeId,
    pub(crate) needs: SmallVec<[bool; 2]>,
}

impl<'t, T: Float> GraphCx<'t, T> {
    /// Input `i` as a `Var`.
    pub fn input(&self, i: usize) -> Var<'t, T> {
        Var {
            id: self.inputs[i],
            tape: self.tape,
        }
    }

    /// The op's output as a `Var`.
    pub fn output(&self) -> Var<'t, T> {
        Var {
            id: self.output,
            tape: self.tape,
        }
    }

    /// Whether input `i` wants a gradient.
    pub fn needs_grad(&self, i: usize) -> bool {
        self.needs[i]
    }

    /// The tape being recorded on (for constants a rule needs).
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }
}

/// Runs `f` only for inputs that want a gradient: `grad_if(cx.needs_grad(0), || ...)`.
pub(crate) fn grad_if<X>(needed: bool, f: impl FnOnce() -> Result<X>) -> Result<Option<X>> {
    if needed { f().map(Some) } else { Ok(None) }
}
