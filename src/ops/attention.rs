//! Scaled dot-product attention, fused: scores, masked softmax, dropout and the value product in
//! one op with one backward rule.
//!
//! For each (batch, head) slice, with Q `[L, E]`, K `[S, E]`, V `[S, Ev]` and scale c = 1/√E:
//!
//! S = c·Q·Kᵀ + M,   P = softmax_rows(S),   P̃ = P ⊙ D·s,   O = P̃·V
//!
//! where M is the additive mask (−∞ where a keep-mask or the causal pattern forbids attending), D the
//! dropout keep-bits and s = 1/(1 − p). A row with nothing to attend to (every score −∞) has
//! P = 0 and hence O = 0, as PyTorch's CPU kernels return (not the NaN of a plain softmax).
//!
//! **Backward** (derived in `docs/derivations-norm-attn.md`), with G = ∂L/∂O:
//!
//! ∂L/∂V = P̃ᵀ·G,   ∂L/∂P = (G·Vᵀ) ⊙ D·s,   ∂L/∂S = P ⊙ (∂L/∂P − rowsum(∂L/∂P ⊙ P)),
//! ∂L/∂Q = c·(∂L/∂S)·K,   ∂L/∂K = c·(∂L/∂S)ᵀ·Q,   ∂L/∂M = ∂L/∂S summed to M's shape.
//!
//! **Saved state**: the probabilities P of every (batch, head) — the softmax is recomputed by no
//! one — and the dropout mask, 1 bit per element. Recomputing P from Q and K in backward (as
//! FlashAttention does, saving only a log-sum-exp per row) would save that memory at the price of a
//! third `L×S×E` product and every exponential again; at the sizes this crate trains, the backward
//! pass is faster with P kept. With `causal`, rows are processed in blocks of
//! [`CAUSAL_BLOCK_ROWS`] and each block stores and multiplies only the columns up to its last row,
//! so the masked upper triangle costs neither products nor memory (beyond the diagonal blocks).
//!
//! Every product goes through the crate's strided gemm with transposes read in place; row sums use
//! the pairwise kernel; the (batch, head) slices run in parallel for large inputs, each computed
//! exactly as it would be alone, so the results do not depend on the thread count.

use std::sync::Arc;

use rand::Rng;
use rayon::prelude::*;
use smallvec::{SmallVec, smallvec};

use super::dropout::check_probability;
use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars, dropout_scale_in, grad_if};
use crate::bitmask::BitMask;
use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels::gemm::{MatRef, matmul_into};
use crate::kernels::pool;
use crate::kernels::sum::{dot, sum};
use crate::kernels::vecmath;
use crate::shape::Shape;
use crate::tape::Var;
use crate::tensor::{Tensor, parallel};

const OP: &str = "scaled_dot_product_attention";

/// Rows per block of the causal kernel. Each block multiplies only the key columns its rows may
/// see, so smaller blocks skip more of the masked triangle but make more (smaller) products.
const CAUSAL_BLOCK_ROWS: usize = 32;

/// An attention mask, broadcast to the scores' shape `[..., L, S]`.
///
/// PyTorch's `attn_mask` is either boolean (true = attend) or a float tensor added to the scores;
/// tapegrad tensors are floats, so the two are told apart by the variant.
#[derive(Clone, Copy, Debug)]
pub enum AttnMask<'t, T: Float> {
    /// Attend where the value is nonzero (PyTorch's boolean mask; NaN counts as nonzero). Not
    /// differentiable: it receives no gradient.
    Keep(Var<'t, T>),
    /// Added to the scaled scores before the softmax (−∞ forbids attending). Receives the
    /// gradient ∂L/∂S summed over the axes it was broadcast along.
    Additive(Var<'t, T>),
}

impl<'t, T: Float> AttnMask<'t, T> {
    fn var(self) -> Var<'t, T> {
        match self {
            AttnMask::Keep(v) | AttnMask::Additive(v) => v,
        }
    }
}

/// Which mask the op was given (the mask itself is input 3 on the tape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MaskKind {
    None,
    Keep,
    Additive,
}

/// The rows of one (batch, head) slice that are multiplied together, and where their
/// probabilities are stored.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// First query row.
    r0: usize,
    /// Query rows in the block.
    rows: usize,
    /// Key columns stored for it (all S, or with `causal` those up to its last row).
    width: usize,
    /// Offset of its `[rows, width]` probabilities within the slice's.
    offset: usize,
}

/// Sizes of the problem and the block layout of the saved probabilities.
#[derive(Debug, Clone)]
struct Geometry {
    /// (batch, head) slices.
    heads: usize,
    l: usize,
    s: usize,
    e: usize,
    ev: usize,
    causal: bool,
    blocks: Vec<Block>,
    /// Stored probabilities per slice.
    per_head: usize,
    /// `[..., L, S]`.
    scores_shape: Shape,
}

impl Geometry {
    fn new(lead: &[usize], l: usize, s: usize, e: usize, ev: usize, causal: bool) -> Result<Self> {
        let heads = Shape::new(lead)?.numel();
        let mut scores: SmallVec<[usize; 4]> = SmallVec::from_slice(lead);
        scores.extend([l, s]);
        let scores_shape = Shape::checked(scores)?;
        let block_rows = if causal { CAUSAL_BLOCK_ROWS } else { l.max(1) };
        let mut blocks = Vec::new();
        let mut offset = 0;
        let mut r0 = 0;
        while r0 < l {
            let rows = block_rows.min(l - r0);
            // Row i may see columns j ≤ i (PyTorch's top-left aligned `is_causal`).
            let width = if causal { (r0 + rows).min(s) } else { s };
            blocks.push(Block {
                r0,
                rows,
                width,
                offset,
            });
            // At most L·S, which fits: scores_shape was checked.
            offset += rows * width;
            r0 += rows;
        }
        Ok(Geometry {
            heads,
            l,
            s,
            e,
            ev,
            causal,
            blocks,
            per_head: offset,
            scores_shape,
        })
    }

    /// Columns of row `i` that may be attended, within a block storing `width` of them.
    #[inline]
    fn live(&self, i: usize, width: usize) -> usize {
        if self.causal {
            (i + 1).min(width)
        } else {
            width
        }
    }

    /// Largest block, for the scratch buffers.
    fn largest_block(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.rows * b.width)
            .max()
            .unwrap_or(0)
    }

    /// Whether the slices are worth spreading over threads.
    fn parallel(&self) -> bool {
        self.heads > 1 && parallel(self.heads * self.per_head * (self.e + self.ev).max(1) / 8)
    }
}

// ---------------------------------------------------------------------------------------------
// Row kernels
// ---------------------------------------------------------------------------------------------

/// `row[j] ← e^(row[j] − shift)` for every j.
type ExpShifted<T> = fn(&mut [T], T);

/// The exponential kernel for `T`: the shift, then the vectorised exponential of
/// `crate::kernels::vecmath` (within 1 ulp, f32 and f64).
fn exp_shifted_kernel<T: Float>() -> ExpShifted<T> {
    exp_shifted::<T>
}

fn exp_shifted<T: Float>(row: &mut [T], shift: T) {
    for x in row.iter_mut() {
        *x -= shift;
    }
    vecmath::exp_in_place(row);
}

/// Softmax of one row in place, PyTorch's "safe" softmax: a row whose scores are all −∞ (or that
/// is empty) has nothing to attend to and becomes 0, not NaN; a NaN score makes the row NaN.
fn softmax_in_place<T: Float>(row: &mut [T], exp: ExpShifted<T>) {
    let max = row.iter().copied().fold(T::NEG_INFINITY, T::max);
    if max == T::NEG_INFINITY {
        // `max` skips NaN: a row of NaN and −∞ must still come out NaN.
        let fill = if row.iter().any(|x| x.is_nan()) {
            T::from_f64(f64::NAN)
        } else {
            T::ZERO
        };
        row.fill(fill);
        return;
    }
    exp(row, max);
    let inv = T::ONE / sum(row);
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// `dst[j] = src[j]·(bit (start + j) ? scale : 0)`: dropout applied to a row (a dropped NaN stays
/// NaN, as in PyTorch's `x * mask * scale`).
fn dropout_row<T: Float>(src: &[T], dst: &mut [T], words: &[u64], start: usize, scale: T) {
    for (j, (d, &x)) in dst.iter_mut().zip(src).enumerate() {
        let bit = start + j;
        *d = x * scale.keep_or_zero(words[bit / 64] >> (bit % 64) & 1 == 1);
    }
}

/// `row[j] ← row[j]·(bit (start + j) ? scale : 0)`.
fn dropout_row_in_place<T: Float>(row: &mut [T], words: &[u64], start: usize, scale: T) {
    for (j, x) in row.iter_mut().enumerate() {
        let bit = start + j;
        *x *= scale.keep_or_zero(words[bit / 64] >> (bit % 64) & 1 == 1);
    }
}

// ---------------------------------------------------------------------------------------------
// One (batch, head) slice
// ---------------------------------------------------------------------------------------------

/// The mask of one slice, broadcast to `[L, S]`.
#[derive(Clone, Copy)]
enum SliceMask<'a, T> {
    None,
    Keep(&'a [T]),
    Additive(&'a [T]),
}

/// The inputs of one slice.
#[derive(Clone, Copy)]
struct SliceInputs<'a, T> {
    head: usize,
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    mask: SliceMask<'a, T>,
}

/// The dropout of the whole op: its keep-bits over `[heads, L, S]` and scale.
type Dropout<'a, T> = Option<(&'a BitMask, T)>;

/// Forward of one slice: the probabilities into `probs` (block layout), the output into `out`.
#[allow(clippy::too_many_arguments)]
fn forward_slice<T: Float>(
    geo: &Geometry,
    scale: T,
    input: SliceInputs<'_, T>,
    dropout: Dropout<'_, T>,
    exp: ExpShifted<T>,
    probs: &mut [T],
    out: &mut [T],
    scratch: &mut [T],
) {
    let Geometry { l, s, e, ev, .. } = *geo;
    for block in &geo.blocks {
        let (m, n, r0) = (block.rows, block.width, block.r0);
        let pb = &mut probs[block.offset..block.offset + m * n];
        // Scores of the block: Q[r0..r0+m] · K[..n]ᵀ, K read transposed in place.
        matmul_into(
            pb,
            MatRef::row_major(&input.q[r0 * e..(r0 + m) * e], m, e, false),
            MatRef::row_major(&input.k[..n * e], n, e, true),
            false,
        );
        if n > 0 {
            for (offset, row) in pb.chunks_exact_mut(n).enumerate() {
                let i = r0 + offset;
                let (live, dead) = row.split_at_mut(geo.live(i, n));
                dead.fill(T::ZERO);
                match input.mask {
                    SliceMask::None => {
                        for x in live.iter_mut() {
                            *x *= scale;
                        }
                    }
                    SliceMask::Keep(keep) => {
                        for (x, &k) in live.iter_mut().zip(&keep[i * s..]) {
                            *x = if k != T::ZERO {
                                *x * scale
                            } else {
                                T::NEG_INFINITY
                            };
                        }
                    }
                    SliceMask::Additive(add) => {
                        for (x, &a) in live.iter_mut().zip(&add[i * s..]) {
                            *x = *x * scale + a;
                        }
                    }
                }
                softmax_in_place(live, exp);
            }
        }
        let weights: &[T] = match dropout {
            Some((mask, keep_scale)) if n > 0 => {
                let dropped = &mut scratch[..m * n];
                for (offset, (src, dst)) in pb
                    .chunks_exact(n)
                    .zip(dropped.chunks_exact_mut(n))
                    .enumerate()
                {
                    let start = (input.head * l + r0 + offset) * s;
                    dropout_row(src, dst, mask.words(), start, keep_scale);
                }
                dropped
            }
            _ => pb,
        };
        matmul_into(
            &mut out[r0 * ev..(r0 + m) * ev],
            MatRef::row_major(weights, m, n, false),
            MatRef::row_major(&input.v[..n * ev], n, ev, false),
            false,
        );
    }
}

/// The gradients of one slice (each `None` if not wanted). `dk` and `dv` arrive zeroed: the
/// blocks add into them.
struct SliceGrads<'a, T> {
    dq: Option<&'a mut [T]>,
    dk: Option<&'a mut [T]>,
    dv: Option<&'a mut [T]>,
    /// ∂L/∂S, `[L, S]`, for an additive mask that wants a gradient.
    dscores: Option<&'a mut [T]>,
}

/// Backward of one slice, block by block.
#[allow(clippy::too_many_arguments)]
fn backward_slice<T: Float>(
    geo: &Geometry,
    scale: T,
    input: SliceInputs<'_, T>,
    dropout: Dropout<'_, T>,
    probs: &[T],
    g: &[T],
    mut grads: SliceGrads<'_, T>,
    scratch: &mut [T],
) {
    let Geometry { l, s, e, ev, .. } = *geo;
    let (dropped_buf, ds_buf) = scratch.split_at_mut(geo.largest_block());
    let want_ds = grads.dq.is_some() || grads.dk.is_some() || grads.dscores.is_some();
    for block in &geo.blocks {
        let (m, n, r0) = (block.rows, block.width, block.r0);
        let pb = &probs[block.offset..block.offset + m * n];
        let g_rows = &g[r0 * ev..(r0 + m) * ev];
        let bit_start = |offset: usize| (input.head * l + r0 + offset) * s;
        if let Some(dv) = grads.dv.as_deref_mut() {
            // ∂L/∂V[..n] += P̃ᵀ·G[rows], P̃ read transposed in place.
            let weights: &[T] = match dropout {
                Some((mask, keep_scale)) if n > 0 => {
                    let dropped = &mut dropped_buf[..m * n];
                    for (offset, (src, dst)) in pb
                        .chunks_exact(n)
                        .zip(dropped.chunks_exact_mut(n))
                        .enumerate()
                    {
                        dropout_row(src, dst, mask.words(), bit_start(offset), keep_scale);
                    }
                    dropped
                }
                _ => pb,
            };
            matmul_into(
                &mut dv[..n * ev],
                MatRef::row_major(weights, m, n, true),
                MatRef::row_major(g_rows, m, ev, false),
                true,
            );
        }
        if !want_ds {
            continue;
        }
        // ∂L/∂P̃ = G[rows]·V[..n]ᵀ, then through dropout and the softmax: ∂L/∂S.
        let ds = &mut ds_buf[..m * n];
        matmul_into(
            ds,
            MatRef::row_major(g_rows, m, ev, false),
            MatRef::row_major(&input.v[..n * ev], n, ev, true),
            false,
        );
        if n > 0 {
            for (offset, (ds_row, p_row)) in
                ds.chunks_exact_mut(n).zip(pb.chunks_exact(n)).enumerate()
            {
                let i = r0 + offset;
                if let Some((mask, keep_scale)) = dropout {
                    dropout_row_in_place(ds_row, mask.words(), bit_start(offset), keep_scale);
                }
                let live = geo.live(i, n);
                let (ds_live, ds_dead) = ds_row.split_at_mut(live);
                let p_live = &p_row[..live];
                let along = dot(ds_live, p_live);
                for (d, &p) in ds_live.iter_mut().zip(p_live) {
                    *d = p * (*d - along);
                }
                ds_dead.fill(T::ZERO);
                if let Some(dscores) = grads.dscores.as_deref_mut() {
                    dscores[i * s..i * s + n].copy_from_slice(ds_row);
                }
                for d in ds_row.iter_mut() {
                    *d *= scale;
                }
            }
        }
        let ds: &[T] = ds;
        if let Some(dq) = grads.dq.as_deref_mut() {
            // ∂L/∂Q[rows] = c·∂L/∂S · K[..n]   (c already in ds).
            matmul_into(
                &mut dq[r0 * e..(r0 + m) * e],
                MatRef::row_major(ds, m, n, false),
                MatRef::row_major(&input.k[..n * e], n, e, false),
                false,
            );
        }
        if let Some(dk) = grads.dk.as_deref_mut() {
            // ∂L/∂K[..n] += c·∂L/∂Sᵀ · Q[rows], ∂L/∂S read transposed in place.
            matmul_into(
                &mut dk[..n * e],
                MatRef::row_major(ds, m, n, true),
                MatRef::row_major(&input.q[r0 * e..(r0 + m) * e], m, e, false),
                true,
            );
        }
    }
}

/// `buffer` cut into `heads` pieces of `per` elements (empty pieces when `per` is 0).
fn per_head<T>(buffer: &mut [T], per: usize, heads: usize) -> Vec<&mut [T]> {
    if per == 0 {
        return (0..heads).map(|_| <&mut [T]>::default()).collect();
    }
    buffer.chunks_mut(per).collect()
}

/// [`per_head`] for a buffer that may be absent.
fn per_head_optional<T>(
    buffer: Option<&mut [T]>,
    per: usize,
    heads: usize,
) -> Vec<Option<&mut [T]>> {
    match buffer {
        Some(buffer) => per_head(buffer, per, heads).into_iter().map(Some).collect(),
        None => (0..heads).map(|_| None).collect(),
    }
}

/// Runs `work(item, scratch)` for every item, on several threads if `parallel`, each with a
/// scratch buffer of `scratch_len` elements.
fn run_slices<T: Float, I: Send>(
    items: Vec<I>,
    parallel: bool,
    scratch_len: usize,
    work: impl Fn(I, &mut [T]) + Sync + Send,
) -> Result<()> {
    let out_of_memory = || Error::OutOfMemory {
        op: OP,
        bytes: scratch_len as u128 * std::mem::size_of::<T>() as u128,
    };
    if parallel {
        items.into_par_iter().try_for_each_init(
            || pool::try_dirty::<T>(OP, scratch_len).ok(),
            |scratch, item| {
                let scratch = scratch.as_deref_mut().ok_or_else(out_of_memory)?;
                work(item, scratch);
                Ok(())
            },
        )
    } else {
        let mut scratch = pool::try_dirty::<T>(OP, scratch_len)?;
        for item in items {
            work(item, &mut scratch);
        }
        Ok(())
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// Scaled dot-product attention of queries `self` `[..., L, E]` over keys `[..., S, E]` and
    /// values `[..., S, Ev]` (equal leading axes), giving `[..., L, Ev]`:
    /// softmax(Q·Kᵀ/√E + M)·V, with the softmax over the S keys.
    ///
    /// - `mask`: a keep-mask or an additive mask, broadcast to `[..., L, S]` (see [`AttnMask`]).
    /// - `causal`: query i attends to keys j ≤ i (top-left aligned, PyTorch's `is_causal`);
    ///   cannot be combined with a mask (as in PyTorch).
    /// - `dropout_p`: dropout on the attention probabilities, its mask drawn like
    ///   [`Var::dropout`]'s (one `u64` from `rng`, nothing for p = 0 or 1) and saved 1 bit per
    ///   element for backward.
    ///
    /// A query with nothing to attend to (every key masked) gets an output of 0 and no gradient,
    /// as PyTorch's CPU kernels give.
    ///
    /// With P the probabilities, P̃ = P ⊙ D/(1 − p) after dropout and G = ∂L/∂O:
    /// ∂/∂V = P̃ᵀ·G, ∂/∂S = P ⊙ (∂P − rowsum(∂P ⊙ P)) with ∂P = (G·Vᵀ) ⊙ D/(1 − p),
    /// ∂/∂Q = ∂S·K/√E, ∂/∂K = ∂Sᵀ·Q/√E, ∂/∂M = ∂S (summed over broadcast axes).
    /// Saves P of every (batch, head) and the dropout bits.
    ///
    /// Not followed from PyTorch: the leading (batch, head) axes of Q, K and V must be equal (PyTorch
    /// also broadcasts them); `scale` is always 1/√E; a mask is a float tensor (see [`AttnMask`]).
    ///
    /// PyTorch equivalent: `F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
    /// dropout_p=dropout_p, is_causal=causal)`.
    ///
    /// ```
    /// use rand::SeedableRng;
    /// use tapegrad::{Tape, Tensor};
    /// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
    /// let tape = Tape::<f64>::new();
    /// let q = tape.leaf(Tensor::normal(&[2, 4, 3], 0.0, 1.0, &mut rng)?);
    /// let k = tape.leaf(Tensor::normal(&[2, 4, 3], 0.0, 1.0, &mut rng)?);
    /// let v = tape.leaf(Tensor::normal(&[2, 4, 5], 0.0, 1.0, &mut rng)?);
    /// let out = q.scaled_dot_product_attention(k, v, None, true, 0.0, &mut rng)?;
    /// assert_eq!(out.value().dims(), &[2, 4, 5]);
    /// // The first query may only see the first key: its output is the first value row.
    /// assert!((out.value().get(&[0, 0, 2])? - v.value().get(&[0, 0, 2])?).abs() < 1e-15);
    /// let grads = out.sum()?.backward()?;
    /// assert_eq!(grads.wrt(k)?.dims(), &[2, 4, 3]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn scaled_dot_product_attention<R: Rng + ?Sized>(
        self,
        key: Var<'t, T>,
        value: Var<'t, T>,
        mask: Option<AttnMask<'t, T>>,
        causal: bool,
        dropout_p: f64,
        rng: &mut R,
    ) -> Result<Var<'t, T>> {
        self.same_tape(key, OP)?;
        self.same_tape(value, OP)?;
        if let Some(mask) = mask {
            self.same_tape(mask.var(), OP)?;
        }
        check_probability(OP, dropout_p)?;
        if mask.is_some() && causal {
            return Err(Error::InvalidArgument {
                op: OP,
                reason: "an explicit mask cannot be combined with causal = true".to_string(),
            });
        }
        let (q, k, v) = (self.value(), key.value(), value.value());
        for t in [&q, &k, &v] {
            if t.shape().rank() < 2 {
                return Err(Error::BadRank {
                    op: OP,
                    expected: "queries, keys and values of at least 2 axes ([..., L, E])",
                    shape: t.shape().clone(),
                });
            }
        }
        let (qd, kd, vd) = (q.dims(), k.dims(), v.dims());
        let rank = qd.len();
        let lead = &qd[..rank - 2];
        if kd.len() != rank || kd[..rank - 2] != *lead || kd[rank - 1] != qd[rank - 1] {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: q.shape().clone(),
                rhs: k.shape().clone(),
            });
        }
        if vd.len() != rank || vd[..rank - 2] != *lead || vd[rank - 2] != kd[rank - 2] {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: k.shape().clone(),
                rhs: v.shape().clone(),
            });
        }
        let (l, e, s, ev) = (qd[rank - 2], qd[rank - 1], kd[rank - 2], vd[rank - 1]);
        let geo = Geometry::new(lead, l, s, e, ev, causal)?;
        let mask_values = mask
            .map(|m| broadcast_mask(m.var(), &geo.scores_shape))
            .transpose()?;
        let kind = match mask {
            None => MaskKind::None,
            Some(AttnMask::Keep(_)) => MaskKind::Keep,
            Some(AttnMask::Additive(_)) => MaskKind::Additive,
        };
        let dropout = if dropout_p > 0.0 {
            let bits = BitMask::dropout(geo.heads * l * s, dropout_p, rng)?;
            Some((Arc::new(bits), dropout_scale_in::<T>(dropout_p)))
        } else {
            None
        };
        let scale = attention_scale::<T>(e);

        let mut out_dims: SmallVec<[usize; 4]> = SmallVec::from_slice(lead);
        out_dims.extend([l, ev]);
        let mut out = Tensor::overwritable(OP, Shape::checked(out_dims)?)?;
        let mut probs = Tensor::overwritable(OP, Shape::new(&[geo.heads * geo.per_head])?)?;
        let exp = exp_shifted_kernel::<T>();
        let items: Vec<_> = per_head(probs.data_mut(), geo.per_head, geo.heads)
            .into_iter()
            .zip(per_head(out.data_mut(), l * ev, geo.heads))
            .enumerate()
            .collect();
        let dropout_ref = dropout.as_ref().map(|(bits, s)| (&**bits, *s));
        let (qs, ks, vs) = (q.data(), k.data(), v.data());
        let mask_data = mask_values.as_deref().map(Tensor::data);
        run_slices::<T, _>(
            items,
            geo.parallel(),
            geo.largest_block(),
            |(head, (probs, out)), scratch| {
                let input = slice_inputs(&geo, head, qs, ks, vs, kind, mask_data);
                forward_slice(&geo, scale, input, dropout_ref, exp, probs, out, scratch);
            },
        )?;

        let mut inputs: SmallVec<[Var<'t, T>; 4]> = smallvec![self, key, value];
        inputs.extend(mask.map(AttnMask::var));
        Ok(self.tape.record(OP, out, &inputs, || AttentionBackward {
            geo,
            scale,
            kind,
            probs,
            dropout,
        }))
    }
}

/// 1/√E as PyTorch computes it (in f64, then rounded to `T`); 1 for E = 0, where every score is
/// an empty sum (0) and PyTorch returns the mean of the values.
fn attention_scale<T: Float>(e: usize) -> T {
    if e == 0 {
        T::ONE
    } else {
        T::from_f64(1.0 / (e as f64).sqrt())
    }
}

/// The mask's value broadcast to the scores' shape (shared, not copied, if already that shape).
fn broadcast_mask<T: Float>(mask: Var<'_, T>, scores: &Shape) -> Result<Arc<Tensor<T>>> {
    let value = mask.value();
    if value.shape() == scores {
        return Ok(value);
    }
    if !value.shape().broadcasts_to(scores) {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: value.shape().clone(),
            rhs: scores.clone(),
        });
    }
    Ok(Arc::new(value.broadcast_to(scores)?))
}

/// The inputs of slice `head`.
fn slice_inputs<'a, T: Float>(
    geo: &Geometry,
    head: usize,
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    kind: MaskKind,
    mask: Option<&'a [T]>,
) -> SliceInputs<'a, T> {
    let Geometry { l, s, e, ev, .. } = *geo;
    let mask = match (kind, mask) {
        (MaskKind::Keep, Some(m)) => SliceMask::Keep(&m[head * l * s..(head + 1) * l * s]),
        (MaskKind::Additive, Some(m)) => SliceMask::Additive(&m[head * l * s..(head + 1) * l * s]),
        _ => SliceMask::None,
    };
    SliceInputs {
        head,
        q: &q[head * l * e..(head + 1) * l * e],
        k: &k[head * s * e..(head + 1) * s * e],
        v: &v[head * s * ev..(head + 1) * s * ev],
        mask,
    }
}

/// Saves the probabilities of every slice (block layout), the dropout bits and scale.
#[derive(Debug)]
struct AttentionBackward<T: Float> {
    geo: Geometry,
    scale: T,
    kind: MaskKind,
    probs: Tensor<T>,
    dropout: Option<(Arc<BitMask>, T)>,
}

impl<T: Float> Backward<T> for AttentionBackward<T> {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let geo = &self.geo;
        let Geometry {
            heads, l, s, e, ev, ..
        } = *geo;
        let (q, k, v) = (cx.input(0), cx.input(1), cx.input(2));
        let want_mask = self.kind == MaskKind::Additive && cx.needs_grad(3);
        let mut dq = grad_if(cx.needs_grad(0), || {
            Tensor::overwritable(OP, q.shape().clone())
        })?;
        let mut dk = grad_if(cx.needs_grad(1), || k.zeros_like())?;
        let mut dv = grad_if(cx.needs_grad(2), || v.zeros_like())?;
        let mut dscores = grad_if(want_mask, || {
            Tensor::overwritable(OP, geo.scores_shape.clone())
        })?;
        let items: Vec<_> = per_head_optional(dq.as_mut().map(Tensor::data_mut), l * e, heads)
            .into_iter()
            .zip(per_head_optional(
                dk.as_mut().map(Tensor::data_mut),
                s * e,
                heads,
            ))
            .zip(per_head_optional(
                dv.as_mut().map(Tensor::data_mut),
                s * ev,
                heads,
            ))
            .zip(per_head_optional(
                dscores.as_mut().map(Tensor::data_mut),
                l * s,
                heads,
            ))
            .enumerate()
            .collect();
        let dropout_ref = self.dropout.as_ref().map(|(bits, s)| (&**bits, *s));
        let (qs, ks, vs, gs, ps) = (q.data(), k.data(), v.data(), g.data(), self.probs.data());
        run_slices::<T, _>(
            items,
            geo.parallel(),
            2 * geo.largest_block(),
            |(head, (((dq, dk), dv), dscores)), scratch| {
                // P is saved: backward never reads the mask.
                let input = slice_inputs(geo, head, qs, ks, vs, MaskKind::None, None);
                let probs = &ps[head * geo.per_head..(head + 1) * geo.per_head];
                let g = &gs[head * l * ev..(head + 1) * l * ev];
                let grads = SliceGrads {
                    dq,
                    dk,
                    dv,
                    dscores,
                };
                backward_slice(
                    geo,
                    self.scale,
                    input,
                    dropout_ref,
                    probs,
                    g,
                    grads,
                    scratch,
                );
            },
        )?;
        let mut out: InputGrads<T> = smallvec![dq, dk, dv];
        if self.kind != MaskKind::None {
            let dmask = match dscores {
                Some(ds) => Some(ds.into_sum_to(cx.input(3).shape())?),
                None => None,
            };
            out.push(dmask);
        }
        Ok(out)
    }

    /// The same formula from recorded ops: P is recomputed from Q and K (batched products and a
    /// masked softmax node), so that the second derivatives see its dependence on them.
    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let geo = &self.geo;
        let Geometry {
            heads, l, s, e, ev, ..
        } = *geo;
        let (q, k, v) = (cx.input(0), cx.input(1), cx.input(2));
        let q3 = q.reshape(&[heads, l, e])?;
        let k3 = k.reshape(&[heads, s, e])?;
        let v3 = v.reshape(&[heads, s, ev])?;
        let g3 = g.reshape(&[heads, l, ev])?;
        let mut scores = q3.attention_bmm(k3, false, true)?.mul_scalar(self.scale)?;
        if self.kind == MaskKind::Additive {
            scores = scores
                .reshape(geo.scores_shape.dims())?
                .add(cx.input(3))?
                .reshape(&[heads, l, s])?;
        }
        let keep = self.keep_bits(cx)?;
        let p = scores.masked_softmax(keep)?;
        let drop = |x: Var<'t, T>| -> Result<Var<'t, T>> {
            match &self.dropout {
                Some((bits, scale)) => x.apply_mask(OP, Arc::clone(bits), *scale),
                None => Ok(x),
            }
        };
        let dv = grad_if(cx.needs_grad(2), || {
            drop(p)?
                .attention_bmm(g3, true, false)?
                .reshape(v.shape().dims())
        })?;
        let want_mask = self.kind == MaskKind::Additive && cx.needs_grad(3);
        let mut out: InputVars<'t, T> = smallvec![None, None, dv];
        if cx.needs_grad(0) || cx.needs_grad(1) || want_mask {
            let dp = drop(g3.attention_bmm(v3, false, true)?)?;
            let ds = p.mul(dp.sub(dp.mul(p)?.sum_axis(-1, true)?)?)?;
            out[0] = grad_if(cx.needs_grad(0), || {
                ds.attention_bmm(k3, false, false)?
                    .mul_scalar(self.scale)?
                    .reshape(q.shape().dims())
            })?;
            out[1] = grad_if(cx.needs_grad(1), || {
                ds.attention_bmm(q3, true, false)?
                    .mul_scalar(self.scale)?
                    .reshape(k.shape().dims())
            })?;
            if self.kind != MaskKind::None {
                out.push(grad_if(want_mask, || {
                    ds.reshape(geo.scores_shape.dims())?
                        .sum_to(&cx.input(3).shape())
                })?);
            }
        } else if self.kind != MaskKind::None {
            out.push(None);
        }
        Ok(out)
    }

    fn saved_bytes(&self) -> usize {
        self.probs.numel() * std::mem::size_of::<T>()
            + self
                .dropout
                .as_ref()
                .map_or(0, |(bits, _)| bits.bytes() + std::mem::size_of::<T>())
    }

    fn describe_saved(&self) -> String {
        let geo = &self.geo;
        format!(
            "probabilities of {} slices of [{}, {}]{}{} (reads q, k, v)",
            geo.heads,
            geo.l,
            geo.s,
            if geo.causal {
                ", lower blocks only"
            } else {
                ""
            },
            match &self.dropout {
                Some((bits, scale)) => format!(", dropout mask {} bits, scale {scale}", bits.len()),
                None => String::new(),
            }
        )
    }

    fn saved_mask(&self) -> Option<(&BitMask, f64)> {
        self.dropout
            .as_ref()
            .map(|(bits, scale)| (&**bits, scale.to_f64()))
    }
}

impl<T: Float> AttentionBackward<T> {
    /// The scores that may be attended, for the recorded softmax: the causal pattern or the
    /// keep-mask's nonzero entries, over `[heads, L, S]`; `None` when every score may.
    fn keep_bits(&self, cx: &GraphCx<'_, T>) -> Result<Option<Arc<BitMask>>> {
        let geo = &self.geo;
        let (l, s) = (geo.l, geo.s);
        let len = geo.heads * l * s;
        if geo.causal {
            return Ok(Some(Arc::new(BitMask::from_fn(len, |idx| {
                idx % s <= (idx / s) % l
            })?)));
        }
        if self.kind == MaskKind::Keep {
            let values = broadcast_mask(cx.input(3), &geo.scores_shape)?;
            return Ok(Some(Arc::new(BitMask::from_predicate(
                values.data(),
                |x| x != T::ZERO,
            )?)));
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------------
// Building blocks of the recorded backward: a batched matrix product and a masked softmax
// ---------------------------------------------------------------------------------------------

/// `op(A)·op(B)` for every slice of `[batch, r, c]` operands, op = transpose where asked.
fn batched_product<T: Float>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    a_t: bool,
    b_t: bool,
) -> Result<Tensor<T>> {
    const NAME: &str = "batched_matmul";
    let mismatch = || Error::ShapeMismatch {
        op: NAME,
        lhs: a.shape().clone(),
        rhs: b.shape().clone(),
    };
    let (&[batch, ar, ac], &[batch_b, br, bc]) = (a.dims(), b.dims()) else {
        return Err(mismatch());
    };
    let (m, k) = if a_t { (ac, ar) } else { (ar, ac) };
    let (k_b, n) = if b_t { (bc, br) } else { (br, bc) };
    if batch != batch_b || k != k_b {
        return Err(mismatch());
    }
    let mut out = Tensor::overwritable(NAME, Shape::new(&[batch, m, n])?)?;
    let (a_len, b_len, out_len) = (ar * ac, br * bc, m * n);
    for i in 0..batch {
        matmul_into(
            &mut out.data_mut()[i * out_len..(i + 1) * out_len],
            MatRef::row_major(&a.data()[i * a_len..(i + 1) * a_len], ar, ac, a_t),
            MatRef::row_major(&b.data()[i * b_len..(i + 1) * b_len], br, bc, b_t),
            false,
        );
    }
    Ok(out)
}

impl<'t, T: Float> Var<'t, T> {
    /// Batched `op(self)·op(rhs)` over `[batch, r, c]` operands (recorded as one node).
    fn attention_bmm(self, rhs: Var<'t, T>, lhs_t: bool, rhs_t: bool) -> Result<Var<'t, T>> {
        let value = batched_product(&self.value(), &rhs.value(), lhs_t, rhs_t)?;
        Ok(self.tape.record("batched_matmul", value, &[self, rhs], || {
            BatchedMatmulBackward { lhs_t, rhs_t }
        }))
    }

    /// Safe softmax over the last axis with the entries whose bit is clear in `keep` excluded
    /// (probability 0); a row with nothing left is 0.
    fn masked_softmax(self, keep: Option<Arc<BitMask>>) -> Result<Var<'t, T>> {
        let x = self.value();
        let n = x.dims().last().copied().unwrap_or(1);
        let mut value = x.try_clone()?;
        let exp = exp_shifted_kernel::<T>();
        if n > 0 {
            for (r, row) in value.data_mut().chunks_exact_mut(n).enumerate() {
                if let Some(keep) = &keep {
                    for (j, x) in row.iter_mut().enumerate() {
                        if !keep.get(r * n + j) {
                            *x = T::NEG_INFINITY;
                        }
                    }
                }
                softmax_in_place(row, exp);
            }
        }
        Ok(self
            .tape
            .record("masked_softmax", value, &[self], || MaskedSoftmaxBackward {
                n,
            }))
    }
}

/// C = op(A)·op(B) per slice. With A' = op(A), B' = op(B): ∂L/∂A' = g·B'ᵀ, ∂L/∂B' = A'ᵀ·g, and a
/// transposed operand gets the transpose of its primed gradient. Saves the two flags.
#[derive(Debug)]
struct BatchedMatmulBackward {
    lhs_t: bool,
    rhs_t: bool,
}

impl<T: Float> Backward<T> for BatchedMatmulBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        let (a_t, b_t) = (self.lhs_t, self.rhs_t);
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || if a_t {
                batched_product(b, g, b_t, true)
            } else {
                batched_product(g, b, false, !b_t)
            })?,
            grad_if(cx.needs_grad(1), || if b_t {
                batched_product(g, a, true, a_t)
            } else {
                batched_product(a, g, !a_t, false)
            })?,
        ])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        let (a_t, b_t) = (self.lhs_t, self.rhs_t);
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || if a_t {
                b.attention_bmm(g, b_t, true)
            } else {
                g.attention_bmm(b, false, !b_t)
            })?,
            grad_if(cx.needs_grad(1), || if b_t {
                g.attention_bmm(a, true, a_t)
            } else {
                a.attention_bmm(g, !a_t, false)
            })?,
        ])
    }

    fn describe_saved(&self) -> String {
        format!("transposed: lhs {}, rhs {}", self.lhs_t, self.rhs_t)
    }
}

/// Softmax's rule, dx = p ⊙ (g − Σ(g ⊙ p)), reading the output p (0 at excluded entries, so they
/// get no gradient). Saves the row length.
#[derive(Debug)]
struct MaskedSoftmaxBackward {
    n: usize,
}

impl<T: Float> Backward<T> for MaskedSoftmaxBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let mut dx = g.try_clone()?;
        if self.n > 0 {
            let p = cx.output().data();
            for (dx_row, p_row) in dx
                .data_mut()
                .chunks_exact_mut(self.n)
                .zip(p.chunks_exact(self.n))
            {
                let along = dot(dx_row, p_row);
                for (d, &pi) in dx_row.iter_mut().zip(p_row) {
                    *d = pi * (*d - along);
                }
            }
        }
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let p = cx.output();
        let along = g.mul(p)?.sum_axis(-1, true)?;
        Ok(smallvec![Some(p.mul(g.sub(along)?)?)])
    }

    fn saved_bytes(&self) -> usize {
        std::mem::size_of::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shifted_exponential_is_within_one_ulp() {
        // Against the f64 exponential (f32) and std's (f64), which are independent of the kernel.
        let xs: Vec<f32> = (0..2000).map(|i| -87.0 + i as f32 * 0.0437).collect();
        let mut a = xs.clone();
        exp_shifted_kernel::<f32>()(&mut a, 1.0);
        for (&x, &got) in xs.iter().zip(&a) {
            let want = ((x - 1.0) as f64).exp();
            // One ulp of the result, at least the subnormal spacing 2⁻¹⁴⁹ (results below 2⁻¹²⁶).
            let ulp = ((want as f32).abs() as f64 * f32::EPSILON as f64).max(2f64.powi(-149));
            assert!(
                ((got as f64) - want).abs() <= ulp,
                "e^({x} - 1): {got} vs {want}"
            );
        }
        let mut b = [0.5f64, -1.0, f64::NEG_INFINITY];
        exp_shifted_kernel::<f64>()(&mut b, 1.0);
        for (got, want) in b.iter().zip([(-0.5f64).exp(), (-2.0f64).exp(), 0.0]) {
            assert!((got - want).abs() <= want * f64::EPSILON, "{got} vs {want}");
        }
        let mut c = [f32::NEG_INFINITY, f32::NAN, 0.0];
        exp_shifted_kernel::<f32>()(&mut c, 0.0);
        assert!(c[0] == 0.0 && c[1].is_nan() && c[2] == 1.0);
    }
}
