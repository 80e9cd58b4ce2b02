//! Loss modules with PyTorch's options and defaults.

use crate::element::Float;
use crate::error::{Error, Result};
use crate::ops::{CrossEntropyOptions, Label, NllOptions, Reduction};
use crate::tape::Var;
use crate::tensor::Tensor;

/// Softmax cross-entropy from logits ([N, C] or [N, C, d…], classes on axis 1) and class indices,
/// with class weights, an ignored label (−100 by default), label smoothing and a reduction.
///
/// PyTorch equivalent: `nn.CrossEntropyLoss(weight, ignore_index, reduction, label_smoothing)`.
#[derive(Debug, Clone)]
pub struct CrossEntropyLoss<T: Float = f32> {
    /// A weight per class, `[C]`.
    pub weight: Option<Tensor<T>>,
    /// Elements with this label count for nothing.
    pub ignore_index: Option<i64>,
    /// Label smoothing ε in [0, 1].
    pub label_smoothing: f64,
    /// How per-element losses are combined.
    pub reduction: Reduction,
}

impl<T: Float> Default for CrossEntropyLoss<T> {
    fn default() -> Self {
        CrossEntropyLoss {
            weight: None,
            ignore_index: Some(-100),
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
        }
    }
}

impl<T: Float> CrossEntropyLoss<T> {
    /// The loss of `logits` against `labels` (one per element of [N, d…], row-major).
    pub fn forward<'t, L: Label>(&self, logits: Var<'t, T>, labels: &[L]) -> Result<Var<'t, T>> {
        logits.cross_entropy_with(
            labels,
            &CrossEntropyOptions {
                weight: self.weight.as_ref(),
                ignore_index: self.ignore_index,
                reduction: self.reduction,
                label_smoothing: self.label_smoothing,
            },
        )
    }
}

/// Negative log-likelihood from log-probabilities and class indices, with class weights, an
/// ignored label and a reduction.
///
/// PyTorch equivalent: `nn.NLLLoss(weight, ignore_index, reduction)`.
#[derive(Debug, Clone)]
pub struct NLLLoss<T: Float = f32> {
    /// A weight per class, `[C]`.
    pub weight: Option<Tensor<T>>,
    /// Elements with this label count for nothing.
    pub ignore_index: Option<i64>,
    /// How per-element losses are combined.
    pub reduction: Reduction,
}

impl<T: Float> Default for NLLLoss<T> {
    fn default() -> Self {
        NLLLoss {
            weight: None,
            ignore_index: Some(-100),
            reduction: Reduction::Mean,
        }
    }
}

impl<T: Float> NLLLoss<T> {
    /// The loss of `log_probs` against `labels`.
    pub fn forward<'t, L: Label>(&self, log_probs: Var<'t, T>, labels: &[L]) -> Result<Var<'t, T>> {
        log_probs.nll_with(
            labels,
            &NllOptions {
                weight: self.weight.as_ref(),
                ignore_index: self.ignore_index,
                reduction: self.reduction,
            },
        )
    }
}

/// Mean squared error: (1/n) Σ (ŷ − y)² (or the sum, or one per element).
/// ∂/∂ŷ = 2(ŷ − y)/n. PyTorch equivalent: `nn.MSELoss(reduction)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MSELoss {
    /// How per-element losses are combined.
    pub reduction: Reduction,
}

impl MSELoss {
    /// The loss; `prediction` and `target` must have the same shape (no silent broadcasting,
    /// which PyTorch only warns about), and for the mean hold at least one element (the mean over
    /// none is undefined: [`Error::EmptyBatch`]).
    pub fn forward<'t, T: Float>(
        &self,
        prediction: Var<'t, T>,
        target: Var<'t, T>,
    ) -> Result<Var<'t, T>> {
        let (p, t) = (prediction.shape(), target.shape());
        if p != t {
            return Err(Error::ShapeMismatch {
                op: "mse_loss",
                lhs: p,
                rhs: t,
            });
        }
        let diff = prediction.sub(target)?;
        let squared = diff.mul(diff)?;
        match self.reduction {
            Reduction::Mean if p.numel() == 0 => Err(Error::EmptyBatch {
                op: "mse_loss",
                shape: p,
            }),
            Reduction::Mean => squared.mean(),
            Reduction::Sum => squared.sum(),
            Reduction::None => Ok(squared),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Element-wise losses: shared checks and reductions
// ------------------------------------------------------------------------------------------------

/// `prediction` and `target` must have one shape: no silent broadcasting (PyTorch broadcasts
/// with a warning for some of these losses and refuses for others).
fn same_shape<T: Float>(
    op: &'static str,
    prediction: Var<'_, T>,
    target: Var<'_, T>,
) -> Result<()> {
    prediction.same_tape(target, op)?;
    let (p, t) = (prediction.shape(), target.shape());
    if p != t {
        return Err(Error::ShapeMismatch { op, lhs: p, rhs: t });
    }
    Ok(())
}

/// Combines per-element losses; the mean over no elements is an [`Error::EmptyBatch`] (PyTorch
/// returns NaN).
fn reduce<'t, T: Float>(
    op: &'static str,
    losses: Var<'t, T>,
    reduction: Reduction,
) -> Result<Var<'t, T>> {
    match reduction {
        Reduction::Mean if losses.shape().numel() == 0 => Err(Error::EmptyBatch {
            op,
            shape: losses.shape(),
        }),
        Reduction::Mean => losses.mean(),
        Reduction::Sum => losses.sum(),
        Reduction::None => Ok(losses),
    }
}

/// An optional per-element weight, broadcast to the input's shape (not the other way round),
/// multiplied into `losses`.
fn weighted<'t, T: Float>(
    op: &'static str,
    losses: Var<'t, T>,
    weight: Option<&Tensor<T>>,
) -> Result<Var<'t, T>> {
    match weight {
        None => Ok(losses),
        Some(w) => {
            check_broadcasts(op, w, &losses.shape())?;
            losses.mul(losses.tape.constant(w.try_clone()?))
        }
    }
}

fn check_broadcasts<T: Float>(op: &'static str, w: &Tensor<T>, shape: &crate::Shape) -> Result<()> {
    if w.shape().broadcasts_to(shape) {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            op,
            lhs: shape.clone(),
            rhs: w.shape().clone(),
        })
    }
}

fn bad_option(op: &'static str, name: &'static str, value: f64, reason: &'static str) -> Error {
    Error::InvalidHyperparameter {
        op,
        name,
        value,
        reason,
    }
}

/// `log(x)` where `x > 0` and `−100` where `x = 0`, then clamped below at −100: PyTorch's
/// `max(log(x), −100)`, built so that no NaN reaches the gradient at `x = 0`.
fn clamped_log<'t, T: Float>(x: Var<'t, T>, via_log1p: bool) -> Result<Var<'t, T>> {
    let tape = x.tape;
    let floor = T::from_f64(-100.0);
    // For log1p(−p) the singular point is p = 1; for log(p), p = 0.
    let (mask, safe_fill) = if via_log1p {
        (x.lt_scalar(T::ONE)?, tape.constant(Tensor::scalar(T::ZERO)))
    } else {
        (x.gt_scalar(T::ZERO)?, tape.constant(Tensor::scalar(T::ONE)))
    };
    let safe = Var::where_(mask, x, safe_fill)?;
    let log = if via_log1p {
        safe.neg()?.log1p()?
    } else {
        safe.log()?
    };
    Var::where_(mask, log, tape.constant(Tensor::scalar(floor)))?.clamp(Some(floor), None)
}

/// Binary cross-entropy of probabilities `p` in `[0, 1]` and targets `y` (usually 0 or 1):
/// ℓ = −w·(y·max(log p, −100) + (1 − y)·max(log(1 − p), −100)), then reduced.
/// ∂ℓ/∂p = w·(p − y)/(p(1 − p)) where neither log is clamped.
///
/// Where a log is clamped (p within e⁻¹⁰⁰ of 0 or 1) the gradient of that term is 0; PyTorch
/// instead divides by `max(p(1 − p), 1e−12)`, a gradient of up to 10¹² in size.
///
/// Errors: shapes differ ([`Error::ShapeMismatch`]), a weight that does not broadcast to the input,
/// a probability outside `[0, 1]` or NaN ([`Error::InvalidArgument`], as PyTorch), the mean of none.
///
/// PyTorch equivalent: `nn.BCELoss(weight, reduction)`.
///
/// ```
/// use tapegrad::nn::BCELoss;
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let p = tape.leaf(Tensor::from_vec(vec![0.25f64, 0.5], &[2])?);
/// let y = tape.constant(Tensor::from_vec(vec![0.0, 1.0], &[2])?);
/// let loss = BCELoss::default().forward(p, y)?;
/// let want = -(0.75f64.ln() + 0.5f64.ln()) / 2.0;
/// assert!((loss.value().item()? - want).abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BCELoss<T: Float = f32> {
    /// A weight broadcast to the input's shape (PyTorch `weight`); `None`: all 1.
    pub weight: Option<Tensor<T>>,
    /// How per-element losses are combined.
    pub reduction: Reduction,
}

impl<T: Float> Default for BCELoss<T> {
    fn default() -> Self {
        BCELoss {
            weight: None,
            reduction: Reduction::Mean,
        }
    }
}

impl<T: Float> BCELoss<T> {
    /// The loss of probabilities `probs` against `target` (same shape).
    pub fn forward<'t>(&self, probs: Var<'t, T>, target: Var<'t, T>) -> Result<Var<'t, T>> {
        let op = "binary_cross_entropy";
        same_shape(op, probs, target)?;
        if let Some(&bad) = probs
            .value()
            .data()
            .iter()
            .find(|&&p| !(p >= T::ZERO && p <= T::ONE))
        {
            return Err(Error::InvalidArgument {
                op,
                reason: format!(
                    "all elements of the input must lie in [0, 1] (probabilities), found {}",
                    bad.to_f64()
                ),
            });
        }
        let log_p = clamped_log(probs, false)?;
        let log_q = clamped_log(probs, true)?;
        // −(y·log p + (1 − y)·log q) = −(log q + y·(log p − log q)).
        let losses = target.mul(log_p.sub(log_q)?)?.add(log_q)?.neg()?;
        reduce(
            op,
            weighted(op, losses, self.weight.as_ref())?,
            self.reduction,
        )
    }
}

/// Binary cross-entropy on logits, in the stable form
/// ℓ = w·((1 − y)·x + (1 + (pw − 1)·y)·softplus(−x)) (softplus(−x) = −log σ(x)), then reduced.
/// ∂ℓ/∂x = w·((1 + (pw − 1)y)·σ(x) − pw·y), which for pw = 1 is w·(σ(x) − y).
///
/// Errors: shapes differ, a `weight` or `pos_weight` that does not broadcast to the input
/// ([`Error::ShapeMismatch`]), the mean of none.
///
/// PyTorch equivalent: `nn.BCEWithLogitsLoss(weight, reduction, pos_weight)`.
///
/// ```
/// use tapegrad::nn::BCEWithLogitsLoss;
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let x = tape.leaf(Tensor::from_vec(vec![0.0f64, 200.0], &[2])?);
/// let y = tape.constant(Tensor::from_vec(vec![1.0, 0.0], &[2])?);
/// let loss = BCEWithLogitsLoss::default().forward(x, y)?; // no overflow at x = 200
/// assert!((loss.value().item()? - (2f64.ln() + 200.0) / 2.0).abs() < 1e-12);
/// assert_eq!(loss.backward()?.wrt(x)?.data(), &[-0.25, 0.5]); // (σ(x) − y)/2
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BCEWithLogitsLoss<T: Float = f32> {
    /// A weight broadcast to the input's shape (PyTorch `weight`); `None`: all 1.
    pub weight: Option<Tensor<T>>,
    /// The weight of positive examples, broadcast to the input's shape (usually `[C]`, one per
    /// class on the last axis; PyTorch `pos_weight`); `None`: all 1.
    pub pos_weight: Option<Tensor<T>>,
    /// How per-element losses are combined.
    pub reduction: Reduction,
}

impl<T: Float> Default for BCEWithLogitsLoss<T> {
    fn default() -> Self {
        BCEWithLogitsLoss {
            weight: None,
            pos_weight: None,
            reduction: Reduction::Mean,
        }
    }
}

impl<T: Float> BCEWithLogitsLoss<T> {
    /// The loss of `logits` against `target` (same shape).
    pub fn forward<'t>(&self, logits: Var<'t, T>, target: Var<'t, T>) -> Result<Var<'t, T>> {
        let op = "binary_cross_entropy_with_logits";
        same_shape(op, logits, target)?;
        let tape = logits.tape;
        // softplus(−x) = −log σ(x), never linearised (threshold ∞), exact where e^(−x) overflows.
        let neg_log_sigmoid = logits.neg()?.softplus(T::ONE, T::from_f64(f64::INFINITY))?;
        let one_minus_y = target.neg()?.add_scalar(T::ONE)?;
        let log_weight = match &self.pos_weight {
            None => neg_log_sigmoid,
            Some(pw) => {
                check_broadcasts(op, pw, &logits.shape())?;
                let pw_minus_one = tape.constant(pw.map(|v| v - T::ONE)?);
                let factor = target.mul(pw_minus_one)?.add_scalar(T::ONE)?;
                factor.mul(neg_log_sigmoid)?
            }
        };
        let losses = one_minus_y.mul(logits)?.add(log_weight)?;
        reduce(
            op,
            weighted(op, losses, self.weight.as_ref())?,
            self.reduction,
        )
    }
}

/// Mean absolute error: ℓ = |ŷ − y|, then reduced. ∂ℓ/∂ŷ = sign(ŷ − y), 0 at ŷ = y (PyTorch's
/// `sgn`).
///
/// PyTorch equivalent: `nn.L1Loss(reduction)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct L1Loss {
    /// How per-element losses are combined.
    pub reduction: Reduction,
}

impl L1Loss {
    /// The loss; `prediction` and `target` must have the same shape.
    pub fn forward<'t, T: Float>(
        &self,
        prediction: Var<'t, T>,
        target: Var<'t, T>,
    ) -> Result<Var<'t, T>> {
        let op = "l1_loss";
        same_shape(op, prediction, target)?;
        reduce(op, prediction.sub(target)?.abs()?, self.reduction)
    }
}

/// Smooth L1: with d = ŷ − y, ℓ = d²/(2β) where |d| < β, |d| − β/2 elsewhere; β = 0 is the L1
/// loss. ∂ℓ/∂ŷ = d/β inside, sign(d) outside (both 1 at |d| = β).
///
/// Errors: β negative or NaN ([`Error::InvalidHyperparameter`], as PyTorch), shapes differ.
///
/// PyTorch equivalent: `nn.SmoothL1Loss(reduction, beta)` (β = 1 by default).
#[derive(Debug, Clone, Copy)]
pub struct SmoothL1Loss {
    /// How per-element losses are combined.
    pub reduction: Reduction,
    /// Where the loss turns from quadratic to linear (≥ 0).
    pub beta: f64,
}

impl Default for SmoothL1Loss {
    fn default() -> Self {
        SmoothL1Loss {
            reduction: Reduction::Mean,
            beta: 1.0,
        }
    }
}

impl SmoothL1Loss {
    /// The loss; `prediction` and `target` must have the same shape.
    pub fn forward<'t, T: Float>(
        &self,
        prediction: Var<'t, T>,
        target: Var<'t, T>,
    ) -> Result<Var<'t, T>> {
        let op = "smooth_l1_loss";
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(bad_option(op, "beta", self.beta, "must be finite and ≥ 0"));
        }
        same_shape(op, prediction, target)?;
        let diff = prediction.sub(target)?;
        let abs = diff.abs()?;
        if self.beta == 0.0 {
            return reduce(op, abs, self.reduction);
        }
        let beta = T::from_f64(self.beta);
        let quadratic = diff.square()?.mul_scalar(T::from_f64(0.5) / beta)?;
        let linear = abs.sub_scalar(T::from_f64(0.5) * beta)?;
        let losses = Var::where_(abs.lt_scalar(beta)?, quadratic, linear)?;
        reduce(op, losses, self.reduction)
    }
}

/// Huber loss: with d = ŷ − y, ℓ = d²/2 where |d| < δ, δ·(|d| − δ/2) elsewhere (δ times the smooth
/// L1 loss with β = δ). ∂ℓ/∂ŷ = d inside, δ·sign(d) outside.
///
/// Errors: δ not positive or not finite ([`Error::InvalidHyperparameter`], as PyTorch), shapes
/// differ.
///
/// PyTorch equivalent: `nn.HuberLoss(reduction, delta)` (δ = 1 by default).
#[derive(Debug, Clone, Copy)]
pub struct HuberLoss {
    /// How per-element losses are combined.
    pub reduction: Reduction,
    /// Where the loss turns from quadratic to linear (> 0).
    pub delta: f64,
}

impl Default for HuberLoss {
    fn default() -> Self {
        HuberLoss {
            reduction: Reduction::Mean,
            delta: 1.0,
        }
    }
}

impl HuberLoss {
    /// The loss; `prediction` and `target` must have the same shape.
    pub fn forward<'t, T: Float>(
        &self,
        prediction: Var<'t, T>,
        target: Var<'t, T>,
    ) -> Result<Var<'t, T>> {
        let op = "huber_loss";
        if !(self.delta.is_finite() && self.delta > 0.0) {
            return Err(bad_option(
                op,
                "delta",
                self.delta,
                "must be finite and > 0",
            ));
        }
        same_shape(op, prediction, target)?;
        let delta = T::from_f64(self.delta);
        let diff = prediction.sub(target)?;
        let abs = diff.abs()?;
        let quadratic = diff.square()?.mul_scalar(T::from_f64(0.5))?;
        let linear = abs
            .sub_scalar(T::from_f64(0.5) * delta)?
            .mul_scalar(delta)?;
        let losses = Var::where_(abs.lt_scalar(delta)?, quadratic, linear)?;
        reduce(op, losses, self.reduction)
    }
}

/// How [`KLDivLoss`] combines its per-element terms: [`Reduction`]'s three, and the sum divided
/// by the batch size (the first dimension), which is the true KL divergence per example.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KLDivReduction {
    /// The mean over every element (PyTorch's default, which it warns is not the KL divergence).
    #[default]
    Mean,
    /// The sum divided by the size of the first axis (PyTorch `"batchmean"`).
    BatchMean,
    /// The sum.
    Sum,
    /// No reduction.
    None,
}

/// Kullback–Leibler divergence of the target distribution from the input's: with the input
/// `x = log q`, each element is ℓ = y·(log y − x) (0 where y = 0), or with `log_target` (the
/// target given as log y) ℓ = eʸ·(y − x). ∂ℓ/∂x = −y (or −eʸ); the target is differentiated too:
/// ∂ℓ/∂y = log y + 1 − x (or eʸ·(y + 1 − x)). At y = 0, where y·log y has no derivative, the
/// target's gradient is −x (the y·log y term left out); PyTorch gives NaN there.
///
/// Errors: shapes differ, the mean (or batch mean) of none.
///
/// PyTorch equivalent: `nn.KLDivLoss(reduction, log_target)`.
///
/// ```
/// use tapegrad::nn::{KLDivLoss, KLDivReduction};
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::new();
/// let log_q = tape.leaf(Tensor::from_vec(vec![0.5f64.ln(), 0.5f64.ln()], &[1, 2])?);
/// let p = tape.constant(Tensor::from_vec(vec![1.0, 0.0], &[1, 2])?);
/// let kl = KLDivLoss { reduction: KLDivReduction::BatchMean, log_target: false };
/// assert!((kl.forward(log_q, p)?.value().item()? - 2f64.ln()).abs() < 1e-15);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct KLDivLoss {
    /// How the per-element terms are combined.
    pub reduction: KLDivReduction,
    /// Whether the target holds log-probabilities (PyTorch `log_target`, false by default).
    pub log_target: bool,
}

impl KLDivLoss {
    /// The divergence of `target` from the log-probabilities `input` (same shape).
    pub fn forward<'t, T: Float>(
        &self,
        input: Var<'t, T>,
        target: Var<'t, T>,
    ) -> Result<Var<'t, T>> {
        let op = "kl_div";
        same_shape(op, input, target)?;
        let tape = input.tape;
        let terms = if self.log_target {
            target.exp()?.mul(target.sub(input)?)?
        } else {
            // xlogy(y, y) − y·x: log 1 = 0 stands in where y = 0, so y·log y is 0 there and no
            // NaN reaches the gradient; a negative y still gives NaN, as in PyTorch.
            let nonzero = target.ne_scalar(T::ZERO)?;
            let safe = Var::where_(nonzero, target, tape.constant(Tensor::scalar(T::ONE)))?;
            target.mul(safe.log()?.sub(input)?)?
        };
        match self.reduction {
            KLDivReduction::Mean => reduce(op, terms, Reduction::Mean),
            KLDivReduction::Sum => terms.sum(),
            KLDivReduction::None => Ok(terms),
            KLDivReduction::BatchMean => {
                let shape = terms.shape();
                let batch = shape.dims().first().copied().unwrap_or(1);
                if batch == 0 {
                    return Err(Error::EmptyBatch { op, shape });
                }
                terms.sum()?.div_scalar(T::from_f64(batch as f64))
            }
        }
    }
}
