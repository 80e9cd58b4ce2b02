//! `Tensor<T>`: a plain row-major n-d array with no autograd, and the kernels the ops are built from.

use std::fmt;

use rand::Rng;
use rayon::prelude::*;
use smallvec::SmallVec;

use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels;
use crate::kernels::gemm::{MatRef, matmul_into};
use crate::kernels::pool;
use crate::shape::{Shape, for_each_broadcast};

/// A dense, row-major n-d array of `f32` or `f64`.
///
/// Tensors are plain values: arithmetic on them records nothing. To get gradients, put them on a
/// [`Tape`](crate::Tape).
///
/// ```
/// use tapegrad::Tensor;
/// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// assert_eq!(t.dims(), &[2, 3]);
/// assert_eq!(t.get(&[1, 2])?, 6.0);
/// assert_eq!(t.to_string(), "tensor([[1.0000, 2.0000, 3.0000],\n        [4.0000, 5.0000, 6.0000]])");
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(PartialEq)]
pub struct Tensor<T: Float> {
    data: Vec<T>,
    shape: Shape,
}

impl<T: Float> Clone for Tensor<T> {
    /// A copy. `Clone` cannot fail, so a copy too large for memory aborts the process; the library
    /// itself copies with [`Tensor::try_clone`], which returns [`Error::OutOfMemory`] instead.
    fn clone(&self) -> Self {
        let mut data = Vec::with_capacity(self.data.len());
        data.extend_from_slice(&self.data);
        Tensor {
            data,
            shape: self.shape.clone(),
        }
    }
}

impl<T: Float> Drop for Tensor<T> {
    /// Large buffers go back to this thread's cache for the next tensor of their size.
    fn drop(&mut self) {
        pool::recycle(std::mem::take(&mut self.data));
    }
}

/// Element-wise kernels split the work over threads above this many elements.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 18;

/// Whether an element-wise kernel over `len` elements should use more than one thread.
pub(crate) fn parallel(len: usize) -> bool {
    len >= PARALLEL_MIN_ELEMENTS && crate::threads::num_threads() > 1
}

/// Rows of work handed to one thread at a time by the parallel element-wise kernels.
pub(crate) const PARALLEL_CHUNK: usize = 1 << 14;

impl<T: Float> Tensor<T> {
    /// A tensor from row-major data and dimensions; fails if the lengths disagree.
    pub fn from_vec(data: Vec<T>, dims: &[usize]) -> Result<Self> {
        let shape = Shape::new(dims)?;
        Self::from_shape_vec(data, shape)
    }

    /// A tensor from row-major data and a [`Shape`].
    pub fn from_shape_vec(data: Vec<T>, shape: Shape) -> Result<Self> {
        if data.len() != shape.numel() {
            return Err(Error::DataLength {
                op: "Tensor::from_vec",
                expected: shape.numel(),
                got: data.len(),
                shape,
            });
        }
        Ok(Tensor { data, shape })
    }

    /// A rank-0 tensor holding one value. (Its one-element allocation is the only one in the
    /// crate that does not go through the fallible path.)
    pub fn scalar(value: T) -> Self {
        Tensor {
            data: vec![value],
            shape: Shape::scalar(),
        }
    }

    /// A tensor with every element equal to `value`.
    pub fn full(dims: &[usize], value: T) -> Result<Self> {
        let shape = Shape::new(dims)?;
        Self::full_shape(shape, value)
    }

    pub(crate) fn full_shape(shape: Shape, value: T) -> Result<Self> {
        let data = pool::try_filled("full", shape.numel(), value)?;
        Ok(Tensor { data, shape })
    }

    /// A tensor of `shape` whose elements are unspecified (left over from a recycled buffer), for
    /// kernels that write every one.
    pub(crate) fn overwritable(op: &'static str, shape: Shape) -> Result<Self> {
        Ok(Tensor {
            data: pool::try_dirty(op, shape.numel())?,
            shape,
        })
    }

    /// All zeros.
    pub fn zeros(dims: &[usize]) -> Result<Self> {
        Self::full(dims, T::ZERO)
    }

    /// All ones.
    pub fn ones(dims: &[usize]) -> Result<Self> {
        Self::full(dims, T::ONE)
    }

    /// Zeros of `self`'s shape.
    pub fn zeros_like(&self) -> Result<Self> {
        Self::full_shape(self.shape.clone(), T::ZERO)
    }

    /// Independent draws from the uniform distribution on `[low, high)`.
    pub fn uniform<R: Rng + ?Sized>(dims: &[usize], low: T, high: T, rng: &mut R) -> Result<Self> {
        let shape = Shape::new(dims)?;
        let n = shape.numel();
        let data = pool::try_collect(
            "uniform",
            n,
            (0..n).map(|_| low + (high - low) * T::standard_uniform(rng)),
        )?;
        Ok(Tensor { data, shape })
    }

    /// Independent draws from the normal distribution N(mean, std²).
    pub fn normal<R: Rng + ?Sized>(dims: &[usize], mean: T, std: T, rng: &mut R) -> Result<Self> {
        let shape = Shape::new(dims)?;
        let n = shape.numel();
        let data = pool::try_collect(
            "normal",
            n,
            (0..n).map(|_| mean + std * T::standard_normal(rng)),
        )?;
        Ok(Tensor { data, shape })
    }

    /// A copy that reports [`Error::OutOfMemory`] instead of aborting when memory runs out.
    pub fn try_clone(&self) -> Result<Self> {
        Ok(Tensor {
            data: pool::try_copy("clone", &self.data)?,
            shape: self.shape.clone(),
        })
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The elements in row-major order, mutably.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The elements, consuming the tensor.
    pub fn into_vec(mut self) -> Vec<T> {
        std::mem::take(&mut self.data)
    }

    /// The element at a multi-index.
    pub fn get(&self, index: &[usize]) -> Result<T> {
        self.offset(index).map(|i| self.data[i])
    }

    /// Sets the element at a multi-index.
    pub fn set(&mut self, index: &[usize], value: T) -> Result<()> {
        let i = self.offset(index)?;
        self.data[i] = value;
        Ok(())
    }

    fn offset(&self, index: &[usize]) -> Result<usize> {
        let dims = self.dims();
        if index.len() != dims.len() || index.iter().zip(dims).any(|(i, d)| i >= d) {
            return Err(Error::IndexOutOfBounds {
                index: index.to_vec(),
                shape: self.shape.clone(),
            });
        }
        // In bounds of a non-empty tensor: every term is below numel, so nothing overflows.
        Ok(index
            .iter()
            .zip(self.shape.strides())
            .map(|(i, s)| i * s)
            .sum())
    }

    /// The single value of a one-element tensor (a scalar, `[1]`, `[1, 1]`, …).
    pub fn item(&self) -> Result<T> {
        if self.numel() == 1 {
            Ok(self.data[0])
        } else {
            Err(Error::BadRank {
                op: "item",
                expected: "a tensor with exactly one element",
                shape: self.shape.clone(),
            })
        }
    }

    /// The same elements under new dimensions with the same element count.
    pub fn reshape(&self, dims: &[usize]) -> Result<Self> {
        let shape = Shape::new(dims)?;
        if shape.numel() != self.numel() {
            return Err(Error::Reshape {
                from: self.shape.clone(),
                to: dims.to_vec(),
            });
        }
        Ok(Tensor {
            data: pool::try_copy("reshape", &self.data)?,
            shape,
        })
    }

    /// The same tensor under new dimensions, without copying (consumes it).
    pub(crate) fn into_reshaped(mut self, shape: Shape) -> Result<Self> {
        if shape.numel() != self.numel() {
            return Err(Error::Reshape {
                from: self.shape.clone(),
                to: shape.dims().to_vec(),
            });
        }
        self.shape = shape;
        Ok(self)
    }

    /// Converts every element to another float type.
    pub fn cast<U: Float>(&self) -> Result<Tensor<U>> {
        Ok(Tensor {
            data: pool::try_collect(
                "cast",
                self.numel(),
                self.data.iter().map(|&x| U::from_f64(x.to_f64())),
            )?,
            shape: self.shape.clone(),
        })
    }

    /// Applies `f` to every element (on several threads for large tensors).
    pub fn map(&self, f: impl Fn(T) -> T + Sync) -> Result<Self> {
        if parallel(self.numel()) {
            let mut out = Self::overwritable("map", self.shape.clone())?;
            out.data
                .par_chunks_mut(PARALLEL_CHUNK)
                .zip(self.data.par_chunks(PARALLEL_CHUNK))
                .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x)));
            return Ok(out);
        }
        // Filled by `extend`, so a fresh buffer is written once (no zeroing first).
        let mut data = pool::try_empty("map", self.numel())?;
        data.extend(self.data.iter().map(|&x| f(x)));
        Ok(Tensor {
            data,
            shape: self.shape.clone(),
        })
    }

    /// Combines two tensors element by element, broadcasting them to a common shape.
    ///
    /// `op` names the operation in the error if the shapes do not broadcast.
    pub fn zip_map(
        &self,
        other: &Self,
        op: &'static str,
        f: impl Fn(T, T) -> T + Sync,
    ) -> Result<Self> {
        if self.shape == other.shape {
            if parallel(self.numel()) {
                let mut out = Self::overwritable(op, self.shape.clone())?;
                out.data
                    .par_chunks_mut(PARALLEL_CHUNK)
                    .zip(
                        self.data
                            .par_chunks(PARALLEL_CHUNK)
                            .zip(other.data.par_chunks(PARALLEL_CHUNK)),
                    )
                    .for_each(|(o, (a, b))| {
                        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                            *o = f(a, b);
                        }
                    });
                return Ok(out);
            }
            let mut data = pool::try_empty(op, self.numel())?;
            data.extend(self.data.iter().zip(&other.data).map(|(&a, &b)| f(a, b)));
            return Ok(Tensor {
                data,
                shape: self.shape.clone(),
            });
        }
        let shape = Shape::broadcast(op, &self.shape, &other.shape)?;
        let block = other.shape.trailing_block_of(&shape).filter(|&b| b > 0);
        if let (true, Some(block)) = (shape == self.shape, block) {
            // `other` repeats along leading axes (a bias): walk contiguous blocks.
            let mut data = pool::try_empty(op, shape.numel())?;
            for row in self.data.chunks(block) {
                data.extend(row.iter().zip(&other.data).map(|(&a, &b)| f(a, b)));
            }
            return Ok(Tensor { data, shape });
        }
        let mut out = Self::overwritable(op, shape.clone())?;
        let sa = self.shape.broadcast_strides(&shape);
        let sb = other.shape.broadcast_strides(&shape);
        let data = &mut out.data;
        for_each_broadcast(&shape, &sa, &sb, |o, i, j| {
            data[o] = f(self.data[i], other.data[j])
        });
        Ok(out)
    }

    /// [`Tensor::sum_to`] of a tensor no longer needed: when it already has the target shape it is
    /// returned as it is, not copied (the common case of a backward rule whose operands did not
    /// broadcast).
    pub(crate) fn into_sum_to(self, target: &Shape) -> Result<Self> {
        if &self.shape == target {
            Ok(self)
        } else {
            self.sum_to(target)
        }
    }

    /// Sums a (broadcast) tensor down to `target`, the shape it was broadcast from.
    ///
    /// This is the gradient of broadcasting, in one place: every axis along which an operand was
    /// repeated gets its gradient summed (pairwise, see [`Tensor::sum_all`]). Fails if `target`
    /// does not broadcast to `self`'s shape.
    ///
    /// ```
    /// use tapegrad::{Shape, Tensor};
    /// let g = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    /// assert_eq!(g.sum_to(&Shape::new(&[3])?)?.data(), &[5.0, 7.0, 9.0]);
    /// assert_eq!(g.sum_to(&Shape::new(&[2, 1])?)?.data(), &[6.0, 15.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn sum_to(&self, target: &Shape) -> Result<Self> {
        if &self.shape == target {
            return self.try_clone();
        }
        if !target.broadcasts_to(&self.shape) {
            return Err(Error::ShapeMismatch {
                op: "sum_to",
                lhs: self.shape.clone(),
                rhs: target.clone(),
            });
        }
        if self.numel() == 0 {
            // A sum over no elements: zeros (every product below stays within numel otherwise).
            return Self::full_shape(target.clone(), T::ZERO);
        }
        // Reduce one axis at a time, from the last reduced axis to the first, each with the
        // pairwise kernel; adjacent reduced axes are merged into one, so the bias case
        // ([N, H] → [H]) is a single pass down the rows.
        let rank = self.shape.rank();
        let offset = rank - target.rank();
        let reduced = |axis: usize| {
            self.dims()[axis] != 1 && (axis < offset || target.dims()[axis - offset] == 1)
        };
        let mut current: Option<Tensor<T>> = None;
        let mut axis = rank;
        while axis > 0 {
            axis -= 1;
            if !reduced(axis) {
                continue;
            }
            let mut first = axis;
            while first > 0 && (reduced(first - 1) || self.dims()[first - 1] == 1) {
                first -= 1;
            }
            let source = current.as_ref().unwrap_or(self);
            let dims = source.dims();
            let (outer, inner) = (
                dims[..first].iter().product::<usize>(),
                dims[axis + 1..].iter().product::<usize>(),
            );
            let len: usize = dims[first..=axis].iter().product();
            let mut kept: SmallVec<[usize; 4]> = SmallVec::from_slice(dims);
            for d in &mut kept[first..=axis] {
                *d = 1;
            }
            let shape = Shape::checked(kept)?;
            let mut out = Self::overwritable("sum_to", shape)?;
            reduce_middle(&source.data, outer, len, inner, &mut out.data)?;
            current = Some(out);
            axis = first;
        }
        match current {
            Some(t) => t.into_reshaped(target.clone()),
            // Only size-1 axes differ (e.g. [1, 3] to [3]): the same elements.
            None => self.reshape(target.dims()),
        }
    }

    /// Repeats the tensor along broadcast axes to fill `target` (PyTorch's `expand`, materialised).
    pub fn broadcast_to(&self, target: &Shape) -> Result<Self> {
        if &self.shape == target {
            return self.try_clone();
        }
        if !self.shape.broadcasts_to(target) {
            return Err(Error::ShapeMismatch {
                op: "broadcast_to",
                lhs: self.shape.clone(),
                rhs: target.clone(),
            });
        }
        if self.numel() == 1 {
            return Self::full_shape(target.clone(), self.data[0]);
        }
        let mut out = Self::overwritable("broadcast_to", target.clone())?;
        if let Some(block) = self.shape.trailing_block_of(target).filter(|&b| b > 0) {
            // Rows repeated along leading axes: copy whole blocks.
            for row in out.data.chunks_mut(block) {
                row.copy_from_slice(&self.data);
            }
            return Ok(out);
        }
        let from = self.shape.broadcast_strides(target);
        let data = &mut out.data;
        for_each_broadcast(target, &from, &from, |o, i, _| data[o] = self.data[i]);
        Ok(out)
    }

    /// Sum of all elements, by pairwise summation: the rounding error grows like log n rather
    /// than n (in f32, 2²⁵ ones sum to 33554432, not 16777216), and the result does not depend on
    /// the thread count.
    ///
    /// ```
    /// use tapegrad::Tensor;
    /// assert_eq!(Tensor::<f32>::ones(&[1 << 25])?.sum_all(), 33554432.0);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn sum_all(&self) -> T {
        kernels::sum::sum(&self.data)
    }

    /// Sum along one axis (negative counts from the end); `keepdim` keeps it as size 1.
    pub fn sum_axis(&self, axis: isize, keepdim: bool) -> Result<Self> {
        let axis = self.shape.axis("sum_axis", axis)?;
        let mut out_dims: SmallVec<[usize; 4]> = SmallVec::from_slice(self.dims());
        if keepdim {
            out_dims[axis] = 1;
        } else {
            out_dims.remove(axis);
        }
        let shape = Shape::checked(out_dims)?;
        let mut out = Self::overwritable("sum_axis", shape)?;
        let (outer, len, inner) = self.shape.around(axis);
        reduce_middle(&self.data, outer, len, inner, &mut out.data)?;
        Ok(out)
    }

    /// Swaps two axes (a copy; negative axes count from the end).
    pub fn transpose(&self, axis0: isize, axis1: isize) -> Result<Self> {
        let a = self.shape.axis("transpose", axis0)?;
        let b = self.shape.axis("transpose", axis1)?;
        let mut out_dims: SmallVec<[usize; 4]> = SmallVec::from_slice(self.dims());
        out_dims.swap(a, b);
        // Read the source with its strides permuted the same way: out[.., i, .., j, ..] = self[.., j, .., i, ..].
        let mut strides = self.shape.strides();
        strides.swap(a, b);
        self.view_copy("transpose", 0, Shape::checked(out_dims)?, &strides)
    }

    /// Reorders the axes: axis `k` of the result is axis `axes[k]` of `self` (a copy). Fails
    /// unless `axes` is a permutation of `0..rank`.
    pub fn permute(&self, axes: &[usize]) -> Result<Self> {
        let rank = self.shape.rank();
        let mut seen = [false; crate::shape::MAX_RANK];
        let is_permutation = axes.len() == rank
            && axes
                .iter()
                .all(|&a| a < rank && !std::mem::replace(&mut seen[a], true));
        if !is_permutation {
            return Err(Error::InvalidArgument {
                op: "permute",
                reason: format!(
                    "{axes:?} is not a permutation of the axes of {}",
                    self.shape
                ),
            });
        }
        let own = self.shape.strides();
        let dims: SmallVec<[usize; 4]> = axes.iter().map(|&a| self.dims()[a]).collect();
        let strides: SmallVec<[usize; 4]> = axes.iter().map(|&a| own[a]).collect();
        self.view_copy("permute", 0, Shape::checked(dims)?, &strides)
    }

    /// The strided view of `self` that starts at flat `offset` and has `shape` and element
    /// `strides`, copied into a new contiguous tensor: `out[i₀, …] = self[offset + Σ iₖ·strideₖ]`.
    /// The view must lie inside the data; every op that builds one has checked its bounds.
    pub(crate) fn view_copy(
        &self,
        op: &'static str,
        offset: usize,
        shape: Shape,
        strides: &[usize],
    ) -> Result<Self> {
        let mut out = Self::overwritable(op, shape)?;
        let src = &self.data[offset.min(self.data.len())..];
        let data = &mut out.data;
        for_each_broadcast(&out.shape, strides, strides, |o, i, _| data[o] = src[i]);
        Ok(out)
    }

    /// Adds `values` into the strided view of `self` that starts at `offset` with `strides` and
    /// `values`' shape: the backward of [`Tensor::view_copy`]. Views that overlap (a broadcast
    /// stride of 0) accumulate.
    pub(crate) fn view_add(&mut self, offset: usize, strides: &[usize], values: &Self) {
        let start = offset.min(self.data.len());
        let dst = &mut self.data[start..];
        for_each_broadcast(&values.shape, strides, strides, |o, i, _| {
            dst[i] += values.data[o]
        });
    }

    fn matrix_dims(&self, op: &'static str) -> Result<(usize, usize)> {
        match self.dims() {
            &[r, c] => Ok((r, c)),
            _ => Err(Error::BadRank {
                op,
                expected: "a 2-D matrix",
                shape: self.shape.clone(),
            }),
        }
    }

    /// Matrix product of 2-D tensors with either operand optionally read transposed (no copy).
    fn matmul_general(
        &self,
        lhs_t: bool,
        rhs: &Self,
        rhs_t: bool,
        op: &'static str,
    ) -> Result<Self> {
        let (ar, ac) = self.matrix_dims(op)?;
        let (br, bc) = rhs.matrix_dims(op)?;
        let lhs = MatRef::row_major(&self.data, ar, ac, lhs_t);
        let rhs_view = MatRef::row_major(&rhs.data, br, bc, rhs_t);
        if lhs.cols != rhs_view.rows {
            return Err(Error::ShapeMismatch {
                op,
                lhs: self.shape.clone(),
                rhs: rhs.shape.clone(),
            });
        }
        let shape = Shape::new(&[lhs.rows, rhs_view.cols])?;
        // gemm writes every element without reading the old ones (`accumulate` false).
        let mut out = Self::overwritable(op, shape)?;
        matmul_into(&mut out.data, lhs, rhs_view, false);
        Ok(out)
    }

    /// Matrix product `self · rhs` of `[m, k]` and `[k, n]`.
    ///
    /// ```
    /// use tapegrad::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let i = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0], &[2, 2])?;
    /// assert_eq!(a.matmul(&i)?, a);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn matmul(&self, rhs: &Self) -> Result<Self> {
        self.matmul_general(false, rhs, false, "matmul")
    }

    /// `selfᵀ · rhs`, reading `self` transposed in place (no copy).
    pub fn t_matmul(&self, rhs: &Self) -> Result<Self> {
        self.matmul_general(true, rhs, false, "t_matmul")
    }

    /// `self · rhsᵀ`, reading `rhs` transposed in place (no copy).
    pub fn matmul_t(&self, rhs: &Self) -> Result<Self> {
        self.matmul_general(false, rhs, true, "matmul_t")
    }

    /// `self += other` for tensors of one shape (gradient accumulation).
    pub(crate) fn add_assign_same_shape(&mut self, other: &Self) {
        debug_assert_eq!(self.shape, other.shape);
        for (a, &b) in self.data.iter_mut().zip(&other.data) {
            *a += b;
        }
    }

    /// Largest absolute difference between two tensors of the same shape (NaN if any difference
    /// is NaN).
    pub fn max_abs_diff(&self, other: &Self) -> Result<T> {
        if self.shape != other.shape {
            return Err(Error::ShapeMismatch {
                op: "max_abs_diff",
                lhs: self.shape.clone(),
                rhs: other.shape.clone(),
            });
        }
        Ok(self
            .data
            .iter()
            .zip(&other.data)
            .map(|(&a, &b)| (a - b).abs())
            .fold(T::ZERO, |worst, d| {
                // NaN sticks: once a difference is NaN, the result is NaN.
                if worst.is_nan() || d.is_nan() || d > worst {
                    if worst.is_nan() { worst } else { d }
                } else {
                    worst
                }
            }))
    }
}

/// Sums the middle axis of a row-major `[outer, len, inner]` block into `out` (`[outer, inner]`,
/// overwritten), with the pairwise kernel: contiguous rows when `inner` is 1, otherwise pairwise
/// over the `len` rows of each `[len, inner]` slab. Every reduction along an axis comes here.
pub(crate) fn reduce_middle<T: Float>(
    src: &[T],
    outer: usize,
    len: usize,
    inner: usize,
    out: &mut [T],
) -> Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    if src.is_empty() {
        // Summing zero elements (len = 0): every output is 0.
        out.fill(T::ZERO);
        return Ok(());
    }
    if inner == 1 {
        for (o, row) in out.iter_mut().zip(src.chunks_exact(len)) {
            *o = kernels::sum::sum(row);
        }
        return Ok(());
    }
    for (o, slab) in out
        .chunks_exact_mut(inner)
        .zip(src.chunks_exact(len * inner))
    {
        kernels::sum::sum_rows(slab, len, inner, o)?;
    }
    debug_assert_eq!(out.len(), outer * inner);
    Ok(())
}

/// Elements printed per axis end when a tensor is summarised, and the size above which it is.
const EDGE_ITEMS: usize = 3;
const SUMMARY_THRESHOLD: usize = 1000;

impl<T: Float> fmt::Display for Tensor<T> {
    /// Prints like PyTorch: `tensor([[1.0000, 2.0000], …])`, with `...` in place of the middle of
    /// each axis when there are more than 1000 elements.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summarize = self.numel() > SUMMARY_THRESHOLD;
        write!(f, "tensor(")?;
        self.fmt_axis(f, 0, 0, summarize)?;
        if summarize {
            write!(f, ", shape={}", self.shape)?;
        }
        write!(f, ")")
    }
}

impl<T: Float> Tensor<T> {
    fn fmt_axis(
        &self,
        f: &mut fmt::Formatter<'_>,
        axis: usize,
        offset: usize,
        summarize: bool,
    ) -> fmt::Result {
        if axis == self.shape.rank() {
            return write!(f, "{:.4}", self.data[offset]);
        }
        let len = self.dims()[axis];
        let stride = self.dims()[axis + 1..]
            .iter()
            .fold(1usize, |a, &d| a.saturating_mul(d));
        let indent = " ".repeat("tensor(".len() + axis + 1);
        let separator = if axis + 1 == self.shape.rank() {
            ", ".to_string()
        } else {
            format!(",{}\n{indent}", "\n".repeat(self.shape.rank() - axis - 2))
        };
        write!(f, "[")?;
        let mut first = true;
        for i in 0..len {
            let skip = summarize && len > 2 * EDGE_ITEMS && i >= EDGE_ITEMS && i < len - EDGE_ITEMS;
            if skip {
                if i == EDGE_ITEMS {
                    write!(f, "{separator}...")?;
                }
                continue;
            }
            if !first {
                write!(f, "{separator}")?;
            }
            first = false;
            self.fmt_axis(f, axis + 1, offset + i * stride, summarize)?;
        }
        write!(f, "]")
    }
}

impl<T: Float> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{} ", T::DTYPE, self.shape)?;
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_3d_swaps_axes() {
        let t = Tensor::from_vec((0..24).map(|x| x as f64).collect(), &[2, 3, 4]).unwrap();
        let u = t.transpose(0, 2).unwrap();
        assert_eq!(u.dims(), &[4, 3, 2]);
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    assert_eq!(u.get(&[k, j, i]).unwrap(), t.get(&[i, j, k]).unwrap());
                }
            }
        }
    }

    #[test]
    fn matmul_transposed_views_match_naive() {
        let a = Tensor::from_vec((0..6).map(|x| x as f64).collect(), &[2, 3]).unwrap();
        let b = Tensor::from_vec((0..8).map(|x| x as f64 - 3.0).collect(), &[2, 4]).unwrap();
        let atb = a.t_matmul(&b).unwrap();
        assert_eq!(atb.dims(), &[3, 4]);
        for i in 0..3 {
            for j in 0..4 {
                let want: f64 = (0..2)
                    .map(|k| a.get(&[k, i]).unwrap() * b.get(&[k, j]).unwrap())
                    .sum();
                assert_eq!(atb.get(&[i, j]).unwrap(), want);
            }
        }
        let c = Tensor::from_vec((0..12).map(|x| x as f64 * 0.5).collect(), &[4, 3]).unwrap();
        let act = a.matmul_t(&c).unwrap();
        for i in 0..2 {
            for j in 0..4 {
                let want: f64 = (0..3)
                    .map(|k| a.get(&[i, k]).unwrap() * c.get(&[j, k]).unwrap())
                    .sum();
                assert_eq!(act.get(&[i, j]).unwrap(), want);
            }
        }
    }

    #[test]
    fn matmul_into_a_recycled_buffer_ignores_its_old_values() {
        // A pooled buffer full of NaN, handed to the next product of the same size.
        let n = 512; // 512·512 f64 = 2 MiB, above the pooling threshold
        drop(Tensor::<f64>::full(&[n, n], f64::NAN).unwrap());
        let a = Tensor::<f64>::full(&[n, n], 1.0).unwrap();
        let b = Tensor::<f64>::full(&[n, n], 2.0).unwrap();
        drop(Tensor::<f64>::full(&[n, n], f64::NAN).unwrap());
        let c = a.matmul(&b).unwrap();
        assert!(c.data().iter().all(|&v| v == 2.0 * n as f64));
    }

    #[test]
    fn display_summarises_large_tensors() {
        let t = Tensor::<f32>::zeros(&[100, 100]).unwrap();
        let s = t.to_string();
        assert!(s.contains("..."));
        assert!(s.ends_with("shape=[100, 100])"));
        assert_eq!(Tensor::scalar(2.5f64).to_string(), "tensor(2.5000)");
    }
}
