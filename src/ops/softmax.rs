//! `log_softmax` and `softmax` over the last axis.
//!
//! For one row x with max m:
//!
//! log_softmax(x)ᵢ = xᵢ − m − log Σⱼ e^(xⱼ − m)
//!
//! Subtracting m changes nothing mathematically and keeps every exponent ≤ 0, so logits of ±1e4 stay
//! finite. A logit of −∞ (a masked class) gives e^(−∞) = 0 exactly and an output of −∞. A row whose
//! every logit is −∞ has no distribution; the result is NaN, as in PyTorch.
//!
//! **log_softmax backward.** With y = log_softmax(x) and pⱼ = e^(yⱼ) = softmax(x)ⱼ,
//! ∂yᵢ/∂xₖ = δᵢₖ − pₖ, so
//!
//! ∂L/∂xₖ = Σᵢ gᵢ (δᵢₖ − pₖ) = gₖ − pₖ Σᵢ gᵢ,   i.e.   dx = g − softmax(x) ⊙ Σg.
//!
//! It needs only the output y (p = e^y), which is on the tape: nothing extra is saved.
//!
//! **softmax backward.** With p = softmax(x), ∂pᵢ/∂xₖ = pᵢ(δᵢₖ − pₖ), so
//! ∂L/∂xₖ = pₖ (gₖ − Σᵢ gᵢ pᵢ),   i.e.   dx = p ⊙ (g − Σ(g ⊙ p)).

use smallvec::smallvec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::tape::Var;
use crate::tensor::Tensor;

/// Length of the last axis, or an error for a scalar.
fn last_axis<T: Float>(op: &'static str, x: &Tensor<T>) -> Result<usize> {
    x.dims().last().copied().ok_or_else(|| Error::BadRank {
        op,
        expected: "at least one axis",
        shape: x.shape().clone(),
    })
}

/// Row-wise log-softmax of a tensor whose rows have length `n`.
fn log_softmax_rows<T: Float>(x: &Tensor<T>, n: usize) -> Tensor<T> {
    let mut out = x.clone();
    if n == 0 {
        return out;
    }
    for row in out.data_mut().chunks_mut(n) {
        let max = row.iter().copied().fold(T::NEG_INFINITY, T::max);
        let sum: T = row.iter().map(|&v| (v - max).exp()).sum();
        let log_norm = max + sum.ln();
        for v in row.iter_mut() {
            *v -= log_norm;
        }
    }
    out
}

/// Row sums of g, one per row of length n, repeated along the row: the Σ in both backward rules.
fn row_sums<T: Float>(g: &[T], n: usize) -> impl Iterator<Item = T> + '_ {
    g.chunks(n).map(|row| row.iter().copied().sum())
}

impl<'t, T: Float> Var<'t, T> {
    /// Numerically stable log-softmax over the last axis. ∂/∂x = g − softmax(x) ⊙ Σ_last g.
    ///
    /// PyTorch equivalent: `F.log_softmax(x, dim=-1)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::<f32>::new();
    /// let x = tape.constant(Tensor::from_vec(vec![1e4, -1e4, 0.0], &[1, 3])?);
    /// let y = x.log_softmax()?;
    /// assert_eq!(y.value().data(), &[0.0, -2e4, -1e4]); // finite, exact
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn log_softmax(self) -> Result<Var<'t, T>> {
        let x = self.value();
        let n = last_axis("log_softmax", &x)?;
        let value = log_softmax_rows(&x, n);
        Ok(self
            .tape
            .record("log_softmax", value, &[self], || LogSoftmaxBackward { n }))
    }

    /// Softmax over the last axis (rows sum to 1). ∂/∂x = p ⊙ (g − Σ_last(g ⊙ p)).
    ///
    /// PyTorch equivalent: `F.softmax(x, dim=-1)`.
    pub fn softmax(self) -> Result<Var<'t, T>> {
        let x = self.value();
        let n = last_axis("softmax", &x)?;
        let value = log_softmax_rows(&x, n).map(|v| v.exp());
        Ok(self
            .tape
            .record("softmax", value, &[self], || SoftmaxBackward { n }))
    }
}

/// Saves the row length; the output y is on the tape.
#[derive(Debug)]
struct LogSoftmaxBackward {
    n: usize,
}

impl<T: Float> Backward<T> for LogSoftmaxBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let mut dx = g.clone();
        if self.n > 0 {
            let y = cx.output().data();
            let sums: Vec<T> = row_sums(g.data(), self.n).collect();
            for ((dx_row, y_row), sum) in dx
                .data_mut()
                .chunks_mut(self.n)
                .zip(y.chunks(self.n))
                .zip(sums)
            {
                for (d, &yi) in dx_row.iter_mut().zip(y_row) {
                    *d -= yi.exp() * sum;
                }
            }
        }
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let p = cx.output().exp()?;
        let sum = g.sum_axis(-1, true)?;
        Ok(smallvec![Some(g.sub(p.mul(sum)?)?)])
    }

    fn saved_bytes(&self) -> usize {
        std::mem::size_of::<usize>()
    }

    fn describe_saved(&self) -> String {
        format!("row length {} (reads its output)", self.n)
    }
}

/// Saves the row length; the output p is on the tape.
#[derive(Debug)]
struct SoftmaxBackward {
    n: usize,
}

impl<T: Float> Backward<T> for SoftmaxBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let mut dx = g.clone();
        if self.n > 0 {
            let p = cx.output().data();
            for (dx_row, p_row) in dx.data_mut().chunks_mut(self.n).zip(p.chunks(self.n)) {
                let dot: T = dx_row.iter().zip(p_row).map(|(&g, &p)| g * p).sum();
                for (d, &pi) in dx_row.iter_mut().zip(p_row) {
                    *d = pi * (*d - dot);
                }
            }
        }
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let p = cx.output();
        let dot = g.mul(p)?.sum_axis(-1, true)?;
        Ok(smallvec![Some(p.mul(g.sub(dot)?)?)])
    }

    fn saved_bytes(&self) -> usize {
        std::mem::size_of::<usize>()
    }

    fn describe_saved(&self) -> String {
        format!("row length {} (reads its output)", self.n)
    }
}
