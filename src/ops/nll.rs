//! Negative log-likelihood, and cross-entropy = NLL ∘ log-softmax.
//!
//! For log-probabilities Z of shape [N, C] and labels t, with PyTorch's default mean reduction:
//!
//! L = −(1/N) Σᵢ Z[i, tᵢ]
//!
//! Each row contributes through one entry only, so ∂L/∂Z[i, k] = −[k = tᵢ] / N, times the incoming
//! scalar g. The saved state is the labels (as indices). Chained after log-softmax, the two backward
//! rules compose to the familiar softmax cross-entropy gradient: with Y the one-hot labels,
//! dZ = −Y/N, and log-softmax's rule gives dX = dZ − softmax(X) ⊙ Σ_row dZ = (softmax(X) − Y)/N,
//! since each row of dZ sums to −1/N.

use smallvec::smallvec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::indices::Index as Label;
use crate::kernels::pool;
use crate::kernels::sum::sum;
use crate::tape::Var;
use crate::tensor::Tensor;

/// Checks labels against a `[N, C]` input and returns them as indices.
fn validate_labels<T: Float, L: Label>(
    op: &'static str,
    x: &Tensor<T>,
    labels: &[L],
) -> Result<(usize, usize, Vec<usize>)> {
    let &[batch, classes] = x.dims() else {
        return Err(Error::BadRank {
            op,
            expected: "log-probabilities of shape [N, C]",
            shape: x.shape().clone(),
        });
    };
    if labels.len() != batch {
        return Err(Error::LabelCount {
            op,
            labels: labels.len(),
            batch,
        });
    }
    if batch == 0 {
        return Err(Error::EmptyBatch {
            op,
            shape: x.shape().clone(),
        });
    }
    let indices = labels
        .iter()
        .enumerate()
        .map(|(position, &label)| {
            let label = label.as_i64();
            usize::try_from(label)
                .ok()
                .filter(|&l| l < classes)
                .ok_or_else(|| Error::LabelOutOfRange {
                    op,
                    position,
                    label,
                    classes,
                })
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok((batch, classes, indices))
}

/// −(1/N) Σᵢ Z[i, tᵢ], the picked entries summed pairwise (the kernel of [`Tensor::sum_all`]).
/// The lesson's hand-written step calls this too, so both agree to the bit.
pub(crate) fn nll_mean<T: Float>(z: &[T], classes: usize, labels: &[usize]) -> Result<T> {
    let picked = pool::try_collect(
        "nll",
        labels.len(),
        labels.iter().enumerate().map(|(i, &t)| z[i * classes + t]),
    )?;
    Ok(-sum(&picked) / T::from_f64(labels.len() as f64))
}

impl<'t, T: Float> Var<'t, T> {
    /// Mean negative log-likelihood of `labels` under log-probabilities `self` of shape [N, C].
    /// ∂/∂Z[i, k] = −g·[k = tᵢ]/N.
    ///
    /// Errors: not 2-D, label count ≠ N, N = 0, a label negative or ≥ C.
    ///
    /// PyTorch equivalent: `F.nll_loss(z, t)`.
    pub fn nll<L: Label>(self, labels: &[L]) -> Result<Var<'t, T>> {
        let (_, _, indices) = validate_labels("nll", &self.value(), labels)?;
        self.nll_checked(indices)
    }

    /// NLL with labels already validated against this input's [N, C].
    fn nll_checked(self, labels: Vec<usize>) -> Result<Var<'t, T>> {
        let z = self.value();
        let classes = z.dims()[1];
        let value = Tensor::scalar(nll_mean(z.data(), classes, &labels)?);
        Ok(self
            .tape
            .record("nll", value, &[self], || NllBackward { labels, classes }))
    }

    /// Softmax cross-entropy of logits `self` ([N, C]) and class `labels`, recorded as
    /// `log_softmax` followed by `nll`. ∂/∂X = g·(softmax(X) − onehot(t))/N.
    ///
    /// PyTorch equivalent: `F.cross_entropy(x, t)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::<f64>::zeros(&[2, 4])?);
    /// let loss = x.cross_entropy(&[0, 3])?;
    /// assert!((loss.value().item()? - 4f64.ln()).abs() < 1e-12); // uniform over 4 classes
    /// let g = loss.backward()?;
    /// assert_eq!(g.wrt(x)?.data()[..4], [-0.375, 0.125, 0.125, 0.125]); // (1/4 − 1)/2, (1/4)/2
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn cross_entropy<L: Label>(self, labels: &[L]) -> Result<Var<'t, T>> {
        // Validate against the logits first, so the error names the loss the caller called.
        let (_, _, indices) = validate_labels("cross_entropy", &self.value(), labels)?;
        self.log_softmax()?.nll_checked(indices)
    }
}

/// Saves the label of every row (as indices) and the number of classes.
#[derive(Debug)]
struct NllBackward {
    labels: Vec<usize>,
    classes: usize,
}

impl NllBackward {
    /// −[k = tᵢ]·g/N, the gradient for an incoming (scalar) g.
    fn grad_for<T: Float>(&self, g: T) -> Result<Tensor<T>> {
        let n = self.labels.len();
        let mut grad = Tensor::full(&[n, self.classes], T::ZERO)?;
        let weight = -g / T::from_f64(n as f64);
        for (row, &t) in grad
            .data_mut()
            .chunks_exact_mut(self.classes)
            .zip(&self.labels)
        {
            row[t] = weight;
        }
        Ok(grad)
    }
}

impl<T: Float> Backward<T> for NllBackward {
    fn backward(&self, _cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(self.grad_for(g.item()?)?)])
    }

    /// g (a scalar Var) times a constant: linear in g, and Z does not appear.
    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let unit = cx.tape().constant(self.grad_for(T::ONE)?);
        Ok(smallvec![Some(g.mul(unit)?)])
    }

    fn saved_bytes(&self) -> usize {
        self.labels.len() * std::mem::size_of::<usize>() + std::mem::size_of::<usize>()
    }

    fn describe_saved(&self) -> String {
        format!("{} labels, {} classes", self.labels.len(), self.classes)
    }
}
