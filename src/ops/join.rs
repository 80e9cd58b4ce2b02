//! Joining tensors and splitting them: `cat`, `stack`, `split`, `chunk`.
//!
//! `cat` places each input in its own block of the output along one axis, so each input's
//! gradient is its block of g (a `narrow`). `stack` is `unsqueeze` then `cat`; `split` and `chunk`
//! are several `narrow`s, whose gradients the tape adds back together.

use smallvec::SmallVec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

impl<T: Float> Tape<T> {
    /// Joins `parts` along `axis` (all other axes equal). ∂/∂partᵢ = the block of g where partᵢ
    /// landed.
    ///
    /// PyTorch equivalent: `torch.cat(parts, dim=axis)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let a = tape.leaf(Tensor::from_vec(vec![1.0f64, 2.0], &[1, 2])?);
    /// let b = tape.leaf(Tensor::from_vec(vec![3.0, 4.0, 5.0, 6.0], &[2, 2])?);
    /// let c = tape.cat(&[a, b], 0)?;
    /// assert_eq!(c.value().dims(), &[3, 2]);
    /// assert_eq!(c.value().data(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn cat<'t>(&'t self, parts: &[Var<'t, T>], axis: isize) -> Result<Var<'t, T>> {
        let Some(first) = parts.first() else {
            return Err(Error::InvalidArgument {
                op: "cat",
                reason: "nothing to join (an empty list of tensors)".into(),
            });
        };
        for p in parts {
            self.check_owns(*p, "cat")?;
        }
        let first_shape = first.shape();
        let a = first_shape.axis("cat", axis)?;
        let mut sizes: SmallVec<[usize; 4]> = SmallVec::new();
        for p in parts {
            let s = p.shape();
            let fits = s.rank() == first_shape.rank()
                && s.dims()
                    .iter()
                    .zip(first_shape.dims())
                    .enumerate()
                    .all(|(k, (x, y))| k == a || x == y);
            if !fits {
                return Err(Error::ShapeMismatch {
                    op: "cat",
                    lhs: first_shape,
                    rhs: s,
                });
            }
            sizes.push(s.dims()[a]);
        }
        let total = sizes
            .iter()
            .try_fold(0usize, |t, &s| t.checked_add(s))
            .ok_or_else(|| Error::ShapeOverflow {
                dims: sizes.to_vec(),
            })?;
        let mut dims = first_shape.dims().to_vec();
        dims[a] = total;
        let out_shape = Shape::new(&dims)?;
        let mut value = Tensor::full_shape(out_shape.clone(), T::ZERO)?;
        let strides = out_shape.strides();
        let mut start = 0;
        for (p, &size) in parts.iter().zip(&sizes) {
            if size > 0 {
                value.view_add(start * strides[a], &strides, &p.value());
            }
            start += size;
        }
        Ok(self.record("cat", value, parts, || CatBackward { axis: a, sizes }))
    }

    /// Joins `parts` (all of one shape) along a new axis `axis`. ∂/∂partᵢ = g at index i of that
    /// axis.
    ///
    /// PyTorch equivalent: `torch.stack(parts, dim=axis)`.
    pub fn stack<'t>(&'t self, parts: &[Var<'t, T>], axis: isize) -> Result<Var<'t, T>> {
        let expanded = parts
            .iter()
            .map(|p| p.unsqueeze(axis))
            .collect::<Result<Vec<_>>>()?;
        if expanded.is_empty() {
            return Err(Error::InvalidArgument {
                op: "stack",
                reason: "nothing to join (an empty list of tensors)".into(),
            });
        }
        // The new axis in the unsqueezed parts, counted from the front.
        let rank = expanded[0].shape().rank() as isize;
        self.cat(&expanded, if axis < 0 { axis + rank } else { axis })
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// Splits axis `axis` into consecutive pieces of the given sizes (which must add up to its
    /// length). The pieces' gradients flow back into their blocks.
    ///
    /// PyTorch equivalent: `torch.split(x, sizes, dim=axis)` with a list of sizes.
    pub fn split(self, axis: isize, sizes: &[usize]) -> Result<Vec<Var<'t, T>>> {
        let shape = self.shape();
        let a = shape.axis("split", axis)?;
        let total: Option<usize> = sizes.iter().try_fold(0usize, |t, &s| t.checked_add(s));
        if total != Some(shape.dims()[a]) {
            return Err(Error::InvalidArgument {
                op: "split",
                reason: format!(
                    "sizes {sizes:?} do not add up to {}, the length of axis {axis} of {shape}",
                    shape.dims()[a]
                ),
            });
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&len| {
                let piece = self.narrow(axis, start, len);
                start += len;
                piece
            })
            .collect()
    }

    /// Splits axis `axis` into `chunks` pieces of ⌈len/chunks⌉ elements (the last may be smaller,
    /// and there may be fewer pieces), as PyTorch does.
    ///
    /// PyTorch equivalent: `torch.chunk(x, chunks, dim=axis)`.
    pub fn chunk(self, chunks: usize, axis: isize) -> Result<Vec<Var<'t, T>>> {
        let shape = self.shape();
        let a = shape.axis("chunk", axis)?;
        if chunks == 0 {
            return Err(Error::InvalidArgument {
                op: "chunk",
                reason: "the number of chunks must be at least 1".into(),
            });
        }
        let len = shape.dims()[a];
        let each = len.div_ceil(chunks).max(1);
        let mut sizes = vec![each; len / each];
        if !len.is_multiple_of(each) {
            sizes.push(len % each);
        }
        if len == 0 {
            sizes = vec![0];
        }
        self.split(axis, &sizes)
    }
}

/// Saves the axis and each part's length along it.
#[derive(Debug)]
struct CatBackward {
    axis: usize,
    sizes: SmallVec<[usize; 4]>,
}

impl<T: Float> Backward<T> for CatBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let strides = g.shape().strides();
        let mut start = 0;
        let mut grads = InputGrads::new();
        for (k, &size) in self.sizes.iter().enumerate() {
            grads.push(if cx.needs_grad(k) {
                let shape = cx.input(k).shape().clone();
                Some(g.view_copy("cat", start * strides[self.axis], shape, &strides)?)
            } else {
                None
            });
            start += size;
        }
        Ok(grads)
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let mut start = 0;
        let mut grads = InputVars::new();
        for (k, &size) in self.sizes.iter().enumerate() {
            grads.push(if cx.needs_grad(k) {
                Some(g.narrow(self.axis as isize, start, size)?)
            } else {
                None
            });
            start += size;
        }
        Ok(grads)
    }

    fn saved_bytes(&self) -> usize {
        (1 + self.sizes.len()) * std::mem::size_of::<usize>()
    }

    fn describe_saved(&self) -> String {
        format!("axis {}, sizes {:?}", self.axis, self.sizes)
    }
}
