//! `logsumexp` along an axis (or of every element): y = log Σᵢ e^(xᵢ).
//!
//! **Stable.** With m the largest element of the slice, y = m + log Σᵢ e^(xᵢ − m): every exponent
//! is ≤ 0, so nothing overflows, and the Σ (at least 1) cannot underflow to 0. The Σ is the
//! crate's pairwise sum. As in PyTorch, an infinite m is not subtracted (it is replaced by 0), so:
//! - a slice whose elements are all −∞ gives log 0 = −∞ (and so does an empty slice);
//! - a slice holding +∞ gives +∞;
//! - a slice holding NaN gives NaN.
//!
//! **Backward.** ∂y/∂xᵢ = e^(xᵢ) / Σⱼ e^(xⱼ) = e^(xᵢ − y) — the softmax of the slice — so
//!
//! ∂L/∂xᵢ = g · e^(xᵢ − y),
//!
//! computed from the output y that is on the tape (PyTorch's `logsumexp_backward`, literally: a
//! slice of −∞ gives e^(−∞ − (−∞)) = NaN, and the +∞ elements of a slice whose result is +∞ get NaN,
//! the finite ones 0, as in PyTorch).

use smallvec::smallvec;

use super::reduce_axis::{Extreme, Plan, map_along, select_along};
use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::Result;
use crate::kernels::{pool, vecmath};
use crate::tape::Var;
use crate::tensor::{Tensor, reduce_middle};

/// log Σ e^x along the plan, max-shifted, into a tensor of `plan.out`.
fn logsumexp_along<T: Float>(x: &Tensor<T>, plan: &Plan) -> Result<Tensor<T>> {
    let op = "logsumexp";
    let mut out = Tensor::overwritable(op, plan.out.clone())?;
    if plan.len == 0 {
        // Σ over no elements is 0: log 0.
        out.data_mut().fill(T::NEG_INFINITY);
        return Ok(out);
    }
    if x.numel() == 0 {
        return Ok(out);
    }
    let mut shift = Tensor::overwritable(op, plan.out.clone())?;
    let mut positions = pool::try_dirty::<u64>(op, plan.out.numel())?;
    select_along(
        x.data(),
        plan,
        Extreme::Max,
        |v| v,
        shift.data_mut(),
        &mut positions,
    );
    for m in shift.data_mut() {
        // PyTorch's `masked_fill_(maxes.abs() == INFINITY, 0)`.
        if m.abs() == T::from_f64(f64::INFINITY) {
            *m = T::ZERO;
        }
    }
    let mut exps = Tensor::overwritable(op, x.shape().clone())?;
    map_along(x.data(), shift.data(), plan, exps.data_mut(), |x, m| x - m);
    vecmath::exp_in_place(exps.data_mut());
    reduce_middle(
        exps.data(),
        plan.outer,
        plan.len,
        plan.inner,
        out.data_mut(),
    )?;
    for (y, &m) in out.data_mut().iter_mut().zip(shift.data()) {
        *y = y.ln() + m;
    }
    Ok(out)
}

impl<'t, T: Float> Var<'t, T> {
    /// log Σ e^x along `axis` (`None`: of every element), max-shifted so that it neither
    /// overflows nor underflows. ∂L/∂xᵢ = g · e^(xᵢ − y), the softmax of the slice.
    ///
    /// PyTorch equivalent: `torch.logsumexp(x, dim=axis, keepdim=keepdim)` (every dimension listed
    /// for `None`).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1000.0, 1000.0, f64::NEG_INFINITY], &[3])?);
    /// let y = x.logsumexp(None, false)?;
    /// assert_eq!(y.value().item()?, 1000.0 + 2f64.ln()); // e¹⁰⁰⁰ would overflow
    /// let g = y.backward()?;
    /// let softmax = g.wrt(x)?.data();
    /// assert!((softmax[0] - 0.5).abs() < 1e-12 && softmax[0] == softmax[1] && softmax[2] == 0.0);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn logsumexp(self, axis: Option<isize>, keepdim: bool) -> Result<Var<'t, T>> {
        let x = self.value();
        let plan = Plan::new("logsumexp", x.shape(), axis, keepdim)?;
        let value = logsumexp_along(&x, &plan)?;
        Ok(self
            .tape
            .record("logsumexp", value, &[self], || LogSumExpBackward { plan }))
    }
}

/// Saves the plan; x and y are on the tape.
#[derive(Debug)]
struct LogSumExpBackward {
    plan: Plan,
}

impl<T: Float> Backward<T> for LogSumExpBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let x = cx.input(0);
        // e^(x − y) through the vectorised kernel, then times g.
        let mut softmax = pool::try_dirty::<T>("logsumexp", x.numel())?;
        let y = cx.output();
        map_along(x.data(), y.data(), &self.plan, &mut softmax, |x, y| x - y);
        vecmath::exp_in_place(&mut softmax);
        let mut dx = Tensor::overwritable("logsumexp", x.shape().clone())?;
        map_along(&softmax, g.data(), &self.plan, dx.data_mut(), |e, g| g * e);
        pool::recycle(softmax);
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let x = cx.input(0);
        let dims = x.shape();
        let x3 = x.reshape(&self.plan.view3())?;
        let y3 = cx.output().reshape(&self.plan.reduced3())?;
        let g3 = g.reshape(&self.plan.reduced3())?;
        let dx = g3.mul(x3.sub(y3)?.exp()?)?;
        Ok(smallvec![Some(dx.reshape(dims.dims())?)])
    }

    fn saved_bytes(&self) -> usize {
        self.plan.saved_bytes()
    }

    fn describe_saved(&self) -> String {
        format!("slices of {} (reads its input and output)", self.plan.len)
    }
}
