//! `Embedding`: a table of vectors looked up by integer id.

use rand::Rng;

use super::init::positive;
use super::module::{Context, ForwardIds, Module, Visitor};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::indices::Indices;
use crate::param::Param;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

const OP: &str = "Embedding";

/// A lookup table of `num_embeddings` vectors of `embedding_dim` elements: ids of any shape
/// `[…]` give vectors `[…, embedding_dim]`. The row `padding_idx` (if any) gets no gradient, so
/// it stays as it is (zero, as initialised) through training.
///
/// Initialised like PyTorch: every weight ~ N(0, 1), the padding row zero.
/// Parameter: `weight`, `[num_embeddings, embedding_dim]`.
///
/// PyTorch equivalent: `nn.Embedding(num_embeddings, embedding_dim, padding_idx)`.
///
/// ```
/// use rand::SeedableRng;
/// use tapegrad::nn::{Context, Embedding, ForwardIds};
/// use tapegrad::{Indices, Tape};
///
/// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
/// let emb = Embedding::<f32>::with_padding(10, 4, Some(0), &mut rng)?;
/// let tape = Tape::new();
/// let ids = Indices::new(&[3u32, 0, 9, 3], &[2, 2])?;
/// let x = emb.forward_ids(&mut Context::eval(), &tape, &ids)?;
/// assert_eq!(x.value().dims(), &[2, 2, 4]);
/// assert_eq!(x.value().get(&[0, 1, 2])?, 0.0); // the padding row
/// let bad = Indices::from_slice(&[10u32])?;
/// assert!(emb.forward_ids(&mut Context::eval(), &tape, &bad).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Embedding<T: Float> {
    /// The table, `[num_embeddings, embedding_dim]`.
    pub weight: Param<T>,
    padding_idx: Option<usize>,
}

impl<T: Float> Embedding<T> {
    /// A table of `num_embeddings` vectors of `embedding_dim` elements, ~ N(0, 1).
    pub fn new<R: Rng + ?Sized>(
        num_embeddings: usize,
        embedding_dim: usize,
        rng: &mut R,
    ) -> Result<Self> {
        Self::with_padding(num_embeddings, embedding_dim, None, rng)
    }

    /// A table whose row `padding_idx` is zero and receives no gradient. A negative
    /// `padding_idx` counts from the end, as in PyTorch (−1 is the last row).
    pub fn with_padding<R: Rng + ?Sized>(
        num_embeddings: usize,
        embedding_dim: usize,
        padding_idx: Option<isize>,
        rng: &mut R,
    ) -> Result<Self> {
        positive(OP, "num_embeddings", num_embeddings)?;
        positive(OP, "embedding_dim", embedding_dim)?;
        let padding = resolve_padding(num_embeddings, padding_idx)?;
        let mut table = Tensor::normal(&[num_embeddings, embedding_dim], T::ZERO, T::ONE, rng)?;
        if let Some(p) = padding {
            table.data_mut()[p * embedding_dim..(p + 1) * embedding_dim].fill(T::ZERO);
        }
        Ok(Embedding {
            weight: Param::new("weight", table),
            padding_idx: padding,
        })
    }

    /// A layer around an existing table `[num_embeddings, embedding_dim]`, kept as it is (the
    /// padding row is not zeroed). PyTorch equivalent: `nn.Embedding.from_pretrained(table,
    /// freeze=False, padding_idx=padding_idx)`.
    pub fn from_tensor(table: Tensor<T>, padding_idx: Option<isize>) -> Result<Self> {
        let &[num_embeddings, embedding_dim] = table.dims() else {
            return Err(Error::BadRank {
                op: OP,
                expected: "a table of shape [num_embeddings, embedding_dim]",
                shape: table.shape().clone(),
            });
        };
        positive(OP, "num_embeddings", num_embeddings)?;
        positive(OP, "embedding_dim", embedding_dim)?;
        let padding = resolve_padding(num_embeddings, padding_idx)?;
        Ok(Embedding {
            weight: Param::new("weight", table),
            padding_idx: padding,
        })
    }

    /// Number of rows of the table.
    pub fn num_embeddings(&self) -> usize {
        self.weight.shape().dims()[0]
    }

    /// Length of each vector.
    pub fn embedding_dim(&self) -> usize {
        self.weight.shape().dims()[1]
    }

    /// The padding row, if any (resolved to `0..num_embeddings`).
    pub fn padding_idx(&self) -> Option<usize> {
        self.padding_idx
    }
}

/// `padding_idx` in `-n..n`, resolved to `0..n`.
fn resolve_padding(n: usize, padding_idx: Option<isize>) -> Result<Option<usize>> {
    let Some(p) = padding_idx else {
        return Ok(None);
    };
    let resolved = if p < 0 {
        n.checked_sub(p.unsigned_abs())
    } else {
        Some(p.unsigned_abs()).filter(|&q| q < n)
    };
    match resolved {
        Some(q) => Ok(Some(q)),
        None => Err(Error::InvalidHyperparameter {
            op: OP,
            name: "padding_idx",
            value: p as f64,
            reason: "must lie within num_embeddings (negative values count from the end)",
        }),
    }
}

impl<T: Float> Module<T> for Embedding<T> {
    fn visit(&self, v: &mut Visitor<'_, T>) {
        v.param("weight", &self.weight);
    }
}

impl<T: Float> ForwardIds<T> for Embedding<T> {
    /// The rows of `ids`: `ids.dims() + [embedding_dim]`. An id outside `0..num_embeddings` is an
    /// [`Error::IndexOutOfRange`] naming `Embedding`, the id and its position.
    fn forward_ids<'t>(
        &self,
        _cx: &mut Context<'_>,
        tape: &'t Tape<T>,
        ids: &Indices,
    ) -> Result<Var<'t, T>> {
        let table = tape.param(&self.weight);
        table.embedding(ids, self.padding_idx).map_err(|e| match e {
            Error::IndexOutOfRange {
                position,
                index,
                len,
                ..
            } => Error::IndexOutOfRange {
                op: OP,
                position,
                index,
                len,
            },
            other => other,
        })
    }
}
