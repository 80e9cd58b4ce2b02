//! Reductions and their mirror image, broadcasting: `sum`, `mean`, `sum_axis`, `mean_axis`,
//! `sum_to`, `broadcast_to`.
//!
//! A sum hands the same gradient to every element it added up: the backward of a reduction is a
//! broadcast, and the backward of a broadcast is a sum. So `sum_to` and `broadcast_to` are each
//! other's backward rule, and the reductions are written in terms of them.

use smallvec::{SmallVec, smallvec};

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::Result;
use crate::shape::Shape;
use crate::tape::Var;
use crate::tensor::Tensor;

impl<'t, T: Float> Var<'t, T> {
    /// Sum of all elements, as a scalar. ∂/∂x = g broadcast to x's shape.
    ///
    /// PyTorch equivalent: `x.sum()`.
    pub fn sum(self) -> Result<Var<'t, T>> {
        let value = Tensor::scalar(self.value().sum_all());
        Ok(self
            .tape
            .record("sum", value, &[self], || BroadcastBackward))
    }

    /// Mean of all elements, Σx / n (NaN for an empty tensor, as in PyTorch). ∂/∂x = g/n
    /// broadcast.
    ///
    /// PyTorch equivalent: `x.mean()`.
    pub fn mean(self) -> Result<Var<'t, T>> {
        let n = self.value().numel();
        self.sum()?.div_scalar(T::from_f64(n as f64))
    }

    /// Sum along `axis` (negative counts from the end), keeping it as size 1 if `keepdim`.
    /// ∂/∂x = g (with the axis restored) broadcast along the axis.
    ///
    /// PyTorch equivalent: `x.sum(dim=axis, keepdim=keepdim)`.
    pub fn sum_axis(self, axis: isize, keepdim: bool) -> Result<Var<'t, T>> {
        let x = self.value();
        let value = x.sum_axis(axis, keepdim)?;
        let axis = x.shape().axis("sum_axis", axis)?;
        let mut kept: SmallVec<[usize; 4]> = SmallVec::from_slice(x.dims());
        kept[axis] = 1;
        let kept = Shape::checked(kept)?;
        Ok(self
            .tape
            .record("sum_axis", value, &[self], || SumAxisBackward { kept }))
    }

    /// Mean along `axis`. ∂/∂x = g/len broadcast along the axis.
    ///
    /// PyTorch equivalent: `x.mean(dim=axis, keepdim=keepdim)`.
    pub fn mean_axis(self, axis: isize, keepdim: bool) -> Result<Var<'t, T>> {
        let shape = self.shape();
        let len = shape.dims()[shape.axis("mean_axis", axis)?];
        self.sum_axis(axis, keepdim)?
            .div_scalar(T::from_f64(len as f64))
    }

    /// Sums along broadcast axes down to `target` (the inverse of broadcasting); returns `self`
    /// unchanged if the shape is already `target`. ∂/∂x = g broadcast back to x's shape.
    ///
    /// PyTorch equivalent: `x.sum_to_size(target)`.
    pub fn sum_to(self, target: &Shape) -> Result<Var<'t, T>> {
        let x = self.value();
        if x.shape() == target {
            return Ok(self);
        }
        let value = x.sum_to(target)?;
        Ok(self
            .tape
            .record("sum_to", value, &[self], || BroadcastBackward))
    }

    /// Repeats along broadcast axes up to `target`; returns `self` if already that shape.
    /// ∂/∂x = g summed back to x's shape.
    ///
    /// PyTorch equivalent: `x.expand(target)` (materialised).
    pub fn broadcast_to(self, target: &Shape) -> Result<Var<'t, T>> {
        let x = self.value();
        if x.shape() == target {
            return Ok(self);
        }
        let value = x.broadcast_to(target)?;
        Ok(self
            .tape
            .record("broadcast_to", value, &[self], || SumToBackward))
    }
}

/// Backward of a reduction to a broadcastable shape (`sum`, `sum_to`): broadcast g back up to the
/// input's shape. Saves nothing; the input's shape is on the tape.
#[derive(Debug)]
struct BroadcastBackward;

impl<T: Float> Backward<T> for BroadcastBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(g.broadcast_to(cx.input(0).shape())?)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(g.broadcast_to(&cx.input(0).shape())?)])
    }
}

/// Backward of `broadcast_to`: sum g back down to the input's shape.
#[derive(Debug)]
struct SumToBackward;

impl<T: Float> Backward<T> for SumToBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(g.sum_to(cx.input(0).shape())?)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(g.sum_to(&cx.input(0).shape())?)])
    }
}

/// Backward of `sum_axis`: view g with the summed axis as size 1, then broadcast it along that axis.
/// Saves the input's dimensions with that axis set to 1.
#[derive(Debug)]
struct SumAxisBackward {
    kept: Shape,
}

impl<T: Float> Backward<T> for SumAxisBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(
            g.reshape(self.kept.dims())?
                .broadcast_to(cx.input(0).shape())?
        )])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(
            g.reshape(self.kept.dims())?
                .broadcast_to(&cx.input(0).shape())?
        )])
    }

    fn saved_bytes(&self) -> usize {
        self.kept.rank() * std::mem::size_of::<usize>()
    }
}
