//! Derivatives of whole functions of several tensors, as `torch.autograd.functional` computes them:
//! [`jacobian`], [`hessian`], [`vjp`] and [`jvp`] (and [`hvp`](crate::hvp) for Hessian-vector
//! products).
//!
//! A function here takes the recorded inputs on a tape and returns its outputs (one or several
//! `Var`s): `|tape, x| Ok(vec![x[0].mul(x[1])?.tanh()?])`. Each call records the function once on a
//! fresh tape.
//!
//! **Forward-mode products by the double-backward trick.** tapegrad is reverse-mode only, so
//! `jvp` computes J·v the way PyTorch's `torch.autograd.functional.jvp` does: with a dummy output
//! gradient u (a leaf that requires a gradient), the recorded backward pass gives g(u) = Jᵀu,
//! which is linear in u; then ∂(g(u)·v)/∂u = J·v. It costs two backward passes (one recorded)
//! instead of one forward-mode pass, and works for every op because every op's recorded backward is
//! linear in its incoming gradient.

use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels::pool;
use crate::tape::{BackwardOptions, Tape, Var};
use crate::tensor::Tensor;

/// What [`vjp`] and [`jvp`] return: the outputs of the function, and the product (one tensor per
/// input for `vjp`, per output for `jvp`) — PyTorch's `(func_output, vjp)` / `(func_output, jvp)`.
pub type WithOutputs<T> = (Vec<Tensor<T>>, Vec<Tensor<T>>);

/// The recorded inputs and outputs of a function.
type Recorded<'t, T> = (Vec<Var<'t, T>>, Vec<Var<'t, T>>);

/// Records `f` on `tape` from leaves holding `inputs`.
fn record<'t, T: Float, F>(
    tape: &'t Tape<T>,
    f: &F,
    inputs: &[Tensor<T>],
) -> Result<Recorded<'t, T>>
where
    F: for<'s> Fn(&'s Tape<T>, &[Var<'s, T>]) -> Result<Vec<Var<'s, T>>>,
{
    let vars: Vec<_> = inputs
        .iter()
        .map(|x| Ok(tape.leaf(x.try_clone()?)))
        .collect::<Result<_>>()?;
    let outputs = f(tape, &vars)?;
    Ok((vars, outputs))
}

/// Fails unless `given` has one tensor per `expected` value, each of its shape.
fn check_like<T: Float>(
    op: &'static str,
    what: &'static str,
    expected: &[crate::Shape],
    given: &[Tensor<T>],
) -> Result<()> {
    if expected.len() != given.len() {
        return Err(Error::ArgumentCount {
            op,
            what,
            expected: expected.len(),
            got: given.len(),
        });
    }
    for (e, g) in expected.iter().zip(given) {
        if e != g.shape() {
            return Err(Error::ShapeMismatch {
                op,
                lhs: e.clone(),
                rhs: g.shape().clone(),
            });
        }
    }
    Ok(())
}

fn values<T: Float>(vars: &[Var<'_, T>]) -> Result<Vec<Tensor<T>>> {
    vars.iter().map(|v| v.value().try_clone()).collect()
}

/// Adds `g` into `acc` (same shape).
fn accumulate<T: Float>(acc: &mut Tensor<T>, g: &Tensor<T>) -> Result<()> {
    *acc = acc.zip_map(g, "accumulate", |a, b| a + b)?;
    Ok(())
}

/// Vector-Jacobian product: the outputs of `f` at `inputs`, and `vᵀ·J`, i.e. for each input,
/// `Σᵢ ∂(vᵢ · outputᵢ)/∂input` — one tensor per input, of its shape. `v` has one tensor per output,
/// of its shape.
///
/// PyTorch equivalent: `torch.autograd.functional.vjp(f, inputs, v)`.
///
/// ```
/// use tapegrad::functional::vjp;
/// use tapegrad::Tensor;
/// // f(x) = x², vᵀJ = 2x ⊙ v.
/// let x = Tensor::from_vec(vec![1.0f64, -2.0], &[2])?;
/// let v = Tensor::from_vec(vec![1.0, 0.5], &[2])?;
/// let (out, grads) = vjp(|_, x| Ok(vec![x[0].mul(x[0])?]), &[x], &[v])?;
/// assert_eq!(out[0].data(), &[1.0, 4.0]);
/// assert_eq!(grads[0].data(), &[2.0, -2.0]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn vjp<T: Float, F>(f: F, inputs: &[Tensor<T>], v: &[Tensor<T>]) -> Result<WithOutputs<T>>
where
    F: for<'t> Fn(&'t Tape<T>, &[Var<'t, T>]) -> Result<Vec<Var<'t, T>>>,
{
    let tape = Tape::new();
    let (vars, outputs) = record(&tape, &f, inputs)?;
    let shapes: Vec<_> = outputs.iter().map(|o| o.shape()).collect();
    check_like("vjp", "v (one per output)", &shapes, v)?;
    let mut result: Vec<Tensor<T>> = inputs
        .iter()
        .map(Tensor::zeros_like)
        .collect::<Result<_>>()?;
    for (out, v) in outputs.iter().zip(v) {
        if !out.requires_grad() {
            continue; // an output that does not depend on the inputs contributes nothing
        }
        let grads = out.backward_with(
            BackwardOptions::new()
                .seed(v.try_clone()?)
                .retain_graph(true),
        )?;
        for (acc, &x) in result.iter_mut().zip(&vars) {
            if let Some(g) = grads.get(x) {
                accumulate(acc, g)?;
            }
        }
    }
    Ok((values(&outputs)?, result))
}

/// Jacobian-vector product: the outputs of `f` at `inputs`, and `J·v`, i.e. for each output the
/// directional derivative `Σₖ ∂output/∂inputₖ · vₖ` — one tensor per output, of its shape. `v` has
/// one tensor per input, of its shape. Computed by the double-backward trick (see the module docs).
///
/// PyTorch equivalent: `torch.autograd.functional.jvp(f, inputs, v)` (which uses the same trick).
///
/// ```
/// use tapegrad::functional::jvp;
/// use tapegrad::Tensor;
/// // f(x, y) = x ⊙ y: J·(v, w) = y ⊙ v + x ⊙ w.
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2])?;
/// let y = Tensor::from_vec(vec![3.0, -1.0], &[2])?;
/// let v = Tensor::from_vec(vec![1.0, 1.0], &[2])?;
/// let w = Tensor::from_vec(vec![0.0, 2.0], &[2])?;
/// let (_, jv) = jvp(|_, x| Ok(vec![x[0].mul(x[1])?]), &[x, y], &[v, w])?;
/// assert_eq!(jv[0].data(), &[3.0, 3.0]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn jvp<T: Float, F>(f: F, inputs: &[Tensor<T>], v: &[Tensor<T>]) -> Result<WithOutputs<T>>
where
    F: for<'t> Fn(&'t Tape<T>, &[Var<'t, T>]) -> Result<Vec<Var<'t, T>>>,
{
    let shapes: Vec<_> = inputs.iter().map(|x| x.shape().clone()).collect();
    check_like("jvp", "v (one per input)", &shapes, v)?;
    let tape = Tape::new();
    let (vars, outputs) = record(&tape, &f, inputs)?;
    // The dummy output gradients u: their values do not matter (g is linear in u), zeros will do.
    let dummies: Vec<Var<'_, T>> = outputs
        .iter()
        .map(|o| Ok(tape.leaf(Tensor::full_shape(o.shape(), T::ZERO)?)))
        .collect::<Result<_>>()?;
    // g(u)·v = Σₖ Σᵢ (∂outputᵢ/∂xₖ)ᵀuᵢ · vₖ.
    let mut directional: Option<Var<'_, T>> = None;
    for (out, &u) in outputs.iter().zip(&dummies) {
        if !out.requires_grad() {
            continue;
        }
        let grads = out.backward_graph(Some(u))?;
        for (&x, v) in vars.iter().zip(v) {
            let Ok(g) = grads.wrt(x) else { continue };
            let term = g.mul(tape.constant(v.try_clone()?))?.sum()?;
            directional = Some(match directional {
                Some(s) => s.add(term)?,
                None => term,
            });
        }
    }
    let mut result: Vec<Tensor<T>> = outputs
        .iter()
        .map(|o| Tensor::full_shape(o.shape(), T::ZERO))
        .collect::<Result<_>>()?;
    if let Some(s) = directional
        && s.requires_grad()
    {
        let grads = s.backward()?;
        for (r, &u) in result.iter_mut().zip(&dummies) {
            if let Some(g) = grads.get(u) {
                *r = g.try_clone()?;
            }
        }
    }
    Ok((values(&outputs)?, result))
}

/// The Jacobian of every output with respect to every input: `result[i][k]` has the shape of
/// output i followed by the shape of input k, and holds `∂outputᵢ[a]/∂inputₖ[b]` at `[a…, b…]`.
/// One backward pass per output element. Fails if a block would have more than
/// [`MAX_RANK`](crate::MAX_RANK) dimensions.
///
/// PyTorch equivalent: `torch.autograd.functional.jacobian(f, inputs)` (with tuple inputs and
/// tuple outputs: `result[i][k]` is PyTorch's `J[i][k]`).
///
/// ```
/// use tapegrad::functional::jacobian;
/// use tapegrad::Tensor;
/// // f(x) = x ⊙ x: J = diag(2x).
/// let x = Tensor::from_vec(vec![1.0f32, 3.0], &[2])?;
/// let j = jacobian(|_, x| Ok(vec![x[0].mul(x[0])?]), &[x])?;
/// assert_eq!(j[0][0].dims(), &[2, 2]);
/// assert_eq!(j[0][0].data(), &[2.0, 0.0, 0.0, 6.0]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn jacobian<T: Float, F>(f: F, inputs: &[Tensor<T>]) -> Result<Vec<Vec<Tensor<T>>>>
where
    F: for<'t> Fn(&'t Tape<T>, &[Var<'t, T>]) -> Result<Vec<Var<'t, T>>>,
{
    let tape = Tape::new();
    let (vars, outputs) = record(&tape, &f, inputs)?;
    let mut result = Vec::with_capacity(outputs.len());
    for out in &outputs {
        let out_shape = out.shape();
        let rows = out_shape.numel();
        let mut blocks: Vec<Vec<T>> = inputs
            .iter()
            .map(|x| pool::try_zeroed("jacobian", rows * x.numel()))
            .collect::<Result<_>>()?;
        if out.requires_grad() {
            for r in 0..rows {
                let mut seed = Tensor::full_shape(out_shape.clone(), T::ZERO)?;
                seed.data_mut()[r] = T::ONE;
                let grads =
                    out.backward_with(BackwardOptions::new().seed(seed).retain_graph(true))?;
                for (block, &x) in blocks.iter_mut().zip(&vars) {
                    if let Some(g) = grads.get(x) {
                        let n = g.numel();
                        block[r * n..(r + 1) * n].copy_from_slice(g.data());
                    }
                }
            }
        }
        let row = blocks
            .into_iter()
            .zip(inputs)
            .map(|(data, x)| {
                let mut dims = out_shape.dims().to_vec();
                dims.extend_from_slice(x.dims());
                Tensor::from_vec(data, &dims)
            })
            .collect::<Result<Vec<_>>>()?;
        result.push(row);
    }
    Ok(result)
}

/// The Hessian of a scalar function: `result[k][l]` has the shape of input k followed by the shape
/// of input l, and holds `∂²f/∂inputₖ[a]∂inputₗ[b]` at `[a…, b…]`. The gradient is recorded once
/// (`backward_graph`), then differentiated once per element. Fails with
/// [`Error::NonScalarLoss`] unless `f` returns one output of one element.
///
/// PyTorch equivalent: `torch.autograd.functional.hessian(f, inputs)`.
///
/// ```
/// use tapegrad::functional::hessian;
/// use tapegrad::Tensor;
/// // f(x, y) = Σ x² ⊙ y: ∂²f/∂x² = diag(2y), ∂²f/∂x∂y = diag(2x), ∂²f/∂y² = 0.
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2])?;
/// let y = Tensor::from_vec(vec![3.0, 4.0], &[2])?;
/// let h = hessian(|_, v| Ok(vec![v[0].mul(v[0])?.mul(v[1])?.sum()?]), &[x, y])?;
/// assert_eq!(h[0][0].data(), &[6.0, 0.0, 0.0, 8.0]);
/// assert_eq!(h[0][1].data(), &[2.0, 0.0, 0.0, 4.0]);
/// assert_eq!(h[1][1].data(), &[0.0; 4]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn hessian<T: Float, F>(f: F, inputs: &[Tensor<T>]) -> Result<Vec<Vec<Tensor<T>>>>
where
    F: for<'t> Fn(&'t Tape<T>, &[Var<'t, T>]) -> Result<Vec<Var<'t, T>>>,
{
    let tape = Tape::new();
    let (vars, outputs) = record(&tape, &f, inputs)?;
    let [y] = outputs.as_slice() else {
        return Err(Error::ArgumentCount {
            op: "hessian",
            what: "outputs (a scalar function has one)",
            expected: 1,
            got: outputs.len(),
        });
    };
    if y.shape().numel() != 1 {
        return Err(Error::NonScalarLoss { shape: y.shape() });
    }
    let mut blocks: Vec<Vec<Vec<T>>> = inputs
        .iter()
        .map(|a| {
            inputs
                .iter()
                .map(|b| pool::try_zeroed("hessian", a.numel() * b.numel()))
                .collect()
        })
        .collect::<Result<_>>()?;
    if y.requires_grad() {
        let first = y.backward_graph(None)?;
        for (k, &xk) in vars.iter().enumerate() {
            let Ok(g) = first.wrt(xk) else { continue };
            if !g.requires_grad() {
                continue; // the gradient is constant: this row of blocks is zero
            }
            let n = g.shape().numel();
            for a in 0..n {
                let mut seed = Tensor::full_shape(g.shape(), T::ZERO)?;
                seed.data_mut()[a] = T::ONE;
                let second =
                    g.backward_with(BackwardOptions::new().seed(seed).retain_graph(true))?;
                for (l, &xl) in vars.iter().enumerate() {
                    if let Some(h) = second.get(xl) {
                        let m = h.numel();
                        blocks[k][l][a * m..(a + 1) * m].copy_from_slice(h.data());
                    }
                }
            }
        }
    }
    blocks
        .into_iter()
        .zip(inputs)
        .map(|(row, a)| {
            row.into_iter()
                .zip(inputs)
                .map(|(data, b)| {
                    let mut dims = a.dims().to_vec();
                    dims.extend_from_slice(b.dims());
                    Tensor::from_vec(data, &dims)
                })
                .collect()
        })
        .collect()
}
