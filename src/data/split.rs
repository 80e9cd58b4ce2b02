//! Random splits of a data set into disjoint parts.

use std::sync::Arc;

use super::dataset::{Dataset, Subset};
use super::sampler::permutation;
use crate::error::{Error, Result};

/// How to cut: exact lengths summing to the data set's length, or fractions summing to 1.
#[derive(Clone, Copy, Debug)]
pub enum Parts<'a> {
    /// Exact lengths; they must sum to the data set's length.
    Lengths(&'a [usize]),
    /// Fractions in `[0, 1]` summing to 1 (within 1e-9): each part gets
    /// `floor(len · fraction)` items, and the remainder goes one by one to the parts in order.
    Fractions(&'a [f64]),
}

impl<'a> From<&'a [usize]> for Parts<'a> {
    fn from(lengths: &'a [usize]) -> Self {
        Parts::Lengths(lengths)
    }
}

impl<'a, const N: usize> From<&'a [usize; N]> for Parts<'a> {
    fn from(lengths: &'a [usize; N]) -> Self {
        Parts::Lengths(lengths)
    }
}

impl<'a> From<&'a [f64]> for Parts<'a> {
    fn from(fractions: &'a [f64]) -> Self {
        Parts::Fractions(fractions)
    }
}

impl<'a, const N: usize> From<&'a [f64; N]> for Parts<'a> {
    fn from(fractions: &'a [f64; N]) -> Self {
        Parts::Fractions(fractions)
    }
}

/// The length of each part, as PyTorch's `random_split` computes them.
pub fn split_lengths(len: usize, parts: Parts<'_>) -> Result<Vec<usize>> {
    let op = "random_split";
    let lengths = match parts {
        Parts::Lengths(lengths) => lengths.to_vec(),
        Parts::Fractions(fractions) => {
            if fractions.is_empty() {
                return Err(Error::InvalidArgument {
                    op,
                    reason: "no fractions given".to_string(),
                });
            }
            if let Some(&bad) = fractions
                .iter()
                .find(|f| !(0.0..=1.0).contains(*f) || f.is_nan())
            {
                return Err(Error::InvalidHyperparameter {
                    op,
                    name: "fraction",
                    value: bad,
                    reason: "must lie in [0, 1]",
                });
            }
            // Python's math.isclose(total, 1) (relative tolerance 1e-9) and total <= 1.
            let total: f64 = fractions.iter().sum();
            if (total - 1.0).abs() > 1e-9 || total > 1.0 {
                return Err(Error::InvalidArgument {
                    op,
                    reason: format!("fractions {fractions:?} sum to {total}, not 1"),
                });
            }
            let mut lengths: Vec<usize> = fractions
                .iter()
                .map(|f| (len as f64 * f).floor() as usize)
                .collect();
            let assigned: usize = lengths.iter().sum();
            let parts = lengths.len();
            for i in 0..len.saturating_sub(assigned) {
                lengths[i % parts] += 1;
            }
            lengths
        }
    };
    let total = lengths
        .iter()
        .try_fold(0usize, |a, &b| a.checked_add(b))
        .unwrap_or(usize::MAX);
    if total != len {
        return Err(Error::InvalidArgument {
            op,
            reason: format!("lengths {lengths:?} sum to {total}, not the data set's length {len}"),
        });
    }
    Ok(lengths)
}

/// Splits the indices `0..len` into disjoint random parts (together every index exactly once),
/// fixed by `seed`. `parts` is `&[lengths]` (`usize`, summing to `len`) or `&[fractions]`
/// (`f64`, summing to 1); bad ones are an [`Error::InvalidArgument`] or
/// [`Error::InvalidHyperparameter`].
///
/// PyTorch equivalent: `torch.utils.data.random_split(range(len), lengths, generator)` — the
/// same lengths, another permutation.
///
/// ```
/// use tapegrad::data::random_split;
/// let parts = random_split(10, &[0.5, 0.3, 0.2], 0)?;
/// assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [5, 3, 2]);
/// // Fractions round down, and the remainder goes round-robin from the first part (as PyTorch).
/// let parts = random_split(7, &[0.5, 0.5], 0)?;
/// assert_eq!((parts[0].len(), parts[1].len()), (4, 3));
/// assert!(random_split(10, &[6usize, 5], 0).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn random_split<'a>(
    len: usize,
    parts: impl Into<Parts<'a>>,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    let lengths = split_lengths(len, parts.into())?;
    let order = permutation(len, seed)?;
    let mut start = 0;
    Ok(lengths
        .into_iter()
        .map(|n| {
            let part = order[start..start + n].to_vec();
            start += n;
            part
        })
        .collect())
}

/// [`random_split`] of a data set: one [`Subset`] per part.
///
/// PyTorch equivalent: `torch.utils.data.random_split(dataset, lengths, generator)`.
pub fn random_split_dataset<'a, D: Dataset>(
    dataset: D,
    parts: impl Into<Parts<'a>>,
    seed: u64,
) -> Result<Vec<Subset<D>>> {
    let dataset = Arc::new(dataset);
    random_split(dataset.len(), parts, seed)?
        .into_iter()
        .map(|indices| Subset::new(Arc::clone(&dataset), indices))
        .collect()
}
