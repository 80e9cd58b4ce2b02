//! `prod`: the product along an axis (or of every element), with a gradient that stays exact when
//! the slice holds zeros.
//!
//! y = Πⱼ xⱼ, so ∂y/∂xₖ = Π_{j≠k} xⱼ, the product of the *others*. Writing it y / xₖ divides by zero
//! at a zero; instead the product of the others is the exclusive prefix product times the
//! exclusive suffix product (PyTorch's `prod_safe_zeros_backward`):
//!
//! x = [a, b, c]:   prefix [1, a, ab] ⊙ suffix [bc, c, 1] = [bc, ac, ab],
//!
//! ∂L/∂xₖ = g · (Π_{j<k} xⱼ) · (Π_{j>k} xⱼ).
//!
//! With one zero in the slice, only the zero's position gets a non-zero gradient (the product of
//! the others); with two or more, every gradient is 0 — exactly PyTorch's results. (Where the
//! slice has no zero PyTorch computes g · y / xₖ instead, which agrees up to rounding but loses the
//! gradient when y under- or overflows; the exclusive products do not.) The product of no elements
//! is 1. The product is accumulated one element after another (products do not lose digits to
//! cancellation the way sums do).
//!
//! **Second derivatives.** The graph path is g ⊙ E(x), with E(x)ₖ = Π_{j≠k} xⱼ recorded as its own
//! node (`prod_others`). Its backward is exact at zeros too: ∂L/∂xₖ = Σ_{i≠k} hᵢ Π_{j∉{i,k}} xⱼ,
//! computed in O(n) per slice by two running sums,
//!
//! Aₖ = Σ_{i<k} hᵢ Π_{j<k, j≠i} xⱼ   (A₀ = 0, Aₖ₊₁ = Aₖ xₖ + hₖ Π_{j<k} xⱼ),
//! Bₖ = Σ_{i>k} hᵢ Π_{j>k, j≠i} xⱼ   (Bₙ₋₁ = 0, Bₖ₋₁ = Bₖ xₖ + hₖ Π_{j>k} xⱼ),
//!
//! ∂L/∂xₖ = Aₖ · Π_{j>k} xⱼ + Bₖ · Π_{j<k} xⱼ. Recording that rule as a graph (for third
//! derivatives) uses Eₖ (Σᵢ hᵢ/xᵢ − hₖ/xₖ), valid where no element of x is 0; through a zero it is
//! an error.

use smallvec::smallvec;

use super::reduce_axis::Plan;
use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars, grad_if};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels::pool;
use crate::tape::Var;
use crate::tensor::Tensor;

/// Π along the plan into `out` (`[outer, inner]`); 1 for empty slices.
fn product_along<T: Float>(x: &[T], plan: &Plan, out: &mut [T]) {
    out.fill(T::ONE);
    if x.is_empty() {
        return;
    }
    let (len, inner) = (plan.len, plan.inner);
    if inner == 1 {
        for (row, o) in x.chunks_exact(len).zip(out.iter_mut()) {
            *o = row.iter().fold(T::ONE, |p, &v| p * v);
        }
        return;
    }
    for (block, os) in x.chunks_exact(len * inner).zip(out.chunks_exact_mut(inner)) {
        for row in block.chunks_exact(inner) {
            for (o, &v) in os.iter_mut().zip(row) {
                *o *= v;
            }
        }
    }
}

/// E(x)ₖ = Π_{j≠k} xⱼ along the plan, into `out` (x's shape): exclusive prefix products written
/// forward, then multiplied by the exclusive suffix products walking back. `scratch` holds one
/// running row (`inner` long).
fn others_along<T: Float>(x: &[T], plan: &Plan, out: &mut [T], running: &mut [T]) {
    if x.is_empty() {
        return;
    }
    let (len, inner) = (plan.len, plan.inner);
    if inner == 1 {
        for (row, os) in x.chunks_exact(len).zip(out.chunks_exact_mut(len)) {
            let mut prefix = T::ONE;
            for (o, &v) in os.iter_mut().zip(row) {
                *o = prefix;
                prefix *= v;
            }
            let mut suffix = T::ONE;
            for (o, &v) in os.iter_mut().zip(row).rev() {
                *o *= suffix;
                suffix *= v;
            }
        }
        return;
    }
    for (block, os) in x
        .chunks_exact(len * inner)
        .zip(out.chunks_exact_mut(len * inner))
    {
        running.fill(T::ONE);
        for (row, orow) in block.chunks_exact(inner).zip(os.chunks_exact_mut(inner)) {
            for ((o, r), &v) in orow.iter_mut().zip(running.iter_mut()).zip(row) {
                *o = *r;
                *r *= v;
            }
        }
        running.fill(T::ONE);
        for (row, orow) in block
            .chunks_exact(inner)
            .rev()
            .zip(os.chunks_exact_mut(inner).rev())
        {
            for ((o, r), &v) in orow.iter_mut().zip(running.iter_mut()).zip(row) {
                *o *= *r;
                *r *= v;
            }
        }
    }
}

/// The exclusive products E(x) as a tensor of x's shape.
fn others<T: Float>(op: &'static str, x: &Tensor<T>, plan: &Plan) -> Result<Tensor<T>> {
    let mut out = Tensor::overwritable(op, x.shape().clone())?;
    let mut running = pool::try_dirty::<T>(op, plan.inner.min(x.numel()))?;
    others_along(x.data(), plan, out.data_mut(), &mut running);
    Ok(out)
}

impl<'t, T: Float> Var<'t, T> {
    /// Product along `axis` (`None`: of every element); 1 for no elements.
    /// ∂L/∂xₖ = g · Π_{j≠k} xⱼ, exact with zeros in the slice (see the module docs).
    ///
    /// PyTorch equivalent: `torch.prod(x, dim=axis, keepdim=keepdim)` (`torch.prod(x)` for `None`).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![2.0f64, 0.0, 3.0], &[3])?);
    /// let y = x.prod(None, false)?;
    /// assert_eq!(y.value().item()?, 0.0);
    /// assert_eq!(y.backward()?.wrt(x)?.data(), &[0.0, 6.0, 0.0]); // only the zero moves y
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn prod(self, axis: Option<isize>, keepdim: bool) -> Result<Var<'t, T>> {
        let x = self.value();
        let plan = Plan::new("prod", x.shape(), axis, keepdim)?;
        let mut value = Tensor::overwritable("prod", plan.out.clone())?;
        product_along(x.data(), &plan, value.data_mut());
        Ok(self
            .tape
            .record("prod", value, &[self], || ProdBackward { plan }))
    }

    /// E(x)ₖ = Π_{j≠k} xⱼ along the plan, recorded (the graph path of `prod`).
    fn prod_others(self, plan: &Plan) -> Result<Var<'t, T>> {
        let value = others("prod_others", &self.value(), plan)?;
        Ok(self
            .tape
            .record("prod_others", value, &[self], || ProdOthersBackward {
                plan: plan.clone(),
            }))
    }
}

/// Saves the plan; x is on the tape.
#[derive(Debug)]
struct ProdBackward {
    plan: Plan,
}

impl<T: Float> Backward<T> for ProdBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let x = cx.input(0);
        let mut dx = others("prod", x, &self.plan)?;
        if dx.numel() > 0 && self.plan.inner == 1 {
            for (row, &g) in dx.data_mut().chunks_exact_mut(self.plan.len).zip(g.data()) {
                for d in row {
                    *d = g * *d;
                }
            }
        } else if dx.numel() > 0 {
            // dₖ = g · Eₖ, g spread along the slice.
            let (len, inner) = (self.plan.len, self.plan.inner);
            for (block, gs) in dx
                .data_mut()
                .chunks_exact_mut(len * inner)
                .zip(g.data().chunks_exact(inner))
            {
                for row in block.chunks_exact_mut(inner) {
                    for (d, &g) in row.iter_mut().zip(gs) {
                        *d = g * *d;
                    }
                }
            }
        }
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let x = cx.input(0);
        let dims = x.shape();
        let others = x.prod_others(&self.plan)?.reshape(&self.plan.view3())?;
        let dx = g.reshape(&self.plan.reduced3())?.mul(others)?;
        Ok(smallvec![Some(dx.reshape(dims.dims())?)])
    }

    fn saved_bytes(&self) -> usize {
        self.plan.saved_bytes()
    }

    fn describe_saved(&self) -> String {
        format!("slices of {} (reads its input)", self.plan.len)
    }
}

/// Backward of E(x)ₖ = Π_{j≠k} xⱼ (a symmetric Jacobian: ∂Eᵢ/∂xₖ = Π_{j∉{i,k}} xⱼ for i ≠ k).
#[derive(Debug)]
struct ProdOthersBackward {
    plan: Plan,
}

impl<T: Float> Backward<T> for ProdOthersBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, h: &Tensor<T>) -> Result<InputGrads<T>> {
        let op = "prod_others";
        let x = cx.input(0);
        let mut dx = Tensor::overwritable(op, x.shape().clone())?;
        if x.numel() == 0 {
            return Ok(smallvec![Some(dx)]);
        }
        let (len, inner) = (self.plan.len, self.plan.inner);
        // Per slab: `prefix` keeps the exclusive prefix product of each position (needed on the
        // way back); two running rows carry A (forward) and B (backward) and the running products.
        let mut prefix = pool::try_dirty::<T>(op, len * inner)?;
        let mut product = pool::try_dirty::<T>(op, inner)?;
        let mut sum = pool::try_dirty::<T>(op, inner)?;
        for ((xs, hs), ds) in x
            .data()
            .chunks_exact(len * inner)
            .zip(h.data().chunks_exact(len * inner))
            .zip(dx.data_mut().chunks_exact_mut(len * inner))
        {
            // Forward: dₖ = Aₖ, prefixₖ = Π_{j<k} xⱼ.
            product.fill(T::ONE);
            sum.fill(T::ZERO);
            for (((xrow, hrow), drow), prow) in xs
                .chunks_exact(inner)
                .zip(hs.chunks_exact(inner))
                .zip(ds.chunks_exact_mut(inner))
                .zip(prefix.chunks_exact_mut(inner))
            {
                for i in 0..inner {
                    drow[i] = sum[i];
                    prow[i] = product[i];
                    sum[i] = sum[i] * xrow[i] + hrow[i] * product[i];
                    product[i] *= xrow[i];
                }
            }
            // Backward: dₖ = Aₖ · suffixₖ + Bₖ · prefixₖ.
            product.fill(T::ONE);
            sum.fill(T::ZERO);
            for (((xrow, hrow), drow), prow) in xs
                .chunks_exact(inner)
                .zip(hs.chunks_exact(inner))
                .zip(ds.chunks_exact_mut(inner))
                .zip(prefix.chunks_exact(inner))
                .rev()
            {
                for i in 0..inner {
                    drow[i] = drow[i] * product[i] + sum[i] * prow[i];
                    sum[i] = sum[i] * xrow[i] + hrow[i] * product[i];
                    product[i] *= xrow[i];
                }
            }
        }
        Ok(smallvec![Some(dx)])
    }

    /// E(x)ₖ · (Σᵢ hᵢ/xᵢ − hₖ/xₖ), from recorded ops: right wherever x has no zero (the only case
    /// third derivatives support).
    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, h: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let x = cx.input(0);
        if x.value().data().contains(&T::ZERO) {
            return Err(Error::InvalidArgument {
                op: "prod",
                reason: "recording the second derivative of prod as a graph (the step third derivatives need) through a slice that holds a zero is not supported".to_string(),
            });
        }
        let dims = x.shape();
        Ok(smallvec![grad_if(cx.needs_grad(0), || {
            let view = self.plan.view3();
            let ratio = h.reshape(&view)?.div(x.reshape(&view)?)?;
            let total = ratio.sum_axis(1, true)?;
            cx.output()
                .reshape(&view)?
                .mul(total.sub(ratio)?)?
                .reshape(dims.dims())
        })?])
    }

    fn saved_bytes(&self) -> usize {
        self.plan.saved_bytes()
    }

    fn describe_saved(&self) -> String {
        format!("slices of {} (reads its input)", self.plan.len)
    }
}
