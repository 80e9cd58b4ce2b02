//! Matrix product of 2-D tensors: Y = A·B with A [m, k], B [k, n], Y [m, n].
//!
//! Yᵢⱼ = Σₖ Aᵢₖ Bₖⱼ, so ∂Yᵢⱼ/∂Aᵢₖ = Bₖⱼ and ∂Yᵢⱼ/∂Bₖⱼ = Aᵢₖ. Summing over the outputs each entry
//! touches:
//!
//! ∂L/∂Aᵢₖ = Σⱼ gᵢⱼ Bₖⱼ = (g·Bᵀ)ᵢₖ,   ∂L/∂Bₖⱼ = Σᵢ Aᵢₖ gᵢⱼ = (Aᵀ·g)ₖⱼ.
//!
//! The transposes are never materialised: the kernel reads A and B with swapped strides. Nothing is
//! saved beyond the input ids, since A and B are on the tape.

use smallvec::smallvec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars, grad_if};
use crate::element::Float;
use crate::error::Result;
use crate::tape::Var;
use crate::tensor::Tensor;

impl<'t, T: Float> Var<'t, T> {
    /// Matrix product `self · rhs` of 2-D tensors. ∂/∂A = g·Bᵀ, ∂/∂B = Aᵀ·g.
    ///
    /// PyTorch equivalent: `a @ b` (2-D).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::<f32>::new();
    /// let a = tape.constant(Tensor::zeros(&[128, 20])?);
    /// let b = tape.constant(Tensor::zeros(&[64, 5])?);
    /// let err = a.matmul(b).unwrap_err();
    /// assert_eq!(err.to_string(), "matmul: incompatible shapes [128, 20] and [64, 5]");
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn matmul(self, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
        self.same_tape(rhs, "matmul")?;
        let value = self.value().matmul(&rhs.value())?;
        Ok(self
            .tape
            .record("matmul", value, &[self, rhs], || MatmulBackward))
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// `self · rhsᵀ` for `self` [m, k] and `rhs` [n, k], reading `rhs` transposed in place: a linear
    /// layer with PyTorch's [out, in] weight layout, without copying the weight.
    /// With Y = A·Bᵀ: ∂/∂A = g·B, ∂/∂B = gᵀ·A.
    ///
    /// PyTorch equivalent: `a @ b.T` (what `F.linear` computes).
    pub fn matmul_t(self, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
        self.same_tape(rhs, "matmul_t")?;
        let value = self.value().matmul_t(&rhs.value())?;
        Ok(self
            .tape
            .record("matmul_t", value, &[self, rhs], || MatmulTBackward))
    }
}

#[derive(Debug)]
struct MatmulTBackward;

impl<T: Float> Backward<T> for MatmulTBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g.matmul(b))?,
            grad_if(cx.needs_grad(1), || g.t_matmul(a))?,
        ])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g.matmul(b))?,
            grad_if(cx.needs_grad(1), || g.t()?.matmul(a))?,
        ])
    }
}

#[derive(Debug)]
struct MatmulBackward;

impl<T: Float> Backward<T> for MatmulBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g.matmul_t(b))?,
            grad_if(cx.needs_grad(1), || a.t_matmul(g))?,
        ])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g.matmul(b.t()?))?,
            grad_if(cx.needs_grad(1), || a.t()?.matmul(g))?,
        ])
    }
}
