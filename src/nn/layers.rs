//! The basic layers: `Linear`, `ReLU`, `Dropout`, and `Sequential` to chain layers.

use std::ops::Index;

use rand::Rng;

use super::module::{Context, Forward, Layer, Module, Visitor, nested};
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
/// PyTorch equivalent: `nn.Linear(in, out, bias=True)`.
#[derive(Debug, Clone)]
pub struct Linear<T: Float> {
    /// The weight, `[out, in]`.
    pub weight: Param<T>,
    /// The bias, `[out]`, if the layer has one.
    pub bias: Option<Param<T>>,
}

impl<T: Float> Linear<T> {
    /// A layer from `inputs` to `outputs` features, with a bias, initialised as PyTorch does.
    pub fn new<R: Rng + ?Sized>(inputs: usize, outputs: usize, rng: &mut R) -> Result<Self> {
        Self::with_bias(inputs, outputs, true, rng)
    }

    /// A layer with or without a bias (PyTorch's `bias=False`).
    pub fn with_bias<R: Rng + ?Sized>(
        inputs: usize,
        outputs: usize,
        bias: bool,
        rng: &mut R,
    ) -> Result<Self> {
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
        let bias = if bias {
            Some(Tensor::uniform(&[outputs], -bound, bound, rng)?)
        } else {
            None
        };
        Self::from_tensors(weight, bias)
    }

    /// A layer with the given weight (`[out, in]`) and bias (`[out]`, or none).
    pub fn from_tensors(weight: Tensor<T>, bias: Option<Tensor<T>>) -> Result<Self> {
        let [out, _] = weight.dims() else {
            return Err(Error::BadRank {
                op: "Linear",
                expected: "a weight of shape [out, in]",
                shape: weight.shape().clone(),
            });
        };
        if let Some(b) = &bias
            && b.dims() != [*out]
        {
            return Err(Error::ShapeMismatch {
                op: "Linear",
                lhs: weight.shape().clone(),
                rhs: b.shape().clone(),
            });
        }
        Ok(Linear {
            weight: Param::new("weight", weight),
            bias: bias.map(|b| Param::new("bias", b)),
        })
    }
}

impl<T: Float> Module<T> for Linear<T> {
    fn visit(&self, v: &mut Visitor<'_, T>) {
        v.param("weight", &self.weight);
        v.param_opt("bias", self.bias.as_ref());
    }
}

impl<T: Float> Forward<T> for Linear<T> {
    /// x `[…, in]` → `[…, out]`: one fused node, `x · Wᵀ + b` over all leading axes (the weight read
    /// transposed in place, the bias written into the product's output; see [`Var::linear`]).
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let tape = x.tape();
        let bias = self.bias.as_ref().map(|b| tape.param(b));
        x.linear(tape.param(&self.weight), bias)
    }
}

/// max(x, 0). PyTorch equivalent: `nn.ReLU()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReLU;

impl<T: Float> Module<T> for ReLU {
    fn visit(&self, _: &mut Visitor<'_, T>) {}
}

impl<T: Float> Forward<T> for ReLU {
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        x.relu()
    }
}

/// Dropout with probability p in training mode, the identity in eval mode (the mode comes from
/// the [`Context`]).
///
/// PyTorch equivalent: `nn.Dropout(p)`.
#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    p: f64,
}

impl Dropout {
    /// A dropout layer; fails unless 0 ≤ p ≤ 1.
    pub fn new(p: f64) -> Result<Self> {
        check_probability("Dropout", p)?;
        Ok(Dropout { p })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }
}

impl<T: Float> Module<T> for Dropout {
    fn visit(&self, _: &mut Visitor<'_, T>) {}
}

impl<T: Float> Forward<T> for Dropout {
    fn forward<'t>(&self, cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        if cx.is_training() && self.p > 0.0 {
            x.dropout(self.p, cx.rng("Dropout")?)
        } else {
            Ok(x)
        }
    }
}

/// Layers applied one after another; parameters are named `{index}.{name}` as in PyTorch.
/// Indexable (`seq[1]`), and a layer can be had back by its type (`seq.get::<Linear<f32>>(0)`).
///
/// PyTorch equivalent: `nn.Sequential(...)`.
///
/// ```
/// use rand::SeedableRng;
/// use tapegrad::nn::{Context, Dropout, Forward, Linear, Module, ReLU, Sequential};
/// use tapegrad::{Tape, Tensor};
///
/// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
/// let model = Sequential::new()
///     .push(Linear::<f32>::new(20, 64, &mut rng)?)
///     .push(ReLU)
///     .push(Dropout::new(0.5)?)
///     .push(Linear::new(64, 5, &mut rng)?);
/// assert_eq!(model.len(), 4);
/// let first: &Linear<f32> = model.get(0).expect("a Linear at 0");
/// assert_eq!(first.weight.shape().dims(), &[64, 20]);
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::ones(&[3, 20])?);
/// let y = model.forward(&mut Context::eval(), x)?; // dropout off, nothing drawn
/// assert_eq!(y.shape().dims(), &[3, 5]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub struct Sequential<T: Float> {
    layers: Vec<Box<dyn Layer<T>>>,
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
    pub fn push(mut self, layer: impl Layer<T> + 'static) -> Self {
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

    /// Layer `index` as its concrete type, if it is one.
    pub fn get<L: 'static>(&self, index: usize) -> Option<&L> {
        self.layers.get(index)?.as_any().downcast_ref()
    }

    /// The layers in order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Layer<T>> {
        self.layers.iter().map(|l| l.as_ref())
    }
}

impl<T: Float> Index<usize> for Sequential<T> {
    type Output = dyn Layer<T>;

    /// Layer `index`; panics past the end, like slice indexing (`get` does not).
    fn index(&self, index: usize) -> &Self::Output {
        self.layers[index].as_ref()
    }
}

impl<T: Float> Clone for Sequential<T> {
    /// A deep copy: every layer's parameters copied.
    fn clone(&self) -> Self {
        // Nested `Sequential`s clone recursively; grow the stack rather than overflow it.
        nested(|| Sequential {
            layers: self.layers.iter().map(|l| l.clone_layer()).collect(),
        })
    }
}

impl<T: Float> Drop for Sequential<T> {
    /// Nested `Sequential`s drop recursively; grow the stack rather than overflow it.
    fn drop(&mut self) {
        let layers = std::mem::take(&mut self.layers);
        nested(|| drop(layers));
    }
}

impl<T: Float> std::fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sequential({} layers)", self.layers.len())
    }
}

impl<T: Float> Module<T> for Sequential<T> {
    fn visit(&self, v: &mut Visitor<'_, T>) {
        for (i, layer) in self.layers.iter().enumerate() {
            v.module(&i.to_string(), layer.as_ref());
        }
    }
}

impl<T: Float> Forward<T> for Sequential<T> {
    fn forward<'t>(&self, cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        nested(|| {
            self.layers
                .iter()
                .try_fold(x, |h, layer| layer.forward(cx, h))
        })
    }
}

// Re-instantiation in f64, for `gradcheck_module` (see docs/gradcheck.md).

impl<T: Float> crate::gradcheck::ToF64 for Linear<T> {
    type F64 = Linear<f64>;

    /// The same weight and bias, converted exactly (f32 → f64 is exact).
    fn to_f64(&self) -> Result<Linear<f64>> {
        let bias = match &self.bias {
            Some(b) => Some(b.value().cast::<f64>()?),
            None => None,
        };
        Linear::from_tensors(self.weight.value().cast::<f64>()?, bias)
    }
}

impl crate::gradcheck::ToF64 for ReLU {
    type F64 = ReLU;

    fn to_f64(&self) -> Result<ReLU> {
        Ok(ReLU)
    }
}

impl crate::gradcheck::ToF64 for Dropout {
    type F64 = Dropout;

    fn to_f64(&self) -> Result<Dropout> {
        Ok(*self)
    }
}

impl<T: Float> crate::gradcheck::ToF64 for Sequential<T> {
    type F64 = Sequential<f64>;

    /// Converts each layer that is a `Linear`, `ReLU`, `Dropout` or `Sequential` (recursively);
    /// fails with [`Error::InvalidArgument`] naming the position of any other layer.
    fn to_f64(&self) -> Result<Sequential<f64>> {
        nested(|| {
            let mut out = Sequential::new();
            for (i, layer) in self.layers.iter().enumerate() {
                let any = layer.as_any();
                out = if let Some(l) = any.downcast_ref::<Linear<T>>() {
                    out.push(l.to_f64()?)
                } else if let Some(l) = any.downcast_ref::<ReLU>() {
                    out.push(l.to_f64()?)
                } else if let Some(l) = any.downcast_ref::<Dropout>() {
                    out.push(l.to_f64()?)
                } else if let Some(l) = any.downcast_ref::<Sequential<T>>() {
                    out.push(l.to_f64()?)
                } else {
                    return Err(Error::InvalidArgument {
                        op: "to_f64",
                        reason: format!(
                            "layer {i} of the Sequential is not a Linear, ReLU, Dropout or Sequential; \
                             write the f64 model with ToF64 implemented for its own type"
                        ),
                    });
                };
            }
            Ok(out)
        })
    }
}
