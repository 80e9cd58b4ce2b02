//! Pooling over the two spatial axes of `[N, C, H, W]` (or unbatched `[C, H, W]`) inputs:
//! `max_pool2d`, `avg_pool2d`, `adaptive_avg_pool2d`, with PyTorch's semantics.
//!
//! Every pool works plane by plane (one plane = one channel of one image), output position by
//! output position, over a window of input positions.
//!
//! **Max pooling** picks, in each window, the position of the largest element, scanning the window
//! row by row, as PyTorch does: an element replaces the current maximum when it is strictly larger
//! or when it is NaN. So of equal maxima the **first** wins, a NaN always wins (the output is NaN,
//! and of several NaNs the last one wins), and padding counts as −∞ (it is never picked: a window
//! of −∞ routes to its first element inside the input). The op saves those positions; the output
//! is x gathered at them, which is linear in x with the positions held fixed, so
//!
//! ∂L/∂x = scatter-add of g to the saved positions
//!
//! (a position picked by several overlapping windows collects all their gradients). The scatter is
//! itself recorded as a node whose backward is the gather again, so second derivatives work (and
//! are 0 with respect to x, since the positions are constant).
//!
//! **Average pooling** is linear: y = A·x with A averaging each window, so ∂L/∂x = Aᵀ·g, which
//! spreads `g[o]/divisor` over the window of o. The recorded backward of A is Aᵀ and that of Aᵀ is A.
//! `adaptive_avg_pool2d` is the same with PyTorch's adaptive windows.
//!
//! Window sums use the crate's pairwise summation kernel (each window row, then the row sums), so a
//! global average over a large image is as accurate as `mean`.

use std::sync::Arc;

use rayon::prelude::*;
use smallvec::{SmallVec, smallvec};

use super::conv::IntoPair;
use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels::pool;
use crate::kernels::sum::sum;
use crate::shape::Shape;
use crate::tape::Var;
use crate::tensor::{Tensor, parallel};

/// Settings of [`Var::max_pool2d`], as PyTorch's `F.max_pool2d` keywords; each pair is
/// (height, width).
///
/// ```
/// use tapegrad::MaxPool2dOptions;
/// let o = MaxPool2dOptions::new(3).stride(2).padding(1);
/// assert_eq!((o.kernel_size, o.stride, o.padding, o.dilation), ((3, 3), (2, 2), (1, 1), (1, 1)));
/// assert_eq!(MaxPool2dOptions::new((2, 1)).stride, (2, 1)); // the stride defaults to the kernel
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2dOptions {
    /// Window size (≥ 1).
    pub kernel_size: (usize, usize),
    /// Step between windows (≥ 1). Defaults to the kernel size, as in PyTorch.
    pub stride: (usize, usize),
    /// Implicit −∞ padding on both sides, at most half the kernel size. Default 0.
    pub padding: (usize, usize),
    /// Spacing between window taps (≥ 1). Default 1.
    pub dilation: (usize, usize),
    /// Use ⌈·⌉ instead of ⌊·⌋ for the output size (a last, partial window). Default false.
    pub ceil_mode: bool,
}

impl MaxPool2dOptions {
    /// A `kernel_size` window moved by its own size, no padding, no dilation.
    pub fn new(kernel_size: impl IntoPair) -> Self {
        let kernel_size = kernel_size.into_pair();
        MaxPool2dOptions {
            kernel_size,
            stride: kernel_size,
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
        }
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: impl IntoPair) -> Self {
        self.stride = stride.into_pair();
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: impl IntoPair) -> Self {
        self.padding = padding.into_pair();
        self
    }

    /// Sets the dilation.
    pub fn dilation(mut self, dilation: impl IntoPair) -> Self {
        self.dilation = dilation.into_pair();
        self
    }

    /// Sets `ceil_mode`.
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }
}

/// Settings of [`Var::avg_pool2d`], as PyTorch's `F.avg_pool2d` keywords.
///
/// ```
/// use tapegrad::AvgPool2dOptions;
/// let o = AvgPool2dOptions::new(2).padding(1).count_include_pad(false);
/// assert_eq!((o.stride, o.padding, o.count_include_pad, o.ceil_mode), ((2, 2), (1, 1), false, false));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2dOptions {
    /// Window size (≥ 1).
    pub kernel_size: (usize, usize),
    /// Step between windows (≥ 1). Defaults to the kernel size, as in PyTorch.
    pub stride: (usize, usize),
    /// Implicit zero padding on both sides, at most half the kernel size. Default 0.
    pub padding: (usize, usize),
    /// Use ⌈·⌉ instead of ⌊·⌋ for the output size. Default false.
    pub ceil_mode: bool,
    /// Whether the padding counts in the divisor (PyTorch's default, true).
    pub count_include_pad: bool,
    /// Divide every window sum by this instead (≥ 1). Default `None`.
    pub divisor_override: Option<usize>,
}

impl AvgPool2dOptions {
    /// A `kernel_size` window moved by its own size, no padding, padding counted.
    pub fn new(kernel_size: impl IntoPair) -> Self {
        let kernel_size = kernel_size.into_pair();
        AvgPool2dOptions {
            kernel_size,
            stride: kernel_size,
            padding: (0, 0),
            ceil_mode: false,
            count_include_pad: true,
            divisor_override: None,
        }
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: impl IntoPair) -> Self {
        self.stride = stride.into_pair();
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: impl IntoPair) -> Self {
        self.padding = padding.into_pair();
        self
    }

    /// Sets `ceil_mode`.
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }

    /// Sets `count_include_pad`.
    pub fn count_include_pad(mut self, count: bool) -> Self {
        self.count_include_pad = count;
        self
    }

    /// Sets `divisor_override`.
    pub fn divisor_override(mut self, divisor: Option<usize>) -> Self {
        self.divisor_override = divisor;
        self
    }
}

/// The planes of a pooling input and output: `planes` = N·C planes of H×W in, H_out×W_out out.
#[derive(Debug)]
struct Planes {
    planes: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    x_shape: Shape,
    y_shape: Shape,
}

impl Planes {
    fn in_plane(&self) -> usize {
        self.h * self.w
    }
    /// Saturating: an empty batch may come with an output plane too large to count.
    fn out_plane(&self) -> usize {
        self.ho.saturating_mul(self.wo)
    }
}

/// Checks a pooling input's rank and returns (planes, H, W); `allow_empty_channels` as PyTorch's
/// adaptive pool (the fixed-window pools refuse any empty axis but the batch).
fn plane_dims(
    op: &'static str,
    x: &Shape,
    allow_empty_channels: bool,
) -> Result<(usize, usize, usize)> {
    let d = x.dims();
    let (batch, c, h, w) = match *d {
        [n, c, h, w] => (n, c, h, w),
        [c, h, w] => (1, c, h, w),
        _ => {
            return Err(Error::BadRank {
                op,
                expected: "a 3-D [C, H, W] or 4-D [N, C, H, W] input",
                shape: x.clone(),
            });
        }
    };
    if h == 0 || w == 0 || (c == 0 && !allow_empty_channels) {
        return Err(Error::InvalidArgument {
            op,
            reason: format!("the input {x} has an empty axis (only the batch may be empty)"),
        });
    }
    // An empty batch may come with planes whose size overflows (nothing is allocated for them).
    if h.checked_mul(w).is_none() {
        return Err(Error::ShapeOverflow {
            dims: x.dims().to_vec(),
        });
    }
    Ok((batch * c, h, w))
}

/// The output shape: x's with the last two axes replaced.
fn pooled_shape(x: &Shape, ho: usize, wo: usize) -> Result<Shape> {
    let mut dims: SmallVec<[usize; 4]> = SmallVec::from_slice(x.dims());
    let rank = dims.len();
    dims[rank - 2] = ho;
    dims[rank - 1] = wo;
    Shape::checked(dims)
}

fn positive(op: &'static str, name: &'static str, pair: (usize, usize)) -> Result<()> {
    if pair.0 == 0 || pair.1 == 0 {
        Err(Error::InvalidHyperparameter {
            op,
            name,
            value: 0.0,
            reason: "must be at least 1",
        })
    } else {
        Ok(())
    }
}

/// Output length along one axis, as PyTorch's `pooling_output_shape`:
/// ⌊(size + 2·pad − dil·(k − 1) − 1 [+ stride − 1 in ceil mode]) / stride⌋ + 1, minus one in ceil
/// mode if the last window would start in the right padding. `None` if below 1.
fn pool_out_len(
    size: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dil: usize,
    ceil_mode: bool,
) -> Option<usize> {
    let (size, k, stride, pad, dil) = (
        size as i128,
        k as i128,
        stride as i128,
        pad as i128,
        dil as i128,
    );
    let extra = if ceil_mode { stride - 1 } else { 0 };
    let mut out = (size + 2 * pad - dil * (k - 1) - 1 + extra).div_euclid(stride) + 1;
    if ceil_mode && (out - 1) * stride >= size + pad {
        out -= 1;
    }
    usize::try_from(out).ok().filter(|&o| o >= 1)
}

/// Checks the common pooling settings and returns the planes.
fn fixed_window_planes(
    op: &'static str,
    x: &Shape,
    kernel: (usize, usize),
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
    ceil_mode: bool,
) -> Result<Planes> {
    positive(op, "kernel_size", kernel)?;
    positive(op, "stride", stride)?;
    positive(op, "dilation", dil)?;
    if pad.0 > kernel.0 / 2 || pad.1 > kernel.1 / 2 {
        return Err(Error::InvalidArgument {
            op,
            reason: format!(
                "padding {}×{} must be at most half the kernel size {}×{}",
                pad.0, pad.1, kernel.0, kernel.1
            ),
        });
    }
    let (planes, h, w) = plane_dims(op, x, false)?;
    let too_small = || Error::InvalidArgument {
        op,
        reason: format!(
            "the window {}×{} (dilation {}×{}, padding {}×{}) leaves no output for the input {x}",
            kernel.0, kernel.1, dil.0, dil.1, pad.0, pad.1
        ),
    };
    let ho = pool_out_len(h, kernel.0, stride.0, pad.0, dil.0, ceil_mode).ok_or_else(too_small)?;
    let wo = pool_out_len(w, kernel.1, stride.1, pad.1, dil.1, ceil_mode).ok_or_else(too_small)?;
    Ok(Planes {
        planes,
        h,
        w,
        ho,
        wo,
        x_shape: x.clone(),
        y_shape: pooled_shape(x, ho, wo)?,
    })
}

/// Runs `f(plane_index, input_plane, output_plane)` over every plane pair, on several threads for
/// large inputs. Each plane's result depends on that plane alone.
fn for_planes<A: Sync, B: Send>(
    input: &[A],
    in_len: usize,
    output: &mut [B],
    out_len: usize,
    work: usize,
    f: impl Fn(&[A], &mut [B]) + Sync + Send,
) {
    if in_len == 0 || out_len == 0 {
        return;
    }
    if parallel(work) {
        output
            .par_chunks_mut(out_len)
            .zip(input.par_chunks(in_len))
            .for_each(|(o, i)| f(i, o));
    } else {
        for (o, i) in output.chunks_mut(out_len).zip(input.chunks(in_len)) {
            f(i, o);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Max pooling
// ---------------------------------------------------------------------------------------------

/// The position a window with no tap inside the input routes to: none.
const NO_POSITION: u32 = u32::MAX;

/// Where each output of a max pool came from: a flat position in its input plane.
#[derive(Debug)]
struct Route {
    planes: Planes,
    positions: Vec<u32>,
}

impl Route {
    /// Gather: `out[o] = src[position(o)]` plane by plane (the max pool itself, with the positions
    /// held fixed). Shape of the pool's output.
    fn gather<T: Float>(&self, src: &Tensor<T>) -> Result<Tensor<T>> {
        let p = &self.planes;
        let mut out = Tensor::overwritable("max_pool2d", p.y_shape.clone())?;
        let positions = self.positions.as_slice();
        let in_plane = p.in_plane();
        let out_plane = p.out_plane();
        if in_plane == 0 || out_plane == 0 {
            return Ok(out);
        }
        for ((o, i), pos) in out
            .data_mut()
            .chunks_mut(out_plane)
            .zip(src.data().chunks(in_plane))
            .zip(positions.chunks(out_plane))
        {
            for (o, &at) in o.iter_mut().zip(pos) {
                *o = if at == NO_POSITION {
                    T::ZERO
                } else {
                    i[at as usize]
                };
            }
        }
        Ok(out)
    }

    /// Scatter-add: `dx[position(o)] += g[o]` plane by plane (the adjoint of [`Route::gather`]).
    /// Shape of the pool's input.
    fn scatter<T: Float>(&self, g: &Tensor<T>) -> Result<Tensor<T>> {
        let p = &self.planes;
        let mut dx = Tensor::full_shape(p.x_shape.clone(), T::ZERO)?;
        let (in_plane, out_plane) = (p.in_plane(), p.out_plane());
        if in_plane == 0 || out_plane == 0 {
            return Ok(dx);
        }
        let positions = self.positions.as_slice();
        let work = |(d, (gp, pos)): (&mut [T], (&[T], &[u32]))| {
            for (&gv, &at) in gp.iter().zip(pos) {
                if at != NO_POSITION {
                    d[at as usize] += gv;
                }
            }
        };
        if parallel(dx.numel()) {
            dx.data_mut()
                .par_chunks_mut(in_plane)
                .zip(
                    g.data()
                        .par_chunks(out_plane)
                        .zip(positions.par_chunks(out_plane)),
                )
                .for_each(work);
        } else {
            dx.data_mut()
                .chunks_mut(in_plane)
                .zip(g.data().chunks(out_plane).zip(positions.chunks(out_plane)))
                .for_each(work);
        }
        Ok(dx)
    }
}

/// For one axis, each output's first tap inside the input and the number of such taps.
fn max_taps(
    size: usize,
    out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dil: usize,
) -> Vec<(usize, usize)> {
    (0..out)
        .map(|o| {
            let start = (o * stride) as isize - pad as isize;
            let end = (start + ((k - 1) * dil) as isize + 1).min(size as isize);
            let mut first = start;
            while first < 0 {
                first += dil as isize;
            }
            let count = if first < end {
                ((end - first) as usize).div_ceil(dil)
            } else {
                0
            };
            (first.max(0) as usize, count)
        })
        .collect()
}

/// The position PyTorch's scan picks in a window (visited row by row): a strictly larger value or a NaN replaces the running maximum,
/// which starts at −∞ with the first position. So of equal maxima the first wins, of NaNs the
/// last, and a window of −∞ keeps its first position.
///
/// Computed in two scans with the same result — the maximum ignoring NaN (branch-free) and
/// whether there is a NaN, then the first position of that maximum (or the last NaN) — because
/// carrying the running maximum through the scan makes each step wait for the previous one, and
/// which element is largest is unpredictable.
#[inline(always)]
fn window_argmax<T: Float>(plane: &[T], window: Window) -> usize {
    let (mut max, mut nan) = (T::NEG_INFINITY, false);
    for a in 0..window.rows {
        let row = window.first + a * window.row_step;
        for b in 0..window.cols {
            let v = plane[row + b * window.col_step];
            // A NaN compares false and is skipped (`T::max` would handle it too, at a longer
            // chain of instructions per element); this select is one `maxss`.
            max = if v > max { v } else { max };
            nan |= v.is_nan();
        }
    }
    let mut at = window.first;
    for a in 0..window.rows {
        let row = window.first + a * window.row_step;
        for b in 0..window.cols {
            let i = row + b * window.col_step;
            if nan {
                if plane[i].is_nan() {
                    at = i;
                }
            } else if plane[i] == max {
                return i;
            }
        }
    }
    at
}

/// The taps of one max-pool window inside a plane: `rows` × `cols` positions starting at
/// `first`, `row_step` apart down and `col_step` apart across.
#[derive(Clone, Copy)]
struct Window {
    first: usize,
    rows: usize,
    cols: usize,
    row_step: usize,
    col_step: usize,
}

/// The common 2×2, stride-2, unpadded max pool of one plane, with the windows unrolled: the
/// choice of [`window_argmax`] with selects instead of scans.
fn max_pool_2x2<T: Float>(
    plane: &[T],
    w: usize,
    ho: usize,
    wo: usize,
    out: &mut [T],
    pos: &mut [u32],
) {
    for oh in 0..ho {
        let top = 2 * oh * w;
        let out = &mut out[oh * wo..(oh + 1) * wo];
        let pos = &mut pos[oh * wo..(oh + 1) * wo];
        for ow in 0..wo {
            let first = top + 2 * ow;
            let at = [first, first + 1, first + w, first + w + 1];
            let v = at.map(|i| plane[i]);
            let max = v[0].max(v[1]).max(v[2].max(v[3]));
            let mut k = 3;
            for j in (0..3).rev() {
                k = if v[j] == max { j } else { k };
            }
            for (j, x) in v.iter().enumerate() {
                k = if x.is_nan() { j } else { k };
            }
            out[ow] = v[k];
            pos[ow] = at[k] as u32;
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// 2-D max pooling over the last two axes of `[N, C, H, W]` (or `[C, H, W]`), padding with −∞.
    /// Saves the position of each window's maximum; ∂L/∂x scatters g to those positions (adding
    /// where windows overlap).
    ///
    /// Ties and NaN as PyTorch: of equal maxima the first in the window (row by row) gets the
    /// gradient; a NaN is always taken (the output is NaN, the last NaN of the window gets the
    /// gradient). `ceil_mode` is supported.
    ///
    /// Errors: wrong rank ([`Error::BadRank`]); a zero kernel size, stride or dilation
    /// ([`Error::InvalidHyperparameter`]); padding above half the kernel, an empty channel or
    /// spatial axis, or a window that leaves no output ([`Error::InvalidArgument`]).
    ///
    /// PyTorch equivalent: `F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)`.
    ///
    /// ```
    /// use tapegrad::{MaxPool2dOptions, Tape, Tensor};
    /// let tape = Tape::<f32>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 3.0, 3.0, 2.0], &[1, 1, 2, 2])?);
    /// let y = x.max_pool2d(MaxPool2dOptions::new(2))?;
    /// assert_eq!(y.value().data(), &[3.0]);
    /// let grads = y.sum()?.backward()?;
    /// assert_eq!(grads.wrt(x)?.data(), &[0.0, 1.0, 0.0, 0.0]); // the first of the tied maxima
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn max_pool2d(self, options: MaxPool2dOptions) -> Result<Var<'t, T>> {
        const OP: &str = "max_pool2d";
        let x = self.value();
        let MaxPool2dOptions {
            kernel_size: k,
            stride: s,
            padding: pad,
            dilation: dil,
            ceil_mode,
        } = options;
        let planes = fixed_window_planes(OP, x.shape(), k, s, pad, dil, ceil_mode)?;
        let too_large = u32::try_from(planes.in_plane()).map_or(true, |n| n == NO_POSITION);
        if too_large && planes.planes > 0 {
            return Err(Error::InvalidArgument {
                op: OP,
                reason: format!(
                    "a plane of {}×{} elements is too large (positions are stored as u32)",
                    planes.h, planes.w
                ),
            });
        }
        // (No windows to tabulate for an empty batch, whose output size may be enormous.)
        let tabulate = planes.planes > 0;
        let rows = max_taps(
            planes.h,
            planes.ho * tabulate as usize,
            k.0,
            s.0,
            pad.0,
            dil.0,
        );
        let cols = max_taps(
            planes.w,
            planes.wo * tabulate as usize,
            k.1,
            s.1,
            pad.1,
            dil.1,
        );
        let numel = planes.planes * planes.out_plane();
        let mut positions = Vec::new();
        positions
            .try_reserve_exact(numel)
            .map_err(|_| Error::OutOfMemory {
                op: OP,
                bytes: numel as u128 * 4,
            })?;
        positions.resize(numel, NO_POSITION);
        let mut value = Tensor::overwritable(OP, planes.y_shape.clone())?;
        let (w, dh, dw) = (planes.w, dil.0, dil.1);
        {
            let mut outs: Vec<(&mut [T], &mut [u32])> = value
                .data_mut()
                .chunks_mut(planes.out_plane().max(1))
                .zip(positions.chunks_mut(planes.out_plane().max(1)))
                .collect();
            // Every window of a 2×2, stride-2 pool without padding is whole: no tables needed.
            let pairs = k == (2, 2) && s == (2, 2) && pad == (0, 0) && dil == (1, 1);
            let kernel = |plane: &[T], (out, pos): &mut (&mut [T], &mut [u32])| {
                if pairs && !ceil_mode {
                    max_pool_2x2(plane, w, planes.ho, planes.wo, out, pos);
                    return;
                }
                let mut o = 0;
                for &(h0, hc) in &rows {
                    for &(w0, wc) in &cols {
                        if hc == 0 || wc == 0 {
                            // No tap inside the input: only padding, −∞.
                            out[o] = T::NEG_INFINITY;
                            pos[o] = NO_POSITION;
                            o += 1;
                            continue;
                        }
                        let window = Window {
                            first: h0 * w + w0,
                            rows: hc,
                            cols: wc,
                            row_step: dh * w,
                            col_step: dw,
                        };
                        let at = window_argmax(plane, window);
                        out[o] = plane[at];
                        pos[o] = at as u32;
                        o += 1;
                    }
                }
            };
            let in_plane = planes.in_plane();
            if parallel(x.numel()) {
                outs.par_iter_mut()
                    .zip(x.data().par_chunks(in_plane))
                    .for_each(|(o, i)| kernel(i, o));
            } else {
                for (o, i) in outs.iter_mut().zip(x.data().chunks(in_plane)) {
                    kernel(i, o);
                }
            }
        }
        let route = Arc::new(Route { planes, positions });
        Ok(self.tape.record(OP, value, &[self], || RouteBackward {
            route,
            kind: RouteKind::Gather,
        }))
    }
}

/// Which way a max pool's saved positions are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteKind {
    /// y-shaped out of x-shaped: the pool (and the graph backward of its backward).
    Gather,
    /// x-shaped out of y-shaped: the pool's backward.
    Scatter,
}

/// Backward of a gather (the max pool) or of a scatter (its recorded backward); saves the
/// positions, shared by every node of the chain.
#[derive(Debug)]
struct RouteBackward {
    route: Arc<Route>,
    kind: RouteKind,
}

impl RouteBackward {
    fn adjoint<T: Float>(&self, g: &Tensor<T>) -> Result<Tensor<T>> {
        match self.kind {
            RouteKind::Gather => self.route.scatter(g),
            RouteKind::Scatter => self.route.gather(g),
        }
    }
}

impl<T: Float> Backward<T> for RouteBackward {
    fn backward(&self, _cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(self.adjoint(g)?)])
    }

    /// The adjoint of a gather is a scatter and vice versa: linear in g, constant in x.
    fn backward_graph<'t>(&self, _cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let value = self.adjoint(&g.value())?;
        let (name, kind) = match self.kind {
            RouteKind::Gather => ("max_pool2d_backward", RouteKind::Scatter),
            RouteKind::Scatter => ("max_pool2d", RouteKind::Gather),
        };
        let route = Arc::clone(&self.route);
        Ok(smallvec![Some(g.tape.record(name, value, &[g], || {
            RouteBackward { route, kind }
        }))])
    }

    fn saved_bytes(&self) -> usize {
        self.route.positions.len() * std::mem::size_of::<u32>()
    }

    fn describe_saved(&self) -> String {
        format!("{} argmax positions", self.route.positions.len())
    }
}

// ---------------------------------------------------------------------------------------------
// Average pooling
// ---------------------------------------------------------------------------------------------

/// One axis of an average pool's windows: input range `start..end` of each output, and the
/// factor that axis contributes to the divisor.
#[derive(Debug)]
struct AxisWindows {
    start: Vec<usize>,
    end: Vec<usize>,
    factor: Vec<usize>,
}

impl AxisWindows {
    /// PyTorch's `avg_pool2d` windows: start = o·s − p, end = min(start + k, size + p); the factor
    /// is end − start with padding counted, else the part inside the input.
    fn fixed(
        size: usize,
        out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        count_pad: bool,
    ) -> Result<Self> {
        let mut axis = AxisWindows::with_capacity(out)?;
        for o in 0..out {
            let start = (o * stride) as isize - pad as isize;
            let end = (start + k as isize).min((size + pad) as isize);
            let padded = (end - start) as usize;
            let (start, end) = (start.max(0) as usize, (end.max(0) as usize).min(size));
            let end = end.max(start);
            axis.push(start, end, if count_pad { padded } else { end - start });
        }
        Ok(axis)
    }

    /// PyTorch's adaptive windows: start = ⌊o·size/out⌋, end = ⌈(o + 1)·size/out⌉.
    fn adaptive(size: usize, out: usize) -> Result<Self> {
        let mut axis = AxisWindows::with_capacity(out)?;
        let (s, n) = (size as u128, out as u128);
        for o in 0..out as u128 {
            let start = (o * s / n) as usize;
            let end = ((o + 1) * s).div_ceil(n) as usize;
            axis.push(start, end, end - start);
        }
        Ok(axis)
    }

    fn with_capacity(out: usize) -> Result<Self> {
        let vec = || -> Result<Vec<usize>> {
            let mut v = Vec::new();
            v.try_reserve_exact(out).map_err(|_| Error::OutOfMemory {
                op: "avg_pool2d",
                bytes: out as u128 * 8,
            })?;
            Ok(v)
        };
        Ok(AxisWindows {
            start: vec()?,
            end: vec()?,
            factor: vec()?,
        })
    }

    fn push(&mut self, start: usize, end: usize, factor: usize) {
        self.start.push(start);
        self.end.push(end);
        self.factor.push(factor);
    }

    fn longest(&self) -> usize {
        self.start
            .iter()
            .zip(&self.end)
            .map(|(s, e)| e - s)
            .max()
            .unwrap_or(0)
    }
}

/// Windows of at most this many elements are summed in order; larger ones pairwise (each row,
/// then the row sums), so a global average over a large plane is as accurate as `mean`.
const SHORT_WINDOW: usize = 16;

/// The windows and divisors of an average pool.
#[derive(Debug)]
struct AvgGeometry {
    /// `"avg_pool2d"` or `"adaptive_avg_pool2d"`.
    op: &'static str,
    planes: Planes,
    rows: AxisWindows,
    cols: AxisWindows,
    divisor_override: Option<usize>,
}

impl AvgGeometry {
    /// The divisors as two factors in `T`, whose product is the divisor of window (oh, ow): the
    /// rows' and the columns' factors, or the override and 1. Converted once per call: a
    /// conversion per output would cost more than the average itself. (Products of window sizes
    /// are small integers, exact in f32.)
    fn divisor_factors<T: Float>(&self) -> Result<(Vec<T>, Vec<T>)> {
        let convert = |factors: &[usize], fixed: Option<usize>| {
            pool::try_collect(
                self.op,
                factors.len(),
                factors
                    .iter()
                    .map(|&f| T::from_f64(fixed.unwrap_or(f) as f64)),
            )
        };
        Ok(match self.divisor_override {
            Some(d) => (
                convert(&self.rows.factor, Some(d))?,
                convert(&self.cols.factor, Some(1))?,
            ),
            None => (
                convert(&self.rows.factor, None)?,
                convert(&self.cols.factor, None)?,
            ),
        })
    }

    /// y = A·x: each output the sum of its window (pairwise: every window row, then the row
    /// sums) divided by its divisor.
    fn average<T: Float>(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let p = &self.planes;
        let mut y = Tensor::overwritable(self.op, p.y_shape.clone())?;
        let longest = self.rows.longest();
        let w = p.w;
        let (row_div, col_div) = self.divisor_factors::<T>()?;
        let kernel = |plane: &[T], out: &mut [T], row_sums: &mut [T]| {
            let mut o = 0;
            for (&h0, (&h1, &rd)) in self
                .rows
                .start
                .iter()
                .zip(self.rows.end.iter().zip(&row_div))
            {
                for (&w0, (&w1, &cd)) in self
                    .cols
                    .start
                    .iter()
                    .zip(self.cols.end.iter().zip(&col_div))
                {
                    let total = if (h1 - h0) * (w1 - w0) <= SHORT_WINDOW {
                        // A handful of elements (a 2×2 or 3×3 window): added in order, as
                        // the summation kernel's own leaves do.
                        let mut total = T::ZERO;
                        for ih in h0..h1 {
                            for &v in &plane[ih * w + w0..ih * w + w1] {
                                total += v;
                            }
                        }
                        total
                    } else {
                        for (r, ih) in row_sums.iter_mut().zip(h0..h1) {
                            *r = sum(&plane[ih * w + w0..ih * w + w1]);
                        }
                        sum(&row_sums[..h1 - h0])
                    };
                    out[o] = total / (rd * cd);
                    o += 1;
                }
            }
        };
        let (in_plane, out_plane) = (p.in_plane(), p.out_plane());
        if in_plane == 0 || out_plane == 0 {
            return Ok(y);
        }
        if parallel(x.numel()) {
            y.data_mut()
                .par_chunks_mut(out_plane)
                .zip(x.data().par_chunks(in_plane))
                .try_for_each(|(o, i)| -> Result<()> {
                    let mut row_sums = pool::try_zeroed::<T>(self.op, longest)?;
                    kernel(i, o, &mut row_sums);
                    Ok(())
                })?;
        } else {
            let mut row_sums = pool::try_zeroed::<T>(self.op, longest)?;
            for (o, i) in y
                .data_mut()
                .chunks_mut(out_plane)
                .zip(x.data().chunks(in_plane))
            {
                kernel(i, o, &mut row_sums);
            }
        }
        Ok(y)
    }

    /// dx = Aᵀ·g: each `g[o]/divisor` added to every input position of o's window.
    fn spread<T: Float>(&self, g: &Tensor<T>) -> Result<Tensor<T>> {
        let p = &self.planes;
        let mut dx = Tensor::full_shape(p.x_shape.clone(), T::ZERO)?;
        let w = p.w;
        let (row_div, col_div) = self.divisor_factors::<T>()?;
        for_planes(
            g.data(),
            p.out_plane(),
            dx.data_mut(),
            p.in_plane(),
            p.planes * p.in_plane(),
            |gp, plane| {
                let mut o = 0;
                let rows = self
                    .rows
                    .start
                    .iter()
                    .zip(self.rows.end.iter().zip(&row_div));
                for (&h0, (&h1, &rd)) in rows {
                    let cols = self
                        .cols
                        .start
                        .iter()
                        .zip(self.cols.end.iter().zip(&col_div));
                    for (&w0, (&w1, &cd)) in cols {
                        let share = gp[o] / (rd * cd);
                        for ih in h0..h1 {
                            for d in &mut plane[ih * w + w0..ih * w + w1] {
                                *d += share;
                            }
                        }
                        o += 1;
                    }
                }
            },
        );
        Ok(dx)
    }

    fn record<'t, T: Float>(self: &Arc<Self>, x: Var<'t, T>, adjoint: bool) -> Result<Var<'t, T>> {
        let value = if adjoint {
            self.spread(&x.value())?
        } else {
            self.average(&x.value())?
        };
        let name = match (self.op, adjoint) {
            ("adaptive_avg_pool2d", false) => "adaptive_avg_pool2d",
            ("adaptive_avg_pool2d", true) => "adaptive_avg_pool2d_backward",
            (_, false) => "avg_pool2d",
            (_, true) => "avg_pool2d_backward",
        };
        let geom = Arc::clone(self);
        Ok(x.tape
            .record(name, value, &[x], || AvgBackward { geom, adjoint }))
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// 2-D average pooling over the last two axes of `[N, C, H, W]` (or `[C, H, W]`), with zero
    /// padding. Each output is its window's sum divided by the window size — counting the padding
    /// if `count_include_pad` (PyTorch's default), else only the positions inside the input — or
    /// by `divisor_override`. Linear: ∂L/∂x spreads `g[o]/divisor` over o's window.
    ///
    /// Errors as [`Var::max_pool2d`] (a `divisor_override` of 0 is an
    /// [`Error::InvalidHyperparameter`]).
    ///
    /// PyTorch equivalent: `F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode,
    /// count_include_pad, divisor_override)`.
    ///
    /// ```
    /// use tapegrad::{AvgPool2dOptions, Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2])?);
    /// let y = x.avg_pool2d(AvgPool2dOptions::new(2))?;
    /// assert_eq!(y.value().data(), &[2.5]);
    /// let grads = y.sum()?.backward()?;
    /// assert_eq!(grads.wrt(x)?.data(), &[0.25; 4]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn avg_pool2d(self, options: AvgPool2dOptions) -> Result<Var<'t, T>> {
        const OP: &str = "avg_pool2d";
        let AvgPool2dOptions {
            kernel_size: k,
            stride: s,
            padding: pad,
            ceil_mode,
            count_include_pad,
            divisor_override,
        } = options;
        if divisor_override == Some(0) {
            return Err(Error::InvalidHyperparameter {
                op: OP,
                name: "divisor_override",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        let planes = fixed_window_planes(OP, &self.shape(), k, s, pad, (1, 1), ceil_mode)?;
        // (No windows to tabulate for an empty batch, whose output size may be enormous.)
        let tabulate = planes.planes > 0;
        let (ho, wo) = (planes.ho * tabulate as usize, planes.wo * tabulate as usize);
        let rows = AxisWindows::fixed(planes.h, ho, k.0, s.0, pad.0, count_include_pad)?;
        let cols = AxisWindows::fixed(planes.w, wo, k.1, s.1, pad.1, count_include_pad)?;
        Arc::new(AvgGeometry {
            op: OP,
            planes,
            rows,
            cols,
            divisor_override,
        })
        .record(self, false)
    }

    /// Adaptive average pooling to `output_size` (one number or `(h, w)`): output (i, j) averages
    /// rows ⌊i·H/H_out⌋ .. ⌈(i+1)·H/H_out⌉ and the columns likewise (PyTorch's windows, which
    /// overlap when the sizes do not divide). Linear: ∂L/∂x spreads g over each window.
    ///
    /// Errors: wrong rank ([`Error::BadRank`]); an empty spatial axis of the input
    /// ([`Error::InvalidArgument`]).
    ///
    /// PyTorch equivalent: `F.adaptive_avg_pool2d(x, output_size)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// // Two channels of 1×3 (an unbatched [C, H, W] input).
    /// let x = tape.leaf(Tensor::from_vec((0..6).map(f64::from).collect(), &[2, 1, 3])?);
    /// let y = x.adaptive_avg_pool2d(1)?; // global average of each channel
    /// assert_eq!(y.value().data(), &[1.0, 4.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn adaptive_avg_pool2d(self, output_size: impl IntoPair) -> Result<Var<'t, T>> {
        const OP: &str = "adaptive_avg_pool2d";
        let (ho, wo) = output_size.into_pair();
        let x_shape = self.shape();
        let (planes, h, w) = plane_dims(OP, &x_shape, true)?;
        let planes = Planes {
            planes,
            h,
            w,
            ho,
            wo,
            y_shape: pooled_shape(&x_shape, ho, wo)?,
            x_shape,
        };
        let tabulate = planes.planes > 0;
        let rows = AxisWindows::adaptive(h, ho * tabulate as usize)?;
        let cols = AxisWindows::adaptive(w, wo * tabulate as usize)?;
        Arc::new(AvgGeometry {
            op: OP,
            planes,
            rows,
            cols,
            divisor_override: None,
        })
        .record(self, false)
    }
}

/// Backward of an average pool (A, `adjoint` false) or of its recorded backward (Aᵀ): the other
/// one. Saves the windows.
#[derive(Debug)]
struct AvgBackward {
    geom: Arc<AvgGeometry>,
    adjoint: bool,
}

impl<T: Float> Backward<T> for AvgBackward {
    fn backward(&self, _cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let dx = if self.adjoint {
            self.geom.average(g)?
        } else {
            self.geom.spread(g)?
        };
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, _cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(self.geom.record(g, !self.adjoint)?)])
    }

    fn saved_bytes(&self) -> usize {
        let axis = |a: &AxisWindows| 3 * a.start.len() * std::mem::size_of::<usize>();
        axis(&self.geom.rows) + axis(&self.geom.cols)
    }

    fn describe_saved(&self) -> String {
        format!(
            "{}×{} windows over {}×{} planes",
            self.geom.planes.ho, self.geom.planes.wo, self.geom.planes.h, self.geom.planes.w
        )
    }
}
