//! Integer indices: class labels, token ids, the index tensors of `gather` and `index_select`.
//!
//! Any primitive integer type can be an index ([`Index`]); an n-d array of them is [`Indices`].
//! Indices are checked where they are used, against the length they index into: a negative index
//! or one past the end is an [`Error::IndexOutOfRange`] naming the op, the index and its position.

use crate::error::{Error, Result};
use crate::shape::Shape;

/// A value usable as an index or a class label: any primitive integer type.
pub trait Index: Copy {
    /// The value as an `i64` (for checks and error messages); values beyond `i64::MAX` saturate,
    /// so they fail every range check.
    fn as_i64(self) -> i64;
}

macro_rules! impl_index {
    ($($t:ty),*) => {$(
        impl Index for $t {
            #[inline]
            fn as_i64(self) -> i64 {
                i64::try_from(self).unwrap_or(i64::MAX)
            }
        }
    )*};
}
impl_index!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

/// An n-d array of integer indices with a shape, such as a `[batch, time]` block of token ids.
///
/// ```
/// use tapegrad::Indices;
/// let ids = Indices::new(&[3u8, 0, 1, 2, 2, 1], &[2, 3])?;
/// assert_eq!(ids.dims(), &[2, 3]);
/// assert_eq!(ids.positions("embedding", 4)?, vec![3, 0, 1, 2, 2, 1]);
/// let err = ids.positions("embedding", 3).unwrap_err();
/// assert_eq!(err.to_string(), "embedding: index 3 at position 0 is out of range for a dimension of size 3");
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indices {
    values: Vec<i64>,
    shape: Shape,
}

impl Indices {
    /// Indices of the given dimensions (row-major); fails if the count does not match.
    pub fn new<I: Index>(values: &[I], dims: &[usize]) -> Result<Self> {
        let shape = Shape::new(dims)?;
        if values.len() != shape.numel() {
            return Err(Error::DataLength {
                op: "Indices::new",
                expected: shape.numel(),
                got: values.len(),
                shape,
            });
        }
        let mut data = Vec::new();
        data.try_reserve_exact(values.len())
            .map_err(|_| Error::OutOfMemory {
                op: "Indices::new",
                bytes: values.len() as u128 * 8,
            })?;
        data.extend(values.iter().map(|v| v.as_i64()));
        Ok(Indices {
            values: data,
            shape,
        })
    }

    /// A 1-D list of indices.
    pub fn from_slice<I: Index>(values: &[I]) -> Result<Self> {
        Self::new(values, &[values.len()])
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// Number of indices.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values, row-major, as given.
    pub fn values(&self) -> &[i64] {
        &self.values
    }

    /// The values as positions in `0..len`, or [`Error::IndexOutOfRange`] naming `op` and the
    /// first index that is negative or not below `len`.
    pub fn positions(&self, op: &'static str, len: usize) -> Result<Vec<usize>> {
        positions(op, &self.values, len)
    }
}

/// Checks indices against `len` and converts them to positions.
pub(crate) fn positions<I: Index>(
    op: &'static str,
    values: &[I],
    len: usize,
) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    out.try_reserve_exact(values.len())
        .map_err(|_| Error::OutOfMemory {
            op,
            bytes: values.len() as u128 * 8,
        })?;
    for (position, &v) in values.iter().enumerate() {
        let index = v.as_i64();
        match usize::try_from(index) {
            Ok(i) if i < len => out.push(i),
            _ => {
                return Err(Error::IndexOutOfRange {
                    op,
                    position,
                    index,
                    len,
                });
            }
        }
    }
    Ok(out)
}
