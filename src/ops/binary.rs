//! Element-wise `add`, `sub`, `mul`, `div` with broadcasting.
//!
//! When an operand was broadcast (a bias `[H]` added to every row of `[N, H]`), each of its elements
//! influenced several outputs, so its gradient is the sum of theirs: the gradient is reduced back to
//! the operand's shape with [`Tensor::sum_to`] (and `Var::sum_to` on the graph path), the one place
//! where that reduction lives.

use smallvec::smallvec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars, grad_if};
use crate::element::Float;
use crate::error::Result;
use crate::tape::Var;
use crate::tensor::Tensor;

/// Records `f(lhs, rhs)` element-wise with broadcasting.
fn binary<'t, T: Float, B: Backward<T>>(
    name: &'static str,
    lhs: Var<'t, T>,
    rhs: Var<'t, T>,
    f: impl Fn(T, T) -> T + Sync,
    rule: B,
) -> Result<Var<'t, T>> {
    lhs.same_tape(rhs, name)?;
    let value = lhs.value().zip_map(&rhs.value(), name, f)?;
    Ok(lhs.tape.record(name, value, &[lhs, rhs], || rule))
}

// The ops are methods returning `Result` (shapes can mismatch), so they cannot be the `std::ops`
// traits, whose operators cannot fail.
#[allow(clippy::should_implement_trait)]
impl<'t, T: Float> Var<'t, T> {
    /// `self + rhs`, broadcasting. ∂/∂a = g, ∂/∂b = g, each summed back to its operand's shape.
    ///
    /// PyTorch equivalent: `a + b`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.constant(Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2])?);
    /// let b = tape.leaf(Tensor::from_vec(vec![10.0, 20.0], &[2])?);
    /// let y = x.add(b)?;
    /// assert_eq!(y.value().data(), &[11.0, 22.0, 13.0, 24.0]);
    /// let grads = y.sum()?.backward()?;
    /// assert_eq!(grads.wrt(b)?.data(), &[2.0, 2.0]); // each bias element fed two rows
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn add(self, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
        binary("add", self, rhs, |a, b| a + b, AddBackward)
    }

    /// `self − rhs`, broadcasting. ∂/∂a = g, ∂/∂b = −g, summed back to each operand's shape.
    ///
    /// PyTorch equivalent: `a - b`.
    pub fn sub(self, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
        binary("sub", self, rhs, |a, b| a - b, SubBackward)
    }

    /// `self ⊙ rhs`, broadcasting. ∂/∂a = g ⊙ b, ∂/∂b = g ⊙ a, summed back to each operand's shape.
    ///
    /// PyTorch equivalent: `a * b`.
    pub fn mul(self, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
        binary("mul", self, rhs, |a, b| a * b, MulBackward)
    }

    /// `self / rhs`, broadcasting. ∂/∂a = g / b, ∂/∂b = −g ⊙ a / b², summed back to each
    /// operand's shape.
    ///
    /// PyTorch equivalent: `a / b`.
    pub fn div(self, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
        binary("div", self, rhs, |a, b| a / b, DivBackward)
    }
}

/// Saves nothing: the operands' shapes are on the tape.
#[derive(Debug)]
struct AddBackward;

impl<T: Float> Backward<T> for AddBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g.sum_to(cx.input(0).shape()))?,
            grad_if(cx.needs_grad(1), || g.sum_to(cx.input(1).shape()))?,
        ])
    }

    /// g itself goes on to the first operand that needs it (a residual connection's gradient is
    /// not copied); the other gets its own reduction or copy.
    fn backward_owned(&self, cx: &BackwardCx<'_, T>, g: Tensor<T>) -> Result<InputGrads<T>> {
        let second = grad_if(cx.needs_grad(1) && cx.needs_grad(0), || {
            g.sum_to(cx.input(1).shape())
        })?;
        Ok(if cx.needs_grad(0) {
            smallvec![Some(g.into_sum_to(cx.input(0).shape())?), second]
        } else {
            let second = grad_if(cx.needs_grad(1), || g.into_sum_to(cx.input(1).shape()))?;
            smallvec![None, second]
        })
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g.sum_to(&cx.input(0).shape()))?,
            grad_if(cx.needs_grad(1), || g.sum_to(&cx.input(1).shape()))?,
        ])
    }
}

#[derive(Debug)]
struct SubBackward;

impl<T: Float> Backward<T> for SubBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g.sum_to(cx.input(0).shape()))?,
            grad_if(cx.needs_grad(1), || g
                .map(|x| -x)?
                .into_sum_to(cx.input(1).shape()))?,
        ])
    }

    /// g goes on to the first operand without a copy; the second gets −g.
    fn backward_owned(&self, cx: &BackwardCx<'_, T>, g: Tensor<T>) -> Result<InputGrads<T>> {
        let second = grad_if(cx.needs_grad(1), || {
            g.map(|x| -x)?.into_sum_to(cx.input(1).shape())
        })?;
        let first = grad_if(cx.needs_grad(0), || g.into_sum_to(cx.input(0).shape()))?;
        Ok(smallvec![first, second])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g.sum_to(&cx.input(0).shape()))?,
            grad_if(cx.needs_grad(1), || g.neg()?.sum_to(&cx.input(1).shape()))?,
        ])
    }
}

#[derive(Debug)]
struct MulBackward;

impl<T: Float> Backward<T> for MulBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g
                .zip_map(b, "mul", |g, b| g * b)?
                .into_sum_to(a.shape()))?,
            grad_if(cx.needs_grad(1), || g
                .zip_map(a, "mul", |g, a| g * a)?
                .into_sum_to(b.shape()))?,
        ])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g.mul(b)?.sum_to(&a.shape()))?,
            grad_if(cx.needs_grad(1), || g.mul(a)?.sum_to(&b.shape()))?,
        ])
    }
}

#[derive(Debug)]
struct DivBackward;

impl<T: Float> Backward<T> for DivBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g
                .zip_map(b, "div", |g, b| g / b)?
                .into_sum_to(a.shape()))?,
            grad_if(cx.needs_grad(1), || {
                // −g·a/b² = −g·(a/b)/b, with a/b the op's own output.
                let g_out = g.zip_map(cx.output(), "div", |g, y| -g * y)?;
                g_out
                    .zip_map(b, "div", |gy, b| gy / b)?
                    .into_sum_to(b.shape())
            })?,
        ])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g.div(b)?.sum_to(&a.shape()))?,
            grad_if(cx.needs_grad(1), || {
                g.mul(a)?.div(b.mul(b)?)?.neg()?.sum_to(&b.shape())
            })?,
        ])
    }
}
