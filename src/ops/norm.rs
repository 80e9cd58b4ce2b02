//! Normalisation layers as functional ops: `layer_norm`, `rms_norm`, `batch_norm`.
//!
//! All three normalise a group of n elements x₁…xₙ (a row of the trailing `normalized_shape` axes
//! for layer/RMS norm, one channel over the batch and spatial axes for batch norm) to
//!
//! x̂ᵢ = (xᵢ − μ)·r,   μ = (1/n)Σxᵢ,   r = 1/√(σ² + ε),   σ² = (1/n)Σ(xᵢ − μ)²   (biased variance)
//!
//! and then apply an optional per-element scale w and shift b: yᵢ = x̂ᵢ·wᵢ + bᵢ. RMS norm skips the
//! centring (μ = 0, σ² = (1/n)Σxᵢ²) and has no shift.
//!
//! **Backward** (derived in `docs/derivations-norm-attn.md`). With gwᵢ = gᵢ·wᵢ (or gᵢ without a
//! weight), and means over the group written ⟨·⟩:
//!
//! ∂L/∂x = r·(gw − ⟨gw⟩ − x̂·⟨gw·x̂⟩)     (RMS norm: r·(gw − x̂·⟨gw·x̂⟩))
//! ∂L/∂w = Σ_groups g·x̂,   ∂L/∂b = Σ_groups g.
//!
//! The forward pass saves only μ and r per group (two numbers per row, or per channel); x, w and b
//! are on the tape. One pass over each row computes μ (pairwise sum), the centred row (written into
//! the output), σ² (pairwise dot product of the centred row with itself, so no cancellation of
//! Σx² − nμ²) and then the output in place. The backward pass does, per row, one pass forming x̂ and
//! g·w in a row-sized scratch, the two pairwise sums ⟨gw⟩ and ⟨gw·x̂⟩, and one pass writing ∂L/∂x and
//! adding g·x̂ and g into per-block partial sums for ∂L/∂w and ∂L/∂b. Blocks are [`BLOCK_ROWS`] rows
//! (the leaf size of the summation kernel's row tree); the block partials are then summed with the
//! pairwise row kernel, so the weight gradients cost one pass over the data and do not depend on the
//! thread count.
//!
//! The recorded (graph) backward rebuilds μ and r from x with `Var` ops (`r = e^(−½·ln(σ² + ε))`)
//! and writes the formula above with them, so second derivatives flow through μ, r, g, w.

use std::sync::Arc;

use rayon::prelude::*;
use smallvec::{SmallVec, smallvec};

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars, grad_if};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels::pool;
use crate::kernels::sum::{dot, sum, sum_rows};
use crate::shape::Shape;
use crate::tape::Var;
use crate::tensor::{PARALLEL_CHUNK, Tensor, parallel};

/// Rows per block of partial weight-gradient sums: the leaf size of the summation kernel's row
/// tree, so a block adds at most 16 rows one after another before the pairwise tree takes over.
const BLOCK_ROWS: usize = 16;

/// A batch norm's running statistics, updated in place by a training-mode
/// [`Var::batch_norm`] (outside autograd) and used instead of the batch's in eval mode.
///
/// Both hold one value per channel (`C` elements, any shape, as PyTorch checks only the count).
///
/// PyTorch equivalent: the `running_mean` and `running_var` buffers passed to `F.batch_norm`.
#[derive(Debug)]
pub struct RunningStats<'a, T: Float> {
    /// Running mean per channel.
    pub mean: &'a mut Tensor<T>,
    /// Running (unbiased) variance per channel.
    pub var: &'a mut Tensor<T>,
}

/// The machine epsilon of `T` (PyTorch's `torch.finfo(dtype).eps`), `rms_norm`'s default ε.
fn machine_epsilon<T: Float>() -> f64 {
    if T::DTYPE == "float32" {
        f64::from(f32::EPSILON)
    } else {
        f64::EPSILON
    }
}

/// ε must be a finite number ≥ 0 (`positive`: > 0).
fn check_eps(op: &'static str, eps: f64, positive: bool) -> Result<()> {
    let ok = eps.is_finite() && if positive { eps > 0.0 } else { eps >= 0.0 };
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            op,
            name: "eps",
            value: eps,
            reason: if positive {
                "must be finite and > 0 in training mode"
            } else {
                "must be finite and >= 0"
            },
        })
    }
}

/// Splits `x` into `[rows, d]` where the trailing axes equal `normalized_shape`.
fn rows_and_width(
    op: &'static str,
    x: &Shape,
    normalized_shape: &[usize],
) -> Result<(usize, usize)> {
    let k = normalized_shape.len();
    if k == 0 {
        return Err(Error::InvalidArgument {
            op,
            reason: "normalized_shape must have at least one axis, got []".to_string(),
        });
    }
    let dims = x.dims();
    if dims.len() < k || dims[dims.len() - k..] != *normalized_shape {
        return Err(Error::ShapeMismatch {
            op,
            lhs: x.clone(),
            rhs: Shape::new(normalized_shape)?,
        });
    }
    // Shape::new checks each product, even when another axis of x is 0.
    let rows = Shape::new(&dims[..dims.len() - k])?.numel();
    let d = Shape::new(normalized_shape)?.numel();
    Ok((rows, d))
}

/// Checks an optional weight or bias: on x's tape and of exactly `shape`.
fn check_affine<'t, T: Float>(
    op: &'static str,
    x: Var<'t, T>,
    param: Option<Var<'t, T>>,
    shape: &[usize],
) -> Result<Option<Arc<Tensor<T>>>> {
    let Some(param) = param else { return Ok(None) };
    x.same_tape(param, op)?;
    let value = param.value();
    if value.dims() != shape {
        return Err(Error::ShapeMismatch {
            op,
            lhs: value.shape().clone(),
            rhs: Shape::new(shape)?,
        });
    }
    Ok(Some(value))
}

/// Which normalisation a row kernel computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Centre {
    /// Layer norm: subtract the mean.
    Mean,
    /// RMS norm: no centring.
    None,
}

/// Normalises one row into `y` and returns (μ, r). `y` first receives x − μ (the centred row), whose
/// pairwise dot product with itself is n·σ²; then it is scaled in place.
#[inline(always)]
fn forward_row<T: Float>(
    x: &[T],
    centre: Centre,
    w: Option<&[T]>,
    b: Option<&[T]>,
    eps: T,
    y: &mut [T],
) -> (T, T) {
    let n = T::from_f64(x.len() as f64);
    let mean = match centre {
        Centre::Mean => sum(x) / n,
        Centre::None => T::ZERO,
    };
    for (o, &v) in y.iter_mut().zip(x) {
        *o = v - mean;
    }
    let rstd = T::ONE / (dot(y, y) / n + eps).sqrt();
    match (w, b) {
        (Some(w), Some(b)) => {
            for ((o, &w), &b) in y.iter_mut().zip(w).zip(b) {
                *o = *o * rstd * w + b;
            }
        }
        (Some(w), None) => {
            for (o, &w) in y.iter_mut().zip(w) {
                *o = *o * rstd * w;
            }
        }
        (None, Some(b)) => {
            for (o, &b) in y.iter_mut().zip(b) {
                *o = *o * rstd + b;
            }
        }
        (None, None) => {
            for o in y.iter_mut() {
                *o *= rstd;
            }
        }
    }
    (mean, rstd)
}

/// Rows of width `d` handed to one thread at a time: about [`PARALLEL_CHUNK`] elements, a whole
/// number of [`BLOCK_ROWS`] blocks. Depends only on `d`.
fn rows_per_task(d: usize) -> usize {
    let blocks = (PARALLEL_CHUNK / (BLOCK_ROWS * d.max(1))).max(1);
    blocks * BLOCK_ROWS
}

/// The forward pass over every row of `x` (`[rows, d]`), in parallel for large inputs. Each row's
/// result depends only on that row, so the split does not change any bit.
#[allow(clippy::too_many_arguments)]
fn forward_rows<T: Float>(
    x: &[T],
    d: usize,
    centre: Centre,
    w: Option<&[T]>,
    b: Option<&[T]>,
    eps: T,
    y: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
) {
    if d == 0 || x.is_empty() {
        // No elements: statistics of an empty row (NaN, as 0/0), never read.
        mean.fill(T::from_f64(f64::NAN));
        rstd.fill(T::from_f64(f64::NAN));
        return;
    }
    let task = rows_per_task(d);
    let run = |((x, y), (mean, rstd)): ForwardItem<'_, T>| {
        // The loops compiled for the CPU's widest vectors (chosen at run time).
        pulp::Arch::new().dispatch(ForwardTask {
            x,
            y,
            mean,
            rstd,
            d,
            centre,
            w,
            b,
            eps,
        });
    };
    if parallel(x.len()) {
        x.par_chunks(task * d)
            .zip(y.par_chunks_mut(task * d))
            .zip(mean.par_chunks_mut(task).zip(rstd.par_chunks_mut(task)))
            .for_each(run);
    } else {
        run(((x, y), (mean, rstd)));
    }
}

/// One task's share of the forward: ((x rows, y rows), (means, 1/std)).
type ForwardItem<'a, T> = ((&'a [T], &'a mut [T]), (&'a mut [T], &'a mut [T]));

/// The forward over a range of rows.
struct ForwardTask<'a, T> {
    x: &'a [T],
    y: &'a mut [T],
    mean: &'a mut [T],
    rstd: &'a mut [T],
    d: usize,
    centre: Centre,
    w: Option<&'a [T]>,
    b: Option<&'a [T]>,
    eps: T,
}

impl<T: Float> pulp::WithSimd for ForwardTask<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let ForwardTask {
            x,
            y,
            mean,
            rstd,
            d,
            centre,
            w,
            b,
            eps,
        } = self;
        for (((xr, yr), m), r) in x
            .chunks_exact(d)
            .zip(y.chunks_exact_mut(d))
            .zip(mean.iter_mut())
            .zip(rstd.iter_mut())
        {
            (*m, *r) = forward_row(xr, centre, w, b, eps, yr);
        }
    }
}

/// What the fused row backward produces: ∂L/∂x (if asked) and the sums over rows of g·x̂ and g.
struct RowGrads<T: Float> {
    dx: Option<Tensor<T>>,
    dw: Option<Vec<T>>,
    db: Option<Vec<T>>,
}

/// The fused backward of layer/RMS norm over `[rows, d]`: ∂L/∂x = r·(gw − ⟨gw⟩ − x̂·⟨gw·x̂⟩) row by
/// row, and the column sums Σ g·x̂ (`want_dw`) and Σ g (`want_db`) through per-block partials
/// summed by the pairwise row kernel.
///
/// Work goes block by block ([`BLOCK_ROWS`] rows): one pass streams the block's x and g from memory
/// into x̂ and g·w (a block-sized scratch that stays in cache) while adding the block's weight
/// partials; then each row's two means are pairwise sums over the scratch; then one pass streams
/// the block's ∂L/∂x out. Long uninterrupted streams keep the memory busy; the arithmetic between
/// them runs from cache.
#[allow(clippy::too_many_arguments)]
fn backward_rows<T: Float>(
    op: &'static str,
    x: &Tensor<T>,
    g: &[T],
    d: usize,
    centre: Centre,
    w: Option<&[T]>,
    mean: &[T],
    rstd: &[T],
    want_dx: bool,
    want_dw: bool,
    want_db: bool,
) -> Result<RowGrads<T>> {
    let rows = mean.len();
    let mut dx = grad_if(want_dx, || Tensor::overwritable(op, x.shape().clone()))?;
    if d == 0 || rows == 0 {
        let zeros = |want: bool| grad_if(want, || pool::try_zeroed(op, d));
        return Ok(RowGrads {
            dx,
            dw: zeros(want_dw)?,
            db: zeros(want_db)?,
        });
    }
    let blocks = rows.div_ceil(BLOCK_ROWS);
    let partials = |want: bool| {
        grad_if(want, || {
            Tensor::full_shape(Shape::new(&[blocks, d])?, T::ZERO)
        })
    };
    // Pooled tensors rather than plain vectors, so the next step reuses their memory.
    let mut dw_part = partials(want_dw)?;
    let mut db_part = partials(want_db)?;
    let ones = grad_if(w.is_none(), || pool::try_filled(op, d, T::ONE))?;
    let w: &[T] = w.or(ones.as_deref()).unwrap_or(&[]);

    let task_rows = rows_per_task(d);
    let tasks = rows.div_ceil(task_rows);
    let task_blocks = task_rows / BLOCK_ROWS;
    // One work item per task: its rows of dx, and its blocks of each partial that is wanted.
    let dx_parts = split_optional(dx.as_mut().map(Tensor::data_mut), task_rows * d, tasks);
    let dw_parts = split_optional(
        dw_part.as_mut().map(Tensor::data_mut),
        task_blocks * d,
        tasks,
    );
    let db_parts = split_optional(
        db_part.as_mut().map(Tensor::data_mut),
        task_blocks * d,
        tasks,
    );
    let items: Vec<_> = dx_parts
        .into_iter()
        .zip(dw_parts)
        .zip(db_parts)
        .enumerate()
        .collect();
    let x = x.data();
    let run = |(task, ((dx, dw), db)): TaskItem<'_, T>| -> Result<()> {
        let first = task * task_rows;
        // The loops compiled for the CPU's widest vectors (chosen at run time).
        pulp::Arch::new().dispatch(BackwardTask {
            x,
            g,
            w,
            mean,
            rstd,
            d,
            centre,
            rows: first..(first + task_rows).min(rows),
            dx,
            dw,
            db,
            wxhat: &mut pool::try_dirty::<T>(op, d)?,
        });
        Ok(())
    };
    if parallel(x.len()) {
        items.into_par_iter().try_for_each(run)?;
    } else {
        items.into_iter().try_for_each(run)?;
    }
    let finish = |part: Option<Tensor<T>>| -> Result<Option<Vec<T>>> {
        part.map(|part| {
            let mut out = pool::try_dirty(op, d)?;
            sum_rows(part.data(), blocks, d, &mut out)?;
            Ok(out)
        })
        .transpose()
    };
    Ok(RowGrads {
        dx,
        dw: finish(dw_part)?,
        db: finish(db_part)?,
    })
}

/// The fused backward over a range of rows (whole blocks but the last): its rows of dx and its
/// blocks of the weight partials.
struct BackwardTask<'a, T> {
    x: &'a [T],
    g: &'a [T],
    w: &'a [T],
    mean: &'a [T],
    rstd: &'a [T],
    d: usize,
    centre: Centre,
    rows: std::ops::Range<usize>,
    dx: Option<&'a mut [T]>,
    dw: Option<&'a mut [T]>,
    db: Option<&'a mut [T]>,
    /// One row of scratch: w·x̂ of the current row.
    wxhat: &'a mut [T],
}

impl<T: Float> pulp::WithSimd for BackwardTask<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let BackwardTask {
            x,
            g,
            w,
            mean,
            rstd,
            d,
            centre,
            rows,
            mut dx,
            mut dw,
            mut db,
            wxhat,
        } = self;
        let n = T::from_f64(d as f64);
        let first = rows.start;
        for row in rows {
            let local = row - first;
            let span = row * d..(row + 1) * d;
            let (x, g) = (&x[span.clone()], &g[span]);
            let (m, r) = (mean[row], rstd[row]);
            let block = (local / BLOCK_ROWS) * d..(local / BLOCK_ROWS + 1) * d;
            let dw = dw.as_deref_mut().map(|dw| &mut dw[block.clone()]);
            let db = db.as_deref_mut().map(|db| &mut db[block]);
            let Some(dx) = dx.as_deref_mut() else {
                weight_partials(g, x, m, r, dw, db);
                continue;
            };
            // First pass, reading x and g together from memory: w·x̂ into the one row of scratch,
            // and db += g. Then ⟨gw⟩ = ⟨g, w⟩ and ⟨gw·x̂⟩ = ⟨g, w·x̂⟩ from cache.
            match db {
                Some(db) => {
                    for ((((u, &xv), &wv), &gv), pb) in
                        wxhat.iter_mut().zip(x).zip(w).zip(g).zip(db.iter_mut())
                    {
                        *u = (xv - m) * r * wv;
                        *pb += gv;
                    }
                }
                None => {
                    for ((u, &xv), &wv) in wxhat.iter_mut().zip(x).zip(w) {
                        *u = (xv - m) * r * wv;
                    }
                }
            }
            let mean_gw = match centre {
                Centre::Mean => dot(g, w) / n,
                Centre::None => T::ZERO,
            };
            let mean_gw_xhat = dot(g, wxhat) / n;
            let dx = &mut dx[local * d..(local + 1) * d];
            // dx = r·(gw − ⟨gw⟩ − x̂·⟨gw·x̂⟩), with dw += g·x̂ in the same pass.
            match dw {
                Some(dw) => {
                    for ((((o, &gv), &wv), &xv), pw) in
                        dx.iter_mut().zip(g).zip(w).zip(x).zip(dw.iter_mut())
                    {
                        let h = (xv - m) * r;
                        *o = r * (gv * wv - mean_gw - h * mean_gw_xhat);
                        *pw += gv * h;
                    }
                }
                None => {
                    for (((o, &gv), &wv), &xv) in dx.iter_mut().zip(g).zip(w).zip(x) {
                        *o = r * (gv * wv - mean_gw - (xv - m) * r * mean_gw_xhat);
                    }
                }
            }
        }
    }
}

/// dw += g·x̂ and db += g (each where asked) for one row.
#[inline(always)]
fn weight_partials<T: Float>(
    g: &[T],
    x: &[T],
    mean: T,
    rstd: T,
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
) {
    if let Some(dw) = dw {
        for ((pw, &gv), &xv) in dw.iter_mut().zip(g).zip(x) {
            *pw += gv * ((xv - mean) * rstd);
        }
    }
    if let Some(db) = db {
        for (pb, &gv) in db.iter_mut().zip(g) {
            *pb += gv;
        }
    }
}

/// One task's share of the fused backward: (task index, ((dx rows, dw partials), db partials)).
type TaskItem<'a, T> = (
    usize,
    (
        (Option<&'a mut [T]>, Option<&'a mut [T]>),
        Option<&'a mut [T]>,
    ),
);

/// `buffer` cut into `count` pieces of `piece` elements (the last may be shorter), or `count`
/// `None`s when there is no buffer.
fn split_optional<T>(
    buffer: Option<&mut [T]>,
    piece: usize,
    count: usize,
) -> Vec<Option<&mut [T]>> {
    match buffer {
        Some(buffer) => buffer.chunks_mut(piece.max(1)).map(Some).collect(),
        None => (0..count).map(|_| None).collect(),
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// Layer normalisation over the trailing axes `normalized_shape`: each row is normalised to
    /// mean 0 and (biased) variance 1, then scaled by `weight` and shifted by `bias` (both of shape
    /// `normalized_shape`, each optional).
    ///
    /// With x̂ = (x − μ)·r, r = 1/√(σ² + ε) and gw = g·w:
    /// ∂/∂x = r·(gw − mean(gw) − x̂·mean(gw·x̂)), ∂/∂w = Σ_rows g·x̂, ∂/∂b = Σ_rows g.
    /// Saves the mean and r of each row.
    ///
    /// Errors: an empty `normalized_shape`, one that is not x's trailing axes, a weight or bias of
    /// another shape, or ε negative, infinite or NaN (PyTorch accepts a negative ε and returns NaN).
    ///
    /// PyTorch equivalent: `F.layer_norm(x, normalized_shape, weight, bias, eps)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 4.0, 8.0], &[2, 3])?);
    /// let w = tape.leaf(Tensor::from_vec(vec![1.0, 1.0, 2.0], &[3])?);
    /// let y = x.layer_norm(&[3], Some(w), None, 0.0)?;
    /// let s = 1.5f64.sqrt(); // row [1, 2, 3]: mean 2, variance 2/3
    /// assert!((y.value().get(&[0, 2])? - 2.0 * s).abs() < 1e-12);
    /// let grads = y.sum()?.backward()?;
    /// assert_eq!(grads.wrt(w)?.dims(), &[3]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn layer_norm(
        self,
        normalized_shape: &[usize],
        weight: Option<Var<'t, T>>,
        bias: Option<Var<'t, T>>,
        eps: f64,
    ) -> Result<Var<'t, T>> {
        self.row_norm(
            "layer_norm",
            Centre::Mean,
            normalized_shape,
            weight,
            bias,
            eps,
        )
    }

    /// Root-mean-square normalisation over the trailing axes `normalized_shape`:
    /// y = x·r·w with r = 1/√(mean(x²) + ε); ε defaults to the machine epsilon of `T`
    /// (PyTorch's `torch.finfo(x.dtype).eps`).
    ///
    /// With x̂ = x·r and gw = g·w: ∂/∂x = r·(gw − x̂·mean(gw·x̂)), ∂/∂w = Σ_rows g·x̂. Saves r per
    /// row.
    ///
    /// PyTorch equivalent: `F.rms_norm(x, normalized_shape, weight, eps)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![3.0, 4.0], &[1, 2])?);
    /// let y = x.rms_norm(&[2], None, Some(0.0))?; // rms = √12.5
    /// assert!((y.value().data()[0] - 3.0 / 12.5f64.sqrt()).abs() < 1e-15);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn rms_norm(
        self,
        normalized_shape: &[usize],
        weight: Option<Var<'t, T>>,
        eps: Option<f64>,
    ) -> Result<Var<'t, T>> {
        let eps = eps.unwrap_or_else(machine_epsilon::<T>);
        self.row_norm(
            "rms_norm",
            Centre::None,
            normalized_shape,
            weight,
            None,
            eps,
        )
    }

    fn row_norm(
        self,
        op: &'static str,
        centre: Centre,
        normalized_shape: &[usize],
        weight: Option<Var<'t, T>>,
        bias: Option<Var<'t, T>>,
        eps: f64,
    ) -> Result<Var<'t, T>> {
        check_eps(op, eps, false)?;
        let x = self.value();
        let (rows, d) = rows_and_width(op, x.shape(), normalized_shape)?;
        let w = check_affine(op, self, weight, normalized_shape)?;
        let b = check_affine(op, self, bias, normalized_shape)?;
        let mut y = Tensor::overwritable(op, x.shape().clone())?;
        let mut mean = Tensor::overwritable(op, Shape::new(&[rows])?)?;
        let mut rstd = Tensor::overwritable(op, Shape::new(&[rows])?)?;
        forward_rows(
            x.data(),
            d,
            centre,
            w.as_deref().map(Tensor::data),
            b.as_deref().map(Tensor::data),
            T::from_f64(eps),
            y.data_mut(),
            mean.data_mut(),
            rstd.data_mut(),
        );
        let mut inputs: SmallVec<[Var<'t, T>; 3]> = smallvec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        Ok(self.tape.record(op, y, &inputs, || RowNormBackward {
            op,
            centre,
            normalized: SmallVec::from_slice(normalized_shape),
            rows,
            d,
            has_weight: weight.is_some(),
            has_bias: bias.is_some(),
            eps,
            mean,
            rstd,
        }))
    }
}

/// Layer or RMS norm's backward: saves μ (layer norm) and r per row, and which inputs follow x.
#[derive(Debug)]
struct RowNormBackward<T: Float> {
    op: &'static str,
    centre: Centre,
    normalized: SmallVec<[usize; 4]>,
    rows: usize,
    d: usize,
    has_weight: bool,
    has_bias: bool,
    eps: f64,
    mean: Tensor<T>,
    rstd: Tensor<T>,
}

impl<T: Float> RowNormBackward<T> {
    /// Positions of the weight and bias among the inputs.
    fn slots(&self) -> (Option<usize>, Option<usize>) {
        let w = self.has_weight.then_some(1);
        let b = self.has_bias.then_some(1 + usize::from(self.has_weight));
        (w, b)
    }
}

impl<T: Float> Backward<T> for RowNormBackward<T> {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (w_slot, b_slot) = self.slots();
        let needs = |slot: Option<usize>| slot.is_some_and(|i| cx.needs_grad(i));
        let x = cx.input(0);
        let grads = backward_rows(
            self.op,
            x,
            g.data(),
            self.d,
            self.centre,
            w_slot.map(|i| cx.input(i).data()),
            self.mean.data(),
            self.rstd.data(),
            cx.needs_grad(0),
            needs(w_slot),
            needs(b_slot),
        )?;
        let param_shape = Shape::new(&self.normalized)?;
        let mut out: InputGrads<T> = smallvec![grads.dx];
        if self.has_weight {
            out.push(
                grads
                    .dw
                    .map(|dw| Tensor::from_shape_vec(dw, param_shape.clone()))
                    .transpose()?,
            );
        }
        if self.has_bias {
            out.push(
                grads
                    .db
                    .map(|db| Tensor::from_shape_vec(db, param_shape))
                    .transpose()?,
            );
        }
        Ok(out)
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (w_slot, b_slot) = self.slots();
        let x = cx.input(0);
        let flat = [self.rows, self.d];
        let x2 = x.reshape(&flat)?;
        let g2 = g.reshape(&flat)?;
        // μ, r and x̂ rebuilt from x, so that their dependence on x is recorded too.
        let (centred, mean_square) = match self.centre {
            Centre::Mean => {
                let xc = x2.sub(x2.mean_axis(-1, true)?)?;
                (xc, xc.mul(xc)?.mean_axis(-1, true)?)
            }
            Centre::None => (x2, x2.mul(x2)?.mean_axis(-1, true)?),
        };
        let rstd = inverse_sqrt(mean_square.add_scalar(T::from_f64(self.eps))?)?;
        let xhat = centred.mul(rstd)?;
        let weight = w_slot.map(|i| cx.input(i).reshape(&[self.d])).transpose()?;
        let gw = match weight {
            Some(w) => g2.mul(w)?,
            None => g2,
        };
        let dx = grad_if(cx.needs_grad(0), || {
            let mean_gw_xhat = gw.mul(xhat)?.mean_axis(-1, true)?;
            let mut inner = gw.sub(xhat.mul(mean_gw_xhat)?)?;
            if self.centre == Centre::Mean {
                inner = inner.sub(gw.mean_axis(-1, true)?)?;
            }
            inner.mul(rstd)?.reshape(x.shape().dims())
        })?;
        let mut out: InputVars<'t, T> = smallvec![dx];
        if let Some(i) = w_slot {
            out.push(grad_if(cx.needs_grad(i), || {
                g2.mul(xhat)?.sum_axis(0, false)?.reshape(&self.normalized)
            })?);
        }
        if let Some(i) = b_slot {
            out.push(grad_if(cx.needs_grad(i), || {
                g2.sum_axis(0, false)?.reshape(&self.normalized)
            })?);
        }
        Ok(out)
    }

    fn saved_bytes(&self) -> usize {
        (self.mean.numel() + self.rstd.numel()) * std::mem::size_of::<T>()
    }

    fn describe_saved(&self) -> String {
        format!(
            "mean and 1/std of {} rows of {} (reads x{}{})",
            self.rows,
            self.d,
            if self.has_weight { ", weight" } else { "" },
            if self.has_bias { ", bias" } else { "" }
        )
    }
}

/// 1/√v as recorded ops: e^(−½·ln v) (the graph path's only need for a square root).
fn inverse_sqrt<T: Float>(v: Var<'_, T>) -> Result<Var<'_, T>> {
    v.log()?.mul_scalar(T::from_f64(-0.5))?.exp()
}

// ---------------------------------------------------------------------------------------------
// Batch norm
// ---------------------------------------------------------------------------------------------

/// `[N, C, HW]`: batch, channels, and the product of the spatial axes (1 for `[N, C]`).
#[derive(Debug, Clone, Copy)]
struct Layout {
    n: usize,
    c: usize,
    hw: usize,
}

impl Layout {
    fn of(op: &'static str, x: &Shape) -> Result<Layout> {
        let dims = x.dims();
        if dims.len() < 2 {
            return Err(Error::BadRank {
                op,
                expected: "an input of shape [N, C] or [N, C, *]",
                shape: x.clone(),
            });
        }
        Ok(Layout {
            n: dims[0],
            c: dims[1],
            hw: Shape::new(&dims[2..])?.numel(),
        })
    }

    /// Elements per channel: N·HW.
    fn count(&self) -> usize {
        self.n * self.hw
    }
}

/// Checks a per-channel tensor (weight, bias, running statistic): `C` elements.
fn check_channels<T: Float>(op: &'static str, t: &Tensor<T>, c: usize) -> Result<()> {
    if t.numel() == c {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            op,
            lhs: t.shape().clone(),
            rhs: Shape::new(&[c])?,
        })
    }
}

/// Per-channel sums Σ_{n, s} f(n, c, row) where `row` is the HW-long row of (n, c): each row is
/// reduced by `f` (with the pairwise kernel), then the `[N, C]` row results are summed over N with
/// the pairwise row kernel.
fn channel_sums<T: Float>(
    op: &'static str,
    layout: Layout,
    mut f: impl FnMut(usize, usize) -> T,
) -> Result<Vec<T>> {
    let Layout { n, c, .. } = layout;
    let mut partial = pool::try_dirty::<T>(op, n * c)?;
    // (A non-empty partial has c ≥ 1.)
    for (i, p) in partial.iter_mut().enumerate() {
        *p = f(i / c, i % c);
    }
    let mut out = pool::try_dirty(op, c)?;
    sum_rows(&partial, n, c, &mut out)?;
    Ok(out)
}

impl<'t, T: Float> Var<'t, T> {
    /// Batch normalisation of `x` of shape `[N, C]` or `[N, C, *]`: each channel is normalised
    /// with the mean and (biased) variance over the batch and spatial axes, then scaled by `weight`
    /// and shifted by `bias` (each `C` elements, optional).
    ///
    /// **Training** (`training = true`): the batch's statistics are used; if `running` is given,
    /// its tensors are updated in place (not recorded on the tape):
    /// running ← (1 − momentum)·running + momentum·batch, with the **unbiased** variance for
    /// `running.var`. With x̂ = (x − μ)·r and
    /// gw = g·w, ∂/∂x = r·(gw − mean(gw) − x̂·mean(gw·x̂)) (means over N and the spatial axes),
    /// ∂/∂w = Σ g·x̂, ∂/∂b = Σ g. A batch of zero elements returns an empty output and leaves the
    /// running statistics unchanged; one element per channel is an error (PyTorch's "expected more
    /// than 1 value per channel"). ε must be > 0, as PyTorch requires in training.
    ///
    /// **Eval** (`training = false`): the running statistics are used (an error if absent) and are
    /// constants: y = (x − running.mean)·r·w + b with r = 1/√(running.var + ε), so ∂/∂x = g·w·r.
    ///
    /// Errors also for `momentum` outside [0, 1] or NaN (PyTorch accepts any number) and for
    /// per-channel tensors without `C` elements.
    ///
    /// PyTorch equivalent: `F.batch_norm(x, running.mean, running.var, weight, bias, training,
    /// momentum, eps)`.
    ///
    /// ```
    /// use tapegrad::{RunningStats, Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 10.0, 3.0, 30.0], &[2, 2])?);
    /// let (mut mean, mut var) = (Tensor::zeros(&[2])?, Tensor::ones(&[2])?);
    /// let running = RunningStats { mean: &mut mean, var: &mut var };
    /// let y = x.batch_norm(None, None, Some(running), true, 0.1, 1e-5)?;
    /// assert!((y.value().data()[0] + 1.0).abs() < 1e-5); // (1 − 2)/1
    /// assert_eq!(mean.data(), &[0.2, 2.0]);                // 0.9·0 + 0.1·[2, 20]
    /// assert!((var.data()[0] - 1.1).abs() < 1e-12);        // 0.9·1 + 0.1·2 (unbiased)
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        self,
        weight: Option<Var<'t, T>>,
        bias: Option<Var<'t, T>>,
        running: Option<RunningStats<'_, T>>,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<Var<'t, T>> {
        const OP: &str = "batch_norm";
        check_eps(OP, eps, training)?;
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::InvalidHyperparameter {
                op: OP,
                name: "momentum",
                value: momentum,
                reason: "must lie in [0, 1]",
            });
        }
        let x = self.value();
        let layout = Layout::of(OP, x.shape())?;
        let per_channel = |v: Option<Var<'t, T>>| -> Result<Option<Arc<Tensor<T>>>> {
            v.map(|v| {
                self.same_tape(v, OP)?;
                let value = v.value();
                check_channels(OP, &value, layout.c)?;
                Ok(value)
            })
            .transpose()
        };
        let w = per_channel(weight)?;
        let b = per_channel(bias)?;
        if let Some(r) = &running {
            check_channels(OP, r.mean, layout.c)?;
            check_channels(OP, r.var, layout.c)?;
        }
        let count = layout.count();
        if training && count == 1 {
            return Err(Error::InvalidArgument {
                op: OP,
                reason: format!(
                    "expected more than 1 value per channel when training, got input of shape {}",
                    x.shape()
                ),
            });
        }
        let eps_t = T::from_f64(eps);
        let mut y = Tensor::overwritable(OP, x.shape().clone())?;
        let (mean, rstd) = if training {
            batch_statistics(OP, &x, layout, eps_t, y.data_mut(), running, momentum)?
        } else {
            let Some(running) = running else {
                return Err(Error::InvalidArgument {
                    op: OP,
                    reason: "running statistics must be given in evaluation mode".to_string(),
                });
            };
            let mean = pool::try_copy(OP, running.mean.data())?;
            let rstd = pool::try_collect(
                OP,
                layout.c,
                running
                    .var
                    .data()
                    .iter()
                    .map(|&v| T::ONE / (v + eps_t).sqrt()),
            )?;
            // The centred input, as in training.
            // (A non-empty x has hw, c ≥ 1.)
            for (i, (o, &v)) in y.data_mut().iter_mut().zip(x.data()).enumerate() {
                *o = v - mean[(i / layout.hw) % layout.c];
            }
            (mean, rstd)
        };
        // y holds x − μ: scale and shift each (n, c) row.
        scale_shift(
            y.data_mut(),
            layout,
            &rstd,
            w.as_deref().map(Tensor::data),
            b.as_deref().map(Tensor::data),
        );
        let channels = Shape::new(&[layout.c])?;
        let mean = Tensor::from_shape_vec(mean, channels.clone())?;
        let rstd = Tensor::from_shape_vec(rstd, channels)?;
        let mut inputs: SmallVec<[Var<'t, T>; 3]> = smallvec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        Ok(self.tape.record(OP, y, &inputs, || BatchNormBackward {
            layout,
            training,
            has_weight: weight.is_some(),
            has_bias: bias.is_some(),
            eps,
            mean,
            rstd,
        }))
    }
}

/// The batch's mean and r per channel; writes x − μ into `y` and updates the running statistics.
fn batch_statistics<T: Float>(
    op: &'static str,
    x: &Tensor<T>,
    layout: Layout,
    eps: T,
    y: &mut [T],
    running: Option<RunningStats<'_, T>>,
    momentum: f64,
) -> Result<(Vec<T>, Vec<T>)> {
    let Layout { c, hw, .. } = layout;
    let count = layout.count();
    if count == 0 {
        // Nothing to normalise; PyTorch leaves the running statistics alone.
        let nan = T::from_f64(f64::NAN);
        return Ok((pool::try_filled(op, c, nan)?, pool::try_filled(op, c, nan)?));
    }
    let xs = x.data();
    let row = |n: usize, ch: usize| (n * c + ch) * hw;
    let total = T::from_f64(count as f64);
    let mut mean = channel_sums(op, layout, |n, ch| sum(&xs[row(n, ch)..row(n, ch) + hw]))?;
    for m in mean.iter_mut() {
        *m /= total;
    }
    for (i, (o, &v)) in y.iter_mut().zip(xs).enumerate() {
        *o = v - mean[(i / hw) % c];
    }
    let centred: &[T] = y;
    let squares = channel_sums(op, layout, |n, ch| {
        let r = &centred[row(n, ch)..row(n, ch) + hw];
        dot(r, r)
    })?;
    let rstd = pool::try_collect(
        op,
        c,
        squares.iter().map(|&s| T::ONE / (s / total + eps).sqrt()),
    )?;
    if let Some(running) = running {
        let keep = T::from_f64(1.0 - momentum);
        let m = T::from_f64(momentum);
        for (r, &bm) in running.mean.data_mut().iter_mut().zip(&mean) {
            *r = keep * *r + m * bm;
        }
        let unbiased_count = T::from_f64((count - 1) as f64);
        for (r, &s) in running.var.data_mut().iter_mut().zip(&squares) {
            *r = keep * *r + m * (s / unbiased_count);
        }
    }
    Ok((mean, rstd))
}

/// `y ← y·r_c·w_c + b_c` for every element of channel c (y holds x − μ).
fn scale_shift<T: Float>(
    y: &mut [T],
    layout: Layout,
    rstd: &[T],
    w: Option<&[T]>,
    b: Option<&[T]>,
) {
    let Layout { c, hw, .. } = layout;
    if hw == 0 || c == 0 {
        return;
    }
    for (i, row) in y.chunks_exact_mut(hw).enumerate() {
        let ch = i % c;
        let r = rstd[ch];
        let w = w.map_or(T::ONE, |w| w[ch]);
        match b {
            Some(b) => {
                let b = b[ch];
                for o in row.iter_mut() {
                    *o = *o * r * w + b;
                }
            }
            None => {
                for o in row.iter_mut() {
                    *o = *o * r * w;
                }
            }
        }
    }
}

/// Batch norm's backward: saves μ and r per channel (the batch's in training, the running
/// statistics' in eval, copied because the caller keeps the running tensors).
#[derive(Debug)]
struct BatchNormBackward<T: Float> {
    layout: Layout,
    training: bool,
    has_weight: bool,
    has_bias: bool,
    eps: f64,
    mean: Tensor<T>,
    rstd: Tensor<T>,
}

impl<T: Float> BatchNormBackward<T> {
    fn slots(&self) -> (Option<usize>, Option<usize>) {
        let w = self.has_weight.then_some(1);
        let b = self.has_bias.then_some(1 + usize::from(self.has_weight));
        (w, b)
    }
}

impl<T: Float> Backward<T> for BatchNormBackward<T> {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        const OP: &str = "batch_norm";
        let (w_slot, b_slot) = self.slots();
        let layout = self.layout;
        let Layout { c, hw, .. } = layout;
        let x = cx.input(0);
        let (xs, gs) = (x.data(), g.data());
        let (mean, rstd) = (self.mean.data(), self.rstd.data());
        let w = w_slot.map(|i| cx.input(i).data());
        let row = |n: usize, ch: usize| (n * c + ch) * hw;
        let empty = layout.count() == 0 || c == 0;

        // Σ g and Σ g·x̂ per channel (x̂ formed row by row in a scratch).
        let sum_g = if empty {
            pool::try_zeroed(OP, c)?
        } else {
            channel_sums(OP, layout, |n, ch| sum(&gs[row(n, ch)..row(n, ch) + hw]))?
        };
        let sum_gxhat = if empty {
            pool::try_zeroed(OP, c)?
        } else {
            let mut xhat = pool::try_dirty::<T>(OP, hw)?;
            channel_sums(OP, layout, |n, ch| {
                let start = row(n, ch);
                for (h, &v) in xhat.iter_mut().zip(&xs[start..start + hw]) {
                    *h = (v - mean[ch]) * rstd[ch];
                }
                dot(&gs[start..start + hw], &xhat)
            })?
        };
        let dx = grad_if(cx.needs_grad(0), || {
            let mut dx = Tensor::overwritable(OP, x.shape().clone())?;
            if empty || hw == 0 {
                return Ok(dx);
            }
            let total = T::from_f64(layout.count() as f64);
            for (i, ((o, &gv), &xv)) in dx.data_mut().iter_mut().zip(gs).zip(xs).enumerate() {
                let ch = (i / hw) % c;
                let scale = w.map_or(T::ONE, |w| w[ch]) * rstd[ch];
                *o = if self.training {
                    let xhat = (xv - mean[ch]) * rstd[ch];
                    scale * (gv - sum_g[ch] / total - xhat * (sum_gxhat[ch] / total))
                } else {
                    gv * scale
                };
            }
            Ok(dx)
        })?;
        let mut out: InputGrads<T> = smallvec![dx];
        let param = |slot: usize, values: Vec<T>| -> Result<Option<Tensor<T>>> {
            grad_if(cx.needs_grad(slot), || {
                Tensor::from_shape_vec(values, cx.input(slot).shape().clone())
            })
        };
        if let Some(i) = w_slot {
            out.push(param(i, sum_gxhat)?);
        }
        if let Some(i) = b_slot {
            out.push(param(i, sum_g)?);
        }
        Ok(out)
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (w_slot, b_slot) = self.slots();
        let Layout { n, c, hw } = self.layout;
        let tape = cx.tape();
        let x = cx.input(0);
        let x3 = x.reshape(&[n, c, hw])?;
        let g3 = g.reshape(&[n, c, hw])?;
        // Mean over the batch and spatial axes, kept as [1, C, 1].
        let channel_mean = |v: Var<'t, T>| -> Result<Var<'t, T>> {
            v.sum_axis(2, true)?
                .sum_axis(0, true)?
                .div_scalar(T::from_f64(self.layout.count() as f64))
        };
        let (xhat, rstd) = if self.training {
            let xc = x3.sub(channel_mean(x3)?)?;
            let var = channel_mean(xc.mul(xc)?)?;
            let rstd = inverse_sqrt(var.add_scalar(T::from_f64(self.eps))?)?;
            (xc.mul(rstd)?, rstd)
        } else {
            let mean = tape.constant(self.mean.reshape(&[1, c, 1])?);
            let rstd = tape.constant(self.rstd.reshape(&[1, c, 1])?);
            (x3.sub(mean)?.mul(rstd)?, rstd)
        };
        let weight = w_slot
            .map(|i| cx.input(i).reshape(&[1, c, 1]))
            .transpose()?;
        let gw = match weight {
            Some(w) => g3.mul(w)?,
            None => g3,
        };
        let dx = grad_if(cx.needs_grad(0), || {
            let inner = if self.training {
                gw.sub(channel_mean(gw)?)?
                    .sub(xhat.mul(channel_mean(gw.mul(xhat)?)?)?)?
            } else {
                gw
            };
            inner.mul(rstd)?.reshape(x.shape().dims())
        })?;
        let channel_sum = |v: Var<'t, T>, slot: usize| -> Result<Var<'t, T>> {
            v.sum_axis(2, false)?
                .sum_axis(0, false)?
                .reshape(cx.input(slot).shape().dims())
        };
        let mut out: InputVars<'t, T> = smallvec![dx];
        if let Some(i) = w_slot {
            out.push(grad_if(cx.needs_grad(i), || channel_sum(g3.mul(xhat)?, i))?);
        }
        if let Some(i) = b_slot {
            out.push(grad_if(cx.needs_grad(i), || channel_sum(g3, i))?);
        }
        Ok(out)
    }

    fn saved_bytes(&self) -> usize {
        (self.mean.numel() + self.rstd.numel()) * std::mem::size_of::<T>()
    }

    fn describe_saved(&self) -> String {
        format!(
            "{} mean and 1/std of {} channels",
            if self.training { "batch" } else { "running" },
            self.layout.c
        )
    }
}
