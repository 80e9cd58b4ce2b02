//! Loss modules with PyTorch's options and defaults.

use crate::element::Float;
use crate::error::{Error, Result};
use crate::ops::{CrossEntropyOptions, Label, NllOptions, Reduction};
use crate::tape::Var;
use crate::tensor::Tensor;

/// Softmax cross-entropy from logits ([N, C] or [N, C, d…], classes on axis 1) and class indices,
/// with class weights, an ignored label (−100 by default), label smoothing and a reduction.
///
/// PyTorch equivalent: `nn.CrossEntropyLoss(weight, ignore_index, reduction, label_smoothing)`.
#[derive(Debug, Clone)]
pub struct CrossEntropyLoss<T: Float = f32> {
    /// A weight per class, `[C]`.
    pub weight: Option<Tensor<T>>,
    /// Elements with this label count for nothing.
    pub ignore_index: Option<i64>,
    /// Label smoothing ε in [0, 1].
    pub label_smoothing: f64,
    /// How per-element losses are combined.
    pub reduction: Reduction,
}

impl<T: Float> Default for CrossEntropyLoss<T> {
    fn default() -> Self {
        CrossEntropyLoss {
            weight: None,
            ignore_index: Some(-100),
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
        }
    }
}

impl<T: Float> CrossEntropyLoss<T> {
    /// The loss of `logits` against `labels` (one per element of [N, d…], row-major).
    pub fn forward<'t, L: Label>(&self, logits: Var<'t, T>, labels: &[L]) -> Result<Var<'t, T>> {
        logits.cross_entropy_with(
            labels,
            &CrossEntropyOptions {
                weight: self.weight.as_ref(),
                ignore_index: self.ignore_index,
                reduction: self.reduction,
                label_smoothing: self.label_smoothing,
            },
        )
    }
}

/// Negative log-likelihood from log-probabilities and class indices, with class weights, an
/// ignored label and a reduction.
///
/// PyTorch equivalent: `nn.NLLLoss(weight, ignore_index, reduction)`.
#[derive(Debug, Clone)]
pub struct NLLLoss<T: Float = f32> {
    /// A weight per class, `[C]`.
    pub weight: Option<Tensor<T>>,
    /// Elements with this label count for nothing.
    pub ignore_index: Option<i64>,
    /// How per-element losses are combined.
    pub reduction: Reduction,
}

impl<T: Float> Default for NLLLoss<T> {
    fn default() -> Self {
        NLLLoss {
            weight: None,
            ignore_index: Some(-100),
            reduction: Reduction::Mean,
        }
    }
}

impl<T: Float> NLLLoss<T> {
    /// The loss of `log_probs` against `labels`.
    pub fn forward<'t, L: Label>(&self, log_probs: Var<'t, T>, labels: &[L]) -> Result<Var<'t, T>> {
        log_probs.nll_with(
            labels,
            &NllOptions {
                weight: self.weight.as_ref(),
                ignore_index: self.ignore_index,
                reduction: self.reduction,
            },
        )
    }
}

/// Mean squared error: (1/n) Σ (ŷ − y)² (or the sum, or one per element).
/// ∂/∂ŷ = 2(ŷ − y)/n. PyTorch equivalent: `nn.MSELoss(reduction)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MSELoss {
    /// How per-element losses are combined.
    pub reduction: Reduction,
}

impl MSELoss {
    /// The loss; `prediction` and `target` must have the same shape (no silent broadcasting,
    /// which PyTorch only warns about), and for the mean hold at least one element (the mean over
    /// none is undefined: [`Error::EmptyBatch`]).
    pub fn forward<'t, T: Float>(
        &self,
        prediction: Var<'t, T>,
        target: Var<'t, T>,
    ) -> Result<Var<'t, T>> {
        let (p, t) = (prediction.shape(), target.shape());
        if p != t {
            return Err(Error::ShapeMismatch {
                op: "mse_loss",
                lhs: p,
                rhs: t,
            });
        }
        let diff = prediction.sub(target)?;
        let squared = diff.mul(diff)?;
        match self.reduction {
            Reduction::Mean if p.numel() == 0 => Err(Error::EmptyBatch {
                op: "mse_loss",
                shape: p,
            }),
            Reduction::Mean => squared.mean(),
            Reduction::Sum => squared.sum(),
            Reduction::None => Ok(squared),
        }
    }
}
