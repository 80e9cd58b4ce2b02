//! Data loading: data sets, batching in a reproducible per-epoch order, collation into tensors,
//! background prefetch, and random splits. The guide is `docs/data.md`.
//!
//! | PyTorch | tapegrad |
//! |---|---|
//! | `Dataset` | [`Dataset`] |
//! | `TensorDataset(x, y)` | [`TensorDataset`], or [`LabeledDataset`] for integer labels |
//! | `Subset` | [`Subset`] |
//! | `DataLoader(…)` | [`DataLoader`] |
//! | `default_collate`, `collate_fn` | [`Stack`], any [`Collate`] or closure |
//! | `SequentialSampler`, `RandomSampler`, `sampler=` | [`SequentialSampler`], [`RandomSampler`], [`Sampler`] |
//! | `random_split` | [`random_split`], [`random_split_dataset`] |
//!
//! ```
//! use tapegrad::Tensor;
//! use tapegrad::data::{DataLoader, LabeledDataset, random_split_dataset};
//! let x = Tensor::<f32>::zeros(&[100, 3])?;
//! let data = LabeledDataset::new(x, (0..100).map(|i| i % 4).collect::<Vec<usize>>())?;
//! let parts = random_split_dataset(data, &[0.8, 0.2], 0)?;
//! let (train, test) = (parts[0].clone(), parts[1].clone());
//! assert_eq!((train.len(), test.len()), (80, 20));
//! let loader = DataLoader::new(train, 32)?.shuffle(1).prefetch(2);
//! let sizes: Vec<usize> = loader.epoch(0)?.map(|b| b.map(|(_, y)| y.len())).collect::<Result<_, _>>()?;
//! assert_eq!(sizes, [32, 32, 16]);
//! # use tapegrad::data::Dataset;
//! # Ok::<(), tapegrad::Error>(())
//! ```

mod collate;
mod dataset;
mod loader;
mod sampler;
mod split;

pub use collate::{Collate, Stack, stack};
pub use dataset::{Dataset, LabeledDataset, Subset, TensorDataset};
pub(crate) use dataset::{out_of_range as dataset_index_error, row as tensor_row};
pub use loader::{Batches, DataLoader};
pub use sampler::{RandomSampler, Sampler, SequentialSampler};
pub use split::{Parts, random_split, random_split_dataset, split_lengths};
