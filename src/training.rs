//! Resumable training: one file holding everything a training loop needs to continue exactly
//! where it stopped.
//!
//! A [`TrainingCheckpoint`] holds the model's parameters and buffers, the optimizer's state (its
//! moments, step counts and hyper-parameters, keyed by parameter name), the learning-rate
//! scheduler's state, where the loop stands ([`Progress`]: epoch, step, and the batch within the
//! epoch) and the state of the random generator that draws the dropout masks. Restoring it into a
//! freshly built model, optimizer and scheduler and continuing gives the same bits as never
//! stopping (`tests/resume.rs` trains 20 steps, saves, restores into new objects and trains 20
//! more, and compares with 40 uninterrupted steps).
//!
//! PyTorch users write this by hand: `torch.save({"model": model.state_dict(), "optimizer":
//! opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch, "rng":
//! torch.get_rng_state()}, path)`.
//!
//! The data order needs nothing saved: a [`DataLoader`](crate::data::DataLoader)'s order is a
//! function of its seed and the epoch, and [`DataLoader::epoch_from`](crate::data::DataLoader::epoch_from)
//! starts an epoch at any batch.
//!
//! ```
//! use rand::SeedableRng;
//! use rand_pcg::Pcg64;
//! use tapegrad::nn::{Context, Dropout, Forward, Linear, Module, ReLU, Sequential};
//! use tapegrad::optim::{Optimizer, Sgd, SgdConfig};
//! use tapegrad::training::{Progress, TrainingCheckpoint};
//! use tapegrad::{Tape, Tensor};
//!
//! let build = |seed| -> tapegrad::Result<_> {
//!     let mut init = Pcg64::seed_from_u64(seed);
//!     let model = Sequential::<f64>::new()
//!         .push(Linear::new(3, 8, &mut init)?)
//!         .push(ReLU)
//!         .push(Dropout::new(0.5)?)
//!         .push(Linear::new(8, 2, &mut init)?);
//!     let sgd = Sgd::new(model.named_params(), SgdConfig { lr: 0.1, momentum: 0.9, ..SgdConfig::default() })?;
//!     Ok((model, sgd))
//! };
//! let x = Tensor::<f64>::ones(&[4, 3])?;
//! let step = |model: &Sequential<f64>, sgd: &mut Sgd<f64>, rng: &mut Pcg64| -> tapegrad::Result<()> {
//!     let tape = Tape::new();
//!     let y = model.forward(&mut Context::train(rng), tape.constant(x.clone()))?;
//!     let grads = y.cross_entropy(&[0usize, 1, 0, 1])?.backward()?;
//!     sgd.step(&grads)
//! };
//!
//! let (model, mut sgd) = build(1)?;
//! let mut rng = Pcg64::seed_from_u64(7);
//! for _ in 0..3 {
//!     step(&model, &mut sgd, &mut rng)?;
//! }
//! let path = std::env::temp_dir().join(format!("tapegrad-training-doc-{}.safetensors", std::process::id()));
//! TrainingCheckpoint::capture(&model, &sgd, Progress { epoch: 0, step: 3, batch: 3 }, &rng)?.save(&path)?;
//!
//! // Later, in another process: build everything afresh, then restore.
//! let (resumed, mut sgd2) = build(99)?;
//! let checkpoint = TrainingCheckpoint::<f64>::load(&path)?;
//! let progress = checkpoint.restore(&resumed, &mut sgd2)?;
//! let mut rng2 = checkpoint.rng()?;
//! assert_eq!(progress.step, 3);
//!
//! step(&model, &mut sgd, &mut rng)?;
//! step(&resumed, &mut sgd2, &mut rng2)?;
//! for ((_, a), (_, b)) in model.named_params().iter().zip(resumed.named_params().iter()) {
//!     assert_eq!(a.value().data(), b.value().data()); // the same bits
//! }
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), tapegrad::Error>(())
//! ```

use std::path::Path;

use rand_pcg::Pcg64;

use crate::element::Float;
use crate::error::{Error, Result};
use crate::nn::{Module, StateDict};
use crate::optim::Optimizer;
use crate::optim::lr_scheduler::SchedulerState;

/// Where a training loop stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The epoch in progress (or about to start), counted from 0.
    pub epoch: u64,
    /// Optimizer steps taken since the start of training.
    pub step: u64,
    /// Batches of the current epoch already done: where
    /// [`DataLoader::epoch_from`](crate::data::DataLoader::epoch_from) resumes.
    pub batch: u64,
}

/// Prefixes of the file's entries.
const MODEL: &str = "model.";
const OPTIMIZER: &str = "optimizer.";
const SCHEDULER: &str = "scheduler.";
/// Metadata keys.
const EPOCH: &str = "progress.epoch";
const STEP: &str = "progress.step";
const BATCH: &str = "progress.batch";
const RNG: &str = "rng.pcg64";
const FORMAT: &str = "tapegrad.training_checkpoint";

/// A model, its optimizer, a scheduler's state, the loop's [`Progress`] and the random generator,
/// saved together in one safetensors file (atomically: the previous checkpoint at that path
/// survives any failure). See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct TrainingCheckpoint<T: Float> {
    state: StateDict<T>,
}

impl<T: Float> TrainingCheckpoint<T> {
    /// A snapshot of `model` (parameters and buffers), `optimizer`, `progress` and `rng`.
    pub fn capture<M: Module<T> + ?Sized, O: Optimizer<T> + ?Sized>(
        model: &M,
        optimizer: &O,
        progress: Progress,
        rng: &Pcg64,
    ) -> Result<Self> {
        let mut state = StateDict::new();
        state.extend_prefixed(MODEL, &StateDict::of(model)?);
        let optim = optimizer.state_dict()?;
        state.extend_prefixed(OPTIMIZER, &optim);
        for (key, value) in &optim.metadata {
            state
                .metadata
                .insert(format!("{OPTIMIZER}{key}"), value.clone());
        }
        state.metadata.insert(FORMAT.into(), "1".into());
        state
            .metadata
            .insert(EPOCH.into(), progress.epoch.to_string());
        state
            .metadata
            .insert(STEP.into(), progress.step.to_string());
        state
            .metadata
            .insert(BATCH.into(), progress.batch.to_string());
        let rng = serde_json::to_string(rng).map_err(|e| Error::InvalidArgument {
            op: "TrainingCheckpoint::capture",
            reason: format!("the random generator's state could not be written: {e}"),
        })?;
        state.metadata.insert(RNG.into(), rng);
        Ok(TrainingCheckpoint { state })
    }

    /// Adds a learning-rate scheduler's state (its `state_dict()`).
    pub fn with_scheduler(mut self, scheduler: &SchedulerState) -> Self {
        for (key, value) in scheduler {
            self.state
                .metadata
                .insert(format!("{SCHEDULER}{key}"), value.clone());
        }
        self
    }

    /// Writes the checkpoint to `path` (safetensors; a temporary file renamed into place).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.state.save(path)
    }

    /// Reads a checkpoint written by [`save`](Self::save); a file that is not one is an
    /// [`Error::CheckpointFormat`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let state = StateDict::load(path)?;
        if state.metadata.get(FORMAT).map(String::as_str) != Some("1") {
            return Err(Error::CheckpointFormat {
                reason: format!("not a training checkpoint (no {FORMAT} = 1 in its metadata)"),
            });
        }
        let checkpoint = TrainingCheckpoint { state };
        // Check every part now, so that a bad file fails here rather than half-way through a
        // restore.
        checkpoint.progress()?;
        checkpoint.rng()?;
        Ok(checkpoint)
    }

    /// Loads the model's parameters and buffers and the optimizer's state, all or nothing: if
    /// either part does not fit (a missing or extra name, a wrong shape, other hyper-parameters),
    /// both are left as they were. Returns where the loop stood.
    pub fn restore<M: Module<T> + ?Sized, O: Optimizer<T> + ?Sized>(
        &self,
        model: &M,
        optimizer: &mut O,
    ) -> Result<Progress> {
        let progress = self.progress()?;
        let model_part = self.state.strip_prefix(MODEL);
        let mut optim_part = self.state.strip_prefix(OPTIMIZER);
        optim_part.metadata = self
            .state
            .metadata
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(OPTIMIZER)?.to_string(), v.clone())))
            .collect();
        // Snapshots (shared, not copied) to put back if the second part fails.
        let model_before = StateDict::of(model)?;
        model_part.load_into(model)?;
        if let Err(e) = optimizer.load_state_dict(&optim_part) {
            // Same names and shapes as a moment ago, so this cannot fail.
            model_before.load_into(model)?;
            return Err(e);
        }
        Ok(progress)
    }

    /// Where the loop stood.
    pub fn progress(&self) -> Result<Progress> {
        let read = |key: &str| -> Result<u64> {
            let text = self
                .state
                .metadata
                .get(key)
                .ok_or_else(|| Error::CheckpointFormat {
                    reason: format!("training checkpoint without {key}"),
                })?;
            text.parse().map_err(|_| Error::CheckpointFormat {
                reason: format!("training checkpoint: {key} = {text:?} is not a count"),
            })
        };
        Ok(Progress {
            epoch: read(EPOCH)?,
            step: read(STEP)?,
            batch: read(BATCH)?,
        })
    }

    /// The random generator as it was when the checkpoint was taken.
    pub fn rng(&self) -> Result<Pcg64> {
        let text = self
            .state
            .metadata
            .get(RNG)
            .ok_or_else(|| Error::CheckpointFormat {
                reason: format!("training checkpoint without {RNG}"),
            })?;
        serde_json::from_str(text).map_err(|e| Error::CheckpointFormat {
            reason: format!("training checkpoint: {RNG}: {e}"),
        })
    }

    /// The scheduler's state, if one was added with [`with_scheduler`](Self::with_scheduler)
    /// (give it to the new scheduler's `load_state_dict`).
    pub fn scheduler(&self) -> Option<SchedulerState> {
        let state: SchedulerState = self
            .state
            .metadata
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(SCHEDULER)?.to_string(), v.clone())))
            .collect();
        (!state.is_empty()).then_some(state)
    }

    /// Everything in the file: `model.*` and `optimizer.*` tensors, metadata.
    pub fn state_dict(&self) -> &StateDict<T> {
        &self.state
    }
}
