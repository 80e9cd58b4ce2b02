//! Collation: turning the items of one batch into batch tensors.

use crate::element::Float;
use crate::error::{Error, Result};
use crate::indices::Index;
use crate::kernels::pool;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Turns the items of one batch (in order) into a batch.
///
/// Implemented by [`Stack`] (the default) and by any closure `Fn(Vec<Item>) -> Result<Batch>`, so
/// a custom collate is a closure:
///
/// ```
/// use tapegrad::data::{Collate, Stack};
/// let join = |words: Vec<&str>| Ok::<_, tapegrad::Error>(words.join(" "));
/// assert_eq!(join.collate(vec!["a", "b"])?, "a b");
/// # Ok::<(), tapegrad::Error>(())
/// ```
///
/// PyTorch equivalent: the `collate_fn` argument of `DataLoader`.
pub trait Collate<I> {
    /// The batch type.
    type Batch;
    /// The batch of `items` (never empty when called by a loader).
    fn collate(&self, items: Vec<I>) -> Result<Self::Batch>;
}

impl<I, B, F> Collate<I> for F
where
    F: Fn(Vec<I>) -> Result<B>,
{
    type Batch = B;
    fn collate(&self, items: Vec<I>) -> Result<B> {
        self(items)
    }
}

/// The default collate: stacks tensors of one shape along a new first axis, and gathers integer
/// labels or ids into a `Vec`.
///
/// | item | batch |
/// |---|---|
/// | `Tensor<T>` of shape `s` | `Tensor<T>` of shape `[n, s…]` |
/// | `Vec<Tensor<T>>` (a [`TensorDataset`](crate::data::TensorDataset) row) | one stacked tensor per position |
/// | `(Tensor<T>, L)` with `L` an integer | `(Tensor<T>, Vec<L>)` |
/// | `(Tensor<T>, Vec<L>)` (a sequence of ids per item) | `(Tensor<T>, Vec<L>)`, the ids concatenated |
/// | an integer `L` | `Vec<L>` |
///
/// Tensors of different shapes within a batch are an [`Error::ShapeMismatch`].
///
/// PyTorch equivalent: `torch.utils.data.default_collate`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stack;

/// Stacks `tensors` (all of one shape) along a new first axis.
///
/// PyTorch equivalent: `torch.stack(tensors)`.
///
/// ```
/// use tapegrad::Tensor;
/// let a = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
/// let b = Tensor::from_vec(vec![3.0f32, 4.0], &[2])?;
/// let s = tapegrad::data::stack(&[a, b])?;
/// assert_eq!((s.dims(), s.data()), (&[2, 2][..], &[1.0, 2.0, 3.0, 4.0][..]));
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn stack<T: Float>(tensors: &[Tensor<T>]) -> Result<Tensor<T>> {
    let op = "stack";
    let Some(first) = tensors.first() else {
        return Err(Error::ArgumentCount {
            op,
            what: "tensors (at least)",
            expected: 1,
            got: 0,
        });
    };
    let mut dims = smallvec::SmallVec::<[usize; 4]>::new();
    dims.push(tensors.len());
    dims.extend_from_slice(first.dims());
    let shape = Shape::checked(dims)?;
    let mut data = pool::try_empty(op, shape.numel())?;
    for t in tensors {
        if t.dims() != first.dims() {
            return Err(Error::ShapeMismatch {
                op,
                lhs: first.shape().clone(),
                rhs: t.shape().clone(),
            });
        }
        data.extend_from_slice(t.data());
    }
    Tensor::from_shape_vec(data, shape)
}

impl<T: Float> Collate<Tensor<T>> for Stack {
    type Batch = Tensor<T>;
    fn collate(&self, items: Vec<Tensor<T>>) -> Result<Tensor<T>> {
        stack(&items)
    }
}

impl<T: Float> Collate<Vec<Tensor<T>>> for Stack {
    type Batch = Vec<Tensor<T>>;
    fn collate(&self, items: Vec<Vec<Tensor<T>>>) -> Result<Vec<Tensor<T>>> {
        let width = items.first().map_or(0, Vec::len);
        if let Some(bad) = items.iter().find(|row| row.len() != width) {
            return Err(Error::ArgumentCount {
                op: "Stack::collate",
                what: "tensors per item",
                expected: width,
                got: bad.len(),
            });
        }
        let mut columns: Vec<Vec<Tensor<T>>> = (0..width)
            .map(|_| Vec::with_capacity(items.len()))
            .collect();
        for row in items {
            for (column, tensor) in columns.iter_mut().zip(row) {
                column.push(tensor);
            }
        }
        columns.iter().map(|column| stack(column)).collect()
    }
}

impl<T: Float, L: Index> Collate<(Tensor<T>, L)> for Stack {
    type Batch = (Tensor<T>, Vec<L>);
    fn collate(&self, items: Vec<(Tensor<T>, L)>) -> Result<Self::Batch> {
        let (tensors, labels): (Vec<_>, Vec<_>) = items.into_iter().unzip();
        Ok((stack(&tensors)?, labels))
    }
}

impl<T: Float, L: Index> Collate<(Tensor<T>, Vec<L>)> for Stack {
    type Batch = (Tensor<T>, Vec<L>);
    fn collate(&self, items: Vec<(Tensor<T>, Vec<L>)>) -> Result<Self::Batch> {
        let (tensors, ids): (Vec<_>, Vec<_>) = items.into_iter().unzip();
        Ok((stack(&tensors)?, ids.concat()))
    }
}

macro_rules! collate_integers {
    ($($t:ty),*) => {$(
        impl Collate<$t> for Stack {
            type Batch = Vec<$t>;
            fn collate(&self, items: Vec<$t>) -> Result<Vec<$t>> {
                Ok(items)
            }
        }
    )*};
}
collate_integers!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
