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
//!
//! The forwards are the vectorised kernels of `crate::kernels::vecmath` (within 1 ulp); the
//! backwards need no transcendental function and are plain loops the compiler vectorises.

use smallvec::smallvec;

use super::elementwise::{each3, map_slices3};
use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::Result;
use crate::kernels::vecmath;
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

    /// y = f(x) over a whole tensor (the kernels split large ones over threads themselves).
    fn forward<T: Float>(self, x: &[T], y: &mut [T]) {
        match self {
            Unary::Exp => vecmath::exp(x, y),
            Unary::Log => vecmath::log(x, y),
            Unary::Tanh => vecmath::tanh(x, y),
            Unary::Sigmoid => vecmath::sigmoid(x, y),
        }
    }

    /// dx = g · dy/dx over a slice, from x and y: one loop per function.
    fn backward<T: Float>(self, x: &[T], y: &[T], g: &[T], dx: &mut [T]) {
        match self {
            Unary::Exp => each3(x, y, g, dx, |_, y, g| g * y),
            Unary::Log => each3(x, y, g, dx, |x, _, g| g * (T::ONE / x)),
            Unary::Tanh => each3(x, y, g, dx, |_, y, g| g * (T::ONE - y * y)),
            Unary::Sigmoid => each3(x, y, g, dx, |_, y, g| g * (y * (T::ONE - y))),
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    fn unary(self, op: Unary) -> Result<Var<'t, T>> {
        let x = self.value();
        let mut value = Tensor::overwritable(op.name(), x.shape().clone())?;
        op.forward(x.data(), value.data_mut());
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
        let f = self.0;
        let dx = map_slices3(f.name(), cx.input(0), cx.output(), g, |x, y, g, dx| {
            f.backward(x, y, g, dx)
        })?;
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
