//! Indexing with integer indices: `index_select`, `embedding`, `gather` and `scatter_add`.
//!
//! Each output element is one input element, chosen by an index, so the gradient sends g back to
//! the chosen element — and where an index repeats (the same token twice in a batch), the
//! contributions add up:
//!
//! - `index_select`: y[…, j, …] = x[…, idx[j], …], so ∂L/∂x[…, k, …] = Σ_{j: idx[j] = k} g[…, j, …]
//!   (an "index add"); `embedding` is `index_select` on axis 0 of the table.
//! - `gather`: y[p] = x[dest(p)] with dest replacing the coordinate on `axis` by index[p], so
//!   ∂L/∂x[q] = Σ_{p: dest(p) = q} g[p] — a `scatter_add` of g into zeros; conversely the gradient
//!   of `scatter_add`'s source is a `gather` of g. Each is the other's backward.
//!
//! The sums over repeated indices go through the crate's summation kernel: the contributions to
//! one destination are grouped (a stable counting sort, or a sort by destination), then summed
//! pairwise — never a running total over however many times a frequent id occurs, and the same
//! result at any thread count.

use std::sync::Arc;

use smallvec::smallvec;

use super::slice::View;
use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars, grad_if};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::indices::{Index, Indices, positions};
use crate::kernels::pool;
use crate::kernels::sum::{sum, sum_rows};
use crate::shape::{Shape, for_each_broadcast};
use crate::tape::Var;
use crate::tensor::Tensor;

impl<'t, T: Float> Var<'t, T> {
    /// The entries at `indices` along `axis`, in that order (repeats allowed).
    /// ∂/∂x[…, k, …] = Σ over the positions j with indices[j] = k of g[…, j, …].
    ///
    /// PyTorch equivalent: `x.index_select(axis, indices)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2])?);
    /// let y = x.index_select(0, &[2u8, 0, 2])?;
    /// assert_eq!(y.value().data(), &[5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
    /// let g = y.sum()?.backward()?;
    /// assert_eq!(g.wrt(x)?.data(), &[1.0, 1.0, 0.0, 0.0, 2.0, 2.0]); // row 2 was taken twice
    /// assert!(x.index_select(0, &[3]).is_err());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn index_select<I: Index>(self, axis: isize, indices: &[I]) -> Result<Var<'t, T>> {
        let shape = self.shape();
        let a = shape.axis("index_select", axis)?;
        let idx = positions("index_select", indices, shape.dims()[a])?;
        self.index_select_checked(a, Arc::new(idx), None)
    }

    /// Rows of the table `self` (`[V, D]`) for each id: the result has shape `ids.dims() + [D]`.
    /// The gradient of each table row is the sum of the gradients of the positions holding its id;
    /// the row `padding` (if any) gets none, as PyTorch's `padding_idx`.
    ///
    /// PyTorch equivalent: `F.embedding(ids, table, padding_idx=padding)`.
    ///
    /// ```
    /// use tapegrad::{Indices, Tape, Tensor};
    /// let tape = Tape::new();
    /// let table = tape.leaf(Tensor::from_vec(vec![0.0f32, 0.5, 1.0, 1.5, 2.0, 2.5], &[3, 2])?);
    /// let ids = Indices::new(&[2u32, 0, 2, 1], &[2, 2])?;
    /// let e = table.embedding(&ids, None)?;
    /// assert_eq!(e.value().dims(), &[2, 2, 2]);
    /// let g = e.sum()?.backward()?;
    /// assert_eq!(g.wrt(table)?.data(), &[1.0, 1.0, 1.0, 1.0, 2.0, 2.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn embedding(self, ids: &Indices, padding: Option<usize>) -> Result<Var<'t, T>> {
        let shape = self.shape();
        let &[vocab, dim] = shape.dims() else {
            return Err(Error::BadRank {
                op: "embedding",
                expected: "a table of shape [vocab, dim]",
                shape,
            });
        };
        if let Some(p) = padding.filter(|&p| p >= vocab) {
            return Err(Error::IndexOutOfRange {
                op: "embedding",
                position: 0,
                index: i64::try_from(p).unwrap_or(i64::MAX),
                len: vocab,
            });
        }
        let idx = ids.positions("embedding", vocab)?;
        let rows = self.index_select_checked(0, Arc::new(idx), padding)?;
        let mut dims = ids.dims().to_vec();
        dims.push(dim);
        rows.reshape(&dims)
    }

    /// `index_select` with positions already checked against axis `axis`; `skip` is a position
    /// whose gradient is dropped (embedding's padding row).
    fn index_select_checked(
        self,
        axis: usize,
        idx: Arc<Vec<usize>>,
        skip: Option<usize>,
    ) -> Result<Var<'t, T>> {
        let x = self.value();
        let (outer, len, inner) = x.shape().around(axis);
        let mut dims = x.dims().to_vec();
        dims[axis] = idx.len();
        let shape = Shape::new(&dims)?;
        let mut data = pool::try_empty("index_select", shape.numel())?;
        if shape.numel() > 0 {
            for block in x.data().chunks_exact(len * inner).take(outer) {
                for &i in idx.iter() {
                    data.extend_from_slice(&block[i * inner..(i + 1) * inner]);
                }
            }
        }
        let value = Tensor::from_shape_vec(data, shape)?;
        Ok(self
            .tape
            .record("index_select", value, &[self], || IndexSelectBackward {
                axis,
                idx,
                skip,
            }))
    }

    /// Adds the slices of `self` into a zero tensor of `shape` at `idx` along `axis` (the adjoint
    /// of `index_select`, and its graph-path backward).
    fn index_add_into(
        self,
        shape: Shape,
        axis: usize,
        idx: Arc<Vec<usize>>,
        skip: Option<usize>,
    ) -> Result<Var<'t, T>> {
        let value = index_add(&self.value(), shape, axis, &idx, skip)?;
        Ok(self
            .tape
            .record("index_add", value, &[self], || IndexAddBackward {
                axis,
                idx,
                skip,
            }))
    }

    /// Along `axis`, the element each index points to: y[p] = x[p with its `axis` coordinate
    /// replaced by index[p]]. `index` has the rank of `self`, and on every other axis a size no
    /// larger than `self`'s; the result has `index`'s shape.
    /// ∂/∂x = g scattered back (added) to the positions read.
    ///
    /// PyTorch equivalent: `torch.gather(x, axis, index)`.
    ///
    /// ```
    /// use tapegrad::{Indices, Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2])?);
    /// let y = x.gather(1, &Indices::new(&[1, 1, 0, 1], &[2, 2])?)?;
    /// assert_eq!(y.value().data(), &[2.0, 2.0, 3.0, 4.0]);
    /// assert_eq!(y.sum()?.backward()?.wrt(x)?.data(), &[0.0, 2.0, 1.0, 1.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn gather(self, axis: isize, index: &Indices) -> Result<Var<'t, T>> {
        let x = self.value();
        let dest = Arc::new(gather_destinations("gather", x.shape(), axis, index)?);
        let mut data = pool::try_empty("gather", dest.len())?;
        data.extend(dest.iter().map(|&q| x.data()[q]));
        let value = Tensor::from_shape_vec(data, index.shape().clone())?;
        Ok(self
            .tape
            .record("gather", value, &[self], || GatherBackward { dest }))
    }

    /// `self` with the elements of `src` added at the positions `index` points to along `axis`:
    /// out[p with axis coordinate index[p]] += src[p] for every position p of `index`. `index`
    /// has the rank of `self`; on every axis it is no larger than `src`, and on every other axis
    /// no larger than `self`. ∂/∂self = g; ∂/∂src = g gathered at those positions (0 where `src`
    /// extends beyond `index`).
    ///
    /// PyTorch equivalent: `x.scatter_add(axis, index, src)`.
    pub fn scatter_add(self, axis: isize, index: &Indices, src: Var<'t, T>) -> Result<Var<'t, T>> {
        self.same_tape(src, "scatter_add")?;
        let (x, s) = (self.value(), src.value());
        let fits = index.dims().len() == s.shape().rank()
            && index.dims().iter().zip(s.dims()).all(|(i, d)| i <= d);
        if !fits {
            return Err(Error::ShapeMismatch {
                op: "scatter_add",
                lhs: index.shape().clone(),
                rhs: s.shape().clone(),
            });
        }
        let dest = gather_destinations("scatter_add", x.shape(), axis, index)?;
        // The elements of src that `index` covers: src's view of index's shape.
        let taken = s.view_copy(
            "scatter_add",
            0,
            index.shape().clone(),
            &s.shape().strides(),
        )?;
        let mut value = x.try_clone()?;
        scatter_sum(&dest, taken.data(), value.data_mut())?;
        let dest = Arc::new(dest);
        Ok(self
            .tape
            .record("scatter_add", value, &[self, src], || ScatterAddBackward {
                dest,
                index_shape: index.shape().clone(),
            }))
    }
}

/// For each position of `index`, the flat position of `shape` it points to along `axis`,
/// checking the index values and the shapes (PyTorch's rules for gather and scatter).
fn gather_destinations(
    op: &'static str,
    shape: &Shape,
    axis: isize,
    index: &Indices,
) -> Result<Vec<usize>> {
    let a = shape.axis(op, axis)?;
    let fits = index.dims().len() == shape.rank()
        && index
            .dims()
            .iter()
            .zip(shape.dims())
            .enumerate()
            .all(|(k, (i, d))| k == a || i <= d);
    if !fits {
        return Err(Error::ShapeMismatch {
            op,
            lhs: shape.clone(),
            rhs: index.shape().clone(),
        });
    }
    let along = index.positions(op, shape.dims()[a])?;
    let mut strides = shape.strides();
    let axis_stride = strides[a];
    // Walk index's positions with the input's strides, the axis's contribution left out.
    strides[a] = 0;
    let mut dest = pool::try_filled(op, along.len(), 0usize)?;
    for_each_broadcast(index.shape(), &strides, &strides, |p, base, _| {
        dest[p] = base + along[p] * axis_stride;
    });
    Ok(dest)
}

/// `out[dest[p]] += values[p]`, the contributions to each destination grouped and summed
/// pairwise (sorted by destination, then by position: deterministic).
fn scatter_sum<T: Float>(dest: &[usize], values: &[T], out: &mut [T]) -> Result<()> {
    let mut order = pool::try_collect("scatter_add", dest.len(), 0..dest.len())?;
    order.sort_unstable_by_key(|&p| (dest[p], p));
    let sorted = pool::try_collect("scatter_add", order.len(), order.iter().map(|&p| values[p]))?;
    let mut start = 0;
    while start < order.len() {
        let d = dest[order[start]];
        let end = start + order[start..].iter().take_while(|&&p| dest[p] == d).count();
        out[d] += sum(&sorted[start..end]);
        start = end;
    }
    Ok(())
}

/// A zero tensor of `shape` with the slices of `src` (index_select's output shape) added at
/// `idx` along `axis`: out[…, k, …] = Σ_{j: idx[j] = k} src[…, j, …], summed pairwise per k.
fn index_add<T: Float>(
    src: &Tensor<T>,
    shape: Shape,
    axis: usize,
    idx: &[usize],
    skip: Option<usize>,
) -> Result<Tensor<T>> {
    let (outer, len, inner) = shape.around(axis);
    let mut out = Tensor::full_shape(shape, T::ZERO)?;
    if out.numel() == 0 || idx.is_empty() {
        return Ok(out);
    }
    // Group the positions j by their index k (a stable counting sort).
    let mut starts = pool::try_filled("index_add", len + 1, 0usize)?;
    for &k in idx {
        starts[k + 1] += 1;
    }
    for k in 0..len {
        starts[k + 1] += starts[k];
    }
    let mut next = starts.clone();
    let mut order = pool::try_filled("index_add", idx.len(), 0usize)?;
    for (j, &k) in idx.iter().enumerate() {
        order[next[k]] = j;
        next[k] += 1;
    }
    // For each outer block, the rows of each group side by side, then summed down the rows.
    let mut grouped = pool::try_dirty::<T>("index_add", idx.len() * inner)?;
    for (src_block, out_block) in src
        .data()
        .chunks_exact(idx.len() * inner)
        .zip(out.data_mut().chunks_exact_mut(len * inner))
        .take(outer)
    {
        for (slot, &j) in grouped.chunks_exact_mut(inner).zip(order.iter()) {
            slot.copy_from_slice(&src_block[j * inner..(j + 1) * inner]);
        }
        for k in (0..len).filter(|&k| Some(k) != skip) {
            let (a, b) = (starts[k], starts[k + 1]);
            if b > a {
                let rows = &grouped[a * inner..b * inner];
                sum_rows(
                    rows,
                    b - a,
                    inner,
                    &mut out_block[k * inner..(k + 1) * inner],
                )?;
            }
        }
    }
    Ok(out)
}

/// Saves the axis, the checked positions (shared with the graph path) and the skipped row.
#[derive(Debug)]
struct IndexSelectBackward {
    axis: usize,
    idx: Arc<Vec<usize>>,
    skip: Option<usize>,
}

impl<T: Float> Backward<T> for IndexSelectBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let shape = cx.input(0).shape().clone();
        Ok(smallvec![Some(index_add(
            g, shape, self.axis, &self.idx, self.skip
        )?)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let shape = cx.input(0).shape();
        Ok(smallvec![Some(g.index_add_into(
            shape,
            self.axis,
            Arc::clone(&self.idx),
            self.skip
        )?)])
    }

    fn saved_bytes(&self) -> usize {
        self.idx.len() * std::mem::size_of::<usize>()
    }

    fn describe_saved(&self) -> String {
        format!("{} indices along axis {}", self.idx.len(), self.axis)
    }
}

/// The backward of `index_add` is `index_select` of g (with the skipped row's slices zeroed).
#[derive(Debug)]
struct IndexAddBackward {
    axis: usize,
    idx: Arc<Vec<usize>>,
    skip: Option<usize>,
}

impl<T: Float> Backward<T> for IndexAddBackward {
    fn backward(&self, _cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (outer, len, inner) = g.shape().around(self.axis);
        let mut dims = g.dims().to_vec();
        dims[self.axis] = self.idx.len();
        let mut data = pool::try_empty("index_add", outer * self.idx.len() * inner)?;
        for block in g.data().chunks_exact((len * inner).max(1)).take(outer) {
            for &i in self.idx.iter() {
                if Some(i) == self.skip {
                    data.extend(std::iter::repeat_n(T::ZERO, inner));
                } else {
                    data.extend_from_slice(&block[i * inner..(i + 1) * inner]);
                }
            }
        }
        Ok(smallvec![Some(Tensor::from_vec(data, &dims)?)])
    }

    fn backward_graph<'t>(&self, _cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        if self.skip.is_some() {
            // The skipped row never reaches the output: select it anyway, then zero its slices.
            let taken = g.index_select_checked(self.axis, Arc::clone(&self.idx), None)?;
            let keep = self.idx.iter().map(|&i| {
                if Some(i) == self.skip {
                    T::ZERO
                } else {
                    T::ONE
                }
            });
            let mut dims = vec![1; taken.shape().rank()];
            dims[self.axis] = self.idx.len();
            let mask = Tensor::from_vec(keep.collect(), &dims)?;
            return Ok(smallvec![Some(taken.mul(g.tape().constant(mask))?)]);
        }
        Ok(smallvec![Some(g.index_select_checked(
            self.axis,
            Arc::clone(&self.idx),
            None
        )?)])
    }
}

/// Saves the flat position each output element was read from.
#[derive(Debug)]
struct GatherBackward {
    dest: Arc<Vec<usize>>,
}

impl<T: Float> Backward<T> for GatherBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let mut dx = cx.input(0).zeros_like()?;
        scatter_sum(&self.dest, g.data(), dx.data_mut())?;
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(g.scatter_into(
            cx.input(0).shape(),
            Arc::clone(&self.dest)
        )?)])
    }

    fn saved_bytes(&self) -> usize {
        self.dest.len() * std::mem::size_of::<usize>()
    }

    fn describe_saved(&self) -> String {
        format!("{} source positions", self.dest.len())
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// A zero tensor of `shape` with this value's elements added at the flat positions `dest`
    /// (gather's adjoint, recorded for the graph path; its own backward is a gather).
    fn scatter_into(self, shape: Shape, dest: Arc<Vec<usize>>) -> Result<Var<'t, T>> {
        let mut value = Tensor::full_shape(shape, T::ZERO)?;
        scatter_sum(&dest, self.value().data(), value.data_mut())?;
        Ok(self
            .tape
            .record("scatter", value, &[self], || ScatterBackward { dest }))
    }

    /// The elements at the flat positions `dest`, shaped as `shape` (the graph path of scatters).
    fn gather_flat(self, shape: Shape, dest: Arc<Vec<usize>>) -> Result<Var<'t, T>> {
        let x = self.value();
        let data = pool::try_collect("gather", dest.len(), dest.iter().map(|&q| x.data()[q]))?;
        let value = Tensor::from_shape_vec(data, shape)?;
        Ok(self
            .tape
            .record("gather", value, &[self], || GatherBackward { dest }))
    }
}

/// The backward of a scatter into zeros is the gather of g at the same positions.
#[derive(Debug)]
struct ScatterBackward {
    dest: Arc<Vec<usize>>,
}

impl<T: Float> Backward<T> for ScatterBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let data = pool::try_collect(
            "scatter",
            self.dest.len(),
            self.dest.iter().map(|&q| g.data()[q]),
        )?;
        Ok(smallvec![Some(Tensor::from_shape_vec(
            data,
            cx.input(0).shape().clone()
        )?)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(g.gather_flat(
            cx.input(0).shape(),
            Arc::clone(&self.dest)
        )?)])
    }
}

/// Saves the destinations and the index's shape; ∂/∂self = g, ∂/∂src = g gathered at the
/// destinations, placed in src's shape (zeros beyond the index's extent).
#[derive(Debug)]
struct ScatterAddBackward {
    dest: Arc<Vec<usize>>,
    index_shape: Shape,
}

impl<T: Float> Backward<T> for ScatterAddBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g.try_clone())?,
            grad_if(cx.needs_grad(1), || {
                let src = cx.input(1);
                let taken = pool::try_collect(
                    "scatter_add",
                    self.dest.len(),
                    self.dest.iter().map(|&q| g.data()[q]),
                )?;
                let taken = Tensor::from_shape_vec(taken, self.index_shape.clone())?;
                let mut ds = src.zeros_like()?;
                ds.view_add(0, &src.shape().strides(), &taken);
                Ok(ds)
            })?,
        ])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || Ok(g))?,
            grad_if(cx.needs_grad(1), || {
                let src_shape = cx.input(1).shape();
                let taken = g.gather_flat(self.index_shape.clone(), Arc::clone(&self.dest))?;
                if self.index_shape == src_shape {
                    return Ok(taken);
                }
                let strides = src_shape.strides();
                taken.embed(src_shape, View { offset: 0, strides })
            })?,
        ])
    }
}
