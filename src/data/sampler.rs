//! Samplers: the order in which a loader visits a data set in each epoch.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_pcg::Pcg64;

use crate::error::{Error, Result};

/// The order of indices a loader visits in one epoch, a pure function of `(len, epoch)` so any
/// epoch's order can be recomputed (to resume mid-epoch, or on every rank of a distributed run).
///
/// The indices must lie in `0..len`; they may repeat or leave some out (a weighted or a
/// per-rank sampler). The loader checks them.
///
/// PyTorch equivalent: `torch.utils.data.Sampler` with `set_epoch` (as `DistributedSampler`).
pub trait Sampler {
    /// The indices to visit in `epoch`, for a data set of `len` items.
    fn indices(&self, len: usize, epoch: u64) -> Result<Vec<usize>>;
}

/// `0, 1, …, len − 1` every epoch.
///
/// PyTorch equivalent: `SequentialSampler` (`DataLoader(shuffle=False)`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SequentialSampler;

impl Sampler for SequentialSampler {
    fn indices(&self, len: usize, _epoch: u64) -> Result<Vec<usize>> {
        identity(len)
    }
}

/// A permutation of `0..len` drawn afresh each epoch from `(seed, epoch)` alone: the same seed
/// and epoch give the same order, in any process, whatever came before.
///
/// PyTorch equivalent: `RandomSampler` (`DataLoader(shuffle=True)`) with a seeded generator
/// reset per epoch. The permutation itself differs from PyTorch's `randperm`.
///
/// ```
/// use tapegrad::data::{RandomSampler, Sampler};
/// let sampler = RandomSampler { seed: 7 };
/// let epoch3 = sampler.indices(10, 3)?;
/// assert_eq!(epoch3, sampler.indices(10, 3)?); // reproducible
/// assert_ne!(epoch3, sampler.indices(10, 4)?); // reshuffled per epoch
/// let mut sorted = epoch3.clone();
/// sorted.sort();
/// assert_eq!(sorted, (0..10).collect::<Vec<_>>()); // a permutation
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RandomSampler {
    /// The seed shared by every epoch.
    pub seed: u64,
}

impl Sampler for RandomSampler {
    fn indices(&self, len: usize, epoch: u64) -> Result<Vec<usize>> {
        permutation(len, epoch_seed(self.seed, epoch))
    }
}

/// Any closure `Fn(len, epoch) -> Result<Vec<usize>>` is a sampler.
impl<F> Sampler for F
where
    F: Fn(usize, u64) -> Result<Vec<usize>>,
{
    fn indices(&self, len: usize, epoch: u64) -> Result<Vec<usize>> {
        self(len, epoch)
    }
}

/// `0..len` in a fallibly allocated `Vec`.
pub(crate) fn identity(len: usize) -> Result<Vec<usize>> {
    let mut order = Vec::new();
    order
        .try_reserve_exact(len)
        .map_err(|_| Error::OutOfMemory {
            op: "sampler",
            bytes: len as u128 * std::mem::size_of::<usize>() as u128,
        })?;
    order.extend(0..len);
    Ok(order)
}

/// A permutation of `0..len` fixed by `seed` (Fisher–Yates driven by PCG-64).
pub(crate) fn permutation(len: usize, seed: u64) -> Result<Vec<usize>> {
    let mut order = identity(len)?;
    order.shuffle(&mut Pcg64::seed_from_u64(seed));
    Ok(order)
}

/// One generator seed per `(seed, epoch)`: SplitMix64's finaliser over both, so neighbouring
/// epochs (and seeds) give unrelated streams.
pub(crate) fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    mix(seed ^ mix(epoch))
}
