//! `neg`, and arithmetic with a plain number: `add_scalar`, `mul_scalar`, `div_scalar`.

use smallvec::smallvec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::Result;
use crate::tape::Var;
use crate::tensor::Tensor;

// `neg` returns `Result` like every op, so it is not `std::ops::Neg`.
#[allow(clippy::should_implement_trait)]
impl<'t, T: Float> Var<'t, T> {
    /// `−self`. ∂/∂x = −g.
    ///
    /// PyTorch equivalent: `-x`.
    pub fn neg(self) -> Result<Var<'t, T>> {
        self.mul_scalar_named("neg", -T::ONE)
    }

    /// `self + c` for a number `c`. ∂/∂x = g.
    ///
    /// PyTorch equivalent: `x + c`.
    pub fn add_scalar(self, c: T) -> Result<Var<'t, T>> {
        let value = self.value().map(|x| x + c)?;
        Ok(self
            .tape
            .record("add_scalar", value, &[self], || AddScalarBackward))
    }

    /// `self · c` for a number `c`. ∂/∂x = c·g.
    ///
    /// PyTorch equivalent: `x * c`.
    pub fn mul_scalar(self, c: T) -> Result<Var<'t, T>> {
        self.mul_scalar_named("mul_scalar", c)
    }

    /// `self / c` for a number `c` (a division, not a multiplication by 1/c, so that a mean
    /// rounds as PyTorch's does). ∂/∂x = g/c.
    ///
    /// PyTorch equivalent: `x / c`.
    pub fn div_scalar(self, c: T) -> Result<Var<'t, T>> {
        let value = self.value().map(|x| x / c)?;
        Ok(self
            .tape
            .record("div_scalar", value, &[self], || DivScalarBackward { c }))
    }

    fn mul_scalar_named(self, name: &'static str, c: T) -> Result<Var<'t, T>> {
        let value = self.value().map(|x| x * c)?;
        Ok(self
            .tape
            .record(name, value, &[self], || MulScalarBackward { c }))
    }
}

#[derive(Debug)]
struct AddScalarBackward;

impl<T: Float> Backward<T> for AddScalarBackward {
    fn backward(&self, _cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(g.try_clone()?)])
    }

    fn backward_graph<'t>(&self, _cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(g)])
    }
}

/// Saves the constant factor.
#[derive(Debug)]
struct MulScalarBackward<T> {
    c: T,
}

impl<T: Float> Backward<T> for MulScalarBackward<T> {
    fn backward(&self, _cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(g.map(|x| x * self.c)?)])
    }

    fn backward_graph<'t>(&self, _cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(g.mul_scalar(self.c)?)])
    }

    fn saved_bytes(&self) -> usize {
        std::mem::size_of::<T>()
    }

    fn describe_saved(&self) -> String {
        format!("factor {}", self.c)
    }
}

/// Saves the divisor.
#[derive(Debug)]
struct DivScalarBackward<T> {
    c: T,
}

impl<T: Float> Backward<T> for DivScalarBackward<T> {
    fn backward(&self, _cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(g.map(|x| x / self.c)?)])
    }

    fn backward_graph<'t>(&self, _cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok(smallvec![Some(g.div_scalar(self.c)?)])
    }

    fn saved_bytes(&self) -> usize {
        std::mem::size_of::<T>()
    }

    fn describe_saved(&self) -> String {
        format!("divisor {}", self.c)
    }
}
