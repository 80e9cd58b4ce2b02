//! Convolution: `conv2d` and `conv1d` (PyTorch's cross-correlation, with stride, zero padding,
//! dilation and groups).
//!
//! For one image and one group, with a weight W of shape [C_out, C_in, kH, kW]:
//!
//! ```text
//! y[o, i, j] = b[o] + Σ_{c, p, q} W[o, c, p, q] · x[c, i·s_h + p·d_h − pad_h, j·s_w + q·d_w − pad_w]
//! ```
//!
//! (x read as 0 outside the image). Gather every patch the kernel sees into one column of a matrix,
//! **col** = im2col(x) of shape [C_in·kH·kW, H_out·W_out]; the convolution is then one matrix
//! product, Y = W·col with W viewed as [C_out, C_in·kH·kW]. Backward follows from the matrix
//! product's rule (see `docs/derivations-conv.md`):
//!
//! - ∂L/∂W = Σₙ gₙ · colₙᵀ (summed over the batch),
//! - ∂L/∂x = col2im(Wᵀ · gₙ), where col2im adds every column back onto the pixels it was read from
//!   (overlapping patches accumulate),
//! - ∂L/∂b = Σ over batch and positions of g.
//!
//! The transposes are strided views, never copies; col is rebuilt in backward rather than saved
//! (cheap, and it keeps the tape's memory at the inputs alone); a 1×1 kernel with stride 1 and no
//! padding skips im2col (col is x itself); images with small output planes share one col and one
//! product ("stacks"), so that the product is not too thin to be fast. The batch is split into
//! blocks whose boundaries depend only on the shapes; blocks run in parallel, each image's work is
//! independent, and the per-block weight gradients are added with the pairwise summation kernel,
//! so results are bit-identical at any thread count.
//!
//! **Second derivatives.** The convolution F(x, W) is bilinear, and so are its two backward maps:
//! B_x(g, W) = ∂⟨F(x, W), g⟩/∂x and B_W(x, g) = ∂⟨F(x, W), g⟩/∂W. All three come from the one
//! trilinear form ⟨F(x, W), g⟩, so the backward of each is made of the other two:
//!
//! | node | ∂/∂(first input) | ∂/∂(second input) |
//! |---|---|---|
//! | y = F(x, W) | B_x(u, W) | B_W(x, u) |
//! | dx = B_x(g, W) | F(u, W) | B_W(u, g) |
//! | dW = B_W(x, g) | B_x(g, u) | F(x, u) |
//!
//! (u the incoming gradient). Each is recorded as its own node, so backward can be differentiated
//! any number of times.

use std::sync::Arc;

use rayon::prelude::*;
use smallvec::{SmallVec, smallvec};

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars, grad_if};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels::gemm::{MatRef, matmul_into};
use crate::kernels::pool;
use crate::kernels::sum::{sum, sum_rows};
use crate::shape::Shape;
use crate::tape::Var;
use crate::tensor::Tensor;

/// A per-axis setting given either as one number for both axes or as an `(h, w)` pair, like
/// PyTorch's `int or tuple` arguments: `.stride(2)` or `.stride((2, 1))`.
pub trait IntoPair {
    /// The `(height, width)` pair.
    fn into_pair(self) -> (usize, usize);
}

impl IntoPair for usize {
    fn into_pair(self) -> (usize, usize) {
        (self, self)
    }
}

impl IntoPair for (usize, usize) {
    fn into_pair(self) -> (usize, usize) {
        self
    }
}

impl IntoPair for [usize; 2] {
    fn into_pair(self) -> (usize, usize) {
        (self[0], self[1])
    }
}

/// Settings of [`Var::conv2d`], as PyTorch's `F.conv2d` keywords; each pair is (height, width).
///
/// ```
/// use tapegrad::Conv2dOptions;
/// let o = Conv2dOptions::default().padding(1).stride((2, 1));
/// assert_eq!((o.stride, o.padding, o.dilation, o.groups), ((2, 1), (1, 1), (1, 1), 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between neighbouring windows (≥ 1). Default (1, 1).
    pub stride: (usize, usize),
    /// Zeros added on both sides of each spatial axis. Default (0, 0).
    pub padding: (usize, usize),
    /// Spacing between kernel taps (≥ 1). Default (1, 1).
    pub dilation: (usize, usize),
    /// Channel groups (≥ 1, dividing both channel counts); `groups = C_in` is a depthwise
    /// convolution. Default 1.
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dOptions {
    /// The defaults: stride 1, no padding, dilation 1, one group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the stride (one number for both axes, or `(h, w)`).
    pub fn stride(mut self, stride: impl IntoPair) -> Self {
        self.stride = stride.into_pair();
        self
    }

    /// Sets the zero padding (one number for both axes, or `(h, w)`).
    pub fn padding(mut self, padding: impl IntoPair) -> Self {
        self.padding = padding.into_pair();
        self
    }

    /// Sets the dilation (one number for both axes, or `(h, w)`).
    pub fn dilation(mut self, dilation: impl IntoPair) -> Self {
        self.dilation = dilation.into_pair();
        self
    }

    /// Sets the number of groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
}

/// Settings of [`Var::conv1d`], as PyTorch's `F.conv1d` keywords.
///
/// ```
/// use tapegrad::Conv1dOptions;
/// let o = Conv1dOptions::default().padding(2).dilation(2);
/// assert_eq!((o.stride, o.padding, o.dilation, o.groups), (1, 2, 2, 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dOptions {
    /// Step between neighbouring windows (≥ 1). Default 1.
    pub stride: usize,
    /// Zeros added on both sides. Default 0.
    pub padding: usize,
    /// Spacing between kernel taps (≥ 1). Default 1.
    pub dilation: usize,
    /// Channel groups (≥ 1, dividing both channel counts). Default 1.
    pub groups: usize,
}

impl Default for Conv1dOptions {
    fn default() -> Self {
        Conv1dOptions {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

impl Conv1dOptions {
    /// The defaults: stride 1, no padding, dilation 1, one group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the zero padding.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the dilation.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        self
    }

    /// Sets the number of groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
}

/// Output length along one axis, as PyTorch: ⌊(size + 2·pad − dil·(k − 1) − 1)/stride⌋ + 1, or
/// `None` when the dilated kernel is longer than the padded input.
pub(crate) fn conv_out_len(
    size: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dil: usize,
) -> Option<usize> {
    let padded = size.checked_add(pad.checked_mul(2)?)?;
    let span = dil.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    padded.checked_sub(span).map(|room| room / stride + 1)
}

/// Shapes and settings of one convolution, checked. A 1-D convolution is a 2-D one of height 1.
#[derive(Debug)]
pub(crate) struct ConvGeometry {
    /// `"conv2d"` or `"conv1d"`, for errors and node names.
    op: &'static str,
    /// Spatial axes as the user sees them: 2 for conv2d, 1 for conv1d.
    spatial: usize,
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
    groups: usize,
    ho: usize,
    wo: usize,
    /// The shapes as the user sees them (rank 3/4 for conv2d, 2/3 for conv1d).
    x_shape: Shape,
    w_shape: Shape,
    y_shape: Shape,
    /// For each kernel row ki, the output rows whose tap ki reads inside the input (see
    /// [`valid_range`]); likewise for the kernel columns. Computed once: im2col asks per image.
    row_taps: SmallVec<[(usize, usize); 8]>,
    col_taps: SmallVec<[(usize, usize); 8]>,
}

impl ConvGeometry {
    fn in_plane(&self) -> usize {
        self.h * self.w
    }
    /// Saturating: an empty batch may come with an output plane too large to count.
    fn out_plane(&self) -> usize {
        self.ho.saturating_mul(self.wo)
    }
    fn cg_in(&self) -> usize {
        self.c_in / self.groups
    }
    fn cg_out(&self) -> usize {
        self.c_out / self.groups
    }
    /// Rows of col: one per (input channel of the group, kernel row, kernel column).
    fn patch(&self) -> usize {
        self.cg_in() * self.kh * self.kw
    }
    fn x_image(&self) -> usize {
        self.c_in * self.in_plane()
    }
    fn y_image(&self) -> usize {
        self.c_out * self.out_plane()
    }
    fn w_group(&self) -> usize {
        self.cg_out() * self.patch()
    }
    fn w_numel(&self) -> usize {
        self.c_out * self.patch()
    }
    /// A 1×1 kernel with stride 1 and no padding: col is the image itself.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == (1, 1) && self.pad == (0, 0)
    }
    /// Multiply-adds of one pass (forward, or one of the two backward products).
    fn flops(&self) -> usize {
        self.batch
            .saturating_mul(self.c_out)
            .saturating_mul(self.out_plane())
            .saturating_mul(self.patch())
    }
    /// The shape the bias gradient is summed to before it is viewed as `[C_out]`: 1 everywhere but
    /// the channel axis.
    fn bias_sum_shape(&self) -> Result<Shape> {
        let mut dims: SmallVec<[usize; 4]> = SmallVec::from_elem(1, self.spatial + 1);
        dims[0] = self.c_out;
        Shape::checked(dims)
    }

    /// Checks the shapes and settings of a convolution with `spatial` (1 or 2) spatial axes.
    /// `stride`, `pad`, `dil` are (h, w) pairs; for 1-D, the h entries are (1, 0, 1).
    #[allow(clippy::too_many_arguments)]
    fn new(
        op: &'static str,
        spatial: usize,
        x: &Shape,
        weight: &Shape,
        stride: (usize, usize),
        pad: (usize, usize),
        dil: (usize, usize),
        groups: usize,
    ) -> Result<ConvGeometry> {
        let positive = |name: &'static str, value: usize| {
            if value == 0 {
                Err(Error::InvalidHyperparameter {
                    op,
                    name,
                    value: 0.0,
                    reason: "must be at least 1",
                })
            } else {
                Ok(())
            }
        };
        positive("stride", stride.0.min(stride.1))?;
        positive("dilation", dil.0.min(dil.1))?;
        positive("groups", groups)?;
        let (batched_rank, input_expected, weight_expected) = if spatial == 2 {
            (
                4,
                "a 3-D [C, H, W] or 4-D [N, C, H, W] input",
                "a 4-D [C_out, C_in/groups, kH, kW] weight",
            )
        } else {
            (
                3,
                "a 2-D [C, L] or 3-D [N, C, L] input",
                "a 3-D [C_out, C_in/groups, k] weight",
            )
        };
        let rank = x.rank();
        if rank != batched_rank && rank != batched_rank - 1 {
            return Err(Error::BadRank {
                op,
                expected: input_expected,
                shape: x.clone(),
            });
        }
        if weight.rank() != batched_rank {
            return Err(Error::BadRank {
                op,
                expected: weight_expected,
                shape: weight.clone(),
            });
        }
        let batched = rank == batched_rank;
        let xd = x.dims();
        let wd = weight.dims();
        let (batch, rest) = if batched { (xd[0], &xd[1..]) } else { (1, xd) };
        let c_in = rest[0];
        let (h, w) = if spatial == 2 {
            (rest[1], rest[2])
        } else {
            (1, rest[1])
        };
        let c_out = wd[0];
        let (kh, kw) = if spatial == 2 {
            (wd[2], wd[3])
        } else {
            (1, wd[2])
        };
        if c_out == 0 {
            return Err(Error::InvalidArgument {
                op,
                reason: format!("the weight {weight} has no output channels"),
            });
        }
        if !c_in.is_multiple_of(groups) || !c_out.is_multiple_of(groups) {
            return Err(Error::InvalidArgument {
                op,
                reason: format!(
                    "groups = {groups} must divide the input channels ({c_in}, input {x}) and the output channels ({c_out}, weight {weight})"
                ),
            });
        }
        if wd[1].checked_mul(groups) != Some(c_in) {
            return Err(Error::ShapeMismatch {
                op,
                lhs: x.clone(),
                rhs: weight.clone(),
            });
        }
        if kh == 0 || kw == 0 {
            return Err(Error::InvalidArgument {
                op,
                reason: format!("the weight {weight} has an empty kernel"),
            });
        }
        if (h == 0 || w == 0) && batch > 0 && c_in > 0 {
            return Err(Error::InvalidArgument {
                op,
                reason: format!(
                    "the input {x} has a zero-size spatial axis (only the batch may be empty)"
                ),
            });
        }
        let too_large = || Error::InvalidArgument {
            op,
            reason: format!(
                "the kernel {kh}×{kw} (dilation {}×{}) is larger than the padded input {}×{} (input {x}, padding {}×{})",
                dil.0,
                dil.1,
                h.saturating_add(2 * pad.0),
                w.saturating_add(2 * pad.1),
                pad.0,
                pad.1
            ),
        };
        let ho = conv_out_len(h, kh, stride.0, pad.0, dil.0).ok_or_else(too_large)?;
        let wo = conv_out_len(w, kw, stride.1, pad.1, dil.1).ok_or_else(too_large)?;
        let mut y_dims: SmallVec<[usize; 4]> = SmallVec::new();
        if batched {
            y_dims.push(batch);
        }
        y_dims.push(c_out);
        if spatial == 2 {
            y_dims.push(ho);
        }
        y_dims.push(wo);
        Ok(ConvGeometry {
            op,
            spatial,
            batch,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride,
            pad,
            dil,
            groups,
            ho,
            wo,
            x_shape: x.clone(),
            w_shape: weight.clone(),
            y_shape: Shape::checked(y_dims)?,
            // Only im2col reads the taps, and it runs only for images with channels; an empty
            // input may come with a kernel too large to tabulate.
            row_taps: (0..if batch > 0 && c_in > 0 { kh } else { 0 })
                .map(|k| valid_range(k, dil.0, pad.0, stride.0, h, ho))
                .collect(),
            col_taps: (0..if batch > 0 && c_in > 0 { kw } else { 0 })
                .map(|k| valid_range(k, dil.1, pad.1, stride.1, w, wo))
                .collect(),
        })
    }
}

/// The output positions `lo..hi` along one axis whose tap `k` reads inside the input:
/// 0 ≤ o·stride + k·dil − pad < size.
#[inline]
fn valid_range(
    k: usize,
    dil: usize,
    pad: usize,
    stride: usize,
    size: usize,
    out: usize,
) -> (usize, usize) {
    let offset = k * dil;
    // o·stride ≥ pad − offset
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    // o·stride ≤ size − 1 + pad − offset
    let hi = match (size + pad).checked_sub(offset + 1) {
        Some(top) => (top / stride + 1).min(out),
        None => 0,
    };
    (lo.min(hi), hi)
}

/// How one kernel tap (ki, kj) of one channel reads the image: the output rows `oh_lo..oh_hi`
/// and columns `ow_lo..ow_hi` whose reads fall inside it.
struct Tap {
    oh_lo: usize,
    oh_hi: usize,
    ow_lo: usize,
    ow_hi: usize,
}

impl ConvGeometry {
    #[inline]
    fn tap(&self, ki: usize, kj: usize) -> Tap {
        let (oh_lo, oh_hi) = self.row_taps[ki];
        let (ow_lo, ow_hi) = self.col_taps[kj];
        Tap {
            oh_lo,
            oh_hi,
            ow_lo,
            ow_hi,
        }
    }

    /// Stride 1 and an output as wide as the input (the "same" convolution): consecutive output
    /// positions of a tap read consecutive input positions, across rows too, so a tap's whole
    /// row of col is one shifted copy of the plane (the columns that wrap around are fixed up).
    fn shifted_copy(&self) -> bool {
        self.stride == (1, 1) && self.wo == self.w
    }

    /// For [`ConvGeometry::shifted_copy`]: the flat input offset of tap (ki, kj) for output
    /// position 0 of row `oh_lo` — may be negative (a read left of the plane, in a column that is
    /// zeroed afterwards).
    fn shift(&self, ki: usize, kj: usize, oh_lo: usize) -> isize {
        let ih = (oh_lo + ki * self.dil.0) as isize - self.pad.0 as isize;
        ih * self.w as isize + (kj * self.dil.1) as isize - self.pad.1 as isize
    }
}

/// The part of `dst_len` consecutive positions starting at input offset `start` that lies inside a
/// plane of `plane` elements: (first position, input offset, count).
#[inline]
fn overlap(start: isize, dst_len: usize, plane: usize) -> (usize, usize, usize) {
    let skip = if start < 0 { start.unsigned_abs() } else { 0 };
    let from = start.max(0) as usize;
    let count = dst_len.saturating_sub(skip).min(plane.saturating_sub(from));
    (skip.min(dst_len), from, count)
}

/// Zeroes, in each of the rows of `block` (rows of `wo`), the columns outside `lo..hi`.
#[inline]
fn zero_outside<T: Float>(block: &mut [T], wo: usize, lo: usize, hi: usize) {
    if lo == 0 && hi == wo {
        return;
    }
    for row in block.chunks_exact_mut(wo) {
        zero(&mut row[..lo]);
        zero(&mut row[hi..]);
    }
}

/// Fills a slice with zeros; the runs im2col zeroes are mostly a column or two wide, for which a
/// call to `memset` would cost more than the run.
#[inline(always)]
fn zero<T: Float>(run: &mut [T]) {
    match run {
        [] => {}
        [a] => *a = T::ZERO,
        [a, b] => (*a, *b) = (T::ZERO, T::ZERO),
        _ => run.fill(T::ZERO),
    }
}

/// Copies `src` into `dst` (of one length); short rows are copied element by element, for the
/// same reason as [`zero`].
#[inline(always)]
fn copy<T: Float>(dst: &mut [T], src: &[T]) {
    if dst.len() <= 8 {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// im2col for one image and one group: `x` is [C_in/groups, H, W]; row k of its col (one per
/// (channel, ki, kj)) is written to `col[k·stride .. k·stride + H_out·W_out]` — `stride` is the
/// length of a row of the stack's col, in which the images of a stack sit side by side. Every
/// element of those ranges is written (0 where the window reads padding).
fn im2col<T: Float>(g: &ConvGeometry, x: &[T], col: &mut [T], stride: usize) {
    let (wo, w, plane, out_plane) = (g.wo, g.w, g.in_plane(), g.out_plane());
    let mut k = 0;
    for channel in x.chunks_exact(plane.max(1)).take(g.cg_in()) {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &mut col[k * stride..k * stride + out_plane];
                k += 1;
                let tap = g.tap(ki, kj);
                zero(&mut row[..tap.oh_lo * wo]);
                zero(&mut row[tap.oh_hi * wo..]);
                if tap.oh_lo == tap.oh_hi {
                    continue;
                }
                let block = &mut row[tap.oh_lo * wo..tap.oh_hi * wo];
                if g.shifted_copy() {
                    let (skip, from, count) =
                        overlap(g.shift(ki, kj, tap.oh_lo), block.len(), plane);
                    zero(&mut block[..skip]);
                    copy(&mut block[skip..skip + count], &channel[from..from + count]);
                    zero(&mut block[skip + count..]);
                    zero_outside(block, wo, tap.ow_lo, tap.ow_hi);
                    continue;
                }
                for (r, dst) in block.chunks_exact_mut(wo).enumerate() {
                    let ih = (tap.oh_lo + r) * g.stride.0 + ki * g.dil.0 - g.pad.0;
                    let src = &channel[ih * w..(ih + 1) * w];
                    zero(&mut dst[..tap.ow_lo]);
                    zero(&mut dst[tap.ow_hi..]);
                    if tap.ow_lo == tap.ow_hi {
                        continue;
                    }
                    let iw0 = tap.ow_lo * g.stride.1 + kj * g.dil.1 - g.pad.1;
                    let dst = &mut dst[tap.ow_lo..tap.ow_hi];
                    let step = g.stride.1;
                    if step == 1 {
                        copy(dst, &src[iw0..iw0 + dst.len()]);
                    } else {
                        // Indexing a slice cut to the last read keeps the loop free of
                        // iterator adapters (`step_by` is slow here); stride 2 (the usual
                        // downsampling) reads pairs, which the compiler turns into shuffles.
                        let src = &src[iw0..iw0 + (dst.len() - 1) * step + 1];
                        if step == 2 {
                            if let Some((last, body)) = dst.split_last_mut() {
                                for (d, pair) in body.iter_mut().zip(src.chunks_exact(2)) {
                                    *d = pair[0];
                                }
                                *last = src[src.len() - 1];
                            }
                        } else {
                            for (j, d) in dst.iter_mut().enumerate() {
                                *d = src[j * step];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// col2im for one image and one group, the adjoint of [`im2col`] (same `stride`): adds every
/// element of its col onto the pixel of `dx` ([C_in/groups, H, W]) it was read from; reads of
/// padding are dropped. `dx` is accumulated into, tap after tap in a fixed order, so overlapping
/// windows add up. `col` is scratch: the shifted-copy path zeroes its entries that read padding
/// before adding.
fn col2im<T: Float>(g: &ConvGeometry, col: &mut [T], stride: usize, dx: &mut [T]) {
    let (wo, w, plane, out_plane) = (g.wo, g.w, g.in_plane(), g.out_plane());
    let mut k = 0;
    for channel in dx.chunks_exact_mut(plane.max(1)).take(g.cg_in()) {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &mut col[k * stride..k * stride + out_plane];
                k += 1;
                let tap = g.tap(ki, kj);
                if tap.oh_lo == tap.oh_hi || tap.ow_lo == tap.ow_hi {
                    continue;
                }
                let block = &mut row[tap.oh_lo * wo..tap.oh_hi * wo];
                if g.shifted_copy() {
                    // Entries that read padding would land on a neighbouring row's pixel.
                    zero_outside(block, wo, tap.ow_lo, tap.ow_hi);
                    let (skip, from, count) =
                        overlap(g.shift(ki, kj, tap.oh_lo), block.len(), plane);
                    for (d, &s) in channel[from..from + count]
                        .iter_mut()
                        .zip(&block[skip..skip + count])
                    {
                        *d += s;
                    }
                    continue;
                }
                let iw0 = tap.ow_lo * g.stride.1 + kj * g.dil.1 - g.pad.1;
                for (r, src) in block.chunks_exact(wo).enumerate() {
                    let ih = (tap.oh_lo + r) * g.stride.0 + ki * g.dil.0 - g.pad.0;
                    let dst = &mut channel[ih * w..(ih + 1) * w];
                    let src = &src[tap.ow_lo..tap.ow_hi];
                    let step = g.stride.1;
                    if step == 1 {
                        for (d, &s) in dst[iw0..iw0 + src.len()].iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        let dst = &mut dst[iw0..iw0 + (src.len() - 1) * step + 1];
                        if step == 2 {
                            if let Some((&last, body)) = src.split_last() {
                                for (pair, &s) in dst.chunks_exact_mut(2).zip(body) {
                                    pair[0] += s;
                                }
                                let end = dst.len() - 1;
                                dst[end] += last;
                            }
                        } else {
                            for (j, &s) in src.iter().enumerate() {
                                dst[j * step] += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// How the batch is cut: blocks (for threads and the weight-gradient sum) of stacks (images that
// share one im2col buffer and one matrix product). Both depend only on the shapes.
// ---------------------------------------------------------------------------------------------

/// A stack holds enough images for its col to be about this many columns wide: small planes
/// (an 8×8 feature map has 64 positions) make one product per image too thin to be fast.
const STACK_COLUMNS: usize = 256;

/// Most blocks the batch is split into.
const MAX_BLOCKS: usize = 16;

/// Elements of weight-gradient partials kept at once (16 MiB of f32).
const PARTIALS_BUDGET: usize = 1 << 22;

/// Multiply-adds below which a convolution runs on one thread.
const PARALLEL_MIN_FLOPS: usize = 1 << 20;

impl ConvGeometry {
    /// Images per stack: 1 for planes of at least [`STACK_COLUMNS`] positions.
    fn images_per_stack(&self) -> usize {
        (STACK_COLUMNS / self.out_plane().max(1)).clamp(1, self.batch.max(1))
    }

    /// Images per block: at most [`MAX_BLOCKS`] blocks, fewer when their weight-gradient partials
    /// would pass [`PARTIALS_BUDGET`] elements, and at least one stack per block.
    fn images_per_block(&self) -> usize {
        let by_memory = (PARTIALS_BUDGET / self.w_numel().max(1)).max(1);
        let blocks = self.batch.min(MAX_BLOCKS).min(by_memory).max(1);
        self.batch
            .div_ceil(blocks)
            .max(self.images_per_stack())
            .max(1)
    }

    fn blocks(&self) -> usize {
        self.batch.div_ceil(self.images_per_block())
    }

    fn parallel(&self) -> bool {
        crate::threads::num_threads() > 1 && self.blocks() > 1 && self.flops() >= PARALLEL_MIN_FLOPS
    }

    /// Length of a row of a full stack's col (and of its output and gradient matrices).
    fn stack_columns(&self) -> usize {
        self.images_per_stack() * self.out_plane()
    }
}

/// Runs `work` over the items, on several threads when `parallel`; the first error wins.
fn run<I: Send, F: Fn(I) -> Result<()> + Sync + Send>(
    items: Vec<I>,
    parallel: bool,
    work: F,
) -> Result<()> {
    if parallel {
        items.into_par_iter().try_for_each(work)
    } else {
        items.into_iter().try_for_each(work)
    }
}

/// Scratch of one block: a stack's col, and (for stacks of several images) a stack's output or
/// output gradient gathered into one matrix. Taken from the buffer pool once per block.
struct Scratch<T: Float> {
    col: Vec<T>,
    gathered: Vec<T>,
}

impl<T: Float> Scratch<T> {
    fn new(g: &ConvGeometry) -> Result<Self> {
        let columns = g.stack_columns();
        let elements = |rows: usize| {
            rows.checked_mul(columns).ok_or(Error::OutOfMemory {
                op: g.op,
                bytes: rows as u128 * columns as u128 * std::mem::size_of::<T>() as u128,
            })
        };
        let col = if g.pointwise() && g.images_per_stack() == 1 {
            Vec::new()
        } else {
            pool::try_dirty(g.op, elements(g.patch())?)?
        };
        let gathered = if g.images_per_stack() > 1 {
            pool::try_dirty(g.op, elements(g.cg_out())?)?
        } else {
            Vec::new()
        };
        Ok(Scratch { col, gathered })
    }
}

/// Checks that a tensor handed to a kernel has the shape its role in the geometry implies.
fn check_len<T: Float>(op: &'static str, t: &Tensor<T>, want: &Shape) -> Result<()> {
    if t.shape() == want {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            op,
            lhs: want.clone(),
            rhs: t.shape().clone(),
        })
    }
}

/// y = conv(x, W) + b over the whole batch.
fn conv_forward<T: Float>(
    g: &ConvGeometry,
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
) -> Result<Tensor<T>> {
    check_len(g.op, x, &g.x_shape)?;
    check_len(g.op, weight, &g.w_shape)?;
    let mut y = Tensor::overwritable(g.op, g.y_shape.clone())?;
    if g.batch == 0 {
        return Ok(y);
    }
    let (per_block, per_stack) = (g.images_per_block(), g.images_per_stack());
    let (x, weight, bias) = (x.data(), weight.data(), bias.map(|b| b.data()));
    let items: Vec<(usize, &mut [T])> = y
        .data_mut()
        .chunks_mut(per_block * g.y_image())
        .enumerate()
        .collect();
    run(items, g.parallel(), |(block, y_block)| {
        let mut scratch = Scratch::new(g)?;
        for (s, y_stack) in y_block.chunks_mut(per_stack * g.y_image()).enumerate() {
            let first = block * per_block + s * per_stack;
            let images = y_stack.len() / g.y_image();
            let x_stack = &x[first * g.x_image()..(first + images) * g.x_image()];
            forward_stack(g, x_stack, weight, bias, y_stack, &mut scratch);
        }
        Ok(())
    })?;
    Ok(y)
}

/// One stack of images: for every group g, yᵍ = Wᵍ · col(xᵍ) (+ b), with the stack's images side
/// by side in col (and in the product, which is then copied to each image's output).
fn forward_stack<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    scratch: &mut Scratch<T>,
) {
    let (plane, patch, cg_out) = (g.out_plane(), g.patch(), g.cg_out());
    let images = y.len() / g.y_image();
    let columns = images * plane;
    let x_group = g.cg_in() * g.in_plane();
    for group in 0..g.groups {
        let w_g = MatRef::row_major(
            &weight[group * g.w_group()..(group + 1) * g.w_group()],
            cg_out,
            patch,
            false,
        );
        let bias_g = bias.map(|b| &b[group * cg_out..(group + 1) * cg_out]);
        // The bias is written first and the product added onto it: one pass over the output.
        let fill_bias = |out: &mut [T], width: usize| match bias_g {
            Some(b) => {
                for (row, &bv) in out.chunks_exact_mut(width).zip(b) {
                    row.fill(bv);
                }
                true
            }
            None => false,
        };
        if images == 1 {
            let x_g = &x[group * x_group..(group + 1) * x_group];
            let y_g = &mut y[group * cg_out * plane..(group + 1) * cg_out * plane];
            let cols = if g.pointwise() {
                MatRef::row_major(x_g, patch, plane, false)
            } else {
                im2col(g, x_g, &mut scratch.col, plane);
                MatRef::row_major(&scratch.col[..patch * plane], patch, plane, false)
            };
            let accumulate = fill_bias(y_g, plane);
            matmul_into(y_g, w_g, cols, accumulate);
            continue;
        }
        // (An image without channels has nothing to gather: `max(1)` only keeps the chunking
        // valid.)
        for (b, x_img) in x.chunks_exact(g.x_image().max(1)).enumerate() {
            let x_g = &x_img[group * x_group..(group + 1) * x_group];
            im2col(g, x_g, &mut scratch.col[b * plane..], columns);
        }
        let out = &mut scratch.gathered[..cg_out * columns];
        let accumulate = fill_bias(out, columns);
        matmul_into(
            out,
            w_g,
            MatRef::row_major(&scratch.col[..patch * columns], patch, columns, false),
            accumulate,
        );
        // Row c of the product holds channel c of every image, image after image.
        for (b, y_img) in y.chunks_exact_mut(g.y_image()).enumerate() {
            let y_g = &mut y_img[group * cg_out * plane..(group + 1) * cg_out * plane];
            for (dst, src) in y_g.chunks_exact_mut(plane).zip(out.chunks_exact(columns)) {
                dst.copy_from_slice(&src[b * plane..(b + 1) * plane]);
            }
        }
    }
}

/// The gradients a convolution's backward produced (each only if asked for).
struct ConvGrads<T: Float> {
    dx: Option<Tensor<T>>,
    dw: Option<Tensor<T>>,
    db: Option<Tensor<T>>,
}

/// The backward products over the batch, each only if asked for: dx = col2im(Wᵀ·g) when W is
/// given, dW = Σₙ gₙ·colₙᵀ when x is given, and db = Σ g over everything but the channel axis
/// when `bias` (each image's channel sums, then the pairwise sum over the batch — the same
/// numbers as `sum_to`).
fn conv_backward<T: Float>(
    g: &ConvGeometry,
    x: Option<&Tensor<T>>,
    weight: Option<&Tensor<T>>,
    dy: &Tensor<T>,
    bias: bool,
) -> Result<ConvGrads<T>> {
    check_len(g.op, dy, &g.y_shape)?;
    if let Some(x) = x {
        check_len(g.op, x, &g.x_shape)?;
    }
    if let Some(w) = weight {
        check_len(g.op, w, &g.w_shape)?;
    }
    let mut dx = match weight {
        Some(_) => Some(Tensor::overwritable(g.op, g.x_shape.clone())?),
        None => None,
    };
    let mut dw = match x {
        Some(_) => Some(Tensor::overwritable(g.op, g.w_shape.clone())?),
        None => None,
    };
    let mut db = match bias {
        true => Some(Tensor::overwritable(g.op, Shape::new(&[g.c_out])?)?),
        false => None,
    };
    if g.batch == 0 || g.patch() == 0 {
        // No image, or no input channel: dx and dW are empty or sums over nothing.
        for t in [dx.as_mut(), dw.as_mut()].into_iter().flatten() {
            t.data_mut().fill(T::ZERO);
        }
        if let Some(db) = db.as_mut() {
            let sums = dy.sum_to(&g.bias_sum_shape()?)?;
            db.data_mut().copy_from_slice(sums.data());
        }
        return Ok(ConvGrads { dx, dw, db });
    }
    if dx.is_none() && dw.is_none() && db.is_none() {
        return Ok(ConvGrads { dx, dw, db });
    }
    let blocks = g.blocks();
    // One weight-gradient partial per block and one row of channel sums per image, then their
    // pairwise sums: the same blocks and the same trees at any thread count.
    let mut dw_partials = match (&dw, blocks) {
        (Some(_), 2..) => Some(pool::try_dirty::<T>(g.op, blocks * g.w_numel())?),
        _ => None,
    };
    let mut channel_sums = match db {
        Some(_) => Some(pool::try_dirty::<T>(g.op, g.batch * g.c_out)?),
        None => None,
    };
    let dw_out = match dw_partials.as_deref_mut() {
        Some(partials) => Some(partials),
        None => dw.as_mut().map(|t| t.data_mut()),
    };
    backward_blocks(
        g,
        x.map(|x| x.data()),
        weight.map(|w| w.data()),
        dy.data(),
        dx.as_mut().map(|t| t.data_mut()),
        dw_out,
        channel_sums.as_deref_mut(),
    )?;
    if let (Some(partials), Some(dw)) = (&dw_partials, dw.as_mut()) {
        sum_rows(partials, blocks, g.w_numel(), dw.data_mut())?;
    }
    if let (Some(sums), Some(db)) = (&channel_sums, db.as_mut()) {
        sum_rows(sums, g.batch, g.c_out, db.data_mut())?;
    }
    Ok(ConvGrads { dx, dw, db })
}

/// What one block of the backward pass reads and writes.
struct BackwardBlock<'a, T> {
    /// Index of the block's first image.
    first: usize,
    dx: Option<&'a mut [T]>,
    /// The block's weight-gradient partial (overwritten).
    dw: Option<&'a mut [T]>,
    /// One row of C_out channel sums per image of the block.
    sums: Option<&'a mut [T]>,
}

/// Runs the backward products block by block. `dw_partials`, if given, holds one weight gradient
/// per block (`blocks · w_numel` elements), each overwritten; `channel_sums` one row of C_out
/// sums per image.
fn backward_blocks<T: Float>(
    g: &ConvGeometry,
    x: Option<&[T]>,
    weight: Option<&[T]>,
    dy: &[T],
    dx: Option<&mut [T]>,
    dw_partials: Option<&mut [T]>,
    channel_sums: Option<&mut [T]>,
) -> Result<()> {
    // The caller handled the empty cases, so every chunk length below is positive.
    debug_assert!(g.batch > 0 && g.patch() > 0 && g.x_image() > 0);
    let (per_block, per_stack, blocks) = (g.images_per_block(), g.images_per_stack(), g.blocks());
    fn split<T>(buffer: Option<&mut [T]>, chunk: usize, blocks: usize) -> Vec<Option<&mut [T]>> {
        match buffer {
            Some(b) => b.chunks_mut(chunk).map(Some).collect(),
            None => (0..blocks).map(|_| None).collect(),
        }
    }
    let items: Vec<BackwardBlock<'_, T>> = split(dx, per_block * g.x_image(), blocks)
        .into_iter()
        .zip(split(dw_partials, g.w_numel(), blocks))
        .zip(split(channel_sums, per_block * g.c_out, blocks))
        .enumerate()
        .map(|(b, ((dx, dw), sums))| BackwardBlock {
            first: b * per_block,
            dx,
            dw,
            sums,
        })
        .collect();
    run(items, g.parallel(), |mut block| {
        let mut scratch = Scratch::new(g)?;
        let last = (block.first + per_block).min(g.batch);
        let mut start = block.first;
        while start < last {
            let end = (start + per_stack).min(last);
            let (i, j) = (start - block.first, end - block.first);
            let dy_stack = &dy[start * g.y_image()..end * g.y_image()];
            if let Some(sums) = block.sums.as_deref_mut() {
                let rows = dy_stack.chunks_exact(g.out_plane());
                for (s, row) in sums[i * g.c_out..j * g.c_out].iter_mut().zip(rows) {
                    *s = sum(row);
                }
            }
            let x_stack = x.map(|x| &x[start * g.x_image()..end * g.x_image()]);
            let dx_stack = block
                .dx
                .as_deref_mut()
                .map(|d| &mut d[i * g.x_image()..j * g.x_image()]);
            // The block's first stack overwrites its partial, the others add to it.
            let dw = block.dw.as_deref_mut().map(|d| (d, start > block.first));
            backward_stack(g, x_stack, weight, dy_stack, dx_stack, dw, &mut scratch);
            start = end;
        }
        Ok(())
    })
}

/// One stack of images, for every group g: dWᵍ (+)= gᵍ · col(xᵍ)ᵀ and dxᵍ = col2im(Wᵍᵀ · gᵍ), with
/// the stack's images side by side in col and in g (gathered into one matrix first).
fn backward_stack<T: Float>(
    g: &ConvGeometry,
    x: Option<&[T]>,
    weight: Option<&[T]>,
    dy: &[T],
    mut dx: Option<&mut [T]>,
    mut dw: Option<(&mut [T], bool)>,
    scratch: &mut Scratch<T>,
) {
    let (plane, patch, cg_out) = (g.out_plane(), g.patch(), g.cg_out());
    let images = dy.len() / g.y_image();
    let columns = images * plane;
    let x_group = g.cg_in() * g.in_plane();
    let pointwise = g.pointwise() && images == 1;
    for group in 0..g.groups {
        let dy_g = if images == 1 {
            &dy[group * cg_out * plane..(group + 1) * cg_out * plane]
        } else {
            // Row c: channel c of the output gradient of every image, image after image.
            let gathered = &mut scratch.gathered[..cg_out * columns];
            for (b, dy_img) in dy.chunks_exact(g.y_image()).enumerate() {
                let dy_img = &dy_img[group * cg_out * plane..(group + 1) * cg_out * plane];
                for (dst, src) in gathered
                    .chunks_exact_mut(columns)
                    .zip(dy_img.chunks_exact(plane))
                {
                    dst[b * plane..(b + 1) * plane].copy_from_slice(src);
                }
            }
            &*gathered
        };
        let dy_g = MatRef::row_major(dy_g, cg_out, columns, false);
        if let (Some(x), Some((dw, accumulate))) = (x, dw.as_mut()) {
            let cols_t = if pointwise {
                MatRef::row_major(
                    &x[group * x_group..(group + 1) * x_group],
                    patch,
                    plane,
                    true,
                )
            } else {
                for (b, x_img) in x.chunks_exact(g.x_image()).enumerate() {
                    let x_g = &x_img[group * x_group..(group + 1) * x_group];
                    im2col(g, x_g, &mut scratch.col[b * plane..], columns);
                }
                MatRef::row_major(&scratch.col[..patch * columns], patch, columns, true)
            };
            let dw_g = &mut dw[group * g.w_group()..(group + 1) * g.w_group()];
            matmul_into(dw_g, dy_g, cols_t, *accumulate);
        }
        if let (Some(weight), Some(dx)) = (weight, dx.as_deref_mut()) {
            let w_t = MatRef::row_major(
                &weight[group * g.w_group()..(group + 1) * g.w_group()],
                cg_out,
                patch,
                true,
            );
            if pointwise {
                matmul_into(
                    &mut dx[group * x_group..(group + 1) * x_group],
                    w_t,
                    dy_g,
                    false,
                );
                continue;
            }
            let dcol = &mut scratch.col[..patch * columns];
            matmul_into(dcol, w_t, dy_g, false);
            for (b, dx_img) in dx.chunks_exact_mut(g.x_image()).enumerate() {
                let dx_g = &mut dx_img[group * x_group..(group + 1) * x_group];
                dx_g.fill(T::ZERO);
                col2im(g, &mut dcol[b * plane..], columns, dx_g);
            }
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// 2-D convolution (cross-correlation, as in PyTorch) of an input `[N, C_in, H, W]` (or an
    /// unbatched `[C_in, H, W]`) with a weight `[C_out, C_in/groups, kH, kW]` and an optional bias
    /// `[C_out]`. The output is `[N, C_out, H_out, W_out]` with
    /// H_out = ⌊(H + 2·pad − dil·(kH − 1) − 1)/stride⌋ + 1 (likewise W_out).
    ///
    /// With col = im2col(x): y = W·col + b, so ∂L/∂W = Σₙ g·colᵀ, ∂L/∂x = col2im(Wᵀ·g),
    /// ∂L/∂b = Σ_{n,i,j} g.
    ///
    /// Errors: wrong ranks ([`Error::BadRank`]); input channels ≠ weight's C_in·groups
    /// ([`Error::ShapeMismatch`]); zero stride, dilation or groups
    /// ([`Error::InvalidHyperparameter`]); groups not dividing the channel counts, a kernel larger
    /// than the padded input, a bias that is not `[C_out]`, an empty spatial axis
    /// ([`Error::InvalidArgument`]).
    ///
    /// PyTorch equivalent: `F.conv2d(x, weight, bias, stride, padding, dilation, groups)`.
    ///
    /// ```
    /// use tapegrad::{Conv2dOptions, Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec((0..16).map(f64::from).collect(), &[1, 1, 4, 4])?);
    /// let w = tape.leaf(Tensor::ones(&[1, 1, 3, 3])?);
    /// let y = x.conv2d(w, None, Conv2dOptions::default().padding(1).stride(2))?;
    /// assert_eq!(y.value().data(), &[10.0, 24.0, 51.0, 90.0]); // sums of 3×3 windows
    /// let grads = y.sum()?.backward()?;
    /// assert_eq!(grads.wrt(w)?.dims(), &[1, 1, 3, 3]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn conv2d(
        self,
        weight: Var<'t, T>,
        bias: Option<Var<'t, T>>,
        options: Conv2dOptions,
    ) -> Result<Var<'t, T>> {
        let geom = ConvGeometry::new(
            "conv2d",
            2,
            &self.shape(),
            &weight.shape(),
            options.stride,
            options.padding,
            options.dilation,
            options.groups,
        )?;
        self.convolve(geom, weight, bias)
    }

    /// 1-D convolution of an input `[N, C_in, L]` (or unbatched `[C_in, L]`) with a weight
    /// `[C_out, C_in/groups, k]` and an optional bias `[C_out]`: [`Var::conv2d`] with a height
    /// of one, L_out = ⌊(L + 2·pad − dil·(k − 1) − 1)/stride⌋ + 1. Same derivatives and errors
    /// as `conv2d`.
    ///
    /// PyTorch equivalent: `F.conv1d(x, weight, bias, stride, padding, dilation, groups)`.
    ///
    /// ```
    /// use tapegrad::{Conv1dOptions, Tape, Tensor};
    /// let tape = Tape::<f32>::new();
    /// let x = tape.constant(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 4])?);
    /// let w = tape.constant(Tensor::from_vec(vec![1.0, -1.0], &[1, 1, 2])?);
    /// let y = x.conv1d(w, None, Conv1dOptions::default())?;
    /// assert_eq!(y.value().data(), &[-1.0, -1.0, -1.0]); // x[i] − x[i+1]
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn conv1d(
        self,
        weight: Var<'t, T>,
        bias: Option<Var<'t, T>>,
        options: Conv1dOptions,
    ) -> Result<Var<'t, T>> {
        let geom = ConvGeometry::new(
            "conv1d",
            1,
            &self.shape(),
            &weight.shape(),
            (1, options.stride),
            (0, options.padding),
            (1, options.dilation),
            options.groups,
        )?;
        self.convolve(geom, weight, bias)
    }

    fn convolve(
        self,
        geom: ConvGeometry,
        weight: Var<'t, T>,
        bias: Option<Var<'t, T>>,
    ) -> Result<Var<'t, T>> {
        self.same_tape(weight, geom.op)?;
        let mut inputs: SmallVec<[Var<'t, T>; 3]> = smallvec![self, weight];
        let bias_value = match bias {
            Some(b) => {
                self.same_tape(b, geom.op)?;
                let value = b.value();
                if value.dims() != [geom.c_out] {
                    return Err(Error::InvalidArgument {
                        op: geom.op,
                        reason: format!(
                            "the bias has shape {}, the weight {} needs [{}]",
                            value.shape(),
                            geom.w_shape,
                            geom.c_out
                        ),
                    });
                }
                inputs.push(b);
                Some(value)
            }
            None => None,
        };
        let value = conv_forward(&geom, &self.value(), &weight.value(), bias_value.as_deref())?;
        let has_bias = bias.is_some();
        Ok(self.tape.record(geom.op, value, &inputs, || ConvBackward {
            geom: Arc::new(geom),
            has_bias,
        }))
    }
}

/// Backward of `conv2d`/`conv1d`: saves the geometry; x, W (and b) are on the tape.
#[derive(Debug)]
struct ConvBackward {
    geom: Arc<ConvGeometry>,
    has_bias: bool,
}

impl<T: Float> Backward<T> for ConvBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let x = cx.needs_grad(1).then(|| cx.input(0));
        let w = cx.needs_grad(0).then(|| cx.input(1));
        let bias = self.has_bias && cx.needs_grad(2);
        let grads = conv_backward(&self.geom, x, w, g, bias)?;
        let mut out: InputGrads<T> = smallvec![grads.dx, grads.dw];
        if self.has_bias {
            out.push(grads.db);
        }
        Ok(out)
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (x, w) = (cx.input(0), cx.input(1));
        let mut grads: InputVars<'t, T> = smallvec![
            grad_if(cx.needs_grad(0), || record_map(
                MapKind::InputGrad,
                &self.geom,
                g,
                w
            ))?,
            grad_if(cx.needs_grad(1), || record_map(
                MapKind::WeightGrad,
                &self.geom,
                x,
                g
            ))?,
        ];
        if self.has_bias {
            grads.push(grad_if(cx.needs_grad(2), || {
                g.sum_to(&self.geom.bias_sum_shape()?)?
                    .reshape(&[self.geom.c_out])
            })?);
        }
        Ok(grads)
    }

    fn saved_bytes(&self) -> usize {
        std::mem::size_of::<ConvGeometry>()
    }

    fn describe_saved(&self) -> String {
        describe(&self.geom)
    }
}

fn describe(g: &ConvGeometry) -> String {
    format!(
        "kernel {}×{}, stride {:?}, padding {:?}, dilation {:?}, groups {} (reads x and W)",
        g.kh, g.kw, g.stride, g.pad, g.dil, g.groups
    )
}

/// The three bilinear maps of a convolution, recorded as nodes of the graph backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MapKind {
    /// y = F(x, W) (no bias); inputs (x, W).
    Forward,
    /// dx = B_x(g, W) = col2im(Wᵀ·g); inputs (g, W).
    InputGrad,
    /// dW = B_W(x, g) = Σₙ g·col(x)ᵀ; inputs (x, g).
    WeightGrad,
}

impl MapKind {
    fn name(self, op: &'static str) -> &'static str {
        match (self, op) {
            (MapKind::Forward, "conv1d") => "conv1d",
            (MapKind::Forward, _) => "conv2d",
            (MapKind::InputGrad, "conv1d") => "conv1d_input_grad",
            (MapKind::InputGrad, _) => "conv2d_input_grad",
            (MapKind::WeightGrad, "conv1d") => "conv1d_weight_grad",
            (MapKind::WeightGrad, _) => "conv2d_weight_grad",
        }
    }
}

/// Records one of the three maps applied to (a, b).
fn record_map<'t, T: Float>(
    kind: MapKind,
    geom: &Arc<ConvGeometry>,
    a: Var<'t, T>,
    b: Var<'t, T>,
) -> Result<Var<'t, T>> {
    a.same_tape(b, geom.op)?;
    let (av, bv) = (a.value(), b.value());
    let value = match kind {
        MapKind::Forward => conv_forward(geom, &av, &bv, None)?,
        MapKind::InputGrad => input_grad(geom, &av, &bv)?,
        MapKind::WeightGrad => weight_grad(geom, &av, &bv)?,
    };
    Ok(a.tape
        .record(kind.name(geom.op), value, &[a, b], || ConvMapBackward {
            kind,
            geom: Arc::clone(geom),
        }))
}

/// B_x(g, W): the input gradient alone.
fn input_grad<T: Float>(geom: &ConvGeometry, g: &Tensor<T>, w: &Tensor<T>) -> Result<Tensor<T>> {
    conv_backward(geom, None, Some(w), g, false)?
        .dx
        .ok_or_else(|| not_computed(geom.op))
}

/// B_W(x, g): the weight gradient alone.
fn weight_grad<T: Float>(geom: &ConvGeometry, x: &Tensor<T>, g: &Tensor<T>) -> Result<Tensor<T>> {
    conv_backward(geom, Some(x), None, g, false)?
        .dw
        .ok_or_else(|| not_computed(geom.op))
}

/// `conv_backward` computes every product it is given the operand for; this error cannot occur.
fn not_computed(op: &'static str) -> Error {
    Error::InvalidArgument {
        op,
        reason: "internal: a backward product that was asked for was not computed".to_string(),
    }
}

/// Backward of a recorded map (the graph path of conv's backward); see the module's table.
#[derive(Debug)]
struct ConvMapBackward {
    kind: MapKind,
    geom: Arc<ConvGeometry>,
}

impl<T: Float> Backward<T> for ConvMapBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, u: &Tensor<T>) -> Result<InputGrads<T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        let geom = &self.geom;
        Ok(match self.kind {
            MapKind::Forward => {
                // a = x, b = W: dx = B_x(u, W), dW = B_W(x, u).
                let grads = conv_backward(
                    geom,
                    cx.needs_grad(1).then_some(a),
                    cx.needs_grad(0).then_some(b),
                    u,
                    false,
                )?;
                smallvec![grads.dx, grads.dw]
            }
            MapKind::InputGrad => {
                // a = g, b = W: dg = F(u, W), dW = B_W(u, g).
                smallvec![
                    grad_if(cx.needs_grad(0), || conv_forward(geom, u, b, None))?,
                    grad_if(cx.needs_grad(1), || weight_grad(geom, u, a))?,
                ]
            }
            MapKind::WeightGrad => {
                // a = x, b = g: dx = B_x(g, u), dg = F(x, u).
                smallvec![
                    grad_if(cx.needs_grad(0), || input_grad(geom, b, u))?,
                    grad_if(cx.needs_grad(1), || conv_forward(geom, a, u, None))?,
                ]
            }
        })
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, u: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        let geom = &self.geom;
        let (first, second) = match self.kind {
            MapKind::Forward => (
                (MapKind::InputGrad, u, b),  // dx = B_x(u, W)
                (MapKind::WeightGrad, a, u), // dW = B_W(x, u)
            ),
            MapKind::InputGrad => (
                (MapKind::Forward, u, b),    // dg = F(u, W)
                (MapKind::WeightGrad, u, a), // dW = B_W(u, g)
            ),
            MapKind::WeightGrad => (
                (MapKind::InputGrad, b, u), // dx = B_x(g, u)
                (MapKind::Forward, a, u),   // dg = F(x, u)
            ),
        };
        Ok(smallvec![
            grad_if(cx.needs_grad(0), || record_map(
                first.0, geom, first.1, first.2
            ))?,
            grad_if(cx.needs_grad(1), || record_map(
                second.0, geom, second.1, second.2
            ))?,
        ])
    }

    fn saved_bytes(&self) -> usize {
        std::mem::size_of::<ConvGeometry>()
    }

    fn describe_saved(&self) -> String {
        describe(&self.geom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ranges_match_a_scan() {
        for size in 1..7 {
            for k in 0..4 {
                for dil in 1..3 {
                    for pad in 0..3 {
                        for stride in 1..4 {
                            let out = 8;
                            let (lo, hi) = valid_range(k, dil, pad, stride, size, out);
                            for o in 0..out {
                                let pos = (o * stride + k * dil) as isize - pad as isize;
                                let inside = pos >= 0 && (pos as usize) < size;
                                assert_eq!(
                                    inside,
                                    (lo..hi).contains(&o),
                                    "{size} {k} {dil} {pad} {stride} {o}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
