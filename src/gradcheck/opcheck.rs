//! An OpInfo-style sweep of a custom op: generated shapes (rank 0 to 4, zero-size dimensions,
//! broadcasting where the op broadcasts), and for each, the f32 forward and backward against the
//! f64 ones, backward against finite differences, the recorded backward against the plain one, and
//! gradgradcheck — one call, one report.

use std::fmt;

use rand::SeedableRng;
use rand_pcg::Pcg64;

use super::{GradcheckOptions, GradcheckReport, gradcheck, gradgradcheck};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::tape::{BackwardOptions, Tape, Var};
use crate::tensor::Tensor;

/// A custom op to sweep with [`check_op`]: its forward written once for both float types (the
/// same code that calls [`Tape::push_op`] with your `Backward` rule, which must then be
/// implemented for both `f32` and `f64` — usually one generic `impl<T: Float>`).
///
/// ```
/// use tapegrad::gradcheck::OpUnderTest;
/// use tapegrad::{Float, Result, Var};
///
/// /// x·y, elementwise with broadcasting (built from existing ops here; a custom op would call
/// /// `push_op` with its own rule).
/// struct Mul;
/// impl OpUnderTest for Mul {
///     fn name(&self) -> &str { "mul" }
///     fn arity(&self) -> usize { 2 }
///     fn broadcasts(&self) -> bool { true }
///     fn forward<'t, T: Float>(&self, x: &[Var<'t, T>]) -> Result<Var<'t, T>> { x[0].mul(x[1]) }
/// }
/// let report = tapegrad::gradcheck::check_op(&Mul, &Default::default())?;
/// assert!(report.passed(), "{report}");
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub trait OpUnderTest {
    /// The op's name, for the report.
    fn name(&self) -> &str;
    /// How many tensor inputs it takes.
    fn arity(&self) -> usize;
    /// Whether its inputs broadcast against each other (adds broadcasting cases for arity 2).
    fn broadcasts(&self) -> bool {
        false
    }
    /// Records the op on the inputs' tape.
    fn forward<'t, T: Float>(&self, inputs: &[Var<'t, T>]) -> Result<Var<'t, T>>;
    /// Maps a standard normal draw to an input value in the op's domain, away from its kinks and
    /// poles (the identity by default; e.g. `x.abs() + 0.1` for a logarithm).
    fn sample(&self, x: f64) -> f64 {
        x
    }
    /// The input shapes to sweep; by default generated from [`OpUnderTest::arity`] and
    /// [`OpUnderTest::broadcasts`] (see [`check_op`]). Override for ops with shape constraints.
    fn shapes(&self) -> Vec<Vec<Vec<usize>>> {
        generated_shapes(self.arity(), self.broadcasts())
    }
}

/// The shapes [`check_op`] sweeps by default: for every input alike, rank 0 to 4 with zero-size
/// dimensions (`[]`, `[1]`, `[5]`, `[0]`, `[2, 3]`, `[3, 0]`, `[2, 1, 3]`, `[2, 0, 3]`,
/// `[2, 1, 2, 3]`, `[1, 2, 0, 2]`); for a broadcasting op of two inputs, also `[2, 3]` with `[3]`,
/// `[3]` with `[2, 3]`, `[]` with `[2, 3]`, `[2, 1, 3]` with `[4, 1]`, `[2, 1, 2, 1]` with
/// `[3, 1, 2]`, `[0, 3]` with `[1]` and `[2, 0]` with `[2, 1]`.
pub fn generated_shapes(arity: usize, broadcasts: bool) -> Vec<Vec<Vec<usize>>> {
    let same: [&[usize]; 10] = [
        &[],
        &[1],
        &[5],
        &[0],
        &[2, 3],
        &[3, 0],
        &[2, 1, 3],
        &[2, 0, 3],
        &[2, 1, 2, 3],
        &[1, 2, 0, 2],
    ];
    let mut cases: Vec<Vec<Vec<usize>>> = same.iter().map(|s| vec![s.to_vec(); arity]).collect();
    if broadcasts && arity == 2 {
        let pairs: [(&[usize], &[usize]); 7] = [
            (&[2, 3], &[3]),
            (&[3], &[2, 3]),
            (&[], &[2, 3]),
            (&[2, 1, 3], &[4, 1]),
            (&[2, 1, 2, 1], &[3, 1, 2]),
            (&[0, 3], &[1]),
            (&[2, 0], &[2, 1]),
        ];
        cases.extend(pairs.iter().map(|(a, b)| vec![a.to_vec(), b.to_vec()]));
    }
    cases
}

/// Settings of [`check_op`].
#[derive(Clone, Debug)]
pub struct OpSweepOptions {
    /// Seed of the inputs and of the random output gradients.
    pub seed: u64,
    /// Settings of the gradcheck and gradgradcheck of every case.
    pub gradcheck: GradcheckOptions,
    /// f32 against f64 (forward and backward), absolute tolerance.
    pub f32_atol: f64,
    /// f32 against f64, relative tolerance.
    pub f32_rtol: f64,
    /// Recorded backward against plain backward (the same formula twice), absolute tolerance.
    pub graph_atol: f64,
    /// Recorded backward against plain backward, relative tolerance.
    pub graph_rtol: f64,
    /// Whether to run gradgradcheck.
    pub gradgrad: bool,
}

impl Default for OpSweepOptions {
    /// PyTorch's gradcheck settings; f32 against f64 to atol 1e-5, rtol 1e-4; the two backward
    /// paths to atol 1e-12, rtol 1e-10; gradgradcheck on.
    fn default() -> Self {
        OpSweepOptions {
            seed: 0,
            gradcheck: GradcheckOptions::default(),
            f32_atol: 1e-5,
            f32_rtol: 1e-4,
            graph_atol: 1e-12,
            graph_rtol: 1e-10,
            gradgrad: true,
        }
    }
}

/// One check of one case.
#[derive(Clone, Debug, PartialEq)]
pub struct OpCheck {
    /// Which check: `f32 vs f64`, `backward vs finite differences`, `backward_graph vs backward`
    /// or `gradgradcheck`.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// The largest error relative to its tolerance (above 1 fails).
    pub ratio: f64,
    /// What went wrong, in words (empty if nothing).
    pub detail: String,
}

/// One generated case: the input shapes and the outcome of each check.
#[derive(Clone, Debug, PartialEq)]
pub struct OpCase {
    /// The input shapes.
    pub shapes: Vec<Vec<usize>>,
    /// The output shape (empty if the op rejected the inputs).
    pub output: Vec<usize>,
    /// The checks, in order; empty if the op rejected the inputs.
    pub checks: Vec<OpCheck>,
    /// The error the op returned for these shapes, if it rejected them (not a failure: ops may
    /// legitimately reject shapes).
    pub rejected: Option<String>,
}

impl OpCase {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// The result of [`check_op`].
#[derive(Clone, Debug, PartialEq)]
pub struct OpReport {
    /// The op's name.
    pub op: String,
    /// Every case.
    pub cases: Vec<OpCase>,
}

impl OpReport {
    /// Whether every case passed every check.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(OpCase::passed)
    }

    /// The failed checks, with their cases.
    pub fn failures(&self) -> impl Iterator<Item = (&OpCase, &OpCheck)> {
        self.cases
            .iter()
            .flat_map(|c| c.checks.iter().filter(|k| !k.passed).map(move |k| (c, k)))
    }
}

impl fmt::Display for OpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failing = self.cases.iter().filter(|c| !c.passed()).count();
        let rejected = self.cases.iter().filter(|c| c.rejected.is_some()).count();
        writeln!(
            f,
            "check_op {}: {} ({} cases, {} failing, {} rejected by the op)",
            self.op,
            if self.passed() { "passed" } else { "FAILED" },
            self.cases.len(),
            failing,
            rejected
        )?;
        let names = [
            "f32 vs f64",
            "backward vs finite differences",
            "backward_graph vs backward",
            "gradgradcheck",
        ];
        writeln!(
            f,
            "  {:28} {:>12} {:>12} {:>12} {:>12}   (err/tol per check)",
            "input shapes", "f32 vs f64", "bwd vs fd", "graph vs bwd", "gradgrad"
        )?;
        for case in &self.cases {
            let shapes = case
                .shapes
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(" ");
            if let Some(e) = &case.rejected {
                writeln!(f, "  {shapes:28} rejected: {e}")?;
                continue;
            }
            write!(f, "  {shapes:28}")?;
            for name in names {
                match case.checks.iter().find(|c| c.name == name) {
                    Some(c) if c.passed => write!(f, " {:>12}", format!("ok {:.1e}", c.ratio))?,
                    Some(c) => write!(f, " {:>12}", format!("FAIL {:.1e}", c.ratio))?,
                    None => write!(f, " {:>12}", "-")?,
                }
            }
            writeln!(f)?;
        }
        // The first failure of each check, in full.
        for name in names {
            if let Some((case, check)) = self.failures().find(|(_, c)| c.name == name) {
                writeln!(
                    f,
                    "first failure of {name}, at input shapes {:?}:\n{}",
                    case.shapes,
                    check.detail.trim_end()
                )?;
            }
        }
        Ok(())
    }
}

/// Sweeps a custom op over generated shapes and runs every check on each: the f32 forward and
/// backward against the f64 ones, backward against finite differences (gradcheck), the recorded
/// backward (`backward_graph`) against the plain one, and gradgradcheck.
///
/// Inputs are standard normal draws mapped through [`OpUnderTest::sample`]; output gradients are
/// fixed random tensors. Shapes the op rejects with an error are listed as rejected, not failed.
///
/// PyTorch's nearest equivalent is an `OpInfo` entry run through its test suite
/// (`test_ops.py`, `test_ops_gradients.py`).
pub fn check_op<O: OpUnderTest>(op: &O, options: &OpSweepOptions) -> Result<OpReport> {
    options.gradcheck.validate()?;
    let mut rng = Pcg64::seed_from_u64(options.seed);
    let mut report = OpReport {
        op: op.name().to_string(),
        cases: Vec::new(),
    };
    for shapes in op.shapes() {
        if shapes.len() != op.arity() {
            return Err(Error::ArgumentCount {
                op: "check_op",
                what: "input shapes per case (one per input)",
                expected: op.arity(),
                got: shapes.len(),
            });
        }
        let inputs: Vec<Tensor<f64>> = shapes
            .iter()
            .map(|s| {
                let mut t = Tensor::normal(s, 0.0, 1.0, &mut rng)?;
                for x in t.data_mut() {
                    *x = op.sample(*x);
                }
                Ok(t)
            })
            .collect::<Result<_>>()?;
        let mut case = OpCase {
            shapes: shapes.clone(),
            output: Vec::new(),
            checks: Vec::new(),
            rejected: None,
        };
        // The f64 value and plain gradients (and whether the op accepts these shapes at all).
        let plain = match plain_pass::<f64, O>(op, &inputs, None) {
            Ok(p) => p,
            Err(e) => {
                case.rejected = Some(e.to_string());
                report.cases.push(case);
                continue;
            }
        };
        case.output = plain.value.dims().to_vec();
        let seed_grad = Tensor::normal(plain.value.dims(), 0.0, 1.0, &mut rng)?;
        let f64_pass = plain_pass::<f64, O>(op, &inputs, Some(&seed_grad))?;

        case.checks.push(f32_against_f64(
            op, &inputs, &seed_grad, &f64_pass, options,
        )?);
        case.checks.push(from_gradcheck(
            "backward vs finite differences",
            gradcheck(|_, v, _| op.forward(v), &inputs, &options.gradcheck),
        )?);
        case.checks.push(graph_against_plain(
            op, &inputs, &seed_grad, &f64_pass, options,
        )?);
        if options.gradgrad {
            case.checks.push(from_gradcheck(
                "gradgradcheck",
                gradgradcheck(|_, v, _| op.forward(v), &inputs, &options.gradcheck),
            )?);
        }
        report.cases.push(case);
    }
    Ok(report)
}

/// A forward (and, with a seed, backward) pass in type T: the value and each input's gradient.
struct Pass<T: Float> {
    value: Tensor<T>,
    grads: Vec<Tensor<T>>,
}

fn plain_pass<T: Float, O: OpUnderTest>(
    op: &O,
    inputs: &[Tensor<f64>],
    seed: Option<&Tensor<f64>>,
) -> Result<Pass<T>> {
    let tape = Tape::<T>::new();
    let vars: Vec<_> = inputs
        .iter()
        .map(|x| Ok(tape.leaf(x.cast::<T>()?)))
        .collect::<Result<_>>()?;
    let y = op.forward(&vars)?;
    let value = y.value().try_clone()?;
    let mut grads = Vec::with_capacity(vars.len());
    if let Some(seed) = seed {
        let g = if y.requires_grad() {
            Some(y.backward_with(BackwardOptions::new().seed(seed.cast::<T>()?))?)
        } else {
            None
        };
        for &v in &vars {
            grads.push(match g.as_ref().and_then(|g| g.get(v)) {
                Some(t) => t.try_clone()?,
                None => Tensor::full_shape(v.shape(), T::ZERO)?,
            });
        }
    }
    Ok(Pass { value, grads })
}

/// The largest |a − b| / (atol + rtol·|b|) over two tensors of one shape (∞ for a NaN or a
/// shape mismatch).
fn ratio<T: Float>(a: &Tensor<T>, b: &Tensor<f64>, atol: f64, rtol: f64) -> f64 {
    if a.dims() != b.dims() {
        return f64::INFINITY;
    }
    a.data()
        .iter()
        .zip(b.data())
        .map(|(&x, &y)| {
            let e = (x.to_f64() - y).abs() / (atol + rtol * y.abs());
            if e.is_nan() { f64::INFINITY } else { e }
        })
        .fold(0.0, f64::max)
}

fn f32_against_f64<O: OpUnderTest>(
    op: &O,
    inputs: &[Tensor<f64>],
    seed: &Tensor<f64>,
    f64_pass: &Pass<f64>,
    options: &OpSweepOptions,
) -> Result<OpCheck> {
    let name = "f32 vs f64";
    let f32_pass = match plain_pass::<f32, O>(op, inputs, Some(seed)) {
        Ok(p) => p,
        Err(e) => {
            return Ok(OpCheck {
                name,
                passed: false,
                ratio: f64::INFINITY,
                detail: format!("the f32 pass failed where the f64 one did not: {e}"),
            });
        }
    };
    let (atol, rtol) = (options.f32_atol, options.f32_rtol);
    let mut worst = (
        ratio(&f32_pass.value, &f64_pass.value, atol, rtol),
        "the output".to_string(),
    );
    for (k, (g32, g64)) in f32_pass.grads.iter().zip(&f64_pass.grads).enumerate() {
        let r = ratio(g32, g64, atol, rtol);
        if r > worst.0 {
            worst = (r, format!("the gradient of input {k}"));
        }
    }
    let passed = worst.0 <= 1.0;
    Ok(OpCheck {
        name,
        passed,
        ratio: worst.0,
        detail: if passed {
            String::new()
        } else {
            format!(
                "f32 and f64 differ in {} by {:.3e} times the tolerance (atol {atol:e}, rtol {rtol:e})",
                worst.1, worst.0
            )
        },
    })
}

fn graph_against_plain<O: OpUnderTest>(
    op: &O,
    inputs: &[Tensor<f64>],
    seed: &Tensor<f64>,
    f64_pass: &Pass<f64>,
    options: &OpSweepOptions,
) -> Result<OpCheck> {
    let tape = Tape::<f64>::new();
    let vars: Vec<_> = inputs
        .iter()
        .map(|x| Ok(tape.leaf(x.try_clone()?)))
        .collect::<Result<_>>()?;
    let y = op.forward(&vars)?;
    let mut worst = (0.0f64, String::new());
    if y.requires_grad() {
        let graph = y.backward_graph(Some(tape.constant(seed.try_clone()?)))?;
        for (k, (&v, plain)) in vars.iter().zip(&f64_pass.grads).enumerate() {
            let recorded = match graph.wrt(v) {
                Ok(g) => g.value().try_clone()?,
                Err(_) => Tensor::full_shape(v.shape(), 0.0)?,
            };
            let r = ratio(&recorded, plain, options.graph_atol, options.graph_rtol);
            if r > worst.0 {
                let diff = recorded
                    .data()
                    .iter()
                    .zip(plain.data())
                    .enumerate()
                    .max_by(|a, b| {
                        let (da, db) = ((a.1.0 - a.1.1).abs(), (b.1.0 - b.1.1).abs());
                        da.partial_cmp(&db).unwrap_or(std::cmp::Ordering::Greater)
                    });
                worst = (
                    r,
                    match diff {
                        Some((i, (g, p))) if recorded.dims() == plain.dims() => format!(
                            "input {k}, element {:?}: backward_graph {g:.10e} vs backward {p:.10e}",
                            super::unravel(i, &plain.shape().strides())
                        ),
                        _ => format!(
                            "input {k}: backward_graph gives shape {:?}, backward {:?}",
                            recorded.dims(),
                            plain.dims()
                        ),
                    },
                );
            }
        }
    }
    let passed = worst.0 <= 1.0;
    Ok(OpCheck {
        name: "backward_graph vs backward",
        passed,
        ratio: worst.0,
        detail: if passed { String::new() } else { worst.1 },
    })
}

/// A gradcheck outcome as one check: passed, or failed with the report as its detail.
fn from_gradcheck(name: &'static str, result: Result<GradcheckReport>) -> Result<OpCheck> {
    let (report, passed) = match result {
        Ok(r) => (r, true),
        Err(Error::GradcheckFailed(r)) => (*r, false),
        Err(e) => {
            return Ok(OpCheck {
                name,
                passed: false,
                ratio: f64::INFINITY,
                detail: format!("the check could not run: {e}"),
            });
        }
    };
    let entry_ratio = |a: f64, n: f64| {
        let e = (a - n).abs() / (report.atol + report.rtol * n.abs());
        if e.is_nan() { f64::INFINITY } else { e }
    };
    // The largest ratio over every Jacobian entry (full mode), else over the worst entries.
    let ratio = if report.jacobians.is_empty() {
        report
            .inputs
            .iter()
            .filter_map(|c| c.worst.as_ref())
            .map(|w| entry_ratio(w.analytic, w.numeric))
            .fold(0.0, f64::max)
    } else {
        report
            .jacobians
            .iter()
            .flat_map(|j| j.analytic.iter().zip(&j.numeric))
            .map(|(&a, &n)| entry_ratio(a, n))
            .fold(0.0, f64::max)
    };
    Ok(OpCheck {
        name,
        passed,
        ratio,
        detail: if passed {
            String::new()
        } else {
            report.to_string()
        },
    })
}
