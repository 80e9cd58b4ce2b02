//! Smooth element-wise functions: `exp`, `log`, `tanh`, `sigmoid`.
//!
//! Each backward multiplies `g` element-wise by the function's derivative, written where it is
//! cheaper in terms of the output `y` than of the input `x`:
//!
//! | op | y | dy/dx |
//! |---|---|---|
//! | `exp` | eˣ | y |
//! | `log` | ln x | 1/x |
//! | `tanh` | tanh x | 1 − y² |
//! | `sigmoid` | 1/(1 + e⁻ˣ) | y(1 − y) |

use smallvec::smallvec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::Result;
use crate::tape::Var;
use crate::tensor::Tensor;

#[derive(Debug, Clone, Copy)]
enum Unary {
    Exp,
    Log,
    Tanh,
    Sigmoid,
}

impl Unary {
    fn name(self) -> &'static str {
        match self {
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Tanh => "tanh",
            Unary::Sigmoid => "sigmoid",
        }
    }

    fn forward<T: Float>(self, x: T) -> T {
        match self {
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Tanh => x.tanh(),
            // Written so that neither branch overflows: e^(-|x|) ≤ 1.
            Unary::Sigmoid if x >= T::ZERO => T::ONE / (T::ONE + (-x).exp()),
            Unary::Sigmoid => {
                let e = x.exp();
                e / (T::ONE + e)
            }
        }
    }

    /// dy/dx from x and y.
    fn derivative<T: Float>(self, x: T, y: T) -> T {
        match self {
            Unary::Exp => y,
            Unary::Log => T::ONE / x,
            Unary::Tanh => T::ONE - y * y,
            Unary::Sigmoid => y * (T::ONE - y),
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    fn unary(self, op: Unary) -> Result<Var<'t, T>> {
        let value = self.value().map(|x| op.forward(x))?;
        Ok(self
            .tape
            .record(op.name(), value, &[self], || UnaryBackward(op)))
    }

    /// eˣ element-wise. ∂/∂x = g ⊙ y.
    ///
    /// PyTorch equivalent: `torch.exp(x)`.
    pub fn exp(self) -> Result<Var<'t, T>> {
        self.unary(Unary::Exp)
    }

    /// Natural logarithm element-wise (−∞ at 0, NaN below, as IEEE says). ∂/∂x = g / x.
    ///
    /// PyTorch equivalent: `torch.log(x)`.
    pub fn log(self) -> Result<Var<'t, T>> {
        self.unary(Unary::Log)
    }

    /// Hyperbolic tangent element-wise. ∂/∂x = g ⊙ (1 − y²).
    ///
    /// PyTorch equivalent: `torch.tanh(x)`.
    pub fn tanh(self) -> Result<Var<'t, T>> {
        self.unary(Unary::Tanh)
    }

    /// Logistic sigmoid 1/(1 + e⁻ˣ) element-wise, computed without overflow. ∂/∂x = g ⊙ y(1 − y).
    ///
    /// PyTorch equivalent: `torch.sigmoid(x)`.
    pub fn sigmoid(self) -> Result<Var<'t, T>> {
        self.unary(Unary::Sigmoid)
    }
}

/// Saves only which function it was: x and y are on the tape.
#[derive(Debug)]
struct UnaryBackward(Unary);

impl<T: Float> Backward<T> for UnaryBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (x, y) = (cx.input(0).data(), cx.output().data());
        let mut dx = Tensor::overwritable(self.0.name(), g.shape().clone())?;
        for (((d, &g), &x), &y) in dx.data_mut().iter_mut().zip(g.data()).zip(x).zip(y) {
            *d = g * self.0.derivative(x, y);
        }
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (x, y) = (cx.input(0), cx.output());
        let dy_dx = match self.0 {
            Unary::Exp => y,
            Unary::Log => return Ok(smallvec![Some(g.div(x)?)]),
            Unary::Tanh => y.mul(y)?.neg()?.add_scalar(T::ONE)?,
            Unary::Sigmoid => y.mul(y.neg()?.add_scalar(T::ONE)?)?,
        };
        Ok(smallvec![Some(g.mul(dy_dx)?)])
    }
}
