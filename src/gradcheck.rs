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
//!
//! **Beyond one function.** The submodules check larger things with the same machinery:
//! [`gradcheck_module`] a whole `nn` model (an f32 model is copied to f64 for the check),
//! [`check_manual_gradients`] a hand-derived backward pass against the tape and against finite
//! differences, and [`check_op`] a custom op over a sweep of generated shapes. [`Difference`]
//! chooses the numeric scheme (PyTorch's central difference, a 4th-order one, or a per-element step
//! sweep), and a failing entry whose one-sided slopes differ is diagnosed as a kink within ε of the
//! input rather than reported as a wrong gradient. A full-mode report renders as JSON
//! ([`GradcheckReport::to_json`]) and as an SVG heat map of |analytic − numeric|
//! ([`GradcheckReport::heatmap_svg`]). See `docs/gradcheck.md` for which tool answers which question.

mod manual;
mod module;
mod numeric;
mod opcheck;
mod render;

pub use manual::{
    Culprit, ManualCheckOptions, ManualEntry, ManualReport, ManualTensorCheck,
    check_manual_gradients,
};
pub use module::{ModuleCheckOptions, ModuleReport, ParamCheck, ToF64, gradcheck_module};
pub use numeric::Difference;
pub use opcheck::{
    OpCase, OpCheck, OpReport, OpSweepOptions, OpUnderTest, check_op, generated_shapes,
};

use std::fmt;

use rand::SeedableRng;
use rand_pcg::Pcg64;

use crate::error::{Error, Result};
use crate::kernels::sum::dot;
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
    /// The numeric scheme ([`Difference::Central`], PyTorch's, by default).
    pub scheme: Difference,
    /// Whether a failing entry is examined for a kink: if the one-sided slopes just outside
    /// `[x − ε, x + ε]` differ and the analytic derivative equals one of them, the entry is
    /// recorded in [`InputCheck::kinks`] instead of failing the check (on by default).
    pub diagnose_kinks: bool,
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
            scheme: Difference::Central,
            diagnose_kinks: true,
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
    /// Whether every entry was within tolerance (entries diagnosed as kinks excepted).
    pub passed: bool,
    /// Entries that were out of tolerance because a kink lies within ε of the input element, and
    /// whose analytic value is one of the two one-sided slopes (not counted in the errors above).
    pub kinks: Vec<Kink>,
    /// The largest estimated error of a numeric derivative ([`Difference::Auto`] only: the gap
    /// between the estimates at the two best-agreeing steps; 0 for the other schemes).
    pub max_numeric_error: f64,
}

/// A Jacobian entry at a kink: the function's slope changes within ε of the input element, so the
/// central difference averages two slopes; backward returned one of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Kink {
    /// Multi-index of the input element.
    pub input_index: Vec<usize>,
    /// Flat index of the output element.
    pub output_index: usize,
    /// From backward.
    pub analytic: f64,
    /// The slope just below the input (over `[x − 2ε, x − ε]`).
    pub left: f64,
    /// The slope just above the input (over `[x + ε, x + 2ε]`).
    pub right: f64,
    /// Where the kink lies relative to the input element (estimated; |offset| < ε when the
    /// function is piecewise linear there).
    pub offset: f64,
}

/// Both Jacobians of one input, row-major (`[output element][input element]`), from a full-mode
/// check: what the heat map and the JSON report are drawn from.
#[derive(Clone, Debug, PartialEq)]
pub struct JacobianPair {
    /// Position of the input.
    pub input: usize,
    /// Number of output elements (rows).
    pub rows: usize,
    /// Number of input elements (columns).
    pub cols: usize,
    /// From backward.
    pub analytic: Vec<f64>,
    /// From finite differences.
    pub numeric: Vec<f64>,
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
    /// The options used.
    pub eps: f64,
    /// The numeric scheme used.
    pub scheme: Difference,
    /// Whether this was a fast-mode (random projection) check.
    pub fast: bool,
    /// Per input, both Jacobians (full mode only; empty in fast mode).
    pub jacobians: Vec<JacobianPair>,
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
            "gradcheck {verdict} (atol {:e}, rtol {:e}, eps {:e}, {}{})",
            self.atol,
            self.rtol,
            self.eps,
            self.scheme.name(),
            if self.fast { ", fast mode" } else { "" }
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
            if c.max_numeric_error > 0.0 {
                write!(f, " | numeric estimate err <= {:.1e}", c.max_numeric_error)?;
            }
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
            for k in c.kinks.iter().take(3) {
                writeln!(
                    f,
                    "    kink within eps of input element {:?} (output element {}): one-sided slopes {:.6e} and {:.6e}, analytic {:.6e}; the kink lies {:+.2e} from the input",
                    k.input_index, k.output_index, k.left, k.right, k.analytic, k.offset
                )?;
            }
            if c.kinks.len() > 3 {
                writeln!(f, "    … {} more entries at kinks", c.kinks.len() - 3)?;
            }
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
    let mut report = empty_report(inputs.len(), options);
    for (k, input) in inputs.iter().enumerate() {
        let n = input.numel();
        let rows = analytic[k].len().checked_div(n).unwrap_or(0);
        let mut numeric_jacobian = vec![0.0; rows * n];
        let mut check = InputCheck {
            input: k,
            dims: input.dims().to_vec(),
            max_abs_err: 0.0,
            max_rel_err: 0.0,
            worst: None,
            passed: true,
            kinks: Vec::new(),
            max_numeric_error: 0.0,
        };
        let mut worst_excess = f64::NEG_INFINITY;
        let strides = input.shape().strides();
        let mut shifted = inputs.to_vec();
        for i in 0..n {
            let x = input.data()[i];
            let mut eval = |xi: f64| -> Result<Vec<f64>> {
                shifted[k].data_mut()[i] = xi;
                flat_outputs(&f, &shifted, options.seed)
            };
            let column = numeric::column(&mut eval, x, options.eps, options.scheme)?;
            check.max_numeric_error = nan_max(check.max_numeric_error, column.error_estimate);
            let mut sides: Option<numeric::Sides> = None;
            for (j, &num) in column.values.iter().enumerate() {
                let ana = analytic[k][j * n + i];
                numeric_jacobian[j * n + i] = num;
                let abs = (ana - num).abs();
                let allowed = options.atol + options.rtol * num.abs();
                // NaN on either side fails: `abs <= allowed` is false for NaN.
                let ok = abs <= allowed;
                if !ok && options.diagnose_kinks && abs.is_finite() {
                    if sides.is_none() {
                        sides = Some(numeric::sides(&mut eval, x, column.step)?);
                    }
                    if let Some(s) = &sides
                        && let Some(kink) =
                            classify_kink(ana, s, j, column.step, options.atol, options.rtol)
                    {
                        check.kinks.push(Kink {
                            input_index: unravel(i, &strides),
                            output_index: j,
                            ..kink
                        });
                        continue;
                    }
                }
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
            shifted[k].data_mut()[i] = x;
        }
        report.jacobians.push(JacobianPair {
            input: k,
            rows,
            cols: n,
            analytic: analytic[k].clone(),
            numeric: numeric_jacobian,
        });
        report.inputs.push(check);
    }
    if report.passed() {
        Ok(report)
    } else {
        Err(Error::GradcheckFailed(Box::new(report)))
    }
}

/// A report with no inputs yet, recording the options.
fn empty_report(inputs: usize, options: &GradcheckOptions) -> GradcheckReport {
    GradcheckReport {
        inputs: Vec::with_capacity(inputs),
        atol: options.atol,
        rtol: options.rtol,
        eps: options.eps,
        scheme: options.scheme,
        fast: options.fast,
        jacobians: Vec::new(),
    }
}

/// A kink, if entry `j` is explained by one: the one-sided slopes differ by more than the
/// tolerance, and the analytic value matches one of them. (The indices are filled in by the caller.)
pub(crate) fn classify_kink(
    analytic: f64,
    sides: &numeric::Sides,
    j: usize,
    step: f64,
    atol: f64,
    rtol: f64,
) -> Option<Kink> {
    let (left, right) = (sides.left[j], sides.right[j]);
    let close = |a: f64, b: f64| (a - b).abs() <= atol + rtol * b.abs();
    if close(left, right) || !(close(analytic, left) || close(analytic, right)) {
        return None;
    }
    Some(Kink {
        input_index: Vec::new(),
        output_index: j,
        analytic,
        left,
        right,
        offset: numeric::kink_offset(left, right, sides.across[j], step),
    })
}

/// Runs `f` and returns all its outputs' values, end to end.
fn flat_outputs<F>(f: &F, inputs: &[Tensor<f64>], seed: u64) -> Result<Vec<f64>>
where
    F: Outputs,
{
    let outs = evaluate(f, inputs, seed)?;
    let mut flat = Vec::with_capacity(outs.iter().map(|o| o.numel()).sum());
    for o in &outs {
        flat.extend_from_slice(o.data());
    }
    Ok(flat)
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
        let norm = dot::<f64>(t.data(), t.data()).sqrt();
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
    let mut flat_v = Vec::new();
    for t in &v {
        flat_v.extend_from_slice(t.data());
    }

    let mut report = empty_report(inputs.len(), options);
    for (k, input) in inputs.iter().enumerate() {
        let analytic = dot(vjp[k].data(), u[k].data());
        // vᵀf(x + t·u_k) as a function of the scalar t, differentiated at t = 0 by the scheme.
        let mut along = |t: f64| -> Result<Vec<f64>> {
            let mut moved = inputs.to_vec();
            moved[k] = input.zip_map(&u[k], "gradcheck", |x, d| x + t * d)?;
            let outs = flat_outputs(f, &moved, options.seed)?;
            Ok(vec![dot(&outs, &flat_v)])
        };
        let numeric = numeric::column(&mut along, 0.0, options.eps, options.scheme)?.values[0];
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
            kinks: Vec::new(),
            max_numeric_error: 0.0,
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
