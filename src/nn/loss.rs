//! Loss modules with PyTorch's default (mean) reduction.

use crate::element::Float;
use crate::error::{Error, Result};
use crate::ops::Label;
use crate::tape::Var;

/// Softmax cross-entropy from logits [N, C] and class indices.
/// PyTorch equivalent: `nn.CrossEntropyLoss()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrossEntropyLoss;

impl CrossEntropyLoss {
    /// The mean loss over the batch.
    pub fn forward<'t, T: Float, L: Label>(
        &self,
        logits: Var<'t, T>,
        labels: &[L],
    ) -> Result<Var<'t, T>> {
        logits.cross_entropy(labels)
    }
}

/// Negative log-likelihood from log-probabilities [N, C] and class indices.
/// PyTorch equivalent: `nn.NLLLoss()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NLLLoss;

impl NLLLoss {
    /// The mean loss over the batch.
    pub fn forward<'t, T: Float, L: Label>(
        &self,
        log_probs: Var<'t, T>,
        labels: &[L],
    ) -> Result<Var<'t, T>> {
        log_probs.nll(labels)
    }
}

/// Mean squared error, mean over every element: (1/n) Σ (ŷ − y)².
/// ∂/∂ŷ = 2(ŷ − y)/n. PyTorch equivalent: `nn.MSELoss()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MSELoss;

impl MSELoss {
    /// The mean loss; `prediction` and `target` must have the same shape (no silent broadcasting,
    /// which PyTorch only warns about), and hold at least one element (the mean over none is
    /// undefined: [`Error::EmptyBatch`]).
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
        if p.numel() == 0 {
            return Err(Error::EmptyBatch {
                op: "mse_loss",
                shape: p,
            });
        }
        let diff = prediction.sub(target)?;
        diff.mul(diff)?.mean()
    }
}
