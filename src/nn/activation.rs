//! Activations as modules: `GELU`, `SiLU`, `Tanh`, `Sigmoid`, `LeakyReLU`, `Softplus` (and `ReLU`
//! in `layers`). None has parameters; each is `Copy`.

use super::module::{Context, Forward, Module, Visitor};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::tape::Var;

macro_rules! no_params {
    ($($name:ident),*) => {$(
        impl<T: Float> Module<T> for $name {
            fn visit(&self, _: &mut Visitor<'_, T>) {}
        }
    )*};
}

no_params!(GELU, SiLU, Tanh, Sigmoid, LeakyReLU, Softplus);

/// Which formula [`GELU`] computes (PyTorch's `approximate` argument).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GeluApproximate {
    /// The exact x·Φ(x) (`approximate='none'`, the default).
    #[default]
    None,
    /// ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (`approximate='tanh'`).
    Tanh,
}

/// GELU: x·Φ(x), or its tanh approximation.
///
/// PyTorch equivalent: `nn.GELU(approximate='none')` / `nn.GELU(approximate='tanh')`.
#[allow(clippy::upper_case_acronyms)] // PyTorch's name.
#[derive(Debug, Clone, Copy, Default)]
pub struct GELU {
    /// The formula.
    pub approximate: GeluApproximate,
}

impl GELU {
    /// The exact GELU.
    pub fn new() -> Self {
        GELU::default()
    }

    /// The tanh approximation (GPT-2's).
    pub fn tanh() -> Self {
        GELU {
            approximate: GeluApproximate::Tanh,
        }
    }
}

impl<T: Float> Forward<T> for GELU {
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        match self.approximate {
            GeluApproximate::None => x.gelu(),
            GeluApproximate::Tanh => x.gelu_tanh(),
        }
    }
}

/// SiLU (swish): x·σ(x). PyTorch equivalent: `nn.SiLU()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SiLU;

impl<T: Float> Forward<T> for SiLU {
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        x.silu()
    }
}

/// tanh(x). PyTorch equivalent: `nn.Tanh()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tanh;

impl<T: Float> Forward<T> for Tanh {
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        x.tanh()
    }
}

/// σ(x) = 1/(1 + e^(−x)). PyTorch equivalent: `nn.Sigmoid()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sigmoid;

impl<T: Float> Forward<T> for Sigmoid {
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        x.sigmoid()
    }
}

/// x where x > 0, `negative_slope`·x elsewhere.
///
/// PyTorch equivalent: `nn.LeakyReLU(negative_slope=0.01)`.
#[derive(Debug, Clone, Copy)]
pub struct LeakyReLU {
    negative_slope: f64,
}

impl Default for LeakyReLU {
    /// The slope 0.01, as PyTorch.
    fn default() -> Self {
        LeakyReLU {
            negative_slope: 0.01,
        }
    }
}

impl LeakyReLU {
    /// A leaky ReLU with this slope; fails unless it is finite.
    pub fn new(negative_slope: f64) -> Result<Self> {
        if !negative_slope.is_finite() {
            return Err(Error::InvalidHyperparameter {
                op: "LeakyReLU",
                name: "negative_slope",
                value: negative_slope,
                reason: "must be finite",
            });
        }
        Ok(LeakyReLU { negative_slope })
    }

    /// The slope.
    pub fn negative_slope(&self) -> f64 {
        self.negative_slope
    }
}

impl<T: Float> Forward<T> for LeakyReLU {
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        x.leaky_relu(T::from_f64(self.negative_slope))
    }
}

/// ln(1 + e^(βx))/β, and x where βx > `threshold`.
///
/// PyTorch equivalent: `nn.Softplus(beta=1.0, threshold=20.0)`.
#[derive(Debug, Clone, Copy)]
pub struct Softplus {
    beta: f64,
    threshold: f64,
}

impl Default for Softplus {
    /// β = 1, threshold 20, as PyTorch.
    fn default() -> Self {
        Softplus {
            beta: 1.0,
            threshold: 20.0,
        }
    }
}

impl Softplus {
    /// A softplus with these settings; fails unless β is finite and nonzero and the threshold
    /// is not NaN.
    pub fn new(beta: f64, threshold: f64) -> Result<Self> {
        const OP: &str = "Softplus";
        if !beta.is_finite() || beta == 0.0 {
            return Err(Error::InvalidHyperparameter {
                op: OP,
                name: "beta",
                value: beta,
                reason: "must be finite and nonzero",
            });
        }
        if threshold.is_nan() {
            return Err(Error::InvalidHyperparameter {
                op: OP,
                name: "threshold",
                value: threshold,
                reason: "must not be NaN",
            });
        }
        Ok(Softplus { beta, threshold })
    }

    /// β.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The threshold above which βx is returned as x.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
}

impl<T: Float> Forward<T> for Softplus {
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        x.softplus(T::from_f64(self.beta), T::from_f64(self.threshold))
    }
}
