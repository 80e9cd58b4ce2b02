//! Layers, losses and checkpoints with PyTorch's semantics and parameter names.
//!
//! A model is a [`Module`] (its parameters and buffers, each visited once under its PyTorch
//! name) and, for layers that map one `Var` to another, a [`Forward`]. The mode (train or eval)
//! and the random generator reach `forward` through a [`Context`], so inference needs no
//! generator and draws no random numbers. Parameters are shared handles: an optimizer built from
//! `model.params()` updates the model's own tensors.
//!
//! ```
//! use rand::SeedableRng;
//! use tapegrad::nn::{Context, CrossEntropyLoss, Dropout, Forward, Linear, Module, ReLU, Sequential};
//! use tapegrad::{Tape, Tensor};
//!
//! let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
//! let model = Sequential::new()
//!     .push(Linear::new(20, 64, &mut rng)?)
//!     .push(ReLU)
//!     .push(Dropout::new(0.5)?)
//!     .push(Linear::new(64, 5, &mut rng)?);
//! let names: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "3.weight", "3.bias"]);
//!
//! let tape = Tape::new();
//! let x = tape.constant(Tensor::<f32>::normal(&[8, 20], 0.0, 1.0, &mut rng)?);
//! let logits = model.forward(&mut Context::train(&mut rng), x)?;
//! let loss = CrossEntropyLoss::default().forward(logits, &[0, 1, 2, 3, 4, 0, 1, 2])?;
//! let grads = loss.backward()?;
//! assert!(grads.param(&model.params()[0]).is_some());
//! # Ok::<(), tapegrad::Error>(())
//! ```

mod checkpoint;
mod layers;
mod loss;
mod module;

pub use checkpoint::{
    StateDict, load_safetensors, load_safetensors_bytes, save_safetensors, to_safetensors_bytes,
};
pub use layers::{Dropout, Linear, ReLU, Sequential};
pub use loss::{
    BCELoss, BCEWithLogitsLoss, HuberLoss, KLDivLoss, KLDivReduction, L1Loss, SmoothL1Loss,
};
pub use loss::{CrossEntropyLoss, MSELoss, NLLLoss};
pub use module::{Context, Entry, Forward, Layer, Module, Visitor};
mod activation;
mod attention;
mod conv;
mod embedding;
mod init;
mod norm;
mod pool;
mod transformer;
pub use activation::{GELU, GeluApproximate, LeakyReLU, SiLU, Sigmoid, Softplus, Tanh};
pub use attention::MultiheadAttention;
pub use conv::{Conv1d, Conv2d};
pub use embedding::Embedding;
pub use module::ForwardIds;
pub use norm::{BatchNorm1d, BatchNorm2d, LayerNorm};
pub use pool::{AvgPool2d, Flatten, MaxPool2d};
pub use transformer::Block;
