//! ReLU: `y = max(x, 0)`.
//!
//! dy/dx is 1 where x > 0 and 0 where x < 0; at exactly x = 0 the function has a kink and we take
//! the derivative to be **0**, as PyTorch does. The backward rule therefore needs only the sign
//! pattern of x, which it saves as a packed bit mask (1 bit per element): `g` where x > 0, exactly 0
//! elsewhere (even where g is NaN: PyTorch's `threshold_backward`). A NaN input gives a NaN output
//! and passes its gradient through, as in PyTorch (`NaN ≤ 0` is false).
//!
//! On the graph path the same mask is applied to `g` by a recorded mask op, so the second derivative
//! of ReLU is 0 everywhere (the mask is a constant), again as in PyTorch.

use std::sync::Arc;

use super::dropout::MaskUse;
use crate::bitmask::BitMask;
use crate::element::Float;
use crate::error::Result;
use crate::tape::Var;

use crate::tensor::Tensor;

impl<'t, T: Float> Var<'t, T> {
    /// `max(x, 0)` element-wise. ∂/∂x = g ⊙ `[x > 0]` (0 at x = 0).
    ///
    /// PyTorch equivalent: `torch.relu(x)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![-1.0f64, 0.0, 2.0], &[3])?);
    /// let y = x.relu()?;
    /// assert_eq!(y.value().data(), &[0.0, 0.0, 2.0]);
    /// assert_eq!(y.sum()?.backward()?.wrt(x)?.data(), &[0.0, 0.0, 1.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn relu(self) -> Result<Var<'t, T>> {
        let x = self.value();
        let mut value = Tensor::overwritable("relu", x.shape().clone())?;
        // One pass writes the output and the sign bits that backward needs.
        let mask = T::relu_words(x.data(), value.data_mut())?;
        let mask = BitMask::from_words(mask, x.numel());
        Ok(self.record_mask(MaskUse::Relu, value, Arc::new(mask), T::ONE))
    }
}
