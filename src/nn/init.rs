//! PyTorch's default initialisations, as the layers use them.
//!
//! - `kaiming_uniform_(w, a=√5)`, PyTorch's default for `Linear` and `Conv*d` weights, draws
//!   U(−b, b) with b = gain·√(3/fan_in) and gain = √(2/(1 + a²)) = √(1/3), so b = 1/√fan_in.
//! - Their biases are U(−1/√fan_in, 1/√fan_in).
//! - `xavier_uniform_(w)` draws U(−b, b) with b = √(6/(fan_in + fan_out)).
//!
//! `fan_in` of a weight `[out, in, k…]` is `in·Πk`, `fan_out` is `out·Πk`.

use rand::Rng;

use crate::element::Float;
use crate::error::{Error, Result};
use crate::param::Param;
use crate::tensor::Tensor;

/// A parameter of `dims` drawn from U(−bound, bound).
pub(crate) fn uniform<T: Float, R: Rng + ?Sized>(
    name: &str,
    dims: &[usize],
    bound: f64,
    rng: &mut R,
) -> Result<Param<T>> {
    let b = T::from_f64(bound);
    Ok(Param::new(name, Tensor::uniform(dims, -b, b, rng)?))
}

/// The bound 1/√fan_in of PyTorch's `kaiming_uniform_(a=√5)` and of the default bias.
pub(crate) fn fan_in_bound(fan_in: usize) -> f64 {
    1.0 / (fan_in as f64).sqrt()
}

/// The bound √(6/(fan_in + fan_out)) of PyTorch's `xavier_uniform_`.
pub(crate) fn xavier_bound(fan_in: usize, fan_out: usize) -> f64 {
    (6.0 / (fan_in + fan_out) as f64).sqrt()
}

/// A parameter of `dims` filled with `value` (PyTorch's `ones_`, `zeros_`).
pub(crate) fn filled<T: Float>(name: &str, dims: &[usize], value: f64) -> Result<Param<T>> {
    Ok(Param::new(name, Tensor::full(dims, T::from_f64(value))?))
}

/// Fails unless `value` ≥ 1: a size of a layer (features, channels, heads, kernel).
pub(crate) fn positive(op: &'static str, name: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        Err(Error::InvalidHyperparameter {
            op,
            name,
            value: 0.0,
            reason: "must be at least 1",
        })
    } else {
        Ok(())
    }
}
