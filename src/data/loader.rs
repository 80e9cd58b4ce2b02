//! The data loader: batches of a data set in a per-epoch order, optionally prepared on a
//! background thread.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use super::collate::{Collate, Stack};
use super::dataset::Dataset;
use super::sampler::{RandomSampler, Sampler, SequentialSampler};
use crate::error::{Error, Result};

/// Batches of a [`Dataset`]: each epoch visits the indices its [`Sampler`] gives (in order by
/// default, or shuffled afresh per epoch from a seed), cuts them into batches of `batch_size`
/// (the last one smaller unless `drop_last`), reads the items and [`Collate`]s them.
///
/// An epoch's batches are a pure function of `(sampler, epoch)`: [`DataLoader::epoch_from`]
/// resumes an interrupted epoch at any batch. With [`DataLoader::prefetch`] the batches are
/// prepared on one background thread, `depth` ahead, and arrive identical and in the same order;
/// an error ends the epoch after it is yielded, and dropping the iterator early stops the thread
/// (its current batch is finished and discarded).
///
/// PyTorch equivalent: `torch.utils.data.DataLoader(dataset, batch_size, shuffle, sampler,
/// collate_fn, drop_last)`, with `prefetch` standing for one worker (`num_workers=1`,
/// `prefetch_factor=depth`) and the seed for a generator reseeded each epoch.
///
/// ```
/// use tapegrad::Tensor;
/// use tapegrad::data::{DataLoader, LabeledDataset};
/// let x = Tensor::from_vec((0..10).map(|v| v as f32).collect(), &[5, 2])?;
/// let data = LabeledDataset::new(x, vec![0usize, 1, 0, 1, 0])?;
/// let loader = DataLoader::new(data, 2)?.shuffle(42).drop_last(true);
/// assert_eq!(loader.batches_in(0)?, 2);
/// for epoch in 0..3 {
///     for batch in loader.epoch(epoch)? {
///         let (features, labels) = batch?;
///         assert_eq!((features.dims(), labels.len()), (&[2, 2][..], 2));
///     }
/// }
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub struct DataLoader<D, C = Stack> {
    dataset: Arc<D>,
    collate: Arc<C>,
    sampler: Arc<dyn Sampler + Send + Sync>,
    batch_size: usize,
    drop_last: bool,
    prefetch: usize,
}

impl<D, C> std::fmt::Debug for DataLoader<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLoader")
            .field("batch_size", &self.batch_size)
            .field("drop_last", &self.drop_last)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

impl<D, C> Clone for DataLoader<D, C> {
    fn clone(&self) -> Self {
        DataLoader {
            dataset: Arc::clone(&self.dataset),
            collate: Arc::clone(&self.collate),
            sampler: Arc::clone(&self.sampler),
            batch_size: self.batch_size,
            drop_last: self.drop_last,
            prefetch: self.prefetch,
        }
    }
}

impl<D: Dataset> DataLoader<D, Stack> {
    /// Batches of `batch_size` items of `dataset`, in order, with the default collate
    /// ([`Stack`]). To share a data set between loaders, pass an `Arc` of it (an `Arc` of a data
    /// set is one). `batch_size` 0 is an [`Error::InvalidHyperparameter`].
    pub fn new(dataset: D, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::InvalidHyperparameter {
                op: "DataLoader",
                name: "batch_size",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        Ok(DataLoader {
            dataset: Arc::new(dataset),
            collate: Arc::new(Stack),
            sampler: Arc::new(SequentialSampler),
            batch_size,
            drop_last: false,
            prefetch: 0,
        })
    }
}

impl<D: Dataset, C> DataLoader<D, C> {
    /// Shuffles every epoch: the order of epoch `e` is a permutation fixed by `(seed, e)`
    /// ([`RandomSampler`]). PyTorch: `shuffle=True` with a seeded generator.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.sampler = Arc::new(RandomSampler { seed });
        self
    }

    /// Visits the indices `sampler` gives each epoch (replacing any shuffle). PyTorch: `sampler=`.
    pub fn sampler(mut self, sampler: impl Sampler + Send + Sync + 'static) -> Self {
        self.sampler = Arc::new(sampler);
        self
    }

    /// Whether to drop a last batch smaller than `batch_size` (PyTorch `drop_last`, false by
    /// default).
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Prepares up to `depth` batches ahead on a background thread (0, the default: none, the
    /// batches are made on the caller's thread as it iterates).
    pub fn prefetch(mut self, depth: usize) -> Self {
        self.prefetch = depth;
        self
    }

    /// The same loader with another collate (a [`Collate`] type or a closure
    /// `Fn(Vec<Item>) -> Result<Batch>`). PyTorch: `collate_fn=`.
    pub fn collate<C2>(self, collate: C2) -> DataLoader<D, C2> {
        DataLoader {
            dataset: self.dataset,
            collate: Arc::new(collate),
            sampler: self.sampler,
            batch_size: self.batch_size,
            drop_last: self.drop_last,
            prefetch: self.prefetch,
        }
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The data set.
    pub fn dataset(&self) -> &Arc<D> {
        &self.dataset
    }

    /// The indices epoch `epoch` visits, in order, checked against the data set's length (an
    /// index past it is an [`Error::IndexOutOfRange`] naming its position).
    pub fn order(&self, epoch: u64) -> Result<Vec<usize>> {
        let len = self.dataset.len();
        let order = self.sampler.indices(len, epoch)?;
        if let Some(position) = order.iter().position(|&i| i >= len) {
            return Err(Error::IndexOutOfRange {
                op: "DataLoader: sampler",
                position,
                index: i64::try_from(order[position]).unwrap_or(i64::MAX),
                len,
            });
        }
        Ok(order)
    }

    /// Number of batches epoch `epoch` yields.
    pub fn batches_in(&self, epoch: u64) -> Result<usize> {
        Ok(self.batch_count(self.order(epoch)?.len()))
    }

    fn batch_count(&self, items: usize) -> usize {
        if self.drop_last {
            items / self.batch_size
        } else {
            items.div_ceil(self.batch_size)
        }
    }
}

impl<D, C> DataLoader<D, C>
where
    D: Dataset + Send + Sync + 'static,
    C: Collate<D::Item> + Send + Sync + 'static,
    C::Batch: Send + 'static,
{
    /// The batches of epoch `epoch` (0-based), each a `Result`; after an error the iterator ends.
    pub fn epoch(&self, epoch: u64) -> Result<Batches<C::Batch>> {
        self.epoch_from(epoch, 0)
    }

    /// The batches of epoch `epoch` from batch `first_batch` on: the rest of an interrupted epoch,
    /// the same batches an uninterrupted one would have yielded. `first_batch` past the epoch's
    /// batch count is an [`Error::IndexOutOfRange`].
    pub fn epoch_from(&self, epoch: u64, first_batch: usize) -> Result<Batches<C::Batch>> {
        let order = self.order(epoch)?;
        let count = self.batch_count(order.len());
        if first_batch > count {
            return Err(Error::IndexOutOfRange {
                op: "DataLoader::epoch_from",
                position: 0,
                index: i64::try_from(first_batch).unwrap_or(i64::MAX),
                len: count + 1,
            });
        }
        let inline = InlineBatches {
            dataset: Arc::clone(&self.dataset),
            collate: Arc::clone(&self.collate),
            order,
            batch_size: self.batch_size,
            next: first_batch,
            count,
            failed: false,
        };
        let remaining = count - first_batch;
        if self.prefetch == 0 {
            return Ok(Batches {
                source: Source::Inline(Box::new(inline)),
                remaining,
            });
        }
        let (sender, receiver) = sync_channel(self.prefetch);
        let worker = std::thread::Builder::new()
            .name("tapegrad-prefetch".to_string())
            .spawn(move || {
                for batch in inline {
                    // The receiver is gone: the consumer stopped early.
                    if sender.send(batch).is_err() {
                        return;
                    }
                }
            })
            .map_err(|source| Error::Io {
                op: "DataLoader: prefetch thread",
                path: String::new(),
                source,
            })?;
        Ok(Batches {
            source: Source::Prefetch {
                receiver: Some(receiver),
                worker: Some(worker),
            },
            remaining,
        })
    }
}

/// Makes the batches on the calling thread.
struct InlineBatches<D, C> {
    dataset: Arc<D>,
    collate: Arc<C>,
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
    count: usize,
    failed: bool,
}

impl<D: Dataset, C: Collate<D::Item>> Iterator for InlineBatches<D, C> {
    type Item = Result<C::Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next >= self.count {
            return None;
        }
        let start = self.next * self.batch_size;
        let end = (start + self.batch_size).min(self.order.len());
        self.next += 1;
        let batch = self.order[start..end]
            .iter()
            .map(|&i| self.dataset.get(i))
            .collect::<Result<Vec<_>>>()
            .and_then(|items| self.collate.collate(items));
        self.failed = batch.is_err();
        Some(batch)
    }
}

enum Source<B> {
    Inline(Box<dyn Iterator<Item = Result<B>> + Send>),
    Prefetch {
        receiver: Option<Receiver<Result<B>>>,
        worker: Option<JoinHandle<()>>,
    },
}

/// The batches of one epoch, from [`DataLoader::epoch`]: an iterator of `Result<Batch>`.
///
/// Dropping it early is fine with or without prefetch: the background thread notices at its next
/// batch and exits, and the drop waits for it.
pub struct Batches<B> {
    source: Source<B>,
    remaining: usize,
}

impl<B> std::fmt::Debug for Batches<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl<B> Iterator for Batches<B> {
    type Item = Result<B>;

    fn next(&mut self) -> Option<Result<B>> {
        let next = match &mut self.source {
            Source::Inline(batches) => batches.next(),
            Source::Prefetch { receiver, worker } => {
                let received = receiver.as_ref().and_then(|r| r.recv().ok());
                match received {
                    Some(batch) => Some(batch),
                    None => {
                        // The worker is done (or died): reap it, and report a panic as an error.
                        *receiver = None;
                        match worker.take().map(JoinHandle::join) {
                            Some(Err(panic)) => {
                                let what = panic
                                    .downcast_ref::<&str>()
                                    .map(|s| s.to_string())
                                    .or_else(|| panic.downcast_ref::<String>().cloned())
                                    .unwrap_or_else(|| "unknown panic".to_string());
                                Some(Err(Error::InvalidArgument {
                                    op: "DataLoader: prefetch thread",
                                    reason: format!(
                                        "the thread preparing batches panicked: {what}"
                                    ),
                                }))
                            }
                            _ => None,
                        }
                    }
                }
            }
        };
        match &next {
            Some(Ok(_)) => self.remaining = self.remaining.saturating_sub(1),
            _ => self.remaining = 0,
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl<B> Drop for Batches<B> {
    fn drop(&mut self) {
        if let Source::Prefetch { receiver, worker } = &mut self.source {
            // Closing the channel first makes the worker's next send fail, so the join cannot
            // wait on a consumer that is gone.
            *receiver = None;
            if let Some(worker) = worker.take() {
                // A panic was already reported if the batches were read to the end; here it
                // would only be one the consumer chose not to wait for.
                let _ = worker.join();
            }
        }
    }
}
