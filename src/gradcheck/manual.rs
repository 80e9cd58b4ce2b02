//! Checking a hand-derived backward pass: a user's function returning the loss and its gradients
//! computed by hand is compared, element by element, with the tape's gradients of the same loss,
//! and on sampled elements with finite differences — over several seeds (dropout masks) and several
//! steps of gradient descent, so that a rule right only at the starting point is caught too.

use std::fmt;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;

use super::numeric::{self, Difference};
use super::{GradcheckOptions, unravel};
use crate::error::{Error, Result};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Settings of [`check_manual_gradients`].
#[derive(Clone, Debug, PartialEq)]
pub struct ManualCheckOptions {
    /// The seeds: each gives the generator handed to both functions (the same dropout mask for
    /// both), and the run restarts from the initial parameters.
    pub seeds: Vec<u64>,
    /// Steps per seed: after each comparison the parameters move by `−lr ·` the tape's gradient,
    /// and the next step draws a new mask.
    pub steps: usize,
    /// The step size of those moves.
    pub lr: f64,
    /// Manual against tape, absolute tolerance: the same formula computed two ways differs only by
    /// rounding.
    pub tape_atol: f64,
    /// Manual against tape, relative tolerance.
    pub tape_rtol: f64,
    /// Finite-difference step.
    pub eps: f64,
    /// Manual against finite differences, absolute tolerance.
    pub atol: f64,
    /// Manual against finite differences, relative tolerance.
    pub rtol: f64,
    /// The numeric scheme.
    pub scheme: Difference,
    /// Elements of each tensor checked by finite differences at each step, drawn at random (every
    /// element if the tensor has no more); the element where manual and tape differ most is
    /// always among them.
    pub fd_samples: usize,
}

impl Default for ManualCheckOptions {
    /// Seeds 0, 1, 2; two steps each with lr 0.1; manual vs tape to atol 1e-10, rtol 1e-8;
    /// PyTorch's ε and tolerances against finite differences, 8 sampled elements per tensor.
    fn default() -> Self {
        ManualCheckOptions {
            seeds: vec![0, 1, 2],
            steps: 2,
            lr: 0.1,
            tape_atol: 1e-10,
            tape_rtol: 1e-8,
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            scheme: Difference::Central,
            fd_samples: 8,
        }
    }
}

/// Which side of the comparison is wrong, as far as the three computations tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Culprit {
    /// The hand-derived gradient disagrees with the tape and with finite differences.
    Manual,
    /// The hand-derived gradient agrees with finite differences and the tape does not (a bug in
    /// an op's backward, or a tape function that is not the same function).
    Tape,
    /// All three disagree.
    Unclear,
}

/// How one gradient fared over every seed and step.
#[derive(Clone, Debug, PartialEq)]
pub struct ManualTensorCheck {
    /// Its name.
    pub name: String,
    /// Its dimensions.
    pub dims: Vec<usize>,
    /// Largest |manual − tape| seen.
    pub max_tape_diff: f64,
    /// Largest (|manual − numeric|) / (atol + rtol·|numeric|) over the sampled elements.
    pub max_fd_ratio: f64,
    /// Where it went most wrong (or, if it never did, where manual and tape differed most).
    pub worst: Option<ManualEntry>,
    /// Which side is wrong, if anything is.
    pub culprit: Option<Culprit>,
    /// Whether it agreed with the tape everywhere and with finite differences where sampled.
    pub passed: bool,
}

/// One element of one gradient at one seed and step: the three values.
#[derive(Clone, Debug, PartialEq)]
pub struct ManualEntry {
    /// The seed.
    pub seed: u64,
    /// The step (0 = the initial parameters).
    pub step: usize,
    /// Multi-index of the element.
    pub index: Vec<usize>,
    /// The hand-derived value.
    pub manual: f64,
    /// The tape's value.
    pub tape: f64,
    /// The finite-difference value (when the element was sampled).
    pub numeric: Option<f64>,
}

/// The result of [`check_manual_gradients`].
#[derive(Clone, Debug, PartialEq)]
pub struct ManualReport {
    /// One entry per gradient, in the order given.
    pub tensors: Vec<ManualTensorCheck>,
    /// Largest |manual loss − tape loss| seen.
    pub max_loss_diff: f64,
    /// Whether the losses agreed (to the manual-vs-tape tolerances).
    pub loss_passed: bool,
    /// How many (seed, step) points were compared.
    pub points: usize,
    /// The options used.
    pub options: ManualCheckOptions,
}

impl ManualReport {
    /// Whether every gradient and the loss passed.
    pub fn passed(&self) -> bool {
        self.loss_passed && self.tensors.iter().all(|t| t.passed)
    }

    /// The check of the gradient named `name`.
    pub fn tensor(&self, name: &str) -> Option<&ManualTensorCheck> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

impl fmt::Display for ManualReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "check_manual_gradients {} ({} points: {} seeds x {} steps; manual vs tape atol {:e} rtol {:e}; vs finite differences atol {:e} rtol {:e}, {} sampled elements per tensor)",
            if self.passed() { "passed" } else { "FAILED" },
            self.points,
            o.seeds.len(),
            o.steps,
            o.tape_atol,
            o.tape_rtol,
            o.atol,
            o.rtol,
            o.fd_samples
        )?;
        writeln!(
            f,
            "  loss: {} | max |manual - tape| {:.3e}",
            if self.loss_passed { "ok" } else { "MISMATCH" },
            self.max_loss_diff
        )?;
        for t in &self.tensors {
            write!(
                f,
                "  {} {:?}: {} | max |manual - tape| {:.3e} | worst manual vs numeric err/tol {:.2e}",
                t.name,
                t.dims,
                match t.culprit {
                    None => "ok",
                    Some(Culprit::Manual) => "WRONG (the hand-derived gradient)",
                    Some(Culprit::Tape) =>
                        "WRONG (the tape's gradient; the hand-derived one agrees with finite differences)",
                    Some(Culprit::Unclear) =>
                        "WRONG (manual, tape and finite differences all disagree)",
                },
                t.max_tape_diff,
                t.max_fd_ratio
            )?;
            if let (false, Some(w)) = (t.passed, &t.worst) {
                write!(
                    f,
                    "\n    at seed {} step {} element {:?}: manual {:.10e} | tape {:.10e} | numeric {}",
                    w.seed,
                    w.step,
                    w.index,
                    w.manual,
                    w.tape,
                    w.numeric
                        .map_or("(not sampled)".to_string(), |n| format!("{n:.10e}"))
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Compares a hand-derived backward pass with the tape and with finite differences.
///
/// `manual(params, rng)` returns the loss and one gradient per parameter, derived by hand;
/// `tape_fn(tape, vars, rng)` records the same loss on a tape. Both receive a fresh generator
/// from the same seed at each point, so a dropout inside draws the same mask in both (a hand-written
/// backward that draws a new mask instead of reusing the forward's is caught). At each seed in
/// `options.seeds`, for `options.steps` steps: every element of every gradient is compared with the
/// tape's, and `options.fd_samples` elements per tensor (always including the one where manual and
/// tape differ most) with central differences of the tape function; then the parameters move by
/// `−lr ·` the tape's gradient. The report names each gradient, whether it is wrong, which side
/// is (manual, tape, or unclear) and the worst element with all three values.
///
/// PyTorch has no equivalent; the pattern is the lesson's (`lesson::manual_step` against
/// `lesson::tape_step`), made general.
///
/// ```
/// use rand_pcg::Pcg64;
/// use tapegrad::gradcheck::{check_manual_gradients, ManualCheckOptions};
/// use tapegrad::{Tape, Tensor, Var};
///
/// // loss = Σ (w·x)², by hand: ∂loss/∂w = 2(w·x)·x. With the factor 2 forgotten, the check fails.
/// let x = [0.5, -1.0, 2.0];
/// let manual = |factor: f64| move |p: &[Tensor<f64>], _: &mut Pcg64| {
///     let s: f64 = p[0].data().iter().zip(&x).map(|(w, x)| w * x).sum();
///     let g = Tensor::from_vec(x.iter().map(|x| factor * s * x).collect(), &[3])?;
///     Ok((s * s, vec![g]))
/// };
/// fn tape_fn<'t>(tape: &'t Tape<f64>, v: &[Var<'t, f64>], _: &mut Pcg64) -> tapegrad::Result<Var<'t, f64>> {
///     let s = v[0].mul(tape.constant(Tensor::from_vec(vec![0.5, -1.0, 2.0], &[3])?))?.sum()?;
///     s.mul(s)
/// }
/// let w = Tensor::from_vec(vec![0.3, 0.1, -0.2], &[3])?;
/// let options = ManualCheckOptions::default();
/// let right = check_manual_gradients(manual(2.0), tape_fn, &["w"], &[w.clone()], &options)?;
/// assert!(right.passed(), "{right}");
/// let wrong = check_manual_gradients(manual(1.0), tape_fn, &["w"], &[w], &options)?;
/// assert!(!wrong.passed());
/// assert!(wrong.to_string().contains("WRONG (the hand-derived gradient)"));
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn check_manual_gradients<M, F>(
    manual: M,
    tape_fn: F,
    names: &[&str],
    params: &[Tensor<f64>],
    options: &ManualCheckOptions,
) -> Result<ManualReport>
where
    M: Fn(&[Tensor<f64>], &mut Pcg64) -> Result<(f64, Vec<Tensor<f64>>)>,
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Var<'t, f64>>,
{
    GradcheckOptions {
        eps: options.eps,
        atol: options.atol,
        rtol: options.rtol,
        ..GradcheckOptions::default()
    }
    .validate()?;
    if names.len() != params.len() {
        return Err(Error::ArgumentCount {
            op: "check_manual_gradients",
            what: "names (one per parameter)",
            expected: params.len(),
            got: names.len(),
        });
    }
    let mut report = ManualReport {
        tensors: names
            .iter()
            .zip(params)
            .map(|(name, p)| ManualTensorCheck {
                name: name.to_string(),
                dims: p.dims().to_vec(),
                max_tape_diff: 0.0,
                max_fd_ratio: 0.0,
                worst: None,
                culprit: None,
                passed: true,
            })
            .collect(),
        max_loss_diff: 0.0,
        loss_passed: true,
        points: 0,
        options: options.clone(),
    };
    // Badness of the worst entry recorded per tensor (to keep the worst across points).
    let mut worst_badness = vec![f64::NEG_INFINITY; params.len()];
    let mut sampler = Pcg64::seed_from_u64(0x5EED_CAFE);
    for &seed in &options.seeds {
        let mut current: Vec<Tensor<f64>> = params
            .iter()
            .map(Tensor::try_clone)
            .collect::<Result<_>>()?;
        for step in 0..options.steps {
            let point_seed = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let (manual_loss, manual_grads) =
                manual(&current, &mut Pcg64::seed_from_u64(point_seed))?;
            if manual_grads.len() != current.len() {
                return Err(Error::ArgumentCount {
                    op: "check_manual_gradients",
                    what: "hand-derived gradients (one per parameter)",
                    expected: current.len(),
                    got: manual_grads.len(),
                });
            }
            let (tape_loss, tape_grads) = tape_gradients(&tape_fn, &current, point_seed)?;
            report.points += 1;
            let loss_diff = (manual_loss - tape_loss).abs();
            report.max_loss_diff = super::nan_max(report.max_loss_diff, loss_diff);
            report.loss_passed &=
                loss_diff <= options.tape_atol + options.tape_rtol * tape_loss.abs();

            for (k, (m, t)) in manual_grads.iter().zip(&tape_grads).enumerate() {
                if m.shape() != t.shape() {
                    return Err(Error::ShapeMismatch {
                        op: "check_manual_gradients",
                        lhs: m.shape().clone(),
                        rhs: t.shape().clone(),
                    });
                }
                let check = &mut report.tensors[k];
                let strides = t.shape().strides();
                // Manual against tape, every element.
                let mut worst_i = None;
                let mut worst_excess = f64::NEG_INFINITY;
                let mut tape_ok = true;
                for (i, (&mv, &tv)) in m.data().iter().zip(t.data()).enumerate() {
                    let diff = (mv - tv).abs();
                    let allowed = options.tape_atol + options.tape_rtol * tv.abs();
                    let excess = if diff.is_nan() {
                        f64::INFINITY
                    } else {
                        diff / allowed
                    };
                    check.max_tape_diff = super::nan_max(check.max_tape_diff, diff);
                    tape_ok &= diff <= allowed;
                    if excess > worst_excess {
                        worst_excess = excess;
                        worst_i = Some(i);
                    }
                }
                // Manual against finite differences, on sampled elements.
                let n = t.numel();
                let mut sample: Vec<usize> = if n <= options.fd_samples {
                    (0..n).collect()
                } else {
                    (0..options.fd_samples)
                        .map(|_| sampler.random_range(0..n))
                        .collect()
                };
                if let Some(i) = worst_i
                    && !sample.contains(&i)
                {
                    sample.insert(0, i);
                }
                let mut fd_worst: Option<(usize, f64, f64)> = None;
                let mut numeric_at_worst_tape = None;
                for &i in &sample {
                    let Some(num) = numeric_element(&tape_fn, &current, k, i, point_seed, options)?
                    else {
                        continue; // a kink within ε: finite differences cannot judge it
                    };
                    if Some(i) == worst_i {
                        numeric_at_worst_tape = Some(num);
                    }
                    let mv = m.data()[i];
                    let abs = (mv - num).abs();
                    let ratio = if abs.is_nan() {
                        f64::INFINITY
                    } else {
                        abs / (options.atol + options.rtol * num.abs())
                    };
                    if fd_worst.is_none_or(|(_, r, _)| ratio > r) {
                        fd_worst = Some((i, ratio, num));
                    }
                }
                let fd_ratio = fd_worst.map_or(0.0, |(_, r, _)| r);
                check.max_fd_ratio = check.max_fd_ratio.max(fd_ratio);
                let fd_ok = fd_ratio <= 1.0;
                if !(tape_ok && fd_ok) {
                    check.passed = false;
                }
                // The entry to report at this point: where manual and tape differ most if they
                // do, else where manual and finite differences differ most.
                let (i, numeric, badness) = match (tape_ok, fd_worst) {
                    (false, _) => (worst_i, numeric_at_worst_tape, 1.0 + worst_excess),
                    (true, Some((i, r, num))) if !fd_ok => (Some(i), Some(num), r),
                    _ => (worst_i, numeric_at_worst_tape, 0.0),
                };
                let Some(i) = i else { continue };
                if badness > worst_badness[k] {
                    worst_badness[k] = badness;
                    let (mv, tv) = (m.data()[i], t.data()[i]);
                    check.worst = Some(ManualEntry {
                        seed,
                        step,
                        index: unravel(i, &strides),
                        manual: mv,
                        tape: tv,
                        numeric,
                    });
                    check.culprit = if tape_ok && fd_ok {
                        None
                    } else {
                        Some(culprit(mv, tv, numeric, options))
                    };
                }
            }
            // Move on: a step of gradient descent along the tape's gradient.
            for (p, g) in current.iter_mut().zip(&tape_grads) {
                for (x, d) in p.data_mut().iter_mut().zip(g.data()) {
                    *x -= options.lr * d;
                }
            }
        }
    }
    Ok(report)
}

fn culprit(manual: f64, tape: f64, numeric: Option<f64>, options: &ManualCheckOptions) -> Culprit {
    let Some(num) = numeric else {
        // Not sampled at that element cannot happen for the worst tape element (it is always
        // sampled) unless it sits at a kink; without a referee, blame the hand-derived side.
        return Culprit::Manual;
    };
    let close = |a: f64| (a - num).abs() <= options.atol + options.rtol * num.abs();
    match (close(manual), close(tape)) {
        (false, true) => Culprit::Manual,
        (true, false) => Culprit::Tape,
        (false, false) => Culprit::Unclear,
        // Both near the numeric value yet apart from each other beyond the tape tolerance: the
        // finite differences cannot resolve the gap, so the hand-derived side is the suspect.
        (true, true) => Culprit::Manual,
    }
}

/// The loss and the gradient of each parameter, on the tape.
fn tape_gradients<F>(
    tape_fn: &F,
    params: &[Tensor<f64>],
    seed: u64,
) -> Result<(f64, Vec<Tensor<f64>>)>
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Var<'t, f64>>,
{
    let tape = Tape::new();
    let vars: Vec<_> = params
        .iter()
        .map(|p| Ok(tape.leaf(p.try_clone()?)))
        .collect::<Result<_>>()?;
    let loss = tape_fn(&tape, &vars, &mut Pcg64::seed_from_u64(seed))?;
    let value = loss.value().item()?;
    let mut grads = if loss.requires_grad() {
        Some(loss.backward()?)
    } else {
        None
    };
    let grads = vars
        .iter()
        .zip(params)
        .map(|(&v, p)| match grads.as_mut().and_then(|g| g.take(v)) {
            Some(g) => Ok(g),
            None => Tensor::zeros_like(p),
        })
        .collect::<Result<_>>()?;
    Ok((value, grads))
}

/// ∂loss/∂(parameter k, element i) by the scheme, or `None` if the element lies within ε of a
/// kink (the one-sided slopes differ).
fn numeric_element<F>(
    tape_fn: &F,
    params: &[Tensor<f64>],
    k: usize,
    i: usize,
    seed: u64,
    options: &ManualCheckOptions,
) -> Result<Option<f64>>
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Var<'t, f64>>,
{
    let mut shifted = params.to_vec();
    let x = params[k].data()[i];
    let mut eval = |xi: f64| -> Result<Vec<f64>> {
        shifted[k].data_mut()[i] = xi;
        let tape = Tape::no_grad();
        let vars: Vec<_> = shifted
            .iter()
            .map(|p| Ok(tape.leaf(p.try_clone()?)))
            .collect::<Result<_>>()?;
        let loss = tape_fn(&tape, &vars, &mut Pcg64::seed_from_u64(seed))?;
        Ok(vec![loss.value().item()?])
    };
    let column = numeric::column(&mut eval, x, options.eps, options.scheme)?;
    let sides = numeric::sides(&mut eval, x, column.step)?;
    let (l, r) = (sides.left[0], sides.right[0]);
    if (l - r).abs() > options.atol + options.rtol * l.abs().max(r.abs()) {
        return Ok(None);
    }
    Ok(Some(column.values[0]))
}
