//! Finite-difference gradient checking, in `f64`.
//!
//! For a function f of some input tensors, the analytic Jacobian (from backward passes, one per
//! output element) is compared with the numeric one from central differences,
//!
//! ∂fⱼ/∂xᵢ ≈ (fⱼ(x + ε·eᵢ) − fⱼ(x − ε·eᵢ)) / 2ε,
//!
//! whose error is O(ε²) for smooth f. Every element of every input is perturbed. An entry passes when
//! |analytic − numeric| ≤ atol + rtol·|numeric| — PyTorch's `allclose` rule, with PyTorch's defaults
//! ε = 1e-6, atol = 1e-5, rtol = 1e-3. Why f64: with ε = 1e-6, f32's rounding error (~1e-7 relative)
//! divided by 2ε would swamp the derivative.
//!
//! **Stochastic ops.** The function receives a random generator, and every evaluation — the analytic
//! one and each perturbed one — gets a fresh generator from the same seed. A dropout inside therefore
//! draws the *same* mask every time, and what is checked is the derivative of the function with that
//! mask held fixed, which is exactly what backward computes. The caller's own generators are never
//! touched.

use std::fmt;

use rand::SeedableRng;
use rand_pcg::Pcg64;

use crate::error::{Error, Result};
use crate::tape::{BackwardOptions, Tape, Var};
use crate::tensor::Tensor;

/// Settings of [`gradcheck`]. The defaults are PyTorch's.
#[derive(Clone, Debug)]
pub struct GradcheckOptions {
    /// Finite-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (relative to the numeric value).
    pub rtol: f64,
    /// Seed of the generator handed to the function on every evaluation.
    pub seed: u64,
    /// Random-projection mode (PyTorch's `fast_mode`): instead of every Jacobian entry, compare
    /// vᵀ·J·u for a random output direction v and a random input direction u per input — one
    /// backward pass and two evaluations per input, whatever the sizes. Cheap enough for whole models;
    /// a wrong gradient almost surely changes vᵀJu, but the report cannot point at an element.
    pub fast: bool,
}

impl GradcheckOptions {
    /// Fails with [`Error::InvalidHyperparameter`] unless ε is finite and > 0 and both tolerances
    /// are finite and ≥ 0 (an ε of 0 divides by zero, a NaN tolerance passes or fails everything).
    pub fn validate(&self) -> Result<()> {
        let check = |name, value: f64, ok: bool, reason| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidHyperparameter {
                    op: "gradcheck",
                    name,
                    value,
                    reason,
                })
            }
        };
        check(
            "eps",
            self.eps,
            self.eps.is_finite() && self.eps > 0.0,
            "must be finite and > 0",
        )?;
        check(
            "atol",
            self.atol,
            self.atol.is_finite() && self.atol >= 0.0,
            "must be finite and >= 0",
        )?;
        check(
            "rtol",
            self.rtol,
            self.rtol.is_finite() && self.rtol >= 0.0,
            "must be finite and >= 0",
        )
    }
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            seed: 0,
            fast: false,
        }
    }
}

/// How one input fared.
#[derive(Clone, Debug, PartialEq)]
pub struct InputCheck {
    /// Position of the input in the slice given to [`gradcheck`].
    pub input: usize,
    /// Its dimensions.
    pub dims: Vec<usize>,
    /// Largest |analytic − numeric| over its Jacobian entries.
    pub max_abs_err: f64,
    /// Largest |analytic − numeric| / |numeric| (entries with numeric = 0 count as abs error).
    pub max_rel_err: f64,
    /// The entry that exceeded the tolerance by the most (or was closest to it), if any entries.
    pub worst: Option<WorstEntry>,
    /// Whether every entry was within tolerance.
    pub passed: bool,
}

/// One Jacobian entry: which input element, which output element, both derivatives.
#[derive(Clone, Debug, PartialEq)]
pub struct WorstEntry {
    /// Multi-index of the input element.
    pub input_index: Vec<usize>,
    /// Flat index of the output element.
    pub output_index: usize,
    /// From backward.
    pub analytic: f64,
    /// From central differences.
    pub numeric: f64,
}

/// The result of a gradient check: one [`InputCheck`] per input.
#[derive(Clone, Debug, PartialEq)]
pub struct GradcheckReport {
    /// Per-input results.
    pub inputs: Vec<InputCheck>,
    /// The options used.
    pub atol: f64,
    /// The options used.
    pub rtol: f64,
}

impl GradcheckReport {
    /// Whether every input passed.
    pub fn passed(&self) -> bool {
        self.inputs.iter().all(|c| c.passed)
    }
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        writeln!(
            f,
            "gradcheck {verdict} (atol {:e}, rtol {:e})",
            self.atol, self.rtol
        )?;
        for c in &self.inputs {
            write!(
                f,
                "  input {} {:?}: {} | max abs err {:.3e} | max rel err {:.3e}",
                c.input,
                c.dims,
                if c.passed { "ok" } else { "MISMATCH" },
                c.max_abs_err,
                c.max_rel_err
            )?;
            if let (false, Some(w)) = (c.passed, &c.worst) {
                let abs = (w.analytic - w.numeric).abs();
                write!(
                    f,
                    "\n    worst: input element {:?}, output element {}: analytic {:.10e} vs numeric {:.10e} (abs err {:.3e}, rel err {:.3e})",
                    w.input_index,
                    w.output_index,
                    w.analytic,
                    w.numeric,
                    abs,
                    abs / w.numeric.abs()
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Checks the gradients of `f` at `inputs` against central finite differences.
///
/// `f` builds the computation on the tape it is given from the recorded `inputs`, and may draw from
/// the generator (see the module docs on stochastic ops). Returns the report when every entry is
/// within tolerance, and [`Error::GradcheckFailed`] (whose message is the report) when not.
///
/// ```
/// use tapegrad::{gradcheck, GradcheckOptions, Tensor};
/// let x = Tensor::from_vec(vec![0.3, -1.2, 2.0, 0.7], &[2, 2])?;
/// let w = Tensor::from_vec(vec![0.5, -0.4, 0.1, 0.9], &[2, 2])?;
/// let report = gradcheck(
///     |_tape, v, rng| v[0].matmul(v[1])?.tanh()?.dropout(0.5, rng),
///     &[x, w],
///     &GradcheckOptions::default(),
/// )?;
/// assert!(report.passed());
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn gradcheck<F>(
    f: F,
    inputs: &[Tensor<f64>],
    options: &GradcheckOptions,
) -> Result<GradcheckReport>
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Var<'t, f64>>,
{
    check_outputs(
        |tape, vars, rng| f(tape, vars, rng).map(|out| vec![out]),
        inputs,
        options,
    )
}

/// Checks second derivatives: the gradients of `f` (as functions of the inputs) are themselves
/// gradchecked, with the backward pass recorded on the tape ([`Var::backward_graph`]).
///
/// As in PyTorch, the output's gradient is a fixed random tensor v (drawn from `options.seed`),
/// and what is checked is the derivative of `∂(vᵀf)/∂inputs` with respect to the inputs, i.e. the
/// Hessian-vector structure of every op. The report has the same format as [`gradcheck`]'s; its
/// output index runs over the gradients of all inputs laid end to end.
///
/// ```
/// use tapegrad::{gradgradcheck, GradcheckOptions, Tensor};
/// let x = Tensor::from_vec(vec![0.3, -1.2, 2.0], &[3])?;
/// let report = gradgradcheck(|_, v, _| v[0].tanh()?.log_softmax(), &[x], &GradcheckOptions::default())?;
/// assert!(report.passed());
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn gradgradcheck<F>(
    f: F,
    inputs: &[Tensor<f64>],
    options: &GradcheckOptions,
) -> Result<GradcheckReport>
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Var<'t, f64>>,
{
    options.validate()?;
    // The output's shape, from one evaluation, to draw the fixed output gradient v.
    let out = evaluate(&|t, v, r| f(t, v, r).map(|o| vec![o]), inputs, options.seed)?;
    // A different stream from the one handed to f, so v is unrelated to f's own draws.
    let mut v_rng = Pcg64::seed_from_u64(options.seed ^ 0x9E37_79B9_7F4A_7C15);
    let v = Tensor::normal(out[0].dims(), 0.0, 1.0, &mut v_rng)?;
    check_outputs(
        |tape, vars, rng| {
            let y = f(tape, vars, rng)?;
            if !y.requires_grad() {
                // f ignores its inputs: its gradients are constant zeros.
                return vars
                    .iter()
                    .map(|x| Ok(tape.constant(Tensor::full_shape(x.shape(), 0.0)?)))
                    .collect();
            }
            let grads = y.backward_graph(Some(tape.constant(v.clone())))?;
            vars.iter()
                .map(|&x| match grads.wrt(x) {
                    Ok(g) => Ok(g),
                    Err(_) => Ok(tape.constant(Tensor::full_shape(x.shape(), 0.0)?)),
                })
                .collect()
        },
        inputs,
        options,
    )
}

/// A function gradcheck can evaluate: it records outputs on the tape it is given, from the inputs
/// recorded there, with a generator for any random draws (stated once here instead of at every use).
trait Outputs:
    for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Vec<Var<'t, f64>>>
{
}

impl<F> Outputs for F where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Vec<Var<'t, f64>>>
{
}

/// The shared core: `f` may return several outputs; output element indices run over them end to end.
fn check_outputs<F>(
    f: F,
    inputs: &[Tensor<f64>],
    options: &GradcheckOptions,
) -> Result<GradcheckReport>
where
    F: Outputs,
{
    options.validate()?;
    if options.fast {
        return check_projected(&f, inputs, options);
    }
    let analytic = analytic_jacobian(&f, inputs, options.seed)?;
    let mut report = GradcheckReport {
        inputs: Vec::with_capacity(inputs.len()),
        atol: options.atol,
        rtol: options.rtol,
    };
    for (k, input) in inputs.iter().enumerate() {
        let mut check = InputCheck {
            input: k,
            dims: input.dims().to_vec(),
            max_abs_err: 0.0,
            max_rel_err: 0.0,
            worst: None,
            passed: true,
        };
        let mut worst_excess = f64::NEG_INFINITY;
        let strides = input.shape().strides();
        for i in 0..input.numel() {
            let numeric = numeric_column(&f, inputs, k, i, options)?;
            for (j, &num) in numeric.iter().enumerate() {
                let ana = analytic[k][j * input.numel() + i];
                let abs = (ana - num).abs();
                let allowed = options.atol + options.rtol * num.abs();
                // NaN on either side fails: `abs <= allowed` is false for NaN.
                let ok = abs <= allowed;
                let excess = if abs.is_nan() {
                    f64::INFINITY
                } else {
                    abs - allowed
                };
                let rel = if num == 0.0 { abs } else { abs / num.abs() };
                check.max_abs_err = nan_max(check.max_abs_err, abs);
                check.max_rel_err = nan_max(check.max_rel_err, rel);
                check.passed &= ok;
                if check.worst.is_none() || excess > worst_excess {
                    worst_excess = excess;
                    check.worst = Some(WorstEntry {
                        input_index: unravel(i, &strides),
                        output_index: j,
                        analytic: ana,
                        numeric: num,
                    });
                }
            }
        }
        report.inputs.push(check);
    }
    if report.passed() {
        Ok(report)
    } else {
        Err(Error::GradcheckFailed(Box::new(report)))
    }
}

/// Fast mode: for each input k, compares vᵀ·J_k·u_k computed by backward (the gradient of vᵀf,
/// dotted with u_k) and by central differences along u_k (vᵀ(f(x + εu_k) − f(x − εu_k))/2ε).
fn check_projected<F>(
    f: &F,
    inputs: &[Tensor<f64>],
    options: &GradcheckOptions,
) -> Result<GradcheckReport>
where
    F: Outputs,
{
    // Directions from their own stream, unit length so ε means the same step for every input.
    let mut directions = Pcg64::seed_from_u64(options.seed ^ 0xD1B5_4A32_D192_ED03);
    let mut unit = |dims: &[usize]| -> Result<Tensor<f64>> {
        let t = Tensor::normal(dims, 0.0, 1.0, &mut directions)?;
        let norm = t.data().iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            t.map(|x| x / norm)
        } else {
            Ok(t)
        }
    };
    let outs = evaluate(f, inputs, options.seed)?;
    let v: Vec<Tensor<f64>> = outs.iter().map(|o| unit(o.dims())).collect::<Result<_>>()?;
    let u: Vec<Tensor<f64>> = inputs
        .iter()
        .map(|x| unit(x.dims()))
        .collect::<Result<_>>()?;

    // Analytic: one backward pass per output, seeded with v, gives vᵀJ for every input.
    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let outputs = f(&tape, &vars, &mut Pcg64::seed_from_u64(options.seed))?;
    let mut vjp: Vec<Tensor<f64>> = inputs
        .iter()
        .map(Tensor::zeros_like)
        .collect::<Result<_>>()?;
    for (out, v) in outputs.iter().zip(&v) {
        if !out.requires_grad() {
            continue;
        }
        let grads = out.backward_with(BackwardOptions::new().seed(v.clone()).retain_graph(true))?;
        for (k, var) in vars.iter().enumerate() {
            if let Some(g) = grads.get(*var) {
                vjp[k].add_assign_same_shape(g);
            }
        }
    }
    let dot = |a: &Tensor<f64>, b: &Tensor<f64>| {
        a.data()
            .iter()
            .zip(b.data())
            .map(|(x, y)| x * y)
            .sum::<f64>()
    };

    let mut report = GradcheckReport {
        inputs: Vec::with_capacity(inputs.len()),
        atol: options.atol,
        rtol: options.rtol,
    };
    for (k, input) in inputs.iter().enumerate() {
        let analytic = dot(&vjp[k], &u[k]);
        let shifted = |sign: f64| -> Result<Vec<Tensor<f64>>> {
            let mut moved = inputs.to_vec();
            moved[k] = input.zip_map(&u[k], "gradcheck", |x, d| x + sign * options.eps * d)?;
            evaluate(f, &moved, options.seed)
        };
        let (plus, minus) = (shifted(1.0)?, shifted(-1.0)?);
        let numeric = plus
            .iter()
            .zip(&minus)
            .zip(&v)
            .map(|((p, m), v)| {
                let diff = p.zip_map(m, "gradcheck", |p, m| (p - m) / (2.0 * options.eps))?;
                Ok(dot(&diff, v))
            })
            .sum::<Result<f64>>()?;
        let abs = (analytic - numeric).abs();
        let passed = abs <= options.atol + options.rtol * numeric.abs();
        report.inputs.push(InputCheck {
            input: k,
            dims: input.dims().to_vec(),
            max_abs_err: abs,
            max_rel_err: if numeric == 0.0 {
                abs
            } else {
                abs / numeric.abs()
            },
            worst: Some(WorstEntry {
                input_index: Vec::new(),
                output_index: 0,
                analytic,
                numeric,
            }),
            passed,
        });
    }
    if report.passed() {
        Ok(report)
    } else {
        Err(Error::GradcheckFailed(Box::new(report)))
    }
}

/// The larger of two errors, where NaN counts as the largest: a NaN error must show in the report,
/// not vanish behind `f64::max`.
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn unravel(mut flat: usize, strides: &[usize]) -> Vec<usize> {
    strides
        .iter()
        .map(|&s| {
            let i = flat / s.max(1);
            flat %= s.max(1);
            i
        })
        .collect()
}

/// Runs `f` once on fresh values and returns its outputs' values.
fn evaluate<F>(f: &F, inputs: &[Tensor<f64>], seed: u64) -> Result<Vec<Tensor<f64>>>
where
    F: Outputs,
{
    // A gradient-recording tape, because f may itself take gradients (gradgradcheck).
    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let outs = f(&tape, &vars, &mut Pcg64::seed_from_u64(seed))?;
    Ok(outs.iter().map(|o| (*o.value()).clone()).collect())
}

/// ∂f/∂(input k, element i) for every output element, by central differences.
fn numeric_column<F>(
    f: &F,
    inputs: &[Tensor<f64>],
    k: usize,
    i: usize,
    options: &GradcheckOptions,
) -> Result<Vec<f64>>
where
    F: Outputs,
{
    let mut shifted = inputs.to_vec();
    let x = inputs[k].data()[i];
    shifted[k].data_mut()[i] = x + options.eps;
    let plus = evaluate(f, &shifted, options.seed)?;
    shifted[k].data_mut()[i] = x - options.eps;
    let minus = evaluate(f, &shifted, options.seed)?;
    Ok(plus
        .iter()
        .zip(&minus)
        .flat_map(|(p, m)| p.data().iter().zip(m.data()))
        .map(|(p, m)| (p - m) / (2.0 * options.eps))
        .collect())
}

/// Row-major Jacobian per input: entry [j · numel + i] = ∂out_j/∂x_i, one backward pass per output
/// element (seeded with the one-hot vector of that element).
fn analytic_jacobian<F>(f: &F, inputs: &[Tensor<f64>], seed: u64) -> Result<Vec<Vec<f64>>>
where
    F: Outputs,
{
    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let outs = f(&tape, &vars, &mut Pcg64::seed_from_u64(seed))?;
    let m: usize = outs.iter().map(|o| o.shape().numel()).sum();
    let mut jacobians: Vec<Vec<f64>> = inputs.iter().map(|x| vec![0.0; m * x.numel()]).collect();
    let mut row = 0;
    for out in outs {
        let out_shape = out.shape();
        for j in 0..out_shape.numel() {
            // An output that does not depend on the inputs has a zero row, as initialised.
            if out.requires_grad() {
                let mut seed_grad = Tensor::full_shape(out_shape.clone(), 0.0)?;
                seed_grad.data_mut()[j] = 1.0;
                let grads =
                    out.backward_with(BackwardOptions::new().seed(seed_grad).retain_graph(true))?;
                for (k, var) in vars.iter().enumerate() {
                    if let Some(g) = grads.get(*var) {
                        let n = g.numel();
                        jacobians[k][(row + j) * n..(row + j + 1) * n].copy_from_slice(g.data());
                    }
                }
            }
        }
        row += out_shape.numel();
    }
    Ok(jacobians)
}
