//! Ops that move elements without changing them: `transpose`, `t`, `reshape`.
//! Their backward rules move the gradient back the same way.

use smallvec::smallvec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::tape::Var;
use crate::tensor::Tensor;

impl<'t, T: Float> Var<'t, T> {
    /// Swaps two axes. ∂/∂x = g with the same two axes swapped back.
    ///
    /// PyTorch equivalent: `x.transpose(a, b)`.
    pub fn transpose(self, axis0: isize, axis1: isize) -> Result<Var<'t, T>> {
        let value = self.value().transpose(axis0, axis1)?;
        Ok(self
            .tape
            .record("transpose", value, &[self], || TransposeBackward {
                axis0,
                axis1,
            }))
    }

    /// Transpose of a 2-D matrix. ∂/∂x = gᵀ.
    ///
    /// PyTorch equivalent: `x.t()`.
    pub fn t(self) -> Result<Var<'t, T>> {
        let shape = self.shape();
        if shape.rank() != 2 {
            return Err(Error::BadRank {
                op: "t",
                expected: "a 2-D matrix",
                shape,
            });
        }
        self.transpose(0, 1)
    }

    /// The same elements in row-major order under new dimensions. ∂/∂x = g reshaped back.
    ///
    /// PyTorch equivalent: `x.reshape(dims)`.
    pub fn reshape(self, dims: &[usize]) -> Result<Var<'t, T>> {
        let x = self.value();
        if x.dims() == dims {
            return Ok(self);
        }
        let value = x.reshape(dims)?;
        Ok(self
            .tape
            .record("reshape", value, &[self], || ReshapeBackward))
    }
}

/// Saves the two axes.
#[derive(Debug)]
struct TransposeBackward {
    axis0: isize,
    axis1: isize,
}

impl<T: Float> Backward<T> for TransposeBackward {
    fn backward(&self, _cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(g.transpose(self.axis0, self.axis1)?)])
    }

    fn backward_graph<'t>(&self, _cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(g.transpose(self.axis0, self.axis1)?)])
    }

    fn saved_bytes(&self) -> usize {
        2 * std::mem::size_of::<isize>()
    }

    fn describe_saved(&self) -> String {
        format!("axes {} and {}", self.axis0, self.axis1)
    }
}

/// Saves nothing: the input's dimensions are on the tape.
#[derive(Debug)]
struct ReshapeBackward;

impl<T: Float> Backward<T> for ReshapeBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(g.reshape(cx.input(0).dims())?)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(g.reshape(cx.input(0).shape().dims())?)])
    }
}
