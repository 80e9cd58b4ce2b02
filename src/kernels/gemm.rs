//! Safe wrapper around the `gemm` crate's matrix multiply.
//!
//! `gemm` takes raw pointers and element strides, which lets a transposed operand be read in place: the
//! transpose of a row-major `[r, c]` matrix is the same buffer read with row stride 1 and column
//! stride `c`. Every length and stride is checked here, before the one `unsafe` call.
#![allow(unsafe_code)]

use gemm::Parallelism;
use rayon::prelude::*;

use crate::element::Float;

/// A read-only strided view of a matrix.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `[rows, cols]` matrix, or its transpose (`transposed`), viewed without copying.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize, transposed: bool) -> Self {
        if transposed {
            MatRef {
                data,
                rows: cols,
                cols: rows,
                row_stride: 1,
                col_stride: cols,
            }
        } else {
            MatRef {
                data,
                rows,
                cols,
                row_stride: cols,
                col_stride: 1,
            }
        }
    }

    /// Rows `start..start + len` of the view (`len` ≥ 1, inside the view).
    fn rows_from(&self, start: usize, len: usize) -> Self {
        MatRef {
            data: &self.data[start * self.row_stride..],
            rows: len,
            ..*self
        }
    }

    /// Whether every (row, col) index of the view falls inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .and_then(|r| (self.cols - 1).checked_mul(self.col_stride).map(|c| (r, c)))
            .and_then(|(r, c)| r.checked_add(c));
        matches!(last, Some(l) if l < self.data.len() && l <= isize::MAX as usize)
    }
}

/// Products smaller than this many multiply-adds run on one thread: below it, waking a pool costs
/// more than it saves.
pub(crate) const PARALLEL_MIN_FLOPS: usize = 1 << 21;

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`), with `dst` row-major `[m, n]`.
///
/// Panics (an internal invariant, not user input: every caller has already checked shapes) if the
/// views do not fit the buffers.
pub(crate) fn matmul_into<T: Float>(
    dst: &mut [T],
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    accumulate: bool,
) {
    matmul_into_with(dst, lhs, rhs, accumulate, true)
}

/// [`matmul_into`], on one thread unless `may_split` (for callers that already run many products
/// in parallel, one per thread).
pub(crate) fn matmul_into_with<T: Float>(
    dst: &mut [T],
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    accumulate: bool,
    may_split: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    debug_assert_eq!(dst.len(), m * n, "gemm wrapper: the output does not fit");
    // Every product, whole or a band of rows, goes through `gemm_call`, which checks the views.
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(T::ZERO);
        }
        return;
    }
    let threads = crate::threads::num_threads();
    if may_split && threads > 1 && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_FLOPS {
        if m >= threads * SPLIT_MIN_ROWS && (n <= SPLIT_MAX_COLS || k < SPLIT_MIN_ROWS) {
            // One band of output rows per thread, each a whole product of its own: every thread
            // runs the kernel on a full-depth problem. For a training step's shapes (a weight
            // gradient gᵀ·x, a product with few columns or a short inner dimension) the gemm
            // crate's own split divides the work less evenly; for wide outputs it shares one
            // packed copy of the right operand between the threads, which the bands cannot.
            let band = m.div_ceil(threads).next_multiple_of(SPLIT_ALIGN).min(m);
            dst.par_chunks_mut(band * n)
                .enumerate()
                .for_each(|(i, dst)| {
                    let lhs = lhs.rows_from(i * band, dst.len() / n);
                    gemm_call(dst, lhs, rhs, accumulate, Parallelism::None);
                });
            return;
        }
        return gemm_call(dst, lhs, rhs, accumulate, Parallelism::Rayon(threads));
    }
    gemm_call(dst, lhs, rhs, accumulate, Parallelism::None)
}

/// Rows per thread below which a product is not split into bands of rows.
const SPLIT_MIN_ROWS: usize = 64;

/// Outputs wider than this (with a long inner dimension) are left to the gemm crate's own split.
const SPLIT_MAX_COLS: usize = 2048;

/// Bands of rows start at multiples of this (the kernels' row tile).
const SPLIT_ALIGN: usize = 16;

/// The one call into `gemm`, with shapes already checked by [`matmul_into_with`].
fn gemm_call<T: Float>(
    dst: &mut [T],
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    accumulate: bool,
    parallelism: Parallelism,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(
        rhs.rows == k && dst.len() == m * n && lhs.in_bounds() && rhs.in_bounds(),
        "gemm wrapper: views do not fit their buffers"
    );
    // SAFETY: `in_bounds` proved that every element the views address lies inside `lhs.data` and
    // `rhs.data`, and all offsets fit in isize; `dst` is exactly m*n elements, written row-major with
    // row stride n and column stride 1; `dst` is a unique borrow, so it cannot alias the inputs;
    // `T` is f32 or f64 (the sealed `Float` trait), the types gemm supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}
