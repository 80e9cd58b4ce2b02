//! Second derivatives: Hessian-vector products by differentiating the backward pass.
//!
//! [`Var::backward_graph`] runs backward with every rule recorded on the tape, so the gradient
//! g(x) = ∇f(x) is itself a value on the tape, computed from x. Then for a fixed direction v,
//!
//! ∇ₓ (g(x) · v) = H(x) v,
//!
//! because ∂/∂xᵢ Σⱼ (∂f/∂xⱼ) vⱼ = Σⱼ (∂²f/∂xᵢ∂xⱼ) vⱼ. One recorded backward plus one ordinary backward
//! give H·v for about the cost of two gradients, without ever forming H.

use crate::element::Float;
use crate::error::{Error, Result};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// The result of [`hvp`]: f(x), ∇f(x) and H(x)·v, one tensor per input.
#[derive(Clone, Debug)]
pub struct Hvp<T: Float> {
    /// f at the inputs.
    pub value: T,
    /// ∂f/∂(input k).
    pub grads: Vec<Tensor<T>>,
    /// Σₗ ∂²f/∂(input k)∂(input l) · v_l.
    pub hvp: Vec<Tensor<T>>,
}

/// Hessian-vector product of a scalar function `f` of several tensors, along `directions` (one per
/// input, of the same shape).
///
/// ```
/// use tapegrad::{hvp, Tensor};
/// // f(x) = Σ xᵢ³: ∇f = 3x², H = diag(6x), so H·v = 6x ⊙ v.
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2])?;
/// let v = Tensor::from_vec(vec![1.0, -1.0], &[2])?;
/// let r = hvp(|_, xs| xs[0].mul(xs[0])?.mul(xs[0])?.sum(), &[x], &[v])?;
/// assert_eq!(r.value, 9.0);
/// assert_eq!(r.grads[0].data(), &[3.0, 12.0]);
/// assert_eq!(r.hvp[0].data(), &[6.0, -12.0]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn hvp<T: Float, F>(f: F, inputs: &[Tensor<T>], directions: &[Tensor<T>]) -> Result<Hvp<T>>
where
    F: for<'t> Fn(&'t Tape<T>, &[Var<'t, T>]) -> Result<Var<'t, T>>,
{
    if inputs.len() != directions.len() {
        return Err(Error::ArgumentCount {
            op: "hvp",
            what: "directions (one per input)",
            expected: inputs.len(),
            got: directions.len(),
        });
    }
    for (x, v) in inputs.iter().zip(directions) {
        if x.shape() != v.shape() {
            return Err(Error::ShapeMismatch {
                op: "hvp",
                lhs: x.shape().clone(),
                rhs: v.shape().clone(),
            });
        }
    }
    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let y = f(&tape, &vars)?;
    let value = y.value().item()?;
    let zeros = || {
        inputs
            .iter()
            .map(Tensor::zeros_like)
            .collect::<Result<Vec<_>>>()
    };
    if !y.requires_grad() {
        return Ok(Hvp {
            value,
            grads: zeros()?,
            hvp: zeros()?,
        });
    }
    let first = y.backward_graph(None)?;
    // g·v, summed over every input: a scalar whose gradient is H·v.
    let mut directional: Option<Var<'_, T>> = None;
    let mut grads = Vec::with_capacity(vars.len());
    for (&x, v) in vars.iter().zip(directions) {
        let Ok(g) = first.wrt(x) else {
            grads.push(Tensor::full_shape(x.shape(), T::ZERO)?);
            continue;
        };
        grads.push(g.value().try_clone()?);
        let term = g.mul(tape.constant(v.try_clone()?))?.sum()?;
        directional = Some(match directional {
            Some(sum) => sum.add(term)?,
            None => term,
        });
    }
    let hvp = match directional {
        Some(s) if s.requires_grad() => {
            let second = s.backward()?;
            vars.iter()
                .map(|&x| match second.get(x) {
                    Some(g) => g.try_clone(),
                    None => Tensor::full_shape(x.shape(), T::ZERO),
                })
                .collect::<Result<Vec<_>>>()?
        }
        // The gradient does not depend on the inputs (f is linear, or piecewise linear): H = 0.
        _ => zeros()?,
    };
    Ok(Hvp { value, grads, hvp })
}
