//! `log_softmax` and `softmax`, over the last axis or any other.
//!
//! For one slice x along the axis, with max m:
//!
//! log_softmax(x)ᵢ = (xᵢ − m) − log Σⱼ e^(xⱼ − m)
//!
//! Subtracting m changes nothing mathematically and keeps every exponent ≤ 0, so logits of ±1e4 stay
//! finite; subtracting it first, and log Σ second, keeps the rounding at the scale of xᵢ − m (as
//! PyTorch does). The Σ is the pairwise sum of [`Tensor::sum_all`]. A logit of −∞ (a masked class)
//! gives e^(−∞) = 0 exactly and an output of −∞. A slice whose every logit is −∞ has no
//! distribution; the result is NaN, as in PyTorch.
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
//!
//! **Other axes.** A tensor is a stack of `[len, inner]` slabs (`len` along the axis, `inner` the
//! product of the axes after it); for the last axis `inner` = 1 and each slab is one row. Along any
//! other axis the same formulas run down the columns of each slab, the column sums through the
//! pairwise kernel.

use smallvec::smallvec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels::sum::{dot, sum, sum_rows};
use crate::kernels::{pool, vecmath};
use crate::tape::Var;
use crate::tensor::Tensor;

/// The axis, resolved, with the `[outer, len, inner]` view around it; a scalar has no axis.
fn resolve<T: Float>(op: &'static str, x: &Tensor<T>, axis: isize) -> Result<Slabs> {
    if x.shape().rank() == 0 {
        return Err(Error::BadRank {
            op,
            expected: "at least one axis",
            shape: x.shape().clone(),
        });
    }
    let a = x.shape().axis(op, axis)?;
    let (_, len, inner) = x.shape().around(a);
    Ok(Slabs {
        axis: a,
        len,
        inner,
    })
}

/// Where the softmax runs: `len` entries along `axis`, `inner` columns after it.
#[derive(Debug, Clone, Copy)]
struct Slabs {
    axis: usize,
    len: usize,
    inner: usize,
}

impl Slabs {
    /// Elements per slab; 0 when the tensor is empty along the axis or after it.
    fn size(self) -> usize {
        self.len * self.inner
    }
}

/// `out[i] = x[i] − max(row of i)` for every row of length `n` (NaN-ignoring max, as PyTorch's).
fn shift_rows<T: Float>(x: &[T], n: usize, out: &mut [T]) {
    for (row, out_row) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let max = row.iter().copied().fold(T::NEG_INFINITY, T::max);
        for (o, &v) in out_row.iter_mut().zip(row) {
            *o = v - max;
        }
    }
}

/// Row-wise log-softmax of `x`, whose rows have length `n`, into `out`, as PyTorch computes it:
/// (xᵢ − m) − log Σⱼ e^(xⱼ − m). Subtracting log Σ last (rather than m + log Σ at once) keeps
/// the rounding at the scale of xᵢ − m, not of m: for the row [1000, 1001, 1002] in f32 that is the
/// difference between an error of 1e-5 and none. The Σ is the crate's pairwise sum; the
/// exponentials are one call of the vectorised kernel over the whole tensor.
pub(crate) fn log_softmax_rows<T: Float>(x: &[T], n: usize, out: &mut [T]) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    shift_rows(x, n, out);
    let mut exps = pool::try_dirty::<T>("log_softmax", out.len())?;
    vecmath::exp(out, &mut exps);
    for (out_row, exp_row) in out.chunks_exact_mut(n).zip(exps.chunks_exact(n)) {
        let log_sum = sum(exp_row).ln();
        for o in out_row.iter_mut() {
            *o -= log_sum;
        }
    }
    pool::recycle(exps);
    Ok(())
}

/// e^y for a whole tensor into a pooled buffer: p = softmax(x) from y = log_softmax(x), as the
/// backward of `log_softmax` (and the hand-written gradients of `crate::lesson`) compute it.
pub(crate) fn exp_of<T: Float>(op: &'static str, y: &[T]) -> Result<Vec<T>> {
    let mut p = pool::try_dirty::<T>(op, y.len())?;
    vecmath::exp(y, &mut p);
    Ok(p)
}

/// Row-wise softmax, as PyTorch computes it: e^(xᵢ − m) · (1 / Σⱼ e^(xⱼ − m)).
fn softmax_rows<T: Float>(x: &[T], n: usize, out: &mut [T]) {
    if n == 0 {
        return;
    }
    shift_rows(x, n, out);
    vecmath::exp_in_place(out);
    for out_row in out.chunks_exact_mut(n) {
        let inv = T::ONE / sum(out_row);
        for o in out_row.iter_mut() {
            *o *= inv;
        }
    }
}

/// The column maxima of a `[len, inner]` slab (NaN-ignoring, as the row path).
fn column_max<T: Float>(slab: &[T], inner: usize, max: &mut [T]) {
    max.fill(T::NEG_INFINITY);
    for row in slab.chunks_exact(inner) {
        for (m, &v) in max.iter_mut().zip(row) {
            *m = m.max(v);
        }
    }
}

/// Softmax (or its log) down the columns of each `[len, inner]` slab of `x` into `out`.
fn softmax_columns<T: Float>(x: &[T], s: Slabs, log: bool, out: &mut [T]) -> Result<()> {
    let op = if log { "log_softmax" } else { "softmax" };
    let mut max = pool::try_dirty::<T>(op, s.inner)?;
    let mut sums = pool::try_dirty::<T>(op, s.inner)?;
    let mut exps = pool::try_dirty::<T>(op, s.size())?;
    for (slab, out_slab) in x.chunks_exact(s.size()).zip(out.chunks_exact_mut(s.size())) {
        column_max(slab, s.inner, &mut max);
        for (o_row, row) in out_slab
            .chunks_exact_mut(s.inner)
            .zip(slab.chunks_exact(s.inner))
        {
            for ((o, &v), &m) in o_row.iter_mut().zip(row).zip(&max) {
                *o = v - m;
            }
        }
        vecmath::exp(out_slab, &mut exps);
        sum_rows(&exps, s.len, s.inner, &mut sums)?;
        // log Σ for the log-softmax, 1/Σ for the softmax: once per column.
        for total in sums.iter_mut() {
            *total = if log { total.ln() } else { T::ONE / *total };
        }
        for (o_row, e_row) in out_slab
            .chunks_exact_mut(s.inner)
            .zip(exps.chunks_exact(s.inner))
        {
            if log {
                for (o, &log_sum) in o_row.iter_mut().zip(&sums) {
                    *o -= log_sum;
                }
            } else {
                for ((o, &e), &inv) in o_row.iter_mut().zip(e_row).zip(&sums) {
                    *o = e * inv;
                }
            }
        }
    }
    pool::recycle(exps);
    Ok(())
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
        self.log_softmax_along(-1)
    }

    /// Softmax over the last axis (rows sum to 1). ∂/∂x = p ⊙ (g − Σ_last(g ⊙ p)).
    ///
    /// PyTorch equivalent: `F.softmax(x, dim=-1)`.
    pub fn softmax(self) -> Result<Var<'t, T>> {
        self.softmax_along(-1)
    }

    /// Log-softmax over axis `axis` (negative counts from the end).
    /// ∂/∂x = g − softmax(x) ⊙ Σ_axis g.
    ///
    /// PyTorch equivalent: `F.log_softmax(x, dim=axis)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// // Two classes along axis 1 of [N = 1, C = 2, 3 positions].
    /// let x = tape.constant(Tensor::from_vec(vec![0.0f64, 1.0, 2.0, 0.0, 1.0, 2.0], &[1, 2, 3])?);
    /// let y = x.log_softmax_along(1)?;
    /// assert!(y.value().data().iter().all(|&v| (v - 0.5f64.ln()).abs() < 1e-15));
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn log_softmax_along(self, axis: isize) -> Result<Var<'t, T>> {
        let x = self.value();
        let slabs = resolve("log_softmax", &x, axis)?;
        let mut value = Tensor::overwritable("log_softmax", x.shape().clone())?;
        if slabs.inner == 1 {
            log_softmax_rows(x.data(), slabs.len, value.data_mut())?;
        } else if slabs.size() > 0 {
            softmax_columns(x.data(), slabs, true, value.data_mut())?;
        }
        Ok(self
            .tape
            .record("log_softmax", value, &[self], || LogSoftmaxBackward {
                slabs,
            }))
    }

    /// Softmax over axis `axis` (negative counts from the end): the slices along it sum to 1.
    /// ∂/∂x = p ⊙ (g − Σ_axis(g ⊙ p)).
    ///
    /// PyTorch equivalent: `F.softmax(x, dim=axis)`.
    pub fn softmax_along(self, axis: isize) -> Result<Var<'t, T>> {
        let x = self.value();
        let slabs = resolve("softmax", &x, axis)?;
        let mut value = Tensor::overwritable("softmax", x.shape().clone())?;
        if slabs.inner == 1 {
            softmax_rows(x.data(), slabs.len, value.data_mut());
        } else if slabs.size() > 0 {
            softmax_columns(x.data(), slabs, false, value.data_mut())?;
        }
        Ok(self
            .tape
            .record("softmax", value, &[self], || SoftmaxBackward { slabs }))
    }
}

/// Saves where the softmax ran; the output y is on the tape.
#[derive(Debug)]
struct LogSoftmaxBackward {
    slabs: Slabs,
}

impl<T: Float> Backward<T> for LogSoftmaxBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let s = self.slabs;
        let mut dx = g.try_clone()?;
        // p = e^y, the softmax, for the whole tensor at once.
        let p = exp_of("log_softmax", cx.output().data())?;
        let y = &p[..];
        if s.inner == 1 && s.len > 0 {
            for (dx_row, p_row) in dx.data_mut().chunks_mut(s.len).zip(y.chunks(s.len)) {
                let total = sum(dx_row);
                for (d, &pi) in dx_row.iter_mut().zip(p_row) {
                    *d -= pi * total;
                }
            }
        } else if s.size() > 0 {
            let mut totals = pool::try_dirty::<T>("log_softmax", s.inner)?;
            for (dx_slab, y_slab) in dx
                .data_mut()
                .chunks_exact_mut(s.size())
                .zip(y.chunks_exact(s.size()))
            {
                sum_rows(dx_slab, s.len, s.inner, &mut totals)?;
                for (d_row, p_row) in dx_slab
                    .chunks_exact_mut(s.inner)
                    .zip(y_slab.chunks_exact(s.inner))
                {
                    for ((d, &pi), &total) in d_row.iter_mut().zip(p_row).zip(&totals) {
                        *d -= pi * total;
                    }
                }
            }
        }
        pool::recycle(p);
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let p = cx.output().exp()?;
        let total = g.sum_axis(self.slabs.axis as isize, true)?;
        Ok(smallvec![Some(g.sub(p.mul(total)?)?)])
    }

    fn saved_bytes(&self) -> usize {
        std::mem::size_of::<Slabs>()
    }

    fn describe_saved(&self) -> String {
        format!("axis {} (reads its output)", self.slabs.axis)
    }
}

/// Saves where the softmax ran; the output p is on the tape.
#[derive(Debug)]
struct SoftmaxBackward {
    slabs: Slabs,
}

impl<T: Float> Backward<T> for SoftmaxBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let s = self.slabs;
        let mut dx = g.try_clone()?;
        let p = cx.output().data();
        if s.inner == 1 && s.len > 0 {
            for (dx_row, p_row) in dx.data_mut().chunks_mut(s.len).zip(p.chunks(s.len)) {
                let dot = dot(dx_row, p_row);
                for (d, &pi) in dx_row.iter_mut().zip(p_row) {
                    *d = pi * (*d - dot);
                }
            }
        } else if s.size() > 0 {
            let mut products = pool::try_dirty::<T>("softmax", s.size())?;
            let mut dots = pool::try_dirty::<T>("softmax", s.inner)?;
            for (dx_slab, p_slab) in dx
                .data_mut()
                .chunks_exact_mut(s.size())
                .zip(p.chunks_exact(s.size()))
            {
                for ((q, &d), &pi) in products.iter_mut().zip(dx_slab.iter()).zip(p_slab) {
                    *q = d * pi;
                }
                sum_rows(&products, s.len, s.inner, &mut dots)?;
                for (d_row, p_row) in dx_slab
                    .chunks_exact_mut(s.inner)
                    .zip(p_slab.chunks_exact(s.inner))
                {
                    for ((d, &pi), &dot) in d_row.iter_mut().zip(p_row).zip(&dots) {
                        *d = pi * (*d - dot);
                    }
                }
            }
        }
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let p = cx.output();
        let dot = g.mul(p)?.sum_axis(self.slabs.axis as isize, true)?;
        Ok(smallvec![Some(p.mul(g.sub(dot)?)?)])
    }

    fn saved_bytes(&self) -> usize {
        std::mem::size_of::<Slabs>()
    }

    fn describe_saved(&self) -> String {
        format!("axis {} (reads its output)", self.slabs.axis)
    }
}
