//! Shapes, broadcasting, and the one place where a broadcast gradient is reduced back.
//!
//! Broadcasting follows NumPy and PyTorch: align the two shapes at their last axis; two sizes fit when
//! they are equal or one of them is 1; a missing leading axis counts as 1. A bias of shape `[H]` (or
//! `[1, H]`) therefore fits `[N, H]`.

use std::fmt;

use smallvec::SmallVec;

use crate::error::{Error, Result};

/// The most axes a tensor may have. Deeper shapes are an [`Error::RankTooLarge`]: every
/// recursion over axes (printing, for instance) stays shallow, and no real model comes close.
pub const MAX_RANK: usize = 64;

/// Dimensions of a tensor, outermost first. Rank 0 is a scalar.
///
/// ```
/// use tapegrad::Shape;
/// let s = Shape::new(&[128, 64])?;
/// assert_eq!(s.numel(), 8192);
/// assert_eq!(s.to_string(), "[128, 64]");
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(SmallVec<[usize; 4]>);

impl Shape {
    /// A shape from its dimensions; fails if it has more than [`MAX_RANK`] axes or its element
    /// count overflows `usize`.
    pub fn new(dims: &[usize]) -> Result<Shape> {
        Self::checked(SmallVec::from_slice(dims))
    }

    /// The one constructor: every shape, given or derived (a reduction's output, a broadcast),
    /// passes these checks, so `numel` can never overflow.
    pub(crate) fn checked(dims: SmallVec<[usize; 4]>) -> Result<Shape> {
        if dims.len() > MAX_RANK {
            return Err(Error::RankTooLarge {
                op: "shape",
                rank: dims.len(),
                max: MAX_RANK,
            });
        }
        // A zero anywhere makes the count 0, whatever the other axes multiply to.
        if !dims.contains(&0) {
            dims.iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| Error::ShapeOverflow {
                    dims: dims.to_vec(),
                })?;
        }
        Ok(Shape(dims))
    }

    /// The rank-0 shape of a scalar.
    pub fn scalar() -> Shape {
        Shape(SmallVec::new())
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Number of elements (1 for a scalar). Never overflows: [`Shape::new`] checked it.
    pub fn numel(&self) -> usize {
        // Saturating, for shapes like [2, usize::MAX, 0] whose partial products overflow before
        // the 0 is reached; the true count (0, or a count `checked` proved fits) is exact.
        if self.0.contains(&0) {
            0
        } else {
            self.0.iter().fold(1usize, |a, &d| a.saturating_mul(d))
        }
    }

    /// Row-major strides, in elements.
    ///
    /// Saturating: a shape with a zero-size axis may have other axes whose product overflows
    /// (`[0, usize::MAX, 2]` holds no element); its strides are never used to address an element.
    pub fn strides(&self) -> SmallVec<[usize; 4]> {
        let mut strides: SmallVec<[usize; 4]> = SmallVec::from_elem(0, self.rank());
        let mut step = 1usize;
        for (stride, &dim) in strides.iter_mut().zip(&self.0).rev() {
            *stride = step;
            step = step.saturating_mul(dim);
        }
        strides
    }

    /// The product of the dimensions before `axis`, `axis` itself, and after it: the
    /// `[outer, len, inner]` view every axis-wise kernel walks. For a shape that holds elements all
    /// three fit in `usize`; for an empty one the products saturate and are not used to address
    /// anything.
    pub(crate) fn around(&self, axis: usize) -> (usize, usize, usize) {
        let product = |d: &[usize]| d.iter().fold(1usize, |a, &b| a.saturating_mul(b));
        (
            product(&self.0[..axis]),
            self.0[axis],
            product(&self.0[axis + 1..]),
        )
    }

    /// Turns a possibly negative axis (`-1` = last) into an index, or fails naming `op`.
    pub fn axis(&self, op: &'static str, axis: isize) -> Result<usize> {
        let rank = self.rank() as isize;
        let resolved = if axis < 0 { axis + rank } else { axis };
        if (0..rank).contains(&resolved) {
            Ok(resolved as usize)
        } else {
            Err(Error::AxisOutOfRange {
                op,
                axis,
                shape: self.clone(),
            })
        }
    }

    /// The shape two operands broadcast to, or a [`Error::ShapeMismatch`] naming `op`.
    ///
    /// ```
    /// use tapegrad::Shape;
    /// let out = Shape::broadcast("add", &Shape::new(&[128, 64])?, &Shape::new(&[64])?)?;
    /// assert_eq!(out.dims(), &[128, 64]);
    /// assert!(Shape::broadcast("add", &Shape::new(&[128, 64])?, &Shape::new(&[5])?).is_err());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn broadcast(op: &'static str, lhs: &Shape, rhs: &Shape) -> Result<Shape> {
        if lhs == rhs {
            return Ok(lhs.clone());
        }
        let rank = lhs.rank().max(rhs.rank());
        let mut dims: SmallVec<[usize; 4]> = SmallVec::from_elem(0, rank);
        for (i, dim) in dims.iter_mut().enumerate() {
            let l = lhs.dim_from_right(rank - 1 - i);
            let r = rhs.dim_from_right(rank - 1 - i);
            *dim = match (l, r) {
                (a, b) if a == b => a,
                (1, b) => b,
                (a, 1) => a,
                _ => {
                    return Err(Error::ShapeMismatch {
                        op,
                        lhs: lhs.clone(),
                        rhs: rhs.clone(),
                    });
                }
            };
        }
        Shape::checked(dims)
    }

    /// Whether `self` broadcasts to exactly `target` (every axis equal, or 1, or missing).
    pub fn broadcasts_to(&self, target: &Shape) -> bool {
        self.rank() <= target.rank()
            && (0..self.rank()).all(|i| {
                let d = self.dim_from_right(i);
                d == 1 || d == target.dim_from_right(i)
            })
    }

    /// Dimension `i` counted from the right (0 = last axis); 1 for axes the shape does not have.
    fn dim_from_right(&self, i: usize) -> usize {
        if i < self.rank() {
            self.0[self.rank() - 1 - i]
        } else {
            1
        }
    }

    /// Strides that read `self` as if it had been broadcast to `out`: 0 along every broadcast axis.
    /// The caller guarantees `self.broadcasts_to(out)`.
    pub(crate) fn broadcast_strides(&self, out: &Shape) -> SmallVec<[usize; 4]> {
        let own = self.strides();
        let offset = out.rank() - self.rank();
        (0..out.rank())
            .map(|i| {
                if i < offset || self.0[i - offset] == 1 {
                    0
                } else {
                    own[i - offset]
                }
            })
            .collect()
    }

    /// If `self`, without leading axes of size 1, equals the trailing axes of `big`, the number of
    /// elements of that trailing block: `big` is then `self` repeated row after row (the bias case,
    /// `[H]` or `[1, H]` under `[N, H]`), and kernels can walk it in contiguous blocks.
    pub(crate) fn trailing_block_of(&self, big: &Shape) -> Option<usize> {
        let own = &self.0[self.0.iter().take_while(|&&d| d == 1).count()..];
        let rank = big.rank();
        (own.len() <= rank && own == &big.0[rank - own.len()..])
            .then(|| own.iter().fold(1usize, |a, &b| a.saturating_mul(b)))
    }
}

/// Visits every element of `out` in row-major order, with the matching flat offsets into two operands
/// whose (broadcast) strides are `sa` and `sb`: `visit(out_index, a_index, b_index)`.
///
/// This is the single loop behind every broadcasting kernel, forward (binary ops) and backward
/// (reducing a gradient back to an operand's shape).
pub(crate) fn for_each_broadcast(
    out: &Shape,
    sa: &[usize],
    sb: &[usize],
    mut visit: impl FnMut(usize, usize, usize),
) {
    let dims = out.dims();
    let rank = dims.len();
    if out.numel() == 0 {
        return;
    }
    if rank == 0 {
        visit(0, 0, 0);
        return;
    }
    let inner = dims[rank - 1];
    let (step_a, step_b) = (sa[rank - 1], sb[rank - 1]);
    let mut counter: SmallVec<[usize; 4]> = SmallVec::from_elem(0, rank - 1);
    let (mut base_a, mut base_b) = (0usize, 0usize);
    for row in 0..out.numel() / inner {
        let base = row * inner;
        for j in 0..inner {
            visit(base + j, base_a + j * step_a, base_b + j * step_b);
        }
        // Advance the multi-index over the outer axes like an odometer.
        let mut axis = rank - 1;
        while axis > 0 {
            axis -= 1;
            counter[axis] += 1;
            base_a += sa[axis];
            base_b += sb[axis];
            if counter[axis] < dims[axis] {
                break;
            }
            base_a -= sa[axis] * counter[axis];
            base_b -= sb[axis] * counter[axis];
            counter[axis] = 0;
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_an_error() {
        assert!(matches!(
            Shape::new(&[usize::MAX, 2]),
            Err(Error::ShapeOverflow { .. })
        ));
    }

    #[test]
    fn rank_is_capped() {
        assert!(Shape::new(&[1; MAX_RANK]).is_ok());
        assert!(matches!(
            Shape::new(&[1; MAX_RANK + 1]),
            Err(Error::RankTooLarge { rank: 65, .. })
        ));
    }

    #[test]
    fn empty_shapes_with_huge_axes_have_safe_strides() {
        let s = Shape::new(&[0, usize::MAX, 2]).unwrap();
        assert_eq!(s.numel(), 0);
        assert_eq!(s.strides().as_slice(), &[usize::MAX, 2, 1]);
        assert_eq!(s.around(1), (0, usize::MAX, 2));
        // Broadcasting [usize::MAX, 1] against [1, 2] would hold 2·usize::MAX elements.
        let a = Shape::new(&[usize::MAX, 1]).unwrap();
        let b = Shape::new(&[1, 2]).unwrap();
        assert!(matches!(
            Shape::broadcast("add", &a, &b),
            Err(Error::ShapeOverflow { .. })
        ));
    }

    #[test]
    fn broadcast_rules() {
        let s = |d: &[usize]| Shape::new(d).unwrap();
        let out = Shape::broadcast("add", &s(&[2, 1, 4]), &s(&[3, 1])).unwrap();
        assert_eq!(out.dims(), &[2, 3, 4]);
        assert_eq!(s(&[3, 1]).broadcast_strides(&out).as_slice(), &[0, 1, 0]);
        assert!(s(&[4]).broadcasts_to(&out));
        assert!(!s(&[3]).broadcasts_to(&out));
    }

    #[test]
    fn odometer_visits_in_order() {
        let out = Shape::new(&[2, 3]).unwrap();
        let b = Shape::new(&[3]).unwrap().broadcast_strides(&out);
        let a = out.strides();
        let mut seen = vec![];
        for_each_broadcast(&out, &a, &b, |o, i, j| seen.push((o, i, j)));
        assert_eq!(
            seen,
            vec![
                (0, 0, 0),
                (1, 1, 1),
                (2, 2, 2),
                (3, 3, 0),
                (4, 4, 1),
                (5, 5, 2)
            ]
        );
    }
}
