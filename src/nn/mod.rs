//! Layers with PyTorch's semantics: [`Module`], [`Linear`], [`ReLU`], [`Dropout`], [`Sequential`],
//! the losses, and safetensors checkpoints.
//!
//! Parameters live in the modules, outside any tape; a forward pass records them on the tape of its
//! input with [`Tape::param`](crate::Tape::param), so an optimizer can find their gradients.
//! `train()` and `eval()` switch every dropout inside a model: in eval mode dropout is the identity
//! and draws no random numbers.
//!
//! ```
//! use rand::SeedableRng;
//! use tapegrad::nn::{CrossEntropyLoss, Dropout, Linear, Module, ReLU, Sequential};
//! use tapegrad::{Tape, Tensor};
//!
//! let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
//! let mut model = Sequential::new()
//!     .push(Linear::new(20, 64, &mut rng)?)
//!     .push(ReLU)
//!     .push(Dropout::new(0.5)?)
//!     .push(Linear::new(64, 5, &mut rng)?);
//! let names: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "3.weight", "3.bias"]);
//!
//! let tape = Tape::new();
//! let x = tape.constant(Tensor::<f32>::normal(&[8, 20], 0.0, 1.0, &mut rng)?);
//! let loss = CrossEntropyLoss.forward(model.forward(x, &mut rng)?, &[0, 1, 2, 3, 4, 0, 1, 2])?;
//! let grads = loss.backward()?;
//! assert!(grads.param(model.named_params()[0].1).is_some());
//! model.eval(); // dropout off
//! # Ok::<(), tapegrad::Error>(())
//! ```

mod checkpoint;
mod layers;
mod loss;

pub use checkpoint::{
    load_safetensors, load_safetensors_bytes, save_safetensors, to_safetensors_bytes,
};
pub use layers::{Dropout, Linear, ReLU, Sequential};
pub use loss::{CrossEntropyLoss, MSELoss, NLLLoss};

use rand::Rng;

use crate::element::Float;
use crate::error::Result;
use crate::param::Param;
use crate::tape::Var;

/// A layer or a model: a forward pass in the current mode, and named parameters.
pub trait Module<T: Float> {
    /// Records the forward pass of `x` on `x`'s tape. `rng` is drawn from only by dropout in
    /// training mode.
    fn forward<'t>(&self, x: Var<'t, T>, rng: &mut dyn Rng) -> Result<Var<'t, T>>;

    /// Calls `visit` with every parameter and its name, prefixed by `prefix`.
    fn visit_params<'a>(&'a self, prefix: &str, visit: &mut dyn FnMut(String, &'a Param<T>));

    /// Calls `visit` with every parameter, mutably, and its name.
    fn visit_params_mut<'a>(
        &'a mut self,
        prefix: &str,
        visit: &mut dyn FnMut(String, &'a mut Param<T>),
    );

    /// Switches training mode (dropout on) or eval mode (dropout off) in this module and every
    /// module inside it. Layers without a mode ignore it.
    fn set_training(&mut self, _training: bool) {}

    /// Training mode: dropout active.
    fn train(&mut self) {
        self.set_training(true);
    }

    /// Eval mode: dropout is the identity and draws nothing.
    fn eval(&mut self) {
        self.set_training(false);
    }

    /// Parameters with their PyTorch-style names (`0.weight`, `0.bias`, …).
    fn named_params(&self) -> Vec<(String, &Param<T>)> {
        let mut out = Vec::new();
        self.visit_params("", &mut |name, p| out.push((name, p)));
        out
    }

    /// Parameters, mutably, with their names.
    fn named_params_mut(&mut self) -> Vec<(String, &mut Param<T>)> {
        let mut out = Vec::new();
        self.visit_params_mut("", &mut |name, p| out.push((name, p)));
        out
    }

    /// Parameters, mutably (what an optimizer step takes).
    fn params_mut(&mut self) -> Vec<&mut Param<T>> {
        let mut out = Vec::new();
        self.visit_params_mut("", &mut |_, p| out.push(p));
        out
    }
}
