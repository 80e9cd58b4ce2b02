//! `cumsum`: running sums along an axis, yₖ = Σ_{j≤k} xⱼ.
//!
//! **Sequential, by nature.** Every prefix is an output, so the sums are formed one after another —
//! the one reduction in the crate that does not go through the pairwise kernel, as in PyTorch,
//! whose CPU kernel is the same loop. Like PyTorch's, the running total is kept in f64 whatever the
//! element type (PyTorch accumulates in `acc_type`, which is double for float on CPU), and each
//! prefix rounded to the element type when written: in f32, `[1e8, 1, −1e8]` sums to
//! `[1e8, 1e8, 1]` rather than `[1e8, 1e8, 0]`. Rows along the axis are walked with a vector of
//! running totals, so the inner loop is contiguous.
//!
//! **Backward.** xⱼ contributes to every yₖ with k ≥ j, so
//!
//! ∂L/∂xⱼ = Σ_{k≥j} gₖ,
//!
//! the cumulative sum of g *reversed* along the axis (PyTorch's `reversed_cumsum`). The reversed
//! cumsum is recorded as the same op with the direction flipped, whose own backward is the forward
//! cumsum again: the pair is closed under differentiation, and both are linear (second derivative 0).

use smallvec::smallvec;

use super::reduce_axis::Plan;
use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::Result;
use crate::kernels::pool;
use crate::tape::Var;
use crate::tensor::Tensor;

/// Running sums along the middle axis of `[outer, len, inner]`, front to back or (`reverse`)
/// back to front, with f64 totals.
fn scan<T: Float>(
    op: &'static str,
    x: &Tensor<T>,
    plan: &Plan,
    reverse: bool,
) -> Result<Tensor<T>> {
    let mut out = Tensor::overwritable(op, x.shape().clone())?;
    if x.numel() == 0 {
        return Ok(out);
    }
    let (len, inner) = (plan.len, plan.inner);
    if inner == 1 {
        for (row, os) in x
            .data()
            .chunks_exact(len)
            .zip(out.data_mut().chunks_exact_mut(len))
        {
            let mut total = 0.0f64;
            let mut step = |(o, &v): (&mut T, &T)| {
                total += v.to_f64();
                *o = T::from_f64(total);
            };
            if reverse {
                os.iter_mut().zip(row).rev().for_each(&mut step);
            } else {
                os.iter_mut().zip(row).for_each(&mut step);
            }
        }
        return Ok(out);
    }
    let mut totals = pool::try_dirty::<f64>(op, inner)?;
    for (block, os) in x
        .data()
        .chunks_exact(len * inner)
        .zip(out.data_mut().chunks_exact_mut(len * inner))
    {
        totals.fill(0.0);
        let step = |(row, orow): (&[T], &mut [T])| {
            for ((t, o), &v) in totals.iter_mut().zip(orow.iter_mut()).zip(row) {
                *t += v.to_f64();
                *o = T::from_f64(*t);
            }
        };
        let rows = block.chunks_exact(inner).zip(os.chunks_exact_mut(inner));
        if reverse {
            rows.rev().for_each(step);
        } else {
            rows.for_each(step);
        }
    }
    Ok(out)
}

impl<'t, T: Float> Var<'t, T> {
    /// Cumulative sum along `axis`: yₖ = Σ_{j≤k} xⱼ, summed one after another in f64 (see the
    /// module docs). ∂L/∂xⱼ = Σ_{k≥j} gₖ, the reversed cumulative sum of g.
    ///
    /// PyTorch equivalent: `torch.cumsum(x, dim=axis)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3])?);
    /// let y = x.cumsum(0)?;
    /// assert_eq!(y.value().data(), &[1.0, 3.0, 6.0]);
    /// assert_eq!(y.sum()?.backward()?.wrt(x)?.data(), &[3.0, 2.0, 1.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn cumsum(self, axis: isize) -> Result<Var<'t, T>> {
        self.scan("cumsum", axis, false)
    }

    fn scan(self, op: &'static str, axis: isize, reverse: bool) -> Result<Var<'t, T>> {
        let x = self.value();
        let plan = Plan::new(op, x.shape(), Some(axis), true)?;
        let value = scan(op, &x, &plan, reverse)?;
        Ok(self.tape.record(op, value, &[self], || CumsumBackward {
            axis,
            plan,
            reverse,
        }))
    }
}

/// Backward of a forward (`reverse` false) or reversed cumsum: the cumsum in the other direction.
/// Saves the axis and the plan.
#[derive(Debug)]
struct CumsumBackward {
    axis: isize,
    plan: Plan,
    reverse: bool,
}

impl<T: Float> Backward<T> for CumsumBackward {
    fn backward(&self, _cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(scan(
            "cumsum_backward",
            g,
            &self.plan,
            !self.reverse
        )?)])
    }

    fn backward_graph<'t>(&self, _cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let name = if self.reverse {
            "cumsum"
        } else {
            "reversed_cumsum"
        };
        Ok(smallvec![Some(g.scan(name, self.axis, !self.reverse)?)])
    }

    fn saved_bytes(&self) -> usize {
        self.plan.saved_bytes() + std::mem::size_of::<isize>()
    }

    fn describe_saved(&self) -> String {
        format!(
            "axis {} ({}), slices of {}",
            self.axis,
            if self.reverse { "reversed" } else { "forward" },
            self.plan.len
        )
    }
}
