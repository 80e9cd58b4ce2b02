//! The names most training programs need, in one import.
//!
//! ```
//! use tapegrad::prelude::*;
//!
//! let mut rng = Pcg64::seed_from_u64(0);
//! let model = Sequential::new().push(Linear::new(2, 1, &mut rng)?);
//! let mut opt = Adam::new(model.named_params(), AdamConfig::default())?;
//! let tape = Tape::new();
//! let x = tape.constant(Tensor::<f32>::ones(&[4, 2])?);
//! let loss = model.forward(&mut Context::eval(), x)?.square()?.mean()?;
//! opt.step(&loss.backward()?)?;
//! # Ok::<(), tapegrad::Error>(())
//! ```
//!
//! Like PyTorch's `import torch, torch.nn as nn`: the engine (`Tape`, `Tensor`, `Var`), every
//! layer, loss and module trait of [`nn`](crate::nn), the optimizers and schedulers of
//! [`optim`](crate::optim), the data loader of [`data`](crate::data), `accuracy`, and the seeded
//! random generator tapegrad's examples use (`Pcg64` with `SeedableRng`). Everything else stays in
//! its module.

pub use crate::data::{DataLoader, Dataset, TensorDataset, random_split};
pub use crate::metrics::accuracy;
pub use crate::nn::{
    AvgPool2d, BCELoss, BCEWithLogitsLoss, BatchNorm1d, BatchNorm2d, Block, Context, Conv1d,
    Conv2d, CrossEntropyLoss, Dropout, Embedding, Flatten, Forward, ForwardIds, GELU, HuberLoss,
    KLDivLoss, L1Loss, LayerNorm, LeakyReLU, Linear, MSELoss, MaxPool2d, Module,
    MultiheadAttention, NLLLoss, ReLU, Sequential, SiLU, Sigmoid, SmoothL1Loss, Softplus,
    StateDict, Tanh,
};
pub use crate::optim::lr_scheduler::{
    CosineAnnealingLR, ExponentialLR, LinearLR, MultiStepLR, OneCycleLR, ReduceLROnPlateau,
    SequentialLR, StepLR,
};
pub use crate::optim::{
    Adagrad, AdagradConfig, Adam, AdamConfig, LrScheduler, Optimizer, RMSprop, RMSpropConfig, Sgd,
    SgdConfig, clip_grad_norm, clip_grad_value,
};
pub use crate::{Error, Param, Result, Shape, Tape, Tensor, Var};
pub use rand::SeedableRng;
pub use rand_pcg::Pcg64;
