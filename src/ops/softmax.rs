//! `log_softmax` and `softmax` over the last axis.
//!
//! For one row x with max m:
//!
//! log_softmax(x)ᵢ = (xᵢ − m) − log Σⱼ e^(xⱼ − m)
//!
//! Subtracting m changes nothing mathematically and keeps every exponent ≤ 0, so logits of ±1e4 stay
//! finite; subtracting it first, and log Σ second, keeps the rounding at the scale of xᵢ − m (as
//! PyTorch does). The Σ is the pairwise sum of [`Tensor::sum_all`]. A logit of −∞ (a masked class) gives e^(−∞) = 0 exactly and an output of −∞. A row whose
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
use crate::kernels::pool;
use crate::kernels::sum::{dot, sum};
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

/// Row-wise log-softmax of `x`, whose rows have length `n`, into `out`, as PyTorch computes it:
/// (xᵢ − m) − log Σⱼ e^(xⱼ − m). Subtracting log Σ last (rather than m + log Σ at once) keeps
/// the rounding at the scale of xᵢ − m, not of m: for the row [1000, 1001, 1002] in f32 that is the
/// difference between an error of 1e-5 and none. The Σ is the crate's pairwise sum.
pub(crate) fn log_softmax_rows<T: Float>(x: &[T], n: usize, out: &mut [T]) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut exps = pool::try_dirty::<T>("log_softmax", n)?;
    for (row, out_row) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let max = row.iter().copied().fold(T::NEG_INFINITY, T::max);
        for ((o, e), &v) in out_row.iter_mut().zip(exps.iter_mut()).zip(row) {
            *o = v - max;
            *e = o.exp();
        }
        let log_sum = sum(&exps).ln();
        for o in out_row.iter_mut() {
            *o -= log_sum;
        }
    }
    Ok(())
}

/// Row-wise softmax, as PyTorch computes it: e^(xᵢ − m) · (1 / Σⱼ e^(xⱼ − m)).
fn softmax_rows<T: Float>(x: &[T], n: usize, out: &mut [T]) {
    if n == 0 {
        return;
    }
    for (row, out_row) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let max = row.iter().copied().fold(T::NEG_INFINITY, T::max);
        for (o, &v) in out_row.iter_mut().zip(row) {
            *o = (v - max).exp();
        }
        let inv = T::ONE / sum(out_row);
        for o in out_row.iter_mut() {
            *o *= inv;
        }
    }
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
        let mut value = Tensor::overwritable("log_softmax", x.shape().clone())?;
        log_softmax_rows(x.data(), n, value.data_mut())?;
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
        let mut value = Tensor::overwritable("softmax", x.shape().clone())?;
        softmax_rows(x.data(), n, value.data_mut());
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
        let mut dx = g.try_clone()?;
        if self.n > 0 {
            let y = cx.output().data();
            for (dx_row, y_row) in dx.data_mut().chunks_mut(self.n).zip(y.chunks(self.n)) {
                let total = sum(dx_row);
                for (d, &yi) in dx_row.iter_mut().zip(y_row) {
                    *d -= yi.exp() * total;
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
        let mut dx = g.try_clone()?;
        if self.n > 0 {
            let p = cx.output().data();
            for (dx_row, p_row) in dx.data_mut().chunks_mut(self.n).zip(p.chunks(self.n)) {
                let dot = dot(dx_row, p_row);
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
