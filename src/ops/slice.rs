//! Taking part of a tensor: `narrow`, `slice` (with a step) and `select`.
//!
//! Each result is a strided view of the input — a start offset and a stride per axis — copied out.
//! Every element of the view comes from exactly one input element, so the gradient is g written
//! back into the same view of a zero tensor:
//!
//! ∂L/∂x[view(i)] = g[i], and 0 for elements outside the view.
//!
//! On the graph path that "write back" is itself an op (`embed`), and the backward of `embed` is
//! taking the view again: the two are each other's adjoint, like `sum_to` and `broadcast_to`.

use smallvec::{SmallVec, smallvec};

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tape::Var;
use crate::tensor::Tensor;

/// A strided view: where it starts in the flat data, and the element stride of each of its axes.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub(crate) offset: usize,
    pub(crate) strides: SmallVec<[usize; 4]>,
}

impl<'t, T: Float> Var<'t, T> {
    /// The `len` elements of axis `axis` starting at `start`. ∂/∂x = g placed back at those
    /// positions, 0 elsewhere.
    ///
    /// PyTorch equivalent: `x.narrow(axis, start, len)`.
    pub fn narrow(self, axis: isize, start: usize, len: usize) -> Result<Var<'t, T>> {
        let end = start
            .checked_add(len)
            .ok_or_else(|| Error::InvalidArgument {
                op: "narrow",
                reason: format!("start {start} + length {len} overflows"),
            })?;
        self.slice_named("narrow", axis, start, end, 1)
    }

    /// Every `step`-th element of axis `axis` from `start` up to (not including) `end`.
    /// ∂/∂x = g placed back at those positions, 0 elsewhere.
    ///
    /// Unlike Python slicing, a range past the end of the axis is an error rather than clamped,
    /// as for Rust slices.
    ///
    /// PyTorch equivalent: `x[..., start:end:step]` (on axis `axis`).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec((0..10).map(f64::from).collect(), &[10])?);
    /// let y = x.slice(0, 1, 8, 3)?; // elements 1, 4, 7
    /// assert_eq!(y.value().data(), &[1.0, 4.0, 7.0]);
    /// let g = y.sum()?.backward()?;
    /// assert_eq!(g.wrt(x)?.data(), &[0., 1., 0., 0., 1., 0., 0., 1., 0., 0.]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn slice(self, axis: isize, start: usize, end: usize, step: usize) -> Result<Var<'t, T>> {
        self.slice_named("slice", axis, start, end, step)
    }

    /// The sub-tensor at position `index` of axis `axis`, without that axis.
    /// ∂/∂x = g placed back at that position, 0 elsewhere.
    ///
    /// PyTorch equivalent: `x.select(axis, index)`, i.e. `x[..., index]`.
    pub fn select(self, axis: isize, index: usize) -> Result<Var<'t, T>> {
        let shape = self.shape();
        let a = shape.axis("select", axis)?;
        if index >= shape.dims()[a] {
            return Err(Error::IndexOutOfRange {
                op: "select",
                position: 0,
                index: i64::try_from(index).unwrap_or(i64::MAX),
                len: shape.dims()[a],
            });
        }
        let mut dims = shape.dims().to_vec();
        dims.remove(a);
        let mut strides = shape.strides();
        let offset = index * strides[a];
        strides.remove(a);
        self.take_view("select", Shape::new(&dims)?, View { offset, strides })
    }

    fn slice_named(
        self,
        op: &'static str,
        axis: isize,
        start: usize,
        end: usize,
        step: usize,
    ) -> Result<Var<'t, T>> {
        let shape = self.shape();
        let a = shape.axis(op, axis)?;
        let dim = shape.dims()[a];
        if step == 0 || start > end || end > dim {
            return Err(Error::InvalidArgument {
                op,
                reason: format!(
                    "range {start}..{end} step {step} does not fit axis {axis} of size {dim} in {shape}"
                ),
            });
        }
        let mut dims = shape.dims().to_vec();
        dims[a] = (end - start).div_ceil(step);
        let mut strides = shape.strides();
        let offset = if dims[a] == 0 { 0 } else { start * strides[a] };
        strides[a] *= step;
        self.take_view(op, Shape::new(&dims)?, View { offset, strides })
    }

    /// Records the copy of a view of this value (checked by the caller to lie inside it).
    pub(crate) fn take_view(
        self,
        op: &'static str,
        shape: Shape,
        view: View,
    ) -> Result<Var<'t, T>> {
        let value = self
            .value()
            .view_copy(op, view.offset, shape, &view.strides)?;
        Ok(self
            .tape
            .record(op, value, &[self], || ViewBackward { view }))
    }

    /// The adjoint of [`Var::take_view`]: a zero tensor of `shape` with this value added into the
    /// view. Used by the graph path of the slicing ops.
    pub(crate) fn embed(self, shape: Shape, view: View) -> Result<Var<'t, T>> {
        let mut value = Tensor::full_shape(shape, T::ZERO)?;
        value.view_add(view.offset, &view.strides, &self.value());
        Ok(self
            .tape
            .record("embed", value, &[self], || EmbedBackward { view }))
    }
}

/// Backward of a view: g embedded back. Saves the view (offset and strides).
#[derive(Debug)]
struct ViewBackward {
    view: View,
}

impl<T: Float> Backward<T> for ViewBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let mut dx = cx.input(0).zeros_like()?;
        dx.view_add(self.view.offset, &self.view.strides, g);
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(
            g.embed(cx.input(0).shape(), self.view.clone())?
        )])
    }

    fn saved_bytes(&self) -> usize {
        (1 + self.view.strides.len()) * std::mem::size_of::<usize>()
    }

    fn describe_saved(&self) -> String {
        format!(
            "view at offset {}, strides {:?}",
            self.view.offset, self.view.strides
        )
    }
}

/// Backward of an embedding into zeros: the view taken again.
#[derive(Debug)]
struct EmbedBackward {
    view: View,
}

impl<T: Float> Backward<T> for EmbedBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let shape = cx.input(0).shape().clone();
        Ok(smallvec![Some(g.view_copy(
            "embed",
            self.view.offset,
            shape,
            &self.view.strides
        )?)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(g.take_view(
            "embed",
            cx.input(0).shape(),
            self.view.clone()
        )?)])
    }
}
