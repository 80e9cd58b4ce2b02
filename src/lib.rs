//! # tapegrad
//!
//! A reverse-mode automatic-differentiation engine: a [`Tape`] records every operation of a forward
//! pass, and [`Var::backward`] walks it in reverse to produce every gradient.
//!
//! ## A guided tour
//!
//! The lesson this crate grew from trains a 2-layer MLP, Linear → ReLU → Dropout(p) → Linear, with
//! a softmax cross-entropy loss. Here is one step of it on a tape:
//!
//! ```
//! use rand::SeedableRng;
//! use rand_pcg::Pcg64;
//! use tapegrad::{Param, Tape, Tensor};
//!
//! let mut rng = Pcg64::seed_from_u64(0);
//! let (n, d, h, k) = (8, 4, 16, 3);
//! let x = Tensor::<f32>::normal(&[n, d], 0.0, 1.0, &mut rng)?;
//! let labels = [0usize, 1, 2, 0, 1, 2, 0, 1];
//! let w1 = Param::new("w1", Tensor::normal(&[d, h], 0.0, 0.1, &mut rng)?);
//! let b1 = Param::new("b1", Tensor::zeros(&[h])?);
//! let w2 = Param::new("w2", Tensor::normal(&[h, k], 0.0, 0.1, &mut rng)?);
//! let b2 = Param::new("b2", Tensor::zeros(&[k])?);
//!
//! // Forward: every op appends a node to the tape.
//! let tape = Tape::new();
//! let hidden = tape.constant(x).matmul(tape.param(&w1))?.add(tape.param(&b1))?.relu()?;
//! let hidden = hidden.dropout(0.5, &mut rng)?;          // the mask is saved on the tape
//! let logits = hidden.matmul(tape.param(&w2))?.add(tape.param(&b2))?;
//! let loss = logits.cross_entropy(&labels)?;
//!
//! // Backward: one reverse walk gives every gradient.
//! let grads = loss.backward()?;
//! assert_eq!(grads.param(&w1).unwrap().dims(), &[d, h]);
//! assert_eq!(grads.param(&b2).unwrap().dims(), &[k]);     // the bias gradient, summed over rows
//! # Ok::<(), tapegrad::Error>(())
//! ```
//!
//! ## Where things are
//!
//! - [`Tensor`]: plain n-d data and the math kernels, no autograd.
//! - [`Tape`], [`Var`]: recording; every op is a method on `Var` returning [`Result`].
//! - [`ops`]: one file per op with its forward, saved state and backward rule side by side.
//! - [`Gradients`]: the result of a backward pass, looked up by `Var` or by [`Param`].
//! - [`gradcheck()`]: finite-difference checking, with stochastic ops held fixed.
//! - [`gradcheck_module()`], [`check_manual_gradients()`], [`check_op()`]: checking a whole model, a
//!   hand-derived backward pass, a custom op over generated shapes (see `docs/gradcheck.md`).
//! - [`functional`]: `jacobian`, `hessian`, `vjp`, `jvp`, as `torch.autograd.functional`.
//! - [`BitMask`]: the packed 1-bit-per-element mask dropout saves.
//! - [`lesson`]: the lesson's MLP with hand-derived gradients, to compare with the tape.
//! - [`nn`] and [`optim`]: layers, losses, optimizers and checkpoints with PyTorch's semantics.
//! - [`hvp`], [`gradgradcheck`]: second derivatives by differentiating the backward pass.
//! - [`inspect`]: the tape as a table or a graph, and the trace of a backward pass.
//!
//! The guide in `docs/` derives every backward formula.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod bitmask;
mod creation;
pub mod data;
pub mod datasets;
#[cfg(feature = "mpi")]
pub mod distributed;
mod element;
mod error;
pub mod functional;
pub mod gradcheck;
mod grads;
pub mod higher_order;
mod indices;
pub mod inspect;
pub(crate) mod io;
mod kernels;
pub mod lesson;
pub mod metrics;
pub mod nn;
pub mod ops;
pub mod optim;
mod param;
pub mod prelude;
mod shape;
mod tape;
mod tensor;
mod threads;
pub mod training;

pub use bitmask::BitMask;
pub use element::Float;
pub use error::{Error, Result};
pub use gradcheck::{GradcheckOptions, GradcheckReport, gradcheck, gradgradcheck};
pub use gradcheck::{check_manual_gradients, check_op, gradcheck_module};
pub use grads::{Gradients, GraphGradients};
pub use higher_order::{Hvp, hvp};
pub use indices::{Index, Indices};
pub use inspect::TapeRow;
pub use inspect::{BackwardTrace, TensorSummary, TraceStep};
pub use ops::{
    AttnMask, AvgPool2dOptions, Conv1dOptions, Conv2dOptions, IntoPair, Label, MaxPool2dOptions,
    NormOrd, RunningStats, dropout_scale, dropout_scale_in,
};
pub use param::{Buffer, Param, ParamId};
pub use shape::{MAX_RANK, Shape};
pub use tape::{BackwardOptions, NodeId, NodeKind, Tape, Var};
pub use tensor::Tensor;
pub use threads::{MAX_THREADS, num_threads, set_num_threads};

/// The README's and the guide's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/autograd.md")]
    struct Autograd;
    #[doc = include_str!("../docs/derivations.md")]
    struct Derivations;
    #[doc = include_str!("../docs/dropout.md")]
    struct Dropout;
    #[doc = include_str!("../docs/gradcheck.md")]
    struct Gradcheck;
    #[doc = include_str!("../docs/custom-op.md")]
    struct CustomOp;
    #[doc = include_str!("../docs/higher-order.md")]
    struct HigherOrder;
    #[doc = include_str!("../docs/performance.md")]
    struct Performance;
    #[doc = include_str!("../docs/models.md")]
    struct Models;
    #[doc = include_str!("../docs/reliability.md")]
    struct Reliability;
    #[doc = include_str!("../docs/README.md")]
    struct Guide;
    #[doc = include_str!("../docs/data.md")]
    struct Data;
    #[doc = include_str!("../docs/optim.md")]
    struct OptimGuide;
    #[doc = include_str!("../docs/layers.md")]
    struct Layers;
    #[doc = include_str!("../docs/engine.md")]
    struct Engine;
    #[doc = include_str!("../docs/worked-example.md")]
    struct WorkedExample;
}
