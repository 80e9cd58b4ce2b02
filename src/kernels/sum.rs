//! The one summation kernel behind every reduction: pairwise (cascade) summation.
//!
//! Adding n numbers one after another into a running total lets the rounding error grow like
//! n·ε: in f32 (ε ≈ 6e-8) a total of 2²⁴ stops changing when 1 is added, so summing 2²⁵ ones gives
//! 16 777 216. Splitting the sum in two halves, summing each the same way and adding the two results
//! makes every element pass through only ⌈log₂ n⌉ additions, and the error bound becomes
//! O(log n · ε) — the method of NumPy's `pairwise_sum` and PyTorch's `cascade_sum`.
//!
//! The recursion stops at leaves of at most [`LEAF`] elements, each summed with [`LANES`]
//! independent accumulators (which also lets the compiler use SIMD registers, so this is faster
//! than the running total, not slower). The split points depend only on the length, never on the
//! thread count: the halves of a large sum may run on two threads, but they are the same halves, so
//! the result is bit-identical at any thread count.
//!
//! Three shapes of reduction use the same tree:
//! - [`sum`]: a contiguous slice to one number;
//! - [`dot`]: Σ aᵢbᵢ (the products are formed in the leaves);
//! - [`sum_rows`]: a row-major `[rows, cols]` block to its `cols` column sums (bias gradients,
//!   sums over a leading axis), pairwise over the rows, vectorised along them.

use crate::element::Float;
use crate::error::Result;
use crate::kernels::pool;

/// Independent accumulators in a leaf: each sums every `LANES`-th element.
pub(crate) const LANES: usize = 16;

/// Largest leaf of the tree. Each accumulator adds at most `LEAF / LANES` = 16 elements one after
/// another, so the leaf contributes at most ~16ε of relative error, the tree ⌈log₂(n/LEAF)⌉ε more.
pub(crate) const LEAF: usize = 256;

/// Rows summed one after another into the output before [`sum_rows`] splits the block in two.
const ROW_LEAF: usize = 16;

/// Sums above this many elements split their two halves over two threads (when allowed).
const PARALLEL_MIN: usize = 1 << 20;

/// Where a range of `len > LEAF` elements is split: near the middle, at a multiple of `LANES`,
/// depending only on `len`.
#[inline]
fn split(len: usize) -> usize {
    let half = len / 2;
    half - half % LANES
}

/// Σ xᵢ by pairwise summation. Empty slices sum to 0.
///
/// The result depends only on the values and their order — not on the thread count.
pub(crate) fn sum<T: Float>(x: &[T]) -> T {
    tree(x.len(), &|start, len| leaf_sum(&x[start..start + len]))
}

/// Σ aᵢbᵢ by pairwise summation of the products. The slices have one length (the caller checks).
pub(crate) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    debug_assert_eq!(a.len(), b.len());
    let len = a.len().min(b.len());
    tree(len, &|start, n| {
        leaf_dot(&a[start..start + n], &b[start..start + n])
    })
}

/// The pairwise tree over `0..len`, with `leaf(start, len)` summing each leaf.
fn tree<T: Float>(len: usize, leaf: &(impl Fn(usize, usize) -> T + Sync)) -> T {
    fn go<T: Float>(
        start: usize,
        len: usize,
        leaf: &(impl Fn(usize, usize) -> T + Sync),
        parallel: bool,
    ) -> T {
        if len <= LEAF {
            return leaf(start, len);
        }
        let left = split(len);
        if parallel && len >= PARALLEL_MIN {
            let (a, b) = rayon::join(
                || go(start, left, leaf, true),
                || go(start + left, len - left, leaf, true),
            );
            a + b
        } else {
            go(start, left, leaf, false) + go(start + left, len - left, leaf, false)
        }
    }
    let parallel = len >= PARALLEL_MIN && crate::threads::num_threads() > 1;
    go(0, len, leaf, parallel)
}

/// Below this many elements a leaf adds them one after another: the accumulators would cost more
/// than they save, and the error of at most 7 additions is tiny anyway.
const SHORT: usize = 8;

/// Sums at most [`LEAF`] elements with [`LANES`] accumulators, then the accumulators pairwise.
#[inline]
fn leaf_sum<T: Float>(x: &[T]) -> T {
    if x.len() < SHORT {
        return x.iter().fold(T::ZERO, |s, &v| s + v);
    }
    let mut acc = [T::ZERO; LANES];
    let (full, rest) = x.as_chunks::<LANES>();
    for chunk in full {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a += v;
    }
    combine(acc)
}

/// Σ aᵢbᵢ over at most [`LEAF`] elements, the same way as [`leaf_sum`].
#[inline]
fn leaf_dot<T: Float>(a: &[T], b: &[T]) -> T {
    if a.len() < SHORT {
        return a.iter().zip(b).fold(T::ZERO, |s, (&x, &y)| s + x * y);
    }
    let mut acc = [T::ZERO; LANES];
    let (a_full, a_rest) = a.as_chunks::<LANES>();
    let (b_full, b_rest) = b.as_chunks::<LANES>();
    for (ca, cb) in a_full.iter().zip(b_full) {
        for ((s, &x), &y) in acc.iter_mut().zip(ca).zip(cb) {
            *s += x * y;
        }
    }
    for ((s, &x), &y) in acc.iter_mut().zip(a_rest).zip(b_rest) {
        *s += x * y;
    }
    combine(acc)
}

/// The accumulators added pairwise: ((a₀+a₁)+(a₂+a₃)) + … .
#[inline]
fn combine<T: Float>(mut acc: [T; LANES]) -> T {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] = acc[2 * i] + acc[2 * i + 1];
        }
    }
    acc[0]
}

/// Column sums of a row-major `[rows, cols]` block into `out` (`cols` long, overwritten):
/// `out[j] = Σᵢ src[i·cols + j]`, pairwise over the rows.
///
/// Fails only if the scratch rows the tree needs (one per level, ⌈log₂(rows/16)⌉ of them) cannot
/// be allocated.
pub(crate) fn sum_rows<T: Float>(src: &[T], rows: usize, cols: usize, out: &mut [T]) -> Result<()> {
    debug_assert_eq!(out.len(), cols);
    debug_assert!(src.len() >= rows * cols);
    if cols == 0 {
        return Ok(());
    }
    let depth = levels(rows);
    let mut scratch = pool::try_zeroed::<T>("sum", depth.saturating_mul(cols))?;
    rows_into(src, rows, cols, out, &mut scratch);
    Ok(())
}

/// Levels of the row tree above its leaves.
fn levels(mut rows: usize) -> usize {
    let mut depth = 0;
    while rows > ROW_LEAF {
        rows -= split_rows(rows);
        depth += 1;
    }
    depth
}

/// Where a block of `rows > ROW_LEAF` rows is split; the right part is the larger one, so
/// [`levels`] follows it to find the depth.
#[inline]
fn split_rows(rows: usize) -> usize {
    rows / 2
}

fn rows_into<T: Float>(src: &[T], rows: usize, cols: usize, out: &mut [T], scratch: &mut [T]) {
    if rows <= ROW_LEAF {
        out.fill(T::ZERO);
        for row in src[..rows * cols].chunks_exact(cols) {
            for (o, &v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
        return;
    }
    let top = split_rows(rows);
    let (here, deeper) = scratch.split_at_mut(cols);
    rows_into(src, top, cols, out, deeper);
    rows_into(&src[top * cols..], rows - top, cols, here, deeper);
    for (o, &v) in out.iter_mut().zip(here.iter()) {
        *o += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ones_beyond_f32_integer_range_sum_exactly() {
        let x = vec![1.0f32; (1 << 25) + 3];
        assert_eq!(sum(&x), ((1 << 25) + 3) as f32);
    }

    #[test]
    fn small_and_empty() {
        assert_eq!(sum::<f64>(&[]), 0.0);
        assert_eq!(sum(&[1.5f64]), 1.5);
        assert_eq!(sum(&[1.0f64, 2.0, 3.0]), 6.0);
        assert_eq!(dot(&[1.0f64, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
    }

    #[test]
    fn rows_match_a_pairwise_sum_of_each_column() {
        for rows in [0usize, 1, 15, 16, 17, 100, 1000] {
            let cols = 3;
            let src: Vec<f64> = (0..rows * cols).map(|i| (i as f64).sin()).collect();
            let mut out = vec![f64::NAN; cols];
            sum_rows(&src, rows, cols, &mut out).unwrap();
            for (j, &o) in out.iter().enumerate() {
                let want: f64 = (0..rows).map(|i| src[i * cols + j]).sum();
                assert!(
                    (o - want).abs() < 1e-9,
                    "rows {rows} col {j}: {o} vs {want}"
                );
            }
        }
    }

    #[test]
    fn the_tree_depth_bounds_the_scratch() {
        assert_eq!(levels(16), 0);
        assert_eq!(levels(17), 1);
        assert!(levels(usize::MAX) <= 64);
    }
}
