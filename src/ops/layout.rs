//! Ops that move elements without changing them: `transpose`, `t`, `permute`, `reshape` (and
//! `reshape_infer`, `flatten`, `squeeze`, `unsqueeze`, which are reshapes), `expand`.
//! Their backward rules move the gradient back the same way: the inverse permutation, the
//! original shape, or (for `expand`) a sum over the repeated axes.

use smallvec::smallvec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::shape::Shape;
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

impl<'t, T: Float> Var<'t, T> {
    /// Reorders the axes: axis k of the result is axis `axes[k]` of the input. ∂/∂x = g permuted
    /// back by the inverse permutation.
    ///
    /// PyTorch equivalent: `x.permute(axes)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::<f64>::zeros(&[2, 3, 4])?);
    /// assert_eq!(x.permute(&[2, 0, 1])?.shape().dims(), &[4, 2, 3]);
    /// assert!(x.permute(&[0, 0, 1]).is_err());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn permute(self, axes: &[usize]) -> Result<Var<'t, T>> {
        let value = self.value().permute(axes)?;
        let mut inverse = vec![0; axes.len()];
        for (k, &a) in axes.iter().enumerate() {
            inverse[a] = k;
        }
        Ok(self
            .tape
            .record("permute", value, &[self], || PermuteBackward { inverse }))
    }

    /// Reshape with at most one dimension inferred from the element count: `None` stands where
    /// PyTorch writes `-1`. ∂/∂x = g reshaped back.
    ///
    /// PyTorch equivalent: `x.reshape(a, -1)` is `x.reshape_infer(&[Some(a), None])`.
    pub fn reshape_infer(self, dims: &[Option<usize>]) -> Result<Var<'t, T>> {
        let shape = self.shape();
        let known = dims
            .iter()
            .flatten()
            .try_fold(1usize, |a, &d| a.checked_mul(d));
        let inferred: Vec<usize> = match (dims.iter().filter(|d| d.is_none()).count(), known) {
            (0, _) => dims.iter().flatten().copied().collect(),
            (1, Some(known)) if known > 0 && shape.numel().is_multiple_of(known) => dims
                .iter()
                .map(|d| d.unwrap_or(shape.numel() / known))
                .collect(),
            _ => {
                return Err(Error::InvalidArgument {
                    op: "reshape",
                    reason: format!(
                        "cannot infer one dimension of {dims:?} from {} elements (shape {shape})",
                        shape.numel()
                    ),
                });
            }
        };
        self.reshape(&inferred)
    }

    /// Flattens axes `start..=end` (negative counts from the end) into one. ∂/∂x = g reshaped
    /// back.
    ///
    /// PyTorch equivalent: `x.flatten(start, end)` (`nn.Flatten` is `flatten(1, -1)`).
    pub fn flatten(self, start: isize, end: isize) -> Result<Var<'t, T>> {
        let shape = self.shape();
        if shape.rank() == 0 {
            return self.reshape(&[1]);
        }
        let (a, b) = (shape.axis("flatten", start)?, shape.axis("flatten", end)?);
        if a > b {
            return Err(Error::InvalidArgument {
                op: "flatten",
                reason: format!("start axis {start} comes after end axis {end} in {shape}"),
            });
        }
        let dims = shape.dims();
        let merged = dims[a..=b]
            .iter()
            .try_fold(1usize, |p, &d| p.checked_mul(d))
            .ok_or_else(|| Error::ShapeOverflow {
                dims: dims.to_vec(),
            })?;
        let mut out: Vec<usize> = dims[..a].to_vec();
        out.push(merged);
        out.extend_from_slice(&dims[b + 1..]);
        self.reshape(&out)
    }

    /// Removes axis `axis`, which must have size 1. ∂/∂x = g with the axis restored.
    ///
    /// PyTorch equivalent: `x.squeeze(axis)` (which, unlike this, silently does nothing for a size
    /// other than 1; here that is an error, since it is almost always a bug).
    pub fn squeeze(self, axis: isize) -> Result<Var<'t, T>> {
        let shape = self.shape();
        let a = shape.axis("squeeze", axis)?;
        if shape.dims()[a] != 1 {
            return Err(Error::InvalidArgument {
                op: "squeeze",
                reason: format!("axis {axis} of {shape} has size {}, not 1", shape.dims()[a]),
            });
        }
        let mut dims = shape.dims().to_vec();
        dims.remove(a);
        self.reshape(&dims)
    }

    /// Inserts an axis of size 1 at position `axis` (in `-(rank+1)..=rank`). ∂/∂x = g without it.
    ///
    /// PyTorch equivalent: `x.unsqueeze(axis)`.
    pub fn unsqueeze(self, axis: isize) -> Result<Var<'t, T>> {
        let shape = self.shape();
        let rank = shape.rank() as isize;
        let a = if axis < 0 { axis + rank + 1 } else { axis };
        if !(0..=rank).contains(&a) {
            return Err(Error::AxisOutOfRange {
                op: "unsqueeze",
                axis,
                shape,
            });
        }
        let mut dims = shape.dims().to_vec();
        dims.insert(a as usize, 1);
        self.reshape(&dims)
    }

    /// Repeats along axes of size 1 (and new leading axes) to `dims`, materialised: the same as
    /// [`Var::broadcast_to`]. ∂/∂x = g summed over the repeated axes.
    ///
    /// PyTorch equivalent: `x.expand(dims)` (a view there, a copy here).
    pub fn expand(self, dims: &[usize]) -> Result<Var<'t, T>> {
        self.broadcast_to(&Shape::new(dims)?)
    }
}

/// Saves the inverse permutation.
#[derive(Debug)]
struct PermuteBackward {
    inverse: Vec<usize>,
}

impl<T: Float> Backward<T> for PermuteBackward {
    fn backward(&self, _cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(g.permute(&self.inverse)?)])
    }

    fn backward_graph<'t>(&self, _cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(g.permute(&self.inverse)?)])
    }

    fn saved_bytes(&self) -> usize {
        self.inverse.len() * std::mem::size_of::<usize>()
    }

    fn describe_saved(&self) -> String {
        format!("inverse permutation {:?}", self.inverse)
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

    /// The same elements under the input's dimensions: no copy.
    fn backward_owned(&self, cx: &BackwardCx<'_, T>, g: Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(
            g.into_reshaped(cx.input(0).shape().clone())?
        )])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(g.reshape(cx.input(0).shape().dims())?)])
    }
}
