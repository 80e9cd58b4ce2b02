//! The layers: `Linear`, `ReLU`, `Dropout`, and `Sequential` to chain them.

use rand::Rng;

use super::Module;
use crate::element::Float;
use crate::error::{Error, Result};
use crate::ops::dropout::check_probability;
use crate::param::Param;
use crate::tape::Var;
use crate::tensor::Tensor;

/// y = x·Wᵀ + b, with W of shape `[out, in]` and b of shape `[out]`, as PyTorch stores them.
///
/// Initialised like PyTorch: every weight and bias ~ U(−1/√in, 1/√in), from the caller's generator.
///
/// PyTorch equivalent: `nn.Linear(in, out)`.
#[derive(Debug)]
pub struct Linear<T: Float> {
    /// The weight, [out, in].
    pub weight: Param<T>,
    /// The bias, `[out]`.
    pub bias: Param<T>,
}

impl<T: Float> Linear<T> {
    /// A layer from `inputs` to `outputs` features with PyTorch's default initialisation.
    pub fn new<R: Rng + ?Sized>(inputs: usize, outputs: usize, rng: &mut R) -> Result<Self> {
        if inputs == 0 {
            return Err(Error::InvalidHyperparameter {
                op: "Linear",
                name: "in_features",
                value: 0.0,
                reason: "must be at least 1 (the initialisation bound is 1/sqrt(in_features))",
            });
        }
        let bound = T::from_f64(1.0 / (inputs as f64).sqrt());
        let weight = Tensor::uniform(&[outputs, inputs], -bound, bound, rng)?;
        let bias = Tensor::uniform(&[outputs], -bound, bound, rng)?;
        Ok(Self::from_tensors(weight, bias))
    }

    /// A layer with the given weight (`[out, in]`) and bias (`[out]`).
    pub fn from_tensors(weight: Tensor<T>, bias: Tensor<T>) -> Self {
        Linear {
            weight: Param::new("weight", weight),
            bias: Param::new("bias", bias),
        }
    }
}

impl<T: Float> Module<T> for Linear<T> {
    fn forward<'t>(&self, x: Var<'t, T>, _rng: &mut dyn Rng) -> Result<Var<'t, T>> {
        let tape = x.tape();
        x.matmul_t(tape.param(&self.weight))?
            .add(tape.param(&self.bias))
    }

    fn visit_params<'a>(&'a self, prefix: &str, visit: &mut dyn FnMut(String, &'a Param<T>)) {
        visit(format!("{prefix}weight"), &self.weight);
        visit(format!("{prefix}bias"), &self.bias);
    }

    fn visit_params_mut<'a>(
        &'a mut self,
        prefix: &str,
        visit: &mut dyn FnMut(String, &'a mut Param<T>),
    ) {
        visit(format!("{prefix}weight"), &mut self.weight);
        visit(format!("{prefix}bias"), &mut self.bias);
    }
}

/// max(x, 0). PyTorch equivalent: `nn.ReLU()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReLU;

impl<T: Float> Module<T> for ReLU {
    fn forward<'t>(&self, x: Var<'t, T>, _rng: &mut dyn Rng) -> Result<Var<'t, T>> {
        x.relu()
    }

    fn visit_params<'a>(&'a self, _: &str, _: &mut dyn FnMut(String, &'a Param<T>)) {}

    fn visit_params_mut<'a>(&'a mut self, _: &str, _: &mut dyn FnMut(String, &'a mut Param<T>)) {}
}

/// Dropout with probability p in training mode, the identity in eval mode.
///
/// PyTorch equivalent: `nn.Dropout(p)`.
#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    p: f64,
    training: bool,
}

impl Dropout {
    /// A dropout layer in training mode; fails unless 0 ≤ p ≤ 1.
    pub fn new(p: f64) -> Result<Self> {
        check_probability("Dropout", p)?;
        Ok(Dropout { p, training: true })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Whether it is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Training mode (dropout active). The same as [`Module::train`], callable without naming the
    /// element type (`Dropout` is a module for every one).
    pub fn train(&mut self) {
        self.training = true;
    }

    /// Eval mode: the identity, no random numbers drawn. The same as [`Module::eval`].
    pub fn eval(&mut self) {
        self.training = false;
    }
}

impl<T: Float> Module<T> for Dropout {
    fn forward<'t>(&self, x: Var<'t, T>, rng: &mut dyn Rng) -> Result<Var<'t, T>> {
        if self.training {
            x.dropout(self.p, rng)
        } else {
            Ok(x)
        }
    }

    fn visit_params<'a>(&'a self, _: &str, _: &mut dyn FnMut(String, &'a Param<T>)) {}

    fn visit_params_mut<'a>(&'a mut self, _: &str, _: &mut dyn FnMut(String, &'a mut Param<T>)) {}

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

/// Modules applied one after another; parameters are named `{index}.{name}` as in PyTorch.
///
/// PyTorch equivalent: `nn.Sequential(...)`.
pub struct Sequential<T: Float> {
    layers: Vec<Box<dyn Module<T>>>,
}

impl<T: Float> Default for Sequential<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Sequential<T> {
    /// An empty sequence (the identity).
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }

    /// Appends a layer.
    pub fn push(mut self, layer: impl Module<T> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl<T: Float> std::fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sequential({} layers)", self.layers.len())
    }
}

/// Runs `f` with enough stack for one more level of nesting: a `Sequential` inside a `Sequential`
/// inside … 30 000 deep recurses 30 000 times, so every recursive walk (forward, visiting
/// parameters, changing mode, dropping) asks for more stack when little is left instead of
/// overflowing it.
fn nested<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, f)
}

impl<T: Float> Drop for Sequential<T> {
    fn drop(&mut self) {
        let layers = std::mem::take(&mut self.layers);
        nested(|| drop(layers));
    }
}

impl<T: Float> Module<T> for Sequential<T> {
    fn forward<'t>(&self, x: Var<'t, T>, rng: &mut dyn Rng) -> Result<Var<'t, T>> {
        nested(|| {
            self.layers
                .iter()
                .try_fold(x, |h, layer| layer.forward(h, rng))
        })
    }

    fn visit_params<'a>(&'a self, prefix: &str, visit: &mut dyn FnMut(String, &'a Param<T>)) {
        nested(|| {
            for (i, layer) in self.layers.iter().enumerate() {
                layer.visit_params(&format!("{prefix}{i}."), visit);
            }
        })
    }

    fn visit_params_mut<'a>(
        &'a mut self,
        prefix: &str,
        visit: &mut dyn FnMut(String, &'a mut Param<T>),
    ) {
        nested(|| {
            for (i, layer) in self.layers.iter_mut().enumerate() {
                layer.visit_params_mut(&format!("{prefix}{i}."), visit);
            }
        })
    }

    fn set_training(&mut self, training: bool) {
        nested(|| {
            for layer in &mut self.layers {
                layer.set_training(training);
            }
        })
    }
}
