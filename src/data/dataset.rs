//! The `Dataset` trait and the in-memory data sets: tensors sharing their first axis, and subsets.

use std::sync::Arc;

use crate::element::Float;
use crate::error::{Error, Result};
use crate::indices::Index;
use crate::kernels::pool;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// A finite, indexable collection of items (an image and its label, a row of tensors, …).
///
/// `get` takes `&self`, so a loader can read items from a background thread; it returns an
/// error (never panics) for an index at or past [`Dataset::len`].
///
/// PyTorch equivalent: a map-style `torch.utils.data.Dataset` (`__len__`, `__getitem__`).
pub trait Dataset {
    /// What one index yields.
    type Item;

    /// Number of items.
    fn len(&self) -> usize;

    /// The item at `index` (`0..len()`); [`Error::IndexOutOfRange`] past the end.
    fn get(&self, index: usize) -> Result<Self::Item>;

    /// Whether there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<D: Dataset + ?Sized> Dataset for Arc<D> {
    type Item = D::Item;
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize) -> Result<Self::Item> {
        (**self).get(index)
    }
}

impl<D: Dataset + ?Sized> Dataset for &D {
    type Item = D::Item;
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize) -> Result<Self::Item> {
        (**self).get(index)
    }
}

/// The error for `index` past a data set of `len` items.
pub(crate) fn out_of_range(op: &'static str, index: usize, len: usize) -> Error {
    Error::IndexOutOfRange {
        op,
        position: 0,
        index: i64::try_from(index).unwrap_or(i64::MAX),
        len,
    }
}

/// Row `index` of `tensor` along its first axis, as a tensor of the remaining dimensions.
pub(crate) fn row<T: Float>(
    op: &'static str,
    tensor: &Tensor<T>,
    index: usize,
) -> Result<Tensor<T>> {
    let dims = tensor.dims();
    let rows = dims.first().copied().unwrap_or(0);
    if index >= rows {
        return Err(out_of_range(op, index, rows));
    }
    let row_shape = Shape::new(&dims[1..])?;
    let width = row_shape.numel();
    let data = pool::try_copy(op, &tensor.data()[index * width..(index + 1) * width])?;
    Tensor::from_shape_vec(data, row_shape)
}

/// Several tensors sharing their first dimension; item `i` is row `i` of each, in order.
///
/// PyTorch equivalent: `torch.utils.data.TensorDataset(*tensors)`.
///
/// ```
/// use tapegrad::Tensor;
/// use tapegrad::data::{Dataset, TensorDataset};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2])?;
/// let y = Tensor::from_vec(vec![10.0f32, 20.0, 30.0], &[3])?;
/// let data = TensorDataset::new(vec![x, y])?;
/// let item = data.get(1)?;
/// assert_eq!((item[0].data(), item[1].data()), (&[3.0, 4.0][..], &[20.0][..]));
/// assert!(data.get(3).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TensorDataset<T: Float> {
    tensors: Vec<Tensor<T>>,
    len: usize,
}

impl<T: Float> TensorDataset<T> {
    /// The data set of `tensors`, which must all have at least one axis and the same first
    /// dimension ([`Error::BadRank`], [`Error::ShapeMismatch`]); at least one tensor
    /// ([`Error::ArgumentCount`]).
    pub fn new(tensors: Vec<Tensor<T>>) -> Result<Self> {
        let op = "TensorDataset::new";
        let first = tensors.first().ok_or(Error::ArgumentCount {
            op,
            what: "tensors (at least)",
            expected: 1,
            got: 0,
        })?;
        for t in &tensors {
            if t.shape().rank() == 0 {
                return Err(Error::BadRank {
                    op,
                    expected: "tensors with a first (item) axis",
                    shape: t.shape().clone(),
                });
            }
            if t.dims()[0] != first.dims()[0] {
                return Err(Error::ShapeMismatch {
                    op,
                    lhs: first.shape().clone(),
                    rhs: t.shape().clone(),
                });
            }
        }
        let len = first.dims()[0];
        Ok(TensorDataset { tensors, len })
    }

    /// The tensors, whole.
    pub fn tensors(&self) -> &[Tensor<T>] {
        &self.tensors
    }
}

impl<T: Float> Dataset for TensorDataset<T> {
    type Item = Vec<Tensor<T>>;
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, index: usize) -> Result<Self::Item> {
        self.tensors
            .iter()
            .map(|t| row("TensorDataset::get", t, index))
            .collect()
    }
}

/// Features (first axis: items) with one integer label or id per item; item `i` is
/// `(row i of the features, label i)`. The usual classification data set.
///
/// PyTorch equivalent: `TensorDataset(x, y)` with `y` an integer tensor.
///
/// ```
/// use tapegrad::Tensor;
/// use tapegrad::data::{Dataset, LabeledDataset};
/// let x = Tensor::from_vec(vec![0.0f64, 1.0, 2.0, 3.0], &[2, 2])?;
/// let data = LabeledDataset::new(x, vec![7u8, 3])?;
/// let (features, label) = data.get(1)?;
/// assert_eq!((features.data(), label), (&[2.0, 3.0][..], 3));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LabeledDataset<T: Float, L: Index = usize> {
    features: Tensor<T>,
    labels: Vec<L>,
}

impl<T: Float, L: Index> LabeledDataset<T, L> {
    /// Features of shape `[n, …]` and `n` labels ([`Error::LabelCount`] otherwise; a scalar
    /// feature tensor is an [`Error::BadRank`]).
    pub fn new(features: Tensor<T>, labels: Vec<L>) -> Result<Self> {
        let op = "LabeledDataset::new";
        let Some(&rows) = features.dims().first() else {
            return Err(Error::BadRank {
                op,
                expected: "features with a first (item) axis",
                shape: features.shape().clone(),
            });
        };
        if rows != labels.len() {
            return Err(Error::LabelCount {
                op,
                labels: labels.len(),
                batch: rows,
            });
        }
        Ok(LabeledDataset { features, labels })
    }

    /// The features, whole.
    pub fn features(&self) -> &Tensor<T> {
        &self.features
    }

    /// The labels, whole.
    pub fn labels(&self) -> &[L] {
        &self.labels
    }
}

impl<T: Float, L: Index> Dataset for LabeledDataset<T, L> {
    type Item = (Tensor<T>, L);
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn get(&self, index: usize) -> Result<Self::Item> {
        let label = *self
            .labels
            .get(index)
            .ok_or_else(|| out_of_range("LabeledDataset::get", index, self.labels.len()))?;
        Ok((row("LabeledDataset::get", &self.features, index)?, label))
    }
}

/// The items of a data set at chosen indices, in their order (item `i` is `dataset[indices[i]]`).
/// What [`random_split`](crate::data::random_split_dataset) returns.
///
/// PyTorch equivalent: `torch.utils.data.Subset(dataset, indices)`.
#[derive(Debug)]
pub struct Subset<D> {
    dataset: Arc<D>,
    indices: Vec<usize>,
}

impl<D> Clone for Subset<D> {
    fn clone(&self) -> Self {
        Subset {
            dataset: Arc::clone(&self.dataset),
            indices: self.indices.clone(),
        }
    }
}

impl<D: Dataset> Subset<D> {
    /// The subset of `dataset` at `indices`; an index past the data set is an
    /// [`Error::IndexOutOfRange`] naming its position.
    pub fn new(dataset: Arc<D>, indices: Vec<usize>) -> Result<Self> {
        let len = dataset.len();
        if let Some(position) = indices.iter().position(|&i| i >= len) {
            return Err(Error::IndexOutOfRange {
                op: "Subset::new",
                position,
                index: i64::try_from(indices[position]).unwrap_or(i64::MAX),
                len,
            });
        }
        Ok(Subset { dataset, indices })
    }

    /// The indices into the underlying data set.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The underlying data set.
    pub fn dataset(&self) -> &Arc<D> {
        &self.dataset
    }
}

impl<D: Dataset> Dataset for Subset<D> {
    type Item = D::Item;
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn get(&self, index: usize) -> Result<Self::Item> {
        let inner = *self
            .indices
            .get(index)
            .ok_or_else(|| out_of_range("Subset::get", index, self.indices.len()))?;
        self.dataset.get(inner)
    }
}
