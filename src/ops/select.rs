//! Selection: comparisons (`gt`, `ge`, `lt`, `le`, `eq`, `ne` and their `_scalar` forms),
//! `masked_fill`, `where_`, `minimum`, `maximum`.
//!
//! Tensors hold floats, so a mask is a float tensor read as **nonzero = true** (NaN is nonzero, so
//! true). Comparisons produce such masks, 1.0 for true and 0.0 for false, as constants: a comparison
//! is piecewise constant, its gradient is 0 wherever it exists, and PyTorch's boolean results carry
//! none. A NaN compares false with everything (`ne`: true), as IEEE and PyTorch say.
//!
//! The selections route the gradient instead of scaling it: `masked_fill` sends g to x where the
//! mask is false and exactly 0 where it is true; `where_` sends g to `a` where the condition holds
//! and to `b` elsewhere; `maximum`/`minimum` send it to the operand that was chosen, split in two
//! halves on a tie (PyTorch's `grad / 2`). Every gradient is summed back to its operand's shape.

use smallvec::{SmallVec, smallvec};

use super::elementwise::{each, map_slices, zip_broadcast3};
use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars, grad_if};
use crate::element::Float;
use crate::error::Result;
use crate::shape::Shape;
use crate::tape::Var;
use crate::tensor::Tensor;

/// 1.0 for true, 0.0 for false.
#[inline(always)]
fn truth<T: Float>(b: bool) -> T {
    if b { T::ONE } else { T::ZERO }
}

/// Whether a mask element counts as true.
#[inline(always)]
fn is_set<T: Float>(m: T) -> bool {
    m != T::ZERO
}

// ---------------------------------------------------------------------------------------------
// Comparisons.

impl<'t, T: Float> Var<'t, T> {
    fn compare(
        self,
        other: Var<'t, T>,
        op: &'static str,
        test: impl Fn(T, T) -> bool + Sync,
    ) -> Result<Var<'t, T>> {
        self.same_tape(other, op)?;
        let value = self
            .value()
            .zip_map(&other.value(), op, |a, b| truth(test(a, b)))?;
        Ok(self.tape.constant(value))
    }

    fn compare_scalar(
        self,
        c: T,
        op: &'static str,
        test: impl Fn(T, T) -> bool + Sync,
    ) -> Result<Var<'t, T>> {
        let value = map_slices(op, &self.value(), |x, out| {
            each(x, out, |x| truth(test(x, c)))
        })?;
        Ok(self.tape.constant(value))
    }

    /// `self > other` element-wise with broadcasting, as a constant mask of 1.0 (true) and 0.0
    /// (false); no gradient flows through it. NaN compares false.
    ///
    /// PyTorch equivalent: `torch.gt(a, b)` (`a > b`, as a float tensor).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let a = tape.leaf(Tensor::from_vec(vec![1.0f64, 2.0, f64::NAN], &[3])?);
    /// let b = tape.constant(Tensor::scalar(1.5));
    /// let m = a.gt(b)?;
    /// assert_eq!(m.value().data(), &[0.0, 1.0, 0.0]);
    /// assert!(!m.requires_grad());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn gt(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.compare(other, "gt", |a, b| a > b)
    }

    /// `self ≥ other` element-wise with broadcasting, as a constant 0/1 mask. NaN compares false.
    ///
    /// PyTorch equivalent: `torch.ge(a, b)` (`a >= b`).
    pub fn ge(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.compare(other, "ge", |a, b| a >= b)
    }

    /// `self < other` element-wise with broadcasting, as a constant 0/1 mask. NaN compares false.
    ///
    /// PyTorch equivalent: `torch.lt(a, b)` (`a < b`).
    pub fn lt(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.compare(other, "lt", |a, b| a < b)
    }

    /// `self ≤ other` element-wise with broadcasting, as a constant 0/1 mask. NaN compares false.
    ///
    /// PyTorch equivalent: `torch.le(a, b)` (`a <= b`).
    pub fn le(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.compare(other, "le", |a, b| a <= b)
    }

    /// `self == other` element-wise with broadcasting, as a constant 0/1 mask. NaN equals
    /// nothing, itself included.
    ///
    /// PyTorch equivalent: `torch.eq(a, b)` (`a == b`).
    pub fn eq(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.compare(other, "eq", |a, b| a == b)
    }

    /// `self ≠ other` element-wise with broadcasting, as a constant 0/1 mask. NaN differs from
    /// everything, itself included (true).
    ///
    /// PyTorch equivalent: `torch.ne(a, b)` (`a != b`).
    pub fn ne(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.compare(other, "ne", |a, b| a != b)
    }

    /// `self > c` element-wise, as a constant 0/1 mask. NaN compares false.
    ///
    /// PyTorch equivalent: `x > c`.
    pub fn gt_scalar(self, c: T) -> Result<Var<'t, T>> {
        self.compare_scalar(c, "gt_scalar", |a, b| a > b)
    }

    /// `self ≥ c` element-wise, as a constant 0/1 mask. NaN compares false.
    ///
    /// PyTorch equivalent: `x >= c`.
    pub fn ge_scalar(self, c: T) -> Result<Var<'t, T>> {
        self.compare_scalar(c, "ge_scalar", |a, b| a >= b)
    }

    /// `self < c` element-wise, as a constant 0/1 mask. NaN compares false.
    ///
    /// PyTorch equivalent: `x < c`.
    pub fn lt_scalar(self, c: T) -> Result<Var<'t, T>> {
        self.compare_scalar(c, "lt_scalar", |a, b| a < b)
    }

    /// `self ≤ c` element-wise, as a constant 0/1 mask. NaN compares false.
    ///
    /// PyTorch equivalent: `x <= c`.
    pub fn le_scalar(self, c: T) -> Result<Var<'t, T>> {
        self.compare_scalar(c, "le_scalar", |a, b| a <= b)
    }

    /// `self == c` element-wise, as a constant 0/1 mask. NaN equals nothing.
    ///
    /// PyTorch equivalent: `x == c`.
    pub fn eq_scalar(self, c: T) -> Result<Var<'t, T>> {
        self.compare_scalar(c, "eq_scalar", |a, b| a == b)
    }

    /// `self ≠ c` element-wise, as a constant 0/1 mask. NaN differs from everything (true).
    ///
    /// PyTorch equivalent: `x != c`.
    pub fn ne_scalar(self, c: T) -> Result<Var<'t, T>> {
        self.compare_scalar(c, "ne_scalar", |a, b| a != b)
    }
}

// ---------------------------------------------------------------------------------------------
// masked_fill.

impl<'t, T: Float> Var<'t, T> {
    /// `value` where `mask` is nonzero, x elsewhere. x and the mask broadcast against each other
    /// (usually the mask broadcasts to x's shape, like a causal mask `[T, T]` over scores
    /// `[B, H, T, T]`). ∂L/∂x = g where the mask is zero and exactly 0 where it is set (even where g
    /// is NaN), summed back to x's shape; the mask gets no gradient. `value` may be anything,
    /// −∞ included.
    ///
    /// PyTorch equivalent: `x.masked_fill(mask, value)` (with `mask` boolean: here `mask != 0`).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let scores = tape.leaf(Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2])?);
    /// let causal = tape.constant(Tensor::from_vec(vec![0.0, 1.0, 0.0, 0.0], &[2, 2])?);
    /// let masked = scores.masked_fill(causal, f64::NEG_INFINITY)?;
    /// assert_eq!(masked.value().data(), &[1.0, f64::NEG_INFINITY, 3.0, 4.0]);
    /// let g = masked.softmax()?.sum()?.backward()?;
    /// assert_eq!(g.wrt(scores)?.data()[1], 0.0); // nothing flows to a masked entry
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn masked_fill(self, mask: Var<'t, T>, value: T) -> Result<Var<'t, T>> {
        self.same_tape(mask, "masked_fill")?;
        let out = self.value().zip_map(&mask.value(), "masked_fill", |x, m| {
            if is_set(m) { value } else { x }
        })?;
        Ok(self
            .tape
            .record("masked_fill", out, &[self, mask], || MaskedFillBackward))
    }
}

/// Saves nothing: the mask is the op's second input, on the tape.
#[derive(Debug)]
struct MaskedFillBackward;

impl<T: Float> Backward<T> for MaskedFillBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (x, mask) = (cx.input(0), cx.input(1));
        let dx = grad_if(cx.needs_grad(0), || {
            g.zip_map(
                mask,
                "masked_fill",
                |g, m| {
                    if is_set(m) { T::ZERO } else { g }
                },
            )?
            .into_sum_to(x.shape())
        })?;
        Ok(smallvec![dx, None])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (x, mask) = (cx.input(0), cx.input(1));
        let dx = grad_if(cx.needs_grad(0), || {
            g.masked_fill(mask, T::ZERO)?.sum_to(&x.shape())
        })?;
        Ok(smallvec![dx, None])
    }
}

// ---------------------------------------------------------------------------------------------
// where_.

/// [`crate::shape::for_each_broadcast`] for three operands: visits every element of `out` in
/// row-major order with the flat offsets into each operand, whose broadcast strides are
/// `strides[k]`.
fn for_each_broadcast3(
    out: &Shape,
    strides: [&[usize]; 3],
    mut visit: impl FnMut(usize, [usize; 3]),
) {
    let dims = out.dims();
    let rank = dims.len();
    if out.numel() == 0 {
        return;
    }
    if rank == 0 {
        visit(0, [0; 3]);
        return;
    }
    let inner = dims[rank - 1];
    let step = strides.map(|s| s[rank - 1]);
    let mut counter: SmallVec<[usize; 4]> = SmallVec::from_elem(0, rank - 1);
    let mut base = [0usize; 3];
    for row in 0..out.numel() / inner {
        let start = row * inner;
        for j in 0..inner {
            visit(
                start + j,
                [
                    base[0] + j * step[0],
                    base[1] + j * step[1],
                    base[2] + j * step[2],
                ],
            );
        }
        // Advance the multi-index over the outer axes like an odometer.
        let mut axis = rank - 1;
        while axis > 0 {
            axis -= 1;
            counter[axis] += 1;
            for (b, s) in base.iter_mut().zip(&strides) {
                *b += s[axis];
            }
            if counter[axis] < dims[axis] {
                break;
            }
            for (b, s) in base.iter_mut().zip(&strides) {
                *b -= s[axis] * counter[axis];
            }
            counter[axis] = 0;
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// Element-wise selection with `self` as the condition: `a` where the condition is nonzero,
    /// `b` elsewhere; all three broadcast to one shape. ∂L/∂a = g where the condition holds (0
    /// elsewhere), ∂L/∂b = g where it does not, each summed back to its operand's shape; the
    /// condition gets no gradient. The gradients are selected, not multiplied, so a NaN or ∞ in the
    /// branch not taken does not leak into them.
    ///
    /// Named `where_` because `where` is a Rust keyword. Call it as a method on the condition,
    /// `cond.where_(a, b)`, or as `Var::where_(cond, a, b)`, the order of `torch.where`.
    ///
    /// PyTorch equivalent: `torch.where(cond, a, b)` (with `cond` boolean: here `cond != 0`).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor, Var};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![-1.0f64, 2.0, -3.0], &[3])?);
    /// let zero = tape.constant(Tensor::scalar(0.0));
    /// let y = Var::where_(x.gt_scalar(0.0)?, x, zero)?; // a ReLU
    /// assert_eq!(y.value().data(), &[0.0, 2.0, 0.0]);
    /// assert_eq!(y.sum()?.backward()?.wrt(x)?.data(), &[0.0, 1.0, 0.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn where_(self, a: Var<'t, T>, b: Var<'t, T>) -> Result<Var<'t, T>> {
        self.same_tape(a, "where")?;
        self.same_tape(b, "where")?;
        let (cond, av, bv) = (self.value(), a.value(), b.value());
        let cond_a = Shape::broadcast("where", cond.shape(), av.shape())?;
        let shape = Shape::broadcast("where", &cond_a, bv.shape())?;
        let mut out = Tensor::overwritable("where", shape.clone())?;
        let (c, ad, bd) = (cond.data(), av.data(), bv.data());
        if cond.shape() == &shape && av.shape() == &shape && bv.shape() == &shape {
            for (((o, &c), &a), &b) in out.data_mut().iter_mut().zip(c).zip(ad).zip(bd) {
                *o = if is_set(c) { a } else { b };
            }
        } else {
            let strides = [
                cond.shape().broadcast_strides(&shape),
                av.shape().broadcast_strides(&shape),
                bv.shape().broadcast_strides(&shape),
            ];
            let data = out.data_mut();
            for_each_broadcast3(
                &shape,
                [&strides[0], &strides[1], &strides[2]],
                |o, [i, j, k]| {
                    data[o] = if is_set(c[i]) { ad[j] } else { bd[k] };
                },
            );
        }
        Ok(self
            .tape
            .record("where", out, &[self, a, b], || WhereBackward))
    }
}

/// Saves nothing: the condition is the op's first input, on the tape.
#[derive(Debug)]
struct WhereBackward;

impl<T: Float> Backward<T> for WhereBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (cond, a, b) = (cx.input(0), cx.input(1), cx.input(2));
        let da = grad_if(cx.needs_grad(1), || {
            g.zip_map(cond, "where", |g, c| if is_set(c) { g } else { T::ZERO })?
                .into_sum_to(a.shape())
        })?;
        let db = grad_if(cx.needs_grad(2), || {
            g.zip_map(cond, "where", |g, c| if is_set(c) { T::ZERO } else { g })?
                .into_sum_to(b.shape())
        })?;
        Ok(smallvec![None, da, db])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (cond, a, b) = (cx.input(0), cx.input(1), cx.input(2));
        let da = grad_if(cx.needs_grad(1), || {
            g.masked_fill(cond.eq_scalar(T::ZERO)?, T::ZERO)?
                .sum_to(&a.shape())
        })?;
        let db = grad_if(cx.needs_grad(2), || {
            g.masked_fill(cond, T::ZERO)?.sum_to(&b.shape())
        })?;
        Ok(smallvec![None, da, db])
    }
}

// ---------------------------------------------------------------------------------------------
// minimum, maximum.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extremum {
    Min,
    Max,
}

impl Extremum {
    fn name(self) -> &'static str {
        match self {
            Extremum::Min => "minimum",
            Extremum::Max => "maximum",
        }
    }

    /// The chosen value; NaN if either is NaN (PyTorch's `maximum`/`minimum` propagate NaN).
    #[inline(always)]
    fn pick<T: Float>(self, a: T, b: T) -> T {
        match self {
            // `a < b` is false for a NaN a, which is then returned.
            Extremum::Max if b.is_nan() || a < b => b,
            Extremum::Min if b.is_nan() || b < a => b,
            _ => a,
        }
    }

    /// Whether `a` lost to `b` (its gradient is 0); false for ties and NaN.
    #[inline(always)]
    fn loses<T: Float>(self, a: T, b: T) -> bool {
        match self {
            Extremum::Max => a < b,
            Extremum::Min => a > b,
        }
    }

    /// The share of g that goes to `a` when compared with `b`: PyTorch's
    /// `where(a == b, g / 2, g).masked_fill_(a loses, 0)`.
    /// Written as two selections of values (no early exit) so that the loop has no branches.
    #[inline(always)]
    fn share<T: Float>(self, g: T, a: T, b: T) -> T {
        let kept = if a == b { g / c2::<T>() } else { g };
        if self.loses(a, b) { T::ZERO } else { kept }
    }
}

#[inline(always)]
fn c2<T: Float>() -> T {
    T::ONE + T::ONE
}

impl<'t, T: Float> Var<'t, T> {
    fn extremum(self, other: Var<'t, T>, which: Extremum) -> Result<Var<'t, T>> {
        self.same_tape(other, which.name())?;
        let value = self
            .value()
            .zip_map(&other.value(), which.name(), |a, b| which.pick(a, b))?;
        Ok(self.tape.record(which.name(), value, &[self, other], || {
            ExtremumBackward(which)
        }))
    }

    /// The element-wise maximum, broadcasting; NaN if either element is NaN. ∂L/∂a = g where
    /// a > b, 0 where a < b, and g/2 where a = b (a tie splits the gradient evenly, as PyTorch);
    /// where either is NaN both get g. Each gradient is summed back to its operand's shape.
    ///
    /// PyTorch equivalent: `torch.maximum(a, b)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let a = tape.leaf(Tensor::from_vec(vec![1.0f64, 5.0, 3.0], &[3])?);
    /// let b = tape.leaf(Tensor::from_vec(vec![2.0f64, 4.0, 3.0], &[3])?);
    /// let g = a.maximum(b)?.sum()?.backward()?;
    /// assert_eq!(g.wrt(a)?.data(), &[0.0, 1.0, 0.5]);
    /// assert_eq!(g.wrt(b)?.data(), &[1.0, 0.0, 0.5]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn maximum(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.extremum(other, Extremum::Max)
    }

    /// The element-wise minimum, broadcasting; NaN if either element is NaN. ∂L/∂a = g where
    /// a < b, 0 where a > b, g/2 on a tie; where either is NaN both get g. Each gradient is summed
    /// back to its operand's shape.
    ///
    /// PyTorch equivalent: `torch.minimum(a, b)`.
    pub fn minimum(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.extremum(other, Extremum::Min)
    }
}

/// Saves which of the two; both operands are on the tape.
#[derive(Debug)]
struct ExtremumBackward(Extremum);

impl<T: Float> Backward<T> for ExtremumBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let which = self.0;
        let (a, b) = (cx.input(0), cx.input(1));
        let out = g.shape();
        // The share of g each operand gets, at the output's shape, then summed back.
        let share = |first: bool| -> Result<Tensor<T>> {
            let mut d = Tensor::overwritable(which.name(), out.clone())?;
            let (gd, dd) = (g.data(), d.data_mut());
            // One monomorphic loop per case, so that nothing is decided per element.
            match (which, first) {
                (Extremum::Max, true) => {
                    zip_broadcast3(out, gd, a, b, dd, |g, a, b| Extremum::Max.share(g, a, b))
                }
                (Extremum::Max, false) => {
                    zip_broadcast3(out, gd, a, b, dd, |g, a, b| Extremum::Max.share(g, b, a))
                }
                (Extremum::Min, true) => {
                    zip_broadcast3(out, gd, a, b, dd, |g, a, b| Extremum::Min.share(g, a, b))
                }
                (Extremum::Min, false) => {
                    zip_broadcast3(out, gd, a, b, dd, |g, a, b| Extremum::Min.share(g, b, a))
                }
            }
            d.into_sum_to(if first { a.shape() } else { b.shape() })
        };
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || share(true))?,
            grad_if(cx.needs_grad(1), || share(false))?,
        ])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let which = self.0;
        let (a, b) = (cx.input(0), cx.input(1));
        let (av, bv) = (a.value(), b.value());
        let tie = a.eq(b)?;
        let half = g.div_scalar(c2())?;
        // where(tie, g/2, g) with the losing positions set to 0; the masks are constants.
        let share = |first: bool| -> Result<Var<'t, T>> {
            let lost = av.zip_map(&bv, which.name(), |x, y| {
                truth(if first {
                    which.loses(x, y)
                } else {
                    which.loses(y, x)
                })
            })?;
            let lost = cx.tape().constant(lost);
            let target = if first { a.shape() } else { b.shape() };
            tie.where_(half, g)?
                .masked_fill(lost, T::ZERO)?
                .sum_to(&target)
        };
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || share(true))?,
            grad_if(cx.needs_grad(1), || share(false))?,
        ])
    }
}
