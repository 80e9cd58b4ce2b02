//! Matrix products: Y = A·B with A [m, k], B [k, n], Y [m, n] — and its batched, broadcast form.
//!
//! Yᵢⱼ = Σₖ Aᵢₖ Bₖⱼ, so ∂Yᵢⱼ/∂Aᵢₖ = Bₖⱼ and ∂Yᵢⱼ/∂Bₖⱼ = Aᵢₖ. Summing over the outputs each entry
//! touches:
//!
//! ∂L/∂Aᵢₖ = Σⱼ gᵢⱼ Bₖⱼ = (g·Bᵀ)ᵢₖ,   ∂L/∂Bₖⱼ = Σᵢ Aᵢₖ gᵢⱼ = (Aᵀ·g)ₖⱼ.
//!
//! The transposes are never materialised: the kernel reads A and B with swapped strides. Nothing is
//! saved beyond the input ids, since A and B are on the tape.
//!
//! **Batched.** As `torch.matmul`: operands of rank ≥ 3 are stacks of matrices over leading batch
//! axes, which broadcast against each other; a 1-D operand is a vector (a row on the left, a column
//! on the right, its axis removed from the result). Each batch entry is the 2-D rule above; where an
//! operand was broadcast over batch entries, its gradient adds up their contributions (the same
//! reduction `sum_to` does for element-wise broadcasting).

use smallvec::smallvec;

use rayon::prelude::*;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars, grad_if};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels::gemm::{MatRef, PARALLEL_MIN_FLOPS, matmul_into, matmul_into_with};
use crate::shape::Shape;
use crate::tape::Var;
use crate::tensor::Tensor;

impl<'t, T: Float> Var<'t, T> {
    /// Matrix product `self · rhs`, as `torch.matmul`: 2-D × 2-D is the matrix product; 1-D
    /// operands are vectors; operands of rank ≥ 3 are stacks of matrices whose batch axes
    /// broadcast. ∂/∂A = g·Bᵀ, ∂/∂B = Aᵀ·g (per batch entry, summed over broadcast entries).
    ///
    /// PyTorch equivalent: `a @ b`.
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
        let (a, b) = (self.shape(), rhs.shape());
        match (a.rank(), b.rank()) {
            (2, 2) => {
                let value = self.value().matmul(&rhs.value())?;
                Ok(self
                    .tape
                    .record("matmul", value, &[self, rhs], || MatmulBackward))
            }
            (0, _) | (_, 0) => Err(Error::BadRank {
                op: "matmul",
                expected: "operands with at least one axis",
                shape: if a.rank() == 0 { a } else { b },
            }),
            // Vectors: a row on the left, a column on the right; the added axis is removed again.
            (1, 1) => self.unsqueeze(0)?.matmul(rhs.unsqueeze(1)?)?.reshape(&[]),
            (1, _) => self.unsqueeze(0)?.matmul(rhs)?.squeeze(-2),
            (_, 1) => self.matmul(rhs.unsqueeze(1)?)?.squeeze(-1),
            _ => self.batched_matmul(rhs),
        }
    }

    /// Stacks of matrices `[..., m, k] · [..., k, n]` with broadcast batch axes.
    fn batched_matmul(self, rhs: Var<'t, T>) -> Result<Var<'t, T>> {
        let (a, b) = (self.value(), rhs.value());
        let plan = BatchPlan::new(a.shape(), b.shape())?;
        let value = plan.product(&a, false, &b, false, &plan.out_batch, plan.out_shape()?)?;
        Ok(self
            .tape
            .record("matmul", value, &[self, rhs], || BatchedMatmulBackward))
    }
}

/// The shapes of a batched product: each operand's batch axes, matrix sizes, and the broadcast
/// batch shape of the result.
struct BatchPlan {
    a_batch: Shape,
    b_batch: Shape,
    out_batch: Shape,
    m: usize,
    k: usize,
    n: usize,
}

impl BatchPlan {
    fn new(a: &Shape, b: &Shape) -> Result<BatchPlan> {
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k) = (a.dims()[ra - 2], a.dims()[ra - 1]);
        let (k2, n) = (b.dims()[rb - 2], b.dims()[rb - 1]);
        let mismatch = || Error::ShapeMismatch {
            op: "matmul",
            lhs: a.clone(),
            rhs: b.clone(),
        };
        if k != k2 {
            return Err(mismatch());
        }
        let a_batch = Shape::new(&a.dims()[..ra - 2])?;
        let b_batch = Shape::new(&b.dims()[..rb - 2])?;
        let out_batch = Shape::broadcast("matmul", &a_batch, &b_batch).map_err(|_| mismatch())?;
        Ok(BatchPlan {
            a_batch,
            b_batch,
            out_batch,
            m,
            k,
            n,
        })
    }

    fn out_shape(&self) -> Result<Shape> {
        let mut dims = self.out_batch.dims().to_vec();
        dims.extend_from_slice(&[self.m, self.n]);
        Shape::new(&dims)
    }

    /// `op(x)·op(y)` for every batch entry of `batch`, summed into a result whose batch shape is
    /// `out` (which `batch` broadcasts over; entries of `batch` that map to one entry of `out` add
    /// up, in batch order). `x` and `y` are the operands' values with their batch shapes broadcast
    /// to `batch`; `x_t`/`y_t` read an operand's matrices transposed.
    fn product<T: Float>(
        &self,
        x: &Tensor<T>,
        x_t: bool,
        y: &Tensor<T>,
        y_t: bool,
        out_batch: &Shape,
        out_shape: Shape,
    ) -> Result<Tensor<T>> {
        let batch = &self.out_batch;
        let (xr, xc) = matrix_of(x);
        let (yr, yc) = matrix_of(y);
        let (rows, cols) = (if x_t { xc } else { xr }, if y_t { yr } else { yc });
        let x_strides = batch_strides(x, batch, xr * xc);
        let y_strides = batch_strides(y, batch, yr * yc);
        let out_mat = rows * cols;
        let summed = out_batch.numel() != batch.numel();
        let mut out = if summed {
            Tensor::full_shape(out_shape, T::ZERO)?
        } else {
            Tensor::overwritable("matmul", out_shape)?
        };
        let dst_strides = {
            let own = out_batch.strides();
            let offset = batch.rank() - out_batch.rank();
            (0..batch.rank())
                .map(|i| {
                    if i < offset || out_batch.dims()[i - offset] == 1 {
                        0
                    } else {
                        own[i - offset] * out_mat
                    }
                })
                .collect::<Vec<_>>()
        };
        let offsets = |t: usize| {
            let (mut rest, mut ox, mut oy, mut od) = (t, 0, 0, 0);
            for d in (0..batch.rank()).rev() {
                let i = rest % batch.dims()[d];
                rest /= batch.dims()[d];
                ox += i * x_strides[d];
                oy += i * y_strides[d];
                od += i * dst_strides[d];
            }
            (ox, oy, od)
        };
        let entries = batch.numel();
        let small = rows.saturating_mul(cols).saturating_mul(self.k) < PARALLEL_MIN_FLOPS;
        if !summed && entries > 1 && small && crate::threads::num_threads() > 1 {
            // Many small products, each of its own output block: one block per task.
            out.data_mut()
                .par_chunks_mut(out_mat.max(1))
                .enumerate()
                .for_each(|(t, dst)| {
                    let (ox, oy, _) = offsets(t);
                    let (a, b) = (
                        view(x.data(), ox, xr, xc, x_t),
                        view(y.data(), oy, yr, yc, y_t),
                    );
                    matmul_into_with(dst, a, b, false, false);
                });
            return Ok(out);
        }
        for t in 0..entries {
            let (ox, oy, od) = offsets(t);
            let (a, b) = (
                view(x.data(), ox, xr, xc, x_t),
                view(y.data(), oy, yr, yc, y_t),
            );
            matmul_into(&mut out.data_mut()[od..od + out_mat], a, b, summed);
        }
        Ok(out)
    }
}

/// The `[r, c]` matrix at element offset `o` of `data`, read transposed if `t`.
fn view<T>(data: &[T], o: usize, r: usize, c: usize, t: bool) -> MatRef<'_, T> {
    MatRef::row_major(&data[o..o + r * c], r, c, t)
}

/// The last two axes of a tensor of rank ≥ 2.
fn matrix_of<T: Float>(x: &Tensor<T>) -> (usize, usize) {
    let d = x.dims();
    (d[d.len() - 2], d[d.len() - 1])
}

/// Element offsets per batch axis of `batch` for `x`'s matrices (0 along axes it is broadcast on).
fn batch_strides<T: Float>(x: &Tensor<T>, batch: &Shape, matrix: usize) -> Vec<usize> {
    let own_dims = &x.dims()[..x.dims().len() - 2];
    let offset = batch.rank() - own_dims.len();
    let mut strides = vec![0; batch.rank()];
    let mut step = matrix;
    for i in (0..own_dims.len()).rev() {
        if own_dims[i] != 1 {
            strides[i + offset] = step;
        }
        step *= own_dims[i];
    }
    strides
}

/// Backward of a batched product: dA = g·Bᵀ, dB = Aᵀ·g per batch entry, summed over the entries
/// an operand was broadcast across. Saves nothing: A and B are on the tape.
#[derive(Debug)]
struct BatchedMatmulBackward;

impl<T: Float> Backward<T> for BatchedMatmulBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        let plan = BatchPlan::new(a.shape(), b.shape())?;
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || plan.product(
                g,
                false,
                b,
                true,
                &plan.a_batch,
                a.shape().clone()
            ))?,
            grad_if(cx.needs_grad(1), || plan.product(
                a,
                true,
                g,
                false,
                &plan.b_batch,
                b.shape().clone()
            ))?,
        ])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        let (ra, rb) = (a.shape().rank() as isize, b.shape().rank() as isize);
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || g
                .matmul(b.transpose(rb - 2, rb - 1)?)?
                .sum_to(&a.shape()))?,
            grad_if(cx.needs_grad(1), || a
                .transpose(ra - 2, ra - 1)?
                .matmul(g)?
                .sum_to(&b.shape()))?,
        ])
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
