//! Parameters: tensors that outlive a training step and that an optimizer updates.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::element::Float;
use crate::tensor::Tensor;

static NEXT_PARAM_ID: AtomicU64 = AtomicU64::new(0);

/// Identity of a [`Param`], unique within the process.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ParamId(u64);

/// A named tensor that lives outside any tape, so that it survives from one step to the next.
///
/// `tape.param(&p)` records it on a tape as a leaf that requires a gradient, and the
/// [`Gradients`](crate::Gradients) of that tape can then be looked up by the parameter itself.
/// Recording does not copy the data: the tape shares it, and an update after the tape is gone
/// writes in place.
///
/// ```
/// use tapegrad::{Param, Tape, Tensor};
/// let mut w = Param::new("w", Tensor::from_vec(vec![3.0f64], &[1])?);
/// let tape = Tape::new();
/// let x = tape.param(&w);
/// let grads = x.mul(x)?.sum()?.backward()?;          // d(w²)/dw = 2w
/// let g = grads.param(&w).expect("w is on the tape").clone();
/// drop(tape);
/// w.value_mut().data_mut()[0] -= 0.25 * g.data()[0]; // 3 − 0.25·6
/// assert_eq!(w.value().data(), &[1.5]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug)]
pub struct Param<T: Float> {
    id: ParamId,
    name: String,
    value: Arc<Tensor<T>>,
}

impl<T: Float> Param<T> {
    /// A new parameter with a fresh identity.
    pub fn new(name: impl Into<String>, value: Tensor<T>) -> Self {
        Param {
            id: ParamId(NEXT_PARAM_ID.fetch_add(1, Ordering::Relaxed)),
            name: name.into(),
            value: Arc::new(value),
        }
    }

    /// Its identity.
    pub fn id(&self) -> ParamId {
        self.id
    }

    /// Its name (PyTorch style, e.g. `0.weight`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its current value.
    pub fn value(&self) -> &Tensor<T> {
        &self.value
    }

    /// Its value, for an in-place update. Copies the data first only if a live tape still shares it.
    pub fn value_mut(&mut self) -> &mut Tensor<T> {
        Arc::make_mut(&mut self.value)
    }

    pub(crate) fn shared_value(&self) -> Arc<Tensor<T>> {
        Arc::clone(&self.value)
    }
}
