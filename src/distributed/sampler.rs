//! Which samples each rank trains on.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_pcg::Pcg64;

use crate::error::{Error, Result};

/// Each rank's disjoint shard of a data set of `len` samples, as PyTorch's `DistributedSampler`:
/// every epoch the indices `0..len` are shuffled with a generator seeded from `seed + epoch` (the
/// same on every rank), then either padded by repeating the first indices until the count divides
/// evenly (`drop_last = false`, the default) or cut to the largest multiple of the world size
/// (`drop_last = true`); rank r takes positions r, r + N, r + 2N, … of that list.
///
/// So every rank gets the same number of samples ([`num_samples`](Self::num_samples)) and the
/// ranks' shards together are the epoch's list, each index exactly once apart from the padding.
/// Rank r's k-th batch of B is positions `k·B·N … (k+1)·B·N` of the list, interleaved: one process
/// taking batches of B·N from `DistributedSampler::new(len, 1, 0)` with the same seed sees the
/// same samples in the same steps (up to the padding at the end).
///
/// A standalone index generator: hand [`indices`](Self::indices) to any data loader.
///
/// PyTorch equivalent: `DistributedSampler(dataset, num_replicas, rank, shuffle, seed,
/// drop_last)` with `set_epoch(epoch)`. The shuffled order is not PyTorch's (that one comes from
/// `torch.randperm`); the positions, padding and cutting are.
///
/// ```
/// use tapegrad::distributed::DistributedSampler;
/// // 10 samples over 3 ranks, no shuffle: padded to 12 by repeating 0 and 1.
/// let shards: Vec<Vec<usize>> = (0..3)
///     .map(|r| DistributedSampler::new(10, 3, r).map(|s| s.shuffle(false).indices(0)))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(shards, [vec![0, 3, 6, 9], vec![1, 4, 7, 0], vec![2, 5, 8, 1]]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistributedSampler {
    len: usize,
    num_replicas: usize,
    rank: usize,
    shuffle: bool,
    seed: u64,
    drop_last: bool,
}

impl DistributedSampler {
    /// The sampler of rank `rank` among `num_replicas`, over `len` samples: shuffled, seed 0,
    /// padded. Fails with [`Error::InvalidArgument`] unless `num_replicas ≥ 1` and
    /// `rank < num_replicas`.
    pub fn new(len: usize, num_replicas: usize, rank: usize) -> Result<Self> {
        if num_replicas == 0 || rank >= num_replicas {
            return Err(Error::InvalidArgument {
                op: "DistributedSampler::new",
                reason: format!(
                    "rank {rank} is not in 0..{num_replicas} (num_replicas must be at least 1)"
                ),
            });
        }
        Ok(DistributedSampler {
            len,
            num_replicas,
            rank,
            shuffle: true,
            seed: 0,
            drop_last: false,
        })
    }

    /// For this process's rank in `dist`.
    pub fn for_rank(dist: &super::Distributed, len: usize) -> Result<Self> {
        Self::new(len, dist.world_size(), dist.rank())
    }

    /// Whether to reshuffle every epoch (default true).
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// The shared seed (default 0); must be the same on every rank.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Cut the tail instead of padding (default false).
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Samples per rank per epoch: `⌈len / N⌉`, or with `drop_last` `⌊len / N⌋`.
    pub fn num_samples(&self) -> usize {
        if self.drop_last {
            self.len / self.num_replicas
        } else {
            self.len.div_ceil(self.num_replicas)
        }
    }

    /// Samples per epoch over all ranks: `num_samples · N`.
    pub fn total_size(&self) -> usize {
        self.num_samples() * self.num_replicas
    }

    /// The epoch's list before it is split: `0..len` (shuffled from `seed + epoch`), padded or cut
    /// to [`total_size`](Self::total_size). The same on every rank.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        if self.shuffle {
            order.shuffle(&mut Pcg64::seed_from_u64(self.seed.wrapping_add(epoch)));
        }
        let total = self.total_size();
        if total <= order.len() {
            order.truncate(total);
        } else if !order.is_empty() {
            // Pad by repeating the list from its start, as many times as needed.
            let mut position = 0;
            while order.len() < total {
                order.push(order[position]);
                position += 1;
            }
        }
        order
    }

    /// This rank's indices for `epoch`: positions `rank, rank + N, …` of
    /// [`epoch_order`](Self::epoch_order). PyTorch: `set_epoch(epoch); list(sampler)`.
    pub fn indices(&self, epoch: u64) -> Vec<usize> {
        self.epoch_order(epoch)
            .into_iter()
            .skip(self.rank)
            .step_by(self.num_replicas)
            .collect()
    }
}
